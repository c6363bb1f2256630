//! Run any journaled entry that has not started.

use crate::error::JournalError;
use crate::journal::{After, Journal};
use crate::runtime::Runtime;
use crate::types::*;
use ic_stable_structures::Memory;
impl<R: Runtime, M: Memory + 'static> Journal<R, M> {
    /// Run a journaled transfer or local step that has not started yet. A transfer's result
    /// is committed by a self-call before this returns, so the caller's code that follows may
    /// trap without losing it.
    pub async fn execute(&self, id: EntryId) -> Result<FlowResult, JournalError> {
        self.execute_with(id, After::Continue).await
    }

    /// [`Journal::execute`] for a caller that does nothing after it but reply (or end the
    /// message). A transfer's result is not committed by a self-call: a trap between the
    /// journaled result and the end of the message is recovered exactly by deduplicated resend
    /// or memo lookup (docs/design.md, "When a commit is needed"), so the commit's two messages
    /// would prove nothing. A saga's terminal status is not committed either; a local step
    /// keeps its commits unless it was created in this message.
    pub async fn execute_then_reply(&self, id: EntryId) -> Result<FlowResult, JournalError> {
        self.execute_with(id, After::Reply).await
    }

    async fn execute_with(&self, id: EntryId, after: After) -> Result<FlowResult, JournalError> {
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
                self.send_first(id, after).await;
            }
            Kind::LocalStep => self.run_local(id).await,
            Kind::Saga => return self.run_saga_with(id, after).await,
            Kind::Record => {
                return Err(JournalError::UnsupportedForKind {
                    entry_id: id,
                    message: "records are resolved with report_result".into(),
                })
            }
        }
        Ok(self.flow_result(id))
    }
}
