//! Service configuration: defaults, validation, and the engine `Config` derived from it.

use candid::Principal;
use icjournal::config::LedgerParams;
use icjournal::Config;
use icjournal_client::{Fees, LedgerConfig, ServiceConfig, ServiceError};
use std::collections::BTreeSet;

const SECOND: u64 = 1_000_000_000;
const DAY: u64 = 24 * 3600 * SECOND;

/// Max admins in the config.
pub const MAX_ADMINS: usize = 32;
/// Max principals exempt from fees.
pub const MAX_FEE_EXEMPT: usize = 256;
/// Max ledgers in the config.
pub const MAX_LEDGERS: usize = 32;
/// Max bytes of a caller's lock key (the service namespaces it: `<caller>/<key>`).
pub const MAX_LOCK_KEY_BYTES: usize = 64;
/// Max bytes of a record label.
pub const MAX_LABEL_BYTES: usize = 64;
/// Max bytes of an operator reason (admin verbs, config changes, pause/resume).
pub const MAX_REASON_BYTES: usize = 1024;
/// Upper bound of `max_payload_bytes` (keeps every argument far below `MAX_ARG_BYTES`).
pub const MAX_PAYLOAD_LIMIT: u32 = 32 * 1024;
/// Max encoded argument of any method (checked before decoding, and in inspect_message).
pub const MAX_ARG_BYTES: usize = 64 * 1024;
/// Max page size of list endpoints.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Longest principal text (63 chars) + '/': room the namespace takes in an engine lock key.
const LOCK_NAMESPACE_BYTES: u32 = 64;

/// Longest `summary_retention_ns`: 100 years, longer than any canister is expected to live, so
/// a larger value can only be a mistake (such as a sentinel meant as "forever"; the service
/// has no forever, since null already means the engine's default).
pub const MAX_SUMMARY_RETENTION_NS: u64 = 36_500 * DAY;

/// Default fees, in cycles, from the cost model (docs/cost-model.md): what the service spends
/// on a 13-node subnet per entry — messages (5M each), instructions, inter-canister calls
/// (260k + 1k per byte each way) — with room for recovery (resends, block lookups).
pub const DEFAULT_FEES: Fees = Fees {
    record_cycles: 10_000_000,
    tracked_transfer_cycles: 200_000_000,
    transfer_cycles: 100_000_000,
};

/// Default stable memory budget of the journal: 4 GiB (raise it for a canister given more).
pub const DEFAULT_STABLE_MEMORY_LIMIT: u64 = 4 << 30;
/// Default room kept for recovery and operators once new work is refused: 256 MiB.
pub const DEFAULT_NEW_WORK_HEADROOM: u64 = 256 << 20;

/// Defaults: no admins (controllers only), no ledgers, 30 s recovery period, fees charged to
/// every caller (none exempt).
pub fn default_config() -> ServiceConfig {
    let e = Config::default();
    ServiceConfig {
        admins: vec![],
        ledgers: vec![],
        recovery_interval_ns: e.recovery_interval_ns,
        recovery_batch_size: e.recovery_batch,
        max_attempts: e.max_attempts,
        max_unresolved_per_caller: e.max_unresolved_per_owner,
        max_unresolved_bytes_per_caller: e.max_unresolved_bytes_per_owner,
        max_in_flight_per_caller: 50,
        max_in_flight_total: 500,
        max_payload_bytes: e.max_payload_bytes,
        approvals_required: e.approvals_required,
        retention_ns: None,
        summary_retention_ns: None,
        max_entries_per_caller: 100_000,
        max_bytes_per_caller: 64 << 20,
        stable_memory_limit_bytes: DEFAULT_STABLE_MEMORY_LIMIT,
        new_work_headroom_bytes: DEFAULT_NEW_WORK_HEADROOM,
        fees: DEFAULT_FEES,
        fee_exempt: vec![],
    }
}

fn invalid(message: impl Into<String>) -> Result<(), ServiceError> {
    Err(ServiceError::InvalidConfig {
        message: message.into(),
    })
}

