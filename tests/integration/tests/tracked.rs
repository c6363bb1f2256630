//! Tracked transfers: the caller sends the transfer itself with the memo and
//! `created_at_time` the service gave it; the service recovers unreported outcomes by memo
//! lookup (never by resend: it is not the sender).

use candid::Nat;
use icjournal::{EvidenceSource, FailureReason, LedgerOp, Outcome, ReportedResult, Status};
use icjournal_client::{ReportResultArgs, TrackTransferArgs, TrackedTransfer};
use icjournal_tests::*;
use icrc_ledger_types::icrc1::transfer::TransferArg;

const AMOUNT: u64 = 2_000_000;

fn track(s: &Setup, who: candid::Principal, amount: u64) -> TrackedTransfer {
    run(s.client(who).track_transfer(TrackTransferArgs {
        ledger: s.ledger,
        op: LedgerOp::Icrc1Transfer(TransferArg {
            from_subaccount: None,
            to: acct(user(9)),
            fee: Some(Nat::from(FEE)),
            created_at_time: None,
            memo: None,
            amount: Nat::from(amount),
        }),
        lock_key: None,
        idempotency_key: None,
    }))
    .expect("track_transfer")
}

fn send(s: &Setup, who: candid::Principal, t: &TrackedTransfer) -> u64 {
    let LedgerOp::Icrc1Transfer(arg) = &t.op else {
        panic!("icrc1 expected")
    };
    u64::try_from(
        s.ledger_transfer(who, arg.clone())
            .expect("ledger transfer")
            .0,
    )
    .unwrap()
}

fn report(s: &Setup, who: candid::Principal, id: u64, result: ReportedResult) -> Status {
    run(s.client(who).report_result(ReportResultArgs {
        entry_id: id,
        result,
    }))
    .expect("report_result")
}

fn evidence(e: &icjournal::Entry) -> Option<EvidenceSource> {
    match &e.outcome {
        Some(Outcome::Succeeded { source, .. }) | Some(Outcome::Failed { source, .. }) => {
            Some(*source)
        }
        None => None,
    }
}

#[test]
fn should_track_a_transfer_sent_and_reported_by_the_caller() {
    let s = Setup::new();
    let t = track(&s, user(1), AMOUNT);
    assert_eq!(icjournal::memo::decode(&t.memo), Some(t.entry_id));
    assert!(t.created_at_time > 0);
    let block = send(&s, user(1), &t);
    let st = report(
        &s,
        user(1),
        t.entry_id,
        ReportedResult::Succeeded {
            block_index: Some(block),
            reply: vec![],
        },
    );
    // The owner's block is a claim until the service has read it from the ledger.
    assert_eq!(st, Status::Unknown);
    s.recovery_rounds(2);
    let e = run(s.client(user(1)).get_entry(t.entry_id)).unwrap();
    assert_eq!(
        (e.status, e.block_index()),
        (Status::Succeeded, Some(block))
    );
    assert_eq!(evidence(&e), Some(EvidenceSource::MemoLookup));
    // Another caller cannot see or report it (I7).
    assert!(run(s.client(user(2)).get_entry(t.entry_id)).is_err());
    let r = run(s.client(user(2)).report_result(ReportResultArgs {
        entry_id: t.entry_id,
        result: ReportedResult::Failed {
            message: "hijack".into(),
        },
    }));
    assert!(r.is_err());
    assert_eq!(s.service_entry(t.entry_id).status, Status::Succeeded);
}

#[test]
fn should_record_a_reported_ledger_failure() {
    let s = Setup::new();
    let t = track(&s, user(1), 10 * USER_FUNDS);
    let LedgerOp::Icrc1Transfer(arg) = &t.op else {
        unreachable!()
    };
    let err = s.ledger_transfer(user(1), arg.clone()).unwrap_err();
    let st = report(
        &s,
        user(1),
        t.entry_id,
        ReportedResult::Failed {
            message: format!("{err:?}"),
        },
    );
    // The owner's word is not proof that nothing executed: the service verifies it on the
    // ledger (absence is proven once the dedup window has passed).
    assert_eq!(st, Status::Unknown);
    s.advance_secs(25 * 3600);
    s.simple_transfer(user(3), acct(user(4)), 1);
    s.settle(6 * 3600);
    let e = s.service_entry(t.entry_id);
    assert_eq!(e.status, Status::Failed, "{e:?}");
}

