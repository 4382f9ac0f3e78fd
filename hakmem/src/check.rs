//! The checked mode: the [`Checked`] policy, every per-block check, and the state they keep.
//!
//! Nothing here runs for [`crate::Release`]: the slabs reach the free-list hooks through the
//! [`Policy`] trait, the heap and the caches call the rest behind `if P::CHECKED`, a constant.
//! Each hook has a fast path, every check as one condition, and a cold twin that does the
//! checks again one by one to say which failed; the reports come from the cold twins only.
//!
//! # What each check guarantees
//! A checked heap keeps, per block:
//! - a 16-byte header ([`crate::layout`]): word0 is the requested size and allocation number
//!   (the encoded free-list link while free), word1 a canary (a per-heap secret mixed with the
//!   slot address) with the state, class and thread. Every check compares both words with what
//!   the shadow map says they must hold, so **any** change to an allocated block's header is
//!   seen at its free, realloc or `usable_size`; a change to a free slot's word1 at its reuse.
//!   A change that reaches the byte just below the client pointer, with the block below
//!   intact, is named a heap buffer underflow; one the block below overflowed into, that
//!   block's overflow.
//! - a tail canary from the requested size to the end of the slot: **every** byte of it is
//!   checked at free, realloc and `usable_size`, so an overflow of one byte or more that stays
//!   in the slot is seen (one that skips the tail and the next header is not).
//! - large blocks: a 16-byte canary in front of the block, checked at free, realloc and
//!   `usable_size` (a heap buffer underflow).
//! - poison over a free slot's client bytes. One free in [`WHOLE_POISON_EVERY`] (by a hash of
//!   its operation number; every free with [`crate::Heap::set_whole_poison_every`]`(1)`, as the
//!   fuzz harness runs) poisons the whole slot; the others poison the first
//!   [`PARTIAL_HEAD`] bytes and the [`PARTIAL_END`] bytes that ended the block, where a stale
//!   pointer's writes land first (a struct's first and last fields, a string's end). What was
//!   poisoned is checked, every byte of it, when the slot is handed out again, when its slab
//!   goes back to the pool, and in the sweep when the heap is dropped or reset. So a write after
//!   free into a poisoned byte is always seen by the next of those; one into an unpoisoned byte
//!   (the middle of a large block, unsampled) is not. Reads after free are not seen (guard pages
//!   are for those).
//! - free-list links encoded with a per-region key, validated at every pop and drain: the link
//!   must name a carved slot of the same slab, on a slot boundary, that the shadow map has free
//!   or queued.
//! - an entry in the region's shadow map, a separate mapping the client's writes cannot reach
//!   through a block: state, class, requested size, and who allocated and freed it, when.
//!
//! Every state change goes through the shadow map, the free's with a compare-and-swap, so a
//! double free is caught even when two threads race to free one block. A pointer is checked
//! against the heap's table of regions before anything behind it is read, so a wild pointer is
//! reported, not followed.

use crate::layout::{region_base, region_offset, BasePtr, UserPtr, PAGE, REGION_SIZE, SLABS_PER_REGION, SLAB_SIZE, SPAN_SIZE};
use crate::os;
use crate::policy::{Carving, Policy};
use crate::region::{Block, RegionHeader, SmallRegion};
use crate::report::{print_and_abort, Identity, Report, ReportKind};
use crate::slab::Slab;
use core::cell::UnsafeCell;
use core::ptr::null_mut;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;

/// The checked policy: a canary header and tail per block, poisoned free blocks, encoded links,
/// and a shadow map of every block's state (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Checked;

impl Policy for Checked {
    const HEADER: usize = 16;
    const MIN_TAIL: usize = 1;
    const CHECKED: bool = true;
    const NAME: &'static str = "checked";

    #[inline(always)]
    unsafe fn next_free(c: Carving, slot: *mut u8, next: *mut u8) -> *mut u8 {
        // SAFETY: forwarded; both are slots (or the link's claim to one) of a checked slab.
        unsafe { next_free(c, BasePtr::new_unchecked(slot), BasePtr::new_unchecked(next)) }
    }

    #[inline(always)]
    unsafe fn fresh_slots(c: Carving, first: *mut u8, n: usize) {
        // SAFETY: forwarded.
        unsafe { fresh_slots(c, BasePtr::new_unchecked(first), n) }
    }

    #[inline(always)]
    unsafe fn drained(c: Carving, slot: *mut u8) -> bool {
        // SAFETY: forwarded.
        unsafe { drained(c, BasePtr::new_unchecked(slot)) }
    }
}

const _: () = assert!(Checked::HEADER == crate::layout::CHECKED_HEADER);

pub use crate::layout::{POISON, TAIL};

/// `ceil(2^32 / size)` per class: `(n * MAGIC[c]) >> 32 == n / size` for every `n <= 2^16`,
/// which covers any offset in a slab, so slot arithmetic needs no division.
const MAGIC: [u64; crate::size_class::NUM_CLASSES] = {
    let mut m = [0u64; crate::size_class::NUM_CLASSES];
    let mut i = 0;
    while i < m.len() {
        // FAULT fault-slot-index-magic-floor (failure 10): the reciprocal rounded down is one
        // short at slot starts, so a block's offset maps to the slot before it.
        m[i] = if cfg!(feature = "fault-slot-index-magic-floor") {
            (1u64 << MAGIC_SHIFT) / crate::size_class::CLASS_SIZES[i] as u64
        } else {
            (1u64 << MAGIC_SHIFT).div_ceil(crate::size_class::CLASS_SIZES[i] as u64)
        };
        i += 1;
    }
    m
};

/// `off / CLASS_SIZES[class]` for an offset within a slab (a span: up to [`SPAN_SIZE`]).
#[inline(always)]
fn slot_index(off: usize, class: usize) -> usize {
    debug_assert!(off <= SPAN_SIZE && class < MAGIC.len());
    // SAFETY: every class comes from a slab's geometry or state, which holds a class index.
    // (Unchecked: this runs three times per allocation and free.)
    ((off as u64 * unsafe { *MAGIC.get_unchecked(class) }) >> MAGIC_SHIFT) as usize
}

/// The reciprocals' scale: `ceil(2^s / d)` times `off` gives `off / d` exactly while
/// `off * (d - 1) < 2^s` (the rounding error stays below one step), which 32 bits covered for a
/// 64 KiB slab but not for a span of 32 KiB slots; 40 keeps every product below 2^63.
const MAGIC_SHIFT: u32 = 40;
const _: () = assert!((SPAN_SIZE as u64) * (crate::size_class::SMALL_MAX as u64) < 1 << MAGIC_SHIFT);
const _: () = assert!((REGION_SIZE as u64) << (MAGIC_SHIFT - 3) < 1 << 63);

/// Smallest checked slot: a header, a byte, a tail byte, rounded to the 16-byte classes.
const MIN_SLOT: usize = 32;
/// Shadow entries reserved per slab.
const SLOTS_PER_SLAB: usize = SLAB_SIZE / MIN_SLOT;

// Block states in the shadow map.
pub(crate) const NEVER: u64 = 0;
pub(crate) const ALLOCATED: u64 = 1;
/// On its slab's free list (the slab's owner holds it).
pub(crate) const FREE: u64 = 2;
/// On its slab's remote queue (or a cache's pending chain of remote frees).
pub(crate) const REMOTE: u64 = 3;
/// Set aside after a failed check in capture mode; never handed out again.
pub(crate) const QUARANTINED: u64 = 4;

// Header states (word1's low byte): distinct from each other and from zeroed memory.
const HDR_ALLOCATED: u64 = 0xA1;
const HDR_FREE: u64 = 0xF2;

fn state_name(s: u64) -> &'static str {
    match s {
        NEVER => "never allocated",
        ALLOCATED => "allocated",
        FREE => "free",
        REMOTE => "queued for a remote free",
        QUARANTINED => "quarantined",
        _ => "unknown",
    }
}

// ---- per-heap state ----------------------------------------------------------------------

/// Entries in a heap's region table (open addressing; a heap with more regions than this in use
/// at once is far beyond what checked mode is for).
const TABLE_LEN: usize = 8192;
const EMPTY: usize = 0;
const TOMBSTONE: usize = 1;
const TAG_SMALL: usize = 1;
const TAG_LARGE: usize = 2;
const TAG_LARGE_FREED: usize = 3;

/// A checked heap's secret, sequence counter, report sink and region table. It lives in its
/// own mapping so regions can point at it even if the `Heap` value moves.
pub(crate) struct CheckState {
    secret: u64,
    seq: AtomicU64,
    capture: AtomicBool,
    reports: Mutex<Vec<Report>>,
    /// `region base | tag`; written under the heap lock, read without it.
    table: [AtomicUsize; TABLE_LEN],
    /// The first `written_len` entries of the table ever written since the last reset, so that
    /// a reset clears those rather than the whole 64 KiB table (which was a quarter of a small
    /// fuzz input's time). Past `WRITTEN_LOG` of them, a reset clears it all. Under the heap lock.
    written: UnsafeCell<[u16; WRITTEN_LOG]>,
    written_len: AtomicUsize,
    /// A free poisons (and the slot's reuse checks) the whole slot when the free's operation
    /// number, mixed, has these bits clear (0: always); else only where a stale write lands
    /// first (`poison_runs`).
    whole_poison_mask: AtomicU64,
}

/// One free in this many poisons the whole slot by default (and its reuse checks it whole): the
/// whole fill and check were the largest cost of checked mode (a `memset` and a `memcmp` of
/// the slot per free and allocation).
pub const WHOLE_POISON_EVERY: u32 = 16;

/// How many written table entries a check state remembers for its reset.
const WRITTEN_LOG: usize = 256;

const STATE_BYTES: usize = match crate::layout::round_up(core::mem::size_of::<CheckState>(), PAGE) {
    Some(n) => n,
    None => panic!(),
};

/// Lazily creates the check state of a heap; null if the OS refuses memory.
pub(crate) fn create_state() -> *mut CheckState {
    // SAFETY: a page multiple; the mapping is fresh, zeroed and ours.
    unsafe {
        let p = os::map_aligned(STATE_BYTES, PAGE).cast::<CheckState>();
        if !p.is_null() {
            (&raw mut (*p).secret).write(random_secret(p.addr()));
            (&raw mut (*p).seq).write(AtomicU64::new(1));
            (&raw mut (*p).capture).write(AtomicBool::new(false));
            (&raw mut (*p).reports).write(Mutex::new(Vec::new()));
            (&raw mut (*p).whole_poison_mask).write(AtomicU64::new(WHOLE_POISON_EVERY as u64 - 1));
            // The table is zeroed memory, which is what EMPTY atomics are.
        }
        p
    }
}

