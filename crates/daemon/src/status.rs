//! The client side of `<daemon> status`, shared by all four: ask the daemon over its control
//! socket, print its JSON (`--json`) or the daemon's tables, and the cell formatting the tables
//! use, so every daemon's columns follow the same conventions.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;

/// Asks the daemon listening on `socket` for its status and prints it: pretty JSON with
/// `json`, else `render`'s tables.
pub async fn show(socket: &Path, daemon: &str, json: bool, render: fn(&Value) -> String) -> anyhow::Result<()> {
    let status = crate::request(socket, "status").await.with_context(|| format!("is {daemon} running?"))?;
    if let Some(error) = status.get("error").and_then(Value::as_str) {
        anyhow::bail!("{daemon} answered: {error}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

/// Table cells from status JSON values.
pub mod cell {
    use serde_json::Value;

    use crate::table::timer;

    /// A string as is, `-` for null, anything else in JSON form.
    pub fn text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".to_owned(),
            other => other.to_string(),
        }
    }

    /// Seconds as a timer (`mm:ss`, `hh:mm:ss`), rounded up; null (no expiry) as `never`.
    pub fn secs(v: &Value) -> String {
        timer(v.as_f64().map(|s| s.max(0.0).ceil() as u64))
    }

    /// Seconds as a timer, rounded up; null (nothing scheduled) as `-`.
    pub fn secs_or_dash(v: &Value) -> String {
        match v.as_f64() {
            Some(s) => timer(Some(s.max(0.0).ceil() as u64)),
            None => "-".to_owned(),
        }
    }

    /// An `S,G` string as its two columns (`?` when it is not one).
    pub fn split_sg(v: &Value) -> (String, String) {
        text(v).split_once(',').map_or_else(|| ("?".to_owned(), "?".to_owned()), |(s, g)| (s.to_owned(), g.to_owned()))
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use serde_json::json;

        #[test]
        fn cells() {
            assert_eq!(text(&json!("a")), "a");
            assert_eq!(text(&json!(null)), "-");
            assert_eq!(text(&json!(3)), "3");
            assert_eq!(secs(&json!(95.2)), "01:36");
            assert_eq!(secs(&json!(null)), "never");
            assert_eq!(secs_or_dash(&json!(null)), "-");
            assert_eq!(secs_or_dash(&json!(-1.0)), "00:00");
            assert_eq!(split_sg(&json!("198.51.100.10,232.1.1.1")), ("198.51.100.10".into(), "232.1.1.1".into()));
            assert_eq!(split_sg(&json!(null)), ("?".into(), "?".into()));
        }
    }
}
