//! Executed transfers: the service journals, sends `icrc2_transfer_from` / `icrc1_transfer`
//! itself, journals the result (no commit self-call: only the reply follows) and recovers
//! unknown outcomes.

use candid::Nat;
use ic_sim::RejectCode;
use icjournal::{
    AdminAction, AdminRequest, AdminResult, EvidenceSource, FailureReason, FlowResult, LedgerError,
    Outcome, Status,
};
use icjournal_client::{ClientError, ServiceError, TransferRequest};
use icjournal_tests::*;

const AMOUNT: u64 = 1_000_000;

fn exec(s: &Setup, who: candid::Principal, amount: u64) -> Result<FlowResult, ClientError> {
    run(s.client(who).execute_transfer(TransferRequest {
        transfer: s.icrc2_spec(who, acct(user(9)), amount),
        lock_key: None,
        idempotency_key: None,
    }))
}

fn source(e: &icjournal::Entry) -> Option<EvidenceSource> {
    match &e.outcome {
        Some(Outcome::Succeeded { source, .. }) | Some(Outcome::Failed { source, .. }) => {
            Some(*source)
        }
        None => None,
    }
}

fn failure(e: &icjournal::Entry) -> Option<FailureReason> {
    match &e.outcome {
        Some(Outcome::Failed { reason, .. }) => Some(reason.clone()),
        _ => None,
    }
}

#[test]
fn should_execute_icrc2_transfer_once_with_its_memo() {
    let s = Setup::new();
    s.approve_service(user(1), 10 * AMOUNT);
    let before = s.balance(acct(user(9)));
    let r = exec(&s, user(1), AMOUNT).unwrap();
    assert_eq!(r.status, Status::Succeeded, "{r:?}");
    let e = s.service_entry(r.entry_id);
    assert_eq!(source(&e), Some(EvidenceSource::Reply));
    let block = e.block_index().expect("block index");
    assert_eq!(s.balance(acct(user(9))), before + AMOUNT as u128);
    let b = &s.blocks()[block as usize];
    assert_eq!(
        b.memo.as_deref().and_then(icjournal::memo::decode),
        Some(r.entry_id)
    );
    let report = s.check_invariants();
    assert_eq!(report.succeeded, 1);
}

#[test]
fn should_execute_icrc1_transfer_from_the_callers_escrow() {
    let s = Setup::new();
    let escrow = s.escrow(user(2));
    s.simple_transfer(user(2), escrow, 5 * AMOUNT);
    let r = run(s.client(user(2)).execute_transfer(TransferRequest {
        transfer: s.icrc1_spec(user(2), acct(user(8)), AMOUNT),
        lock_key: Some("pay-8".into()),
        idempotency_key: None,
    }))
    .unwrap();
    assert_eq!(r.status, Status::Succeeded, "{r:?}");
    assert_eq!(
        s.balance(acct(user(8))),
        USER_FUNDS as u128 + AMOUNT as u128
    );
    // Another caller cannot spend user 2's escrow.
    let e = run(s.client(user(3)).execute_transfer(TransferRequest {
        transfer: s.icrc1_spec(user(2), acct(user(3)), AMOUNT),
        lock_key: None,
        idempotency_key: None,
    }))
    .unwrap_err();
    assert!(
        matches!(service_err(e), ServiceError::FundsNotOwned { .. }),
        "stranger drained an escrow"
    );
}

