//! Memo lookup: find a journaled transfer in the ledger's blocks.
//!
//! Reads ICRC-3 `icrc3_get_blocks` (following every `archived_blocks` callback) and falls back
//! to the legacy `get_transactions` (following `archived_transactions`) when the ledger does not
//! implement ICRC-3.
//!
//! Real ledgers answer in short pages: DFINITY's ICRC-1 ledger and its archives return at most
//! 100 blocks per `icrc3_get_blocks` call (`MAX_BLOCKS_PER_RESPONSE` in
//! rs/ledger_suite/icrc1/ledger/src/main.rs and rs/ledger_suite/icrc1/archive/src/main.rs),
//! and every ledger on mainnet holds millions of blocks. So a page is whatever prefix of the
//! requested range came back, contiguous from its first block; the scan goes on from the last
//! block received. Only a block that was asked for and not served at the start of a request
//! (a gap, a refused archive call, a malformed block) makes a range unreadable — and
//! unreadable means "not decided yet", never "not found".
//!
//! What the lookup learns about a ledger (which block endpoints it has, the ledger time of the
//! blocks it has seen) is kept in memory per ledger (`LedgerFacts`), so the search for the
//! first block of an entry's range is not redone from scratch for every entry and attempt, and
//! a ledger without ICRC-3 does not pay a failed call on every page.

use crate::config::Config;
use crate::ledger::{
    contradicts, matches, matches_legacy, parse_icrc3_block, parse_legacy_transaction,
    ObservedBlock,
};
use crate::recovery::decide::{scan_range_for, LookupResult};
use crate::runtime::{CallError, Runtime, Wait};
use crate::types::{RejectCode, ScanState, TransferIntent};
use candid::{Nat, Principal};
use icrc_ledger_types::icrc3::blocks::{GetBlocksRequest, GetBlocksResult};
use icrc_ledger_types::icrc3::transactions::{
    GetTransactionsRequest, GetTransactionsResponse, TransactionRange,
};
use num_traits::ToPrimitive;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// Decoding quota for ledger and archive replies (Candid's cost units): a page of 100 to a few
/// thousand ICRC-3 blocks decodes well within it; a hostile or broken reply cannot make the
/// decoder spend unbounded instructions. DFINITY's canisters bound untrusted input the same way
/// (`decode_with = "candid::decode_one_with_decoding_quota::<N,_>"`).
pub const REPLY_DECODING_QUOTA: usize = 50_000_000;
/// Skipping quota for ledger replies (fields this build does not know are skipped).
pub const REPLY_SKIPPING_QUOTA: usize = 10_000_000;
/// Samples of (block, ledger time) kept per ledger to narrow the start-block search.
const MAX_TIME_SAMPLES: usize = 4_096;

/// What one lookup knows about a ledger. Kept in memory only: lost on upgrade, relearned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerFacts {
    /// `Some(false)`: the ledger has no `icrc3_get_blocks` method (answered "method not found").
    pub icrc3: Option<bool>,
    /// `Some(false)`: the ledger has no `get_transactions` method.
    pub legacy: Option<bool>,
    /// Ledger time of blocks seen, by block index. Block times never decrease with the index.
    pub times: BTreeMap<u64, u64>,
}

impl LedgerFacts {
    fn note(&mut self, index: u64, time: u64) {
        if self.times.len() >= MAX_TIME_SAMPLES && !self.times.contains_key(&index) {
            // Keep the newest samples: recovery looks at recent ranges far more often.
            self.times.pop_first();
        }
        self.times.insert(index, time);
    }

    /// Bounds `[a, b)` within `[0, tip)` for the first block whose time is >= `lo`, narrowed by
    /// the samples: a sampled block older than `lo` lies before it, any other after or at it.
    fn bounds(&self, lo: u64, tip: u64) -> (u64, u64) {
        let mut a = 0;
        let mut b = tip;
        for (&i, &t) in &self.times {
            if i >= tip {
                break;
            }
            if t < lo {
                a = a.max(i + 1);
            } else {
                b = b.min(i);
                break;
            }
        }
        (a.min(b), b)
    }
}

/// Per-ledger facts shared by every lookup of this journal.
#[derive(Debug, Default)]
pub struct LookupCache {
    ledgers: RefCell<BTreeMap<Principal, LedgerFacts>>,
}

impl LookupCache {
    pub fn facts(&self, ledger: Principal) -> LedgerFacts {
        self.ledgers
            .borrow()
            .get(&ledger)
            .cloned()
            .unwrap_or_default()
    }

