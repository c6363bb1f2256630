//! Internal balances in stable memory: principal → u128, plus their running total (so the
//! `metrics` query is O(1), I6). Checked arithmetic only; zero balances are removed.

use candid::Principal;
use ic_stable_structures::{Memory, StableBTreeMap, StableCell};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BalanceError {
    /// The balance does not cover the debit.
    Insufficient { balance: u128, required: u128 },
    /// A credit would overflow u128.
    Overflow,
}

impl std::fmt::Display for BalanceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BalanceError::Insufficient { balance, required } => {
                write!(f, "insufficient balance: {balance} < {required}")
            }
            BalanceError::Overflow => write!(f, "balance overflow"),
        }
    }
}

pub struct Balances<M: Memory> {
    map: StableBTreeMap<Principal, u128, M>,
    total: StableCell<u128, M>,
}

impl<M: Memory> Balances<M> {
    /// Create or load (existing memories keep their contents).
    pub fn init(map_memory: M, total_memory: M) -> Self {
        Balances {
            map: StableBTreeMap::init(map_memory),
            total: StableCell::init(total_memory, 0u128),
        }
    }

    pub fn get(&self, who: &Principal) -> u128 {
        self.map.get(who).unwrap_or(0)
    }

    /// Sum of all balances.
    pub fn total(&self) -> u128 {
        *self.total.get()
    }

    /// Accounts with a non-zero balance.
    pub fn accounts(&self) -> u64 {
        self.map.len()
    }

    /// Adds `amount`; returns the new balance. Nothing changes on error.
    pub fn credit(&mut self, who: Principal, amount: u128) -> Result<u128, BalanceError> {
        let new = self
            .get(&who)
            .checked_add(amount)
            .ok_or(BalanceError::Overflow)?;
        let total = self
            .total()
            .checked_add(amount)
            .ok_or(BalanceError::Overflow)?;
        self.store(who, new);
        self.total.set(total);
        Ok(new)
    }

    /// Subtracts `amount`; returns the new balance. Nothing changes on error.
    pub fn debit(&mut self, who: Principal, amount: u128) -> Result<u128, BalanceError> {
        let balance = self.get(&who);
        let new = balance
            .checked_sub(amount)
            .ok_or(BalanceError::Insufficient {
                balance,
                required: amount,
            })?;
        // total >= every balance, so this cannot underflow; saturate anyway (never trap).
        let total = self.total().saturating_sub(amount);
        self.store(who, new);
        self.total.set(total);
        Ok(new)
    }

    fn store(&mut self, who: Principal, balance: u128) {
        if balance == 0 {
            self.map.remove(&who);
        } else {
            self.map.insert(who, balance);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_stable_structures::VectorMemory;

    fn p(n: u8) -> Principal {
        Principal::from_slice(&[n, 1, 2])
    }

    fn book() -> (Balances<VectorMemory>, VectorMemory, VectorMemory) {
        let (a, b) = (VectorMemory::default(), VectorMemory::default());
        (Balances::init(a.clone(), b.clone()), a, b)
    }

    #[test]
    fn credit_debit_and_total() {
        let (mut b, _, _) = book();
        assert_eq!(b.get(&p(1)), 0);
        assert_eq!(b.credit(p(1), 100), Ok(100));
        assert_eq!(b.credit(p(2), 50), Ok(50));
        assert_eq!(b.debit(p(1), 30), Ok(70));
        assert_eq!(b.total(), 120);
        assert_eq!(b.accounts(), 2);
        assert_eq!(b.debit(p(2), 50), Ok(0));
        assert_eq!(b.accounts(), 1, "zero balances are removed");
        assert_eq!(b.total(), 70);
    }

    #[test]
    fn insufficient_and_overflow_change_nothing() {
        let (mut b, _, _) = book();
        b.credit(p(1), 10).unwrap();
        assert_eq!(
            b.debit(p(1), 11),
            Err(BalanceError::Insufficient {
                balance: 10,
                required: 11
            })
        );
        assert_eq!(
            b.debit(p(3), 1).unwrap_err().to_string(),
            "insufficient balance: 0 < 1"
        );
        assert_eq!(b.credit(p(1), u128::MAX), Err(BalanceError::Overflow));
        // Overflow of the total alone (another account) is refused too.
        assert_eq!(b.credit(p(2), u128::MAX), Err(BalanceError::Overflow));
        assert_eq!((b.get(&p(1)), b.get(&p(2)), b.total()), (10, 0, 10));
    }

    #[test]
    fn survives_reload_from_the_same_memories() {
        let (mut b, m1, m2) = book();
        b.credit(p(1), 7).unwrap();
        b.credit(p(2), 5).unwrap();
        let b2 = Balances::init(m1, m2);
        assert_eq!((b2.get(&p(1)), b2.get(&p(2)), b2.total()), (7, 5, 12));
    }
}
