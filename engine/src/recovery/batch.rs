//! What one pass of a recovery tick takes: a fair batch of due entries, split into the ledger
//! transfers recovered concurrently (bounded per ledger) and the rest.

use crate::journal::{is_transfer, Journal};
use crate::runtime::Runtime;
use crate::types::*;
use candid::Principal;
use ic_stable_structures::Memory;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// At most this many recovery calls to one ledger in flight from one tick (one per transfer
/// being recovered: a transfer's recovery makes its calls one after another). The IC gives each
/// pair of canisters 500 slots for requests in flight (`DEFAULT_QUEUE_CAPACITY`, dfinity/ic
/// rs/replicated_state/src/canister_state/queues.rs); beyond it `call_perform` fails. Recovery
/// takes at most a fifth, so that new flows to the same ledger still find room.
pub const MAX_RECOVERY_CALLS_PER_LEDGER: usize = 100;

/// A pass stops reading entries only to learn their owner once its message has used this many
/// instructions. Reading an entry costs ~1.7M instructions today; after an upgrade the owner
/// cache is empty, and `8 × batch` candidates read in one message would be more than a
/// message should take.
const OWNER_READ_INSTRUCTIONS: u64 = 300_000_000;

/// Owners of entries seen by earlier passes (an entry's owner never changes). Memory only,
/// bounded: cleared when full, relearned from the entries.
#[derive(Debug, Default)]
pub struct OwnerCache {
    owners: RefCell<BTreeMap<EntryId, Principal>>,
}

const OWNER_CACHE_MAX: usize = 65_536;

impl OwnerCache {
    fn get(&self, id: EntryId) -> Option<Principal> {
        self.owners.borrow().get(&id).copied()
    }

    fn insert(&self, id: EntryId, owner: Principal) {
        let mut owners = self.owners.borrow_mut();
        if owners.len() >= OWNER_CACHE_MAX {
            owners.clear();
        }
        owners.insert(id, owner);
    }

    pub fn clear(&self) {
        self.owners.borrow_mut().clear();
    }
}

/// One pass's work.
pub(crate) struct Batch {
    /// Ledger transfers, at most `MAX_RECOVERY_CALLS_PER_LEDGER` per ledger, in batch order.
    pub transfers: Vec<Entry>,
    /// Everything else (local steps, sagas, records), in batch order.
    pub others: Vec<EntryId>,
    /// More was due than this batch takes.
    pub more_due: bool,
}

impl<R: Runtime, M: Memory + 'static> Journal<R, M> {
    /// Up to `batch` due entries, fairly across owners: first one entry per owner, in order of
    /// when they fell due, then the rest in that order. One caller with a thousand entries due
    /// cannot starve another caller's single entry. Looks at no more than `8 × batch` due
    /// entries, and reads at most `max(batch, 64)` of them for their owner, only until
    /// `OWNER_READ_INSTRUCTIONS` are used (owners already seen are cached); a candidate whose
    /// owner was not read counts as "the rest".
    pub(crate) fn fair_batch(&self, now: u64, batch: usize) -> (Vec<EntryId>, bool) {
        let cache = &self.inner.owner_cache;
        let store = self.inner.store.borrow();
        let candidates = store.due(now, batch.saturating_mul(8).max(batch + 1));
        let rt = &self.inner.rt;
        // A pass reads about as many new owners as it takes entries: the candidates' window
        // moves on by about a batch per pass, so the cache keeps up; at least 64, so a small
        // batch still sees past a caller with many entries at once.
        let mut reads = batch.max(64);
        let mut seen = BTreeSet::new();
        let (mut first, mut rest) = (Vec::new(), Vec::new());
        for (_, id) in &candidates {
            let owner = cache.get(*id).or_else(|| {
                if first.len() >= batch
                    || reads == 0
                    || rt.instruction_counter() > OWNER_READ_INSTRUCTIONS
                {
                    return None;
                }
                reads -= 1;
                let owner = store.get(*id).map(|e| e.owner)?;
                cache.insert(*id, owner);
                Some(owner)
            });
            if owner.is_some_and(|o| seen.insert(o)) && first.len() < batch {
                first.push(*id);
            } else {
                rest.push(*id);
            }
        }
        let more = candidates.len() > batch;
        first.extend(rest);
        first.truncate(batch);
        (first, more)
    }

    /// The tick's next batch, split for recovery.
    pub(crate) fn next_batch(&self, now: u64, batch: usize) -> Batch {
        let (due, mut more_due) = self.fair_batch(now, batch);
        let mut per_ledger = BTreeMap::<Principal, usize>::new();
        let (mut transfers, mut others) = (Vec::new(), Vec::new());
        for id in due {
            let Some(e) = self.get(id) else { continue };
            match &e.intent {
                Intent::Transfer(t) if is_transfer(e.kind) => {
                    let n = per_ledger.entry(t.ledger).or_default();
                    if *n < MAX_RECOVERY_CALLS_PER_LEDGER {
                        *n += 1;
                        transfers.push(e);
                    } else {
                        more_due = true;
                    }
                }
                _ => others.push(id),
            }
        }
        Batch {
            transfers,
            others,
            more_due,
        }
    }
}
