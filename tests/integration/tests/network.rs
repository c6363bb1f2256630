//! The local replica with icjournal's canisters, started in-process as the operator CLI's
//! end-to-end tests will start it: plain HTTP against the IC interface and the HTTP gateway.

use icjournal_tests::network::{start_network, NetworkOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn get(port: u16, host: &str, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, out[split + 4..].to_vec())
}

#[test]
fn should_start_the_network_in_process_and_serve_the_service_pages() {
    let net = start_network(NetworkOptions {
        seed: Some(3),
        ..NetworkOptions::default()
    })
    .expect("network starts");
    let port = net.replica.port();
    // Seeded: the same admin identity every time, and it administers the service.
    let again = start_network(NetworkOptions {
        seed: Some(3),
        ..NetworkOptions::default()
    })
    .unwrap();
    assert_eq!(net.admin.principal, again.admin.principal);
    assert_eq!(net.replica.root_key(), again.replica.root_key());
    drop(again);
    let admin = net.admin.principal;
    let service = net.canisters.service;
    let admins: Vec<candid::Principal> = net
        .replica
        .with_sim(move |sim| {
            let (view,): (Result<icjournal_client::ConfigView, icjournal_client::ServiceError>,) =
                sim.query_candid(service, admin, "get_config", ())
                    .expect("get_config");
            view.expect("the admin may read the config").config.admins
        })
        .unwrap();
    assert!(admins.contains(&admin), "{admins:?}");

    let (status, body) = get(port, &format!("127.0.0.1:{port}"), "/_/topology");
    assert_eq!(status, 200);
    let topo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(topo["canisters"]["icjournal"], service.to_text());
    assert_eq!(topo["canisters"]["ledger"], net.canisters.ledger.to_text());
    // The ledger spawns its archives once it holds enough blocks: none yet.
    assert!(topo["canisters"]["archive"].is_null());
    assert!(topo["canisters"]["payout"].is_string());

    let (status, body) = get(port, &format!("{service}.localhost:{port}"), "/metrics");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(!body.is_empty());
    let (status, _) = get(port, &format!("127.0.0.1:{port}"), "/api/v2/status");
    assert_eq!(status, 200);
}
