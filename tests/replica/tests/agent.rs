//! The local replica against the real `ic-agent` (default verification: root key fetched,
//! certificates and query signatures verified), running the ic-sim test canister.

use candid::{CandidType, Decode, Encode, Principal};
use ic_agent::agent::{RejectCode, RejectResponse};
use ic_agent::identity::{BasicIdentity, Prime256v1Identity, Secp256k1Identity};
use ic_agent::{Agent, AgentError, Identity, Signature};
use ic_sim_replica::{KeySource, Replica, ReplicaConfig, TimeMode};
use ic_transport_types::{Delegation, EnvelopeContent};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

fn test_canister_wasm() -> Vec<u8> {
    ic_sim::build::canister_wasm("ic-sim-test-canister")
}

fn start(config: ReplicaConfig) -> (Replica, Principal) {
    let wasm = test_canister_wasm();
    Replica::start(config, move |i| {
        i.install("test", wasm, Encode!(&Some(7u64)).unwrap())
            .map_err(|e| e.to_string())
    })
    .expect("replica starts")
}

fn ed25519_identity(n: u8) -> BasicIdentity {
    BasicIdentity::from_raw_key(&[n; 32])
}

async fn agent(replica: &Replica, identity: impl Identity + 'static) -> Agent {
    let agent = Agent::builder()
        .with_url(replica.url())
        .with_identity(identity)
        .build()
        .expect("agent");
    agent.fetch_root_key().await.expect("root key");
    agent
}

async fn get(agent: &Agent, c: Principal) -> u64 {
    let r = agent
        .query(&c, "get")
        .with_arg(Encode!().unwrap())
        .call()
        .await
        .expect("query get");
    Decode!(&r, u64).unwrap()
}

