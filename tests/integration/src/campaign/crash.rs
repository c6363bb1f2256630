//! Crash-point enumeration (R1). Each flow runs once from a snapshot to list its messages and,
//! per message, its System API calls (`Simulator::trap_points`). Then, forked from the same
//! snapshot, every (message, call) is made to trap, and separately the flow's canister is
//! upgraded — without and with stopping it — before every message of the flow. Each case lets
//! recovery finish and runs every invariant check.

use super::check;
use super::{stop_upgrade_start_payout, upgrade_payout, Options, ServiceWasm};
use crate::{acct, run, user, Setup, FEE, SECOND, USER_FUNDS};
use candid::{Nat, Principal};
use icjournal::{
    AdminAction, AdminRequest, ListFilter, PageRequest, ReportedResult, Status, TransferSpec,
};
use icjournal_client::{
    AdminListArgs, RecordIntentArgs, ReportResultArgs, SagaRequest, SagaTransferStep,
    TrackTransferArgs, TransferRequest,
};
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::TransferArg;
use std::time::Duration;

pub const AMOUNT: u64 = 1_000_000;

// ------------------------------------------------------------------ flows (shared with schedules)

pub fn exec_icrc2(s: &Setup, who: Principal, amount: u64, lock: Option<&str>) {
    let _ = run(s.client(who).execute_transfer(TransferRequest {
        transfer: s.icrc2_spec(who, acct(user(9)), amount),
        lock_key: lock.map(str::to_string),
        idempotency_key: None,
    }));
}

pub fn submit_icrc2(s: &Setup, who: Principal, amount: u64, lock: Option<&str>) {
    let _ = run(s.client(who).submit_transfer(TransferRequest {
        transfer: s.icrc2_spec(who, acct(user(9)), amount),
        lock_key: lock.map(str::to_string),
        idempotency_key: None,
    }));
}

/// `who`'s escrow account at the service (None if the query fails, e.g. under a fault).
pub fn escrow(s: &Setup, who: Principal) -> Option<Account> {
    run(s.client(who).escrow_account(who)).ok()
}

/// From `who`'s escrow at the service.
pub fn exec_icrc1(s: &Setup, who: Principal, amount: u64, lock: Option<&str>) {
    let Some(escrow) = escrow(s, who) else { return };
    let _ = run(s.client(who).execute_transfer(TransferRequest {
        transfer: TransferSpec::Icrc1 {
            ledger: s.ledger,
            from_subaccount: escrow.subaccount,
            to: acct(user(8)),
            amount: Nat::from(amount),
            fee: None,
        },
        lock_key: lock.map(str::to_string),
        idempotency_key: None,
    }));
}

pub fn record_report(s: &Setup, who: Principal, succeed: bool) -> Option<u64> {
    let c = s.client(who);
    let id = run(c.record_intent(RecordIntentArgs {
        label: "ship".into(),
        payload: b"order".to_vec(),
        lock_key: None,
        idempotency_key: None,
    }))
    .ok()?;
    report(s, who, id, succeed);
    Some(id)
}

pub fn report(s: &Setup, who: Principal, id: u64, succeed: bool) {
    let result = if succeed {
        ReportedResult::Succeeded {
            block_index: None,
            reply: b"done".to_vec(),
        }
    } else {
        ReportedResult::Failed {
            message: "out of stock".into(),
        }
    };
    let _ = run(s.client(who).report_result(ReportResultArgs {
        entry_id: id,
        result,
    }));
}

/// Track a transfer, send it from `who` (as a canister would), report what the ledger said.
pub fn tracked(s: &Setup, who: Principal, amount: u64, send: bool) -> Option<u64> {
    let c = s.client(who);
    let t = run(c.track_transfer(TrackTransferArgs {
        ledger: s.ledger,
        op: icjournal::LedgerOp::Icrc1Transfer(TransferArg {
            from_subaccount: None,
            to: acct(user(7)),
            fee: Some(Nat::from(FEE)),
            created_at_time: None,
            memo: None,
            amount: Nat::from(amount),
        }),
        lock_key: None,
        idempotency_key: None,
    }))
    .ok()?;
    if send {
        let _ = run(c.send_tracked(&t));
    }
    Some(t.entry_id)
}

