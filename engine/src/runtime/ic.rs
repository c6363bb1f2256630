//! Real runtime on ic-cdk 0.20. Compiles natively too (calls then trap, as ic-cdk does off-chain).

use super::{CallError, CallResult, LocalFuture, Runtime, Wait};
use crate::types::RejectCode;
use candid::Principal;
use ic_cdk::call::{Call, CallFailed};
use std::time::Duration;

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

    fn instruction_counter(&self) -> u64 {
        ic_cdk::api::instruction_counter()
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

    fn set_timer(&self, delay_ns: u64, task: LocalFuture<()>) {
        ic_cdk_timers::set_timer(Duration::from_nanos(delay_ns), task);
    }

    fn spawn(&self, task: LocalFuture<()>) {
        ic_cdk::futures::spawn(task);
    }
}
