//! AddressSanitizer hooks: in ASan builds (`RUSTFLAGS="-Zsanitizer=address --cfg asan"`, see
//! `just asan`) hakmem tells ASan which of its bytes the client may touch. Everything here is an
//! empty inline function otherwise, so no other build pays for it.
//!
//! ASan cannot see inside a custom allocator: to it, hakmem's regions are plain mapped memory.
//! So hakmem poisons what the client must not touch and unpoisons exactly the requested bytes of
//! each block it hands out:
//! - a free slot, whole (free list, remote queue, checked headers, poison pattern);
//! - the tail of an allocated slot beyond the requested size (checked tail canaries included);
//! - a checked slot's header (16 bytes in front of the client's);
//! - uncarved slab space, and the slack after a slab's last whole slot;
//! - the tail of a large block beyond the requested size, and up to a page in front of it (the
//!   gap from the block header to an aligned client pointer).
//!
//! A client overflow, underflow or use after free in hakmem memory then gets ASan's own report
//! (`use-after-poison`, with the stack of the access). A double free of a release slot is caught
//! by the free hook ([`check_live`]), which finds the block's first byte poisoned.
//!
//! The allocator's own accesses to poisoned memory unpoison around themselves, in few places:
//! the free-list link ([`crate::layout::BasePtr::link`]/`set_link`, with [`Unpoisoned::word`]),
//! and the checked mode's hooks in `check.rs`, which open one [`Unpoisoned`] over the slots they
//! read or write. The hand-out and free hooks in `cache.rs` set a block's final state.
//!
//! Shadow granularity is 8 bytes. Every slot starts 8-aligned and is a multiple of 8 long, so two
//! slots never share a granule, and "poison the span, then unpoison the client's bytes" is exact
//! to the byte (ASan records a partly addressable last granule).

#[cfg(asan)]
mod ffi {
    use core::ffi::c_void;
    extern "C" {
        pub fn __asan_poison_memory_region(addr: *const c_void, size: usize);
        pub fn __asan_unpoison_memory_region(addr: *const c_void, size: usize);
        pub fn __asan_address_is_poisoned(addr: *const c_void) -> i32;
        pub fn __asan_report_load1(addr: *mut c_void);
    }
}

/// True in ASan builds, where the hooks below do something.
pub const ENABLED: bool = cfg!(asan);

/// Marks `[p, p + len)` as off limits to the client.
#[inline(always)]
pub fn poison(p: *mut u8, len: usize) {
    #[cfg(asan)]
    // SAFETY: the shadow of any address the process maps can be written; hakmem only passes its own.
    unsafe {
        ffi::__asan_poison_memory_region(p.cast(), len)
    };
    let _ = (p, len);
}

/// Marks `[p, p + len)` as usable.
#[inline(always)]
pub fn unpoison(p: *mut u8, len: usize) {
    #[cfg(asan)]
    // SAFETY: as for `poison`.
    unsafe {
        ffi::__asan_unpoison_memory_region(p.cast(), len)
    };
    let _ = (p, len);
}

/// True if the byte at `p` is poisoned (always false outside ASan builds).
#[inline(always)]
pub fn is_poisoned(p: *mut u8) -> bool {
    #[cfg(asan)]
    // SAFETY: reads only the shadow.
    return unsafe { ffi::__asan_address_is_poisoned(p.cast()) != 0 };
    #[cfg(not(asan))]
    {
        let _ = p;
        false
    }
}

