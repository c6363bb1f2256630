//! The server thread: owns the simulator, answers HTTP requests one at a time, and between
//! requests moves time and runs queued messages and due timers.

use crate::auth::{self, RequestError, Verified};
use crate::gateway;
use crate::keys::Keys;
use crate::tree::{cbor_self_describing, certify, leb128, LabeledTree};
use crate::{fmt_time, Modules, TimeMode};
use candid::Principal;
use ic_sim::{MessageId, RejectCode, RejectResponse, Simulator};
use ic_transport_types::{EnvelopeContent, NodeSignature, QueryResponse, ReplyResponse, RequestId};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest HTTP request body accepted. The IC's largest ingress message is 3.5 MiB on NNS
/// subnets and 2 MiB on application subnets (`MAX_INGRESS_BYTES_PER_MESSAGE_*` in dfinity/ic
/// `rs/limits/src/lib.rs`); the envelope adds little, so 4 MiB bounds memory per request.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Largest `arg` of an ingress call: `MAX_INGRESS_BYTES_PER_MESSAGE_APP_SUBNET` (2 MiB) of
/// dfinity/ic `rs/limits/src/lib.rs`.
pub const MAX_INGRESS_ARG_BYTES: usize = 2 * 1024 * 1024;
/// How long a completed call's status stays readable after its expiry (the IC keeps ingress
/// history for `MAX_INGRESS_TTL`, 5 minutes, `rs/limits/src/lib.rs`).
const HISTORY_NANOS: u64 = auth::MAX_INGRESS_TTL_NANOS;
/// Messages executed between two HTTP requests at most, so the server stays responsive while
/// canisters are busy (timers re-arming themselves never starve requests).
const STEPS_PER_ROUND: usize = 2_000;

pub type Command = Box<dyn FnOnce(&mut State) + Send>;

pub(crate) struct Ingress {
    sender: Principal,
    receiver: Principal,
    message: MessageId,
    expiry: u64,
    outcome: Option<Result<Vec<u8>, RejectResponse>>,
}

/// Everything the server thread owns.
pub struct State {
    pub sim: Simulator,
    pub(crate) keys: Keys,
    pub(crate) time_mode: TimeMode,
    pub(crate) names: BTreeMap<String, Principal>,
    pub(crate) modules: Modules,
    pub(crate) ingress: HashMap<[u8; 32], Ingress>,
    pub(crate) sync_call_timeout: Duration,
    pub(crate) port: u16,
}

/// A response before it is written to the socket.
pub(crate) struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(status: u16, msg: impl Into<String>) -> Resp {
        Resp {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: msg.into().into_bytes(),
        }
    }
    pub fn cbor(body: Vec<u8>) -> Resp {
        Resp {
            status: 200,
            headers: vec![("Content-Type".into(), "application/cbor".into())],
            body,
        }
    }
    pub fn json(status: u16, v: &serde_json::Value) -> Resp {
        Resp {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec_pretty(v).unwrap_or_default(),
        }
    }
    fn accepted() -> Resp {
        Resp {
            status: 202,
            headers: vec![],
            body: vec![],
        }
    }
    fn request_error(e: RequestError) -> Resp {
        Resp::text(400, e.to_string())
    }
}

