//! End-to-end flows on the fake runtime + model ledger, one behaviour per test.

use super::harness::*;
use crate::types::*;
use crate::{Config, JournalError, LocalHandler, RecoveryPath, SagaStepSpec};
use candid::{Nat, Principal};
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::TransferArg;
use std::cell::RefCell;
use std::rc::Rc;

fn ok(r: Option<Result<FlowResult, JournalError>>) -> FlowResult {
    r.expect("flow did not trap").expect("flow accepted")
}

fn path_count(h: &Harness, p: RecoveryPath) -> u64 {
    h.journal
        .metrics()
        .recoveries_by_path
        .iter()
        .find(|c| c.path == p)
        .unwrap()
        .count
}

#[test]
fn icrc1_transfer_happy_path_journals_exact_args_and_commits() {
    let mut h = Harness::new(Config::default());
    let r = ok(h.transfer(user(1), h.icrc1(500), None));
    assert_eq!(r.status, Status::Succeeded);
    let e = h.journal.get(r.entry_id).unwrap();
    assert_eq!(e.block_index(), Some(0));
    assert_eq!(h.ledger.blocks.len(), 1);
    let Intent::Transfer(t) = &e.intent else {
        panic!()
    };
    assert_eq!(t.created_at_time(), Some(T0));
    assert_eq!(t.memo(), Some(crate::memo::encode(r.entry_id).as_slice()));
    assert_eq!(h.ledger.blocks[0].memo.as_deref(), t.memo());
    // Ledger call, then the self-call commit.
    assert_eq!(h.calls.len(), 2);
    assert_eq!(h.calls[0].method, "icrc1_transfer");
    let sent: TransferArg = candid::decode_one(&h.calls[0].arg).unwrap();
    assert_eq!(LedgerOp::Icrc1Transfer(sent), t.op);
    assert_eq!(h.calls[1].callee, h.self_id);
    assert_eq!(h.calls[1].method, "icjournal_commit");
    assert_eq!(
        e.history.iter().map(|x| x.to).collect::<Vec<_>>(),
        vec![Status::Succeeded]
    );
}

#[test]
fn icrc2_transfer_from_happy_path() {
    let mut h = Harness::new(Config::default());
    let r = ok(h.transfer(user(1), h.icrc2(70), None));
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(h.ledger.blocks[0].spender, Some(Account::from(h.self_id)));
    assert_eq!(h.ledger.blocks[0].fee_sent, Some(10));
}

#[test]
fn definitive_ledger_errors_fail_without_execution() {
    let mut h = Harness::new(Config::default());
    let r = ok(h.transfer(user(1), h.icrc1(u64::MAX), None));
    assert_eq!(r.status, Status::Failed);
    assert!(matches!(
        r.outcome,
        Some(Outcome::Failed {
            reason: FailureReason::Ledger(LedgerError::InsufficientFunds { .. }),
            ..
        })
    ));
    let mut bad_fee = h.icrc1(5);
    if let TransferSpec::Icrc1 { fee, .. } = &mut bad_fee {
        *fee = Some(Nat::from(3u8));
    }
    let r = ok(h.transfer(user(1), bad_fee, None));
    assert!(matches!(
        r.outcome,
        Some(Outcome::Failed {
            reason: FailureReason::Ledger(LedgerError::BadFee { .. }),
            ..
        })
    ));
    let mut no_allowance = h.icrc2(5);
    if let TransferSpec::Icrc2 { from, .. } = &mut no_allowance {
        *from = Account::from(user(201));
    }
    let r = ok(h.transfer(user(1), no_allowance, None));
    assert!(matches!(
        r.outcome,
        Some(Outcome::Failed {
            reason: FailureReason::Ledger(LedgerError::InsufficientAllowance { .. }),
            ..
        })
    ));
    assert!(h.ledger.blocks.is_empty());
}

#[test]
fn reject_before_delivery_is_a_definitive_failure() {
    let mut h = Harness::new(Config::default());
    h.faults.push_back(Fault::RejectBeforeDelivery);
    let r = ok(h.transfer(user(1), h.icrc1(5), None));
    assert_eq!(r.status, Status::Failed);
    assert!(matches!(
        r.outcome,
        Some(Outcome::Failed {
            reason: FailureReason::NotDelivered {
                code: Some(RejectCode::SysTransient),
                ..
            },
            ..
        })
    ));
}

#[test]
fn lost_response_is_recovered_by_dedup_resend_exactly_once() {
    let mut h = Harness::new(Config::default());
    h.faults.push_back(Fault::LoseResponse);
    let r = ok(h.transfer(user(1), h.icrc1(5), Some("k".into())));
    assert_eq!(r.status, Status::Unknown);
    assert_eq!(
        h.ledger.blocks.len(),
        1,
        "executed although the response was lost"
    );
    // Still locked while unknown (I3).
    assert_eq!(
        h.transfer(user(1), h.icrc1(5), Some("k".into())).unwrap(),
        Err(JournalError::LockHeld {
            lock_key: "k".into(),
            entry_id: r.entry_id
        })
    );
    h.rt.advance(Config::default().backoff(1));
    let rep = h.tick().unwrap();
    assert_eq!(rep.resolved, 1);
    let e = h.journal.get(r.entry_id).unwrap();
    assert_eq!(e.status, Status::Succeeded);
    assert_eq!(e.block_index(), Some(0));
    assert_eq!(h.ledger.blocks.len(), 1, "resend was deduplicated");
    assert_eq!(path_count(&h, RecoveryPath::DedupResend), 1);
    assert_eq!(h.journal.lock_holder("k"), None);
    assert!(matches!(
        e.outcome,
        Some(Outcome::Succeeded {
            source: EvidenceSource::DedupResend,
            ..
        })
    ));
}

#[test]
fn trap_in_callback_marks_unknown_via_drop_guard_then_recovers() {
    let mut h = Harness::new(Config::default());
    h.faults.push_back(Fault::Trap);
    assert!(h.transfer(user(1), h.icrc1(5), None).is_none(), "trapped");
    let e = h.journal.get(0).unwrap();
    assert_eq!(
        e.status,
        Status::Unknown,
        "cleanup's Drop guard persisted Unknown"
    );
    assert_eq!(h.ledger.blocks.len(), 1);
    h.settle();
    let e = h.journal.get(0).unwrap();
    assert_eq!((e.status, e.block_index()), (Status::Succeeded, Some(0)));
    assert_eq!(h.ledger.blocks.len(), 1);
}

