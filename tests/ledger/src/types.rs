//! Candid types of the test ledger's own (non-standard) interface.

use candid::{CandidType, Deserialize, Nat, Principal};
use icrc_ledger_types::icrc1::account::Account;

/// The install argument: the same Wasm runs as a ledger or as its archive.
#[derive(CandidType, Deserialize, Clone, Debug)]
pub enum LedgerArg {
    Ledger(InitArgs),
    Archive(ArchiveInitArgs),
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct InitArgs {
    pub minting_account: Account,
    pub initial_balances: Vec<(Account, Nat)>,
    pub transfer_fee: Nat,
    pub token_name: String,
    pub token_symbol: String,
    /// Default 8.
    pub decimals: Option<u8>,
    /// Default 32 bytes (the DFINITY ledger's default).
    pub max_memo_length: Option<u16>,
    /// Without it, blocks are never archived.
    pub archive_options: Option<ArchiveOptions>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct ArchiveOptions {
    /// The archive canister, installed with `Archive { ledger = <this ledger> }`.
    pub archive: Principal,
    /// Archiving starts after a transaction once the ledger holds this many local blocks
    /// (0 = only on `test_archive_blocks_now`).
    pub trigger_threshold: u64,
    /// How many of the oldest local blocks one archiving round moves.
    pub num_blocks_to_archive: u64,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct ArchiveInitArgs {
    /// The only principal allowed to append blocks.
    pub ledger: Principal,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StandardRecord {
    pub name: String,
    pub url: String,
}

/// Fault injection state, as reported by `test_faults`.
#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The next N mutating calls (transfer, transfer_from, approve) answer
    /// `TemporarilyUnavailable` without changing anything.
    pub unavailable_next: u64,
    /// While set, every mutating call traps before applying anything.
    pub trap: bool,
}

/// Ledger-side statistics for tests.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LedgerStats {
    pub log_length: u64,
    pub first_local_block: u64,
    pub local_blocks: u64,
    pub dedup_entries: u64,
    pub faults: Faults,
}
