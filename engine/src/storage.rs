//! Stable storage of the journal (I5: everything lives here; no `pre_upgrade` serialization).
//!
//! # Layout (version 1)
//!
//! The host reserves `RESERVED_MEMORY_IDS` (16) `MemoryId`s for the engine, `first .. first + 16`
//! (`Memories::from_manager`); this layout uses the first `MEMORY_COUNT` (16) of them, and later
//! layouts stay inside the reserved range, so a host never has to move its own memories.
//! Offsets relative to `first`:
//!
//! | off | name         | structure                                        | purpose                               |
//! |-----|--------------|--------------------------------------------------|---------------------------------------|
//! | 0   | meta         | raw: magic `b"ICJR"`, u32 LE version, u64 LE next id, schema table | header; ids never reused |
//! | 1   | entries      | `BTreeMap<u64, Entry>`                           | by id                                 |
//! | 2   | by_owner     | `BTreeMap<(Principal, u8 status, u64 id), ()>`   | owner's entries by status             |
//! | 3   | by_status    | `BTreeMap<(u8 status, u64 id), ()>`              | manual queue, list by status          |
//! | 4   | due          | `BTreeMap<(u64 next_attempt_at, u64 id), ()>`    | recovery work queue                   |
//! | 5   | locks        | `BTreeMap<String, u64>`                          | lock key → unresolved entry (I3)      |
//! | 6   | unresolved   | `BTreeMap<u64 id, ()>`                           | oldest unresolved (first key)         |
//! | 7   | owners       | `BTreeMap<Principal, OwnerUsage>`                | per-owner quotas                      |
//! | 8   | counters     | `BTreeMap<u32, u64>`                             | metrics counters (O(1) metrics)       |
//! | 9   | audit_index  | `StableLog` index                                | append-only audit trail               |
//! | 10  | audit_data   | `StableLog` data                                 |                                       |
//! | 11  | approvals    | `BTreeMap<u64 id, Approvals>`                    | pending M-of-N approvals              |
//! | 12  | claims       | `BTreeMap<(Principal ledger, u64 block), u64 id>` | block → the transfer entry it proves  |
//! | 13  | keys         | `BTreeMap<(Principal, u8 kind, String key), KeyRecord>` | idempotency key / lock key → entry |
//! | 14  | owner_totals | `BTreeMap<Principal, OwnerTotals>`               | per-owner entries and bytes, all statuses |
//! | 15  | summaries    | `BTreeMap<u64 id, CompactedEntry>`               | compacted entries (`retention`)        |
//!
//! Offset 15 was reserved and unused until summaries took it; an older build never wrote it, so
//! the layout version stays 1 (an older build reading this layout ignores the summaries and
//! answers `NotFound` for a compacted id; its key records still stop a second entry).
//! Retired offsets: none yet. All 16 reserved ids are now in use: a later layout that needs
//! more must bump `LAYOUT_VERSION` and share a memory, never take an id outside the range.
//! Retired status/kind tags: none yet (tags live in `types.rs`; never renumber, only append).
//! Retired counter keys: none.
//!
//! Retention (`retention.rs`) removes a resolved entry with every index row (`remove_resolved`)
//! and writes its summary; it keeps the entry's key records (`keys`) for good and its block
//! claim (`claims`) until the summary is pruned. A summary value is its own versioned binary
//! format (`retention.rs`, first byte 1), not Candid.
//!
//! # Encoding
//!
//! Values are Candid, prefixed by a format byte:
//! - format 1 (`Approvals`): `[1] ++ candid::encode_one(v)`, self-describing;
//! - format 2 (`Entry`, `AuditRecord`): `[2] ++ schema hash (u64 BE) ++ candid value bytes`. The
//!   schema — the Candid type table, which is most of a small value — is stored once, in the
//!   append-only schema table of the meta memory (offset 16: `u32 count`, then per schema
//!   `u64 FNV-1a hash, u32 len, bytes`). Decoding prepends the schema the value was written with.
//!
//! Candid, not minicbor: the same types are the service's Candid interface, so there is one
//! encoding to audit, and Candid's subtyping gives safe evolution (add fields as `opt`; never
//! reuse a field or variant name): a value written by an older build decodes, with its own
//! schema, into the current type. Keys are fixed-width integers/principals.
//!
//! Every index is maintained in one place (`Store::write`), from the old and new version of an
//! entry, so they cannot drift apart.

use crate::error::OpenError;
use crate::types::*;
use candid::{CandidType, Deserialize, Principal};
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::storable::Bound;
use ic_stable_structures::{Memory, StableBTreeMap, StableLog, Storable};
use std::any::TypeId;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

