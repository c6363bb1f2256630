//! Dirty-page tracking of a canister's Wasm heap, the way the replica does it: committed pages
//! are mapped read-only; the first write to a page in a message faults, the fault handler
//! records the page and makes it writable, and the message's end deals with exactly those pages.
//!
//! Each canister keeps a *shadow* copy of its committed heap. Committing a message copies its
//! dirty pages into the shadow; rolling it back (trap, query) copies them back from the
//! shadow. Both cost time proportional to the pages the message wrote, never to the heap size.
//! Every committed page also carries the generation of its last change, which lets
//! [`crate::Simulator::restore`] copy back only the pages changed since a snapshot.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

/// The host's page size (4 KiB on x86_64 Linux).
pub(crate) fn page() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE.get_or_init(|| unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize)
}

/// 4 GiB, the largest wasm32 heap.
const MAX_HEAP: usize = 1 << 32;

/// Shared between the canister's store and its signal handler: which address range is
/// tracked and which of its pages were written since the last commit or rollback.
pub(crate) struct Tracker {
    base: AtomicUsize,
    len: AtomicUsize,
    bits: Box<[AtomicU64]>,
}

impl Tracker {
    pub(crate) fn new() -> Arc<Tracker> {
        let words = (MAX_HEAP / page()).div_ceil(64);
        Arc::new(Tracker {
            base: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// The fault handler: async-signal-safe (atomics and `mprotect` only).
    pub(crate) fn on_fault(&self, signum: libc::c_int, info: *const libc::siginfo_t) -> bool {
        if signum != libc::SIGSEGV && signum != libc::SIGBUS {
            return false;
        }
        // SAFETY: the kernel passes a valid siginfo for SIGSEGV/SIGBUS.
        let addr = unsafe { (*info).si_addr() } as usize;
        let base = self.base.load(Relaxed);
        let len = self.len.load(Relaxed);
        if base == 0 || addr < base || addr >= base + len {
            return false;
        }
        let p = (addr - base) / page();
        self.bits[p / 64].fetch_or(1 << (p % 64), Relaxed);
        // SAFETY: the page lies inside the heap mapping owned by this canister's store.
        unsafe { protect(base + p * page(), page(), true) }
    }

    /// Indices of the dirty pages below `limit` pages, as runs `[start, end)`; clears them.
    fn take_dirty_runs(&self, limit: usize) -> Vec<(usize, usize)> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for w in 0..limit.div_ceil(64) {
            let mut bits = self.bits[w].swap(0, Relaxed);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let p = w * 64 + b;
                if p >= limit {
                    continue;
                }
                match runs.last_mut() {
                    Some((_, end)) if *end == p => *end = p + 1,
                    _ => runs.push((p, p + 1)),
                }
            }
        }
        runs
    }
}

/// `mprotect` a page-aligned range read-only or read-write.
///
/// # Safety
/// The range must belong to a live mapping that nothing else relies on being writable.
pub(crate) unsafe fn protect(addr: usize, len: usize, writable: bool) -> bool {
    if len == 0 {
        return true;
    }
    let prot = if writable {
        libc::PROT_READ | libc::PROT_WRITE
    } else {
        libc::PROT_READ
    };
    // SAFETY: guaranteed by the caller.
    unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) == 0 }
}

/// Cost of tracking one dirty page by fault (signal delivery through wasmtime's handler, two
/// `mprotect` calls and their TLB flushes), in units of comparing one 4 KiB page with its
/// committed copy. The throughput bench's small heaps stay in cache (~0.05 us per page
/// compared against ~14 us per fault, a ratio of 256); a canister of several MiB is compared
/// from memory, and the ratio that runs the campaign fastest is far lower. Campaign schedules
/// (300 from seed 5,000,001, x86_64 Linux, one core) per value: 256 -> 7.5 runs/s, 64 -> 8.6,
/// 16 -> 11.5, 4 -> 11.7, 1 -> 9.8.
const FAULT_COST_IN_PAGE_COMPARES: u64 = 16;
/// Dirty pages per message assumed before any was measured.
const INITIAL_DIRTY_GUESS: u64 = 8;

