//! The owner rows of layout 7: each owner key's entry ids in a chain of blocks, appended in id
//! order. Two streams of the meta memory's tail (`segments.rs`): 5, the blocks; 6, the
//! chains' directory, a `BTreeMap<u64 owner key, Chain>` with one row per owner key.
//!
//! Layout 6 kept a row per entry in a B-tree keyed (owner key, id) as large as the journal:
//! 120 stable reads to insert one at 100k entries, 147 at 1M (stable-structures reads every
//! key of every node it loads). Ids are handed out in increasing order, so an owner's new id
//! is always its largest: it goes at the end of the owner's chain, with one read of the tail
//! block's header and two small writes, plus the directory lookup (a B-tree with a row per
//! owner, not per entry). The directory row changes only when a chain gains or loses a block.
//!
//! A listing walks the owner's chain from its head, skipping the blocks wholly before where it
//! starts on two small reads each (the header and the block's last id) and reading the others
//! whole (1 KiB, 126 ids); a removal (retention, oldest first) finds its id the same way,
//! usually in the head block. A block whose ids are all removed leaves the chain and goes to the free list.
//! Owner keys are 64-bit hashes of principals (`storage::owner_key`): two owners that hash
//! alike share a chain, and listings filter by owner.
//!
//! # Stream 5 (offsets from its start; integers little-endian)
//!
//! | off            | bytes   | what                                                     |
//! |----------------|---------|----------------------------------------------------------|
//! | 0              | 4       | magic `b"ICJO"`                                          |
//! | 4              | 4       | u32 format (1)                                           |
//! | 8              | 8       | u64 blocks made                                          |
//! | 16             | 8       | u64 head of the free blocks: a block number + 1, 0: none  |
//! | 1,024 (k + 1)  | 1,024   | block `k`: u32 next block + 1 (0: the chain's last), u16 |
//! |                |         | ids appended, u16 ids not removed, 8 reserved, then 126 u64 |
//! |                |         | ids in increasing order (bit 63 set: removed)            |
//!
//! A free block's first 8 bytes hold the next free block + 1.
//!
//! # Stream 6: the directory
//!
//! `StableBTreeMap<u64 owner key, Chain>`; a `Chain` is 8 bytes: u32 head block, u32 tail
//! block (block numbers, not + 1: a chain has at least one block).
//!
//! The header, the block size and the row formats are format 1: never change them.

#[cfg(test)]
use super::next_free;
use super::{pop_free, push_free, reserve};
use ic_stable_structures::storable::Bound;
use ic_stable_structures::{Memory, StableBTreeMap, Storable};
use std::borrow::Cow;

const MAGIC: &[u8; 4] = b"ICJO";
const FORMAT: u32 = 1;
const HEADER_MADE: u64 = 8;
const HEADER_FREE: u64 = 16;
const BLOCK: u64 = 1024;
const BLOCK_HEADER: usize = 16;
/// Ids in a block.
pub const BLOCK_IDS: usize = 126;
const REMOVED: u64 = 1 << 63;

/// Why the chains cannot be opened.
#[derive(Debug)]
pub struct NotOwnerChains;

/// An owner key's chain: its first and last block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    head: u64,
    tail: u64,
}

impl Storable for Chain {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.into_bytes())
    }
    fn into_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8);
        b.extend_from_slice(&(self.head as u32).to_le_bytes());
        b.extend_from_slice(&(self.tail as u32).to_le_bytes());
        b
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("chain"));
        Chain {
            head: u64::from(word(0)),
            tail: u64::from(word(4)),
        }
    }
    const BOUND: Bound = Bound::Bounded {
        max_size: 8,
        is_fixed_size: true,
    };
}

/// A block as read.
struct Block {
    next: Option<u64>,
    appended: usize,
    live: usize,
    ids: Vec<u64>,
}

/// The chains: the blocks' stream, the directory, and the heap's view of the header.
pub struct OwnerChains<M: Memory> {
    blocks: M,
    dir: StableBTreeMap<u64, Chain, M>,
    made: u64,
    free: u64,
}

fn block_at(k: u64) -> u64 {
    BLOCK * (k + 1)
}

impl<M: Memory> OwnerChains<M> {
    /// Writes empty chains.
    pub fn create(blocks: M, dir: M) -> Self {
        reserve(&blocks, BLOCK);
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(MAGIC);
        header[4..8].copy_from_slice(&FORMAT.to_le_bytes());
        blocks.write(0, &header);
        OwnerChains {
            blocks,
            dir: StableBTreeMap::init(dir),
            made: 0,
            free: 0,
        }
    }

