//! DFINITY's ICRC-1/ICRC-2 conformance suite (`icrc1-test-suite`) against our test ledger
//! (`tests/ledger`, the real canister Wasm) running on the IC simulator, plus checks of the
//! ledger's ICRC-3 log, archive and fault controls through the simulator.

use candid::utils::{ArgumentDecoder, ArgumentEncoder};
use candid::{Encode, Nat, Principal};
use ic_sim::Simulator;
use icrc1_test_env::LedgerEnv;
use icrc1_test_suite::Outcome;
use icrc_ledger_types::icrc::generic_value::ICRC3Value;
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::{Memo, TransferArg, TransferError};
use icrc_ledger_types::icrc3::archive::{GetArchivesArgs, ICRC3ArchiveInfo};
use icrc_ledger_types::icrc3::blocks::{GetBlocksRequest, GetBlocksResult};
use icrc_ledger_types::icrc3::transactions::{
    GetTransactionsRequest, GetTransactionsResponse, TransactionRange,
};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

const FEE: u64 = 10_000;
const ENV_FUNDS: u64 = 1_000_000_000_000;

use test_ledger::types::{ArchiveOptions, InitArgs, LedgerArg, LedgerStats};

fn user(n: u64) -> Principal {
    let mut bytes = b"icjournal-conformance-".to_vec();
    bytes.extend_from_slice(&n.to_be_bytes());
    Principal::self_authenticating(bytes)
}

fn minter() -> Principal {
    user(u64::MAX)
}

struct Deployed {
    sim: Rc<RefCell<Simulator>>,
    ledger: Principal,
}

/// The test controls' caller: the ledger's (and its archives') controller.
fn controller() -> Principal {
    Simulator::default_controller()
}

/// Installs the test ledger (with `archive = Some((trigger, num))` it spawns archives) with
/// `ENV_FUNDS` for `user(0)`.
fn deploy(archive: Option<(u64, u64)>) -> Deployed {
    let wasm = ic_sim::build::canister_wasm("test-ledger");
    let mut sim = Simulator::new();
    // The suite computes `now - 1`: make sure ledger time is a realistic wall-clock time.
    const JAN_2024_NANOS: u64 = 1_704_067_200_000_000_000;
    let t = sim.time_nanos();
    if t < JAN_2024_NANOS {
        sim.advance_time(Duration::from_nanos(JAN_2024_NANOS - t));
    }
    let ledger = sim.create_canister();
    let init = InitArgs {
        minting_account: minter().into(),
        initial_balances: vec![(user(0).into(), Nat::from(ENV_FUNDS))],
        transfer_fee: Nat::from(FEE),
        token_name: "icjournal test token".into(),
        token_symbol: "IJT".into(),
        decimals: Some(8),
        max_memo_length: None,
        archive_options: archive.map(|(trigger, num)| ArchiveOptions {
            trigger_threshold: trigger,
            num_blocks_to_archive: num,
            node_max_memory_size_bytes: None,
            max_message_size_bytes: None,
            controller_id: controller(),
            more_controller_ids: None,
            cycles_for_archive_creation: None,
            max_transactions_per_response: None,
            archive_wasm: serde_bytes::ByteBuf::from(wasm.clone()),
        }),
        limits: None,
    };
    sim.install_canister(
        ledger,
        wasm,
        Encode!(&LedgerArg::Ledger(init)).unwrap(),
        None,
    )
    .expect("install ledger");
    Deployed {
        sim: Rc::new(RefCell::new(sim)),
        ledger,
    }
}

// ---------------------------------------------------------------- LedgerEnv over the simulator

