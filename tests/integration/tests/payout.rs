//! The payout example canister, which embeds the engine: saga debit → ledger transfer →
//! credit back on definitive failure; recovery, upgrade, manual review, access control.

use candid::Nat;
use icjournal::AdminResult;
use icjournal_tests::payout_types::*;
use icjournal_tests::*;

const AMOUNT: u64 = 5_000_000;

fn payout_setup() -> Setup {
    Setup::options().without_service().with_payout().build()
}

fn receipt(s: &Setup, id: u64) -> PayoutReceipt {
    s.get_payout(admin(), id).expect("get_payout")
}

#[test]
fn should_pay_out_exactly_once() {
    let s = payout_setup();
    let r = s.payout_as(user(1), acct(user(9)), AMOUNT).unwrap();
    assert!(
        matches!(
            r.status,
            PayoutStatus::Completed {
                block_index: Some(_)
            }
        ),
        "{r:?}"
    );
    assert_eq!(
        s.payout_balance(user(1)),
        (USER_FUNDS - AMOUNT - FEE) as u128
    );
    assert_eq!(s.balance(acct(user(9))), (USER_FUNDS + AMOUNT) as u128);
    // The owner reads its own payout; a stranger cannot.
    assert_eq!(s.get_payout(user(1), r.payout_id).unwrap().status, r.status);
    assert!(matches!(
        s.get_payout(stranger(), r.payout_id),
        Err(PayoutError::NotFound { .. })
    ));
    let report = s.check_invariants();
    assert_eq!(report.succeeded, 1);
}

/// The debit is a local step of a saga begun in the same message, and nothing but the reply
/// follows the ledger's answer: no self-call commit is needed anywhere (docs/design.md, "When
/// a commit is needed"), so a payout costs what a bare transfer does in messages.
#[test]
fn should_pay_out_in_two_messages_like_a_bare_transfer() {
    let s = payout_setup();
    s.advance_secs(1);
    let start = s.sim().trace().len();
    let r = s.payout_as(user(1), acct(user(9)), AMOUNT).unwrap();
    assert!(matches!(r.status, PayoutStatus::Completed { .. }), "{r:?}");
    assert_eq!(
        s.update_messages_since(s.payout, start),
        vec![
            (ic_sim::MessageKind::Update, Some("payout".to_string())),
            (ic_sim::MessageKind::ReplyCallback, None),
        ],
        "no icjournal_commit self-call"
    );
    assert_eq!(s.check_invariants().succeeded, 1);
}

/// Which of the payout canister's response callbacks after the ledger executed a payout's
/// transfer is the ledger's reply (the recovery timer's self-calls may come first), and how
/// many System API calls it makes: a dry run on a twin deployment (the simulator is
/// deterministic, so the real run repeats it).
fn ledger_callback_of_a_payout() -> (u32, u32) {
    let s = payout_setup();
    let start = s.sim().trace().len();
    s.payout_as(user(1), acct(user(9)), AMOUNT).unwrap();
    let sim = s.sim();
    let after_ledger: Vec<_> = sim.trace()[start..]
        .iter()
        .skip_while(|m| !(m.canister == s.ledger && m.method.as_deref() == Some("icrc1_transfer")))
        .filter(|m| m.canister == s.payout && m.kind == ic_sim::MessageKind::ReplyCallback)
        .collect();
    // The reply to the payout (the ingress call) is made in the ledger's callback only.
    let last = after_ledger.last().expect("the ledger's callback");
    (after_ledger.len() as u32, last.api_calls)
}

/// What the commits used to cover: the ledger's callback journals the transfer's result and
/// the saga's end, then traps at its last System API call (the reply). Everything rolls back
/// to the ledger call's await, where the debit and the transfer's intent were committed; the
/// cleanup marks the transfer `Unknown`; recovery's resend of the identical args is answered
/// `Duplicate`, and the saga completes with one block and one debit.
#[test]
fn should_recover_exactly_when_the_payouts_callback_traps_at_its_reply() {
    let (nth, last_api_call) = ledger_callback_of_a_payout();
    let s = payout_setup();
    s.trap_nth_callback_after(s.payout, "icrc1_transfer", nth, last_api_call);
    let r: Result<(Result<PayoutReceipt, PayoutError>,), _> = s.update(
        s.payout,
        user(1),
        "payout",
        (acct(user(9)), Nat::from(AMOUNT)),
    );
    assert!(r.is_err(), "the callback trapped before replying: {r:?}");
    assert_eq!(
        s.payout_balance(user(1)),
        (USER_FUNDS - AMOUNT - FEE) as u128,
        "the debit was committed at the ledger call"
    );
    let transfer = s
        .payout_entries()
        .into_iter()
        .find(|e| e.kind == icjournal::Kind::Icrc1Transfer)
        .expect("the transfer step");
    assert_eq!(transfer.status, icjournal::Status::Unknown, "{transfer:?}");
    let blocks = s.blocks().len();
    s.settle(600);
    let saga = s
        .payout_entries()
        .into_iter()
        .find(|e| e.kind == icjournal::Kind::Saga)
        .unwrap();
    let p = receipt(&s, saga.id);
    assert!(matches!(p.status, PayoutStatus::Completed { .. }), "{p:?}");
    assert_eq!(
        s.blocks().len(),
        blocks,
        "the resend executed a second time"
    );
    assert_eq!(s.balance(acct(user(9))), (USER_FUNDS + AMOUNT) as u128);
    assert_eq!(
        s.payout_balance(user(1)),
        (USER_FUNDS - AMOUNT - FEE) as u128,
        "debited once, not credited back"
    );
    assert_eq!(s.check_invariants().succeeded, 1);
}

