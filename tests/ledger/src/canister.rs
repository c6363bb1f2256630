//! Thin ic-cdk endpoints over [`crate::ledger`]. One Wasm, two roles chosen by the init arg:
//! `Ledger { .. }` or `Archive { .. }`. A method of the other role traps.

use crate::icrc3::Block;
use crate::ledger::{block_size, ArchiveStore, Ledger};
use crate::limits::LEDGER_MAX_MESSAGE_SIZE;
use crate::types::{LedgerArg, LedgerStats, StandardRecord};
use candid::{CandidType, Decode, Deserialize, Encode, Nat, Principal};
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
use std::collections::VecDeque;

#[derive(CandidType, Deserialize)]
enum Role {
    Ledger(Box<Ledger>),
    Archive(ArchiveStore),
}

thread_local! {
    static STATE: RefCell<Option<Role>> = const { RefCell::new(None) };
}

/// Ledger time: the IC's, shifted by the clock-skew test control.
fn now() -> u64 {
    STATE.with(|s| match s.borrow().as_ref() {
        Some(Role::Ledger(l)) => l.ledger_time(ic_cdk::api::time()),
        _ => ic_cdk::api::time(),
    })
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
        LedgerArg::Archive(a) => Role::Archive(ArchiveStore::new(a)),
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
        // An archiving round cannot survive an upgrade (its callback is gone); DFINITY's
        // archiving flag is not persisted either.
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
    let t = now();
    let r = or_trap(with_ledger(|l| l.icrc1_transfer(caller, arg, t)));
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
    let t = now();
    let r = or_trap(with_ledger(|l| l.icrc2_approve(caller, arg, t)));
    if r.is_ok() {
        // A failed archiving round keeps its blocks local; the next round retries.
        let _ = archive_blocks(None).await;
    }
    r
}

#[ic_cdk::update]
async fn icrc2_transfer_from(arg: TransferFromArgs) -> Result<Nat, TransferFromError> {
    let caller = ic_cdk::api::msg_caller();
    let t = now();
    let r = or_trap(with_ledger(|l| l.icrc2_transfer_from(caller, arg, t)));
    if r.is_ok() {
        // A failed archiving round keeps its blocks local; the next round retries.
        let _ = archive_blocks(None).await;
    }
    r
}

#[ic_cdk::query]
fn icrc2_allowance(arg: AllowanceArgs) -> Allowance {
    let t = now();
    with_ledger(|l| l.allowance(&arg.account, &arg.spender, t))
}

// ------------------------------------------------------------------ ICRC-3 and legacy

/// Served by both roles: the ledger answers with local blocks plus `archived_blocks` callbacks,
/// the archive with the blocks it holds.
#[ic_cdk::query]
fn icrc3_get_blocks(args: Vec<GetBlocksRequest>) -> GetBlocksResult {
    if is_archive() {
        or_trap(with_archive(|a| a.icrc3_get_blocks(args)))
    } else {
        or_trap(with_ledger(|l| l.icrc3_get_blocks(args)))
    }
}

