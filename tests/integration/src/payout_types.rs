//! Candid types of the payout example canister (mirrors `tests/payout/src/types.rs`; the
//! Candid shape is what matters — the canister is called over Candid, not linked in).

use candid::{CandidType, Deserialize, Nat, Principal};
use icjournal::{EntryId, FailureReason, Metrics, Status};
use icrc_ledger_types::icrc1::account::Account;

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum PayoutArg {
    Init(InitArg),
    Upgrade(Option<UpgradeArg>),
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct InitArg {
    pub ledger: Principal,
    pub admins: Vec<Principal>,
    pub ledger_fee: Option<Nat>,
    pub initial_balances: Vec<(Principal, Nat)>,
    pub engine: Option<EngineConfig>,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct UpgradeArg {
    pub admins: Option<Vec<Principal>>,
    pub ledger_fee: Option<Nat>,
    pub engine: Option<EngineConfig>,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineConfig {
    pub recovery_interval_ns: Option<u64>,
    pub max_attempts: Option<u32>,
    pub backoff_base_ns: Option<u64>,
    pub backoff_max_ns: Option<u64>,
    pub in_flight_lease_ns: Option<u64>,
    pub call_timeout_secs: Option<u32>,
    pub ledger_tx_window_ns: Option<u64>,
    pub recovery_batch: Option<u32>,
    pub approvals_required: Option<u32>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum PayoutStatus {
    InProgress,
    Completed { block_index: Option<u64> },
    Refunding,
    Refunded { reason: Option<FailureReason> },
    DebitRejected { message: String },
    ManualReview { entry_id: EntryId, reason: String },
    Failed,
    Cancelled,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PayoutReceipt {
    pub payout_id: EntryId,
    pub owner: Principal,
    pub to: Account,
    pub amount: Nat,
    pub fee: Option<Nat>,
    pub debited: Nat,
    pub status: PayoutStatus,
    pub created_at: u64,
    pub updated_at: u64,
    pub debit_entry: Option<EntryId>,
    pub transfer_entry: Option<EntryId>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PayoutPage {
    pub items: Vec<PayoutReceipt>,
    pub next: Option<EntryId>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PayoutMetrics {
    pub journal: Metrics,
    pub accounts: u64,
    pub total_balances: Nat,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    pub examined: u32,
    pub resolved: u32,
    pub skipped_overlap: bool,
    pub budget_exhausted: bool,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum PayoutError {
    AnonymousCaller,
    NotAuthorized,
    InvalidArgument {
        message: String,
    },
    InsufficientBalance {
        balance: Nat,
        required: Nat,
    },
    PayoutInProgress {
        payout_id: EntryId,
        lock_key: String,
    },
    TransferFailed {
        payout_id: EntryId,
        reason: Option<FailureReason>,
    },
    DebitRejected {
        payout_id: EntryId,
        message: String,
    },
    NotFound {
        id: EntryId,
    },
    ReasonRequired,
    NotInManualReview {
        entry_id: EntryId,
        status: Status,
    },
    OperationRejected {
        message: String,
    },
    QuotaExceeded {
        limit: String,
        max: u64,
    },
    TemporarilyUnavailable {
        message: String,
    },
    GenericError {
        error_code: u64,
        message: String,
    },
}

/// The test ledger's own types (install argument, limits, stats).
pub use test_ledger::types::{
    ArchiveInitArgs, ArchiveNode, ArchiveOptions, Faults as LedgerFaults,
    InitArgs as LedgerInitArgs, LedgerArg, LedgerStats, Limits,
};

/// The HTTP gateway's request record.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status_code: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}