/// An HTTP request read off the socket.
pub(crate) struct Req {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub fn wall_clock_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub(crate) fn run(
    mut state: State,
    server: Arc<tiny_http::Server>,
    commands: Receiver<Command>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        while let Ok(cmd) = commands.try_recv() {
            // A panicking control closure must not take the server down.
            let _ = catch_unwind(AssertUnwindSafe(|| cmd(&mut state)));
        }
        match server.recv_timeout(Duration::from_millis(10)) {
            Ok(Some(request)) => serve(&mut state, request),
            Ok(None) => {}
            Err(e) => {
                eprintln!("ic-sim-replica: accepting a request failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        state.progress(STEPS_PER_ROUND);
    }
}

/// How long a client may take to send a request body. Bodies are read off the server thread,
/// so a client that stops sending mid-body (tiny_http sets no socket timeouts) cannot stall the
/// replica; loopback clients send a few MiB in far less.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

fn serve(state: &mut State, request: tiny_http::Request) {
    let too_big = request.body_length().is_some_and(|n| n > MAX_BODY_BYTES);
    let (request, read) = if request.body_length() == Some(0) || too_big {
        (request, Ok(Vec::new()))
    } else {
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("ic-sim-replica body".into())
            .spawn(move || {
                let mut request = request;
                let mut body = Vec::new();
                let read = request
                    .as_reader()
                    .take(MAX_BODY_BYTES as u64 + 1)
                    .read_to_end(&mut body)
                    .map(|_| body);
                // The receiver is gone when the body came too late: dropping the request then
                // answers the client with an error.
                let _ = tx.send((request, read));
            });
        if let Err(e) = spawned {
            eprintln!("ic-sim-replica: cannot start a thread to read a request: {e}");
            return;
        }
        match rx.recv_timeout(BODY_TIMEOUT) {
            Ok(x) => x,
            Err(_) => return,
        }
    };
    let resp = match read {
        _ if too_big => Resp::text(
            413,
            format!("Request body exceeds the limit of {MAX_BODY_BYTES} bytes"),
        ),
        Ok(body) if body.len() > MAX_BODY_BYTES => Resp::text(
            413,
            format!("Request body exceeds the limit of {MAX_BODY_BYTES} bytes"),
        ),
        Err(e) => Resp::text(400, format!("Could not read the request body: {e}")),
        Ok(body) => {
            let url = request.url().to_string();
            let (path, query) = match url.split_once('?') {
                Some((p, q)) => (p.to_string(), Some(q.to_string())),
                None => (url.clone(), None),
            };
            let headers: Vec<(String, String)> = request
                .headers()
                .iter()
                .map(|h| (h.field.to_string(), h.value.to_string()))
                .collect();
            let host = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("host"))
                .map(|(_, v)| v.clone());
            let req = Req {
                method: request.method().as_str().to_ascii_uppercase(),
                path,
                query,
                host,
                headers,
                body,
            };
            match catch_unwind(AssertUnwindSafe(|| route(state, &req))) {
                Ok(r) => r,
                Err(p) => Resp::text(
                    500,
                    format!(
                        "Internal error of the simulator: {}",
                        crate::panic_message(p.as_ref())
                    ),
                ),
            }
        }
    };
    let mut response = tiny_http::Response::from_data(resp.body).with_status_code(resp.status);
    for (k, v) in resp.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            response.add_header(h);
        }
    }
    // The client may have gone away; nothing to do about it.
    let _ = request.respond(response);
}

fn route(state: &mut State, req: &Req) -> Resp {
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let m = req.method.as_str();
    match parts.as_slice() {
        ["api", "v2", "status"] if m == "GET" => state.status(),
        ["api", "v2" | "v3", "canister", id, "query"] if m == "POST" => {
            with_principal(id, |c| state.query(c, &req.body))
        }
        ["api", v @ ("v2" | "v3" | "v4"), "canister", id, "call"] if m == "POST" => {
            let sync = *v != "v2";
            with_principal(id, |c| state.call(c, &req.body, sync))
        }
        ["api", "v2" | "v3", "canister", id, "read_state"] if m == "POST" => {
            with_principal(id, |c| state.read_state(Effective::Canister(c), &req.body))
        }
        ["api", "v2" | "v3", "subnet", id, "read_state"] if m == "POST" => {
            with_principal(id, |s| state.read_state(Effective::Subnet(s), &req.body))
        }
        ["api", ..] => Resp::text(
            404,
            format!("No such endpoint: {} {}", req.method, req.path),
        ),
        _ => {
            if let Some(canister) = gateway::target_canister(req) {
                return match canister {
                    Ok(c) => gateway::serve(state, c, req),
                    Err(e) => Resp::text(400, e),
                };
            }
            match (m, parts.as_slice()) {
                ("GET", ["_", "topology"]) => state.topology(),
                ("GET", ["_", "time"]) => state.time_json(),
                ("POST", ["_", "time"]) => state.set_time(&req.body),
                ("GET", [""]) => state.index(),
                _ => Resp::text(
                    404,
                    format!(
                        "No such endpoint: {} {}. Canister pages are served at http://<canister-id>.localhost:{}/ or with ?canisterId=<canister-id>; see GET /_/topology",
                        req.method, req.path, state.port
                    ),
                ),
            }
        }
    }
}

