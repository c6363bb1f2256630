//! Storage format 3 (minicbor) round-trips every value the journal stores: generated entries
//! and audit records, covering every variant of every stored enum, decode to themselves — and
//! to the same value as layout 1's Candid encoding (format 2) of them.

use crate::storage::legacy::encode_schema_value;
use crate::storage::{decode_stored, encode_cbor_value};
use crate::types::*;
use candid::{Nat, Principal};
use icrc_ledger_types::icrc1::account::Account;
use icrc_ledger_types::icrc1::transfer::{Memo, TransferArg};
use icrc_ledger_types::icrc2::transfer_from::TransferFromArgs;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

fn principal() -> impl Strategy<Value = Principal> {
    vec(any::<u8>(), 0..=29).prop_map(|b| Principal::from_slice(&b))
}

fn nat() -> impl Strategy<Value = Nat> {
    prop_oneof![
        any::<u32>().prop_map(Nat::from),
        any::<u64>().prop_map(Nat::from),
        any::<u128>().prop_map(Nat::from),
    ]
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..40)
}

fn account() -> impl Strategy<Value = Account> {
    (principal(), of(any::<[u8; 32]>()))
        .prop_map(|(owner, subaccount)| Account { owner, subaccount })
}

fn status() -> impl Strategy<Value = Status> {
    proptest::sample::select(Status::ALL.to_vec())
}

fn kind() -> impl Strategy<Value = Kind> {
    proptest::sample::select(Kind::ALL.to_vec())
}

fn ledger_op() -> impl Strategy<Value = LedgerOp> {
    prop_oneof![
        (
            of(any::<[u8; 32]>()),
            account(),
            of(nat()),
            of(any::<u64>()),
            of(bytes()),
            nat()
        )
            .prop_map(
                |(from_subaccount, to, fee, created_at_time, memo, amount)| {
                    LedgerOp::Icrc1Transfer(TransferArg {
                        from_subaccount,
                        to,
                        fee,
                        created_at_time,
                        memo: memo.map(Memo::from),
                        amount,
                    })
                }
            ),
        (
            of(any::<[u8; 32]>()),
            account(),
            account(),
            nat(),
            of(nat()),
            of(bytes()),
            of(any::<u64>())
        )
            .prop_map(
                |(spender_subaccount, from, to, amount, fee, memo, created_at_time)| {
                    LedgerOp::Icrc2TransferFrom(TransferFromArgs {
                        spender_subaccount,
                        from,
                        to,
                        amount,
                        fee,
                        memo: memo.map(Memo::from),
                        created_at_time,
                    })
                }
            ),
    ]
}

fn transfer_spec() -> impl Strategy<Value = TransferSpec> {
    prop_oneof![
        (
            principal(),
            of(any::<[u8; 32]>()),
            account(),
            nat(),
            of(nat())
        )
            .prop_map(
                |(ledger, from_subaccount, to, amount, fee)| TransferSpec::Icrc1 {
                    ledger,
                    from_subaccount,
                    to,
                    amount,
                    fee
                }
            ),
        (
            principal(),
            of(any::<[u8; 32]>()),
            account(),
            account(),
            nat(),
            of(nat())
        )
            .prop_map(|(ledger, spender_subaccount, from, to, amount, fee)| {
                TransferSpec::Icrc2 {
                    ledger,
                    spender_subaccount,
                    from,
                    to,
                    amount,
                    fee,
                }
            }),
    ]
}

fn local() -> impl Strategy<Value = LocalAction> {
    (text(), bytes()).prop_map(|(handler, payload)| LocalAction { handler, payload })
}

fn step_action() -> impl Strategy<Value = StepAction> {
    prop_oneof![
        transfer_spec().prop_map(StepAction::Transfer),
        local().prop_map(StepAction::Local),
    ]
}