#[test]
fn should_fail_cleanly_on_definitive_ledger_errors() {
    let s = Setup::new();
    // InsufficientAllowance: no approval.
    let r = exec(&s, user(1), AMOUNT).unwrap();
    assert_eq!(r.status, Status::Failed);
    assert!(matches!(
        failure(&s.service_entry(r.entry_id)),
        Some(FailureReason::Ledger(
            LedgerError::InsufficientAllowance { .. }
        ))
    ));
    // InsufficientFunds: approved, but more than the balance.
    s.approve_service(user(1), u64::MAX / 2);
    let r = exec(&s, user(1), 2 * USER_FUNDS).unwrap();
    assert_eq!(r.status, Status::Failed);
    assert!(matches!(
        failure(&s.service_entry(r.entry_id)),
        Some(FailureReason::Ledger(LedgerError::InsufficientFunds { .. }))
    ));
    // BadFee: the configured fee differs from the ledger's.
    let mut cfg = Setup::service_config(&s.opts, s.ledger);
    cfg.ledgers[0].fee = Some(Nat::from(FEE + 1));
    run(s
        .admin_client()
        .set_config(icjournal_client::SetConfigArgs {
            config: cfg,
            reason: "fee change test".into(),
        }))
    .unwrap();
    let r = exec(&s, user(1), AMOUNT).unwrap();
    assert_eq!(r.status, Status::Failed);
    assert!(matches!(
        failure(&s.service_entry(r.entry_id)),
        Some(FailureReason::Ledger(LedgerError::BadFee { .. }))
    ));
    let report = s.check_invariants();
    assert_eq!(report.failed, 3);
    assert_eq!(report.succeeded, 0);
}

#[test]
fn should_retry_temporarily_unavailable_until_it_executes_once() {
    let s = Setup::new();
    s.approve_service(user(1), 10 * AMOUNT);
    s.ledger_unavailable_next(2);
    let r = exec(&s, user(1), AMOUNT).unwrap();
    assert_ne!(r.status, Status::Succeeded);
    assert_ne!(
        r.status,
        Status::Failed,
        "a transient error is not final: {r:?}"
    );
    s.settle(600);
    let e = s.service_entry(r.entry_id);
    assert_eq!(e.status, Status::Succeeded, "{e:?}");
    assert!(e.attempts >= 3, "attempts {}", e.attempts);
}

#[test]
fn should_fail_without_block_when_rejected_before_delivery() {
    let s = Setup::new();
    s.approve_service(user(1), 10 * AMOUNT);
    s.reject_next_ledger_call(s.service, "icrc2_transfer_from", RejectCode::SysTransient);
    let r = exec(&s, user(1), AMOUNT).unwrap();
    assert_eq!(r.status, Status::Failed, "{r:?}");
    assert!(matches!(
        failure(&s.service_entry(r.entry_id)),
        Some(FailureReason::NotDelivered { .. })
    ));
    // A CanisterReject before delivery is ambiguous to the caller: recovered by resend, which
    // executes it exactly once.
    s.reject_next_ledger_call(s.service, "icrc2_transfer_from", RejectCode::CanisterReject);
    let r = exec(&s, user(1), AMOUNT).unwrap();
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    s.settle(600);
    let e = s.service_entry(r.entry_id);
    assert_eq!(e.status, Status::Succeeded, "{e:?}");
    assert_eq!(source(&e), Some(EvidenceSource::DedupResend));
}

#[test]
fn should_recover_lost_response_by_deduplicated_resend() {
    let s = Setup::new();
    s.approve_service(user(1), 10 * AMOUNT);
    s.lose_next_ledger_response(s.service, "icrc2_transfer_from");
    let r = exec(&s, user(1), AMOUNT).unwrap();
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    // The ledger executed it: one block already.
    let blocks_before = s.blocks().len();
    s.settle(600);
    let e = s.service_entry(r.entry_id);
    assert_eq!(e.status, Status::Succeeded, "{e:?}");
    assert_eq!(source(&e), Some(EvidenceSource::DedupResend));
    assert_eq!(
        s.blocks().len(),
        blocks_before,
        "the resend executed a second time"
    );
    assert_eq!(s.balance(acct(user(9))), (USER_FUNDS + AMOUNT) as u128);
}

#[test]
fn should_recover_when_the_callback_traps_before_journaling_the_result() {
    let s = Setup::new();
    s.approve_service(user(1), 10 * AMOUNT);
    s.trap_nth_callback_after(s.service, "icrc2_transfer_from", 1, 1);
    let r = exec(&s, user(1), AMOUNT);
    // The ingress call fails (the callback trapped without replying).
    assert!(r.is_err(), "{r:?}");
    let id = s.service_entries().last().unwrap().id;
    assert_ne!(s.service_entry(id).status, Status::Succeeded);
    s.settle(600);
    let e = s.service_entry(id);
    assert_eq!(e.status, Status::Succeeded, "{e:?}");
    assert_eq!(s.balance(acct(user(9))), (USER_FUNDS + AMOUNT) as u128);
}

