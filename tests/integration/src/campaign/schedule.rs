//! Seeded fault schedules (R2, R3). A seed decides everything: which callers do what
//! (executed, submitted and tracked transfers, records and their reports, sagas, payouts),
//! the interleaving of their messages (the simulator's seeded scheduler), and the faults:
//! all six reject codes before delivery, lost responses after execution, forced ledger
//! replies, traps in callbacks before and after the result is journaled, upgrades with and
//! without stop at a chosen message, time jumps past the deduplication window, ledger and
//! archive outages, fee changes, forged memos, and an operator at random moments (step kind
//! 14, `Run::operator`): the runbook on the manual queue's head when it has one, pause or
//! resume of recovery, a runtime tunable (recovery batch, recovery interval, attempts before
//! the manual queue) changed and set back, an admin verb on an entry outside the manual queue
//! (it must be refused with the typed error and change neither the entry nor the audit log),
//! or a small read. After every step the journal is observed (I3, I4). At the end recovery is
//! resumed and the config set back (as the fee is) and recovery finishes; the manual queue,
//! rarely non-empty during the steps, then holds entries in about one schedule of eight, and
//! an operator resolves each by the same runbook (what is retried gets recovery once more);
//! every invariant is checked. The report counts each kind of verb. A failing seed is
//! replayed by one command (`replay_command`).

use super::check::{self, Observer};
use super::crash::{
    admin_request, exec_icrc1, exec_icrc2, payout, record_report, report, saga, submit_icrc2,
    tracked,
};
use super::{stop_upgrade_start_payout, upgrade_payout, Options, Rng, ServiceWasm};
use crate::{acct, run, user, Setup, DAY_NS, FEE, SECOND};
use candid::{Nat, Principal};
use ic_sim::{RejectCode, RejectWhen, SimSnapshot};
use icjournal::{
    AdminAction, AdminRequest, Executor, Intent, JournalError, ListFilter, PageRequest, Status,
};
use icjournal_client::{
    AdminListArgs, AuditArgs, ClientError, ServiceConfig, ServiceError, SetConfigArgs,
};
use icrc_ledger_types::icrc1::transfer::{Memo, TransferArg, TransferError};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const REJECTS: [&str; 8] = [
    "none",
    "SYS_FATAL",
    "SYS_TRANSIENT",
    "DESTINATION_INVALID",
    "CANISTER_REJECT",
    "CANISTER_ERROR",
    "SYS_UNKNOWN before delivery",
    "SYS_UNKNOWN after execution (lost response)",
];
const REPLIES: [&str; 6] = [
    "Ok",
    "BadFee",
    "InsufficientFunds",
    "TooOld",
    "TemporarilyUnavailable",
    "GenericError",
];
const TRAPS: [&str; 3] = ["none", "before result journaled", "after result journaled"];
const UPGRADES: [&str; 3] = ["none", "upgrade", "stop+upgrade"];
/// The operator verbs (step kind 14, the drain after recovery, the final settle's resume and
/// config restore), in `Matrix::operator` order.
const OPERATOR: [&str; 7] = [
    "manual-queue resolutions",
    "resolutions after recovery",
    "pauses",
    "resumes",
    "config changes",
    "refused verbs",
    "reads",
];
const RESOLVE: usize = 0;
const DRAINED: usize = 1;
const PAUSE: usize = 2;
const RESUME: usize = 3;
const CONFIG: usize = 4;
const REFUSED: usize = 5;
const READ: usize = 6;
/// Runtime tunables an operator changes and values they take (all valid): the batch a
/// recovery pass examines, the timer period, and the attempts before the manual queue (a low
/// one fills the queue the resolutions then work on).
const BATCH_SIZES: [u32; 4] = [1, 3, 10, 200];
const INTERVALS_S: [u64; 4] = [1, 2, 30, 120];
const MAX_ATTEMPTS: [u32; 3] = [1, 2, 8];