/// Step 1 pays `who`'s escrow (compensation: pay it back); step 2 pays user 8 `amount2`
/// (more than `who` has: fails, so step 1 is compensated).
pub fn saga(s: &Setup, who: Principal, amount2: u64) -> SagaRequest {
    let escrow = escrow(s, who).unwrap_or(acct(who));
    SagaRequest {
        steps: vec![
            SagaTransferStep {
                transfer: s.icrc2_spec(who, escrow, AMOUNT),
                compensation: Some(TransferSpec::Icrc1 {
                    ledger: s.ledger,
                    from_subaccount: escrow.subaccount,
                    to: acct(who),
                    amount: Nat::from(AMOUNT - FEE),
                    fee: None,
                }),
            },
            SagaTransferStep {
                transfer: s.icrc2_spec(who, acct(user(8)), amount2),
                compensation: None,
            },
        ],
        lock_key: Some("saga".into()),
        idempotency_key: None,
    }
}

pub fn payout(s: &Setup, who: Principal, amount: u64) {
    let _: Result<(candid::Reserved,), _> =
        s.update(s.payout, who, "payout", (acct(user(9)), Nat::from(amount)));
}

pub fn first_manual(s: &Setup) -> Option<u64> {
    run(s.admin_client().admin_list(AdminListArgs {
        filter: ListFilter {
            status: Some(Status::ManualReview),
            ..Default::default()
        },
        page: PageRequest {
            start_after: None,
            limit: 1,
        },
    }))
    .ok()?
    .items
    .first()
    .map(|e| e.id)
}

pub fn admin_act(s: &Setup, id: u64, action: AdminAction) {
    let _ = run(s.admin_client().admin_act(admin_request(id, action)));
}

/// What the campaign's operator sends: it acknowledges the risk the runbook accepts (it
/// closes a transfer only once its deduplication window has closed).
pub fn admin_request(id: u64, action: AdminAction) -> AdminRequest {
    AdminRequest {
        entry_id: id,
        action,
        reason: "campaign operator".into(),
        acknowledge_risk: Some(true),
    }
}

// ------------------------------------------------------------------ the enumeration

type Step = Box<dyn Fn(&Setup)>;

pub struct Flow {
    pub name: &'static str,
    /// Runs before the snapshot the cases fork from.
    pub prepare: Step,
    /// The part whose messages are enumerated.
    pub act: Step,
    /// The canister upgraded between messages.
    pub payout: bool,
}

fn flow(
    name: &'static str,
    payout: bool,
    prepare: impl Fn(&Setup) + 'static,
    act: impl Fn(&Setup) + 'static,
) -> Flow {
    Flow {
        name,
        prepare: Box::new(prepare),
        act: Box::new(act),
        payout,
    }
}

/// An executed transfer whose ledger reply is lost: the entry's outcome is unknown.
fn unknown_transfer(s: &Setup) {
    s.lose_next_ledger_response(s.service, "icrc2_transfer_from");
    exec_icrc2(s, user(3), AMOUNT, Some("u"));
    s.sim().clear_faults();
}

/// A transfer driven into the manual queue (the ledger traps until attempts run out).
fn manual_entry(s: &Setup) {
    s.ledger_trap(true);
    exec_icrc2(s, user(4), AMOUNT, None);
    check::settle(s, 24 * 3600);
    s.ledger_trap(false);
}

pub fn flows() -> Vec<Flow> {
    let nothing = |_: &Setup| {};
    let verb = |name: &'static str, action: AdminAction| {
        flow(name, false, manual_entry, move |s: &Setup| {
            if let Some(id) = first_manual(s) {
                admin_act(s, id, action.clone());
            }
        })
    };
    vec![
        flow("record-report", false, nothing, |s| {
            record_report(s, user(1), true);
        }),
        flow("tracked-transfer", false, nothing, |s| {
            tracked(s, user(2), AMOUNT, true);
        }),
        flow("executed-icrc1", false, nothing, |s| {
            exec_icrc1(s, user(1), AMOUNT, Some("a"))
        }),
        flow("executed-icrc2", false, nothing, |s| {
            exec_icrc2(s, user(2), AMOUNT, Some("b"))
        }),
        flow("saga-compensated", false, nothing, |s| {
            let _ = run(s
                .client(user(5))
                .execute_saga(saga(s, user(5), 10 * USER_FUNDS)));
        }),
        flow("payout", true, nothing, |s| payout(s, user(1), AMOUNT)),
        flow("recovery-resend", false, unknown_transfer, |s| {
            s.advance(Duration::from_secs(60));
        }),
        flow(
            "recovery-archive-lookup",
            false,
            |s| {
                unknown_transfer(s);
                s.archive_now();
                // Past the deduplication window: recovery must find the block by lookup, in
                // the archive.
                s.sim()
                    .advance_time(Duration::from_nanos(25 * 3600 * SECOND));
            },
            |s| {
                s.tick();
            },
        ),
        verb("admin-retry", AdminAction::Retry),
        verb("admin-resolve-failed", AdminAction::ResolveFailed),
        verb("admin-cancel", AdminAction::Cancel),
        verb(
            "admin-resolve-succeeded",
            AdminAction::ResolveSucceeded {
                block_index: Some(0),
            },
        ),
        flow("upgrade", false, unknown_transfer, |s| {
            let w = ServiceWasm::release();
            w.stop_upgrade_start(&mut s.sim(), s.service);
        }),
    ]
}

