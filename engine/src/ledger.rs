//! Ledger-facing pure logic: encoding calls, classifying every reply / reject / ledger error
//! (see `docs/recovery.md`), and normalising ICRC-3 blocks and legacy transactions for the memo lookup.

use crate::runtime::{CallError, CallResult};
use crate::types::*;
use candid::{Nat, Principal};
use icrc_ledger_types::icrc::generic_value::ICRC3Value;
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::{BlockIndex, TransferError};
use icrc_ledger_types::icrc2::transfer_from::TransferFromError;
use icrc_ledger_types::icrc3::transactions::Transaction;
use num_traits::ToPrimitive;

/// What one call (first send or a recovery resend) tells us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// The transfer is on the ledger at this block (reply `Ok` or `Duplicate`).
    Executed { block: u64 },
    /// This call provably did not execute, and the ledger's answer would be the same for any
    /// identical call (BadFee, InsufficientFunds, ...): a definitive failure *if* there was no
    /// earlier identical call.
    Rejected(FailureReason),
    /// This call did not execute, but an identical call later may (TemporarilyUnavailable,
    /// CreatedInFuture, GenericError): resend the same args later (safe: deduplicated).
    Transient { detail: String },
    /// The ledger refused because `created_at_time` is outside its window: only a memo lookup
    /// can tell whether an earlier identical call executed.
    TooOld,
    /// Nothing can be said about whether the call executed.
    Unknown { detail: String },
}

fn nat_u64(n: &Nat) -> Option<u64> {
    n.0.to_u64()
}

/// Map the ICRC-1 `icrc1_transfer` ledger error.
pub fn classify_transfer_error(e: TransferError) -> CallOutcome {
    match e {
        // Same transaction already on the ledger: our memo + created_at_time are unique to this
        // entry, so the duplicate IS this entry's transfer, executed exactly once at that block.
        TransferError::Duplicate { duplicate_of } => executed_at(&duplicate_of),
        TransferError::BadFee { expected_fee } => {
            CallOutcome::Rejected(FailureReason::Ledger(LedgerError::BadFee { expected_fee }))
        }
        TransferError::BadBurn { min_burn_amount } => {
            CallOutcome::Rejected(FailureReason::Ledger(LedgerError::BadBurn {
                min_burn_amount,
            }))
        }
        TransferError::InsufficientFunds { balance } => {
            CallOutcome::Rejected(FailureReason::Ledger(LedgerError::InsufficientFunds {
                balance,
            }))
        }
        TransferError::TooOld => CallOutcome::TooOld,
        // Our clock is ahead of the ledger's: the same args will be accepted later.
        TransferError::CreatedInFuture { ledger_time } => CallOutcome::Transient {
            detail: format!("CreatedInFuture(ledger_time={ledger_time})"),
        },
        TransferError::TemporarilyUnavailable => CallOutcome::Transient {
            detail: "TemporarilyUnavailable".into(),
        },
        // Ledger-specific; its meaning is unknown to us, but it is an error *reply*, so the
        // ledger did not execute this call. Retry; after max attempts an operator decides.
        TransferError::GenericError {
            error_code,
            message,
        } => CallOutcome::Transient {
            detail: format!("GenericError({error_code}): {message}"),
        },
    }
}

/// Map the ICRC-2 `icrc2_transfer_from` ledger error (same reasoning as ICRC-1).
pub fn classify_transfer_from_error(e: TransferFromError) -> CallOutcome {
    match e {
        TransferFromError::Duplicate { duplicate_of } => executed_at(&duplicate_of),
        TransferFromError::BadFee { expected_fee } => {
            CallOutcome::Rejected(FailureReason::Ledger(LedgerError::BadFee { expected_fee }))
        }
        TransferFromError::BadBurn { min_burn_amount } => {
            CallOutcome::Rejected(FailureReason::Ledger(LedgerError::BadBurn {
                min_burn_amount,
            }))
        }
        TransferFromError::InsufficientFunds { balance } => {
            CallOutcome::Rejected(FailureReason::Ledger(LedgerError::InsufficientFunds {
                balance,
            }))
        }
        TransferFromError::InsufficientAllowance { allowance } => {
            CallOutcome::Rejected(FailureReason::Ledger(LedgerError::InsufficientAllowance {
                allowance,
            }))
        }
        TransferFromError::TooOld => CallOutcome::TooOld,
        TransferFromError::CreatedInFuture { ledger_time } => CallOutcome::Transient {
            detail: format!("CreatedInFuture(ledger_time={ledger_time})"),
        },
        TransferFromError::TemporarilyUnavailable => CallOutcome::Transient {
            detail: "TemporarilyUnavailable".into(),
        },
        TransferFromError::GenericError {
            error_code,
            message,
        } => CallOutcome::Transient {
            detail: format!("GenericError({error_code}): {message}"),
        },
    }
}

