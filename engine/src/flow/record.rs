//! Records: intents whose result the owner reports (`report_result`).

use crate::error::JournalError;
use crate::journal::{truncate, EntryOptions, Journal};
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
        opts: impl Into<EntryOptions>,
    ) -> Result<EntryId, JournalError> {
        self.validate_key("label", &label)?;
        self.validate_payload("payload", &payload)?;
        self.create(owner, Kind::Record, opts.into(), None, |_, _| {
            Intent::Record { label, payload }
        })
        .map(|e| e.id)
    }

    /// The owner reports the result of a record or of a transfer it executed itself.
    ///
    /// Idempotent: the same report again (e.g. after a lost reply) answers with the entry's
    /// status; a report that disagrees with a result already recorded is `AlreadyReported`.
    /// A tracked transfer's reported success is not trusted: its block is recorded and the
    /// entry stays `Unknown` until recovery has read that block from the ledger and found this
    /// very transfer there; a reported failure is not proof either (the call may have timed
    /// out after executing), so recovery looks the transfer up.
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
        match &result {
            ReportedResult::Succeeded { reply, .. } => self.validate_payload("reply", reply)?,
            ReportedResult::Failed { message } | ReportedResult::Unknown { message } => {
                self.validate_payload("message", message.as_bytes())?
            }
        }
        if let ReportedResult::Succeeded {
            block_index: None, ..
        } = &result
        {
            if tracked {
                return Err(JournalError::InvalidArgument {
                    message: "a transfer result needs its block index".into(),
                });
            }
        }
        #[cfg(any(test, feature = "planted-bugs"))]
        if crate::planted::is(crate::planted::PlantedBug::ResultOverwritten)
            && e.status.is_terminal()
        {
            let mut new = e.clone();
            (new.status, new.outcome) = match result.clone() {
                ReportedResult::Succeeded { block_index, reply } => (
                    Status::Succeeded,
                    Some(Outcome::Succeeded {
                        block_index,
                        reply,
                        source: EvidenceSource::Host,
                    }),
                ),
                ReportedResult::Failed { message } => (
                    Status::Failed,
                    Some(Outcome::Failed {
                        reason: FailureReason::Host { message },
                        source: EvidenceSource::Host,
                    }),
                ),
                ReportedResult::Unknown { .. } => return Ok(e.status),
            };
            let _ = self.inner.store.borrow_mut().write(Some(&e), &new);
            return Ok(new.status);
        }
        if let Some(status) = Self::repeated_report(&e, &result, tracked) {
            return status;
        }
        let now = self.now();
        let e = match result {
            ReportedResult::Succeeded { block_index, reply } if !tracked => self.transition(
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
            )?,
            ReportedResult::Succeeded { block_index, .. } => {
                let note = format!(
                    "reported succeeded at block {}; verifying against the ledger",
                    block_index.unwrap_or_default()
                );
                self.transition(
                    id,
                    Status::Unknown,
                    Actor::Engine,
                    Some(owner),
                    &note,
                    |e| {
                        e.next_attempt_at = Some(now);
                        e.last_error = Some(note.clone());
                        let mut scan = e.scan.clone().unwrap_or_default();
                        scan.reported_block = block_index;
                        e.scan = Some(scan);
                    },
                )?
            }
            ReportedResult::Failed { message } if tracked => self.transition(
                id,
                Status::Unknown,
                Actor::Engine,
                Some(owner),
                &message,
                |e| {
                    e.next_attempt_at = Some(now);
                    e.last_error = Some(truncate(&message, 512));
                },
            )?,
            ReportedResult::Failed { message } => self.transition(
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
            )?,
            ReportedResult::Unknown { message } => self.transition(
                id,
                Status::Unknown,
                Actor::Engine,
                Some(owner),
                &message,
                |e| {
                    e.next_attempt_at = Some(now);
                    e.last_error = Some(truncate(&message, 512));
                },
            )?,
        };
        Ok(e.status)
    }

    /// The answer to a report that changes nothing: `Some(Ok(status))` when it repeats what is
    /// recorded (or the entry is already past it), `Some(Err(AlreadyReported))` when it
    /// contradicts a recorded result, `None` when it is new.
    fn repeated_report(
        e: &Entry,
        result: &ReportedResult,
        tracked: bool,
    ) -> Option<Result<Status, JournalError>> {
        let conflict = || {
            Some(Err(JournalError::AlreadyReported {
                entry_id: e.id,
                status: e.status,
            }))
        };
        let reported_block = e.scan.as_ref().and_then(|s| s.reported_block);
        match (e.status, result) {
            // Not yet resolved: a tracked transfer being verified or looked up.
            (Status::Unknown | Status::Recovering, ReportedResult::Unknown { .. }) => {
                Some(Ok(e.status))
            }
            (Status::Unknown | Status::Recovering, ReportedResult::Failed { .. }) if tracked => {
                Some(Ok(e.status))
            }
            (
                Status::Unknown | Status::Recovering,
                ReportedResult::Succeeded { block_index, .. },
            ) if tracked => match reported_block {
                Some(b) if Some(b) == *block_index => Some(Ok(e.status)),
                Some(_) => conflict(),
                None => None,
            },
            (Status::Pending | Status::Unknown, _) => None,
            // Resolved: the same result again is answered with the status.
            (Status::Succeeded, ReportedResult::Succeeded { block_index, reply }) => {
                match &e.outcome {
                    Some(Outcome::Succeeded {
                        block_index: b,
                        reply: r,
                        ..
                    }) if b == block_index && (tracked || r == reply) => Some(Ok(e.status)),
                    _ => conflict(),
                }
            }
            (Status::Failed, ReportedResult::Failed { message }) => match &e.outcome {
                Some(Outcome::Failed {
                    reason: FailureReason::Host { message: m },
                    ..
                }) if m == message => Some(Ok(e.status)),
                // A tracked transfer proven absent: the owner's "failed" agrees.
                _ if tracked => Some(Ok(e.status)),
                _ => conflict(),
            },
            // "I do not know" about something already settled: here is what we know.
            (_, ReportedResult::Unknown { .. }) => Some(Ok(e.status)),
            _ => conflict(),
        }
    }
}
