//! FRR per namespace without systemd (lab-notes §3): explicit `-f` config, `-i` pid file, `-z`
//! zserv socket, `--vty_socket` run dir, `-A 127.0.0.1`, `--log file:`; zebra first, the others
//! once zebra's zserv.api socket exists. Daemons run in the foreground as children of
//! `mcast-lab` (no `-d`), so the lab holds their PIDs directly.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Directory of the FRR daemons (`MCAST_LAB_FRR_DIR` overrides).
pub fn frr_dir() -> PathBuf {
    std::env::var_os("MCAST_LAB_FRR_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/lib/frr"))
}

/// Checks that a daemon binary exists, with an install hint.
pub fn check_installed(daemon: &str) -> Result<PathBuf> {
    let p = frr_dir().join(daemon);
    if !p.exists() {
        bail!("FRR daemon {} not found: install FRR (apt-get install frr) or set MCAST_LAB_FRR_DIR", p.display());
    }
    Ok(p)
}

/// Paths of one daemon inside a node's FRR directory.
#[derive(Debug, Clone)]
pub struct DaemonPaths {
    pub dir: PathBuf,
    pub daemon: String,
}

impl DaemonPaths {
    pub fn new(dir: &Path, daemon: &str) -> DaemonPaths {
        DaemonPaths { dir: dir.to_path_buf(), daemon: daemon.to_string() }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join(format!("{}.conf", self.daemon))
    }
    pub fn pid(&self) -> PathBuf {
        self.dir.join(format!("{}.pid", self.daemon))
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.daemon))
    }
    /// stdout/stderr of the daemon (normally just zebra's MPLS notice).
    pub fn out(&self) -> PathBuf {
        self.dir.join(format!("{}.out", self.daemon))
    }
    pub fn vty(&self) -> PathBuf {
        self.dir.join(format!("{}.vty", self.daemon))
    }
    pub fn zserv(&self) -> PathBuf {
        self.dir.join("zserv.api")
    }

    /// The command line (lab-notes §3.2, without `-d`: the daemon stays our child).
    pub fn argv(&self, extra: &[String]) -> Vec<String> {
        let mut v = vec![frr_dir().join(&self.daemon).display().to_string()];
        let path = |p: PathBuf| p.display().to_string();
        v.extend(["-f".into(), path(self.config()), "-i".into(), path(self.pid()), "-z".into(), path(self.zserv())]);
        v.extend(["--vty_socket".into(), path(self.dir.clone()), "-A".into(), "127.0.0.1".into()]);
        v.extend(["--log".into(), format!("file:{}", self.log().display())]);
        v.extend(extra.iter().cloned());
        v
    }

    /// The socket whose appearance means the daemon is ready: zserv.api for zebra (the other
    /// daemons connect to it), the daemon's vty socket for the rest.
    pub fn ready_socket(&self) -> PathBuf {
        if self.daemon == "zebra" { self.zserv() } else { self.vty() }
    }
}

/// FRR's vty group. Debian's and nixpkgs' FRR are built with `--enable-vty-group=frrvty`, and
/// every daemon exits at start unless that group exists and the user it runs as belongs to it.
pub const VTY_GROUP: &str = "frrvty";

/// Who FRR's daemons run as: they start as root and drop to `-u USER -g GROUP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrrIdentity {
    pub user: String,
    pub group: String,
    pub uid: u32,
    pub gid: u32,
}

impl FrrIdentity {
    /// The daemons' `-u`/`-g` options.
    pub fn args(&self) -> Vec<String> {
        vec!["-u".into(), self.user.clone(), "-g".into(), self.group.clone()]
    }
}

