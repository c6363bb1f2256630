//! Recovery decisions for ledger transfers whose outcome is unknown (see `docs/recovery.md`).
//!
//! Everything here is pure: `plan` chooses how to look, `decide` turns what was seen into a
//! decision. The I/O (resend, block scan) lives in `journal.rs` / `lookup.rs`.

use crate::config::Config;
use crate::ledger::CallOutcome;
use crate::metrics::RecoveryPath;
use crate::types::*;

/// How to find out what happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Resend identical args: the ledger deduplicates (`Duplicate`) or rejects (`TooOld`).
    Resend,
    /// Look the transfer up in the ledger's blocks by memo + every other field.
    Lookup,
}

/// Result of one memo lookup attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupResult {
    /// Exactly one block matches every journaled field.
    Found { block: u64 },
    /// More than one block matches every field: contradicts the ledger's deduplication and
    /// our journal; an operator must look.
    Conflict { blocks: Vec<u64> },
    /// A block that only we could have created (our memo, made from our own account: `from`
    /// for ICRC-1, `spender` for ICRC-2) does not match the journaled transfer: evidence that
    /// contradicts the journal. Goes to manual review with the reason, never "not found".
    Contradiction { block: u64, reason: String },
    /// Every block from the range start up to `scanned_to` (exclusive) was read; none matched.
    /// `past_range` = a block with ledger time beyond `created_at_time + window + drift` was
    /// seen, i.e. the ledger's time is past the range and the transfer can no longer execute.
    Exhausted { scanned_to: u64, past_range: bool },
    /// The per-attempt block or call budget ran out, or a read failed after progress was made;
    /// the scan resumes from the saved cursor.
    Partial { next_block: u64 },
    /// Something could not be read (archive call failed, malformed block): NOT "not found".
    Undecided { detail: String },
    /// The ledger has no endpoint to read its blocks (neither ICRC-3 `icrc3_get_blocks` nor
    /// the legacy `get_transactions`). No number of retries changes that.
    NoBlockAccess { detail: String },
}

/// What recovery observed in this attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    Resend(CallOutcome),
    Lookup(LookupResult),
}

/// What to do with the entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Succeeded {
        block: u64,
        path: RecoveryPath,
    },
    Failed {
        reason: FailureReason,
    },
    /// Continue with a memo lookup now (same attempt). `window_closed`: the ledger proved its
    /// time is past the dedup window (it answered `TooOld`).
    Lookup {
        window_closed: bool,
    },
    /// Look again at `at` (deterministic backoff).
    RetryAt {
        at: Timestamp,
        note: String,
    },
    /// The scan progressed; continue at `at`. Progress is not a failed attempt: it does not
    /// count against `max_attempts` (a scan always advances, so it ends).
    Continue {
        at: Timestamp,
        note: String,
    },
    /// Needs an operator; the reason is shown in the queue.
    Manual {
        reason: String,
    },
}

/// Resend whenever we are the original caller and the args carry `created_at_time`: the ledger
/// then either deduplicates (`Duplicate` → executed once, at that block), executes it for the
/// first time (`Ok`: the original never executed — dedup would have caught it), or answers
/// `TooOld`, which proves the transfer can never execute any more and sends us to the blocks.
/// Deciding "inside/outside the window" by our own clock would only be a guess about the
/// ledger's clock; the ledger's own answer is proof. Transfers sent by another canister can
/// only be looked up (the dedup identity includes the caller), as can args without
/// `created_at_time` (no deduplication: a resend could execute twice).
pub fn plan(intent: &TransferIntent, _now: Timestamp, _cfg: &Config) -> Plan {
    match (intent.executor, intent.created_at_time()) {
        (Executor::SelfCanister, Some(_)) => Plan::Resend,
        _ => Plan::Lookup,
    }
}

