//! The CI-sized verification campaign (`icjournal_tests::campaign`): every crash point of every
//! flow, 1,000 seeded fault schedules, every planted bug caught, a fuzz smoke. The long run is
//! the `campaign` binary (README, "Verification").

use icjournal_tests::campaign::{self, planted, Matrix};

#[test]
fn should_pass_the_ci_sized_verification_campaign() {
    let opts = campaign::ci_options();
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
    assert!(sum.crash_cases >= 500, "{} crash cases", sum.crash_cases);
    assert!(sum.schedule_runs >= 1_000, "{} schedules", sum.schedule_runs);
    assert!(sum.fuzz_execs >= opts.fuzz_execs, "{} fuzz execs", sum.fuzz_execs);
    // It can fail: every planted bug was caught.
    assert_eq!(sum.planted_total, planted::BUGS.len() as u64);
    assert_eq!(
        sum.planted_caught,
        sum.planted_total,
        "planted bugs missed:\n{}",
        sum.notes.join("\n")
    );
    let _ = Matrix::total();
}
