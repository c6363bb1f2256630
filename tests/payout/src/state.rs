//! The state basket: everything the canister keeps, behind `read_state` / `mutate_state`.
//!
//! Stable memory layout (one `MemoryManager`; `MemoryId`s are never reused):
//!
//! | MemoryId | what                                  | structure                        |
//! |----------|---------------------------------------|----------------------------------|
//! | 0        | settings (ledger, admins, fee, engine overrides) | `StableCell<Settings>` (Candid) |
//! | 1        | internal balances                     | `StableBTreeMap<Principal, u128>` |
//! | 2        | sum of internal balances              | `StableCell<u128>`               |
//! | 3 ..= 15 | reserved for this canister            |                                  |
//! | 16 ..= 31| the icjournal engine (`Memories::from_manager(&mm, 16)`) | see engine `storage.rs` |
//!
//! `pre_upgrade` saves nothing (it only refuses an unstopped upgrade): every byte that must
//! survive an upgrade is already in stable memory; `post_upgrade` re-opens the same structures.

use crate::balances::{BalanceError, Balances};
use crate::payout::{self, BalanceOp};
use crate::types::*;
use candid::{Decode, Encode, Principal};
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::storable::Bound;
use ic_stable_structures::{DefaultMemoryImpl, Memory, StableCell, Storable};
use icjournal::{IcRuntime, Journal, Memories, RESERVED_MEMORY_IDS};
use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

pub type Mem = VirtualMemory<DefaultMemoryImpl>;
pub type PayoutJournal = Journal<IcRuntime, Mem>;

const SETTINGS_MEMORY: MemoryId = MemoryId::new(0);
const BALANCES_MEMORY: MemoryId = MemoryId::new(1);
const BALANCES_TOTAL_MEMORY: MemoryId = MemoryId::new(2);
/// First `MemoryId` handed to the engine; it reserves `RESERVED_MEMORY_IDS` ids from here.
pub const JOURNAL_FIRST_MEMORY_ID: u8 = 16;
const _: () = assert!(
    JOURNAL_FIRST_MEMORY_ID > 2
        && JOURNAL_FIRST_MEMORY_ID as u16 + RESERVED_MEMORY_IDS as u16 <= 255
);

/// Bounds on the init/upgrade arguments.
pub const MAX_ADMINS: usize = 32;
pub const MAX_INITIAL_BALANCES: usize = 10_000;

pub struct State {
    /// Stable (MemoryId 0).
    pub settings: StableCell<Settings, Mem>,
    /// Stable (MemoryIds 1, 2).
    pub balances: Balances<Mem>,
    /// Data stable (MemoryIds 16..=31, reserved for the engine); the handle itself (registered handlers, timer chain) is
    /// heap and rebuilt by `post_upgrade`. Cheap to clone: see `journal()`.
    pub journal: PayoutJournal,
}

thread_local! {
    /// Heap handle over the whole stable memory; re-created after an upgrade, reading the
    /// layout back from stable memory (the data it manages is stable).
    static MEMORY_MANAGER: MemoryManager<DefaultMemoryImpl> =
        MemoryManager::init(DefaultMemoryImpl::default());

    /// Heap; reset to `None` by an upgrade and re-opened by `post_upgrade`. Every field inside
    /// is a handle over stable memory, so nothing is lost.
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

pub fn read_state<T>(f: impl FnOnce(&State) -> T) -> T {
    STATE.with_borrow(|s| f(s.as_ref().expect("state not initialized")))
}

pub fn mutate_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    STATE.with_borrow_mut(|s| f(s.as_mut().expect("state not initialized")))
}

/// A handle to the journal, to be used OUTSIDE `read_state`/`mutate_state`: flows run the
/// local-step handlers, which mutate the state themselves.
pub fn journal() -> PayoutJournal {
    read_state(|s| s.journal.clone())
}

impl Storable for Settings {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(Encode!(self).expect("encode Settings"))
    }
    fn into_bytes(self) -> Vec<u8> {
        Encode!(&self).expect("encode Settings")
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        Decode!(&bytes, Settings).expect("decode Settings")
    }
    const BOUND: Bound = Bound::Unbounded;
}

fn check_admins(admins: &[Principal]) -> Result<(), String> {
    if admins.len() > MAX_ADMINS {
        return Err(format!("at most {MAX_ADMINS} admins"));
    }
    if admins.contains(&Principal::anonymous()) {
        return Err("the anonymous principal cannot be an admin".into());
    }
    Ok(())
}

