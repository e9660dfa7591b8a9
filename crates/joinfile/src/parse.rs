//! Joinfile text: parsing with per-line problems, and canonical formatting.

use std::collections::BTreeMap;
use std::fmt;

use mcast_wire::SourceGroup;

/// What a reader accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Accept an optional third field, the population (number of subscribed users, a positive
    /// integer), as cbacc's input allows. Readers that do not use it reject three-field lines.
    pub allow_population: bool,
}

/// A line that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    /// 1-based line number.
    pub line: usize,
    /// The line as read, shortened to 80 characters for logging.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {} ({:?})", self.line, self.reason, self.text)
    }
}

/// At most this many skipped lines are kept (and so logged) per read: a file of a million
/// garbage lines next to one valid line must not make a reader hold or log a million reports.
pub const MAX_PROBLEMS: usize = 100;

/// A parsed joinfile: the valid (S,G)s with their population, and the skipped lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Joinfile {
    /// Valid entries, sorted. `None` means no population column (a population of 1).
    pub entries: BTreeMap<SourceGroup, Option<u32>>,
    /// The first [`MAX_PROBLEMS`] lines that were skipped.
    pub problems: Vec<LineProblem>,
    /// How many more lines were skipped beyond those in `problems`.
    pub more_problems: usize,
}

impl Joinfile {
    /// The (S,G)s, sorted.
    pub fn sgs(&self) -> impl Iterator<Item = SourceGroup> + '_ {
        self.entries.keys().copied()
    }
}

fn shorten(line: &str) -> String {
    const MAX: usize = 80;
    if line.chars().count() <= MAX {
        line.to_owned()
    } else {
        let mut short: String = line.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

/// Parses joinfile text. Never fails: bad lines land in [`Joinfile::problems`] and the rest of
/// the file still counts. A repeated (S,G) keeps the largest population given for it.
pub fn parse(text: &str, options: &ParseOptions) -> Joinfile {
    let mut out = Joinfile::default();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line, options) {
            Ok((sg, population)) => {
                let slot = out.entries.entry(sg).or_insert(population);
                *slot = (*slot).max(population);
            }
            Err(_) if out.problems.len() >= MAX_PROBLEMS => out.more_problems += 1,
            Err(reason) => out.problems.push(LineProblem { line: index + 1, text: shorten(raw), reason }),
        }
    }
    out
}

fn parse_line(line: &str, options: &ParseOptions) -> Result<(SourceGroup, Option<u32>), String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let expected = if options.allow_population { "SOURCE,GROUP[,POPULATION]" } else { "SOURCE,GROUP" };
    let (source, group, population) = match fields.as_slice() {
        [s, g] => (*s, *g, None),
        [s, g, p] if options.allow_population => (*s, *g, Some(*p)),
        _ => return Err(format!("expected {expected}, found {} fields", fields.len())),
    };
    let sg: SourceGroup = format!("{source},{group}").parse().map_err(|e| format!("{e}"))?;
    let population = match population {
        None => None,
        Some(text) => match text.parse::<u32>() {
            Ok(0) => return Err("population must be a positive integer, found 0".to_owned()),
            Ok(n) => Some(n),
            Err(_) => return Err(format!("population must be a positive integer, found {text:?}")),
        },
    };
    Ok((sg, population))
}

