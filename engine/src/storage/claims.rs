//! The block claims of layout 6: a linear-hashing table in stream 0 of the meta memory's tail
//! (`segments.rs`).
//!
//! A succeeded transfer claims `(ledger, block)` so that one block never proves two entries
//! (`Store::claim`). Layouts 1 to 5 kept the claims in a B-tree (memory 12) as large as the
//! journal: at 1M entries one claim cost ~180 stable reads there, because stable-structures'
//! nodes load their keys lazily, one read per key compared at every level. Here a claim is
//! one bucket read plus three small writes, at any size.
//!
//! # Stream 0 (offsets from its start; all integers little-endian)
//!
//! | off    | bytes       | what                                                        |
//! |--------|-------------|-------------------------------------------------------------|
//! | 0      | 4           | magic `b"ICJC"`                                             |
//! | 4      | 4           | u32 format of the region (1)                                |
//! | 8      | 8           | u64 buckets in use (`n`, at least 1)                        |
//! | 16     | 8           | u64 rows in the table                                       |
//! | 24     | 4           | u32 ledgers numbered                                        |
//! | 28     | 1           | 1: the spill tree holds claims of an older layout, else 0   |
//! | 32     | 39          | the older claims' move: u8 started, then the last key it      |
//! |        |             | passed (u8 length, 29 bytes of principal, u64 block)          |
//! | 128    | 1,024 × 32  | ledger `i`: u8 length, then the principal's bytes (≤ 29)     |
//! | 65,536 | n × 1,160   | bucket `i`: u8 rows, u8 spilled (1: one of its claims went to  |
//! |        |             | the tree), 6 reserved, then 64 rows of 18 bytes:             |
//! |        |             | u16 ledger number, u64 block, u64 entry id                   |
//!
//! A ledger gets its number (its position in the ledger table) at its first claim; numbers are
//! never reused, so a row's two bytes name its ledger for good.
//!
//! # Linear hashing
//!
//! With `n` buckets, `l = floor(log2 n)` and `p = n - 2^l` (the next bucket to split), a key
//! with hash `h` lives in bucket `h mod 2^l`, or `h mod 2^(l+1)` when that is below `p`. When
//! the table holds more than 24 rows per bucket on average, bucket `p` splits into `p` and `n`
//! (its rows move by one more bit of their hash): the table grows one bucket at a time, so no
//! message ever rehashes more than one bucket (64 rows) and the cost of a claim stays flat.
//! About 48 bytes a claim.
//!
//! # What the table does not hold: the spill tree
//!
//! The B-tree of layouts 1 to 5 (memory 12) stays, as the spill tree, and holds what the table
//! cannot: the claims a journal made before layout 6 until they are moved (a migrated journal
//! keeps them there at the upgrade, since moving up to millions of rows would not fit in
//! `post_upgrade`; the recovery tick then moves them in bounded batches, `move_older`, from a
//! cursor kept in the header), a claim whose bucket is full
//! (64 rows: about 3 claims in 100,000 with the hashes of honest ledgers; more if a ledger
//! chooses its block indices to collide, which costs speed, never correctness), and the
//! claims of ledgers past the 1,024th. A lookup the table cannot answer asks the spill tree
//! only when the answer may be there: the bucket is marked spilled (a mark its two halves
//! keep when it splits), the journal was migrated and the tree still holds older claims (the
//! header's legacy byte, cleared when the move has passed every key or the tree empties), or
//! the ledger has no number and the
//! tree is not empty (its length is in the heap). A journal created as layout 6 reads the
//! tree only for the few buckets that ever filled.

use super::reserve;
use candid::Principal;
use ic_stable_structures::{Memory, StableBTreeMap};
use std::collections::BTreeMap;

