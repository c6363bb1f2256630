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
    legacy::set_layout(Some(1));
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
    legacy::set_layout(None);
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
    legacy::set_layout(Some(2));
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
    legacy::set_layout(None);
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

/// The `by_owner` rows, read from its memory as raw keys.
fn owner_rows(h: &Harness) -> Vec<(candid::Principal, u8, u64)> {
    let mm = MemoryManager::init(h.raw.clone());
    let raw: StableBTreeMap<(candid::Principal, u8, u64), (), _> =
        StableBTreeMap::init(mm.get(MemoryId::new(2)));
    raw.keys().collect()
}

/// The owner rows keyed by owner key (layout 6's in stream 1, layout 7's in the owner chains),
/// as (owner, id) of the entries they name, sorted.
fn stream_owner_rows(h: &Harness) -> Vec<(candid::Principal, EntryId)> {
    let rows = h.journal.inner.store.borrow().stream_owner_rows();
    let mut named: Vec<_> = rows
        .into_iter()
        .map(|(_, id)| (h.journal.get(id).expect("a row names an entry").owner, id))
        .collect();
    named.sort();
    named
}

/// Every page of `owner`'s entries with `status` (all statuses: `None`), `limit` a page.
fn by_owner(h: &Harness, owner: u8, status: Option<Status>, limit: u32) -> Vec<EntryId> {
    let filter = crate::ListFilter {
        owner: Some(user(owner)),
        status,
        ..Default::default()
    };
    every_page(h, &filter, limit)
}

/// The ids of every page of the listing `filter`, `limit` a page.
fn every_page(h: &Harness, filter: &crate::ListFilter, limit: u32) -> Vec<EntryId> {
    let mut ids = vec![];
    let mut start_after = None;
    for _ in 0..100 {
        let page = h
            .journal
            .list(filter, &crate::PageRequest { start_after, limit });
        ids.extend(page.items.iter().map(|e| e.id));
        match page.next {
            Some(n) => start_after = Some(n),
            None => return ids,
        }
    }
    panic!("listing did not end")
}

/// Layout 4 writes an entry's owner row once, when the entry is created: a status change,
/// however many, touches no owner index. Listings by owner and status still find each entry
/// exactly once, and never another owner's — also when every owner has the same owner key
/// (layout 6 keys the rows by a hash of the owner).
#[test]
fn should_write_an_entrys_owner_row_once() {
    write_each_owner_row_once();
}

#[test]
fn should_list_each_owners_entries_alone_when_owner_keys_collide() {
    legacy::OWNER_KEYS_COLLIDE.set(true);
    write_each_owner_row_once();
    legacy::OWNER_KEYS_COLLIDE.set(false);
}

fn write_each_owner_row_once() {
    let mut h = Harness::new(Config::default());
    let ok = h.transfer(user(1), h.icrc1(10), None).unwrap().unwrap();
    h.faults.push_back(Fault::LoseResponse);
    let lost = h.transfer(user(1), h.icrc1(20), None).unwrap().unwrap();
    h.faults.push_back(Fault::LoseResponse);
    let other = h.transfer(user(2), h.icrc1(30), None).unwrap().unwrap();
    assert_eq!(
        (ok.status, lost.status, other.status),
        (Status::Succeeded, Status::Unknown, Status::Unknown)
    );
    let rows = stream_owner_rows(&h);
    assert_eq!(
        rows,
        vec![
            (user(1), ok.entry_id),
            (user(1), lost.entry_id),
            (user(2), other.entry_id),
        ],
        "one row per entry, without its status"
    );
    assert_eq!(
        owner_rows(&h),
        vec![],
        "none in the B-tree of layouts 1 to 5"
    );
    assert_eq!(
        by_owner(&h, 1, Some(Status::Unknown), 10),
        vec![lost.entry_id]
    );
    assert_eq!(
        by_owner(&h, 1, Some(Status::Succeeded), 10),
        vec![ok.entry_id]
    );
    assert_eq!(
        by_owner(&h, 2, Some(Status::Succeeded), 10),
        Vec::<EntryId>::new()
    );
    h.settle();
    assert_eq!(
        stream_owner_rows(&h),
        rows,
        "resolutions leave the owner rows as they were"
    );
    assert_eq!(
        by_owner(&h, 1, Some(Status::Unknown), 10),
        Vec::<EntryId>::new()
    );
    assert_eq!(
        by_owner(&h, 1, Some(Status::Succeeded), 1),
        vec![ok.entry_id, lost.entry_id]
    );
    assert_eq!(by_owner(&h, 1, None, 1), vec![ok.entry_id, lost.entry_id]);
    assert_eq!(by_owner(&h, 2, None, 10), vec![other.entry_id]);
    let violations = h.journal.inner.store.borrow().index_violations();
    assert!(violations.is_empty(), "{violations:?}");
}

