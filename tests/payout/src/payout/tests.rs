//! The payout saga end to end on the engine's deterministic `FakeRuntime` (the real canister
//! runs the same code on `IcRuntime`): validation, happy path, definitive ledger failure with
//! credit-back, unknown outcome recovered by the recovery tick, lock per caller, manual review
//! resolved by an operator.

use super::*;
use crate::balances::Balances;
use candid::{Decode, Encode};
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::VectorMemory;
use icjournal::{
    AdminAction, AdminRequest, CallError, CallResult, Config, FakeRuntime, LedgerError, Memories,
    PendingCall, RejectCode,
};
use icrc_ledger_types::icrc1::transfer::{TransferArg, TransferError};
use std::cell::RefCell;

type VM = VirtualMemory<VectorMemory>;
type J = Journal<FakeRuntime, VM>;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;

fn self_id() -> Principal {
    Principal::from_slice(&[0xCA, 0xFE, 0, 1])
}
fn ledger() -> Principal {
    Principal::from_slice(&[0x1E, 0xD6, 0, 1])
}
fn user(n: u8) -> Principal {
    Principal::from_slice(&[0x10, n, 0, 1])
}
fn admin() -> Principal {
    Principal::from_slice(&[0xAD, 0, 1])
}

fn settings(fee: Option<u64>) -> Settings {
    Settings {
        ledger: ledger(),
        admins: vec![admin()],
        ledger_fee: fee.map(Nat::from),
        engine: EngineConfig::default(),
    }
}

struct Env {
    rt: FakeRuntime,
    journal: J,
    book: Rc<RefCell<Balances<VM>>>,
    settings: Settings,
    /// icrc1_transfer args the "ledger" received, in order.
    sent: Rc<RefCell<Vec<TransferArg>>>,
}

impl Env {
    fn new(cfg: Config, fee: Option<u64>) -> Env {
        let rt = FakeRuntime::new(self_id(), T0);
        let mm = MemoryManager::init(VectorMemory::default());
        let book = Rc::new(RefCell::new(Balances::init(
            mm.get(MemoryId::new(1)),
            mm.get(MemoryId::new(2)),
        )));
        let journal = Journal::open(rt.clone(), Memories::from_manager(&mm, 16), cfg).unwrap();
        let b = book.clone();
        register_handlers(
            &journal,
            Rc::new(move |op, who, amount| {
                let mut b = b.borrow_mut();
                match op {
                    BalanceOp::Debit => b.debit(who, amount),
                    BalanceOp::Credit => b.credit(who, amount),
                }
            }),
        );
        Env {
            rt,
            journal,
            book,
            settings: settings(fee),
            sent: Rc::default(),
        }
    }

    fn balance(&self, p: Principal) -> u128 {
        self.book.borrow().get(&p)
    }

    fn plan(&self, owner: Principal, to: Account, amount: u64) -> Result<PayoutPlan, PayoutError> {
        let ctx = PlanContext {
            settings: &self.settings,
            self_id: self_id(),
            balance: self.balance(owner),
            in_flight: self.journal.lock_holder(&lock_key(&owner)),
        };
        plan(&ctx, owner, to, &Nat::from(amount))
    }

    /// Answer self-calls with `()` and ledger calls with `ledger(arg)`.
    fn responder<'a>(
        &'a self,
        mut ledger_answer: impl FnMut(&TransferArg) -> CallResult + 'a,
    ) -> impl FnMut(&PendingCall) -> CallResult + 'a {
        move |c: &PendingCall| {
            if c.callee == self_id() {
                assert_eq!(c.method, crate::COMMIT_METHOD);
                return Ok(Encode!().unwrap());
            }
            assert_eq!((c.callee, c.method.as_str()), (ledger(), "icrc1_transfer"));
            let arg = Decode!(&c.arg, TransferArg).unwrap();
            self.sent.borrow_mut().push(arg.clone());
            ledger_answer(&arg)
        }
    }

    fn pay(
        &self,
        owner: Principal,
        amount: u64,
        ledger_answer: impl FnMut(&TransferArg) -> CallResult,
    ) -> Result<PayoutReceipt, PayoutError> {
        let plan = self.plan(owner, Account::from(user(99)), amount)?;
        self.rt
            .run(run(&self.journal, &plan), self.responder(ledger_answer))
    }

    /// Run recovery ticks (advancing time) until payout `id` leaves InProgress/Refunding.
    fn recover(
        &self,
        id: EntryId,
        mut ledger_answer: impl FnMut(&TransferArg) -> CallResult,
    ) -> PayoutReceipt {
        for _ in 0..20 {
            self.rt.advance(60 * SEC);
            self.rt.reset_instructions();
            self.rt.run(
                self.journal.recovery_tick(),
                self.responder(&mut ledger_answer),
            );
            let r = load(&self.journal, id).unwrap();
            if !matches!(r.status, PayoutStatus::InProgress | PayoutStatus::Refunding) {
                return r;
            }
        }
        panic!("payout {id} did not settle");
    }
}

