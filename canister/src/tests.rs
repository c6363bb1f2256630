//! Interface tests: `candid/icjournal.did` equals the exported interface, and every method
//! is classified for `inspect_message`.

use candid_parser::utils::{service_equal, CandidSource};
use std::path::PathBuf;

fn did_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../candid/icjournal.did")
}

/// The file's header: what the interface is and how it is kept honest.
const DID_HEADER: &str = "\
// icjournal service canister — the source of truth of its interface.
// A unit test (canister/src/tests.rs) checks that this file equals the interface the
// implementation exports (`service_equal`); `UPDATE_DID=1 cargo test -p icjournal-canister`
// regenerates it from the code (review the diff before committing it).
//
// Callers (non-anonymous) see only their own entries. Operators = admins or controllers.
// Every fallible method returns `variant { Ok : T; Err : ServiceError }`, named `<T>Result`
// below. See docs/ for the design, the recovery algorithm and the operator guide.
//
";

/// Readable names for the generated `Result`, `Result_1`, ... types, by their `Ok` type.
fn result_name(ok: &str) -> String {
    match ok {
        "AdminResult" => "AdminActResult".into(),
        "vec AuditRecord" => "AuditResult".into(),
        "TrackedTransfer" => "TrackResult".into(),
        "FlowResult" => "FlowOutcome".into(),
        "" => "UnitResult".into(),
        "nat64" => "EntryIdResult".into(),
        other => format!(
            "{}Result",
            other
                .split_whitespace()
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().chain(c).collect::<String>())
                        .unwrap_or_default()
                })
                .collect::<String>()
        ),
    }
}