    fn update(&self, ledger: Principal, f: impl FnOnce(&mut LedgerFacts)) {
        f(self.ledgers.borrow_mut().entry(ledger).or_default())
    }

    fn note_blocks(&self, ledger: Principal, blocks: &[ObservedBlock]) {
        if let (Some(first), Some(last)) = (blocks.first(), blocks.last()) {
            self.update(ledger, |f| {
                f.note(first.index, first.ledger_time);
                f.note(last.index, last.ledger_time);
            });
        }
    }
}

/// Blocks `[start, start + blocks.len())`, in order, plus the ledger's log length.
struct Fetched {
    log_length: u64,
    /// Read from the legacy `get_transactions` endpoint (fee = as sent, or else as charged).
    legacy: bool,
    blocks: Vec<ObservedBlock>,
}

/// Why a range could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FetchError {
    /// The ledger has neither `icrc3_get_blocks` nor `get_transactions`.
    NoBlockAccess(String),
    /// A call failed, a reply was malformed, or a requested block was not served.
    Unreadable(String),
}

/// Calls a lookup may make in one attempt: bounds the work a slow or hostile ledger (one block
/// per page) can cause; the scan resumes from its cursor next attempt.
struct Calls {
    left: u32,
}

impl Calls {
    fn take(&mut self) -> Result<(), FetchError> {
        if self.left == 0 {
            return Err(FetchError::Unreadable(
                "call budget of this attempt spent".into(),
            ));
        }
        self.left -= 1;
        Ok(())
    }
}

fn wait(cfg: &Config) -> Wait {
    match cfg.call_timeout_secs {
        Some(t) => Wait::Bounded { timeout_secs: t },
        None => Wait::Unbounded,
    }
}

fn to_u64(n: &Nat, what: &str) -> Result<u64, FetchError> {
    n.0.to_u64()
        .ok_or_else(|| FetchError::Unreadable(format!("{what} {n} exceeds u64")))
}

/// True when a reject says the method does not exist. Since the IC's error code 536
/// (`CanisterMethodNotFound`, rs/types/error_types/src/lib.rs) that is reject code
/// CANISTER_ERROR with "has no update method" / "has no query method" in the message; older
/// replicas answered DESTINATION_INVALID (error code 302). Canisters that reject unknown
/// methods themselves do so with CANISTER_REJECT.
pub fn is_method_not_found(e: &CallError) -> bool {
    let CallError::Rejected { code, message } = e else {
        return false;
    };
    let m = message.to_ascii_lowercase();
    matches!(
        code,
        RejectCode::CanisterError | RejectCode::DestinationInvalid | RejectCode::CanisterReject
    ) && (m.contains("has no update method")
        || m.contains("has no query method")
        || m.contains("ic0536")
        || m.contains("ic0302")
        || m.contains("method not found")
        || m.contains("unknown method"))
}

async fn call_decode<
    R: Runtime,
    A: candid::CandidType,
    T: for<'de> candid::Deserialize<'de> + candid::CandidType,
>(
    rt: &R,
    cfg: &Config,
    calls: &mut Calls,
    canister: Principal,
    method: &str,
    arg: &A,
) -> Result<T, (bool, String)> {
    calls.take().map_err(|e| match e {
        FetchError::Unreadable(m) | FetchError::NoBlockAccess(m) => (false, m),
    })?;
    let bytes = candid::encode_one(arg).expect("encode lookup arg");
    let reply = rt
        .call(canister, method, wait(cfg), bytes)
        .await
        .map_err(|e| (is_method_not_found(&e), format!("{method}: {e:?}")))?;
    let mut config = candid::de::DecoderConfig::new();
    config
        .set_decoding_quota(REPLY_DECODING_QUOTA)
        .set_skipping_quota(REPLY_SKIPPING_QUOTA);
    candid::utils::decode_one_with_config(&reply, &config)
        .map_err(|e| (false, format!("undecodable {method} reply: {e}")))
}

/// The longest run of `raw` blocks contiguous from `start`.
fn contiguous_prefix<T>(start: u64, mut raw: BTreeMap<u64, T>) -> Vec<(u64, T)> {
    let mut out = Vec::with_capacity(raw.len());
    let mut next = start;
    while let Some(v) = raw.remove(&next) {
        out.push((next, v));
        next += 1;
    }
    out
}

