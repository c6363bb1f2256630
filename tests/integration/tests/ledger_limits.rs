//! The test ledger behaves like DFINITY's ICRC-1 ledger and archive (the figures and their
//! sources are in tests/ledger/src/limits.rs): reply caps, memo length, the test controls, and
//! archives spawned through the management canister. The last test runs an icjournal lookup
//! through two spawned archives at DFINITY's 100 blocks per reply.

use candid::{Nat, Principal};
use ic_sim::RejectCode;
use icjournal::{EvidenceSource, FailureReason, Outcome, Status};
use icjournal_client::TransferRequest;
use icjournal_tests::payout_types::Limits;
use icjournal_tests::*;
use icrc_ledger_types::icrc1::transfer::{Memo, TransferArg, TransferError};
use icrc_ledger_types::icrc2::transfer_from::{TransferFromArgs, TransferFromError};
use icrc_ledger_types::icrc3::archive::{GetArchivesArgs, ICRC3ArchiveInfo};
use icrc_ledger_types::icrc3::blocks::{GetBlocksRequest, GetBlocksResult};
use icrc_ledger_types::icrc3::transactions::{
    GetTransactionsRequest, GetTransactionsResponse, TransactionRange,
};
use sha2::Digest;
use test_ledger::icrc3::{Block, Op, Tx};

fn u(n: &Nat) -> u64 {
    u64::try_from(n.0.clone()).unwrap()
}

fn get_blocks(s: &Setup, canister: Principal, start: u64, len: u64) -> GetBlocksResult {
    s.query1(
        canister,
        user(0),
        "icrc3_get_blocks",
        (vec![GetBlocksRequest {
            start: Nat::from(start),
            length: Nat::from(len),
        }],),
    )
}

fn ids(r: &GetBlocksResult) -> Vec<u64> {
    r.blocks.iter().map(|b| u(&b.id)).collect()
}

/// (archive, start, length) of every archived range of a reply.
fn archived(r: &GetBlocksResult) -> Vec<(Principal, u64, u64)> {
    r.archived_blocks
        .iter()
        .flat_map(|a| {
            a.args
                .iter()
                .map(|q| (a.callback.canister_id, u(&q.start), u(&q.length)))
        })
        .collect()
}

fn log_length(s: &Setup) -> u64 {
    s.ledger_stats().log_length
}

fn arg(to: Principal, amount: u64) -> TransferArg {
    TransferArg {
        from_subaccount: None,
        to: acct(to),
        fee: None,
        created_at_time: None,
        memo: None,
        amount: Nat::from(amount),
    }
}

fn archives_info(s: &Setup) -> Vec<ICRC3ArchiveInfo> {
    s.query1(
        s.ledger,
        user(0),
        "icrc3_get_archives",
        (GetArchivesArgs { from: None },),
    )
}

/// The size of a mint block as the ledger counts it against an archive's capacity.
fn mint_block_size(s: &Setup) -> u64 {
    test_ledger::ledger::block_size(&Block {
        parent_hash: Some(vec![0u8; 32].into()),
        timestamp: s.now(),
        effective_fee: None,
        tx: Tx {
            op: Op::Mint {
                to: acct(user(5)),
                amount: 1,
            },
            created_at_time: None,
            memo: None,
        },
    })
}

#[test]
fn should_answer_at_most_100_blocks_per_icrc3_get_blocks() {
    let s = Setup::options().without_service().build();
    s.mint_many(acct(user(5)), 1, 250);
    let r = get_blocks(&s, s.ledger, 0, 250);
    assert_eq!(
        ids(&r),
        (0..100).collect::<Vec<_>>(),
        "a short page, no error"
    );
    assert!(r.archived_blocks.is_empty());
    assert_eq!(u(&r.log_length), log_length(&s));
    // The same request against a ledger whose cap is raised gets all 250: the cap, not the
    // request, made the page short.
    let roomy = Setup::options()
        .without_service()
        .limits(Limits {
            max_blocks_per_response: Some(2_000),
            ..Default::default()
        })
        .build();
    roomy.mint_many(acct(user(5)), 1, 250);
    assert_eq!(get_blocks(&roomy, roomy.ledger, 0, 250).blocks.len(), 250);
}

