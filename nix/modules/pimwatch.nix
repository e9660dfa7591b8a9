# pimwatch: the PIM-SSM upstream neighbour of the ingest device. It writes the joined (S,G)s to
# a joinfile (for cbacc or driad-ingest) and programs kernel multicast forwarding from the
# native interface (driad-ingest's TUN) to the downstream interfaces that joined.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:

let
  cfg = config.services.pimwatch;

  settingsFormat = pkgs.formats.toml { };
  # The file given with --config: the operator's, else one generated from `settings`, else none.
  configFile =
    if cfg.configFile != null then
      cfg.configFile
    else if cfg.settings != { } then
      settingsFormat.generate "pimwatch.toml" cfg.settings
    else
      null;
  common = config.services.multicast-ingest;

  opt = flag: value: lib.optionals (value != null) [
    flag
    (toString value)
  ];

  args =
    lib.concatMap (interface: [
      "--interface"
      interface
    ]) cfg.interfaces
    ++ opt "--native-interface" cfg.nativeInterface
    ++ [
      "--joinfile"
      (toString cfg.joinfile)
      "--joinfile-mode"
      cfg.joinfileMode
    ]
    ++ lib.concatMap (range: [
      "--ssm-range"
      range
    ]) cfg.ssmRanges
    ++ lib.optional cfg.ipv6 "--ipv6"
    ++ lib.optional (!cfg.forwarding) "--no-forwarding"
    ++ opt "--mroute-table" cfg.mrouteTable
    ++ opt "--hello-period" cfg.helloPeriod
    ++ opt "--hello-holdtime" cfg.helloHoldtime
    ++ opt "--triggered-hello-delay" cfg.triggeredHelloDelay
    ++ opt "--dr-priority" cfg.drPriority
    ++ opt "--restore-holdtime" cfg.restoreHoldtime
    ++ opt "--max-sgs" cfg.maxSgs
    ++ opt "--log-level" cfg.logLevel
    ++ [
      "--log-format"
      cfg.logFormat
    ]
    ++ opt "--metrics-listen" cfg.metricsListen
    ++ opt "--config" configFile
    ++ cfg.extraArgs;

  # A duration as the daemons parse it (humantime): "30s", "100ms", "3m 30s".
  duration = lib.types.strMatching "[0-9]+ ?[a-z]+( ?[0-9]+ ?[a-z]+)*";
  daemonDefault = text: "`null`: the daemon's default (${text}).";

  # The raw IGMP socket that becomes the multicast routing socket (MRT_INIT) and the raw PIM
  # sockets need CAP_NET_RAW. The kernel lets the socket that did MRT_INIT add VIFs and MFC
  # entries without CAP_NET_ADMIN; only MRT_TABLE (mrouteTable), set before MRT_INIT, needs it
  # (scenarios/hostile-least-privilege.toml checks the lab's service).
  capabilities = [
    "CAP_NET_RAW"
  ]
  ++ lib.optional (cfg.forwarding && cfg.mrouteTable != null) "CAP_NET_ADMIN";