/// An executed transfer's flow ends with the reply, so the service does not commit its result
/// with a self-call (docs/design.md, "When a commit is needed"): one ledger call, two messages.
#[test]
fn should_reply_without_a_commit_self_call() {
    let s = Setup::new();
    s.approve_service(user(1), 10 * AMOUNT);
    // Let the recovery timer's first (empty) tick run, so that only the flow is traced.
    s.advance_secs(1);
    let start = s.sim().trace().len();
    let r = exec(&s, user(1), AMOUNT).unwrap();
    assert_eq!(r.status, Status::Succeeded, "{r:?}");
    assert_eq!(
        s.update_messages_since(s.service, start),
        vec![
            (
                ic_sim::MessageKind::Update,
                Some("execute_transfer".to_string())
            ),
            (ic_sim::MessageKind::ReplyCallback, None),
        ],
        "no icjournal_commit self-call"
    );
}

/// The case the commit used to cover: the ledger's callback journals the result, then traps
/// (here at its last System API call, the reply). The trap rolls the result back; the cleanup
/// marks the entry `Unknown`; recovery resends the identical args and the ledger's
/// `Duplicate { duplicate_of }` proves the same single execution.
#[test]
fn should_recover_exactly_when_trapping_after_the_result_was_journaled() {
    // Dry run on a twin deployment: the System API calls of the ledger's callback.
    let last_api_call = {
        let s = Setup::new();
        s.approve_service(user(1), 10 * AMOUNT);
        s.advance_secs(1);
        let start = s.sim().trace().len();
        exec(&s, user(1), AMOUNT).unwrap();
        let sim = s.sim();
        sim.trace()[start..]
            .iter()
            .find(|m| m.canister == s.service && m.kind == ic_sim::MessageKind::ReplyCallback)
            .expect("the ledger's callback")
            .api_calls
    };
    let s = Setup::new();
    s.approve_service(user(1), 10 * AMOUNT);
    s.trap_nth_callback_after(s.service, "icrc2_transfer_from", 1, last_api_call);
    let r = exec(&s, user(1), AMOUNT);
    assert!(r.is_err(), "the callback trapped before replying: {r:?}");
    let id = s.service_entries().last().unwrap().id;
    let e = s.service_entry(id);
    assert_eq!(
        e.status,
        Status::Unknown,
        "result rolled back, cleanup marked it: {e:?}"
    );
    let blocks = s.blocks().len();
    s.settle(600);
    let e = s.service_entry(id);
    assert_eq!(e.status, Status::Succeeded, "{e:?}");
    assert_eq!(source(&e), Some(EvidenceSource::DedupResend));
    assert_eq!(
        s.blocks().len(),
        blocks,
        "the resend executed a second time"
    );
    assert_eq!(s.balance(acct(user(9))), (USER_FUNDS + AMOUNT) as u128);
    assert_eq!(s.check_invariants().succeeded, 1);
}

/// Where the flow goes on after a result (a saga's next step), the next step's ledger call
/// commits it: a trap after that keeps it.
#[test]
fn should_keep_a_saga_steps_result_when_trapping_after_it_was_committed() {
    let s = Setup::new();
    s.approve_service(user(1), 10 * AMOUNT);
    // Callback 1: the ledger's reply to step 1 (result journaled, step 2's call made: the
    // message ends at its await); callback 2: the ledger's reply to step 2.
    s.trap_nth_callback_after(s.service, "icrc2_transfer_from", 2, 1);
    let r = run(s
        .client(user(1))
        .execute_saga(icjournal_client::SagaRequest {
            steps: vec![
                icjournal_client::SagaTransferStep {
                    transfer: s.icrc2_spec(user(1), acct(user(8)), AMOUNT),
                    compensation: None,
                },
                icjournal_client::SagaTransferStep {
                    transfer: s.icrc2_spec(user(1), acct(user(7)), AMOUNT),
                    compensation: None,
                },
            ],
            lock_key: None,
            idempotency_key: None,
        }));
    assert!(r.is_err(), "the saga's message trapped: {r:?}");
    let step1 = s
        .service_entries()
        .into_iter()
        .find(|e| e.parent.is_some())
        .expect("step 1 entry");
    assert_eq!(step1.status, Status::Succeeded, "{step1:?}");
    assert_eq!(source(&step1), Some(EvidenceSource::Reply));
    s.settle(600);
    assert_eq!(s.service_entry(step1.id).status, Status::Succeeded);
    assert_eq!(s.balance(acct(user(8))), (USER_FUNDS + AMOUNT) as u128);
}

