//! Request envelopes checked as the IC checks them: request id over the content as received,
//! ingress expiry window, nonce size, sender vs. public key, delegation chains, and the
//! signature over `\x0Aic-request · request_id` (ed25519, ECDSA secp256k1, ECDSA P-256).

use candid::Principal;
use ic_transport_types::{Envelope, EnvelopeContent};
use serde::Deserialize;
use serde_cbor::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// How long an ingress message may live; the upper end of the accepted `ingress_expiry` window
/// is now + MAX_INGRESS_TTL + PERMITTED_DRIFT_AT_VALIDATOR, the lower end is now.
/// Figures from dfinity/ic `rs/limits/src/lib.rs` (`MAX_INGRESS_TTL` = 5 min,
/// `PERMITTED_DRIFT_AT_VALIDATOR` = 30 s); the window and its error message follow
/// `validate_ingress_expiry` in `rs/validator/src/ingress_validation.rs`.
pub const MAX_INGRESS_TTL_NANOS: u64 = 5 * 60 * 1_000_000_000;
pub const PERMITTED_DRIFT_AT_VALIDATOR_NANOS: u64 = 30 * 1_000_000_000;
/// Limits of `rs/validator/src/ingress_validation.rs` (also in the interface specification).
pub const MAXIMUM_NUMBER_OF_DELEGATIONS: usize = 20;
pub const MAXIMUM_NUMBER_OF_TARGETS_PER_DELEGATION: usize = 1_000;
pub const MAXIMUM_NUMBER_OF_BYTES_IN_NONCE: usize = 32;
pub const MAXIMUM_NUMBER_OF_PATHS: usize = 1_000;
pub const MAXIMUM_NUMBER_OF_LABELS_PER_PATH: usize = 127;

const REQUEST_DOMAIN: &[u8] = b"\x0Aic-request";
const DELEGATION_DOMAIN: &[u8] = b"\x1Aic-request-auth-delegation";

/// Why a request was refused before execution (HTTP 400 unless said otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Not CBOR, or not an envelope of the expected shape.
    Malformed(String),
    InvalidExpiry(String),
    InvalidDelegationExpiry(String),
    UserIdDoesNotMatchPublicKey {
        sender: Principal,
        pubkey: Vec<u8>,
    },
    InvalidSignature(String),
    InvalidDelegation(String),
    MissingSignature(Principal),
    AnonymousSignatureNotAllowed,
    CanisterNotInDelegationTargets(Principal),
    NonceTooBig(usize),
    TooManyPaths(usize),
    PathTooLong(usize),
    /// The request is of another type than the endpoint serves.
    WrongRequestType {
        expected: &'static str,
    },
    /// The effective canister id in the URL is not the request's canister.
    EffectiveCanisterMismatch {
        url: Principal,
        content: Principal,
    },
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use RequestError::*;
        match self {
            Malformed(m) => write!(f, "Malformed request: {m}"),
            InvalidExpiry(m) => write!(f, "Invalid request expiry: {m}"),
            InvalidDelegationExpiry(m) => write!(f, "Invalid delegation expiry: {m}"),
            UserIdDoesNotMatchPublicKey { sender, pubkey } => write!(
                f,
                "The user id {sender} does not match the public key {}",
                hex::encode(pubkey)
            ),
            InvalidSignature(m) => write!(f, "Invalid signature: {m}"),
            InvalidDelegation(m) => write!(f, "Invalid delegation: {m}"),
            MissingSignature(p) => write!(f, "Missing signature from user: {p}"),
            AnonymousSignatureNotAllowed => {
                write!(f, "Signature is not allowed for the anonymous user")
            }
            CanisterNotInDelegationTargets(c) => {
                write!(f, "Canister {c} is not one of the delegation targets")
            }
            NonceTooBig(n) => write!(
                f,
                "Nonce in request is too big: got {n} bytes, but at most {MAXIMUM_NUMBER_OF_BYTES_IN_NONCE} are allowed"
            ),
            TooManyPaths(n) => write!(
                f,
                "Too many paths in read state request: got {n} paths, but at most {MAXIMUM_NUMBER_OF_PATHS} are allowed"
            ),
            PathTooLong(n) => write!(
                f,
                "At least one path in read state request is too deep: got {n} labels, but at most {MAXIMUM_NUMBER_OF_LABELS_PER_PATH} are allowed"
            ),
            WrongRequestType { expected } => {
                write!(f, "Malformed request: expected a request of type {expected}")
            }
            EffectiveCanisterMismatch { url, content } => write!(
                f,
                "Specified CanisterId {content} does not match effective canister id in URL {url}"
            ),
        }
    }
}