/// `icrc1_test_env::LedgerEnv` over the simulator. Calls complete synchronously (the simulator
/// runs the message and everything it triggers before returning), so the futures are ready.
#[derive(Clone)]
struct SimLedgerEnv {
    sim: Rc<RefCell<Simulator>>,
    ledger: Principal,
    principal: Principal,
    next_user: Rc<Cell<u64>>,
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

impl SimLedgerEnv {
    fn call<Input, Output>(
        &self,
        update: bool,
        method: &str,
        input: Input,
    ) -> anyhow::Result<Output>
    where
        Input: ArgumentEncoder + std::fmt::Debug,
        Output: for<'a> ArgumentDecoder<'a>,
    {
        let arg = candid::utils::encode_args(input)?;
        let mut sim = self.sim.borrow_mut();
        let reply = if update {
            sim.update_call(self.ledger, self.principal, method, arg)
        } else {
            sim.query_call(self.ledger, self.principal, method, arg)
        };
        let bytes = reply.map_err(|e| anyhow::anyhow!("{method} rejected: {e:?}"))?;
        Ok(candid::utils::decode_args(&bytes)?)
    }
}

// `LedgerEnv` is an `#[async_trait(?Send)]` trait; this is its desugared form.
impl LedgerEnv for SimLedgerEnv {
    fn fork(&self) -> Self {
        let n = self.next_user.get();
        self.next_user.set(n + 1);
        SimLedgerEnv {
            principal: user(n),
            ..self.clone()
        }
    }

    fn principal(&self) -> Principal {
        self.principal
    }

    fn time<'life0, 'async_trait>(&'life0 self) -> BoxFut<'async_trait, SystemTime>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let nanos = self.sim.borrow().time_nanos();
        Box::pin(async move { SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos) })
    }

    fn query<'life0, 'life1, 'async_trait, Input, Output>(
        &'life0 self,
        method: &'life1 str,
        input: Input,
    ) -> BoxFut<'async_trait, anyhow::Result<Output>>
    where
        Input: ArgumentEncoder + std::fmt::Debug + 'async_trait,
        Output: for<'a> ArgumentDecoder<'a> + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let r = self.call(false, method, input);
        Box::pin(async move { r })
    }

    fn update<'life0, 'life1, 'async_trait, Input, Output>(
        &'life0 self,
        method: &'life1 str,
        input: Input,
    ) -> BoxFut<'async_trait, anyhow::Result<Output>>
    where
        Input: ArgumentEncoder + std::fmt::Debug + 'async_trait,
        Output: for<'a> ArgumentDecoder<'a> + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let r = self.call(true, method, input);
        Box::pin(async move { r })
    }
}

fn env_for(d: &Deployed) -> SimLedgerEnv {
    SimLedgerEnv {
        sim: d.sim.clone(),
        ledger: d.ledger,
        principal: user(0),
        next_user: Rc::new(Cell::new(1)),
    }
}

type NamedTest = (&'static str, BoxFut<'static, icrc1_test_suite::TestResult>);

/// Every test of icrc1-test-suite 0.2 (ICRC-1 and ICRC-2), by name.
fn all_suite_tests(env: &SimLedgerEnv) -> Vec<NamedTest> {
    use icrc1_test_suite::*;
    let e = || env.clone();
    vec![
        ("icrc1:transfer", Box::pin(icrc1_test_transfer(e()))),
        ("icrc1:burn", Box::pin(icrc1_test_burn(e()))),
        ("icrc1:metadata", Box::pin(icrc1_test_metadata(e()))),
        (
            "icrc1:supported_standards",
            Box::pin(icrc1_test_supported_standards(e())),
        ),
        (
            "icrc1:tx_deduplication",
            Box::pin(icrc1_test_tx_deduplication(e())),
        ),
        (
            "icrc1:memo_bytes_length",
            Box::pin(icrc1_test_memo_bytes_length(e())),
        ),
        (
            "icrc1:future_transfers",
            Box::pin(icrc1_test_future_transfer(e())),
        ),
        ("icrc1:bad_fee", Box::pin(icrc1_test_bad_fee(e()))),
        (
            "icrc2:supported_standards",
            Box::pin(icrc2_test_supported_standards(e())),
        ),
        ("icrc2:approve", Box::pin(icrc2_test_approve(e()))),
        (
            "icrc2:approve_expiration",
            Box::pin(icrc2_test_approve_expiration(e())),
        ),
        (
            "icrc2:approve_expected_allowance",
            Box::pin(icrc2_test_approve_expected_allowance(e())),
        ),
        (
            "icrc2:transfer_from",
            Box::pin(icrc2_test_transfer_from(e())),
        ),
        (
            "icrc2:transfer_from_insufficient_funds",
            Box::pin(icrc2_test_transfer_from_insufficient_funds(e())),
        ),
        (
            "icrc2:transfer_from_insufficient_allowance",
            Box::pin(icrc2_test_transfer_from_insufficient_allowance(e())),
        ),
        (
            "icrc2:transfer_from_self",
            Box::pin(icrc2_test_transfer_from_self(e())),
        ),
    ]
}

