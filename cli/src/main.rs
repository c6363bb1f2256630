//! `icjournal`: the operator CLI of the icjournal service canister, on ic-agent through
//! `icjournal_client` (the one place the service's interface is wrapped).

mod args;
mod commands;
mod config_edit;
mod errors;
mod format;
mod identity;
mod prometheus;
mod views;

use args::{Cli, Parsed};
use errors::{CliError, Exit};
use ic_agent::Agent;
use icjournal_client::agent::AgentTransport;
use icjournal_client::Client;
use std::process::ExitCode;

const MAINNET_URL: &str = "https://icp-api.io";
/// dfx's default local replica.
const LOCAL_URL: &str = "http://127.0.0.1:4943";
/// Hosts of the IC mainnet API: their root key is compiled into ic-agent and must never be
/// fetched from the network (a fetched key would trust whoever answers).
const MAINNET_HOSTS: [&str; 3] = ["icp-api.io", "ic0.app", "icp0.io"];

/// The replica URL, and whether its root key must be fetched (any network but mainnet).
fn network(arg: &str) -> Result<(String, bool), CliError> {
    match arg.trim() {
        "ic" | "mainnet" => return Ok((MAINNET_URL.into(), false)),
        "local" => return Ok((LOCAL_URL.into(), true)),
        _ => {}
    }
    let url = arg.trim().trim_end_matches('/');
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Err(CliError::usage(format!(
            "--network `{arg}`: use `ic`, `local` or a URL such as http://127.0.0.1:4943"
        )));
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err(CliError::usage(format!("--network `{arg}`: no host")));
    }
    let mainnet = MAINNET_HOSTS
        .iter()
        .any(|h| host == *h || host.ends_with(&format!(".{h}")));
    Ok((url.to_string(), !mainnet))
}

async fn run(cli: Cli) -> Result<(), CliError> {
    if cli.identity_dir.is_some() && cli.identity.is_none() {
        return Err(CliError::usage("--identity-dir goes with --identity NAME"));
    }
    let loaded = identity::load(&identity::Choice {
        pem: cli.identity_pem.as_deref(),
        name: cli.identity.as_deref(),
        dir: cli.identity_dir.as_deref(),
    })?;
    commands::check_locally(&cli.command, loaded.principal)?;
    let canister = cli.canister.ok_or_else(|| {
        CliError::usage("which service? pass --canister ID (or set ICJOURNAL_CANISTER)")
    })?;
    let (url, fetch_root_key) = network(&cli.network)?;
    let agent = Agent::builder()
        .with_url(url.clone())
        .with_arc_identity(loaded.identity.clone())
        .build()
        .map_err(|e| CliError::usage(format!("--network {url}: {e}")))?;
    if fetch_root_key {
        agent.fetch_root_key().await.map_err(|e| {
            CliError::new(
                Exit::Network,
                "network",
                format!("cannot reach the replica at {url}: {e}"),
            )
        })?;
    }
    let ctx = commands::Ctx {
        client: Client::new(canister, AgentTransport::new(agent)),
        principal: loaded.principal,
        json: cli.json,
        network: url,
    };
    ctx.run(cli.command).await
}

fn main() -> ExitCode {
    let argv: Vec<String> = match std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect::<Result<_, _>>()
    {
        Ok(v) => v,
        Err(a) => {
            eprintln!("error: argument {a:?} is not UTF-8");
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    // `--json` is honoured for usage errors too, so a script always gets an object to read.
    let json = argv.iter().any(|a| a == "--json");
    let cli = match args::parse(&argv, |k| std::env::var(k).ok()) {
        Ok(Parsed::Run(c)) => c,
        Ok(Parsed::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&e, json),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Network as u8);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, json),
    }
}

/// Reports a failure: plain words on stderr, the typed object on stdout for `--json`.
fn fail(e: &CliError, json: bool) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&e.json()).expect("JSON values serialize")
        );
    }
    eprintln!("error: {}", e.message);
    ExitCode::from(e.exit as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_urls_and_root_keys() {
        assert_eq!(network("ic").unwrap(), (MAINNET_URL.into(), false));
        assert_eq!(network("local").unwrap(), (LOCAL_URL.into(), true));
        assert_eq!(
            network("http://127.0.0.1:8080/").unwrap(),
            ("http://127.0.0.1:8080".into(), true)
        );
        assert_eq!(
            network("https://icp-api.io").unwrap(),
            ("https://icp-api.io".into(), false)
        );
        assert!(!network("https://ic0.app").unwrap().1);
        assert!(network("https://evil-icp-api.io").unwrap().1);
        assert!(network("http://[::1]:4943").unwrap().1);
        assert!(network("ftp://x").is_err());
        assert!(network("127.0.0.1:4943").is_err());
        assert!(network("http://").is_err());
    }
}
