//! The engine's only view of the outside world. `IcRuntime` is the real thing (ic-cdk 0.20);
//! `FakeRuntime` is a deterministic stand-in for native tests (scripted call responses,
//! controllable time, await boundaries the test driver controls).

use crate::types::RejectCode;
use crate::upgrade::RunStatus;
use candid::Principal;
use std::future::Future;
use std::pin::Pin;

mod fake;
mod ic;

pub use fake::{FakeRuntime, PendingCall};
pub use ic::IcRuntime;

/// A boxed, non-`Send` future (canister code is single-threaded).
pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T> + 'static>>;

/// How long the caller is willing to wait for a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Bounded-wait ("best-effort response") call: may end in `SysUnknown` after the timeout,
    /// in which case the callee may or may not have executed the call.
    Bounded { timeout_secs: u32 },
    /// Guaranteed-response call.
    Unbounded,
}

/// Why an inter-canister call did not produce a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The call never left this canister (insufficient cycles, `call_perform` failed). The
    /// callee certainly did not execute it.
    NotSent { message: String },
    /// The call was rejected, by the system or by the callee (see the reject-code mapping in
    /// `ledger::classify_reject`).
    Rejected { code: RejectCode, message: String },
}

pub type CallResult = Result<Vec<u8>, CallError>;

/// A timer set through the runtime, to clear it later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerHandle(pub u64);

/// Makes one run of a repeating timer's task.
pub type TaskFactory = Box<dyn FnMut() -> LocalFuture<()>>;

pub trait Runtime: 'static {
    /// Current time (ns). Monotonic, not strictly: two messages may see the same value.
    fn now(&self) -> u64;
    /// This canister's id.
    fn self_id(&self) -> Principal;
    /// The caller of the current message.
    fn caller(&self) -> Principal;
    /// Whether `p` is a controller of this canister (`ic0.is_controller`).
    fn is_controller(&self, p: &Principal) -> bool;
    /// Accept up to `amount` of the cycles the current call carries; returns what was accepted.
    fn accept_cycles(&self, amount: u128) -> u128;
    /// Instructions used by the current message so far.
    fn instruction_counter(&self) -> u64;
    /// Instructions used by the current call context so far, across its awaits
    /// (`ic0.performance_counter(1)`): what a recovery tick's budget is measured in, because the
    /// per-message counter restarts at every await.
    fn call_context_instruction_counter(&self) -> u64;
    /// Whether the canister is running, stopping or stopped (`ic0.canister_status`).
    fn run_status(&self) -> RunStatus;
    /// The canister's version (`ic0.canister_version`): the same for the whole of one message
    /// execution and greater after every message that ended successfully (an `await` ends
    /// one). Two reads that agree were made in one message, whose writes a trap rolls back
    /// together.
    fn canister_version(&self) -> u64;
    /// Inter-canister call with Candid-encoded `arg`; resolves to the raw reply.
    fn call(
        &self,
        callee: Principal,
        method: &str,
        wait: Wait,
        arg: Vec<u8>,
    ) -> LocalFuture<CallResult>;
    /// Run `task` once after `delay_ns` (a timer; on the IC via ic-cdk-timers).
    fn set_timer(&self, delay_ns: u64, task: LocalFuture<()>) -> TimerHandle;
    /// Run a task made by `make` every `interval_ns`. Runs may overlap (the task guards
    /// itself). The re-scheduling must not be undone by a trap in the task: on the IC,
    /// ic-cdk-timers re-schedules in `canister_global_timer` and runs each task in its own
    /// self-call, so a task's trap rolls back only the task.
    fn set_timer_interval(&self, interval_ns: u64, make: TaskFactory) -> TimerHandle;
    /// Cancel a timer (a no-op if it already ran or was cleared).
    fn clear_timer(&self, timer: TimerHandle);
    /// Re-arm the system timer if it was lost. On the IC the global timer is deactivated when
    /// `canister_global_timer` is scheduled; if that message then traps, the timer library's
    /// re-arming is rolled back with it and no timer fires again. Hosts call this from their
    /// update methods so that any later message brings timers back.
    fn revive_timers(&self);
    /// Run `task` as a separate task in the current message context.
    fn spawn(&self, task: LocalFuture<()>);
    /// Memory the canister occupies as the IC counts it against its memory allocation: the
    /// Wasm heap plus the whole stable memory. This is more than the journal's own memories
    /// add up to: the memory manager hands stable memory out in buckets of 128 pages
    /// (8 MiB), so a virtual memory of one page holds 8 MiB, and the host's own state lives
    /// in the same memories. `None` where the host has no such figure (tests).
    fn memory_usage_bytes(&self) -> Option<u64> {
        None
    }
}
