# What the multicast-ingest modules share: the directory and group of the joinfiles, and the
# systemd hardening every daemon starts from. Each daemon's module imports this file.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.multicast-ingest;

  # The daemons that read or write joinfiles (amt-relay does neither).
  joinfileDaemons = [
    "pimwatch"
    "cbacc"
    "driad-ingest"
  ];
  anyJoinfileDaemon = lib.any (name: config.services.${name}.enable or false) joinfileDaemons;
in
{
  options.services.multicast-ingest = {
    joinfileDirectory = lib.mkOption {
      type = lib.types.path;
      default = "/run/multicast-ingest";
      description = ''
        Directory of the joinfiles that pimwatch writes, cbacc filters and driad-ingest reads.
        It is owned by root and the group {option}`services.multicast-ingest.group`, mode 2770:
        the daemons run as dynamic users with that group, and files created in it inherit it.
      '';
    };

    group = lib.mkOption {
      type = lib.types.str;
      default = "multicast-ingest";
      description = ''
        Group of the joinfile directory, a supplementary group of pimwatch, cbacc and
        driad-ingest. Add a user to it to let them read the joinfiles.
      '';
    };

    serviceHardening = lib.mkOption {
      type = lib.types.attrs;
      internal = true;
      readOnly = true;
      description = "The systemd hardening every multicast-ingest daemon's service starts from.";
      default = {
        # The daemons tell systemd when they are ready (READY=1, once their sockets are open)
        # and stopping, and ping the watchdog from their event loop.
        Type = "notify";
        WatchdogSec = 30;
        # SIGHUP re-reads the --config file and applies what can change at run time.
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        # Exit status 2 is a configuration error: restarting will not fix it.
        RestartPreventExitStatus = 2;
        DynamicUser = true;
        # No capabilities unless a daemon's module grants some (it replaces this).
        CapabilityBoundingSet = "";
        NoNewPrivileges = true;
        # Capabilities must stay in the host's user namespace (MRT, raw sockets, TUN), so no
        # PrivateUsers; and the host's network, so no PrivateNetwork.
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        PrivateMounts = true;
        ProtectProc = "invisible";
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RemoveIPC = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
        ];
        SystemCallErrorNumber = "EPERM";
        # AF_UNIX: control socket and journal; AF_NETLINK: interface and address watching.
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_NETLINK"
          "AF_INET"
          "AF_INET6"
        ];
        UMask = "0027";
        Restart = "on-failure";
        RestartSec = 5;
      };
    };
  };

  config = lib.mkIf anyJoinfileDaemon {
    users.groups.${cfg.group} = { };

    # setgid: joinfiles created here belong to the group, whichever dynamic user writes them.
    systemd.tmpfiles.rules = [ "d ${toString cfg.joinfileDirectory} 2770 root ${cfg.group} - -" ];
  };
}
