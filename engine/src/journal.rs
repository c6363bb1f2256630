//! The journal: flows (transfer, record, local step, saga), recovery timer, manual queue,
//! queries and metrics, over `Store` (stable memory) and a `Runtime`.
//!
//! Message discipline (BRIEF §1, seeds "Journaling"): an intent is written before each failable
//! step; the message then ends at the step's `await`, which commits the intent. The result is
//! written in the callback, followed by a self-call whose `await` commits it before anything
//! else (host code included) can trap. A `FlowGuard` (Drop) marks an in-flight entry `Unknown`
//! when the callback traps: ic-cdk ≥0.18 drops the task's futures in `call_on_cleanup`
//! (`ic-cdk` `call.rs` `cleanup` → `ic_cdk_executor::cancel_task`), and state written by the
//! cleanup persists.

use crate::config::Config;
use crate::error::{JournalError, OpenError};
use crate::ledger::{self, CallOutcome};
use crate::lookup;
use crate::memo;
use crate::metrics::*;
use crate::recovery::{self, Decision, Observation, Plan};
use crate::runtime::{LocalFuture, Runtime, Wait};
use crate::status::{self, Actor};
use crate::storage::{counter, intent_charge, Approvals, Memories, Store};
use crate::types::*;
use candid::Principal;
use ic_stable_structures::Memory;
use icrc_ledger_types::icrc1::transfer::{Memo, TransferArg};
use icrc_ledger_types::icrc2::transfer_from::TransferFromArgs;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Host-local step handler: applies the step's state change and returns a reply, or an error
/// (definitive failure). It runs in the same message as the journaling of its result, so a
/// trap rolls both back and the step is retried — the handler itself must not await.
pub type LocalHandler = Rc<dyn Fn(&[u8]) -> Result<Vec<u8>, String>>;

/// Bugs planted on purpose to prove the property-test checker catches them (tests only).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PlantedBug {
    #[default]
    None,
    /// Resend with a fresh created_at_time (defeats ledger deduplication: double spend).
    ResendWithNewCreatedAtTime,
}

struct Inner<R: Runtime, M: Memory + 'static> {
    rt: R,
    store: RefCell<Store<M>>,
    config: RefCell<Config>,
    handlers: RefCell<BTreeMap<String, LocalHandler>>,
    /// Start time of the running tick (overlap guard; a lease so a lost reset cannot wedge it).
    tick_running_since: Cell<Option<u64>>,
    timer_generation: Cell<u64>,
    #[cfg(test)]
    bug: Cell<PlantedBug>,
}

/// Handle to the journal. Cheap to clone (shared `Rc`).
pub struct Journal<R: Runtime, M: Memory + 'static> {
    inner: Rc<Inner<R, M>>,
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
struct FlowGuard<R: Runtime, M: Memory + 'static> {
    journal: Journal<R, M>,
    id: EntryId,
    /// Status the entry has while this flow owns it, and the attempt number it made.
    owned_status: Status,
    attempt: u32,
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
            let _ = j.transition(
                self.id,
                Status::Unknown,
                Actor::Engine,
                None,
                "flow interrupted (trap in callback)",
                |e| {
                    e.next_attempt_at = Some(at);
                },
            );
        }
    }
}

/// Resets the tick overlap guard when the tick ends or is dropped by a trap's cleanup.
struct TickGuard<R: Runtime, M: Memory + 'static>(Journal<R, M>);

impl<R: Runtime, M: Memory + 'static> Drop for TickGuard<R, M> {
    fn drop(&mut self) {
        self.0.inner.tick_running_since.set(None);
    }
}

fn is_transfer(k: Kind) -> bool {
    matches!(k, Kind::Icrc1Transfer | Kind::Icrc2TransferFrom)
}

impl<R: Runtime, M: Memory + Clone + 'static> Journal<R, M> {
    /// Create (empty memories) or load (existing layout) the journal.
    pub fn open(rt: R, memories: Memories<M>, config: Config) -> Result<Self, OpenError> {
        config.validate()?;
        let store = Store::open(memories)?;
        Ok(Journal {
            inner: Rc::new(Inner {
                rt,
                store: RefCell::new(store),
                config: RefCell::new(config),
                handlers: RefCell::new(BTreeMap::new()),
                tick_running_since: Cell::new(None),
                timer_generation: Cell::new(0),
                #[cfg(test)]
                bug: Cell::new(PlantedBug::None),
            }),
        })
    }

    /// Replace the stable structures by a fresh load of `memories` (tests: models the heap
    /// rollback of a trapped message after its stable memory was restored, or an upgrade).
    #[doc(hidden)]
    pub fn reload(&self, memories: Memories<M>) -> Result<(), OpenError> {
        let store = Store::open(memories)?;
        *self.inner.store.borrow_mut() = store;
        Ok(())
    }
}

