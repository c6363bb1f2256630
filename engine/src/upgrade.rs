//! Upgrades: a canister that embeds the journal is upgraded only while it is stopped.
//!
//! The IC delivers the reply to a call made before an upgrade to the *new* module and runs the
//! callback the old module named (interface specification, "Some canisters may not be able to
//! make sense of callbacks after upgrades; these should be stopped first"). ic-cdk names that
//! callback's state by a raw pointer into the old module's heap: `ic_cdk::call::Call` passes an
//! `Arc` pointer as the callback's `env`, and ic-cdk-timers passes a `Box` pointer for the
//! self-call it makes to run every timer task. In the new module such a pointer lands in
//! unrelated data, and the callback frees and writes through it. The campaign's long run found
//! exactly that: upgrades between two messages left the heap corrupted, later messages trapped
//! with "out of bounds memory access", and recovery ticks that trapped left transfers
//! `Unknown`.
//!
//! The canister cannot see every call it has in flight: the timer library's self-calls are
//! outside its reach, and there is one in flight for a round before and after every timer
//! task. So "no call in flight" cannot be decided from inside; "stopped" can: the IC stops a
//! canister only once every outstanding call has been answered, and a stopped canister makes
//! no new ones. A host's `pre_upgrade` therefore runs [`check`] and traps when it refuses,
//! which makes the IC reject the upgrade and leave the old module running with its state
//! untouched. Operators stop, upgrade, start (docs/operations.md). An emergency upgrade of a
//! running canister is still possible with `skip_pre_upgrade`, at the risk described here.

use crate::runtime::Runtime;
use std::fmt;

/// A canister's run status (`ic0.canister_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    /// Stop requested; calls may still be in flight.
    Stopping,
    Stopped,
}

/// Why `pre_upgrade` refused the upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpgradeRefused {
    pub status: RunStatus,
}

impl fmt::Display for UpgradeRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            RunStatus::Running => "running",
            RunStatus::Stopping => "still stopping",
            RunStatus::Stopped => "stopped",
        };
        write!(
            f,
            "icjournal: upgrade refused: the canister is {status}; stop it first (replies to \
             calls made before an upgrade would run in the new module with callback state \
             from the old heap), then upgrade and start it"
        )
    }
}

/// Whether the canister may be upgraded now: only when stopped.
pub fn check<R: Runtime>(rt: &R) -> Result<(), UpgradeRefused> {
    match rt.run_status() {
        RunStatus::Stopped => Ok(()),
        status => Err(UpgradeRefused { status }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::FakeRuntime;

    #[test]
    fn should_allow_an_upgrade_only_when_stopped() {
        let rt = FakeRuntime::default();
        assert_eq!(
            check(&rt),
            Err(UpgradeRefused {
                status: RunStatus::Running
            })
        );
        rt.set_run_status(RunStatus::Stopping);
        let e = check(&rt).unwrap_err();
        assert!(
            e.to_string().contains("still stopping; stop it first"),
            "{e}"
        );
        rt.set_run_status(RunStatus::Stopped);
        assert_eq!(check(&rt), Ok(()));
    }
}
