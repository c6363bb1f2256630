//! Concurrent recovery inside a tick: a batch's transfers are resent together, committed once,
//! bounded per ledger, and a trap in any message of the batch costs time, never correctness.

use super::harness::*;
use crate::recovery::batch::MAX_RECOVERY_CALLS_PER_LEDGER;
use crate::types::*;
use crate::{Config, FakeRuntime, TickReport};
use std::future::Future;
use std::pin::Pin;

type Tick = Pin<Box<dyn Future<Output = TickReport>>>;

fn tick_future(h: &Harness) -> Tick {
    let j = h.journal.clone();
    Box::pin(async move { j.recovery_tick().await })
}

/// `n` transfers whose outcome is unknown, from `owners` callers: every other one executed on
/// the ledger (its response was lost), the others never executed (the callee was stopped).
fn unknown_transfers(h: &mut Harness, n: u8, owners: u8) -> Vec<EntryId> {
    (0..n)
        .map(|i| {
            h.faults.push_back(if i % 2 == 0 {
                Fault::LoseResponse
            } else {
                Fault::CanisterErrorNotExecuted
            });
            let r = h
                .transfer(user(i % owners), h.icrc1(5 + u64::from(i)), None)
                .unwrap()
                .unwrap();
            assert_eq!(r.status, Status::Unknown);
            r.entry_id
        })
        .collect()
}

fn assert_one_block_each(h: &Harness, ids: &[EntryId]) {
    for &id in ids {
        let e = h.journal.get(id).unwrap();
        assert_eq!(e.status, Status::Succeeded, "entry {id}: {e:?}");
        let blocks = h.ledger.blocks_for_entry(id);
        assert_eq!(blocks.len(), 1, "entry {id} has blocks {blocks:?}");
        match e.outcome {
            Some(Outcome::Succeeded { block_index, .. }) => {
                assert_eq!(block_index, Some(blocks[0]), "entry {id}")
            }
            other => panic!("entry {id}: {other:?}"),
        }
    }
    assert_eq!(h.ledger.blocks.len(), ids.len(), "no other block");
}

/// All of a batch's resends are in flight at once, the batch commits once, and every entry
/// ends with exactly its one block.
#[test]
fn should_resend_a_batch_concurrently_and_commit_it_once() {
    let cfg = Config {
        recovery_batch: 30,
        ..Config::default()
    };
    let mut h = Harness::new(cfg.clone());
    let ids = unknown_transfers(&mut h, 30, 7);
    h.rt.advance(cfg.backoff(1));
    let calls_before = h.calls.len();
    let mut t = tick_future(&h);
    assert!(FakeRuntime::poll_once(&mut t).is_pending());
    let in_flight = h.rt.pending_calls();
    assert_eq!(
        in_flight.len(),
        30,
        "every resend starts in the tick's first message"
    );
    assert!(in_flight.iter().all(|c| c.callee == h.ledger.id));
    for &id in &ids {
        assert_eq!(h.journal.get(id).unwrap().status, Status::Recovering);
    }
    // Ticks never overlap, also while a batch is in flight.
    match FakeRuntime::poll_once(&mut tick_future(&h)) {
        std::task::Poll::Ready(r) => assert!(r.skipped_overlap, "{r:?}"),
        _ => panic!("a second tick ran beside the first"),
    }
    let r = h.drive(t).expect("no trap");
    assert_eq!(
        (r.examined, r.resolved, r.more_due),
        (30, 30, false),
        "{r:?}"
    );
    let commits = h.calls[calls_before..]
        .iter()
        .filter(|c| c.callee == h.self_id)
        .count();
    assert_eq!(commits, 1, "one commit for the batch");
    assert_one_block_each(&h, &ids);
}

/// A trap in any callback of a concurrent batch (a resend's reply, the message that holds a
/// pass's last result and the next pass's starts, or the tick's commit) drops the whole tick;
/// every entry must still end with exactly its one block, soon (well before the in-flight
/// lease would release a forgotten claim), and the tick marker must not stay behind.
#[test]
fn should_resolve_each_entry_exactly_once_whatever_message_of_a_concurrent_batch_traps() {
    let n = 8u8;
    // One pass of 8; passes of 3, 3 and 2 with no commit between them.
    for batch in [100, 3] {
        let cfg = Config {
            recovery_batch: batch,
            ..Config::default()
        };
        // n resend replies, then the tick's commit's reply.
        for trap_at in 0..=usize::from(n) {
            trap_once_then_recover(&cfg, n, trap_at);
        }
    }
}

