//! Public accessors used by the local replica (`tests/replica`) to serve the IC HTTP interface:
//! it needs to enumerate canisters for the certified state tree and to know the subnet id the
//! canisters see. Kept in their own `impl` block so they do not touch the simulator's internals.

use crate::{Principal, Simulator};

impl Simulator {
    /// Ids of all existing canisters (created, whether or not a module is installed), in
    /// ascending order.
    pub fn canister_ids(&self) -> Vec<Principal> {
        self.canisters.keys().copied().collect()
    }

    /// The subnet id canisters observe through `ic0.subnet_self` style APIs.
    pub fn subnet_id(&self) -> Principal {
        self.subnet
    }
}
