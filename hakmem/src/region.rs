//! Regions: naturally aligned mappings whose first bytes describe them.
//!
//! A small region holds the metadata of its 64 slabs in its header, followed by the slabs. A large
//! region holds one client block after a one-page header. Both start with [`RegionHeader`], whose
//! `kind` tells them apart, so `free` needs only a mask to know what it holds.

use crate::layout::{round_up, PAGE, REGION_SIZE, SLABS_PER_REGION, SLAB_SIZE, SPAN_UNITS, UNIT_MASK};
use crate::list::{Adapter, Links};
use crate::layout::BasePtr;
use crate::slab::Slab;
use crate::sync::{AtomicU8, Ordering::Relaxed};

pub use crate::layout::{RegionHeader, LARGE_KIND, SMALL_KIND};

/// What each naturally aligned [`REGION_SIZE`] span of the address space holds, for every heap
/// of the process: a mapping that blocks live in (a small region, a large block's mapping, a
/// guard arena), or nothing of hakmem's. A byte each: 32 MiB of address space, of which only the
/// pages covering spans in use become resident (one 4 KiB page covers 16 GiB). Release mode's
/// free, realloc and size queries classify a pointer by this one byte, before they read
/// anything behind it: so a pointer hakmem never handed out (a stack address, another
/// allocator's block) gets a report, not a fault inside the allocator, and a small block is
/// told from a large one without reading its region's header.
/// (Under Miri, which would track every byte of 32 MiB, a small map that spans share by their
/// number modulo its size: Miri's tests map far less than the 16 GiB it would take for two
/// spans to meet, which `mark_mapping` asserts.)
static REGION_MAP: [AtomicU8; MAP_SPANS] = [const { AtomicU8::new(0) }; MAP_SPANS];
/// Spans of the 47-bit user address space.
const MAP_SPANS: usize = if cfg!(miri) { 1 << 12 } else { 1 << (47 - REGION_SIZE.trailing_zeros()) };

/// What a span of the address space holds (see [`REGION_MAP`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Span {
    /// Nothing of hakmem's.
    Foreign = 0,
    /// A small region.
    Small = 1,
    /// (Part of) a large block's mapping.
    Large = 2,
    /// A guard arena.
    Guard = 3,
}

/// The map's entry for span number `span`, if it has one.
#[inline(always)]
fn map_entry(span: usize) -> Option<&'static AtomicU8> {
    let i = if cfg!(miri) { span % MAP_SPANS } else { span };
    // SAFETY: the index is checked against the map's length.
    (i < MAP_SPANS).then(|| unsafe { REGION_MAP.get_unchecked(i) })
}

/// Records that `[base, base + len)`, a mapping of `REGION_SIZE` alignment, now holds `what`
/// ([`Span::Foreign`] when it goes). (Each span has one writer, the heap that maps it; the
/// bytes are atomic because free reads them without a lock.)
pub fn mark_mapping(base: *mut u8, len: usize, what: Span) {
    let first = base.addr() / REGION_SIZE;
    for span in first..first + len.div_ceil(REGION_SIZE) {
        if let Some(e) = map_entry(span) {
            let was = e.swap(what as u8, Relaxed);
            debug_assert!((was == 0) != (what == Span::Foreign), "hakmem: span {span:#x} marked {what:?} over {was}");
        }
    }
}

/// Whether the span of `region` (a `REGION_SIZE`-aligned address) holds a small region: the
/// free path's test, [`span_of`]'s first.
#[inline(always)]
pub fn span_is_small(region: *mut u8) -> bool {
    map_entry(region.addr() / REGION_SIZE).is_some_and(|e| e.load(Relaxed) == Span::Small as u8)
}

/// What the span of `region` (a `REGION_SIZE`-aligned address) holds.
#[inline(always)]
pub fn span_of(region: *mut u8) -> Span {
    let s = map_entry(region.addr() / REGION_SIZE).map_or(0, |e| e.load(Relaxed));
    // Small first, and the rest out of line: the free path's common case is one compare.
    if s == Span::Small as u8 {
        Span::Small
    } else {
        other_span(s)
    }
}

