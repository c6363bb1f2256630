//! Every way a command can fail, in plain words, with an exit code scripts can rely on.
//!
//! Exit codes (also in `--help` and the README):
//! 0 ok · 1 usage (refused locally, nothing was sent) · 2 network or transport (no usable
//! answer; an update was not accepted) · 3 refused by the service with a typed error, not
//! authorized included (nothing changed) · 4 not found · 5 unknown outcome of an update (it may
//! have been applied) · 6 rejected by the IC or the canister, or a reply this CLI cannot read.
//!
//! A script tells "retry later" (2), "fix the request or the identity" (1, 3), "nothing there"
//! (4) and "find out before repeating" (5) apart by the code alone.

use crate::format;
use candid::Principal;
use icjournal_client::{ClientError, JournalError, ServiceError, Status, TransportError};
use serde_json::{json, Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Usage = 1,
    Network = 2,
    Refused = 3,
    NotFound = 4,
    UnknownOutcome = 5,
    Rejected = 6,
}

pub const EXIT_CODES: &str = "Exit codes:
  0  ok
  1  usage: bad arguments or input (a missing --reason too), refused before any call
  2  network or transport: no usable answer (an update was not accepted); try again
  3  refused by the service with a typed error, nothing changed; this includes \"not
     authorized\" (the identity is not an operator or controller, or is anonymous)
  4  not found: no such entry (or not visible to this identity)
  5  unknown outcome of an update: it may have been applied; check before repeating it
  6  rejected by the IC or the canister (trap, missing or stopped canister), or a reply
     this CLI cannot decode";

/// A failed command: what to tell a person, and what to tell a script.
#[derive(Clone, Debug, PartialEq)]
pub struct CliError {
    pub exit: Exit,
    /// Stable snake_case name of the failure, for `--json`.
    pub kind: String,
    pub message: String,
    /// Typed fields of the failure (entry id, status, closes_at, …), for `--json`.
    pub details: Map<String, Value>,
}

impl CliError {
    pub fn new(exit: Exit, kind: &str, message: impl Into<String>) -> CliError {
        CliError {
            exit,
            kind: kind.into(),
            message: message.into(),
            details: Map::new(),
        }
    }

    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(Exit::Usage, "usage", message)
    }

    pub fn with(mut self, key: &str, value: Value) -> CliError {
        self.details.insert(key.into(), value);
        self
    }

    pub fn json(&self) -> Value {
        let mut e = Map::new();
        e.insert("exit_code".into(), json!(self.exit as u8));
        e.insert("kind".into(), json!(self.kind));
        e.insert("message".into(), json!(self.message));
        for (k, v) in &self.details {
            e.insert(k.clone(), v.clone());
        }
        json!({ "error": e })
    }
}

/// What was called, to word a failure and say how to find out an unknown outcome.
#[derive(Clone, Debug)]
pub struct Call<'a> {
    /// What the user asked for, e.g. `resolve-failed on entry 12`.
    pub what: String,
    pub update: bool,
    /// How to find out whether an update was applied (unknown outcome).
    pub check: &'a str,
    /// The caller, for "not authorized" messages.
    pub principal: Principal,
}

fn status(s: Status) -> &'static str {
    s.as_str()
}

fn who(p: Principal) -> String {
    if p == Principal::anonymous() {
        "the anonymous identity (no --identity or --identity-pem given)".into()
    } else {
        format!("principal {p}")
    }
}

/// A typed refusal by the service.
pub fn service_error(e: &ServiceError, principal: Principal) -> CliError {
    let refused = |kind: &str, m: String| CliError::new(Exit::Refused, kind, m);
    match e {
        ServiceError::Journal(j) => journal_error(j, principal),
        ServiceError::NotAuthorized { required } => CliError::new(
            Exit::Refused,
            "not_authorized",
            format!(
                "not authorized: this needs {required}, and {} is not one",
                who(principal)
            ),
        )
        .with("required", json!(required))
        .with("principal", json!(principal.to_text())),
        ServiceError::LedgerNotAllowed { ledger } => refused(
            "ledger_not_allowed",
            format!("ledger {ledger} is not one of the service's configured ledgers"),
        )
        .with("ledger", json!(ledger.to_text())),
        ServiceError::FundsNotOwned { message } => refused(
            "funds_not_owned",
            format!("the transfer would move funds the caller does not own: {message}"),
        ),
        ServiceError::InvalidConfig { message } => refused(
            "invalid_config",
            format!("the service refused the configuration, nothing was changed: {message}"),
        ),
        ServiceError::CyclesRequired { required, attached } => refused(
            "cycles_required",
            format!(
                "the call needs {required} cycles attached ({attached} were): calls from this \
                 CLI carry none, so an operator must add {} to fee_exempt",
                principal.to_text()
            ),
        )
        .with("required", json!(required))
        .with("attached", json!(attached)),
    }
}

