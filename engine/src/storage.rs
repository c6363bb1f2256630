//! Stable storage of the journal (I5: everything lives here; nothing serialized in `pre_upgrade`).
//!
//! # Layout (version 7)
//!
//! The host reserves `RESERVED_MEMORY_IDS` (16) `MemoryId`s for the engine, `first .. first + 16`
//! (`Memories::from_manager`); this layout uses the first `MEMORY_COUNT` (16) of them, and later
//! layouts stay inside the reserved range, so a host never has to move its own memories.
//! Offsets relative to `first`:
//!
//! | off | name         | structure                                        | purpose                               |
//! |-----|--------------|--------------------------------------------------|---------------------------------------|
//! | 0   | meta         | raw: magic `b"ICJR"`, u32 LE version, u64 LE next id, schema table (layout 1), u64 LE first fixed owner row (layout 4), counters (layout 5: 4,096 × u64 LE); from the next 64 KiB boundary, the streams region (layout 6, `storage/segments.rs`: 1 MiB segments for up to 16 growable streams; stream 0 the claims table, `storage/claims.rs`; stream 1 the owner rows, `BTreeMap<(u64 owner key, u64 id), ()>`; streams 2 to 4 the entries' table, `storage/entries.rs`; streams 5 and 6 the owner chains, `storage/owners.rs`) | header; ids never reused; metrics counters; block claims; entries and owner rows (layout 7) |
//! | 1   | entries      | `BTreeMap<u64, Entry>` (raw value bytes, see Encoding) | by id (layouts 1 to 6; layout 7 keeps the entries made before it) |
//! | 2   | by_owner     | `BTreeMap<(Principal, u8 255, u64 id), ()>`      | owner's entries, one row each (layouts 4 and 5; layout 6 keeps the rows of entries made before it, new rows go to stream 1) |
//! | 3   | by_status    | `BTreeMap<(u8 status, u64 id), ()>`              | unresolved entries by status (layout 3) |
//! | 4   | due          | `BTreeMap<(u64 next_attempt_at, u64 id), ()>`    | recovery work queue                   |
//! | 5   | locks        | `BTreeMap<String, u64>`                          | lock key → unresolved entry (I3)      |
//! | 6   | unresolved   | `BTreeMap<u64 id, ()>`                           | oldest unresolved (first key)         |
//! | 7   | owners       | `BTreeMap<Principal, OwnerUsage>`                | per-owner quotas                      |
//! | 8   | (retired)    | layouts 1–4: `BTreeMap<u32, u64>` counters       | read once by the migration to layout 5 |
//! | 9   | audit_index  | `StableLog` index                                | append-only audit trail               |
//! | 10  | audit_data   | `StableLog` data                                 |                                       |
//! | 11  | approvals    | `BTreeMap<u64 id, Approvals>`                    | pending M-of-N approvals              |
//! | 12  | claims       | `BTreeMap<(Principal ledger, u64 block), u64 id>` | layouts 1–5: block → the transfer entry it proves; layout 6: the spill tree (older claims, full buckets) |
//! | 13  | keys         | `BTreeMap<(Principal, u8 kind, String key), KeyRecord>` | idempotency key / lock key → entry |
//! | 14  | owner_totals | `BTreeMap<Principal, OwnerTotals>`               | per-owner entries and bytes, all statuses |
//! | 15  | summaries    | `BTreeMap<u64 id, CompactedEntry>`               | compacted entries (`retention`)        |
//!
//! Offset 15 was reserved and unused in layout 1; layout 2 gives it to the summaries (a layout-1
//! journal has none: the memory is empty until retention first compacts an entry).
//! Layout 3 keeps only unresolved entries in `by_status` (layouts 1 and 2 kept every entry):
//! resolved ones are listed by scanning `entries` by id (`ids_after`).
//! Layout 4 writes an entry's `by_owner` row once, when the entry is created, with the status
//! byte 255 (`OWNER_ROW_ANY`): a status change touches no owner index. Layouts 1 to 3 keyed
//! the row by the entry's status and moved it on every change; a journal opened as layout 4
//! keeps those rows for the entries it already had (they still move), and the header field
//! after the schema table holds the first id with a fixed row (0 for a journal created as
//! layout 4). Listings by owner and status filter the owner's rows (resolved statuses) or the
//! status's rows (unresolved ones).
//! Layout 5 keeps the metrics counters in a fixed record in the meta memory, right after the
//! first-fixed-owner-row field (the schema table never moves, so neither does the record):
//! slot `(namespace - 1) * 256 + tag` of a counter key `namespace << 16 | tag` (namespaces 1
//! to 16, tags 0 to 255; `counter`), 32 KiB in all. A bump is one 8-byte write where the
//! B-tree of layouts 1 to 4 took a search and a node rewrite (~26 reads and several writes,
//! twice per status change).
//! Layout 6 cuts the meta memory's tail into a region of growable streams (`segments.rs`: all
//! 16 `MemoryId`s are taken, so new structures get a stream instead) and claims blocks in a
//! linear-hashing table in stream 0 (`claims.rs`, which documents it): one bucket read and
//! three small writes, where the B-tree took ~180 reads at 1M entries. The B-tree of memory 12
//! stays as the spill tree: the claims of a journal migrated from layouts 1 to 5 stay there
//! until the recovery tick has moved them (asked meanwhile: the table's legacy byte), and so
//! do the rare claims of a full bucket (marked in the bucket) and those of ledgers past the
//! 1,024th. New owner rows go to a B-tree in stream 1 keyed (owner key, id),
//! the owner key a 64-bit hash of the principal (`owner_key`): a fixed-size key compares with
//! one stable read where a principal took two, and takes 16 bytes. Owners whose principals
//! hash alike share a range; listings filter by owner. The rows of entries made before layout
//! 6 stay in `by_owner` (all older than the new ones, so a listing reads that tree's range
//! first, then stream 1's), and retention removes each where it is.
//! Layout 7 moves the entries out of the B-tree of memory 1 into a table in streams 2 to 4
//! (`entries.rs`, which documents it): a slot per id found through a directory (ids are
//! dense, so no search), and each entry in two parts in a heap of size-classed chunks: its
//! intent, written when the entry is made (and again only when it changes: a saga's
//! progress), and its state (the entry with an empty record for an intent, `STATE_INTENT`),
//! rewritten in place on a status change while its size class stays. A rewrite is a few
//! reads where the B-tree took ~160 at 1M entries. Entries made before a journal was opened
//! as layout 7 stay in the B-tree (ids below the table's `first`) and are read, rewritten and
//! removed there. The owner rows of the table's entries go to chains of blocks, one chain per
//! owner key (`owners.rs`): an owner's new entry has the largest id it ever had, so its row is
//! appended to the chain's last block (a header read and two small writes, plus a directory
//! lookup in a B-tree with a row per owner key) where stream 1's B-tree took ~120 to 150
//! reads. Stream 1 keeps the rows a layout-6 journal made (and is never allocated by a
//! journal that never was layout 6); listings read `by_owner`, then stream 1, then the chains,
//! each holding newer ids than the one before.
//! Retired offsets: 8 (the counters' B-tree, layouts 1 to 4; a migrated journal keeps its
//! pages, never written again; a journal created as layout 5 never allocates it). All 16
//! reserved ids are now in use or retired: a later layout that needs more growable memory
//! takes the next stream of the region (`segments.rs`; streams are never reused either),
//! never an id outside the range or 8.
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
//! Keys are fixed-width integers/principals. Values start with a format byte (never reuse one):
//! - format 3 (`Entry`, `AuditRecord`, layout 2): `[3] ++ minicbor(v)`, the `#[n(i)]` field
//!   and variant indices of `icjournal-types` (`Nat`/`Principal` through DFINITY's `icrc-cbor`
//!   helpers, as `icrc-ledger-types` derives its `Account`: `src/icrc1/account.rs`). Compact
//!   and cheap to decode: no type table, no field names.
//!   Evolution: new fields are `Option`s with new indices (absent in older values: `None`);
//!   an index is never renumbered or reused;
//! - format 2 (`Entry`, `AuditRecord`, written by layout 1 only; still decoded):
//!   `[2] ++ schema hash (u64 BE) ++ candid value bytes`, its Candid type table stored once in
//!   the append-only schema table of the meta memory (offset 16: `u32 count`, then per schema
//!   `u64 FNV-1a hash, u32 len, bytes`); decoding prepends the schema the value was written with;
//! - format 1 (`Approvals`; layout 1's rare values): `[1] ++ candid::encode_one(v)`,
//!   self-describing.
//!
//! # Migration from layouts 1 to 6
//!
//! Layout 6 differs from layout 7 only in where new entries and their owner rows go. Opening a
//! layout-6 (or older) journal writes the table's header with `first` = the next id (past
//! every id the B-tree holds), empty owner chains and the version: O(1). The older entries
//! and their rows stay where they are for good (a listing reads them first, then the newer
//! ones of the table and the chains), and retention removes them there.
//!
//! Layout 5 differs from layout 6 in where new block claims and new owner rows go. Opening a
//! layout-5 (or older) journal writes the streams region, an empty owner-rows tree (the older
//! rows stay in `by_owner`), an empty claims table (one bucket, its legacy byte set when the
//! B-tree holds claims) and the version: the B-tree's claims stay where they are, so opening
//! stays O(1), and lookups ask the tree while the legacy byte is set. The recovery tick then
//! moves them into the table, 500 a tick (`move_older_claims`), from a cursor in the region's
//! header; when the move has passed the last key the byte is cleared, and the claims that could
//! not move (a full bucket) stay in the tree with their bucket marked.
//!
//! Layout 4 differs from layout 5 only in where the counters live. Opening a layout-4 (or
//! older) journal copies every row of the counters' B-tree (memory 8; one row per counter
//! ever bumped, at most 4,096, a few dozen in practice) into the fixed record and never reads
//! the tree again: bounded work, done once in the `post_upgrade` that installs this build.
//!
//! Layout 3 differs from layout 4 only in its `by_owner` rows. Opening a layout-3 (or older)
//! journal writes the header field (the next id: every entry it has keeps its status-keyed
//! row) and the version, nothing else.
//!
//! Layout 2 differs from layout 3 only in the resolved entries' `by_status` rows. Opening a
//! layout-2 journal rewrites the version in the header (and writes layout 4's field) and
//! nothing else: those rows are
//! never read again (a listing of a resolved status scans `entries`), and retention removes
//! each with its entry (`remove_resolved`). `index_violations` accepts such a row only while
//! its entry is there with that status.
//!
//! Layout 1 differs from layout 2 only in the encoding of `Entry` and `AuditRecord` values
//! (format 2). Opening a layout-1 journal rewrites the version in the header (and writes layout
//! 4's field after its schema table) and nothing else: its format-2 values stay where they are and decode as before (the schema table is read at open, never
//! appended to any more), and each entry is rewritten in format 3 when it is next written
//! (lazy migration: no bulk work, so `post_upgrade` stays O(1)). Audit records are immutable;
//! the old ones stay in format 2, new ones are format 3. A build of layout 1, 2 or 3 refuses
//! a later layout's journal (`UnsupportedVersion`), and this build refuses any newer layout
//! the same way.
//!
//! Every index is maintained in one place (`Store::write`), from the old and new version of an
//! entry, so they cannot drift apart.

