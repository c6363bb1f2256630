//! Typed client for the icjournal service canister.
//!
//! The client is generic over a [`Transport`]: from another canister use
//! [`IcCdkTransport`](transport::IcCdkTransport) (feature `ic-cdk`); tests plug in the
//! simulator. Every method returns a [`ClientError`] that tells apart a failed call
//! ([`TransportError`], e.g. an unknown outcome after a bounded-wait timeout), a Candid
//! encoding problem, and a typed refusal by the service ([`ServiceError`]).
//!
//! ```
//! use candid::{Nat, Principal};
//! use icjournal_client::{Client, ClientError, RecordIntentArgs, ServiceError};
//! use icjournal_client::transport::{CallMode, Transport, TransportError};
//! use icjournal_types::{JournalError, ReportedResult};
//!
//! // A transport that answers every call with a canned service reply (a real one calls the
//! // canister: `IcCdkTransport` from another canister, the simulator in tests).
//! struct Canned(Vec<u8>);
//! impl Transport for Canned {
//!     async fn call(&self, _: Principal, _: &str, _: CallMode, _: Vec<u8>)
//!         -> Result<Vec<u8>, TransportError> { Ok(self.0.clone()) }
//! }
//!
//! let service = Principal::from_slice(&[1]);
//! let reply: Result<u64, ServiceError> = Ok(7);
//! let client = Client::new(service, Canned(candid::encode_one(reply).unwrap()));
//! let id = futures::executor::block_on(client.record_intent(RecordIntentArgs {
//!     label: "payout".into(),
//!     payload: b"order-42".to_vec(),
//!     lock_key: Some("order-42".into()),
//!     idempotency_key: Some("order-42".into()),
//! }))
//! .unwrap();
//! assert_eq!(id, 7);
//!
//! // A refusal is a typed error, not a string.
//! let reply: Result<u64, ServiceError> = Err(JournalError::LockHeld {
//!     lock_key: "order-42".into(), entry_id: 7 }.into());
//! let client = Client::new(service, Canned(candid::encode_one(reply).unwrap()));
//! let err = futures::executor::block_on(client.record_intent(RecordIntentArgs {
//!     label: "payout".into(), payload: vec![], lock_key: Some("order-42".into()),
//!     idempotency_key: None,
//! })).unwrap_err();
//! assert!(matches!(err, ClientError::Service(ServiceError::Journal(JournalError::LockHeld { entry_id: 7, .. }))));
//! ```

pub mod transport;
pub mod wasm;

pub use icjournal_types::*;
pub use transport::{CallMode, Transport, TransportError};

use candid::utils::{ArgumentDecoder, ArgumentEncoder};
use candid::{CandidType, Deserialize, Principal};
use icrc_ledger_types::icrc1::account::Account;

/// Error of a client call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The call failed at the IC level (not sent, rejected, or unknown outcome).
    Transport(TransportError),
    /// The argument could not be encoded or the reply decoded (interface mismatch).
    Candid { method: String, message: String },
    /// The service refused the request with a typed error.
    Service(ServiceError),
}

