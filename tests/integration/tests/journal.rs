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

/// The service runs under a per-canister memory limit (`memory_allocation`, as the IC enforces
/// it: a stable-memory grow beyond it fails and traps the message). Callers fill the journal
/// with records until the service refuses new work with `StorageFull` — before the limit, with
/// the configured headroom left — and then recovery, operator verbs, reports and queries still
/// work: an unknown outcome journaled before is settled, no service message ever traps.
#[test]
fn should_refuse_new_work_before_the_memory_limit_and_keep_recovering() {
    use icjournal_client::{SetConfigArgs, TransferRequest};
    const MIB: u64 = 1 << 20;
    let mut opts = Setup::options();
    opts.max_payload_bytes = 32 * 1024;
    let s = opts.build();
    s.approve_service(user(1), 10_000_000);
    // An unknown outcome the ledger executed, left for recovery.
    s.lose_next_ledger_response(s.service, "icrc2_transfer_from");
    let unknown = run(s.client(user(1)).execute_transfer(TransferRequest {
        transfer: s.icrc2_spec(user(1), acct(user(9)), 1_000_000),
        lock_key: None,
        idempotency_key: None,
    }))
    .unwrap();
    assert_eq!(unknown.status, Status::Unknown);
    // A record left open, for the owner to report after the refusals begin.
    let open = record(&s, user(2), None).unwrap();

    // The service may use 48 MiB more stable memory than it has now, and refuses new work
    // with 32 MiB of it left; the canister's memory allocation ends exactly there.
    let stable_now = s.sim().stable_memory(s.service).unwrap().len() as u64;
    let limit = stable_now + 48 * MIB;
    let mut cfg = Setup::service_config(&s.opts, s.ledger);
    cfg.stable_memory_limit_bytes = limit;
    cfg.new_work_headroom_bytes = 32 * MIB;
    run(s.admin_client().set_config(SetConfigArgs {
        config: cfg,
        reason: "memory limit test".into(),
    }))
    .unwrap();
    let usage = s.sim().memory_usage(s.service).unwrap();
    let allocation = usage + 48 * MIB;
    s.sim()
        .update_settings(
            s.service,
            None,
            ic_sim::mgmt::CanisterSettings {
                memory_allocation: Some(candid::Nat::from(allocation)),
                ..Default::default()
            },
        )
        .unwrap();
    let first = s.sim().message_count();

    let mut created = 0u64;
    let err = loop {
        let who = user(3 + created % 5);
        let r = run(s.client(who).record_intent(RecordIntentArgs {
            label: "bulk".into(),
            payload: vec![created as u8; 32 * 1024],
            lock_key: None,
            idempotency_key: None,
        }));
        match r {
            Ok(id) => {
                report(&s, who, id, ok()).unwrap();
                created += 1;
                assert!(created < 5_000, "never refused");
            }
            Err(e) => break service_err(e),
        }
    };
    let ServiceError::Journal(JournalError::StorageFull {
        used_bytes,
        limit_bytes,
    }) = err
    else {
        panic!("expected StorageFull, got {err:?}");
    };
    assert_eq!(limit_bytes, limit);
    assert!(
        used_bytes + 32 * MIB > limit && used_bytes < limit,
        "{used_bytes} of {limit}"
    );
    assert!(created > 100, "refused after {created} records");

    // New work stays refused; everything else works.
    assert!(record(&s, user(8), None).is_err());
    assert_eq!(report(&s, user(2), open, ok()).unwrap(), Status::Succeeded);
    s.settle(600);
    assert_eq!(s.service_entry(unknown.entry_id).status, Status::Succeeded);
    // Operator verbs write audit records on a full journal.
    run(s
        .admin_client()
        .pause_recovery("a verb on a full journal".into()))
    .unwrap();
    run(s.admin_client().resume_recovery("and back".into())).unwrap();
    assert!(s.service_metrics().entries_total >= created);
    let sim = s.sim();
    let traps: Vec<_> = sim
        .trace()
        .iter()
        .filter(|r| r.index >= first && r.canister == s.service && r.trap.is_some())
        .map(|r| (r.method.clone(), r.trap.clone()))
        .collect();
    assert!(traps.is_empty(), "service messages trapped: {traps:?}");
    assert!(sim.memory_usage(s.service).unwrap() <= allocation);
    eprintln!(
        "{created} records ({} MiB of payload) before StorageFull at {} of {} MiB",
        created * 32 / 1024,
        used_bytes / MIB,
        limit / MIB
    );
}
