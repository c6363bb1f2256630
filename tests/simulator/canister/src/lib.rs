//! Test canister for `ic-sim`: small endpoints, each pinning one piece of IC semantics when
//! run through real ic-cdk 0.20 / ic-cdk-timers 1.0 code paths.

use candid::Principal;
use ic_cdk::call::Call;
use ic_cdk::{init, post_upgrade, pre_upgrade, query, update};
use std::cell::{Cell, RefCell};
use std::time::Duration;

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(0) };
    static LOCKED: Cell<bool> = const { Cell::new(false) };
    static RECORDS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    static TIMER_FIRED: Cell<u64> = const { Cell::new(0) };
    static INIT_ARG: Cell<u64> = const { Cell::new(0) };
}

#[init]
fn init(arg: Option<u64>) {
    INIT_ARG.set(arg.unwrap_or(0));
}

/// Stable memory layout: page 0 holds the counter saved by pre_upgrade at offset 0;
/// `stable_put` data lives at offset 8 (u32 length + bytes).
#[pre_upgrade]
fn pre_upgrade() {
    ensure_stable();
    ic_cdk::stable::stable_write(0, &COUNTER.get().to_le_bytes());
}

#[post_upgrade]
fn post_upgrade(arg: Option<u64>) {
    INIT_ARG.set(arg.unwrap_or(0));
    let mut b = [0u8; 8];
    ic_cdk::stable::stable_read(0, &mut b);
    COUNTER.set(u64::from_le_bytes(b));
}

fn ensure_stable() {
    if ic_cdk::stable::stable_size() == 0 {
        ic_cdk::stable::stable_grow(1).expect("grow stable memory");
    }
}

#[query]
fn init_arg() -> u64 {
    INIT_ARG.get()
}

#[update]
fn inc() -> u64 {
    COUNTER.set(COUNTER.get() + 1);
    COUNTER.get()
}

#[query]
fn get() -> u64 {
    COUNTER.get()
}

#[update]
fn inc_and_trap() -> u64 {
    COUNTER.set(COUNTER.get() + 1);
    ic_cdk::trap("inc_and_trap traps on purpose");
}

#[query]
fn inc_in_query() -> u64 {
    COUNTER.set(COUNTER.get() + 1);
    COUNTER.get()
}

#[update]
fn noop() {}

/// Call `callee.method(())`; returns the raw reply or (reject code, message).
#[update]
async fn call(
    callee: Principal,
    method: String,
    timeout_secs: Option<u32>,
) -> Result<Vec<u8>, (u32, String)> {
    let c = match timeout_secs {
        Some(t) => Call::bounded_wait(callee, &method).change_timeout(t),
        None => Call::unbounded_wait(callee, &method),
    };
    match c.await {
        Ok(r) => Ok(r.into_bytes()),
        Err(ic_cdk::call::CallFailed::CallRejected(r)) => {
            Err((r.raw_reject_code(), r.reject_message().to_string()))
        }
        Err(e) => Err((0, e.to_string())),
    }
}

/// Journal-style commit: change state, commit it with a self-call, then trap.
/// The change survives because the message before the await was committed.
#[update]
async fn commit_then_trap() {
    COUNTER.set(COUNTER.get() + 100);
    Call::unbounded_wait(ic_cdk::api::canister_self(), "noop")
        .await
        .expect("self-call");
    ic_cdk::trap("trap after the self-call commit");
}

struct LockGuard;
impl Drop for LockGuard {
    fn drop(&mut self) {
        LOCKED.set(false);
    }
}

/// Take a lock released by a Drop guard, call `callee.get`, then trap in the callback.
/// ic-cdk releases the guard in `call_on_cleanup`.
#[update]
async fn lock_call_trap(callee: Principal) {
    LOCKED.set(true);
    let _guard = LockGuard;
    let _ = Call::unbounded_wait(callee, "get").await;
    COUNTER.set(COUNTER.get() + 1000); // rolled back by the trap below
    ic_cdk::trap("trap in the callback");
}