fn with_principal(text: &str, f: impl FnOnce(Principal) -> Resp) -> Resp {
    match Principal::from_text(text) {
        Ok(p) => f(p),
        Err(e) => Resp::text(400, format!("Invalid principal in URL: {text}: {e}")),
    }
}

#[derive(Clone, Copy)]
enum Effective {
    Canister(Principal),
    Subnet(Principal),
}

#[derive(Serialize)]
struct StatusReply<'a> {
    impl_version: &'a str,
    #[serde(with = "serde_bytes")]
    root_key: &'a [u8],
    replica_health_status: &'a str,
    impl_hash: &'a str,
}

#[derive(Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum CallReply {
    Replied {
        #[serde(with = "serde_bytes")]
        certificate: Vec<u8>,
    },
    NonReplicatedRejection {
        reject_code: u64,
        reject_message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error_code: Option<String>,
    },
}

/// The v2 call endpoint's body for a rejection before execution (no `status` field).
#[derive(Serialize)]
struct V2Reject {
    reject_code: u64,
    reject_message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<String>,
}

#[derive(Serialize)]
struct ReadStateReply {
    #[serde(with = "serde_bytes")]
    certificate: Vec<u8>,
}

/// The IC's error code for a reject, where the simulator's reject says which one it is
/// (error codes of dfinity/ic `rs/types/error_types/src/lib.rs`: IC0301 canister not found,
/// IC0406 canister rejected the message, IC0503 canister called trap; a Wasm trap, IC0502 there,
/// is not told apart from it by the simulator's message).
fn error_code(r: &RejectResponse) -> Option<String> {
    match r.reject_code {
        RejectCode::DestinationInvalid if r.reject_message.contains("not found") => {
            Some("IC0301".into())
        }
        RejectCode::CanisterReject => Some("IC0406".into()),
        RejectCode::CanisterError if r.reject_message.contains("trap") => Some("IC0503".into()),
        _ => None,
    }
}

fn transport_code(code: RejectCode) -> ic_transport_types::RejectCode {
    use ic_transport_types::RejectCode as T;
    match code {
        RejectCode::SysFatal => T::SysFatal,
        RejectCode::SysTransient | RejectCode::SysUnknown => T::SysTransient,
        RejectCode::DestinationInvalid => T::DestinationInvalid,
        RejectCode::CanisterReject => T::CanisterReject,
        RejectCode::CanisterError => T::CanisterError,
    }
}

impl State {
    /// Move time (wall-clock mode) and run queued messages and due timers, then record the
    /// outcome of finished ingress messages and forget the expired ones.
    pub(crate) fn progress(&mut self, max_steps: usize) {
        let r = catch_unwind(AssertUnwindSafe(|| {
            self.follow_wall_clock();
            for _ in 0..max_steps {
                if !self.sim.step() {
                    break;
                }
            }
        }));
        if let Err(p) = r {
            eprintln!(
                "ic-sim-replica: the simulator panicked while running messages: {}",
                crate::panic_message(p.as_ref())
            );
        }
        self.collect_outcomes();
        let now = self.sim.time_nanos();
        self.ingress
            .retain(|_, i| i.outcome.is_none() || i.expiry.saturating_add(HISTORY_NANOS) >= now);
    }

    fn follow_wall_clock(&mut self) {
        if self.time_mode == TimeMode::WallClock {
            let wall = wall_clock_nanos();
            // Never backwards: if the simulator is ahead, wall time catches up.
            if wall > self.sim.time_nanos() {
                self.sim.set_time_nanos(wall);
            }
        }
    }

    fn collect_outcomes(&mut self) {
        for rec in self.ingress.values_mut() {
            if rec.outcome.is_none() {
                rec.outcome = self.sim.call_result(rec.message);
            }
        }
    }

