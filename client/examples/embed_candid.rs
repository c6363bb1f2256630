//! Embed a Candid interface as `icp:public candid:service` metadata into a canister Wasm and
//! print its size and sha256 (used by `scripts/build-canister.sh`; no external tools).
//!
//! ```text
//! cargo run -p icjournal-client --example embed_candid -- [--keep-names] IN.wasm SERVICE.did OUT.wasm
//! ```
//!
//! The `name` section (debug names of functions, ~700 KB) is dropped unless `--keep-names`:
//! the unstripped Wasm stays in `target/` for debugging.

use sha2::{Digest, Sha256};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let keep_names = args.first().is_some_and(|a| a == "--keep-names");
    if keep_names {
        args.remove(0);
    }
    let [input, did, output] = args.as_slice() else {
        eprintln!("usage: embed_candid [--keep-names] IN.wasm SERVICE.did OUT.wasm");
        std::process::exit(2);
    };
    let wasm = std::fs::read(input).unwrap_or_else(|e| panic!("read {input}: {e}"));
    let did = std::fs::read_to_string(did).unwrap_or_else(|e| panic!("read {did}: {e}"));
    let wasm = if keep_names {
        wasm
    } else {
        icjournal_client::wasm::remove_custom_section(&wasm, "name")
            .unwrap_or_else(|e| panic!("{input}: {e}"))
    };
    let out = icjournal_client::wasm::embed_candid_metadata(&wasm, &did)
        .unwrap_or_else(|e| panic!("{input}: {e}"));
    std::fs::write(output, &out).unwrap_or_else(|e| panic!("write {output}: {e}"));
    let sections = icjournal_client::wasm::custom_section_names(&out).expect("valid output");
    println!("wasm: {output}");
    println!("size: {} bytes", out.len());
    println!("sha256: {}", hex::encode(Sha256::digest(&out)));
    println!("custom sections: {}", sections.join(", "));
}
