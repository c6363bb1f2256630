//! Reading the ledger's ICRC-3 log through the simulator: `icrc3_get_blocks` on the ledger,
//! following every `archived_blocks` callback to the archive.

use candid::{Nat, Principal};
use ic_sim::Simulator;
use icrc_ledger_types::icrc::generic_value::ICRC3Value;
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc3::blocks::{GetBlocksRequest, GetBlocksResult};
use std::collections::BTreeMap;

/// One block, decoded into the fields the invariant check compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerBlock {
    pub index: u64,
    /// Whether it was served by an archive.
    pub archived: bool,
    pub op: String,
    pub from: Option<Account>,
    pub to: Option<Account>,
    pub spender: Option<Account>,
    pub amount: Option<u128>,
    /// The fee as the transaction carried it (`None` when the caller left it out).
    pub fee: Option<u128>,
    pub memo: Option<Vec<u8>>,
    pub created_at_time: Option<u64>,
    pub timestamp: u64,
}

fn nat_u128(v: &ICRC3Value) -> Option<u128> {
    match v {
        ICRC3Value::Nat(n) => u128::try_from(n.0.clone()).ok(),
        _ => None,
    }
}

fn account(v: &ICRC3Value) -> Option<Account> {
    let ICRC3Value::Array(parts) = v else {
        return None;
    };
    let owner = match parts.first()? {
        ICRC3Value::Blob(b) => Principal::from_slice(b),
        _ => return None,
    };
    let subaccount = match parts.get(1) {
        Some(ICRC3Value::Blob(b)) => Some(<[u8; 32]>::try_from(&b[..]).ok()?),
        _ => None,
    };
    Some(Account { owner, subaccount })
}

pub fn decode_block(index: u64, archived: bool, v: &ICRC3Value) -> LedgerBlock {
    let ICRC3Value::Map(m) = v else {
        panic!("block {index} is not a map: {v:?}");
    };
    let empty = BTreeMap::new();
    let tx = match m.get("tx") {
        Some(ICRC3Value::Map(tx)) => tx,
        _ => &empty,
    };
    let get = |k: &str| tx.get(k);
    LedgerBlock {
        index,
        archived,
        op: match get("op") {
            Some(ICRC3Value::Text(t)) => t.clone(),
            _ => match m.get("btype") {
                Some(ICRC3Value::Text(t)) => t.clone(),
                _ => String::new(),
            },
        },
        from: get("from").and_then(account),
        to: get("to").and_then(account),
        spender: get("spender").and_then(account),
        amount: get("amt").and_then(nat_u128),
        fee: get("fee").and_then(nat_u128),
        memo: match get("memo") {
            Some(ICRC3Value::Blob(b)) => Some(b.to_vec()),
            _ => None,
        },
        created_at_time: get("ts").and_then(nat_u128).map(|t| t as u64),
        timestamp: m.get("ts").and_then(nat_u128).unwrap_or(0) as u64,
    }
}

fn get_blocks(
    sim: &mut Simulator,
    canister: Principal,
    method: &str,
    reqs: Vec<GetBlocksRequest>,
) -> GetBlocksResult {
    let arg = candid::encode_one(reqs).unwrap();
    let bytes = sim
        .query_call(canister, Principal::anonymous(), method, arg)
        .unwrap_or_else(|e| panic!("{canister}.{method}: {e}"));
    candid::decode_one(&bytes).expect("decode GetBlocksResult")
}

/// Every block of the ledger in index order, archived ones included.
pub fn all_blocks(sim: &mut Simulator, ledger: Principal) -> Vec<LedgerBlock> {
    let mut out: BTreeMap<u64, LedgerBlock> = BTreeMap::new();
    let mut start = 0u64;
    loop {
        let r = get_blocks(
            sim,
            ledger,
            "icrc3_get_blocks",
            vec![GetBlocksRequest {
                start: Nat::from(start),
                length: Nat::from(2_000u64),
            }],
        );
        let log_length = u64::try_from(r.log_length.0.clone()).unwrap();
        for b in &r.blocks {
            let i = u64::try_from(b.id.0.clone()).unwrap();
            out.insert(i, decode_block(i, false, &b.block));
        }
        for a in r.archived_blocks {
            let mut pending = a.args.clone();
            while let Some(req) = pending.pop() {
                let rs = get_blocks(
                    sim,
                    a.callback.canister_id,
                    &a.callback.method,
                    vec![req.clone()],
                );
                let mut last = None;
                for b in &rs.blocks {
                    let i = u64::try_from(b.id.0.clone()).unwrap();
                    out.insert(i, decode_block(i, true, &b.block));
                    last = Some(i);
                }
                // Archive answers are capped too: continue where it stopped.
                let s = u64::try_from(req.start.0.clone()).unwrap();
                let l = u64::try_from(req.length.0.clone()).unwrap();
                if let Some(last) = last {
                    if last + 1 < s + l {
                        pending.push(GetBlocksRequest {
                            start: Nat::from(last + 1),
                            length: Nat::from(s + l - last - 1),
                        });
                    }
                }
            }
        }
        start = out.keys().next_back().map_or(0, |k| k + 1).max(start);
        if start >= log_length {
            break;
        }
        if r.blocks.is_empty() && out.len() as u64 >= log_length {
            break;
        }
        // Progress guard: the ledger caps a response at 2000 blocks.
        start = start.max(out.len() as u64);
    }
    let v: Vec<LedgerBlock> = out.into_values().collect();
    for (i, b) in v.iter().enumerate() {
        assert_eq!(b.index, i as u64, "gap in the ledger's blocks at {i}");
    }
    v
}
