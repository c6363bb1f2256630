//! Native tests of the service layer on the engine's `FakeRuntime` and `VectorMemory`:
//! isolation (I7), roles, input validation before work, quotas, flows, persistence, timers.

use crate::guard::Ctx;
use crate::service::Service;
use crate::validate::escrow_subaccount;
use candid::{Nat, Principal};
use futures::executor::block_on;
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::{Memory, VectorMemory};
use icjournal::{
    AdminAction, AdminRequest, FakeRuntime, JournalError, Kind, LedgerOp, ListFilter, Memories,
    Outcome, PageRequest, PendingCall, ReportedResult, Status, TransferSpec,
};
use icjournal_client::*;
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::TransferArg;
use icrc_ledger_types::icrc2::transfer_from::{TransferFromArgs, TransferFromError};
use std::rc::Rc;

type Svc = Service<FakeRuntime, VirtualMemory<VectorMemory>>;

const NOW: u64 = 1_700_000_000_000_000_000;
const DAY: u64 = 86_400_000_000_000;

fn p(n: u8) -> Principal {
    Principal::from_slice(&[n, 7, 7])
}
fn me() -> Principal {
    p(200)
}
fn ledger() -> Principal {
    p(100)
}
fn admin() -> Principal {
    p(90)
}
fn alice() -> Ctx {
    Ctx::new(p(1), false)
}
fn bob() -> Ctx {
    Ctx::new(p(2), false)
}
fn anon() -> Ctx {
    Ctx::new(Principal::anonymous(), false)
}
fn admin_ctx() -> Ctx {
    Ctx::new(admin(), false)
}
fn controller_ctx() -> Ctx {
    Ctx::new(p(91), true)
}

/// The test callers are exempt from fees (as people calling directly must be); the fee tests
/// use their own configuration.
fn config() -> ServiceConfig {
    ServiceConfig {
        admins: vec![admin()],
        ledgers: vec![LedgerConfig {
            ledger: ledger(),
            fee: Some(10u64.into()),
            tx_window_ns: DAY,
        }],
        fee_exempt: vec![p(1), p(2), p(3)],
        ..crate::config::default_config()
    }
}

struct World {
    rt: FakeRuntime,
    raw: VectorMemory,
    svc: Rc<Svc>,
}

fn open(
    rt: &FakeRuntime,
    raw: &VectorMemory,
    arg: Option<ServiceConfig>,
) -> Result<Rc<Svc>, String> {
    let mm = MemoryManager::init(raw.clone());
    Service::open(
        rt.clone(),
        mm.get(MemoryId::new(crate::STATE_MEMORY_ID)),
        Memories::from_manager(&mm, crate::FIRST_ENGINE_MEMORY_ID),
        arg,
    )
}

fn world_with(cfg: ServiceConfig) -> World {
    let rt = FakeRuntime::new(me(), NOW);
    let raw = VectorMemory::default();
    let svc = open(&rt, &raw, Some(cfg)).unwrap();
    World { rt, raw, svc }
}

fn world() -> World {
    world_with(config())
}

fn record(w: &World, ctx: &Ctx, lock: Option<&str>) -> Result<u64, ServiceError> {
    w.svc.record_intent(
        ctx,
        RecordIntentArgs {
            label: "step".into(),
            payload: b"payload".to_vec(),
            lock_key: lock.map(String::from),
            idempotency_key: None,
        },
    )
}

fn acct(o: Principal) -> Account {
    Account {
        owner: o,
        subaccount: None,
    }
}

fn pull(from: Principal, amount: u64) -> TransferSpec {
    TransferSpec::Icrc2 {
        ledger: ledger(),
        spender_subaccount: None,
        from: acct(from),
        to: acct(p(50)),
        amount: amount.into(),
        fee: None,
    }
}

/// Ledger answers `Ok(block)` to icrc2_transfer_from; the self-call commit answers `()`.
fn ledger_ok(block: u64) -> impl FnMut(&PendingCall) -> icjournal::CallResult {
    move |c: &PendingCall| {
        if c.method == "icjournal_commit" {
            assert_eq!(c.callee, me());
            Ok(candid::encode_args(()).unwrap())
        } else {
            assert_eq!(c.callee, ledger());
            assert_eq!(c.method, "icrc2_transfer_from");
            let r: Result<Nat, TransferFromError> = Ok(block.into());
            Ok(candid::encode_one(r).unwrap())
        }
    }
}

/// Advance the clock and run the timers that are due (the recovery tick, retention included).
fn tick_after(w: &World, ns: u64) {
    w.rt.advance(ns);
    for t in w.rt.take_due_timers() {
        w.rt.run(t, |_| Ok(candid::encode_args(()).unwrap()));
    }
}

/// Alice reports her record `id` succeeded (no block).
fn report_succeeded(w: &World, id: u64) {
    w.svc
        .report_result(
            &alice(),
            ReportResultArgs {
                entry_id: id,
                result: ReportedResult::Succeeded {
                    block_index: None,
                    reply: vec![],
                },
            },
        )
        .unwrap();
}

fn journal_err(e: JournalError) -> Result<u64, ServiceError> {
    Err(ServiceError::Journal(e))
}

