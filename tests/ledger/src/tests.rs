//! Native unit tests of the ledger logic (no IC needed).

use crate::icrc3::hash_value;
use crate::ledger::*;
use crate::types::{ArchiveOptions, InitArgs};
use candid::{Nat, Principal};
use icrc_ledger_types::icrc::generic_value::{ICRC3Value, Value};
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::{Memo, TransferArg, TransferError};
use icrc_ledger_types::icrc2::approve::{ApproveArgs, ApproveError};
use icrc_ledger_types::icrc2::transfer_from::{TransferFromArgs, TransferFromError};
use icrc_ledger_types::icrc3::archive::GetArchivesArgs;
use icrc_ledger_types::icrc3::blocks::GetBlocksRequest;
use icrc_ledger_types::icrc3::transactions::GetTransactionsRequest;
use serde_bytes::ByteBuf;

const FEE: u128 = 10_000;
const T0: u64 = 1_700_000_000_000_000_000;
const SEC: u64 = 1_000_000_000;

fn p(n: u8) -> Principal {
    Principal::from_slice(&[n; 10])
}

fn acc(n: u8) -> Account {
    Account {
        owner: p(n),
        subaccount: None,
    }
}

fn minter() -> Account {
    acc(99)
}

fn archive_id() -> Principal {
    p(77)
}

fn init(archive: Option<ArchiveOptions>) -> InitArgs {
    InitArgs {
        minting_account: minter(),
        initial_balances: vec![
            (acc(1), Nat::from(1_000_000u64)),
            (acc(2), Nat::from(500u64)),
        ],
        transfer_fee: Nat::from(FEE),
        token_name: "Test".into(),
        token_symbol: "TST".into(),
        decimals: None,
        max_memo_length: None,
        archive_options: archive,
    }
}

fn ledger() -> Ledger {
    Ledger::new(init(None), T0).unwrap()
}

fn xfer(to: Account, amount: u128) -> TransferArg {
    TransferArg {
        from_subaccount: None,
        to,
        fee: None,
        created_at_time: None,
        memo: None,
        amount: Nat::from(amount),
    }
}

fn transfer(l: &mut Ledger, from: u8, arg: TransferArg, now: u64) -> Result<u64, TransferError> {
    l.icrc1_transfer(p(from), arg, now)
        .expect("no trap")
        .map(|n| n.0.try_into().unwrap())
}

fn bal(l: &Ledger, a: u8) -> u128 {
    l.balance_of(&acc(a))
}

fn all_blocks(l: &Ledger) -> Vec<ICRC3Value> {
    let r = l.icrc3_get_blocks(vec![GetBlocksRequest {
        start: Nat::from(0u8),
        length: Nat::from(10_000u32),
    }]);
    r.blocks.into_iter().map(|b| b.block).collect()
}

fn field<'a>(v: &'a ICRC3Value, path: &[&str]) -> Option<&'a ICRC3Value> {
    let mut cur = v;
    for k in path {
        let ICRC3Value::Map(m) = cur else { return None };
        cur = m.get(*k)?;
    }
    Some(cur)
}

fn nat(n: u64) -> ICRC3Value {
    ICRC3Value::Nat(Nat::from(n))
}

#[test]
fn init_mints_initial_balances_as_blocks() {
    let l = ledger();
    assert_eq!(bal(&l, 1), 1_000_000);
    assert_eq!(bal(&l, 2), 500);
    assert_eq!(l.total_supply(), 1_000_500);
    assert_eq!(l.log_length(), 2);
    let blocks = all_blocks(&l);
    assert_eq!(
        field(&blocks[0], &["tx", "op"]),
        Some(&ICRC3Value::Text("mint".into()))
    );
    assert_eq!(field(&blocks[0], &["phash"]), None);
    assert_eq!(field(&blocks[0], &["ts"]), Some(&nat(T0)));
}