use crate::error::OpenError;
use crate::types::*;
use candid::{CandidType, Deserialize, Principal};
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::storable::Bound;
use ic_stable_structures::{Memory, StableBTreeMap, StableLog, Storable};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

mod claims;
mod entries;
mod owners;
mod segments;
use claims::ClaimTable;
use entries::EntryTable;
use owners::OwnerChains;
use segments::{
    Segments, Stream, CLAIMS_STREAM, ENTRY_DIR_STREAM, ENTRY_HEAP_STREAM, ENTRY_PAGES_STREAM,
    OWNER_BLOCKS_STREAM, OWNER_DIR_STREAM, OWNER_ROWS_STREAM,
};

pub const MAGIC: &[u8; 4] = b"ICJR";
/// Layout 6: new block claims in a linear-hashing table in the meta memory (`claims`); the
/// claims B-tree (memory 12) keeps the older ones and the rare spills.
/// Layout 5: the metrics counters in a fixed record of the meta memory (layouts 1 to 4: a
/// B-tree in memory 8, now retired).
/// Layout 4: an entry's `by_owner` row is written once, without its status (layouts 1 to 3
/// moved it on every status change); `by_status` holds unresolved entries only (layouts 1 and
/// 2 also held the resolved ones); values in format 3 (layout 1 wrote formats 1 and 2). See
/// the module docs.
pub const LAYOUT_VERSION: u32 = 7;
/// First byte of every stored value: its format. Never reuse a format byte.
/// Format 1: self-describing Candid (`Approvals`; `encode_value`).
const FORMAT_VERSION: u8 = 1;
/// Format 2: Candid with its type table in the schema table (layout 1's `Entry`,
/// `AuditRecord`; decoded only).
const FORMAT_SCHEMA: u8 = 2;
/// Format 3: minicbor (`Entry`, `AuditRecord`; `encode_cbor_value`).
const FORMAT_CBOR: u8 = 3;
/// Offset of the schema table in the meta memory (after magic, version, next id).
const SCHEMA_TABLE: u64 = 16;

/// `Store::write` refused a success: `block` already proves entry `by`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockClaimed {
    pub block: u64,
    pub by: EntryId,
}

/// Counter namespaces the fixed record has room for (`counter`: 8 in use).
const COUNTER_NAMESPACES: u32 = 16;
/// Tags per namespace (a tag is one byte).
const COUNTER_TAGS: u32 = 256;
/// Bytes of the fixed counter record (layout 5).
const COUNTER_RECORD_BYTES: u64 = (COUNTER_NAMESPACES * COUNTER_TAGS) as u64 * 8;

/// Where counter `key` lives in the meta memory, the record starting at `record`: slot
/// `(namespace - 1) * 256 + tag`. Keys are `counter` constants with a one-byte tag: any other
/// is a bug.
fn counter_offset(record: u64, key: u32) -> u64 {
    let (ns, tag) = (key >> 16, key & 0xffff);
    assert!(
        (1..=COUNTER_NAMESPACES).contains(&ns) && tag < COUNTER_TAGS,
        "icjournal: counter key {key:#x} out of range"
    );
    record + 8 * ((ns - 1) * COUNTER_TAGS + tag) as u64
}

/// An owner's key in the owner rows of layout 6: a 64-bit FNV-1a hash of the principal. A
/// fixed-size key compares with one read where a principal took two (its length, then its
/// bytes) and takes 16 bytes a row with the id. Two owners with the same hash share a range:
/// every listing filters by the entry's owner, so that costs scanning, never a wrong answer.
fn owner_key(owner: &Principal) -> u64 {
    #[cfg(test)]
    if legacy::OWNER_KEYS_COLLIDE.get() {
        return 0;
    }
    fnv1a(owner.as_slice())
}

/// The status byte of a fixed `by_owner` row (layout 4; no status tag is 255).
const OWNER_ROW_ANY: u8 = u8::MAX;

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

thread_local! {
    /// Candid headers (type table + arg type) by FNV-1a hash, loaded from the meta memory's
    /// schema table at open: the schemas of the format-2 values a layout-1 journal holds.
    static SCHEMAS: RefCell<BTreeMap<u64, Rc<Vec<u8>>>> = const { RefCell::new(BTreeMap::new()) };
}

/// FNV-1a: a cheap, stable 64-bit hash (schema ids, request fingerprints; not cryptographic).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn register_schema(hash: u64, header: Rc<Vec<u8>>) {
    SCHEMAS.with_borrow_mut(|s| {
        let prev = s.entry(hash).or_insert_with(|| header.clone());
        assert!(**prev == *header, "icjournal: schema hash collision");
    });
}

/// Format 3: `[3] ++ minicbor(v)` (the field indices of the `#[n(i)]` annotations in
/// `icjournal-types`). Writing our own well-formed values cannot fail; a failure is a bug.
pub(crate) fn encode_cbor_value<T: minicbor::Encode<()>>(v: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(FORMAT_CBOR);
    minicbor::encode(v, &mut out).expect("icjournal: cbor encode");
    out
}

/// Format 1: `[1] ++ candid::encode_one(v)` (self-describing; used for rare values).
fn encode_value<T: CandidType>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    out.extend(candid::encode_one(v).expect("icjournal: candid encode"));
    out
}

/// A value in format 1 (self-describing Candid).
fn decode_value<T: for<'de> Deserialize<'de> + CandidType>(bytes: &[u8]) -> T {
    // Stored bytes were written by us; undecodable bytes mean corrupt state: trap (a post_upgrade
    // trap keeps the old, working version installed).
    match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) => {
            candid::decode_one(rest).expect("icjournal: corrupt value")
        }
        Some((v, _)) => panic!("icjournal: unsupported value format {v}"),
        None => panic!("icjournal: empty value"),
    }
}

