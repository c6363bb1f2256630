//! Observability (BRIEF §7): a `Metrics` snapshot (O(1) to build: every figure is a counter
//! maintained on write, never a scan) and its Prometheus text encoding.

use crate::types::{Kind, Status};
use candid::{CandidType, Deserialize};
use ic_metrics_encoder::MetricsEncoder;

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
}

/// Prometheus text exposition of `m`.
pub fn encode_prometheus(m: &Metrics) -> std::io::Result<Vec<u8>> {
    let mut w = MetricsEncoder::new(Vec::new(), (m.timestamp / 1_000_000) as i64);
    w.encode_gauge(
        "icjournal_entries_total",
        m.entries_total as f64,
        "Entries ever journaled.",
    )?;
    {
        let mut g = w.gauge_vec("icjournal_entries", "Entries by status.")?;
        for s in &m.entries_by_status {
            g = g.value(&[("status", s.status.as_str())], s.count as f64)?;
        }
    }
    {
        let mut g = w.gauge_vec("icjournal_entries_by_kind", "Entries by kind.")?;
        for k in &m.entries_by_kind {
            g = g.value(&[("kind", k.kind.as_str())], k.count as f64)?;
        }
    }
    {
        let mut c = w.counter_vec(
            "icjournal_recoveries",
            "Unknown outcomes resolved, by path.",
        )?;
        for p in &m.recoveries_by_path {
            c = c.value(&[("path", p.path.as_str())], p.count as f64)?;
        }
    }
    w.encode_counter(
        "icjournal_attempts_total",
        m.attempts_total as f64,
        "Calls made to execute or recover entries.",
    )?;
    w.encode_gauge(
        "icjournal_oldest_unresolved_age_seconds",
        m.oldest_unresolved_age_ns
            .map(|ns| ns as f64 / 1e9)
            .unwrap_or(0.0),
        "Age of the oldest unresolved entry.",
    )?;
    w.encode_gauge(
        "icjournal_manual_queue_depth",
        m.manual_queue_depth as f64,
        "Entries waiting for an operator.",
    )?;
    w.encode_gauge(
        "icjournal_stable_memory_bytes",
        m.stable_memory_bytes as f64,
        "Stable memory held by the journal.",
    )?;
    w.encode_counter(
        "icjournal_audit_records_total",
        m.audit_records as f64,
        "Audit records appended.",
    )?;
    w.encode_counter(
        "icjournal_contradictions_total",
        m.contradictions as f64,
        "Late evidence contradicting a committed result.",
    )?;
    w.encode_counter(
        "icjournal_recovery_ticks_total",
        m.recovery_ticks as f64,
        "Recovery timer runs.",
    )?;
    Ok(w.into_inner())
}
