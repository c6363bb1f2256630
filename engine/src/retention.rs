//! Retention: resolved entries older than `Config::retention_ns` are compacted, in bounded
//! batches run by the recovery tick, into a `CompactedEntry` summary (memory offset 15); a
//! summary is pruned `Config::summary_retention_ns` after compaction.
//!
//! # What is compacted
//!
//! An entry is compacted only when all of these hold (`skip_reason`):
//! - its status is terminal (`Succeeded`, `Failed`, `Compensated`, `Cancelled`): the manual
//!   queue and every unresolved entry are never touched;
//! - it was last changed at least `retention_ns` ago;
//! - it has no pending approvals and holds no lock (both are released on resolution; checked
//!   again because removing a row another structure still names would corrupt the journal);
//! - a transfer: the ledger can no longer execute it (its window, plus twice the permitted
//!   drift, closed by our clock). Until then a late execution could still contradict a
//!   `Failed`/`Cancelled` result, and only the full entry lets that be noticed;
//! - a saga step or compensation: its saga is terminal (or gone) — a running saga reads its
//!   steps' entries;
//! - a saga: every step and compensation it started is terminal (or gone).
//!
//! Compaction removes the entry and every index row naming it (`Store::remove_resolved`),
//! which also returns its share of the owner's totals (`max_entries_per_owner` counts entries
//! kept in full), and writes its summary. It appends no audit record: that would grow the log
//! it cannot shrink by one more record per entry.
//!
//! # What is kept
//!
//! - **Key records** (`keys`: idempotency keys and lock keys), for good. A repeated request
//!   with the same idempotency key still answers `DuplicateRequest { entry_id }` and creates
//!   nothing, so it cannot pay twice; reading that entry answers `Compacted { entry }` (the
//!   summary: status, block, amount) and, once the summary is pruned, `Pruned { entry_id }`.
//!   They are the one structure that still grows with the number of distinct keys callers use
//!   (16 bytes plus the principal and the key, per key).
//! - **Block claims** (`claims`), until the summary is pruned. While kept, a block can still
//!   never prove two entries by the index. After, the guarantee rests on what made it hold in
//!   the first place: every journaled transfer carries its own entry id in its memo and recovery
//!   and operators accept a block only if every field matches, so a block can match only the
//!   entry whose id it carries; and that entry's window closed before it was compacted, so the
//!   ledger can no longer execute (or deduplicate against) its transfer.
//! - **The audit log** (offsets 9/10): an append-only `StableLog`, not compacted. It keeps
//!   every status change of every entry, compacted or not, and keeps growing (measured per
//!   resolved entry by `should_stop_growing_stable_memory_under_steady_load_with_retention`
//!   and by the bench).
//! - **Counters**: the per-status gauge drops the compacted entry; `COMPACTED | status` counts
//!   it; the per-kind counters and `entries_total` (the next id) count every entry ever made.
//!
//! # Bounded work (I6)
//!
//! A step looks at no more than `8 × retention_batch` candidates and changes at most
//! `retention_batch` entries and `retention_batch` summaries. Candidates are the entries in id
//! order (their keys: resolved entries have no status index, storage layout 3; the unresolved
//! ones are passed over), from a cursor kept on the heap (lost on upgrade: the next step
//! starts over, which is only slower). `created_at` does not
//! decrease with the id and `updated_at >= created_at`, so the first candidate created after
//! the cutoff ends the pass: nothing after it can be old enough.

use crate::error::JournalError;
use crate::journal::Journal;
use crate::recovery;
use crate::runtime::Runtime;
use crate::storage::{counter, Stored};
use crate::types::*;
use ic_stable_structures::storable::Bound;
use ic_stable_structures::{Memory, Storable};
use std::borrow::Cow;
use std::cell::Cell;

/// Where the next retention step continues (heap only).
#[derive(Default)]
pub(crate) struct Cursors {
    compact: Cell<Option<EntryId>>,
    prune: Cell<Option<EntryId>>,
}

