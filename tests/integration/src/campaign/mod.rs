//! The verification campaign: searches for invariant violations instead of checking examples.
//! It runs the real canister Wasm on ic-sim, forks every case from a snapshot, and checks
//! I1–I4 against the ledger's blocks after each run (`check`).
//!
//! - `crash`: every (message, System API call) of each flow made to trap, and an upgrade
//!   (with and without stopping) between every two messages;
//! - `schedule`: seeded random schedules of concurrent callers and faults, reproducible from
//!   their seed, with a fault-matrix report;
//! - `planted`: the same schedules against a service built with known bugs, which must be
//!   caught (proof that the campaign can fail);
//! - `fuzz`: structured and raw Candid at every endpoint of the service and the payout
//!   canister: typed error or cheap rejection, and no state change on error;
//! - `load`: many in-flight flows from many callers; quotas, IC limits, recovery throughput.
//!
//! `campaign` (src/bin/campaign.rs) runs it from the command line; the integration test
//! `should_catch_every_planted_bug_and_find_no_violation_in_the_ci_campaign` runs
//! `test_options`.

pub mod check;
pub mod crash;
pub mod fuzz;
pub mod load;
pub mod planted;
pub mod schedule;

pub use schedule::Matrix;

use crate::{user, Setup, SetupOptions, Wasms, USER_FUNDS};
use candid::{Encode, Principal};
use icjournal_client::ServiceConfig;
use std::time::Instant;

/// Small deterministic PRNG (SplitMix64): runs are reproducible from their seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub crash_points: bool,
    /// Only these crash-point flows (empty: all of them).
    pub crash_flows: Vec<&'static str>,
    pub schedules: u64,
    pub seed: u64,
    /// Run the planted-bug search (needs the `planted-bugs` build of the service).
    pub planted: bool,
    /// Schedules tried per planted bug before it counts as missed.
    pub planted_budget: u64,
    pub fuzz_execs: u64,
    pub load: bool,
    pub load_flows: u64,
    pub load_callers: u64,
    /// Print progress and every violation to stderr.
    pub verbose: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            crash_points: false,
            crash_flows: vec![],
            schedules: 0,
            seed: 1,
            planted: false,
            // The rarest planted bug ("lock released early") was caught after 80, 171 and 489
            // schedules in the searches made so far (from seeds 1, 7,600,001 and 8,100,001;
            // 300 missed it in the last). A search stops at the first catch, so a larger
            // budget costs time only when a bug is missed.
            planted_budget: 1_000,
            fuzz_execs: 0,
            load: false,
            load_flows: 10_000,
            load_callers: 100,
            verbose: false,
        }
    }
}

/// The figures of a campaign (the five closing lines).
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub crash_cases: u64,
    /// Flows whose crash points were enumerated.
    pub crash_flows: u64,
    /// Trap and upgrade cases, and what they must cover: the System API calls of the flows'
    /// messages, one upgrade before each message and after each flow's last, stopped or not.
    pub crash_trap_cases: u64,
    pub crash_upgrade_cases: u64,
    pub crash_messages: u64,
    pub crash_api_calls: u64,
    pub crash_violations: u64,
    pub schedule_runs: u64,
    pub schedule_violations: u64,
    pub schedule_secs: f64,
    pub planted_caught: u64,
    pub planted_total: u64,
    pub fuzz_execs: u64,
    pub fuzz_violations: u64,
    pub load_flows: u64,
    pub load_callers: u64,
    pub load_violations: u64,
    pub load_max_instructions: u64,
    /// One line per violation (with its replay command where there is one).
    pub violations: Vec<String>,
    /// Reports to print before the closing lines (fault matrix, timings).
    pub notes: Vec<String>,
}

impl Summary {
    pub fn violations_total(&self) -> u64 {
        self.crash_violations
            + self.schedule_violations
            + self.fuzz_violations
            + self.load_violations
    }

    pub fn all_planted_caught(&self) -> bool {
        self.planted_caught == self.planted_total
    }

    pub fn runs_per_second(&self) -> f64 {
        if self.schedule_secs > 0.0 {
            self.schedule_runs as f64 / self.schedule_secs
        } else {
            0.0
        }
    }