#[test]
fn trap_after_result_commit_keeps_the_result() {
    let mut h = Harness::new(Config::default());
    h.faults.push_back(Fault::Deliver);
    h.faults.push_back(Fault::Trap); // trap in the callback of the self-call commit
    assert!(h.transfer(user(1), h.icrc1(5), None).is_none());
    let e = h.journal.get(0).unwrap();
    assert_eq!(e.status, Status::Succeeded);
}

#[test]
fn transient_errors_retry_with_identical_args() {
    let mut h = Harness::new(Config::default());
    h.faults.push_back(Fault::Unavailable);
    let r = ok(h.transfer(user(1), h.icrc1(5), None));
    assert_eq!(r.status, Status::Unknown);
    assert!(h.ledger.blocks.is_empty());
    h.settle();
    assert_eq!(h.journal.get(0).unwrap().status, Status::Succeeded);
    let first = &h.calls[0];
    let resend = h
        .calls
        .iter()
        .rfind(|c| c.method == "icrc1_transfer")
        .unwrap();
    assert_eq!(first.arg, resend.arg, "resend is byte-for-byte identical");
}

#[test]
fn canister_error_is_unknown_and_resolved_failed_after_window_via_blocks() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    h.faults.push_back(Fault::CanisterErrorNotExecuted);
    let r = ok(h.transfer(user(1), h.icrc1(5), None));
    assert_eq!(r.status, Status::Unknown);
    // Traffic, incl. someone else's transfer carrying OUR memo (memo alone proves nothing).
    for i in 0..30 {
        h.ledger
            .push_noise(T0 + i * 60 * SEC, Some(crate::memo::encode(0)));
    }
    h.ledger.archived_upto = 20;
    // The ledger is down for the whole window: every resend fails transiently.
    h.rt.advance(cfg.ledger_tx_window_ns + 2 * cfg.ledger_permitted_drift_ns + HOUR);
    h.settle();
    let e = h.journal.get(0).unwrap();
    assert_eq!(e.status, Status::Failed, "{e:#?}");
    assert!(matches!(
        e.outcome,
        Some(Outcome::Failed {
            reason: FailureReason::NotFoundAfterWindow { .. },
            ..
        })
    ));
    assert!(
        h.calls.iter().any(|c| c.callee == h.ledger.archive_id),
        "archive was read"
    );
    assert_eq!(
        h.ledger.blocks_for_entry(0).len(),
        30,
        "only noise carries the memo"
    );
}

#[test]
fn lost_response_past_window_is_found_by_memo_lookup_through_the_archive() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    for i in 0..10 {
        h.ledger.push_noise(T0 - HOUR + i, None);
    }
    h.faults.push_back(Fault::LoseResponse);
    let r = ok(h.transfer(user(1), h.icrc1(5), None));
    assert_eq!(r.status, Status::Unknown);
    let block = h.ledger.blocks_for_entry(0)[0];
    for i in 0..10 {
        h.ledger.push_noise(T0 + 2 * HOUR + i, None);
    }
    h.ledger.archived_upto = 15;
    h.rt.advance(cfg.ledger_tx_window_ns + HOUR);
    h.settle();
    let e = h.journal.get(0).unwrap();
    assert_eq!(
        (e.status, e.block_index()),
        (Status::Succeeded, Some(block))
    );
    assert_eq!(path_count(&h, RecoveryPath::MemoLookup), 1);
    assert_eq!(h.ledger.blocks_for_entry(0).len(), 1);
}

/// A real ledger answers at most 100 blocks per call (ledger and archive alike) and holds far
/// more than 100 blocks in an entry's scan range. A short page is normal: the lookup must page
/// on from the last block it received and decide, both ways.
#[test]
fn should_find_a_transfer_by_memo_when_pages_hold_at_most_100_blocks() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    assert_eq!(h.ledger.max_blocks_per_response, 100);
    for i in 0..450 {
        h.ledger.push_noise(T0 - 30 + i, None);
    }
    h.faults.push_back(Fault::LoseResponse);
    let r = ok(h.transfer(user(1), h.icrc1(5), None));
    assert_eq!(r.status, Status::Unknown);
    let block = h.ledger.blocks_for_entry(0)[0];
    assert!(block > 400);
    for i in 0..350 {
        h.ledger.push_noise(T0 + 2 * HOUR + i, None);
    }
    // Most of the range only in the archive, which also answers 100 at a time.
    h.ledger.archived_upto = 700;
    h.rt.advance(cfg.ledger_tx_window_ns + 2 * cfg.ledger_permitted_drift_ns + HOUR);
    for i in 0..150 {
        h.ledger
            .push_noise(T0 + cfg.ledger_tx_window_ns + 2 * HOUR + i, None);
    }
    h.settle();
    let e = h.journal.get(0).unwrap();
    assert_eq!(
        (e.status, e.block_index()),
        (Status::Succeeded, Some(block)),
        "{e:#?}"
    );
    assert_eq!(path_count(&h, RecoveryPath::MemoLookup), 1);
}

#[test]
fn should_prove_absence_when_pages_hold_at_most_100_blocks() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    h.faults.push_back(Fault::CanisterErrorNotExecuted);
    ok(h.transfer(user(1), h.icrc1(5), None));
    for i in 0..800 {
        h.ledger.push_noise(T0 + i, None);
    }
    h.ledger.archived_upto = 500;
    for i in 0..150 {
        h.ledger
            .push_noise(T0 + cfg.ledger_tx_window_ns + 3 * HOUR + i, None);
    }
    h.rt.advance(cfg.ledger_tx_window_ns + 2 * cfg.ledger_permitted_drift_ns + HOUR);
    h.settle();
    let e = h.journal.get(0).unwrap();
    assert_eq!(e.status, Status::Failed, "{e:#?}");
    assert!(matches!(
        e.outcome,
        Some(Outcome::Failed {
            reason: FailureReason::NotFoundAfterWindow { .. },
            ..
        })
    ));
}

#[test]
fn should_page_the_legacy_endpoint_by_what_it_returns() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    h.ledger.legacy_only = true;
    for i in 0..250 {
        h.ledger.push_noise(T0 - 10 + i, None);
    }
    h.faults.push_back(Fault::LoseResponse);
    ok(h.transfer(user(1), h.icrc1(5), None));
    let block = h.ledger.blocks_for_entry(0)[0];
    for i in 0..300 {
        h.ledger
            .push_noise(T0 + cfg.ledger_tx_window_ns + 3 * HOUR + i, None);
    }
    h.rt.advance(cfg.ledger_tx_window_ns + 2 * cfg.ledger_permitted_drift_ns + HOUR);
    h.settle();
    let e = h.journal.get(0).unwrap();
    assert_eq!(
        (e.status, e.block_index()),
        (Status::Succeeded, Some(block)),
        "{e:#?}"
    );
}