#[test]
fn should_answer_at_most_100_blocks_through_the_archive() {
    let s = Setup::options()
        .without_service()
        .archive(u64::MAX, 0)
        .build();
    s.mint_many(acct(user(5)), 1, 250);
    let total = log_length(&s);
    assert_eq!(s.archive_now(), total);
    let archive = s.archives()[0];
    // The ledger clamps the archived part to 100 too.
    let r = get_blocks(&s, s.ledger, 0, 250);
    assert!(r.blocks.is_empty());
    assert_eq!(archived(&r), vec![(archive, 0, 100)]);
    assert_eq!(r.archived_blocks[0].callback.method, "icrc3_get_blocks");
    // The archive answers 100 of 250 asked, and the rest of its blocks at the end.
    let a = get_blocks(&s, archive, 0, 250);
    assert_eq!(ids(&a), (0..100).collect::<Vec<_>>());
    assert_eq!(u(&a.log_length), total, "an archive counts its own blocks");
    assert_eq!(
        ids(&get_blocks(&s, archive, 200, 250)),
        (200..total).collect::<Vec<_>>()
    );
}

#[test]
fn should_cap_legacy_get_transactions_at_2000() {
    let s = Setup::options()
        .without_service()
        .archive(u64::MAX, 0)
        .build();
    s.mint_many(acct(user(5)), 1, 2_100);
    let total = log_length(&s);
    let req = GetTransactionsRequest {
        start: Nat::from(0u8),
        length: Nat::from(5_000u32),
    };
    let r: GetTransactionsResponse =
        s.query1(s.ledger, user(0), "get_transactions", (req.clone(),));
    assert_eq!(u(&r.first_index), 0);
    assert_eq!(r.transactions.len(), 2_000, "of {total} local blocks");
    // Archived: the ledger sends the archive the whole range; the archive caps its reply.
    assert_eq!(s.archive_now(), total);
    let r: GetTransactionsResponse = s.query1(s.ledger, user(0), "get_transactions", (req,));
    assert!(r.transactions.is_empty());
    assert_eq!(r.archived_transactions.len(), 1);
    let cb = &r.archived_transactions[0];
    assert_eq!((u(&cb.start), u(&cb.length)), (0, total));
    let range: TransactionRange = s.query1(
        cb.callback.canister_id,
        user(0),
        &cb.callback.method,
        (GetTransactionsRequest {
            start: cb.start.clone(),
            length: cb.length.clone(),
        },),
    );
    assert_eq!(range.transactions.len(), 2_000);
}

#[test]
fn should_refuse_a_33_byte_memo_as_dfinity_does() {
    let s = Setup::options().without_service().build();
    let mut a = arg(user(2), 1);
    a.memo = Some(Memo::from(vec![7u8; 32]));
    s.ledger_transfer(user(1), a.clone())
        .expect("32 bytes is the limit");
    let before = log_length(&s);
    a.memo = Some(Memo::from(vec![7u8; 33]));
    // DFINITY's ledger traps (no reply, nothing applied).
    let e = s
        .update::<_, (Result<Nat, TransferError>,)>(s.ledger, user(1), "icrc1_transfer", (a,))
        .unwrap_err();
    assert_eq!(e.reject_code, RejectCode::CanisterError, "{e:?}");
    assert!(
        e.reject_message
            .contains("the memo field size of 33 bytes is above the allowed limit of 32 bytes"),
        "{}",
        e.reject_message
    );
    assert_eq!(log_length(&s), before);
}

#[test]
fn should_charge_the_fee_set_by_the_control() {
    let s = Setup::options().without_service().build();
    s.set_fee(25_000);
    let fee: Nat = s.query1(s.ledger, user(0), "icrc1_fee", ());
    assert_eq!(fee, Nat::from(25_000u32));
    let mut a = arg(user(2), 1);
    a.fee = Some(Nat::from(FEE));
    assert_eq!(
        s.ledger_transfer(user(1), a),
        Err(TransferError::BadFee {
            expected_fee: Nat::from(25_000u32)
        })
    );
    let before = s.balance(acct(user(1)));
    s.ledger_transfer(user(1), arg(user(2), 1)).unwrap();
    assert_eq!(s.balance(acct(user(1))), before - 25_001);
}

