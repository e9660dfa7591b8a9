#![no_main]
//! The joinfile parser (`mcast_joinfile::parse`), with and without the population column.
//! Oracles: never panics; the valid entries, formatted canonically, parse back to the same
//! entries with no problem; problems name increasing line numbers within the text; and the
//! reported problems stay bounded (a huge garbage file cannot make a reader keep or log one
//! entry per line).
use libfuzzer_sys::fuzz_target;
use mcast_joinfile::{ParseOptions, format, parse};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    for allow_population in [false, true] {
        let options = ParseOptions { allow_population };
        let parsed = parse(&text, &options);
        assert!(parsed.entries.len() <= lines);
        assert!(parsed.problems.len() <= mcast_joinfile::MAX_PROBLEMS);
        assert!(parsed.problems.len() + parsed.more_problems <= lines);
        let mut last = 0;
        for p in &parsed.problems {
            assert!(p.line > last && p.line <= lines, "line {} after {last} of {lines}", p.line);
            last = p.line;
            assert!(p.text.chars().count() <= 81);
        }
        let canonical = format(&parsed.entries);
        let again = parse(&canonical, &options);
        assert!(again.problems.is_empty(), "{:?}", again.problems);
        assert_eq!(again.entries, parsed.entries);
        assert_eq!(format(&again.entries), canonical);
        if !allow_population {
            assert!(parsed.entries.values().all(Option::is_none));
        }
    }
});
