//! Block layout: the only module that knows where a slot starts, where the client's bytes start,
//! and where the free-list link lives. Everything else moves [`BasePtr`] and [`UserPtr`] around.
//!
//! # Geometry
//! Memory comes in regions of [`REGION_SIZE`] bytes, mapped at an address that is a multiple of
//! their size, so `addr & !(REGION_SIZE - 1)` finds a block's region header with no lookup. A
//! small region is cut into [`SLABS_PER_REGION`] slabs of [`SLAB_SIZE`]; slab `i` spans
//! `[i * SLAB_SIZE, (i + 1) * SLAB_SIZE)` of the region, except that slab 0 starts after the region
//! header. Each slab serves one size class and its slots follow each other with no gap.
//!
//! # Why release blocks have no header
//! The C design put a one-byte class tag in front of every block so that `free` could find the
//! class without a lookup. Here the slab metadata gives the class for the cost of a mask and a
//! shift, which the tag saved nothing over. A header would also cost 16 bytes per block to keep
//! malloc's 16-byte alignment (doubling a 16-byte class), and it put allocator state exactly where
//! a client's one-byte overflow lands (failure 4 of the C history). So in release mode the user
//! pointer *is* the base pointer and the slot holds nothing but the client's bytes, or, once free,
//! the link. The checked policy adds a header of `P::HEADER` bytes; only this module applies it.
//!
//! # Checked slots
//! ```text
//! base                 user = base + 16                 user + requested          base + slot
//! | word0 | word1      | client bytes ...               | tail canary bytes ...    |
//! ```
//! A block aligned to more than 16 bytes (32 to a page) starts `align` bytes into its slot
//! instead ([`user_offset`]); its header sits just below it and the bytes before the header
//! hold tail canary bytes.
//! `word0` holds the requested size and allocation number while the slot is allocated, and the
//! (encoded) free-list link while it is free: the link lives at the base in both modes. `word1`
//! holds the keyed canary, the state, the class and the thread. A free slot's client bytes and
//! tail hold the poison pattern. In checked mode links are stored XOR-ed with a per-region key and
//! the slot's own address, so a stray write cannot forge a pointer to where it likes.

use crate::list::Links;
use crate::policy::Policy;
use core::ptr::NonNull;

// ---- regions ------------------------------------------------------------------------------

/// Marks a region cut into slabs.
pub const SMALL_KIND: u64 = 0x6861_6b6d_736d_616c; // "hakmsmal"
/// Marks a region holding one large block.
pub const LARGE_KIND: u64 = 0x6861_6b6d_6c61_7267; // "hakmlarg"

/// The common start of every region.
#[repr(C)]
pub struct RegionHeader {
    /// [`SMALL_KIND`] or [`LARGE_KIND`].
    pub kind: u64,
    /// Bytes mapped, starting at the header.
    pub map_size: usize,
    /// Alignment the mapping was made with (needed to give it back under Miri).
    pub map_align: usize,
    /// Large regions: offset of the client's block from the header.
    pub user_offset: usize,
    /// Large regions: links in the heap's list of large blocks.
    pub large_links: Links<RegionHeader>,
    /// Checked heaps: the key free-list links of this region are encoded with.
    pub link_key: usize,
    /// Checked heaps: the heap's check state (reports, secret), reachable from any slot.
    pub checks: *mut u8,
}

// ---- blocks -------------------------------------------------------------------------------

/// Checked mode's fill of a free slot's client bytes.
pub const POISON: u8 = 0xDF;
/// Checked mode's (and guarded blocks') fill of the bytes around a block that are not the
/// client's: a slot's tail, the canary in front of a large block.
pub const TAIL: u8 = 0xCB;

/// Header bytes of a slot under the checked policy.
pub const CHECKED_HEADER: usize = core::mem::size_of::<BlockHeader>();
const _: () = assert!(core::mem::size_of::<RegionHeader>() == crate::asan::LARGE_HEADER);

/// The header in front of a checked slot's client bytes.
#[repr(C)]
pub struct BlockHeader {
    /// Requested size and allocation number while allocated; the free-list link while free.
    pub word0: u64,
    /// Canary, state, class and thread.
    pub word1: u64,
}

pub use crate::os::PAGE;
/// log2 of [`SLAB_SIZE`].
pub const SLAB_SHIFT: u32 = 16;
/// Bytes per slab.
pub const SLAB_SIZE: usize = 1 << SLAB_SHIFT;
/// log2 of [`REGION_SIZE`].
pub const REGION_SHIFT: u32 = 22;
/// Bytes per region; regions are aligned to their size.
pub const REGION_SIZE: usize = 1 << REGION_SHIFT;
/// Slabs in a small region.
pub const SLABS_PER_REGION: usize = REGION_SIZE / SLAB_SIZE;

