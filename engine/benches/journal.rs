//! Storage cost benchmark (not a timed test). Run: `cargo bench -p icjournal`.
//!
//! Prints, at 10k / 100k / 1M resolved transfer entries already in the journal:
//! - stable bytes per resolved transfer entry (all memories: entry, indexes, audit log);
//! - time and number of stable-memory reads/writes (counted by a wrapping `Memory`) for
//!   one intent (journal a transfer), one result (the callback that journals the ledger's reply),
//!   and one recovery decision (the callback that journals the outcome of a dedup resend).
//!
//! `ICJ_BENCH_SIZES=10000,100000` overrides the sizes.

use candid::{Nat, Principal};
use ic_stable_structures::memory_manager::MemoryManager;
use ic_stable_structures::{Memory, VectorMemory};
use icjournal::*;
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::TransferError;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Counts {
    reads: Cell<u64>,
    writes: Cell<u64>,
    read_bytes: Cell<u64>,
    write_bytes: Cell<u64>,
    /// Offsets of the reads while `trace` is on (to attribute them to memories).
    trace: Cell<bool>,
    read_offsets: std::cell::RefCell<Vec<u64>>,
}

impl Counts {
    fn read(&self, offset: u64, len: usize) {
        self.reads.set(self.reads.get() + 1);
        self.read_bytes.set(self.read_bytes.get() + len as u64);
        if self.trace.get() {
            self.read_offsets.borrow_mut().push(offset);
        }
    }
}

/// The MemoryManager's layout (ic-stable-structures 0.7 `src/memory_manager.rs`): a 2,080-byte
/// header (magic, version, bucket count, bucket size, 32 reserved bytes, 255 memory sizes),
/// then one byte per bucket naming its memory; bucket `i` starts at 64 KiB + i × 128 pages.
const MM_BUCKET_TABLE: u64 = 2_080;
const MM_BUCKETS_START: u64 = 65_536;
const MM_BUCKET_BYTES: u64 = 128 * 65_536;

/// Which memory (its `MemoryId`) a raw offset belongs to; `None` for the manager's header.
fn memory_of(raw: &VectorMemory, offset: u64) -> Option<u8> {
    let bucket = offset.checked_sub(MM_BUCKETS_START)? / MM_BUCKET_BYTES;
    let mut id = [0u8; 1];
    raw.read(MM_BUCKET_TABLE + bucket, &mut id);
    Some(id[0])
}

/// A raw offset of memory `id` as an offset in that memory: its buckets are laid end to end
/// in the order of their indices.
fn virtual_offset(table: &[u8], id: u8, offset: u64) -> u64 {
    let bucket = (offset - MM_BUCKETS_START) / MM_BUCKET_BYTES;
    let before = table[..bucket as usize]
        .iter()
        .filter(|m| **m == id)
        .count() as u64;
    before * MM_BUCKET_BYTES + (offset - MM_BUCKETS_START) % MM_BUCKET_BYTES
}

/// The meta memory's streams (engine/src/storage/segments.rs), by stream id.
const STREAM_NAMES: [&str; 7] = [
    "claims table",
    "owner rows of layout 6",
    "entries' directory",
    "entries' heap",
    "entries' slot pages",
    "owner chains' blocks",
    "owner chains' directory",
];

/// Counts every read/write reaching the underlying memory (below the MemoryManager).
#[derive(Clone)]
struct CountingMemory {
    inner: VectorMemory,
    counts: Rc<Counts>,
}

impl Memory for CountingMemory {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn grow(&self, pages: u64) -> i64 {
        self.inner.grow(pages)
    }
    fn read(&self, offset: u64, dst: &mut [u8]) {
        self.counts.read(offset, dst.len());
        self.inner.read(offset, dst)
    }
    unsafe fn read_unsafe(&self, offset: u64, dst: *mut u8, count: usize) {
        self.counts.read(offset, count);
        unsafe { self.inner.read_unsafe(offset, dst, count) }
    }
    fn write(&self, offset: u64, src: &[u8]) {
        self.counts.writes.set(self.counts.writes.get() + 1);
        self.counts
            .write_bytes
            .set(self.counts.write_bytes.get() + src.len() as u64);
        self.inner.write(offset, src)
    }
}