fn check_fee(fee: &Option<candid::Nat>) -> Result<(), String> {
    match fee {
        Some(f) => nat_to_u128("ledger_fee", f)
            .map(|_| ())
            .map_err(|e| format!("{e:?}")),
        None => Ok(()),
    }
}

/// Settings from the init argument (validated, including the engine config).
pub fn settings_from_init(arg: &InitArg) -> Result<Settings, String> {
    if arg.ledger == Principal::anonymous() {
        return Err("ledger must be a canister id".into());
    }
    check_admins(&arg.admins)?;
    check_fee(&arg.ledger_fee)?;
    if arg.initial_balances.len() > MAX_INITIAL_BALANCES {
        return Err(format!("at most {MAX_INITIAL_BALANCES} initial balances"));
    }
    let engine = arg.engine.clone().unwrap_or_default();
    engine.to_config()?;
    Ok(Settings {
        ledger: arg.ledger,
        admins: arg.admins.clone(),
        ledger_fee: arg.ledger_fee.clone(),
        engine,
    })
}

/// Settings after an upgrade argument (validated).
pub fn settings_after_upgrade(old: &Settings, arg: &UpgradeArg) -> Result<Settings, String> {
    let mut s = old.clone();
    if let Some(admins) = &arg.admins {
        check_admins(admins)?;
        s.admins = admins.clone();
    }
    if arg.ledger_fee.is_some() {
        check_fee(&arg.ledger_fee)?;
        s.ledger_fee = arg.ledger_fee.clone();
    }
    if let Some(e) = &arg.engine {
        s.engine = s.engine.merge(e);
    }
    s.engine.to_config()?;
    Ok(s)
}

fn apply_balance(op: BalanceOp, who: Principal, amount: u128) -> Result<u128, BalanceError> {
    mutate_state(|s| match op {
        BalanceOp::Debit => s.balances.debit(who, amount),
        BalanceOp::Credit => s.balances.credit(who, amount),
    })
}

/// Open every structure (create or load), the engine included, and register the saga's
/// handlers. The caller starts the recovery timer (`journal().start_recovery_timer()`).
fn open(settings: Settings, mm: &MemoryManager<DefaultMemoryImpl>) -> Result<(), String> {
    let config = settings.engine.to_config()?;
    let mut cell = StableCell::init(mm.get(SETTINGS_MEMORY), settings.clone());
    cell.set(settings);
    let balances = Balances::init(mm.get(BALANCES_MEMORY), mm.get(BALANCES_TOTAL_MEMORY));
    let journal = Journal::open(
        IcRuntime,
        Memories::from_manager(mm, JOURNAL_FIRST_MEMORY_ID),
        config,
    )
    .map_err(|e| format!("icjournal: {e}"))?;
    payout::register_handlers(&journal, Rc::new(apply_balance));
    STATE.set(Some(State {
        settings: cell,
        balances,
        journal,
    }));
    Ok(())
}

/// `init`: fresh state from the init argument.
pub fn init(arg: InitArg) -> Result<(), String> {
    let settings = settings_from_init(&arg)?;
    MEMORY_MANAGER.with(|mm| open(settings, mm))?;
    mutate_state(|s| {
        for (who, amount) in &arg.initial_balances {
            let amount = nat_to_u128("initial balance", amount).map_err(|e| format!("{e:?}"))?;
            s.balances
                .credit(*who, amount)
                .map_err(|e| format!("initial balance of {who}: {e}"))?;
        }
        Ok(())
    })
}

/// `post_upgrade`: re-open what is in stable memory; apply the optional upgrade argument.
/// Errors (no settings, corrupt journal layout, invalid argument) must trap: a failed upgrade keeps the old module and data, starting over would lose them.
pub fn post_upgrade(arg: Option<UpgradeArg>) -> Result<(), String> {
    MEMORY_MANAGER.with(|mm| {
        let mem = mm.get(SETTINGS_MEMORY);
        if mem.size() == 0 {
            return Err("no settings in stable memory: not a payout canister".into());
        }
        let stored = StableCell::init(mem, placeholder_settings()).get().clone();
        let settings = match &arg {
            Some(a) => settings_after_upgrade(&stored, a)?,
            None => stored,
        };
        open(settings, mm)
    })
}

