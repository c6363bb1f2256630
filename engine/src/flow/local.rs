//! Host-local steps: a registered handler's state change and its journaled result commit
//! together, in one message.

use crate::journal::{truncate, Journal};
use crate::runtime::Runtime;
use crate::storage::counter;
use crate::types::*;
use ic_stable_structures::Memory;
impl<R: Runtime, M: Memory + 'static> Journal<R, M> {
    /// Run a local step: [attempts++] → commit → [handler + result] → commit. The handler and
    /// its journaled result share one message, so they commit or roll back together.
    pub(crate) async fn run_local(&self, id: EntryId) {
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
        // The commits below make the attempt count and the result durable before what follows
        // can trap. Both are moot while the flow's root (the saga, or the step itself) was
        // created in this message: a trap then rolls back the root's creation along with the
        // handler's effect, and leaves nothing that recovery could retry, so no trap can repeat
        // (docs/design.md, "When a commit is needed").
        let root = e.parent.unwrap_or(id);
        let atomic = self.created_in_this_message(root);
        let lease = self.lease_until();
        self.update(id, |e| {
            e.attempts += 1;
            e.next_attempt_at = Some(lease);
        });
        self.inner.store.borrow_mut().bump(counter::ATTEMPTS, 1);
        if !atomic {
            self.self_commit().await;
        }
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
                    self.transition_or_park(id, Status::Succeeded, "local step done", |e| {
                        e.outcome = Some(Outcome::Succeeded {
                            block_index: None,
                            reply,
                            source: EvidenceSource::Host,
                        })
                    });
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
        if !atomic {
            self.self_commit().await;
        }
    }
}
