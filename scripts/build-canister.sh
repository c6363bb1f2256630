#!/usr/bin/env bash
# Reproducible release build of the icjournal service canister: compile (release profile,
# locked dependencies), shrink and embed candid/icjournal.did as public `candid:service`
# metadata with DFINITY's ic-wasm library (tools/build), print size and sha256.
#
#   scripts/build-canister.sh [OUT.wasm]      (default: target/icjournal.wasm)
#
# The same commit gives the same sha256 wherever it is built: absolute paths of this machine
# (the checkout, $CARGO_HOME) would otherwise reach the Wasm through panic locations, so they
# are remapped to fixed names. dfx (dfx.json) and icp-cli (icp.yaml) build through this script.
# Needs only the pinned Rust toolchain (rust-toolchain.toml).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-$root/target/icjournal.wasm}"
target_dir="${CARGO_TARGET_DIR:-$root/target}/release-wasm"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"

# rust-toolchain.toml lists the target, but a toolchain installed without it lacks it.
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
# CARGO_ENCODED_RUSTFLAGS (0x1f-separated) applies to this build only and keeps paths with
# spaces intact; the remapped prefixes are the longest first.
sep=$'\x1f'
flags="--remap-path-prefix=$cargo_home=/cargo${sep}--remap-path-prefix=$root=/icjournal"
CARGO_ENCODED_RUSTFLAGS="$flags" CARGO_TARGET_DIR="$target_dir" \
  cargo build --locked --target wasm32-unknown-unknown --profile canister-release -p icjournal-canister
raw="$target_dir/wasm32-unknown-unknown/canister-release/icjournal_canister.wasm"
mkdir -p "$(dirname "$out")"
# ICJOURNAL_BUILD_TOOL: an already built `icjournal-build` (the tool's own paths never reach
# the Wasm, so any build of it will do); by default it is built here.
if [ -n "${ICJOURNAL_BUILD_TOOL:-}" ]; then
  "$ICJOURNAL_BUILD_TOOL" "$raw" "$root/candid/icjournal.did" "$out"
else
  cargo run --locked --quiet -p icjournal-build -- "$raw" "$root/candid/icjournal.did" "$out"
fi
