//! Growable streams in the tail of the meta memory (layout 6).
//!
//! The engine's 16 `MemoryId`s are all in use or retired (`storage.rs`), and a host's other
//! ids are not ours to take, so structures added by layout 6 and later get their own growable
//! memory here instead: the tail of the meta memory, after the counter record, is cut into
//! 1 MiB segments handed out in order to up to 16 streams, each of which is a `Memory` of its
//! own (`Stream`). It is a memory manager in miniature, with what stable-structures'
//! `MemoryManager` would cost us left out: that one reads its whole 32,768-entry bucket table
//! when it loads (0.94M instructions in every `post_upgrade`), this one reads the owners of
//! the segments allocated so far (one read of one byte each: a few hundred at most in
//! practice).
//!
//! # Region (offsets from its start; integers little-endian)
//!
//! | off     | bytes        | what                                                       |
//! |---------|--------------|------------------------------------------------------------|
//! | 0       | 4            | magic `b"ICJS"`                                            |
//! | 4       | 4            | u32 format of the region (1)                               |
//! | 8       | 4            | u32 segments allocated                                     |
//! | 64      | 16 × 8       | u64 size in 64 KiB pages of stream `s`                      |
//! | 256     | 65,536       | u8 stream that owns segment `i` (`i` < segments allocated)   |
//! | 131,072 | 65,536 × 1 MiB | segment `i`                                              |
//!
//! Stream `s`'s byte `off` lives in its `off / 1 MiB`-th segment (in allocation order) at
//! `off % 1 MiB`. Streams in use: 0, the block claims table (`claims.rs`); 1, the owner rows (a
//! B-tree, `storage.rs`); 2, 3 and 4, the entries' directory, heap and slot pages (layout 7,
//! `entries.rs`); 5 and 6, the owner chains' blocks and directory (layout 7, `owners.rs`). A stream id is never reused for another structure, like a
//! `MemoryId`.

use ic_stable_structures::Memory;
use std::cell::RefCell;
use std::rc::Rc;

const MAGIC: &[u8; 4] = b"ICJS";
const FORMAT: u32 = 1;
const HEADER_COUNT: u64 = 8;
const HEADER_SIZES: u64 = 64;
const OWNERS: u64 = 256;
/// Streams a region has room for.
pub const STREAMS: u8 = 16;
/// Segments a region has room for (64 GiB in all).
const MAX_SEGMENTS: u64 = 65_536;
const SEGMENTS_AT: u64 = 131_072;
const PAGE: u64 = 65_536;
const SEGMENT_PAGES: u64 = 16;
const SEGMENT: u64 = SEGMENT_PAGES * PAGE;

/// Stream 0: the block claims table (layout 6).
pub const CLAIMS_STREAM: u8 = 0;
/// Stream 1: the owner rows of layout 6, a `BTreeMap<(u64 owner key, u64 id), ()>`.
pub const OWNER_ROWS_STREAM: u8 = 1;
/// Stream 2: the header and directory of layout 7's entries (`entries.rs`).
pub const ENTRY_DIR_STREAM: u8 = 2;
/// Stream 3: the heap of layout 7's entries (`entries.rs`).
pub const ENTRY_HEAP_STREAM: u8 = 3;
/// Stream 4: the slot pages of layout 7's entries (`entries.rs`).
pub const ENTRY_PAGES_STREAM: u8 = 4;
/// Stream 5: the blocks of layout 7's owner chains (`owners.rs`).
pub const OWNER_BLOCKS_STREAM: u8 = 5;
/// Stream 6: the directory of layout 7's owner chains (`owners.rs`).
pub const OWNER_DIR_STREAM: u8 = 6;

/// Why a region cannot be opened.
#[derive(Debug, PartialEq, Eq)]
pub struct NotARegion;

struct Directory {
    /// Per stream: its size in pages and its segments in order.
    pages: Vec<u64>,
    segments: Vec<Vec<u64>>,
    allocated: u64,
}

/// The region: the memory it lives in, where it starts, and the heap's copy of its directory
/// (written through on every change).
#[derive(Clone)]
pub struct Segments<M: Memory> {
    mem: M,
    base: u64,
    dir: Rc<RefCell<Directory>>,
}

fn reserve<M: Memory>(mem: &M, end: u64) -> bool {
    let pages = end.div_ceil(PAGE);
    mem.size() >= pages || mem.grow(pages - mem.size()) >= 0
}

impl<M: Memory + Clone> Segments<M> {
    /// Writes an empty region at `base` (no segment allocated).
    pub fn create(mem: &M, base: u64) -> Self {
        assert!(
            reserve(mem, base + SEGMENTS_AT),
            "icjournal: out of stable memory"
        );
        let mut header = vec![0u8; OWNERS as usize];
        header[0..4].copy_from_slice(MAGIC);
        header[4..8].copy_from_slice(&FORMAT.to_le_bytes());
        mem.write(base, &header);
        Segments {
            mem: mem.clone(),
            base,
            dir: Rc::new(RefCell::new(Directory {
                pages: vec![0; STREAMS as usize],
                segments: vec![vec![]; STREAMS as usize],
                allocated: 0,
            })),
        }
    }