async fn inc(agent: &Agent, c: Principal) -> Result<u64, AgentError> {
    let r = agent
        .update(&c, "inc")
        .with_arg(Encode!().unwrap())
        .call_and_wait()
        .await?;
    Ok(Decode!(&r, u64).unwrap())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn http_status(e: &AgentError) -> Option<(u16, String)> {
    match e {
        AgentError::HttpError(p) => Some((p.status, String::from_utf8_lossy(&p.content).into())),
        _ => None,
    }
}

#[test]
fn should_serve_the_root_key_and_verified_queries() {
    let (replica, c) = start(ReplicaConfig::default());
    rt().block_on(async {
        let agent = agent(&replica, ed25519_identity(1)).await;
        assert_eq!(agent.read_root_key(), replica.root_key());
        let status = agent.status().await.unwrap();
        assert_eq!(status.replica_health_status.as_deref(), Some("healthy"));
        // Query signatures are verified by default: this fetches /subnet from read_state and
        // checks the node's ed25519 signature.
        assert_eq!(get(&agent, c).await, 0);
        let init = agent
            .query(&c, "init_arg")
            .with_arg(Encode!().unwrap())
            .call()
            .await
            .unwrap();
        assert_eq!(Decode!(&init, u64).unwrap(), 7);
    });
}

#[test]
fn should_refuse_query_responses_signed_by_another_root() {
    // An agent holding another replica's root key must reject this replica's certificates
    // (the /subnet certificate behind query signatures).
    let (replica, c) = start(ReplicaConfig::default());
    let (other, _) = start(ReplicaConfig::default());
    rt().block_on(async {
        let agent = Agent::builder()
            .with_url(replica.url())
            .with_identity(ed25519_identity(1))
            .build()
            .unwrap();
        agent.set_root_key(other.root_key().to_vec());
        let err = agent
            .query(&c, "get")
            .with_arg(Encode!().unwrap())
            .call()
            .await
            .unwrap_err();
        assert!(
            matches!(err, AgentError::CertificateVerificationFailed()),
            "{err:?}"
        );
    });
}

#[test]
fn should_run_updates_through_the_synchronous_call_and_its_certificate() {
    let (replica, c) = start(ReplicaConfig::default());
    rt().block_on(async {
        for id in [0u8, 1, 2] {
            // ed25519, secp256k1 and P-256 senders.
            let agent = match id {
                0 => agent(&replica, ed25519_identity(3)).await,
                1 => {
                    agent(
                        &replica,
                        Secp256k1Identity::from_private_key(
                            k256::SecretKey::from_slice(&[4; 32]).unwrap(),
                        ),
                    )
                    .await
                }
                _ => {
                    agent(
                        &replica,
                        Prime256v1Identity::from_private_key(
                            p256::SecretKey::from_slice(&[5; 32]).unwrap(),
                        ),
                    )
                    .await
                }
            };
            assert_eq!(inc(&agent, c).await.unwrap(), u64::from(id) + 1);
        }
        let agent = agent(&replica, ed25519_identity(3)).await;
        assert_eq!(get(&agent, c).await, 3);
        // Certified canister information.
        let hash = agent
            .read_state_canister_module_hash(c)
            .await
            .expect("module hash");
        assert_eq!(
            hash,
            replica
                .with_sim(move |s| s.module_hash(c))
                .unwrap()
                .unwrap()
        );
        let controllers = agent
            .read_state_canister_controllers(c)
            .await
            .expect("controllers");
        assert_eq!(controllers, vec![ic_sim::Simulator::default_controller()]);
    });
}

#[test]
fn should_run_updates_through_the_asynchronous_call_and_read_state_polling() {
    // A zero sync-call timeout answers every v3/v4 call with 202: ic-agent then polls
    // read_state for request_status, as it does against a busy replica.
    let (replica, c) = start(ReplicaConfig {
        sync_call_timeout: Duration::ZERO,
        ..ReplicaConfig::default()
    });
    rt().block_on(async {
        let agent = agent(&replica, ed25519_identity(6)).await;
        assert_eq!(inc(&agent, c).await.unwrap(), 1);
        // The v2 endpoint by hand: 202, then the agent's polling finds the reply.
        let signed = agent
            .update(&c, "inc")
            .with_arg(Encode!().unwrap())
            .sign()
            .unwrap();
        let (status, body) = http(
            &replica,
            "POST",
            &format!("/api/v2/canister/{c}/call"),
            None,
            &signed.signed_update,
        );
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
        let (reply, _cert) = agent.wait(&signed.request_id, c).await.unwrap();
        assert_eq!(Decode!(&reply, u64).unwrap(), 2);
        // Another sender may not read that request's status.
        let stranger = agent_for(&replica, ed25519_identity(9)).await;
        let err = stranger
            .request_status_raw(&signed.request_id, c)
            .await
            .unwrap_err();
        assert_eq!(http_status(&err).map(|s| s.0), Some(403), "{err:?}");
    });
}

async fn agent_for(replica: &Replica, identity: impl Identity + 'static) -> Agent {
    agent(replica, identity).await
}

#[test]
fn should_report_the_canister_reject_code_when_the_canister_traps() {
    let (replica, c) = start(ReplicaConfig::default());
    rt().block_on(async {
        let agent = agent(&replica, ed25519_identity(7)).await;
        let err = agent
            .update(&c, "inc_and_trap")
            .with_arg(Encode!().unwrap())
            .call_and_wait()
            .await
            .unwrap_err();
        match err {
            AgentError::CertifiedReject {
                reject:
                    RejectResponse {
                        reject_code,
                        reject_message,
                        ..
                    },
                ..
            } => {
                assert_eq!(reject_code, RejectCode::CanisterError);
                assert!(reject_message.contains("inc_and_trap traps on purpose"), "{reject_message}");
            }
            other => panic!("expected a certified reject, got {other:?}"),
        }
        // The trap rolled the increment back.
        assert_eq!(get(&agent, c).await, 0);
        // A query to a method that does not exist: an (uncertified, signed) reject.
        let err = agent
            .query(&c, "no_such_method")
            .with_arg(Encode!().unwrap())
            .call()
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                AgentError::UncertifiedReject { reject, .. } if reject.reject_code == RejectCode::CanisterError
            ),
            "{err:?}"
        );
    });
}

