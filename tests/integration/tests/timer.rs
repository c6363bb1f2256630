//! The recovery timer: whatever message of a recovery tick traps, at whichever System API call,
//! recovery keeps coming and settles every entry.

use ic_sim::{MessageKind, RejectCode};
use icjournal::{FlowResult, ReportedResult, Status};
use icjournal_client::{ClientError, RecordIntentArgs, ReportResultArgs, TransferRequest};
use icjournal_tests::*;

const AMOUNT: u64 = 1_000_000;

fn exec(s: &Setup, who: candid::Principal) -> Result<FlowResult, ClientError> {
    run(s.client(who).execute_transfer(TransferRequest {
        transfer: s.icrc2_spec(who, acct(user(9)), AMOUNT),
        lock_key: None,
        idempotency_key: None,
    }))
}

/// Two unknown outcomes, one the ledger executed and one it never saw; a reference recovery tick
/// resolves both. Then, for every System API call of every service message of that tick — the
/// global-timer dispatch, the tick's own message, the ledger callbacks, the commits — the same
/// tick is replayed from a snapshot with a trap injected there. Every time recovery must come
/// back and settle both entries with one payment each. A trap in a callback or in the tick's
/// task leaves the timer schedule intact, so recovery resumes on its own. A trap in the
/// `canister_global_timer` dispatch itself rolls back the re-arm of the system timer (the IC
/// deactivates it before calling the canister); the next update message of any caller brings it
/// back, and the test shows that too.
#[test]
fn should_keep_recovering_after_a_trap_at_any_system_call_of_a_recovery_tick() {
    let s = Setup::new();
    s.approve_service(user(1), 10 * AMOUNT);
    s.approve_service(user(2), 10 * AMOUNT);
    s.lose_next_ledger_response(s.service, "icrc2_transfer_from");
    let a = exec(&s, user(1)).unwrap();
    s.reject_next_ledger_call(s.service, "icrc2_transfer_from", RejectCode::CanisterError);
    let b = exec(&s, user(2)).unwrap();
    assert_eq!((a.status, b.status), (Status::Unknown, Status::Unknown));
    let paid_before = s.blocks().len();

    let snapshot = s.sim().snapshot();
    let first = s.sim().message_count();
    s.recovery_rounds(1);
    let end = s.sim().message_count();
    for id in [a.entry_id, b.entry_id] {
        assert_eq!(
            s.service_entry(id).status,
            Status::Succeeded,
            "reference tick"
        );
    }
    let (points, kinds): (Vec<_>, std::collections::HashMap<u64, MessageKind>) = {
        let sim = s.sim();
        let kinds: std::collections::HashMap<u64, MessageKind> = sim
            .trace()
            .iter()
            .filter(|r| r.index >= first && r.index < end && r.canister == s.service)
            .map(|r| (r.index, r.kind))
            .collect();
        let points = sim
            .trap_points(first)
            .into_iter()
            .filter(|p| kinds.contains_key(&p.message))
            .collect();
        (points, kinds)
    };
    assert!(
        kinds.values().any(|k| *k == MessageKind::GlobalTimer),
        "the tick starts in canister_global_timer"
    );
    assert!(points.len() >= 20, "only {} trap points", points.len());

    let mut revived_by_update = 0;
    for p in &points {
        s.sim().restore(&snapshot);
        s.sim().inject_trap(p.message, p.api_call);
        s.recovery_rounds(1);
        let trapped = s
            .sim()
            .trace()
            .iter()
            .any(|r| r.index == p.message && r.trap.is_some());
        assert!(trapped, "{p:?} did not trap");
        let in_dispatch = kinds[&p.message] == MessageKind::GlobalTimer;
        if in_dispatch && s.sim().global_timer(s.service) == Some(0) {
            // Any update brings the timer back: here an unrelated caller records a step and
            // reports it done.
            let c = s.client(user(3));
            let id = run(c.record_intent(RecordIntentArgs {
                label: "unrelated".into(),
                payload: vec![],
                lock_key: None,
                idempotency_key: None,
            }))
            .unwrap();
            run(c.report_result(ReportResultArgs {
                entry_id: id,
                result: ReportedResult::Succeeded {
                    block_index: None,
                    reply: vec![],
                },
            }))
            .unwrap();
            revived_by_update += 1;
        }
        let used = s.settle(600);
        if used >= 600 {
            let sim = s.sim();
            let msgs: Vec<String> = sim
                .trace()
                .iter()
                .filter(|r| r.index >= first && r.canister == s.service)
                .take(30)
                .map(|r| format!("{} {:?} {:?} {:?}", r.index, r.kind, r.method, r.trap))
                .collect();
            let timer = sim.global_timer(s.service);
            drop(sim);
            panic!(
                "{p:?}: recovery did not settle; timer {timer:?}; statuses {:?}\n{}",
                [a.entry_id, b.entry_id].map(|id| s.service_entry(id).status),
                msgs.join("\n")
            );
        }
        for id in [a.entry_id, b.entry_id] {
            let e = s.service_entry(id);
            assert_eq!(e.status, Status::Succeeded, "{p:?}: {e:?}");
        }
        assert_eq!(
            s.blocks().len(),
            paid_before + 1,
            "{p:?}: one payment for the entry the ledger had not executed, none for the other"
        );
    }
    eprintln!(
        "{} trap points in {} service messages; {revived_by_update} needed an update to revive the timer",
        points.len(),
        kinds.len()
    );
}
