//! `http_request`: `/metrics` (Prometheus text), `/logs` (JSON), `/dashboard` (HTML).
//! Public and uncertified (served by a query): they show aggregate journal state only — never
//! the cycles balance (that is for controllers only, through `controller_view`), never owners, lock keys or intents (I7).
//! Rendering functions are pure and tested natively.

use crate::logs::{DEBUG, INFO};
use candid::{CandidType, Deserialize};
use ic_metrics_encoder::MetricsEncoder;
use icjournal::{encode_prometheus, EntrySummary, Metrics};
use serde::Serialize;

/// The HTTP gateway's request record (same shape as in DFINITY's canisters).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// The HTTP gateway's response record.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status_code: u16,
    pub headers: Vec<(String, String)>,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

impl HttpResponse {
    fn new(status_code: u16, content_type: &str, body: Vec<u8>) -> Self {
        HttpResponse {
            status_code,
            headers: vec![
                ("Content-Type".into(), content_type.into()),
                ("Content-Length".into(), body.len().to_string()),
                ("Cache-Control".into(), "no-store".into()),
            ],
            body,
        }
    }

    fn text(status_code: u16, msg: &str) -> Self {
        Self::new(
            status_code,
            "text/plain; charset=utf-8",
            msg.as_bytes().to_vec(),
        )
    }
}

/// Service-level gauges added to the engine's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceGauges {
    pub recovery_paused: bool,
    pub in_flight: u32,
    pub admins: u32,
    pub ledgers: u32,
}

/// What the dashboard shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dashboard {
    pub now: u64,
    pub metrics: Metrics,
    pub manual_queue: Vec<EntrySummary>,
    pub recent: Vec<EntrySummary>,
    pub recovery_paused: bool,
    pub in_flight: u32,
}

/// One log line of `/logs`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub timestamp: u64,
    pub counter: u64,
    pub priority: &'static str,
    pub file: &'static str,
    pub line: u32,
    pub message: String,
}

#[derive(Serialize)]
struct Logs {
    entries: Vec<LogLine>,
}

/// Splits `/path?query` into the path and its `key=value` pairs.
pub fn parse_url(url: &str) -> (&str, Vec<(&str, &str)>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let params = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect();
    (path, params)
}

/// Routes a request; `dashboard`/`metrics` are only computed for their own routes.
pub fn route(
    req: &HttpRequest,
    metrics: impl FnOnce() -> (Metrics, ServiceGauges),
    dashboard: impl FnOnce() -> Dashboard,
) -> HttpResponse {
    if req.method != "GET" && req.method != "HEAD" {
        return HttpResponse::text(405, "method not allowed");
    }
    let (path, params) = parse_url(&req.url);
    match path {
        "/metrics" => {
            let (m, g) = metrics();
            match render_metrics(&m, &g) {
                Ok(body) => HttpResponse::new(200, "text/plain; version=0.0.4", body),
                Err(e) => HttpResponse::text(500, &format!("failed to encode metrics: {e}")),
            }
        }
        "/logs" => {
            let priority = params
                .iter()
                .find(|(k, _)| *k == "priority")
                .map(|(_, v)| *v);
            let since = params
                .iter()
                .find(|(k, _)| *k == "time")
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .unwrap_or(0);
            let mut lines = Vec::new();
            if priority != Some("debug") {
                lines.extend(collect_logs(&INFO, "info", since));
            }
            if priority != Some("info") {
                lines.extend(collect_logs(&DEBUG, "debug", since));
            }
            HttpResponse::new(200, "application/json", render_logs(lines))
        }
        "/" | "/dashboard" => HttpResponse::new(
            200,
            "text/html; charset=utf-8",
            render_dashboard(&dashboard()).into_bytes(),
        ),
        _ => HttpResponse::text(404, "not found: try /dashboard, /metrics or /logs"),
    }
}

fn collect_logs(
    buf: &'static ic_canister_log::GlobalBuffer,
    priority: &'static str,
    since: u64,
) -> Vec<LogLine> {
    ic_canister_log::export(buf)
        .into_iter()
        .filter(|e| e.timestamp >= since)
        .map(|e| LogLine {
            timestamp: e.timestamp,
            counter: e.counter,
            priority,
            file: e.file,
            line: e.line,
            message: e.message,
        })
        .collect()
}

/// `{"entries":[...]}`, ordered by timestamp then counter.
pub fn render_logs(mut entries: Vec<LogLine>) -> Vec<u8> {
    entries.sort_by_key(|e| (e.timestamp, e.counter));
    serde_json::to_vec(&Logs { entries }).expect("log lines serialize")
}

