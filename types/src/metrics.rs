//! Metrics snapshot types (O(1) to build: every figure is a counter maintained on write, never
//! a scan). The Prometheus encoding lives in the engine.

use crate::journal::{Kind, Status};
use candid::{CandidType, Deserialize};

/// How an unknown outcome got resolved.
#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RecoveryPath {
    /// Identical args resent inside the dedup window (`Ok` / `Duplicate`).
    DedupResend,
    /// Found (or proven absent) by memo lookup in the ledger's blocks.
    MemoLookup,
    /// Resolved by an operator.
    Manual,
    /// Host-local step re-run / record result reported late.
    Host,
}

impl RecoveryPath {
    pub const ALL: [RecoveryPath; 4] = [
        RecoveryPath::DedupResend,
        RecoveryPath::MemoLookup,
        RecoveryPath::Manual,
        RecoveryPath::Host,
    ];
    pub fn tag(self) -> u8 {
        match self {
            RecoveryPath::DedupResend => 0,
            RecoveryPath::MemoLookup => 1,
            RecoveryPath::Manual => 2,
            RecoveryPath::Host => 3,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryPath::DedupResend => "dedup_resend",
            RecoveryPath::MemoLookup => "memo_lookup",
            RecoveryPath::Manual => "manual",
            RecoveryPath::Host => "host",
        }
    }
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StatusCount {
    pub status: Status,
    pub count: u64,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct KindCount {
    pub kind: Kind,
    pub count: u64,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PathCount {
    pub path: RecoveryPath,
    pub count: u64,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Metrics {
    /// When the snapshot was taken (ns).
    pub timestamp: u64,
    pub entries_total: u64,
    pub entries_by_status: Vec<StatusCount>,
    pub entries_by_kind: Vec<KindCount>,
    pub recoveries_by_path: Vec<PathCount>,
    /// Calls made to execute or recover entries.
    pub attempts_total: u64,
    /// Age of the oldest unresolved entry (ns), None if none.
    pub oldest_unresolved_age_ns: Option<u64>,
    pub manual_queue_depth: u64,
    /// Bytes of stable memory held by the journal's memories.
    pub stable_memory_bytes: u64,
    pub audit_records: u64,
    /// Late evidence that contradicted a committed result (each also an audit record).
    pub contradictions: u64,
    pub recovery_ticks: u64,
    /// Entries compacted by retention, by the terminal status they had (None: a build without
    /// retention).
    pub compacted_by_status: Option<Vec<StatusCount>>,
    /// Summaries of compacted entries kept now.
    pub summaries: Option<u64>,
    /// Summaries pruned after the second retention period.
    pub summaries_pruned: Option<u64>,
    /// Bytes of stable memory held by the audit log (append-only: retention does not shrink it).
    pub audit_bytes: Option<u64>,
    /// Block claims in the claims B-tree (storage layout 6 keeps claims in a hash table): a
    /// journal upgraded from an older layout has its older claims there until the recovery
    /// tick has moved them (this falls towards 0 as it does), plus the rare claims of a full
    /// bucket. None: a build before layout 6.
    pub claims_in_tree: Option<u64>,
}
