//! Candid types of the test ledger's own (non-standard) interface.
//!
//! Every limit defaults to the figure of DFINITY's ICRC-1 ledger and archive (the constants in
//! [`crate::limits`] cite where each comes from); tests may override them through these init
//! fields.

use candid::{CandidType, Deserialize, Nat, Principal};
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::TransferError;
use serde_bytes::ByteBuf;

/// The install argument: the same Wasm runs as a ledger or as one of its archives.
// Decoded once at install: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
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
    /// Without it (or for each field left out), DFINITY's figures.
    pub limits: Option<Limits>,
}

/// DFINITY's `ArchiveOptions` (ledger_canister_core `archive.rs`), plus the archive Wasm.
#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct ArchiveOptions {
    /// Archiving runs after a transaction once the ledger holds at least this many local
    /// blocks (0: after every transaction).
    pub trigger_threshold: u64,
    /// How many of the oldest local blocks one archiving round moves (at most).
    pub num_blocks_to_archive: u64,
    /// What one archive canister may hold; a full one makes the ledger spawn the next.
    /// Default 1 GiB.
    pub node_max_memory_size_bytes: Option<u64>,
    /// Largest `append_blocks` payload (default 2 MiB, and never above the ledger's 1 MiB).
    pub max_message_size_bytes: Option<u64>,
    /// The spawned archives' controller.
    pub controller_id: Principal,
    /// Further controllers of the spawned archives.
    pub more_controller_ids: Option<Vec<Principal>>,
    /// Cycles attached to `create_canister` for each archive. Default 10 T.
    pub cycles_for_archive_creation: Option<u64>,
    /// The archives' legacy `get_archived_transactions` cap. Default 2,000.
    pub max_transactions_per_response: Option<u64>,
    /// The module the ledger installs in each archive it spawns. DFINITY's ledger embeds its
    /// archive Wasm at build time; this ledger and its archive are one Wasm, which cannot read
    /// its own module, so whoever installs the ledger passes the bytes here.
    pub archive_wasm: ByteBuf,
}

/// Limits a test may change; each `None` keeps DFINITY's figure.
#[derive(CandidType, Deserialize, Clone, Debug, Default)]
pub struct Limits {
    /// Most blocks (local ones) in one ledger `icrc3_get_blocks` reply. Default 100.
    pub max_blocks_per_response: Option<u64>,
    /// Most blocks in one archive `icrc3_get_blocks` reply. Default 100.
    pub archive_max_blocks_per_response: Option<u64>,
    /// Most local transactions in one ledger `get_transactions` reply. Default 2,000.
    pub max_transactions_per_request: Option<u64>,
    /// Deduplication window. Default 24 h.
    pub transaction_window_nanos: Option<u64>,
    /// How far in the future `created_at_time` may be. Default 60 s.
    pub permitted_drift_nanos: Option<u64>,
    /// Deduplicated transactions the ledger accepts in one window before throttling.
    /// Default 3,000,000.
    pub max_transactions_in_window: Option<u64>,
    /// Most deduplication entries one transaction purges. Default 100,000.
    pub max_transactions_to_purge: Option<u64>,
}

/// The archive's install argument: DFINITY's archive `init(ledger_id, block_index_offset,
/// max_memory_size_bytes, max_transactions_per_response)` as a record, plus this archive's
/// `icrc3_get_blocks` cap.
#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct ArchiveInitArgs {
    /// The only principal allowed to append blocks.
    pub ledger_id: Principal,
    /// The index of the archive's first block.
    pub block_index_offset: u64,
    /// Default (and most) 3 GiB.
    pub max_memory_size_bytes: Option<u64>,
    /// Default 2,000.
    pub max_transactions_per_response: Option<u64>,
    /// Default 100.
    pub max_blocks_per_response: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StandardRecord {
    pub name: String,
    pub url: String,
}

/// Fault injection state, as reported by `test_stats`.
#[derive(CandidType, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The next N mutating calls (transfer, transfer_from, approve) answer
    /// `TemporarilyUnavailable` without changing anything.
    pub unavailable_next: u64,
    /// While set, every mutating call traps before applying anything.
    pub trap: bool,
    /// Replies the next transfers / transfer_froms give, in order, without executing.
    pub forced_transfer_replies: Vec<TransferError>,
}

/// One spawned archive and the blocks it holds (`end` exclusive; `start == end` while empty).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ArchiveNode {
    pub canister_id: Principal,
    pub start: u64,
    pub end: u64,
}

/// Ledger-side statistics for tests.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LedgerStats {
    pub log_length: u64,
    pub first_local_block: u64,
    pub local_blocks: u64,
    pub dedup_entries: u64,
    pub fee: Nat,
    /// Ledger time minus IC time.
    pub clock_offset_nanos: i64,
    pub ledger_time: u64,
    pub archives: Vec<ArchiveNode>,
    /// Archiving rounds that stopped on an error (their unsent blocks stayed local).
    pub archiving_failures: u64,
    pub faults: Faults,
}
