//! The HTTP gateway: a browser request becomes the canister's `http_request` query (and
//! `http_request_update` when the canister asks to upgrade), the canister's answer becomes the
//! HTTP response. Canisters are addressed as `http://<canister-id>.localhost:<port>/…` or with
//! `?canisterId=<canister-id>` (the forms PocketIC's and dfx's gateways accept).
//!
//! Responses are not checked against the canister's certification (the gateway runs next to
//! the state it would verify), and streaming callbacks are not followed.

use crate::server::{Req, Resp, State};
use candid::{CandidType, Deserialize, Principal};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

#[derive(CandidType)]
struct HttpRequest<'a> {
    method: &'a str,
    url: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a serde_bytes::Bytes,
    certificate_version: Option<u16>,
}

#[derive(CandidType)]
struct HttpUpdateRequest<'a> {
    method: &'a str,
    url: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a serde_bytes::Bytes,
}

#[derive(CandidType, Deserialize)]
struct HttpResponse {
    status_code: u16,
    headers: Vec<(String, String)>,
    body: serde_bytes::ByteBuf,
    upgrade: Option<bool>,
    streaming_strategy: Option<candid::Reserved>,
}

/// How long an upgraded (`http_request_update`) request may run.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(30);

/// The canister a browser request addresses, if any: `<id>.localhost` (also `<id>.raw.localhost`)
/// in the Host header, else a `canisterId` query parameter.
pub(crate) fn target_canister(req: &Req) -> Option<Result<Principal, String>> {
    if let Some(host) = &req.host {
        let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        let name = name.to_ascii_lowercase();
        if let Some(prefix) = name.strip_suffix(".localhost") {
            let id = prefix.strip_suffix(".raw").unwrap_or(prefix);
            return Some(
                Principal::from_text(id)
                    .map_err(|e| format!("Host {host}: not a canister id: {e}")),
            );
        }
    }
    let query = req.query.as_deref()?;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "canisterId").then(|| {
            Principal::from_text(v).map_err(|e| format!("canisterId={v}: not a canister id: {e}"))
        })
    })
}

pub(crate) fn serve(state: &mut State, canister: Principal, req: &Req) -> Resp {
    if !state.sim.canister_exists(canister) {
        return Resp::text(404, format!("Canister {canister} not found"));
    }
    let url = match &req.query {
        Some(q) => format!("{}?{q}", req.path),
        None => req.path.clone(),
    };
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let arg = match candid::encode_one(HttpRequest {
        method: &req.method,
        url: &url,
        headers: headers.clone(),
        body: serde_bytes::Bytes::new(&req.body),
        certificate_version: Some(2),
    }) {
        Ok(a) => a,
        Err(e) => return Resp::text(500, format!("Could not encode the request: {e}")),
    };
    let reply = match state
        .sim
        .query_call(canister, Principal::anonymous(), "http_request", arg)
    {
        Ok(r) => r,
        Err(r) => {
            return Resp::text(
                502,
                format!("Canister {canister} could not answer http_request: {r}"),
            )
        }
    };
    let mut response = match decode(&reply) {
        Ok(r) => r,
        Err(e) => return Resp::text(502, e),
    };
    if response.upgrade == Some(true) {
        let arg = match candid::encode_one(HttpUpdateRequest {
            method: &req.method,
            url: &url,
            headers,
            body: serde_bytes::Bytes::new(&req.body),
        }) {
            Ok(a) => a,
            Err(e) => return Resp::text(500, format!("Could not encode the request: {e}")),
        };
        let id =
            state
                .sim
                .submit_call(canister, Principal::anonymous(), "http_request_update", arg);
        let deadline = Instant::now() + UPDATE_TIMEOUT;
        let outcome = loop {
            if let Some(r) = state.sim.call_result(id) {
                break r;
            }
            let stepped = catch_unwind(AssertUnwindSafe(|| state.sim.step())).unwrap_or(false);
            if !stepped || Instant::now() >= deadline {
                return Resp::text(
                    504,
                    format!("Canister {canister} did not answer http_request_update in time"),
                );
            }
        };
        response = match outcome {
            Ok(reply) => match decode(&reply) {
                Ok(r) => r,
                Err(e) => return Resp::text(502, e),
            },
            Err(r) => {
                return Resp::text(
                    502,
                    format!("Canister {canister} could not answer http_request_update: {r}"),
                )
            }
        };
    }
    let mut headers: Vec<(String, String)> = response
        .headers
        .into_iter()
        // The server frames the body itself.
        .filter(|(k, _)| {
            !["content-length", "transfer-encoding", "connection"]
                .iter()
                .any(|h| k.eq_ignore_ascii_case(h))
        })
        .collect();
    if response.streaming_strategy.is_some() {
        headers.push((
            "X-Ic-Sim-Warning".into(),
            "streaming strategy not followed: body is the first chunk only".into(),
        ));
    }
    Resp {
        status: response.status_code,
        headers,
        body: response.body.into_vec(),
    }
}

fn decode(reply: &[u8]) -> Result<HttpResponse, String> {
    candid::decode_one(reply)
        .map_err(|e| format!("The canister's HttpResponse does not decode: {e}"))
}
