//! Presentation for people: times (UTC, and "3h12m ago" against the canister's clock), token
//! amounts, aligned tables.

use candid::Nat;

const SEC: u64 = 1_000_000_000;

/// Civil date (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm),
/// so the CLI needs no calendar dependency.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn parts(ns: u64) -> (i64, u32, u32, u64, u64, u64, u64) {
    let secs = ns / SEC;
    let (y, mo, d) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (y, mo, d, rem / 3600, (rem % 3600) / 60, rem % 60, ns % SEC)
}

/// `2026-05-01 23:55:18 UTC`.
pub fn utc(ns: u64) -> String {
    let (y, mo, d, h, mi, s, _) = parts(ns);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// RFC 3339 with nanoseconds, `2026-05-01T23:55:18.005285297Z`: exact, and sortable as text.
pub fn rfc3339(ns: u64) -> String {
    let (y, mo, d, h, mi, s, frac) = parts(ns);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:09}Z")
}

/// A duration in nanoseconds as people read it: `45s`, `3m12s`, `3h12m`, `2d4h`.
pub fn duration(ns: u64) -> String {
    let s = ns / SEC;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `3h12m ago` or `in 3h12m`, relative to `now` (the canister's clock).
pub fn relative(now: u64, t: u64) -> String {
    if t <= now {
        format!("{} ago", duration(now - t))
    } else {
        format!("in {}", duration(t - now))
    }
}

/// `3h12m ago (2026-05-01 10:00:00 UTC)`.
pub fn when(now: u64, t: u64) -> String {
    format!("{} ({})", relative(now, t), utc(t))
}

/// Parses `90s`, `30m`, `6h`, `2d`, `1h30m`, or a bare number of seconds, into nanoseconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let bad = || format!("`{text}` is not a duration (examples: 90s, 30m, 6h, 2d, 1h30m)");
    if t.chars().all(|c| c.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .ok()
            .and_then(|s| s.checked_mul(SEC))
            .ok_or_else(bad);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| s.checked_mul(SEC))
            .and_then(|ns| total.checked_add(ns))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// A `Nat` as plain decimal digits (candid's `Display` inserts `_` separators).
pub fn nat(n: &Nat) -> String {
    n.0.to_string()
}

/// Cycles as `1.234 T (1234000000000)`.
pub fn cycles(n: &Nat) -> String {
    let digits = nat(n);
    let t: f64 = digits.parse::<f64>().unwrap_or(0.0) / 1e12;
    format!("{t:.3} T cycles ({digits})")
}

/// Truncates to `max` characters with an ellipsis (tables only; `show` and `--json` keep all).
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A table with aligned columns; the last column is not padded.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut width = vec![0usize; n];
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate().take(n) {
                if i + 1 < n {
                    line.push_str(c);
                    line.extend(std::iter::repeat_n(' ', width[i] - c.chars().count() + 2));
                } else {
                    line.push_str(c);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        // 2026-12-01 10:00:00 UTC
        let t = 1_796_119_200 * SEC;
        assert_eq!(utc(t), "2026-12-01 10:00:00 UTC");
        assert_eq!(rfc3339(t + 5), "2026-12-01T10:00:00.000000005Z");
        // A leap day.
        assert_eq!(utc(1_709_164_800 * SEC), "2024-02-29 00:00:00 UTC");
    }

    #[test]
    fn formats_ages() {
        assert_eq!(duration(45 * SEC), "45s");
        assert_eq!(duration(192 * SEC), "3m12s");
        assert_eq!(duration((3 * 3600 + 12 * 60) * SEC), "3h12m");
        assert_eq!(duration((2 * 86_400 + 4 * 3600) * SEC), "2d4h");
        assert_eq!(relative(100 * SEC, 40 * SEC), "1m0s ago");
        assert_eq!(relative(40 * SEC, 100 * SEC), "in 1m0s");
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("6h").unwrap(), 6 * 3600 * SEC);
        assert_eq!(parse_duration("1h30m").unwrap(), 5400 * SEC);
        assert_eq!(parse_duration("90").unwrap(), 90 * SEC);
        assert_eq!(parse_duration("2d").unwrap(), 2 * 86_400 * SEC);
        for bad in ["", "h", "6x", "6h3", "-1h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn aligns_tables() {
        let mut t = Table::new(&["ID", "STATUS", "NOTE"]);
        t.row(vec!["1".into(), "manual_review".into(), "x".into()]);
        t.row(vec!["12".into(), "failed".into(), "".into()]);
        assert_eq!(
            t.render(),
            "ID  STATUS         NOTE\n1   manual_review  x\n12  failed\n"
        );
    }

    #[test]
    fn prints_nat_without_separators() {
        assert_eq!(nat(&Nat::from(1_000_000u64)), "1000000");
    }
}