#[test]
fn should_refuse_an_expired_request() {
    let (replica, c) = start(ReplicaConfig::default());
    rt().block_on(async {
        let agent = agent(&replica, ed25519_identity(8)).await;
        let past = SystemTime::now() - Duration::from_secs(60);
        let err = agent
            .update(&c, "inc")
            .with_arg(Encode!().unwrap())
            .expire_at(past)
            .call_and_wait()
            .await
            .unwrap_err();
        let (status, msg) = http_status(&err).unwrap_or_else(|| panic!("{err:?}"));
        assert_eq!(status, 400);
        assert!(
            msg.starts_with(
                "Invalid request expiry: Specified ingress_expiry not within expected range"
            ),
            "{msg}"
        );
        // Too far in the future is refused too (5 min TTL + 30 s drift).
        let err = agent
            .update(&c, "inc")
            .with_arg(Encode!().unwrap())
            .expire_after(Duration::from_secs(6 * 60))
            .call_and_wait()
            .await
            .unwrap_err();
        assert_eq!(http_status(&err).map(|s| s.0), Some(400), "{err:?}");
        assert_eq!(get(&agent, c).await, 0, "a refused call must not run");
    });
}

/// Signs with a real key but claims another sender, or corrupts its signatures.
struct Forger {
    inner: BasicIdentity,
    claimed_sender: Option<Principal>,
    flip_signature_bit: bool,
}

impl Identity for Forger {
    fn sender(&self) -> Result<Principal, String> {
        match self.claimed_sender {
            Some(p) => Ok(p),
            None => self.inner.sender(),
        }
    }
    fn public_key(&self) -> Option<Vec<u8>> {
        self.inner.public_key()
    }
    fn sign(&self, content: &EnvelopeContent) -> Result<Signature, String> {
        let mut s = self.inner.sign(content)?;
        if self.flip_signature_bit {
            if let Some(sig) = s.signature.as_mut() {
                sig[0] ^= 1;
            }
        }
        Ok(s)
    }
    fn sign_delegation(&self, content: &Delegation) -> Result<Signature, String> {
        self.inner.sign_delegation(content)
    }
}

#[test]
fn should_refuse_a_sender_that_is_not_the_signing_key() {
    let (replica, c) = start(ReplicaConfig::default());
    rt().block_on(async {
        let victim = ed25519_identity(10).sender().unwrap();
        let agent = agent(
            &replica,
            Forger {
                inner: ed25519_identity(11),
                claimed_sender: Some(victim),
                flip_signature_bit: false,
            },
        )
        .await;
        let err = inc(&agent, c).await.unwrap_err();
        let (status, msg) = http_status(&err).unwrap_or_else(|| panic!("{err:?}"));
        assert_eq!(status, 400);
        assert!(
            msg.contains(&format!(
                "The user id {victim} does not match the public key"
            )),
            "{msg}"
        );
        let err = agent
            .query(&c, "get")
            .with_arg(Encode!().unwrap())
            .call()
            .await
            .unwrap_err();
        assert_eq!(http_status(&err).map(|s| s.0), Some(400), "{err:?}");
    });
}

#[test]
fn should_refuse_a_tampered_signature() {
    let (replica, c) = start(ReplicaConfig::default());
    rt().block_on(async {
        let agent = agent(
            &replica,
            Forger {
                inner: ed25519_identity(12),
                claimed_sender: None,
                flip_signature_bit: true,
            },
        )
        .await;
        let err = inc(&agent, c).await.unwrap_err();
        let (status, msg) = http_status(&err).unwrap_or_else(|| panic!("{err:?}"));
        assert_eq!(status, 400);
        assert!(msg.starts_with("Invalid signature:"), "{msg}");
        let honest = agent_for(&replica, ed25519_identity(12)).await;
        assert_eq!(get(&honest, c).await, 0);
    });
}