#[test]
fn should_refund_the_debit_when_the_ledger_refuses() {
    let s = payout_setup();
    // The internal balance covers it, the canister's ledger account does not.
    let _: Result<Nat, PayoutError> = s.update1(
        s.payout,
        admin(),
        "deposit",
        (user(2), Nat::from(1_000 * USER_FUNDS)),
    );
    let before = s.payout_balance(user(2));
    let r = s.payout_as(user(2), acct(user(9)), 200 * USER_FUNDS);
    assert!(
        matches!(r, Err(PayoutError::TransferFailed { .. }))
            || matches!(&r, Ok(p) if matches!(p.status, PayoutStatus::Refunded { .. })),
        "{r:?}"
    );
    s.settle(300);
    assert_eq!(s.payout_balance(user(2)), before);
}

#[test]
fn should_recover_a_lost_ledger_response() {
    let s = payout_setup();
    s.lose_next_ledger_response(s.payout, "icrc1_transfer");
    let r = s.payout_as(user(1), acct(user(9)), AMOUNT).unwrap();
    assert_eq!(r.status, PayoutStatus::InProgress, "{r:?}");
    // I3: a second payout waits for the first.
    assert!(matches!(
        s.payout_as(user(1), acct(user(9)), AMOUNT),
        Err(PayoutError::PayoutInProgress { .. })
    ));
    s.settle(600);
    let p = receipt(&s, r.payout_id);
    assert!(matches!(p.status, PayoutStatus::Completed { .. }), "{p:?}");
    assert_eq!(s.balance(acct(user(9))), (USER_FUNDS + AMOUNT) as u128);
    assert_eq!(
        s.payout_balance(user(1)),
        (USER_FUNDS - AMOUNT - FEE) as u128
    );
}

#[test]
fn should_recover_when_the_callback_traps() {
    let (nth, _) = ledger_callback_of_a_payout();
    let s = payout_setup();
    s.trap_nth_callback_after(s.payout, "icrc1_transfer", nth, 1);
    // The callback trapped without replying: the ingress call is rejected.
    let r: Result<(Result<PayoutReceipt, PayoutError>,), _> = s.update(
        s.payout,
        user(1),
        "payout",
        (acct(user(9)), Nat::from(AMOUNT)),
    );
    assert!(r.is_err(), "{r:?}");
    s.settle(600);
    let id = s
        .payout_entries()
        .iter()
        .find(|e| e.kind == icjournal::Kind::Saga)
        .unwrap()
        .id;
    let p = receipt(&s, id);
    assert!(matches!(p.status, PayoutStatus::Completed { .. }), "{p:?}");
    assert_eq!(s.balance(acct(user(9))), (USER_FUNDS + AMOUNT) as u128);
}

#[test]
fn should_resume_recovery_after_upgrade() {
    let s = payout_setup();
    s.lose_next_ledger_response(s.payout, "icrc1_transfer");
    let r = s.payout_as(user(1), acct(user(9)), AMOUNT).unwrap();
    assert_eq!(r.status, PayoutStatus::InProgress);
    s.upgrade_payout();
    s.settle(600);
    let p = receipt(&s, r.payout_id);
    assert!(matches!(p.status, PayoutStatus::Completed { .. }), "{p:?}");
}

