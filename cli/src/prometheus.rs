//! The service's `/metrics` page: fetched through `http_request`, and parsed from the
//! Prometheus text format for `metrics --parsed` / `--json`.

use candid::{CandidType, Deserialize};
use serde::Serialize;
use std::collections::BTreeMap;

/// `http_request`'s argument, as in `candid/icjournal.did`. The client does not wrap
/// `http_request` yet, so the CLI calls it through `Client::call` with these mirrors.
#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct HttpResponse {
    pub status_code: u16,
    pub headers: Vec<(String, String)>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// One sample line.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `null` for NaN and infinities (JSON has no such numbers).
    pub value: Option<f64>,
    pub timestamp_ms: Option<i64>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub help: Option<String>,
}

/// Parses the Prometheus text exposition format (0.0.4). Lines it does not understand are
/// reported, not skipped: a silently missing metric would mislead.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut help: BTreeMap<String, String> = BTreeMap::new();
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, h) = rest.split_once(' ').unwrap_or((rest, ""));
            help.insert(name.into(), h.replace("\\n", "\n").replace("\\\\", "\\"));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').unwrap_or((rest, ""));
            kinds.insert(name.into(), t.into());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let s = sample(line).map_err(|e| format!("line {}: {e}: {raw}", n + 1))?;
        out.push(s);
    }
    for s in &mut out {
        // Histogram/summary series carry suffixes; their family holds HELP and TYPE.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suf| s.name.strip_suffix(suf).filter(|f| kinds.contains_key(*f)))
            .unwrap_or(&s.name)
            .to_string();
        s.kind = kinds.get(&family).cloned();
        s.help = help.get(&family).cloned();
    }
    Ok(out)
}

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut end = None;
        loop {
            while chars
                .peek()
                .is_some_and(|(_, c)| *c == ',' || c.is_whitespace())
            {
                chars.next();
            }
            match chars.peek() {
                Some((i, '}')) => {
                    end = Some(*i);
                    break;
                }
                None => break,
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value must be quoted".into());
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(other) => value.push(other),
                        None => return Err("unterminated escape".into()),
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err("unterminated label value".into());
            }
            labels.insert(key.trim().to_string(), value);
        }
        let end = end.ok_or("unterminated label set")?;
        rest = &body[end + 1..];
    }
    let mut fields = rest.split_whitespace();
    let value_text = fields.next().ok_or("no value")?;
    let value: f64 = match value_text {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| format!("bad value `{v}`"))?,
    };
    let timestamp_ms = fields
        .next()
        .map(|t| t.parse::<i64>().map_err(|_| format!("bad timestamp `{t}`")))
        .transpose()?;
    Ok(Sample {
        name: name.into(),
        labels,
        value: value.is_finite().then_some(value),
        timestamp_ms,
        kind: None,
        help: None,
    })
}

/// The value of `name` (without labels), if present.
pub fn gauge(samples: &[Sample], name: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && s.labels.is_empty())
        .and_then(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_services_metrics_text() {
        let text = "# HELP icjournal_entries Entries by status.\n\
                    # TYPE icjournal_entries gauge\n\
                    icjournal_entries{status=\"manual_review\"} 2 1700000000000\n\
                    icjournal_entries{status=\"we\\\"ird\",x=\"a,b\"} 0 1700000000000\n\
                    # TYPE icjournal_service_recovery_paused gauge\n\
                    icjournal_service_recovery_paused 1 1700000000000\n\
                    odd NaN\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].name, "icjournal_entries");
        assert_eq!(s[0].labels["status"], "manual_review");
        assert_eq!(s[0].value, Some(2.0));
        assert_eq!(s[0].timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(s[0].kind.as_deref(), Some("gauge"));
        assert_eq!(s[0].help.as_deref(), Some("Entries by status."));
        assert_eq!(s[1].labels["status"], "we\"ird");
        assert_eq!(s[1].labels["x"], "a,b");
        assert_eq!(gauge(&s, "icjournal_service_recovery_paused"), Some(1.0));
        assert_eq!(s[3].value, None);
    }

    #[test]
    fn reports_lines_it_cannot_read() {
        for bad in ["x{a=b} 1", "x{a=\"b\" 1", "x abc", "x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
