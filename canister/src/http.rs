//! `http_request`: `/metrics` (Prometheus text), `/logs` (JSON), `/dashboard` (HTML).
//! Public and uncertified (served by a query, to anyone): counts, and for the entries that
//! need attention their id, kind, ledger, status, times, attempts and the engine's reasons and
//! errors — never the cycles balance (an attacker's gauge of how long the canister lives),
//! never owners, lock keys, amounts or other intent fields: a caller sees only its own entries
//! (I7), so those are for operators through the authenticated `admin_get_entry`.
//! Rendering functions are pure and tested natively.

use crate::logs::{DEBUG, INFO};
use candid::Principal;
use candid::{CandidType, Deserialize};
use ic_metrics_encoder::MetricsEncoder;
use icjournal::{encode_prometheus, Entry, EntryId, EntrySummary, Intent, Kind, Metrics, Status};
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
                // The pages load nothing: a browser refuses any script, frame or remote
                // resource even if an escaped field ever slipped through; inline CSS only.
                ("Content-Security-Policy".into(), CSP.into()),
                ("X-Content-Type-Options".into(), "nosniff".into()),
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

/// What the pages may load: nothing but their own inline style.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Service-level gauges added to the engine's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceGauges {
    pub recovery_paused: bool,
    pub in_flight: u32,
    pub admins: u32,
    pub ledgers: u32,
}

/// Manual-review entries the dashboard lists (the head of the queue; the count is the metric).
pub const QUEUE_ROWS: u32 = 10;
/// Unresolved entries it lists, oldest first.
pub const UNRESOLVED_ROWS: u32 = 10;
/// The page reloads itself this often (a `<meta http-equiv=refresh>`: no script needed).
pub const REFRESH_SECS: u32 = 30;

/// What the dashboard shows. Bounded: the service reads at most `QUEUE_ROWS` +
/// 4 × `UNRESOLVED_ROWS` entries (and the steps shown sagas wait for) whatever the journal's size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dashboard {
    pub now: u64,
    pub canister_id: Principal,
    pub version: &'static str,
    pub metrics: Metrics,
    /// Head of the manual queue, oldest id first.
    pub manual_queue: Vec<Entry>,
    /// Steps that shown sagas are blocked on, when not in `manual_queue` themselves.
    pub blocked_steps: Vec<EntrySummary>,
    /// Oldest entries recovery is still working on (pending, unknown, recovering, compensating).
    pub unresolved: Vec<Entry>,
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
        let mut r = HttpResponse::text(405, "method not allowed: GET or HEAD");
        r.headers.push(("Allow".into(), "GET, HEAD".into()));
        return r;
    }
    let (path, params) = parse_url(&req.url);
    let mut r = route_get(path, &params, metrics, dashboard);
    if req.method == "HEAD" {
        // Same headers (Content-Length of the GET body), no body.
        r.body.clear();
    }
    r
}

fn route_get(
    path: &str,
    params: &[(&str, &str)],
    metrics: impl FnOnce() -> (Metrics, ServiceGauges),
    dashboard: impl FnOnce() -> Dashboard,
) -> HttpResponse {
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
    // Which build answers: dashboards and alerts join on it after an upgrade.
    w.gauge_vec(
        "icjournal_build_info",
        "The service's version, as a label (value always 1).",
    )?
    .value(&[("version", env!("CARGO_PKG_VERSION"))], 1.0)?;
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

/// `2026-11-30 10:32:01 UTC` for a time in nanoseconds since the Unix epoch. Written out (days
/// to civil date, Howard Hinnant's algorithm) because the canister has no date crate and an
/// operator compares these times with logs and ledger blocks, which are in UTC.
pub fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// "6h50m ago" with the absolute time beside it (ages alone go stale on a printed page or
/// a screenshot pasted into an incident channel).
fn ago(now: u64, t: u64) -> String {
    format!(
        "{} ago<br><span class=\"abs\">{}</span>",
        age(now.saturating_sub(t)),
        utc(t)
    )
}

/// When the entry went into manual review: the last `→ manual_review` change in its history.
/// Nothing changes the status of an entry while it waits for an operator, so that change is
/// the newest item of the (bounded, newest-kept) history; `updated_at` is the fallback should
/// a history lack it.
pub fn manual_since(e: &Entry) -> u64 {
    e.history
        .iter()
        .rev()
        .find(|h| h.to == Status::ManualReview)
        .map_or(e.updated_at, |h| h.at)
}

/// When the engine last tried the step: the last start of a recovery attempt (`→ recovering`)
/// or the first send (leaving `pending`), from the history.
pub fn last_attempt(e: &Entry) -> Option<u64> {
    e.history
        .iter()
        .rev()
        .find(|h| h.to == Status::Recovering || h.from == Status::Pending)
        .map(|h| h.at)
}

fn ledger_of(e: &Entry) -> Option<Principal> {
    match &e.intent {
        Intent::Transfer(t) => Some(t.ledger),
        _ => None,
    }
}

/// Up to `max` characters (not bytes) of `s`, from the start or from the end.
fn chars_head(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(i, _)| &s[..i])
}

