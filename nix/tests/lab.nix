# The lab's full-chain scenario on NixOS virtual machines, with the NixOS modules:
#
#   receiver ──vlan 1── router ──vlan 2── ingest ──vlan 3── internet ──vlan 4── source
#   (recv)              (FRR:      (pimwatch, cbacc,  (amt-relay, lab DNS   (mcast-lab send)
#                       IGMPv3,     driad-ingest)      and DORMS servers)
#                       PIM)
#
# A receiver's IGMPv3 join becomes FRR's PIM Join toward pimwatch, pimwatch's joinfile goes
# through cbacc (which admits the flow at the bitrate the lab DORMS server publishes, over HTTPS
# with the lab's throwaway CA) to driad-ingest, which finds the relay of 198.51.100.10 in the lab's AMTRELAY
# zone (on the lab DNS server), opens an AMT tunnel to amt-relay and injects the stream into its
# TUN, and pimwatch's forwarding sends it down to the receiver. Leaving tears it all down.
#
# The source is a node of its own: amt-relay reads its upstream interface with AF_PACKET, which
# never sees what its own host sends. Only documentation addresses are used (RFC 5737):
#
#   vlan 1 rcvlan   192.0.2.32/28     router .33, receiver .34
#   vlan 2 ingdown  192.0.2.16/28     router .17, ingest .18 (pimwatch)
#   vlan 3 ingup    192.0.2.0/28      internet .1, ingest .2; on internet also 203.0.113.15
#                                     (relay), .53 (DNS), .80 (DORMS), as in the lab's zones
#   vlan 4 srclan   198.51.100.0/24   internet .1 (relay's upstream), source .10
{ self }:

{ lib, ... }:

let
  # An interface with exactly these IPv4 addresses ("ADDR/LEN"), replacing the test framework's.
  addresses = cidrs: {
    ipv4.addresses = lib.mkForce (
      map (
        cidr:
        let
          parts = lib.splitString "/" cidr;
        in
        {
          address = lib.head parts;
          prefixLength = lib.toInt (lib.last parts);
        }
      ) cidrs
    );
    ipv6.addresses = lib.mkForce [ ];
  };

  base =
    { pkgs, ... }:
    {
      networking.useDHCP = false;
      networking.firewall.enable = lib.mkDefault false;
      environment.systemPackages = [
        self.packages.${pkgs.stdenv.hostPlatform.system}.default
        pkgs.jq
      ];
    };

  mcastLab = pkgs: lib.getExe' self.packages.${pkgs.stdenv.hostPlatform.system}.default "mcast-lab";

  sourceAddress = "198.51.100.10";
  groupAddress = "232.1.1.1";
  sg = "${sourceAddress},${groupAddress}";
