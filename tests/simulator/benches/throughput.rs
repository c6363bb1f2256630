//! Simulator throughput: messages/s and instructions/s.
//!
//! Workloads:
//! 1. `inc` ingress updates on the ic-cdk test canister (one message each);
//! 2. inter-canister `call(b, "inc")` (three messages each: request, callee, callback);
//! 3. ICRC-1 `icrc1_transfer` on the `test-ledger` canister (tests/ledger);
//! 4. `inc` ingress updates on a canister with a 100 MiB heap (cost of per-message rollback
//!    bookkeeping: a whole-heap copy would dominate here);
//! 5. snapshot and restore of a simulator holding that canister, after a few messages dirtied
//!    a few pages.
//!
//! Run: `cargo bench -p ic-sim --bench throughput`.

use candid::{CandidType, Nat, Principal};
use ic_sim::{build, Simulator};
use std::time::Instant;

fn user(n: u8) -> Principal {
    Principal::self_authenticating([n; 32])
}

fn report(
    name: &str,
    sim: &Simulator,
    from: u64,
    instr_before: u64,
    instr_after: u64,
    start: Instant,
    ops: u64,
) {
    let secs = start.elapsed().as_secs_f64();
    let msgs = sim.message_count() - from;
    let instr = instr_after - instr_before;
    println!(
        "{name:<34} {ops:>6} ops  {:>9.0} ops/s  {:>9.0} messages/s  {:>8.1} M instructions/s  ({:.0} instr/msg)",
        ops as f64 / secs,
        msgs as f64 / secs,
        instr as f64 / secs / 1e6,
        instr as f64 / msgs.max(1) as f64
    );
}

fn total(sim: &Simulator, cs: &[Principal]) -> u64 {
    cs.iter().map(|c| sim.total_instructions(*c)).sum()
}

#[derive(CandidType)]
struct Account {
    owner: Principal,
    subaccount: Option<Vec<u8>>,
}

#[derive(CandidType)]
struct InitArgs {
    decimals: Option<u8>,
    token_symbol: String,
    transfer_fee: Nat,
    minting_account: Account,
    initial_balances: Vec<(Account, Nat)>,
    archive_options: Option<()>,
    max_memo_length: Option<u16>,
    token_name: String,
}

#[derive(CandidType)]
enum LedgerArg {
    Ledger(InitArgs),
}

#[derive(CandidType)]
struct TransferArg {
    from_subaccount: Option<Vec<u8>>,
    to: Account,
    fee: Option<Nat>,
    created_at_time: Option<u64>,
    memo: Option<Vec<u8>>,
    amount: Nat,
}

fn main() {
    let n: u64 = std::env::var("BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let wasm = build::canister_wasm("ic-sim-test-canister");
    let mut sim = Simulator::new();
    let a = sim.create_canister();
    let b = sim.create_canister();
    for c in [a, b] {
        sim.install_canister(
            c,
            wasm.clone(),
            candid::encode_one(None::<u64>).unwrap(),
            None,
        )
        .unwrap();
    }
    let arg = candid::encode_args(()).unwrap();

    let (from, i0, t) = (sim.message_count(), total(&sim, &[a, b]), Instant::now());
    for _ in 0..n {
        sim.update_call(a, user(1), "inc", arg.clone()).unwrap();
    }
    report(
        "ingress update (test canister)",
        &sim,
        from,
        i0,
        total(&sim, &[a, b]),
        t,
        n,
    );

    let call_arg = candid::encode_args((b, "inc".to_string(), None::<u32>)).unwrap();
    let (from, i0, t) = (sim.message_count(), total(&sim, &[a, b]), Instant::now());
    for _ in 0..n / 2 {
        sim.update_call(a, user(1), "call", call_arg.clone())
            .unwrap();
    }
    report(
        "inter-canister call (test canister)",
        &sim,
        from,
        i0,
        total(&sim, &[a, b]),
        t,
        n / 2,
    );

    // Ledger transfers.
    let ledger_wasm = build::canister_wasm("test-ledger");
    let ledger = sim.create_canister();
    let init = LedgerArg::Ledger(InitArgs {
        decimals: Some(8),
        token_symbol: "TST".into(),
        transfer_fee: Nat::from(10u64),
        minting_account: Account {
            owner: user(0),
            subaccount: None,
        },
        initial_balances: vec![(
            Account {
                owner: user(1),
                subaccount: None,
            },
            Nat::from(1_000_000_000_000u64),
        )],
        archive_options: None,
        max_memo_length: None,
        token_name: "Test".into(),
    });
    sim.install_canister(ledger, ledger_wasm, candid::encode_one(init).unwrap(), None)
        .unwrap();
    let (from, i0, t) = (sim.message_count(), total(&sim, &[ledger]), Instant::now());
    for i in 0..n {
        let arg = TransferArg {
            from_subaccount: None,
            to: Account {
                owner: user(2),
                subaccount: None,
            },
            fee: None,
            created_at_time: None,
            memo: Some(i.to_be_bytes().to_vec()),
            amount: Nat::from(1u64),
        };
        let r = sim
            .update_call(
                ledger,
                user(1),
                "icrc1_transfer",
                candid::encode_one(arg).unwrap(),
            )
            .unwrap();
        if i == 0 {
            // Result variant: `Ok` has the lower field hash, so index 0 on the wire = Ok.
            assert!(!r.is_empty(), "empty transfer reply");
        }
    }
    report(
        "icrc1_transfer (test-ledger)",
        &sim,
        from,
        i0,
        total(&sim, &[ledger]),
        t,
        n,
    );

    big_heap(&mut sim, &wasm, n);
}

fn big_heap(sim: &mut Simulator, wasm: &[u8], n: u64) {
    let big = sim.create_canister();
    sim.install_canister(
        big,
        wasm.to_vec(),
        candid::encode_one(None::<u64>).unwrap(),
        None,
    )
    .unwrap();
    let mib = 100u32;
    sim.update_call(
        big,
        user(1),
        "fill_heap",
        candid::encode_one(mib * 16).unwrap(),
    )
    .unwrap();
    let arg = candid::encode_args(()).unwrap();
    let (from, i0, t) = (sim.message_count(), total(sim, &[big]), Instant::now());
    for _ in 0..n {
        sim.update_call(big, user(1), "inc", arg.clone()).unwrap();
    }
    report(
        "ingress update (100 MiB heap)",
        sim,
        from,
        i0,
        total(sim, &[big]),
        t,
        n,
    );
    snapshot_restore(sim, big, &arg);
}

fn snapshot_restore(sim: &mut Simulator, big: Principal, arg: &[u8]) {
    let t = Instant::now();
    let snap = sim.snapshot();
    let snap_ms = t.elapsed().as_secs_f64() * 1e3;
    let rounds = 50;
    let (mut restore_s, mut pages, mut rebuilt) = (0f64, 0usize, 0usize);
    for _ in 0..rounds {
        for _ in 0..5 {
            sim.update_call(big, user(1), "inc", arg.to_vec()).unwrap();
        }
        let t = Instant::now();
        let stats = sim.restore(&snap);
        restore_s += t.elapsed().as_secs_f64();
        pages += stats.pages_copied;
        rebuilt += stats.canisters_rebuilt;
    }
    println!(
        "snapshot (4 canisters, one with a 100 MiB heap): {snap_ms:.1} ms; restore after 5 messages: {:.1} us avg ({} pages copied, {} canisters rebuilt per restore)",
        restore_s / rounds as f64 * 1e6,
        pages / rounds,
        rebuilt / rounds
    );
}
