//! Generic journaling (records) through the service and the typed client: lock keys (I3),
//! isolation (I7), listing, timeouts to manual review, quotas and oversize input.

use icjournal::{JournalError, PageRequest, ReportedResult, Status};
use icjournal_client::{ListArgs, RecordIntentArgs, ReportResultArgs, ServiceError};
use icjournal_tests::*;

fn record(
    s: &Setup,
    who: candid::Principal,
    key: Option<&str>,
) -> Result<u64, icjournal_client::ClientError> {
    run(s.client(who).record_intent(RecordIntentArgs {
        label: "order".into(),
        payload: b"order-1".to_vec(),
        lock_key: key.map(String::from),
        idempotency_key: None,
    }))
}

fn report(
    s: &Setup,
    who: candid::Principal,
    id: u64,
    r: ReportedResult,
) -> Result<Status, icjournal_client::ClientError> {
    run(s.client(who).report_result(ReportResultArgs {
        entry_id: id,
        result: r,
    }))
}

fn ok() -> ReportedResult {
    ReportedResult::Succeeded {
        block_index: None,
        reply: b"ok".to_vec(),
    }
}

#[test]
fn should_record_intent_and_report_result() {
    let s = Setup::new();
    let c = s.client(user(1));
    let id = record(&s, user(1), Some("order-1")).unwrap();
    let e = run(c.get_entry(id)).unwrap();
    assert_eq!(e.status, Status::Pending);
    assert_eq!(report(&s, user(1), id, ok()).unwrap(), Status::Succeeded);
    let f = record(&s, user(1), None).unwrap();
    let st = report(
        &s,
        user(1),
        f,
        ReportedResult::Failed {
            message: "out of stock".into(),
        },
    )
    .unwrap();
    assert_eq!(st, Status::Failed);
    // Results are final (I4): a second report is refused and changes nothing.
    assert!(report(
        &s,
        user(1),
        id,
        ReportedResult::Failed {
            message: "flip".into()
        }
    )
    .is_err());
    assert_eq!(run(c.get_entry(id)).unwrap().status, Status::Succeeded);
    let failed = run(c.list_failed(PageRequest::default())).unwrap();
    assert_eq!(
        failed.items.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![f]
    );
    let all = run(c.list_entries(ListArgs::default())).unwrap();
    assert_eq!(all.items.len(), 2);
}

#[test]
fn should_hold_lock_keys_per_caller_until_resolved() {
    let s = Setup::new();
    let id = record(&s, user(1), Some("k")).unwrap();
    let e = record(&s, user(1), Some("k")).unwrap_err();
    match service_err(e) {
        ServiceError::Journal(JournalError::LockHeld { entry_id, .. }) => assert_eq!(entry_id, id),
        other => panic!("expected LockHeld, got {other:?}"),
    }
    // Lock keys are namespaced per caller: another caller is not blocked (no griefing).
    record(&s, user(2), Some("k")).unwrap();
    let unresolved = run(s.client(user(1)).list_unresolved(PageRequest::default())).unwrap();
    assert_eq!(unresolved.items.len(), 1);
    report(&s, user(1), id, ok()).unwrap();
    record(&s, user(1), Some("k")).unwrap();
}

#[test]
fn should_isolate_callers_entries() {
    let s = Setup::new();
    let id = record(&s, user(1), None).unwrap();
    let e = run(s.client(stranger()).get_entry(id)).unwrap_err();
    assert!(matches!(
        service_err(e),
        ServiceError::Journal(JournalError::NotFound { .. })
    ));
    assert!(report(&s, stranger(), id, ok()).is_err());
    let mine = run(s.client(stranger()).list_entries(ListArgs::default())).unwrap();
    assert!(mine.items.is_empty());
    assert_eq!(s.service_entry(id).status, Status::Pending);
}

/// A record nobody reports on is its owner's business, not the operators': at the timeout it
/// is closed in the owner's failed list and its lock is released.
#[test]
fn should_close_unreported_records_in_their_owner_failed_list() {
    let s = Setup::new();
    let id = record(&s, user(1), Some("r")).unwrap();
    s.advance_secs(24 * 3600 + 60);
    s.settle(600);
    let e = s.service_entry(id);
    assert_eq!(e.status, Status::Failed, "{e:?}");
    assert!(matches!(
        e.outcome,
        Some(icjournal::Outcome::Failed {
            reason: icjournal::FailureReason::RecordTimedOut { .. },
            ..
        })
    ));
    assert!(s.service_manual_queue().is_empty());
    let failed = run(s.client(user(1)).list_failed(PageRequest::default())).unwrap();
    assert!(failed.items.iter().any(|x| x.id == id));
    // The lock is free again.
    record(&s, user(1), Some("r")).unwrap();
}

#[test]
fn should_enforce_quotas_and_input_bounds() {
    let s = Setup::options().max_unresolved(3).build();
    for _ in 0..3 {
        record(&s, user(1), None).unwrap();
    }
    let e = record(&s, user(1), None).unwrap_err();
    assert!(
        matches!(
            service_err(e),
            ServiceError::Journal(JournalError::QuotaExceeded { .. })
        ),
        "quota"
    );
    // Others are not affected.
    record(&s, user(2), None).unwrap();
    // Oversize payload, label, lock key.
    let too_big = |payload: Vec<u8>, label: String, key: Option<String>| {
        run(s.client(user(3)).record_intent(RecordIntentArgs {
            label,
            payload,
            lock_key: key,
            idempotency_key: None,
        }))
        .unwrap_err()
    };
    for e in [
        too_big(vec![0; 4 * 1024 + 1], "l".into(), None),
        too_big(vec![], "l".repeat(65), None),
        too_big(vec![], "l".into(), Some("k".repeat(65))),
    ] {
        assert!(
            matches!(
                service_err(e.clone()),
                ServiceError::Journal(JournalError::PayloadTooLarge { .. })
            ),
            "{e:?}"
        );
    }
    // An argument beyond the service's 64 KiB cap is refused before decoding (the ingress
    // filter or the endpoint's guard), and nothing is journaled.
    let before = s.service_metrics().entries_total;
    let e = run(s.client(user(3)).record_intent(RecordIntentArgs {
        label: "l".into(),
        payload: vec![0; 100 * 1024],
        lock_key: None,
        idempotency_key: None,
    }))
    .unwrap_err();
    assert!(
        matches!(e, icjournal_client::ClientError::Transport { .. }),
        "{e:?}"
    );
    assert_eq!(s.service_metrics().entries_total, before);
    // Empty label is malformed.
    let e = too_big(vec![], String::new(), None);
    assert!(matches!(
        service_err(e),
        ServiceError::Journal(JournalError::InvalidArgument { .. })
    ));
}