#[test]
fn transfer_moves_funds_and_burns_fee() {
    let mut l = ledger();
    assert_eq!(transfer(&mut l, 1, xfer(acc(3), 1000), T0), Ok(2));
    assert_eq!(bal(&l, 1), 1_000_000 - 1000 - FEE);
    assert_eq!(bal(&l, 3), 1000);
    assert_eq!(l.total_supply(), 1_000_500 - FEE);
    // The default subaccount is the same account as no subaccount.
    let explicit = Account {
        owner: p(3),
        subaccount: Some([0; 32]),
    };
    assert_eq!(l.balance_of(&explicit), 1000);
}

#[test]
fn transfer_errors() {
    let mut l = ledger();
    let mut a = xfer(acc(3), 1);
    a.fee = Some(Nat::from(FEE + 1));
    assert_eq!(
        transfer(&mut l, 1, a, T0),
        Err(TransferError::BadFee {
            expected_fee: Nat::from(FEE)
        })
    );
    assert_eq!(
        transfer(&mut l, 2, xfer(acc(3), 1), T0),
        Err(TransferError::InsufficientFunds {
            balance: Nat::from(500u32)
        })
    );
    let mut huge = xfer(acc(3), 0);
    huge.amount = Nat::from(u128::MAX) * Nat::from(2u8);
    assert_eq!(
        transfer(&mut l, 1, huge, T0),
        Err(TransferError::InsufficientFunds {
            balance: Nat::from(1_000_000u32)
        })
    );
    // Nothing happened.
    assert_eq!(l.log_length(), 2);
    assert_eq!(bal(&l, 1), 1_000_000);
}

#[test]
fn memo_longer_than_max_traps_like_the_dfinity_ledger() {
    let mut l = ledger();
    let mut a = xfer(acc(3), 1);
    a.memo = Some(Memo::from(vec![1u8; 32]));
    assert!(transfer(&mut l, 1, a.clone(), T0).is_ok());
    a.memo = Some(Memo::from(vec![1u8; 33]));
    let err = l.icrc1_transfer(p(1), a, T0).unwrap_err();
    assert!(
        err.contains("33 bytes is above the allowed limit of 32"),
        "{err}"
    );

    let mut args = init(None);
    args.max_memo_length = Some(64);
    let mut l = Ledger::new(args, T0).unwrap();
    let mut a = xfer(acc(3), 1);
    a.memo = Some(Memo::from(vec![1u8; 64]));
    assert!(transfer(&mut l, 1, a, T0).is_ok());
}

#[test]
fn dedup_only_with_created_at_time() {
    let mut l = ledger();
    let a = xfer(acc(3), 10);
    let i1 = transfer(&mut l, 1, a.clone(), T0).unwrap();
    let i2 = transfer(&mut l, 1, a.clone(), T0).unwrap();
    assert_ne!(i1, i2);

    let mut a = a;
    a.created_at_time = Some(T0);
    let i3 = transfer(&mut l, 1, a.clone(), T0).unwrap();
    assert_eq!(
        transfer(&mut l, 1, a.clone(), T0 + 5 * SEC),
        Err(TransferError::Duplicate {
            duplicate_of: Nat::from(i3)
        })
    );
    // Another caller sending the same args is another transaction.
    l.mint(acc(2), 10 * FEE, T0).unwrap();
    assert!(transfer(&mut l, 2, a, T0).is_ok());
}

#[test]
fn fee_option_and_subaccount_encoding_are_part_of_the_identity() {
    let mut l = ledger();
    let mut a = xfer(acc(3), 10);
    a.created_at_time = Some(T0);
    let i_none = transfer(&mut l, 1, a.clone(), T0).unwrap();
    let mut with_fee = a.clone();
    with_fee.fee = Some(Nat::from(FEE));
    let i_fee = transfer(&mut l, 1, with_fee.clone(), T0).unwrap();
    assert_ne!(i_none, i_fee);
    assert_eq!(
        transfer(&mut l, 1, with_fee, T0),
        Err(TransferError::Duplicate {
            duplicate_of: Nat::from(i_fee)
        })
    );
    let mut explicit_to = a.clone();
    explicit_to.to.subaccount = Some([0; 32]);
    assert!(transfer(&mut l, 1, explicit_to, T0).is_ok());
    let mut explicit_from = a.clone();
    explicit_from.from_subaccount = Some([0; 32]);
    assert!(transfer(&mut l, 1, explicit_from, T0).is_ok());
    let mut memo = a.clone();
    memo.memo = Some(Memo::from(vec![1, 2, 3]));
    assert!(transfer(&mut l, 1, memo, T0).is_ok());
    assert_eq!(
        transfer(&mut l, 1, a, T0),
        Err(TransferError::Duplicate {
            duplicate_of: Nat::from(i_none)
        })
    );
}