/// A layout-3 journal (owner rows keyed by status) opens as layout 4 with nothing rewritten:
/// its entries keep their rows (moved on a status change, as before), later entries get fixed
/// ones, listings by owner find both kinds exactly once across pages, and retention removes
/// both.
#[test]
fn should_open_a_layout_3_journal_and_list_its_owner_rows_with_the_new_ones() {
    legacy::set_layout(Some(3));
    let day = 24 * HOUR;
    let mut h = Harness::new(Config {
        retention_ns: Some(2 * day),
        ..Config::default()
    });
    let old_ok = h.transfer(user(1), h.icrc1(10), None).unwrap().unwrap();
    h.faults.push_back(Fault::LoseResponse);
    let old_lost = h.transfer(user(1), h.icrc1(20), None).unwrap().unwrap();
    let old_other = h.transfer(user(2), h.icrc1(30), None).unwrap().unwrap();
    assert_eq!(layout_version(&h), 3);
    assert_eq!(
        owner_rows(&h),
        vec![
            (user(1), Status::Succeeded.tag(), old_ok.entry_id),
            (user(1), Status::Unknown.tag(), old_lost.entry_id),
            (user(2), Status::Succeeded.tag(), old_other.entry_id),
        ]
    );

    // The upgrade to this build.
    legacy::set_layout(None);
    h.reopen();
    assert_eq!(layout_version(&h), crate::storage::LAYOUT_VERSION);
    let new_ok = h.transfer(user(1), h.icrc1(40), None).unwrap().unwrap();
    h.faults.push_back(Fault::LoseResponse);
    let new_lost = h.transfer(user(1), h.icrc1(50), None).unwrap().unwrap();
    assert_eq!(new_lost.status, Status::Unknown);
    assert_eq!(
        by_owner(&h, 1, Some(Status::Unknown), 1),
        vec![old_lost.entry_id, new_lost.entry_id]
    );
    h.settle();
    let all_1 = vec![
        old_ok.entry_id,
        old_lost.entry_id,
        new_ok.entry_id,
        new_lost.entry_id,
    ];
    assert_eq!(
        owner_rows(&h),
        vec![
            (user(1), Status::Succeeded.tag(), old_ok.entry_id),
            (user(1), Status::Succeeded.tag(), old_lost.entry_id),
            (user(2), Status::Succeeded.tag(), old_other.entry_id),
        ],
        "an old entry's row moves with its status"
    );
    assert_eq!(
        stream_owner_rows(&h),
        vec![(user(1), new_ok.entry_id), (user(1), new_lost.entry_id)],
        "a new one's is keyed by owner key (layout 7: in the owner chains)"
    );
    for limit in [1, 2, 10] {
        assert_eq!(by_owner(&h, 1, Some(Status::Succeeded), limit), all_1);
        assert_eq!(by_owner(&h, 1, None, limit), all_1);
    }
    assert_eq!(
        by_owner(&h, 1, Some(Status::Unknown), 10),
        Vec::<EntryId>::new()
    );
    assert_eq!(by_owner(&h, 2, None, 10), vec![old_other.entry_id]);
    let violations = h.journal.inner.store.borrow().index_violations();
    assert!(violations.is_empty(), "{violations:?}");

    // The first fixed id survives upgrades.
    h.reopen();
    assert_eq!(by_owner(&h, 1, None, 3), all_1);

    // Retention compacts every entry and takes both kinds of rows with them.
    for _ in 0..(3 * 24) {
        h.rt.advance(HOUR);
        h.tick().expect("a tick does not trap");
    }
    assert!(h.journal.get(new_lost.entry_id).is_none());
    assert!(owner_rows(&h).is_empty());
    assert!(h
        .journal
        .inner
        .store
        .borrow()
        .stream_owner_rows()
        .is_empty());
    let violations = h.journal.inner.store.borrow().index_violations();
    assert!(violations.is_empty(), "{violations:?}");
}