/// Frees a state made by [`create_state`].
///
/// # Safety
/// Nothing may use the state afterwards.
pub(crate) unsafe fn destroy_state(s: *mut CheckState) {
    // SAFETY: per the contract; the Mutex and Vec are dropped before their memory goes.
    unsafe {
        core::ptr::drop_in_place(&raw mut (*s).reports);
        os::unmap(s.cast(), STATE_BYTES, PAGE);
    }
}

fn random_secret(salt: usize) -> u64 {
    let mut v = 0u64;
    // SAFETY: writing 8 bytes into a local.
    let got = unsafe { libc::getrandom((&raw mut v).cast(), 8, libc::GRND_NONBLOCK) };
    if got != 8 {
        // No entropy yet (early boot): the address still differs between runs under ASLR.
        v = salt as u64 ^ 0x9e37_79b9_7f4a_7c15;
    }
    // Only the high half is used: it is the high half of every canary (see `canary`).
    (mix(v) | 1 << 63) & !0xffff_ffff
}

/// A 64-bit finaliser (murmur3's): every input bit affects every output bit.
#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl CheckState {
    /// Switches this heap from print-and-abort to recording reports.
    pub(crate) fn capture(&self) {
        self.capture.store(true, Relaxed);
    }

    /// Takes the recorded reports.
    pub(crate) fn take(&self) -> Vec<Report> {
        core::mem::take(&mut *self.reports.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Delivers a report: recorded in capture mode, else printed with an abort.
    #[cold]
    #[inline(never)]
    pub(crate) fn report(&self, r: Report) {
        if !self.capture.load(Relaxed) {
            print_and_abort(&r);
        }
        self.reports.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    }

    /// Poisons (and checks) the whole slot on one free in `n` (rounded up to a power of two;
    /// 0 and 1: on every free).
    pub(crate) fn set_whole_poison_every(&self, n: u32) {
        self.whole_poison_mask.store(n.max(1).next_power_of_two() as u64 - 1, Relaxed);
    }

    /// Whether the free by operation `seq` poisons the whole slot.
    #[inline(always)]
    fn whole_poison_check(&self, seq: u64) -> bool {
        // Mixed, so that a program alternating allocations and frees (each takes a number)
        // still has every residue of the mask come up.
        (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) & self.whole_poison_mask.load(Relaxed) == 0
    }

    /// The next number for an operation by a thread with no cache.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Relaxed)
    }

    fn hash(base: usize) -> usize {
        // Region numbers are dense (the kernel maps top-down and regions are aligned), so their
        // low bits spread over the table as well as a mixed hash would, for less work per free.
        (base / REGION_SIZE) & (TABLE_LEN - 1)
    }

    /// The tag under which `base` (a region-aligned address) is known, or 0.
    fn lookup(&self, base: usize) -> usize {
        let mut i = Self::hash(base);
        for _ in 0..TABLE_LEN {
            let v = self.table[i].load(Acquire);
            if v == EMPTY {
                return 0;
            }
            if v != TOMBSTONE && v & !3 == base {
                return v & 3;
            }
            i = (i + 1) & (TABLE_LEN - 1);
        }
        0
    }

    /// Records `base` with `tag`. Called under the heap lock, which serialises writers.
    fn register(&self, base: usize, tag: usize) {
        for evict_freed in [false, true] {
            let mut i = Self::hash(base);
            let mut free_slot = None;
            for _ in 0..TABLE_LEN {
                let v = self.table[i].load(Relaxed);
                if v != EMPTY && v != TOMBSTONE && v & !3 == base {
                    free_slot = Some(i);
                    break;
                }
                if evict_freed && v != TOMBSTONE && v & 3 == TAG_LARGE_FREED {
                    self.table[i].store(TOMBSTONE, Relaxed);
                    free_slot = free_slot.or(Some(i));
                } else if v == EMPTY || v == TOMBSTONE {
                    free_slot = free_slot.or(Some(i));
                    if v == EMPTY {
                        break;
                    }
                }
                i = (i + 1) & (TABLE_LEN - 1);
            }
            if let Some(i) = free_slot {
                self.note_written(i);
                self.table[i].store(base | tag, Release);
                return;
            }
        }
        print_and_abort(&Report {
            detail: "the checked heap's region table is full",
            ..Report::new(ReportKind::Invariant, base, 0)
        });
    }

    /// Remembers that table entry `i` was written, for [`state_reset`]. Under the heap lock.
    fn note_written(&self, i: usize) {
        let n = self.written_len.load(Relaxed);
        if n < WRITTEN_LOG {
            // SAFETY: the heap lock serialises every writer of the log.
            unsafe { (*self.written.get())[n] = i as u16 };
        }
        self.written_len.store(n + 1, Relaxed);
    }

    /// Replaces the record of `base` by `tag` (0 removes it).
    fn reregister(&self, base: usize, tag: usize) {
        let mut i = Self::hash(base);
        for _ in 0..TABLE_LEN {
            let v = self.table[i].load(Relaxed);
            if v == EMPTY {
                return;
            }
            if v != TOMBSTONE && v & !3 == base {
                self.table[i].store(if tag == 0 { TOMBSTONE } else { base | tag }, Release);
                return;
            }
            i = (i + 1) & (TABLE_LEN - 1);
        }
    }
}

// ---- shadow map --------------------------------------------------------------------------

/// One block's record.
#[derive(Default)]
struct Entry {
    /// state (bits 0-2) | the client pointer's offset in the slot, as `HEADER << n` (n in bits
    /// 3-6; 0 before the first allocation) | [`WHOLE`] (7) | class (8-15) | allocating thread
    /// (16-39) | freeing thread (40-63).
    meta: AtomicU64,
    /// Of the last allocation: its header's word0, that is the requested size (bits 0-31) and
    /// the allocation number's low half (32-63), so that a free compares the header with one
    /// load.
    word0: AtomicU64,
    /// The whole allocation number, for reports.
    alloc_seq: AtomicU64,
    free_seq: AtomicU64,
}

impl Entry {
    /// The requested size of the slot's last allocation.
    fn requested_size(&self) -> usize {
        self.word0.load(Relaxed) as u32 as usize
    }

    /// Where the client's bytes of the slot's last allocation start in the slot.
    fn user_offset(&self) -> usize {
        meta_offset(self.meta.load(Relaxed))
    }
}

/// Flag beside the state in `meta`: the slot's poison was written whole when it was freed (or
/// carved), not only where a stale write lands first (see [`CheckState::whole_poison_check`]).
const WHOLE: u64 = 0x80;
/// The state's bits in `meta`.
const STATE: u64 = 0x7;
/// Where `meta` keeps the client pointer's offset.
const OFFSET_SHIFT: u32 = 3;
/// The offset's bits in `meta`.
const OFFSET: u64 = 0xf << OFFSET_SHIFT;

fn meta_state(m: u64) -> u64 {
    m & STATE
}
/// The client pointer's offset in the slot that `meta` records.
#[inline(always)]
fn meta_offset(m: u64) -> usize {
    Checked::HEADER << ((m & OFFSET) >> OFFSET_SHIFT)
}
/// `offset` (a `layout::user_offset`: the header's size, or an alignment above it) as `meta`
/// bits.
#[inline(always)]
fn offset_bits(offset: usize) -> u64 {
    debug_assert!(offset.is_power_of_two() && offset >= Checked::HEADER && offset <= crate::size_class::SMALL_ALIGN_MAX);
    ((offset / Checked::HEADER).trailing_zeros() as u64) << OFFSET_SHIFT
}
fn meta_alloc_thread(m: u64) -> u32 {
    ((m >> 16) & 0xff_ffff) as u32
}
fn meta_free_thread(m: u64) -> u32 {
    (m >> 40) as u32
}

/// A small region's shadow: per slab its geometry, per slot an [`Entry`].
struct Shadow {
    /// `class << 32 | slot_size` of each slab's current assignment; 0 before the first.
    geometry: [AtomicU64; SLABS_PER_REGION],
    /// Slots of each slab's current assignment carved so far: only their entries were written.
    carved: [AtomicU64; SLABS_PER_REGION],
    entries: [Entry; SLABS_PER_REGION * SLOTS_PER_SLAB],
}

/// Bytes of a region's shadow map (a mapping of its own, made by the heap).
pub(crate) const SHADOW_BYTES: usize = match crate::layout::round_up(core::mem::size_of::<Shadow>(), PAGE) {
    Some(n) => n,
    None => panic!(),
};

/// Where a slab address lies: its region, slab and that slab's first slot.
#[derive(Clone, Copy)]
struct Place {
    region: *mut SmallRegion,
    slab: usize,
    start: usize,
}

impl Place {
    /// # Safety
    /// `p` must lie in a live small region of a checked heap.
    unsafe fn of(p: *mut u8) -> Place {
        let region = region_base(p).cast::<SmallRegion>();
        // SAFETY: per the contract; a live region's masks never change.
        let off = crate::layout::slab_offset(p, unsafe { (*region).offset_mask });
        Place::at(region, off)
    }

    /// The place of the slab at offset `off` of `region` (its first unit's start).
    #[inline(always)]
    fn at(region: *mut SmallRegion, off: usize) -> Place {
        let start = if off == 0 { crate::region::SMALL_HEADER } else { off };
        Place { region, slab: off >> crate::layout::SLAB_SHIFT, start: region.addr() + start }
    }

    /// The region's shadow, as a raw pointer: its parts are reached by raw projections, never
    /// through a reference to the whole 8 MiB (which Miri retags byte by byte at every use).
    ///
    /// # Safety
    /// As for [`Place::of`].
    unsafe fn shadow(self) -> *const Shadow {
        // SAFETY: forwarded.
        unsafe { (*self.region).shadow.cast::<Shadow>() }
    }

