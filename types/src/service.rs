//! Candid types of the icjournal service canister's interface beyond the journal's data model:
//! configuration, errors, and endpoint arguments and replies.

use crate::error::JournalError;
use crate::journal::{
    EntryId, Kind, LedgerOp, ListFilter, PageRequest, ReportedResult, Status, TransferSpec,
};
use crate::metrics::Metrics;
use candid::{CandidType, Deserialize, Nat, Principal};

/// One ledger the service accepts transfers on.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LedgerConfig {
    /// The ICRC-1/ICRC-2 ledger canister.
    pub ledger: Principal,
    /// The ledger's transfer fee. When set, executed transfers that leave `fee` empty are sent
    /// with this fee (so a fee change makes them fail cleanly with `BadFee` instead of paying
    /// an unexpected fee), and a request with a different explicit fee is refused up front.
    pub fee: Option<Nat>,
    /// The ledger's deduplication window (ICRC-1 `TX_WINDOW`) in nanoseconds. Recovery resends
    /// identical args inside it and relies on memo lookup after it.
    pub tx_window_ns: u64,
}

/// Configuration of the service canister: the `init` argument, optionally replaced in
/// `post_upgrade`, and changed at run time with `set_config`. Persisted in stable memory.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Principals allowed to use the operator endpoints (controllers always are).
    pub admins: Vec<Principal>,
    /// Ledgers the service journals transfers on (tracked and executed).
    pub ledgers: Vec<LedgerConfig>,
    /// Recovery timer period, nanoseconds.
    pub recovery_interval_ns: u64,
    /// Entries one pass of a recovery tick examines at most (bounded work, I6); a tick runs
    /// passes while more is due and its instruction budget lasts.
    pub recovery_batch_size: u32,
    /// Recovery attempts before an entry goes to manual review.
    pub max_attempts: u32,
    /// Per-caller cap on unresolved entries.
    pub max_unresolved_per_caller: u32,
    /// Per-caller cap on bytes held by unresolved entries.
    pub max_unresolved_bytes_per_caller: u64,
    /// Per-caller cap on flows the service is executing right now (calls in flight).
    pub max_in_flight_per_caller: u32,
    /// Cap on flows in flight over all callers.
    pub max_in_flight_total: u32,
    /// Max bytes of a record payload or reported reply.
    pub max_payload_bytes: u32,
    /// Operator approvals needed to apply a manual-queue resolution (M of N; 1 = single).
    pub approvals_required: u32,
    /// How long resolved entries are kept in full after they were resolved, nanoseconds, at
    /// least one day (None = forever). Older ones are compacted by the recovery timer into a
    /// summary (`CompactedEntry`: status, block, amount, times), which is kept 90 more days;
    /// idempotency and lock keys are kept for good, so a repeated request never pays twice.
    /// The manual queue and unresolved entries are never compacted.
    pub retention_ns: Option<u64>,
    /// How long the summary of a compacted entry is kept after compaction, nanoseconds, within
    /// [1 day, 100 years] (None = the default, 90 days). Once pruned, reading the entry answers
    /// `Pruned`; its idempotency and lock keys are still kept. Has no effect while
    /// `retention_ns` is None (nothing is compacted).
    pub summary_retention_ns: Option<u64>,
    /// Per-caller cap on entries of any status (resolved ones count until compacted).
    pub max_entries_per_caller: u64,
    /// Per-caller cap on bytes of entries of any status.
    pub max_bytes_per_caller: u64,
    /// Memory the canister may use, counted as the IC counts it against a memory allocation
    /// (the whole stable memory plus the Wasm heap); set it to what the canister can really
    /// grow to.
    pub stable_memory_limit_bytes: u64,
    /// New work is refused once memory is this close to the limit, keeping room for recovery,
    /// operator verbs and their audit records.
    pub new_work_headroom_bytes: u64,
    /// Cycles a caller attaches for the work an entry makes the service do.
    pub fees: Fees,
    /// Callers that pay no fees (operators set it; ingress callers cannot attach cycles, so
    /// people and tools calling directly must be listed here).
    pub fee_exempt: Vec<Principal>,
}

/// Cycles a caller attaches to a call that creates entries: the service spends its own cycles
/// on every message, inter-canister call and recovery of those entries, so callers pay for
/// the work they cause. Unspent attached cycles are refunded by the IC; a call with too few is
/// refused before anything is journaled (`CyclesRequired`).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Fees {
    /// A record (`record_intent`).
    pub record_cycles: u64,
    /// A tracked transfer (`track_transfer`): recovery may scan the ledger's blocks for it.
    pub tracked_transfer_cycles: u64,
    /// Each transfer the service executes (`execute_transfer`, `submit_transfer`, and every
    /// step and compensation of a saga).
    pub transfer_cycles: u64,
}