async fn fetch_icrc3<R: Runtime>(
    rt: &R,
    cfg: &Config,
    calls: &mut Calls,
    ledger: Principal,
    start: u64,
    len: u64,
) -> Result<Fetched, (bool, String)> {
    let req = vec![GetBlocksRequest {
        start: Nat::from(start),
        length: Nat::from(len),
    }];
    let res: GetBlocksResult =
        call_decode(rt, cfg, calls, ledger, "icrc3_get_blocks", &req).await?;
    let bad = |e: FetchError| match e {
        FetchError::Unreadable(m) | FetchError::NoBlockAccess(m) => (false, m),
    };
    let log_length = to_u64(&res.log_length, "log_length").map_err(bad)?;
    let end = start.saturating_add(len);
    let mut raw = BTreeMap::new();
    for b in res.blocks {
        let id = to_u64(&b.id, "block id").map_err(bad)?;
        if (start..end).contains(&id) {
            raw.insert(id, b.block);
        }
    }
    // Archived ranges come first in the log. Each archive may answer a short page too: page
    // through it until its range is read or it stops serving (the gap then ends the prefix).
    for archived in res.archived_blocks {
        for range in archived.args {
            let mut s = to_u64(&range.start, "archive start").map_err(bad)?;
            let r_end = s
                .saturating_add(to_u64(&range.length, "archive length").map_err(bad)?)
                .min(end);
            while s < r_end {
                let r: GetBlocksResult = call_decode(
                    rt,
                    cfg,
                    calls,
                    archived.callback.canister_id,
                    &archived.callback.method,
                    &vec![GetBlocksRequest {
                        start: Nat::from(s),
                        length: Nat::from(r_end - s),
                    }],
                )
                .await
                .map_err(|(_, m)| (false, format!("archive: {m}")))?;
                let mut next = s;
                for b in r.blocks {
                    let id = to_u64(&b.id, "block id").map_err(bad)?;
                    if (s..r_end).contains(&id) {
                        raw.insert(id, b.block);
                        next = next.max(id + 1);
                    }
                }
                if next == s || !raw.contains_key(&s) {
                    break; // the archive served nothing from where we asked: a gap
                }
                s = next;
            }
        }
    }
    let mut blocks = Vec::new();
    for (id, v) in contiguous_prefix(start, raw) {
        blocks.push(parse_icrc3_block(id, &v).map_err(|m| (false, m))?);
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
    calls: &mut Calls,
    ledger: Principal,
    start: u64,
    len: u64,
) -> Result<Fetched, (bool, String)> {
    let bad = |e: FetchError| match e {
        FetchError::Unreadable(m) | FetchError::NoBlockAccess(m) => (false, m),
    };
    let req = GetTransactionsRequest {
        start: Nat::from(start),
        length: Nat::from(len),
    };
    let res: GetTransactionsResponse =
        call_decode(rt, cfg, calls, ledger, "get_transactions", &req).await?;
    let log_length = to_u64(&res.log_length, "log_length").map_err(bad)?;
    let first = to_u64(&res.first_index, "first_index").map_err(bad)?;
    let end = start.saturating_add(len);
    let mut raw = BTreeMap::new();
    for (i, t) in res.transactions.into_iter().enumerate() {
        let id = first.saturating_add(i as u64);
        if (start..end).contains(&id) {
            raw.insert(id, t);
        }
    }
    for archived in res.archived_transactions {
        let mut s = to_u64(&archived.start, "archive start").map_err(bad)?;
        let r_end = s
            .saturating_add(to_u64(&archived.length, "archive length").map_err(bad)?)
            .min(end);
        while s < r_end {
            let r: TransactionRange = call_decode(
                rt,
                cfg,
                calls,
                archived.callback.canister_id,
                &archived.callback.method,
                &GetTransactionsRequest {
                    start: Nat::from(s),
                    length: Nat::from(r_end - s),
                },
            )
            .await
            .map_err(|(_, m)| (false, format!("archive: {m}")))?;
            if r.transactions.is_empty() {
                break;
            }
            let n = r.transactions.len() as u64;
            for (i, t) in r.transactions.into_iter().enumerate() {
                let id = s + i as u64;
                if id < r_end {
                    raw.insert(id, t);
                }
            }
            s = s.saturating_add(n);
        }
    }
    let blocks = contiguous_prefix(start, raw)
        .into_iter()
        .map(|(id, t)| parse_legacy_transaction(id, &t))
        .collect();
    Ok(Fetched {
        log_length,
        legacy: true,
        blocks,
    })
}

/// Fetch a prefix of `[start, start+len)`: at least one block when `start` is below the log
/// length, or fail. Picks the endpoint the ledger has, learning it once.
async fn fetch<R: Runtime>(
    rt: &R,
    cfg: &Config,
    cache: &LookupCache,
    calls: &mut Calls,
    ledger: Principal,
    start: u64,
    len: u64,
) -> Result<Fetched, FetchError> {
    let facts = cache.facts(ledger);
    let mut why = String::new();
    let mut fetched = None;
    if facts.icrc3 != Some(false) {
        match fetch_icrc3(rt, cfg, calls, ledger, start, len).await {
            Ok(f) => {
                cache.update(ledger, |f| f.icrc3 = Some(true));
                fetched = Some(f);
            }
            Err((true, m)) => {
                cache.update(ledger, |f| f.icrc3 = Some(false));
                why = m;
            }
            Err((false, m)) => return Err(FetchError::Unreadable(m)),
        }
    }
    let f = match fetched {
        Some(f) => f,
        None if facts.legacy == Some(false) => return Err(no_access(&why)),
        None => match fetch_legacy(rt, cfg, calls, ledger, start, len).await {
            Ok(f) => {
                cache.update(ledger, |f| f.legacy = Some(true));
                f
            }
            Err((true, m)) => {
                cache.update(ledger, |f| f.legacy = Some(false));
                return Err(no_access(&format!("{why}; {m}")));
            }
            Err((false, m)) => return Err(FetchError::Unreadable(m)),
        },
    };
    if start < f.log_length && f.blocks.is_empty() && len > 0 {
        return Err(FetchError::Unreadable(format!(
            "block {start} was not served (log length {})",
            f.log_length
        )));
    }
    cache.note_blocks(ledger, &f.blocks);
    Ok(f)
}

fn no_access(detail: &str) -> FetchError {
    FetchError::NoBlockAccess(format!(
        "the ledger offers no way to read its blocks (no icrc3_get_blocks, no get_transactions): {detail}"
    ))
}

fn undecided(e: FetchError) -> LookupResult {
    match e {
        FetchError::NoBlockAccess(detail) => LookupResult::NoBlockAccess { detail },
        FetchError::Unreadable(detail) => LookupResult::Undecided { detail },
    }
}

/// What one block says about a journaled transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockCheck {
    /// The block holds exactly this transfer: every journaled field matches.
    Matches,
    /// The block exists and is not this transfer (why, in words).
    DoesNotMatch { reason: String },
    /// The block could not be read now.
    Unreadable { detail: String },
}

