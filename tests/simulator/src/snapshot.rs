//! Whole-simulator snapshots for forking many runs from one saved state.
//!
//! A snapshot holds a full copy of every canister's committed heap and stable memory (taken
//! once), plus everything else the simulator evolves: globals, system state, call contexts,
//! callbacks, queues, time, ingress history, trace, logs, RNGs and counters.
//!
//! Restoring is cheap when the canister set and module instances are still those of the
//! snapshot and the heaps did not grow since: only heap and stable pages whose change
//! generation is newer than the snapshot (see `dirty`) are copied back. Stable memory survives
//! an upgrade, and so do its page generations: a canister upgraded (or whose heap grew) since
//! the snapshot gets a new instance loaded with the snapshot's heap (small after an upgrade)
//! while its stable memory is restored page by page — what keeps forking runs that upgrade a
//! canister with a large stable memory cheap. A canister whose stable memory was replaced
//! (reinstall, uninstall), which was created or deleted, is rebuilt from the snapshot's copy,
//! which costs time proportional to its memory — once: it is then back on the fast path for
//! later restores of the same snapshot.
//!
//! Not part of a snapshot: pending fault injections and `before_message` hooks (they stay as
//! they are), the log-printing switch, and the compiled-module cache.

use crate::exec::SysState;
use crate::{
    blank_ctx, dirty, new_store, CallContext, Callback, Canister, CanisterStatus, Compiled,
    IngressStatus, InstructionLimits, Limits, LogRecord, MessageId, MessageRecord, Principal,
    Queued, Rng, Simulator,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use wasmtime::Val;

/// A saved state of a [`Simulator`] (see [`Simulator::snapshot`]).
pub struct SimSnapshot {
    id: u64,
    gen: u64,
    canisters: BTreeMap<Principal, CanisterSnap>,
    next_canister: u64,
    time: u64,
    seq: u64,
    queue: Vec<Queued>,
    scheduler: Option<Rng>,
    rand: Rng,
    ingress: Arc<BTreeMap<MessageId, IngressStatus>>,
    pending_ingress: Vec<MessageId>,
    next_ingress: u64,
    next_id: u64,
    next_call_index: u64,
    message_counter: u64,
    trace: Arc<Vec<MessageRecord>>,
    logs: Arc<Vec<LogRecord>>,
    limits: InstructionLimits,
    size_limits: Limits,
    last_instructions: u64,
}

impl SimSnapshot {
    /// Time of the snapshot (nanoseconds since the epoch).
    pub fn time_nanos(&self) -> u64 {
        self.time
    }

    /// Number of messages executed before the snapshot.
    pub fn message_count(&self) -> u64 {
        self.message_counter
    }
}

struct CanisterSnap {
    epoch: u64,
    stable_epoch: u64,
    module: Option<(Arc<Compiled>, [u8; 32])>,
    heap: Arc<Vec<u8>>,
    globals: Vec<Val>,
    stable: Arc<Vec<u8>>,
    sys: SysState,
    log_sizes: VecDeque<u64>,
    log_used: u64,
    status: CanisterStatus,
    contexts: HashMap<u64, CallContext>,
    callbacks: HashMap<u64, Callback>,
    total_instructions: u64,
    messages: u64,
    settings: crate::mgmt::Settings,
    stop_waiters: Vec<(crate::Origin, u128, u64)>,
    history: Vec<crate::mgmt::Change>,
    total_changes: u64,
}

/// What a restore did (for benchmarks and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Heap and stable memory pages copied on the fast paths (a heap loaded into a new
    /// instance counts all its pages).
    pub pages_copied: usize,
    /// Canisters given a new instance loaded with the snapshot's heap, their stable memory
    /// restored page by page (upgraded or heap grown since the snapshot).
    pub instances_rebuilt: usize,
    /// Canisters rebuilt from the snapshot's full copy, stable memory included.
    pub canisters_rebuilt: usize,
}

