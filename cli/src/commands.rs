//! The verbs. Each one calls the service through `icjournal_client::Client` and prints either
//! text for people or JSON for scripts.

use crate::args::{ActionArg, Command, ConfigCommand, Reason};
use crate::config_edit;
use crate::errors::{client_error, is_inspect_refusal, service_error, Call, CliError, Exit};
use crate::format::{self, clip, duration, nat, utc, when, Table};
use crate::prometheus::{self, HttpRequest, HttpResponse};
use crate::views;
use candid::Principal;
use icjournal_client::agent::AgentTransport;
use icjournal_client::{
    AdminAction, AdminListArgs, AdminRequest, AdminResult, AuditArgs, AuditRecord, CallMode,
    Client, ClientError, ControllerView, Entry, EntrySummary, Executor, Intent, JournalError,
    LedgerOp, ListFilter, Metrics, Outcome, PageRequest, ServiceError, SetConfigArgs, Status,
};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};

/// The service's page size cap (`MAX_PAGE_SIZE`): asking for more returns no more.
const PAGE: u32 = 100;

pub struct Ctx {
    pub client: Client<AgentTransport>,
    pub principal: Principal,
    pub json: bool,
    pub network: String,
}

/// Local checks that need no network: a refusal here sends nothing.
pub fn check_locally(cmd: &Command, principal: Principal) -> Result<(), CliError> {
    let changes = |verb: &str, reason: &Reason| -> Result<(), CliError> {
        require_reason(verb, reason)?;
        if principal == Principal::anonymous() {
            return Err(CliError::new(
                Exit::Refused,
                "anonymous_caller",
                format!(
                    "{verb} changes the journal, which needs an operator identity: pass \
                     --identity NAME or --identity-pem FILE"
                ),
            ));
        }
        Ok(())
    };
    match cmd {
        Command::Retry { reason, .. } => changes("retry", reason),
        Command::ResolveSucceeded { reason, .. } => changes("resolve-succeeded", reason),
        Command::ResolveFailed { reason, .. } => changes("resolve-failed", reason),
        Command::Compensate { reason, .. } => changes("compensate", reason),
        Command::Cancel { reason, .. } => changes("cancel", reason),
        Command::Approve {
            action,
            block,
            acknowledge_risk,
            reason,
            ..
        } => {
            if block.is_some() && *action != ActionArg::ResolveSucceeded {
                return Err(CliError::usage(
                    "--block goes with --action resolve-succeeded only",
                ));
            }
            if *acknowledge_risk && !matches!(action, ActionArg::ResolveFailed | ActionArg::Cancel)
            {
                return Err(CliError::usage(
                    "--acknowledge-risk goes with --action resolve-failed or cancel only",
                ));
            }
            changes("approve", reason)
        }
        Command::Pause { reason } => changes("pause", reason),
        Command::Resume { reason } => changes("resume", reason),
        Command::Config(ConfigCommand::Set {
            file,
            set,
            dry_run,
            reason,
        }) => {
            if file.is_none() && set.is_empty() {
                return Err(CliError::usage(
                    "config set needs --file FILE or --set KEY=VALUE (see `icjournal config set --help`)",
                ));
            }
            if *dry_run {
                Ok(())
            } else {
                changes("config set", reason)
            }
        }
        Command::Status
        | Command::Metrics { .. }
        | Command::List { .. }
        | Command::Show { .. }
        | Command::Audit { .. }
        | Command::Config(ConfigCommand::Get) => Ok(()),
    }
}

fn require_reason(verb: &str, reason: &Reason) -> Result<String, CliError> {
    match reason.reason.as_deref().map(str::trim) {
        Some(r) if !r.is_empty() => Ok(r.to_string()),
        Some(_) => Err(CliError::usage(format!(
            "{verb}: --reason must not be empty (it is recorded with your principal)"
        ))),
        None => Err(CliError::usage(format!(
            "{verb} changes the journal: pass --reason \"why\" (it is recorded with your \
             principal)"
        ))),
    }
}