/// Read block `block` of the transfer's ledger and compare it with the journaled transfer:
/// the evidence check behind an owner's reported block and an operator's `ResolveSucceeded`.
pub async fn check_block<R: Runtime>(
    rt: &R,
    cfg: &Config,
    cache: &LookupCache,
    intent: &TransferIntent,
    sender: Principal,
    block: u64,
) -> BlockCheck {
    let mut calls = Calls {
        left: cfg.lookup_max_calls_per_attempt,
    };
    let f = match fetch(rt, cfg, cache, &mut calls, intent.ledger, block, 1).await {
        Ok(f) => f,
        Err(FetchError::Unreadable(detail) | FetchError::NoBlockAccess(detail)) => {
            return BlockCheck::Unreadable { detail }
        }
    };
    let Some(b) = f.blocks.first() else {
        return BlockCheck::DoesNotMatch {
            reason: format!(
                "block {block} does not exist (the ledger holds {} blocks)",
                f.log_length
            ),
        };
    };
    match &b.transfer {
        Some(t) if f.legacy && matches_legacy(intent, sender, t) => BlockCheck::Matches,
        Some(t) if !f.legacy && matches(intent, sender, t) => BlockCheck::Matches,
        Some(t) => BlockCheck::DoesNotMatch {
            reason: format!(
                "block {block} is not this transfer ({:?} {} from {} to {}, memo {})",
                t.op,
                t.amount,
                t.from.owner,
                t.to.owner,
                t.memo
                    .as_deref()
                    .map(|m| crate::memo::decode(m).map_or_else(
                        || format!("{} bytes", m.len()),
                        |id| format!("of entry {id}")
                    ))
                    .unwrap_or_else(|| "none".into())
            ),
        },
        None => BlockCheck::DoesNotMatch {
            reason: format!("block {block} is not a transfer"),
        },
    }
}

/// One lookup attempt. Updates `scan` (the caller persists it) and reports what it found.
pub async fn lookup<R: Runtime>(
    rt: &R,
    cfg: &Config,
    cache: &LookupCache,
    intent: &TransferIntent,
    sender: Principal,
    scan: &mut ScanState,
) -> LookupResult {
    match lookup_inner(rt, cfg, cache, intent, sender, scan).await {
        LookupResult::NoBlockAccess { mut detail } => {
            if scan.window_closed {
                detail.push_str(
                    ". It answered TooOld to an identical resend: the transfer can no longer \
                     execute, but whether it executed before cannot be read",
                );
            }
            LookupResult::NoBlockAccess { detail }
        }
        other => other,
    }
}

