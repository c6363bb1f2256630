//! Test driver: a journal on a `FakeRuntime` over a `MemoryManager` on one `VectorMemory`,
//! a model ledger, and fault injection at every await boundary (= message boundary).
//!
//! A trap in a callback is modelled faithfully: the callback's writes are rolled back by
//! restoring the memory snapshot taken when the callback message started and reloading the
//! journal from it (heap state rolls back too), then the flow future is dropped, which runs its
//! Drop guards — exactly what `call_on_cleanup` does on the IC — and their writes persist.

use super::model_ledger::ModelLedger;
use crate::runtime::{CallError, CallResult, FakeRuntime, PendingCall};
use crate::types::*;
use crate::{Config, Journal, Memories};
use candid::Principal;
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::VectorMemory;
use icrc_ledger_types::icrc1::account::Account;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

pub type VM = VirtualMemory<VectorMemory>;
pub type J = Journal<FakeRuntime, VM>;

pub const SEC: u64 = 1_000_000_000;
pub const HOUR: u64 = 3600 * SEC;
pub const T0: u64 = 1_700_000_000 * SEC;

/// What happens to one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Deliver,
    /// The callee executes; the response is lost (bounded-wait timeout: SYS_UNKNOWN).
    LoseResponse,
    /// Rejected by the system before delivery (SYS_TRANSIENT); not executed.
    RejectBeforeDelivery,
    /// CANISTER_ERROR without execution (callee stopped).
    CanisterErrorNotExecuted,
    /// The ledger answers TemporarilyUnavailable.
    Unavailable,
    /// The callee executes and replies; our callback traps.
    Trap,
    /// The request reaches the ledger this many ns late (it sat in queues), executes there at
    /// the later ledger time, and the response is lost.
    ExecuteLateLoseResponse(u64),
}

pub struct Harness {
    pub raw: VectorMemory,
    pub rt: FakeRuntime,
    pub journal: J,
    pub ledger: ModelLedger,
    pub self_id: Principal,
    pub faults: VecDeque<Fault>,
    pub calls: Vec<PendingCall>,
    /// The host's own (heap) state for local steps; rolled back with a trap like the rest.
    pub host_log: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    /// The most calls `drive` saw in flight at once.
    pub max_in_flight: usize,
}

pub fn memories(raw: &VectorMemory) -> Memories<VM> {
    let mm = MemoryManager::init(raw.clone());
    Memories::from_manager(&mm, 0)
}

pub fn user(n: u8) -> Principal {
    Principal::from_slice(&[0x10, n, 0, 1])
}

impl Harness {
    pub fn new(cfg: Config) -> Self {
        let self_id = Principal::from_slice(&[0xCA, 0xFE, 0, 1]);
        let rt = FakeRuntime::new(self_id, T0);
        let raw = VectorMemory::default();
        let mut ledger = ModelLedger::new(cfg.ledger_tx_window_ns, cfg.ledger_permitted_drift_ns);
        ledger
            .balances
            .insert(Account::from(self_id), 1_000_000_000);
        let payer = Account::from(user(200));
        ledger.balances.insert(payer, 1_000_000_000);
        ledger
            .allowances
            .insert((payer, Account::from(self_id)), 1_000_000_000);
        let journal = Journal::open(rt.clone(), memories(&raw), cfg).expect("open");
        Harness {
            raw,
            rt,
            journal,
            ledger,
            self_id,
            faults: VecDeque::new(),
            calls: vec![],
            host_log: Default::default(),
            max_in_flight: 0,
        }
    }

    /// "Upgrade": drop all heap state, re-open on the same stable memory.
    pub fn reopen(&mut self) {
        let cfg = self.journal.config();
        self.rt.clear_timers();
        self.journal = Journal::open(self.rt.clone(), memories(&self.raw), cfg).expect("reopen");
    }

    fn exec(&mut self, c: &PendingCall) -> CallResult {
        if c.callee == self.self_id {
            return Ok(candid::encode_args(()).unwrap());
        }
        let now = self.rt.now_for_test();
        self.ledger
            .handle(self.self_id, c.callee, &c.method, &c.arg, now)
            .unwrap_or_else(|| {
                Err(CallError::Rejected {
                    code: RejectCode::DestinationInvalid,
                    message: "no such canister".into(),
                })
            })
    }

