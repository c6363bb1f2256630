//! Records: intents whose result the owner reports (`report_result`).

use crate::error::JournalError;
use crate::journal::{truncate, Journal};
use crate::runtime::Runtime;
use crate::status::Actor;
use crate::types::*;
use candid::Principal;
use ic_stable_structures::Memory;
impl<R: Runtime, M: Memory + 'static> Journal<R, M> {
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
}