#[test]
fn should_find_unreported_transfers_by_memo_lookup() {
    let s = Setup::new();
    // Sent, outcome unknown to the caller (its call timed out): reported Unknown.
    let a = track(&s, user(1), AMOUNT);
    let block_a = send(&s, user(1), &a);
    report(
        &s,
        user(1),
        a.entry_id,
        ReportedResult::Unknown {
            message: "bounded wait timed out".into(),
        },
    );
    // Sent, never reported at all (the caller crashed).
    let b = track(&s, user(2), AMOUNT);
    let block_b = send(&s, user(2), &b);
    s.settle(3 * 3600);
    let ea = s.service_entry(a.entry_id);
    assert_eq!(ea.status, Status::Succeeded, "{ea:?}");
    assert_eq!(ea.block_index(), Some(block_a));
    assert_eq!(evidence(&ea), Some(EvidenceSource::MemoLookup));
    let eb = s.service_entry(b.entry_id);
    assert_eq!(eb.status, Status::Succeeded, "{eb:?}");
    assert_eq!(eb.block_index(), Some(block_b));
}

#[test]
fn should_prove_absence_after_the_window_and_ignore_forged_memos() {
    let s = Setup::options().archive(10_000, 100).build();
    let never = track(&s, user(1), AMOUNT);
    report(
        &s,
        user(1),
        never.entry_id,
        ReportedResult::Unknown {
            message: "crashed before sending".into(),
        },
    );
    // Someone else sends a transfer carrying the same memo and created_at_time, but a different
    // amount: the memo alone proves nothing.
    let forged = track(&s, user(2), AMOUNT);
    let LedgerOp::Icrc1Transfer(mut arg) = forged.op.clone() else {
        unreachable!()
    };
    arg.amount = Nat::from(AMOUNT + 1);
    s.ledger_transfer(user(2), arg).expect("forged transfer");
    report(
        &s,
        user(2),
        forged.entry_id,
        ReportedResult::Unknown {
            message: "?".into(),
        },
    );
    s.archive_now();
    s.advance_secs(25 * 3600);
    s.simple_transfer(user(3), acct(user(4)), 1);
    s.settle(6 * 3600);
    for id in [never.entry_id, forged.entry_id] {
        let e = s.service_entry(id);
        assert_eq!(e.status, Status::Failed, "{e:?}");
        assert!(
            matches!(
                &e.outcome,
                Some(Outcome::Failed {
                    reason: FailureReason::NotFoundAfterWindow { .. },
                    ..
                })
            ),
            "{e:?}"
        );
    }
}

#[test]
fn should_survive_an_upgrade_and_go_to_manual_review_when_the_archive_is_unreadable() {
    let s = Setup::options()
        .archive(10_000, 100)
        .max_attempts(2)
        .build();
    let a = track(&s, user(1), AMOUNT);
    let block = send(&s, user(1), &a);
    report(
        &s,
        user(1),
        a.entry_id,
        ReportedResult::Unknown {
            message: "timeout".into(),
        },
    );
    run(s.admin_client().pause_recovery("maintenance".into())).unwrap();
    s.stop_upgrade_start_service();
    // The pause survives the upgrade (persisted config).
    assert!(run(s.admin_client().get_config()).unwrap().recovery_paused);
    s.archive_now();
    s.set_archive_unavailable(true);
    s.advance_secs(25 * 3600);
    s.simple_transfer(user(3), acct(user(4)), 1);
    run(s.admin_client().resume_recovery("maintenance over".into())).unwrap();
    s.settle(6 * 3600);
    // The block is in an archive that cannot be read: undecided, never "not found".
    let e = s.service_entry(a.entry_id);
    assert_eq!(e.status, Status::ManualReview, "{e:?}");
    // The archive is back: the operator retries and recovery finds the block.
    s.set_archive_unavailable(false);
    run(s.admin_client().admin_act(icjournal::AdminRequest {
        entry_id: a.entry_id,
        action: icjournal::AdminAction::Retry,
        reason: "archive readable again".into(),
        acknowledge_risk: None,
    }))
    .unwrap();
    s.settle(3600);
    let e = s.service_entry(a.entry_id);
    assert_eq!(e.status, Status::Succeeded, "{e:?}");
    assert_eq!(e.block_index(), Some(block));
}