/// What one retention step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Candidates looked at (entries and summaries).
    pub scanned: u32,
    pub compacted: u32,
    pub pruned: u32,
}

/// Why an old terminal entry is not compacted yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    Unresolved,
    TooRecent,
    PendingApprovals,
    HoldsLock,
    WindowOpen,
    SagaUnresolved,
    StepUnresolved,
}

impl<R: Runtime, M: Memory + 'static> Journal<R, M> {
    /// One bounded retention step: compact a batch of eligible entries, then prune a batch of
    /// expired summaries. Does nothing while `retention_ns` is None. The recovery tick runs it;
    /// hosts without the engine's timer may call it themselves.
    pub fn retention_step(&self) -> RetentionReport {
        let cfg = self.config();
        let mut report = RetentionReport::default();
        let Some(retention) = cfg.retention_ns else {
            return report;
        };
        let now = self.now();
        let batch = cfg.retention_batch as usize;
        let scan = batch.saturating_mul(8);
        self.compact_batch(now, retention, batch, scan, &mut report);
        if let Some(keep) = cfg.summary_retention_ns {
            self.prune_batch(now, retention, keep, batch, scan, &mut report);
        }
        report
    }

    /// The summary of a compacted entry, if it is kept.
    pub fn compacted(&self, id: EntryId) -> Option<CompactedEntry> {
        self.inner.store.borrow().summary(id)
    }

    /// The entry (any owner), or what retention left of it: `Compacted { entry }` with its
    /// summary, `Pruned` for an id that existed (ids are never reused) whose summary is gone,
    /// `NotFound` for an id never given out.
    pub fn lookup(&self, id: EntryId) -> Result<Entry, JournalError> {
        let store = self.inner.store.borrow();
        if let Some(e) = store.get(id) {
            return Ok(e);
        }
        if let Some(s) = store.summary(id) {
            return Err(JournalError::Compacted { entry: s });
        }
        if id < store.next_id() {
            return Err(JournalError::Pruned { entry_id: id });
        }
        Err(JournalError::NotFound { entry_id: id })
    }

    /// Why `e` may not be compacted at `now` with the given cutoff (None: it may).
    pub fn skip_reason(&self, e: &Entry, cutoff: Timestamp, now: Timestamp) -> Option<Skip> {
        if !e.status.is_terminal() {
            return Some(Skip::Unresolved);
        }
        if e.updated_at > cutoff {
            return Some(Skip::TooRecent);
        }
        let store = self.inner.store.borrow();
        if store.approvals(e.id).is_some() {
            return Some(Skip::PendingApprovals);
        }
        if e.lock_key
            .as_ref()
            .is_some_and(|k| store.lock_holder(k) == Some(e.id))
        {
            return Some(Skip::HoldsLock);
        }
        if let Intent::Transfer(t) = &e.intent {
            let w = recovery::window_of(t, &self.config());
            let closes_at = t
                .created_at_time()
                .unwrap_or(e.created_at)
                .saturating_add(w.tx_window_ns)
                .saturating_add(w.permitted_drift_ns.saturating_mul(2));
            if now <= closes_at {
                return Some(Skip::WindowOpen);
            }
        }
        let unresolved = |id: EntryId| store.get(id).is_some_and(|x| !x.status.is_terminal());
        if e.parent.is_some_and(unresolved) {
            return Some(Skip::SagaUnresolved);
        }
        if let Intent::Saga(s) = &e.intent {
            let started = s
                .steps
                .iter()
                .flat_map(|st| [st.entry, st.compensation_entry])
                .flatten();
            if started.into_iter().any(unresolved) {
                return Some(Skip::StepUnresolved);
            }
        }
        None
    }

    fn compact_batch(
        &self,
        now: Timestamp,
        retention: u64,
        batch: usize,
        scan: usize,
        report: &mut RetentionReport,
    ) {
        let cutoff = now.saturating_sub(retention);
        let cursor = self.inner.retention.compact.get();
        // Entries by id from the cursor; `skip_reason` passes over the unresolved ones (only
        // those have a status index, storage layout 3).
        let ids: Vec<EntryId> = self
            .inner
            .store
            .borrow()
            .ids_after(cursor)
            .take(scan)
            .collect();
        // The scan ran dry before `scan`: this pass reaches the end.
        let mut at_end = ids.len() < scan;
        let mut last = cursor;
        for id in ids {
            if report.compacted as usize >= batch {
                at_end = false;
                break;
            }
            let Some(e) = self.get(id) else { continue };
            report.scanned += 1;
            if e.created_at > cutoff {
                // Nothing created later can have been resolved before the cutoff.
                at_end = true;
                break;
            }
            last = Some(id);
            if self.skip_reason(&e, cutoff, now).is_none() {
                self.compact(e, now);
                report.compacted += 1;
            }
        }
        self.inner
            .retention
            .compact
            .set(if at_end { None } else { last });
    }

    fn compact(&self, e: Entry, now: Timestamp) {
        let (ledger, amount) = match &e.intent {
            Intent::Transfer(t) => (Some(t.ledger), Some(t.amount().clone())),
            _ => (None, None),
        };
        let summary = CompactedEntry {
            id: e.id,
            owner: e.owner,
            kind: e.kind,
            status: e.status,
            ledger,
            block_index: e.block_index(),
            amount,
            parent: e.parent,
            created_at: e.created_at,
            resolved_at: e.updated_at,
            compacted_at: now,
        };
        let mut store = self.inner.store.borrow_mut();
        store.remove_resolved(e.id);
        store.insert_summary(summary);
        store.bump(counter::COMPACTED | e.status.tag() as u32, 1);
    }

    fn prune_batch(
        &self,
        now: Timestamp,
        retention: u64,
        keep: u64,
        batch: usize,
        scan: usize,
        report: &mut RetentionReport,
    ) {
        let cutoff = now.saturating_sub(keep);
        let cursor = self.inner.retention.prune.get();
        let candidates: Vec<CompactedEntry> = self
            .inner
            .store
            .borrow()
            .summaries_after(cursor)
            .take(scan)
            .collect();
        let mut at_end = candidates.len() < scan;
        let mut last = cursor;
        for s in candidates {
            if report.pruned as usize >= batch {
                at_end = false;
                break;
            }
            report.scanned += 1;
            // Compacted no earlier than `retention` after creation, and creation times do not
            // decrease with the id: nothing from here on has been kept long enough.
            if s.created_at.saturating_add(retention) > cutoff {
                at_end = true;
                break;
            }
            last = Some(s.id);
            if s.compacted_at <= cutoff {
                let mut store = self.inner.store.borrow_mut();
                store.remove_summary(s.id);
                store.bump(counter::SUMMARIES_PRUNED, 1);
                report.pruned += 1;
            }
        }
        self.inner
            .retention
            .prune
            .set(if at_end { None } else { last });
    }
}

