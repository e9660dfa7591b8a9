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
    "--bandwidth"
    cfg.bandwidth
  ]
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
  ++ [
    "--log-level"
    cfg.logLevel
    "--log-format"
    cfg.logFormat
  ]
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
      type = rate;
      example = "50Mbit/s";
      description = ''
        The cap on the sum of the admitted flows' advertised rates, with a unit: `50Mbit/s`,
        `800kbit/s`, `1.5Gbit/s`, or binary prefixes (`50Mibit/s`; the original cbacc's
        `--bandwidth 50` meant that).
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
      type = lib.types.str;
      default = "info";
      description = "Log filter (RUST_LOG syntax).";
    };

    logFormat = lib.mkOption {
      type = lib.types.enum [
        "text"
        "json"
      ];
      default = "text";
      description = "Log line format.";
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
