# `nix flake check`: formatting, clippy and the whole test suite, each a derivation that builds
# from the package's source and vendored crates. The package itself (with its unit tests) and
# the NixOS VM test are added in flake.nix.
{
  stdenv,
  runCommand,
  rustPlatform,
  cargo,
  rustc,
  clippy,
  rustfmt,
  multicast-ingest,
}:

let
  inherit (multicast-ingest) src cargoDeps version;

  # A cargo command over the workspace, offline against the vendored dependencies.
  cargoCheck =
    name: extraInputs: command:
    stdenv.mkDerivation {
      pname = "multicast-ingest-${name}";
      inherit src cargoDeps version;
      nativeBuildInputs = [
        rustPlatform.cargoSetupHook
        cargo
        rustc
      ]
      ++ extraInputs;
      # tshark's cross-check is not in the sandbox; tests that need root skip themselves.
      env.MCAST_SKIP_TSHARK = "1";
      buildPhase = ''
        runHook preBuild
        export CARGO_BUILD_JOBS=$NIX_BUILD_CORES
        export INSTA_WORKSPACE_ROOT=$PWD
        ${command}
        runHook postBuild
      '';
      installPhase = ''
        touch $out
      '';
    };
in
{
  clippy = cargoCheck "clippy" [ clippy ] "cargo clippy --offline --workspace --all-targets -- -D warnings";

  # Every test of the workspace: unit tests, the integration tests that run unprivileged, and
  # the namespace tests' own "needs root" notices (lab/test runs those as root).
  tests = cargoCheck "tests" [ ] "cargo test --offline --workspace";

  # rustfmt straight on the sources: no dependency resolution needed.
  fmt = runCommand "multicast-ingest-fmt" { nativeBuildInputs = [ rustfmt ]; } ''
    cd ${src}
    find crates lab -name '*.rs' -print0 | xargs -0 rustfmt --check --edition 2024
    touch $out
  '';
}