impl std::error::Error for RequestError {}

/// The envelope with its content kept as raw CBOR: the request id is the hash of the content
/// map as sent, including fields this replica does not know.
#[derive(Deserialize)]
struct RawEnvelope {
    content: Value,
    #[serde(default)]
    sender_delegation: Option<Value>,
}

/// A request that passed validation.
#[derive(Debug, Clone)]
pub struct Verified {
    pub content: EnvelopeContent,
    pub request_id: [u8; 32],
    /// Canisters the delegation chain allows (None = all).
    pub targets: Option<BTreeSet<Principal>>,
}

impl Verified {
    pub fn allows(&self, canister: &Principal) -> bool {
        self.targets.as_ref().is_none_or(|t| t.contains(canister))
    }
}

/// Parse and authenticate an envelope at replica time `now` (nanoseconds since the epoch).
pub fn verify(body: &[u8], now: u64) -> Result<Verified, RequestError> {
    let envelope: Envelope = serde_cbor::from_slice(body)
        .map_err(|e| RequestError::Malformed(format!("invalid CBOR envelope: {e}")))?;
    let raw: RawEnvelope = serde_cbor::from_slice(body)
        .map_err(|e| RequestError::Malformed(format!("invalid CBOR envelope: {e}")))?;
    let request_id = hash_of_value(&raw.content)
        .ok_or_else(|| RequestError::Malformed("content is not a map".into()))?;
    let content = envelope.content.into_owned();

    let nonce_len = match &content {
        EnvelopeContent::Call { nonce, .. } | EnvelopeContent::Query { nonce, .. } => {
            nonce.as_ref().map_or(0, Vec::len)
        }
        EnvelopeContent::ReadState { .. } => match &raw.content {
            Value::Map(m) => match m.get(&Value::Text("nonce".into())) {
                Some(Value::Bytes(b)) => b.len(),
                _ => 0,
            },
            _ => 0,
        },
    };
    if nonce_len > MAXIMUM_NUMBER_OF_BYTES_IN_NONCE {
        return Err(RequestError::NonceTooBig(nonce_len));
    }
    if let EnvelopeContent::ReadState { paths, .. } = &content {
        if paths.len() > MAXIMUM_NUMBER_OF_PATHS {
            return Err(RequestError::TooManyPaths(paths.len()));
        }
        if let Some(p) = paths
            .iter()
            .find(|p| p.len() > MAXIMUM_NUMBER_OF_LABELS_PER_PATH)
        {
            return Err(RequestError::PathTooLong(p.len()));
        }
    }
    validate_expiry(content.ingress_expiry(), now)?;

    let sender = *content.sender();
    let targets = match (envelope.sender_pubkey, envelope.sender_sig) {
        (None, None) if raw.sender_delegation.is_none() => {
            if sender != Principal::anonymous() {
                return Err(RequestError::MissingSignature(sender));
            }
            None
        }
        _ if sender == Principal::anonymous() => {
            return Err(RequestError::AnonymousSignatureNotAllowed);
        }
        (Some(pubkey), Some(sig)) => {
            if Principal::self_authenticating(&pubkey) != sender {
                return Err(RequestError::UserIdDoesNotMatchPublicKey { sender, pubkey });
            }
            let (signer, targets) =
                verify_delegations(pubkey, raw.sender_delegation.as_ref(), now)?;
            let mut msg = REQUEST_DOMAIN.to_vec();
            msg.extend_from_slice(&request_id);
            verify_basic_signature(&signer, &msg, &sig).map_err(RequestError::InvalidSignature)?;
            targets
        }
        _ => return Err(RequestError::MissingSignature(sender)),
    };
    let verified = Verified {
        content,
        request_id,
        targets,
    };
    match &verified.content {
        EnvelopeContent::Call { canister_id, .. } | EnvelopeContent::Query { canister_id, .. } => {
            if !verified.allows(canister_id) {
                return Err(RequestError::CanisterNotInDelegationTargets(*canister_id));
            }
        }
        EnvelopeContent::ReadState { .. } => {}
    }
    Ok(verified)
}

