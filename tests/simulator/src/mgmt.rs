//! The management canister (`aaaaa-aa`) as canisters call it.
//!
//! Argument and reply types follow the IC's management canister interface
//! (dfinity/ic `rs/types/management_canister_types/src/lib.rs`, and the interface spec's
//! `ic.did`). Candid subtyping makes them tolerant in both directions: callers may send
//! fields ic-sim ignores, and replies carry every field the current IC returns, so callers
//! decoding with the full types (e.g. `ic-management-canister-types`) succeed.
//!
//! Every handler reuses the Rust-API implementation of the same operation
//! ([`Simulator::install_code_mode`], [`Simulator::request_stop`], ...) so both paths behave
//! identically.

use crate::exec::Payload;
use crate::{CanisterStatus, Origin, Principal, RejectCode, Request, SimError, Simulator};
use candid::{CandidType, Deserialize, Nat};

/// The application-subnet canister creation fee (13 nodes).
/// Source: dfinity/ic `rs/config/src/subnet_config.rs`, `canister_creation_fee`.
pub const CANISTER_CREATION_FEE: u128 = 500_000_000_000;
/// Source: dfinity/ic `rs/config/src/subnet_config.rs`, `DEFAULT_RESERVED_BALANCE_LIMIT` (5 T).
pub const DEFAULT_RESERVED_CYCLES_LIMIT: u128 = 5_000_000_000_000;
/// 30 days. Source: dfinity/ic `rs/config/src/execution_environment.rs`,
/// `default_freeze_threshold`.
pub const DEFAULT_FREEZING_THRESHOLD: u64 = 30 * 24 * 60 * 60;
/// 3 GiB. Source: dfinity/ic `rs/config/src/execution_environment.rs`,
/// `DEFAULT_WASM_MEMORY_LIMIT`.
pub const DEFAULT_WASM_MEMORY_LIMIT: u64 = 3 << 30;
/// Source: dfinity/ic `rs/config/src/execution_environment.rs`,
/// `MAX_ALLOWED_CONTROLLERS_COUNT`.
pub const MAX_CONTROLLERS: usize = 10;
/// 5 minutes. Source: dfinity/ic `rs/config/src/execution_environment.rs`,
/// `STOP_CANISTER_TIMEOUT_DURATION`.
pub const STOP_CANISTER_TIMEOUT_NANOS: u64 = 5 * 60 * 1_000_000_000;
/// Cycles per GiB of memory per second and per percent of compute allocation per second,
/// 13-node application subnet. Source: dfinity/ic `rs/config/src/subnet_config.rs`,
/// `gib_storage_per_second_fee` and `compute_percent_allocated_per_second_fee`.
pub const GIB_STORAGE_PER_SECOND_FEE: u128 = 127_000;
pub const COMPUTE_PERCENT_PER_SECOND_FEE: u128 = 10_000_000;

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CanisterIdRecord {
    pub canister_id: Principal,
}