/// Ledger without ICRC-3: the lookup falls back to `get_transactions`, whose `fee` is the fee
/// charged when none was sent. A transfer sent with `fee = None` must still be found there;
/// otherwise it would be "proven never executed" and retried: a double spend.
#[test]
fn legacy_lookup_finds_a_transfer_sent_without_fee() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    h.ledger.legacy_only = true;
    for i in 0..5 {
        h.ledger.push_noise(T0 - HOUR + i, None);
    }
    h.faults.push_back(Fault::LoseResponse);
    let spec = h.icrc1(5);
    assert!(matches!(spec, TransferSpec::Icrc1 { fee: None, .. }));
    let r = ok(h.transfer(user(1), spec, None));
    assert_eq!(r.status, Status::Unknown);
    let block = h.ledger.blocks_for_entry(0)[0];
    assert_eq!(h.ledger.blocks[block as usize].fee_sent, None);
    for i in 0..5 {
        h.ledger
            .push_noise(T0 + cfg.ledger_tx_window_ns + 3 * HOUR + i, None);
    }
    h.rt.advance(cfg.ledger_tx_window_ns + 2 * cfg.ledger_permitted_drift_ns + HOUR);
    h.settle();
    let e = h.journal.get(0).unwrap();
    assert_eq!(
        (e.status, e.block_index()),
        (Status::Succeeded, Some(block)),
        "{e:#?}"
    );
    assert_eq!(path_count(&h, RecoveryPath::MemoLookup), 1);
    assert!(h.calls.iter().any(|c| c.method == "get_transactions"));
    assert_eq!(
        h.ledger.blocks_for_entry(0).len(),
        1,
        "executed exactly once"
    );
}

/// The legacy path also proves non-execution: not found after the window → Failed.
#[test]
fn legacy_lookup_proves_absence_after_the_window() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    h.ledger.legacy_only = true;
    h.faults.push_back(Fault::CanisterErrorNotExecuted);
    ok(h.transfer(user(1), h.icrc1(5), None));
    for i in 0..5 {
        h.ledger.push_noise(T0 + i, Some(crate::memo::encode(0)));
    }
    h.ledger
        .push_noise(T0 + cfg.ledger_tx_window_ns + 3 * HOUR, None);
    h.rt.advance(cfg.ledger_tx_window_ns + 2 * cfg.ledger_permitted_drift_ns + HOUR);
    h.settle();
    let e = h.journal.get(0).unwrap();
    assert_eq!(e.status, Status::Failed, "{e:#?}");
    assert!(h.calls.iter().any(|c| c.method == "get_transactions"));
}

/// A block carrying this entry's memo, made from our own account, that does not match the
/// journaled transfer (here: a different amount) is contradicting evidence: manual review with
/// the reason, never "proven never executed".
#[test]
fn our_memo_from_our_account_without_full_match_goes_to_manual_review() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    h.faults.push_back(Fault::CanisterErrorNotExecuted);
    ok(h.transfer(user(1), h.icrc1(5), None));
    let me = Account::from(h.self_id);
    h.ledger.blocks.push(super::model_ledger::Block {
        time: T0 + SEC,
        from: me,
        to: Account::from(user(100)),
        spender: None,
        amount: 6,
        fee_sent: None,
        memo: Some(crate::memo::encode(0)),
        created_at_time: Some(T0),
    });
    h.ledger
        .push_noise(T0 + cfg.ledger_tx_window_ns + 3 * HOUR, None);
    // The ledger stays down for the whole window: only the blocks can decide.
    h.rt.advance(cfg.ledger_tx_window_ns + 2 * cfg.ledger_permitted_drift_ns + HOUR);
    h.settle();
    let e = h.journal.get(0).unwrap();
    assert_eq!(e.status, Status::ManualReview, "{e:#?}");
    let why = format!("{e:?}");
    assert!(why.contains("contradicting evidence"), "{why}");
}

#[test]
fn unreadable_archive_is_undecided_never_not_found() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    h.faults.push_back(Fault::CanisterErrorNotExecuted);
    ok(h.transfer(user(1), h.icrc1(5), None));
    for i in 0..5 {
        h.ledger.push_noise(T0 + i, None);
    }
    h.ledger
        .push_noise(T0 + cfg.ledger_tx_window_ns + 3 * HOUR, None);
    h.ledger.archived_upto = 3;
    h.ledger.archive_broken = true;
    h.rt.advance(cfg.ledger_tx_window_ns + 2 * HOUR);
    for _ in 0..3 {
        h.rt.advance(cfg.backoff_max_ns);
        h.tick();
        let e = h.journal.get(0).unwrap();
        assert_eq!(
            e.status,
            Status::Unknown,
            "must not decide while the archive is unreadable"
        );
        assert!(e.last_error.unwrap().contains("lookup undecided"));
    }
    h.ledger.archive_broken = false;
    h.settle();
    assert_eq!(h.journal.get(0).unwrap().status, Status::Failed);
}

