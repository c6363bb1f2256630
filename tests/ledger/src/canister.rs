//! Thin ic-cdk endpoints over [`crate::ledger`]. One Wasm, two roles chosen by the init arg:
//! `Ledger { .. }` or `Archive { ledger }`. A method of the other role traps.

use crate::icrc3::Block;
use crate::ledger::{ArchiveStore, Ledger};
use crate::types::{LedgerArg, LedgerStats, StandardRecord};
use candid::{CandidType, Decode, Deserialize, Encode, Nat};
use icrc_ledger_types::icrc::generic_metadata_value::MetadataValue;
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::{TransferArg, TransferError};
use icrc_ledger_types::icrc2::allowance::{Allowance, AllowanceArgs};
use icrc_ledger_types::icrc2::approve::{ApproveArgs, ApproveError};
use icrc_ledger_types::icrc2::transfer_from::{TransferFromArgs, TransferFromError};
use icrc_ledger_types::icrc3::archive::{GetArchivesArgs, ICRC3ArchiveInfo};
use icrc_ledger_types::icrc3::blocks::{
    GetBlocksRequest, GetBlocksResult, ICRC3DataCertificate, SupportedBlockType,
};
use icrc_ledger_types::icrc3::transactions::{
    GetTransactionsRequest, GetTransactionsResponse, TransactionRange,
};
use std::cell::RefCell;

#[derive(CandidType, Deserialize)]
enum Role {
    Ledger(Box<Ledger>),
    Archive(ArchiveStore),
}

thread_local! {
    static STATE: RefCell<Option<Role>> = const { RefCell::new(None) };
}

fn now() -> u64 {
    ic_cdk::api::time()
}

fn with_ledger<R>(f: impl FnOnce(&mut Ledger) -> R) -> R {
    STATE.with(|s| match s.borrow_mut().as_mut() {
        Some(Role::Ledger(l)) => f(l),
        _ => ic_cdk::trap("this method is served by the ledger role"),
    })
}

fn with_archive<R>(f: impl FnOnce(&mut ArchiveStore) -> R) -> R {
    STATE.with(|s| match s.borrow_mut().as_mut() {
        Some(Role::Archive(a)) => f(a),
        _ => ic_cdk::trap("this method is served by the archive role"),
    })
}

fn is_archive() -> bool {
    STATE.with(|s| matches!(s.borrow().as_ref(), Some(Role::Archive(_))))
}

fn or_trap<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|msg| ic_cdk::trap(msg))
}

#[ic_cdk::init]
fn init(arg: LedgerArg) {
    let role = match arg {
        LedgerArg::Ledger(args) => Role::Ledger(Box::new(or_trap(Ledger::new(args, now())))),
        LedgerArg::Archive(a) => Role::Archive(ArchiveStore::new(a.ledger)),
    };
    STATE.with(|s| *s.borrow_mut() = Some(role));
}

/// The whole state is Candid-encoded into stable memory across upgrades (length-prefixed).
#[ic_cdk::pre_upgrade]
fn pre_upgrade() {
    let bytes = STATE.with(|s| Encode!(&*s.borrow()).expect("encode state"));
    let needed = 8 + bytes.len() as u64;
    let pages = needed.div_ceil(65_536);
    let have = ic_cdk::api::stable_size();
    if have < pages {
        ic_cdk::api::stable_grow(pages - have);
    }
    ic_cdk::api::stable_write(0, &(bytes.len() as u64).to_le_bytes());
    ic_cdk::api::stable_write(8, &bytes);
}

#[ic_cdk::post_upgrade]
fn post_upgrade() {
    let mut len = [0u8; 8];
    ic_cdk::api::stable_read(0, &mut len);
    let mut bytes = vec![0u8; u64::from_le_bytes(len) as usize];
    ic_cdk::api::stable_read(8, &mut bytes);
    let mut state = Decode!(&bytes, Option<Role>).expect("decode state");
    if let Some(Role::Ledger(l)) = state.as_mut() {
        // An archiving round cannot survive an upgrade (its callback is gone).
        l.archiving = false;
    }
    STATE.with(|s| *s.borrow_mut() = state);
}

// ------------------------------------------------------------------ ICRC-1

#[ic_cdk::query]
fn icrc1_name() -> String {
    with_ledger(|l| l.token_name.clone())
}

#[ic_cdk::query]
fn icrc1_symbol() -> String {
    with_ledger(|l| l.token_symbol.clone())
}

#[ic_cdk::query]
fn icrc1_decimals() -> u8 {
    with_ledger(|l| l.decimals)
}

#[ic_cdk::query]
fn icrc1_fee() -> Nat {
    with_ledger(|l| Nat::from(l.fee))
}