in
{
  imports = [ ./common.nix ];

  options.services.pimwatch = {
    enable = lib.mkEnableOption "pimwatch, the PIM-SSM upstream neighbour of the multicast ingest device";

    package = lib.mkPackageOption pkgs "multicast-ingest" { };

    interfaces = lib.mkOption {
      type = lib.types.nonEmptyListOf lib.types.str;
      example = [ "eth1" ];
      description = ''
        Downstream interfaces toward the operator's PIM routers. The union of the Joins received
        on all of them is the joined set. PIM must reach pimwatch on them: see
        {option}`services.pimwatch.openFirewall`.
      '';
    };

    nativeInterface = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = "amt0";
      description = ''
        Interface where decapsulated traffic arrives: driad-ingest's TUN
        ({option}`services.driad-ingest.nativeInterface`). It may appear after pimwatch starts,
        vanish and return. May be `null` only with {option}`services.pimwatch.forwarding` off.
      '';
    };

    forwarding = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Whether pimwatch programs kernel multicast forwarding (MRT). Turn it off where another
        daemon owns the multicast routing table: pimwatch then only writes the joinfile.
      '';
    };

    joinfile = lib.mkOption {
      type = lib.types.path;
      default = "${toString common.joinfileDirectory}/pimwatch.sgs";
      defaultText = lib.literalExpression ''"''${config.services.multicast-ingest.joinfileDirectory}/pimwatch.sgs"'';
      description = ''
        Joinfile to write (one `SOURCE,GROUP` per line, replaced atomically when the set
        changes). After a restart pimwatch holds the (S,G)s it finds there for
        {option}`services.pimwatch.restoreHoldtime`.
      '';
    };

    joinfileMode = lib.mkOption {
      type = lib.types.strMatching "[0-7]{3,4}";
      default = "640";
      description = "File mode of the joinfile (octal): readable by the joinfile group.";
    };

    ssmRanges = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "232.0.0.0/7" ];
      description = ''
        Group ranges handled as SSM; Joins for other groups are ignored. Empty: 232.0.0.0/8 and
        ff3x::/32 (RFC 4607).
      '';
    };

    ipv6 = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Whether to speak PIM over IPv6 too and program IPv6 forwarding (MRT6).";
    };

    mrouteTable = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.unsigned;
      default = null;
      description = "Kernel multicast routing table (MRT_TABLE). `null`: the main table.";
    };

    helloPeriod = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      example = "10s";
      description = "Interval between periodic Hellos. ${daemonDefault "30s"}";
    };

    helloHoldtime = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      description = "Holdtime advertised in Hellos. ${daemonDefault "3.5 × the Hello period"}";
    };

    triggeredHelloDelay = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      description = "Largest random delay before a triggered Hello. ${daemonDefault "100ms"}";
    };

    drPriority = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.u32;
      default = null;
      description = "DR Priority advertised in Hellos. ${daemonDefault "1"}";
    };

    restoreHoldtime = lib.mkOption {
      type = lib.types.nullOr duration;
      default = null;
      description = ''
        How long the (S,G)s of the previous joinfile are held after a restart unless a Prune
        comes first. ${daemonDefault "210s, one J/P holdtime"}
      '';
    };

    maxSgs = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.positive;
      default = null;
      description = "Most (S,G)s held at once; further Joins are dropped. ${daemonDefault "100000"}";
    };

    logLevel = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = "info";
      example = "info,mcast_pim=debug";
      description = ''
        Log filter (RUST_LOG syntax). `null`: the `log-level` of the configuration file
        ({option}`services.pimwatch.configFile`), which `systemctl reload pimwatch` applies, else
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
      description = ''
        Whether to accept PIM (IP protocol 103) on {option}`services.pimwatch.interfaces` in the
        NixOS firewall. Without it (and with the firewall on) no PIM adjacency forms.
      '';
    };

    metricsListen = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "127.0.0.1:9101";
      description = ''
        Address and port (`ADDR:PORT`, `[IPv6]:PORT`) of the OpenMetrics endpoint (`GET /metrics`;
        every metric is prefixed `pimwatch_`). `null`: no endpoint. It has no authentication: listen
        on a loopback or management address.
      '';
    };

    settings = lib.mkOption {
      type = settingsFormat.type;
      default = { };
      example = lib.literalExpression ''
        {
          hello-period = "10s";
          ssm-range = [ "232.0.0.0/7" ];
        }
      '';
      description = ''
        Further settings, written to a TOML file passed with `--config`. The keys are pimwatch's
        long flags without the leading dashes (`pimwatch --help`), arrays for flags that may be
        repeated, `true` for switches. A key pimwatch does not know stops it at start, naming the
        key and its line. The options of this module that are set (not `null`, not empty) are passed
        as flags and win over the file.
      '';
    };

    configFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = "/etc/multicast-ingest/pimwatch.toml";
      description = ''
        A TOML configuration file for `--config`, instead of one generated from
        {option}`services.pimwatch.settings`. A file outside the Nix store is read again on
        `systemctl reload pimwatch` (SIGHUP), which applies the settings that can change at run
        time; the daemon's user must be able to read it.
      '';
    };

    extraArgs = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [
        "--max-sgs"
        "5000"
      ];
      description = "Further command line arguments for pimwatch.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.configFile == null || cfg.settings == { };
        message = "services.pimwatch: set settings or configFile, not both.";
      }
      {
        assertion = cfg.forwarding -> cfg.nativeInterface != null;
        message = "services.pimwatch.nativeInterface is required unless services.pimwatch.forwarding is off.";
      }
      {
        assertion = !(lib.elem cfg.nativeInterface cfg.interfaces);
        message = "services.pimwatch.nativeInterface (${toString cfg.nativeInterface}) must not be one of services.pimwatch.interfaces.";
      }
    ];

    environment.systemPackages = [ cfg.package ];

    networking.firewall = lib.mkIf cfg.openFirewall (
      lib.mkMerge [
        (lib.mkIf config.networking.nftables.enable {
          extraInputRules = ''
            iifname { ${lib.concatMapStringsSep ", " (i: ''"${i}"'') cfg.interfaces} } meta l4proto 103 accept comment "PIM for pimwatch"
          '';
        })
        (lib.mkIf (!config.networking.nftables.enable) {
          extraCommands = lib.concatMapStrings (
            interface:
            ''
              iptables -A nixos-fw -i ${interface} -p 103 -j nixos-fw-accept
            ''
            + lib.optionalString cfg.ipv6 ''
              ip6tables -A nixos-fw -i ${interface} -p 103 -j nixos-fw-accept
            ''
          ) cfg.interfaces;
        })
      ]
    );

    systemd.services.pimwatch = {
      description = "pimwatch, PIM-SSM upstream neighbour of the multicast ingest device";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];

      serviceConfig = common.serviceHardening // {
        ExecStart = utils.escapeSystemdExecArgs ([ (lib.getExe' cfg.package "pimwatch") ] ++ args);
        # `pimwatch status` finds the control socket here ($RUNTIME_DIRECTORY).
        RuntimeDirectory = "pimwatch";
        SupplementaryGroups = [ common.group ];
        ReadWritePaths = [ (dirOf (toString cfg.joinfile)) ];
        CapabilityBoundingSet = capabilities;
        AmbientCapabilities = capabilities;
      };
    };
  };
}