/// Which fault combinations the schedules injected into a transfer.
#[derive(Default, Clone)]
pub struct Matrix {
    cells: BTreeSet<(u8, u8, u8, u8)>,
    pub upgrades_between_messages: u64,
    pub window_jumps: u64,
    pub outages: u64,
    pub fee_changes: u64,
    /// Calls to the operator endpoints: step kind 14, plus the resume and the config restore
    /// the final settle makes when a schedule left recovery paused or the config changed.
    pub admin_verbs: u64,
    /// `admin_verbs` per kind (`OPERATOR`).
    pub operator: [u64; 7],
    pub forged_memos: u64,
    /// Seconds spent restoring, running steps, settling, checking.
    pub timing: [f64; 4],
    /// Messages executed and their instructions in steps, recovery and checks.
    pub work: [(u64, u64); 3],
}

impl Matrix {
    pub fn total() -> usize {
        REJECTS.len() * REPLIES.len() * TRAPS.len() * UPGRADES.len()
    }

    pub fn merge(&mut self, o: &Matrix) {
        self.cells.extend(o.cells.iter().copied());
        self.upgrades_between_messages += o.upgrades_between_messages;
        self.window_jumps += o.window_jumps;
        self.outages += o.outages;
        self.fee_changes += o.fee_changes;
        self.admin_verbs += o.admin_verbs;
        for i in 0..OPERATOR.len() {
            self.operator[i] += o.operator[i];
        }
        self.forged_memos += o.forged_memos;
        for i in 0..4 {
            self.timing[i] += o.timing[i];
        }
        for i in 0..3 {
            self.work[i].0 += o.work[i].0;
            self.work[i].1 += o.work[i].1;
        }
    }

    pub fn hit(&self) -> usize {
        self.cells.len()
    }

    /// The fault-matrix report: cells hit, and per dimension how many cells each value was in.
    pub fn report(&self) -> String {
        let mut out = format!(
            "fault matrix (reject code x ledger reply x trap point x upgrade point): {}/{} cells hit\n",
            self.hit(),
            Self::total()
        );
        let dim = |name: &str, names: &[&str], f: &dyn Fn(&(u8, u8, u8, u8)) -> u8| {
            let mut line = format!("  {name}:");
            for (i, n) in names.iter().enumerate() {
                let c = self.cells.iter().filter(|c| f(c) == i as u8).count();
                line.push_str(&format!(" [{n}: {c}]"));
            }
            line.push('\n');
            line
        };
        out += &dim("reject", &REJECTS, &|c| c.0);
        out += &dim("ledger reply", &REPLIES, &|c| c.1);
        out += &dim("trap", &TRAPS, &|c| c.2);
        out += &dim("upgrade", &UPGRADES, &|c| c.3);
        out += &format!(
            "  also: {} upgrades between messages, {} jumps past the dedup window, {} ledger/archive \
             outages, {} fee changes, {} operator verbs, {} forged memos",
            self.upgrades_between_messages,
            self.window_jumps,
            self.outages,
            self.fee_changes,
            self.admin_verbs,
            self.forged_memos
        );
        let kinds: Vec<String> = OPERATOR
            .iter()
            .zip(self.operator)
            .map(|(n, c)| format!("{c} {n}"))
            .collect();
        out += &format!("\n  operator verbs: {}", kinds.join(", "));
        out += &format!(
            "\n  time: restore {:.1}s, steps {:.1}s, recovery {:.1}s, checks {:.1}s",
            self.timing[0], self.timing[1], self.timing[2], self.timing[3]
        );
        out += &format!(
            "\n  work (messages, instructions): steps {:?}, recovery {:?}, checks {:?}",
            self.work[0], self.work[1], self.work[2]
        );
        out
    }
}

pub fn replay_command(seed: u64, bug: Option<&str>) -> String {
    match bug {
        None => format!(
            "cargo run --release --locked -p icjournal-tests --bin campaign -- --schedules 1 --seed {seed}"
        ),
        Some(b) => format!(
            "cargo run --release --locked -p icjournal-tests --bin campaign -- --planted-bug {b} --schedules 1 --seed {seed}"
        ),
    }
}

const UNSTOPPED: &str = "an upgrade without a stop was accepted";

struct Run<'a> {
    s: &'a Setup,
    w: &'a ServiceWasm,
    rng: Rng,
    matrix: Matrix,
    records: Vec<(Principal, u64)>,
    ids: Vec<u64>,
    fee_changed: bool,
    /// Recovery paused by an operator and not resumed yet.
    paused: bool,
    /// The config the service must have: the first read, then what the operators set.
    config: Option<ServiceConfig>,
    /// The config before an operator changed a tunable (set back by the next change or the
    /// final settle).
    config_before: Option<ServiceConfig>,
    /// What the operator verbs found wrong.
    violations: Vec<String>,
}

