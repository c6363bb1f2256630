//! The entries of layout 7: a slot per id, found through a directory, and each entry's two
//! parts (its intent, written once, and its state) in a heap of size-classed chunks. Three
//! streams of the meta memory's tail (`segments.rs`): 2, the header and the directory; 3, the
//! heap; 4, the slot pages.
//!
//! Layouts 1 to 6 kept the entries in a `BTreeMap<u64, Entry>` (memory 1) as large as the
//! journal. stable-structures' nodes read each key they compare, and each value's size, with a
//! stable read of their own (`btreemap/node/v2.rs`, `load_v2`), so a rewrite of one entry cost
//! 159 reads at 1M entries and the creation of one 167. Ids are dense (handed out in order and
//! never reused), so an entry needs no search: its slot is slot `i % 4,096` of the slot page
//! the directory names for `i / 4,096` (`i = id - first`), and a read is one read of the
//! directory, one of the slot and one of each part. A status change rewrites the state part
//! only (and the slot when it moved); the intent, which holds the caller's payload and is most
//! of an entry's bytes, is written when the entry is made and again only if it changes (a
//! saga's progress).
//!
//! A slot page whose entries are all gone (retention) goes back to a free list, so under a
//! steady load the slots stop growing too; what stays is the directory's 8 bytes per 4,096
//! ids ever made.
//!
//! `storage.rs` encodes the parts (format 3 both: the intent alone, and the entry with an empty
//! record in place of its intent); this table keeps bytes.
//!
//! # Stream 2: header and directory (offsets from its start; integers little-endian)
//!
//! | off   | bytes   | what                                                                 |
//! |-------|---------|----------------------------------------------------------------------|
//! | 0     | 4       | magic `b"ICJE"`                                                      |
//! | 4     | 4       | u32 format of the table (1)                                          |
//! | 8     | 8       | u64 `first`: ids below it live in the B-tree of memory 1 (a journal   |
//! |       |         | migrated from an older layout keeps its entries there; 0 otherwise)   |
//! | 16    | 8       | u64 entries in the table                                             |
//! | 24    | 8       | u64 end of the heap (bytes of stream 3 handed out so far)             |
//! | 32    | 8       | u64 slot pages handed out so far (stream 4)                          |
//! | 40    | 8       | u64 head of the free slot pages: a page number + 1, 0 when empty      |
//! | 64    | 152 × 8 | u64 head of class `c`'s free list: a chunk's offset + 1, 0 when empty |
//! | 2,048 | 8 each  | directory entry `p` (ids `first + 4,096 p` on): u32 slot page + 1 (0: |
//! |       |         | none), u32 entries in it                                             |
//!
//! # Stream 4: slot pages
//!
//! Page `k` at `64 KiB × k`: 4,096 slots of 16 bytes: the intent's chunk offset / 32 (u32)
//! and length (u32), then the state's (a state length of 0: no entry). A free page's first 8
//! bytes hold the next free page + 1; a page is zeroed when it is handed out.
//!
//! # Stream 3: the heap
//!
//! Chunks of 152 size classes: class `c < 64` holds up to `16 (c + 1)` bytes (16 to 1,024);
//! above, four classes per doubling: with `k = c - 64`, `d = k / 4`, `q = k % 4`, class `c`
//! holds up to `1,024 × 2^d + (q + 1) × 256 × 2^d` bytes (1,280 to 4 GiB), so a chunk wastes
//! at most a fifth of itself. Every class size is a multiple of 16, so is every chunk's
//! offset. A part is rewritten in place while its class stays the same; otherwise it moves to
//! a chunk of its new class and the old chunk goes to its class's free list (its first 8
//! bytes: the next chunk's offset + 1). Chunks are taken from a free list first, then from
//! the end of the heap, so retention's removals make room for new entries and the heap stops
//! growing under a steady load.
//!
//! The class table, the page size and the header are format 1: never change any of them; a
//! new format gets a new format number.

#[cfg(test)]
use super::next_free;
use super::{pop_free, push_free, reserve};
use ic_stable_structures::Memory;

