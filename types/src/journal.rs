//! The journal's data model: entries, statuses, intents, outcomes, requests. Every type here is
//! also the Candid type the service canister exposes, so they derive `CandidType`/`Deserialize`
//! and the engine, the service and the client share them verbatim.
//!
//! The types the engine stores (`Entry` and everything in it, `AuditRecord`) also derive
//! minicbor `Encode`/`Decode`: that is the engine's storage format 3 (`engine/src/storage.rs`).
//! Their `#[n(i)]` indices are part of the stored format: never renumber or reuse one (a
//! removed field or variant retires its index); add fields only as `Option`s with a new index,
//! which older values decode as `None`.

use candid::{CandidType, Deserialize, Nat, Principal};
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::TransferArg;
use icrc_ledger_types::icrc2::transfer_from::TransferFromArgs;

/// Journal entry id: monotonic, never reused (not even after an entry is pruned).
pub type EntryId = u64;
/// Nanoseconds since the Unix epoch, as `ic0.time` reports it. Monotonic, NOT strictly.
pub type Timestamp = u64;

/// Lifecycle of an entry. The engine's `status::is_legal` is the authority on legal edges.
#[derive(
    CandidType,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    minicbor::Encode,
    minicbor::Decode,
)]
#[cbor(index_only)]
pub enum Status {
    /// Intent journaled; the step has not started or is in flight.
    #[n(0)]
    Pending,
    /// Terminal: the step executed (exactly once).
    #[n(1)]
    Succeeded,
    /// Terminal: the step provably did not execute (or executed and failed without effect).
    #[n(2)]
    Failed,
    /// The outcome is not known; the recovery timer will find out.
    #[n(3)]
    Unknown,
    /// The recovery timer is currently finding out the outcome (lease until `next_attempt_at`).
    #[n(4)]
    Recovering,
    /// Needs an operator (reason in `Entry::manual_reason`). Never left automatically.
    #[n(5)]
    ManualReview,
    /// Saga only: completed steps are being compensated in reverse order.
    #[n(6)]
    Compensating,
    /// Terminal, saga only: every completed step was compensated.
    #[n(7)]
    Compensated,
    /// Terminal: closed by an operator without executing (only from `ManualReview`).
    #[n(8)]
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Pending,
        Status::Succeeded,
        Status::Failed,
        Status::Unknown,
        Status::Recovering,
        Status::ManualReview,
        Status::Compensating,
        Status::Compensated,
        Status::Cancelled,
    ];

    /// Terminal statuses never change again except through an audited admin action (I4) —
    /// and admin actions only act on `ManualReview`, so in practice: never.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Succeeded | Status::Failed | Status::Compensated | Status::Cancelled
        )
    }

    /// Unresolved = holds its lock key and counts against the owner's in-flight quota.
    pub fn is_unresolved(self) -> bool {
        !self.is_terminal()
    }

    /// Stable one-byte tag used in index keys. NEVER renumber; retired tags are listed in
    /// `storage` module docs.
    pub fn tag(self) -> u8 {
        match self {
            Status::Pending => 0,
            Status::Succeeded => 1,
            Status::Failed => 2,
            Status::Unknown => 3,
            Status::Recovering => 4,
            Status::ManualReview => 5,
            Status::Compensating => 6,
            Status::Compensated => 7,
            Status::Cancelled => 8,
        }
    }

    pub fn from_tag(tag: u8) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| s.tag() == tag)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Unknown => "unknown",
            Status::Recovering => "recovering",
            Status::ManualReview => "manual_review",
            Status::Compensating => "compensating",
            Status::Compensated => "compensated",
            Status::Cancelled => "cancelled",
        }
    }
}

