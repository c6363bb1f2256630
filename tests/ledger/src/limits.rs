//! DFINITY's figures, each with the file of github.com/dfinity/ic that defines it. The test
//! ledger enforces them by default; `InitArgs::limits` and `ArchiveOptions` override them per
//! test.

const SECOND: u64 = 1_000_000_000;
const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// Most (local) blocks in one ledger `icrc3_get_blocks` reply, over all requested ranges;
/// archived ranges are clamped to what is left of it but do not use it up.
/// `MAX_BLOCKS_PER_RESPONSE` in `Ledger::icrc3_get_blocks`,
/// rs/ledger_suite/icrc1/ledger/src/lib.rs.
pub const MAX_BLOCKS_PER_RESPONSE: u64 = 100;

/// Most blocks in one archive `icrc3_get_blocks` reply, over all requested ranges.
/// `MAX_BLOCKS_PER_RESPONSE` in `icrc3_get_blocks`, rs/ledger_suite/icrc1/archive/src/main.rs.
pub const ARCHIVE_MAX_BLOCKS_PER_RESPONSE: u64 = 100;

/// Most local blocks in one ledger `get_transactions` / `get_blocks` reply (archived ranges
/// are not capped by the ledger). `MAX_TRANSACTIONS_PER_REQUEST`,
/// rs/ledger_suite/icrc1/ledger/src/lib.rs (used by `Ledger::query_blocks`).
pub const MAX_TRANSACTIONS_PER_REQUEST: u64 = 2_000;

/// Most blocks in one archive `get_transactions` / `get_blocks` reply (and a further cap on
/// its `icrc3_get_blocks`). `DEFAULT_MAX_TRANSACTIONS_PER_GET_TRANSACTION_RESPONSE`,
/// rs/ledger_suite/icrc1/archive/src/main.rs; set per archive through
/// `ArchiveOptions::max_transactions_per_response`.
pub const ARCHIVE_MAX_TRANSACTIONS_PER_RESPONSE: u64 = 2_000;

/// A longer memo traps. `DEFAULT_MAX_MEMO_LENGTH`, rs/ledger_suite/icrc1/ledger/src/lib.rs;
/// the check is in `execute_transfer_not_async`, rs/ledger_suite/icrc1/ledger/src/main.rs.
pub const DEFAULT_MAX_MEMO_LENGTH: u16 = 32;

/// Deduplication window. `TRANSACTION_WINDOW`, rs/ledger_suite/icrc1/ledger/src/lib.rs.
pub const TRANSACTION_WINDOW_NANOS: u64 = 24 * 60 * 60 * SECOND;

/// `PERMITTED_DRIFT`, rs/limits/src/lib.rs (`ic_limits`), used by `apply_transaction` and
/// `purge_old_transactions` in rs/ledger_suite/common/ledger_canister_core/src/ledger.rs.
pub const PERMITTED_DRIFT_NANOS: u64 = 60 * SECOND;

/// Throttling starts once half of it is in the window. `MAX_TRANSACTIONS_IN_WINDOW`,
/// rs/ledger_suite/icrc1/ledger/src/lib.rs; the rule is `throttle` in
/// rs/ledger_suite/common/ledger_canister_core/src/ledger.rs.
pub const MAX_TRANSACTIONS_IN_WINDOW: u64 = 3_000_000;

/// `MAX_TRANSACTIONS_TO_PURGE`, rs/ledger_suite/icrc1/ledger/src/lib.rs.
pub const MAX_TRANSACTIONS_TO_PURGE: u64 = 100_000;

/// `Archive::new` defaults, rs/ledger_suite/common/ledger_canister_core/src/archive.rs.
pub const DEFAULT_NODE_MAX_MEMORY_SIZE_BYTES: u64 = GIB;
pub const DEFAULT_MAX_MESSAGE_SIZE_BYTES: u64 = 2 * MIB;
/// `DEFAULT_CYCLES_FOR_ARCHIVE_CREATION`, same file.
pub const DEFAULT_CYCLES_FOR_ARCHIVE_CREATION: u64 = 10_000_000_000_000;

/// The ledger's own bound on an `append_blocks` payload: `MAX_MESSAGE_SIZE`, passed to
/// `archive_blocks`, rs/ledger_suite/icrc1/ledger/src/main.rs.
pub const LEDGER_MAX_MESSAGE_SIZE: u64 = MIB;

/// An archive stores at most this much. `DEFAULT_MEMORY_LIMIT`,
/// rs/ledger_suite/icrc1/archive/src/main.rs.
pub const ARCHIVE_MEMORY_LIMIT: u64 = 3 * GIB;
