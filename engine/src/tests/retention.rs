//! Retention: what is compacted, when, in what batches; what survives; how a compacted id is
//! answered; the idempotency key after compaction; memory under a steady load.

use super::harness::*;
use crate::query::audit_bytes;
use crate::retention::Skip;
use crate::types::*;
use crate::{Config, EntryOptions, IdempotencyKey, JournalError, LocalHandler, SagaStepSpec};
use std::rc::Rc;

const DAY: u64 = 24 * HOUR;

fn cfg(retention_days: u64, summary_days: Option<u64>) -> Config {
    Config {
        retention_ns: Some(retention_days * DAY),
        summary_retention_ns: summary_days.map(|d| d * DAY),
        ..Config::default()
    }
}

fn ok(r: Option<Result<FlowResult, JournalError>>) -> FlowResult {
    r.expect("flow did not trap").expect("flow accepted")
}

/// Let `hours` pass, one recovery tick (with its retention step) per hour.
fn run_hours(h: &mut Harness, hours: u64) {
    for _ in 0..hours {
        h.rt.advance(HOUR);
        h.tick().expect("a tick does not trap");
        // Compaction removes rows from every index: none may be left behind or go missing.
        let violations = h.journal.inner.store.borrow().index_violations();
        assert!(
            violations.is_empty(),
            "indexes after compaction: {violations:?}"
        );
    }
}

fn compacted(h: &Harness, s: Status) -> u64 {
    h.journal
        .metrics()
        .compacted_by_status
        .unwrap()
        .iter()
        .find(|c| c.status == s)
        .unwrap()
        .count
}

#[test]
fn should_compact_a_resolved_entry_only_after_the_retention_period_into_its_summary() {
    let mut h = Harness::new(cfg(2, None));
    let r = ok(h.transfer(user(1), h.icrc1(500), None));
    assert_eq!(r.status, Status::Succeeded);
    let failed = ok(h.transfer(user(1), h.icrc1(u64::MAX), None));
    assert_eq!(failed.status, Status::Failed);
    let totals = h.journal.inner.store.borrow().owner_totals(&user(1));
    assert_eq!(totals.entries, 2);
    run_hours(&mut h, 47);
    assert!(h.journal.get(r.entry_id).is_some(), "kept for the period");
    assert_eq!(compacted(&h, Status::Succeeded), 0);
    run_hours(&mut h, 2);
    assert!(h.journal.get(r.entry_id).is_none());
    assert!(h.journal.get(failed.entry_id).is_none());
    let s = h.journal.compacted(r.entry_id).expect("summary");
    assert_eq!(
        (s.owner, s.kind, s.status, s.block_index, s.ledger),
        (
            user(1),
            Kind::Icrc1Transfer,
            Status::Succeeded,
            Some(0),
            Some(h.ledger.id)
        )
    );
    assert_eq!(s.amount, Some(candid::Nat::from(500u64)));
    assert_eq!((s.created_at, s.resolved_at), (T0, T0));
    assert_eq!(
        h.journal.compacted(failed.entry_id).unwrap().status,
        Status::Failed
    );
    let m = h.journal.metrics();
    assert_eq!(compacted(&h, Status::Succeeded), 1);
    assert_eq!(compacted(&h, Status::Failed), 1);
    assert_eq!(m.summaries, Some(2));
    assert_eq!(m.entries_total, 2, "entries ever made, compacted included");
    let succeeded = m
        .entries_by_status
        .iter()
        .find(|c| c.status == Status::Succeeded);
    assert_eq!(
        succeeded.unwrap().count,
        0,
        "the gauge counts entries kept in full"
    );
    // The owner's totals (max_entries_per_owner) no longer count compacted entries.
    let totals = h.journal.inner.store.borrow().owner_totals(&user(1));
    assert_eq!(totals.entries, 0);
    let text = String::from_utf8(crate::encode_prometheus(&m).unwrap()).unwrap();
    assert!(text.contains("icjournal_compacted_total{status=\"succeeded\"} 1"));
    assert!(text.contains("icjournal_summaries 2"));
}