#[test]
fn should_force_the_next_transfer_replies_without_executing() {
    let s = Setup::options().without_service().build();
    let replies = vec![
        TransferError::TooOld,
        TransferError::CreatedInFuture { ledger_time: 42 },
        TransferError::GenericError {
            error_code: Nat::from(7u8),
            message: "forced".into(),
        },
        TransferError::BadBurn {
            min_burn_amount: Nat::from(1u8),
        },
        TransferError::BadFee {
            expected_fee: Nat::from(2u8),
        },
        TransferError::InsufficientFunds {
            balance: Nat::from(3u8),
        },
        TransferError::TemporarilyUnavailable,
        TransferError::Duplicate {
            duplicate_of: Nat::from(5u8),
        },
    ];
    let before = log_length(&s);
    let balance = s.balance(acct(user(1)));
    for r in &replies {
        s.force_next_transfer_reply(r.clone(), 1);
        assert_eq!(s.ledger_transfer(user(1), arg(user(2), 1)), Err(r.clone()));
    }
    assert_eq!(log_length(&s), before, "nothing executed");
    assert_eq!(s.balance(acct(user(1))), balance);
    // transfer_from gets the same variant; queued replies run out, then transfers execute.
    s.approve(user(1), acct(user(2)), 1_000_000).unwrap();
    s.force_next_transfer_reply(
        TransferError::Duplicate {
            duplicate_of: Nat::from(9u8),
        },
        2,
    );
    let from = TransferFromArgs {
        spender_subaccount: None,
        from: acct(user(1)),
        to: acct(user(3)),
        amount: Nat::from(1u8),
        fee: None,
        memo: None,
        created_at_time: None,
    };
    for _ in 0..2 {
        let r: Result<Nat, TransferFromError> =
            s.update1(s.ledger, user(2), "icrc2_transfer_from", (from.clone(),));
        assert_eq!(
            r,
            Err(TransferFromError::Duplicate {
                duplicate_of: Nat::from(9u8)
            })
        );
    }
    let r: Result<Nat, TransferFromError> =
        s.update1(s.ledger, user(2), "icrc2_transfer_from", (from,));
    assert!(r.is_ok(), "{r:?}");
    assert!(s.ledger_stats().faults.forced_transfer_replies.is_empty());
}

#[test]
fn should_date_blocks_and_judge_created_at_time_by_the_skewed_clock() {
    let s = Setup::options().without_service().build();
    let with_time = |t: u64, memo: u8| {
        let mut a = arg(user(2), 1);
        a.created_at_time = Some(t);
        a.memo = Some(Memo::from(vec![memo]));
        a
    };
    let now = s.now();
    let day = DAY_NS;
    // Unskewed: 23.5 h old is fine, 1 h 30 s ahead is in the future.
    s.ledger_transfer(user(1), with_time(now - day + day / 48, 1))
        .unwrap();
    assert_eq!(
        s.ledger_transfer(user(1), with_time(now + 3_630 * SECOND, 2)),
        Err(TransferError::CreatedInFuture { ledger_time: now })
    );
    // The ledger's clock 1 h ahead: the same 23.5 h is too old, 1 h 30 s ahead is fine, and
    // blocks carry the ledger's time.
    s.skew_ledger_clock(3_600 * SECOND as i64);
    assert_eq!(
        s.ledger_transfer(user(1), with_time(now - day + day / 48, 3)),
        Err(TransferError::TooOld)
    );
    s.ledger_transfer(user(1), with_time(now + 3_630 * SECOND, 4))
        .unwrap();
    assert_eq!(s.blocks().last().unwrap().timestamp, now + 3_600 * SECOND);
    assert_eq!(s.ledger_stats().ledger_time, now + 3_600 * SECOND);

    // A ledger 2 minutes behind: a transfer stamped with IC time is in its future; a block
    // cannot be older than the tip, so the ledger traps until IC time catches up.
    let s = Setup::options().without_service().build();
    let now = s.now();
    s.skew_ledger_clock(-120 * SECOND as i64);
    assert_eq!(
        s.ledger_transfer(user(1), with_time(now, 5)),
        Err(TransferError::CreatedInFuture {
            ledger_time: now - 120 * SECOND
        })
    );
    let r: Result<(Result<Nat, TransferError>,), _> =
        s.update(s.ledger, user(1), "icrc1_transfer", (arg(user(2), 1),));
    assert_eq!(r.unwrap_err().reject_code, RejectCode::CanisterError);
    s.advance_secs(121);
    s.ledger_transfer(user(1), arg(user(2), 1)).unwrap();
    assert_eq!(s.blocks().last().unwrap().timestamp, now + SECOND);
}

