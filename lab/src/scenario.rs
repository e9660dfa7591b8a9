//! Scenario files (scenarios/*.toml): an ordered list of steps, each an action (`do = ...`) or
//! an expectation (`expect = ...`) polled until its deadline.
//!
//! ```toml
//! name = "native-forwarding"            # default: the file name
//! description = "..."
//! requires = []                         # binaries that must exist next to mcast-lab
//! timeout = "60s"                       # the whole scenario
//! [vars]                                # topology variable overrides (FRR timers, ...)
//! join_prune_interval = 5
//!
//! [[steps]]
//! do = "start"
//! target = "ing/pim-hello"
//!
//! [[steps]]
//! expect = "received"
//! receiver = "r1"
//! min = 20
//! within = "10s"
//! ```
//!
//! Adding a step kind means adding a variant to [`Action`] or [`Check`] and its execution in
//! the runner; the parser needs no other change.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use crate::util::Dur;

/// A parsed scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub path: PathBuf,
    pub requires: Vec<String>,
    pub timeout: Dur,
    /// Alternative topology file (relative to the scenario file).
    pub topology: Option<PathBuf>,
    pub vars: BTreeMap<String, toml::Value>,
    pub steps: Vec<Step>,
}

/// One step.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based position in the file.
    pub index: usize,
    /// Optional `note = "..."` shown in logs.
    pub note: Option<String>,
    pub kind: StepKind,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Action(Action),
    Expect(Expect),
}

fn default_port() -> u16 {
    5001
}
fn default_rate() -> f64 {
    10.0
}
fn default_count() -> u64 {
    10
}
fn default_size() -> usize {
    200
}
fn default_ttl() -> u32 {
    16
}
fn yes() -> bool {
    true
}
fn default_run_timeout() -> Dur {
    Dur::secs(30.0)
}

/// Things a scenario does.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Start a service (`node/name`), an FRR daemon (`node/pimd`) or all of a node's FRR
    /// (`node/frr`).
    Start { target: String },
    /// Stop (SIGTERM, then SIGKILL after 3 s) a service, FRR daemon, or a named background
    /// process of the scenario (receiver, sender, capture, command).
    Stop { target: String },
    /// Stop and start a service or FRR daemon.
    Restart { target: String },
    /// SIGKILL a service, FRR daemon or named background process (a crash).
    Kill { target: String },
    /// Run a shell command inside a node. In the foreground it must exit 0 (unless
    /// `check = false`) within `timeout`; with `background = true` it keeps running under
    /// `name` (output in `<run>/<name>.log`).
    Run {
        node: String,
        cmd: String,
        #[serde(default)]
        background: bool,
        name: Option<String>,
        #[serde(default = "default_run_timeout")]
        timeout: Dur,
        #[serde(default = "yes")]
        check: bool,
    },
    /// Start a receiver (`mcast-lab recv` holding an (S,G) join) named `receiver` in `node`.
    Join {
        receiver: String,
        node: String,
        source: IpAddr,
        group: IpAddr,
        #[serde(default = "default_port")]
        port: u16,
        interface: Option<String>,
    },
    /// Start a receiver that does not join: it listens on group:port and sees only what the
    /// node already accepts (for "a host that did not join gets nothing"). Stopped with
    /// `leave` like a joined one.
    Listen {
        receiver: String,
        node: String,
        source: IpAddr,
        group: IpAddr,
        #[serde(default = "default_port")]
        port: u16,
    },
    /// Make receiver `receiver` leave (SIGTERM: it leaves the group and writes its report).
    Leave { receiver: String },
    /// Start a sender (`mcast-lab send`) named `name` in `node`; `wait = true` waits for it
    /// to finish.
    Send {
        name: String,
        node: String,
        source: IpAddr,
        group: IpAddr,
        #[serde(default = "default_port")]
        port: u16,
        #[serde(default = "default_rate")]
        rate: f64,
        #[serde(default = "default_count")]
        count: u64,
        #[serde(default = "default_size")]
        size: usize,
        interface: Option<String>,
        #[serde(default = "default_ttl")]
        ttl: u32,
        #[serde(default)]
        skip_seq: Vec<String>,
        #[serde(default)]
        wait: bool,
    },
    /// Start a packet capture named `name`: one tcpdump per interface of `node`, with an
    /// optional BPF `filter`; returns once every tcpdump is really capturing.
    Capture {
        name: String,
        node: String,
        interfaces: Vec<String>,
        #[serde(default)]
        filter: String,
    },
    /// Write (or append to) a file; `path` may use {run}, {node} (with `node`), {bin}.
    WriteFile {
        path: String,
        node: Option<String>,
        content: String,
        #[serde(default)]
        append: bool,
    },
    /// Do nothing for a while.
    Wait { duration: Dur },
    /// Remember the resident memory (VmRSS) of a running target now, for a later `expect =
    /// "rss"` with `max_growth_kib`.
    MarkRss { target: String },
    /// Mount a tmpfs of `size` (e.g. "64k") at `path` (created if missing; `{node}` with
    /// `node`), mode `mode` (default "0777"); unmounted when the scenario ends, pass or fail.
    /// For disk-full tests: fill it with `run` + `dd`, free it with `rm`.
    MountTmpfs {
        path: String,
        node: Option<String>,
        size: String,
        #[serde(default = "default_tmpfs_mode")]
        mode: String,
    },
}

