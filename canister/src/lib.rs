//! icjournal service canister: a thin endpoint layer over the icjournal engine.
//!
//! This file holds only endpoints, guards and lifecycle hooks (like DFINITY's ckBTC minter's
//! `main.rs`); the logic is in `service` (generic, unit-tested natively), input checks in
//! `validate`, roles in `guard`, the ingress filter in `inspect`, HTTP in `http`.
//! `candid/icjournal.did` is the source of truth of the interface; a test checks it equals the
//! interface exported here.
//!
//! Stable memory layout (one `MemoryManager`): `MemoryId 0` = service state (`persist`:
//! configuration, pause flag), `MemoryId 1..=16` = the engine's journal (`Memories`).
//! Everything lives in stable structures (I5); `pre_upgrade` only refuses an upgrade of a
//! canister that is not stopped (`icjournal::upgrade`).

pub mod config;
pub mod guard;
pub mod http;
pub mod inspect;
pub mod logs;
pub mod persist;
pub mod service;
pub mod validate;

use crate::config::MAX_ARG_BYTES;
use crate::guard::Ctx;
use crate::http::{HttpRequest, HttpResponse, ServiceGauges};
use crate::service::Service;
use candid::{Nat, Principal};
use ic_cdk::{init, inspect_message, post_upgrade, pre_upgrade, query, update};
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::{DefaultMemoryImpl, Memory};
use icjournal::{
    reply, AdminRequest, AdminResult, AuditRecord, Entry, EntryId, EntryKey, EntrySummary,
    FlowResult, IcRuntime, Memories, Metrics, Page, PageRequest, Status,
};
use icjournal_client::{
    AdminListArgs, AuditArgs, ConfigView, ControllerView, LedgerConfig, ListArgs, RecordIntentArgs,
    ReportResultArgs, SagaRequest, ServiceConfig, ServiceResult, SetConfigArgs, TrackTransferArgs,
    TrackedTransfer, TransferRequest,
};
use icrc_ledger_types::icrc1::account::Account;
use std::cell::RefCell;
use std::rc::Rc;

/// Decoding quota of every endpoint's argument, in Candid cost units: a hostile argument
/// (deep nesting, huge vectors of empty values) is refused after this much work instead of
/// burning the message's instructions. The largest valid arguments cost at most a tenth of
/// it (measured by `tests::decoding_quota`). DFINITY's canisters bound untrusted arguments
/// the same way (e.g. `decode_one_with_decoding_quota::<100000,_>` for `http_request` in
/// rs/ledger_suite/icrc1/ledger/src/main.rs).
pub const DECODING_QUOTA: usize = 500_000;
/// Skipping quota (fields this build does not know): ic-cdk's default.
pub const SKIPPING_QUOTA: usize = 10_000;

/// Guard of every endpoint with an argument: the argument must decode as `T` within the quotas,
/// or the call is rejected with the decoder's reason before anything runs. (A guard, not
/// `decode_with`: ic-cdk would then export the argument as `blob` in the Candid interface.)
fn decodes<T: for<'de> candid::Deserialize<'de> + candid::CandidType>() -> Result<(), String> {
    let mut config = candid::DecoderConfig::new();
    config
        .set_decoding_quota(DECODING_QUOTA)
        .set_skipping_quota(SKIPPING_QUOTA);
    candid::utils::decode_args_with_config::<(T,)>(&ic_cdk::api::msg_arg_data(), &config)
        .map(|_| ())
        .map_err(|e| format!("invalid argument: {e}"))
}

/// The same for endpoints without arguments (any extra arguments are still bounded).
fn decodes_nothing() -> Result<(), String> {
    let mut config = candid::DecoderConfig::new();
    config
        .set_decoding_quota(DECODING_QUOTA)
        .set_skipping_quota(SKIPPING_QUOTA);
    let bytes = ic_cdk::api::msg_arg_data();
    if bytes.is_empty() {
        return Ok(());
    }
    candid::utils::decode_args_with_config::<()>(&bytes, &config)
        .map_err(|e| format!("invalid argument: {e}"))
}

/// MemoryId of the service state.
pub const STATE_MEMORY_ID: u8 = 0;
/// First MemoryId of the engine's memories (`icjournal::RESERVED_MEMORY_IDS` reserved for it).
pub const FIRST_ENGINE_MEMORY_ID: u8 = 1;

