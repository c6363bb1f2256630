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