pub const MAGIC: &[u8; 4] = b"ICJR";
pub const LAYOUT_VERSION: u32 = 1;
/// First byte of every stored value: its format (see `encode_value`, `encode_schema_value`).
const FORMAT_VERSION: u8 = 1;
const FORMAT_SCHEMA: u8 = 2;
/// Offset of the schema table in the meta memory (after magic, version, next id).
const SCHEMA_TABLE: u64 = 16;

/// Number of memories (and `MemoryId`s) this layout uses.
pub const MEMORY_COUNT: u8 = 16;
/// `MemoryId`s a host reserves for the engine, now and for every later layout.
pub const RESERVED_MEMORY_IDS: u8 = 16;

/// The memories the journal lives in. All must be distinct.
pub struct Memories<M: Memory> {
    pub meta: M,
    pub entries: M,
    pub by_owner: M,
    pub by_status: M,
    pub due: M,
    pub locks: M,
    pub unresolved: M,
    pub owners: M,
    pub counters: M,
    pub audit_index: M,
    pub audit_data: M,
    pub approvals: M,
    pub claims: M,
    pub keys: M,
    pub owner_totals: M,
    pub summaries: M,
}

impl<N: Memory> Memories<VirtualMemory<N>> {
    /// Uses `MemoryId`s `first .. first + MEMORY_COUNT` of `mm` (reserve
    /// `first .. first + RESERVED_MEMORY_IDS` for the engine).
    pub fn from_manager(mm: &MemoryManager<N>, first: u8) -> Self {
        assert!(
            first as u16 + RESERVED_MEMORY_IDS as u16 <= 255,
            "icjournal: MemoryId range out of bounds"
        );
        let m = |off: u8| mm.get(MemoryId::new(first + off));
        Memories {
            meta: m(0),
            entries: m(1),
            by_owner: m(2),
            by_status: m(3),
            due: m(4),
            locks: m(5),
            unresolved: m(6),
            owners: m(7),
            counters: m(8),
            audit_index: m(9),
            audit_data: m(10),
            approvals: m(11),
            claims: m(12),
            keys: m(13),
            owner_totals: m(14),
            summaries: m(15),
        }
    }
}

impl<M: Memory> Memories<M> {
    fn all(&self) -> [&M; 16] {
        [
            &self.meta,
            &self.entries,
            &self.by_owner,
            &self.by_status,
            &self.due,
            &self.locks,
            &self.unresolved,
            &self.owners,
            &self.counters,
            &self.audit_index,
            &self.audit_data,
            &self.approvals,
            &self.claims,
            &self.keys,
            &self.owner_totals,
            &self.summaries,
        ]
    }
}

/// The current Candid header of a Rust type: (FNV-1a hash, header bytes).
type CurrentSchema = (u64, Rc<Vec<u8>>);

thread_local! {
    /// Candid headers (type table + arg type) by FNV-1a hash: every schema this process may
    /// meet in stored values (loaded from the meta memory at open) plus the current types'.
    static SCHEMAS: RefCell<BTreeMap<u64, Rc<Vec<u8>>>> = const { RefCell::new(BTreeMap::new()) };
    /// Current header per Rust type.
    static CURRENT: RefCell<BTreeMap<TypeId, CurrentSchema>> = const { RefCell::new(BTreeMap::new()) };
}

/// FNV-1a: a cheap, stable 64-bit hash (schema ids, request fingerprints; not cryptographic).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn value_bytes<T: CandidType>(v: &T) -> Vec<u8> {
    let mut vs = candid::ser::ValueSerializer::new();
    // Encoding our own well-formed types cannot fail; a failure is a bug, so trap.
    v.idl_serialize(&mut vs).expect("icjournal: candid encode");
    vs.get_result().to_vec()
}

/// The Candid header of `T` (independent of the value: a type table describes the type),
/// computed from any value of `T` and cached.
fn current_header<T: CandidType + 'static>(sample: &T) -> (u64, Rc<Vec<u8>>) {
    if let Some(h) = CURRENT.with_borrow(|c| c.get(&TypeId::of::<T>()).cloned()) {
        return h;
    }
    let full = candid::encode_one(sample).expect("icjournal: candid encode");
    let val = value_bytes(sample);
    assert!(full.ends_with(&val), "icjournal: candid header split");
    let header = Rc::new(full[..full.len() - val.len()].to_vec());
    let h = (fnv1a(&header), header);
    CURRENT.with_borrow_mut(|c| c.insert(TypeId::of::<T>(), h.clone()));
    register_schema(h.0, h.1.clone());
    h
}

fn register_schema(hash: u64, header: Rc<Vec<u8>>) {
    SCHEMAS.with_borrow_mut(|s| {
        let prev = s.entry(hash).or_insert_with(|| header.clone());
        assert!(**prev == *header, "icjournal: schema hash collision");
    });
}