    /// Reads the header (one read) and opens the directory.
    pub fn load(blocks: M, dir: M) -> Result<Self, NotOwnerChains> {
        if blocks.size() * 65_536 < BLOCK {
            return Err(NotOwnerChains);
        }
        let mut header = [0u8; 24];
        blocks.read(0, &mut header);
        let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8"));
        let (made, free) = (word(8), word(16));
        if &header[0..4] != MAGIC
            || header[4..8] != FORMAT.to_le_bytes()
            || block_at(made) > blocks.size() * 65_536
            || free > made
        {
            return Err(NotOwnerChains);
        }
        Ok(OwnerChains {
            blocks,
            dir: StableBTreeMap::init(dir),
            made,
            free,
        })
    }

    fn read_header(&self, k: u64) -> Block {
        let mut h = [0u8; BLOCK_HEADER];
        self.blocks.read(block_at(k), &mut h);
        let next = u32::from_le_bytes(h[0..4].try_into().expect("4"));
        Block {
            next: (next > 0).then(|| u64::from(next) - 1),
            appended: u16::from_le_bytes([h[4], h[5]]) as usize,
            live: u16::from_le_bytes([h[6], h[7]]) as usize,
            ids: vec![],
        }
    }

    fn read_block(&self, k: u64) -> Block {
        let mut b = vec![0u8; BLOCK as usize];
        self.blocks.read(block_at(k), &mut b);
        let next = u32::from_le_bytes(b[0..4].try_into().expect("4"));
        let appended = u16::from_le_bytes([b[4], b[5]]) as usize;
        Block {
            next: (next > 0).then(|| u64::from(next) - 1),
            appended,
            live: u16::from_le_bytes([b[6], b[7]]) as usize,
            ids: b[BLOCK_HEADER..BLOCK_HEADER + 8 * appended.min(BLOCK_IDS)]
                .chunks(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
                .collect(),
        }
    }

    /// The largest id block `k` ever held (removed or not), from its header: what a walk
    /// compares to skip a block without reading its ids.
    fn last_id(&self, k: u64) -> (Block, u64) {
        let b = self.read_header(k);
        let mut id = [0u8; 8];
        self.blocks.read(
            block_at(k) + (BLOCK_HEADER + 8 * (b.appended.max(1) - 1)) as u64,
            &mut id,
        );
        (b, u64::from_le_bytes(id) & !REMOVED)
    }

    fn write_header(&self, k: u64, b: &Block) {
        let mut h = [0u8; 8];
        let next = b.next.map_or(0, |n| {
            u32::try_from(n + 1).expect("icjournal: owner blocks past 2^32")
        });
        h[0..4].copy_from_slice(&next.to_le_bytes());
        h[4..6].copy_from_slice(&(b.appended as u16).to_le_bytes());
        h[6..8].copy_from_slice(&(b.live as u16).to_le_bytes());
        self.blocks.write(block_at(k), &h);
    }

    fn write_id(&self, k: u64, i: usize, id: u64) {
        self.blocks.write(
            block_at(k) + (BLOCK_HEADER + 8 * i) as u64,
            &id.to_le_bytes(),
        );
    }

    fn set_header(&self, off: u64, v: u64) {
        self.blocks.write(off, &v.to_le_bytes());
    }

    /// A block holding `id` alone: the head of the free blocks, or a new one.
    fn new_block(&mut self, id: u64) -> u64 {
        let k = if let Some(k) = pop_free(&self.blocks, &mut self.free, block_at) {
            self.set_header(HEADER_FREE, self.free);
            k
        } else {
            let k = self.made;
            self.made += 1;
            reserve(&self.blocks, block_at(self.made));
            self.set_header(HEADER_MADE, self.made);
            k
        };
        let block = Block {
            next: None,
            appended: 1,
            live: 1,
            ids: vec![],
        };
        self.write_header(k, &block);
        self.write_id(k, 0, id);
        k
    }

    fn free_block(&mut self, k: u64) {
        push_free(&self.blocks, &mut self.free, k, block_at);
        self.set_header(HEADER_FREE, self.free);
    }

    /// Appends `id` to `key`'s chain: `id` must be greater than every id the chain ever held
    /// (ids are handed out in order).
    pub fn append(&mut self, key: u64, id: u64) {
        assert!(id < REMOVED, "icjournal: entry id past 2^63");
        let Some(chain) = self.dir.get(&key) else {
            let k = self.new_block(id);
            self.dir.insert(key, Chain { head: k, tail: k });
            return;
        };
        let mut tail = self.read_header(chain.tail);
        if tail.appended < BLOCK_IDS {
            self.write_id(chain.tail, tail.appended, id);
            tail.appended += 1;
            tail.live += 1;
            self.write_header(chain.tail, &tail);
        } else {
            let k = self.new_block(id);
            tail.next = Some(k);
            self.write_header(chain.tail, &tail);
            self.dir.insert(
                key,
                Chain {
                    head: chain.head,
                    tail: k,
                },
            );
        }
    }

    /// Removes `id` from `key`'s chain; false when it is not there. A block left with no id
    /// leaves the chain.
    pub fn remove(&mut self, key: u64, id: u64) -> bool {
        let Some(mut chain) = self.dir.get(&key) else {
            return false;
        };
        let (mut prev, mut at) = (None, Some(chain.head));
        while let Some(k) = at {
            let (head, last) = self.last_id(k);
            if last < id {
                (prev, at) = (Some(k), head.next);
                continue;
            }
            let mut b = self.read_block(k);
            match b.ids.binary_search_by_key(&id, |v| v & !REMOVED) {
                Ok(i) if b.ids[i] & REMOVED == 0 => {
                    b.live -= 1;
                    if b.live > 0 {
                        self.write_id(k, i, id | REMOVED);
                        self.write_header(k, &b);
                        return true;
                    }
                    // The block leaves the chain.
                    match prev {
                        Some(p) => {
                            let mut before = self.read_header(p);
                            before.next = b.next;
                            self.write_header(p, &before);
                        }
                        None => chain.head = b.next.unwrap_or(k),
                    }
                    if chain.tail == k {
                        chain.tail = prev.unwrap_or(k);
                    }
                    self.free_block(k);
                    if prev.is_none() && b.next.is_none() {
                        self.dir.remove(&key);
                    } else {
                        self.dir.insert(key, chain);
                    }
                    return true;
                }
                Ok(_) => return false,
                Err(i) if i < b.ids.len() => return false,
                Err(_) => {}
            }
            (prev, at) = (Some(k), b.next);
        }
        false
    }

    /// `key`'s ids from `start` on, ascending, at most `max`.
    pub fn ids(&self, key: u64, start: u64, max: usize) -> Vec<u64> {
        let mut out = vec![];
        let mut at = self.dir.get(&key).map(|c| c.head);
        while let Some(k) = at {
            if out.len() >= max {
                break;
            }
            // Blocks wholly before `start` are skipped on two small reads.
            let (head, last) = self.last_id(k);
            if last < start {
                at = head.next;
                continue;
            }
            let b = self.read_block(k);
            out.extend(
                b.ids
                    .iter()
                    .filter(|v| *v & REMOVED == 0 && **v >= start)
                    .take(max - out.len()),
            );
            at = b.next;
        }
        out
    }

    /// Every (owner key, id), in key then id order (tests).
    #[cfg(test)]
    pub fn rows(&self) -> Vec<(u64, u64)> {
        self.dir
            .keys()
            .flat_map(|key| {
                self.ids(key, 0, usize::MAX)
                    .into_iter()
                    .map(move |id| (key, id))
            })
            .collect()
    }

    /// Everything that contradicts the chains' own rules, as text (tests): blocks in one chain
    /// or the free list, ids increasing along a chain, counts that match, no empty block kept,
    /// tails that end their chains.
    #[cfg(test)]
    pub fn violations(&self) -> Vec<String> {
        use std::collections::BTreeMap;
        let mut out = vec![];
        let mut seen: BTreeMap<u64, String> = BTreeMap::new();
        for row in self.dir.iter() {
            let (key, chain) = (*row.key(), row.value());
            let (mut at, mut last, mut end) = (Some(chain.head), None::<u64>, None);
            while let Some(k) = at {
                if k >= self.made {
                    out.push(format!("chain {key:x}: block {k} never made"));
                    break;
                }
                if let Some(who) = seen.insert(k, format!("chain {key:x}")) {
                    out.push(format!("chain {key:x}: block {k} also in {who}"));
                    break;
                }
                let b = self.read_block(k);
                let live = b.ids.iter().filter(|v| *v & REMOVED == 0).count();
                if live != b.live || live == 0 || b.appended > BLOCK_IDS {
                    out.push(format!(
                        "chain {key:x}: block {k} counts {} of {live}",
                        b.live
                    ));
                }
                for v in &b.ids {
                    let id = v & !REMOVED;
                    if last.is_some_and(|l| id <= l) {
                        out.push(format!("chain {key:x}: id {id} out of order"));
                    }
                    last = Some(id);
                }
                end = Some(k);
                at = b.next;
            }
            if end != Some(chain.tail) {
                out.push(format!("chain {key:x}: tail {} is not its end", chain.tail));
            }
        }
        let mut at = self.free;
        while at > 0 {
            let k = at - 1;
            if let Some(who) = seen.insert(k, "free".into()) {
                out.push(format!("free block {k} also in {who}"));
                break;
            }
            at = next_free(&self.blocks, block_at(k));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::segments::{Segments, Stream};
    use ic_stable_structures::VectorMemory;
    use std::collections::BTreeSet;

    fn chains(region: &Segments<VectorMemory>) -> OwnerChains<Stream<VectorMemory>> {
        OwnerChains::load(region.stream(5), region.stream(6)).expect("chains")
    }

    #[test]
    fn should_agree_with_a_set_under_random_appends_removals_and_reloads() {
        let mem = VectorMemory::default();
        let region = Segments::create(&mem, 0);
        let mut c = OwnerChains::create(region.stream(5), region.stream(6));
        let mut model: BTreeSet<(u64, u64)> = BTreeSet::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut next = 0;
        for _ in 0..40_000 {
            let r = rand();
            match r % 16 {
                0..=8 => {
                    // Few owners with many ids, many with few.
                    let key = if r % 3 == 0 { rand() % 200 } else { rand() % 4 };
                    c.append(key, next);
                    model.insert((key, next));
                    next += 1;
                }
                9..=13 => {
                    // Mostly the oldest, sometimes any.
                    let pick = if r % 4 == 0 {
                        model
                            .iter()
                            .nth((rand() % (model.len() as u64 + 1)) as usize)
                    } else {
                        model.iter().next()
                    };
                    let Some(&(key, id)) = pick else { continue };
                    assert!(c.remove(key, id));
                    model.remove(&(key, id));
                    assert!(!c.remove(key, id), "removed twice");
                }
                14 => {
                    assert!(!c.remove(rand() % 200, next + 5), "never appended");
                }
                _ => c = chains(&region),
            }
        }
        assert_eq!(c.rows(), model.iter().copied().collect::<Vec<_>>());
        for key in 0..4 {
            let all: Vec<u64> = model.range((key, 0)..(key + 1, 0)).map(|r| r.1).collect();
            let from = all.get(all.len() / 2).copied().unwrap_or(0);
            let want: Vec<u64> = all
                .iter()
                .copied()
                .filter(|id| *id >= from)
                .take(7)
                .collect();
            assert_eq!(c.ids(key, from, 7), want, "key {key}");
        }
        assert_eq!(c.violations(), Vec::<String>::new());
    }

    #[test]
    fn should_reuse_blocks_under_a_steady_load() {
        let mem = VectorMemory::default();
        let region = Segments::create(&mem, 0);
        let mut c = OwnerChains::create(region.stream(5), region.stream(6));
        // Three owners in turn, the oldest 3,000 ids kept; one id kept for good (an entry
        // retention never removes) pins its block only.
        for id in 0..100_000u64 {
            c.append(id % 3, id);
            if id >= 3_000 && id - 3_000 != 10 {
                assert!(c.remove((id - 3_000) % 3, id - 3_000));
            }
        }
        assert!(c.made < 3_000 / BLOCK_IDS as u64 + 10, "{} blocks", c.made);
        let newest = (97_000..).find(|id| id % 3 == 1).expect("an id");
        assert_eq!(c.ids(1, 0, 2), vec![10, newest]);
        assert_eq!(c.violations(), Vec::<String>::new());
    }

    #[test]
    fn should_refuse_chains_that_are_not() {
        let mem = VectorMemory::default();
        let region = Segments::create(&mem, 0);
        let load = || OwnerChains::load(region.stream(5), region.stream(6));
        assert!(load().is_err(), "empty");
        OwnerChains::create(region.stream(5), region.stream(6));
        assert!(load().is_ok());
        region.stream(5).write(HEADER_MADE, &100u64.to_le_bytes());
        assert!(load().is_err(), "blocks past the stream");
    }
}
