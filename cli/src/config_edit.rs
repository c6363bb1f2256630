//! `config get` / `config set`: the service configuration as JSON, edited by a file (whole or
//! partial) and `--set key=value` assignments, and the difference shown before writing.
//!
//! The JSON is the one `config get --json` prints under `config`, so a script can round-trip
//! it: `config get --json > c.json`, edit, `config set --file c.json --reason …`.

use crate::errors::CliError;
use crate::format::{nat, parse_duration};
use candid::{Nat, Principal};
use icjournal_client::{Fees, LedgerConfig, ServiceConfig};
use serde_json::{json, Map, Value};

/// Field names in the order `config get` shows them.
pub const FIELDS: [&str; 19] = [
    "admins",
    "ledgers",
    "recovery_interval_ns",
    "recovery_batch_size",
    "max_attempts",
    "max_unresolved_per_caller",
    "max_unresolved_bytes_per_caller",
    "max_in_flight_per_caller",
    "max_in_flight_total",
    "max_payload_bytes",
    "approvals_required",
    "retention_ns",
    "summary_retention_ns",
    "max_entries_per_caller",
    "max_bytes_per_caller",
    "stable_memory_limit_bytes",
    "new_work_headroom_bytes",
    "fees",
    "fee_exempt",
];

/// Fields of `fees`, cycles per call.
const FEE_FIELDS: [&str; 3] = [
    "record_cycles",
    "tracked_transfer_cycles",
    "transfer_cycles",
];

/// Principal lists that `--set KEY+=P` / `KEY-=P` edit one principal at a time.
const PRINCIPAL_LISTS: [&str; 2] = ["admins", "fee_exempt"];

pub fn to_json(c: &ServiceConfig) -> Value {
    json!({
        "admins": c.admins.iter().map(|p| p.to_text()).collect::<Vec<_>>(),
        "ledgers": c.ledgers.iter().map(|l| json!({
            "ledger": l.ledger.to_text(),
            "fee": l.fee.as_ref().map(nat),
            "tx_window_ns": l.tx_window_ns,
        })).collect::<Vec<_>>(),
        "recovery_interval_ns": c.recovery_interval_ns,
        "recovery_batch_size": c.recovery_batch_size,
        "max_attempts": c.max_attempts,
        "max_unresolved_per_caller": c.max_unresolved_per_caller,
        "max_unresolved_bytes_per_caller": c.max_unresolved_bytes_per_caller,
        "max_in_flight_per_caller": c.max_in_flight_per_caller,
        "max_in_flight_total": c.max_in_flight_total,
        "max_payload_bytes": c.max_payload_bytes,
        "approvals_required": c.approvals_required,
        "retention_ns": c.retention_ns,
        "summary_retention_ns": c.summary_retention_ns,
        "max_entries_per_caller": c.max_entries_per_caller,
        "max_bytes_per_caller": c.max_bytes_per_caller,
        "stable_memory_limit_bytes": c.stable_memory_limit_bytes,
        "new_work_headroom_bytes": c.new_work_headroom_bytes,
        "fees": {
            "record_cycles": c.fees.record_cycles,
            "tracked_transfer_cycles": c.fees.tracked_transfer_cycles,
            "transfer_cycles": c.fees.transfer_cycles,
        },
        "fee_exempt": c.fee_exempt.iter().map(|p| p.to_text()).collect::<Vec<_>>(),
    })
}

fn principals(m: &Map<String, Value>, field: &str) -> Result<Vec<Principal>, CliError> {
    get(m, field)?
        .as_array()
        .ok_or_else(|| field_err(field, "must be a list of principals"))?
        .iter()
        .map(|p| principal(p, field))
        .collect()
}

