//! `ic-sim-replica`: a local replica. It serves an [`ic_sim::Simulator`] over the Internet
//! Computer's HTTP interface on a loopback port, so that ic-agent, agent-js, dfx and icp-cli
//! can talk to canisters as they would to a local replica (fetching the root key), and browsers
//! can load canisters' `http_request` pages through its HTTP gateway.
//!
//! # Endpoints
//!
//! IC HTTP interface (CBOR, as in the IC interface specification):
//! - `GET  /api/v2/status`: `root_key` (DER), `impl_version`, `replica_health_status`.
//! - `POST /api/v2|v3/canister/<id>/query`: query calls, with a node signature (ed25519).
//! - `POST /api/v2/canister/<id>/call`: asynchronous call, 202 Accepted.
//! - `POST /api/v3|v4/canister/<id>/call`: synchronous call: the certificate of the call's
//!   status once it completes, 202 if it does not finish within the sync-call timeout.
//! - `POST /api/v2|v3/canister/<id>/read_state`, `POST /api/v2|v3/subnet/<id>/read_state`:
//!   certificates for `time`, `request_status/<id>/…`, `canister/<id>/module_hash|controllers|
//!   metadata/<name>`, `subnet/<id>/public_key|canister_ranges|node/<id>/public_key`.
//!
//! HTTP gateway: `http://<canister-id>.localhost:<port>/<path>` or
//! `http://127.0.0.1:<port>/<path>?canisterId=<canister-id>` → the canister's `http_request`.
//!
//! Control (JSON):
//! - `GET  /_/topology`: URL, subnet id, root key (hex), time mode, canister ids by name.
//! - `GET  /_/time`: the replica's time.
//! - `POST /_/time` (manual-time mode only): `{"advance_secs": n}`, `{"advance_nanos": n}` or
//!   `{"set_nanos": t}`; then due timers and queued messages run.
//!
//! Requests are verified like the IC verifies them (signature over the request id by the
//! sender's key, self-authenticating sender, delegation chains, ingress expiry within
//! [now, now + 5 min 30 s] of the replica's time) and refused with HTTP 400 and the IC's
//! message otherwise.
//!
//! # Time
//!
//! In [`TimeMode::WallClock`] the simulator's time follows the wall clock (never backwards) and
//! due timers run between requests. In [`TimeMode::Manual`] time starts at the wall clock and
//! moves only through `POST /_/time` or [`Replica::advance_time`]. Agents compute
//! `ingress_expiry` from their own clock and refuse certificates older than their expiry window
//! (ic-agent: 3 minutes by default), so manual time must stay near the wall clock for them.

mod auth;
mod gateway;
mod keys;
mod server;
mod tree;

pub use auth::{RequestError, MAX_INGRESS_TTL_NANOS, PERMITTED_DRIFT_AT_VALIDATOR_NANOS};
pub use ic_sim;
pub use keys::KeySource;
pub use server::{MAX_BODY_BYTES, MAX_INGRESS_ARG_BYTES};

use candid::Principal;
use ic_sim::{SimError, Simulator};
use server::{Command, State};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How the replica's time moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeMode {
    /// Follows the wall clock; timers fire on their own.
    WallClock,
    /// Starts at the wall clock, then moves only when told to (deterministic tests).
    Manual,
}

/// How to start a [`Replica`].
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// Loopback port; 0 picks a free one.
    pub port: u16,
    pub time: TimeMode,
    /// Root (BLS) and node (ed25519) keys: random, or derived from a seed (reproducible root
    /// key and subnet id).
    pub keys: KeySource,
    /// `Some(seed)`: the simulator's seeded random scheduler ([`Simulator::with_seed`]);
    /// `None`: FIFO.
    pub scheduler_seed: Option<u64>,
    /// How long a v3/v4 (synchronous) call may run before the replica answers 202 and the
    /// agent polls `read_state`. Zero makes every call asynchronous.
    pub sync_call_timeout: Duration,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            port: 0,
            time: TimeMode::WallClock,
            keys: KeySource::Random,
            scheduler_seed: None,
            sync_call_timeout: Duration::from_secs(10),
        }
    }
}

/// Errors of starting or controlling a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaError {
    /// The port could not be bound.
    Bind(String),
    /// Key generation failed (no OS randomness).
    Keys(String),
    /// The setup closure failed.
    Setup(String),
    /// The server thread is gone (stopped, or panicked).
    Stopped,
    /// A control request was refused (e.g. moving time backwards, or in wall-clock mode).
    Refused(String),
    /// The closure given to [`Replica::with_sim`] panicked (the server keeps running).
    Panicked(String),
}

impl std::fmt::Display for ReplicaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplicaError::Bind(e) => write!(f, "cannot listen on 127.0.0.1: {e}"),
            ReplicaError::Keys(e) => write!(f, "cannot generate the replica's keys: {e}"),
            ReplicaError::Setup(e) => write!(f, "setting up the canisters failed: {e}"),
            ReplicaError::Stopped => write!(f, "the replica has stopped"),
            ReplicaError::Refused(e) => write!(f, "refused: {e}"),
            ReplicaError::Panicked(e) => {
                write!(f, "the closure run on the simulator panicked: {e}")
            }
        }
    }
}

