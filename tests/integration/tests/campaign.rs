//! The verification campaign (`icjournal_tests::campaign`) at the size CI affords today: the
//! crash points of the record/report flow, 30 seeded fault schedules, every planted bug caught, a fuzz
//! smoke. The full CI size (every crash point, 1,000 schedules) and the long run are the
//! `campaign` command (README, "Verification").

use icjournal_tests::campaign::{self, planted};

#[test]
fn should_catch_every_planted_bug_and_find_no_violation_in_the_campaign_smoke() {
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
    // The search really ran, at the size promised.
    assert!(sum.crash_cases >= 300, "{} crash cases", sum.crash_cases);
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