fn default_tmpfs_mode() -> String {
    "0777".into()
}

/// Things a scenario checks, by observing the system.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "expect", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// Receiver `receiver` (from a `join` step) got at least `min` (default 1) and at most
    /// `max` distinct datagrams, with at most `max_lost` (default 0) lost, etc. Read from the
    /// receiver's report file.
    Received {
        receiver: String,
        min: Option<u64>,
        max: Option<u64>,
        max_lost: Option<u64>,
        min_lost: Option<u64>,
        lost: Option<u64>,
        max_duplicates: Option<u64>,
        max_reordered: Option<u64>,
    },
    /// A file has (`line`) or lacks (`lacks_line`) an exact line, or has a line matching
    /// (`matches`) or none matching (`not_matches`) a regex. A missing file has no lines.
    File {
        path: String,
        node: Option<String>,
        line: Option<String>,
        lacks_line: Option<String>,
        matches: Option<String>,
        not_matches: Option<String>,
    },
    /// A service, FRR daemon or named background process is running.
    Alive { target: String },
    /// ... is not running.
    Dead { target: String },
    /// A named background process (sender, command) or service has exited with `code`
    /// (default 0), or was ended by `signal` (e.g. "SIGTERM").
    Exited { target: String, code: Option<i32>, signal: Option<String> },
    /// A shell command in a node exits with `exit` (default 0) and its output (stdout and
    /// stderr) matches / does not match a regex.
    Command {
        node: String,
        cmd: String,
        #[serde(default)]
        exit: i32,
        matches: Option<String>,
        not_matches: Option<String>,
    },
    /// vtysh output on a node matches / does not match a regex.
    Vtysh { node: String, commands: Vec<String>, matches: Option<String>, not_matches: Option<String> },
    /// The resident memory (VmRSS) of a running target is at most `max_kib`, and at most
    /// `max_growth_kib` above what the last `mark_rss` of that target recorded.
    Rss { target: String, max_kib: Option<u64>, max_growth_kib: Option<u64> },
    /// Capture `capture` holds at least `min` (default 1) and at most `max` packets matching
    /// a tshark display filter.
    Capture {
        capture: String,
        filter: String,
        #[serde(default = "one")]
        min: u64,
        max: Option<u64>,
    },
}

fn one() -> u64 {
    1
}

/// An expectation with its timing: it must become true `within` (default 5 s), or, with
/// `during`, stay true for that long.
#[derive(Debug, Clone)]
pub struct Expect {
    pub check: Check,
    pub within: Dur,
    pub during: Option<Dur>,
}

impl Step {
    /// `do = "join"` / `expect = "received"`, for logs.
    pub fn kind_name(&self) -> String {
        match &self.kind {
            StepKind::Action(a) => format!("do {}", action_name(a)),
            StepKind::Expect(e) => format!("expect {}", check_name(&e.check)),
        }
    }
}

