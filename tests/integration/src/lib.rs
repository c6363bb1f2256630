//! Test fixture for icjournal's end-to-end tests and demo: the test ledger (+ archive), the
//! icjournal service canister and the payout example canister on the IC simulator, with
//! fluent helpers, a typed-client transport over the simulator, and the ledger-vs-journal
//! invariant check (I1, I2).

pub mod blocks;
pub mod campaign;
pub mod invariants;
pub mod network;
pub mod payout_types;

use candid::utils::{ArgumentDecoder, ArgumentEncoder};
use candid::{CandidType, Decode, Deserialize, Encode, Nat, Principal};
use ic_sim::{RejectCode, RejectResponse, RejectWhen, Simulator};
use icjournal::{
    Entry, EntryId, EntrySummary, ListFilter, Metrics, PageRequest, Status, TransferSpec,
};
use icjournal_client::{
    AdminListArgs, CallMode, Client, ClientError, Fees, LedgerConfig, ServiceConfig, Transport,
    TransportError,
};
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::{TransferArg, TransferError};
use icrc_ledger_types::icrc2::approve::{ApproveArgs, ApproveError};
use payout_types::*;
use serde_bytes::ByteBuf;
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

pub use ic_sim;

/// Ledger transfer fee of the test ledger.
pub const FEE: u64 = 10_000;
pub const SECOND: u64 = 1_000_000_000;
pub const DAY_NS: u64 = 24 * 3600 * SECOND;
/// Recovery timer period of the service and the payout canister in the tests.
pub const RECOVERY_INTERVAL_S: u64 = 5;

/// A deterministic test principal (self-authenticating, never anonymous).
pub fn user(n: u64) -> Principal {
    let mut bytes = b"icjournal-user-".to_vec();
    bytes.extend_from_slice(&n.to_be_bytes());
    Principal::self_authenticating(bytes)
}

pub fn admin() -> Principal {
    Principal::self_authenticating(b"icjournal-admin")
}

pub fn stranger() -> Principal {
    Principal::self_authenticating(b"icjournal-stranger")
}

pub fn controller() -> Principal {
    Simulator::default_controller()
}

pub fn minter() -> Principal {
    Principal::self_authenticating(b"icjournal-minter")
}

pub fn acct(owner: Principal) -> Account {
    Account {
        owner,
        subaccount: None,
    }
}

/// Block on a future that the simulator completes synchronously.
pub fn run<F: Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// The Wasm modules (built once per process, `canister-release`).
pub struct Wasms {
    pub ledger: Vec<u8>,
    pub service: Vec<u8>,
    pub payout: Vec<u8>,
}

