//! # Bare baseline canister (benchmark only)
//!
//! What the benchmark compares icjournal with:
//!
//! 1. **Bare transfers**: `icrc1_send` / `icrc2_send` send one `icrc1_transfer` /
//!    `icrc2_transfer_from` with a memo and `created_at_time` (so the ledger deduplicates),
//!    await the reply and return it. No journal, no commit, no recovery: the cheapest code
//!    that moves money correctly *when nothing goes wrong*.
//! 2. **Replay baseline**: an event log in stable memory from which the heap state is rebuilt by
//!    replaying every event in `post_upgrade`, the design of ckBTC's minter
//!    (dfinity/ic `rs/bitcoin/ckbtc/minter/src/storage.rs`: events CBOR-encoded in a
//!    `StableLog`, `replay` over all of them on upgrade). `log_fill` appends synthetic transfer
//!    events in bulk; `post_upgrade` replays them, so its cost grows with the log.

use candid::{CandidType, Nat, Principal};
use ic_cdk::{init, post_upgrade, query, update};
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::{DefaultMemoryImpl, StableLog};
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::{Memo, TransferArg, TransferError};
use icrc_ledger_types::icrc2::transfer_from::{TransferFromArgs, TransferFromError};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

type Mem = VirtualMemory<DefaultMemoryImpl>;

/// One event of the replay baseline: about what a journal keeps of a resolved transfer.
#[derive(Serialize, Deserialize)]
struct Event {
    id: u64,
    owner: Vec<u8>,
    to: Vec<u8>,
    amount: u64,
    created_at_time: u64,
    block: u64,
}

/// The heap state the log is replayed into.
struct Replayed {
    id: u64,
    amount: u64,
    block: u64,
    created_at_time: u64,
}

thread_local! {
    static LEDGER: Cell<Principal> = const { Cell::new(Principal::anonymous()) };
    static NEXT: Cell<u64> = const { Cell::new(0) };
    static LOG: RefCell<Option<StableLog<Vec<u8>, Mem, Mem>>> = const { RefCell::new(None) };
    static STATE: RefCell<BTreeMap<u64, Replayed>> = const { RefCell::new(BTreeMap::new()) };
}

fn open_log() {
    let mm = MemoryManager::init(DefaultMemoryImpl::default());
    let log = StableLog::init(mm.get(MemoryId::new(0)), mm.get(MemoryId::new(1)));
    LOG.with(|l| *l.borrow_mut() = Some(log));
}

#[derive(CandidType, Deserialize)]
struct InitArg {
    ledger: Principal,
}

#[init]
fn init(arg: InitArg) {
    LEDGER.set(arg.ledger);
    open_log();
}

/// Replays the whole log into the heap (the cost the benchmark measures).
#[post_upgrade]
fn post_upgrade(arg: InitArg) {
    LEDGER.set(arg.ledger);
    open_log();
    LOG.with(|l| {
        let l = l.borrow();
        let log = l.as_ref().unwrap();
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            for bytes in log.iter() {
                let e: Event = serde_cbor::from_slice(&bytes)
                    .unwrap_or_else(|e| ic_cdk::trap(format!("corrupt event: {e}")));
                s.insert(
                    e.id,
                    Replayed {
                        id: e.id,
                        amount: e.amount,
                        block: e.block,
                        created_at_time: e.created_at_time,
                    },
                );
            }
            NEXT.set(s.len() as u64);
        });
    });
}

fn memo() -> Memo {
    let n = NEXT.get();
    NEXT.set(n + 1);
    Memo::from(n.to_be_bytes().to_vec())
}

#[update]
async fn icrc1_send(to: Account, amount: Nat) -> Result<Nat, TransferError> {
    let arg = TransferArg {
        from_subaccount: None,
        to,
        fee: None,
        created_at_time: Some(ic_cdk::api::time()),
        memo: Some(memo()),
        amount,
    };
    let (r,): (Result<Nat, TransferError>,) =
        ic_cdk::call::Call::unbounded_wait(LEDGER.get(), "icrc1_transfer")
            .with_arg(arg)
            .await
            .unwrap_or_else(|e| ic_cdk::trap(e.to_string()))
            .candid_tuple()
            .unwrap_or_else(|e| ic_cdk::trap(e.to_string()));
    r
}

#[update]
async fn icrc2_send(from: Account, to: Account, amount: Nat) -> Result<Nat, TransferFromError> {
    let arg = TransferFromArgs {
        spender_subaccount: None,
        from,
        to,
        amount,
        fee: None,
        memo: Some(memo()),
        created_at_time: Some(ic_cdk::api::time()),
    };
    let (r,): (Result<Nat, TransferFromError>,) =
        ic_cdk::call::Call::unbounded_wait(LEDGER.get(), "icrc2_transfer_from")
            .with_arg(arg)
            .await
            .unwrap_or_else(|e| ic_cdk::trap(e.to_string()))
            .candid_tuple()
            .unwrap_or_else(|e| ic_cdk::trap(e.to_string()));
    r
}

/// Appends `n` synthetic resolved-transfer events (benchmark setup). Controllers only.
#[update]
fn log_fill(n: u64) -> u64 {
    if !ic_cdk::api::is_controller(&ic_cdk::api::msg_caller()) {
        ic_cdk::trap("controllers only");
    }
    LOG.with(|l| {
        let l = l.borrow();
        let log = l.as_ref().unwrap();
        let start = log.len();
        for i in start..start + n {
            let e = Event {
                id: i,
                owner: vec![7; 29],
                to: vec![9; 29],
                amount: 1_000_000 + i,
                created_at_time: 1_700_000_000_000_000_000 + i,
                block: i,
            };
            let bytes = serde_cbor::to_vec(&e).expect("encode event");
            log.append(&bytes)
                .unwrap_or_else(|_| ic_cdk::trap("log full"));
        }
        log.len()
    })
}

#[query]
fn log_len() -> u64 {
    LOG.with(|l| l.borrow().as_ref().map_or(0, |l| l.len()))
}

/// Entries rebuilt by the last replay (checks that replay happened).
#[query]
fn replayed() -> u64 {
    STATE.with(|s| {
        let s = s.borrow();
        // Touch the fields so the replay cannot be optimised away.
        s.values()
            .map(|r| r.id ^ r.amount ^ r.block ^ r.created_at_time)
            .fold(s.len() as u64, |a, x| a.wrapping_add(x & 0))
    })
}