#[test]
fn too_old_and_created_in_future_boundaries() {
    let mut l = ledger();
    let created = T0;
    let mut a = xfer(acc(3), 10);
    a.created_at_time = Some(created);
    let i = transfer(&mut l, 1, a.clone(), T0).unwrap();
    // created + window == now: still inside the window → Duplicate.
    assert_eq!(
        transfer(&mut l, 1, a.clone(), created + TX_WINDOW_NANOS),
        Err(TransferError::Duplicate {
            duplicate_of: Nat::from(i)
        })
    );
    // created + window < now → TooOld (no drift allowance on this side, as ledger-canister-core).
    assert_eq!(
        transfer(&mut l, 1, a.clone(), created + TX_WINDOW_NANOS + 1),
        Err(TransferError::TooOld)
    );
    // Future: up to now + 60 s is fine, beyond is CreatedInFuture.
    let now = T0 + 10 * SEC;
    let mut f = xfer(acc(4), 10);
    f.created_at_time = Some(now + PERMITTED_DRIFT_NANOS);
    assert!(transfer(&mut l, 1, f.clone(), now).is_ok());
    f.created_at_time = Some(now + PERMITTED_DRIFT_NANOS + 1);
    assert_eq!(
        transfer(&mut l, 1, f.clone(), now),
        Err(TransferError::CreatedInFuture { ledger_time: now })
    );
    f.created_at_time = Some(u64::MAX);
    assert_eq!(
        transfer(&mut l, 1, f, now),
        Err(TransferError::CreatedInFuture { ledger_time: now })
    );
}

#[test]
fn dedup_entries_are_purged_after_window_plus_drift() {
    let mut l = ledger();
    let mut a = xfer(acc(3), 10);
    a.created_at_time = Some(T0);
    transfer(&mut l, 1, a, T0).unwrap();
    assert_eq!(l.stats().dedup_entries, 1);
    // Any later transaction purges entries whose block ts + window + drift < now.
    transfer(
        &mut l,
        1,
        xfer(acc(3), 1),
        T0 + TX_WINDOW_NANOS + PERMITTED_DRIFT_NANOS,
    )
    .unwrap();
    assert_eq!(l.stats().dedup_entries, 1);
    transfer(
        &mut l,
        1,
        xfer(acc(3), 1),
        T0 + TX_WINDOW_NANOS + PERMITTED_DRIFT_NANOS + 1,
    )
    .unwrap();
    assert_eq!(l.stats().dedup_entries, 0);
}

#[test]
fn mint_and_burn_through_the_minting_account() {
    let mut l = ledger();
    let i = l
        .icrc1_transfer(minter().owner, xfer(acc(5), 777), T0)
        .unwrap()
        .unwrap();
    assert_eq!(bal(&l, 5), 777);
    let blocks = all_blocks(&l);
    let b = &blocks[usize::try_from(i.0).unwrap()];
    assert_eq!(
        field(b, &["tx", "op"]),
        Some(&ICRC3Value::Text("mint".into()))
    );
    assert_eq!(field(b, &["fee"]), None);
    // Mint with a non-zero fee → BadFee { 0 }.
    let mut m = xfer(acc(5), 1);
    m.fee = Some(Nat::from(FEE));
    assert_eq!(
        l.icrc1_transfer(minter().owner, m, T0).unwrap(),
        Err(TransferError::BadFee {
            expected_fee: Nat::from(0u8)
        })
    );
    // Burn: no fee; at least min(fee, balance); never zero.
    assert_eq!(
        transfer(&mut l, 1, xfer(minter(), FEE - 1), T0),
        Err(TransferError::BadBurn {
            min_burn_amount: Nat::from(FEE)
        })
    );
    assert_eq!(
        transfer(&mut l, 1, xfer(minter(), 0), T0),
        Err(TransferError::BadBurn {
            min_burn_amount: Nat::from(FEE)
        })
    );
    // Balance 500 < fee: the whole balance may be burned.
    assert!(transfer(&mut l, 2, xfer(minter(), 500), T0).is_ok());
    assert_eq!(bal(&l, 2), 0);
    let before = l.total_supply();
    let mut burn = xfer(minter(), FEE);
    burn.fee = Some(Nat::from(0u8));
    assert!(transfer(&mut l, 1, burn, T0).is_ok());
    assert_eq!(l.total_supply(), before - FEE);
    assert_eq!(l.balance_of(&minter()), 0);
}

