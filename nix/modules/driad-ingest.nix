# driad-ingest: follows a joinfile (pimwatch's, or cbacc's filtered one), finds each source's
# AMT relay through DNS AMTRELAY records (DRIAD, RFC 8777), keeps one AMT tunnel (RFC 7450) per
# relay and writes the decapsulated multicast into a TUN device: pimwatch's native interface.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:

let
  cfg = config.services.driad-ingest;

  settingsFormat = pkgs.formats.toml { };
  # The file given with --config: the operator's, else one generated from `settings`, else none.
  configFile =
    if cfg.configFile != null then
      cfg.configFile
    else if cfg.settings != { } then
      settingsFormat.generate "driad-ingest.toml" cfg.settings
    else
      null;
  common = config.services.multicast-ingest;
  pimwatch = config.services.pimwatch or { enable = false; };
  cbacc = config.services.cbacc or { enable = false; };

  opt = flag: value: lib.optionals (value != null) [
    flag
    (toString value)
  ];
  repeated = flag: values: lib.concatMap (value: [
    flag
    value
  ]) values;

  args = [
    "--joinfile"
    (toString cfg.joinfile)
    "--native-interface"
    cfg.nativeInterface
  ]
  ++ repeated "--nameserver" cfg.nameservers
  ++ repeated "--local" cfg.localAddresses
  ++ opt "--hold-down" cfg.holdDown
  ++ opt "--no-traffic-timeout" cfg.noTrafficTimeout
  ++ opt "--max-tunnels" cfg.maxTunnels
  ++ opt "--tun-mtu" cfg.tunMtu
  ++ opt "--log-level" cfg.logLevel
  ++ [
    "--log-format"
    cfg.logFormat
  ]
  ++ opt "--metrics-listen" cfg.metricsListen
  ++ opt "--config" configFile
  ++ cfg.extraArgs;

  duration = lib.types.strMatching "[0-9]+ ?[a-z]+( ?[0-9]+ ?[a-z]+)*";
  daemonDefault = text: "`null`: the daemon's default (${text}).";

  # CAP_NET_ADMIN creates and configures the TUN (and makes it again if it is deleted), forces
  # the AMT socket's receive buffer and turns rp_filter off on the TUN. No CAP_NET_RAW: it opens
  # no raw socket (scenarios/hostile-least-privilege.toml checks the lab's service).
  capabilities = [
    "CAP_NET_ADMIN"
  ];

  firewall = config.networking.firewall;
