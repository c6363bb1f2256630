//! The journal: flows (transfer, record, local step, saga), recovery timer, manual queue,
//! queries and metrics, over `Store` (stable memory) and a `Runtime`.
//!
//! Message discipline (DFINITY's security guidance, "Journaling"): an intent is written before
//! each failable step; the message then ends at the step's `await`, which commits the intent.
//! The result is written in the callback, followed by a self-call whose `await` commits it
//! before anything else (host code included) can trap — unless nothing but the reply follows
//! (`execute_then_reply`): then a trap is recovered exactly and the commit is elided
//! (docs/design.md, "When a commit is needed"). A `FlowGuard` (Drop) marks an in-flight entry `Unknown`
//! when the callback traps: ic-cdk ≥0.18 drops the task's futures in `call_on_cleanup`
//! (`ic-cdk` `call.rs` `cleanup` → `ic_cdk_executor::cancel_task`), and state written by the
//! cleanup persists.

use crate::config::Config;
use crate::error::{JournalError, OpenError};
use crate::lookup::LookupCache;
use crate::metrics::*;
use crate::runtime::{Runtime, TimerHandle, Wait};
use crate::status::{self, Actor};
use crate::storage::{counter, intent_charge, key_kind, KeyRecord, Memories, Store};
use crate::types::*;
use candid::Principal;
use ic_stable_structures::Memory;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// Options of a new entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryOptions {
    /// While the entry is unresolved, no other entry may take this key (I3).
    pub lock_key: Option<String>,
    /// The caller's key of this request: creating again with the same key returns
    /// `DuplicateRequest { entry_id }` (same request) or `IdempotencyKeyReused` (a different
    /// one), whatever the first entry's status, for as long as the entry is kept.
    pub idempotency: Option<IdempotencyKey>,
}

/// An idempotency key and the hash of the request it was used with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: u64,
}

impl IdempotencyKey {
    /// The key for `request` (any Candid value describing the request as submitted).
    pub fn for_request<T: candid::CandidType>(key: String, request: &T) -> Self {
        let bytes = candid::encode_one(request).expect("icjournal: candid encode");
        IdempotencyKey {
            key,
            request_hash: crate::storage::fnv1a(&bytes),
        }
    }
}

impl From<Option<String>> for EntryOptions {
    /// A lock key only (or none).
    fn from(lock_key: Option<String>) -> Self {
        EntryOptions {
            lock_key,
            idempotency: None,
        }
    }
}

/// Host-local step handler: applies the step's state change and returns a reply, or an error
/// (definitive failure). It runs in the same message as the journaling of its result, so a
/// trap rolls both back and the step is retried — the handler itself must not await.
pub type LocalHandler = Rc<dyn Fn(&[u8]) -> Result<Vec<u8>, String>>;

#[cfg(any(test, feature = "planted-bugs"))]
pub use crate::planted::PlantedBug;

pub(crate) struct Inner<R: Runtime, M: Memory + 'static> {
    pub(crate) rt: R,
    pub(crate) store: RefCell<Store<M>>,
    pub(crate) config: RefCell<Config>,
    pub(crate) handlers: RefCell<BTreeMap<String, LocalHandler>>,
    /// Start time of the running tick (overlap guard; a lease so a lost reset cannot wedge it).
    /// The running tick: (its generation, start time). An overlap guard with a lease, so a
    /// tick whose end was lost cannot wedge recovery.
    pub(crate) tick_running: Cell<Option<(u64, u64)>>,
    pub(crate) tick_generation: Cell<u64>,
    /// The recovery interval timer, once armed.
    pub(crate) timer: Cell<Option<TimerHandle>>,
    /// Ticks from the timer do nothing while paused.
    pub(crate) paused: Cell<bool>,
    /// What lookups learned about each ledger (endpoints, block times). Memory only.
    pub(crate) lookup_cache: LookupCache,
    /// Owners of entries the recovery batches have seen. Memory only.
    pub(crate) owner_cache: crate::recovery::batch::OwnerCache,
    /// Where retention's next bounded step continues. Memory only.
    pub(crate) retention: crate::retention::Cursors,
    /// Entries created in one message: (its canister version, their ids). Memory only.
    pub(crate) created_now: RefCell<(u64, BTreeSet<EntryId>)>,
}