/// Format 2: `[2] ++ schema hash (u64 BE) ++ candid value`. The schema (Candid type table) is
/// stored once in the meta memory instead of in every value — it is most of a small value.
fn encode_schema_value<T: CandidType + 'static>(v: &T) -> Vec<u8> {
    let (hash, _) = current_header(v);
    let val = value_bytes(v);
    let mut out = Vec::with_capacity(9 + val.len());
    out.push(FORMAT_SCHEMA);
    out.extend_from_slice(&hash.to_be_bytes());
    out.extend_from_slice(&val);
    out
}

/// Format 1: `[1] ++ candid::encode_one(v)` (self-describing; used for rare values).
fn encode_value<T: CandidType>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    out.extend(candid::encode_one(v).expect("icjournal: candid encode"));
    out
}

fn decode_value<T: for<'de> Deserialize<'de> + CandidType>(bytes: &[u8]) -> T {
    // Stored bytes were written by us; undecodable bytes mean corrupt state: trap (a post_upgrade
    // trap keeps the old, working version installed).
    match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) => {
            candid::decode_one(rest).expect("icjournal: corrupt value")
        }
        Some((&FORMAT_SCHEMA, rest)) if rest.len() >= 8 => {
            let hash = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
            let header = SCHEMAS
                .with_borrow(|s| s.get(&hash).cloned())
                .unwrap_or_else(|| panic!("icjournal: unknown schema {hash:016x}"));
            let mut full = Vec::with_capacity(header.len() + rest.len() - 8);
            full.extend_from_slice(&header);
            full.extend_from_slice(&rest[8..]);
            // Candid decodes a value written with an older schema into the current type
            // (subtyping), exactly as for self-describing values.
            candid::decode_one(&full).expect("icjournal: corrupt value")
        }
        Some((v, _)) => panic!("icjournal: unsupported value format {v}"),
        None => panic!("icjournal: empty value"),
    }
}

/// A shared type (defined in `icjournal-types`) as a stable-structures value: the orphan rule
/// keeps `Storable` impls for foreign types out of this crate, so they are wrapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored<T>(pub T);

macro_rules! candid_storable {
    ($t:ty, $enc:ident) => {
        impl Storable for Stored<$t> {
            fn to_bytes(&self) -> Cow<'_, [u8]> {
                Cow::Owned($enc(&self.0))
            }
            fn into_bytes(self) -> Vec<u8> {
                $enc(&self.0)
            }
            fn from_bytes(bytes: Cow<[u8]>) -> Self {
                Stored(decode_value(&bytes))
            }
            const BOUND: Bound = Bound::Unbounded;
        }
    };
}

candid_storable!(Entry, encode_schema_value);
candid_storable!(AuditRecord, encode_schema_value);

impl Storable for Approvals {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(encode_value(self))
    }
    fn into_bytes(self) -> Vec<u8> {
        encode_value(&self)
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        decode_value(&bytes)
    }
    const BOUND: Bound = Bound::Unbounded;
}

/// Pending M-of-N approvals for one entry.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Approvals {
    pub action: AdminAction,
    pub approvers: Vec<Principal>,
}

/// Per-owner usage of unresolved entries (quota accounting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnerUsage {
    pub unresolved: u32,
    pub bytes: u64,
}

impl Storable for OwnerUsage {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.into_bytes())
    }
    fn into_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12);
        b.extend_from_slice(&self.unresolved.to_be_bytes());
        b.extend_from_slice(&self.bytes.to_be_bytes());
        b
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        let unresolved = u32::from_be_bytes(bytes[0..4].try_into().expect("owner usage"));
        let bytes = u64::from_be_bytes(bytes[4..12].try_into().expect("owner usage"));
        OwnerUsage { unresolved, bytes }
    }
    const BOUND: Bound = Bound::Bounded {
        max_size: 12,
        is_fixed_size: true,
    };
}

/// Kinds of caller-chosen keys in the `keys` index (one-byte tags; never renumber).
pub mod key_kind {
    /// The caller's idempotency key of a request: the same key returns the same entry.
    pub const IDEMPOTENCY: u8 = 0;
    /// A lock key: the latest entry that took it (kept after the entry is final).
    pub const LOCK: u8 = 1;
}

/// What a caller-chosen key points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub entry_id: EntryId,
    /// Hash of the request the key was first used with (idempotency keys; 0 for lock keys).
    pub request_hash: u64,
}

