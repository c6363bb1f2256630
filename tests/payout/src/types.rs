//! Candid types of the payout canister (the source of truth is `payout.did`; a unit test checks
//! they agree). Engine types (`Entry`, `EntrySummary`, `Metrics`, `AdminResult`, ...) are reused
//! as they are: the engine derives `CandidType` for all of them.

use candid::{CandidType, Deserialize, Nat, Principal};
use icjournal::{Config, EntryId, FailureReason, JournalError, Metrics, Status};
pub use icrc_ledger_types::icrc1::account::Account;

/// Argument of `init` (must be `Init`) and `post_upgrade` (`Upgrade`, or no argument at all),
/// the ICRC ledger convention.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum PayoutArg {
    Init(InitArg),
    Upgrade(Option<UpgradeArg>),
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct InitArg {
    /// The ICRC-1 ledger payouts are sent on (fixed for the canister's life).
    pub ledger: Principal,
    /// Principals allowed to call the admin endpoints (controllers always are).
    pub admins: Vec<Principal>,
    /// The ledger's transfer fee. `Some(f)`: sent explicitly as `fee` and charged to the payer's
    /// internal balance on top of the amount. `None`: no `fee` field is sent and the canister
    /// pays the ledger fee from its own funds.
    pub ledger_fee: Option<Nat>,
    /// Internal balances to start with (test setup).
    pub initial_balances: Vec<(Principal, Nat)>,
    /// Overrides of the journal engine's defaults (tests shorten intervals and attempts).
    pub engine: Option<EngineConfig>,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct UpgradeArg {
    /// Replaces the admin list.
    pub admins: Option<Vec<Principal>>,
    /// Replaces the ledger fee (see `InitArg::ledger_fee`).
    pub ledger_fee: Option<Nat>,
    /// Set fields replace the stored overrides; unset fields keep them.
    pub engine: Option<EngineConfig>,
}

/// Optional overrides of `icjournal::Config` (unset = engine default). Persisted.
#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineConfig {
    pub recovery_interval_ns: Option<u64>,
    pub max_attempts: Option<u32>,
    pub backoff_base_ns: Option<u64>,
    pub backoff_max_ns: Option<u64>,
    pub in_flight_lease_ns: Option<u64>,
    /// Bounded-wait timeout of ledger calls in seconds; 0 = unbounded-wait calls.
    pub call_timeout_secs: Option<u32>,
    pub ledger_tx_window_ns: Option<u64>,
    pub recovery_batch: Option<u32>,
    pub approvals_required: Option<u32>,
}

impl EngineConfig {
    /// Field-wise merge: `newer`'s set fields win.
    pub fn merge(&self, newer: &EngineConfig) -> EngineConfig {
        EngineConfig {
            recovery_interval_ns: newer.recovery_interval_ns.or(self.recovery_interval_ns),
            max_attempts: newer.max_attempts.or(self.max_attempts),
            backoff_base_ns: newer.backoff_base_ns.or(self.backoff_base_ns),
            backoff_max_ns: newer.backoff_max_ns.or(self.backoff_max_ns),
            in_flight_lease_ns: newer.in_flight_lease_ns.or(self.in_flight_lease_ns),
            call_timeout_secs: newer.call_timeout_secs.or(self.call_timeout_secs),
            ledger_tx_window_ns: newer.ledger_tx_window_ns.or(self.ledger_tx_window_ns),
            recovery_batch: newer.recovery_batch.or(self.recovery_batch),
            approvals_required: newer.approvals_required.or(self.approvals_required),
        }
    }

    /// The engine config: defaults with these overrides applied, validated.
    pub fn to_config(&self) -> Result<Config, String> {
        let mut c = Config::default();
        if let Some(v) = self.recovery_interval_ns {
            c.recovery_interval_ns = v;
        }
        if let Some(v) = self.max_attempts {
            c.max_attempts = v;
        }
        if let Some(v) = self.backoff_base_ns {
            c.backoff_base_ns = v;
            c.backoff_max_ns = c.backoff_max_ns.max(v);
        }
        if let Some(v) = self.backoff_max_ns {
            c.backoff_max_ns = v;
        }
        if let Some(v) = self.in_flight_lease_ns {
            c.in_flight_lease_ns = v;
        }
        if let Some(v) = self.call_timeout_secs {
            c.call_timeout_secs = (v > 0).then_some(v);
        }
        if let Some(v) = self.ledger_tx_window_ns {
            c.ledger_tx_window_ns = v;
        }
        if let Some(v) = self.recovery_batch {
            c.recovery_batch = v;
        }
        if let Some(v) = self.approvals_required {
            c.approvals_required = v;
        }
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

/// Persisted settings (stable cell). Shown by the `settings` query.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub ledger: Principal,
    pub admins: Vec<Principal>,
    pub ledger_fee: Option<Nat>,
    pub engine: EngineConfig,
}

/// Where a payout stands.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum PayoutStatus {
    /// Debit or ledger transfer in flight, or an unknown outcome being recovered by the
    /// engine's recovery timer. Poll `get_payout`.
    InProgress,
    /// The transfer executed on the ledger (block index; `None` only if an operator closed the
    /// payout without one).
    Completed { block_index: Option<u64> },
    /// The transfer failed definitively; the debit is being credited back.
    Refunding,
    /// The transfer failed definitively and the debit was credited back.
    Refunded { reason: Option<FailureReason> },
    /// The internal debit was refused; nothing moved.
    DebitRejected { message: String },
    /// An operator must decide (`entry_id` is the journal entry in the manual queue).
    ManualReview { entry_id: EntryId, reason: String },
    /// An operator resolved the payout as failed (see the audit trail).
    Failed,
    /// An operator closed the payout without executing it (see the audit trail).
    Cancelled,
}