// ---- spans ----------------------------------------------------------------------------------
//
// A slab is one unit of `SLAB_SIZE` bytes, or, in a span region, a span of `SPAN_UNITS`
// consecutive units starting at a multiple of `SPAN_UNITS`, so that the biggest classes get 32 to
// 204 slots per slab instead of 2 to 12. A region is cut one way for its whole life (its
// `unit_mask`), so the slab of any address is found with a mask alone: the slab metadata of unit
// `u` is that of unit `u & unit_mask`, the span's first unit, whose entry describes the whole span;
// the other units' entries are never used. (mimalloc finds a page of several slices through the
// offset each non-first slice stores; a layout fixed per region needs no per-unit state, and a
// region's cut never changing is what keeps checked mode exact: the shadow map's geometry and
// entries of a slab stay valid for late frees until the same slab is assigned again.)
// (Not to be confused with `region::Span`, what each region-sized span of the address space holds.)

/// Units of a span (a power of two): 1 MiB, four spans a region.
///
/// Blocks of a class freed at random come back to random slabs, and a slab of few slots then
/// holds one free slot or two: every other malloc left its slab for the next (glibc's
/// bench-malloc-thread with 16-32 KiB blocks called the slow path on half of them). More slots
/// per slab gather more free ones between two visits. From 256 KiB spans to 1 MiB, side by side
/// under `LD_PRELOAD` (5 alternations): bench-malloc-thread with 1 thread 153 to 144 ms and peak
/// RSS 8.7 to 7.5 MiB, with 4 threads 88 to 83 ms and 25.7 to 21.8 MiB (tcmalloc 25.1), its 16-32
/// KiB range 43 to 29 ms (tcmalloc 22); sqlite3, python3, sort and gcc unchanged. (512 KiB gained
/// less; 2 MiB would leave a region two spans, too few for `heap::cuts_spans`.) The pages of a slab are
/// touched only as its slots are carved, 4 KiB at a time.
pub const SPAN_UNITS: usize = 16;
/// Bytes of a span.
pub const SPAN_SIZE: usize = SPAN_UNITS * SLAB_SIZE;
/// `unit_mask` of a region of single-unit slabs.
pub const UNIT_MASK: usize = SLABS_PER_REGION - 1;
/// `unit_mask` of a span region.
pub const SPAN_UNIT_MASK: usize = UNIT_MASK & !(SPAN_UNITS - 1);
/// Slots larger than this prefer slabs from span regions (at most 16 would fit a unit).
pub const SPAN_MIN_SLOT: usize = 4096;

/// Whether slots of `slot_size` bytes prefer span regions.
#[inline]
pub const fn prefers_span(slot_size: usize) -> bool {
    slot_size > SPAN_MIN_SLOT
}

/// Index of the first unit of the slab that contains `p`, in a region with `unit_mask`.
#[inline(always)]
pub fn slab_head(p: *mut u8, unit_mask: usize) -> usize {
    (p.addr() >> SLAB_SHIFT) & unit_mask
}

/// Offset in its region of the first unit of the slab that contains `p`, in a region whose
/// `unit_mask` is `offset_mask >> SLAB_SHIFT` (the mask kept shifted saves the free path a shift).
#[inline(always)]
pub fn slab_offset(p: *mut u8, offset_mask: usize) -> usize {
    p.addr() & offset_mask
}

/// Units per slab of a region with `unit_mask`.
#[inline(always)]
pub const fn units_of(unit_mask: usize) -> usize {
    1 << unit_mask.trailing_zeros()
}

/// Rounds `n` up to a multiple of the power of two `to`, or `None` on overflow.
#[inline]
pub const fn round_up(n: usize, to: usize) -> Option<usize> {
    match n.checked_add(to - 1) {
        Some(v) => Some(v & !(to - 1)),
        None => None,
    }
}

/// Start of the region that contains `addr`.
#[inline(always)]
pub fn region_base(p: *mut u8) -> *mut u8 {
    p.map_addr(|a| a & !(REGION_SIZE - 1))
}

/// Offset of `p` inside its region.
#[inline(always)]
pub fn region_offset(p: *mut u8) -> usize {
    p.addr() & (REGION_SIZE - 1)
}