    /// The five closing lines, exactly in the documented form.
    pub fn lines(&self) -> String {
        format!(
            "campaign: crash-points {} cases, {} violations\n\
             campaign: schedules {} runs, {} violations, {:.1} runs/s\n\
             campaign: planted {}/{} caught\n\
             campaign: fuzz {} execs, {} violations\n\
             campaign: load {} flows, {} callers, {} violations, max {} instructions/message",
            self.crash_cases,
            self.crash_violations,
            self.schedule_runs,
            self.schedule_violations,
            self.runs_per_second(),
            self.planted_caught,
            self.planted_total,
            self.fuzz_execs,
            self.fuzz_violations,
            self.load_flows,
            self.load_callers,
            self.load_violations,
            self.load_max_instructions,
        )
    }
}

/// Seed of the base deployment every run forks from (each run reseeds the scheduler with its
/// own seed, so a schedule's seed alone replays it).
pub const BASE_SEED: u64 = 0;

/// The deployment every part of the campaign forks from: ledger (archiving on demand), the
/// service and the payout canister; users 1..5 approved the service, user 1 funded its escrow.
pub fn base_setup(seed: u64) -> Setup {
    let mut s = SetupOptions::default()
        .seed(seed)
        .archive(1_000_000, 50)
        .with_payout()
        .max_attempts(4)
        .build();
    s.check_on_drop = false;
    for i in 1..=5 {
        s.approve_service(user(i), USER_FUNDS / 2);
        let escrow = s.escrow(user(i));
        s.simple_transfer(user(i), escrow, USER_FUNDS / 10);
    }
    // The genesis and setup blocks go to an archive: lookups read through it from the start.
    s.archive_now();
    s
}

/// Which service Wasm a run uses (upgrades reinstall the same one).
#[derive(Clone)]
pub struct ServiceWasm {
    pub wasm: Vec<u8>,
    /// The planted bug to switch on after install and after every upgrade.
    pub bug: Option<&'static str>,
}

impl ServiceWasm {
    pub fn release() -> ServiceWasm {
        ServiceWasm {
            wasm: Wasms::service(),
            bug: None,
        }
    }

    /// Upgrade the service in place, then re-plant the bug (heap state). Whether the upgrade
    /// was accepted: the service's `pre_upgrade` refuses unless it is stopped
    /// (`icjournal::upgrade`), so without `stop_upgrade_start` this is the operator's mistake
    /// the campaign checks is refused.
    pub fn upgrade(&self, sim: &mut ic_sim::Simulator, service: Principal) -> bool {
        let ok = sim
            .upgrade_canister(
                service,
                self.wasm.clone(),
                Encode!(&None::<ServiceConfig>).unwrap(),
                None,
            )
            .is_ok();
        self.replant(sim, service);
        ok
    }

    /// Stop (waiting for open call contexts), upgrade, start.
    pub fn stop_upgrade_start(&self, sim: &mut ic_sim::Simulator, service: Principal) -> bool {
        let stopped = sim.stop_canister(service, None).is_ok();
        let ok = stopped && self.upgrade(sim, service);
        let _ = sim.start_canister(service, None);
        ok
    }

    pub fn replant(&self, sim: &mut ic_sim::Simulator, service: Principal) {
        if let Some(bug) = self.bug {
            let _ = sim.update_candid::<_, ()>(
                service,
                crate::controller(),
                "planted_bug",
                (bug.to_string(),),
            );
        }
    }
}

/// Whether `canister` is stopped (an unstopped upgrade of a stopped canister is a stopped one).
pub fn is_stopped(sim: &ic_sim::Simulator, canister: Principal) -> bool {
    sim.canister_status(canister) == Some(ic_sim::CanisterStatus::Stopped)
}

/// Upgrade the payout canister in place; whether it was accepted (its `pre_upgrade` refuses
/// unless it is stopped).
pub fn upgrade_payout(sim: &mut ic_sim::Simulator, payout: Principal) -> bool {
    let arg = Encode!(&Some(crate::payout_types::PayoutArg::Upgrade(None))).unwrap();
    sim.upgrade_canister(payout, Wasms::payout(), arg, None)
        .is_ok()
}

pub fn stop_upgrade_start_payout(sim: &mut ic_sim::Simulator, payout: Principal) -> bool {
    let stopped = sim.stop_canister(payout, None).is_ok();
    let ok = stopped && upgrade_payout(sim, payout);
    let _ = sim.start_canister(payout, None);
    ok
}