#[query]
fn is_locked() -> bool {
    LOCKED.get()
}

/// Send `n` one-way requests `record(i)` to `callee`, i = 0..n.
#[update]
fn send_records(callee: Principal, n: u64) {
    for i in 0..n {
        Call::unbounded_wait(callee, "record")
            .with_arg(i)
            .oneway()
            .expect("oneway");
    }
}

/// Send `n` awaited requests `record(i)` to `callee` concurrently.
#[update]
fn send_records_awaited(callee: Principal, n: u64) {
    for i in 0..n {
        ic_cdk::futures::spawn(async move {
            let _ = Call::bounded_wait(callee, "record").with_arg(i).await;
        });
    }
}

#[update]
fn record(i: u64) {
    RECORDS.with_borrow_mut(|r| r.push(i));
}

#[query]
fn records() -> Vec<u64> {
    RECORDS.with_borrow(|r| r.clone())
}

#[update]
fn set_timer(secs: u64) {
    ic_cdk_timers::set_timer(Duration::from_secs(secs), async {
        TIMER_FIRED.set(TIMER_FIRED.get() + 1);
    });
}

#[query]
fn timer_fired() -> u64 {
    TIMER_FIRED.get()
}

#[update]
fn stable_put(data: Vec<u8>) {
    ensure_stable();
    let need = 8 + 4 + data.len() as u64;
    let have = ic_cdk::stable::stable_size() * 65536;
    if need > have {
        ic_cdk::stable::stable_grow((need - have).div_ceil(65536)).expect("grow");
    }
    ic_cdk::stable::stable_write(8, &(data.len() as u32).to_le_bytes());
    ic_cdk::stable::stable_write(12, &data);
}

#[query]
fn stable_get() -> Vec<u8> {
    if ic_cdk::stable::stable_size() == 0 {
        return vec![];
    }
    let mut len = [0u8; 4];
    ic_cdk::stable::stable_read(8, &mut len);
    let mut data = vec![0u8; u32::from_le_bytes(len) as usize];
    ic_cdk::stable::stable_read(12, &mut data);
    data
}

