//! ICRC-3 block representation: the internal block/transaction model, its encoding as an
//! ICRC-3 `Value` map (the schema the DFINITY ICRC ledger emits), the legacy
//! `get_transactions` representation, and the representation-independent hash.

use candid::{CandidType, Deserialize, Nat};
use icrc_ledger_types::icrc::generic_value::ICRC3Value;
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::Memo;
use icrc_ledger_types::icrc3::transactions as legacy;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub type Hash = [u8; 32];

/// The representation-independent hash of an ICRC-3 value
/// (ICRC-3 "Value" section: Nat as LEB128, Int as SLEB128, Blob as is, Text as UTF-8, Array as
/// the hash of the concatenated element hashes, Map as the hash of the sorted concatenated
/// (key hash, value hash) pairs).
pub fn hash_value(v: &ICRC3Value) -> Hash {
    match v {
        ICRC3Value::Nat(n) => {
            let mut buf = Vec::new();
            n.encode(&mut buf)
                .expect("LEB128 encoding into a Vec cannot fail");
            Sha256::digest(&buf).into()
        }
        ICRC3Value::Int(i) => {
            let mut buf = Vec::new();
            i.encode(&mut buf)
                .expect("SLEB128 encoding into a Vec cannot fail");
            Sha256::digest(&buf).into()
        }
        ICRC3Value::Blob(b) => Sha256::digest(b).into(),
        ICRC3Value::Text(t) => Sha256::digest(t.as_bytes()).into(),
        ICRC3Value::Array(items) => {
            let mut h = Sha256::new();
            for item in items {
                h.update(hash_value(item));
            }
            h.finalize().into()
        }
        ICRC3Value::Map(m) => {
            let mut pairs: Vec<(Hash, Hash)> = m
                .iter()
                .map(|(k, v)| (Sha256::digest(k.as_bytes()).into(), hash_value(v)))
                .collect();
            pairs.sort_unstable();
            let mut h = Sha256::new();
            for (k, v) in pairs {
                h.update(k);
                h.update(v);
            }
            h.finalize().into()
        }
    }
}

/// A ledger operation, with the accounts exactly as the caller gave them (a `None` subaccount
/// and `Some([0; 32])` are different encodings of the same account, and different transactions).
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Mint {
        to: Account,
        amount: u128,
    },
    Burn {
        from: Account,
        spender: Option<Account>,
        amount: u128,
    },
    Transfer {
        from: Account,
        to: Account,
        spender: Option<Account>,
        amount: u128,
        /// The fee as the caller sent it (`None` when the caller left it out).
        fee: Option<u128>,
    },
    Approve {
        from: Account,
        spender: Account,
        amount: u128,
        expected_allowance: Option<u128>,
        expires_at: Option<u64>,
        fee: Option<u128>,
    },
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Tx {
    pub op: Op,
    pub created_at_time: Option<u64>,
    pub memo: Option<ByteBuf>,
}

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub parent_hash: Option<ByteBuf>,
    /// Ledger time when the block was created.
    pub timestamp: u64,
    /// The fee the ledger charged, recorded at the top level only when the transaction did not
    /// carry a fee (as the DFINITY ledger does).
    pub effective_fee: Option<u128>,
    pub tx: Tx,
}

pub fn account_value(a: &Account) -> ICRC3Value {
    let mut parts = vec![ICRC3Value::Blob(ByteBuf::from(a.owner.as_slice().to_vec()))];
    if let Some(s) = a.subaccount {
        parts.push(ICRC3Value::Blob(ByteBuf::from(s.to_vec())));
    }
    ICRC3Value::Array(parts)
}

fn nat(n: u128) -> ICRC3Value {
    ICRC3Value::Nat(Nat::from(n))
}

fn nat64(n: u64) -> ICRC3Value {
    ICRC3Value::Nat(Nat::from(n))
}

fn text(s: &str) -> ICRC3Value {
    ICRC3Value::Text(s.to_string())
}

impl Tx {
    /// The `"tx"` map of the block.
    pub fn to_value(&self) -> ICRC3Value {
        let mut m = BTreeMap::new();
        match &self.op {
            Op::Mint { to, amount } => {
                m.insert("op".into(), text("mint"));
                m.insert("to".into(), account_value(to));
                m.insert("amt".into(), nat(*amount));
            }
            Op::Burn {
                from,
                spender,
                amount,
            } => {
                m.insert("op".into(), text("burn"));
                m.insert("from".into(), account_value(from));
                if let Some(s) = spender {
                    m.insert("spender".into(), account_value(s));
                }
                m.insert("amt".into(), nat(*amount));
            }
            Op::Transfer {
                from,
                to,
                spender,
                amount,
                fee,
            } => {
                m.insert("op".into(), text("xfer"));
                m.insert("from".into(), account_value(from));
                m.insert("to".into(), account_value(to));
                if let Some(s) = spender {
                    m.insert("spender".into(), account_value(s));
                }
                m.insert("amt".into(), nat(*amount));
                if let Some(f) = fee {
                    m.insert("fee".into(), nat(*f));
                }
            }
            Op::Approve {
                from,
                spender,
                amount,
                expected_allowance,
                expires_at,
                fee,
            } => {
                m.insert("op".into(), text("approve"));
                m.insert("from".into(), account_value(from));
                m.insert("spender".into(), account_value(spender));
                m.insert("amt".into(), nat(*amount));
                if let Some(e) = expected_allowance {
                    m.insert("expected_allowance".into(), nat(*e));
                }
                if let Some(e) = expires_at {
                    m.insert("expires_at".into(), nat64(*e));
                }
                if let Some(f) = fee {
                    m.insert("fee".into(), nat(*f));
                }
            }
        }
        if let Some(t) = self.created_at_time {
            m.insert("ts".into(), nat64(t));
        }
        if let Some(memo) = &self.memo {
            m.insert("memo".into(), ICRC3Value::Blob(memo.clone()));
        }
        ICRC3Value::Map(m)
    }