/// The identity for this host: `MCAST_LAB_FRR_USER` (default `frr`, the user FRR's packages
/// create) with its primary group. When the default user does not exist (FRR from Nix on a
/// host without FRR's package), or with `MCAST_LAB_FRR_USER=root`, the daemons run as root with
/// the vty group as their group: FRR accepts `-u root -g frrvty` (the `-g` group counts as a
/// membership of the vty group), not `-u root -g root`.
pub fn identity() -> Result<FrrIdentity> {
    let wanted = std::env::var("MCAST_LAB_FRR_USER").ok().filter(|u| !u.is_empty());
    let user = |name: &str| nix::unistd::User::from_name(name).ok().flatten().map(|u| (u.uid.as_raw(), u.gid.as_raw()));
    let group_name =
        |gid: u32| nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)).ok().flatten().map(|g| g.name);
    let group_gid = |name: &str| nix::unistd::Group::from_name(name).ok().flatten().map(|g| g.gid.as_raw());
    let ident = choose_identity(wanted.as_deref(), user, group_name, group_gid)?;
    if ident.uid == 0 && wanted.is_none() {
        tracing::info!("user frr does not exist: FRR runs as root with group {VTY_GROUP}");
    }
    Ok(ident)
}

/// [`identity`] with the account lookups passed in: `user` gives (uid, primary gid) by name,
/// `group_name` a group's name by gid, `group_gid` a group's gid by name.
pub fn choose_identity(
    wanted: Option<&str>,
    user: impl Fn(&str) -> Option<(u32, u32)>,
    group_name: impl Fn(u32) -> Option<String>,
    group_gid: impl Fn(&str) -> Option<u32>,
) -> Result<FrrIdentity> {
    let name = wanted.unwrap_or("frr");
    if name != "root" {
        match user(name) {
            Some((uid, gid)) => {
                let group = group_name(gid)
                    .with_context(|| format!("the primary group (gid {gid}) of user {name} has no name"))?;
                return Ok(FrrIdentity { user: name.to_string(), group, uid, gid });
            }
            None if wanted.is_some() => bail!("MCAST_LAB_FRR_USER: user {name:?} does not exist"),
            None => {}
        }
    }
    let gid = group_gid(VTY_GROUP).with_context(|| {
        format!(
            "FRR's daemons need group {VTY_GROUP} (they exit with \"could not lookup vty group {VTY_GROUP}\"): \
             install FRR's package (apt-get install frr), or create the group (groupadd -r {VTY_GROUP}; \
             on NixOS: users.groups.{VTY_GROUP} = {{ }};)"
        )
    })?;
    Ok(FrrIdentity { user: "root".into(), group: VTY_GROUP.into(), uid: 0, gid })
}

/// Prepares a node's FRR directory: owned by the user the daemons drop to, configs readable.
pub fn prepare_dir(dir: &Path, ident: &FrrIdentity) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    nix::unistd::chown(dir, Some(nix::unistd::Uid::from_raw(ident.uid)), Some(nix::unistd::Gid::from_raw(ident.gid)))
        .with_context(|| format!("chown {}:{} {}", ident.user, ident.group, dir.display()))?;
    Ok(())
}

/// True once `path` is a socket.
pub fn socket_exists(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.file_type().is_socket()).unwrap_or(false)
}