/// Busy loop; returns ic0.performance_counter(0) at the end.
#[update]
fn spin(n: u64) -> u64 {
    let mut x = 0u64;
    for i in 0..n {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    std::hint::black_box(x);
    ic_cdk::api::performance_counter(0)
}

#[update]
async fn rand() -> Vec<u8> {
    let r = Call::unbounded_wait(Principal::management_canister(), "raw_rand")
        .await
        .expect("raw_rand");
    r.candid::<Vec<u8>>().expect("decode")
}

#[query]
fn canister_version() -> u64 {
    ic_cdk::api::canister_version()
}

// ------------------------------------------------------------------ management canister
//
// Each endpoint makes one management-canister call through `ic-cdk-management-canister`, whose
// Candid types (`ic-management-canister-types`) are the IC's public interface: a reply the
// simulator shaped wrongly fails to decode here and comes back as `Err((0, ..))`.

use ic_cdk_management_canister as mgmt;

type MgmtResult<T> = Result<T, (u32, String)>;

fn mgmt_err(e: ic_cdk::call::Error) -> (u32, String) {
    match e {
        ic_cdk::call::Error::CallRejected(r) => {
            (r.raw_reject_code(), r.reject_message().to_string())
        }
        other => (0, other.to_string()),
    }
}

fn install_mode(mode: &str, skip_pre_upgrade: Option<bool>) -> mgmt::CanisterInstallMode {
    match mode {
        "install" => mgmt::CanisterInstallMode::Install,
        "reinstall" => mgmt::CanisterInstallMode::Reinstall,
        _ => mgmt::CanisterInstallMode::Upgrade(Some(mgmt::UpgradeFlags {
            skip_pre_upgrade,
            wasm_memory_persistence: None,
        })),
    }
}

/// `create_canister` with `cost_create_canister() + extra_cycles` attached.
#[update]
async fn mgmt_create(
    extra_cycles: u128,
    settings: Option<mgmt::CanisterSettings>,
) -> MgmtResult<Principal> {
    let arg = mgmt::CreateCanisterArgs { settings };
    mgmt::create_canister_with_extra_cycles(&arg, extra_cycles)
        .await
        .map(|r| r.canister_id)
        .map_err(mgmt_err)
}

/// `create_canister` with exactly `cycles` attached (below the fee it must be refused).
#[update]
async fn mgmt_create_raw(cycles: u128) -> MgmtResult<Principal> {
    let r = Call::unbounded_wait(Principal::management_canister(), "create_canister")
        .with_arg(mgmt::CreateCanisterArgs { settings: None })
        .with_cycles(cycles)
        .await
        .map_err(|e| mgmt_err(e.into()))?;
    r.candid::<mgmt::CanisterIdRecord>()
        .map(|r| r.canister_id)
        .map_err(|e| (0, e.to_string()))
}

#[update]
async fn mgmt_install(
    canister: Principal,
    mode: String,
    wasm: Vec<u8>,
    arg: Vec<u8>,
    skip_pre_upgrade: Option<bool>,
) -> MgmtResult<()> {
    let args = mgmt::InstallCodeArgs {
        mode: install_mode(&mode, skip_pre_upgrade),
        canister_id: canister,
        wasm_module: wasm,
        arg,
    };
    mgmt::install_code(&args).await.map_err(mgmt_err)
}

#[update]
async fn mgmt_uninstall(canister: Principal) -> MgmtResult<()> {
    mgmt::uninstall_code(&mgmt::UninstallCodeArgs {
        canister_id: canister,
    })
    .await
    .map_err(mgmt_err)
}

#[update]
async fn mgmt_update_settings(
    canister: Principal,
    settings: mgmt::CanisterSettings,
) -> MgmtResult<()> {
    mgmt::update_settings(&mgmt::UpdateSettingsArgs {
        canister_id: canister,
        settings,
    })
    .await
    .map_err(mgmt_err)
}

#[update]
async fn mgmt_status(canister: Principal) -> MgmtResult<mgmt::CanisterStatusResult> {
    mgmt::canister_status(&mgmt::CanisterStatusArgs {
        canister_id: canister,
    })
    .await
    .map_err(mgmt_err)
}

#[update]
async fn mgmt_info(canister: Principal) -> MgmtResult<mgmt::CanisterInfoResult> {
    mgmt::canister_info(&mgmt::CanisterInfoArgs {
        canister_id: canister,
        num_requested_changes: Some(20),
    })
    .await
    .map_err(mgmt_err)
}

#[update]
async fn mgmt_start(canister: Principal) -> MgmtResult<()> {
    mgmt::start_canister(&mgmt::StartCanisterArgs {
        canister_id: canister,
    })
    .await
    .map_err(mgmt_err)
}

#[update]
async fn mgmt_stop(canister: Principal) -> MgmtResult<()> {
    mgmt::stop_canister(&mgmt::StopCanisterArgs {
        canister_id: canister,
    })
    .await
    .map_err(mgmt_err)
}

#[update]
async fn mgmt_delete(canister: Principal) -> MgmtResult<()> {
    mgmt::delete_canister(&mgmt::DeleteCanisterArgs {
        canister_id: canister,
    })
    .await
    .map_err(mgmt_err)
}

#[update]
async fn mgmt_deposit(canister: Principal, cycles: u128) -> MgmtResult<()> {
    mgmt::deposit_cycles(
        &mgmt::DepositCyclesArgs {
            canister_id: canister,
        },
        cycles,
    )
    .await
    .map_err(mgmt_err)
}

#[query]
fn balance() -> u128 {
    ic_cdk::api::canister_cycle_balance()
}

// ------------------------------------------------------------------ instruction counters

/// Awaits `n` self-calls and returns, for each message of the call context (the first message
/// and each callback), `(performance_counter(0), performance_counter(1))` read at its end.
#[update]
async fn counters(n: u32) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for _ in 0..n {
        spin_a_bit();
        out.push((
            ic_cdk::api::performance_counter(0),
            ic_cdk::api::performance_counter(1),
        ));
        Call::unbounded_wait(ic_cdk::api::canister_self(), "noop")
            .await
            .expect("self-call");
    }
    spin_a_bit();
    out.push((
        ic_cdk::api::performance_counter(0),
        ic_cdk::api::performance_counter(1),
    ));
    out
}

