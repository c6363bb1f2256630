//! Real runtime on ic-cdk 0.20. Compiles natively too (calls then trap, as ic-cdk does off-chain).

use super::{CallError, CallResult, LocalFuture, Runtime, TaskFactory, TimerHandle, Wait};
use crate::types::RejectCode;
use crate::upgrade::RunStatus;
use candid::Principal;
use ic_cdk::api::CanisterStatusCode;
use ic_cdk::call::{Call, CallFailed};
use ic_cdk_timers::TimerId;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

thread_local! {
    /// Timers set through `IcRuntime`, by handle (ic-cdk-timers' ids are opaque).
    static TIMERS: RefCell<BTreeMap<u64, TimerId>> = const { RefCell::new(BTreeMap::new()) };
    static NEXT_TIMER: Cell<u64> = const { Cell::new(0) };
}

fn remember(id: TimerId) -> TimerHandle {
    let h = NEXT_TIMER.with(|n| {
        let h = n.get();
        n.set(h + 1);
        h
    });
    TIMERS.with_borrow_mut(|t| t.insert(h, id));
    TimerHandle(h)
}

/// The production runtime. Zero-sized; create it anywhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct IcRuntime;

impl Runtime for IcRuntime {
    fn now(&self) -> u64 {
        ic_cdk::api::time()
    }

    fn self_id(&self) -> Principal {
        ic_cdk::api::canister_self()
    }

    fn caller(&self) -> Principal {
        ic_cdk::api::msg_caller()
    }

    fn is_controller(&self, p: &Principal) -> bool {
        ic_cdk::api::is_controller(p)
    }

    fn accept_cycles(&self, amount: u128) -> u128 {
        ic_cdk::api::msg_cycles_accept(amount)
    }

    fn instruction_counter(&self) -> u64 {
        ic_cdk::api::instruction_counter()
    }

    fn call_context_instruction_counter(&self) -> u64 {
        ic_cdk::api::call_context_instruction_counter()
    }

    fn canister_version(&self) -> u64 {
        ic_cdk::api::canister_version()
    }

    fn run_status(&self) -> RunStatus {
        match ic_cdk::api::canister_status() {
            CanisterStatusCode::Stopped => RunStatus::Stopped,
            CanisterStatusCode::Stopping => RunStatus::Stopping,
            // An unknown code is not "stopped": refuse rather than guess.
            CanisterStatusCode::Running | CanisterStatusCode::Unrecognized(_) => RunStatus::Running,
        }
    }

    fn call(
        &self,
        callee: Principal,
        method: &str,
        wait: Wait,
        arg: Vec<u8>,
    ) -> LocalFuture<CallResult> {
        let method = method.to_string();
        Box::pin(async move {
            let call = match wait {
                Wait::Bounded { timeout_secs } => {
                    Call::bounded_wait(callee, &method).change_timeout(timeout_secs)
                }
                Wait::Unbounded => Call::unbounded_wait(callee, &method),
            };
            match call.take_raw_args(arg).await {
                Ok(response) => Ok(response.into_bytes()),
                Err(CallFailed::CallRejected(r)) => Err(CallError::Rejected {
                    code: RejectCode::from_raw(r.raw_reject_code()),
                    message: r.reject_message().to_string(),
                }),
                // Both mean `ic0.call_perform` was not (successfully) invoked: nothing was sent.
                Err(e @ CallFailed::InsufficientLiquidCycleBalance(_))
                | Err(e @ CallFailed::CallPerformFailed(_)) => Err(CallError::NotSent {
                    message: e.to_string(),
                }),
            }
        })
    }

    fn set_timer(&self, delay_ns: u64, task: LocalFuture<()>) -> TimerHandle {
        remember(ic_cdk_timers::set_timer(
            Duration::from_nanos(delay_ns),
            task,
        ))
    }

    fn set_timer_interval(&self, interval_ns: u64, make: TaskFactory) -> TimerHandle {
        // Not `set_timer_interval_serial`: after a pause longer than the interval (a stopped
        // canister), ic-cdk-timers 1.0 dispatches a serial timer once per missed interval, each
        // a self-call; a plain interval timer stops dispatching at 5 concurrent runs and
        // re-schedules from now. The engine's own overlap guard keeps ticks from overlapping.
        remember(ic_cdk_timers::set_timer_interval(
            Duration::from_nanos(interval_ns),
            make,
        ))
    }

    fn clear_timer(&self, timer: TimerHandle) {
        if let Some(id) = TIMERS.with_borrow_mut(|t| t.remove(&timer.0)) {
            ic_cdk_timers::clear_timer(id);
        }
    }

    fn revive_timers(&self) {
        // `global_timer_set` returns the previous deadline; 0 means deactivated. A live timer is
        // put back as it was; a lost one fires at once, and ic-cdk-timers' handler then runs
        // what is due and re-arms itself from its own (intact) schedule.
        let previous = ic_cdk::api::global_timer_set(0);
        let next = if previous == 0 {
            ic_cdk::api::time()
        } else {
            previous
        };
        ic_cdk::api::global_timer_set(next);
    }

    fn spawn(&self, task: LocalFuture<()>) {
        ic_cdk::futures::spawn(task);
    }

    fn memory_usage_bytes(&self) -> Option<u64> {
        const PAGE: u64 = 65_536;
        #[cfg(target_arch = "wasm32")]
        let heap = core::arch::wasm32::memory_size(0) as u64 * PAGE;
        #[cfg(not(target_arch = "wasm32"))]
        let heap = 0;
        Some(ic_cdk::api::stable_size().saturating_mul(PAGE) + heap)
    }
}