/// Index of the unit that contains `p` within its region (its slab's first unit unless the
/// region is a span region: see [`slab_head`]).
#[inline(always)]
pub fn slab_index(p: *mut u8) -> usize {
    region_offset(p) >> SLAB_SHIFT
}

/// Address of a slot as the allocator sees it: the first byte of the slot, where a header (if any)
/// and, while the slot is free, the free-list link live.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BasePtr(NonNull<u8>);

/// Address the client sees: the first byte it may use.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UserPtr(NonNull<u8>);

impl BasePtr {
    /// Wraps a slot start.
    ///
    /// # Safety
    /// `p` must be non-null and the start of a slot.
    #[inline(always)]
    pub unsafe fn new_unchecked(p: *mut u8) -> Self {
        // SAFETY: the caller promises non-null.
        BasePtr(unsafe { NonNull::new_unchecked(p) })
    }

    /// The raw slot address.
    #[inline(always)]
    pub fn as_ptr(self) -> *mut u8 {
        self.0.as_ptr()
    }

    /// Asks the CPU to bring this slot's first line into cache: a hint, which reads nothing.
    #[inline(always)]
    pub fn prefetch(self) {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        // SAFETY: a prefetch is a hint that neither reads nor faults, whatever the address.
        unsafe {
            use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(self.as_ptr().cast::<i8>());
        }
    }

    /// The client's pointer for this slot under policy `P` (a block aligned to at most the
    /// header: see [`BasePtr::to_user_at`]).
    #[inline(always)]
    pub fn to_user<P: Policy>(self) -> UserPtr {
        // SAFETY: P::HEADER is within the slot (every class is larger than any header).
        UserPtr(unsafe { self.0.add(P::HEADER) })
    }

    /// The client's pointer for this slot when the block starts `offset` bytes in (a
    /// [`user_offset`] of the slot's policy).
    #[inline(always)]
    pub fn to_user_at(self, offset: usize) -> UserPtr {
        // SAFETY: a user offset lies within any slot that serves it (see `slot_needed`).
        UserPtr(unsafe { self.0.add(offset) })
    }

    /// Reads the free-list link stored in this free slot. A checked link is decoded but not
    /// validated: the caller checks where it points (see `check::link_ok`).
    ///
    /// # Safety
    /// The slot must be free and its link written by [`BasePtr::set_link`] with the same policy;
    /// for checked slots, the slot must lie in a live region.
    #[inline(always)]
    pub unsafe fn link<P: Policy>(self) -> Option<BasePtr> {
        // Links cross threads (remote frees): `sched` builds check each read for a data race.
        crate::sync::plain(self.as_ptr().addr(), crate::sync::Plain::Link, false);
        // ASan builds: a free slot is poisoned; open its link word for this read only.
        let _open = crate::asan::Unpoisoned::word(self.as_ptr());
        // SAFETY: a free slot is at least 8 bytes and 8-aligned; its first word is the link.
        unsafe {
            if !P::CHECKED {
                return self.as_ptr().cast::<Option<BasePtr>>().read();
            }
            // Stored as a pointer with its address encoded, so that it keeps the provenance of
            // the slot it names, which may lie in another region (a cache's inbox chains slots
            // of many).
            let mask = self.link_mask();
            BasePtr::from_raw(self.as_ptr().cast::<*mut u8>().read().map_addr(|a| a ^ mask))
        }
    }

    /// Stores the free-list link in this free slot.
    ///
    /// # Safety
    /// The slot must be owned by the caller and not in use by the client; for checked slots, the
    /// slot must lie in a live region.
    #[inline(always)]
    pub unsafe fn set_link<P: Policy>(self, next: Option<BasePtr>) {
        crate::sync::plain(self.as_ptr().addr(), crate::sync::Plain::Link, true);
        // ASan builds: as in `link`.
        let _open = crate::asan::Unpoisoned::word(self.as_ptr());
        // SAFETY: as for `link`.
        unsafe {
            if !P::CHECKED {
                return self.as_ptr().cast::<Option<BasePtr>>().write(next);
            }
            let mask = self.link_mask();
            let next = next.map_or(core::ptr::null_mut(), BasePtr::as_ptr);
            self.as_ptr().cast::<*mut u8>().write(next.map_addr(|a| a ^ mask));
        }
    }

    /// What a checked link is XOR-ed with: the region's secret key and the slot's address.
    ///
    /// # Safety
    /// The slot must lie in a live small region.
    #[inline(always)]
    unsafe fn link_mask(self) -> usize {
        let region = region_base(self.as_ptr()).cast::<RegionHeader>();
        // SAFETY: the caller promises a live region, whose header starts at the masked address.
        unsafe { (*region).link_key ^ self.as_ptr().addr().rotate_left(23) }
    }

