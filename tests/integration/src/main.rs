//! icjournal demo: builds the canister Wasms, starts the IC simulator with the ICRC ledger
//! (+ archive), the icjournal service and the payout example canister, drives a few hundred
//! transfers with faults injected (seeded), lets recovery run, resolves the manual queue as an
//! operator, verifies exactly-once against the ledger's blocks and prints a report plus the
//! service's `/metrics`. Exits non-zero if an invariant is violated.
//!
//! `cargo run --locked -p icjournal-tests --bin icjournal-demo [-- <seed> [<transfers>]]`

use candid::Nat;
use ic_sim::RejectCode;
use icjournal::{AdminAction, AdminRequest, Entry, Metrics, RecoveryPath, ReportedResult, Status};
use icjournal_client::{ReportResultArgs, TrackTransferArgs, TransferRequest};
use icjournal_tests::payout_types::PayoutError;
use icjournal_tests::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Instant;

/// Small deterministic PRNG (SplitMix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    None,
    LostResponse,
    RejectUnknown,
    RejectTransient,
    TrapInCallback,
    TemporarilyUnavailable,
}

fn pick_fault(rng: &mut Rng) -> Fault {
    match rng.below(100) {
        0..=59 => Fault::None,
        60..=71 => Fault::LostResponse,
        72..=79 => Fault::RejectUnknown,
        80..=84 => Fault::RejectTransient,
        85..=92 => Fault::TrapInCallback,
        _ => Fault::TemporarilyUnavailable,
    }
}

fn inject(s: &Setup, canister: candid::Principal, method: &'static str, f: Fault) {
    match f {
        Fault::None => {}
        Fault::LostResponse => s.lose_next_ledger_response(canister, method),
        Fault::RejectUnknown => {
            s.reject_next_ledger_call(canister, method, RejectCode::CanisterReject)
        }
        Fault::RejectTransient => {
            s.reject_next_ledger_call(canister, method, RejectCode::SysTransient)
        }
        Fault::TrapInCallback => s.trap_nth_callback_after(canister, method, 1, 1),
        Fault::TemporarilyUnavailable => s.ledger_unavailable_next(1),
    }
}

fn path_count(m: &Metrics, p: RecoveryPath) -> u64 {
    m.recoveries_by_path
        .iter()
        .filter(|x| x.path == p)
        .map(|x| x.count)
        .sum()
}

fn status_count(m: &Metrics, st: Status) -> u64 {
    m.entries_by_status
        .iter()
        .filter(|x| x.status == st)
        .map(|x| x.count)
        .sum()
}

/// (evidence source, failure reason kind) counts over the transfer entries of a journal.
fn by_evidence(entries: &[Entry]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for e in entries {
        if !matches!(e.intent, icjournal::Intent::Transfer(_)) {
            continue;
        }
        let k = match &e.outcome {
            Some(icjournal::Outcome::Succeeded { source, .. }) => {
                format!("succeeded via {source:?}")
            }
            Some(icjournal::Outcome::Failed { reason, source }) => {
                let r = format!("{reason:?}");
                let r = r.split([' ', '(', '{']).next().unwrap_or("").to_string();
                format!("failed via {source:?}: {r}")
            }
            None => format!("{:?}", e.status),
        };
        *m.entry(k).or_default() += 1;
    }
    m
}