/// Progress of a long listing on stderr, only when a person watches it.
struct Progress {
    on: bool,
    shown: bool,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        Progress {
            on: enabled && std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn update(&mut self, text: &str) {
        if self.on {
            eprint!("\r\x1b[K{text}");
            let _ = std::io::stderr().flush();
            self.shown = true;
        }
    }

    fn done(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done();
    }
}

impl Ctx {
    fn emit(&self, human: impl FnOnce() -> String, json: impl FnOnce() -> Value) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json()).expect("JSON values serialize")
            );
        } else {
            print!("{}", human());
        }
    }

    fn call<'a>(&self, what: &str, update: bool, check: &'a str) -> Call<'a> {
        Call {
            what: what.to_string(),
            update,
            check,
            principal: self.principal,
        }
    }

    fn read<T>(&self, r: Result<T, ClientError>, what: &str) -> Result<T, CliError> {
        r.map_err(|e| client_error(e, &self.call(what, false, "")))
    }

    /// Maps an update's failure. The service's ingress filter refuses non-operators before
    /// the method runs, so no typed error comes back: ask an operator query why.
    async fn write<T>(
        &self,
        r: Result<T, ClientError>,
        what: &str,
        check: &str,
    ) -> Result<T, CliError> {
        match r {
            Ok(v) => Ok(v),
            Err(e) if is_inspect_refusal(&e) => match self.client.get_config().await {
                Err(ClientError::Service(
                    s @ (ServiceError::NotAuthorized { .. }
                    | ServiceError::Journal(JournalError::AnonymousCaller)),
                )) => {
                    let mut err = service_error(&s, self.principal);
                    err.message = format!("{what} was refused: {}", err.message);
                    Err(err)
                }
                _ => {
                    let mut err = client_error(e, &self.call(what, true, check));
                    err.message.push_str(
                        " (refused by the canister's ingress filter before it ran: nothing changed)",
                    );
                    Err(err)
                }
            },
            Err(e) => Err(client_error(e, &self.call(what, true, check))),
        }
    }

    /// The canister's clock (from the public metrics), so ages do not depend on this machine's.
    async fn now(&self) -> Result<u64, CliError> {
        Ok(self
            .read(self.client.metrics().await, "reading the metrics")?
            .timestamp)
    }

    pub async fn run(&self, cmd: Command) -> Result<(), CliError> {
        match cmd {
            Command::Status => self.status().await,
            Command::Metrics { parsed } => self.metrics(parsed).await,
            Command::List {
                status,
                kind,
                owner,
                older_than,
                limit,
                after,
                all,
            } => {
                let filter = ListFilter {
                    owner,
                    status,
                    kind,
                    created_before: None,
                };
                self.list(filter, older_than, (!all).then_some(limit), after)
                    .await
            }
            Command::Show { id } => self.show(id).await,
            Command::Audit {
                entry,
                from,
                limit,
                all,
            } => self.audit(entry, from, (!all).then_some(limit)).await,
            Command::Retry { id, reason } => self.act(id, AdminAction::Retry, false, &reason).await,
            Command::ResolveSucceeded { id, block, reason } => {
                self.act(
                    id,
                    AdminAction::ResolveSucceeded { block_index: block },
                    false,
                    &reason,
                )
                .await
            }
            Command::ResolveFailed {
                id,
                acknowledge_risk,
                reason,
            } => {
                self.act(id, AdminAction::ResolveFailed, acknowledge_risk, &reason)
                    .await
            }
            Command::Compensate { id, reason } => {
                self.act(id, AdminAction::Compensate, false, &reason).await
            }
            Command::Cancel {
                id,
                acknowledge_risk,
                reason,
            } => {
                self.act(id, AdminAction::Cancel, acknowledge_risk, &reason)
                    .await
            }
            Command::Approve {
                id,
                action,
                block,
                acknowledge_risk,
                reason,
            } => {
                let action = match action {
                    ActionArg::Retry => AdminAction::Retry,
                    ActionArg::ResolveSucceeded => {
                        AdminAction::ResolveSucceeded { block_index: block }
                    }
                    ActionArg::ResolveFailed => AdminAction::ResolveFailed,
                    ActionArg::Compensate => AdminAction::Compensate,
                    ActionArg::Cancel => AdminAction::Cancel,
                };
                self.act(id, action, acknowledge_risk, &reason).await
            }
            Command::Pause { reason } => self.pause(true, &reason).await,
            Command::Resume { reason } => self.pause(false, &reason).await,
            Command::Config(ConfigCommand::Get) => self.config_get().await,
            Command::Config(ConfigCommand::Set {
                file,
                set,
                dry_run,
                reason,
            }) => self.config_set(file, set, dry_run, &reason).await,
        }
    }

    // ------------------------------------------------------------------------ status

    async fn metrics_text(&self) -> Result<String, CliError> {
        let req = HttpRequest {
            method: "GET".into(),
            url: "/metrics".into(),
            headers: vec![],
            body: vec![],
        };
        let (resp,): (HttpResponse,) = self.read(
            self.client
                .call("http_request", CallMode::Query, (req,))
                .await,
            "reading /metrics",
        )?;
        if resp.status_code != 200 {
            return Err(CliError::new(
                Exit::Rejected,
                "http_status",
                format!(
                    "/metrics answered HTTP {}: {}",
                    resp.status_code,
                    String::from_utf8_lossy(&resp.body)
                ),
            ));
        }
        String::from_utf8(resp.body)
            .map_err(|_| CliError::new(Exit::Rejected, "http_body", "/metrics is not UTF-8 text"))
    }

    async fn status(&self) -> Result<(), CliError> {
        let m = self.read(self.client.metrics().await, "reading the metrics")?;
        // The service gauges (paused, in flight) are public only on /metrics.
        let gauges = match self.metrics_text().await {
            Ok(t) => prometheus::parse(&t).ok(),
            Err(_) => None,
        };
        let controller = match self.client.controller_view().await {
            Ok(v) => Some(v),
            Err(ClientError::Service(
                ServiceError::NotAuthorized { .. }
                | ServiceError::Journal(JournalError::AnonymousCaller),
            )) => None,
            Err(e) => {
                return Err(client_error(
                    e,
                    &self.call("reading the controller view", false, ""),
                ))
            }
        };
        let paused = controller.as_ref().map(|c| c.recovery_paused).or_else(|| {
            gauges.as_ref().and_then(|g| {
                prometheus::gauge(g, "icjournal_service_recovery_paused").map(|v| v != 0.0)
            })
        });
        let in_flight = controller
            .as_ref()
            .map(|c| c.in_flight_total as u64)
            .or_else(|| {
                gauges.as_ref().and_then(|g| {
                    prometheus::gauge(g, "icjournal_service_flows_in_flight").map(|v| v as u64)
                })
            });
        let mut attention = Vec::new();
        if m.manual_queue_depth > 0 {
            attention.push(format!(
                "{} {} in manual review",
                m.manual_queue_depth,
                if m.manual_queue_depth == 1 {
                    "entry"
                } else {
                    "entries"
                }
            ));
        }
        if paused == Some(true) {
            attention.push("recovery is paused".to_string());
        }
        if m.contradictions > 0 {
            attention.push(format!(
                "{} contradiction(s) recorded (see `icjournal audit`)",
                m.contradictions
            ));
        }
        let healthy = attention.is_empty();
        self.emit(
            || self.status_text(&m, paused, in_flight, controller.as_ref(), &attention),
            || {
                json!({
                    "canister": self.client.canister_id().to_text(),
                    "network": self.network,
                    "principal": self.principal.to_text(),
                    "now": views::time(m.timestamp),
                    "healthy": healthy,
                    "attention": attention,
                    "manual_queue_depth": m.manual_queue_depth,
                    "oldest_unresolved_age_ns": m.oldest_unresolved_age_ns,
                    "recovery_paused": paused,
                    "in_flight": in_flight,
                    "metrics": views::metrics(&m),
                    "controller": controller.as_ref().map(|c| json!({
                        "cycles_balance": nat(&c.cycles_balance),
                        "canister_version": c.canister_version,
                        "in_flight_total": c.in_flight_total,
                        "recovery_paused": c.recovery_paused,
                    })),
                })
            },
        );
        Ok(())
    }

    fn status_text(
        &self,
        m: &Metrics,
        paused: Option<bool>,
        in_flight: Option<u64>,
        controller: Option<&ControllerView>,
        attention: &[String],
    ) -> String {
        let now = m.timestamp;
        let mut out = String::new();
        let oldest = m
            .oldest_unresolved_age_ns
            .map_or("none".to_string(), duration);
        let recovery = match paused {
            Some(true) => "PAUSED",
            Some(false) => "running",
            None => "unknown",
        };
        if attention.is_empty() {
            out.push_str(&format!(
                "OK: manual queue empty, oldest unresolved {oldest}, recovery {recovery}\n"
            ));
        } else {
            out.push_str(&format!(
                "ATTENTION: {}; oldest unresolved {oldest}, recovery {recovery}\n",
                attention.join("; ")
            ));
        }
        let mut t = Table::new(&["", ""]);
        let mut kv = |k: &str, v: String| t.row(vec![k.to_string(), v]);
        kv(
            "canister",
            format!("{} on {}", self.client.canister_id(), self.network),
        );
        kv(
            "identity",
            if self.principal == Principal::anonymous() {
                "anonymous".into()
            } else {
                self.principal.to_text()
            },
        );
        kv("canister time", utc(now));
        kv(
            "manual queue",
            if m.manual_queue_depth > 0 {
                format!(
                    "{} (icjournal list --status manual_review)",
                    m.manual_queue_depth
                )
            } else {
                "0".into()
            },
        );
        kv(
            "oldest unresolved",
            m.oldest_unresolved_age_ns.map_or("none".into(), |age| {
                format!("{} (since {})", duration(age), utc(now.saturating_sub(age)))
            }),
        );
        kv("recovery", recovery.to_string());
        kv(
            "in flight",
            in_flight.map_or("unknown".into(), |n| n.to_string()),
        );
        let counts: Vec<String> = m
            .entries_by_status
            .iter()
            .filter(|s| s.count > 0)
            .map(|s| format!("{} {}", s.count, s.status.as_str()))
            .collect();
        kv(
            "entries",
            format!(
                "{} total{}{}",
                m.entries_total,
                if counts.is_empty() { "" } else { ": " },
                counts.join(", ")
            ),
        );
        let paths: Vec<String> = m
            .recoveries_by_path
            .iter()
            .filter(|p| p.count > 0)
            .map(|p| format!("{} {}", p.count, p.path.as_str()))
            .collect();
        kv(
            "recoveries",
            if paths.is_empty() {
                "none".into()
            } else {
                paths.join(", ")
            },
        );
        kv("attempts", m.attempts_total.to_string());
        kv("contradictions", m.contradictions.to_string());
        kv("audit records", m.audit_records.to_string());
        kv(
            "stable memory",
            format!(
                "{:.1} MiB",
                m.stable_memory_bytes as f64 / (1024.0 * 1024.0)
            ),
        );
        for (k, v) in views::retention_rows(m) {
            kv(k, v);
        }
        match controller {
            Some(c) => {
                kv("cycles", format::cycles(&c.cycles_balance));
                kv("canister version", c.canister_version.to_string());
            }
            None => kv(
                "controller view",
                "not shown (the identity is not a controller)".into(),
            ),
        }
        let table = t.render();
        // The empty header line of the key/value table is not printed.
        out.push_str(table.split_once('\n').map_or("", |(_, rest)| rest));
        out
    }

    async fn metrics(&self, parsed: bool) -> Result<(), CliError> {
        let text = self.metrics_text().await?;
        if !parsed && !self.json {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            return Ok(());
        }
        let samples = prometheus::parse(&text)
            .map_err(|e| CliError::new(Exit::Rejected, "bad_metrics", format!("/metrics: {e}")))?;
        self.emit(
            || {
                let mut t = Table::new(&["NAME", "LABELS", "VALUE"]);
                for s in &samples {
                    let labels: Vec<String> =
                        s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    t.row(vec![
                        s.name.clone(),
                        labels.join(","),
                        s.value.map_or("NaN".into(), |v| v.to_string()),
                    ]);
                }
                t.render()
            },
            || json!({ "samples": samples }),
        );
        Ok(())
    }

    // ------------------------------------------------------------------------ list / show

    async fn list(
        &self,
        mut filter: ListFilter,
        older_than: Option<u64>,
        limit: Option<u32>,
        after: Option<u64>,
    ) -> Result<(), CliError> {
        let now = if older_than.is_some() || !self.json {
            Some(self.now().await?)
        } else {
            None
        };
        if let (Some(age), Some(now)) = (older_than, now) {
            filter.created_before = Some(now.saturating_sub(age));
        }
        let mut items: Vec<EntrySummary> = Vec::new();
        let mut cursor = after;
        let mut next = None;
        let mut progress = Progress::new(true);
        let mut pages = 0u32;
        loop {
            let want = match limit {
                Some(l) => (l as usize - items.len()).min(PAGE as usize) as u32,
                None => PAGE,
            };
            let page = self.read(
                self.client
                    .admin_list(AdminListArgs {
                        filter: filter.clone(),
                        page: PageRequest {
                            start_after: cursor,
                            limit: want,
                        },
                    })
                    .await,
                "listing entries",
            )?;
            pages += 1;
            items.extend(page.items);
            if pages > 1 {
                progress.update(&format!("fetched {} entries ({pages} pages)…", items.len()));
            }
            match page.next {
                None => break,
                Some(n) if cursor.is_some_and(|c| n <= c) => {
                    return Err(CliError::new(
                        Exit::Rejected,
                        "bad_page",
                        format!("the service's next page cursor {n} does not advance"),
                    ))
                }
                Some(n) => {
                    cursor = Some(n);
                    if let Some(l) = limit {
                        if items.len() >= l as usize {
                            items.truncate(l as usize);
                            next = items.last().map(|e| e.id).or(Some(n));
                            break;
                        }
                    }
                }
            }
        }
        progress.done();
        self.emit(
            || {
                let now = now.unwrap_or(0);
                let mut out = String::new();
                if items.is_empty() {
                    out.push_str("no entries\n");
                } else {
                    let mut t = Table::new(&[
                        "ID",
                        "STATUS",
                        "KIND",
                        "ATTEMPTS",
                        "CREATED (UTC)",
                        "AGE",
                        "UPDATED",
                        "OWNER",
                        "MANUAL REASON",
                    ]);
                    for e in &items {
                        t.row(vec![
                            e.id.to_string(),
                            e.status.as_str().into(),
                            e.kind.as_str().into(),
                            e.attempts.to_string(),
                            utc(e.created_at).trim_end_matches(" UTC").into(),
                            duration(now.saturating_sub(e.created_at)),
                            format::relative(now, e.updated_at),
                            e.owner.to_text(),
                            clip(e.manual_reason.as_deref().unwrap_or(""), 60),
                        ]);
                    }
                    out.push_str(&t.render());
                    out.push_str(&format!(
                        "{} {}\n",
                        items.len(),
                        if items.len() == 1 { "entry" } else { "entries" }
                    ));
                }
                if let Some(n) = next {
                    out.push_str(&format!("more: add --after {n} (or --all)\n"));
                }
                out
            },
            || {
                json!({
                    "items": items.iter().map(views::summary).collect::<Vec<_>>(),
                    "next": next,
                })
            },
        );
        Ok(())
    }

    async fn show(&self, id: u64) -> Result<(), CliError> {
        let e = self.read(
            self.client.admin_get_entry(id).await,
            &format!("reading entry {id}"),
        )?;
        let now = if self.json { 0 } else { self.now().await? };
        self.emit(|| show_text(&e, now), || views::entry(&e));
        Ok(())
    }

    // ------------------------------------------------------------------------ audit

    async fn audit(
        &self,
        entry: Option<u64>,
        from: Option<u64>,
        limit: Option<u32>,
    ) -> Result<(), CliError> {
        let m = self.read(self.client.metrics().await, "reading the metrics")?;
        let total = m.audit_records;
        // Without --from: the last records (of the whole trail, or of one entry: the trail
        // has no index by entry, so that scans it all).
        let (start, keep_last) = match (from, entry) {
            (Some(f), _) => (f, false),
            (None, Some(_)) => (0, true),
            (None, None) => (total.saturating_sub(limit.map_or(total, u64::from)), false),
        };
        let mut out: Vec<AuditRecord> = Vec::new();
        let mut seq = start;
        let mut next = None;
        let mut progress = Progress::new(true);
        let mut pages = 0u32;
        loop {
            let page = self.read(
                self.client
                    .admin_audit(AuditArgs {
                        start_seq: seq,
                        limit: PAGE,
                    })
                    .await,
                "reading the audit trail",
            )?;
            let Some(last) = page.last().map(|r| r.seq) else {
                break;
            };
            if last < seq {
                return Err(CliError::new(
                    Exit::Rejected,
                    "bad_page",
                    format!("the audit trail went backwards at {seq}"),
                ));
            }
            pages += 1;
            if pages > 1 {
                progress.update(&format!("read {} of {total} audit records…", last + 1));
            }
            out.extend(
                page.into_iter()
                    .filter(|r| entry.is_none_or(|id| r.entry_id == id)),
            );
            seq = last + 1;
            if let (Some(l), false) = (limit, keep_last) {
                if out.len() >= l as usize {
                    out.truncate(l as usize);
                    next = out
                        .last()
                        .map(|r| r.seq + 1)
                        .filter(|n| *n < total.max(seq));
                    break;
                }
            }
        }
        progress.done();
        if let (Some(l), true) = (limit, keep_last) {
            let drop = out.len().saturating_sub(l as usize);
            out.drain(..drop);
        }
        let now = m.timestamp;
        self.emit(
            || {
                let mut s = String::new();
                if out.is_empty() {
                    s.push_str("no audit records\n");
                } else {
                    let mut t = Table::new(&["SEQ", "AT (UTC)", "AGE", "ENTRY", "ACTOR", "EVENT"]);
                    for r in &out {
                        t.row(vec![
                            r.seq.to_string(),
                            utc(r.at).trim_end_matches(" UTC").into(),
                            duration(now.saturating_sub(r.at)),
                            r.entry_id.to_string(),
                            r.actor.map_or("engine".into(), |p| p.to_text()),
                            views::audit_text(&r.event),
                        ]);
                    }
                    s.push_str(&t.render());
                }
                if let Some(n) = next {
                    s.push_str(&format!("more: add --from {n}\n"));
                }
                s
            },
            || {
                json!({
                    "records": out.iter().map(views::audit).collect::<Vec<_>>(),
                    "next": next,
                })
            },
        );
        Ok(())
    }

    // ------------------------------------------------------------------------ operator verbs

    async fn act(
        &self,
        id: u64,
        action: AdminAction,
        acknowledge_risk: bool,
        reason: &Reason,
    ) -> Result<(), CliError> {
        let verb = views::action_verb(&action);
        let reason = require_reason(verb, reason)?;
        let what = format!("{verb} on entry {id}");
        let check = format!(
            "Check before repeating it: `icjournal show {id}` (is it still manual_review?) and \
             `icjournal audit --entry {id}` (is your action or approval recorded?). Repeating \
             it is safe: once applied, the service refuses a repeat (the entry left the manual \
             queue, or your approval is already recorded)."
        );
        let req = AdminRequest {
            entry_id: id,
            action: action.clone(),
            reason: reason.clone(),
            acknowledge_risk: acknowledge_risk.then_some(true),
        };
        let r = self
            .write(self.client.admin_act(req).await, &what, &check)
            .await?;
        match r {
            AdminResult::Applied { status, audit_seq } => self.emit(
                || {
                    let mut s = format!(
                        "entry {id}: {} applied; it is now {} (audit record {audit_seq})\n",
                        views::action_text(&action),
                        status.as_str()
                    );
                    if status == Status::Unknown {
                        s.push_str("recovery looks at it again at its next tick\n");
                    }
                    s
                },
                || {
                    let mut v = json!({
                        "entry_id": id,
                        "result": "applied",
                        "status": status.as_str(),
                        "audit_seq": audit_seq,
                    });
                    v["action"] = views::action(&action);
                    v
                },
            ),
            AdminResult::ApprovalRecorded {
                have,
                need,
                audit_seq,
            } => {
                let missing = need.saturating_sub(have);
                self.emit(
                    || {
                        let mut again = format!("icjournal approve {id} --action {verb}");
                        if let AdminAction::ResolveSucceeded {
                            block_index: Some(b),
                        } = action
                        {
                            again.push_str(&format!(" --block {b}"));
                        }
                        if acknowledge_risk {
                            again.push_str(" --acknowledge-risk");
                        }
                        format!(
                            "entry {id}: your approval of {} is recorded: {have} of the {need} \
                             approvals needed (audit record {audit_seq}).\nNot applied yet: \
                             {missing} more operator{} must approve the same action:\n  {again} \
                             --reason \"…\"\nProposing a different action on this entry \
                             restarts the count.\n",
                            views::action_text(&action),
                            if missing == 1 { "" } else { "s" },
                        )
                    },
                    || {
                        let mut v = json!({
                            "entry_id": id,
                            "result": "approval_recorded",
                            "have": have,
                            "need": need,
                            "missing": missing,
                            "audit_seq": audit_seq,
                        });
                        v["action"] = views::action(&action);
                        v
                    },
                )
            }
        }
        Ok(())
    }

    async fn pause(&self, pause: bool, reason: &Reason) -> Result<(), CliError> {
        let verb = if pause { "pause" } else { "resume" };
        let reason = require_reason(verb, reason)?;
        let check = "Check with `icjournal config get` (recovery paused or running); repeating \
                     it is harmless.";
        let r = if pause {
            self.client.pause_recovery(reason).await
        } else {
            self.client.resume_recovery(reason).await
        };
        self.write(r, &format!("{verb} recovery"), check).await?;
        self.emit(
            || {
                if pause {
                    "recovery paused: no entry is resent or looked up until `icjournal resume`\n"
                        .into()
                } else {
                    "recovery resumed\n".into()
                }
            },
            || json!({ "recovery_paused": pause }),
        );
        Ok(())
    }

    // ------------------------------------------------------------------------ config

    async fn config_get(&self) -> Result<(), CliError> {
        let v = self.read(self.client.get_config().await, "reading the configuration")?;
        self.emit(
            || {
                let c = &v.config;
                let mut t = Table::new(&["", ""]);
                let mut kv = |k: &str, val: String| t.row(vec![k.to_string(), val]);
                kv(
                    "recovery",
                    if v.recovery_paused {
                        "PAUSED"
                    } else {
                        "running"
                    }
                    .into(),
                );
                kv(
                    "admins",
                    if c.admins.is_empty() {
                        "none (controllers only)".into()
                    } else {
                        c.admins
                            .iter()
                            .map(|p| p.to_text())
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                );
                for l in &c.ledgers {
                    kv(
                        "ledger",
                        format!(
                            "{} fee {}, deduplication window {}",
                            l.ledger,
                            l.fee.as_ref().map_or("ledger's".into(), nat),
                            duration(l.tx_window_ns)
                        ),
                    );
                }
                kv(
                    "recovery_interval_ns",
                    format!(
                        "{} ({})",
                        c.recovery_interval_ns,
                        duration(c.recovery_interval_ns)
                    ),
                );
                kv("recovery_batch_size", c.recovery_batch_size.to_string());
                kv("max_attempts", c.max_attempts.to_string());
                kv(
                    "max_unresolved_per_caller",
                    c.max_unresolved_per_caller.to_string(),
                );
                kv(
                    "max_unresolved_bytes_per_caller",
                    c.max_unresolved_bytes_per_caller.to_string(),
                );
                kv(
                    "max_in_flight_per_caller",
                    c.max_in_flight_per_caller.to_string(),
                );
                kv("max_in_flight_total", c.max_in_flight_total.to_string());
                kv("max_payload_bytes", c.max_payload_bytes.to_string());
                kv("approvals_required", c.approvals_required.to_string());
                kv(
                    "retention_ns",
                    c.retention_ns.map_or("none (kept forever)".into(), |r| {
                        format!("{r} ({})", duration(r))
                    }),
                );
                kv(
                    "summary_retention_ns",
                    c.summary_retention_ns
                        .map_or("none (the service's default, 90 days)".into(), |k| {
                            format!("{k} ({})", duration(k))
                        }),
                );
                kv(
                    "max_entries_per_caller",
                    c.max_entries_per_caller.to_string(),
                );
                kv("max_bytes_per_caller", c.max_bytes_per_caller.to_string());
                kv(
                    "stable_memory_limit_bytes",
                    c.stable_memory_limit_bytes.to_string(),
                );
                kv(
                    "new_work_headroom_bytes",
                    c.new_work_headroom_bytes.to_string(),
                );
                kv(
                    "fees",
                    format!(
                        "record {} cycles, tracked transfer {}, executed transfer {}",
                        c.fees.record_cycles,
                        c.fees.tracked_transfer_cycles,
                        c.fees.transfer_cycles
                    ),
                );
                kv(
                    "fee_exempt",
                    if c.fee_exempt.is_empty() {
                        "none".into()
                    } else {
                        c.fee_exempt
                            .iter()
                            .map(|p| p.to_text())
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                );
                let s = t.render();
                s.split_once('\n').map_or("", |(_, rest)| rest).to_string()
            },
            || {
                json!({
                    "recovery_paused": v.recovery_paused,
                    "config": config_edit::to_json(&v.config),
                })
            },
        );
        Ok(())
    }

    async fn config_set(
        &self,
        file: Option<std::path::PathBuf>,
        set: Vec<String>,
        dry_run: bool,
        reason: &Reason,
    ) -> Result<(), CliError> {
        let reason = if dry_run {
            None
        } else {
            Some(require_reason("config set", reason)?)
        };
        // The file is read and parsed before any call: a bad file sends nothing.
        let file_json = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
                Some(
                    serde_json::from_str::<Value>(&text).map_err(|e| {
                        CliError::usage(format!("{} is not JSON: {e}", path.display()))
                    })?,
                )
            }
            None => None,
        };
        let current = self.read(self.client.get_config().await, "reading the configuration")?;
        let old = config_edit::to_json(&current.config);
        let mut new = old.clone();
        if let Some(f) = &file_json {
            config_edit::apply_file(&mut new, f, current.recovery_paused)?;
        }
        for s in &set {
            config_edit::apply_set(&mut new, s)?;
        }
        let config = config_edit::from_json(&new)?;
        // Normalised, so that `"7"` and `7` are not reported as a change.
        let new = config_edit::to_json(&config);
        let changes = config_edit::diff(&old, &new);
        if changes.is_empty() {
            return Err(CliError::usage(
                "nothing to change: the configuration already has these values",
            ));
        }
        let written = match reason {
            Some(reason) => {
                let check = "Check with `icjournal config get`: if it shows the new values, the \
                             change was applied; repeating it writes the same values again.";
                self.write(
                    self.client
                        .set_config(SetConfigArgs {
                            config: config.clone(),
                            reason,
                        })
                        .await,
                    "config set",
                    check,
                )
                .await?;
                true
            }
            None => false,
        };
        self.emit(
            || {
                let mut s = String::new();
                for (f, a, b) in &changes {
                    s.push_str(&format!("{f}: {a} → {b}\n"));
                }
                s.push_str(if written {
                    "written\n"
                } else {
                    "dry run: nothing written\n"
                });
                s
            },
            || {
                json!({
                    "changes": changes.iter().map(|(f, a, b)| json!({"field": f, "from": a, "to": b})).collect::<Vec<_>>(),
                    "written": written,
                })
            },
        );
        Ok(())
    }
}

