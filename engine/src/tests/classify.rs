//! Every reject code and every ledger error variant, mapped as `docs/recovery.md` describes.

use crate::ledger::*;
use crate::runtime::CallError;
use crate::types::*;
use candid::{Nat, Principal};
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::{Memo, TransferArg, TransferError};
use icrc_ledger_types::icrc2::transfer_from::{TransferFromArgs, TransferFromError};

fn rej(code: RejectCode) -> CallError {
    CallError::Rejected {
        code,
        message: "m".into(),
    }
}

#[test]
fn reject_codes() {
    use RejectCode::*;
    for code in [SysFatal, SysTransient, DestinationInvalid] {
        assert!(
            matches!(classify_call_error(&rej(code)), CallOutcome::Rejected(FailureReason::NotDelivered { code: Some(c), .. }) if c == code),
            "{code:?} is a clean reject: not executed"
        );
    }
    for code in [CanisterReject, CanisterError, SysUnknown, Unrecognized(42)] {
        assert!(
            matches!(classify_call_error(&rej(code)), CallOutcome::Unknown { .. }),
            "{code:?} cannot prove non-execution"
        );
    }
    assert!(matches!(
        classify_call_error(&CallError::NotSent {
            message: "cycles".into()
        }),
        CallOutcome::Rejected(FailureReason::NotDelivered { code: None, .. })
    ));
    for raw in 0..10u32 {
        assert_eq!(RejectCode::from_raw(raw).raw(), raw);
    }
}

#[test]
fn transfer_errors() {
    let n = |v: u64| Nat::from(v);
    use TransferError as E;
    assert_eq!(
        classify_transfer_error(E::Duplicate { duplicate_of: n(9) }),
        CallOutcome::Executed { block: 9 }
    );
    assert_eq!(
        classify_transfer_error(E::BadFee { expected_fee: n(1) }),
        CallOutcome::Rejected(FailureReason::Ledger(LedgerError::BadFee {
            expected_fee: n(1)
        }))
    );
    assert_eq!(
        classify_transfer_error(E::BadBurn {
            min_burn_amount: n(1)
        }),
        CallOutcome::Rejected(FailureReason::Ledger(LedgerError::BadBurn {
            min_burn_amount: n(1)
        }))
    );
    assert_eq!(
        classify_transfer_error(E::InsufficientFunds { balance: n(1) }),
        CallOutcome::Rejected(FailureReason::Ledger(LedgerError::InsufficientFunds {
            balance: n(1)
        }))
    );
    assert_eq!(classify_transfer_error(E::TooOld), CallOutcome::TooOld);
    assert!(matches!(
        classify_transfer_error(E::CreatedInFuture { ledger_time: 1 }),
        CallOutcome::Transient { .. }
    ));
    assert!(matches!(
        classify_transfer_error(E::TemporarilyUnavailable),
        CallOutcome::Transient { .. }
    ));
    assert!(matches!(
        classify_transfer_error(E::GenericError {
            error_code: n(1),
            message: "x".into()
        }),
        CallOutcome::Transient { .. }
    ));
    // A block index that does not fit u64 is never guessed at.
    let huge = Nat::from(u128::MAX);
    assert!(matches!(
        classify_transfer_error(E::Duplicate { duplicate_of: huge }),
        CallOutcome::Unknown { .. }
    ));
}

