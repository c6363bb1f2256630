//! Resources: what one caller may take (entries, bytes, recovery slots), what happens near
//! the end of stable memory, and keys that make a retried request safe.

use super::harness::*;
use crate::types::*;
use crate::{Config, EntryOptions, IdempotencyKey, JournalError};

fn record(h: &Harness, owner: candid::Principal) -> Result<EntryId, JournalError> {
    h.journal
        .record_intent(owner, "r".into(), vec![0; 100], None)
}

fn close(h: &Harness, owner: candid::Principal, id: EntryId) {
    h.journal
        .report_result(
            owner,
            id,
            ReportedResult::Failed {
                message: "done".into(),
            },
        )
        .unwrap();
}

/// Quotas on unresolved entries alone let a caller grow the journal forever by resolving what
/// it creates; its total is capped too (entries and bytes, resolved included).
#[test]
fn should_cap_a_callers_total_entries_even_when_it_resolves_them() {
    let h = Harness::new(Config {
        max_entries_per_owner: 50,
        ..Config::default()
    });
    for _ in 0..50 {
        let id = record(&h, user(1)).unwrap();
        close(&h, user(1), id);
    }
    assert!(matches!(
        record(&h, user(1)),
        Err(JournalError::QuotaExceeded { limit, max: 50, .. }) if limit == "max_entries_per_owner"
    ));
    // Other callers are not affected.
    record(&h, user(2)).unwrap();
}

#[test]
fn should_cap_a_callers_total_bytes() {
    let h = Harness::new(Config {
        max_bytes_per_owner: 10 * 165,
        ..Config::default()
    });
    for _ in 0..10 {
        let id = record(&h, user(1)).unwrap();
        close(&h, user(1), id);
    }
    assert!(matches!(
        record(&h, user(1)),
        Err(JournalError::QuotaExceeded { limit, .. }) if limit == "max_bytes_per_owner"
    ));
}

/// Near the end of stable memory, new work is refused with a typed error while recovery,
/// operator verbs and queries go on in the room kept for them.
#[test]
fn should_refuse_new_work_near_the_storage_limit_and_keep_recovering() {
    let mut h = Harness::new(Config::default());
    h.faults.push_back(Fault::LoseResponse);
    let r = h.transfer(user(1), h.icrc1(5), None).unwrap().unwrap();
    assert_eq!(r.status, Status::Unknown);
    let used = h.journal.metrics().stable_memory_bytes;
    // More than a segment: a stream of the meta memory grows 1 MiB at a time.
    let headroom = 4 << 20;
    let mut cfg = h.journal.config();
    cfg.stable_memory_limit_bytes = Some(used + headroom + (2 << 20));
    cfg.new_work_headroom_bytes = headroom;
    h.journal.set_config(cfg).unwrap();
    let mut created = 0;
    let err = loop {
        match h
            .journal
            .record_intent(user(2), "fill".into(), vec![7; 4_000], None)
        {
            Ok(_) => created += 1,
            Err(e) => break e,
        }
        assert!(created < 100_000, "never refused");
    };
    assert!(matches!(err, JournalError::StorageFull { .. }), "{err:?}");
    assert!(created > 0);
    // Recovery still runs and records its result.
    h.settle();
    assert_eq!(h.journal.get(r.entry_id).unwrap().status, Status::Succeeded);
    assert!(h.journal.metrics().stable_memory_bytes <= used + headroom + (2 << 20));
}

/// Recovery slots are shared fairly: one caller with many entries due cannot starve another
/// caller's single entry.
#[test]
fn should_give_every_caller_with_due_work_a_slot_in_each_tick() {
    let mut h = Harness::new(Config {
        recovery_batch: 5,
        // One pass per tick: 5 resends (100k each, below) use up the budget.
        recovery_instruction_budget: 450_000,
        ..Config::default()
    });
    for _ in 0..30 {
        h.faults.push_back(Fault::LoseResponse);
        h.transfer(user(1), h.icrc1(5), None).unwrap().unwrap();
    }
    h.faults.push_back(Fault::LoseResponse);
    let late = h.transfer(user(2), h.icrc1(6), None).unwrap().unwrap();
    h.rt.advance(Config::default().backoff(1));
    h.rt.set_instructions_per_call(100_000);
    let r = h.tick().unwrap();
    assert_eq!(r.examined, 5);
    assert!(r.more_due);
    assert_eq!(
        h.journal.get(late.entry_id).unwrap().status,
        Status::Succeeded,
        "the other caller's entry got a slot in the first tick"
    );
}

fn key(k: &str, request: &str) -> IdempotencyKey {
    IdempotencyKey::for_request(k.into(), &request.to_string())
}

/// The same request under the same idempotency key names the first entry, whatever its
/// status — also after it is final and its lock released, when a second entry would pay twice.
#[test]
fn should_name_the_first_entry_for_a_request_repeated_with_its_idempotency_key() {
    let mut h = Harness::new(Config::default());
    let opts = EntryOptions {
        lock_key: Some("order-7".into()),
        idempotency: Some(key("pay-7", "pay 5 to 100")),
    };
    let first = h
        .transfer(user(1), h.icrc1(5), opts.clone())
        .unwrap()
        .unwrap();
    assert_eq!(first.status, Status::Succeeded);
    assert_eq!(h.journal.lock_holder("order-7"), None, "lock released");
    let again = h.transfer(user(1), h.icrc1(5), opts).unwrap();
    assert_eq!(
        again,
        Err(JournalError::DuplicateRequest {
            entry_id: first.entry_id
        })
    );
    assert_eq!(h.ledger.blocks.len(), 1, "paid once");
    // The key is the caller's: another caller may use the same string.
    let other = EntryOptions {
        lock_key: None,
        idempotency: Some(key("pay-7", "pay 5 to 100")),
    };
    h.transfer(user(2), h.icrc1(5), other).unwrap().unwrap();
}

#[test]
fn should_refuse_an_idempotency_key_reused_for_a_different_request() {
    let h = Harness::new(Config::default());
    let id = h
        .journal
        .record_intent(
            user(1),
            "a".into(),
            vec![],
            EntryOptions {
                lock_key: None,
                idempotency: Some(key("k", "first")),
            },
        )
        .unwrap();
    assert_eq!(
        h.journal.record_intent(
            user(1),
            "b".into(),
            vec![],
            EntryOptions {
                lock_key: None,
                idempotency: Some(key("k", "second")),
            },
        ),
        Err(JournalError::IdempotencyKeyReused { entry_id: id })
    );
}

/// A caller that lost a reply finds its entry by the key it chose, also once final.
#[test]
fn should_find_an_entry_by_its_lock_key_or_idempotency_key_once_final() {
    let mut h = Harness::new(Config::default());
    let opts = EntryOptions {
        lock_key: Some("order-9".into()),
        idempotency: Some(key("req-9", "r")),
    };
    let r = h.transfer(user(1), h.icrc1(5), opts).unwrap().unwrap();
    assert_eq!(r.status, Status::Succeeded);
    let j = &h.journal;
    assert_eq!(
        j.find_by_key(user(1), &EntryKey::LockKey("order-9".into())),
        Some(r.entry_id)
    );
    assert_eq!(
        j.find_by_key(user(1), &EntryKey::IdempotencyKey("req-9".into())),
        Some(r.entry_id)
    );
    assert_eq!(
        j.find_by_key(user(2), &EntryKey::LockKey("order-9".into())),
        None
    );
}