fn chars_tail(s: &str, max: usize) -> &str {
    let n = s.chars().count();
    if n <= max {
        return s;
    }
    s.char_indices().nth(n - max).map_or(s, |(i, _)| &s[i..])
}

/// The whole reason, escaped. A long one is folded into `<details>` whose summary shows its
/// start and its end: the engine's reasons put the boilerplate first and the specific part
/// (the ledger's error, a trap message) last, so cutting only the tail hid what mattered.
fn reason_html(reason: &str) -> String {
    const FOLD: usize = 320;
    if reason.chars().count() <= FOLD {
        return format!("<div class=\"why\">{}</div>", escape(reason));
    }
    format!(
        "<details class=\"why\"><summary>{} … {}</summary><div class=\"full\">{}</div></details>",
        escape(chars_head(reason, 90)),
        escape(chars_tail(reason, 110)),
        escape(reason)
    )
}

/// One operator verb: when to use it, the CLI command, and the same as a Candid call.
struct Verb {
    when: String,
    cli: String,
    candid: String,
}

fn verb(canister: &str, id: EntryId, when: String, cli: &str, action: &str, risk: bool) -> Verb {
    Verb {
        when,
        cli: format!("icjournal {cli} --reason \"WHY\""),
        candid: format!(
            "dfx canister call --network ic {canister} admin_act '(record {{ entry_id = {id} : nat64; \
             action = variant {{ {action} }}; reason = \"WHY\"; acknowledge_risk = {} }})'",
            if risk { "opt true" } else { "null" }
        ),
    }
}

/// The verbs that apply to a manual-review entry, the most likely first. The first two are
/// shown in the row; the rest (and every Candid form) fold away.
fn verbs(canister: &str, e: &Entry) -> Vec<Verb> {
    let id = e.id;
    let v = |when: String, cli: &str, action: &str, risk: bool| {
        verb(canister, id, when, cli, action, risk)
    };
    let resolve_ok = |when: &str, block: bool| {
        if block {
            v(
                when.into(),
                &format!("resolve-succeeded {id} --block B"),
                "ResolveSucceeded = record { block_index = opt (B : nat64) }",
                false,
            )
        } else {
            v(
                when.into(),
                &format!("resolve-succeeded {id}"),
                "ResolveSucceeded = record { block_index = null }",
                false,
            )
        }
    };
    match e.kind {
        Kind::Icrc1Transfer | Kind::Icrc2TransferFrom => vec![
            resolve_ok(
                &format!(
                    "the ledger holds block B with memo of entry {id} (the service checks it)"
                ),
                true,
            ),
            v(
                "else, once the ledger answers again: recovery looks again".into(),
                &format!("retry {id}"),
                "Retry",
                false,
            ),
            v(
                "it provably did not execute (risk acknowledged if its window is open)".into(),
                &format!("resolve-failed {id} --acknowledge-risk"),
                "ResolveFailed",
                true,
            ),
            v(
                "close without executing".into(),
                &format!("cancel {id} --acknowledge-risk"),
                "Cancel",
                true,
            ),
        ],
        Kind::Saga => {
            let mut out = Vec::new();
            if let Some(step) = e.blocked_on {
                // Reading the step needs no reason: it is not an audited verb.
                out.push(Verb {
                    when: format!(
                        "blocked on step #{step}: act on #{step}; the saga resumes by itself"
                    ),
                    cli: format!("icjournal show {step}"),
                    candid: format!(
                        "dfx canister call --network ic {canister} admin_get_entry '({step} : nat64)'"
                    ),
                });
            }
            out.push(v(
                "undo its completed steps".into(),
                &format!("compensate {id}"),
                "Compensate",
                false,
            ));
            out.push(v(
                "close without executing".into(),
                &format!("cancel {id}"),
                "Cancel",
                false,
            ));
            out
        }
        Kind::LocalStep => vec![
            v(
                "once the handler can run again".into(),
                &format!("retry {id}"),
                "Retry",
                false,
            ),
            resolve_ok("it did run", false),
            v(
                "it did not run".into(),
                &format!("resolve-failed {id}"),
                "ResolveFailed",
                false,
            ),
            v("close".into(), &format!("cancel {id}"), "Cancel", false),
        ],
        Kind::Record => vec![
            resolve_ok("the step it records completed", false),
            v(
                "it did not".into(),
                &format!("resolve-failed {id}"),
                "ResolveFailed",
                false,
            ),
            v("close".into(), &format!("cancel {id}"), "Cancel", false),
        ],
    }
}

