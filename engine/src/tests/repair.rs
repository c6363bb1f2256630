//! Results change only on evidence, operators cannot be outvoted by former operators, and
//! nothing waits forever outside the operators' view: reports, operator verbs and sagas in
//! repair.

use super::harness::*;
use crate::types::*;
use crate::{Config, JournalError, LocalHandler, SagaStepSpec};
use candid::{Nat, Principal};
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::TransferArg;
use std::rc::Rc;

const DAY: u64 = 24 * HOUR;

fn req(id: EntryId, action: AdminAction) -> AdminRequest {
    AdminRequest {
        entry_id: id,
        action,
        reason: "checked the ledger".into(),
        acknowledge_risk: None,
    }
}

/// A transfer the engine could not decide, in manual review, that never executed.
fn manual_transfer(h: &mut Harness) -> EntryId {
    h.ledger.unavailable = h.journal.config().max_attempts + 1;
    let r = h
        .transfer(user(1), h.icrc1(5), Some("pay-1".into()))
        .unwrap()
        .unwrap();
    h.settle();
    assert_eq!(
        h.journal.get(r.entry_id).unwrap().status,
        Status::ManualReview
    );
    r.entry_id
}

/// A transfer the ledger executed at the returned block while the engine never learned it
/// (every reply lost, then the ledger unavailable until attempts ran out): in manual review.
fn executed_in_manual_review(h: &mut Harness) -> (EntryId, u64) {
    for _ in 0..3 {
        h.faults.push_back(Fault::LoseResponse);
    }
    h.ledger.unavailable = 0;
    let r = h.transfer(user(1), h.icrc1(5), None).unwrap().unwrap();
    let block = h.ledger.blocks_for_entry(r.entry_id)[0];
    let mut c = cfg();
    c.max_attempts = 1;
    h.journal.set_config(c).unwrap();
    h.ledger.unavailable = 100;
    h.settle();
    let id = r.entry_id;
    assert_eq!(h.journal.get(id).unwrap().status, Status::ManualReview);
    (id, block)
}

