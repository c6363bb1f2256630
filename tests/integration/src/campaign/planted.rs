//! Planted bugs: the service built with the engine's `planted-bugs` feature, one known bug
//! switched on at a time (see `icjournal::planted`). The seeded schedules must catch each —
//! proof that the campaign can fail. The release Wasm never contains the planted code.

use super::schedule;
use super::{Options, ServiceWasm};

/// The service Wasm with the planted bugs compiled in (off until `planted_bug` is called).
pub fn planted_wasm() -> Vec<u8> {
    let wasm = ic_sim::build::canister_wasm_with_features("icjournal-canister", &["planted-bugs"]);
    // cargo copies the last build of the package to one path: make sure this is the variant.
    assert!(
        wasm.windows(b"planted_bug".len())
            .any(|w| w == b"planted_bug"),
        "the planted-bugs build of the service lacks its planted_bug endpoint"
    );
    wasm
}

pub const BUGS: [&str; 4] = [
    "resend-new-created-at-time",
    "lookup-trusts-memo",
    "lock-released-early",
    "result-overwritten",
];

pub struct PlantedResult {
    pub bug: &'static str,
    /// Schedules run before it was caught (or the whole budget).
    pub runs: u64,
    /// (seed, runs, first violation).
    pub caught_by: Option<(u64, u64, String)>,
}

pub fn run_bug(opts: &Options, wasm: &[u8], bug: &'static str) -> PlantedResult {
    let w = ServiceWasm {
        wasm: wasm.to_vec(),
        bug: Some(bug),
    };
    let r = schedule::run_many(opts, &w, opts.seed, opts.planted_budget, true);
    PlantedResult {
        bug,
        runs: r.runs,
        caught_by: r
            .failing
            .first()
            .map(|(seed, v)| (*seed, r.runs, v[0].clone())),
    }
}

pub fn run(opts: &Options) -> Vec<PlantedResult> {
    let wasm = planted_wasm();
    BUGS.iter().map(|b| run_bug(opts, &wasm, b)).collect()
}