/// A value of `xs` other than `current` (`xs` has at least two values).
fn other<T: Copy + PartialEq>(rng: &mut Rng, xs: &[T], current: T) -> T {
    let rest: Vec<T> = xs.iter().copied().filter(|x| *x != current).collect();
    *rng.pick(&rest)
}

impl Run<'_> {
    fn who(&mut self) -> Principal {
        user(1 + self.rng.below(5))
    }

    fn lock(&mut self) -> Option<&'static str> {
        *self.rng.pick(&[None, Some("a"), Some("b")])
    }

    /// Arm one cell of the fault matrix for the next ledger call of `from`.
    fn arm(&mut self, from: Principal, method: &'static str) {
        let s = self.s;
        let rej = self.rng.below(REJECTS.len() as u64) as u8;
        let rep = self.rng.below(REPLIES.len() as u64) as u8;
        let trap = self.rng.below(TRAPS.len() as u64) as u8;
        // Upgrades are rarer than the other faults: a restore after one copies the whole
        // canister back (crash points already upgrade before every message of every flow).
        let upg = match self.rng.below(10) {
            0 => 1,
            1 => 2,
            _ => 0,
        };
        self.matrix.cells.insert((rej, rep, trap, upg));
        let code = [
            RejectCode::SysFatal,
            RejectCode::SysTransient,
            RejectCode::DestinationInvalid,
            RejectCode::CanisterReject,
            RejectCode::CanisterError,
            RejectCode::SysUnknown,
        ];
        let ledger = s.ledger;
        match rej {
            0 => {}
            1..=6 => s.sim().inject_reject(
                move |c| c.from == from && c.to == ledger && c.method == method,
                code[rej as usize - 1],
                RejectWhen::BeforeDelivery,
            ),
            _ => s.lose_next_ledger_response(from, method),
        }
        let reply = match rep {
            1 => Some(TransferError::BadFee {
                expected_fee: Nat::from(FEE + 1),
            }),
            2 => Some(TransferError::InsufficientFunds {
                balance: Nat::from(0u8),
            }),
            3 => Some(TransferError::TooOld),
            4 => Some(TransferError::TemporarilyUnavailable),
            5 => Some(TransferError::GenericError {
                error_code: Nat::from(7u8),
                message: "campaign".into(),
            }),
            _ => None,
        };
        if let Some(r) = reply {
            s.force_next_transfer_reply(r, 1);
        }
        if trap > 0 {
            s.trap_nth_callback_after(from, method, trap as u32, 1);
        }
        if upg > 0 {
            let k = s.sim().message_count() + 1 + self.rng.below(6);
            let w = self.w.clone();
            let (service, payout_c) = (s.service, s.payout);
            let is_payout = from == payout_c;
            s.sim().before_message(k, move |sim| {
                // An unstopped upgrade must be refused (`icjournal::upgrade`); a panic here is
                // this seed's violation.
                let stopped = super::is_stopped(sim, if is_payout { payout_c } else { service });
                match (is_payout, upg) {
                    (false, 1) => assert!(!w.upgrade(sim, service) || stopped, "{UNSTOPPED}"),
                    (false, _) => _ = w.stop_upgrade_start(sim, service),
                    (true, 1) => assert!(!upgrade_payout(sim, payout_c) || stopped, "{UNSTOPPED}"),
                    (true, _) => _ = stop_upgrade_start_payout(sim, payout_c),
                };
            });
            self.matrix.upgrades_between_messages += 1;
        }
    }

    fn last_id(&self) -> Option<u64> {
        super::check::service_summaries(self.s).last().map(|e| e.id)
    }

    fn step(&mut self) {
        let s = self.s;
        let amount = 10_000 + self.rng.below(2_000_000);
        match self.rng.below(17) {
            0 | 1 => {
                let (who, lock) = (self.who(), self.lock());
                if self.rng.chance(60) {
                    self.arm(s.service, "icrc2_transfer_from");
                }
                submit_icrc2(s, who, amount, lock);
            }
            2 | 3 => {
                let (who, lock) = (self.who(), self.lock());
                if self.rng.chance(70) {
                    self.arm(s.service, "icrc2_transfer_from");
                }
                exec_icrc2(s, who, amount, lock);
            }
            4 => {
                let (who, lock) = (self.who(), self.lock());
                if self.rng.chance(70) {
                    self.arm(s.service, "icrc1_transfer");
                }
                exec_icrc1(s, who, amount, lock);
            }
            5 => {
                let who = self.who();
                let ok = self.rng.chance(50);
                if let Some(id) = record_report(s, who, ok) {
                    self.records.push((who, id));
                }
            }
            6 => {
                // The owner reports again, disagreeing with the result it reported first.
                if !self.records.is_empty() {
                    let (who, id) = *self.rng.pick(&self.records);
                    let ok = self.rng.chance(50);
                    report(s, who, id, ok);
                }
            }
            7 => {
                let who = self.who();
                let send = self.rng.chance(80);
                if send && self.rng.chance(40) {
                    s.lose_next_ledger_response(who, "icrc1_transfer");
                }
                tracked(s, who, amount, send);
            }
            8 => {
                let who = self.who();
                if self.rng.chance(70) {
                    self.arm(s.payout, "icrc1_transfer");
                }
                payout(s, who, amount);
            }
            9 => {
                let who = self.who();
                let big = if self.rng.chance(50) {
                    amount
                } else {
                    100 * crate::USER_FUNDS
                };
                let _ = run(s.client(who).submit_saga(saga(s, who, big)));
            }
            10 if self.rng.chance(40) => {
                let w = self.w.clone();
                let mut sim = s.sim();
                match self.rng.below(4) {
                    0 => assert!(!w.upgrade(&mut sim, s.service), "{UNSTOPPED}"),
                    1 => _ = w.stop_upgrade_start(&mut sim, s.service),
                    2 => assert!(!upgrade_payout(&mut sim, s.payout), "{UNSTOPPED}"),
                    _ => _ = stop_upgrade_start_payout(&mut sim, s.payout),
                };
            }
            11 => {
                if self.rng.chance(30) {
                    if self.rng.chance(50) {
                        s.archive_now();
                    }
                    self.matrix.window_jumps += 1;
                    s.advance(Duration::from_nanos(DAY_NS + 3600 * SECOND));
                } else {
                    s.advance_secs(1 + self.rng.below(60));
                }
            }
            12 => {
                self.matrix.outages += 1;
                match self.rng.below(3) {
                    0 => s.ledger_unavailable_next(1 + self.rng.below(3)),
                    1 => {
                        s.set_archive_unavailable(true);
                        s.advance_secs(5 + self.rng.below(30));
                        s.set_archive_unavailable(false);
                    }
                    _ => {
                        s.ledger_trap(true);
                        s.advance_secs(5 + self.rng.below(30));
                        s.ledger_trap(false);
                    }
                }
            }
            13 => {
                self.matrix.fee_changes += 1;
                self.fee_changed = !self.fee_changed;
                s.set_fee(if self.fee_changed { 2 * FEE } else { FEE });
            }
            14 => self.operator(),
            15 => self.forge_memo(amount),
            _ => {
                s.tick();
            }
        }
    }

    /// An operator at work while flows run. A non-empty manual queue comes first (its head is
    /// resolved by the runbook, most of the time); otherwise, or else, one of what operators
    /// do besides: pause or resume recovery, change a runtime tunable or set it back, try a
    /// verb on an entry outside the manual queue (which must be refused and change nothing),
    /// or read (small pages only: a read here is a step's cost, not a check's).
    fn operator(&mut self) {
        if let Some(id) = super::crash::first_manual(self.s) {
            if self.rng.chance(70) {
                self.resolve(id, RESOLVE);
                return;
            }
        }
        match self.rng.below(4) {
            0 => {
                self.config_view();
                self.set_paused(!self.paused);
            }
            1 => self.tune(),
            2 => self.refused_verb(),
            _ => self.read(),
        }
    }

    fn count(&mut self, kind: usize) {
        self.matrix.admin_verbs += 1;
        self.matrix.operator[kind] += 1;
    }

    fn violation(&mut self, v: String) {
        // A stop+upgrade hook may be stopping the service while the operator calls it: the
        // system rejects the call ("Canister ... is stopping"), as the IC does, and nothing
        // reached the canister (6,000 schedules from seed 3,000,001: seed 3003657).
        if v.contains(" is stopping\"") || v.contains(" is stopped\"") {
            return;
        }
        self.violations.push(format!("operator: {v}"));
    }

    /// The runbook on a manual-queue entry: a transfer found on the ledger is resolved as
    /// succeeded at its block; one not found is retried, or closed (failed / cancelled) once
    /// its deduplication window has closed (it can no longer execute); anything else is
    /// retried.
    fn resolve(&mut self, id: u64, kind: usize) {
        let s = self.s;
        self.count(kind);
        let e = s.service_entry(id);
        let action = match &e.intent {
            Intent::Transfer(t) => {
                let sender = match t.executor {
                    Executor::SelfCanister => s.service,
                    Executor::External { caller } => caller,
                };
                let found = s
                    .blocks()
                    .into_iter()
                    .find(|b| crate::invariants::matches(&t.op, sender, b));
                let closed = t
                    .created_at_time()
                    .is_some_and(|cat| s.now() > cat + DAY_NS + 600 * SECOND);
                match found {
                    Some(b) => AdminAction::ResolveSucceeded {
                        block_index: Some(b.index),
                    },
                    None if closed && self.rng.chance(50) => AdminAction::ResolveFailed,
                    None if closed => AdminAction::Cancel,
                    None => AdminAction::Retry,
                }
            }
            _ => AdminAction::Retry,
        };
        // A typed refusal can be right (the entry changed while its evidence was read); a
        // trap or an undecodable reply never is.
        match run(s
            .admin_client()
            .admin_act(admin_request(id, action.clone())))
        {
            Ok(_) | Err(ClientError::Service(_)) => {}
            Err(e) => self.violation(format!("runbook {action:?} on manual entry {id}: {e:?}")),
        }
    }

    /// Every entry recovery left in the manual queue, resolved by the runbook. Returns whether
    /// there was any.
    fn drain(&mut self) -> bool {
        let queue = self.s.service_manual_queue();
        for e in &queue {
            self.resolve(e.id, DRAINED);
        }
        !queue.is_empty()
    }

    /// What the service says its operator settings are; they must be what the operators set,
    /// upgrades in between or not (both are persisted). The first read is the baseline.
    fn config_view(&mut self) -> Option<ServiceConfig> {
        match run(self.s.admin_client().get_config()) {
            Ok(v) => {
                if v.recovery_paused != self.paused {
                    self.violation(format!(
                        "get_config says recovery_paused {} but the operators left it {}",
                        v.recovery_paused, self.paused
                    ));
                }
                match &self.config {
                    Some(c) if *c != v.config => self.violation(format!(
                        "get_config answers {:?}, not the config the operators set ({c:?})",
                        v.config
                    )),
                    Some(_) => {}
                    None => self.config = Some(v.config.clone()),
                }
                Some(v.config)
            }
            Err(e) => {
                self.violation(format!("get_config failed: {e:?}"));
                None
            }
        }
    }

    fn set_paused(&mut self, paused: bool) {
        let c = self.s.admin_client();
        let (kind, r) = if paused {
            (PAUSE, run(c.pause_recovery("campaign operator".into())))
        } else {
            (RESUME, run(c.resume_recovery("campaign operator".into())))
        };
        self.count(kind);
        match r {
            Ok(()) => self.paused = paused,
            Err(e) => self.violation(format!("pause/resume ({paused}) failed: {e:?}")),
        }
    }

    /// Change one runtime tunable to another valid value, or set back the one changed before.
    fn tune(&mut self) {
        let Some(current) = self.config_view() else {
            return;
        };
        let next = match self.config_before.take() {
            Some(before) => before,
            None => {
                let mut c = current.clone();
                match self.rng.below(3) {
                    0 => {
                        c.recovery_batch_size =
                            other(&mut self.rng, &BATCH_SIZES, c.recovery_batch_size)
                    }
                    1 => {
                        let s = other(&mut self.rng, &INTERVALS_S, c.recovery_interval_ns / SECOND);
                        c.recovery_interval_ns = s * SECOND;
                    }
                    _ => c.max_attempts = other(&mut self.rng, &MAX_ATTEMPTS, c.max_attempts),
                }
                self.config_before = Some(current);
                c
            }
        };
        self.set_config(next);
    }

    fn set_config(&mut self, config: ServiceConfig) {
        self.count(CONFIG);
        let r = run(self.s.admin_client().set_config(SetConfigArgs {
            config: config.clone(),
            reason: "campaign operator".into(),
        }));
        match r {
            Ok(()) => self.config = Some(config),
            Err(e) => {
                self.violation(format!("set_config of a valid config failed: {e:?}"));
                // Nothing changed: nothing to set back.
                self.config_before = None;
            }
        }
    }

    /// An admin verb on an entry outside the manual queue (or on no entry): the service must
    /// answer the typed error a read of the entry predicts and change nothing, neither the
    /// entry nor the audit log.
    fn refused_verb(&mut self) {
        let s = self.s;
        // Nothing in flight may move the entry between the two reads: any change is the verb's.
        s.tick();
        let c = s.admin_client();
        let m = s.service_metrics();
        let id = self.rng.below(m.entries_total + 2);
        let before = run(c.admin_get_entry(id));
        if before
            .as_ref()
            .is_ok_and(|e| e.status == Status::ManualReview)
        {
            self.resolve(id, RESOLVE);
            return;
        }
        let action = match self.rng.below(5) {
            0 => AdminAction::Retry,
            1 => AdminAction::ResolveFailed,
            2 => AdminAction::Cancel,
            3 => AdminAction::Compensate,
            _ => AdminAction::ResolveSucceeded {
                block_index: Some(self.rng.below(100)),
            },
        };
        let ack = self.rng.chance(50);
        self.count(REFUSED);
        let reply = run(c.admin_act(AdminRequest {
            entry_id: id,
            action: action.clone(),
            reason: "campaign operator".into(),
            acknowledge_risk: Some(ack),
        }));
        let expected = match &before {
            Ok(e) => ClientError::Service(ServiceError::Journal(JournalError::NotInManualReview {
                entry_id: id,
                status: e.status,
            })),
            Err(e) => e.clone(),
        };
        let what = match &before {
            Ok(e) => format!("{action:?} on entry {id} ({:?})", e.status),
            Err(_) => format!("{action:?} on entry {id} (none)"),
        };
        match reply {
            Err(e) if e == expected => {}
            other => self.violation(format!(
                "{what}: answered {other:?}, expected Err({expected:?})"
            )),
        }
        let after = run(c.admin_get_entry(id));
        if after != before {
            self.violation(format!(
                "{what} was refused but the entry changed: {before:?} -> {after:?}"
            ));
        }
        let audit = s.service_metrics().audit_records;
        if audit != m.audit_records {
            self.violation(format!(
                "{what} was refused but the audit log grew from {} to {audit} records",
                m.audit_records
            ));
        }
    }

    /// A read an operator makes while flows run, checked for the shape its request asks for.
    fn read(&mut self) {
        self.count(READ);
        let c = self.s.admin_client();
        let limit = 1 + self.rng.below(5) as u32;
        match self.rng.below(3) {
            0 => {
                let status = *self.rng.pick(&[
                    Status::ManualReview,
                    Status::Unknown,
                    Status::Pending,
                    Status::Succeeded,
                    Status::Failed,
                ]);
                match run(c.admin_list(AdminListArgs {
                    filter: ListFilter {
                        status: Some(status),
                        ..Default::default()
                    },
                    page: PageRequest {
                        start_after: None,
                        limit,
                    },
                })) {
                    Ok(p) => {
                        let ordered = p.items.windows(2).all(|w| w[0].id < w[1].id);
                        if p.items.len() > limit as usize
                            || !ordered
                            || p.items.iter().any(|e| e.status != status)
                        {
                            self.violation(format!(
                                "admin_list of {limit} {status:?} entries answered {:?}",
                                p.items.iter().map(|e| (e.id, e.status)).collect::<Vec<_>>()
                            ));
                        }
                    }
                    Err(e) => self.violation(format!("admin_list failed: {e:?}")),
                }
            }
            1 => {
                let start_seq = self.rng.below(40);
                match run(c.admin_audit(AuditArgs { start_seq, limit })) {
                    Ok(rs) => {
                        let ordered = rs.windows(2).all(|w| w[0].seq < w[1].seq);
                        if rs.len() > limit as usize
                            || !ordered
                            || rs.iter().any(|r| r.seq < start_seq)
                        {
                            self.violation(format!(
                                "admin_audit from {start_seq} (limit {limit}) answered seqs {:?}",
                                rs.iter().map(|r| r.seq).collect::<Vec<_>>()
                            ));
                        }
                    }
                    Err(e) => self.violation(format!("admin_audit failed: {e:?}")),
                }
            }
            _ => {
                self.config_view();
            }
        }
    }

    /// Before the final settle: recovery resumed and the config set back, as an operator
    /// would once the incident is over. Without the resume, entries left unresolved by a
    /// paused recovery would be the harness's doing, not the product's (I2).
    fn heal(&mut self) {
        if self.paused {
            self.set_paused(false);
        }
        if let Some(before) = self.config_before.take() {
            self.set_config(before);
        }
    }

    /// Someone else sends a transfer carrying the memo of one of the service's entries: the
    /// memo alone must never be taken as proof.
    fn forge_memo(&mut self, amount: u64) {
        let s = self.s;
        let Some(last) = self.last_id() else { return };
        let id = last.saturating_sub(self.rng.below(3));
        self.matrix.forged_memos += 1;
        let _ = s.ledger_transfer(
            user(6),
            TransferArg {
                from_subaccount: None,
                to: acct(user(9)),
                fee: None,
                created_at_time: Some(s.now()),
                memo: Some(Memo::from(icjournal::memo::encode(id))),
                amount: Nat::from(amount),
            },
        );
        self.ids.push(id);
    }
}

