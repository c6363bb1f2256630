//! The recovery timer: every tick takes passes of bounded batches of due entries and finds out
//! what happened to each (resend, lookup, re-run), the transfers of a pass concurrently, under
//! an instruction budget.

use crate::journal::{truncate, After, FlowGuard, Journal};
use crate::ledger::{self};
use crate::lookup::{self};
use crate::metrics::RecoveryPath;
use crate::recovery::{self, Decision, Observation, Plan};
use crate::runtime::{LocalFuture, Runtime};
use crate::status::Actor;
use crate::storage::counter;
use crate::types::*;
use ic_stable_structures::Memory;

/// Block claims of a journal migrated from storage layouts 1 to 5 that one tick moves from
/// their B-tree into the claims table (storage layout 6): each is a removal from a tree as
/// large as the journal was (~200 stable reads at 1M claims), so a tick spends a small part
/// of its budget on them and a million take 2,000 ticks.
const OLDER_CLAIMS_PER_TICK: usize = 500;
use std::task::Poll;

/// A tick stops starting transfers in one message once the message has used this many
/// instructions (batch selection included; a start — reading the entry, claiming it, sending
/// its call — is ~7M instructions today). A message under the IC's slice of 2B instructions
/// (`MAX_INSTRUCTIONS_PER_SLICE`, dfinity/ic rs/config/src/subnet_config.rs) runs in one
/// round; this keeps every message of a tick below 1B, under half a slice.
pub const START_INSTRUCTIONS_PER_MESSAGE: u64 = 800_000_000;

/// Whether a transfer's recovery resolved it, and the guard of its claim (if it claimed it).
type Recovered<R, M> = (bool, Option<FlowGuard<R, M>>);

/// Clears the overlap marker when the tick that set it ends or is dropped by a trap's cleanup
/// — only if the marker is still its own: a tick presumed dead (its lease ran out) that ends
/// late must not clear the marker of the tick that replaced it.
struct TickGuard<R: Runtime, M: Memory + 'static> {
    journal: Journal<R, M>,
    generation: u64,
}

impl<R: Runtime, M: Memory + 'static> Drop for TickGuard<R, M> {
    fn drop(&mut self) {
        let running = &self.journal.inner.tick_running;
        if running.get().is_some_and(|(g, _)| g == self.generation) {
            running.set(None);
        }
    }
}