in
{
  name = "multicast-ingest-lab";

  nodes = {
    receiver =
      { pkgs, ... }:
      {
        imports = [ base ];
        virtualisation.vlans = [ 1 ];
        networking.primaryIPAddress = lib.mkForce "192.0.2.34";
        networking.interfaces.eth1 = addresses [ "192.0.2.34/28" ];
        networking.defaultGateway = {
          address = "192.0.2.33";
          interface = "eth1";
        };

        # Holds a join until stopped (the leave is its SIGTERM), with a report file.
        systemd.services.recv-hold = {
          description = "mcast-lab receiver holding (${sourceAddress}, ${groupAddress})";
          serviceConfig = {
            ExecStart = "${mcastLab pkgs} recv --source ${sourceAddress} --group ${groupAddress} --interface eth1 --count 0 --stats-file /run/recv-hold.json";
          };
        };
      };

    router =
      { ... }:
      {
        imports = [ base ];
        virtualisation.vlans = [
          1
          2
        ];
        networking.primaryIPAddress = lib.mkForce "192.0.2.17";
        networking.interfaces.eth1 = addresses [ "192.0.2.33/28" ];
        networking.interfaces.eth2 = addresses [ "192.0.2.17/28" ];

        # IGMPv3 toward the receivers, PIM on both sides; the RPF route to the sources points at
        # the ingest device's PIM address (pimd resolves RPF through the unicast RIB). The SSM
        # range is pimd's default, 232.0.0.0/8. A leave prunes after 0.1 s.
        services.frr = {
          pimd.enable = true;
          config = ''
            ip route 198.51.100.0/24 192.0.2.18
            !
            interface eth1
             ip pim
             ip igmp
             ip igmp version 3
             ip igmp last-member-query-interval 1
             ip igmp last-member-query-count 1
            exit
            !
            interface eth2
             ip pim
            exit
          '';
        };
      };

    ingest =
      { ... }:
      {
        imports = [
          base
          self.nixosModules.default
        ];
        virtualisation.vlans = [
          2
          3
        ];
        networking.primaryIPAddress = lib.mkForce "192.0.2.2";
        networking.interfaces.eth1 = addresses [ "192.0.2.18/28" ];
        networking.interfaces.eth2 = addresses [ "192.0.2.2/28" ];
        networking.defaultGateway = {
          address = "192.0.2.1";
          interface = "eth2";
        };
        # The firewall stays on here, as on a real ingest device: the modules open what they
        # need, and the reverse-path filter must be loose for the traffic arriving on the TUN.
        networking.firewall = {
          enable = true;
          checkReversePath = "loose";
        };

        services.pimwatch = {
          enable = true;
          interfaces = [ "eth1" ];
          openFirewall = true;
          logLevel = "debug";
        };
        services.cbacc = {
          enable = true;
          bandwidth = "10Mbit/s";
          # The lab DORMS server publishes 4 Mbit/s for the flow; this applies only without it.
          defaultRate = "1Mbit/s";
          nameservers = [ "203.0.113.53" ];
          # The lab CA, made by the DORMS server at its first start: the test script copies it
          # here and then starts cbacc.
          caFiles = [ "/var/lib/dorms-ca/ca.pem" ];
          logLevel = "debug";
        };
        systemd.services.cbacc.wantedBy = lib.mkForce [ ];
        services.driad-ingest = {
          enable = true;
          nameservers = [ "203.0.113.53" ];
          logLevel = "debug";
        };
      };

    internet =
      { pkgs, ... }:
      {
        imports = [
          base
          self.nixosModules.amt-relay
        ];
        virtualisation.vlans = [
          3
          4
        ];
        networking.primaryIPAddress = lib.mkForce "192.0.2.1";
        networking.interfaces.eth1 = addresses [
          "192.0.2.1/28"
          "203.0.113.15/32"
          "203.0.113.53/32"
          "203.0.113.80/32"
        ];
        networking.interfaces.eth2 = addresses [ "198.51.100.1/24" ];
        networking.firewall = {
          enable = true;
          allowedUDPPorts = [ 53 ];
          allowedTCPPorts = [
            53
            443
          ];
        };

        services.amt-relay = {
          enable = true;
          relayAddresses = [ "203.0.113.15" ];
          upstreamInterface = "eth2";
          queryInterval = "10s";
          openFirewall = true;
          logLevel = "debug";
        };

        # The lab's authoritative DNS server with the lab's zones: 198.51.100.10's AMTRELAY
        # records name 203.0.113.15 first.
        systemd.services.lab-dns = {
          description = "mcast-lab DNS server (the lab's AMTRELAY zones)";
          wantedBy = [ "multi-user.target" ];
          wants = [ "network-online.target" ];
          after = [ "network-online.target" ];
          # Until 203.0.113.53 is configured the bind fails: retry.
          startLimitIntervalSec = 0;
          serviceConfig = {
            ExecStart = "${mcastLab pkgs} dns-server --listen 203.0.113.53:53 --zone-dir /run/lab-dns/zones --lab-zones";
            DynamicUser = true;
            RuntimeDirectory = "lab-dns";
            AmbientCapabilities = [ "CAP_NET_BIND_SERVICE" ];
            CapabilityBoundingSet = [ "CAP_NET_BIND_SERVICE" ];
            Restart = "on-failure";
            RestartSec = 1;
          };
        };

        # The lab DORMS server (HTTPS, host-meta, RESTCONF) with the lab's flows; its CA is
        # made at the first start and kept in the state directory.
        systemd.services.lab-dorms = {
          description = "mcast-lab DORMS server (the lab's flows)";
          wantedBy = [ "multi-user.target" ];
          wants = [ "network-online.target" ];
          after = [ "network-online.target" ];
          # Until 203.0.113.80 is configured the bind fails: retry.
          startLimitIntervalSec = 0;
          serviceConfig = {
            ExecStart = "${mcastLab pkgs} dorms-server --listen 203.0.113.80:443 --flows /var/lib/lab-dorms/flows.toml --lab-flows --ca-dir /var/lib/lab-dorms/ca --name dorms.example.net";
            DynamicUser = true;
            StateDirectory = "lab-dorms";
            AmbientCapabilities = [ "CAP_NET_BIND_SERVICE" ];
            CapabilityBoundingSet = [ "CAP_NET_BIND_SERVICE" ];
            Restart = "on-failure";
            RestartSec = 1;
          };
        };
      };

    source =
      { pkgs, ... }:
      {
        imports = [ base ];
        virtualisation.vlans = [ 4 ];
        networking.primaryIPAddress = lib.mkForce "198.51.100.10";
        networking.interfaces.eth1 = addresses [ "198.51.100.10/24" ];

        # A steady stream, 20 packets/s, from boot on.
        systemd.services.mcast-send = {
          description = "mcast-lab sender of (${sourceAddress}, ${groupAddress})";
          wantedBy = [ "multi-user.target" ];
          wants = [ "network-online.target" ];
          after = [ "network-online.target" ];
          startLimitIntervalSec = 0;
          serviceConfig = {
            ExecStart = "${mcastLab pkgs} send --source ${sourceAddress} --group ${groupAddress} --port 5001 --rate 20 --count 0 --size 200 --interface eth1";
            DynamicUser = true;
            Restart = "on-failure";
            RestartSec = 1;
          };
        };
      };
  };

  testScript =
    { nodes, ... }:
    let
      pimwatchJoinfile = toString nodes.ingest.services.pimwatch.joinfile;
      cbaccOutput = toString nodes.ingest.services.cbacc.outputFile;
    in
    ''
    import json

    start_all()

    with subtest("every service is up"):
        internet.wait_for_unit("amt-relay.service")
        internet.wait_for_unit("lab-dns.service")
        internet.wait_for_unit("lab-dorms.service")
        # cbacc trusts the lab CA, which exists once the DORMS server has started.
        internet.wait_for_file("/var/lib/lab-dorms/ca/ca.pem")
        ca = internet.succeed("base64 -w0 /var/lib/lab-dorms/ca/ca.pem").strip()
        ingest.succeed(
            f"mkdir -p /var/lib/dorms-ca && echo {ca} | base64 -d > /var/lib/dorms-ca/ca.pem",
            "systemctl start cbacc.service",
        )
        source.wait_for_unit("mcast-send.service")
        router.wait_for_unit("frr.service")
        for unit in ["pimwatch", "cbacc", "driad-ingest"]:
            ingest.wait_for_unit(f"{unit}.service")
        receiver.wait_for_unit("multi-user.target")

    with subtest("the lab DNS server names the source's AMT relay"):
        ingest.wait_until_succeeds(
            "driad-ingest lookup ${sourceAddress} --nameserver 203.0.113.53 | grep -F 203.0.113.15",
            timeout=60,
        )

    with subtest("FRR sees pimwatch as its PIM neighbour"):
        router.wait_until_succeeds(
            "vtysh -c 'show ip pim neighbor' | grep -F 192.0.2.18",
            timeout=90,
        )

    with subtest("a join brings the stream through the whole chain"):
        receiver.succeed("systemctl start recv-hold.service")
        ingest.wait_until_succeeds(
            "grep -Fx '${sg}' ${pimwatchJoinfile}", timeout=60
        )
        ingest.wait_until_succeeds(
            "grep -F '${sg}' ${cbaccOutput}", timeout=60
        )
        # Admitted at the DORMS server's 4 Mbit/s (max-speed 4000 kbit/s), not the default.
        ingest.wait_until_succeeds(
            "cbacc status --json | jq -e '.flows[] | select(.sg == \"${sg}\")"
            + " | .admitted and .rate_bps == 4000000'",
            timeout=60,
        )
        # A second receiver on the same host counts 20 packets in order, or fails after 90 s.
        receiver.succeed(
            "mcast-lab recv --source ${sourceAddress} --group ${groupAddress} --interface eth1"
            + " --count 20 --timeout 90s --json >&2",
            timeout=120,
        )
        status = json.loads(ingest.succeed("driad-ingest status --json"))
        tunnels = status["tunnels"]
        assert len(tunnels) == 1, f"one tunnel expected: {tunnels}"
        assert tunnels[0]["phase"] == "established", f"tunnel not established: {tunnels}"
        ingest.succeed("ip mroute show | grep -F '${sourceAddress}' | grep -F amt0")
        receiver.wait_until_succeeds(
            "jq -e '.received >= 20 and .duplicates == 0' /run/recv-hold.json", timeout=30
        )

    with subtest("leaving tears the tunnel down"):
        receiver.succeed("systemctl stop recv-hold.service")
        ingest.wait_until_fails(
            "grep -F '${sourceAddress}' ${pimwatchJoinfile}", timeout=60
        )
        ingest.wait_until_succeeds(
            "driad-ingest status --json | jq -e '.tunnels | length == 0'", timeout=60
        )
        ingest.succeed("journalctl -u driad-ingest.service | grep -F 'tearing it down'")
        internet.succeed("amt-relay status")
  '';
}
