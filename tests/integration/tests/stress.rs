//! Seeded fault-injected runs over the service and the payout canister (random interleavings
//! by the simulator's seeded scheduler), then the ledger-vs-journal check; plus lifecycle
//! safety: M-of-N approvals, and `post_upgrade` trapping on a foreign stable-memory layout.

use candid::{Encode, Nat};
use ic_sim::RejectCode;
use icjournal::{AdminAction, AdminRequest, AdminResult, JournalError, Status};
use icjournal_client::{ServiceError, TransferRequest};
use icjournal_tests::payout_types::*;
use icjournal_tests::*;

fn seeded_run(seed: u64, transfers: u64) {
    let s = Setup::options()
        .seed(seed)
        .archive(40, 20)
        .with_payout()
        .build();
    for i in 0..5 {
        s.approve_service(user(i), USER_FUNDS / 2);
    }
    let mut x = seed;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    for i in 0..transfers {
        let who = user(next() % 5);
        let amount = 1_000 + next() % 50_000;
        let (canister, method) = if next() % 3 == 0 {
            (s.payout, "icrc1_transfer")
        } else {
            (s.service, "icrc2_transfer_from")
        };
        match next() % 8 {
            0 => s.lose_next_ledger_response(canister, method),
            1 => s.reject_next_ledger_call(canister, method, RejectCode::CanisterReject),
            2 => s.reject_next_ledger_call(canister, method, RejectCode::SysTransient),
            3 => s.trap_nth_callback_after(canister, method, 1, 1),
            4 => s.trap_nth_callback_after(canister, method, 2, 1),
            _ => {}
        }
        if canister == s.service {
            let _ = run(s.client(who).submit_transfer(TransferRequest {
                transfer: s.icrc2_spec(who, acct(user(9)), amount),
                lock_key: None,
                idempotency_key: None,
            }));
            // Deliver the queued ledger call (and its fault) before clearing the faults.
            s.tick();
        } else {
            let _: Result<(Result<PayoutReceipt, PayoutError>,), _> =
                s.update(s.payout, who, "payout", (acct(user(9)), Nat::from(amount)));
        }
        s.sim().clear_faults();
        if i % 7 == 6 {
            s.advance_secs(RECOVERY_INTERVAL_S);
        }
    }
    s.settle(6 * 3600);
    assert_eq!(s.unresolved_automatic(), 0, "I2: unresolved entries left");
    let report = s.check_invariants();
    assert!(report.succeeded > 0);
    assert!(report.archived_blocks > 0);
}

#[test]
fn should_keep_exactly_once_under_seeded_faults_seed_1() {
    seeded_run(1, 50);
}

#[test]
fn should_keep_exactly_once_under_seeded_faults_seed_2() {
    seeded_run(2, 50);
}

#[test]
fn should_require_m_of_n_approvals_for_resolutions() {
    let s = Setup::options().max_attempts(2).approvals(2).build();
    s.approve_service(user(1), 10_000_000);
    s.ledger_trap(true);
    let r = run(s.client(user(1)).execute_transfer(TransferRequest {
        transfer: s.icrc2_spec(user(1), acct(user(9)), 1_000),
        lock_key: None,
        idempotency_key: None,
    }))
    .unwrap();
    s.settle(3600);
    s.ledger_trap(false);
    assert_eq!(s.service_entry(r.entry_id).status, Status::ManualReview);
    let req = || AdminRequest {
        entry_id: r.entry_id,
        action: AdminAction::ResolveFailed,
        reason: "never executed (ledger trapped)".into(),
        acknowledge_risk: Some(true),
    };
    let first = run(s.admin_client().admin_act(req())).unwrap();
    assert!(
        matches!(
            first,
            AdminResult::ApprovalRecorded {
                have: 1,
                need: 2,
                ..
            }
        ),
        "{first:?}"
    );
    assert_eq!(s.service_entry(r.entry_id).status, Status::ManualReview);
    let again = run(s.admin_client().admin_act(req())).unwrap_err();
    assert!(matches!(
        service_err(again),
        ServiceError::Journal(JournalError::AlreadyApproved { .. })
    ));
    // A second operator (a controller) completes the quorum.
    let second = run(s.client(controller()).admin_act(req())).unwrap();
    assert!(
        matches!(
            second,
            AdminResult::Applied {
                status: Status::Failed,
                ..
            }
        ),
        "{second:?}"
    );
}

#[test]
fn should_refuse_an_upgrade_onto_a_foreign_stable_layout() {
    let s = Setup::new();
    // A canister whose stable memory holds another program's data (the ledger's snapshot).
    let c = s.sim().create_canister();
    let arg = Encode!(&LedgerArg::Archive(ArchiveInitArgs {
        ledger_id: s.ledger,
        block_index_offset: 0,
        max_memory_size_bytes: None,
        max_transactions_per_response: None,
        max_blocks_per_response: None,
    }))
    .unwrap();
    s.sim()
        .install_canister(c, Wasms::ledger(), arg.clone(), None)
        .unwrap();
    // Upgrading the ledger to itself writes its state into stable memory (pre_upgrade).
    s.sim()
        .upgrade_canister(c, Wasms::ledger(), vec![], None)
        .unwrap();
    let hash = s.sim.borrow().module_hash(c);
    let r = s.sim().upgrade_canister(
        c,
        Wasms::service(),
        Encode!(&None::<icjournal_client::ServiceConfig>).unwrap(),
        None,
    );
    assert!(
        matches!(r, Err(ic_sim::SimError::Trapped { .. })),
        "post_upgrade must trap on a foreign layout: {r:?}"
    );
    // Rolled back: the old module still runs.
    assert_eq!(s.sim.borrow().module_hash(c), hash);
    // And a healthy service upgrade keeps its entries and config (I5).
    s.approve_service(user(1), 1_000_000);
    let r = run(s.client(user(1)).execute_transfer(TransferRequest {
        transfer: s.icrc2_spec(user(1), acct(user(9)), 1_000),
        lock_key: None,
        idempotency_key: None,
    }))
    .unwrap();
    s.stop_upgrade_start_service();
    assert_eq!(s.service_entry(r.entry_id).status, Status::Succeeded);
    assert_eq!(
        run(s.admin_client().get_config()).unwrap().config,
        Setup::service_config(&s.opts, s.ledger)
    );
    assert_ne!(
        s.sim.borrow().global_timer(s.service),
        Some(0),
        "timer re-armed"
    );
}
