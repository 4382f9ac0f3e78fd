//! How a logical thread calls the allocator: through [`ThreadCache`]'s Rust API, or (the
//! program header's `api=c`) through the paths of the C library's entry points, as programs
//! under `LD_PRELOAD` reach them: malloc's own size-class tables, and free, realloc and
//! malloc_usable_size classifying a pointer by the region map before reading behind it.

use hakmem::{Heap, Policy, ThreadCache};

/// A logical thread's cache, called through the API its program chose.
pub struct Client<'h, P: Policy> {
    cache: ThreadCache<'h, P>,
    c_api: bool,
}

impl<'h, P: Policy> Client<'h, P> {
    /// `cache`, called as C calls it if `c_api`.
    pub fn new(cache: ThreadCache<'h, P>, c_api: bool) -> Self {
        Client { cache, c_api }
    }

    /// `size` bytes aligned to `align`: C's `malloc` when that is malloc's alignment, else
    /// what `aligned_alloc` and `posix_memalign` call (with malloc's 16 at least).
    pub fn alloc(&mut self, size: usize, align: usize) -> *mut u8 {
        if self.c_api && align <= 16 {
            self.cache.malloc(size)
        } else {
            self.cache.alloc(size, align)
        }
    }

    /// Zeroed bytes (C's `calloc` calls the same).
    pub fn alloc_zeroed(&mut self, size: usize, align: usize) -> *mut u8 {
        self.cache.alloc_zeroed(size, align)
    }

    /// Frees `p`.
    ///
    /// # Safety
    /// `p` must be a live block of this heap (misuse programs: or a pointer the checked heap
    /// reports).
    pub unsafe fn free(&mut self, p: *mut u8) {
        // SAFETY: forwarded; a live block is in its heap's mapping.
        unsafe {
            if self.c_api {
                self.cache.free_untrusted(p)
            } else {
                self.cache.free(p)
            }
        }
    }

    /// The alignment a resized block of alignment `align` keeps: C's `realloc` promises only
    /// malloc's.
    pub fn realloc_align(&self, align: usize) -> usize {
        if self.c_api {
            16
        } else {
            align
        }
    }

    /// Resizes `p` (to [`Client::realloc_align`] of `align`).
    ///
    /// # Safety
    /// As for [`Client::free`].
    pub unsafe fn realloc(&mut self, p: *mut u8, size: usize, align: usize) -> *mut u8 {
        let align = self.realloc_align(align);
        // SAFETY: forwarded.
        unsafe {
            if self.c_api {
                self.cache.realloc_untrusted(p, size, align)
            } else {
                self.cache.realloc(p, size, align)
            }
        }
    }

    /// Bytes usable in `p`.
    ///
    /// # Safety
    /// `p` must be a live block of this heap.
    pub unsafe fn usable_size(&mut self, p: *mut u8) -> usize {
        // SAFETY: forwarded.
        unsafe {
            if self.c_api {
                self.cache.usable_size_untrusted(p)
            } else {
                self.cache.usable_size(p)
            }
        }
    }

    /// Frees `p` as a thread whose cache is gone (see [`Heap::free_uncached`]).
    ///
    /// # Safety
    /// As for [`Client::free`].
    pub unsafe fn free_uncached(&self, heap: &Heap<P>, p: *mut u8) {
        // SAFETY: forwarded.
        unsafe { heap.free_uncached(p, self.c_api) }
    }

    /// Collects remote frees and returns free slabs, as [`ThreadCache::flush`].
    pub fn flush(&mut self) {
        self.cache.flush()
    }
}