fn fees(v: &Value) -> Result<Fees, CliError> {
    let o = v.as_object().ok_or_else(|| {
        field_err(
            "fees",
            "must be {\"record_cycles\", \"tracked_transfer_cycles\", \"transfer_cycles\"}",
        )
    })?;
    if let Some(k) = o.keys().find(|k| !FEE_FIELDS.contains(&k.as_str())) {
        return Err(field_err("fees", &format!("unknown field `{k}`")));
    }
    Ok(Fees {
        record_cycles: uint(get(o, "record_cycles")?, "fees.record_cycles")?,
        tracked_transfer_cycles: uint(
            get(o, "tracked_transfer_cycles")?,
            "fees.tracked_transfer_cycles",
        )?,
        transfer_cycles: uint(get(o, "transfer_cycles")?, "fees.transfer_cycles")?,
    })
}

fn field_err(field: &str, what: &str) -> CliError {
    CliError::usage(format!("configuration field `{field}`: {what}"))
}

fn get<'a>(m: &'a Map<String, Value>, field: &str) -> Result<&'a Value, CliError> {
    m.get(field).ok_or_else(|| field_err(field, "missing"))
}

/// An unsigned integer, given as a JSON number or a decimal string.
fn uint(v: &Value, field: &str) -> Result<u64, CliError> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| field_err(field, &format!("`{v}` is not an unsigned integer")))
}

fn u32_of(v: &Value, field: &str) -> Result<u32, CliError> {
    u32::try_from(uint(v, field)?).map_err(|_| field_err(field, "too large"))
}

fn principal(v: &Value, field: &str) -> Result<Principal, CliError> {
    let s = v
        .as_str()
        .ok_or_else(|| field_err(field, &format!("`{v}` is not a principal (text)")))?;
    Principal::from_text(s.trim()).map_err(|e| field_err(field, &format!("`{s}`: {e}")))
}

fn nat_of(v: &Value, field: &str) -> Result<Nat, CliError> {
    let text = match v {
        Value::Number(n) if n.is_u64() => n.to_string(),
        Value::String(s) => s.trim().replace('_', ""),
        _ => return Err(field_err(field, &format!("`{v}` is not an amount"))),
    };
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(field_err(field, &format!("`{text}` is not an amount")));
    }
    text.parse::<Nat>()
        .map_err(|e| field_err(field, &e.to_string()))
}