#[test]
fn transfer_from_errors() {
    let n = |v: u64| Nat::from(v);
    use TransferFromError as E;
    assert_eq!(
        classify_transfer_from_error(E::Duplicate { duplicate_of: n(3) }),
        CallOutcome::Executed { block: 3 }
    );
    assert!(matches!(
        classify_transfer_from_error(E::BadFee { expected_fee: n(1) }),
        CallOutcome::Rejected(_)
    ));
    assert!(matches!(
        classify_transfer_from_error(E::BadBurn {
            min_burn_amount: n(1)
        }),
        CallOutcome::Rejected(_)
    ));
    assert!(matches!(
        classify_transfer_from_error(E::InsufficientFunds { balance: n(1) }),
        CallOutcome::Rejected(_)
    ));
    assert_eq!(
        classify_transfer_from_error(E::InsufficientAllowance { allowance: n(2) }),
        CallOutcome::Rejected(FailureReason::Ledger(LedgerError::InsufficientAllowance {
            allowance: n(2)
        }))
    );
    assert_eq!(classify_transfer_from_error(E::TooOld), CallOutcome::TooOld);
    assert!(matches!(
        classify_transfer_from_error(E::CreatedInFuture { ledger_time: 1 }),
        CallOutcome::Transient { .. }
    ));
    assert!(matches!(
        classify_transfer_from_error(E::TemporarilyUnavailable),
        CallOutcome::Transient { .. }
    ));
    assert!(matches!(
        classify_transfer_from_error(E::GenericError {
            error_code: n(1),
            message: "x".into()
        }),
        CallOutcome::Transient { .. }
    ));
}

fn op() -> LedgerOp {
    LedgerOp::Icrc1Transfer(TransferArg {
        from_subaccount: None,
        to: Account::from(Principal::from_slice(&[2])),
        fee: None,
        created_at_time: Some(5),
        memo: Some(Memo::from(crate::memo::encode(1))),
        amount: Nat::from(5u8),
    })
}

#[test]
fn full_replies_decode_and_garbage_is_unknown() {
    let ok = candid::encode_one(Ok::<Nat, TransferError>(Nat::from(4u8))).unwrap();
    assert_eq!(
        classify_ledger_call(&op(), &Ok(ok)),
        CallOutcome::Executed { block: 4 }
    );
    let err = candid::encode_one(Err::<Nat, TransferError>(TransferError::TooOld)).unwrap();
    assert_eq!(classify_ledger_call(&op(), &Ok(err)), CallOutcome::TooOld);
    assert!(matches!(
        classify_ledger_call(&op(), &Ok(vec![1, 2, 3])),
        CallOutcome::Unknown { .. }
    ));
    let from_op = LedgerOp::Icrc2TransferFrom(TransferFromArgs {
        spender_subaccount: None,
        from: Account::from(Principal::from_slice(&[3])),
        to: Account::from(Principal::from_slice(&[2])),
        amount: Nat::from(5u8),
        fee: None,
        memo: None,
        created_at_time: Some(1),
    });
    let e = candid::encode_one(Err::<Nat, TransferFromError>(
        TransferFromError::InsufficientAllowance {
            allowance: Nat::from(0u8),
        },
    ))
    .unwrap();
    assert!(matches!(
        classify_ledger_call(&from_op, &Ok(e)),
        CallOutcome::Rejected(_)
    ));
    assert!(matches!(
        classify_ledger_call(&from_op, &Err(rej(RejectCode::SysUnknown))),
        CallOutcome::Unknown { .. }
    ));
}

#[test]
fn block_matching_requires_every_field() {
    let me = Principal::from_slice(&[9]);
    let intent = TransferIntent {
        window: None,
        ledger: Principal::from_slice(&[1]),
        op: op(),
        executor: Executor::SelfCanister,
    };
    let good = ObservedTransfer {
        index: 0,
        ledger_time: 5,
        from: Account::from(me),
        to: Account::from(Principal::from_slice(&[2])),
        spender: None,
        amount: Nat::from(5u8),
        fee: None,
        memo: Some(crate::memo::encode(1)),
        created_at_time: Some(5),
        op: ObservedOp::Xfer,
    };
    assert!(matches(&intent, me, &good));
    // Explicit zero subaccount equals none.
    let mut z = good.clone();
    z.from.subaccount = Some([0; 32]);
    assert!(matches(&intent, me, &z));
    type Mutation = Box<dyn Fn(&mut ObservedTransfer)>;
    let variants: Vec<Mutation> = vec![
        Box::new(|t| t.from = Account::from(Principal::from_slice(&[8]))),
        Box::new(|t| t.to = Account::from(Principal::from_slice(&[8]))),
        Box::new(|t| t.spender = Some(Account::from(Principal::from_slice(&[9])))),
        Box::new(|t| t.amount = Nat::from(6u8)),
        Box::new(|t| t.fee = Some(Nat::from(10u8))),
        Box::new(|t| t.memo = Some(crate::memo::encode(2))),
        Box::new(|t| t.memo = None),
        Box::new(|t| t.created_at_time = Some(6)),
        Box::new(|t| t.created_at_time = None),
    ];
    for (i, v) in variants.iter().enumerate() {
        let mut t = good.clone();
        v(&mut t);
        assert!(!matches(&intent, me, &t), "variant {i} must not match");
    }
}