#[test]
fn should_fire_timers_only_when_manual_time_is_advanced() {
    let (replica, c) = start(ReplicaConfig {
        time: TimeMode::Manual,
        keys: KeySource::Seed(1),
        ..ReplicaConfig::default()
    });
    rt().block_on(async {
        let agent = agent(&replica, ed25519_identity(13)).await;
        agent
            .update(&c, "set_timer")
            .with_arg(Encode!(&30u64).unwrap())
            .call_and_wait()
            .await
            .unwrap();
        let fired = |agent: Agent| async move {
            let r = agent
                .query(&c, "timer_fired")
                .with_arg(Encode!().unwrap())
                .call()
                .await
                .unwrap();
            Decode!(&r, u64).unwrap()
        };
        let t0 = replica.time_nanos().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            replica.time_nanos().unwrap(),
            t0,
            "manual time must not move"
        );
        assert_eq!(fired(agent.clone()).await, 0);
        let (status, body) = http(
            &replica,
            "POST",
            "/_/time",
            None,
            br#"{"advance_secs": 29}"#,
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(fired(agent.clone()).await, 0);
        replica.advance_time(Duration::from_secs(2)).unwrap();
        assert_eq!(fired(agent.clone()).await, 1);
        assert_eq!(replica.time_nanos().unwrap(), t0 + 31 * 1_000_000_000);
        // Backwards is refused.
        let (status, _) = http(&replica, "POST", "/_/time", None, br#"{"set_nanos": 1}"#);
        assert_eq!(status, 400);
    });
}

/// A plain HTTP/1.1 request; returns status and body.
fn http(
    replica: &Replica,
    method: &str,
    path: &str,
    host: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let (status, _headers, body) = http_full(replica, method, path, host, body);
    (status, body)
}

fn http_full(
    replica: &Replica,
    method: &str,
    path: &str,
    host: Option<&str>,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", replica.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let host = host.map_or_else(|| format!("127.0.0.1:{}", replica.port()), str::to_string);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/cbor\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP response");
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let mut body = out[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

#[derive(CandidType)]
struct HttpResponse {
    status_code: u16,
    headers: Vec<(String, String)>,
    body: serde_bytes::ByteBuf,
    upgrade: Option<bool>,
}

/// A `.wat` canister whose `http_request` answers `query_reply`, and whose
/// `http_request_update` answers `update_reply`.
fn http_canister(query_reply: &HttpResponse, update_reply: &HttpResponse) -> Vec<u8> {
    let q = Encode!(query_reply).unwrap();
    let u = Encode!(update_reply).unwrap();
    let esc = |b: &[u8]| b.iter().map(|x| format!("\\{x:02x}")).collect::<String>();
    ic_sim::wat(&format!(
        r#"(module
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (memory 1)
  (@custom "icp:public candid:service" "service : {{ http_request : (HttpRequest) -> (HttpResponse) query }}")
  (@custom "icp:private notes" "for controllers only")
  (data (i32.const 0) "{q}")
  (data (i32.const 32768) "{u}")
  (func (export "canister_query http_request")
    (call $append (i32.const 0) (i32.const {ql})) (call $reply))
  (func (export "canister_update http_request_update")
    (call $append (i32.const 32768) (i32.const {ul})) (call $reply)))"#,
        q = esc(&q),
        u = esc(&u),
        ql = q.len(),
        ul = u.len()
    ))
}

#[test]
fn should_serve_canister_pages_through_the_http_gateway() {
    let page = HttpResponse {
        status_code: 200,
        headers: vec![("Content-Type".into(), "text/html".into())],
        body: serde_bytes::ByteBuf::from(b"<h1>journal</h1>".to_vec()),
        upgrade: None,
    };
    let upgrade = HttpResponse {
        status_code: 200,
        headers: vec![],
        body: serde_bytes::ByteBuf::new(),
        upgrade: Some(true),
    };
    let updated = HttpResponse {
        status_code: 201,
        headers: vec![("X-Updated".into(), "yes".into())],
        body: serde_bytes::ByteBuf::from(b"updated".to_vec()),
        upgrade: None,
    };
    let plain = http_canister(&page, &updated);
    let upgrading = http_canister(&upgrade, &updated);
    let (replica, (site, dynamic)) = Replica::start(ReplicaConfig::default(), move |i| {
        let a = i
            .install("site", plain, vec![])
            .map_err(|e| e.to_string())?;
        let b = i
            .install("dynamic", upgrading, vec![])
            .map_err(|e| e.to_string())?;
        Ok((a, b))
    })
    .unwrap();
    let host = format!("{site}.localhost:{}", replica.port());
    let (status, head, body) = http_full(&replica, "GET", "/index.html", Some(&host), b"");
    assert_eq!(status, 200);
    assert_eq!(body, b"<h1>journal</h1>");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    // The query-parameter form.
    let (status, body) = http(&replica, "GET", &format!("/?canisterId={site}"), None, b"");
    assert_eq!(
        (status, body.as_slice()),
        (200, b"<h1>journal</h1>".as_slice())
    );
    // HEAD: same status, no body.
    let (status, _, body) = http_full(&replica, "HEAD", "/", Some(&host), b"");
    assert_eq!(status, 200);
    assert!(body.is_empty());
    // A canister asking to upgrade is answered by http_request_update.
    let host = format!("{dynamic}.localhost:{}", replica.port());
    let (status, head, body) = http_full(&replica, "POST", "/form", Some(&host), b"x=1");
    assert_eq!((status, body.as_slice()), (201, b"updated".as_slice()));
    assert!(
        head.to_ascii_lowercase().contains("x-updated: yes"),
        "{head}"
    );
    // Unknown canister: 404.
    let (status, _) = http(&replica, "GET", "/?canisterId=aaaaa-aa", None, b"");
    assert_eq!(status, 404);
    // Topology lists the canisters by name.
    let (status, body) = http(&replica, "GET", "/_/topology", None, b"");
    assert_eq!(status, 200);
    let topo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(topo["canisters"]["site"], site.to_text());
    assert_eq!(topo["canisters"]["dynamic"], dynamic.to_text());
}

#[test]
fn should_answer_random_bytes_with_client_errors_and_keep_serving() {
    let (replica, c) = start(ReplicaConfig::default());
    let subnet = replica.subnet_id();
    let endpoints = [
        format!("/api/v2/canister/{c}/query"),
        format!("/api/v3/canister/{c}/query"),
        format!("/api/v2/canister/{c}/call"),
        format!("/api/v3/canister/{c}/call"),
        format!("/api/v4/canister/{c}/call"),
        format!("/api/v2/canister/{c}/read_state"),
        format!("/api/v3/canister/{c}/read_state"),
        format!("/api/v2/subnet/{subnet}/read_state"),
        "/api/v2/canister/not-a-principal/call".to_string(),
        "/_/time".to_string(),
        format!("/?canisterId={c}"),
    ];
    // xorshift: reproducible noise, plus CBOR-looking prefixes so the decoder gets past byte 0.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..8 {
        for e in &endpoints {
            let len = (next() % 300) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let prefix: &[u8] = match round % 4 {
                1 => &[0xd9, 0xd9, 0xf7, 0xa1], // tag 55799, map(1)
                2 => &[0xa3, 0x67, b'c', b'o', b'n', b't', b'e', b'n', b't'], // map(3) "content"
                3 => &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // a huge array
                _ => &[],
            };
            body.splice(0..0, prefix.iter().copied());
            let (status, _) = http(&replica, "POST", e, None, &body);
            assert!(
                (400..500).contains(&status) || (e.contains("canisterId") && status == 502),
                "{e}: status {status} for {} random bytes",
                body.len()
            );
        }
    }
    // Still serving.
    let (status, _) = http(&replica, "GET", "/api/v2/status", None, b"");
    assert_eq!(status, 200);
}

