//! In-crate tests that need the planted-bug hooks (`#[cfg(test)]` items) and the model ledger.

mod classify;
mod concurrent;
mod encoding;
mod flows;
pub mod harness;
mod limits;
mod lookup;
mod migration;
pub mod model_ledger;
mod prop;
mod repair;
mod retention;