#[ic_cdk::query]
fn icrc1_metadata() -> Vec<(String, MetadataValue)> {
    with_ledger(|l| {
        vec![
            (
                "icrc1:name".into(),
                MetadataValue::Text(l.token_name.clone()),
            ),
            (
                "icrc1:symbol".into(),
                MetadataValue::Text(l.token_symbol.clone()),
            ),
            (
                "icrc1:decimals".into(),
                MetadataValue::Nat(Nat::from(l.decimals)),
            ),
            ("icrc1:fee".into(), MetadataValue::Nat(Nat::from(l.fee))),
            (
                "icrc1:max_memo_length".into(),
                MetadataValue::Nat(Nat::from(l.max_memo_length)),
            ),
        ]
    })
}

#[ic_cdk::query]
fn icrc1_total_supply() -> Nat {
    with_ledger(|l| Nat::from(l.total_supply()))
}

#[ic_cdk::query]
fn icrc1_minting_account() -> Option<Account> {
    with_ledger(|l| Some(l.minting_account))
}

#[ic_cdk::query]
fn icrc1_balance_of(account: Account) -> Nat {
    with_ledger(|l| Nat::from(l.balance_of(&account)))
}

fn standards() -> Vec<StandardRecord> {
    let std = |name: &str, url: &str| StandardRecord {
        name: name.into(),
        url: url.into(),
    };
    vec![
        std(
            "ICRC-1",
            "https://github.com/dfinity/ICRC-1/tree/main/standards/ICRC-1",
        ),
        std(
            "ICRC-2",
            "https://github.com/dfinity/ICRC-1/tree/main/standards/ICRC-2",
        ),
        std(
            "ICRC-3",
            "https://github.com/dfinity/ICRC-1/tree/main/standards/ICRC-3",
        ),
        std(
            "ICRC-10",
            "https://github.com/dfinity/ICRC/blob/main/ICRCs/ICRC-10/ICRC-10.md",
        ),
    ]
}

#[ic_cdk::query]
fn icrc1_supported_standards() -> Vec<StandardRecord> {
    standards()
}

#[ic_cdk::query]
fn icrc10_supported_standards() -> Vec<StandardRecord> {
    standards()
}

#[ic_cdk::update]
async fn icrc1_transfer(arg: TransferArg) -> Result<Nat, TransferError> {
    let caller = ic_cdk::api::msg_caller();
    let r = or_trap(with_ledger(|l| l.icrc1_transfer(caller, arg, now())));
    if r.is_ok() {
        // A failed archiving round keeps its blocks local; the next round retries.
        let _ = archive_blocks(None).await;
    }
    r
}

// ------------------------------------------------------------------ ICRC-2

#[ic_cdk::update]
async fn icrc2_approve(arg: ApproveArgs) -> Result<Nat, ApproveError> {
    let caller = ic_cdk::api::msg_caller();
    let r = or_trap(with_ledger(|l| l.icrc2_approve(caller, arg, now())));
    if r.is_ok() {
        // A failed archiving round keeps its blocks local; the next round retries.
        let _ = archive_blocks(None).await;
    }
    r
}

#[ic_cdk::update]
async fn icrc2_transfer_from(arg: TransferFromArgs) -> Result<Nat, TransferFromError> {
    let caller = ic_cdk::api::msg_caller();
    let r = or_trap(with_ledger(|l| l.icrc2_transfer_from(caller, arg, now())));
    if r.is_ok() {
        // A failed archiving round keeps its blocks local; the next round retries.
        let _ = archive_blocks(None).await;
    }
    r
}

#[ic_cdk::query]
fn icrc2_allowance(arg: AllowanceArgs) -> Allowance {
    with_ledger(|l| l.allowance(&arg.account, &arg.spender, now()))
}

// ------------------------------------------------------------------ ICRC-3 and legacy

/// Served by both roles: the ledger answers with local blocks plus `archived_blocks` callbacks,
/// the archive with the blocks it holds.
#[ic_cdk::query]
fn icrc3_get_blocks(args: Vec<GetBlocksRequest>) -> GetBlocksResult {
    if is_archive() {
        or_trap(with_archive(|a| a.icrc3_get_blocks(args)))
    } else {
        with_ledger(|l| l.icrc3_get_blocks(args))
    }
}

#[ic_cdk::query]
fn icrc3_get_archives(args: GetArchivesArgs) -> Vec<ICRC3ArchiveInfo> {
    with_ledger(|l| l.icrc3_get_archives(args))
}

/// Not certified: this test ledger does not maintain a certified hash tree.
#[ic_cdk::query]
fn icrc3_get_tip_certificate() -> Option<ICRC3DataCertificate> {
    None
}