    /// Drive `fut` to completion with the queued faults (then `Deliver`). Returns None if the
    /// flow trapped (its cleanup has run).
    pub fn drive<T>(&mut self, fut: impl Future<Output = T>) -> Option<T> {
        let mut fut: Pin<Box<dyn Future<Output = T> + '_>> = Box::pin(fut);
        loop {
            if let Poll::Ready(v) = FakeRuntime::poll_once(&mut fut) {
                return Some(v);
            }
            // Calls are answered one at a time, oldest first: each answer is one callback
            // message. A recovery tick has several calls in flight at once.
            let calls = self.rt.pending_calls();
            assert!(!calls.is_empty(), "future stalled without a pending call");
            self.max_in_flight = self.max_in_flight.max(calls.len());
            let call = calls[0].clone();
            self.calls.push(call.clone());
            let is_self = call.callee == self.self_id;
            let fault = self.faults.pop_front().unwrap_or(Fault::Deliver);
            let fault = if is_self && fault != Fault::Trap {
                Fault::Deliver
            } else {
                fault
            };
            match fault {
                Fault::Deliver => {
                    let r = self.exec(&call);
                    self.rt.respond(call.id, r);
                }
                Fault::LoseResponse => {
                    let _ = self.exec(&call);
                    self.rt.respond(
                        call.id,
                        Err(CallError::Rejected {
                            code: RejectCode::SysUnknown,
                            message: "timeout".into(),
                        }),
                    );
                }
                Fault::ExecuteLateLoseResponse(delay) => {
                    self.rt.advance(delay);
                    let _ = self.exec(&call);
                    self.rt.respond(
                        call.id,
                        Err(CallError::Rejected {
                            code: RejectCode::SysUnknown,
                            message: "timeout".into(),
                        }),
                    );
                }
                Fault::RejectBeforeDelivery => {
                    self.rt.respond(
                        call.id,
                        Err(CallError::Rejected {
                            code: RejectCode::SysTransient,
                            message: "queue full".into(),
                        }),
                    );
                }
                Fault::CanisterErrorNotExecuted => {
                    self.rt.respond(
                        call.id,
                        Err(CallError::Rejected {
                            code: RejectCode::CanisterError,
                            message: "stopped".into(),
                        }),
                    );
                }
                Fault::Unavailable => {
                    if call.callee == self.ledger.id
                        && call.method.starts_with("icrc")
                        && call.method != "icrc3_get_blocks"
                    {
                        self.ledger.unavailable += 1;
                    }
                    let r = self.exec(&call);
                    self.rt.respond(call.id, r);
                }
                Fault::Trap => {
                    let snapshot = self.raw.borrow().clone();
                    let host_snapshot = self.host_log.borrow().clone();
                    let r = self.exec(&call);
                    self.rt.respond(call.id, r);
                    let sent_before: Vec<PendingCall> = calls[1..].to_vec();
                    // The callback message runs (to its next await or the end)...
                    let _ = FakeRuntime::poll_once(&mut fut);
                    // ...and traps: its stable and heap changes are rolled back,
                    *self.raw.borrow_mut() = snapshot;
                    *self.host_log.borrow_mut() = host_snapshot;
                    self.journal.reload(memories(&self.raw)).expect("reload");
                    // its outgoing calls were never sent,
                    for c in self.rt.pending_calls() {
                        self.rt.forget_call(c.id);
                    }
                    // while the task's calls sent by earlier messages still execute; their
                    // replies find no task.
                    for c in sent_before {
                        self.calls.push(c.clone());
                        let _ = self.exec(&c);
                    }
                    // and call_on_cleanup drops the task's futures (Drop guards run, persist).
                    drop(fut);
                    return None;
                }
            }
        }
    }

    /// An operator verb by `actor`, every principal counting as an operator.
    pub fn admin(
        &mut self,
        actor: Principal,
        req: crate::AdminRequest,
    ) -> Result<crate::AdminResult, crate::JournalError> {
        self.admin_among(actor, req, None)
    }

    /// An operator verb by `actor`; `operators`: who still counts as one (None: everyone).
    pub fn admin_among(
        &mut self,
        actor: Principal,
        req: crate::AdminRequest,
        operators: Option<Vec<Principal>>,
    ) -> Result<crate::AdminResult, crate::JournalError> {
        let j = self.journal.clone();
        self.drive(async move {
            j.admin(actor, req, |p| {
                operators.as_ref().is_none_or(|o| o.contains(p))
            })
            .await
        })
        .expect("an operator verb does not trap")
    }

