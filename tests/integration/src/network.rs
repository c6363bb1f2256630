//! icjournal's canisters on a local replica (`ic-sim-replica`): the test ICRC ledger with its
//! archive, the icjournal service configured with that ledger and an admin identity, and the
//! payout example, served over the IC HTTP interface. Used by the `icjournal-replica` binary
//! and, in-process, by end-to-end tests of tools that speak the IC HTTP interface.

use crate::{deploy_on, Deployed, SetupOptions};
use candid::Principal;
use ic_sim_replica::{KeySource, Replica, ReplicaConfig, ReplicaError, TimeMode};
use std::time::Duration;

pub use ic_sim_replica;

/// How to start the network.
#[derive(Clone, Debug)]
pub struct NetworkOptions {
    /// Loopback port; 0 picks a free one.
    pub port: u16,
    pub time: TimeMode,
    /// Reproducible keys (root key, admin identity) and scheduler; `None`: random keys, FIFO.
    pub seed: Option<u64>,
    /// Admins besides the generated admin identity.
    pub extra_admins: Vec<Principal>,
    /// How long v3/v4 calls run synchronously before the replica answers 202.
    pub sync_call_timeout: Duration,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            port: 0,
            time: TimeMode::WallClock,
            seed: None,
            extra_admins: vec![],
            sync_call_timeout: Duration::from_secs(10),
        }
    }
}

/// An ed25519 identity: its PEM (PKCS#8, what `dfx identity import` and ic-agent's
/// `BasicIdentity::from_pem` read) and its principal.
#[derive(Clone, Debug)]
pub struct AdminIdentity {
    pub pem: String,
    pub principal: Principal,
}

impl AdminIdentity {
    fn new(seed: Option<u64>) -> AdminIdentity {
        let key = match seed {
            Some(s) => {
                let mut material = b"icjournal-replica admin ".to_vec();
                material.extend_from_slice(&s.to_be_bytes());
                ic_ed25519::PrivateKey::generate_from_seed(&material)
            }
            None => ic_ed25519::PrivateKey::generate(),
        };
        let principal = Principal::self_authenticating(key.public_key().serialize_rfc8410_der());
        AdminIdentity {
            pem: key.serialize_pkcs8_pem(ic_ed25519::PrivateKeyFormat::Pkcs8v1),
            principal,
        }
    }
}

/// A running network.
pub struct LocalNetwork {
    pub replica: Replica,
    pub canisters: Deployed,
    /// Admin of the service and the payout canister, funded on the ledger.
    pub admin: AdminIdentity,
}

impl LocalNetwork {
    /// Canister ids by name, as `/_/topology` lists them.
    pub fn named(&self) -> Vec<(&'static str, Principal)> {
        let d = &self.canisters;
        let mut v = vec![("ledger", d.ledger)];
        v.push(("icjournal", d.service));
        v.push(("payout", d.payout));
        v
    }
}

/// What the network deploys: the test setup's options with the given admins, the archive on,
/// the payout canister on, and the admins funded.
pub fn network_setup_options(admins: Vec<Principal>) -> SetupOptions {
    SetupOptions {
        archive: Some(crate::ArchiveSetup {
            trigger_threshold: 2_000,
            num_blocks_to_archive: 1_000,
            node_max_memory_size_bytes: None,
            cycles_for_archive_creation: None,
        }),
        payout: true,
        funded: admins.clone(),
        admins,
        ..SetupOptions::default()
    }
}

/// Build the canisters' Wasm (cached per process), start a replica and install them.
pub fn start_network(opts: NetworkOptions) -> Result<LocalNetwork, ReplicaError> {
    let admin = AdminIdentity::new(opts.seed);
    let mut admins = vec![admin.principal];
    admins.extend(opts.extra_admins.iter().copied());
    let mut setup = network_setup_options(admins);
    setup.seed = opts.seed;
    // Build before the server thread starts, so a build failure is reported here plainly.
    let wasms = crate::Wasms::all();
    let config = ReplicaConfig {
        port: opts.port,
        time: opts.time,
        keys: opts.seed.map_or(KeySource::Random, KeySource::Seed),
        scheduler_seed: opts.seed,
        sync_call_timeout: opts.sync_call_timeout,
    };
    let (replica, canisters) = Replica::start(config, move |i| {
        for w in [&wasms.ledger, &wasms.service, &wasms.payout] {
            i.register_module(w);
        }
        let d = deploy_on(i.sim(), &setup).map_err(|e| e.to_string())?;
        // Archives are spawned by the ledger later; `/_/topology` lists them as unnamed.
        i.name("ledger", d.ledger);
        i.name("icjournal", d.service);
        i.name("payout", d.payout);
        Ok(d)
    })?;
    Ok(LocalNetwork {
        replica,
        canisters,
        admin,
    })
}