fn approve_args(spender: Account, amount: u128) -> ApproveArgs {
    ApproveArgs {
        from_subaccount: None,
        spender,
        amount: Nat::from(amount),
        expected_allowance: None,
        expires_at: None,
        fee: None,
        memo: None,
        created_at_time: None,
    }
}

fn from_args(from: Account, to: Account, amount: u128) -> TransferFromArgs {
    TransferFromArgs {
        spender_subaccount: None,
        from,
        to,
        amount: Nat::from(amount),
        fee: None,
        memo: None,
        created_at_time: None,
    }
}

#[test]
fn approve_and_transfer_from() {
    let mut l = ledger();
    l.icrc2_approve(p(1), approve_args(acc(2), 5 * FEE), T0)
        .unwrap()
        .unwrap();
    assert_eq!(bal(&l, 1), 1_000_000 - FEE);
    assert_eq!(
        l.allowance(&acc(1), &acc(2), T0).allowance,
        Nat::from(5 * FEE)
    );
    // Not enough allowance for amount + fee.
    assert_eq!(
        l.icrc2_transfer_from(p(2), from_args(acc(1), acc(3), 4 * FEE + 1), T0)
            .unwrap(),
        Err(TransferFromError::InsufficientAllowance {
            allowance: Nat::from(5 * FEE)
        })
    );
    l.icrc2_transfer_from(p(2), from_args(acc(1), acc(3), 4 * FEE - 1), T0)
        .unwrap()
        .unwrap();
    assert_eq!(bal(&l, 3), u128::from(4 * FEE as u64 - 1));
    assert_eq!(l.allowance(&acc(1), &acc(2), T0).allowance, Nat::from(1u8));
    // Third party without approval.
    assert_eq!(
        l.icrc2_transfer_from(p(4), from_args(acc(1), acc(3), 1), T0)
            .unwrap(),
        Err(TransferFromError::InsufficientAllowance {
            allowance: Nat::from(0u8)
        })
    );
    // Self transfer_from needs no approval, and records the spender.
    let i = l
        .icrc2_transfer_from(p(1), from_args(acc(1), acc(3), 1), T0)
        .unwrap()
        .unwrap();
    let b = &all_blocks(&l)[usize::try_from(i.0).unwrap()];
    assert_eq!(
        field(b, &["tx", "spender"]),
        Some(&crate::icrc3::account_value(&acc(1)))
    );
    // The minting account cannot be a transfer_from source.
    assert!(l
        .icrc2_transfer_from(p(2), from_args(minter(), acc(3), 1), T0)
        .is_err());
}

#[test]
fn transfer_from_insufficient_funds_after_allowance_check() {
    let mut l = ledger();
    // acc(2) has 500 < fee: its approval fails with InsufficientFunds.
    assert_eq!(
        l.icrc2_approve(p(2), approve_args(acc(3), 1000), T0)
            .unwrap(),
        Err(ApproveError::InsufficientFunds {
            balance: Nat::from(500u32)
        })
    );
    l.mint(acc(2), 2 * FEE, T0).unwrap();
    l.icrc2_approve(p(2), approve_args(acc(3), 10 * FEE), T0)
        .unwrap()
        .unwrap();
    assert_eq!(
        l.icrc2_transfer_from(p(3), from_args(acc(2), acc(4), FEE), T0)
            .unwrap(),
        Err(TransferFromError::InsufficientFunds {
            balance: Nat::from(FEE + 500)
        })
    );
    assert_eq!(
        l.allowance(&acc(2), &acc(3), T0).allowance,
        Nat::from(10 * FEE)
    );
}