type Mem = VirtualMemory<DefaultMemoryImpl>;
type Svc = Service<IcRuntime, Mem>;

thread_local! {
    static SERVICE: RefCell<Option<Rc<Svc>>> = const { RefCell::new(None) };
}

fn service() -> Rc<Svc> {
    SERVICE
        .with(|s| s.borrow().clone())
        .unwrap_or_else(|| ic_cdk::trap("icjournal: service not initialized"))
}

/// The caller of the current message, captured before any await.
fn ctx() -> Ctx {
    let caller = ic_cdk::api::msg_caller();
    Ctx::new(caller, ic_cdk::api::is_controller(&caller))
}

/// `ctx()` plus the cycles the call carries (for endpoints that charge fees; update calls only:
/// queries may not ask).
fn paying_ctx() -> Ctx {
    ctx().with_cycles(ic_cdk::api::msg_cycles_available())
}

/// Checks that raw stable memory is empty or holds a `MemoryManager` layout this build reads:
/// `MemoryManager::init` would silently re-initialise anything else (data loss).
pub fn check_stable_layout(m: &impl Memory) -> Result<(), String> {
    if m.size() == 0 {
        return Ok(());
    }
    let mut header = [0u8; 4];
    m.read(0, &mut header);
    if &header[..3] != b"MGR" {
        return Err("stable memory does not hold a MemoryManager layout".into());
    }
    if header[3] != 1 {
        return Err(format!(
            "unsupported MemoryManager layout version {}",
            header[3]
        ));
    }
    Ok(())
}

fn setup(arg: Option<ServiceConfig>) {
    let raw = DefaultMemoryImpl::default();
    if let Err(e) = check_stable_layout(&raw) {
        ic_cdk::trap(format!("icjournal: {e}"));
    }
    let mm = MemoryManager::init(raw);
    let state = mm.get(MemoryId::new(STATE_MEMORY_ID));
    let memories = Memories::from_manager(&mm, FIRST_ENGINE_MEMORY_ID);
    let svc = Service::open(IcRuntime, state, memories, arg)
        .unwrap_or_else(|e| ic_cdk::trap(format!("icjournal: {e}")));
    svc.start_recovery_timer();
    SERVICE.with(|s| *s.borrow_mut() = Some(svc));
}

/// Guard of every update method: the size check, then revive the timers if a trap in
/// `canister_global_timer` lost them (any update message brings recovery back).
fn update_guard() -> Result<(), String> {
    arg_size_guard()?;
    if let Some(s) = SERVICE.with(|s| s.borrow().clone()) {
        s.revive_timers();
    }
    Ok(())
}

/// Refuse oversized arguments before they are decoded (runs ahead of Candid decoding).
fn arg_size_guard() -> Result<(), String> {
    let n = ic_cdk::api::msg_arg_data().len();
    if n > MAX_ARG_BYTES {
        return Err(format!(
            "argument of {n} bytes exceeds {MAX_ARG_BYTES} bytes"
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Lifecycle
// ------------------------------------------------------------------------------------------

/// `None` = default configuration (controllers are the only operators, no ledgers).
#[init]
fn init(arg: Option<ServiceConfig>) {
    setup(arg);
    ic_canister_log::log!(logs::INFO, "initialized");
}

/// Refuse to be upgraded unless stopped: a reply to a call made before the upgrade would run
/// in the new module with callback state from the old heap (`icjournal::upgrade`). The trap
/// makes the IC reject the upgrade and keep the old module running, state untouched.
#[pre_upgrade]
fn pre_upgrade() {
    if let Err(e) = icjournal::upgrade::check(&icjournal::IcRuntime) {
        ic_cdk::trap(e.to_string());
    }
}

/// `None` keeps the persisted configuration. Traps on an unknown or corrupt layout.
#[post_upgrade]
fn post_upgrade(arg: Option<ServiceConfig>) {
    setup(arg);
    ic_canister_log::log!(logs::INFO, "upgraded; recovery timer re-armed");
}

/// First filter for ingress only; every endpoint checks again (see `inspect`).
#[inspect_message]
fn inspect_message() {
    let method = ic_cdk::api::msg_method_name();
    let caller = ic_cdk::api::msg_caller();
    let arg_len = ic_cdk::api::msg_arg_data().len();
    let verdict = inspect::accept(
        &method,
        caller == Principal::anonymous(),
        arg_len,
        || {
            SERVICE.with(|s| {
                s.borrow().as_ref().is_some_and(|s| {
                    guard::is_operator(
                        &Ctx::new(caller, ic_cdk::api::is_controller(&caller)),
                        &s.config(),
                    )
                })
            })
        },
        || ic_cdk::api::is_controller(&caller),
    );
    if verdict.is_ok() {
        ic_cdk::api::accept_message();
    }
}

// ------------------------------------------------------------------------------------------
// Generic journaling (callers see only their own entries)
// ------------------------------------------------------------------------------------------

#[update(
    guard = "update_guard",
    guard = "decodes::<RecordIntentArgs>",
    manual_reply = true
)]
fn record_intent(args: RecordIntentArgs) -> ServiceResult<EntryId> {
    reply::reply(service().record_intent(&paying_ctx(), args))
}

#[update(
    guard = "update_guard",
    guard = "decodes::<ReportResultArgs>",
    manual_reply = true
)]
fn report_result(args: ReportResultArgs) -> ServiceResult<Status> {
    reply::reply(service().report_result(&ctx(), args))
}

