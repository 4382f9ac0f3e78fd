//! Heap behaviour through the public API: slab reuse across classes, abandonment and adoption,
//! bounded memory under steady and shrinking workloads, large blocks, zeroing.

use hakmem::layout::REGION_SIZE;
use hakmem::Heap;

/// Allocates `n` blocks of `size` bytes through `c` and fills each with its index.
fn fill(c: &mut hakmem::ThreadCache<'_>, n: usize, size: usize) -> Vec<*mut u8> {
    (0..n)
        .map(|i| {
            let p = c.alloc(size, 8);
            assert!(!p.is_null());
            unsafe { p.write_bytes(i as u8, size) };
            p
        })
        .collect()
}

/// Whether the `len` bytes at `p` (a live block) are all zero.
fn zeroed(p: *mut u8, len: usize) -> bool {
    // SAFETY: the caller passes a live block of at least `len` bytes.
    unsafe { std::slice::from_raw_parts(p, len) }.iter().all(|&b| b == 0)
}

#[test]
fn a_fresh_heap_maps_nothing() {
    let heap: Heap = Heap::new();
    assert_eq!(heap.stats().mapped_bytes, 0);
    let c = heap.cache();
    drop(c);
    assert_eq!(heap.stats().small_regions, 0);
}

#[test]
fn freed_slabs_serve_other_classes() {
    let heap: Heap = Heap::new();
    let mut c = heap.cache();
    // Fill most of a region with 64-byte blocks, free them all, then fill it with 1 KiB blocks:
    // the region count must not grow, because emptied slabs go back to the pool.
    let blocks = fill(&mut c, 40_000, 64);
    let regions = heap.stats().small_regions;
    for p in blocks {
        unsafe { c.free(p) };
    }
    let blocks = fill(&mut c, 2_000, 1024);
    assert_eq!(heap.stats().small_regions, regions);
    for p in blocks {
        unsafe { c.free(p) };
    }
}

#[test]
fn steady_workload_does_not_grow() {
    let heap: Heap = Heap::new();
    let mut c = heap.cache();
    let mut ring: Vec<*mut u8> = vec![std::ptr::null_mut(); 5000];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut after_warmup = 0;
    for round in 0..40 {
        for slot in ring.iter_mut() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if !slot.is_null() {
                unsafe { c.free(*slot) };
            }
            let size = 8 + (rng % 2000) as usize;
            *slot = c.alloc(size, 8);
            unsafe { slot.write_bytes(0xab, size) };
        }
        if round == 5 {
            after_warmup = heap.stats().peak_mapped_bytes;
        }
    }
    assert_eq!(heap.stats().peak_mapped_bytes, after_warmup, "{:?}", heap.stats());
    for p in ring {
        unsafe { c.free(p) };
    }
}

#[test]
fn shrinking_workload_gives_memory_back() {
    let heap: Heap = Heap::new();
    // Kept however long the fill takes (under TSan on a loaded machine, longer than the
    // default delay).
    heap.set_purge_delay(std::time::Duration::from_secs(3600));
    let mut c = heap.cache();
    let blocks = fill(&mut c, 60_000, 1024); // ~64 MiB
    let peak = heap.stats().mapped_bytes;
    assert!(peak >= 60_000 * 1024);
    for p in blocks {
        unsafe { c.free(p) };
    }
    c.flush();
    // Kept for a while, in case the workload grows again...
    assert!(heap.stats().mapped_bytes >= peak / 2, "{:?}", heap.stats());
    heap.trim();
    let s = heap.stats();
    // ...until a trim: one empty region may stay cached, plus the cache arena.
    assert!(s.mapped_bytes <= REGION_SIZE + 64 * 1024, "{s:?}");
    assert_eq!(s.small_regions, 1, "{s:?}");
}

#[test]
fn memory_beyond_the_limits_goes_back_after_the_purge_delay() {
    let heap: Heap = Heap::new();
    // Kept however long the fill takes; then the default delay, from now.
    heap.set_purge_delay(std::time::Duration::from_secs(3600));
    let mut c = heap.cache();
    for p in fill(&mut c, 60_000, 1024) {
        unsafe { c.free(p) };
    }
    c.flush();
    assert!(heap.stats().small_regions > 8, "{:?}", heap.stats());
    heap.set_purge_delay(hakmem::heap::PURGE_DELAY);
    std::thread::sleep(hakmem::heap::PURGE_DELAY + std::time::Duration::from_millis(20));
    // The next slow path (a slab for a class this cache has none of) returns the excess.
    let p = c.alloc(3000, 8);
    let s = heap.stats();
    assert!(s.small_regions <= 2 && s.mapped_bytes <= 2 * REGION_SIZE + 64 * 1024, "{s:?}");
    assert!(s.dirty_pooled_slabs <= hakmem::heap::DIRTY_POOL_LIMIT, "{s:?}");
    unsafe { c.free(p) };
}