/// Decide from one observation. `attempts` counts this attempt; `now` is the current time;
/// `created_at_time` is the journaled one (None for args without it).
pub fn decide(
    attempts: u32,
    now: Timestamp,
    cfg: &Config,
    created_at_time: Option<u64>,
    window: LedgerWindow,
    obs: &Observation,
) -> Decision {
    let retry = |note: String| {
        if attempts >= cfg.max_attempts {
            Decision::Manual {
                reason: format!("gave up after {attempts} attempts; last: {note}"),
            }
        } else {
            Decision::RetryAt {
                at: now.saturating_add(cfg.backoff(attempts)),
                note,
            }
        }
    };
    match obs {
        Observation::Resend(outcome) => match outcome {
            // Ok or Duplicate of the identical args: exactly one execution, at this block.
            CallOutcome::Executed { block } => Decision::Succeeded {
                block: *block,
                path: RecoveryPath::DedupResend,
            },
            // The ledger's clock is past the window: an earlier call may have executed inside
            // it; only the blocks can tell. The TooOld proves it can never execute from now on.
            CallOutcome::TooOld => Decision::Lookup {
                window_closed: true,
            },
            // This resend did not execute, but the ORIGINAL call might have: e.g. BadFee after
            // a fee change is answered before the dedup check. Not proof of non-execution of
            // the original, so ask the blocks.
            CallOutcome::Rejected(FailureReason::Ledger(_)) => Decision::Lookup {
                window_closed: false,
            },
            // Never reached the ledger: no information, try again.
            CallOutcome::Rejected(other) => retry(format!("resend not delivered: {other:?}")),
            CallOutcome::Transient { detail } => retry(format!("resend: {detail}")),
            CallOutcome::Unknown { detail } => retry(format!("resend outcome unknown: {detail}")),
        },
        Observation::Lookup(result) => {
            match result {
                LookupResult::Found { block } => Decision::Succeeded {
                    block: *block,
                    path: RecoveryPath::MemoLookup,
                },
                LookupResult::Conflict { blocks } => Decision::Manual {
                    reason: format!("several blocks match the journaled transfer: {blocks:?}"),
                },
                LookupResult::Contradiction { reason, .. } => Decision::Manual {
                    reason: format!("contradicting evidence: {reason}"),
                },
                LookupResult::Exhausted {
                    scanned_to,
                    past_range: true,
                } => Decision::Failed {
                    reason: FailureReason::NotFoundAfterWindow {
                        scanned_to_block: *scanned_to,
                    },
                },
                LookupResult::Exhausted {
                    scanned_to,
                    past_range: false,
                } => {
                    // Not found, but the ledger could still accept it. Nothing settles this
                    // before the window closes, so look again right after it (a resend then gets
                    // `TooOld`, the proof we need) instead of burning attempts on the backoff.
                    let note = format!(
                        "not found up to block {scanned_to}; ledger time not yet past the window"
                    );
                    match retry(note) {
                        Decision::RetryAt { at, note } => {
                            let closed_at = created_at_time.map_or(at, |cat| {
                                scan_range(cat, window)
                                    .1
                                    .saturating_add(window.permitted_drift_ns)
                            });
                            Decision::RetryAt {
                                at: at.max(closed_at),
                                note,
                            }
                        }
                        other => other,
                    }
                }
                // Budget ran out mid-scan: progress was made, continue soon without burning the
                // backoff or an attempt.
                LookupResult::Partial { next_block } => Decision::Continue {
                    at: now.saturating_add(cfg.backoff_base_ns),
                    note: format!("scan continues at block {next_block}"),
                },
                LookupResult::Undecided { detail } => retry(format!("lookup undecided: {detail}")),
                LookupResult::NoBlockAccess { detail } => Decision::Manual {
                    reason: format!(
                        "{detail}. The transfer cannot be looked up: check the ledger's blocks \
                         another way (an index canister, an explorer) and resolve with the \
                         evidence"
                    ),
                },
            }
        }
    }
}

/// Decision for the FIRST send of a transfer (there is no earlier identical call, so a ledger
/// error that proves this call did not execute proves the transfer did not execute).
pub fn decide_first_send(
    attempts: u32,
    now: Timestamp,
    cfg: &Config,
    outcome: &CallOutcome,
) -> Decision {
    match outcome {
        CallOutcome::Executed { block } => Decision::Succeeded {
            block: *block,
            path: RecoveryPath::DedupResend, // unused for first sends (no recovery happened)
        },
        CallOutcome::Rejected(reason) => Decision::Failed {
            reason: reason.clone(),
        },
        // created_at_time was set to our `now` moments ago; a TooOld means clocks disagree by
        // more than the window. Nothing executed (no earlier call exists).
        CallOutcome::TooOld => Decision::Failed {
            reason: FailureReason::Ledger(LedgerError::TooOld),
        },
        CallOutcome::Transient { detail } => decide(
            attempts,
            now,
            cfg,
            None,
            cfg.ledger_window(candid::Principal::anonymous()),
            &Observation::Resend(CallOutcome::Transient {
                detail: detail.clone(),
            }),
        ),
        CallOutcome::Unknown { detail } => Decision::RetryAt {
            // Recover promptly: inside the window a resend settles it in one call.
            at: now.saturating_add(cfg.backoff(1)),
            note: detail.clone(),
        },
    }
}

/// First block time that can hold the transfer, and the last.
pub fn scan_range(created_at_time: u64, w: LedgerWindow) -> (u64, u64) {
    (
        created_at_time.saturating_sub(w.permitted_drift_ns),
        created_at_time
            .saturating_add(w.tx_window_ns)
            .saturating_add(w.permitted_drift_ns),
    )
}

