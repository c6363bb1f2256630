//! The payout flow as an icjournal saga:
//!
//! 1. `payout.debit` — host-local step (registered handler): debit amount + fee from the
//!    caller's internal balance. Compensation: `payout.credit` (credit it back).
//! 2. ICRC-1 `icrc1_transfer` from the canister's own account, journaled by the engine
//!    (fixed `created_at_time`, memo = entry id, Drop guard, self-call commit).
//!
//! If step 2 fails definitively the engine runs the compensation of step 1; if its outcome is
//! unknown the engine's recovery timer finds it out (dedup resend, memo lookup) first. The saga
//! holds the lock key `payout:<principal>` until it is resolved (I3).
//!
//! Everything here is generic over the engine's `Runtime` and memory, so the whole flow runs
//! natively on `FakeRuntime` in the tests below.

use crate::balances::BalanceError;
use crate::types::*;
use candid::{CandidType, Decode, Deserialize, Encode, Nat, Principal};
use ic_stable_structures::Memory;
use icjournal::{
    Entry, EntryId, FailureReason, Intent, Journal, Kind, ListFilter, LocalAction, LocalHandler,
    Outcome, PageRequest, Runtime, SagaStepSpec, Status, StepAction, TransferSpec,
};
use std::rc::Rc;

/// Handler names (persisted inside saga steps: never rename).
pub const DEBIT_HANDLER: &str = "payout.debit";
pub const CREDIT_HANDLER: &str = "payout.credit";

/// Payload of the debit/credit local steps.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BalanceChange {
    pub account: Principal,
    pub amount: Nat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BalanceOp {
    Debit,
    Credit,
}

/// The lock key that serialises one caller's payouts (I3).
pub fn lock_key(owner: &Principal) -> String {
    format!("payout:{owner}")
}

/// A validated payout request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayoutPlan {
    pub owner: Principal,
    pub ledger: Principal,
    pub to: Account,
    pub amount: u128,
    pub fee: Option<u128>,
    /// amount + fee (what the owner's internal balance pays).
    pub debit: u128,
}

/// What `plan` needs to know about the world.
pub struct PlanContext<'a> {
    pub settings: &'a Settings,
    pub self_id: Principal,
    /// The owner's current internal balance.
    pub balance: u128,
    /// Entry currently holding the owner's lock key, if any.
    pub in_flight: Option<EntryId>,
}

/// Validate a payout request (cheap checks first; nothing is written).
pub fn plan(
    ctx: &PlanContext,
    owner: Principal,
    to: Account,
    amount: &Nat,
) -> Result<PayoutPlan, PayoutError> {
    if owner == Principal::anonymous() {
        return Err(PayoutError::AnonymousCaller);
    }
    if let Some(id) = ctx.in_flight {
        return Err(PayoutError::PayoutInProgress {
            payout_id: id,
            lock_key: lock_key(&owner),
        });
    }
    let amount = nat_to_u128("amount", amount)?;
    if amount == 0 {
        return Err(PayoutError::InvalidArgument {
            message: "amount must be > 0".into(),
        });
    }
    if to.owner == Principal::anonymous() {
        return Err(PayoutError::InvalidArgument {
            message: "destination owner must not be the anonymous principal".into(),
        });
    }
    if to.owner == ctx.self_id {
        return Err(PayoutError::InvalidArgument {
            message: "destination must not be this canister (payouts leave the canister)".into(),
        });
    }
    let fee = match &ctx.settings.ledger_fee {
        Some(f) => Some(nat_to_u128("ledger_fee", f)?),
        None => None,
    };
    let debit =
        amount
            .checked_add(fee.unwrap_or(0))
            .ok_or_else(|| PayoutError::InvalidArgument {
                message: "amount + fee exceeds 2^128 - 1".into(),
            })?;
    if ctx.balance < debit {
        return Err(PayoutError::InsufficientBalance {
            balance: Nat::from(ctx.balance),
            required: Nat::from(debit),
        });
    }
    Ok(PayoutPlan {
        owner,
        ledger: ctx.settings.ledger,
        to,
        amount,
        fee,
        debit,
    })
}

fn local(handler: &str, account: Principal, amount: u128) -> StepAction {
    // The same bytes as `Encode!`, with the type table built once (`icjournal::reply`).
    let payload = icjournal::reply::encode(&BalanceChange {
        account,
        amount: Nat::from(amount),
    });
    StepAction::Local(LocalAction {
        handler: handler.to_string(),
        payload,
    })
}