#[test]
fn gives_up_into_manual_review_with_reason_after_max_attempts() {
    let cfg = Config {
        max_attempts: 3,
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    h.ledger.unavailable = 100;
    ok(h.transfer(user(1), h.icrc1(5), None));
    h.settle();
    let e = h.journal.get(0).unwrap();
    assert_eq!(e.status, Status::ManualReview);
    assert!(e
        .manual_reason
        .unwrap()
        .contains("gave up after 3 attempts"));
    assert_eq!(h.journal.metrics().manual_queue_depth, 1);
}

#[test]
fn lock_and_input_validation() {
    let cfg = Config {
        max_unresolved_per_owner: 2,
        max_key_bytes: 8,
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    let a = h
        .journal
        .journal_transfer(user(1), h.icrc1(5), Some("acct".into()))
        .unwrap();
    assert_eq!(
        h.journal
            .journal_transfer(user(2), h.icrc1(5), Some("acct".into())),
        Err(JournalError::LockHeld {
            lock_key: "acct".into(),
            entry_id: a
        })
    );
    assert_eq!(h.journal.lock_holder("acct"), Some(a));
    assert_eq!(
        h.journal
            .journal_transfer(Principal::anonymous(), h.icrc1(5), None),
        Err(JournalError::AnonymousCaller)
    );
    assert!(matches!(
        h.journal
            .journal_transfer(user(1), h.icrc1(5), Some("123456789".into())),
        Err(JournalError::PayloadTooLarge { .. })
    ));
    h.journal
        .journal_transfer(user(1), h.icrc1(5), None)
        .unwrap();
    assert!(matches!(
        h.journal.journal_transfer(user(1), h.icrc1(5), None),
        Err(JournalError::QuotaExceeded { .. })
    ));
    // Another owner is unaffected by user 1's quota.
    h.journal
        .journal_transfer(user(2), h.icrc1(5), None)
        .unwrap();
    // Ids are monotonic and rejected requests consume none.
    assert_eq!(h.journal.get(2).unwrap().owner, user(2));
    // Execute once only.
    let j = h.journal.clone();
    assert_eq!(ok(h.drive(j.execute(a))).status, Status::Succeeded);
    let j = h.journal.clone();
    assert!(matches!(
        h.drive(j.execute(a)).unwrap(),
        Err(JournalError::InvalidArgument { .. })
    ));
    assert_eq!(h.journal.lock_holder("acct"), None);
    // Lock released: a new flow with the key may start.
    h.journal
        .journal_transfer(user(3), h.icrc1(5), Some("acct".into()))
        .unwrap();
}

#[test]
fn never_executed_intent_is_run_by_recovery_after_its_lease() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    let id = h
        .journal
        .journal_transfer(user(1), h.icrc1(5), None)
        .unwrap();
    h.rt.advance(cfg.in_flight_lease_ns / 2);
    assert_eq!(
        h.tick().unwrap().examined,
        0,
        "not due while the flow may still run"
    );
    h.rt.advance(cfg.in_flight_lease_ns);
    h.tick();
    assert_eq!(h.journal.get(id).unwrap().status, Status::Succeeded);
    assert_eq!(h.ledger.blocks.len(), 1);
}

#[test]
fn reopen_keeps_everything_and_ids_are_never_reused() {
    let mut h = Harness::new(Config::default());
    h.faults.push_back(Fault::LoseResponse);
    ok(h.transfer(user(1), h.icrc1(5), Some("x".into())));
    ok(h.transfer(user(1), h.icrc1(6), None));
    let before = h.entries();
    let m_before = h.journal.metrics();
    let audit_before = h.journal.audit(0, 100);
    h.reopen();
    assert_eq!(h.entries(), before);
    assert_eq!(h.journal.metrics(), m_before);
    assert_eq!(h.journal.audit(0, 100), audit_before);
    assert_eq!(h.journal.lock_holder("x"), Some(0));
    let id = h
        .journal
        .journal_transfer(user(1), h.icrc1(7), None)
        .unwrap();
    assert_eq!(id, 2);
    h.settle();
    assert_eq!(h.journal.get(0).unwrap().status, Status::Succeeded);
}

#[test]
fn open_refuses_foreign_or_newer_layouts() {
    use ic_stable_structures::{Memory, VectorMemory};
    let raw = VectorMemory::default();
    let mems = memories(&raw);
    mems.meta.grow(1);
    mems.meta.write(0, b"NOPE");
    let rt = crate::FakeRuntime::new(user(9), T0);
    assert!(matches!(
        crate::Journal::open(rt.clone(), mems, Config::default()),
        Err(crate::OpenError::BadMagic)
    ));
    let raw = VectorMemory::default();
    let mems = memories(&raw);
    mems.meta.grow(1);
    let mut hdr = b"ICJR".to_vec();
    hdr.extend_from_slice(&99u32.to_le_bytes());
    mems.meta.write(0, &hdr);
    assert!(matches!(
        crate::Journal::open(rt.clone(), mems, Config::default()),
        Err(crate::OpenError::UnsupportedVersion { found: 99, .. })
    ));
    let bad = Config {
        max_attempts: 0,
        ..Config::default()
    };
    assert!(crate::Journal::open(rt, memories(&VectorMemory::default()), bad).is_err());
}

#[test]
fn should_scope_records_to_their_owner_and_close_timed_out_ones_in_the_owner_failed_list() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    let a = h
        .journal
        .record_intent(user(1), "payout".into(), vec![1; 10], Some("r".into()))
        .unwrap();
    assert!(matches!(
        h.journal
            .record_intent(user(1), "x".into(), vec![0; 5000], None),
        Err(JournalError::PayloadTooLarge { .. })
    ));
    assert_eq!(
        h.journal.get_owned(user(2), a),
        Err(JournalError::NotFound { entry_id: a })
    );
    assert_eq!(
        h.journal.report_result(
            user(2),
            a,
            ReportedResult::Failed {
                message: "x".into()
            }
        ),
        Err(JournalError::NotFound { entry_id: a })
    );
    assert_eq!(
        h.journal.report_result(
            user(1),
            a,
            ReportedResult::Succeeded {
                block_index: None,
                reply: vec![7]
            }
        ),
        Ok(Status::Succeeded)
    );
    // I4: a committed result does not change.
    assert!(matches!(
        h.journal.report_result(
            user(1),
            a,
            ReportedResult::Failed {
                message: "x".into()
            }
        ),
        Err(JournalError::AlreadyReported {
            status: Status::Succeeded,
            ..
        })
    ));
    let b = h
        .journal
        .record_intent(user(1), "other".into(), vec![], None)
        .unwrap();
    h.rt.advance(cfg.record_timeout_ns + 1);
    h.tick();
    // Not an operator's problem: the owner never reported; the record is closed in the owner's
    // failed list, and the operators' queue stays empty.
    let e = h.journal.get(b).unwrap();
    assert_eq!(e.status, Status::Failed);
    assert!(matches!(
        e.outcome,
        Some(Outcome::Failed {
            reason: FailureReason::RecordTimedOut {
                reported_unknown: false
            },
            ..
        })
    ));
    assert_eq!(h.journal.metrics().manual_queue_depth, 0);
}