fn journal_error(e: &JournalError, principal: Principal) -> CliError {
    let refused = |kind: &str, m: String| CliError::new(Exit::Refused, kind, m);
    let id = |v: u64| json!(v);
    match e {
        JournalError::LockHeld { lock_key, entry_id } => refused(
            "lock_held",
            format!("lock key `{lock_key}` is held by unresolved entry {entry_id}"),
        )
        .with("entry_id", id(*entry_id))
        .with("lock_key", json!(lock_key)),
        JournalError::NotFound { entry_id } => CliError::new(
            Exit::NotFound,
            "not_found",
            format!("there is no entry {entry_id}"),
        )
        .with("entry_id", id(*entry_id)),
        JournalError::KeyNotFound => {
            CliError::new(Exit::NotFound, "key_not_found", "no entry has this key")
        }
        JournalError::DuplicateRequest { entry_id } => refused(
            "duplicate_request",
            format!("this request was already made: it is entry {entry_id}"),
        )
        .with("entry_id", id(*entry_id)),
        JournalError::IdempotencyKeyReused { entry_id } => refused(
            "idempotency_key_reused",
            format!(
                "this idempotency key was already used by entry {entry_id} for another request"
            ),
        )
        .with("entry_id", id(*entry_id)),
        JournalError::StorageFull {
            used_bytes,
            limit_bytes,
        } => refused(
            "storage_full",
            format!(
                "the journal's stable memory is nearly full ({used_bytes} of {limit_bytes} \
                 bytes): it takes no new work; recovery and operator verbs keep working"
            ),
        )
        .with("used_bytes", json!(used_bytes))
        .with("limit_bytes", json!(limit_bytes)),
        JournalError::AnonymousCaller => CliError::new(
            Exit::Refused,
            "anonymous_caller",
            "the anonymous identity may not do this: pass --identity NAME or --identity-pem FILE",
        ),
        JournalError::PayloadTooLarge { field, size, max } => refused(
            "too_large",
            format!("{field} is too long: {size} bytes, at most {max} are accepted"),
        )
        .with("field", json!(field))
        .with("size", json!(size))
        .with("max", json!(max)),
        JournalError::QuotaExceeded { owner, limit, max } => refused(
            "quota_exceeded",
            format!("{owner} is at its limit of {max} ({limit})"),
        )
        .with("owner", json!(owner.to_text()))
        .with("limit", json!(limit))
        .with("max", json!(max)),
        JournalError::InvalidArgument { message } => refused(
            "invalid_argument",
            format!("the service refused the request: {message}"),
        ),
        JournalError::InvalidTransition { entry_id, from, to } => refused(
            "invalid_transition",
            format!(
                "entry {entry_id} cannot go from {} to {}",
                status(*from),
                status(*to)
            ),
        )
        .with("entry_id", id(*entry_id))
        .with("from", json!(status(*from)))
        .with("to", json!(status(*to))),
        JournalError::NotInManualReview {
            entry_id,
            status: s,
        } => refused(
            "not_in_manual_review",
            format!(
                "entry {entry_id} is not in the manual queue (it is {})",
                status(*s)
            ),
        )
        .with("entry_id", id(*entry_id))
        .with("status", json!(status(*s))),
        JournalError::ReasonRequired => refused(
            "reason_required",
            "the service needs a non-empty reason".into(),
        ),
        JournalError::UnsupportedForKind { entry_id, message } => refused(
            "unsupported_for_kind",
            format!("entry {entry_id}: {message}"),
        )
        .with("entry_id", id(*entry_id)),
        JournalError::AlreadyApproved { entry_id } => refused(
            "already_approved",
            format!(
                "{} already approved this action on entry {entry_id}: another operator must \
                 approve it",
                who(principal)
            ),
        )
        .with("entry_id", id(*entry_id)),
        JournalError::AlreadyReported {
            entry_id,
            status: s,
        } => refused(
            "already_reported",
            format!(
                "entry {entry_id} already has a different result (it is {})",
                status(*s)
            ),
        )
        .with("entry_id", id(*entry_id))
        .with("status", json!(status(*s))),
        JournalError::EvidenceUnverifiable { entry_id, message } => refused(
            "evidence_unverifiable",
            format!(
                "the block could not be checked against the ledger now, so entry {entry_id} \
                 was not changed ({message}); try again when the ledger answers"
            ),
        )
        .with("entry_id", id(*entry_id)),
        JournalError::EvidenceMismatch {
            entry_id,
            block_index,
            message,
        } => refused(
            "evidence_mismatch",
            format!(
                "block {block_index} does not prove entry {entry_id}'s transfer, nothing was \
                 changed: {message}"
            ),
        )
        .with("entry_id", id(*entry_id))
        .with("block_index", json!(block_index)),
        JournalError::WindowStillOpen {
            entry_id,
            closes_at,
        } => refused(
            "window_still_open",
            format!(
                "the ledger could still execute entry {entry_id}'s transfer until {}; pass \
                 --acknowledge-risk if you accept that a new request could pay twice, or wait \
                 until then",
                format::utc(*closes_at)
            ),
        )
        .with("entry_id", id(*entry_id))
        .with("closes_at", json!(format::rfc3339(*closes_at))),
        JournalError::Blocked {
            entry_id,
            on,
            message,
        } => refused(
            "blocked",
            format!("entry {entry_id} waits on entry {on}: {message}"),
        )
        .with("entry_id", id(*entry_id))
        .with("blocked_on", id(*on)),
        JournalError::TemporarilyUnavailable { message } => refused(
            "temporarily_unavailable",
            format!("the journal is busy and changed nothing ({message}); try again"),
        ),
        JournalError::Compacted { entry } => CliError::new(
            Exit::NotFound,
            "compacted",
            format!(
                "entry {} was resolved ({}) and compacted by retention: only its summary is kept",
                entry.id,
                entry.status.as_str()
            ),
        )
        .with("entry_id", id(entry.id))
        .with("status", json!(entry.status.as_str()))
        .with("block_index", json!(entry.block_index)),
        JournalError::Pruned { entry_id } => CliError::new(
            Exit::NotFound,
            "pruned",
            format!("entry {entry_id} was resolved, compacted and its summary pruned by retention"),
        )
        .with("entry_id", id(*entry_id)),
        JournalError::Other {
            error_code,
            message,
        } => refused(
            "other",
            format!("the service refused the request (error {error_code}): {message}"),
        )
        .with("error_code", json!(error_code)),
    }
}