    /// The slab's geometry word in the shadow.
    ///
    /// # Safety
    /// As for [`Place::of`].
    unsafe fn geometry_word(self) -> &'static AtomicU64 {
        // SAFETY: a checked region's shadow lives until the region is released; slab is in bounds.
        unsafe { &*(&raw const (*self.shadow()).geometry).cast::<AtomicU64>().add(self.slab) }
    }

    /// The slab's carved-slots word in the shadow.
    ///
    /// # Safety
    /// As for [`Place::of`].
    unsafe fn carved_word(self) -> &'static AtomicU64 {
        // SAFETY: as for geometry_word.
        unsafe { &*(&raw const (*self.shadow()).carved).cast::<AtomicU64>().add(self.slab) }
    }

    /// # Safety
    /// As for [`Place::of`].
    unsafe fn state(self) -> &'static CheckState {
        // SAFETY: the check state outlives the heap's regions.
        unsafe { &*(*self.region).hdr.checks.cast::<CheckState>() }
    }

    /// (class, slot size) of the slab's current assignment; None before its first.
    ///
    /// # Safety
    /// As for [`Place::of`].
    unsafe fn geometry(self) -> Option<(usize, usize)> {
        // SAFETY: forwarded.
        let g = unsafe { self.geometry_word() }.load(Acquire);
        (g != 0).then_some(((g >> 32) as usize, (g & 0xffff_ffff) as usize))
    }

    /// Slots of the slab's current assignment carved so far.
    ///
    /// # Safety
    /// As for [`Place::of`].
    unsafe fn carved(self) -> usize {
        // SAFETY: forwarded.
        // (Bounded so that every entry index stays in the table: a span's slots may take
        // the entries of the units after its first.)
        (unsafe { self.carved_word() }.load(Acquire) as usize).min((SLABS_PER_REGION - self.slab) * SLOTS_PER_SLAB)
    }

    /// Every carved slot of the slab back to "never allocated", the count back to zero.
    ///
    /// # Safety
    /// As for [`Place::of`], and the slab holds no live or queued block and is owned by the
    /// caller (the heap, under its lock): nobody else may read these entries meanwhile.
    unsafe fn forget_slots(self) {
        // SAFETY: per the contract; zero bytes are NEVER entries, and one memset of the carved
        // entries beats a store per field (this runs whenever a slab changes class).
        unsafe {
            let n = self.carved();
            // The pointer comes from the whole table, not one entry, so that it may cover n.
            let table = (&raw const (*self.shadow()).entries).cast::<Entry>().cast_mut();
            core::ptr::write_bytes(table.add(self.slab * SLOTS_PER_SLAB), 0, n);
            self.carved_word().store(0, Relaxed);
        }
    }

    /// The end of the slab's bytes (of its span, in a span region).
    ///
    /// # Safety
    /// As for [`Place::of`].
    unsafe fn end(self) -> usize {
        // SAFETY: forwarded.
        unsafe { SmallRegion::slab_span(self.region, self.slab).1.addr() }
    }

    /// # Safety
    /// As for [`Place::of`]; `self.slab * SLOTS_PER_SLAB + slot` below the table's length (a
    /// slot of the slab: a slot is at least [`MIN_SLOT`] bytes).
    unsafe fn entry(self, slot: usize) -> &'static Entry {
        // SAFETY: forwarded.
        debug_assert!(self.slab < SLABS_PER_REGION && self.slab * SLOTS_PER_SLAB + slot < SLABS_PER_REGION * SLOTS_PER_SLAB);
        // (Unchecked: the index is in bounds by the contract, and this runs several times per
        // allocation and free.)
        unsafe { &*(&raw const (*self.shadow()).entries).cast::<Entry>().add(self.slab * SLOTS_PER_SLAB + slot) }
    }

    fn base(self, slot: usize, slot_size: usize) -> BasePtr {
        let addr = self.start + slot * slot_size;
        // SAFETY: within the live region (callers pass a slot of the slab's geometry).
        unsafe { BasePtr::new_unchecked(self.region.cast::<u8>().with_addr(addr)) }
    }

    /// A report about slot `slot` of this slab with what the shadow knows of it.
    ///
    /// # Safety
    /// As for [`Place::entry`].
    unsafe fn report(self, kind: ReportKind, slot: usize, class: usize, slot_size: usize, thread: u32) -> Report {
        // SAFETY: forwarded.
        let e = unsafe { self.entry(slot) };
        let m = e.meta.load(Acquire);
        let alloc_seq = e.alloc_seq.load(Relaxed);
        let free_seq = e.free_seq.load(Relaxed);
        let user = self.base(slot, slot_size).to_user_at(e.user_offset());
        Report {
            class: Some(class),
            class_size: Some(slot_size),
            requested: (alloc_seq != 0).then(|| e.requested_size()),
            region: Some(self.region.addr()),
            slab: Some(self.slab),
            alloc: (alloc_seq != 0).then_some(Identity { seq: alloc_seq, thread: meta_alloc_thread(m) }),
            free: (free_seq != 0).then_some(Identity { seq: free_seq, thread: meta_free_thread(m) }),
            ..Report::new(kind, user.as_ptr().addr(), thread)
        }
    }
}

// ---- header, tail and poison -------------------------------------------------------------

/// The keyed canary of the header of the slot at `base`: unpredictable to a stray write (the
/// secret) and different for every slot (the address), so a header copied from another slot
/// shows. Every check compares a header with what the shadow map says it must hold, word for
/// word, so any change to it shows whatever the canary's strength: it needs no MAC.
#[inline(always)]
fn canary(secret: u64, base: usize) -> u64 {
    // The secret's low half is zero (see `random_secret`), and so is the shifted address's:
    // the low half is free for the state, class and thread. Slots 4 GiB apart share a canary,
    // which costs nothing: the shadow map, not the canary, says which header a slot must hold.
    secret ^ ((base as u64) << 32)
}

/// The header word1 for a slot in `state` (HDR_*): the canary over the state, class and (while
/// allocated) thread in its low half.
#[inline(always)]
fn word1(secret: u64, base: usize, state: u64, class: usize, thread: u32) -> u64 {
    let low = ((thread as u64 & 0xffff) << 16) | ((class as u64) << 8) | state;
    canary(secret, base) | low
}

/// Filled copies of the two patterns, as long as the longest run to check (a whole slot), so a
/// long check is one `memcmp` (libc's is vectorised) rather than a byte loop.
static POISON_RUN: [u8; crate::size_class::SMALL_MAX] = [POISON; crate::size_class::SMALL_MAX];
static TAIL_RUN: [u8; crate::size_class::SMALL_MAX] = [TAIL; crate::size_class::SMALL_MAX];

/// Runs up to this long are checked and filled inline, by a few overlapping loads or stores
/// from both ends (no loop: the compiler would turn one into a call): a call to `memcmp` or
/// `memset` costs more than the words of a typical tail canary.
const SHORT_RUN: usize = 64;

/// Whether the `len <= SHORT_RUN` bytes at `p` all equal `byte`.
///
/// # Safety
/// The range must be readable.
#[inline(always)]
unsafe fn short_run_is(p: *const u8, len: usize, byte: u8) -> bool {
    debug_assert!(len <= SHORT_RUN);
    let w = u64::from_ne_bytes([byte; 8]);
    // SAFETY: per the contract; every load lies within [p, p + len).
    unsafe {
        let rd = |o: usize| p.add(o).cast::<u64>().read_unaligned() == w;
        if len >= 16 {
            let ends = rd(0) & rd(8) & rd(len - 16) & rd(len - 8);
            if len <= 32 {
                ends
            } else {
                ends & rd(16) & rd(24) & rd(len - 32) & rd(len - 24)
            }
        } else if len >= 8 {
            rd(0) & rd(len - 8)
        } else if len >= 4 {
            let w = w as u32;
            (p.cast::<u32>().read_unaligned() == w) & (p.add(len - 4).cast::<u32>().read_unaligned() == w)
        } else {
            len == 0 || (*p == byte) & (*p.add(len / 2) == byte) & (*p.add(len - 1) == byte)
        }
    }
}

/// Fills the `len <= SHORT_RUN` bytes at `p` with `byte`.
///
/// # Safety
/// The range must be writable.
#[inline(always)]
unsafe fn short_fill(p: *mut u8, len: usize, byte: u8) {
    debug_assert!(len <= SHORT_RUN);
    let w = u64::from_ne_bytes([byte; 8]);
    // SAFETY: per the contract; every store lies within [p, p + len).
    unsafe {
        let wr = |o: usize| p.add(o).cast::<u64>().write_unaligned(w);
        if len >= 16 {
            wr(0);
            wr(8);
            wr(len - 16);
            wr(len - 8);
            if len > 32 {
                wr(16);
                wr(24);
                wr(len - 32);
                wr(len - 24);
            }
        } else if len >= 8 {
            wr(0);
            wr(len - 8);
        } else if len >= 4 {
            p.cast::<u32>().write_unaligned(w as u32);
            p.add(len - 4).cast::<u32>().write_unaligned(w as u32);
        } else if len > 0 {
            *p = byte;
            *p.add(len / 2) = byte;
            *p.add(len - 1) = byte;
        }
    }
}

/// Index of the first byte in `[p, p + len)` that is not `byte` (POISON or TAIL).
///
/// # Safety
/// The range must be readable and `len <= SMALL_MAX`.
#[inline(always)]
unsafe fn first_mismatch(p: *const u8, len: usize, byte: u8) -> Option<usize> {
    debug_assert!(byte == POISON || byte == TAIL);
    // SAFETY: per the contract.
    let same = unsafe {
        if len <= SHORT_RUN {
            short_run_is(p, len, byte)
        } else {
            let run = if byte == POISON { &POISON_RUN[..len] } else { &TAIL_RUN[..len] };
            core::slice::from_raw_parts(p, len) == run
        }
    };
    if same {
        return None;
    }
    // SAFETY: as above.
    unsafe { position_of_mismatch(p, len, byte) }
}

/// The index [`first_mismatch`] reports, once it knows there is one.
///
/// # Safety
/// As for [`first_mismatch`].
#[cold]
#[inline(never)]
unsafe fn position_of_mismatch(p: *const u8, len: usize, byte: u8) -> Option<usize> {
    // SAFETY: forwarded.
    unsafe { core::slice::from_raw_parts(p, len) }.iter().position(|&b| b != byte)
}

/// Fills `[p, p + len)` with `byte`.
///
/// # Safety
/// The range must be writable.
#[inline(always)]
unsafe fn fill(p: *mut u8, len: usize, byte: u8) {
    // SAFETY: forwarded.
    unsafe {
        if len <= SHORT_RUN {
            short_fill(p, len, byte)
        } else {
            p.write_bytes(byte, len)
        }
    }
}

