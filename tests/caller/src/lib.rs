//! # A canister that calls the icjournal service
//!
//! The four ways a canister uses the service, each a few lines over `icjournal-client`, with
//! the service's fees attached (`Client::with_cycles`) and an idempotency key per request, so
//! that a retry after a lost reply never pays twice:
//!
//! 1. **execute**: the service sends an ICRC-2 transfer from this canister's account (after an
//!    `icrc2_approve` of amount + fee) and waits for the outcome;
//! 2. **submit + poll**: the same without waiting; poll the entry;
//! 3. **track**: this canister sends the transfer itself, with the memo and `created_at_time`
//!    the service journaled, and reports the ledger's answer;
//! 4. **record**: journal any step of this canister's own, report its result.
//!
//! Nothing here is specific to tests: it is the code a new caller writes.

use candid::{Nat, Principal};
use ic_cdk::{init, update};
use icjournal_client::transport::IcCdkTransport;
use icjournal_client::{
    icrc2_approve_args, Client, ClientError, Entry, EntryId, EntryKey, FlowResult, LedgerOp,
    RecordIntentArgs, ReportResultArgs, ReportedResult, Status, TrackTransferArgs, TransferRequest,
    TransferSpec,
};
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::TransferArg;
use icrc_ledger_types::icrc2::approve::ApproveError;
use std::cell::Cell;

thread_local! {
    static SERVICE: Cell<Principal> = const { Cell::new(Principal::anonymous()) };
    static LEDGER: Cell<Principal> = const { Cell::new(Principal::anonymous()) };
    static TIMEOUT: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Cycles attached to every call that creates an entry: at least the service's largest fee;
/// what it does not take comes back.
const FEE_CYCLES: u128 = 1_000_000_000;
/// Retries of a call whose outcome is unknown (same idempotency key each time).
const RETRIES: u32 = 5;

#[derive(candid::CandidType, candid::Deserialize)]
struct InitArg {
    service: Principal,
    ledger: Principal,
    /// Bounded-wait timeout of calls to the service (None: unbounded wait).
    call_timeout_secs: Option<u32>,
}

#[init]
fn init(arg: InitArg) {
    SERVICE.set(arg.service);
    LEDGER.set(arg.ledger);
    TIMEOUT.set(arg.call_timeout_secs);
}

fn service() -> Client<IcCdkTransport> {
    Client::new(
        SERVICE.get(),
        IcCdkTransport {
            timeout_secs: TIMEOUT.get(),
        },
    )
    .with_cycles(FEE_CYCLES)
}

/// Let the service spend `amount` (plus the ledger's fee) from this canister's account.
#[update]
async fn approve(amount: Nat) -> Result<Nat, String> {
    let client = service();
    let allowance = client
        .allowance_for(LEDGER.get(), amount)
        .await
        .map_err(|e| e.to_string())?;
    let args = icrc2_approve_args(SERVICE.get(), allowance, None);
    let (r,): (Result<Nat, ApproveError>,) =
        ic_cdk::call::Call::unbounded_wait(LEDGER.get(), "icrc2_approve")
            .with_arg(args)
            .await
            .map_err(|e| e.to_string())?
            .candid_tuple()
            .map_err(|e| e.to_string())?;
    r.map_err(|e| format!("{e:?}"))
}

fn transfer(to: Account, amount: Nat, order: &str) -> TransferRequest {
    TransferRequest {
        transfer: TransferSpec::Icrc2 {
            ledger: LEDGER.get(),
            spender_subaccount: None,
            from: Account::from(ic_cdk::api::canister_self()),
            to,
            amount,
            fee: None,
        },
        lock_key: None,
        idempotency_key: Some(order.to_string()),
    }
}

/// 1. execute: pay and wait. An unknown outcome (lost reply, the service upgraded mid-flight)
/// is retried with the same key: the service answers with the first entry, never a second.
#[update]
async fn pay(to: Account, amount: Nat, order: String) -> Result<FlowResult, ClientError> {
    let client = service();
    let request = transfer(to, amount, &order);
    let mut last = None;
    for _ in 0..RETRIES {
        match client.execute_transfer(request.clone()).await {
            Err(e) if e.is_unknown_outcome() => last = Some(e),
            other => return other,
        }
    }
    Err(last.expect("at least one attempt"))
}

/// 2. submit: start paying, return the entry id at once; `status` polls it.
#[update]
async fn submit(to: Account, amount: Nat, order: String) -> Result<EntryId, ClientError> {
    service()
        .submit_transfer(transfer(to, amount, &order))
        .await
}

#[update]
async fn status(id: EntryId) -> Result<Status, ClientError> {
    service().status_of(id).await
}

/// After a lost reply: the entry of an order, by the idempotency key it was sent with.
#[update]
async fn lookup(order: String) -> Result<Entry, ClientError> {
    service().find_entry(EntryKey::IdempotencyKey(order)).await
}

/// 3. track: this canister sends the transfer itself (from its own account, with the memo and
/// created_at_time the service set) and reports the ledger's answer.
#[update]
async fn pay_myself(to: Account, amount: Nat, order: String) -> Result<Status, ClientError> {
    let client = service();
    let tracked = client
        .track_transfer(TrackTransferArgs {
            ledger: LEDGER.get(),
            op: LedgerOp::Icrc1Transfer(TransferArg {
                from_subaccount: None,
                to,
                fee: None,
                created_at_time: None,
                memo: None,
                amount,
            }),
            lock_key: None,
            idempotency_key: Some(order),
        })
        .await?;
    client.send_tracked(&tracked).await
}

/// 4. record: journal a step of this canister's own, then report how it went.
#[update]
async fn record(label: String, order: String) -> Result<EntryId, ClientError> {
    service()
        .record_intent(RecordIntentArgs {
            label,
            payload: order.clone().into_bytes(),
            lock_key: Some(order.clone()),
            idempotency_key: Some(order),
        })
        .await
}

#[update]
async fn report(id: EntryId, ok: bool) -> Result<Status, ClientError> {
    let result = if ok {
        ReportedResult::Succeeded {
            block_index: None,
            reply: vec![],
        }
    } else {
        ReportedResult::Failed {
            message: "the step failed".into(),
        }
    };
    service()
        .report_result(ReportResultArgs {
            entry_id: id,
            result,
        })
        .await
}

ic_cdk::export_candid!();
