//! Small helpers shared by every module: durations, templates, placeholders, files, time.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Deserializer};

/// A duration written as `"1.5s"`, `"200ms"`, `"2m"`, `"1h"` or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn secs(s: f64) -> Dur {
        Dur(Duration::from_secs_f64(s))
    }
}

impl FromStr for Dur {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Dur> {
        parse_duration(s).map(Dur)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", fmt_secs(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Dur, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Str(String),
        }
        let raw = Raw::deserialize(d)?;
        let parsed = match raw {
            Raw::Int(n) => Ok(Duration::from_secs(n)),
            Raw::Float(f) if f.is_finite() && f >= 0.0 => Ok(Duration::from_secs_f64(f)),
            Raw::Float(f) => Err(anyhow!("invalid duration {f}")),
            Raw::Str(s) => parse_duration(&s),
        };
        parsed.map(Dur).map_err(serde::de::Error::custom)
    }
}

/// Parses `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`, `"10us"` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 =
        num.parse().map_err(|_| anyhow!("invalid duration {s:?} (expected e.g. \"500ms\", \"2s\", \"1.5m\")"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => bail!("invalid duration unit {other:?} in {s:?} (use ns, us, ms, s, m or h)"),
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        bail!("duration {s:?} out of range");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `1.234s`, `85ms`.
pub fn fmt_secs(d: Duration) -> String {
    if d < Duration::from_secs(1) { format!("{}ms", d.as_millis()) } else { format!("{:.2}s", d.as_secs_f64()) }
}

/// Renders `{{name}}` placeholders from `vars`. Unknown names are errors, so a typo in a
/// template or a missing variable is caught before any daemon starts.
pub fn render_template(text: &str, vars: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| anyhow!("unterminated {{{{ in template"))?;
        let name = after[..end].trim();
        let value = vars.get(name).ok_or_else(|| {
            let known: Vec<&str> = vars.keys().map(String::as_str).collect();
            anyhow!("unknown template variable {{{{{name}}}}} (known: {})", known.join(", "))
        })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Replaces the known `{name}` placeholders of `vars` and leaves every other brace alone, so
/// shell syntax such as `${HOME}` or awk's `{print $1}` passes through untouched.
pub fn expand_placeholders(text: &str, vars: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// Converts a TOML scalar to the string a template or sysctl receives.
pub fn toml_scalar(v: &toml::Value) -> Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => if *b { "1" } else { "0" }.to_string(),
        other => bail!("expected a string, number or boolean, got {}", other.type_str()),
    })
}

/// Writes `data` to `path` atomically (temporary file in the same directory, then rename), so
/// a reader polling the file never sees half of it.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(data).with_context(|| format!("writing {}", tmp.display()))?;
    }
    fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Seconds since the Unix epoch as a float (CLOCK_REALTIME).
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME): the clock every namespace of one host
/// shares, so a timestamp taken in one namespace can be compared with one taken in another.
pub fn unix_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// `YYYYmmdd-HHMMSS` in UTC, for results folder names.
pub fn utc_stamp() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Howard Hinnant's days-to-civil conversion (proleptic Gregorian, UTC).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Copies a directory tree, skipping sockets, FIFOs and other special files (FRR's vty
/// sockets live in the run directory). Symlinks are copied as the files they point to when
/// those are regular files.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    for entry in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let entry = entry?;
        let path = entry.path();
        let target = dst.join(entry.file_name());
        let Ok(meta) = fs::metadata(&path) else { continue };
        if meta.is_dir() {
            copy_tree(&path, &target)?;
        } else if meta.is_file() {
            fs::copy(&path, &target).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

/// The directory holding the running executable: `{bin}` in service command lines, where the
/// project's daemons are built next to `mcast-lab`.
pub fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the mcast-lab executable")?;
    exe.parent().map(Path::to_path_buf).ok_or_else(|| anyhow!("executable {} has no parent", exe.display()))
}

/// True when `name` is 1..=15 bytes of `[A-Za-z0-9_.-]` (a Linux interface name).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration(" 10us ").unwrap(), Duration::from_micros(10));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        let d: Dur = toml::from_str::<toml::Table>("d = 3").unwrap()["d"].clone().try_into().unwrap();
        assert_eq!(d.0, Duration::from_secs(3));
        let d: Dur = toml::Value::String("0.5s".into()).try_into().unwrap();
        assert_eq!(d.0, Duration::from_millis(500));
    }

    #[test]
    fn templates() {
        let mut vars = BTreeMap::new();
        vars.insert("a".to_string(), "1".to_string());
        vars.insert("name".to_string(), "acc".to_string());
        assert_eq!(render_template("x {{a}} y {{ name }}", &vars).unwrap(), "x 1 y acc");
        let err = render_template("{{nope}}", &vars).unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("known: a, name"), "{err}");
        assert!(render_template("{{a", &vars).is_err());
    }

    #[test]
    fn placeholders_leave_other_braces() {
        let s = expand_placeholders("{bin}/x ${HOME} awk '{print}' {run}", &[("bin", "/b"), ("run", "/r")]);
        assert_eq!(s, "/b/x ${HOME} awk '{print}' /r");
    }

    #[test]
    fn ifnames() {
        assert!(valid_ifname("down0"));
        assert!(valid_ifname("rcvlan-rcv1"));
        assert!(!valid_ifname("a-very-long-interface"));
        assert!(!valid_ifname("has space"));
        assert!(!valid_ifname(""));
    }

    #[test]
    fn civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_000), (2022, 1, 8));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
