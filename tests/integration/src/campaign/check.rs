//! The invariant checks every campaign run ends with (and the live ones it makes between steps):
//! - I1 at most once: each journaled transfer matches at most one ledger block, a succeeded one
//!   exactly its recorded block, a failed / cancelled / compensated one none, and no block sent
//!   by a journal's canister with an icjournal memo is unclaimed (`invariants::check_journal`);
//! - I2 nothing lost: once recovery is done, every entry is final or in the manual queue with
//!   a reason;
//! - I3 journal is a lock: never two unresolved entries under one lock key (checked live after
//!   every step of a schedule, and at the end);
//! - I4 results are final: a status, once seen final, never changes; no status change leaves a
//!   final status; the last recorded status change is the entry's status (nothing changed it
//!   without the audited `transition`).

use crate::invariants::{self, Report};
use crate::Setup;
use candid::Principal;
use icjournal::{Entry, EntrySummary, ListFilter, PageRequest, Status};
use icjournal_client::AdminListArgs;
use std::collections::BTreeMap;

/// What the live observation saw: the first final status of each entry (per journal).
#[derive(Default)]
pub struct Observer {
    finals: BTreeMap<(&'static str, u64), Status>,
    pub violations: Vec<String>,
}

/// All entry summaries of the service journal (admin view; pages of 100).
pub fn service_summaries(s: &Setup) -> Vec<EntrySummary> {
    let c = s.admin_client();
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = match crate::run(c.admin_list(AdminListArgs {
            filter: ListFilter::default(),
            page: PageRequest {
                start_after: after,
                limit: 100,
            },
        })) {
            Ok(p) => p,
            Err(_) => return out,
        };
        let n = page.items.len();
        out.extend(page.items);
        match page.next {
            Some(next) if n > 0 => after = Some(next),
            _ => return out,
        }
    }
}

fn lock_check(
    name: &str,
    items: impl Iterator<Item = (u64, Status, Option<String>)>,
) -> Vec<String> {
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (id, status, key) in items {
        if let (true, Some(k)) = (status.is_unresolved(), key) {
            by_key.entry(k).or_default().push(id);
        }
    }
    by_key
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(k, ids)| {
            format!("I3 {name}: entries {ids:?} unresolved together under lock key {k:?}")
        })
        .collect()
}

impl Observer {
    /// Look at the service journal now: I3 on the unresolved entries, and remember (or compare)
    /// the result of every final entry (I4).
    pub fn observe(&mut self, s: &Setup) {
        let items = service_summaries(s);
        self.violations.extend(lock_check(
            "service",
            items.iter().map(|e| (e.id, e.status, e.lock_key.clone())),
        ));
        for e in items.iter().filter(|e| e.status.is_terminal()) {
            // The status only: reading each entry's outcome here would double the cost of an
            // observation; the final check compares statuses and the audited history.
            match self.finals.get(&("service", e.id)) {
                None => {
                    self.finals.insert(("service", e.id), e.status);
                }
                Some(st) if *st != e.status => self.violations.push(format!(
                    "I4 service entry {}: final status {st:?} became {:?}",
                    e.id, e.status
                )),
                Some(_) => {}
            }
        }
    }

    /// Compare the final state with what was seen final before (I4).
    fn compare(&self, name: &'static str, e: &Entry, out: &mut Vec<String>) {
        if let Some(st) = self.finals.get(&(name, e.id)) {
            if *st != e.status {
                out.push(format!(
                    "I4 {name} entry {}: final status {st:?} became {:?}",
                    e.id, e.status
                ));
            }
        }
    }
}

/// I2 and the static part of I4 on one journal's entries.
fn entry_checks(
    name: &'static str,
    entries: &[Entry],
    obs: Option<&Observer>,
    out: &mut Vec<String>,
) {
    for e in entries {
        if e.status.is_unresolved() && e.status != Status::ManualReview {
            out.push(format!(
                "I2 {name} entry {} ({:?}) still {:?} after recovery ran out",
                e.id, e.kind, e.status
            ));
        }
        if e.status == Status::ManualReview && e.manual_reason.as_deref().is_none_or(str::is_empty)
        {
            out.push(format!(
                "I2 {name} entry {} in the manual queue without a reason",
                e.id
            ));
        }
        for h in &e.history {
            if h.from.is_terminal() {
                out.push(format!(
                    "I4 {name} entry {}: status left final {:?} for {:?} ({})",
                    e.id, h.from, h.to, h.note
                ));
            }
        }
        if let Some(last) = e.history.last() {
            if last.to != e.status {
                out.push(format!(
                    "I4 {name} entry {}: status {:?} but its last recorded change was to {:?}",
                    e.id, e.status, last.to
                ));
            }
        }
        if let Some(o) = obs {
            o.compare(name, e, out);
        }
    }
    out.extend(lock_check(
        name,
        entries.iter().map(|e| (e.id, e.status, e.lock_key.clone())),
    ));
}

/// Every check after a run whose recovery was allowed to finish. Returns the violations.
pub fn check(s: &Setup, obs: Option<&Observer>) -> Vec<String> {
    let blocks = s.blocks();
    let mut report = Report::default();
    let mut out = Vec::new();
    if let Some(o) = obs {
        out.extend(o.violations.iter().cloned());
    }
    let mut journals: Vec<(&'static str, Principal, Vec<Entry>)> = Vec::new();
    if s.opts.service {
        journals.push(("service", s.service, s.service_entries()));
    }
    if s.opts.payout {
        journals.push(("payout", s.payout, s.payout_entries()));
    }
    for (name, canister, entries) in &journals {
        invariants::check_journal(name, *canister, entries, &blocks, &mut report);
        entry_checks(name, entries, obs, &mut out);
    }
    out.extend(report.violations);
    out
}

/// Let recovery run until nothing is left for it (or `max_secs` of simulated time): steps of
/// one recovery interval, growing while nothing changes so that long backoffs and the
/// deduplication window pass in few steps.
pub fn settle(s: &Setup, max_secs: u64) -> u64 {
    let mut t = 0;
    let mut step = crate::RECOVERY_INTERVAL_S;
    let mut last = u64::MAX;
    while t < max_secs {
        let left = s.unresolved_automatic();
        if left == 0 {
            break;
        }
        if left == last {
            step = (step * 4).min(6 * 3600);
        } else {
            step = crate::RECOVERY_INTERVAL_S;
        }
        last = left;
        s.advance_secs(step);
        t += step;
    }
    t
}