#[test]
fn tracked_transfer_sent_by_owner_is_found_by_lookup() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    let owner = user(50);
    h.ledger.balances.insert(Account::from(owner), 1_000);
    let op = LedgerOp::Icrc1Transfer(TransferArg {
        from_subaccount: None,
        to: Account::from(user(3)),
        fee: None,
        created_at_time: None,
        memo: None,
        amount: Nat::from(5u8),
    });
    let (id, intent) = h
        .journal
        .track_transfer(owner, h.ledger.id, op.clone(), None)
        .unwrap();
    let LedgerOp::Icrc1Transfer(args) = &intent.op else {
        panic!()
    };
    assert!(args.memo.is_some() && args.created_at_time == Some(T0));
    // The owner sends it itself and loses the response.
    let block = h.ledger.transfer(owner, args, T0).unwrap();
    assert_eq!(
        h.journal
            .report_result(
                owner,
                id,
                ReportedResult::Unknown {
                    message: "timeout".into()
                }
            )
            .unwrap(),
        Status::Unknown
    );
    h.tick();
    let e = h.journal.get(id).unwrap();
    assert_eq!(e.status, Status::Succeeded);
    assert_eq!(Some(Nat::from(e.block_index().unwrap())), Some(block));
    assert!(
        !h.calls.iter().any(|c| c.method == "icrc1_transfer"),
        "never resends someone else's transfer"
    );
    // Setting memo/created_at_time ourselves is refused.
    let mut bad = op;
    if let LedgerOp::Icrc1Transfer(a) = &mut bad {
        a.created_at_time = Some(1);
    }
    assert!(matches!(
        h.journal.track_transfer(owner, h.ledger.id, bad, None),
        Err(JournalError::InvalidArgument { .. })
    ));
}

fn manual_entry(h: &mut Harness) -> EntryId {
    let cfg = h.journal.config();
    h.ledger.unavailable = cfg.max_attempts + 1;
    let r = ok(h.transfer(user(1), h.icrc1(5), None));
    h.settle();
    assert_eq!(
        h.journal.get(r.entry_id).unwrap().status,
        Status::ManualReview
    );
    r.entry_id
}

#[test]
fn operator_verbs_are_validated_and_audited() {
    let mut h = Harness::new(Config {
        max_attempts: 2,
        ..Config::default()
    });
    let id = manual_entry(&mut h);
    let admin = user(77);
    let req = |action, reason: &str| AdminRequest {
        entry_id: id,
        action,
        reason: reason.into(),
        acknowledge_risk: None,
    };
    assert_eq!(
        h.admin(admin, req(AdminAction::Cancel, "  ")),
        Err(JournalError::ReasonRequired)
    );
    assert_eq!(
        h.admin(Principal::anonymous(), req(AdminAction::Cancel, "r")),
        Err(JournalError::AnonymousCaller)
    );
    assert!(matches!(
        h.admin(
            admin,
            req(AdminAction::ResolveSucceeded { block_index: None }, "r")
        ),
        Err(JournalError::InvalidArgument { .. })
    ));
    assert!(matches!(
        h.admin(admin, req(AdminAction::Compensate, "r")),
        Err(JournalError::UnsupportedForKind { .. })
    ));
    // Retry: back to recovery, which now succeeds.
    let res = h
        .admin(admin, req(AdminAction::Retry, "ledger is back"))
        .unwrap();
    assert!(matches!(
        res,
        AdminResult::Applied {
            status: Status::Unknown,
            ..
        }
    ));
    h.settle();
    let e = h.journal.get(id).unwrap();
    assert_eq!(e.status, Status::Succeeded);
    // Verbs only act on the manual queue (I4).
    assert_eq!(
        h.admin(admin, req(AdminAction::ResolveFailed, "r")),
        Err(JournalError::NotInManualReview {
            entry_id: id,
            status: Status::Succeeded
        })
    );
    let audit = h.journal.audit(0, 100);
    let rec = audit
        .iter()
        .find(|r| matches!(r.event, AuditEvent::AdminAction { .. }))
        .expect("admin action audited");
    assert_eq!(rec.actor, Some(admin));
    assert_eq!(rec.entry_id, id);
    assert!(
        matches!(&rec.event, AuditEvent::AdminAction { reason, .. } if reason == "ledger is back")
    );
}

#[test]
fn m_of_n_approvals() {
    let mut h = Harness::new(Config {
        max_attempts: 1,
        approvals_required: 2,
        ..Config::default()
    });
    let id = manual_entry(&mut h);
    let req = |action| AdminRequest {
        entry_id: id,
        action,
        reason: "checked the ledger by hand".into(),
        acknowledge_risk: Some(true),
    };
    let r1 = h.admin(user(70), req(AdminAction::ResolveFailed)).unwrap();
    assert!(matches!(
        r1,
        AdminResult::ApprovalRecorded {
            have: 1,
            need: 2,
            ..
        }
    ));
    assert_eq!(
        h.admin(user(70), req(AdminAction::ResolveFailed)),
        Err(JournalError::AlreadyApproved { entry_id: id })
    );
    assert_eq!(h.journal.get(id).unwrap().status, Status::ManualReview);
    // A different action from the second admin does not complete the first one.
    let r = h.admin(user(71), req(AdminAction::Cancel)).unwrap();
    assert!(matches!(r, AdminResult::ApprovalRecorded { have: 1, .. }));
    let r = h.admin(user(70), req(AdminAction::Cancel)).unwrap();
    assert!(matches!(
        r,
        AdminResult::Applied {
            status: Status::Cancelled,
            ..
        }
    ));
}

fn counter_handlers(h: &Harness) -> Rc<RefCell<Vec<String>>> {
    let log = h.host_log.clone();
    for name in ["debit", "credit", "undo_debit", "fail"] {
        let l = log.clone();
        let n = name.to_string();
        let handler: LocalHandler = Rc::new(move |p: &[u8]| {
            if n == "fail" {
                return Err("nope".into());
            }
            l.borrow_mut().push(format!("{n}:{}", p.len()));
            Ok(vec![])
        });
        h.journal.register_local_handler(name, handler);
    }
    log
}

fn local(name: &str) -> StepAction {
    StepAction::Local(LocalAction {
        handler: name.into(),
        payload: vec![1],
    })
}

#[test]
fn saga_succeeds_step_by_step() {
    let mut h = Harness::new(Config::default());
    let log = counter_handlers(&h);
    let steps = vec![
        SagaStepSpec {
            action: local("debit"),
            compensation: Some(local("undo_debit")),
        },
        SagaStepSpec {
            action: StepAction::Transfer(h.icrc1(5)),
            compensation: None,
        },
    ];
    let id = h
        .journal
        .start_saga(user(1), steps, Some("s".into()))
        .unwrap();
    let j = h.journal.clone();
    let r = ok(h.drive(j.run_saga(id)));
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(*log.borrow(), vec!["debit:1"]);
    assert_eq!(h.ledger.blocks.len(), 1);
    assert_eq!(h.journal.lock_holder("s"), None);
}

