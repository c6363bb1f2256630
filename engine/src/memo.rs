//! Memo format: `b"icjrnl" ++ [version = 1] ++ entry_id (u64 big-endian)` — 15 bytes, within the
//! 32 bytes every ICRC-1 ledger must accept. The prefix makes our transfers recognisable in a
//! block scan; the id ties a block to its entry. The memo alone proves nothing (anyone can send
//! any memo): recovery also matches every other field.

use crate::types::EntryId;

pub const PREFIX: &[u8; 6] = b"icjrnl";
pub const VERSION: u8 = 1;
pub const LEN: usize = 15;

pub fn encode(id: EntryId) -> Vec<u8> {
    let mut m = Vec::with_capacity(LEN);
    m.extend_from_slice(PREFIX);
    m.push(VERSION);
    m.extend_from_slice(&id.to_be_bytes());
    m
}

pub fn decode(memo: &[u8]) -> Option<EntryId> {
    if memo.len() != LEN || &memo[..6] != PREFIX || memo[6] != VERSION {
        return None;
    }
    Some(u64::from_be_bytes(memo[7..].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejects_foreign_memos() {
        for id in [0, 1, 255, 1 << 40, u64::MAX] {
            let m = encode(id);
            assert_eq!(m.len(), LEN);
            assert!(m.len() <= 32);
            assert_eq!(decode(&m), Some(id));
        }
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"icjrnl\x02\0\0\0\0\0\0\0\x01"), None);
        assert_eq!(decode(b"xcjrnl\x01\0\0\0\0\0\0\0\x01"), None);
        let mut long = encode(7);
        long.push(0);
        assert_eq!(decode(&long), None);
    }
}