async fn lookup_inner<R: Runtime>(
    rt: &R,
    cfg: &Config,
    cache: &LookupCache,
    intent: &TransferIntent,
    sender: Principal,
    scan: &mut ScanState,
) -> LookupResult {
    let Some(cat) = intent.created_at_time() else {
        return LookupResult::Undecided {
            detail: "transfer has no created_at_time; cannot bound the scan".into(),
        };
    };
    let (lo, hi) = scan_range_for(cat, intent, cfg);
    let ledger = intent.ledger;
    let mut calls = Calls {
        left: cfg.lookup_max_calls_per_attempt,
    };

    // Find the first block whose time can be >= lo (block times are non-decreasing).
    if scan.start_block.is_none() {
        let tip = match fetch(rt, cfg, cache, &mut calls, ledger, 0, 0).await {
            Ok(f) => f.log_length,
            Err(e) => return undecided(e),
        };
        let (mut a, mut b) = cache.facts(ledger).bounds(lo, tip);
        let mut probed = false;
        while a < b {
            let mid = a + (b - a) / 2;
            match fetch(rt, cfg, cache, &mut calls, ledger, mid, 1).await {
                Ok(f) => match f.blocks.first() {
                    Some(blk) if blk.ledger_time < lo => a = mid + 1,
                    Some(_) => b = mid,
                    None => {
                        return LookupResult::Undecided {
                            detail: format!("block {mid} missing"),
                        }
                    }
                },
                // Every probe read is kept as a sample (`LedgerFacts`): the next attempt's
                // search starts from the narrowed bounds, so running out of calls is progress.
                Err(FetchError::Unreadable(_)) if probed && calls.left == 0 => {
                    return LookupResult::Partial {
                        next_block: scan.next_block,
                    }
                }
                Err(e) => return undecided(e),
            }
            probed = true;
        }
        scan.start_block = Some(a);
        scan.next_block = a;
    }

    let mut budget = cfg.lookup_max_blocks_per_attempt;
    let mut found: Vec<u64> = Vec::new();
    loop {
        let page = (cfg.lookup_page_size as u64).min(budget.max(1));
        let f = match fetch(rt, cfg, cache, &mut calls, ledger, scan.next_block, page).await {
            Ok(f) => f,
            // Progress made in this attempt is kept (the caller persists `scan`).
            Err(FetchError::Unreadable(_)) if budget < cfg.lookup_max_blocks_per_attempt => {
                return LookupResult::Partial {
                    next_block: scan.next_block,
                }
            }
            Err(e) => return undecided(e),
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
        if budget == 0 || calls.left == 0 {
            return LookupResult::Partial {
                next_block: scan.next_block,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_narrow_the_start_search_with_sampled_block_times() {
        let mut f = LedgerFacts::default();
        assert_eq!(f.bounds(50, 1_000), (0, 1_000));
        f.note(100, 10);
        f.note(400, 40);
        f.note(700, 70);
        assert_eq!(f.bounds(50, 1_000), (401, 700));
        assert_eq!(f.bounds(5, 1_000), (0, 100));
        assert_eq!(f.bounds(80, 1_000), (701, 1_000));
        // A tip below the samples (a different view of the log) is never exceeded.
        assert_eq!(f.bounds(80, 500), (401, 500));
    }

    #[test]
    fn should_keep_a_bounded_number_of_samples() {
        let mut f = LedgerFacts::default();
        for i in 0..(MAX_TIME_SAMPLES as u64 + 10) {
            f.note(i, i);
        }
        assert_eq!(f.times.len(), MAX_TIME_SAMPLES);
        assert!(f.times.contains_key(&(MAX_TIME_SAMPLES as u64 + 9)));
    }

    #[test]
    fn should_recognise_method_not_found_rejects() {
        let nf = |code, m: &str| {
            is_method_not_found(&CallError::Rejected {
                code,
                message: m.into(),
            })
        };
        assert!(nf(
            RejectCode::CanisterError,
            "Error from Canister x: Canister has no update method 'icrc3_get_blocks'"
        ));
        assert!(nf(RejectCode::DestinationInvalid, "IC0302: no such method"));
        assert!(!nf(
            RejectCode::CanisterError,
            "Canister trapped: out of cycles"
        ));
        assert!(!nf(RejectCode::SysTransient, "has no update method"));
    }
}
