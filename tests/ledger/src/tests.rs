//! Native unit tests of the ledger logic (no IC needed).

use crate::icrc3::hash_value;
use crate::icrc3::Block;
use crate::ledger::*;
use crate::limits::*;
use crate::types::{ArchiveInitArgs, ArchiveOptions, InitArgs, Limits};
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
        limits: None,
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
    let mut out = vec![];
    loop {
        let r = l
            .icrc3_get_blocks(vec![GetBlocksRequest {
                start: Nat::from(l.first_local() + out.len() as u64),
                length: Nat::from(10_000u32),
            }])
            .unwrap();
        if r.blocks.is_empty() {
            return out;
        }
        out.extend(r.blocks.into_iter().map(|b| b.block));
    }
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
        transfer(&mut l, 1, a.clone(), created + TRANSACTION_WINDOW_NANOS),
        Err(TransferError::Duplicate {
            duplicate_of: Nat::from(i)
        })
    );
    // created + window < now → TooOld (no drift allowance on this side, as ledger-canister-core).
    assert_eq!(
        transfer(&mut l, 1, a.clone(), created + TRANSACTION_WINDOW_NANOS + 1),
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
    // The two initial mints carry created_at_time too (as DFINITY's).
    assert_eq!(l.stats(T0).dedup_entries, 3);
    // Any later transaction purges entries whose block ts + window + drift < now.
    transfer(
        &mut l,
        1,
        xfer(acc(3), 1),
        T0 + TRANSACTION_WINDOW_NANOS + PERMITTED_DRIFT_NANOS,
    )
    .unwrap();
    assert_eq!(l.stats(T0).dedup_entries, 3);
    transfer(
        &mut l,
        1,
        xfer(acc(3), 1),
        T0 + TRANSACTION_WINDOW_NANOS + PERMITTED_DRIFT_NANOS + 1,
    )
    .unwrap();
    assert_eq!(l.stats(T0).dedup_entries, 0);
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

fn ledger_id() -> Principal {
    p(50)
}

fn archive_opts(trigger: u64, num: u64, node_bytes: Option<u64>) -> ArchiveOptions {
    ArchiveOptions {
        trigger_threshold: trigger,
        num_blocks_to_archive: num,
        node_max_memory_size_bytes: node_bytes,
        max_message_size_bytes: None,
        controller_id: p(70),
        more_controller_ids: Some(vec![p(71)]),
        cycles_for_archive_creation: None,
        max_transactions_per_response: None,
        archive_wasm: ByteBuf::from(b"\0asm".to_vec()),
    }
}

fn archived_ledger(trigger: u64, num: u64) -> Ledger {
    Ledger::new(init(Some(archive_opts(trigger, num, None))), T0).unwrap()
}

/// The archive canisters of a native test: what the canister spawns through the management
/// canister, as plain stores (node `i` is principal `p(60 + i)`).
#[derive(Default)]
struct Stores(Vec<ArchiveStore>);

impl Stores {
    fn by_id(&self, id: Principal) -> &ArchiveStore {
        let i = id.as_slice()[0] - 60;
        &self.0[i as usize]
    }
}

/// One archiving round as `canister::archive_blocks` runs it (spawning a store when there is
/// none or the last cannot take the next block). Returns how many blocks moved.
fn archive_round(l: &mut Ledger, stores: &mut Stores, force: Option<u64>) -> u64 {
    let Some(mut blocks) = l.begin_archiving(force) else {
        return 0;
    };
    let mut sent = 0;
    while let Some(first) = blocks.front() {
        let need = block_size(first);
        if stores
            .0
            .last()
            .is_none_or(|s| s.remaining_capacity() < need)
        {
            let args = l.archive_init_args(ledger_id()).unwrap();
            stores.0.push(ArchiveStore::new(args));
            l.archive
                .as_mut()
                .unwrap()
                .nodes
                .push(p(60 + stores.0.len() as u8 - 1));
        }
        let store = stores.0.last_mut().unwrap();
        let mut chunk: Vec<Block> = vec![];
        let mut room = store.remaining_capacity();
        while let Some(b) = blocks.front() {
            if block_size(b) > room {
                break;
            }
            room -= block_size(b);
            chunk.push(blocks.pop_front().unwrap());
        }
        let n = chunk.len() as u64;
        store.append(ledger_id(), chunk).unwrap();
        l.record_appended(stores.0.len() - 1, n);
        sent += n;
    }
    l.end_archiving(sent, false);
    sent
}

/// `n` more blocks: mints to account 3, each with a distinct memo.
fn fill(l: &mut Ledger, n: u64) {
    for i in 0..n {
        let mut a = xfer(acc(3), 1);
        a.memo = Some(Memo::from(i.to_be_bytes().to_vec()));
        l.icrc1_transfer(minter().owner, a, T0).unwrap().unwrap();
    }
}

fn req(start: u64, length: u64) -> GetBlocksRequest {
    GetBlocksRequest {
        start: Nat::from(start),
        length: Nat::from(length),
    }
}

fn ids(r: &icrc_ledger_types::icrc3::blocks::GetBlocksResult) -> Vec<u64> {
    r.blocks
        .iter()
        .map(|b| u64::try_from(b.id.0.clone()).unwrap())
        .collect()
}

fn args_of(r: &icrc_ledger_types::icrc3::blocks::GetBlocksResult) -> Vec<(Principal, u64, u64)> {
    r.archived_blocks
        .iter()
        .flat_map(|a| {
            a.args.iter().map(|q| {
                (
                    a.callback.canister_id,
                    u64::try_from(q.start.0.clone()).unwrap(),
                    u64::try_from(q.length.0.clone()).unwrap(),
                )
            })
        })
        .collect()
}

/// DFINITY's ledger answers at most 100 local blocks per `icrc3_get_blocks`, over all the
/// ranges of the request, and never errors for asking more.
#[test]
fn should_cap_ledger_icrc3_get_blocks_at_100() {
    let mut l = ledger();
    fill(&mut l, 248); // 250 blocks
    let r = l.icrc3_get_blocks(vec![req(0, 250)]).unwrap();
    assert_eq!(r.log_length, Nat::from(250u32));
    assert_eq!(ids(&r), (0..100).collect::<Vec<_>>());
    // The budget is shared by the ranges: 60 + 40, and a third range gets nothing.
    let r = l
        .icrc3_get_blocks(vec![req(0, 60), req(200, 60), req(10, 5)])
        .unwrap();
    assert_eq!(
        ids(&r),
        (0..60).chain(200..240).collect::<Vec<_>>(),
        "second range clamped to what is left"
    );
    // A range that is not u64 traps, as DFINITY's.
    let huge = GetBlocksRequest {
        start: Nat::from(u128::MAX),
        length: Nat::from(1u8),
    };
    assert!(l.icrc3_get_blocks(vec![huge]).is_err());
    // Configurable per test.
    let mut args = init(None);
    args.limits = Some(Limits {
        max_blocks_per_response: Some(7),
        ..Default::default()
    });
    let mut l = Ledger::new(args, T0).unwrap();
    fill(&mut l, 20);
    assert_eq!(
        l.icrc3_get_blocks(vec![req(0, 20)]).unwrap().blocks.len(),
        7
    );
}

/// Spanning two archives and the ledger: the request is clamped to 100 first, then split per
/// archive (archived parts are grouped by archive and do not use up the 100); an archive
/// answers at most 100 blocks itself and traps below its first block.
#[test]
fn should_split_a_request_over_archives_like_dfinity() {
    // Node capacity for about 120 blocks: 300 archived blocks take three archives.
    let probe = {
        let mut l = ledger();
        fill(&mut l, 1);
        block_size(&l_block(&l, 2))
    };
    let mut l = Ledger::new(
        init(Some(archive_opts(
            u64::MAX,
            0,
            Some(probe * 120 + probe / 2),
        ))),
        T0,
    )
    .unwrap();
    fill(&mut l, 348); // 350 blocks
    let mut stores = Stores::default();
    assert_eq!(archive_round(&mut l, &mut stores, Some(300)), 300);
    assert_eq!(
        stores.0.len(),
        3,
        "full archives make the ledger spawn more"
    );
    let ranges = l.archive.as_ref().unwrap().ranges.clone();
    assert_eq!(ranges[0].0, 0);
    assert_eq!(ranges[2].1, 299);
    for w in ranges.windows(2) {
        assert_eq!(w[0].1 + 1, w[1].0, "contiguous");
    }
    let (a0, a1) = (ranges[0], ranges[1]);
    let arch = l.icrc3_get_archives(GetArchivesArgs { from: None });
    assert_eq!(arch.len(), 3);
    assert_eq!(arch[1].start, Nat::from(a1.0));

    // 250 from 0: clamped to 100, all in the first archive.
    let r = l.icrc3_get_blocks(vec![req(0, 250)]).unwrap();
    assert!(r.blocks.is_empty());
    assert_eq!(args_of(&r), vec![(p(60), 0, 100)]);
    // Across the first boundary: two archives, one range each.
    let s = a0.1 - 9;
    let r = l.icrc3_get_blocks(vec![req(s, 250)]).unwrap();
    assert_eq!(args_of(&r), vec![(p(60), s, 10), (p(61), a1.0, 90)]);
    // Archived parts do not use up the budget, local blocks do: 100 + 100 archived, 50 local,
    // then the last request is clamped to the 50 left.
    let r = l
        .icrc3_get_blocks(vec![
            req(0, 100),
            req(100, 100),
            req(300, 500),
            req(200, 100),
        ])
        .unwrap();
    assert_eq!(ids(&r), (300..350).collect::<Vec<_>>());
    assert_eq!(r.archived_blocks.len(), 3, "grouped by archive");
    assert_eq!(
        args_of(&r).iter().map(|x| x.2).sum::<u64>(),
        250,
        "archived ranges are not counted against the 100"
    );
    // The archives: at most 100 per reply, ids are global, start below the offset traps.
    let second = stores.by_id(p(61));
    let r = second.icrc3_get_blocks(vec![req(a1.0, 250)]).unwrap();
    assert_eq!(ids(&r), (a1.0..a1.0 + 100).collect::<Vec<_>>());
    assert_eq!(r.log_length, Nat::from(a1.1 - a1.0 + 1));
    assert!(second.icrc3_get_blocks(vec![req(a1.0 - 1, 2)]).is_err());
    assert!(second
        .get_transactions(GetTransactionsRequest {
            start: Nat::from(0u8),
            length: Nat::from(1u8)
        })
        .is_err());
    // Legacy: the ledger caps its local part at 2,000 but sends each archive its whole part.
    let t = l
        .get_transactions(GetTransactionsRequest {
            start: Nat::from(0u8),
            length: Nat::from(10_000u32),
        })
        .unwrap();
    assert_eq!(t.first_index, Nat::from(300u32));
    assert_eq!(t.transactions.len(), 50);
    let parts: Vec<_> = t
        .archived_transactions
        .iter()
        .map(|a| (a.callback.canister_id, a.start.clone(), a.length.clone()))
        .collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], (p(60), Nat::from(0u8), Nat::from(a0.1 + 1)));
    assert_eq!(
        t.archived_transactions[0].callback.method,
        ARCHIVE_GET_TRANSACTIONS
    );
    // Blocks are unchanged by archiving.
    let b = stores.by_id(p(61)).block_value(a1.0).unwrap();
    assert_eq!(field(&b, &["tx", "amt"]), Some(&nat(1)));
}

