//! Known bugs, planted on purpose to prove that the checkers catch them: the engine's property
//! test (`tests/prop.rs`) and the verification campaign (`tests/integration`, which builds the
//! service with the `planted-bugs` feature). Compiled only into test builds and `planted-bugs`
//! builds; each planted site is a few lines behind `#[cfg(any(test, feature = "planted-bugs"))]`.
//!
//! The active bug is per thread (a canister is single-threaded; native tests run one journal
//! per test thread), and lives on the heap: an upgrade clears it.

use std::cell::Cell;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PlantedBug {
    #[default]
    None,
    /// Recovery resends with a fresh created_at_time (defeats ledger deduplication: I1).
    ResendWithNewCreatedAtTime,
    /// The memo lookup accepts any block carrying the entry's memo (anyone can send one: I1).
    LookupTrustsMemo,
    /// A lock key is free again once its holder left `Pending`, while the outcome of its
    /// transfer is still unknown (I3).
    LockReleasedEarly,
    /// A late report replaces a result already final, without an audit record (I4).
    ResultOverwritten,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 4] = [
        PlantedBug::ResendWithNewCreatedAtTime,
        PlantedBug::LookupTrustsMemo,
        PlantedBug::LockReleasedEarly,
        PlantedBug::ResultOverwritten,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::None => "none",
            PlantedBug::ResendWithNewCreatedAtTime => "resend-new-created-at-time",
            PlantedBug::LookupTrustsMemo => "lookup-trusts-memo",
            PlantedBug::LockReleasedEarly => "lock-released-early",
            PlantedBug::ResultOverwritten => "result-overwritten",
        }
    }

    pub fn from_name(name: &str) -> Option<PlantedBug> {
        std::iter::once(PlantedBug::None)
            .chain(PlantedBug::ALL)
            .find(|b| b.name() == name)
    }
}

thread_local! {
    static ACTIVE: Cell<PlantedBug> = const { Cell::new(PlantedBug::None) };
}

pub fn set(bug: PlantedBug) {
    ACTIVE.with(|a| a.set(bug));
}

pub fn active() -> PlantedBug {
    ACTIVE.with(|a| a.get())
}

pub fn is(bug: PlantedBug) -> bool {
    active() == bug
}