/// [`span_of`] for a span that holds no small region.
#[cold]
#[inline(never)]
fn other_span(s: u8) -> Span {
    match s {
        2 => Span::Large,
        3 => Span::Guard,
        _ => Span::Foreign,
    }
}

/// A region cut into slabs.
#[repr(C)]
pub struct SmallRegion {
    /// Common header.
    pub hdr: RegionHeader,
    /// [`crate::layout::UNIT_MASK`], or [`crate::layout::SPAN_UNIT_MASK`] for a span region,
    /// for the region's life: unit `u`'s slab is `slabs[u & unit_mask]` (next to `hdr.kind`,
    /// which free reads too).
    pub unit_mask: usize,
    /// `unit_mask` scaled to byte offsets of slab metadata in `slabs` (see [`SmallRegion::slab_of`]).
    pub meta_mask: usize,
    /// `unit_mask` scaled to byte offsets in the region (see [`crate::layout::slab_offset`]).
    pub offset_mask: usize,
    /// The `pooled` bits of this region when every slab it uses is pooled.
    pub full: u64,
    /// Links in the heap's list of all small regions.
    pub all_links: Links<SmallRegion>,
    /// Links in the heap's list of regions with pooled slabs.
    pub avail_links: Links<SmallRegion>,
    /// Bit `i` set: unit `i` is in the pool (a span's units are pooled and taken together).
    pub pooled: u64,
    /// Bit `i` set: unit `i` may hold non-zero bytes.
    pub dirty: u64,
    /// Checked heaps: the region's shadow map (a separate mapping), else null.
    pub shadow: *mut u8,
    /// Per unit, the end (as an offset in the region) of the slots its slabs ever carved in it
    /// while pooled since it was last clean: what a spare must zero (see `touched_end`).
    pub touched: [u32; SLABS_PER_REGION],
    /// Per-slab metadata, by first unit (a span's other units' entries stay unassigned).
    pub slabs: [Slab; SLABS_PER_REGION],
}

/// Bytes at the start of a small region taken by its header; slab 0 starts here.
pub const SMALL_HEADER: usize = match round_up(core::mem::size_of::<SmallRegion>(), PAGE) {
    Some(n) => n,
    None => panic!(),
};

/// log2 of the size of a slab's metadata.
const META_SHIFT: u32 = core::mem::size_of::<Slab>().trailing_zeros();
const _: () = assert!(core::mem::size_of::<Slab>() == 1 << META_SHIFT && META_SHIFT <= crate::layout::SLAB_SHIFT);
const _: () = assert!(SPAN_UNITS.is_power_of_two() && SPAN_UNITS <= SLABS_PER_REGION);

/// The bits of `usable` that make up whole spans (a span region uses no other unit).
pub const fn whole_spans(usable: u64) -> u64 {
    let group = (1u64 << SPAN_UNITS) - 1;
    let mut out = 0;
    let mut i = 0;
    while i < SLABS_PER_REGION {
        if (usable >> i) & group == group {
            out |= group << i;
        }
        i += SPAN_UNITS;
    }
    out
}

/// Mask with one bit per unit.
pub const ALL_SLABS: u64 = if SLABS_PER_REGION == 64 { u64::MAX } else { (1 << SLABS_PER_REGION) - 1 };

const _: () = assert!(SLABS_PER_REGION <= 64);
const _: () = assert!(SMALL_HEADER + crate::size_class::SMALL_MAX <= SLAB_SIZE);

/// Selects [`SmallRegion::all_links`].
pub struct AllRegions;
impl Adapter<SmallRegion> for AllRegions {
    unsafe fn links(r: *mut SmallRegion) -> *mut Links<SmallRegion> {
        // SAFETY: the caller passes a live region.
        unsafe { &raw mut (*r).all_links }
    }
}