#[test]
fn approve_expiration_and_expected_allowance() {
    let mut l = ledger();
    let mut a = approve_args(acc(2), 100);
    a.expires_at = Some(T0 - 1);
    assert_eq!(
        l.icrc2_approve(p(1), a.clone(), T0).unwrap(),
        Err(ApproveError::Expired { ledger_time: T0 })
    );
    assert_eq!(bal(&l, 1), 1_000_000, "no fee on a rejected approval");
    a.expires_at = Some(T0 + 10);
    l.icrc2_approve(p(1), a, T0).unwrap().unwrap();
    let al = l.allowance(&acc(1), &acc(2), T0);
    assert_eq!(
        (al.allowance, al.expires_at),
        (Nat::from(100u8), Some(T0 + 10))
    );
    // Expired allowances read as zero.
    let al = l.allowance(&acc(1), &acc(2), T0 + 10);
    assert_eq!((al.allowance, al.expires_at), (Nat::from(0u8), None));

    let mut e = approve_args(acc(2), 200);
    e.expected_allowance = Some(Nat::from(5u8));
    assert_eq!(
        l.icrc2_approve(p(1), e.clone(), T0).unwrap(),
        Err(ApproveError::AllowanceChanged {
            current_allowance: Nat::from(100u8)
        })
    );
    e.expected_allowance = Some(Nat::from(100u8));
    l.icrc2_approve(p(1), e, T0).unwrap().unwrap();
    assert_eq!(
        l.allowance(&acc(1), &acc(2), T0).allowance,
        Nat::from(200u8)
    );
    // Self approval traps, as in the DFINITY ledger.
    assert!(l.icrc2_approve(p(1), approve_args(acc(1), 1), T0).is_err());
}

#[test]
fn approve_dedup_and_fee_check() {
    let mut l = ledger();
    let mut a = approve_args(acc(2), 100);
    a.fee = Some(Nat::from(1u8));
    assert_eq!(
        l.icrc2_approve(p(1), a.clone(), T0).unwrap(),
        Err(ApproveError::BadFee {
            expected_fee: Nat::from(FEE)
        })
    );
    a.fee = None;
    a.created_at_time = Some(T0);
    let i = l.icrc2_approve(p(1), a.clone(), T0).unwrap().unwrap();
    assert_eq!(
        l.icrc2_approve(p(1), a, T0).unwrap(),
        Err(ApproveError::Duplicate { duplicate_of: i })
    );
}

#[test]
fn faults_unavailable_counts_down_and_trap_persists() {
    let mut l = ledger();
    l.faults.unavailable_next = 2;
    assert_eq!(
        transfer(&mut l, 1, xfer(acc(3), 1), T0),
        Err(TransferError::TemporarilyUnavailable)
    );
    assert_eq!(
        l.icrc2_approve(p(1), approve_args(acc(2), 1), T0).unwrap(),
        Err(ApproveError::TemporarilyUnavailable)
    );
    assert!(transfer(&mut l, 1, xfer(acc(3), 1), T0).is_ok());
    assert_eq!(l.log_length(), 3);
    l.faults.trap = true;
    assert!(l.icrc1_transfer(p(1), xfer(acc(3), 1), T0).is_err());
    assert!(l.icrc1_transfer(p(1), xfer(acc(3), 1), T0).is_err());
    l.faults.trap = false;
    assert!(transfer(&mut l, 1, xfer(acc(3), 1), T0).is_ok());
}

