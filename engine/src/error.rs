//! Typed errors. Bad input never traps; it returns one of these. `JournalError` is a shared
//! type (`icjournal-types`); `OpenError` belongs to the engine's lifecycle.

pub use icjournal_types::JournalError;

/// Error opening the journal on existing memory (host should trap in `post_upgrade`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The meta memory holds something that is not an icjournal header.
    BadMagic,
    /// Layout version this build cannot read (newer than supported).
    UnsupportedVersion { found: u32, supported: u32 },
    /// Config is inconsistent (message says how).
    InvalidConfig(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for OpenError {}
