//! Memo lookup liveness: it decides against ledgers as they really are (short pages, many
//! blocks, no ICRC-3, no block access at all) without wasting calls or attempts.

use super::harness::*;
use crate::types::*;
use crate::Config;

const DAY: u64 = 24 * HOUR;

fn unknown_then_past_window(h: &mut Harness, cfg: &Config, noise_before: u64) -> EntryId {
    for i in 0..noise_before {
        h.ledger.push_noise(T0 - 100 + i, None);
    }
    h.faults.push_back(Fault::LoseResponse);
    let r = h
        .transfer(user(1), h.icrc1(5), None)
        .expect("no trap")
        .expect("accepted");
    assert_eq!(r.status, Status::Unknown);
    h.ledger
        .push_noise(T0 + cfg.ledger_tx_window_ns + 3 * HOUR, None);
    r.entry_id
}

fn count(h: &Harness, method: &str) -> usize {
    h.calls.iter().filter(|c| c.method == method).count()
}

/// An ICRC-1-only ledger: past the window the resend answers `TooOld` and there is no block
/// endpoint to look the transfer up. That will never change: an operator is needed at once,
/// told why — not after `max_attempts` rounds of calls that cannot succeed.
#[test]
fn should_send_a_transfer_to_manual_review_at_once_when_the_ledger_has_no_block_access() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    h.ledger.no_block_access = true;
    let id = unknown_then_past_window(&mut h, &cfg, 3);
    h.rt.advance(cfg.ledger_tx_window_ns + 2 * cfg.ledger_permitted_drift_ns + HOUR);
    h.settle();
    let e = h.journal.get(id).unwrap();
    assert_eq!(e.status, Status::ManualReview, "{e:#?}");
    assert_eq!(e.attempts, 2, "first send + one recovery attempt: {e:#?}");
    let reason = e.manual_reason.unwrap();
    assert!(reason.contains("no way to read its blocks"), "{reason}");
    assert!(reason.contains("TooOld"), "{reason}");
    assert_eq!(count(&h, "icrc3_get_blocks"), 1);
    assert_eq!(count(&h, "get_transactions"), 1);
}

/// A ledger without ICRC-3 is learned once: later pages go straight to `get_transactions`.
#[test]
fn should_not_pay_a_failed_icrc3_call_on_every_page_of_a_legacy_ledger() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    h.ledger.legacy_only = true;
    let id = unknown_then_past_window(&mut h, &cfg, 450);
    h.rt.advance(cfg.ledger_tx_window_ns + 2 * cfg.ledger_permitted_drift_ns + HOUR);
    h.settle();
    assert_eq!(h.journal.get(id).unwrap().status, Status::Succeeded);
    assert!(count(&h, "get_transactions") > 5);
    assert_eq!(count(&h, "icrc3_get_blocks"), 1);
}

/// The search for the first block of a range is shared: a second entry from the same time
/// needs far fewer calls to find where to start than the first did.
#[test]
fn should_reuse_what_one_lookup_learned_about_block_times_for_the_next() {
    let cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    for i in 0..5_000 {
        h.ledger
            .push_noise(T0 - 5 * DAY + i * 60 * 1_000_000_000, None);
    }
    h.faults.push_back(Fault::LoseResponse);
    let a = h.transfer(user(1), h.icrc1(5), None).unwrap().unwrap();
    h.faults.push_back(Fault::LoseResponse);
    let b = h.transfer(user(2), h.icrc1(6), None).unwrap().unwrap();
    assert_eq!((a.status, b.status), (Status::Unknown, Status::Unknown));
    h.ledger
        .push_noise(T0 + cfg.ledger_tx_window_ns + 3 * HOUR, None);
    h.rt.advance(cfg.ledger_tx_window_ns + 2 * cfg.ledger_permitted_drift_ns + HOUR);
    let before = count(&h, "icrc3_get_blocks");
    // One entry per tick, so the calls of each lookup can be counted apart.
    let mut cfg1 = cfg.clone();
    cfg1.recovery_batch = 1;
    h.journal.set_config(cfg1).unwrap();
    h.tick();
    let first = count(&h, "icrc3_get_blocks") - before;
    h.tick();
    let second = count(&h, "icrc3_get_blocks") - before - first;
    h.settle();
    assert_eq!(h.journal.get(a.entry_id).unwrap().status, Status::Succeeded);
    assert_eq!(h.journal.get(b.entry_id).unwrap().status, Status::Succeeded);
    assert!(
        first >= 12,
        "the first lookup searches ~log2(5000) blocks: {first}"
    );
    assert!(
        second * 3 <= first,
        "the second lookup reuses the first one's samples: first {first}, second {second}"
    );
}

/// A long scan advancing a little per attempt is progress, not failure: with a tiny call
/// budget per attempt and few allowed attempts it still decides.
#[test]
fn should_not_count_scan_progress_against_max_attempts() {
    let cfg = Config {
        max_attempts: 3,
        lookup_max_calls_per_attempt: 2,
        ..Config::default()
    };
    let mut h = Harness::new(cfg.clone());
    h.faults.push_back(Fault::CanisterErrorNotExecuted);
    let r = h.transfer(user(1), h.icrc1(5), None).unwrap().unwrap();
    for i in 0..1_000 {
        h.ledger.push_noise(T0 + i, None);
    }
    h.ledger
        .push_noise(T0 + cfg.ledger_tx_window_ns + 3 * HOUR, None);
    h.rt.advance(cfg.ledger_tx_window_ns + 2 * cfg.ledger_permitted_drift_ns + HOUR);
    h.settle();
    let e = h.journal.get(r.entry_id).unwrap();
    assert_eq!(e.status, Status::Failed, "{e:#?}");
}

/// The window a transfer is judged by is the one its ledger had when it was journaled. Here the
/// ledger executed the transfer 2 hours after `created_at_time` (inside its 24 h window), then
/// an operator shortened the configured window to 1 hour. Judged by the new figure, the scan
/// would stop before the block and "prove" the transfer absent: a retry would pay twice.
#[test]
fn should_judge_a_transfer_by_the_window_recorded_when_it_was_journaled() {
    let mut cfg = Config::default();
    let mut h = Harness::new(cfg.clone());
    h.faults.push_back(Fault::ExecuteLateLoseResponse(2 * HOUR));
    let r = h.transfer(user(1), h.icrc1(5), None).unwrap().unwrap();
    assert_eq!(r.status, Status::Unknown);
    let block = h.ledger.blocks_for_entry(r.entry_id)[0];
    assert_eq!(h.ledger.blocks[block as usize].time, T0 + 2 * HOUR);
    cfg.ledger_tx_window_ns = HOUR;
    cfg.ledgers = vec![crate::config::LedgerParams {
        ledger: h.ledger.id,
        tx_window_ns: HOUR,
        permitted_drift_ns: 60_000_000_000,
    }];
    h.journal.set_config(cfg.clone()).unwrap();
    h.ledger.push_noise(T0 + DAY + 3 * HOUR, None);
    h.rt.advance(DAY + 2 * HOUR);
    h.settle();
    let e = h.journal.get(r.entry_id).unwrap();
    assert_eq!(
        (e.status, e.block_index()),
        (Status::Succeeded, Some(block)),
        "{e:#?}"
    );
}