/// Shape shared by `log_visibility`, `snapshot_visibility` and `status_visibility`.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub enum Visibility {
    #[default]
    #[serde(rename = "controllers")]
    Controllers,
    #[serde(rename = "public")]
    Public,
    #[serde(rename = "allowed_viewers")]
    AllowedViewers(Vec<Principal>),
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EnvironmentVariable {
    pub name: String,
    pub value: String,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct CanisterSettings {
    pub controllers: Option<Vec<Principal>>,
    pub compute_allocation: Option<Nat>,
    pub memory_allocation: Option<Nat>,
    pub freezing_threshold: Option<Nat>,
    pub reserved_cycles_limit: Option<Nat>,
    pub log_visibility: Option<Visibility>,
    pub wasm_memory_limit: Option<Nat>,
    pub wasm_memory_threshold: Option<Nat>,
    pub log_memory_limit: Option<Nat>,
    pub snapshot_visibility: Option<Visibility>,
    pub status_visibility: Option<Visibility>,
    pub minimum_incoming_canister_call_cycles: Option<Nat>,
    pub environment_variables: Option<Vec<EnvironmentVariable>>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DefiniteCanisterSettings {
    pub controllers: Vec<Principal>,
    pub compute_allocation: Nat,
    pub memory_allocation: Nat,
    pub freezing_threshold: Nat,
    pub reserved_cycles_limit: Nat,
    pub log_visibility: Visibility,
    pub wasm_memory_limit: Nat,
    pub wasm_memory_threshold: Nat,
    pub log_memory_limit: Nat,
    pub snapshot_visibility: Visibility,
    pub status_visibility: Visibility,
    pub minimum_incoming_canister_call_cycles: Nat,
    pub environment_variables: Vec<EnvironmentVariable>,
}

#[derive(CandidType, Deserialize, Clone, Debug, Default)]
pub struct CreateCanisterArgs {
    pub settings: Option<CanisterSettings>,
    pub sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct UpdateSettingsArgs {
    pub canister_id: Principal,
    pub settings: CanisterSettings,
    pub sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasmMemoryPersistence {
    #[serde(rename = "keep")]
    Keep,
    #[serde(rename = "replace")]
    Replace,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UpgradeFlags {
    pub skip_pre_upgrade: Option<bool>,
    pub wasm_memory_persistence: Option<WasmMemoryPersistence>,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanisterInstallMode {
    #[serde(rename = "install")]
    Install,
    #[serde(rename = "reinstall")]
    Reinstall,
    #[serde(rename = "upgrade")]
    Upgrade(Option<UpgradeFlags>),
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct InstallCodeArgs {
    pub mode: CanisterInstallMode,
    pub canister_id: Principal,
    #[serde(with = "serde_bytes")]
    pub wasm_module: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub arg: Vec<u8>,
    pub sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct UninstallCodeArgs {
    pub canister_id: Principal,
    pub sender_canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanisterStatusType {
    #[serde(rename = "running")]
    Running,
    #[serde(rename = "stopping")]
    Stopping,
    #[serde(rename = "stopped")]
    Stopped,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MemoryMetrics {
    pub wasm_memory_size: Nat,
    pub stable_memory_size: Nat,
    pub global_memory_size: Nat,
    pub wasm_binary_size: Nat,
    pub custom_sections_size: Nat,
    pub canister_history_size: Nat,
    pub wasm_chunk_store_size: Nat,
    pub snapshots_size: Nat,
    pub log_memory_store_size: Nat,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct QueryStats {
    pub num_calls_total: Nat,
    pub num_instructions_total: Nat,
    pub request_payload_bytes_total: Nat,
    pub response_payload_bytes_total: Nat,
}

/// The full `canister_status` reply of the current IC.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CanisterStatusResult {
    pub status: CanisterStatusType,
    pub ready_for_migration: bool,
    pub version: u64,
    pub settings: DefiniteCanisterSettings,
    pub module_hash: Option<Vec<u8>>,
    pub memory_size: Nat,
    pub memory_metrics: MemoryMetrics,
    pub cycles: Nat,
    pub reserved_cycles: Nat,
    pub idle_cycles_burned_per_day: Nat,
    pub query_stats: QueryStats,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct CanisterInfoArgs {
    pub canister_id: Principal,
    pub num_requested_changes: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FromUserRecord {
    pub user_id: Principal,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FromCanisterRecord {
    pub canister_id: Principal,
    pub canister_version: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ChangeOrigin {
    #[serde(rename = "from_user")]
    FromUser(FromUserRecord),
    #[serde(rename = "from_canister")]
    FromCanister(FromCanisterRecord),
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CreationRecord {
    pub controllers: Vec<Principal>,
    pub environment_variables_hash: Option<Vec<u8>>,
}

#[derive(CandidType, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeDeploymentMode {
    #[serde(rename = "install")]
    Install,
    #[serde(rename = "reinstall")]
    Reinstall,
    #[serde(rename = "upgrade")]
    Upgrade,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CodeDeploymentRecord {
    pub mode: CodeDeploymentMode,
    #[serde(with = "serde_bytes")]
    pub module_hash: Vec<u8>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ControllersChangeRecord {
    pub controllers: Vec<Principal>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ChangeDetails {
    #[serde(rename = "creation")]
    Creation(CreationRecord),
    #[serde(rename = "code_uninstall")]
    CodeUninstall,
    #[serde(rename = "code_deployment")]
    CodeDeployment(CodeDeploymentRecord),
    #[serde(rename = "controllers_change")]
    ControllersChange(ControllersChangeRecord),
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub timestamp_nanos: u64,
    pub canister_version: u64,
    pub origin: ChangeOrigin,
    pub details: Option<ChangeDetails>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CanisterInfoResult {
    pub total_num_changes: u64,
    pub recent_changes: Vec<Change>,
    pub module_hash: Option<Vec<u8>>,
    pub controllers: Vec<Principal>,
}

/// The canister settings ic-sim keeps (defaults of a new canister on the IC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub compute_allocation: u64,
    /// Bytes; 0 = best-effort (no reservation).
    pub memory_allocation: u64,
    pub freezing_threshold: u64,
    pub reserved_cycles_limit: u128,
    pub log_visibility: Visibility,
    /// Bytes; 0 = unlimited.
    pub wasm_memory_limit: u64,
    pub wasm_memory_threshold: u64,
    pub log_memory_limit: u64,
    pub snapshot_visibility: Visibility,
    pub status_visibility: Visibility,
    pub minimum_incoming_canister_call_cycles: u128,
    pub environment_variables: Vec<EnvironmentVariable>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            compute_allocation: 0,
            memory_allocation: 0,
            freezing_threshold: DEFAULT_FREEZING_THRESHOLD,
            reserved_cycles_limit: DEFAULT_RESERVED_CYCLES_LIMIT,
            log_visibility: Visibility::Controllers,
            wasm_memory_limit: DEFAULT_WASM_MEMORY_LIMIT,
            wasm_memory_threshold: 0,
            // 4 KiB canister log. Source: dfinity/ic canister log,
            // `MAX_ALLOWED_CANISTER_LOG_BUFFER_SIZE`.
            log_memory_limit: 4096,
            snapshot_visibility: Visibility::Controllers,
            status_visibility: Visibility::Controllers,
            minimum_incoming_canister_call_cycles: 0,
            environment_variables: Vec::new(),
        }
    }
}

fn nat_u64(n: &Nat, field: &str) -> Result<u64, SimError> {
    u64::try_from(n.0.clone())
        .map_err(|_| SimError::InvalidSettings(format!("{field} {n} does not fit in 64 bits")))
}

fn nat_u128(n: &Nat, field: &str) -> Result<u128, SimError> {
    u128::try_from(n.0.clone())
        .map_err(|_| SimError::InvalidSettings(format!("{field} {n} does not fit in 128 bits")))
}

/// Validate `new` against the IC's rules and apply it over `cur`; returns the new controllers.
pub(crate) fn apply_settings(
    cur: &mut Settings,
    new: &CanisterSettings,
) -> Result<Option<Vec<Principal>>, SimError> {
    let mut s = cur.clone();
    if let Some(c) = &new.controllers {
        if c.len() > MAX_CONTROLLERS {
            return Err(SimError::InvalidSettings(format!(
                "Invalid settings: 'controllers' length exceeds maximum size allowed of {MAX_CONTROLLERS}."
            )));
        }
    }
    if let Some(v) = &new.compute_allocation {
        let v = nat_u64(v, "compute_allocation")?;
        if v > 100 {
            return Err(SimError::InvalidSettings(format!(
                "ComputeAllocation expected to be in the range [0..100], got {v}"
            )));
        }
        s.compute_allocation = v;
    }
    if let Some(v) = &new.memory_allocation {
        // 2^48 bytes. Source: the interface spec, `memory_allocation`.
        let v = nat_u64(v, "memory_allocation")?;
        if v > 1 << 48 {
            return Err(SimError::InvalidSettings(format!(
                "MemoryAllocation expected to be in the range [0..2^48], got {v}"
            )));
        }
        s.memory_allocation = v;
    }
    if let Some(v) = &new.freezing_threshold {
        s.freezing_threshold = nat_u64(v, "freezing_threshold")?;
    }
    if let Some(v) = &new.reserved_cycles_limit {
        s.reserved_cycles_limit = nat_u128(v, "reserved_cycles_limit")?;
    }
    if let Some(v) = &new.log_visibility {
        s.log_visibility = v.clone();
    }
    if let Some(v) = &new.wasm_memory_limit {
        // 2^48 bytes. Source: the interface spec, `wasm_memory_limit`.
        let v = nat_u64(v, "wasm_memory_limit")?;
        if v > 1 << 48 {
            return Err(SimError::InvalidSettings(format!(
                "WasmMemoryLimit expected to be in the range [0..2^48], got {v}"
            )));
        }
        s.wasm_memory_limit = v;
    }
    if let Some(v) = &new.wasm_memory_threshold {
        s.wasm_memory_threshold = nat_u64(v, "wasm_memory_threshold")?;
    }
    if let Some(v) = &new.log_memory_limit {
        s.log_memory_limit = nat_u64(v, "log_memory_limit")?;
    }
    if let Some(v) = &new.snapshot_visibility {
        s.snapshot_visibility = v.clone();
    }
    if let Some(v) = &new.status_visibility {
        s.status_visibility = v.clone();
    }
    if let Some(v) = &new.minimum_incoming_canister_call_cycles {
        s.minimum_incoming_canister_call_cycles =
            nat_u128(v, "minimum_incoming_canister_call_cycles")?;
    }
    if let Some(v) = &new.environment_variables {
        s.environment_variables = v.clone();
    }
    *cur = s;
    Ok(new.controllers.clone())
}

/// Reject code and message the replica gives for a failed management operation
/// (error codes of `ic-error-types`: the first digit is the reject code).
pub(crate) fn sim_error_reject(sim: &Simulator, e: &SimError) -> (RejectCode, String) {
    match e {
        SimError::CanisterNotFound(c) => {
            (RejectCode::DestinationInvalid, format!("Canister {c} not found."))
        }
        SimError::NotController { canister, sender } => {
            let controllers = sim
                .controllers(*canister)
                .unwrap_or_default()
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(" ");
            (
                RejectCode::CanisterError,
                format!("Only the controllers of the canister {canister} can control it.\nCanister's controllers: {controllers}\nSender's ID: {sender}"),
            )
        }
        SimError::InvalidWasm(m) | SimError::UnsupportedImport(m) => (
            RejectCode::CanisterError,
            format!("Canister's Wasm module is not valid: {m}"),
        ),
        SimError::AlreadyInstalled(c) => (
            RejectCode::CanisterError,
            format!("Canister {c} cannot be installed because the canister is not empty. Try installing with mode='reinstall' instead."),
        ),
        SimError::NotInstalled(c) => (
            RejectCode::CanisterError,
            format!("Error from Canister {c}: Attempted to execute a message, but the canister contains no Wasm module."),
        ),
        SimError::Trapped { canister, message } => (
            RejectCode::CanisterError,
            format!("Error from Canister {canister}: {message}"),
        ),
        SimError::NotStopped(c) => (
            RejectCode::CanisterError,
            format!("Canister {c} must be stopped before it is deleted."),
        ),
        SimError::StopTimedOut(c) => (
            RejectCode::SysTransient,
            format!("Stop canister request timed out for canister {c}"),
        ),
        SimError::InvalidSettings(m) => (RejectCode::CanisterReject, m.clone()),
        SimError::InsufficientCyclesForCreate { sent, required } => (
            RejectCode::CanisterReject,
            format!("Creating a canister requires a fee of {required} that is deducted from the canister's initial balance but only {sent} cycles were received with the create_canister request."),
        ),
    }
}

/// `Ok(Some((reply, refund)))`, `Ok(None)` when answered later, or a reject.
type Outcome = Result<Option<(Vec<u8>, u128)>, (RejectCode, String)>;

fn unit() -> Vec<u8> {
    candid::encode_args(()).expect("encode ()")
}

impl Simulator {
    /// Handle a request to the management canister.
    pub(crate) fn management_call(&mut self, r: Request) {
        let caller = r.sender;
        let result: Outcome = match r.method.as_str() {
            "raw_rand" => {
                let bytes: Vec<u8> = (0..4)
                    .flat_map(|_| self.rand.next().to_le_bytes())
                    .collect();
                Ok(Some((candid::encode_one(bytes).unwrap(), r.cycles)))
            }
            "create_canister" => self.mgmt_create(&r),
            "install_code" => decode::<InstallCodeArgs>(&r.arg).and_then(|a| {
                let id = a.canister_id;
                let mode = a.mode;
                self.install_code_mode(id, a.wasm_module, a.arg, Some(caller), mode)
                    .map(|()| Some((unit(), r.cycles)))
                    .map_err(|e| sim_error_reject(self, &e))
            }),
            "uninstall_code" => decode::<UninstallCodeArgs>(&r.arg).and_then(|a| {
                self.uninstall_canister(a.canister_id, Some(caller))
                    .map(|()| Some((unit(), r.cycles)))
                    .map_err(|e| sim_error_reject(self, &e))
            }),
            "update_settings" => decode::<UpdateSettingsArgs>(&r.arg).and_then(|a| {
                self.update_settings(a.canister_id, Some(caller), a.settings)
                    .map(|()| Some((unit(), r.cycles)))
                    .map_err(|e| sim_error_reject(self, &e))
            }),
            "canister_status" => decode::<CanisterIdRecord>(&r.arg).and_then(|a| {
                // `status_visibility` may open the status to others than the controllers.
                let visible =
                    self.settings(a.canister_id)
                        .is_some_and(|s| match &s.status_visibility {
                            Visibility::Public => true,
                            Visibility::AllowedViewers(v) => v.contains(&caller),
                            Visibility::Controllers => false,
                        });
                if !visible {
                    self.check_controller(a.canister_id, Some(caller))
                        .map_err(|e| sim_error_reject(self, &e))?;
                }
                let status = self.canister_status_result(a.canister_id).unwrap();
                Ok(Some((candid::encode_one(status).unwrap(), r.cycles)))
            }),
            "canister_info" => decode::<CanisterInfoArgs>(&r.arg).and_then(|a| {
                let info = self
                    .canister_info(a.canister_id, a.num_requested_changes)
                    .ok_or_else(|| {
                        sim_error_reject(self, &SimError::CanisterNotFound(a.canister_id))
                    })?;
                Ok(Some((candid::encode_one(info).unwrap(), r.cycles)))
            }),
            "deposit_cycles" => decode::<CanisterIdRecord>(&r.arg).and_then(|a| {
                if !self.canister_exists(a.canister_id) {
                    return Err(sim_error_reject(
                        self,
                        &SimError::CanisterNotFound(a.canister_id),
                    ));
                }
                self.add_cycles(a.canister_id, r.cycles);
                Ok(Some((unit(), 0)))
            }),
            "start_canister" => decode::<CanisterIdRecord>(&r.arg).and_then(|a| {
                self.start_canister(a.canister_id, Some(caller))
                    .map(|()| Some((unit(), r.cycles)))
                    .map_err(|e| sim_error_reject(self, &e))
            }),
            "stop_canister" => decode::<CanisterIdRecord>(&r.arg).and_then(|a| {
                self.request_stop(a.canister_id, Some(caller))
                    .map_err(|e| sim_error_reject(self, &e))?;
                let c = self.canisters.get_mut(&a.canister_id).unwrap();
                if c.status == CanisterStatus::Stopped {
                    Ok(Some((unit(), r.cycles)))
                } else {
                    // Answered when the canister reaches `Stopped` (see `update_stopping`).
                    c.stop_waiters.push((
                        r.origin,
                        r.cycles,
                        self.time + STOP_CANISTER_TIMEOUT_NANOS,
                    ));
                    Ok(None)
                }
            }),
            "delete_canister" => decode::<CanisterIdRecord>(&r.arg).and_then(|a| {
                self.delete_canister(a.canister_id, Some(caller))
                    .map(|()| Some((unit(), r.cycles)))
                    .map_err(|e| sim_error_reject(self, &e))
            }),
            m if KNOWN_UNIMPLEMENTED.contains(&m) => Err((
                RejectCode::CanisterReject,
                format!(
                    "ic-sim: management canister method '{m}' is not implemented by the simulator"
                ),
            )),
            m => Err((
                RejectCode::CanisterError,
                format!("Management canister has no method '{m}'"),
            )),
        };
        match result {
            Ok(Some((reply, refund))) => {
                self.respond_to_origin(r.origin, Payload::Reply(reply), refund)
            }
            Ok(None) => {}
            Err((code, msg)) => {
                self.respond_to_origin(r.origin, Payload::Reject(code, msg), r.cycles)
            }
        }
    }

    fn mgmt_create(&mut self, r: &Request) -> Outcome {
        if !matches!(r.origin, Origin::Canister { .. }) {
            return Err((
                RejectCode::CanisterReject,
                "create_canister can only be called by other canisters, not via ingress messages."
                    .into(),
            ));
        }
        let args = decode::<CreateCanisterArgs>(&r.arg)?;
        if r.cycles < CANISTER_CREATION_FEE {
            let e = SimError::InsufficientCyclesForCreate {
                sent: r.cycles,
                required: CANISTER_CREATION_FEE,
            };
            return Err(sim_error_reject(self, &e));
        }
        let settings = args.settings.unwrap_or_default();
        let id = self
            .create_canister_full(r.sender, r.cycles - CANISTER_CREATION_FEE, &settings)
            .map_err(|e| sim_error_reject(self, &e))?;
        // The attached cycles (less the fee) became the new canister's balance.
        Ok(Some((
            candid::encode_one(CanisterIdRecord { canister_id: id }).unwrap(),
            0,
        )))
    }

    /// Reply to every pending `stop_canister` call once the canister is stopped.
    pub(crate) fn answer_stop_waiters(&mut self, canister: Principal) {
        let waiters = match self.canisters.get_mut(&canister) {
            Some(c) => std::mem::take(&mut c.stop_waiters),
            None => return,
        };
        for (origin, refund, _) in waiters {
            self.respond_to_origin(origin, Payload::Reply(unit()), refund);
        }
    }

    /// A `stop_canister` call not answered within the timeout is rejected; the canister stays
    /// `Stopping` (dfinity/ic `rs/execution_environment/src/canister_manager.rs`,
    /// `StopCanisterRequestTimeout`).
    pub(crate) fn expire_stop_waiters(&mut self, now: u64) {
        let mut expired = Vec::new();
        for (id, c) in self.canisters.iter_mut() {
            if c.stop_waiters.iter().any(|w| w.2 <= now) {
                let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut c.stop_waiters)
                    .into_iter()
                    .partition(|w| w.2 <= now);
                c.stop_waiters = keep;
                expired.extend(late.into_iter().map(|w| (*id, w)));
            }
        }
        for (id, (origin, refund, _)) in expired {
            self.respond_to_origin(
                origin,
                Payload::Reject(
                    RejectCode::SysTransient,
                    format!("Stop canister request timed out for canister {id}."),
                ),
                refund,
            );
        }
    }

    /// A `start_canister` before the canister stopped cancels the pending `stop_canister` calls.
    pub(crate) fn cancel_stop_waiters(&mut self, canister: Principal) {
        let waiters = match self.canisters.get_mut(&canister) {
            Some(c) => std::mem::take(&mut c.stop_waiters),
            None => return,
        };
        for (origin, refund, _) in waiters {
            self.respond_to_origin(
                origin,
                Payload::Reject(
                    RejectCode::CanisterError,
                    format!("Canister {canister} has been restarted before it was stopped."),
                ),
                refund,
            );
        }
    }
}

/// Methods of the IC's management canister that ic-sim does not simulate.
const KNOWN_UNIMPLEMENTED: &[&str] = &[
    "upload_chunk",
    "clear_chunk_store",
    "stored_chunks",
    "install_chunked_code",
    "canister_metadata",
    "http_request",
    "ecdsa_public_key",
    "sign_with_ecdsa",
    "schnorr_public_key",
    "sign_with_schnorr",
    "vetkd_public_key",
    "vetkd_derive_key",
    "node_metrics_history",
    "subnet_info",
    "fetch_canister_logs",
    "take_canister_snapshot",
    "load_canister_snapshot",
    "list_canister_snapshots",
    "delete_canister_snapshot",
    "provisional_create_canister_with_cycles",
    "provisional_top_up_canister",
    "bitcoin_get_balance",
    "bitcoin_get_utxos",
    "bitcoin_send_transaction",
    "bitcoin_get_current_fee_percentiles",
    "bitcoin_get_block_headers",
];

fn decode<T: for<'a> Deserialize<'a> + CandidType>(arg: &[u8]) -> Result<T, (RejectCode, String)> {
    candid::decode_one::<T>(arg).map_err(|e| {
        (
            RejectCode::CanisterReject,
            format!("Error decoding candid: {e}"),
        )
    })
}
