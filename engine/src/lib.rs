//! icjournal engine.