fn cfg() -> Config {
    Config {
        max_attempts: 2,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Reports (B16, B5)
// ---------------------------------------------------------------------------------------------

/// A lost reply makes the owner report again: the same report is answered with the status,
/// not refused.
#[test]
fn should_answer_a_repeated_report_with_the_same_status() {
    let h = Harness::new(Config::default());
    let a = h
        .journal
        .record_intent(user(1), "a".into(), vec![], None)
        .unwrap();
    let ok = ReportedResult::Succeeded {
        block_index: None,
        reply: vec![1],
    };
    assert_eq!(
        h.journal.report_result(user(1), a, ok.clone()),
        Ok(Status::Succeeded)
    );
    assert_eq!(
        h.journal.report_result(user(1), a, ok),
        Ok(Status::Succeeded)
    );
    let b = h
        .journal
        .record_intent(user(1), "b".into(), vec![], None)
        .unwrap();
    let failed = ReportedResult::Failed {
        message: "out of stock".into(),
    };
    assert_eq!(
        h.journal.report_result(user(1), b, failed.clone()),
        Ok(Status::Failed)
    );
    assert_eq!(
        h.journal.report_result(user(1), b, failed),
        Ok(Status::Failed)
    );
}

#[test]
fn should_refuse_a_report_that_contradicts_the_recorded_result() {
    let h = Harness::new(Config::default());
    let a = h
        .journal
        .record_intent(user(1), "a".into(), vec![], None)
        .unwrap();
    let ok = ReportedResult::Succeeded {
        block_index: None,
        reply: vec![1],
    };
    h.journal.report_result(user(1), a, ok).unwrap();
    let other = ReportedResult::Succeeded {
        block_index: None,
        reply: vec![2],
    };
    assert_eq!(
        h.journal.report_result(user(1), a, other),
        Err(JournalError::AlreadyReported {
            entry_id: a,
            status: Status::Succeeded
        })
    );
    assert_eq!(
        h.journal.get(a).unwrap().outcome.unwrap(),
        Outcome::Succeeded {
            block_index: None,
            reply: vec![1],
            source: EvidenceSource::Host
        }
    );
}

fn tracked(h: &mut Harness, owner: Principal) -> (EntryId, TransferIntent) {
    h.ledger.balances.insert(Account::from(owner), 1_000);
    let op = LedgerOp::Icrc1Transfer(TransferArg {
        from_subaccount: None,
        to: Account::from(user(3)),
        fee: None,
        created_at_time: None,
        memo: None,
        amount: Nat::from(5u8),
    });
    h.journal
        .track_transfer(owner, h.ledger.id, op, None)
        .unwrap()
}

/// An owner's "succeeded at block N" is a claim, not proof: block 0 here is a mint that has
/// nothing to do with the transfer, which never executed. The entry must not become
/// `Succeeded` on the owner's word; recovery reads the block, rejects it, and proves the
/// transfer absent once its window has closed.
#[test]
fn should_not_record_a_tracked_success_on_the_owner_word_alone() {
    let mut h = Harness::new(Config::default());
    h.ledger.push_noise(T0 - HOUR, None);
    let owner = user(50);
    let (id, _) = tracked(&mut h, owner);
    let s = h
        .journal
        .report_result(
            owner,
            id,
            ReportedResult::Succeeded {
                block_index: Some(0),
                reply: vec![],
            },
        )
        .unwrap();
    assert_eq!(s, Status::Unknown, "reported, not yet verified");
    h.ledger.push_noise(T0 + DAY + 3 * HOUR, None);
    h.rt.advance(DAY + 2 * HOUR);
    h.settle();
    let e = h.journal.get(id).unwrap();
    assert_eq!(e.status, Status::Failed, "{e:#?}");
}

#[test]
fn should_record_a_tracked_success_once_the_reported_block_holds_the_transfer() {
    let mut h = Harness::new(Config::default());
    let owner = user(50);
    let (id, intent) = tracked(&mut h, owner);
    let LedgerOp::Icrc1Transfer(arg) = intent.op.clone() else {
        panic!()
    };
    let now = h.rt.now_for_test();
    let reply = h
        .ledger
        .handle(
            owner,
            h.ledger.id,
            "icrc1_transfer",
            &candid::encode_one(&arg).unwrap(),
            now,
        )
        .unwrap()
        .unwrap();
    let block: Result<Nat, icrc_ledger_types::icrc1::transfer::TransferError> =
        candid::decode_one(&reply).unwrap();
    let block: u64 = block.unwrap().0.try_into().unwrap();
    let report = ReportedResult::Succeeded {
        block_index: Some(block),
        reply: vec![],
    };
    assert_eq!(
        h.journal.report_result(owner, id, report.clone()),
        Ok(Status::Unknown)
    );
    assert_eq!(
        h.journal.report_result(owner, id, report.clone()),
        Ok(Status::Unknown)
    );
    h.tick();
    let e = h.journal.get(id).unwrap();
    assert_eq!(
        (e.status, e.block_index()),
        (Status::Succeeded, Some(block))
    );
    assert_eq!(
        h.journal.report_result(owner, id, report),
        Ok(Status::Succeeded)
    );
}

/// `ResolveSucceeded` with a block that is not this transfer (here the first block, a mint).
#[test]
fn should_refuse_resolve_succeeded_with_a_block_that_is_not_the_transfer() {
    let mut h = Harness::new(cfg());
    h.ledger.push_noise(T0 - HOUR, None);
    let id = manual_transfer(&mut h);
    let r = h.admin(
        user(77),
        req(
            id,
            AdminAction::ResolveSucceeded {
                block_index: Some(0),
            },
        ),
    );
    assert!(
        matches!(
            r,
            Err(JournalError::EvidenceMismatch { block_index: 0, .. })
        ),
        "{r:?}"
    );
    assert_eq!(h.journal.get(id).unwrap().status, Status::ManualReview);
}

#[test]
fn should_refuse_resolve_succeeded_while_the_ledger_cannot_be_read() {
    let mut h = Harness::new(cfg());
    let id = manual_transfer(&mut h);
    h.ledger.no_block_access = true;
    let r = h.admin(
        user(77),
        req(
            id,
            AdminAction::ResolveSucceeded {
                block_index: Some(0),
            },
        ),
    );
    assert!(
        matches!(r, Err(JournalError::EvidenceUnverifiable { .. })),
        "{r:?}"
    );
    assert_eq!(h.journal.get(id).unwrap().status, Status::ManualReview);
}

#[test]
fn should_accept_resolve_succeeded_with_the_block_that_holds_the_transfer_once() {
    let mut h = Harness::new(cfg());
    // Executed, but the engine never learned it (every reply lost).
    let (id, block) = executed_in_manual_review(&mut h);
    let a = h
        .admin(
            user(77),
            req(
                id,
                AdminAction::ResolveSucceeded {
                    block_index: Some(block),
                },
            ),
        )
        .unwrap();
    assert!(matches!(
        a,
        AdminResult::Applied {
            status: Status::Succeeded,
            ..
        }
    ));
    // The block now proves this entry: it can prove no other.
    h.ledger.unavailable = 100;
    let other = manual_transfer(&mut h);
    let r = h.admin(
        user(77),
        req(
            other,
            AdminAction::ResolveSucceeded {
                block_index: Some(block),
            },
        ),
    );
    assert!(
        matches!(&r, Err(JournalError::EvidenceMismatch { message, .. }) if message.contains(&format!("entry {id}"))),
        "{r:?}"
    );
}

/// The operator's evidence is read from the ledger (an await) before anything is written. If
/// another entry claims the block while the ledger is read, the resolution is refused after
/// the await: the block keeps proving the entry that claimed it, and no other.
#[test]
fn should_refuse_resolve_succeeded_when_another_entry_claims_the_block_during_the_ledger_read() {
    let mut h = Harness::new(cfg());
    let (id, block) = executed_in_manual_review(&mut h);
    // Another transfer whose reply was lost: undecided, not yet in manual review.
    h.ledger.unavailable = 0;
    h.faults.push_back(Fault::LoseResponse);
    let other = h.transfer(user(2), h.icrc1(6), None).unwrap().unwrap();
    assert_eq!(other.status, Status::Unknown);
    let other = other.entry_id;

    let j = h.journal.clone();
    let action = AdminAction::ResolveSucceeded {
        block_index: Some(block),
    };
    let mut verb: std::pin::Pin<Box<dyn std::future::Future<Output = _>>> =
        Box::pin(async move { j.admin(user(77), req(id, action), |_| true).await });
    assert!(crate::runtime::FakeRuntime::poll_once(&mut verb).is_pending());
    assert!(
        !h.rt.pending_calls().is_empty(),
        "the verb waits on the ledger read"
    );
    // Another message decides the other entry with the same block meanwhile.
    h.journal
        .apply_success(other, block, EvidenceSource::MemoLookup, None);
    assert_eq!(h.journal.get(other).unwrap().status, Status::Succeeded);
    let ledger = h.ledger.id;
    let r = h.drive(verb).expect("an operator verb does not trap");
    assert!(
        matches!(&r, Err(JournalError::EvidenceMismatch { message, .. }) if message.contains(&format!("entry {other}"))),
        "{r:?}"
    );
    assert_eq!(h.journal.get(id).unwrap().status, Status::ManualReview);
    assert_eq!(
        h.journal.inner.store.borrow().claimant(ledger, block),
        Some(other)
    );
    let violations = h.journal.inner.store.borrow().index_violations();
    assert!(violations.is_empty(), "{violations:?}");
}

/// One block proves one entry. A decision that another entry's block holds this transfer
/// (a forged or repeated memo) sends it to manual review, and the refused write changes
/// nothing in stable memory: no claim taken over, no status, no audit record.
#[test]
fn should_send_a_transfer_to_manual_review_when_its_block_already_proves_another_entry() {
    let mut h = Harness::new(cfg());
    let (a, block, b) = succeeded_and_unknown(&mut h);
    let ledger = h.ledger.id;

    // The store refuses the write and leaves every byte as it was.
    assert_block_refused(&h, b, block, a);

    // The engine's decision goes to manual review instead.
    let audit_before = h.journal.audit(0, 1000).len();
    h.journal
        .apply_success(b, block, EvidenceSource::MemoLookup, None);
    let e = h.journal.get(b).unwrap();
    assert_eq!(e.status, Status::ManualReview);
    assert!(
        e.manual_reason
            .as_deref()
            .is_some_and(|r| r.contains(&format!("already proves entry {}", a))
                && r.contains("one block cannot prove two entries")),
        "{:?}",
        e.manual_reason
    );
    let audit = h.journal.audit(0, 1000);
    assert_eq!(
        audit.len(),
        audit_before + 1,
        "only the move to manual review"
    );
    assert!(matches!(
        &audit[audit_before].event,
        AuditEvent::StatusChanged {
            to: Status::ManualReview,
            ..
        }
    ));
    assert_eq!(
        h.journal.inner.store.borrow().claimant(ledger, block),
        Some(a)
    );
    let violations = h.journal.inner.store.borrow().index_violations();
    assert!(violations.is_empty(), "{violations:?}");
}

// ---------------------------------------------------------------------------------------------
// Approvals (B6)
// ---------------------------------------------------------------------------------------------

fn two_of_n() -> Config {
    Config {
        approvals_required: 2,
        ..cfg()
    }
}

/// An approval counts only while its approver is still an operator.
#[test]
fn should_not_count_the_approval_of_a_removed_operator() {
    let mut h = Harness::new(two_of_n());
    let id = manual_transfer(&mut h);
    let mut r = req(id, AdminAction::ResolveFailed);
    r.acknowledge_risk = Some(true);
    let ops = |v: &[u8]| Some(v.iter().map(|n| user(*n)).collect::<Vec<_>>());
    let a = h.admin_among(user(70), r.clone(), ops(&[70, 71])).unwrap();
    assert!(matches!(
        a,
        AdminResult::ApprovalRecorded {
            have: 1,
            need: 2,
            ..
        }
    ));
    // 70 is removed; 71's approval is the first that counts.
    let b = h.admin_among(user(71), r.clone(), ops(&[71, 72])).unwrap();
    assert!(
        matches!(
            b,
            AdminResult::ApprovalRecorded {
                have: 1,
                need: 2,
                ..
            }
        ),
        "{b:?}"
    );
    assert_eq!(h.journal.get(id).unwrap().status, Status::ManualReview);
    assert!(h.journal.audit(0, 100).iter().any(|a| a.event
        == AuditEvent::ApprovalsExpired {
            dropped: vec![user(70)]
        }));
    let c = h.admin_among(user(72), r, ops(&[71, 72])).unwrap();
    assert!(matches!(
        c,
        AdminResult::Applied {
            status: Status::Failed,
            ..
        }
    ));
}

/// Proposing a different action drops the earlier approvals — in the audit trail, not silently.
#[test]
fn should_audit_approvals_dropped_by_a_different_proposal() {
    let mut h = Harness::new(two_of_n());
    let id = manual_transfer(&mut h);
    let mut failed = req(id, AdminAction::ResolveFailed);
    failed.acknowledge_risk = Some(true);
    h.admin(user(70), failed).unwrap();
    let mut cancel = req(id, AdminAction::Cancel);
    cancel.acknowledge_risk = Some(true);
    let r = h.admin(user(71), cancel).unwrap();
    assert!(matches!(r, AdminResult::ApprovalRecorded { have: 1, .. }));
    assert!(h.journal.audit(0, 100).iter().any(|a| a.event
        == AuditEvent::ApprovalsReplaced {
            previous: AdminAction::ResolveFailed,
            dropped: vec![user(70)]
        }));
}

// ---------------------------------------------------------------------------------------------
// Closing a transfer while the ledger can still execute it (B7)
// ---------------------------------------------------------------------------------------------

/// Failing or cancelling a transfer releases its lock key. While the ledger can still execute
/// it, a new request under the same key could pay a second time: refused unless the operator
/// acknowledges exactly that risk, and allowed once the window has closed.
#[test]
fn should_not_release_a_transfer_lock_while_the_ledger_can_still_execute_it() {
    let mut h = Harness::new(cfg());
    let id = manual_transfer(&mut h);
    let r = h.admin(user(77), req(id, AdminAction::ResolveFailed));
    assert!(
        matches!(r, Err(JournalError::WindowStillOpen { .. })),
        "{r:?}"
    );
    let r = h.admin(user(77), req(id, AdminAction::Cancel));
    assert!(
        matches!(r, Err(JournalError::WindowStillOpen { .. })),
        "{r:?}"
    );
    assert_eq!(h.journal.lock_holder("pay-1"), Some(id), "the lock is held");
    let mut ack = req(id, AdminAction::ResolveFailed);
    ack.acknowledge_risk = Some(true);
    let a = h.admin(user(77), ack).unwrap();
    assert!(matches!(
        a,
        AdminResult::Applied {
            status: Status::Failed,
            ..
        }
    ));
    assert!(h.journal.audit(0, 200).iter().any(|r| matches!(
        r.event,
        AuditEvent::AdminAction {
            acknowledged_risk: Some(true),
            ..
        }
    )));
    // Past the window (and drift), no acknowledgment is needed.
    let other = manual_transfer(&mut h);
    h.rt.advance(DAY + HOUR);
    let a = h.admin(user(77), req(other, AdminAction::Cancel)).unwrap();
    assert!(matches!(
        a,
        AdminResult::Applied {
            status: Status::Cancelled,
            ..
        }
    ));
}

// ---------------------------------------------------------------------------------------------
// Sagas in repair (B3)
// ---------------------------------------------------------------------------------------------

fn local(name: &str) -> StepAction {
    StepAction::Local(LocalAction {
        handler: name.into(),
        payload: vec![1],
    })
}

/// A saga whose compensation could not even start (the owner's quota was full) waits for an
/// operator; after the operator's retry it must finish compensating — `Compensated`, not stuck
/// forever in a status from which `Compensated` is no legal edge.
#[test]
fn should_finish_compensating_a_saga_after_an_operator_retry() {
    // Byte quota: the saga's intent (771 bytes) + the failing step (69) + a filler (1,100)
    // fit; the saga + the filler + the compensation (568) do not.
    let mut h = Harness::new(Config {
        max_unresolved_bytes_per_owner: 2_000,
        ..Config::default()
    });
    let owner = user(1);
    let log = h.host_log.clone();
    h.journal.register_local_handler(
        "debit",
        Rc::new({
            let l = log.clone();
            move |_: &[u8]| {
                l.borrow_mut().push("debit".into());
                Ok(vec![])
            }
        }) as LocalHandler,
    );
    h.journal.register_local_handler(
        "undo",
        Rc::new({
            let l = log.clone();
            move |_: &[u8]| {
                l.borrow_mut().push("undo".into());
                Ok(vec![])
            }
        }) as LocalHandler,
    );
    // The failing step fills the owner's quota first, so the compensation cannot be journaled.
    let j = h.journal.clone();
    h.journal.register_local_handler(
        "fail",
        Rc::new(move |_: &[u8]| {
            j.record_intent(owner, "f".into(), vec![0; 1_035], None)
                .expect("the filler fits");
            Err("no stock".into())
        }) as LocalHandler,
    );
    let steps = vec![
        SagaStepSpec {
            action: local("debit"),
            compensation: Some(StepAction::Local(LocalAction {
                handler: "undo".into(),
                payload: vec![0; 500],
            })),
        },
        SagaStepSpec {
            action: local("fail"),
            compensation: None,
        },
    ];
    let id = h.journal.start_saga(owner, steps, None).unwrap();
    let j = h.journal.clone();
    h.drive(j.run_saga(id)).unwrap().unwrap();
    let e = h.journal.get(id).unwrap();
    assert_eq!(e.status, Status::ManualReview, "{e:#?}");
    assert!(e
        .manual_reason
        .unwrap()
        .contains("cannot start compensation"));
    // The owner frees its quota; the operator retries the saga.
    for f in h.entries().iter().filter(|e| e.kind == Kind::Record) {
        h.journal
            .report_result(
                owner,
                f.id,
                ReportedResult::Failed {
                    message: "done".into(),
                },
            )
            .unwrap();
    }
    h.admin(user(77), req(id, AdminAction::Retry)).unwrap();
    h.settle();
    let e = h.journal.get(id).unwrap();
    assert_eq!(e.status, Status::Compensated, "{e:#?}");
    assert_eq!(*log.borrow(), vec!["debit", "undo"]);
}

/// A step that needs an operator makes its saga show in the operators' queue, saying which
/// entry it waits for; the operator's action on the step lets the saga go on by itself.
#[test]
fn should_show_a_saga_blocked_on_a_step_in_manual_review_and_release_it() {
    let mut h = Harness::new(cfg());
    h.ledger.unavailable = 100;
    let steps = vec![SagaStepSpec {
        action: StepAction::Transfer(h.icrc1(5)),
        compensation: None,
    }];
    let id = h.journal.start_saga(user(1), steps, None).unwrap();
    let j = h.journal.clone();
    h.drive(j.run_saga(id)).unwrap().unwrap();
    h.settle();
    let saga = h.journal.get(id).unwrap();
    let Intent::Saga(s) = &saga.intent else {
        panic!()
    };
    let step = s.steps[0].entry.unwrap();
    assert_eq!(h.journal.get(step).unwrap().status, Status::ManualReview);
    assert_eq!(saga.status, Status::ManualReview, "{saga:#?}");
    assert_eq!(saga.blocked_on, Some(step));
    assert!(saga
        .manual_reason
        .unwrap()
        .contains(&format!("entry {step}")));
    assert!(h
        .journal
        .list(
            &ListFilter {
                status: Some(Status::ManualReview),
                ..Default::default()
            },
            &PageRequest {
                start_after: None,
                limit: 10
            }
        )
        .items
        .iter()
        .any(|e| e.id == id));
    // The ledger is back; the operator retries the step: the saga continues and completes.
    h.ledger.unavailable = 0;
    h.admin(user(77), req(step, AdminAction::Retry)).unwrap();
    h.settle();
    assert_eq!(h.journal.get(step).unwrap().status, Status::Succeeded);
    let saga = h.journal.get(id).unwrap();
    assert_eq!(saga.status, Status::Succeeded, "{saga:#?}");
    assert_eq!(saga.blocked_on, None);
}

/// Compensating a saga while a step's outcome is unknown could leave a payment uncompensated.
#[test]
fn should_refuse_to_compensate_a_saga_while_a_step_is_unresolved() {
    let mut h = Harness::new(cfg());
    h.ledger.unavailable = 100;
    let steps = vec![SagaStepSpec {
        action: StepAction::Transfer(h.icrc1(5)),
        compensation: None,
    }];
    let id = h.journal.start_saga(user(1), steps, None).unwrap();
    let j = h.journal.clone();
    h.drive(j.run_saga(id)).unwrap().unwrap();
    h.settle();
    let r = h.admin(user(77), req(id, AdminAction::Compensate));
    assert!(matches!(r, Err(JournalError::Blocked { .. })), "{r:?}");
}

/// Closing a saga as failed (or cancelling it) compensates nothing: refused while a step
/// executed or may have — the operator acts on the blocking step or compensates.
#[test]
fn should_refuse_to_close_a_saga_whose_steps_executed_without_compensating() {
    let mut h = Harness::new(cfg());
    h.journal
        .register_local_handler("debit", Rc::new(|_: &[u8]| Ok(vec![])) as LocalHandler);
    h.ledger.unavailable = 100;
    let steps = vec![
        SagaStepSpec {
            action: local("debit"),
            compensation: Some(local("debit")),
        },
        SagaStepSpec {
            action: StepAction::Transfer(h.icrc1(5)),
            compensation: None,
        },
    ];
    let id = h.journal.start_saga(user(1), steps, None).unwrap();
    let j = h.journal.clone();
    h.drive(j.run_saga(id)).unwrap().unwrap();
    h.settle();
    assert_eq!(h.journal.get(id).unwrap().status, Status::ManualReview);
    for action in [
        AdminAction::ResolveFailed,
        AdminAction::Cancel,
        AdminAction::ResolveSucceeded { block_index: None },
    ] {
        let mut r = req(id, action.clone());
        r.acknowledge_risk = Some(true);
        let res = h.admin(user(77), r);
        assert!(
            matches!(res, Err(JournalError::Blocked { .. })),
            "{action:?}: {res:?}"
        );
    }
}

/// Every operator action's target status is checked against the status table by
/// `check_admin_request`, before the approval or the audit record is written, and
/// `apply_admin` moves to that same target: the two cannot disagree. Today every action the
/// prechecks let through is a legal edge from `ManualReview`; this pins it for every kind and
/// saga phase, so a change to the table that forbids one fails here instead of leaving an
/// audit record for an action that was not applied.
#[test]
fn should_check_every_operator_actions_target_against_the_status_table() {
    let mut h = Harness::new(cfg());
    let transfer_id = manual_transfer(&mut h);
    let transfer = h.journal.get(transfer_id).unwrap();
    let steps = vec![SagaStepSpec {
        action: local("debit"),
        compensation: None,
    }];
    let saga_id = h.journal.start_saga(user(2), steps, None).unwrap();
    let forward = h.journal.get(saga_id).unwrap();
    let mut compensating = forward.clone();
    if let Intent::Saga(s) = &mut compensating.intent {
        s.phase = SagaPhase::Compensating;
    }
    let actions = [
        AdminAction::Retry,
        AdminAction::ResolveSucceeded {
            block_index: Some(1),
        },
        AdminAction::ResolveFailed,
        AdminAction::Compensate,
        AdminAction::Cancel,
    ];
    for e in [&transfer, &forward, &compensating] {
        for a in &actions {
            let to = crate::admin::admin_target(e, a);
            assert!(
                crate::status::is_legal(Status::ManualReview, to, crate::status::Actor::Admin),
                "{a:?} on a {:?} would move ManualReview -> {to:?}, which the table forbids",
                e.kind
            );
        }
    }
}