/// A failed client call: a typed refusal, a transport failure, or an unreadable reply.
pub fn client_error(e: ClientError, call: &Call<'_>) -> CliError {
    // The client is the one judge of what a failure proves about execution (by reject code and
    // method: a trap of `admin_act`, which may span several messages, is an unknown outcome).
    let unknown = e.is_unknown_outcome();
    match e {
        ClientError::Service(s) => service_error(&s, call.principal),
        ClientError::Transport { error: t, .. } if call.update && unknown => CliError::new(
            Exit::UnknownOutcome,
            "unknown_outcome",
            format!(
                "{} may or may not have been applied: no certified answer arrived ({}). {}",
                call.what,
                transport_text(&t),
                call.check
            ),
        ),
        ClientError::Transport {
            error: TransportError::NotSent { message },
            ..
        } => CliError::new(
            Exit::Network,
            "network",
            format!(
                "{}: no answer from the network, nothing was {}: {message}",
                call.what,
                if call.update { "applied" } else { "read" }
            ),
        ),
        ClientError::Transport {
            error: t @ TransportError::Rejected { .. },
            ..
        } if unknown => {
            // A query: nothing to find out, only to repeat.
            CliError::new(
                Exit::Network,
                "network",
                format!("{}: no usable answer: {}", call.what, transport_text(&t)),
            )
        }
        ClientError::Transport {
            error: TransportError::Rejected { code, message },
            ..
        } => CliError::new(
            Exit::Rejected,
            "rejected",
            format!(
                "{} was rejected by the {} (reject code {code}): {message}",
                call.what,
                if code == 4 || code == 5 {
                    "canister"
                } else {
                    "IC"
                }
            ),
        )
        .with("reject_code", json!(code)),
        // An update's reply that cannot be decoded still ran: say so.
        ClientError::Candid { method, message } if call.update => CliError::new(
            Exit::UnknownOutcome,
            "undecodable_reply",
            format!(
                "{} ran, but its reply could not be read (is --canister an icjournal service of \
                 a compatible version?): {method}: {message}. {}",
                call.what, call.check
            ),
        ),
        ClientError::Candid { method, message } => CliError::new(
            Exit::Rejected,
            "undecodable_reply",
            format!(
                "the reply to {method} could not be read (is --canister an icjournal service of \
                 a compatible version?): {message}"
            ),
        ),
    }
}

