//! The `bench` binary links the service canister's crate natively (it fills journals with the
//! service's own code) next to the test ledger's crate. Both define the canister entry points
//! (`canister_init`, `canister_update ...`) that ic-cdk exports on every target; natively they are
//! never called, so the bench binary alone lets the linker keep either definition.
fn main() {
    println!("cargo:rustc-link-arg-bin=bench=-Wl,--allow-multiple-definition");
}
