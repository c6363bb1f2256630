//! Every service endpoint called by the anonymous principal, a stranger, the owner, an admin
//! and a controller (BRIEF §8, I7), plus the public HTTP surface.

use candid::Principal;
use icjournal::{AdminAction, AdminRequest, ListFilter, PageRequest, ReportedResult};
use icjournal_client::{
    AdminListArgs, AuditArgs, ClientError, ListArgs, RecordIntentArgs, ReportResultArgs,
    SagaRequest, SagaTransferStep, SetConfigArgs, TrackTransferArgs, TransferRequest,
};
use icjournal_tests::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Anyone, including the anonymous principal.
    Public,
    /// Any authenticated caller, on its own entries.
    User,
    /// Admins and controllers.
    Operator,
    /// Controllers only.
    Controller,
}

type Call = Box<dyn Fn(&Setup, Principal) -> Result<(), ClientError>>;

fn ok<T>(r: Result<T, ClientError>) -> Result<(), ClientError> {
    r.map(|_| ())
}

fn endpoints(owner_entry: u64) -> Vec<(&'static str, Role, Call)> {
    let page = PageRequest {
        start_after: None,
        limit: 10,
    };
    vec![
        (
            "record_intent",
            Role::User,
            Box::new(|s: &Setup, w| {
                ok(run(s.client(w).record_intent(RecordIntentArgs {
                    label: "l".into(),
                    payload: vec![1],
                    lock_key: None,
                    idempotency_key: None,
                })))
            }),
        ),
        (
            "report_result",
            Role::User,
            Box::new(move |s: &Setup, w| {
                ok(run(s.client(w).report_result(ReportResultArgs {
                    entry_id: owner_entry,
                    result: ReportedResult::Unknown {
                        message: "?".into(),
                    },
                })))
            }),
        ),
        (
            "get_entry",
            Role::User,
            Box::new(move |s: &Setup, w| ok(run(s.client(w).get_entry(owner_entry)))),
        ),
        (
            "list_entries",
            Role::User,
            Box::new(|s: &Setup, w| ok(run(s.client(w).list_entries(ListArgs::default())))),
        ),
        (
            "list_unresolved",
            Role::User,
            Box::new(move |s: &Setup, w| ok(run(s.client(w).list_unresolved(page.clone())))),
        ),
        (
            "list_failed",
            Role::User,
            Box::new(|s: &Setup, w| ok(run(s.client(w).list_failed(PageRequest::default())))),
        ),
        (
            "track_transfer",
            Role::User,
            Box::new(|s: &Setup, w| {
                ok(run(s.client(w).track_transfer(TrackTransferArgs {
                    ledger: s.ledger,
                    op: icjournal::LedgerOp::Icrc1Transfer(
                        icrc_ledger_types::icrc1::transfer::TransferArg {
                            from_subaccount: None,
                            to: acct(user(9)),
                            fee: None,
                            created_at_time: None,
                            memo: None,
                            amount: 1u8.into(),
                        },
                    ),
                    lock_key: None,
                    idempotency_key: None,
                })))
            }),
        ),
        (
            "execute_transfer",
            Role::User,
            Box::new(|s: &Setup, w| {
                ok(run(s.client(w).execute_transfer(TransferRequest {
                    transfer: s.icrc2_spec(w, acct(user(9)), 1),
                    lock_key: None,
                    idempotency_key: None,
                })))
            }),
        ),
        (
            "submit_transfer",
            Role::User,
            Box::new(|s: &Setup, w| {
                ok(run(s.client(w).submit_transfer(TransferRequest {
                    transfer: s.icrc2_spec(w, acct(user(9)), 1),
                    lock_key: None,
                    idempotency_key: None,
                })))
            }),
        ),
        (
            "execute_saga",
            Role::User,
            Box::new(|s: &Setup, w| {
                ok(run(s.client(w).execute_saga(SagaRequest {
                    steps: vec![SagaTransferStep {
                        transfer: s.icrc2_spec(w, acct(user(9)), 1),
                        compensation: None,
                    }],
                    lock_key: None,
                    idempotency_key: None,
                })))
            }),
        ),
        (
            "submit_saga",
            Role::User,
            Box::new(|s: &Setup, w| {
                ok(run(s.client(w).submit_saga(SagaRequest {
                    steps: vec![SagaTransferStep {
                        transfer: s.icrc2_spec(w, acct(user(9)), 1),
                        compensation: None,
                    }],
                    lock_key: None,
                    idempotency_key: None,
                })))
            }),
        ),
        (
            "escrow_account",
            Role::Public,
            Box::new(|s: &Setup, w| ok(run(s.client(w).escrow_account(user(1))))),
        ),
        (
            "ledgers",
            Role::Public,
            Box::new(|s: &Setup, w| ok(run(s.client(w).ledgers()))),
        ),
        (
            "metrics",
            Role::Public,
            Box::new(|s: &Setup, w| ok(run(s.client(w).metrics()))),
        ),
        (
            "admin_act",
            Role::Operator,
            Box::new(move |s: &Setup, w| {
                ok(run(s.client(w).admin_act(AdminRequest {
                    entry_id: owner_entry,
                    action: AdminAction::Cancel,
                    reason: "matrix".into(),
                    acknowledge_risk: None,
                })))
            }),
        ),
        (
            "admin_get_entry",
            Role::Operator,
            Box::new(move |s: &Setup, w| ok(run(s.client(w).admin_get_entry(owner_entry)))),
        ),
        (
            "admin_list",
            Role::Operator,
            Box::new(|s: &Setup, w| {
                ok(run(s.client(w).admin_list(AdminListArgs {
                    filter: ListFilter::default(),
                    page: PageRequest::default(),
                })))
            }),
        ),
        (
            "admin_audit",
            Role::Operator,
            Box::new(|s: &Setup, w| {
                ok(run(s.client(w).admin_audit(AuditArgs {
                    start_seq: 0,
                    limit: 5,
                })))
            }),
        ),
        (
            "get_config",
            Role::Operator,
            Box::new(|s: &Setup, w| ok(run(s.client(w).get_config()))),
        ),
        (
            "set_config",
            Role::Operator,
            Box::new(|s: &Setup, w| {
                ok(run(s.client(w).set_config(SetConfigArgs {
                    config: Setup::service_config(&s.opts, s.ledger),
                    reason: "matrix".into(),
                })))
            }),
        ),
        (
            "pause_recovery",
            Role::Operator,
            Box::new(|s: &Setup, w| ok(run(s.client(w).pause_recovery("matrix".into())))),
        ),
        (
            "resume_recovery",
            Role::Operator,
            Box::new(|s: &Setup, w| ok(run(s.client(w).resume_recovery("matrix".into())))),
        ),
        (
            "controller_view",
            Role::Controller,
            Box::new(|s: &Setup, w| ok(run(s.client(w).controller_view()))),
        ),
    ]
}