#[test]
fn should_refuse_test_controls_to_non_controllers() {
    let s = Setup::options().without_service().build();
    let refused = |method: &str, r: Result<(), ic_sim::RejectResponse>| {
        let e = r.expect_err(method);
        assert!(e.reject_message.contains("controllers"), "{method}: {e:?}");
    };
    refused(
        "test_set_fee",
        s.update::<_, ()>(s.ledger, stranger(), "test_set_fee", (Nat::from(1u8),)),
    );
    refused(
        "test_force_next_transfer_reply",
        s.update::<_, ()>(
            s.ledger,
            stranger(),
            "test_force_next_transfer_reply",
            (TransferError::TooOld, 1u64),
        ),
    );
    refused(
        "test_set_clock_offset",
        s.update::<_, ()>(s.ledger, stranger(), "test_set_clock_offset", (5i64,)),
    );
    refused(
        "test_set_unavailable_next",
        s.update::<_, ()>(s.ledger, stranger(), "test_set_unavailable_next", (1u64,)),
    );
    refused(
        "test_stats",
        s.query::<_, (test_ledger::types::LedgerStats,)>(s.ledger, stranger(), "test_stats", ())
            .map(|_| ()),
    );
    assert_eq!(s.ledger_stats().faults, Default::default());
}

#[test]
fn should_archive_once_local_blocks_reach_the_trigger() {
    let s = Setup::options().without_service().archive(20, 8).build();
    let initial = log_length(&s);
    for _ in initial..19 {
        s.simple_transfer(user(1), acct(user(2)), 1);
    }
    assert_eq!(s.ledger_stats().first_local_block, 0, "19 < 20");
    assert!(s.archives().is_empty());
    s.simple_transfer(user(1), acct(user(2)), 1);
    let st = s.ledger_stats();
    assert_eq!(
        (st.first_local_block, st.local_blocks),
        (8, 12),
        "20 >= 20: 8 moved"
    );
    assert_eq!(st.archives.len(), 1);
}

#[test]
fn should_spawn_archives_through_the_management_canister() {
    let per_node = 120;
    let s = Setup::options()
        .without_service()
        .archive(u64::MAX, 0)
        .archive_node_bytes(
            per_node * mint_block_size(&Setup::options().without_service().build()) + 100,
        )
        .build();
    s.mint_many(acct(user(5)), 1, 2 * per_node);
    let before = s.blocks();
    let total = before.len() as u64;
    let cycles = s.sim.borrow().cycle_balance(s.ledger).unwrap();
    assert_eq!(s.archive_now(), total);
    let archives = s.archives();
    assert!(
        archives.len() >= 2,
        "a full archive makes the ledger spawn the next"
    );
    // create_canister carried DFINITY's 10 T cycles each; the archive keeps them less the fee.
    let spent = cycles - s.sim.borrow().cycle_balance(s.ledger).unwrap();
    assert_eq!(spent, archives.len() as u128 * 10_000_000_000_000);
    let wasm_hash: [u8; 32] = sha2::Sha256::digest(Wasms::ledger()).into();
    for a in &archives {
        let sim = s.sim.borrow();
        assert_eq!(
            sim.cycle_balance(*a),
            Some(10_000_000_000_000 - ic_sim::mgmt::CANISTER_CREATION_FEE)
        );
        // update_settings: controller_id (+ more_controller_ids), not the ledger.
        assert_eq!(sim.controllers(*a), Some(vec![controller()]));
        assert_eq!(sim.module_hash(*a), Some(wasm_hash));
    }
    // Blocks moved, ranges contiguous, the log unchanged when read through the archives.
    let st = s.ledger_stats();
    assert_eq!((st.first_local_block, st.local_blocks), (total, 0));
    let info = archives_info(&s);
    assert_eq!(info.len(), archives.len());
    assert_eq!(u(&info[0].start), 0);
    assert_eq!(u(&info.last().unwrap().end), total - 1);
    for w in info.windows(2) {
        assert_eq!(u(&w[0].end) + 1, u(&w[1].start));
    }
    for _ in 0..3 {
        s.simple_transfer(user(1), acct(user(2)), 1);
    }
    let after = s.blocks();
    assert_eq!(after.len() as u64, total + 3);
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(
            (a.index, &a.op, a.to, a.timestamp),
            (b.index, &b.op, b.to, b.timestamp)
        );
        assert!(b.archived);
    }
    // One request across the first boundary: two archives, one range each, within 100.
    let edge = u(&info[0].end);
    let r = get_blocks(&s, s.ledger, edge - 5, 250);
    assert_eq!(
        archived(&r),
        vec![
            (info[0].canister_id, edge - 5, 6),
            (info[1].canister_id, edge + 1, 94)
        ]
    );
}

