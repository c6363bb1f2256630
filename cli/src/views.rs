//! The `--json` shapes. They are the CLI's own, documented in the README, and kept stable
//! independently of the Candid types they are made from. Rules: principals and accounts are
//! text (accounts in the ICRC-1 textual encoding); statuses, kinds and variants are snake_case
//! strings; times are RFC 3339 UTC strings with nanoseconds; token amounts and cycles are
//! decimal strings; blobs are hex; every other integer is a JSON number.

use crate::format::{nat, rfc3339};
use candid::Nat;
use icjournal_client::{
    AdminAction, AuditEvent, AuditRecord, Entry, EntrySummary, EvidenceSource, Executor,
    FailureReason, HistoryItem, Intent, LedgerError, LedgerOp, Metrics, Outcome, RejectCode,
    SagaPhase, StepAction, TransferSpec,
};
use icrc_ledger_types::icrc1::account::Account;
use serde_json::{json, Map, Value};

pub fn time(ns: u64) -> Value {
    json!(rfc3339(ns))
}

fn opt_time(ns: Option<u64>) -> Value {
    ns.map_or(Value::Null, time)
}

fn amount(n: &Nat) -> Value {
    json!(nat(n))
}

fn opt_amount(n: &Option<Nat>) -> Value {
    n.as_ref().map_or(Value::Null, amount)
}

pub fn account(a: &Account) -> Value {
    json!(a.to_string())
}

fn opt_hex(b: Option<&[u8]>) -> Value {
    b.map_or(Value::Null, |b| json!(hex::encode(b)))
}

pub fn summary(e: &EntrySummary) -> Value {
    json!({
        "id": e.id,
        "status": e.status.as_str(),
        "kind": e.kind.as_str(),
        "owner": e.owner.to_text(),
        "lock_key": e.lock_key,
        "attempts": e.attempts,
        "created_at": time(e.created_at),
        "updated_at": time(e.updated_at),
        "manual_reason": e.manual_reason,
    })
}

pub fn entry(e: &Entry) -> Value {
    json!({
        "id": e.id,
        "status": e.status.as_str(),
        "kind": e.kind.as_str(),
        "owner": e.owner.to_text(),
        "lock_key": e.lock_key,
        "attempts": e.attempts,
        "created_at": time(e.created_at),
        "updated_at": time(e.updated_at),
        "next_attempt_at": opt_time(e.next_attempt_at),
        "last_error": e.last_error,
        "manual_reason": e.manual_reason,
        "parent": e.parent,
        "blocked_on": e.blocked_on,
        "intent": intent(&e.intent),
        "outcome": e.outcome.as_ref().map_or(Value::Null, outcome),
        "scan": e.scan.as_ref().map_or(Value::Null, |s| json!({
            "start_block": s.start_block,
            "next_block": s.next_block,
            "window_closed": s.window_closed,
            "reported_block": s.reported_block,
        })),
        "history": e.history.iter().map(history).collect::<Vec<_>>(),
        "history_dropped": e.history_dropped,
    })
}

fn history(h: &HistoryItem) -> Value {
    json!({
        "at": time(h.at),
        "from": h.from.as_str(),
        "to": h.to.as_str(),
        "note": h.note,
    })
}

pub fn intent(i: &Intent) -> Value {
    match i {
        Intent::Record { label, payload } => json!({
            "type": "record",
            "label": label,
            "payload_hex": hex::encode(payload),
        }),
        Intent::Local(l) => json!({
            "type": "local",
            "handler": l.handler,
            "payload_hex": hex::encode(&l.payload),
        }),
        Intent::Transfer(t) => json!({
            "type": "transfer",
            "ledger": t.ledger.to_text(),
            "executor": match t.executor {
                Executor::SelfCanister => json!({"type": "service"}),
                Executor::External { caller } => json!({"type": "external", "caller": caller.to_text()}),
            },
            "op": ledger_op(&t.op),
            "window": t.window.map_or(Value::Null, |w| json!({
                "tx_window_ns": w.tx_window_ns,
                "permitted_drift_ns": w.permitted_drift_ns,
            })),
        }),
        Intent::Saga(s) => json!({
            "type": "saga",
            "phase": match s.phase { SagaPhase::Forward => "forward", SagaPhase::Compensating => "compensating" },
            "cursor": s.cursor,
            "failure": s.failure,
            "steps": s.steps.iter().map(|st| json!({
                "action": step_action(&st.action),
                "compensation": st.compensation.as_ref().map_or(Value::Null, step_action),
                "entry": st.entry,
                "compensation_entry": st.compensation_entry,
            })).collect::<Vec<_>>(),
        }),
    }
}