/// The committed heap of one canister instance.
pub(crate) struct Heap {
    pub tracker: Arc<Tracker>,
    /// Content of the committed heap.
    pub shadow: Vec<u8>,
    /// Generation of the last committed change of each page.
    pub page_gen: Vec<u64>,
    /// Find dirty pages by comparing with the shadow instead of by faults: cheaper for heaps
    /// small relative to what each message writes (recent average in `dirty_avg`, x16).
    scan: bool,
    dirty_avg16: u64,
    mode: crate::DirtyTracking,
}

/// Where a heap lives in memory right now.
#[derive(Clone, Copy)]
pub(crate) struct Mapping {
    pub ptr: *mut u8,
    pub len: usize,
}

impl Heap {
    /// Start tracking a freshly instantiated (or reloaded) heap whose content is `shadow`.
    pub(crate) fn new(
        tracker: Arc<Tracker>,
        shadow: Vec<u8>,
        gen: u64,
        mode: crate::DirtyTracking,
    ) -> Heap {
        let pages = shadow.len().div_ceil(page());
        let dirty_avg16 = 16 * INITIAL_DIRTY_GUESS;
        Heap {
            tracker,
            shadow,
            page_gen: vec![gen; pages],
            scan: match mode {
                crate::DirtyTracking::Auto => {
                    (pages as u64) * 2 < INITIAL_DIRTY_GUESS * FAULT_COST_IN_PAGE_COMPARES
                }
                crate::DirtyTracking::Faults => false,
                crate::DirtyTracking::Scan => true,
            },
            dirty_avg16,
            mode,
        }
    }

    /// Re-protect pages after writing them outside a message (nothing to do in scan mode).
    fn reprotect(&self, addr: usize, len: usize) {
        if !self.scan {
            // SAFETY: inside the live heap.
            unsafe { protect(addr, len, false) };
        }
    }

    /// Pages in `[0, len)` that differ from the shadow, as runs.
    fn diff_runs(&self, mem: &[u8], len: usize) -> Vec<(usize, usize)> {
        let pg = page();
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for p in 0..len / pg {
            let r = p * pg..(p + 1) * pg;
            if mem[r.clone()] != self.shadow[r] {
                match runs.last_mut() {
                    Some((_, end)) if *end == p => *end = p + 1,
                    _ => runs.push((p, p + 1)),
                }
            }
        }
        runs
    }

    /// Learn how many pages messages write and switch between fault tracking and scanning
    /// when the other is clearly cheaper.
    fn adapt(&mut self, m: Mapping, dirty: usize) {
        self.dirty_avg16 = self.dirty_avg16 - self.dirty_avg16 / 8 + 2 * dirty as u64;
        let pages = (m.len / page()) as u64;
        let fault_cost = self.dirty_avg16 * FAULT_COST_IN_PAGE_COMPARES / 16;
        let (to_scan, to_faults) = match self.mode {
            crate::DirtyTracking::Auto => (pages * 2 < fault_cost, pages > fault_cost * 2),
            crate::DirtyTracking::Faults => (false, true),
            crate::DirtyTracking::Scan => (true, false),
        };
        self.set_scan(m, if self.scan { !to_faults } else { to_scan });
    }

    /// Switch between scanning and fault tracking.
    pub(crate) fn set_scan(&mut self, m: Mapping, scan: bool) {
        if !self.scan && scan {
            self.scan = true;
            self.tracker.len.store(0, Relaxed);
            // SAFETY: the live heap; it stays writable while scanning.
            unsafe { protect(m.ptr as usize, m.len, true) };
        } else if self.scan && !scan {
            self.scan = false;
            self.arm(m);
        }
    }

    pub(crate) fn set_mode(&mut self, m: Mapping, mode: crate::DirtyTracking) {
        self.mode = mode;
        match mode {
            crate::DirtyTracking::Auto => {}
            crate::DirtyTracking::Faults => self.set_scan(m, false),
            crate::DirtyTracking::Scan => self.set_scan(m, true),
        }
    }

