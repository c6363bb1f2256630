//! End-to-end: the real `icjournal` binary against icjournal's canisters on the local replica
//! (`icjournal_tests::network`), over the IC HTTP interface, as an operator would run it.
//! Entries reach the manual queue the way they do in production: the ledger traps on every
//! transfer (`test_set_trap`), recovery runs out of attempts.

use candid::{Decode, Encode, Nat, Principal};
use futures::executor::block_on;
use icjournal_client::{
    Client, ReportedResult, SetConfigArgs, Status, TransferRequest, TransferSpec, Transport,
    TransportError,
};
use icjournal_tests::ic_sim::Simulator;
use icjournal_tests::network::{start_network, LocalNetwork, NetworkOptions};
use icjournal_tests::{acct, controller, user};
use icrc_ledger_types::icrc2::approve::{ApproveArgs, ApproveError};
use serde_json::Value;
use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const AMOUNT: u64 = 1_000_000;

/// A secp256k1 key as dfx writes it (SEC1 with its EC PARAMETERS block): the stranger.
const STRANGER_SECP256K1: &str = "-----BEGIN EC PARAMETERS-----
BgUrgQQACg==
-----END EC PARAMETERS-----
-----BEGIN EC PRIVATE KEY-----
MHQCAQEEIAgy7nZEcVHkQ4Z1Kdqby8SwyAiyKDQmtbEHTIM+WNeBoAcGBSuBBAAK
oUQDQgAEgO87rJ1ozzdMvJyZQ+GABDqUxGLvgnAnTlcInV3NuhuPv4O3VGzMGzeB
N3d26cRxD99TPtm8uo2OuzKhSiq6EQ==
-----END EC PRIVATE KEY-----
";

/// `icjournal_client` over the simulator inside `Replica::with_sim`, as `caller`.
struct SimCaller<'b, 'a>(&'b RefCell<&'a mut Simulator>, Principal);

impl Transport for SimCaller<'_, '_> {
    fn call(
        &self,
        canister: Principal,
        method: &str,
        mode: icjournal_client::CallMode,
        arg: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, TransportError>> {
        let mut sim = self.0.borrow_mut();
        let r = match mode {
            icjournal_client::CallMode::Query => sim.query_call(canister, self.1, method, arg),
            icjournal_client::CallMode::Update => sim.update_call(canister, self.1, method, arg),
        };
        std::future::ready(r.map_err(|r| TransportError::Rejected {
            code: r.reject_code as u32,
            message: r.reject_message,
        }))
    }
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.out).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.out, self.err
            )
        })
    }

    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "stdout: {}\nstderr: {}", self.out, self.err);
        self
    }

    #[track_caller]
    fn fails(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.out, self.err
        );
        self
    }
}

struct Net {
    net: LocalNetwork,
    dir: PathBuf,
    admin_pem: PathBuf,
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

fn ed25519_pem(seed: &[u8]) -> (String, Principal) {
    let key = ic_ed25519::PrivateKey::generate_from_seed(seed);
    let principal = Principal::self_authenticating(key.public_key().serialize_rfc8410_der());
    (
        key.serialize_pkcs8_pem(ic_ed25519::PrivateKeyFormat::Pkcs8v1),
        principal,
    )
}

impl Net {
    fn start() -> Net {
        Net::start_with(NetworkOptions::default())
    }

    fn start_with(opts: NetworkOptions) -> Net {
        let net = start_network(opts).expect("the local network starts");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "icjournal-cli-e2e-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let admin_pem = dir.join("admin.pem");
        std::fs::write(&admin_pem, &net.admin.pem).unwrap();
        Net {
            net,
            dir,
            admin_pem,
        }
    }

    fn url(&self) -> String {
        self.net.replica.url().to_string()
    }

    fn service(&self) -> Principal {
        self.net.canisters.service
    }

    fn pem(&self, name: &str, pem: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    }

    /// Runs the binary against this network; `identity` None = anonymous.
    fn run_at(&self, url: &str, identity: Option<&Path>, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_icjournal"));
        cmd.args(["--network", url, "--canister", &self.service().to_text()]);
        if let Some(pem) = identity {
            cmd.arg("--identity-pem").arg(pem);
        }
        cmd.args(args)
            .env_remove("ICJOURNAL_NETWORK")
            .env_remove("ICJOURNAL_CANISTER")
            .env_remove("ICP_HOME")
            .env_remove("DFX_CONFIG_ROOT")
            .env("HOME", &self.dir)
            .env("XDG_DATA_HOME", self.dir.join("xdg"));
        let o = cmd.output().expect("the icjournal binary runs");
        Run {
            code: o.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&o.stdout).into(),
            err: String::from_utf8_lossy(&o.stderr).into(),
        }
    }

