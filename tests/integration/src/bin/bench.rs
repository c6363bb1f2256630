//! Side-by-side cost benchmark of icjournal on the IC simulator (real canister Wasm on
//! wasmtime, instructions counted as the IC counts them, System API calls charged as
//! `system_api_complexity.rs` says).
//!
//! `cargo run --release --locked -p icjournal-tests --bin bench`
//!
//! It installs a *bare* baseline canister (`tests/bare`: the same ICRC-1 / ICRC-2 transfers,
//! no journal), the icjournal service and the payout example, and prints instructions per
//! message and per flow, cycles per flow (13-node fee table below), stable bytes per resolved
//! entry, `post_upgrade` instructions at 0 / 10k / 100k entries next to a replay baseline
//! (`tests/bare` in event-log mode, like ckBTC's minter), the per-op cost at those sizes, and
//! the recovery throughput for 1,000 unknown outcomes. The last lines are the figures
//! (`P1` .. `P5`); `docs/cost-model.md` explains each.
//!
//! Bulk setup is native, and says so: a journal of 10k / 100k entries is built by the service's
//! own code (`icjournal_canister::service::Service` on the engine's `FakeRuntime` over a
//! `VectorMemory`, every ledger call answered), and its bytes are loaded as the service
//! canister's stable memory on the simulator (`Simulator::set_stable_memory`) before the
//! measured upgrade. Filling 100k entries through messages would take the simulator hours;
//! the bytes are the same the canister would have written.
//!
//! Environment: `BENCH_SIZES` (default `0,10000,100000`), `BENCH_UNKNOWN` (default 1000).

use candid::{Encode, Nat, Principal};
use ic_sim::{MessageKind, MessageRecord, Simulator};
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager};
use ic_stable_structures::{Memory, VectorMemory};
use icjournal::{CallError, FakeRuntime, PendingCall, RejectCode, Status};
use icjournal_canister::guard::Ctx;
use icjournal_canister::service::Service;
use icjournal_client::{ServiceConfig, TransferRequest};
use icjournal_tests::*;
use icrc_ledger_types::icrc1::transfer::TransferError;
use icrc_ledger_types::icrc2::transfer_from::TransferFromError;
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// The 13-node application subnet fee table.
// Source: dfinity/ic `rs/config/src/subnet_config.rs`, `CyclesAccountManagerConfig::
// application_subnet` (reference_subnet_size 13): update_message_execution_fee 5_000_000;
// ten_update_instructions_execution_fee 10 (per 10 instructions, i.e. 1 cycle per instruction);
// xnet_call_fee 260_000; xnet_byte_transmission_fee 1_000 (per byte, request and response).
// The ingress reception fee (1_200_000 + 2_000 per byte, same file) is left out: bare and
// journaled flows receive the same one ingress message, and leaving it out makes the ratio
// stricter, not looser.
// ---------------------------------------------------------------------------------------------
const UPDATE_MESSAGE_FEE: u128 = 5_000_000;
const TEN_INSTRUCTIONS_FEE: u128 = 10;
const XNET_CALL_FEE: u128 = 260_000;
const XNET_BYTE_FEE: u128 = 1_000;

const AMOUNT: u64 = 1_000_000;

/// What one flow cost the canister that pays for it.
#[derive(Default, Clone)]
struct Flow {
    /// (kind, method, instructions, payload bytes) of each of the payer's messages.
    messages: Vec<(MessageKind, Option<String>, u64, u64)>,
    instructions: u64,
    calls: u64,
    bytes: u64,
}

impl Flow {
    fn cycles(&self) -> u128 {
        self.messages.len() as u128 * UPDATE_MESSAGE_FEE
            + self.instructions as u128 * TEN_INSTRUCTIONS_FEE / 10
            + self.calls as u128 * XNET_CALL_FEE
            + self.bytes as u128 * XNET_BYTE_FEE
    }
}

fn is_callback(k: MessageKind) -> bool {
    matches!(
        k,
        MessageKind::ReplyCallback | MessageKind::RejectCallback | MessageKind::Cleanup
    )
}