/// Selects [`SmallRegion::avail_links`].
pub struct AvailRegions;
impl Adapter<SmallRegion> for AvailRegions {
    unsafe fn links(r: *mut SmallRegion) -> *mut Links<SmallRegion> {
        // SAFETY: the caller passes a live region.
        unsafe { &raw mut (*r).avail_links }
    }
}

/// Selects [`RegionHeader::large_links`].
pub struct LargeRegions;
impl Adapter<RegionHeader> for LargeRegions {
    unsafe fn links(r: *mut RegionHeader) -> *mut Links<RegionHeader> {
        // SAFETY: the caller passes a live region.
        unsafe { &raw mut (*r).large_links }
    }
}

impl SmallRegion {
    /// Initialises a freshly mapped, zeroed region in place, cut into spans if `spans`; the
    /// units of `usable` (bit `i`: unit `i`) start pooled and clean (a span region's only in
    /// whole spans), the others are never used.
    ///
    /// # Safety
    /// `base` must be a fresh mapping of `REGION_SIZE` bytes aligned to `REGION_SIZE`.
    pub unsafe fn init(base: *mut u8, usable: u64, spans: bool) -> *mut SmallRegion {
        let r = base.cast::<SmallRegion>();
        let (unit_mask, full) = if spans { (crate::layout::SPAN_UNIT_MASK, whole_spans(usable)) } else { (UNIT_MASK, usable & ALL_SLABS) };
        // SAFETY: the mapping is large enough and aligned for the header; we write every field.
        unsafe {
            (&raw mut (*r).hdr).write(RegionHeader {
                kind: SMALL_KIND,
                map_size: REGION_SIZE,
                map_align: REGION_SIZE,
                user_offset: 0,
                large_links: Links::new(),
                link_key: 0,
                checks: core::ptr::null_mut(),
            });
            (&raw mut (*r).shadow).write(core::ptr::null_mut());
            (&raw mut (*r).all_links).write(Links::new());
            (&raw mut (*r).avail_links).write(Links::new());
            (&raw mut (*r).unit_mask).write(unit_mask);
            (&raw mut (*r).meta_mask).write(unit_mask << META_SHIFT);
            (&raw mut (*r).offset_mask).write(unit_mask << crate::layout::SLAB_SHIFT);
            (&raw mut (*r).full).write(full);
            (&raw mut (*r).pooled).write(full);
            (&raw mut (*r).dirty).write(0);
            (&raw mut (*r).touched).write([0; SLABS_PER_REGION]);
            let slabs = (&raw mut (*r).slabs).cast::<Slab>();
            for i in 0..SLABS_PER_REGION {
                slabs.add(i).write(Slab::unassigned());
            }
        }
        r
    }

    /// The slab metadata for the slab containing `p` (its first unit's).
    ///
    /// # Safety
    /// `this` must be a live small region and `p` inside it.
    #[inline(always)]
    pub unsafe fn slab_of(this: *mut SmallRegion, p: *mut u8) -> *mut Slab {
        // The first unit's index times the metadata's size, in one shift and one mask (as
        // cheap as the single-unit slab index it replaced).
        // SAFETY: the offset is that of a slab below SLABS_PER_REGION; `meta_mask` never
        // changes while the region lives, so this plain read races with no write.
        unsafe {
            let off = (p.addr() >> (crate::layout::SLAB_SHIFT - META_SHIFT)) & (*this).meta_mask;
            (&raw mut (*this).slabs).cast::<Slab>().byte_add(off)
        }
    }

    /// Units per slab of this region (1, or [`SPAN_UNITS`] for a span region).
    ///
    /// # Safety
    /// `this` must be a live small region.
    #[inline(always)]
    pub unsafe fn units(this: *mut SmallRegion) -> usize {
        // SAFETY: per the contract.
        crate::layout::units_of(unsafe { (*this).unit_mask })
    }

