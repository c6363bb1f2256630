//! `ic-sim`: an Internet Computer simulator on wasmtime.
//!
//! Runs real canister Wasm (ic-cdk 0.20 / ic-cdk-timers 1.0, or `.wat` test modules) under the
//! message semantics of the IC interface specification: one message at a time per canister,
//! atomic messages (rollback of heap, globals, stable memory, outgoing calls and the reply on
//! trap), callbacks as separate messages, `call_on_cleanup`, pairwise request ordering, a
//! seeded interleaving scheduler, bounded-wait (best-effort) call timeouts, global timers,
//! upgrades keeping stable memory, instruction counting with fuel, and fault injection.
//!
//! Like the replica it also has:
//! - the management canister for canisters ([`mgmt`]): `create_canister` (charging the
//!   creation fee from the attached cycles), `install_code` (install / reinstall / upgrade with
//!   `skip_pre_upgrade`), `update_settings`, `canister_status`, `canister_info`,
//!   `deposit_cycles`, `start_canister`, `stop_canister`, `delete_canister`, `uninstall_code`,
//!   `raw_rand`;
//! - the IC's per-message instruction limits ([`InstructionLimits`]) and size, queue and memory
//!   limits ([`Limits`], canister settings `memory_allocation` / `wasm_memory_limit`);
//! - the replica's instruction charges for System API calls, so `ic0.performance_counter` and
//!   [`Simulator::last_instructions`] match what the IC counts for the same Wasm (up to the
//!   per-instruction weights of the replica's own Wasm instrumentation, which ic-sim does not
//!   reproduce: wasmtime fuel counts one per operator);
//! - whole-simulator snapshots ([`Simulator::snapshot`], [`Simulator::restore`]) whose restore
//!   copies only the memory pages changed since.
//!
//! The API is shaped like PocketIC's so tests read naturally.

pub mod build;
mod dirty;
mod exec;
mod instrument;
pub mod mgmt;
mod snapshot;
pub use snapshot::{RestoreStats, SimSnapshot};
mod replica_api;
#[cfg(test)]
mod tests;

pub use candid::Principal;
pub use exec::IMPLEMENTED_IMPORTS;

use exec::{Ctx, MsgState, OutCall, Payload, StableUndo, SysState};
use sha2::Digest;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::{Engine, Global, Instance, Linker, Memory, Module, Ref, Store, Table, Val};

/// Compile WebAssembly text (a `.wat` test canister) to binary. Panics with the parse error.
pub fn wat(src: &str) -> Vec<u8> {
    ::wat::parse_str(src).unwrap_or_else(|e| panic!("ic-sim: invalid wat: {e}"))
}

/// Reject codes of the IC interface specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum RejectCode {
    SysFatal = 1,
    SysTransient = 2,
    DestinationInvalid = 3,
    CanisterReject = 4,
    CanisterError = 5,
    SysUnknown = 6,
}

impl RejectCode {
    pub fn from_u32(code: u32) -> Option<RejectCode> {
        Some(match code {
            1 => RejectCode::SysFatal,
            2 => RejectCode::SysTransient,
            3 => RejectCode::DestinationInvalid,
            4 => RejectCode::CanisterReject,
            5 => RejectCode::CanisterError,
            6 => RejectCode::SysUnknown,
            _ => return None,
        })
    }
}

/// A reject response to a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectResponse {
    pub reject_code: RejectCode,
    pub reject_message: String,
}

impl std::fmt::Display for RejectResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reject {:?} ({}): {}",
            self.reject_code, self.reject_code as u32, self.reject_message
        )
    }
}
impl std::error::Error for RejectResponse {}

/// Errors of management operations (install, upgrade, stop, ...).
#[derive(Clone, PartialEq, Eq)]
pub enum SimError {
    CanisterNotFound(Principal),
    NotController {
        canister: Principal,
        sender: Principal,
    },
    InvalidWasm(String),
    UnsupportedImport(String),
    AlreadyInstalled(Principal),
    NotInstalled(Principal),
    /// `canister_init`, `canister_pre_upgrade` or `canister_post_upgrade` trapped; nothing changed.
    Trapped {
        canister: Principal,
        message: String,
    },
    NotStopped(Principal),
    StopTimedOut(Principal),
    /// Canister settings the IC would refuse (too many controllers, out-of-range values, ...).
    InvalidSettings(String),
    /// `create_canister` was sent fewer cycles than the creation fee.
    InsufficientCyclesForCreate {
        sent: u128,
        required: u128,
    },
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::CanisterNotFound(c) => write!(f, "canister {c} not found"),
            SimError::NotController { canister, sender } => {
                write!(f, "{sender} is not a controller of canister {canister}")
            }
            SimError::InvalidWasm(m) => write!(f, "invalid canister Wasm: {m}"),
            SimError::UnsupportedImport(m) => write!(f, "unsupported import: {m}"),
            SimError::AlreadyInstalled(c) => {
                write!(f, "canister {c} already has a module installed")
            }
            SimError::NotInstalled(c) => write!(f, "canister {c} has no module installed"),
            SimError::Trapped { canister, message } => {
                write!(f, "canister {canister} trapped: {message}")
            }
            SimError::NotStopped(c) => write!(f, "canister {c} is not stopped"),
            SimError::StopTimedOut(c) => {
                write!(f, "canister {c} did not stop (open call contexts remain)")
            }
            SimError::InvalidSettings(m) => write!(f, "invalid settings: {m}"),
            SimError::InsufficientCyclesForCreate { sent, required } => write!(
                f,
                "create_canister needs at least {required} cycles (the creation fee), got {sent}"
            ),
        }
    }
}
impl std::fmt::Debug for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimError({self})")
    }
}
impl std::error::Error for SimError {}

/// The kind of an executed message (execution context).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Start,
    Init,
    PreUpgrade,
    PostUpgrade,
    Update,
    /// A query method executed as an update (state changes discarded).
    ReplicatedQuery,
    Query,
    ReplyCallback,
    RejectCallback,
    Cleanup,
    GlobalTimer,
    Heartbeat,
    InspectMessage,
}

/// Id of an ingress message submitted with [`Simulator::submit_call`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

/// One executed message, in execution order (see [`Simulator::trace`]).
#[derive(Clone, Debug)]
pub struct MessageRecord {
    /// Global execution index (0-based, counts every executed message of this simulator).
    pub index: u64,
    pub canister: Principal,
    pub kind: MessageKind,
    /// Method name for requests, `None` for callbacks/system tasks.
    pub method: Option<String>,
    /// Number of System API calls the message made.
    pub api_calls: u32,
    pub instructions: u64,
    /// Trap message if the message trapped (its effects were rolled back).
    pub trap: Option<String>,
    /// The message's caller (for requests: the calling canister or user; for callbacks and
    /// system tasks: as the System API reports it).
    pub caller: Principal,
    /// Payload bytes the message received: the argument of a request, the reply or reject
    /// message of a callback (what the IC's per-byte transmission fee applies to).
    pub arg_bytes: u64,
}

/// A point where a message can be made to trap: at its `api_call`-th System API call (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrapPoint {
    pub message: u64,
    pub api_call: u32,
}

/// Description of an inter-canister request, for fault-injection predicates.
#[derive(Clone, Debug)]
pub struct CallInfo {
    /// Global 0-based index of inter-canister calls (in order of being enqueued).
    pub index: u64,
    pub from: Principal,
    pub to: Principal,
    pub method: String,
    pub bounded_wait: bool,
}

/// When a forced reject applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectWhen {
    /// The request is never delivered: the callee does not run.
    BeforeDelivery,
    /// The callee executes (and commits); its response is lost and replaced by the reject.
    AfterExecution,
}

/// Per-message instruction limits of an application subnet.
#[derive(Clone, Copy, Debug)]
pub struct InstructionLimits {
    /// Updates, callbacks (a callback and its cleanup share one budget), timers, heartbeats:
    /// 40 B. Source: dfinity/ic `rs/config/src/subnet_config.rs`,
    /// `MAX_INSTRUCTIONS_PER_MESSAGE`.
    pub update: u64,
    /// Queries, also when called as an update (replicated query): 5 B. Source: dfinity/ic
    /// `rs/config/src/subnet_config.rs`, `MAX_INSTRUCTIONS_PER_QUERY_MESSAGE`, used for
    /// replicated queries by `rs/execution_environment/src/execution_environment.rs`.
    pub query: u64,
    /// `install_code` (start + init, or pre_upgrade + post_upgrade): 300 B. Source: dfinity/ic
    /// `rs/config/src/subnet_config.rs`, `MAX_INSTRUCTIONS_PER_INSTALL_CODE`.
    pub install: u64,
    /// `canister_inspect_message`: 200 M. Source: dfinity/ic
    /// `rs/config/src/execution_environment.rs`, `MAX_INSTRUCTIONS_FOR_MESSAGE_ACCEPTANCE_CALLS`.
    pub inspect_message: u64,
}

impl Default for InstructionLimits {
    fn default() -> Self {
        InstructionLimits {
            update: 40_000_000_000,
            query: 5_000_000_000,
            install: 300_000_000_000,
            inspect_message: 200_000_000,
        }
    }
}

/// Size and capacity limits of an application subnet (each configurable for tests).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Requests in flight from one canister to another (output queue plus the input-queue
    /// slots reserved for their responses): 500. Beyond it `ic0.call_perform` returns
    /// SYS_TRANSIENT (2). Source: dfinity/ic `rs/replicated_state/src/canister_state/queues.rs`,
    /// `DEFAULT_QUEUE_CAPACITY`.
    pub queue_capacity: u32,
    /// Largest inter-canister response, and request to another subnet: 2 MiB. Source:
    /// dfinity/ic `rs/types/types/src/messages.rs`, `MAX_INTER_CANISTER_PAYLOAD_IN_BYTES`.
    pub max_inter_canister_payload: u64,
    /// A request to a canister on the same subnet may be this many times larger: 5 (10 MiB).
    /// Source: dfinity/ic `rs/embedders/src/wasmtime_embedder/system_api.rs`,
    /// `MULTIPLIER_MAX_SIZE_LOCAL_SUBNET`.
    pub local_subnet_request_multiplier: u64,
    /// Largest reply of a non-replicated query: 3 MiB. Source: dfinity/ic
    /// `rs/embedders/src/wasmtime_embedder/system_api.rs`, `MAX_NON_REPLICATED_QUERY_REPLY_SIZE`.
    pub max_query_reply: u64,
    /// Largest ingress message (here: method name + argument): 2 MiB. Source: dfinity/ic
    /// `rs/limits/src/lib.rs`, `MAX_INGRESS_BYTES_PER_MESSAGE_APP_SUBNET`.
    pub max_ingress_bytes: u64,
    /// Memory all canisters together may use: 2 TiB. Source: dfinity/ic
    /// `rs/config/src/execution_environment.rs`, `SUBNET_MEMORY_CAPACITY`.
    pub subnet_memory_capacity: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            queue_capacity: 500,
            max_inter_canister_payload: 2 << 20,
            local_subnet_request_multiplier: 5,
            max_query_reply: 3 << 20,
            max_ingress_bytes: 2 << 20,
            subnet_memory_capacity: 2 << 40,
        }
    }
}

/// How ic-sim finds the heap pages a message wrote (for rollback and snapshots).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DirtyTracking {
    /// Per canister, whichever of the two is cheaper for its heap size and write pattern.
    #[default]
    Auto,
    /// Committed pages are read-only; the first write to a page faults and is recorded.
    /// Cost per message: proportional to the pages written.
    Faults,
    /// Pages are compared with the committed copy at the end of the message. Cost per
    /// message: proportional to the heap size (fast for small heaps).
    Scan,
}