/// The payer's share of the messages executed since trace position `start`: its own messages
/// (5M + instructions each), the calls it made (260k + 1,000 per request byte) and the
/// responses it received (1,000 per byte). A self-call counts both as a call and a message.
fn flow_since(sim: &Simulator, payer: Principal, start: usize) -> Flow {
    let mut f = Flow::default();
    for r in &sim.trace()[start..] {
        if matches!(r.kind, MessageKind::Query | MessageKind::InspectMessage) {
            continue;
        }
        if r.canister == payer {
            f.instructions += r.instructions;
            f.messages
                .push((r.kind, r.method.clone(), r.instructions, r.arg_bytes));
            if is_callback(r.kind) {
                f.bytes += r.arg_bytes;
            }
        }
        if r.caller == payer && r.kind == MessageKind::Update {
            f.calls += 1;
            f.bytes += r.arg_bytes + r.method.as_ref().map_or(0, |m| m.len() as u64);
        }
    }
    f
}

fn drain(s: &Setup) {
    let mut sim = s.sim();
    while sim.step() {}
}

fn print_flow(name: &str, f: &Flow) {
    println!(
        "{name}: {} messages, {} instructions, {} calls, {} xnet bytes, {} cycles",
        f.messages.len(),
        f.instructions,
        f.calls,
        f.bytes,
        f.cycles()
    );
    for (k, m, i, b) in &f.messages {
        println!(
            "    {:<14} {:<22} {:>12} instr {:>6} B in",
            format!("{k:?}"),
            m.as_deref().unwrap_or("-"),
            i,
            b
        );
    }
}

// ------------------------------------------------------------------------------ bare canister

#[derive(candid::CandidType)]
struct BareInit {
    ledger: Principal,
}

fn install_bare(s: &Setup) -> Principal {
    let mut sim = s.sim();
    let id = sim.create_canister();
    sim.install_canister(
        id,
        Wasms::bare(),
        Encode!(&BareInit { ledger: s.ledger }).unwrap(),
        None,
    )
    .expect("install bare");
    id
}

fn bare_icrc1(s: &Setup, bare: Principal) -> Flow {
    let start = s.sim().trace().len();
    let r: Result<Nat, TransferError> = s.update1(
        bare,
        user(1),
        "icrc1_send",
        (acct(user(9)), Nat::from(AMOUNT)),
    );
    r.expect("bare icrc1_send");
    drain(s);
    flow_since(&s.sim(), bare, start)
}

fn bare_icrc2(s: &Setup, bare: Principal) -> Flow {
    let start = s.sim().trace().len();
    let r: Result<Nat, TransferFromError> = s.update1(
        bare,
        user(1),
        "icrc2_send",
        (acct(user(1)), acct(user(9)), Nat::from(AMOUNT)),
    );
    r.expect("bare icrc2_send");
    drain(s);
    flow_since(&s.sim(), bare, start)
}

fn service_icrc2(s: &Setup) -> Flow {
    let start = s.sim().trace().len();
    let r = run(s.client(user(1)).execute_transfer(TransferRequest {
        transfer: s.icrc2_spec(user(1), acct(user(9)), AMOUNT),
        lock_key: None,
        idempotency_key: None,
    }))
    .expect("service execute_transfer");
    assert_eq!(r.status, Status::Succeeded, "{r:?}");
    drain(s);
    flow_since(&s.sim(), s.service, start)
}

fn payout_icrc1(s: &Setup) -> Flow {
    let start = s.sim().trace().len();
    s.payout_as(user(1), acct(user(9)), AMOUNT).expect("payout");
    drain(s);
    flow_since(&s.sim(), s.payout, start)
}

/// The steady-state cost: the third run of a flow (the first ones pay one-time costs such as
/// first-touch stable pages, which both sides pay alike).
fn steady(mut f: impl FnMut() -> Flow) -> Flow {
    f();
    f();
    f()
}

// ------------------------------------------------------------------------- native bulk fill

fn bench_config(s: &Setup) -> ServiceConfig {
    let mut cfg = Setup::service_config(&s.opts, s.ledger);
    cfg.max_entries_per_caller = 1_000_000;
    cfg.max_bytes_per_caller = 1 << 40;
    cfg.max_unresolved_per_caller = 100_000;
    cfg.max_in_flight_per_caller = 10_000;
    cfg.max_in_flight_total = 10_000;
    cfg
}