impl Simulator {
    /// Save the complete state. Costs a copy of every canister's memory; take it once and
    /// [`Simulator::restore`] it many times.
    pub fn snapshot(&self) -> SimSnapshot {
        let id = self.next_snapshot.get();
        self.next_snapshot.set(id + 1);
        let canisters = self
            .canisters
            .iter()
            .map(|(id, c)| {
                let d = c.store.data();
                let heap = match (&c.heap, c.inst.as_ref().and_then(|i| i.memory)) {
                    (Some(h), _) => h.shadow.clone(),
                    (None, Some(m)) => m.data(&c.store).to_vec(),
                    (None, None) => Vec::new(),
                };
                let snap = CanisterSnap {
                    epoch: c.epoch,
                    stable_epoch: c.stable_epoch,
                    module: c.inst.as_ref().map(|i| (i.compiled.clone(), i.module_hash)),
                    heap: Arc::new(heap),
                    globals: c.globals.clone(),
                    stable: Arc::new(d.stable.clone()),
                    sys: d.sys.clone(),
                    log_sizes: d.log_sizes.clone(),
                    log_used: d.log_used,
                    status: c.status,
                    contexts: c.contexts.clone(),
                    callbacks: c.callbacks.clone(),
                    total_instructions: c.total_instructions,
                    messages: c.messages,
                    settings: c.settings.clone(),
                    stop_waiters: c.stop_waiters.clone(),
                    history: c.history.clone(),
                    total_changes: c.total_changes,
                };
                (*id, snap)
            })
            .collect();
        // The current trace, logs and ingress history are now exactly the snapshot's.
        self.history_base.set(Some(id));
        SimSnapshot {
            id,
            gen: self.gen,
            canisters,
            next_canister: self.next_canister,
            time: self.time,
            seq: self.seq,
            queue: self.queue.clone(),
            scheduler: self.scheduler.clone(),
            rand: self.rand.clone(),
            ingress: Arc::new(self.ingress.clone()),
            pending_ingress: self
                .ingress
                .iter()
                .filter(|(_, s)| matches!(s, IngressStatus::Pending))
                .map(|(id, _)| *id)
                .collect(),
            next_ingress: self.next_ingress,
            next_id: self.next_id,
            next_call_index: self.next_call_index,
            message_counter: self.message_counter,
            trace: Arc::new(self.trace.clone()),
            logs: Arc::new(self.logs.clone()),
            limits: self.limits,
            size_limits: self.size_limits,
            last_instructions: self.last_instructions,
        }
    }

    /// Return to the state saved in `snap` (which must come from this simulator). Pending fault
    /// injections and hooks are kept, not restored.
    pub fn restore(&mut self, snap: &SimSnapshot) -> RestoreStats {
        let mut stats = RestoreStats::default();
        self.gen += 1;
        let gen_r = self.gen;
        self.canisters
            .retain(|id, _| snap.canisters.contains_key(id));
        for (id, cs) in &snap.canisters {
            // Stable memory only grows while it is not replaced wholesale.
            let stable_fast = self.canisters.get(id).is_some_and(|c| {
                c.stable_epoch == cs.stable_epoch && c.store.data().stable.len() >= cs.stable.len()
            });
            let heap_fast = self.canisters.get(id).is_some_and(|c| {
                let heap_len = c
                    .inst
                    .as_ref()
                    .and_then(|i| i.memory)
                    .map_or(0, |m| m.data_size(&c.store));
                c.epoch == cs.epoch
                    && c.inst.is_some() == cs.module.is_some()
                    && c.heap.is_some() == cs.module.as_ref().is_some_and(|(m, _)| m.has_memory)
                    && heap_len == cs.heap.len()
            });
            if stable_fast && heap_fast {
                stats.pages_copied += self.restore_fast(*id, cs, snap, gen_r);
            } else if stable_fast {
                stats.pages_copied += self.restore_instance(*id, cs, snap, gen_r);
                stats.instances_rebuilt += 1;
            } else {
                self.restore_rebuild(*id, cs, snap.id, gen_r);
                stats.canisters_rebuilt += 1;
            }
        }
        self.next_canister = snap.next_canister;
        self.time = snap.time;
        self.seq = snap.seq;
        self.queue = snap.queue.clone();
        self.scheduler = snap.scheduler.clone();
        self.rand = snap.rand.clone();
        self.next_ingress = snap.next_ingress;
        self.next_id = snap.next_id;
        self.next_call_index = snap.next_call_index;
        self.message_counter = snap.message_counter;
        self.limits = snap.limits;
        self.size_limits = snap.size_limits;
        self.last_instructions = snap.last_instructions;
        let extends = self.history_base.get() == Some(snap.id)
            && self.trace.len() >= snap.trace.len()
            && self.logs.len() >= snap.logs.len();
        if extends {
            // Everything recorded since is newer than the snapshot: drop it.
            self.trace.truncate(snap.trace.len());
            self.logs.truncate(snap.logs.len());
            let _newer = self.ingress.split_off(&MessageId(snap.next_ingress));
            for id in &snap.pending_ingress {
                self.ingress.insert(*id, IngressStatus::Pending);
            }
        } else {
            self.trace = snap.trace.to_vec();
            self.logs = snap.logs.to_vec();
            self.ingress = (*snap.ingress).clone();
        }
        self.history_base.set(Some(snap.id));
        stats
    }