impl<R: Runtime, M: Memory + 'static> Journal<R, M> {
    // -----------------------------------------------------------------------------------------
    // Basics
    // -----------------------------------------------------------------------------------------

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

    #[cfg(test)]
    pub(crate) fn plant_bug(&self, bug: PlantedBug) {
        self.inner.bug.set(bug);
    }

    fn now(&self) -> u64 {
        self.inner.rt.now()
    }

    fn wait(&self) -> Wait {
        match self.inner.config.borrow().call_timeout_secs {
            Some(t) => Wait::Bounded { timeout_secs: t },
            None => Wait::Unbounded,
        }
    }

    /// The single place where statuses change: checks the edge, applies `mutate`, bounds the
    /// history, appends the audit record and maintains every index (via `Store::write`).
    fn transition(
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
        store.write(Some(&old), &new);
        drop(store);
        if to.is_terminal() || to == Status::ManualReview {
            if let Some(p) = new.parent {
                self.wake(p);
            }
        }
        Ok(new)
    }

    /// Update fields without a status change (scheduling, scan progress, attempts).
    fn update(&self, id: EntryId, mutate: impl FnOnce(&mut Entry)) -> Option<Entry> {
        let old = self.inner.store.borrow().get(id)?;
        let mut new = old.clone();
        mutate(&mut new);
        new.status = old.status;
        new.updated_at = self.now().max(old.updated_at);
        self.inner.store.borrow_mut().write(Some(&old), &new);
        Some(new)
    }

    /// Make an unresolved entry due now (a saga whose step resolved).
    fn wake(&self, id: EntryId) {
        let now = self.now();
        let _ = self.update(id, |e| {
            if e.status.is_unresolved() && e.status != Status::ManualReview {
                e.next_attempt_at = Some(now);
            }
        });
    }

    fn validate_key(&self, field: &str, v: &str) -> Result<(), JournalError> {
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

    fn validate_payload(&self, field: &str, p: &[u8]) -> Result<(), JournalError> {
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

    fn validate_action(&self, a: &StepAction) -> Result<(), JournalError> {
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
    fn create(
        &self,
        owner: Principal,
        kind: Kind,
        lock_key: Option<String>,
        parent: Option<EntryId>,
        build: impl FnOnce(EntryId, Timestamp) -> Intent,
    ) -> Result<Entry, JournalError> {
        if owner == Principal::anonymous() {
            return Err(JournalError::AnonymousCaller);
        }
        if let Some(k) = &lock_key {
            self.validate_key("lock_key", k)?;
            if let Some(holder) = self.inner.store.borrow().lock_holder(k) {
                return Err(JournalError::LockHeld {
                    lock_key: k.clone(),
                    entry_id: holder,
                });
            }
        }
        let cfg = self.config();
        let now = self.now();
        let usage = self.inner.store.borrow().owner_usage(&owner);
        if usage.unresolved >= cfg.max_unresolved_per_owner {
            return Err(JournalError::QuotaExceeded {
                owner,
                limit: "max_unresolved_per_owner".into(),
                max: cfg.max_unresolved_per_owner as u64,
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
        };
        let mut store = self.inner.store.borrow_mut();
        store.write(None, &entry);
        store.append_audit(now, id, Some(owner), AuditEvent::Created { kind });
        Ok(entry)
    }

    // -----------------------------------------------------------------------------------------
    // Ledger transfers
    // -----------------------------------------------------------------------------------------

    fn build_op(spec: &TransferSpec, id: EntryId, now: Timestamp) -> LedgerOp {
        let memo = Some(Memo::from(memo::encode(id)));
        match spec.clone() {
            TransferSpec::Icrc1 {
                from_subaccount,
                to,
                amount,
                fee,
                ..
            } => LedgerOp::Icrc1Transfer(TransferArg {
                from_subaccount,
                to,
                fee,
                created_at_time: Some(now),
                memo,
                amount,
            }),
            TransferSpec::Icrc2 {
                spender_subaccount,
                from,
                to,
                amount,
                fee,
                ..
            } => LedgerOp::Icrc2TransferFrom(TransferFromArgs {
                spender_subaccount,
                from,
                to,
                amount,
                fee,
                memo,
                created_at_time: Some(now),
            }),
        }
    }

    /// Journal a transfer intent with its exact args (memo = entry id, created_at_time = now,
    /// fee as given). Nothing is sent; call `execute`.
    pub fn journal_transfer(
        &self,
        owner: Principal,
        spec: TransferSpec,
        lock_key: Option<String>,
    ) -> Result<EntryId, JournalError> {
        self.journal_transfer_with_parent(owner, spec, lock_key, None)
            .map(|e| e.id)
    }

    fn journal_transfer_with_parent(
        &self,
        owner: Principal,
        spec: TransferSpec,
        lock_key: Option<String>,
        parent: Option<EntryId>,
    ) -> Result<Entry, JournalError> {
        let kind = match spec {
            TransferSpec::Icrc1 { .. } => Kind::Icrc1Transfer,
            TransferSpec::Icrc2 { .. } => Kind::Icrc2TransferFrom,
        };
        let ledger = spec.ledger();
        self.create(owner, kind, lock_key, parent, |id, now| {
            Intent::Transfer(TransferIntent {
                ledger,
                op: Self::build_op(&spec, id, now),
                executor: Executor::SelfCanister,
            })
        })
    }

    /// Journal + execute.
    pub async fn transfer(
        &self,
        owner: Principal,
        spec: TransferSpec,
        lock_key: Option<String>,
    ) -> Result<FlowResult, JournalError> {
        let id = self.journal_transfer(owner, spec, lock_key)?;
        self.execute(id).await
    }

    /// Run a journaled transfer or local step that has not started yet.
    pub async fn execute(&self, id: EntryId) -> Result<FlowResult, JournalError> {
        let e = self
            .get(id)
            .ok_or(JournalError::NotFound { entry_id: id })?;
        if e.status != Status::Pending || e.attempts != 0 {
            return Err(JournalError::InvalidArgument {
                message: format!(
                    "entry {id} already started (status {:?}, attempts {})",
                    e.status, e.attempts
                ),
            });
        }
        match e.kind {
            Kind::Icrc1Transfer | Kind::Icrc2TransferFrom => {
                let Intent::Transfer(t) = &e.intent else {
                    unreachable!("transfer kind has transfer intent")
                };
                if t.executor != Executor::SelfCanister {
                    return Err(JournalError::UnsupportedForKind {
                        entry_id: id,
                        message: "tracked transfers are executed by their owner".into(),
                    });
                }
                self.send_first(id).await;
            }
            Kind::LocalStep => self.run_local(id).await,
            Kind::Saga => return self.run_saga(id).await,
            Kind::Record => {
                return Err(JournalError::UnsupportedForKind {
                    entry_id: id,
                    message: "records are resolved with report_result".into(),
                })
            }
        }
        Ok(self.flow_result(id))
    }

    /// Saga children: transfers and local steps only (no recursion into sagas).
    async fn execute_leaf(&self, id: EntryId) {
        match self.get(id).map(|e| e.kind) {
            Some(Kind::Icrc1Transfer | Kind::Icrc2TransferFrom) => self.send_first(id).await,
            Some(Kind::LocalStep) => self.run_local(id).await,
            _ => {}
        }
    }

    fn flow_result(&self, id: EntryId) -> FlowResult {
        let e = self.get(id).expect("flow entry exists");
        FlowResult {
            entry_id: id,
            status: e.status,
            outcome: e.outcome,
        }
    }

    async fn self_commit(&self) {
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

    fn lease_until(&self) -> Timestamp {
        self.now()
            .saturating_add(self.inner.config.borrow().in_flight_lease_ns)
    }

    async fn send_first(&self, id: EntryId) {
        let lease = self.lease_until();
        let Some(e) = self.update(id, |e| {
            e.attempts += 1;
            e.next_attempt_at = Some(lease);
        }) else {
            return;
        };
        self.inner.store.borrow_mut().bump(counter::ATTEMPTS, 1);
        let Intent::Transfer(t) = e.intent.clone() else {
            return;
        };
        let guard = FlowGuard {
            journal: self.clone(),
            id,
            owned_status: Status::Pending,
            attempt: e.attempts,
        };
        let (method, arg) = ledger::method_and_arg(&t.op);
        let reply = self.inner.rt.call(t.ledger, method, self.wait(), arg).await;
        let outcome = ledger::classify_ledger_call(&t.op, &reply);
        self.apply_first_send(id, e.attempts, &outcome);
        self.self_commit().await;
        drop(guard);
    }

    fn apply_first_send(&self, id: EntryId, attempt: u32, outcome: &CallOutcome) {
        let Some(cur) = self.get(id) else { return };
        let cfg = self.config();
        let now = self.now();
        if cur.status != Status::Pending || cur.attempts != attempt {
            // Recovery took over meanwhile (lease expired during a very long call). Only a
            // success is conclusive here; anything else leaves recovery in charge.
            if let CallOutcome::Executed { block } = outcome {
                self.apply_success(id, *block, EvidenceSource::Reply, None);
            }
            return;
        }
        match recovery::decide_first_send(attempt, now, &cfg, outcome) {
            Decision::Succeeded { block, .. } => {
                self.apply_success(id, block, EvidenceSource::Reply, None)
            }
            Decision::Failed { reason } => self.apply_failure(id, reason, EvidenceSource::Reply),
            Decision::RetryAt { at, note } => {
                let _ = self.transition(id, Status::Unknown, Actor::Engine, None, &note, |e| {
                    e.next_attempt_at = Some(at);
                    e.last_error = Some(truncate(&note, 512));
                });
            }
            Decision::Manual { reason } => self.to_manual(id, &reason),
            Decision::Lookup { .. } => unreachable!("first send never asks for a lookup"),
        }
    }

    /// Record success, or a contradiction if the entry already holds a different result (I4).
    fn apply_success(
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
        if self
            .transition(
                id,
                Status::Succeeded,
                Actor::Engine,
                None,
                &format!("executed at block {block}"),
                |e| {
                    e.outcome = Some(outcome);
                },
            )
            .is_ok()
        {
            if let Some(p) = path {
                self.inner
                    .store
                    .borrow_mut()
                    .bump(counter::PATH | p.tag() as u32, 1);
            }
        }
    }

    fn apply_failure(&self, id: EntryId, reason: FailureReason, source: EvidenceSource) {
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
        let _ = self.transition(id, Status::Failed, Actor::Engine, None, &note, |e| {
            e.outcome = Some(Outcome::Failed { reason, source });
        });
    }

    fn to_manual(&self, id: EntryId, reason: &str) {
        let _ = self.transition(id, Status::ManualReview, Actor::Engine, None, reason, |e| {
            e.manual_reason = Some(truncate(reason, 1024));
        });
    }

    fn contradiction(&self, id: EntryId, detail: &str) {
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

    // -----------------------------------------------------------------------------------------
    // Tracked transfers and records (outcome reported by the owner)
    // -----------------------------------------------------------------------------------------

    /// Journal a transfer that the owner (another canister) sends itself. The engine fills
    /// memo and created_at_time; the caller must send exactly the returned args.
    pub fn track_transfer(
        &self,
        owner: Principal,
        ledger: Principal,
        op: LedgerOp,
        lock_key: Option<String>,
    ) -> Result<(EntryId, TransferIntent), JournalError> {
        let (memo_set, cat_set) = match &op {
            LedgerOp::Icrc1Transfer(a) => (a.memo.is_some(), a.created_at_time.is_some()),
            LedgerOp::Icrc2TransferFrom(a) => (a.memo.is_some(), a.created_at_time.is_some()),
        };
        if memo_set || cat_set {
            return Err(JournalError::InvalidArgument {
                message: "memo and created_at_time are set by the journal; pass None".into(),
            });
        }
        let kind = match op {
            LedgerOp::Icrc1Transfer(_) => Kind::Icrc1Transfer,
            LedgerOp::Icrc2TransferFrom(_) => Kind::Icrc2TransferFrom,
        };
        let e = self.create(owner, kind, lock_key, None, |id, now| {
            let memo = Some(Memo::from(memo::encode(id)));
            let op = match op {
                LedgerOp::Icrc1Transfer(mut a) => {
                    a.memo = memo;
                    a.created_at_time = Some(now);
                    LedgerOp::Icrc1Transfer(a)
                }
                LedgerOp::Icrc2TransferFrom(mut a) => {
                    a.memo = memo;
                    a.created_at_time = Some(now);
                    LedgerOp::Icrc2TransferFrom(a)
                }
            };
            Intent::Transfer(TransferIntent {
                ledger,
                op,
                executor: Executor::External { caller: owner },
            })
        })?;
        let Intent::Transfer(t) = e.intent else {
            unreachable!()
        };
        Ok((e.id, t))
    }

    /// Journal a host/caller-driven record; resolve it with `report_result`.
    pub fn record_intent(
        &self,
        owner: Principal,
        label: String,
        payload: Vec<u8>,
        lock_key: Option<String>,
    ) -> Result<EntryId, JournalError> {
        self.validate_key("label", &label)?;
        self.validate_payload("payload", &payload)?;
        self.create(owner, Kind::Record, lock_key, None, |_, _| Intent::Record {
            label,
            payload,
        })
        .map(|e| e.id)
    }

    /// The owner reports the result of a record or of a transfer it executed itself.
    pub fn report_result(
        &self,
        owner: Principal,
        id: EntryId,
        result: ReportedResult,
    ) -> Result<Status, JournalError> {
        let e = self.get_owned(owner, id)?;
        let tracked = matches!(&e.intent, Intent::Transfer(t) if matches!(t.executor, Executor::External { .. }));
        if e.kind != Kind::Record && !tracked {
            return Err(JournalError::UnsupportedForKind {
                entry_id: id,
                message: "only records and tracked transfers take reported results".into(),
            });
        }
        if !matches!(e.status, Status::Pending | Status::Unknown) {
            return Err(JournalError::InvalidTransition {
                entry_id: id,
                from: e.status,
                to: match result {
                    ReportedResult::Succeeded { .. } => Status::Succeeded,
                    ReportedResult::Failed { .. } => Status::Failed,
                    ReportedResult::Unknown { .. } => Status::Unknown,
                },
            });
        }
        let now = self.now();
        let e = match result {
            ReportedResult::Succeeded { block_index, reply } => {
                self.validate_payload("reply", &reply)?;
                if tracked && block_index.is_none() {
                    return Err(JournalError::InvalidArgument {
                        message: "a transfer result needs its block index".into(),
                    });
                }
                self.transition(
                    id,
                    Status::Succeeded,
                    Actor::Engine,
                    Some(owner),
                    "reported succeeded",
                    |e| {
                        e.outcome = Some(Outcome::Succeeded {
                            block_index,
                            reply,
                            source: EvidenceSource::Host,
                        })
                    },
                )?
            }
            ReportedResult::Failed { message } => {
                self.validate_payload("message", message.as_bytes())?;
                if tracked {
                    // The owner's word that a transfer did not execute is not proof (it may
                    // have timed out): recovery establishes it from the ledger instead.
                    self.transition(
                        id,
                        Status::Unknown,
                        Actor::Engine,
                        Some(owner),
                        &message,
                        |e| {
                            e.next_attempt_at = Some(now);
                            e.last_error = Some(truncate(&message, 512));
                        },
                    )?
                } else {
                    self.transition(
                        id,
                        Status::Failed,
                        Actor::Engine,
                        Some(owner),
                        "reported failed",
                        |e| {
                            e.outcome = Some(Outcome::Failed {
                                reason: FailureReason::Host { message },
                                source: EvidenceSource::Host,
                            })
                        },
                    )?
                }
            }
            ReportedResult::Unknown { message } => {
                self.validate_payload("message", message.as_bytes())?;
                if e.status == Status::Unknown {
                    return Ok(Status::Unknown);
                }
                self.transition(
                    id,
                    Status::Unknown,
                    Actor::Engine,
                    Some(owner),
                    &message,
                    |e| {
                        e.next_attempt_at = Some(now);
                        e.last_error = Some(truncate(&message, 512));
                    },
                )?
            }
        };
        Ok(e.status)
    }

    // -----------------------------------------------------------------------------------------
    // Local steps
    // -----------------------------------------------------------------------------------------

    /// Run a local step: [attempts++] → commit → [handler + result] → commit. The handler and
    /// its journaled result share one message, so they commit or roll back together.
    async fn run_local(&self, id: EntryId) {
        let cfg = self.config();
        let Some(e) = self.get(id) else { return };
        if !matches!(e.status, Status::Pending | Status::Unknown) {
            return;
        }
        if e.attempts >= cfg.max_attempts {
            // Each earlier attempt was committed before running the handler; only traps (or an
            // instruction-limit hit) make it this far.
            self.to_manual(
                id,
                &format!("local step did not complete in {} attempts", e.attempts),
            );
            return;
        }
        let lease = self.lease_until();
        self.update(id, |e| {
            e.attempts += 1;
            e.next_attempt_at = Some(lease);
        });
        self.inner.store.borrow_mut().bump(counter::ATTEMPTS, 1);
        self.self_commit().await;
        let Some(e) = self.get(id) else { return };
        if !matches!(e.status, Status::Pending | Status::Unknown) {
            return;
        }
        let Intent::Local(action) = &e.intent else {
            return;
        };
        let handler = self.inner.handlers.borrow().get(&action.handler).cloned();
        match handler {
            None => self.to_manual(
                id,
                &format!("no handler registered for {:?}", action.handler),
            ),
            Some(h) => match h(&action.payload) {
                Ok(reply) => {
                    let reply = if reply.len() > cfg.max_payload_bytes as usize {
                        vec![]
                    } else {
                        reply
                    };
                    let _ = self.transition(
                        id,
                        Status::Succeeded,
                        Actor::Engine,
                        None,
                        "local step done",
                        |e| {
                            e.outcome = Some(Outcome::Succeeded {
                                block_index: None,
                                reply,
                                source: EvidenceSource::Host,
                            })
                        },
                    );
                }
                Err(message) => self.apply_failure(
                    id,
                    FailureReason::Host {
                        message: truncate(&message, 512),
                    },
                    EvidenceSource::Host,
                ),
            },
        }
        self.self_commit().await;
    }

    // -----------------------------------------------------------------------------------------
    // Sagas
    // -----------------------------------------------------------------------------------------

    pub fn start_saga(
        &self,
        owner: Principal,
        steps: Vec<SagaStepSpec>,
        lock_key: Option<String>,
    ) -> Result<EntryId, JournalError> {
        let cfg = self.config();
        if steps.is_empty() {
            return Err(JournalError::InvalidArgument {
                message: "a saga needs at least one step".into(),
            });
        }
        if steps.len() > cfg.max_saga_steps as usize {
            return Err(JournalError::PayloadTooLarge {
                field: "steps".into(),
                size: steps.len() as u64,
                max: cfg.max_saga_steps as u64,
            });
        }
        for s in &steps {
            self.validate_action(&s.action)?;
            if let Some(c) = &s.compensation {
                self.validate_action(c)?;
            }
        }
        let steps = steps
            .into_iter()
            .map(|s| SagaStep {
                action: s.action,
                compensation: s.compensation,
                entry: None,
                compensation_entry: None,
            })
            .collect();
        self.create(owner, Kind::Saga, lock_key, None, |_, _| {
            Intent::Saga(SagaIntent {
                steps,
                cursor: 0,
                phase: SagaPhase::Forward,
                failure: None,
            })
        })
        .map(|e| e.id)
    }

    /// Drive a saga as far as it can go now (until done or waiting for a step's recovery).
    pub async fn run_saga(&self, id: EntryId) -> Result<FlowResult, JournalError> {
        let e = self
            .get(id)
            .ok_or(JournalError::NotFound { entry_id: id })?;
        if e.kind != Kind::Saga {
            return Err(JournalError::UnsupportedForKind {
                entry_id: id,
                message: "not a saga".into(),
            });
        }
        self.drive_saga(id).await;
        Ok(self.flow_result(id))
    }

    fn saga(&self, id: EntryId) -> Option<(Entry, SagaIntent)> {
        let e = self.get(id)?;
        let Intent::Saga(s) = e.intent.clone() else {
            return None;
        };
        Some((e, s))
    }

    fn set_saga(&self, id: EntryId, s: SagaIntent, next: Option<Timestamp>) {
        self.update(id, |e| {
            e.intent = Intent::Saga(s);
            if next.is_some() {
                e.next_attempt_at = next;
            }
        });
    }

    fn start_child(&self, saga: &Entry, action: &StepAction) -> Result<EntryId, JournalError> {
        match action {
            StepAction::Transfer(spec) => self
                .journal_transfer_with_parent(saga.owner, spec.clone(), None, Some(saga.id))
                .map(|e| e.id),
            StepAction::Local(l) => {
                let l = l.clone();
                self.create(saga.owner, Kind::LocalStep, None, Some(saga.id), |_, _| {
                    Intent::Local(l)
                })
                .map(|e| e.id)
            }
        }
    }

    async fn drive_saga(&self, id: EntryId) {
        // Bounded: each iteration either advances the cursor or returns.
        for _ in 0..(2 * self.config().max_saga_steps + 2) {
            let Some((e, mut s)) = self.saga(id) else {
                return;
            };
            if !matches!(
                e.status,
                Status::Pending | Status::Compensating | Status::Unknown | Status::Recovering
            ) {
                return;
            }
            let lease = self.lease_until();
            match s.phase {
                SagaPhase::Forward => {
                    let i = s.cursor as usize;
                    if i >= s.steps.len() {
                        let _ = self.transition(
                            id,
                            Status::Succeeded,
                            Actor::Engine,
                            None,
                            "all steps done",
                            |e| {
                                e.outcome = Some(Outcome::Succeeded {
                                    block_index: None,
                                    reply: vec![],
                                    source: EvidenceSource::Host,
                                })
                            },
                        );
                        self.self_commit().await;
                        return;
                    }
                    let child = match s.steps[i].entry {
                        Some(c) => c,
                        None => match self.start_child(&e, &s.steps[i].action) {
                            Ok(c) => {
                                s.steps[i].entry = Some(c);
                                self.set_saga(id, s.clone(), Some(lease));
                                c
                            }
                            Err(err) => {
                                self.to_manual(id, &format!("cannot start step {i}: {err}"));
                                return;
                            }
                        },
                    };
                    let Some(c) = self.get(child) else { return };
                    match c.status {
                        Status::Pending if c.attempts == 0 => {
                            self.execute_leaf(child).await;
                        }
                        Status::Succeeded => {
                            s.cursor += 1;
                            self.set_saga(id, s, Some(lease));
                        }
                        Status::Failed | Status::Cancelled => {
                            s.phase = SagaPhase::Compensating;
                            s.failure = Some(format!("step {i} (entry {child}) failed"));
                            // cursor = number of steps that may need compensation.
                            let note = s.failure.clone().unwrap_or_default();
                            let _ = self.transition(
                                id,
                                Status::Compensating,
                                Actor::Engine,
                                None,
                                &note,
                                |e| {
                                    e.intent = Intent::Saga(s);
                                    e.next_attempt_at = Some(lease);
                                },
                            );
                        }
                        // In flight, being recovered, or with an operator: wait; the child's
                        // resolution wakes the saga.
                        _ => {
                            let at = c.next_attempt_at.unwrap_or(lease).max(self.now());
                            self.update(id, |e| e.next_attempt_at = Some(at.max(lease.min(at))));
                            return;
                        }
                    }
                }
                SagaPhase::Compensating => {
                    // Steps [0, cursor) completed (step `cursor` failed); compensate in reverse.
                    let Some(i) = (0..s.cursor as usize).rev().find(|&k| {
                        s.steps[k].compensation.is_some()
                            && !matches!(
                                s.steps[k]
                                    .compensation_entry
                                    .and_then(|c| self.get(c))
                                    .map(|c| c.status),
                                Some(Status::Succeeded)
                            )
                    }) else {
                        let failure = s.failure.clone().unwrap_or_default();
                        let step = s.cursor;
                        let first_failed = s
                            .steps
                            .get(step as usize)
                            .and_then(|st| st.entry)
                            .unwrap_or(id);
                        let _ = self.transition(
                            id,
                            Status::Compensated,
                            Actor::Engine,
                            None,
                            &failure,
                            |e| {
                                e.outcome = Some(Outcome::Failed {
                                    reason: FailureReason::SagaStepFailed {
                                        step,
                                        entry: first_failed,
                                    },
                                    source: EvidenceSource::Host,
                                })
                            },
                        );
                        self.self_commit().await;
                        return;
                    };
                    let action = s.steps[i]
                        .compensation
                        .clone()
                        .expect("filtered on is_some");
                    let child = match s.steps[i].compensation_entry {
                        Some(c) => c,
                        None => match self.start_child(&e, &action) {
                            Ok(c) => {
                                s.steps[i].compensation_entry = Some(c);
                                self.set_saga(id, s.clone(), Some(lease));
                                c
                            }
                            Err(err) => {
                                self.to_manual(
                                    id,
                                    &format!("cannot start compensation of step {i}: {err}"),
                                );
                                return;
                            }
                        },
                    };
                    let Some(c) = self.get(child) else { return };
                    match c.status {
                        Status::Pending if c.attempts == 0 => {
                            self.execute_leaf(child).await;
                        }
                        Status::Failed | Status::Cancelled => {
                            self.to_manual(
                                id,
                                &format!("compensation of step {i} (entry {child}) failed"),
                            );
                            return;
                        }
                        _ => {
                            let at = c.next_attempt_at.unwrap_or(lease).max(self.now());
                            self.update(id, |e| e.next_attempt_at = Some(at));
                            return;
                        }
                    }
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Recovery
    // -----------------------------------------------------------------------------------------

    /// Arm the recovery timer. Call from `init` and `post_upgrade` (timers do not survive an
    /// upgrade). Calling it again replaces the previous chain.
    pub fn start_recovery_timer(&self) {
        let generation = self.inner.timer_generation.get().wrapping_add(1);
        self.inner.timer_generation.set(generation);
        self.arm(generation, 0);
    }

    fn arm(&self, generation: u64, delay: u64) {
        let j = self.clone();
        let task: LocalFuture<()> = Box::pin(async move {
            if j.inner.timer_generation.get() != generation {
                return; // superseded chain
            }
            // Re-arm first: the next tick is scheduled even if this one traps.
            let interval = j.inner.config.borrow().recovery_interval_ns;
            j.arm(generation, interval);
            j.recovery_tick().await;
        });
        self.inner.rt.set_timer(delay, task);
    }

    /// One recovery pass over a bounded batch of due entries (I6).
    pub async fn recovery_tick(&self) -> TickReport {
        let mut report = TickReport::default();
        let cfg = self.config();
        let now = self.now();
        if let Some(since) = self.inner.tick_running_since.get() {
            if now < since.saturating_add(cfg.in_flight_lease_ns) {
                report.skipped_overlap = true;
                return report;
            }
        }
        self.inner.tick_running_since.set(Some(now));
        let _guard = TickGuard(self.clone());
        self.inner.store.borrow_mut().bump(counter::TICKS, 1);
        let start = self.inner.rt.instruction_counter();
        let due = self
            .inner
            .store
            .borrow()
            .due(now, cfg.recovery_batch as usize);
        for (_, id) in due {
            if self.inner.rt.instruction_counter().saturating_sub(start)
                > cfg.recovery_instruction_budget
            {
                report.budget_exhausted = true;
                break;
            }
            report.examined += 1;
            if self.recover_one(id).await {
                report.resolved += 1;
            }
        }
        report
    }

    /// Returns true if the entry got resolved (or went to manual review).
    async fn recover_one(&self, id: EntryId) -> bool {
        let Some(e) = self.get(id) else { return false };
        let now = self.now();
        if e.next_attempt_at.is_none_or(|at| at > now) {
            return false;
        }
        match e.kind {
            Kind::Icrc1Transfer | Kind::Icrc2TransferFrom => self.recover_transfer(e).await,
            Kind::LocalStep => {
                self.run_local(id).await;
                self.get(id)
                    .is_some_and(|e| !e.status.is_unresolved() || e.status == Status::ManualReview)
            }
            Kind::Saga => {
                self.drive_saga(id).await;
                self.get(id)
                    .is_some_and(|e| !e.status.is_unresolved() || e.status == Status::ManualReview)
            }
            Kind::Record => {
                // Records are resolved by their owner; one still pending at its deadline needs
                // an operator (I2). Unknown records too: the engine cannot find out by itself.
                let why = if e.status == Status::Unknown {
                    "record outcome reported unknown; the engine cannot find it out"
                } else {
                    "no result reported before the record timeout"
                };
                self.to_manual(id, why);
                true
            }
        }
    }

    async fn recover_transfer(&self, e: Entry) -> bool {
        let id = e.id;
        let cfg = self.config();
        let Intent::Transfer(t) = e.intent.clone() else {
            return false;
        };
        let lease = self.lease_until();
        // Claim the entry (lease) and count the attempt; committed at the first await below.
        let claimed = match e.status {
            Status::Pending | Status::Unknown | Status::Recovering => {
                let note = format!("recovery attempt {}", e.attempts + 1);
                if e.status == Status::Recovering {
                    // A previous attempt's lease expired (its cleanup could not run).
                    self.transition(
                        id,
                        Status::Unknown,
                        Actor::Engine,
                        None,
                        "recovery lease expired",
                        |_| {},
                    )
                    .and_then(|_| {
                        self.transition(id, Status::Recovering, Actor::Engine, None, &note, |e| {
                            e.attempts += 1;
                            e.next_attempt_at = Some(lease);
                        })
                    })
                } else if e.status == Status::Pending {
                    self.transition(
                        id,
                        Status::Unknown,
                        Actor::Engine,
                        None,
                        "in-flight lease expired",
                        |_| {},
                    )
                    .and_then(|_| {
                        self.transition(id, Status::Recovering, Actor::Engine, None, &note, |e| {
                            e.attempts += 1;
                            e.next_attempt_at = Some(lease);
                        })
                    })
                } else {
                    self.transition(id, Status::Recovering, Actor::Engine, None, &note, |e| {
                        e.attempts += 1;
                        e.next_attempt_at = Some(lease);
                    })
                }
            }
            _ => return false,
        };
        let Ok(claimed) = claimed else { return false };
        self.inner.store.borrow_mut().bump(counter::ATTEMPTS, 1);
        let attempt = claimed.attempts;
        let guard = FlowGuard {
            journal: self.clone(),
            id,
            owned_status: Status::Recovering,
            attempt,
        };
        let sender = ledger::sender_of(&t, self.inner.rt.self_id());
        let mut scan = claimed.scan.clone().unwrap_or_default();

        let mut decision = match recovery::plan(&t, self.now(), &cfg) {
            Plan::Resend => {
                #[allow(unused_mut)]
                let mut op = t.op.clone();
                #[cfg(test)]
                if self.inner.bug.get() == PlantedBug::ResendWithNewCreatedAtTime {
                    let now = self.now();
                    match &mut op {
                        LedgerOp::Icrc1Transfer(a) => a.created_at_time = Some(now),
                        LedgerOp::Icrc2TransferFrom(a) => a.created_at_time = Some(now),
                    }
                }
                let (method, arg) = ledger::method_and_arg(&op);
                let reply = self.inner.rt.call(t.ledger, method, self.wait(), arg).await;
                let outcome = ledger::classify_ledger_call(&t.op, &reply);
                recovery::decide(
                    attempt,
                    self.now(),
                    &cfg,
                    t.created_at_time(),
                    &Observation::Resend(outcome),
                )
            }
            Plan::Lookup => Decision::Lookup {
                window_closed: false,
            },
        };
        if let Decision::Lookup { window_closed } = decision {
            scan.window_closed |= window_closed;
            let result = lookup::lookup(&self.inner.rt, &cfg, &t, sender, &mut scan).await;
            let scan_copy = scan.clone();
            self.update(id, |e| e.scan = Some(scan_copy));
            decision = recovery::decide(
                attempt,
                self.now(),
                &cfg,
                t.created_at_time(),
                &Observation::Lookup(result),
            );
        }
        let resolved = self.apply_recovery(id, attempt, decision);
        self.self_commit().await;
        drop(guard);
        resolved
    }

    fn apply_recovery(&self, id: EntryId, attempt: u32, decision: Decision) -> bool {
        let Some(cur) = self.get(id) else {
            return false;
        };
        let owned = cur.status == Status::Recovering && cur.attempts == attempt;
        match decision {
            Decision::Succeeded { block, path } => {
                self.apply_success(id, block, EvidenceSource::from(path), Some(path));
                true
            }
            Decision::Failed { reason } if owned => {
                self.apply_failure(id, reason, EvidenceSource::MemoLookup);
                true
            }
            Decision::RetryAt { at, note } if owned => {
                let _ = self.transition(id, Status::Unknown, Actor::Engine, None, &note, |e| {
                    e.next_attempt_at = Some(at);
                    e.last_error = Some(truncate(&note, 512));
                });
                false
            }
            Decision::Manual { reason } if owned => {
                self.to_manual(id, &reason);
                true
            }
            // Someone else (a late first-send reply) resolved the entry meanwhile; a failure
            // verdict against a success would be a contradiction, recorded by apply_failure.
            Decision::Failed { reason } => {
                if cur.status.is_terminal() {
                    self.apply_failure(id, reason, EvidenceSource::MemoLookup);
                }
                false
            }
            _ => false,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Operator verbs (BRIEF §6)
    // -----------------------------------------------------------------------------------------

    /// Apply (or approve, with M-of-N) an operator action on a `ManualReview` entry. The host
    /// must have checked that `actor` is an admin (I7); the engine records who, when, why.
    pub fn admin(&self, actor: Principal, req: AdminRequest) -> Result<AdminResult, JournalError> {
        let cfg = self.config();
        if actor == Principal::anonymous() {
            return Err(JournalError::AnonymousCaller);
        }
        if req.reason.trim().is_empty() {
            return Err(JournalError::ReasonRequired);
        }
        if req.reason.len() > cfg.max_reason_bytes as usize {
            return Err(JournalError::PayloadTooLarge {
                field: "reason".into(),
                size: req.reason.len() as u64,
                max: cfg.max_reason_bytes as u64,
            });
        }
        let id = req.entry_id;
        let e = self
            .get(id)
            .ok_or(JournalError::NotFound { entry_id: id })?;
        if e.status != Status::ManualReview {
            return Err(JournalError::NotInManualReview {
                entry_id: id,
                status: e.status,
            });
        }
        // Validate the action against the entry before recording any approval.
        match &req.action {
            AdminAction::Retry if e.kind == Kind::Record => {
                return Err(JournalError::UnsupportedForKind {
                    entry_id: id,
                    message: "records cannot be retried by the engine; resolve them".into(),
                })
            }
            AdminAction::ResolveSucceeded { block_index: None } if is_transfer(e.kind) => {
                return Err(JournalError::InvalidArgument {
                    message: "resolving a transfer as succeeded needs its block index as evidence"
                        .into(),
                })
            }
            AdminAction::Compensate if e.kind != Kind::Saga => {
                return Err(JournalError::UnsupportedForKind {
                    entry_id: id,
                    message: "only sagas can be compensated".into(),
                })
            }
            _ => {}
        }
        let now = self.now();
        let need = cfg.approvals_required;
        if need > 1 {
            let mut a = self
                .inner
                .store
                .borrow()
                .approvals(id)
                .filter(|a| a.action == req.action)
                .unwrap_or(Approvals {
                    action: req.action.clone(),
                    approvers: vec![],
                });
            if a.approvers.contains(&actor) {
                return Err(JournalError::AlreadyApproved { entry_id: id });
            }
            a.approvers.push(actor);
            let have = a.approvers.len() as u32;
            let seq = self.inner.store.borrow_mut().append_audit(
                now,
                id,
                Some(actor),
                AuditEvent::AdminApproval {
                    action: req.action.clone(),
                    reason: req.reason.clone(),
                    have,
                    need,
                },
            );
            if have < need {
                self.inner.store.borrow_mut().set_approvals(id, Some(a));
                return Ok(AdminResult::ApprovalRecorded {
                    have,
                    need,
                    audit_seq: seq,
                });
            }
            self.inner.store.borrow_mut().set_approvals(id, None);
        }
        let seq = self.inner.store.borrow_mut().append_audit(
            now,
            id,
            Some(actor),
            AuditEvent::AdminAction {
                action: req.action.clone(),
                reason: req.reason.clone(),
            },
        );
        let note = format!("admin {:?}: {}", req.action, truncate(&req.reason, 200));
        let new = match req.action {
            AdminAction::Retry => {
                self.transition(id, Status::Unknown, Actor::Admin, Some(actor), &note, |e| {
                    e.attempts = 0;
                    e.next_attempt_at = Some(now);
                })?
            }
            AdminAction::ResolveSucceeded { block_index } => self.transition(
                id,
                Status::Succeeded,
                Actor::Admin,
                Some(actor),
                &note,
                |e| {
                    e.outcome = Some(Outcome::Succeeded {
                        block_index,
                        reply: vec![],
                        source: EvidenceSource::Admin,
                    })
                },
            )?,
            AdminAction::ResolveFailed => {
                self.transition(id, Status::Failed, Actor::Admin, Some(actor), &note, |e| {
                    e.outcome = Some(Outcome::Failed {
                        reason: FailureReason::Admin { audit_seq: seq },
                        source: EvidenceSource::Admin,
                    })
                })?
            }
            AdminAction::Compensate => {
                let Intent::Saga(mut s) = e.intent.clone() else {
                    unreachable!("checked kind")
                };
                if s.phase == SagaPhase::Forward {
                    // Compensate the steps that completed; the current one counts as failed.
                    let done = s
                        .steps
                        .iter()
                        .take_while(|st| {
                            st.entry
                                .and_then(|c| self.get(c))
                                .is_some_and(|c| c.status == Status::Succeeded)
                        })
                        .count();
                    s.cursor = done as u32;
                    s.phase = SagaPhase::Compensating;
                    s.failure = Some(format!("operator: {}", truncate(&req.reason, 200)));
                }
                self.transition(
                    id,
                    Status::Compensating,
                    Actor::Admin,
                    Some(actor),
                    &note,
                    |e| {
                        e.intent = Intent::Saga(s);
                        e.next_attempt_at = Some(now);
                    },
                )?
            }
            AdminAction::Cancel => self.transition(
                id,
                Status::Cancelled,
                Actor::Admin,
                Some(actor),
                &note,
                |_| {},
            )?,
        };
        self.inner
            .store
            .borrow_mut()
            .bump(counter::PATH | RecoveryPath::Manual.tag() as u32, 1);
        if let Some(p) = new.parent {
            self.wake(p);
        }
        Ok(AdminResult::Applied {
            status: new.status,
            audit_seq: seq,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Queries
    // -----------------------------------------------------------------------------------------

    pub fn get(&self, id: EntryId) -> Option<Entry> {
        self.inner.store.borrow().get(id)
    }

    /// Owner-scoped read: another owner's entry is reported as not found (I7).
    pub fn get_owned(&self, owner: Principal, id: EntryId) -> Result<Entry, JournalError> {
        match self.get(id) {
            Some(e) if e.owner == owner => Ok(e),
            _ => Err(JournalError::NotFound { entry_id: id }),
        }
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
    /// a short page with `next` set means "continue from there".
    pub fn list(&self, filter: &ListFilter, page: &PageRequest) -> Page<EntrySummary> {
        let limit = page
            .limit
            .clamp(1, self.inner.config.borrow().max_page_size) as usize;
        let max_scan = limit.saturating_mul(10);
        let store = self.inner.store.borrow();
        let ids: Box<dyn Iterator<Item = EntryId>> = match (filter.owner, filter.status) {
            (Some(o), Some(s)) => Box::new(store.ids_by_owner_status(o, s, page.start_after)),
            (Some(o), None) => {
                // Merge the owner's per-status ranges (9 small ranges, each cut at max_scan).
                let mut all: Vec<EntryId> = Status::ALL
                    .iter()
                    .flat_map(|s| {
                        store
                            .ids_by_owner_status(o, *s, page.start_after)
                            .take(max_scan)
                    })
                    .collect();
                all.sort_unstable();
                Box::new(all.into_iter())
            }
            (None, Some(s)) => Box::new(store.ids_by_status(s, page.start_after)),
            (None, None) => Box::new(store.entries_after(page.start_after).map(|e| e.id)),
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
            if filter.kind.is_some_and(|k| k != e.kind) {
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
            entries_total: store.len(),
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
        }
    }

    /// Earliest time the recovery timer has work (for hosts that schedule more precisely).
    pub fn next_due(&self) -> Option<Timestamp> {
        self.inner.store.borrow().next_due()
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