#[test]
fn blocks_chain_and_follow_the_icrc3_schema() {
    let mut l = ledger();
    let mut a = xfer(acc(3), 10);
    a.created_at_time = Some(T0 - 5);
    a.memo = Some(Memo::from(b"journal-memo".to_vec()));
    transfer(&mut l, 1, a.clone(), T0).unwrap();
    a.fee = Some(Nat::from(FEE));
    transfer(&mut l, 1, a, T0 + 1).unwrap();
    l.icrc2_approve(p(1), approve_args(acc(2), 2 * FEE), T0 + 2)
        .unwrap()
        .unwrap();
    l.icrc2_transfer_from(p(2), from_args(acc(1), acc(3), 1), T0 + 3)
        .unwrap()
        .unwrap();
    transfer(&mut l, 1, xfer(minter(), FEE), T0 + 4).unwrap();

    let blocks = all_blocks(&l);
    assert_eq!(blocks.len(), 7);
    for (i, b) in blocks.iter().enumerate() {
        icrc_ledger_types::icrc3::schema::validate(&Value::from(b.clone()))
            .unwrap_or_else(|e| panic!("block {i}: {e:?}"));
        if i > 0 {
            let expected = ICRC3Value::Blob(ByteBuf::from(hash_value(&blocks[i - 1]).to_vec()));
            assert_eq!(field(b, &["phash"]), Some(&expected), "block {i}");
        }
    }
    assert_eq!(l.last_hash(), Some(hash_value(&blocks[6])));
    // fee not sent: top-level "fee"; tx.ts = created_at_time; top-level ts = ledger time.
    let b2 = &blocks[2];
    assert_eq!(field(b2, &["fee"]), Some(&nat(FEE as u64)));
    assert_eq!(field(b2, &["tx", "fee"]), None);
    assert_eq!(field(b2, &["tx", "ts"]), Some(&nat(T0 - 5)));
    assert_eq!(field(b2, &["ts"]), Some(&nat(T0)));
    assert_eq!(
        field(b2, &["tx", "memo"]),
        Some(&ICRC3Value::Blob(ByteBuf::from(b"journal-memo".to_vec())))
    );
    assert_eq!(
        field(b2, &["tx", "from"]),
        Some(&crate::icrc3::account_value(&acc(1)))
    );
    assert_eq!(
        field(b2, &["tx", "to"]),
        Some(&crate::icrc3::account_value(&acc(3)))
    );
    assert_eq!(field(b2, &["tx", "amt"]), Some(&nat(10)));
    // fee sent: tx.fee, no top-level fee.
    let b3 = &blocks[3];
    assert_eq!(field(b3, &["fee"]), None);
    assert_eq!(field(b3, &["tx", "fee"]), Some(&nat(FEE as u64)));
    // approve / 2xfer / burn.
    assert_eq!(
        field(&blocks[4], &["tx", "op"]),
        Some(&ICRC3Value::Text("approve".into()))
    );
    assert_eq!(
        field(&blocks[5], &["tx", "spender"]),
        Some(&crate::icrc3::account_value(&acc(2)))
    );
    assert_eq!(
        field(&blocks[6], &["tx", "op"]),
        Some(&ICRC3Value::Text("burn".into()))
    );

    // Legacy view.
    let r = l
        .get_transactions(GetTransactionsRequest {
            start: Nat::from(2u8),
            length: Nat::from(2u8),
        })
        .unwrap();
    assert_eq!(r.log_length, Nat::from(7u8));
    assert_eq!(r.first_index, Nat::from(2u8));
    assert_eq!(r.transactions.len(), 2);
    let t = r.transactions[0].transfer.as_ref().unwrap();
    assert_eq!(t.created_at_time, Some(T0 - 5));
    assert_eq!(
        t.fee,
        Some(Nat::from(FEE)),
        "legacy fee = charged fee, as DFINITY"
    );
    assert_eq!(r.transactions[0].timestamp, T0);
}

fn archived_ledger(trigger: u64, num: u64) -> Ledger {
    Ledger::new(
        init(Some(ArchiveOptions {
            archive: archive_id(),
            trigger_threshold: trigger,
            num_blocks_to_archive: num,
        })),
        T0,
    )
    .unwrap()
}

/// Runs one archiving round against `store` as the canister does.
fn archive_round(l: &mut Ledger, store: &mut ArchiveStore, force: Option<u64>) -> u64 {
    let Some((start, blocks)) = l.blocks_to_archive(force) else {
        return 0;
    };
    let n = blocks.len() as u64;
    store.append(p(50), start, blocks).unwrap();
    l.blocks_archived(start, n);
    n
}

