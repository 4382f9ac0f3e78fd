//! Dropping a heap gives every mapping back to the kernel, checked against `/proc/self/maps`
//! rather than hakmem's own counter (hakmem/tests/destroy.rs checks `os::mapped_bytes`, which
//! would balance even if a munmap were given the wrong length or never reached the kernel).
//! Alone in its test binary, so no other test maps or unmaps meanwhile.

use hakmem::layout::{region_base, REGION_SIZE};
use hakmem::size_class::SMALL_MAX;
use hakmem::Heap;
use std::collections::BTreeSet;

/// Every mapping of the process as `[start, end)`.
fn mappings() -> Vec<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines()
        .map(|l| {
            let range = l.split_whitespace().next().unwrap();
            let (a, b) = range.split_once('-').unwrap();
            (usize::from_str_radix(a, 16).unwrap(), usize::from_str_radix(b, 16).unwrap())
        })
        .collect()
}

/// Bytes of `[r, e)` that some mapping covers. A range hakmem failed to unmap is covered whole;
/// a mapping someone else makes afterwards in part of the hole (the sanitizer runtimes do) is not
/// mistaken for a leak.
fn covered(maps: &[(usize, usize)], r: usize, e: usize) -> usize {
    maps.iter().map(|&(a, b)| b.min(e).saturating_sub(a.max(r))).sum()
}

#[test]
fn dropping_a_heap_unmaps_every_region_it_mapped() {
    // Room for every pointer up front, so this test's own allocations map nothing meanwhile.
    let mut live: Vec<*mut u8> = Vec::with_capacity(60_000);
    let mut regions = BTreeSet::new();
    let mut kept = BTreeSet::new();
    {
        let heap: Heap = Heap::new();
        let mut c = heap.cache();
        let mut other = heap.cache();
        for i in 0..30_000usize {
            let size = [8, 64, 700, 5000, 30000, 200_000, 3 << 20][i % 7];
            let p = c.alloc(size, 8);
            assert!(!p.is_null());
            live.push(p);
            // What hakmem surely has mapped: a small block's whole region; a large block's
            // mapping from its (region-aligned) start to the block's end.
            let r = region_base(p).addr();
            let range = (r, if size > SMALL_MAX { p.addr() + size } else { r + REGION_SIZE });
            regions.insert(range);
            if i % 3 != 0 {
                kept.insert(range);
            }
        }
        // Leave blocks live, some queued as remote frees, and a cache abandoned.
        for p in live.iter().step_by(3) {
            // SAFETY: every third block, freed once.
            unsafe { other.free(*p) };
        }
        drop(other);
        let maps = mappings();
        for &(r, e) in &kept {
            assert_eq!(covered(&maps, r, e), e - r, "{r:#x}-{e:#x} is not mapped while the heap lives");
        }
        drop(c);
    }
    let maps = mappings();
    let still: Vec<String> = regions
        .iter()
        .filter(|&&(r, e)| covered(&maps, r, e) == e - r)
        .map(|&(r, e)| format!("{r:#x}-{e:#x}"))
        .collect();
    assert!(still.is_empty(), "{} of {} ranges still wholly mapped after the heap was dropped, e.g. {:?}", still.len(), regions.len(), &still[..still.len().min(5)]);
    assert!(regions.len() > 10, "the test should span many regions, not {}", regions.len());
}
