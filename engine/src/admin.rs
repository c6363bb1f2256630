//! Operator verbs on the manual-review queue, audited, with optional M-of-N approval.

use crate::error::JournalError;
use crate::journal::{is_transfer, truncate, Journal};
use crate::metrics::*;
use crate::runtime::Runtime;
use crate::status::Actor;
use crate::storage::{counter, Approvals};
use crate::types::*;
use candid::Principal;
use ic_stable_structures::Memory;
impl<R: Runtime, M: Memory + 'static> Journal<R, M> {
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
}
