# All four daemons. Each module takes its package from `pkgs.multicast-ingest` unless
# `services.<name>.package` is set; the flake's nixosModules set it to the flake's package.
{
  imports = [
    ./pimwatch.nix
    ./cbacc.nix
    ./driad-ingest.nix
    ./amt-relay.nix
  ];
}