impl PayoutPlan {
    /// The saga: [debit (compensation: credit back), ledger transfer].
    pub fn steps(&self) -> Vec<SagaStepSpec> {
        vec![
            SagaStepSpec {
                action: local(DEBIT_HANDLER, self.owner, self.debit),
                compensation: Some(local(CREDIT_HANDLER, self.owner, self.debit)),
            },
            SagaStepSpec {
                action: StepAction::Transfer(TransferSpec::Icrc1 {
                    ledger: self.ledger,
                    from_subaccount: None,
                    to: self.to,
                    amount: Nat::from(self.amount),
                    fee: self.fee.map(Nat::from),
                }),
                compensation: None,
            },
        ]
    }
}

/// Apply a balance change to the host's balances (`apply` gets the op, account, amount).
pub type BalanceApplier = Rc<dyn Fn(BalanceOp, Principal, u128) -> Result<u128, BalanceError>>;

fn handler(op: BalanceOp, apply: BalanceApplier) -> LocalHandler {
    Rc::new(move |payload: &[u8]| {
        let change = Decode!(payload, BalanceChange).map_err(|e| format!("bad payload: {e}"))?;
        let amount = u128::try_from(change.amount.0).map_err(|_| "amount > u128".to_string())?;
        let new = apply(op, change.account, amount).map_err(|e| e.to_string())?;
        Ok(icjournal::reply::encode(&Nat::from(new)))
    })
}

/// Register the saga's local-step handlers. Call in `init` and `post_upgrade`, before the
/// recovery timer can fire (handlers live on the heap and are lost on upgrade).
pub fn register_handlers<R: Runtime, M: Memory + 'static>(
    journal: &Journal<R, M>,
    apply: BalanceApplier,
) {
    journal.register_local_handler(DEBIT_HANDLER, handler(BalanceOp::Debit, apply.clone()));
    journal.register_local_handler(CREDIT_HANDLER, handler(BalanceOp::Credit, apply));
}

/// Journal the saga (takes the caller's lock) and drive it as far as it goes now; the caller
/// only replies afterwards, so the saga's terminal status needs no commit of its own.
/// `Ok` = completed or still in progress (poll `get_payout`); `Err` = nothing left the canister
/// and the balance is whole again (or was never touched).
pub async fn run<R: Runtime, M: Memory + 'static>(
    journal: &Journal<R, M>,
    plan: &PayoutPlan,
) -> Result<PayoutReceipt, PayoutError> {
    let id = journal.start_saga(plan.owner, plan.steps(), Some(lock_key(&plan.owner)))?;
    journal.run_saga_then_reply(id).await?;
    let receipt = load(journal, id).ok_or(PayoutError::GenericError {
        error_code: 1,
        message: format!("payout {id} vanished from the journal"),
    })?;
    match receipt.status.clone() {
        PayoutStatus::Refunded { reason } => Err(PayoutError::TransferFailed {
            payout_id: id,
            reason,
        }),
        PayoutStatus::DebitRejected { message } => Err(PayoutError::DebitRejected {
            payout_id: id,
            message,
        }),
        _ => Ok(receipt),
    }
}

/// After an operator acted on `entry_id` (a payout saga or one of its steps), drive the saga
/// now instead of at the next recovery tick: e.g. a transfer resolved as failed is credited
/// back within the same admin call.
pub async fn resume<R: Runtime, M: Memory + 'static>(journal: &Journal<R, M>, entry_id: EntryId) {
    let saga = journal.get(entry_id).and_then(|e| match e.kind {
        Kind::Saga => Some(e.id),
        _ => e.parent,
    });
    if let Some(saga) = saga {
        // Errors only mean "nothing to drive"; the recovery timer remains the backstop.
        let _ = journal.run_saga(saga).await;
    }
}

/// The receipt of saga `id`, if it is a payout.
pub fn load<R: Runtime, M: Memory + 'static>(
    journal: &Journal<R, M>,
    id: EntryId,
) -> Option<PayoutReceipt> {
    let saga = journal.get(id)?;
    receipt(&saga, |c| journal.get(c))
}