/// Summary format 1: `[1] ++ id u64 ++ owner (u8 len ++ bytes) ++ kind tag ++ status tag ++
/// flags (bit 0 ledger, 1 block, 2 amount, 3 parent) ++ [ledger (u8 len ++ bytes)] ++
/// [block u64] ++ [amount (unsigned LEB128, as Candid writes a nat)] ++ [parent u64] ++ created_at u64 ++
/// resolved_at u64 ++ compacted_at u64`, integers big-endian. A later format takes a new first
/// byte; this one is never changed.
const SUMMARY_FORMAT: u8 = 1;

fn encode_summary(s: &CompactedEntry) -> Vec<u8> {
    let mut b = Vec::with_capacity(96);
    b.push(SUMMARY_FORMAT);
    b.extend_from_slice(&s.id.to_be_bytes());
    let owner = s.owner.as_slice();
    b.push(owner.len() as u8);
    b.extend_from_slice(owner);
    b.push(s.kind.tag());
    b.push(s.status.tag());
    let flags = s.ledger.is_some() as u8
        | (s.block_index.is_some() as u8) << 1
        | (s.amount.is_some() as u8) << 2
        | (s.parent.is_some() as u8) << 3;
    b.push(flags);
    if let Some(l) = s.ledger {
        b.push(l.as_slice().len() as u8);
        b.extend_from_slice(l.as_slice());
    }
    if let Some(block) = s.block_index {
        b.extend_from_slice(&block.to_be_bytes());
    }
    if let Some(a) = &s.amount {
        a.encode(&mut b).expect("icjournal: nat encode");
    }
    if let Some(p) = s.parent {
        b.extend_from_slice(&p.to_be_bytes());
    }
    for t in [s.created_at, s.resolved_at, s.compacted_at] {
        b.extend_from_slice(&t.to_be_bytes());
    }
    b
}