/// Status of a canister.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanisterStatus {
    Running,
    Stopping,
    Stopped,
}

/// A `debug_print` line.
#[derive(Clone, Debug)]
pub struct LogRecord {
    pub canister: Principal,
    pub message_index: u64,
    pub text: String,
}

// ----------------------------------------------------------------------------------------------
// internals

/// 2026-01-01T00:00:00Z in nanoseconds since the epoch.
pub const DEFAULT_TIME_NANOS: u64 = 1_767_225_600_000_000_000;
/// Cycles each new canister starts with.
pub const DEFAULT_CYCLES: u128 = 100_000_000_000_000;
const MAX_STEPS: u64 = 10_000_000;

struct Compiled {
    module: Module,
    global_exports: Vec<String>,
    has_memory: bool,
    has_table: bool,
    exports: Vec<String>,
    wasm_len: usize,
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true);
        // Deterministic floats like the replica.
        config.cranelift_nan_canonicalization(true);
        Engine::new(&config).expect("wasmtime engine")
    })
}

fn compile(wasm: &[u8]) -> Result<Arc<Compiled>, SimError> {
    static CACHE: OnceLock<Mutex<HashMap<[u8; 32], Arc<Compiled>>>> = OnceLock::new();
    let hash: [u8; 32] = sha2::Sha256::digest(wasm).into();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap().get(&hash) {
        return Ok(c.clone());
    }
    let inst = instrument::instrument(wasm).map_err(|e| SimError::InvalidWasm(format!("{e:#}")))?;
    let module =
        Module::new(engine(), &inst.bytes).map_err(|e| SimError::InvalidWasm(format!("{e:?}")))?;
    for imp in module.imports() {
        let ok = imp.module() == "ic0"
            && exec::IMPLEMENTED_IMPORTS.contains(&imp.name())
            && matches!(imp.ty(), wasmtime::ExternType::Func(_));
        if !ok {
            return Err(SimError::UnsupportedImport(format!(
                "{}.{} ({:?}) is not implemented by ic-sim",
                imp.module(),
                imp.name(),
                imp.ty()
            )));
        }
    }
    let exports = module.exports().map(|e| e.name().to_string()).collect();
    let c = Arc::new(Compiled {
        module,
        global_exports: inst.global_exports,
        has_memory: inst.has_memory,
        has_table: inst.has_table,
        exports,
        wasm_len: wasm.len(),
    });
    cache.lock().unwrap().insert(hash, c.clone());
    Ok(c)
}

struct Inst {
    compiled: Arc<Compiled>,
    instance: Instance,
    memory: Option<Memory>,
    table: Option<Table>,
    globals: Vec<Global>,
    module_hash: [u8; 32],
    module_len: usize,
}

impl Inst {
    fn has_export(&self, name: &str) -> bool {
        self.compiled.exports.iter().any(|e| e == name)
    }
}

#[derive(Clone)]
struct CallContext {
    origin: Origin,
    responded: bool,
    outstanding: u32,
    cycles_available: u128,
    instructions: u64,
    caller: Principal,
}

#[derive(Clone, Copy, Debug)]
enum Origin {
    Ingress(MessageId),
    Canister { caller: Principal, callback: u64 },
    System,
}

#[derive(Clone)]
struct Callback {
    ctx: u64,
    call: OutCall,
    deadline: Option<u64>,
    /// A response (real or synthetic) has been enqueued; later ones are dropped.
    response_enqueued: bool,
}

struct Canister {
    store: Store<Ctx>,
    inst: Option<Inst>,
    status: CanisterStatus,
    contexts: HashMap<u64, CallContext>,
    callbacks: HashMap<u64, Callback>,
    total_instructions: u64,
    messages: u64,
    settings: mgmt::Settings,
    /// Pending `stop_canister` calls: answered once the canister is stopped.
    stop_waiters: Vec<(Origin, u128, u64)>,
    /// The last changes (canister_info), oldest first, and the number of changes ever made.
    history: Vec<mgmt::Change>,
    total_changes: u64,
    /// Dirty-page tracking and committed copy of the Wasm heap (present with a memory).
    heap: Option<dirty::Heap>,
    /// Generation of the last committed change of each stable memory page.
    stable_gen: Vec<u64>,
    /// Changes whenever the module instance or stable memory is replaced wholesale.
    epoch: u64,
    /// Changes only when stable memory is replaced wholesale (reinstall, uninstall, test
    /// setup): an upgrade keeps it, so a restore across an upgrade copies back only the stable
    /// pages changed since the snapshot and rebuilds just the heap.
    stable_epoch: u64,
    /// The snapshot this canister's stable memory was last restored from, and the generation
    /// of that restore (kept across upgrades, like the stable memory it describes).
    restored: Option<(u64, u64)>,
    /// Values of the mutable globals after the last committed message.
    globals: Vec<Val>,
}

/// The IC keeps this many recent changes per canister.
/// Source: dfinity/ic `rs/replicated_state/src/canister_state/system_state.rs`
/// (`MAX_CANISTER_HISTORY_CHANGES`).
const MAX_HISTORY: usize = 20;

#[derive(Clone, Debug)]
struct Request {
    sender: Principal,
    receiver: Principal,
    method: String,
    arg: Vec<u8>,
    cycles: u128,
    origin: Origin,
    deadline: Option<u64>,
    call_index: Option<u64>,
    lose_response: Option<RejectCode>,
}

#[derive(Clone, Debug)]
struct Response {
    receiver: Principal,
    callback: u64,
    payload: Payload,
    refund: u128,
}

#[derive(Clone, Debug)]
enum Item {
    Request(Request),
    Response(Response),
}

#[derive(Clone)]
struct Queued {
    seq: u64,
    item: Item,
}

enum Task {
    Queue(usize),
    Timer(Principal),
}

#[derive(Clone, Debug)]
enum IngressStatus {
    Pending,
    Done(Result<Vec<u8>, RejectResponse>),
}

type MsgPred = Box<dyn FnMut(&MessageRecord) -> bool>;
type CallPred = Box<dyn FnMut(&CallInfo) -> bool>;
type Hook = Box<dyn FnOnce(&mut Simulator)>;

struct TrapFault {
    pred: MsgPred,
    api_call: u32,
}

struct RejectFault {
    pred: CallPred,
    code: RejectCode,
    when: RejectWhen,
}

struct PerformFault {
    pred: MsgPred,
    call_index: u32,
    code: u32,
}

/// Small deterministic PRNG (SplitMix64) for the seeded scheduler and `raw_rand`.
#[derive(Clone, Debug)]
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Exec {
    trap: Option<String>,
    response: Option<Payload>,
    calls: Vec<OutCall>,
    instructions: u64,
    accepted: bool,
    cycles_left: u128,
    /// Stable writes of a committed `PreUpgrade`, oldest first (empty for other kinds).
    stable_undo: Vec<StableUndo>,
}

enum Entry {
    Export(String),
    Table(u32, u32),
}

/// The simulated IC: one subnet, any number of canisters.
pub struct Simulator {
    linker: Linker<Ctx>,
    canisters: BTreeMap<Principal, Canister>,
    next_canister: u64,
    time: u64,
    seq: u64,
    queue: Vec<Queued>,
    scheduler: Option<Rng>,
    rand: Rng,
    ingress: BTreeMap<MessageId, IngressStatus>,
    next_ingress: u64,
    next_id: u64,
    next_call_index: u64,
    message_counter: u64,
    trace: Vec<MessageRecord>,
    logs: Vec<LogRecord>,
    limits: InstructionLimits,
    size_limits: Limits,
    trap_faults: Vec<TrapFault>,
    reject_faults: Vec<RejectFault>,
    perform_faults: Vec<PerformFault>,
    hooks: BTreeMap<u64, Vec<Hook>>,
    print_logs: bool,
    last_instructions: u64,
    subnet: Principal,
    /// Generation counter of committed heap/stable changes (see `dirty`).
    gen: u64,
    dirty_tracking: DirtyTracking,
    next_snapshot: std::cell::Cell<u64>,
    /// The snapshot whose trace, logs and ingress history the current ones extend.
    history_base: std::cell::Cell<Option<u64>>,
}

impl Default for Simulator {
    fn default() -> Self {
        Self::new()
    }
}

fn blank_ctx(subnet: Principal) -> Ctx {
    Ctx {
        sys: SysState {
            self_id: Principal::anonymous(),
            controllers: vec![],
            certified_data: vec![],
            global_timer: 0,
            cycles: 0,
            version: 0,
            time: 0,
            status: 1,
        },
        stable: Vec::new(),
        msg: MsgState::new(MessageKind::Start),
        memory: None,
        subnet,
        print_logs: false,
        log_sizes: Default::default(),
        log_used: 0,
    }
}

fn new_store(ctx: Ctx) -> Store<Ctx> {
    let mut store = Store::new(engine(), ctx);
    store.limiter(|c: &mut Ctx| c as &mut dyn wasmtime::ResourceLimiter);
    store
}

fn canister_memory_usage(c: &Canister) -> u64 {
    let heap = c
        .inst
        .as_ref()
        .and_then(|i| i.memory.map(|m| m.data_size(&c.store) as u64))
        .unwrap_or(0);
    let binary = c.inst.as_ref().map_or(0, |i| i.module_len as u64);
    heap + c.store.data().stable.len() as u64 + binary
}

fn reject(code: RejectCode, msg: impl Into<String>) -> RejectResponse {
    RejectResponse {
        reject_code: code,
        reject_message: msg.into(),
    }
}

impl Simulator {
    /// A simulator with the FIFO scheduler and time = 2026-01-01T00:00:00Z.
    pub fn new() -> Self {
        let subnet = Principal::self_authenticating(b"ic-sim subnet");
        Simulator {
            linker: exec::linker(engine()).expect("ic0 linker"),
            canisters: BTreeMap::new(),
            next_canister: 0,
            time: DEFAULT_TIME_NANOS,
            seq: 0,
            queue: Vec::new(),
            scheduler: None,
            rand: Rng(0x0001_c51d),
            ingress: BTreeMap::new(),
            next_ingress: 0,
            next_id: 1,
            next_call_index: 0,
            message_counter: 0,
            trace: Vec::new(),
            logs: Vec::new(),
            limits: InstructionLimits::default(),
            size_limits: Limits::default(),
            trap_faults: Vec::new(),
            reject_faults: Vec::new(),
            perform_faults: Vec::new(),
            hooks: BTreeMap::new(),
            print_logs: std::env::var_os("IC_SIM_PRINT").is_some(),
            last_instructions: 0,
            subnet,
            gen: 1,
            dirty_tracking: DirtyTracking::Auto,
            next_snapshot: std::cell::Cell::new(1),
            history_base: std::cell::Cell::new(None),
        }
    }

    /// A simulator whose scheduler picks, at every step, a random eligible message (respecting
    /// pairwise request ordering), deterministically from `seed`.
    pub fn with_seed(seed: u64) -> Self {
        let mut s = Self::new();
        s.scheduler = Some(Rng(seed));
        s.rand = Rng(seed ^ 0xdead_beef);
        s
    }

    /// The principal used as controller and sender when none is given.
    pub fn default_controller() -> Principal {
        Principal::self_authenticating(b"ic-sim default controller")
    }