/// An archive lists no archives (as DFINITY's).
#[ic_cdk::query]
fn icrc3_get_archives(args: GetArchivesArgs) -> Vec<ICRC3ArchiveInfo> {
    if is_archive() {
        return vec![];
    }
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

/// Archive role: the ledger appends blocks after those the archive holds.
#[ic_cdk::update]
fn append_blocks(blocks: Vec<Block>) {
    let caller = ic_cdk::api::msg_caller();
    or_trap(with_archive(|a| a.append(caller, blocks)))
}

/// Archive role: bytes it can still take.
#[ic_cdk::query]
fn remaining_capacity() -> u64 {
    with_archive(|a| a.remaining_capacity())
}

fn call_error(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Creates and installs one archive as DFINITY's `create_and_initialize_node_canister`
/// (ledger_canister_core `archive.rs`): `create_canister` with `cycles_for_archive_creation`
/// attached and default settings, `install_code` (mode install) with the archive Wasm and
/// its init arg, then `update_settings` making `controller_id` + `more_controller_ids` its
/// controllers (the ledger is not one of them afterwards). Returns (node, index, capacity).
async fn spawn_archive() -> Result<(Principal, usize, u64), String> {
    use ic_cdk_management_canister as mgmt;
    let me = ic_cdk::api::canister_self();
    let (cycles, controllers, wasm, init) = with_ledger(|l| {
        let a = l.archive.as_ref().expect("archiving is enabled");
        (
            a.cycles_for_archive_creation,
            a.controllers.clone(),
            a.wasm.clone().into_vec(),
            l.archive_init_args(me).expect("archiving is enabled"),
        )
    });
    let created: mgmt::CanisterIdRecord =
        ic_cdk::call::Call::unbounded_wait(Principal::management_canister(), "create_canister")
            .with_arg(mgmt::CreateCanisterArgs { settings: None })
            .with_cycles(cycles as u128)
            .await
            .map_err(|e| call_error("create_canister", e))?
            .candid()
            .map_err(|e| call_error("create_canister reply", e))?;
    let node = created.canister_id;
    mgmt::install_code(&mgmt::InstallCodeArgs {
        mode: mgmt::CanisterInstallMode::Install,
        canister_id: node,
        wasm_module: wasm,
        arg: Encode!(&LedgerArg::Archive(init)).expect("encode archive init"),
    })
    .await
    .map_err(|e| call_error("install_code", e))?;
    mgmt::update_settings(&mgmt::UpdateSettingsArgs {
        canister_id: node,
        settings: mgmt::CanisterSettings {
            controllers: Some(controllers),
            ..Default::default()
        },
    })
    .await
    .map_err(|e| call_error("update_settings", e))?;
    let index = with_ledger(|l| {
        let a = l.archive.as_mut().expect("archiving is enabled");
        a.nodes.push(node);
        a.nodes.len() - 1
    });
    Ok((node, index, remaining_capacity_of(node).await?))
}

async fn remaining_capacity_of(node: Principal) -> Result<u64, String> {
    ic_cdk::call::Call::unbounded_wait(node, "remaining_capacity")
        .await
        .map_err(|e| call_error("remaining_capacity", e))?
        .candid()
        .map_err(|e| call_error("remaining_capacity reply", e))
}

/// DFINITY's `node_and_capacity`: the last archive if it can take a block of `needed` bytes,
/// else a new one.
async fn node_and_capacity(needed: u64) -> Result<(Principal, usize, u64), String> {
    let last = with_ledger(|l| l.archive.as_ref().and_then(|a| a.nodes.last().copied()));
    match last {
        None => spawn_archive().await,
        Some(node) => {
            let capacity = remaining_capacity_of(node).await?;
            if capacity < needed {
                spawn_archive().await
            } else {
                let index = with_ledger(|l| l.archive.as_ref().map_or(0, |a| a.nodes.len() - 1));
                Ok((node, index, capacity))
            }
        }
    }
}

/// The longest prefix of `blocks` that fits in `max_size` bytes.
fn take_prefix(blocks: &mut VecDeque<Block>, mut max_size: u64) -> VecDeque<Block> {
    let mut out = VecDeque::new();
    while let Some(b) = blocks.front() {
        let size = block_size(b);
        if size > max_size {
            break;
        }
        max_size -= size;
        out.extend(blocks.pop_front());
    }
    out
}

/// DFINITY's `send_blocks_to_archive`: fill the last archive (spawning one when there is none
/// or it is full), in `append_blocks` calls of at most the message size. Returns how many
/// blocks were sent, also on failure.
async fn send_blocks(mut blocks: VecDeque<Block>) -> Result<u64, (u64, String)> {
    let max_chunk = with_ledger(|l| {
        l.archive
            .as_ref()
            .map_or(0, |a| a.max_message_size_bytes)
            .min(LEDGER_MAX_MESSAGE_SIZE)
    });
    let mut sent = 0u64;
    while let Some(first) = blocks.front() {
        let (node, index, capacity) = node_and_capacity(block_size(first))
            .await
            .map_err(|e| (sent, e))?;
        let mut fitting = take_prefix(&mut blocks, capacity);
        if fitting.is_empty() {
            return Err((sent, "empty chunk".into()));
        }
        while !fitting.is_empty() {
            let chunk: Vec<Block> = take_prefix(&mut fitting, max_chunk).into();
            if chunk.is_empty() {
                return Err((sent, "empty chunk".into()));
            }
            let n = chunk.len() as u64;
            ic_cdk::call::Call::unbounded_wait(node, "append_blocks")
                .with_arg(chunk)
                .await
                .map_err(|e| (sent, call_error("append_blocks", e)))?;
            sent += n;
            with_ledger(|l| l.record_appended(index, n));
        }
    }
    Ok(sent)
}

/// One archiving round (DFINITY's `archive_blocks`): `force = Some(max)` moves up to `max` of
/// the oldest local blocks (test control); `None` follows the trigger threshold. A failed
/// round keeps its unsent blocks local; the next round retries. Returns how many moved.
async fn archive_blocks(force: Option<u64>) -> Result<u64, String> {
    let Some(blocks) = with_ledger(|l| l.begin_archiving(force)) else {
        return Ok(0);
    };
    let outcome = send_blocks(blocks).await;
    let sent = match &outcome {
        Ok(n) | Err((n, _)) => *n,
    };
    with_ledger(|l| l.end_archiving(sent, outcome.is_err()));
    outcome.map_err(|(_, e)| e)
}

// ------------------------------------------------------------------ test controls
//
// Only the canister's controllers may call these (an archive's test control also accepts its
// ledger, which forwards to it but is not its controller).

fn require_controller() {
    if !ic_cdk::api::is_controller(&ic_cdk::api::msg_caller()) {
        ic_cdk::trap("test controls are reserved to the canister's controllers");
    }
}

/// The next `n` transfers / transfer_froms / approvals answer `TemporarilyUnavailable`
/// without any effect.
/// Test control, for the canister\'s controllers only.
#[ic_cdk::update]
fn test_set_unavailable_next(n: u64) {
    require_controller();
    with_ledger(|l| l.faults.unavailable_next = n)
}

/// While `on`, every transfer / transfer_from / approval traps before applying anything (the
/// trap rolls the whole message back, so this cannot count down: switch it off explicitly).
/// Test control, for the canister\'s controllers only.
#[ic_cdk::update]
fn test_set_trap(on: bool) {
    require_controller();
    with_ledger(|l| l.faults.trap = on)
}

/// The next `n` transfers / transfer_froms (after those already queued) reply `reply` without
/// executing anything (`icrc2_transfer_from` gives the same variant).
/// Test control, for the canister\'s controllers only.
#[ic_cdk::update]
fn test_force_next_transfer_reply(reply: TransferError, n: u64) {
    require_controller();
    with_ledger(|l| {
        l.faults
            .forced_transfer_replies
            .extend(std::iter::repeat_n(reply, n as usize))
    })
}

/// Changes the transfer fee (what `icrc1_fee` says and what transfers must pay).
/// Test control, for the canister\'s controllers only.
#[ic_cdk::update]
fn test_set_fee(fee: Nat) {
    require_controller();
    let fee = or_trap(u128::try_from(&fee.0).map_err(|_| "fee too large".to_string()));
    with_ledger(|l| l.fee = fee)
}

/// Ledger time becomes IC time + `offset_nanos` (block timestamps, deduplication,
/// `CreatedInFuture`, allowance expiry). As DFINITY's, the ledger traps rather than append a
/// block older than its tip, so after a step backwards transactions trap until IC time
/// catches up.
/// Test control, for the canister\'s controllers only.
#[ic_cdk::update]
fn test_set_clock_offset(offset_nanos: i64) {
    require_controller();
    with_ledger(|l| l.clock_offset_nanos = offset_nanos)
}

/// Mints `amount` to `to` (a mint block without memo or created_at_time). Returns its index.
/// Test control, for the canister\'s controllers only.
#[ic_cdk::update]
fn test_mint(to: Account, amount: Nat) -> Nat {
    require_controller();
    let amount = or_trap(u128::try_from(&amount.0).map_err(|_| "amount too large".to_string()));
    let t = now();
    let i = with_ledger(|l| l.mint(to, amount, t));
    Nat::from(or_trap(i.map_err(|e| format!("{e:?}"))))
}

/// `count` mints of `amount` to `to` in one message (to fill the log quickly). Returns the
/// index of the first. Archiving does not run: call `test_archive_blocks_now`.
/// Test control, for the canister\'s controllers only.
#[ic_cdk::update]
fn test_mint_many(to: Account, amount: Nat, count: u64) -> Nat {
    require_controller();
    let amount = or_trap(u128::try_from(&amount.0).map_err(|_| "amount too large".to_string()));
    let t = now();
    let first = with_ledger(|l| {
        let first = l.log_length();
        for _ in 0..count {
            l.mint(to, amount, t).map_err(|e| format!("{e:?}"))?;
        }
        Ok(first)
    });
    Nat::from(or_trap(first))
}

/// Moves up to `max` (default: all) of the oldest local blocks to the archives now, spawning
/// archives as needed.
/// Test control, for the canister\'s controllers only.
#[ic_cdk::update]
async fn test_archive_blocks_now(max: Option<u64>) -> Result<u64, String> {
    require_controller();
    archive_blocks(Some(max.unwrap_or(u64::MAX))).await
}

/// Makes archives unreadable (their queries trap) or readable again. On an archive it sets
/// the flag; on the ledger it forwards to every archive it spawned.
/// Test control, for the canister\'s controllers only.
#[ic_cdk::update]
async fn test_set_archive_unavailable(on: bool) -> Result<(), String> {
    if is_archive() {
        let caller = ic_cdk::api::msg_caller();
        if with_archive(|a| a.ledger_id) != caller {
            require_controller();
        }
        with_archive(|a| a.unavailable = on);
        return Ok(());
    }
    require_controller();
    let nodes = with_ledger(|l| l.archive.as_ref().map(|a| a.nodes.clone()))
        .ok_or("the ledger has no archive")?;
    if nodes.is_empty() {
        return Err("the ledger has spawned no archive yet".into());
    }
    for node in nodes {
        ic_cdk::call::Call::unbounded_wait(node, "test_set_archive_unavailable")
            .with_arg(on)
            .await
            .map_err(|e| format!("{e}"))?
            .candid::<Result<(), String>>()
            .map_err(|e| format!("{e}"))??;
    }
    Ok(())
}

/// Test control, for the canister\'s controllers only.
#[ic_cdk::query]
fn test_stats() -> LedgerStats {
    require_controller();
    let t = now();
    with_ledger(|l| l.stats(t))
}

ic_cdk::export_candid!();

/// The Candid interface of this canister (both roles).
pub fn candid_interface() -> String {
    __export_service()
}
