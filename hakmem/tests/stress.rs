//! Multi-thread stress through explicit caches: producer/consumer where every free is remote,
//! larson-like slot replacement across threads, and many short-lived threads. Bounded by
//! operation counts; every block carries a pattern that is verified before it is freed.

use hakmem::{Heap, ThreadCache};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Allocates `size` bytes and stamps them so that `verify_and_free` can tell if they changed.
fn stamped(c: &mut ThreadCache<'_>, size: usize) -> usize {
    let size = size.max(16);
    let p = c.alloc(size, 8);
    assert!(!p.is_null());
    unsafe {
        p.cast::<usize>().write(size);
        p.add(8).write_bytes((p.addr() >> 4) as u8, size - 8);
    }
    p.addr()
}

/// Checks a stamped block and frees it through `c`.
fn verify_and_free(c: &mut ThreadCache<'_>, addr: usize) {
    let p = addr as *mut u8;
    unsafe {
        let size = p.cast::<usize>().read();
        let body = std::slice::from_raw_parts(p.add(8), size - 8);
        assert!(body.iter().all(|&b| b == (addr >> 4) as u8), "block {p:p} size {size} corrupted");
        c.free(p);
    }
}

#[test]
fn producer_consumer_every_free_is_remote() {
    let heap: Heap = Heap::new();
    let (tx, rx) = mpsc::sync_channel::<Vec<usize>>(64);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let tx = tx.clone();
            let heap = &heap;
            s.spawn(move || {
                let mut c = heap.cache();
                let mut rng = 0x1234_5678 + t;
                for _ in 0..400 {
                    let batch = (0..256).map(|_| stamped(&mut c, 16 + (xorshift(&mut rng) % 2000) as usize)).collect();
                    tx.send(batch).unwrap();
                }
            });
        }
        drop(tx);
        let heap = &heap;
        s.spawn(move || {
            let mut c = heap.cache();
            for batch in rx {
                for a in batch {
                    verify_and_free(&mut c, a);
                }
            }
        });
    });
    // Every block came home through remote queues; nothing may be left abandoned.
    let mut c = heap.cache();
    let p = c.alloc(64, 8);
    unsafe { c.free(p) };
    drop(c);
    let s = heap.stats();
    assert!(s.peak_mapped_bytes < 64 << 20, "{s:?}");
}

#[test]
fn larson_like_slot_replacement_across_threads() {
    const SLOTS: usize = 4096;
    let heap: Heap = Heap::new();
    let slots: Vec<AtomicUsize> = (0..SLOTS).map(|_| AtomicUsize::new(0)).collect();
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (heap, slots) = (&heap, &slots);
            s.spawn(move || {
                let mut c = heap.cache();
                let mut rng = 0xdead_beef + t * 77;
                for _ in 0..150_000 {
                    let r = xorshift(&mut rng);
                    let new = stamped(&mut c, 16 + (r % 500) as usize);
                    let old = slots[(r >> 20) as usize % SLOTS].swap(new, Ordering::AcqRel);
                    if old != 0 {
                        verify_and_free(&mut c, old);
                    }
                }
            });
        }
    });
    let mut c = heap.cache();
    for s in &slots {
        let a = s.load(Ordering::Relaxed);
        if a != 0 {
            verify_and_free(&mut c, a);
        }
    }
}

#[test]
fn many_short_lived_threads_leave_nothing_behind() {
    let heap: Heap = Heap::new();
    let mut survivors = vec![];
    for round in 0..100u64 {
        let kept: Vec<Vec<usize>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4u64)
                .map(|t| {
                    let heap = &heap;
                    s.spawn(move || {
                        let mut c = heap.cache();
                        let mut rng = round * 31 + t + 1;
                        let mut mine: Vec<usize> =
                            (0..1000).map(|_| stamped(&mut c, (xorshift(&mut rng) % 3000) as usize)).collect();
                        // Free half here; the rest outlives the thread and its cache.
                        for a in mine.drain(..500) {
                            verify_and_free(&mut c, a);
                        }
                        mine
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        survivors.extend(kept.into_iter().flatten());
        // Keep the live set bounded, freeing from the main thread (remote to dead caches).
        let mut c = heap.cache();
        while survivors.len() > 4000 {
            let a = survivors.swap_remove(0);
            verify_and_free(&mut c, a);
        }
    }
    let mut c = heap.cache();
    for a in survivors {
        verify_and_free(&mut c, a);
    }
    drop(c);
    // 400 threads came and went; memory must reflect the live set, not the thread count.
    let s = heap.stats();
    assert!(s.peak_mapped_bytes < 48 << 20, "{s:?}");
    assert_eq!(s.caches, 0);
}