/// A harness with the counting handlers and, started in the current message, the payout's
/// shape of saga under lock key "s": a local debit (compensated by `undo_debit`), then an
/// ICRC-1 transfer.
fn debit_then_transfer_saga() -> (Harness, Rc<RefCell<Vec<String>>>, EntryId) {
    let h = Harness::new(Config::default());
    let log = counter_handlers(&h);
    let steps = vec![
        SagaStepSpec {
            action: local("debit"),
            compensation: Some(local("undo_debit")),
        },
        SagaStepSpec {
            action: StepAction::Transfer(h.icrc1(5)),
            compensation: None,
        },
    ];
    let id = h
        .journal
        .start_saga(user(1), steps, Some("s".into()))
        .unwrap();
    (h, log, id)
}

fn methods(h: &Harness) -> Vec<&str> {
    h.calls.iter().map(|c| c.method.as_str()).collect()
}

#[test]
fn should_not_commit_the_steps_of_a_saga_begun_in_this_message_before_its_ledger_call() {
    let (mut h, log, id) = debit_then_transfer_saga();
    let j = h.journal.clone();
    let r = ok(h.drive(j.run_saga(id)));
    assert_eq!(r.status, Status::Succeeded);
    // The debit's attempt and result need no commit: a trap before the ledger call rolls back
    // the saga's creation with them. After the call's await the saga's end is committed for
    // the host's code that follows `run_saga`.
    assert_eq!(methods(&h), vec!["icrc1_transfer", "icjournal_commit"]);
    assert_eq!(*log.borrow(), vec!["debit:1"]);
    assert_eq!(h.ledger.blocks.len(), 1);
}

#[test]
fn should_run_a_saga_then_reply_with_the_ledger_call_as_its_only_call() {
    let (mut h, log, id) = debit_then_transfer_saga();
    let j = h.journal.clone();
    let r = ok(h.drive(j.run_saga_then_reply(id)));
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(methods(&h), vec!["icrc1_transfer"]);
    assert_eq!(*log.borrow(), vec!["debit:1"]);
    assert_eq!(h.journal.lock_holder("s"), None);
}

/// The stored saga (not the heap's view of it) at this moment.
fn stored_saga(h: &Harness, id: EntryId) -> SagaIntent {
    match h.journal.get(id).unwrap().intent {
        Intent::Saga(s) => s,
        other => panic!("not a saga: {other:?}"),
    }
}

#[test]
fn should_store_every_advance_of_a_sagas_cursor_before_its_await_and_at_its_end() {
    // Two local steps then a transfer: the first two advances are carried by the next step's
    // start, the last by the terminal status (one write each instead of two).
    let h = Harness::new(Config::default());
    let _log = counter_handlers(&h);
    let steps = vec![
        SagaStepSpec {
            action: local("debit"),
            compensation: Some(local("undo_debit")),
        },
        SagaStepSpec {
            action: local("credit"),
            compensation: None,
        },
        SagaStepSpec {
            action: StepAction::Transfer(h.icrc1(5)),
            compensation: None,
        },
    ];
    let id = h.journal.start_saga(user(1), steps, None).unwrap();
    let j = h.journal.clone();
    let mut run: std::pin::Pin<Box<dyn std::future::Future<Output = _>>> =
        Box::pin(j.run_saga_then_reply(id));
    assert!(crate::FakeRuntime::poll_once(&mut run).is_pending());
    // At the ledger call's await (where the message ends and its state is committed) the
    // stored saga points at the transfer, both local steps done and recorded.
    let s = stored_saga(&h, id);
    assert_eq!(s.cursor, 2, "stored cursor at the ledger call");
    for k in 0..2 {
        let step = s.steps[k].entry.expect("step entry recorded");
        assert_eq!(h.journal.get(step).unwrap().status, Status::Succeeded);
    }
    assert!(
        s.steps[2].entry.is_some(),
        "the transfer's entry is recorded"
    );
    let call = h.rt.pending_calls()[0].clone();
    let reply = Ok::<Nat, icrc_ledger_types::icrc1::transfer::TransferError>(Nat::from(7u8));
    h.rt.respond(call.id, Ok(candid::encode_one(reply).unwrap()));
    let r = match crate::FakeRuntime::poll_once(&mut run) {
        std::task::Poll::Ready(r) => r.expect("saga result"),
        std::task::Poll::Pending => panic!("the saga should end after the ledger's reply"),
    };
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(stored_saga(&h, id).cursor, 3, "stored cursor at the end");
}

#[test]
fn should_commit_the_local_step_of_a_saga_begun_in_an_earlier_message() {
    let (mut h, log, id) = debit_then_transfer_saga();
    // The saga's creation is committed: a trapping handler must find its attempt counted.
    h.rt.new_message();
    let j = h.journal.clone();
    let r = ok(h.drive(j.run_saga(id)));
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(
        methods(&h),
        vec![
            "icjournal_commit", // the debit's attempt
            "icjournal_commit", // the debit's result
            "icrc1_transfer",
            "icjournal_commit", // the saga's end
        ]
    );
    assert_eq!(*log.borrow(), vec!["debit:1"]);
}

#[test]
fn should_recover_a_saga_begun_in_this_message_when_its_last_callback_traps() {
    let (mut h, log, id) = debit_then_transfer_saga();
    let j = h.journal.clone();
    // The ledger executes; the callback journals the result and the saga's end, then traps:
    // all of it rolls back to the ledger call's await, where the debit is committed.
    h.faults.push_back(Fault::Trap);
    assert!(h.drive(j.run_saga_then_reply(id)).is_none());
    assert_eq!(h.ledger.blocks.len(), 1);
    let step = h.journal.get(id).unwrap();
    assert_eq!(step.status, Status::Pending);
    h.settle();
    assert_eq!(h.journal.get(id).unwrap().status, Status::Succeeded);
    assert_eq!(
        h.ledger.blocks.len(),
        1,
        "recovered by the deduplicated resend"
    );
    assert_eq!(
        *log.borrow(),
        vec!["debit:1"],
        "debited once, never credited back"
    );
    assert_eq!(h.journal.lock_holder("s"), None);
}