fn ok_block(b: u64) -> CallResult {
    Ok(Encode!(&Result::<Nat, TransferError>::Ok(Nat::from(b))).unwrap())
}
fn ledger_err(e: TransferError) -> CallResult {
    Ok(Encode!(&Result::<Nat, TransferError>::Err(e)).unwrap())
}
fn sys_unknown() -> CallResult {
    Err(CallError::Rejected {
        code: RejectCode::SysUnknown,
        message: "timeout".into(),
    })
}

#[test]
fn happy_path_debits_once_and_sends_journaled_args() {
    let e = Env::new(Config::default(), Some(10));
    e.book.borrow_mut().credit(user(1), 1_000).unwrap();
    let r = e.pay(user(1), 100, |_| ok_block(7)).unwrap();
    assert_eq!(
        r.status,
        PayoutStatus::Completed {
            block_index: Some(7)
        }
    );
    assert_eq!(
        (r.amount.clone(), r.fee.clone(), r.debited.clone()),
        (Nat::from(100u8), Some(Nat::from(10u8)), Nat::from(110u8))
    );
    assert_eq!(e.balance(user(1)), 890);
    assert_eq!(e.book.borrow().total(), 890);

    let sent = e.sent.borrow().clone();
    assert_eq!(sent.len(), 1);
    let arg = &sent[0];
    let transfer = r.transfer_entry.unwrap();
    assert_eq!(
        arg.memo.as_ref().unwrap().0.as_slice(),
        icjournal::memo::encode(transfer).as_slice()
    );
    assert_eq!(arg.created_at_time, Some(T0));
    assert_eq!(arg.fee, Some(Nat::from(10u8)));
    assert_eq!(arg.from_subaccount, None);
    assert_eq!(arg.to, Account::from(user(99)));
    assert_eq!(arg.amount, Nat::from(100u8));

    // The lock is released: a second payout starts.
    assert_eq!(e.journal.lock_holder(&lock_key(&user(1))), None);
    let r2 = e.pay(user(1), 50, |_| ok_block(8)).unwrap();
    assert_ne!(r2.payout_id, r.payout_id);
    assert_eq!(e.balance(user(1)), 830);
    assert_eq!(load(&e.journal, r.payout_id).unwrap(), {
        let mut x = r.clone();
        x.updated_at = load(&e.journal, r.payout_id).unwrap().updated_at;
        x
    });
}

#[test]
fn definitive_ledger_failure_credits_back() {
    let e = Env::new(Config::default(), None);
    e.book.borrow_mut().credit(user(1), 1_000).unwrap();
    let err = e
        .pay(user(1), 300, |_| {
            ledger_err(TransferError::InsufficientFunds {
                balance: Nat::from(0u8),
            })
        })
        .unwrap_err();
    let PayoutError::TransferFailed { payout_id, reason } = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        reason,
        Some(FailureReason::Ledger(LedgerError::InsufficientFunds {
            balance: Nat::from(0u8)
        }))
    );
    assert_eq!(e.balance(user(1)), 1_000, "debit credited back");
    let r = load(&e.journal, payout_id).unwrap();
    assert!(matches!(r.status, PayoutStatus::Refunded { .. }));
    assert_eq!(r.fee, None);
    assert_eq!(e.journal.lock_holder(&lock_key(&user(1))), None);
    assert_eq!(
        e.journal.get(payout_id).unwrap().status,
        Status::Compensated
    );
}