#[test]
fn abandoned_slabs_are_adopted_and_reclaimed() {
    let heap: Heap = Heap::new();
    let mut a = heap.cache();
    let blocks = fill(&mut a, 3000, 48);
    drop(a);
    let abandoned = heap.stats().abandoned_slabs;
    assert!(abandoned > 0);
    // A new cache allocating the same class adopts an abandoned slab instead of a pooled one.
    let mut b = heap.cache();
    let p = b.alloc(48, 8);
    assert_eq!(heap.stats().abandoned_slabs, abandoned - 1);
    // The blocks of the dead cache stay valid and free through any cache.
    for (i, q) in blocks.iter().enumerate() {
        assert!(unsafe { std::slice::from_raw_parts(*q, 48) }.iter().all(|&x| x == i as u8));
        unsafe { b.free(*q) };
    }
    unsafe { b.free(p) };
    drop(b);
    // Everything is free now; whatever stayed abandoned is reclaimed when the pool runs dry.
    let mut c = heap.cache();
    let big = fill(&mut c, 4 * 64 * 60, 1024);
    assert_eq!(heap.stats().abandoned_slabs, 0, "{:?}", heap.stats());
    for p in big {
        unsafe { c.free(p) };
    }
}

#[test]
fn large_blocks_are_mapped_alone_and_unmapped_on_free() {
    let heap: Heap = Heap::new();
    let mut c = heap.cache();
    let p = c.alloc(1 << 20, 8);
    assert_eq!(heap.stats().large_blocks, 1);
    assert!(unsafe { c.usable_size(p) } >= 1 << 20);
    unsafe { p.write_bytes(7, 1 << 20) };
    let q = unsafe { c.realloc(p, 3 << 20, 8) };
    assert!(unsafe { std::slice::from_raw_parts(q, 1 << 20) }.iter().all(|&x| x == 7));
    unsafe { c.free(q) };
    assert_eq!(heap.stats().large_blocks, 0);
    for align in [REGION_SIZE, 2 * REGION_SIZE] {
        let p = c.alloc(100, align);
        assert_eq!(p.addr() % align, 0);
        assert!(unsafe { c.usable_size(p) } >= 100);
        unsafe { c.free(p) };
    }
    assert_eq!(heap.stats().large_blocks, 0);
}

#[test]
fn zeroed_allocations_are_zero_after_reuse() {
    let heap: Heap = Heap::new();
    let mut c = heap.cache();
    for size in [1, 16, 100, 1024, 5000, 20000, 32768, 100_000] {
        let dirty: Vec<*mut u8> = (0..50).map(|_| c.alloc(size, 8)).collect();
        for &p in &dirty {
            unsafe { p.write_bytes(0xee, size) };
        }
        for p in dirty {
            unsafe { c.free(p) };
        }
        for _ in 0..60 {
            let p = c.alloc_zeroed(size, 8);
            assert!(unsafe { std::slice::from_raw_parts(p, size) }.iter().all(|&x| x == 0), "size {size}");
            unsafe { p.write_bytes(0xee, size) };
            unsafe { c.free(p) };
        }
    }
}

#[test]
fn several_caches_on_one_thread_interleave() {
    let heap: Heap = Heap::new();
    let mut caches: Vec<_> = (0..4).map(|_| heap.cache()).collect();
    let mut live = vec![];
    for i in 0..20_000usize {
        let p = caches[i % 4].alloc(16 + i % 300, 8);
        unsafe { p.write_bytes(i as u8, 16) };
        live.push((p, i));
        if i % 3 == 0 {
            let (q, j) = live.swap_remove((i * 7) % live.len());
            assert!(unsafe { std::slice::from_raw_parts(q, 16) }.iter().all(|&x| x == j as u8));
            unsafe { caches[(i / 3) % 4].free(q) };
        }
    }
    for (p, _) in live {
        unsafe { caches[1].free(p) };
    }
    for c in caches.iter_mut() {
        c.flush();
    }
    drop(caches);
    assert_eq!(heap.stats().abandoned_slabs, 0, "{:?}", heap.stats());
}

#[test]
fn reused_large_mappings_are_zeroed_for_calloc() {
    let heap: Heap = Heap::new();
    let mut c = heap.cache();
    let p = c.alloc(100_000, 8);
    unsafe {
        p.write_bytes(0xab, 100_000);
        c.free(p);
    }
    // The freed mapping is cached and comes back for a block of about the same size.
    let z = c.alloc_zeroed(90_000, 8);
    assert_eq!(z, p, "expected the cached mapping to be reused");
    assert!(zeroed(z, 90_000));
    unsafe { c.free(z) };
}

