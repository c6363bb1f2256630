//! Input validation, run before any work: sizes, shapes, allowed ledgers, and the
//! ownership rule for transfers the service executes with its own identity.
//!
//! Ownership rule (I7 for funds): the service is the ICRC-2 spender of every caller that
//! approved it, and the owner of every escrow subaccount, so a request may only move funds of
//! its caller: `icrc2_transfer_from` must draw from an account owned by the caller, and
//! `icrc1_transfer` must be sent from the caller's escrow subaccount of the service
//! (`escrow_subaccount(caller)`), which only the caller's own requests can fill.

use crate::config::{self, MAX_LABEL_BYTES, MAX_LOCK_KEY_BYTES, MAX_REASON_BYTES};
use candid::{Nat, Principal};
use icjournal::{JournalError, LedgerOp, TransferSpec};
use icjournal_client::{ServiceConfig, ServiceError};
use icrc_ledger_types::icrc1::account::Account;

/// Largest amount or fee accepted (ICRC ledgers use at most 256-bit amounts).
const MAX_AMOUNT_BITS: u64 = 256;

fn too_large(field: &str, size: usize, max: usize) -> ServiceError {
    ServiceError::Journal(JournalError::PayloadTooLarge {
        field: field.into(),
        size: size as u64,
        max: max as u64,
    })
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::Journal(JournalError::InvalidArgument {
        message: message.into(),
    })
}

/// The caller's escrow subaccount of the service: `[len, principal bytes, 0..]` (injective;
/// never the default subaccount, since principals of callers are never empty).
pub fn escrow_subaccount(owner: Principal) -> Option<[u8; 32]> {
    let bytes = owner.as_slice();
    if bytes.is_empty() || bytes.len() > 31 {
        return None;
    }
    let mut s = [0u8; 32];
    s[0] = bytes.len() as u8;
    s[1..=bytes.len()].copy_from_slice(bytes);
    Some(s)
}

/// The escrow account of `owner` at the service `service`.
pub fn escrow_account(service: Principal, owner: Principal) -> Account {
    Account {
        owner: service,
        subaccount: escrow_subaccount(owner),
    }
}

/// Bounds a lock key and puts it in the caller's namespace (`<caller>/<key>`), so that no
/// caller can hold, probe or block another caller's lock keys (I3 without cross-caller
/// griefing, I7).
pub fn lock_key(caller: Principal, key: Option<String>) -> Result<Option<String>, ServiceError> {
    let Some(key) = key else { return Ok(None) };
    if key.len() > MAX_LOCK_KEY_BYTES {
        return Err(too_large("lock_key", key.len(), MAX_LOCK_KEY_BYTES));
    }
    if key.is_empty() {
        return Err(invalid("lock_key must not be empty"));
    }
    Ok(Some(format!("{caller}/{key}")))
}

/// An idempotency key: non-empty, at most `MAX_LOCK_KEY_BYTES` (the engine scopes it to its
/// caller).
pub fn idempotency_key(key: &str) -> Result<(), ServiceError> {
    if key.len() > MAX_LOCK_KEY_BYTES {
        return Err(too_large("idempotency_key", key.len(), MAX_LOCK_KEY_BYTES));
    }
    if key.is_empty() {
        return Err(invalid("idempotency_key must not be empty"));
    }
    Ok(())
}

pub fn label(label: &str) -> Result<(), ServiceError> {
    if label.len() > MAX_LABEL_BYTES {
        return Err(too_large("label", label.len(), MAX_LABEL_BYTES));
    }
    if label.is_empty() {
        return Err(invalid("label must not be empty"));
    }
    Ok(())
}

pub fn payload(field: &str, bytes: &[u8], max: u32) -> Result<(), ServiceError> {
    if bytes.len() > max as usize {
        return Err(too_large(field, bytes.len(), max as usize));
    }
    Ok(())
}

/// Operator reasons: required, bounded.
pub fn reason(reason: &str) -> Result<(), ServiceError> {
    if reason.trim().is_empty() {
        return Err(ServiceError::Journal(JournalError::ReasonRequired));
    }
    if reason.len() > MAX_REASON_BYTES {
        return Err(too_large("reason", reason.len(), MAX_REASON_BYTES));
    }
    Ok(())
}

fn amount(field: &str, n: &Nat) -> Result<(), ServiceError> {
    if n.0.bits() > MAX_AMOUNT_BITS {
        return Err(invalid(format!("{field} exceeds 256 bits")));
    }
    Ok(())
}