fn executed_at(block: &Nat) -> CallOutcome {
    match nat_u64(block) {
        Some(block) => CallOutcome::Executed { block },
        // Executed, but at a block we cannot represent: never guess, let an operator look.
        None => CallOutcome::Unknown {
            detail: format!("block index {block} exceeds u64"),
        },
    }
}

/// Map a call failure (`docs/recovery.md`, "Classifying a call"). "Clean" = the callee certainly did not execute the call.
pub fn classify_call_error(e: &CallError) -> CallOutcome {
    match e {
        // `ic0.call_perform` was never (successfully) invoked: nothing left this canister.
        CallError::NotSent { message } => CallOutcome::Rejected(FailureReason::NotDelivered {
            code: None,
            message: message.clone(),
        }),
        CallError::Rejected { code, message } => match code {
            // The system rejected the request before it reached the callee (destination does
            // not exist / queue full / fatal system condition). ic-cdk's `is_clean_reject` lists
            // exactly these three: the callee's state is unchanged.
            RejectCode::SysTransient | RejectCode::DestinationInvalid | RejectCode::SysFatal => {
                CallOutcome::Rejected(FailureReason::NotDelivered {
                    code: Some(*code),
                    message: message.clone(),
                })
            }
            // Bounded-wait timeout or lost response: the ledger may have executed it.
            RejectCode::SysUnknown => CallOutcome::Unknown {
                detail: format!("SYS_UNKNOWN: {message}"),
            },
            // The callee trapped or was unavailable (stopped, out of cycles...). An ICRC ledger
            // rolls back on trap, but CANISTER_ERROR does not say *where* it happened and a
            // ledger may commit before a later trap; we cannot prove non-execution: recover.
            RejectCode::CanisterError => CallOutcome::Unknown {
                detail: format!("CANISTER_ERROR: {message}"),
            },
            // An explicit reject by the ledger's code: a reject response is not a rollback, so
            // state may have changed. Recover rather than guess.
            RejectCode::CanisterReject => CallOutcome::Unknown {
                detail: format!("CANISTER_REJECT: {message}"),
            },
            RejectCode::Unrecognized(c) => CallOutcome::Unknown {
                detail: format!("unrecognized reject code {c}: {message}"),
            },
        },
    }
}

/// Classify the full result of an `icrc1_transfer` / `icrc2_transfer_from` call.
pub fn classify_ledger_call(op: &LedgerOp, result: &CallResult) -> CallOutcome {
    let bytes = match result {
        Ok(b) => b,
        Err(e) => return classify_call_error(e),
    };
    match op {
        LedgerOp::Icrc1Transfer(_) => {
            match candid::decode_one::<Result<BlockIndex, TransferError>>(bytes) {
                Ok(Ok(block)) => executed_at(&block),
                Ok(Err(e)) => classify_transfer_error(e),
                // The ledger executed *something* and replied; we cannot read it: unknown.
                Err(e) => CallOutcome::Unknown {
                    detail: format!("undecodable reply: {e}"),
                },
            }
        }
        LedgerOp::Icrc2TransferFrom(_) => {
            match candid::decode_one::<Result<BlockIndex, TransferFromError>>(bytes) {
                Ok(Ok(block)) => executed_at(&block),
                Ok(Err(e)) => classify_transfer_from_error(e),
                Err(e) => CallOutcome::Unknown {
                    detail: format!("undecodable reply: {e}"),
                },
            }
        }
    }
}

