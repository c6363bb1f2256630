//! The ledger's state machine, free of any IC API so it runs in native unit tests.
//! Semantics follow the DFINITY ICRC ledger (ic-icrc1-ledger + ledger-canister-core); the
//! figures are in [`crate::limits`].

use crate::icrc3::{Block, Hash, Op, Tx};
use crate::limits::*;
use crate::types::{
    ArchiveInitArgs, ArchiveNode, ArchiveOptions, Faults, InitArgs, LedgerStats, Limits,
};
use candid::{CandidType, Deserialize, Nat, Principal};
use icrc_ledger_types::icrc::generic_value::ICRC3Value;
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::{Memo, TransferArg, TransferError};
use icrc_ledger_types::icrc2::allowance::Allowance;
use icrc_ledger_types::icrc2::approve::{ApproveArgs, ApproveError};
use icrc_ledger_types::icrc2::transfer_from::{TransferFromArgs, TransferFromError};
use icrc_ledger_types::icrc3::archive::{
    ArchivedRange, GetArchivesArgs, ICRC3ArchiveInfo, QueryArchiveFn, QueryTxArchiveFn,
};
use icrc_ledger_types::icrc3::blocks::{
    ArchivedBlocks, BlockWithId, GetBlocksRequest, GetBlocksResult,
};
use icrc_ledger_types::icrc3::transactions::{
    GetTransactionsRequest, GetTransactionsResponse, TransactionRange,
};
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;

/// The archive method serving legacy `archived_transactions` callbacks. DFINITY's archive
/// calls it `get_transactions`; here one Wasm plays both roles and the ledger's
/// `get_transactions` already has another reply type, so the archive's has another name
/// (clients follow the callback's method, whatever it is called).
pub const ARCHIVE_GET_TRANSACTIONS: &str = "get_archived_transactions";

type Key = (Principal, [u8; 32]);

fn key(a: &Account) -> Key {
    (a.owner, *a.effective_subaccount())
}

fn to_u128(n: &Nat) -> Option<u128> {
    u128::try_from(&n.0).ok()
}

/// A failed operation, before conversion to the endpoint's error type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreError {
    BadFee {
        expected_fee: u128,
    },
    BadBurn {
        min_burn_amount: u128,
    },
    InsufficientFunds {
        balance: u128,
    },
    InsufficientAllowance {
        allowance: u128,
    },
    TooOld,
    CreatedInFuture {
        ledger_time: u64,
    },
    Duplicate {
        duplicate_of: u64,
    },
    TemporarilyUnavailable,
    Expired {
        ledger_time: u64,
    },
    AllowanceChanged {
        current_allowance: u128,
    },
    /// A test control chose the reply; nothing was executed.
    Forced(TransferError),
    /// The block would be older than the tip: DFINITY's `Blockchain::add_block` refuses it and
    /// the ledger traps (possible here only with a clock skewed backwards).
    OlderThanTip {
        tip: u64,
        now: u64,
    },
}

/// `Err(msg)`: the call traps with `msg` (the DFINITY ledger traps on, e.g., a too long memo).
pub type Outcome<T> = Result<T, String>;

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
struct Approval {
    amount: u128,
    expires_at: Option<u64>,
}

/// [`Limits`] with every default filled in.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LedgerLimits {
    pub max_blocks_per_response: u64,
    pub archive_max_blocks_per_response: u64,
    pub max_transactions_per_request: u64,
    pub transaction_window_nanos: u64,
    pub permitted_drift_nanos: u64,
    pub max_transactions_in_window: u64,
    pub max_transactions_to_purge: u64,
}

impl LedgerLimits {
    pub fn new(l: Option<Limits>) -> Self {
        let l = l.unwrap_or_default();
        LedgerLimits {
            max_blocks_per_response: l.max_blocks_per_response.unwrap_or(MAX_BLOCKS_PER_RESPONSE),
            archive_max_blocks_per_response: l
                .archive_max_blocks_per_response
                .unwrap_or(ARCHIVE_MAX_BLOCKS_PER_RESPONSE),
            max_transactions_per_request: l
                .max_transactions_per_request
                .unwrap_or(MAX_TRANSACTIONS_PER_REQUEST),
            transaction_window_nanos: l
                .transaction_window_nanos
                .unwrap_or(TRANSACTION_WINDOW_NANOS),
            permitted_drift_nanos: l.permitted_drift_nanos.unwrap_or(PERMITTED_DRIFT_NANOS),
            max_transactions_in_window: l
                .max_transactions_in_window
                .unwrap_or(MAX_TRANSACTIONS_IN_WINDOW),
            max_transactions_to_purge: l
                .max_transactions_to_purge
                .unwrap_or(MAX_TRANSACTIONS_TO_PURGE),
        }
    }
}

/// The ledger's archives, as DFINITY's `Archive` (ledger_canister_core `archive.rs`).
#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct Archives {
    pub trigger_threshold: u64,
    pub num_blocks_to_archive: u64,
    pub node_max_memory_size_bytes: u64,
    pub max_message_size_bytes: u64,
    /// `controller_id` then `more_controller_ids`: the spawned archives' controllers.
    pub controllers: Vec<Principal>,
    pub cycles_for_archive_creation: u64,
    pub max_transactions_per_response: Option<u64>,
    pub wasm: ByteBuf,
    /// Spawned archives, oldest first.
    pub nodes: Vec<Principal>,
    /// Inclusive block ranges of the nodes that hold blocks (a fresh node has none yet).
    pub ranges: Vec<(u64, u64)>,
}