/// A value in any format an `Entry` or `AuditRecord` was ever written in: 3 (current), or 2
/// and 1 (Candid, layout 1; rewritten in format 3 when next written).
pub(crate) fn decode_stored<T>(bytes: &[u8]) -> T
where
    T: for<'de> Deserialize<'de> + CandidType + for<'b> minicbor::Decode<'b, ()>,
{
    match bytes.split_first() {
        Some((&FORMAT_CBOR, rest)) => minicbor::decode(rest).expect("icjournal: corrupt value"),
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
        _ => decode_value(bytes),
    }
}

/// An `Entry` or `AuditRecord` as this build writes it (format 3).
fn encode_stored<T: CandidType + minicbor::Encode<()> + 'static>(v: &T) -> Vec<u8> {
    #[cfg(test)]
    if legacy::layout() == 1 {
        return legacy::encode_schema_value(v);
    }
    encode_cbor_value(v)
}

/// What the state part of an entry in the table of layout 7 holds in place of its intent (the
/// intent is the other part): the smallest intent there is, 4 bytes of CBOR.
const STATE_INTENT: Intent = Intent::Record {
    label: String::new(),
    payload: Vec::new(),
};

/// A stored value kept as its bytes: decoded only when asked for. The entries map holds these
/// so that replacing an entry does not decode the value it replaces (`StableBTreeMap::insert`
/// returns the previous value through `from_bytes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded(pub Vec<u8>);

impl Storable for Encoded {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
    fn into_bytes(self) -> Vec<u8> {
        self.0
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        Encoded(bytes.into_owned())
    }
    const BOUND: Bound = Bound::Unbounded;
}

/// Decoded entries kept in the heap (see `Store::cache`).
const ENTRY_CACHE_CAP: usize = 32;

/// A shared type (defined in `icjournal-types`) as a stable-structures value: the orphan rule
/// keeps `Storable` impls for foreign types out of this crate, so they are wrapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored<T>(pub T);

macro_rules! stored_storable {
    ($t:ty) => {
        impl Storable for Stored<$t> {
            fn to_bytes(&self) -> Cow<'_, [u8]> {
                Cow::Owned(self.encode())
            }
            fn into_bytes(self) -> Vec<u8> {
                self.encode()
            }
            fn from_bytes(bytes: Cow<[u8]>) -> Self {
                Stored(decode_stored(&bytes))
            }
            const BOUND: Bound = Bound::Unbounded;
        }

        impl Stored<$t> {
            fn encode(&self) -> Vec<u8> {
                encode_stored(&self.0)
            }
        }
    };
}

stored_storable!(AuditRecord);

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
/// `u64 LE hash, u32 LE len, header bytes`. Written by layout 1 only (format-2 values); layout 2
/// reads it, so the format-2 values a migrated journal still holds decode, and never appends.
/// Registers the schema table's schemas; returns the offset just past the table.
fn load_schemas<M: Memory>(meta: &M) -> u64 {
    let read_u32 = |off: u64| {
        let mut b = [0u8; 4];
        meta.read(off, &mut b);
        u32::from_le_bytes(b)
    };
    let count = read_u32(SCHEMA_TABLE);
    let mut off = SCHEMA_TABLE + 4;
    for _ in 0..count {
        let mut h = [0u8; 8];
        meta.read(off, &mut h);
        let len = read_u32(off + 8) as usize;
        let mut header = vec![0u8; len];
        meta.read(off + 12, &mut header);
        let hash = u64::from_le_bytes(h);
        assert_eq!(fnv1a(&header), hash, "icjournal: corrupt schema table");
        register_schema(hash, Rc::new(header));
        off += 12 + len as u64;
    }
    off
}

fn read_u64<M: Memory>(meta: &M, off: u64) -> u64 {
    let mut b = [0u8; 8];
    meta.read(off, &mut b);
    u64::from_le_bytes(b)
}

fn write_u64<M: Memory>(meta: &M, off: u64, v: u64) {
    reserve(meta, off + 8);
    meta.write(off, &v.to_le_bytes());
}

/// The free lists of layout 7's fixed-size items (the entries' heap chunks of one class and
/// slot pages, the owner chains' blocks): a list's head is its first item + 1 (0: empty), and
/// a free item's first 8 bytes (little-endian) hold the next one + 1; `addr` gives an item's
/// offset in `mem`. The caller persists the head.
fn pop_free<M: Memory>(mem: &M, head: &mut u64, addr: impl Fn(u64) -> u64) -> Option<u64> {
    let item = head.checked_sub(1)?;
    *head = next_free(mem, addr(item));
    Some(item)
}

/// Puts `item` at the head of a free list (see `pop_free`).
fn push_free<M: Memory>(mem: &M, head: &mut u64, item: u64, addr: impl Fn(u64) -> u64) {
    mem.write(addr(item), &head.to_le_bytes());
    *head = item + 1;
}

/// What the free item at `at` holds: the next free item + 1 (see `pop_free`).
fn next_free<M: Memory>(mem: &M, at: u64) -> u64 {
    let mut next = [0u8; 8];
    mem.read(at, &mut next);
    u64::from_le_bytes(next)
}

/// Grows `meta` (or any memory) to hold `end` bytes; traps when stable memory is exhausted.
fn reserve<M: Memory>(meta: &M, end: u64) {
    let pages = end.div_ceil(65536);
    if meta.size() < pages {
        assert!(
            meta.grow(pages - meta.size()) >= 0,
            "icjournal: out of stable memory"
        );
    }
}

/// Zeroes `len` bytes of `meta` at `off`, growing it as needed. New pages are zero on the IC,
/// but a region is cleared explicitly rather than trusted to be fresh.
fn clear<M: Memory>(meta: &M, off: u64, len: u64) {
    reserve(meta, off + len);
    meta.write(off, &vec![0u8; len as usize]);
}

#[cfg(test)]
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

#[cfg(test)]
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
    /// Layouts 1 to 6: every entry. Layout 7: the entries made before the journal was
    /// migrated to it (ids below `EntryTable::first`).
    entries: StableBTreeMap<u64, Encoded, M>,
    /// Layout 7: the entries' table, its slots and its heap (`entries.rs`; `None` only for a
    /// build of an older layout: tests).
    entry_table: Option<EntryTable<Stream<M>>>,
    /// Write-through cache of decoded entries, at most `ENTRY_CACHE_CAP`: a message reads the
    /// same entry several times (the update, the callback, the status machine, the index
    /// maintenance) and decodes it once. It cannot go stale: every write of an entry goes
    /// through `Store::write`, which updates it; a trap rolls the heap back together with
    /// stable memory; an upgrade (or `open`) starts with it empty. Any new code path that
    /// writes or removes entries in stable memory must update it too.
    cache: RefCell<BTreeMap<EntryId, Entry>>,
    /// Write-through cache of the counters read so far (a bump is then one B-tree write, not a
    /// read and a write); consistent for the same reasons as `cache`. Bounded by the counter
    /// key space (`counter`: a namespace and a one-byte tag).
    counter_cache: RefCell<BTreeMap<u32, u64>>,
    /// `by_owner` rows of entries with this id or greater are fixed (`OWNER_ROW_ANY`); older
    /// ones, created before the journal was opened as layout 4, are keyed by status.
    owner_rows_fixed_from: EntryId,
    by_owner: StableBTreeMap<(Principal, u8, u64), (), M>,
    /// Layout 6: an owner's entries as (`owner_key(owner)`, id), in stream 1; `by_owner`
    /// keeps the rows of entries made before. Layout 7 keeps the rows a layout-6 journal made
    /// here (`None` for a journal that never was layout 6).
    owner_rows: Option<StableBTreeMap<(u64, u64), (), Stream<M>>>,
    /// Layout 7: the rows of the entries in the entries' table (ids from its `first`), in
    /// chains by owner key (`owners.rs`; `None` only for a build of an older layout: tests).
    owner_chains: Option<OwnerChains<Stream<M>>>,
    by_status: StableBTreeMap<(u8, u64), (), M>,
    due: StableBTreeMap<(u64, u64), (), M>,
    locks: StableBTreeMap<String, u64, M>,
    unresolved: StableBTreeMap<u64, (), M>,
    owners: StableBTreeMap<Principal, OwnerUsage, M>,
    /// Offset of the fixed counter record in `meta` (layout 5).
    counters_at: u64,
    /// A build of layout 1 to 4 (tests: `legacy::set_layout`) keeps its counters in the
    /// B-tree of memory 8.
    #[cfg(test)]
    legacy_counters: Option<StableBTreeMap<u32, u64, M>>,
    audit: StableLog<Stored<AuditRecord>, M, M>,
    approvals: StableBTreeMap<u64, Approvals, M>,
    /// Layouts 1 to 5: every claim. Layout 6: the spill tree (`claims.rs`).
    claims: StableBTreeMap<(Principal, u64), u64, M>,
    /// The claims table of layout 6 and the stream of the meta memory's tail it lives in
    /// (`None` only for a build of an older layout: tests).
    claim_table: Option<(Stream<M>, ClaimTable)>,
    keys: StableBTreeMap<(Principal, u8, String), KeyRecord, M>,
    owner_totals: StableBTreeMap<Principal, OwnerTotals, M>,
    summaries: StableBTreeMap<u64, Stored<CompactedEntry>, M>,
    sizes: Vec<M>,
    /// The streams region of layout 6 (`None` only for a build of an older layout: tests).
    region: Option<Segments<M>>,
}