#[ic_cdk::query]
fn icrc3_supported_block_types() -> Vec<SupportedBlockType> {
    let icrc1 = "https://github.com/dfinity/ICRC-1/blob/main/standards/ICRC-1/README.md";
    let icrc2 = "https://github.com/dfinity/ICRC-1/blob/main/standards/ICRC-2/README.md";
    [
        ("1burn", icrc1),
        ("1mint", icrc1),
        ("1xfer", icrc1),
        ("2approve", icrc2),
        ("2xfer", icrc2),
    ]
    .into_iter()
    .map(|(t, u)| SupportedBlockType {
        block_type: t.into(),
        url: u.into(),
    })
    .collect()
}

/// Legacy transaction access (ledger role), with `archived_transactions` callbacks.
#[ic_cdk::query]
fn get_transactions(req: GetTransactionsRequest) -> GetTransactionsResponse {
    or_trap(with_ledger(|l| l.get_transactions(req)))
}

/// Legacy transaction access (archive role): the target of `archived_transactions` callbacks.
#[ic_cdk::query]
fn get_archived_transactions(req: GetTransactionsRequest) -> TransactionRange {
    or_trap(with_archive(|a| a.get_transactions(req)))
}

/// Archive role: the ledger appends blocks `start ..`. Returns the archive's block count.
#[ic_cdk::update]
fn append_blocks(start: u64, blocks: Vec<Block>) -> u64 {
    let caller = ic_cdk::api::msg_caller();
    or_trap(with_archive(|a| a.append(caller, start, blocks)))
}

/// Moves blocks to the archive: `force = Some(max)` moves up to `max` of the oldest local
/// blocks; `None` archives only when the trigger threshold is reached. Returns how many moved.
async fn archive_blocks(force: Option<u64>) -> Result<u64, String> {
    let Some((archive, start, blocks)) = with_ledger(|l| {
        let (start, blocks) = l.blocks_to_archive(force)?;
        l.archiving = true;
        Some((l.archive.as_ref()?.archive, start, blocks))
    }) else {
        return Ok(0);
    };
    let n = blocks.len() as u64;
    let res = ic_cdk::call::Call::unbounded_wait(archive, "append_blocks")
        .with_args(&(start, blocks))
        .await;
    let outcome = match res {
        Ok(_) => Ok(n),
        Err(e) => Err(format!("archiving failed: {e}")),
    };
    with_ledger(|l| {
        l.archiving = false;
        if outcome.is_ok() {
            l.blocks_archived(start, n);
        }
    });
    outcome
}

// ------------------------------------------------------------------ test controls

/// The next `n` transfers / transfer_froms / approvals answer `TemporarilyUnavailable`
/// without any effect.
#[ic_cdk::update]
fn test_set_unavailable_next(n: u64) {
    with_ledger(|l| l.faults.unavailable_next = n)
}

/// While `on`, every transfer / transfer_from / approval traps before applying anything (the
/// trap rolls the whole message back, so this cannot count down: switch it off explicitly).
#[ic_cdk::update]
fn test_set_trap(on: bool) {
    with_ledger(|l| l.faults.trap = on)
}

/// Mints `amount` to `to` (a mint block without memo or created_at_time). Returns its index.
#[ic_cdk::update]
fn test_mint(to: Account, amount: Nat) -> Nat {
    let amount = or_trap(u128::try_from(&amount.0).map_err(|_| "amount too large".to_string()));
    let i = with_ledger(|l| l.mint(to, amount, now()));
    Nat::from(or_trap(i.map_err(|e| format!("{e:?}"))))
}

/// Moves up to `max` (default: all) of the oldest local blocks to the archive now.
#[ic_cdk::update]
async fn test_archive_blocks_now(max: Option<u64>) -> Result<u64, String> {
    archive_blocks(Some(max.unwrap_or(u64::MAX))).await
}

/// Makes the archive unreadable (its queries trap) or readable again. On the archive it sets
/// the flag; on the ledger it forwards to the ledger's archive.
#[ic_cdk::update]
async fn test_set_archive_unavailable(on: bool) -> Result<(), String> {
    if is_archive() {
        with_archive(|a| a.unavailable = on);
        return Ok(());
    }
    let archive = with_ledger(|l| l.archive.as_ref().map(|o| o.archive))
        .ok_or("the ledger has no archive")?;
    ic_cdk::call::Call::unbounded_wait(archive, "test_set_archive_unavailable")
        .with_arg(on)
        .await
        .map_err(|e| format!("{e}"))?
        .candid::<Result<(), String>>()
        .map_err(|e| format!("{e}"))?
}

#[ic_cdk::query]
fn test_stats() -> LedgerStats {
    with_ledger(|l| l.stats())
}

ic_cdk::export_candid!();

/// The Candid interface of this canister (both roles).
pub fn candid_interface() -> String {
    __export_service()
}
