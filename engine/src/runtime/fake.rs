//! Deterministic runtime for native tests.
//!
//! Every `call` suspends (an await boundary = a message boundary on the IC) until the test
//! driver answers it with `respond`. Time only moves when the test says so. Timers and spawned
//! tasks are queued and run when the driver asks. Nothing here is random.

use super::{CallResult, LocalFuture, Runtime, TaskFactory, TimerHandle, Wait};
use crate::upgrade::RunStatus;
use candid::Principal;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A call the code under test made and that awaits an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingCall {
    pub id: u64,
    pub callee: Principal,
    pub method: String,
    pub wait: Wait,
    pub arg: Vec<u8>,
}

type Slot = Rc<RefCell<Option<CallResult>>>;

enum FakeTimer {
    Once(LocalFuture<()>),
    /// An interval timer; after a pause it runs once and re-schedules from now, as the IC's
    /// timer library does once its runs pile up.
    Interval {
        interval: u64,
        make: TaskFactory,
    },
}

#[derive(Default)]
struct Inner {
    now: Cell<u64>,
    self_id: Cell<Option<Principal>>,
    caller: Cell<Option<Principal>>,
    controllers: RefCell<Vec<Principal>>,
    instructions: Cell<u64>,
    context_instructions: Cell<u64>,
    instructions_per_call: Cell<u64>,
    next_call: Cell<u64>,
    pending: RefCell<BTreeMap<u64, (PendingCall, Slot)>>,
    /// (due time, timer id, timer)
    timers: RefCell<Vec<(u64, u64, FakeTimer)>>,
    next_timer: Cell<u64>,
    spawned: RefCell<Vec<LocalFuture<()>>>,
    /// `revive_timers` calls seen.
    revived: Cell<u64>,
    /// Cycles accepted with `accept_cycles`.
    accepted: Cell<u128>,
    /// `None` = running.
    run_status: Cell<Option<RunStatus>>,
    /// `ic0.canister_version`: moves on at every call (the message making it ends at its
    /// await) and at `new_message`.
    version: Cell<u64>,
}

/// Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct FakeRuntime {
    inner: Rc<Inner>,
}

impl FakeRuntime {
    pub fn new(self_id: Principal, now: u64) -> Self {
        let rt = FakeRuntime::default();
        rt.inner.self_id.set(Some(self_id));
        rt.inner.now.set(now);
        rt
    }

    pub fn set_now(&self, now: u64) {
        self.inner.now.set(now);
    }

    pub fn advance(&self, ns: u64) {
        self.inner.now.set(self.inner.now.get().saturating_add(ns));
    }

    /// The test driver starts another message: what ran before it is committed.
    pub fn new_message(&self) {
        self.inner.version.set(self.inner.version.get() + 1);
    }

    pub fn set_run_status(&self, status: RunStatus) {
        self.inner.run_status.set(Some(status));
    }

    pub fn set_caller(&self, caller: Principal) {
        self.inner.caller.set(Some(caller));
    }

    pub fn set_controllers(&self, controllers: Vec<Principal>) {
        *self.inner.controllers.borrow_mut() = controllers;
    }

    /// Pretend the current message used `n` more instructions.
    pub fn burn_instructions(&self, n: u64) {
        self.inner
            .instructions
            .set(self.inner.instructions.get().saturating_add(n));
        self.inner
            .context_instructions
            .set(self.inner.context_instructions.get().saturating_add(n));
    }

    /// New message: the per-message instruction counter restarts.
    pub fn reset_instructions(&self) {
        self.new_message();
        self.inner.instructions.set(0);
    }

    /// New call context: both counters restart.
    pub fn reset_call_context(&self) {
        self.new_message();
        self.inner.instructions.set(0);
        self.inner.context_instructions.set(0);
    }

    /// Every call made from now on counts as `n` instructions of work in its call context.
    pub fn set_instructions_per_call(&self, n: u64) {
        self.inner.instructions_per_call.set(n);
    }

    /// Cycles accepted so far.
    pub fn accepted_cycles(&self) -> u128 {
        self.inner.accepted.get()
    }

    /// How often `revive_timers` was called.
    pub fn revived(&self) -> u64 {
        self.inner.revived.get()
    }

