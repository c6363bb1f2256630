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
    canister_wasm_with_features(package, &[])
}

/// [`canister_wasm`] with cargo `features` enabled (e.g. a test-only variant). It shares the
/// target dir, so only the crates the features change are rebuilt; cargo copies the last build
/// of a package to the same `.wasm` path, so that file is read right after the build (under
/// this process's lock) and cached per (package, features).
pub fn canister_wasm_with_features(package: &str, features: &[&str]) -> Vec<u8> {
    static CACHE: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = format!("{package}[{}]", features.join(","));
    // Hold the lock while building: concurrent builds would contend on cargo's lock anyway.
    let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(w) = guard.get(&key) {
        return w.clone();
    }
    let features = features.join(",");
    let root = workspace_root();
    ensure_wasm_target(&root);
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
            "--features",
            &features,
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
    guard.insert(key, wasm.clone());
    wasm
}

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Makes sure the toolchain that builds the workspace has the `wasm32-unknown-unknown`
/// standard library, installing it with `rustup` when it is missing.
///
/// `rust-toolchain.toml` lists the target, but rustup honours that list only when it installs
/// the toolchain itself (`rustup toolchain install`); a toolchain that was already present, or
/// one cargo installed on first use, may lack it, and every canister build then fails with
/// `can't find crate for std`. Checked once per process.
pub fn ensure_wasm_target(root: &Path) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if wasm_std_installed(root) {
            return;
        }
        eprintln!("ic-sim: the {WASM_TARGET} target is missing; running `rustup target add {WASM_TARGET}`");
        // Run in the workspace root so rustup picks the toolchain pinned there.
        let status = Command::new("rustup")
            .current_dir(root)
            .args(["target", "add", WASM_TARGET])
            .status();
        match status {
            Ok(s) if s.success() && wasm_std_installed(root) => {}
            Ok(s) => panic!(
                "ic-sim: `rustup target add {WASM_TARGET}` failed ({s}); install the target for \
                 the toolchain in rust-toolchain.toml and retry"
            ),
            Err(e) => panic!(
                "ic-sim: the {WASM_TARGET} target is missing and rustup cannot be run ({e}); \
                 install the target for the toolchain in rust-toolchain.toml"
            ),
        }
    });
}

/// True when `<sysroot>/lib/rustlib/wasm32-unknown-unknown/lib` of the workspace's rustc exists.
fn wasm_std_installed(root: &Path) -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let Ok(out) = Command::new(rustc)
        .current_dir(root)
        .args(["--print", "sysroot"])
        .output()
    else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib")
        .join("rustlib")
        .join(WASM_TARGET)
        .join("lib")
        .is_dir()
}
