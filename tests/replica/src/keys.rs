//! The replica's keys: the subnet's BLS12-381 threshold key (a single share here) that signs
//! certificates, and the node's ed25519 key that signs query responses.

use candid::Principal;
use sha2::{Digest, Sha256};

/// DER prefix of a BLS12-381 G2 public key as the IC encodes it: a SubjectPublicKeyInfo whose
/// algorithm is OID 1.3.6.1.4.1.44668.5.3.1.2.1 (IC threshold BLS) with parameter
/// OID 1.3.6.1.4.1.44668.5.3.2.1 (BLS12-381 G2), then a 96-byte compressed point as a BIT STRING.
/// Layout from dfinity/ic `rs/crypto/utils/threshold_sig_der/src/lib.rs`; ic-agent checks this
/// exact prefix before it verifies a certificate.
const BLS_DER_PREFIX: [u8; 37] = [
    0x30, 0x81, 0x82, 0x30, 0x1d, 0x06, 0x0d, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xdc, 0x7c, 0x05,
    0x03, 0x01, 0x02, 0x01, 0x06, 0x0c, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0xdc, 0x7c, 0x05, 0x03,
    0x02, 0x01, 0x03, 0x61, 0x00,
];

/// Domain separator of a certificate signature: the signed message is this followed by the root
/// hash of the state tree (IC interface specification, "Certification").
pub const STATE_ROOT_DOMAIN: &[u8] = b"\x0Dic-state-root";

/// Where key material comes from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// Fresh keys from the operating system's random source.
    Random,
    /// Keys derived from a seed, so the root key (and thus the subnet id) is reproducible.
    Seed(u64),
}

pub struct Keys {
    root: ic_verify_bls_signature::PrivateKey,
    root_der: Vec<u8>,
    node: ic_ed25519::PrivateKey,
    node_der: Vec<u8>,
}

/// 32 bytes of key material: hashed from the seed (with a purpose label, so the two keys are
/// unrelated) or read from the OS.
fn material(source: &KeySource, purpose: &str, counter: u32) -> Result<[u8; 32], String> {
    match source {
        KeySource::Seed(seed) => {
            let mut h = Sha256::new();
            h.update(b"ic-sim-replica key ");
            h.update(purpose.as_bytes());
            h.update(seed.to_be_bytes());
            h.update(counter.to_be_bytes());
            Ok(h.finalize().into())
        }
        KeySource::Random => {
            let mut b = [0u8; 32];
            getrandom::getrandom(&mut b).map_err(|e| format!("no OS randomness: {e}"))?;
            Ok(b)
        }
    }
}

impl Keys {
    pub fn new(source: &KeySource) -> Result<Keys, String> {
        // A 32-byte string is a valid BLS scalar only below the group order, so draw again until
        // one is (about half of all strings are).
        let mut counter = 0u32;
        let root = loop {
            let bytes = material(source, "root bls", counter)?;
            if let Ok(k) = ic_verify_bls_signature::PrivateKey::deserialize(&bytes) {
                break k;
            }
            counter += 1;
        };
        let mut root_der = BLS_DER_PREFIX.to_vec();
        root_der.extend_from_slice(&root.public_key().serialize());
        let node =
            ic_ed25519::PrivateKey::generate_from_seed(&material(source, "node ed25519", 0)?);
        let node_der = node.public_key().serialize_rfc8410_der();
        Ok(Keys {
            root,
            root_der,
            node,
            node_der,
        })
    }

    /// The root public key, DER-encoded (what `/api/v2/status` serves as `root_key`).
    pub fn root_key_der(&self) -> &[u8] {
        &self.root_der
    }

    /// With no delegation in its certificates, this is the root subnet: ic-agent takes the
    /// subnet id to be the self-authenticating principal of the root key.
    pub fn subnet_id(&self) -> Principal {
        Principal::self_authenticating(&self.root_der)
    }

    pub fn node_key_der(&self) -> &[u8] {
        &self.node_der
    }

    pub fn node_id(&self) -> Principal {
        Principal::self_authenticating(&self.node_der)
    }

    /// BLS signature (48-byte compressed G1 point) of `\x0Dic-state-root · root_hash`.
    pub fn sign_state_root(&self, root_hash: &[u8; 32]) -> Vec<u8> {
        let mut msg = STATE_ROOT_DOMAIN.to_vec();
        msg.extend_from_slice(root_hash);
        self.root.sign(&msg).serialize().to_vec()
    }

    /// ed25519 signature of the node over `msg` (a query response's signable bytes).
    pub fn node_sign(&self, msg: &[u8]) -> Vec<u8> {
        self.node.sign_message(msg).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_sign_state_roots_verifiably_with_the_ic_der_key() {
        let keys = Keys::new(&KeySource::Seed(7)).unwrap();
        let root = [9u8; 32];
        let sig = keys.sign_state_root(&root);
        let mut msg = STATE_ROOT_DOMAIN.to_vec();
        msg.extend_from_slice(&root);
        let raw_key = &keys.root_key_der()[BLS_DER_PREFIX.len()..];
        assert_eq!(raw_key.len(), 96);
        assert!(ic_verify_bls_signature::verify_bls_signature(&sig, &msg, raw_key).is_ok());
        assert!(ic_verify_bls_signature::verify_bls_signature(&sig, b"other", raw_key).is_err());
        // Seeded keys are reproducible, random ones are not.
        assert_eq!(
            Keys::new(&KeySource::Seed(7)).unwrap().root_key_der(),
            keys.root_key_der()
        );
        assert_ne!(
            Keys::new(&KeySource::Random).unwrap().root_key_der(),
            keys.root_key_der()
        );
        assert_eq!(keys.node_key_der().len(), 44);
    }
}