/// Check a configuration before it is used (init, post_upgrade, set_config).
pub fn validate(c: &ServiceConfig) -> Result<(), ServiceError> {
    if c.admins.len() > MAX_ADMINS {
        return invalid(format!("admins: at most {MAX_ADMINS}"));
    }
    let mut seen = BTreeSet::new();
    for a in &c.admins {
        if *a == Principal::anonymous() {
            return invalid("admins: the anonymous principal cannot be an admin");
        }
        if !seen.insert(*a) {
            return invalid(format!("admins: duplicate {a}"));
        }
    }
    if c.ledgers.len() > MAX_LEDGERS {
        return invalid(format!("ledgers: at most {MAX_LEDGERS}"));
    }
    let mut seen = BTreeSet::new();
    for l in &c.ledgers {
        if l.ledger == Principal::anonymous() || l.ledger == Principal::management_canister() {
            return invalid(format!("ledgers: {} is not a canister", l.ledger));
        }
        if !seen.insert(l.ledger) {
            return invalid(format!("ledgers: duplicate {}", l.ledger));
        }
        if l.tx_window_ns < 60 * SECOND || l.tx_window_ns > 30 * DAY {
            return invalid(format!(
                "ledgers: tx_window_ns of {} must be within [60 s, 30 days]",
                l.ledger
            ));
        }
    }
    if c.recovery_interval_ns < SECOND || c.recovery_interval_ns > DAY {
        return invalid("recovery_interval_ns must be within [1 s, 1 day]");
    }
    if c.recovery_batch_size == 0 || c.recovery_batch_size > 1_000 {
        return invalid("recovery_batch_size must be within [1, 1000]");
    }
    if c.max_attempts == 0 || c.max_attempts > 10_000 {
        return invalid("max_attempts must be within [1, 10000]");
    }
    if c.max_unresolved_per_caller == 0 {
        return invalid("max_unresolved_per_caller must be >= 1");
    }
    if c.max_unresolved_bytes_per_caller < c.max_payload_bytes as u64 {
        return invalid("max_unresolved_bytes_per_caller must be >= max_payload_bytes");
    }
    if c.max_in_flight_per_caller == 0 || c.max_in_flight_total < c.max_in_flight_per_caller {
        return invalid("need 1 <= max_in_flight_per_caller <= max_in_flight_total");
    }
    if c.max_payload_bytes == 0 || c.max_payload_bytes > MAX_PAYLOAD_LIMIT {
        return invalid(format!(
            "max_payload_bytes must be within [1, {MAX_PAYLOAD_LIMIT}]"
        ));
    }
    if c.approvals_required == 0 || c.approvals_required as usize > MAX_ADMINS + 1 {
        return invalid("approvals_required must be within [1, 33]");
    }
    if c.retention_ns.is_some_and(|r| r < DAY) {
        return invalid("retention_ns must be at least one day");
    }
    // The floor is retention_ns's: a summary is how a caller that lost track of an entry
    // learns its outcome once it is compacted, so one that checks back daily must find it.
    // No ordering against retention_ns or the ledgers' windows is needed: the period starts
    // at compaction, which already waits for the entry's window to close, and idempotency and
    // lock keys outlive the summary.
    if c.summary_retention_ns
        .is_some_and(|k| !(DAY..=MAX_SUMMARY_RETENTION_NS).contains(&k))
    {
        return invalid("summary_retention_ns must be within [1 day, 100 years]");
    }
    if c.max_entries_per_caller == 0 || c.max_bytes_per_caller < c.max_payload_bytes as u64 {
        return invalid(
            "max_entries_per_caller must be >= 1 and max_bytes_per_caller >= max_payload_bytes",
        );
    }
    if c.new_work_headroom_bytes < (16 << 20)
        || c.stable_memory_limit_bytes < c.new_work_headroom_bytes.saturating_mul(2)
    {
        return invalid(
            "new_work_headroom_bytes must be >= 16 MiB and stable_memory_limit_bytes at least \
             twice the headroom",
        );
    }
    if c.fee_exempt.len() > MAX_FEE_EXEMPT {
        return invalid(format!("fee_exempt: at most {MAX_FEE_EXEMPT}"));
    }
    engine_config(c)
        .validate()
        .map_err(|e| ServiceError::InvalidConfig {
            message: e.to_string(),
        })
}

