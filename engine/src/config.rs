//! Engine configuration. Persisted nowhere: the host passes it on every `open`, so an upgrade
//! can change limits. Defaults follow ICRC-1 (24 h dedup window, 60 s permitted drift).

use crate::error::OpenError;
use crate::types::LedgerWindow;
use candid::{CandidType, Deserialize, Principal};

const SECOND: u64 = 1_000_000_000;

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Max bytes of a record payload / local-step payload.
    pub max_payload_bytes: u32,
    /// Max bytes of a lock key, record label, handler name.
    pub max_key_bytes: u32,
    /// Max bytes of an admin reason.
    pub max_reason_bytes: u32,
    /// Max steps in a saga.
    pub max_saga_steps: u32,
    /// Per-owner cap on unresolved entries (I6: one caller cannot hold unbounded work in flight).
    pub max_unresolved_per_owner: u32,
    /// Per-owner cap on bytes of unresolved entries.
    pub max_unresolved_bytes_per_owner: u64,
    /// Per-owner cap on entries of any status (resolved ones count until compacted): a caller
    /// cannot grow the journal without bound by resolving what it creates.
    pub max_entries_per_owner: u64,
    /// Per-owner cap on intent bytes of entries of any status.
    pub max_bytes_per_owner: u64,
    /// Memory the canister may use (None: no limit), counted as the IC counts it against a
    /// memory allocation where the runtime can (`Runtime::memory_usage_bytes`: stable memory
    /// plus Wasm heap), else the journal's own memories. Set it to what the canister may
    /// really grow to (its memory allocation, or what the subnet allows).
    pub stable_memory_limit_bytes: Option<u64>,
    /// New entries are refused once stable memory is within this many bytes of the limit; the
    /// rest is kept for recovery, operator verbs and their audit records. Keep it above a few
    /// MiB: the journal's streams grow 1 MiB at a time (`storage/segments.rs`).
    pub new_work_headroom_bytes: u64,
    /// History items kept inside an entry (older ones only in the audit log).
    pub max_history: u32,
    /// Max page size of list queries.
    pub max_page_size: u32,
    /// Ledger deduplication window (ICRC-1 `TX_WINDOW`) of ledgers not in `ledgers`, ns.
    pub ledger_tx_window_ns: u64,
    /// Permitted drift between our clock and the ledger's (ICRC-1 `PERMITTED_DRIFT`) of ledgers
    /// not in `ledgers`, ns.
    pub ledger_permitted_drift_ns: u64,
    /// Per-ledger windows. A transfer records its ledger's window when it is journaled and is
    /// judged by it for good (`TransferIntent::window`).
    pub ledgers: Vec<LedgerParams>,
    /// Recovery attempts before `ManualReview`.
    pub max_attempts: u32,
    /// First backoff delay, ns; doubles per attempt up to `backoff_max_ns`.
    pub backoff_base_ns: u64,
    pub backoff_max_ns: u64,
    /// How long a `Pending`/`Recovering` entry may stay in flight before the recovery timer
    /// treats it as `Unknown` (backstop if a Drop guard could not run).
    pub in_flight_lease_ns: u64,
    /// How long a `Record` may stay `Pending` without a reported result before it goes to
    /// `ManualReview` (I2: nothing silently stays pending forever).
    pub record_timeout_ns: u64,
    /// Recovery timer period, ns.
    pub recovery_interval_ns: u64,
    /// Entries one pass of a recovery tick examines at most; a tick runs passes while more is
    /// due and its instruction budget lasts (`recovery::tick`).
    pub recovery_batch: u32,
    /// Stop starting new recoveries in a tick once this many instructions were used.
    pub recovery_instruction_budget: u64,
    /// Use bounded-wait calls with this timeout (seconds); None = unbounded wait.
    pub call_timeout_secs: Option<u32>,
    /// Method on the host canister used for the self-call commit (should be a no-op update).
    pub commit_method: String,
    /// Blocks requested per `icrc3_get_blocks` / `get_transactions` call during memo lookup.
    pub lookup_page_size: u32,
    /// Max blocks scanned per recovery attempt of one entry (the scan resumes next attempt).
    pub lookup_max_blocks_per_attempt: u64,
    /// Max ledger/archive calls per lookup attempt of one entry (bounds the work of a ledger
    /// that answers in tiny pages; the scan resumes next attempt).
    pub lookup_max_calls_per_attempt: u32,
    /// Approvals required for admin resolutions (1 = single operator).
    pub approvals_required: u32,
    /// Retention: a resolved entry is compacted into a `CompactedEntry` summary this long after
    /// it was resolved (None: entries are kept in full forever). At least `MIN_RETENTION_NS`.
    /// See `retention` for what is and is not compacted.
    pub retention_ns: Option<u64>,
    /// Second period: a summary is pruned this long after its entry was compacted (None: kept
    /// forever). Idempotency and lock key records are kept even then, so a repeated request
    /// still never creates a second entry. Applies only while `retention_ns` is set.
    pub summary_retention_ns: Option<u64>,
    /// Entries compacted (and, separately, summaries pruned) per recovery tick at most; a tick
    /// looks at no more than 8 × this many candidates (I6).
    pub retention_batch: u32,
}

