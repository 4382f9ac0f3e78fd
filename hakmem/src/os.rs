//! The operating-system layer: aligned mappings, purging, in-place growth.
//!
//! Under Miri, mmap is unavailable, so mappings come from the Rust allocator with the same
//! alignment and purging writes zeros: the allocator above sees the same contract either way.

use crate::sync::{AtomicUsize, Ordering};

/// Page size assumed for mapping, purging and page-aligned requests.
pub const PAGE: usize = 4096;

static MAPPED: AtomicUsize = AtomicUsize::new(0);

/// Bytes currently mapped by every hakmem heap in this process.
pub fn mapped_bytes() -> usize {
    MAPPED.load(Ordering::Relaxed)
}

#[cfg(not(miri))]
mod imp {
    use super::PAGE;
    use core::ptr;

    pub unsafe fn map_aligned(size: usize, align: usize) -> *mut u8 {
        debug_assert!(size % PAGE == 0 && align.is_power_of_two() && align >= PAGE);
        // Over-map by `align` and trim both ends: the kernel gives no alignment guarantee.
        let Some(over) = size.checked_add(align - PAGE) else { return ptr::null_mut() };
        // SAFETY: an anonymous private mapping has no preconditions.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                over,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return ptr::null_mut();
        }
        let raw = raw.cast::<u8>();
        let pre = raw.addr().wrapping_neg() & (align - 1);
        let post = over - pre - size;
        // SAFETY: both trimmed ranges lie inside the mapping just made and are page multiples.
        unsafe {
            if pre > 0 {
                libc::munmap(raw.cast(), pre);
            }
            if post > 0 {
                libc::munmap(raw.add(pre + size).cast(), post);
            }
            raw.add(pre)
        }
    }

    pub unsafe fn unmap(p: *mut u8, size: usize, _align: usize) {
        // SAFETY: the caller passes a range returned by `map_aligned`.
        let rc = unsafe { libc::munmap(p.cast(), size) };
        debug_assert_eq!(rc, 0);
    }

    pub unsafe fn purge(p: *mut u8, size: usize) {
        // MADV_DONTNEED on a private anonymous mapping drops the pages; the next touch reads zeros,
        // which is what lets a purged slab skip calloc's memset.
        // SAFETY: the caller passes page-aligned memory it owns and no longer uses.
        let rc = unsafe { libc::madvise(p.cast(), size, libc::MADV_DONTNEED) };
        if rc != 0 {
            // SAFETY: as above; zeroing keeps the "purged memory reads as zero" contract.
            unsafe { ptr::write_bytes(p, 0, size) };
        }
    }

    pub unsafe fn zero_resident(p: *mut u8, size: usize) {
        // mincore's answer for up to 16 MiB at a time (one byte per page, bit 0 = resident):
        // one call for most mappings.
        const PAGES: usize = 4096;
        let mut resident = [0u8; PAGES];
        let mut at = 0;
        while at < size {
            let len = (size - at).min(PAGES * PAGE);
            // SAFETY: the range is mapped (the caller's contract) and page aligned; the vector
            // has a byte for each of its pages.
            if unsafe { libc::mincore(p.add(at).cast(), len, resident.as_mut_ptr()) } != 0 {
                // SAFETY: as above; purged pages read as zero too.
                return unsafe { purge(p.add(at), size - at) };
            }
            let pages = len / PAGE;
            let mut i = 0;
            while i < pages {
                if resident[i] & 1 == 0 {
                    i += 1;
                    continue;
                }
                let run = resident[i..pages].iter().take_while(|&&r| r & 1 != 0).count();
                // SAFETY: these pages are in the caller's range.
                unsafe { ptr::write_bytes(p.add(at + i * PAGE), 0, run * PAGE) };
                i += run;
            }
            at += len;
        }
    }

    pub unsafe fn grow_in_place(p: *mut u8, old: usize, new: usize) -> bool {
        // Without MREMAP_MAYMOVE the mapping keeps its address (and so its alignment) or fails.
        // SAFETY: the caller passes a live mapping of `old` bytes.
        unsafe { libc::mremap(p.cast(), old, new, 0) != libc::MAP_FAILED }
    }
}

#[cfg(miri)]
mod imp {
    use std::alloc::{alloc_zeroed, dealloc, Layout};

    pub unsafe fn map_aligned(size: usize, align: usize) -> *mut u8 {
        match Layout::from_size_align(size, align) {
            // SAFETY: size is non-zero.
            Ok(l) => unsafe { alloc_zeroed(l) },
            Err(_) => core::ptr::null_mut(),
        }
    }