#[test]
fn should_authorize_every_endpoint_for_every_kind_of_caller() {
    let s = Setup::new();
    let owner = user(1);
    let owner_entry = run(s.client(owner).record_intent(RecordIntentArgs {
        label: "owned".into(),
        payload: vec![],
        lock_key: None,
        idempotency_key: None,
    }))
    .unwrap();
    let anon = Principal::anonymous();
    let callers = [
        ("anonymous", anon),
        ("stranger", stranger()),
        ("owner", owner),
        ("admin", admin()),
        ("controller", controller()),
    ];
    let mut failures = Vec::new();
    for (method, role, call) in endpoints(owner_entry) {
        for (name, who) in callers {
            let r = call(&s, who);
            let allowed = match role {
                Role::Public => true,
                Role::User => who != anon,
                Role::Operator => who == admin() || who == controller(),
                Role::Controller => who == controller(),
            };
            let ok = if allowed {
                // Allowed: the call may still fail for a business reason, never for rights.
                match &r {
                    Ok(()) => true,
                    Err(e) => !is_refused(e) && !matches!(e, ClientError::Transport { .. }),
                }
            } else {
                matches!(&r, Err(e) if is_refused(e))
            };
            // Owner-scoped calls on someone else's entry are NotFound (I7), not a leak.
            let scoped = matches!(method, "get_entry" | "report_result") && who != owner;
            let ok = if scoped && who != anon {
                matches!(
                    &r,
                    Err(ClientError::Service(
                        icjournal_client::ServiceError::Journal(
                            icjournal::JournalError::NotFound { .. }
                        )
                    ))
                )
            } else {
                ok
            };
            if !ok {
                failures.push(format!("{method} by {name}: {r:?}"));
            }
        }
    }
    // The self-call commit target: nobody but the canister itself.
    for (name, who) in callers {
        let r: Result<(), _> = s.update(s.service, who, "icjournal_commit", ());
        if r.is_ok() {
            failures.push(format!("icjournal_commit by {name} was accepted"));
        }
    }
    assert!(
        failures.is_empty(),
        "authorization matrix:\n{}",
        failures.join("\n")
    );
    // Only the owner's own report (Unknown) changed its entry; nobody else's call did.
    assert_eq!(
        s.service_entry(owner_entry).status,
        icjournal::Status::Unknown
    );
}