pub struct CrashReport {
    pub flows: usize,
    pub cases: u64,
    pub trap_cases: u64,
    pub upgrade_cases: u64,
    /// Messages of the flows' reference runs, and their System API calls: every call is a
    /// trap case, and an upgrade case comes before each message and after the last.
    pub messages: u64,
    pub api_calls: u64,
    /// Cases whose recovery and checks ran (the others repeat one of them exactly).
    pub full_checks: u64,
    pub violations: Vec<String>,
    /// Wall-clock seconds spent on each flow (for sizing the CI run).
    pub per_flow: Vec<(&'static str, f64)>,
}

/// One update message from a caller with no business there, answered with a typed error: on
/// the IC a trap in `canister_global_timer` rolls back the timer library's re-arming, and the
/// canister's timers stay off until some update message revives them (docs/recovery.md,
/// "Timers"). The service and the payout canister revive them in the guard of every update.
pub fn bystander_update(s: &Setup, canister: Principal) {
    let stranger = user(6);
    if canister == s.payout {
        let arg = candid::encode_args((stranger, Nat::from(1u64))).unwrap();
        let _ = s.sim().update_call(canister, stranger, "deposit", arg);
    } else {
        report(s, stranger, u64::MAX, true);
    }
}

/// Deliver what the flow left queued (a hook due now, e.g. an upgrade planned right after the
/// flow's last message, runs here), disarm what did not fire, let recovery finish, check.
/// `revive`: a global-timer message of this canister trapped, so one later update arrives
/// before recovery must finish. A panic of a test helper is reported as a violation, never
/// hidden.
fn finish(s: &Setup, revive: Option<Principal>) -> Vec<String> {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.tick();
        s.sim().clear_faults();
        if let Some(c) = revive {
            bystander_update(s, c);
        }
        check::settle(s, 3 * 24 * 3600);
        check::check(s, None)
    }));
    r.unwrap_or_else(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|m| m.to_string()))
            .unwrap_or_default();
        vec![format!(
            "harness: panicked: {}",
            msg.lines().next().unwrap_or("")
        )]
    })
}

/// Run the flow; a helper that panics under the fault is reported by `finish`'s checks.
fn act(f: &Flow, s: &Setup) -> Option<String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (f.act)(s)))
        .err()
        .map(|e| {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|m| m.to_string()))
                .unwrap_or_default();
            format!(
                "harness: the flow panicked: {}",
                msg.lines().next().unwrap_or("")
            )
        })
}