/// One schedule from `seed`, forked from `base`. Returns its violations. A panic anywhere in
/// it (a test helper under an unforeseen state, in the steps, recovery or the checks) is one
/// of them: the campaign goes on with the next seed and the seed's replay command is printed.
pub fn run_one(
    s: &Setup,
    base: &SimSnapshot,
    w: &ServiceWasm,
    seed: u64,
    matrix: &mut Matrix,
) -> Vec<String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_one_unguarded(s, base, w, seed, matrix)
    }))
    .unwrap_or_else(|e| vec![format!("harness: panicked: {}", panic_message(&*e))])
}

/// The first line of a panic's message.
pub fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    let msg = e
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|m| m.to_string()))
        .unwrap_or_default();
    msg.lines().next().unwrap_or("").to_string()
}

/// The report line of a failing schedule: its violations and the one-line command that
/// replays it.
pub fn failing_line(seed: u64, violations: &[String], bug: Option<&str>) -> String {
    format!(
        "schedule seed {seed}: {}\n  replay: {}",
        violations.join("; "),
        replay_command(seed, bug)
    )
}

fn run_one_unguarded(
    s: &Setup,
    base: &SimSnapshot,
    w: &ServiceWasm,
    seed: u64,
    matrix: &mut Matrix,
) -> Vec<String> {
    let t0 = Instant::now();
    s.sim().restore(base);
    s.sim().clear_faults();
    s.sim().reseed_scheduler(seed);
    w.replant(&mut s.sim(), s.service);
    let mut rng = Rng::new(seed);
    let steps = 3 + rng.below(6);
    let mut r = Run {
        s,
        w,
        rng,
        matrix: Matrix::default(),
        records: vec![],
        ids: vec![],
        fee_changed: false,
        paused: false,
        config: None,
        config_before: None,
        violations: vec![],
    };
    let mut obs = Observer::default();
    let t1 = Instant::now();
    let work = |s: &Setup| {
        let sim = s.sim();
        let i: u64 = sim.trace().iter().map(|m| m.instructions).sum();
        (sim.message_count(), i)
    };
    let w1 = work(s);
    let mut harness = Vec::new();
    for _ in 0..steps {
        // A test helper that panics (e.g. a control call hit by an injected fault) ends the
        // schedule's steps; it is reported, never hidden.
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.step();
            obs.observe(s);
        }));
        if let Err(e) = step {
            harness.push(format!("harness: a step panicked: {}", panic_message(&*e)));
            break;
        }
    }
    let t2 = Instant::now();
    let w2 = work(s);
    // Faults end; the world heals; recovery finishes.
    s.tick();
    s.sim().clear_faults();
    s.ledger_trap(false);
    s.set_archive_unavailable(false);
    if r.fee_changed {
        s.set_fee(FEE);
    }
    r.heal();
    check::settle(s, 4 * 24 * 3600);
    obs.observe(s);
    // The manual queue is rarely non-empty while the steps run; it is after recovery ran out
    // in about one schedule of eight. The incident over, an operator works through it by the
    // runbook; what they retry gets recovery once more before the checks.
    if r.drain() {
        check::settle(s, 4 * 24 * 3600);
        obs.observe(s);
    }
    let t3 = Instant::now();
    let w3 = work(s);
    let mut v = check::check(s, Some(&obs));
    v.append(&mut r.violations);
    v.extend(harness);
    let t4 = Instant::now();
    if std::env::var("CAMPAIGN_PROFILE").is_ok() {
        let sim = s.sim();
        let mut agg: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for m in sim.trace().iter().filter(|m| m.index >= w1.0) {
            let who = if m.canister == s.service {
                "service"
            } else if m.canister == s.payout {
                "payout"
            } else if m.canister == s.ledger {
                "ledger"
            } else {
                "other"
            };
            let e = agg
                .entry(format!(
                    "{who} {:?} {}",
                    m.kind,
                    m.method.clone().unwrap_or_default()
                ))
                .or_default();
            e.0 += 1;
            e.1 += m.instructions;
        }
        let mut v2: Vec<_> = agg.into_iter().collect();
        v2.sort_by_key(|(_, (_, i))| std::cmp::Reverse(*i));
        for (k, (n, i)) in v2.iter().take(12) {
            eprintln!("profile seed {seed}: {k}: {n} messages, {i} instructions");
        }
    }
    let w4 = work(s);
    for (i, (a, b)) in [(w1, w2), (w2, w3), (w3, w4)].into_iter().enumerate() {
        r.matrix.work[i].0 += b.0 - a.0;
        r.matrix.work[i].1 += b.1.saturating_sub(a.1);
    }
    matrix.merge(&r.matrix);
    matrix.timing[0] += (t1 - t0).as_secs_f64();
    matrix.timing[1] += (t2 - t1).as_secs_f64();
    matrix.timing[2] += (t3 - t2).as_secs_f64();
    matrix.timing[3] += (t4 - t3).as_secs_f64();
    v
}

