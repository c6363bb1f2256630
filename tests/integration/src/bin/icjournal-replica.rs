//! A local replica with icjournal's canisters, serving the IC HTTP interface until killed.
//!
//! cargo run --locked -p icjournal-tests --bin icjournal-replica -- [--port N] [--manual-time]
//!     [--seed S] [--admin PRINCIPAL]... [--admin-pem-out FILE]

use candid::Principal;
use icjournal_tests::network::ic_sim_replica::TimeMode;
use icjournal_tests::network::{start_network, NetworkOptions};
use std::process::ExitCode;

const USAGE: &str = "usage: icjournal-replica [--port N] [--manual-time] [--seed S] [--admin PRINCIPAL]... [--admin-pem-out FILE]

  --port N             listen on 127.0.0.1:N (default 0: a free port)
  --manual-time        time moves only through POST /_/time (default: follows the wall clock)
  --seed S             reproducible root key, admin identity and message scheduling
  --admin PRINCIPAL    another admin of the service and payout canisters (repeatable)
  --admin-pem-out FILE write the generated admin identity's PEM there (default: print it)";

fn parse() -> Result<(NetworkOptions, Option<String>), String> {
    let mut opts = NetworkOptions::default();
    let mut pem_out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--port" => {
                opts.port = value("--port")?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?
            }
            "--manual-time" => opts.time = TimeMode::Manual,
            "--seed" => {
                opts.seed = Some(
                    value("--seed")?
                        .parse()
                        .map_err(|e| format!("--seed: {e}"))?,
                )
            }
            "--admin" => {
                let p = value("--admin")?;
                opts.extra_admins
                    .push(Principal::from_text(&p).map_err(|e| format!("--admin {p}: {e}"))?);
            }
            "--admin-pem-out" => pem_out = Some(value("--admin-pem-out")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((opts, pem_out))
}

fn main() -> ExitCode {
    let (opts, pem_out) = match parse() {
        Ok(x) => x,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("icjournal-replica: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    eprintln!("icjournal-replica: building the canisters and starting the replica…");
    let net = match start_network(opts.clone()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("icjournal-replica: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = net.replica.url().to_string();
    let port = net.replica.port();
    println!("icjournal local replica listening on {url}");
    println!(
        "  time: {}",
        match opts.time {
            TimeMode::WallClock => "follows the wall clock".to_string(),
            TimeMode::Manual =>
                format!("manual: curl -X POST {url}/_/time -d '{{\"advance_secs\": 60}}'"),
        }
    );
    println!("  subnet: {}", net.replica.subnet_id());
    println!(
        "  root key (DER, hex): {}",
        hex::encode(net.replica.root_key())
    );
    println!("canisters:");
    for (name, id) in net.named() {
        println!("  {name:<10} {id}   http://{id}.localhost:{port}/");
    }
    println!("admin identity: {}", net.admin.principal);
    match &pem_out {
        Some(path) => match std::fs::write(path, &net.admin.pem) {
            Ok(()) => println!("  PEM written to {path}"),
            Err(e) => {
                eprintln!("icjournal-replica: cannot write {path}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => print!("{}", net.admin.pem),
    }
    println!(
        "
This is a development replica: clients must fetch its root key.
  ic-agent:  Agent::builder().with_url(\"{url}\").build()?; agent.fetch_root_key().await?;
  agent-js:  HttpAgent.create({{ host: \"{url}\", shouldFetchRootKey: true }})
  dfx:       dfx canister --network {url} call {service} metrics '()'
             (dfx fetches the root key of a non-mainnet network; import the admin with
              dfx identity import icjournal-admin <pem-file>)
  topology:  curl {url}/_/topology
Serving until killed (Ctrl-C).",
        service = net.canisters.service
    );
    net.replica.wait();
    ExitCode::SUCCESS
}