#[test]
fn archiving_trigger_and_split_reads() {
    let mut l = archived_ledger(5, 3);
    let mut store = ArchiveStore::new(p(50));
    assert_eq!(
        l.blocks_to_archive(None),
        None,
        "2 local blocks < trigger 5"
    );
    for i in 0..3 {
        let mut a = xfer(acc(3), 1);
        a.memo = Some(Memo::from(vec![i]));
        a.created_at_time = Some(T0);
        transfer(&mut l, 1, a, T0).unwrap();
    }
    let before = all_blocks(&l);
    assert_eq!(archive_round(&mut l, &mut store, None), 3);
    assert_eq!(l.first_local(), 3);
    assert_eq!(l.log_length(), 5);
    assert_eq!(l.blocks_to_archive(None), None);

    // Dedup survives archiving (the index is independent of where blocks live).
    let mut a = xfer(acc(3), 1);
    a.memo = Some(Memo::from(vec![0]));
    a.created_at_time = Some(T0);
    assert_eq!(
        transfer(&mut l, 1, a, T0),
        Err(TransferError::Duplicate {
            duplicate_of: Nat::from(2u8)
        })
    );

    let r = l.icrc3_get_blocks(vec![GetBlocksRequest {
        start: Nat::from(1u8),
        length: Nat::from(100u8),
    }]);
    assert_eq!(r.log_length, Nat::from(5u8));
    assert_eq!(
        r.blocks.iter().map(|b| b.id.clone()).collect::<Vec<_>>(),
        vec![Nat::from(3u8), Nat::from(4u8)]
    );
    assert_eq!(r.archived_blocks.len(), 1);
    let ab = &r.archived_blocks[0];
    assert_eq!(ab.callback.canister_id, archive_id());
    assert_eq!(ab.callback.method, "icrc3_get_blocks");
    assert_eq!(
        ab.args,
        vec![GetBlocksRequest {
            start: Nat::from(1u8),
            length: Nat::from(2u8)
        }]
    );
    let from_archive = store.icrc3_get_blocks(ab.args.clone()).unwrap();
    let ids: Vec<_> = from_archive.blocks.iter().map(|b| b.id.clone()).collect();
    assert_eq!(ids, vec![Nat::from(1u8), Nat::from(2u8)]);
    for b in from_archive.blocks.iter().chain(r.blocks.iter()) {
        let i = usize::try_from(b.id.0.clone()).unwrap();
        assert_eq!(b.block, before[i], "block {i} unchanged by archiving");
    }

    // Legacy.
    let t = l
        .get_transactions(GetTransactionsRequest {
            start: Nat::from(0u8),
            length: Nat::from(10u8),
        })
        .unwrap();
    assert_eq!(t.first_index, Nat::from(3u8));
    assert_eq!(t.transactions.len(), 2);
    assert_eq!(t.archived_transactions.len(), 1);
    let at = &t.archived_transactions[0];
    assert_eq!(
        (at.start.clone(), at.length.clone()),
        (Nat::from(0u8), Nat::from(3u8))
    );
    assert_eq!(at.callback.method, ARCHIVE_GET_TRANSACTIONS);
    let range = store
        .get_transactions(GetTransactionsRequest {
            start: at.start.clone(),
            length: at.length.clone(),
        })
        .unwrap();
    assert_eq!(range.transactions.len(), 3);
    assert_eq!(range.transactions[0].kind, "mint");

    // Archives list.
    let arch = l.icrc3_get_archives(GetArchivesArgs { from: None });
    assert_eq!(arch.len(), 1);
    assert_eq!(
        (arch[0].start.clone(), arch[0].end.clone()),
        (Nat::from(0u8), Nat::from(2u8))
    );
    assert!(l
        .icrc3_get_archives(GetArchivesArgs {
            from: Some(archive_id())
        })
        .is_empty());

    // Unavailable archive: reads fail (the canister traps).
    store.unavailable = true;
    assert!(store.icrc3_get_blocks(ab.args.clone()).is_err());
    assert!(store
        .get_transactions(GetTransactionsRequest {
            start: Nat::from(0u8),
            length: Nat::from(1u8)
        })
        .is_err());
}

