//! Sagas: steps run in order, each journaled as a child entry; on a step's definitive failure
//! the completed steps are compensated in reverse order.

use crate::error::JournalError;
use crate::journal::After;
use crate::journal::Journal;
use crate::runtime::Runtime;
use crate::types::*;
use crate::EntryOptions;
use candid::Principal;
use ic_stable_structures::Memory;
impl<R: Runtime, M: Memory + 'static> Journal<R, M> {
    pub fn start_saga(
        &self,
        owner: Principal,
        steps: Vec<SagaStepSpec>,
        opts: impl Into<EntryOptions>,
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
        self.create(owner, Kind::Saga, opts.into(), None, |_, _| {
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
    /// Its terminal status is committed by a self-call before this returns (unless the saga
    /// was created in this message), so the caller's code that follows may trap without
    /// losing it.
    pub async fn run_saga(&self, id: EntryId) -> Result<FlowResult, JournalError> {
        self.run_saga_with(id, After::Continue).await
    }

    /// [`Journal::run_saga`] for a caller that does nothing after it but reply (or end the
    /// message): the terminal status is not committed by a self-call. A trap after it rolls
    /// the saga back to its last step in flight, whose guard marks it `Unknown`; recovery
    /// re-derives that step's result exactly and finishes the saga (docs/design.md, "When a
    /// commit is needed").
    pub async fn run_saga_then_reply(&self, id: EntryId) -> Result<FlowResult, JournalError> {
        self.run_saga_with(id, After::Reply).await
    }

    pub(crate) async fn run_saga_with(
        &self,
        id: EntryId,
        after: After,
    ) -> Result<FlowResult, JournalError> {
        let e = self
            .get(id)
            .ok_or(JournalError::NotFound { entry_id: id })?;
        if e.kind != Kind::Saga {
            return Err(JournalError::UnsupportedForKind {
                entry_id: id,
                message: "not a saga".into(),
            });
        }
        self.drive_saga(id, after).await;
        Ok(self.flow_result(id))
    }

    pub(crate) fn saga(&self, id: EntryId) -> Option<(Entry, SagaIntent)> {
        let e = self.get(id)?;
        let Intent::Saga(s) = e.intent.clone() else {
            return None;
        };
        Some((e, s))
    }

    pub(crate) fn set_saga(&self, id: EntryId, s: SagaIntent, next: Option<Timestamp>) {
        self.update(id, |e| {
            e.intent = Intent::Saga(s);
            if next.is_some() {
                e.next_attempt_at = next;
            }
        });
    }

    pub(crate) fn start_child(
        &self,
        saga: &Entry,
        action: &StepAction,
    ) -> Result<EntryId, JournalError> {
        match action {
            StepAction::Transfer(spec) => self
                .journal_transfer_with_parent(
                    saga.owner,
                    spec.clone(),
                    EntryOptions::default(),
                    Some(saga.id),
                )
                .map(|e| e.id),
            StepAction::Local(l) => {
                let l = l.clone();
                self.create(
                    saga.owner,
                    Kind::LocalStep,
                    EntryOptions::default(),
                    Some(saga.id),
                    |_, _| Intent::Local(l),
                )
                .map(|e| e.id)
            }
        }
    }

    /// Saga children: transfers and local steps only (no recursion into sagas).
    pub(crate) async fn execute_leaf(&self, id: EntryId) {
        match self.get(id).map(|e| e.kind) {
            Some(Kind::Icrc1Transfer | Kind::Icrc2TransferFrom) => {
                // No commit after the result: what follows is the saga's own code, which
                // commits before any host code runs (a local step's attempt, the next ledger
                // call's await, the terminal commit). A trap in between is recovered exactly
                // from the ledger (docs/design.md, "When a commit is needed").
                self.send_first(id, After::Reply).await
            }
            Some(Kind::LocalStep) => self.run_local(id).await,
            _ => {}
        }
    }

    /// `after`: what the caller does once this returns; `Continue` commits a terminal status.
    pub(crate) async fn drive_saga(&self, id: EntryId, after: After) {
        // Asked at the end, not here: an await on a step ends the message the saga began in.
        // Created in this message, a trap anywhere rolls the whole saga back (nothing to keep).
        let commit_end = || after == After::Continue && !self.created_in_this_message(id);
        // A step's success advances the cursor on the heap only: the next write of the saga
        // in this message (the next step's start, the terminal status) carries it, and every
        // other path writes it first (`flush`). No await lies between, so what is stored at
        // every await and at the end is the same as with a write per advance; one entry
        // write fewer per step.
        let mut advanced: Option<SagaIntent> = None;
        // Bounded: each iteration either advances the cursor or returns.
        for _ in 0..(2 * self.config().max_saga_steps + 2) {
            let Some((e, mut s)) = self.saga(id) else {
                return;
            };
            let lease = self.lease_until();
            let mut dirty = advanced.is_some();
            if let Some(a) = advanced.take() {
                s = a;
            }
            let flush = |s: &SagaIntent, dirty: &mut bool| {
                if std::mem::take(dirty) {
                    self.set_saga(id, s.clone(), Some(lease));
                }
            };
            if !matches!(
                e.status,
                Status::Pending | Status::Compensating | Status::Unknown | Status::Recovering
            ) {
                flush(&s, &mut dirty);
                return;
            }
            // An operator's retry leaves a compensating saga `Unknown`; `Compensated` is reached
            // only from `Compensating`, so take that edge first.
            if s.phase == SagaPhase::Compensating && e.status != Status::Compensating {
                flush(&s, &mut dirty);
                if self
                    .transition_or_park(id, Status::Compensating, "compensation resumes", |_| {})
                    .is_none()
                {
                    return;
                }
                continue;
            }
            match s.phase {
                SagaPhase::Forward => {
                    let i = s.cursor as usize;
                    if i >= s.steps.len() {
                        self.transition_or_park(id, Status::Succeeded, "all steps done", |e| {
                            if dirty {
                                e.intent = Intent::Saga(s);
                            }
                            e.outcome = Some(Outcome::Succeeded {
                                block_index: None,
                                reply: vec![],
                                source: EvidenceSource::Host,
                            })
                        });
                        if commit_end() {
                            self.self_commit().await;
                        }
                        return;
                    }
                    let child = match s.steps[i].entry {
                        Some(c) => c,
                        None => match self.start_child(&e, &s.steps[i].action) {
                            Ok(c) => {
                                s.steps[i].entry = Some(c);
                                self.set_saga(id, s.clone(), Some(lease));
                                dirty = false;
                                c
                            }
                            Err(err) => {
                                flush(&s, &mut dirty);
                                self.to_manual(id, &format!("cannot start step {i}: {err}"));
                                return;
                            }
                        },
                    };
                    let Some(c) = self.get(child) else {
                        flush(&s, &mut dirty);
                        return;
                    };
                    if c.status != Status::Succeeded {
                        flush(&s, &mut dirty);
                    }
                    match c.status {
                        Status::Pending if c.attempts == 0 => {
                            self.execute_leaf(child).await;
                        }
                        Status::Succeeded => {
                            s.cursor += 1;
                            advanced = Some(s);
                        }
                        Status::Failed | Status::Cancelled => {
                            s.phase = SagaPhase::Compensating;
                            s.failure = Some(format!("step {i} (entry {child}) failed"));
                            // cursor = number of steps that may need compensation.
                            let note = s.failure.clone().unwrap_or_default();
                            self.transition_or_park(id, Status::Compensating, &note, |e| {
                                e.intent = Intent::Saga(s);
                                e.next_attempt_at = Some(lease);
                            });
                        }
                        // The step needs an operator: so does the saga, in the queue, saying which
                        // entry it waits for. The operator's action on the step releases it.
                        Status::ManualReview => {
                            self.to_manual_blocked(
                                id,
                                &format!(
                                    "blocked: step {i} (entry {child}) is in manual review: {}",
                                    c.manual_reason.as_deref().unwrap_or("")
                                ),
                                Some(child),
                            );
                            return;
                        }
                        // In flight or being recovered: wait; the child's resolution wakes the
                        // saga.
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
                        self.transition_or_park(id, Status::Compensated, &failure, |e| {
                            e.outcome = Some(Outcome::Failed {
                                reason: FailureReason::SagaStepFailed {
                                    step,
                                    entry: first_failed,
                                },
                                source: EvidenceSource::Host,
                            })
                        });
                        if commit_end() {
                            self.self_commit().await;
                        }
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
                                &format!(
                                    "compensation of step {i} (entry {child}) failed; retry the \
                                     saga to start a new compensation of that step"
                                ),
                            );
                            return;
                        }
                        Status::ManualReview => {
                            self.to_manual_blocked(
                                id,
                                &format!(
                                    "blocked: compensation of step {i} (entry {child}) is in \
                                     manual review: {}",
                                    c.manual_reason.as_deref().unwrap_or("")
                                ),
                                Some(child),
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
        if let Some(s) = advanced {
            self.set_saga(id, s, Some(self.lease_until()));
        }
    }
}