#[test]
fn should_never_compact_the_manual_queue_unresolved_entries_running_sagas_held_locks_or_open_windows(
) {
    let mut h = Harness::new(Config {
        max_attempts: 2,
        approvals_required: 2,
        record_timeout_ns: 365 * DAY,
        // A transfer that failed stays compactable only once its ledger window closed.
        ledger_tx_window_ns: 20 * DAY,
        ..cfg(2, Some(1))
    });
    let handler: LocalHandler = Rc::new(|_: &[u8]| Ok(vec![]));
    h.journal.register_local_handler("debit", handler);
    // Control: a record resolved at once, nothing holds it: compacted after the period.
    let plain = h
        .journal
        .record_intent(user(1), "done".into(), vec![], Some("released".into()))
        .unwrap();
    let reported = ReportedResult::Succeeded {
        block_index: None,
        reply: vec![],
    };
    assert_eq!(
        h.journal.report_result(user(1), plain, reported),
        Ok(Status::Succeeded)
    );
    // A transfer that failed at once, inside its (20-day) window.
    let failed = ok(h.transfer(user(1), h.icrc1(u64::MAX), None)).entry_id;
    // A record that holds its lock key (its owner never reports).
    let record = h
        .journal
        .record_intent(user(2), "r".into(), vec![], Some("held".into()))
        .unwrap();
    // The ledger stops answering: the next transfer ends in the manual queue, with an
    // approval pending (2 of N), and a saga whose first (local) step succeeded waits on its
    // second in the manual queue.
    h.ledger.unavailable = 1_000_000;
    let manual = ok(h.transfer(user(3), h.icrc1(2), None)).entry_id;
    let manual_plain = ok(h.transfer(user(5), h.icrc1(4), None)).entry_id;
    let steps = vec![
        SagaStepSpec {
            action: StepAction::Local(LocalAction {
                handler: "debit".into(),
                payload: vec![1],
            }),
            compensation: None,
        },
        SagaStepSpec {
            action: StepAction::Transfer(h.icrc1(3)),
            compensation: None,
        },
    ];
    let saga = h.journal.start_saga(user(4), steps, None).unwrap();
    let j = h.journal.clone();
    let _ = h.drive(j.run_saga(saga));
    run_hours(&mut h, 3);
    assert_eq!(h.journal.get(manual).unwrap().status, Status::ManualReview);
    let r = h.admin(
        user(50),
        AdminRequest {
            entry_id: manual,
            action: AdminAction::Retry,
            reason: "ledger back soon".into(),
            acknowledge_risk: None,
        },
    );
    assert!(
        matches!(r, Ok(AdminResult::ApprovalRecorded { .. })),
        "{r:?}"
    );
    let Intent::Saga(s) = h.journal.get(saga).unwrap().intent else {
        panic!()
    };
    let step0 = s.steps[0].entry.unwrap();
    assert_eq!(h.journal.get(step0).unwrap().status, Status::Succeeded);
    assert_eq!(h.journal.get(saga).unwrap().status, Status::ManualReview);

    run_hours(&mut h, 10 * 24);
    assert!(h.journal.get(plain).is_none(), "the control was compacted");
    for (id, what) in [
        (failed, "failed inside its window"),
        (record, "holds its lock"),
        (manual, "manual queue, approval pending"),
        (saga, "saga in the manual queue"),
        (step0, "resolved step of a running saga"),
    ] {
        assert!(
            h.journal.get(id).is_some(),
            "entry {id} ({what}) was compacted"
        );
    }
    assert_eq!(h.journal.lock_holder("held"), Some(record));
    assert!(h.journal.inner.store.borrow().approvals(manual).is_some());
    let now = h.rt.now_for_test();
    let cutoff = now - 2 * DAY;
    let skip = |id| {
        h.journal
            .skip_reason(&h.journal.get(id).unwrap(), cutoff, now)
    };
    assert_eq!(skip(step0), Some(Skip::SagaUnresolved));
    assert_eq!(skip(failed), Some(Skip::WindowOpen));
    assert_eq!(skip(manual), Some(Skip::Unresolved));
    assert_eq!(skip(record), Some(Skip::Unresolved));
    // Once its window closed (+ twice the drift), the failed transfer goes too; the manual
    // queue stays, with or without approvals, whatever its age.
    run_hours(&mut h, 11 * 24);
    assert!(h.journal.get(failed).is_none());
    for id in [step0, saga, manual, manual_plain, record] {
        assert!(h.journal.get(id).is_some(), "entry {id} was compacted");
    }
    assert_eq!(
        h.journal.get(manual_plain).unwrap().status,
        Status::ManualReview
    );
}