const MAGIC: &[u8; 4] = b"ICJC";
const FORMAT: u32 = 1;
const HEADER_BUCKETS: u64 = 8;
const HEADER_ROWS: u64 = 16;
const HEADER_LEDGERS: u64 = 24;
const HEADER_LEGACY: u64 = 28;
/// Where the move of the older claims stands: u8 0 (none yet) or 1, then the last key moved
/// or kept (u8 length, 29 bytes of principal, u64 block).
const HEADER_CURSOR: u64 = 32;
const LEDGER_TABLE: u64 = 128;
const LEDGER_BYTES: u64 = 32;
/// Ledgers the table numbers; the claims of any further ledger go to the spill tree.
pub const MAX_LEDGERS: usize = 1024;
const BUCKETS_AT: u64 = 65_536;
/// Rows a bucket holds.
pub const BUCKET_ROWS: usize = 64;
const ROW_BYTES: usize = 18;
const BUCKET_HEADER: usize = 8;
const BUCKET_BYTES: u64 = (BUCKET_HEADER + BUCKET_ROWS * ROW_BYTES) as u64;
/// Average rows per bucket above which the next bucket splits. A bucket not yet split in the
/// current round holds twice the share of one split already: up to 48 rows on average, so
/// that a full bucket (64) stays rare. Measured on random hashes (1M claims would show the
/// same ratios): 300,000 claims spilled 9 rows at 24 (48 bytes a claim), 443 at 28 (41 bytes);
/// with 32-row buckets, 14 at 10 (58 bytes) and 306 at 12.
const SPLIT_AT: u64 = 24;

/// The spill tree: the claims B-tree of layouts 1 to 5.
pub type SpillTree<M> = StableBTreeMap<(Principal, u64), u64, M>;

/// Why a region cannot be opened as a claims table.
#[derive(Debug, PartialEq, Eq)]
pub struct NotAClaimTable;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Row {
    ledger: u16,
    block: u64,
    id: u64,
}

/// The heap's view of the region header (every change is written through at once).
pub struct ClaimTable {
    base: u64,
    buckets: u64,
    rows: u64,
    /// The spill tree may hold claims of any bucket: those of a journal older than layout 6.
    legacy: bool,
    ledgers: Vec<Principal>,
    numbers: BTreeMap<Principal, u16>,
}

/// A bucket as read: its rows, and whether one of its claims ever went to the spill tree.
struct Bucket {
    spilled: bool,
    rows: Vec<Row>,
}