impl<R: Runtime, M: Memory + 'static> Journal<R, M> {
    /// Arm the recovery timer. Call from `init` and `post_upgrade` (timers do not survive an
    /// upgrade); calling it again replaces the previous timer (e.g. after the interval changed).
    ///
    /// The timer is an interval timer: it is re-scheduled outside the tick's own messages, so
    /// a trap anywhere in a tick rolls back only that tick, never the next one. Ticks never
    /// overlap (the tick's guard). A first tick runs at once.
    pub fn start_recovery_timer(&self) {
        if let Some(old) = self.inner.timer.take() {
            self.inner.rt.clear_timer(old);
        }
        let interval = self.inner.config.borrow().recovery_interval_ns;
        let j = self.clone();
        let handle = self.inner.rt.set_timer_interval(
            interval,
            Box::new(move || {
                let j = j.clone();
                Box::pin(async move { j.timer_tick().await }) as LocalFuture<()>
            }),
        );
        self.inner.timer.set(Some(handle));
        self.tick_soon();
    }

    /// Pause or resume the timer's ticks (operators pause recovery while a ledger is being
    /// repaired). Not persisted: the host persists it and calls this after `open`.
    pub fn set_recovery_paused(&self, paused: bool) {
        self.inner.paused.set(paused);
    }

    pub fn recovery_paused(&self) -> bool {
        self.inner.paused.get()
    }

    /// Bring timers back if the system timer was lost (see `Runtime::revive_timers`). Cheap:
    /// call it from every update method of the host.
    pub fn revive_timers(&self) {
        self.inner.rt.revive_timers();
    }

    /// An extra tick at once (one-shot). Used when more work is due than a tick takes; a trap
    /// in it loses only this extra tick, the interval timer stays.
    fn tick_soon(&self) {
        let j = self.clone();
        self.inner
            .rt
            .set_timer(0, Box::pin(async move { j.timer_tick().await }));
    }

    async fn timer_tick(&self) {
        if self.inner.paused.get() {
            return;
        }
        let report = self.recovery_tick().await;
        if report.more_due && !report.skipped_overlap {
            self.tick_soon();
        }
    }

    /// One recovery tick: passes over bounded batches of due entries (I6), one after another
    /// while more is due, stopping once the tick's call context has used
    /// `recovery_instruction_budget` instructions. The budget is measured with the call-context
    /// counter: the per-message counter restarts at every await, so after the first call it
    /// would always read (almost) nothing.
    ///
    /// A pass's transfers are recovered concurrently (`recover_transfers`), then its other
    /// entries one after another. Work that belongs at the end of a tick goes after the last
    /// commit, at the marked place.
    pub async fn recovery_tick(&self) -> TickReport {
        let mut report = TickReport::default();
        let cfg = self.config();
        let now = self.now();
        if let Some((_, since)) = self.inner.tick_running.get() {
            if now < since.saturating_add(cfg.in_flight_lease_ns) {
                report.skipped_overlap = true;
                return report;
            }
        }
        let generation = self.inner.tick_generation.get().wrapping_add(1);
        self.inner.tick_generation.set(generation);
        self.inner.tick_running.set(Some((generation, now)));
        let _guard = TickGuard {
            journal: self.clone(),
            generation,
        };
        self.inner.store.borrow_mut().bump(counter::TICKS, 1);
        let start = self.inner.rt.call_context_instruction_counter();
        // Guards of the transfers whose results this message journaled (`recover_transfers`).
        let mut uncommitted = Vec::new();
        loop {
            let batch = self.next_batch(self.now(), cfg.recovery_batch as usize);
            report.more_due = batch.more_due;
            let sent = self
                .recover_transfers(batch.transfers, start, &mut report, &mut uncommitted)
                .await;
            // Local steps run host code, sagas go on to their next step: commit the transfers'
            // results first (docs/design.md, "When a commit is needed", case 1).
            if !batch.others.is_empty() {
                self.commit_recovered(&mut uncommitted).await;
            }
            for id in batch.others {
                if self.over_budget(start) {
                    report.budget_exhausted = true;
                    report.more_due = true;
                    break;
                }
                report.examined += 1;
                if self.recover_one(id).await {
                    report.resolved += 1;
                }
            }
            // The next batch at once, in this call context (under this tick's guard and
            // budget), if this one sent transfers: every entry it took is no longer due, so
            // each pass makes progress. Otherwise the timer brings the next tick (at once if
            // more is due).
            if self.over_budget(start) {
                report.budget_exhausted = true;
            }
            if sent == 0 || !report.more_due || report.budget_exhausted {
                break;
            }
        }
        self.commit_recovered(&mut uncommitted).await;
        // Work added at the end of a tick goes here, after the commit: a trap in it must not
        // roll back the last results.
        self.retention_step();
        self.inner
            .store
            .borrow_mut()
            .move_older_claims(OLDER_CLAIMS_PER_TICK);
        report.instructions = self
            .inner
            .rt
            .call_context_instruction_counter()
            .saturating_sub(start);
        report
    }

    fn over_budget(&self, start: u64) -> bool {
        let used = self
            .inner
            .rt
            .call_context_instruction_counter()
            .saturating_sub(start);
        used > self.inner.config.borrow().recovery_instruction_budget
    }

    /// Recover the batch's transfers concurrently: each is started (claimed, its first call
    /// sent) in this message, in batch order, until the budget is used; then all are awaited
    /// together. Each entry stays between its journaled claim and its journaled result under
    /// its own Drop guard, which goes to `guards` once the result is journaled and is dropped
    /// only once that result is committed — when its message has ended, or by
    /// `commit_recovered`: a trap before that sets the entry back to `Unknown`.
    ///
    /// No commit per entry (docs/design.md, "When a commit is needed"): each entry's result is
    /// journaled in the callback of its last call, and in that message only the join's
    /// bookkeeping follows — or, after the pass's last result, the next pass's selection and
    /// starts: engine code, bounded by `START_INSTRUCTIONS_PER_MESSAGE`, no host code. A trap
    /// there rolls the result back and is recovered exactly (deduplicated resend). The tick
    /// commits before anything else runs: host code (`others`) and the tick's end.
    ///
    /// Starting stops at the tick's budget, and at `START_INSTRUCTIONS_PER_MESSAGE` in this
    /// message; what was not started stays due. Returns how many were sent (and awaited).
    async fn recover_transfers(
        &self,
        entries: Vec<Entry>,
        start: u64,
        report: &mut TickReport,
        guards: &mut Vec<FlowGuard<R, M>>,
    ) -> usize {
        let mut running: Vec<LocalFuture<Recovered<R, M>>> = Vec::new();
        for e in entries {
            if self.over_budget(start) {
                report.budget_exhausted = true;
                report.more_due = true;
                break;
            }
            if self.inner.rt.instruction_counter() > START_INSTRUCTIONS_PER_MESSAGE {
                report.more_due = true;
                break;
            }
            report.examined += 1;
            let j = self.clone();
            let mut f: LocalFuture<Recovered<R, M>> =
                Box::pin(async move { j.recover_due_transfer(e).await });
            // Start it now, so that the budget check before the next entry sees its cost.
            match std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await {
                Poll::Ready((resolved, guard)) => {
                    report.resolved += u32::from(resolved);
                    guards.extend(guard);
                }
                Poll::Pending => running.push(f),
            }
        }
        let sent = running.len();
        // Each reply is its own message; it wakes this task, and only the future it answers
        // makes progress (the others' polls return at once).
        let mut first_poll = true;
        std::future::poll_fn(|cx| {
            // A poll after the first runs in a new message: the messages that journaled the
            // results behind the guards held so far have ended, so those results are committed.
            if !std::mem::take(&mut first_poll) {
                guards.clear();
            }
            running.retain_mut(|f| match f.as_mut().poll(cx) {
                Poll::Ready((resolved, guard)) => {
                    report.resolved += u32::from(resolved);
                    guards.extend(guard);
                    false
                }
                Poll::Pending => true,
            });
            if running.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        sent
    }

    /// Commit the journaled results of the transfers recovered so far, then release their
    /// guards (a guard dropped before the commit would see the uncommitted result; a trap
    /// rolls that back, and only the guard's cleanup puts the entry back to `Unknown`).
    async fn commit_recovered(&self, guards: &mut Vec<FlowGuard<R, M>>) {
        if guards.is_empty() {
            return;
        }
        self.self_commit().await;
        guards.clear();
    }

    /// A due transfer's recovery, its result not yet committed: the caller commits, then drops
    /// the guard (None if nothing was claimed).
    async fn recover_due_transfer(&self, e: Entry) -> Recovered<R, M> {
        if e.next_attempt_at.is_some_and(|at| at <= self.now()) {
            self.recover_transfer(e).await
        } else {
            (false, None)
        }
    }

    /// Returns true if the entry got resolved (or went to manual review).
    pub(crate) async fn recover_one(&self, id: EntryId) -> bool {
        let Some(e) = self.get(id) else { return false };
        let now = self.now();
        if e.next_attempt_at.is_none_or(|at| at > now) {
            return false;
        }
        match e.kind {
            Kind::Icrc1Transfer | Kind::Icrc2TransferFrom => {
                let (resolved, guard) = self.recover_transfer(e).await;
                if guard.is_some() {
                    self.self_commit().await;
                }
                resolved
            }
            Kind::LocalStep => {
                self.run_local(id).await;
                self.get(id)
                    .is_some_and(|e| !e.status.is_unresolved() || e.status == Status::ManualReview)
            }
            Kind::Saga => {
                self.drive_saga(id, After::Continue).await;
                self.get(id)
                    .is_some_and(|e| !e.status.is_unresolved() || e.status == Status::ManualReview)
            }
            Kind::Record => {
                // Records are resolved by their owner. One with no result at its deadline goes
                // to its owner's failed list: the engine can find nothing out by itself, and a
                // caller (or throw-away principals) must not be able to fill the operators'
                // queue with records left to time out.
                let reported_unknown = e.status == Status::Unknown;
                self.transition_or_park(
                    id,
                    Status::Failed,
                    "no result reported before the record timeout",
                    |e| {
                        e.outcome = Some(Outcome::Failed {
                            reason: FailureReason::RecordTimedOut { reported_unknown },
                            source: EvidenceSource::Host,
                        })
                    },
                );
                true
            }
        }
    }

    /// Recover one claimed transfer; returns whether it got resolved and, if it was claimed, its
    /// guard, to be dropped once the result is committed.
    pub(crate) async fn recover_transfer(&self, e: Entry) -> Recovered<R, M> {
        let id = e.id;
        let cfg = self.config();
        let Intent::Transfer(t) = e.intent.clone() else {
            return (false, None);
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
            _ => return (false, None),
        };
        let Ok(claimed) = claimed else {
            return (false, None);
        };
        self.inner.store.borrow_mut().bump(counter::ATTEMPTS, 1);
        let attempt = claimed.attempts;
        let guard = FlowGuard {
            journal: self.clone(),
            id,
            owned_status: Status::Recovering,
            attempt,
        };
        let sender = ledger::sender_of(&t, self.inner.rt.self_id());
        let window = recovery::window_of(&t, &cfg);
        let mut scan = claimed.scan.clone().unwrap_or_default();

        let mut decision = match recovery::plan(&t, self.now(), &cfg) {
            Plan::Resend => {
                #[allow(unused_mut)]
                let mut op = t.op.clone();
                #[cfg(any(test, feature = "planted-bugs"))]
                if crate::planted::is(crate::planted::PlantedBug::ResendWithNewCreatedAtTime) {
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
                    window,
                    &Observation::Resend(outcome),
                )
            }
            Plan::Lookup => Decision::Lookup {
                window_closed: false,
            },
        };
        // The owner said which block holds its transfer: read that block first. Only a block
        // that holds exactly this transfer is proof; anything else is noted and the lookup runs.
        if let (Decision::Lookup { .. }, Some(block)) = (&decision, scan.reported_block) {
            match lookup::check_block(
                &self.inner.rt,
                &cfg,
                &self.inner.lookup_cache,
                &t,
                sender,
                block,
            )
            .await
            {
                lookup::BlockCheck::Matches => {
                    decision = Decision::Succeeded {
                        block,
                        path: RecoveryPath::MemoLookup,
                    };
                }
                lookup::BlockCheck::DoesNotMatch { reason } => {
                    scan.reported_block = None;
                    let (note, scan_copy) =
                        (format!("reported block rejected: {reason}"), scan.clone());
                    self.update(id, |e| {
                        e.scan = Some(scan_copy);
                        e.last_error = Some(truncate(&note, 512));
                    });
                }
                lookup::BlockCheck::Unreadable { detail } => {
                    decision = recovery::decide(
                        attempt,
                        self.now(),
                        &cfg,
                        t.created_at_time(),
                        window,
                        &Observation::Lookup(recovery::LookupResult::Undecided {
                            detail: format!("reported block {block}: {detail}"),
                        }),
                    );
                }
            }
        }
        if let Decision::Lookup { window_closed } = decision {
            scan.window_closed |= window_closed;
            let result = lookup::lookup(
                &self.inner.rt,
                &cfg,
                &self.inner.lookup_cache,
                &t,
                sender,
                &mut scan,
            )
            .await;
            let scan_copy = scan.clone();
            self.update(id, |e| e.scan = Some(scan_copy));
            decision = recovery::decide(
                attempt,
                self.now(),
                &cfg,
                t.created_at_time(),
                window,
                &Observation::Lookup(result),
            );
        }
        // No commit here: the caller commits, for a whole batch at once.
        (self.apply_recovery(id, attempt, decision), Some(guard))
    }

    pub(crate) fn apply_recovery(&self, id: EntryId, attempt: u32, decision: Decision) -> bool {
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
                self.transition_or_park(id, Status::Unknown, &note, |e| {
                    e.next_attempt_at = Some(at);
                    e.last_error = Some(truncate(&note, 512));
                });
                false
            }
            Decision::Continue { at, note } if owned => {
                self.transition_or_park(id, Status::Unknown, &note, |e| {
                    e.next_attempt_at = Some(at);
                    // Progress is not a failed attempt.
                    e.attempts = e.attempts.saturating_sub(1);
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
}