/// An icjournal lookup decides through the ledger and two spawned archives answering 100
/// blocks per reply: > 1,000 blocks in the entries' scan range, one transfer that executed
/// (found by memo deep in the range) and one that never did (absent after the window).
#[test]
fn should_decide_through_two_archives_at_100_blocks_per_page() {
    let bytes = 700 * mint_block_size(&Setup::options().without_service().build());
    let s = Setup::options()
        .archive(u64::MAX, 0)
        .archive_node_bytes(bytes)
        .build();
    s.approve_service(user(1), 100 * FEE);
    run(s.admin_client().pause_recovery("hold".into())).unwrap();
    let exec = |amount: u64| {
        run(s.client(user(1)).execute_transfer(TransferRequest {
            transfer: s.icrc2_spec(user(1), acct(user(9)), amount),
            lock_key: None,
            idempotency_key: None,
        }))
        .unwrap()
    };
    // Never executed: rejected before the ledger saw it.
    s.reject_next_ledger_call(s.service, "icrc2_transfer_from", RejectCode::CanisterReject);
    let never = exec(1_000);
    // 600 blocks at the same ledger time: inside the next entry's scan range, before it.
    s.mint_many(acct(user(5)), 1, 600);
    // Executed, its reply lost.
    s.lose_next_ledger_response(s.service, "icrc2_transfer_from");
    let executed = exec(2_000);
    assert_eq!(
        (never.status, executed.status),
        (Status::Unknown, Status::Unknown)
    );
    s.mint_many(acct(user(5)), 1, 600);
    assert!(s.archive_now() > 1_200);
    assert_eq!(s.archives().len(), 2, "{:?}", s.ledger_stats().archives);
    // The window passes; a block after it closes the range, kept on the ledger.
    s.advance_secs(25 * 3600);
    s.simple_transfer(user(3), acct(user(4)), 1);
    let calls_before = s.sim.borrow().trace().len();
    run(s.admin_client().resume_recovery("go".into())).unwrap();
    s.settle(600);
    let e = s.service_entry(executed.entry_id);
    assert_eq!(e.status, Status::Succeeded, "{e:?}");
    assert!(matches!(
        e.outcome,
        Some(Outcome::Succeeded {
            source: EvidenceSource::MemoLookup,
            ..
        })
    ));
    let block = e.block_index().unwrap();
    let blocks = s.blocks();
    assert!(block > 600 && blocks[block as usize].archived);
    let n = s.service_entry(never.entry_id);
    assert_eq!(n.status, Status::Failed, "{n:?}");
    assert!(matches!(
        n.outcome,
        Some(Outcome::Failed {
            reason: FailureReason::NotFoundAfterWindow { .. },
            ..
        })
    ));
    // Both archives were read, in pages of at most 100.
    let archives = s.archives();
    let sim = s.sim.borrow();
    let trace = &sim.trace()[calls_before..];
    for a in &archives {
        assert!(
            trace
                .iter()
                .any(|m| m.canister == *a && m.method.as_deref() == Some("icrc3_get_blocks")),
            "archive {a} was read"
        );
    }
}