    /// Print canister `debug_print` output to stderr (also enabled by env `IC_SIM_PRINT`).
    pub fn set_print_logs(&mut self, on: bool) {
        self.print_logs = on;
    }

    pub fn set_instruction_limits(&mut self, limits: InstructionLimits) {
        self.limits = limits;
    }

    pub fn instruction_limits(&self) -> InstructionLimits {
        self.limits
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.size_limits = limits;
    }

    pub fn limits(&self) -> Limits {
        self.size_limits
    }

    /// Choose how written heap pages are found (default: [`DirtyTracking::Auto`]). Results
    /// never depend on it, only speed.
    pub fn set_dirty_tracking(&mut self, mode: DirtyTracking) {
        self.dirty_tracking = mode;
        for c in self.canisters.values_mut() {
            if let (Some(m), Some(h)) = (c.inst.as_ref().and_then(|i| i.memory), c.heap.as_mut()) {
                let mapping = dirty::Mapping {
                    ptr: m.data_ptr(&c.store),
                    len: m.data_size(&c.store),
                };
                h.set_mode(mapping, mode);
            }
        }
    }

    // ---------------------------------------------------------------- time

    pub fn time_nanos(&self) -> u64 {
        self.time
    }

    /// Set the time. Time is monotonic: setting it backwards panics.
    pub fn set_time_nanos(&mut self, t: u64) {
        assert!(
            t >= self.time,
            "ic-sim: time must not go backwards ({t} < {})",
            self.time
        );
        self.time = t;
    }

    pub fn advance_time(&mut self, d: Duration) {
        self.time = self.time.saturating_add(d.as_nanos() as u64);
    }

    // ---------------------------------------------------------------- lifecycle

    pub fn create_canister(&mut self) -> Principal {
        self.create_canister_with_controllers(vec![Self::default_controller()])
    }

    pub fn create_canister_with_controllers(&mut self, controllers: Vec<Principal>) -> Principal {
        let settings = mgmt::CanisterSettings {
            controllers: Some(controllers),
            ..Default::default()
        };
        self.create_canister_full(Self::default_controller(), DEFAULT_CYCLES, &settings)
            .expect("valid default settings")
    }