    /// The transaction's identity for deduplication: the hash of its `"tx"` map, so every field
    /// as sent (including whether `fee` was given and how each subaccount was encoded) counts.
    pub fn hash(&self) -> Hash {
        hash_value(&self.to_value())
    }
}

impl Block {
    pub fn to_value(&self) -> ICRC3Value {
        let mut m = BTreeMap::new();
        if let Some(p) = &self.parent_hash {
            m.insert("phash".into(), ICRC3Value::Blob(p.clone()));
        }
        m.insert("ts".into(), nat64(self.timestamp));
        if let Some(f) = self.effective_fee {
            m.insert("fee".into(), nat(f));
        }
        m.insert("tx".into(), self.tx.to_value());
        ICRC3Value::Map(m)
    }

    pub fn hash(&self) -> Hash {
        hash_value(&self.to_value())
    }

    /// The legacy (`get_transactions`) view of the block. As in the DFINITY ledger, the legacy
    /// `fee` of transfers and approvals is the fee as sent or, when not sent, the fee charged.
    pub fn to_transaction(&self) -> legacy::Transaction {
        let created_at_time = self.tx.created_at_time;
        let memo = self.tx.memo.clone().map(Memo);
        let ts = self.timestamp;
        match &self.tx.op {
            Op::Mint { to, amount } => legacy::Transaction::mint(
                legacy::Mint {
                    amount: Nat::from(*amount),
                    to: *to,
                    memo,
                    created_at_time,
                    fee: None,
                },
                ts,
            ),
            Op::Burn {
                from,
                spender,
                amount,
            } => legacy::Transaction::burn(
                legacy::Burn {
                    amount: Nat::from(*amount),
                    from: *from,
                    spender: *spender,
                    memo,
                    created_at_time,
                    fee: None,
                },
                ts,
            ),
            Op::Transfer {
                from,
                to,
                spender,
                amount,
                fee,
            } => legacy::Transaction::transfer(
                legacy::Transfer {
                    amount: Nat::from(*amount),
                    from: *from,
                    to: *to,
                    spender: *spender,
                    memo,
                    fee: fee.or(self.effective_fee).map(Nat::from),
                    created_at_time,
                },
                ts,
            ),
            Op::Approve {
                from,
                spender,
                amount,
                expected_allowance,
                expires_at,
                fee,
            } => legacy::Transaction::approve(
                legacy::Approve {
                    from: *from,
                    spender: *spender,
                    amount: Nat::from(*amount),
                    expected_allowance: expected_allowance.map(Nat::from),
                    expires_at: *expires_at,
                    memo,
                    fee: fee.or(self.effective_fee).map(Nat::from),
                    created_at_time,
                },
                ts,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candid::{Int, Principal};

    fn vectors() -> Vec<(ICRC3Value, &'static str)> {
        let blob = |h: &[u8]| ICRC3Value::Blob(ByteBuf::from(h.to_vec()));
        vec![
            (
                ICRC3Value::Nat(Nat::from(42u32)),
                "684888c0ebb17f374298b65ee2807526c066094c701bcc7ebbe1c1095f494fc1",
            ),
            (
                ICRC3Value::Int(Int::from(-42)),
                "de5a6f78116eca62d7fc5ce159d23ae6b889b365a1739ad2cf36f925a140d0cc",
            ),
            (
                text("Hello, World!"),
                "dffd6021bb2bd5b0af676290809ec3a53191dd81c7f70a4b28688a362182986f",
            ),
            (
                blob(&[1, 2, 3, 4]),
                "9f64a747e1b97f131fabb6b447296c9b6f0201e79fb3c5356e6c77e89b6a806a",
            ),
            (
                ICRC3Value::Array(vec![
                    ICRC3Value::Nat(Nat::from(3u32)),
                    text("foo"),
                    blob(&[5, 6]),
                ]),
                "514a04011caa503990d446b7dec5d79e19c221ae607fb08b2848c67734d468d6",
            ),
        ]
    }

    fn hex(h: &[u8]) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hash_matches_icrc3_test_vectors() {
        for (v, expected) in vectors() {
            assert_eq!(hex(&hash_value(&v)), expected, "{v:?}");
        }
    }

    fn acc(n: u8, sub: Option<[u8; 32]>) -> Account {
        Account {
            owner: Principal::from_slice(&[n; 10]),
            subaccount: sub,
        }
    }

    fn sample_blocks() -> Vec<Block> {
        let memo = Some(ByteBuf::from(vec![7u8; 32]));
        vec![
            Block {
                parent_hash: None,
                timestamp: 5,
                effective_fee: None,
                tx: Tx {
                    op: Op::Mint {
                        to: acc(1, None),
                        amount: 1_000_000,
                    },
                    created_at_time: None,
                    memo: None,
                },
            },
            Block {
                parent_hash: Some(ByteBuf::from(vec![1u8; 32])),
                timestamp: 6,
                effective_fee: Some(10),
                tx: Tx {
                    op: Op::Transfer {
                        from: acc(1, Some([0; 32])),
                        to: acc(2, Some([3; 32])),
                        spender: Some(acc(3, None)),
                        amount: 77,
                        fee: None,
                    },
                    created_at_time: Some(4),
                    memo: memo.clone(),
                },
            },
            Block {
                parent_hash: Some(ByteBuf::from(vec![2u8; 32])),
                timestamp: 7,
                effective_fee: None,
                tx: Tx {
                    op: Op::Approve {
                        from: acc(1, None),
                        spender: acc(2, None),
                        amount: 5,
                        expected_allowance: Some(0),
                        expires_at: Some(99),
                        fee: Some(10),
                    },
                    created_at_time: Some(6),
                    memo: memo.clone(),
                },
            },
            Block {
                parent_hash: Some(ByteBuf::from(vec![3u8; 32])),
                timestamp: 8,
                effective_fee: None,
                tx: Tx {
                    op: Op::Burn {
                        from: acc(2, None),
                        spender: None,
                        amount: 50,
                    },
                    created_at_time: None,
                    memo,
                },
            },
        ]
    }

    /// Our hash agrees with the reference implementation in icrc-ledger-types on real blocks.
    #[test]
    fn block_hash_matches_reference_implementation() {
        for b in sample_blocks() {
            assert_eq!(b.hash(), b.to_value().hash(), "{b:?}");
        }
    }

    /// Blocks satisfy the ICRC-1/ICRC-2 block schema validator shipped in icrc-ledger-types.
    #[test]
    fn blocks_validate_against_icrc3_schema() {
        use icrc_ledger_types::icrc::generic_value::Value;
        for b in sample_blocks() {
            let v = Value::from(b.to_value());
            icrc_ledger_types::icrc3::schema::validate(&v)
                .unwrap_or_else(|e| panic!("block {b:?} invalid: {e:?}"));
        }
    }

    #[test]
    fn transfer_block_fields() {
        let b = &sample_blocks()[1];
        let ICRC3Value::Map(m) = b.to_value() else {
            panic!()
        };
        assert_eq!(m["ts"], nat64(6));
        assert_eq!(m["fee"], nat(10));
        assert_eq!(m["phash"], ICRC3Value::Blob(ByteBuf::from(vec![1u8; 32])));
        let ICRC3Value::Map(tx) = &m["tx"] else {
            panic!()
        };
        assert_eq!(tx["op"], text("xfer"));
        assert_eq!(tx["amt"], nat(77));
        assert_eq!(tx["ts"], nat64(4));
        assert!(!tx.contains_key("fee"));
        assert_eq!(tx["memo"], ICRC3Value::Blob(ByteBuf::from(vec![7u8; 32])));
        // Accounts as given: an explicit default subaccount stays explicit.
        assert_eq!(
            tx["from"],
            ICRC3Value::Array(vec![
                ICRC3Value::Blob(ByteBuf::from(vec![1u8; 10])),
                ICRC3Value::Blob(ByteBuf::from(vec![0u8; 32])),
            ])
        );
        assert_eq!(
            tx["spender"],
            ICRC3Value::Array(vec![ICRC3Value::Blob(ByteBuf::from(vec![3u8; 10]))])
        );
        // Legacy view fills in the charged fee.
        let t = b.to_transaction();
        assert_eq!(t.kind, "transfer");
        assert_eq!(t.timestamp, 6);
        let x = t.transfer.unwrap();
        assert_eq!(x.fee, Some(Nat::from(10u32)));
        assert_eq!(x.created_at_time, Some(4));
    }

    #[test]
    fn tx_identity_distinguishes_fee_and_subaccount_encoding() {
        let base = Tx {
            op: Op::Transfer {
                from: acc(1, None),
                to: acc(2, None),
                spender: None,
                amount: 1,
                fee: None,
            },
            created_at_time: Some(1),
            memo: None,
        };
        let mut with_fee = base.clone();
        if let Op::Transfer { fee, .. } = &mut with_fee.op {
            *fee = Some(10);
        }
        let mut explicit_sub = base.clone();
        if let Op::Transfer { to, .. } = &mut explicit_sub.op {
            to.subaccount = Some([0; 32]);
        }
        assert_ne!(base.hash(), with_fee.hash());
        assert_ne!(base.hash(), explicit_sub.hash());
        assert_eq!(base.hash(), base.clone().hash());
    }
}