    /// Map the whole committed heap read-only and start recording writes.
    pub(crate) fn arm(&self, m: Mapping) {
        for w in self.tracker.bits.iter() {
            w.store(0, Relaxed);
        }
        self.tracker.base.store(m.ptr as usize, Relaxed);
        if self.scan {
            self.tracker.len.store(0, Relaxed);
            return;
        }
        self.tracker.len.store(m.len, Relaxed);
        // SAFETY: `m` is the live heap of this canister; nothing writes it outside messages.
        assert!(
            unsafe { protect(m.ptr as usize, m.len, false) },
            "ic-sim: mprotect of the Wasm heap failed"
        );
    }

    /// The message succeeded: copy its dirty and newly grown pages into the shadow, stamp them
    /// with `gen` and map them read-only again.
    pub(crate) fn commit(&mut self, m: Mapping, gen: u64) {
        let pg = page();
        let old_len = self.shadow.len();
        let moved = m.ptr as usize != self.tracker.base.load(Relaxed);
        // SAFETY: the mapping is live and `m.len` bytes long; no Wasm runs concurrently.
        let mem = unsafe { std::slice::from_raw_parts(m.ptr, m.len) };
        let mut runs = if self.scan {
            self.diff_runs(mem, old_len)
        } else {
            self.tracker.take_dirty_runs(old_len / pg)
        };
        if moved {
            // The heap was reallocated while growing: every page may have changed.
            runs = vec![(0, old_len / pg)];
        }
        // Pages added by growth are copied but not counted: they cost no fault either way.
        let written: usize = runs.iter().map(|(s, e)| e - s).sum();
        if m.len > old_len {
            self.shadow.resize(m.len, 0);
            runs.push((old_len / pg, m.len / pg));
        }
        self.page_gen.resize(m.len / pg, gen);
        for &(s, e) in &runs {
            let r = s * pg..e * pg;
            self.shadow[r.clone()].copy_from_slice(&mem[r]);
            self.page_gen[s..e].fill(gen);
        }
        if moved {
            self.arm(m);
        } else if !self.scan {
            self.tracker.len.store(m.len, Relaxed);
            for &(s, e) in &runs {
                self.reprotect(m.ptr as usize + s * pg, (e - s) * pg);
            }
        }
        self.adapt(m, written);
    }

    /// The message is discarded. Returns false when the heap grew (or moved): a Wasm memory
    /// cannot shrink, so the caller must re-instantiate from the shadow.
    pub(crate) fn rollback(&mut self, m: Mapping) -> bool {
        let pg = page();
        if m.len != self.shadow.len() || m.ptr as usize != self.tracker.base.load(Relaxed) {
            return false;
        }
        // SAFETY: the mapping is live; dirty pages are writable until re-protected below.
        let mem = unsafe { std::slice::from_raw_parts_mut(m.ptr, m.len) };
        let runs = if self.scan {
            self.diff_runs(mem, m.len)
        } else {
            self.tracker.take_dirty_runs(m.len / pg)
        };
        for &(s, e) in &runs {
            let r = s * pg..e * pg;
            mem[r.clone()].copy_from_slice(&self.shadow[r]);
            self.reprotect(m.ptr as usize + s * pg, (e - s) * pg);
        }
        true
    }

    /// Make the heap equal to `snap` (same length) by copying the pages changed after
    /// generation `since`; stamps them with `gen`. Returns the number of pages copied.
    pub(crate) fn restore_from(&mut self, m: Mapping, snap: &[u8], since: u64, gen: u64) -> usize {
        let pg = page();
        debug_assert_eq!(m.len, snap.len());
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (p, g) in self.page_gen.iter_mut().enumerate() {
            if *g > since {
                *g = gen;
                match runs.last_mut() {
                    Some((_, end)) if *end == p => *end = p + 1,
                    _ => runs.push((p, p + 1)),
                }
            }
        }
        let mut copied = 0;
        for &(s, e) in &runs {
            let r = s * pg..e * pg;
            let addr = m.ptr as usize + s * pg;
            // SAFETY: inside the live heap, between messages.
            unsafe {
                protect(addr, (e - s) * pg, true);
                std::slice::from_raw_parts_mut(addr as *mut u8, (e - s) * pg)
                    .copy_from_slice(&snap[r.clone()]);
            }
            self.reprotect(addr, (e - s) * pg);
            self.shadow[r.clone()].copy_from_slice(&snap[r]);
            copied += e - s;
        }
        copied
    }
}