pub fn method_and_arg(op: &LedgerOp) -> (&'static str, Vec<u8>) {
    // Encoding our own typed args cannot fail.
    match op {
        LedgerOp::Icrc1Transfer(a) => (
            "icrc1_transfer",
            candid::encode_one(a).expect("encode TransferArg"),
        ),
        LedgerOp::Icrc2TransferFrom(a) => (
            "icrc2_transfer_from",
            candid::encode_one(a).expect("encode TransferFromArgs"),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Blocks
// ---------------------------------------------------------------------------------------------

/// The kind of transfer-like operation a block records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ObservedOp {
    /// `xfer` (`1xfer` / `2xfer`).
    #[default]
    Xfer,
    /// `burn`: a transfer to the minting account. No `to` is recorded (`to` repeats `from`
    /// and is ignored by matching), and no fee (burns are free).
    Burn,
    /// `mint`: a transfer from the minting account. No `from` is recorded (`from` repeats
    /// `to` and is ignored by matching), and no fee.
    Mint,
}

/// A transfer as recorded on the ledger, normalised from an ICRC-3 block or a legacy
/// `Transaction`. Only transfer-like operations are represented; others are `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedTransfer {
    pub index: u64,
    /// Ledger time of the block.
    pub ledger_time: u64,
    pub from: Account,
    pub to: Account,
    pub spender: Option<Account>,
    pub amount: Nat,
    /// The fee the *caller* specified (tx.fee), None if the caller let the ledger choose.
    pub fee: Option<Nat>,
    pub memo: Option<Vec<u8>>,
    pub created_at_time: Option<u64>,
    /// Transfer, burn or mint.
    pub op: ObservedOp,
}

/// A block's index and ledger time, plus the transfer if it is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedBlock {
    pub index: u64,
    pub ledger_time: u64,
    pub transfer: Option<ObservedTransfer>,
}

fn get<'a>(
    m: &'a std::collections::BTreeMap<String, ICRC3Value>,
    k: &str,
) -> Option<&'a ICRC3Value> {
    m.get(k)
}

fn as_u64(v: &ICRC3Value) -> Option<u64> {
    match v {
        ICRC3Value::Nat(n) => nat_u64(n),
        ICRC3Value::Int(i) => i.0.to_u64(),
        _ => None,
    }
}

fn as_account(v: &ICRC3Value) -> Option<Account> {
    let ICRC3Value::Array(parts) = v else {
        return None;
    };
    let owner = match parts.first()? {
        ICRC3Value::Blob(b) => Principal::try_from_slice(b).ok()?,
        _ => return None,
    };
    let subaccount = match parts.get(1) {
        None => None,
        Some(ICRC3Value::Blob(b)) => Some(<[u8; 32]>::try_from(b.as_slice()).ok()?),
        Some(_) => return None,
    };
    if parts.len() > 2 {
        return None;
    }
    Some(Account { owner, subaccount })
}

/// Parse an ICRC-3 block. `Err` = malformed block (a lookup that meets one is undecided).
pub fn parse_icrc3_block(index: u64, block: &ICRC3Value) -> Result<ObservedBlock, String> {
    let ICRC3Value::Map(b) = block else {
        return Err(format!("block {index}: not a map"));
    };
    let ledger_time = get(b, "ts")
        .and_then(as_u64)
        .ok_or_else(|| format!("block {index}: no ts"))?;
    let Some(ICRC3Value::Map(tx)) = get(b, "tx") else {
        return Err(format!("block {index}: no tx"));
    };
    let btype = match get(b, "btype") {
        Some(ICRC3Value::Text(t)) => Some(t.as_str()),
        _ => None,
    };
    let op = match get(tx, "op") {
        Some(ICRC3Value::Text(t)) => Some(t.as_str()),
        _ => None,
    };
    let kind = match (btype, op) {
        (Some("1xfer") | Some("2xfer"), _) | (None, Some("xfer")) => ObservedOp::Xfer,
        (Some("1burn") | Some("2burn"), _) | (None, Some("burn")) => ObservedOp::Burn,
        (Some("1mint") | Some("2mint"), _) | (None, Some("mint")) => ObservedOp::Mint,
        _ => {
            return Ok(ObservedBlock {
                index,
                ledger_time,
                transfer: None,
            })
        }
    };
    let bad = |f: &str| format!("block {index}: bad {f}");
    let account = |f: &str| get(tx, f).and_then(as_account).ok_or_else(|| bad(f));
    let (from, to) = match kind {
        ObservedOp::Xfer => (account("from")?, account("to")?),
        ObservedOp::Burn => {
            let from = account("from")?;
            (from, from)
        }
        ObservedOp::Mint => {
            let to = account("to")?;
            (to, to)
        }
    };
    let spender = match get(tx, "spender") {
        None => None,
        Some(v) => Some(as_account(v).ok_or_else(|| bad("spender"))?),
    };
    let amount = match get(tx, "amt") {
        Some(ICRC3Value::Nat(n)) => n.clone(),
        _ => return Err(bad("amt")),
    };
    let fee = match get(tx, "fee") {
        None => None,
        Some(ICRC3Value::Nat(n)) => Some(n.clone()),
        Some(_) => return Err(bad("fee")),
    };
    let memo = match get(tx, "memo") {
        None => None,
        Some(ICRC3Value::Blob(m)) => Some(m.to_vec()),
        Some(_) => return Err(bad("memo")),
    };
    let created_at_time = match get(tx, "ts") {
        None => None,
        Some(v) => Some(as_u64(v).ok_or_else(|| bad("tx.ts"))?),
    };
    Ok(ObservedBlock {
        index,
        ledger_time,
        transfer: Some(ObservedTransfer {
            index,
            ledger_time,
            from,
            to,
            spender,
            amount,
            fee,
            memo,
            created_at_time,
            op: kind,
        }),
    })
}

