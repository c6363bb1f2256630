//! Memo lookup: find a journaled transfer in the ledger's blocks (BRIEF §4 step 2).
//!
//! Reads ICRC-3 `icrc3_get_blocks` (following every `archived_blocks` callback) and falls back
//! to the legacy `get_transactions` (following `archived_transactions`) when the ledger does not
//! implement ICRC-3. A range is only ever reported as scanned if *every* block in it was read:
//! a missing or unreadable block makes the lookup `Undecided`, never "not found".

use crate::config::Config;
use crate::ledger::{
    contradicts, matches, matches_legacy, parse_icrc3_block, parse_legacy_transaction,
    ObservedBlock,
};
use crate::recovery::{scan_range, LookupResult};
use crate::runtime::{CallError, Runtime, Wait};
use crate::types::{RejectCode, ScanState, TransferIntent};
use candid::{Nat, Principal};
use icrc_ledger_types::icrc3::blocks::{GetBlocksRequest, GetBlocksResult};
use icrc_ledger_types::icrc3::transactions::{
    GetTransactionsRequest, GetTransactionsResponse, TransactionRange,
};
use num_traits::ToPrimitive;

/// Blocks `[start, start + n)` that exist, in order, plus the ledger's log length.
struct Fetched {
    log_length: u64,
    /// Read from the legacy `get_transactions` endpoint (fee = as sent, or else as charged).
    legacy: bool,
    blocks: Vec<ObservedBlock>,
}

fn wait(cfg: &Config) -> Wait {
    match cfg.call_timeout_secs {
        Some(t) => Wait::Bounded { timeout_secs: t },
        None => Wait::Unbounded,
    }
}

fn to_u64(n: &Nat, what: &str) -> Result<u64, String> {
    n.0.to_u64()
        .ok_or_else(|| format!("{what} {n} exceeds u64"))
}

async fn call_decode<
    R: Runtime,
    A: candid::CandidType,
    T: for<'de> candid::Deserialize<'de> + candid::CandidType,
>(
    rt: &R,
    cfg: &Config,
    canister: Principal,
    method: &str,
    arg: &A,
) -> Result<T, CallError> {
    let bytes = candid::encode_one(arg).expect("encode lookup arg");
    let reply = rt.call(canister, method, wait(cfg), bytes).await?;
    candid::decode_one(&reply).map_err(|e| CallError::Rejected {
        code: RejectCode::Unrecognized(0),
        message: format!("undecodable {method} reply: {e}"),
    })
}

async fn fetch_icrc3<R: Runtime>(
    rt: &R,
    cfg: &Config,
    ledger: Principal,
    start: u64,
    len: u64,
) -> Result<Fetched, CallError> {
    let req = vec![GetBlocksRequest {
        start: Nat::from(start),
        length: Nat::from(len),
    }];
    let res: GetBlocksResult = call_decode(rt, cfg, ledger, "icrc3_get_blocks", &req).await?;
    let log_length = to_u64(&res.log_length, "log_length").map_err(bad)?;
    let mut raw = Vec::new();
    for b in res.blocks {
        raw.push((to_u64(&b.id, "block id").map_err(bad)?, b.block));
    }
    for archived in res.archived_blocks {
        let r: GetBlocksResult = call_decode(
            rt,
            cfg,
            archived.callback.canister_id,
            &archived.callback.method,
            &archived.args,
        )
        .await?;
        for b in r.blocks {
            raw.push((to_u64(&b.id, "block id").map_err(bad)?, b.block));
        }
    }
    let mut blocks = Vec::with_capacity(raw.len());
    for (id, v) in raw {
        blocks.push(parse_icrc3_block(id, &v).map_err(bad)?);
    }
    Ok(Fetched {
        log_length,
        legacy: false,
        blocks,
    })
}

async fn fetch_legacy<R: Runtime>(
    rt: &R,
    cfg: &Config,
    ledger: Principal,
    start: u64,
    len: u64,
) -> Result<Fetched, CallError> {
    let req = GetTransactionsRequest {
        start: Nat::from(start),
        length: Nat::from(len),
    };
    let res: GetTransactionsResponse =
        call_decode(rt, cfg, ledger, "get_transactions", &req).await?;
    let log_length = to_u64(&res.log_length, "log_length").map_err(bad)?;
    let first = to_u64(&res.first_index, "first_index").map_err(bad)?;
    let mut blocks: Vec<ObservedBlock> = res
        .transactions
        .iter()
        .enumerate()
        .map(|(i, t)| parse_legacy_transaction(first + i as u64, t))
        .collect();
    for archived in res.archived_transactions {
        let a_start = to_u64(&archived.start, "archive start").map_err(bad)?;
        let r: TransactionRange = call_decode(
            rt,
            cfg,
            archived.callback.canister_id,
            &archived.callback.method,
            &GetTransactionsRequest {
                start: archived.start.clone(),
                length: archived.length.clone(),
            },
        )
        .await?;
        blocks.extend(
            r.transactions
                .iter()
                .enumerate()
                .map(|(i, t)| parse_legacy_transaction(a_start + i as u64, t)),
        );
    }
    Ok(Fetched {
        log_length,
        legacy: true,
        blocks,
    })
}