/// How many bytes from `p` (at most `max`) the client may use: the requested size of a live block
/// in an ASan build; `max` otherwise.
///
/// A live block's usable bytes (its requested size, one byte for a zero-byte request, so that the
/// free hook can tell a live block from a freed one) are a prefix of its span and the rest is
/// poisoned, so a binary search over single-address queries finds the edge in ~20 probes.
/// (`__asan_region_is_poisoned` would scan the usable prefix byte by byte: it made a 200 KB
/// block's usable-size query cost more than the rest of a fuzz input together.)
#[inline(always)]
pub fn accessible_len(p: *mut u8, max: usize) -> usize {
    if !ENABLED {
        return max;
    }
    // Invariant: bytes before `lo` are usable, the byte at `hi` (if < max) is poisoned.
    let (mut lo, mut hi) = (0, max);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if is_poisoned(p.wrapping_add(mid)) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// The free hook's check of a release-mode slab block: a live block's first byte is addressable
/// (the cache's `hand_out` unpoisons the client's bytes); a freed one's is poisoned. A free of a
/// poisoned pointer is a double free (or a free of something never handed out): ASan reports it
/// with the stack of the free.
#[inline(always)]
pub fn check_live(p: *mut u8) {
    if is_poisoned(p) {
        bad_free(p);
    }
}

#[cold]
#[inline(never)]
fn bad_free(p: *mut u8) {
    let msg = b"hakmem: double free (or free of a block that is not live): its first byte is poisoned; ASan's report follows\n";
    // SAFETY: writes a static buffer to stderr, allocating nothing.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    #[cfg(asan)]
    // SAFETY: reports the access and (with ASan's default halt_on_error) aborts.
    unsafe {
        ffi::__asan_report_load1(p.cast())
    };
    let _ = p;
}

/// While alive, `[p, p + len)` is unpoisoned for the allocator's own access; dropping it poisons
/// the range again, except for the client's bytes of a live block ([`Unpoisoned::block`]) and
/// for a link word that was not poisoned ([`Unpoisoned::word`]).
#[must_use]
pub struct Unpoisoned {
    #[cfg(asan)]
    p: *mut u8,
    #[cfg(asan)]
    len: usize,
    #[cfg(asan)]
    user: *mut u8,
    #[cfg(asan)]
    size: usize,
}

impl Unpoisoned {
    /// Opens `[p, p + len)` (a free slot, or slots): poisoned whole again on drop.
    #[inline(always)]
    pub fn new(p: *mut u8, len: usize) -> Self {
        Self::block(p, len, core::ptr::null_mut(), 0)
    }

    /// Opens the slot `[p, p + len)` of a live block whose client has `size` bytes at `user`;
    /// on drop the slot is back to a live block's state, only the client's bytes open (a null
    /// `user`: poisoned whole).
    #[inline(always)]
    pub fn block(p: *mut u8, len: usize, user: *mut u8, size: usize) -> Self {
        unpoison(p, len);
        let _ = (p, len, user, size);
        Unpoisoned {
            #[cfg(asan)]
            p,
            #[cfg(asan)]
            len,
            #[cfg(asan)]
            user,
            #[cfg(asan)]
            size,
        }
    }

    /// Opens the 8-byte word at `p` (a free-list link) if it is poisoned, and closes it again on
    /// drop only in that case: links also live in plain memory (unit tests, stack buffers),
    /// which must be left as found.
    #[inline(always)]
    pub fn word(p: *mut u8) -> Self {
        let len = if is_poisoned(p) { 8 } else { 0 };
        Self::new(p, len)
    }
}

impl Drop for Unpoisoned {
    #[inline(always)]
    fn drop(&mut self) {
        #[cfg(asan)]
        if self.len != 0 {
            poison(self.p, self.len);
            if !self.user.is_null() {
                unpoison(self.user, self.size.max(1));
            }
        }
    }
}

/// Bytes in front of a large block that ASan guards, where the block starts further into its
/// mapping (alignments above a page). ASan's own redzones are at most 2 KiB; poisoning the
/// whole gap (up to 8 MiB in front of an 8 MiB-aligned block) wrote up to a MiB of shadow for
/// each such block, and unpoisoning it again when the mapping went back cost as much.
pub const LARGE_REDZONE: usize = crate::os::PAGE;

/// Bytes of a large mapping's header (`layout::RegionHeader`, asserted there), which ASan
/// leaves addressable.
pub const LARGE_HEADER: usize = 64;

/// A large block's span that ASan guards: from [`LARGE_REDZONE`] in front of the client's bytes
/// (or the end of the header, if nearer) to the mapping's end. The rest of the gap in front
/// stays addressable, and nothing ever touches it.
#[inline(always)]
fn large_span(base: *mut u8, map_size: usize, user: *mut u8) -> (*mut u8, usize) {
    let hdr = (LARGE_HEADER + 7) & !7;
    let start = (base.addr() + hdr).max(user.addr().saturating_sub(LARGE_REDZONE));
    (base.with_addr(start), base.addr() + map_size - start)
}

/// A large block at `user` with `size` requested bytes in the mapping `[base, base + map_size)`:
/// only the requested bytes are addressable in its guarded span. A new mapping's shadow is clear
/// (a fresh one's, or a spare's: see `os::Spares`), so only what lies either side of the block
/// is poisoned. A reused one (`old_user`, its last block, not null) was poisoned by
/// [`large_freed`]: if the new block starts where the old one did, only the block is opened;
/// otherwise the old span is cleared first. Poisoning the whole span each time wrote an eighth
/// of the mapping's size in shadow bytes: an 8 MiB block cost a 1 MiB memset.
#[inline(always)]
pub fn large_allocated(base: *mut u8, map_size: usize, user: *mut u8, size: usize, old_user: *mut u8) {
    if ENABLED {
        let open = size.max(1);
        if old_user == user {
            return unpoison(user, open);
        }
        if !old_user.is_null() {
            large_released(base, map_size, old_user, true);
        }
        let (p, _) = large_span(base, map_size, user);
        poison(p, user.addr() - p.addr());
        poison(user.wrapping_add(open), base.addr() + map_size - user.addr() - open);
    }
}

/// A large mapping kept for reuse after its block at `user` was freed: its guarded span poisoned.
#[inline(always)]
pub fn large_freed(base: *mut u8, map_size: usize, user: *mut u8) {
    if ENABLED {
        let (p, len) = large_span(base, map_size, user);
        poison(p, len);
    }
}

/// A large mapping about to be given back (unmapped, or kept as a spare, which must look like
/// a new mapping): what [`large_allocated`] or (`freed`) [`large_freed`] poisoned, addressable
/// again. Only that: unpoisoning the block's own bytes too would write shadow pages that were
/// never touched, a page fault for every 32 KiB of block.
#[inline(always)]
pub fn large_released(base: *mut u8, map_size: usize, user: *mut u8, freed: bool) {
    if ENABLED {
        let (p, len) = large_span(base, map_size, user);
        if freed {
            return unpoison(p, len);
        }
        unpoison(p, user.addr() - p.addr());
        let end = base.addr() + map_size;
        let open = accessible_len(user, end - user.addr());
        unpoison(user.wrapping_add(open), end - user.addr() - open);
    }
}
