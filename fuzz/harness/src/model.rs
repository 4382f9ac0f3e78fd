//! The oracle: a reference model of the live blocks, checked against what the allocator does.
//!
//! Every live block has a requested size, an alignment, the usable size the allocator claims, and
//! one fill byte that all of its requested bytes must hold (calloc blocks hold zero until written).
//! A block's address range, up to its usable size, sits in an address map so that a block handed
//! out on top of another live one is caught the moment it is handed out.

use crate::program::BlockId;
use std::collections::BTreeMap;
use std::fmt;

/// A live block as the model knows it.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    /// Client pointer.
    pub ptr: *mut u8,
    /// Requested size.
    pub size: usize,
    /// Usable size the allocator reported when the block was handed out.
    pub usable: usize,
    /// Alignment asked for.
    pub align: usize,
    /// The byte every one of the `size` requested bytes holds.
    pub fill: u8,
}

// SAFETY: a block is memory the program holds; the model moves it between the logical threads
// that hold it (on whichever OS thread runs them), and only one of them uses it at a time.
unsafe impl Send for Block {}

/// Something the allocator got wrong, found by the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation(pub String);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The fill byte a fresh block gets: differs between neighbouring blocks and is never zero, so a
/// block that was zeroed or swapped with another one shows.
pub fn fill_for(id: BlockId) -> u8 {
    (id.wrapping_mul(37) as u8).wrapping_add(0x5b) | 1
}

/// Blocks up to this size are filled and checked byte for byte: every slab block (larger ones
/// are page mappings of their own, see below).
pub const DENSE_MAX: usize = hakmem::size_class::SMALL_MAX;
/// In larger blocks, the bytes filled and checked: the first and last `SPARSE_END` bytes, and
/// `SPARSE_PROBE` bytes every `stride(size)`. Large blocks are page mappings, whose bugs lose or
/// misplace whole pages, so samples catch them at a fraction of the cost: touching every byte
/// of a fresh mapping costs a page fault per page, and that made large inputs 100x slower.
pub const SPARSE_END: usize = 4096;
/// Least distance between probes in a large block.
pub const SPARSE_STRIDE: usize = 64 * 1024;
/// Most probes in a large block: each costs a page fault in a fresh mapping (and more under
/// ASan), and 127 of them in an 8 MiB block were most of an input's time.
pub const SPARSE_PROBES_MAX: usize = 16;
/// Bytes per probe.
pub const SPARSE_PROBE: usize = 64;

/// The byte ranges of a block of `size` bytes that the model fills and checks.
pub fn segments(size: usize) -> impl Iterator<Item = (usize, usize)> {
    let dense = size <= DENSE_MAX;
    let head = if dense { size } else { SPARSE_END };
    // A page multiple, so that each probe lands at the same offset in its own page.
    let stride = SPARSE_STRIDE.max((size / SPARSE_PROBES_MAX).next_multiple_of(4096));
    let probes = if dense { 0 } else { (size - SPARSE_END - 1) / stride };
    let tail = (!dense).then(|| (size - SPARSE_END, size));
    core::iter::once((0, head))
        .chain((1..=probes).map(move |k| (k * stride, k * stride + SPARSE_PROBE)))
        .chain(tail)
}

impl Block {
    /// Checks the block's bytes `[from, to)` against the fill byte.
    ///
    /// Eight bytes at a time, in plain loads: through `memcmp`, every call went through ASan's
    /// interceptor (a shadow scan of both ranges) and libFuzzer's memcmp hook, which cost more
    /// than the comparison. (Word compares are not traced either: the libFuzzer targets are
    /// built without trace-compares.)
    fn check_span(&self, id: BlockId, from: usize, to: usize) -> Result<(), Violation> {
        if from >= to {
            return Ok(());
        }
        // SAFETY: the block is live and the callers keep within [0, size), the client's.
        let bytes = unsafe { core::slice::from_raw_parts(self.ptr.add(from), to - from) };
        let word = u64::from_ne_bytes([self.fill; 8]);
        let words = bytes.chunks_exact(8);
        let rest = words.remainder();
        let diff = words.fold(0, |d, w| d | (u64::from_ne_bytes(w.try_into().expect("8 bytes")) ^ word));
        if diff == 0 && rest.iter().all(|&b| b == self.fill) {
            return Ok(());
        }
        let i = bytes.iter().position(|&b| b != self.fill).expect("a byte differs");
        Err(Violation(format!(
            "b{id} at {:p} (size {}): byte {} is {:#04x}, expected {:#04x}",
            self.ptr,
            self.size,
            from + i,
            bytes[i],
            self.fill
        )))
    }

