//! Typed errors. Bad input never traps; it returns one of these.

use crate::journal::{EntryId, Status};
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
    /// The journal is busy or out of a resource; retry later. Nothing was changed.
    TemporarilyUnavailable { message: String },
    /// Anything else, with a stable numeric code for programmatic handling.
    Other { error_code: u64, message: String },
}

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for JournalError {}