fn bad(message: String) -> CallError {
    CallError::Rejected {
        code: RejectCode::Unrecognized(0),
        message,
    }
}

/// Fetch `[start, start+len)` (clamped to the log) completely, or fail.
async fn fetch<R: Runtime>(
    rt: &R,
    cfg: &Config,
    ledger: Principal,
    start: u64,
    len: u64,
) -> Result<Fetched, String> {
    let mut f = match fetch_icrc3(rt, cfg, ledger, start, len).await {
        Ok(f) => f,
        // A ledger without ICRC-3 rejects the unknown method: try the legacy endpoint.
        Err(CallError::Rejected {
            code: RejectCode::CanisterReject | RejectCode::CanisterError,
            ..
        }) => fetch_legacy(rt, cfg, ledger, start, len)
            .await
            .map_err(|e| format!("get_transactions: {e:?}"))?,
        Err(e) => return Err(format!("icrc3_get_blocks: {e:?}")),
    };
    f.blocks.sort_by_key(|b| b.index);
    f.blocks.dedup_by_key(|b| b.index);
    let end = start.saturating_add(len).min(f.log_length);
    let expected = end.saturating_sub(start);
    let complete = f.blocks.len() as u64 >= expected
        && f.blocks
            .iter()
            .take(expected as usize)
            .enumerate()
            .all(|(i, b)| b.index == start + i as u64);
    if !complete {
        return Err(format!(
            "blocks [{start}, {end}) not fully readable (got {})",
            f.blocks.len()
        ));
    }
    f.blocks.truncate(expected as usize);
    Ok(f)
}

/// One lookup attempt. Updates `scan` (the caller persists it) and reports what it found.
pub async fn lookup<R: Runtime>(
    rt: &R,
    cfg: &Config,
    intent: &TransferIntent,
    sender: Principal,
    scan: &mut ScanState,
) -> LookupResult {
    let Some(cat) = intent.created_at_time() else {
        return LookupResult::Undecided {
            detail: "transfer has no created_at_time; cannot bound the scan".into(),
        };
    };
    let (lo, hi) = scan_range(cat, cfg);
    let ledger = intent.ledger;

    // Find the first block whose time can be >= lo (block times are non-decreasing).
    if scan.start_block.is_none() {
        {
            let tip = match fetch(rt, cfg, ledger, 0, 0).await {
                Ok(f) => f.log_length,
                Err(e) => return LookupResult::Undecided { detail: e },
            };
            let (mut a, mut b) = (0u64, tip);
            while a < b {
                let mid = a + (b - a) / 2;
                match fetch(rt, cfg, ledger, mid, 1).await {
                    Ok(f) => match f.blocks.first() {
                        Some(blk) if blk.ledger_time < lo => a = mid + 1,
                        Some(_) => b = mid,
                        None => {
                            return LookupResult::Undecided {
                                detail: format!("block {mid} missing"),
                            }
                        }
                    },
                    Err(e) => return LookupResult::Undecided { detail: e },
                }
            }
            scan.start_block = Some(a);
            scan.next_block = a;
        }
    }

    let mut budget = cfg.lookup_max_blocks_per_attempt;
    let mut found: Vec<u64> = Vec::new();
    loop {
        let page = (cfg.lookup_page_size as u64).min(budget.max(1));
        let f = match fetch(rt, cfg, ledger, scan.next_block, page).await {
            Ok(f) => f,
            Err(e) => return LookupResult::Undecided { detail: e },
        };
        let mut past_range = false;
        for blk in &f.blocks {
            if blk.ledger_time > hi {
                past_range = true;
                break;
            }
            if let Some(t) = &blk.transfer {
                let hit = if f.legacy {
                    matches_legacy(intent, sender, t)
                } else {
                    matches(intent, sender, t)
                };
                if hit {
                    found.push(blk.index);
                } else if let Some(reason) = contradicts(intent, sender, t) {
                    // Only we could have made this block; it is evidence about this entry
                    // that contradicts the journal. Never "not found": an operator decides.
                    return LookupResult::Contradiction {
                        block: blk.index,
                        reason,
                    };
                }
            }
            scan.next_block = blk.index + 1;
        }
        // A match ends the lookup. Scanning the rest of the window for a second match (a
        // conflict) would cost far more than it could reveal: the ledger deduplicates.
        match found.len() {
            0 => {}
            1 => return LookupResult::Found { block: found[0] },
            _ => return LookupResult::Conflict { blocks: found },
        }
        if past_range {
            return LookupResult::Exhausted {
                scanned_to: scan.next_block,
                past_range: true,
            };
        }
        if scan.next_block >= f.log_length {
            // Reached the tip. If the ledger already told us (TooOld, before this scan began)
            // that it will never accept the transfer, the tip completes the proof.
            return LookupResult::Exhausted {
                scanned_to: scan.next_block,
                past_range: scan.window_closed,
            };
        }
        budget = budget.saturating_sub(f.blocks.len() as u64);
        if budget == 0 || f.blocks.is_empty() {
            return LookupResult::Partial {
                next_block: scan.next_block,
            };
        }
    }
}