/// The engine configuration for a service configuration: engine defaults, overridden by the
/// service's fields. Each ledger's window goes to the engine as is: a transfer records the
/// window of its ledger when it is journaled and is judged by it for good, so a later change
/// (a shorter window, a removed ledger) cannot cut a running scan short. The default window
/// (for a ledger not listed, which the service never journals on) is the longest configured.
pub fn engine_config(c: &ServiceConfig) -> Config {
    let d = Config::default();
    Config {
        max_payload_bytes: c.max_payload_bytes,
        max_key_bytes: LOCK_NAMESPACE_BYTES + MAX_LOCK_KEY_BYTES as u32,
        max_reason_bytes: MAX_REASON_BYTES as u32,
        max_unresolved_per_owner: c.max_unresolved_per_caller,
        max_unresolved_bytes_per_owner: c.max_unresolved_bytes_per_caller,
        max_entries_per_owner: c.max_entries_per_caller,
        max_bytes_per_owner: c.max_bytes_per_caller,
        stable_memory_limit_bytes: Some(c.stable_memory_limit_bytes),
        new_work_headroom_bytes: c.new_work_headroom_bytes,
        max_page_size: MAX_PAGE_SIZE,
        ledger_tx_window_ns: c
            .ledgers
            .iter()
            .map(|l| l.tx_window_ns)
            .max()
            .unwrap_or(d.ledger_tx_window_ns),
        ledgers: c
            .ledgers
            .iter()
            .map(|l| LedgerParams {
                ledger: l.ledger,
                tx_window_ns: l.tx_window_ns,
                permitted_drift_ns: d.ledger_permitted_drift_ns,
            })
            .collect(),
        max_attempts: c.max_attempts,
        recovery_interval_ns: c.recovery_interval_ns,
        recovery_batch: c.recovery_batch_size,
        approvals_required: c.approvals_required,
        // Applied by the engine's retention (compaction in the recovery tick).
        retention_ns: c.retention_ns,
        // None is the engine's default, not "forever": a configuration persisted before the
        // field existed decodes to None and must keep the period it ran with.
        summary_retention_ns: c.summary_retention_ns.or(d.summary_retention_ns),
        ..d
    }
}