impl ClientError {
    /// True when the service may have executed the call although no reply arrived.
    pub fn is_unknown_outcome(&self) -> bool {
        matches!(self, ClientError::Transport(t) if t.is_unknown_outcome())
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Transport(e) => write!(f, "{e}"),
            ClientError::Candid { method, message } => {
                write!(f, "candid error on {method}: {message}")
            }
            ClientError::Service(e) => write!(f, "service error: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<TransportError> for ClientError {
    fn from(e: TransportError) -> Self {
        ClientError::Transport(e)
    }
}

impl From<ServiceError> for ClientError {
    fn from(e: ServiceError) -> Self {
        ClientError::Service(e)
    }
}

/// Typed handle to one icjournal service canister.
#[derive(Clone, Debug)]
pub struct Client<T> {
    canister_id: Principal,
    transport: T,
}

impl<T: Transport> Client<T> {
    pub fn new(canister_id: Principal, transport: T) -> Self {
        Client {
            canister_id,
            transport,
        }
    }

    pub fn canister_id(&self) -> Principal {
        self.canister_id
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Raw typed call: encode `args`, call `method`, decode the reply tuple.
    pub async fn call<A, R>(&self, method: &str, mode: CallMode, args: A) -> Result<R, ClientError>
    where
        A: ArgumentEncoder,
        R: for<'de> ArgumentDecoder<'de>,
    {
        let candid_err = |e: candid::Error| ClientError::Candid {
            method: method.to_string(),
            message: e.to_string(),
        };
        let arg = candid::encode_args(args).map_err(candid_err)?;
        let reply = self
            .transport
            .call(self.canister_id, method, mode, arg)
            .await?;
        candid::decode_args(&reply).map_err(candid_err)
    }

    async fn one<A, R>(&self, method: &str, mode: CallMode, args: A) -> Result<R, ClientError>
    where
        A: ArgumentEncoder,
        R: CandidType + for<'de> Deserialize<'de>,
    {
        let (r,): (R,) = self.call(method, mode, args).await?;
        Ok(r)
    }

    async fn result<A, R>(&self, method: &str, mode: CallMode, args: A) -> Result<R, ClientError>
    where
        A: ArgumentEncoder,
        R: CandidType + for<'de> Deserialize<'de>,
    {
        let r: ServiceResult<R> = self.one(method, mode, args).await?;
        r.map_err(ClientError::Service)
    }

    // ---- generic journaling -------------------------------------------------------------

    /// Journal a caller-driven record; resolve it with [`Client::report_result`].
    pub async fn record_intent(&self, args: RecordIntentArgs) -> Result<EntryId, ClientError> {
        self.result("record_intent", CallMode::Update, (args,))
            .await
    }

    /// Report the result of a record or of a tracked transfer.
    pub async fn report_result(&self, args: ReportResultArgs) -> Result<Status, ClientError> {
        self.result("report_result", CallMode::Update, (args,))
            .await
    }

    /// One of the caller's entries (another caller's entry is `NotFound`).
    pub async fn get_entry(&self, id: EntryId) -> Result<Entry, ClientError> {
        self.result("get_entry", CallMode::Query, (id,)).await
    }

    /// The caller's entries, filtered by status and kind, keyset-paged.
    pub async fn list_entries(&self, args: ListArgs) -> Result<Page<EntrySummary>, ClientError> {
        self.result("list_entries", CallMode::Query, (args,)).await
    }

    /// The caller's entries that are not terminal yet.
    pub async fn list_unresolved(
        &self,
        page: PageRequest,
    ) -> Result<Page<EntrySummary>, ClientError> {
        self.result("list_unresolved", CallMode::Query, (page,))
            .await
    }

    /// The caller's failed entries.
    pub async fn list_failed(&self, page: PageRequest) -> Result<Page<EntrySummary>, ClientError> {
        self.result("list_failed", CallMode::Query, (page,)).await
    }

    // ---- transfers ------------------------------------------------------------------------

    /// Register a transfer the caller sends itself; send exactly the returned `op`.
    pub async fn track_transfer(
        &self,
        args: TrackTransferArgs,
    ) -> Result<TrackedTransfer, ClientError> {
        self.result("track_transfer", CallMode::Update, (args,))
            .await
    }

    /// Have the service execute a transfer (ICRC-2 from the caller's account, or ICRC-1 from
    /// the caller's escrow subaccount) and wait for the outcome.
    pub async fn execute_transfer(&self, req: TransferRequest) -> Result<FlowResult, ClientError> {
        self.result("execute_transfer", CallMode::Update, (req,))
            .await
    }

    /// Like `execute_transfer`, but returns the entry id at once; poll [`Client::get_entry`].
    pub async fn submit_transfer(&self, req: TransferRequest) -> Result<EntryId, ClientError> {
        self.result("submit_transfer", CallMode::Update, (req,))
            .await
    }

    /// Run a saga of executed transfers with compensations and wait for it to settle.
    pub async fn execute_saga(&self, req: SagaRequest) -> Result<FlowResult, ClientError> {
        self.result("execute_saga", CallMode::Update, (req,)).await
    }

    /// Like `execute_saga`, but returns the saga's entry id at once.
    pub async fn submit_saga(&self, req: SagaRequest) -> Result<EntryId, ClientError> {
        self.result("submit_saga", CallMode::Update, (req,)).await
    }

    /// The service account holding `owner`'s escrow (source of its ICRC-1 transfers).
    pub async fn escrow_account(&self, owner: Principal) -> Result<Account, ClientError> {
        self.one("escrow_account", CallMode::Query, (owner,)).await
    }

    /// Ledgers the service accepts.
    pub async fn ledgers(&self) -> Result<Vec<LedgerConfig>, ClientError> {
        self.one("ledgers", CallMode::Query, ()).await
    }

    /// Journal metrics (public; no cycles balance).
    pub async fn metrics(&self) -> Result<Metrics, ClientError> {
        self.one("metrics", CallMode::Query, ()).await
    }

    // ---- operators ------------------------------------------------------------------------

    /// Apply (or approve) a manual-queue verb; the reason is required and audited.
    pub async fn admin_act(&self, req: AdminRequest) -> Result<AdminResult, ClientError> {
        self.result("admin_act", CallMode::Update, (req,)).await
    }

    /// Any entry (operators).
    pub async fn admin_get_entry(&self, id: EntryId) -> Result<Entry, ClientError> {
        self.result("admin_get_entry", CallMode::Query, (id,)).await
    }

    /// Any entries by owner/status/kind/age (operators), e.g. the manual queue.
    pub async fn admin_list(&self, args: AdminListArgs) -> Result<Page<EntrySummary>, ClientError> {
        self.result("admin_list", CallMode::Query, (args,)).await
    }

    /// Audit trail from `start_seq` (operators).
    pub async fn admin_audit(&self, args: AuditArgs) -> Result<Vec<AuditRecord>, ClientError> {
        self.result("admin_audit", CallMode::Query, (args,)).await
    }

    pub async fn get_config(&self) -> Result<ConfigView, ClientError> {
        self.result("get_config", CallMode::Query, ()).await
    }

    pub async fn set_config(&self, args: SetConfigArgs) -> Result<(), ClientError> {
        self.result("set_config", CallMode::Update, (args,)).await
    }

    pub async fn pause_recovery(&self, reason: String) -> Result<(), ClientError> {
        self.result("pause_recovery", CallMode::Update, (reason,))
            .await
    }

    pub async fn resume_recovery(&self, reason: String) -> Result<(), ClientError> {
        self.result("resume_recovery", CallMode::Update, (reason,))
            .await
    }

    /// Controllers only: includes the cycles balance.
    pub async fn controller_view(&self) -> Result<ControllerView, ClientError> {
        self.result("controller_view", CallMode::Query, ()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icjournal_types::JournalError;
    use std::cell::RefCell;

    /// Records the last call and answers with a canned reply.
    struct Recorder {
        reply: Result<Vec<u8>, TransportError>,
        seen: RefCell<Vec<(String, CallMode, Vec<u8>)>>,
    }

    impl Transport for Recorder {
        async fn call(
            &self,
            _: Principal,
            method: &str,
            mode: CallMode,
            arg: Vec<u8>,
        ) -> Result<Vec<u8>, TransportError> {
            self.seen.borrow_mut().push((method.into(), mode, arg));
            self.reply.clone()
        }
    }

    fn client(reply: Result<Vec<u8>, TransportError>) -> Client<Recorder> {
        Client::new(
            Principal::from_slice(&[9]),
            Recorder {
                reply,
                seen: RefCell::new(vec![]),
            },
        )
    }

    #[test]
    fn encodes_args_and_decodes_typed_results() {
        let ok: ServiceResult<Status> = Ok(Status::Succeeded);
        let c = client(Ok(candid::encode_one(ok).unwrap()));
        let args = ReportResultArgs {
            entry_id: 3,
            result: icjournal_types::ReportedResult::Failed {
                message: "no".into(),
            },
        };
        let s = futures::executor::block_on(c.report_result(args.clone())).unwrap();
        assert_eq!(s, Status::Succeeded);
        let seen = c.transport().seen.borrow();
        assert_eq!(seen[0].0, "report_result");
        assert_eq!(seen[0].1, CallMode::Update);
        let (decoded,): (ReportResultArgs,) = candid::decode_args(&seen[0].2).unwrap();
        assert_eq!(decoded, args);
    }

    #[test]
    fn service_and_transport_errors_are_typed() {
        let err: ServiceResult<Entry> = Err(ServiceError::NotAuthorized {
            required: "operator".into(),
        });
        let c = client(Ok(candid::encode_one(err).unwrap()));
        let e = futures::executor::block_on(c.admin_get_entry(1)).unwrap_err();
        assert_eq!(
            e,
            ClientError::Service(ServiceError::NotAuthorized {
                required: "operator".into()
            })
        );

        let c = client(Err(TransportError::Rejected {
            code: 6,
            message: "timeout".into(),
        }));
        let e = futures::executor::block_on(c.get_entry(1)).unwrap_err();
        assert!(e.is_unknown_outcome());

        let c = client(Ok(candid::encode_one("not a result").unwrap()));
        let e = futures::executor::block_on(c.get_entry(1)).unwrap_err();
        assert!(matches!(e, ClientError::Candid { .. }), "{e:?}");

        let err: ServiceResult<EntryId> = Err(JournalError::QuotaExceeded {
            owner: Principal::anonymous(),
            limit: "x".into(),
            max: 1,
        }
        .into());
        let c = client(Ok(candid::encode_one(err).unwrap()));
        let e = futures::executor::block_on(c.submit_transfer(TransferRequest {
            transfer: icjournal_types::TransferSpec::Icrc1 {
                ledger: Principal::anonymous(),
                from_subaccount: None,
                to: Account {
                    owner: Principal::anonymous(),
                    subaccount: None,
                },
                amount: 1u64.into(),
                fee: None,
            },
            lock_key: None,
            idempotency_key: None,
        }))
        .unwrap_err();
        assert!(matches!(
            e,
            ClientError::Service(ServiceError::Journal(JournalError::QuotaExceeded { .. }))
        ));
    }
}