/// The window a transfer is judged by: the one recorded when it was journaled; for entries
/// journaled before windows were recorded, the configured one of its ledger.
pub fn window_of(intent: &TransferIntent, cfg: &Config) -> LedgerWindow {
    intent
        .window
        .unwrap_or_else(|| cfg.ledger_window(intent.ledger))
}

/// `scan_range` of a journaled transfer, by its recorded window.
pub fn scan_range_for(created_at_time: u64, intent: &TransferIntent, cfg: &Config) -> (u64, u64) {
    scan_range(created_at_time, window_of(intent, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candid::{Nat, Principal};
    use icrc_ledger_types::icrc1::account::Account;
    use icrc_ledger_types::icrc1::transfer::{Memo, TransferArg};

    const H: u64 = 3_600_000_000_000;

    fn intent(executor: Executor, cat: Option<u64>) -> TransferIntent {
        TransferIntent {
            ledger: Principal::from_slice(&[1]),
            executor,
            window: None,
            op: LedgerOp::Icrc1Transfer(TransferArg {
                from_subaccount: None,
                to: Account::from(Principal::from_slice(&[2])),
                fee: None,
                created_at_time: cat,
                memo: Some(Memo::from(crate::memo::encode(1))),
                amount: Nat::from(5u64),
            }),
        }
    }

    #[test]
    fn plan_resends_only_as_original_caller_with_created_at_time() {
        let cfg = Config::default();
        let i = intent(Executor::SelfCanister, Some(10 * H));
        assert_eq!(plan(&i, 10 * H, &cfg), Plan::Resend);
        // Also past our estimate of the window: the ledger's TooOld is the proof we want.
        assert_eq!(plan(&i, 34 * H, &cfg), Plan::Resend);
        let ext = intent(
            Executor::External {
                caller: Principal::from_slice(&[9]),
            },
            Some(10 * H),
        );
        assert_eq!(plan(&ext, 10 * H, &cfg), Plan::Lookup);
        assert_eq!(
            plan(&intent(Executor::SelfCanister, None), 10 * H, &cfg),
            Plan::Lookup
        );
    }

    fn w(cfg: &Config) -> LedgerWindow {
        cfg.ledger_window(Principal::anonymous())
    }

    fn d(attempts: u32, obs: Observation) -> Decision {
        let cfg = Config::default();
        decide(attempts, 100, &cfg, Some(100), w(&cfg), &obs)
    }

    #[test]
    fn resend_outcomes() {
        assert_eq!(
            d(2, Observation::Resend(CallOutcome::Executed { block: 7 })),
            Decision::Succeeded {
                block: 7,
                path: RecoveryPath::DedupResend
            }
        );
        assert_eq!(
            d(2, Observation::Resend(CallOutcome::TooOld)),
            Decision::Lookup {
                window_closed: true
            }
        );
        let bad_fee = FailureReason::Ledger(LedgerError::BadFee {
            expected_fee: Nat::from(1u8),
        });
        assert_eq!(
            d(2, Observation::Resend(CallOutcome::Rejected(bad_fee))),
            Decision::Lookup {
                window_closed: false
            }
        );
        let nd = FailureReason::NotDelivered {
            code: Some(RejectCode::SysTransient),
            message: String::new(),
        };
        assert!(matches!(
            d(2, Observation::Resend(CallOutcome::Rejected(nd))),
            Decision::RetryAt { .. }
        ));
        assert!(matches!(
            d(
                2,
                Observation::Resend(CallOutcome::Transient { detail: "x".into() })
            ),
            Decision::RetryAt { .. }
        ));
        assert!(matches!(
            d(
                2,
                Observation::Resend(CallOutcome::Unknown { detail: "x".into() })
            ),
            Decision::RetryAt { .. }
        ));
    }

    #[test]
    fn retries_back_off_deterministically_then_go_manual() {
        let cfg = Config::default();
        let obs = Observation::Resend(CallOutcome::Unknown { detail: "t".into() });
        let mut last = 0;
        for a in 1..cfg.max_attempts {
            match decide(a, 1_000, &cfg, Some(1_000), w(&cfg), &obs) {
                Decision::RetryAt { at, .. } => {
                    assert!(at >= last, "backoff must not shrink");
                    assert_eq!(at, 1_000 + cfg.backoff(a));
                    assert_eq!(
                        decide(a, 1_000, &cfg, Some(1_000), w(&cfg), &obs),
                        Decision::RetryAt {
                            at,
                            note: "resend outcome unknown: t".into()
                        }
                    );
                    last = at;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            decide(cfg.max_attempts, 1_000, &cfg, Some(1_000), w(&cfg), &obs),
            Decision::Manual { .. }
        ));
        assert_eq!(cfg.backoff(1), cfg.backoff_base_ns);
        assert_eq!(cfg.backoff(2), 2 * cfg.backoff_base_ns);
        assert_eq!(cfg.backoff(200), cfg.backoff_max_ns);
    }

    #[test]
    fn lookup_outcomes() {
        assert_eq!(
            d(3, Observation::Lookup(LookupResult::Found { block: 4 })),
            Decision::Succeeded {
                block: 4,
                path: RecoveryPath::MemoLookup
            }
        );
        assert!(matches!(
            d(
                3,
                Observation::Lookup(LookupResult::Conflict { blocks: vec![1, 2] })
            ),
            Decision::Manual { .. }
        ));
        assert_eq!(
            d(
                3,
                Observation::Lookup(LookupResult::Exhausted {
                    scanned_to: 9,
                    past_range: true
                })
            ),
            Decision::Failed {
                reason: FailureReason::NotFoundAfterWindow {
                    scanned_to_block: 9
                }
            }
        );
        // Not found but the ledger could still execute it: never "failed" yet; look again
        // once the window (plus drift on both sides) has closed.
        let cfg = Config::default();
        assert_eq!(
            d(
                3,
                Observation::Lookup(LookupResult::Exhausted {
                    scanned_to: 9,
                    past_range: false
                })
            ),
            Decision::RetryAt {
                at: 100 + cfg.ledger_tx_window_ns + 2 * cfg.ledger_permitted_drift_ns,
                note: "not found up to block 9; ledger time not yet past the window".into()
            }
        );
        // Unreadable archive = undecided, never "not found".
        assert!(matches!(
            d(
                3,
                Observation::Lookup(LookupResult::Undecided {
                    detail: "archive".into()
                })
            ),
            Decision::RetryAt { .. }
        ));
        assert_eq!(
            d(
                3,
                Observation::Lookup(LookupResult::Partial { next_block: 50 })
            ),
            Decision::Continue {
                at: 100 + Config::default().backoff_base_ns,
                note: "scan continues at block 50".into()
            }
        );
        // A scan that progresses is not failing: no number of attempts sends it to an operator.
        let max = Config::default().max_attempts;
        assert!(matches!(
            d(
                max + 5,
                Observation::Lookup(LookupResult::Partial { next_block: 50 })
            ),
            Decision::Continue { .. }
        ));
        // No block endpoint at all: to an operator at once, whatever the attempt count.
        assert!(matches!(
            d(
                1,
                Observation::Lookup(LookupResult::NoBlockAccess { detail: "x".into() })
            ),
            Decision::Manual { .. }
        ));
        assert!(matches!(
            d(
                max,
                Observation::Lookup(LookupResult::Undecided { detail: "x".into() })
            ),
            Decision::Manual { .. }
        ));
    }

    #[test]
    fn first_send_outcomes() {
        let cfg = Config::default();
        let f = |o: CallOutcome| decide_first_send(1, 100, &cfg, &o);
        assert!(matches!(
            f(CallOutcome::Executed { block: 1 }),
            Decision::Succeeded { block: 1, .. }
        ));
        let r = FailureReason::Ledger(LedgerError::InsufficientFunds {
            balance: Nat::from(0u8),
        });
        assert_eq!(
            f(CallOutcome::Rejected(r.clone())),
            Decision::Failed { reason: r }
        );
        assert_eq!(
            f(CallOutcome::TooOld),
            Decision::Failed {
                reason: FailureReason::Ledger(LedgerError::TooOld)
            }
        );
        assert_eq!(
            f(CallOutcome::Transient {
                detail: "busy".into()
            }),
            Decision::RetryAt {
                at: 100 + cfg.backoff(1),
                note: "resend: busy".into()
            }
        );
        assert_eq!(
            f(CallOutcome::Unknown {
                detail: "timeout".into()
            }),
            Decision::RetryAt {
                at: 100 + cfg.backoff(1),
                note: "timeout".into()
            }
        );
    }

    #[test]
    fn scan_range_covers_window_and_drift() {
        let cfg = Config::default();
        let (lo, hi) = scan_range(100 * H, w(&cfg));
        assert_eq!(lo, 100 * H - cfg.ledger_permitted_drift_ns);
        assert_eq!(
            hi,
            100 * H + cfg.ledger_tx_window_ns + cfg.ledger_permitted_drift_ns
        );
        assert_eq!(scan_range(5, w(&cfg)).0, 0);
    }
}