/// Formats entries canonically: sorted, one `S,G` (or `S,G,POPULATION`) per line, each line
/// ending in a newline. An empty set is an empty file.
pub fn format<'a>(entries: impl IntoIterator<Item = (&'a SourceGroup, &'a Option<u32>)>) -> String {
    let mut sorted: Vec<_> = entries.into_iter().collect();
    sorted.sort_by_key(|(sg, _)| **sg);
    let mut out = String::with_capacity(sorted.len() * 28);
    for (sg, population) in sorted {
        use std::fmt::Write;
        let _ = match population {
            Some(n) => writeln!(out, "{sg},{n}"),
            None => writeln!(out, "{sg}"),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITH_POP: ParseOptions = ParseOptions { allow_population: true };
    const PLAIN: ParseOptions = ParseOptions { allow_population: false };

    fn sg(text: &str) -> SourceGroup {
        text.parse().unwrap()
    }

    #[test]
    fn reads_the_original_format() {
        // The README example of the original platform.
        let parsed = parse("23.212.185.5,232.1.1.1\n23.212.185.4,232.10.10.2\n", &PLAIN);
        assert!(parsed.problems.is_empty());
        let sgs: Vec<String> = parsed.sgs().map(|s| s.to_string()).collect();
        assert_eq!(sgs, ["23.212.185.4,232.10.10.2", "23.212.185.5,232.1.1.1"]);
    }

    #[test]
    fn comments_blanks_whitespace_and_ipv6() {
        let text = "# joined channels\n\n  198.51.100.10 , 232.1.1.1  \n2001:db8::1,ff3e::8000:1\n\t\n";
        let parsed = parse(text, &PLAIN);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(parsed.entries.len(), 2);
        assert!(parsed.entries.contains_key(&sg("2001:db8::1,ff3e::8000:1")));
    }

    #[test]
    fn population_column_is_the_third_field() {
        // The original read a fourth field here and dropped every such line (original-system.md §3.2).
        let parsed = parse("198.51.100.10,232.1.1.1,25\n198.51.100.11,232.1.1.1\n", &WITH_POP);
        assert!(parsed.problems.is_empty());
        assert_eq!(parsed.entries[&sg("198.51.100.10,232.1.1.1")], Some(25));
        assert_eq!(parsed.entries[&sg("198.51.100.11,232.1.1.1")], None);
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_kept() {
        let text = "198.51.100.10,232.1.1.1\nnonsense\n198.51.100.10,10.0.0.1\n198.51.100.12,232.1.1.3,0\n\
                    198.51.100.12,232.1.1.4,many\n1,2,3,4\n198.51.100.13,232.1.1.5,7\n";
        let parsed = parse(text, &WITH_POP);
        assert_eq!(parsed.entries.len(), 2);
        let lines: Vec<usize> = parsed.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6]);
        assert!(parsed.problems[1].reason.contains("not a multicast address"), "{}", parsed.problems[1]);
        assert!(parsed.problems[2].reason.contains("positive integer"));
    }

    #[test]
    fn population_rejected_where_not_allowed() {
        let parsed = parse("198.51.100.10,232.1.1.1,25\n", &PLAIN);
        assert!(parsed.entries.is_empty());
        assert_eq!(parsed.problems[0].reason, "expected SOURCE,GROUP, found 3 fields");
    }

    #[test]
    fn duplicates_collapse_keeping_the_largest_population() {
        let parsed =
            parse("198.51.100.10,232.1.1.1,3\n198.51.100.10 ,232.1.1.1,9\n198.51.100.10,232.1.1.1\n", &WITH_POP);
        assert_eq!(parsed.entries.len(), 1);
        assert_eq!(parsed.entries[&sg("198.51.100.10,232.1.1.1")], Some(9));
    }

    #[test]
    fn format_is_sorted_and_round_trips() {
        let parsed = parse("198.51.100.11,232.1.1.1\n2001:db8::1,ff3e::1\n198.51.100.10,232.1.1.2,4\n", &WITH_POP);
        let text = format(&parsed.entries);
        assert_eq!(text, "198.51.100.10,232.1.1.2,4\n198.51.100.11,232.1.1.1\n2001:db8::1,ff3e::1\n");
        assert_eq!(parse(&text, &WITH_POP), parsed);
        assert_eq!(format(&BTreeMap::new()), "");
    }

    #[test]
    fn problems_are_bounded_and_counted() {
        // 10 MB-style garbage: many more bad lines than are worth keeping, around a good one.
        let mut text = "garbage\n".repeat(50_000);
        text.push_str("198.51.100.10,232.1.1.1\n");
        text.push_str(&"more,garbage\n".repeat(50_000));
        let parsed = parse(&text, &PLAIN);
        assert_eq!(parsed.entries.len(), 1);
        assert_eq!(parsed.problems.len(), MAX_PROBLEMS);
        assert_eq!(parsed.more_problems, 100_000 - MAX_PROBLEMS);
        assert_eq!(parsed.problems.last().unwrap().line, MAX_PROBLEMS);
    }

    #[test]
    fn long_garbage_lines_are_shortened_in_reports() {
        let line = "x".repeat(1000);
        let parsed = parse(&line, &PLAIN);
        assert_eq!(parsed.problems[0].text.chars().count(), 81);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_format_round_trips(text in "\\PC{0,200}") {
            let parsed = parse(&text, &WITH_POP);
            let again = parse(&format(&parsed.entries), &WITH_POP);
            proptest::prop_assert_eq!(again.entries, parsed.entries);
            proptest::prop_assert!(again.problems.is_empty());
        }
    }
}
