//! Dropping a heap returns every mapping to the OS. Alone in its test binary so that no other
//! heap maps or unmaps while the process-wide counter is read.

use hakmem::{os, Heap};

#[test]
fn dropping_a_heap_unmaps_everything() {
    let before = os::mapped_bytes();
    {
        let heap: Heap = Heap::new();
        let mut c = heap.cache();
        let mut other = heap.cache();
        let mut live = vec![];
        for i in 0..50_000usize {
            let size = [8, 64, 700, 5000, 30000, 200_000][i % 6];
            live.push(c.alloc(size, 8));
        }
        // Leave blocks live, some queued as remote frees, and a cache abandoned.
        for p in live.iter().step_by(3) {
            unsafe { other.free(*p) };
        }
        drop(other);
        assert!(os::mapped_bytes() > before + 100 * 1024 * 1024);
        drop(c);
    }
    assert_eq!(os::mapped_bytes(), before);
}
