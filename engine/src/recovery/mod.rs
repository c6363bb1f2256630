//! Recovery of entries whose outcome is unknown: pure decisions (`decide`), the memo lookup in
//! the ledger's blocks (`lookup`), and the timer that runs them in bounded batches (`tick`).

pub mod batch;
pub mod decide;
pub mod lookup;
pub mod tick;

pub use decide::*;