fn intent() -> BoxedStrategy<Intent> {
    let transfer = (
        principal(),
        ledger_op(),
        prop_oneof![
            Just(Executor::SelfCanister),
            principal().prop_map(|caller| Executor::External { caller })
        ],
        of(
            (any::<u64>(), any::<u64>()).prop_map(|(tx_window_ns, permitted_drift_ns)| {
                LedgerWindow {
                    tx_window_ns,
                    permitted_drift_ns,
                }
            }),
        ),
    )
        .prop_map(|(ledger, op, executor, window)| {
            Intent::Transfer(TransferIntent {
                ledger,
                op,
                executor,
                window,
            })
        });
    let step = (
        step_action(),
        of(step_action()),
        of(any::<u64>()),
        of(any::<u64>()),
    )
        .prop_map(
            |(action, compensation, entry, compensation_entry)| SagaStep {
                action,
                compensation,
                entry,
                compensation_entry,
            },
        );
    let saga = (
        vec(step, 0..4),
        any::<u32>(),
        prop_oneof![Just(SagaPhase::Forward), Just(SagaPhase::Compensating)],
        of(text()),
    )
        .prop_map(|(steps, cursor, phase, failure)| {
            Intent::Saga(SagaIntent {
                steps,
                cursor,
                phase,
                failure,
            })
        });
    prop_oneof![
        (text(), bytes()).prop_map(|(label, payload)| Intent::Record { label, payload }),
        transfer,
        local().prop_map(Intent::Local),
        saga,
    ]
    .boxed()
}

fn ledger_error() -> impl Strategy<Value = LedgerError> {
    prop_oneof![
        nat().prop_map(|expected_fee| LedgerError::BadFee { expected_fee }),
        nat().prop_map(|min_burn_amount| LedgerError::BadBurn { min_burn_amount }),
        nat().prop_map(|balance| LedgerError::InsufficientFunds { balance }),
        nat().prop_map(|allowance| LedgerError::InsufficientAllowance { allowance }),
        Just(LedgerError::TooOld),
        any::<u64>().prop_map(|ledger_time| LedgerError::CreatedInFuture { ledger_time }),
        Just(LedgerError::TemporarilyUnavailable),
        nat().prop_map(|duplicate_of| LedgerError::Duplicate { duplicate_of }),
        (nat(), text()).prop_map(|(error_code, message)| LedgerError::GenericError {
            error_code,
            message
        }),
    ]
}

fn source() -> impl Strategy<Value = EvidenceSource> {
    proptest::sample::select(vec![
        EvidenceSource::Reply,
        EvidenceSource::DedupResend,
        EvidenceSource::MemoLookup,
        EvidenceSource::Host,
        EvidenceSource::Admin,
    ])
}

fn failure() -> impl Strategy<Value = FailureReason> {
    prop_oneof![
        ledger_error().prop_map(FailureReason::Ledger),
        (of(any::<u32>().prop_map(RejectCode::from_raw)), text())
            .prop_map(|(code, message)| FailureReason::NotDelivered { code, message }),
        any::<u64>()
            .prop_map(|scanned_to_block| FailureReason::NotFoundAfterWindow { scanned_to_block }),
        text().prop_map(|message| FailureReason::Host { message }),
        any::<u64>().prop_map(|audit_seq| FailureReason::Admin { audit_seq }),
        (any::<u32>(), any::<u64>())
            .prop_map(|(step, entry)| FailureReason::SagaStepFailed { step, entry }),
        any::<bool>()
            .prop_map(|reported_unknown| FailureReason::RecordTimedOut { reported_unknown }),
    ]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        (of(any::<u64>()), bytes(), source()).prop_map(|(block_index, reply, source)| {
            Outcome::Succeeded {
                block_index,
                reply,
                source,
            }
        }),
        (failure(), source()).prop_map(|(reason, source)| Outcome::Failed { reason, source }),
    ]
}