#[test]
fn forced_archiving_and_archive_append_rules() {
    let mut l = archived_ledger(0, 0);
    let mut store = ArchiveStore::new(p(50));
    assert_eq!(
        l.blocks_to_archive(None),
        None,
        "threshold 0: only forced rounds"
    );
    assert_eq!(archive_round(&mut l, &mut store, Some(1)), 1);
    assert_eq!(archive_round(&mut l, &mut store, Some(u64::MAX)), 1);
    assert_eq!(l.first_local(), 2);
    assert_eq!(archive_round(&mut l, &mut store, Some(u64::MAX)), 0);
    // While a round is in flight no second round starts.
    transfer(&mut l, 1, xfer(acc(3), 1), T0).unwrap();
    l.archiving = true;
    assert_eq!(l.blocks_to_archive(Some(10)), None);
    l.archiving = false;
    // Only the ledger may append, and only contiguously.
    assert!(store.append(p(51), 2, vec![]).is_err());
    assert!(store.append(p(50), 5, vec![]).is_err());
    let r = l.icrc3_get_blocks(vec![GetBlocksRequest {
        start: Nat::from(0u8),
        length: Nat::from(3u8),
    }]);
    assert_eq!(r.blocks.len(), 1);
    assert_eq!(r.archived_blocks[0].args[0].length, Nat::from(2u8));
}

#[test]
fn get_blocks_ranges_are_clamped() {
    let l = ledger();
    let r = l.icrc3_get_blocks(vec![
        GetBlocksRequest {
            start: Nat::from(1u8),
            length: Nat::from(100u8),
        },
        GetBlocksRequest {
            start: Nat::from(50u8),
            length: Nat::from(1u8),
        },
    ]);
    assert_eq!(r.blocks.len(), 1);
    assert!(r.archived_blocks.is_empty());
    let t = l
        .get_transactions(GetTransactionsRequest {
            start: Nat::from(9u8),
            length: Nat::from(1u8),
        })
        .unwrap();
    assert!(t.transactions.is_empty());
    assert!(t.archived_transactions.is_empty());
}

#[test]
fn candid_interface_is_up_to_date() {
    let actual = crate::canister::candid_interface();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/ledger.did");
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if actual != expected {
        if std::env::var("UPDATE_DID").is_ok() {
            std::fs::write(path, &actual).unwrap();
        } else {
            panic!("ledger.did is stale; rerun with UPDATE_DID=1\n{actual}");
        }
    }
}

/// The upgrade path Candid-encodes the whole state: nothing (balances, approvals, blocks,
/// dedup index, faults) may be lost.
#[test]
fn state_survives_candid_roundtrip() {
    let mut l = archived_ledger(0, 0);
    let mut store = ArchiveStore::new(p(50));
    let mut a = xfer(acc(3), 10);
    a.created_at_time = Some(T0);
    let i = transfer(&mut l, 1, a.clone(), T0).unwrap();
    l.icrc2_approve(p(1), approve_args(acc(2), 5 * FEE), T0)
        .unwrap()
        .unwrap();
    archive_round(&mut l, &mut store, Some(2));
    l.faults.unavailable_next = 3;
    let bytes = candid::encode_one(&l).unwrap();
    let mut back: Ledger = candid::decode_one(&bytes).unwrap();
    assert_eq!(back.stats(), l.stats());
    assert_eq!(back.last_hash(), l.last_hash());
    assert_eq!(all_blocks(&back), all_blocks(&l));
    assert_eq!(
        back.allowance(&acc(1), &acc(2), T0),
        l.allowance(&acc(1), &acc(2), T0)
    );
    back.faults.unavailable_next = 0;
    assert_eq!(
        transfer(&mut back, 1, a, T0),
        Err(TransferError::Duplicate {
            duplicate_of: Nat::from(i)
        })
    );
    let store_back: ArchiveStore =
        candid::decode_one(&candid::encode_one(&store).unwrap()).unwrap();
    assert_eq!(store_back.blocks, store.blocks);
}
