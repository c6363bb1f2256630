//! The ledger's state machine, free of any IC API so it runs in native unit tests.
//! Semantics follow the DFINITY ICRC ledger (ic-icrc1-ledger + ledger-canister-core).

use crate::icrc3::{Block, Hash, Op, Tx};
use crate::types::{ArchiveOptions, Faults, InitArgs, LedgerStats};
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

/// Deduplication window (ICRC-1: 24 h).
pub const TX_WINDOW_NANOS: u64 = 24 * 60 * 60 * 1_000_000_000;
/// Permitted clock drift for `created_at_time` in the future (60 s).
pub const PERMITTED_DRIFT_NANOS: u64 = 60 * 1_000_000_000;
/// Most blocks one `icrc3_get_blocks` / `get_transactions` answer carries (as the DFINITY ledger).
pub const MAX_BLOCKS_PER_RESPONSE: u64 = 2_000;
pub const DEFAULT_MAX_MEMO_LENGTH: u16 = 32;
/// The archive method serving legacy `archived_transactions` callbacks.
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
    BadFee { expected_fee: u128 },
    BadBurn { min_burn_amount: u128 },
    InsufficientFunds { balance: u128 },
    InsufficientAllowance { allowance: u128 },
    TooOld,
    CreatedInFuture { ledger_time: u64 },
    Duplicate { duplicate_of: u64 },
    TemporarilyUnavailable,
    Expired { ledger_time: u64 },
    AllowanceChanged { current_allowance: u128 },
}

/// `Err(msg)`: the call traps with `msg` (the DFINITY ledger traps on, e.g., a too long memo).
pub type Outcome<T> = Result<T, String>;

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
struct Approval {
    amount: u128,
    expires_at: Option<u64>,
}

#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct Ledger {
    pub minting_account: Account,
    pub fee: u128,
    pub token_name: String,
    pub token_symbol: String,
    pub decimals: u8,
    pub max_memo_length: u16,
    pub archive: Option<ArchiveOptions>,
    pub faults: Faults,
    /// An archiving round is in flight (its blocks stay local until the archive acknowledges).
    pub archiving: bool,
    balances: BTreeMap<Key, u128>,
    total_supply: u128,
    approvals: BTreeMap<(Key, Key), Approval>,
    /// Blocks `first_local ..` (older ones live in the archive).
    blocks: VecDeque<Block>,
    first_local: u64,
    last_hash: Option<Hash>,
    /// Deduplication index: transaction hash → block, for transactions with `created_at_time`.
    by_hash: BTreeMap<Hash, u64>,
    /// (block timestamp, transaction hash) in block order, to purge the index.
    by_height: VecDeque<(u64, Hash)>,
}

