//! Wasm metadata: the IC reads a canister's public metadata from Wasm custom sections named
//! `icp:public <name>` (private ones: `icp:private <name>`); dfx and tools read the Candid
//! interface from `icp:public candid:service`. This module appends such a section without any
//! external tool, replacing a previous section of the same name.

/// Name of the custom section holding the public Candid interface.
pub const CANDID_SERVICE_SECTION: &str = "icp:public candid:service";

/// Why a byte string could not be processed as a Wasm module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasmError(pub String);

impl std::fmt::Display for WasmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid wasm: {}", self.0)
    }
}

impl std::error::Error for WasmError {}

const HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

fn read_leb_u32(bytes: &[u8], pos: &mut usize) -> Result<u32, WasmError> {
    let mut result: u64 = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes
            .get(*pos)
            .ok_or_else(|| WasmError("truncated LEB128".into()))?;
        *pos += 1;
        result |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return u32::try_from(result).map_err(|_| WasmError("LEB128 overflow".into()));
        }
    }
    Err(WasmError("LEB128 too long".into()))
}

fn write_leb_u32(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Names of the custom sections of `wasm`, in order.
pub fn custom_section_names(wasm: &[u8]) -> Result<Vec<String>, WasmError> {
    Ok(sections(wasm)?
        .into_iter()
        .filter_map(|s| s.custom_name)
        .collect())
}

/// Content of the custom section `name`, if present.
pub fn custom_section<'a>(wasm: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, WasmError> {
    for s in sections(wasm)? {
        if s.custom_name.as_deref() == Some(name) {
            return Ok(Some(&wasm[s.payload_start..s.end]));
        }
    }
    Ok(None)
}

struct Section {
    start: usize,
    end: usize,
    custom_name: Option<String>,
    payload_start: usize,
}

fn sections(wasm: &[u8]) -> Result<Vec<Section>, WasmError> {
    if wasm.len() < 8 || wasm[..8] != HEADER {
        return Err(WasmError("missing wasm v1 header".into()));
    }
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < wasm.len() {
        let start = pos;
        let id = wasm[pos];
        pos += 1;
        let size = read_leb_u32(wasm, &mut pos)? as usize;
        let end = pos
            .checked_add(size)
            .filter(|e| *e <= wasm.len())
            .ok_or_else(|| WasmError(format!("section at {start} overruns the module")))?;
        let (custom_name, payload_start) = if id == 0 {
            let mut p = pos;
            let len = read_leb_u32(wasm, &mut p)? as usize;
            let name_end = p
                .checked_add(len)
                .filter(|e| *e <= end)
                .ok_or_else(|| WasmError("custom section name overruns".into()))?;
            let name = std::str::from_utf8(&wasm[p..name_end])
                .map_err(|_| WasmError("custom section name is not UTF-8".into()))?;
            (Some(name.to_string()), name_end)
        } else {
            (None, pos)
        };
        out.push(Section {
            start,
            end,
            custom_name,
            payload_start,
        });
        pos = end;
    }
    Ok(out)
}

