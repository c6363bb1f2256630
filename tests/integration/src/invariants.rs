//! The ledger-vs-journal invariant check run after every test (invariants in `docs/design.md`):
//! - I1 at most once: no journaled transfer matches more than one ledger block;
//! - every `Succeeded` transfer entry matches exactly one block, at its recorded block index;
//! - no block exists for a `Failed` / `Cancelled` transfer entry;
//! - every block sent by a journal's canister (as sender or ICRC-2 spender) carrying an
//!   icjournal memo belongs to a journaled transfer of that journal (no stray execution);
//! - I2: unresolved entries are accounted for (they are reported, and the tests decide).
//!
//! A block matches an entry only if every journaled field matches (op, from, to, spender,
//! amount, fee as sent, memo, created_at_time), as in the engine's recovery.

use crate::blocks::LedgerBlock;
use crate::Setup;
use candid::Principal;
use icjournal::{Entry, Executor, Intent, LedgerOp, Status};
use icrc_ledger_types::icrc1::account::Account;

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub blocks: usize,
    pub archived_blocks: usize,
    /// Transfer entries checked, per journal.
    pub transfer_entries: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub unresolved: usize,
    pub manual_review: usize,
    pub violations: Vec<String>,
}

/// Whether `b` is the ledger block of the transfer `op` sent by `sender` (the canister whose
/// identity made the call).
pub fn matches(op: &LedgerOp, sender: Principal, b: &LedgerBlock) -> bool {
    let n = |x: &candid::Nat| u128::try_from(x.0.clone()).ok();
    match op {
        LedgerOp::Icrc1Transfer(a) => {
            b.op == "xfer"
                && b.spender.is_none()
                && b.from
                    == Some(Account {
                        owner: sender,
                        subaccount: a.from_subaccount,
                    })
                && b.to == Some(a.to)
                && b.amount == n(&a.amount)
                && b.fee == a.fee.as_ref().and_then(n)
                && b.memo.as_deref() == a.memo.as_ref().map(|m| m.0.as_slice())
                && b.created_at_time == a.created_at_time
        }
        LedgerOp::Icrc2TransferFrom(a) => {
            b.op == "xfer"
                && b.spender
                    == Some(Account {
                        owner: sender,
                        subaccount: a.spender_subaccount,
                    })
                && b.from == Some(a.from)
                && b.to == Some(a.to)
                && b.amount == n(&a.amount)
                && b.fee == a.fee.as_ref().and_then(n)
                && b.memo.as_deref() == a.memo.as_ref().map(|m| m.0.as_slice())
                && b.created_at_time == a.created_at_time
        }
    }
}

/// Check one journal (`journal_canister` = the canister that owns it) against the blocks.
pub fn check_journal(
    name: &str,
    journal_canister: Principal,
    entries: &[Entry],
    blocks: &[LedgerBlock],
    report: &mut Report,
) {
    let mut claimed = vec![false; blocks.len()];
    for e in entries {
        if e.status == Status::ManualReview {
            report.manual_review += 1;
        }
        let Intent::Transfer(t) = &e.intent else {
            continue;
        };
        report.transfer_entries += 1;
        let sender = match t.executor {
            Executor::SelfCanister => journal_canister,
            Executor::External { caller } => caller,
        };
        let found: Vec<&LedgerBlock> = blocks
            .iter()
            .filter(|b| matches(&t.op, sender, b))
            .collect();
        for b in &found {
            claimed[b.index as usize] = true;
        }
        let idx: Vec<u64> = found.iter().map(|b| b.index).collect();
        if found.len() > 1 {
            report.violations.push(format!(
                "I1 {name} entry {}: executed {} times (blocks {idx:?})",
                e.id,
                found.len()
            ));
        }
        match e.status {
            Status::Succeeded => {
                report.succeeded += 1;
                if found.len() != 1 {
                    report.violations.push(format!(
                        "{name} entry {} succeeded (block {:?}) but matches blocks {idx:?}",
                        e.id,
                        e.block_index()
                    ));
                } else if e.block_index() != Some(found[0].index) {
                    report.violations.push(format!(
                        "{name} entry {} succeeded at block {:?} but its transfer is block {}",
                        e.id,
                        e.block_index(),
                        found[0].index
                    ));
                }
            }
            Status::Failed | Status::Cancelled | Status::Compensated => {
                report.failed += 1;
                if !found.is_empty() {
                    report.violations.push(format!(
                        "{name} entry {} is {:?} but executed on the ledger (blocks {idx:?})",
                        e.id, e.status
                    ));
                }
            }
            _ => report.unresolved += 1,
        }
    }
    // No stray execution: a block sent by this journal's canister with an icjournal memo
    // must belong to one of its transfer entries.
    for b in blocks {
        let ours = b.from.map(|a| a.owner) == Some(journal_canister) && b.spender.is_none()
            || b.spender.map(|a| a.owner) == Some(journal_canister);
        let memo_id = b.memo.as_deref().and_then(icjournal::memo::decode);
        if ours && memo_id.is_some() && !claimed[b.index as usize] {
            report.violations.push(format!(
                "{name}: block {} (memo entry {:?}) was sent by the journal's canister but \
                 matches no journaled transfer",
                b.index, memo_id
            ));
        }
    }
}