/// `package`'s canister Wasm: from `$ICJOURNAL_WASM_DIR/<package>.wasm` when that is set (to
/// measure or test saved builds, e.g. the benchmark's before/after), else built from source.
fn canister_wasm(package: &str) -> Vec<u8> {
    match std::env::var_os("ICJOURNAL_WASM_DIR") {
        Some(dir) => {
            let file =
                std::path::Path::new(&dir).join(format!("{}.wasm", package.replace('-', "_")));
            std::fs::read(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
        }
        None => ic_sim::build::canister_wasm(package),
    }
}

impl Wasms {
    pub fn ledger() -> Vec<u8> {
        canister_wasm("test-ledger")
    }
    /// The service Wasm as released: `canister-release` build, shrunk, with
    /// `candid/icjournal.did` embedded as `icp:public candid:service` metadata (the same
    /// `icjournal_build::finish` that `scripts/build-canister.sh` runs).
    pub fn service() -> Vec<u8> {
        static W: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        W.get_or_init(|| {
            let raw = canister_wasm("icjournal-canister");
            let did_path = ic_sim::build::workspace_root().join("candid/icjournal.did");
            let did = std::fs::read_to_string(&did_path)
                .unwrap_or_else(|e| panic!("read {}: {e}", did_path.display()));
            icjournal_build::finish(&raw, &did)
                .expect("finish the service Wasm")
                .wasm
        })
        .clone()
    }
    pub fn payout() -> Vec<u8> {
        canister_wasm("payout-example")
    }
    /// The example caller canister (`tests/caller`).
    pub fn caller() -> Vec<u8> {
        canister_wasm("caller-example")
    }
    /// The benchmark's bare baseline canister (`tests/bare`).
    pub fn bare() -> Vec<u8> {
        canister_wasm("bare-example")
    }
    pub fn all() -> Wasms {
        Wasms {
            ledger: Self::ledger(),
            service: Self::service(),
            payout: Self::payout(),
        }
    }
}

pub type Sim = Rc<RefCell<Simulator>>;

/// `icjournal_client::Transport` over the simulator: ingress calls from `sender`. Queries run
/// on the current state, updates run the system until they complete.
#[derive(Clone)]
pub struct SimTransport {
    pub sim: Sim,
    pub sender: Principal,
}

fn transport_error(r: RejectResponse) -> TransportError {
    TransportError::Rejected {
        code: r.reject_code as u32,
        message: r.reject_message,
    }
}

impl Transport for SimTransport {
    fn call(
        &self,
        canister: Principal,
        method: &str,
        mode: CallMode,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>> {
        let mut sim = self.sim.borrow_mut();
        let r = match mode {
            CallMode::Query => sim.query_call(canister, self.sender, method, arg),
            CallMode::Update => sim.update_call(canister, self.sender, method, arg),
        };
        std::future::ready(r.map_err(transport_error))
    }
}

pub type SimClient = Client<SimTransport>;

/// How the ledger archives (it spawns its archives itself, as DFINITY's does).
#[derive(Clone, Debug)]
pub struct ArchiveSetup {
    pub trigger_threshold: u64,
    pub num_blocks_to_archive: u64,
    /// `None`: DFINITY's 1 GiB per archive.
    pub node_max_memory_size_bytes: Option<u64>,
    /// `None`: DFINITY's 10 T cycles per archive.
    pub cycles_for_archive_creation: Option<u64>,
}

/// What to deploy.
#[derive(Clone, Debug)]
pub struct SetupOptions {
    pub seed: Option<u64>,
    /// `Some(..)`: the ledger archives blocks, spawning archive canisters.
    pub archive: Option<ArchiveSetup>,
    /// The ledger's limits (`None`: DFINITY's).
    pub limits: Option<Limits>,
    pub service: bool,
    pub payout: bool,
    pub max_attempts: u32,
    pub max_unresolved_per_caller: u32,
    pub max_in_flight_per_caller: u32,
    pub max_payload_bytes: u32,
    pub approvals_required: u32,
    pub tx_window_ns: u64,
    /// Payout canister: ledger call timeout (0 = unbounded wait).
    pub payout_call_timeout_secs: Option<u32>,
    /// Admins of the service and the payout canister.
    pub admins: Vec<Principal>,
    /// Further ledger accounts funded with [`USER_FUNDS`] at genesis (besides users 0..10).
    pub funded: Vec<Principal>,
    /// The service's fees (`None`: none; tests about fees set them).
    pub fees: Option<Fees>,
    pub fee_exempt: Vec<Principal>,
    /// The service's stable memory budget (`None`: the default).
    pub stable_memory_limit_bytes: Option<u64>,
}

impl Default for SetupOptions {
    fn default() -> Self {
        SetupOptions {
            seed: None,
            archive: None,
            limits: None,
            service: true,
            payout: false,
            max_attempts: 6,
            max_unresolved_per_caller: 1_000,
            max_in_flight_per_caller: 50,
            max_payload_bytes: 4 * 1024,
            approvals_required: 1,
            tx_window_ns: DAY_NS,
            payout_call_timeout_secs: None,
            admins: vec![admin()],
            funded: vec![],
            fees: None,
            fee_exempt: vec![],
            stable_memory_limit_bytes: None,
        }
    }
}

impl SetupOptions {
    pub fn seed(mut self, s: u64) -> Self {
        self.seed = Some(s);
        self
    }
    /// The ledger archives `num` blocks whenever it holds `trigger` local blocks (DFINITY's
    /// `trigger_threshold` / `num_blocks_to_archive`); a trigger above the blocks a test makes
    /// archives only on [`Setup::archive_now`].
    pub fn archive(mut self, trigger: u64, num: u64) -> Self {
        self.archive = Some(ArchiveSetup {
            trigger_threshold: trigger,
            num_blocks_to_archive: num,
            node_max_memory_size_bytes: None,
            cycles_for_archive_creation: None,
        });
        self
    }
    /// Each archive holds at most `bytes` (a full one makes the ledger spawn the next).
    pub fn archive_node_bytes(mut self, bytes: u64) -> Self {
        self.archive
            .as_mut()
            .expect("archive(..) first")
            .node_max_memory_size_bytes = Some(bytes);
        self
    }
    pub fn archive_cycles(mut self, cycles: u64) -> Self {
        self.archive
            .as_mut()
            .expect("archive(..) first")
            .cycles_for_archive_creation = Some(cycles);
        self
    }
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }
    pub fn with_payout(mut self) -> Self {
        self.payout = true;
        self
    }
    pub fn without_service(mut self) -> Self {
        self.service = false;
        self
    }
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }
    pub fn max_unresolved(mut self, n: u32) -> Self {
        self.max_unresolved_per_caller = n;
        self
    }
    pub fn max_in_flight(mut self, n: u32) -> Self {
        self.max_in_flight_per_caller = n;
        self
    }
    pub fn approvals(mut self, n: u32) -> Self {
        self.approvals_required = n;
        self
    }
    /// The service charges these fees (tests run without fees unless they set them).
    pub fn fees(mut self, fees: Fees) -> Self {
        self.fees = Some(fees);
        self
    }
    pub fn build(self) -> Setup {
        Setup::deploy(self)
    }
}