fn l_block(l: &Ledger, i: u64) -> Block {
    l.local_block(i).unwrap().clone()
}

/// The legacy caps: 2,000 local transactions per ledger reply, 2,000 per archive reply
/// (configurable through `max_transactions_per_response`).
#[test]
fn should_cap_legacy_get_transactions() {
    let mut l = ledger();
    fill(&mut l, 2_098); // 2,100 blocks
    let t = l
        .get_transactions(GetTransactionsRequest {
            start: Nat::from(50u8),
            length: Nat::from(5_000u32),
        })
        .unwrap();
    assert_eq!(t.first_index, Nat::from(50u8));
    assert_eq!(t.transactions.len(), 2_000);
    let mut store = ArchiveStore::new(ArchiveInitArgs {
        ledger_id: ledger_id(),
        block_index_offset: 0,
        max_memory_size_bytes: None,
        max_transactions_per_response: None,
        max_blocks_per_response: None,
    });
    let blocks: Vec<Block> = (0..2_100).map(|i| l_block(&l, i)).collect();
    store.append(ledger_id(), blocks.clone()).unwrap();
    let range = store
        .get_transactions(GetTransactionsRequest {
            start: Nat::from(0u8),
            length: Nat::from(5_000u32),
        })
        .unwrap();
    assert_eq!(range.transactions.len(), 2_000);
    let mut small = ArchiveStore::new(ArchiveInitArgs {
        ledger_id: ledger_id(),
        block_index_offset: 10,
        max_memory_size_bytes: None,
        max_transactions_per_response: Some(5),
        max_blocks_per_response: None,
    });
    small.append(ledger_id(), blocks[10..30].to_vec()).unwrap();
    let range = small
        .get_transactions(GetTransactionsRequest {
            start: Nat::from(12u8),
            length: Nat::from(100u8),
        })
        .unwrap();
    assert_eq!(range.transactions.len(), 5);
    // Its icrc3_get_blocks is capped by both.
    assert_eq!(
        small
            .icrc3_get_blocks(vec![req(10, 50)])
            .unwrap()
            .blocks
            .len(),
        5
    );
}