fn validate_expiry(expiry: u64, now: u64) -> Result<(), RequestError> {
    let max = now
        .saturating_add(MAX_INGRESS_TTL_NANOS)
        .saturating_add(PERMITTED_DRIFT_AT_VALIDATOR_NANOS);
    if expiry < now || expiry > max {
        return Err(RequestError::InvalidExpiry(format!(
            "Specified ingress_expiry not within expected range: Minimum allowed expiry: {}, Maximum allowed expiry: {}, Provided expiry: {}",
            crate::fmt_time(now),
            crate::fmt_time(max),
            crate::fmt_time(expiry)
        )));
    }
    Ok(())
}

/// Walk `sender_delegation` from `sender_pubkey`: each delegation signed by the key before it,
/// not expired, no key twice; returns the key that must sign the request and the targets.
fn verify_delegations(
    sender_pubkey: Vec<u8>,
    chain: Option<&Value>,
    now: u64,
) -> Result<(Vec<u8>, Option<BTreeSet<Principal>>), RequestError> {
    let Some(chain) = chain else {
        return Ok((sender_pubkey, None));
    };
    let bad = |m: &str| RequestError::Malformed(format!("sender_delegation: {m}"));
    let Value::Array(items) = untag(chain) else {
        return Err(bad("not an array"));
    };
    if items.len() > MAXIMUM_NUMBER_OF_DELEGATIONS {
        return Err(RequestError::InvalidDelegation(format!(
            "Chain of delegations is too long: got {} delegations, but at most {MAXIMUM_NUMBER_OF_DELEGATIONS} are allowed",
            items.len()
        )));
    }
    let mut key = sender_pubkey;
    let mut seen: BTreeSet<Vec<u8>> = BTreeSet::from([key.clone()]);
    let mut targets: Option<BTreeSet<Principal>> = None;
    for item in items {
        let delegation = field(item, "delegation").ok_or_else(|| bad("no delegation"))?;
        let Some(Value::Bytes(signature)) = field(item, "signature") else {
            return Err(bad("no signature"));
        };
        let Some(Value::Bytes(pubkey)) = field(delegation, "pubkey") else {
            return Err(bad("no pubkey"));
        };
        let Some(Value::Integer(expiration)) = field(delegation, "expiration") else {
            return Err(bad("no expiration"));
        };
        if *expiration < i128::from(now) {
            return Err(RequestError::InvalidDelegationExpiry(format!(
                "Specified sender delegation has expired: Provided expiry: {}, Local replica time: {}",
                crate::fmt_time(u64::try_from(*expiration).unwrap_or(0)),
                crate::fmt_time(now)
            )));
        }
        if !seen.insert(pubkey.clone()) {
            return Err(RequestError::InvalidDelegation(format!(
                "Chain of delegations contains at least one cycle: first repeating public key encountered {}",
                hex::encode(pubkey)
            )));
        }
        let hash = hash_of_value(delegation).ok_or_else(|| bad("delegation is not a map"))?;
        let mut msg = DELEGATION_DOMAIN.to_vec();
        msg.extend_from_slice(&hash);
        verify_basic_signature(&key, &msg, signature).map_err(RequestError::InvalidDelegation)?;
        if let Some(t) = field(delegation, "targets") {
            let Value::Array(list) = t else {
                return Err(bad("targets is not an array"));
            };
            if list.len() > MAXIMUM_NUMBER_OF_TARGETS_PER_DELEGATION {
                return Err(RequestError::InvalidDelegation(format!(
                    "expected at most {MAXIMUM_NUMBER_OF_TARGETS_PER_DELEGATION} targets per delegation, but got {}",
                    list.len()
                )));
            }
            let mut set = BTreeSet::new();
            for v in list {
                let Value::Bytes(b) = untag(v) else {
                    return Err(bad("a target is not a principal"));
                };
                set.insert(Principal::try_from_slice(b).map_err(|e| bad(&e.to_string()))?);
            }
            targets = Some(match targets {
                None => set,
                Some(prev) => prev.intersection(&set).cloned().collect(),
            });
        }
        key = pubkey.clone();
    }
    Ok((key, targets))
}

fn untag(v: &Value) -> &Value {
    match v {
        Value::Tag(_, inner) => untag(inner),
        v => v,
    }
}

fn field<'a>(map: &'a Value, name: &str) -> Option<&'a Value> {
    match untag(map) {
        Value::Map(m) => m.get(&Value::Text(name.to_string())).map(untag),
        _ => None,
    }
}

