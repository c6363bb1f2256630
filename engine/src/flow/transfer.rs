//! Ledger transfers: journal the exact args (memo = entry id, fixed `created_at_time`), send
//! them once, journal the result; and transfers another canister sends, tracked for recovery.

use crate::error::JournalError;
use crate::journal::{truncate, After, EntryOptions, FlowGuard, Journal};
use crate::ledger::{self, CallOutcome};
use crate::memo;
use crate::recovery::{self, Decision};
use crate::runtime::Runtime;
use crate::storage::counter;
use crate::types::*;
use candid::Principal;
use ic_stable_structures::Memory;
use icrc_ledger_types::icrc1::transfer::{Memo, TransferArg};
use icrc_ledger_types::icrc2::transfer_from::TransferFromArgs;
impl<R: Runtime, M: Memory + 'static> Journal<R, M> {
    pub(crate) fn build_op(spec: &TransferSpec, id: EntryId, now: Timestamp) -> LedgerOp {
        let memo = Some(Memo::from(memo::encode(id)));
        match spec.clone() {
            TransferSpec::Icrc1 {
                from_subaccount,
                to,
                amount,
                fee,
                ..
            } => LedgerOp::Icrc1Transfer(TransferArg {
                from_subaccount,
                to,
                fee,
                created_at_time: Some(now),
                memo,
                amount,
            }),
            TransferSpec::Icrc2 {
                spender_subaccount,
                from,
                to,
                amount,
                fee,
                ..
            } => LedgerOp::Icrc2TransferFrom(TransferFromArgs {
                spender_subaccount,
                from,
                to,
                amount,
                fee,
                memo,
                created_at_time: Some(now),
            }),
        }
    }

    /// Journal a transfer intent with its exact args (memo = entry id, created_at_time = now,
    /// fee as given). Nothing is sent; call `execute`.
    pub fn journal_transfer(
        &self,
        owner: Principal,
        spec: TransferSpec,
        opts: impl Into<EntryOptions>,
    ) -> Result<EntryId, JournalError> {
        self.journal_transfer_with_parent(owner, spec, opts.into(), None)
            .map(|e| e.id)
    }

    pub(crate) fn journal_transfer_with_parent(
        &self,
        owner: Principal,
        spec: TransferSpec,
        opts: EntryOptions,
        parent: Option<EntryId>,
    ) -> Result<Entry, JournalError> {
        let kind = match spec {
            TransferSpec::Icrc1 { .. } => Kind::Icrc1Transfer,
            TransferSpec::Icrc2 { .. } => Kind::Icrc2TransferFrom,
        };
        let ledger = spec.ledger();
        let window = Some(self.inner.config.borrow().ledger_window(ledger));
        self.create(owner, kind, opts, parent, |id, now| {
            Intent::Transfer(TransferIntent {
                ledger,
                op: Self::build_op(&spec, id, now),
                executor: Executor::SelfCanister,
                window,
            })
        })
    }

    /// Journal + execute.
    pub async fn transfer(
        &self,
        owner: Principal,
        spec: TransferSpec,
        opts: impl Into<EntryOptions>,
    ) -> Result<FlowResult, JournalError> {
        let id = self.journal_transfer(owner, spec, opts)?;
        self.execute(id).await
    }

    /// Send a journaled transfer for the first time and journal the result. With
    /// `commit == After::Continue` the result is then committed by a self-call, because the
    /// caller's code goes on in this message; with `After::Reply` nothing but the reply follows
    /// and the commit is elided (see docs/design.md, "When a commit is needed").
    pub(crate) async fn send_first(&self, id: EntryId, after: After) {
        let lease = self.lease_until();
        let Some(e) = self.update(id, |e| {
            e.attempts += 1;
            e.next_attempt_at = Some(lease);
        }) else {
            return;
        };
        self.inner.store.borrow_mut().bump(counter::ATTEMPTS, 1);
        let Intent::Transfer(t) = e.intent.clone() else {
            return;
        };
        let guard = FlowGuard {
            journal: self.clone(),
            id,
            owned_status: Status::Pending,
            attempt: e.attempts,
        };
        let (method, arg) = ledger::method_and_arg(&t.op);
        let reply = self.inner.rt.call(t.ledger, method, self.wait(), arg).await;
        let outcome = ledger::classify_ledger_call(&t.op, &reply);
        self.apply_first_send(id, e.attempts, &outcome);
        if after == After::Continue {
            self.self_commit().await;
        }
        // Without the commit a trap from here to the end of the message rolls the result
        // back; the guard's drop (in the cleanup callback) then marks the entry `Unknown` and
        // recovery re-derives the same result: a resend of the identical args answers
        // `Duplicate { duplicate_of }` with the same block, or the memo lookup finds it.
        drop(guard);
    }

    pub(crate) fn apply_first_send(&self, id: EntryId, attempt: u32, outcome: &CallOutcome) {
        let Some(cur) = self.get(id) else { return };
        let cfg = self.config();
        let now = self.now();
        if cur.status != Status::Pending || cur.attempts != attempt {
            // Recovery took over meanwhile (lease expired during a very long call). Only a
            // success is conclusive here; anything else leaves recovery in charge.
            if let CallOutcome::Executed { block } = outcome {
                self.apply_success(id, *block, EvidenceSource::Reply, None);
            }
            return;
        }
        match recovery::decide_first_send(attempt, now, &cfg, outcome) {
            Decision::Succeeded { block, .. } => {
                self.apply_success(id, block, EvidenceSource::Reply, None)
            }
            Decision::Failed { reason } => self.apply_failure(id, reason, EvidenceSource::Reply),
            Decision::RetryAt { at, note } => {
                self.transition_or_park(id, Status::Unknown, &note, |e| {
                    e.next_attempt_at = Some(at);
                    e.last_error = Some(truncate(&note, 512));
                });
            }
            Decision::Manual { reason } => self.to_manual(id, &reason),
            Decision::Lookup { .. } | Decision::Continue { .. } => {
                unreachable!("a first send never asks for a lookup")
            }
        }
    }

    /// Journal a transfer that the owner (another canister) sends itself. The engine fills
    /// memo and created_at_time; the caller must send exactly the returned args.
    pub fn track_transfer(
        &self,
        owner: Principal,
        ledger: Principal,
        op: LedgerOp,
        opts: impl Into<EntryOptions>,
    ) -> Result<(EntryId, TransferIntent), JournalError> {
        let (memo_set, cat_set) = match &op {
            LedgerOp::Icrc1Transfer(a) => (a.memo.is_some(), a.created_at_time.is_some()),
            LedgerOp::Icrc2TransferFrom(a) => (a.memo.is_some(), a.created_at_time.is_some()),
        };
        if memo_set || cat_set {
            return Err(JournalError::InvalidArgument {
                message: "memo and created_at_time are set by the journal; pass None".into(),
            });
        }
        let kind = match op {
            LedgerOp::Icrc1Transfer(_) => Kind::Icrc1Transfer,
            LedgerOp::Icrc2TransferFrom(_) => Kind::Icrc2TransferFrom,
        };
        let window = Some(self.inner.config.borrow().ledger_window(ledger));
        let e = self.create(owner, kind, opts.into(), None, |id, now| {
            let memo = Some(Memo::from(memo::encode(id)));
            let op = match op {
                LedgerOp::Icrc1Transfer(mut a) => {
                    a.memo = memo;
                    a.created_at_time = Some(now);
                    LedgerOp::Icrc1Transfer(a)
                }
                LedgerOp::Icrc2TransferFrom(mut a) => {
                    a.memo = memo;
                    a.created_at_time = Some(now);
                    LedgerOp::Icrc2TransferFrom(a)
                }
            };
            Intent::Transfer(TransferIntent {
                ledger,
                op,
                executor: Executor::External { caller: owner },
                window,
            })
        })?;
        let Intent::Transfer(t) = e.intent else {
            unreachable!()
        };
        Ok((e.id, t))
    }
}