const MAGIC: &[u8; 4] = b"ICJE";
const FORMAT: u32 = 1;
const HEADER_FIRST: u64 = 8;
const HEADER_LIVE: u64 = 16;
const HEADER_END: u64 = 24;
const HEADER_PAGES: u64 = 32;
const HEADER_FREE_PAGE: u64 = 40;
const FREE_HEADS: u64 = 64;
/// Size classes (see the module doc).
pub const CLASSES: usize = 152;
const DIR_AT: u64 = 2048;
const DIR_ENTRY: u64 = 8;
const SLOT: u64 = 16;
/// Slots in a slot page (64 KiB).
const PAGE_SLOTS: u64 = 4096;
const SLOT_PAGE: u64 = PAGE_SLOTS * SLOT;
/// Chunk offsets are stored divided by this.
const UNIT: u64 = 16;
/// Slots read at once by a scan.
const SCAN_BATCH: u64 = 512;

/// Why a table cannot be opened.
#[derive(Debug)]
pub struct NotAnEntryTable;

/// The table: its three streams and the heap's view of its header (every change is written
/// through at once).
pub struct EntryTable<M: Memory> {
    dir: M,
    heap: M,
    pages: M,
    first: u64,
    live: u64,
    end: u64,
    pages_made: u64,
    free_page: u64,
    free: [u64; CLASSES],
}

/// Where one part of an entry is: its chunk's offset in stream 3 and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Part {
    at: u64,
    len: u64,
}

/// An entry's slot: where its intent and its state are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    intent: Part,
    state: Part,
}

/// A directory entry: the slot page of 4,096 ids and how many entries it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DirEntry {
    page: Option<u64>,
    live: u32,
}

/// The class of a part of `len` bytes (`len ≥ 1`).
pub fn class_of(len: u64) -> usize {
    if len <= 1024 {
        (len.max(1).div_ceil(UNIT) - 1) as usize
    } else {
        // 1,025..=2,048 is doubling 0.
        let d = 63 - ((len - 1) >> 10).leading_zeros() as u64;
        let q = (len - (1024 << d)).div_ceil(256 << d) - 1;
        64 + 4 * d as usize + q as usize
    }
}