    /// Reads the region's header and the owners of its allocated segments (two reads).
    pub fn load(mem: &M, base: u64) -> Result<Self, NotARegion> {
        if mem.size() * PAGE < base + SEGMENTS_AT {
            return Err(NotARegion);
        }
        let mut header = [0u8; OWNERS as usize];
        mem.read(base, &mut header);
        let format = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let allocated = u64::from(u32::from_le_bytes(
            header[8..12].try_into().expect("4 bytes"),
        ));
        if &header[0..4] != MAGIC || format != FORMAT || allocated > MAX_SEGMENTS {
            return Err(NotARegion);
        }
        let pages: Vec<u64> = (0..STREAMS as usize)
            .map(|s| {
                let at = HEADER_SIZES as usize + 8 * s;
                u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"))
            })
            .collect();
        let mut owners = vec![0u8; allocated as usize];
        mem.read(base + OWNERS, &mut owners);
        let mut segments = vec![vec![]; STREAMS as usize];
        for (i, s) in owners.iter().enumerate() {
            let list = segments.get_mut(*s as usize).ok_or(NotARegion)?;
            list.push(i as u64);
        }
        for (s, list) in segments.iter().enumerate() {
            if pages[s] > list.len() as u64 * SEGMENT_PAGES {
                return Err(NotARegion);
            }
        }
        Ok(Segments {
            mem: mem.clone(),
            base,
            dir: Rc::new(RefCell::new(Directory {
                pages,
                segments,
                allocated,
            })),
        })
    }

    /// Stream `id` as a memory of its own.
    pub fn stream(&self, id: u8) -> Stream<M> {
        assert!(id < STREAMS, "icjournal: stream {id} out of range");
        Stream {
            region: self.clone(),
            id: id as usize,
        }
    }
}

impl<M: Memory> Segments<M> {
    /// Bytes of the meta memory the region's header and its streams' pages take, from the
    /// memory's start: what the journal uses of it (the last segment of each stream is
    /// reserved whole, 1 MiB, but only its pages in use count).
    pub fn in_use(&self) -> u64 {
        self.base + SEGMENTS_AT + self.dir.borrow().pages.iter().sum::<u64>() * PAGE
    }

    /// The stream whose segment holds byte `off` of the region's memory (`None`: outside
    /// every allocated segment). For benchmarks that attribute reads to structures.
    pub fn stream_at(&self, off: u64) -> Option<u8> {
        let seg = off.checked_sub(self.base + SEGMENTS_AT)? / SEGMENT;
        let dir = self.dir.borrow();
        dir.segments
            .iter()
            .position(|segs| segs.contains(&seg))
            .map(|s| s as u8)
    }

    /// Bytes in use of each stream (its pages).
    pub fn stream_bytes(&self) -> Vec<u64> {
        self.dir.borrow().pages.iter().map(|p| p * PAGE).collect()
    }
}

/// One stream of a region: a `Memory` whose pages live in the region's segments.
#[derive(Clone)]
pub struct Stream<M: Memory> {
    region: Segments<M>,
    id: usize,
}

impl<M: Memory> Stream<M> {
    /// Calls `f(address in the region's memory, range of the buffer)` for each piece of
    /// `[off, off + len)` that lies in one segment.
    fn pieces(&self, off: u64, len: u64, mut f: impl FnMut(u64, std::ops::Range<usize>)) {
        let dir = self.region.dir.borrow();
        let end = off
            .checked_add(len)
            .expect("icjournal: stream offset overflow");
        assert!(
            end <= dir.pages[self.id] * PAGE,
            "icjournal: stream {} access out of bounds",
            self.id
        );
        let mut at = off;
        while at < end {
            let (j, within) = (at / SEGMENT, at % SEGMENT);
            let n = (SEGMENT - within).min(end - at);
            let seg = dir.segments[self.id][j as usize];
            let addr = self.region.base + SEGMENTS_AT + seg * SEGMENT + within;
            f(addr, (at - off) as usize..(at - off + n) as usize);
            at += n;
        }
    }
}

impl<M: Memory> Memory for Stream<M> {
    fn size(&self) -> u64 {
        self.region.dir.borrow().pages[self.id]
    }

