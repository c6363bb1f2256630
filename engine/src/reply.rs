//! Replies of journaled endpoints, Candid-encoded with their type table computed once.
//!
//! A Candid message is a type table followed by the value. The table depends only on the
//! static type, yet `candid::encode_one` rebuilds it for every reply, and for a reply that
//! carries the engine's types (`FailureReason`, `LedgerError`, `Status`, ...) that is most of
//! the cost of a journaled transfer: ~1.9M instructions per reply of the service's
//! `Result<FlowResult, ServiceError>`, ~1.5M per reply of the payout example's
//! `Result<PayoutReceipt, PayoutError>` (measured with performance counters in the Wasm; see
//! docs/cost-model.md), more than the journal's own work. Both the service and an embedding
//! canister reply through here. The table is
//! built once per type and process (a heap cache; an upgrade rebuilds it on first use), and
//! each reply serializes only the value. The bytes are the same as `candid::encode_one`'s
//! (checked by a test), so the interface is unchanged: the endpoints keep their return types
//! (what `export_candid!` exports) and reply with `manual_reply = true` (ic-cdk's
//! `encode_with` would export them as returning `blob`).

use candid::CandidType;
use std::any::TypeId;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

thread_local! {
    static HEADERS: RefCell<BTreeMap<TypeId, Rc<Vec<u8>>>> = const { RefCell::new(BTreeMap::new()) };
}

fn value_bytes<T: CandidType>(v: &T) -> Vec<u8> {
    let mut vs = candid::ser::ValueSerializer::new();
    // Encoding our own well-formed values cannot fail; a failure is a bug: trap.
    v.idl_serialize(&mut vs).expect("reply: candid encode");
    vs.get_result().to_vec()
}

/// Replies `v` (an endpoint with `manual_reply = true`; its declared return type stays the
/// Candid interface) and returns it.
pub fn reply<T: CandidType + 'static>(v: T) -> T {
    ic_cdk::api::msg_reply(encode(&v));
    v
}

/// `candid::encode_one(v)`, with the type table of `T` built once.
pub fn encode<T: CandidType + 'static>(v: &T) -> Vec<u8> {
    let cached = HEADERS.with_borrow(|h| h.get(&TypeId::of::<T>()).cloned());
    let value = value_bytes(v);
    let header = match cached {
        Some(h) => h,
        None => {
            let full = candid::encode_one(v).expect("reply: candid encode");
            assert!(full.ends_with(&value), "reply: candid header split");
            let h = Rc::new(full[..full.len() - value.len()].to_vec());
            HEADERS.with_borrow_mut(|m| m.insert(TypeId::of::<T>(), h.clone()));
            return full;
        }
    };
    let mut out = Vec::with_capacity(header.len() + value.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;
    use crate::JournalError;

    #[test]
    fn should_encode_replies_exactly_as_candid_encode_one() {
        let values: Vec<Result<FlowResult, JournalError>> = vec![
            Ok(FlowResult {
                entry_id: 7,
                status: Status::Succeeded,
                outcome: Some(Outcome::Succeeded {
                    block_index: Some(42),
                    reply: vec![1, 2],
                    source: EvidenceSource::Reply,
                }),
            }),
            Ok(FlowResult {
                entry_id: 8,
                status: Status::Failed,
                outcome: Some(Outcome::Failed {
                    reason: FailureReason::Ledger(LedgerError::InsufficientFunds {
                        balance: candid::Nat::from(3u8),
                    }),
                    source: EvidenceSource::Reply,
                }),
            }),
            Err(JournalError::NotFound { entry_id: 9 }),
        ];
        // The first call builds the cached header, the later ones use it.
        for _ in 0..2 {
            for v in &values {
                assert_eq!(encode(v), candid::encode_one(v).unwrap());
            }
        }
        let ids: Result<EntryId, JournalError> = Ok(5);
        assert_eq!(encode(&ids), candid::encode_one(ids).unwrap());
    }
}
