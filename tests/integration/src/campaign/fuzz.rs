//! Fuzzed Candid (R5) at every endpoint of the service and the payout canister: raw bytes,
//! valid arguments with bytes mutated, and well-typed arguments with hostile values (huge and
//! zero amounts, foreign and anonymous principals, oversized and empty strings, ids that do
//! not exist), from users, an operator, a stranger and the anonymous principal.
//!
//! Every call must end in a reply (typed `Ok` / `Err`) or a rejection, and:
//! - a call that ends in an error or a rejection changes nothing in stable memory (the
//!   journal, its indexes and the audit log all live there);
//! - a rejection of malformed input is cheap (its instructions are bounded);
//! - afterwards recovery finishes and every invariant holds.

use super::check;
use super::Rng;
use crate::payout_types::HttpRequest;
use crate::{admin, controller, stranger, user, Setup};
use candid::{Encode, Nat, Principal};
use icjournal::{
    AdminAction, AdminRequest, LedgerOp, ListFilter, PageRequest, ReportedResult, Status,
    TransferSpec,
};
use icjournal_client::{
    AdminListArgs, AuditArgs, RecordIntentArgs, ReportResultArgs, SagaRequest, SagaTransferStep,
    TrackTransferArgs, TransferRequest,
};
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::TransferArg;

/// A rejected or failed call of malformed input should cost little: well under the 200 M
/// instructions the IC allows `canister_inspect_message` (dfinity/ic
/// `rs/config/src/execution_environment.rs`, `MAX_INSTRUCTIONS_FOR_MESSAGE_ACCEPTANCE_CALLS`).
pub const CHEAP_REJECTION: u64 = 50_000_000;

const SERVICE_UPDATES: [&str; 14] = [
    "record_intent",
    "report_result",
    "track_transfer",
    "execute_transfer",
    "submit_transfer",
    "execute_saga",
    "submit_saga",
    "admin_act",
    "set_config",
    "pause_recovery",
    "resume_recovery",
    "icjournal_commit",
    // Queries, also callable as updates (replicated queries): state changes are discarded.
    "get_entry",
    "admin_list",
];
const SERVICE_QUERIES: [&str; 13] = [
    "admin_audit",
    "admin_get_entry",
    "admin_list",
    "controller_view",
    "escrow_account",
    "find_entry",
    "get_config",
    "get_entry",
    "http_request",
    "ledgers",
    "list_entries",
    "list_failed",
    "list_unresolved",
];
const PAYOUT_UPDATES: [&str; 8] = [
    "payout",
    "deposit",
    "admin_retry",
    "admin_resolve_succeeded",
    "admin_resolve_failed",
    "admin_compensate",
    "admin_cancel",
    "admin_run_recovery",
];
const PAYOUT_QUERIES: [&str; 8] = [
    "get_payout",
    "my_payouts",
    "balance_of",
    "metrics",
    "settings",
    "admin_manual_queue",
    "admin_list",
    "admin_show",
];

pub struct FuzzReport {
    pub execs: u64,
    pub raw: u64,
    pub structured: u64,
    pub endpoints: usize,
    pub violations: Vec<String>,
    pub outcomes: String,
    /// Failed calls during which a timer of the canister ran and stable memory changed: the
    /// change cannot be told apart from the timer's, so it is not checked.
    pub unattributed: u64,
    /// Errors that report a journaled flow's outcome (a payout that ran and was refunded),
    /// whose state change is by design.
    pub journaled_errors: u64,
}

fn hostile_nat(r: &mut Rng) -> Nat {
    match r.below(5) {
        0 => Nat::from(0u8),
        1 => Nat::from(u64::MAX),
        2 => Nat::from(u128::MAX) * Nat::from(u128::MAX),
        3 => Nat::from(1u8),
        _ => Nat::from(r.below(10_000_000)),
    }
}

fn hostile_principal(r: &mut Rng, s: &Setup) -> Principal {
    match r.below(7) {
        0 => Principal::anonymous(),
        1 => Principal::management_canister(),
        2 => s.service,
        3 => s.payout,
        4 => s.ledger,
        5 => Principal::from_slice(&[0xff; 29]),
        _ => user(r.below(12)),
    }
}

fn hostile_text(r: &mut Rng) -> String {
    match r.below(5) {
        0 => String::new(),
        1 => "x".repeat(100_000),
        2 => "\u{0}\u{202e}é🙂".repeat(50),
        3 => "a".repeat(r.below(600) as usize),
        _ => "ok".into(),
    }
}