/// Handle to the journal. Cheap to clone (shared `Rc`).
pub struct Journal<R: Runtime, M: Memory + 'static> {
    pub(crate) inner: Rc<Inner<R, M>>,
}

impl<R: Runtime, M: Memory + 'static> Clone for Journal<R, M> {
    fn clone(&self) -> Self {
        Journal {
            inner: self.inner.clone(),
        }
    }
}

/// Marks an in-flight entry `Unknown` if the future is dropped before the result was journaled
/// (trap in the callback → cleanup drops the future). Decides from stable state, not from a
/// heap flag, because a trap rolls back heap and stable memory alike.
pub(crate) struct FlowGuard<R: Runtime, M: Memory + 'static> {
    pub(crate) journal: Journal<R, M>,
    pub(crate) id: EntryId,
    /// Status the entry has while this flow owns it, and the attempt number it made.
    pub(crate) owned_status: Status,
    pub(crate) attempt: u32,
}

impl<R: Runtime, M: Memory + 'static> Drop for FlowGuard<R, M> {
    fn drop(&mut self) {
        let j = &self.journal;
        let Some(e) = j.inner.store.borrow().get(self.id) else {
            return;
        };
        if e.status == self.owned_status && e.attempts == self.attempt && e.outcome.is_none() {
            let now = j.now();
            let at = now.saturating_add(j.config().backoff(e.attempts.max(1)));
            j.transition_or_park(
                self.id,
                Status::Unknown,
                "flow interrupted (trap in callback)",
                |e| {
                    e.next_attempt_at = Some(at);
                },
            );
        }
    }
}

/// What follows a flow's journaled result in the same message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// More code runs (the next saga step, the host's code): commit the result first.
    Continue,
    /// Only the reply, or engine code that commits before any host code runs: a trap is
    /// recovered exactly, so no commit.
    Reply,
}

pub(crate) fn is_transfer(k: Kind) -> bool {
    matches!(k, Kind::Icrc1Transfer | Kind::Icrc2TransferFrom)
}

impl<R: Runtime, M: Memory + Clone + 'static> Journal<R, M> {
    /// Create (empty memories) or load (existing layout) the journal.
    pub fn open(rt: R, memories: Memories<M>, config: Config) -> Result<Self, OpenError> {
        config.validate()?;
        let store = Store::open(memories)?;
        // A fresh journal runs without a planted bug, as a fresh canister heap would.
        #[cfg(any(test, feature = "planted-bugs"))]
        crate::planted::set(PlantedBug::None);
        Ok(Journal {
            inner: Rc::new(Inner {
                rt,
                store: RefCell::new(store),
                config: RefCell::new(config),
                handlers: RefCell::new(BTreeMap::new()),
                tick_running: Cell::new(None),
                tick_generation: Cell::new(0),
                timer: Cell::new(None),
                paused: Cell::new(false),
                lookup_cache: LookupCache::default(),
                owner_cache: Default::default(),
                retention: Default::default(),
                created_now: RefCell::new((u64::MAX, BTreeSet::new())),
            }),
        })
    }

    /// Replace the stable structures by a fresh load of `memories` (tests: models the heap
    /// rollback of a trapped message after its stable memory was restored, or an upgrade).
    #[doc(hidden)]
    pub fn reload(&self, memories: Memories<M>) -> Result<(), OpenError> {
        let store = Store::open(memories)?;
        *self.inner.store.borrow_mut() = store;
        self.inner.owner_cache.clear();
        // Entries it names may have been rolled back, and their ids handed out again.
        *self.inner.created_now.borrow_mut() = (u64::MAX, BTreeSet::new());
        Ok(())
    }
}