pub struct ScheduleReport {
    pub runs: u64,
    pub failing: Vec<(u64, Vec<String>)>,
    pub matrix: Matrix,
}

/// `count` schedules with seeds `first_seed..`. `stop_at_first`: stop at the first failing
/// seed (the planted-bug search).
pub fn run_many(
    opts: &Options,
    w: &ServiceWasm,
    first_seed: u64,
    count: u64,
    stop_at_first: bool,
) -> ScheduleReport {
    let s = super::base_setup(super::BASE_SEED);
    if w.bug.is_some() {
        // The planted build of the service, same stable layout: an upgrade switches to it.
        assert!(
            w.stop_upgrade_start(&mut s.sim(), s.service),
            "install the planted build"
        );
    }
    let base = s.sim().snapshot();
    run_many_from(&s, &base, opts, w, first_seed, count, stop_at_first)
}

/// `run_many` forked from a given deployment and snapshot of it.
pub fn run_many_from(
    s: &Setup,
    base: &SimSnapshot,
    opts: &Options,
    w: &ServiceWasm,
    first_seed: u64,
    count: u64,
    stop_at_first: bool,
) -> ScheduleReport {
    if opts.verbose {
        let sim = s.sim();
        for (n, c) in [
            ("ledger", s.ledger),
            ("service", s.service),
            ("payout", s.payout),
        ] {
            eprintln!(
                "schedules: {n}: heap {} B, stable {} B",
                sim.wasm_memory(c).map_or(0, |m| m.len()),
                sim.stable_memory(c).map_or(0, |m| m.len())
            );
        }
    }
    let mut rep = ScheduleReport {
        runs: 0,
        failing: vec![],
        matrix: Matrix::default(),
    };
    for seed in first_seed..first_seed.saturating_add(count) {
        let v = run_one(s, base, w, seed, &mut rep.matrix);
        rep.runs += 1;
        if !v.is_empty() {
            if opts.verbose && w.bug.is_none() {
                eprintln!("{}", failing_line(seed, &v, None));
            }
            rep.failing.push((seed, v));
            if stop_at_first {
                break;
            }
        }
        if opts.verbose && rep.runs % 100 == 0 {
            eprintln!(
                "schedules: {} runs, {} failing",
                rep.runs,
                rep.failing.len()
            );
        }
    }
    rep
}