/// Checks a transfer the service will execute and fills the configured fee when the request
/// leaves it empty. Returns the spec to journal.
pub fn executed_transfer(
    caller: Principal,
    spec: TransferSpec,
    cfg: &ServiceConfig,
) -> Result<TransferSpec, ServiceError> {
    let ledger = config::ledger(cfg, spec.ledger())?;
    let fill_fee = |fee: Option<Nat>| -> Result<Option<Nat>, ServiceError> {
        match (&ledger.fee, fee) {
            (Some(configured), None) => Ok(Some(configured.clone())),
            (Some(configured), Some(f)) if &f != configured => Err(invalid(format!(
                "fee {f} differs from the configured fee {configured} of ledger {}",
                ledger.ledger
            ))),
            (_, f) => Ok(f),
        }
    };
    match spec {
        TransferSpec::Icrc1 {
            ledger,
            from_subaccount,
            to,
            amount: amt,
            fee,
        } => {
            amount("amount", &amt)?;
            if let Some(f) = &fee {
                amount("fee", f)?;
            }
            let escrow = escrow_subaccount(caller)
                .ok_or_else(|| invalid("caller has no escrow subaccount"))?;
            if from_subaccount != Some(escrow) {
                return Err(ServiceError::FundsNotOwned {
                    message: "icrc1 transfers must be sent from the caller's escrow subaccount \
                              (see escrow_account)"
                        .into(),
                });
            }
            Ok(TransferSpec::Icrc1 {
                ledger,
                from_subaccount,
                to,
                amount: amt,
                fee: fill_fee(fee)?,
            })
        }
        TransferSpec::Icrc2 {
            ledger,
            spender_subaccount,
            from,
            to,
            amount: amt,
            fee,
        } => {
            amount("amount", &amt)?;
            if let Some(f) = &fee {
                amount("fee", f)?;
            }
            if from.owner != caller {
                return Err(ServiceError::FundsNotOwned {
                    message: format!(
                        "icrc2_transfer_from must draw from an account of the caller, not of {}",
                        from.owner
                    ),
                });
            }
            Ok(TransferSpec::Icrc2 {
                ledger,
                spender_subaccount,
                from,
                to,
                amount: amt,
                fee: fill_fee(fee)?,
            })
        }
    }
}

/// Checks a transfer the caller will send itself (the service only journals and recovers it).
pub fn tracked_transfer(
    ledger: Principal,
    op: &LedgerOp,
    cfg: &ServiceConfig,
) -> Result<(), ServiceError> {
    config::ledger(cfg, ledger)?;
    let (amt, fee, memo, cat) = match op {
        LedgerOp::Icrc1Transfer(a) => (&a.amount, &a.fee, &a.memo, a.created_at_time),
        LedgerOp::Icrc2TransferFrom(a) => (&a.amount, &a.fee, &a.memo, a.created_at_time),
    };
    amount("amount", amt)?;
    if let Some(f) = fee {
        amount("fee", f)?;
    }
    if memo.is_some() || cat.is_some() {
        return Err(invalid(
            "memo and created_at_time are set by the service; leave them empty",
        ));
    }
    Ok(())
}