    pub unsafe fn unmap(p: *mut u8, size: usize, align: usize) {
        // SAFETY: `p` came from `map_aligned(size, align)`.
        unsafe { dealloc(p, Layout::from_size_align_unchecked(size, align)) }
    }

    pub unsafe fn purge(p: *mut u8, size: usize) {
        // SAFETY: the caller owns the range.
        unsafe { core::ptr::write_bytes(p, 0, size) }
    }

    pub unsafe fn zero_resident(p: *mut u8, size: usize) {
        // SAFETY: the caller owns the range.
        unsafe { core::ptr::write_bytes(p, 0, size) }
    }

    pub unsafe fn grow_in_place(_p: *mut u8, _old: usize, _new: usize) -> bool {
        false
    }
}

/// Maps `size` zeroed bytes (a page multiple) at an address that is a multiple of `align`
/// (a power of two, at least a page). Null when the OS refuses.
///
/// # Safety
/// `size` must be a non-zero multiple of the page size.
pub unsafe fn map_aligned(size: usize, align: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    let p = unsafe { imp::map_aligned(size, align) };
    if !p.is_null() {
        MAPPED.fetch_add(size, Ordering::Relaxed);
    }
    p
}

/// Returns a mapping made by [`map_aligned`] (or grown by [`grow_in_place`]) to the OS.
///
/// # Safety
/// `p`, `size` and `align` must describe exactly one live mapping; nothing may use it afterwards.
pub unsafe fn unmap(p: *mut u8, size: usize, align: usize) {
    MAPPED.fetch_sub(size, Ordering::Relaxed);
    // SAFETY: forwarded contract.
    unsafe { imp::unmap(p, size, align) }
}

/// Gives the pages of `[p, p + size)` back to the OS; they read as zero afterwards.
///
/// # Safety
/// The range must be page aligned, mapped, and hold nothing anyone still needs.
pub unsafe fn purge(p: *mut u8, size: usize) {
    // SAFETY: forwarded contract.
    unsafe { imp::purge(p, size) }
}

/// Makes `[p, p + size)` read as zero but keeps its pages: zeroes the pages that are resident
/// (`mincore` tells which; the others read as zero anyway). Unlike [`purge`], the next touch of
/// a page costs no page fault; but the pages stay in memory.
///
/// # Safety
/// The range must be page aligned, mapped, and hold nothing anyone still needs; in ASan
/// builds, unpoisoned.
pub unsafe fn zero_resident(p: *mut u8, size: usize) {
    // SAFETY: forwarded contract.
    unsafe { imp::zero_resident(p, size) }
}

/// Grows the mapping at `p` from `old` to `new` bytes without moving it; false if it cannot.
///
/// # Safety
/// `p` and `old` must describe a live mapping made by [`map_aligned`].
pub unsafe fn grow_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    // SAFETY: forwarded contract.
    let ok = unsafe { imp::grow_in_place(p, old, new) };
    if ok {
        MAPPED.fetch_add(new - old, Ordering::Relaxed);
    }
    ok
}

/// Most mappings a [`Spares`] keeps (taking one searches them in turn).
pub const SPARES_MAX: usize = 256;

/// Mappings given back but kept, zeroed, to stand in for new ones of exactly the same size and
/// alignment. A spare reads as zero and, in ASan builds, has a clear shadow, as a new mapping
/// has: a heap cannot tell it from one mmap just made, except by its address, which differs
/// between runs anyway. So a program runs the same whatever ran before it, which a cache of
/// freed blocks' mappings could not promise (what it reuses depends on what earlier programs
/// freed), while the mmap and munmap calls, and ASan's shadow remapping in both, are saved.
pub struct Spares {
    /// (mapping, size, alignment asked for), oldest first.
    kept: [(*mut u8, usize, usize); SPARES_MAX],
    len: usize,
    bytes: usize,
    limit: usize,
}

// SAFETY: the pointers are mappings the owner of the `Spares` owns; nothing else refers to them.
unsafe impl Send for Spares {}

impl Default for Spares {
    fn default() -> Self {
        Self::new()
    }
}

impl Spares {
    /// Keeps nothing until [`Spares::set_limit`] is called.
    pub const fn new() -> Self {
        Spares { kept: [(core::ptr::null_mut(), 0, 0); SPARES_MAX], len: 0, bytes: 0, limit: 0 }
    }

    /// Keeps up to `bytes` of spares from now on (unmapping the oldest beyond that).
    pub fn set_limit(&mut self, bytes: usize) {
        self.limit = bytes;
        self.evict(0, 0);
    }

