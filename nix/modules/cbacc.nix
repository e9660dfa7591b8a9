# cbacc: bandwidth admission between pimwatch and driad-ingest. It reads pimwatch's joinfile,
# looks up each flow's bitrate through DORMS (DNS SRV, then HTTPS) and writes the flows that fit
# under a cap to its own joinfile, which driad-ingest follows.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:

let
  cfg = config.services.cbacc;

  settingsFormat = pkgs.formats.toml { };
  # The file given with --config: the operator's, else one generated from `settings`, else none.
  configFile =
    if cfg.configFile != null then
      cfg.configFile
    else if cfg.settings != { } then
      settingsFormat.generate "cbacc.toml" cfg.settings
    else
      null;
  common = config.services.multicast-ingest;
  pimwatch = config.services.pimwatch or { enable = false; };

  opt = flag: value: lib.optionals (value != null) [
    flag
    (toString value)
  ];
  repeated = flag: values: lib.concatMap (value: [
    flag
    value
  ]) values;

  args = [
    "--input-file"
    (toString cfg.inputFile)
    "--output-file"
    (toString cfg.outputFile)
    "--output-mode"
    cfg.outputMode
  ]
  ++ opt "--bandwidth" cfg.bandwidth
  ++ opt "--default" cfg.defaultRate
  ++ opt "--hold-down" cfg.holdDown
  ++ opt "--hold-down-jitter" cfg.holdDownJitter
  ++ opt "--refresh" cfg.refresh
  ++ opt "--metadata-wait" cfg.metadataWait
  ++ opt "--max-lookups" cfg.maxLookups
  ++ repeated "--nameserver" cfg.nameservers
  ++ repeated "--ca-file" (map toString cfg.caFiles)
  ++ opt "--legacy-rate-unit" cfg.legacyRateUnit
  ++ opt "--http-timeout" cfg.httpTimeout
  ++ opt "--connect-timeout" cfg.connectTimeout
  ++ opt "--ignore-time" cfg.ignoreTime
  ++ opt "--log-level" cfg.logLevel
  ++ [
    "--log-format"
    cfg.logFormat
  ]
  ++ opt "--metrics-listen" cfg.metricsListen
  ++ opt "--config" configFile
  ++ cfg.extraArgs;

  duration = lib.types.strMatching "[0-9]+ ?[a-z]+( ?[0-9]+ ?[a-z]+)*";
  # cbacc's rates: a number and a unit, SI (k, M, G, T) or binary (Ki, Mi, Gi, Ti) prefixes.
  rate = lib.types.strMatching "[0-9.]+ ?(k|K|M|G|T|Ki|Mi|Gi|Ti)?(bit/s|bps)";
  daemonDefault = text: "`null`: the daemon's default (${text}).";