#[test]
fn anonymous_is_rejected_by_every_caller_and_operator_method() {
    let w = world();
    let a = anon();
    let anon_err = ServiceError::Journal(JournalError::AnonymousCaller);
    assert_eq!(record(&w, &a, None), Err(anon_err.clone()));
    assert_eq!(w.svc.get_entry(&a, 0).unwrap_err(), anon_err);
    assert_eq!(
        w.svc.list_entries(&a, ListArgs::default()).unwrap_err(),
        anon_err
    );
    assert_eq!(
        w.svc
            .list_unresolved(&a, PageRequest::default())
            .unwrap_err(),
        anon_err
    );
    assert_eq!(
        w.svc.list_failed(&a, PageRequest::default()).unwrap_err(),
        anon_err
    );
    assert_eq!(
        w.svc
            .report_result(
                &a,
                ReportResultArgs {
                    entry_id: 0,
                    result: ReportedResult::Unknown { message: "".into() }
                }
            )
            .unwrap_err(),
        anon_err
    );
    let req = TransferRequest {
        transfer: pull(Principal::anonymous(), 5),
        lock_key: None,
        idempotency_key: None,
    };
    assert_eq!(
        w.svc.submit_transfer(&a, req.clone()).unwrap_err(),
        anon_err
    );
    assert_eq!(
        w.rt.run(w.svc.execute_transfer(&a, req), ledger_ok(1))
            .unwrap_err(),
        anon_err
    );
    assert_eq!(
        w.svc.admin_list(&a, AdminListArgs::default()).unwrap_err(),
        anon_err
    );
    assert_eq!(w.svc.get_config(&a).unwrap_err(), anon_err);
    assert_eq!(w.svc.pause_recovery(&a, "r".into()).unwrap_err(), anon_err);
    assert_eq!(w.svc.metrics().entries_total, 0, "nothing was journaled");
}

#[test]
fn callers_see_only_their_own_entries_and_lock_keys() {
    let w = world();
    let a = record(&w, &alice(), Some("k")).unwrap();
    // Same lock key for another caller: its own namespace.
    let b = record(&w, &bob(), Some("k")).unwrap();
    assert_ne!(a, b);
    // Same caller, same key: I3.
    match record(&w, &alice(), Some("k")) {
        Err(ServiceError::Journal(JournalError::LockHeld { entry_id, .. })) => {
            assert_eq!(entry_id, a)
        }
        other => panic!("expected LockHeld, got {other:?}"),
    }
    assert_eq!(w.svc.get_entry(&alice(), a).unwrap().owner, p(1));
    assert_eq!(
        w.svc.get_entry(&bob(), a).unwrap_err(),
        ServiceError::Journal(JournalError::NotFound { entry_id: a })
    );
    let mine = w.svc.list_entries(&bob(), ListArgs::default()).unwrap();
    assert_eq!(mine.items.iter().map(|e| e.id).collect::<Vec<_>>(), vec![b]);
    // Bob cannot resolve Alice's record.
    assert!(w
        .svc
        .report_result(
            &bob(),
            ReportResultArgs {
                entry_id: a,
                result: ReportedResult::Failed {
                    message: "x".into()
                }
            }
        )
        .is_err());
    assert_eq!(
        w.svc.get_entry(&alice(), a).unwrap().status,
        Status::Pending
    );
}