impl Storable for KeyRecord {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.into_bytes())
    }
    fn into_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(16);
        b.extend_from_slice(&self.entry_id.to_be_bytes());
        b.extend_from_slice(&self.request_hash.to_be_bytes());
        b
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        KeyRecord {
            entry_id: u64::from_be_bytes(bytes[0..8].try_into().expect("key record")),
            request_hash: u64::from_be_bytes(bytes[8..16].try_into().expect("key record")),
        }
    }
    const BOUND: Bound = Bound::Bounded {
        max_size: 16,
        is_fixed_size: true,
    };
}

/// Per-owner totals over all statuses (resolved entries included, until they are compacted):
/// a caller cannot grow the journal without bound by resolving what it creates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnerTotals {
    pub entries: u64,
    pub bytes: u64,
}

impl Storable for OwnerTotals {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.into_bytes())
    }
    fn into_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(16);
        b.extend_from_slice(&self.entries.to_be_bytes());
        b.extend_from_slice(&self.bytes.to_be_bytes());
        b
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        OwnerTotals {
            entries: u64::from_be_bytes(bytes[0..8].try_into().expect("owner totals")),
            bytes: u64::from_be_bytes(bytes[8..16].try_into().expect("owner totals")),
        }
    }
    const BOUND: Bound = Bound::Bounded {
        max_size: 16,
        is_fixed_size: true,
    };
}

/// Counter keys (namespace << 16 | tag). Never renumber.
pub mod counter {
    pub const STATUS: u32 = 1 << 16;
    pub const KIND: u32 = 2 << 16;
    pub const PATH: u32 = 3 << 16;
    pub const ATTEMPTS: u32 = 4 << 16;
    pub const CONTRADICTIONS: u32 = 5 << 16;
    pub const TICKS: u32 = 6 << 16;
    /// Entries compacted by retention, per terminal status tag (`COMPACTED | tag`).
    pub const COMPACTED: u32 = 7 << 16;
    /// Summaries pruned after the second retention period.
    pub const SUMMARIES_PRUNED: u32 = 8 << 16;
}

/// Quota charge of an intent: a deterministic function of the immutable parts of the intent,
/// so the same amount is released on resolution as was charged on creation.
pub fn intent_charge(intent: &Intent) -> u64 {
    fn action(a: &StepAction) -> u64 {
        match a {
            StepAction::Transfer(_) => 256,
            StepAction::Local(l) => 64 + l.handler.len() as u64 + l.payload.len() as u64,
        }
    }
    match intent {
        Intent::Record { label, payload } => 64 + label.len() as u64 + payload.len() as u64,
        Intent::Transfer(_) => 256,
        Intent::Local(l) => 64 + l.handler.len() as u64 + l.payload.len() as u64,
        Intent::Saga(s) => {
            64 + s
                .steps
                .iter()
                .map(|st| action(&st.action) + st.compensation.as_ref().map_or(0, action))
                .sum::<u64>()
        }
    }
}

/// Schema table in the meta memory at `SCHEMA_TABLE`: `u32 LE count`, then per schema
/// `u64 LE hash, u32 LE len, header bytes`. Append-only: a schema is never removed, because
/// values written with it may still exist.
fn load_and_persist_schemas<M: Memory>(meta: &M) {
    let read_u32 = |off: u64| {
        let mut b = [0u8; 4];
        meta.read(off, &mut b);
        u32::from_le_bytes(b)
    };
    let count = read_u32(SCHEMA_TABLE);
    let mut off = SCHEMA_TABLE + 4;
    let mut known = BTreeMap::new();
    for _ in 0..count {
        let mut h = [0u8; 8];
        meta.read(off, &mut h);
        let len = read_u32(off + 8) as usize;
        let mut header = vec![0u8; len];
        meta.read(off + 12, &mut header);
        let hash = u64::from_le_bytes(h);
        assert_eq!(fnv1a(&header), hash, "icjournal: corrupt schema table");
        register_schema(hash, Rc::new(header));
        known.insert(hash, ());
        off += 12 + len as u64;
    }
    let current = [
        current_header(&sample_entry()),
        current_header(&sample_audit()),
    ];
    let mut count = count;
    for (hash, header) in current {
        if known.contains_key(&hash) {
            continue;
        }
        let end = off + 12 + header.len() as u64;
        let pages = end.div_ceil(65536);
        if meta.size() < pages {
            assert!(
                meta.grow(pages - meta.size()) >= 0,
                "icjournal: out of stable memory"
            );
        }
        meta.write(off, &hash.to_le_bytes());
        meta.write(off + 8, &(header.len() as u32).to_le_bytes());
        meta.write(off + 12, &header);
        off = end;
        count += 1;
        meta.write(SCHEMA_TABLE, &count.to_le_bytes());
        known.insert(hash, ());
    }
}

