//! # Payout example: a canister that embeds icjournal
//!
//! Users hold internal balances; `payout` sends tokens to an ICRC-1 account as a journaled saga
//! (debit the internal balance → ledger transfer → on definitive failure credit back). This file
//! is the whole endpoint layer: endpoints, guards, lifecycle. The logic lives in plain modules
//! (`payout`, `balances`, `state`, `access`, `types`).
//!
//! ## Adopting icjournal: the lines you add
//!
//! ```text
//! // Cargo.toml
//! icjournal = "0.1"
//!
//! // state: give the engine a MemoryId range of your MemoryManager, open it (create or load)
//! let journal = Journal::open(IcRuntime, Memories::from_manager(&mm, 16), config)?;
//! journal.register_local_handler("payout.debit", debit);    // host-local saga steps
//! journal.register_local_handler("payout.credit", credit);  // ... and their compensations
//!
//! // init + post_upgrade: re-arm recovery
//! journal.start_recovery_timer();
//!
//! // pre_upgrade: refuse unless stopped (a reply to a call made before the upgrade would run
//! // in the new module with callback state from the old heap; see `icjournal::upgrade`)
//! #[pre_upgrade] fn pre_upgrade() { if let Err(e) = icjournal::upgrade::check(&IcRuntime) { trap(e.to_string()) } }
//!
//! // every update method's guard: bring timers back if a trapped canister_global_timer lost them
//! fn revive() -> Result<(), String> { journal().revive_timers(); Ok(()) }
//! #[update(guard = "revive")] async fn deposit(..) { .. }
//! // a journaled flow's reply: its Candid type table built once (icjournal::reply)
//! #[update(guard = "revive", manual_reply = true)] async fn payout(..) -> R { reply(pay(..).await) }
//!
//! // the self-call commit target
//! #[update(hidden = true)] fn icjournal_commit() {}
//!
//! // the flow: journal (takes the lock), then drive it
//! let id = journal.start_saga(caller, steps, Some(format!("payout:{caller}")))?;
//! journal.run_saga_then_reply(id).await?; // only the reply follows: no commit of the end
//!
//! // operators
//! journal.admin(caller, AdminRequest { entry_id, action, reason, acknowledge_risk }, is_admin).await?;
//! ```

pub mod access;
pub mod balances;
pub mod payout;
pub mod state;
pub mod types;

use candid::{Nat, Principal};
use ic_cdk::{init, post_upgrade, pre_upgrade, query, update};
use icjournal::{
    AdminAction, AdminRequest, AdminResult, AuditRecord, Entry, EntryId, EntrySummary, ListFilter,
    Page, PageRequest, Status,
};
use payout::PlanContext;
use state::{journal, mutate_state, read_state};
use types::*;

/// The no-op update the engine self-calls to commit a journaled result
/// (`icjournal::Config::commit_method`, whose default this is).
pub const COMMIT_METHOD: &str = "icjournal_commit";

// ---------------------------------------------------------------------------------------------
// Guards (checked inside every endpoint that authenticates)
// ---------------------------------------------------------------------------------------------

fn caller_user() -> Result<Principal, PayoutError> {
    access::authenticate(ic_cdk::api::msg_caller())
}

fn caller_admin() -> Result<Principal, PayoutError> {
    let admins = read_state(|s| s.settings.get().admins.clone());
    access::authorize_admin(
        ic_cdk::api::msg_caller(),
        &admins,
        ic_cdk::api::is_controller,
    )
}

// ---------------------------------------------------------------------------------------------
// Lifecycle (all state is in stable memory; pre_upgrade only refuses an unstopped upgrade)
// ---------------------------------------------------------------------------------------------

/// Refuse to be upgraded unless stopped (`icjournal::upgrade` says why). The trap makes the IC
/// reject the upgrade and keep the old module running, state untouched.
#[pre_upgrade]
fn pre_upgrade() {
    if let Err(e) = icjournal::upgrade::check(&icjournal::IcRuntime) {
        ic_cdk::trap(e.to_string());
    }
}

#[init]
fn init(arg: PayoutArg) {
    let PayoutArg::Init(arg) = arg else {
        ic_cdk::trap("init expects PayoutArg::Init")
    };
    state::init(arg).unwrap_or_else(|e| ic_cdk::trap(format!("init: {e}")));
    journal().start_recovery_timer();
}