/// What went wrong with a slot's header, blaming its lower neighbour when that one overflowed
/// (or was written after free) into it: the likeliest way a header changes.
///
/// # Safety
/// `slot` is a carved slot of `at`'s slab, whose geometry is `(class, size)`.
unsafe fn header_report(at: Place, slot: usize, class: usize, size: usize, thread: u32, found: u64, expected: u64, before: Option<WriteBefore>) -> Report {
    // SAFETY: per the contract; slot - 1 is carved too.
    unsafe {
        if slot > 0 {
            let prev = slot - 1;
            let e = at.entry(prev);
            match meta_state(e.meta.load(Acquire)) {
                ALLOCATED => {
                    let (req, off) = (e.requested_size(), e.user_offset());
                    let user = at.base(prev, size).to_user_at(off).as_ptr();
                    let _open = crate::asan::Unpoisoned::block(at.base(prev, size).as_ptr(), size, user, req);
                    if let Some(o) = first_mismatch(user.add(req), size - off - req, TAIL) {
                        return Report {
                            offset: Some(req + o),
                            expected: TAIL as u64,
                            found: *user.add(req + o) as u64,
                            detail: "overflowed into the next block's header",
                            ..at.report(ReportKind::Overflow, prev, class, size, thread)
                        };
                    }
                }
                FREE | REMOTE => {
                    let user = at.base(prev, size).to_user::<Checked>().as_ptr();
                    let _open = crate::asan::Unpoisoned::new(at.base(prev, size).as_ptr(), size);
                    if let Some(o) = first_mismatch(user, size - Checked::HEADER, POISON) {
                        return Report {
                            offset: Some(o),
                            expected: POISON as u64,
                            found: *user.add(o) as u64,
                            detail: "and into the next block's header",
                            ..at.report(ReportKind::WriteAfterFree, prev, class, size, thread)
                        };
                    }
                }
                _ => {}
            }
        }
        if let Some(w) = before {
            return Report { offset: Some(w.bytes), expected: w.expected, found: w.found, ..at.report(ReportKind::Underflow, slot, class, size, thread) };
        }
        Report { expected, found, ..at.report(ReportKind::HeaderCorrupt, slot, class, size, thread) }
    }
}

/// A write just before a block's client bytes, as its header's damage shows it.
#[derive(Clone, Copy)]
struct WriteBefore {
    /// How far before the client pointer the lowest changed byte is.
    bytes: usize,
    /// That byte, and what it should hold.
    found: u64,
    expected: u64,
}

/// The write before the block that changed a header from `expected` to `found` (words 0 and
/// 1), if that is what the damage shows: the byte right below the client pointer changed and
/// the header's first byte did not. A lower neighbour's overflow reaches the header from that
/// other end; a header missing altogether (never written there: an allocator bug, not an
/// underflow) differs in both.
fn write_before(found: [u64; 2], expected: [u64; 2]) -> Option<WriteBefore> {
    let bytes = |w: [u64; 2]| (w[0] as u128) | (w[1] as u128) << 64;
    let (f, e) = (bytes(found), bytes(expected));
    let diff = f ^ e;
    if diff >> 120 == 0 || diff & 0xff != 0 {
        return None;
    }
    let low = diff.trailing_zeros() as usize / 8;
    Some(WriteBefore { bytes: 16 - low, found: (f >> (8 * low)) as u64 & 0xff, expected: (e >> (8 * low)) as u64 & 0xff })
}

// ---- hooks: regions, slabs ---------------------------------------------------------------

/// A small region was mapped for a checked heap: give it its shadow (a zeroed mapping of
/// [`SHADOW_BYTES`]) and a link key, register it. Called under the heap lock.
///
/// # Safety
/// `r` is a freshly initialised region; `cs` the heap's live check state.
pub(crate) unsafe fn region_created(cs: *mut CheckState, r: *mut SmallRegion, shadow: *mut u8) {
    // SAFETY: per the contract.
    unsafe {
        (*r).shadow = shadow;
        (*r).hdr.checks = cs.cast();
        (*r).hdr.link_key = mix((*cs).secret ^ r.addr() as u64) as usize;
        (*cs).register(r.addr(), TAG_SMALL);
    }
}

/// A small region is about to be unmapped: no block of it may be allocated or queued
/// (failure 7 of the C history). Called under the heap lock. Returns its shadow map, for the
/// heap to give back.
///
/// # Safety
/// `r` is a live checked region whose slabs are all pooled.
pub(crate) unsafe fn region_released(r: *mut SmallRegion) -> *mut u8 {
    // SAFETY: per the contract.
    unsafe {
        let cs = &*(*r).hdr.checks.cast::<CheckState>();
        for slab in 0..SLABS_PER_REGION {
            let at = Place { region: r, slab, start: SmallRegion::slab_span(r, slab).0.addr() };
            if let Some((class, size)) = at.geometry() {
                if let Some((slot, state)) = live_slot(at) {
                    cs.report(Report {
                        detail: state_name(state),
                        ..at.report(ReportKind::Invariant, slot, class, size, 0)
                    });
                }
            }
        }
        cs.reregister(r.addr(), 0);
        region_dropped(r)
    }
}

/// Detaches a region's shadow map, when the region goes with its heap (or a reset), zeroed
/// again: the caller gives the mapping back (null if the region had none).
///
/// # Safety
/// `r` is a live checked region that is being unmapped.
pub(crate) unsafe fn region_dropped(r: *mut SmallRegion) -> *mut u8 {
    // SAFETY: per the contract; the shadow was given by region_created. Only the carved slots'
    // entries and each slab's geometry were ever written: clearing those is cheaper than
    // asking the kernel which of its thousand pages were touched.
    unsafe {
        if !(*r).shadow.is_null() {
            for slab in 0..SLABS_PER_REGION {
                let at = Place { region: r, slab, start: SmallRegion::slab_span(r, slab).0.addr() };
                if at.geometry().is_some() || at.carved() > 0 {
                    at.forget_slots();
                    at.geometry_word().store(0, Relaxed);
                }
            }
        }
        core::mem::replace(&mut (*r).shadow, null_mut())
    }
}

/// A reset heap's check state: no regions, operation numbers from the start, no recorded
/// reports. The secret and the capture setting stay.
///
/// # Safety
/// The heap has no cache and no region.
pub(crate) unsafe fn state_reset(cs: &CheckState) {
    // Entries only ever change from EMPTY in `register`, which logs them (`reregister` rewrites
    // an entry `register` wrote).
    let n = cs.written_len.load(Relaxed);
    if n <= WRITTEN_LOG {
        // SAFETY: no other thread can reach the heap (it has no cache and is borrowed mutably).
        for &i in unsafe { &(&*cs.written.get())[..n] } {
            cs.table[i as usize].store(EMPTY, Relaxed);
        }
    } else {
        // SAFETY: as above, and zero bytes are EMPTY atomics; one memset beats 8192 stores.
        unsafe { core::ptr::write_bytes(cs.table.as_ptr().cast_mut(), 0, TABLE_LEN) };
    }
    cs.written_len.store(0, Relaxed);
    cs.seq.store(1, Relaxed);
    cs.take();
}

/// Checks the header and poison of every free or queued slot of a region whose heap is going
/// away or being reset: a write after free into a block that was never handed out again, in a
/// slab that never went back to the pool (an abandoned one, say), shows here at the latest.
///
/// # Safety
/// `r` is a live checked region of a heap with no cache.
pub(crate) unsafe fn verify_free_slots(r: *mut SmallRegion) {
    // SAFETY: per the contract: no cache, so nothing changes these slots meanwhile.
    unsafe {
        if (*r).shadow.is_null() {
            return; // released already (only a test that plants that bug gets here)
        }
        let cs = &*(*r).hdr.checks.cast::<CheckState>();
        for slab in 0..SLABS_PER_REGION {
            // A purged slab (pooled, and no longer dirty) lost its bytes, headers and poison
            // included, to the OS: nothing is left to check. Its entries stay, so that a late
            // free of one of its blocks is still named a double free.
            if (*r).dirty & (1 << slab) == 0 {
                continue;
            }
            let at = Place { region: r, slab, start: SmallRegion::slab_span(r, slab).0.addr() };
            let Some((class, size)) = at.geometry() else { continue };
            for slot in 0..at.carved() {
                if matches!(meta_state(at.entry(slot).meta.load(Acquire)), FREE | REMOTE) {
                    let _open = crate::asan::Unpoisoned::new(at.base(slot, size).as_ptr(), size);
                    verify_free_slot(cs, at, slot, class, size, 0);
                }
            }
        }
    }
}

/// The shadow map's state of slot `slot` of slab `slab` of the checked region `r` (one of the
/// constants above), for the consistency sweep.
///
/// # Safety
/// `r` is a live checked region with a shadow; `slot < ` the slab's carved slots.
pub(crate) unsafe fn slot_state(r: *mut SmallRegion, slab: usize, slot: usize) -> u64 {
    // SAFETY: per the contract.
    unsafe {
        let at = Place { region: r, slab, start: SmallRegion::slab_span(r, slab).0.addr() };
        meta_state(at.entry(slot).meta.load(Acquire))
    }
}

/// The shadow map's geometry of slab `slab` of the checked region `r` (class, slot size) and
/// its count of carved slots, for the consistency sweep.
///
/// # Safety
/// `r` is a live checked region with a shadow.
pub(crate) unsafe fn slab_shadow(r: *mut SmallRegion, slab: usize) -> (Option<(usize, usize)>, usize) {
    // SAFETY: per the contract.
    unsafe {
        let at = Place { region: r, slab, start: SmallRegion::slab_span(r, slab).0.addr() };
        (at.geometry(), at.carved())
    }
}

/// The first slot of a slab that is allocated or queued, and its state.
///
/// # Safety
/// `at` is a slab of a live checked region.
unsafe fn live_slot(at: Place) -> Option<(usize, u64)> {
    // SAFETY: forwarded.
    let slots = unsafe { at.carved() };
    (0..slots).find_map(|i| {
        // SAFETY: forwarded.
        let s = meta_state(unsafe { at.entry(i) }.meta.load(Acquire));
        matches!(s, ALLOCATED | REMOTE).then_some((i, s))
    })
}

