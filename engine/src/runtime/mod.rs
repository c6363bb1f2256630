//! The engine's only view of the outside world. `IcRuntime` is the real thing (ic-cdk 0.20);
//! `FakeRuntime` is a deterministic stand-in for native tests (scripted call responses,
//! controllable time, await boundaries the test driver controls).

use crate::types::RejectCode;
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

pub trait Runtime: 'static {
    /// Current time (ns). Monotonic, not strictly: two messages may see the same value.
    fn now(&self) -> u64;
    /// This canister's id.
    fn self_id(&self) -> Principal;
    /// The caller of the current message.
    fn caller(&self) -> Principal;
    /// Instructions used by the current message so far (for per-tick budgets).
    fn instruction_counter(&self) -> u64;
    /// Inter-canister call with Candid-encoded `arg`; resolves to the raw reply.
    fn call(
        &self,
        callee: Principal,
        method: &str,
        wait: Wait,
        arg: Vec<u8>,
    ) -> LocalFuture<CallResult>;
    /// Run `task` once after `delay_ns` (a timer; on the IC via ic-cdk-timers).
    fn set_timer(&self, delay_ns: u64, task: LocalFuture<()>);
    /// Run `task` as a separate task in the current message context.
    fn spawn(&self, task: LocalFuture<()>);
}
