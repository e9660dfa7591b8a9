# `nix develop`: the Rust toolchain and everything lab/test uses (FRR, iproute2, tshark, tcpdump,
# dig, setpriv, nft), plus cargo-nextest and cargo-fuzz. The fuzz targets need a nightly
# toolchain, which nixpkgs does not ship: `cargo fuzz build` needs one from elsewhere.
{
  mkShell,
  cargo,
  rustc,
  clippy,
  rustfmt,
  rust-analyzer,
  rustPlatform,
  cargo-nextest,
  cargo-fuzz,
  frr,
  iproute2,
  tcpdump,
  wireshark-cli,
  util-linux,
  dnsutils,
  nftables,
}:

mkShell {
  packages = [
    cargo
    rustc
    clippy
    rustfmt
    rust-analyzer
    cargo-nextest
    cargo-fuzz
    frr
    iproute2
    tcpdump
    wireshark-cli
    util-linux
    dnsutils
    nftables
  ];

  # mcast-lab looks for FRR's daemons here (Debian's are in /usr/lib/frr).
  MCAST_LAB_FRR_DIR = "${frr}/libexec/frr";
  RUST_SRC_PATH = "${rustPlatform.rustLibSrc}";
}
