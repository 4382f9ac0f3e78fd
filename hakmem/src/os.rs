//! The operating-system layer: aligned mappings, purging, in-place growth.
//!
//! Under Miri, mmap is unavailable, so mappings come from the Rust allocator with the same
//! alignment and purging writes zeros: the allocator above sees the same contract either way.

use core::sync::atomic::{AtomicUsize, Ordering};

static MAPPED: AtomicUsize = AtomicUsize::new(0);

/// Bytes currently mapped by every hakmem heap in this process.
pub fn mapped_bytes() -> usize {
    MAPPED.load(Ordering::Relaxed)
}

#[cfg(not(miri))]
mod imp {
    use crate::layout::PAGE;
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