    /// Calls made and not yet answered, oldest first.
    pub fn pending_calls(&self) -> Vec<PendingCall> {
        self.inner
            .pending
            .borrow()
            .values()
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Answer call `id`. Returns false if no such call is pending.
    pub fn respond(&self, id: u64, result: CallResult) -> bool {
        match self.inner.pending.borrow_mut().remove(&id) {
            Some((_, slot)) => {
                *slot.borrow_mut() = Some(result);
                true
            }
            None => false,
        }
    }

    /// Forget a pending call without answering (its future stays pending forever): models a
    /// trap whose cleanup dropped the awaiting future.
    pub fn forget_call(&self, id: u64) {
        self.inner.pending.borrow_mut().remove(&id);
    }

    /// Runs of the timers whose time has come, in (due time, creation) order; the caller runs
    /// them. One-shot timers are removed; interval timers are re-scheduled one interval on.
    pub fn take_due_timers(&self) -> Vec<LocalFuture<()>> {
        let now = self.inner.now.get();
        let mut timers = self.inner.timers.borrow_mut();
        timers.sort_by_key(|(at, seq, _)| (*at, *seq));
        let split = timers.iter().take_while(|(at, _, _)| *at <= now).count();
        let due: Vec<_> = timers.drain(..split).collect();
        let mut runs = Vec::new();
        for (at, id, t) in due {
            match t {
                FakeTimer::Once(f) => runs.push(f),
                FakeTimer::Interval { interval, mut make } => {
                    runs.push(make());
                    let next = at.saturating_add(interval);
                    let next = if next <= now {
                        now.saturating_add(interval)
                    } else {
                        next
                    };
                    timers.push((next, id, FakeTimer::Interval { interval, make }));
                }
            }
        }
        runs
    }

    /// Due time of the earliest armed timer.
    pub fn next_timer_at(&self) -> Option<u64> {
        self.inner
            .timers
            .borrow()
            .iter()
            .map(|(at, _, _)| *at)
            .min()
    }

    pub fn armed_timers(&self) -> usize {
        self.inner.timers.borrow().len()
    }

    /// Drop every armed timer (an upgrade clears timers on the IC).
    pub fn clear_timers(&self) {
        self.inner.timers.borrow_mut().clear();
    }

    pub fn take_spawned(&self) -> Vec<LocalFuture<()>> {
        std::mem::take(&mut *self.inner.spawned.borrow_mut())
    }

    /// Poll `fut` once with a no-op waker (the driver re-polls after answering calls).
    pub fn poll_once<T>(fut: &mut Pin<Box<dyn Future<Output = T> + '_>>) -> Poll<T> {
        let mut cx = Context::from_waker(Waker::noop());
        fut.as_mut().poll(&mut cx)
    }

    /// Drive `fut` to completion, answering each call with `respond_with`. Panics if the
    /// future stalls with no pending call (a bug in the code under test).
    pub fn run<T>(
        &self,
        fut: impl Future<Output = T>,
        mut respond_with: impl FnMut(&PendingCall) -> CallResult,
    ) -> T {
        let mut fut: Pin<Box<dyn Future<Output = T> + '_>> = Box::pin(fut);
        loop {
            if let Poll::Ready(v) = Self::poll_once(&mut fut) {
                return v;
            }
            let calls = self.pending_calls();
            assert!(!calls.is_empty(), "future stalled without a pending call");
            for c in calls {
                let r = respond_with(&c);
                self.respond(c.id, r);
            }
        }
    }
}

struct FakeCall {
    slot: Slot,
    rt: Rc<Inner>,
}

impl Future for FakeCall {
    type Output = CallResult;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<CallResult> {
        match self.slot.borrow_mut().take() {
            // The code after an await runs in a new message (the callback): the per-message
            // counter restarts, the call context's does not.
            Some(r) => {
                self.rt.instructions.set(0);
                Poll::Ready(r)
            }
            None => Poll::Pending,
        }
    }
}

impl Runtime for FakeRuntime {
    fn now(&self) -> u64 {
        self.inner.now.get()
    }

    fn self_id(&self) -> Principal {
        self.inner
            .self_id
            .get()
            .unwrap_or_else(|| Principal::from_slice(&[0xAA; 10]))
    }

    fn caller(&self) -> Principal {
        self.inner.caller.get().unwrap_or(Principal::anonymous())
    }

    fn is_controller(&self, p: &Principal) -> bool {
        self.inner.controllers.borrow().contains(p)
    }

    fn accept_cycles(&self, amount: u128) -> u128 {
        self.inner
            .accepted
            .set(self.inner.accepted.get().saturating_add(amount));
        amount
    }

    fn instruction_counter(&self) -> u64 {
        self.inner.instructions.get()
    }

    fn call_context_instruction_counter(&self) -> u64 {
        self.inner.context_instructions.get()
    }

    fn run_status(&self) -> RunStatus {
        self.inner.run_status.get().unwrap_or(RunStatus::Running)
    }

    fn canister_version(&self) -> u64 {
        self.inner.version.get()
    }

    fn call(
        &self,
        callee: Principal,
        method: &str,
        wait: Wait,
        arg: Vec<u8>,
    ) -> LocalFuture<CallResult> {
        let id = self.inner.next_call.get();
        self.inner.next_call.set(id + 1);
        // Sooner than the IC (which moves on when the message ends, after all its calls are
        // made): never later, so "same message" is never claimed wrongly.
        self.new_message();
        self.burn_instructions(self.inner.instructions_per_call.get());
        let slot: Slot = Rc::new(RefCell::new(None));
        let call = PendingCall {
            id,
            callee,
            method: method.to_string(),
            wait,
            arg,
        };
        self.inner
            .pending
            .borrow_mut()
            .insert(id, (call, slot.clone()));
        Box::pin(FakeCall {
            slot,
            rt: self.inner.clone(),
        })
    }

    fn set_timer(&self, delay_ns: u64, task: LocalFuture<()>) -> TimerHandle {
        let at = self.inner.now.get().saturating_add(delay_ns);
        let seq = self.inner.next_timer.get();
        self.inner.next_timer.set(seq + 1);
        self.inner
            .timers
            .borrow_mut()
            .push((at, seq, FakeTimer::Once(task)));
        TimerHandle(seq)
    }

    fn set_timer_interval(&self, interval_ns: u64, make: TaskFactory) -> TimerHandle {
        let at = self.inner.now.get().saturating_add(interval_ns);
        let seq = self.inner.next_timer.get();
        self.inner.next_timer.set(seq + 1);
        self.inner.timers.borrow_mut().push((
            at,
            seq,
            FakeTimer::Interval {
                interval: interval_ns,
                make,
            },
        ));
        TimerHandle(seq)
    }

    fn clear_timer(&self, timer: TimerHandle) {
        self.inner
            .timers
            .borrow_mut()
            .retain(|(_, id, _)| *id != timer.0);
    }

    fn revive_timers(&self) {
        self.inner.revived.set(self.inner.revived.get() + 1);
    }

    fn spawn(&self, task: LocalFuture<()>) {
        self.inner.spawned.borrow_mut().push(task);
    }
}