    /// Checks the bytes at `segments(layout)` below `limit` (at most the size) against the fill
    /// byte: after a realloc, the layout of the old block within the new one.
    pub fn check_as(&self, id: BlockId, layout: usize, limit: usize) -> Result<(), Violation> {
        segments(layout).try_for_each(|(from, to)| self.check_span(id, from, to.min(limit)))
    }

    /// Checks every byte the model keeps of the block.
    pub fn check(&self, id: BlockId) -> Result<(), Violation> {
        self.check_as(id, self.size, self.size)
    }

    /// Checks the first and last 16 bytes: where free-list links and neighbours' overflows land,
    /// at a cost independent of the block's size.
    pub fn check_edges(&self, id: BlockId) -> Result<(), Violation> {
        const EDGE: usize = 16;
        if self.size <= 2 * EDGE {
            return self.check(id);
        }
        self.check_span(id, 0, EDGE)?;
        self.check_span(id, self.size - EDGE, self.size)
    }

    /// Checks that every page of a block above the slab tiers is mapped (one `mincore` call):
    /// a block that runs past its mapping would otherwise show as a segmentation fault in the
    /// model's first write, far from saying what went wrong.
    pub fn check_mapped(&self, id: BlockId) -> Result<(), Violation> {
        if self.size <= DENSE_MAX {
            return Ok(());
        }
        let start = self.ptr as usize & !4095;
        let end = (self.ptr as usize + self.size).next_multiple_of(4096);
        let mut vec = vec![0u8; (end - start) / 4096];
        // SAFETY: mincore only reads the page tables; an unmapped page gives ENOMEM.
        let rc = unsafe { libc::mincore(start as *mut libc::c_void, end - start, vec.as_mut_ptr()) };
        if rc != 0 {
            return Err(Violation(format!(
                "b{id} at {:p} (size {}): its pages are not all mapped: the block runs past the mapping it was given",
                self.ptr, self.size
            )));
        }
        Ok(())
    }

    /// Sets every byte the model keeps of the block to the fill byte.
    pub fn fill_all(&self) {
        for (from, to) in segments(self.size) {
            // SAFETY: the block is live and [0, size) is the client's.
            unsafe { self.ptr.add(from).write_bytes(self.fill, to - from) };
        }
    }
}

/// Live address ranges, to catch overlapping blocks.
#[derive(Default)]
pub struct AddrMap {
    /// start -> (block, end of usable range)
    ranges: BTreeMap<usize, (BlockId, usize)>,
}

impl AddrMap {
    /// Records `b` as live, failing if its usable range overlaps a live block's.
    pub fn insert(&mut self, id: BlockId, b: &Block) -> Result<(), Violation> {
        let start = b.ptr as usize;
        let end = start + b.usable.max(1);
        if let Some((&s, &(other, e))) = self.ranges.range(..end).next_back() {
            if e > start {
                return Err(Violation(format!(
                    "b{id} [{start:#x}, {end:#x}) overlaps live b{other} [{s:#x}, {e:#x})"
                )));
            }
        }
        self.ranges.insert(start, (id, end));
        Ok(())
    }

    /// Forgets a block about to be freed.
    pub fn remove(&mut self, b: &Block) {
        self.ranges.remove(&(b.ptr as usize));
    }

    /// The live blocks, by address.
    pub fn ids(&self) -> impl Iterator<Item = BlockId> + '_ {
        self.ranges.values().map(|&(id, _)| id)
    }

    /// The live blocks that start in `[from, to)`.
    pub fn ids_in(&self, from: usize, to: usize) -> impl Iterator<Item = BlockId> + '_ {
        self.ranges.range(from..to).map(|(_, &(id, _))| id)
    }

    /// Number of live blocks.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether no block is live.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Checks what the allocator returned for a new block of `size` bytes at `align`: not null,
/// aligned, and at least as large as asked.
pub fn check_new(id: BlockId, ptr: *mut u8, size: usize, align: usize, usable: usize) -> Result<(), Violation> {
    if ptr.is_null() {
        return Err(Violation(format!("b{id}: allocation of {size} bytes (align {align}) returned null")));
    }
    if !(ptr as usize).is_multiple_of(align) {
        return Err(Violation(format!("b{id} at {ptr:p} is not aligned to {align}")));
    }
    if usable < size {
        return Err(Violation(format!("b{id} at {ptr:p}: usable size {usable} < requested {size}")));
    }
    Ok(())
}
