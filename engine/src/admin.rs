//! Operator verbs on the manual-review queue: audited (who, when, why, evidence), with optional
//! M-of-N approval.
//!
//! What a verb may change is guarded by evidence, not by trust:
//! - `ResolveSucceeded` on a transfer is applied only if the block is read from the ledger and
//!   holds exactly this transfer (every journaled field), and no other entry claims it.
//! - `ResolveFailed` / `Cancel` on a transfer release its lock key; while the ledger could still
//!   execute the transfer (its window plus drift is open) they need `acknowledge_risk`.
//! - `Compensate` waits until no step of the saga has an unknown outcome.
//! - Approvals count only while their approver is still an operator; proposing a different
//!   action restarts them, audited.
//! - An action on a saga's step in manual review also releases the saga blocked on it.

use crate::error::JournalError;
use crate::journal::{is_transfer, truncate, Journal};
use crate::ledger;
use crate::lookup::{self, BlockCheck};
use crate::metrics::*;
use crate::recovery;
use crate::runtime::Runtime;
use crate::status::Actor;
use crate::storage::{counter, Approvals};
use crate::types::*;
use candid::Principal;
use ic_stable_structures::Memory;

impl<R: Runtime, M: Memory + 'static> Journal<R, M> {
    /// Apply (or approve, with M-of-N) an operator action on a `ManualReview` entry. The host
    /// must have checked that `actor` is an operator (I7); `is_operator` tells whether a
    /// principal still is one (earlier approvals by former operators no longer count). The
    /// engine records who, when, why.
    pub async fn admin(
        &self,
        actor: Principal,
        req: AdminRequest,
        is_operator: impl Fn(&Principal) -> bool,
    ) -> Result<AdminResult, JournalError> {
        let e = self.check_admin_request(actor, &req)?;
        let id = e.id;
        let need = self.config().approvals_required;
        let approved = self.approvals_after(id, &req.action, &is_operator);
        if approved.approvers.contains(&actor) {
            return Err(JournalError::AlreadyApproved { entry_id: id });
        }
        let final_approval = approved.approvers.len() as u32 + 1 >= need;
        if final_approval {
            // Evidence is checked (an await: the ledger is read) before anything is written.
            self.verify_evidence(&e, &req.action).await?;
            // The entry may have changed while the ledger was read: check again.
            let again = self.check_admin_request(actor, &req)?;
            if again.updated_at != e.updated_at || again.attempts != e.attempts {
                return Err(JournalError::TemporarilyUnavailable {
                    message: format!("entry {id} changed while its evidence was checked; retry"),
                });
            }
        }
        let now = self.now();
        let mut approvals = self.record_approval_housekeeping(id, &req.action, &is_operator);
        if need > 1 {
            approvals.approvers.push(actor);
            let have = approvals.approvers.len() as u32;
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
                self.inner
                    .store
                    .borrow_mut()
                    .set_approvals(id, Some(approvals));
                return Ok(AdminResult::ApprovalRecorded {
                    have,
                    need,
                    audit_seq: seq,
                });
            }
            self.inner.store.borrow_mut().set_approvals(id, None);
        }
        self.apply_admin(actor, &e, req, now)
    }

    /// Checks that do not need the ledger; returns the entry.
    fn check_admin_request(
        &self,
        actor: Principal,
        req: &AdminRequest,
    ) -> Result<Entry, JournalError> {
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
        // A compacted entry was terminal: the answer says so (`Compacted`/`Pruned`).
        let e = self.lookup(id)?;
        if e.status != Status::ManualReview {
            return Err(JournalError::NotInManualReview {
                entry_id: id,
                status: e.status,
            });
        }
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
            // Checked here, not only with the evidence: this check runs again after the ledger
            // read's await, when another message may have claimed the block meanwhile.
            AdminAction::ResolveSucceeded {
                block_index: Some(block),
            } => {
                if let Intent::Transfer(t) = &e.intent {
                    let claimant = self.inner.store.borrow().claimant(t.ledger, *block);
                    if let Some(other) = claimant.filter(|o| *o != id) {
                        return Err(JournalError::EvidenceMismatch {
                            entry_id: id,
                            block_index: *block,
                            message: format!("block {block} already proves entry {other}"),
                        });
                    }
                }
            }
            AdminAction::Compensate if e.kind != Kind::Saga => {
                return Err(JournalError::UnsupportedForKind {
                    entry_id: id,
                    message: "only sagas can be compensated".into(),
                })
            }
            AdminAction::Compensate => {
                if let Some((step, child)) = self.unresolved_step(&e) {
                    return Err(JournalError::Blocked {
                        entry_id: id,
                        on: child,
                        message: format!(
                            "step {step} (entry {child}) has no final outcome yet: it may have \
                             executed, so compensating now could leave it uncompensated; \
                             resolve it first"
                        ),
                    });
                }
            }
            AdminAction::ResolveFailed | AdminAction::Cancel if is_transfer(e.kind) => {
                if let Intent::Transfer(t) = &e.intent {
                    let closes_at = self.window_closes_at(t);
                    if self.now() <= closes_at && req.acknowledge_risk != Some(true) {
                        return Err(JournalError::WindowStillOpen {
                            entry_id: id,
                            closes_at,
                        });
                    }
                }
            }
            AdminAction::ResolveFailed if e.kind == Kind::Saga => {
                // Closing a saga as failed compensates nothing: only right if no step executed.
                if let Some((step, child)) = self.completed_or_unresolved_step(&e) {
                    return Err(JournalError::Blocked {
                        entry_id: id,
                        on: child,
                        message: format!(
                            "step {step} (entry {child}) executed or may have: closing the saga \
                             as failed would leave it uncompensated; act on that entry, or \
                             compensate the saga"
                        ),
                    });
                }
            }
            AdminAction::ResolveSucceeded { .. } if e.kind == Kind::Saga => {
                if let Some((step, child)) = self.unfinished_step(&e) {
                    return Err(JournalError::Blocked {
                        entry_id: id,
                        on: child,
                        message: format!(
                            "step {step} (entry {child}) has not succeeded: a saga succeeds when \
                             all its steps did"
                        ),
                    });
                }
            }
            AdminAction::Cancel if e.kind == Kind::Saga => {
                if let Some((step, child)) = self.completed_or_unresolved_step(&e) {
                    return Err(JournalError::Blocked {
                        entry_id: id,
                        on: child,
                        message: format!(
                            "step {step} (entry {child}) executed or may have: cancelling would \
                             leave it uncompensated; compensate the saga instead"
                        ),
                    });
                }
            }
            _ => {}
        }
        // The status table decides last, before anything is written (the approval, the audit
        // record): an action it forbids is refused here, never half-applied in `apply_admin`.
        let to = admin_target(&e, &req.action);
        if !crate::status::is_legal(e.status, to, Actor::Admin) {
            return Err(JournalError::InvalidTransition {
                entry_id: id,
                from: e.status,
                to,
            });
        }
        Ok(e)
    }

    /// When the ledger can no longer execute this transfer, by our clock: the end of its
    /// window plus the permitted drift on both sides (the ledger's clock may lag ours).
    fn window_closes_at(&self, t: &TransferIntent) -> u64 {
        let w = recovery::window_of(t, &self.config());
        t.created_at_time()
            .unwrap_or(0)
            .saturating_add(w.tx_window_ns)
            .saturating_add(w.permitted_drift_ns.saturating_mul(2))
    }

    /// The saga step (index, entry) whose forward entry is not final, if any.
    fn unresolved_step(&self, saga: &Entry) -> Option<(usize, EntryId)> {
        let Intent::Saga(s) = &saga.intent else {
            return None;
        };
        s.steps.iter().enumerate().find_map(|(i, st)| {
            let c = st.entry?;
            let status = self.get(c)?.status;
            (!status.is_terminal()).then_some((i, c))
        })
    }

    /// A step (index, entry) that has not succeeded, or was never started.
    fn unfinished_step(&self, saga: &Entry) -> Option<(usize, EntryId)> {
        let Intent::Saga(s) = &saga.intent else {
            return None;
        };
        s.steps
            .iter()
            .enumerate()
            .find_map(|(i, st)| match st.entry {
                None => Some((i, saga.id)),
                Some(c) => (self.get(c)?.status != Status::Succeeded).then_some((i, c)),
            })
    }

    /// A step that executed or may have (for `Cancel`, which compensates nothing).
    fn completed_or_unresolved_step(&self, saga: &Entry) -> Option<(usize, EntryId)> {
        let Intent::Saga(s) = &saga.intent else {
            return None;
        };
        s.steps.iter().enumerate().find_map(|(i, st)| {
            let c = st.entry?;
            let status = self.get(c)?.status;
            (status != Status::Failed && status != Status::Cancelled).then_some((i, c))
        })
    }

    /// The pending approvals of `id` that still count for `action`, without writing anything.
    fn approvals_after(
        &self,
        id: EntryId,
        action: &AdminAction,
        is_operator: &impl Fn(&Principal) -> bool,
    ) -> Approvals {
        match self.inner.store.borrow().approvals(id) {
            Some(mut a) if a.action == *action => {
                a.approvers.retain(|p| is_operator(p));
                a
            }
            _ => Approvals {
                action: action.clone(),
                approvers: vec![],
            },
        }
    }

    /// Drops (and audits) approvals that no longer count: those of former operators, and all
    /// of them when a different action is proposed. Returns what still counts.
    fn record_approval_housekeeping(
        &self,
        id: EntryId,
        action: &AdminAction,
        is_operator: &impl Fn(&Principal) -> bool,
    ) -> Approvals {
        let now = self.now();
        let stored = self.inner.store.borrow().approvals(id);
        let Some(mut a) = stored else {
            return Approvals {
                action: action.clone(),
                approvers: vec![],
            };
        };
        let mut store = self.inner.store.borrow_mut();
        if a.action != *action {
            store.append_audit(
                now,
                id,
                None,
                AuditEvent::ApprovalsReplaced {
                    previous: a.action.clone(),
                    dropped: a.approvers.clone(),
                },
            );
            store.set_approvals(id, None);
            return Approvals {
                action: action.clone(),
                approvers: vec![],
            };
        }
        let (keep, dropped): (Vec<_>, Vec<_>) =
            a.approvers.iter().copied().partition(|p| is_operator(p));
        if !dropped.is_empty() {
            store.append_audit(now, id, None, AuditEvent::ApprovalsExpired { dropped });
        }
        a.approvers = keep;
        a
    }

    /// Reads the ledger to check the evidence an action brings.
    async fn verify_evidence(&self, e: &Entry, action: &AdminAction) -> Result<(), JournalError> {
        let (
            AdminAction::ResolveSucceeded {
                block_index: Some(block),
            },
            Intent::Transfer(t),
        ) = (action, &e.intent)
        else {
            return Ok(());
        };
        let block = *block;
        let sender = ledger::sender_of(t, self.inner.rt.self_id());
        let cfg = self.config();
        match lookup::check_block(
            &self.inner.rt,
            &cfg,
            &self.inner.lookup_cache,
            t,
            sender,
            block,
        )
        .await
        {
            BlockCheck::Matches => Ok(()),
            BlockCheck::DoesNotMatch { reason } => Err(JournalError::EvidenceMismatch {
                entry_id: e.id,
                block_index: block,
                message: reason,
            }),
            BlockCheck::Unreadable { detail } => Err(JournalError::EvidenceUnverifiable {
                entry_id: e.id,
                message: format!("block {block} could not be read: {detail}"),
            }),
        }
    }

    fn apply_admin(
        &self,
        actor: Principal,
        e: &Entry,
        req: AdminRequest,
        now: u64,
    ) -> Result<AdminResult, JournalError> {
        let id = e.id;
        let seq = self.inner.store.borrow_mut().append_audit(
            now,
            id,
            Some(actor),
            AuditEvent::AdminAction {
                action: req.action.clone(),
                reason: req.reason.clone(),
                acknowledged_risk: req.acknowledge_risk,
            },
        );
        let note = format!("admin {:?}: {}", req.action, truncate(&req.reason, 200));
        // The target `check_admin_request` checked against the status table.
        let to = admin_target(e, &req.action);
        let new = match req.action {
            AdminAction::Retry if e.kind == Kind::Saga => {
                let Intent::Saga(mut s) = e.intent.clone() else {
                    unreachable!("saga kind has a saga intent")
                };
                if s.phase == SagaPhase::Compensating {
                    // A compensation that failed definitively did not execute: a retry starts a
                    // new one.
                    for st in &mut s.steps {
                        if let Some(c) = st.compensation_entry {
                            if self.get(c).is_some_and(|c| {
                                matches!(c.status, Status::Failed | Status::Cancelled)
                            }) {
                                st.compensation_entry = None;
                            }
                        }
                    }
                }
                self.transition(id, to, Actor::Admin, Some(actor), &note, |e| {
                    e.intent = Intent::Saga(s);
                    e.next_attempt_at = Some(now);
                    e.blocked_on = None;
                })?
            }
            AdminAction::Retry => {
                self.transition(id, to, Actor::Admin, Some(actor), &note, |e| {
                    e.attempts = 0;
                    e.next_attempt_at = Some(now);
                    e.blocked_on = None;
                })?
            }
            AdminAction::ResolveSucceeded { block_index } => {
                self.transition(id, to, Actor::Admin, Some(actor), &note, |e| {
                    e.outcome = Some(Outcome::Succeeded {
                        block_index,
                        reply: vec![],
                        source: EvidenceSource::Admin,
                    })
                })?
            }
            AdminAction::ResolveFailed => {
                self.transition(id, to, Actor::Admin, Some(actor), &note, |e| {
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
                self.transition(id, to, Actor::Admin, Some(actor), &note, |e| {
                    e.intent = Intent::Saga(s);
                    e.next_attempt_at = Some(now);
                    e.blocked_on = None;
                })?
            }
            AdminAction::Cancel => {
                self.transition(id, to, Actor::Admin, Some(actor), &note, |_| {})?
            }
        };
        self.inner
            .store
            .borrow_mut()
            .bump(counter::PATH | RecoveryPath::Manual.tag() as u32, 1);
        if let Some(p) = new.parent {
            self.unblock_parent(p, id, actor, seq);
            self.wake(p);
        }
        Ok(AdminResult::Applied {
            status: new.status,
            audit_seq: seq,
        })
    }

    /// The operator acted on `child`: the saga that waited in the queue for it continues.
    fn unblock_parent(&self, parent: EntryId, child: EntryId, actor: Principal, seq: u64) {
        let Some((p, s)) = self.saga(parent) else {
            return;
        };
        if p.status != Status::ManualReview || p.blocked_on != Some(child) {
            return;
        }
        let to = match s.phase {
            SagaPhase::Forward => Status::Unknown,
            SagaPhase::Compensating => Status::Compensating,
        };
        let now = self.now();
        let note = format!("released: an operator acted on entry {child} (audit {seq})");
        if let Err(err) = self.transition(parent, to, Actor::Admin, Some(actor), &note, |e| {
            e.next_attempt_at = Some(now);
            e.blocked_on = None;
        }) {
            self.contradiction(parent, &format!("could not release the saga: {err}"));
        }
    }
}

/// The status an operator action moves `e` to (checked against the status table before the
/// action writes anything).
pub(crate) fn admin_target(e: &Entry, action: &AdminAction) -> Status {
    match action {
        AdminAction::Retry => match &e.intent {
            Intent::Saga(s) if s.phase == SagaPhase::Compensating => Status::Compensating,
            _ => Status::Unknown,
        },
        AdminAction::ResolveSucceeded { .. } => Status::Succeeded,
        AdminAction::ResolveFailed => Status::Failed,
        AdminAction::Compensate => Status::Compensating,
        AdminAction::Cancel => Status::Cancelled,
    }
}
