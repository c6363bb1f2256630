//! A small ICRC-1/ICRC-2/ICRC-3 ledger model for native tests: deduplication window, fees,
//! balances, allowances, blocks with ICRC-3 encoding, an archive canister behind a callback.

use crate::runtime::{CallError, CallResult};
use crate::types::RejectCode;
use candid::{Nat, Principal};
use icrc_ledger_types::icrc::generic_value::ICRC3Value;
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::Memo;
use icrc_ledger_types::icrc1::transfer::{TransferArg, TransferError};
use icrc_ledger_types::icrc2::transfer_from::{TransferFromArgs, TransferFromError};
use icrc_ledger_types::icrc3::archive::QueryArchiveFn;
use icrc_ledger_types::icrc3::blocks::{
    ArchivedBlocks, BlockWithId, GetBlocksRequest, GetBlocksResult,
};
use icrc_ledger_types::icrc3::transactions::{
    GetTransactionsRequest, GetTransactionsResponse, Transaction, Transfer,
};
use num_traits::ToPrimitive;
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub time: u64,
    pub from: Account,
    pub to: Account,
    pub spender: Option<Account>,
    pub amount: u128,
    pub fee_sent: Option<u128>,
    pub memo: Option<Vec<u8>>,
    pub created_at_time: Option<u64>,
}

pub struct ModelLedger {
    pub id: Principal,
    pub archive_id: Principal,
    pub fee: u128,
    pub window: u64,
    pub drift: u64,
    pub balances: BTreeMap<Account, u128>,
    pub allowances: BTreeMap<(Account, Account), u128>,
    pub blocks: Vec<Block>,
    /// Blocks below this index are only served by the archive.
    pub archived_upto: u64,
    pub archive_broken: bool,
    /// Answer the next N transfers with TemporarilyUnavailable.
    pub unavailable: u32,
    /// No ICRC-3: `icrc3_get_blocks` is rejected, only the legacy `get_transactions` answers.
    pub legacy_only: bool,
    /// ICRC-1 only: neither `icrc3_get_blocks` nor `get_transactions` exists.
    pub no_block_access: bool,
    /// Most blocks (transactions) one `icrc3_get_blocks` / `get_transactions` answer holds, at
    /// the ledger and at the archive alike: DFINITY's ICRC-1 ledger and archive cap a reply at
    /// 100 blocks (`MAX_BLOCKS_PER_RESPONSE`, rs/ledger_suite/icrc1/ledger/src/main.rs and
    /// rs/ledger_suite/icrc1/archive/src/main.rs).
    pub max_blocks_per_response: u64,
}

pub const LEDGER: [u8; 10] = [0, 0, 0, 0, 0, 0, 0, 1, 1, 1];
pub const ARCHIVE: [u8; 10] = [0, 0, 0, 0, 0, 0, 0, 2, 1, 1];

impl ModelLedger {
    pub fn new(window: u64, drift: u64) -> Self {
        ModelLedger {
            id: Principal::from_slice(&LEDGER),
            archive_id: Principal::from_slice(&ARCHIVE),
            fee: 10,
            window,
            drift,
            balances: BTreeMap::new(),
            allowances: BTreeMap::new(),
            blocks: vec![],
            archived_upto: 0,
            archive_broken: false,
            unavailable: 0,
            legacy_only: false,
            no_block_access: false,
            max_blocks_per_response: 100,
        }
    }

    fn n(v: &Nat) -> u128 {
        v.0.to_u128().unwrap_or(u128::MAX)
    }

    /// Add an unrelated transfer block (traffic), at `time`.
    pub fn push_noise(&mut self, time: u64, memo: Option<Vec<u8>>) {
        let a = Account::from(Principal::from_slice(&[7; 4]));
        self.blocks.push(Block {
            time,
            from: a,
            to: a,
            spender: None,
            amount: 1,
            fee_sent: None,
            memo,
            created_at_time: Some(time),
        });
    }