/// A pooled slab starts serving `class`: its slots start over as never allocated. Called under
/// the heap lock.
///
/// # Safety
/// `slab` is slab `i` of the live checked region `r`, just assigned.
pub(crate) unsafe fn slab_assigned(r: *mut SmallRegion, i: usize, class: usize, slot_size: usize) {
    // SAFETY: per the contract.
    unsafe {
        let at = Place { region: r, slab: i, start: SmallRegion::slab_span(r, i).0.addr() };
        if let Some((old_class, old_size)) = at.geometry() {
            if let Some((slot, state)) = live_slot(at) {
                at.state().report(Report {
                    detail: "slab reassigned while this block is live",
                    found: state,
                    ..at.report(ReportKind::Invariant, slot, old_class, old_size, 0)
                });
            }
            at.forget_slots();
            // FAULT fault-shadow-stale-class (failure 5): a slab that served a class before keeps
            // that class (and slot size) in the shadow map.
            if cfg!(feature = "fault-shadow-stale-class") {
                return;
            }
        }
        debug_assert!(slot_size >= MIN_SLOT);
        at.geometry_word().store(((class as u64) << 32) | slot_size as u64, Release);
    }
}

/// Whether a thread cache's storage about to be handed out is unused: zero after its first word
/// (the arena's free-list link) up to `size`. Reports the first byte that is not.
///
/// # Safety
/// `slot` points to `size` readable bytes of the heap's cache arena, owned by the caller.
pub(crate) unsafe fn cache_slot_unused(cs: &CheckState, slot: *mut u8, size: usize) -> bool {
    let word = core::mem::size_of::<usize>();
    // SAFETY: per the contract.
    let bytes = unsafe { core::slice::from_raw_parts(slot.add(word), size - word) };
    let Some(i) = bytes.iter().position(|&b| b != 0) else { return true };
    cs.report(Report {
        detail: "a new thread cache's storage is in use (cache slots overlap?)",
        found: bytes[i] as u64,
        expected: 0,
        ..Report::new(ReportKind::Invariant, slot.addr() + word + i, 0)
    });
    false
}

/// A slab goes back to the pool: no block of it may be live or queued (the shadow map says
/// which were handed out), every slot on its free list must still carry an intact header and
/// poison (this is where a write after free into a block never handed out again shows), and
/// the list must hold every carved slot. Called under the heap lock.
///
/// # Safety
/// The caller owns `slab`, a slab of a checked region of the heap whose check state is `cs`
/// (mapped, though perhaps given back by mistake).
pub(crate) unsafe fn slab_released(cs: &CheckState, slab: *mut Slab) {
    // SAFETY: per the contract.
    unsafe {
        let r = SmallRegion::of_slab(slab);
        if cs.lookup(r.addr()) != TAG_SMALL || (*r).shadow.is_null() {
            cs.report(Report {
                region: Some(r.addr()),
                detail: "a slab goes back to the pool from a region that was already given back (the region went while in use)",
                ..Report::new(ReportKind::Invariant, slab.addr(), 0)
            });
            return;
        }
        let i = SmallRegion::index_of(r, slab);
        let at = Place { region: r, slab: i, start: SmallRegion::slab_span(r, i).0.addr() };
        if let (Some((class, size)), Some((slot, state))) = (at.geometry(), live_slot(at)) {
            cs.report(Report {
                detail: if state == REMOTE {
                    "slab goes back to the pool while this block is queued for a remote free"
                } else {
                    "slab goes back to the pool while this block is allocated"
                },
                found: state,
                ..at.report(ReportKind::Invariant, slot, class, size, 0)
            });
            return;
        }
        let local = &(*slab).local;
        let Some(first) = local.free else { return };
        let (class, size) = (local.class as usize, local.slot_size as usize);
        let carved = slot_index(local.bump.addr() - at.start, class);
        // ASan builds: the carved slots are poisoned (all free); open them for the walk.
        let _open = crate::asan::Unpoisoned::new(at.base(0, size).as_ptr(), local.bump.addr() - at.start);
        let mut n = 0;
        let mut cur = Some(first);
        while let Some(b) = cur {
            if n == carved {
                cs.report(Report {
                    detail: "free list longer than the slots carved (a cycle?)",
                    ..at.report(ReportKind::Invariant, slot_index(b.as_ptr().addr() - at.start, class), class, size, 0)
                });
                return;
            }
            let slot = slot_index(b.as_ptr().addr() - at.start, class);
            if !verify_free_slot(cs, at, slot, class, size, 0) {
                return;
            }
            n += 1;
            cur = b.link::<Checked>().and_then(|n| BasePtr::from_raw(next_free(local.carving(), b, n)));
        }
        if n != carved {
            cs.report(Report {
                class: Some(class),
                class_size: Some(size),
                region: Some(at.region.addr()),
                slab: Some(at.slab),
                expected: carved as u64,
                found: n as u64,
                detail: "free slab's list does not hold every slot it carved",
                ..Report::new(ReportKind::Invariant, at.start, 0)
            });
        }
    }
}

/// Checks a free slot's header and poison; false (after a report) if either changed. The poison
/// is checked where the free wrote it: whole, or (a free not sampled by
/// [`CheckState::whole_poison_check`]) the [`PARTIAL_HEAD`] bytes after the header and the
/// [`PARTIAL_END`] bytes before the slot's end.
///
/// # Safety
/// `slot` is a carved slot of `at`'s slab, whose geometry is `(class, size)`.
unsafe fn verify_free_slot(cs: &CheckState, at: Place, slot: usize, class: usize, size: usize, thread: u32) -> bool {
    // SAFETY: per the contract.
    unsafe {
        let whole = at.entry(slot).meta.load(Acquire) & WHOLE != 0;
        let b = at.base(slot, size);
        let h = b.header();
        let expect = word1(cs.secret, b.as_ptr().addr(), HDR_FREE, class, 0);
        if (*h).word1 != expect {
            cs.report(header_report(at, slot, class, size, thread, (*h).word1, expect, None));
            return false;
        }
        let user = b.to_user::<Checked>().as_ptr();
        let bad = poison_runs(size - Checked::HEADER, at.entry(slot).requested_size(), whole).iter().find_map(|&(o, n)| first_mismatch(user.add(o), n, POISON).map(|i| o + i));
        if let Some(o) = bad {
            cs.report(Report {
                offset: Some(o),
                expected: POISON as u64,
                found: *user.add(o) as u64,
                ..at.report(ReportKind::WriteAfterFree, slot, class, size, thread)
            });
            return false;
        }
        true
    }
}

/// Poison bytes after a free slot's header checked at every reuse: where a stale pointer to a
/// struct writes first (its first fields).
const PARTIAL_HEAD: usize = 32;
/// Poison bytes that ended the block freed, checked at every reuse: where a stale pointer's
/// write to the block's last field, or its terminator, lands.
const PARTIAL_END: usize = 16;

// ---- hooks: free lists -------------------------------------------------------------------

/// Validates the link `next` read from the free slot `b`: it must be null or a carved slot of
/// the same slab that is free (or queued, on a remote queue). On failure, reports and ends the
/// list there.
///
/// # Safety
/// `b` is a free slot of a checked slab in the state `c`.
#[inline(always)]
unsafe fn next_free(c: Carving, b: BasePtr, n: BasePtr) -> *mut u8 {
    let a = n.as_ptr().addr();
    // SAFETY: per the contract; the entry is read only for a slot boundary below `bump`, a
    // carved slot.
    unsafe {
        let at = Place::of(b.as_ptr());
        let off = a.wrapping_sub(at.start);
        // (`off` wraps past any span for a link below the slab's start.)
        if a < c.bump.addr() && off < SPAN_SIZE {
            let slot = slot_index(off, c.class);
            if slot * c.slot_size == off && matches!(meta_state(at.entry(slot).meta.load(Acquire)), FREE | REMOTE) {
                return n.as_ptr();
            }
        }
        bad_link(c, b, n)
    }
}

/// Reports the link `n` read from the free slot `b` that [`next_free`] rejected; ends the
/// list there (None).
///
/// # Safety
/// As for [`next_free`].
#[cold]
#[inline(never)]
unsafe fn bad_link(c: Carving, b: BasePtr, n: BasePtr) -> *mut u8 {
    // SAFETY: per the contract.
    unsafe {
        let at = Place::of(b.as_ptr());
        let (size, class) = (c.slot_size, c.class);
        let a = n.as_ptr().addr();
        let in_range = a >= at.start && a < c.bump.addr();
        let slot = if in_range { slot_index(a - at.start, class) } else { 0 };
        let ok_place = in_range && at.start + slot * size == a;
        let from = slot_index(b.as_ptr().addr() - at.start, class);
        at.state().report(Report {
            expected: 0,
            found: a as u64,
            detail: if ok_place { "link names a slot that is not free" } else { "link points outside the slab's slots" },
            ..at.report(ReportKind::CorruptLink, from, class, size, 0)
        });
        null_mut()
    }
}

/// Freshly carved slots go on the free list: free headers, poison, shadow "free".
///
/// # Safety
/// `first` and the `n - 1` slots after it were just carved from a checked slab in the state `c`.
unsafe fn fresh_slots(c: Carving, first: BasePtr, n: usize) {
    // SAFETY: per the contract.
    unsafe {
        let at = Place::of(first.as_ptr());
        let cs = at.state();
        let (class, size) = (c.class, c.slot_size);
        let slot0 = slot_index(first.as_ptr().addr() - at.start, class);
        // ASan builds: freshly carved slots are poisoned; open them to write headers and poison.
        let _open = crate::asan::Unpoisoned::new(first.as_ptr(), n * size);
        // One memset over the batch, headers written over it after: per-slot memsets were most
        // of the cost of carving small slots.
        first.as_ptr().write_bytes(POISON, n * size);
        for slot in slot0..slot0 + n {
            let b = at.base(slot, size);
            let e = at.entry(slot);
            let m = e.meta.load(Relaxed);
            if meta_state(m) != NEVER {
                cs.report(Report {
                    detail: "carved a slot the shadow map already knows",
                    found: meta_state(m),
                    ..at.report(ReportKind::Invariant, slot, class, size, 0)
                });
            }
            (*b.header()).word1 = word1(cs.secret, b.as_ptr().addr(), HDR_FREE, class, 0);
            e.meta.store(FREE | WHOLE | ((class as u64) << 8), Release);
        }
        at.carved_word().store((slot0 + n) as u64, Release);
    }
}