impl<R: Runtime, M: Memory + 'static> Journal<R, M> {
    pub fn runtime(&self) -> &R {
        &self.inner.rt
    }

    pub fn config(&self) -> Config {
        self.inner.config.borrow().clone()
    }

    pub fn set_config(&self, config: Config) -> Result<(), OpenError> {
        config.validate()?;
        *self.inner.config.borrow_mut() = config;
        Ok(())
    }

    /// Register a host-local step handler (call in init/post_upgrade before timers fire).
    pub fn register_local_handler(&self, name: &str, handler: LocalHandler) {
        self.inner
            .handlers
            .borrow_mut()
            .insert(name.to_string(), handler);
    }

    /// Plant a known bug (see `planted`); test builds and `planted-bugs` builds only.
    #[cfg(any(test, feature = "planted-bugs"))]
    pub fn plant_bug(&self, bug: PlantedBug) {
        crate::planted::set(bug);
    }

    pub(crate) fn now(&self) -> u64 {
        self.inner.rt.now()
    }

    pub(crate) fn wait(&self) -> Wait {
        match self.inner.config.borrow().call_timeout_secs {
            Some(t) => Wait::Bounded { timeout_secs: t },
            None => Wait::Unbounded,
        }
    }

    /// The single place where statuses change: checks the edge, applies `mutate`, bounds the
    /// history, appends the audit record and maintains every index (via `Store::write`).
    pub(crate) fn transition(
        &self,
        id: EntryId,
        to: Status,
        actor: Actor,
        who: Option<Principal>,
        note: &str,
        mutate: impl FnOnce(&mut Entry),
    ) -> Result<Entry, JournalError> {
        let old = self
            .inner
            .store
            .borrow()
            .get(id)
            .ok_or(JournalError::NotFound { entry_id: id })?;
        if !status::is_legal(old.status, to, actor) {
            return Err(JournalError::InvalidTransition {
                entry_id: id,
                from: old.status,
                to,
            });
        }
        // Time is monotonic but not strictly: never let updated_at go backwards.
        let now = self.now().max(old.updated_at);
        let mut new = old.clone();
        mutate(&mut new);
        new.status = to;
        new.updated_at = now;
        if to.is_terminal() || to == Status::ManualReview {
            new.next_attempt_at = None;
        }
        if to != Status::ManualReview {
            new.manual_reason = None;
        }
        let max = self.inner.config.borrow().max_history as usize;
        new.history.push(HistoryItem {
            at: now,
            from: old.status,
            to,
            note: truncate(note, 256),
        });
        if new.history.len() > max {
            let drop = new.history.len() - max;
            new.history.drain(..drop);
            new.history_dropped = new.history_dropped.saturating_add(drop as u32);
        }
        let mut store = self.inner.store.borrow_mut();
        // The write checks the block claim (and refuses before writing anything), so it comes
        // before the audit record: a refused change leaves no record of itself.
        store
            .write(Some(&old), &new)
            .map_err(|c| JournalError::EvidenceMismatch {
                entry_id: id,
                block_index: c.block,
                message: format!("block {} already proves entry {}", c.block, c.by),
            })?;
        store.append_audit(
            now,
            id,
            who,
            AuditEvent::StatusChanged {
                from: old.status,
                to,
                note: truncate(note, 256),
            },
        );
        drop(store);
        if to.is_terminal() || to == Status::ManualReview {
            if let Some(p) = new.parent {
                self.wake(p);
            }
        }
        Ok(new)
    }

    /// Update fields without a status change (scheduling, scan progress, attempts).
    pub(crate) fn update(&self, id: EntryId, mutate: impl FnOnce(&mut Entry)) -> Option<Entry> {
        let old = self.inner.store.borrow().get(id)?;
        let mut new = old.clone();
        mutate(&mut new);
        new.status = old.status;
        new.updated_at = self.now().max(old.updated_at);
        // The status does not change: no block is claimed, so the write cannot be refused.
        self.inner
            .store
            .borrow_mut()
            .write(Some(&old), &new)
            .expect("icjournal: an update without a status change claims no block");
        Some(new)
    }

    /// Make an unresolved entry due now (a saga whose step resolved).
    pub(crate) fn wake(&self, id: EntryId) {
        let now = self.now();
        let _ = self.update(id, |e| {
            if e.status.is_unresolved() && e.status != Status::ManualReview {
                e.next_attempt_at = Some(now);
            }
        });
    }

    pub(crate) fn validate_key(&self, field: &str, v: &str) -> Result<(), JournalError> {
        let max = self.inner.config.borrow().max_key_bytes as u64;
        if v.len() as u64 > max {
            return Err(JournalError::PayloadTooLarge {
                field: field.into(),
                size: v.len() as u64,
                max,
            });
        }
        if v.is_empty() {
            return Err(JournalError::InvalidArgument {
                message: format!("{field} must not be empty"),
            });
        }
        Ok(())
    }

    pub(crate) fn validate_payload(&self, field: &str, p: &[u8]) -> Result<(), JournalError> {
        let max = self.inner.config.borrow().max_payload_bytes as u64;
        if p.len() as u64 > max {
            return Err(JournalError::PayloadTooLarge {
                field: field.into(),
                size: p.len() as u64,
                max,
            });
        }
        Ok(())
    }

    pub(crate) fn validate_action(&self, a: &StepAction) -> Result<(), JournalError> {
        match a {
            StepAction::Transfer(_) => Ok(()),
            StepAction::Local(l) => {
                self.validate_key("handler", &l.handler)?;
                self.validate_payload("payload", &l.payload)
            }
        }
    }

    /// Create an entry (after every check; nothing is written on error). `build` receives the
    /// new id so transfers can put it in their memo.
    pub(crate) fn create(
        &self,
        owner: Principal,
        kind: Kind,
        opts: EntryOptions,
        parent: Option<EntryId>,
        build: impl FnOnce(EntryId, Timestamp) -> Intent,
    ) -> Result<Entry, JournalError> {
        if owner == Principal::anonymous() {
            return Err(JournalError::AnonymousCaller);
        }
        let EntryOptions {
            lock_key,
            idempotency,
        } = opts;
        // The same request again under the same key: the existing entry, whatever its status
        // (checked before the lock: a retry of a request that holds its own lock is not a
        // second flow).
        if let Some(k) = &idempotency {
            self.validate_key("idempotency_key", &k.key)?;
            if let Some(r) = self
                .inner
                .store
                .borrow()
                .key(owner, key_kind::IDEMPOTENCY, &k.key)
            {
                return Err(if r.request_hash == k.request_hash {
                    JournalError::DuplicateRequest {
                        entry_id: r.entry_id,
                    }
                } else {
                    JournalError::IdempotencyKeyReused {
                        entry_id: r.entry_id,
                    }
                });
            }
        }
        if let Some(k) = &lock_key {
            self.validate_key("lock_key", k)?;
            let holder = self.inner.store.borrow().lock_holder(k);
            #[cfg(any(test, feature = "planted-bugs"))]
            let holder = holder.filter(|h| {
                !crate::planted::is(crate::planted::PlantedBug::LockReleasedEarly)
                    || self.get(*h).is_some_and(|e| e.status == Status::Pending)
            });
            if let Some(holder) = holder {
                return Err(JournalError::LockHeld {
                    lock_key: k.clone(),
                    entry_id: holder,
                });
            }
        }
        let cfg = self.config();
        self.check_storage_room(&cfg)?;
        let now = self.now();
        let usage = self.inner.store.borrow().owner_usage(&owner);
        if usage.unresolved >= cfg.max_unresolved_per_owner {
            return Err(JournalError::QuotaExceeded {
                owner,
                limit: "max_unresolved_per_owner".into(),
                max: cfg.max_unresolved_per_owner as u64,
            });
        }
        let totals = self.inner.store.borrow().owner_totals(&owner);
        if totals.entries >= cfg.max_entries_per_owner {
            return Err(JournalError::QuotaExceeded {
                owner,
                limit: "max_entries_per_owner".into(),
                max: cfg.max_entries_per_owner,
            });
        }
        let id = self.inner.store.borrow().next_id();
        let intent = build(id, now);
        let charge = intent_charge(&intent);
        if usage.bytes.saturating_add(charge) > cfg.max_unresolved_bytes_per_owner {
            return Err(JournalError::QuotaExceeded {
                owner,
                limit: "max_unresolved_bytes_per_owner".into(),
                max: cfg.max_unresolved_bytes_per_owner,
            });
        }
        if totals.bytes.saturating_add(charge) > cfg.max_bytes_per_owner {
            return Err(JournalError::QuotaExceeded {
                owner,
                limit: "max_bytes_per_owner".into(),
                max: cfg.max_bytes_per_owner,
            });
        }
        let allocated = self.inner.store.borrow_mut().allocate_id();
        debug_assert_eq!(allocated, id);
        let lease = match kind {
            Kind::Record => cfg.record_timeout_ns,
            _ => cfg.in_flight_lease_ns,
        };
        let entry = Entry {
            id,
            owner,
            kind,
            lock_key,
            intent,
            status: Status::Pending,
            attempts: 0,
            created_at: now,
            updated_at: now,
            // Backstop: if no flow ever runs this entry (or its Drop guard could not run), the
            // recovery timer takes it over when the lease ends (I2).
            next_attempt_at: Some(now.saturating_add(lease)),
            outcome: None,
            last_error: None,
            manual_reason: None,
            parent,
            scan: None,
            history: vec![],
            history_dropped: 0,
            blocked_on: None,
        };
        let mut store = self.inner.store.borrow_mut();
        store
            .write(None, &entry)
            .expect("icjournal: a new entry has no outcome, so it claims no block");
        if let Some(k) = idempotency {
            store.set_key(
                owner,
                key_kind::IDEMPOTENCY,
                k.key,
                KeyRecord {
                    entry_id: id,
                    request_hash: k.request_hash,
                },
            );
        }
        if let Some(k) = &entry.lock_key {
            store.set_key(
                owner,
                key_kind::LOCK,
                k.clone(),
                KeyRecord {
                    entry_id: id,
                    request_hash: 0,
                },
            );
        }
        store.append_audit(now, id, Some(owner), AuditEvent::Created { kind });
        drop(store);
        let version = self.inner.rt.canister_version();
        let mut created = self.inner.created_now.borrow_mut();
        if created.0 != version {
            *created = (version, BTreeSet::new());
        }
        created.1.insert(id);
        Ok(entry)
    }

    /// Whether `id` was created in the message now running. Then nothing of it is committed
    /// yet: a trap anywhere in this message rolls back the entry's creation with all it did,
    /// and no entry is left for recovery to retry. Unknown after an upgrade (`false`: the
    /// safe answer, it only costs a commit).
    pub(crate) fn created_in_this_message(&self, id: EntryId) -> bool {
        let created = self.inner.created_now.borrow();
        created.0 == self.inner.rt.canister_version() && created.1.contains(&id)
    }

    /// New work is refused while memory is within `new_work_headroom_bytes` of its limit: the
    /// room left is for finishing what was started (recovery, operator verbs and their audit
    /// records), so the canister never reaches the point where every state change traps for
    /// want of memory. Measured as the IC measures it (`Runtime::memory_usage_bytes`) where the
    /// host can: the journal's own virtual memories under-count it by up to a bucket each.
    fn check_storage_room(&self, cfg: &Config) -> Result<(), JournalError> {
        let Some(limit) = cfg.stable_memory_limit_bytes else {
            return Ok(());
        };
        let journal = self.inner.store.borrow().stable_bytes();
        let used = self
            .inner
            .rt
            .memory_usage_bytes()
            .map_or(journal, |m| m.max(journal));
        if used.saturating_add(cfg.new_work_headroom_bytes) > limit {
            return Err(JournalError::StorageFull {
                used_bytes: used,
                limit_bytes: limit,
            });
        }
        Ok(())
    }

    pub(crate) fn flow_result(&self, id: EntryId) -> FlowResult {
        let e = self.get(id).expect("flow entry exists");
        FlowResult {
            entry_id: id,
            status: e.status,
            outcome: e.outcome,
        }
    }

    pub(crate) async fn self_commit(&self) {
        let (method, wait) = (
            self.inner.config.borrow().commit_method.clone(),
            self.wait(),
        );
        let arg = candid::encode_args(()).expect("encode ()");
        // Reply or reject does not matter: the commit happened when this message ended at the
        // await. A failure to even send means nothing was committed yet; the next await will.
        let _ = self
            .inner
            .rt
            .call(self.inner.rt.self_id(), &method, wait, arg)
            .await;
    }

    pub(crate) fn lease_until(&self) -> Timestamp {
        self.now()
            .saturating_add(self.inner.config.borrow().in_flight_lease_ns)
    }

    /// Record success, or a contradiction if the entry already holds a different result (I4).
    pub(crate) fn apply_success(
        &self,
        id: EntryId,
        block: u64,
        source: EvidenceSource,
        path: Option<RecoveryPath>,
    ) {
        let Some(cur) = self.get(id) else { return };
        if cur.status.is_terminal() || cur.status == Status::ManualReview {
            let consistent = matches!(cur.outcome, Some(Outcome::Succeeded { block_index: Some(b), .. }) if b == block);
            if !consistent {
                self.contradiction(
                    id,
                    &format!(
                        "evidence of execution at block {block} ({source:?}) but entry is {:?}",
                        cur.status
                    ),
                );
            }
            return;
        }
        let outcome = Outcome::Succeeded {
            block_index: Some(block),
            reply: vec![],
            source,
        };
        // The write claims the block and refuses one that already proves another entry.
        match self.transition(
            id,
            Status::Succeeded,
            Actor::Engine,
            None,
            &format!("executed at block {block}"),
            |e| {
                e.outcome = Some(outcome);
            },
        ) {
            Ok(_) => {
                if let Some(p) = path {
                    self.inner
                        .store
                        .borrow_mut()
                        .bump(counter::PATH | p.tag() as u32, 1);
                }
            }
            Err(JournalError::EvidenceMismatch { message, .. }) => self.to_manual(
                id,
                &format!(
                    "{message}, yet it matches this transfer ({source:?}): one block cannot \
                     prove two entries"
                ),
            ),
            Err(_) => {}
        }
    }

    pub(crate) fn apply_failure(&self, id: EntryId, reason: FailureReason, source: EvidenceSource) {
        let Some(cur) = self.get(id) else { return };
        if cur.status.is_terminal() || cur.status == Status::ManualReview {
            if !matches!(cur.outcome, Some(Outcome::Failed { .. })) {
                self.contradiction(
                    id,
                    &format!(
                        "evidence of failure {reason:?} but entry is {:?}",
                        cur.status
                    ),
                );
            }
            return;
        }
        let note = format!("failed: {reason:?}");
        self.transition_or_park(id, Status::Failed, &note, |e| {
            e.outcome = Some(Outcome::Failed { reason, source });
        });
    }

    pub(crate) fn to_manual(&self, id: EntryId, reason: &str) {
        self.to_manual_blocked(id, reason, None);
    }

    /// To manual review; `blocked_on`: the saga waits for an operator to act on that entry.
    /// If even that change is refused (the entry is already with an operator, or final), the
    /// refusal is recorded as a contradiction — never dropped.
    pub(crate) fn to_manual_blocked(&self, id: EntryId, reason: &str, blocked_on: Option<EntryId>) {
        let r = self.transition(id, Status::ManualReview, Actor::Engine, None, reason, |e| {
            e.manual_reason = Some(truncate(reason, 1024));
            e.blocked_on = blocked_on;
        });
        if let Err(err) = r {
            self.contradiction(
                id,
                &format!("could not go to manual review ({err}): {reason}"),
            );
        }
    }

    /// A status change a flow relies on. If the status machine refuses it — the entry changed
    /// under the flow in a way the flow did not expect — the entry goes to manual review with
    /// the reason, instead of silently staying where it is (and being re-driven forever).
    pub(crate) fn transition_or_park(
        &self,
        id: EntryId,
        to: Status,
        note: &str,
        mutate: impl FnOnce(&mut Entry),
    ) -> Option<Entry> {
        match self.transition(id, to, Actor::Engine, None, note, mutate) {
            Ok(e) => Some(e),
            Err(JournalError::InvalidTransition { from, to, .. }) => {
                self.to_manual(
                    id,
                    &format!(
                        "the flow needed the impossible status change {from:?} -> {to:?} ({note}); \
                         it cannot continue on its own"
                    ),
                );
                None
            }
            Err(_) => None,
        }
    }

    pub(crate) fn contradiction(&self, id: EntryId, detail: &str) {
        let now = self.now();
        let mut s = self.inner.store.borrow_mut();
        s.bump(counter::CONTRADICTIONS, 1);
        s.append_audit(
            now,
            id,
            None,
            AuditEvent::Contradiction {
                detail: truncate(detail, 512),
            },
        );
    }

    pub fn get(&self, id: EntryId) -> Option<Entry> {
        self.inner.store.borrow().get(id)
    }

    /// Owner-scoped read: another owner's entry is reported as not found (I7). An entry
    /// retention compacted answers `Compacted` with its summary (to its owner) or `Pruned`
    /// once that is gone too (the owner is no longer known then: it says only that the id
    /// existed, which `entries_total` tells anyone).
    pub fn get_owned(&self, owner: Principal, id: EntryId) -> Result<Entry, JournalError> {
        match self.lookup(id) {
            Ok(e) if e.owner == owner => Ok(e),
            Err(JournalError::Compacted { entry }) if entry.owner == owner => {
                Err(JournalError::Compacted { entry })
            }
            Err(e @ JournalError::Pruned { .. }) => Err(e),
            _ => Err(JournalError::NotFound { entry_id: id }),
        }
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
