//! A canister that calls the service (`tests/caller`, on `icjournal-client`): the four use
//! cases with fees paid in cycles, and a lost reply retried at every point of a flow.

use candid::{Encode, Nat, Principal};
use icjournal::{Entry, EntryId, FlowResult, Status};
use icjournal_client::{ClientError, Fees};
use icjournal_tests::*;
use std::time::Duration;

const AMOUNT: u64 = 1_000_000;
const FEES: Fees = Fees {
    record_cycles: 10_000_000,
    tracked_transfer_cycles: 200_000_000,
    transfer_cycles: 100_000_000,
};

#[derive(candid::CandidType)]
struct CallerInit {
    service: Principal,
    ledger: Principal,
    call_timeout_secs: Option<u32>,
}

/// Install the caller canister, fund it on the ledger and let it approve the service.
fn caller(s: &Setup, timeout: Option<u32>) -> Principal {
    let c = {
        let mut sim = s.sim();
        let c = sim.create_canister();
        let arg = Encode!(&CallerInit {
            service: s.service,
            ledger: s.ledger,
            call_timeout_secs: timeout,
        })
        .unwrap();
        sim.install_canister(c, Wasms::caller(), arg, None)
            .expect("install caller");
        c
    };
    s.mint(acct(c), 100 * AMOUNT);
    let approved: Result<Nat, String> = s.update1(c, user(0), "approve", (Nat::from(50 * AMOUNT),));
    approved.expect("approve");
    c
}

fn pay(s: &Setup, c: Principal, to: Principal, order: &str) -> Result<FlowResult, ClientError> {
    s.update1(
        c,
        user(0),
        "pay",
        (acct(to), Nat::from(AMOUNT), order.to_string()),
    )
}

fn lookup(s: &Setup, c: Principal, order: &str) -> Entry {
    let r: Result<Entry, ClientError> = s.update1(c, user(0), "lookup", (order.to_string(),));
    r.expect("lookup")
}

/// Transfers to `to` (the payees are funded at genesis: mints are not payments).
fn blocks_to(s: &Setup, to: Principal) -> usize {
    s.blocks()
        .iter()
        .filter(|b| b.to == Some(acct(to)) && b.op != "mint")
        .count()
}

#[test]
fn should_run_the_four_use_cases_from_a_caller_canister_paying_the_fees() {
    let s = Setup::options().fees(FEES).build();
    let c = caller(&s, None);
    let service_cycles = s.sim().cycle_balance(s.service).unwrap();

    // 1. execute
    let r = pay(&s, c, user(5), "order-1").unwrap();
    assert_eq!(r.status, Status::Succeeded);
    // 2. submit + poll
    let id: Result<EntryId, ClientError> = s.update1(
        c,
        user(0),
        "submit",
        (acct(user(6)), Nat::from(AMOUNT), "order-2".to_string()),
    );
    let id = id.unwrap();
    s.settle(60);
    let st: Result<Status, ClientError> = s.update1(c, user(0), "status", (id,));
    assert_eq!(st.unwrap(), Status::Succeeded);
    // 3. track: sent by the caller itself; the success is verified against the ledger
    let st: Result<Status, ClientError> = s.update1(
        c,
        user(0),
        "pay_myself",
        (acct(user(7)), Nat::from(AMOUNT), "order-3".to_string()),
    );
    assert_eq!(st.unwrap(), Status::Unknown, "reported, being verified");
    s.recovery_rounds(2);
    assert_eq!(lookup(&s, c, "order-3").status, Status::Succeeded);
    // 4. record
    let id: Result<EntryId, ClientError> = s.update1(
        c,
        user(0),
        "record",
        ("ship".to_string(), "order-4".to_string()),
    );
    let id = id.unwrap();
    let st: Result<Status, ClientError> = s.update1(c, user(0), "report", (id, true));
    assert_eq!(st.unwrap(), Status::Succeeded);

    for (to, order) in [
        (user(5), "order-1"),
        (user(6), "order-2"),
        (user(7), "order-3"),
    ] {
        assert_eq!(blocks_to(&s, to), 1, "{order} paid exactly once");
    }
    // The service was paid its fees: two executed transfers, one tracked transfer, one record.
    let paid = 2 * FEES.transfer_cycles + FEES.tracked_transfer_cycles + FEES.record_cycles;
    let now = s.sim().cycle_balance(s.service).unwrap();
    assert!(
        now >= service_cycles + paid as u128 - 50_000_000,
        "service received {} of {paid} in fees (less its own call fees)",
        now as i128 - service_cycles as i128
    );
}

/// The caller's call times out (a bounded-wait SYS_UNKNOWN) at every point of the service's
/// flow — before the ledger call, while it runs, after the result — and the caller retries
/// with the same idempotency key. Every time: one entry, one payment, and the caller learns the
/// final result. Without the key a retry after the first flow finished paid twice.
#[test]
fn should_pay_once_when_a_lost_reply_is_retried_at_every_point_of_the_flow() {
    let s = Setup::options().fees(FEES).build();
    let c = caller(&s, Some(10));
    let to = user(5);
    // A reference run lists the messages of one payment.
    let snapshot = s.sim().snapshot();
    let first = s.sim().message_count();
    pay(&s, c, to, "ref").unwrap();
    let last = s.sim().message_count();
    assert!(last - first >= 4, "a payment spans several messages");
    let mut points = 0;
    for k in first..last {
        s.sim().restore(&snapshot);
        // Before message k, the caller's deadline passes: its call ends in SYS_UNKNOWN there.
        s.sim()
            .before_message(k, |sim| sim.advance_time(Duration::from_secs(11)));
        let order = format!("order-at-{k}");
        let r = pay(&s, c, to, &order);
        assert!(
            r.is_ok() || r.as_ref().is_err_and(|e| e.is_unknown_outcome()),
            "point {k}: {r:?}"
        );
        s.settle(120);
        let e = lookup(&s, c, &order);
        assert_eq!(e.status, Status::Succeeded, "point {k}: {e:?}");
        let paid = s
            .blocks()
            .iter()
            .filter(|b| {
                b.to == Some(acct(to))
                    && b.memo.as_deref().and_then(icjournal::memo::decode) == Some(e.id)
            })
            .count();
        assert_eq!(paid, 1, "point {k}: paid {paid} times");
        assert_eq!(
            blocks_to(&s, to),
            1,
            "point {k}: one payment to the payee in all"
        );
        points += 1;
    }
    assert!(points >= 4);
}
