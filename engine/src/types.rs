//! The journal's data model lives in `icjournal-types` (shared with the service and the
//! client); the engine re-exports it unchanged.

pub use icjournal_types::journal::*;
