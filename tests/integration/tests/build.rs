//! Reproducible release builds: the sha256 that `scripts/build-canister.sh` prints is the same
//! for anyone who builds the same commit, wherever the checkout and `$CARGO_HOME` are.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Copy the files git tracks (what a clone has) from `root` to `to`.
fn checkout(root: &Path, to: &Path) {
    let out = Command::new("git")
        .current_dir(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .expect("this test needs git and a git checkout of the repository");
    assert!(
        out.status.success(),
        "git ls-files: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in out.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let rel = Path::new(std::str::from_utf8(file).unwrap());
        let src = root.join(rel);
        if !src.is_file() {
            continue; // deleted in the work tree
        }
        let dst = to.join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&src, &dst).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// Run the build script in `checkout` with its own target dir; returns the printed sha256.
fn build(checkout: &Path, cargo_home: Option<&Path>) -> String {
    let mut cmd = Command::new("bash");
    cmd.current_dir(checkout)
        .arg("scripts/build-canister.sh")
        .arg(checkout.join("icjournal.wasm"))
        .env("CARGO_TARGET_DIR", checkout.join("target"))
        .env("ICJOURNAL_BUILD_TOOL", build_tool())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if let Some(home) = cargo_home {
        // The dependencies come from the copied registry cache; nothing is fetched.
        cmd.env("CARGO_HOME", home).env("CARGO_NET_OFFLINE", "true");
    }
    let out = cmd.output().expect("run scripts/build-canister.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "build in {} failed:\n{stdout}\n{}",
        checkout.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let sha = stdout
        .lines()
        .find_map(|l| l.strip_prefix("sha256: "))
        .unwrap_or_else(|| panic!("no sha256 line in:\n{stdout}"));
    let wasm = std::fs::read(checkout.join("icjournal.wasm")).unwrap();
    let text = String::from_utf8_lossy(&wasm);
    for leak in [
        checkout.to_str().unwrap(),
        cargo_home.and_then(|h| h.to_str()).unwrap_or("/.cargo/"),
    ] {
        assert!(
            !text.contains(leak),
            "the Wasm contains the build path {leak}"
        );
    }
    sha.to_string()
}

/// The `icjournal-build` binary `cargo test --workspace` built beside this test binary
/// (`target/debug/deps/integration-*` → `target/debug/icjournal-build`), else built now.
fn build_tool() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let beside = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("icjournal-build"));
    if let Some(tool) = beside.filter(|t| t.is_file()) {
        return tool;
    }
    let root = ic_sim::build::workspace_root();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["build", "--locked", "-p", "icjournal-build"])
        .status()
        .expect("cargo build -p icjournal-build");
    assert!(status.success());
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("icjournal-build")
}

#[test]
fn should_build_the_same_wasm_from_two_directories() {
    let root = ic_sim::build::workspace_root();
    let tmp = root.join("target").join("tmp").join("reproducible");
    let _ = std::fs::remove_dir_all(&tmp);
    let a: PathBuf = tmp.join("a").join("icjournal");
    let b: PathBuf = tmp.join("elsewhere").join("deeper").join("checkout");
    checkout(&root, &a);
    checkout(&root, &b);
    // A second CARGO_HOME: the registry's downloaded crates and index, unpacked anew there.
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let home_b = tmp.join("cargo-home-b");
    for dir in ["registry/cache", "registry/index"] {
        copy_dir(&cargo_home.join(dir), &home_b.join(dir));
    }
    let sha_a = build(&a, None);
    let sha_b = build(&b, Some(&home_b));
    assert_eq!(sha_a, sha_b, "two checkouts built different Wasms");
    eprintln!("both builds: sha256 {sha_a}");
    let _ = std::fs::remove_dir_all(&tmp);
}