fn sample_entry() -> Entry {
    Entry {
        id: 0,
        owner: Principal::anonymous(),
        kind: Kind::Record,
        lock_key: None,
        intent: Intent::Record {
            label: String::new(),
            payload: vec![],
        },
        status: Status::Pending,
        attempts: 0,
        created_at: 0,
        updated_at: 0,
        next_attempt_at: None,
        outcome: None,
        last_error: None,
        manual_reason: None,
        parent: None,
        scan: None,
        history: vec![],
        history_dropped: 0,
        blocked_on: None,
    }
}

fn sample_audit() -> AuditRecord {
    AuditRecord {
        seq: 0,
        at: 0,
        entry_id: 0,
        actor: None,
        event: AuditEvent::Created { kind: Kind::Record },
    }
}

pub struct Store<M: Memory> {
    meta: M,
    next_id: u64,
    entries: StableBTreeMap<u64, Stored<Entry>, M>,
    by_owner: StableBTreeMap<(Principal, u8, u64), (), M>,
    by_status: StableBTreeMap<(u8, u64), (), M>,
    due: StableBTreeMap<(u64, u64), (), M>,
    locks: StableBTreeMap<String, u64, M>,
    unresolved: StableBTreeMap<u64, (), M>,
    owners: StableBTreeMap<Principal, OwnerUsage, M>,
    counters: StableBTreeMap<u32, u64, M>,
    audit: StableLog<Stored<AuditRecord>, M, M>,
    approvals: StableBTreeMap<u64, Approvals, M>,
    claims: StableBTreeMap<(Principal, u64), u64, M>,
    keys: StableBTreeMap<(Principal, u8, String), KeyRecord, M>,
    owner_totals: StableBTreeMap<Principal, OwnerTotals, M>,
    summaries: StableBTreeMap<u64, Stored<CompactedEntry>, M>,
    sizes: Vec<M>,
}

impl<M: Memory + Clone> Store<M> {
    /// Create (empty memories) or load (existing layout). Never overwrites foreign data.
    pub fn open(mem: Memories<M>) -> Result<Self, OpenError> {
        let sizes: Vec<M> = mem.all().into_iter().cloned().collect();
        let next_id = if mem.meta.size() == 0 {
            let non_empty = mem.all().iter().skip(1).any(|m| m.size() > 0);
            if non_empty {
                // Data without a header: not ours, or a half-written layout. Refuse.
                return Err(OpenError::BadMagic);
            }
            mem.meta.grow(1);
            let mut hdr = Vec::with_capacity(16);
            hdr.extend_from_slice(MAGIC);
            hdr.extend_from_slice(&LAYOUT_VERSION.to_le_bytes());
            hdr.extend_from_slice(&0u64.to_le_bytes());
            mem.meta.write(0, &hdr);
            0
        } else {
            let mut hdr = [0u8; 16];
            mem.meta.read(0, &mut hdr);
            if &hdr[0..4] != MAGIC {
                return Err(OpenError::BadMagic);
            }
            let version = u32::from_le_bytes(hdr[4..8].try_into().expect("4 bytes"));
            if version != LAYOUT_VERSION {
                return Err(OpenError::UnsupportedVersion {
                    found: version,
                    supported: LAYOUT_VERSION,
                });
            }
            u64::from_le_bytes(hdr[8..16].try_into().expect("8 bytes"))
        };
        load_and_persist_schemas(&mem.meta);
        Ok(Store {
            meta: mem.meta,
            next_id,
            entries: StableBTreeMap::init(mem.entries),
            by_owner: StableBTreeMap::init(mem.by_owner),
            by_status: StableBTreeMap::init(mem.by_status),
            due: StableBTreeMap::init(mem.due),
            locks: StableBTreeMap::init(mem.locks),
            unresolved: StableBTreeMap::init(mem.unresolved),
            owners: StableBTreeMap::init(mem.owners),
            counters: StableBTreeMap::init(mem.counters),
            audit: StableLog::init(mem.audit_index, mem.audit_data),
            approvals: StableBTreeMap::init(mem.approvals),
            claims: StableBTreeMap::init(mem.claims),
            keys: StableBTreeMap::init(mem.keys),
            owner_totals: StableBTreeMap::init(mem.owner_totals),
            summaries: StableBTreeMap::init(mem.summaries),
            sizes,
        })
    }
}

impl<M: Memory> Store<M> {
    /// Reserve the next entry id (persisted immediately: ids are never reused, even if the
    /// entry creation is later rejected in the same message — a trap rolls both back).
    pub fn allocate_id(&mut self) -> EntryId {
        let id = self.next_id;
        self.next_id = id.checked_add(1).expect("icjournal: entry ids exhausted");
        self.meta.write(8, &self.next_id.to_le_bytes());
        id
    }

    pub fn next_id(&self) -> EntryId {
        self.next_id
    }

