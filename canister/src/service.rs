//! The service logic behind the endpoints, generic over the engine's `Runtime` and the stable
//! `Memory`, so it runs natively in unit tests (`FakeRuntime`, `VectorMemory`) and on the IC
//! (`IcRuntime`, `VirtualMemory`). Every method starts with its guard, then validates its
//! input, then does the work — in that order, so nothing runs for an unauthorised caller.

use crate::config::{self, engine_config};
use crate::guard::{self, Ctx, InFlight, InFlightGuard};
use crate::logs::{DEBUG, INFO};
use crate::persist::{self, Persisted};
use crate::validate;
use candid::Principal;
use ic_canister_log::log;
use ic_stable_structures::Memory;
use icjournal::{
    AdminRequest, AdminResult, AuditRecord, Entry, EntryId, EntryKey, EntryOptions, EntrySummary,
    FlowResult, IdempotencyKey, Intent, Journal, JournalError, ListFilter, Memories, Metrics, Page,
    PageRequest, ReportedResult, Runtime, SagaStepSpec, Status, StepAction,
};
use icjournal_client::{
    AdminListArgs, AuditArgs, ConfigView, LedgerConfig, ListArgs, RecordIntentArgs,
    ReportResultArgs, SagaRequest, ServiceConfig, ServiceError, ServiceResult, SetConfigArgs,
    TrackTransferArgs, TrackedTransfer, TransferRequest,
};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// A journaled request: a new entry (with its in-flight slot) or the one a repeated request
/// (same idempotency key) already has.
enum Journaled {
    New(EntryId, InFlightGuard),
    Existing(EntryId),
}

/// The engine's idempotency key of a request (validated), hashed over what the request asks.
fn idempotency<T: candid::CandidType>(
    key: Option<String>,
    request: &T,
) -> ServiceResult<Option<IdempotencyKey>> {
    let Some(k) = key else { return Ok(None) };
    validate::idempotency_key(&k)?;
    Ok(Some(IdempotencyKey::for_request(k, request)))
}

pub struct Service<R: Runtime, M: Memory + Clone + 'static> {
    journal: Journal<R, M>,
    state_memory: M,
    config: RefCell<ServiceConfig>,
    paused: Cell<bool>,
    in_flight: Rc<InFlight>,
}

impl<R: Runtime, M: Memory + Clone + 'static> std::fmt::Debug for Service<R, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.config.borrow())
            .field("recovery_paused", &self.paused.get())
            .field("in_flight", &self.in_flight.total())
            .finish_non_exhaustive()
    }
}