type J = Journal<FakeRuntime, ic_stable_structures::memory_manager::VirtualMemory<CountingMemory>>;

#[derive(Default, Clone, Copy)]
struct Sample {
    time: Duration,
    reads: u64,
    writes: u64,
    read_bytes: u64,
    write_bytes: u64,
}

impl Sample {
    fn add(&mut self, o: Sample) {
        self.time += o.time;
        self.reads += o.reads;
        self.writes += o.writes;
        self.read_bytes += o.read_bytes;
        self.write_bytes += o.write_bytes;
    }
    fn per(self, n: u64) -> String {
        format!(
            "{:>8.1} µs  {:>6.1} reads ({:>7.0} B)  {:>6.1} writes ({:>7.0} B)",
            self.time.as_secs_f64() * 1e6 / n as f64,
            self.reads as f64 / n as f64,
            self.read_bytes as f64 / n as f64,
            self.writes as f64 / n as f64,
            self.write_bytes as f64 / n as f64
        )
    }
}

fn measure<T>(c: &Counts, f: impl FnOnce() -> T) -> (T, Sample) {
    let (r0, w0, rb0, wb0) = (
        c.reads.get(),
        c.writes.get(),
        c.read_bytes.get(),
        c.write_bytes.get(),
    );
    let t = Instant::now();
    let v = f();
    let time = t.elapsed();
    (
        v,
        Sample {
            time,
            reads: c.reads.get() - r0,
            writes: c.writes.get() - w0,
            read_bytes: c.read_bytes.get() - rb0,
            write_bytes: c.write_bytes.get() - wb0,
        },
    )
}

type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

fn ok_reply(block: u64) -> Vec<u8> {
    candid::encode_one(Ok::<Nat, TransferError>(Nat::from(block))).unwrap()
}

/// One transfer through the real flow (intent → reply → commit), the ledger answering `block`.
fn transfer_ok<M: Memory + Clone + 'static>(
    rt: &FakeRuntime,
    journal: &Journal<FakeRuntime, M>,
    owner: Principal,
    s: TransferSpec,
    block: u64,
) {
    let j = journal.clone();
    let ledger = s.ledger();
    rt.run(
        async move { j.transfer(owner, s, None).await.unwrap() },
        |c| {
            if c.callee == ledger {
                Ok(ok_reply(block))
            } else {
                Ok(candid::encode_args(()).unwrap())
            }
        },
    );
}

fn spec(ledger: Principal, i: u64) -> TransferSpec {
    TransferSpec::Icrc1 {
        ledger,
        from_subaccount: None,
        to: Account {
            owner: Principal::from_slice(&[0x20, (i % 251) as u8, 1]),
            subaccount: Some([7; 32]),
        },
        amount: Nat::from(1_000_000u64 + i),
        fee: Some(Nat::from(10_000u64)),
    }
}

/// Answer the single pending call with `reply` and poll once (= run one callback message).
fn answer<T>(rt: &FakeRuntime, fut: &mut Fut<'_, T>, reply: CallResult) -> std::task::Poll<T> {
    let calls = rt.pending_calls();
    assert_eq!(calls.len(), 1);
    rt.respond(calls[0].id, reply);
    FakeRuntime::poll_once(fut)
}

/// The journal's memories by layout offset (engine/src/storage.rs).
const MEMORY_NAMES: [&str; 16] = [
    "meta (header, counters, streams)",
    "entries",
    "by_owner",
    "by_status",
    "due",
    "locks",
    "unresolved",
    "owners",
    "retired (counters)",
    "audit_index",
    "audit_data",
    "approvals",
    "claims spill tree",
    "keys",
    "owner_totals",
    "summaries",
];

