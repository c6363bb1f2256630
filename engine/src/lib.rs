//! icjournal engine: durable journaling of a canister's failable steps — ledger transfers,
//! host-local steps, sagas — with recovery of unknown outcomes and a manual-review queue.
//!
//! See `API.md` next to this crate for the entry points, and `docs/design.md` for the invariants
//! (I1 at most once, I2 nothing lost, I3 lock, I4 results final, I5 durable, I6 bounded work,
//! I7 isolation) every module upholds. The data model is `icjournal-types`, re-exported here.

pub mod admin;
pub mod config;
pub mod error;
pub mod flow;
pub mod journal;
pub mod ledger;
pub mod memo;
pub mod metrics;
#[cfg(any(test, feature = "planted-bugs"))]
pub mod planted;
pub mod query;
pub mod recovery;
pub mod reply;
pub mod retention;
pub mod runtime;
pub mod status;
pub mod storage;
pub mod types;
pub mod upgrade;

pub use recovery::lookup;

pub use config::Config;
pub use error::{JournalError, OpenError};
pub use journal::{EntryOptions, IdempotencyKey, Journal, LocalHandler};
pub use metrics::{encode_prometheus, Metrics, RecoveryPath};
pub use runtime::{CallError, CallResult, FakeRuntime, IcRuntime, PendingCall, Runtime, Wait};
pub use storage::{Memories, Store, MEMORY_COUNT, RESERVED_MEMORY_IDS};
pub use types::*;
#[cfg(test)]
mod tests;
