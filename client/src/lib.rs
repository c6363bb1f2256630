//! Typed client for the icjournal service canister.
//!
//! The client is generic over a [`Transport`]: from another canister use
//! [`IcCdkTransport`](transport::IcCdkTransport) (feature `ic-cdk`), from outside the IC
//! `agent::AgentTransport` (feature `agent`, on ic-agent, so canisters using the client never
//! pull ic-agent in); tests plug in the simulator. Every method returns a [`ClientError`] that
//! tells apart a failed call
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

#[cfg(feature = "agent")]
pub mod agent;
pub mod helpers;
pub mod transport;

pub use helpers::{block_index, icrc2_approve_args, report_for_icrc1, report_for_icrc2};
pub use icjournal_types::*;
pub use transport::{CallMode, Transport, TransportError};

use candid::utils::{ArgumentDecoder, ArgumentEncoder};
use candid::{CandidType, Deserialize, Principal};
use icrc_ledger_types::icrc1::account::Account;

/// Error of a client call. `CandidType`, so a canister can return it from its own endpoints.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The call to `method` failed at the IC level (not sent or rejected). Whether the service
    /// acted on it depends on the reject code and the method: see `execution()`.
    Transport {
        method: String,
        error: TransportError,
    },
    /// The argument could not be encoded or the reply decoded (interface mismatch).
    Candid { method: String, message: String },
    /// The service refused the request with a typed error (it changed nothing).
    Service(ServiceError),
}

/// What a failed call proves about whether the service acted on it.
#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Execution {
    /// The service did not act on the call: safe to send it again (or something else).
    NotExecuted,
    /// The service may have acted on it (e.g. journaled and even sent a transfer). Find out
    /// before doing anything else: retry with the same idempotency key (the service returns
    /// the first entry), or `find_entry` by that key or the lock key.
    Unknown,
}

/// Service methods whose work spans several messages: a trap after the first one may leave
/// earlier messages' effects committed (an entry journaled, a transfer sent).
pub const MULTI_MESSAGE_METHODS: &[&str] = &["execute_transfer", "execute_saga", "admin_act"];

impl ClientError {
    /// What this failure proves about execution, by IC reject code (interface spec, "Reject
    /// codes") and the method called:
    /// - not sent, `SYS_FATAL` (1), `SYS_TRANSIENT` (2), `DESTINATION_INVALID` (3): the call
    ///   never reached the service's code (ic-cdk calls these clean rejects) → not executed;
    /// - `CANISTER_REJECT` (4): the service's code rejected it; icjournal rejects only in
    ///   guards, before anything is changed → not executed;
    /// - `CANISTER_ERROR` (5): the service trapped, or could not run (stopped, out of cycles).
    ///   A trap rolls back its own message only: for a method that spans several messages it
    ///   may come after an entry was journaled and a transfer sent (e.g. the service was
    ///   upgraded while the transfer was in flight) → unknown; for a one-message method → not
    ///   executed;
    /// - `SYS_UNKNOWN` (6) (a bounded-wait call timed out) and codes this build does not know →
    ///   unknown;
    /// - an undecodable reply → unknown (the service replied: it ran); a typed service error
    ///   → not executed.
    pub fn execution(&self) -> Execution {
        match self {
            ClientError::Service(_) => Execution::NotExecuted,
            ClientError::Candid { .. } => Execution::Unknown,
            ClientError::Transport { method, error } => match error {
                TransportError::NotSent { .. } => Execution::NotExecuted,
                TransportError::Rejected { code, .. } => match *code {
                    1..=4 => Execution::NotExecuted,
                    5 if MULTI_MESSAGE_METHODS.contains(&method.as_str()) => Execution::Unknown,
                    5 => Execution::NotExecuted,
                    _ => Execution::Unknown,
                },
            },
        }
    }