/// Run the campaign `opts` asks for.
pub fn run_campaign(opts: &Options) -> Summary {
    let mut sum = Summary::default();
    if opts.crash_points {
        let t = Instant::now();
        let r = crash::enumerate(opts);
        sum.crash_cases = r.cases;
        sum.crash_flows = r.flows as u64;
        sum.crash_trap_cases = r.trap_cases;
        sum.crash_upgrade_cases = r.upgrade_cases;
        sum.crash_messages = r.messages;
        sum.crash_api_calls = r.api_calls;
        sum.crash_violations = r.violations.len() as u64;
        sum.violations.extend(r.violations);
        sum.notes.push(format!(
            "crash-points: {} flows, {} trap cases, {} upgrade cases ({} distinct executions \
             recovered and checked) in {:.1}s",
            r.flows,
            r.trap_cases,
            r.upgrade_cases,
            r.full_checks,
            t.elapsed().as_secs_f64()
        ));
        let per_flow: Vec<String> = r
            .per_flow
            .iter()
            .map(|(f, secs)| format!("{f} {secs:.1}s"))
            .collect();
        sum.notes
            .push(format!("crash-points per flow: {}", per_flow.join(", ")));
    }
    if opts.schedules > 0 {
        let t = Instant::now();
        let r = schedule::run_many(
            opts,
            &ServiceWasm::release(),
            opts.seed,
            opts.schedules,
            false,
        );
        sum.schedule_secs = t.elapsed().as_secs_f64();
        sum.schedule_runs = r.runs;
        sum.schedule_violations = r.failing.len() as u64;
        for (seed, v) in &r.failing {
            sum.violations.push(schedule::failing_line(*seed, v, None));
        }
        sum.notes.push(r.matrix.report());
    }
    if opts.planted {
        let r = planted::run(opts);
        sum.planted_caught = r.iter().filter(|b| b.caught_by.is_some()).count() as u64;
        sum.planted_total = r.len() as u64;
        for b in &r {
            sum.notes.push(match &b.caught_by {
                Some((seed, runs, v)) => format!(
                    "planted {}: caught by seed {seed} after {runs} runs: {v}",
                    b.bug
                ),
                None => format!("planted {}: MISSED after {} runs", b.bug, b.runs),
            });
        }
    }
    if opts.fuzz_execs > 0 {
        let t = Instant::now();
        let r = fuzz::run(opts.seed, opts.fuzz_execs);
        sum.fuzz_execs = r.execs;
        sum.fuzz_violations = r.violations.len() as u64;
        sum.violations
            .extend(r.violations.iter().map(|v| format!("fuzz: {v}")));
        sum.notes.push(format!(
            "fuzz: {} execs ({} raw, {} structured) over {} endpoints in {:.1}s; replies {}; \
             {} errors reporting a journaled payout's outcome (state changed by design), {} \
             failed calls not checked for state changes (a timer ran during them)",
            r.execs,
            r.raw,
            r.structured,
            r.endpoints,
            t.elapsed().as_secs_f64(),
            r.outcomes,
            r.journaled_errors,
            r.unattributed
        ));
    }
    if opts.load {
        let t = Instant::now();
        let r = load::run(opts.load_flows, opts.load_callers);
        sum.load_flows = r.flows;
        sum.load_callers = r.callers;
        sum.load_violations = r.violations.len() as u64;
        sum.load_max_instructions = r.max_instructions;
        sum.violations
            .extend(r.violations.iter().map(|v| format!("load: {v}")));
        sum.notes
            .push(format!("{} in {:.1}s", r.note, t.elapsed().as_secs_f64()));
    }
    sum
}

/// The CI-sized campaign (what the integration test runs): every crash point, 1,000
/// schedules, every planted bug, a fuzz smoke.
pub fn ci_options() -> Options {
    Options {
        crash_points: true,
        schedules: 1_000,
        seed: 1,
        planted: true,
        fuzz_execs: 2_000,
        load: false,
        ..Options::default()
    }
}

/// What `cargo test` runs: the CI size (`ci_options`: every crash point of every flow, 1,000
/// seeded schedules, every planted bug, 2,000 fuzz executions), with a planted-bug budget of
/// 200 seeds (each is caught within the first 200: seeds 2, 18, 80 and 39; the third took 120
/// before unstopped upgrades were refused). The `campaign` command runs the same and longer
/// runs.
pub fn test_options() -> Options {
    Options {
        planted_budget: 200,
        ..ci_options()
    }
}