/// Canister ids of a deployment made by [`deploy_on`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deployed {
    /// The ledger; it spawns its archives itself (`Setup::archives`).
    pub ledger: Principal,
    /// Created always; the service Wasm is installed only with `opts.service`.
    pub service: Principal,
    /// Created always; the payout Wasm is installed only with `opts.payout`.
    pub payout: Principal,
}

/// A deployment step that failed.
#[derive(Debug)]
pub struct DeployError {
    pub step: &'static str,
    pub error: ic_sim::SimError,
}

impl std::fmt::Display for DeployError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "install {}: {}", self.step, self.error)
    }
}

impl std::error::Error for DeployError {}

/// Create and install the test ledger (+ archive), the service and the payout canister on
/// `sim` as `opts` says (what [`Setup`] and the local replica both deploy). `opts.seed` is not
/// used here: it chooses how the caller creates the simulator.
pub fn deploy_on(sim: &mut Simulator, opts: &SetupOptions) -> Result<Deployed, DeployError> {
    let step = |step| move |error| DeployError { step, error };
    let ledger_wasm = Wasms::ledger();
    let ledger = sim.create_canister();
    let service = sim.create_canister();
    let payout = sim.create_canister();
    let mut initial: Vec<(Account, Nat)> = (0..10)
        .map(|i| (acct(user(i)), Nat::from(USER_FUNDS)))
        .collect();
    initial.extend(
        opts.funded
            .iter()
            .map(|p| (acct(*p), Nat::from(USER_FUNDS))),
    );
    initial.push((acct(payout), Nat::from(100 * USER_FUNDS)));
    // The ledger spawns its archives itself, through the management canister.
    let init = LedgerInitArgs {
        minting_account: acct(minter()),
        initial_balances: initial,
        transfer_fee: Nat::from(FEE),
        token_name: "icjournal test token".into(),
        token_symbol: "IJT".into(),
        decimals: Some(8),
        max_memo_length: None,
        archive_options: opts
            .archive
            .as_ref()
            .map(|a| Setup::archive_options(a, &ledger_wasm)),
        limits: opts.limits.clone(),
    };
    sim.install_canister(
        ledger,
        ledger_wasm,
        Encode!(&LedgerArg::Ledger(init)).unwrap(),
        None,
    )
    .map_err(step("ledger"))?;
    if opts.service {
        let cfg = Setup::service_config(opts, ledger);
        sim.install_canister(
            service,
            Wasms::service(),
            Encode!(&Some(cfg)).unwrap(),
            None,
        )
        .map_err(step("service"))?;
    }
    if opts.payout {
        let arg = PayoutArg::Init(InitArg {
            ledger,
            admins: opts.admins.clone(),
            ledger_fee: Some(Nat::from(FEE)),
            initial_balances: (0..10).map(|i| (user(i), Nat::from(USER_FUNDS))).collect(),
            engine: Some(Setup::payout_engine_config(opts)),
        });
        sim.install_canister(payout, Wasms::payout(), Encode!(&arg).unwrap(), None)
            .map_err(step("payout"))?;
    }
    Ok(Deployed {
        ledger,
        service,
        payout,
    })
}

/// Everything deployed on one simulator.
pub struct Setup {
    pub sim: Sim,
    pub opts: SetupOptions,
    pub ledger: Principal,
    pub service: Principal,
    pub payout: Principal,
    /// Journals the invariant check compares with the ledger.
    pub check_on_drop: bool,
}

/// Initial funds of users 0..10 on the ledger.
pub const USER_FUNDS: u64 = 1_000_000_000;