fn ledger_op(op: &LedgerOp) -> Value {
    match op {
        LedgerOp::Icrc1Transfer(a) => json!({
            "type": "icrc1_transfer",
            "from_subaccount": opt_hex(a.from_subaccount.as_ref().map(|s| &s[..])),
            "to": account(&a.to),
            "amount": amount(&a.amount),
            "fee": opt_amount(&a.fee),
            "memo_hex": opt_hex(a.memo.as_ref().map(|m| m.0.as_slice())),
            "created_at_time": opt_time(a.created_at_time),
        }),
        LedgerOp::Icrc2TransferFrom(a) => json!({
            "type": "icrc2_transfer_from",
            "spender_subaccount": opt_hex(a.spender_subaccount.as_ref().map(|s| &s[..])),
            "from": account(&a.from),
            "to": account(&a.to),
            "amount": amount(&a.amount),
            "fee": opt_amount(&a.fee),
            "memo_hex": opt_hex(a.memo.as_ref().map(|m| m.0.as_slice())),
            "created_at_time": opt_time(a.created_at_time),
        }),
    }
}

fn step_action(a: &StepAction) -> Value {
    match a {
        StepAction::Local(l) => json!({
            "type": "local",
            "handler": l.handler,
            "payload_hex": hex::encode(&l.payload),
        }),
        StepAction::Transfer(TransferSpec::Icrc1 {
            ledger,
            from_subaccount,
            to,
            amount: a,
            fee,
        }) => json!({
            "type": "icrc1_transfer",
            "ledger": ledger.to_text(),
            "from_subaccount": opt_hex(from_subaccount.as_ref().map(|s| &s[..])),
            "to": account(to),
            "amount": amount(a),
            "fee": opt_amount(fee),
        }),
        StepAction::Transfer(TransferSpec::Icrc2 {
            ledger,
            spender_subaccount,
            from,
            to,
            amount: a,
            fee,
        }) => json!({
            "type": "icrc2_transfer_from",
            "ledger": ledger.to_text(),
            "spender_subaccount": opt_hex(spender_subaccount.as_ref().map(|s| &s[..])),
            "from": account(from),
            "to": account(to),
            "amount": amount(a),
            "fee": opt_amount(fee),
        }),
    }
}

pub fn source(s: EvidenceSource) -> &'static str {
    match s {
        EvidenceSource::Reply => "reply",
        EvidenceSource::DedupResend => "dedup_resend",
        EvidenceSource::MemoLookup => "memo_lookup",
        EvidenceSource::Host => "host",
        EvidenceSource::Admin => "admin",
    }
}

pub fn outcome(o: &Outcome) -> Value {
    match o {
        Outcome::Succeeded {
            block_index,
            reply,
            source: s,
        } => json!({
            "result": "succeeded",
            "source": source(*s),
            "block_index": block_index,
            "reply_hex": hex::encode(reply),
        }),
        Outcome::Failed { reason, source: s } => json!({
            "result": "failed",
            "source": source(*s),
            "reason": failure(reason),
        }),
    }
}

fn reject_code(c: RejectCode) -> Value {
    json!(c.raw())
}

pub fn failure(r: &FailureReason) -> Value {
    let mut v = match r {
        FailureReason::Ledger(e) => json!({"type": "ledger", "ledger_error": ledger_error(e)}),
        FailureReason::NotDelivered { code, message } => json!({
            "type": "not_delivered",
            "reject_code": code.map_or(Value::Null, reject_code),
            "message": message,
        }),
        FailureReason::NotFoundAfterWindow { scanned_to_block } => json!({
            "type": "not_found_after_window",
            "scanned_to_block": scanned_to_block,
        }),
        FailureReason::Host { message } => json!({"type": "host", "message": message}),
        FailureReason::Admin { audit_seq } => json!({"type": "admin", "audit_seq": audit_seq}),
        FailureReason::SagaStepFailed { step, entry } => json!({
            "type": "saga_step_failed",
            "step": step,
            "entry": entry,
        }),
        FailureReason::RecordTimedOut { reported_unknown } => json!({
            "type": "record_timed_out",
            "reported_unknown": reported_unknown,
        }),
    };
    if let Value::Object(m) = &mut v {
        m.insert("description".into(), json!(describe_failure(r)));
    }
    v
}