#[test]
fn should_certify_public_metadata_and_keep_private_metadata_for_controllers() {
    let page = HttpResponse {
        status_code: 200,
        headers: vec![],
        body: serde_bytes::ByteBuf::new(),
        upgrade: None,
    };
    let wasm = http_canister(&page, &page);
    let (replica, c) = Replica::start(ReplicaConfig::default(), move |i| {
        i.install("site", wasm, vec![]).map_err(|e| e.to_string())
    })
    .unwrap();
    rt().block_on(async {
        let agent = agent(&replica, ed25519_identity(14)).await;
        let did = agent
            .read_state_canister_metadata(c, "candid:service")
            .await
            .unwrap();
        assert!(
            did.starts_with(b"service : {"),
            "{}",
            String::from_utf8_lossy(&did)
        );
        let err = agent
            .read_state_canister_metadata(c, "notes")
            .await
            .unwrap_err();
        assert_eq!(http_status(&err).map(|s| s.0), Some(403), "{err:?}");
        // The effective canister id must be the canister whose state is read.
        let err = agent
            .read_state_raw(
                vec![vec![
                    "canister".into(),
                    c.as_slice().into(),
                    "module_hash".into(),
                ]],
                Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 9, 1, 1]),
            )
            .await
            .unwrap_err();
        assert_eq!(http_status(&err).map(|s| s.0), Some(400), "{err:?}");
    });
}