/// The stable memory of a service journal holding `n` entries made by `execute_transfer`
/// (ICRC-2, ten owners), each answered by `answer`; built natively with the service's code.
/// Returns the raw bytes and the engine's bytes by memory (virtual sizes, 64 KiB granularity).
fn fill_native(
    s: &Setup,
    cfg: &ServiceConfig,
    n: u64,
    mut answer: impl FnMut(u64, &PendingCall) -> icjournal::CallResult,
) -> (Vec<u8>, u64) {
    let raw = VectorMemory::default();
    // The native journal starts from the canister's own (freshly installed) stable memory.
    let installed = s.sim().stable_memory(s.service).unwrap().to_vec();
    if !installed.is_empty() {
        raw.grow((installed.len() / 65_536) as u64);
        raw.write(0, &installed);
    }
    let rt = FakeRuntime::new(s.service, s.now());
    {
        let mm = MemoryManager::init(raw.clone());
        let svc = Service::open(
            rt.clone(),
            mm.get(MemoryId::new(icjournal_canister::STATE_MEMORY_ID)),
            icjournal::Memories::from_manager(&mm, icjournal_canister::FIRST_ENGINE_MEMORY_ID),
            Some(cfg.clone()),
        )
        .expect("open native service");
        for i in 0..n {
            let owner = user(i % 10);
            let req = TransferRequest {
                transfer: s.icrc2_spec(owner, acct(user(9)), AMOUNT),
                lock_key: None,
                idempotency_key: None,
            };
            let ctx = Ctx::new(owner, false);
            let _ = rt.run(svc.execute_transfer(&ctx, req), |c| answer(i, c));
            rt.clear_timers();
        }
    }
    let bytes = raw.size() * 65_536;
    let mm = MemoryManager::init(raw.clone());
    let mut used = 0;
    for id in 0..(icjournal_canister::FIRST_ENGINE_MEMORY_ID + icjournal::RESERVED_MEMORY_IDS) {
        used += mm.get(MemoryId::new(id)).size() * 65_536;
    }
    let _ = bytes;
    let mut out = vec![0u8; (raw.size() * 65_536) as usize];
    raw.read(0, &mut out);
    (out, used)
}

/// Give the service the stable memory `bytes` (a journal built by `fill_native`) and upgrade
/// it, with `config` as the upgrade argument. Stopped first, as operators upgrade
/// (docs/operations.md): a reply to a call made before the upgrade would run its callback in
/// the new module, whose heap does not hold what the old callback pointed to (the IC runs such
/// callbacks; ic-cdk cannot recognise them).
fn load_journal(s: &Setup, bytes: Vec<u8>, config: Option<ServiceConfig>) {
    s.sim()
        .stop_canister(s.service, None)
        .expect("stop service");
    s.sim().set_stable_memory(s.service, bytes);
    s.sim()
        .upgrade_canister(s.service, Wasms::service(), Encode!(&config).unwrap(), None)
        .expect("upgrade service");
    s.sim()
        .start_canister(s.service, None)
        .expect("start service");
}

fn answer_ok(block: u64, c: &PendingCall) -> icjournal::CallResult {
    if c.method == "icjournal_commit" {
        Ok(candid::encode_args(()).unwrap())
    } else {
        let r: Result<Nat, TransferFromError> = Ok(Nat::from(1_000_000 + block));
        Ok(candid::encode_one(r).unwrap())
    }
}

fn answer_unknown(_: u64, c: &PendingCall) -> icjournal::CallResult {
    if c.method == "icjournal_commit" {
        Ok(candid::encode_args(()).unwrap())
    } else {
        Err(CallError::Rejected {
            code: RejectCode::SysUnknown,
            message: "bench: outcome unknown (deadline expired)".into(),
        })
    }
}

fn last_post_upgrade(sim: &Simulator, canister: Principal) -> u64 {
    sim.trace()
        .iter()
        .rev()
        .find(|r: &&MessageRecord| r.canister == canister && r.kind == MessageKind::PostUpgrade)
        .map(|r| r.instructions)
        .expect("post_upgrade ran")
}

struct AtSize {
    n: u64,
    post_upgrade: u64,
    replay_post_upgrade: u64,
    per_op: u64,
    engine_bytes: u64,
}

