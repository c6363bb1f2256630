//! The recovery timer: every tick takes a bounded batch of due entries and finds out what
//! happened to each (resend, lookup, re-run), under an instruction budget.

use crate::journal::{truncate, FlowGuard, Journal};
use crate::ledger::{self};
use crate::lookup::{self};
use crate::recovery::{self, Decision, Observation, Plan};
use crate::runtime::{LocalFuture, Runtime};
use crate::status::Actor;
use crate::storage::counter;
use crate::types::*;
use ic_stable_structures::Memory;

#[cfg(test)]
use crate::journal::PlantedBug;

/// Resets the tick overlap guard when the tick ends or is dropped by a trap's cleanup.
struct TickGuard<R: Runtime, M: Memory + 'static>(Journal<R, M>);

impl<R: Runtime, M: Memory + 'static> Drop for TickGuard<R, M> {
    fn drop(&mut self) {
        self.0.inner.tick_running_since.set(None);
    }
}

impl<R: Runtime, M: Memory + 'static> Journal<R, M> {
    /// Arm the recovery timer. Call from `init` and `post_upgrade` (timers do not survive an
    /// upgrade). Calling it again replaces the previous chain.
    pub fn start_recovery_timer(&self) {
        let generation = self.inner.timer_generation.get().wrapping_add(1);
        self.inner.timer_generation.set(generation);
        self.arm(generation, 0);
    }

    pub(crate) fn arm(&self, generation: u64, delay: u64) {
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
    pub(crate) async fn recover_one(&self, id: EntryId) -> bool {
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

    pub(crate) async fn recover_transfer(&self, e: Entry) -> bool {
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
        let window = recovery::window_of(&t, &cfg);
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
                    window,
                    &Observation::Resend(outcome),
                )
            }
            Plan::Lookup => Decision::Lookup {
                window_closed: false,
            },
        };
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
        let resolved = self.apply_recovery(id, attempt, decision);
        self.self_commit().await;
        drop(guard);
        resolved
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
                let _ = self.transition(id, Status::Unknown, Actor::Engine, None, &note, |e| {
                    e.next_attempt_at = Some(at);
                    e.last_error = Some(truncate(&note, 512));
                });
                false
            }
            Decision::Continue { at, note } if owned => {
                let _ = self.transition(id, Status::Unknown, Actor::Engine, None, &note, |e| {
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