/// The carved slot of a live small region of the heap that `p` lies in: its place, class, slot
/// size and index; None if `p` lies in none.
///
/// # Safety
/// None: `p` is checked against the heap's region table first.
unsafe fn carved_slot(cs: &CheckState, p: *mut u8) -> Option<(Place, usize, usize, usize)> {
    if cs.lookup(region_base(p).addr()) != TAG_SMALL || region_offset(p) < crate::region::SMALL_HEADER {
        return None;
    }
    // SAFETY: the table says the region is a live small region of this heap.
    unsafe {
        let at = Place::of(p);
        let (class, size) = at.geometry()?;
        let slot = slot_index(p.addr() - at.start, class);
        (slot < at.carved()).then_some((at, class, size, slot))
    }
}

/// Whether `p`, a slot named by a batch of remote frees on its way between caches (slots of
/// any slab of the heap), is a slot queued for a remote free, before anything in it is read;
/// false after a report (the caller must not place it).
///
/// # Safety
/// None: `p` is checked against the heap's region table first.
pub(crate) unsafe fn queued_in_batch(cs: &CheckState, p: *mut u8) -> bool {
    // SAFETY: carved_slot found the slot in a live small region of this heap.
    unsafe {
        if let Some((at, _, size, slot)) = carved_slot(cs, p) {
            if at.start + slot * size == p.addr() && meta_state(at.entry(slot).meta.load(Acquire)) == REMOTE {
                return true;
            }
        }
    }
    bad_batch_entry(cs, p);
    false
}

/// Reports the slot `p` that [`queued_in_batch`] rejected: inside a carved slot, that slot, whose
/// start the entry should have been.
#[cold]
#[inline(never)]
fn bad_batch_entry(cs: &CheckState, p: *mut u8) {
    let a = p.addr();
    // SAFETY: as in queued_in_batch.
    let (r, expected) = unsafe {
        match carved_slot(cs, p) {
            Some((at, class, size, slot)) => (at.report(ReportKind::CorruptLink, slot, class, size, 0), (at.start + slot * size) as u64),
            None => (Report::new(ReportKind::CorruptLink, a, 0), 0),
        }
    };
    cs.report(Report { expected, found: a as u64, detail: "a batch of remote frees names no queued slot", ..r });
}

/// A slot came off its slab's remote queue onto the free list: queued → free. False (after a
/// report) if it was not queued; the drain stops there rather than splice it in.
///
/// # Safety
/// `b` is a slot of a checked slab in the state `c`, just taken from its remote queue.
unsafe fn drained(c: Carving, b: BasePtr) -> bool {
    // SAFETY: per the contract.
    unsafe {
        let at = Place::of(b.as_ptr());
        let size = c.slot_size;
        let slot = slot_index(b.as_ptr().addr() - at.start, c.class);
        let e = at.entry(slot);
        let m = e.meta.load(Acquire);
        if meta_state(m) != REMOTE {
            at.state().report(Report {
                detail: "slot on the remote queue is not queued there (is it in two lists?)",
                found: meta_state(m),
                expected: REMOTE,
                ..at.report(ReportKind::Invariant, slot, c.class, size, 0)
            });
            return false;
        }
        e.meta.store((m & !STATE) | FREE, Relaxed);
        true
    }
}

// ---- hooks: allocation and free ----------------------------------------------------------

/// The allocation hook: `b` was just taken from `slab`'s free list for a request of `size`
/// bytes, to start `offset` bytes into the slot (a `layout::user_offset`), by cache `thread`.
/// Verifies the slot (its poison where the free wrote it, see [`poison_runs`]), stamps it
/// allocated; returns the client pointer, or
/// null (after a captured report) if the slot failed a check.
///
/// # Safety
/// The caller owns `slab`, a checked slab, and just popped or carved `b` from it.
#[inline(always)]
pub(crate) unsafe fn hand_out(slab: *mut Slab, b: BasePtr, size: usize, offset: usize, who: Identity) -> *mut u8 {
    let thread = who.thread;
    // SAFETY: per the contract.
    unsafe {
        let local = &(*slab).local;
        let at = Place::of(b.as_ptr());
        let cs = at.state();
        let (class, slot_size) = (local.class as usize, local.slot_size as usize);
        let slot = slot_index(b.as_ptr().addr() - at.start, class);
        // ASan builds: open the free slot to check and stamp it; poisoned whole again on return
        // (the caller then opens the requested bytes).
        let _open = crate::asan::Unpoisoned::new(b.as_ptr(), slot_size);
        let e = at.entry(slot);
        let m = e.meta.load(Acquire);
        let whole = m & WHOLE != 0;
        // Every check as one condition; the cold path does them again, one by one, to report.
        let intact = meta_state(m) == FREE
            && offset + size <= slot_size
            && (*b.header()).word1 == word1(cs.secret, b.as_ptr().addr(), HDR_FREE, class, 0)
            && free_poison_intact(b, slot_size, e.requested_size(), whole);
        if !intact && !hand_out_checks(cs, at, slot, class, slot_size, size, offset, thread) {
            return null_mut();
        }
        let seq = who.seq;
        let word0 = (size as u64) | (seq << 32);
        let user = b.to_user_at(offset);
        // FAULT fault-aligned-header-at-slot (failure 2): the header goes to the slot's start,
        // where every check but this one reads it only for blocks at the header offset.
        let h = if cfg!(feature = "fault-aligned-header-at-slot") { b.header() } else { user.header() };
        (*h).word0 = word0;
        (*h).word1 = word1(cs.secret, b.as_ptr().addr(), HDR_ALLOCATED, class, thread);
        // An aligned block's front padding holds tail bytes too: see `verify_allocated`.
        if offset > Checked::HEADER {
            b.as_ptr().write_bytes(TAIL, offset - Checked::HEADER);
        }
        let user = user.as_ptr();
        fill(user.add(size), slot_size - offset - size, TAIL);
        e.word0.store(word0, Relaxed);
        e.alloc_seq.store(seq, Relaxed);
        e.free_seq.store(0, Relaxed);
        let meta = ALLOCATED | offset_bits(offset) | ((class as u64) << 8) | ((thread as u64 & 0xff_ffff) << 16);
        e.meta.store(meta, Release);
        user
    }
}

/// The runs `(offset, len)` of a free slot's client bytes (`len` of them) that hold poison:
/// all of them, or (`whole` false) the [`PARTIAL_HEAD`] bytes after the header and the
/// [`PARTIAL_END`] bytes that ended the block freed (`req` bytes long), where a stale
/// pointer's writes land first: its first fields and its last.
#[inline(always)]
fn poison_runs(len: usize, req: usize, whole: bool) -> [(usize, usize); 2] {
    match partial_end(len, req, whole) {
        None => [(0, len), (len, 0)],
        Some(end) => [(0, PARTIAL_HEAD), (end, PARTIAL_END)],
    }
}

/// Where the end run of [`poison_runs`] starts, or None when the whole slot holds poison.
#[inline(always)]
fn partial_end(len: usize, req: usize, whole: bool) -> Option<usize> {
    (!whole && len > PARTIAL_HEAD + PARTIAL_END).then(|| req.clamp(PARTIAL_HEAD + PARTIAL_END, len) - PARTIAL_END)
}

/// Whether a free slot's poison is intact; [`verify_free_slot`] reports what this only tells.
///
/// # Safety
/// `b` is a free slot of `size` bytes, readable.
#[inline(always)]
unsafe fn free_poison_intact(b: BasePtr, size: usize, req: usize, whole: bool) -> bool {
    let user = b.to_user::<Checked>().as_ptr();
    let len = size - Checked::HEADER;
    // SAFETY: per the contract; the runs lie in the slot. (Spelled out so that the partial
    // runs have constant lengths.)
    unsafe {
        match partial_end(len, req, whole) {
            None => first_mismatch(user, len, POISON).is_none(),
            Some(end) => short_run_is(user, PARTIAL_HEAD, POISON) & short_run_is(user.add(end), PARTIAL_END, POISON),
        }
    }
}

/// Poisons the client bytes of the slot `b` just freed (its block `req` bytes long), the runs
/// of [`poison_runs`].
///
/// # Safety
/// `b` is a slot of `size` bytes the caller owns.
#[inline(always)]
unsafe fn poison(b: BasePtr, size: usize, req: usize, whole: bool) {
    let user = b.to_user::<Checked>().as_ptr();
    let len = size - Checked::HEADER;
    // SAFETY: as in `free_poison_intact`.
    unsafe {
        match partial_end(len, req, whole) {
            None => fill(user, len, POISON),
            Some(end) => {
                short_fill(user, PARTIAL_HEAD, POISON);
                short_fill(user.add(end), PARTIAL_END, POISON);
            }
        }
    }
}

/// The hand-out checks one by one, for a slot that failed one of them: reports the first that
/// fails and sets the slot aside (false); true if none does.
///
/// # Safety
/// As for [`hand_out`]; `slot` is the carved slot of `at`'s slab being handed out.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn hand_out_checks(cs: &CheckState, at: Place, slot: usize, class: usize, slot_size: usize, size: usize, offset: usize, thread: u32) -> bool {
    // SAFETY: per the contract.
    unsafe {
        let e = at.entry(slot);
        let m = e.meta.load(Acquire);
        let report = if meta_state(m) != FREE {
            Some(Report {
                detail: "handed out a block that is not free",
                expected: FREE,
                found: meta_state(m),
                ..at.report(ReportKind::Invariant, slot, class, slot_size, thread)
            })
        } else if !verify_free_slot(cs, at, slot, class, slot_size, thread) {
            None
        } else if offset + size > slot_size {
            Some(Report {
                detail: "a request handed a slot too small for it (the slab serves another class?)",
                expected: (offset + size) as u64,
                found: slot_size as u64,
                ..at.report(ReportKind::Invariant, slot, class, slot_size, thread)
            })
        } else {
            return true;
        };
        if let Some(r) = report {
            cs.report(r);
        }
        e.meta.store((m & !STATE) | QUARANTINED, Relaxed);
        false
    }
}

/// A small block proven live: where it is and what the shadow map says of it.
#[derive(Clone, Copy)]
struct LiveSmall {
    at: Place,
    slot: usize,
    class: usize,
    size: usize,
    /// The entry's `meta` word when it was proven live (what the free's CAS expects).
    meta: u64,
}

/// Where a pointer handed to free, realloc or usable_size lies, once proven to be a live block.
enum Live {
    Small(LiveSmall),
    /// A large block; its header.
    Large(*mut RegionHeader),
    /// A block in a guard arena (the guard pool checks it).
    Guard,
}