#[test]
fn icrc3_block_parsing() {
    let mut l = super::model_ledger::ModelLedger::new(10, 1);
    l.push_noise(3, Some(vec![1, 2]));
    let b = parse_icrc3_block(0, &l.block_value(0)).unwrap();
    assert_eq!(b.ledger_time, 3);
    let t = b.transfer.unwrap();
    assert_eq!(t.memo, Some(vec![1, 2]));
    assert_eq!(t.created_at_time, Some(3));
    use icrc_ledger_types::icrc::generic_value::ICRC3Value;
    assert!(parse_icrc3_block(0, &ICRC3Value::Text("x".into())).is_err());
    // A non-transfer block (e.g. approve) is a block without a transfer, not an error.
    let mut m = std::collections::BTreeMap::new();
    m.insert("ts".to_string(), ICRC3Value::Nat(Nat::from(1u8)));
    let mut tx = std::collections::BTreeMap::new();
    tx.insert("op".to_string(), ICRC3Value::Text("approve".into()));
    m.insert("tx".to_string(), ICRC3Value::Map(tx));
    let b = parse_icrc3_block(1, &ICRC3Value::Map(m)).unwrap();
    assert!(b.transfer.is_none());
}

fn burn_mint_block(op: &str, who: Account, amount: u64, memo: Vec<u8>, cat: u64) -> ICRC3Value {
    use serde_bytes::ByteBuf;
    use std::collections::BTreeMap;
    // Encoded as tests/ledger (and the DFINITY ledger) does: burn has from, mint has to; no
    // fee anywhere.
    let mut acc = vec![ICRC3Value::Blob(ByteBuf::from(
        who.owner.as_slice().to_vec(),
    ))];
    if let Some(s) = who.subaccount {
        acc.push(ICRC3Value::Blob(ByteBuf::from(s.to_vec())));
    }
    let mut tx = BTreeMap::new();
    tx.insert("op".to_string(), ICRC3Value::Text(op.into()));
    let side = if op == "burn" { "from" } else { "to" };
    tx.insert(side.to_string(), ICRC3Value::Array(acc));
    tx.insert("amt".to_string(), ICRC3Value::Nat(Nat::from(amount)));
    tx.insert("memo".to_string(), ICRC3Value::Blob(ByteBuf::from(memo)));
    tx.insert("ts".to_string(), ICRC3Value::Nat(Nat::from(cat)));
    let mut m = BTreeMap::new();
    m.insert("ts".to_string(), ICRC3Value::Nat(Nat::from(cat + 1)));
    m.insert("tx".to_string(), ICRC3Value::Map(tx));
    ICRC3Value::Map(m)
}

use icrc_ledger_types::icrc::generic_value::ICRC3Value;