/// Clamp a page size to the service maximum (0 means the maximum).
pub fn page_limit(limit: u32) -> u32 {
    if limit == 0 {
        config::MAX_PAGE_SIZE
    } else {
        limit.min(config::MAX_PAGE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_config;
    use icjournal_client::LedgerConfig;
    use icrc_ledger_types::icrc1::transfer::TransferArg;

    fn p(n: u8) -> Principal {
        Principal::from_slice(&[n, 3])
    }

    fn cfg() -> ServiceConfig {
        ServiceConfig {
            ledgers: vec![
                LedgerConfig {
                    ledger: p(10),
                    fee: Some(10u64.into()),
                    tx_window_ns: 86_400_000_000_000,
                },
                LedgerConfig {
                    ledger: p(11),
                    fee: None,
                    tx_window_ns: 86_400_000_000_000,
                },
            ],
            ..default_config()
        }
    }

    fn acct(o: Principal) -> Account {
        Account {
            owner: o,
            subaccount: None,
        }
    }

    fn icrc2(ledger: Principal, from: Principal, fee: Option<u64>) -> TransferSpec {
        TransferSpec::Icrc2 {
            ledger,
            spender_subaccount: None,
            from: acct(from),
            to: acct(p(50)),
            amount: 100u64.into(),
            fee: fee.map(Nat::from),
        }
    }

    #[test]
    fn escrow_subaccounts_are_injective_and_never_default() {
        let a = escrow_subaccount(p(1)).unwrap();
        let b = escrow_subaccount(p(2)).unwrap();
        let c = escrow_subaccount(Principal::from_slice(&[1])).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, [0; 32]);
        assert_eq!(escrow_subaccount(Principal::management_canister()), None);
        let long = Principal::from_slice(&[7; 29]);
        assert_eq!(escrow_subaccount(long).unwrap()[0], 29);
        assert_eq!(escrow_account(p(9), p(1)).subaccount, Some(a));
    }

    #[test]
    fn icrc2_must_draw_from_the_caller() {
        let c = cfg();
        assert!(executed_transfer(p(1), icrc2(p(10), p(1), None), &c).is_ok());
        assert!(matches!(
            executed_transfer(p(1), icrc2(p(10), p(2), None), &c),
            Err(ServiceError::FundsNotOwned { .. })
        ));
    }

    #[test]
    fn icrc1_must_come_from_the_callers_escrow() {
        let c = cfg();
        let spec = |sub: Option<[u8; 32]>| TransferSpec::Icrc1 {
            ledger: p(11),
            from_subaccount: sub,
            to: acct(p(50)),
            amount: 5u64.into(),
            fee: None,
        };
        assert!(executed_transfer(p(1), spec(escrow_subaccount(p(1))), &c).is_ok());
        for bad in [None, Some([0; 32]), escrow_subaccount(p(2))] {
            assert!(matches!(
                executed_transfer(p(1), spec(bad), &c),
                Err(ServiceError::FundsNotOwned { .. })
            ));
        }
    }

    #[test]
    fn ledger_allowlist_and_fee() {
        let c = cfg();
        assert_eq!(
            executed_transfer(p(1), icrc2(p(12), p(1), None), &c),
            Err(ServiceError::LedgerNotAllowed { ledger: p(12) })
        );
        // Configured fee filled in, equal fee accepted, different fee refused.
        let TransferSpec::Icrc2 { fee, .. } =
            executed_transfer(p(1), icrc2(p(10), p(1), None), &c).unwrap()
        else {
            unreachable!()
        };
        assert_eq!(fee, Some(Nat::from(10u64)));
        assert!(executed_transfer(p(1), icrc2(p(10), p(1), Some(10)), &c).is_ok());
        assert!(matches!(
            executed_transfer(p(1), icrc2(p(10), p(1), Some(11)), &c),
            Err(ServiceError::Journal(JournalError::InvalidArgument { .. }))
        ));
        // No configured fee: passed through as given.
        let TransferSpec::Icrc2 { fee, .. } =
            executed_transfer(p(1), icrc2(p(11), p(1), None), &c).unwrap()
        else {
            unreachable!()
        };
        assert_eq!(fee, None);
    }

    #[test]
    fn amounts_are_bounded() {
        let c = cfg();
        // 2^256
        let huge: Nat =
            "115792089237316195423570985008687907853269984665640564039457584007913129639936"
                .parse()
                .unwrap();
        let spec = TransferSpec::Icrc2 {
            ledger: p(11),
            spender_subaccount: None,
            from: acct(p(1)),
            to: acct(p(2)),
            amount: huge,
            fee: None,
        };
        assert!(matches!(
            executed_transfer(p(1), spec, &c),
            Err(ServiceError::Journal(JournalError::InvalidArgument { .. }))
        ));
    }

    #[test]
    fn tracked_transfers_need_an_allowed_ledger_and_no_memo() {
        let c = cfg();
        let arg = TransferArg {
            from_subaccount: None,
            to: acct(p(2)),
            fee: None,
            created_at_time: None,
            memo: None,
            amount: 1u64.into(),
        };
        assert!(tracked_transfer(p(10), &LedgerOp::Icrc1Transfer(arg.clone()), &c).is_ok());
        assert!(matches!(
            tracked_transfer(p(99), &LedgerOp::Icrc1Transfer(arg.clone()), &c),
            Err(ServiceError::LedgerNotAllowed { .. })
        ));
        let mut with_time = arg;
        with_time.created_at_time = Some(1);
        assert!(tracked_transfer(p(10), &LedgerOp::Icrc1Transfer(with_time), &c).is_err());
    }

    #[test]
    fn strings_are_bounded() {
        let k = lock_key(p(1), Some("order-1".into())).unwrap().unwrap();
        assert!(k.starts_with(&p(1).to_text()) && k.ends_with("/order-1"));
        assert!(k.len() <= 128);
        assert_eq!(lock_key(p(1), None).unwrap(), None);
        assert!(lock_key(p(1), Some(String::new())).is_err());
        assert!(matches!(
            lock_key(p(1), Some("x".repeat(MAX_LOCK_KEY_BYTES + 1))),
            Err(ServiceError::Journal(JournalError::PayloadTooLarge { .. }))
        ));
        assert!(label("payout").is_ok());
        assert!(label("").is_err());
        assert!(label(&"l".repeat(MAX_LABEL_BYTES + 1)).is_err());
        assert!(payload("payload", &[0; 10], 10).is_ok());
        assert!(payload("payload", &[0; 11], 10).is_err());
        assert_eq!(
            reason("  "),
            Err(ServiceError::Journal(JournalError::ReasonRequired))
        );
        assert!(reason(&"r".repeat(MAX_REASON_BYTES + 1)).is_err());
        assert!(reason("ledger confirmed block 7").is_ok());
        assert_eq!(page_limit(0), 100);
        assert_eq!(page_limit(5), 5);
        assert_eq!(page_limit(10_000), 100);
    }
}
