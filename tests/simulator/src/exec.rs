//! The `ic0` System API on wasmtime: per-canister store data, host functions and their
//! availability per execution context (spec "Overview of imports").

use crate::{MessageKind, Principal, RejectCode};
use std::collections::HashMap;
use wasmtime::Result;
use wasmtime::{Caller, Linker, Memory};

pub(crate) const WASM_PAGE: u64 = 65536;
/// Maximum stable memory the simulator allows (pages of 64 KiB): 64 GiB.
pub(crate) const MAX_STABLE_PAGES: u64 = 1 << 20;
pub(crate) const MAX_BEST_EFFORT_TIMEOUT_SECS: u32 = 300;
/// Fees of a 13-node subnet (spec "Cycles costs" / IC fee table).
pub(crate) const XNET_CALL_FEE: u128 = 260_000;
pub(crate) const XNET_BYTE_FEE: u128 = 1_000;

/// Canister state that System API calls may read or change, kept across messages.
#[derive(Clone, Debug)]
pub(crate) struct SysState {
    pub self_id: Principal,
    pub controllers: Vec<Principal>,
    pub certified_data: Vec<u8>,
    pub global_timer: u64,
    pub cycles: u128,
    pub version: u64,
    pub time: u64,
    /// 1 running, 2 stopping, 3 stopped (ic0.canister_status).
    pub status: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Payload {
    Reply(Vec<u8>),
    Reject(RejectCode, String),
}

#[derive(Clone, Debug)]
pub(crate) struct OutCall {
    pub callee: Principal,
    pub method: String,
    pub arg: Vec<u8>,
    pub cycles: u128,
    pub reply: (u32, u32),
    pub reject: (u32, u32),
    pub cleanup: Option<(u32, u32)>,
    pub timeout_secs: Option<u32>,
}

pub(crate) enum StableUndo {
    Write(u64, Vec<u8>),
    Grow(usize),
}

/// State of the message being executed.
pub(crate) struct MsgState {
    pub kind: MessageKind,
    pub arg: Vec<u8>,
    pub caller: Principal,
    pub method: String,
    pub reject_code: u32,
    pub reject_msg: String,
    pub reply_buf: Vec<u8>,
    pub response: Option<Payload>,
    /// The call context was already responded to by an earlier message.
    pub already_responded: bool,
    pub cycles_available: u128,
    pub cycles_refunded: u128,
    pub pending: Option<OutCall>,
    pub calls: Vec<OutCall>,
    pub stable_undo: Vec<StableUndo>,
    pub api_calls: u32,
    pub trap_at: Option<u32>,
    pub fuel_limit: u64,
    pub ctx_instructions: u64,
    pub deadline: u64,
    pub accepted: bool,
    pub trap: Option<String>,
    pub logs: Vec<String>,
    /// Forced return code of `call_perform` (fault injection), per performed call index.
    pub call_perform_fail: Option<(u32, u32)>,
    /// Largest request (method name + argument) the canister may build.
    pub max_request_bytes: u64,
    /// Largest reply the message may build.
    pub max_reply_bytes: u64,
    /// Output queue capacity per callee, and the calls already in flight per callee.
    pub queue_capacity: u32,
    pub inflight: HashMap<Principal, u32>,
    /// Wasm memory limit enforced for this message (bytes, 0 = none).
    pub wasm_memory_limit: u64,
    /// Bytes the canister may still grow its heap and stable memory by (memory allocation or
    /// the subnet's remaining capacity).
    pub mem_available: u64,
    /// Capacity of the canister log (bytes).
    pub log_capacity: u64,
    /// Stable memory pages (4 KiB) written by this message.
    pub stable_dirty: std::collections::HashSet<u64>,
}

impl MsgState {
    pub fn new(kind: MessageKind) -> Self {
        MsgState {
            kind,
            arg: Vec::new(),
            caller: Principal::management_canister(),
            method: String::new(),
            reject_code: 0,
            reject_msg: String::new(),
            reply_buf: Vec::new(),
            response: None,
            already_responded: false,
            cycles_available: 0,
            cycles_refunded: 0,
            pending: None,
            calls: Vec::new(),
            stable_undo: Vec::new(),
            api_calls: 0,
            trap_at: None,
            fuel_limit: u64::MAX,
            ctx_instructions: 0,
            deadline: 0,
            accepted: false,
            trap: None,
            logs: Vec::new(),
            call_perform_fail: None,
            max_request_bytes: u64::MAX,
            max_reply_bytes: u64::MAX,
            queue_capacity: u32::MAX,
            inflight: HashMap::new(),
            wasm_memory_limit: 0,
            mem_available: u64::MAX,
            log_capacity: 4096,
            stable_dirty: std::collections::HashSet::new(),
        }
    }
}

pub(crate) struct Ctx {
    pub sys: SysState,
    pub stable: Vec<u8>,
    pub msg: MsgState,
    pub memory: Option<Memory>,
    pub subnet: Principal,
    pub print_logs: bool,
    /// Sizes of the records in the canister log and their sum.
    pub log_sizes: std::collections::VecDeque<u64>,
    pub log_used: u64,
}

/// Wasm memory growth under the IC's limits. The replica checks them right after a
/// `memory.grow` and traps (dfinity/ic `rs/embedders/src/wasmtime_embedder/system_api.rs`,
/// `try_grow_wasm_memory`: `WasmMemoryLimitExceeded`, or `OutOfMemory` when the memory
/// allocation / subnet capacity is exhausted); it does not make `memory.grow` return -1.
impl wasmtime::ResourceLimiter for Ctx {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        // Instantiation (initial memory) is not a canister execution.
        if self.msg.kind == MessageKind::Start {
            return Ok(true);
        }
        let m = &mut self.msg;
        let limit = m.wasm_memory_limit;
        if limit != 0 && desired as u64 > limit {
            let text = format!("Canister exceeded its current Wasm memory limit of {limit} bytes. The peak Wasm memory usage was {desired} bytes.");
            m.trap = Some(text.clone());
            return Err(wasmtime::Error::msg(text));
        }
        let delta = (desired - current) as u64;
        if delta > m.mem_available {
            let text = "Canister cannot grow its memory usage.".to_string();
            m.trap = Some(text.clone());
            return Err(wasmtime::Error::msg(text));
        }
        m.mem_available -= delta;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool> {
        Ok(true)
    }
}

/// Execution-context class letters of the spec's import table:
/// s start, I init/post_upgrade, G pre_upgrade, U update, Q replicated query,
/// N non-replicated query, y reply callback, t reject callback, C cleanup,
/// T system task (timer/heartbeat), F inspect_message.
fn class(kind: MessageKind) -> char {
    use MessageKind::*;
    match kind {
        Start => 's',
        Init | PostUpgrade => 'I',
        PreUpgrade => 'G',
        Update => 'U',
        ReplicatedQuery => 'Q',
        Query => 'N',
        ReplyCallback => 'y',
        RejectCallback => 't',
        Cleanup => 'C',
        GlobalTimer | Heartbeat => 'T',
        InspectMessage => 'F',
    }
}

fn trap<T>(c: &mut Caller<'_, Ctx>, msg: String) -> Result<T> {
    c.data_mut().msg.trap = Some(msg.clone());
    Err(wasmtime::Error::msg(msg))
}

/// Common prologue of every System API call: count it, apply an injected trap, check that the
/// call is allowed in the current context.
fn enter(c: &mut Caller<'_, Ctx>, name: &'static str, allowed: &'static str) -> Result<()> {
    let m = &mut c.data_mut().msg;
    m.api_calls += 1;
    let n = m.api_calls;
    if m.trap_at == Some(n) {
        return trap(
            c,
            format!("Canister trapped: injected fault at System API call #{n} (ic0.{name})"),
        );
    }
    charge(c, overhead(name))?;
    let cl = class(c.data().msg.kind);
    let ok = if allowed == "*" {
        cl != 's'
    } else {
        allowed.contains(cl)
    };
    if !ok {
        let kind = c.data().msg.kind;
        return trap(
            c,
            format!(
                "Canister violated contract: \"ic0_{name}\" cannot be executed in {kind:?} mode"
            ),
        );
    }
    Ok(())
}

/// Fixed instructions the replica charges per System API call, on top of the call's Wasm
/// instruction. Source: dfinity/ic `rs/embedders/src/wasmtime_embedder/system_api_complexity.rs`
/// (`overhead`), and `overhead_native` for the stable memory API (implemented natively in Wasm
/// by the replica). Applied by `charge_for_cpu` / `charge_for_cpu_and_mem` in
/// `rs/embedders/src/wasmtime_embedder/linker.rs`.
pub(crate) fn overhead(name: &str) -> u64 {
    match name {
        "call_new" => 1_500,
        "call_perform" => 5_000,
        "performance_counter" => 200,
        "debug_print" => 100,
        "is_controller" => 1_000,
        "cost_http_request_v2" => 10_000,
        // overhead_native: STABLE_READ / STABLE_WRITE / STABLE64_READ / STABLE64_WRITE = 20,
        // STABLE_GROW = 100 (both APIs); overhead::STABLE_SIZE / STABLE64_SIZE = 20.
        "stable_read" | "stable64_read" | "stable_write" | "stable64_write" => 20,
        "stable_size" | "stable64_size" => 20,
        "stable_grow" | "stable64_grow" => 100,
        _ => 500,
    }
}

/// Instructions per byte a payload costs to hand from the sandbox to the replica (reply, reject
/// message, call argument). Source: dfinity/ic `rs/embedders/src/wasmtime_embedder/linker.rs`,
/// `BYTE_TRANSMISSION_COST_FACTOR`.
pub(crate) const BYTE_TRANSMISSION_COST_FACTOR: u64 = 50;
/// Instructions per newly dirtied 4 KiB page of stable memory in a message. Source: dfinity/ic
/// `rs/config/src/subnet_config.rs`, `DEFAULT_DIRTY_PAGE_OVERHEAD`.
pub(crate) const DIRTY_PAGE_OVERHEAD: u64 = 1_000;
const OS_PAGE: u64 = 4096;

/// Take `n` instructions from the message's budget like the replica's `charge_direct_fee`: when
/// the budget cannot pay, the message fails with the instruction-limit error.
pub(crate) fn charge(c: &mut Caller<'_, Ctx>, n: u64) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let left = c.get_fuel().unwrap_or(0);
    if left < n {
        let _ = c.set_fuel(0);
        let limit = c.data().msg.fuel_limit;
        return trap(
            c,
            format!(
                "Canister exceeded the limit of {limit} instructions for single message execution."
            ),
        );
    }
    c.set_fuel(left - n).expect("fuel enabled");
    Ok(())
}

/// The canister log's share of the `debug_print` / `trap` charge: twice the bytes the log
/// stores plus the transmission factor for the bytes still fitting. Source: dfinity/ic
/// `rs/embedders/src/wasmtime_embedder/linker.rs`, `logging_charge_bytes`.
fn logging_charge(c: &mut Caller<'_, Ctx>, len: u64) -> u64 {
    let cap = c.data().msg.log_capacity;
    let remaining = cap.saturating_sub(c.data().log_used);
    2 * len.min(cap) + BYTE_TRANSMISSION_COST_FACTOR * len.min(remaining)
}

/// Append a record to the canister log (a ring buffer of `log_capacity` bytes). Each record is
/// counted as its content plus 16 bytes (index and timestamp): an approximation of the
/// replica's record size, which only matters for when the log counts as full.
fn log_record(c: &mut Caller<'_, Ctx>, len: u64) {
    let cap = c.data().msg.log_capacity;
    let d = c.data_mut();
    let size = len + 16;
    if size > cap {
        return;
    }
    d.log_sizes.push_back(size);
    d.log_used += size;
    while d.log_used > cap {
        let old = d.log_sizes.pop_front().unwrap_or(0);
        d.log_used -= old;
    }
}

/// Stable memory pages a write touches for the first time in this message cost
/// `DIRTY_PAGE_OVERHEAD` each.
fn charge_stable_dirty(c: &mut Caller<'_, Ctx>, offset: u64, size: u64) -> Result<()> {
    if size == 0 {
        return Ok(());
    }
    let first = offset / OS_PAGE;
    let last = (offset + size - 1) / OS_PAGE;
    let mut new = 0;
    for p in first..=last {
        if c.data_mut().msg.stable_dirty.insert(p) {
            new += 1;
        }
    }
    charge(c, new * DIRTY_PAGE_OVERHEAD)
}

fn mem(c: &mut Caller<'_, Ctx>) -> Result<Memory> {
    match c.data().memory {
        Some(m) => Ok(m),
        None => trap(c, "Canister has no exported memory".to_string()),
    }
}

fn read(c: &mut Caller<'_, Ctx>, src: u64, size: u64) -> Result<Vec<u8>> {
    let m = mem(c)?;
    let data = m.data(&*c);
    let end = src.checked_add(size);
    match end {
        Some(end) if end <= data.len() as u64 => Ok(data[src as usize..end as usize].to_vec()),
        _ => trap(
            c,
            format!("Canister trapped: heap out of bounds (read {size} bytes at {src})"),
        ),
    }
}

fn write(c: &mut Caller<'_, Ctx>, dst: u64, bytes: &[u8]) -> Result<()> {
    let m = mem(c)?;
    let data = m.data_mut(&mut *c);
    match dst.checked_add(bytes.len() as u64) {
        Some(end) if end <= data.len() as u64 => {
            data[dst as usize..end as usize].copy_from_slice(bytes);
            Ok(())
        }
        _ => trap(
            c,
            format!(
                "Canister trapped: heap out of bounds (write {} bytes at {dst})",
                bytes.len()
            ),
        ),
    }
}

/// The `*_copy(dst, offset, size)` pattern: copy `src[offset..offset+size]` to `dst`.
fn copy_out(c: &mut Caller<'_, Ctx>, dst: u64, offset: u64, size: u64, src: &[u8]) -> Result<()> {
    match offset.checked_add(size) {
        Some(end) if end <= src.len() as u64 => {
            let slice = src[offset as usize..end as usize].to_vec();
            write(c, dst, &slice)
        }
        _ => trap(
            c,
            format!(
                "Canister trapped: source out of bounds (offset {offset} + size {size} > {})",
                src.len()
            ),
        ),
    }
}

fn write_u128(c: &mut Caller<'_, Ctx>, dst: u64, v: u128) -> Result<()> {
    write(c, dst, &v.to_le_bytes())
}

pub(crate) fn current_instructions(c: &Caller<'_, Ctx>) -> u64 {
    let limit = c.data().msg.fuel_limit;
    let left = c.get_fuel().unwrap_or(0);
    limit.saturating_sub(left)
}

fn pending<'a>(c: &'a mut Caller<'_, Ctx>, name: &str) -> Result<&'a mut OutCall> {
    if c.data().msg.pending.is_none() {
        return trap(
            c,
            format!("Canister violated contract: ic0.{name} called without a call under construction (call ic0.call_new first)"),
        );
    }
    Ok(c.data_mut().msg.pending.as_mut().unwrap())
}

fn respond(c: &mut Caller<'_, Ctx>, name: &str) -> Result<()> {
    let m = &c.data().msg;
    if m.already_responded || m.response.is_some() {
        return trap(
            c,
            format!("Canister violated contract: ic0.{name}: the call was already replied to or rejected"),
        );
    }
    Ok(())
}

fn stable_write(c: &mut Caller<'_, Ctx>, offset: u64, bytes: &[u8]) -> Result<()> {
    let len = c.data().stable.len() as u64;
    match offset.checked_add(bytes.len() as u64) {
        Some(end) if end <= len => {
            let ctx = c.data_mut();
            let range = offset as usize..end as usize;
            let old = ctx.stable[range.clone()].to_vec();
            ctx.msg.stable_undo.push(StableUndo::Write(offset, old));
            ctx.stable[range].copy_from_slice(bytes);
            Ok(())
        }
        _ => trap(
            c,
            format!(
                "Canister trapped: stable memory out of bounds (write {} bytes at {offset}, size {len})",
                bytes.len()
            ),
        ),
    }
}

fn stable_read(c: &mut Caller<'_, Ctx>, dst: u64, offset: u64, size: u64) -> Result<()> {
    let len = c.data().stable.len() as u64;
    match offset.checked_add(size) {
        Some(end) if end <= len => {
            let bytes = c.data().stable[offset as usize..end as usize].to_vec();
            write(c, dst, &bytes)
        }
        _ => trap(
            c,
            format!("Canister trapped: stable memory out of bounds (read {size} bytes at {offset}, size {len})"),
        ),
    }
}

fn stable_grow(c: &mut Caller<'_, Ctx>, pages: u64, max_pages: u64) -> u64 {
    let ctx = c.data_mut();
    let old_len = ctx.stable.len();
    let old_pages = old_len as u64 / WASM_PAGE;
    let new_bytes = pages.saturating_mul(WASM_PAGE);
    match old_pages.checked_add(pages) {
        Some(n) if n <= max_pages && new_bytes <= ctx.msg.mem_available => {
            ctx.msg.mem_available -= new_bytes;
            ctx.msg.stable_undo.push(StableUndo::Grow(old_len));
            ctx.stable.resize((n * WASM_PAGE) as usize, 0);
            old_pages
        }
        _ => u64::MAX,
    }
}

fn principal_from(c: &mut Caller<'_, Ctx>, bytes: Vec<u8>) -> Result<Principal> {
    match Principal::try_from_slice(&bytes) {
        Ok(p) => Ok(p),
        Err(e) => trap(
            c,
            format!("Canister violated contract: invalid principal: {e}"),
        ),
    }
}

/// Names of all `ic0` imports the simulator implements.
pub const IMPLEMENTED_IMPORTS: &[&str] = &[
    "msg_arg_data_size",
    "msg_arg_data_copy",
    "msg_caller_size",
    "msg_caller_copy",
    "msg_caller_info_data_size",
    "msg_caller_info_data_copy",
    "msg_caller_info_signer_size",
    "msg_caller_info_signer_copy",
    "msg_reject_code",
    "msg_reject_msg_size",
    "msg_reject_msg_copy",
    "msg_deadline",
    "msg_reply_data_append",
    "msg_reply",
    "msg_reject",
    "msg_cycles_available128",
    "msg_cycles_refunded128",
    "msg_cycles_accept128",
    "cycles_burn128",
    "canister_self_size",
    "canister_self_copy",
    "canister_cycle_balance128",
    "canister_liquid_cycle_balance128",
    "canister_status",
    "canister_version",
    "subnet_self_size",
    "subnet_self_copy",
    "subnet_self_node_count",
    "msg_method_name_size",
    "msg_method_name_copy",
    "accept_message",
    "call_new",
    "call_on_cleanup",
    "call_data_append",
    "call_with_best_effort_response",
    "call_cycles_add128",
    "call_perform",
    "stable64_size",
    "stable64_grow",
    "stable64_write",
    "stable64_read",
    "stable_size",
    "stable_grow",
    "stable_write",
    "stable_read",
    "root_key_size",
    "root_key_copy",
    "certified_data_set",
    "data_certificate_present",
    "data_certificate_size",
    "data_certificate_copy",
    "time",
    "global_timer_set",
    "performance_counter",
    "is_controller",
    "in_replicated_execution",
    "cost_call",
    "cost_create_canister",
    "cost_http_request",
    "cost_http_request_v2",
    "cost_sign_with_ecdsa",
    "cost_sign_with_schnorr",
    "cost_vetkd_derive_key",
    "env_var_count",
    "env_var_name_size",
    "env_var_name_copy",
    "env_var_name_exists",
    "env_var_value_size",
    "env_var_value_copy",
    "debug_print",
    "trap",
];

/// A stand-in for the IC root key (DER-encoded BLS key shape; the value is meaningless here).
const ROOT_KEY: [u8; 133] = {
    let mut k = [0u8; 133];
    k[0] = 0x30;
    k[1] = 0x81;
    k[2] = 0x82;
    k
};

fn u128_of(hi: i64, lo: i64) -> u128 {
    ((hi as u64 as u128) << 64) | (lo as u64 as u128)
}

pub(crate) fn linker(engine: &wasmtime::Engine) -> Result<Linker<Ctx>> {
    let mut l: Linker<Ctx> = Linker::new(engine);
    type C<'a> = Caller<'a, Ctx>;
    let u = |v: i32| v as u32 as u64;

    // ---- message arguments and caller
    l.func_wrap("ic0", "msg_arg_data_size", |mut c: C| -> Result<i32> {
        enter(&mut c, "msg_arg_data_size", "IUQNyF")?;
        Ok(c.data().msg.arg.len() as i32)
    })?;
    l.func_wrap(
        "ic0",
        "msg_arg_data_copy",
        move |mut c: C, dst: i32, off: i32, size: i32| -> Result<()> {
            enter(&mut c, "msg_arg_data_copy", "IUQNyF")?;
            charge(&mut c, u(size))?;
            let src = std::mem::take(&mut c.data_mut().msg.arg);
            let r = copy_out(&mut c, u(dst), u(off), u(size), &src);
            c.data_mut().msg.arg = src;
            r
        },
    )?;
    l.func_wrap("ic0", "msg_caller_size", |mut c: C| -> Result<i32> {
        enter(&mut c, "msg_caller_size", "*")?;
        Ok(c.data().msg.caller.as_slice().len() as i32)
    })?;
    l.func_wrap(
        "ic0",
        "msg_caller_copy",
        move |mut c: C, dst: i32, off: i32, size: i32| -> Result<()> {
            enter(&mut c, "msg_caller_copy", "*")?;
            charge(&mut c, u(size))?;
            let src = c.data().msg.caller.as_slice().to_vec();
            copy_out(&mut c, u(dst), u(off), u(size), &src)
        },
    )?;
    for (name_size, name_copy) in [
        ("msg_caller_info_data_size", "msg_caller_info_data_copy"),
        ("msg_caller_info_signer_size", "msg_caller_info_signer_copy"),
    ] {
        l.func_wrap("ic0", name_size, move |mut c: C| -> Result<i32> {
            enter(&mut c, name_size, "*")?;
            Ok(0)
        })?;
        l.func_wrap(
            "ic0",
            name_copy,
            move |mut c: C, dst: i32, off: i32, size: i32| -> Result<()> {
                enter(&mut c, name_copy, "*")?;
                charge(&mut c, u(size))?;
                copy_out(&mut c, u(dst), u(off), u(size), &[])
            },
        )?;
    }
    l.func_wrap("ic0", "msg_reject_code", |mut c: C| -> Result<i32> {
        enter(&mut c, "msg_reject_code", "yt")?;
        Ok(c.data().msg.reject_code as i32)
    })?;
    l.func_wrap("ic0", "msg_reject_msg_size", |mut c: C| -> Result<i32> {
        enter(&mut c, "msg_reject_msg_size", "t")?;
        Ok(c.data().msg.reject_msg.len() as i32)
    })?;
    l.func_wrap(
        "ic0",
        "msg_reject_msg_copy",
        move |mut c: C, dst: i32, off: i32, size: i32| -> Result<()> {
            enter(&mut c, "msg_reject_msg_copy", "t")?;
            charge(&mut c, u(size))?;
            let src = c.data().msg.reject_msg.clone().into_bytes();
            copy_out(&mut c, u(dst), u(off), u(size), &src)
        },
    )?;
    l.func_wrap("ic0", "msg_deadline", |mut c: C| -> Result<i64> {
        enter(&mut c, "msg_deadline", "UQNyt")?;
        Ok(c.data().msg.deadline as i64)
    })?;

    // ---- responding
    l.func_wrap(
        "ic0",
        "msg_reply_data_append",
        move |mut c: C, src: i32, size: i32| -> Result<()> {
            enter(&mut c, "msg_reply_data_append", "UQNyt")?;
            charge(&mut c, BYTE_TRANSMISSION_COST_FACTOR * u(size))?;
            respond(&mut c, "msg_reply_data_append")?;
            let total = c.data().msg.reply_buf.len() as u64 + u(size);
            let max = c.data().msg.max_reply_bytes;
            if total > max {
                return trap(
                    &mut c,
                    format!("Canister violated contract: ic0.msg_reply_data_append: application payload size ({total}) cannot be larger than {max}."),
                );
            }
            let bytes = read(&mut c, u(src), u(size))?;
            c.data_mut().msg.reply_buf.extend_from_slice(&bytes);
            Ok(())
        },
    )?;
    l.func_wrap("ic0", "msg_reply", |mut c: C| -> Result<()> {
        enter(&mut c, "msg_reply", "UQNyt")?;
        respond(&mut c, "msg_reply")?;
        let m = &mut c.data_mut().msg;
        let data = std::mem::take(&mut m.reply_buf);
        m.response = Some(Payload::Reply(data));
        Ok(())
    })?;
    l.func_wrap(
        "ic0",
        "msg_reject",
        move |mut c: C, src: i32, size: i32| -> Result<()> {
            enter(&mut c, "msg_reject", "UQNyt")?;
            charge(&mut c, BYTE_TRANSMISSION_COST_FACTOR * u(size))?;
            respond(&mut c, "msg_reject")?;
            let bytes = read(&mut c, u(src), u(size))?;
            let text =
                match String::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(_) => return trap(
                        &mut c,
                        "Canister violated contract: ic0.msg_reject: message is not valid UTF-8"
                            .into(),
                    ),
                };
            c.data_mut().msg.response = Some(Payload::Reject(RejectCode::CanisterReject, text));
            Ok(())
        },
    )?;

