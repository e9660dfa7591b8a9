# The virtual lab with everything it runs on its PATH: `nix run .#lab` brings the demo lab up.
#
# mcast-lab finds the daemons next to its own executable (multicast-ingest's bin/), FRR's
# daemons through MCAST_LAB_FRR_DIR, and ip, tcpdump, tshark, setpriv, vtysh and dig on PATH;
# the services it starts inherit that PATH. FRR drops privileges to user `frr`; where that user
# does not exist the lab runs FRR as root with group `frrvty`, which must exist (lab/README.md).
{
  lib,
  runCommand,
  makeWrapper,
  runtimeShell,
  coreutils,
  multicast-ingest,
  frr,
  iproute2,
  tcpdump,
  wireshark-cli,
  util-linux,
  procps,
  dnsutils,
  nftables,
}:

let
  runtimePath = lib.makeBinPath [
    coreutils
    frr
    iproute2
    tcpdump
    wireshark-cli
    util-linux
    procps
    dnsutils
    nftables
  ];
in
runCommand "mcast-lab-${multicast-ingest.version}"
  {
    nativeBuildInputs = [ makeWrapper ];
    meta = {
      description = "The multicast-ingest virtual lab (network namespaces, FRR, the whole chain)";
      inherit (multicast-ingest.meta) homepage license platforms;
      mainProgram = "mcast-lab-up";
    };
  }
  ''
    mkdir -p $out/bin
    makeWrapper ${lib.getExe' multicast-ingest "mcast-lab"} $out/bin/mcast-lab \
      --prefix PATH : ${runtimePath} \
      --set-default MCAST_LAB_FRR_DIR ${frr}/libexec/frr

    # `mcast-lab up` needs root (network namespaces): ask sudo, as lab/demo does.
    cat > $out/bin/mcast-lab-up <<EOF
    #!${runtimeShell}
    if [ "\$(${coreutils}/bin/id -u)" -ne 0 ]; then
      if command -v sudo > /dev/null 2>&1; then
        exec sudo "\$0" "\$@"
      fi
      echo "mcast-lab: the lab needs root (network namespaces); run this as root" >&2
      exit 1
    fi
    exec $out/bin/mcast-lab up "\$@"
    EOF
    chmod +x $out/bin/mcast-lab-up
  ''
