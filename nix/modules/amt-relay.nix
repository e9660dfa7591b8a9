# amt-relay: an AMT relay (RFC 7450). Gateways (driad-ingest, or any RFC 7450 gateway) reach it
# over UDP 2268; it joins each subscribed (S,G) natively on its upstream interface and sends the
# traffic to them encapsulated.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:

let
  cfg = config.services.amt-relay;

  settingsFormat = pkgs.formats.toml { };
  # The file given with --config: the operator's, else one generated from `settings`, else none.
  configFile =
    if cfg.configFile != null then
      cfg.configFile
    else if cfg.settings != { } then
      settingsFormat.generate "amt-relay.toml" cfg.settings
    else
      null;
  common = config.services.multicast-ingest;

  opt = flag: value: lib.optionals (value != null) [
    flag
    (toString value)
  ];
  repeated = flag: values: lib.concatMap (value: [
    flag
    value
  ]) values;

  args =
    repeated "--relay-address" cfg.relayAddresses
    ++ repeated "--discovery-address" cfg.discoveryAddresses
    ++ repeated "--advertise" (lib.mapAttrsToList (discovery: relay: "${discovery}=${relay}") cfg.advertise)
    ++ [
      "--upstream-interface"
      cfg.upstreamInterface
      "--port"
      (toString cfg.port)
    ]
    ++ opt "--capacity" cfg.capacity
    ++ opt "--max-sgs-per-gateway" cfg.maxSgsPerGateway
    ++ opt "--max-sgs" cfg.maxSgs
    ++ opt "--query-interval" cfg.queryInterval
    ++ opt "--robustness" cfg.robustness
    ++ opt "--max-response" cfg.maxResponse
    ++ opt "--secret-rotation" cfg.secretRotation
    ++ opt "--max-replies-per-sec" cfg.maxRepliesPerSec
    ++ opt "--batch" cfg.batch
    ++ opt "--receive-buffer" cfg.receiveBuffer
    ++ lib.optional (!cfg.gso) "--no-gso"
    ++ lib.optional (!cfg.rxRing) "--no-rx-ring"
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

  # The upstream packet socket needs CAP_NET_RAW, and nothing else does (issue 9's least-privilege
  # check, scenarios/hostile-least-privilege.toml). CAP_NET_ADMIN would only let the relay size
  # its send buffer beyond net.core.wmem_max (SO_SNDBUFFORCE): the sysctl below raises the
  # limit instead of granting a capability that reconfigures the network.
  capabilities = [
    "CAP_NET_RAW"
  ]
  ++ lib.optional (cfg.port < 1024) "CAP_NET_BIND_SERVICE";