fn hostile_bytes(r: &mut Rng) -> Vec<u8> {
    match r.below(4) {
        0 => vec![],
        1 => vec![0xAB; 200_000],
        _ => (0..r.below(300)).map(|_| r.next() as u8).collect(),
    }
}

fn hostile_account(r: &mut Rng, s: &Setup) -> Account {
    Account {
        owner: hostile_principal(r, s),
        subaccount: match r.below(3) {
            0 => None,
            1 => Some([0u8; 32]),
            _ => Some([r.next() as u8; 32]),
        },
    }
}

fn hostile_spec(r: &mut Rng, s: &Setup) -> TransferSpec {
    let ledger = if r.chance(80) {
        s.ledger
    } else {
        hostile_principal(r, s)
    };
    if r.chance(50) {
        TransferSpec::Icrc1 {
            ledger,
            from_subaccount: if r.chance(50) {
                None
            } else {
                Some([r.next() as u8; 32])
            },
            to: hostile_account(r, s),
            amount: hostile_nat(r),
            fee: if r.chance(50) {
                None
            } else {
                Some(hostile_nat(r))
            },
        }
    } else {
        TransferSpec::Icrc2 {
            ledger,
            spender_subaccount: None,
            from: hostile_account(r, s),
            to: hostile_account(r, s),
            amount: hostile_nat(r),
            fee: if r.chance(50) {
                None
            } else {
                Some(hostile_nat(r))
            },
        }
    }
}

fn opt_text(r: &mut Rng) -> Option<String> {
    if r.chance(50) {
        None
    } else {
        Some(hostile_text(r))
    }
}

fn id(r: &mut Rng) -> u64 {
    match r.below(3) {
        0 => u64::MAX,
        1 => r.below(20),
        _ => r.next(),
    }
}

/// A well-typed argument with hostile values for `method` (None: no structured generator).
fn structured(r: &mut Rng, s: &Setup, payout: bool, method: &str) -> Option<Vec<u8>> {
    let page = PageRequest {
        start_after: if r.chance(50) { None } else { Some(id(r)) },
        limit: *r.pick(&[0, 1, 100, u32::MAX]),
    };
    let action = match r.below(5) {
        0 => AdminAction::Retry,
        1 => AdminAction::ResolveFailed,
        2 => AdminAction::Cancel,
        3 => AdminAction::Compensate,
        _ => AdminAction::ResolveSucceeded {
            block_index: Some(id(r)),
        },
    };
    Some(
        if !payout {
            match method {
                "record_intent" => Encode!(&RecordIntentArgs {
                    label: hostile_text(r),
                    payload: hostile_bytes(r),
                    lock_key: opt_text(r),
                    idempotency_key: opt_text(r),
                }),
                "report_result" => Encode!(&ReportResultArgs {
                    entry_id: id(r),
                    result: match r.below(3) {
                        0 => ReportedResult::Succeeded {
                            block_index: if r.chance(50) { None } else { Some(id(r)) },
                            reply: hostile_bytes(r),
                        },
                        1 => ReportedResult::Failed {
                            message: hostile_text(r),
                        },
                        _ => ReportedResult::Unknown {
                            message: hostile_text(r),
                        },
                    },
                }),
                "track_transfer" => Encode!(&TrackTransferArgs {
                    ledger: if r.chance(70) {
                        s.ledger
                    } else {
                        hostile_principal(r, s)
                    },
                    op: LedgerOp::Icrc1Transfer(TransferArg {
                        from_subaccount: None,
                        to: hostile_account(r, s),
                        fee: Some(hostile_nat(r)),
                        created_at_time: if r.chance(70) { None } else { Some(r.next()) },
                        memo: None,
                        amount: hostile_nat(r),
                    }),
                    lock_key: opt_text(r),
                    idempotency_key: opt_text(r),
                }),
                "execute_transfer" | "submit_transfer" => Encode!(&TransferRequest {
                    transfer: hostile_spec(r, s),
                    lock_key: opt_text(r),
                    idempotency_key: opt_text(r),
                }),
                "execute_saga" | "submit_saga" => {
                    let n = *r.pick(&[0u64, 1, 2, 200]);
                    Encode!(&SagaRequest {
                        steps: (0..n)
                            .map(|_| SagaTransferStep {
                                transfer: hostile_spec(r, s),
                                compensation: if r.chance(50) {
                                    None
                                } else {
                                    Some(hostile_spec(r, s))
                                },
                            })
                            .collect(),
                        lock_key: opt_text(r),
                        idempotency_key: opt_text(r),
                    })
                }
                "admin_act" => Encode!(&AdminRequest {
                    entry_id: id(r),
                    action,
                    reason: hostile_text(r),
                    acknowledge_risk: if r.chance(50) {
                        None
                    } else {
                        Some(r.chance(50))
                    },
                }),
                "pause_recovery" | "resume_recovery" => Encode!(&hostile_text(r)),
                "get_entry" | "admin_get_entry" => Encode!(&id(r)),
                "admin_list" => Encode!(&AdminListArgs {
                    filter: ListFilter {
                        owner: if r.chance(50) {
                            None
                        } else {
                            Some(hostile_principal(r, s))
                        },
                        status: if r.chance(50) {
                            None
                        } else {
                            Some(Status::ManualReview)
                        },
                        ..Default::default()
                    },
                    page,
                }),
                "admin_audit" => Encode!(&AuditArgs {
                    start_seq: id(r),
                    limit: *r.pick(&[0, 1, u32::MAX]),
                }),
                "escrow_account" => Encode!(&hostile_principal(r, s)),
                "http_request" => Encode!(&HttpRequest {
                    method: hostile_text(r),
                    url: r
                        .pick(&["/metrics", "/logs", "/dashboard", "/../../x", ""])
                        .to_string(),
                    headers: vec![(hostile_text(r), hostile_text(r))],
                    body: hostile_bytes(r),
                }),
                "list_failed" | "list_unresolved" => Encode!(&page),
                _ => return None,
            }
        } else {
            match method {
                "payout" => Encode!(&hostile_account(r, s), &hostile_nat(r)),
                "deposit" => Encode!(&hostile_principal(r, s), &hostile_nat(r)),
                "admin_retry" | "admin_compensate" => Encode!(&id(r), &hostile_text(r)),
                "admin_resolve_succeeded" => {
                    Encode!(&id(r), &Some(id(r)), &hostile_text(r))
                }
                "admin_resolve_failed" | "admin_cancel" => {
                    Encode!(&id(r), &hostile_text(r), &Some(r.chance(50)))
                }
                "get_payout" | "admin_show" => Encode!(&id(r)),
                "balance_of" => Encode!(&hostile_principal(r, s)),
                "my_payouts" | "admin_manual_queue" => Encode!(&page),
                "admin_list" => Encode!(&ListFilter::default(), &page),
                _ => return None,
            }
        }
        .expect("encode"),
    )
}