/// A payout as the journal knows it (the payout id is the saga's journal entry id).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PayoutReceipt {
    pub payout_id: EntryId,
    pub owner: Principal,
    pub to: Account,
    pub amount: Nat,
    /// Fee sent to the ledger (None = the ledger's fee, paid by the canister).
    pub fee: Option<Nat>,
    /// Amount debited from the owner's internal balance (amount + fee).
    pub debited: Nat,
    pub status: PayoutStatus,
    pub created_at: u64,
    pub updated_at: u64,
    /// Journal entry of the internal debit step, once started.
    pub debit_entry: Option<EntryId>,
    /// Journal entry of the ledger transfer step, once started (its memo encodes this id).
    pub transfer_entry: Option<EntryId>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PayoutPage {
    pub items: Vec<PayoutReceipt>,
    /// Pass as `start_after` for the next page; None when exhausted.
    pub next: Option<EntryId>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PayoutMetrics {
    /// The journal engine's metrics (entries by status/kind, recoveries by path, manual queue).
    pub journal: Metrics,
    /// Accounts with a non-zero internal balance.
    pub accounts: u64,
    /// Sum of all internal balances (what the canister owes its users).
    pub total_balances: Nat,
}

/// What one recovery pass did (`admin_run_recovery`).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    pub examined: u32,
    pub resolved: u32,
    pub skipped_overlap: bool,
    pub budget_exhausted: bool,
}

/// Every error of the payout canister's endpoints.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum PayoutError {
    /// The anonymous principal cannot hold balances, pay out or administer.
    AnonymousCaller,
    /// The endpoint is for admins (or controllers) only.
    NotAuthorized,
    /// An argument is malformed or out of bounds (`message` says which and why).
    InvalidArgument { message: String },
    /// The internal balance does not cover amount + fee.
    InsufficientBalance { balance: Nat, required: Nat },
    /// I3: the caller already has a payout in flight (or waiting for an operator); no second
    /// payout starts until it is resolved. `payout_id` names it.
    PayoutInProgress {
        payout_id: EntryId,
        lock_key: String,
    },
    /// The ledger transfer failed definitively; the debit was credited back.
    TransferFailed {
        payout_id: EntryId,
        reason: Option<FailureReason>,
    },
    /// The internal debit was refused (nothing moved).
    DebitRejected { payout_id: EntryId, message: String },
    /// No such payout or journal entry (or it belongs to someone else).
    NotFound { id: EntryId },
    /// Admin verbs need a non-empty reason.
    ReasonRequired,
    /// Admin verbs act only on entries in the manual-review queue.
    NotInManualReview { entry_id: EntryId, status: Status },
    /// The journal refused the operation for this entry (`message` says why: wrong kind,
    /// illegal transition, approval already given).
    OperationRejected { message: String },
    /// The caller has too many unresolved journal entries.
    QuotaExceeded { limit: String, max: u64 },
    /// Busy or out of a resource; nothing was changed, retry later.
    TemporarilyUnavailable { message: String },
    /// Anything else, with a stable numeric code.
    GenericError { error_code: u64, message: String },
}

impl From<JournalError> for PayoutError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::LockHeld { lock_key, entry_id } => PayoutError::PayoutInProgress {
                payout_id: entry_id,
                lock_key,
            },
            JournalError::NotFound { entry_id } => PayoutError::NotFound { id: entry_id },
            JournalError::AnonymousCaller => PayoutError::AnonymousCaller,
            JournalError::PayloadTooLarge { field, size, max } => PayoutError::InvalidArgument {
                message: format!("{field} too large: {size} > {max}"),
            },
            JournalError::QuotaExceeded { limit, max, .. } => {
                PayoutError::QuotaExceeded { limit, max }
            }
            JournalError::InvalidArgument { message } => PayoutError::InvalidArgument { message },
            JournalError::NotInManualReview { entry_id, status } => {
                PayoutError::NotInManualReview { entry_id, status }
            }
            JournalError::ReasonRequired => PayoutError::ReasonRequired,
            e @ (JournalError::InvalidTransition { .. }
            | JournalError::UnsupportedForKind { .. }
            | JournalError::AlreadyApproved { .. }
            | JournalError::AlreadyReported { .. }
            | JournalError::EvidenceMismatch { .. }
            | JournalError::WindowStillOpen { .. }
            | JournalError::Blocked { .. }
            | JournalError::DuplicateRequest { .. }
            | JournalError::IdempotencyKeyReused { .. }
            | JournalError::KeyNotFound
            | JournalError::Compacted { .. }
            | JournalError::Pruned { .. }) => PayoutError::OperationRejected {
                message: e.to_string(),
            },
            JournalError::EvidenceUnverifiable { message, .. } => {
                PayoutError::TemporarilyUnavailable { message }
            }
            JournalError::StorageFull {
                used_bytes,
                limit_bytes,
            } => PayoutError::TemporarilyUnavailable {
                message: format!(
                    "stable memory nearly full ({used_bytes} of {limit_bytes} bytes): new \
                     payouts are refused until an operator makes room"
                ),
            },
            JournalError::TemporarilyUnavailable { message } => {
                PayoutError::TemporarilyUnavailable { message }
            }
            JournalError::Other {
                error_code,
                message,
            } => PayoutError::GenericError {
                error_code,
                message,
            },
        }
    }
}

/// `Nat` → `u128` (amounts beyond u128 are refused, not truncated).
pub fn nat_to_u128(field: &str, n: &Nat) -> Result<u128, PayoutError> {
    u128::try_from(n.0.clone()).map_err(|_| PayoutError::InvalidArgument {
        message: format!("{field} exceeds 2^128 - 1"),
    })
}