fn main() {
    let sizes: Vec<u64> = std::env::var("ICJ_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or(vec![10_000, 100_000, 1_000_000]);
    // `cargo bench` passes `--bench`; nothing else to parse.
    let counts = Rc::new(Counts::default());
    let raw = CountingMemory {
        inner: VectorMemory::default(),
        counts: counts.clone(),
    };
    let mm = MemoryManager::init(raw.clone());
    let me = Principal::from_slice(&[0xCA, 0xFE, 1]);
    let ledger = Principal::from_slice(&[0x1E, 0xD6, 1]);
    let owner = Principal::from_slice(&[0x0A, 1]);
    let rt = FakeRuntime::new(me, 1_700_000_000_000_000_000);
    // One owner holds every entry: lift the per-owner quotas (the default allows 1M entries,
    // which the 1M size reaches).
    let cfg = Config {
        max_unresolved_per_owner: u32::MAX,
        max_entries_per_owner: u64::MAX,
        ..Config::default()
    };
    let journal: J = Journal::open(rt.clone(), Memories::from_manager(&mm, 0), cfg).unwrap();
    let base_bytes = journal.metrics().stable_memory_bytes;
    let mut block = 0u64;
    let mut populated = 0u64;
    let samples = 200u64;
    // Where P2's bytes go: each memory's growth per resolved entry between two sizes.
    let mut previous: Option<(u64, Vec<u64>, Vec<u64>)> = None;
    println!("icjournal storage benchmark (release, VectorMemory behind a counting Memory; MemoryManager bucket overhead included)");
    for &n in &sizes {
        // Populate to n resolved transfers through the real flow (intent → reply → commit).
        let t = Instant::now();
        while populated < n {
            transfer_ok(&rt, &journal, owner, spec(ledger, populated), block);
            block += 1;
            populated += 1;
            rt.advance(1_000_000);
        }
        let fill = t.elapsed();
        let m = journal.metrics();
        let per_entry = (m.stable_memory_bytes - base_bytes) as f64 / n as f64;
        let sample_entry = journal.get(n - 1).unwrap();
        let self_describing = candid::encode_one(&sample_entry).unwrap().len();
        // Two identical values share one type table: the difference is the value alone.
        let pair = candid::encode_one(vec![sample_entry.clone(), sample_entry.clone()])
            .unwrap()
            .len();
        let one = candid::encode_one(vec![sample_entry.clone()])
            .unwrap()
            .len();
        let value_only = pair - one;
        let stored = 1 + minicbor::to_vec(&sample_entry).unwrap().len();
        // Layout 7 stores it in two parts: the intent, and the entry with an empty record for
        // an intent (each with its format byte).
        let intent_part = 1 + minicbor::to_vec(&sample_entry.intent).unwrap().len();
        let mut state = sample_entry.clone();
        state.intent = icjournal::Intent::Record {
            label: String::new(),
            payload: vec![],
        };
        let state_part = 1 + minicbor::to_vec(&state).unwrap().len();

        let (mut intent, mut result, mut claim, mut decision) = (
            Sample::default(),
            Sample::default(),
            Sample::default(),
            Sample::default(),
        );
        let (mut intent_reads, mut result_reads) = (vec![], vec![]);
        for i in 0..samples {
            // Intent: journal the transfer (message 1 up to the ledger call).
            counts.trace.set(true);
            let (id, s) = measure(&counts, || {
                journal
                    .journal_transfer(owner, spec(ledger, n + i), None)
                    .unwrap()
            });
            counts.trace.set(false);
            intent_reads.extend(counts.read_offsets.take());
            intent.add(s);
            let j = journal.clone();
            let mut fut: Fut<'_, _> = Box::pin(async move { j.execute(id).await });
            assert!(FakeRuntime::poll_once(&mut fut).is_pending());
            // Half the samples: a direct reply (result). Half: lost response → recovery.
            if i % 2 == 0 {
                counts.trace.set(true);
                let (_, s) = measure(&counts, || answer(&rt, &mut fut, Ok(ok_reply(block))));
                counts.trace.set(false);
                result_reads.extend(counts.read_offsets.take());
                result.add(s);
                block += 1;
                let r = answer(&rt, &mut fut, Ok(candid::encode_args(()).unwrap()));
                assert!(r.is_ready());
            } else {
                let lost = Err(CallError::Rejected {
                    code: RejectCode::SysUnknown,
                    message: "timeout".into(),
                });
                let _ = answer(&rt, &mut fut, lost);
                let r = answer(&rt, &mut fut, Ok(candid::encode_args(()).unwrap()));
                assert!(r.is_ready());
                rt.advance(Config::default().backoff(1) + 1);
                let j = journal.clone();
                let mut tick: Fut<'_, _> = Box::pin(async move { j.recovery_tick().await });
                // Claim: pick the due entry, mark Recovering, send the resend.
                let (_, s) = measure(&counts, || FakeRuntime::poll_once(&mut tick));
                claim.add(s);
                let dup = candid::encode_one(Err::<Nat, TransferError>(TransferError::Duplicate {
                    duplicate_of: Nat::from(block),
                }))
                .unwrap();
                // Decision: classify the resend reply, decide, journal the result.
                let (_, s) = measure(&counts, || answer(&rt, &mut tick, Ok(dup)));
                decision.add(s);
                block += 1;
                let r = answer(&rt, &mut tick, Ok(candid::encode_args(()).unwrap()));
                assert!(r.is_ready());
                assert_eq!(journal.get(id).unwrap().status, Status::Succeeded);
            }
        }
        populated += samples;
        let half = samples / 2;
        println!();
        println!(
            "== {n} resolved transfer entries (filled in {:.1} s) ==",
            fill.as_secs_f64()
        );
        println!(
            "stable bytes per resolved transfer entry: {per_entry:.0} B (stored entry value: {stored} B = format byte + minicbor, stored by layout 7 as intent {intent_part} B + state {state_part} B; layout 1 stored {} B = format byte + schema hash + {value_only} B candid value; self-describing candid would be {self_describing} B; total stable: {:.1} MiB)",
            1 + 8 + value_only,
            m.stable_memory_bytes as f64 / 1048576.0
        );
        let bytes = journal.memory_bytes();
        let streams = journal.stream_bytes();
        if let Some((n0, b0, s0)) = &previous {
            let d = (populated - n0) as f64;
            let parts: Vec<String> = MEMORY_NAMES
                .iter()
                .zip(bytes.iter().zip(b0))
                .filter(|(_, (b, b0))| b > b0)
                .map(|(name, (b, b0))| format!("{name} {:.0}", (b - b0) as f64 / d))
                .collect();
            let total = (bytes.iter().sum::<u64>() - b0.iter().sum::<u64>()) as f64 / d;
            println!(
                "bytes per resolved entry by memory ({n0} -> {populated} entries): {total:.0} B = {}",
                parts.join(", ")
            );
            let in_streams: Vec<String> = STREAM_NAMES
                .iter()
                .zip(streams.iter().zip(s0))
                .filter(|(_, (b, b0))| b > b0)
                .map(|(name, (b, b0))| format!("{name} {:.0}", (b - b0) as f64 / d))
                .collect();
            println!("  the meta memory's by stream: {}", in_streams.join(", "));
        }
        previous = Some((populated, bytes, streams));
        // Where a step's reads go: each read attributed to its memory by its offset.
        // The meta memory's reads go on to its streams (slots 16 to 31 here) or its header.
        let by_memory = |offsets: Vec<u64>, steps: u64| {
            let mut table = vec![0u8; 32_768];
            raw.inner.read(MM_BUCKET_TABLE, &mut table);
            let mut by_memory = [0u64; 256];
            for off in offsets {
                let m = match memory_of(&raw.inner, off) {
                    None => 255,
                    Some(0) => journal
                        .meta_stream_at(virtual_offset(&table, 0, off))
                        .map_or(0, |s| 16 + s as usize),
                    Some(m) => m as usize,
                };
                by_memory[m] += 1;
            }
            let per = |k: usize| by_memory[k] as f64 / steps as f64;
            let name = |k: usize| match k {
                0 => "meta (header, counters)".to_string(),
                1..=15 => MEMORY_NAMES[k].to_string(),
                _ => format!("meta: {}", STREAM_NAMES.get(k - 16).unwrap_or(&"a stream")),
            };
            (0..32)
                .filter(|k| by_memory[*k] > 0)
                .map(|k| format!("{} {:.1}", name(k), per(k)))
                .chain((by_memory[255] > 0).then(|| format!("memory manager {:.1}", per(255))))
                .collect::<Vec<String>>()
                .join(", ")
        };
        println!("per intent            : {}", intent.per(samples));
        println!(
            "  an intent's reads by memory: {}",
            by_memory(intent_reads, samples)
        );
        println!("per result            : {}", result.per(half));
        println!(
            "  a result's reads by memory: {}",
            by_memory(result_reads, half)
        );
        println!("per recovery claim    : {}", claim.per(half));
        println!("per recovery decision : {}", decision.per(half));
    }
    retention_steady_state();
}

/// Stable memory under a steady load with retention on (2 days, summaries 3 more days):
/// `per_day` resolved transfers a day for `days` days, one retention step every 15 minutes.
/// `ICJ_BENCH_RETENTION=per_day,days` overrides 2000,30.
fn retention_steady_state() {
    const DAY: u64 = 86_400 * 1_000_000_000;
    let (per_day, days) = std::env::var("ICJ_BENCH_RETENTION")
        .ok()
        .and_then(|s| {
            let v: Vec<u64> = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
            (v.len() == 2).then(|| (v[0], v[1]))
        })
        .unwrap_or((2_000, 30));
    let me = Principal::from_slice(&[0xCA, 0xFE, 2]);
    let ledger = Principal::from_slice(&[0x1E, 0xD6, 2]);
    let owner = Principal::from_slice(&[0x0A, 2]);
    let rt = FakeRuntime::new(me, 1_700_000_000_000_000_000);
    let mm = MemoryManager::init(VectorMemory::default());
    let cfg = Config {
        max_unresolved_per_owner: u32::MAX,
        retention_ns: Some(2 * DAY),
        summary_retention_ns: Some(3 * DAY),
        ..Config::default()
    };
    let journal: Journal<FakeRuntime, _> =
        Journal::open(rt.clone(), Memories::from_manager(&mm, 0), cfg).unwrap();
    let steps_every = (per_day / 96).max(1);
    println!();
    println!(
        "== retention steady state: {per_day} resolved transfers a day, retention 2 d, summaries 3 d =="
    );
    println!("day  journal bytes (audit log excluded)  audit log bytes  entries kept  summaries");
    let (mut block, mut audit_at_7) = (0u64, 0u64);
    let mut last = (0u64, 0u64);
    for day in 1..=days {
        for i in 0..per_day {
            transfer_ok(&rt, &journal, owner, spec(ledger, i), block);
            block += 1;
            rt.advance(DAY / per_day);
            if i % steps_every == 0 {
                journal.retention_step();
            }
        }
        let sizes = journal.memory_bytes();
        let audit = icjournal::query::audit_bytes(&sizes);
        let rest = sizes.iter().sum::<u64>() - audit;
        let m = journal.metrics();
        let kept: u64 = m.entries_by_status.iter().map(|c| c.count).sum();
        if day == 7 {
            audit_at_7 = audit;
        }
        if day % 5 == 0 || day == 1 || day == 7 || day == days {
            println!(
                "{day:>3}  {rest:>35}  {audit:>15}  {kept:>12}  {:>9}",
                m.summaries.unwrap_or(0)
            );
        }
        last = (rest, audit);
    }
    if days > 7 {
        println!(
            "audit log growth after day 7: {:.0} B per resolved transfer (append-only, not compacted)",
            (last.1 - audit_at_7) as f64 / (per_day * (days - 7)) as f64
        );
    }
}
