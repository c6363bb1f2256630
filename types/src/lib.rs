//! Shared Candid types of icjournal: the journal's data model (`journal`), its errors
//! (`error`), metrics (`metrics`) and the service canister's interface types (`service`).
//!
//! This crate has no runtime: the engine, the service canister and the client all use it, and a
//! canister that only calls the service depends on it (through `icjournal-client`) without
//! linking the engine, its stable structures or its timers.

pub mod cbor;
pub mod error;
pub mod journal;
pub mod metrics;
pub mod service;

pub use error::JournalError;
pub use journal::*;
pub use metrics::{KindCount, Metrics, PathCount, RecoveryPath, StatusCount};
pub use service::*;