    fn check_time(&self, cat: Option<u64>, now: u64) -> Result<(), (bool, u64)> {
        if let Some(t) = cat {
            if t.saturating_add(self.window).saturating_add(self.drift) < now {
                return Err((true, now));
            }
            if t > now.saturating_add(self.drift) {
                return Err((false, now));
            }
        }
        Ok(())
    }

    fn find_duplicate(&self, b: &Block, now: u64) -> Option<u64> {
        b.created_at_time?;
        self.blocks
            .iter()
            .enumerate()
            .rev()
            .take_while(|(_, x)| x.time.saturating_add(self.window + self.drift) >= now)
            .find(|(_, x)| {
                x.from == b.from
                    && x.to == b.to
                    && x.spender == b.spender
                    && x.amount == b.amount
                    && x.fee_sent == b.fee_sent
                    && x.memo == b.memo
                    && x.created_at_time == b.created_at_time
            })
            .map(|(i, _)| i as u64)
    }

    pub fn transfer(
        &mut self,
        caller: Principal,
        a: &TransferArg,
        now: u64,
    ) -> Result<Nat, TransferError> {
        if self.unavailable > 0 {
            self.unavailable -= 1;
            return Err(TransferError::TemporarilyUnavailable);
        }
        let fee_sent = a.fee.as_ref().map(Self::n);
        if fee_sent.is_some_and(|f| f != self.fee) {
            return Err(TransferError::BadFee {
                expected_fee: Nat::from(self.fee),
            });
        }
        match self.check_time(a.created_at_time, now) {
            Err((true, _)) => return Err(TransferError::TooOld),
            Err((false, t)) => return Err(TransferError::CreatedInFuture { ledger_time: t }),
            Ok(()) => {}
        }
        let from = Account {
            owner: caller,
            subaccount: a.from_subaccount,
        };
        let b = Block {
            time: now,
            from,
            to: a.to,
            spender: None,
            amount: Self::n(&a.amount),
            fee_sent,
            memo: a.memo.as_ref().map(|m| m.0.to_vec()),
            created_at_time: a.created_at_time,
        };
        if let Some(d) = self.find_duplicate(&b, now) {
            return Err(TransferError::Duplicate {
                duplicate_of: Nat::from(d),
            });
        }
        let bal = self.balances.get(&from).copied().unwrap_or(0);
        let need = b.amount.saturating_add(self.fee);
        if bal < need {
            return Err(TransferError::InsufficientFunds {
                balance: Nat::from(bal),
            });
        }
        self.balances.insert(from, bal - need);
        *self.balances.entry(b.to).or_insert(0) += b.amount;
        self.blocks.push(b);
        Ok(Nat::from(self.blocks.len() as u64 - 1))
    }

    pub fn transfer_from(
        &mut self,
        caller: Principal,
        a: &TransferFromArgs,
        now: u64,
    ) -> Result<Nat, TransferFromError> {
        if self.unavailable > 0 {
            self.unavailable -= 1;
            return Err(TransferFromError::TemporarilyUnavailable);
        }
        let fee_sent = a.fee.as_ref().map(Self::n);
        if fee_sent.is_some_and(|f| f != self.fee) {
            return Err(TransferFromError::BadFee {
                expected_fee: Nat::from(self.fee),
            });
        }
        match self.check_time(a.created_at_time, now) {
            Err((true, _)) => return Err(TransferFromError::TooOld),
            Err((false, t)) => return Err(TransferFromError::CreatedInFuture { ledger_time: t }),
            Ok(()) => {}
        }
        let spender = Account {
            owner: caller,
            subaccount: a.spender_subaccount,
        };
        let b = Block {
            time: now,
            from: a.from,
            to: a.to,
            spender: Some(spender),
            amount: Self::n(&a.amount),
            fee_sent,
            memo: a.memo.as_ref().map(|m| m.0.to_vec()),
            created_at_time: a.created_at_time,
        };
        if let Some(d) = self.find_duplicate(&b, now) {
            return Err(TransferFromError::Duplicate {
                duplicate_of: Nat::from(d),
            });
        }
        let need = b.amount.saturating_add(self.fee);
        let allowance = self
            .allowances
            .get(&(a.from, spender))
            .copied()
            .unwrap_or(0);
        if allowance < need {
            return Err(TransferFromError::InsufficientAllowance {
                allowance: Nat::from(allowance),
            });
        }
        let bal = self.balances.get(&a.from).copied().unwrap_or(0);
        if bal < need {
            return Err(TransferFromError::InsufficientFunds {
                balance: Nat::from(bal),
            });
        }
        self.allowances.insert((a.from, spender), allowance - need);
        self.balances.insert(a.from, bal - need);
        *self.balances.entry(b.to).or_insert(0) += b.amount;
        self.blocks.push(b);
        Ok(Nat::from(self.blocks.len() as u64 - 1))
    }