/// Raw bytes: random, or Candid-looking (magic + random), or a valid argument mutated.
fn raw(r: &mut Rng, valid: Option<Vec<u8>>) -> Vec<u8> {
    match (r.below(3), valid) {
        (0, Some(mut v)) if !v.is_empty() => {
            for _ in 0..1 + r.below(4) {
                let i = r.below(v.len() as u64) as usize;
                match r.below(3) {
                    0 => v[i] = r.next() as u8,
                    1 => v.truncate(i),
                    _ => v.insert(i, r.next() as u8),
                }
                if v.is_empty() {
                    break;
                }
            }
            v
        }
        (1, _) => {
            let mut v = b"DIDL".to_vec();
            v.extend((0..r.below(64)).map(|_| r.next() as u8));
            v
        }
        _ => (0..r.below(128)).map(|_| r.next() as u8).collect(),
    }
}

/// Whether an error reply reports the outcome of a flow the canister journaled (so it changed
/// state by design): the payout example's `TransferFailed` / `DebitRejected` name a payout that
/// ran and was refunded or refused; it must then be readable.
fn journaled_outcome(
    s: &Setup,
    payout: bool,
    method: &str,
    res: &Result<Vec<u8>, ic_sim::RejectResponse>,
) -> bool {
    use crate::payout_types::{PayoutError, PayoutReceipt};
    let (true, "payout", Ok(bytes)) = (payout, method, res) else {
        return false;
    };
    let id = match candid::decode_one::<Result<PayoutReceipt, PayoutError>>(bytes) {
        Ok(Err(PayoutError::TransferFailed { payout_id, .. }))
        | Ok(Err(PayoutError::DebitRejected { payout_id, .. })) => payout_id,
        _ => return false,
    };
    s.get_payout(admin(), id).is_ok()
}

/// Is this reply a typed `Err` (a `variant { Err }` first value)?
fn is_err_reply(bytes: &[u8]) -> bool {
    matches!(
        candid::decode_one::<Result<candid::Reserved, candid::Reserved>>(bytes),
        Ok(Err(_))
    )
}