    /// The checked header at the start of this slot: a free slot's, or an allocated block's
    /// whose client bytes follow it (see [`UserPtr::header`]).
    #[inline(always)]
    pub fn header(self) -> *mut BlockHeader {
        self.as_ptr().cast()
    }

    /// Wraps a raw pointer that is either null or a slot start.
    #[inline(always)]
    pub fn from_raw(p: *mut u8) -> Option<BasePtr> {
        NonNull::new(p).map(BasePtr)
    }
}

impl UserPtr {
    /// Wraps a pointer a client handed back; `None` for null.
    #[inline(always)]
    pub fn new(p: *mut u8) -> Option<Self> {
        NonNull::new(p).map(UserPtr)
    }

    /// The raw client address.
    #[inline(always)]
    pub fn as_ptr(self) -> *mut u8 {
        self.0.as_ptr()
    }

    /// The checked header of the allocated block at this client pointer: just below it.
    #[inline(always)]
    pub fn header(self) -> *mut BlockHeader {
        self.as_ptr().wrapping_sub(CHECKED_HEADER).cast()
    }

    /// The slot this client pointer belongs to under policy `P`.
    ///
    /// # Safety
    /// `self` must have come from [`BasePtr::to_user`] with the same policy.
    #[inline(always)]
    pub unsafe fn to_base<P: Policy>(self) -> BasePtr {
        // SAFETY: the caller promises the header precedes the pointer within the slot.
        BasePtr(unsafe { self.0.sub(P::HEADER) })
    }
}

/// Bytes a client may use in a slot of `slot_size` bytes under policy `P`.
#[inline(always)]
pub const fn usable<P: Policy>(slot_size: usize) -> usize {
    slot_size - P::HEADER
}

/// Where the client's bytes start in a slot under policy `P`, for a block aligned to `align`:
/// right after the header, or at `align` when that is larger. A class serves `align` only if its
/// slot size is a multiple of it (see `size_class::class_for`), so its slots start `align`-aligned
/// and so does a client pointer `align` bytes in; the header then sits just below the pointer.
#[inline(always)]
pub const fn user_offset<P: Policy>(align: usize) -> usize {
    if P::HEADER != 0 && align > P::HEADER {
        align
    } else {
        P::HEADER
    }
}

/// Bytes a slot must have to serve `size` client bytes aligned to `align` under policy `P`;
/// callers keep `size` below [`crate::size_class::SMALL_MAX`] and `align` below
/// [`crate::size_class::SMALL_ALIGN_MAX`], so this cannot overflow.
#[inline(always)]
pub const fn slot_needed<P: Policy>(size: usize, align: usize) -> usize {
    size + user_offset::<P>(align) + P::MIN_TAIL
}

/// Largest request a slot of `slot_size` bytes serves under policy `P`.
#[inline(always)]
pub const fn max_request<P: Policy>(slot_size: usize) -> usize {
    slot_size - P::HEADER - P::MIN_TAIL
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Release;

    #[test]
    fn release_user_and_base_coincide() {
        let mut word = 0u64;
        let p = (&mut word as *mut u64).cast::<u8>();
        let base = unsafe { BasePtr::new_unchecked(p) };
        let user = base.to_user::<Release>();
        assert_eq!(user.as_ptr(), p);
        assert_eq!(unsafe { user.to_base::<Release>() }, base);
    }

    #[test]
    fn link_round_trips() {
        let mut words = [0u64; 2];
        let w = words.as_mut_ptr();
        let a = unsafe { BasePtr::new_unchecked(w.cast()) };
        let b = unsafe { BasePtr::new_unchecked(w.add(1).cast()) };
        unsafe {
            a.set_link::<Release>(Some(b));
            b.set_link::<Release>(None);
            assert_eq!(a.link::<Release>(), Some(b));
            assert_eq!(b.link::<Release>(), None);
        }
    }

    #[test]
    fn geometry_masks() {
        let p = core::ptr::without_provenance_mut::<u8>(REGION_SIZE * 3 + SLAB_SIZE * 5 + 48);
        assert_eq!(region_base(p).addr(), REGION_SIZE * 3);
        assert_eq!(slab_index(p), 5);
        assert_eq!(round_up(4097, PAGE), Some(8192));
        assert_eq!(round_up(usize::MAX, PAGE), None);
    }
}