/// Returns `wasm` with a custom section `name` holding `content`; an existing section of that
/// name is removed first. Everything else is kept byte for byte.
pub fn set_custom_section(wasm: &[u8], name: &str, content: &[u8]) -> Result<Vec<u8>, WasmError> {
    let secs = sections(wasm)?;
    let mut out = Vec::with_capacity(wasm.len() + content.len() + name.len() + 16);
    out.extend_from_slice(&HEADER);
    for s in &secs {
        if s.custom_name.as_deref() != Some(name) {
            out.extend_from_slice(&wasm[s.start..s.end]);
        }
    }
    let name_len = u32::try_from(name.len()).map_err(|_| WasmError("name too long".into()))?;
    let mut payload = Vec::with_capacity(name.len() + content.len() + 5);
    write_leb_u32(&mut payload, name_len);
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(content);
    out.push(0);
    write_leb_u32(
        &mut out,
        u32::try_from(payload.len()).map_err(|_| WasmError("section too large".into()))?,
    );
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Returns `wasm` without the custom section(s) named `name` (e.g. `"name"`, the debug names
/// of functions: about a quarter of a release build, and not needed to run it).
pub fn remove_custom_section(wasm: &[u8], name: &str) -> Result<Vec<u8>, WasmError> {
    let secs = sections(wasm)?;
    let mut out = Vec::with_capacity(wasm.len());
    out.extend_from_slice(&HEADER);
    for s in &secs {
        if s.custom_name.as_deref() != Some(name) {
            out.extend_from_slice(&wasm[s.start..s.end]);
        }
    }
    Ok(out)
}

/// Embed the Candid interface `did` as public metadata (`icp:public candid:service`), as dfx
/// does, so `dfx canister metadata <id> candid:service` and Candid UIs find it.
///
/// ```
/// use icjournal_client::wasm::{embed_candid_metadata, custom_section, CANDID_SERVICE_SECTION};
/// let empty_module = b"\0asm\x01\0\0\0";
/// let did = "service : { ping : () -> () }";
/// let out = embed_candid_metadata(empty_module, did).unwrap();
/// assert_eq!(custom_section(&out, CANDID_SERVICE_SECTION).unwrap(), Some(did.as_bytes()));
/// ```
pub fn embed_candid_metadata(wasm: &[u8], did: &str) -> Result<Vec<u8>, WasmError> {
    set_custom_section(wasm, CANDID_SERVICE_SECTION, did.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb_roundtrip() {
        for v in [0u32, 1, 127, 128, 300, 16_384, u32::MAX] {
            let mut b = Vec::new();
            write_leb_u32(&mut b, v);
            let mut p = 0;
            assert_eq!(read_leb_u32(&b, &mut p).unwrap(), v);
            assert_eq!(p, b.len());
        }
    }

    #[test]
    fn embeds_and_replaces_keeping_other_sections() {
        // header + type section (id 1, size 1, zero types) + custom "name"
        let mut wasm = HEADER.to_vec();
        wasm.extend_from_slice(&[1, 1, 0]);
        let wasm = set_custom_section(&wasm, "other", b"x").unwrap();
        let once = embed_candid_metadata(&wasm, "service : {}").unwrap();
        let twice = embed_candid_metadata(&once, "service : { a : () -> () }").unwrap();
        assert_eq!(
            custom_section_names(&twice).unwrap(),
            vec!["other".to_string(), CANDID_SERVICE_SECTION.to_string()]
        );
        assert_eq!(
            custom_section(&twice, CANDID_SERVICE_SECTION).unwrap(),
            Some(&b"service : { a : () -> () }"[..])
        );
        assert_eq!(&twice[8..11], &[1, 1, 0]);
        // A large section needs a multi-byte size.
        let big = "x".repeat(100_000);
        let out = embed_candid_metadata(&wasm, &big).unwrap();
        assert_eq!(
            custom_section(&out, CANDID_SERVICE_SECTION).unwrap(),
            Some(big.as_bytes())
        );
    }

    #[test]
    fn removes_sections_by_name() {
        let mut wasm = HEADER.to_vec();
        wasm.extend_from_slice(&[1, 1, 0]);
        let wasm = set_custom_section(&wasm, "name", b"names").unwrap();
        let wasm = embed_candid_metadata(&wasm, "service : {}").unwrap();
        let out = remove_custom_section(&wasm, "name").unwrap();
        assert_eq!(
            custom_section_names(&out).unwrap(),
            vec![CANDID_SERVICE_SECTION.to_string()]
        );
        assert_eq!(&out[8..11], &[1, 1, 0]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(embed_candid_metadata(b"not wasm", "").is_err());
        let mut truncated = HEADER.to_vec();
        truncated.extend_from_slice(&[1, 10, 0]);
        assert!(embed_candid_metadata(&truncated, "").is_err());
    }
}