pub fn run(seed: u64, execs: u64) -> FuzzReport {
    let s = super::base_setup(super::BASE_SEED);
    // A few entries to aim at (ids 0..), one in the manual queue.
    super::crash::record_report(&s, user(1), true);
    super::crash::exec_icrc2(&s, user(2), 1_000_000, Some("f"));
    super::crash::payout(&s, user(1), 1_000_000);
    let base = s.sim().snapshot();
    let mut r = Rng::new(seed ^ 0xF0F0);
    let mut rep = FuzzReport {
        execs: 0,
        raw: 0,
        structured: 0,
        endpoints: SERVICE_UPDATES.len()
            + SERVICE_QUERIES.len()
            + PAYOUT_UPDATES.len()
            + PAYOUT_QUERIES.len(),
        violations: vec![],
        outcomes: String::new(),
        unattributed: 0,
        journaled_errors: 0,
    };
    let (mut ok, mut err, mut rejected, mut max_reject_instr) = (0u64, 0u64, 0u64, 0u64);
    let senders = [
        user(1),
        user(2),
        admin(),
        controller(),
        stranger(),
        Principal::anonymous(),
    ];
    for i in 0..execs {
        if i % 2_000 == 0 {
            s.sim().restore(&base);
        }
        let payout = r.chance(30);
        let canister = if payout { s.payout } else { s.service };
        let (is_query, method) = match (payout, r.chance(60)) {
            (false, true) => (false, *r.pick(&SERVICE_UPDATES)),
            (false, false) => (true, *r.pick(&SERVICE_QUERIES)),
            (true, true) => (false, *r.pick(&PAYOUT_UPDATES)),
            (true, false) => (true, *r.pick(&PAYOUT_QUERIES)),
        };
        let sender = *r.pick(&senders);
        let typed = structured(&mut r, &s, payout, method);
        let (arg, is_structured) = match typed {
            Some(a) if r.chance(50) => (a, true),
            other => (raw(&mut r, other), false),
        };
        if is_structured {
            rep.structured += 1;
        } else {
            rep.raw += 1;
        }
        // What earlier executions left running (a commit, a recovery call's reply) finishes
        // first: the stable memory compared below is then this call's alone.
        s.sim().tick();
        let before = s.sim().stable_generation(canister);
        let first_message = s.sim().message_count();
        let res = if is_query {
            s.sim().query_call(canister, sender, method, arg.clone())
        } else {
            s.sim().update_call(canister, sender, method, arg.clone())
        };
        let after = s.sim().stable_generation(canister);
        rep.execs += 1;
        let failed = match &res {
            Ok(bytes) if is_err_reply(bytes) => {
                err += 1;
                true
            }
            Ok(_) => {
                ok += 1;
                false
            }
            Err(_) => {
                rejected += 1;
                // Instructions of the canister's rejecting message (inspect or the update).
                let last = s.sim().last_instructions();
                max_reject_instr = max_reject_instr.max(last);
                if !is_structured && last > CHEAP_REJECTION {
                    rep.violations.push(format!(
                        "{method} on {} rejected malformed input after {last} instructions \
                         (seed {seed}, exec {i})",
                        if payout { "payout" } else { "service" }
                    ));
                }
                true
            }
        };
        // A timer that came due during the call ran its own messages on the canister: a change
        // is then not the call's to answer for.
        // The trace is in message order: only its tail since the call is read.
        let timer_ran = s
            .sim()
            .trace()
            .iter()
            .rev()
            .take_while(|t| t.index >= first_message)
            .any(|t| {
                t.canister == canister
                    && (t.kind == ic_sim::MessageKind::GlobalTimer
                        || t.method.as_deref() == Some("<ic-cdk internal> timer_executor"))
            });
        if failed && after != before && timer_ran {
            rep.unattributed += 1;
        } else if failed && after != before && journaled_outcome(&s, payout, method, &res) {
            rep.journaled_errors += 1;
        } else if failed && after != before {
            rep.violations.push(format!(
                "{method} on {} by {sender} ended in {} but changed stable memory (seed {seed}, \
                 exec {i}, arg {})",
                if payout { "payout" } else { "service" },
                match &res {
                    Ok(_) => "a typed error".to_string(),
                    Err(e) => format!("a reject ({e})"),
                },
                hex::encode(&arg[..arg.len().min(64)])
            ));
        }
        if rep.violations.len() > 20 {
            break;
        }
    }
    // Whatever the fuzzer did succeed in doing, the journals stay consistent. (An operator's
    // pause_recovery is a legitimate call it may have made: resume first.)
    s.sim().clear_faults();
    let _ = crate::run(s.admin_client().resume_recovery("fuzz done".into()));
    check::settle(&s, 4 * 24 * 3600);
    rep.violations.extend(check::check(&s, None));
    rep.outcomes = format!(
        "{ok} ok, {err} typed errors, {rejected} rejected (max {max_reject_instr} instructions)"
    );
    rep
}
