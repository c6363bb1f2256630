//! ICRC-1/2/3 test ledger (and its archive) for icjournal's simulator tests.
//!
//! The logic lives in plain modules ([`ledger`], [`icrc3`]) with native unit tests; [`canister`]
//! holds the thin ic-cdk endpoints. See `ledger.did` for the interface.

pub mod canister;
pub mod icrc3;
pub mod ledger;
pub mod limits;
pub mod types;

#[cfg(test)]
mod tests;