fn spin_a_bit() {
    let mut x = 0u64;
    for i in 0..2_000u64 {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
    }
    std::hint::black_box(x);
}

// ------------------------------------------------------------------ limits

/// `memory.grow` on the Wasm heap; the native build (the workspace compiles every crate for
/// the host too) has no Wasm memory to grow.
fn memory_grow(pages: usize) -> usize {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::memory_grow(0, pages)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = pages;
        usize::MAX
    }
}

/// Grow the Wasm heap by `pages` (64 KiB) with `memory.grow`; returns its result.
#[update]
fn grow_heap(pages: u32) -> i64 {
    memory_grow(pages as usize) as isize as i64
}

/// `ic0.stable64_grow(pages)`; returns its raw result (-1 on failure).
#[update]
fn grow_stable(pages: u64) -> i64 {
    match ic_cdk::stable::stable_grow(pages) {
        Ok(old) => old as i64,
        Err(_) => -1,
    }
}

/// Start `n` one-way calls to `callee.noop` in one message; returns how many `call_perform`
/// accepted and how many it refused.
#[update]
fn fan_out(callee: Principal, n: u32) -> (u32, u32) {
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..n {
        match Call::unbounded_wait(callee, "noop").oneway() {
            Ok(()) => ok += 1,
            Err(_) => refused += 1,
        }
    }
    (ok, refused)
}

/// Call `callee.echo(bytes)` with a payload of `size` bytes.
#[update]
async fn send_payload(callee: Principal, size: u32) -> MgmtResult<u32> {
    let r = Call::unbounded_wait(callee, "echo_len")
        .with_arg(vec![7u8; size as usize])
        .await
        .map_err(|e| mgmt_err(e.into()))?;
    r.candid::<u32>().map_err(|e| (0, e.to_string()))
}

#[update]
fn echo_len(bytes: Vec<u8>) -> u32 {
    bytes.len() as u32
}

/// Reply with `size` bytes.
#[update]
fn big_reply(size: u32) -> Vec<u8> {
    vec![1u8; size as usize]
}

/// Grow the heap by `pages` (64 KiB) and write one byte into every 4 KiB page of the new
/// memory, so that it is really resident (benchmarks of large heaps).
#[update]
fn fill_heap(pages: u32) -> i64 {
    let old = memory_grow(pages as usize);
    if old == usize::MAX {
        return -1;
    }
    let base = old * 65536;
    for off in (0..pages as usize * 65536).step_by(4096) {
        // SAFETY: the range was just added to the Wasm memory and nothing else uses it.
        unsafe { core::ptr::write_volatile((base + off) as *mut u8, 1) };
    }
    old as i64
}

thread_local! {
    static CLEANUP_COUNTERS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

struct CounterGuard;
impl Drop for CounterGuard {
    fn drop(&mut self) {
        // Runs in `canister_cleanup` when the callback below traps.
        CLEANUP_COUNTERS.set((
            ic_cdk::api::performance_counter(0),
            ic_cdk::api::performance_counter(1),
        ));
    }
}

/// Await `callee.get`, then trap in the callback: ic-cdk drops the guard in the cleanup, which
/// records both performance counters as seen there.
#[update]
async fn counters_in_cleanup(callee: Principal) {
    let _guard = CounterGuard;
    let _ = Call::unbounded_wait(callee, "get").await;
    ic_cdk::trap("trap in the callback");
}

#[query]
fn cleanup_counters() -> (u64, u64) {
    CLEANUP_COUNTERS.get()
}
