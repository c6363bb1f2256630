//! Test ledger.