/// The configured ledger `ledger`, or `LedgerNotAllowed`.
pub fn ledger(c: &ServiceConfig, ledger: Principal) -> Result<&LedgerConfig, ServiceError> {
    c.ledgers
        .iter()
        .find(|l| l.ledger == ledger)
        .ok_or(ServiceError::LedgerNotAllowed { ledger })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u8) -> Principal {
        Principal::from_slice(&[n, 1])
    }

    fn good() -> ServiceConfig {
        ServiceConfig {
            admins: vec![p(1)],
            ledgers: vec![
                LedgerConfig {
                    ledger: p(10),
                    fee: Some(10u64.into()),
                    tx_window_ns: DAY,
                },
                LedgerConfig {
                    ledger: p(11),
                    fee: None,
                    tx_window_ns: 2 * DAY,
                },
            ],
            ..default_config()
        }
    }

    #[test]
    fn default_and_good_configs_are_valid() {
        validate(&default_config()).unwrap();
        validate(&good()).unwrap();
    }

    #[test]
    fn engine_config_takes_the_longest_window_and_service_limits() {
        let e = engine_config(&good());
        assert_eq!(e.ledger_tx_window_ns, 2 * DAY);
        assert_eq!(e.ledger_window(p(10)).tx_window_ns, DAY);
        assert_eq!(e.ledger_window(p(11)).tx_window_ns, 2 * DAY);
        assert_eq!(e.max_key_bytes, 128);
        assert_eq!(e.recovery_batch, good().recovery_batch_size);
        assert_eq!(e.commit_method, "icjournal_commit");
        e.validate().unwrap();
        assert_eq!(
            engine_config(&default_config()).ledger_tx_window_ns,
            Config::default().ledger_tx_window_ns
        );
    }

    /// Unset, the summaries' period is the engine's default (what a configuration persisted
    /// before the field existed decodes to); set, it reaches the engine as is, at both bounds.
    #[test]
    fn summary_retention_defaults_to_the_engine_and_is_passed_through() {
        assert_eq!(
            engine_config(&good()).summary_retention_ns,
            Config::default().summary_retention_ns
        );
        for keep in [DAY, 7 * DAY, MAX_SUMMARY_RETENTION_NS] {
            let c = ServiceConfig {
                retention_ns: Some(DAY),
                summary_retention_ns: Some(keep),
                ..good()
            };
            validate(&c).unwrap();
            assert_eq!(engine_config(&c).summary_retention_ns, Some(keep));
        }
    }

    #[test]
    fn rejects_each_bad_field() {
        type Mutator = fn(&mut ServiceConfig);
        let cases: Vec<(&str, Mutator)> = vec![
            ("anonymous", |c| c.admins.push(Principal::anonymous())),
            ("duplicate", |c| c.admins.push(p(1))),
            ("duplicate", |c| {
                let l = c.ledgers[0].clone();
                c.ledgers.push(l)
            }),
            ("tx_window_ns", |c| c.ledgers[0].tx_window_ns = 1),
            ("not a canister", |c| {
                c.ledgers[0].ledger = Principal::anonymous()
            }),
            ("recovery_interval_ns", |c| c.recovery_interval_ns = 0),
            ("recovery_batch_size", |c| c.recovery_batch_size = 0),
            ("recovery_batch_size", |c| c.recovery_batch_size = 1_001),
            ("max_attempts", |c| c.max_attempts = 0),
            ("max_unresolved_per_caller", |c| {
                c.max_unresolved_per_caller = 0
            }),
            ("max_unresolved_bytes_per_caller", |c| {
                c.max_unresolved_bytes_per_caller = 1
            }),
            ("max_in_flight", |c| c.max_in_flight_per_caller = 0),
            ("max_in_flight", |c| {
                c.max_in_flight_total = c.max_in_flight_per_caller - 1
            }),
            ("max_payload_bytes", |c| c.max_payload_bytes = 0),
            ("max_payload_bytes", |c| {
                c.max_payload_bytes = MAX_PAYLOAD_LIMIT + 1
            }),
            ("approvals_required", |c| c.approvals_required = 0),
            ("retention_ns", |c| c.retention_ns = Some(SECOND)),
            ("summary_retention_ns", |c| c.summary_retention_ns = Some(0)),
            ("summary_retention_ns", |c| {
                c.summary_retention_ns = Some(DAY - 1)
            }),
            ("summary_retention_ns", |c| {
                c.summary_retention_ns = Some(MAX_SUMMARY_RETENTION_NS + 1)
            }),
            ("summary_retention_ns", |c| {
                c.summary_retention_ns = Some(u64::MAX)
            }),
            ("admins: at most", |c| {
                c.admins = (0..=MAX_ADMINS as u8).map(|i| p(100 + i)).collect()
            }),
        ];
        for (needle, mutate) in cases {
            let mut c = good();
            mutate(&mut c);
            match validate(&c) {
                Err(ServiceError::InvalidConfig { message }) => {
                    assert!(message.contains(needle), "{needle}: {message}")
                }
                other => panic!("{needle}: expected InvalidConfig, got {other:?}"),
            }
        }
    }

    #[test]
    fn ledger_lookup() {
        let c = good();
        assert_eq!(ledger(&c, p(11)).unwrap().ledger, p(11));
        assert_eq!(
            ledger(&c, p(12)).unwrap_err(),
            ServiceError::LedgerNotAllowed { ledger: p(12) }
        );
    }
}

/// The init argument shipped for `icp deploy` / dfx (`deploy/init-args.did`) is a valid
/// configuration: it parses as the service's init type and passes `validate`.
#[cfg(test)]
mod deploy_args {
    #[test]
    fn should_ship_a_valid_init_argument() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/init-args.did");
        let text = std::fs::read_to_string(path).expect("deploy/init-args.did");
        let args = candid_parser::parse_idl_args(&text).expect("Candid text");
        let bytes = args.to_bytes().expect("encodable");
        let cfg = candid::decode_one::<Option<super::ServiceConfig>>(&bytes)
            .expect("an (opt ServiceConfig)")
            .expect("a configuration, not null");
        super::validate(&cfg).expect("a valid configuration");
        assert!(!cfg.admins.is_empty() && !cfg.ledgers.is_empty());
    }
}