/// DFINITY's archive accepts blocks only from its ledger and only while they fit.
#[test]
fn should_refuse_appends_from_others_and_beyond_capacity() {
    let mut l = ledger();
    fill(&mut l, 3);
    let b = l_block(&l, 2);
    let mut store = ArchiveStore::new(ArchiveInitArgs {
        ledger_id: ledger_id(),
        block_index_offset: 0,
        max_memory_size_bytes: Some(2 * block_size(&b) + 1),
        max_transactions_per_response: None,
        max_blocks_per_response: None,
    });
    assert!(store
        .append(p(51), vec![b.clone()])
        .unwrap_err()
        .contains("only"));
    store
        .append(ledger_id(), vec![b.clone(), b.clone()])
        .unwrap();
    assert_eq!(store.remaining_capacity(), 1);
    assert_eq!(
        store.append(ledger_id(), vec![b]).unwrap_err(),
        "no space left"
    );
    // Over 3 GiB is capped at 3 GiB, as DFINITY's.
    let big = ArchiveStore::new(ArchiveInitArgs {
        ledger_id: ledger_id(),
        block_index_offset: 0,
        max_memory_size_bytes: Some(u64::MAX),
        max_transactions_per_response: None,
        max_blocks_per_response: None,
    });
    assert_eq!(big.remaining_capacity(), ARCHIVE_MEMORY_LIMIT);
}