/// The bytes a chunk of class `c` holds.
pub fn class_size(c: usize) -> u64 {
    if c < 64 {
        (c as u64 + 1) * UNIT
    } else {
        let (d, q) = ((c - 64) / 4, ((c - 64) % 4) as u64);
        (1024 << d) + (q + 1) * (256 << d)
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn decode_slot(b: &[u8]) -> Option<Slot> {
    let part = |i: usize| Part {
        at: u64::from(u32_at(b, 8 * i)) * UNIT,
        len: u64::from(u32_at(b, 8 * i + 4)),
    };
    let (intent, state) = (part(0), part(1));
    (state.len > 0).then_some(Slot { intent, state })
}

fn encode_slot(slot: Option<Slot>) -> [u8; SLOT as usize] {
    let mut b = [0u8; SLOT as usize];
    if let Some(s) = slot {
        for (i, p) in [s.intent, s.state].into_iter().enumerate() {
            let unit = u32::try_from(p.at / UNIT).expect("icjournal: entry heap past 64 GiB");
            let len = u32::try_from(p.len).expect("icjournal: entry part past 4 GiB");
            b[8 * i..8 * i + 4].copy_from_slice(&unit.to_le_bytes());
            b[8 * i + 4..8 * i + 8].copy_from_slice(&len.to_le_bytes());
        }
    }
    b
}

fn has(mem: &impl Memory, end: u64) -> bool {
    end <= mem.size() * 65_536
}

impl<M: Memory> EntryTable<M> {
    /// Writes an empty table whose first id is `first` (the journal's next id when it is
    /// migrated from an older layout, 0 for a new journal).
    pub fn create(dir: M, heap: M, pages: M, first: u64) -> Self {
        reserve(&dir, DIR_AT);
        let mut header = vec![0u8; DIR_AT as usize];
        header[0..4].copy_from_slice(MAGIC);
        header[4..8].copy_from_slice(&FORMAT.to_le_bytes());
        header[8..16].copy_from_slice(&first.to_le_bytes());
        dir.write(0, &header);
        EntryTable {
            dir,
            heap,
            pages,
            first,
            live: 0,
            end: 0,
            pages_made: 0,
            free_page: 0,
            free: [0; CLASSES],
        }
    }

    /// Reads the header (one read).
    pub fn load(dir: M, heap: M, pages: M) -> Result<Self, NotAnEntryTable> {
        if !has(&dir, DIR_AT) {
            return Err(NotAnEntryTable);
        }
        let mut header = [0u8; DIR_AT as usize];
        dir.read(0, &mut header);
        let end = u64_at(&header, HEADER_END as usize);
        let pages_made = u64_at(&header, HEADER_PAGES as usize);
        let free_page = u64_at(&header, HEADER_FREE_PAGE as usize);
        if &header[0..4] != MAGIC
            || u32_at(&header, 4) != FORMAT
            || !has(&heap, end)
            || !has(&pages, pages_made * SLOT_PAGE)
            || free_page > pages_made
        {
            return Err(NotAnEntryTable);
        }
        let mut free = [0; CLASSES];
        for (c, head) in free.iter_mut().enumerate() {
            *head = u64_at(&header, (FREE_HEADS + 8 * c as u64) as usize);
            if *head > end {
                return Err(NotAnEntryTable);
            }
        }
        Ok(EntryTable {
            dir,
            heap,
            pages,
            first: u64_at(&header, HEADER_FIRST as usize),
            live: u64_at(&header, HEADER_LIVE as usize),
            end,
            pages_made,
            free_page,
            free,
        })
    }

    /// Ids below this live in the B-tree of an older layout.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Entries in the table.
    pub fn len(&self) -> u64 {
        self.live
    }

    fn set_header(&self, off: u64, v: u64) {
        self.dir.write(off, &v.to_le_bytes());
    }

    /// Directory entry `p` (none past the directory's end).
    fn dir_entry(&self, p: u64) -> DirEntry {
        let at = DIR_AT + p * DIR_ENTRY;
        if !has(&self.dir, at + DIR_ENTRY) {
            return DirEntry {
                page: None,
                live: 0,
            };
        }
        let mut b = [0u8; DIR_ENTRY as usize];
        self.dir.read(at, &mut b);
        let page = u32_at(&b, 0);
        DirEntry {
            page: (page > 0).then(|| u64::from(page) - 1),
            live: u32_at(&b, 4),
        }
    }

    fn set_dir_entry(&self, p: u64, e: DirEntry) {
        let at = DIR_AT + p * DIR_ENTRY;
        reserve(&self.dir, at + DIR_ENTRY);
        let page = e.page.map_or(0, |k| {
            u32::try_from(k + 1).expect("icjournal: slot pages past 2^32")
        });
        let mut b = [0u8; DIR_ENTRY as usize];
        b[0..4].copy_from_slice(&page.to_le_bytes());
        b[4..8].copy_from_slice(&e.live.to_le_bytes());
        self.dir.write(at, &b);
    }

    /// The directory entry and slot of `id` (`id ≥ first`).
    fn locate(&self, id: u64) -> (u64, DirEntry, Option<Slot>) {
        let i = id - self.first;
        let p = i / PAGE_SLOTS;
        let d = self.dir_entry(p);
        let slot = d.page.and_then(|k| {
            let mut b = [0u8; SLOT as usize];
            self.pages
                .read(k * SLOT_PAGE + (i % PAGE_SLOTS) * SLOT, &mut b);
            decode_slot(&b)
        });
        (p, d, slot)
    }

    fn write_slot(&self, page: u64, id: u64, slot: Option<Slot>) {
        let i = (id - self.first) % PAGE_SLOTS;
        self.pages
            .write(page * SLOT_PAGE + i * SLOT, &encode_slot(slot));
    }

    /// A zeroed slot page: the head of the free pages, or a new one.
    fn new_page(&mut self) -> u64 {
        let k = if let Some(k) = pop_free(&self.pages, &mut self.free_page, |k| k * SLOT_PAGE) {
            self.set_header(HEADER_FREE_PAGE, self.free_page);
            k
        } else {
            let k = self.pages_made;
            self.pages_made += 1;
            reserve(&self.pages, self.pages_made * SLOT_PAGE);
            self.set_header(HEADER_PAGES, self.pages_made);
            k
        };
        self.pages.write(k * SLOT_PAGE, &[0u8; SLOT_PAGE as usize]);
        k
    }

    fn free_page(&mut self, k: u64) {
        push_free(&self.pages, &mut self.free_page, k, |k| k * SLOT_PAGE);
        self.set_header(HEADER_FREE_PAGE, self.free_page);
    }

    /// Entry `id`'s intent and state, if the table holds it.
    pub fn get(&self, id: u64) -> Option<(Vec<u8>, Vec<u8>)> {
        let s = self.locate(id).2?;
        let read = |p: Part| {
            let mut bytes = vec![0u8; p.len as usize];
            self.heap.read(p.at, &mut bytes);
            bytes
        };
        Some((read(s.intent), read(s.state)))
    }

    /// A chunk of class `c`: the head of its free list, or the end of the heap.
    fn allocate(&mut self, c: usize) -> u64 {
        if let Some(at) = pop_free(&self.heap, &mut self.free[c], |at| at) {
            self.set_header(FREE_HEADS + 8 * c as u64, self.free[c]);
            return at;
        }
        let at = self.end;
        self.end = at + class_size(c);
        reserve(&self.heap, self.end);
        self.set_header(HEADER_END, self.end);
        at
    }

    fn release(&mut self, p: Part) {
        let c = class_of(p.len);
        push_free(&self.heap, &mut self.free[c], p.at, |at| at);
        self.set_header(FREE_HEADS + 8 * c as u64, self.free[c]);
    }

    /// Writes `bytes` over the part `old` (in place when the class stays the same).
    fn place(&mut self, old: Option<Part>, bytes: &[u8]) -> Part {
        assert!(!bytes.is_empty(), "icjournal: empty entry part");
        let len = bytes.len() as u64;
        let at = match old {
            Some(p) if class_of(p.len) == class_of(len) => p.at,
            Some(p) => {
                self.release(p);
                self.allocate(class_of(len))
            }
            None => self.allocate(class_of(len)),
        };
        self.heap.write(at, bytes);
        Part { at, len }
    }

    /// Writes entry `id` (`id ≥ first`): its state, and its intent when given (a new entry's
    /// must be). Each part stays in its chunk while its class does.
    pub fn put(&mut self, id: u64, intent: Option<&[u8]>, state: &[u8]) {
        let (p, mut d, old) = self.locate(id);
        let intent = match (intent, old) {
            (Some(bytes), _) => self.place(old.map(|s| s.intent), bytes),
            (None, Some(s)) => s.intent,
            (None, None) => panic!("icjournal: entry {id} written without its intent"),
        };
        let state = self.place(old.map(|s| s.state), state);
        if old.is_none() {
            if d.page.is_none() {
                d.page = Some(self.new_page());
            }
            d.live += 1;
            self.set_dir_entry(p, d);
            self.live += 1;
            self.set_header(HEADER_LIVE, self.live);
        }
        let new = Slot { intent, state };
        if old != Some(new) {
            self.write_slot(d.page.expect("a page"), id, Some(new));
        }
    }

    /// Removes entry `id`; false when the table does not hold it. A slot page left empty goes
    /// back to the free pages.
    pub fn remove(&mut self, id: u64) -> bool {
        let (p, mut d, Some(s)) = self.locate(id) else {
            return false;
        };
        self.release(s.intent);
        self.release(s.state);
        let page = d.page.expect("a slot in a page");
        d.live -= 1;
        if d.live == 0 {
            self.free_page(page);
            d.page = None;
        } else {
            self.write_slot(page, id, None);
        }
        self.set_dir_entry(p, d);
        self.live -= 1;
        self.set_header(HEADER_LIVE, self.live);
        true
    }

    /// Ids the table holds from `start` on, ascending: one directory read per 4,096 ids, the
    /// slots of a page 512 at a time.
    pub fn ids(&self, start: u64) -> impl Iterator<Item = u64> + '_ {
        let first = self.first;
        let dir_end = (self.dir.size() * 65_536).saturating_sub(DIR_AT) / DIR_ENTRY;
        let end = dir_end.saturating_mul(PAGE_SLOTS);
        let mut i = start.saturating_sub(first);
        let mut batch: Vec<u64> = Vec::new();
        std::iter::from_fn(move || loop {
            if let Some(id) = batch.pop() {
                return Some(id);
            }
            if i >= end {
                return None;
            }
            let p = i / PAGE_SLOTS;
            let Some(k) = self.dir_entry(p).page else {
                i = (p + 1) * PAGE_SLOTS;
                continue;
            };
            let n = ((p + 1) * PAGE_SLOTS - i).min(SCAN_BATCH);
            let mut b = vec![0u8; (n * SLOT) as usize];
            self.pages
                .read(k * SLOT_PAGE + (i % PAGE_SLOTS) * SLOT, &mut b);
            batch = b
                .chunks(SLOT as usize)
                .enumerate()
                .filter(|(_, s)| decode_slot(s).is_some())
                .map(|(j, _)| first + i + j as u64)
                .rev()
                .collect();
            i += n;
        })
    }

    /// Everything that contradicts the table's own rules, as text (tests): the header's and
    /// the directory's counts, chunks inside the heap and never shared or overlapping, pages
    /// used once and never both used and free, free lists that end.
    #[cfg(test)]
    pub fn violations(&self) -> Vec<String> {
        use std::collections::BTreeMap;
        let mut out = vec![];
        let mut used: BTreeMap<u64, (u64, String)> = BTreeMap::new();
        let mut pages: BTreeMap<u64, String> = BTreeMap::new();
        let mut counted: BTreeMap<u64, u32> = BTreeMap::new();
        for id in self.ids(self.first) {
            let (p, _, s) = self.locate(id);
            let s = s.expect("listed");
            *counted.entry(p).or_default() += 1;
            for part in [s.intent, s.state] {
                let size = class_size(class_of(part.len));
                if part.at % UNIT != 0 || part.at + size > self.end {
                    out.push(format!("entry {id}: chunk {} outside the heap", part.at));
                }
                if let Some((_, who)) = used.insert(part.at, (size, format!("entry {id}"))) {
                    out.push(format!("entry {id}: chunk {} also used by {who}", part.at));
                }
            }
        }
        if counted.values().map(|n| u64::from(*n)).sum::<u64>() != self.live {
            out.push(format!(
                "header counts {} entries, slots {counted:?}",
                self.live
            ));
        }
        let dir_end = (self.dir.size() * 65_536).saturating_sub(DIR_AT) / DIR_ENTRY;
        for p in 0..dir_end {
            let d = self.dir_entry(p);
            if d.live != counted.get(&p).copied().unwrap_or(0) {
                out.push(format!("directory {p} counts {} entries", d.live));
            }
            match d.page {
                Some(k) if k >= self.pages_made => out.push(format!("directory {p}: page {k}")),
                Some(_) if d.live == 0 => out.push(format!("directory {p}: an empty page kept")),
                Some(k) => {
                    if let Some(who) = pages.insert(k, format!("directory {p}")) {
                        out.push(format!("directory {p}: page {k} also used by {who}"));
                    }
                }
                None => {}
            }
        }
        let mut at = self.free_page;
        while at > 0 {
            let k = at - 1;
            if k >= self.pages_made {
                out.push(format!("free page {k} past the pages made"));
                break;
            }
            if let Some(who) = pages.insert(k, "free".into()) {
                out.push(format!("free page {k} also used by {who}"));
                break;
            }
            at = next_free(&self.pages, k * SLOT_PAGE);
        }
        for (c, head) in self.free.iter().enumerate() {
            let mut at = *head;
            while at > 0 {
                let chunk = at - 1;
                if chunk % UNIT != 0 || chunk + class_size(c) > self.end {
                    out.push(format!("class {c}: free chunk {chunk} outside the heap"));
                    break;
                }
                if let Some((_, who)) = used.insert(chunk, (class_size(c), format!("free {c}"))) {
                    out.push(format!("class {c}: free chunk {chunk} also used by {who}"));
                    break;
                }
                at = next_free(&self.heap, chunk);
            }
        }
        let mut last_end = 0;
        for (at, (size, who)) in &used {
            if *at < last_end {
                out.push(format!("{who}: chunk {at} overlaps the one before"));
            }
            last_end = at + size;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::segments::Segments;
    use ic_stable_structures::VectorMemory;
    use std::collections::BTreeMap;

    fn value(id: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (id.wrapping_mul(7) as usize).wrapping_add(i) as u8 | 1)
            .collect()
    }

    #[test]
    fn should_size_classes_to_hold_their_parts_and_never_overlap() {
        let mut last = 0;
        for c in 0..CLASSES {
            assert!(
                class_size(c) > last && class_size(c).is_multiple_of(UNIT),
                "class {c}"
            );
            last = class_size(c);
        }
        for len in (1..20_000u64).chain([1 << 20, (1 << 20) + 1, u32::MAX as u64]) {
            let c = class_of(len);
            assert!(class_size(c) >= len, "class of {len}");
            assert!(c == 0 || class_size(c - 1) < len, "smallest class of {len}");
            assert!(len < 1024 || class_size(c) * 4 <= len * 5, "waste at {len}");
        }
        assert_eq!(class_of(u32::MAX as u64), CLASSES - 1);
    }

    type Model = BTreeMap<u64, (Vec<u8>, Vec<u8>)>;

    #[test]
    fn should_agree_with_a_map_under_random_puts_removals_and_reloads() {
        let mem = VectorMemory::default();
        let region = Segments::create(&mem, 0);
        let first = 1_000;
        let mut table =
            EntryTable::create(region.stream(2), region.stream(3), region.stream(4), first);
        let mut model = Model::new();
        let mut next = first;
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut rand = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for step in 0..30_000u64 {
            let r = rand();
            match r % 10 {
                0..=3 => {
                    let big = if r % 97 == 0 { 5_000 } else { 0 };
                    let intent = value(next, 1 + (rand() % 300) as usize + big);
                    let state = value(!next, 1 + (rand() % 200) as usize);
                    table.put(next, Some(&intent), &state);
                    model.insert(next, (intent, state));
                    next += 1;
                }
                4..=6 => {
                    // A new state, a few bytes longer (in place) or of another class; now and
                    // then a new intent too.
                    let id = first + rand() % (next - first).max(1);
                    if let Some((intent, state)) = model.get_mut(&id) {
                        *state = value(id ^ step, (state.len() as u64 + rand() % 80) as usize);
                        let new_intent = r % 5 == 0;
                        if new_intent {
                            *intent = value(step, 1 + (rand() % 600) as usize);
                        }
                        table.put(id, new_intent.then_some(&intent[..]), state);
                    }
                }
                7..=8 => {
                    let id = first + rand() % (next - first).max(1);
                    assert_eq!(table.remove(id), model.remove(&id).is_some());
                }
                _ => {
                    let region = Segments::load(&mem, 0).expect("region");
                    table = EntryTable::load(region.stream(2), region.stream(3), region.stream(4))
                        .expect("load");
                }
            }
        }
        assert_eq!(table.len(), model.len() as u64);
        let ids: Vec<u64> = table.ids(0).collect();
        assert_eq!(ids, model.keys().copied().collect::<Vec<_>>());
        let from: Vec<u64> = table.ids(first + 777).collect();
        assert_eq!(
            from,
            model
                .range(first + 777..)
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
        );
        for (id, parts) in &model {
            assert_eq!(table.get(*id).as_ref(), Some(parts), "entry {id}");
        }
        assert!(table.get(next + 5).is_none());
        assert_eq!(
            table.violations(),
            Vec::<String>::new(),
            "the table keeps its own rules"
        );
    }

    #[test]
    fn should_reuse_the_chunks_of_removed_entries() {
        let mem = VectorMemory::default();
        let region = Segments::create(&mem, 0);
        let mut table = EntryTable::create(region.stream(2), region.stream(3), region.stream(4), 0);
        // A steady load: the oldest removed as new ones come, each state rewritten into a
        // larger class once. After the first round the heap has all the chunks it needs.
        let mut end = 0;
        for id in 0..20_000 {
            table.put(id, Some(&value(id, 120)), &value(id, 70));
            table.put(id, None, &value(id, 110));
            if id >= 1_000 {
                assert!(table.remove(id - 1_000));
            }
            if id == 2_000 {
                end = table.end;
            }
        }
        assert_eq!(
            table.end, end,
            "the heap did not grow after the first round"
        );
        assert_eq!(table.ids(0).count(), 1_000);
        assert_eq!(table.violations(), Vec::<String>::new());
    }

    #[test]
    fn should_keep_an_intent_in_place_while_the_state_changes() {
        let mem = VectorMemory::default();
        let region = Segments::create(&mem, 0);
        let mut table = EntryTable::create(region.stream(2), region.stream(3), region.stream(4), 0);
        let intent = value(1, 4_000);
        table.put(0, Some(&intent), &value(2, 60));
        let end = table.end;
        for len in [90, 200, 400, 90] {
            table.put(0, None, &value(len, len as usize));
        }
        assert_eq!(table.get(0), Some((intent, value(90, 90))));
        // The state took three more chunks (of 96, 208 and 400 bytes); the intent none.
        assert_eq!(table.end, end + 96 + 208 + 400);
    }

    #[test]
    fn should_refuse_a_table_that_is_not_one() {
        let mem = VectorMemory::default();
        let region = Segments::create(&mem, 0);
        let load = || EntryTable::load(region.stream(2), region.stream(3), region.stream(4));
        assert!(load().is_err(), "empty stream");
        EntryTable::create(region.stream(2), region.stream(3), region.stream(4), 0);
        assert!(load().is_ok());
        let dir = region.stream(2);
        dir.write(HEADER_END, &1u64.to_le_bytes());
        assert!(load().is_err(), "heap end past the heap");
        dir.write(HEADER_END, &0u64.to_le_bytes());
        dir.write(HEADER_PAGES, &1u64.to_le_bytes());
        assert!(load().is_err(), "pages past the stream");
        dir.write(HEADER_PAGES, &0u64.to_le_bytes());
        dir.write(0, b"ICJX");
        assert!(load().is_err(), "magic");
    }

    #[test]
    fn should_give_back_the_slot_pages_retention_empties() {
        let mem = VectorMemory::default();
        let region = Segments::create(&mem, 0);
        let mut table = EntryTable::create(region.stream(2), region.stream(3), region.stream(4), 0);
        // A steady load over 100 pages of ids, a window of 5,000 kept: at most three pages in
        // use at once, whatever the number of ids made; one entry of the first page kept for
        // good (a manual-review entry retention never removes) keeps its page.
        for id in 0..100 * PAGE_SLOTS {
            table.put(id, Some(&value(id, 40)), &value(id, 30));
            if id >= 5_000 && id - 5_000 != 7 {
                assert!(table.remove(id - 5_000));
            }
        }
        assert!(table.pages_made <= 4, "{} pages", table.pages_made);
        assert_eq!(table.get(7), Some((value(7, 40), value(7, 30))));
        assert_eq!(table.ids(0).next(), Some(7));
        assert_eq!(table.ids(8).next(), Some(100 * PAGE_SLOTS - 5_000));
        assert_eq!(table.violations(), Vec::<String>::new());
    }
}
