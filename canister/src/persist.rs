//! The service's own persistent state (configuration, pause flag) in one stable memory, with a
//! header so that `post_upgrade` can refuse (trap on) a layout it does not understand instead
//! of silently starting from defaults. The journal itself lives in the engine's memories.

use candid::{CandidType, Deserialize};
use ic_stable_structures::Memory;
use icjournal_client::ServiceConfig;

pub const MAGIC: &[u8; 4] = b"ICJS";
/// Layout version of the service state. Bump only with a migration in `load`.
pub const LAYOUT_VERSION: u32 = 1;
const HEADER_LEN: u64 = 12;
const PAGE: u64 = 65_536;

#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Persisted {
    pub config: ServiceConfig,
    pub recovery_paused: bool,
}

/// `Ok(None)` for a fresh memory; an error for anything that is not our layout.
pub fn load<M: Memory>(m: &M) -> Result<Option<Persisted>, String> {
    if m.size() == 0 {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_LEN as usize];
    m.read(0, &mut header);
    if &header[..4] != MAGIC {
        return Err("service state: bad magic (not an icjournal service memory)".into());
    }
    let version = u32::from_le_bytes(header[4..8].try_into().unwrap());
    if version != LAYOUT_VERSION {
        return Err(format!(
            "service state: unsupported layout version {version} (this build reads {LAYOUT_VERSION})"
        ));
    }
    let len = u32::from_le_bytes(header[8..12].try_into().unwrap()) as u64;
    if HEADER_LEN + len > m.size() * PAGE {
        return Err("service state: length beyond memory size".into());
    }
    let mut bytes = vec![0u8; len as usize];
    m.read(HEADER_LEN, &mut bytes);
    candid::decode_one(&bytes)
        .map(Some)
        .map_err(|e| format!("service state: cannot decode: {e}"))
}

pub fn save<M: Memory>(m: &M, p: &Persisted) {
    let bytes = candid::encode_one(p).expect("encode service state");
    let needed = HEADER_LEN + bytes.len() as u64;
    let have = m.size() * PAGE;
    if needed > have {
        let pages = (needed - have).div_ceil(PAGE);
        assert!(
            m.grow(pages) >= 0,
            "service state: cannot grow stable memory"
        );
    }
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&LAYOUT_VERSION.to_le_bytes());
    header.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    m.write(0, &header);
    m.write(HEADER_LEN, &bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_config;
    use ic_stable_structures::VectorMemory;

    #[test]
    fn roundtrip_and_refuses_foreign_layouts() {
        let m = VectorMemory::default();
        assert_eq!(load(&m), Ok(None));
        let p = Persisted {
            config: default_config(),
            recovery_paused: true,
        };
        save(&m, &p);
        assert_eq!(load(&m), Ok(Some(p.clone())));
        // A newer layout version: refuse.
        m.write(4, &2u32.to_le_bytes());
        assert!(load(&m)
            .unwrap_err()
            .contains("unsupported layout version 2"));
        m.write(4, &LAYOUT_VERSION.to_le_bytes());
        assert!(load(&m).is_ok());
        // Garbage: refuse.
        m.write(0, b"XXXX");
        assert!(load(&m).unwrap_err().contains("bad magic"));
        m.write(0, MAGIC);
        m.write(8, &u32::MAX.to_le_bytes());
        assert!(load(&m).is_err());
    }

    /// The state as a build before `summary_retention_ns` wrote it (same layout version: the
    /// field is an `opt`, so the Candid encoding stays readable): it loads, the field is None,
    /// and the engine gets its default summary period.
    #[test]
    fn loads_a_config_persisted_before_summary_retention_existed() {
        const OLD: &str = r#"(record {
            recovery_paused = false;
            config = record {
                admins = vec {};
                ledgers = vec {};
                recovery_interval_ns = 30_000_000_000 : nat64;
                recovery_batch_size = 50 : nat32;
                max_attempts = 20 : nat32;
                max_unresolved_per_caller = 1_000 : nat32;
                max_unresolved_bytes_per_caller = 4_194_304 : nat64;
                max_in_flight_per_caller = 50 : nat32;
                max_in_flight_total = 500 : nat32;
                max_payload_bytes = 4_096 : nat32;
                approvals_required = 1 : nat32;
                retention_ns = opt (172_800_000_000_000 : nat64);
                max_entries_per_caller = 100_000 : nat64;
                max_bytes_per_caller = 67_108_864 : nat64;
                stable_memory_limit_bytes = 4_294_967_296 : nat64;
                new_work_headroom_bytes = 268_435_456 : nat64;
                fees = record {
                    record_cycles = 10_000_000 : nat64;
                    tracked_transfer_cycles = 200_000_000 : nat64;
                    transfer_cycles = 100_000_000 : nat64;
                };
                fee_exempt = vec {};
            };
        })"#;
        let bytes = candid_parser::parse_idl_args(OLD)
            .unwrap()
            .to_bytes()
            .unwrap();
        let m = VectorMemory::default();
        m.grow(1);
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&LAYOUT_VERSION.to_le_bytes());
        header.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        m.write(0, &header);
        m.write(HEADER_LEN, &bytes);
        let p = load(&m).unwrap().expect("the old state");
        assert_eq!(p.config.retention_ns, Some(172_800_000_000_000));
        assert_eq!(p.config.summary_retention_ns, None);
        crate::config::validate(&p.config).unwrap();
        assert_eq!(
            crate::config::engine_config(&p.config).summary_retention_ns,
            Some(icjournal::config::DEFAULT_SUMMARY_RETENTION_NS)
        );
    }
}