/// The exported interface as it is written to the file: header, readable result names.
fn readable_did(exported: &str) -> String {
    let mut renames = Vec::new();
    for line in exported.lines() {
        let Some(rest) = line.strip_prefix("type Result") else {
            continue;
        };
        let Some((suffix, def)) = rest.split_once(" = variant { Ok") else {
            continue;
        };
        let ok = def
            .trim_start_matches(" : ")
            .split("; Err : ServiceError")
            .next()
            .unwrap_or("")
            .trim_start_matches(';')
            .trim();
        renames.push((format!("Result{suffix}"), result_name(ok)));
    }
    // Longest first, so `Result_10` is renamed before `Result_1` and `Result`.
    renames.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    let mut out = String::from(DID_HEADER);
    for line in exported.lines() {
        let mut l = line.to_string();
        if !l.trim_start().starts_with("//") {
            for (from, to) in &renames {
                l = replace_word(&l, from, to);
            }
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn replace_word(s: &str, from: &str, to: &str) -> String {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(from) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + from.len()..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(is_ident) || after.is_some_and(is_ident) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}

/// Set `UPDATE_DID=1` to rewrite the file from the implementation (then review the diff).
#[test]
fn candid_file_equals_the_implementation() {
    let exported = super::__export_service();
    let path = did_path();
    if std::env::var("UPDATE_DID").is_ok() {
        std::fs::write(&path, readable_did(&exported)).unwrap();
    }
    let file = std::fs::read_to_string(&path).expect("candid/icjournal.did");
    service_equal(CandidSource::Text(&file), CandidSource::Text(&exported)).unwrap_or_else(|e| {
        panic!(
            "candid/icjournal.did differs from the implementation: {e}\n\
             exported interface:\n{exported}"
        )
    });
}

#[test]
fn every_method_has_an_access_class() {
    let exported = super::__export_service();
    let (env, actor) = CandidSource::Text(&exported).load().unwrap();
    let actor = actor.unwrap();
    let service = env.as_service(&actor).unwrap();
    let mut names: Vec<&str> = service.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    let mut classified: Vec<&str> = crate::inspect::METHODS.iter().map(|(m, _)| *m).collect();
    classified.sort();
    assert_eq!(names, classified);
}

#[test]
fn stable_layout_check() {
    use ic_stable_structures::{Memory, VectorMemory};
    let m = VectorMemory::default();
    assert!(super::check_stable_layout(&m).is_ok());
    m.grow(1);
    assert!(
        super::check_stable_layout(&m).is_err(),
        "zeroed memory is not ours"
    );
    m.write(0, b"MGR\x01");
    assert!(super::check_stable_layout(&m).is_ok());
    m.write(0, b"MGR\x02");
    assert!(super::check_stable_layout(&m).is_err());
}

/// The largest valid arguments of the service, and what decoding them costs (Candid cost
/// units, the unit of `DECODING_QUOTA`).
mod decoding_quota {
    use crate::config::*;
    use crate::http::HttpRequest;
    use candid::{CandidType, DecoderConfig, Nat, Principal};
    use icjournal::TransferSpec;
    use icjournal_client::*;
    use icrc_ledger_types::icrc1::account::Account;

    fn cost<T: CandidType + for<'de> candid::Deserialize<'de>>(v: &T) -> (usize, u64) {
        let bytes = candid::encode_one(v).unwrap();
        let mut cfg = DecoderConfig::new();
        cfg.set_decoding_quota(usize::MAX / 4)
            .set_skipping_quota(usize::MAX / 4);
        let ((_v,), c): ((T,), DecoderConfig) =
            candid::utils::decode_args_with_config_debug(&bytes, &cfg).unwrap();
        (bytes.len(), c.decoding_quota.unwrap() as u64)
    }

    fn p(n: u8) -> Principal {
        Principal::from_slice(&[n; 29])
    }

    fn spec() -> TransferSpec {
        TransferSpec::Icrc2 {
            ledger: p(1),
            spender_subaccount: Some([7; 32]),
            from: Account {
                owner: p(2),
                subaccount: Some([8; 32]),
            },
            to: Account {
                owner: p(3),
                subaccount: Some([9; 32]),
            },
            amount: Nat::from(u128::MAX),
            fee: Some(Nat::from(u128::MAX)),
        }
    }

    /// Costs of the largest valid arguments, each below `DECODING_QUOTA` with a margin.
    pub fn largest() -> Vec<(&'static str, usize, u64)> {
        let key = || Some("k".repeat(MAX_LOCK_KEY_BYTES));
        let mut v = vec![];
        let mut add = |name, (len, c)| v.push((name, len, c));
        add(
            "record_intent",
            cost(&RecordIntentArgs {
                label: "l".repeat(MAX_LABEL_BYTES),
                payload: vec![0; MAX_PAYLOAD_LIMIT as usize],
                lock_key: key(),
                idempotency_key: key(),
            }),
        );
        add(
            "execute_saga",
            cost(&SagaRequest {
                steps: vec![
                    SagaTransferStep {
                        transfer: spec(),
                        compensation: Some(spec()),
                    };
                    16
                ],
                lock_key: key(),
                idempotency_key: key(),
            }),
        );
        let mut cfg = default_config();
        cfg.admins = (0..MAX_ADMINS as u8).map(p).collect();
        cfg.fee_exempt = (0..MAX_FEE_EXEMPT).map(|i| p(i as u8)).collect();
        cfg.ledgers = (0..MAX_LEDGERS as u8)
            .map(|i| LedgerConfig {
                ledger: p(i),
                fee: Some(Nat::from(u128::MAX)),
                tx_window_ns: 1,
            })
            .collect();
        add(
            "set_config",
            cost(&SetConfigArgs {
                config: cfg,
                reason: "r".repeat(MAX_REASON_BYTES),
            }),
        );
        add(
            "http_request",
            cost(&HttpRequest {
                method: "GET".into(),
                url: "/".repeat(8 * 1024),
                headers: vec![("h".repeat(100), "v".repeat(300)); 64],
                body: vec![0; 16 * 1024],
            }),
        );
        v
    }

    #[test]
    fn should_decode_the_largest_valid_arguments_well_within_the_quota() {
        for (name, len, c) in largest() {
            println!("{name}: {len} bytes, decoding cost {c}");
            assert!(len <= MAX_ARG_BYTES, "{name}: {len} bytes");
            assert!(
                c.saturating_mul(8) <= crate::DECODING_QUOTA as u64,
                "{name}: cost {c} leaves less than 8x margin under {}",
                crate::DECODING_QUOTA
            );
        }
    }
}
