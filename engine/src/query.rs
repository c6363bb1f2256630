//! Reads: listings served from indexes, the audit trail, metrics.

use crate::journal::Journal;
use crate::metrics::*;
use crate::runtime::Runtime;
use crate::storage::counter;
use crate::types::*;
use candid::Principal;
use ic_stable_structures::Memory;
/// Bytes of the audit log's memories (offsets 9 and 10 of the layout).
pub fn audit_bytes(memory_bytes: &[u64]) -> u64 {
    memory_bytes.get(9..=10).map_or(0, |m| m.iter().sum())
}

impl<R: Runtime, M: Memory + 'static> Journal<R, M> {
    /// Bytes held by each of the journal's memories, by layout offset (`storage.rs`).
    pub fn memory_bytes(&self) -> Vec<u64> {
        self.inner.store.borrow().memory_bytes()
    }

    /// The stream of the meta memory (`storage/segments.rs`) that holds byte `off` of it, if
    /// any: benchmarks attribute stable reads to structures with it.
    pub fn meta_stream_at(&self, off: u64) -> Option<u8> {
        self.inner.store.borrow().meta_stream_at(off)
    }

    /// Bytes in use of each stream of the meta memory (`storage/segments.rs`), by stream id.
    pub fn stream_bytes(&self) -> Vec<u64> {
        self.inner.store.borrow().stream_bytes()
    }

    /// The entry `owner`'s key points to: the entry created with that idempotency key, or the
    /// latest entry that took that lock key (also once it is final). Keys are the engine's
    /// (a host that namespaces lock keys passes the namespaced key).
    pub fn find_by_key(&self, owner: Principal, key: &EntryKey) -> Option<EntryId> {
        let (kind, k) = match key {
            EntryKey::IdempotencyKey(k) => (crate::storage::key_kind::IDEMPOTENCY, k),
            EntryKey::LockKey(k) => (crate::storage::key_kind::LOCK, k),
        };
        self.inner
            .store
            .borrow()
            .key(owner, kind, k)
            .map(|r| r.entry_id)
    }

    pub fn lock_holder(&self, lock_key: &str) -> Option<EntryId> {
        self.inner.store.borrow().lock_holder(lock_key)
    }

    pub fn audit(&self, start_seq: u64, limit: u32) -> Vec<AuditRecord> {
        let limit = limit.min(self.inner.config.borrow().max_page_size) as u64;
        self.inner.store.borrow().audit_range(start_seq, limit)
    }

    /// Keyset-paginated listing, served from an index: O(log n + scanned). `kind` and
    /// `created_before` are filters applied while scanning at most `10 × limit` index entries;
    /// a short page with `next` set means "continue from there". A resolved status across all
    /// owners has no index: it filters a scan of the entries by id, with the same bound; an
    /// owner's entries of one status are a filtered scan of the owner's entries (resolved
    /// statuses) or of the status's (unresolved ones), with the same bound.
    pub fn list(&self, filter: &ListFilter, page: &PageRequest) -> Page<EntrySummary> {
        let limit = page
            .limit
            .clamp(1, self.inner.config.borrow().max_page_size) as usize;
        let max_scan = limit.saturating_mul(10);
        let store = self.inner.store.borrow();
        let ids: Box<dyn Iterator<Item = EntryId>> = match (filter.owner, filter.status) {
            // Unresolved work is small: its status index, filtered by owner below (if any).
            (_, Some(s)) if s.is_unresolved() => Box::new(store.ids_by_status(s, page.start_after)),
            // The owner's rows do not carry the status (storage layout 4): filtered below.
            (Some(o), s) => Box::new(
                store
                    .ids_by_owner(o, s, page.start_after, max_scan + 1)
                    .into_iter(),
            ),
            // Resolved entries have no status index (storage layout 3): scan by id, filtered
            // below, `max_scan` ids a page. Ids only: each entry is read once, below.
            (None, _) => Box::new(store.ids_after(page.start_after)),
        };
        let mut items = Vec::new();
        let mut last = None;
        let mut exhausted = true;
        for (scanned, id) in ids.enumerate() {
            if scanned >= max_scan || items.len() >= limit {
                exhausted = false;
                break;
            }
            last = Some(id);
            let Some(e) = store.get(id) else { continue };
            if let Some(t) = filter.created_before {
                if e.created_at > t {
                    // created_at is non-decreasing in id: nothing later can match.
                    break;
                }
            }
            if filter.kind.is_some_and(|k| k != e.kind)
                || filter.status.is_some_and(|s| s != e.status)
                || filter.owner.is_some_and(|o| o != e.owner)
            {
                continue;
            }
            items.push(EntrySummary::from(&e));
        }
        Page {
            next: if exhausted { None } else { last },
            items,
        }
    }

    pub fn metrics(&self) -> Metrics {
        let store = self.inner.store.borrow();
        let now = self.now();
        let oldest = store
            .oldest_unresolved()
            .and_then(|id| store.get(id))
            .map(|e| now.saturating_sub(e.created_at));
        Metrics {
            timestamp: now,
            // Every entry ever made: ids are dense and never reused, and retention removes
            // entries (its summaries are counted below).
            entries_total: store.next_id(),
            entries_by_status: Status::ALL
                .iter()
                .map(|s| StatusCount {
                    status: *s,
                    count: store.counter(counter::STATUS | s.tag() as u32),
                })
                .collect(),
            entries_by_kind: Kind::ALL
                .iter()
                .map(|k| KindCount {
                    kind: *k,
                    count: store.counter(counter::KIND | k.tag() as u32),
                })
                .collect(),
            recoveries_by_path: RecoveryPath::ALL
                .iter()
                .map(|p| PathCount {
                    path: *p,
                    count: store.counter(counter::PATH | p.tag() as u32),
                })
                .collect(),
            attempts_total: store.counter(counter::ATTEMPTS),
            oldest_unresolved_age_ns: oldest,
            manual_queue_depth: store.counter(counter::STATUS | Status::ManualReview.tag() as u32),
            stable_memory_bytes: store.stable_bytes(),
            audit_records: store.audit_len(),
            contradictions: store.counter(counter::CONTRADICTIONS),
            recovery_ticks: store.counter(counter::TICKS),
            compacted_by_status: Some(
                Status::ALL
                    .iter()
                    .filter(|s| s.is_terminal())
                    .map(|s| StatusCount {
                        status: *s,
                        count: store.counter(counter::COMPACTED | s.tag() as u32),
                    })
                    .collect(),
            ),
            summaries: Some(store.summaries_len()),
            summaries_pruned: Some(store.counter(counter::SUMMARIES_PRUNED)),
            audit_bytes: Some(audit_bytes(&store.memory_bytes())),
            claims_in_tree: Some(store.claims_in_tree()),
        }
    }

    /// Earliest time the recovery timer has work (for hosts that schedule more precisely).
    pub fn next_due(&self) -> Option<Timestamp> {
        self.inner.store.borrow().next_due()
    }
}