impl Archives {
    fn new(o: ArchiveOptions) -> Self {
        let mut controllers = vec![o.controller_id];
        controllers.extend(o.more_controller_ids.unwrap_or_default());
        Archives {
            trigger_threshold: o.trigger_threshold,
            num_blocks_to_archive: o.num_blocks_to_archive,
            node_max_memory_size_bytes: o
                .node_max_memory_size_bytes
                .unwrap_or(DEFAULT_NODE_MAX_MEMORY_SIZE_BYTES),
            max_message_size_bytes: o
                .max_message_size_bytes
                .unwrap_or(DEFAULT_MAX_MESSAGE_SIZE_BYTES),
            controllers,
            cycles_for_archive_creation: o
                .cycles_for_archive_creation
                .unwrap_or(DEFAULT_CYCLES_FOR_ARCHIVE_CREATION),
            max_transactions_per_response: o.max_transactions_per_response,
            wasm: o.archive_wasm,
            nodes: vec![],
            ranges: vec![],
        }
    }

    /// (node, inclusive range) of the nodes that hold blocks, oldest first.
    pub fn index(&self) -> impl Iterator<Item = (Principal, (u64, u64))> + '_ {
        self.nodes.iter().copied().zip(self.ranges.iter().copied())
    }

    /// What `[start, end)` each node serves, oldest first.
    fn locate(&self, want: &Range<u64>) -> Vec<(Principal, Range<u64>)> {
        self.index()
            .filter_map(|(node, (from, to))| {
                let s = intersect(&(from..to + 1), want);
                (!s.is_empty()).then_some((node, s))
            })
            .collect()
    }
}

fn intersect(a: &Range<u64>, b: &Range<u64>) -> Range<u64> {
    let s = a.start.max(b.start);
    let e = a.end.min(b.end);
    if s < e {
        s..e
    } else {
        s..s
    }
}