pub fn enumerate(opts: &Options) -> CrashReport {
    let s = super::base_setup(super::BASE_SEED);
    let base = s.sim().snapshot();
    let mut r = CrashReport {
        flows: 0,
        cases: 0,
        trap_cases: 0,
        upgrade_cases: 0,
        messages: 0,
        api_calls: 0,
        full_checks: 0,
        violations: vec![],
        per_flow: vec![],
    };
    for f in flows() {
        if !opts.crash_flows.is_empty() && !opts.crash_flows.contains(&f.name) {
            continue;
        }
        let started = std::time::Instant::now();
        s.sim().restore(&base);
        (f.prepare)(&s);
        let snap = s.sim().snapshot();
        let first = s.sim().message_count();
        (f.act)(&s);
        let last = s.sim().message_count();
        let points: Vec<_> = s
            .sim()
            .trap_points(first)
            .into_iter()
            .filter(|p| p.message < last)
            .collect();
        // Counted from the trace, apart from the trap points, so that a test can check the
        // cases cover them all.
        r.messages += last - first;
        r.api_calls += s
            .sim()
            .trace()
            .iter()
            .filter(|t| t.index >= first && t.index < last)
            .map(|t| t.api_calls as u64)
            .sum::<u64>();
        if last == first {
            r.violations
                .push(format!("crash {}: the flow ran no message", f.name));
        }
        let describe = |s: &Setup, m: u64| {
            let sim = s.sim();
            sim.trace()
                .iter()
                .find(|t| t.index == m)
                .map(|t| format!("{:?} {}", t.kind, t.method.clone().unwrap_or_default()))
                .unwrap_or_default()
        };
        // The reference run itself must be clean.
        let v = finish(&s, None);
        r.cases += 1;
        r.full_checks += 1;
        for x in v {
            r.violations
                .push(format!("crash {} (no fault): {x}", f.name));
        }
        if opts.verbose {
            eprintln!(
                "crash-points: flow {}: {} messages, {} trap points",
                f.name,
                last - first,
                points.len()
            );
        }
        let target = if f.payout { s.payout } else { s.service };
        // A trap rolls its whole message back, so trapping at call k or k+1 of one message
        // usually leaves the same state. The simulator is deterministic: two cases whose
        // messages after the trap ran identically (same canisters, kinds, methods, System API
        // calls, instructions, traps) are in the same state, and recovery and the checks give
        // the same verdict. Every (message, call) case is run up to the end of the flow; recovery
        // and the checks run once per distinct execution.
        type Key = (Option<Principal>, Vec<(u64, u32, u64, bool, u8)>);
        let mut verdicts: std::collections::HashMap<Key, Vec<String>> = Default::default();
        for p in &points {
            s.sim().restore(&snap);
            s.sim().inject_trap(p.message, p.api_call);
            let panicked = act(&f, &s);
            let revive = s
                .sim()
                .trace()
                .iter()
                .find(|t| t.index == p.message)
                .filter(|t| t.kind == ic_sim::MessageKind::GlobalTimer)
                .map(|t| t.canister);
            let key: Key = (revive, {
                let sim = s.sim();
                sim.trace()
                    .iter()
                    .filter(|t| t.index >= first && t.index != p.message)
                    .map(|t| {
                        let c = if t.canister == s.service {
                            0
                        } else if t.canister == s.payout {
                            1
                        } else {
                            2
                        };
                        (t.index, t.api_calls, t.instructions, t.trap.is_some(), c)
                    })
                    .collect()
            });
            r.cases += 1;
            r.trap_cases += 1;
            let mut v = match verdicts.get(&key) {
                Some(v) => v.clone(),
                None => {
                    r.full_checks += 1;
                    let v = finish(&s, revive);
                    verdicts.insert(key, v.clone());
                    v
                }
            };
            v.extend(panicked);
            for x in v {
                r.violations.push(format!(
                    "crash {} trap at message {} ({}) call {}: {x}",
                    f.name,
                    p.message,
                    describe(&s, p.message),
                    p.api_call
                ));
            }
        }
        for k in first..=last {
            for stop in [false, true] {
                s.sim().restore(&snap);
                let payout = f.payout;
                // An upgrade without a stop must be refused (`icjournal::upgrade`): the reply
                // to a call in flight would run in the new module with a pointer into the old
                // heap. A stopped one must go through.
                let accepted = std::rc::Rc::new(std::cell::Cell::new(None));
                let seen = accepted.clone();
                s.sim().before_message(k, move |sim| {
                    let w = ServiceWasm::release();
                    // The upgrade flow's own stop/upgrade/start leaves the canister stopped
                    // for some messages: an upgrade then is a stopped one.
                    let stopped = stop || super::is_stopped(sim, target);
                    seen.set(Some((
                        stopped,
                        match (payout, stop) {
                            (false, false) => w.upgrade(sim, target),
                            (false, true) => w.stop_upgrade_start(sim, target),
                            (true, false) => upgrade_payout(sim, target),
                            (true, true) => stop_upgrade_start_payout(sim, target),
                        },
                    )));
                });
                let panicked = act(&f, &s);
                let mut v = finish(&s, None);
                v.extend(panicked);
                match accepted.get() {
                    Some((false, true)) => v.push("an upgrade without a stop was accepted".into()),
                    Some((true, false)) => v.push("a stopped upgrade was refused".into()),
                    _ => {}
                }
                r.cases += 1;
                r.upgrade_cases += 1;
                r.full_checks += 1;
                for x in v {
                    r.violations.push(format!(
                        "crash {} upgrade{} before message {k}: {x}",
                        f.name,
                        if stop { " (stopped)" } else { "" }
                    ));
                }
            }
        }
        r.flows += 1;
        r.per_flow.push((f.name, started.elapsed().as_secs_f64()));
        if opts.verbose {
            eprintln!(
                "crash-points: flow {} done in {:.1}s",
                f.name,
                started.elapsed().as_secs_f64()
            );
        }
    }
    r
}
