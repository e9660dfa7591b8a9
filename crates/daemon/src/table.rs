//! Plain-text tables for `status` output, in the spirit of FRR's `show ip mroute`.

/// Renders rows under headers, columns left-aligned and padded to their widest cell, two
/// spaces apart. Cells are counted in characters, so non-ASCII names stay aligned.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count());
            text.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Formats a remaining duration in seconds as `mm:ss` or `hh:mm:ss` like FRR's timers;
/// `None` (infinite) prints as `never`.
pub fn timer(seconds: Option<u64>) -> String {
    match seconds {
        None => "never".to_owned(),
        Some(s) if s >= 3600 => format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60),
        Some(s) => format!("{:02}:{:02}", s / 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let text = render(
            &["Interface", "Neighbor", "Expires"],
            &[
                vec!["down0".into(), "10.9.1.1".into(), timer(Some(95))],
                vec!["down1".into(), "fe80::1".into(), timer(None)],
            ],
        );
        assert_eq!(text, "Interface  Neighbor  Expires\ndown0      10.9.1.1  01:35\ndown1      fe80::1   never\n");
        assert_eq!(timer(Some(3725)), "01:02:05");
    }
}