/// Shortest retention period: far longer than any flow stays on an entry after it is resolved
/// (only the commit self-call, bounded by `call_timeout_secs`, follows), so a flow never finds
/// its entry compacted under it.
pub const MIN_RETENTION_NS: u64 = 3600 * SECOND;

/// Default second period: summaries are kept 90 days after compaction.
pub const DEFAULT_SUMMARY_RETENTION_NS: u64 = 90 * 24 * 3600 * SECOND;

/// One ledger's deduplication figures.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LedgerParams {
    pub ledger: Principal,
    pub tx_window_ns: u64,
    pub permitted_drift_ns: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_payload_bytes: 4 * 1024,
            max_key_bytes: 128,
            max_reason_bytes: 1024,
            max_saga_steps: 16,
            max_unresolved_per_owner: 1_000,
            max_unresolved_bytes_per_owner: 4 * 1024 * 1024,
            max_entries_per_owner: 1_000_000,
            max_bytes_per_owner: 256 * 1024 * 1024,
            stable_memory_limit_bytes: None,
            new_work_headroom_bytes: 64 * 1024 * 1024,
            max_history: 16,
            max_page_size: 100,
            ledger_tx_window_ns: 24 * 3600 * SECOND,
            ledger_permitted_drift_ns: 60 * SECOND,
            ledgers: vec![],
            max_attempts: 20,
            backoff_base_ns: 5 * SECOND,
            backoff_max_ns: 3600 * SECOND,
            in_flight_lease_ns: 15 * 60 * SECOND,
            record_timeout_ns: 24 * 3600 * SECOND,
            recovery_interval_ns: 30 * SECOND,
            recovery_batch: 100,
            recovery_instruction_budget: 10_000_000_000,
            call_timeout_secs: Some(300),
            commit_method: "icjournal_commit".to_string(),
            lookup_page_size: 1_000,
            lookup_max_blocks_per_attempt: 20_000,
            lookup_max_calls_per_attempt: 250,
            approvals_required: 1,
            retention_ns: None,
            summary_retention_ns: Some(DEFAULT_SUMMARY_RETENTION_NS),
            retention_batch: 100,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), OpenError> {
        let bad = |m: &str| Err(OpenError::InvalidConfig(m.to_string()));
        if self.max_history == 0 {
            return bad("max_history must be >= 1");
        }
        if self.max_page_size == 0 || self.recovery_batch == 0 || self.lookup_page_size == 0 {
            return bad("page sizes and batch must be >= 1");
        }
        if self.max_attempts == 0 {
            return bad("max_attempts must be >= 1");
        }
        if self.backoff_base_ns == 0 || self.backoff_max_ns < self.backoff_base_ns {
            return bad("need 0 < backoff_base_ns <= backoff_max_ns");
        }
        if self.recovery_interval_ns == 0 {
            return bad("recovery_interval_ns must be > 0");
        }
        if self.approvals_required == 0 {
            return bad("approvals_required must be >= 1");
        }
        if self.commit_method.is_empty() {
            return bad("commit_method must be set");
        }
        if self.retention_ns.is_some_and(|r| r < MIN_RETENTION_NS) {
            return bad("retention_ns must be at least one hour");
        }
        if self.summary_retention_ns == Some(0) {
            return bad("summary_retention_ns must be > 0");
        }
        if self.retention_batch == 0 {
            return bad("retention_batch must be >= 1");
        }
        if self.lookup_max_calls_per_attempt < 2 {
            return bad("lookup_max_calls_per_attempt must be >= 2");
        }
        Ok(())
    }

    /// The window a transfer to `ledger` journaled now records.
    pub fn ledger_window(&self, ledger: Principal) -> LedgerWindow {
        self.ledgers
            .iter()
            .find(|l| l.ledger == ledger)
            .map(|l| LedgerWindow {
                tx_window_ns: l.tx_window_ns,
                permitted_drift_ns: l.permitted_drift_ns,
            })
            .unwrap_or(LedgerWindow {
                tx_window_ns: self.ledger_tx_window_ns,
                permitted_drift_ns: self.ledger_permitted_drift_ns,
            })
    }

    /// Deterministic exponential backoff (no jitter): base * 2^(attempt-1), capped.
    pub fn backoff(&self, attempt: u32) -> u64 {
        let shift = attempt.saturating_sub(1).min(63);
        self.backoff_base_ns
            .checked_shl(shift)
            .filter(|v| v >> shift == self.backoff_base_ns)
            .unwrap_or(u64::MAX)
            .min(self.backoff_max_ns)
    }
}
