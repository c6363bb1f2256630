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