fn delegated(
    from: &BasicIdentity,
    session: u8,
    expiration: u64,
    targets: Option<Vec<Principal>>,
) -> ic_agent::identity::DelegatedIdentity {
    let to = ed25519_identity(session);
    let delegation = Delegation {
        pubkey: to.public_key().unwrap(),
        expiration,
        targets,
        permissions: None,
    };
    let signature = from
        .sign_delegation(&delegation)
        .unwrap()
        .signature
        .unwrap();
    ic_agent::identity::DelegatedIdentity::new_unchecked(
        from.public_key().unwrap(),
        Box::new(to),
        vec![ic_transport_types::SignedDelegation {
            delegation,
            signature,
        }],
    )
}

#[test]
fn should_accept_delegation_chains_and_refuse_expired_misdirected_or_forged_ones() {
    let (replica, c) = start(ReplicaConfig::default());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let hour = 3_600 * 1_000_000_000;
    let root = ed25519_identity(20);
    rt().block_on(async {
        // Signed by the session key on behalf of the root key's principal.
        let id = delegated(&root, 21, now + hour, None);
        assert_eq!(id.sender().unwrap(), root.sender().unwrap());
        let agent = agent(&replica, id).await;
        assert_eq!(inc(&agent, c).await.unwrap(), 1);
        // Targets that include the canister.
        let agent_t = agent_for(&replica, delegated(&root, 22, now + hour, Some(vec![c]))).await;
        assert_eq!(inc(&agent_t, c).await.unwrap(), 2);

        let refused = |id, expect: &'static str| {
            let replica = &replica;
            async move {
                let agent = agent_for(replica, id).await;
                let err = inc(&agent, c).await.unwrap_err();
                let (status, msg) = http_status(&err).unwrap_or_else(|| panic!("{err:?}"));
                assert_eq!(status, 400, "{msg}");
                assert!(msg.contains(expect), "expected {expect:?} in {msg}");
            }
        };
        refused(
            delegated(&root, 23, now - hour, None),
            "Specified sender delegation has expired",
        )
        .await;
        let elsewhere = Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 42, 1, 1]);
        refused(
            delegated(&root, 24, now + hour, Some(vec![elsewhere])),
            "is not one of the delegation targets",
        )
        .await;
        // A delegation signed by another key than the sender's.
        let mut forged = delegated(&ed25519_identity(25), 26, now + hour, None);
        forged = ic_agent::identity::DelegatedIdentity::new_unchecked(
            root.public_key().unwrap(),
            Box::new(ed25519_identity(26)),
            forged.delegation_chain(),
        );
        refused(forged, "Invalid delegation").await;
        let honest = agent_for(&replica, ed25519_identity(27)).await;
        assert_eq!(get(&honest, c).await, 2, "refused calls must not run");
    });
}

#[test]
fn should_keep_serving_while_a_client_stalls_mid_body() {
    let (replica, _c) = start(ReplicaConfig::default());
    let mut stalled = TcpStream::connect(("127.0.0.1", replica.port())).unwrap();
    write!(
        stalled,
        "POST /api/v2/status HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nonly a little (tiny_http reads bodies under 1 KiB itself)"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let (status, _) = http(&replica, "GET", "/api/v2/status", None, b"");
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    drop(stalled);
}

#[test]
fn should_report_a_panicking_control_closure_and_keep_serving() {
    let (replica, c) = start(ReplicaConfig::default());
    let err = replica
        .with_sim(|_| -> () { panic!("on purpose") })
        .unwrap_err();
    assert!(
        matches!(&err, ic_sim_replica::ReplicaError::Panicked(m) if m.contains("on purpose")),
        "{err:?}"
    );
    assert!(replica.with_sim(move |s| s.canister_exists(c)).unwrap());
    assert!(
        replica.advance_time(Duration::from_secs(1)).is_err(),
        "wall-clock mode"
    );
}
