#!/usr/bin/env bash
# Build the icjournal service canister Wasm (release profile, locked dependencies), embed
# candid/icjournal.did as public `candid:service` metadata, print size and sha256.
#
#   scripts/build-canister.sh [OUT.wasm]      (default: target/icjournal.wasm)
#
# dfx uses it through dfx.json ("type": "custom"). Needs only the pinned Rust toolchain with
# the wasm32-unknown-unknown target (rust-toolchain.toml).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-$root/target/icjournal.wasm}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

# rust-toolchain.toml lists the target, but a toolchain installed without it lacks it.
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
cargo build --locked --target wasm32-unknown-unknown --profile canister-release -p icjournal-canister
raw="$target_dir/wasm32-unknown-unknown/canister-release/icjournal_canister.wasm"
mkdir -p "$(dirname "$out")"
cargo run --locked --quiet -p icjournal-client --example embed_candid -- \
  "$raw" "$root/candid/icjournal.did" "$out"