    fn status(&self) -> Resp {
        Resp::cbor(cbor_self_describing(&StatusReply {
            impl_version: concat!("ic-sim-replica ", env!("CARGO_PKG_VERSION")),
            root_key: self.keys.root_key_der(),
            replica_health_status: "healthy",
            impl_hash: "",
        }))
    }

    fn verify(&self, body: &[u8]) -> Result<Verified, RequestError> {
        auth::verify(body, self.sim.time_nanos())
    }

    fn query(&mut self, effective: Principal, body: &[u8]) -> Resp {
        let v = match self.verify(body) {
            Ok(v) => v,
            Err(e) => return Resp::request_error(e),
        };
        let EnvelopeContent::Query {
            canister_id,
            method_name,
            arg,
            sender,
            ..
        } = v.content.clone()
        else {
            return Resp::request_error(RequestError::WrongRequestType { expected: "query" });
        };
        if canister_id != effective && canister_id != Principal::management_canister() {
            return Resp::request_error(RequestError::EffectiveCanisterMismatch {
                url: effective,
                content: canister_id,
            });
        }
        let result = self.sim.query_call(canister_id, sender, &method_name, arg);
        let mut response = match result {
            Ok(arg) => QueryResponse::Replied {
                reply: ReplyResponse { arg },
                signatures: vec![],
            },
            Err(r) => QueryResponse::Rejected {
                reject: ic_transport_types::RejectResponse {
                    reject_code: transport_code(r.reject_code),
                    error_code: error_code(&r),
                    reject_message: r.reject_message,
                },
                signatures: vec![],
            },
        };
        // The node signs with its own clock, not with the state's time.
        let timestamp = wall_clock_nanos().max(self.sim.time_nanos());
        let signable = response.signable(RequestId::new(&v.request_id), timestamp);
        let sig = NodeSignature {
            timestamp,
            signature: self.keys.node_sign(&signable),
            identity: self.keys.node_id(),
        };
        match &mut response {
            QueryResponse::Replied { signatures, .. }
            | QueryResponse::Rejected { signatures, .. } => signatures.push(sig),
        }
        Resp::cbor(cbor_self_describing(&response))
    }

