//! `/dashboard` as an operator on call sees it: served by the local replica's HTTP gateway and
//! rendered by a real browser (Debian's headless Chromium) at 1400x900, with transfers and a
//! saga stuck in manual review behind a trapping ledger. The browser is installed by
//! `scripts/setup-browser.sh` when missing; where that cannot work (not root, no apt-get) the
//! test fails saying so — a dashboard nobody rendered must not pass as a skipped test.
//!
//! `ICJOURNAL_UPDATE_SCREENSHOT=1` also writes the screenshot to `docs/dashboard.png` (the run
//! writes it under the target directory otherwise, so `cargo test` leaves the tree clean).

use candid::{Nat, Principal};
use ic_sim::Simulator;
use icjournal::{Entry, FlowResult, Metrics, Status, TransferSpec};
use icjournal_client::{SagaRequest, SagaTransferStep, ServiceError, TransferRequest};
use icjournal_tests::network::{ic_sim_replica::TimeMode, start_network, NetworkOptions};
use icjournal_tests::{acct, controller, user};
use icrc_ledger_types::icrc2::approve::{ApproveArgs, ApproveError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const AMOUNT: u64 = 1_000_000;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Installs Chromium with the project's own setup script when it is missing; panics with the
/// script's explanation when that is impossible here.
fn ensure_chromium() {
    if Path::new(CHROMIUM).exists() {
        return;
    }
    let script = repo_root().join("scripts/setup-browser.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success() && Path::new(CHROMIUM).exists(),
        "the dashboard test needs {CHROMIUM} (Debian's chromium) and {} could not install it \
         ({}):\n{}\n{}\nInstall it as root with `scripts/setup-browser.sh` (apt-get install \
         chromium), then run the tests again.",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// Runs headless Chromium with `args` then `url`, killed after `limit`; returns stdout.
fn chromium(profile: &Path, args: &[String], url: &str, limit: Duration) -> String {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,900",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait for chromium").is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("chromium did not finish within {limit:?} on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("chromium output");
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 DOM")
}

fn update<A: candid::utils::ArgumentEncoder, R: for<'a> candid::utils::ArgumentDecoder<'a>>(
    sim: &mut Simulator,
    canister: Principal,
    sender: Principal,
    method: &str,
    args: A,
) -> R {
    sim.update_candid(canister, sender, method, args)
        .unwrap_or_else(|e| panic!("{method}: {e:?}"))
}

fn icrc2(ledger: Principal, from: Principal, to: Principal, amount: u64) -> TransferSpec {
    TransferSpec::Icrc2 {
        ledger,
        spender_subaccount: None,
        from: acct(from),
        to: acct(to),
        amount: Nat::from(amount),
        fee: None,
    }
}

fn execute(sim: &mut Simulator, service: Principal, spec: TransferSpec, owner: Principal) -> u64 {
    let (r,): (Result<FlowResult, ServiceError>,) = update(
        sim,
        service,
        owner,
        "execute_transfer",
        (TransferRequest {
            transfer: spec,
            lock_key: None,
            idempotency_key: None,
        },),
    );
    r.expect("execute_transfer").entry_id
}

fn metrics(sim: &mut Simulator, service: Principal) -> Metrics {
    let (m,): (Metrics,) = sim
        .query_candid(service, user(0), "metrics", ())
        .expect("metrics");
    m
}

/// Text as Chromium serializes a text node: only `&`, `<`, `>` (and NBSP) are escaped.
fn dom_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `(url, initiator)` of every request Chromium started, from its net log (`--log-net-log`).
/// A page's subresources carry the page's origin as initiator; the browser's own background
/// requests say "not an origin".
fn page_requests(netlog: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(netlog).expect("chromium wrote its net log");
    let log: serde_json::Value = serde_json::from_str(&text).expect("net log is JSON");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .expect("URL_REQUEST_START_JOB in the net log's constants");
    log["events"]
        .as_array()
        .expect("net log events")
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .map(|e| {
            let p = &e["params"];
            (
                p["url"].as_str().unwrap_or_default().to_string(),
                p["initiator"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn should_show_an_operator_what_is_stuck_why_since_when_and_what_to_type_in_a_real_browser() {
    ensure_chromium();
    let t0 = Instant::now();
    let net = start_network(NetworkOptions {
        seed: Some(9),
        time: TimeMode::Manual,
        ..NetworkOptions::default()
    })
    .expect("network starts");
    eprintln!("dashboard: network up in {:?}", t0.elapsed());
    let (ledger, service) = (net.canisters.ledger, net.canisters.service);
    let (port, admin) = (net.replica.port(), net.admin.principal);

    // Two callers with funds; a few transfers that succeed; then the ledger traps on every
    // transfer: the outcome is unknown, resends trap too, and a memo lookup cannot prove
    // absence while the window is open — after max attempts, manual review, with the trap in
    // the reason. One of them is a saga's step: the saga waits for the operator on it.
    let (stuck, saga, late) = net
        .replica
        .with_sim(move |sim| {
            for u in [user(1), user(2)] {
                let _: (Nat,) = update(
                    sim,
                    ledger,
                    controller(),
                    "test_mint",
                    (acct(u), Nat::from(100 * AMOUNT)),
                );
                let (r,): (Result<Nat, ApproveError>,) = update(
                    sim,
                    ledger,
                    u,
                    "icrc2_approve",
                    (ApproveArgs {
                        from_subaccount: None,
                        spender: acct(service),
                        amount: Nat::from(50 * AMOUNT),
                        expected_allowance: None,
                        expires_at: None,
                        fee: None,
                        memo: None,
                        created_at_time: None,
                    },),
                );
                r.expect("approve");
            }
            for n in 0..3 {
                execute(
                    sim,
                    service,
                    icrc2(ledger, user(1), user(9), AMOUNT + n),
                    user(1),
                );
            }
            let () = update(sim, ledger, controller(), "test_set_trap", (true,));
            let stuck = vec![
                execute(
                    sim,
                    service,
                    icrc2(ledger, user(1), user(8), 7 * AMOUNT),
                    user(1),
                ),
                execute(
                    sim,
                    service,
                    icrc2(ledger, user(2), user(8), 3 * AMOUNT),
                    user(2),
                ),
            ];
            let (r,): (Result<FlowResult, ServiceError>,) = update(
                sim,
                service,
                user(2),
                "execute_saga",
                (SagaRequest {
                    steps: vec![SagaTransferStep {
                        transfer: icrc2(ledger, user(2), user(7), 2 * AMOUNT),
                        compensation: None,
                    }],
                    lock_key: None,
                    idempotency_key: None,
                },),
            );
            let saga = r.expect("execute_saga").entry_id;
            // Recovery runs on its timer as simulated time passes; the backoff spaces the
            // attempts out over hours.
            let start = sim.time_nanos();
            while metrics(sim, service).manual_queue_depth < 4 {
                assert!(
                    sim.time_nanos() - start < 48 * 3_600_000_000_000,
                    "not in manual review after 48h: {:?}",
                    metrics(sim, service)
                );
                sim.advance_time(Duration::from_secs(60));
                sim.tick();
            }
            // Some time on call later, a new transfer is still being recovered automatically.
            sim.advance_time(Duration::from_secs(3 * 3600));
            sim.tick();
            let late = execute(
                sim,
                service,
                icrc2(ledger, user(1), user(6), AMOUNT),
                user(1),
            );
            sim.advance_time(Duration::from_secs(2));
            sim.tick();
            (stuck, saga, late)
        })
        .expect("scenario");
    eprintln!("dashboard: scenario done at {:?}", t0.elapsed());
    let entry = |id: u64| -> Entry {
        net.replica
            .with_sim(move |sim| {
                let (r,): (Result<Entry, ServiceError>,) = sim
                    .query_candid(service, admin, "admin_get_entry", (id,))
                    .expect("admin_get_entry");
                r.expect("entry")
            })
            .unwrap()
    };
    let queue: Vec<Entry> = stuck.iter().chain([&saga]).map(|id| entry(*id)).collect();
    for e in &queue {
        assert_eq!(e.status, Status::ManualReview, "{e:#?}");
    }
    let saga_entry = &queue[2];
    let step = saga_entry.blocked_on.expect("the saga waits for its step");
    assert_eq!(entry(step).status, Status::ManualReview);
    assert_eq!(entry(late).status, Status::Unknown);

    let profile = std::env::temp_dir().join(format!("icjournal-chromium-{}", std::process::id()));
    let url = format!("http://{service}.localhost:{port}/dashboard");
    let limit = Duration::from_secs(120);
    let netlog = profile.with_extension("netlog.json");
    let dom = chromium(
        &profile,
        &[
            "--dump-dom".into(),
            format!("--log-net-log={}", netlog.display()),
        ],
        &url,
        limit,
    );
    eprintln!("dashboard: DOM rendered at {:?}", t0.elapsed());
    let _ = std::fs::write(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.html"),
        &dom,
    );

    // The health line first, then the queue.
    let health = dom
        .find("id=\"health\"")
        .unwrap_or_else(|| panic!("no health line: {dom}"));
    let queue_at = dom.find("id=\"queue\"").expect("queue");
    assert!(health < queue_at);
    assert!(
        dom.contains("class=\"health bad\" id=\"health\">4 need an operator, oldest "),
        "{dom}"
    );
    assert!(dom.contains("1 unresolved, recovering by itself"), "{dom}");
    // Each stuck entry: its row, its whole reason, since when, the verbs.
    for e in &queue {
        let id = e.id;
        assert!(
            dom.contains(&format!("id=\"entry-{id}\"")),
            "row {id}: {dom}"
        );
        let reason = e.manual_reason.as_deref().expect("reason");
        assert!(
            dom.contains(&dom_text(reason)),
            "reason of {id} ({reason}): {dom}"
        );
        assert!(dom.contains(&format!("icjournal show {id}")));
    }
    assert!(
        queue[0].manual_reason.as_deref().unwrap().contains("trap"),
        "the ledger's trap is in the reason: {:?}",
        queue[0].manual_reason
    );
    assert!(dom.contains(&format!(
        "icjournal resolve-succeeded {} --block B",
        stuck[0]
    )));
    assert!(dom.contains(&format!("icjournal retry {} --reason", stuck[1])));
    assert!(
        dom.contains(&format!("blocked on step #{step} (manual_review)")),
        "{dom}"
    );
    assert!(dom.contains(&format!("icjournal compensate {saga}")));
    assert!(dom.contains("in manual review since"));
    // The unresolved entry with its next attempt.
    assert!(dom.contains("id=\"unresolved\""));
    assert!(dom.contains(&format!("#{late}</td>")));
    // Refreshes itself; nothing loaded from anywhere else; no owner or cycles on a public page.
    assert!(
        dom.contains("<meta http-equiv=\"refresh\" content=\"30\">"),
        "{dom}"
    );
    // No absolute URL anywhere (attributes, inline style): everything is on the page itself.
    assert!(
        !dom.contains("://"),
        "an absolute URL on the dashboard: {dom}"
    );
    assert!(!dom.contains("<script") && !dom.contains("<img") && !dom.contains("<link"));
    // What the browser actually fetched for the page: every request the page initiated went
    // to the gateway (the browser's own update and account checks are not the page's).
    let origin = format!("http://{service}.localhost:{port}");
    let requests = page_requests(&netlog);
    assert!(
        requests.iter().any(|(u, _)| u == &url),
        "the netlog lacks the page itself: {requests:?}"
    );
    for (u, initiator) in &requests {
        if initiator == &origin {
            assert!(
                u.starts_with(&format!("{origin}/")),
                "the page requested {u}"
            );
        }
    }
    for u in [user(1), user(2)] {
        assert!(!dom.contains(&u.to_text()), "owner on the public dashboard");
    }
    assert!(!dom.to_lowercase().contains("cycles"));

    // The first screen at 1400x900, as the operator sees it.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &profile,
        &[
            format!("--screenshot={}", shot.display()),
            // Paint the whole page before the shot: without these the gateway's page was
            // captured with its lower part still blank.
            "--run-all-compositor-stages-before-draw".into(),
            "--virtual-time-budget=5000".into(),
        ],
        &url,
        limit,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    eprintln!("dashboard: screenshot at {:?}", t0.elapsed());
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if std::env::var_os("ICJOURNAL_UPDATE_SCREENSHOT").is_some() {
        let docs = repo_root().join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("dashboard.png"), &png).unwrap();
    }
    let _ = std::fs::remove_dir_all(&profile);
    let _ = std::fs::remove_file(&netlog);
}
