//! The flows an entry can run, each in its own file, on top of the journal core
//! (`crate::journal`): transfers and records, local steps, sagas (which run transfers and local
//! steps as children), and `execute`, which runs any of them.

pub mod execute;
pub mod local;
pub mod record;
pub mod saga;
pub mod transfer;