/// Error of every service endpoint. Engine errors are passed through unchanged in `Journal`;
/// the other variants are decided by the service layer.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ServiceError {
    /// The journal refused or failed the operation (lock held, not found, quota, bad input,
    /// anonymous caller, temporarily unavailable, or a generic `{ error_code; message }`).
    Journal(JournalError),
    /// The caller lacks the role the endpoint needs (operator = admin or controller;
    /// `controller` for the controller view; `self` for the commit method).
    NotAuthorized { required: String },
    /// The ledger is not in the service's configured list.
    LedgerNotAllowed { ledger: Principal },
    /// An executed transfer would move funds the caller does not own: ICRC-2 transfers must
    /// draw from the caller's own account, ICRC-1 transfers from the caller's escrow subaccount.
    FundsNotOwned { message: String },
    /// The proposed configuration is inconsistent (message says which field).
    InvalidConfig { message: String },
    /// The call must carry `required` cycles (it carried `attached`): see `Fees`. Nothing was
    /// journaled and nothing was taken.
    CyclesRequired { required: u64, attached: u64 },
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceError::Journal(e) => write!(f, "journal error: {e}"),
            other => write!(f, "{other:?}"),
        }
    }
}

impl std::error::Error for ServiceError {}

impl From<JournalError> for ServiceError {
    fn from(e: JournalError) -> Self {
        ServiceError::Journal(e)
    }
}

/// Result of every fallible endpoint.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// `record_intent` argument: a caller-driven record (the caller reports the result).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RecordIntentArgs {
    /// What the record is about (non-empty, bounded).
    pub label: String,
    /// Opaque bounded payload (e.g. the caller's own encoding of the step's arguments).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Optional lock key (I3), namespaced per caller by the service.
    pub lock_key: Option<String>,
    /// Optional key of this request, chosen by the caller: the same request again with the same
    /// key returns the first entry (whatever its status) instead of creating another, so a
    /// retry after a lost reply is safe. A different request with a used key is refused.
    pub idempotency_key: Option<String>,
}

/// `report_result` argument.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReportResultArgs {
    pub entry_id: EntryId,
    pub result: ReportedResult,
}

/// `list_entries` argument (the owner is always the caller).
#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ListArgs {
    pub status: Option<Status>,
    pub kind: Option<Kind>,
    pub page: PageRequest,
}

/// `track_transfer` argument: a transfer the caller sends itself. `op` must leave `memo` and
/// `created_at_time` empty: the service sets them.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TrackTransferArgs {
    pub ledger: Principal,
    pub op: LedgerOp,
    pub lock_key: Option<String>,
    /// See `RecordIntentArgs::idempotency_key`.
    pub idempotency_key: Option<String>,
}

/// `track_transfer` reply: send exactly `op` (it carries `memo` and `created_at_time`) to
/// `ledger`, then call `report_result`.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TrackedTransfer {
    pub entry_id: EntryId,
    pub ledger: Principal,
    pub op: LedgerOp,
    #[serde(with = "serde_bytes")]
    pub memo: Vec<u8>,
    pub created_at_time: u64,
}

/// `execute_transfer` / `submit_transfer` argument: a transfer the service sends itself.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TransferRequest {
    pub transfer: TransferSpec,
    pub lock_key: Option<String>,
    /// See `RecordIntentArgs::idempotency_key`. `execute_transfer` with a used key returns the
    /// first entry's current result (it does not send again).
    pub idempotency_key: Option<String>,
}

/// One step of a saga of executed transfers.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SagaTransferStep {
    pub transfer: TransferSpec,
    /// Transfer sent (in reverse order) if a later step fails definitively.
    pub compensation: Option<TransferSpec>,
}

/// `execute_saga` / `submit_saga` argument.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SagaRequest {
    pub steps: Vec<SagaTransferStep>,
    pub lock_key: Option<String>,
    /// See `RecordIntentArgs::idempotency_key`.
    pub idempotency_key: Option<String>,
}

/// `admin_list` argument.
#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminListArgs {
    pub filter: ListFilter,
    pub page: PageRequest,
}

/// `admin_audit` argument.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AuditArgs {
    pub start_seq: u64,
    pub limit: u32,
}

/// `set_config` argument.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SetConfigArgs {
    pub config: ServiceConfig,
    /// Required; logged with the caller.
    pub reason: String,
}

/// `get_config` reply.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConfigView {
    pub config: ServiceConfig,
    pub recovery_paused: bool,
}

/// `controller_view` reply (controllers only: it holds the cycles balance).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ControllerView {
    pub cycles_balance: Nat,
    pub config: ServiceConfig,
    pub recovery_paused: bool,
    pub in_flight_total: u32,
    pub metrics: Metrics,
    pub canister_version: u64,
}