/// Waits until `check` says the daemon is ready, or fails early if `exited` reports that it
/// died (with the tail of its log in the error).
pub fn wait_ready(
    paths: &DaemonPaths,
    timeout: Duration,
    mut exited: impl FnMut() -> Option<String>,
) -> Result<Duration> {
    let t0 = Instant::now();
    let sock = paths.ready_socket();
    loop {
        crate::signals::check()?;
        if socket_exists(&sock) {
            return Ok(t0.elapsed());
        }
        if let Some(status) = exited() {
            bail!("FRR {} exited during start-up ({status}){}", paths.daemon, log_tail(paths));
        }
        if t0.elapsed() > timeout {
            bail!("FRR {} not ready after {timeout:?} ({} missing){}", paths.daemon, sock.display(), log_tail(paths));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn log_tail(paths: &DaemonPaths) -> String {
    let mut s = String::new();
    for p in [paths.out(), paths.log()] {
        if let Ok(text) = std::fs::read_to_string(&p) {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n  ");
            if !tail.is_empty() {
                s.push_str(&format!("\n{}:\n  {tail}", p.display()));
            }
        }
    }
    s
}

/// A `vtysh` command against the daemons whose sockets are in `dir`.
pub fn vtysh_command(dir: &Path, commands: &[String]) -> Command {
    let mut c = Command::new("vtysh");
    c.arg("--vty_socket").arg(dir);
    for cmd in commands {
        c.arg("-c").arg(cmd);
    }
    c.env("VTYSH_PAGER", "cat");
    c
}

/// Removes FRR's crash-log directory /var/tmp/frr/<daemon>.<pid> (left behind when a daemon
/// is killed rather than stopped).
pub fn remove_crash_dir(daemon: &str, pid: u32) {
    let p = Path::new("/var/tmp/frr").join(format!("{daemon}.{pid}"));
    if p.exists() {
        let _ = std::fs::remove_dir_all(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_follows_lab_notes() {
        let p = DaemonPaths::new(Path::new("/run/mcast-lab/ml0001/acc/frr"), "pimd");
        let argv = p.argv(&["--extra".into()]).join(" ");
        assert_eq!(
            argv,
            "/usr/lib/frr/pimd -f /run/mcast-lab/ml0001/acc/frr/pimd.conf -i /run/mcast-lab/ml0001/acc/frr/pimd.pid \
             -z /run/mcast-lab/ml0001/acc/frr/zserv.api --vty_socket /run/mcast-lab/ml0001/acc/frr -A 127.0.0.1 \
             --log file:/run/mcast-lab/ml0001/acc/frr/pimd.log --extra"
        );
        assert!(!argv.contains(" -d"), "daemons must stay in the foreground");
        assert_eq!(p.ready_socket(), Path::new("/run/mcast-lab/ml0001/acc/frr/pimd.vty"));
        assert_eq!(DaemonPaths::new(Path::new("/x"), "zebra").ready_socket(), Path::new("/x/zserv.api"));
    }

    #[test]
    fn identity_is_frr_then_root_with_the_vty_group() {
        let users = |name: &str| match name {
            "frr" => Some((103, 107)),
            "alice" => Some((1000, 1000)),
            "root" => Some((0, 0)),
            _ => None,
        };
        let names = |gid: u32| match gid {
            107 => Some("frr".to_string()),
            1000 => Some("alice".to_string()),
            0 => Some("root".to_string()),
            _ => None,
        };
        let vty = |name: &str| (name == VTY_GROUP).then_some(106);
        let none = |_: &str| None;

        // FRR's own user, as its packages create it.
        let id = choose_identity(None, users, names, vty).unwrap();
        assert_eq!(id, FrrIdentity { user: "frr".into(), group: "frr".into(), uid: 103, gid: 107 });
        assert_eq!(id.args(), ["-u", "frr", "-g", "frr"]);
        // Another user by name, with its primary group.
        let id = choose_identity(Some("alice"), users, names, vty).unwrap();
        assert_eq!(id.args(), ["-u", "alice", "-g", "alice"]);
        // No user frr: root, with the vty group as its group (not root's).
        let no_frr = |name: &str| if name == "frr" { None } else { users(name) };
        let id = choose_identity(None, no_frr, names, vty).unwrap();
        assert_eq!(id, FrrIdentity { user: "root".into(), group: "frrvty".into(), uid: 0, gid: 106 });
        assert_eq!(id.args(), ["-u", "root", "-g", "frrvty"]);
        // root asked for explicitly, even where frr exists.
        assert_eq!(choose_identity(Some("root"), users, names, vty).unwrap().uid, 0);
        // Without the vty group FRR cannot start at all: say how to create it.
        let err = choose_identity(None, no_frr, names, none).unwrap_err().to_string();
        assert!(err.contains("groupadd -r frrvty") && err.contains("users.groups.frrvty"), "{err}");
        // A user asked for by name that does not exist is an error, not a silent fallback.
        let err = choose_identity(Some("nosuch"), users, names, vty).unwrap_err().to_string();
        assert!(err.contains("\"nosuch\" does not exist"), "{err}");
    }
}