#[test]
fn unknown_outcome_holds_the_lock_until_recovery_finds_the_block() {
    let e = Env::new(Config::default(), Some(10));
    e.book.borrow_mut().credit(user(1), 1_000).unwrap();
    let r = e.pay(user(1), 100, |_| sys_unknown()).unwrap();
    assert_eq!(r.status, PayoutStatus::InProgress);
    assert_eq!(e.balance(user(1)), 890, "still debited while unknown");

    // I3: a second payout by the same caller is refused, naming the payout in flight...
    assert_eq!(
        e.plan(user(1), Account::from(user(98)), 1),
        Err(PayoutError::PayoutInProgress {
            payout_id: r.payout_id,
            lock_key: lock_key(&user(1))
        })
    );
    // ...also by the engine itself (the authoritative check).
    let plan = PayoutPlan {
        owner: user(1),
        ledger: ledger(),
        to: Account::from(user(98)),
        amount: 1,
        fee: None,
        debit: 1,
    };
    let err =
        e.rt.run(run(&e.journal, &plan), e.responder(|_| ok_block(1)));
    assert_eq!(
        err,
        Err(PayoutError::PayoutInProgress {
            payout_id: r.payout_id,
            lock_key: lock_key(&user(1))
        })
    );
    // Other callers are not blocked.
    e.book.borrow_mut().credit(user(2), 100).unwrap();
    assert!(e.plan(user(2), Account::from(user(98)), 1).is_ok());

    // Recovery resends the identical args; the ledger says Duplicate: executed once, at 42.
    let first = e.sent.borrow()[0].clone();
    let r = e.recover(r.payout_id, |arg| {
        assert_eq!(*arg, first, "resend must be byte-identical");
        ledger_err(TransferError::Duplicate {
            duplicate_of: Nat::from(42u8),
        })
    });
    assert_eq!(
        r.status,
        PayoutStatus::Completed {
            block_index: Some(42)
        }
    );
    assert_eq!(e.balance(user(1)), 890);
    assert_eq!(e.journal.lock_holder(&lock_key(&user(1))), None);
}