    // ---- cycles
    l.func_wrap(
        "ic0",
        "msg_cycles_available128",
        move |mut c: C, dst: i32| -> Result<()> {
            enter(&mut c, "msg_cycles_available128", "UQyt")?;
            let v = c.data().msg.cycles_available;
            write_u128(&mut c, u(dst), v)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_cycles_refunded128",
        move |mut c: C, dst: i32| -> Result<()> {
            enter(&mut c, "msg_cycles_refunded128", "yt")?;
            let v = c.data().msg.cycles_refunded;
            write_u128(&mut c, u(dst), v)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_cycles_accept128",
        move |mut c: C, hi: i64, lo: i64, dst: i32| -> Result<()> {
            enter(&mut c, "msg_cycles_accept128", "UQyt")?;
            let ctx = c.data_mut();
            let amount = u128_of(hi, lo).min(ctx.msg.cycles_available);
            ctx.msg.cycles_available -= amount;
            ctx.sys.cycles += amount;
            write_u128(&mut c, u(dst), amount)
        },
    )?;
    l.func_wrap(
        "ic0",
        "cycles_burn128",
        move |mut c: C, hi: i64, lo: i64, dst: i32| -> Result<()> {
            enter(&mut c, "cycles_burn128", "IGUytCT")?;
            let ctx = c.data_mut();
            let amount = u128_of(hi, lo).min(ctx.sys.cycles);
            ctx.sys.cycles -= amount;
            write_u128(&mut c, u(dst), amount)
        },
    )?;
    l.func_wrap(
        "ic0",
        "canister_cycle_balance128",
        move |mut c: C, dst: i32| -> Result<()> {
            enter(&mut c, "canister_cycle_balance128", "*")?;
            let v = c.data().sys.cycles;
            write_u128(&mut c, u(dst), v)
        },
    )?;
    l.func_wrap(
        "ic0",
        "canister_liquid_cycle_balance128",
        move |mut c: C, dst: i32| -> Result<()> {
            enter(&mut c, "canister_liquid_cycle_balance128", "*")?;
            let v = c.data().sys.cycles;
            write_u128(&mut c, u(dst), v)
        },
    )?;

    // ---- canister / subnet identity and status
    l.func_wrap("ic0", "canister_self_size", |mut c: C| -> Result<i32> {
        enter(&mut c, "canister_self_size", "*")?;
        Ok(c.data().sys.self_id.as_slice().len() as i32)
    })?;
    l.func_wrap(
        "ic0",
        "canister_self_copy",
        move |mut c: C, dst: i32, off: i32, size: i32| -> Result<()> {
            enter(&mut c, "canister_self_copy", "*")?;
            charge(&mut c, u(size))?;
            let src = c.data().sys.self_id.as_slice().to_vec();
            copy_out(&mut c, u(dst), u(off), u(size), &src)
        },
    )?;
    l.func_wrap("ic0", "canister_status", |mut c: C| -> Result<i32> {
        enter(&mut c, "canister_status", "*")?;
        Ok(c.data().sys.status as i32)
    })?;
    l.func_wrap("ic0", "canister_version", |mut c: C| -> Result<i64> {
        enter(&mut c, "canister_version", "*")?;
        Ok(c.data().sys.version as i64)
    })?;
    l.func_wrap("ic0", "subnet_self_size", |mut c: C| -> Result<i32> {
        enter(&mut c, "subnet_self_size", "*")?;
        Ok(c.data().subnet.as_slice().len() as i32)
    })?;
    l.func_wrap(
        "ic0",
        "subnet_self_copy",
        move |mut c: C, dst: i32, off: i32, size: i32| -> Result<()> {
            enter(&mut c, "subnet_self_copy", "*")?;
            charge(&mut c, u(size))?;
            let src = c.data().subnet.as_slice().to_vec();
            copy_out(&mut c, u(dst), u(off), u(size), &src)
        },
    )?;
    l.func_wrap("ic0", "subnet_self_node_count", |mut c: C| -> Result<i32> {
        enter(&mut c, "subnet_self_node_count", "*")?;
        Ok(13)
    })?;
    l.func_wrap("ic0", "msg_method_name_size", |mut c: C| -> Result<i32> {
        enter(&mut c, "msg_method_name_size", "F")?;
        Ok(c.data().msg.method.len() as i32)
    })?;
    l.func_wrap(
        "ic0",
        "msg_method_name_copy",
        move |mut c: C, dst: i32, off: i32, size: i32| -> Result<()> {
            enter(&mut c, "msg_method_name_copy", "F")?;
            charge(&mut c, u(size))?;
            let src = c.data().msg.method.clone().into_bytes();
            copy_out(&mut c, u(dst), u(off), u(size), &src)
        },
    )?;
    l.func_wrap("ic0", "accept_message", |mut c: C| -> Result<()> {
        enter(&mut c, "accept_message", "F")?;
        if c.data().msg.accepted {
            return trap(
                &mut c,
                "Canister violated contract: ic0.accept_message called twice".into(),
            );
        }
        c.data_mut().msg.accepted = true;
        Ok(())
    })?;

    // ---- inter-canister calls
    l.func_wrap(
        "ic0",
        "call_new",
        move |mut c: C,
              callee_src: i32,
              callee_size: i32,
              name_src: i32,
              name_size: i32,
              reply_fun: i32,
              reply_env: i32,
              reject_fun: i32,
              reject_env: i32|
              -> Result<()> {
            enter(&mut c, "call_new", "UytT")?;
            charge(&mut c, u(callee_size) + u(name_size))?;
            let callee = read(&mut c, u(callee_src), u(callee_size))?;
            let callee = principal_from(&mut c, callee)?;
            let name = read(&mut c, u(name_src), u(name_size))?;
            let method = match String::from_utf8(name) {
                Ok(m) => m,
                Err(_) => {
                    return trap(
                        &mut c,
                        "Canister violated contract: ic0.call_new: method name is not UTF-8".into(),
                    )
                }
            };
            // A call under construction that was not performed is discarded.
            c.data_mut().msg.pending = Some(OutCall {
                callee,
                method,
                arg: Vec::new(),
                cycles: 0,
                reply: (reply_fun as u32, reply_env as u32),
                reject: (reject_fun as u32, reject_env as u32),
                cleanup: None,
                timeout_secs: None,
            });
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_on_cleanup",
        |mut c: C, fun: i32, env: i32| -> Result<()> {
            enter(&mut c, "call_on_cleanup", "UytT")?;
            let p = pending(&mut c, "call_on_cleanup")?;
            if p.cleanup.is_some() {
                return trap(
                    &mut c,
                    "Canister violated contract: ic0.call_on_cleanup called twice for one call"
                        .into(),
                );
            }
            p.cleanup = Some((fun as u32, env as u32));
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_data_append",
        move |mut c: C, src: i32, size: i32| -> Result<()> {
            enter(&mut c, "call_data_append", "UytT")?;
            charge(&mut c, BYTE_TRANSMISSION_COST_FACTOR * u(size))?;
            let p = pending(&mut c, "call_data_append")?;
            let current = (p.method.len() + p.arg.len()) as u64;
            let (callee, method) = (p.callee, p.method.clone());
            let max = c.data().msg.max_request_bytes;
            if current + u(size) > max {
                return trap(
                    &mut c,
                    format!("Canister violated contract: Request to {callee}:{method} has a payload size of {}, which exceeds the allowed limit of {max}.", current + u(size)),
                );
            }
            let bytes = read(&mut c, u(src), u(size))?;
            pending(&mut c, "call_data_append")?
                .arg
                .extend_from_slice(&bytes);
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_with_best_effort_response",
        |mut c: C, t: i32| -> Result<()> {
            enter(&mut c, "call_with_best_effort_response", "UytT")?;
            let p = pending(&mut c, "call_with_best_effort_response")?;
            if p.timeout_secs.is_some() {
                return trap(
                    &mut c,
                    "Canister violated contract: ic0.call_with_best_effort_response called twice"
                        .into(),
                );
            }
            p.timeout_secs = Some((t as u32).min(MAX_BEST_EFFORT_TIMEOUT_SECS));
            Ok(())
        },
    )?;
    l.func_wrap("ic0", "call_cycles_add128", |mut c: C, hi: i64, lo: i64| -> Result<()> {
        enter(&mut c, "call_cycles_add128", "UytT")?;
        pending(&mut c, "call_cycles_add128")?;
        let amount = u128_of(hi, lo);
        let balance = c.data().sys.cycles;
        if balance < amount {
            return trap(
                &mut c,
                format!("Canister trapped: ic0.call_cycles_add128: insufficient cycles balance ({balance} < {amount})"),
            );
        }
        let ctx = c.data_mut();
        ctx.sys.cycles -= amount;
        ctx.msg.pending.as_mut().unwrap().cycles += amount;
        Ok(())
    })?;
    l.func_wrap("ic0", "call_perform", |mut c: C| -> Result<i32> {
        enter(&mut c, "call_perform", "UytT")?;
        pending(&mut c, "call_perform")?;
        let ctx = c.data_mut();
        let call = ctx.msg.pending.take().unwrap();
        let index = ctx.msg.calls.len() as u32;
        if let Some((i, code)) = ctx.msg.call_perform_fail {
            if i == index {
                // Synchronous failure: the call is not made, cycles return to the balance.
                ctx.msg.call_perform_fail = None;
                ctx.sys.cycles += call.cycles;
                return Ok(code as i32);
            }
        }
        // The output queue to the callee (with the slots reserved for responses) is full: the
        // replica refuses the call synchronously with SYS_TRANSIENT (dfinity/ic
        // `rs/embedders/src/wasmtime_embedder/system_api.rs`, `ic0_call_perform`).
        let queued = ctx.msg.inflight.get(&call.callee).copied().unwrap_or(0)
            + ctx
                .msg
                .calls
                .iter()
                .filter(|c| c.callee == call.callee)
                .count() as u32;
        if queued >= ctx.msg.queue_capacity {
            ctx.sys.cycles += call.cycles;
            return Ok(RejectCode::SysTransient as i32);
        }
        ctx.msg.calls.push(call);
        Ok(0)
    })?;

    // ---- stable memory
    l.func_wrap("ic0", "stable64_size", |mut c: C| -> Result<i64> {
        enter(&mut c, "stable64_size", "*")?;
        Ok((c.data().stable.len() as u64 / WASM_PAGE) as i64)
    })?;
    l.func_wrap(
        "ic0",
        "stable64_grow",
        |mut c: C, pages: i64| -> Result<i64> {
            enter(&mut c, "stable64_grow", "*")?;
            Ok(stable_grow(&mut c, pages as u64, MAX_STABLE_PAGES) as i64)
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable64_write",
        |mut c: C, off: i64, src: i64, size: i64| -> Result<()> {
            enter(&mut c, "stable64_write", "*")?;
            charge(&mut c, size as u64)?;
            charge_stable_dirty(&mut c, off as u64, size as u64)?;
            let bytes = read(&mut c, src as u64, size as u64)?;
            stable_write(&mut c, off as u64, &bytes)
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable64_read",
        |mut c: C, dst: i64, off: i64, size: i64| -> Result<()> {
            enter(&mut c, "stable64_read", "*")?;
            charge(&mut c, size as u64)?;
            stable_read(&mut c, dst as u64, off as u64, size as u64)
        },
    )?;
    l.func_wrap("ic0", "stable_size", |mut c: C| -> Result<i32> {
        enter(&mut c, "stable_size", "*")?;
        let pages = c.data().stable.len() as u64 / WASM_PAGE;
        if pages > 65536 {
            return trap(
                &mut c,
                "Canister trapped: ic0.stable_size: stable memory exceeds 4 GiB, use stable64_size"
                    .into(),
            );
        }
        Ok(pages as i32)
    })?;
    l.func_wrap(
        "ic0",
        "stable_grow",
        |mut c: C, pages: i32| -> Result<i32> {
            enter(&mut c, "stable_grow", "*")?;
            let r = stable_grow(&mut c, pages as u32 as u64, 65536);
            Ok(if r == u64::MAX { -1 } else { r as i32 })
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable_write",
        move |mut c: C, off: i32, src: i32, size: i32| -> Result<()> {
            enter(&mut c, "stable_write", "*")?;
            charge(&mut c, u(size))?;
            charge_stable_dirty(&mut c, u(off), u(size))?;
            let bytes = read(&mut c, u(src), u(size))?;
            stable_write(&mut c, u(off), &bytes)
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable_read",
        move |mut c: C, dst: i32, off: i32, size: i32| -> Result<()> {
            enter(&mut c, "stable_read", "*")?;
            charge(&mut c, u(size))?;
            stable_read(&mut c, u(dst), u(off), u(size))
        },
    )?;

    // ---- certification, time, timers, counters
    l.func_wrap("ic0", "root_key_size", |mut c: C| -> Result<i32> {
        enter(&mut c, "root_key_size", "*")?;
        Ok(ROOT_KEY.len() as i32)
    })?;
    l.func_wrap(
        "ic0",
        "root_key_copy",
        move |mut c: C, dst: i32, off: i32, size: i32| -> Result<()> {
            enter(&mut c, "root_key_copy", "*")?;
            charge(&mut c, u(size))?;
            copy_out(&mut c, u(dst), u(off), u(size), &ROOT_KEY)
        },
    )?;
    l.func_wrap(
        "ic0",
        "certified_data_set",
        move |mut c: C, src: i32, size: i32| -> Result<()> {
            enter(&mut c, "certified_data_set", "IGUytCT")?;
            charge(&mut c, u(size))?;
            if size as u32 > 32 {
                return trap(
                    &mut c,
                    format!(
                        "Canister violated contract: ic0.certified_data_set: {} bytes > 32",
                        size as u32
                    ),
                );
            }
            let bytes = read(&mut c, u(src), u(size))?;
            c.data_mut().sys.certified_data = bytes;
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "data_certificate_present",
        |mut c: C| -> Result<i32> {
            enter(&mut c, "data_certificate_present", "*")?;
            // The simulator produces no certificates (no state tree / BLS signatures).
            Ok(0)
        },
    )?;
    l.func_wrap("ic0", "data_certificate_size", |mut c: C| -> Result<i32> {
        enter(&mut c, "data_certificate_size", "N")?;
        trap(&mut c, "Canister violated contract: ic0.data_certificate_size: no certificate present (the simulator does not certify state)".into())
    })?;
    l.func_wrap("ic0", "data_certificate_copy", |mut c: C, _d: i32, _o: i32, _s: i32| -> Result<()> {
        enter(&mut c, "data_certificate_copy", "N")?;
        trap(&mut c, "Canister violated contract: ic0.data_certificate_copy: no certificate present (the simulator does not certify state)".into())
    })?;
    l.func_wrap("ic0", "time", |mut c: C| -> Result<i64> {
        enter(&mut c, "time", "*")?;
        Ok(c.data().sys.time as i64)
    })?;
    l.func_wrap(
        "ic0",
        "global_timer_set",
        |mut c: C, t: i64| -> Result<i64> {
            enter(&mut c, "global_timer_set", "IGUytCT")?;
            let old = std::mem::replace(&mut c.data_mut().sys.global_timer, t as u64);
            Ok(old as i64)
        },
    )?;
    l.func_wrap("ic0", "performance_counter", |mut c: C, kind: i32| -> Result<i64> {
        enter(&mut c, "performance_counter", "sIGUQNytCTF")?;
        let now = current_instructions(&c);
        match kind {
            0 => Ok(now as i64),
            1 => Ok((c.data().msg.ctx_instructions + now) as i64),
            _ => trap(
                &mut c,
                format!("Canister violated contract: ic0.performance_counter: unknown counter type {kind}"),
            ),
        }
    })?;
    l.func_wrap(
        "ic0",
        "is_controller",
        move |mut c: C, src: i32, size: i32| -> Result<i32> {
            enter(&mut c, "is_controller", "*")?;
            charge(&mut c, u(size))?;
            if size as u32 > 29 {
                return trap(
                    &mut c,
                    "Canister violated contract: ic0.is_controller: principal longer than 29 bytes"
                        .into(),
                );
            }
            let bytes = read(&mut c, u(src), u(size))?;
            let p = principal_from(&mut c, bytes)?;
            Ok(c.data().sys.controllers.contains(&p) as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "in_replicated_execution",
        |mut c: C| -> Result<i32> {
            enter(&mut c, "in_replicated_execution", "*")?;
            let k = c.data().msg.kind;
            Ok(!matches!(k, MessageKind::Query | MessageKind::InspectMessage) as i32)
        },
    )?;

    // ---- cost estimation
    l.func_wrap(
        "ic0",
        "cost_call",
        move |mut c: C, name_size: i64, payload_size: i64, dst: i32| -> Result<()> {
            enter(&mut c, "cost_call", "*")?;
            let bytes = (name_size as u64 as u128) + (payload_size as u64 as u128);
            write_u128(&mut c, u(dst), XNET_CALL_FEE + XNET_BYTE_FEE * bytes)
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_create_canister",
        move |mut c: C, dst: i32| -> Result<()> {
            enter(&mut c, "cost_create_canister", "*")?;
            write_u128(&mut c, u(dst), 500_000_000_000)
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_http_request",
        move |mut c: C, req: i64, res: i64, dst: i32| -> Result<()> {
            enter(&mut c, "cost_http_request", "*")?;
            let n = 13u128;
            let cost = (3_000_000 + 60_000 * n) * n
                + 400 * n * req as u64 as u128
                + 800 * n * res as u64 as u128;
            write_u128(&mut c, u(dst), cost)
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_http_request_v2",
        move |mut c: C, _src: i32, _size: i32, dst: i32| -> Result<()> {
            enter(&mut c, "cost_http_request_v2", "*")?;
            write_u128(&mut c, u(dst), 50_000_000_000)
        },
    )?;
    for name in [
        "cost_sign_with_ecdsa",
        "cost_sign_with_schnorr",
        "cost_vetkd_derive_key",
    ] {
        l.func_wrap(
            "ic0",
            name,
            move |mut c: C, _src: i32, size: i32, _alg: i32, dst: i32| -> Result<i32> {
                enter(&mut c, name, "*")?;
                charge(&mut c, u(size))?;
                write_u128(&mut c, u(dst), 26_153_846_153)?;
                Ok(0)
            },
        )?;
    }

    // ---- environment variables (the simulator sets none)
    l.func_wrap("ic0", "env_var_count", |mut c: C| -> Result<i32> {
        enter(&mut c, "env_var_count", "*")?;
        Ok(0)
    })?;
    l.func_wrap("ic0", "env_var_name_size", |mut c: C, i: i32| -> Result<i32> {
        enter(&mut c, "env_var_name_size", "*")?;
        trap(&mut c, format!("Canister violated contract: ic0.env_var_name_size: index {i} out of bounds (0 variables)"))
    })?;
    l.func_wrap("ic0", "env_var_name_copy", |mut c: C, i: i32, _d: i32, _o: i32, _s: i32| -> Result<()> {
        enter(&mut c, "env_var_name_copy", "*")?;
        trap(&mut c, format!("Canister violated contract: ic0.env_var_name_copy: index {i} out of bounds (0 variables)"))
    })?;
    l.func_wrap(
        "ic0",
        "env_var_name_exists",
        |mut c: C, _s: i32, _n: i32| -> Result<i32> {
            enter(&mut c, "env_var_name_exists", "*")?;
            Ok(0)
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_value_size",
        |mut c: C, _s: i32, _n: i32| -> Result<i32> {
            enter(&mut c, "env_var_value_size", "*")?;
            trap(
                &mut c,
                "Canister violated contract: ic0.env_var_value_size: no such environment variable"
                    .into(),
            )
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_value_copy",
        |mut c: C, _s: i32, _n: i32, _d: i32, _o: i32, _z: i32| -> Result<()> {
            enter(&mut c, "env_var_value_copy", "*")?;
            charge(&mut c, _z as u32 as u64)?;
            trap(
                &mut c,
                "Canister violated contract: ic0.env_var_value_copy: no such environment variable"
                    .into(),
            )
        },
    )?;

    // ---- debugging
    l.func_wrap(
        "ic0",
        "debug_print",
        move |mut c: C, src: i32, size: i32| -> Result<()> {
            enter(&mut c, "debug_print", "sIGUQNytCTF")?;
            let logging = logging_charge(&mut c, u(size));
            charge(&mut c, logging)?;
            log_record(&mut c, u(size));
            let bytes = read(&mut c, u(src), u(size))?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if c.data().print_logs {
                eprintln!("[ic-sim {}] {}", c.data().sys.self_id, text);
            }
            c.data_mut().msg.logs.push(text);
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "trap",
        move |mut c: C, src: i32, size: i32| -> Result<()> {
            enter(&mut c, "trap", "sIGUQNytCTF")?;
            let logging = logging_charge(&mut c, u(size));
            charge(&mut c, u(size) + logging)?;
            log_record(&mut c, u(size));
            let bytes = read(&mut c, u(src), u(size))?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            trap(
                &mut c,
                format!("Canister called `ic0.trap` with message: '{text}'"),
            )
        },
    )?;
    Ok(l)
}