in
{
  imports = [ ./common.nix ];

  options.services.amt-relay = {
    enable = lib.mkEnableOption "amt-relay, an AMT relay (RFC 7450)";

    package = lib.mkPackageOption pkgs "multicast-ingest" { };

    relayAddresses = lib.mkOption {
      type = lib.types.nonEmptyListOf lib.types.str;
      example = [
        "203.0.113.15"
        "2001:db8::15"
      ];
      description = ''
        Unicast relay addresses: gateways send Requests and Updates here, Queries and Data come
        from here, and Advertisements name them. Publish them in AMTRELAY records (DRIAD).
      '';
    };

    discoveryAddresses = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "192.52.193.1" ];
      description = ''
        Relay discovery addresses, anycast or unicast (RFC 7450 anycast prefixes: 192.52.193.0/24
        and 2001:3::/32). They may be absent from the host when the relay starts (IP_FREEBIND).
      '';
    };

    advertise = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      example = {
        "192.52.193.1" = "203.0.113.15";
      };
      description = ''
        Relay address to advertise for Discoveries received on an address of the relay
        (discovery address → relay address). Unset: the same address if it is a relay address,
        else the first relay address of the same family.
      '';
    };

    upstreamInterface = lib.mkOption {
      type = lib.types.str;
      example = "eth1";
      description = "Interface where sources are reached natively: (S,G)s are joined and received here.";
    };

    port = lib.mkOption {
      type = lib.types.port;
      default = 2268;
      description = "UDP port the relay listens on (RFC 7450: 2268).";
    };

    capacity = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.positive;
      default = null;
      description = ''
        Most gateway endpoints served at once; new ones beyond it get the L flag.
        ${daemonDefault "1000"}
      '';
    };

    maxSgsPerGateway = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.positive;
      default = null;
      description = "Most (S,G)s one gateway may subscribe to. ${daemonDefault "1000"}";
    };

    maxSgs = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.positive;
      default = null;
      description = "Most distinct (S,G)s joined upstream. ${daemonDefault "10000"}";
    };

    queryInterval = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      example = "60s";
      description = "Query Interval told to gateways (how often they refresh). ${daemonDefault "125s"}";
    };

    robustness = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.u8;
      default = null;
      description = "Robustness told to gateways (QRV). ${daemonDefault "2"}";
    };

    maxResponse = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      description = "Maximum response delay in the encapsulated General Query. ${daemonDefault "10s"}";
    };

    secretRotation = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      description = "How often the Response MAC secret is replaced. ${daemonDefault "60s"}";
    };

    maxRepliesPerSec = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.unsigned;
      default = null;
      description = ''
        Most Queries and Advertisements sent per second (caps reflection toward spoofed
        sources; 0: unlimited). ${daemonDefault "10000"}
      '';
    };

    batch = lib.mkOption {
      type = lib.types.nullOr (lib.types.ints.between 1 1024);
      default = null;
      description = "Native packets received per batch and largest GSO run. ${daemonDefault "64"}";
    };

    receiveBuffer = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.positive;
      default = null;
      description = "Upstream receive buffer in bytes (the PACKET_RX_RING). ${daemonDefault "4 MiB"}";
    };

    gso = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Whether to coalesce Data to one gateway with UDP GSO.";
    };

    rxRing = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Whether to read the upstream interface through a memory-mapped PACKET_RX_RING (else recvmmsg).";
    };

    logLevel = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = "info";
      description = ''
        Log filter (RUST_LOG syntax). `null`: the `log-level` of the configuration file
        ({option}`services.amt-relay.configFile`), which `systemctl reload amt-relay` applies, else
        the daemon's default (info).
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

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Whether to open {option}`services.amt-relay.port` (UDP) in the firewall.";
    };

    metricsListen = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "127.0.0.1:9104";
      description = ''
        Address and port (`ADDR:PORT`, `[IPv6]:PORT`) of the OpenMetrics endpoint (`GET /metrics`;
        every metric is prefixed `amt_relay_`). `null`: no endpoint. It has no authentication:
        listen on a loopback or management address.
      '';
    };

    settings = lib.mkOption {
      type = settingsFormat.type;
      default = { };
      example = lib.literalExpression ''
        {
          query-interval = "60s";
          max-replies-per-sec = 5000;
        }
      '';
      description = ''
        Further settings, written to a TOML file passed with `--config`. The keys are amt-relay's
        long flags without the leading dashes (`amt-relay --help`), arrays for flags that may be
        repeated, `true` for switches. A key amt-relay does not know stops it at start, naming the
        key and its line. The options of this module that are set (not `null`, not empty) are passed
        as flags and win over the file.
      '';
    };

    configFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = "/etc/multicast-ingest/amt-relay.toml";
      description = ''
        A TOML configuration file for `--config`, instead of one generated from
        {option}`services.amt-relay.settings`. A file outside the Nix store is read again on
        `systemctl reload amt-relay` (SIGHUP), which applies the settings that can change at run
        time; the daemon's user must be able to read it.
      '';
    };

    extraArgs = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Further command line arguments for amt-relay.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.configFile == null || cfg.settings == { };
        message = "services.amt-relay: set settings or configFile, not both.";
      }
      {
        assertion = lib.all (d: lib.elem d (cfg.discoveryAddresses ++ cfg.relayAddresses)) (
          lib.attrNames cfg.advertise
        );
        message = "services.amt-relay.advertise: every key must be one of services.amt-relay.discoveryAddresses (or relayAddresses).";
      }
      {
        assertion = lib.all (r: lib.elem r cfg.relayAddresses) (lib.attrValues cfg.advertise);
        message = "services.amt-relay.advertise: every value must be one of services.amt-relay.relayAddresses.";
      }
    ];

    environment.systemPackages = [ cfg.package ];

    networking.firewall.allowedUDPPorts = lib.mkIf cfg.openFirewall [ cfg.port ];

    # The relay asks for a 4 MiB send buffer (and, without the RX ring, its receive buffer);
    # without CAP_NET_ADMIN the kernel caps them at these limits.
    boot.kernel.sysctl."net.core.wmem_max" = lib.mkDefault 4194304;
    boot.kernel.sysctl."net.core.rmem_max" = lib.mkDefault 4194304;

    systemd.services.amt-relay = {
      description = "amt-relay, AMT relay (RFC 7450)";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];

      serviceConfig = common.serviceHardening // {
        ExecStart = utils.escapeSystemdExecArgs ([ (lib.getExe' cfg.package "amt-relay") ] ++ args);
        # `amt-relay status` finds the control socket here ($RUNTIME_DIRECTORY).
        RuntimeDirectory = "amt-relay";
        CapabilityBoundingSet = capabilities;
        AmbientCapabilities = capabilities;
        # AF_PACKET: the upstream receive socket.
        RestrictAddressFamilies = common.serviceHardening.RestrictAddressFamilies ++ [ "AF_PACKET" ];
      };
    };
  };
}