in
{
  imports = [ ./common.nix ];

  options.services.driad-ingest = {
    enable = lib.mkEnableOption "driad-ingest, the DRIAD/AMT ingest of the multicast ingest device";

    package = lib.mkPackageOption pkgs "multicast-ingest" { };

    joinfile = lib.mkOption {
      type = lib.types.path;
      default =
        if cbacc.enable then
          cbacc.outputFile
        else
          pimwatch.joinfile or "${toString common.joinfileDirectory}/pimwatch.sgs";
      defaultText = lib.literalMD ''
        {option}`services.cbacc.outputFile` when cbacc is enabled, else
        {option}`services.pimwatch.joinfile`
      '';
      description = ''
        Joinfile to follow (one `SOURCE,GROUP` per line, a third column is ignored). A missing
        file is an empty set.
      '';
    };

    nativeInterface = lib.mkOption {
      type = lib.types.str;
      default = "amt0";
      description = ''
        TUN device the decapsulated multicast is written into (created if absent). It must be
        {option}`services.pimwatch.nativeInterface`.
      '';
    };

    nameservers = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "203.0.113.53:53" ];
      description = ''
        DNS servers asked for AMTRELAY records (`ADDR[:PORT]`). Empty: the system's resolver
        configuration (/etc/resolv.conf).
      '';
    };

    localAddresses = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "192.0.2.2:40000" ];
      description = ''
        Local address (`ADDR[:PORT]`) of the AMT socket of each family. Empty: any address,
        an ephemeral port.
      '';
    };

    holdDown = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      description = "How long a failed relay is avoided. ${daemonDefault "10m"}";
    };

    noTrafficTimeout = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      description = ''
        A tunnel that carried data and then receives none for this long counts as a relay
        failure ("0s" turns the check off). ${daemonDefault "4s"}
      '';
    };

    maxTunnels = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.positive;
      default = null;
      description = "Most tunnels (relays) at once. ${daemonDefault "10000"}";
    };

    tunMtu = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.positive;
      default = null;
      description = "MTU of the native interface. ${daemonDefault "1500"}";
    };

    logLevel = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = "info";
      description = ''
        Log filter (RUST_LOG syntax). `null`: the `log-level` of the configuration file
        ({option}`services.driad-ingest.configFile`), which `systemctl reload driad-ingest` applies,
        else the daemon's default (info).
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
      example = "127.0.0.1:9103";
      description = ''
        Address and port (`ADDR:PORT`, `[IPv6]:PORT`) of the OpenMetrics endpoint (`GET /metrics`;
        every metric is prefixed `driad_ingest_`). `null`: no endpoint. It has no authentication:
        listen on a loopback or management address.
      '';
    };

    settings = lib.mkOption {
      type = settingsFormat.type;
      default = { };
      example = lib.literalExpression ''
        {
          hold-down = "5m";
          max-tunnels = 100;
        }
      '';
      description = ''
        Further settings, written to a TOML file passed with `--config`. The keys are driad-ingest's
        long flags without the leading dashes (`driad-ingest --help`), arrays for flags that may be
        repeated, `true` for switches. A key driad-ingest does not know stops it at start, naming
        the key and its line. The options of this module that are set (not `null`, not empty) are
        passed as flags and win over the file.
      '';
    };

    configFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = "/etc/multicast-ingest/driad-ingest.toml";
      description = ''
        A TOML configuration file for `--config`, instead of one generated from
        {option}`services.driad-ingest.settings`. A file outside the Nix store is read again on
        `systemctl reload driad-ingest` (SIGHUP), which applies the settings that can change at run
        time; the daemon's user must be able to read it.
      '';
    };

    extraArgs = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Further command line arguments for driad-ingest.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.configFile == null || cfg.settings == { };
        message = "services.driad-ingest: set settings or configFile, not both.";
      }
      {
        assertion = cbacc.enable -> toString cfg.joinfile == toString cbacc.outputFile;
        message = ''
          services.cbacc is enabled but services.driad-ingest.joinfile (${toString cfg.joinfile}) is not
          cbacc's output (${toString cbacc.outputFile}): driad-ingest would bypass the bandwidth cap.
        '';
      }
      {
        assertion =
          (pimwatch.enable && pimwatch.forwarding && pimwatch.nativeInterface != null)
          -> pimwatch.nativeInterface == cfg.nativeInterface;
        message = ''
          services.driad-ingest.nativeInterface (${cfg.nativeInterface}) must be
          services.pimwatch.nativeInterface (${toString pimwatch.nativeInterface}): pimwatch forwards
          what driad-ingest injects there.
        '';
      }
      {
        assertion = pimwatch.enable -> !(lib.elem cfg.nativeInterface pimwatch.interfaces);
        message = "services.driad-ingest.nativeInterface must not be one of services.pimwatch.interfaces.";
      }
    ];

    # A strict reverse-path filter drops the decapsulated traffic: it arrives on the TUN, while
    # the route back to its source leaves through the upstream interface.
    warnings =
      lib.optional (firewall.enable && (firewall.checkReversePath == true || firewall.checkReversePath == "strict"))
        ''
          services.driad-ingest: networking.firewall.checkReversePath is strict, so the firewall drops
          the multicast driad-ingest injects on ${cfg.nativeInterface}. Set it to "loose" (or false).
        '';

    environment.systemPackages = [ cfg.package ];

    boot.kernelModules = [ "tun" ];

    systemd.services.driad-ingest = {
      description = "driad-ingest, DRIAD relay discovery and AMT tunnels of the multicast ingest device";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [
        "network-online.target"
      ]
      ++ lib.optional pimwatch.enable "pimwatch.service"
      ++ lib.optional cbacc.enable "cbacc.service";

      serviceConfig = common.serviceHardening // {
        ExecStart = utils.escapeSystemdExecArgs ([ (lib.getExe' cfg.package "driad-ingest") ] ++ args);
        # `driad-ingest status` finds the control socket here ($RUNTIME_DIRECTORY).
        RuntimeDirectory = "driad-ingest";
        SupplementaryGroups = [ common.group ];
        CapabilityBoundingSet = capabilities;
        AmbientCapabilities = capabilities;
        # The TUN device, and nothing else of /dev.
        PrivateDevices = false;
        DevicePolicy = "closed";
        DeviceAllow = [ "/dev/net/tun rw" ];
        # It turns rp_filter off on the TUN (/proc/sys/net/ipv4/conf/<tun>/rp_filter).
        ProtectKernelTunables = false;
      };
    };
  };
}