    fn run(&self, identity: Option<&Path>, args: &[&str]) -> Run {
        self.run_at(&self.url(), identity, args)
    }

    fn admin(&self, args: &[&str]) -> Run {
        self.run(Some(&self.admin_pem), args)
    }

    /// Entry status straight from the simulator (not through the CLI under test).
    fn status_of(&self, id: u64) -> Status {
        let (service, admin) = (self.service(), self.net.admin.principal);
        self.net
            .replica
            .with_sim(move |sim| {
                let sim = RefCell::new(sim);
                block_on(Client::new(service, SimCaller(&sim, admin)).admin_get_entry(id))
                    .expect("admin_get_entry")
                    .status
            })
            .unwrap()
    }

    /// `n` executed ICRC-2 transfers of user 1 that the ledger never executes (it traps on
    /// every transfer): recovery gives up after two attempts and they wait in the manual queue.
    fn manual_entries(&self, n: usize) -> Vec<u64> {
        let (service, ledger, admin) = (
            self.service(),
            self.net.canisters.ledger,
            self.net.admin.principal,
        );
        let ids = self
            .net
            .replica
            .with_sim(move |sim| {
                let sim = RefCell::new(sim);
                let ops = Client::new(service, SimCaller(&sim, admin));
                let mut cfg = block_on(ops.get_config()).expect("get_config").config;
                cfg.max_attempts = 2;
                block_on(ops.set_config(SetConfigArgs {
                    config: cfg,
                    reason: "e2e: reach the manual queue in seconds".into(),
                }))
                .expect("set_config");
                let approve = ApproveArgs {
                    from_subaccount: None,
                    spender: acct(service),
                    amount: Nat::from(100 * AMOUNT),
                    expected_allowance: None,
                    expires_at: None,
                    fee: None,
                    memo: None,
                    created_at_time: None,
                };
                let r = sim
                    .borrow_mut()
                    .update_call(ledger, user(1), "icrc2_approve", Encode!(&approve).unwrap())
                    .expect("icrc2_approve");
                Decode!(&r, Result<Nat, ApproveError>)
                    .unwrap()
                    .expect("approved");
                let trap = |on: bool| {
                    sim.borrow_mut()
                        .update_call(ledger, controller(), "test_set_trap", Encode!(&on).unwrap())
                        .expect("test_set_trap");
                };
                trap(true);
                let owner = Client::new(service, SimCaller(&sim, user(1)));
                let ids: Vec<u64> = (0..n)
                    .map(|i| {
                        block_on(owner.execute_transfer(TransferRequest {
                            transfer: TransferSpec::Icrc2 {
                                ledger,
                                spender_subaccount: None,
                                from: acct(user(1)),
                                to: acct(user(9)),
                                amount: Nat::from(AMOUNT + i as u64),
                                fee: None,
                            },
                            lock_key: Some(format!("order-{i}")),
                            idempotency_key: None,
                        }))
                        .expect("execute_transfer")
                        .entry_id
                    })
                    .collect();
                for _ in 0..600 {
                    let all_manual = ids.iter().all(|id| {
                        block_on(ops.admin_get_entry(*id)).expect("entry").status
                            == Status::ManualReview
                    });
                    if all_manual {
                        break;
                    }
                    let mut s = sim.borrow_mut();
                    s.advance_time(Duration::from_millis(500));
                    s.tick();
                }
                trap(false);
                ids
            })
            .unwrap();
        for id in &ids {
            assert_eq!(self.status_of(*id), Status::ManualReview, "entry {id}");
        }
        ids
    }

    /// `n` caller-driven records of user `owner`, reported succeeded: cheap entries for listing.
    fn records(&self, owner: u64, n: usize) -> Vec<u64> {
        let service = self.service();
        self.net
            .replica
            .with_sim(move |sim| {
                let sim = RefCell::new(sim);
                let c = Client::new(service, SimCaller(&sim, user(owner)));
                (0..n)
                    .map(|i| {
                        let id = block_on(c.record_intent(icjournal_client::RecordIntentArgs {
                            label: format!("record {i}"),
                            payload: vec![i as u8],
                            lock_key: None,
                            idempotency_key: None,
                        }))
                        .expect("record_intent");
                        block_on(c.report_result(icjournal_client::ReportResultArgs {
                            entry_id: id,
                            result: ReportedResult::Succeeded {
                                block_index: None,
                                reply: vec![],
                            },
                        }))
                        .expect("report_result");
                        id
                    })
                    .collect()
            })
            .unwrap()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The value of a `key   value` line of a key/value listing.
fn field(out: &str, key: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix(key)?;
        rest.starts_with("  ").then(|| rest.trim().to_string())
    })
}

fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn should_report_status_list_and_show_the_manual_queue() {
    let n = Net::start();
    let ids = n.manual_entries(2);

    let status = n.admin(&["status"]).ok();
    assert!(
        status
            .out
            .starts_with("ATTENTION: 2 entries in manual review"),
        "{}",
        status.out
    );
    assert_eq!(
        field(&status.out, "recovery").as_deref(),
        Some("running"),
        "{}",
        status.out
    );
    assert!(status
        .out
        .contains("not shown (the identity is not a controller)"));
    let s = n.admin(&["status", "--json"]).ok().json();
    assert_eq!(s["manual_queue_depth"], 2);
    assert_eq!(s["healthy"], false);
    assert_eq!(s["recovery_paused"], false);
    assert_eq!(s["metrics"]["entries_by_status"]["manual_review"], 2);
    // Retention is off in this network: nothing compacted, but the figures are reported.
    assert_eq!(s["metrics"]["summaries"], 0);
    assert_eq!(s["metrics"]["summaries_pruned"], 0);
    assert!(s["metrics"]["compacted_by_status"].is_object(), "{s}");
    assert!(s["metrics"]["audit_bytes"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(
        field(&status.out, "summaries").as_deref(),
        Some("0"),
        "{}",
        status.out
    );
    assert!(
        field(&status.out, "audit log").is_some_and(|v| v.ends_with(" MiB")),
        "{}",
        status.out
    );
    assert!(s["controller"].is_null());
    assert!(s["oldest_unresolved_age_ns"].as_u64().unwrap() > 0);
    // Public reads work anonymously.
    let anon = n.run(None, &["status", "--json"]).ok().json();
    assert_eq!(anon["manual_queue_depth"], 2);
    assert_eq!(anon["principal"], "2vxsx-fae");

    let list = n
        .admin(&["list", "--status", "manual_review", "--json"])
        .ok()
        .json();
    let items = list["items"].as_array().unwrap();
    let listed: Vec<u64> = items.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(listed, ids);
    for e in items {
        assert_eq!(e["status"], "manual_review");
        assert_eq!(e["kind"], "icrc2_transfer_from");
        assert_eq!(e["owner"], user(1).to_text());
        assert!(
            e["manual_reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{e}"
        );
        assert!(e["created_at"].as_str().unwrap().ends_with('Z'));
    }
    assert!(list["next"].is_null());
    let table = n.admin(&["list", "--status", "manual-review"]).ok();
    assert!(table.out.starts_with("ID  STATUS"), "{}", table.out);
    assert!(table.out.contains("2 entries"), "{}", table.out);
    assert!(table.out.contains(" ago"), "{}", table.out);

    let id = ids[0].to_string();
    let show = n.admin(&["show", &id]).ok();
    assert_eq!(
        field(&show.out, "attempts").as_deref(),
        Some("2"),
        "{}",
        show.out
    );
    assert_eq!(
        field(&show.out, "amount").as_deref(),
        Some("1000000"),
        "{}",
        show.out
    );
    for needle in [
        &format!("entry {id} — icrc2_transfer_from — MANUAL_REVIEW"),
        "manual reason",
        &format!("icjournal resolve-failed {id} [--acknowledge-risk]"),
        "history",
        "→ manual_review",
    ] {
        assert!(
            show.out.contains(needle),
            "`{needle}` missing in:\n{}",
            show.out
        );
    }
    let e = n.admin(&["show", &id, "--json"]).ok().json();
    assert_eq!(e["intent"]["type"], "transfer");
    assert_eq!(e["intent"]["op"]["type"], "icrc2_transfer_from");
    assert_eq!(e["intent"]["op"]["amount"], "1000000");
    assert!(
        e["last_error"].as_str().is_some_and(|m| m.contains("trap")),
        "{e}"
    );
    assert!(e["history"].as_array().unwrap().len() >= 2);
    assert!(e["outcome"].is_null());
    let missing = n.admin(&["show", "999"]).fails(4);
    assert!(
        missing.err.contains("there is no entry 999"),
        "{}",
        missing.err
    );
}

#[test]
fn should_refuse_resolve_failed_inside_the_window_until_the_risk_is_acknowledged() {
    let n = Net::start();
    let id = n.manual_entries(1)[0].to_string();
    let reason = "ledger trapped on every attempt; checked its blocks by hand";

    let refused = n
        .admin(&["resolve-failed", &id, "--reason", reason])
        .fails(3);
    assert!(
        refused.err.contains("the ledger could still execute entry")
            && refused.err.contains(
                "UTC; pass --acknowledge-risk if you accept that a new request could pay twice"
            ),
        "{}",
        refused.err
    );
    let j = n
        .admin(&["resolve-failed", &id, "--reason", reason, "--json"])
        .fails(3)
        .json();
    assert_eq!(j["error"]["kind"], "window_still_open");
    assert_eq!(j["error"]["exit_code"], 3);
    assert!(j["error"]["closes_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(n.status_of(id.parse().unwrap()), Status::ManualReview);

    let applied = n
        .admin(&[
            "resolve-failed",
            &id,
            "--acknowledge-risk",
            "--reason",
            reason,
        ])
        .ok();
    assert!(
        applied
            .out
            .contains("resolve-failed applied; it is now failed"),
        "{}",
        applied.out
    );
    assert_eq!(n.status_of(id.parse().unwrap()), Status::Failed);

    // Terminal now: the same verb is refused in plain words.
    let again = n
        .admin(&[
            "resolve-failed",
            &id,
            "--acknowledge-risk",
            "--reason",
            reason,
        ])
        .fails(3);
    assert!(
        again.err.contains(&format!(
            "entry {id} is not in the manual queue (it is failed)"
        )),
        "{}",
        again.err
    );

    // The audit trail shows the action, who did it, why, and the acknowledgment.
    let audit = n.admin(&["audit", "--entry", &id]).ok();
    assert!(
        audit
            .out
            .contains(&format!("resolve-failed (risk acknowledged): \"{reason}\"")),
        "{}",
        audit.out
    );
    assert!(
        audit.out.contains(&n.net.admin.principal.to_text()),
        "{}",
        audit.out
    );
    let records = n.admin(&["audit", "--entry", &id, "--json"]).ok().json();
    let records = records["records"].as_array().unwrap();
    assert!(records
        .iter()
        .all(|r| r["entry_id"] == id.parse::<u64>().unwrap()));
    let action = records
        .iter()
        .find(|r| r["event"]["type"] == "admin_action")
        .expect("admin_action record");
    assert_eq!(action["event"]["action"], "resolve_failed");
    assert_eq!(action["event"]["reason"], reason);
    assert_eq!(action["event"]["acknowledged_risk"], true);
    assert_eq!(action["actor"], n.net.admin.principal.to_text());
    // The last records of the whole trail include it too.
    let tail = n.admin(&["audit", "--limit", "3", "--json"]).ok().json();
    assert_eq!(tail["records"].as_array().unwrap().len(), 3);
}

#[test]
fn should_retry_an_entry_and_let_recovery_finish_it() {
    let n = Net::start();
    let id = n.manual_entries(1)[0];
    let out = n
        .admin(&["retry", &id.to_string(), "--reason", "ledger fixed"])
        .ok();
    assert!(
        out.out.contains("retry applied; it is now unknown"),
        "{}",
        out.out
    );
    // The recovery timer (wall clock, every 5 s) resends the transfer: the ledger executes it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let e = n.admin(&["show", &id.to_string(), "--json"]).ok().json();
        if e["status"] == "succeeded" {
            assert_eq!(e["outcome"]["result"], "succeeded");
            assert!(e["outcome"]["block_index"].as_u64().is_some(), "{e}");
            break;
        }
        assert!(Instant::now() < deadline, "not recovered: {e}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn should_refuse_resolve_succeeded_with_a_block_that_does_not_hold_the_transfer() {
    let n = Net::start();
    let id = n.manual_entries(1)[0].to_string();
    // Block 0 is a genesis mint: not this transfer.
    let r = n
        .admin(&[
            "resolve-succeeded",
            &id,
            "--block",
            "0",
            "--reason",
            "found it",
            "--json",
        ])
        .fails(3);
    let j = r.json();
    assert_eq!(j["error"]["kind"], "evidence_mismatch", "{j}");
    assert_eq!(j["error"]["block_index"], 0);
    assert!(
        r.err.contains(&format!(
            "block 0 does not prove entry {id}'s transfer, nothing was changed"
        )),
        "{}",
        r.err
    );
    // Without a block: the service says a transfer needs one.
    let r = n
        .admin(&["resolve-succeeded", &id, "--reason", "found it"])
        .fails(3);
    assert!(r.err.contains("block index"), "{}", r.err);
    assert_eq!(n.status_of(id.parse().unwrap()), Status::ManualReview);
}

#[test]
fn should_record_m_of_n_approvals_and_explain_them() {
    let (second_pem, second) = ed25519_pem(b"icjournal-cli e2e second operator");
    let n = Net::start_with(NetworkOptions {
        extra_admins: vec![second],
        ..NetworkOptions::default()
    });
    let second_pem = n.pem("second.pem", &second_pem);
    let id = n.manual_entries(1)[0].to_string();
    n.admin(&[
        "config",
        "set",
        "--set",
        "approvals_required=2",
        "--reason",
        "four eyes",
    ])
    .ok();

    let first = n
        .admin(&[
            "approve",
            &id,
            "--action",
            "cancel",
            "--acknowledge-risk",
            "--reason",
            "customer withdrew the order",
        ])
        .ok();
    assert!(
        first
            .out
            .contains("your approval of cancel is recorded: 1 of the 2 approvals needed"),
        "{}",
        first.out
    );
    assert!(
        first
            .out
            .contains("Not applied yet: 1 more operator must approve"),
        "{}",
        first.out
    );
    assert!(
        first.out.contains(&format!(
            "icjournal approve {id} --action cancel --acknowledge-risk"
        )),
        "{}",
        first.out
    );
    assert_eq!(n.status_of(id.parse().unwrap()), Status::ManualReview);
    // The same operator cannot count twice.
    let twice = n
        .admin(&[
            "approve",
            &id,
            "--action",
            "cancel",
            "--acknowledge-risk",
            "--reason",
            "again",
            "--json",
        ])
        .fails(3);
    assert_eq!(twice.json()["error"]["kind"], "already_approved");
    // The second operator's approval applies it.
    let second_run = n
        .run(
            Some(&second_pem),
            &[
                "cancel",
                &id,
                "--acknowledge-risk",
                "--reason",
                "agreed: order withdrawn",
                "--json",
            ],
        )
        .ok()
        .json();
    assert_eq!(second_run["result"], "applied");
    assert_eq!(second_run["status"], "cancelled");
    assert_eq!(second_run["action"]["action"], "cancel");
    assert_eq!(n.status_of(id.parse().unwrap()), Status::Cancelled);
    let audit = n.admin(&["audit", "--entry", &id]).ok();
    assert!(
        audit.out.contains("approved cancel (1 of 2)"),
        "{}",
        audit.out
    );
    assert!(audit.out.contains(&second.to_text()), "{}", audit.out);
}

#[test]
fn should_pause_and_resume_recovery() {
    let n = Net::start();
    n.admin(&["pause", "--reason", "ledger upgrade"]).ok();
    let s = n.admin(&["status", "--json"]).ok().json();
    assert_eq!(s["recovery_paused"], true);
    assert!(
        s["attention"][0].as_str().unwrap().contains("paused"),
        "{s}"
    );
    let human = n.admin(&["status"]).ok();
    assert!(
        human.out.starts_with("ATTENTION: recovery is paused"),
        "{}",
        human.out
    );
    assert_eq!(
        n.admin(&["config", "get", "--json"]).ok().json()["recovery_paused"],
        true
    );
    let r = n
        .admin(&["resume", "--reason", "ledger back", "--json"])
        .ok()
        .json();
    assert_eq!(r["recovery_paused"], false);
    let s = n.admin(&["status", "--json"]).ok().json();
    assert_eq!(s["recovery_paused"], false);
    assert_eq!(s["healthy"], true);
}

#[test]
fn should_get_and_set_the_configuration() {
    let n = Net::start();
    let got = n.admin(&["config", "get", "--json"]).ok().json();
    assert_eq!(got["config"]["max_attempts"], 6);
    assert_eq!(got["config"]["admins"][0], n.net.admin.principal.to_text());
    let human = n.admin(&["config", "get"]).ok();
    assert_eq!(
        field(&human.out, "max_attempts").as_deref(),
        Some("6"),
        "{}",
        human.out
    );

    let dry = n
        .admin(&["config", "set", "--set", "max_attempts=9", "--dry-run"])
        .ok();
    assert!(
        dry.out
            .contains("max_attempts: 6 → 9\ndry run: nothing written"),
        "{}",
        dry.out
    );
    let set = n
        .admin(&[
            "config",
            "set",
            "--set",
            "max_attempts=9",
            "--set",
            "recovery_interval_ns=10s",
            "--reason",
            "slower recovery during the incident",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(set["written"], true);
    assert_eq!(set["changes"].as_array().unwrap().len(), 2);
    let got = n.admin(&["config", "get", "--json"]).ok().json();
    assert_eq!(got["config"]["max_attempts"], 9);
    assert_eq!(got["config"]["recovery_interval_ns"], 10_000_000_000u64);

    // The summaries' period: null (the default) until set, shown both ways, and checked by the
    // service (below one day: refused, nothing written).
    assert!(got["config"]["summary_retention_ns"].is_null(), "{got}");
    assert_eq!(
        field(
            &n.admin(&["config", "get"]).ok().out,
            "summary_retention_ns"
        )
        .as_deref(),
        Some("none (the service's default, 90 days)")
    );
    let short = n
        .admin(&[
            "config",
            "set",
            "--set",
            "summary_retention_ns=1h",
            "--reason",
            "x",
            "--json",
        ])
        .fails(3);
    assert!(short.err.contains("summary_retention_ns"), "{}", short.err);
    n.admin(&[
        "config",
        "set",
        "--set",
        "summary_retention_ns=30d",
        "--reason",
        "keep summaries a month",
    ])
    .ok();
    let keep = n.admin(&["config", "get", "--json"]).ok().json();
    assert_eq!(
        keep["config"]["summary_retention_ns"],
        30 * 86_400_000_000_000u64
    );
    let got = keep;

    // Round trip through a file: what `config get --json` prints is accepted back.
    let mut edited = got.clone();
    edited["config"]["max_attempts"] = 7.into();
    let file = n.pem("config.json", &edited.to_string());
    let out = n
        .admin(&[
            "config",
            "set",
            "--file",
            file.to_str().unwrap(),
            "--reason",
            "back",
        ])
        .ok();
    assert!(
        out.out.contains("max_attempts: 9 → 7\nwritten"),
        "{}",
        out.out
    );
    // Nothing to change, a typo, an invalid value: each refused, nothing written.
    let same = n
        .admin(&[
            "config",
            "set",
            "--file",
            file.to_str().unwrap(),
            "--reason",
            "again",
        ])
        .fails(1);
    assert!(same.err.contains("nothing to change"), "{}", same.err);
    let typo = n
        .admin(&[
            "config",
            "set",
            "--set",
            "max_attempt=3",
            "--reason",
            "typo",
        ])
        .fails(1);
    assert!(
        typo.err
            .contains("unknown configuration field `max_attempt`"),
        "{}",
        typo.err
    );
    let invalid = n
        .admin(&[
            "config",
            "set",
            "--set",
            "approvals_required=0",
            "--reason",
            "x",
            "--json",
        ])
        .fails(3);
    assert_eq!(invalid.json()["error"]["kind"], "invalid_config");
    assert!(
        invalid.err.contains("approvals_required"),
        "{}",
        invalid.err
    );
    assert_eq!(
        n.admin(&["config", "get", "--json"]).ok().json()["config"]["max_attempts"],
        7
    );
}

#[test]
fn should_refuse_state_changes_without_a_reason_before_calling() {
    let n = Net::start();
    for args in [
        vec!["retry", "1"],
        vec!["resolve-failed", "1", "--reason", "   "],
        vec!["pause"],
        vec!["config", "set", "--set", "max_attempts=3"],
        vec!["approve", "1", "--action", "retry"],
    ] {
        let r = n.admin(&args).fails(1);
        assert!(r.err.contains("--reason"), "{args:?}: {}", r.err);
    }
    // Nothing is sent: the same refusal against a port where nothing listens.
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let r = n
        .run_at(&dead, Some(&n.admin_pem), &["retry", "1"])
        .fails(1);
    assert!(
        r.err.contains("retry changes the journal: pass --reason"),
        "{}",
        r.err
    );
    // Other local refusals: flags that do not go with the action, bad arguments.
    n.admin(&[
        "approve", "1", "--action", "retry", "--block", "3", "--reason", "x",
    ])
    .fails(1);
    n.admin(&["list", "--status", "stuck"]).fails(1);
    n.admin(&["list", "--older-than", "soon"]).fails(1);
    n.admin(&["frobnicate"]).fails(1);
    assert!(!n.status_of_pause());
}

impl Net {
    fn status_of_pause(&self) -> bool {
        self.admin(&["config", "get", "--json"]).ok().json()["recovery_paused"]
            .as_bool()
            .unwrap()
    }
}

#[test]
fn should_tell_a_stranger_it_is_not_authorized() {
    let n = Net::start();
    let pem = n.pem("stranger.pem", STRANGER_SECP256K1);
    let stranger =
        ic_agent::identity::Secp256k1Identity::from_pem(STRANGER_SECP256K1.as_bytes()).unwrap();
    let principal = ic_agent::Identity::sender(&stranger).unwrap().to_text();
    // A query: the service's typed refusal.
    let r = n.run(Some(&pem), &["list"]).fails(3);
    assert!(
        r.err.contains(&format!("not authorized: this needs operator (admin or controller), and principal {principal} is not one")),
        "{}",
        r.err
    );
    // An update: refused by the ingress filter before it runs, explained the same way.
    let r = n
        .run(Some(&pem), &["pause", "--reason", "let me in", "--json"])
        .fails(3);
    assert_eq!(r.json()["error"]["kind"], "not_authorized");
    assert!(
        r.err.contains("pause recovery was refused: not authorized"),
        "{}",
        r.err
    );
    assert!(!n.status_of_pause());
    // Anonymous: public reads work; changes are refused before calling.
    n.run(None, &["metrics"]).ok();
    let r = n.run(None, &["retry", "1", "--reason", "x"]).fails(3);
    assert!(r.err.contains("needs an operator identity"), "{}", r.err);
    let r = n.run(None, &["config", "get"]).fails(3);
    assert!(
        r.err.contains("anonymous identity may not do this"),
        "{}",
        r.err
    );
}

#[test]
fn should_report_a_dead_port_as_a_network_failure() {
    let n = Net::start();
    let dead = format!("http://127.0.0.1:{}", dead_port());
    for args in [vec!["status"], vec!["pause", "--reason", "x"]] {
        let r = n.run_at(&dead, Some(&n.admin_pem), &args).fails(2);
        assert!(
            r.err
                .contains(&format!("cannot reach the replica at {dead}")),
            "{}",
            r.err
        );
    }
    let j = n
        .run_at(&dead, Some(&n.admin_pem), &["status", "--json"])
        .fails(2)
        .json();
    assert_eq!(j["error"]["kind"], "network");
}

/// A proxy that forwards requests to the replica but, while `drop_calls` is set, drops the
/// connection of every update call after the replica answered it: the call is applied, its
/// caller never learns so.
fn lossy_proxy(upstream: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            std::thread::spawn(move || {
                let _ = relay(client, upstream);
            });
        }
    });
    port
}

fn read_head(s: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((head, body))
}

/// One request per connection (`Connection: close` both ways), so nothing is pooled.
fn with_close(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .trim_end()
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

fn relay(mut client: TcpStream, upstream: u16) -> std::io::Result<()> {
    let (head, body) = read_head(&mut client)?;
    let is_call = head.lines().next().is_some_and(|l| l.contains("/call"));
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(with_close(&head).as_bytes())?;
    up.write_all(&body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    if is_call {
        // Applied by the replica; the answer is lost on the way back.
        return Ok(());
    }
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(resp.len(), |p| p + 4);
    let resp_head = String::from_utf8_lossy(&resp[..split]).to_string();
    client.write_all(with_close(&resp_head).as_bytes())?;
    client.write_all(&resp[split..])?;
    Ok(())
}

#[test]
fn should_report_an_update_whose_answer_was_lost_as_an_unknown_outcome() {
    let n = Net::start();
    let proxy = format!("http://127.0.0.1:{}", lossy_proxy(n.net.replica.port()));
    // Queries pass through the proxy.
    n.run_at(&proxy, Some(&n.admin_pem), &["config", "get"])
        .ok();
    let r = n
        .run_at(
            &proxy,
            Some(&n.admin_pem),
            &["pause", "--reason", "incident", "--json"],
        )
        .fails(5);
    assert_eq!(r.json()["error"]["kind"], "unknown_outcome");
    assert!(
        r.err
            .contains("pause recovery may or may not have been applied")
            && r.err.contains("Check with `icjournal config get`"),
        "{}",
        r.err
    );
    // It was applied: exactly why the exit code is not "failed".
    assert!(n.status_of_pause());
}

#[test]
fn should_sign_with_named_dfx_and_icp_cli_identities() {
    let n = Net::start();
    let admin = n.net.admin.principal.to_text();
    // dfx: ~/.config/dfx/identity/NAME/identity.pem (HOME is the test folder).
    let dfx = n.dir.join(".config/dfx/identity/ops");
    std::fs::create_dir_all(&dfx).unwrap();
    std::fs::write(dfx.join("identity.pem"), &n.net.admin.pem).unwrap();
    let s = n
        .run(None, &["--identity", "ops", "status", "--json"])
        .ok()
        .json();
    assert_eq!(s["principal"], admin);
    n.run(None, &["--identity", "ops", "list"]).ok();
    // icp-cli: identity_list.json + keys/NAME.pem under $XDG_DATA_HOME/icp-cli/identity.
    let icp = n.dir.join("xdg/icp-cli/identity");
    std::fs::create_dir_all(icp.join("keys")).unwrap();
    std::fs::write(icp.join("keys/icp-ops.pem"), &n.net.admin.pem).unwrap();
    let list = serde_json::json!({"v": 1, "identities": {"icp-ops": {
        "kind": "pem", "format": "plaintext", "algorithm": "ed25519", "principal": admin,
    }}});
    std::fs::write(icp.join("identity_list.json"), list.to_string()).unwrap();
    let s = n
        .run(None, &["--identity", "icp-ops", "status", "--json"])
        .ok()
        .json();
    assert_eq!(s["principal"], admin);
    // An explicit folder, and a name that is nowhere.
    let s = n
        .run(
            None,
            &[
                "--identity",
                "ops",
                "--identity-dir",
                n.dir.join(".config/dfx/identity").to_str().unwrap(),
                "status",
                "--json",
            ],
        )
        .ok()
        .json();
    assert_eq!(s["principal"], admin);
    let r = n.run(None, &["--identity", "nobody", "status"]).fails(1);
    assert!(r.err.contains("no identity `nobody`"), "{}", r.err);
}

#[test]
fn should_print_metrics_raw_and_parsed() {
    let n = Net::start();
    n.manual_entries(1);
    let raw = n.run(None, &["metrics"]).ok();
    assert!(
        raw.out
            .contains("# TYPE icjournal_manual_queue_depth gauge"),
        "{}",
        raw.out
    );
    assert!(
        raw.out.contains("icjournal_manual_queue_depth 1 "),
        "{}",
        raw.out
    );
    let j = n.run(None, &["metrics", "--json"]).ok().json();
    let depth = j["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "icjournal_manual_queue_depth")
        .expect("sample");
    assert_eq!(depth["value"], 1.0);
    assert_eq!(depth["type"], "gauge");
    let parsed = n.run(None, &["metrics", "--parsed"]).ok();
    assert!(parsed.out.starts_with("NAME"), "{}", parsed.out);
    assert!(parsed.out.contains("icjournal_entries "), "{}", parsed.out);
}

#[test]
fn should_page_filter_and_follow_long_listings() {
    let n = Net::start();
    let mine = n.records(3, 7);
    let theirs = n.records(4, 2);
    let ids = |v: &Value| -> Vec<u64> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect()
    };
    let first = n.admin(&["list", "--limit", "3", "--json"]).ok().json();
    assert_eq!(ids(&first), mine[..3]);
    let next = first["next"].as_u64().expect("a next cursor");
    let second = n
        .admin(&[
            "list",
            "--limit",
            "3",
            "--after",
            &next.to_string(),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(ids(&second), mine[3..6]);
    let human = n.admin(&["list", "--limit", "3"]).ok();
    assert!(
        human.out.contains(&format!("more: add --after {next}")),
        "{}",
        human.out
    );
    let all = n.admin(&["list", "--all", "--json"]).ok().json();
    assert_eq!(ids(&all), [mine.clone(), theirs.clone()].concat());
    assert!(all["next"].is_null());
    let owner = user(4).to_text();
    let by_owner = n.admin(&["list", "--owner", &owner, "--json"]).ok().json();
    assert_eq!(ids(&by_owner), theirs);
    let records = n
        .admin(&[
            "list",
            "--kind",
            "record",
            "--status",
            "succeeded",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(ids(&records).len(), 9);
    let none = n.admin(&["list", "--kind", "saga", "--json"]).ok().json();
    assert!(ids(&none).is_empty());
    let old = n
        .admin(&["list", "--older-than", "6h", "--json"])
        .ok()
        .json();
    assert!(
        ids(&old).is_empty(),
        "entries were created seconds ago: {old}"
    );
    let recent = n
        .admin(&["list", "--older-than", "0s", "--json"])
        .ok()
        .json();
    assert_eq!(ids(&recent).len(), 9);
}

/// `--help` is the reference a script writer reads: every command and every exit code.
#[test]
fn should_document_the_commands_and_exit_codes_in_help() {
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_icjournal"))
            .args(args)
            .env_remove("ICJOURNAL_NETWORK")
            .env_remove("ICJOURNAL_CANISTER")
            .output()
            .expect("the icjournal binary runs");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for needle in [
        "status",
        "metrics",
        "list",
        "show",
        "audit",
        "retry",
        "resolve-succeeded",
        "resolve-failed",
        "compensate",
        "cancel",
        "approve",
        "pause",
        "resume",
        "config get",
        "config set",
        "Exit codes",
        "0  ok",
        "1  usage",
        "2  network",
        "3  refused by the service",
        "4  not found",
        "5  unknown outcome",
        "6  rejected",
    ] {
        assert!(out.contains(needle), "`{needle}` missing in --help:\n{out}");
    }
    let (code, out, _) = run(&["resolve-failed", "--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("--acknowledge-risk") && out.contains("--reason TEXT"),
        "{out}"
    );
    // No command, an unknown option, an option of another verb: usage errors, exit 1.
    assert_eq!(run(&[]).0, 1);
    let (code, _, err) = run(&["status", "--frobnicate"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown option `--frobnicate`"), "{err}");
    let (code, out, err) = run(&["list", "--block", "3", "--json"]);
    assert_eq!(code, 1);
    assert!(err.contains("--block does not apply to `list`"), "{err}");
    let j: Value = serde_json::from_str(&out).expect("a JSON error object");
    assert_eq!(j["error"]["exit_code"], 1);
    assert_eq!(j["error"]["kind"], "usage");
}
