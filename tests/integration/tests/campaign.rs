//! The verification campaign (`icjournal_tests::campaign`) at its CI size
//! (`campaign::test_options`): every crash point of every flow, 1,000 seeded fault schedules,
//! every planted bug caught, 2,000 fuzz executions. The long run is the `campaign` command
//! (README, "Verification").

use icjournal_tests::campaign::{self, crash, planted, schedule, ServiceWasm};

#[test]
fn should_catch_every_planted_bug_and_find_no_violation_in_the_ci_campaign() {
    let opts = campaign::test_options();
    let t = std::time::Instant::now();
    let sum = campaign::run_campaign(&opts);
    for n in &sum.notes {
        eprintln!("{n}");
    }
    eprintln!("campaign: took {:.1}s", t.elapsed().as_secs_f64());
    eprintln!("{}", sum.lines());
    assert!(
        sum.violations.is_empty(),
        "{} violations:\n{}",
        sum.violations.len(),
        sum.violations.join("\n")
    );
    // The search really ran, at the size promised: every flow's crash points.
    assert!(opts.crash_flows.is_empty(), "every flow");
    assert_eq!(
        sum.crash_flows,
        crash::flows().len() as u64,
        "crash-point flows"
    );
    // The number of cases follows the flows' System API calls: 11,629 before the cheaper
    // journal (storage layout 2) and one commit per recovery pass, 10,093 after. A floor well
    // below that catches an enumeration that skips messages or calls.
    assert!(sum.crash_cases >= 9_000, "{} crash cases", sum.crash_cases);
    assert_eq!(sum.schedule_runs, opts.schedules, "schedules run");
    assert!(
        sum.fuzz_execs >= opts.fuzz_execs,
        "{} fuzz execs",
        sum.fuzz_execs
    );
    // It can fail: every planted bug was caught.
    assert_eq!(sum.planted_total, planted::BUGS.len() as u64);
    assert_eq!(
        sum.planted_caught,
        sum.planted_total,
        "planted bugs missed:\n{}",
        sum.notes.join("\n")
    );
}

#[test]
fn should_count_a_schedule_whose_checks_panic_as_a_violation_with_its_replay_command() {
    let s = campaign::base_setup(campaign::BASE_SEED);
    // A service without code: the metrics query that settling recovery reads is rejected and
    // the test helper panics, after the steps, in the run's checks.
    s.sim().uninstall_canister(s.service, None).unwrap();
    let base = s.sim().snapshot();
    let opts = campaign::Options::default();
    let r = schedule::run_many_from(&s, &base, &opts, &ServiceWasm::release(), 7, 2, false);
    assert_eq!(r.runs, 2, "the campaign goes on after a panicking run");
    let seeds: Vec<u64> = r.failing.iter().map(|(seed, _)| *seed).collect();
    assert_eq!(seeds, vec![7, 8]);
    let v = &r.failing[0].1;
    assert!(
        v.iter()
            .any(|x| x.starts_with("harness: panicked: metrics")),
        "{v:?}"
    );
    let line = schedule::failing_line(7, v, None);
    assert!(
        line.ends_with("--bin campaign -- --schedules 1 --seed 7"),
        "{line}"
    );
}