fn transport_text(t: &TransportError) -> String {
    match t {
        TransportError::NotSent { message } => message.clone(),
        TransportError::Rejected { message, .. } => message.clone(),
    }
}

/// True when the canister's ingress filter (`canister_inspect_message`) refused an update: the
/// service does that to non-operators on operator methods, before any typed error can be
/// returned.
pub fn is_inspect_refusal(e: &ClientError) -> bool {
    matches!(e, ClientError::Transport { error: TransportError::Rejected { code: 4, message }, .. }
        if message.contains("canister_inspect_message") || message.contains("IC0406"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Principal {
        Principal::from_slice(&[7; 29])
    }

    /// Every variant maps to a plain sentence and the right exit code.
    #[test]
    fn maps_every_service_and_journal_error() {
        use JournalError as J;
        let s = Status::Succeeded;
        let cases: Vec<(ServiceError, Exit, &str, &str)> = vec![
            (J::LockHeld { lock_key: "k".into(), entry_id: 3 }.into(), Exit::Refused, "lock_held", "held by unresolved entry 3"),
            (J::NotFound { entry_id: 3 }.into(), Exit::NotFound, "not_found", "there is no entry 3"),
            (J::AnonymousCaller.into(), Exit::Refused, "anonymous_caller", "anonymous identity"),
            (J::PayloadTooLarge { field: "reason".into(), size: 2000, max: 1024 }.into(), Exit::Refused, "too_large", "reason is too long: 2000 bytes"),
            (J::QuotaExceeded { owner: p(), limit: "unresolved".into(), max: 5 }.into(), Exit::Refused, "quota_exceeded", "limit of 5"),
            (J::InvalidArgument { message: "needs a block".into() }.into(), Exit::Refused, "invalid_argument", "needs a block"),
            (J::InvalidTransition { entry_id: 3, from: s, to: Status::Pending }.into(), Exit::Refused, "invalid_transition", "from succeeded to pending"),
            (J::NotInManualReview { entry_id: 12, status: s }.into(), Exit::Refused, "not_in_manual_review", "entry 12 is not in the manual queue (it is succeeded)"),
            (J::ReasonRequired.into(), Exit::Refused, "reason_required", "non-empty reason"),
            (J::UnsupportedForKind { entry_id: 3, message: "only sagas".into() }.into(), Exit::Refused, "unsupported_for_kind", "entry 3: only sagas"),
            (J::AlreadyApproved { entry_id: 3 }.into(), Exit::Refused, "already_approved", "another operator must approve"),
            (J::AlreadyReported { entry_id: 3, status: s }.into(), Exit::Refused, "already_reported", "different result"),
            (J::EvidenceUnverifiable { entry_id: 3, message: "archive down".into() }.into(), Exit::Refused, "evidence_unverifiable", "try again when the ledger answers"),
            (J::EvidenceMismatch { entry_id: 3, block_index: 9, message: "memo differs".into() }.into(), Exit::Refused, "evidence_mismatch", "block 9 does not prove entry 3"),
            (J::WindowStillOpen { entry_id: 3, closes_at: 1_796_119_200_000_000_000 }.into(), Exit::Refused, "window_still_open", "could still execute entry 3's transfer until 2026-12-01 10:00:00 UTC; pass --acknowledge-risk if you accept that a new request could pay twice"),
            (J::Blocked { entry_id: 3, on: 4, message: "step 1".into() }.into(), Exit::Refused, "blocked", "waits on entry 4"),
            (J::TemporarilyUnavailable { message: "busy".into() }.into(), Exit::Refused, "temporarily_unavailable", "try again"),
            (J::KeyNotFound.into(), Exit::NotFound, "key_not_found", "no entry"),
            (J::DuplicateRequest { entry_id: 3 }.into(), Exit::Refused, "duplicate_request", "entry 3"),
            (J::IdempotencyKeyReused { entry_id: 3 }.into(), Exit::Refused, "idempotency_key_reused", "entry 3"),
            (J::StorageFull { used_bytes: 9, limit_bytes: 10 }.into(), Exit::Refused, "storage_full", "9 of 10"),
            (ServiceError::CyclesRequired { required: 5, attached: 0 }, Exit::Refused, "cycles_required", "fee_exempt"),
            (J::Other { error_code: 77, message: "odd".into() }.into(), Exit::Refused, "other", "error 77"),
            (ServiceError::NotAuthorized { required: "operator (admin or controller)".into() }, Exit::Refused, "not_authorized", "this needs operator (admin or controller)"),
            (ServiceError::LedgerNotAllowed { ledger: p() }, Exit::Refused, "ledger_not_allowed", "not one of the service's configured ledgers"),
            (ServiceError::FundsNotOwned { message: "escrow".into() }, Exit::Refused, "funds_not_owned", "does not own"),
            (ServiceError::InvalidConfig { message: "max_attempts".into() }, Exit::Refused, "invalid_config", "max_attempts"),
        ];
        for (e, exit, kind, text) in cases {
            let c = service_error(&e, p());
            assert_eq!(c.exit, exit, "{e:?}");
            assert_eq!(c.kind, kind, "{e:?}");
            assert!(c.message.contains(text), "{e:?}: {}", c.message);
        }
    }

    fn call(update: bool) -> Call<'static> {
        Call {
            what: "retry on entry 3".into(),
            update,
            check: "Check with `icjournal show 3`.",
            principal: p(),
        }
    }

    #[test]
    fn tells_unknown_outcomes_from_network_failures_and_rejects() {
        let unknown = ClientError::Transport {
            method: "admin_act".into(),
            error: TransportError::Rejected {
                code: TransportError::SYS_UNKNOWN,
                message: "timeout".into(),
            },
        };
        let e = client_error(unknown.clone(), &call(true));
        assert_eq!(e.exit, Exit::UnknownOutcome);
        assert!(e.message.contains("icjournal show 3"), "{}", e.message);
        assert_eq!(client_error(unknown, &call(false)).exit, Exit::Network);
        let not_sent = ClientError::Transport {
            method: "admin_act".into(),
            error: TransportError::NotSent {
                message: "connection refused".into(),
            },
        };
        assert_eq!(client_error(not_sent, &call(true)).exit, Exit::Network);
        let trap = |method: &str| ClientError::Transport {
            method: method.into(),
            error: TransportError::Rejected {
                code: 5,
                message: "trapped".into(),
            },
        };
        // admin_act may span several messages (resolve-succeeded reads the ledger): a trap
        // after the first may follow a committed change.
        assert_eq!(
            client_error(trap("admin_act"), &call(true)).exit,
            Exit::UnknownOutcome
        );
        assert_eq!(
            client_error(trap("pause_recovery"), &call(true)).exit,
            Exit::Rejected
        );
        let candid = ClientError::Candid {
            method: "admin_act".into(),
            message: "type mismatch".into(),
        };
        assert_eq!(
            client_error(candid.clone(), &call(true)).exit,
            Exit::UnknownOutcome
        );
        assert_eq!(client_error(candid, &call(false)).exit, Exit::Rejected);
    }

    #[test]
    fn recognises_the_ingress_filter() {
        let e = ClientError::Transport {
            method: "admin_act".into(),
            error: TransportError::Rejected {
                code: 4,
                message: "Canister x rejected the message in canister_inspect_message (IC0406)"
                    .into(),
            },
        };
        assert!(is_inspect_refusal(&e));
        let e = ClientError::Transport {
            method: "admin_act".into(),
            error: TransportError::Rejected {
                code: 4,
                message: "explicit reject".into(),
            },
        };
        assert!(!is_inspect_refusal(&e));
    }
}
