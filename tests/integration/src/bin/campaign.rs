//! The verification campaign (see `icjournal_tests::campaign`):
//!
//! cargo run --release --locked -p icjournal-tests --bin campaign -- \
//!     [--schedules N] [--seed S] [--crash-points] [--fuzz-execs N] [--load]
//!     [--planted] [--planted-bug NAME] [--crash-flow NAME] [--load-flows N] [--load-callers N]
//!     [--quiet]
//!
//! With no part selected it runs the CI-sized campaign. Ends with five summary lines and exits
//! non-zero on any violation or a planted bug the search missed.

use icjournal_tests::campaign::{self, planted, schedule, Options, ServiceWasm};
use std::process::ExitCode;
use std::time::Instant;

fn usage() -> ExitCode {
    eprintln!(
        "usage: campaign [--schedules N] [--seed S] [--crash-points] [--fuzz-execs N] [--load] \
         [--planted] [--planted-bug NAME] [--planted-budget N] [--load-flows N] \
         [--load-callers N] [--quiet]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut o = Options {
        verbose: true,
        ..Options::default()
    };
    let mut any = false;
    let mut only_bug: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Option<u64> {
            let v = args.next().and_then(|v| v.parse().ok());
            if v.is_none() {
                eprintln!("{name} needs a number");
            }
            v
        };
        match a.as_str() {
            "--schedules" => match num("--schedules") {
                Some(n) => {
                    o.schedules = n;
                    any = true
                }
                None => return usage(),
            },
            "--seed" => match num("--seed") {
                Some(n) => o.seed = n,
                None => return usage(),
            },
            "--fuzz-execs" => match num("--fuzz-execs") {
                Some(n) => {
                    o.fuzz_execs = n;
                    any = true
                }
                None => return usage(),
            },
            "--planted-budget" => match num("--planted-budget") {
                Some(n) => o.planted_budget = n,
                None => return usage(),
            },
            "--load-flows" => match num("--load-flows") {
                Some(n) => o.load_flows = n,
                None => return usage(),
            },
            "--load-callers" => match num("--load-callers") {
                Some(n) => o.load_callers = n,
                None => return usage(),
            },
            "--crash-flow" => match args.next() {
                // Only this flow (repeatable); implies --crash-points.
                Some(f) => {
                    o.crash_flows.push(Box::leak(f.into_boxed_str()));
                    o.crash_points = true;
                    any = true
                }
                None => return usage(),
            },
            "--crash-points" => {
                o.crash_points = true;
                any = true
            }
            "--load" => {
                o.load = true;
                any = true
            }
            "--planted" => {
                o.planted = true;
                any = true
            }
            "--planted-bug" => match args.next() {
                Some(b) => only_bug = Some(b),
                None => return usage(),
            },
            "--quiet" => o.verbose = false,
            _ => return usage(),
        }
    }
    let t = Instant::now();
    // Replaying a planted-bug schedule: run the schedules against that build only.
    if let Some(bug) = only_bug {
        let Some(name) = planted::BUGS.iter().find(|b| **b == bug) else {
            eprintln!("unknown planted bug {bug}; known: {:?}", planted::BUGS);
            return ExitCode::from(2);
        };
        let w = ServiceWasm {
            wasm: planted::planted_wasm(),
            bug: Some(name),
        };
        let r = schedule::run_many(&o, &w, o.seed, o.schedules.max(1), false);
        for (seed, v) in &r.failing {
            println!("seed {seed}: {}", v.join("\n  "));
        }
        println!(
            "campaign: planted {bug}: {} of {} schedules caught it",
            r.failing.len(),
            r.runs
        );
        return if r.failing.is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    if !any {
        o = Options {
            verbose: o.verbose,
            seed: o.seed,
            ..campaign::ci_options()
        };
    }
    let sum = campaign::run_campaign(&o);
    for n in &sum.notes {
        println!("{n}");
    }
    for v in &sum.violations {
        println!("VIOLATION {v}");
    }
    println!("campaign: took {:.1}s", t.elapsed().as_secs_f64());
    println!("{}", sum.lines());
    if sum.violations_total() > 0 || !sum.all_planted_caught() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