#[test]
fn should_resume_recovery_after_an_upgrade_with_transfers_in_flight() {
    let s = Setup::new();
    s.approve_service(user(1), 100 * AMOUNT);
    s.approve_service(user(2), 100 * AMOUNT);
    // Two unknown outcomes (one executed, one not), then submitted transfers still queued.
    s.lose_next_ledger_response(s.service, "icrc2_transfer_from");
    let a = exec(&s, user(1), AMOUNT).unwrap();
    s.reject_next_ledger_call(s.service, "icrc2_transfer_from", RejectCode::CanisterError);
    let b = exec(&s, user(2), AMOUNT).unwrap();
    assert_eq!((a.status, b.status), (Status::Unknown, Status::Unknown));
    let c = s.client(user(1));
    let id3 = run(c.submit_transfer(TransferRequest {
        transfer: s.icrc2_spec(user(1), acct(user(7)), AMOUNT),
        lock_key: None,
        idempotency_key: None,
    }))
    .unwrap();
    // Stop (drains the in-flight calls), upgrade, start: timers are re-armed by post_upgrade.
    s.stop_upgrade_start_service();
    assert!(
        s.sim.borrow().global_timer(s.service).unwrap() != 0,
        "timer not re-armed"
    );
    s.settle(600);
    for id in [a.entry_id, b.entry_id, id3] {
        let e = s.service_entry(id);
        assert_eq!(e.status, Status::Succeeded, "{e:?}");
    }
}

#[test]
fn should_find_an_archived_transfer_by_memo_after_the_window() {
    let s = Setup::options().archive(10_000, 100).build();
    s.approve_service(user(1), 10 * AMOUNT);
    run(s
        .admin_client()
        .pause_recovery("wait past the window".into()))
    .unwrap();
    s.lose_next_ledger_response(s.service, "icrc2_transfer_from");
    let executed = exec(&s, user(1), AMOUNT).unwrap();
    s.reject_next_ledger_call(s.service, "icrc2_transfer_from", RejectCode::CanisterReject);
    let never = exec(&s, user(1), AMOUNT).unwrap();
    assert_eq!(
        (executed.status, never.status),
        (Status::Unknown, Status::Unknown)
    );
    // Move everything to the archive and let the dedup window pass.
    s.simple_transfer(user(3), acct(user(4)), 1);
    assert!(s.archive_now() > 0);
    s.advance_secs(25 * 3600);
    s.simple_transfer(user(3), acct(user(4)), 1);
    run(s.admin_client().resume_recovery("go".into())).unwrap();
    s.settle(600);
    let e = s.service_entry(executed.entry_id);
    assert_eq!(e.status, Status::Succeeded, "{e:?}");
    assert_eq!(source(&e), Some(EvidenceSource::MemoLookup));
    let blocks = s.blocks();
    assert!(blocks[e.block_index().unwrap() as usize].archived);
    let n = s.service_entry(never.entry_id);
    assert_eq!(n.status, Status::Failed, "{n:?}");
    assert!(matches!(
        failure(&n),
        Some(FailureReason::NotFoundAfterWindow { .. })
    ));
    let report = s.check_invariants();
    assert!(report.archived_blocks > 0);
}