    fn account_value(a: &Account) -> ICRC3Value {
        let mut v = vec![ICRC3Value::Blob(ByteBuf::from(a.owner.as_slice().to_vec()))];
        if let Some(s) = a.subaccount {
            v.push(ICRC3Value::Blob(ByteBuf::from(s.to_vec())));
        }
        ICRC3Value::Array(v)
    }

    pub fn block_value(&self, i: usize) -> ICRC3Value {
        let b = &self.blocks[i];
        let mut tx = BTreeMap::new();
        tx.insert("op".to_string(), ICRC3Value::Text("xfer".into()));
        tx.insert("from".to_string(), Self::account_value(&b.from));
        tx.insert("to".to_string(), Self::account_value(&b.to));
        if let Some(s) = &b.spender {
            tx.insert("spender".to_string(), Self::account_value(s));
        }
        tx.insert("amt".to_string(), ICRC3Value::Nat(Nat::from(b.amount)));
        if let Some(f) = b.fee_sent {
            tx.insert("fee".to_string(), ICRC3Value::Nat(Nat::from(f)));
        }
        if let Some(m) = &b.memo {
            tx.insert(
                "memo".to_string(),
                ICRC3Value::Blob(ByteBuf::from(m.clone())),
            );
        }
        if let Some(t) = b.created_at_time {
            tx.insert("ts".to_string(), ICRC3Value::Nat(Nat::from(t)));
        }
        let mut m = BTreeMap::new();
        m.insert("ts".to_string(), ICRC3Value::Nat(Nat::from(b.time)));
        if b.fee_sent.is_none() {
            m.insert("fee".to_string(), ICRC3Value::Nat(Nat::from(self.fee)));
        }
        m.insert("tx".to_string(), ICRC3Value::Map(tx));
        ICRC3Value::Map(m)
    }

    /// The legacy view of block `i`: as the DFINITY ledger, `fee` is the fee as sent or, when
    /// not sent, the fee charged.
    pub fn legacy_transaction(&self, i: usize) -> Transaction {
        let b = &self.blocks[i];
        Transaction::transfer(
            Transfer {
                amount: Nat::from(b.amount),
                from: b.from,
                to: b.to,
                spender: b.spender,
                memo: b.memo.clone().map(|m| Memo(ByteBuf::from(m))),
                fee: Some(Nat::from(b.fee_sent.unwrap_or(self.fee))),
                created_at_time: b.created_at_time,
            },
            b.time,
        )
    }

    fn get_transactions(&self, r: &GetTransactionsRequest) -> GetTransactionsResponse {
        let len = self.blocks.len() as u64;
        let start = r.start.0.to_u64().unwrap_or(u64::MAX).min(len);
        let end = start
            .saturating_add(r.length.0.to_u64().unwrap_or(u64::MAX))
            .min(len)
            .min(start.saturating_add(self.max_blocks_per_response));
        GetTransactionsResponse {
            log_length: Nat::from(len),
            first_index: Nat::from(start),
            transactions: (start..end)
                .map(|i| self.legacy_transaction(i as usize))
                .collect(),
            archived_transactions: vec![],
        }
    }