/// Only used as the `default` of `StableCell::init` on a memory known to hold a cell.
fn placeholder_settings() -> Settings {
    Settings {
        ledger: Principal::anonymous(),
        admins: vec![],
        ledger_fee: None,
        engine: EngineConfig::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candid::Nat;

    fn ledger() -> Principal {
        Principal::from_slice(&[0x11; 10])
    }
    fn user(n: u8) -> Principal {
        Principal::from_slice(&[n, 7, 7])
    }

    fn init_arg() -> InitArg {
        InitArg {
            ledger: ledger(),
            admins: vec![user(9)],
            ledger_fee: Some(Nat::from(10u8)),
            initial_balances: vec![(user(1), Nat::from(1_000u32)), (user(2), Nat::from(5u8))],
            engine: Some(EngineConfig {
                recovery_interval_ns: Some(1_000_000_000),
                max_attempts: Some(3),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn init_then_upgrade_keeps_balances_and_settings() {
        init(init_arg()).unwrap();
        assert_eq!(read_state(|s| s.balances.get(&user(1))), 1_000);
        assert_eq!(read_state(|s| s.balances.total()), 1_005);
        let cfg = journal().config();
        assert_eq!(
            (cfg.recovery_interval_ns, cfg.max_attempts),
            (1_000_000_000, 3)
        );

        // An upgrade drops the heap; stable memory (the thread-local manager's memory) stays.
        STATE.set(None);
        post_upgrade(Some(UpgradeArg {
            admins: Some(vec![user(8)]),
            ledger_fee: None,
            engine: Some(EngineConfig {
                max_attempts: Some(5),
                ..Default::default()
            }),
        }))
        .unwrap();
        assert_eq!(read_state(|s| s.balances.get(&user(1))), 1_000);
        let settings = read_state(|s| s.settings.get().clone());
        assert_eq!(settings.admins, vec![user(8)]);
        assert_eq!(settings.ledger_fee, Some(Nat::from(10u8)));
        let cfg = journal().config();
        assert_eq!(
            (cfg.recovery_interval_ns, cfg.max_attempts),
            (1_000_000_000, 5)
        );

        // Upgrade without argument keeps everything.
        STATE.set(None);
        post_upgrade(None).unwrap();
        assert_eq!(read_state(|s| s.settings.get().clone()), settings);
    }

    #[test]
    fn post_upgrade_without_state_fails() {
        // Fresh thread = fresh (empty) stable memory.
        assert!(post_upgrade(None).unwrap_err().contains("no settings"));
    }

    #[test]
    fn invalid_init_args_are_refused() {
        let mut a = init_arg();
        a.admins.push(Principal::anonymous());
        assert!(settings_from_init(&a).is_err());
        let mut a = init_arg();
        a.ledger = Principal::anonymous();
        assert!(settings_from_init(&a).is_err());
        let mut a = init_arg();
        a.engine = Some(EngineConfig {
            max_attempts: Some(0),
            ..Default::default()
        });
        assert!(settings_from_init(&a).unwrap_err().contains("max_attempts"));
        let mut a = init_arg();
        a.ledger_fee = Some(Nat::from(u128::MAX) + Nat::from(1u8));
        assert!(settings_from_init(&a).is_err());
        let mut a = init_arg();
        a.admins = (0..=MAX_ADMINS as u8).map(user).collect();
        assert!(settings_from_init(&a).is_err());
        let s = settings_from_init(&init_arg()).unwrap();
        assert!(settings_after_upgrade(
            &s,
            &UpgradeArg {
                engine: Some(EngineConfig {
                    recovery_interval_ns: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            }
        )
        .is_err());
    }

    #[test]
    fn engine_overrides_apply_over_defaults() {
        let c = EngineConfig {
            call_timeout_secs: Some(0),
            backoff_base_ns: Some(7_200_000_000_000),
            ..Default::default()
        }
        .to_config()
        .unwrap();
        assert_eq!(c.call_timeout_secs, None, "0 = unbounded wait");
        assert!(c.backoff_max_ns >= c.backoff_base_ns);
        assert_eq!(c.commit_method, crate::COMMIT_METHOD);
        let merged = EngineConfig {
            max_attempts: Some(2),
            recovery_batch: Some(4),
            ..Default::default()
        }
        .merge(&EngineConfig {
            max_attempts: Some(9),
            ..Default::default()
        });
        assert_eq!(
            (merged.max_attempts, merged.recovery_batch),
            (Some(9), Some(4))
        );
    }
}