/// Payout `id` as `caller` may see it: their own, or any when `any` (admins). Others' payouts
/// and non-payout entries are `NotFound` (I7 hides existence).
pub fn get_for<R: Runtime, M: Memory + 'static>(
    journal: &Journal<R, M>,
    caller: Principal,
    id: EntryId,
    any: bool,
) -> Result<PayoutReceipt, PayoutError> {
    let saga = match any {
        true => journal.get(id),
        false => journal.get_owned(caller, id).ok(),
    };
    saga.and_then(|e| receipt(&e, |c| journal.get(c)))
        .ok_or(PayoutError::NotFound { id })
}

/// `owner`'s payouts, oldest first, one page (keyset paging by payout id; bounded by the
/// engine's `max_page_size`, I6).
pub fn list_for<R: Runtime, M: Memory + 'static>(
    journal: &Journal<R, M>,
    owner: Principal,
    page: &PageRequest,
) -> PayoutPage {
    let filter = ListFilter {
        owner: Some(owner),
        kind: Some(Kind::Saga),
        ..Default::default()
    };
    let p = journal.list(&filter, page);
    PayoutPage {
        items: p
            .items
            .iter()
            .filter_map(|e| journal.get(e.id))
            .filter_map(|e| receipt(&e, |c| journal.get(c)))
            .collect(),
        next: p.next,
    }
}

fn failure(e: &Entry) -> Option<FailureReason> {
    match &e.outcome {
        Some(Outcome::Failed { reason, .. }) => Some(reason.clone()),
        _ => None,
    }
}

/// Build the payout view of a saga entry (None if the entry is not a payout saga).
pub fn receipt(saga: &Entry, get: impl Fn(EntryId) -> Option<Entry>) -> Option<PayoutReceipt> {
    let Intent::Saga(s) = &saga.intent else {
        return None;
    };
    let [debit_step, transfer_step] = s.steps.as_slice() else {
        return None;
    };
    let StepAction::Local(debit) = &debit_step.action else {
        return None;
    };
    if debit.handler != DEBIT_HANDLER {
        return None;
    }
    let debited = Decode!(&debit.payload, BalanceChange).ok()?.amount;
    let StepAction::Transfer(TransferSpec::Icrc1 {
        to, amount, fee, ..
    }) = &transfer_step.action
    else {
        return None;
    };
    let transfer = transfer_step.entry.and_then(&get);
    let status = match saga.status {
        Status::Succeeded => PayoutStatus::Completed {
            block_index: transfer
                .as_ref()
                .and_then(Entry::block_index)
                .or_else(|| saga.block_index()),
        },
        Status::Compensated => match &saga.outcome {
            Some(Outcome::Failed {
                reason: FailureReason::SagaStepFailed { step: 0, entry },
                ..
            }) => PayoutStatus::DebitRejected {
                message: match get(*entry).as_ref().and_then(failure) {
                    Some(FailureReason::Host { message }) => message,
                    other => format!("{other:?}"),
                },
            },
            _ => PayoutStatus::Refunded {
                reason: transfer.as_ref().and_then(failure),
            },
        },
        Status::Failed => PayoutStatus::Failed,
        Status::Cancelled => PayoutStatus::Cancelled,
        // A saga blocked on a step names the step: that is the entry the operator acts on.
        Status::ManualReview => PayoutStatus::ManualReview {
            entry_id: saga.blocked_on.unwrap_or(saga.id),
            reason: saga.manual_reason.clone().unwrap_or_default(),
        },
        Status::Pending | Status::Unknown | Status::Recovering | Status::Compensating => {
            // A step waiting for an operator makes the whole payout wait for one.
            let stuck = s
                .steps
                .iter()
                .flat_map(|st| [st.entry, st.compensation_entry])
                .flatten()
                .filter_map(&get)
                .find(|c| c.status == Status::ManualReview);
            match stuck {
                Some(c) => PayoutStatus::ManualReview {
                    entry_id: c.id,
                    reason: c.manual_reason.unwrap_or_default(),
                },
                None if saga.status == Status::Compensating => PayoutStatus::Refunding,
                None => PayoutStatus::InProgress,
            }
        }
    };
    Some(PayoutReceipt {
        payout_id: saga.id,
        owner: saga.owner,
        to: *to,
        amount: amount.clone(),
        fee: fee.clone(),
        debited,
        status,
        created_at: saga.created_at,
        updated_at: saga.updated_at,
        debit_entry: debit_step.entry,
        transfer_entry: transfer_step.entry,
    })
}

#[cfg(test)]
mod tests;