#[test]
fn reject_before_delivery_is_a_definitive_failure_and_refunds() {
    let e = Env::new(Config::default(), None);
    e.book.borrow_mut().credit(user(1), 500).unwrap();
    let err = e
        .pay(user(1), 500, |_| {
            Err(CallError::Rejected {
                code: RejectCode::SysTransient,
                message: "queue full".into(),
            })
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            PayoutError::TransferFailed {
                reason: Some(FailureReason::NotDelivered { .. }),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(e.balance(user(1)), 500);
}

#[test]
fn manual_review_then_operator_resolves_failed_and_the_debit_is_credited_back() {
    let cfg = Config {
        max_attempts: 2,
        ..Config::default()
    };
    let e = Env::new(cfg, None);
    e.book.borrow_mut().credit(user(1), 100).unwrap();
    let r = e.pay(user(1), 60, |_| sys_unknown()).unwrap();
    let r = e.recover(r.payout_id, |_| sys_unknown());
    let PayoutStatus::ManualReview { entry_id, .. } = r.status else {
        panic!("{r:?}")
    };
    assert_eq!(
        Some(entry_id),
        r.transfer_entry,
        "the transfer step waits for an operator"
    );
    assert_eq!(e.balance(user(1)), 40);
    // Still locked (I3), naming the payout.
    assert!(matches!(
        e.plan(user(1), Account::from(user(98)), 1),
        Err(PayoutError::PayoutInProgress { .. })
    ));
    // Operator: reason required, then resolve the step as failed — acknowledging that the
    // ledger could still execute it (its window is open).
    let req = |reason: &str| AdminRequest {
        entry_id,
        action: AdminAction::ResolveFailed,
        reason: reason.into(),
        acknowledge_risk: Some(true),
    };
    let admin_verb = |r: AdminRequest| {
        e.rt.run(
            e.journal.admin(admin(), r, |_| true),
            e.responder(|_| panic!("no ledger call for a failed resolution")),
        )
    };
    assert_eq!(
        admin_verb(req(" ")).map_err(PayoutError::from),
        Err(PayoutError::ReasonRequired)
    );
    admin_verb(req("ledger shows no block with this memo")).unwrap();
    // The admin endpoint resumes the payout at once: credited back in the same call.
    e.rt.run(
        resume(&e.journal, entry_id),
        e.responder(|_| panic!("no ledger call after resolution")),
    );
    let r = load(&e.journal, r.payout_id).unwrap();
    assert!(matches!(r.status, PayoutStatus::Refunded { .. }), "{r:?}");
    assert_eq!(e.balance(user(1)), 100);
    assert_eq!(e.journal.lock_holder(&lock_key(&user(1))), None);
    // Admin verbs on a resolved entry are refused with a typed error.
    assert!(matches!(
        admin_verb(req("again")).map_err(PayoutError::from),
        Err(PayoutError::NotInManualReview { .. })
    ));
}

#[test]
fn plan_validation() {
    let e = Env::new(Config::default(), Some(10));
    e.book.borrow_mut().credit(user(1), 100).unwrap();
    let to = Account::from(user(98));
    let invalid = |r: Result<PayoutPlan, PayoutError>| {
        assert!(
            matches!(r, Err(PayoutError::InvalidArgument { .. })),
            "{r:?}"
        )
    };
    invalid(e.plan(user(1), to, 0));
    invalid(e.plan(user(1), Account::from(Principal::anonymous()), 1));
    invalid(e.plan(user(1), Account::from(self_id()), 1));
    assert_eq!(
        e.plan(Principal::anonymous(), to, 1),
        Err(PayoutError::AnonymousCaller)
    );
    assert_eq!(
        e.plan(user(1), to, 91),
        Err(PayoutError::InsufficientBalance {
            balance: Nat::from(100u8),
            required: Nat::from(101u8)
        })
    );
    let p = e.plan(user(1), to, 90).unwrap();
    assert_eq!((p.amount, p.fee, p.debit), (90, Some(10), 100));

    let ctx = |settings: &Settings| {
        let ctx = PlanContext {
            settings,
            self_id: self_id(),
            balance: u128::MAX,
            in_flight: None,
        };
        (
            plan(&ctx, user(1), to, &(Nat::from(u128::MAX) + Nat::from(1u8))),
            plan(&ctx, user(1), to, &Nat::from(u128::MAX)),
        )
    };
    let (too_big, overflow) = ctx(&settings(Some(1)));
    invalid(too_big);
    invalid(overflow);
}

#[test]
fn receipt_ignores_entries_that_are_not_payouts() {
    let e = Env::new(Config::default(), None);
    let other = e
        .journal
        .start_saga(
            user(1),
            vec![SagaStepSpec {
                action: local(CREDIT_HANDLER, user(1), 1),
                compensation: None,
            }],
            None,
        )
        .unwrap();
    assert_eq!(load(&e.journal, other), None);
    assert_eq!(load(&e.journal, 999), None);
}

#[test]
fn handler_rejects_a_bad_payload_and_an_overdraft() {
    let e = Env::new(Config::default(), None);
    let apply: BalanceApplier = {
        let b = e.book.clone();
        Rc::new(move |op, who, amt| match op {
            BalanceOp::Debit => b.borrow_mut().debit(who, amt),
            BalanceOp::Credit => b.borrow_mut().credit(who, amt),
        })
    };
    let debit = handler(BalanceOp::Debit, apply.clone());
    assert!(debit(b"junk").unwrap_err().contains("bad payload"));
    let payload = Encode!(&BalanceChange {
        account: user(1),
        amount: Nat::from(5u8)
    })
    .unwrap();
    assert!(debit(&payload).unwrap_err().contains("insufficient"));
    let credit = handler(BalanceOp::Credit, apply);
    assert_eq!(
        Decode!(&credit(&payload).unwrap(), Nat).unwrap(),
        Nat::from(5u8)
    );
    assert_eq!(
        Decode!(&debit(&payload).unwrap(), Nat).unwrap(),
        Nat::from(0u8)
    );
}

#[test]
fn listing_and_reads_are_owner_scoped() {
    let e = Env::new(Config::default(), None);
    e.book.borrow_mut().credit(user(1), 1_000).unwrap();
    e.book.borrow_mut().credit(user(2), 1_000).unwrap();
    let mut mine = vec![];
    for i in 0..3u64 {
        mine.push(e.pay(user(1), 10 + i, |_| ok_block(i)).unwrap().payout_id);
    }
    let theirs = e.pay(user(2), 5, |_| ok_block(9)).unwrap().payout_id;

    // Paging by payout id, only the owner's payouts (not their step entries).
    let page = |start_after| PageRequest {
        start_after,
        limit: 2,
    };
    let p1 = list_for(&e.journal, user(1), &page(None));
    assert_eq!(
        p1.items.iter().map(|r| r.payout_id).collect::<Vec<_>>(),
        mine[..2]
    );
    let p2 = list_for(&e.journal, user(1), &page(p1.next));
    assert_eq!(
        p2.items.iter().map(|r| r.payout_id).collect::<Vec<_>>(),
        mine[2..]
    );
    assert_eq!(p2.next, None);
    assert!(p1.items.iter().all(|r| r.owner == user(1)));

    // Someone else's payout is NotFound, except for an admin; step entries are not payouts.
    assert_eq!(
        get_for(&e.journal, user(1), theirs, false),
        Err(PayoutError::NotFound { id: theirs })
    );
    assert_eq!(
        get_for(&e.journal, admin(), theirs, true).unwrap().owner,
        user(2)
    );
    let step = get_for(&e.journal, user(1), mine[0], false)
        .unwrap()
        .debit_entry
        .unwrap();
    assert_eq!(
        get_for(&e.journal, user(1), step, false),
        Err(PayoutError::NotFound { id: step })
    );
}