#[test]
fn should_compact_at_most_one_batch_per_tick() {
    let mut h = Harness::new(Config {
        retention_batch: 3,
        ..cfg(2, None)
    });
    for i in 0..10 {
        ok(h.transfer(user(1), h.icrc1(i + 1), None));
    }
    h.rt.advance(3 * DAY);
    let mut seen = vec![];
    for _ in 0..5 {
        h.tick().unwrap();
        seen.push(compacted(&h, Status::Succeeded));
    }
    assert_eq!(seen, vec![3, 6, 9, 10, 10]);
    let r = h.journal.retention_step();
    assert_eq!((r.compacted, r.pruned), (0, 0));
}

#[test]
fn should_not_pay_twice_when_an_idempotent_request_repeats_after_compaction_or_pruning() {
    let mut h = Harness::new(cfg(2, Some(5)));
    let spec = h.icrc1(700);
    let key = IdempotencyKey::for_request("req-1".into(), &spec);
    let opts = || EntryOptions {
        lock_key: Some("payout-1".into()),
        idempotency: Some(key.clone()),
    };
    let first = ok(h.transfer(user(1), spec.clone(), opts())).entry_id;
    assert_eq!(h.ledger.blocks.len(), 1);
    run_hours(&mut h, 3 * 24);
    assert!(h.journal.get(first).is_none(), "compacted");
    let calls = h.calls.len();
    let again = h.transfer(user(1), spec.clone(), opts()).unwrap();
    assert_eq!(
        again,
        Err(JournalError::DuplicateRequest { entry_id: first })
    );
    assert_eq!(h.calls.len(), calls, "nothing was sent");
    assert_eq!(h.ledger.blocks.len(), 1, "paid once");
    // The entry the key names is answered from its summary.
    match h.journal.get_owned(user(1), first) {
        Err(JournalError::Compacted { entry }) => {
            assert_eq!(
                (entry.status, entry.block_index),
                (Status::Succeeded, Some(0))
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.journal
            .find_by_key(user(1), &EntryKey::IdempotencyKey("req-1".into())),
        Some(first)
    );
    // A different request under the used key is still refused.
    let other = h.transfer(
        user(1),
        h.icrc1(701),
        EntryOptions {
            lock_key: None,
            idempotency: Some(IdempotencyKey::for_request("req-1".into(), &h.icrc1(701))),
        },
    );
    assert_eq!(
        other.unwrap(),
        Err(JournalError::IdempotencyKeyReused { entry_id: first })
    );
    // After the second period the summary is gone; the key still stops a second payment.
    run_hours(&mut h, 6 * 24);
    assert_eq!(h.journal.compacted(first), None);
    assert_eq!(h.journal.metrics().summaries_pruned, Some(1));
    let again = h.transfer(user(1), spec, opts()).unwrap();
    assert_eq!(
        again,
        Err(JournalError::DuplicateRequest { entry_id: first })
    );
    assert_eq!(h.ledger.blocks.len(), 1, "still paid once");
    assert_eq!(
        h.journal.get_owned(user(1), first),
        Err(JournalError::Pruned { entry_id: first })
    );
}

#[test]
fn should_answer_for_a_compacted_id_with_its_summary_never_as_not_found() {
    let mut h = Harness::new(cfg(2, None));
    let id = ok(h.transfer(user(1), h.icrc1(5), None)).entry_id;
    run_hours(&mut h, 3 * 24);
    let summary = h.journal.compacted(id).expect("compacted");
    assert_eq!(
        h.journal.lookup(id),
        Err(JournalError::Compacted {
            entry: summary.clone()
        })
    );
    assert_eq!(
        h.journal.get_owned(user(1), id),
        Err(JournalError::Compacted { entry: summary })
    );
    // Another owner learns nothing (I7); an id never given out is not found.
    assert_eq!(
        h.journal.get_owned(user(2), id),
        Err(JournalError::NotFound { entry_id: id })
    );
    assert_eq!(
        h.journal.lookup(id + 1),
        Err(JournalError::NotFound { entry_id: id + 1 })
    );
    // An operator verb on it says what happened to it.
    let r = h.admin(
        user(50),
        AdminRequest {
            entry_id: id,
            action: AdminAction::Cancel,
            reason: "x".into(),
            acknowledge_risk: None,
        },
    );
    assert!(matches!(r, Err(JournalError::Compacted { .. })), "{r:?}");
    // Listings show entries kept in full only.
    assert!(h.entries().is_empty());
}

#[test]
fn should_prune_summaries_and_their_block_claims_after_the_second_period() {
    let mut h = Harness::new(cfg(2, Some(3)));
    let id = ok(h.transfer(user(1), h.icrc1(5), None)).entry_id;
    run_hours(&mut h, 3 * 24);
    assert!(h.journal.compacted(id).is_some());
    let ledger = h.ledger.id;
    let claim = |h: &Harness| h.journal.inner.store.borrow().claimant(ledger, 0);
    // Compacted at hour 48, pruned 3 days later.
    assert_eq!(claim(&h), Some(id), "the claim stays with the summary");
    run_hours(&mut h, 2 * 24 - 1);
    assert!(
        h.journal.compacted(id).is_some(),
        "kept for the second period"
    );
    run_hours(&mut h, 1);
    assert_eq!(h.journal.compacted(id), None);
    assert_eq!(claim(&h), None);
    assert_eq!(h.journal.metrics().summaries, Some(0));
    assert_eq!(
        h.journal.lookup(id),
        Err(JournalError::Pruned { entry_id: id })
    );
}

/// `per_day` resolved transfers a day for `days` days; returns the memory sizes by offset at
/// the end of each day.
fn steady_load(retention: Option<Config>, per_day: u64, days: u64) -> Vec<Vec<u64>> {
    let mut h = Harness::new(retention.unwrap_or_default());
    let mut sizes = vec![];
    for _ in 0..days {
        for i in 0..per_day {
            // One lock key per payee, reused: lock key records stay bounded.
            let opts = EntryOptions::from(Some(format!("payee-{}", i % 10)));
            ok(h.transfer(user(1), h.icrc1(1), opts));
            h.rt.advance(DAY / per_day);
            if i % (per_day / 24).max(1) == 0 {
                h.tick().unwrap();
            }
        }
        sizes.push(h.journal.memory_bytes());
    }
    sizes
}

fn without_audit(sizes: &[u64]) -> u64 {
    sizes.iter().sum::<u64>() - audit_bytes(sizes)
}

#[test]
fn should_stop_growing_stable_memory_under_steady_load_with_retention() {
    let (per_day, days) = (500, 20);
    let on = steady_load(Some(cfg(2, Some(3))), per_day, days);
    let off = steady_load(None, per_day, days);
    let journal_on: Vec<u64> = on.iter().map(|s| without_audit(s)).collect();
    let journal_off: Vec<u64> = off.iter().map(|s| without_audit(s)).collect();
    println!("journal memories (audit log excluded), bytes at the end of each day:");
    println!("  retention 2 d + 3 d: {journal_on:?}");
    println!("  no retention:        {journal_off:?}");
    // Steady state once the first summaries are pruned (day 2 + 3 + a day of slack) and the
    // entries' slots have taken their second page (id 4,096, on day 9: the entries retention
    // keeps span two pages from then on).
    let settled = &journal_on[9..];
    assert!(
        settled.iter().all(|b| *b == settled[0]),
        "memory kept growing with retention on: {journal_on:?}"
    );
    // At least 100 bytes for each entry added after day 7 (a resolved entry takes several
    // hundred): the flat line above is retention's doing, not a journal too small to grow.
    let added = (days - 7) * per_day;
    assert!(
        journal_off[days as usize - 1] > journal_off[6] + 100 * added,
        "without retention memory should grow: {journal_off:?}"
    );
    // The audit log is append-only: it grows with every entry either way.
    let audit_on: Vec<u64> = on.iter().map(|s| audit_bytes(s)).collect();
    let grown = audit_on[days as usize - 1] - audit_on[6];
    let entries = per_day * (days - 7);
    println!(
        "audit log: {} bytes after day 7, {} after day {days}: {:.0} bytes per resolved entry",
        audit_on[6],
        audit_on[days as usize - 1],
        grown as f64 / entries as f64
    );
    assert!(grown > 0);
}
