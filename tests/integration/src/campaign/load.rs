//! Load (R6): `flows` transfers submitted by `callers` callers, faster than they complete.
//! Checks that the per-caller in-flight limit and quotas hold (refusals are typed), that no
//! message comes near the IC's per-message instruction limit (ic-sim enforces the limits, see
//! `ic_sim::InstructionLimits`), that every flow ends exactly once on the ledger, and measures
//! recovery throughput.

use super::check;
use crate::{acct, user, SetupOptions, USER_FUNDS};
use ic_sim::MessageKind;
use icjournal_client::{ClientError, ServiceError, TransferRequest};
use std::collections::BTreeMap;
use std::time::Instant;

pub struct LoadReport {
    pub flows: u64,
    pub callers: u64,
    pub violations: Vec<String>,
    pub max_instructions: u64,
    pub note: String,
}

pub fn run(flows: u64, callers: u64) -> LoadReport {
    let callers = callers.max(1);
    let who = |i: u64| user(1_000 + i);
    let max_in_flight = 50;
    let mut s = SetupOptions {
        funded: (0..callers).map(who).collect(),
        ..SetupOptions::default()
    }
    .max_in_flight(max_in_flight)
    .max_unresolved(1_000)
    .build();
    s.check_on_drop = false;
    for i in 0..callers {
        s.approve_service(who(i), USER_FUNDS);
    }
    let first_message = s.sim().message_count();
    let t = Instant::now();
    let (mut accepted, mut refused, mut other, mut other_replies) = (0u64, 0u64, 0u64, 0u64);
    let mut violations = Vec::new();
    // Every request is submitted before any runs: they are all in flight together, and the
    // simulator's scheduler interleaves them (ingress, ledger calls, callbacks, timers).
    let ids: Vec<_> = (0..flows)
        .map(|f| {
            let c = who(f % callers);
            let req = TransferRequest {
                transfer: s.icrc2_spec(c, acct(user(9)), 1_000 + f % 1_000),
                lock_key: None,
                idempotency_key: None,
            };
            s.sim().submit_call(
                s.service,
                c,
                "submit_transfer",
                candid::encode_one(&req).unwrap(),
            )
        })
        .collect();
    s.tick();
    for id in ids {
        let reply = s.sim().call_result(id);
        let r: Result<u64, ClientError> = match reply {
            Some(Ok(bytes)) => candid::decode_one::<Result<u64, ServiceError>>(&bytes)
                .map_err(|e| ClientError::Candid {
                    method: "submit_transfer".into(),
                    message: e.to_string(),
                })
                .and_then(|r| r.map_err(ClientError::Service)),
            other => {
                other_replies += 1;
                if other_replies <= 3 {
                    violations.push(format!("submit_transfer got no reply: {other:?}"));
                }
                continue;
            }
        };
        match r {
            Ok(_) => accepted += 1,
            Err(ClientError::Service(ServiceError::Journal(
                icjournal::JournalError::QuotaExceeded { .. }
                | icjournal::JournalError::TemporarilyUnavailable { .. },
            ))) => refused += 1,
            Err(e) => {
                other += 1;
                if other <= 3 {
                    violations.push(format!("submit refused without a quota error: {e:?}"));
                }
            }
        }
    }
    let submit_secs = t.elapsed().as_secs_f64();
    // In flight now, per caller: never above the limit.
    let mut per_owner: BTreeMap<candid::Principal, u64> = BTreeMap::new();
    for e in check::service_summaries(&s) {
        if e.status.is_unresolved() {
            *per_owner.entry(e.owner).or_default() += 1;
        }
    }
    let max_owner = per_owner.values().copied().max().unwrap_or(0);
    if max_owner > 1_000 {
        violations.push(format!(
            "a caller holds {max_owner} unresolved entries (quota 1000)"
        ));
    }
    let t2 = Instant::now();
    let sim_secs = check::settle(&s, 7 * 24 * 3600);
    let settle_secs = t2.elapsed().as_secs_f64();
    violations.extend(check::check(&s, None));
    let limits = s.sim().instruction_limits();
    let mut max_instructions = 0;
    for m in s.sim().trace().iter().filter(|m| m.index >= first_message) {
        max_instructions = max_instructions.max(m.instructions);
        let limit = match m.kind {
            MessageKind::Query | MessageKind::ReplicatedQuery => limits.query,
            MessageKind::InspectMessage => limits.inspect_message,
            MessageKind::Init
            | MessageKind::PostUpgrade
            | MessageKind::PreUpgrade
            | MessageKind::Start => limits.install,
            _ => limits.update,
        };
        // A tenth of the limit: room for a real subnet's larger Wasm and data.
        if m.instructions > limit / 10 {
            violations.push(format!(
                "message {} ({:?} {:?}) used {} instructions (limit {limit})",
                m.index, m.kind, m.method, m.instructions
            ));
        }
        if m.trap.as_deref().is_some_and(|t| t.contains("instruction")) {
            violations.push(format!("message {} hit the instruction limit", m.index));
        }
    }
    let note = format!(
        "load: {flows} flows from {callers} callers: {accepted} accepted, {refused} refused by \
         quota/in-flight limits, {other} other; max {max_owner} unresolved per caller; submitted \
         in {submit_secs:.1}s, recovered in {sim_secs} simulated s ({settle_secs:.1}s, {:.0} \
         flows/s)",
        accepted as f64 / settle_secs.max(1e-9)
    );
    LoadReport {
        flows,
        callers,
        violations,
        max_instructions,
        note,
    }
}
