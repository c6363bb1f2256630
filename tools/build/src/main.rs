//! `icjournal-build RAW.wasm SERVICE.did OUT.wasm`: shrink, embed the Candid interface, write
//! OUT and print its size and sha256 (see the library docs; run by `scripts/build-canister.sh`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [raw, did, out] = args.as_slice() else {
        eprintln!("usage: icjournal-build RAW.wasm SERVICE.did OUT.wasm");
        std::process::exit(2);
    };
    let read = |p: &str| std::fs::read(p).unwrap_or_else(|e| fail(&format!("read {p}: {e}")));
    let did_text =
        String::from_utf8(read(did)).unwrap_or_else(|_| fail(&format!("{did}: not UTF-8")));
    let f = icjournal_build::finish(&read(raw), &did_text)
        .unwrap_or_else(|e| fail(&format!("{raw}: {e}")));
    std::fs::write(out, &f.wasm).unwrap_or_else(|e| fail(&format!("write {out}: {e}")));
    println!("wasm: {out}");
    println!("size: {} bytes", f.wasm.len());
    println!("custom sections: {}", f.sections.join(", "));
    println!("sha256: {}", f.sha256);
}

fn fail(msg: &str) -> ! {
    eprintln!("icjournal-build: {msg}");
    std::process::exit(1);
}