fn at_size(n: u64) -> AtSize {
    let mut s = Setup::options().max_in_flight(10_000).build();
    s.check_on_drop = false; // the native entries name blocks this ledger never made
    s.approve_service(user(1), u64::MAX / 4);
    let cfg = bench_config(&s);
    let t = Instant::now();
    let (bytes, engine_bytes) = fill_native(&s, &cfg, n, answer_ok);
    eprintln!("  filled {n} entries natively in {:.1?}", t.elapsed());
    load_journal(&s, bytes, None);
    let post_upgrade = last_post_upgrade(&s.sim(), s.service);
    let per_op = steady(|| service_icrc2(&s)).instructions;

    // Replay baseline: an event log of n events, replayed by post_upgrade.
    let bare = install_bare(&s);
    let mut left = n;
    while left > 0 {
        let k = left.min(20_000);
        let _: u64 = s.update1(bare, controller(), "log_fill", (k,));
        left -= k;
    }
    s.sim()
        .upgrade_canister(
            bare,
            Wasms::bare(),
            Encode!(&BareInit { ledger: s.ledger }).unwrap(),
            None,
        )
        .expect("upgrade bare");
    let replay_post_upgrade = last_post_upgrade(&s.sim(), bare);
    let replayed: u64 = s.query1(bare, user(0), "replayed", ());
    assert_eq!(replayed, n, "replay rebuilt every event");
    AtSize {
        n,
        post_upgrade,
        replay_post_upgrade,
        per_op,
        engine_bytes,
    }
}

/// One execution round of one second: the messages queued when the round starts (and a due
/// timer) execute; what they send waits for the next round. The simulator alone runs a chain of
/// messages to quiescence in zero time; a subnet finalizes about one block (round) per second
/// and a message sent in one round executes in a later one, so a flow that awaits k times
/// takes at least k rounds. This is what makes sequential recovery slow and concurrent
/// recovery fast, so throughput is measured in rounds.
fn round(s: &Setup) {
    let mut sim = s.sim();
    sim.advance_time(std::time::Duration::from_secs(1));
    let n = sim.queued_messages().max(1);
    for _ in 0..n {
        if !sim.step() {
            break;
        }
    }
}

/// `n` unknown outcomes (made natively: the ledger call answered `SysUnknown`), loaded into the
/// service with its default recovery settings; recovery runs on the simulator against the
/// test ledger. Returns (resolved per simulated minute, largest message in instructions,
/// seconds).
fn recovery(n: u64) -> (f64, u64, u64) {
    let mut s = Setup::options().max_in_flight(10_000).build();
    s.check_on_drop = false;
    for u in 0..10 {
        s.approve_service(user(u), u64::MAX / 4);
    }
    let mut cfg = bench_config(&s);
    let d = icjournal_canister::config::default_config();
    cfg.recovery_interval_ns = d.recovery_interval_ns;
    cfg.recovery_batch_size = d.recovery_batch_size;
    let (bytes, _) = fill_native(&s, &cfg, n, answer_unknown);
    load_journal(&s, bytes, Some(cfg.clone()));
    let start_trace = s.sim().trace().len();
    assert_eq!(s.unresolved_automatic(), n, "all outcomes unknown");
    let mut secs = 0;
    let limit = 6 * 3600;
    while secs < limit {
        round(&s);
        secs += 1;
        if s.unresolved_automatic() == 0 {
            break;
        }
    }
    let left = s.unresolved_automatic();
    let resolved = n - left;
    let max_msg = s.sim().trace()[start_trace..]
        .iter()
        .filter(|r| r.canister == s.service)
        .map(|r| r.instructions)
        .max()
        .unwrap_or(0);
    // Which messages are the large ones: the kind tells a tick's timer task from a callback.
    let sim = s.sim();
    let mut by_size: Vec<&MessageRecord> = sim.trace()[start_trace..]
        .iter()
        .filter(|r| r.canister == s.service)
        .collect();
    by_size.sort_by_key(|r| std::cmp::Reverse(r.instructions));
    for r in by_size.iter().take(5) {
        println!(
            "  large message: {} instr, {:?} {}, {} system calls",
            r.instructions,
            r.kind,
            r.method.as_deref().unwrap_or("-"),
            r.api_calls
        );
    }
    (resolved as f64 * 60.0 / secs as f64, max_msg, secs)
}