#[query(guard = "arg_size_guard", guard = "decodes::<EntryId>")]
fn get_entry(id: EntryId) -> ServiceResult<Entry> {
    service().get_entry(&ctx(), id)
}

/// The caller's entry with this key: the one created with that idempotency key, or the latest
/// that took that lock key (also once final). For a caller that lost a reply.
#[query(guard = "arg_size_guard", guard = "decodes::<EntryKey>")]
fn find_entry(key: EntryKey) -> ServiceResult<Entry> {
    service().find_entry(&ctx(), key)
}

#[query(guard = "arg_size_guard", guard = "decodes::<ListArgs>")]
fn list_entries(args: ListArgs) -> ServiceResult<Page<EntrySummary>> {
    service().list_entries(&ctx(), args)
}

#[query(guard = "arg_size_guard", guard = "decodes::<PageRequest>")]
fn list_unresolved(page: PageRequest) -> ServiceResult<Page<EntrySummary>> {
    service().list_unresolved(&ctx(), page)
}

#[query(guard = "arg_size_guard", guard = "decodes::<PageRequest>")]
fn list_failed(page: PageRequest) -> ServiceResult<Page<EntrySummary>> {
    service().list_failed(&ctx(), page)
}

// ------------------------------------------------------------------------------------------
// Transfers
// ------------------------------------------------------------------------------------------

#[update(
    guard = "update_guard",
    guard = "decodes::<TrackTransferArgs>",
    manual_reply = true
)]
fn track_transfer(args: TrackTransferArgs) -> ServiceResult<TrackedTransfer> {
    reply::reply(service().track_transfer(&paying_ctx(), args))
}

#[update(
    guard = "update_guard",
    guard = "decodes::<TransferRequest>",
    manual_reply = true
)]
async fn execute_transfer(req: TransferRequest) -> ServiceResult<FlowResult> {
    let ctx = paying_ctx();
    let s = service();
    reply::reply(s.execute_transfer(&ctx, req).await)
}

#[update(
    guard = "update_guard",
    guard = "decodes::<TransferRequest>",
    manual_reply = true
)]
fn submit_transfer(req: TransferRequest) -> ServiceResult<EntryId> {
    reply::reply(service().submit_transfer(&paying_ctx(), req))
}

#[update(
    guard = "update_guard",
    guard = "decodes::<SagaRequest>",
    manual_reply = true
)]
async fn execute_saga(req: SagaRequest) -> ServiceResult<FlowResult> {
    let ctx = paying_ctx();
    let s = service();
    reply::reply(s.execute_saga(&ctx, req).await)
}

#[update(
    guard = "update_guard",
    guard = "decodes::<SagaRequest>",
    manual_reply = true
)]
fn submit_saga(req: SagaRequest) -> ServiceResult<EntryId> {
    reply::reply(service().submit_saga(&paying_ctx(), req))
}

/// The account of the service that holds `owner`'s escrow (source of its ICRC-1 transfers).
#[query(guard = "arg_size_guard", guard = "decodes::<Principal>")]
fn escrow_account(owner: Principal) -> Account {
    validate::escrow_account(ic_cdk::api::canister_self(), owner)
}

#[query(guard = "arg_size_guard", guard = "decodes_nothing")]
fn ledgers() -> Vec<LedgerConfig> {
    service().ledgers()
}

