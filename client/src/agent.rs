//! [`AgentTransport`]: the client over `ic-agent` (feature `agent`), for programs outside the
//! IC (the operator CLI, scripts, off-chain services).
//!
//! ```ignore
//! use icjournal_client::{agent::AgentTransport, Client};
//!
//! let agent = ic_agent::Agent::builder().with_url("https://icp-api.io").with_identity(id).build()?;
//! let journal = Client::new(service_id, AgentTransport::new(agent));
//! let m = journal.metrics().await?;
//! ```
//!
//! How failures map onto [`TransportError`], so that
//! [`ClientError::execution`](crate::ClientError::execution) answers the one question a caller
//! asks before repeating an update (may the service have acted on it?):
//! - a reject (certified, or refused before execution, e.g. by `canister_inspect_message`)
//!   keeps its IC reject code; the IC error code (`IC0406`, …) is appended to the message;
//! - an update that provably never reached the replica (no connection, signing failed, an
//!   HTTP 4xx refusal of the submission) is [`TransportError::NotSent`];
//! - an update whose fate the agent could not establish (the connection broke after the
//!   request was sent, an HTTP 5xx, polling timed out, a reply whose certificate did not
//!   verify) is reported as rejected with [`TransportError::SYS_UNKNOWN`]: it may have run;
//! - a query that got no usable answer is `NotSent` (a query changes nothing, so whether it
//!   reached the canister does not matter).

use crate::transport::{CallMode, Transport, TransportError};
use candid::Principal;
use ic_agent::agent::{CallResponse, RejectResponse};
use ic_agent::{Agent, AgentError};

/// [`Transport`] over an [`Agent`]. Queries are verified as the agent is configured to
/// (query signatures by default); updates are submitted, then polled until certified.
#[derive(Clone, Debug)]
pub struct AgentTransport {
    agent: Agent,
}

impl AgentTransport {
    /// The agent must be ready to use: for a local replica, `fetch_root_key` already called.
    pub fn new(agent: Agent) -> Self {
        AgentTransport { agent }
    }

    pub fn agent(&self) -> &Agent {
        &self.agent
    }
}

impl Transport for AgentTransport {
    async fn call(
        &self,
        canister: Principal,
        method: &str,
        mode: CallMode,
        arg: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        match mode {
            CallMode::Query => self
                .agent
                .query(&canister, method)
                .with_arg(arg)
                .call()
                .await
                .map_err(query_error),
            CallMode::Update => {
                // Submission and polling are told apart: an error while submitting may prove
                // the call was never accepted; an error while polling never does.
                let submitted = self
                    .agent
                    .update(&canister, method)
                    .with_arg(arg)
                    .call()
                    .await;
                match submitted {
                    Ok(CallResponse::Response((reply, _certificate))) => Ok(reply),
                    Ok(CallResponse::Poll(request_id)) => self
                        .agent
                        .wait(&request_id, canister)
                        .await
                        .map(|(reply, _certificate)| reply)
                        .map_err(polling_error),
                    Err(e) => Err(submission_error(e)),
                }
            }
        }
    }
}

fn rejected(r: RejectResponse) -> TransportError {
    let message = match r.error_code {
        Some(code) => format!("{} ({code})", r.reject_message),
        None => r.reject_message,
    };
    TransportError::Rejected {
        code: r.reject_code as u32,
        message,
    }
}

fn unknown(e: &AgentError) -> TransportError {
    TransportError::Rejected {
        code: TransportError::SYS_UNKNOWN,
        message: format!("no certified answer: {e}"),
    }
}

fn not_sent(e: &AgentError) -> TransportError {
    TransportError::NotSent {
        message: e.to_string(),
    }
}

fn query_error(e: AgentError) -> TransportError {
    match e {
        AgentError::CertifiedReject { reject, .. }
        | AgentError::UncertifiedReject { reject, .. } => rejected(reject),
        other => not_sent(&other),
    }
}

fn submission_error(e: AgentError) -> TransportError {
    match e {
        AgentError::CertifiedReject { reject, .. }
        | AgentError::UncertifiedReject { reject, .. } => rejected(reject),
        // The replica (or a boundary node) refused the request itself: bad signature, expiry,
        // rate limit, too large. It was not accepted for execution.
        AgentError::HttpError(ref p) if (400..500).contains(&p.status) => not_sent(&e),
        AgentError::TransportError(ic_agent::agent::agent_error::TransportError::Reqwest(
            ref r,
        )) if r.is_connect() || r.is_builder() => not_sent(&e),
        // Failures before anything was sent.
        AgentError::SigningError(_)
        | AgentError::CannotCalculateRequestId(_)
        | AgentError::InvalidReplicaUrl(_)
        | AgentError::UrlParseError(_)
        | AgentError::RouteProviderError(_) => not_sent(&e),
        // Anything else happened after the request may have been accepted.
        other => unknown(&other),
    }
}

fn polling_error(e: AgentError) -> TransportError {
    match e {
        AgentError::CertifiedReject { reject, .. } => rejected(reject),
        other => unknown(&other),
    }
}