    pub fn get(&self, id: EntryId) -> Option<Entry> {
        self.entries.get(&id).map(|s| s.0)
    }

    pub fn len(&self) -> u64 {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn lock_holder(&self, key: &str) -> Option<EntryId> {
        self.locks.get(&key.to_string())
    }

    pub fn owner_usage(&self, owner: &Principal) -> OwnerUsage {
        self.owners.get(owner).unwrap_or_default()
    }

    /// Insert a new entry or replace `old` by `new` (same id), maintaining every index.
    pub fn write(&mut self, old: Option<&Entry>, new: &Entry) {
        if let Some(old) = old {
            debug_assert_eq!(old.id, new.id);
            if old.status != new.status {
                self.by_owner.remove(&(old.owner, old.status.tag(), old.id));
                self.by_status.remove(&(old.status.tag(), old.id));
                self.by_owner
                    .insert((new.owner, new.status.tag(), new.id), ());
                self.by_status.insert((new.status.tag(), new.id), ());
                self.bump(counter::STATUS | old.status.tag() as u32, -1);
                self.bump(counter::STATUS | new.status.tag() as u32, 1);
            }
            if old.next_attempt_at != new.next_attempt_at {
                if let Some(at) = old.next_attempt_at {
                    self.due.remove(&(at, old.id));
                }
                if let Some(at) = new.next_attempt_at {
                    self.due.insert((at, new.id), ());
                }
            }
            if old.status.is_unresolved() && !new.status.is_unresolved() {
                self.release(new);
            }
            if old.status != Status::Succeeded {
                self.claim(new);
            }
        } else {
            self.by_owner
                .insert((new.owner, new.status.tag(), new.id), ());
            self.by_status.insert((new.status.tag(), new.id), ());
            if let Some(at) = new.next_attempt_at {
                self.due.insert((at, new.id), ());
            }
            self.bump(counter::STATUS | new.status.tag() as u32, 1);
            self.bump(counter::KIND | new.kind.tag() as u32, 1);
            let mut t = self.owner_totals(&new.owner);
            t.entries = t.entries.saturating_add(1);
            t.bytes = t.bytes.saturating_add(intent_charge(&new.intent));
            self.owner_totals.insert(new.owner, t);
            if new.status.is_unresolved() {
                if let Some(k) = &new.lock_key {
                    self.locks.insert(k.clone(), new.id);
                }
                self.unresolved.insert(new.id, ());
                let mut u = self.owner_usage(&new.owner);
                u.unresolved = u.unresolved.saturating_add(1);
                u.bytes = u.bytes.saturating_add(intent_charge(&new.intent));
                self.owners.insert(new.owner, u);
            }
        }
        self.entries.insert(new.id, Stored(new.clone()));
    }

    fn release(&mut self, e: &Entry) {
        if let Some(k) = &e.lock_key {
            if self.locks.get(k) == Some(e.id) {
                self.locks.remove(k);
            }
        }
        self.unresolved.remove(&e.id);
        let mut u = self.owner_usage(&e.owner);
        u.unresolved = u.unresolved.saturating_sub(1);
        u.bytes = u.bytes.saturating_sub(intent_charge(&e.intent));
        if u == OwnerUsage::default() {
            self.owners.remove(&e.owner);
        } else {
            self.owners.insert(e.owner, u);
        }
        self.approvals.remove(&e.id);
    }

    /// A succeeded transfer claims its block: the same block can never prove two entries.
    fn claim(&mut self, e: &Entry) {
        if let (Status::Succeeded, Intent::Transfer(t), Some(b)) =
            (e.status, &e.intent, e.block_index())
        {
            self.claims.insert((t.ledger, b), e.id);
        }
    }

    pub fn key(&self, owner: Principal, kind: u8, key: &str) -> Option<KeyRecord> {
        self.keys.get(&(owner, kind, key.to_string()))
    }

    pub fn set_key(&mut self, owner: Principal, kind: u8, key: String, record: KeyRecord) {
        self.keys.insert((owner, kind, key), record);
    }

    pub fn owner_totals(&self, owner: &Principal) -> OwnerTotals {
        self.owner_totals.get(owner).unwrap_or_default()
    }

    /// The entry whose success block `block` of `ledger` is, if any.
    pub fn claimant(&self, ledger: Principal, block: u64) -> Option<EntryId> {
        self.claims.get(&(ledger, block))
    }

    pub fn bump(&mut self, key: u32, delta: i64) {
        let cur = self.counters.get(&key).unwrap_or(0);
        let next = if delta >= 0 {
            cur.saturating_add(delta as u64)
        } else {
            cur.saturating_sub(delta.unsigned_abs())
        };
        self.counters.insert(key, next);
    }

    pub fn counter(&self, key: u32) -> u64 {
        self.counters.get(&key).unwrap_or(0)
    }

    pub fn append_audit(
        &mut self,
        at: Timestamp,
        entry_id: EntryId,
        actor: Option<Principal>,
        event: AuditEvent,
    ) -> u64 {
        let seq = self.audit.len();
        let rec = AuditRecord {
            seq,
            at,
            entry_id,
            actor,
            event,
        };
        // Out of stable memory is the only failure: nothing sensible can continue. Trapping
        // rolls the whole message back (the status change this records included).
        self.audit
            .append(&Stored(rec))
            .expect("icjournal: audit log full");
        seq
    }

    pub fn audit_len(&self) -> u64 {
        self.audit.len()
    }

    pub fn audit_range(&self, start: u64, limit: u64) -> Vec<AuditRecord> {
        let end = start.saturating_add(limit).min(self.audit.len());
        (start..end)
            .filter_map(|i| self.audit.get(i).map(|s| s.0))
            .collect()
    }

    /// Up to `limit` due entry ids with `next_attempt_at <= now`, earliest first.
    pub fn due(&self, now: Timestamp, limit: usize) -> Vec<(Timestamp, EntryId)> {
        self.due
            .keys_range(..=(now, u64::MAX))
            .take(limit)
            .collect()
    }

    /// Earliest scheduled attempt, if any.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.due.first_key_value().map(|((at, _), _)| at)
    }