impl Setup {
    pub fn new() -> Setup {
        SetupOptions::default().build()
    }

    pub fn options() -> SetupOptions {
        SetupOptions::default()
    }

    pub fn service_config(opts: &SetupOptions, ledger: Principal) -> ServiceConfig {
        ServiceConfig {
            admins: opts.admins.clone(),
            ledgers: vec![LedgerConfig {
                ledger,
                fee: Some(Nat::from(FEE)),
                tx_window_ns: opts.tx_window_ns,
            }],
            recovery_interval_ns: RECOVERY_INTERVAL_S * SECOND,
            recovery_batch_size: 50,
            max_attempts: opts.max_attempts,
            max_unresolved_per_caller: opts.max_unresolved_per_caller,
            max_unresolved_bytes_per_caller: 4 * 1024 * 1024,
            max_in_flight_per_caller: opts.max_in_flight_per_caller,
            max_in_flight_total: opts.max_in_flight_per_caller.max(500),
            max_payload_bytes: opts.max_payload_bytes,
            approvals_required: opts.approvals_required,
            retention_ns: None,
            summary_retention_ns: None,
            max_entries_per_caller: 100_000,
            max_bytes_per_caller: 64 << 20,
            stable_memory_limit_bytes: opts.stable_memory_limit_bytes.unwrap_or(4 << 30),
            new_work_headroom_bytes: 32 << 20,
            fees: opts.fees.clone().unwrap_or(Fees {
                record_cycles: 0,
                tracked_transfer_cycles: 0,
                transfer_cycles: 0,
            }),
            fee_exempt: opts.fee_exempt.clone(),
        }
    }

    pub fn payout_engine_config(opts: &SetupOptions) -> EngineConfig {
        EngineConfig {
            recovery_interval_ns: Some(RECOVERY_INTERVAL_S * SECOND),
            max_attempts: Some(opts.max_attempts),
            backoff_base_ns: Some(SECOND),
            backoff_max_ns: Some(20 * SECOND),
            in_flight_lease_ns: None,
            call_timeout_secs: opts.payout_call_timeout_secs,
            ledger_tx_window_ns: Some(opts.tx_window_ns),
            recovery_batch: None,
            approvals_required: Some(opts.approvals_required),
        }
    }

    /// The archives' controller is the tests' controller (DFINITY's ledgers name their
    /// governance canister); the archive Wasm is the ledger's own (one Wasm, two roles).
    pub fn archive_options(a: &ArchiveSetup, ledger_wasm: &[u8]) -> ArchiveOptions {
        ArchiveOptions {
            trigger_threshold: a.trigger_threshold,
            num_blocks_to_archive: a.num_blocks_to_archive,
            node_max_memory_size_bytes: a.node_max_memory_size_bytes,
            max_message_size_bytes: None,
            controller_id: controller(),
            more_controller_ids: None,
            cycles_for_archive_creation: a.cycles_for_archive_creation,
            max_transactions_per_response: None,
            archive_wasm: ByteBuf::from(ledger_wasm.to_vec()),
        }
    }

    fn deploy(opts: SetupOptions) -> Setup {
        let mut sim = match opts.seed {
            Some(s) => Simulator::with_seed(s),
            None => Simulator::new(),
        };
        let d = deploy_on(&mut sim, &opts).unwrap_or_else(|e| panic!("deploy: {e}"));
        Setup {
            sim: Rc::new(RefCell::new(sim)),
            opts,
            ledger: d.ledger,
            service: d.service,
            payout: d.payout,
            check_on_drop: true,
        }
    }

    // ------------------------------------------------------------------ raw calls