/// The size a block takes in an `append_blocks` payload and in an archive.
pub fn block_size(b: &Block) -> u64 {
    candid::encode_one(b).map_or(0, |v| v.len() as u64)
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct Ledger {
    pub minting_account: Account,
    pub fee: u128,
    pub token_name: String,
    pub token_symbol: String,
    pub decimals: u8,
    pub max_memo_length: u16,
    pub limits: LedgerLimits,
    pub archive: Option<Archives>,
    pub faults: Faults,
    /// Ledger time minus IC time (test control).
    pub clock_offset_nanos: i64,
    /// An archiving round is in flight (its blocks stay local until it ends, as DFINITY's).
    pub archiving: bool,
    pub archiving_failures: u64,
    balances: BTreeMap<Key, u128>,
    total_supply: u128,
    approvals: BTreeMap<(Key, Key), Approval>,
    /// Blocks `first_local ..` (older ones live in the archives).
    blocks: VecDeque<Block>,
    first_local: u64,
    last_hash: Option<Hash>,
    last_timestamp: u64,
    /// Deduplication index: transaction hash → block, for transactions with `created_at_time`.
    by_hash: BTreeMap<Hash, u64>,
    /// (block timestamp, transaction hash) in block order, to purge the index.
    by_height: VecDeque<(u64, Hash)>,
}

impl Ledger {
    /// Builds the ledger; initial balances are minted as the first blocks, each with
    /// `created_at_time = now` (as `Ledger::from_init_args` in DFINITY's
    /// rs/ledger_suite/icrc1/ledger/src/lib.rs).
    pub fn new(args: InitArgs, now: u64) -> Result<Self, String> {
        let fee = to_u128(&args.transfer_fee).ok_or("transfer_fee too large")?;
        let mut l = Ledger {
            minting_account: args.minting_account,
            fee,
            token_name: args.token_name,
            token_symbol: args.token_symbol,
            decimals: args.decimals.unwrap_or(8),
            max_memo_length: args.max_memo_length.unwrap_or(DEFAULT_MAX_MEMO_LENGTH),
            limits: LedgerLimits::new(args.limits),
            archive: args.archive_options.map(Archives::new),
            faults: Faults::default(),
            clock_offset_nanos: 0,
            archiving: false,
            archiving_failures: 0,
            balances: BTreeMap::new(),
            total_supply: 0,
            approvals: BTreeMap::new(),
            blocks: VecDeque::new(),
            first_local: 0,
            last_hash: None,
            last_timestamp: 0,
            by_hash: BTreeMap::new(),
            by_height: VecDeque::new(),
        };
        for (to, amount) in args.initial_balances {
            let amount = to_u128(&amount).ok_or("initial balance too large")?;
            let tx = Tx {
                op: Op::Mint { to, amount },
                created_at_time: Some(now),
                memo: None,
            };
            l.apply_transaction(tx, now, 0)
                .map_err(|e| format!("initial mint failed: {e:?}"))?;
        }
        Ok(l)
    }

    /// The ledger's clock: the IC's, shifted by the test control's offset.
    pub fn ledger_time(&self, ic_time: u64) -> u64 {
        ic_time.saturating_add_signed(self.clock_offset_nanos)
    }

    // ---------------------------------------------------------------- queries

    pub fn balance_of(&self, a: &Account) -> u128 {
        self.balances.get(&key(a)).copied().unwrap_or(0)
    }

    pub fn total_supply(&self) -> u128 {
        self.total_supply
    }

    pub fn log_length(&self) -> u64 {
        self.first_local + self.blocks.len() as u64
    }

    pub fn first_local(&self) -> u64 {
        self.first_local
    }

    pub fn last_hash(&self) -> Option<Hash> {
        self.last_hash
    }

    pub fn local_block(&self, index: u64) -> Option<&Block> {
        index
            .checked_sub(self.first_local)
            .and_then(|i| self.blocks.get(i as usize))
    }

    /// `now` is ledger time.
    pub fn stats(&self, now: u64) -> LedgerStats {
        let archives = match &self.archive {
            None => vec![],
            Some(a) => a
                .nodes
                .iter()
                .enumerate()
                .map(|(i, &canister_id)| {
                    let (start, end) = match a.ranges.get(i) {
                        Some(&(from, to)) => (from, to + 1),
                        None => {
                            let next = a.ranges.last().map_or(0, |r| r.1 + 1);
                            (next, next)
                        }
                    };
                    ArchiveNode {
                        canister_id,
                        start,
                        end,
                    }
                })
                .collect(),
        };
        LedgerStats {
            log_length: self.log_length(),
            first_local_block: self.first_local,
            local_blocks: self.blocks.len() as u64,
            dedup_entries: self.by_hash.len() as u64,
            fee: Nat::from(self.fee),
            clock_offset_nanos: self.clock_offset_nanos,
            ledger_time: now,
            archives,
            archiving_failures: self.archiving_failures,
            faults: self.faults.clone(),
        }
    }

    pub fn allowance(&self, from: &Account, spender: &Account, now: u64) -> Allowance {
        let (amount, expires_at) = self.current_allowance(from, spender, now);
        Allowance {
            allowance: Nat::from(amount),
            expires_at,
        }
    }

    fn current_allowance(
        &self,
        from: &Account,
        spender: &Account,
        now: u64,
    ) -> (u128, Option<u64>) {
        match self.approvals.get(&(key(from), key(spender))) {
            Some(a) if a.expires_at.is_none_or(|e| e > now) => (a.amount, a.expires_at),
            _ => (0, None),
        }
    }

    // ---------------------------------------------------------------- faults

    /// Test-control faults, checked before anything else in a mutating call. `transfer`:
    /// a transfer or transfer_from, which also takes forced replies.
    fn check_faults(&mut self, transfer: bool) -> Outcome<Option<CoreError>> {
        if self.faults.trap {
            return Err("test ledger: trap injected before applying the transaction".into());
        }
        if transfer && !self.faults.forced_transfer_replies.is_empty() {
            let e = self.faults.forced_transfer_replies.remove(0);
            return Ok(Some(CoreError::Forced(e)));
        }
        if self.faults.unavailable_next > 0 {
            self.faults.unavailable_next -= 1;
            return Ok(Some(CoreError::TemporarilyUnavailable));
        }
        Ok(None)
    }

    fn check_memo(&self, memo: &Option<Memo>) -> Outcome<()> {
        match memo {
            Some(m) if m.0.len() > self.max_memo_length as usize => Err(format!(
                "the memo field size of {} bytes is above the allowed limit of {} bytes",
                m.0.len(),
                self.max_memo_length
            )),
            _ => Ok(()),
        }
    }

    // ---------------------------------------------------------------- updates

    pub fn icrc1_transfer(
        &mut self,
        caller: Principal,
        arg: TransferArg,
        now: u64,
    ) -> Outcome<Result<Nat, TransferError>> {
        let from = Account {
            owner: caller,
            subaccount: arg.from_subaccount,
        };
        let r = self.execute_transfer(
            from,
            arg.to,
            None,
            arg.fee,
            arg.amount,
            arg.memo,
            arg.created_at_time,
            now,
        )?;
        match r {
            Ok(i) => Ok(Ok(Nat::from(i))),
            Err(e) => to_transfer_error(e).map(Err),
        }
    }

    pub fn icrc2_transfer_from(
        &mut self,
        caller: Principal,
        arg: TransferFromArgs,
        now: u64,
    ) -> Outcome<Result<Nat, TransferFromError>> {
        let spender = Account {
            owner: caller,
            subaccount: arg.spender_subaccount,
        };
        let r = self.execute_transfer(
            arg.from,
            arg.to,
            Some(spender),
            arg.fee,
            arg.amount,
            arg.memo,
            arg.created_at_time,
            now,
        )?;
        match r {
            Ok(i) => Ok(Ok(Nat::from(i))),
            Err(e) => to_transfer_from_error(e).map(Err),
        }
    }

    pub fn icrc2_approve(
        &mut self,
        caller: Principal,
        arg: ApproveArgs,
        now: u64,
    ) -> Outcome<Result<Nat, ApproveError>> {
        if let Some(e) = self.check_faults(false)? {
            return to_approve_error(e).map(Err);
        }
        let from = Account {
            owner: caller,
            subaccount: arg.from_subaccount,
        };
        if from.owner == arg.spender.owner {
            return Err("self approval is not allowed".into());
        }
        if from == self.minting_account {
            return Err("the minting account cannot delegate mints".into());
        }
        self.check_memo(&arg.memo)?;
        let amount = to_u128(&arg.amount).unwrap_or(u128::MAX);
        let expected_allowance = match &arg.expected_allowance {
            None => None,
            Some(n) => match to_u128(n) {
                Some(n) => Some(n),
                None => {
                    let (current, _) = self.current_allowance(&from, &arg.spender, now);
                    return Ok(Err(ApproveError::AllowanceChanged {
                        current_allowance: Nat::from(current),
                    }));
                }
            },
        };
        if arg.fee.is_some() && arg.fee != Some(Nat::from(self.fee)) {
            return Ok(Err(ApproveError::BadFee {
                expected_fee: Nat::from(self.fee),
            }));
        }
        let tx = Tx {
            op: Op::Approve {
                from,
                spender: arg.spender,
                amount,
                expected_allowance,
                expires_at: arg.expires_at,
                fee: arg.fee.map(|_| self.fee),
            },
            created_at_time: arg.created_at_time,
            memo: arg.memo.map(|m| m.0),
        };
        match self.apply_transaction(tx, now, self.fee) {
            Ok(i) => Ok(Ok(Nat::from(i))),
            Err(e) => to_approve_error(e).map(Err),
        }
    }

    /// Mint `amount` to `to` (test control; the same as a transfer from the minting account).
    pub fn mint(&mut self, to: Account, amount: u128, now: u64) -> Result<u64, CoreError> {
        let tx = Tx {
            op: Op::Mint { to, amount },
            created_at_time: None,
            memo: None,
        };
        self.apply_transaction(tx, now, 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn execute_transfer(
        &mut self,
        from: Account,
        to: Account,
        spender: Option<Account>,
        fee: Option<Nat>,
        amount: Nat,
        memo: Option<Memo>,
        created_at_time: Option<u64>,
        now: u64,
    ) -> Outcome<Result<u64, CoreError>> {
        if let Some(e) = self.check_faults(true)? {
            return Ok(Err(e));
        }
        self.check_memo(&memo)?;
        let Some(amount) = to_u128(&amount) else {
            // No one can hold that many tokens.
            return Ok(Err(CoreError::InsufficientFunds {
                balance: self.balance_of(&from),
            }));
        };
        let memo = memo.map(|m| m.0);
        let (op, effective_fee) = if to == self.minting_account {
            if fee.is_some() && fee != Some(Nat::from(0u8)) {
                return Ok(Err(CoreError::BadFee { expected_fee: 0 }));
            }
            let min_burn_amount = self.fee.min(self.balance_of(&from));
            if amount < min_burn_amount {
                return Ok(Err(CoreError::BadBurn { min_burn_amount }));
            }
            if amount == 0 {
                return Ok(Err(CoreError::BadBurn {
                    min_burn_amount: self.fee,
                }));
            }
            (
                Op::Burn {
                    from,
                    spender,
                    amount,
                },
                0,
            )
        } else if from == self.minting_account {
            if spender.is_some() {
                return Err("the minter account cannot delegate mints".into());
            }
            if fee.is_some() && fee != Some(Nat::from(0u8)) {
                return Ok(Err(CoreError::BadFee { expected_fee: 0 }));
            }
            (Op::Mint { to, amount }, 0)
        } else {
            if fee.is_some() && fee != Some(Nat::from(self.fee)) {
                return Ok(Err(CoreError::BadFee {
                    expected_fee: self.fee,
                }));
            }
            (
                Op::Transfer {
                    from,
                    to,
                    spender,
                    amount,
                    fee: fee.map(|_| self.fee),
                },
                self.fee,
            )
        };
        let tx = Tx {
            op,
            created_at_time,
            memo,
        };
        Ok(self.apply_transaction(tx, now, effective_fee))
    }

    /// Removes at most `max_transactions_to_purge` deduplication entries whose block is older
    /// than window + drift; returns how many (DFINITY's `purge_old_transactions`).
    fn purge_old_transactions(&mut self, now: u64) -> u64 {
        let mut purged = 0;
        while let Some(&(ts, h)) = self.by_height.front() {
            if ts
                .saturating_add(self.limits.transaction_window_nanos)
                .saturating_add(self.limits.permitted_drift_nanos)
                >= now
            {
                break;
            }
            self.by_hash.remove(&h);
            self.by_height.pop_front();
            purged += 1;
            if purged >= self.limits.max_transactions_to_purge {
                break;
            }
        }
        purged
    }

    /// DFINITY's `throttle`: half the window's capacity is admitted freely; past that, at
    /// most `ceil(max_in_window / 2 / window_secs)` deduplicated transactions per second.
    fn throttled(&self, now: u64) -> bool {
        let in_window = self.by_height.len() as u64;
        let max = self.limits.max_transactions_in_window;
        if in_window < max / 2 {
            return false;
        }
        let window_secs = self.limits.transaction_window_nanos as f64 / 1e9;
        let max_rate = (0.5 * max as f64 / window_secs).ceil() as u64;
        let ts = self
            .by_height
            .get(in_window.saturating_sub(max_rate) as usize)
            .map_or(0, |&(ts, _)| ts);
        ts.saturating_add(1_000_000_000) > now
    }

    /// Validates and applies `tx`, appending its block, as DFINITY's `apply_transaction`
    /// (ledger_canister_core `ledger.rs`). No state changes on error, except
    /// [`CoreError::OlderThanTip`], on which the canister traps (rolling everything back).
    pub fn apply_transaction(
        &mut self,
        tx: Tx,
        now: u64,
        effective_fee: u128,
    ) -> Result<u64, CoreError> {
        let purged = self.purge_old_transactions(now);
        // TxThrottled, which the ICRC-1 endpoints answer as TemporarilyUnavailable
        // (`convert_transfer_error`, rs/ledger_suite/icrc1/src/endpoints.rs).
        if purged == 0 && self.throttled(now) {
            return Err(CoreError::TemporarilyUnavailable);
        }
        let dedup = tx.created_at_time.map(|t| (t, tx.hash()));
        if let Some((created_at_time, tx_hash)) = dedup {
            // Exactly DFINITY's inequalities: `created_at_time + window < now` is too old,
            // `created_at_time > now + drift` is in the future (both ends inclusive-valid).
            if created_at_time.saturating_add(self.limits.transaction_window_nanos) < now {
                return Err(CoreError::TooOld);
            }
            if created_at_time > now.saturating_add(self.limits.permitted_drift_nanos) {
                return Err(CoreError::CreatedInFuture { ledger_time: now });
            }
            if let Some(&duplicate_of) = self.by_hash.get(&tx_hash) {
                return Err(CoreError::Duplicate { duplicate_of });
            }
        }
        self.apply_op(&tx.op, now, effective_fee)?;
        if now < self.last_timestamp {
            return Err(CoreError::OlderThanTip {
                tip: self.last_timestamp,
                now,
            });
        }
        let recorded_fee = match &tx.op {
            Op::Transfer { fee: None, .. } | Op::Approve { fee: None, .. } => Some(effective_fee),
            _ => None,
        };
        let block = Block {
            parent_hash: self.last_hash.map(|h| ByteBuf::from(h.to_vec())),
            timestamp: now,
            effective_fee: recorded_fee,
            tx,
        };
        let height = self.log_length();
        self.last_hash = Some(block.hash());
        self.last_timestamp = now;
        self.blocks.push_back(block);
        if let Some((_, h)) = dedup {
            self.by_hash.insert(h, height);
            self.by_height.push_back((now, h));
        }
        Ok(height)
    }

    fn check_allowance(
        &self,
        from: &Account,
        spender: &Option<Account>,
        needed: u128,
        now: u64,
    ) -> Result<(), CoreError> {
        if let Some(s) = spender {
            if s != from {
                let (allowance, _) = self.current_allowance(from, s, now);
                if allowance < needed {
                    return Err(CoreError::InsufficientAllowance { allowance });
                }
            }
        }
        Ok(())
    }

    fn use_allowance(&mut self, from: &Account, spender: &Option<Account>, used: u128) {
        if let Some(s) = spender {
            if s != from {
                let k = (key(from), key(s));
                if let Some(a) = self.approvals.get_mut(&k) {
                    a.amount -= used;
                    if a.amount == 0 {
                        self.approvals.remove(&k);
                    }
                }
            }
        }
    }

    fn debit(&mut self, a: &Account, amount: u128) {
        let k = key(a);
        let b = self.balances.get_mut(&k).expect("checked balance");
        *b -= amount;
        if *b == 0 {
            self.balances.remove(&k);
        }
    }

    fn credit(&mut self, a: &Account, amount: u128) {
        if amount > 0 {
            *self.balances.entry(key(a)).or_insert(0) += amount;
        }
    }

    fn apply_op(&mut self, op: &Op, now: u64, effective_fee: u128) -> Result<(), CoreError> {
        match op {
            Op::Mint { to, amount } => {
                self.credit(to, *amount);
                self.total_supply += *amount;
            }
            Op::Burn {
                from,
                spender,
                amount,
            } => {
                self.check_allowance(from, spender, *amount, now)?;
                let balance = self.balance_of(from);
                if balance < *amount {
                    return Err(CoreError::InsufficientFunds { balance });
                }
                self.debit(from, *amount);
                self.total_supply -= *amount;
                self.use_allowance(from, spender, *amount);
            }
            Op::Transfer {
                from,
                to,
                spender,
                amount,
                fee,
            } => {
                let fee = fee.unwrap_or(effective_fee);
                let needed = amount
                    .checked_add(fee)
                    .ok_or(CoreError::InsufficientFunds {
                        balance: self.balance_of(from),
                    })?;
                self.check_allowance(from, spender, needed, now)?;
                let balance = self.balance_of(from);
                if balance < needed {
                    return Err(CoreError::InsufficientFunds { balance });
                }
                self.debit(from, needed);
                self.credit(to, *amount);
                // No fee collector: the fee is burned.
                self.total_supply -= fee;
                self.use_allowance(from, spender, needed);
            }
            Op::Approve {
                from,
                spender,
                amount,
                expected_allowance,
                expires_at,
                fee,
            } => {
                let fee = fee.unwrap_or(effective_fee);
                if let Some(e) = expires_at {
                    if *e <= now {
                        return Err(CoreError::Expired { ledger_time: now });
                    }
                }
                if let Some(expected) = expected_allowance {
                    let (current, _) = self.current_allowance(from, spender, now);
                    if current != *expected {
                        return Err(CoreError::AllowanceChanged {
                            current_allowance: current,
                        });
                    }
                }
                let balance = self.balance_of(from);
                if balance < fee {
                    return Err(CoreError::InsufficientFunds { balance });
                }
                self.debit(from, fee);
                self.total_supply -= fee;
                let k = (key(from), key(spender));
                if *amount == 0 {
                    self.approvals.remove(&k);
                } else {
                    self.approvals.insert(
                        k,
                        Approval {
                            amount: *amount,
                            expires_at: *expires_at,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- archiving

    /// Starts an archiving round, as DFINITY's `blocks_to_archive`: none while one is in
    /// flight; `force = Some(max)` (test control) takes up to `max` of the oldest local
    /// blocks; otherwise nothing below `trigger_threshold` local blocks, and at most
    /// `num_blocks_to_archive` from it on (`Blockchain::get_blocks_for_archiving`).
    /// The blocks stay local until [`Ledger::end_archiving`].
    pub fn begin_archiving(&mut self, force: Option<u64>) -> Option<VecDeque<Block>> {
        let opts = self.archive.as_ref()?;
        if self.archiving {
            return None;
        }
        let local = self.blocks.len() as u64;
        let n = match force {
            Some(max) => max.min(local),
            None if local < opts.trigger_threshold => 0,
            None => opts.num_blocks_to_archive.min(local),
        };
        if n == 0 {
            return None;
        }
        self.archiving = true;
        Some(self.blocks.iter().take(n as usize).cloned().collect())
    }

    /// The round ended with its first `sent` blocks in archives: they are dropped locally
    /// (DFINITY's `remove_archived_blocks`, also after a partial failure).
    pub fn end_archiving(&mut self, sent: u64, failed: bool) {
        self.archiving = false;
        if failed {
            self.archiving_failures += 1;
        }
        let sent = sent.min(self.blocks.len() as u64);
        self.blocks.drain(..sent as usize);
        self.first_local += sent;
    }

    /// Node `node_index` acknowledged `n` more blocks (DFINITY's `nodes_block_ranges`
    /// bookkeeping in `send_blocks_to_archive`).
    pub fn record_appended(&mut self, node_index: usize, n: u64) {
        let Some(a) = self.archive.as_mut() else {
            return;
        };
        if n == 0 {
            return;
        }
        match a.ranges.get_mut(node_index) {
            Some(r) => r.1 += n,
            None => {
                let start = a.ranges.last().map_or(0, |r| r.1 + 1);
                a.ranges.push((start, start + n - 1));
            }
        }
    }

    /// The first block index the next spawned archive will hold.
    pub fn next_archive_offset(&self) -> u64 {
        self.archive
            .as_ref()
            .and_then(|a| a.ranges.last())
            .map_or(0, |r| r.1 + 1)
    }

    /// The install argument of the next archive this ledger spawns.
    pub fn archive_init_args(&self, ledger_id: Principal) -> Option<ArchiveInitArgs> {
        let a = self.archive.as_ref()?;
        Some(ArchiveInitArgs {
            ledger_id,
            block_index_offset: self.next_archive_offset(),
            max_memory_size_bytes: Some(a.node_max_memory_size_bytes),
            max_transactions_per_response: a.max_transactions_per_response,
            max_blocks_per_response: Some(self.limits.archive_max_blocks_per_response),
        })
    }

    // ---------------------------------------------------------------- block access

    fn local_range(&self) -> Range<u64> {
        self.first_local..self.log_length()
    }

    /// DFINITY's `Ledger::icrc3_get_blocks`: each request is clamped to what is left of
    /// `max_blocks_per_response` (counting local blocks only), then split into local blocks
    /// and, per archive, the part of it that archive holds; archived parts are grouped by
    /// archive. A request that is not a pair of u64 traps.
    pub fn icrc3_get_blocks(&self, reqs: Vec<GetBlocksRequest>) -> Outcome<GetBlocksResult> {
        let max = self.limits.max_blocks_per_response;
        let mut blocks = Vec::new();
        let mut by_archive: BTreeMap<Principal, Vec<GetBlocksRequest>> = BTreeMap::new();
        for req in reqs {
            let (start, len) = req.as_start_and_length()?;
            let left = max.saturating_sub(blocks.len() as u64);
            if left == 0 {
                break;
            }
            let want = start..start.saturating_add(len.min(left));
            let local = intersect(&want, &self.local_range());
            let local_end = local
                .end
                .min(local.start + self.limits.max_transactions_per_request);
            for i in local.start..local_end {
                blocks.push(BlockWithId {
                    id: Nat::from(i),
                    block: self.local_block(i).expect("local block").to_value(),
                });
            }
            if let Some(a) = &self.archive {
                for (node, r) in a.locate(&want) {
                    by_archive.entry(node).or_default().push(GetBlocksRequest {
                        start: Nat::from(r.start),
                        length: Nat::from(r.end - r.start),
                    });
                }
            }
            if blocks.len() as u64 >= max {
                break;
            }
        }
        Ok(GetBlocksResult {
            log_length: Nat::from(self.log_length()),
            blocks,
            archived_blocks: by_archive
                .into_iter()
                .map(|(node, args)| ArchivedBlocks {
                    args,
                    callback: QueryArchiveFn::new(node, "icrc3_get_blocks"),
                })
                .collect(),
        })
    }

    /// DFINITY's `Ledger::get_transactions` (`query_blocks`): the local part of the request,
    /// at most `max_transactions_per_request` blocks, and per archive the whole part it holds
    /// (uncapped: the archive caps its own reply). `first_index` is where the local part
    /// starts, even when it was cut short.
    pub fn get_transactions(
        &self,
        req: GetTransactionsRequest,
    ) -> Outcome<GetTransactionsResponse> {
        let (start, len) = req.as_start_and_length()?;
        let want = start..start.saturating_add(len);
        let local = intersect(&want, &self.local_range());
        let local = if local.is_empty() {
            self.first_local..self.first_local
        } else {
            local
        };
        let local_end = local
            .end
            .min(local.start + self.limits.max_transactions_per_request);
        let archived_transactions = match &self.archive {
            None => vec![],
            Some(a) => a
                .locate(&want)
                .into_iter()
                .map(|(node, r)| ArchivedRange {
                    start: Nat::from(r.start),
                    length: Nat::from(r.end - r.start),
                    callback: QueryTxArchiveFn::new(node, ARCHIVE_GET_TRANSACTIONS),
                })
                .collect(),
        };
        Ok(GetTransactionsResponse {
            log_length: Nat::from(self.log_length()),
            first_index: Nat::from(local.start),
            transactions: (local.start..local_end)
                .map(|i| self.local_block(i).expect("local block").to_transaction())
                .collect(),
            archived_transactions,
        })
    }

    /// DFINITY's `Ledger::icrc3_get_archives`: archives holding blocks, those with an id
    /// above `from` when given.
    pub fn icrc3_get_archives(&self, args: GetArchivesArgs) -> Vec<ICRC3ArchiveInfo> {
        let Some(a) = &self.archive else {
            return vec![];
        };
        a.index()
            .filter(|(node, _)| args.from.is_none_or(|from| *node > from))
            .map(|(canister_id, (start, end))| ICRC3ArchiveInfo {
                canister_id,
                start: Nat::from(start),
                end: Nat::from(end),
            })
            .collect()
    }
}

fn to_transfer_error(e: CoreError) -> Outcome<TransferError> {
    Ok(match e {
        CoreError::BadFee { expected_fee } => TransferError::BadFee {
            expected_fee: Nat::from(expected_fee),
        },
        CoreError::BadBurn { min_burn_amount } => TransferError::BadBurn {
            min_burn_amount: Nat::from(min_burn_amount),
        },
        CoreError::InsufficientFunds { balance } => TransferError::InsufficientFunds {
            balance: Nat::from(balance),
        },
        CoreError::TooOld => TransferError::TooOld,
        CoreError::CreatedInFuture { ledger_time } => {
            TransferError::CreatedInFuture { ledger_time }
        }
        CoreError::Duplicate { duplicate_of } => TransferError::Duplicate {
            duplicate_of: Nat::from(duplicate_of),
        },
        CoreError::TemporarilyUnavailable => TransferError::TemporarilyUnavailable,
        CoreError::Forced(e) => e,
        e => return Err(format!("{e:?} cannot happen in icrc1_transfer")),
    })
}

fn to_transfer_from_error(e: CoreError) -> Outcome<TransferFromError> {
    Ok(match e {
        CoreError::BadFee { expected_fee } => TransferFromError::BadFee {
            expected_fee: Nat::from(expected_fee),
        },
        CoreError::BadBurn { min_burn_amount } => TransferFromError::BadBurn {
            min_burn_amount: Nat::from(min_burn_amount),
        },
        CoreError::InsufficientFunds { balance } => TransferFromError::InsufficientFunds {
            balance: Nat::from(balance),
        },
        CoreError::InsufficientAllowance { allowance } => {
            TransferFromError::InsufficientAllowance {
                allowance: Nat::from(allowance),
            }
        }
        CoreError::TooOld => TransferFromError::TooOld,
        CoreError::CreatedInFuture { ledger_time } => {
            TransferFromError::CreatedInFuture { ledger_time }
        }
        CoreError::Duplicate { duplicate_of } => TransferFromError::Duplicate {
            duplicate_of: Nat::from(duplicate_of),
        },
        CoreError::TemporarilyUnavailable => TransferFromError::TemporarilyUnavailable,
        CoreError::Forced(e) => forced_transfer_from(e),
        e => return Err(format!("{e:?} cannot happen in icrc2_transfer_from")),
    })
}

/// A forced transfer reply, as `icrc2_transfer_from` spells it (every variant exists there).
fn forced_transfer_from(e: TransferError) -> TransferFromError {
    match e {
        TransferError::BadFee { expected_fee } => TransferFromError::BadFee { expected_fee },
        TransferError::BadBurn { min_burn_amount } => {
            TransferFromError::BadBurn { min_burn_amount }
        }
        TransferError::InsufficientFunds { balance } => {
            TransferFromError::InsufficientFunds { balance }
        }
        TransferError::TooOld => TransferFromError::TooOld,
        TransferError::CreatedInFuture { ledger_time } => {
            TransferFromError::CreatedInFuture { ledger_time }
        }
        TransferError::Duplicate { duplicate_of } => TransferFromError::Duplicate { duplicate_of },
        TransferError::TemporarilyUnavailable => TransferFromError::TemporarilyUnavailable,
        TransferError::GenericError {
            error_code,
            message,
        } => TransferFromError::GenericError {
            error_code,
            message,
        },
    }
}

fn to_approve_error(e: CoreError) -> Outcome<ApproveError> {
    Ok(match e {
        CoreError::BadFee { expected_fee } => ApproveError::BadFee {
            expected_fee: Nat::from(expected_fee),
        },
        CoreError::InsufficientFunds { balance } => ApproveError::InsufficientFunds {
            balance: Nat::from(balance),
        },
        CoreError::AllowanceChanged { current_allowance } => ApproveError::AllowanceChanged {
            current_allowance: Nat::from(current_allowance),
        },
        CoreError::Expired { ledger_time } => ApproveError::Expired { ledger_time },
        CoreError::TooOld => ApproveError::TooOld,
        CoreError::CreatedInFuture { ledger_time } => ApproveError::CreatedInFuture { ledger_time },
        CoreError::Duplicate { duplicate_of } => ApproveError::Duplicate {
            duplicate_of: Nat::from(duplicate_of),
        },
        CoreError::TemporarilyUnavailable => ApproveError::TemporarilyUnavailable,
        e => return Err(format!("{e:?} cannot happen in icrc2_approve")),
    })
}

/// The archive role, as DFINITY's ICRC-1 archive (rs/ledger_suite/icrc1/archive/src/main.rs):
/// blocks `block_index_offset ..`, appended only by its ledger, up to `max_memory_size_bytes`.
#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct ArchiveStore {
    pub ledger_id: Principal,
    pub block_index_offset: u64,
    pub max_memory_size_bytes: u64,
    pub max_transactions_per_response: u64,
    pub max_blocks_per_response: u64,
    pub blocks: Vec<Block>,
    pub bytes_used: u64,
    /// Test control: while set, every read traps (an unreadable archive).
    pub unavailable: bool,
}

impl ArchiveStore {
    pub fn new(args: ArchiveInitArgs) -> Self {
        ArchiveStore {
            ledger_id: args.ledger_id,
            block_index_offset: args.block_index_offset,
            max_memory_size_bytes: args
                .max_memory_size_bytes
                .unwrap_or(ARCHIVE_MEMORY_LIMIT)
                .min(ARCHIVE_MEMORY_LIMIT),
            max_transactions_per_response: args
                .max_transactions_per_response
                .unwrap_or(ARCHIVE_MAX_TRANSACTIONS_PER_RESPONSE),
            max_blocks_per_response: args
                .max_blocks_per_response
                .unwrap_or(ARCHIVE_MAX_BLOCKS_PER_RESPONSE),
            blocks: vec![],
            bytes_used: 0,
            unavailable: false,
        }
    }

    /// DFINITY's `append_blocks`: only the ledger, and only while everything fits.
    pub fn append(&mut self, caller: Principal, blocks: Vec<Block>) -> Outcome<()> {
        if caller != self.ledger_id {
            return Err(format!(
                "only {} can append blocks to this archive",
                self.ledger_id
            ));
        }
        let bytes: u64 = blocks.iter().map(block_size).sum();
        if self.max_memory_size_bytes < self.bytes_used.saturating_add(bytes) {
            return Err("no space left".into());
        }
        self.bytes_used += bytes;
        self.blocks.extend(blocks);
        Ok(())
    }

    pub fn remaining_capacity(&self) -> u64 {
        self.max_memory_size_bytes - self.bytes_used
    }

    fn check_readable(&self) -> Outcome<()> {
        if self.unavailable {
            Err("test archive: unavailable (injected)".into())
        } else {
            Ok(())
        }
    }

    /// DFINITY's `decode_block_range`: a start below the archive's first block traps; the
    /// length is capped at `max_transactions_per_response`; the end at what it holds.
    fn block_range(&self, start: u64, len: u64) -> Outcome<Range<u64>> {
        if start < self.block_index_offset {
            return Err(format!(
                "requested index {start} is less than the minimal index {} this archive serves",
                self.block_index_offset
            ));
        }
        let offset = start - self.block_index_offset;
        let len = len.min(self.max_transactions_per_response);
        let end = (self.blocks.len() as u64).min(offset.saturating_add(len));
        Ok(offset..end.max(offset))
    }

    /// At most `max_blocks_per_response` blocks over all requests; `log_length` is the number
    /// of blocks this archive holds (as DFINITY's archive answers).
    pub fn icrc3_get_blocks(&self, reqs: Vec<GetBlocksRequest>) -> Outcome<GetBlocksResult> {
        self.check_readable()?;
        let mut blocks = Vec::new();
        for req in reqs {
            let (start, len) = req.as_start_and_length()?;
            let left = self
                .max_blocks_per_response
                .saturating_sub(blocks.len() as u64);
            if left == 0 {
                break;
            }
            for i in self.block_range(start, len.min(left))? {
                blocks.push(BlockWithId {
                    id: Nat::from(self.block_index_offset + i),
                    block: self.blocks[i as usize].to_value(),
                });
            }
        }
        Ok(GetBlocksResult {
            log_length: Nat::from(self.blocks.len() as u64),
            blocks,
            archived_blocks: vec![],
        })
    }

    pub fn get_transactions(&self, req: GetTransactionsRequest) -> Outcome<TransactionRange> {
        self.check_readable()?;
        let (start, len) = req.as_start_and_length()?;
        Ok(TransactionRange {
            transactions: self
                .block_range(start, len)?
                .map(|i| self.blocks[i as usize].to_transaction())
                .collect(),
        })
    }

    /// Block `i` (a global index).
    pub fn block_value(&self, i: u64) -> Option<ICRC3Value> {
        i.checked_sub(self.block_index_offset)
            .and_then(|i| self.blocks.get(i as usize))
            .map(Block::to_value)
    }
}
