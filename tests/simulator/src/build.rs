//! Building canister Wasm from workspace packages for tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The workspace root: the nearest ancestor of this crate with a `[workspace]` Cargo.toml.
pub fn workspace_root() -> PathBuf {
    let mut dir = Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    loop {
        let toml = dir.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&toml) {
            if text.lines().any(|l| l.trim() == "[workspace]") {
                return dir;
            }
        }
        if !dir.pop() {
            panic!(
                "ic-sim: no workspace root above {}",
                env!("CARGO_MANIFEST_DIR")
            );
        }
    }
}

/// Build `package` for `wasm32-unknown-unknown` with the `canister-release` profile and return
/// the `.wasm` bytes. Uses the separate target dir `<root>/target/canisters` so that it does not
/// block on the lock held by the outer `cargo test`. Cached per package for the process.
pub fn canister_wasm(package: &str) -> Vec<u8> {
    static CACHE: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    // Hold the lock while building: concurrent builds would contend on cargo's lock anyway.
    let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(w) = guard.get(package) {
        return w.clone();
    }
    let root = workspace_root();
    let target_dir = root.join("target").join("canisters");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .args([
            "build",
            "--locked",
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            "canister-release",
            "-p",
            package,
        ])
        .output()
        .unwrap_or_else(|e| panic!("ic-sim: cannot run cargo to build {package}: {e}"));
    if !output.status.success() {
        panic!(
            "ic-sim: building canister {package} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let file = target_dir
        .join("wasm32-unknown-unknown")
        .join("canister-release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    let wasm = std::fs::read(&file)
        .unwrap_or_else(|e| panic!("ic-sim: cannot read {}: {e}", file.display()));
    guard.insert(package.to_string(), wasm.clone());
    wasm
}
