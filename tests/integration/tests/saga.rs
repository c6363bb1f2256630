//! Sagas of executed transfers with compensating transfers.

use candid::Nat;
use ic_sim::RejectCode;
use icjournal::{Intent, Status, TransferSpec};
use icjournal_client::{SagaRequest, SagaTransferStep};
use icjournal_tests::*;

const AMOUNT: u64 = 3_000_000;

/// Step 1: the caller deposits AMOUNT into its escrow (compensation: pay it back from the
/// escrow); step 2: pay `amount2` to user 8.
fn saga(s: &Setup, who: candid::Principal, amount2: u64) -> SagaRequest {
    let escrow = s.escrow(who);
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

fn step_entries(s: &Setup, saga_id: u64) -> Vec<(Option<u64>, Option<u64>)> {
    let Intent::Saga(si) = s.service_entry(saga_id).intent else {
        panic!("not a saga")
    };
    si.steps
        .iter()
        .map(|st| (st.entry, st.compensation_entry))
        .collect()
}

#[test]
fn should_run_a_saga_to_completion() {
    let s = Setup::new();
    s.approve_service(user(1), 100 * AMOUNT);
    let r = run(s.client(user(1)).execute_saga(saga(&s, user(1), AMOUNT))).unwrap();
    assert_eq!(r.status, Status::Succeeded, "{r:?}");
    for (fwd, comp) in step_entries(&s, r.entry_id) {
        assert_eq!(s.service_entry(fwd.unwrap()).status, Status::Succeeded);
        assert!(comp.is_none());
    }
    assert_eq!(s.balance(acct(user(8))), (USER_FUNDS + AMOUNT) as u128);
}

#[test]
fn should_compensate_completed_steps_when_a_later_step_fails() {
    let s = Setup::new();
    s.approve_service(user(1), u64::MAX / 4);
    let before = s.balance(acct(user(1)));
    let r = run(s
        .client(user(1))
        .execute_saga(saga(&s, user(1), 10 * USER_FUNDS)))
    .unwrap();
    s.settle(600);
    let e = s.service_entry(r.entry_id);
    assert_eq!(e.status, Status::Compensated, "{e:?}");
    let steps = step_entries(&s, r.entry_id);
    assert_eq!(
        s.service_entry(steps[0].0.unwrap()).status,
        Status::Succeeded
    );
    assert_eq!(
        s.service_entry(steps[0].1.unwrap()).status,
        Status::Succeeded
    );
    assert_eq!(s.service_entry(steps[1].0.unwrap()).status, Status::Failed);
    // Only fees were lost: AMOUNT + FEE went out, AMOUNT - FEE came back.
    assert_eq!(s.balance(acct(user(1))), before - 2 * FEE as u128);
    // The lock is released once the saga is terminal (I3).
    let r2 = run(s.client(user(1)).execute_saga(saga(&s, user(1), AMOUNT))).unwrap();
    assert_eq!(r2.status, Status::Succeeded);
}

#[test]
fn should_hold_the_lock_while_a_saga_is_unresolved() {
    let s = Setup::new();
    s.approve_service(user(1), 100 * AMOUNT);
    s.lose_next_ledger_response(s.service, "icrc2_transfer_from");
    let r = run(s.client(user(1)).execute_saga(saga(&s, user(1), AMOUNT))).unwrap();
    assert_ne!(r.status, Status::Succeeded);
    let e = run(s.client(user(1)).execute_saga(saga(&s, user(1), AMOUNT))).unwrap_err();
    match service_err(e) {
        icjournal_client::ServiceError::Journal(icjournal::JournalError::LockHeld {
            entry_id,
            ..
        }) => assert_eq!(entry_id, r.entry_id),
        other => panic!("expected LockHeld, got {other:?}"),
    }
    s.settle(600);
    assert_eq!(s.service_entry(r.entry_id).status, Status::Succeeded);
}

#[test]
fn should_recover_unknown_saga_steps_before_deciding() {
    let s = Setup::new();
    s.approve_service(user(1), 100 * AMOUNT);
    // Step 2's request never reaches the ledger but the service cannot know: resend runs it.
    let mut n = 0;
    let ledger = s.ledger;
    let svc = s.service;
    s.sim().inject_reject(
        move |c| {
            if c.from == svc && c.to == ledger && c.method == "icrc2_transfer_from" {
                n += 1;
                n == 2
            } else {
                false
            }
        },
        RejectCode::CanisterReject,
        ic_sim::RejectWhen::BeforeDelivery,
    );
    let r = run(s.client(user(1)).submit_saga(saga(&s, user(1), AMOUNT))).unwrap();
    s.settle(600);
    let e = s.service_entry(r);
    assert_eq!(e.status, Status::Succeeded, "{e:?}");
    assert_eq!(s.balance(acct(user(8))), (USER_FUNDS + AMOUNT) as u128);
}

#[test]
fn should_compensate_after_an_operator_resolves_a_stuck_step() {
    let s = Setup::options().max_attempts(2).build();
    s.approve_service(user(1), 100 * AMOUNT);
    // Every ledger call of the service from the 2nd on is rejected before delivery with an
    // ambiguous code (CanisterReject): step 2 never executes, but the service cannot know.
    let ledger = s.ledger;
    let svc = s.service;
    for _ in 0..12 {
        let mut n = 0;
        s.sim().inject_reject(
            move |c| {
                if c.from == svc && c.to == ledger && c.method == "icrc2_transfer_from" {
                    n += 1;
                    n >= 2
                } else {
                    false
                }
            },
            RejectCode::CanisterReject,
            ic_sim::RejectWhen::BeforeDelivery,
        );
    }
    let r = run(s.client(user(1)).execute_saga(saga(&s, user(1), AMOUNT))).unwrap();
    s.settle(3600);
    let steps = step_entries(&s, r.entry_id);
    let step2 = steps[1].0.expect("step 2 started");
    let queue = s.service_manual_queue();
    assert!(!queue.is_empty(), "nothing went to manual review");
    s.sim().clear_faults();
    let ops = s.admin_client();
    if queue.iter().any(|e| e.id == step2) {
        // The operator checked the ledger: step 2 never executed.
        run(ops.admin_act(icjournal::AdminRequest {
            entry_id: step2,
            action: icjournal::AdminAction::ResolveFailed,
            reason: "no block with this memo on the ledger".into(),
            acknowledge_risk: Some(true),
        }))
        .unwrap();
    }
    if s.service_entry(r.entry_id).status == Status::ManualReview {
        run(ops.admin_act(icjournal::AdminRequest {
            entry_id: r.entry_id,
            action: icjournal::AdminAction::Compensate,
            reason: "refund the deposit".into(),
            acknowledge_risk: None,
        }))
        .unwrap();
    }
    s.settle(3600);
    let e = s.service_entry(r.entry_id);
    assert_eq!(e.status, Status::Compensated, "{e:?}");
    let comp = step_entries(&s, r.entry_id)[0]
        .1
        .expect("compensation started");
    assert_eq!(s.service_entry(comp).status, Status::Succeeded);
}

#[test]
fn should_fail_a_saga_whose_first_step_fails_without_compensating() {
    let s = Setup::new();
    // No approval: step 1 fails with InsufficientAllowance; nothing to compensate.
    let r = run(s.client(user(1)).execute_saga(saga(&s, user(1), AMOUNT))).unwrap();
    s.settle(300);
    let e = s.service_entry(r.entry_id);
    assert!(
        matches!(e.status, Status::Failed | Status::Compensated),
        "{e:?}"
    );
    let steps = step_entries(&s, r.entry_id);
    assert_eq!(s.service_entry(steps[0].0.unwrap()).status, Status::Failed);
    assert!(
        steps[0].1.is_none(),
        "a failed step must not be compensated"
    );
    assert!(steps[1].0.is_none(), "step 2 must not start");
}

#[test]
fn should_refuse_empty_and_oversized_sagas() {
    let s = Setup::new();
    let one = saga(&s, user(1), AMOUNT).steps[1].clone();
    for steps in [vec![], vec![one; 17]] {
        let e = run(s.client(user(1)).execute_saga(SagaRequest {
            steps,
            lock_key: None,
            idempotency_key: None,
        }))
        .unwrap_err();
        assert!(
            matches!(
                service_err(e),
                icjournal_client::ServiceError::Journal(
                    icjournal::JournalError::InvalidArgument { .. }
                )
            ),
            "saga size bound"
        );
    }
    assert_eq!(s.service_metrics().entries_total, 0);
}