fn show_text(e: &Entry, now: u64) -> String {
    let mut out = format!(
        "entry {} — {} — {}\n",
        e.id,
        e.kind.as_str(),
        e.status.as_str().to_uppercase()
    );
    let mut t = Table::new(&["", ""]);
    let mut kv = |k: &str, v: String| t.row(vec![format!("  {k}"), v]);
    kv("owner", e.owner.to_text());
    if let Some(k) = &e.lock_key {
        kv("lock key", k.clone());
    }
    kv("created", when(now, e.created_at));
    kv("updated", when(now, e.updated_at));
    kv("attempts", e.attempts.to_string());
    if let Some(t) = e.next_attempt_at {
        kv("next attempt", when(now, t));
    }
    if let Some(err) = &e.last_error {
        kv("last error", err.clone());
    }
    if let Some(r) = &e.manual_reason {
        kv("manual reason", r.clone());
    }
    if let Some(b) = e.blocked_on {
        kv(
            "blocked on",
            format!("entry {b}: this saga continues once an operator acts on that entry"),
        );
    }
    if let Some(p) = e.parent {
        kv("saga", format!("step of saga entry {p}"));
    }
    match &e.intent {
        Intent::Transfer(ti) => {
            kv("ledger", ti.ledger.to_text());
            kv(
                "sent by",
                match ti.executor {
                    Executor::SelfCanister => "the service".into(),
                    Executor::External { caller } => format!("{caller} (tracked)"),
                },
            );
            let (from, to, amount, fee, memo, created) = match &ti.op {
                LedgerOp::Icrc1Transfer(a) => (
                    a.from_subaccount
                        .map_or("service's default account".into(), |s| {
                            format!("service's subaccount {}", hex::encode(s))
                        }),
                    a.to.to_string(),
                    nat(&a.amount),
                    a.fee.as_ref().map(nat),
                    a.memo.as_ref().map(|m| hex::encode(&m.0)),
                    a.created_at_time,
                ),
                LedgerOp::Icrc2TransferFrom(a) => (
                    a.from.to_string(),
                    a.to.to_string(),
                    nat(&a.amount),
                    a.fee.as_ref().map(nat),
                    a.memo.as_ref().map(|m| hex::encode(&m.0)),
                    a.created_at_time,
                ),
            };
            kv("from", from);
            kv("to", to);
            kv("amount", amount);
            kv("fee", fee.unwrap_or_else(|| "the ledger's".into()));
            if let Some(m) = memo {
                kv("memo", m);
            }
            if let Some(c) = created {
                kv("created_at_time", when(now, c));
            }
            if let Some(w) = ti.window {
                kv(
                    "ledger window",
                    format!(
                        "{} deduplication, {} permitted drift",
                        duration(w.tx_window_ns),
                        duration(w.permitted_drift_ns)
                    ),
                );
            }
        }
        Intent::Record { label, payload } => {
            kv("label", label.clone());
            kv(
                "payload",
                format!(
                    "{} bytes: {}",
                    payload.len(),
                    clip(&hex::encode(payload), 64)
                ),
            );
        }
        Intent::Local(l) => {
            kv("handler", l.handler.clone());
            kv("payload", format!("{} bytes", l.payload.len()));
        }
        Intent::Saga(s) => {
            kv(
                "saga",
                format!(
                    "{} steps, {:?}, cursor {}",
                    s.steps.len(),
                    s.phase,
                    s.cursor
                ),
            );
            if let Some(f) = &s.failure {
                kv("saga failure", f.clone());
            }
            for (i, st) in s.steps.iter().enumerate() {
                kv(
                    &format!("step {i}"),
                    format!(
                        "entry {}, compensation entry {}",
                        st.entry.map_or("not started".into(), |e| e.to_string()),
                        st.compensation_entry
                            .map_or("none".into(), |e| e.to_string())
                    ),
                );
            }
        }
    }
    match &e.outcome {
        None => kv("outcome", "none yet".into()),
        Some(Outcome::Succeeded {
            block_index,
            source,
            ..
        }) => kv(
            "outcome",
            format!(
                "succeeded{} (evidence: {})",
                block_index.map_or(String::new(), |b| format!(" in block {b}")),
                views::source(*source).replace('_', " ")
            ),
        ),
        Some(Outcome::Failed { reason, source }) => kv(
            "outcome",
            format!(
                "failed: {} (evidence: {})",
                views::describe_failure(reason),
                views::source(*source).replace('_', " ")
            ),
        ),
    }
    if let Some(s) = &e.scan {
        kv(
            "memo lookup",
            format!(
                "blocks {}..{} scanned{}{}",
                s.start_block.map_or("?".into(), |b| b.to_string()),
                s.next_block,
                if s.window_closed {
                    ", window closed"
                } else {
                    ""
                },
                s.reported_block
                    .map_or(String::new(), |b| format!(", reported block {b} unchecked"))
            ),
        );
    }
    let s = t.render();
    out.push_str(s.split_once('\n').map_or("", |(_, rest)| rest));
    out.push_str(&format!(
        "history{}:\n",
        if e.history_dropped > 0 {
            format!(
                " (latest {}; {} older in `icjournal audit --entry {}`)",
                e.history.len(),
                e.history_dropped,
                e.id
            )
        } else {
            String::new()
        }
    ));
    let mut h = Table::new(&["", "", "", ""]);
    for item in &e.history {
        h.row(vec![
            format!("  {}", utc(item.at)),
            format::relative(now, item.at),
            format!("{} → {}", item.from.as_str(), item.to.as_str()),
            item.note.clone(),
        ]);
    }
    let hs = h.render();
    out.push_str(hs.split_once('\n').map_or("", |(_, rest)| rest));
    if e.status == Status::ManualReview {
        out.push_str(&format!(
            "operator actions (each needs --reason):\n  icjournal retry {id}\n  icjournal \
             resolve-succeeded {id} --block N\n  icjournal resolve-failed {id} \
             [--acknowledge-risk]\n  icjournal cancel {id} [--acknowledge-risk]\n",
            id = e.id
        ));
        if e.kind == icjournal_client::Kind::Saga {
            out.push_str(&format!("  icjournal compensate {}\n", e.id));
        }
    }
    out
}