/// The common case of [`find_live`] in a few loads: `p` is the client pointer of an allocated
/// block of plain alignment (its client bytes right after the header) in a small region the
/// table finds at its first probe. None sends the caller to `find_live`, which decides (and
/// reports) every other case.
///
/// # Safety
/// None: `p` is checked against the region table before anything behind it is read.
#[inline(always)]
unsafe fn live_fast(cs: &CheckState, p: *mut u8) -> Option<LiveSmall> {
    let base = region_base(p);
    if cs.table[CheckState::hash(base.addr())].load(Acquire) != base.addr() | TAG_SMALL {
        return None;
    }
    let region = base.cast::<SmallRegion>();
    // SAFETY: the table says `base` is a live small region of this heap; `i` is one of its slabs.
    unsafe {
        let at = Place::at(region, crate::layout::slab_offset(p, (*region).offset_mask));
        let g = at.geometry_word().load(Acquire);
        let off = p.addr().wrapping_sub(at.start);
        if g == 0 || off >= SPAN_SIZE {
            return None;
        }
        let (class, size) = ((g >> 32) as usize, (g & 0xffff_ffff) as usize);
        let slot = slot_index(off, class);
        // An allocated entry is a whole carved slot, so its entry exists and is in bounds.
        if slot >= SPAN_SIZE / MIN_SLOT {
            return None;
        }
        let e = at.entry(slot);
        let meta = e.meta.load(Acquire);
        // (State and offset in one test: offset bits 0 are the header's size.)
        (meta & (STATE | OFFSET) == ALLOCATED && off - slot * size == Checked::HEADER).then_some(LiveSmall { at, slot, class, size, meta })
    }
}

/// Finds the live block `p` of the heap whose check state is `cs`, or reports why it is not
/// one. `large_header` finds the header of the large block starting exactly at a pointer.
/// (Callers try [`live_fast`] first; this decides every case, that one's too.)
fn find_live(cs: &CheckState, p: *mut u8, thread: u32, op: &'static str, large_header: impl FnOnce(*mut u8) -> *mut RegionHeader) -> Option<Live> {
    let base = region_base(p);
    let fail = |kind, detail| {
        cs.report(Report { detail, ..Report::new(kind, p.addr(), thread) });
        None
    };
    if crate::guard::owns(p) {
        return Some(Live::Guard);
    }
    match cs.lookup(base.addr()) {
        TAG_SMALL => {}
        TAG_LARGE => {
            let h = large_header(p);
            if h.is_null() {
                return fail(ReportKind::InvalidFree, "inside a large block, not at its start");
            }
            // SAFETY: p is a live large block, a page or more into its mapping.
            unsafe {
                let front = p.sub(LARGE_FRONT);
                let _open = crate::asan::Unpoisoned::new(front, LARGE_FRONT);
                if let Some(o) = first_mismatch(front, LARGE_FRONT, TAIL) {
                    cs.report(Report {
                        offset: Some(LARGE_FRONT - o),
                        expected: TAIL as u64,
                        found: *front.add(o) as u64,
                        // (A large block's header keeps its mapping, not the size asked for,
                        // which a report must not claim to know.)
                        detail: "in front of a large block",
                        ..Report::new(ReportKind::Underflow, p.addr(), thread)
                    });
                    return None;
                }
            }
            return Some(Live::Large(h));
        }
        TAG_LARGE_FREED => return fail(ReportKind::DoubleFree, "a large block that was already freed"),
        _ => return fail(ReportKind::ForeignPointer, "not in any region of this heap"),
    }
    if region_offset(p) < crate::region::SMALL_HEADER {
        return fail(ReportKind::InvalidFree, "points into a region's metadata");
    }
    // SAFETY: p lies in a live small region of this heap (the table says so).
    unsafe {
        let at = Place::of(p);
        let Some((class, size)) = at.geometry() else {
            return fail(ReportKind::InvalidFree, "in a slab that never held blocks");
        };
        let off = p.addr() - at.start;
        let slot = slot_index(off, class);
        let within = off - slot * size;
        let whole = at.start + (slot + 1) * size <= at.end();
        // (The entry is only there for a whole slot; the offset is the last allocation's, so
        // that a second free of an aligned block is still a double free.)
        let user_offset = if whole { at.entry(slot).user_offset() } else { Checked::HEADER };
        if within != user_offset || !whole {
            let mut r = Report { detail: "not the start of a block", ..Report::new(ReportKind::InvalidFree, p.addr(), thread) };
            if whole {
                r = Report { addr: p.addr(), detail: r.detail, ..at.report(ReportKind::InvalidFree, slot, class, size, thread) };
                r.offset = within.checked_sub(user_offset);
            }
            cs.report(r);
            return None;
        }
        let meta = at.entry(slot).meta.load(Acquire);
        let live = Live::Small(LiveSmall { at, slot, class, size, meta });
        // FAULT fault-remote-double-free-unseen (failure 12): a block still queued for a remote
        // free counts as live.
        let remote_live = if cfg!(feature = "fault-remote-double-free-unseen") { meta_state(meta) == REMOTE } else { false };
        match meta_state(meta) {
            _ if remote_live => Some(live),
            ALLOCATED => Some(live),
            FREE | REMOTE if at.entry(slot).alloc_seq.load(Relaxed) != 0 => {
                cs.report(Report { detail: op, ..at.report(ReportKind::DoubleFree, slot, class, size, thread) });
                None
            }
            FREE | REMOTE => {
                cs.report(Report { detail: "never allocated", ..at.report(ReportKind::InvalidFree, slot, class, size, thread) });
                None
            }
            s => {
                cs.report(Report { detail: state_name(s), ..at.report(ReportKind::InvalidFree, slot, class, size, thread) });
                None
            }
        }
    }
}

/// Checks a live small block's header and tail; false after a report.
///
/// # Safety
/// The block is live (`find_live` said so).
#[inline(always)]
unsafe fn verify_allocated(cs: &CheckState, l: LiveSmall, thread: u32) -> bool {
    let LiveSmall { at, slot, class, size, meta } = l;
    // SAFETY: per the contract.
    unsafe {
        let b = at.base(slot, size);
        let e = at.entry(slot);
        let (req, off) = (e.requested_size(), meta_offset(meta));
        let user = b.to_user_at(off);
        let h = user.header();
        let word0 = e.word0.load(Relaxed);
        let expect = word1(cs.secret, b.as_ptr().addr(), HDR_ALLOCATED, class, meta_alloc_thread(meta));
        if (*h).word0 != word0 || (*h).word1 != expect {
            let (found, expected) = if (*h).word0 != word0 { ((*h).word0, word0) } else { ((*h).word1, expect) };
            let before = write_before([(*h).word0, (*h).word1], [word0, expect]);
            cs.report(header_report(at, slot, class, size, thread, found, expected, before));
            return false;
        }
        // An aligned block's front padding, where the lower neighbour's overflow lands first.
        if off > Checked::HEADER {
            if let Some(o) = first_mismatch(b.as_ptr(), off - Checked::HEADER, TAIL) {
                cs.report(header_report(at, slot, class, size, thread, *b.as_ptr().add(o) as u64, TAIL as u64, None));
                return false;
            }
        }
        let user = user.as_ptr();
        // FAULT fault-tail-check-off-by-one (failure 12): the slot's last tail byte is not checked.
        let tail = size - off - req - cfg!(feature = "fault-tail-check-off-by-one") as usize;
        if let Some(o) = first_mismatch(user.add(req), tail, TAIL) {
            cs.report(Report {
                offset: Some(req + o),
                expected: TAIL as u64,
                found: *user.add(req + o) as u64,
                ..at.report(ReportKind::Overflow, slot, class, size, thread)
            });
            return false;
        }
        true
    }
}

/// The free hook: proves `p` is a live block of the heap whose check state is `cs`, checks its
/// header and tail, marks it free (owned by `token`'s slab list or queued remote), poisons it.
/// None (after a captured report) when the free must not happen. `large_header` as for
/// [`find_live`].
///
/// # Safety
/// `token` and `who` identify the calling cache (NO_OWNER and an [`Identity::NO_CACHE`] thread for none).
#[inline(always)]
pub(crate) unsafe fn before_free(cs: &CheckState, p: *mut u8, token: usize, who: Identity, large_header: impl FnOnce(*mut u8) -> *mut RegionHeader) -> Option<Block> {
    // SAFETY: live_fast proves the block live before anything in it is read.
    unsafe {
        if let Some(l) = live_fast(cs, p) {
            // ASan builds: open the slot to read its header and tail.
            let _open = crate::asan::Unpoisoned::new(l.at.base(l.slot, l.size).as_ptr(), l.size);
            if allocated_intact(cs, l) {
                return mark_freed(cs, l, p, token, who);
            }
        }
        before_free_checks(cs, p, token, who, large_header)
    }
}

/// Whether the live block of a plain (not over-aligned) allocation has its header and tail
/// canary intact; [`verify_allocated`] reports what this only tells.
///
/// # Safety
/// [`live_fast`] found the block (live, its client bytes right after the header).
#[inline(always)]
unsafe fn allocated_intact(cs: &CheckState, l: LiveSmall) -> bool {
    // SAFETY: per the contract.
    unsafe {
        let e = l.at.entry(l.slot);
        let off = Checked::HEADER; // live_fast admits no other
        let word0 = e.word0.load(Relaxed);
        let req = word0 as u32 as usize;
        let b = l.at.base(l.slot, l.size);
        let h = b.header();
        // FAULT fault-tail-check-off-by-one (failure 12): the slot's last tail byte is not checked.
        let tail = l.size - off - req - cfg!(feature = "fault-tail-check-off-by-one") as usize;
        (*h).word0 == word0
            && (*h).word1 == word1(cs.secret, b.as_ptr().addr(), HDR_ALLOCATED, l.class, meta_alloc_thread(l.meta))
            && first_mismatch(b.as_ptr().add(off + req), tail, TAIL).is_none()
    }
}

/// The free hook's checks one by one, for a block the fast path did not prove live and intact.
///
/// # Safety
/// As for [`before_free`].
#[cold]
#[inline(never)]
unsafe fn before_free_checks(cs: &CheckState, p: *mut u8, token: usize, who: Identity, large_header: impl FnOnce(*mut u8) -> *mut RegionHeader) -> Option<Block> {
    let l = match find_live(cs, p, who.thread, "", large_header)? {
        Live::Large(_) => return Some(Block::Large),
        Live::Guard => return Some(Block::Guard),
        Live::Small(l) => l,
    };
    // SAFETY: find_live proved the block live and its place.
    unsafe {
        let _open = crate::asan::Unpoisoned::new(l.at.base(l.slot, l.size).as_ptr(), l.size);
        if !verify_allocated(cs, l, who.thread) {
            return None;
        }
        mark_freed(cs, l, p, token, who)
    }
}