/// Reads the JSON form back; unknown or missing fields are errors (a typo must not pass).
pub fn from_json(v: &Value) -> Result<ServiceConfig, CliError> {
    let m = v
        .as_object()
        .ok_or_else(|| CliError::usage("the configuration must be a JSON object"))?;
    if let Some(k) = m.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(unknown_field(k));
    }
    let admins = principals(m, "admins")?;
    let ledgers = get(m, "ledgers")?
        .as_array()
        .ok_or_else(|| field_err("ledgers", "must be a list"))?
        .iter()
        .map(|l| {
            let o = l.as_object().ok_or_else(|| {
                field_err(
                    "ledgers",
                    "each ledger is {\"ledger\", \"fee\", \"tx_window_ns\"}",
                )
            })?;
            if let Some(k) = o
                .keys()
                .find(|k| !["ledger", "fee", "tx_window_ns"].contains(&k.as_str()))
            {
                return Err(field_err("ledgers", &format!("unknown field `{k}`")));
            }
            Ok(LedgerConfig {
                ledger: principal(get(o, "ledger")?, "ledgers.ledger")?,
                fee: match o.get("fee") {
                    None | Some(Value::Null) => None,
                    Some(f) => Some(nat_of(f, "ledgers.fee")?),
                },
                tx_window_ns: uint(get(o, "tx_window_ns")?, "ledgers.tx_window_ns")?,
            })
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    Ok(ServiceConfig {
        admins,
        ledgers,
        recovery_interval_ns: uint(get(m, "recovery_interval_ns")?, "recovery_interval_ns")?,
        recovery_batch_size: u32_of(get(m, "recovery_batch_size")?, "recovery_batch_size")?,
        max_attempts: u32_of(get(m, "max_attempts")?, "max_attempts")?,
        max_unresolved_per_caller: u32_of(
            get(m, "max_unresolved_per_caller")?,
            "max_unresolved_per_caller",
        )?,
        max_unresolved_bytes_per_caller: uint(
            get(m, "max_unresolved_bytes_per_caller")?,
            "max_unresolved_bytes_per_caller",
        )?,
        max_in_flight_per_caller: u32_of(
            get(m, "max_in_flight_per_caller")?,
            "max_in_flight_per_caller",
        )?,
        max_in_flight_total: u32_of(get(m, "max_in_flight_total")?, "max_in_flight_total")?,
        max_payload_bytes: u32_of(get(m, "max_payload_bytes")?, "max_payload_bytes")?,
        approvals_required: u32_of(get(m, "approvals_required")?, "approvals_required")?,
        retention_ns: match get(m, "retention_ns")? {
            Value::Null => None,
            v => Some(uint(v, "retention_ns")?),
        },
        summary_retention_ns: match get(m, "summary_retention_ns")? {
            Value::Null => None,
            v => Some(uint(v, "summary_retention_ns")?),
        },
        max_entries_per_caller: uint(get(m, "max_entries_per_caller")?, "max_entries_per_caller")?,
        max_bytes_per_caller: uint(get(m, "max_bytes_per_caller")?, "max_bytes_per_caller")?,
        stable_memory_limit_bytes: uint(
            get(m, "stable_memory_limit_bytes")?,
            "stable_memory_limit_bytes",
        )?,
        new_work_headroom_bytes: uint(
            get(m, "new_work_headroom_bytes")?,
            "new_work_headroom_bytes",
        )?,
        fees: fees(get(m, "fees")?)?,
        fee_exempt: principals(m, "fee_exempt")?,
    })
}

fn unknown_field(k: &str) -> CliError {
    CliError::usage(format!(
        "unknown configuration field `{k}` (fields: {})",
        FIELDS.join(", ")
    ))
}

/// Applies a file's content to `current`: the `config` object `config get --json` prints,
/// or a bare object with some or all fields. `recovery_paused` is not configuration (pause
/// and resume change it): a file that asks for a different value is refused.
pub fn apply_file(current: &mut Value, file: &Value, paused: bool) -> Result<(), CliError> {
    let obj = file
        .as_object()
        .ok_or_else(|| CliError::usage("the file must hold a JSON object"))?;
    let fields = match obj.get("config") {
        Some(inner) => {
            if let Some(k) = obj
                .keys()
                .find(|k| *k != "config" && *k != "recovery_paused")
            {
                return Err(unknown_field(k));
            }
            if let Some(p) = obj.get("recovery_paused") {
                if p.as_bool() != Some(paused) {
                    return Err(CliError::usage(
                        "recovery_paused is not configuration: use `icjournal pause` or \
                         `icjournal resume` (remove it from the file, or leave it as it is)",
                    ));
                }
            }
            inner
                .as_object()
                .ok_or_else(|| CliError::usage("`config` must be a JSON object"))?
        }
        None => obj,
    };
    let target = current.as_object_mut().expect("config is an object");
    for (k, v) in fields {
        if !FIELDS.contains(&k.as_str()) {
            return Err(unknown_field(k));
        }
        target.insert(k.clone(), v.clone());
    }
    Ok(())
}

/// Applies one `key=value`, `admins+=PRINCIPAL` or `admins-=PRINCIPAL` (`fee_exempt` alike). Values are JSON when
/// they parse as JSON, text otherwise; `*_ns` fields also take durations (`30s`, `2d`),
/// `retention_ns=none` clears the retention and `summary_retention_ns=none` goes back to the
/// service's default period.
pub fn apply_set(current: &mut Value, assignment: &str) -> Result<(), CliError> {
    let target = current.as_object_mut().expect("config is an object");
    let (key, op, text) = if let Some((k, v)) = assignment.split_once("+=") {
        (k, '+', v)
    } else if let Some((k, v)) = assignment.split_once("-=") {
        (k, '-', v)
    } else if let Some((k, v)) = assignment.split_once('=') {
        (k, '=', v)
    } else {
        return Err(CliError::usage(format!(
            "--set `{assignment}`: expected key=value (or admins+=PRINCIPAL, admins-=PRINCIPAL)"
        )));
    };
    let key = key.trim();
    let text = text.trim();
    if !FIELDS.contains(&key) {
        return Err(unknown_field(key));
    }
    if op != '=' {
        if !PRINCIPAL_LISTS.contains(&key) {
            return Err(CliError::usage(format!(
                "--set {key}{op}=: only admins and fee_exempt can be added to or removed from"
            )));
        }
        let p = Principal::from_text(text)
            .map_err(|e| CliError::usage(format!("--set {key}{op}={text}: {e}")))?
            .to_text();
        let list = target
            .get_mut(key)
            .and_then(|a| a.as_array_mut())
            .expect("principal lists are lists");
        let present = list.iter().any(|a| a.as_str() == Some(&p));
        match (op, present) {
            ('+', true) => return Err(CliError::usage(format!("{p} is already in {key}"))),
            ('+', false) => list.push(json!(p)),
            (_, false) => return Err(CliError::usage(format!("{p} is not in {key}"))),
            (_, true) => list.retain(|a| a.as_str() != Some(&p)),
        }
        return Ok(());
    }
    let value = if key.ends_with("_ns") && matches!(text, "none" | "null") {
        Value::Null
    } else if key.ends_with("_ns") && text.ends_with(|c: char| c.is_ascii_alphabetic()) {
        json!(parse_duration(text).map_err(|e| CliError::usage(format!("--set {key}: {e}")))?)
    } else if let Ok(v) = serde_json::from_str::<Value>(text) {
        v
    } else if PRINCIPAL_LISTS.contains(&key) {
        json!(text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>())
    } else {
        json!(text)
    };
    target.insert(key.to_string(), value);
    Ok(())
}

/// `(field, old, new)` for every field that differs.
pub fn diff(old: &Value, new: &Value) -> Vec<(String, Value, Value)> {
    FIELDS
        .iter()
        .filter_map(|f| {
            let a = old.get(*f).cloned().unwrap_or(Value::Null);
            let b = new.get(*f).cloned().unwrap_or(Value::Null);
            (a != b).then(|| (f.to_string(), a, b))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServiceConfig {
        ServiceConfig {
            admins: vec![Principal::from_slice(&[1; 29])],
            ledgers: vec![LedgerConfig {
                ledger: Principal::from_slice(&[2; 10]),
                fee: Some(Nat::from(10_000u64)),
                tx_window_ns: 86_400_000_000_000,
            }],
            recovery_interval_ns: 5_000_000_000,
            recovery_batch_size: 50,
            max_attempts: 6,
            max_unresolved_per_caller: 1_000,
            max_unresolved_bytes_per_caller: 4 << 20,
            max_in_flight_per_caller: 50,
            max_in_flight_total: 500,
            max_payload_bytes: 4096,
            approvals_required: 1,
            retention_ns: None,
            summary_retention_ns: Some(30 * 86_400_000_000_000),
            max_entries_per_caller: 10_000,
            max_bytes_per_caller: 64 << 20,
            stable_memory_limit_bytes: 4 << 30,
            new_work_headroom_bytes: 64 << 20,
            fees: Fees {
                record_cycles: 1_000_000,
                tracked_transfer_cycles: 5_000_000,
                transfer_cycles: 10_000_000,
            },
            fee_exempt: vec![],
        }
    }

    #[test]
    fn round_trips_the_json_form() {
        let c = config();
        assert_eq!(from_json(&to_json(&c)).unwrap(), c);
    }

    #[test]
    fn applies_assignments() {
        let mut v = to_json(&config());
        apply_set(&mut v, "max_attempts=8").unwrap();
        apply_set(&mut v, "recovery_interval_ns=30s").unwrap();
        apply_set(&mut v, "retention_ns=7d").unwrap();
        let extra = Principal::from_slice(&[3; 29]).to_text();
        apply_set(&mut v, &format!("admins+={extra}")).unwrap();
        let c = from_json(&v).unwrap();
        assert_eq!(c.max_attempts, 8);
        assert_eq!(c.recovery_interval_ns, 30_000_000_000);
        assert_eq!(c.retention_ns, Some(7 * 86_400_000_000_000));
        assert_eq!(c.admins.len(), 2);
        apply_set(&mut v, &format!("admins-={extra}")).unwrap();
        apply_set(&mut v, "retention_ns=none").unwrap();
        apply_set(&mut v, &format!("fee_exempt+={extra}")).unwrap();
        let c = from_json(&v).unwrap();
        assert_eq!(c.admins, config().admins);
        assert_eq!(c.retention_ns, None);
        assert_eq!(c.fee_exempt, vec![Principal::from_slice(&[3; 29])]);
        apply_set(
            &mut v,
            "fees={\"record_cycles\": 1, \"tracked_transfer_cycles\": 2, \"transfer_cycles\": 3}",
        )
        .unwrap();
        assert_eq!(from_json(&v).unwrap().fees.transfer_cycles, 3);
        let changes = diff(&to_json(&config()), &{
            let mut w = to_json(&config());
            apply_set(&mut w, "approvals_required=2").unwrap();
            w
        });
        assert_eq!(
            changes,
            vec![("approvals_required".into(), json!(1), json!(2))]
        );
    }

    /// The summaries' period: shown and read back, set as a duration, and `none` back to
    /// null (the service's default, not "forever").
    #[test]
    fn edits_the_summary_retention() {
        let mut v = to_json(&config());
        assert_eq!(v["summary_retention_ns"], json!(30 * 86_400_000_000_000u64));
        apply_set(&mut v, "summary_retention_ns=2d").unwrap();
        assert_eq!(
            from_json(&v).unwrap().summary_retention_ns,
            Some(2 * 86_400_000_000_000)
        );
        assert_eq!(
            diff(&to_json(&config()), &v),
            vec![(
                "summary_retention_ns".into(),
                json!(30 * 86_400_000_000_000u64),
                json!(2 * 86_400_000_000_000u64)
            )]
        );
        apply_set(&mut v, "summary_retention_ns=none").unwrap();
        assert_eq!(from_json(&v).unwrap().summary_retention_ns, None);
        apply_set(&mut v, "summary_retention_ns=\"soon\"").unwrap();
        assert!(from_json(&v).is_err());
    }

    #[test]
    fn refuses_typos_and_bad_values() {
        let mut v = to_json(&config());
        for bad in [
            "max_attempt=3",
            "max_attempts",
            "max_attempts+=3",
            "admins+=not-a-principal",
            "recovery_interval_ns=3x",
        ] {
            assert!(apply_set(&mut v.clone(), bad).is_err(), "{bad}");
        }
        apply_set(&mut v, "max_attempts=-1").unwrap();
        assert!(from_json(&v).is_err());
        let mut v = to_json(&config());
        apply_set(&mut v, "max_attempts=\"7\"").unwrap();
        assert_eq!(from_json(&v).unwrap().max_attempts, 7);
    }

    #[test]
    fn applies_files_partial_or_whole() {
        let mut v = to_json(&config());
        apply_file(&mut v, &json!({"max_attempts": 9}), false).unwrap();
        assert_eq!(from_json(&v).unwrap().max_attempts, 9);
        let whole = json!({"recovery_paused": false, "config": to_json(&config())});
        apply_file(&mut v, &whole, false).unwrap();
        assert_eq!(from_json(&v).unwrap(), config());
        assert!(apply_file(&mut v, &whole, true).is_err(), "paused differs");
        assert!(apply_file(&mut v, &json!({"max_atempts": 9}), false).is_err());
        assert!(apply_file(&mut v, &json!([1]), false).is_err());
    }
}