fn decode_summary(bytes: &[u8]) -> CompactedEntry {
    // Bytes written by `encode_summary`; anything else is corrupt state: trap.
    let mut r = Reader(bytes);
    assert_eq!(
        r.u8(),
        SUMMARY_FORMAT,
        "icjournal: unsupported summary format"
    );
    let id = r.u64();
    let owner = r.principal();
    let kind_tag = r.u8();
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.tag() == kind_tag)
        .expect("icjournal: corrupt summary kind");
    let status = Status::from_tag(r.u8()).expect("icjournal: corrupt summary status");
    let flags = r.u8();
    let ledger = (flags & 1 != 0).then(|| r.principal());
    let block_index = (flags & 2 != 0).then(|| r.u64());
    let amount = (flags & 4 != 0)
        .then(|| candid::Nat::decode(&mut r.0).expect("icjournal: corrupt summary amount"));
    let parent = (flags & 8 != 0).then(|| r.u64());
    let (created_at, resolved_at, compacted_at) = (r.u64(), r.u64(), r.u64());
    assert!(r.0.is_empty(), "icjournal: corrupt summary");
    CompactedEntry {
        id,
        owner,
        kind,
        status,
        ledger,
        block_index,
        amount,
        parent,
        created_at,
        resolved_at,
        compacted_at,
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "icjournal: corrupt summary");
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        h
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    fn principal(&mut self) -> candid::Principal {
        let n = self.u8() as usize;
        candid::Principal::from_slice(self.take(n))
    }
}

impl Storable for Stored<CompactedEntry> {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(encode_summary(&self.0))
    }
    fn into_bytes(self) -> Vec<u8> {
        encode_summary(&self.0)
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        Stored(decode_summary(&bytes))
    }
    const BOUND: Bound = Bound::Unbounded;
}

#[cfg(test)]
mod tests {
    use super::*;
    use candid::{Nat, Principal};

    #[test]
    fn should_round_trip_summaries_in_format_1() {
        let full = CompactedEntry {
            id: 7,
            owner: Principal::from_slice(&[1, 2, 3]),
            kind: Kind::Icrc2TransferFrom,
            status: Status::Succeeded,
            ledger: Some(Principal::from_slice(&[9; 10])),
            block_index: Some(u64::MAX),
            amount: Some(Nat::from(u128::MAX) * Nat::from(3u8)),
            parent: Some(3),
            created_at: 1,
            resolved_at: 2,
            compacted_at: 3,
        };
        let bytes = encode_summary(&full);
        assert_eq!(bytes[0], 1);
        assert_eq!(decode_summary(&bytes), full);
        let bare = CompactedEntry {
            kind: Kind::Record,
            status: Status::Cancelled,
            ledger: None,
            block_index: None,
            amount: None,
            parent: None,
            ..full
        };
        assert_eq!(decode_summary(&encode_summary(&bare)), bare);
        assert!(encode_summary(&bare).len() < 64);
    }
}
