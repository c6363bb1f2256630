//! Upgrading a layout-1 journal (Candid values) to layout 2 (minicbor values): it opens as it
//! is, reads the same, rewrites each value in format 3 only when it is next written, and
//! recovery finishes what the old build left unresolved.

use super::harness::*;
use crate::storage::legacy;
use crate::types::*;
use crate::Config;
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager};
use ic_stable_structures::{Memory, StableBTreeMap};

/// The format byte of each stored entry, read from the entries memory as raw values.
fn formats(h: &Harness) -> Vec<(EntryId, u8)> {
    let mm = MemoryManager::init(h.raw.clone());
    let raw: StableBTreeMap<u64, Vec<u8>, _> = StableBTreeMap::init(mm.get(MemoryId::new(1)));
    raw.iter().map(|e| (*e.key(), e.value()[0])).collect()
}

fn layout_version(h: &Harness) -> u32 {
    let mm = MemoryManager::init(h.raw.clone());
    let mut v = [0u8; 4];
    mm.get(MemoryId::new(0)).read(4, &mut v);
    u32::from_le_bytes(v)
}

#[test]
fn should_open_a_layout_1_journal_read_it_unchanged_and_rewrite_entries_lazily() {
    legacy::set_writes_v1(true);
    let mut h = Harness::new(Config::default());
    let ok = h
        .transfer(user(1), h.icrc1(10), Some("a".to_string()))
        .unwrap()
        .unwrap();
    assert_eq!(ok.status, Status::Succeeded);
    // The reply is lost: the old build leaves this transfer unknown, holding its lock.
    h.faults.push_back(Fault::LoseResponse);
    let lost = h
        .transfer(user(2), h.icrc2(20), Some("b".to_string()))
        .unwrap()
        .unwrap();
    assert_eq!(lost.status, Status::Unknown);
    let rec = h
        .journal
        .record_intent(user(3), "r".into(), vec![7; 3], None)
        .unwrap();
    let before = h.entries();
    let audit_before = h.journal.audit(0, 1000);
    assert_eq!(layout_version(&h), 1);
    assert!(
        formats(&h).iter().all(|(_, f)| *f == 2),
        "{:?}",
        formats(&h)
    );

    // The upgrade to this build.
    legacy::set_writes_v1(false);
    h.reopen();
    assert_eq!(layout_version(&h), crate::storage::LAYOUT_VERSION);
    assert_eq!(h.entries(), before);
    assert_eq!(h.journal.audit(0, 1000), audit_before);
    assert!(
        formats(&h).iter().all(|(_, f)| *f == 2),
        "opening rewrote values"
    );
    assert_eq!(h.journal.lock_holder("b"), Some(lost.entry_id));

    // Recovery resolves the old unknown transfer (an identical resend: Duplicate of its block).
    h.settle();
    let resolved = h.journal.get(lost.entry_id).unwrap();
    assert_eq!(resolved.status, Status::Succeeded);
    assert_eq!(h.ledger.blocks_for_entry(lost.entry_id).len(), 1);
    assert_eq!(h.journal.lock_holder("b"), None);
    let f = formats(&h);
    let format_of = |id| f.iter().find(|(i, _)| *i == id).unwrap().1;
    assert_eq!(
        format_of(lost.entry_id),
        3,
        "a written entry is in format 3"
    );
    assert_eq!(
        format_of(ok.entry_id),
        2,
        "an untouched entry stays as it was"
    );
    assert_eq!(
        h.journal.get(ok.entry_id).unwrap(),
        before[ok.entry_id as usize]
    );
    // The old audit trail reads on, followed by the new records.
    let audit = h.journal.audit(0, 1000);
    assert_eq!(audit[..audit_before.len()], audit_before[..]);
    assert!(audit.len() > audit_before.len());
    assert!(audit.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    // The old record is still served, and new entries go on from the old next id.
    assert_eq!(
        h.journal.get(rec).unwrap().intent,
        before[rec as usize].intent
    );
    let next = h
        .transfer(user(1), h.icrc1(5), Some("a".to_string()))
        .unwrap()
        .unwrap();
    assert_eq!(next.entry_id, before.len() as u64);
    assert_eq!(next.status, Status::Succeeded);
    // And the migrated journal survives another upgrade.
    h.reopen();
    assert_eq!(
        h.journal.get(next.entry_id).unwrap().status,
        Status::Succeeded
    );
    assert_eq!(layout_version(&h), crate::storage::LAYOUT_VERSION);
}

/// The `by_status` rows, read from its memory as raw keys.
fn status_rows(h: &Harness) -> Vec<(u8, u64)> {
    let mm = MemoryManager::init(h.raw.clone());
    let raw: StableBTreeMap<(u8, u64), (), _> = StableBTreeMap::init(mm.get(MemoryId::new(3)));
    raw.keys().collect()
}

fn by_status(h: &Harness, s: Status) -> Vec<EntryId> {
    let page = crate::PageRequest {
        start_after: None,
        limit: 100,
    };
    let filter = crate::ListFilter {
        status: Some(s),
        ..Default::default()
    };
    h.journal
        .list(&filter, &page)
        .items
        .iter()
        .map(|e| e.id)
        .collect()
}

/// Layout 3 indexes only unresolved work by status: a resolution removes the entry's row and
/// adds none, and a listing of a resolved status finds the entry by scanning the entries.
#[test]
fn should_index_only_unresolved_entries_by_status() {
    let mut h = Harness::new(Config::default());
    let ok = h.transfer(user(1), h.icrc1(10), None).unwrap().unwrap();
    assert_eq!(ok.status, Status::Succeeded);
    h.faults.push_back(Fault::LoseResponse);
    let lost = h.transfer(user(2), h.icrc1(20), None).unwrap().unwrap();
    assert_eq!(lost.status, Status::Unknown);
    assert_eq!(
        status_rows(&h),
        vec![(Status::Unknown.tag(), lost.entry_id)],
        "the resolved transfer has no row"
    );
    assert_eq!(by_status(&h, Status::Succeeded), vec![ok.entry_id]);
    assert_eq!(by_status(&h, Status::Unknown), vec![lost.entry_id]);
    h.settle();
    assert_eq!(status_rows(&h), vec![]);
    assert_eq!(
        by_status(&h, Status::Succeeded),
        vec![ok.entry_id, lost.entry_id]
    );
    assert_eq!(by_status(&h, Status::Unknown), Vec::<EntryId>::new());
}

/// A layout-2 journal (resolved entries kept in `by_status`) opens as layout 3 with nothing
/// rewritten: each resolved entry is listed once, its stale row is never read, new
/// resolutions leave no row, and retention removes the old rows with their entries.
#[test]
fn should_open_a_layout_2_journal_and_drop_its_resolved_status_rows_with_retention() {
    legacy::set_writes_v2(true);
    let day = 24 * HOUR;
    let mut h = Harness::new(Config {
        retention_ns: Some(2 * day),
        ..Config::default()
    });
    let old = h.transfer(user(1), h.icrc1(10), None).unwrap().unwrap();
    let failed = h
        .transfer(user(1), h.icrc1(u64::MAX), None)
        .unwrap()
        .unwrap();
    assert_eq!(
        (old.status, failed.status),
        (Status::Succeeded, Status::Failed)
    );
    let rows = status_rows(&h);
    assert_eq!(layout_version(&h), 2);
    assert_eq!(
        rows,
        vec![
            (Status::Succeeded.tag(), old.entry_id),
            (Status::Failed.tag(), failed.entry_id)
        ]
    );

    // The upgrade to this build.
    legacy::set_writes_v2(false);
    h.reopen();
    assert_eq!(layout_version(&h), crate::storage::LAYOUT_VERSION);
    assert_eq!(status_rows(&h), rows, "opening rewrites nothing");
    let new = h.transfer(user(1), h.icrc1(30), None).unwrap().unwrap();
    assert_eq!(new.status, Status::Succeeded);
    assert_eq!(status_rows(&h), rows, "a new resolution leaves no row");
    assert_eq!(
        by_status(&h, Status::Succeeded),
        vec![old.entry_id, new.entry_id],
        "listed once each"
    );
    assert_eq!(by_status(&h, Status::Failed), vec![failed.entry_id]);
    let violations = h.journal.inner.store.borrow().index_violations();
    assert!(violations.is_empty(), "{violations:?}");

    // Retention compacts the old entries and takes their rows with them.
    for _ in 0..(3 * 24) {
        h.rt.advance(HOUR);
        h.tick().expect("a tick does not trap");
    }
    assert!(h.journal.get(old.entry_id).is_none());
    assert!(h.journal.get(failed.entry_id).is_none());
    assert_eq!(status_rows(&h), vec![]);
    let violations = h.journal.inner.store.borrow().index_violations();
    assert!(violations.is_empty(), "{violations:?}");
}