/// Normalise a legacy `get_transactions` transaction.
pub fn parse_legacy_transaction(index: u64, t: &Transaction) -> ObservedBlock {
    let memo =
        |m: &Option<icrc_ledger_types::icrc1::transfer::Memo>| m.as_ref().map(|m| m.0.to_vec());
    let transfer = match (&t.kind[..], &t.transfer, &t.burn, &t.mint) {
        ("transfer", Some(x), _, _) => Some(ObservedTransfer {
            index,
            ledger_time: t.timestamp,
            from: x.from,
            to: x.to,
            spender: x.spender,
            amount: x.amount.clone(),
            fee: x.fee.clone(),
            memo: memo(&x.memo),
            created_at_time: x.created_at_time,
            op: ObservedOp::Xfer,
        }),
        ("burn", _, Some(x), _) => Some(ObservedTransfer {
            index,
            ledger_time: t.timestamp,
            from: x.from,
            to: x.from,
            spender: x.spender,
            amount: x.amount.clone(),
            fee: x.fee.clone(),
            memo: memo(&x.memo),
            created_at_time: x.created_at_time,
            op: ObservedOp::Burn,
        }),
        ("mint", _, _, Some(x)) => Some(ObservedTransfer {
            index,
            ledger_time: t.timestamp,
            from: x.to,
            to: x.to,
            spender: None,
            amount: x.amount.clone(),
            fee: x.fee.clone(),
            memo: memo(&x.memo),
            created_at_time: x.created_at_time,
            op: ObservedOp::Mint,
        }),
        _ => None,
    };
    ObservedBlock {
        index,
        ledger_time: t.timestamp,
        transfer,
    }
}

/// Does `observed` record exactly the journaled transfer? Every field must match: the memo
/// alone proves nothing, since anyone can send a transfer with any memo.
///
/// A transfer to the minting account is recorded as a `burn` (no `to`, no fee), one from the
/// minting account as a `mint` (no `from`, no fee); such blocks match on the fields they
/// record, and only if the intent's fee is absent or zero (the only fee a ledger accepts for
/// them).
pub fn matches(intent: &TransferIntent, sender: Principal, observed: &ObservedTransfer) -> bool {
    let (from, to, spender, amount, fee, memo, cat) = expected(intent, sender);
    #[cfg(any(test, feature = "planted-bugs"))]
    if crate::planted::is(crate::planted::PlantedBug::LookupTrustsMemo) {
        return observed.memo.as_deref() == memo;
    }
    let fee_ok = match observed.op {
        ObservedOp::Xfer => observed.fee == fee,
        // Burns and mints carry no fee; a legacy view may report Some(0).
        ObservedOp::Burn | ObservedOp::Mint => {
            fee.is_none_or(|f| f.0 == 0u8.into())
                && observed.fee.as_ref().is_none_or(|f| f.0 == 0u8.into())
        }
    };
    let from_ok = observed.op == ObservedOp::Mint || observed.from == from;
    let to_ok = observed.op == ObservedOp::Burn || observed.to == to;
    // Account equality compares effective subaccounts (None == all zeros).
    observed.spender == spender
        && from_ok
        && to_ok
        && observed.amount == *amount
        && fee_ok
        && observed.memo.as_deref() == memo
        && observed.created_at_time == cat
}