    fn grow(&self, pages: u64) -> i64 {
        let region = &self.region;
        let mut dir = region.dir.borrow_mut();
        let old = dir.pages[self.id];
        let Some(new) = old.checked_add(pages) else {
            return -1;
        };
        let need = new.div_ceil(SEGMENT_PAGES);
        let have = dir.segments[self.id].len() as u64;
        if need > have {
            let more = need - have;
            let allocated = dir.allocated + more;
            if allocated > MAX_SEGMENTS
                || !reserve(&region.mem, region.base + SEGMENTS_AT + allocated * SEGMENT)
            {
                return -1;
            }
            let first = dir.allocated;
            region.mem.write(
                region.base + OWNERS + first,
                &vec![self.id as u8; more as usize],
            );
            region.mem.write(
                region.base + HEADER_COUNT,
                &(allocated as u32).to_le_bytes(),
            );
            dir.segments[self.id].extend(first..allocated);
            dir.allocated = allocated;
        }
        dir.pages[self.id] = new;
        region.mem.write(
            region.base + HEADER_SIZES + 8 * self.id as u64,
            &new.to_le_bytes(),
        );
        old as i64
    }

    fn read(&self, offset: u64, dst: &mut [u8]) {
        self.pieces(offset, dst.len() as u64, |addr, r| {
            self.region.mem.read(addr, &mut dst[r])
        });
    }

    fn write(&self, offset: u64, src: &[u8]) {
        self.pieces(offset, src.len() as u64, |addr, r| {
            self.region.mem.write(addr, &src[r])
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_stable_structures::VectorMemory;

    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        (0..n).map(|i| (seed as usize * 31 + i * 7) as u8).collect()
    }

    #[test]
    fn should_keep_interleaved_streams_apart_across_segments_and_reloads() {
        let mem = VectorMemory::default();
        mem.grow(1);
        mem.write(0, b"header before the region");
        let region = Segments::create(&mem, 3 * PAGE);
        let (a, b) = (region.stream(0), region.stream(5));
        let mut model = [vec![], vec![]];
        // Growth in turns, so the two streams' segments interleave; writes straddle segments.
        for round in 0..6u64 {
            for (k, s) in [&a, &b].into_iter().enumerate() {
                let old = s.size();
                assert_eq!(s.grow(7 + round), old as i64);
                model[k].resize((s.size() * PAGE) as usize, 0);
                let at = (old * PAGE).saturating_sub(100);
                let data = bytes(round * 2 + k as u64, 150_000);
                let end = (at as usize + data.len()).min(model[k].len());
                s.write(at, &data[..end - at as usize]);
                model[k][at as usize..end].copy_from_slice(&data[..end - at as usize]);
            }
        }
        let region = Segments::load(&mem, 3 * PAGE).expect("reload");
        for (k, id) in [0u8, 5].into_iter().enumerate() {
            let s = region.stream(id);
            assert_eq!(s.size() * PAGE, model[k].len() as u64);
            let mut back = vec![0u8; model[k].len()];
            s.read(0, &mut back);
            assert!(back == model[k], "stream {id} reads back what was written");
        }
        let mut head = [0u8; 24];
        mem.read(0, &mut head);
        assert_eq!(&head, b"header before the region");
        assert_eq!(region.stream(1).size(), 0);
    }

    #[test]
    fn should_name_the_stream_of_every_allocated_byte() {
        let mem = VectorMemory::default();
        let region = Segments::create(&mem, 3 * PAGE);
        let (a, b) = (region.stream(0), region.stream(5));
        for _ in 0..3 {
            a.grow(SEGMENT_PAGES);
            b.grow(SEGMENT_PAGES);
        }
        for (id, s) in [(0u8, &a), (5, &b)] {
            for off in [0, SEGMENT - 1, SEGMENT, 2 * SEGMENT + 12_345] {
                let mut at = 0;
                s.pieces(off, 1, |addr, _| at = addr);
                assert_eq!(region.stream_at(at), Some(id), "stream {id} byte {off}");
            }
        }
        assert_eq!(region.stream_at(3 * PAGE + 100), None, "the header");
        assert_eq!(region.stream_at(3 * PAGE + SEGMENTS_AT + 6 * SEGMENT), None);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn should_trap_on_a_read_past_the_streams_size() {
        let mem = VectorMemory::default();
        let region = Segments::create(&mem, 0);
        let s = region.stream(0);
        s.grow(1);
        let mut b = [0u8; 2];
        s.read(PAGE - 1, &mut b);
    }

    #[test]
    fn should_refuse_a_region_that_is_not_one() {
        let mem = VectorMemory::default();
        assert!(Segments::load(&mem, 0).is_err(), "empty memory");
        mem.grow(2);
        assert!(Segments::load(&mem, 0).is_err(), "zeroes");
        let region = Segments::create(&mem, 0);
        region.stream(2).grow(1);
        mem.write(OWNERS, &[STREAMS]);
        assert!(Segments::load(&mem, 0).is_err(), "a segment of no stream");
    }
}