    /// Same instance, same heap size: copy back what changed since the snapshot.
    fn restore_fast(
        &mut self,
        id: Principal,
        cs: &CanisterSnap,
        snap: &SimSnapshot,
        gen_r: u64,
    ) -> usize {
        let c = self.canisters.get_mut(&id).unwrap();
        let since = since(c, snap);
        let mut copied = 0;
        let memory = c.inst.as_ref().and_then(|i| i.memory);
        if let (Some(m), Some(h)) = (memory, c.heap.as_mut()) {
            let mapping = dirty::Mapping {
                ptr: m.data_ptr(&c.store),
                len: m.data_size(&c.store),
            };
            copied += h.restore_from(mapping, &cs.heap, since, gen_r);
        }
        if let Some(i) = &c.inst {
            for (g, v) in i.globals.iter().zip(&cs.globals) {
                g.set(&mut c.store, *v).expect("restore global");
            }
        }
        c.globals = cs.globals.clone();
        copied += restore_stable(c, cs, since, gen_r);
        let d = c.store.data_mut();
        d.sys = cs.sys.clone();
        d.log_sizes = cs.log_sizes.clone();
        d.log_used = cs.log_used;
        c.restored = Some((snap.id, gen_r));
        restore_bookkeeping(c, cs);
        copied
    }

    /// Same stable memory, another instance (upgraded, or the heap grew, since the snapshot):
    /// a new instance loaded with the snapshot's heap and globals, and stable memory restored
    /// page by page. Returns the pages copied (the whole heap and the stable pages).
    fn restore_instance(
        &mut self,
        id: Principal,
        cs: &CanisterSnap,
        snap: &SimSnapshot,
        gen_r: u64,
    ) -> usize {
        let subnet = self.subnet;
        let print_logs = self.print_logs;
        let c = self.canisters.get_mut(&id).unwrap();
        let since = since(c, snap);
        c.heap = None;
        c.inst = None;
        let mut ctx = std::mem::replace(&mut c.store, new_store(blank_ctx(subnet))).into_data();
        ctx.sys = cs.sys.clone();
        ctx.log_sizes = cs.log_sizes.clone();
        ctx.log_used = cs.log_used;
        ctx.print_logs = print_logs;
        ctx.memory = None;
        let mut store = new_store(ctx);
        let inst = cs.module.as_ref().map(|(compiled, hash)| {
            let inst = self
                .instantiate(&mut store, compiled, *hash)
                .expect("re-instantiating a module that was instantiated before");
            crate::load_state(&mut store, &inst, &cs.heap, &cs.globals);
            inst
        });
        let c = self.canisters.get_mut(&id).unwrap();
        c.store = store;
        c.inst = inst;
        let mut copied = restore_stable(c, cs, since, gen_r);
        let pg = dirty::page();
        let heap_pages = cs.heap.len().div_ceil(pg);
        copied += heap_pages;
        self.attach_heap(id, Some(vec![gen_r; heap_pages]));
        let c = self.canisters.get_mut(&id).unwrap();
        c.epoch = cs.epoch;
        c.globals = cs.globals.clone();
        c.restored = Some((snap.id, gen_r));
        restore_bookkeeping(c, cs);
        copied
    }