/// What the metrics read from the counters (everything but sizes and the clock).
fn counted(h: &Harness) -> String {
    let m = h.journal.metrics();
    format!(
        "{:?} {:?} {:?} {} {} {} {} {:?} {:?}",
        m.entries_by_status,
        m.entries_by_kind,
        m.recoveries_by_path,
        m.attempts_total,
        m.manual_queue_depth,
        m.contradictions,
        m.recovery_ticks,
        m.compacted_by_status,
        m.summaries_pruned,
    )
}

/// A few entries for the counters to count: a transfer that succeeds, one left unknown (its
/// reply lost), a record.
fn count_a_few_entries(h: &mut Harness) {
    let ok = h.transfer(user(1), h.icrc1(10), None).unwrap().unwrap();
    h.faults.push_back(Fault::LoseResponse);
    let lost = h.transfer(user(1), h.icrc2(20), None).unwrap().unwrap();
    h.journal
        .record_intent(user(2), "r".into(), vec![1], None)
        .unwrap();
    assert_eq!(
        (ok.status, lost.status),
        (Status::Succeeded, Status::Unknown)
    );
}

/// The retired counters memory (offset 8).
fn retired_counters(h: &Harness) -> impl Memory {
    MemoryManager::init(h.raw.clone()).get(MemoryId::new(8))
}

/// Layout 5 keeps the counters in a fixed record of the header memory: they survive an
/// upgrade (they are in stable memory, not only in the heap's cache), and the memory the
/// counters' B-tree had is never allocated.
#[test]
fn should_keep_counters_in_the_header_record_across_upgrades() {
    let mut h = Harness::new(Config::default());
    count_a_few_entries(&mut h);
    h.settle();
    let before = counted(&h);
    assert!(before.contains("status: Succeeded, count: 2"), "{before}");
    h.reopen();
    assert_eq!(
        counted(&h),
        before,
        "the counters read back after an upgrade"
    );
    assert_eq!(retired_counters(&h).size(), 0);
    let violations = h.journal.inner.store.borrow().index_violations();
    assert!(violations.is_empty(), "{violations:?}");
}

/// A layout-4 journal (counters in a B-tree) opens as layout 5 with every counter where the
/// metrics find it, and counts on from there; the retired tree is never written again.
#[test]
fn should_open_a_layout_4_journal_with_its_counters() {
    legacy::set_layout(Some(4));
    let mut h = Harness::new(Config::default());
    count_a_few_entries(&mut h);
    assert_eq!(layout_version(&h), 4);
    let before = counted(&h);
    assert!(before.contains("status: Unknown, count: 1"), "{before}");
    let pages = retired_counters(&h).size();
    assert!(pages > 0, "layout 4 keeps its counters in memory 8");
    let snapshot = |h: &Harness| {
        let m = retired_counters(h);
        let mut bytes = vec![0u8; (m.size() * 65536) as usize];
        m.read(0, &mut bytes);
        bytes
    };
    let old_tree = snapshot(&h);

    // The upgrade to this build.
    legacy::set_layout(None);
    h.reopen();
    assert_eq!(layout_version(&h), crate::storage::LAYOUT_VERSION);
    assert_eq!(counted(&h), before, "every counter migrated");
    h.settle();
    let after = counted(&h);
    assert!(after.contains("status: Succeeded, count: 2"), "{after}");
    assert!(after.contains("status: Unknown, count: 0"), "{after}");
    h.reopen();
    assert_eq!(counted(&h), after);
    assert_eq!(snapshot(&h), old_tree, "the retired tree is left as it was");
    let violations = h.journal.inner.store.borrow().index_violations();
    assert!(violations.is_empty(), "{violations:?}");
}