#[post_upgrade]
fn post_upgrade(arg: Option<PayoutArg>) {
    let arg = match arg {
        None => None,
        Some(PayoutArg::Upgrade(a)) => a,
        Some(PayoutArg::Init(_)) => ic_cdk::trap("post_upgrade expects PayoutArg::Upgrade"),
    };
    // Traps on a missing or corrupt layout: the upgrade then fails and the data stays.
    state::post_upgrade(arg).unwrap_or_else(|e| ic_cdk::trap(format!("post_upgrade: {e}")));
    journal().start_recovery_timer();
}

/// Self-call commit target of the engine: does nothing; the commit happens when the awaiting
/// message ends. Hidden from the Candid interface.
#[update(hidden = true)]
fn icjournal_commit() {}

/// Guard of every user and operator update: if a trap in `canister_global_timer` lost the
/// system timer, any update message brings recovery back.
fn revive() -> Result<(), String> {
    journal().revive_timers();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

/// Pay `amount` from the caller's internal balance to `to` on the ledger.
///
/// Replies through `icjournal::reply`: Candid's type table of the reply (it carries the
/// engine's `FailureReason`) is built once, not on every payout (~1.5M instructions each).
#[update(guard = "revive", manual_reply = true)]
async fn payout(to: Account, amount: Nat) -> Result<PayoutReceipt, PayoutError> {
    icjournal::reply::reply(pay(to, amount).await)
}

async fn pay(to: Account, amount: Nat) -> Result<PayoutReceipt, PayoutError> {
    let owner = caller_user()?;
    let plan = read_state(|s| {
        let ctx = PlanContext {
            settings: s.settings.get(),
            self_id: ic_cdk::api::canister_self(),
            balance: s.balances.get(&owner),
            in_flight: s.journal.lock_holder(&payout::lock_key(&owner)),
        };
        payout::plan(&ctx, owner, to, &amount)
    })?;
    payout::run(&journal(), &plan).await
}

#[query]
fn balance_of(who: Principal) -> Nat {
    Nat::from(read_state(|s| s.balances.get(&who)))
}

/// One payout: the owner's own, or any for an admin.
#[query]
fn get_payout(id: EntryId) -> Result<PayoutReceipt, PayoutError> {
    let caller = caller_user()?;
    let any = caller_admin().is_ok();
    read_state(|s| payout::get_for(&s.journal, caller, id, any))
}

/// The caller's payouts, oldest first (keyset paging by payout id).
#[query]
fn my_payouts(page: PageRequest) -> Result<PayoutPage, PayoutError> {
    let caller = caller_user()?;
    Ok(read_state(|s| payout::list_for(&s.journal, caller, &page)))
}

#[query]
fn metrics() -> PayoutMetrics {
    read_state(|s| PayoutMetrics {
        journal: s.journal.metrics(),
        accounts: s.balances.accounts(),
        total_balances: Nat::from(s.balances.total()),
    })
}

#[query]
fn settings() -> Settings {
    read_state(|s| s.settings.get().clone())
}

// ---------------------------------------------------------------------------------------------
// Admins (listed in the settings, or controllers)
// ---------------------------------------------------------------------------------------------

/// Credit an internal balance (test/admin funding). Returns the new balance.
#[update(guard = "revive")]
fn deposit(to: Principal, amount: Nat) -> Result<Nat, PayoutError> {
    caller_admin()?;
    let amount = nat_to_u128("amount", &amount)?;
    if to == Principal::anonymous() || amount == 0 {
        return Err(PayoutError::InvalidArgument {
            message: "need a non-anonymous account and amount > 0".into(),
        });
    }
    mutate_state(|s| s.balances.credit(to, amount))
        .map(Nat::from)
        .map_err(|e| PayoutError::InvalidArgument {
            message: e.to_string(),
        })
}

/// Entries waiting for an operator (payouts and their steps).
#[query]
fn admin_manual_queue(page: PageRequest) -> Result<Page<EntrySummary>, PayoutError> {
    caller_admin()?;
    let filter = ListFilter {
        status: Some(Status::ManualReview),
        ..Default::default()
    };
    Ok(read_state(|s| s.journal.list(&filter, &page)))
}

#[query]
fn admin_list(filter: ListFilter, page: PageRequest) -> Result<Page<EntrySummary>, PayoutError> {
    caller_admin()?;
    Ok(read_state(|s| s.journal.list(&filter, &page)))
}

/// A journal entry with its intent, attempts, errors, outcome and history.
#[query]
fn admin_show(id: EntryId) -> Result<Entry, PayoutError> {
    caller_admin()?;
    read_state(|s| s.journal.get(id)).ok_or(PayoutError::NotFound { id })
}

/// The audit trail (every status change and operator action), from `start_seq`.
#[query]
fn admin_audit(start_seq: u64, limit: u32) -> Result<Vec<AuditRecord>, PayoutError> {
    caller_admin()?;
    Ok(read_state(|s| s.journal.audit(start_seq, limit)))
}

async fn admin_verb(
    entry_id: EntryId,
    action: AdminAction,
    reason: String,
    acknowledge_risk: Option<bool>,
) -> Result<AdminResult, PayoutError> {
    let actor = caller_admin()?;
    let journal = journal();
    let request = AdminRequest {
        entry_id,
        action,
        reason,
        acknowledge_risk,
    };
    // An approval counts only while its approver is still an admin or a controller.
    let admins = read_state(|s| s.settings.get().admins.clone());
    let is_operator = |p: &Principal| admins.contains(p) || ic_cdk::api::is_controller(p);
    let result = journal.admin(actor, request, is_operator).await?;
    // The action commits at the first await below; the payout then continues right away.
    payout::resume(&journal, entry_id).await;
    Ok(result)
}

/// Run recovery on a manual-review entry again (attempts reset).
#[update(guard = "revive")]
async fn admin_retry(entry_id: EntryId, reason: String) -> Result<AdminResult, PayoutError> {
    admin_verb(entry_id, AdminAction::Retry, reason, None).await
}

/// Close as succeeded; a transfer needs its block index as evidence.
#[update(guard = "revive")]
async fn admin_resolve_succeeded(
    entry_id: EntryId,
    block_index: Option<u64>,
    reason: String,
) -> Result<AdminResult, PayoutError> {
    admin_verb(
        entry_id,
        AdminAction::ResolveSucceeded { block_index },
        reason,
        None,
    )
    .await
}

/// Close as failed (the operator asserts the step did not execute); a payout saga waiting on
/// this step then credits the debit back. While the ledger could still execute a transfer,
/// `acknowledge_risk = opt true` is required (see `JournalError::WindowStillOpen`).
#[update(guard = "revive")]
async fn admin_resolve_failed(
    entry_id: EntryId,
    reason: String,
    acknowledge_risk: Option<bool>,
) -> Result<AdminResult, PayoutError> {
    admin_verb(
        entry_id,
        AdminAction::ResolveFailed,
        reason,
        acknowledge_risk,
    )
    .await
}

/// Payout saga: credit the debit back (compensate completed steps).
#[update(guard = "revive")]
async fn admin_compensate(entry_id: EntryId, reason: String) -> Result<AdminResult, PayoutError> {
    admin_verb(entry_id, AdminAction::Compensate, reason, None).await
}

/// Close without executing (same `acknowledge_risk` rule as `admin_resolve_failed`).
#[update(guard = "revive")]
async fn admin_cancel(
    entry_id: EntryId,
    reason: String,
    acknowledge_risk: Option<bool>,
) -> Result<AdminResult, PayoutError> {
    admin_verb(entry_id, AdminAction::Cancel, reason, acknowledge_risk).await
}

/// Run one recovery pass now (what the timer does every `recovery_interval_ns`).
#[update(guard = "revive")]
async fn admin_run_recovery() -> Result<RecoveryReport, PayoutError> {
    caller_admin()?;
    let r = journal().recovery_tick().await;
    Ok(RecoveryReport {
        examined: r.examined,
        resolved: r.resolved,
        skipped_overlap: r.skipped_overlap,
        budget_exhausted: r.budget_exhausted,
    })
}

// The interface ships as `candid:service` metadata taken from `payout.did` (checked equal to the
// implementation by the test below), so the release Wasm carries no Candid-printing code.
#[cfg(target_family = "wasm")]
#[link_section = "icp:public candid:service"]
#[used]
static CANDID_SERVICE: [u8; include_bytes!("../payout.did").len()] =
    *include_bytes!("../payout.did");

#[cfg(test)]
candid::export_service!();

#[cfg(test)]
mod candid_tests {
    #[test]
    fn payout_did_matches_the_implementation() {
        use candid_parser::utils::{service_equal, CandidSource};
        let implemented = super::__export_service(); // = candid::export_service!()
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("payout.did");
        if std::env::var_os("PRINT_CANDID").is_some() {
            println!("{implemented}");
        }
        service_equal(CandidSource::File(&path), CandidSource::Text(&implemented))
            .unwrap_or_else(|e| panic!("payout.did differs from the implementation: {e:?}"));
    }
}