fn ledger_error(e: &LedgerError) -> Value {
    match e {
        LedgerError::BadFee { expected_fee } => {
            json!({"type": "bad_fee", "expected_fee": amount(expected_fee)})
        }
        LedgerError::BadBurn { min_burn_amount } => {
            json!({"type": "bad_burn", "min_burn_amount": amount(min_burn_amount)})
        }
        LedgerError::InsufficientFunds { balance } => {
            json!({"type": "insufficient_funds", "balance": amount(balance)})
        }
        LedgerError::InsufficientAllowance { allowance } => {
            json!({"type": "insufficient_allowance", "allowance": amount(allowance)})
        }
        LedgerError::TooOld => json!({"type": "too_old"}),
        LedgerError::CreatedInFuture { ledger_time } => {
            json!({"type": "created_in_future", "ledger_time": time(*ledger_time)})
        }
        LedgerError::TemporarilyUnavailable => json!({"type": "temporarily_unavailable"}),
        LedgerError::Duplicate { duplicate_of } => {
            json!({"type": "duplicate", "duplicate_of": amount(duplicate_of)})
        }
        LedgerError::GenericError {
            error_code,
            message,
        } => json!({"type": "generic_error", "error_code": amount(error_code), "message": message}),
    }
}

/// A failure reason in plain words (for `show`, and `description` in `--json`).
pub fn describe_failure(r: &FailureReason) -> String {
    match r {
        FailureReason::Ledger(e) => format!("the ledger refused it: {}", describe_ledger_error(e)),
        FailureReason::NotDelivered { code, message } => format!(
            "the call never reached the ledger{}: {message}",
            code.map(|c| format!(" (reject code {})", c.raw()))
                .unwrap_or_default()
        ),
        FailureReason::NotFoundAfterWindow { scanned_to_block } => format!(
            "no matching block up to block {scanned_to_block}, and the ledger's deduplication \
             window has closed: it can no longer execute"
        ),
        FailureReason::Host { message } => format!("reported failed: {message}"),
        FailureReason::Admin { audit_seq } => {
            format!("resolved as failed by an operator (audit record {audit_seq})")
        }
        FailureReason::SagaStepFailed { step, entry } => {
            format!("saga step {step} (entry {entry}) failed and the saga was compensated")
        }
        FailureReason::RecordTimedOut { reported_unknown } => format!(
            "the owner reported no result before the record timed out{}",
            if *reported_unknown {
                " (only \"unknown\")"
            } else {
                ""
            }
        ),
    }
}

fn describe_ledger_error(e: &LedgerError) -> String {
    match e {
        LedgerError::BadFee { expected_fee } => format!("bad fee, expected {}", nat(expected_fee)),
        LedgerError::BadBurn { min_burn_amount } => {
            format!("burn below the minimum {}", nat(min_burn_amount))
        }
        LedgerError::InsufficientFunds { balance } => {
            format!("insufficient funds (balance {})", nat(balance))
        }
        LedgerError::InsufficientAllowance { allowance } => {
            format!("insufficient allowance ({})", nat(allowance))
        }
        LedgerError::TooOld => "too old".into(),
        LedgerError::CreatedInFuture { ledger_time } => {
            format!(
                "created in the future (ledger time {})",
                rfc3339(*ledger_time)
            )
        }
        LedgerError::TemporarilyUnavailable => "temporarily unavailable".into(),
        LedgerError::Duplicate { duplicate_of } => {
            format!("duplicate of block {}", nat(duplicate_of))
        }
        LedgerError::GenericError {
            error_code,
            message,
        } => format!("error {}: {message}", nat(error_code)),
    }
}

/// The action's CLI verb, e.g. `resolve-succeeded`.
pub fn action_verb(a: &AdminAction) -> &'static str {
    match a {
        AdminAction::Retry => "retry",
        AdminAction::ResolveSucceeded { .. } => "resolve-succeeded",
        AdminAction::ResolveFailed => "resolve-failed",
        AdminAction::Compensate => "compensate",
        AdminAction::Cancel => "cancel",
    }
}

pub fn action(a: &AdminAction) -> Value {
    let name = action_verb(a).replace('-', "_");
    match a {
        AdminAction::ResolveSucceeded { block_index } => {
            json!({"action": name, "block_index": block_index})
        }
        _ => json!({"action": name}),
    }
}