#[test]
fn burn_and_mint_blocks_are_matched() {
    let me = Principal::from_slice(&[9]);
    let minter = Account::from(Principal::from_slice(&[3]));
    let memo = crate::memo::encode(1);
    // A transfer to the minting account is recorded as a burn.
    let burn_intent = TransferIntent {
        window: None,
        ledger: Principal::from_slice(&[1]),
        executor: Executor::SelfCanister,
        op: LedgerOp::Icrc1Transfer(TransferArg {
            from_subaccount: None,
            to: minter,
            fee: None,
            created_at_time: Some(5),
            memo: Some(Memo::from(memo.clone())),
            amount: Nat::from(50u8),
        }),
    };
    let b = parse_icrc3_block(
        0,
        &burn_mint_block("burn", Account::from(me), 50, memo.clone(), 5),
    )
    .unwrap();
    let t = b.transfer.expect("a burn is a transfer");
    assert_eq!(t.op, ObservedOp::Burn);
    assert!(matches(&burn_intent, me, &t));
    assert!(contradicts(&burn_intent, me, &t).is_none());
    let other = parse_icrc3_block(
        0,
        &burn_mint_block("burn", Account::from(me), 51, memo.clone(), 5),
    )
    .unwrap()
    .transfer
    .unwrap();
    assert!(!matches(&burn_intent, me, &other));
    // A transfer from the minting account (we are the minter) is recorded as a mint.
    let to = Account::from(Principal::from_slice(&[2]));
    let mint_intent = TransferIntent {
        window: None,
        op: LedgerOp::Icrc1Transfer(TransferArg {
            from_subaccount: None,
            to,
            fee: None,
            created_at_time: Some(5),
            memo: Some(Memo::from(memo.clone())),
            amount: Nat::from(50u8),
        }),
        ..burn_intent.clone()
    };
    let t = parse_icrc3_block(0, &burn_mint_block("mint", to, 50, memo.clone(), 5))
        .unwrap()
        .transfer
        .unwrap();
    assert_eq!(t.op, ObservedOp::Mint);
    assert!(matches(&mint_intent, me, &t));
    assert!(!matches(&burn_intent, me, &t));
    // A burn never matches an intent with a non-zero fee (the ledger would refuse it).
    let mut with_fee = burn_intent.clone();
    if let LedgerOp::Icrc1Transfer(a) = &mut with_fee.op {
        a.fee = Some(Nat::from(10u8));
    }
    let t = parse_icrc3_block(0, &burn_mint_block("burn", Account::from(me), 50, memo, 5))
        .unwrap()
        .transfer
        .unwrap();
    assert!(!matches(&with_fee, me, &t));
    // ...but it carries our memo and was made from our account: contradicting evidence.
    assert!(contradicts(&with_fee, me, &t).is_some());
}

#[test]
fn contradicting_evidence_only_for_blocks_only_we_could_make() {
    let me = Principal::from_slice(&[9]);
    let intent = TransferIntent {
        window: None,
        ledger: Principal::from_slice(&[1]),
        op: op(),
        executor: Executor::SelfCanister,
    };
    let LedgerOp::Icrc1Transfer(a) = &intent.op else {
        unreachable!()
    };
    let ours = ObservedTransfer {
        index: 4,
        ledger_time: 5,
        from: Account::from(me),
        to: a.to,
        spender: None,
        amount: a.amount.clone() + 1u8,
        fee: a.fee.clone(),
        memo: a.memo.as_ref().map(|m| m.0.to_vec()),
        created_at_time: a.created_at_time,
        op: ObservedOp::Xfer,
    };
    assert!(!matches(&intent, me, &ours));
    assert!(contradicts(&intent, me, &ours).unwrap().contains("block 4"));
    // Someone else's transfer with our memo proves nothing either way.
    let mut theirs = ours.clone();
    theirs.from = Account::from(Principal::from_slice(&[8]));
    assert!(contradicts(&intent, me, &theirs).is_none());
    // A transfer_from out of our account by another spender is not ours.
    let mut delegated = ours.clone();
    delegated.spender = Some(Account::from(Principal::from_slice(&[8])));
    assert!(contradicts(&intent, me, &delegated).is_none());
    // Our account, a different memo: unrelated.
    let mut other_memo = ours.clone();
    other_memo.memo = Some(crate::memo::encode(77));
    assert!(contradicts(&intent, me, &other_memo).is_none());
}

#[test]
fn tick_report_round_trips_through_candid() {
    let r = crate::TickReport {
        examined: 3,
        resolved: 2,
        skipped_overlap: false,
        budget_exhausted: true,
        more_due: true,
        instructions: 7,
    };
    let bytes = candid::encode_one(&r).unwrap();
    assert_eq!(candid::decode_one::<crate::TickReport>(&bytes).unwrap(), r);
}