impl Ledger {
    /// Builds the ledger; initial balances are minted as the first blocks (as the DFINITY ledger).
    pub fn new(args: InitArgs, now: u64) -> Result<Self, String> {
        let fee = to_u128(&args.transfer_fee).ok_or("transfer_fee too large")?;
        let mut l = Ledger {
            minting_account: args.minting_account,
            fee,
            token_name: args.token_name,
            token_symbol: args.token_symbol,
            decimals: args.decimals.unwrap_or(8),
            max_memo_length: args.max_memo_length.unwrap_or(DEFAULT_MAX_MEMO_LENGTH),
            archive: args.archive_options,
            faults: Faults::default(),
            archiving: false,
            balances: BTreeMap::new(),
            total_supply: 0,
            approvals: BTreeMap::new(),
            blocks: VecDeque::new(),
            first_local: 0,
            last_hash: None,
            by_hash: BTreeMap::new(),
            by_height: VecDeque::new(),
        };
        for (to, amount) in args.initial_balances {
            let amount = to_u128(&amount).ok_or("initial balance too large")?;
            let tx = Tx {
                op: Op::Mint { to, amount },
                created_at_time: None,
                memo: None,
            };
            l.apply_transaction(tx, now, 0)
                .map_err(|e| format!("initial mint failed: {e:?}"))?;
        }
        Ok(l)
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

    pub fn stats(&self) -> LedgerStats {
        LedgerStats {
            log_length: self.log_length(),
            first_local_block: self.first_local,
            local_blocks: self.blocks.len() as u64,
            dedup_entries: self.by_hash.len() as u64,
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

    /// Test-control faults, checked before anything else in a mutating call.
    fn check_faults(&mut self) -> Outcome<Option<CoreError>> {
        if self.faults.trap {
            return Err("test ledger: trap injected before applying the transaction".into());
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
        if let Some(e) = self.check_faults()? {
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
        if let Some(e) = self.check_faults()? {
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

    /// Removes deduplication entries whose block is older than window + drift.
    fn purge_old_transactions(&mut self, now: u64) {
        while let Some(&(ts, h)) = self.by_height.front() {
            if ts
                .saturating_add(TX_WINDOW_NANOS)
                .saturating_add(PERMITTED_DRIFT_NANOS)
                >= now
            {
                break;
            }
            self.by_hash.remove(&h);
            self.by_height.pop_front();
        }
    }

    /// Validates and applies `tx`, appending its block. No state changes on error.
    pub fn apply_transaction(
        &mut self,
        tx: Tx,
        now: u64,
        effective_fee: u128,
    ) -> Result<u64, CoreError> {
        self.purge_old_transactions(now);
        let dedup = tx.created_at_time.map(|t| (t, tx.hash()));
        if let Some((created_at_time, tx_hash)) = dedup {
            if created_at_time.saturating_add(TX_WINDOW_NANOS) < now {
                return Err(CoreError::TooOld);
            }
            if created_at_time > now.saturating_add(PERMITTED_DRIFT_NANOS) {
                return Err(CoreError::CreatedInFuture { ledger_time: now });
            }
            if let Some(&duplicate_of) = self.by_hash.get(&tx_hash) {
                return Err(CoreError::Duplicate { duplicate_of });
            }
        }
        self.apply_op(&tx.op, now, effective_fee)?;
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

    /// The blocks an archiving round should move now: `force = Some(max)` moves up to `max` of
    /// the oldest local blocks; `None` follows the trigger threshold. Returns (first index, blocks).
    pub fn blocks_to_archive(&self, force: Option<u64>) -> Option<(u64, Vec<Block>)> {
        let opts = self.archive.as_ref()?;
        if self.archiving {
            return None;
        }
        let local = self.blocks.len() as u64;
        let n = match force {
            Some(max) => max.min(local),
            None => {
                if opts.trigger_threshold == 0 || local < opts.trigger_threshold {
                    return None;
                }
                opts.num_blocks_to_archive.min(local)
            }
        };
        if n == 0 {
            return None;
        }
        Some((
            self.first_local,
            self.blocks.iter().take(n as usize).cloned().collect(),
        ))
    }

    /// The archive acknowledged blocks `start .. start + n`: drop them locally.
    pub fn blocks_archived(&mut self, start: u64, n: u64) {
        assert_eq!(
            start, self.first_local,
            "archived blocks must be the oldest local ones"
        );
        for _ in 0..n {
            self.blocks.pop_front();
        }
        self.first_local += n;
    }

    // ---------------------------------------------------------------- block access

    pub fn icrc3_get_blocks(&self, reqs: Vec<GetBlocksRequest>) -> GetBlocksResult {
        let log_length = self.log_length();
        let mut budget = MAX_BLOCKS_PER_RESPONSE;
        let mut blocks = Vec::new();
        let mut archived_args = Vec::new();
        for req in reqs {
            let Ok((start, len)) = req.as_start_and_length() else {
                continue;
            };
            let end = start.saturating_add(len.min(budget)).min(log_length);
            if start >= end {
                continue;
            }
            budget -= end - start;
            let archived_end = end.min(self.first_local);
            if start < archived_end {
                archived_args.push(GetBlocksRequest {
                    start: Nat::from(start),
                    length: Nat::from(archived_end - start),
                });
            }
            for i in start.max(self.first_local)..end {
                blocks.push(BlockWithId {
                    id: Nat::from(i),
                    block: self.local_block(i).expect("local block").to_value(),
                });
            }
        }
        let archived_blocks = match (&self.archive, archived_args.is_empty()) {
            (Some(opts), false) => vec![ArchivedBlocks {
                args: archived_args,
                callback: QueryArchiveFn::new(opts.archive, "icrc3_get_blocks"),
            }],
            _ => vec![],
        };
        GetBlocksResult {
            log_length: Nat::from(log_length),
            blocks,
            archived_blocks,
        }
    }

    pub fn get_transactions(
        &self,
        req: GetTransactionsRequest,
    ) -> Outcome<GetTransactionsResponse> {
        let (start, len) = req.as_start_and_length()?;
        let log_length = self.log_length();
        let end = start
            .saturating_add(len.min(MAX_BLOCKS_PER_RESPONSE))
            .min(log_length);
        let local_start = start.max(self.first_local);
        let (first_index, transactions) = if local_start < end {
            (
                local_start,
                (local_start..end)
                    .map(|i| self.local_block(i).expect("local block").to_transaction())
                    .collect(),
            )
        } else {
            (self.first_local, vec![])
        };
        let archived_end = end.min(self.first_local);
        let archived_transactions = match &self.archive {
            Some(opts) if start < archived_end => vec![ArchivedRange {
                start: Nat::from(start),
                length: Nat::from(archived_end - start),
                callback: QueryTxArchiveFn::new(opts.archive, ARCHIVE_GET_TRANSACTIONS),
            }],
            _ => vec![],
        };
        Ok(GetTransactionsResponse {
            log_length: Nat::from(log_length),
            first_index: Nat::from(first_index),
            transactions,
            archived_transactions,
        })
    }

    pub fn icrc3_get_archives(&self, args: GetArchivesArgs) -> Vec<ICRC3ArchiveInfo> {
        match &self.archive {
            Some(opts) if self.first_local > 0 && args.from.is_none_or(|p| p < opts.archive) => {
                vec![ICRC3ArchiveInfo {
                    canister_id: opts.archive,
                    start: Nat::from(0u8),
                    end: Nat::from(self.first_local - 1),
                }]
            }
            _ => vec![],
        }
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
        e => return Err(format!("{e:?} cannot happen in icrc2_transfer_from")),
    })
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

/// The archive role: a contiguous run of blocks starting at 0, appended only by its ledger.
#[derive(CandidType, Deserialize, Clone, Debug)]
pub struct ArchiveStore {
    pub ledger: Principal,
    pub blocks: Vec<Block>,
    /// Test control: while set, every read traps (an unreadable archive).
    pub unavailable: bool,
}

impl ArchiveStore {
    pub fn new(ledger: Principal) -> Self {
        ArchiveStore {
            ledger,
            blocks: vec![],
            unavailable: false,
        }
    }

    pub fn append(
        &mut self,
        caller: Principal,
        start: u64,
        blocks: Vec<Block>,
    ) -> Result<u64, String> {
        if caller != self.ledger {
            return Err(format!("only the ledger {} may append blocks", self.ledger));
        }
        let next = self.blocks.len() as u64;
        if start != next {
            return Err(format!("expected blocks from {next}, got {start}"));
        }
        self.blocks.extend(blocks);
        Ok(self.blocks.len() as u64)
    }

    fn check_readable(&self) -> Outcome<()> {
        if self.unavailable {
            Err("test archive: unavailable (injected)".into())
        } else {
            Ok(())
        }
    }

    pub fn icrc3_get_blocks(&self, reqs: Vec<GetBlocksRequest>) -> Outcome<GetBlocksResult> {
        self.check_readable()?;
        let total = self.blocks.len() as u64;
        let mut budget = MAX_BLOCKS_PER_RESPONSE;
        let mut blocks = Vec::new();
        for req in reqs {
            let Ok((start, len)) = req.as_start_and_length() else {
                continue;
            };
            let end = start.saturating_add(len.min(budget)).min(total);
            if start >= end {
                continue;
            }
            budget -= end - start;
            for i in start..end {
                blocks.push(BlockWithId {
                    id: Nat::from(i),
                    block: self.blocks[i as usize].to_value(),
                });
            }
        }
        Ok(GetBlocksResult {
            log_length: Nat::from(total),
            blocks,
            archived_blocks: vec![],
        })
    }

    pub fn get_transactions(&self, req: GetTransactionsRequest) -> Outcome<TransactionRange> {
        self.check_readable()?;
        let (start, len) = req.as_start_and_length()?;
        let end = start
            .saturating_add(len.min(MAX_BLOCKS_PER_RESPONSE))
            .min(self.blocks.len() as u64);
        Ok(TransactionRange {
            transactions: (start.min(end)..end)
                .map(|i| self.blocks[i as usize].to_transaction())
                .collect(),
        })
    }

    pub fn block_value(&self, i: u64) -> Option<ICRC3Value> {
        self.blocks.get(i as usize).map(Block::to_value)
    }
}