/// `resolve-succeeded (block 42)`, for tables.
pub fn action_text(a: &AdminAction) -> String {
    match a {
        AdminAction::ResolveSucceeded {
            block_index: Some(b),
        } => format!("resolve-succeeded (block {b})"),
        other => action_verb(other).to_string(),
    }
}

pub fn audit(r: &AuditRecord) -> Value {
    let event = match &r.event {
        AuditEvent::Created { kind } => json!({"type": "created", "kind": kind.as_str()}),
        AuditEvent::StatusChanged { from, to, note } => json!({
            "type": "status_changed", "from": from.as_str(), "to": to.as_str(), "note": note,
        }),
        AuditEvent::AdminAction {
            action: a,
            reason,
            acknowledged_risk,
        } => {
            let mut v = action(a);
            let m = v.as_object_mut().expect("object");
            m.insert("type".into(), json!("admin_action"));
            m.insert("reason".into(), json!(reason));
            m.insert(
                "acknowledged_risk".into(),
                json!(acknowledged_risk.unwrap_or(false)),
            );
            v
        }
        AuditEvent::AdminApproval {
            action: a,
            reason,
            have,
            need,
        } => {
            let mut v = action(a);
            let m = v.as_object_mut().expect("object");
            m.insert("type".into(), json!("admin_approval"));
            m.insert("reason".into(), json!(reason));
            m.insert("have".into(), json!(have));
            m.insert("need".into(), json!(need));
            v
        }
        AuditEvent::ApprovalsReplaced { previous, dropped } => {
            let mut v = json!({"type": "approvals_replaced"});
            let m = v.as_object_mut().expect("object");
            m.insert("previous".into(), action(previous));
            m.insert(
                "dropped".into(),
                json!(dropped.iter().map(|p| p.to_text()).collect::<Vec<_>>()),
            );
            v
        }
        AuditEvent::ApprovalsExpired { dropped } => json!({
            "type": "approvals_expired",
            "dropped": dropped.iter().map(|p| p.to_text()).collect::<Vec<_>>(),
        }),
        AuditEvent::Contradiction { detail } => json!({"type": "contradiction", "detail": detail}),
    };
    json!({
        "seq": r.seq,
        "at": time(r.at),
        "entry_id": r.entry_id,
        "actor": r.actor.map(|p| p.to_text()),
        "event": event,
    })
}

/// One line describing an audit event, for the table.
pub fn audit_text(e: &AuditEvent) -> String {
    match e {
        AuditEvent::Created { kind } => format!("created ({})", kind.as_str()),
        AuditEvent::StatusChanged { from, to, note } => {
            let mut s = format!("{} → {}", from.as_str(), to.as_str());
            if !note.is_empty() {
                s.push_str(": ");
                s.push_str(note);
            }
            s
        }
        AuditEvent::AdminAction {
            action: a,
            reason,
            acknowledged_risk,
        } => format!(
            "{}{}: \"{reason}\"",
            action_text(a),
            if acknowledged_risk.unwrap_or(false) {
                " (risk acknowledged)"
            } else {
                ""
            }
        ),
        AuditEvent::AdminApproval {
            action: a,
            reason,
            have,
            need,
        } => format!(
            "approved {} ({have} of {need}): \"{reason}\"",
            action_text(a)
        ),
        AuditEvent::ApprovalsReplaced { previous, dropped } => format!(
            "approvals for {} dropped ({}): a different action was proposed",
            action_text(previous),
            dropped.len()
        ),
        AuditEvent::ApprovalsExpired { dropped } => format!(
            "{} approval(s) dropped: their approvers are no longer operators",
            dropped.len()
        ),
        AuditEvent::Contradiction { detail } => format!("CONTRADICTION: {detail}"),
    }
}

