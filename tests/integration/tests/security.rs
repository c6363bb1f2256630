//! Every service endpoint called by the anonymous principal, a stranger, the owner, an admin
//! and a controller (I7: each caller sees and changes only its own entries), plus the public HTTP surface.

use candid::{Encode, Principal};
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
    let wasm = Wasms::service();
    let did = std::fs::read_to_string(ic_sim::build::workspace_root().join("candid/icjournal.did"))
        .unwrap();
    assert_eq!(
        icjournal_build::public_metadata(&wasm, icjournal_build::CANDID_SERVICE).unwrap(),
        Some(did.into_bytes())
    );
    // The installed module is this Wasm (the simulator runs the released artifact).
    let s = Setup::new();
    assert!(s.sim.borrow().module_hash(s.service).is_some());
}

/// Candid decoding bombs against the real Wasm: an argument whose values cost little to send
/// and much to decode or skip (`vec null` of ten million elements where an `opt` field
/// expects text — skipped under Candid's opt rule — or as an extra argument), and a claimed
/// length far beyond the bytes sent. Each is refused with the decoder's reason inside the
/// endpoint's quota, at a small fraction of the instruction limit, and nothing changes: the
/// same stable memory, the same entries.
#[test]
fn should_refuse_candid_decoding_bombs_cheaply_and_change_nothing() {
    use sha2::{Digest, Sha256};
    #[derive(candid::CandidType)]
    struct RecordIntentBomb {
        label: String,
        payload: serde_bytes::ByteBuf,
        lock_key: Vec<()>,
        idempotency_key: Option<String>,
    }
    const N: usize = 10_000_000;
    let s = Setup::new();
    // Recovery ticks write their own bookkeeping; with them paused, any change is the bombs'.
    run(s
        .admin_client()
        .pause_recovery("decoding bombs test".into()))
    .unwrap();
    let stable_hash = |s: &Setup| Sha256::digest(s.sim().stable_memory(s.service).unwrap());
    let before = (stable_hash(&s), s.service_metrics().entries_total);
    let first = s.sim().message_count();

    let mut bombs: Vec<(&str, Vec<u8>)> = vec![(
        "record_intent",
        Encode!(&RecordIntentBomb {
            label: "order".into(),
            payload: serde_bytes::ByteBuf::from(vec![1, 2, 3]),
            lock_key: vec![(); N],
            idempotency_key: None,
        })
        .unwrap(),
    )];
    // The valid arguments, then an extra `vec null` argument.
    let bomb = vec![(); N];
    for method in [
        "metrics",
        "get_config",
        "ledgers",
        "icjournal_commit",
        "controller_view",
    ] {
        bombs.push((method, Encode!(&bomb).unwrap()));
    }
    bombs.push(("get_entry", Encode!(&0u64, &bomb).unwrap()));
    bombs.push(("pause_recovery", Encode!(&"x", &bomb).unwrap()));
    // One `vec null` argument claiming 2^50 elements, no element bytes: every endpoint.
    let claimed = {
        let mut b = b"DIDL\x01\x6d\x7f\x01\x00".to_vec();
        leb128::write::unsigned(&mut b, 1 << 50).unwrap();
        b
    };
    for m in [
        "admin_act",
        "admin_audit",
        "admin_get_entry",
        "admin_list",
        "escrow_account",
        "execute_saga",
        "execute_transfer",
        "find_entry",
        "get_entry",
        "http_request",
        "list_entries",
        "list_failed",
        "list_unresolved",
        "pause_recovery",
        "record_intent",
        "report_result",
        "resume_recovery",
        "set_config",
        "submit_saga",
        "submit_transfer",
        "track_transfer",
    ] {
        bombs.push((m, claimed.clone()));
    }

    let queries = [
        "admin_audit",
        "admin_get_entry",
        "admin_list",
        "controller_view",
        "escrow_account",
        "find_entry",
        "get_config",
        "get_entry",
        "http_request",
        "ledgers",
        "list_entries",
        "list_failed",
        "list_unresolved",
        "metrics",
    ];
    for (method, bytes) in &bombs {
        for sender in [user(1), admin()] {
            let r = if queries.contains(method) {
                s.sim().query_call(s.service, sender, method, bytes.clone())
            } else {
                s.sim()
                    .update_call(s.service, sender, method, bytes.clone())
            };
            let reject = r.expect_err(&format!("{method} accepted a bomb"));
            assert!(
                reject.reject_message.contains("invalid argument")
                    || reject.reject_message.contains("Fail to decode")
                    || reject.reject_message.contains("inspect_message")
                    || reject.reject_message.contains("exceeds"),
                "{method}: {}",
                reject.reject_message
            );
        }
    }
    let sim = s.sim();
    let (worst, method) = sim
        .trace()
        .iter()
        .filter(|r| r.index >= first && r.canister == s.service)
        .map(|r| (r.instructions, r.method.clone()))
        .max()
        .unwrap();
    drop(sim);
    // The IC's limit is 40B instructions per update (5B per query); a refusal should cost what
    // reading the argument costs, not what decoding ten million values would.
    assert!(
        worst < 200_000_000,
        "{method:?} spent {worst} instructions on a bomb"
    );
    assert_eq!(
        (stable_hash(&s), s.service_metrics().entries_total),
        before,
        "a refused argument changed the journal"
    );
    eprintln!(
        "{} bombs, worst refusal {worst} instructions ({method:?})",
        bombs.len() * 2
    );
}