    /// Rebuild the canister from the snapshot's full copy.
    fn restore_rebuild(&mut self, id: Principal, cs: &CanisterSnap, snap_id: u64, gen_r: u64) {
        let mut ctx = blank_ctx(self.subnet);
        ctx.sys = cs.sys.clone();
        ctx.stable = cs.stable.to_vec();
        ctx.log_sizes = cs.log_sizes.clone();
        ctx.log_used = cs.log_used;
        ctx.print_logs = self.print_logs;
        let mut store = new_store(ctx);
        let inst = cs.module.as_ref().map(|(compiled, hash)| {
            let inst = self
                .instantiate(&mut store, compiled, *hash)
                .expect("re-instantiating a module that was instantiated before");
            crate::load_state(&mut store, &inst, &cs.heap, &cs.globals);
            inst
        });
        let pg = dirty::page();
        let c = Canister {
            store,
            inst,
            status: cs.status,
            contexts: HashMap::new(),
            callbacks: HashMap::new(),
            total_instructions: 0,
            messages: 0,
            settings: cs.settings.clone(),
            stop_waiters: Vec::new(),
            history: Vec::new(),
            total_changes: 0,
            heap: None,
            stable_gen: vec![gen_r; cs.stable.len().div_ceil(pg)],
            epoch: cs.epoch,
            stable_epoch: cs.stable_epoch,
            restored: None,
            globals: cs.globals.clone(),
        };
        self.canisters.insert(id, c);
        // Every page is marked as just changed, which is right for any other snapshot; for
        // this one `restored` says they all hold its content.
        self.attach_heap(id, Some(vec![gen_r; cs.heap.len().div_ceil(pg)]));
        let c = self.canisters.get_mut(&id).unwrap();
        c.epoch = cs.epoch;
        c.restored = Some((snap_id, gen_r));
        restore_bookkeeping(c, cs);
    }
}

/// The generation up to which the canister's unchanged pages hold `snap`'s content: after a
/// restore of this same snapshot, that restore's; otherwise the snapshot's own.
fn since(c: &Canister, snap: &SimSnapshot) -> u64 {
    match c.restored {
        Some((sid, g)) if sid == snap.id => g,
        _ => snap.gen,
    }
}

/// Stable memory only grows while it is not replaced wholesale (which `stable_epoch` rules
/// out): truncate, then copy back the pages changed after `since`. Returns the pages copied.
fn restore_stable(c: &mut Canister, cs: &CanisterSnap, since: u64, gen_r: u64) -> usize {
    let pg = dirty::page();
    let d = c.store.data_mut();
    d.stable.truncate(cs.stable.len());
    c.stable_gen.resize(cs.stable.len().div_ceil(pg), gen_r);
    let mut copied = 0;
    for (p, g) in c.stable_gen.iter_mut().enumerate() {
        if *g > since {
            let r = p * pg..((p + 1) * pg).min(cs.stable.len());
            d.stable[r.clone()].copy_from_slice(&cs.stable[r]);
            *g = gen_r;
            copied += 1;
        }
    }
    copied
}

fn restore_bookkeeping(c: &mut Canister, cs: &CanisterSnap) {
    c.status = cs.status;
    c.contexts = cs.contexts.clone();
    c.callbacks = cs.callbacks.clone();
    c.total_instructions = cs.total_instructions;
    c.messages = cs.messages;
    c.settings = cs.settings.clone();
    c.stop_waiters = cs.stop_waiters.clone();
    c.history = cs.history.clone();
    c.total_changes = cs.total_changes;
}