/// Engine metrics plus the service gauges, as Prometheus text.
pub fn render_metrics(m: &Metrics, g: &ServiceGauges) -> std::io::Result<Vec<u8>> {
    let mut out = encode_prometheus(m)?;
    let mut w = MetricsEncoder::new(Vec::new(), (m.timestamp / 1_000_000) as i64);
    w.encode_gauge(
        "icjournal_service_recovery_paused",
        if g.recovery_paused { 1.0 } else { 0.0 },
        "1 while operators paused recovery.",
    )?;
    w.encode_gauge(
        "icjournal_service_flows_in_flight",
        g.in_flight as f64,
        "Executed transfers and sagas the service is running now.",
    )?;
    w.encode_gauge(
        "icjournal_service_admins",
        g.admins as f64,
        "Configured admins (controllers not counted).",
    )?;
    w.encode_gauge(
        "icjournal_service_ledgers",
        g.ledgers as f64,
        "Configured ledgers.",
    )?;
    out.extend(w.into_inner());
    Ok(out)
}

/// Minimal HTML escaping for text nodes and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Human age of `ns` nanoseconds.
pub fn age(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn rows(out: &mut String, now: u64, entries: &[EntrySummary], with_reason: bool) {
    if entries.is_empty() {
        out.push_str("<tr><td colspan=\"6\"><em>none</em></td></tr>");
    }
    for e in entries {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"s-{}\">{}</td><td>{}</td><td>{}</td>",
            e.id,
            e.kind.as_str(),
            e.status.as_str(),
            e.status.as_str(),
            e.attempts,
            age(now.saturating_sub(e.created_at)),
        ));
        if with_reason {
            let mut reason = e.manual_reason.clone().unwrap_or_default();
            if reason.len() > 160 {
                let mut cut = 160;
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                reason.truncate(cut);
                reason.push('…');
            }
            out.push_str(&format!("<td>{}</td>", escape(&reason)));
        }
        out.push_str("</tr>\n");
    }
}