pub fn entry() -> BoxedStrategy<Entry> {
    let head = (
        any::<u64>(),
        principal(),
        kind(),
        of(text()),
        intent(),
        status(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        of(any::<u64>()),
    );
    let scan = (
        of(any::<u64>()),
        any::<u64>(),
        any::<bool>(),
        of(any::<u64>()),
    )
        .prop_map(
            |(start_block, next_block, window_closed, reported_block)| ScanState {
                start_block,
                next_block,
                window_closed,
                reported_block,
            },
        );
    let history = (any::<u64>(), status(), status(), text())
        .prop_map(|(at, from, to, note)| HistoryItem { at, from, to, note });
    let tail = (
        of(outcome()),
        of(text()),
        of(text()),
        of(any::<u64>()),
        of(scan),
        vec(history, 0..4),
        any::<u32>(),
        of(any::<u64>()),
    );
    (head, tail)
        .prop_map(
            |(
                (id, owner, kind, lock_key, intent, status, attempts, created_at, updated_at, next),
                (outcome, last_error, manual_reason, parent, scan, history, dropped, blocked_on),
            )| Entry {
                id,
                owner,
                kind,
                lock_key,
                intent,
                status,
                attempts,
                created_at,
                updated_at,
                next_attempt_at: next,
                outcome,
                last_error,
                manual_reason,
                parent,
                scan,
                history,
                history_dropped: dropped,
                blocked_on,
            },
        )
        .boxed()
}

fn admin_action() -> impl Strategy<Value = AdminAction> {
    prop_oneof![
        Just(AdminAction::Retry),
        of(any::<u64>()).prop_map(|block_index| AdminAction::ResolveSucceeded { block_index }),
        Just(AdminAction::ResolveFailed),
        Just(AdminAction::Compensate),
        Just(AdminAction::Cancel),
    ]
}

fn audit_record() -> impl Strategy<Value = AuditRecord> {
    let event = prop_oneof![
        kind().prop_map(|kind| AuditEvent::Created { kind }),
        (status(), status(), text()).prop_map(|(from, to, note)| AuditEvent::StatusChanged {
            from,
            to,
            note
        }),
        (admin_action(), text(), of(any::<bool>())).prop_map(
            |(action, reason, acknowledged_risk)| AuditEvent::AdminAction {
                action,
                reason,
                acknowledged_risk
            }
        ),
        (admin_action(), vec(principal(), 0..3))
            .prop_map(|(previous, dropped)| AuditEvent::ApprovalsReplaced { previous, dropped }),
        vec(principal(), 0..3).prop_map(|dropped| AuditEvent::ApprovalsExpired { dropped }),
        (admin_action(), text(), any::<u32>(), any::<u32>()).prop_map(
            |(action, reason, have, need)| AuditEvent::AdminApproval {
                action,
                reason,
                have,
                need
            }
        ),
        text().prop_map(|detail| AuditEvent::Contradiction { detail }),
    ];
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        of(principal()),
        event,
    )
        .prop_map(|(seq, at, entry_id, actor, event)| AuditRecord {
            seq,
            at,
            entry_id,
            actor,
            event,
        })
}

/// Runs `check` on `cases` generated values on a thread with a large stack: the generated
/// values are deep, and Candid's decoder recurses (the debug build's frames are large).
fn check_all<T: std::fmt::Debug + 'static, S: Strategy<Value = T> + 'static>(
    strategy: fn() -> S,
    check: impl Fn(T) -> Result<(), TestCaseError> + Send + 'static,
) {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let mut runner = TestRunner::new(ProptestConfig::with_cases(512));
            if let Err(e) = runner.run(&strategy(), check) {
                panic!("{e}");
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn should_round_trip_every_entry_in_format_3_and_agree_with_format_2() {
    check_all(entry, |e| {
        let f3 = encode_cbor_value(&e);
        prop_assert_eq!(f3[0], 3);
        prop_assert_eq!(decode_stored::<Entry>(&f3), e.clone());
        prop_assert_eq!(decode_stored::<Entry>(&encode_schema_value(&e)), e);
        Ok(())
    });
}

#[test]
fn should_round_trip_every_audit_record_in_format_3_and_agree_with_format_2() {
    check_all(audit_record, |r| {
        let f3 = encode_cbor_value(&r);
        prop_assert_eq!(f3[0], 3);
        prop_assert_eq!(decode_stored::<AuditRecord>(&f3), r.clone());
        prop_assert_eq!(decode_stored::<AuditRecord>(&encode_schema_value(&r)), r);
        Ok(())
    });
}