#[test]
fn should_queue_for_manual_review_and_refund_on_admin_resolution() {
    let s = Setup::options()
        .without_service()
        .with_payout()
        .max_attempts(3)
        .build();
    s.ledger_trap(true);
    let r = s.payout_as(user(1), acct(user(9)), AMOUNT).unwrap();
    s.settle(3600);
    let queue = s.payout_manual_queue();
    assert!(!queue.is_empty(), "nothing in the manual queue");
    let p = receipt(&s, r.payout_id);
    let PayoutStatus::ManualReview { entry_id, .. } = p.status else {
        panic!("expected ManualReview, got {p:?}")
    };
    // Strangers and the owner cannot act; the reason is required.
    for who in [stranger(), user(1)] {
        let e: Result<AdminResult, PayoutError> = s.update1(
            s.payout,
            who,
            "admin_resolve_failed",
            (entry_id, "x".to_string()),
        );
        assert_eq!(e, Err(PayoutError::NotAuthorized));
    }
    let e: Result<AdminResult, PayoutError> = s.update1(
        s.payout,
        admin(),
        "admin_resolve_failed",
        (entry_id, String::new()),
    );
    assert_eq!(e, Err(PayoutError::ReasonRequired));
    // The ledger trapped every time: nothing executed. Resolve the transfer as failed; the
    // saga credits the debit back.
    s.ledger_trap(false);
    let ok: Result<AdminResult, PayoutError> = s.update1(
        s.payout,
        admin(),
        "admin_resolve_failed",
        (
            entry_id,
            "ledger trapped on every attempt".to_string(),
            // Inside the window the ledger could still execute it: said explicitly.
            Some(true),
        ),
    );
    assert!(ok.is_ok(), "{ok:?}");
    s.settle(600);
    let p = receipt(&s, r.payout_id);
    assert!(
        matches!(
            p.status,
            PayoutStatus::Refunded { .. } | PayoutStatus::Failed
        ),
        "{p:?}"
    );
    assert_eq!(
        s.payout_balance(user(1)),
        USER_FUNDS as u128,
        "{p:?} {:#?}",
        s.payout_entries()
    );
}

#[test]
fn should_authenticate_every_payout_endpoint() {
    let s = payout_setup();
    let anon = candid::Principal::anonymous();
    assert_eq!(
        s.payout_as(anon, acct(user(9)), AMOUNT),
        Err(PayoutError::AnonymousCaller)
    );
    assert!(matches!(
        s.payout_as(user(1), acct(user(9)), 0),
        Err(PayoutError::InvalidArgument { .. })
    ));
    assert!(matches!(
        s.payout_as(user(1), acct(user(9)), 10 * USER_FUNDS),
        Err(PayoutError::InsufficientBalance { .. })
    ));
    let page = icjournal::PageRequest {
        start_after: None,
        limit: 10,
    };
    for who in [anon, stranger(), user(1)] {
        let expected = if who == anon {
            PayoutError::AnonymousCaller
        } else {
            PayoutError::NotAuthorized
        };
        let r: Result<Nat, PayoutError> =
            s.update1(s.payout, who, "deposit", (user(1), Nat::from(1u8)));
        assert!(r.is_err(), "deposit by {who}");
        let r: Result<icjournal::Page<icjournal::EntrySummary>, PayoutError> =
            s.query1(s.payout, who, "admin_manual_queue", (page.clone(),));
        assert!(r.is_err(), "admin_manual_queue by {who}");
        let r: Result<icjournal::Entry, PayoutError> =
            s.query1(s.payout, who, "admin_show", (0u64,));
        assert!(r.is_err(), "admin_show by {who}");
        let r: Result<Vec<icjournal::AuditRecord>, PayoutError> =
            s.query1(s.payout, who, "admin_audit", (0u64, 10u32));
        assert!(r.is_err(), "admin_audit by {who}");
        let r: Result<RecoveryReport, PayoutError> =
            s.update1(s.payout, who, "admin_run_recovery", ());
        assert_eq!(r, Err(expected.clone()), "admin_run_recovery by {who}");
        for verb in [
            "admin_retry",
            "admin_resolve_failed",
            "admin_compensate",
            "admin_cancel",
        ] {
            let r: Result<AdminResult, PayoutError> =
                s.update1(s.payout, who, verb, (0u64, "r".to_string()));
            assert_eq!(r, Err(expected.clone()), "{verb} by {who}");
        }
    }
    // The admin may; an admin verb on a non-manual entry is refused (I4).
    let p = s.payout_as(user(1), acct(user(9)), AMOUNT).unwrap();
    let r: Result<AdminResult, PayoutError> = s.update1(
        s.payout,
        admin(),
        "admin_cancel",
        (p.payout_id, "r".to_string()),
    );
    assert!(
        matches!(r, Err(PayoutError::NotInManualReview { .. })),
        "{r:?}"
    );
    let r: Result<RecoveryReport, PayoutError> =
        s.update1(s.payout, admin(), "admin_run_recovery", ());
    assert!(r.is_ok());
    let r: Result<icjournal::Entry, PayoutError> =
        s.query1(s.payout, admin(), "admin_show", (p.payout_id,));
    assert!(r.is_ok());
}