#[test]
fn saga_failure_compensates_completed_steps_in_reverse() {
    let mut h = Harness::new(Config::default());
    let log = counter_handlers(&h);
    let steps = vec![
        SagaStepSpec {
            action: local("debit"),
            compensation: Some(local("undo_debit")),
        },
        SagaStepSpec {
            action: StepAction::Transfer(h.icrc1(1)),
            compensation: Some(StepAction::Transfer(h.icrc1(2))),
        },
        SagaStepSpec {
            action: StepAction::Transfer(h.icrc1(u64::MAX)), // InsufficientFunds
            compensation: None,
        },
    ];
    let id = h.journal.start_saga(user(1), steps, None).unwrap();
    let j = h.journal.clone();
    let r = ok(h.drive(j.run_saga(id)));
    assert_eq!(r.status, Status::Compensated, "{:#?}", h.journal.get(id));
    assert_eq!(*log.borrow(), vec!["debit:1", "undo_debit:1"]);
    let amounts: Vec<u128> = h.ledger.blocks.iter().map(|b| b.amount).collect();
    assert_eq!(amounts, vec![1, 2], "step 2 then its compensation");
    assert!(matches!(
        r.outcome,
        Some(Outcome::Failed {
            reason: FailureReason::SagaStepFailed { step: 2, .. },
            ..
        })
    ));
}

#[test]
fn saga_survives_traps_and_reopen_at_every_boundary() {
    // Trap at boundary k (k-th call of the run), then reopen, then let recovery finish.
    for k in 0..8 {
        let mut h = Harness::new(Config::default());
        let log = counter_handlers(&h);
        let steps = vec![
            SagaStepSpec {
                action: local("debit"),
                compensation: Some(local("undo_debit")),
            },
            SagaStepSpec {
                action: StepAction::Transfer(h.icrc1(3)),
                compensation: None,
            },
            SagaStepSpec {
                action: local("credit"),
                compensation: None,
            },
        ];
        let id = h.journal.start_saga(user(1), steps, None).unwrap();
        for _ in 0..k {
            h.faults.push_back(Fault::Deliver);
        }
        h.faults.push_back(Fault::Trap);
        let j = h.journal.clone();
        let _ = h.drive(j.run_saga(id));
        h.reopen();
        counter_handlers_into(&h, &log);
        h.settle();
        let e = h.journal.get(id).unwrap();
        assert_eq!(e.status, Status::Succeeded, "k={k}: {e:#?}");
        assert_eq!(h.ledger.blocks.len(), 1, "k={k}");
        assert_eq!(
            *log.borrow(),
            vec!["debit:1", "credit:1"],
            "k={k}: each local step ran once"
        );
    }
}

fn counter_handlers_into(h: &Harness, log: &Rc<RefCell<Vec<String>>>) {
    for name in ["debit", "credit", "undo_debit"] {
        let l = log.clone();
        let n = name.to_string();
        h.journal.register_local_handler(
            name,
            Rc::new(move |p: &[u8]| {
                l.borrow_mut().push(format!("{n}:{}", p.len()));
                Ok(vec![])
            }),
        );
    }
}