    /// Whether this region is cut into spans.
    ///
    /// # Safety
    /// `this` must be a live small region.
    #[inline(always)]
    pub unsafe fn is_span_region(this: *mut SmallRegion) -> bool {
        // SAFETY: per the contract.
        unsafe { (*this).unit_mask != UNIT_MASK }
    }

    /// The `pooled` bits of the units of the slab whose first unit is `i`.
    ///
    /// # Safety
    /// `this` must be a live small region and `i` a slab's first unit.
    #[inline]
    pub unsafe fn unit_bits(this: *mut SmallRegion, i: usize) -> u64 {
        // SAFETY: per the contract.
        let n = unsafe { Self::units(this) };
        (if n == 64 { u64::MAX } else { (1u64 << n) - 1 }) << i
    }

    /// Index of `slab` within this region.
    ///
    /// # Safety
    /// `slab` must be one of this region's slabs.
    pub unsafe fn index_of(this: *mut SmallRegion, slab: *mut Slab) -> usize {
        // SAFETY: both pointers are into the same region header.
        unsafe { slab.offset_from((&raw mut (*this).slabs).cast::<Slab>()) as usize }
    }

    /// The region that holds the metadata `slab`.
    pub fn of_slab(slab: *mut Slab) -> *mut SmallRegion {
        crate::layout::region_base(slab.cast()).cast()
    }

    /// The end, as an offset in the region, of the bytes unit `i` may have written since it
    /// was last clean: the furthest its slabs carved in it, in any class they served. A slab
    /// out of the pool (owned or abandoned) has its current carving too.
    ///
    /// # Safety
    /// `this` must be a live small region and `i < SLABS_PER_REGION`.
    pub unsafe fn touched_end(this: *mut SmallRegion, i: usize) -> usize {
        // SAFETY: per the contract.
        unsafe {
            let h = i & (*this).unit_mask;
            let s = (&raw mut (*this).slabs).cast::<Slab>().add(h);
            let mut end = (*this).touched[i] as usize;
            if (*this).pooled & (1 << h) == 0 && !(*s).local.bump.is_null() {
                end = end.max(((*s).local.bump.addr() - this.addr()).min((i + 1) * SLAB_SIZE));
            }
            end
        }
    }

    /// The byte range the slab whose first unit is `i` may fill with slots (for another unit
    /// of a span region, up to the span's end).
    ///
    /// # Safety
    /// `this` must be a live small region and `i < SLABS_PER_REGION`.
    pub unsafe fn slab_span(this: *mut SmallRegion, i: usize) -> (*mut u8, *mut u8) {
        let base = this.cast::<u8>();
        let start = if i == 0 { SMALL_HEADER } else { i * SLAB_SIZE };
        // SAFETY: the region is live; both offsets are within it.
        let end = unsafe { ((i | !(*this).unit_mask & UNIT_MASK) + 1) * SLAB_SIZE };
        // SAFETY: as above.
        unsafe { (base.add(start), base.add(end)) }
    }

    /// The byte range of unit `i` that slots may lie in (unit 0 starts after the header).
    ///
    /// # Safety
    /// `this` must be a live small region and `i < SLABS_PER_REGION`.
    pub unsafe fn unit_span(this: *mut SmallRegion, i: usize) -> (*mut u8, *mut u8) {
        let base = this.cast::<u8>();
        let start = if i == 0 { SMALL_HEADER } else { i * SLAB_SIZE };
        // SAFETY: both offsets are within the region.
        unsafe { (base.add(start), base.add((i + 1) * SLAB_SIZE)) }
    }
}

/// Where a live block lives.
pub(crate) enum Block {
    /// A slab slot: its slab and its base.
    Small(*mut Slab, BasePtr),
    /// A block mapped on its own.
    Large,
    /// A sampled block on a guarded page (see `guard`).
    Guard,
    /// Not in any mapping of a heap (release mode's [`span_of`] says so): a pointer hakmem never
    /// handed out.
    Foreign,
}