/// Verify a signature by a DER-encoded public key of one of the schemes the IC accepts for
/// requests: ed25519, ECDSA secp256k1 and ECDSA P-256 (both over SHA-256, 64-byte r·s).
pub fn verify_basic_signature(der: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), String> {
    use k256::pkcs8::DecodePublicKey as _;
    if let Ok(pk) = ic_ed25519::PublicKey::deserialize_rfc8410_der(der) {
        return pk.verify_signature(msg, sig).map_err(|e| {
            format!("Invalid basic signature: Ed25519 signature could not be verified: {e:?}")
        });
    }
    if let Ok(pk) = k256::ecdsa::VerifyingKey::from_public_key_der(der) {
        use k256::ecdsa::signature::Verifier as _;
        let s = k256::ecdsa::Signature::from_slice(sig).map_err(|e| {
            format!("Invalid basic signature: malformed ECDSA secp256k1 signature: {e}")
        })?;
        return pk.verify(msg, &s).map_err(|_| {
            "Invalid basic signature: EcdsaSecp256k1 signature could not be verified".to_string()
        });
    }
    if let Ok(pk) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
        use p256::ecdsa::signature::Verifier as _;
        let s = p256::ecdsa::Signature::from_slice(sig).map_err(|e| {
            format!("Invalid basic signature: malformed ECDSA P-256 signature: {e}")
        })?;
        return pk.verify(msg, &s).map_err(|_| {
            "Invalid basic signature: EcdsaP256 signature could not be verified".to_string()
        });
    }
    Err(format!(
        "Invalid public key: unsupported or malformed key (this replica accepts DER ed25519, ECDSA secp256k1 and ECDSA P-256 keys): {}",
        hex::encode(der)
    ))
}

/// The representation-independent hash of a CBOR value (IC interface specification,
/// "Representation-independent hashing of structured data"); `None` for values it does not
/// define (floats, negative numbers, null, booleans, non-text map keys).
pub fn hash_of_value(v: &Value) -> Option<[u8; 32]> {
    let sha = |b: &[u8]| -> [u8; 32] { Sha256::digest(b).into() };
    Some(match untag(v) {
        Value::Bytes(b) => sha(b),
        Value::Text(s) => sha(s.as_bytes()),
        Value::Integer(i) => {
            let n = u64::try_from(*i).ok()?;
            sha(&crate::tree::leb128(n))
        }
        Value::Array(items) => {
            let mut cat = Vec::with_capacity(items.len() * 32);
            for item in items {
                cat.extend_from_slice(&hash_of_value(item)?);
            }
            sha(&cat)
        }
        Value::Map(m) => {
            let mut pairs: Vec<[u8; 64]> = Vec::with_capacity(m.len());
            for (k, v) in m {
                let Value::Text(k) = untag(k) else {
                    return None;
                };
                let mut pair = [0u8; 64];
                pair[..32].copy_from_slice(&sha(k.as_bytes()));
                pair[32..].copy_from_slice(&hash_of_value(v)?);
                pairs.push(pair);
            }
            pairs.sort_unstable();
            sha(&pairs.concat())
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn should_compute_the_request_id_of_the_interface_specification_example() {
        let t = |s: &str| Value::Text(s.into());
        let content = Value::Map(BTreeMap::from([
            (t("request_type"), t("call")),
            (t("sender"), Value::Bytes(vec![0x04])),
            (
                t("ingress_expiry"),
                Value::Integer(1_685_570_400_000_000_000),
            ),
            (
                t("canister_id"),
                Value::Bytes(vec![0, 0, 0, 0, 0, 0, 0x04, 0xD2]),
            ),
            (t("method_name"), t("hello")),
            (t("arg"), Value::Bytes(b"DIDL\x00\xFD*".to_vec())),
        ]));
        assert_eq!(
            hex::encode(hash_of_value(&content).unwrap()),
            "1d1091364d6bb8a6c16b203ee75467d59ead468f523eb058880ae8ec80e2b101"
        );
    }

    #[test]
    fn should_accept_the_expiry_window_only() {
        let now = 1_000 * MAX_INGRESS_TTL_NANOS;
        assert!(validate_expiry(now, now).is_ok());
        assert!(validate_expiry(
            now + MAX_INGRESS_TTL_NANOS + PERMITTED_DRIFT_AT_VALIDATOR_NANOS,
            now
        )
        .is_ok());
        assert!(validate_expiry(now - 1, now).is_err());
        let e = validate_expiry(
            now + MAX_INGRESS_TTL_NANOS + PERMITTED_DRIFT_AT_VALIDATOR_NANOS + 1,
            now,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with(
            "Invalid request expiry: Specified ingress_expiry not within expected range"
        ));
    }
}