/// Check every deployed journal against the ledger.
pub fn check(setup: &Setup) -> Report {
    let blocks = setup.blocks();
    let mut report = Report {
        blocks: blocks.len(),
        archived_blocks: blocks.iter().filter(|b| b.archived).count(),
        ..Default::default()
    };
    if setup.opts.service {
        let entries = setup.service_entries();
        check_journal("service", setup.service, &entries, &blocks, &mut report);
    }
    if setup.opts.payout {
        let entries = setup.payout_entries();
        check_journal("payout", setup.payout, &entries, &blocks, &mut report);
    }
    report
}

#[cfg(test)]
mod tests {
    //! The checker must not be vacuous: planted violations are reported.
    use super::*;
    use candid::Nat;
    use icjournal::{EvidenceSource, FailureReason, Kind, Outcome, TransferIntent};
    use icrc_ledger_types::icrc1::transfer::{Memo, TransferArg};

    fn p(n: u8) -> Principal {
        Principal::from_slice(&[n, 1])
    }

    fn entry(id: u64, status: Status, block: Option<u64>) -> Entry {
        let arg = TransferArg {
            from_subaccount: None,
            to: Account {
                owner: p(9),
                subaccount: None,
            },
            fee: Some(Nat::from(10u8)),
            created_at_time: Some(1_000),
            memo: Some(Memo::from(icjournal::memo::encode(id))),
            amount: Nat::from(500u32),
        };
        Entry {
            id,
            owner: p(2),
            kind: Kind::Icrc1Transfer,
            lock_key: None,
            intent: Intent::Transfer(TransferIntent {
                ledger: p(3),
                op: LedgerOp::Icrc1Transfer(arg),
                executor: Executor::SelfCanister,
                window: None,
            }),
            status,
            attempts: 1,
            created_at: 0,
            updated_at: 0,
            next_attempt_at: None,
            outcome: match status {
                Status::Succeeded => Some(Outcome::Succeeded {
                    block_index: block,
                    reply: vec![],
                    source: EvidenceSource::Reply,
                }),
                Status::Failed => Some(Outcome::Failed {
                    reason: FailureReason::Host {
                        message: "x".into(),
                    },
                    source: EvidenceSource::Reply,
                }),
                _ => None,
            },
            last_error: None,
            manual_reason: None,
            parent: None,
            scan: None,
            history: vec![],
            history_dropped: 0,
            blocked_on: None,
        }
    }

    fn block(index: u64, memo_id: u64, amount: u128) -> LedgerBlock {
        LedgerBlock {
            index,
            archived: false,
            op: "xfer".into(),
            from: Some(Account {
                owner: p(1),
                subaccount: None,
            }),
            to: Some(Account {
                owner: p(9),
                subaccount: None,
            }),
            spender: None,
            amount: Some(amount),
            fee: Some(10),
            memo: Some(icjournal::memo::encode(memo_id)),
            created_at_time: Some(1_000),
            timestamp: 1_000,
        }
    }

    fn violations(entries: &[Entry], blocks: &[LedgerBlock]) -> Vec<String> {
        let mut r = Report::default();
        check_journal("t", p(1), entries, blocks, &mut r);
        r.violations
    }

    #[test]
    fn clean_journal_passes() {
        let e = [
            entry(0, Status::Succeeded, Some(0)),
            entry(1, Status::Failed, None),
        ];
        assert!(violations(&e, &[block(0, 0, 500)]).is_empty());
    }

    #[test]
    fn planted_violations_are_reported() {
        // Executed twice.
        let v = violations(
            &[entry(0, Status::Succeeded, Some(0))],
            &[block(0, 0, 500), block(1, 0, 500)],
        );
        assert!(v.iter().any(|m| m.starts_with("I1")), "{v:?}");
        // Succeeded without a block, or at the wrong block.
        assert!(!violations(&[entry(0, Status::Succeeded, Some(0))], &[]).is_empty());
        let v = violations(
            &[entry(0, Status::Succeeded, Some(1))],
            &[block(0, 0, 500), block(1, 9, 1)],
        );
        assert!(!v.is_empty());
        // Failed but executed.
        assert!(!violations(&[entry(0, Status::Failed, None)], &[block(0, 0, 500)]).is_empty());
        // A block sent by the journal's canister with our memo that matches no entry (stray).
        assert!(!violations(&[], &[block(0, 5, 500)]).is_empty());
        // The memo alone does not match: a different amount is not the entry's transfer.
        let v = violations(&[entry(0, Status::Failed, None)], &[block(0, 0, 501)]);
        assert!(v.iter().all(|m| !m.contains("is Failed")), "{v:?}");
    }
}
