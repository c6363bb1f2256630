//! Command-line arguments, parsed by hand: the workspace has no argument-parser crate, and the
//! grammar is small (a verb, an optional entry id, `--option value` / `--option=value` / flags,
//! in any order). Options are collected first and checked against the verb afterwards, so that
//! an option given to the wrong verb is refused by name instead of silently ignored.

use crate::errors::{CliError, EXIT_CODES};
use crate::format::parse_duration;
use candid::Principal;
use icjournal_client::{Kind, Status};
use std::path::PathBuf;

#[derive(Debug)]
pub struct Cli {
    /// `ic`, `local` or a URL (see `network` in main.rs).
    pub network: String,
    pub canister: Option<Principal>,
    pub identity_pem: Option<PathBuf>,
    pub identity: Option<String>,
    pub identity_dir: Option<PathBuf>,
    pub json: bool,
    pub command: Command,
}

/// What the command line asks for: a command to run, or text to print and exit 0.
#[derive(Debug)]
pub enum Parsed {
    Run(Cli),
    Help(String),
}

/// Required on every command that changes the journal, recorded with your principal.
#[derive(Debug, Clone, Default)]
pub struct Reason {
    pub reason: Option<String>,
}

#[derive(Debug)]
pub enum Command {
    Status,
    Metrics {
        parsed: bool,
    },
    List {
        status: Option<Status>,
        kind: Option<Kind>,
        owner: Option<Principal>,
        older_than: Option<u64>,
        limit: u32,
        after: Option<u64>,
        all: bool,
    },
    Show {
        id: u64,
    },
    Audit {
        entry: Option<u64>,
        from: Option<u64>,
        limit: u32,
        all: bool,
    },
    Retry {
        id: u64,
        reason: Reason,
    },
    ResolveSucceeded {
        id: u64,
        block: Option<u64>,
        reason: Reason,
    },
    ResolveFailed {
        id: u64,
        acknowledge_risk: bool,
        reason: Reason,
    },
    Compensate {
        id: u64,
        reason: Reason,
    },
    Cancel {
        id: u64,
        acknowledge_risk: bool,
        reason: Reason,
    },
    Approve {
        id: u64,
        action: ActionArg,
        block: Option<u64>,
        acknowledge_risk: bool,
        reason: Reason,
    },
    Pause {
        reason: Reason,
    },
    Resume {
        reason: Reason,
    },
    Config(ConfigCommand),
}