    fn get_blocks(&self, reqs: &[GetBlocksRequest], from_archive: bool) -> GetBlocksResult {
        let len = self.blocks.len() as u64;
        let mut blocks = vec![];
        let mut archived = vec![];
        for r in reqs {
            let start = r.start.0.to_u64().unwrap_or(u64::MAX);
            let end = start
                .saturating_add(r.length.0.to_u64().unwrap_or(u64::MAX))
                .min(len);
            let mut arch_start = None;
            for i in start..end {
                if i < self.archived_upto && !from_archive {
                    arch_start.get_or_insert(i);
                    continue;
                }
                if from_archive && i >= self.archived_upto {
                    break;
                }
                if blocks.len() as u64 >= self.max_blocks_per_response {
                    break;
                }
                blocks.push(BlockWithId {
                    id: Nat::from(i),
                    block: self.block_value(i as usize),
                });
            }
            if let Some(a) = arch_start {
                let a_end = end.min(self.archived_upto);
                archived.push(ArchivedBlocks {
                    args: vec![GetBlocksRequest {
                        start: Nat::from(a),
                        length: Nat::from(a_end - a),
                    }],
                    callback: QueryArchiveFn::new(self.archive_id, "icrc3_get_blocks"),
                });
            }
        }
        GetBlocksResult {
            log_length: Nat::from(len),
            blocks,
            archived_blocks: archived,
        }
    }

    /// Handle a call to the ledger or its archive. Returns None if the callee is neither.
    pub fn handle(
        &mut self,
        caller: Principal,
        callee: Principal,
        method: &str,
        arg: &[u8],
        now: u64,
    ) -> Option<CallResult> {
        if callee == self.archive_id {
            if self.archive_broken {
                return Some(Err(CallError::Rejected {
                    code: RejectCode::CanisterError,
                    message: "archive out of cycles".into(),
                }));
            }
            let reqs: Vec<GetBlocksRequest> = candid::decode_one(arg).expect("archive arg");
            return Some(Ok(candid::encode_one(self.get_blocks(&reqs, true)).unwrap()));
        }
        if callee != self.id {
            return None;
        }
        Some(match method {
            "icrc1_transfer" => {
                let a: TransferArg = candid::decode_one(arg).expect("TransferArg");
                Ok(candid::encode_one(self.transfer(caller, &a, now)).unwrap())
            }
            "icrc2_transfer_from" => {
                let a: TransferFromArgs = candid::decode_one(arg).expect("TransferFromArgs");
                Ok(candid::encode_one(self.transfer_from(caller, &a, now)).unwrap())
            }
            "icrc3_get_blocks" | "get_transactions" if self.no_block_access => {
                Err(no_method(callee, method))
            }
            "icrc3_get_blocks" if self.legacy_only => Err(no_method(callee, method)),
            "get_transactions" if self.legacy_only => {
                let r: GetTransactionsRequest =
                    candid::decode_one(arg).expect("GetTransactionsRequest");
                Ok(candid::encode_one(self.get_transactions(&r)).unwrap())
            }
            "icrc3_get_blocks" => {
                let reqs: Vec<GetBlocksRequest> =
                    candid::decode_one(arg).expect("GetBlocksRequest");
                Ok(candid::encode_one(self.get_blocks(&reqs, false)).unwrap())
            }
            _ => Err(no_method(callee, method)),
        })
    }

    /// Blocks whose memo decodes to `id`.
    pub fn blocks_for_entry(&self, id: u64) -> Vec<u64> {
        self.blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.memo.as_deref().and_then(crate::memo::decode) == Some(id))
            .map(|(i, _)| i as u64)
            .collect()
    }
}

/// How the IC answers a call to a method the canister does not export (error code 536
/// `CanisterMethodNotFound` → reject code CANISTER_ERROR, rs/types/error_types/src/lib.rs).
fn no_method(callee: Principal, method: &str) -> CallError {
    CallError::Rejected {
        code: RejectCode::CanisterError,
        message: format!("Error from Canister {callee}: Canister has no update method '{method}'"),
    }
}