#[test]
fn an_empty_block_with_region_alignment_lies_inside_its_mapping() {
    let heap: Heap = Heap::new();
    let mut c = heap.cache();
    let small = c.alloc(64, 8);
    let empty = c.alloc(0, hakmem::layout::REGION_SIZE);
    // A zero-byte block must still be its own address: written to, it must not alias anything.
    unsafe { empty.write(1) };
    let after = c.alloc(64, 8);
    assert!(empty != small && empty != after);
    unsafe {
        c.free(empty);
        c.free(small);
        c.free(after);
    }
}

/// The addresses a short program gets from a heap, freeing as it goes.
fn program_addresses<P: hakmem::Policy>(heap: &Heap<P>) -> Vec<usize> {
    let mut a = heap.cache();
    let mut b = heap.cache();
    let mut out = Vec::new();
    let mut live = Vec::new();
    for i in 0..300usize {
        let c = if i % 3 == 0 { &mut b } else { &mut a };
        let p = c.alloc(8 + i * 13 % 2000, 8);
        unsafe { p.write_bytes(7, 8) };
        out.push(p.addr());
        live.push(p);
        if i % 4 == 0 {
            let q = live.swap_remove(i * 7 % live.len());
            unsafe { b.free(q) };
        }
    }
    let big = a.alloc(300_000, 8);
    out.push(big.addr());
    unsafe { a.free(big) };
    for q in live {
        unsafe { a.free(q) };
    }
    out
}

/// Addresses as offsets in their region, each region named by the order it first appears in:
/// what a program can tell of where its blocks are, whatever the kernel's mmap placement.
fn relative(addrs: &[usize]) -> Vec<(usize, usize)> {
    let mut regions: Vec<usize> = Vec::new();
    addrs
        .iter()
        .map(|&a| {
            let r = a & !(REGION_SIZE - 1);
            let n = regions.iter().position(|&x| x == r).unwrap_or_else(|| {
                regions.push(r);
                regions.len() - 1
            });
            (n, a & (REGION_SIZE - 1))
        })
        .collect()
}

#[test]
fn a_reset_heap_is_a_new_heap() {
    for spares in [0, 64 << 20] {
        let mut heap: Heap = Heap::new();
        heap.set_spare_mappings(spares);
        let first = program_addresses(&heap);
        heap.reset();
        let s = heap.stats();
        assert_eq!((s.small_regions, s.empty_regions, s.large_blocks, s.caches, s.abandoned_slabs, s.dirty_pooled_slabs), (0, 0, 0, 0, 0, 0));
        let second = program_addresses(&heap);
        heap.reset();
        let third = program_addresses(&heap);
        assert_eq!(relative(&first), relative(&second), "a reset heap runs a program as a new heap does (spares: {spares})");
        assert_eq!(relative(&second), relative(&third));
        if spares > 0 {
            // Each mapping the program makes is the spare the run before gave back.
            assert_eq!(second, third, "spares stand in for the same mappings every time");
        }
    }
}

#[test]
fn spare_mappings_stand_in_for_new_ones_of_their_size_and_read_as_zero() {
    let mut heap: Heap<hakmem::Checked> = Heap::new();
    heap.set_large_cache(0, 0);
    heap.set_spare_mappings(64 << 20);
    let first = {
        let mut c = heap.cache();
        let p = c.alloc(300_000, 8);
        let q = c.alloc(300_000, 65536);
        // SAFETY: live blocks of 300 000 bytes, freed once.
        unsafe {
            p.write_bytes(0xab, 300_000);
            q.write_bytes(0xcd, 300_000);
            c.free(p);
            c.free(q);
        }
        (p, q)
    };
    heap.reset();
    let mut c = heap.cache();
    // A fresh mapping skips calloc's memset, so these read as zero only if the spares do.
    let q = c.alloc_zeroed(300_000, 65536);
    let p = c.alloc_zeroed(300_000, 8);
    assert_eq!((p, q), first, "each spare serves the next mapping of its size and alignment");
    // SAFETY: live blocks of 300 000 bytes.
    unsafe {
        assert!(zeroed(p, 300_000) && zeroed(q, 300_000));
        c.free(p);
        c.free(q);
    }
    assert!(heap.take_reports().is_empty());
}

