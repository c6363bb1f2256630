//! The last step of a canister release build, on DFINITY's `ic-wasm` library: drop what the IC
//! does not run (debug sections, function names, unused code), embed the Candid interface as
//! public `candid:service` metadata (where dfx, icp-cli and the dashboard read it), and name the
//! result by its sha256.
//!
//! The hash is only worth printing if anyone can reproduce it: `scripts/build-canister.sh`
//! compiles with `--remap-path-prefix` so that no absolute path of the build machine (the
//! checkout, `$CARGO_HOME`) ends up in the Wasm through panic locations; this crate then
//! removes the remaining debug sections. Two builds from different directories and different
//! `CARGO_HOME`s give the same bytes (tested by `should_build_the_same_wasm_from_two_directories`).

use sha2::{Digest, Sha256};

/// Metadata name of the Candid interface (`icp:public candid:service` in the Wasm).
pub const CANDID_SERVICE: &str = "candid:service";

/// A finished release Wasm.
pub struct Finished {
    pub wasm: Vec<u8>,
    pub sha256: String,
    /// Names of the custom sections left in the module.
    pub sections: Vec<String>,
}

/// Shrink `raw` (as emitted by rustc) and embed `did` as public `candid:service` metadata.
pub fn finish(raw: &[u8], did: &str) -> Result<Finished, String> {
    let mut m = ic_wasm::utils::parse_wasm(raw, false).map_err(|e| format!("invalid Wasm: {e}"))?;
    ic_wasm::shrink::shrink(&mut m);
    ic_wasm::metadata::add_metadata(
        &mut m,
        ic_wasm::metadata::Kind::Public,
        CANDID_SERVICE,
        did.as_bytes().to_vec(),
    );
    let sections = m
        .customs
        .iter()
        .map(|(_, s)| s.name().to_string())
        .collect();
    let wasm = m.emit_wasm();
    let sha256 = hex::encode(Sha256::digest(&wasm));
    Ok(Finished {
        wasm,
        sha256,
        sections,
    })
}

/// The public metadata `name` of a Wasm module, if it has it.
pub fn public_metadata(wasm: &[u8], name: &str) -> Result<Option<Vec<u8>>, String> {
    let m = ic_wasm::utils::parse_wasm(wasm, false).map_err(|e| format!("invalid Wasm: {e}"))?;
    let section = format!("icp:public {name}");
    let data = m
        .customs
        .iter()
        .find(|(_, s)| s.name() == section)
        .map(|(_, s)| s.data(&Default::default()).to_vec());
    Ok(data)
}