#[allow(clippy::type_complexity)]
fn expected(
    intent: &TransferIntent,
    sender: Principal,
) -> (
    Account,
    Account,
    Option<Account>,
    &Nat,
    Option<Nat>,
    Option<&[u8]>,
    Option<u64>,
) {
    match &intent.op {
        LedgerOp::Icrc1Transfer(a) => (
            Account {
                owner: sender,
                subaccount: a.from_subaccount,
            },
            a.to,
            None,
            &a.amount,
            a.fee.clone(),
            a.memo.as_ref().map(|m| m.0.as_slice()),
            a.created_at_time,
        ),
        LedgerOp::Icrc2TransferFrom(a) => (
            a.from,
            a.to,
            Some(Account {
                owner: sender,
                subaccount: a.spender_subaccount,
            }),
            &a.amount,
            a.fee.clone(),
            a.memo.as_ref().map(|m| m.0.as_slice()),
            a.created_at_time,
        ),
    }
}

/// Is `observed` a block that only we could have created for this entry, yet it does not
/// match the intent? True when it carries the intent's memo and was made from our own
/// account: same `from` and no spender (ICRC-1), or same `spender` (ICRC-2). Such a block
/// contradicts the journal: the lookup must send the entry to manual
/// review with the reason, never conclude "not found". Returns the reason.
pub fn contradicts(
    intent: &TransferIntent,
    sender: Principal,
    observed: &ObservedTransfer,
) -> Option<String> {
    // A tracked transfer is sent by another principal who owns the `from` account and can
    // send anything carrying this memo: its blocks are no evidence about what we sent, and
    // a non-matching block proves nothing there (the memo alone proves nothing).
    if !matches!(intent.executor, crate::types::Executor::SelfCanister) {
        return None;
    }
    if matches(intent, sender, observed) {
        return None;
    }
    let (from, _, spender, _, _, memo, _) = expected(intent, sender);
    let memo = memo?;
    if observed.memo.as_deref() != Some(memo) {
        return None;
    }
    let ours = match spender {
        None => {
            observed.spender.is_none() && observed.op != ObservedOp::Mint && observed.from == from
        }
        Some(s) => observed.spender == Some(s),
    };
    if !ours {
        return None;
    }
    Some(format!(
        "block {} carries this entry's memo and was made from our account but does not match the journaled transfer: {:?}",
        observed.index, observed
    ))
}

/// `matches` for a transaction read from the legacy `get_transactions` endpoint.
///
/// The legacy format reports `fee` as "the fee as sent, or else the fee charged": a transfer
/// sent with `fee = None` appears with `fee = Some(charged)`, so a strict comparison would never
/// find it, declare it "proven never executed" and let it be retried (a double spend). For an
/// intent without a fee, any recorded fee is therefore accepted. This is safe: every other
/// field must still match, and the `from` account (ICRC-1) or the `spender` (ICRC-2) is ours,
/// so only we could have created that transaction; the only transaction we ever create with
/// this entry's memo and `created_at_time` is this entry's transfer.
pub fn matches_legacy(
    intent: &TransferIntent,
    sender: Principal,
    observed: &ObservedTransfer,
) -> bool {
    let intent_fee_none = match &intent.op {
        LedgerOp::Icrc1Transfer(a) => a.fee.is_none(),
        LedgerOp::Icrc2TransferFrom(a) => a.fee.is_none(),
    };
    if intent_fee_none && observed.fee.is_some() {
        let as_sent = ObservedTransfer {
            fee: None,
            ..observed.clone()
        };
        return matches(intent, sender, &as_sent);
    }
    matches(intent, sender, observed)
}

/// The principal whose call the ledger saw: us, or the external caller we track.
pub fn sender_of(intent: &TransferIntent, self_id: Principal) -> Principal {
    match intent.executor {
        Executor::SelfCanister => self_id,
        Executor::External { caller } => caller,
    }
}