#[test]
fn a_spare_that_served_blocks_at_several_offsets_comes_back_zeroed() {
    let mut heap: Heap = Heap::new();
    heap.set_spare_mappings(64 << 20);
    let first = {
        let mut c = heap.cache();
        let p = c.alloc(100_000, 8);
        // SAFETY: live blocks of this cache, written within their sizes, freed once.
        unsafe {
            p.write_bytes(0xab, 100_000);
            c.free(p);
            // The large cache hands the same mapping to a 64 KiB-aligned block, which starts
            // further in: the first block's bytes in front of it are still there.
            let q = c.alloc(1000, 65536);
            assert_eq!(q.addr() & !(REGION_SIZE - 1), p.addr() & !(REGION_SIZE - 1), "the cached mapping is reused");
            c.free(q);
        }
        p
    };
    heap.reset();
    let mut c = heap.cache();
    let p = c.alloc_zeroed(100_000, 8);
    assert_eq!(p, first, "the spare serves the next mapping of its size");
    // SAFETY: a live block of 100 000 bytes.
    unsafe {
        assert!(zeroed(p, 100_000), "stale bytes in a spare");
        c.free(p);
    }
}

#[test]
fn spare_regions_come_back_zeroed() {
    let mut heap: Heap = Heap::new();
    heap.set_spare_mappings(64 << 20);
    {
        let mut c = heap.cache();
        for p in fill(&mut c, 12_000, 1000) {
            // SAFETY: a live block of this cache.
            unsafe { c.free(p) };
        }
    }
    assert!(heap.stats().small_regions >= 3);
    heap.reset();
    let mut c = heap.cache();
    // Every region comes from the spares, which a heap takes for new mappings: their slabs skip
    // calloc's memset, and read as zero only if the spares were zeroed.
    let blocks: Vec<_> = (0..12_000).map(|_| c.alloc_zeroed(1000, 8)).collect();
    for &p in &blocks {
        assert!(zeroed(p, 1000), "{p:p} is not zero");
    }
    for p in blocks {
        // SAFETY: a live block of this cache.
        unsafe { c.free(p) };
    }
}

#[test]
fn a_reset_checked_heap_forgets_old_blocks_and_still_checks() {
    use hakmem::{Checked, ReportKind};
    let mut heap: Heap<Checked> = Heap::new();
    heap.capture_reports();
    let stale = {
        let mut c = heap.cache();
        let p = c.alloc(40, 8);
        unsafe {
            c.free(p);
            c.free(p);
        }
        p
    };
    assert_eq!(heap.take_reports().len(), 1);
    heap.reset();
    assert_eq!(heap.take_reports(), vec![]);
    let mut c = heap.cache();
    assert_eq!(c.id(), 1, "cache ids start over");
    // The reset gave its region back: the stale pointer is in no region of the heap now.
    unsafe { c.free(stale) };
    let r = heap.take_reports();
    assert_eq!((r.len(), r[0].kind), (1, ReportKind::ForeignPointer), "{r:#?}");
    let p = c.alloc(40, 8);
    unsafe {
        c.free(p);
        c.free(p);
    }
    assert_eq!(heap.take_reports()[0].kind, ReportKind::DoubleFree);
}

#[test]
fn the_large_cache_keeps_the_latest_mappings_within_its_limits() {
    use hakmem::heap::{LARGE_CACHE_BYTES, LARGE_CACHE_COUNT};
    let heap: Heap = Heap::new();
    let mut c = heap.cache();
    let base = heap.stats().mapped_bytes;
    let size = 500_000;
    let n = (LARGE_CACHE_BYTES / size).max(LARGE_CACHE_COUNT) + 4;
    let blocks: Vec<*mut u8> = (0..n).map(|_| c.alloc(size, 8)).collect();
    for &p in &blocks {
        unsafe { c.free(p) };
    }
    // The oldest mappings made room for the newest: the cache stays within its limits...
    let kept = heap.stats().mapped_bytes - base;
    assert!(kept <= LARGE_CACHE_BYTES, "{kept} bytes of large mappings kept");
    assert!(kept >= LARGE_CACHE_BYTES / 2, "only {kept} bytes of large mappings kept");
    // ...and the last one freed is the first one reused.
    let q = c.alloc(size, 8);
    assert_eq!(q, *blocks.last().unwrap());
    unsafe { c.free(q) };

    // With room for them, region-aligned mappings are cached too, and serve only their alignment.
    heap.set_large_cache(16 << 20, 64 << 20);
    let a = c.alloc(100, 2 * REGION_SIZE);
    unsafe { c.free(a) };
    let other = c.alloc(100, REGION_SIZE);
    assert_ne!(other, a);
    let again = c.alloc(200, 2 * REGION_SIZE);
    assert_eq!(again, a);
    assert_eq!(again.addr() % (2 * REGION_SIZE), 0);
    unsafe {
        c.free(other);
        c.free(again);
    }
}
