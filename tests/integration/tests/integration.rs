//! icjournal end-to-end tests on the IC simulator: the test ledger (+ archive), the icjournal
//! service canister and the payout example canister, real Wasm, faults injected. Every test
//! ends with the ledger-vs-journal invariant check (I1, I2) run by the `Setup` fixture's Drop.

mod build;
mod caller;
mod campaign;
mod dashboard;
mod executed;
mod icrc1_conformance;
mod journal;
mod ledger_limits;
mod network;
mod payout;
mod saga;
mod security;
mod stress;
mod timer;
mod tracked;
