//! How the client reaches the service: a small async transport trait, with an ic-cdk
//! implementation for canisters (feature `ic-cdk`). Tests plug in the simulator with their own
//! implementation.

use candid::Principal;
use std::future::Future;

/// Kind of method being called. Another canister calls both the same way; an agent or a
/// simulator may run queries without going through consensus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallMode {
    Query,
    Update,
}

/// Why a call produced no reply.
#[derive(candid::CandidType, candid::Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// The call never left the caller (e.g. insufficient cycles): the service did not see it.
    NotSent { message: String },
    /// The call was rejected with an IC reject code (1 SysFatal, 2 SysTransient,
    /// 3 DestinationInvalid, 4 CanisterReject, 5 CanisterError, 6 SysUnknown).
    Rejected { code: u32, message: String },
}

impl TransportError {
    /// IC reject code `SYS_UNKNOWN`: a bounded-wait call timed out; the callee may or may not
    /// have executed it.
    pub const SYS_UNKNOWN: u32 = 6;
    /// IC reject code `CANISTER_ERROR`: the callee trapped or could not run.
    pub const CANISTER_ERROR: u32 = 5;
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::NotSent { message } => write!(f, "call not sent: {message}"),
            TransportError::Rejected { code, message } => {
                write!(f, "call rejected (code {code}): {message}")
            }
        }
    }
}

impl std::error::Error for TransportError {}

/// Sends one Candid-encoded call and returns the raw Candid reply.
pub trait Transport {
    fn call(
        &self,
        canister: Principal,
        method: &str,
        mode: CallMode,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>>;

    /// `call` with `cycles` attached (the service's fees; what it does not accept comes back).
    /// Only an inter-canister transport can attach cycles: others refuse a call that needs
    /// them, before sending it.
    fn call_with_cycles(
        &self,
        canister: Principal,
        method: &str,
        mode: CallMode,
        arg: Vec<u8>,
        cycles: u128,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        async move {
            if cycles > 0 {
                return Err(TransportError::NotSent {
                    message: "this transport cannot attach cycles (ingress calls carry none): \
                              ask an operator to add the caller to the service's fee_exempt list"
                        .into(),
                });
            }
            self.call(canister, method, mode, arg).await
        }
    }
}

impl<T: Transport> Transport for &T {
    fn call(
        &self,
        canister: Principal,
        method: &str,
        mode: CallMode,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        (**self).call(canister, method, mode, arg)
    }
}

/// Inter-canister transport on ic-cdk 0.20 `Call` (feature `ic-cdk`).
///
/// From another canister (`icjournal-client = { ..., features = ["ic-cdk"] }`):
///
/// ```ignore
/// use icjournal_client::{Client, TransferRequest, transport::IcCdkTransport};
/// use icjournal_types::TransferSpec;
///
/// let journal = Client::new(service_id, IcCdkTransport::default());
/// // The caller approved the service (icrc2_approve) beforehand.
/// let receipt = journal
///     .execute_transfer(TransferRequest {
///         transfer: TransferSpec::Icrc2 {
///             ledger, spender_subaccount: None,
///             from: Account { owner: ic_cdk::api::canister_self(), subaccount: None },
///             to: payee, amount: 1_000u64.into(), fee: None,
///         },
///         lock_key: Some(format!("order-{order_id}")),
///         idempotency_key: Some(format!("order-{order_id}")),
///     })
///     .await?;
/// // receipt.status: Succeeded / Failed, or Unknown (recovery runs; poll get_entry).
/// ```
#[cfg(feature = "ic-cdk")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcCdkTransport {
    /// `Some(secs)`: bounded-wait calls with this timeout (may end in `SysUnknown`);
    /// `None`: guaranteed-response (unbounded-wait) calls.
    pub timeout_secs: Option<u32>,
}

#[cfg(feature = "ic-cdk")]
impl Default for IcCdkTransport {
    /// Unbounded wait: the reply (or a reject proving non-delivery) always arrives.
    fn default() -> Self {
        IcCdkTransport { timeout_secs: None }
    }
}

#[cfg(feature = "ic-cdk")]
impl Transport for IcCdkTransport {
    fn call(
        &self,
        canister: Principal,
        method: &str,
        mode: CallMode,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        self.call_with_cycles(canister, method, mode, arg, 0)
    }

    fn call_with_cycles(
        &self,
        canister: Principal,
        method: &str,
        _mode: CallMode,
        arg: Vec<u8>,
        cycles: u128,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        use ic_cdk::call::{Call, CallFailed};
        let call = match self.timeout_secs {
            Some(t) => Call::bounded_wait(canister, method).change_timeout(t),
            None => Call::unbounded_wait(canister, method),
        }
        .with_cycles(cycles);
        async move {
            match call.take_raw_args(arg).await {
                Ok(response) => Ok(response.into_bytes()),
                Err(CallFailed::CallRejected(r)) => Err(TransportError::Rejected {
                    code: r.raw_reject_code(),
                    message: r.reject_message().to_string(),
                }),
                Err(e) => Err(TransportError::NotSent {
                    message: e.to_string(),
                }),
            }
        }
    }
}
