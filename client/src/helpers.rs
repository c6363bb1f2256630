//! The steps a calling canister repeats around the service: the allowance it must give, sending
//! a tracked transfer and turning the ledger's answer into the report, block indexes.

use crate::transport::{CallMode, Transport, TransportError};
use crate::{Client, ClientError};
use candid::{Nat, Principal};
use icjournal_types::{
    EntryId, LedgerOp, ReportResultArgs, ReportedResult, Status, TrackedTransfer,
};
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::TransferError;
use icrc_ledger_types::icrc2::approve::ApproveArgs;
use icrc_ledger_types::icrc2::transfer_from::TransferFromError;
use num_traits::ToPrimitive;

/// A ledger block index as the journal keeps it (`u64`); ICRC ledgers answer with a `Nat`.
pub fn block_index(n: &Nat) -> Result<u64, ClientError> {
    n.0.to_u64().ok_or_else(|| ClientError::Candid {
        method: "block_index".into(),
        message: format!("block index {n} exceeds u64"),
    })
}

/// `icrc2_approve` arguments that let the service (`service`, as spender) execute transfers of
/// `allowance` in total from the caller's default account. Get the allowance for one transfer
/// with [`Client::allowance_for`]: the ledger charges the fee from the allowance too.
pub fn icrc2_approve_args(
    service: Principal,
    allowance: Nat,
    expires_at: Option<u64>,
) -> ApproveArgs {
    ApproveArgs {
        from_subaccount: None,
        spender: Account::from(service),
        amount: allowance,
        expected_allowance: None,
        expires_at,
        fee: None,
        memo: None,
        created_at_time: None,
    }
}

/// What the owner of a tracked ICRC-1 transfer reports, from the ledger's answer to it:
/// `Ok(block)` and `Duplicate { duplicate_of }` both mean the transfer is on the ledger at
/// that block; an error reply means this call did not execute (reported as failed — the
/// service still looks the transfer up before it believes it); no reply means the caller does
/// not know (reported as unknown: the service finds out).
pub fn report_for_icrc1(
    reply: &Result<Result<Nat, TransferError>, TransportError>,
) -> ReportedResult {
    match reply {
        Ok(Ok(block))
        | Ok(Err(TransferError::Duplicate {
            duplicate_of: block,
        })) => executed(block),
        Ok(Err(e)) => ReportedResult::Failed {
            message: format!("{e:?}"),
        },
        Err(e) => ReportedResult::Unknown {
            message: e.to_string(),
        },
    }
}

/// The same for a tracked ICRC-2 `icrc2_transfer_from`.
pub fn report_for_icrc2(
    reply: &Result<Result<Nat, TransferFromError>, TransportError>,
) -> ReportedResult {
    match reply {
        Ok(Ok(block))
        | Ok(Err(TransferFromError::Duplicate {
            duplicate_of: block,
        })) => executed(block),
        Ok(Err(e)) => ReportedResult::Failed {
            message: format!("{e:?}"),
        },
        Err(e) => ReportedResult::Unknown {
            message: e.to_string(),
        },
    }
}

fn executed(block: &Nat) -> ReportedResult {
    match block.0.to_u64() {
        Some(b) => ReportedResult::Succeeded {
            block_index: Some(b),
            reply: vec![],
        },
        None => ReportedResult::Unknown {
            message: format!("executed at block {block}, which exceeds u64"),
        },
    }
}

impl<T: Transport> Client<T> {
    /// The allowance the caller must give the service for one executed ICRC-2 transfer of
    /// `amount` on `ledger`: the amount plus the ledger's fee (as the service knows it).
    pub async fn allowance_for(&self, ledger: Principal, amount: Nat) -> Result<Nat, ClientError> {
        let ledgers = self.ledgers().await?;
        let fee = ledgers
            .iter()
            .find(|l| l.ledger == ledger)
            .and_then(|l| l.fee.clone())
            .unwrap_or_default();
        Ok(amount + fee)
    }

    /// Send a tracked transfer's exact args (`tracked.op`, memo and created_at_time set by the
    /// service) to its ledger through this client's transport, then report what the ledger
    /// answered. Returns the entry's status after the report (a success stays `Unknown` until
    /// the service has read the block). Retrying after an unknown outcome is safe: the ledger
    /// deduplicates the identical args, and the same report again is answered the same way.
    pub async fn send_tracked(&self, tracked: &TrackedTransfer) -> Result<Status, ClientError> {
        let result = match &tracked.op {
            LedgerOp::Icrc1Transfer(arg) => {
                let reply = self
                    .ledger_call(tracked.ledger, "icrc1_transfer", arg)
                    .await;
                report_for_icrc1(&reply)
            }
            LedgerOp::Icrc2TransferFrom(arg) => {
                let reply = self
                    .ledger_call(tracked.ledger, "icrc2_transfer_from", arg)
                    .await;
                report_for_icrc2(&reply)
            }
        };
        self.report_result(ReportResultArgs {
            entry_id: tracked.entry_id,
            result,
        })
        .await
    }

    async fn ledger_call<A, E>(
        &self,
        ledger: Principal,
        method: &str,
        arg: &A,
    ) -> Result<Result<Nat, E>, TransportError>
    where
        A: candid::CandidType,
        E: candid::CandidType + for<'de> candid::Deserialize<'de>,
    {
        let bytes = candid::encode_one(arg).map_err(|e| TransportError::NotSent {
            message: format!("encoding {method}: {e}"),
        })?;
        let reply = self
            .transport()
            .call(ledger, method, CallMode::Update, bytes)
            .await?;
        // A reply the caller cannot read: the ledger ran the call; the outcome is unknown.
        candid::decode_one(&reply).map_err(|e| TransportError::Rejected {
            code: TransportError::SYS_UNKNOWN,
            message: format!("undecodable {method} reply: {e}"),
        })
    }

    /// The entry's status now (for polling after `submit_transfer` / `submit_saga`).
    pub async fn status_of(&self, id: EntryId) -> Result<Status, ClientError> {
        Ok(self.get_entry(id).await?.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_report_a_duplicate_as_executed_at_its_block() {
        let r = report_for_icrc1(&Ok(Err(TransferError::Duplicate {
            duplicate_of: Nat::from(42u8),
        })));
        assert_eq!(
            r,
            ReportedResult::Succeeded {
                block_index: Some(42),
                reply: vec![]
            }
        );
        let r = report_for_icrc2(&Ok(Ok(Nat::from(7u8))));
        assert!(matches!(
            r,
            ReportedResult::Succeeded {
                block_index: Some(7),
                ..
            }
        ));
    }

    #[test]
    fn should_report_no_reply_as_unknown_and_an_error_reply_as_failed() {
        let r = report_for_icrc1(&Err(TransportError::Rejected {
            code: 6,
            message: "timeout".into(),
        }));
        assert!(matches!(r, ReportedResult::Unknown { .. }));
        let r = report_for_icrc1(&Ok(Err(TransferError::InsufficientFunds {
            balance: Nat::from(0u8),
        })));
        assert!(matches!(r, ReportedResult::Failed { .. }));
        let big = Nat::from(u128::MAX);
        assert!(matches!(
            report_for_icrc1(&Ok(Ok(big.clone()))),
            ReportedResult::Unknown { .. }
        ));
        assert!(block_index(&big).is_err());
        assert_eq!(block_index(&Nat::from(3u8)).unwrap(), 3);
    }
}