fn trap_once_then_recover(cfg: &Config, n: u8, trap_at: usize) {
    let b = cfg.recovery_batch;
    {
        let mut h = Harness::new(cfg.clone());
        let ids = unknown_transfers(&mut h, n, 3);
        h.rt.advance(cfg.backoff(1));
        for _ in 0..trap_at {
            h.faults.push_back(Fault::Deliver);
        }
        h.faults.push_back(Fault::Trap);
        assert!(
            h.tick().is_none(),
            "batch {b}, trap at reply {trap_at}: the tick trapped"
        );
        let started = h.rt.now_for_test();
        let mut ticks = 0;
        while h
            .entries()
            .iter()
            .any(|e| e.status.is_unresolved() && e.status != Status::ManualReview)
        {
            ticks += 1;
            assert!(
                ticks <= 10,
                "batch {b}, trap at reply {trap_at}: still unresolved: {:?}",
                h.entries()
                    .iter()
                    .map(|e| (e.id, e.status, e.next_attempt_at, e.last_error.clone()))
                    .collect::<Vec<_>>()
            );
            h.rt.advance(60 * SEC);
            let r = h.tick().expect("no fault queued");
            assert!(
                !r.skipped_overlap,
                "batch {b}, trap at reply {trap_at}: marker left"
            );
        }
        assert!(h.rt.now_for_test() - started < cfg.in_flight_lease_ns);
        assert_one_block_each(&h, &ids);
    }
}

/// A tick keeps at most `MAX_RECOVERY_CALLS_PER_LEDGER` calls to one ledger in flight (the
/// IC's per-pair queue is shared with new flows); the rest of a larger batch waits for the
/// tick's next pass, which starts once the first pass has committed.
#[test]
fn should_keep_a_ticks_calls_to_one_ledger_within_the_cap() {
    let n = MAX_RECOVERY_CALLS_PER_LEDGER + 20;
    let cfg = Config {
        recovery_batch: n as u32,
        ..Config::default()
    };
    let mut h = Harness::new(cfg.clone());
    let ids = unknown_transfers(&mut h, n as u8, 10);
    h.rt.advance(cfg.backoff(1));
    let mut t = tick_future(&h);
    assert!(FakeRuntime::poll_once(&mut t).is_pending());
    assert_eq!(h.rt.pending_calls().len(), MAX_RECOVERY_CALLS_PER_LEDGER);
    h.max_in_flight = 0;
    let r = h.drive(t).expect("no trap");
    assert_eq!((r.examined as usize, r.more_due), (n, false), "{r:?}");
    assert_eq!(h.max_in_flight, MAX_RECOVERY_CALLS_PER_LEDGER);
    assert_one_block_each(&h, &ids);
}

/// More due than a pass takes: the tick goes on with the next pass at once while its budget
/// lasts; a tick that stops at its budget with more due is followed by a one-shot tick at
/// once; once nothing more is due only the interval timer is left.
#[test]
fn should_chain_ticks_at_once_while_more_is_due_then_fall_back_to_the_interval() {
    let cfg = Config {
        recovery_batch: 4,
        // Each call costs 100k below: a pass of 4 (400k) uses up a tick.
        recovery_instruction_budget: 350_000,
        ..Config::default()
    };
    let mut h = Harness::new(cfg.clone());
    let ids = unknown_transfers(&mut h, 10, 10);
    h.rt.advance(cfg.backoff(1));
    h.rt.set_instructions_per_call(100_000);
    h.journal.start_recovery_timer();
    let mut chained = 0;
    loop {
        let now = h.rt.now_for_test();
        let runs = h.rt.take_due_timers();
        if runs.is_empty() {
            break;
        }
        for t in runs {
            h.drive(t).expect("no trap");
        }
        if h.rt.armed_timers() == 2 {
            assert_eq!(
                h.rt.next_timer_at(),
                Some(now),
                "the next tick comes at once"
            );
            chained += 1;
        }
    }
    // 10 due, 4 per tick: the first tick chains to a second, which chains to a third.
    assert_eq!(chained, 2);
    assert_eq!(h.rt.armed_timers(), 1, "back to the interval timer alone");
    assert_eq!(
        h.rt.next_timer_at(),
        Some(h.rt.now_for_test() + cfg.recovery_interval_ns)
    );
    assert_one_block_each(&h, &ids);

    // With budget to spare, one tick takes every pass.
    let cfg = Config {
        recovery_batch: 4,
        ..Config::default()
    };
    let mut h = Harness::new(cfg.clone());
    let ids = unknown_transfers(&mut h, 10, 10);
    h.rt.advance(cfg.backoff(1));
    let r = h.tick().unwrap();
    assert_eq!(
        (r.examined, r.resolved, r.more_due),
        (10, 10, false),
        "{r:?}"
    );
    assert_one_block_each(&h, &ids);
}