    /// True when the service may have executed the call although no reply arrived.
    pub fn is_unknown_outcome(&self) -> bool {
        self.execution() == Execution::Unknown
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Transport { method, error } => write!(f, "{method}: {error}"),
            ClientError::Candid { method, message } => {
                write!(f, "candid error on {method}: {message}")
            }
            ClientError::Service(e) => write!(f, "service error: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

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
    /// Cycles attached to every call that creates an entry (0: none).
    cycles: u128,
}

impl<T: Transport> Client<T> {
    pub fn new(canister_id: Principal, transport: T) -> Self {
        Client {
            canister_id,
            transport,
            cycles: 0,
        }
    }

    /// Attach `cycles` to every call that creates an entry, to pay the service's fees (see
    /// `ServiceConfig::fees`; `ledgers()` and `get_config` tell them). What the service does
    /// not accept is refunded by the IC, so attaching the largest fee is enough.
    pub fn with_cycles(mut self, cycles: u128) -> Self {
        self.cycles = cycles;
        self
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
        self.call_paying(method, mode, args, 0).await
    }

    /// `call` with `cycles` attached.
    pub async fn call_paying<A, R>(
        &self,
        method: &str,
        mode: CallMode,
        args: A,
        cycles: u128,
    ) -> Result<R, ClientError>
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
            .call_with_cycles(self.canister_id, method, mode, arg, cycles)
            .await
            .map_err(|error| ClientError::Transport {
                method: method.to_string(),
                error,
            })?;
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
        let (r,): (ServiceResult<R>,) = self.call(method, mode, args).await?;
        r.map_err(ClientError::Service)
    }

    /// A call that creates an entry: carries the configured cycles for the fee.
    async fn creating<A, R>(&self, method: &str, args: A) -> Result<R, ClientError>
    where
        A: ArgumentEncoder,
        R: CandidType + for<'de> Deserialize<'de>,
    {
        let (r,): (ServiceResult<R>,) = self
            .call_paying(method, CallMode::Update, args, self.cycles)
            .await?;
        r.map_err(ClientError::Service)
    }

    // ---- generic journaling -------------------------------------------------------------

    /// Journal a caller-driven record; resolve it with [`Client::report_result`].
    pub async fn record_intent(&self, args: RecordIntentArgs) -> Result<EntryId, ClientError> {
        self.creating("record_intent", (args,)).await
    }

    /// Report the result of a record or of a tracked transfer.
    pub async fn report_result(&self, args: ReportResultArgs) -> Result<Status, ClientError> {
        self.result("report_result", CallMode::Update, (args,))
            .await
    }

    /// The caller's entry with this key: created with that idempotency key, or the latest that
    /// took that lock key (also once final). After a lost reply, this finds the entry.
    pub async fn find_entry(&self, key: EntryKey) -> Result<Entry, ClientError> {
        self.result("find_entry", CallMode::Query, (key,)).await
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
        self.creating("track_transfer", (args,)).await
    }

    /// Have the service execute a transfer (ICRC-2 from the caller's account, or ICRC-1 from
    /// the caller's escrow subaccount) and wait for the outcome.
    pub async fn execute_transfer(&self, req: TransferRequest) -> Result<FlowResult, ClientError> {
        self.creating("execute_transfer", (req,)).await
    }

    /// Like `execute_transfer`, but returns the entry id at once; poll [`Client::get_entry`].
    pub async fn submit_transfer(&self, req: TransferRequest) -> Result<EntryId, ClientError> {
        self.creating("submit_transfer", (req,)).await
    }

    /// Run a saga of executed transfers with compensations and wait for it to settle.
    pub async fn execute_saga(&self, req: SagaRequest) -> Result<FlowResult, ClientError> {
        self.creating("execute_saga", (req,)).await
    }

    /// Like `execute_saga`, but returns the saga's entry id at once.
    pub async fn submit_saga(&self, req: SagaRequest) -> Result<EntryId, ClientError> {
        self.creating("submit_saga", (req,)).await
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
        assert!(matches!(e, ClientError::Transport { ref method, .. } if method == "get_entry"));

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

    /// Every reject code, for a one-message method and for one whose work spans messages.
    #[test]
    fn should_classify_every_reject_code_by_what_it_proves_about_execution() {
        let err = |method: &str, code| ClientError::Transport {
            method: method.into(),
            error: TransportError::Rejected {
                code,
                message: "m".into(),
            },
        };
        use Execution::*;
        for (code, one_message, multi_message) in [
            (1, NotExecuted, NotExecuted),
            (2, NotExecuted, NotExecuted),
            (3, NotExecuted, NotExecuted),
            (4, NotExecuted, NotExecuted),
            // The service trapped: after a transfer was sent, for execute_transfer.
            (5, NotExecuted, Unknown),
            (6, Unknown, Unknown),
            (7, Unknown, Unknown),
        ] {
            assert_eq!(
                err("record_intent", code).execution(),
                one_message,
                "code {code}"
            );
            for m in MULTI_MESSAGE_METHODS {
                assert_eq!(err(m, code).execution(), multi_message, "{m} code {code}");
            }
        }
        let not_sent = ClientError::Transport {
            method: "execute_transfer".into(),
            error: TransportError::NotSent {
                message: "no cycles".into(),
            },
        };
        assert_eq!(not_sent.execution(), NotExecuted);
        assert_eq!(
            ClientError::Service(ServiceError::NotAuthorized {
                required: "x".into()
            })
            .execution(),
            NotExecuted
        );
        assert_eq!(
            ClientError::Candid {
                method: "execute_transfer".into(),
                message: "bad reply".into()
            }
            .execution(),
            Unknown
        );
    }

    /// A canister can return the client's error from its own endpoints.
    #[test]
    fn should_encode_client_errors_as_candid() {
        let e = ClientError::Transport {
            method: "execute_transfer".into(),
            error: TransportError::Rejected {
                code: 5,
                message: "upgraded".into(),
            },
        };
        let bytes = candid::encode_one(&e).unwrap();
        assert_eq!(candid::decode_one::<ClientError>(&bytes).unwrap(), e);
    }
}