    pub fn tick(&mut self) -> Option<crate::TickReport> {
        let j = self.journal.clone();
        self.drive(j.recovery_tick())
    }

    pub fn transfer(
        &mut self,
        owner: Principal,
        spec: TransferSpec,
        opts: impl Into<crate::EntryOptions>,
    ) -> Option<Result<FlowResult, crate::JournalError>> {
        let j = self.journal.clone();
        let opts = opts.into();
        self.drive(async move { j.transfer(owner, spec, opts).await })
    }

    pub fn icrc1(&self, amount: u64) -> TransferSpec {
        TransferSpec::Icrc1 {
            ledger: self.ledger.id,
            from_subaccount: None,
            to: Account::from(user(100)),
            amount: candid::Nat::from(amount),
            fee: None,
        }
    }

    pub fn icrc2(&self, amount: u64) -> TransferSpec {
        TransferSpec::Icrc2 {
            ledger: self.ledger.id,
            spender_subaccount: None,
            from: Account::from(user(200)),
            to: Account::from(user(100)),
            amount: candid::Nat::from(amount),
            fee: Some(candid::Nat::from(self.ledger.fee)),
        }
    }

    pub fn entries(&self) -> Vec<Entry> {
        let mut out = vec![];
        let mut page = crate::PageRequest {
            start_after: None,
            limit: 100,
        };
        loop {
            let p = self.journal.list(&Default::default(), &page);
            for s in &p.items {
                out.push(self.journal.get(s.id).expect("listed entry exists"));
            }
            match p.next {
                Some(n) => page.start_after = Some(n),
                None => return out,
            }
        }
    }

    /// Run recovery (no faults) until nothing is due, advancing time as needed.
    pub fn settle(&mut self) {
        self.faults.clear();
        for _ in 0..200 {
            let unresolved = self
                .entries()
                .iter()
                .any(|e| e.status.is_unresolved() && e.status != Status::ManualReview);
            if !unresolved {
                let violations = self.journal.inner.store.borrow().index_violations();
                assert!(violations.is_empty(), "indexes: {violations:?}");
                return;
            }
            let next = self.journal.next_due().unwrap_or(self.rt.now_for_test());
            if next > self.rt.now_for_test() {
                self.rt.set_now(next);
            }
            self.tick();
        }
        panic!(
            "journal did not settle: {:#?}",
            self.entries()
                .iter()
                .filter(|e| e.status.is_unresolved())
                .collect::<Vec<_>>()
        );
    }
}

impl FakeRuntime {
    pub fn now_for_test(&self) -> u64 {
        use crate::Runtime;
        self.now()
    }
}

/// Asserts that the store refuses to record `entry` as succeeded at `block` of its ledger,
/// because that block proves entry `by`, and that the refused write leaves every byte of stable
/// memory as it was.
pub fn assert_block_refused(h: &Harness, entry: EntryId, block: u64, by: EntryId) {
    let old = h.journal.get(entry).unwrap();
    let mut new = old.clone();
    new.status = Status::Succeeded;
    new.outcome = Some(Outcome::Succeeded {
        block_index: Some(block),
        reply: vec![],
        source: EvidenceSource::MemoLookup,
    });
    let before = h.raw.borrow().clone();
    let r = h.journal.inner.store.borrow_mut().write(Some(&old), &new);
    assert_eq!(r, Err(crate::storage::BlockClaimed { block, by }));
    assert!(*h.raw.borrow() == before, "a refused write changes nothing");
}

/// Two ICRC-1 transfers of the same amount: one that succeeded at the returned block, one whose
/// response was lost (`Unknown`): the other entry a block must never prove.
pub fn succeeded_and_unknown(h: &mut Harness) -> (EntryId, u64, EntryId) {
    let a = h.transfer(user(1), h.icrc1(5), None).unwrap().unwrap();
    assert_eq!(a.status, Status::Succeeded);
    let block = h.ledger.blocks_for_entry(a.entry_id)[0];
    h.faults.push_back(Fault::LoseResponse);
    let b = h.transfer(user(2), h.icrc1(5), None).unwrap().unwrap();
    assert_eq!(b.status, Status::Unknown);
    (a.entry_id, block, b.entry_id)
}