    pub fn sim(&self) -> std::cell::RefMut<'_, Simulator> {
        self.sim.borrow_mut()
    }

    pub fn update<A: ArgumentEncoder, R: for<'a> ArgumentDecoder<'a>>(
        &self,
        canister: Principal,
        sender: Principal,
        method: &str,
        args: A,
    ) -> Result<R, RejectResponse> {
        self.sim().update_candid(canister, sender, method, args)
    }

    pub fn query<A: ArgumentEncoder, R: for<'a> ArgumentDecoder<'a>>(
        &self,
        canister: Principal,
        sender: Principal,
        method: &str,
        args: A,
    ) -> Result<R, RejectResponse> {
        self.sim().query_candid(canister, sender, method, args)
    }

    /// An update that must reply; returns the single reply value.
    pub fn update1<A: ArgumentEncoder, R: CandidType + for<'a> Deserialize<'a>>(
        &self,
        canister: Principal,
        sender: Principal,
        method: &str,
        args: A,
    ) -> R {
        let (r,): (R,) = self
            .update(canister, sender, method, args)
            .unwrap_or_else(|e| panic!("{method} rejected: {e}"));
        r
    }

    pub fn query1<A: ArgumentEncoder, R: CandidType + for<'a> Deserialize<'a>>(
        &self,
        canister: Principal,
        sender: Principal,
        method: &str,
        args: A,
    ) -> R {
        let (r,): (R,) = self
            .query(canister, sender, method, args)
            .unwrap_or_else(|e| panic!("{method} rejected: {e}"));
        r
    }

    // ------------------------------------------------------------------ time

    pub fn now(&self) -> u64 {
        self.sim.borrow().time_nanos()
    }

    /// Advance time and run everything that becomes due (timers, their calls).
    pub fn advance(&self, d: Duration) -> &Self {
        let mut s = self.sim();
        s.advance_time(d);
        s.tick();
        self
    }

    pub fn advance_secs(&self, secs: u64) -> &Self {
        self.advance(Duration::from_secs(secs))
    }

    pub fn tick(&self) -> &Self {
        self.sim().tick();
        self
    }

    /// Let the recovery timers run `rounds` times (one recovery interval apart, plus slack for
    /// the engine's exponential backoff).
    pub fn recovery_rounds(&self, rounds: u32) -> &Self {
        for _ in 0..rounds {
            self.advance_secs(RECOVERY_INTERVAL_S);
        }
        self
    }

    /// Run recovery until the service (and payout) journals have nothing unresolved except the
    /// manual queue, or `max_secs` of simulated time passed. Returns the seconds used.
    pub fn settle(&self, max_secs: u64) -> u64 {
        let mut t = 0;
        while t < max_secs {
            if self.unresolved_automatic() == 0 {
                return t;
            }
            self.advance_secs(RECOVERY_INTERVAL_S);
            t += RECOVERY_INTERVAL_S;
        }
        t
    }

    /// Unresolved entries that automatic recovery still owns (not terminal, not manual review).
    pub fn unresolved_automatic(&self) -> u64 {
        let count = |m: &Metrics| {
            m.entries_by_status
                .iter()
                .filter(|s| s.status.is_unresolved() && s.status != Status::ManualReview)
                .map(|s| s.count)
                .sum::<u64>()
        };
        let mut n = 0;
        if self.opts.service {
            n += count(&self.service_metrics());
        }
        if self.opts.payout {
            n += count(&self.payout_metrics().journal);
        }
        n
    }

    // ------------------------------------------------------------------ ledger

    pub fn balance(&self, a: Account) -> u128 {
        let n: Nat = self.query1(self.ledger, user(0), "icrc1_balance_of", (a,));
        u128::try_from(n.0).unwrap()
    }

    pub fn ledger_transfer(&self, from: Principal, arg: TransferArg) -> Result<Nat, TransferError> {
        self.update1(self.ledger, from, "icrc1_transfer", (arg,))
    }

    pub fn simple_transfer(&self, from: Principal, to: Account, amount: u64) -> u64 {
        let r = self.ledger_transfer(
            from,
            TransferArg {
                from_subaccount: None,
                to,
                fee: None,
                created_at_time: None,
                memo: None,
                amount: Nat::from(amount),
            },
        );
        u64::try_from(r.expect("transfer").0).unwrap()
    }

    /// `owner` approves the service as ICRC-2 spender of `amount`.
    pub fn approve_service(&self, owner: Principal, amount: u64) {
        self.approve(owner, acct(self.service), amount)
            .expect("approve");
    }

    pub fn approve(
        &self,
        owner: Principal,
        spender: Account,
        amount: u64,
    ) -> Result<Nat, ApproveError> {
        self.update1(
            self.ledger,
            owner,
            "icrc2_approve",
            (ApproveArgs {
                from_subaccount: None,
                spender,
                amount: Nat::from(amount),
                expected_allowance: None,
                expires_at: None,
                fee: None,
                memo: None,
                created_at_time: None,
            },),
        )
    }

    pub fn mint(&self, to: Account, amount: u64) {
        let _: Nat = self.update1(
            self.ledger,
            controller(),
            "test_mint",
            (to, Nat::from(amount)),
        );
    }

    /// `count` mint blocks in one ledger message; returns the first one's index.
    pub fn mint_many(&self, to: Account, amount: u64, count: u64) -> u64 {
        let first: Nat = self.update1(
            self.ledger,
            controller(),
            "test_mint_many",
            (to, Nat::from(amount), count),
        );
        u64::try_from(first.0).unwrap()
    }

    /// The next `n` transfers / transfer_froms / approvals answer `TemporarilyUnavailable`.
    pub fn ledger_unavailable_next(&self, n: u64) {
        let () = self
            .update(self.ledger, controller(), "test_set_unavailable_next", (n,))
            .unwrap();
    }

    /// While on, every mutating ledger call traps.
    pub fn ledger_trap(&self, on: bool) {
        let () = self
            .update(self.ledger, controller(), "test_set_trap", (on,))
            .unwrap();
    }

    pub fn archive_now(&self) -> u64 {
        let r: Result<u64, String> = self.update1(
            self.ledger,
            controller(),
            "test_archive_blocks_now",
            (None::<u64>,),
        );
        r.expect("archive blocks")
    }

    pub fn set_archive_unavailable(&self, on: bool) {
        let r: Result<(), String> = self.update1(
            self.ledger,
            controller(),
            "test_set_archive_unavailable",
            (on,),
        );
        r.expect("set archive unavailable");
    }

    pub fn ledger_stats(&self) -> LedgerStats {
        self.query1(self.ledger, controller(), "test_stats", ())
    }

    /// The archives the ledger spawned, oldest first (with an empty one it just spawned).
    pub fn archives(&self) -> Vec<Principal> {
        self.ledger_stats()
            .archives
            .into_iter()
            .map(|a| a.canister_id)
            .collect()
    }

    /// Changes the ledger's transfer fee.
    pub fn set_fee(&self, fee: u64) {
        let () = self
            .update(self.ledger, controller(), "test_set_fee", (Nat::from(fee),))
            .unwrap();
    }

    /// The next `n` transfers / transfer_froms reply `reply` without executing.
    pub fn force_next_transfer_reply(&self, reply: TransferError, n: u64) {
        let () = self
            .update(
                self.ledger,
                controller(),
                "test_force_next_transfer_reply",
                (reply, n),
            )
            .unwrap();
    }

    /// Ledger time becomes IC time + `offset_nanos` (negative: the ledger's clock is behind).
    pub fn skew_ledger_clock(&self, offset_nanos: i64) {
        let () = self
            .update(
                self.ledger,
                controller(),
                "test_set_clock_offset",
                (offset_nanos,),
            )
            .unwrap();
    }

    /// Every block of the ledger, archived ones included.
    pub fn blocks(&self) -> Vec<blocks::LedgerBlock> {
        blocks::all_blocks(&mut self.sim(), self.ledger)
    }

    // ------------------------------------------------------------------ fault injection

    /// The next call from `from` to the ledger method `method` is rejected with `code` before
    /// the ledger sees it.
    pub fn reject_next_ledger_call(&self, from: Principal, method: &'static str, code: RejectCode) {
        let ledger = self.ledger;
        self.sim().inject_reject(
            move |c| c.from == from && c.to == ledger && c.method == method,
            code,
            RejectWhen::BeforeDelivery,
        );
    }

    /// The next call from `from` to the ledger method `method` executes on the ledger, but its
    /// response is lost: the caller gets `SysUnknown`.
    pub fn lose_next_ledger_response(&self, from: Principal, method: &'static str) {
        let ledger = self.ledger;
        self.sim().inject_reject(
            move |c| c.from == from && c.to == ledger && c.method == method,
            RejectCode::SysUnknown,
            RejectWhen::AfterExecution,
        );
    }

    /// The next response callback of `canister` traps at its `api_call`-th System API call.
    pub fn trap_next_callback(&self, canister: Principal, api_call: u32) {
        self.sim().inject_trap_when(
            move |r| {
                r.canister == canister
                    && matches!(
                        r.kind,
                        ic_sim::MessageKind::ReplyCallback | ic_sim::MessageKind::RejectCallback
                    )
            },
            api_call,
        );
    }

    /// The messages `canister` executed from trace position `start` on that can change its
    /// state (queries and `canister_inspect_message` left out), as (kind, method).
    pub fn update_messages_since(
        &self,
        canister: Principal,
        start: usize,
    ) -> Vec<(ic_sim::MessageKind, Option<String>)> {
        self.sim().trace()[start..]
            .iter()
            .filter(|m| {
                m.canister == canister
                    && !matches!(
                        m.kind,
                        ic_sim::MessageKind::Query | ic_sim::MessageKind::InspectMessage
                    )
            })
            .map(|m| (m.kind, m.method.clone()))
            .collect()
    }

    /// The `nth` (1-based) response callback of `canister` that runs after the ledger executed
    /// a `ledger_method` call traps at its `api_call`-th System API call. For a journaled
    /// transfer, n = 1 is the ledger's reply (before the result is journaled, with
    /// `api_call = 1`), n = 2 the self-call commit's reply (after the result was committed).
    pub fn trap_nth_callback_after(
        &self,
        canister: Principal,
        ledger_method: &'static str,
        nth: u32,
        api_call: u32,
    ) {
        let ledger = self.ledger;
        let mut armed = false;
        let mut seen = 0;
        self.sim().inject_trap_when(
            move |r| {
                if r.canister == ledger && r.method.as_deref() == Some(ledger_method) {
                    armed = true;
                    return false;
                }
                if armed
                    && r.canister == canister
                    && matches!(
                        r.kind,
                        ic_sim::MessageKind::ReplyCallback | ic_sim::MessageKind::RejectCallback
                    )
                {
                    seen += 1;
                    seen == nth
                } else {
                    false
                }
            },
            api_call,
        );
    }

    // ------------------------------------------------------------------ service

    pub fn client(&self, sender: Principal) -> SimClient {
        Client::new(
            self.service,
            SimTransport {
                sim: self.sim.clone(),
                sender,
            },
        )
    }

    pub fn admin_client(&self) -> SimClient {
        self.client(admin())
    }

    pub fn service_metrics(&self) -> Metrics {
        run(self.client(user(0)).metrics()).expect("metrics")
    }

    /// An ICRC-2 transfer of `amount` from `from` to `to`, executed by the service.
    pub fn icrc2_spec(&self, from: Principal, to: Account, amount: u64) -> TransferSpec {
        TransferSpec::Icrc2 {
            ledger: self.ledger,
            spender_subaccount: None,
            from: acct(from),
            to,
            amount: Nat::from(amount),
            fee: None,
        }
    }

    pub fn escrow(&self, owner: Principal) -> Account {
        run(self.client(owner).escrow_account(owner)).expect("escrow_account")
    }

    /// An ICRC-1 transfer from `owner`'s escrow subaccount at the service.
    pub fn icrc1_spec(&self, owner: Principal, to: Account, amount: u64) -> TransferSpec {
        TransferSpec::Icrc1 {
            ledger: self.ledger,
            from_subaccount: self.escrow(owner).subaccount,
            to,
            amount: Nat::from(amount),
            fee: None,
        }
    }

    pub fn service_entry(&self, id: EntryId) -> Entry {
        run(self.admin_client().admin_get_entry(id)).expect("admin_get_entry")
    }

    /// All entries of the service journal (admin view).
    pub fn service_entries(&self) -> Vec<Entry> {
        let c = self.admin_client();
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = run(c.admin_list(AdminListArgs {
                filter: ListFilter::default(),
                page: PageRequest {
                    start_after: after,
                    limit: 100,
                },
            }))
            .expect("admin_list");
            for s in &page.items {
                out.push(self.service_entry(s.id));
            }
            match page.next {
                Some(n) if !page.items.is_empty() => after = Some(n),
                _ => break,
            }
        }
        out
    }

    pub fn service_manual_queue(&self) -> Vec<EntrySummary> {
        run(self.admin_client().admin_list(AdminListArgs {
            filter: ListFilter {
                status: Some(Status::ManualReview),
                ..Default::default()
            },
            page: PageRequest {
                start_after: None,
                limit: 100,
            },
        }))
        .expect("admin_list")
        .items
    }

    pub fn http_get(&self, canister: Principal, url: &str) -> HttpResponse {
        self.query1(
            canister,
            Principal::anonymous(),
            "http_request",
            (HttpRequest {
                method: "GET".into(),
                url: url.into(),
                headers: vec![],
                body: vec![],
            },),
        )
    }

    pub fn metrics_text(&self) -> String {
        String::from_utf8(self.http_get(self.service, "/metrics").body).unwrap()
    }

    /// Upgrade the service with the same Wasm (`None`: keep the persisted config).
    pub fn upgrade_service(&self, cfg: Option<ServiceConfig>) -> Result<(), ic_sim::SimError> {
        let wasm = Wasms::service();
        self.sim()
            .upgrade_canister(self.service, wasm, Encode!(&cfg).unwrap(), None)
    }

    /// Stop (waiting for open call contexts), upgrade, start.
    pub fn stop_upgrade_start_service(&self) {
        let mut s = self.sim();
        s.stop_canister(self.service, None).expect("stop service");
        let wasm = Wasms::service();
        s.upgrade_canister(
            self.service,
            wasm,
            Encode!(&None::<ServiceConfig>).unwrap(),
            None,
        )
        .expect("upgrade service");
        s.start_canister(self.service, None).expect("start service");
    }

    // ------------------------------------------------------------------ payout

    pub fn payout_as(
        &self,
        who: Principal,
        to: Account,
        amount: u64,
    ) -> Result<PayoutReceipt, PayoutError> {
        self.update1(self.payout, who, "payout", (to, Nat::from(amount)))
    }

    pub fn get_payout(&self, who: Principal, id: EntryId) -> Result<PayoutReceipt, PayoutError> {
        self.query1(self.payout, who, "get_payout", (id,))
    }

    pub fn payout_balance(&self, who: Principal) -> u128 {
        let n: Nat = self.query1(self.payout, user(0), "balance_of", (who,));
        u128::try_from(n.0).unwrap()
    }

    pub fn payout_metrics(&self) -> PayoutMetrics {
        self.query1(self.payout, user(0), "metrics", ())
    }

    pub fn payout_entry(&self, id: EntryId) -> Entry {
        let r: Result<Entry, PayoutError> = self.query1(self.payout, admin(), "admin_show", (id,));
        r.expect("admin_show")
    }

    pub fn payout_entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let r: Result<icjournal::Page<EntrySummary>, PayoutError> = self.query1(
                self.payout,
                admin(),
                "admin_list",
                (
                    ListFilter::default(),
                    PageRequest {
                        start_after: after,
                        limit: 100,
                    },
                ),
            );
            let page = r.expect("admin_list");
            for s in &page.items {
                out.push(self.payout_entry(s.id));
            }
            match page.next {
                Some(n) if !page.items.is_empty() => after = Some(n),
                _ => break,
            }
        }
        out
    }

    pub fn payout_manual_queue(&self) -> Vec<EntrySummary> {
        let r: Result<icjournal::Page<EntrySummary>, PayoutError> = self.query1(
            self.payout,
            admin(),
            "admin_manual_queue",
            (PageRequest {
                start_after: None,
                limit: 100,
            },),
        );
        r.expect("admin_manual_queue").items
    }

    pub fn upgrade_payout(&self) {
        let mut s = self.sim();
        s.stop_canister(self.payout, None).expect("stop payout");
        let arg = Encode!(&Some(PayoutArg::Upgrade(None))).unwrap();
        s.upgrade_canister(self.payout, Wasms::payout(), arg, None)
            .expect("upgrade payout");
        s.start_canister(self.payout, None).expect("start payout");
    }

    // ------------------------------------------------------------------ invariants

    /// I1/I2 against the ledger's blocks (see [`invariants::check`]). Panics on a violation.
    pub fn check_invariants(&self) -> invariants::Report {
        let report = invariants::check(self);
        if !report.violations.is_empty() {
            panic!(
                "invariant violations ({}):\n{}",
                report.violations.len(),
                report.violations.join("\n")
            );
        }
        report
    }
}