pub fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Start { .. } => "start",
        Action::Stop { .. } => "stop",
        Action::Restart { .. } => "restart",
        Action::Kill { .. } => "kill",
        Action::Run { .. } => "run",
        Action::Join { .. } => "join",
        Action::Listen { .. } => "listen",
        Action::Leave { .. } => "leave",
        Action::Send { .. } => "send",
        Action::Capture { .. } => "capture",
        Action::WriteFile { .. } => "write_file",
        Action::Wait { .. } => "wait",
        Action::MarkRss { .. } => "mark_rss",
        Action::MountTmpfs { .. } => "mount_tmpfs",
    }
}

pub fn check_name(c: &Check) -> &'static str {
    match c {
        Check::Received { .. } => "received",
        Check::File { .. } => "file",
        Check::Alive { .. } => "alive",
        Check::Dead { .. } => "dead",
        Check::Exited { .. } => "exited",
        Check::Command { .. } => "command",
        Check::Vtysh { .. } => "vtysh",
        Check::Capture { .. } => "capture",
        Check::Rss { .. } => "rss",
    }
}

const TOP_KEYS: &[&str] = &["name", "description", "requires", "timeout", "topology", "vars", "steps"];

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading scenario {}", path.display()))?;
        Scenario::parse(&text, path).with_context(|| format!("scenario {}", path.display()))
    }

    pub fn parse(text: &str, path: &Path) -> Result<Scenario> {
        let mut table: toml::Table = toml::from_str(text).context("invalid TOML")?;
        for k in table.keys() {
            if !TOP_KEYS.contains(&k.as_str()) {
                bail!("unknown top-level key {k:?} (expected one of: {})", TOP_KEYS.join(", "));
            }
        }
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "scenario".into());
        let name = match table.remove("name") {
            Some(toml::Value::String(s)) => s,
            Some(_) => bail!("name must be a string"),
            None => stem,
        };
        let description = match table.remove("description") {
            Some(toml::Value::String(s)) => s,
            Some(_) => bail!("description must be a string"),
            None => String::new(),
        };
        let requires: Vec<String> = match table.remove("requires") {
            Some(v) => v.try_into().context("requires must be a list of strings")?,
            None => Vec::new(),
        };
        let timeout: Dur = match table.remove("timeout") {
            Some(v) => v.try_into().context("timeout")?,
            None => Dur::secs(120.0),
        };
        let topology = match table.remove("topology") {
            Some(toml::Value::String(s)) => Some(path.parent().unwrap_or(Path::new(".")).join(s)),
            Some(_) => bail!("topology must be a string (a path relative to the scenario file)"),
            None => None,
        };
        let vars: BTreeMap<String, toml::Value> = match table.remove("vars") {
            Some(toml::Value::Table(t)) => t.into_iter().collect(),
            Some(_) => bail!("[vars] must be a table"),
            None => BTreeMap::new(),
        };
        let raw_steps = match table.remove("steps") {
            Some(toml::Value::Array(a)) => a,
            Some(_) => bail!("steps must be an array of tables ([[steps]])"),
            None => bail!("no [[steps]]"),
        };
        let mut steps = Vec::new();
        for (i, v) in raw_steps.into_iter().enumerate() {
            let index = i + 1;
            let toml::Value::Table(t) = v else { bail!("step {index}: not a table") };
            steps.push(parse_step(index, t).with_context(|| format!("step {index}"))?);
        }
        if steps.is_empty() {
            bail!("no [[steps]]");
        }
        let sc = Scenario { name, description, path: path.to_path_buf(), requires, timeout, topology, vars, steps };
        sc.check_references()?;
        Ok(sc)
    }

    /// Static checks across steps: handles are defined before use and not redefined while
    /// running, regexes compile.
    fn check_references(&self) -> Result<()> {
        let mut receivers: Vec<&str> = Vec::new();
        let mut captures: Vec<&str> = Vec::new();
        let mut handles: Vec<&str> = Vec::new();
        for s in &self.steps {
            let at = || format!("step {} ({})", s.index, s.kind_name());
            match &s.kind {
                StepKind::Action(a) => match a {
                    Action::Join { receiver, .. } | Action::Listen { receiver, .. } => {
                        check_handle_name(receiver).with_context(at)?;
                        receivers.push(receiver);
                        handles.push(receiver);
                    }
                    Action::Leave { receiver } if !receivers.contains(&receiver.as_str()) => {
                        bail!("{}: no receiver {receiver:?} joined before", at());
                    }
                    Action::Send { name, .. } | Action::Capture { name, .. } => {
                        check_handle_name(name).with_context(at)?;
                        if matches!(a, Action::Capture { .. }) {
                            captures.push(name);
                        }
                        handles.push(name);
                    }
                    Action::Run { background: true, name, .. } => {
                        let name = name.as_deref().ok_or_else(|| anyhow!("{}: background runs need a name", at()))?;
                        check_handle_name(name).with_context(at)?;
                        handles.push(name);
                    }
                    Action::Run { background: false, name: Some(_), .. } => {
                        bail!("{}: name is only for background = true", at())
                    }
                    _ => {}
                },
                StepKind::Expect(e) => match &e.check {
                    Check::Received { receiver, .. } if !receivers.contains(&receiver.as_str()) => {
                        bail!("{}: no receiver {receiver:?} joined before", at())
                    }
                    Check::Capture { capture, .. } if !captures.contains(&capture.as_str()) => {
                        bail!("{}: no capture {capture:?} started before", at())
                    }
                    Check::Capture { min, max: Some(max), .. } if min > max => {
                        bail!("{}: min {min} > max {max} can never hold (min defaults to 1: give min = 0)", at())
                    }
                    Check::Rss { max_kib: None, max_growth_kib: None, .. } => {
                        bail!("{}: give max_kib or max_growth_kib", at())
                    }
                    Check::File { line, lacks_line, matches, not_matches, .. } => {
                        if line.is_none() && lacks_line.is_none() && matches.is_none() && not_matches.is_none() {
                            bail!("{}: give line, lacks_line, matches or not_matches", at());
                        }
                        for r in [matches, not_matches].into_iter().flatten() {
                            regex::Regex::new(r).with_context(|| format!("{}: regex {r:?}", at()))?;
                        }
                    }
                    Check::Command { matches, not_matches, .. } | Check::Vtysh { matches, not_matches, .. } => {
                        for r in [matches, not_matches].into_iter().flatten() {
                            regex::Regex::new(r).with_context(|| format!("{}: regex {r:?}", at()))?;
                        }
                    }
                    _ => {}
                },
            }
        }
        Ok(())
    }
}