#[test]
fn should_send_to_manual_review_and_let_an_admin_resolve() {
    let s = Setup::options().max_attempts(3).build();
    s.approve_service(user(1), 10 * AMOUNT);
    // The ledger traps on every transfer: CanisterError, unknown outcome, resends trap too.
    s.ledger_trap(true);
    let a = exec(&s, user(1), AMOUNT).unwrap();
    let b = exec(&s, user(1), 2 * AMOUNT).unwrap();
    s.settle(3600);
    let queue = s.service_manual_queue();
    assert!(queue.iter().any(|e| e.id == a.entry_id), "{queue:?}");
    assert!(queue.iter().any(|e| e.id == b.entry_id), "{queue:?}");
    assert!(s.service_entry(a.entry_id).manual_reason.is_some());
    s.ledger_trap(false);
    let ops = s.admin_client();
    // A stranger and the owner cannot resolve.
    for who in [stranger(), user(1)] {
        let e = run(s.client(who).admin_act(AdminRequest {
            entry_id: a.entry_id,
            action: AdminAction::Retry,
            reason: "x".into(),
            acknowledge_risk: None,
        }))
        .unwrap_err();
        assert!(is_refused(&e), "{e:?}");
    }
    // A reason is required.
    let e = run(ops.admin_act(AdminRequest {
        entry_id: a.entry_id,
        action: AdminAction::Retry,
        reason: " ".into(),
        acknowledge_risk: None,
    }))
    .unwrap_err();
    assert!(matches!(
        service_err(e),
        ServiceError::Journal(icjournal::JournalError::ReasonRequired)
    ));
    // Retry: recovery resends and the transfer executes once.
    let r = run(ops.admin_act(AdminRequest {
        entry_id: a.entry_id,
        action: AdminAction::Retry,
        reason: "ledger fixed".into(),
        acknowledge_risk: None,
    }))
    .unwrap();
    assert!(matches!(r, AdminResult::Applied { .. }));
    // Resolve as failed: the operator asserts it never executed (true: the ledger trapped).
    // Inside the dedup window the ledger could still execute it: the operator must say so.
    let e = run(ops.admin_act(AdminRequest {
        entry_id: b.entry_id,
        action: AdminAction::ResolveFailed,
        reason: "ledger trapped on every attempt".into(),
        acknowledge_risk: None,
    }))
    .unwrap_err();
    assert!(
        matches!(
            service_err(e),
            ServiceError::Journal(icjournal::JournalError::WindowStillOpen { .. })
        ),
        "closing a transfer inside its window needs the acknowledgment"
    );
    let r = run(ops.admin_act(AdminRequest {
        entry_id: b.entry_id,
        action: AdminAction::ResolveFailed,
        reason: "ledger trapped on every attempt".into(),
        acknowledge_risk: Some(true),
    }))
    .unwrap();
    assert!(
        matches!(
            r,
            AdminResult::Applied {
                status: Status::Failed,
                ..
            }
        ),
        "{r:?}"
    );
    s.settle(600);
    assert_eq!(s.service_entry(a.entry_id).status, Status::Succeeded);
    assert_eq!(s.service_entry(b.entry_id).status, Status::Failed);
    // Audited with actor and reason.
    let audit = run(ops.admin_audit(icjournal_client::AuditArgs {
        start_seq: 0,
        limit: 100,
    }))
    .unwrap();
    assert!(audit.iter().any(|r| r.entry_id == b.entry_id
        && r.actor == Some(admin())
        && matches!(&r.event, icjournal::AuditEvent::AdminAction { reason, .. } if reason.contains("trapped"))));
    // Terminal entries are final: admin verbs refuse them (I4).
    let e = run(ops.admin_act(AdminRequest {
        entry_id: a.entry_id,
        action: AdminAction::ResolveFailed,
        reason: "try to flip".into(),
        acknowledge_risk: None,
    }))
    .unwrap_err();
    assert!(matches!(
        service_err(e),
        ServiceError::Journal(icjournal::JournalError::NotInManualReview { .. })
    ));
}