/// What an entry journals.
#[derive(
    CandidType,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    minicbor::Encode,
    minicbor::Decode,
)]
#[cbor(index_only)]
pub enum Kind {
    /// A host/caller-driven record: the host reports the result itself.
    #[n(0)]
    Record,
    /// ICRC-1 `icrc1_transfer`.
    #[n(1)]
    Icrc1Transfer,
    /// ICRC-2 `icrc2_transfer_from`.
    #[n(2)]
    Icrc2TransferFrom,
    /// A host-local saga step run by a registered handler.
    #[n(3)]
    LocalStep,
    /// A saga (parent of its step entries).
    #[n(4)]
    Saga,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Record,
        Kind::Icrc1Transfer,
        Kind::Icrc2TransferFrom,
        Kind::LocalStep,
        Kind::Saga,
    ];

    /// Stable one-byte tag (never renumber).
    pub fn tag(self) -> u8 {
        match self {
            Kind::Record => 0,
            Kind::Icrc1Transfer => 1,
            Kind::Icrc2TransferFrom => 2,
            Kind::LocalStep => 3,
            Kind::Saga => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Record => "record",
            Kind::Icrc1Transfer => "icrc1_transfer",
            Kind::Icrc2TransferFrom => "icrc2_transfer_from",
            Kind::LocalStep => "local_step",
            Kind::Saga => "saga",
        }
    }
}

