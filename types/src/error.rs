//! Typed errors. Bad input never traps; it returns one of these.

use crate::journal::{CompactedEntry, EntryId, Status};
use candid::{CandidType, Deserialize, Principal};

/// Error of every journal operation (and of the service endpoints built on them).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum JournalError {
    /// I3: an unresolved entry already holds this lock key; no second flow may start.
    LockHeld { lock_key: String, entry_id: EntryId },
    /// No entry with this id (or it belongs to someone else: I7 hides existence).
    NotFound { entry_id: EntryId },
    /// The anonymous principal may not own entries or act as an operator.
    AnonymousCaller,
    /// An input exceeds its bound (`field` names it).
    PayloadTooLarge { field: String, size: u64, max: u64 },
    /// The owner has too many unresolved entries or bytes in flight.
    QuotaExceeded {
        owner: Principal,
        limit: String,
        max: u64,
    },
    /// The input is malformed (message says how).
    InvalidArgument { message: String },
    /// The requested status change is not an edge of the status machine.
    InvalidTransition {
        entry_id: EntryId,
        from: Status,
        to: Status,
    },
    /// Admin verbs act only on `ManualReview` entries (I4).
    NotInManualReview { entry_id: EntryId, status: Status },
    /// Admin verbs need a non-empty reason.
    ReasonRequired,
    /// The entry's kind does not support this operation.
    UnsupportedForKind { entry_id: EntryId, message: String },
    /// M-of-N approvals: this principal already approved this exact action.
    AlreadyApproved { entry_id: EntryId },
    /// The entry already has a different result: a report (or a repeated report after a lost
    /// reply) that disagrees with it is refused. The same report again is answered with the
    /// status instead.
    AlreadyReported { entry_id: EntryId, status: Status },
    /// A success needs evidence that could not be checked now (the ledger or its archive
    /// could not be read). Nothing was changed; try again when the ledger answers.
    EvidenceUnverifiable { entry_id: EntryId, message: String },
    /// The evidence given does not prove the entry's result: the block does not hold this
    /// transfer (every journaled field must match), or another entry already claims it.
    EvidenceMismatch {
        entry_id: EntryId,
        block_index: u64,
        message: String,
    },
    /// The ledger may still execute this transfer (its deduplication window, plus permitted
    /// drift, closes at `closes_at`): closing it as failed or cancelled would release its lock
    /// key while it can still pay. Set `acknowledge_risk` to do it anyway, or wait.
    WindowStillOpen { entry_id: EntryId, closes_at: u64 },
    /// The action cannot run while another entry it depends on is unresolved (e.g. compensating
    /// a saga whose current step's outcome is still unknown).
    Blocked {
        entry_id: EntryId,
        on: EntryId,
        message: String,
    },
    /// This request was already made with this idempotency key: `entry_id` is its entry,
    /// whatever its status (hosts answer with that entry instead of creating another).
    DuplicateRequest { entry_id: EntryId },
    /// This idempotency key was already used for a different request (`entry_id`): pick a new
    /// key for a new request.
    IdempotencyKeyReused { entry_id: EntryId },
    /// No entry of the caller has this key.
    KeyNotFound,
    /// Stable memory is nearly full: no new work is accepted, so that what was started can
    /// still finish (recovery, operator verbs and queries keep working).
    StorageFull { used_bytes: u64, limit_bytes: u64 },
    /// The journal is busy or out of a resource; retry later. Nothing was changed.
    TemporarilyUnavailable { message: String },
    /// Anything else, with a stable numeric code for programmatic handling.
    Other { error_code: u64, message: String },
    /// The entry was resolved long ago and compacted by retention: only this summary of it is
    /// kept (its outcome, block and amount). It existed; nothing about it can change any more.
    Compacted { entry: CompactedEntry },
    /// The entry was resolved, compacted, and its summary pruned after the second retention
    /// period: it existed (ids are never reused) but nothing of it is kept beyond its key
    /// records and the audit trail.
    Pruned { entry_id: EntryId },
}

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for JournalError {}