fn ever_manual(entries: &[Entry]) -> usize {
    entries
        .iter()
        .filter(|e| {
            e.status == Status::ManualReview
                || e.history.iter().any(|h| h.to == Status::ManualReview)
        })
        .count()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(42);
    let transfers: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(300);
    let started = Instant::now();

    println!("== icjournal demo (seed {seed}, {transfers} transfers) ==");
    println!("building canister Wasms (canister-release) ...");
    let wasms = Wasms::all();
    for (name, w) in [
        ("icjournal service*", &wasms.service),
        ("payout example", &wasms.payout),
        ("test ledger", &wasms.ledger),
    ] {
        println!(
            "  {name:<18} {:>9} bytes  ({:.2} MiB, sha256 {})",
            w.len(),
            w.len() as f64 / (1024.0 * 1024.0),
            hex::encode(Sha256::digest(w))
        );
    }

    println!("  (* with candid/icjournal.did embedded as `icp:public candid:service` metadata)");
    let mut s = Setup::options()
        .seed(seed)
        .archive(200, 100)
        .with_payout()
        .max_attempts(4)
        .build();
    s.check_on_drop = false;
    for i in 0..10 {
        s.approve_service(user(i), USER_FUNDS / 2);
    }

    // ---- instructions per journaled transfer (clean run, before any fault)
    let sim_total = |s: &Setup, c| s.sim.borrow().total_instructions(c);
    let before = sim_total(&s, s.service);
    let msgs_before = s.sim.borrow().message_count();
    let r = run(s.client(user(0)).execute_transfer(TransferRequest {
        transfer: s.icrc2_spec(user(0), acct(user(9)), 1_000),
        lock_key: None,
        idempotency_key: None,
    }))
    .expect("clean transfer");
    assert_eq!(r.status, Status::Succeeded);
    let service_instr = sim_total(&s, s.service) - before;
    let breakdown: Vec<String> = s
        .sim
        .borrow()
        .trace()
        .iter()
        .filter(|m| m.index >= msgs_before && m.canister == s.service)
        .map(|m| {
            format!(
                "{}:{}",
                m.method.clone().unwrap_or_else(|| format!("{:?}", m.kind)),
                m.instructions
            )
        })
        .collect();
    let before = sim_total(&s, s.payout);
    let p = s
        .payout_as(user(0), acct(user(9)), 1_000)
        .expect("clean payout");
    let payout_instr = sim_total(&s, s.payout) - before;
    let _ = p;

    // ---- phase 1: a few hundred transfers with faults
    let mut rng = Rng(seed);
    let mut faults: BTreeMap<(&str, Fault), u64> = BTreeMap::new();
    let mut busy = 0u64;
    let mut tracked = Vec::new();
    println!("driving {transfers} transfers with faults ...");
    for i in 0..transfers {
        let who = user(rng.below(10));
        let to = acct(user(10 + rng.below(5)));
        let amount = 1_000 + rng.below(100_000);
        let fault = pick_fault(&mut rng);
        match rng.below(10) {
            0..=5 => {
                inject(&s, s.service, "icrc2_transfer_from", fault);
                *faults.entry(("service executed", fault)).or_default() += 1;
                let req = TransferRequest {
                    transfer: s.icrc2_spec(who, to, amount),
                    lock_key: None,
                    idempotency_key: None,
                };
                if rng.below(2) == 0 {
                    let _ = run(s.client(who).execute_transfer(req));
                } else {
                    // Returns at once; its ledger call is still queued: deliver it (and the
                    // injected fault) before the faults are cleared.
                    let _ = run(s.client(who).submit_transfer(req));
                    s.tick();
                }
            }
            6..=8 => {
                inject(&s, s.payout, "icrc1_transfer", fault);
                match s.update::<_, (Result<payout_types::PayoutReceipt, PayoutError>,)>(
                    s.payout,
                    who,
                    "payout",
                    (to, Nat::from(amount)),
                ) {
                    Ok((Err(PayoutError::PayoutInProgress { .. }),)) => {
                        busy += 1;
                        s.sim.borrow_mut().clear_faults();
                    }
                    _ => *faults.entry(("payout", fault)).or_default() += 1,
                }
            }
            _ => {
                // A tracked transfer the caller sends itself; sometimes it never reports.
                let t = run(s.client(who).track_transfer(TrackTransferArgs {
                    ledger: s.ledger,
                    op: icjournal::LedgerOp::Icrc1Transfer(
                        icrc_ledger_types::icrc1::transfer::TransferArg {
                            from_subaccount: None,
                            to,
                            fee: Some(Nat::from(FEE)),
                            created_at_time: None,
                            memo: None,
                            amount: Nat::from(amount),
                        },
                    ),
                    lock_key: None,
                    idempotency_key: None,
                }))
                .expect("track");
                let icjournal::LedgerOp::Icrc1Transfer(arg) = &t.op else {
                    unreachable!()
                };
                let sent = s.ledger_transfer(who, arg.clone());
                let result = match (&sent, rng.below(3)) {
                    (Ok(b), 0 | 1) => ReportedResult::Succeeded {
                        block_index: Some(u64::try_from(b.0.clone()).unwrap()),
                        reply: vec![],
                    },
                    _ => ReportedResult::Unknown {
                        message: "caller lost track".into(),
                    },
                };
                *faults.entry(("tracked", Fault::None)).or_default() += 1;
                tracked.push(t.entry_id);
                let _ = run(s.client(who).report_result(ReportResultArgs {
                    entry_id: t.entry_id,
                    result,
                }));
            }
        }
        s.sim.borrow_mut().clear_faults();
        if i % 10 == 9 {
            // Let the recovery timers run now and then while traffic continues.
            s.advance_secs(RECOVERY_INTERVAL_S);
        }
    }
    println!("letting recovery run ...");
    s.settle(3600);

    // ---- phase 2: memo lookup past the dedup window (service recovery paused meanwhile)
    println!("phase 2: unknown outcomes discovered after the dedup window (memo lookup) ...");
    let ops = s.admin_client();
    run(ops.pause_recovery("demo: simulate a long outage".into())).unwrap();
    for i in 0..20u64 {
        let who = user(i % 10);
        let fault = if i % 2 == 0 {
            Fault::LostResponse
        } else {
            Fault::RejectUnknown
        };
        inject(&s, s.service, "icrc2_transfer_from", fault);
        *faults.entry(("service after window", fault)).or_default() += 1;
        let _ = run(s.client(who).execute_transfer(TransferRequest {
            transfer: s.icrc2_spec(who, acct(user(12)), 5_000 + i),
            lock_key: None,
            idempotency_key: None,
        }));
        s.sim.borrow_mut().clear_faults();
    }
    s.archive_now();
    s.advance_secs(25 * 3600);
    s.simple_transfer(user(0), acct(user(1)), 1);
    run(ops.resume_recovery("demo: outage over".into())).unwrap();
    s.settle(6 * 3600);

    // ---- phase 3: the ledger breaks; entries exhaust their attempts -> manual review
    println!("phase 3: the ledger traps for a while -> manual review ...");
    s.ledger_trap(true);
    for i in 0..5u64 {
        let who = user(i);
        let _ = run(s.client(who).execute_transfer(TransferRequest {
            transfer: s.icrc2_spec(who, acct(user(13)), 7_000 + i),
            lock_key: None,
            idempotency_key: None,
        }));
    }
    let _ = s.payout_as(user(7), acct(user(13)), 7_777);
    s.settle(6 * 3600);
    s.ledger_trap(false);
    let manual_service = s.service_manual_queue();
    let manual_payout = s.payout_manual_queue();
    println!(
        "  manual queue: service {}, payout {}",
        manual_service.len(),
        manual_payout.len()
    );
    // The operator retries each (the ledger is fixed): recovery resends exactly once.
    let mut resolved = 0;
    for e in &manual_service {
        let r = run(ops.admin_act(AdminRequest {
            entry_id: e.id,
            action: AdminAction::Retry,
            reason: "ledger fixed; retry".into(),
            acknowledge_risk: None,
        }));
        if r.is_ok() {
            resolved += 1;
        }
    }
    for e in &manual_payout {
        let r: Result<icjournal::AdminResult, PayoutError> = s.update1(
            s.payout,
            admin(),
            "admin_retry",
            (e.id, "ledger fixed; retry".to_string()),
        );
        if r.is_ok() {
            resolved += 1;
        }
    }
    s.settle(6 * 3600);

    // ---- verify and report
    let report = invariants::check(&s);
    let sm = s.service_metrics();
    let pm = s.payout_metrics().journal;
    let service_entries = s.service_entries();
    let payout_entries = s.payout_entries();
    let still_unresolved = s.unresolved_automatic();
    let left_manual = s.service_manual_queue().len() + s.payout_manual_queue().len();

    println!();
    println!("== faults injected ==");
    for ((flow, f), n) in &faults {
        println!("  {flow:<22} {:<24} {n:>4}", format!("{f:?}"));
    }
    println!("  payouts refused (payout in progress, I3): {busy}");
    println!();
    println!("== report ==");
    println!(
        "  ledger blocks                       {:>6} ({} archived)",
        report.blocks, report.archived_blocks
    );
    println!(
        "  journaled transfers                 {:>6}",
        report.transfer_entries
    );
    println!(
        "  executed exactly once (succeeded)   {:>6}",
        report.succeeded
    );
    println!("  failed, proven not executed         {:>6}", report.failed);
    println!(
        "  recovered by deduplicated resend    {:>6}  (service {}, payout {})",
        path_count(&sm, RecoveryPath::DedupResend) + path_count(&pm, RecoveryPath::DedupResend),
        path_count(&sm, RecoveryPath::DedupResend),
        path_count(&pm, RecoveryPath::DedupResend)
    );
    let mut ev = by_evidence(&service_entries);
    for (k, v) in by_evidence(&payout_entries) {
        *ev.entry(k).or_default() += v;
    }
    let found = ev.get("succeeded via MemoLookup").copied().unwrap_or(0);
    let absent = ev
        .get("failed via MemoLookup: NotFoundAfterWindow")
        .copied()
        .unwrap_or(0);
    println!(
        "  recovered by memo lookup            {:>6}  (found {found}, proven absent {absent}; \
         metrics counter memo_lookup: service {}, payout {})",
        found + absent,
        path_count(&sm, RecoveryPath::MemoLookup),
        path_count(&pm, RecoveryPath::MemoLookup)
    );
    println!(
        "  sent to manual review               {:>6}  (service {}, payout {})",
        ever_manual(&service_entries) + ever_manual(&payout_entries),
        ever_manual(&service_entries),
        ever_manual(&payout_entries)
    );
    println!("  resolved by an operator             {:>6}", resolved);
    println!("  still in manual review              {:>6}", left_manual);
    println!(
        "  unresolved (automatic)              {:>6}",
        still_unresolved
    );
    println!(
        "  service entries by status           {:?}",
        icjournal::Status::ALL
            .iter()
            .map(|st| (st.as_str(), status_count(&sm, *st)))
            .filter(|(_, n)| *n > 0)
            .collect::<Vec<_>>()
    );
    println!(
        "  payout entries by status            {:?}",
        icjournal::Status::ALL
            .iter()
            .map(|st| (st.as_str(), status_count(&pm, *st)))
            .filter(|(_, n)| *n > 0)
            .collect::<Vec<_>>()
    );
    println!("  tracked transfers                   {:>6}", tracked.len());
    println!("  transfer outcomes by evidence (service + payout journals):");
    for (k, v) in ev {
        println!("    {k:<52} {v:>5}");
    }
    println!();
    println!("== instructions per journaled transfer (simulator fuel count, all messages) ==");
    println!(
        "  service execute_transfer (ICRC-2)   {service_instr:>12}   [{}]",
        breakdown.join(", ")
    );
    println!("  payout saga (debit + ICRC-1)        {payout_instr:>12}");
    println!();
    println!("== service /metrics ==");
    print!("{}", s.metrics_text());
    println!();
    println!(
        "simulated time {:.1} h, {} messages, wall time {:.1} s",
        (s.now() - ic_sim::DEFAULT_TIME_NANOS) as f64 / 3.6e12,
        s.sim.borrow().message_count(),
        started.elapsed().as_secs_f64()
    );
    let mut failed = false;
    if !report.violations.is_empty() {
        println!("INVARIANT VIOLATIONS:");
        for v in &report.violations {
            println!("  {v}");
        }
        failed = true;
    }
    if still_unresolved > 0 {
        println!("NOT SETTLED: {still_unresolved} entries still unresolved (I2)");
        failed = true;
    }
    if failed {
        std::process::exit(1);
    }
    println!("exactly-once verified against the ledger's blocks: OK");
}