impl Default for Setup {
    fn default() -> Self {
        Setup::new()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if self.check_on_drop && !std::thread::panicking() {
            self.check_invariants();
        }
    }
}

/// Decode a service error out of a client error (panics on transport/candid errors).
pub fn service_err(e: ClientError) -> icjournal_client::ServiceError {
    match e {
        ClientError::Service(s) => s,
        other => panic!("expected a service error, got {other:?}"),
    }
}

/// A refusal for lack of rights: the typed `NotAuthorized` (or `AnonymousCaller`), or the
/// ingress filter (`canister_inspect_message`) rejecting the message before it runs.
pub fn is_refused(e: &ClientError) -> bool {
    match e {
        ClientError::Service(icjournal_client::ServiceError::NotAuthorized { .. })
        | ClientError::Service(icjournal_client::ServiceError::Journal(
            icjournal::JournalError::AnonymousCaller,
        )) => true,
        ClientError::Transport {
            error: TransportError::Rejected { code: 4, message },
            ..
        } => message.contains("inspect_message"),
        _ => false,
    }
}

/// Candid round trip helper for raw replies.
pub fn decode_one<T: CandidType + for<'a> Deserialize<'a>>(bytes: &[u8]) -> T {
    Decode!(bytes, T).expect("decode")
}