/// The rows of the claims B-tree (memory 12): every claim of layouts 1 to 5, the spill tree of
/// layout 6.
fn claims_tree(h: &Harness) -> Vec<((candid::Principal, u64), u64)> {
    let mm = MemoryManager::init(h.raw.clone());
    let tree: StableBTreeMap<(candid::Principal, u64), u64, _> =
        StableBTreeMap::init(mm.get(MemoryId::new(12)));
    tree.iter().map(|r| (*r.key(), r.value())).collect()
}

/// Layout 6 keeps new claims in a table; a migrated journal's older claims stay in the B-tree
/// and still refuse their blocks to any other entry, until the recovery tick moves them into
/// the table, where they go on refusing them.
#[test]
fn should_open_a_layout_5_journal_and_refuse_its_claimed_blocks_to_other_entries() {
    legacy::set_layout(Some(5));
    let mut h = Harness::new(Config::default());
    let (a, block, b) = succeeded_and_unknown(&mut h);
    let ledger = h.ledger.id;
    assert_eq!(claims_tree(&h), vec![((ledger, block), a)]);

    // The upgrade to this build.
    legacy::set_layout(None);
    h.reopen();
    assert_eq!(layout_version(&h), crate::storage::LAYOUT_VERSION);
    // The owner's entries are listed from both owner indexes: layout 5's fixed rows first.
    let d = h.transfer(user(1), h.icrc1(5), None).unwrap().unwrap();
    assert_eq!(
        owner_rows(&h),
        vec![(user(1), u8::MAX, a), (user(2), u8::MAX, b),]
    );
    for limit in [1, 2, 10] {
        assert_eq!(by_owner(&h, 1, None, limit), vec![a, d.entry_id]);
        assert_eq!(
            by_owner(&h, 1, Some(Status::Succeeded), limit),
            vec![a, d.entry_id]
        );
    }
    assert_eq!(by_owner(&h, 2, None, 1), vec![b]);
    // A new claim goes to the table (and numbers the ledger there), not the tree.
    let c = h.transfer(user(3), h.icrc1(5), None).unwrap().unwrap();
    assert_eq!(c.status, Status::Succeeded);
    let c_block = h.ledger.blocks_for_entry(c.entry_id)[0];
    h.reopen();
    assert_eq!(
        h.journal.inner.store.borrow().claimant(ledger, block),
        Some(a)
    );
    assert_block_refused(&h, b, block, a);

    assert_eq!(
        h.journal.inner.store.borrow().claimant(ledger, c_block),
        Some(c.entry_id)
    );
    assert_eq!(claims_tree(&h), vec![((ledger, block), a)]);
    assert!(h.journal.inner.store.borrow().older_claims_left());
    assert_eq!(h.journal.metrics().claims_in_tree, Some(1));

    // The recovery tick moves the older claims into the table.
    h.tick();
    assert_eq!(claims_tree(&h), vec![], "moved by the tick");
    assert!(!h.journal.inner.store.borrow().older_claims_left());
    assert_eq!(h.journal.metrics().claims_in_tree, Some(0));
    let text = String::from_utf8(crate::encode_prometheus(&h.journal.metrics()).unwrap()).unwrap();
    assert!(text.contains("icjournal_claims_in_tree 0"), "{text}");
    h.reopen();
    assert_eq!(
        h.journal.inner.store.borrow().claimant(ledger, block),
        Some(a)
    );
    assert_block_refused(&h, b, block, a);
    h.settle();
    let violations = h.journal.inner.store.borrow().index_violations();
    assert!(violations.is_empty(), "{violations:?}");
}

/// A journal created as layout 6 claims its blocks in the table, not in the B-tree, and the
/// claims survive an upgrade.
#[test]
fn should_claim_blocks_in_the_table_and_leave_the_tree_empty() {
    let mut h = Harness::new(Config::default());
    let mut claimed = vec![];
    for i in 0..40u8 {
        let r = h.transfer(user(i % 3), h.icrc1(5), None).unwrap().unwrap();
        assert_eq!(r.status, Status::Succeeded);
        claimed.push((h.ledger.blocks_for_entry(r.entry_id)[0], r.entry_id));
    }
    h.reopen();
    for (block, id) in claimed {
        assert_eq!(
            h.journal.inner.store.borrow().claimant(h.ledger.id, block),
            Some(id)
        );
    }
    assert_eq!(claims_tree(&h), vec![], "no claim in the tree");
    let violations = h.journal.inner.store.borrow().index_violations();
    assert!(violations.is_empty(), "{violations:?}");
}