#[test]
fn should_serve_public_http_without_secrets() {
    let s = Setup::new();
    s.approve_service(user(1), 1_000_000);
    run(s.client(user(1)).execute_transfer(TransferRequest {
        transfer: s.icrc2_spec(user(1), acct(user(9)), 1_000),
        lock_key: Some("secret-lock-key".into()),
        idempotency_key: None,
    }))
    .unwrap();
    let m = s.http_get(s.service, "/metrics");
    assert_eq!(m.status_code, 200);
    let text = String::from_utf8(m.body).unwrap();
    assert!(text.contains("icjournal_entries_total 1"), "{text}");
    assert!(
        !text.to_lowercase().contains("cycles"),
        "cycles balance leaked: {text}"
    );
    let d = s.http_get(s.service, "/dashboard");
    assert_eq!(d.status_code, 200);
    let html = String::from_utf8(d.body).unwrap();
    assert!(
        !html.contains("secret-lock-key"),
        "lock key leaked on the dashboard"
    );
    assert!(
        !html.contains(&user(1).to_text()),
        "owner leaked on the dashboard"
    );
    let l = s.http_get(s.service, "/logs");
    assert_eq!(l.status_code, 200);
    assert_eq!(s.http_get(s.service, "/nope").status_code, 404);
    // The controller view has the cycles balance.
    let v = run(s.client(controller()).controller_view()).unwrap();
    assert!(v.cycles_balance > 0u8);
}

#[test]
fn should_limit_flows_in_flight_per_caller() {
    let s = Setup::options().max_in_flight(1).build();
    s.approve_service(user(1), 10_000_000);
    // Two submissions in the same round: the first holds the only slot until it completes.
    let c = s.client(user(1));
    let a = run(c.submit_transfer(TransferRequest {
        transfer: s.icrc2_spec(user(1), acct(user(9)), 1_000),
        lock_key: None,
        idempotency_key: None,
    }));
    assert!(a.is_ok(), "{a:?}");
    let b = run(c.submit_transfer(TransferRequest {
        transfer: s.icrc2_spec(user(1), acct(user(9)), 1_000),
        lock_key: None,
        idempotency_key: None,
    }));
    // The first still holds the only slot (its ledger call is in flight): refused.
    let e = b.unwrap_err();
    assert!(
        matches!(
            service_err(e),
            icjournal_client::ServiceError::Journal(icjournal::JournalError::QuotaExceeded { .. })
        ),
        "in-flight quota"
    );
    s.tick();
    // Once it completed, the slot is free again.
    assert!(run(c.submit_transfer(TransferRequest {
        transfer: s.icrc2_spec(user(1), acct(user(9)), 1_000),
        lock_key: None,
        idempotency_key: None,
    }))
    .is_ok());
    s.settle(120);
}

#[test]
fn should_ship_the_candid_interface_as_public_metadata() {
    use icjournal_client::wasm::{custom_section, CANDID_SERVICE_SECTION};
    let wasm = Wasms::service();
    let did = std::fs::read_to_string(ic_sim::build::workspace_root().join("candid/icjournal.did"))
        .unwrap();
    assert_eq!(
        custom_section(&wasm, CANDID_SERVICE_SECTION).unwrap(),
        Some(did.as_bytes())
    );
    // The installed module is this Wasm (the simulator runs the released artifact).
    let s = Setup::new();
    assert!(s.sim.borrow().module_hash(s.service).is_some());
}