#[derive(Debug)]
pub enum ConfigCommand {
    Get,
    Set {
        file: Option<PathBuf>,
        set: Vec<String>,
        dry_run: bool,
        reason: Reason,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionArg {
    Retry,
    ResolveSucceeded,
    ResolveFailed,
    Compensate,
    Cancel,
}

/// Options that every verb accepts.
const GLOBAL: [&str; 6] = [
    "network",
    "canister",
    "identity-pem",
    "identity",
    "identity-dir",
    "json",
];

/// Options that take a value; every other known option is a flag.
const VALUED: [&str; 18] = [
    "network",
    "canister",
    "identity-pem",
    "identity",
    "identity-dir",
    "reason",
    "status",
    "kind",
    "owner",
    "older-than",
    "limit",
    "after",
    "entry",
    "from",
    "block",
    "action",
    "file",
    "set",
];

const FLAGS: [&str; 6] = [
    "json",
    "all",
    "acknowledge-risk",
    "dry-run",
    "parsed",
    "help",
];

/// A verb: its name, what it takes, what it does, and the options it accepts.
struct Verb {
    name: &'static str,
    usage: &'static str,
    about: &'static str,
    options: &'static [&'static str],
    /// Per-option lines for `icjournal VERB --help`.
    details: &'static str,
}

const REASON: &str = "  --reason TEXT        why (required; recorded with your principal)\n";

const VERBS: &[Verb] = &[
    Verb {
        name: "status",
        usage: "status",
        about: "health line: manual queue, oldest unresolved entry, recovery paused?, counts \
                by status; cycles and version for a controller",
        options: &[],
        details: "",
    },
    Verb {
        name: "metrics",
        usage: "metrics [--parsed]",
        about: "the service's /metrics (Prometheus text), or parsed into a table",
        options: &["parsed"],
        details: "  --parsed             a table of samples instead of the raw text (implied by --json)\n",
    },
    Verb {
        name: "list",
        usage: "list [--status S] [--kind K] [--owner P] [--older-than AGE] [--limit N | --all] \
                [--after ID]",
        about: "entries, oldest first (operators)",
        options: &["status", "kind", "owner", "older-than", "limit", "after", "all"],
        details: "  --status S           only this status: pending, unknown, recovering, manual_review,\n\
                  \x20                      succeeded, failed, compensating, compensated, cancelled\n\
                  \x20 --kind K             only this kind: icrc1_transfer, icrc2_transfer_from, record,\n\
                  \x20                      saga, local_step\n\
                  \x20 --owner P            only entries of this principal\n\
                  \x20 --older-than AGE     only entries created at least AGE ago (canister clock): 90s, 6h, 2d\n\
                  \x20 --limit N            at most N entries (default 50; pages are followed as needed)\n\
                  \x20 --after ID           start after this entry id (the `next` of a previous listing)\n\
                  \x20 --all                follow every page to the end (progress on stderr)\n",
    },
    Verb {
        name: "show",
        usage: "show ID",
        about: "one entry in full: intent, attempts, errors, manual reason, blocked on, outcome, \
                history",
        options: &[],
        details: "",
    },
    Verb {
        name: "audit",
        usage: "audit [--entry ID] [--from SEQ] [--limit N | --all]",
        about: "the audit trail: the last records, from a sequence number, or one entry's",
        options: &["entry", "from", "limit", "all"],
        details: "  --entry ID           only records about this entry (scans the trail)\n\
                  \x20 --from SEQ           start at this sequence number (default: the last --limit)\n\
                  \x20 --limit N            at most N records (default 50)\n\
                  \x20 --all                every matching record\n",
    },
    Verb {
        name: "retry",
        usage: "retry ID --reason TEXT",
        about: "manual queue: run recovery again on an entry (back to unknown, attempts reset)",
        options: &["reason"],
        details: REASON,
    },
    Verb {
        name: "resolve-succeeded",
        usage: "resolve-succeeded ID --block N --reason TEXT",
        about: "manual queue: close an entry as succeeded; a transfer needs its ledger block, \
                which the service checks against the ledger",
        options: &["block", "reason"],
        details: "  --block N            the ledger block holding this transfer (required for transfers)\n\
                  \x20 --reason TEXT        why (required; recorded with your principal)\n",
    },
    Verb {
        name: "resolve-failed",
        usage: "resolve-failed ID --reason TEXT [--acknowledge-risk]",
        about: "manual queue: close an entry as failed (you assert it did not execute)",
        options: &["acknowledge-risk", "reason"],
        details: "  --acknowledge-risk   close it although the ledger could still execute the transfer\n\
                  \x20                      (its deduplication window is open): a new request with its\n\
                  \x20                      lock key could then pay twice\n\
                  \x20 --reason TEXT        why (required; recorded with your principal)\n",
    },
    Verb {
        name: "compensate",
        usage: "compensate ID --reason TEXT",
        about: "manual queue: compensate a saga's completed steps",
        options: &["reason"],
        details: REASON,
    },
    Verb {
        name: "cancel",
        usage: "cancel ID --reason TEXT [--acknowledge-risk]",
        about: "manual queue: close an entry without executing it",
        options: &["acknowledge-risk", "reason"],
        details: "  --acknowledge-risk   as for resolve-failed\n\
                  \x20 --reason TEXT        why (required; recorded with your principal)\n",
    },
    Verb {
        name: "approve",
        usage: "approve ID --action A [--block N] [--acknowledge-risk] --reason TEXT",
        about: "M-of-N: record your approval of an action on an entry (the last one applies it)",
        options: &["action", "block", "acknowledge-risk", "reason"],
        details: "  --action A           retry, resolve-succeeded, resolve-failed, compensate or cancel\n\
                  \x20 --block N            with --action resolve-succeeded: the ledger block\n\
                  \x20 --acknowledge-risk   with --action resolve-failed or cancel: see resolve-failed\n\
                  \x20 --reason TEXT        why (required; recorded with your principal)\n",
    },
    Verb {
        name: "pause",
        usage: "pause --reason TEXT",
        about: "pause the recovery timer (entries keep their state; nothing is resent)",
        options: &["reason"],
        details: REASON,
    },
    Verb {
        name: "resume",
        usage: "resume --reason TEXT",
        about: "resume the recovery timer",
        options: &["reason"],
        details: REASON,
    },
    Verb {
        name: "config get",
        usage: "config get",
        about: "print the configuration (and whether recovery is paused)",
        options: &[],
        details: "",
    },
    Verb {
        name: "config set",
        usage: "config set [--file FILE] [--set KEY=VALUE]... [--dry-run] --reason TEXT",
        about: "read the configuration, change it, show what changes, write it back",
        options: &["file", "set", "dry-run", "reason"],
        details: "  --file FILE          JSON with some or all fields (`config get --json` prints the whole)\n\
                  \x20 --set KEY=VALUE      JSON or text; *_ns fields take durations (30s); admins+=P,\n\
                  \x20                      admins-=P, fee_exempt+=P, fee_exempt-=P. Repeatable, after --file\n\
                  \x20 --dry-run            show what would change, write nothing (no --reason needed)\n\
                  \x20 --reason TEXT        why (required unless --dry-run)\n",
    },
];

const GLOBAL_HELP: &str = "\
Options for every command:
  --network NET        ic (mainnet, https://icp-api.io), local (http://127.0.0.1:4943) or a
                       replica URL such as http://127.0.0.1:8080 [env ICJOURNAL_NETWORK;
                       default local]. The root key is fetched from any network but mainnet.
  --canister ID        the icjournal service canister [env ICJOURNAL_CANISTER]
  --identity-pem FILE  sign with this PEM key (ed25519, secp256k1 or prime256v1)
  --identity NAME      sign with this dfx or icp-cli identity
                       (~/.config/dfx/identity/NAME/identity.pem, icp-cli's keys/NAME.pem)
  --identity-dir DIR   look --identity NAME up in this folder (dfx's or icp-cli's layout)
                       Without an identity, calls are anonymous (enough for status, metrics).
  --json               JSON on stdout for scripts (errors too, as {\"error\": {...}})
  -h, --help           help (`icjournal VERB --help` for one command)
  -V, --version        version";

/// `icjournal --help`.
pub fn help() -> String {
    let mut s = String::from(
        "icjournal: operate an icjournal service canister: its manual-review queue, audit \
         trail,\nrecovery and configuration.\n\nUsage: icjournal [OPTIONS] COMMAND \
         [ARGS]\n\nCommands:\n",
    );
    for v in VERBS {
        s.push_str(&format!("  {:<19}{}\n", v.name, wrap(v.about, 21)));
    }
    s.push_str(
        "\nEvery command that changes the journal needs --reason; it is refused without one.\n\n",
    );
    s.push_str(GLOBAL_HELP);
    s.push_str("\n\n");
    s.push_str(EXIT_CODES);
    s.push('\n');
    s
}

fn verb_help(v: &Verb) -> String {
    let mut s = format!(
        "icjournal {}: {}\n\nUsage: icjournal [OPTIONS] {}\n",
        v.name, v.about, v.usage
    );
    if !v.details.is_empty() {
        s.push('\n');
        s.push_str(v.details);
    }
    s.push('\n');
    s.push_str(GLOBAL_HELP);
    s.push_str("\n\n");
    s.push_str(EXIT_CODES);
    s.push('\n');
    s
}

/// Wraps `text` at 100 columns, indenting continuation lines by `indent`.
fn wrap(text: &str, indent: usize) -> String {
    let mut out = String::new();
    let mut col = indent;
    for word in text.split_whitespace() {
        if col > indent && col + 1 + word.len() > 100 {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
        } else if col > indent {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += word.len();
    }
    out
}

/// Options as given: name → values (in order), flags with no value.
#[derive(Default)]
struct Given {
    opts: Vec<(String, Option<String>)>,
    free: Vec<String>,
}

impl Given {
    fn names(&self) -> impl Iterator<Item = &str> {
        self.opts.iter().map(|(n, _)| n.as_str())
    }
    fn flag(&self, name: &str) -> bool {
        self.names().any(|n| n == name)
    }
    fn all(&self, name: &str) -> Vec<String> {
        self.opts
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }
    /// The value of an option given at most once.
    fn one(&self, name: &str) -> Result<Option<String>, CliError> {
        let mut v = self.all(name);
        match v.len() {
            0 => Ok(None),
            1 => Ok(v.pop()),
            _ => Err(CliError::usage(format!("--{name} is given more than once"))),
        }
    }
    fn parse<T>(
        &self,
        name: &str,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, CliError> {
        self.one(name)?
            .map(|v| f(&v).map_err(|e| CliError::usage(format!("--{name}: {e}"))))
            .transpose()
    }
}

fn tokenize(args: &[String]) -> Result<Given, CliError> {
    let mut g = Given::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            g.free.extend(it.by_ref().cloned());
            break;
        }
        let long = match a.as_str() {
            "-h" => "--help",
            "-V" => "--version",
            other => other,
        };
        let Some(body) = long.strip_prefix("--") else {
            if a.starts_with('-')
                && a.len() > 1
                && !a[1..].starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(CliError::usage(format!(
                    "unknown option `{a}` (see `icjournal --help`)"
                )));
            }
            g.free.push(a.clone());
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "version" {
            g.opts.push(("version".into(), None));
            continue;
        }
        if VALUED.contains(&name) {
            let value = match inline {
                Some(v) => v,
                None => it.next().cloned().ok_or_else(|| {
                    CliError::usage(format!("--{name} needs a value (see `icjournal --help`)"))
                })?,
            };
            g.opts.push((name.to_string(), Some(value)));
        } else if FLAGS.contains(&name) {
            if inline.is_some() {
                return Err(CliError::usage(format!("--{name} takes no value")));
            }
            g.opts.push((name.to_string(), None));
        } else {
            return Err(CliError::usage(format!(
                "unknown option `--{name}` (see `icjournal --help`)"
            )));
        }
    }
    Ok(g)
}

fn entry_id(free: &[String], verb: &str) -> Result<u64, CliError> {
    match free {
        [] => Err(CliError::usage(format!(
            "{verb} needs an entry id: icjournal {verb} ID"
        ))),
        [id] => id
            .parse()
            .map_err(|_| CliError::usage(format!("{verb}: `{id}` is not an entry id"))),
        [_, extra, ..] => Err(CliError::usage(format!(
            "{verb}: unexpected argument `{extra}`"
        ))),
    }
}

fn no_free(free: &[String], verb: &str) -> Result<(), CliError> {
    match free.first() {
        None => Ok(()),
        Some(extra) => Err(CliError::usage(format!(
            "{verb}: unexpected argument `{extra}`"
        ))),
    }
}

fn limit(g: &Given) -> Result<u32, CliError> {
    if g.flag("all") && g.one("limit")?.is_some() {
        return Err(CliError::usage("--all and --limit go not together"));
    }
    Ok(g.parse("limit", |s| match s.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a positive number")),
    })?
    .unwrap_or(50))
}

fn uint(s: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a non-negative integer"))
}

/// Parses the arguments (without the program name). `env` reads the environment, so tests
/// can pass their own.
pub fn parse(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<Parsed, CliError> {
    let g = tokenize(args)?;
    let mut free = g.free.clone();
    let verb_name = match free.first().map(String::as_str) {
        Some("config") => match free.get(1).map(String::as_str) {
            Some(sub @ ("get" | "set")) => {
                let n = format!("config {sub}");
                free.drain(..2);
                Some(n)
            }
            Some(other) => {
                return Err(CliError::usage(format!(
                    "config: `{other}` is not a subcommand (get or set)"
                )))
            }
            None if g.flag("help") => {
                return Ok(Parsed::Help(
                    VERBS
                        .iter()
                        .filter(|v| v.name.starts_with("config "))
                        .map(verb_help)
                        .collect::<Vec<_>>()
                        .join("\n"),
                ))
            }
            None => return Err(CliError::usage("config needs a subcommand: get or set")),
        },
        Some("help") => {
            free.remove(0);
            let topic = free.join(" ");
            return match VERBS.iter().find(|v| v.name == topic) {
                Some(v) => Ok(Parsed::Help(verb_help(v))),
                None if topic.is_empty() => Ok(Parsed::Help(help())),
                None => Err(CliError::usage(format!("help: no command `{topic}`"))),
            };
        }
        Some(v) => {
            let n = v.to_string();
            free.remove(0);
            Some(n)
        }
        None => None,
    };
    if g.flag("version") {
        return Ok(Parsed::Help(format!(
            "icjournal {}\n",
            env!("CARGO_PKG_VERSION")
        )));
    }
    let verb = match &verb_name {
        Some(n) => Some(VERBS.iter().find(|v| v.name == n).ok_or_else(|| {
            CliError::usage(format!("`{n}` is not a command (see `icjournal --help`)"))
        })?),
        None => None,
    };
    if g.flag("help") {
        return Ok(Parsed::Help(verb.map_or_else(help, verb_help)));
    }
    let Some(verb) = verb else {
        return Err(CliError::usage(format!(
            "which command? (see `icjournal --help`)\n\n{}",
            help()
        )));
    };
    if let Some(n) = g
        .names()
        .find(|n| !GLOBAL.contains(n) && !verb.options.contains(n))
    {
        return Err(CliError::usage(format!(
            "--{n} does not apply to `{}` (usage: icjournal {})",
            verb.name, verb.usage
        )));
    }
    if g.one("identity-pem")?.is_some() && g.one("identity")?.is_some() {
        return Err(CliError::usage(
            "--identity-pem and --identity go not together: pick one",
        ));
    }
    let reason = Reason {
        reason: g.one("reason")?,
    };
    let name = verb.name;
    let command = match name {
        "status" => {
            no_free(&free, name)?;
            Command::Status
        }
        "metrics" => {
            no_free(&free, name)?;
            Command::Metrics {
                parsed: g.flag("parsed"),
            }
        }
        "list" => {
            no_free(&free, name)?;
            Command::List {
                status: g.parse("status", parse_status)?,
                kind: g.parse("kind", parse_kind)?,
                owner: g.parse("owner", parse_principal)?,
                older_than: g.parse("older-than", parse_duration)?,
                limit: limit(&g)?,
                after: g.parse("after", uint)?,
                all: g.flag("all"),
            }
        }
        "show" => Command::Show {
            id: entry_id(&free, name)?,
        },
        "audit" => {
            no_free(&free, name)?;
            Command::Audit {
                entry: g.parse("entry", uint)?,
                from: g.parse("from", uint)?,
                limit: limit(&g)?,
                all: g.flag("all"),
            }
        }
        "retry" => Command::Retry {
            id: entry_id(&free, name)?,
            reason,
        },
        "resolve-succeeded" => Command::ResolveSucceeded {
            id: entry_id(&free, name)?,
            block: g.parse("block", uint)?,
            reason,
        },
        "resolve-failed" => Command::ResolveFailed {
            id: entry_id(&free, name)?,
            acknowledge_risk: g.flag("acknowledge-risk"),
            reason,
        },
        "compensate" => Command::Compensate {
            id: entry_id(&free, name)?,
            reason,
        },
        "cancel" => Command::Cancel {
            id: entry_id(&free, name)?,
            acknowledge_risk: g.flag("acknowledge-risk"),
            reason,
        },
        "approve" => Command::Approve {
            id: entry_id(&free, name)?,
            action: g.parse("action", parse_action)?.ok_or_else(|| {
                CliError::usage(format!(
                    "approve needs --action (usage: icjournal {})",
                    verb.usage
                ))
            })?,
            block: g.parse("block", uint)?,
            acknowledge_risk: g.flag("acknowledge-risk"),
            reason,
        },
        "pause" => {
            no_free(&free, name)?;
            Command::Pause { reason }
        }
        "resume" => {
            no_free(&free, name)?;
            Command::Resume { reason }
        }
        "config get" => {
            no_free(&free, name)?;
            Command::Config(ConfigCommand::Get)
        }
        "config set" => {
            no_free(&free, name)?;
            Command::Config(ConfigCommand::Set {
                file: g.one("file")?.map(PathBuf::from),
                set: g.all("set"),
                dry_run: g.flag("dry-run"),
                reason,
            })
        }
        other => unreachable!("verb {other} is in VERBS but not parsed"),
    };
    let canister = match g.one("canister")?.or_else(|| env("ICJOURNAL_CANISTER")) {
        Some(c) => {
            Some(parse_principal(&c).map_err(|e| CliError::usage(format!("--canister: {e}")))?)
        }
        None => None,
    };
    Ok(Parsed::Run(Cli {
        network: g
            .one("network")?
            .or_else(|| env("ICJOURNAL_NETWORK"))
            .unwrap_or_else(|| "local".into()),
        canister,
        identity_pem: g.one("identity-pem")?.map(PathBuf::from),
        identity: g.one("identity")?,
        identity_dir: g.one("identity-dir")?.map(PathBuf::from),
        json: g.flag("json"),
        command,
    }))
}

pub fn parse_principal(s: &str) -> Result<Principal, String> {
    Principal::from_text(s.trim()).map_err(|e| format!("`{s}` is not a principal: {e}"))
}

fn norm(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace('-', "_")
}

pub fn parse_status(s: &str) -> Result<Status, String> {
    let n = norm(s);
    Status::ALL
        .into_iter()
        .find(|st| st.as_str() == n || st.as_str().replace('_', "") == n)
        .ok_or_else(|| {
            format!(
                "`{s}` is not a status (one of: {})",
                Status::ALL.map(|s| s.as_str()).join(", ")
            )
        })
}

pub fn parse_kind(s: &str) -> Result<Kind, String> {
    let n = norm(s);
    Kind::ALL
        .into_iter()
        .find(|k| k.as_str() == n || k.as_str().replace('_', "") == n)
        .ok_or_else(|| {
            format!(
                "`{s}` is not a kind (one of: {})",
                Kind::ALL.map(|k| k.as_str()).join(", ")
            )
        })
}

fn parse_action(s: &str) -> Result<ActionArg, String> {
    match norm(s).as_str() {
        "retry" => Ok(ActionArg::Retry),
        "resolve_succeeded" => Ok(ActionArg::ResolveSucceeded),
        "resolve_failed" => Ok(ActionArg::ResolveFailed),
        "compensate" => Ok(ActionArg::Compensate),
        "cancel" => Ok(ActionArg::Cancel),
        _ => Err(format!(
            "`{s}` is not an action (retry, resolve-succeeded, resolve-failed, compensate, cancel)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &str) -> Result<Cli, CliError> {
        let v: Vec<String> = args.split_whitespace().map(String::from).collect();
        match parse(&v, |_| None)? {
            Parsed::Run(c) => Ok(c),
            Parsed::Help(h) => panic!("help for {args}: {h}"),
        }
    }

    #[test]
    fn parses_verbs_options_anywhere_and_equals_forms() {
        let c = run("--network ic retry 12 --reason=why --json").unwrap();
        assert_eq!(c.network, "ic");
        assert!(c.json);
        assert!(
            matches!(c.command, Command::Retry { id: 12, reason: Reason { reason: Some(ref r) } } if r == "why")
        );
        let c = run("list --status manual-review --kind saga --older-than 6h --limit 5 --after 3")
            .unwrap();
        match c.command {
            Command::List {
                status,
                kind,
                older_than,
                limit,
                after,
                all,
                ..
            } => {
                assert_eq!(status, Some(Status::ManualReview));
                assert_eq!(kind, Some(Kind::Saga));
                assert_eq!(older_than, Some(6 * 3600 * 1_000_000_000));
                assert_eq!((limit, after, all), (5, Some(3), false));
            }
            other => panic!("{other:?}"),
        }
        let c = run("config set --set a=1 --set b=2 --dry-run").unwrap();
        assert!(
            matches!(c.command, Command::Config(ConfigCommand::Set { ref set, dry_run: true, .. }) if set.len() == 2)
        );
        let c = run("approve 4 --action resolve-failed --acknowledge-risk --reason x").unwrap();
        assert!(matches!(
            c.command,
            Command::Approve {
                id: 4,
                action: ActionArg::ResolveFailed,
                acknowledge_risk: true,
                ..
            }
        ));
    }

    #[test]
    fn refuses_what_does_not_fit_with_a_usage_error() {
        for bad in [
            "",
            "frobnicate",
            "list --block 3",
            "show",
            "show x",
            "show 1 2",
            "list --limit 0",
            "list --limit 5 --all",
            "list --status nope",
            "retry 1 --reason",
            "status --bogus",
            "config",
            "config put",
            "approve 3 --reason x",
            "--identity a --identity-pem b status",
            "status --json=yes",
        ] {
            let e = run(bad).err().unwrap_or_else(|| panic!("accepted `{bad}`"));
            assert_eq!(e.exit, crate::errors::Exit::Usage, "{bad}");
        }
    }

    #[test]
    fn help_names_every_verb_and_the_exit_codes() {
        let h = help();
        for v in VERBS {
            assert!(h.contains(v.name), "{}", v.name);
        }
        assert!(h.contains("Exit codes"));
        let v: Vec<String> = ["retry", "--help"].map(String::from).to_vec();
        match parse(&v, |_| None).unwrap() {
            Parsed::Help(t) => assert!(t.contains("--reason TEXT"), "{t}"),
            Parsed::Run(_) => panic!("not help"),
        }
    }

    #[test]
    fn reads_the_environment() {
        let id = Principal::from_slice(&[1; 10]).to_text();
        let v: Vec<String> = vec!["status".into()];
        let env = |k: &str| match k {
            "ICJOURNAL_CANISTER" => Some(id.clone()),
            "ICJOURNAL_NETWORK" => Some("ic".into()),
            _ => None,
        };
        match parse(&v, env).unwrap() {
            Parsed::Run(c) => {
                assert_eq!(c.network, "ic");
                assert_eq!(c.canister.unwrap().to_text(), id);
            }
            Parsed::Help(_) => panic!(),
        }
    }

    #[test]
    fn parses_statuses_and_kinds_leniently() {
        assert_eq!(parse_status("manual_review"), Ok(Status::ManualReview));
        assert_eq!(parse_status("Manual-Review"), Ok(Status::ManualReview));
        assert_eq!(parse_status("ManualReview"), Ok(Status::ManualReview));
        assert!(parse_status("manual").is_err());
        assert_eq!(
            parse_kind("icrc2-transfer-from"),
            Ok(Kind::Icrc2TransferFrom)
        );
        assert!(parse_kind("transfer").is_err());
    }
}