impl Bucket {
    fn find(&self, ledger: u16, block: u64) -> Option<usize> {
        self.rows
            .iter()
            .position(|r| r.ledger == ledger && r.block == block)
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A 64-bit mix (the finalizer of SplitMix64) of the ledger's number and the block: ledgers'
/// block indices are sequential, and every bit of the hash must depend on every bit of them.
fn hash(ledger: u16, block: u64) -> u64 {
    let mut z = block ^ (u64::from(ledger) << 48).rotate_left(7);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The bucket of hash `h` among `n` buckets (linear hashing).
fn bucket_of(h: u64, n: u64) -> u64 {
    let level = 63 - n.leading_zeros();
    let low = 1u64 << level;
    let split = n - low;
    let b = h & (low - 1);
    if b < split {
        h & ((low << 1) - 1)
    } else {
        b
    }
}

impl ClaimTable {
    /// Writes an empty table (one bucket, no ledger) at `base`. `legacy`: the spill tree holds
    /// the claims of an older layout.
    pub fn create<M: Memory>(mem: &M, base: u64, legacy: bool) -> Self {
        reserve(mem, base + BUCKETS_AT + BUCKET_BYTES);
        let mut header = vec![0u8; LEDGER_TABLE as usize];
        header[0..4].copy_from_slice(MAGIC);
        header[4..8].copy_from_slice(&FORMAT.to_le_bytes());
        header[8..16].copy_from_slice(&1u64.to_le_bytes());
        header[HEADER_LEGACY as usize] = legacy.into();
        mem.write(base, &header);
        mem.write(base + BUCKETS_AT, &[0u8; BUCKET_BYTES as usize]);
        ClaimTable {
            base,
            buckets: 1,
            rows: 0,
            legacy,
            ledgers: vec![],
            numbers: BTreeMap::new(),
        }
    }

    /// Reads the header and the ledger table (two reads).
    pub fn load<M: Memory>(mem: &M, base: u64) -> Result<Self, NotAClaimTable> {
        if mem.size() * 65_536 < base + BUCKETS_AT + BUCKET_BYTES {
            return Err(NotAClaimTable);
        }
        let mut header = [0u8; HEADER_CURSOR as usize];
        mem.read(base, &mut header);
        let format = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let buckets = u64_at(&header, 8);
        let count = u32::from_le_bytes(header[24..28].try_into().expect("4 bytes")) as usize;
        if &header[0..4] != MAGIC
            || format != FORMAT
            || buckets == 0
            || count > MAX_LEDGERS
            || header[28] > 1
        {
            return Err(NotAClaimTable);
        }
        let mut table = vec![0u8; count * LEDGER_BYTES as usize];
        mem.read(base + LEDGER_TABLE, &mut table);
        let mut ledgers = Vec::with_capacity(count);
        for slot in table.chunks(LEDGER_BYTES as usize) {
            let len = slot[0] as usize;
            if len > 29 {
                return Err(NotAClaimTable);
            }
            ledgers.push(Principal::from_slice(&slot[1..1 + len]));
        }
        let numbers = ledgers
            .iter()
            .enumerate()
            .map(|(i, l)| (*l, i as u16))
            .collect();
        Ok(ClaimTable {
            base,
            buckets,
            rows: u64_at(&header, 16),
            legacy: header[28] == 1,
            ledgers,
            numbers,
        })
    }

    /// Rows in the table (the spill tree aside).
    #[cfg(test)]
    pub fn rows(&self) -> u64 {
        self.rows
    }

    #[cfg(test)]
    pub fn buckets(&self) -> u64 {
        self.buckets
    }

    fn bucket_at(&self, b: u64) -> u64 {
        self.base + BUCKETS_AT + b * BUCKET_BYTES
    }

    /// The bucket of a numbered ledger's block, as read (one read).
    fn locate<M: Memory>(&self, mem: &M, ledger: u16, block: u64) -> (u64, Bucket) {
        let b = bucket_of(hash(ledger, block), self.buckets);
        (b, self.read_bucket(mem, b))
    }

    fn read_bucket<M: Memory>(&self, mem: &M, b: u64) -> Bucket {
        let mut bytes = [0u8; BUCKET_BYTES as usize];
        mem.read(self.bucket_at(b), &mut bytes);
        let count = (bytes[0] as usize).min(BUCKET_ROWS);
        let rows = (0..count)
            .map(|i| {
                let r = &bytes[BUCKET_HEADER + i * ROW_BYTES..][..ROW_BYTES];
                Row {
                    ledger: u16::from_le_bytes([r[0], r[1]]),
                    block: u64_at(r, 2),
                    id: u64_at(r, 10),
                }
            })
            .collect();
        Bucket {
            spilled: bytes[1] == 1,
            rows,
        }
    }

    fn row_bytes(r: &Row) -> [u8; ROW_BYTES] {
        let mut out = [0u8; ROW_BYTES];
        out[0..2].copy_from_slice(&r.ledger.to_le_bytes());
        out[2..10].copy_from_slice(&r.block.to_le_bytes());
        out[10..18].copy_from_slice(&r.id.to_le_bytes());
        out
    }

    fn write_row<M: Memory>(&self, mem: &M, b: u64, i: usize, r: &Row) {
        mem.write(
            self.bucket_at(b) + (BUCKET_HEADER + i * ROW_BYTES) as u64,
            &Self::row_bytes(r),
        );
    }

    fn write_bucket<M: Memory>(&self, mem: &M, b: u64, bucket: &Bucket) {
        let mut bytes = vec![0u8; BUCKET_BYTES as usize];
        bytes[0] = bucket.rows.len() as u8;
        bytes[1] = bucket.spilled.into();
        for (i, r) in bucket.rows.iter().enumerate() {
            bytes[BUCKET_HEADER + i * ROW_BYTES..][..ROW_BYTES]
                .copy_from_slice(&Self::row_bytes(r));
        }
        mem.write(self.bucket_at(b), &bytes);
    }

    fn set_rows<M: Memory>(&mut self, mem: &M, rows: u64) {
        self.rows = rows;
        mem.write(self.base + HEADER_ROWS, &rows.to_le_bytes());
    }

    /// The ledger's number, numbering it if the table has room.
    fn number<M: Memory>(&mut self, mem: &M, ledger: Principal) -> Option<u16> {
        if let Some(n) = self.numbers.get(&ledger) {
            return Some(*n);
        }
        if self.ledgers.len() >= MAX_LEDGERS {
            return None;
        }
        let n = self.ledgers.len() as u16;
        let bytes = ledger.as_slice();
        let mut slot = [0u8; LEDGER_BYTES as usize];
        slot[0] = bytes.len() as u8;
        slot[1..1 + bytes.len()].copy_from_slice(bytes);
        mem.write(
            self.base + LEDGER_TABLE + u64::from(n) * LEDGER_BYTES,
            &slot,
        );
        self.ledgers.push(ledger);
        self.numbers.insert(ledger, n);
        mem.write(
            self.base + HEADER_LEDGERS,
            &(self.ledgers.len() as u32).to_le_bytes(),
        );
        Some(n)
    }

    /// Whether the spill tree may hold a claim that `bucket` would otherwise hold.
    fn ask_tree<M: Memory>(&self, spill: &SpillTree<M>, bucket: Option<&Bucket>) -> bool {
        match bucket {
            Some(b) => b.spilled || self.legacy,
            // An unnumbered ledger has no row in the table: only the tree can know it.
            None => !spill.is_empty(),
        }
    }

    /// Where block `block` of `ledger` stands: `Err(claimant)` when it is claimed, in the
    /// table or the tree; else the bucket it belongs to, as read, if its ledger has a number.
    fn lookup<S: Memory, M: Memory>(
        &self,
        mem: &S,
        spill: &SpillTree<M>,
        ledger: Principal,
        block: u64,
    ) -> Result<Option<(u64, Bucket)>, u64> {
        let mut located = None;
        if let Some(&n) = self.numbers.get(&ledger) {
            let (b, bucket) = self.locate(mem, n, block);
            if let Some(i) = bucket.find(n, block) {
                return Err(bucket.rows[i].id);
            }
            located = Some((b, bucket));
        }
        if self.ask_tree(spill, located.as_ref().map(|(_, b)| b)) {
            if let Some(by) = spill.get(&(ledger, block)) {
                return Err(by);
            }
        }
        Ok(located)
    }

    /// The entry that block `block` of `ledger` proves, if any.
    pub fn get<S: Memory, M: Memory>(
        &self,
        mem: &S,
        spill: &SpillTree<M>,
        ledger: Principal,
        block: u64,
    ) -> Option<u64> {
        self.lookup(mem, spill, ledger, block).err()
    }

    /// Claims block `block` of `ledger` for entry `id` unless it is claimed already: then
    /// nothing is written and the claimant (possibly `id` itself) is returned.
    pub fn claim<S: Memory, M: Memory>(
        &mut self,
        mem: &S,
        spill: &mut SpillTree<M>,
        ledger: Principal,
        block: u64,
        id: u64,
    ) -> Option<u64> {
        // Nothing is written before the block is known to be free: a refused claim leaves
        // the memory as it was (not even a new ledger number).
        let located = match self.lookup(mem, spill, ledger, block) {
            Err(by) => return Some(by),
            Ok(located) => located,
        };
        let Some(n) = self.number(mem, ledger) else {
            spill.insert((ledger, block), id);
            return None;
        };
        // A ledger numbered just now shares its bucket with other ledgers' rows.
        let (b, bucket) = located.unwrap_or_else(|| self.locate(mem, n, block));
        if !self.place(
            mem,
            b,
            &bucket,
            Row {
                ledger: n,
                block,
                id,
            },
        ) {
            spill.insert((ledger, block), id);
        }
        None
    }

    /// Adds `row` to bucket `b` (as read: `bucket`) and splits the next bucket if the table
    /// is now over its average. A full bucket takes nothing and is marked instead (its claims
    /// go to the tree): returns whether the row was placed.
    fn place<M: Memory>(&mut self, mem: &M, b: u64, bucket: &Bucket, row: Row) -> bool {
        let count = bucket.rows.len();
        if count >= BUCKET_ROWS {
            if !bucket.spilled {
                mem.write(self.bucket_at(b) + 1, &[1]);
            }
            return false;
        }
        self.write_row(mem, b, count, &row);
        mem.write(self.bucket_at(b), &[count as u8 + 1]);
        self.set_rows(mem, self.rows + 1);
        if self.rows > SPLIT_AT * self.buckets {
            self.split(mem);
        }
        true
    }

    /// Splits the next bucket in line into itself and a new last bucket; both keep its
    /// spilled mark (its claims in the tree may belong to either).
    fn split<M: Memory>(&mut self, mem: &M) {
        let n = self.buckets;
        let level = 63 - n.leading_zeros();
        let from = n - (1u64 << level);
        reserve(mem, self.bucket_at(n + 1));
        let old = self.read_bucket(mem, from);
        let (stay, moved): (Vec<Row>, Vec<Row>) = old
            .rows
            .into_iter()
            .partition(|r| bucket_of(hash(r.ledger, r.block), n + 1) == from);
        let spilled = old.spilled;
        self.write_bucket(
            mem,
            from,
            &Bucket {
                spilled,
                rows: stay,
            },
        );
        self.write_bucket(
            mem,
            n,
            &Bucket {
                spilled,
                rows: moved,
            },
        );
        self.buckets = n + 1;
        mem.write(self.base + HEADER_BUCKETS, &self.buckets.to_le_bytes());
    }

    /// Removes the claim of block `block` of `ledger` if entry `id` holds it; returns whether
    /// it did.
    pub fn release<S: Memory, M: Memory>(
        &mut self,
        mem: &S,
        spill: &mut SpillTree<M>,
        ledger: Principal,
        block: u64,
        id: u64,
    ) -> bool {
        let mut located = None;
        if let Some(&n) = self.numbers.get(&ledger) {
            let (b, mut bucket) = self.locate(mem, n, block);
            if let Some(i) = bucket.find(n, block) {
                if bucket.rows[i].id != id {
                    return false;
                }
                let last = bucket.rows.len() - 1;
                bucket.rows.swap(i, last);
                if i != last {
                    self.write_row(mem, b, i, &bucket.rows[i]);
                }
                mem.write(self.bucket_at(b), &[last as u8]);
                self.set_rows(mem, self.rows - 1);
                return true;
            }
            located = Some(bucket);
        }
        if !self.ask_tree(spill, located.as_ref()) || spill.get(&(ledger, block)) != Some(id) {
            return false;
        }
        spill.remove(&(ledger, block));
        if self.legacy && spill.is_empty() {
            // The older layout's claims are all gone: lookups stop asking the tree.
            self.legacy = false;
            mem.write(self.base + HEADER_LEGACY, &[0]);
        }
        true
    }

    /// Whether the spill tree still holds claims of the layout this journal was migrated from.
    #[cfg(test)]
    pub fn legacy(&self) -> bool {
        self.legacy
    }

    /// Moves up to `max` claims of the older layout from the spill tree into the table, in key
    /// order from where the last call stopped (the header's cursor: resumable across messages
    /// and upgrades). A claim whose bucket is full, or whose ledger gets no number, stays in
    /// the tree (its bucket marked). When the tree has no further key, the legacy byte is
    /// cleared: lookups then ask the tree only for marked buckets. Returns the claims looked at.
    pub fn move_older<S: Memory, M: Memory>(
        &mut self,
        mem: &S,
        spill: &mut SpillTree<M>,
        max: usize,
    ) -> usize {
        if !self.legacy || max == 0 {
            return 0;
        }
        let mut cursor = [0u8; 39];
        mem.read(self.base + HEADER_CURSOR, &mut cursor);
        let from = (cursor[0] == 1).then(|| {
            let len = (cursor[1] as usize).min(29);
            (
                Principal::from_slice(&cursor[2..2 + len]),
                u64_at(&cursor, 31),
            )
        });
        let rows: Vec<((Principal, u64), u64)> = match from {
            Some(k) => spill
                .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                .take(max)
                .map(|r| (*r.key(), r.value()))
                .collect(),
            None => spill
                .iter()
                .take(max)
                .map(|r| (*r.key(), r.value()))
                .collect(),
        };
        for &((ledger, block), id) in &rows {
            let Some(n) = self.number(mem, ledger) else {
                continue;
            };
            let (b, bucket) = self.locate(mem, n, block);
            if bucket.find(n, block).is_some() {
                // The table cannot hold a block the tree holds (a claim asks the tree first):
                // leave both for the checks to report.
                continue;
            }
            if self.place(
                mem,
                b,
                &bucket,
                Row {
                    ledger: n,
                    block,
                    id,
                },
            ) {
                spill.remove(&(ledger, block));
            }
        }
        if rows.len() < max {
            self.legacy = false;
            mem.write(self.base + HEADER_LEGACY, &[0]);
        } else if let Some(&((ledger, block), _)) = rows.last() {
            let bytes = ledger.as_slice();
            let mut cursor = [0u8; 39];
            cursor[0] = 1;
            cursor[1] = bytes.len() as u8;
            cursor[2..2 + bytes.len()].copy_from_slice(bytes);
            cursor[31..39].copy_from_slice(&block.to_le_bytes());
            mem.write(self.base + HEADER_CURSOR, &cursor);
        }
        rows.len()
    }

    /// Every row of the table: `((ledger, block), id)` (checks and tests; reads every bucket).
    #[cfg(test)]
    pub fn rows_iter<'a, M: Memory>(
        &'a self,
        mem: &'a M,
    ) -> impl Iterator<Item = ((Principal, u64), u64)> + 'a {
        (0..self.buckets).flat_map(move |b| {
            self.read_bucket(mem, b)
                .rows
                .into_iter()
                .map(|r| ((self.ledgers[r.ledger as usize], r.block), r.id))
        })
    }

    /// What is wrong with the table: rows in a bucket other than their hash's, a header that
    /// miscounts, spilled claims of a bucket not marked (checks).
    #[cfg(test)]
    pub fn violations<S: Memory, M: Memory>(&self, mem: &S, spill: &SpillTree<M>) -> Vec<String> {
        let mut out = vec![];
        let mut total = 0;
        for b in 0..self.buckets {
            let bucket = self.read_bucket(mem, b);
            total += bucket.rows.len() as u64;
            for r in bucket.rows {
                if r.ledger as usize >= self.ledgers.len() {
                    out.push(format!(
                        "claims table: bucket {b} names ledger {}",
                        r.ledger
                    ));
                } else if bucket_of(hash(r.ledger, r.block), self.buckets) != b {
                    out.push(format!("claims table: block {} in bucket {b}", r.block));
                }
            }
        }
        if total != self.rows {
            out.push(format!(
                "claims table: header says {} rows, buckets hold {total}",
                self.rows
            ));
        }
        if !self.legacy {
            for row in spill.iter() {
                let (ledger, block) = *row.key();
                let Some(&n) = self.numbers.get(&ledger) else {
                    continue;
                };
                let (b, bucket) = self.locate(mem, n, block);
                if !bucket.spilled {
                    out.push(format!(
                        "claims tree: block {block} of bucket {b}, not marked"
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
    use ic_stable_structures::VectorMemory;

    type Mem = VirtualMemory<VectorMemory>;

    /// A region that does not start at 0 (as in the meta memory) and an empty spill tree.
    fn fresh() -> (Mem, SpillTree<Mem>, ClaimTable) {
        let mm = MemoryManager::init(VectorMemory::default());
        let (meta, tree) = (mm.get(MemoryId::new(0)), mm.get(MemoryId::new(1)));
        let table = ClaimTable::create(&meta, 3 * 65_536, false);
        (meta, StableBTreeMap::init(tree), table)
    }

    fn ledger(i: u32) -> Principal {
        let mut b = vec![7u8; 10];
        b[..4].copy_from_slice(&i.to_be_bytes());
        Principal::from_slice(&b)
    }

    fn snapshot(m: &Mem) -> Vec<u8> {
        let mut b = vec![0u8; (m.size() * 65_536) as usize];
        m.read(0, &mut b);
        b
    }

    /// Every claim the table and the tree hold, as a map.
    fn all(meta: &Mem, spill: &SpillTree<Mem>, t: &ClaimTable) -> BTreeMap<(Principal, u64), u64> {
        let mut out: BTreeMap<_, _> = t.rows_iter(meta).collect();
        for r in spill.iter() {
            assert!(
                out.insert(*r.key(), r.value()).is_none(),
                "{:?} twice",
                r.key()
            );
        }
        out
    }

    /// Blocks of ledger number 0 whose hashes agree on their low 12 bits: one bucket while
    /// the table has at most 4,096 buckets, as a ledger choosing its block indices could make.
    fn colliding(count: usize) -> Vec<u64> {
        let want = hash(0, 0) & 0xfff;
        (0u64..)
            .filter(|b| hash(0, *b) & 0xfff == want)
            .take(count)
            .collect()
    }

    #[test]
    fn should_agree_with_a_map_under_random_claims_releases_and_reloads() {
        let (meta, mut spill, mut t) = fresh();
        let mut model: BTreeMap<(Principal, u64), u64> = BTreeMap::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for step in 0..20_000u64 {
            let (l, block, id) = (ledger(next(4) as u32), next(3_000), next(5));
            match next(10) {
                0..=6 => {
                    let want = model.get(&(l, block)).copied();
                    assert_eq!(
                        t.claim(&meta, &mut spill, l, block, id),
                        want,
                        "claim {step}"
                    );
                    model.entry((l, block)).or_insert(id);
                }
                7 | 8 => {
                    let holds = model.get(&(l, block)) == Some(&id);
                    assert_eq!(
                        t.release(&meta, &mut spill, l, block, id),
                        holds,
                        "release {step}"
                    );
                    if holds {
                        model.remove(&(l, block));
                    }
                }
                _ => t = ClaimTable::load(&meta, 3 * 65_536).expect("reload"),
            }
            assert_eq!(
                t.get(&meta, &spill, l, block),
                model.get(&(l, block)).copied()
            );
        }
        assert_eq!(all(&meta, &spill, &t), model);
        assert_eq!(t.violations(&meta, &spill), Vec::<String>::new());
        assert!(t.buckets() > 100, "the table grew: {} buckets", t.buckets());
    }

    #[test]
    fn should_spill_a_full_bucket_to_the_tree_and_still_refuse_its_blocks() {
        let (meta, mut spill, mut t) = fresh();
        let l = ledger(0);
        let blocks = colliding(100);
        for (i, b) in blocks.iter().enumerate() {
            assert_eq!(t.claim(&meta, &mut spill, l, *b, i as u64), None);
        }
        assert_eq!(t.rows(), BUCKET_ROWS as u64);
        assert_eq!(spill.len(), 100 - BUCKET_ROWS as u64);
        for (i, b) in blocks.iter().enumerate() {
            assert_eq!(t.get(&meta, &spill, l, *b), Some(i as u64));
            let before = snapshot(&meta);
            assert_eq!(t.claim(&meta, &mut spill, l, *b, 1_000), Some(i as u64));
            assert_eq!(snapshot(&meta), before, "a refused claim writes nothing");
        }
        // Freeing a row of the full bucket does not let a spilled block be claimed twice.
        assert!(t.release(&meta, &mut spill, l, blocks[0], 0));
        assert_eq!(t.claim(&meta, &mut spill, l, blocks[99], 1_000), Some(99));
        assert!(t.release(&meta, &mut spill, l, blocks[99], 99));
        assert_eq!(t.get(&meta, &spill, l, blocks[99]), None);
        assert_eq!(t.violations(&meta, &spill), Vec::<String>::new());
    }

    #[test]
    fn should_keep_the_claims_of_ledgers_past_the_table_in_the_tree() {
        let (meta, mut spill, mut t) = fresh();
        let count = MAX_LEDGERS as u32 + 5;
        for i in 0..count {
            assert_eq!(t.claim(&meta, &mut spill, ledger(i), 1, u64::from(i)), None);
        }
        for i in MAX_LEDGERS as u32..count {
            assert_eq!(spill.get(&(ledger(i), 1)), Some(u64::from(i)));
        }
        let t = ClaimTable::load(&meta, 3 * 65_536).expect("reload");
        for i in 0..count {
            assert_eq!(t.get(&meta, &spill, ledger(i), 1), Some(u64::from(i)));
            assert_eq!(t.get(&meta, &spill, ledger(i), 2), None);
        }
    }

    #[test]
    fn should_number_no_ledger_for_a_claim_it_refuses() {
        // A migrated journal: the tree holds a claim of a ledger the table has not numbered.
        let (meta, mut spill, mut t) = fresh();
        spill.insert((ledger(9), 5), 1);
        let before = snapshot(&meta);
        assert_eq!(t.claim(&meta, &mut spill, ledger(9), 5, 2), Some(1));
        assert_eq!(snapshot(&meta), before);
        assert_eq!(t.claim(&meta, &mut spill, ledger(9), 6, 2), None);
        assert_eq!(t.get(&meta, &spill, ledger(9), 6), Some(2));
    }

    #[test]
    fn should_ask_the_tree_for_a_migrated_journals_claims_until_it_empties() {
        let (meta, mut spill, _) = fresh();
        let mut t = ClaimTable::create(&meta, 3 * 65_536, true);
        spill.insert((ledger(1), 5), 1);
        // The ledger gets its number from a later claim; its older claim is still refused.
        assert_eq!(t.claim(&meta, &mut spill, ledger(1), 6, 2), None);
        assert_eq!(t.claim(&meta, &mut spill, ledger(1), 5, 3), Some(1));
        let mut t = ClaimTable::load(&meta, 3 * 65_536).expect("reload");
        assert_eq!(t.get(&meta, &spill, ledger(1), 5), Some(1));
        assert!(t.release(&meta, &mut spill, ledger(1), 5, 1));
        assert!(!ClaimTable::load(&meta, 3 * 65_536).expect("reload").legacy);
        assert_eq!(t.claim(&meta, &mut spill, ledger(1), 5, 3), None);
        assert_eq!(t.violations(&meta, &spill), Vec::<String>::new());
    }

    #[test]
    fn should_move_older_claims_into_the_table_in_bounded_resumable_steps() {
        let (meta, mut spill, _) = fresh();
        // A migrated journal's tree: blocks of ledger(0) (number 0, first in key order) that
        // all fall in one bucket, and sequential blocks of two more ledgers.
        let mut want = BTreeMap::new();
        for (i, b) in colliding(100).into_iter().enumerate() {
            want.insert((ledger(0), b), i as u64);
        }
        for b in 0..600u64 {
            want.insert((ledger(1 + (b % 2) as u32), b), 1_000 + b);
        }
        for (k, id) in &want {
            spill.insert(*k, *id);
        }
        let mut t = ClaimTable::create(&meta, 3 * 65_536, true);
        let mut steps = 0;
        while t.legacy() {
            steps += 1;
            assert!(steps <= 30, "the move does not end");
            assert!(t.move_older(&meta, &mut spill, 32) <= 32);
            for (k, id) in &want {
                assert_eq!(t.get(&meta, &spill, k.0, k.1), Some(*id), "{k:?} mid-move");
            }
            // Each step may be the last of its message: the next starts from stable memory.
            t = ClaimTable::load(&meta, 3 * 65_536).expect("reload");
        }
        assert_eq!(steps, 700 / 32 + 1);
        assert_eq!(all(&meta, &spill, &t), want);
        // What stays in the tree is what landed in the bucket the colliding blocks filled (36
        // of them and, while the table had few buckets, 74 of the other ledgers' claims);
        // that bucket is marked (`violations` checks every row left), so lookups find them.
        assert!(spill.len() >= 100 - BUCKET_ROWS as u64);
        assert_eq!(t.violations(&meta, &spill), Vec::<String>::new());
        for (k, id) in &want {
            assert_eq!(t.get(&meta, &spill, k.0, k.1), Some(*id));
            assert_eq!(t.claim(&meta, &mut spill, k.0, k.1, 5_000), Some(*id));
        }
        assert_eq!(
            t.move_older(&meta, &mut spill, 32),
            0,
            "nothing left to move"
        );
    }

    #[test]
    fn should_split_one_bucket_at_a_time_and_keep_sequential_blocks_out_of_the_tree() {
        let (meta, mut spill, mut t) = fresh();
        for b in 0..48_000u64 {
            assert_eq!(t.claim(&meta, &mut spill, ledger(b as u32 % 2), b, b), None);
            assert!(t.rows() <= SPLIT_AT * t.buckets());
        }
        // 48,000 claims end a round (2,000 buckets, 976 of the 1,024 split): the buckets not
        // yet split hold 47 rows on average, the worst moment for spills. 14 here.
        assert!(spill.len() <= 48, "{} spilled: more than 0.1%", spill.len());
        assert_eq!(t.buckets(), (48_000 - spill.len()).div_ceil(SPLIT_AT));
        assert_eq!(t.violations(&meta, &spill), Vec::<String>::new());
    }

    #[test]
    fn should_refuse_a_region_that_is_not_a_table() {
        let mm = MemoryManager::init(VectorMemory::default());
        let meta = mm.get(MemoryId::new(0));
        assert!(ClaimTable::load(&meta, 0).is_err(), "empty memory");
        reserve(&meta, BUCKETS_AT + BUCKET_BYTES);
        assert!(ClaimTable::load(&meta, 0).is_err(), "zeroes");
        ClaimTable::create(&meta, 0, false);
        meta.write(24, &(MAX_LEDGERS as u32 + 1).to_le_bytes());
        assert!(ClaimTable::load(&meta, 0).is_err(), "too many ledgers");
    }
}