#[test]
fn should_resolve_succeeded_with_block_evidence() {
    let s = Setup::options()
        .max_attempts(2)
        .archive(10_000, 100)
        .build();
    s.approve_service(user(1), 10 * AMOUNT);
    run(s.admin_client().pause_recovery("hold".into())).unwrap();
    s.lose_next_ledger_response(s.service, "icrc2_transfer_from");
    let a = exec(&s, user(1), AMOUNT).unwrap();
    assert_eq!(a.status, Status::Unknown);
    // Window passes and the archive is unreadable: undecided, attempts run out.
    s.simple_transfer(user(3), acct(user(4)), 1);
    s.archive_now();
    s.set_archive_unavailable(true);
    s.advance_secs(25 * 3600);
    run(s.admin_client().resume_recovery("go".into())).unwrap();
    s.settle(3600);
    let e = s.service_entry(a.entry_id);
    assert_eq!(e.status, Status::ManualReview, "{e:?}");
    // The operator finds the block (memo) and resolves with it as evidence.
    s.set_archive_unavailable(false);
    let block = s
        .blocks()
        .iter()
        .find(|b| b.memo.as_deref().and_then(icjournal::memo::decode) == Some(a.entry_id))
        .unwrap()
        .index;
    let r = run(s.admin_client().admin_act(AdminRequest {
        entry_id: a.entry_id,
        action: AdminAction::ResolveSucceeded {
            block_index: Some(block),
        },
        reason: "block found by memo in the archive".into(),
        acknowledge_risk: None,
    }))
    .unwrap();
    assert!(
        matches!(
            r,
            AdminResult::Applied {
                status: Status::Succeeded,
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(s.service_entry(a.entry_id).block_index(), Some(block));
}

#[test]
fn should_recover_an_icrc1_escrow_transfer_with_a_lost_response() {
    let s = Setup::new();
    let escrow = s.escrow(user(2));
    s.simple_transfer(user(2), escrow, 5 * AMOUNT);
    s.lose_next_ledger_response(s.service, "icrc1_transfer");
    let r = run(s.client(user(2)).execute_transfer(TransferRequest {
        transfer: s.icrc1_spec(user(2), acct(user(8)), AMOUNT),
        lock_key: None,
        idempotency_key: None,
    }))
    .unwrap();
    assert_eq!(r.status, Status::Unknown, "{r:?}");
    s.settle(600);
    let e = s.service_entry(r.entry_id);
    assert_eq!(e.status, Status::Succeeded, "{e:?}");
    assert_eq!(source(&e), Some(EvidenceSource::DedupResend));
    assert_eq!(s.balance(acct(user(8))), (USER_FUNDS + AMOUNT) as u128);
    // Escrow paid amount + fee exactly once.
    assert_eq!(s.balance(escrow), (4 * AMOUNT - FEE) as u128);
}

#[test]
fn should_refuse_an_upgrade_without_stop_while_a_transfer_is_in_flight() {
    let s = Setup::new();
    s.approve_service(user(1), 10 * AMOUNT);
    let arg = candid::encode_one(TransferRequest {
        transfer: s.icrc2_spec(user(1), acct(user(9)), AMOUNT),
        lock_key: None,
        idempotency_key: None,
    })
    .unwrap();
    let msg = s
        .sim()
        .submit_call(s.service, user(1), "execute_transfer", arg);
    // Run until the ledger executed the transfer; its reply is still queued.
    while !s
        .sim
        .borrow()
        .trace()
        .iter()
        .any(|r| r.canister == s.ledger && r.method.as_deref() == Some("icrc2_transfer_from"))
    {
        assert!(s.sim().step(), "the ledger call never ran");
    }
    // The operator upgrades without stopping first. Were it allowed, the reply would run the
    // old module's callback in the new one with a pointer into the old heap (the campaign's
    // long run found the heap corrupted that way). `pre_upgrade` refuses instead.
    let r = s.upgrade_service(None);
    match &r {
        Err(ic_sim::SimError::Trapped { message, .. }) => {
            assert!(message.contains("upgrade refused"), "{message}");
            assert!(message.contains("stop it first"), "{message}");
        }
        other => panic!("an unstopped upgrade must be refused: {other:?}"),
    }
    // The old module kept running: the reply reaches its callback and the flow ends normally.
    s.tick();
    assert!(s.sim.borrow().call_result(msg).unwrap().is_ok());
    let id = s.service_entries()[0].id;
    let e = s.service_entry(id);
    assert_eq!(e.status, Status::Succeeded, "{e:?}");
    assert_eq!(source(&e), Some(EvidenceSource::Reply));
    assert_eq!(s.balance(acct(user(9))), (USER_FUNDS + AMOUNT) as u128);
    // Idle and running is refused too (a timer's self-call may be in flight unseen); stopped
    // is not.
    assert!(s.upgrade_service(None).is_err());
    s.stop_upgrade_start_service();
    assert_eq!(s.service_entry(id).status, Status::Succeeded);
}