/// Marks the live, checked block `l` (client pointer `p`) free by `who`, owned by `token`'s
/// list or queued remote, and poisons it; None (after a report) if another free won the race.
///
/// # Safety
/// `l` was just proven live and intact.
#[inline(always)]
unsafe fn mark_freed(cs: &CheckState, l: LiveSmall, p: *mut u8, token: usize, who: Identity) -> Option<Block> {
    let LiveSmall { at, slot, class, size, meta } = l;
    let thread = who.thread;
    // SAFETY: per the contract.
    unsafe {
        // ASan builds: open the slot to poison it; poisoned whole again on return.
        let _open = crate::asan::Unpoisoned::new(at.base(slot, size).as_ptr(), size);
        // (From the place already found: the same slab as `slab_of(p)`, without its loads.)
        let slab = (&raw mut (*at.region).slabs).cast::<crate::slab::Slab>().add(at.slab);
        // An abandoned slab's owner is NO_OWNER, which is also the token of a free by no cache;
        // such a free still goes through the remote queue.
        let local = token != crate::slab::NO_OWNER && (*slab).owner_token() == token;
        let e = at.entry(slot);
        let whole = cs.whole_poison_check(who.seq);
        let new = (meta & !(STATE | WHOLE) & !(0xff_ffff << 40)) | if local { FREE } else { REMOTE } | if whole { WHOLE } else { 0 } | ((thread as u64) << 40);
        // FAULT fault-aligned-free-base (failure 1): the slot is taken to start a header's
        // length below the client's pointer, which holds only for blocks at the header offset.
        let list_base = if cfg!(feature = "fault-aligned-free-base") {
            UserPtr::new(p).expect("non-null").to_base::<Checked>()
        } else {
            at.base(slot, size)
        };
        // The CAS makes two racing frees of one block end in one free and one report.
        if e.meta.compare_exchange(meta, new, AcqRel, Acquire).is_err() {
            cs.report(Report { detail: "raced with another free", ..at.report(ReportKind::DoubleFree, slot, class, size, thread) });
            return None;
        }
        e.free_seq.store(who.seq, Relaxed);
        let b = at.base(slot, size);
        (*b.header()).word1 = word1(cs.secret, b.as_ptr().addr(), HDR_FREE, class, 0);
        poison(b, size, e.requested_size(), whole);
        Some(Block::Small(slab, list_base))
    }
}

/// The bytes the client asked for in the live block `p` (checked mode's usable size: using the
/// tail is an overflow). None after a captured report. `large_header` as for [`find_live`];
/// `guarded` answers for a block of a guard arena.
///
/// # Safety
/// None beyond `cs` being a checked heap's; `p` is checked before anything behind it is read.
pub(crate) unsafe fn requested_size(
    cs: &CheckState,
    p: *mut u8,
    thread: u32,
    op: &'static str,
    large_header: impl FnOnce(*mut u8) -> *mut RegionHeader,
    guarded: impl FnOnce(*mut u8) -> Option<usize>,
) -> Option<usize> {
    // SAFETY: live_fast checks p against the table first; find_live (or it) proved the block live.
    unsafe {
        let live = match live_fast(cs, p) {
            Some(l) => Live::Small(l),
            None => find_live(cs, p, thread, op, large_header)?,
        };
        match live {
            // (Under ASan, only the requested bytes: the rest of the mapping is poisoned.)
            Live::Large(h) => Some(crate::asan::accessible_len(p, (*h).map_size - (*h).user_offset)),
            Live::Guard => guarded(p),
            Live::Small(l) => {
                // ASan builds: open the slot for the check, then back to its allocated state.
                let e = l.at.entry(l.slot);
                let req = e.requested_size();
                let b = l.at.base(l.slot, l.size);
                let _open = crate::asan::Unpoisoned::block(b.as_ptr(), l.size, b.to_user_at(e.user_offset()).as_ptr(), req);
                verify_allocated(cs, l, thread).then_some(req)
            }
        }
    }
}

/// Bytes in front of a large block that hold the tail pattern, so that a write before it shows
/// (a slab block's header does that for it).
const LARGE_FRONT: usize = 16;

/// A large block was placed at `user`, a page or more into its mapping: its front canary.
///
/// # Safety
/// The [`LARGE_FRONT`] bytes before `user` are the heap's, unused.
pub(crate) unsafe fn large_allocated(user: *mut u8) {
    // SAFETY: per the contract.
    unsafe {
        let front = user.sub(LARGE_FRONT);
        let _open = crate::asan::Unpoisoned::new(front, LARGE_FRONT);
        fill(front, LARGE_FRONT, TAIL);
    }
}

/// A large block was mapped; `base` is the region-aligned address at or below its client
/// pointer, which is what a free's lookup masks to (under the heap lock).
pub(crate) fn large_mapped(cs: &CheckState, base: usize) {
    cs.register(base, TAG_LARGE);
}

/// The large block registered at `base` is being unmapped (under the heap lock); its address is remembered
/// so that freeing it again reads as a double free.
pub(crate) fn large_unmapped(cs: &CheckState, base: usize) {
    cs.reregister(base, TAG_LARGE_FREED);
}

/// Whether every checked slot size fits the shadow map's slot budget.
const _: () = {
    let mut i = 0;
    while i < crate::size_class::NUM_CLASSES {
        let s = crate::size_class::CLASS_SIZES[i];
        assert!(s < MIN_SLOT || s % 16 == 0);
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    //! Allocator invariants cannot be broken through the public API (that is the point), so these
    //! tests plant the bugs of the C history directly in the internals and watch the checks fire.
    use super::*;
    use crate::cache::locate;
    use crate::Heap;

    fn checked_heap() -> Heap<Checked> {
        let h = Heap::new();
        h.capture_reports();
        h
    }

    /// The slab and slot of a live small block.
    fn slot_of(p: *mut u8) -> (*mut Slab, BasePtr) {
        // SAFETY: callers pass live small blocks of a checked heap.
        match unsafe { locate::<Checked, false>(p) } {
            Block::Small(s, b) => (s, b),
            Block::Large | Block::Guard | Block::Foreign => unreachable!(),
        }
    }

    #[test]
    fn a_slot_pushed_twice_is_never_handed_out_twice() {
        let h = checked_heap();
        let mut c = h.cache();
        let p = c.alloc(40, 8);
        let _q = c.alloc(40, 8);
        let (slab, base) = slot_of(p);
        unsafe {
            c.free(p);
            // Planted bug: the slot goes onto the free list a second time.
            (*slab).local.push::<Checked>(base);
        }
        let first = c.alloc(40, 8);
        assert_eq!(first, p);
        let second = c.alloc(40, 8);
        assert_ne!(second, p, "the same block was handed out twice");
        let reports = h.take_reports();
        assert!(
            reports.iter().any(|r| r.addr == p.addr() && matches!(r.kind, ReportKind::Invariant | ReportKind::CorruptLink)),
            "{reports:#?}"
        );
        h.forget_cache(c);
    }

    #[test]
    fn a_free_slot_on_the_remote_queue_is_a_block_in_two_lists() {
        let h = checked_heap();
        let mut c = h.cache();
        let p = c.alloc(100, 8);
        let _keep = c.alloc(100, 8);
        let (slab, base) = slot_of(p);
        unsafe {
            c.free(p);
            // Planted bug (failure 6): the slot is also queued as a remote free.
            (*slab).remote.push::<Checked>(base);
        }
        c.flush();
        let r = h.take_reports();
        assert_eq!(r.len(), 1, "{r:#?}");
        assert_eq!((r[0].kind, r[0].addr), (ReportKind::Invariant, p.addr()));
        assert!(r[0].detail.contains("two lists"), "{}", r[0]);
        h.forget_cache(c);
    }

    #[test]
    fn releasing_a_region_with_a_live_block_is_reported() {
        let h = checked_heap();
        let mut c = h.cache();
        let p = c.alloc(64, 8);
        // Planted bug (failure 7): the region goes while a block of it is live.
        let shadow = unsafe { region_released(region_base(p).cast()) };
        // (What the heap would do with the detached shadow: give it back.)
        unsafe { crate::os::unmap(shadow, SHADOW_BYTES, crate::layout::PAGE) };
        let r = h.take_reports();
        assert_eq!(r.len(), 1, "{r:#?}");
        assert_eq!((r[0].kind, r[0].addr, r[0].detail), (ReportKind::Invariant, p.addr(), "allocated"));
        // The region's shadow is gone; the cache must not touch it again.
        h.forget_cache(c);
    }

    #[test]
    fn a_free_by_no_cache_into_an_abandoned_slab_is_queued_remote() {
        // Found by the benchmark: a thread whose first call is free has no cache, and the slab
        // it frees into may be abandoned (owner NO_OWNER, equal to the no-cache token).
        let h = checked_heap();
        let mut a = h.cache();
        let p = a.alloc(200, 8);
        let q = a.alloc(200, 8);
        drop(a);
        unsafe { crate::cache::free_unowned::<Checked, false>(&h, p) };
        let mut b = h.cache();
        let r = b.alloc(200, 8); // adopts the slab and drains the queue
        unsafe {
            b.free(q);
            b.free(r);
        }
        drop(b);
        assert_eq!(h.take_reports(), vec![]);
    }

    #[test]
    fn a_link_from_another_slab_is_rejected() {
        let h = checked_heap();
        let mut c = h.cache();
        let a = c.alloc(40, 8);
        let b = c.alloc(40, 8);
        let other = c.alloc(3000, 8); // a slot of another class's slab
        let (_, other_base) = slot_of(other);
        let (_, b_base) = slot_of(b);
        unsafe {
            c.free(a);
            c.free(b);
            // Planted bug (failure 5): b's link names a block of another class, correctly encoded.
            b_base.set_link::<Checked>(Some(other_base));
        }
        assert_eq!(c.alloc(40, 8), b);
        let r = h.take_reports();
        assert_eq!(r.len(), 1, "{r:#?}");
        assert_eq!((r[0].kind, r[0].addr), (ReportKind::CorruptLink, b.addr()));
        h.forget_cache(c);
    }
}