/// Archiving starts at `trigger_threshold` local blocks (not above it) and moves at most
/// `num_blocks_to_archive`; threshold 0 archives after every transaction; dedup survives.
#[test]
fn should_archive_from_the_trigger_threshold_on() {
    let mut l = archived_ledger(5, 3);
    let mut stores = Stores::default();
    fill(&mut l, 2); // 4 local blocks
    assert_eq!(archive_round(&mut l, &mut stores, None), 0, "4 < 5");
    let mut a = xfer(acc(3), 1);
    a.created_at_time = Some(T0);
    let dup = transfer(&mut l, 1, a.clone(), T0).unwrap(); // 5 local
    assert_eq!(
        archive_round(&mut l, &mut stores, None),
        3,
        "5 >= 5: move 3"
    );
    assert_eq!((l.first_local(), l.log_length()), (3, 5));
    assert_eq!(
        transfer(&mut l, 1, a, T0),
        Err(TransferError::Duplicate {
            duplicate_of: Nat::from(dup)
        })
    );
    // While a round is in flight no second round starts.
    let mut l2 = archived_ledger(0, 10);
    assert!(l2.begin_archiving(None).is_some(), "threshold 0: always");
    assert!(l2.begin_archiving(Some(10)).is_none());
    l2.end_archiving(1, true);
    assert_eq!(
        l2.first_local(),
        1,
        "a partly failed round drops what it sent"
    );
    assert_eq!(l2.stats(T0).archiving_failures, 1);
    // Stats list spawned archives with their (exclusive) ranges.
    let st = l.stats(T0);
    assert_eq!(st.archives.len(), 1);
    assert_eq!((st.archives[0].start, st.archives[0].end), (0, 3));
    assert!(l
        .icrc3_get_archives(GetArchivesArgs { from: Some(p(60)) })
        .is_empty());
}

