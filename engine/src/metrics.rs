//! Observability: the `Metrics` snapshot (shared types) and its Prometheus text encoding.

use ic_metrics_encoder::MetricsEncoder;
pub use icjournal_types::metrics::*;

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
    if let Some(by_status) = &m.compacted_by_status {
        let mut c = w.counter_vec(
            "icjournal_compacted_total",
            "Resolved entries compacted by retention, by terminal status.",
        )?;
        for s in by_status {
            c = c.value(&[("status", s.status.as_str())], s.count as f64)?;
        }
    }
    if let Some(n) = m.summaries {
        w.encode_gauge(
            "icjournal_summaries",
            n as f64,
            "Summaries of compacted entries kept.",
        )?;
    }
    if let Some(n) = m.summaries_pruned {
        w.encode_counter(
            "icjournal_summaries_pruned_total",
            n as f64,
            "Summaries pruned after the second retention period.",
        )?;
    }
    if let Some(n) = m.audit_bytes {
        w.encode_gauge(
            "icjournal_audit_bytes",
            n as f64,
            "Stable memory held by the append-only audit log (not compacted).",
        )?;
    }
    if let Some(n) = m.claims_in_tree {
        w.encode_gauge(
            "icjournal_claims_in_tree",
            n as f64,
            "Block claims in the claims B-tree: an upgraded journal's older claims until the recovery tick has moved them into the claims table, and full buckets' spills.",
        )?;
    }
    Ok(w.into_inner())
}