/// The exact ledger call, as sent. A retry resends these bytes unchanged.
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub enum LedgerOp {
    #[n(0)]
    Icrc1Transfer(#[cbor(n(0), with = "crate::cbor::transfer_arg")] TransferArg),
    #[n(1)]
    Icrc2TransferFrom(#[cbor(n(0), with = "crate::cbor::transfer_from_args")] TransferFromArgs),
}

/// Who sends the transfer: decides whether recovery may resend (only the original caller gets
/// `Duplicate` from the ledger's deduplication) or must look the transfer up by memo.
#[derive(
    CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub enum Executor {
    /// This canister (the engine's host) sends the call.
    #[n(0)]
    SelfCanister,
    /// Another canister sends it; this journal only tracks it (memo lookup recovery only).
    #[n(1)]
    External {
        #[cbor(n(0), with = "icrc_cbor::principal")]
        caller: Principal,
    },
}

/// The ledger's deduplication window and the clock drift it permits, as known when a transfer
/// was journaled. Recovery judges the transfer by these figures for its whole life: a later
/// configuration change (a shorter window, a removed ledger) must never make a scan stop early
/// and "prove" absent a transfer that executed.
#[derive(
    CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub struct LedgerWindow {
    /// ICRC-1 `TX_WINDOW`: how long the ledger deduplicates an identical transfer, ns.
    #[n(0)]
    pub tx_window_ns: u64,
    /// ICRC-1 `PERMITTED_DRIFT`: how far `created_at_time` may be ahead of the ledger, ns.
    #[n(1)]
    pub permitted_drift_ns: u64,
}

/// A typed ledger transfer intent: the exact call, so a retry resends it byte for byte.
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub struct TransferIntent {
    #[cbor(n(0), with = "icrc_cbor::principal")]
    pub ledger: Principal,
    #[n(1)]
    pub op: LedgerOp,
    #[n(2)]
    pub executor: Executor,
    /// The ledger's window when the transfer was journaled (absent in entries journaled before
    /// it was recorded: the configured window applies to those).
    #[n(3)]
    pub window: Option<LedgerWindow>,
}

impl TransferIntent {
    pub fn created_at_time(&self) -> Option<u64> {
        match &self.op {
            LedgerOp::Icrc1Transfer(a) => a.created_at_time,
            LedgerOp::Icrc2TransferFrom(a) => a.created_at_time,
        }
    }
    pub fn memo(&self) -> Option<&[u8]> {
        match &self.op {
            LedgerOp::Icrc1Transfer(a) => a.memo.as_ref().map(|m| m.0.as_slice()),
            LedgerOp::Icrc2TransferFrom(a) => a.memo.as_ref().map(|m| m.0.as_slice()),
        }
    }
    pub fn amount(&self) -> &Nat {
        match &self.op {
            LedgerOp::Icrc1Transfer(a) => &a.amount,
            LedgerOp::Icrc2TransferFrom(a) => &a.amount,
        }
    }
    pub fn kind(&self) -> Kind {
        match &self.op {
            LedgerOp::Icrc1Transfer(_) => Kind::Icrc1Transfer,
            LedgerOp::Icrc2TransferFrom(_) => Kind::Icrc2TransferFrom,
        }
    }
}

/// Host-local saga step (or compensation): a registered handler name plus its payload.
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub struct LocalAction {
    #[n(0)]
    pub handler: String,
    #[serde(with = "serde_bytes")]
    #[cbor(n(1), with = "minicbor::bytes")]
    pub payload: Vec<u8>,
}

/// What a saga step does.
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub enum StepAction {
    /// A ledger transfer sent by this canister (the engine fills memo and created_at_time).
    #[n(0)]
    Transfer(#[n(0)] TransferSpec),
    /// A host-local state change, run by the handler registered under that name.
    #[n(1)]
    Local(#[n(0)] LocalAction),
}

/// One saga step with its optional compensation.
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub struct SagaStep {
    #[n(0)]
    pub action: StepAction,
    #[n(1)]
    pub compensation: Option<StepAction>,
    /// Entry id of the forward step once started.
    #[n(2)]
    pub entry: Option<EntryId>,
    /// Entry id of the compensation once started.
    #[n(3)]
    pub compensation_entry: Option<EntryId>,
}

/// Direction a saga is moving in.
#[derive(
    CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
#[cbor(index_only)]
pub enum SagaPhase {
    #[n(0)]
    Forward,
    #[n(1)]
    Compensating,
}

/// Persistent progress of a saga.
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub struct SagaIntent {
    #[n(0)]
    pub steps: Vec<SagaStep>,
    /// Next forward step to run (Forward) / next step to compensate + 1 (Compensating).
    #[n(1)]
    pub cursor: u32,
    #[n(2)]
    pub phase: SagaPhase,
    /// Why the saga started compensating.
    #[n(3)]
    pub failure: Option<String>,
}

/// The journaled intent.
// The transfer variants are large, but boxing them would change the public type that
// hosts construct and match on; intents are created once per entry, so the size is harmless.
#[allow(clippy::large_enum_variant)]
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub enum Intent {
    /// Opaque host/caller record (bounded by `Config::max_payload_bytes`).
    #[n(0)]
    Record {
        #[n(0)]
        label: String,
        #[serde(with = "serde_bytes")]
        #[cbor(n(1), with = "minicbor::bytes")]
        payload: Vec<u8>,
    },
    #[n(1)]
    Transfer(#[n(0)] TransferIntent),
    #[n(2)]
    Local(#[n(0)] LocalAction),
    #[n(3)]
    Saga(#[n(0)] SagaIntent),
}

/// An ICRC-1/ICRC-2 ledger error as the ledger returned it (union of `TransferError` and
/// `TransferFromError`).
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub enum LedgerError {
    #[n(0)]
    BadFee {
        #[cbor(n(0), with = "icrc_cbor::nat")]
        expected_fee: Nat,
    },
    #[n(1)]
    BadBurn {
        #[cbor(n(0), with = "icrc_cbor::nat")]
        min_burn_amount: Nat,
    },
    #[n(2)]
    InsufficientFunds {
        #[cbor(n(0), with = "icrc_cbor::nat")]
        balance: Nat,
    },
    #[n(3)]
    InsufficientAllowance {
        #[cbor(n(0), with = "icrc_cbor::nat")]
        allowance: Nat,
    },
    #[n(4)]
    TooOld,
    #[n(5)]
    CreatedInFuture {
        #[n(0)]
        ledger_time: u64,
    },
    #[n(6)]
    TemporarilyUnavailable,
    #[n(7)]
    Duplicate {
        #[cbor(n(0), with = "icrc_cbor::nat")]
        duplicate_of: Nat,
    },
    #[n(8)]
    GenericError {
        #[cbor(n(0), with = "icrc_cbor::nat")]
        error_code: Nat,
        #[n(1)]
        message: String,
    },
}

/// IC reject codes (ic0.msg_reject_code), plus codes this build does not know.
#[derive(
    CandidType,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    minicbor::Encode,
    minicbor::Decode,
)]
pub enum RejectCode {
    #[n(0)]
    SysFatal,
    #[n(1)]
    SysTransient,
    #[n(2)]
    DestinationInvalid,
    #[n(3)]
    CanisterReject,
    #[n(4)]
    CanisterError,
    #[n(5)]
    SysUnknown,
    #[n(6)]
    Unrecognized(#[n(0)] u32),
}

impl RejectCode {
    pub fn from_raw(code: u32) -> RejectCode {
        match code {
            1 => RejectCode::SysFatal,
            2 => RejectCode::SysTransient,
            3 => RejectCode::DestinationInvalid,
            4 => RejectCode::CanisterReject,
            5 => RejectCode::CanisterError,
            6 => RejectCode::SysUnknown,
            other => RejectCode::Unrecognized(other),
        }
    }
    pub fn raw(self) -> u32 {
        match self {
            RejectCode::SysFatal => 1,
            RejectCode::SysTransient => 2,
            RejectCode::DestinationInvalid => 3,
            RejectCode::CanisterReject => 4,
            RejectCode::CanisterError => 5,
            RejectCode::SysUnknown => 6,
            RejectCode::Unrecognized(c) => c,
        }
    }
}

/// Why an entry failed (definitively).
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub enum FailureReason {
    /// The ledger answered with an error that proves the transfer did not execute.
    #[n(0)]
    Ledger(#[n(0)] LedgerError),
    /// The call was rejected by the system before it reached the callee, or never left.
    #[n(1)]
    NotDelivered {
        #[n(0)]
        code: Option<RejectCode>,
        #[n(1)]
        message: String,
    },
    /// Memo lookup scanned the whole dedup window (+drift) and found no matching block, and the
    /// ledger's time is past it: the transfer can no longer execute.
    #[n(2)]
    NotFoundAfterWindow {
        #[n(0)]
        scanned_to_block: u64,
    },
    /// A host-local step or a record's owner reported failure.
    #[n(3)]
    Host {
        #[n(0)]
        message: String,
    },
    /// An operator resolved the entry as failed (see audit record).
    #[n(4)]
    Admin {
        #[n(0)]
        audit_seq: u64,
    },
    /// A saga step failed and the saga was compensated.
    #[n(5)]
    SagaStepFailed {
        #[n(0)]
        step: u32,
        #[n(1)]
        entry: EntryId,
    },
    /// A record's owner reported no result (or only "unknown") before the record timeout.
    /// The engine executes nothing for records, so this proves nothing about the owner's
    /// step: the record is closed and left in its owner's failed list for the owner to act on,
    /// not in the operators' queue.
    #[n(6)]
    RecordTimedOut {
        #[n(0)]
        reported_unknown: bool,
    },
}

/// How a result was established (the evidence behind it).
#[derive(
    CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
#[cbor(index_only)]
pub enum EvidenceSource {
    /// The direct reply to the original call.
    #[n(0)]
    Reply,
    /// Resend of identical args inside the dedup window (`Ok` or `Duplicate`).
    #[n(1)]
    DedupResend,
    /// Memo lookup in the ledger's blocks.
    #[n(2)]
    MemoLookup,
    /// The host/owner reported it.
    #[n(3)]
    Host,
    /// An operator (see audit).
    #[n(4)]
    Admin,
}

/// The committed result of an entry (I4: final once set, except audited admin actions).
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub enum Outcome {
    #[n(0)]
    Succeeded {
        /// Ledger block index for transfers.
        #[n(0)]
        block_index: Option<u64>,
        /// Host reply payload for records/local steps.
        #[serde(with = "serde_bytes")]
        #[cbor(n(1), with = "minicbor::bytes")]
        reply: Vec<u8>,
        #[n(2)]
        source: EvidenceSource,
    },
    #[n(1)]
    Failed {
        #[n(0)]
        reason: FailureReason,
        #[n(1)]
        source: EvidenceSource,
    },
}

/// One status change, kept (bounded) inside the entry; the audit log keeps all of them.
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub struct HistoryItem {
    #[n(0)]
    pub at: Timestamp,
    #[n(1)]
    pub from: Status,
    #[n(2)]
    pub to: Status,
    #[n(3)]
    pub note: String,
}

/// Progress of a memo lookup, persisted so a long scan resumes where it stopped.
#[derive(
    CandidType,
    Deserialize,
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    minicbor::Encode,
    minicbor::Decode,
)]
pub struct ScanState {
    /// First block of the scan range (first block whose time may be >= created_at_time - drift).
    #[n(0)]
    pub start_block: Option<u64>,
    /// Blocks in `[start_block, next_block)` were scanned and none matched.
    #[n(1)]
    pub next_block: u64,
    /// The ledger answered `TooOld` to an identical resend *before* this scan's blocks were
    /// read: the transfer can no longer execute, so reaching the tip completes the proof.
    #[n(2)]
    pub window_closed: bool,
    /// The block the owner reported for a tracked transfer, not yet checked against the
    /// ledger: recovery reads it first and records success only if every field matches.
    #[n(3)]
    pub reported_block: Option<u64>,
}

/// A journal entry.
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub struct Entry {
    #[n(0)]
    pub id: EntryId,
    #[cbor(n(1), with = "icrc_cbor::principal")]
    pub owner: Principal,
    #[n(2)]
    pub kind: Kind,
    #[n(3)]
    pub lock_key: Option<String>,
    #[n(4)]
    pub intent: Intent,
    #[n(5)]
    pub status: Status,
    /// Number of attempts to execute or recover (calls made), including the first.
    #[n(6)]
    pub attempts: u32,
    #[n(7)]
    pub created_at: Timestamp,
    #[n(8)]
    pub updated_at: Timestamp,
    /// When the recovery timer should next look at this entry (None when resolved).
    #[n(9)]
    pub next_attempt_at: Option<Timestamp>,
    #[n(10)]
    pub outcome: Option<Outcome>,
    /// Last transient error / reject seen (informational).
    #[n(11)]
    pub last_error: Option<String>,
    /// Why the entry is in `ManualReview`.
    #[n(12)]
    pub manual_reason: Option<String>,
    /// Saga this entry is a step (or compensation) of.
    #[n(13)]
    pub parent: Option<EntryId>,
    /// Memo-lookup progress of a transfer whose outcome is being recovered.
    #[n(14)]
    pub scan: Option<ScanState>,
    /// Most recent status changes (at most `Config::max_history`).
    #[n(15)]
    pub history: Vec<HistoryItem>,
    /// How many older history items were dropped from `history` (all are in the audit log).
    #[n(16)]
    pub history_dropped: u32,
    /// A saga in `ManualReview` because this step (or compensation) needs an operator: the
    /// saga continues by itself once the operator acts on that entry.
    #[n(17)]
    pub blocked_on: Option<EntryId>,
}

impl Entry {
    pub fn block_index(&self) -> Option<u64> {
        match &self.outcome {
            Some(Outcome::Succeeded { block_index, .. }) => *block_index,
            _ => None,
        }
    }
}

/// What is kept of a resolved entry once retention compacted it (`Config::retention_ns` after
/// it was resolved): enough to answer for it — whose, what, how it ended, which block, how much,
/// when. The full entry (intent, history, errors) is gone; the audit trail still has every
/// status change. Summaries are themselves pruned after `Config::summary_retention_ns`.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CompactedEntry {
    pub id: EntryId,
    pub owner: Principal,
    pub kind: Kind,
    /// The terminal status it had (only terminal entries are compacted).
    pub status: Status,
    /// The ledger of a transfer.
    pub ledger: Option<Principal>,
    /// The block proving a succeeded transfer.
    pub block_index: Option<u64>,
    /// The amount of a transfer.
    pub amount: Option<Nat>,
    /// The saga it was a step (or compensation) of.
    pub parent: Option<EntryId>,
    pub created_at: Timestamp,
    /// When it was last changed (it reached its terminal status then).
    pub resolved_at: Timestamp,
    pub compacted_at: Timestamp,
}

/// Compact view used by list pages.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EntrySummary {
    pub id: EntryId,
    pub owner: Principal,
    pub kind: Kind,
    pub status: Status,
    pub lock_key: Option<String>,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub manual_reason: Option<String>,
}

impl From<&Entry> for EntrySummary {
    fn from(e: &Entry) -> Self {
        EntrySummary {
            id: e.id,
            owner: e.owner,
            kind: e.kind,
            status: e.status,
            lock_key: e.lock_key.clone(),
            attempts: e.attempts,
            created_at: e.created_at,
            updated_at: e.updated_at,
            manual_reason: e.manual_reason.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// A transfer to send; the engine fills `memo` (entry id) and `created_at_time` (now).
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub enum TransferSpec {
    #[n(0)]
    Icrc1 {
        #[cbor(n(0), with = "icrc_cbor::principal")]
        ledger: Principal,
        #[cbor(n(1), with = "minicbor::bytes")]
        from_subaccount: Option<[u8; 32]>,
        #[n(2)]
        to: Account,
        #[cbor(n(3), with = "icrc_cbor::nat")]
        amount: Nat,
        /// Sent as is (None = let the ledger charge its fee; Some = must equal the fee).
        #[cbor(n(4), with = "icrc_cbor::nat::option")]
        fee: Option<Nat>,
    },
    #[n(1)]
    Icrc2 {
        #[cbor(n(0), with = "icrc_cbor::principal")]
        ledger: Principal,
        #[cbor(n(1), with = "minicbor::bytes")]
        spender_subaccount: Option<[u8; 32]>,
        #[n(2)]
        from: Account,
        #[n(3)]
        to: Account,
        #[cbor(n(4), with = "icrc_cbor::nat")]
        amount: Nat,
        #[cbor(n(5), with = "icrc_cbor::nat::option")]
        fee: Option<Nat>,
    },
}

impl TransferSpec {
    pub fn ledger(&self) -> Principal {
        match self {
            TransferSpec::Icrc1 { ledger, .. } | TransferSpec::Icrc2 { ledger, .. } => *ledger,
        }
    }
}

/// A key a caller chose for its entries.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum EntryKey {
    /// The idempotency key of the request that created the entry.
    IdempotencyKey(String),
    /// A lock key: the latest entry that took it, also once that entry is final.
    LockKey(String),
}

/// Filter for list queries; every combination is served from an index.
#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub owner: Option<Principal>,
    pub status: Option<Status>,
    pub kind: Option<Kind>,
    /// Only entries created at or before this time (age filter: now - min_age).
    pub created_before: Option<Timestamp>,
}

/// Keyset pagination: entries with id > `after` (ascending) or < `before` is not offered —
/// ids are the cursor, so pages stay stable while the journal grows.
#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub start_after: Option<EntryId>,
    /// Capped at `Config::max_page_size`.
    pub limit: u32,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `start_after` for the next page; None when exhausted.
    pub next: Option<EntryId>,
}

/// Operator verbs on a `ManualReview` entry.
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub enum AdminAction {
    /// Move back to `Unknown`, due now, with attempts reset (recovery runs again).
    #[n(0)]
    Retry,
    /// Close as succeeded; for transfers the block index is required evidence.
    #[n(1)]
    ResolveSucceeded {
        #[n(0)]
        block_index: Option<u64>,
    },
    /// Close as failed (operator asserts the step did not execute).
    #[n(2)]
    ResolveFailed,
    /// Saga: start compensating completed steps.
    #[n(3)]
    Compensate,
    /// Close without executing.
    #[n(4)]
    Cancel,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AdminRequest {
    pub entry_id: EntryId,
    pub action: AdminAction,
    /// Required, non-empty, bounded.
    pub reason: String,
    /// `ResolveFailed` / `Cancel` on a transfer whose ledger could still execute it (its
    /// deduplication window, plus clock drift, has not closed): the operator must set this to
    /// say they know the transfer may still execute after its lock is released, so a new
    /// request with the same lock key could pay twice. Recorded in the audit trail.
    pub acknowledge_risk: Option<bool>,
}

/// Result of an admin request.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum AdminResult {
    /// The action was applied; the entry is now in this status.
    Applied { status: Status, audit_seq: u64 },
    /// M-of-N: the approval was recorded; `have` of `need` approvals so far.
    ApprovalRecorded {
        have: u32,
        need: u32,
        audit_seq: u64,
    },
}

/// What an audit record is about.
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub enum AuditEvent {
    #[n(0)]
    Created {
        #[n(0)]
        kind: Kind,
    },
    #[n(1)]
    StatusChanged {
        #[n(0)]
        from: Status,
        #[n(1)]
        to: Status,
        #[n(2)]
        note: String,
    },
    #[n(2)]
    AdminAction {
        #[n(0)]
        action: AdminAction,
        #[n(1)]
        reason: String,
        /// The operator acknowledged that the ledger may still execute the transfer.
        #[n(2)]
        acknowledged_risk: Option<bool>,
    },
    /// An operator proposed a different action on an entry with pending approvals: those
    /// approvals were dropped (M-of-N restarts for the new action).
    #[n(3)]
    ApprovalsReplaced {
        #[n(0)]
        previous: AdminAction,
        #[cbor(n(1), with = "crate::cbor::principal_vec")]
        dropped: Vec<Principal>,
    },
    /// Approvals by principals that are no longer operators were discarded.
    #[n(4)]
    ApprovalsExpired {
        #[cbor(n(0), with = "crate::cbor::principal_vec")]
        dropped: Vec<Principal>,
    },
    #[n(5)]
    AdminApproval {
        #[n(0)]
        action: AdminAction,
        #[n(1)]
        reason: String,
        #[n(2)]
        have: u32,
        #[n(3)]
        need: u32,
    },
    /// A late reply or lookup contradicted a committed result; nothing was changed (I4).
    #[n(6)]
    Contradiction {
        #[n(0)]
        detail: String,
    },
}

/// Append-only audit record.
#[derive(
    CandidType, Deserialize, Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode,
)]
pub struct AuditRecord {
    #[n(0)]
    pub seq: u64,
    #[n(1)]
    pub at: Timestamp,
    #[n(2)]
    pub entry_id: EntryId,
    /// The principal that acted (None = the engine itself).
    #[cbor(n(3), with = "icrc_cbor::principal::option")]
    pub actor: Option<Principal>,
    #[n(4)]
    pub event: AuditEvent,
}

/// What `transfer`/`execute` return once the flow's message sequence ends.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FlowResult {
    pub entry_id: EntryId,
    pub status: Status,
    pub outcome: Option<Outcome>,
}