#[test]
fn should_find_an_archived_payout_by_memo_after_an_outage() {
    let s = Setup::options()
        .without_service()
        .with_payout()
        .archive(10_000, 100)
        .build();
    s.lose_next_ledger_response(s.payout, "icrc1_transfer");
    let r = s.payout_as(user(1), acct(user(9)), AMOUNT).unwrap();
    assert_eq!(r.status, PayoutStatus::InProgress);
    // The canister is stopped (no timers) for longer than the dedup window; meanwhile the
    // ledger archives the block.
    s.sim().stop_canister(s.payout, None).unwrap();
    s.archive_now();
    s.advance_secs(25 * 3600);
    s.simple_transfer(user(3), acct(user(4)), 1);
    s.sim().start_canister(s.payout, None).unwrap();
    s.settle(3600);
    let p = receipt(&s, r.payout_id);
    let PayoutStatus::Completed {
        block_index: Some(b),
    } = p.status
    else {
        panic!("expected Completed, got {p:?}")
    };
    assert!(s.blocks()[b as usize].archived);
    let transfer = s.payout_entry(p.transfer_entry.unwrap());
    assert!(
        matches!(
            transfer.outcome,
            Some(icjournal::Outcome::Succeeded {
                source: icjournal::EvidenceSource::MemoLookup,
                ..
            })
        ),
        "{transfer:?}"
    );
    assert_eq!(
        s.payout_balance(user(1)),
        (USER_FUNDS - AMOUNT - FEE) as u128
    );
}

#[test]
fn should_refund_on_bad_fee_after_a_fee_change() {
    let s = payout_setup();
    // The operator upgrades with a wrong fee: the ledger answers BadFee, the debit comes back.
    s.sim().stop_canister(s.payout, None).unwrap();
    let arg = candid::encode_one(Some(PayoutArg::Upgrade(Some(UpgradeArg {
        ledger_fee: Some(Nat::from(FEE + 1)),
        ..Default::default()
    }))))
    .unwrap();
    s.sim()
        .upgrade_canister(s.payout, Wasms::payout(), arg, None)
        .unwrap();
    s.sim().start_canister(s.payout, None).unwrap();
    let r = s.payout_as(user(1), acct(user(9)), AMOUNT);
    s.settle(300);
    let id = match r {
        Ok(p) => p.payout_id,
        Err(PayoutError::TransferFailed { payout_id, .. }) => payout_id,
        other => panic!("{other:?}"),
    };
    let p = receipt(&s, id);
    assert!(
        matches!(
            &p.status,
            PayoutStatus::Refunded {
                reason: Some(icjournal::FailureReason::Ledger(
                    icjournal::LedgerError::BadFee { .. }
                ))
            }
        ),
        "{p:?}"
    );
    assert_eq!(s.payout_balance(user(1)), USER_FUNDS as u128);
}

#[test]
fn should_refuse_an_unstopped_upgrade_of_the_payout_canister_while_a_payout_is_in_flight() {
    let s = payout_setup();
    let msg = s.sim().submit_call(
        s.payout,
        user(1),
        "payout",
        candid::encode_args((acct(user(9)), Nat::from(AMOUNT))).unwrap(),
    );
    while !s
        .sim
        .borrow()
        .trace()
        .iter()
        .any(|r| r.canister == s.ledger && r.method.as_deref() == Some("icrc1_transfer"))
    {
        assert!(s.sim().step(), "the ledger call never ran");
    }
    let arg = candid::encode_one(Some(PayoutArg::Upgrade(None))).unwrap();
    let r = s
        .sim()
        .upgrade_canister(s.payout, Wasms::payout(), arg, None);
    match &r {
        Err(ic_sim::SimError::Trapped { message, .. }) => {
            assert!(message.contains("upgrade refused"), "{message}")
        }
        other => panic!("an unstopped upgrade must be refused: {other:?}"),
    }
    // The old module finishes the saga from the ledger's reply.
    s.settle(300);
    let r: Result<PayoutReceipt, PayoutError> =
        candid::decode_one(&s.sim.borrow().call_result(msg).unwrap().unwrap()).unwrap();
    let p = r.expect("payout");
    assert!(matches!(p.status, PayoutStatus::Completed { .. }), "{p:?}");
    assert_eq!(s.balance(acct(user(9))), (USER_FUNDS + AMOUNT) as u128);
    s.upgrade_payout();
    assert!(matches!(
        receipt(&s, p.payout_id).status,
        PayoutStatus::Completed { .. }
    ));
}