/// The entries' ids in layout 7's table.
fn table_ids(h: &Harness) -> Vec<EntryId> {
    h.journal.inner.store.borrow().table_entry_ids()
}

/// Every page of all entries, `limit` a page (the id-ordered scan of both places entries live).
fn all_entries(h: &Harness, limit: u32) -> Vec<EntryId> {
    every_page(h, &crate::ListFilter::default(), limit)
}

/// Upgrading a layout-6 journal: its entries stay in the B-tree (opening is O(1)), are read,
/// rewritten (recovery) and removed (retention) there; new entries go to the table only;
/// listings run across both in id order.
#[test]
fn should_open_a_layout_6_journal_and_keep_its_entries_where_they_are() {
    legacy::set_layout(Some(6));
    let day = 24 * HOUR;
    let mut h = Harness::new(Config {
        retention_ns: Some(2 * day),
        ..Config::default()
    });
    let (old_ok, _, old_lost) = succeeded_and_unknown(&mut h);
    let old = vec![old_ok, old_lost];
    assert_eq!(
        formats(&h).iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        old
    );
    assert_eq!(table_ids(&h), Vec::<EntryId>::new());

    // The upgrade to this build.
    legacy::set_layout(None);
    h.reopen();
    assert_eq!(layout_version(&h), crate::storage::LAYOUT_VERSION);
    let new_ok = h.transfer(user(1), h.icrc1(40), None).unwrap().unwrap();
    h.faults.push_back(Fault::LoseResponse);
    let new_lost = h.transfer(user(2), h.icrc1(50), None).unwrap().unwrap();
    assert_eq!(new_lost.status, Status::Unknown);
    let new = vec![new_ok.entry_id, new_lost.entry_id];
    assert_eq!(table_ids(&h), new, "new entries in the table");
    assert_eq!(
        formats(&h).iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        old
    );
    h.settle();
    h.reopen();
    for id in [old_lost, new_lost.entry_id] {
        assert_eq!(h.journal.get(id).unwrap().status, Status::Succeeded);
    }
    assert_eq!(formats(&h).len(), 2, "the old entry rewritten where it was");
    let all: Vec<EntryId> = old.iter().chain(&new).copied().collect();
    for limit in [1, 2, 3, 10] {
        assert_eq!(all_entries(&h, limit), all);
    }
    // Each owner's rows: layout 6's (stream 1) first, then the owner chains'.
    for limit in [1, 2, 10] {
        assert_eq!(by_owner(&h, 1, None, limit), vec![old_ok, new_ok.entry_id]);
        assert_eq!(
            by_owner(&h, 2, None, limit),
            vec![old_lost, new_lost.entry_id]
        );
    }
    assert_eq!(h.journal.inner.store.borrow().len(), 4);
    let violations = h.journal.inner.store.borrow().index_violations();
    assert!(violations.is_empty(), "{violations:?}");

    // Retention removes both kinds.
    for _ in 0..(3 * 24) {
        h.rt.advance(HOUR);
        h.tick().expect("a tick does not trap");
    }
    assert!(formats(&h).is_empty());
    assert_eq!(table_ids(&h), Vec::<EntryId>::new());
    assert!(h.journal.inner.store.borrow().is_empty());
    let violations = h.journal.inner.store.borrow().index_violations();
    assert!(violations.is_empty(), "{violations:?}");
}

/// A journal created as layout 7 keeps no entry in the B-tree of memory 1.
#[test]
fn should_keep_new_entries_in_the_table_only() {
    let mut h = Harness::new(Config::default());
    let (a, _, b) = succeeded_and_unknown(&mut h);
    h.settle();
    h.reopen();
    assert_eq!(formats(&h), vec![]);
    assert_eq!(table_ids(&h), vec![a, b]);
    assert_eq!(all_entries(&h, 1), vec![a, b]);
}