/// DFINITY's throttle: past half of `max_transactions_in_window` deduplicated transactions,
/// at most ceil(max / 2 / window_secs) per second; TxThrottled is TemporarilyUnavailable.
#[test]
fn should_throttle_past_half_the_window_capacity() {
    let mut args = init(None);
    args.initial_balances.truncate(1);
    args.limits = Some(Limits {
        max_transactions_in_window: Some(10),
        ..Default::default()
    });
    let mut l = Ledger::new(args, T0).unwrap(); // 1 dedup entry (the initial mint)
    let with_time = |i: u8, t: u64| {
        let mut a = xfer(acc(3), 1);
        a.created_at_time = Some(t);
        a.memo = Some(Memo::from(vec![i]));
        a
    };
    for i in 0..4 {
        transfer(&mut l, 1, with_time(i, T0), T0).unwrap(); // 5 entries
    }
    // 5 >= 10/2: at most 1 per second, counted from the last entry's block time.
    assert_eq!(
        transfer(&mut l, 1, with_time(9, T0), T0 + SEC - 1),
        Err(TransferError::TemporarilyUnavailable)
    );
    // Transactions without created_at_time are throttled too (the check comes first).
    assert_eq!(
        transfer(&mut l, 1, xfer(acc(3), 1), T0 + SEC - 1),
        Err(TransferError::TemporarilyUnavailable)
    );
    assert!(transfer(&mut l, 1, with_time(9, T0 + SEC), T0 + SEC).is_ok());
    assert_eq!(
        transfer(&mut l, 1, with_time(10, T0 + SEC), T0 + SEC + 1),
        Err(TransferError::TemporarilyUnavailable)
    );
}

/// At most `max_transactions_to_purge` entries leave the index per transaction.
#[test]
fn should_purge_at_most_max_transactions_to_purge() {
    let mut args = init(None);
    args.limits = Some(Limits {
        max_transactions_to_purge: Some(2),
        ..Default::default()
    });
    let mut l = Ledger::new(args, T0).unwrap();
    fill(&mut l, 1);
    for i in 0..3u8 {
        let mut a = xfer(acc(3), 1);
        a.created_at_time = Some(T0);
        a.memo = Some(Memo::from(vec![i]));
        transfer(&mut l, 1, a, T0).unwrap();
    }
    assert_eq!(l.stats(T0).dedup_entries, 5);
    let later = T0 + TRANSACTION_WINDOW_NANOS + PERMITTED_DRIFT_NANOS + 1;
    transfer(&mut l, 1, xfer(acc(3), 1), later).unwrap();
    assert_eq!(l.stats(later).dedup_entries, 3);
    transfer(&mut l, 1, xfer(acc(3), 1), later).unwrap();
    assert_eq!(l.stats(later).dedup_entries, 1);
}

/// A configurable window and drift move the TooOld / CreatedInFuture boundaries.
#[test]
fn should_use_the_configured_window_and_drift() {
    let mut args = init(None);
    args.limits = Some(Limits {
        transaction_window_nanos: Some(10 * SEC),
        permitted_drift_nanos: Some(SEC),
        ..Default::default()
    });
    let mut l = Ledger::new(args, T0).unwrap();
    let mut a = xfer(acc(3), 1);
    a.created_at_time = Some(T0);
    assert!(transfer(&mut l, 1, a.clone(), T0 + 10 * SEC).is_ok());
    a.memo = Some(Memo::from(vec![1]));
    assert_eq!(
        transfer(&mut l, 1, a.clone(), T0 + 10 * SEC + 1),
        Err(TransferError::TooOld)
    );
    a.created_at_time = Some(T0 + 11 * SEC + 2);
    assert_eq!(
        transfer(&mut l, 1, a, T0 + 10 * SEC + 1),
        Err(TransferError::CreatedInFuture {
            ledger_time: T0 + 10 * SEC + 1
        })
    );
}