    /// Create a canister the way `create_canister` does: `settings.controllers` default to
    /// `[sender]`, the balance is `cycles`.
    pub fn create_canister_full(
        &mut self,
        sender: Principal,
        cycles: u128,
        settings: &mgmt::CanisterSettings,
    ) -> Result<Principal, SimError> {
        let mut s = mgmt::Settings::default();
        let controllers = mgmt::apply_settings(&mut s, settings)?.unwrap_or_else(|| vec![sender]);
        let n = self.next_canister;
        self.next_canister += 1;
        let mut bytes = n.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[1, 1]);
        let id = Principal::from_slice(&bytes);
        let mut ctx = blank_ctx(self.subnet);
        ctx.sys.self_id = id;
        ctx.sys.controllers = controllers.clone();
        ctx.sys.cycles = cycles;
        let store = new_store(ctx);
        self.gen += 1;
        let epoch = self.gen;
        self.canisters.insert(
            id,
            Canister {
                store,
                inst: None,
                status: CanisterStatus::Running,
                contexts: HashMap::new(),
                callbacks: HashMap::new(),
                total_instructions: 0,
                messages: 0,
                settings: s,
                stop_waiters: Vec::new(),
                history: Vec::new(),
                total_changes: 0,
                heap: None,
                stable_gen: Vec::new(),
                epoch,
                stable_epoch: epoch,
                restored: None,
                globals: Vec::new(),
            },
        );
        self.record_change(
            id,
            sender,
            mgmt::ChangeDetails::Creation(mgmt::CreationRecord {
                controllers,
                environment_variables_hash: None,
            }),
        );
        Ok(id)
    }

    fn record_change(
        &mut self,
        canister: Principal,
        sender: Principal,
        details: mgmt::ChangeDetails,
    ) {
        let time = self.time;
        let origin = match self.canisters.get(&sender) {
            Some(c) => mgmt::ChangeOrigin::FromCanister(mgmt::FromCanisterRecord {
                canister_id: sender,
                canister_version: Some(c.store.data().sys.version),
            }),
            None => mgmt::ChangeOrigin::FromUser(mgmt::FromUserRecord { user_id: sender }),
        };
        let Some(c) = self.canisters.get_mut(&canister) else {
            return;
        };
        c.total_changes += 1;
        c.history.push(mgmt::Change {
            timestamp_nanos: time,
            canister_version: c.store.data().sys.version,
            origin,
            details: Some(details),
        });
        if c.history.len() > MAX_HISTORY {
            c.history.remove(0);
        }
    }

    /// Apply `update_settings` (controllers checked).
    pub fn update_settings(
        &mut self,
        canister: Principal,
        sender: Option<Principal>,
        settings: mgmt::CanisterSettings,
    ) -> Result<(), SimError> {
        self.check_controller(canister, sender)?;
        let c = self.canisters.get_mut(&canister).unwrap();
        let controllers = mgmt::apply_settings(&mut c.settings, &settings)?;
        c.store.data_mut().sys.version += 1;
        if let Some(controllers) = controllers {
            c.store.data_mut().sys.controllers = controllers.clone();
            let sender = sender.unwrap_or_else(Self::default_controller);
            self.record_change(
                canister,
                sender,
                mgmt::ChangeDetails::ControllersChange(mgmt::ControllersChangeRecord {
                    controllers,
                }),
            );
        }
        Ok(())
    }

    /// The canister's settings.
    pub fn settings(&self, canister: Principal) -> Option<&mgmt::Settings> {
        self.canisters.get(&canister).map(|c| &c.settings)
    }

    /// Memory the canister uses as the IC counts it here: Wasm heap, stable memory and the
    /// Wasm binary.
    pub fn memory_usage(&self, canister: Principal) -> Option<u64> {
        let c = self.canisters.get(&canister)?;
        Some(canister_memory_usage(c))
    }

    /// The `canister_status` record the management canister returns.
    pub fn canister_status_result(
        &self,
        canister: Principal,
    ) -> Option<mgmt::CanisterStatusResult> {
        let c = self.canisters.get(&canister)?;
        let d = c.store.data();
        let s = &c.settings;
        let heap = c
            .inst
            .as_ref()
            .and_then(|i| i.memory.map(|m| m.data_size(&c.store) as u64))
            .unwrap_or(0);
        let binary = c.inst.as_ref().map_or(0, |i| i.module_len as u64);
        let memory_size = canister_memory_usage(c);
        let charged = if s.memory_allocation > 0 {
            s.memory_allocation
        } else {
            memory_size
        } as u128;
        let idle = (charged * mgmt::GIB_STORAGE_PER_SECOND_FEE / (1 << 30)
            + s.compute_allocation as u128 * mgmt::COMPUTE_PERCENT_PER_SECOND_FEE)
            * 86_400;
        let n = |v: u128| candid::Nat::from(v);
        Some(mgmt::CanisterStatusResult {
            status: match c.status {
                CanisterStatus::Running => mgmt::CanisterStatusType::Running,
                CanisterStatus::Stopping => mgmt::CanisterStatusType::Stopping,
                CanisterStatus::Stopped => mgmt::CanisterStatusType::Stopped,
            },
            ready_for_migration: false,
            version: d.sys.version,
            settings: mgmt::DefiniteCanisterSettings {
                controllers: d.sys.controllers.clone(),
                compute_allocation: n(s.compute_allocation as u128),
                memory_allocation: n(s.memory_allocation as u128),
                freezing_threshold: n(s.freezing_threshold as u128),
                reserved_cycles_limit: n(s.reserved_cycles_limit),
                log_visibility: s.log_visibility.clone(),
                wasm_memory_limit: n(s.wasm_memory_limit as u128),
                wasm_memory_threshold: n(s.wasm_memory_threshold as u128),
                log_memory_limit: n(s.log_memory_limit as u128),
                snapshot_visibility: s.snapshot_visibility.clone(),
                status_visibility: s.status_visibility.clone(),
                minimum_incoming_canister_call_cycles: n(s.minimum_incoming_canister_call_cycles),
                environment_variables: s.environment_variables.clone(),
            },
            module_hash: c.inst.as_ref().map(|i| i.module_hash.to_vec()),
            memory_size: n(memory_size as u128),
            memory_metrics: mgmt::MemoryMetrics {
                wasm_memory_size: n(heap as u128),
                stable_memory_size: n(d.stable.len() as u128),
                global_memory_size: n(0),
                wasm_binary_size: n(binary as u128),
                custom_sections_size: n(0),
                canister_history_size: n(0),
                wasm_chunk_store_size: n(0),
                snapshots_size: n(0),
                log_memory_store_size: n(0),
            },
            cycles: n(d.sys.cycles),
            reserved_cycles: n(0),
            idle_cycles_burned_per_day: n(idle),
            query_stats: mgmt::QueryStats {
                num_calls_total: n(0),
                num_instructions_total: n(0),
                request_payload_bytes_total: n(0),
                response_payload_bytes_total: n(0),
            },
        })
    }

    /// The `canister_info` record (anyone may ask).
    pub fn canister_info(
        &self,
        canister: Principal,
        num_requested_changes: Option<u64>,
    ) -> Option<mgmt::CanisterInfoResult> {
        let c = self.canisters.get(&canister)?;
        let n = num_requested_changes
            .unwrap_or(0)
            .min(c.history.len() as u64) as usize;
        Some(mgmt::CanisterInfoResult {
            total_num_changes: c.total_changes,
            recent_changes: c.history[c.history.len() - n..].to_vec(),
            module_hash: c.inst.as_ref().map(|i| i.module_hash.to_vec()),
            controllers: c.store.data().sys.controllers.clone(),
        })
    }

    pub fn canister_exists(&self, canister: Principal) -> bool {
        self.canisters.contains_key(&canister)
    }

    pub fn canister_status(&self, canister: Principal) -> Option<CanisterStatus> {
        self.canisters.get(&canister).map(|c| c.status)
    }

    pub fn controllers(&self, canister: Principal) -> Option<Vec<Principal>> {
        self.canisters
            .get(&canister)
            .map(|c| c.store.data().sys.controllers.clone())
    }

    pub fn set_controllers(
        &mut self,
        canister: Principal,
        sender: Option<Principal>,
        controllers: Vec<Principal>,
    ) -> Result<(), SimError> {
        let settings = mgmt::CanisterSettings {
            controllers: Some(controllers),
            ..Default::default()
        };
        self.update_settings(canister, sender, settings)
    }

    /// The canister's `ic0.canister_version`.
    pub fn canister_version(&self, canister: Principal) -> Option<u64> {
        self.canisters
            .get(&canister)
            .map(|c| c.store.data().sys.version)
    }

    /// SHA-256 of the installed module (as given, before instrumentation).
    pub fn module_hash(&self, canister: Principal) -> Option<[u8; 32]> {
        self.canisters
            .get(&canister)?
            .inst
            .as_ref()
            .map(|i| i.module_hash)
    }

    pub fn cycle_balance(&self, canister: Principal) -> Option<u128> {
        self.canisters
            .get(&canister)
            .map(|c| c.store.data().sys.cycles)
    }

    pub fn add_cycles(&mut self, canister: Principal, amount: u128) {
        if let Some(c) = self.canisters.get_mut(&canister) {
            c.store.data_mut().sys.cycles += amount;
        }
    }

    pub fn certified_data(&self, canister: Principal) -> Option<Vec<u8>> {
        self.canisters
            .get(&canister)
            .map(|c| c.store.data().sys.certified_data.clone())
    }

    /// The canister's global timer (0 = inactive).
    pub fn global_timer(&self, canister: Principal) -> Option<u64> {
        self.canisters
            .get(&canister)
            .map(|c| c.store.data().sys.global_timer)
    }

    /// Current stable memory contents.
    pub fn stable_memory(&self, canister: Principal) -> Option<&[u8]> {
        self.canisters
            .get(&canister)
            .map(|c| c.store.data().stable.as_slice())
    }

    /// Test setup, not an IC operation: replace a canister's stable memory wholesale, e.g. with
    /// a journal the engine filled natively (much faster than filling it through messages).
    /// `bytes.len()` must be a multiple of the 64 KiB Wasm page.
    pub fn set_stable_memory(&mut self, canister: Principal, bytes: Vec<u8>) {
        assert_eq!(
            bytes.len() % 65_536,
            0,
            "stable memory is whole 64 KiB pages"
        );
        self.gen += 1;
        let gen = self.gen;
        let c = self
            .canisters
            .get_mut(&canister)
            .expect("set_stable_memory: no such canister");
        let pages = bytes.len().div_ceil(dirty::page());
        c.store.data_mut().stable = bytes;
        c.stable_gen = vec![gen; pages];
        c.epoch = gen;
        c.stable_epoch = gen;
        c.restored = None;
    }

    /// Current Wasm heap contents (None without a module or memory).
    pub fn wasm_memory(&self, canister: Principal) -> Option<&[u8]> {
        let c = self.canisters.get(&canister)?;
        let m = c.inst.as_ref()?.memory?;
        Some(m.data(&c.store))
    }

    /// Number of open call contexts of the canister.
    pub fn open_call_contexts(&self, canister: Principal) -> usize {
        self.canisters
            .get(&canister)
            .map_or(0, |c| c.contexts.len())
    }

    fn check_controller(
        &self,
        canister: Principal,
        sender: Option<Principal>,
    ) -> Result<(), SimError> {
        let c = self
            .canisters
            .get(&canister)
            .ok_or(SimError::CanisterNotFound(canister))?;
        let sender = sender.unwrap_or_else(Self::default_controller);
        if !c.store.data().sys.controllers.contains(&sender) {
            return Err(SimError::NotController { canister, sender });
        }
        Ok(())
    }

    fn instantiate(
        &self,
        store: &mut Store<Ctx>,
        compiled: &Arc<Compiled>,
        hash: [u8; 32],
    ) -> Result<Inst, SimError> {
        store.set_fuel(self.limits.install).ok();
        store.data_mut().msg = MsgState::new(MessageKind::Start);
        store.data_mut().memory = None;
        let instance = self
            .linker
            .instantiate(&mut *store, &compiled.module)
            .map_err(|e| SimError::InvalidWasm(format!("instantiation failed: {e:?}")))?;
        let memory = if compiled.has_memory {
            instance.get_memory(&mut *store, instrument::MEMORY_EXPORT)
        } else {
            None
        };
        store.data_mut().memory = memory;
        let table = if compiled.has_table {
            instance.get_table(&mut *store, instrument::TABLE_EXPORT)
        } else {
            None
        };
        let globals = compiled
            .global_exports
            .iter()
            .map(|g| {
                instance
                    .get_global(&mut *store, g)
                    .expect("instrumented global")
            })
            .collect();
        Ok(Inst {
            compiled: compiled.clone(),
            instance,
            memory,
            table,
            globals,
            module_hash: hash,
            module_len: compiled.wasm_len,
        })
    }

    /// Install a module on an empty canister and run `canister_init(arg)`.
    pub fn install_canister(
        &mut self,
        canister: Principal,
        wasm: Vec<u8>,
        arg: Vec<u8>,
        sender: Option<Principal>,
    ) -> Result<(), SimError> {
        self.install_code_mode(
            canister,
            wasm,
            arg,
            sender,
            mgmt::CanisterInstallMode::Install,
        )
    }

    /// Replace the module, dropping heap *and* stable memory, then run `canister_init(arg)`.
    pub fn reinstall_canister(
        &mut self,
        canister: Principal,
        wasm: Vec<u8>,
        arg: Vec<u8>,
        sender: Option<Principal>,
    ) -> Result<(), SimError> {
        self.install_code_mode(
            canister,
            wasm,
            arg,
            sender,
            mgmt::CanisterInstallMode::Reinstall,
        )
    }

    /// Upgrade: `canister_pre_upgrade` (old module), keep stable memory, new module,
    /// `canister_post_upgrade(arg)`. Any trap rolls the whole upgrade back. The global timer is
    /// deactivated. Like the IC, the canister need not be stopped (but should be).
    pub fn upgrade_canister(
        &mut self,
        canister: Principal,
        wasm: Vec<u8>,
        arg: Vec<u8>,
        sender: Option<Principal>,
    ) -> Result<(), SimError> {
        self.install_code_mode(
            canister,
            wasm,
            arg,
            sender,
            mgmt::CanisterInstallMode::Upgrade(None),
        )
    }

    /// `install_code` with any mode, as the management canister runs it (controllers checked;
    /// `install` needs an empty canister, `upgrade` an installed one; `skip_pre_upgrade`
    /// honoured).
    pub fn install_code_mode(
        &mut self,
        canister: Principal,
        wasm: Vec<u8>,
        arg: Vec<u8>,
        sender: Option<Principal>,
        mode: mgmt::CanisterInstallMode,
    ) -> Result<(), SimError> {
        self.check_controller(canister, sender)?;
        let installed = self.canisters[&canister].inst.is_some();
        let (upgrade, skip_pre_upgrade, record_mode) = match mode {
            mgmt::CanisterInstallMode::Install => {
                if installed {
                    return Err(SimError::AlreadyInstalled(canister));
                }
                (false, false, mgmt::CodeDeploymentMode::Install)
            }
            mgmt::CanisterInstallMode::Reinstall => {
                (false, false, mgmt::CodeDeploymentMode::Reinstall)
            }
            mgmt::CanisterInstallMode::Upgrade(flags) => {
                if !installed {
                    return Err(SimError::NotInstalled(canister));
                }
                let flags = flags.unwrap_or_default();
                if flags.wasm_memory_persistence == Some(mgmt::WasmMemoryPersistence::Keep) {
                    // Keeping the heap is enhanced orthogonal persistence (Motoko), which the
                    // simulator does not model.
                    return Err(SimError::InvalidSettings("Invalid upgrade option: ic-sim does not support `wasm_memory_persistence = opt keep` (enhanced orthogonal persistence).".into()));
                }
                (
                    true,
                    flags.skip_pre_upgrade.unwrap_or(false),
                    mgmt::CodeDeploymentMode::Upgrade,
                )
            }
        };
        self.install_code(canister, &wasm, arg, sender, upgrade, skip_pre_upgrade)?;
        let hash = self.canisters[&canister]
            .inst
            .as_ref()
            .unwrap()
            .module_hash
            .to_vec();
        let sender = sender.unwrap_or_else(Self::default_controller);
        self.record_change(
            canister,
            sender,
            mgmt::ChangeDetails::CodeDeployment(mgmt::CodeDeploymentRecord {
                mode: record_mode,
                module_hash: hash,
            }),
        );
        Ok(())
    }

    fn install_code(
        &mut self,
        canister: Principal,
        wasm: &[u8],
        arg: Vec<u8>,
        sender: Option<Principal>,
        upgrade: bool,
        skip_pre_upgrade: bool,
    ) -> Result<(), SimError> {
        let compiled = compile(wasm)?;
        let hash: [u8; 32] = sha2::Sha256::digest(wasm).into();
        let sender = sender.unwrap_or_else(Self::default_controller);
        // Full snapshot for rolling back a failed install/upgrade.
        let old_snapshot = if self.canisters[&canister].inst.is_some() {
            Some(self.install_snapshot(canister))
        } else {
            None
        };
        // Stable memory is not copied (it holds every memory of a MemoryManager: tens of MiB):
        // a failed upgrade undoes pre_upgrade's committed writes (post_upgrade's own are rolled
        // back with its trap); a failed install or reinstall puts the old memory back.
        let mut pre_upgrade_undo = Vec::new();
        // pre_upgrade and post_upgrade (or init) share one install_code budget.
        let mut install_budget = self.limits.install;
        if upgrade && !skip_pre_upgrade {
            let has_pre = self.canisters[&canister]
                .inst
                .as_ref()
                .unwrap()
                .has_export("canister_pre_upgrade");
            if has_pre {
                let mut msg = MsgState::new(MessageKind::PreUpgrade);
                msg.caller = sender;
                let ex = self.run(
                    canister,
                    MessageKind::PreUpgrade,
                    Entry::Export("canister_pre_upgrade".into()),
                    msg,
                    None,
                );
                if let Some(t) = ex.trap {
                    return Err(SimError::Trapped {
                        canister,
                        message: format!("pre_upgrade: {t}"),
                    });
                }
                install_budget -= ex.instructions;
                pre_upgrade_undo = ex.stable_undo;
            }
        }
        // Fresh store with the system state carried over.
        let can = self.canisters.get_mut(&canister).unwrap();
        let placeholder = new_store(blank_ctx(self.subnet));
        let old_store = std::mem::replace(&mut can.store, placeholder);
        let old_inst = can.inst.take();
        let mut ctx = old_store.into_data();
        let saved_sys = ctx.sys.clone();
        let mut replaced_stable = None;
        if !upgrade {
            replaced_stable = Some(std::mem::take(&mut ctx.stable));
            ctx.sys.certified_data.clear();
            // Stable memory starts over: no page generation or restore holds any more.
            self.gen += 1;
            can.stable_epoch = self.gen;
            can.stable_gen.clear();
            can.restored = None;
        }
        ctx.sys.global_timer = 0;
        ctx.sys.version += 1;
        ctx.print_logs = self.print_logs;
        let mut store = new_store(ctx);
        let inst = match self.instantiate(&mut store, &compiled, hash) {
            Ok(i) => i,
            Err(e) => {
                let can = self.canisters.get_mut(&canister).unwrap();
                let mut ctx = store.into_data();
                ctx.sys = saved_sys;
                restore_stable(&mut ctx.stable, replaced_stable, pre_upgrade_undo);
                can.store = new_store(ctx);
                can.inst = None;
                can.heap = None;
                if let (Some(old), Some(snap)) = (old_inst, old_snapshot) {
                    self.reinstate(canister, old.compiled.clone(), old.module_hash, &snap, None);
                }
                return Err(e);
            }
        };
        let has_init = if upgrade {
            inst.has_export("canister_post_upgrade")
        } else {
            inst.has_export("canister_init")
        };
        let can = self.canisters.get_mut(&canister).unwrap();
        can.store = store;
        can.inst = Some(inst);
        self.attach_heap(canister, None);
        if has_init {
            let kind = if upgrade {
                MessageKind::PostUpgrade
            } else {
                MessageKind::Init
            };
            let name = if upgrade {
                "canister_post_upgrade"
            } else {
                "canister_init"
            };
            let mut msg = MsgState::new(kind);
            msg.caller = sender;
            msg.arg = arg;
            msg.fuel_limit = install_budget;
            let ex = self.run(canister, kind, Entry::Export(name.into()), msg, None);
            if let Some(t) = ex.trap {
                // Roll back to the state before install/upgrade.
                let can = self.canisters.get_mut(&canister).unwrap();
                can.inst = None;
                can.heap = None;
                let placeholder = new_store(blank_ctx(self.subnet));
                let mut ctx = std::mem::replace(&mut can.store, placeholder).into_data();
                ctx.sys = saved_sys;
                restore_stable(&mut ctx.stable, replaced_stable, pre_upgrade_undo);
                can.store = new_store(ctx);
                if let (Some(old), Some(snap)) = (old_inst, old_snapshot) {
                    self.reinstate(canister, old.compiled.clone(), old.module_hash, &snap, None);
                }
                return Err(SimError::Trapped {
                    canister,
                    message: format!("{}: {t}", if upgrade { "post_upgrade" } else { "init" }),
                });
            }
        }
        Ok(())
    }

    /// Re-create an instance of `compiled` and load a snapshot into it. `page_gen` keeps the
    /// generations when the content is the canister's committed heap.
    fn reinstate(
        &mut self,
        canister: Principal,
        compiled: Arc<Compiled>,
        hash: [u8; 32],
        snap: &Snapshot,
        page_gen: Option<Vec<u64>>,
    ) {
        let can = self.canisters.get_mut(&canister).unwrap();
        can.heap = None;
        let placeholder = new_store(blank_ctx(self.subnet));
        let ctx = std::mem::replace(&mut can.store, placeholder).into_data();
        let mut store = new_store(ctx);
        let inst = self
            .instantiate(&mut store, &compiled, hash)
            .expect("re-instantiating a previously instantiated module");
        load_snapshot(&mut store, &inst, snap);
        let can = self.canisters.get_mut(&canister).unwrap();
        can.store = store;
        can.inst = Some(inst);
        self.attach_heap(canister, page_gen);
    }

    /// Start dirty-page tracking of the canister's current heap. Without `page_gen` every page
    /// counts as changed now (and the instance as new, for snapshots).
    fn attach_heap(&mut self, canister: Principal, page_gen: Option<Vec<u64>>) {
        let fresh = page_gen.is_none();
        if fresh {
            self.gen += 1;
        }
        let gen = self.gen;
        let can = self.canisters.get_mut(&canister).unwrap();
        if fresh {
            // A new instance: its heap is new, its stable memory (and `restored`) is not.
            can.epoch = gen;
        }
        can.globals = match &can.inst {
            Some(i) => i.globals.iter().map(|g| g.get(&mut can.store)).collect(),
            None => Vec::new(),
        };
        let Some(m) = can.inst.as_ref().and_then(|i| i.memory) else {
            can.heap = None;
            return;
        };
        let mapping = dirty::Mapping {
            ptr: m.data_ptr(&can.store),
            len: m.data_size(&can.store),
        };
        let shadow = m.data(&can.store).to_vec();
        let tracker = dirty::Tracker::new();
        let t = tracker.clone();
        // SAFETY: the handler only touches the tracker's atomics and calls mprotect on pages
        // of this store's own heap.
        unsafe {
            wasmtime::unix::StoreExt::set_signal_handler(&mut can.store, move |sig, info, _| {
                t.on_fault(sig, info)
            });
        }
        let mut heap = dirty::Heap::new(tracker, shadow, gen, self.dirty_tracking);
        if let Some(g) = page_gen {
            if g.len() == heap.page_gen.len() {
                heap.page_gen = g;
            }
        }
        heap.arm(mapping);
        can.heap = Some(heap);
    }

    /// Heap (committed content), globals and system state, for rolling back an install.
    fn install_snapshot(&mut self, canister: Principal) -> Snapshot {
        let can = self.canisters.get_mut(&canister).unwrap();
        let inst = can.inst.as_ref().unwrap();
        let memory = match (&can.heap, inst.memory) {
            (Some(h), _) => h.shadow.clone(),
            (None, Some(m)) => m.data(&can.store).to_vec(),
            (None, None) => Vec::new(),
        };
        let globals = inst.globals.iter().map(|g| g.get(&mut can.store)).collect();
        Snapshot {
            memory,
            globals,
            sys: can.store.data().sys.clone(),
        }
    }

    /// Request a stop: the canister becomes `Stopping` and `Stopped` once no call context is
    /// open. Returns immediately (use [`Simulator::stop_canister`] to wait).
    pub fn request_stop(
        &mut self,
        canister: Principal,
        sender: Option<Principal>,
    ) -> Result<(), SimError> {
        self.check_controller(canister, sender)?;
        let c = self.canisters.get_mut(&canister).unwrap();
        if c.status == CanisterStatus::Running {
            c.status = CanisterStatus::Stopping;
            c.store.data_mut().sys.status = 2;
        }
        self.update_stopping(canister);
        Ok(())
    }

    /// Stop a canister, running the system until its open call contexts are closed.
    pub fn stop_canister(
        &mut self,
        canister: Principal,
        sender: Option<Principal>,
    ) -> Result<(), SimError> {
        self.request_stop(canister, sender)?;
        let mut steps = 0;
        while self.canisters[&canister].status != CanisterStatus::Stopped {
            if !self.step() || steps > MAX_STEPS {
                return Err(SimError::StopTimedOut(canister));
            }
            steps += 1;
        }
        Ok(())
    }

    pub fn start_canister(
        &mut self,
        canister: Principal,
        sender: Option<Principal>,
    ) -> Result<(), SimError> {
        self.check_controller(canister, sender)?;
        let c = self.canisters.get_mut(&canister).unwrap();
        let was_stopping = c.status == CanisterStatus::Stopping;
        c.status = CanisterStatus::Running;
        c.store.data_mut().sys.status = 1;
        if was_stopping {
            self.cancel_stop_waiters(canister);
        }
        Ok(())
    }

    /// Delete a stopped canister.
    pub fn delete_canister(
        &mut self,
        canister: Principal,
        sender: Option<Principal>,
    ) -> Result<(), SimError> {
        self.check_controller(canister, sender)?;
        if self.canisters[&canister].status != CanisterStatus::Stopped {
            return Err(SimError::NotStopped(canister));
        }
        self.canisters.remove(&canister);
        Ok(())
    }

    /// Remove the module (and heap and stable memory); open call contexts are rejected.
    pub fn uninstall_canister(
        &mut self,
        canister: Principal,
        sender: Option<Principal>,
    ) -> Result<(), SimError> {
        self.check_controller(canister, sender)?;
        let subnet = self.subnet;
        self.gen += 1;
        let epoch = self.gen;
        let c = self.canisters.get_mut(&canister).unwrap();
        c.inst = None;
        c.heap = None;
        c.epoch = epoch;
        c.stable_epoch = epoch;
        c.stable_gen.clear();
        c.restored = None;
        c.globals.clear();
        let mut ctx = std::mem::replace(&mut c.store, new_store(blank_ctx(subnet))).into_data();
        ctx.stable.clear();
        ctx.sys.certified_data.clear();
        ctx.sys.global_timer = 0;
        ctx.sys.version += 1;
        ctx.memory = None;
        c.store = new_store(ctx);
        c.callbacks.clear();
        let contexts: Vec<CallContext> = c.contexts.drain().map(|(_, v)| v).collect();
        for cc in contexts {
            if !cc.responded {
                self.respond_to_origin(
                    cc.origin,
                    Payload::Reject(
                        RejectCode::CanisterReject,
                        "Canister has been uninstalled.".into(),
                    ),
                    0,
                );
            }
        }
        self.update_stopping(canister);
        let sender = sender.unwrap_or_else(Self::default_controller);
        self.record_change(canister, sender, mgmt::ChangeDetails::CodeUninstall);
        Ok(())
    }

    // ---------------------------------------------------------------- calls

    /// Submit an ingress update call; returns immediately.
    pub fn submit_call(
        &mut self,
        canister: Principal,
        sender: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> MessageId {
        let id = MessageId(self.next_ingress);
        self.next_ingress += 1;
        let size = (method.len() + arg.len()) as u64;
        let max = self.size_limits.max_ingress_bytes;
        if size > max {
            // On the IC the HTTP endpoint refuses the submission (no reject code exists for
            // it); ic-sim reports it as SYS_FATAL so the call fails loudly.
            self.ingress.insert(
                id,
                IngressStatus::Done(Err(reject(
                    RejectCode::SysFatal,
                    format!("Request {} is too large. Message byte size {size} is larger than the max allowed {max}.", id.0),
                ))),
            );
            return id;
        }
        // canister_inspect_message runs (non-replicated) before the message is accepted.
        if let Some(c) = self.canisters.get(&canister) {
            let has_inspect = c.status == CanisterStatus::Running
                && c.inst
                    .as_ref()
                    .is_some_and(|i| i.has_export("canister_inspect_message"));
            if has_inspect {
                let mut msg = MsgState::new(MessageKind::InspectMessage);
                msg.caller = sender;
                msg.method = method.to_string();
                msg.arg = arg.clone();
                let ex = self.run(
                    canister,
                    MessageKind::InspectMessage,
                    Entry::Export("canister_inspect_message".into()),
                    msg,
                    None,
                );
                if !ex.accepted || ex.trap.is_some() {
                    let why = ex.trap.map(|t| format!(": {t}")).unwrap_or_default();
                    self.ingress.insert(
                        id,
                        IngressStatus::Done(Err(reject(
                            RejectCode::CanisterReject,
                            format!("Canister {canister} rejected the message in canister_inspect_message{why}"),
                        ))),
                    );
                    return id;
                }
            }
        }
        self.ingress.insert(id, IngressStatus::Pending);
        self.enqueue(Item::Request(Request {
            sender,
            receiver: canister,
            method: method.to_string(),
            arg,
            cycles: 0,
            origin: Origin::Ingress(id),
            deadline: None,
            call_index: None,
            lose_response: None,
        }));
        id
    }

    /// Run the system until the ingress message completes.
    pub fn await_call(&mut self, id: MessageId) -> Result<Vec<u8>, RejectResponse> {
        let mut steps = 0u64;
        loop {
            match self.ingress.get(&id) {
                None => panic!("ic-sim: unknown message id {id:?}"),
                Some(IngressStatus::Done(r)) => return r.clone(),
                Some(IngressStatus::Pending) => {}
            }
            if !self.step() {
                panic!("ic-sim: the system is idle but message {id:?} has not completed (no response will ever arrive)");
            }
            steps += 1;
            if steps > MAX_STEPS {
                panic!(
                    "ic-sim: message {id:?} did not complete within {MAX_STEPS} steps (livelock?)"
                );
            }
        }
    }

    /// Result of an ingress message if it completed.
    pub fn call_result(&self, id: MessageId) -> Option<Result<Vec<u8>, RejectResponse>> {
        match self.ingress.get(&id)? {
            IngressStatus::Done(r) => Some(r.clone()),
            IngressStatus::Pending => None,
        }
    }

    /// An ingress update call, running the system until it completes.
    pub fn update_call(
        &mut self,
        canister: Principal,
        sender: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<Vec<u8>, RejectResponse> {
        let id = self.submit_call(canister, sender, method, arg);
        self.await_call(id)
    }

    /// A query call: runs immediately on the current state and never commits state.
    pub fn query_call(
        &mut self,
        canister: Principal,
        sender: Principal,
        method: &str,
        arg: Vec<u8>,
    ) -> Result<Vec<u8>, RejectResponse> {
        let Some(c) = self.canisters.get(&canister) else {
            return Err(reject(
                RejectCode::DestinationInvalid,
                format!("Canister {canister} not found"),
            ));
        };
        if c.status != CanisterStatus::Running {
            return Err(reject(
                RejectCode::CanisterError,
                format!("Canister {canister} is not running"),
            ));
        }
        let Some(inst) = c.inst.as_ref() else {
            return Err(reject(
                RejectCode::CanisterError,
                format!("Canister {canister} has no Wasm module"),
            ));
        };
        let export = if inst.has_export(&format!("canister_query {method}")) {
            format!("canister_query {method}")
        } else if inst.has_export(&format!("canister_composite_query {method}")) {
            format!("canister_composite_query {method}")
        } else {
            return Err(reject(
                RejectCode::CanisterError,
                format!("Canister {canister} has no query method '{method}'"),
            ));
        };
        let mut msg = MsgState::new(MessageKind::Query);
        msg.caller = sender;
        msg.arg = arg;
        msg.method = method.to_string();
        let ex = self.run(
            canister,
            MessageKind::Query,
            Entry::Export(export),
            msg,
            None,
        );
        if let Some(t) = ex.trap {
            return Err(reject(
                RejectCode::CanisterError,
                format!("Error from Canister {canister}: {t}"),
            ));
        }
        match ex.response {
            Some(Payload::Reply(d)) => Ok(d),
            Some(Payload::Reject(code, m)) => Err(reject(code, m)),
            None => Err(reject(
                RejectCode::CanisterError,
                format!("Error from Canister {canister}: Canister did not reply to the call"),
            )),
        }
    }

    /// Candid update call.
    pub fn update_candid<A, R>(
        &mut self,
        canister: Principal,
        sender: Principal,
        method: &str,
        args: A,
    ) -> Result<R, RejectResponse>
    where
        A: candid::utils::ArgumentEncoder,
        R: for<'a> candid::utils::ArgumentDecoder<'a>,
    {
        let arg =
            candid::encode_args(args).expect("ic-sim: candid encoding of the arguments failed");
        let bytes = self.update_call(canister, sender, method, arg)?;
        Ok(candid::decode_args(&bytes)
            .unwrap_or_else(|e| panic!("ic-sim: cannot decode the reply of {method}: {e}")))
    }

    /// Candid query call.
    pub fn query_candid<A, R>(
        &mut self,
        canister: Principal,
        sender: Principal,
        method: &str,
        args: A,
    ) -> Result<R, RejectResponse>
    where
        A: candid::utils::ArgumentEncoder,
        R: for<'a> candid::utils::ArgumentDecoder<'a>,
    {
        let arg =
            candid::encode_args(args).expect("ic-sim: candid encoding of the arguments failed");
        let bytes = self.query_call(canister, sender, method, arg)?;
        Ok(candid::decode_args(&bytes)
            .unwrap_or_else(|e| panic!("ic-sim: cannot decode the reply of {method}: {e}")))
    }

    /// Deliver queued messages and due timers until the system is idle (bounded).
    pub fn tick(&mut self) {
        let mut steps = 0;
        while self.step() {
            steps += 1;
            if steps > MAX_STEPS {
                panic!("ic-sim: tick did not reach quiescence within {MAX_STEPS} steps");
            }
        }
    }

    /// Execute at most one message. Returns false when nothing is runnable.
    pub fn step(&mut self) -> bool {
        let before = self.message_counter;
        self.run_hooks();
        self.expire_deadlines();
        let tasks = self.runnable();
        if tasks.is_empty() {
            // A hook may have run the system itself (a stop waits for call contexts to close)
            // and finished what the caller waits for: that was progress, not idleness.
            return self.message_counter != before;
        }
        let pick = match &mut self.scheduler {
            None => 0,
            Some(rng) => rng.below(tasks.len()),
        };
        match tasks[pick] {
            Task::Timer(c) => self.run_timer(c),
            Task::Queue(i) => {
                let q = self.queue.remove(i);
                match q.item {
                    Item::Request(r) => self.deliver_request(r),
                    Item::Response(r) => self.deliver_response(r),
                }
            }
        }
        true
    }

    /// Number of queued (undelivered) messages.
    pub fn queued_messages(&self) -> usize {
        self.queue.len()
    }

    /// Run the hooks scheduled before the next message (see [`Simulator::before_message`]).
    fn run_hooks(&mut self) {
        while let Some((&at, _)) = self.hooks.first_key_value() {
            if at > self.message_counter {
                break;
            }
            let hooks = self.hooks.remove(&at).unwrap();
            for h in hooks {
                h(self);
            }
        }
    }

    fn enqueue(&mut self, item: Item) {
        self.seq += 1;
        self.queue.push(Queued {
            seq: self.seq,
            item,
        });
    }

    /// Eligible tasks: due timers first, then the head of every (sender, receiver) request
    /// stream and every response, in FIFO order.
    fn runnable(&self) -> Vec<Task> {
        let mut tasks = Vec::new();
        for (id, c) in &self.canisters {
            let t = c.store.data().sys.global_timer;
            if c.status == CanisterStatus::Running && c.inst.is_some() && t != 0 && t <= self.time {
                tasks.push(Task::Timer(*id));
            }
        }
        let mut seen: Vec<(Principal, Principal)> = Vec::new();
        let mut order: Vec<(u64, usize)> = Vec::new();
        for (i, q) in self.queue.iter().enumerate() {
            match &q.item {
                Item::Request(r) => {
                    let key = (r.sender, r.receiver);
                    if !seen.contains(&key) {
                        seen.push(key);
                        order.push((q.seq, i));
                    }
                }
                Item::Response(_) => order.push((q.seq, i)),
            }
        }
        order.sort();
        tasks.extend(order.into_iter().map(|(_, i)| Task::Queue(i)));
        tasks
    }

    fn expire_deadlines(&mut self) {
        let now = self.time;
        self.expire_stop_waiters(now);
        let mut expired = Vec::new();
        for (cid, c) in self.canisters.iter_mut() {
            for (id, cb) in c.callbacks.iter_mut() {
                if let Some(d) = cb.deadline {
                    if d <= now && !cb.response_enqueued {
                        cb.response_enqueued = true;
                        expired.push((*cid, *id));
                    }
                }
            }
        }
        expired.sort();
        for (cid, id) in expired {
            self.enqueue(Item::Response(Response {
                receiver: cid,
                callback: id,
                payload: Payload::Reject(
                    RejectCode::SysUnknown,
                    "Call deadline has expired.".into(),
                ),
                refund: 0,
            }));
        }
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn respond_to_origin(&mut self, origin: Origin, payload: Payload, refund: u128) {
        match origin {
            Origin::Ingress(id) => {
                let r = match payload {
                    Payload::Reply(d) => Ok(d),
                    Payload::Reject(code, m) => Err(reject(code, m)),
                };
                self.ingress.insert(id, IngressStatus::Done(r));
            }
            Origin::Canister { caller, callback } => {
                if let Some(c) = self.canisters.get_mut(&caller) {
                    if let Some(cb) = c.callbacks.get_mut(&callback) {
                        if cb.response_enqueued {
                            return; // already timed out: the late response is dropped
                        }
                        cb.response_enqueued = true;
                    }
                }
                self.enqueue(Item::Response(Response {
                    receiver: caller,
                    callback,
                    payload,
                    refund,
                }));
            }
            Origin::System => {}
        }
    }

    fn reject_request(&mut self, r: &Request, code: RejectCode, msg: String) {
        self.respond_to_origin(r.origin, Payload::Reject(code, msg), r.cycles);
    }

    fn deliver_request(&mut self, r: Request) {
        if let Some(d) = r.deadline {
            if d <= self.time {
                // Expired bounded-wait request: dropped (the caller got SYS_UNKNOWN).
                self.reject_request(
                    &r,
                    RejectCode::SysUnknown,
                    "Call deadline has expired.".into(),
                );
                return;
            }
        }
        // Fault injection: reject before delivery / lose the response.
        let mut lose_response = r.lose_response;
        if let (Some(index), Origin::Canister { caller, .. }) = (r.call_index, r.origin) {
            let info = CallInfo {
                index,
                from: caller,
                to: r.receiver,
                method: r.method.clone(),
                bounded_wait: r.deadline.is_some(),
            };
            if let Some(pos) = self.reject_faults.iter_mut().position(|f| (f.pred)(&info)) {
                let f = self.reject_faults.remove(pos);
                match f.when {
                    RejectWhen::BeforeDelivery => {
                        self.reject_request(
                            &r,
                            f.code,
                            format!(
                                "ic-sim: injected reject of call #{index} to {}.{} before delivery",
                                r.receiver, r.method
                            ),
                        );
                        return;
                    }
                    RejectWhen::AfterExecution => lose_response = Some(f.code),
                }
            }
        }
        let receiver = r.receiver;
        if receiver == Principal::management_canister() {
            self.management_call(r);
            return;
        }
        let Some(c) = self.canisters.get(&receiver) else {
            self.reject_request(
                &r,
                RejectCode::DestinationInvalid,
                format!("Canister {receiver} not found"),
            );
            return;
        };
        match c.status {
            CanisterStatus::Running => {}
            CanisterStatus::Stopping => {
                self.reject_request(
                    &r,
                    RejectCode::CanisterError,
                    format!("Canister {receiver} is stopping"),
                );
                return;
            }
            CanisterStatus::Stopped => {
                self.reject_request(
                    &r,
                    RejectCode::CanisterError,
                    format!("Canister {receiver} is stopped"),
                );
                return;
            }
        }
        let Some(inst) = c.inst.as_ref() else {
            self.reject_request(
                &r,
                RejectCode::CanisterError,
                format!("Canister {receiver} has no Wasm module"),
            );
            return;
        };
        let (kind, export) = if inst.has_export(&format!("canister_update {}", r.method)) {
            (MessageKind::Update, format!("canister_update {}", r.method))
        } else if inst.has_export(&format!("canister_query {}", r.method)) {
            (
                MessageKind::ReplicatedQuery,
                format!("canister_query {}", r.method),
            )
        } else {
            self.reject_request(
                &r,
                RejectCode::CanisterError,
                format!(
                    "Error from Canister {receiver}: Canister has no update method '{}'",
                    r.method
                ),
            );
            return;
        };
        let ctx_id = self.new_id();
        let deadline = r.deadline.unwrap_or(0);
        let origin = match (r.origin, lose_response) {
            (Origin::Canister { .. }, Some(code)) => {
                // The callee runs; its response is replaced by the forced reject.
                self.reject_request(
                    &r,
                    code,
                    format!(
                        "ic-sim: injected loss of the response of {}.{}",
                        receiver, r.method
                    ),
                );
                Origin::System
            }
            (o, _) => o,
        };
        let c = self.canisters.get_mut(&receiver).unwrap();
        c.contexts.insert(
            ctx_id,
            CallContext {
                origin,
                responded: false,
                outstanding: 0,
                cycles_available: r.cycles,
                instructions: 0,
                caller: r.sender,
            },
        );
        let mut msg = MsgState::new(kind);
        msg.arg = r.arg;
        msg.caller = r.sender;
        msg.method = r.method;
        msg.cycles_available = r.cycles;
        msg.deadline = deadline;
        let ex = self.run(receiver, kind, Entry::Export(export), msg, Some(ctx_id));
        self.finish(receiver, ctx_id, ex);
    }

    fn deliver_response(&mut self, resp: Response) {
        let Some(c) = self.canisters.get_mut(&resp.receiver) else {
            return;
        };
        let Some(cb) = c.callbacks.remove(&resp.callback) else {
            return;
        };
        if c.inst.is_none() {
            return;
        }
        let ctx_id = cb.ctx;
        let (kind, (fun, env)) = match &resp.payload {
            Payload::Reply(_) => (MessageKind::ReplyCallback, cb.call.reply),
            Payload::Reject(..) => (MessageKind::RejectCallback, cb.call.reject),
        };
        c.store.data_mut().sys.cycles += resp.refund;
        let (caller, cycles_ctx) = c
            .contexts
            .get(&ctx_id)
            .map(|cc| (cc.caller, cc.cycles_available))
            .unwrap_or((Principal::management_canister(), 0));
        let mut msg = MsgState::new(kind);
        msg.caller = caller;
        msg.cycles_available = cycles_ctx;
        msg.cycles_refunded = resp.refund;
        msg.deadline = cb.deadline.unwrap_or(0);
        match resp.payload {
            Payload::Reply(d) => msg.arg = d,
            Payload::Reject(code, m) => {
                msg.reject_code = code as u32;
                msg.reject_msg = m;
            }
        }
        if let Some(cc) = c.contexts.get_mut(&ctx_id) {
            cc.outstanding -= 1;
        }
        let ex = self.run(
            resp.receiver,
            kind,
            Entry::Table(fun, env),
            msg,
            Some(ctx_id),
        );
        let ex = if ex.trap.is_some() {
            let mut ex = ex;
            if let Some((cfun, cenv)) = cb.call.cleanup {
                // The cleanup runs on what the callback left of the message's budget, and both
                // count towards the call context (dfinity/ic
                // `rs/execution_environment/src/execution/response.rs`).
                let mut msg = MsgState::new(MessageKind::Cleanup);
                msg.fuel_limit = self.limits.update.saturating_sub(ex.instructions);
                let cl = self.run(
                    resp.receiver,
                    MessageKind::Cleanup,
                    Entry::Table(cfun, cenv),
                    msg,
                    Some(ctx_id),
                );
                // Cleanup cannot respond or call; only its state changes matter.
                ex.instructions += cl.instructions;
            }
            ex
        } else {
            ex
        };
        self.finish(resp.receiver, ctx_id, ex);
    }

    fn run_timer(&mut self, canister: Principal) {
        let c = self.canisters.get_mut(&canister).unwrap();
        // The timer is deactivated before the method runs.
        c.store.data_mut().sys.global_timer = 0;
        let has = c
            .inst
            .as_ref()
            .is_some_and(|i| i.has_export("canister_global_timer"));
        if !has {
            return;
        }
        let ctx_id = self.new_id();
        let c = self.canisters.get_mut(&canister).unwrap();
        c.contexts.insert(
            ctx_id,
            CallContext {
                origin: Origin::System,
                responded: true,
                outstanding: 0,
                cycles_available: 0,
                instructions: 0,
                caller: Principal::management_canister(),
            },
        );
        let msg = MsgState::new(MessageKind::GlobalTimer);
        let ex = self.run(
            canister,
            MessageKind::GlobalTimer,
            Entry::Export("canister_global_timer".into()),
            msg,
            Some(ctx_id),
        );
        self.finish(canister, ctx_id, ex);
    }

    /// After a message in call context `ctx_id`: commit response and calls, close the context.
    fn finish(&mut self, canister: Principal, ctx_id: u64, ex: Exec) {
        let mut new_callbacks = Vec::new();
        for call in ex.calls {
            let cb_id = self.new_id();
            let index = self.next_call_index;
            self.next_call_index += 1;
            let deadline = call
                .timeout_secs
                .map(|s| self.time + s as u64 * 1_000_000_000);
            self.enqueue(Item::Request(Request {
                sender: canister,
                receiver: call.callee,
                method: call.method.clone(),
                arg: call.arg.clone(),
                cycles: call.cycles,
                origin: Origin::Canister {
                    caller: canister,
                    callback: cb_id,
                },
                deadline,
                call_index: Some(index),
                lose_response: None,
            }));
            new_callbacks.push((
                cb_id,
                Callback {
                    ctx: ctx_id,
                    call,
                    deadline,
                    response_enqueued: false,
                },
            ));
        }
        let c = self.canisters.get_mut(&canister).unwrap();
        let Some(cc) = c.contexts.get_mut(&ctx_id) else {
            return;
        };
        cc.instructions += ex.instructions;
        cc.outstanding += new_callbacks.len() as u32;
        cc.cycles_available = ex.cycles_left;
        for (id, cb) in new_callbacks {
            c.callbacks.insert(id, cb);
        }
        let mut respond = None;
        if !cc.responded {
            if let Some(p) = ex.response {
                cc.responded = true;
                respond = Some(p);
            } else if cc.outstanding == 0 {
                cc.responded = true;
                let m = match ex.trap {
                    Some(t) => format!("Error from Canister {canister}: {t}"),
                    None => format!(
                        "Error from Canister {canister}: Canister did not reply to the call"
                    ),
                };
                respond = Some(Payload::Reject(RejectCode::CanisterError, m));
            }
        }
        let origin = cc.origin;
        let refund = if respond.is_some() {
            std::mem::take(&mut cc.cycles_available)
        } else {
            0
        };
        if cc.responded && cc.outstanding == 0 {
            let cc = c.contexts.remove(&ctx_id).unwrap();
            // Unaccepted cycles of a closed context go back to the caller with the response.
            let _ = cc;
        }
        if let Some(p) = respond {
            self.respond_to_origin(origin, p, refund);
        }
        self.update_stopping(canister);
    }

    fn update_stopping(&mut self, canister: Principal) {
        if let Some(c) = self.canisters.get_mut(&canister) {
            if c.status == CanisterStatus::Stopping && c.contexts.is_empty() {
                c.status = CanisterStatus::Stopped;
                c.store.data_mut().sys.status = 3;
                self.answer_stop_waiters(canister);
            }
        }
    }

    /// Size, queue and memory limits that apply while `canister` executes `msg`.
    fn set_message_limits(&self, canister: Principal, msg: &mut MsgState) {
        let l = &self.size_limits;
        let c = &self.canisters[&canister];
        msg.max_request_bytes = l.max_inter_canister_payload * l.local_subnet_request_multiplier;
        msg.max_reply_bytes = match msg.kind {
            MessageKind::Query | MessageKind::InspectMessage => l.max_query_reply,
            _ => l.max_inter_canister_payload,
        };
        msg.queue_capacity = l.queue_capacity;
        msg.log_capacity = c.settings.log_memory_limit;
        msg.inflight.clear();
        for cb in c.callbacks.values() {
            *msg.inflight.entry(cb.call.callee).or_insert(0) += 1;
        }
        // The replica does not enforce the Wasm memory limit in queries and response
        // executions (dfinity/ic `rs/embedders/src/wasmtime_embedder/system_api.rs`,
        // `effective_wasm_memory_limit`).
        msg.wasm_memory_limit = match msg.kind {
            MessageKind::Update
            | MessageKind::GlobalTimer
            | MessageKind::Heartbeat
            | MessageKind::Init
            | MessageKind::PreUpgrade
            | MessageKind::PostUpgrade => c.settings.wasm_memory_limit,
            _ => 0,
        };
        let usage = canister_memory_usage(c);
        msg.mem_available = if c.settings.memory_allocation > 0 {
            c.settings.memory_allocation.saturating_sub(usage)
        } else {
            let used: u64 = self
                .canisters
                .values()
                .map(|c| canister_memory_usage(c).max(c.settings.memory_allocation))
                .sum();
            l.subnet_memory_capacity.saturating_sub(used)
        };
    }

    /// Execute one message on `canister` atomically.
    fn run(
        &mut self,
        canister: Principal,
        kind: MessageKind,
        entry: Entry,
        mut msg: MsgState,
        ctx_id: Option<u64>,
    ) -> Exec {
        // `install_code` is atomic on the IC (start, init or pre_upgrade + post_upgrade in one
        // execution): a hook due inside it runs at the next message instead.
        if !matches!(
            kind,
            MessageKind::Start
                | MessageKind::Init
                | MessageKind::PreUpgrade
                | MessageKind::PostUpgrade
        ) {
            self.run_hooks();
        }
        let index = self.message_counter;
        self.message_counter += 1;
        let method = match (&entry, kind) {
            (_, MessageKind::InspectMessage) => Some(msg.method.clone()),
            (Entry::Export(e), _) => Some(
                e.split_once(' ')
                    .map(|(_, m)| m.to_string())
                    .unwrap_or_else(|| e.clone()),
            ),
            _ => None,
        };
        let mut record = MessageRecord {
            index,
            canister,
            kind,
            method,
            api_calls: 0,
            instructions: 0,
            trap: None,
            caller: msg.caller,
            arg_bytes: msg.arg.len() as u64,
        };
        if let Some(pos) = self.trap_faults.iter_mut().position(|f| (f.pred)(&record)) {
            msg.trap_at = Some(self.trap_faults.remove(pos).api_call);
        }
        if let Some(pos) = self
            .perform_faults
            .iter_mut()
            .position(|f| (f.pred)(&record))
        {
            let f = self.perform_faults.remove(pos);
            msg.call_perform_fail = Some((f.call_index, f.code));
        }
        let limit = match kind {
            MessageKind::Query | MessageKind::ReplicatedQuery => self.limits.query,
            MessageKind::InspectMessage => self.limits.inspect_message,
            MessageKind::Init
            | MessageKind::PostUpgrade
            | MessageKind::PreUpgrade
            | MessageKind::Start => self.limits.install,
            _ => self.limits.update,
        }
        .min(msg.fuel_limit);
        msg.fuel_limit = limit;
        self.set_message_limits(canister, &mut msg);
        let cycles_before = msg.cycles_available;
        let time = self.time;
        let print_logs = self.print_logs;
        let can = self.canisters.get_mut(&canister).unwrap();
        // Globals and system state are small: save them whole. The heap is rolled back page by
        // page (see `dirty`), stable memory through its undo log.
        let globals_before: Vec<Val> = can.globals.clone();
        let sys_before = can.store.data().sys.clone();
        if let Some(cc) = ctx_id.and_then(|id| can.contexts.get(&id)) {
            msg.ctx_instructions = cc.instructions;
            msg.already_responded = cc.responded;
        }
        let status_code = can.store.data().sys.status;
        {
            let d = can.store.data_mut();
            d.sys.time = time;
            d.sys.status = status_code;
            d.print_logs = print_logs;
            d.msg = msg;
        }
        can.store.set_fuel(limit).expect("fuel enabled");
        let inst = can.inst.as_ref().expect("installed");
        let result: Result<(), wasmtime::Error> = match &entry {
            Entry::Export(name) => {
                match inst.instance.get_typed_func::<(), ()>(&mut can.store, name) {
                    Ok(f) => f.call(&mut can.store, ()),
                    Err(e) => Err(wasmtime::Error::msg(format!(
                        "Canister violated contract: export '{name}' has the wrong type: {e}"
                    ))),
                }
            }
            Entry::Table(fun, env) => {
                let f = inst.table.and_then(|t| t.get(&mut can.store, *fun as u64));
                match f {
                    Some(Ref::Func(Some(f))) => match f.typed::<i32, ()>(&can.store) {
                        Ok(f) => f.call(&mut can.store, *env as i32),
                        Err(e) => Err(wasmtime::Error::msg(format!("Canister trapped: callback {fun} has the wrong type: {e}"))),
                    },
                    _ => Err(wasmtime::Error::msg(format!("Canister trapped: callback function index {fun} is not in the function table"))),
                }
            }
        };
        let left = can.store.get_fuel().unwrap_or(0);
        let instructions = limit - left;
        let mut msg = std::mem::replace(
            &mut can.store.data_mut().msg,
            MsgState::new(MessageKind::Start),
        );
        let trap = match result {
            Ok(()) => None,
            Err(e) => Some(match &msg.trap {
                Some(t) => t.clone(),
                None => match e.downcast_ref::<wasmtime::Trap>() {
                    Some(wasmtime::Trap::OutOfFuel) => format!("Canister exceeded the limit of {limit} instructions for single message execution."),
                    Some(t) => format!("Canister trapped: {t}"),
                    None => format!("{e}"),
                },
            }),
        };
        let discard = trap.is_some()
            || matches!(
                kind,
                MessageKind::Query | MessageKind::ReplicatedQuery | MessageKind::InspectMessage
            );
        let mut sys_cycles_left = msg.cycles_available;
        if discard {
            // Roll back heap, globals, system state and stable memory.
            undo_stable(
                &mut can.store.data_mut().stable,
                std::mem::take(&mut msg.stable_undo),
            );
            let rolled_back = match (inst.memory, can.heap.as_mut()) {
                (Some(m), Some(h)) => h.rollback(dirty::Mapping {
                    ptr: m.data_ptr(&can.store),
                    len: m.data_size(&can.store),
                }),
                _ => true,
            };
            if rolled_back {
                for (g, v) in inst.globals.iter().zip(&globals_before) {
                    g.set(&mut can.store, *v).expect("restore global");
                }
                let time = can.store.data().sys.time;
                can.store.data_mut().sys = sys_before;
                can.store.data_mut().sys.time = time;
            } else {
                // The memory grew: a Wasm memory cannot shrink, so re-instantiate from the
                // committed copy.
                let compiled = inst.compiled.clone();
                let hash = inst.module_hash;
                let heap = can.heap.take().expect("tracked heap");
                let snap = Snapshot {
                    memory: heap.shadow,
                    globals: globals_before,
                    sys: sys_before,
                };
                self.reinstate(canister, compiled, hash, &snap, Some(heap.page_gen));
            }
            if trap.is_some() {
                sys_cycles_left = cycles_before;
            }
        } else if !matches!(kind, MessageKind::Start) {
            self.gen += 1;
            let gen = self.gen;
            let can = self.canisters.get_mut(&canister).unwrap();
            let memory = can.inst.as_ref().and_then(|i| i.memory);
            if let (Some(m), Some(h)) = (memory, can.heap.as_mut()) {
                h.commit(
                    dirty::Mapping {
                        ptr: m.data_ptr(&can.store),
                        len: m.data_size(&can.store),
                    },
                    gen,
                );
            }
            mark_stable(can, &msg.stable_undo, gen);
            if let Some(i) = &can.inst {
                can.globals = i.globals.iter().map(|g| g.get(&mut can.store)).collect();
            }
            // A successful message that may change state increments the canister version.
            if matches!(
                kind,
                MessageKind::Update
                    | MessageKind::ReplyCallback
                    | MessageKind::RejectCallback
                    | MessageKind::Cleanup
                    | MessageKind::GlobalTimer
                    | MessageKind::Heartbeat
            ) {
                self.canisters
                    .get_mut(&canister)
                    .unwrap()
                    .store
                    .data_mut()
                    .sys
                    .version += 1;
            }
        }
        let can = self.canisters.get_mut(&canister).unwrap();
        can.total_instructions += instructions;
        can.messages += 1;
        self.last_instructions = instructions;
        for text in &msg.logs {
            self.logs.push(LogRecord {
                canister,
                message_index: index,
                text: text.clone(),
            });
        }
        record.api_calls = msg.api_calls;
        record.instructions = instructions;
        record.trap = trap.clone();
        self.trace.push(record);
        if trap.is_some() {
            return Exec {
                trap,
                response: None,
                calls: Vec::new(),
                instructions,
                accepted: false,
                cycles_left: sys_cycles_left,
                stable_undo: Vec::new(),
            };
        }
        Exec {
            trap: None,
            response: msg.response,
            calls: msg.calls,
            instructions,
            accepted: msg.accepted,
            cycles_left: sys_cycles_left,
            // Only an upgrade needs it after the message: to undo a committed pre_upgrade when
            // the rest of install_code fails, without copying the whole stable memory first.
            stable_undo: if matches!(kind, MessageKind::PreUpgrade) {
                msg.stable_undo
            } else {
                Vec::new()
            },
        }
    }

    // ---------------------------------------------------------------- observability

    /// Instructions of the last executed message.
    pub fn last_instructions(&self) -> u64 {
        self.last_instructions
    }

    /// Total instructions executed by a canister (all messages, including rolled-back ones).
    pub fn total_instructions(&self, canister: Principal) -> u64 {
        self.canisters
            .get(&canister)
            .map_or(0, |c| c.total_instructions)
    }

    /// Total messages executed by a canister.
    pub fn executed_messages(&self, canister: Principal) -> u64 {
        self.canisters.get(&canister).map_or(0, |c| c.messages)
    }

    /// All executed messages, in order.
    pub fn trace(&self) -> &[MessageRecord] {
        &self.trace
    }

    /// Number of messages executed so far (= index of the next message).
    pub fn message_count(&self) -> u64 {
        self.message_counter
    }

    /// The generation of the last committed change to `canister`'s stable memory (0: none
    /// since it was created). Equal before and after a message: the message changed nothing
    /// in stable memory (what fuzzing checks for a call that ended in an error).
    pub fn stable_generation(&self, canister: Principal) -> u64 {
        self.canisters
            .get(&canister)
            .map_or(0, |c| c.stable_gen.iter().copied().max().unwrap_or(0))
    }

    /// Make the scheduler pick messages at random from `seed` from now on (as
    /// [`Simulator::with_seed`] does from the start): forks of one snapshot can then explore
    /// different interleavings.
    pub fn reseed_scheduler(&mut self, seed: u64) {
        self.scheduler = Some(Rng(seed));
    }

    /// Every `debug_print` line so far.
    pub fn logs(&self) -> &[LogRecord] {
        &self.logs
    }

    /// All trap points of the messages executed at or after message index `from`:
    /// one per System API call of each message.
    pub fn trap_points(&self, from: u64) -> Vec<TrapPoint> {
        self.trace
            .iter()
            .filter(|r| r.index >= from)
            .flat_map(|r| {
                (1..=r.api_calls).map(move |k| TrapPoint {
                    message: r.index,
                    api_call: k,
                })
            })
            .collect()
    }

    // ---------------------------------------------------------------- fault injection

    /// Make message number `message` (global execution index) trap at its `api_call`-th
    /// System API call (1-based); all its effects are rolled back.
    pub fn inject_trap(&mut self, message: u64, api_call: u32) {
        self.inject_trap_when(move |r| r.index == message, api_call);
    }

    /// Trap the first future message matching `pred` at its `api_call`-th System API call.
    pub fn inject_trap_when(
        &mut self,
        pred: impl FnMut(&MessageRecord) -> bool + 'static,
        api_call: u32,
    ) {
        assert!(api_call >= 1, "api_call is 1-based");
        self.trap_faults.push(TrapFault {
            pred: Box::new(pred),
            api_call,
        });
    }

    /// Force a reject on the first future inter-canister call matching `pred`.
    /// `BeforeDelivery`: the callee never runs. `AfterExecution`: the callee runs and commits,
    /// its response is lost and the caller gets `code` (normally `SysUnknown`).
    pub fn inject_reject(
        &mut self,
        pred: impl FnMut(&CallInfo) -> bool + 'static,
        code: RejectCode,
        when: RejectWhen,
    ) {
        self.reject_faults.push(RejectFault {
            pred: Box::new(pred),
            code,
            when,
        });
    }

    /// Make `ic0.call_perform` return `code` (non-zero: synchronous failure, no call made) for
    /// the `call_index`-th (0-based) call performed by the first future message matching `pred`.
    pub fn inject_call_perform_failure(
        &mut self,
        pred: impl FnMut(&MessageRecord) -> bool + 'static,
        call_index: u32,
        code: u32,
    ) {
        assert!(code != 0, "a failure code must be non-zero");
        self.perform_faults.push(PerformFault {
            pred: Box::new(pred),
            call_index,
            code,
        });
    }

    /// Run `hook` right before message number `message` executes (e.g. to stop or upgrade a
    /// canister, or advance time, between any two messages).
    pub fn before_message(&mut self, message: u64, hook: impl FnOnce(&mut Simulator) + 'static) {
        self.hooks.entry(message).or_default().push(Box::new(hook));
    }

    /// Remove all pending fault injections and hooks.
    pub fn clear_faults(&mut self) {
        self.trap_faults.clear();
        self.reject_faults.clear();
        self.perform_faults.clear();
        self.hooks.clear();
    }
}

/// Stamp the stable memory pages a committed message wrote or grew with `gen`.
fn mark_stable(can: &mut Canister, undo: &[StableUndo], gen: u64) {
    let pg = dirty::page() as u64;
    let len = can.store.data().stable.len();
    can.stable_gen.resize(len.div_ceil(pg as usize), gen);
    for u in undo {
        let (from, to) = match u {
            StableUndo::Write(off, old) => (*off, off + old.len() as u64),
            StableUndo::Grow(old_len) => (*old_len as u64, len as u64),
        };
        if to > from {
            for p in from / pg..to.div_ceil(pg) {
                if let Some(g) = can.stable_gen.get_mut(p as usize) {
                    *g = gen;
                }
            }
        }
    }
}

/// Stable memory as it was before a failed install_code: the memory an install replaced, or
/// the current one with pre_upgrade's writes undone.
fn restore_stable(stable: &mut Vec<u8>, replaced: Option<Vec<u8>>, pre_upgrade: Vec<StableUndo>) {
    match replaced {
        Some(old) => *stable = old,
        None => undo_stable(stable, pre_upgrade),
    }
}

/// Undo stable writes, newest first.
fn undo_stable(stable: &mut Vec<u8>, undo: Vec<StableUndo>) {
    for u in undo.into_iter().rev() {
        match u {
            StableUndo::Write(off, old) => {
                stable[off as usize..off as usize + old.len()].copy_from_slice(&old)
            }
            StableUndo::Grow(len) => stable.truncate(len),
        }
    }
}

struct Snapshot {
    memory: Vec<u8>,
    globals: Vec<Val>,
    sys: SysState,
}

fn load_snapshot(store: &mut Store<Ctx>, inst: &Inst, snap: &Snapshot) {
    load_state(store, inst, &snap.memory, &snap.globals);
    let time = store.data().sys.time;
    store.data_mut().sys = snap.sys.clone();
    store.data_mut().sys.time = time;
}

/// Load heap contents and globals into a fresh (untracked) instance.
fn load_state(store: &mut Store<Ctx>, inst: &Inst, memory: &[u8], globals: &[Val]) {
    if let Some(m) = inst.memory {
        let cur = m.data_size(&*store);
        if cur < memory.len() {
            let pages = ((memory.len() - cur) as u64).div_ceil(exec::WASM_PAGE);
            // Reloading a state the canister had: not a growth the limits apply to.
            let kind = std::mem::replace(&mut store.data_mut().msg.kind, MessageKind::Start);
            m.grow(&mut *store, pages)
                .expect("regrow memory for snapshot");
            store.data_mut().msg.kind = kind;
        }
        m.data_mut(&mut *store)[..memory.len()].copy_from_slice(memory);
    }
    for (g, v) in inst.globals.iter().zip(globals) {
        g.set(&mut *store, *v).expect("restore global");
    }
}