/// The dashboard page: counts by status and kind, recoveries by path, manual queue (head),
/// oldest unresolved age, and recent entries.
pub fn render_dashboard(d: &Dashboard) -> String {
    let m = &d.metrics;
    let mut out = String::with_capacity(8 * 1024);
    out.push_str(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>icjournal</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}\
         td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
         .s-manual_review{color:#b00;font-weight:bold}.s-unknown,.s-recovering{color:#c60}\
         .s-succeeded{color:#070}.s-failed{color:#555}</style></head><body>\n<h1>icjournal</h1>\n",
    );
    out.push_str(&format!(
        "<p>Entries: <b>{}</b> · manual queue: <b>{}</b> · oldest unresolved: <b>{}</b> · \
         attempts: {} · recovery ticks: {} · audit records: {} · contradictions: {} · \
         flows in flight: {} · recovery: <b>{}</b></p>\n",
        m.entries_total,
        m.manual_queue_depth,
        m.oldest_unresolved_age_ns
            .map(age)
            .unwrap_or_else(|| "none".into()),
        m.attempts_total,
        m.recovery_ticks,
        m.audit_records,
        m.contradictions,
        d.in_flight,
        if d.recovery_paused {
            "PAUSED"
        } else {
            "running"
        },
    ));
    out.push_str("<h2>By status</h2><table><tr><th>status</th><th>entries</th></tr>\n");
    for s in &m.entries_by_status {
        out.push_str(&format!(
            "<tr><td class=\"s-{0}\">{0}</td><td>{1}</td></tr>\n",
            s.status.as_str(),
            s.count
        ));
    }
    out.push_str("</table>\n<h2>By kind</h2><table><tr><th>kind</th><th>entries</th></tr>\n");
    for k in &m.entries_by_kind {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>\n",
            k.kind.as_str(),
            k.count
        ));
    }
    out.push_str(
        "</table>\n<h2>Recoveries by path</h2><table><tr><th>path</th><th>count</th></tr>\n",
    );
    for p in &m.recoveries_by_path {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>\n",
            p.path.as_str(),
            p.count
        ));
    }
    out.push_str(
        "</table>\n<h2>Manual review queue</h2><table><tr><th>id</th><th>kind</th>\
         <th>status</th><th>attempts</th><th>age</th><th>reason</th></tr>\n",
    );
    rows(&mut out, d.now, &d.manual_queue, true);
    out.push_str(
        "</table>\n<h2>Recent entries</h2><table><tr><th>id</th><th>kind</th>\
         <th>status</th><th>attempts</th><th>age</th></tr>\n",
    );
    rows(&mut out, d.now, &d.recent, false);
    out.push_str(&format!(
        "</table>\n<p>Stable memory: {} bytes. Metrics: <a href=\"/metrics\">/metrics</a> · \
         logs: <a href=\"/logs\">/logs</a></p>\n</body></html>\n",
        m.stable_memory_bytes
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candid::Principal;
    use icjournal::metrics::{KindCount, PathCount, StatusCount};
    use icjournal::{Kind, RecoveryPath, Status};

    fn metrics() -> Metrics {
        Metrics {
            timestamp: 1_700_000_000_000_000_000,
            entries_total: 3,
            entries_by_status: vec![
                StatusCount {
                    status: Status::Succeeded,
                    count: 2,
                },
                StatusCount {
                    status: Status::ManualReview,
                    count: 1,
                },
            ],
            entries_by_kind: vec![KindCount {
                kind: Kind::Icrc2TransferFrom,
                count: 3,
            }],
            recoveries_by_path: vec![PathCount {
                path: RecoveryPath::MemoLookup,
                count: 1,
            }],
            attempts_total: 4,
            oldest_unresolved_age_ns: Some(90 * 1_000_000_000),
            manual_queue_depth: 1,
            stable_memory_bytes: 65_536,
            audit_records: 9,
            contradictions: 0,
            recovery_ticks: 5,
        }
    }

    fn entry(id: u64, status: Status, reason: Option<&str>) -> EntrySummary {
        EntrySummary {
            id,
            owner: Principal::from_slice(&[42, 42]),
            kind: Kind::Icrc2TransferFrom,
            status,
            lock_key: Some("secret-lock".into()),
            attempts: 2,
            created_at: 1_000,
            updated_at: 2_000,
            manual_reason: reason.map(String::from),
        }
    }

    fn get(url: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            url: url.into(),
            headers: vec![],
            body: vec![],
        }
    }

    fn dash() -> Dashboard {
        Dashboard {
            now: 3_600_000_001_000,
            metrics: metrics(),
            manual_queue: vec![entry(2, Status::ManualReview, Some("<script>x</script>"))],
            recent: vec![entry(1, Status::Succeeded, None)],
            recovery_paused: true,
            in_flight: 1,
        }
    }

    fn gauges() -> (Metrics, ServiceGauges) {
        (
            metrics(),
            ServiceGauges {
                recovery_paused: true,
                in_flight: 2,
                admins: 1,
                ledgers: 1,
            },
        )
    }

    #[test]
    fn metrics_route_is_prometheus_text() {
        let r = route(&get("/metrics"), gauges, || unreachable!());
        assert_eq!(r.status_code, 200);
        let body = String::from_utf8(r.body).unwrap();
        assert!(body.contains("icjournal_entries_total 3"), "{body}");
        assert!(body.contains("icjournal_manual_queue_depth 1"));
        assert!(body.contains("icjournal_service_recovery_paused 1"));
        assert!(body.contains("icjournal_service_flows_in_flight 2"));
        assert!(body.contains("# TYPE icjournal_recoveries counter"));
        assert!(
            !body.to_lowercase().contains("cycle"),
            "no cycles balance in public HTTP"
        );
    }

    #[test]
    fn dashboard_escapes_and_hides_owners_and_lock_keys() {
        for url in ["/dashboard", "/", "/dashboard?x=1"] {
            let r = route(&get(url), || unreachable!(), dash);
            assert_eq!(r.status_code, 200);
            let html = String::from_utf8(r.body).unwrap();
            assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
            assert!(!html.contains("<script>"));
            assert!(!html.contains("secret-lock"));
            assert!(!html.contains(&Principal::from_slice(&[42, 42]).to_text()));
            assert!(html.contains("PAUSED"));
            assert!(html.contains("manual_review"));
            assert!(html.contains("1m30s"), "oldest unresolved age");
            assert!(html.contains("1h0m"), "entry age");
            assert!(!html.to_lowercase().contains("cycles"));
        }
    }

    #[test]
    fn logs_route_is_json_and_filters() {
        ic_canister_log::log!(INFO, "hello {}", "info");
        ic_canister_log::log!(DEBUG, "hello debug");
        let body = route(&get("/logs"), || unreachable!(), || unreachable!()).body;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let msgs: Vec<&str> = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap())
            .collect();
        assert!(msgs.contains(&"hello info") && msgs.contains(&"hello debug"));
        let body = route(
            &get("/logs?priority=info"),
            || unreachable!(),
            || unreachable!(),
        )
        .body;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["priority"] == "info"));
        let body = route(
            &get(&format!("/logs?time={}", u64::MAX)),
            || unreachable!(),
            || unreachable!(),
        )
        .body;
        assert_eq!(String::from_utf8(body).unwrap(), r#"{"entries":[]}"#);
    }

    #[test]
    fn other_routes_and_methods() {
        assert_eq!(
            route(&get("/nope"), || unreachable!(), || unreachable!()).status_code,
            404
        );
        let mut post = get("/metrics");
        post.method = "POST".into();
        assert_eq!(
            route(&post, || unreachable!(), || unreachable!()).status_code,
            405
        );
        assert_eq!(parse_url("/a?b=1&c"), ("/a", vec![("b", "1"), ("c", "")]));
        assert_eq!(age(59_000_000_000), "59s");
        assert_eq!(age(2 * 86_400_000_000_000), "2d0h");
    }
}