impl std::error::Error for ReplicaError {}

/// A custom section of a module, for `canister/<id>/metadata/<name>`.
#[derive(Clone, Debug)]
pub(crate) struct Section {
    pub public: bool,
    pub content: Vec<u8>,
}

/// The `icp:public` / `icp:private` custom sections of registered modules, by module hash
/// (the simulator keeps only the hash of an installed module).
#[derive(Default)]
pub(crate) struct Modules(HashMap<[u8; 32], BTreeMap<String, Section>>);

impl Modules {
    fn register(&mut self, wasm: &[u8]) {
        use sha2::Digest;
        let hash: [u8; 32] = sha2::Sha256::digest(wasm).into();
        let mut sections = BTreeMap::new();
        for payload in wasmparser::Parser::new(0).parse_all(wasm) {
            let Ok(wasmparser::Payload::CustomSection(s)) = payload else {
                continue;
            };
            let (public, name) = if let Some(n) = s.name().strip_prefix("icp:public ") {
                (true, n)
            } else if let Some(n) = s.name().strip_prefix("icp:private ") {
                (false, n)
            } else {
                continue;
            };
            sections.insert(
                name.to_string(),
                Section {
                    public,
                    content: s.data().to_vec(),
                },
            );
        }
        self.0.insert(hash, sections);
    }
    pub fn section(&self, hash: &[u8; 32], name: &str) -> Option<&Section> {
        self.0.get(hash)?.get(name)
    }
    pub fn sections(&self, hash: &[u8; 32]) -> impl Iterator<Item = (&String, &Section)> {
        self.0.get(hash).into_iter().flatten()
    }
}

/// What the setup closure of [`Replica::start`] gets: the simulator (on the server thread) and
/// ways to name canisters and register modules.
pub struct Installer<'a> {
    sim: &'a mut Simulator,
    names: &'a mut BTreeMap<String, Principal>,
    modules: &'a mut Modules,
}

impl Installer<'_> {
    pub fn sim(&mut self) -> &mut Simulator {
        self.sim
    }
    /// List `canister` under `name` in `/_/topology` and [`Replica::canisters`].
    pub fn name(&mut self, name: &str, canister: Principal) {
        self.names.insert(name.to_string(), canister);
    }
    /// Make a module's `icp:public`/`icp:private` custom sections readable through
    /// `read_state` of `canister/<id>/metadata/<name>` for canisters running it.
    pub fn register_module(&mut self, wasm: &[u8]) {
        self.modules.register(wasm);
    }
    /// Create a canister (default controller), install `wasm` with `arg`, name it and register
    /// the module.
    pub fn install(
        &mut self,
        name: &str,
        wasm: Vec<u8>,
        arg: Vec<u8>,
    ) -> Result<Principal, SimError> {
        let id = self.sim.create_canister();
        self.register_module(&wasm);
        self.sim.install_canister(id, wasm, arg, None)?;
        self.name(name, id);
        Ok(id)
    }
}