impl<R: Runtime, M: Memory + Clone + 'static> Service<R, M> {
    /// Open (init: create; post_upgrade: load) the service. `arg` replaces the persisted
    /// configuration when given; without one, init uses the defaults and an upgrade keeps the
    /// persisted configuration. Errors (corrupt or unknown layouts, invalid config) must trap.
    pub fn open(
        rt: R,
        state_memory: M,
        memories: Memories<M>,
        arg: Option<ServiceConfig>,
    ) -> Result<Rc<Self>, String> {
        let persisted = persist::load(&state_memory)?;
        let (config, paused) = match (arg, persisted.clone()) {
            (Some(c), p) => (c, p.is_some_and(|p| p.recovery_paused)),
            (None, Some(p)) => (p.config, p.recovery_paused),
            (None, None) => (config::default_config(), false),
        };
        config::validate(&config).map_err(|e| format!("invalid configuration: {e}"))?;
        let journal = Journal::open(rt, memories, engine_config(&config))
            .map_err(|e| format!("icjournal layout: {e}"))?;
        let now = Persisted {
            config: config.clone(),
            recovery_paused: paused,
        };
        // An upgrade without a new configuration changes nothing: no Candid encode and write
        // (~0.2M of `post_upgrade`'s instructions, docs/cost-model.md).
        if persisted.as_ref() != Some(&now) {
            persist::save(&state_memory, &now);
        }
        Ok(Rc::new(Service {
            journal,
            state_memory,
            config: RefCell::new(config),
            paused: Cell::new(paused),
            in_flight: Rc::new(InFlight::default()),
        }))
    }

    pub fn journal(&self) -> &Journal<R, M> {
        &self.journal
    }

    pub fn config(&self) -> ServiceConfig {
        self.config.borrow().clone()
    }

    pub fn recovery_paused(&self) -> bool {
        self.paused.get()
    }

    pub fn in_flight_total(&self) -> u32 {
        self.in_flight.total()
    }

    fn persist(&self) {
        persist::save(
            &self.state_memory,
            &Persisted {
                config: self.config(),
                recovery_paused: self.paused.get(),
            },
        );
    }

    // ---------------------------------------------------------------------------------------
    // Recovery timer
    // ---------------------------------------------------------------------------------------

    /// (Re-)arm the recovery timer: call from init and post_upgrade (timers do not survive
    /// upgrades) and after the interval changes. The engine's serial interval timer runs each
    /// tick in its own message, so a trap in a tick never stops the next one; pausing is the
    /// engine's too (`Journal::set_recovery_paused`).
    pub fn start_recovery_timer(self: &Rc<Self>) {
        self.journal.set_recovery_paused(self.paused.get());
        self.journal.start_recovery_timer();
    }

    /// Every update method calls this first: if a trap in `canister_global_timer` lost the
    /// system timer, this message brings it back (see `Runtime::revive_timers`).
    pub fn revive_timers(&self) {
        self.journal.revive_timers();
    }

    // ---------------------------------------------------------------------------------------
    // Generic journaling (callers; owner-scoped, I7)
    // ---------------------------------------------------------------------------------------

    pub fn record_intent(&self, ctx: &Ctx, args: RecordIntentArgs) -> ServiceResult<EntryId> {
        let caller = guard::authenticated(ctx)?;
        let cfg = self.config.borrow().clone();
        validate::label(&args.label)?;
        validate::payload("payload", &args.payload, cfg.max_payload_bytes)?;
        let fee = self.fee(ctx, cfg.fees.record_cycles)?;
        let idem = idempotency(
            args.idempotency_key.clone(),
            &("record", &args.label, &args.payload, &args.lock_key),
        )?;
        let lock = validate::lock_key(caller, args.lock_key)?;
        let opts = EntryOptions {
            lock_key: lock,
            idempotency: idem,
        };
        match self
            .journal
            .record_intent(caller, args.label, args.payload, opts)
        {
            Ok(id) => {
                self.charge(fee);
                Ok(id)
            }
            Err(JournalError::DuplicateRequest { entry_id }) => Ok(entry_id),
            Err(e) => Err(e.into()),
        }
    }

    /// The fee `ctx`'s caller owes for work costing `cycles`: none for exempt callers and
    /// operators; otherwise the call must carry it (`CyclesRequired` before anything is done).
    fn fee(&self, ctx: &Ctx, cycles: u64) -> ServiceResult<u64> {
        let cfg = self.config.borrow();
        if cycles == 0 || cfg.fee_exempt.contains(&ctx.caller) || guard::is_operator(ctx, &cfg) {
            return Ok(0);
        }
        if ctx.cycles_available < cycles as u128 {
            return Err(ServiceError::CyclesRequired {
                required: cycles,
                attached: ctx.cycles_available.min(u64::MAX as u128) as u64,
            });
        }
        Ok(cycles)
    }

    /// Take the fee, once the entry exists (a refused call keeps its cycles: the IC refunds
    /// what is not accepted).
    fn charge(&self, fee: u64) {
        if fee > 0 {
            self.journal.runtime().accept_cycles(fee as u128);
        }
    }

    pub fn report_result(&self, ctx: &Ctx, args: ReportResultArgs) -> ServiceResult<Status> {
        let caller = guard::authenticated(ctx)?;
        let max = self.config.borrow().max_payload_bytes;
        match &args.result {
            ReportedResult::Succeeded { reply, .. } => validate::payload("reply", reply, max)?,
            ReportedResult::Failed { message } | ReportedResult::Unknown { message } => {
                validate::payload("message", message.as_bytes(), max)?
            }
        }
        Ok(self
            .journal
            .report_result(caller, args.entry_id, args.result)?)
    }

    pub fn get_entry(&self, ctx: &Ctx, id: EntryId) -> ServiceResult<Entry> {
        let caller = guard::authenticated(ctx)?;
        Ok(self.journal.get_owned(caller, id)?)
    }

    pub fn list_entries(&self, ctx: &Ctx, args: ListArgs) -> ServiceResult<Page<EntrySummary>> {
        let caller = guard::authenticated(ctx)?;
        let filter = ListFilter {
            owner: Some(caller),
            status: args.status,
            kind: args.kind,
            created_before: None,
        };
        Ok(self.list(&filter, args.page))
    }

    /// The caller's entries that are not terminal (a page may be short; continue from `next`).
    pub fn list_unresolved(
        &self,
        ctx: &Ctx,
        page: PageRequest,
    ) -> ServiceResult<Page<EntrySummary>> {
        let caller = guard::authenticated(ctx)?;
        let filter = ListFilter {
            owner: Some(caller),
            ..Default::default()
        };
        let mut p = self.list(&filter, page);
        p.items.retain(|e| e.status.is_unresolved());
        Ok(p)
    }

    pub fn list_failed(&self, ctx: &Ctx, page: PageRequest) -> ServiceResult<Page<EntrySummary>> {
        let caller = guard::authenticated(ctx)?;
        let filter = ListFilter {
            owner: Some(caller),
            status: Some(Status::Failed),
            ..Default::default()
        };
        Ok(self.list(&filter, page))
    }

    fn list(&self, filter: &ListFilter, page: PageRequest) -> Page<EntrySummary> {
        let page = PageRequest {
            start_after: page.start_after,
            limit: validate::page_limit(page.limit),
        };
        self.journal.list(filter, &page)
    }

    // ---------------------------------------------------------------------------------------
    // Tracked transfers (sent by the caller; the service journals and recovers by memo)
    // ---------------------------------------------------------------------------------------

    pub fn track_transfer(
        &self,
        ctx: &Ctx,
        args: TrackTransferArgs,
    ) -> ServiceResult<TrackedTransfer> {
        let caller = guard::authenticated(ctx)?;
        validate::tracked_transfer(args.ledger, &args.op, &self.config.borrow())?;
        let fee = self.fee(ctx, self.config.borrow().fees.tracked_transfer_cycles)?;
        let idem = idempotency(
            args.idempotency_key.clone(),
            &("track", &args.ledger, &args.op, &args.lock_key),
        )?;
        let lock = validate::lock_key(caller, args.lock_key)?;
        let opts = EntryOptions {
            lock_key: lock,
            idempotency: idem,
        };
        let (entry_id, intent) =
            match self
                .journal
                .track_transfer(caller, args.ledger, args.op, opts)
            {
                Ok(r) => {
                    self.charge(fee);
                    r
                }
                Err(JournalError::DuplicateRequest { entry_id }) => {
                    let e = self.journal.get_owned(caller, entry_id)?;
                    let Intent::Transfer(t) = e.intent else {
                        return Err(JournalError::IdempotencyKeyReused { entry_id }.into());
                    };
                    (entry_id, t)
                }
                Err(e) => return Err(e.into()),
            };
        Ok(TrackedTransfer {
            entry_id,
            ledger: intent.ledger,
            memo: intent.memo().map(|m| m.to_vec()).unwrap_or_default(),
            created_at_time: intent.created_at_time().unwrap_or_default(),
            op: intent.op,
        })
    }

    // ---------------------------------------------------------------------------------------
    // Executed transfers and sagas (sent by the service from ICRC-2 allowances / escrow)
    // ---------------------------------------------------------------------------------------

    fn acquire(&self, caller: Principal) -> ServiceResult<InFlightGuard> {
        let cfg = self.config.borrow();
        InFlightGuard::acquire(
            &self.in_flight,
            caller,
            cfg.max_in_flight_per_caller,
            cfg.max_in_flight_total,
        )
    }

    /// Journal an executed transfer: `New` with its in-flight slot, or the entry a repeated
    /// request (same idempotency key) already has.
    fn journal_transfer(&self, ctx: &Ctx, req: TransferRequest) -> ServiceResult<Journaled> {
        let caller = guard::authenticated(ctx)?;
        let idem = idempotency(
            req.idempotency_key.clone(),
            &("transfer", &req.transfer, &req.lock_key),
        )?;
        let spec = validate::executed_transfer(caller, req.transfer, &self.config.borrow())?;
        let fee = self.fee(ctx, self.config.borrow().fees.transfer_cycles)?;
        let lock = validate::lock_key(caller, req.lock_key)?;
        let slot = self.acquire(caller)?;
        let opts = EntryOptions {
            lock_key: lock,
            idempotency: idem,
        };
        match self.journal.journal_transfer(caller, spec, opts) {
            Ok(id) => {
                self.charge(fee);
                Ok(Journaled::New(id, slot))
            }
            Err(JournalError::DuplicateRequest { entry_id }) => Ok(Journaled::Existing(entry_id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Journal and execute (no commit self-call: only the reply follows); wait for the outcome (an unknown one is recovered later: the
    /// returned status is then `Unknown` and the caller polls `get_entry`). A repeated request
    /// (same idempotency key) returns the first entry's result now, without sending again.
    pub async fn execute_transfer(
        &self,
        ctx: &Ctx,
        req: TransferRequest,
    ) -> ServiceResult<FlowResult> {
        match self.journal_transfer(ctx, req)? {
            Journaled::New(id, slot) => {
                // Nothing follows the result but releasing the slot and the reply: no commit.
                let r = self.journal.execute_then_reply(id).await;
                drop(slot);
                Ok(r?)
            }
            Journaled::Existing(id) => self.flow_result(ctx, id),
        }
    }

    /// Journal and start the transfer; returns the entry id without waiting.
    pub fn submit_transfer(&self, ctx: &Ctx, req: TransferRequest) -> ServiceResult<EntryId> {
        match self.journal_transfer(ctx, req)? {
            Journaled::New(id, slot) => {
                let j = self.journal.clone();
                self.journal.runtime().spawn(Box::pin(async move {
                    let _slot = slot;
                    // The task ends with the result: nothing to protect by a commit.
                    let _ = j.execute_then_reply(id).await;
                }));
                Ok(id)
            }
            Journaled::Existing(id) => Ok(id),
        }
    }

    fn flow_result(&self, ctx: &Ctx, id: EntryId) -> ServiceResult<FlowResult> {
        let e = self.journal.get_owned(ctx.caller, id)?;
        Ok(FlowResult {
            entry_id: id,
            status: e.status,
            outcome: e.outcome,
        })
    }

    fn start_saga(&self, ctx: &Ctx, req: SagaRequest) -> ServiceResult<Journaled> {
        let caller = guard::authenticated(ctx)?;
        let cfg = self.config.borrow().clone();
        let max_steps = self.journal.config().max_saga_steps as usize;
        if req.steps.is_empty() || req.steps.len() > max_steps {
            return Err(ServiceError::Journal(
                icjournal::JournalError::InvalidArgument {
                    message: format!("a saga has 1 to {max_steps} steps"),
                },
            ));
        }
        let idem = idempotency(
            req.idempotency_key.clone(),
            &("saga", &req.steps, &req.lock_key),
        )?;
        // Every transfer the saga may send (steps and compensations) is paid for.
        let transfers = req.steps.len() as u64
            + req
                .steps
                .iter()
                .filter(|s| s.compensation.is_some())
                .count() as u64;
        let fee = self.fee(ctx, cfg.fees.transfer_cycles.saturating_mul(transfers))?;
        let mut steps = Vec::with_capacity(req.steps.len());
        for s in req.steps {
            let action = validate::executed_transfer(caller, s.transfer, &cfg)?;
            let compensation = s
                .compensation
                .map(|c| validate::executed_transfer(caller, c, &cfg))
                .transpose()?;
            steps.push(SagaStepSpec {
                action: StepAction::Transfer(action),
                compensation: compensation.map(StepAction::Transfer),
            });
        }
        let lock = validate::lock_key(caller, req.lock_key)?;
        let slot = self.acquire(caller)?;
        let opts = EntryOptions {
            lock_key: lock,
            idempotency: idem,
        };
        match self.journal.start_saga(caller, steps, opts) {
            Ok(id) => {
                self.charge(fee);
                Ok(Journaled::New(id, slot))
            }
            Err(JournalError::DuplicateRequest { entry_id }) => Ok(Journaled::Existing(entry_id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Start a saga and drive it as far as it goes now (until settled or waiting on recovery).
    pub async fn execute_saga(&self, ctx: &Ctx, req: SagaRequest) -> ServiceResult<FlowResult> {
        match self.start_saga(ctx, req)? {
            Journaled::New(id, slot) => {
                let r = self.journal.run_saga_then_reply(id).await;
                drop(slot);
                Ok(r?)
            }
            Journaled::Existing(id) => self.flow_result(ctx, id),
        }
    }

    /// Start a saga without waiting; returns the saga's entry id.
    pub fn submit_saga(&self, ctx: &Ctx, req: SagaRequest) -> ServiceResult<EntryId> {
        match self.start_saga(ctx, req)? {
            Journaled::New(id, slot) => {
                let j = self.journal.clone();
                self.journal.runtime().spawn(Box::pin(async move {
                    let _slot = slot;
                    let _ = j.run_saga_then_reply(id).await;
                }));
                Ok(id)
            }
            Journaled::Existing(id) => Ok(id),
        }
    }

    /// The caller's entry with this key: the entry created with that idempotency key, or the
    /// latest that took that lock key (also once final).
    pub fn find_entry(&self, ctx: &Ctx, key: EntryKey) -> ServiceResult<Entry> {
        let caller = guard::authenticated(ctx)?;
        let engine_key = match key {
            EntryKey::IdempotencyKey(k) => {
                validate::idempotency_key(&k)?;
                EntryKey::IdempotencyKey(k)
            }
            EntryKey::LockKey(k) => {
                let namespaced = validate::lock_key(caller, Some(k.clone()))?.unwrap_or(k);
                EntryKey::LockKey(namespaced)
            }
        };
        let id = self
            .journal
            .find_by_key(caller, &engine_key)
            .ok_or(JournalError::KeyNotFound)?;
        Ok(self.journal.get_owned(caller, id)?)
    }

    pub fn ledgers(&self) -> Vec<LedgerConfig> {
        self.config.borrow().ledgers.clone()
    }

    /// Public journal metrics (no cycles balance: that is for controllers only).
    pub fn metrics(&self) -> Metrics {
        self.journal.metrics()
    }

    // ---------------------------------------------------------------------------------------
    // Operators (admins or controllers)
    // ---------------------------------------------------------------------------------------

    /// An operator verb. A transfer's `ResolveSucceeded` reads the block from the ledger
    /// first (an await), so this is an async update. Approvals count only while their
    /// approver is still an operator (an admin in the current configuration, or a controller).
    pub async fn admin_act(&self, ctx: &Ctx, req: AdminRequest) -> ServiceResult<AdminResult> {
        let actor = guard::operator(ctx, &self.config.borrow())?;
        validate::reason(&req.reason)?;
        let summary = format!("{:?} on entry {}", req.action, req.entry_id);
        let rt = self.journal.runtime();
        let is_operator = |p: &Principal| {
            guard::is_operator(&Ctx::new(*p, rt.is_controller(p)), &self.config.borrow())
        };
        match self.journal.admin(actor, req, is_operator).await {
            Ok(r) => {
                log!(INFO, "operator action {summary} -> {r:?}");
                Ok(r)
            }
            Err(e) => {
                log!(DEBUG, "operator action {summary} refused: {e:?}");
                Err(e.into())
            }
        }
    }

    pub fn admin_get_entry(&self, ctx: &Ctx, id: EntryId) -> ServiceResult<Entry> {
        guard::operator(ctx, &self.config.borrow())?;
        // A compacted entry answers `Compacted` (its summary) or `Pruned`, never `NotFound`.
        Ok(self.journal.lookup(id)?)
    }

    pub fn admin_list(&self, ctx: &Ctx, args: AdminListArgs) -> ServiceResult<Page<EntrySummary>> {
        guard::operator(ctx, &self.config.borrow())?;
        Ok(self.list(&args.filter, args.page))
    }

    pub fn admin_audit(&self, ctx: &Ctx, args: AuditArgs) -> ServiceResult<Vec<AuditRecord>> {
        guard::operator(ctx, &self.config.borrow())?;
        Ok(self
            .journal
            .audit(args.start_seq, validate::page_limit(args.limit)))
    }

    pub fn get_config(&self, ctx: &Ctx) -> ServiceResult<ConfigView> {
        guard::operator(ctx, &self.config.borrow())?;
        Ok(ConfigView {
            config: self.config(),
            recovery_paused: self.paused.get(),
        })
    }

    pub fn set_config(self: &Rc<Self>, ctx: &Ctx, args: SetConfigArgs) -> ServiceResult<()> {
        let actor = guard::operator(ctx, &self.config.borrow())?;
        validate::reason(&args.reason)?;
        config::validate(&args.config)?;
        self.journal
            .set_config(engine_config(&args.config))
            .map_err(|e| ServiceError::InvalidConfig {
                message: e.to_string(),
            })?;
        let old = self.config.replace(args.config);
        self.persist();
        log!(INFO, "config changed by {actor}: {}", args.reason);
        if old.recovery_interval_ns != self.config.borrow().recovery_interval_ns {
            self.start_recovery_timer();
        }
        Ok(())
    }

    pub fn pause_recovery(&self, ctx: &Ctx, reason: String) -> ServiceResult<()> {
        self.set_paused(ctx, reason, true)
    }

    pub fn resume_recovery(&self, ctx: &Ctx, reason: String) -> ServiceResult<()> {
        self.set_paused(ctx, reason, false)
    }

    fn set_paused(&self, ctx: &Ctx, reason: String, paused: bool) -> ServiceResult<()> {
        let actor = guard::operator(ctx, &self.config.borrow())?;
        validate::reason(&reason)?;
        self.paused.set(paused);
        self.journal.set_recovery_paused(paused);
        self.persist();
        let verb = if paused { "paused" } else { "resumed" };
        log!(INFO, "recovery {verb} by {actor}: {reason}");
        Ok(())
    }

    /// Data of the public dashboard: counts (from the metrics' counters), the head of the
    /// manual queue and the oldest unresolved entries. Bounded whatever the journal's size
    /// (I6): at most `QUEUE_ROWS` + `UNRESOLVED_ROWS` × 4 entries are read, through the status
    /// index, plus the step a shown saga is blocked on.
    pub fn dashboard(&self, now: u64) -> crate::http::Dashboard {
        use crate::http::{QUEUE_ROWS, UNRESOLVED_ROWS};
        let metrics = self.journal.metrics();
        let head = |status: Status, rows: u32| -> Vec<Entry> {
            self.journal
                .list(
                    &ListFilter {
                        status: Some(status),
                        ..Default::default()
                    },
                    &PageRequest {
                        start_after: None,
                        limit: rows,
                    },
                )
                .items
                .iter()
                .filter_map(|s| self.journal.get(s.id))
                .collect()
        };
        let manual_queue = head(Status::ManualReview, QUEUE_ROWS);
        // A saga waits for an operator to act on one of its steps: show that step's state.
        let blocked_steps = manual_queue
            .iter()
            .filter_map(|e| e.blocked_on)
            .filter(|id| !manual_queue.iter().any(|m| m.id == *id))
            .filter_map(|id| self.journal.get(id))
            .map(|e| EntrySummary::from(&e))
            .collect();
        // Ids grow with creation time, so the head of each status range is its oldest entries.
        let mut unresolved: Vec<Entry> = [
            Status::Unknown,
            Status::Recovering,
            Status::Pending,
            Status::Compensating,
        ]
        .into_iter()
        .flat_map(|s| head(s, UNRESOLVED_ROWS))
        .collect();
        unresolved.sort_by_key(|e| e.id);
        unresolved.truncate(UNRESOLVED_ROWS as usize);
        crate::http::Dashboard {
            now,
            canister_id: self.journal.runtime().self_id(),
            version: env!("CARGO_PKG_VERSION"),
            metrics,
            manual_queue,
            blocked_steps,
            unresolved,
            recovery_paused: self.paused.get(),
            in_flight: self.in_flight.total(),
        }
    }
}