in
{
  imports = [ ./common.nix ];

  options.services.cbacc = {
    enable = lib.mkEnableOption "cbacc, bandwidth admission of the multicast ingest device";

    package = lib.mkPackageOption pkgs "multicast-ingest" { };

    inputFile = lib.mkOption {
      type = lib.types.path;
      default = pimwatch.joinfile or "${toString common.joinfileDirectory}/pimwatch.sgs";
      defaultText = lib.literalExpression "config.services.pimwatch.joinfile";
      description = "Joinfile to read (`SOURCE,GROUP[,POPULATION]` per line): pimwatch's.";
    };

    outputFile = lib.mkOption {
      type = lib.types.path;
      default = "${toString common.joinfileDirectory}/cbacc.sgs";
      defaultText = lib.literalExpression ''"''${config.services.multicast-ingest.joinfileDirectory}/cbacc.sgs"'';
      description = "Joinfile of the admitted flows, replaced atomically when the set changes; driad-ingest follows it.";
    };

    outputMode = lib.mkOption {
      type = lib.types.strMatching "[0-7]{3,4}";
      default = "640";
      description = "File mode of the output joinfile (octal): readable by the joinfile group.";
    };

    bandwidth = lib.mkOption {
      type = lib.types.nullOr rate;
      default = null;
      example = "50Mbit/s";
      description = ''
        The cap on the sum of the admitted flows' advertised rates, with a unit: `50Mbit/s`,
        `800kbit/s`, `1.5Gbit/s`, or binary prefixes (`50Mibit/s`; the original cbacc's
        `--bandwidth 50` meant that). `null`: the `bandwidth` of
        {option}`services.cbacc.settings` or {option}`services.cbacc.configFile` (a cap
        in a configuration file outside the Nix store can be changed with
        `systemctl reload cbacc`).
      '';
    };

    defaultRate = lib.mkOption {
      type = lib.types.nullOr rate;
      default = null;
      example = "2Mbit/s";
      description = "Rate assumed for flows without DORMS metadata. `null`: such flows are blocked.";
    };

    holdDown = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      description = "How long a flow blocked for lack of capacity stays blocked. ${daemonDefault "150s"}";
    };

    holdDownJitter = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      description = "Largest random addition to the hold-down. ${daemonDefault "30s"}";
    };

    refresh = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      description = "How long DORMS metadata is used before it is fetched again. ${daemonDefault "30m"}";
    };

    metadataWait = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      description = ''
        How long a new flow waits for its first DORMS answer before it counts as without
        metadata. ${daemonDefault "3s"}
      '';
    };

    maxLookups = lib.mkOption {
      type = lib.types.nullOr (lib.types.ints.between 1 65535);
      default = null;
      description = "DORMS lookups running at once, at most. ${daemonDefault "16"}";
    };

    nameservers = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "203.0.113.53:53" ];
      description = ''
        DNS servers for the DORMS SRV lookups and the DORMS servers' names (`ADDR[:PORT]`).
        Empty: the system's resolver.
      '';
    };

    caFiles = lib.mkOption {
      type = lib.types.listOf lib.types.path;
      default = [ ];
      description = "Extra CA certificates (PEM) trusted for DORMS servers, besides the system roots.";
    };

    legacyRateUnit = lib.mkOption {
      type = lib.types.nullOr (
        lib.types.enum [
          "bit"
          "kbit"
        ]
      );
      default = null;
      description = ''
        Unit of the legacy `max-bits-per-second` leaf (`max-speed` is always kbit/s).
        ${daemonDefault "bit, as the original read it"}
      '';
    };

    httpTimeout = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      description = "Total time allowed for one HTTPS request. ${daemonDefault "5s"}";
    };

    connectTimeout = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      description = "Time allowed to connect (TCP and TLS). ${daemonDefault "3s"}";
    };

    ignoreTime = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      description = ''
        How long a DORMS server with a bad certificate or without a RESTCONF root is skipped.
        ${daemonDefault "1h"}
      '';
    };

    logLevel = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = "info";
      description = ''
        Log filter (RUST_LOG syntax). `null`: the `log-level` of the configuration file
        ({option}`services.cbacc.configFile`), which `systemctl reload cbacc` applies, else the
        daemon's default (info).
      '';
    };

    logFormat = lib.mkOption {
      type = lib.types.enum [
        "text"
        "json"
      ];
      default = "text";
      description = "Log line format.";
    };

    metricsListen = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "127.0.0.1:9102";
      description = ''
        Address and port (`ADDR:PORT`, `[IPv6]:PORT`) of the OpenMetrics endpoint (`GET /metrics`;
        every metric is prefixed `cbacc_`). `null`: no endpoint. It has no authentication: listen on
        a loopback or management address.
      '';
    };

    settings = lib.mkOption {
      type = settingsFormat.type;
      default = { };
      example = lib.literalExpression ''
        {
          refresh = "10m";
          max-lookups = 32;
        }
      '';
      description = ''
        Further settings, written to a TOML file passed with `--config`. The keys are cbacc's long
        flags without the leading dashes (`cbacc --help`), arrays for flags that may be repeated,
        `true` for switches. A key cbacc does not know stops it at start, naming the key and its
        line. The options of this module that are set (not `null`, not empty) are passed as flags
        and win over the file.
      '';
    };

    configFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = "/etc/multicast-ingest/cbacc.toml";
      description = ''
        A TOML configuration file for `--config`, instead of one generated from
        {option}`services.cbacc.settings`. A file outside the Nix store is read again on `systemctl
        reload cbacc` (SIGHUP), which applies the settings that can change at run time; the daemon's
        user must be able to read it.
      '';
    };

    extraArgs = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Further command line arguments for cbacc.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.configFile == null || cfg.settings == { };
        message = "services.cbacc: set settings or configFile, not both.";
      }
      {
        assertion = cfg.bandwidth != null || cfg.configFile != null || cfg.settings ? bandwidth;
        message = "services.cbacc.bandwidth is required (or `bandwidth` in services.cbacc.settings or services.cbacc.configFile).";
      }
      {
        assertion = toString cfg.inputFile != toString cfg.outputFile;
        message = "services.cbacc.inputFile and services.cbacc.outputFile must differ.";
      }
      {
        assertion = pimwatch.enable -> toString cfg.outputFile != toString pimwatch.joinfile;
        message = "services.cbacc.outputFile is services.pimwatch.joinfile: two daemons would write one file.";
      }
    ];

    environment.systemPackages = [ cfg.package ];

    systemd.services.cbacc = {
      description = "cbacc, bandwidth admission of the multicast ingest device";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ] ++ lib.optional pimwatch.enable "pimwatch.service";

      # No capabilities: DNS and HTTPS out, files in the joinfile directory.
      serviceConfig = common.serviceHardening // {
        ExecStart = utils.escapeSystemdExecArgs ([ (lib.getExe' cfg.package "cbacc") ] ++ args);
        # `cbacc status` finds the control socket here ($RUNTIME_DIRECTORY).
        RuntimeDirectory = "cbacc";
        SupplementaryGroups = [ common.group ];
        ReadWritePaths = [ (dirOf (toString cfg.outputFile)) ];
      };
    };
  };
}
