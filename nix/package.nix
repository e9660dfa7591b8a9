# Every binary of the Cargo workspace: pimwatch, cbacc, driad-ingest, amt-relay and mcast-lab.
{
  lib,
  stdenv,
  rustPlatform,
  installShellFiles,
}:

let
  workspace = (lib.importTOML ../Cargo.toml).workspace.package;
in
rustPlatform.buildRustPackage {
  pname = "multicast-ingest";
  inherit (workspace) version;

  # Only what cargo reads: the workspace, its crates, the lab (whose topology, FRR templates and
  # zones are compiled in) and the scenarios (the lab's unit tests parse them). fuzz/ is a
  # workspace of its own and stays out.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../rustfmt.toml
      ../crates
      ../lab
      ../scenarios
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  cargoBuildFlags = [ "--workspace" ];

  # The unit tests only (library and binary targets). The integration tests need root and
  # network namespaces (they skip themselves without), tshark, or both: they run in
  # `checks.<system>.tests` and in lab/test.
  cargoTestFlags = [
    "--workspace"
    "--lib"
    "--bins"
  ];
  env.MCAST_SKIP_TSHARK = "1";
  # insta finds the snapshots relative to the workspace root.
  preCheck = ''
    export INSTA_WORKSPACE_ROOT=$PWD
  '';

  nativeBuildInputs = [ installShellFiles ];

  # Shell completions and man pages, for the binaries that generate them (`<bin> completions
  # SHELL`, `<bin> manpage`: issue 12, clap_complete and clap_mangen). Until then every probe
  # fails and nothing is installed; a binary's exit status decides, so this needs no change
  # when they arrive.
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    for bin in pimwatch cbacc driad-ingest amt-relay mcast-lab; do
      [ -x "$out/bin/$bin" ] || continue
      if timeout 10 "$out/bin/$bin" completions bash > /dev/null 2>&1; then
        installShellCompletion --cmd "$bin" \
          --bash <("$out/bin/$bin" completions bash) \
          --fish <("$out/bin/$bin" completions fish) \
          --zsh <("$out/bin/$bin" completions zsh)
      fi
      if timeout 10 "$out/bin/$bin" manpage > "$bin.1" 2> /dev/null && [ -s "$bin.1" ]; then
        installManPage "$bin.1"
      fi
    done
  '';

  meta = {
    description = "Receive internet multicast inside your network: PIM-SSM ingest, DRIAD relay discovery, AMT tunnels, bandwidth admission";
    longDescription = ''
      pimwatch turns the network's PIM-SSM joins into a joinfile and kernel multicast
      forwarding; cbacc keeps the joined set under a bandwidth cap using DORMS metadata;
      driad-ingest finds each source's AMT relay through DNS AMTRELAY records (RFC 8777) and
      injects the tunnelled traffic (RFC 7450) as native multicast; amt-relay is an AMT relay;
      mcast-lab runs the whole chain in network namespaces with FRR.
    '';
    homepage = workspace.repository;
    license = with lib.licenses; [
      mit
      asl20
    ];
    mainProgram = "mcast-lab";
    platforms = lib.platforms.linux;
  };
}