fn main() {
    let t0 = Instant::now();
    let sizes: Vec<u64> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "0,10000,100000".into())
        .split(',')
        .map(|x| x.trim().parse().expect("BENCH_SIZES: numbers"))
        .collect();
    // BENCH_PARTS: any of p1, sizes, recovery (default: all).
    let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "p1,sizes,recovery".into());
    let part = |p: &str| parts.split(',').any(|x| x.trim() == p);
    let unknown: u64 = std::env::var("BENCH_UNKNOWN")
        .ok()
        .map(|x| x.parse().expect("BENCH_UNKNOWN: a number"))
        .unwrap_or(1_000);

    let ratio = |a: &Flow, b: &Flow| a.cycles() as f64 / b.cycles() as f64;
    let mut lines = Vec::new();

    // ---------------------------------------------------------------- P1: one transfer
    if part("p1") {
        println!("== one transfer, steady state (third run) ==");
        let s = Setup::options().with_payout().build();
        let bare = install_bare(&s);
        s.mint(acct(bare), 1_000 * AMOUNT);
        s.approve_service(user(1), u64::MAX / 4);
        s.approve(user(1), acct(bare), u64::MAX / 4)
            .expect("approve bare");
        let b1 = steady(|| bare_icrc1(&s, bare));
        let b2 = steady(|| bare_icrc2(&s, bare));
        let j2 = steady(|| service_icrc2(&s));
        let p1 = steady(|| payout_icrc1(&s));
        print_flow("bare icrc1_transfer", &b1);
        print_flow("bare icrc2_transfer_from", &b2);
        print_flow("service execute_transfer (icrc2)", &j2);
        print_flow("payout saga (icrc1)", &p1);
        lines.push(format!(
            "P1 cycles journaled/bare service-icrc2: {:.2}",
            ratio(&j2, &b2)
        ));
        lines.push(format!(
            "P1 cycles journaled/bare payout-icrc1: {:.2}",
            ratio(&p1, &b1)
        ));
        lines.push(format!(
            "P1 journal instructions per service transfer: {}",
            j2.instructions.saturating_sub(b2.instructions)
        ));
    }

    // ------------------------------------------------ P2, P3, P5: journals of n entries
    if part("sizes") {
        println!("== journal size: post_upgrade, per-op cost, stable bytes ==");
        let mut rows = Vec::new();
        for &n in &sizes {
            let r = at_size(n);
            println!(
                "{:>7} entries: post_upgrade {:>12} instr (replay baseline {:>12}); per-op {:>10} instr; engine stable {:>11} B",
                r.n, r.post_upgrade, r.replay_post_upgrade, r.per_op, r.engine_bytes
            );
            rows.push(r);
        }
        // Bytes per resolved entry: the slope between the two largest sizes.
        let bytes_per_entry = match rows.as_slice() {
            [.., a, b] if b.n > a.n => (b.engine_bytes - a.engine_bytes) / (b.n - a.n),
            _ => 0,
        };
        let find = |n: u64| rows.iter().find(|r| r.n == n);
        let largest = rows.last().expect("at least one size");
        let p5 = match (find(100_000), find(10_000)) {
            (Some(a), Some(b)) => a.per_op as f64 / b.per_op as f64,
            _ => f64::NAN,
        };
        lines.push(format!(
            "P2 stable bytes per resolved entry: {bytes_per_entry}"
        ));
        lines.push(format!(
            "P3 post_upgrade instructions at {}k entries: {} (replay baseline {})",
            largest.n / 1000,
            largest.post_upgrade,
            largest.replay_post_upgrade
        ));
        lines.push(format!("P5 per-op cost 100k/10k: {p5:.2}"));
    }

    // ---------------------------------------------------------------- P4: recovery
    if part("recovery") {
        println!(
            "== recovery of {unknown} unknown outcomes (default interval and batch; one round per second) =="
        );
        let (per_min, max_msg, secs) = recovery(unknown);
        println!(
            "resolved in {secs} rounds (s): {per_min:.0}/min; largest message {max_msg} instr"
        );
        lines.push(format!(
            "P4 unknown outcomes resolved per minute: {per_min:.0}"
        ));
    }
    eprintln!("bench ran in {:.1?}", t0.elapsed());
    // The figures, in the order.
    lines.sort_by_key(|l| l[..2].to_string());
    for l in lines {
        println!("{l}");
    }
}