/// A running local replica. Dropping it stops the server.
pub struct Replica {
    port: u16,
    url: String,
    root_key: Vec<u8>,
    subnet_id: Principal,
    time_mode: TimeMode,
    canisters: BTreeMap<String, Principal>,
    commands: Sender<Command>,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Replica {
    /// Bind 127.0.0.1:`config.port`, create the simulator on the server thread, run `init`
    /// there (install canisters; its result is returned), then serve.
    pub fn start<T, F>(config: ReplicaConfig, init: F) -> Result<(Replica, T), ReplicaError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Installer<'_>) -> Result<T, String> + Send + 'static,
    {
        let server = tiny_http::Server::http(("127.0.0.1", config.port))
            .map_err(|e| ReplicaError::Bind(e.to_string()))?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| ReplicaError::Bind("not an IP listener".into()))?;
        let server = Arc::new(server);
        let keys = keys::Keys::new(&config.keys).map_err(ReplicaError::Keys)?;
        let root_key = keys.root_key_der().to_vec();
        let subnet_id = keys.subnet_id();
        let (cmd_tx, cmd_rx) = channel::<Command>();
        let (ready_tx, ready_rx) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let time_mode = config.time;
        let sync_call_timeout = config.sync_call_timeout;
        let scheduler_seed = config.scheduler_seed;
        let thread = {
            let server = server.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("ic-sim-replica:{port}"))
                .spawn(move || {
                    let mut sim = match scheduler_seed {
                        Some(s) => Simulator::with_seed(s),
                        None => Simulator::new(),
                    };
                    let wall = server::wall_clock_nanos();
                    if wall > sim.time_nanos() {
                        sim.set_time_nanos(wall);
                    }
                    let mut names = BTreeMap::new();
                    let mut modules = Modules::default();
                    let setup = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        init(&mut Installer {
                            sim: &mut sim,
                            names: &mut names,
                            modules: &mut modules,
                        })
                    }))
                    .unwrap_or_else(|_| Err("the setup closure panicked".into()));
                    let value = match setup {
                        Ok(v) => v,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    if ready_tx.send(Ok((value, names.clone()))).is_err() {
                        return;
                    }
                    let state = State {
                        sim,
                        keys,
                        time_mode,
                        names,
                        modules,
                        ingress: HashMap::new(),
                        sync_call_timeout,
                        port,
                    };
                    server::run(state, server, cmd_rx, stop);
                })
                .map_err(|e| ReplicaError::Setup(format!("cannot start the server thread: {e}")))?
        };
        let (value, canisters) = match ready_rx.recv() {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(ReplicaError::Setup(e)),
            Err(_) => return Err(ReplicaError::Setup("the server thread died".into())),
        };
        Ok((
            Replica {
                port,
                url: format!("http://127.0.0.1:{port}"),
                root_key,
                subnet_id,
                time_mode,
                canisters,
                commands: cmd_tx,
                server,
                stop,
                thread: Some(thread),
            },
            value,
        ))
    }

    /// `http://127.0.0.1:<port>`: what to give ic-agent (`Agent::builder().with_url(..)`) or dfx.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The root key (DER), as served by `/api/v2/status` and fetched by `fetch_root_key`.
    pub fn root_key(&self) -> &[u8] {
        &self.root_key
    }

    /// The subnet id: the self-authenticating principal of the root key, as agents derive it
    /// for a root subnet.
    pub fn subnet_id(&self) -> Principal {
        self.subnet_id
    }

    pub fn time_mode(&self) -> TimeMode {
        self.time_mode
    }

    /// Canisters named during setup.
    pub fn canisters(&self) -> &BTreeMap<String, Principal> {
        &self.canisters
    }

    pub fn canister_id(&self, name: &str) -> Option<Principal> {
        self.canisters.get(name).copied()
    }

    /// The canister's pages through the HTTP gateway: `http://<id>.localhost:<port>/`.
    pub fn gateway_url(&self, canister: Principal) -> String {
        format!("http://{canister}.localhost:{}/", self.port)
    }

    /// Run `f` on the server thread with the simulator, between two HTTP requests.
    pub fn with_sim<R, F>(&self, f: F) -> Result<R, ReplicaError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Simulator) -> R + Send + 'static,
    {
        let (tx, rx) = channel();
        self.commands
            .send(Box::new(move |state: &mut State| {
                let r =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut state.sim)));
                let _ = tx.send(r.map_err(|p| panic_message(p.as_ref())));
            }))
            .map_err(|_| ReplicaError::Stopped)?;
        rx.recv()
            .map_err(|_| ReplicaError::Stopped)?
            .map_err(ReplicaError::Panicked)
    }

    pub fn time_nanos(&self) -> Result<u64, ReplicaError> {
        self.with_sim(|s| s.time_nanos())
    }

    /// Manual-time mode: move time forward by `d` and run what became due. Returns the new time.
    pub fn advance_time(&self, d: Duration) -> Result<u64, ReplicaError> {
        if self.time_mode != TimeMode::Manual {
            return Err(ReplicaError::Refused(
                "time follows the wall clock (start with TimeMode::Manual)".into(),
            ));
        }
        let (tx, rx) = channel();
        self.commands
            .send(Box::new(move |state: &mut State| {
                state.sim.advance_time(d);
                state.progress(10_000);
                let _ = tx.send(state.sim.time_nanos());
            }))
            .map_err(|_| ReplicaError::Stopped)?;
        rx.recv().map_err(|_| ReplicaError::Stopped)
    }

    /// Serve until the process is killed (or the server thread ends).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stop serving and wait for the server thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// The canister ids this replica's subnet serves: every id the simulator creates (an 8-byte
/// big-endian counter followed by `0x01 0x01`, like the IC's canister ids).
pub fn canister_ranges() -> Vec<(Principal, Principal)> {
    let mut low = [0u8; 10];
    low[8] = 1;
    low[9] = 1;
    let mut high = [0xffu8; 10];
    high[8] = 1;
    high[9] = 1;
    vec![(Principal::from_slice(&low), Principal::from_slice(&high))]
}

/// A time in nanoseconds since the epoch as the IC prints it: `2026-05-01 23:55:18.005285297 UTC`.
pub fn fmt_time(nanos: u64) -> String {
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{frac:09} UTC",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn should_print_times_like_the_ic() {
        assert_eq!(
            super::fmt_time(1_746_143_718_005_285_297),
            "2025-05-01 23:55:18.005285297 UTC"
        );
        assert_eq!(super::fmt_time(0), "1970-01-01 00:00:00.000000000 UTC");
    }
}