    pub fn oldest_unresolved(&self) -> Option<EntryId> {
        self.unresolved.first_key_value().map(|(id, _)| id)
    }

    /// Ids of `owner`'s entries with `status`, ascending, after `after`.
    pub fn ids_by_owner_status(
        &self,
        owner: Principal,
        status: Status,
        after: Option<EntryId>,
    ) -> impl Iterator<Item = EntryId> + '_ {
        let start = after.map_or(0, |a| a.saturating_add(1));
        let done = after == Some(u64::MAX);
        self.by_owner
            .keys_range((owner, status.tag(), start)..=(owner, status.tag(), u64::MAX))
            .filter(move |_| !done)
            .map(|(_, _, id)| id)
    }

    /// Ids with `status`, ascending, after `after`.
    pub fn ids_by_status(
        &self,
        status: Status,
        after: Option<EntryId>,
    ) -> impl Iterator<Item = EntryId> + '_ {
        let start = after.map_or(0, |a| a.saturating_add(1));
        let done = after == Some(u64::MAX);
        self.by_status
            .keys_range((status.tag(), start)..=(status.tag(), u64::MAX))
            .filter(move |_| !done)
            .map(|(_, id)| id)
    }

    /// All entries ascending by id after `after`.
    pub fn entries_after(&self, after: Option<EntryId>) -> impl Iterator<Item = Entry> + '_ {
        let start = after.map_or(0, |a| a.saturating_add(1));
        let done = after == Some(u64::MAX);
        self.entries
            .values_range(start..)
            .filter(move |_| !done)
            .map(|s| s.0)
    }

    pub fn approvals(&self, id: EntryId) -> Option<Approvals> {
        self.approvals.get(&id)
    }

    pub fn set_approvals(&mut self, id: EntryId, a: Option<Approvals>) {
        match a {
            Some(a) => {
                self.approvals.insert(id, a);
            }
            None => {
                self.approvals.remove(&id);
            }
        }
    }

    /// Remove a resolved entry with every index row that names it (retention): the entry, its
    /// `by_owner`, `by_status` and `due` rows, its status counter, its share of the owner's
    /// totals, and any approvals. `unresolved`, `owners` and `locks` hold no row for it (they
    /// were released when it became terminal). Its key records and block claim stay (see
    /// `retention`); its id is never reused. Removing an unresolved entry is a bug: trap.
    pub fn remove_resolved(&mut self, id: EntryId) -> Option<Entry> {
        let e = self.get(id)?;
        assert!(
            e.status.is_terminal(),
            "icjournal: retention removing unresolved entry {id}"
        );
        debug_assert!(!self.unresolved.contains_key(&id));
        self.entries.remove(&id);
        self.by_owner.remove(&(e.owner, e.status.tag(), id));
        self.by_status.remove(&(e.status.tag(), id));
        if let Some(at) = e.next_attempt_at {
            self.due.remove(&(at, id));
        }
        self.approvals.remove(&id);
        self.bump(counter::STATUS | e.status.tag() as u32, -1);
        let mut t = self.owner_totals(&e.owner);
        t.entries = t.entries.saturating_sub(1);
        t.bytes = t.bytes.saturating_sub(intent_charge(&e.intent));
        if t == OwnerTotals::default() {
            self.owner_totals.remove(&e.owner);
        } else {
            self.owner_totals.insert(e.owner, t);
        }
        Some(e)
    }

    pub fn insert_summary(&mut self, s: CompactedEntry) {
        self.summaries.insert(s.id, Stored(s));
    }

    pub fn summary(&self, id: EntryId) -> Option<CompactedEntry> {
        self.summaries.get(&id).map(|s| s.0)
    }

    /// Remove a summary and the block claim it still holds (only if the claim is its own).
    pub fn remove_summary(&mut self, id: EntryId) -> Option<CompactedEntry> {
        let s = self.summaries.remove(&id)?.0;
        if let (Some(ledger), Some(block)) = (s.ledger, s.block_index) {
            if self.claims.get(&(ledger, block)) == Some(id) {
                self.claims.remove(&(ledger, block));
            }
        }
        Some(s)
    }

    /// Summaries ascending by id after `after`.
    pub fn summaries_after(
        &self,
        after: Option<EntryId>,
    ) -> impl Iterator<Item = CompactedEntry> + '_ {
        let start = after.map_or(0, |a| a.saturating_add(1));
        let done = after == Some(u64::MAX);
        self.summaries
            .values_range(start..)
            .filter(move |_| !done)
            .map(|s| s.0)
    }

    pub fn summaries_len(&self) -> u64 {
        self.summaries.len()
    }

    /// Bytes held by each memory, by offset (see the layout table).
    pub fn memory_bytes(&self) -> Vec<u64> {
        self.sizes
            .iter()
            .map(|m| m.size().saturating_mul(65536))
            .collect()
    }

    pub fn stable_bytes(&self) -> u64 {
        self.sizes
            .iter()
            .map(|m| m.size().saturating_mul(65536))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_stable_structures::VectorMemory;

    #[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
    struct V1 {
        a: u64,
        tag: String,
    }

    #[derive(CandidType, Deserialize, Clone, Debug, PartialEq)]
    struct V2 {
        a: u64,
        tag: String,
        added: Option<u64>,
    }

    #[test]
    fn schema_values_evolve_by_candid_subtyping_and_are_smaller() {
        let v1 = V1 {
            a: 7,
            tag: "x".into(),
        };
        let bytes = encode_schema_value(&v1);
        assert_eq!(bytes[0], FORMAT_SCHEMA);
        assert!(bytes.len() < encode_value(&v1).len());
        // An old value decodes into the new type with the new optional field absent.
        let v2: V2 = decode_value(&bytes);
        assert_eq!(
            v2,
            V2 {
                a: 7,
                tag: "x".into(),
                added: None
            }
        );
        let full: V2 = decode_value(&encode_value(&v1));
        assert_eq!(full, v2);
    }

    #[test]
    fn schema_table_is_persisted_and_loaded_in_a_fresh_process() {
        let raw = VectorMemory::default();
        let mm = MemoryManager::init(raw.clone());
        let mut store = Store::open(Memories::from_manager(&mm, 3)).unwrap();
        let mut e = sample_entry();
        e.owner = Principal::from_slice(&[1, 2, 3]);
        store.write(None, &e);
        store.append_audit(1, 0, None, AuditEvent::Created { kind: Kind::Record });
        let bytes = raw.borrow().clone();
        // A new thread has empty thread-local schema caches, like a process after an upgrade.
        std::thread::spawn(move || {
            let raw = VectorMemory::new(std::cell::RefCell::new(bytes));
            let mm = MemoryManager::init(raw);
            let store = Store::open(Memories::from_manager(&mm, 3)).unwrap();
            assert_eq!(
                store.get(0).unwrap().owner,
                Principal::from_slice(&[1, 2, 3])
            );
            assert_eq!(store.audit_range(0, 10).len(), 1);
        })
        .join()
        .unwrap();
        // Re-opening does not append the same schemas again.
        let meta = mm.get(MemoryId::new(3));
        let mut count = [0u8; 4];
        meta.read(SCHEMA_TABLE, &mut count);
        let store2 = Store::open(Memories::from_manager(&mm, 3)).unwrap();
        let mut count2 = [0u8; 4];
        meta.read(SCHEMA_TABLE, &mut count2);
        assert_eq!(count, count2);
        assert_eq!(u32::from_le_bytes(count), 2);
        drop(store2);
    }

    #[test]
    fn open_refuses_data_without_a_header() {
        let raw = VectorMemory::default();
        let mm = MemoryManager::init(raw.clone());
        let mems = Memories::from_manager(&mm, 0);
        mems.entries.grow(1);
        mems.entries.write(0, b"BTR");
        assert!(matches!(Store::open(mems), Err(OpenError::BadMagic)));
    }
}