#[query(guard = "arg_size_guard", guard = "decodes_nothing")]
fn metrics() -> Metrics {
    service().metrics()
}

/// Self-call commit point of the engine (a no-op; only the canister itself may call it).
#[update(guard = "update_guard", guard = "decodes_nothing")]
fn icjournal_commit() {
    if let Err(e) = guard::self_only(&ctx(), ic_cdk::api::canister_self()) {
        ic_cdk::trap(e.to_string());
    }
}

/// Campaign builds only (feature `planted-bugs`): switch on a known bug by name ("none" for
/// none) to prove the verification campaign catches it. Controllers only; cleared by upgrades.
#[cfg(feature = "planted-bugs")]
#[update]
fn planted_bug(name: String) {
    if !ic_cdk::api::is_controller(&ic_cdk::api::msg_caller()) {
        ic_cdk::trap("planted_bug: controllers only");
    }
    let bug = icjournal::planted::PlantedBug::from_name(&name)
        .unwrap_or_else(|| ic_cdk::trap(format!("planted_bug: unknown bug {name}")));
    service().journal().plant_bug(bug);
}

// ------------------------------------------------------------------------------------------
// Operators (admins or controllers)
// ------------------------------------------------------------------------------------------

#[update(guard = "update_guard", guard = "decodes::<AdminRequest>")]
async fn admin_act(req: AdminRequest) -> ServiceResult<AdminResult> {
    let ctx = ctx();
    let s = service();
    s.admin_act(&ctx, req).await
}

#[query(guard = "arg_size_guard", guard = "decodes::<EntryId>")]
fn admin_get_entry(id: EntryId) -> ServiceResult<Entry> {
    service().admin_get_entry(&ctx(), id)
}

#[query(guard = "arg_size_guard", guard = "decodes::<AdminListArgs>")]
fn admin_list(args: AdminListArgs) -> ServiceResult<Page<EntrySummary>> {
    service().admin_list(&ctx(), args)
}

#[query(guard = "arg_size_guard", guard = "decodes::<AuditArgs>")]
fn admin_audit(args: AuditArgs) -> ServiceResult<Vec<AuditRecord>> {
    service().admin_audit(&ctx(), args)
}

#[query(guard = "arg_size_guard", guard = "decodes_nothing")]
fn get_config() -> ServiceResult<ConfigView> {
    service().get_config(&ctx())
}

#[update(guard = "update_guard", guard = "decodes::<SetConfigArgs>")]
fn set_config(args: SetConfigArgs) -> ServiceResult<()> {
    service().set_config(&ctx(), args)
}

#[update(guard = "update_guard", guard = "decodes::<String>")]
fn pause_recovery(reason: String) -> ServiceResult<()> {
    service().pause_recovery(&ctx(), reason)
}

#[update(guard = "update_guard", guard = "decodes::<String>")]
fn resume_recovery(reason: String) -> ServiceResult<()> {
    service().resume_recovery(&ctx(), reason)
}

/// Controllers only: includes the cycles balance (never exposed publicly).
#[query(guard = "arg_size_guard", guard = "decodes_nothing")]
fn controller_view() -> ServiceResult<ControllerView> {
    guard::controller(&ctx())?;
    let s = service();
    Ok(ControllerView {
        cycles_balance: Nat::from(ic_cdk::api::canister_cycle_balance()),
        config: s.config(),
        recovery_paused: s.recovery_paused(),
        in_flight_total: s.in_flight_total(),
        metrics: s.metrics(),
        canister_version: ic_cdk::api::canister_version(),
    })
}

// ------------------------------------------------------------------------------------------
// HTTP
// ------------------------------------------------------------------------------------------

#[query(guard = "arg_size_guard", guard = "decodes::<HttpRequest>")]
fn http_request(req: HttpRequest) -> HttpResponse {
    let s = service();
    http::route(
        &req,
        || {
            let cfg = s.config();
            (
                s.metrics(),
                ServiceGauges {
                    recovery_paused: s.recovery_paused(),
                    in_flight: s.in_flight_total(),
                    admins: cfg.admins.len() as u32,
                    ledgers: cfg.ledgers.len() as u32,
                },
            )
        },
        || s.dashboard(ic_cdk::api::time()),
    )
}

ic_cdk::export_candid!();

#[cfg(test)]
mod tests;

#[cfg(test)]
mod service_tests;