fn check_handle_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("invalid name {name:?} (letters, digits, - and _; no /)");
    }
    Ok(())
}

fn parse_step(index: usize, mut t: toml::Table) -> Result<Step> {
    let note = match t.remove("note") {
        Some(toml::Value::String(s)) => Some(s),
        Some(_) => bail!("note must be a string"),
        None => None,
    };
    match (t.contains_key("do"), t.contains_key("expect")) {
        (true, false) => {
            let a: Action = toml::Value::Table(t).try_into().map_err(|e| anyhow!("{}", clean_serde(e)))?;
            Ok(Step { index, note, kind: StepKind::Action(a) })
        }
        (false, true) => {
            let within: Option<Dur> = t.remove("within").map(|v| v.try_into()).transpose().context("within")?;
            let during: Option<Dur> = t.remove("during").map(|v| v.try_into()).transpose().context("during")?;
            if within.is_some() && during.is_some() {
                bail!("give either within (eventually true) or during (true throughout), not both");
            }
            let check: Check = toml::Value::Table(t).try_into().map_err(|e| anyhow!("{}", clean_serde(e)))?;
            Ok(Step {
                index,
                note,
                kind: StepKind::Expect(Expect { check, within: within.unwrap_or(Dur::secs(5.0)), during }),
            })
        }
        (true, true) => bail!("a step has either `do` or `expect`, not both"),
        (false, false) => bail!("a step needs `do = \"...\"` (an action) or `expect = \"...\"` (a check)"),
    }
}

fn clean_serde(e: toml::de::Error) -> String {
    e.message().to_string()
}

