//! Interface tests: `candid/icjournal.did` equals the exported interface, and every method
//! is classified for `inspect_message`.

use candid_parser::utils::{service_equal, CandidSource};
use std::path::PathBuf;

fn did_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../candid/icjournal.did")
}

/// Set `UPDATE_DID=1` to rewrite the file from the implementation (then review the diff).
#[test]
fn candid_file_equals_the_implementation() {
    let exported = super::__export_service();
    let path = did_path();
    if std::env::var("UPDATE_DID").is_ok() {
        std::fs::write(&path, &exported).unwrap();
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