/// Result a host/caller reports for a `Record` entry or an externally executed transfer.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ReportedResult {
    Succeeded {
        block_index: Option<u64>,
        #[serde(with = "serde_bytes")]
        reply: Vec<u8>,
    },
    Failed {
        message: String,
    },
    /// The reporter does not know (e.g. its call timed out): recovery takes over.
    Unknown {
        message: String,
    },
}

/// One saga step as submitted.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SagaStepSpec {
    pub action: StepAction,
    pub compensation: Option<StepAction>,
}

/// What one recovery tick did. Candid-encodable so a host can return it from an endpoint.
#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Due entries looked at.
    pub examined: u32,
    /// Entries that reached a terminal status or manual review.
    pub resolved: u32,
    /// Another tick was still running: this one did nothing.
    pub skipped_overlap: bool,
    /// The tick stopped at its instruction budget.
    pub budget_exhausted: bool,
    /// More work was due than this tick took (another tick follows at once).
    pub more_due: bool,
    /// Instructions the tick's call context used.
    pub instructions: u64,
}

impl From<crate::metrics::RecoveryPath> for EvidenceSource {
    fn from(p: crate::metrics::RecoveryPath) -> Self {
        match p {
            crate::metrics::RecoveryPath::DedupResend => EvidenceSource::DedupResend,
            crate::metrics::RecoveryPath::MemoLookup => EvidenceSource::MemoLookup,
            crate::metrics::RecoveryPath::Manual => EvidenceSource::Admin,
            crate::metrics::RecoveryPath::Host => EvidenceSource::Host,
        }
    }
}