/// The scenario files of a directory, sorted.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading scenario directory {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario> {
        Scenario::parse(text, Path::new("scenarios/demo-test.toml"))
    }

    fn err(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn full_example() {
        let s = parse(
            r#"
            description = "x"
            timeout = "30s"
            requires = ["pimwatch"]
            [vars]
            join_prune_interval = 5
            [[steps]]
            do = "capture"
            name = "cap"
            node = "ing"
            interfaces = ["down0"]
            filter = "pim"
            [[steps]]
            do = "start"
            target = "ing/pim-hello"
            [[steps]]
            do = "join"
            receiver = "r1"
            node = "rcv1"
            source = "198.51.100.200"
            group = "232.1.1.1"
            [[steps]]
            expect = "capture"
            capture = "cap"
            filter = "pim.type == 3"
            within = "5s"
            [[steps]]
            expect = "received"
            receiver = "r1"
            min = 5
            note = "all of them"
            [[steps]]
            expect = "received"
            receiver = "r1"
            max = 0
            during = 2
            [[steps]]
            do = "leave"
            receiver = "r1"
            [[steps]]
            do = "wait"
            duration = "100ms"
            "#,
        )
        .unwrap();
        assert_eq!(s.name, "demo-test");
        assert_eq!(s.requires, ["pimwatch"]);
        assert_eq!(s.timeout.0.as_secs(), 30);
        assert_eq!(s.vars["join_prune_interval"].as_integer(), Some(5));
        assert_eq!(s.steps.len(), 8);
        let StepKind::Action(Action::Join { port, .. }) = &s.steps[2].kind else { panic!() };
        assert_eq!(*port, 5001);
        let StepKind::Expect(e) = &s.steps[4].kind else { panic!() };
        assert_eq!(e.within.0.as_secs(), 5);
        assert_eq!(s.steps[4].note.as_deref(), Some("all of them"));
        let StepKind::Expect(e) = &s.steps[5].kind else { panic!() };
        assert_eq!(e.during.unwrap().0.as_secs(), 2);
        assert_eq!(s.steps[0].kind_name(), "do capture");
    }

    #[test]
    fn errors_name_the_step() {
        let cases: &[(&str, &str)] = &[
            ("", "no [[steps]]"),
            ("bogus = 1\n[[steps]]\ndo = \"wait\"\nduration = 1", "unknown top-level key \"bogus\""),
            ("[[steps]]\ndo = \"dance\"", "step 1"),
            ("[[steps]]\ndo = \"dance\"", "unknown variant `dance`"),
            ("[[steps]]\ndo = \"wait\"", "missing field `duration`"),
            ("[[steps]]\ndo = \"wait\"\nduration = \"soon\"", "invalid duration"),
            ("[[steps]]\ndo = \"wait\"\nduration = 1\ncolour = 2", "unknown field `colour`"),
            ("[[steps]]\nnote = \"x\"", "needs `do"),
            ("[[steps]]\ndo = \"wait\"\nexpect = \"file\"", "not both"),
            ("[[steps]]\nexpect = \"received\"\nreceiver = \"r9\"", "no receiver \"r9\" joined before"),
            ("[[steps]]\ndo = \"leave\"\nreceiver = \"r9\"", "no receiver \"r9\""),
            ("[[steps]]\nexpect = \"capture\"\ncapture = \"c\"\nfilter = \"pim\"", "no capture \"c\""),
            ("[[steps]]\nexpect = \"file\"\npath = \"x\"", "give line"),
            ("[[steps]]\nexpect = \"rss\"\ntarget = \"ing/pimwatch\"", "give max_kib or max_growth_kib"),
            ("[[steps]]\ndo = \"mount_tmpfs\"\npath = \"x\"", "missing field `size`"),
            ("[[steps]]\nexpect = \"file\"\npath = \"x\"\nmatches = \"(\"", "regex"),
            ("[[steps]]\nexpect = \"alive\"\ntarget = \"a/b\"\nwithin = 1\nduring = 1", "not both"),
            ("[[steps]]\ndo = \"run\"\nnode = \"a\"\ncmd = \"x\"\nbackground = true", "need a name"),
            (
                "[[steps]]\ndo = \"join\"\nreceiver = \"a/b\"\nnode = \"n\"\nsource = \"1.2.3.4\"\ngroup = \"232.1.1.1\"",
                "invalid name",
            ),
            (
                "[[steps]]\ndo = \"join\"\nreceiver = \"r\"\nnode = \"n\"\nsource = \"x\"\ngroup = \"232.1.1.1\"",
                "step 1",
            ),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(e.contains(want), "scenario:\n{text}\nerror: {e}\nwanted: {want}");
        }
    }

    #[test]
    fn repo_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let files = discover(&dir).unwrap();
        assert!(!files.is_empty());
        for f in files {
            Scenario::load(&f).unwrap();
        }
    }
}