impl<M: Memory + Clone> Store<M> {
    /// Create (empty memories) or load (existing layout). Never overwrites foreign data.
    pub fn open(mem: Memories<M>) -> Result<Self, OpenError> {
        let sizes: Vec<M> = mem.all().into_iter().cloned().collect();
        #[cfg(test)]
        let writes = legacy::layout();
        #[cfg(not(test))]
        let writes = LAYOUT_VERSION;
        let (next_id, found) = if mem.meta.size() == 0 {
            let non_empty = mem.all().iter().skip(1).any(|m| m.size() > 0);
            if non_empty {
                // Data without a header: not ours, or a half-written layout. Refuse.
                return Err(OpenError::BadMagic);
            }
            mem.meta.grow(1);
            let mut hdr = Vec::with_capacity(16);
            hdr.extend_from_slice(MAGIC);
            hdr.extend_from_slice(&writes.to_le_bytes());
            hdr.extend_from_slice(&0u64.to_le_bytes());
            mem.meta.write(0, &hdr);
            (0, None)
        } else {
            let mut hdr = [0u8; 16];
            mem.meta.read(0, &mut hdr);
            if &hdr[0..4] != MAGIC {
                return Err(OpenError::BadMagic);
            }
            let version = u32::from_le_bytes(hdr[4..8].try_into().expect("4 bytes"));
            if !(1..=LAYOUT_VERSION).contains(&version) {
                return Err(OpenError::UnsupportedVersion {
                    found: version,
                    supported: LAYOUT_VERSION,
                });
            }
            let next_id = u64::from_le_bytes(hdr[8..16].try_into().expect("8 bytes"));
            (next_id, Some(version))
        };
        let schema_end = load_schemas(&mem.meta);
        // A build of an older layout (tests) reopens its own journal as it is.
        let migrate = found.is_some_and(|v| v < LAYOUT_VERSION) && writes == LAYOUT_VERSION;
        // Where layout 4's one header field lives: after the schema table, which no build
        // since layout 1 appends to, so the offset never moves.
        let owner_rows_fixed_from = match found {
            None if writes < 4 => u64::MAX,
            None => {
                write_u64(&mem.meta, schema_end, 0);
                0
            }
            Some(v) if v >= 4 => read_u64(&mem.meta, schema_end),
            Some(_) if !migrate => u64::MAX,
            // Layouts 1 to 3 differ from layout 4 in three ways, each migrated lazily (no bulk
            // rewrite, so opening stays O(1)):
            // - layout 1's values are Candid (formats 1 and 2), which this build still decodes;
            //   each is rewritten in format 3 when next written;
            // - layouts 1 and 2 keep resolved entries in `by_status`: those rows are never read
            //   again (resolved entries are listed by scanning `entries`) and retention removes
            //   each with its entry;
            // - layouts 1 to 3 key `by_owner` by status: entries created before this open keep
            //   such rows (moved on a status change, as before); later ones get a fixed row.
            //   The first fixed id is the header field written here.
            Some(_) => {
                write_u64(&mem.meta, schema_end, next_id);
                next_id
            }
        };
        // Layout 5's counter record, after layout 4's field.
        let counters_at = schema_end + 8;
        // Only a journal older than layout 5 moves its counters: a later one has them here.
        let migrate_counters = migrate && found.is_some_and(|v| v < 5);
        if (found.is_none() && writes >= 5) || migrate_counters {
            clear(&mem.meta, counters_at, COUNTER_RECORD_BYTES);
        }
        if migrate_counters && mem.counters.size() > 0 {
            // Layouts 1 to 4 kept the counters in a B-tree: each of its rows (one per counter
            // ever bumped, at most 4,096) goes to its slot, and the tree is never read again.
            let old: StableBTreeMap<u32, u64, M> = StableBTreeMap::init(mem.counters.clone());
            for row in old.iter() {
                let (key, value) = (*row.key(), row.value());
                mem.meta
                    .write(counter_offset(counters_at, key), &value.to_le_bytes());
            }
        }
        // Layout 6's streams, in the meta memory from the first 64 KiB boundary after the
        // counter record (which never moves, so neither does the region); the claims table
        // is stream 0.
        let region_at = (counters_at + COUNTER_RECORD_BYTES).next_multiple_of(65_536);
        let region = match found {
            Some(v) if v >= 6 => {
                Some(Segments::load(&mem.meta, region_at).map_err(|_| OpenError::BadMagic)?)
            }
            Some(_) if migrate => Some(Segments::create(&mem.meta, region_at)),
            None if writes >= 6 => Some(Segments::create(&mem.meta, region_at)),
            _ => None,
        };
        let claims: StableBTreeMap<(Principal, u64), u64, M> = StableBTreeMap::init(mem.claims);
        let claim_table = match &region {
            Some(region) => {
                let stream = region.stream(CLAIMS_STREAM);
                let table = if found.is_some_and(|v| v >= 6) {
                    ClaimTable::load(&stream, 0).map_err(|_| OpenError::BadMagic)?
                } else {
                    // A journal of layouts 1 to 5 keeps its claims in the B-tree, which stays
                    // as the spill tree: new claims go to the table, lookups ask the tree
                    // while it holds older claims (until the recovery tick has moved them).
                    ClaimTable::create(&stream, 0, !claims.is_empty())
                };
                Some((stream, table))
            }
            None => None,
        };
        // Entries made before layout 6 keep their rows in `by_owner`; later ones get theirs
        // here.
        // (A journal that never was layout 6 has none: its stream stays unallocated.)
        let owner_rows = region
            .as_ref()
            .map(|r| r.stream(OWNER_ROWS_STREAM))
            .filter(|stream| writes < 7 || stream.size() > 0)
            .map(StableBTreeMap::init);
        let entries: StableBTreeMap<u64, Encoded, M> = StableBTreeMap::init(mem.entries);
        // Layout 7's entries: a journal of an older layout keeps its entries in the B-tree
        // (ids below the table's first), so opening it stays O(1).
        let entry_table = match &region {
            Some(region) if found.is_some_and(|v| v >= 7) || writes >= 7 => {
                let (dir, heap, pages) = (
                    region.stream(ENTRY_DIR_STREAM),
                    region.stream(ENTRY_HEAP_STREAM),
                    region.stream(ENTRY_PAGES_STREAM),
                );
                Some(match found {
                    Some(v) if v >= 7 => {
                        EntryTable::load(dir, heap, pages).map_err(|_| OpenError::BadMagic)?
                    }
                    // Past every id handed out and every id the B-tree holds.
                    Some(_) => {
                        let stored = entries.last_key_value().map_or(0, |(id, _)| id + 1);
                        EntryTable::create(dir, heap, pages, next_id.max(stored))
                    }
                    None => EntryTable::create(dir, heap, pages, 0),
                })
            }
            _ => None,
        };
        // Layout 7's owner rows, for the entries of the table.
        let owner_chains = match (&region, &entry_table) {
            (Some(region), Some(_)) => {
                let (blocks, dir) = (
                    region.stream(OWNER_BLOCKS_STREAM),
                    region.stream(OWNER_DIR_STREAM),
                );
                Some(if found.is_some_and(|v| v >= 7) {
                    OwnerChains::load(blocks, dir).map_err(|_| OpenError::BadMagic)?
                } else {
                    OwnerChains::create(blocks, dir)
                })
            }
            _ => None,
        };
        if migrate {
            // The version in the header changes last, so an older build refuses the journal
            // from now on instead of misreading it.
            mem.meta.write(4, &LAYOUT_VERSION.to_le_bytes());
        }
        #[cfg(test)]
        if writes == 1 {
            legacy::persist_current_schemas(&mem.meta);
        }
        Ok(Store {
            meta: mem.meta,
            next_id,
            owner_rows_fixed_from,
            entries,
            entry_table,
            owner_chains,
            cache: RefCell::new(BTreeMap::new()),
            counter_cache: RefCell::new(BTreeMap::new()),
            by_owner: StableBTreeMap::init(mem.by_owner),
            owner_rows,
            by_status: StableBTreeMap::init(mem.by_status),
            due: StableBTreeMap::init(mem.due),
            locks: StableBTreeMap::init(mem.locks),
            unresolved: StableBTreeMap::init(mem.unresolved),
            owners: StableBTreeMap::init(mem.owners),
            counters_at,
            #[cfg(test)]
            legacy_counters: (writes < 5).then(|| StableBTreeMap::init(mem.counters)),
            audit: StableLog::init(mem.audit_index, mem.audit_data),
            approvals: StableBTreeMap::init(mem.approvals),
            claims,
            claim_table,
            keys: StableBTreeMap::init(mem.keys),
            owner_totals: StableBTreeMap::init(mem.owner_totals),
            summaries: StableBTreeMap::init(mem.summaries),
            sizes,
            region,
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
        if let Some(e) = self.cache.borrow().get(&id) {
            return Some(e.clone());
        }
        let e = self.read_entry(id)?;
        self.remember(e.clone());
        Some(e)
    }

    /// The table of layout 7 when it holds `id`'s place (not the B-tree of an older layout).
    fn table_for(&self, id: EntryId) -> Option<&EntryTable<Stream<M>>> {
        self.entry_table.as_ref().filter(|t| id >= t.first())
    }

    fn table_for_mut(&mut self, id: EntryId) -> Option<&mut EntryTable<Stream<M>>> {
        self.entry_table.as_mut().filter(|t| id >= t.first())
    }

    /// The owner chains when they hold `id`'s row (layout 7: the entries of the table).
    fn chains_for(&mut self, id: EntryId) -> Option<&mut OwnerChains<Stream<M>>> {
        let first = self.entry_table.as_ref()?.first();
        self.owner_chains.as_mut().filter(|_| id >= first)
    }

    /// Entry `id` as stable memory holds it (not through the cache), wherever it lives.
    fn read_entry(&self, id: EntryId) -> Option<Entry> {
        match self.table_for(id) {
            Some(t) => {
                let (intent, state) = t.get(id)?;
                let mut e: Entry = decode_stored(&state);
                e.intent = decode_stored(&intent);
                Some(e)
            }
            None => self.entries.get(&id).map(|v| decode_stored(&v.0)),
        }
    }

    /// Writes `new` where it lives: in the table, its state and (when it changed) its intent;
    /// in the B-tree of an older layout, whole. `new` comes back as it went in (its intent is
    /// lent to `STATE_INTENT` while the state is encoded, so the entry is not copied again).
    fn write_entry(&mut self, old: Option<&Entry>, new: &mut Entry) {
        match self.table_for_mut(new.id) {
            Some(t) => {
                let intent = old
                    .is_none_or(|o| o.intent != new.intent)
                    .then(|| encode_cbor_value(&new.intent));
                let kept = std::mem::replace(&mut new.intent, STATE_INTENT);
                let state = encode_cbor_value(new);
                new.intent = kept;
                t.put(new.id, intent.as_deref(), &state);
            }
            None => {
                self.entries.insert(new.id, Encoded(encode_stored(new)));
            }
        }
    }

    fn remove_stored(&mut self, id: EntryId) {
        match self.table_for_mut(id) {
            Some(t) => {
                t.remove(id);
            }
            None => {
                self.entries.remove(&id);
            }
        }
    }

    fn remember(&self, e: Entry) {
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= ENTRY_CACHE_CAP && !cache.contains_key(&e.id) {
            cache.pop_first();
        }
        cache.insert(e.id, e);
    }

    pub fn len(&self) -> u64 {
        self.entries.len() + self.entry_table.as_ref().map_or(0, |t| t.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn lock_holder(&self, key: &str) -> Option<EntryId> {
        self.locks.get(&key.to_string())
    }

    pub fn owner_usage(&self, owner: &Principal) -> OwnerUsage {
        self.owners.get(owner).unwrap_or_default()
    }

    /// Insert a new entry or replace `old` by `new` (same id), maintaining every index.
    /// Refuses (and writes nothing) when `new` succeeds at a block that already proves another
    /// entry: one block never proves two.
    pub fn write(&mut self, old: Option<&Entry>, new: &Entry) -> Result<(), BlockClaimed> {
        // First, so that a refusal leaves everything as it was.
        if old.is_none_or(|o| o.status != Status::Succeeded) {
            self.claim(new)?;
        }
        if let Some(old) = old {
            debug_assert_eq!(old.id, new.id);
            if old.status != new.status {
                if old.id < self.owner_rows_fixed_from {
                    self.by_owner.remove(&(old.owner, old.status.tag(), old.id));
                    self.by_owner
                        .insert((new.owner, new.status.tag(), new.id), ());
                }
                // A status change leaves an unresolved status (none leaves a terminal one).
                self.by_status.remove(&(old.status.tag(), old.id));
                self.index_status(new);
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
        } else {
            if let Some(chains) = self.chains_for(new.id) {
                chains.append(owner_key(&new.owner), new.id);
            } else if let Some(rows) = &mut self.owner_rows {
                rows.insert((owner_key(&new.owner), new.id), ());
            } else {
                self.by_owner.insert(self.owner_row(new), ());
            }
            self.index_status(new);
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
        // One copy of the entry, written and then kept in the cache.
        let mut kept = new.clone();
        self.write_entry(old, &mut kept);
        self.remember(kept);
        Ok(())
    }

    /// Only unresolved work is indexed by status (layout 3): resolved entries are listed by an
    /// id-ordered scan of `entries` (`ids_after`), so a resolution is a removal, not a move.
    fn index_status(&mut self, e: &Entry) {
        #[cfg(test)]
        let legacy = legacy::layout() < 3;
        #[cfg(not(test))]
        let legacy = false;
        if e.status.is_unresolved() || legacy {
            self.by_status.insert((e.status.tag(), e.id), ());
        }
    }

    /// An entry's `by_owner` row: written once when the entry is created (layout 4), so a
    /// status change touches no owner index; rows of entries older than the layout keep their
    /// status (`owner_rows_fixed_from`).
    fn owner_row(&self, e: &Entry) -> (Principal, u8, u64) {
        if e.id < self.owner_rows_fixed_from {
            (e.owner, e.status.tag(), e.id)
        } else {
            (e.owner, OWNER_ROW_ANY, e.id)
        }
    }

    fn release(&mut self, e: &Entry) {
        // Removals return what they removed: one B-tree operation where a read and a write were,
        // with the rare case (the row is not what we expected) put back.
        if let Some(k) = &e.lock_key {
            if let Some(holder) = self.locks.remove(k) {
                if holder != e.id {
                    self.locks.insert(k.clone(), holder);
                }
            }
        }
        self.unresolved.remove(&e.id);
        let mut u = self.owners.remove(&e.owner).unwrap_or_default();
        u.unresolved = u.unresolved.saturating_sub(1);
        u.bytes = u.bytes.saturating_sub(intent_charge(&e.intent));
        if u != OwnerUsage::default() {
            self.owners.insert(e.owner, u);
        }
        // Approvals are rare: skip the search when there are none (the length is in the heap).
        if !self.approvals.is_empty() {
            self.approvals.remove(&e.id);
        }
    }

    /// A succeeded transfer claims its block: the same block can never prove two entries.
    /// One B-tree operation where a lookup and an insertion were: the insertion returns the
    /// row it replaced, and the rare refusal puts it back.
    fn claim(&mut self, e: &Entry) -> Result<(), BlockClaimed> {
        if let (Status::Succeeded, Intent::Transfer(t), Some(b)) =
            (e.status, &e.intent, e.block_index())
        {
            let by = match &mut self.claim_table {
                Some((mem, table)) => table.claim(&*mem, &mut self.claims, t.ledger, b, e.id),
                None => match self.claims.insert((t.ledger, b), e.id) {
                    Some(by) if by != e.id => {
                        self.claims.insert((t.ledger, b), by);
                        Some(by)
                    }
                    other => other,
                },
            };
            if let Some(by) = by.filter(|by| *by != e.id) {
                return Err(BlockClaimed { block: b, by });
            }
        }
        Ok(())
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
        match &self.claim_table {
            Some((mem, table)) => table.get(mem, &self.claims, ledger, block),
            None => self.claims.get(&(ledger, block)),
        }
    }

    /// Moves up to `max` block claims of a journal migrated from layouts 1 to 5 from the
    /// B-tree into the claims table (layout 6; `claims.rs`): bounded, resumable, and a no-op
    /// once they are all moved or for a journal created as layout 6. Returns the claims
    /// looked at.
    pub fn move_older_claims(&mut self, max: usize) -> usize {
        match &mut self.claim_table {
            Some((mem, table)) => table.move_older(&*mem, &mut self.claims, max),
            None => 0,
        }
    }

    /// Claims the B-tree holds: a migrated journal's older claims not moved yet, and spills.
    pub fn claims_in_tree(&self) -> u64 {
        self.claims.len()
    }

    /// Whether block claims of a journal migrated from layouts 1 to 5 are still to be moved.
    #[cfg(test)]
    pub fn older_claims_left(&self) -> bool {
        self.claim_table.as_ref().is_some_and(|(_, t)| t.legacy())
    }

    pub fn bump(&mut self, key: u32, delta: i64) {
        let cur = self.counter(key);
        let next = if delta >= 0 {
            cur.saturating_add(delta as u64)
        } else {
            cur.saturating_sub(delta.unsigned_abs())
        };
        self.store_counter(key, next);
        self.counter_cache.get_mut().insert(key, next);
    }

    /// A counter as stable memory holds it (the cache aside).
    fn stored_counter(&self, key: u32) -> u64 {
        #[cfg(test)]
        if let Some(old) = &self.legacy_counters {
            return old.get(&key).unwrap_or(0);
        }
        read_u64(&self.meta, counter_offset(self.counters_at, key))
    }

    fn store_counter(&mut self, key: u32, value: u64) {
        #[cfg(test)]
        if let Some(old) = &mut self.legacy_counters {
            old.insert(key, value);
            return;
        }
        self.meta
            .write(counter_offset(self.counters_at, key), &value.to_le_bytes());
    }

    pub fn counter(&self, key: u32) -> u64 {
        if let Some(v) = self.counter_cache.borrow().get(&key) {
            return *v;
        }
        let v = self.stored_counter(key);
        self.counter_cache.borrow_mut().insert(key, v);
        v
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

    /// Up to `max` ids of `owner`'s entries after `after`, ascending: all of them (`status`
    /// `None`), or those that may have `status` (the caller filters: an entry with a fixed row
    /// may have any status, and a row of layout 6 may name another owner's entry). Fixed rows
    /// come from one range; the rows a layout-3 journal left, keyed by status and all older
    /// than the fixed ones, from one range per status; the rows of layout 6, all newer, from
    /// one range of stream 1.
    pub fn ids_by_owner(
        &self,
        owner: Principal,
        status: Option<Status>,
        after: Option<EntryId>,
        max: usize,
    ) -> Vec<EntryId> {
        if after == Some(u64::MAX) {
            return vec![];
        }
        let start = after.map_or(0, |a| a + 1);
        let fixed = self.owner_rows_fixed_from;
        let mut ids = Vec::new();
        if start < fixed {
            let by_status = |tag: u8| {
                self.by_owner
                    .keys_range((owner, tag, start)..(owner, tag, fixed))
                    .map(|(_, _, id)| id)
                    .take(max)
            };
            match status {
                Some(s) => ids.extend(by_status(s.tag())),
                None => {
                    for s in Status::ALL {
                        ids.extend(by_status(s.tag()));
                    }
                    ids.sort_unstable();
                    ids.truncate(max);
                }
            }
        }
        if ids.len() < max && fixed < u64::MAX && !self.by_owner.is_empty() {
            ids.extend(
                self.by_owner
                    .keys_range(
                        (owner, OWNER_ROW_ANY, start.max(fixed))..=(owner, OWNER_ROW_ANY, u64::MAX),
                    )
                    .map(|(_, _, id)| id)
                    .take(max - ids.len()),
            );
        }
        // Rows of layout 6 (stream 1) name entries made after every row above: in id order
        // after them. An owner that shares its hash with another gets that owner's ids too
        // (filtered by the caller, as statuses are).
        if let Some(rows) = self.owner_rows.as_ref().filter(|_| ids.len() < max) {
            let key = owner_key(&owner);
            ids.extend(
                rows.keys_range((key, start)..=(key, u64::MAX))
                    .map(|(_, id)| id)
                    .take(max - ids.len()),
            );
        }
        // Rows of layout 7 (the owner chains) name the newest entries of all.
        if let Some(chains) = self.owner_chains.as_ref().filter(|_| ids.len() < max) {
            ids.extend(chains.ids(owner_key(&owner), start, max - ids.len()));
        }
        ids
    }

    /// Ids with the unresolved `status`, ascending, after `after`. Resolved entries are not in
    /// this index (layout 3; rows a layout-2 journal left are stale and never read): list them
    /// with `ids_after`.
    pub fn ids_by_status(
        &self,
        status: Status,
        after: Option<EntryId>,
    ) -> impl Iterator<Item = EntryId> + '_ {
        debug_assert!(
            status.is_unresolved(),
            "by_status holds unresolved entries only"
        );
        let start = after.map_or(0, |a| a.saturating_add(1));
        let done = after == Some(u64::MAX);
        self.by_status
            .keys_range((status.tag(), start)..=(status.tag(), u64::MAX))
            .filter(move |_| !done)
            .map(|(_, id)| id)
    }

    /// Ids of all entries, ascending, after `after` (keys only: no value is decoded).
    /// The B-tree's (layouts 1 to 6) first, then the table's (layout 7), which are all newer.
    pub fn ids_after(&self, after: Option<EntryId>) -> impl Iterator<Item = EntryId> + '_ {
        let start = after.map_or(0, |a| a.saturating_add(1));
        let done = after == Some(u64::MAX);
        let newer = self
            .entry_table
            .as_ref()
            .map(|t| t.ids(start).filter(move |_| !done));
        self.entries
            .keys_range(start..)
            .filter(move |_| !done)
            .chain(newer.into_iter().flatten())
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

    /// Every index recomputed from the entries as stable memory holds them (decoded afresh,
    /// not through the cache), compared with what the indexes and the caches hold: the
    /// differences, as text (tests).
    #[cfg(test)]
    pub(crate) fn index_violations(&self) -> Vec<String> {
        use std::collections::BTreeSet;
        let mut out = vec![];
        let entries: Vec<Entry> = self
            .ids_after(None)
            .map(|id| self.read_entry(id).expect("listed"))
            .collect();
        if let Some(t) = &self.entry_table {
            out.extend(t.violations());
            out.extend(self.owner_chains.iter().flat_map(|c| c.violations()));
            if let Some((id, _)) = self.entries.last_key_value() {
                if id >= t.first() {
                    out.push(format!(
                        "entry {id} in the B-tree past the table's first id"
                    ));
                }
            }
        }
        for (id, cached) in self.cache.borrow().iter() {
            if entries.iter().find(|e| e.id == *id) != Some(cached) {
                out.push(format!("cache: entry {id} differs from stable memory"));
            }
        }
        for (k, v) in self.counter_cache.borrow().iter() {
            if self.stored_counter(*k) != *v {
                out.push(format!("counter cache: {k:#x} differs from stable memory"));
            }
        }
        for (tag, id) in self.by_status.keys() {
            let resolved = Status::from_tag(tag).is_some_and(|s| s.is_terminal());
            if resolved && !entries.iter().any(|e| e.id == id && e.status.tag() == tag) {
                out.push(format!("by_status: stale resolved row {:?}", (tag, id)));
            }
        }
        let mut check = |name: &str, want: BTreeSet<String>, have: BTreeSet<String>| {
            for x in want.difference(&have) {
                out.push(format!("{name}: missing {x}"));
            }
            for x in have.difference(&want) {
                out.push(format!("{name}: extra {x}"));
            }
        };
        let set = |it: &mut dyn Iterator<Item = String>| it.collect::<BTreeSet<_>>();
        // Entries from the table's first id on have their rows in the owner chains.
        let first = self.entry_table.as_ref().map_or(u64::MAX, |t| t.first());
        check(
            "by_owner",
            set(&mut entries.iter().map(|e| {
                let key = (owner_key(&e.owner), e.id);
                match &self.owner_rows {
                    // An entry's row is in a chain for an entry of the table, else in stream
                    // 1, or in `by_owner` if it was made before.
                    _ if e.id >= first => format!("chain {key:?}"),
                    Some(rows) if rows.contains_key(&key) => format!("{key:?}"),
                    _ => format!("{:?}", self.owner_row(e)),
                }
            })),
            set(&mut self
                .by_owner
                .keys()
                .map(|k| format!("{k:?}"))
                .chain(
                    self.owner_rows
                        .iter()
                        .flat_map(|r| r.keys().map(|k| format!("{k:?}"))),
                )
                .chain(
                    self.owner_chains
                        .iter()
                        .flat_map(|c| c.rows().into_iter().map(|k| format!("chain {k:?}"))),
                )),
        );

        // Unresolved entries exactly; a resolved row only as a layout-2 journal left it (the
        // entry still there, with that status).
        check(
            "by_status",
            set(&mut entries
                .iter()
                .filter(|e| e.status.is_unresolved())
                .map(|e| format!("{:?}", (e.status.tag(), e.id)))),
            set(&mut self
                .by_status
                .keys()
                .filter(|(tag, _)| Status::from_tag(*tag).is_none_or(|s| s.is_unresolved()))
                .map(|k| format!("{k:?}"))),
        );

        check(
            "due",
            set(&mut entries
                .iter()
                .filter_map(|e| e.next_attempt_at.map(|at| format!("{:?}", (at, e.id))))),
            set(&mut self.due.keys().map(|k| format!("{k:?}"))),
        );
        let unresolved = || entries.iter().filter(|e| e.status.is_unresolved());
        check(
            "unresolved",
            set(&mut unresolved().map(|e| e.id.to_string())),
            set(&mut self.unresolved.keys().map(|k| k.to_string())),
        );
        check(
            "locks",
            set(&mut unresolved()
                .filter_map(|e| e.lock_key.as_ref().map(|k| format!("{k}={}", e.id)))),
            set(&mut self
                .locks
                .iter()
                .map(|r| format!("{}={}", r.key(), r.value()))),
        );
        let mut usage: BTreeMap<Principal, OwnerUsage> = BTreeMap::new();
        let mut totals: BTreeMap<Principal, OwnerTotals> = BTreeMap::new();
        let mut counters: BTreeMap<u32, u64> = BTreeMap::new();
        let mut claims = BTreeSet::new();
        for e in &entries {
            let t = totals.entry(e.owner).or_default();
            t.entries += 1;
            t.bytes += intent_charge(&e.intent);
            if e.status.is_unresolved() {
                let u = usage.entry(e.owner).or_default();
                u.unresolved += 1;
                u.bytes += intent_charge(&e.intent);
            }
            *counters
                .entry(counter::STATUS | e.status.tag() as u32)
                .or_default() += 1;
            *counters
                .entry(counter::KIND | e.kind.tag() as u32)
                .or_default() += 1;
            if let (Status::Succeeded, Intent::Transfer(t), Some(b)) =
                (e.status, &e.intent, e.block_index())
            {
                claims.insert(format!("{:?}", ((t.ledger, b), e.id)));
            }
        }
        check(
            "owners",
            set(&mut usage.iter().map(|r| format!("{r:?}"))),
            set(&mut self
                .owners
                .iter()
                .map(|r| format!("{:?}", (r.key(), r.value())))),
        );
        check(
            "owner_totals",
            set(&mut totals.iter().map(|r| format!("{r:?}"))),
            set(&mut self
                .owner_totals
                .iter()
                .map(|r| format!("{:?}", (r.key(), r.value())))),
        );
        // Compacted entries keep their claims while their summaries last, and their kind count.
        for sm in self.summaries.iter().map(|r| r.value().0) {
            *counters
                .entry(counter::KIND | sm.kind.tag() as u32)
                .or_default() += 1;
            if let (Status::Succeeded, Some(l), Some(b)) = (sm.status, sm.ledger, sm.block_index) {
                claims.insert(format!("{:?}", ((l, b), sm.id)));
            }
        }
        let pruned = self.counter(counter::SUMMARIES_PRUNED) > 0;
        check(
            "claims",
            claims,
            set(&mut self
                .claims
                .iter()
                .map(|r| (*r.key(), r.value()))
                .chain(
                    self.claim_table
                        .iter()
                        .flat_map(|(mem, t)| t.rows_iter(mem)),
                )
                .map(|r| format!("{r:?}"))),
        );
        if let Some((mem, table)) = &self.claim_table {
            out.extend(table.violations(mem, &self.claims));
            for (key, id) in table.rows_iter(mem) {
                if let Some(other) = self.claims.get(&key) {
                    out.push(format!(
                        "claims: {key:?} in the table ({id}) and the tree ({other})"
                    ));
                }
            }
        }
        let keys = Status::ALL.iter().map(|s| counter::STATUS | s.tag() as u32);
        // Pruned summaries take their kinds with them: the kind counters then count more.
        let kinds = Kind::ALL.iter().map(|k| counter::KIND | k.tag() as u32);
        for k in keys.chain(kinds.filter(|_| !pruned)) {
            let want = counters.get(&k).copied().unwrap_or(0);
            let have = self.counter(k);
            if have != want {
                out.push(format!("counter {k:#x}: {have}, entries say {want}"));
            }
        }
        out
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
        self.remove_stored(id);
        self.cache.get_mut().remove(&id);
        // The row is in a chain for an entry of the table (layout 7), else in stream 1 unless
        // the entry was made before layout 6.
        if let Some(chains) = self.chains_for(id) {
            assert!(
                chains.remove(owner_key(&e.owner), id),
                "icjournal: entry {id} had no owner row"
            );
        } else {
            let in_stream = self
                .owner_rows
                .as_mut()
                .is_some_and(|rows| rows.remove(&(owner_key(&e.owner), id)).is_some());
            if !in_stream {
                self.by_owner.remove(&self.owner_row(&e));
            }
        }
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
            match &mut self.claim_table {
                Some((mem, table)) => {
                    table.release(&*mem, &mut self.claims, ledger, block, id);
                }
                None if self.claims.get(&(ledger, block)) == Some(id) => {
                    self.claims.remove(&(ledger, block));
                }
                None => {}
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

    /// The ids of the entries in layout 7's table, ascending (tests).
    #[cfg(test)]
    pub fn table_entry_ids(&self) -> Vec<EntryId> {
        self.entry_table
            .iter()
            .flat_map(|t| t.ids(t.first()))
            .collect()
    }

    /// The owner rows keyed by owner key: layout 6's (stream 1), then layout 7's (the owner
    /// chains), each in key order (tests).
    #[cfg(test)]
    pub fn stream_owner_rows(&self) -> Vec<(u64, u64)> {
        self.owner_rows
            .iter()
            .flat_map(|rows| rows.keys())
            .chain(self.owner_chains.iter().flat_map(|c| c.rows()))
            .collect()
    }

    /// Bytes each memory holds, by layout offset; for the meta memory, the bytes in use (its
    /// streams' pages, not the rest of their last 1 MiB segments: `stable_bytes` counts those).
    pub fn memory_bytes(&self) -> Vec<u64> {
        let mut bytes: Vec<u64> = self
            .sizes
            .iter()
            .map(|m| m.size().saturating_mul(65536))
            .collect();
        if let Some(region) = &self.region {
            bytes[0] = region.in_use();
        }
        bytes
    }

    /// The stream of the meta memory's region that holds byte `off` of the meta memory, if any
    /// (benchmarks attribute reads with it).
    pub fn meta_stream_at(&self, off: u64) -> Option<u8> {
        self.region.as_ref()?.stream_at(off)
    }

    /// Bytes in use of each stream of the meta memory's region (`segments.rs`), by stream id.
    pub fn stream_bytes(&self) -> Vec<u64> {
        self.region
            .as_ref()
            .map_or_else(Vec::new, |r| r.stream_bytes())
    }

    pub fn stable_bytes(&self) -> u64 {
        self.sizes
            .iter()
            .map(|m| m.size().saturating_mul(65536))
            .sum()
    }
}

/// The layout-1 writer, kept for tests only: it writes a journal exactly as layout 1 did
/// (header version 1, `Entry`/`AuditRecord` in format 2 with their schemas in the schema table),
/// so tests can check that layout 2 opens, reads and migrates one.
#[cfg(test)]
pub(crate) mod legacy {
    use super::*;
    use std::any::TypeId;
    use std::cell::Cell;

    type CurrentSchema = (u64, Rc<Vec<u8>>);

    thread_local! {
        /// The layout the store writes (`None`: this build's).
        static LAYOUT: Cell<Option<u32>> = const { Cell::new(None) };
        /// Every owner gets the same owner key (layout 6's owner rows), as two owners whose
        /// principals hash alike would.
        pub static OWNER_KEYS_COLLIDE: Cell<bool> = const { Cell::new(false) };
        /// Current header per Rust type.
        static CURRENT: RefCell<BTreeMap<TypeId, CurrentSchema>> = const { RefCell::new(BTreeMap::new()) };
    }

    /// While `Some(v)`, `Store` writes layout `v` as the build of that layout did: new
    /// journals get a version-`v` header and an existing journal is not migrated on open.
    /// Layout 1 writes values in format 2 with their schemas in the schema table; layouts 1
    /// and 2 keep resolved entries in `by_status`; layouts 1 to 3 move an entry's `by_owner`
    /// row with its status; layouts 1 to 4 keep the counters in a B-tree (memory 8); layouts
    /// 1 to 5 keep every block claim in a B-tree (memory 12); layouts 1 to 6 keep every
    /// entry in a B-tree (memory 1).
    pub fn set_layout(v: Option<u32>) {
        LAYOUT.set(v);
    }

    /// The layout the store writes now.
    pub fn layout() -> u32 {
        LAYOUT.get().unwrap_or(LAYOUT_VERSION)
    }

    fn value_bytes<T: CandidType>(v: &T) -> Vec<u8> {
        let mut vs = candid::ser::ValueSerializer::new();
        v.idl_serialize(&mut vs).expect("icjournal: candid encode");
        vs.get_result().to_vec()
    }

    /// The Candid header of `T` (independent of the value), computed from any value of `T`.
    pub fn current_header<T: CandidType + 'static>(sample: &T) -> (u64, Rc<Vec<u8>>) {
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

    /// Format 2: `[2] ++ schema hash (u64 BE) ++ candid value`.
    pub fn encode_schema_value<T: CandidType + 'static>(v: &T) -> Vec<u8> {
        let (hash, _) = current_header(v);
        let val = value_bytes(v);
        let mut out = Vec::with_capacity(9 + val.len());
        out.push(FORMAT_SCHEMA);
        out.extend_from_slice(&hash.to_be_bytes());
        out.extend_from_slice(&val);
        out
    }

    /// Appends the current types' schemas to the schema table (layout 1 did at every open).
    pub fn persist_current_schemas<M: Memory>(meta: &M) {
        let read_u32 = |off: u64| {
            let mut b = [0u8; 4];
            meta.read(off, &mut b);
            u32::from_le_bytes(b)
        };
        let mut count = read_u32(SCHEMA_TABLE);
        let mut off = SCHEMA_TABLE + 4;
        let mut known = vec![];
        for _ in 0..count {
            let mut h = [0u8; 8];
            meta.read(off, &mut h);
            known.push(u64::from_le_bytes(h));
            off += 12 + read_u32(off + 8) as u64;
        }
        for (hash, header) in [
            current_header(&sample_entry()),
            current_header(&sample_audit()),
        ] {
            if known.contains(&hash) {
                continue;
            }
            let end = off + 12 + header.len() as u64;
            let pages = end.div_ceil(65536);
            if meta.size() < pages {
                assert!(meta.grow(pages - meta.size()) >= 0);
            }
            meta.write(off, &hash.to_le_bytes());
            meta.write(off + 8, &(header.len() as u32).to_le_bytes());
            meta.write(off + 12, &header);
            off = end;
            count += 1;
            meta.write(SCHEMA_TABLE, &count.to_le_bytes());
            known.push(hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_stable_structures::VectorMemory;

    #[derive(
        CandidType, Deserialize, Clone, Debug, PartialEq, minicbor::Encode, minicbor::Decode,
    )]
    struct V1 {
        #[n(0)]
        a: u64,
        #[n(1)]
        tag: String,
    }

    #[derive(
        CandidType, Deserialize, Clone, Debug, PartialEq, minicbor::Encode, minicbor::Decode,
    )]
    struct V2 {
        #[n(0)]
        a: u64,
        #[n(1)]
        tag: String,
        #[n(2)]
        added: Option<u64>,
    }

    #[test]
    fn should_decode_every_format_into_a_newer_type_with_added_options_absent() {
        let v1 = V1 {
            a: 7,
            tag: "x".into(),
        };
        let want = V2 {
            a: 7,
            tag: "x".into(),
            added: None,
        };
        let f1 = encode_value(&v1);
        let f2 = legacy::encode_schema_value(&v1);
        let f3 = encode_cbor_value(&v1);
        assert_eq!((f1[0], f2[0], f3[0]), (1, 2, 3));
        for bytes in [&f1, &f2, &f3] {
            let v2: V2 = decode_stored(bytes);
            assert_eq!(v2, want, "format {}", bytes[0]);
        }
        assert!(f3.len() < f2.len() && f2.len() < f1.len());
    }

    fn version(meta: &impl Memory) -> u32 {
        let mut v = [0u8; 4];
        meta.read(4, &mut v);
        u32::from_le_bytes(v)
    }

    fn schema_count(meta: &impl Memory) -> u32 {
        let mut c = [0u8; 4];
        meta.read(SCHEMA_TABLE, &mut c);
        u32::from_le_bytes(c)
    }

    #[test]
    fn should_read_a_layout_1_journal_in_a_fresh_process_and_migrate_its_header_only() {
        let raw = VectorMemory::default();
        let mm = MemoryManager::init(raw.clone());
        legacy::set_layout(Some(1));
        let mut store = Store::open(Memories::from_manager(&mm, 3)).unwrap();
        let mut e = sample_entry();
        e.owner = Principal::from_slice(&[1, 2, 3]);
        store.write(None, &e).unwrap();
        store.append_audit(1, 0, None, AuditEvent::Created { kind: Kind::Record });
        legacy::set_layout(None);
        drop(store);
        let meta = mm.get(MemoryId::new(3));
        assert_eq!((version(&meta), schema_count(&meta)), (1, 2));
        let bytes = raw.borrow().clone();
        // A new thread has empty thread-local schema caches, like a process after an upgrade.
        std::thread::spawn(move || {
            let raw = VectorMemory::new(std::cell::RefCell::new(bytes));
            let mm = MemoryManager::init(raw);
            let mut store = Store::open(Memories::from_manager(&mm, 3)).unwrap();
            let meta = mm.get(MemoryId::new(3));
            assert_eq!(version(&meta), LAYOUT_VERSION);
            // The schema table is read, never appended to any more.
            assert_eq!(schema_count(&meta), 2);
            let got = store.get(0).unwrap();
            assert_eq!(got, e);
            assert_eq!(store.audit_range(0, 10).len(), 1);
            // The same memory read as raw values: the entry is still in format 2 ...
            let stored: StableBTreeMap<u64, Vec<u8>, _> =
                StableBTreeMap::init(mm.get(MemoryId::new(4)));
            assert_eq!(stored.get(&0).unwrap()[0], FORMAT_SCHEMA);
            let mut next = got.clone();
            next.attempts = 1;
            store.write(Some(&got), &next).unwrap();
            // ... until it is next written.
            assert_eq!(stored.get(&0).unwrap()[0], FORMAT_CBOR);
            assert_eq!(store.get(0).unwrap(), next);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn should_refuse_a_journal_of_a_newer_layout_without_writing() {
        let raw = VectorMemory::default();
        let mm = MemoryManager::init(raw.clone());
        drop(Store::open(Memories::from_manager(&mm, 0)).unwrap());
        let meta = mm.get(MemoryId::new(0));
        meta.write(4, &(LAYOUT_VERSION + 1).to_le_bytes());
        let before = raw.borrow().clone();
        assert!(matches!(
            Store::open(Memories::from_manager(&mm, 0)),
            Err(OpenError::UnsupportedVersion { found, supported: LAYOUT_VERSION }) if found == LAYOUT_VERSION + 1
        ));
        assert!(*raw.borrow() == before);
    }

    #[test]
    fn should_read_through_the_bounded_cache_what_stable_memory_holds() {
        let raw = VectorMemory::default();
        let mm = MemoryManager::init(raw.clone());
        let mut store = Store::open(Memories::from_manager(&mm, 0)).unwrap();
        let n = 3 * ENTRY_CACHE_CAP as u64;
        for id in 0..n {
            let mut e = sample_entry();
            e.id = id;
            store.write(None, &e).unwrap();
        }
        // Rewrite each one, in an order that cycles every entry through the cache.
        for id in (0..n).rev().chain(0..n) {
            let old = store.get(id).unwrap();
            let mut new = old.clone();
            new.attempts += 1;
            new.status = if new.attempts == 2 {
                Status::Succeeded
            } else {
                Status::Unknown
            };
            store.write(Some(&old), &new).unwrap();
        }
        assert!(store.cache.borrow().len() <= ENTRY_CACHE_CAP);
        let fresh = Store::open(Memories::from_manager(&mm, 0)).unwrap();
        for id in 0..n {
            let e = store.get(id).unwrap();
            assert_eq!((e.attempts, e.status), (2, Status::Succeeded));
            assert_eq!(Some(e), fresh.get(id));
        }
        assert_eq!(fresh.ids_by_status(Status::Unknown, None).count(), 0);
        assert_eq!(fresh.ids_after(None).count() as u64, n);
        assert_eq!(fresh.index_violations(), Vec::<String>::new());
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