pub fn metrics(m: &Metrics) -> Value {
    let by_status: Map<String, Value> = m
        .entries_by_status
        .iter()
        .map(|s| (s.status.as_str().to_string(), json!(s.count)))
        .collect();
    let by_kind: Map<String, Value> = m
        .entries_by_kind
        .iter()
        .map(|k| (k.kind.as_str().to_string(), json!(k.count)))
        .collect();
    let by_path: Map<String, Value> = m
        .recoveries_by_path
        .iter()
        .map(|p| (p.path.as_str().to_string(), json!(p.count)))
        .collect();
    json!({
        "timestamp": time(m.timestamp),
        "entries_total": m.entries_total,
        "entries_by_status": by_status,
        "entries_by_kind": by_kind,
        "recoveries_by_path": by_path,
        "manual_queue_depth": m.manual_queue_depth,
        "oldest_unresolved_age_ns": m.oldest_unresolved_age_ns,
        "attempts_total": m.attempts_total,
        "recovery_ticks": m.recovery_ticks,
        "audit_records": m.audit_records,
        "contradictions": m.contradictions,
        "stable_memory_bytes": m.stable_memory_bytes,
        "compacted_by_status": m.compacted_by_status.as_ref().map(|v| {
            v.iter()
                .map(|s| (s.status.as_str().to_string(), json!(s.count)))
                .collect::<Map<String, Value>>()
        }),
        "summaries": m.summaries,
        "summaries_pruned": m.summaries_pruned,
        "audit_bytes": m.audit_bytes,
        "claims_in_tree": m.claims_in_tree,
    })
}

/// Status rows for retention and the audit log's size, in the order shown. A service build
/// whose metrics leave a figure out (no retention) gets no row for it rather than a made-up 0.
pub fn retention_rows(m: &Metrics) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    if let Some(by_status) = &m.compacted_by_status {
        let total: u64 = by_status.iter().map(|s| s.count).sum();
        let counts: Vec<String> = by_status
            .iter()
            .filter(|s| s.count > 0)
            .map(|s| format!("{} {}", s.count, s.status.as_str()))
            .collect();
        rows.push((
            "compacted",
            if counts.is_empty() {
                total.to_string()
            } else {
                format!("{total}: {}", counts.join(", "))
            },
        ));
    }
    if let Some(n) = m.summaries {
        rows.push(("summaries", n.to_string()));
    }
    if let Some(n) = m.summaries_pruned {
        rows.push(("summaries pruned", n.to_string()));
    }
    if let Some(b) = m.audit_bytes {
        rows.push((
            "audit log",
            format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
        ));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use icjournal_client::{Status, StatusCount};

    fn bare() -> Metrics {
        Metrics {
            timestamp: 0,
            entries_total: 12,
            entries_by_status: vec![],
            entries_by_kind: vec![],
            recoveries_by_path: vec![],
            attempts_total: 0,
            oldest_unresolved_age_ns: None,
            manual_queue_depth: 0,
            stable_memory_bytes: 0,
            audit_records: 30,
            contradictions: 0,
            recovery_ticks: 0,
            compacted_by_status: None,
            summaries: None,
            summaries_pruned: None,
            audit_bytes: None,
            claims_in_tree: None,
        }
    }

    fn with_retention() -> Metrics {
        Metrics {
            compacted_by_status: Some(vec![
                StatusCount {
                    status: Status::Succeeded,
                    count: 7,
                },
                StatusCount {
                    status: Status::Failed,
                    count: 2,
                },
                StatusCount {
                    status: Status::Cancelled,
                    count: 0,
                },
            ]),
            summaries: Some(6),
            summaries_pruned: Some(3),
            audit_bytes: Some(3 << 20),
            claims_in_tree: Some(0),
            ..bare()
        }
    }

    #[test]
    fn metrics_json_has_the_retention_figures_or_null() {
        let v = metrics(&with_retention());
        assert_eq!(
            v["compacted_by_status"],
            json!({"succeeded": 7, "failed": 2, "cancelled": 0})
        );
        assert_eq!(v["summaries"], 6);
        assert_eq!(v["summaries_pruned"], 3);
        assert_eq!(v["audit_bytes"], 3 << 20);
        assert_eq!(v["claims_in_tree"], 0);
        let old = metrics(&bare());
        for k in [
            "compacted_by_status",
            "summaries",
            "summaries_pruned",
            "audit_bytes",
            "claims_in_tree",
        ] {
            assert!(old.get(k).is_some_and(Value::is_null), "{k}: {old}");
        }
    }

    #[test]
    fn status_rows_show_retention_only_when_the_service_reports_it() {
        assert_eq!(
            retention_rows(&with_retention()),
            vec![
                ("compacted", "9: 7 succeeded, 2 failed".to_string()),
                ("summaries", "6".to_string()),
                ("summaries pruned", "3".to_string()),
                ("audit log", "3.0 MiB".to_string()),
            ]
        );
        assert!(retention_rows(&bare()).is_empty());
        let none_yet = Metrics {
            compacted_by_status: Some(vec![]),
            ..with_retention()
        };
        assert_eq!(retention_rows(&none_yet)[0], ("compacted", "0".to_string()));
    }
}