#[test]
fn list_filters_and_pages_from_indexes() {
    let mut h = Harness::new(Config::default());
    for i in 0..5u8 {
        ok(h.transfer(user(i % 2), h.icrc1(5), None));
    }
    h.faults.push_back(Fault::LoseResponse);
    ok(h.transfer(user(1), h.icrc1(5), None));
    h.journal
        .record_intent(user(1), "r".into(), vec![], None)
        .unwrap();
    let f = |owner, status, kind| ListFilter {
        owner,
        status,
        kind,
        created_before: None,
    };
    let p = h.journal.list(
        &f(Some(user(1)), Some(Status::Succeeded), None),
        &PageRequest {
            start_after: None,
            limit: 10,
        },
    );
    assert_eq!(p.items.iter().map(|s| s.id).collect::<Vec<_>>(), vec![1, 3]);
    let p = h.journal.list(
        &f(None, Some(Status::Unknown), None),
        &PageRequest {
            start_after: None,
            limit: 10,
        },
    );
    assert_eq!(p.items.iter().map(|s| s.id).collect::<Vec<_>>(), vec![5]);
    let p = h.journal.list(
        &f(Some(user(1)), None, Some(Kind::Record)),
        &PageRequest {
            start_after: None,
            limit: 10,
        },
    );
    assert_eq!(p.items.iter().map(|s| s.id).collect::<Vec<_>>(), vec![6]);
    // Paging with a cursor.
    let p1 = h.journal.list(
        &f(None, None, None),
        &PageRequest {
            start_after: None,
            limit: 3,
        },
    );
    assert_eq!(p1.items.len(), 3);
    let p2 = h.journal.list(
        &f(None, None, None),
        &PageRequest {
            start_after: p1.next,
            limit: 3,
        },
    );
    assert_eq!(
        p2.items.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    let p3 = h.journal.list(
        &f(None, None, None),
        &PageRequest {
            start_after: p2.next,
            limit: 3,
        },
    );
    assert_eq!(p3.items.iter().map(|s| s.id).collect::<Vec<_>>(), vec![6]);
    assert_eq!(p3.next, None);
    // Age filter.
    h.rt.advance(HOUR);
    h.journal
        .record_intent(user(1), "late".into(), vec![], None)
        .unwrap();
    let p = h.journal.list(
        &ListFilter {
            created_before: Some(T0),
            ..Default::default()
        },
        &PageRequest {
            start_after: None,
            limit: 100,
        },
    );
    assert_eq!(p.items.len(), 7);
}

#[test]
fn metrics_and_prometheus() {
    let mut h = Harness::new(Config::default());
    ok(h.transfer(user(1), h.icrc1(5), None));
    h.faults.push_back(Fault::LoseResponse);
    ok(h.transfer(user(1), h.icrc1(5), None));
    h.rt.advance(10 * SEC);
    let m = h.journal.metrics();
    assert_eq!(m.entries_total, 2);
    let by = |s| {
        m.entries_by_status
            .iter()
            .find(|c| c.status == s)
            .unwrap()
            .count
    };
    assert_eq!((by(Status::Succeeded), by(Status::Unknown)), (1, 1));
    assert_eq!(m.attempts_total, 2);
    assert_eq!(m.oldest_unresolved_age_ns, Some(10 * SEC));
    assert!(m.stable_memory_bytes > 0);
    let text = String::from_utf8(crate::encode_prometheus(&m).unwrap()).unwrap();
    assert!(
        text.contains("icjournal_entries{status=\"unknown\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("icjournal_oldest_unresolved_age_seconds 10"),
        "{text}"
    );
    assert!(text.contains("icjournal_manual_queue_depth 0"));
}

/// The recovery timer is one serial interval timer, re-scheduled outside the ticks: a tick
/// dropped midway (a trap in its callback: the cleanup drops its future) stops nothing, and
/// ticks never overlap.
#[test]
fn should_keep_ticking_after_a_tick_is_dropped_midway_and_never_overlap() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    h.journal.start_recovery_timer();
    // The interval timer, plus a first tick at once.
    assert_eq!(h.rt.armed_timers(), 2);
    for t in h.rt.take_due_timers() {
        h.drive(t);
    }
    assert_eq!(h.rt.armed_timers(), 1);
    h.faults.push_back(Fault::LoseResponse);
    ok(h.transfer(user(1), h.icrc1(5), None));
    h.rt.advance(cfg.recovery_interval_ns);
    let mut runs = h.rt.take_due_timers();
    assert_eq!(runs.len(), 1);
    let mut t = runs.pop().unwrap();
    assert!(
        crate::FakeRuntime::poll_once(&mut t).is_pending(),
        "awaits the resend"
    );
    assert_eq!(h.rt.armed_timers(), 1, "the next run is already scheduled");
    // A tick started meanwhile (by hand, or a one-shot extra tick) does nothing.
    let j = h.journal.clone();
    let mut second: std::pin::Pin<Box<dyn std::future::Future<Output = crate::TickReport>>> =
        Box::pin(async move { j.recovery_tick().await });
    match crate::FakeRuntime::poll_once(&mut second) {
        std::task::Poll::Ready(r) => assert!(r.skipped_overlap),
        _ => panic!("overlapping tick must return at once"),
    }
    // The tick's callback traps: its future is dropped, its call never answered.
    for c in h.rt.pending_calls() {
        h.rt.forget_call(c.id);
    }
    drop(t);
    assert_eq!(h.journal.get(0).unwrap().status, Status::Unknown);
    h.rt.advance(cfg.recovery_interval_ns);
    let runs = h.rt.take_due_timers();
    assert_eq!(runs.len(), 1, "the next tick still comes");
    for t in runs {
        h.drive(t);
    }
    assert_eq!(h.journal.get(0).unwrap().status, Status::Succeeded);
    // A second start replaces the timer instead of adding one.
    h.journal.start_recovery_timer();
    for t in h.rt.take_due_timers() {
        h.drive(t);
    }
    assert_eq!(h.rt.armed_timers(), 1);
}

/// A tick whose lease ran out is replaced by a new one; when the old one ends late it must not
/// clear the new one's overlap marker, or a third tick would run beside the second.
#[test]
fn should_not_let_a_late_tick_clear_the_marker_of_the_tick_that_replaced_it() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    h.faults.push_back(Fault::LoseResponse);
    ok(h.transfer(user(1), h.icrc1(5), None));
    h.faults.push_back(Fault::LoseResponse);
    ok(h.transfer(user(2), h.icrc1(6), None));
    h.rt.advance(cfg.backoff(1));
    type Tick = std::pin::Pin<Box<dyn std::future::Future<Output = crate::TickReport>>>;
    let tick = |h: &Harness| -> Tick {
        let j = h.journal.clone();
        Box::pin(async move { j.recovery_tick().await })
    };
    let mut a = tick(&h);
    assert!(crate::FakeRuntime::poll_once(&mut a).is_pending());
    let a_calls: Vec<u64> = h.rt.pending_calls().iter().map(|c| c.id).collect();
    // A's end is lost for longer than its lease: B takes over.
    h.rt.advance(cfg.in_flight_lease_ns + 1);
    let mut b = tick(&h);
    assert!(crate::FakeRuntime::poll_once(&mut b).is_pending(), "B runs");
    // A ends late.
    for id in a_calls {
        h.rt.respond(
            id,
            Err(crate::CallError::NotSent {
                message: "late".into(),
            }),
        );
    }
    loop {
        match crate::FakeRuntime::poll_once(&mut a) {
            std::task::Poll::Ready(_) => break,
            std::task::Poll::Pending => {
                let own: Vec<_> =
                    h.rt.pending_calls()
                        .into_iter()
                        .filter(|c| c.callee == h.self_id)
                        .collect();
                assert!(!own.is_empty(), "A waits only on its commit");
                for c in own {
                    h.rt.respond(c.id, Ok(candid::encode_args(()).unwrap()));
                }
            }
        }
    }
    // B is still running: a third tick must not start.
    let mut c = tick(&h);
    match crate::FakeRuntime::poll_once(&mut c) {
        std::task::Poll::Ready(r) => assert!(r.skipped_overlap, "{r:?}"),
        _ => panic!("a third tick ran beside B"),
    }
}

/// The per-tick budget is measured over the tick's whole call context: the per-message counter
/// restarts at every await and would let a tick run its whole batch whatever the budget.
#[test]
fn should_stop_a_tick_at_its_instruction_budget() {
    let cfg = Config {
        recovery_instruction_budget: 1_000_000,
        ..Config::default()
    };
    let mut h = Harness::new(cfg.clone());
    for i in 0..10 {
        h.faults.push_back(Fault::LoseResponse);
        ok(h.transfer(user(i), h.icrc1(5), None));
    }
    h.rt.advance(cfg.backoff(1));
    // Each resend and each commit: 300k instructions of work in the tick's call context.
    h.rt.set_instructions_per_call(300_000);
    h.rt.reset_call_context();
    let r = h.tick().unwrap();
    assert!(r.budget_exhausted, "{r:?}");
    assert!((1..10).contains(&r.examined), "{r:?}");
    assert!(r.more_due, "{r:?}");
}

#[test]
fn time_may_stand_still_or_jump() {
    let mut h = Harness::new(Config::default());
    // Many flows at the very same timestamp: distinct ids, memos, and dedup identities.
    for _ in 0..5 {
        ok(h.transfer(user(1), h.icrc1(5), None));
    }
    assert_eq!(h.ledger.blocks.len(), 5);
    let memos: std::collections::BTreeSet<_> =
        h.ledger.blocks.iter().map(|b| b.memo.clone()).collect();
    assert_eq!(memos.len(), 5);
    for e in h.entries() {
        assert!(e.updated_at >= e.created_at);
    }
}