/// Forced replies: in order, for transfers and transfer_froms only, nothing executed.
#[test]
fn should_force_the_next_transfer_replies() {
    let mut l = ledger();
    let forced = vec![
        TransferError::TooOld,
        TransferError::Duplicate {
            duplicate_of: Nat::from(0u8),
        },
        TransferError::GenericError {
            error_code: Nat::from(7u8),
            message: "boom".into(),
        },
    ];
    l.faults.forced_transfer_replies = forced.clone();
    let log = l.log_length();
    let mut bad_memo = xfer(acc(3), 1);
    bad_memo.memo = Some(Memo::from(vec![0; 40]));
    assert_eq!(transfer(&mut l, 1, bad_memo, T0), Err(forced[0].clone()));
    assert_eq!(
        l.icrc2_approve(p(1), approve_args(acc(2), 5 * FEE), T0)
            .unwrap()
            .map(|_| ()),
        Ok(()),
        "approvals are not forced"
    );
    assert_eq!(
        l.icrc2_transfer_from(p(2), from_args(acc(1), acc(3), 1), T0)
            .unwrap(),
        Err(TransferFromError::Duplicate {
            duplicate_of: Nat::from(0u8)
        })
    );
    assert_eq!(
        transfer(&mut l, 1, xfer(acc(3), 1), T0),
        Err(forced[2].clone())
    );
    assert_eq!(l.log_length(), log + 1, "only the approval executed");
    assert!(transfer(&mut l, 1, xfer(acc(3), 1), T0).is_ok());
}

/// A clock behind its tip: the ledger refuses to append (the canister traps), yet answers
/// CreatedInFuture from its own (skewed) time.
#[test]
fn should_use_the_skewed_clock_and_never_append_before_the_tip() {
    let mut l = ledger();
    l.clock_offset_nanos = -120 * SEC as i64;
    let now = l.ledger_time(T0 + SEC);
    assert_eq!(now, T0 + SEC - 120 * SEC);
    let mut a = xfer(acc(3), 1);
    a.created_at_time = Some(T0 + SEC);
    assert_eq!(
        transfer(&mut l, 1, a, now),
        Err(TransferError::CreatedInFuture { ledger_time: now })
    );
    assert!(
        l.icrc1_transfer(p(1), xfer(acc(3), 1), now).is_err(),
        "traps"
    );
}

/// Fee changes apply to the next transfer.
#[test]
fn should_charge_a_changed_fee() {
    let mut l = ledger();
    l.fee = 3;
    let mut a = xfer(acc(3), 10);
    a.fee = Some(Nat::from(FEE));
    assert_eq!(
        transfer(&mut l, 1, a, T0),
        Err(TransferError::BadFee {
            expected_fee: Nat::from(3u8)
        })
    );
    transfer(&mut l, 1, xfer(acc(3), 10), T0).unwrap();
    assert_eq!(bal(&l, 1), 1_000_000 - 13);
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
/// dedup index, archives, faults) may be lost.
#[test]
fn state_survives_candid_roundtrip() {
    let mut l = archived_ledger(u64::MAX, 0);
    let mut stores = Stores::default();
    let mut a = xfer(acc(3), 10);
    a.created_at_time = Some(T0);
    let i = transfer(&mut l, 1, a.clone(), T0).unwrap();
    l.icrc2_approve(p(1), approve_args(acc(2), 5 * FEE), T0)
        .unwrap()
        .unwrap();
    archive_round(&mut l, &mut stores, Some(2));
    l.faults.unavailable_next = 3;
    l.faults.forced_transfer_replies = vec![TransferError::TooOld];
    l.clock_offset_nanos = -5;
    let bytes = candid::encode_one(&l).unwrap();
    let mut back: Ledger = candid::decode_one(&bytes).unwrap();
    assert_eq!(back.stats(T0), l.stats(T0));
    assert_eq!(back.last_hash(), l.last_hash());
    assert_eq!(all_blocks(&back), all_blocks(&l));
    assert_eq!(
        back.allowance(&acc(1), &acc(2), T0),
        l.allowance(&acc(1), &acc(2), T0)
    );
    back.faults = Default::default();
    assert_eq!(
        transfer(&mut back, 1, a, T0),
        Err(TransferError::Duplicate {
            duplicate_of: Nat::from(i)
        })
    );
    let store = &stores.0[0];
    let store_back: ArchiveStore = candid::decode_one(&candid::encode_one(store).unwrap()).unwrap();
    assert_eq!(store_back.blocks, store.blocks);
    assert_eq!(store_back.remaining_capacity(), store.remaining_capacity());
}