fn verbs_html(canister: &str, e: &Entry) -> String {
    let all = verbs(canister, e);
    let mut out = String::new();
    for v in all.iter().take(2) {
        out.push_str(&format!(
            "<div class=\"verb\"><span class=\"when\">{}</span><code>{}</code></div>",
            escape(&v.when),
            escape(&v.cli)
        ));
    }
    out.push_str("<details><summary>all verbs, Candid</summary>");
    for v in &all {
        out.push_str(&format!(
            "<div class=\"verb\"><span class=\"when\">{}</span><code>{}</code><code>{}</code></div>",
            escape(&v.when),
            escape(&v.cli),
            escape(&v.candid)
        ));
    }
    out.push_str(&format!(
        "<div class=\"verb\"><span class=\"when\">owner, amount, history, outcome</span>\
         <code>icjournal show {}</code></div></details>",
        e.id
    ));
    out
}

/// What the entry is, for the queue's second column: kind, ledger, memo, saga step state.
fn what_html(e: &Entry, blocked_steps: &[EntrySummary], queue: &[Entry]) -> String {
    let mut out = format!("<b>{}</b>", e.kind.as_str());
    if let Some(l) = ledger_of(e) {
        out.push_str(&format!(
            "<br>ledger <code>{}</code><br>memo <code class=\"memo\">{}</code>",
            escape(&l.to_text()),
            icjournal::memo::encode(e.id)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
    }
    if let Some(p) = e.parent {
        out.push_str(&format!("<br>step of saga #{p}"));
    }
    if let Some(step) = e.blocked_on {
        let status = queue
            .iter()
            .find(|q| q.id == step)
            .map(|q| q.status)
            .or_else(|| {
                blocked_steps
                    .iter()
                    .find(|s| s.id == step)
                    .map(|s| s.status)
            });
        out.push_str(&format!(
            "<br><span class=\"blocked\">blocked on step #{step}{}</span>",
            status.map_or(String::new(), |s| format!(" ({})", s.as_str()))
        ));
    }
    out
}

fn count(m: &Metrics, s: Status) -> u64 {
    m.entries_by_status
        .iter()
        .find(|c| c.status == s)
        .map_or(0, |c| c.count)
}

/// Statuses recovery is still working on by itself.
const UNRESOLVED: [Status; 4] = [
    Status::Pending,
    Status::Unknown,
    Status::Recovering,
    Status::Compensating,
];

/// The one line an operator reads first, and its severity (`bad`, `warn`, `ok`).
pub fn health_line(d: &Dashboard) -> (&'static str, String) {
    let m = &d.metrics;
    let depth = m.manual_queue_depth;
    let unresolved: u64 = UNRESOLVED.iter().map(|s| count(m, *s)).sum();
    let mut parts = Vec::new();
    let mut level = "ok";
    if depth > 0 {
        level = "bad";
        let oldest = d
            .manual_queue
            .iter()
            .map(|e| d.now.saturating_sub(manual_since(e)))
            .max();
        let mut p = format!(
            "{depth} {} an operator",
            if depth == 1 { "needs" } else { "need" }
        );
        if let Some(o) = oldest {
            p.push_str(&format!(", oldest {}", age(o)));
            if depth > d.manual_queue.len() as u64 {
                p.push_str(&format!(" (of the first {} listed)", d.manual_queue.len()));
            }
        }
        parts.push(p);
    }
    if m.contradictions > 0 {
        level = "bad";
        parts.push(format!(
            "{} contradiction{} recorded (see admin_audit)",
            m.contradictions,
            if m.contradictions == 1 { "" } else { "s" }
        ));
    }
    if d.recovery_paused {
        if level == "ok" {
            level = "warn";
        }
        parts.push("recovery PAUSED".into());
    }
    if unresolved > 0 {
        if level == "ok" {
            level = "warn";
        }
        parts.push(format!(
            "{unresolved} unresolved, recovering by {}{}",
            if d.recovery_paused {
                "itself once resumed"
            } else {
                "itself"
            },
            // The metric's oldest unresolved entry may be one in manual review: take the
            // oldest of the listed ones instead (the head of each status range).
            d.unresolved
                .iter()
                .map(|e| e.created_at)
                .min()
                .map_or(String::new(), |t| format!(
                    ", oldest {}",
                    age(d.now.saturating_sub(t))
                ))
        ));
    }
    if parts.is_empty() {
        parts.push("All clear: nothing needs an operator, nothing unresolved".into());
    }
    (level, parts.join(" · "))
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}\
header{display:flex;flex-wrap:wrap;gap:.3em 1.2em;align-items:baseline;padding:.5em 1.2em;background:#1b1f24;color:#d5dae0;font-size:12px}\
header b{color:#fff;font-size:14px}header code{background:#2d333b;color:#fff}\
main{padding:0 1.2em 1.2em}\
.health{margin:.8em 0;padding:.7em 1em;border-radius:6px;font-size:20px;font-weight:600;border-left:8px solid}\
.health.bad{background:#fdecec;border-color:#c62828;color:#8e0000}\
.health.warn{background:#fff6e0;border-color:#e29b00;color:#6b4a00}\
.health.ok{background:#e8f5e9;border-color:#2e7d32;color:#1b5e20}\
h2{font-size:15px;margin:1.2em 0 .4em}\
h2 small{font-weight:normal;color:#57606a}\
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d7de}\
th{background:#eef1f4;text-align:left;font-size:12px;color:#424a53}\
td,th{border-top:1px solid #d0d7de;padding:.35em .6em;vertical-align:top}\
td.id{font-weight:700;white-space:nowrap}\
.abs{color:#57606a;font-size:12px}\
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f0f2f4;padding:0 .25em;border-radius:3px;overflow-wrap:anywhere}\
.verb{margin:.1em 0}.verb code{display:block;margin:.1em 0 .2em}\
.when{color:#57606a;font-size:12px}\
.why{overflow-wrap:anywhere;max-width:46em}\
summary{cursor:pointer;color:#0b4f9c}\
details .full{margin-top:.3em;white-space:pre-wrap}\
.err{color:#8e0000;font-size:12px;margin-top:.3em;overflow-wrap:anywhere}\
.blocked{color:#8e0000;font-weight:600}.memo{font-size:11px;word-break:break-all}\
.none{color:#57606a;font-style:italic}\
.counts span{display:inline-block;margin:0 .9em .3em 0}\
.s-manual_review{color:#c62828;font-weight:700}.s-unknown,.s-recovering,.s-pending,.s-compensating{color:#9a5b00}\
.s-succeeded{color:#2e7d32}\
footer{color:#57606a;font-size:12px;margin-top:1.2em}\
@media (max-width:760px){table,thead,tbody,tr,td{display:block;width:100%}tr.head{display:none}\
tr{border-top:2px solid #d0d7de}td{border:0}td[data-l]::before{content:attr(data-l) ': ';color:#57606a;font-size:12px}\
.health{font-size:17px}}";

/// The dashboard page, for an operator on call: a health line, the head of the manual queue
/// (what is stuck, why, since when, what to type), the oldest unresolved entries, then the
/// counts (non-zero only). Self-contained: inline CSS, no script, no external resource — the
/// page is public and the CSP header forbids loading anything. Refreshes itself.
pub fn render_dashboard(d: &Dashboard) -> String {
    let m = &d.metrics;
    let canister = d.canister_id.to_text();
    let mut out = String::with_capacity(16 * 1024);
    out.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>icjournal {}</title><style>{STYLE}</style></head><body>\n",
        if m.manual_queue_depth > 0 {
            format!("({}) manual review", m.manual_queue_depth)
        } else {
            "dashboard".into()
        }
    ));
    out.push_str(&format!(
        "<header><b>icjournal</b><span>canister <code>{}</code></span><span>version {}</span>\
         <span id=\"generated\">generated {}</span><span>refreshes every {REFRESH_SECS}s</span>\
         <span>recovery {}</span></header>\n<main>\n",
        escape(&canister),
        escape(d.version),
        utc(d.now),
        if d.recovery_paused {
            "<b>PAUSED</b>"
        } else {
            "running"
        },
    ));
    let (level, line) = health_line(d);
    out.push_str(&format!(
        "<div class=\"health {level}\" id=\"health\">{}</div>\n",
        escape(&line)
    ));

    // The manual queue.
    out.push_str(&format!(
        "<h2 id=\"queue\">Manual review queue <small>{} of {}, oldest first · commands need \
         <code>--network ic --canister {}</code> and an operator identity · every verb is \
         audited; see the operator guide (docs/ in the icjournal repository)</small></h2>\n",
        d.manual_queue.len(),
        m.manual_queue_depth,
        escape(&canister)
    ));
    if d.manual_queue.is_empty() {
        out.push_str("<p class=\"none\">Nothing needs an operator.</p>\n");
    } else {
        out.push_str(
            "<table class=\"queue\"><tr class=\"head\"><th>#</th><th>what</th>\
             <th>in manual review since</th><th>attempts</th><th>why</th><th>what to do</th></tr>\n",
        );
        for e in &d.manual_queue {
            let mut why = reason_html(e.manual_reason.as_deref().unwrap_or("(no reason recorded)"));
            // The reason usually ends with the last error: repeat it only when it says more.
            let reason = e.manual_reason.as_deref().unwrap_or("");
            if let Some(err) = e.last_error.as_deref().filter(|err| !reason.contains(*err)) {
                why.push_str(&format!(
                    "<div class=\"err\">last error: {}</div>",
                    escape(err)
                ));
            }
            out.push_str(&format!(
                "<tr id=\"entry-{id}\"><td class=\"id\" data-l=\"entry\">#{id}</td>\
                 <td data-l=\"what\">{what}</td><td data-l=\"in manual review since\">{since}</td>\
                 <td data-l=\"attempts\">{att}{last}</td><td data-l=\"why\">{why}</td>\
                 <td data-l=\"what to do\">{verbs}</td></tr>\n",
                id = e.id,
                what = what_html(e, &d.blocked_steps, &d.manual_queue),
                since = ago(d.now, manual_since(e)),
                att = e.attempts,
                // A saga attempts nothing itself (its steps do): no "last attempt" for it.
                last =
                    last_attempt(e)
                        .filter(|_| e.attempts > 0)
                        .map_or(String::new(), |t| format!(
                            "<br><span class=\"abs\">last {}</span>",
                            utc(t)
                        )),
                verbs = verbs_html(&canister, e),
            ));
        }
        out.push_str("</table>\n");
    }

    // Unresolved entries recovery is working on, oldest first.
    let unresolved: u64 = UNRESOLVED.iter().map(|s| count(m, *s)).sum();
    if !d.unresolved.is_empty() {
        out.push_str(&format!(
            "<h2 id=\"unresolved\">Unresolved, recovering by itself <small>{} of {}, oldest \
             first</small></h2>\n<table class=\"unresolved\"><tr class=\"head\"><th>#</th>\
             <th>kind</th><th>status</th><th>created</th><th>attempts</th><th>next attempt</th>\
             <th>last error</th></tr>\n",
            d.unresolved.len(),
            unresolved
        ));
        for e in &d.unresolved {
            out.push_str(&format!(
                "<tr><td class=\"id\" data-l=\"entry\">#{}</td><td data-l=\"kind\">{}</td>\
                 <td data-l=\"status\" class=\"s-{s}\">{s}</td><td data-l=\"created\">{}</td>\
                 <td data-l=\"attempts\">{}</td><td data-l=\"next\">{}</td>\
                 <td data-l=\"last error\"><div class=\"why\">{}</div></td></tr>\n",
                e.id,
                e.kind.as_str(),
                ago(d.now, e.created_at),
                e.attempts,
                e.next_attempt_at.map_or("—".into(), |t| if t <= d.now {
                    format!("due<br><span class=\"abs\">{}</span>", utc(t))
                } else {
                    format!(
                        "in {}<br><span class=\"abs\">{}</span>",
                        age(t - d.now),
                        utc(t)
                    )
                }),
                escape(e.last_error.as_deref().unwrap_or("—")),
                s = e.status.as_str(),
            ));
        }
        out.push_str("</table>\n");
    }

    // Counts: only what is non-zero.
    out.push_str("<h2>Entries</h2><div class=\"counts\">");
    out.push_str(&format!("<span>total <b>{}</b></span>", m.entries_total));
    for c in m.entries_by_status.iter().filter(|c| c.count > 0) {
        out.push_str(&format!(
            "<span class=\"s-{0}\">{0} <b>{1}</b></span>",
            c.status.as_str(),
            c.count
        ));
    }
    out.push_str("</div><div class=\"counts\">");
    for c in m.entries_by_kind.iter().filter(|c| c.count > 0) {
        out.push_str(&format!(
            "<span>{} <b>{}</b></span>",
            c.kind.as_str(),
            c.count
        ));
    }
    out.push_str("</div>");
    if m.recoveries_by_path.iter().any(|p| p.count > 0) {
        out.push_str("<h2>Recoveries by path</h2><div class=\"counts\">");
        for p in m.recoveries_by_path.iter().filter(|p| p.count > 0) {
            out.push_str(&format!(
                "<span>{} <b>{}</b></span>",
                p.path.as_str(),
                p.count
            ));
        }
        out.push_str("</div>");
    }
    out.push_str(&format!(
        "\n<footer>flows in flight {} · attempts {} · recovery ticks {} · audit records {} · \
         contradictions {} · stable memory {} bytes{} · <a href=\"/metrics\">/metrics</a> · \
         <a href=\"/logs\">/logs</a> · public and uncertified: owners, amounts and lock keys \
         are shown to operators only (<code>icjournal show ID</code>)</footer>\n\
         </main></body></html>\n",
        d.in_flight,
        m.attempts_total,
        m.recovery_ticks,
        m.audit_records,
        m.contradictions,
        m.stable_memory_bytes,
        retention_footer(m)
    ));
    out
}

/// Retention's counters for the footer, as ` · name value` each; nothing for a figure the
/// metrics leave out (an engine build without retention).
fn retention_footer(m: &Metrics) -> String {
    let compacted = m
        .compacted_by_status
        .as_ref()
        .map(|v| v.iter().map(|s| s.count).sum::<u64>());
    [
        ("compacted", compacted, ""),
        ("summaries", m.summaries, ""),
        ("summaries pruned", m.summaries_pruned, ""),
        ("audit log", m.audit_bytes, " bytes"),
    ]
    .into_iter()
    .filter_map(|(name, v, unit)| v.map(|v| format!(" · {name} {v}{unit}")))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use icjournal::metrics::{KindCount, PathCount, StatusCount};
    use icjournal::types::{HistoryItem, LedgerOp, TransferIntent};
    use icjournal::RecoveryPath;
    use icrc_ledger_types::icrc1::account::Account;
    use icrc_ledger_types::icrc2::transfer_from::TransferFromArgs;

    const SEC: u64 = 1_000_000_000;
    /// 2023-11-14 22:13:20 UTC.
    const NOW: u64 = 1_700_000_000 * SEC;

    fn owner() -> Principal {
        Principal::from_slice(&[42, 42])
    }

    fn ledger() -> Principal {
        Principal::from_slice(&[7, 7, 7])
    }

    fn metrics() -> Metrics {
        Metrics {
            timestamp: NOW,
            entries_total: 7,
            entries_by_status: Status::ALL
                .iter()
                .map(|s| StatusCount {
                    status: *s,
                    count: match s {
                        Status::Succeeded => 3,
                        Status::ManualReview => 3,
                        Status::Unknown => 1,
                        _ => 0,
                    },
                })
                .collect(),
            entries_by_kind: vec![
                KindCount {
                    kind: Kind::Icrc2TransferFrom,
                    count: 6,
                },
                KindCount {
                    kind: Kind::LocalStep,
                    count: 0,
                },
                KindCount {
                    kind: Kind::Saga,
                    count: 1,
                },
            ],
            recoveries_by_path: vec![
                PathCount {
                    path: RecoveryPath::MemoLookup,
                    count: 1,
                },
                PathCount {
                    path: RecoveryPath::DedupResend,
                    count: 0,
                },
            ],
            attempts_total: 4,
            oldest_unresolved_age_ns: Some(9 * 3600 * SEC),
            manual_queue_depth: 3,
            stable_memory_bytes: 65_536,
            audit_records: 9,
            contradictions: 0,
            recovery_ticks: 5,
            compacted_by_status: None,
            summaries: None,
            summaries_pruned: None,
            audit_bytes: None,
            claims_in_tree: None,
        }
    }

    fn transfer_intent(amount: u64) -> Intent {
        Intent::Transfer(TransferIntent {
            ledger: ledger(),
            op: LedgerOp::Icrc2TransferFrom(TransferFromArgs {
                spender_subaccount: None,
                from: Account {
                    owner: owner(),
                    subaccount: None,
                },
                to: Account {
                    owner: Principal::from_slice(&[9, 9]),
                    subaccount: None,
                },
                amount: amount.into(),
                fee: None,
                memo: None,
                created_at_time: Some(NOW - 7 * 3600 * SEC),
            }),
            executor: icjournal::types::Executor::SelfCanister,
            window: None,
        })
    }

    fn item(at: u64, from: Status, to: Status, note: &str) -> HistoryItem {
        HistoryItem {
            at,
            from,
            to,
            note: note.into(),
        }
    }

    /// A transfer created 7h ago, last tried 6h55m ago, in manual review for 6h50m.
    fn stuck_transfer(id: EntryId, reason: &str) -> Entry {
        let created = NOW - 7 * 3600 * SEC;
        let tried = NOW - (6 * 3600 + 55 * 60) * SEC;
        let manual = NOW - (6 * 3600 + 50 * 60) * SEC;
        Entry {
            id,
            owner: owner(),
            kind: Kind::Icrc2TransferFrom,
            lock_key: Some("secret-lock".into()),
            intent: transfer_intent(123_456_789),
            status: Status::ManualReview,
            attempts: 6,
            created_at: created,
            updated_at: manual,
            next_attempt_at: None,
            outcome: None,
            last_error: Some("ledger unreachable: SysTransient".into()),
            manual_reason: Some(reason.into()),
            parent: None,
            scan: None,
            history: vec![
                item(
                    created + SEC,
                    Status::Pending,
                    Status::Unknown,
                    "lost reply",
                ),
                item(tried, Status::Unknown, Status::Recovering, "attempt 6"),
                item(manual, Status::Recovering, Status::ManualReview, reason),
            ],
            history_dropped: 0,
            blocked_on: None,
        }
    }

    fn saga_blocked_on(id: EntryId, step: EntryId) -> Entry {
        Entry {
            id,
            kind: Kind::Saga,
            intent: Intent::Record {
                label: "saga".into(),
                payload: vec![],
            },
            attempts: 0,
            last_error: None,
            history: vec![item(
                NOW - 60 * SEC,
                Status::Pending,
                Status::ManualReview,
                "step needs an operator",
            )],
            blocked_on: Some(step),
            manual_reason: Some(format!("step #{step} is in manual review")),
            ..stuck_transfer(id, "")
        }
    }

    fn unknown(id: EntryId) -> Entry {
        Entry {
            status: Status::Unknown,
            manual_reason: None,
            next_attempt_at: Some(NOW + 90 * SEC),
            last_error: Some("icrc3_get_blocks: <b>busy</b>".into()),
            history: vec![],
            ..stuck_transfer(id, "")
        }
    }

    const LONG: &str = "gave up after 6 attempts; last: lookup undecided: blocks [0, 951) not \
        fully readable (got 200) while scanning the archive for the memo of this entry, which \
        is the part everyone reads first and nobody needs; the useful part comes at the end: \
        Canister trapped: <script>alert(1)</script> panicked at 'index out of bounds' TRAP-END";

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
            now: NOW,
            canister_id: Principal::from_slice(&[1, 2, 3]),
            version: "9.9.9",
            metrics: metrics(),
            manual_queue: vec![
                stuck_transfer(3, LONG),
                stuck_transfer(4, "short reason"),
                saga_blocked_on(6, 5),
            ],
            blocked_steps: vec![EntrySummary::from(&Entry {
                status: Status::Unknown,
                ..stuck_transfer(5, "")
            })],
            unresolved: vec![unknown(8)],
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

    fn html(d: Dashboard) -> String {
        let r = route(&get("/dashboard"), || unreachable!(), || d);
        assert_eq!(r.status_code, 200);
        String::from_utf8(r.body).unwrap()
    }

    #[test]
    fn metrics_route_is_prometheus_text() {
        let r = route(&get("/metrics"), gauges, || unreachable!());
        assert_eq!(r.status_code, 200);
        let body = String::from_utf8(r.body).unwrap();
        assert!(body.contains("icjournal_entries_total 7"), "{body}");
        assert!(body.contains("icjournal_manual_queue_depth 3"));
        assert!(body.contains("icjournal_service_recovery_paused 1"));
        assert!(body.contains("icjournal_service_flows_in_flight 2"));
        assert!(body.contains("# TYPE icjournal_recoveries counter"));
        assert!(body.contains(&format!(
            "icjournal_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(
            !body.to_lowercase().contains("cycle"),
            "no cycles balance in public HTTP"
        );
    }

    #[test]
    fn dashboard_leads_with_the_health_line_and_the_queue() {
        let h = html(dash());
        let health = h.find("id=\"health\"").expect("health line");
        let queue = h.find("id=\"queue\"").expect("queue");
        let counts = h.find("<h2>Entries</h2>").expect("counts");
        assert!(
            health < queue && queue < counts,
            "health, queue, then counts"
        );
        // Oldest by time in manual review (6h50m), not by age since creation (7h).
        let (level, line) = health_line(&dash());
        assert_eq!(level, "bad");
        assert!(
            line.starts_with("3 need an operator, oldest 6h50m"),
            "{line}"
        );
        assert!(line.contains("recovery PAUSED"), "{line}");
        assert!(
            line.contains("1 unresolved, recovering by itself once resumed, oldest 7h0m"),
            "{line}"
        );
        // Low-value counters are not at the top.
        let top = &h[..queue];
        for noise in ["recovery ticks", "audit records", "attempts 4"] {
            assert!(!top.contains(noise), "{noise} above the queue");
            assert!(h.contains(noise), "{noise} still in the footer");
        }
        // Zero rows are hidden.
        assert!(!h.contains("local_step"), "zero count shown");
        assert!(!h.contains("dedup_resend"), "zero count shown");
        assert!(!h.contains("compensated"), "zero count shown");
        assert!(h.contains("memo_lookup"));
        // Self-refreshing, phone-sized, self-contained.
        assert!(h.contains(&format!(
            "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">"
        )));
        assert!(h.contains("name=\"viewport\""));
        assert!(!h.contains("http://") && !h.contains("https://") && !h.contains("src="));
        assert!(h.contains("generated 2023-11-14 22:13:20 UTC"), "{h}");
        assert!(h.contains("version 9.9.9"));
        assert!(h.contains(&Principal::from_slice(&[1, 2, 3]).to_text()));
    }

    /// Retention's counters are in the footer (compacted summed over statuses), and left out
    /// when the metrics do not have them.
    #[test]
    fn dashboard_footer_shows_retention_counters() {
        let h = html(dash());
        let footer = &h[h.find("<footer>").expect("footer")..];
        for absent in ["compacted", "summaries", "audit log"] {
            assert!(
                !footer.contains(absent),
                "{absent} without retention metrics"
            );
        }
        let mut d = dash();
        d.metrics.compacted_by_status = Some(vec![
            StatusCount {
                status: Status::Succeeded,
                count: 5,
            },
            StatusCount {
                status: Status::Failed,
                count: 2,
            },
        ]);
        d.metrics.summaries = Some(4);
        d.metrics.summaries_pruned = Some(3);
        d.metrics.audit_bytes = Some(12_345);
        let h = html(d);
        let footer = &h[h.find("<footer>").expect("footer")..];
        assert!(
            footer.contains(
                "stable memory 65536 bytes · compacted 7 · summaries 4 · summaries pruned 3 · \
                 audit log 12345 bytes · "
            ),
            "{footer}"
        );
    }

    #[test]
    fn dashboard_rows_say_why_since_when_and_what_to_type() {
        let h = html(dash());
        // The whole reason, escaped, its end visible in the folded summary.
        assert!(
            h.contains("TRAP-END</summary>"),
            "end of a long reason in the summary"
        );
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt; panicked"));
        assert!(h.contains(&escape(LONG)), "whole reason");
        assert!(h.contains("<div class=\"why\">short reason</div>"));
        assert!(h.contains("last error: ledger unreachable: SysTransient"));
        // Since when: the transition into manual review, with the absolute time.
        assert!(h.contains("6h50m ago<br><span class=\"abs\">2023-11-14 15:23:20 UTC"));
        // Last attempt: the last start of recovery.
        assert!(h.contains("last 2023-11-14 15:18:20 UTC"));
        // The verbs, ready to paste.
        assert!(h.contains("icjournal resolve-succeeded 3 --block B --reason &quot;WHY&quot;"));
        assert!(h.contains("icjournal retry 4 --reason &quot;WHY&quot;"));
        assert!(h.contains("icjournal show 4"));
        assert!(
            h.contains("admin_act &#39;(record { entry_id = 3 : nat64; action = variant { Retry }")
        );
        // Which ledger and how to find the transfer in it.
        assert!(h.contains(&ledger().to_text()));
        assert!(h.contains(
            &icjournal::memo::encode(3)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
        // A saga says what it waits for, and the step's state.
        assert!(h.contains("blocked on step #5 (unknown)"), "{h}");
        assert!(h.contains("blocked on step #5: act on #5; the saga resumes by itself"));
        assert!(h.contains("icjournal compensate 6"));
        // Unresolved: next attempt and last error (escaped).
        assert!(h.contains("in 1m30s<br>"));
        assert!(h.contains("icrc3_get_blocks: &lt;b&gt;busy&lt;/b&gt;"));
    }

    #[test]
    fn dashboard_is_public_no_owner_lock_key_amount_or_cycles() {
        let h = html(dash());
        assert!(!h.contains("<script>"));
        assert!(!h.contains("<b>busy"));
        assert!(!h.contains("secret-lock"));
        assert!(
            !h.contains(&owner().to_text()),
            "owners are for operators (I7)"
        );
        assert!(!h.contains("123456789") && !h.contains("123_456_789"));
        assert!(!h.to_lowercase().contains("cycles"));
    }

    #[test]
    fn dashboard_all_clear_and_bounded_text() {
        let mut d = dash();
        d.manual_queue.clear();
        d.blocked_steps.clear();
        d.unresolved.clear();
        d.recovery_paused = false;
        d.metrics.manual_queue_depth = 0;
        for c in &mut d.metrics.entries_by_status {
            if c.status != Status::Succeeded {
                c.count = 0;
            }
        }
        assert_eq!(
            health_line(&d),
            (
                "ok",
                "All clear: nothing needs an operator, nothing unresolved".to_string()
            )
        );
        let h = html(d.clone());
        assert!(h.contains("Nothing needs an operator."));
        assert!(!h.contains("id=\"unresolved\""));
        // More in the queue than listed: the oldest is of the listed ones.
        let mut d = dash();
        d.metrics.manual_queue_depth = 40;
        assert!(health_line(&d)
            .1
            .starts_with("40 need an operator, oldest 6h50m (of the first 3 listed)"));
        d.metrics.contradictions = 1;
        assert!(health_line(&d).1.contains("1 contradiction recorded"));
    }

    #[test]
    fn http_headers_head_and_405() {
        let r = route(&get("/dashboard"), || unreachable!(), dash);
        let header = |r: &HttpResponse, n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header(&r, "Content-Security-Policy").as_deref(), Some(CSP));
        assert!(CSP.starts_with("default-src 'none'; style-src 'unsafe-inline'"));
        assert_eq!(
            header(&r, "X-Content-Type-Options").as_deref(),
            Some("nosniff")
        );
        let len = r.body.len();
        let mut head = get("/dashboard");
        head.method = "HEAD".into();
        let h = route(&head, || unreachable!(), dash);
        assert_eq!(h.status_code, 200);
        assert!(h.body.is_empty());
        assert_eq!(header(&h, "Content-Length"), Some(len.to_string()));
        let mut post = get("/metrics");
        post.method = "POST".into();
        let p = route(&post, || unreachable!(), || unreachable!());
        assert_eq!(p.status_code, 405);
        assert_eq!(header(&p, "Allow").as_deref(), Some("GET, HEAD"));
    }

    #[test]
    fn times_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(NOW), "2023-11-14 22:13:20 UTC");
        // A leap day and the end of a leap year.
        assert_eq!(utc(951_782_400 * SEC), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_735_689_599 * SEC + 999), "2024-12-31 23:59:59 UTC");
        assert_eq!(chars_tail("héllo", 3), "llo");
        assert_eq!(chars_head("héllo", 2), "hé");
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
        for url in ["/", "/dashboard?x=1"] {
            assert_eq!(route(&get(url), || unreachable!(), dash).status_code, 200);
        }
        assert_eq!(parse_url("/a?b=1&c"), ("/a", vec![("b", "1"), ("c", "")]));
        assert_eq!(age(59_000_000_000), "59s");
        assert_eq!(age(2 * 86_400_000_000_000), "2d0h");
    }
}