    /// A spare of `size` bytes asked for at `align`, taken out; null if none. The one kept last
    /// goes first, so a program that gives a mapping back and maps one of its size again gets
    /// the same address back, whatever spares earlier programs left (as a new heap, whose
    /// spares are only its own, would).
    pub fn take(&mut self, size: usize, align: usize) -> *mut u8 {
        let Some(i) = self.kept[..self.len].iter().rposition(|&(_, n, a)| n == size && a == align) else {
            return core::ptr::null_mut();
        };
        let (p, _, _) = self.kept[i];
        self.kept.copy_within(i + 1..self.len, i);
        self.len -= 1;
        self.bytes -= size;
        p
    }

    /// Whether a mapping of `size` bytes given back would be kept (else: unmap it).
    pub fn keeps(&self, size: usize) -> bool {
        size <= self.limit
    }

    /// Keeps a mapping (the oldest spares make room) for [`Spares::take`] to hand out as new.
    ///
    /// # Safety
    /// `p`, `size` and `align` describe one mapping made by [`map_aligned`] (or taken from
    /// here) that nothing uses any more; [`Spares::keeps`] said yes to `size`. Every byte of it
    /// reads as zero and, in ASan builds, is addressable: the caller knows which parts it wrote
    /// or poisoned (zeroing or unpoisoning a whole big mapping cost more than the mmap saved).
    pub unsafe fn keep(&mut self, p: *mut u8, size: usize, align: usize) {
        debug_assert!(self.keeps(size));
        self.evict(size, 1);
        self.kept[self.len] = (p, size, align);
        self.len += 1;
        self.bytes += size;
    }

    /// Unmaps the oldest spares until `bytes` more bytes and `count` more spares fit.
    fn evict(&mut self, bytes: usize, count: usize) {
        let mut n = 0;
        while n < self.len && (self.bytes + bytes > self.limit || self.len - n + count > SPARES_MAX) {
            let (p, size, align) = self.kept[n];
            self.bytes -= size;
            // SAFETY: a spare is a whole mapping that only this set refers to.
            unsafe { unmap(p, size, align) };
            n += 1;
        }
        self.kept.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::PAGE;

    #[test]
    fn a_spare_stands_in_only_for_its_size_and_alignment() {
        let mut s = Spares::new();
        s.set_limit(1 << 20);
        // SAFETY: each mapping is kept or unmapped once; none is written.
        unsafe {
            let p = map_aligned(8 * PAGE, 16 * PAGE);
            s.keep(p, 8 * PAGE, 16 * PAGE);
            assert!(s.take(4 * PAGE, 16 * PAGE).is_null(), "another size");
            assert!(s.take(8 * PAGE, PAGE).is_null(), "another alignment");
            assert_eq!(s.take(8 * PAGE, 16 * PAGE), p);
            assert!(s.take(8 * PAGE, 16 * PAGE).is_null(), "taken once");
            unmap(p, 8 * PAGE, 16 * PAGE);
        }
    }

    #[test]
    fn spares_beyond_the_limit_go_oldest_first_and_the_newest_is_taken_first() {
        let mut s = Spares::new();
        assert!(!s.keeps(PAGE), "nothing is kept without a limit");
        s.set_limit(3 * PAGE);
        assert!(s.keeps(3 * PAGE) && !s.keeps(4 * PAGE));
        // SAFETY: as above.
        unsafe {
            let maps: Vec<_> = (0..4).map(|_| map_aligned(PAGE, PAGE)).collect();
            for &m in &maps {
                s.keep(m, PAGE, PAGE);
            }
            for &m in maps[1..].iter().rev() {
                assert_eq!(s.take(PAGE, PAGE), m);
            }
            assert!(s.take(PAGE, PAGE).is_null(), "the oldest made room");
            for &m in &maps[1..] {
                unmap(m, PAGE, PAGE);
            }
        }
    }

    #[test]
    fn zero_resident_zeroes_what_was_written() {
        // SAFETY: a mapping of 64 pages, written in part, then unmapped.
        unsafe {
            let p = map_aligned(64 * PAGE, PAGE);
            p.add(5 * PAGE + 17).write_bytes(0xab, 3 * PAGE);
            p.add(60 * PAGE).write(1);
            zero_resident(p, 64 * PAGE);
            assert!(core::slice::from_raw_parts(p, 64 * PAGE).iter().all(|&b| b == 0));
            unmap(p, 64 * PAGE, PAGE);
        }
    }
}
