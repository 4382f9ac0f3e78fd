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

use crate::policy::Policy;
use core::ptr::NonNull;

/// Page size assumed for mapping, purging and page-aligned requests.
pub const PAGE: usize = 4096;
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

/// Index of the slab that contains `p` within its region.
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

    /// The client's pointer for this slot under policy `P`.
    #[inline(always)]
    pub fn to_user<P: Policy>(self) -> UserPtr {
        // SAFETY: P::HEADER is within the slot (every class is larger than any header).
        UserPtr(unsafe { self.0.add(P::HEADER) })
    }

    /// Reads the free-list link stored in this free slot.
    ///
    /// # Safety
    /// The slot must be free and its link written by [`BasePtr::set_link`].
    #[inline(always)]
    pub unsafe fn link(self) -> Option<BasePtr> {
        // SAFETY: a free slot is at least 8 bytes and 8-aligned; its first word is the link.
        unsafe { self.as_ptr().cast::<Option<BasePtr>>().read() }
    }

    /// Stores the free-list link in this free slot.
    ///
    /// # Safety
    /// The slot must be owned by the caller and not in use by the client.
    #[inline(always)]
    pub unsafe fn set_link(self, next: Option<BasePtr>) {
        // SAFETY: as for `link`.
        unsafe { self.as_ptr().cast::<Option<BasePtr>>().write(next) }
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

/// Bytes a slot must have to serve `size` client bytes under policy `P`.
#[inline(always)]
pub const fn slot_needed<P: Policy>(size: usize) -> usize {
    size + P::HEADER
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
            a.set_link(Some(b));
            b.set_link(None);
            assert_eq!(a.link(), Some(b));
            assert_eq!(b.link(), None);
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