#[test]
fn records_resolve_and_list_by_state() {
    let w = world();
    let a = record(&w, &alice(), None).unwrap();
    let b = record(&w, &alice(), None).unwrap();
    let c = record(&w, &alice(), None).unwrap();
    let report = |id, result| {
        w.svc.report_result(
            &alice(),
            ReportResultArgs {
                entry_id: id,
                result,
            },
        )
    };
    assert_eq!(
        report(
            a,
            ReportedResult::Succeeded {
                block_index: None,
                reply: b"ok".to_vec()
            }
        ),
        Ok(Status::Succeeded)
    );
    assert_eq!(
        report(
            b,
            ReportedResult::Failed {
                message: "no".into()
            }
        ),
        Ok(Status::Failed)
    );
    let failed = w.svc.list_failed(&alice(), PageRequest::default()).unwrap();
    assert_eq!(
        failed.items.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![b]
    );
    let open = w
        .svc
        .list_unresolved(&alice(), PageRequest::default())
        .unwrap();
    assert_eq!(open.items.iter().map(|e| e.id).collect::<Vec<_>>(), vec![c]);
    let by_status = w
        .svc
        .list_entries(
            &alice(),
            ListArgs {
                status: Some(Status::Succeeded),
                kind: Some(Kind::Record),
                page: PageRequest::default(),
            },
        )
        .unwrap();
    assert_eq!(by_status.items.len(), 1);
    // Paging: limit 1.
    let page = w
        .svc
        .list_entries(
            &alice(),
            ListArgs {
                page: PageRequest {
                    start_after: None,
                    limit: 1,
                },
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.next, Some(a));
}

#[test]
fn inputs_are_validated_before_any_work() {
    let w = world();
    let too_big = w.svc.record_intent(
        &alice(),
        RecordIntentArgs {
            label: "l".into(),
            payload: vec![0; config().max_payload_bytes as usize + 1],
            lock_key: None,
            idempotency_key: None,
        },
    );
    assert!(matches!(
        too_big,
        Err(ServiceError::Journal(JournalError::PayloadTooLarge { .. }))
    ));
    let long_key = record(&w, &alice(), Some(&"k".repeat(65)));
    assert!(matches!(
        long_key,
        Err(ServiceError::Journal(JournalError::PayloadTooLarge { .. }))
    ));
    assert_eq!(
        w.svc.record_intent(
            &alice(),
            RecordIntentArgs {
                label: "".into(),
                payload: vec![],
                lock_key: None,
                idempotency_key: None,
            }
        ),
        journal_err(JournalError::InvalidArgument {
            message: "label must not be empty".into()
        })
    );
    // Executed transfers: someone else's funds, an unknown ledger.
    let steal = w.svc.submit_transfer(
        &alice(),
        TransferRequest {
            transfer: pull(p(2), 5),
            lock_key: None,
            idempotency_key: None,
        },
    );
    assert!(matches!(steal, Err(ServiceError::FundsNotOwned { .. })));
    let other_ledger = w.svc.submit_transfer(
        &alice(),
        TransferRequest {
            transfer: TransferSpec::Icrc2 {
                ledger: p(101),
                spender_subaccount: None,
                from: acct(p(1)),
                to: acct(p(2)),
                amount: 1u64.into(),
                fee: None,
            },
            lock_key: None,
            idempotency_key: None,
        },
    );
    assert_eq!(
        other_ledger,
        Err(ServiceError::LedgerNotAllowed { ledger: p(101) })
    );
    // A saga whose compensation would draw from someone else.
    let saga = w.svc.submit_saga(
        &alice(),
        SagaRequest {
            steps: vec![SagaTransferStep {
                transfer: pull(p(1), 5),
                compensation: Some(pull(p(2), 5)),
            }],
            lock_key: None,
            idempotency_key: None,
        },
    );
    assert!(matches!(saga, Err(ServiceError::FundsNotOwned { .. })));
    let empty = w.svc.submit_saga(
        &alice(),
        SagaRequest {
            steps: vec![],
            lock_key: None,
            idempotency_key: None,
        },
    );
    assert!(matches!(
        empty,
        Err(ServiceError::Journal(JournalError::InvalidArgument { .. }))
    ));
    assert_eq!(w.svc.metrics().entries_total, 0, "nothing was journaled");
    assert!(w.rt.pending_calls().is_empty(), "no call was made");
}

/// Only the reply follows the result, so no `icjournal_commit` self-call (docs/design.md,
/// "When a commit is needed").
#[test]
fn executed_transfer_journals_and_sends_exact_args_without_a_commit() {
    let w = world();
    let mut sent: Vec<PendingCall> = vec![];
    let mut answer = ledger_ok(42);
    let r =
        w.rt.run(
            w.svc.execute_transfer(
                &alice(),
                TransferRequest {
                    transfer: pull(p(1), 1_000),
                    lock_key: Some("order-1".into()),
                    idempotency_key: None,
                },
            ),
            |c| {
                sent.push(c.clone());
                answer(c)
            },
        )
        .unwrap();
    assert_eq!(r.status, Status::Succeeded);
    assert!(matches!(
        r.outcome,
        Some(Outcome::Succeeded {
            block_index: Some(42),
            ..
        })
    ));
    assert_eq!(
        sent.iter().map(|c| c.method.as_str()).collect::<Vec<_>>(),
        vec!["icrc2_transfer_from"]
    );
    let (args,): (TransferFromArgs,) = candid::decode_args(&sent[0].arg).unwrap();
    assert_eq!(args.from, acct(p(1)));
    assert_eq!(args.fee, Some(Nat::from(10u64)), "configured fee filled in");
    assert_eq!(args.created_at_time, Some(NOW));
    assert_eq!(
        args.memo.unwrap().0.as_ref(),
        icjournal::memo::encode(r.entry_id).as_slice()
    );
    let e = w.svc.get_entry(&alice(), r.entry_id).unwrap();
    assert_eq!(e.kind, Kind::Icrc2TransferFrom);
    assert_eq!(w.svc.in_flight_total(), 0, "slot released");
}

#[test]
fn icrc1_transfers_from_the_escrow_and_sagas_run() {
    let w = world();
    let escrow = escrow_subaccount(p(1));
    let refund = TransferSpec::Icrc1 {
        ledger: ledger(),
        from_subaccount: escrow,
        to: acct(p(1)),
        amount: 990u64.into(),
        fee: None,
    };
    let collect = TransferSpec::Icrc2 {
        ledger: ledger(),
        spender_subaccount: None,
        from: acct(p(1)),
        to: crate::validate::escrow_account(me(), p(1)),
        amount: 1_000u64.into(),
        fee: None,
    };
    let r =
        w.rt.run(
            w.svc.execute_saga(
                &alice(),
                SagaRequest {
                    steps: vec![SagaTransferStep {
                        transfer: collect,
                        compensation: Some(refund),
                    }],
                    lock_key: None,
                    idempotency_key: None,
                },
            ),
            ledger_ok(7),
        )
        .unwrap();
    let saga = w.svc.get_entry(&alice(), r.entry_id).unwrap();
    assert_eq!(saga.kind, Kind::Saga);
    assert_eq!(r.status, Status::Succeeded, "{saga:?}");
}

#[test]
fn submit_returns_at_once_and_in_flight_is_capped() {
    let w = world_with(ServiceConfig {
        max_in_flight_per_caller: 1,
        max_in_flight_total: 2,
        ..config()
    });
    let req = |n| TransferRequest {
        transfer: pull(p(1), n),
        lock_key: None,
        idempotency_key: None,
    };
    let id = w.svc.submit_transfer(&alice(), req(1)).unwrap();
    assert_eq!(w.svc.in_flight_total(), 1);
    assert!(matches!(
        w.svc.submit_transfer(&alice(), req(2)),
        Err(ServiceError::Journal(JournalError::QuotaExceeded { .. }))
    ));
    // Another caller still has room.
    let bob_req = TransferRequest {
        transfer: pull(p(2), 3),
        lock_key: None,
        idempotency_key: None,
    };
    w.svc.submit_transfer(&bob(), bob_req).unwrap();
    // Run the spawned flows to completion.
    for task in w.rt.take_spawned() {
        w.rt.run(task, ledger_ok(3));
    }
    assert_eq!(w.svc.in_flight_total(), 0);
    assert_eq!(
        w.svc.get_entry(&alice(), id).unwrap().status,
        Status::Succeeded
    );
    w.svc.submit_transfer(&alice(), req(4)).unwrap();
}

#[test]
fn tracked_transfer_returns_memo_and_time_and_takes_a_result() {
    let w = world();
    let op = LedgerOp::Icrc1Transfer(TransferArg {
        from_subaccount: None,
        to: acct(p(2)),
        fee: None,
        created_at_time: None,
        memo: None,
        amount: 5u64.into(),
    });
    let t = w
        .svc
        .track_transfer(
            &alice(),
            TrackTransferArgs {
                ledger: ledger(),
                op: op.clone(),
                lock_key: None,
                idempotency_key: None,
            },
        )
        .unwrap();
    assert_eq!(t.created_at_time, NOW);
    assert_eq!(t.memo, icjournal::memo::encode(t.entry_id));
    let LedgerOp::Icrc1Transfer(sent) = &t.op else {
        panic!()
    };
    assert_eq!(sent.created_at_time, Some(NOW));
    assert!(w
        .svc
        .track_transfer(
            &alice(),
            TrackTransferArgs {
                ledger: p(101),
                op,
                lock_key: None,
                idempotency_key: None,
            }
        )
        .is_err());
    let s = w
        .svc
        .report_result(
            &alice(),
            ReportResultArgs {
                entry_id: t.entry_id,
                result: ReportedResult::Succeeded {
                    block_index: Some(9),
                    reply: vec![],
                },
            },
        )
        .unwrap();
    // A reported block is a claim: recorded, verified against the ledger by recovery.
    assert_eq!(s, Status::Unknown);
    let e = w.svc.get_entry(&alice(), t.entry_id).unwrap();
    assert_eq!(e.scan.and_then(|s| s.reported_block), Some(9));
}

#[test]
fn operator_endpoints_need_an_operator() {
    let w = world();
    let stranger = alice();
    let not_auth =
        |r: Result<(), ServiceError>| matches!(r, Err(ServiceError::NotAuthorized { .. }));
    assert!(not_auth(
        w.svc
            .admin_list(&stranger, AdminListArgs::default())
            .map(|_| ())
    ));
    assert!(not_auth(w.svc.admin_get_entry(&stranger, 0).map(|_| ())));
    assert!(not_auth(
        w.svc
            .admin_audit(
                &stranger,
                AuditArgs {
                    start_seq: 0,
                    limit: 10
                }
            )
            .map(|_| ())
    ));
    assert!(not_auth(w.svc.get_config(&stranger).map(|_| ())));
    assert!(not_auth(w.svc.set_config(
        &stranger,
        SetConfigArgs {
            config: config(),
            reason: "r".into()
        }
    )));
    assert!(not_auth(w.svc.pause_recovery(&stranger, "r".into())));
    assert!(not_auth(w.svc.resume_recovery(&stranger, "r".into())));
    assert!(not_auth(
        block_on(w.svc.admin_act(
            &stranger,
            AdminRequest {
                entry_id: 0,
                action: AdminAction::Cancel,
                reason: "r".into(),
                acknowledge_risk: None,
            }
        ))
        .map(|_| ())
    ));
    // Admins and controllers may.
    for ctx in [admin_ctx(), controller_ctx()] {
        assert!(w.svc.get_config(&ctx).is_ok());
        let id = record(&w, &alice(), None).unwrap();
        let e = w.svc.admin_get_entry(&ctx, id).unwrap();
        assert_eq!(e.owner, p(1));
        let all = w
            .svc
            .admin_list(
                &ctx,
                AdminListArgs {
                    filter: ListFilter {
                        owner: Some(p(1)),
                        ..Default::default()
                    },
                    page: PageRequest::default(),
                },
            )
            .unwrap();
        assert!(all.items.iter().any(|s| s.id == id));
        assert!(!w
            .svc
            .admin_audit(
                &ctx,
                AuditArgs {
                    start_seq: 0,
                    limit: 0
                }
            )
            .unwrap()
            .is_empty());
        // Verbs need a reason and act only on the manual queue.
        assert_eq!(
            block_on(w.svc.admin_act(
                &ctx,
                AdminRequest {
                    entry_id: id,
                    action: AdminAction::Cancel,
                    reason: " ".into(),
                    acknowledge_risk: None,
                }
            ))
            .unwrap_err(),
            ServiceError::Journal(JournalError::ReasonRequired)
        );
        assert!(matches!(
            block_on(w.svc.admin_act(
                &ctx,
                AdminRequest {
                    entry_id: id,
                    action: AdminAction::Cancel,
                    reason: "dup".into(),
                    acknowledge_risk: None,
                }
            )),
            Err(ServiceError::Journal(
                JournalError::NotInManualReview { .. }
            ))
        ));
    }
}

/// A record whose owner never reports is the owner's business: at its timeout it is closed in
/// the owner's failed list (its lock released), and the operators' queue stays empty.
#[test]
fn should_close_a_record_without_result_in_its_owner_failed_list() {
    let w = world();
    let id = record(&w, &alice(), Some("k")).unwrap();
    w.svc.start_recovery_timer();
    w.rt.advance(crate::config::engine_config(&config()).record_timeout_ns + 1);
    for t in w.rt.take_due_timers() {
        w.rt.run(t, |_| Ok(candid::encode_args(()).unwrap()));
    }
    let e = w.svc.get_entry(&alice(), id).unwrap();
    assert_eq!(e.status, Status::Failed, "{e:?}");
    let failed = w.svc.list_failed(&alice(), PageRequest::default()).unwrap();
    assert!(failed.items.iter().any(|s| s.id == id));
    assert_eq!(w.svc.metrics().manual_queue_depth, 0);
    // The lock is released.
    record(&w, &alice(), Some("k")).unwrap();
}

#[test]
fn pause_stops_recovery_ticks_and_everything_persists_across_reopen() {
    let w = world();
    w.svc.start_recovery_timer();
    let tick = |w: &World| {
        w.rt.advance(config().recovery_interval_ns);
        for t in w.rt.take_due_timers() {
            w.rt.run(t, |_| Ok(candid::encode_args(()).unwrap()));
        }
        w.svc.metrics().recovery_ticks
    };
    let t1 = tick(&w);
    assert!(t1 >= 1);
    w.svc
        .pause_recovery(&admin_ctx(), "ledger upgrade".into())
        .unwrap();
    assert_eq!(tick(&w), t1, "no tick while paused");
    assert_eq!(w.rt.armed_timers(), 1, "the chain stays armed");

    // Config change by an admin: validated, applied, persisted.
    let bad = SetConfigArgs {
        config: ServiceConfig {
            max_attempts: 0,
            ..config()
        },
        reason: "oops".into(),
    };
    assert!(matches!(
        w.svc.set_config(&admin_ctx(), bad),
        Err(ServiceError::InvalidConfig { .. })
    ));
    let newer = ServiceConfig {
        max_attempts: 7,
        ..config()
    };
    w.svc
        .set_config(
            &admin_ctx(),
            SetConfigArgs {
                config: newer.clone(),
                reason: "tune".into(),
            },
        )
        .unwrap();
    assert_eq!(w.svc.journal().config().max_attempts, 7);
    let id = record(&w, &alice(), None).unwrap();

    // "Upgrade": reopen on the same memory without an argument keeps config, pause, entries.
    w.rt.clear_timers();
    let svc2 = open(&w.rt, &w.raw, None).unwrap();
    assert_eq!(svc2.config(), newer);
    assert!(svc2.recovery_paused());
    assert_eq!(svc2.get_entry(&alice(), id).unwrap().id, id);
    svc2.start_recovery_timer();
    assert_eq!(
        w.rt.armed_timers(),
        2,
        "timer re-armed after upgrade (interval + a first tick at once)"
    );
    svc2.resume_recovery(&controller_ctx(), "done".into())
        .unwrap();
    // An upgrade argument replaces the config (validated).
    let svc3 = open(&w.rt, &w.raw, Some(config())).unwrap();
    assert_eq!(svc3.config(), config());
    assert!(!svc3.recovery_paused());
    // ... and is what the next upgrade without an argument finds (an upgrade that changes
    // nothing skips the write; one that changes the config must not).
    let svc4 = open(&w.rt, &w.raw, None).unwrap();
    assert_eq!(svc4.config(), config());
    assert!(!svc4.recovery_paused());
    assert!(open(
        &w.rt,
        &w.raw,
        Some(ServiceConfig {
            recovery_batch_size: 0,
            ..config()
        })
    )
    .unwrap_err()
    .contains("invalid configuration"));
}

#[test]
fn open_refuses_corrupt_state() {
    let rt = FakeRuntime::new(me(), NOW);
    let raw = VectorMemory::default();
    open(&rt, &raw, None).unwrap();
    let mm = MemoryManager::init(raw.clone());
    mm.get(MemoryId::new(crate::STATE_MEMORY_ID))
        .write(4, &99u32.to_le_bytes());
    let err = open(&rt, &raw, None).unwrap_err();
    assert!(err.contains("unsupported layout version 99"), "{err}");
}

#[test]
fn dashboard_data_is_bounded_and_oldest_first() {
    let w = world_with(ServiceConfig {
        max_attempts: 2,
        ..config()
    });
    w.svc.start_recovery_timer();
    // A transfer whose reply is lost and whose ledger then answers nothing: manual review.
    let reject = |c: &icjournal::PendingCall| {
        if c.method == "icjournal_commit" {
            Ok(candid::encode_args(()).unwrap())
        } else {
            Err(icjournal::CallError::Rejected {
                code: icjournal::RejectCode::SysTransient,
                message: "ledger unreachable".into(),
            })
        }
    };
    let r =
        w.rt.run(
            w.svc.execute_transfer(
                &alice(),
                TransferRequest {
                    transfer: pull(p(1), 77),
                    lock_key: None,
                    idempotency_key: None,
                },
            ),
            |c| {
                if c.method == "icjournal_commit" {
                    Ok(candid::encode_args(()).unwrap())
                } else {
                    Err(icjournal::CallError::Rejected {
                        code: icjournal::RejectCode::SysUnknown,
                        message: "timeout".into(),
                    })
                }
            },
        )
        .unwrap();
    assert_eq!(r.status, Status::Unknown);
    for _ in 0..50 {
        w.rt.advance(DAY);
        for t in w.rt.take_due_timers() {
            w.rt.run(t, reject);
        }
        if w.svc.get_entry(&alice(), r.entry_id).unwrap().status == Status::ManualReview {
            break;
        }
    }
    for _ in 0..30 {
        record(&w, &alice(), None).unwrap();
    }
    let now = icjournal::Runtime::now(&w.rt);
    let d = w.svc.dashboard(now);
    assert_eq!(d.canister_id, me());
    assert_eq!(d.manual_queue.len(), 1, "{d:?}");
    let e = &d.manual_queue[0];
    assert_eq!(e.id, r.entry_id);
    // Full entries: the reason, the time it went to manual review and the last attempt.
    assert!(e.manual_reason.is_some());
    assert!(crate::http::manual_since(e) > e.created_at);
    assert!(crate::http::last_attempt(e).is_some());
    // 30 pending records: only the oldest UNRESOLVED_ROWS are read.
    assert_eq!(d.unresolved.len(), crate::http::UNRESOLVED_ROWS as usize);
    assert_eq!(d.unresolved[0].id, r.entry_id + 1);
    assert!(d.unresolved.windows(2).all(|w| w[0].id < w[1].id));
    let html = crate::http::render_dashboard(&d);
    assert!(html.contains("1 needs an operator"), "{html}");
    assert!(html.contains(&format!("icjournal retry {} --reason", r.entry_id)));
}

#[test]
fn escrowed_payout_saga_refunds_when_the_payout_fails() {
    use icrc_ledger_types::icrc1::transfer::TransferError;
    let w = world();
    let escrow = crate::validate::escrow_account(me(), p(1));
    let collect = TransferSpec::Icrc2 {
        ledger: ledger(),
        spender_subaccount: None,
        from: acct(p(1)),
        to: escrow,
        amount: 1_000u64.into(),
        fee: None,
    };
    let refund = TransferSpec::Icrc1 {
        ledger: ledger(),
        from_subaccount: escrow.subaccount,
        to: acct(p(1)),
        amount: 990u64.into(),
        fee: None,
    };
    let payout = TransferSpec::Icrc1 {
        ledger: ledger(),
        from_subaccount: escrow.subaccount,
        to: acct(p(60)),
        amount: 5_000u64.into(),
        fee: None,
    };
    let mut methods = vec![];
    let r =
        w.rt.run(
            w.svc.execute_saga(
                &alice(),
                SagaRequest {
                    steps: vec![
                        SagaTransferStep {
                            transfer: collect,
                            compensation: Some(refund),
                        },
                        SagaTransferStep {
                            transfer: payout,
                            compensation: None,
                        },
                    ],
                    lock_key: Some("payout-1".into()),
                    idempotency_key: None,
                },
            ),
            |c| {
                let icrc1_calls = methods.iter().filter(|m| *m == "icrc1_transfer").count();
                methods.push(c.method.clone());
                match c.method.as_str() {
                    "icjournal_commit" => Ok(candid::encode_args(()).unwrap()),
                    "icrc2_transfer_from" => {
                        let r: Result<Nat, TransferFromError> = Ok(1u64.into());
                        Ok(candid::encode_one(r).unwrap())
                    }
                    "icrc1_transfer" if icrc1_calls == 0 => {
                        // The payout: not enough in escrow (definitive failure).
                        let r: Result<Nat, TransferError> = Err(TransferError::InsufficientFunds {
                            balance: 990u64.into(),
                        });
                        Ok(candid::encode_one(r).unwrap())
                    }
                    "icrc1_transfer" => {
                        let r: Result<Nat, TransferError> = Ok(2u64.into());
                        Ok(candid::encode_one(r).unwrap())
                    }
                    other => panic!("unexpected call {other}"),
                }
            },
        )
        .unwrap();
    let saga = w.svc.get_entry(&alice(), r.entry_id).unwrap();
    assert_eq!(r.status, Status::Compensated, "{saga:?}");
    assert_eq!(
        methods
            .iter()
            .filter(|m| *m != "icjournal_commit")
            .collect::<Vec<_>>(),
        vec!["icrc2_transfer_from", "icrc1_transfer", "icrc1_transfer"]
    );
    assert_eq!(w.svc.in_flight_total(), 0);
    // The lock is released once the saga is terminal.
    assert!(w
        .svc
        .list_unresolved(&alice(), PageRequest::default())
        .unwrap()
        .items
        .is_empty());
}

#[test]
fn unknown_outcome_is_reported_then_recovered_by_dedup_resend() {
    let w = world();
    w.svc.start_recovery_timer();
    let r =
        w.rt.run(
            w.svc.execute_transfer(
                &alice(),
                TransferRequest {
                    transfer: pull(p(1), 77),
                    lock_key: None,
                    idempotency_key: None,
                },
            ),
            |c| {
                if c.method == "icjournal_commit" {
                    Ok(candid::encode_args(()).unwrap())
                } else {
                    Err(icjournal::CallError::Rejected {
                        code: icjournal::RejectCode::SysUnknown,
                        message: "timeout".into(),
                    })
                }
            },
        )
        .unwrap();
    assert_eq!(r.status, Status::Unknown);
    assert_eq!(w.svc.in_flight_total(), 0);
    // Recovery resends the identical args; the ledger says Duplicate of block 12.
    let mut resent = None;
    for _ in 0..5 {
        w.rt.advance(config().recovery_interval_ns.max(3_600_000_000_000));
        for t in w.rt.take_due_timers() {
            w.rt.run(t, |c| {
                if c.method == "icjournal_commit" {
                    return Ok(candid::encode_args(()).unwrap());
                }
                let (args,): (TransferFromArgs,) = candid::decode_args(&c.arg).unwrap();
                resent = Some(args);
                let r: Result<Nat, TransferFromError> = Err(TransferFromError::Duplicate {
                    duplicate_of: 12u64.into(),
                });
                Ok(candid::encode_one(r).unwrap())
            });
        }
        if w.svc.get_entry(&alice(), r.entry_id).unwrap().status == Status::Succeeded {
            break;
        }
    }
    let e = w.svc.get_entry(&alice(), r.entry_id).unwrap();
    assert_eq!(e.status, Status::Succeeded, "{e:?}");
    assert_eq!(e.block_index(), Some(12));
    let resent = resent.expect("resent");
    assert_eq!(resent.created_at_time, Some(NOW), "identical args resent");
    assert_eq!(
        resent.memo.unwrap().0.as_ref(),
        icjournal::memo::encode(r.entry_id).as_slice()
    );
}

/// Callers pay for the work their entries cause: a call without the fee is refused before
/// anything is journaled; with it, exactly the fee is taken; exempt callers and operators pay
/// nothing.
#[test]
fn should_charge_the_fee_or_refuse_before_journaling() {
    let w = world_with(ServiceConfig {
        fee_exempt: vec![],
        ..config()
    });
    let args = || RecordIntentArgs {
        label: "l".into(),
        payload: vec![],
        lock_key: None,
        idempotency_key: None,
    };
    let fee = crate::config::DEFAULT_FEES.record_cycles;
    let poor = alice().with_cycles(fee as u128 - 1);
    assert_eq!(
        w.svc.record_intent(&poor, args()),
        Err(ServiceError::CyclesRequired {
            required: fee,
            attached: fee - 1
        })
    );
    assert_eq!(w.svc.metrics().entries_total, 0, "nothing journaled");
    assert_eq!(w.rt.accepted_cycles(), 0, "nothing taken");
    let paying = alice().with_cycles(10 * fee as u128);
    w.svc.record_intent(&paying, args()).unwrap();
    assert_eq!(w.rt.accepted_cycles(), fee as u128, "exactly the fee");
    // A retry with the same idempotency key pays nothing more.
    let keyed = || RecordIntentArgs {
        idempotency_key: Some("k".into()),
        ..args()
    };
    let a = w.svc.record_intent(&paying, keyed()).unwrap();
    let b = w.svc.record_intent(&paying, keyed()).unwrap();
    assert_eq!(a, b);
    assert_eq!(w.rt.accepted_cycles(), 2 * fee as u128);
    // Operators pay nothing.
    w.svc.record_intent(&admin_ctx(), args()).unwrap();
    assert_eq!(w.rt.accepted_cycles(), 2 * fee as u128);
}

/// `retention_ns` reaches the engine: a resolved record is compacted by the recovery timer;
/// reading it answers its summary (`Compacted`), and the same request again (same idempotency
/// key) answers the same entry without creating another.
#[test]
fn should_compact_resolved_entries_after_retention_and_answer_them_by_summary() {
    let w = world_with(ServiceConfig {
        retention_ns: Some(2 * DAY),
        ..config()
    });
    assert_eq!(
        crate::config::engine_config(&w.svc.config()).retention_ns,
        Some(2 * DAY)
    );
    let args = RecordIntentArgs {
        label: "step".into(),
        payload: b"payload".to_vec(),
        lock_key: None,
        idempotency_key: Some("once".into()),
    };
    let id = w.svc.record_intent(&alice(), args.clone()).unwrap();
    report_succeeded(&w, id);
    w.svc.start_recovery_timer();
    tick_after(&w, 3 * DAY);
    let compacted = |r: ServiceResult<_>| match r {
        Err(ServiceError::Journal(JournalError::Compacted { entry })) => entry,
        other => panic!("{other:?}"),
    };
    let s = compacted(w.svc.admin_get_entry(&admin_ctx(), id));
    assert_eq!((s.id, s.owner, s.status), (id, p(1), Status::Succeeded));
    assert_eq!(compacted(w.svc.get_entry(&alice(), id)), s);
    assert!(matches!(
        w.svc.get_entry(&bob(), id),
        Err(ServiceError::Journal(JournalError::NotFound { .. }))
    ));
    assert_eq!(w.svc.record_intent(&alice(), args), Ok(id));
    let m = w.svc.metrics();
    assert_eq!(m.entries_total, 1);
    assert_eq!(m.summaries, Some(1));
}

/// `summary_retention_ns` reaches the engine: a summary is pruned once the configured period
/// (2 days, not the default 90) has passed since compaction, and not before.
#[test]
fn should_prune_summaries_after_the_configured_summary_retention() {
    let w = world_with(ServiceConfig {
        retention_ns: Some(DAY),
        summary_retention_ns: Some(2 * DAY),
        ..config()
    });
    let id = record(&w, &alice(), None).unwrap();
    report_succeeded(&w, id);
    w.svc.start_recovery_timer();
    let minute = 60 * 1_000_000_000;
    tick_after(&w, DAY + minute);
    assert!(matches!(
        w.svc.get_entry(&alice(), id),
        Err(ServiceError::Journal(JournalError::Compacted { .. }))
    ));
    // One day after compaction: half the period, the summary is kept.
    tick_after(&w, DAY);
    assert!(matches!(
        w.svc.get_entry(&alice(), id),
        Err(ServiceError::Journal(JournalError::Compacted { .. }))
    ));
    assert_eq!(w.svc.metrics().summaries, Some(1));
    // Past the period: pruned, 88 days before the default would have pruned it.
    tick_after(&w, DAY + minute);
    assert_eq!(
        w.svc.get_entry(&alice(), id),
        Err(ServiceError::Journal(JournalError::Pruned { entry_id: id }))
    );
    let m = w.svc.metrics();
    assert_eq!((m.summaries, m.summaries_pruned), (Some(0), Some(1)));
}

/// A bad `summary_retention_ns` is refused by `set_config` with `InvalidConfig` naming the
/// field, and changes nothing (service or engine); a good one is applied to the engine and
/// persisted, and null goes back to the engine's default.
#[test]
fn should_validate_apply_and_persist_summary_retention_in_set_config() {
    let w = world_with(ServiceConfig {
        retention_ns: Some(DAY),
        summary_retention_ns: Some(7 * DAY),
        ..config()
    });
    let before = w.svc.config();
    assert_eq!(w.svc.journal().config().summary_retention_ns, Some(7 * DAY));
    // The error only (None: applied), so the closure does not return the large `Result`.
    let set = |keep: Option<u64>| {
        w.svc
            .set_config(
                &admin_ctx(),
                SetConfigArgs {
                    config: ServiceConfig {
                        summary_retention_ns: keep,
                        ..before.clone()
                    },
                    reason: "summary period".into(),
                },
            )
            .err()
    };
    for bad in [0, DAY - 1, u64::MAX] {
        match set(Some(bad)) {
            Some(ServiceError::InvalidConfig { message }) => {
                assert!(message.contains("summary_retention_ns"), "{bad}: {message}")
            }
            other => panic!("{bad}: expected InvalidConfig, got {other:?}"),
        }
        assert_eq!(w.svc.config(), before);
        assert_eq!(w.svc.journal().config().summary_retention_ns, Some(7 * DAY));
    }
    assert_eq!(set(Some(3 * DAY)), None);
    assert_eq!(w.svc.journal().config().summary_retention_ns, Some(3 * DAY));
    w.rt.clear_timers();
    let reopened = open(&w.rt, &w.raw, None).unwrap();
    assert_eq!(reopened.config().summary_retention_ns, Some(3 * DAY));
    assert_eq!(
        reopened.journal().config().summary_retention_ns,
        Some(3 * DAY)
    );
    assert_eq!(set(None), None);
    assert_eq!(
        w.svc.journal().config().summary_retention_ns,
        icjournal::Config::default().summary_retention_ns
    );
}
