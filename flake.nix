{
  description = "multicast-ingest: receive internet multicast inside your network (PIM-SSM, DRIAD, AMT, bandwidth admission), with a virtual lab";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      # Linux only: network namespaces, multicast routing (MRT) and TUN.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});

      daemons = [
        "pimwatch"
        "cbacc"
        "driad-ingest"
        "amt-relay"
      ];

      # A daemon's module with its package defaulting to this flake's (the module files are
      # nixpkgs-style and would otherwise look for pkgs.multicast-ingest). The key lets the
      # module system import it once when both `default` and the daemon's module are used.
      daemonModule =
        name:
        { lib, pkgs, ... }:
        {
          key = "${toString ./.}#nixosModules.${name}";
          imports = [ ./nix/modules/${name}.nix ];
          config.services.${name}.package =
            lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };
    in
    {
      packages = forAllSystems (
        system: pkgs:
        let
          multicast-ingest = pkgs.callPackage ./nix/package.nix { };
          lab = pkgs.callPackage ./nix/lab.nix { inherit multicast-ingest; };
          # `nix run .#pimwatch -- status` and the like: the same build, another main program.
          perBinary = lib.genAttrs (daemons ++ [ "mcast-lab" ]) (
            bin: multicast-ingest // { meta = multicast-ingest.meta // { mainProgram = bin; }; }
          );
        in
        perBinary
        // {
          inherit multicast-ingest lab;
          default = multicast-ingest;
        }
      );

      apps = forAllSystems (
        system: pkgs:
        let
          lab = {
            type = "app";
            program = lib.getExe self.packages.${system}.lab;
            meta.description = "Bring the multicast-ingest demo lab up (needs root: asks sudo)";
          };
        in
        {
          inherit lab;
          default = lab;
        }
      );

      # pkgs.multicast-ingest, for nixpkgs-style use of the modules (their default package).
      overlays.default = final: prev: {
        multicast-ingest = final.callPackage ./nix/package.nix { };
      };

      nixosModules = lib.genAttrs daemons daemonModule // {
        default = {
          imports = map daemonModule daemons;
        };
      };

      checks = forAllSystems (
        system: pkgs:
        # callPackages: the file returns several derivations (clippy, fmt, tests).
        pkgs.callPackages ./nix/checks.nix { multicast-ingest = self.packages.${system}.default; }
        // {
          package = self.packages.${system}.default;
          lab-app = self.packages.${system}.lab;
          lab-vm = pkgs.testers.runNixOSTest (import ./nix/tests/lab.nix { inherit self; });
        }
      );

      devShells = forAllSystems (
        system: pkgs: {
          default = pkgs.callPackage ./nix/devshell.nix { };
        }
      );
    };
}
