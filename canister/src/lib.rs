//! icjournal service canister.