/// Runs every suite test one by one; each must pass (a skip counts as a failure: the suite
/// skips deduplication when the ledger lacks it, and burns when there is no minting account).
fn run_every_suite_test(env: &SimLedgerEnv) {
    let mut failures = vec![];
    for (name, fut) in all_suite_tests(env) {
        match futures::executor::block_on(fut) {
            Ok(Outcome::Passed) => println!("ok - {name}"),
            Ok(Outcome::Skipped { reason }) => {
                println!("SKIPPED - {name}: {reason}");
                failures.push(format!("{name}: skipped: {reason}"));
            }
            Err(e) => {
                println!("FAILED - {name}: {e:?}");
                failures.push(format!("{name}: {e:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "conformance failures: {failures:#?}");
}

#[test]
fn icrc1_conformance_suite_passes() {
    let d = deploy(None);
    let env = env_for(&d);
    // The suite's own entry point: it must enumerate ICRC-1 and ICRC-2 tests (16) and pass them.
    let tests = futures::executor::block_on(icrc1_test_suite::test_suite(env.clone()));
    assert_eq!(tests.len(), 16, "expected the ICRC-1 and ICRC-2 suites");
    assert!(
        futures::executor::block_on(icrc1_test_suite::execute_tests(tests)),
        "icrc1-test-suite reported failures (TAP output above)"
    );
    // And each test by name, with skips counted as failures.
    run_every_suite_test(&env);
}

/// The suite again, with an archive that takes blocks during the run (every transfer that
/// crosses the threshold makes an inter-canister call from the ledger to the archive); then
/// the whole log, read through `icrc3_get_blocks` and its `archived_blocks` callbacks, must be
/// one unbroken `phash` chain.
#[test]
fn icrc1_conformance_suite_passes_while_archiving() {
    let d = deploy(Some((8, 5)));
    let env = env_for(&d);
    run_every_suite_test(&env);
    let blocks = read_whole_log(&d);
    assert!(blocks.len() > 16);
    for i in 1..blocks.len() {
        let ICRC3Value::Map(m) = &blocks[i] else {
            panic!("block {i} is not a map")
        };
        let expected = blocks[i - 1].clone().hash();
        match m.get("phash") {
            Some(ICRC3Value::Blob(h)) => {
                assert_eq!(h.as_slice(), &expected[..], "phash of block {i}")
            }
            other => panic!("block {i}: bad phash {other:?}"),
        }
    }
    let stats = stats(&d);
    assert!(
        stats.first_local_block > 0,
        "blocks were archived: {stats:?}"
    );
    assert_eq!(stats.log_length, blocks.len() as u64);
    let (archives,): (Vec<ICRC3ArchiveInfo>,) = query(
        &d,
        d.ledger,
        "icrc3_get_archives",
        Encode!(&GetArchivesArgs { from: None }).unwrap(),
    );
    assert_eq!(archives.len(), 1, "one archive spawned");
    assert_eq!(archives[0].canister_id, stats.archives[0].canister_id);
    assert_eq!(archives[0].end, Nat::from(stats.first_local_block - 1));
}

fn stats(d: &Deployed) -> LedgerStats {
    let bytes = d
        .sim
        .borrow_mut()
        .query_call(d.ledger, controller(), "test_stats", Encode!().unwrap())
        .expect("test_stats");
    candid::decode_one(&bytes).unwrap()
}

fn query<T: for<'a> ArgumentDecoder<'a>>(
    d: &Deployed,
    canister: Principal,
    method: &str,
    arg: Vec<u8>,
) -> T {
    let bytes = d
        .sim
        .borrow_mut()
        .query_call(canister, user(0), method, arg)
        .unwrap_or_else(|e| panic!("{method}: {e:?}"));
    candid::utils::decode_args(&bytes).unwrap()
}

fn update<T: for<'a> ArgumentDecoder<'a>>(
    d: &Deployed,
    sender: Principal,
    method: &str,
    arg: Vec<u8>,
) -> T {
    let bytes = d
        .sim
        .borrow_mut()
        .update_call(d.ledger, sender, method, arg)
        .unwrap_or_else(|e| panic!("{method}: {e:?}"));
    candid::utils::decode_args(&bytes).unwrap()
}

/// All blocks in order: the ledger's own, plus those behind `archived_blocks` callbacks.
fn read_whole_log(d: &Deployed) -> Vec<ICRC3Value> {
    let mut out: Vec<Option<ICRC3Value>> = vec![];
    let mut start = 0u64;
    loop {
        let req = vec![GetBlocksRequest {
            start: Nat::from(start),
            length: Nat::from(1000u32),
        }];
        let (r,): (GetBlocksResult,) =
            query(d, d.ledger, "icrc3_get_blocks", Encode!(&req).unwrap());
        let log_length: u64 = r.log_length.0.try_into().unwrap();
        out.resize(log_length as usize, None);
        let mut got = 0;
        for b in r.blocks {
            let i: usize = b.id.0.try_into().unwrap();
            out[i] = Some(b.block);
            got += 1;
        }
        for a in r.archived_blocks {
            let (ar,): (GetBlocksResult,) = query(
                d,
                a.callback.canister_id,
                &a.callback.method,
                Encode!(&a.args).unwrap(),
            );
            for b in ar.blocks {
                let i: usize = b.id.0.try_into().unwrap();
                out[i] = Some(b.block);
                got += 1;
            }
        }
        start += got;
        if got == 0 || start >= log_length {
            break;
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, b)| b.unwrap_or_else(|| panic!("block {i} missing")))
        .collect()
}

fn transfer_arg(
    to: Principal,
    amount: u64,
    created_at_time: Option<u64>,
    memo: &[u8],
) -> TransferArg {
    TransferArg {
        from_subaccount: None,
        to: to.into(),
        fee: None,
        created_at_time,
        memo: Some(Memo::from(memo.to_vec())),
        amount: Nat::from(amount),
    }
}

/// Test controls and ICRC-3/legacy reads through the real Wasm: TemporarilyUnavailable, trap
/// (a reject with no effect), forced archiving, archived reads and an unreadable archive.
#[test]
fn test_ledger_controls_and_archive_on_the_simulator() {
    // Archiving only on demand: the trigger is never reached.
    let d = deploy(Some((u64::MAX, 0)));
    let now = d.sim.borrow().time_nanos();
    let t = |memo: &[u8]| transfer_arg(user(5), 1_000, Some(now), memo);

    // TemporarilyUnavailable for the next 2 transfers, then normal.
    let () = update(
        &d,
        controller(),
        "test_set_unavailable_next",
        Encode!(&2u64).unwrap(),
    );
    for _ in 0..2 {
        let (r,): (Result<Nat, TransferError>,) =
            update(&d, user(0), "icrc1_transfer", Encode!(&t(b"a")).unwrap());
        assert_eq!(r, Err(TransferError::TemporarilyUnavailable));
    }
    let (r,): (Result<Nat, TransferError>,) =
        update(&d, user(0), "icrc1_transfer", Encode!(&t(b"a")).unwrap());
    let first = r.expect("third transfer goes through");

    // Trap: the call is rejected and nothing happens; the retry after disarming is a Duplicate.
    let () = update(&d, controller(), "test_set_trap", Encode!(&true).unwrap());
    let rej = d.sim.borrow_mut().update_call(
        d.ledger,
        user(0),
        "icrc1_transfer",
        Encode!(&t(b"b")).unwrap(),
    );
    let rej = rej.expect_err("trapping transfer must be rejected");
    assert_eq!(rej.reject_code, ic_sim::RejectCode::CanisterError);
    let () = update(&d, controller(), "test_set_trap", Encode!(&false).unwrap());
    let (r,): (Result<Nat, TransferError>,) =
        update(&d, user(0), "icrc1_transfer", Encode!(&t(b"b")).unwrap());
    let second = r.expect("not applied while trapping");
    let (r,): (Result<Nat, TransferError>,) =
        update(&d, user(0), "icrc1_transfer", Encode!(&t(b"a")).unwrap());
    assert_eq!(
        r,
        Err(TransferError::Duplicate {
            duplicate_of: first.clone()
        })
    );

    // Mint control.
    let (_,): (Nat,) = update(
        &d,
        controller(),
        "test_mint",
        Encode!(&Account::from(user(6)), &Nat::from(77u8)).unwrap(),
    );
    let (b,): (Nat,) = query(
        &d,
        d.ledger,
        "icrc1_balance_of",
        Encode!(&Account::from(user(6))).unwrap(),
    );
    assert_eq!(b, Nat::from(77u8));

    // Move the 3 oldest blocks to the archive; reads follow the callbacks.
    let before = read_whole_log(&d);
    let (moved,): (Result<u64, String>,) = update(
        &d,
        controller(),
        "test_archive_blocks_now",
        Encode!(&Some(3u64)).unwrap(),
    );
    assert_eq!(moved, Ok(3));
    let archive = stats(&d).archives[0].canister_id;
    assert_eq!(
        read_whole_log(&d),
        before,
        "archiving does not change the log"
    );
    let (r,): (Result<Nat, TransferError>,) =
        update(&d, user(0), "icrc1_transfer", Encode!(&t(b"b")).unwrap());
    assert_eq!(
        r,
        Err(TransferError::Duplicate {
            duplicate_of: second
        })
    );

    // Legacy get_transactions with archived_transactions.
    let req = GetTransactionsRequest {
        start: Nat::from(0u8),
        length: Nat::from(100u8),
    };
    let (lt,): (GetTransactionsResponse,) =
        query(&d, d.ledger, "get_transactions", Encode!(&req).unwrap());
    assert_eq!(lt.first_index, Nat::from(3u8));
    assert_eq!(lt.archived_transactions.len(), 1);
    let cb = &lt.archived_transactions[0];
    assert_eq!(cb.callback.canister_id, archive);
    let (range,): (TransactionRange,) = query(
        &d,
        archive,
        &cb.callback.method,
        Encode!(&GetTransactionsRequest {
            start: cb.start.clone(),
            length: cb.length.clone()
        })
        .unwrap(),
    );
    assert_eq!(range.transactions.len(), 3);
    let tx = range.transactions[1]
        .transfer
        .as_ref()
        .expect("block 1 is a transfer");
    assert_eq!(tx.created_at_time, Some(now));
    assert_eq!(tx.memo, Some(Memo::from(b"a".to_vec())));

    // Unreadable archive: its reads are rejected until it is readable again.
    let (r,): (Result<(), String>,) = update(
        &d,
        controller(),
        "test_set_archive_unavailable",
        Encode!(&true).unwrap(),
    );
    assert_eq!(r, Ok(()));
    let req = vec![GetBlocksRequest {
        start: Nat::from(0u8),
        length: Nat::from(3u8),
    }];
    let res =
        d.sim
            .borrow_mut()
            .query_call(archive, user(0), "icrc3_get_blocks", Encode!(&req).unwrap());
    assert!(res.is_err(), "unavailable archive must reject reads");
    let (r,): (Result<(), String>,) = update(
        &d,
        controller(),
        "test_set_archive_unavailable",
        Encode!(&false).unwrap(),
    );
    assert_eq!(r, Ok(()));
    let (ok,): (GetBlocksResult,) = query(&d, archive, "icrc3_get_blocks", Encode!(&req).unwrap());
    assert_eq!(ok.blocks.len(), 3);
}

/// An upgrade keeps the whole ledger (balances, blocks, deduplication index): a retry after the
/// upgrade is still a `Duplicate` of the block from before it.
#[test]
fn test_ledger_state_survives_upgrade() {
    let d = deploy(None);
    let now = d.sim.borrow().time_nanos();
    let arg = transfer_arg(user(5), 1_000, Some(now), b"before-upgrade");
    let (r,): (Result<Nat, TransferError>,) =
        update(&d, user(0), "icrc1_transfer", Encode!(&arg).unwrap());
    let index = r.unwrap();
    let log = read_whole_log(&d);
    let wasm = ic_sim::build::canister_wasm("test-ledger");
    d.sim
        .borrow_mut()
        .upgrade_canister(d.ledger, wasm, Encode!().unwrap(), None)
        .expect("upgrade");
    assert_eq!(read_whole_log(&d), log);
    let (b,): (Nat,) = query(
        &d,
        d.ledger,
        "icrc1_balance_of",
        Encode!(&Account::from(user(5))).unwrap(),
    );
    assert_eq!(b, Nat::from(1_000u32));
    let (r,): (Result<Nat, TransferError>,) =
        update(&d, user(0), "icrc1_transfer", Encode!(&arg).unwrap());
    assert_eq!(
        r,
        Err(TransferError::Duplicate {
            duplicate_of: index
        })
    );
}