    fn call(&mut self, effective: Principal, body: &[u8], sync: bool) -> Resp {
        let v = match self.verify(body) {
            Ok(v) => v,
            Err(e) => return Resp::request_error(e),
        };
        let EnvelopeContent::Call {
            canister_id,
            method_name,
            arg,
            sender,
            ingress_expiry,
            ..
        } = v.content.clone()
        else {
            return Resp::request_error(RequestError::WrongRequestType { expected: "call" });
        };
        if canister_id != effective && canister_id != Principal::management_canister() {
            return Resp::request_error(RequestError::EffectiveCanisterMismatch {
                url: effective,
                content: canister_id,
            });
        }
        if arg.len() > MAX_INGRESS_ARG_BYTES {
            return Resp::text(
                413,
                format!(
                    "Request {} is too large: the argument has {} bytes, at most {MAX_INGRESS_ARG_BYTES} are allowed",
                    hex::encode(v.request_id),
                    arg.len()
                ),
            );
        }
        let rid = v.request_id;
        if !self.ingress.contains_key(&rid) {
            let non_replicated = |code: u64, message: String, error: Option<String>| {
                if sync {
                    Resp::cbor(cbor_self_describing(&CallReply::NonReplicatedRejection {
                        reject_code: code,
                        reject_message: message,
                        error_code: error,
                    }))
                } else {
                    Resp::cbor(cbor_self_describing(&V2Reject {
                        reject_code: code,
                        reject_message: message,
                        error_code: error,
                    }))
                }
            };
            if canister_id != Principal::management_canister()
                && !self.sim.canister_exists(canister_id)
            {
                return non_replicated(
                    RejectCode::DestinationInvalid as u64,
                    format!("Canister {canister_id} not found"),
                    Some("IC0301".into()),
                );
            }
            let message = self.sim.submit_call(canister_id, sender, &method_name, arg);
            // Only canister_inspect_message runs inside submit_call: a result already here is
            // its refusal, which the IC reports without certifying it.
            if let Some(Err(r)) = self.sim.call_result(message) {
                let code = error_code(&r);
                return non_replicated(r.reject_code as u64, r.reject_message, code);
            }
            self.ingress.insert(
                rid,
                Ingress {
                    sender,
                    receiver: canister_id,
                    message,
                    expiry: ingress_expiry,
                    outcome: None,
                },
            );
        }
        if !sync {
            return Resp::accepted();
        }
        let deadline = Instant::now() + self.sync_call_timeout;
        loop {
            self.collect_outcomes();
            if self.ingress.get(&rid).is_some_and(|i| i.outcome.is_some()) {
                break;
            }
            let before = self.sim.time_nanos();
            let stepped = catch_unwind(AssertUnwindSafe(|| {
                self.follow_wall_clock();
                self.sim.step()
            }))
            .unwrap_or(false);
            if Instant::now() >= deadline {
                return Resp::accepted();
            }
            if !stepped {
                // Idle: only time can unblock the call (a timer, a bounded-wait timeout).
                if self.time_mode == TimeMode::Manual {
                    return Resp::accepted();
                }
                if self.sim.time_nanos() == before {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        let paths = vec![vec![b"request_status".to_vec(), rid.to_vec()]];
        let certificate = certify(&self.keys, &self.state_tree(), &with_time(paths));
        Resp::cbor(cbor_self_describing(&CallReply::Replied { certificate }))
    }

    fn read_state(&mut self, effective: Effective, body: &[u8]) -> Resp {
        let v = match self.verify(body) {
            Ok(v) => v,
            Err(e) => return Resp::request_error(e),
        };
        let EnvelopeContent::ReadState { paths, sender, .. } = &v.content else {
            return Resp::request_error(RequestError::WrongRequestType {
                expected: "read_state",
            });
        };
        let subnet = self.keys.subnet_id();
        if let Effective::Subnet(s) = effective {
            if s != subnet {
                return Resp::text(
                    404,
                    format!("Subnet {s} not found; this replica serves subnet {subnet}"),
                );
            }
        }
        let paths: Vec<Vec<Vec<u8>>> = paths
            .iter()
            .map(|p| p.iter().map(|l| l.as_bytes().to_vec()).collect())
            .collect();
        if let Err(r) = self.check_paths(&paths, *sender, &v, effective) {
            return r;
        }
        let certificate = certify(&self.keys, &self.state_tree(), &with_time(paths));
        Resp::cbor(cbor_self_describing(&ReadStateReply { certificate }))
    }

    /// Which paths a sender may read (IC interface specification, "Request: Read state";
    /// statuses and messages as `verify_paths` in dfinity/ic
    /// `rs/http_endpoints/public/src/read_state/canister.rs`).
    fn check_paths(
        &self,
        paths: &[Vec<Vec<u8>>],
        sender: Principal,
        v: &Verified,
        effective: Effective,
    ) -> Result<(), Resp> {
        let invalid = || Resp::text(404, "Invalid path requested.");
        let principal = |b: &[u8]| {
            Principal::try_from_slice(b)
                .map_err(|e| Resp::text(400, format!("Could not parse principal: {e}.")))
        };
        let same_as_effective = |c: Principal| match effective {
            Effective::Canister(e) if e == c => Ok(()),
            Effective::Canister(e) => Err(Resp::text(
                400,
                format!(
                    "Effective principal id in URL {e} does not match requested principal id: {c}."
                ),
            )),
            Effective::Subnet(_) => Err(invalid()),
        };
        let mut request_id: Option<&[u8]> = None;
        for path in paths {
            let p: Vec<&[u8]> = path.iter().map(Vec::as_slice).collect();
            match p.as_slice() {
                [b"time"] => {}
                [b"canister", c, b"controllers" | b"module_hash"] => {
                    same_as_effective(principal(c)?)?;
                }
                [b"canister", c, b"metadata", name] => {
                    let name = std::str::from_utf8(name).map_err(|e| {
                        Resp::text(
                            400,
                            format!("Could not parse the custom section name: {e}."),
                        )
                    })?;
                    let c = principal(c)?;
                    same_as_effective(c)?;
                    let private = self
                        .sim
                        .module_hash(c)
                        .and_then(|h| self.modules.section(&h, name))
                        .is_some_and(|s| !s.public);
                    let controller = self
                        .sim
                        .controllers(c)
                        .is_some_and(|cs| cs.contains(&sender));
                    if private && !controller {
                        return Err(Resp::text(
                            403,
                            format!("Custom section {name:.100} can only be requested by the controllers of the canister."),
                        ));
                    }
                }
                [b"api_boundary_nodes"]
                | [b"api_boundary_nodes", _]
                | [b"api_boundary_nodes", _, b"domain" | b"ipv4_address" | b"ipv6_address"] => {}
                [b"subnet"]
                | [b"subnet", _]
                | [b"subnet", _, b"public_key" | b"canister_ranges" | b"node"]
                | [b"subnet", _, b"node", _]
                | [b"subnet", _, b"node", _, b"public_key"] => {}
                // The sharded form of the ranges (absent here: agents fall back to
                // /subnet/<id>/canister_ranges, which this tree has).
                [b"canister_ranges"] | [b"canister_ranges", _] | [b"canister_ranges", _, _] => {}
                [b"request_status", rid]
                | [b"request_status", rid, b"status" | b"reply" | b"reject_code" | b"reject_message" | b"error_code"] =>
                {
                    let rid: [u8; 32] = (*rid)
                        .try_into()
                        .map_err(|_| Resp::text(400, "Request IDs must be 32 bytes in length."))?;
                    if request_id.is_some_and(|r| r != rid) {
                        return Err(Resp::text(
                            400,
                            "Can only request a single request ID in request_status paths.",
                        ));
                    }
                    request_id = Some(path[1].as_slice());
                    if let Some(rec) = self.ingress.get(&rid) {
                        if rec.sender != sender {
                            return Err(Resp::text(
                                403,
                                "Request IDs must be for requests signed by the caller.",
                            ));
                        }
                        if !v.allows(&rec.receiver) {
                            return Err(Resp::text(
                                403,
                                "Request IDs must be for requests to canisters belonging to sender delegation targets.",
                            ));
                        }
                    }
                }
                _ => return Err(invalid()),
            }
        }
        Ok(())
    }

    /// The whole state tree as of now.
    pub(crate) fn state_tree(&self) -> LabeledTree {
        let mut t = LabeledTree::subtree();
        let now = self.sim.time_nanos();
        t.insert(&[b"time"], LabeledTree::Leaf(leb128(now)));
        let subnet = self.keys.subnet_id();
        let sid = subnet.as_slice();
        t.insert(
            &[b"subnet", sid, b"public_key"],
            LabeledTree::Leaf(self.keys.root_key_der().to_vec()),
        );
        t.insert(
            &[b"subnet", sid, b"canister_ranges"],
            LabeledTree::Leaf(cbor_self_describing(&crate::canister_ranges())),
        );
        let node = self.keys.node_id();
        t.insert(
            &[b"subnet", sid, b"node", node.as_slice(), b"public_key"],
            LabeledTree::Leaf(self.keys.node_key_der().to_vec()),
        );
        for c in self.sim.canister_ids() {
            let cid = c.as_slice();
            if let Some(controllers) = self.sim.controllers(c) {
                t.insert(
                    &[b"canister", cid, b"controllers"],
                    LabeledTree::Leaf(cbor_self_describing(&controllers)),
                );
            }
            if let Some(hash) = self.sim.module_hash(c) {
                t.insert(
                    &[b"canister", cid, b"module_hash"],
                    LabeledTree::Leaf(hash.to_vec()),
                );
                for (name, section) in self.modules.sections(&hash) {
                    t.insert(
                        &[b"canister", cid, b"metadata", name.as_bytes()],
                        LabeledTree::Leaf(section.content.clone()),
                    );
                }
            }
        }
        for (rid, rec) in &self.ingress {
            let base: [&[u8]; 2] = [b"request_status", rid];
            let put = |t: &mut LabeledTree, leaf: &[u8], v: Vec<u8>| {
                t.insert(&[base[0], base[1], leaf], LabeledTree::Leaf(v));
            };
            match &rec.outcome {
                None => put(&mut t, b"status", b"processing".to_vec()),
                Some(Ok(reply)) => {
                    put(&mut t, b"status", b"replied".to_vec());
                    put(&mut t, b"reply", reply.clone());
                }
                Some(Err(r)) => {
                    put(&mut t, b"status", b"rejected".to_vec());
                    put(
                        &mut t,
                        b"reject_code",
                        leb128(transport_code(r.reject_code) as u64),
                    );
                    put(
                        &mut t,
                        b"reject_message",
                        r.reject_message.clone().into_bytes(),
                    );
                    if let Some(code) = error_code(r) {
                        put(&mut t, b"error_code", code.into_bytes());
                    }
                }
            }
        }
        t
    }

    fn topology(&self) -> Resp {
        let canisters: serde_json::Map<String, serde_json::Value> = self
            .names
            .iter()
            .map(|(n, c)| (n.clone(), serde_json::Value::String(c.to_text())))
            .collect();
        let unnamed: Vec<String> = self
            .sim
            .canister_ids()
            .into_iter()
            .filter(|c| !self.names.values().any(|n| n == c))
            .map(|c| c.to_text())
            .collect();
        Resp::json(
            200,
            &serde_json::json!({
                "url": format!("http://127.0.0.1:{}", self.port),
                "subnet_id": self.keys.subnet_id().to_text(),
                "node_id": self.keys.node_id().to_text(),
                "root_key": hex::encode(self.keys.root_key_der()),
                "time_mode": match self.time_mode { TimeMode::WallClock => "wall_clock", TimeMode::Manual => "manual" },
                "time_nanos": self.sim.time_nanos(),
                "canisters": canisters,
                "unnamed_canisters": unnamed,
            }),
        )
    }

    fn time_json(&self) -> Resp {
        let t = self.sim.time_nanos();
        Resp::json(
            200,
            &serde_json::json!({ "time_nanos": t, "time": fmt_time(t) }),
        )
    }

    /// `POST /_/time` with `{"advance_nanos": n}`, `{"advance_secs": n}` or `{"set_nanos": n}`.
    fn set_time(&mut self, body: &[u8]) -> Resp {
        if self.time_mode != TimeMode::Manual {
            return Resp::text(
                409,
                "Time follows the wall clock; start the replica in manual-time mode to move it.",
            );
        }
        let v: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Resp::text(400, format!("Expected a JSON object: {e}")),
        };
        let now = self.sim.time_nanos();
        let num = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
        let target = match (num("advance_nanos"), num("advance_secs"), num("set_nanos")) {
            (Some(n), None, None) => now.saturating_add(n),
            (None, Some(s), None) => now.saturating_add(s.saturating_mul(1_000_000_000)),
            (None, None, Some(t)) => t,
            _ => {
                return Resp::text(
                    400,
                    "Expected exactly one of \"advance_nanos\", \"advance_secs\", \"set_nanos\" (unsigned integers)",
                )
            }
        };
        if target < now {
            return Resp::text(
                400,
                format!("Time never goes backwards: {target} < current time {now}"),
            );
        }
        self.sim.set_time_nanos(target);
        self.progress(STEPS_PER_ROUND);
        self.time_json()
    }

    fn index(&self) -> Resp {
        let mut s = format!(
            "ic-sim local replica on http://127.0.0.1:{port}\n\nIC HTTP interface: /api/v2/status, /api/v2|v3/canister/<id>/query, /api/v2|v3|v4/canister/<id>/call, /api/v2|v3/canister/<id>/read_state, /api/v2|v3/subnet/<id>/read_state\nControl: GET /_/topology, GET /_/time, POST /_/time\n\nCanister pages:\n",
            port = self.port
        );
        for (n, c) in &self.names {
            s.push_str(&format!("  {n}: http://{c}.localhost:{}/\n", self.port));
        }
        Resp::text(200, s)
    }
}

fn with_time(mut paths: Vec<Vec<Vec<u8>>>) -> Vec<Vec<Vec<u8>>> {
    paths.push(vec![b"time".to_vec()]);
    paths
}
