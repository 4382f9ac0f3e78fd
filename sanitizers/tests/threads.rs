//! Multi-thread stress meant for ThreadSanitizer (they also run, quickly, in the plain suite).
//!
//! Each test is built so that the allocator's own synchronization is the *only* thing ordering the
//! accesses TSan watches: where one thread must wait for another, it spins on a Relaxed flag,
//! which gives TSan no happens-before edge. A missing Release/Acquire inside hakmem then shows up
//! as a data race instead of being hidden by a channel or a join. The first test is also the
//! control of `just tsan`: built with the feature `fault-remote-relaxed` (an entry of the fault catalog) it must be reported.

use hakmem::{Heap, ThreadCache};
use hakmem_sanitizers::{xorshift, Blk};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc;

fn wait_for(flag: &AtomicBool) {
    // Relaxed on purpose: this wait must not order anything for TSan (see the module docs).
    while !flag.load(Relaxed) {
        std::thread::yield_now();
    }
}

fn wait_until(n: &AtomicUsize, at_least: usize) {
    while n.load(Relaxed) < at_least {
        std::thread::yield_now();
    }
}

/// Allocates a block of `size` bytes from `c` and fills it with its pattern.
fn stamped(c: &mut ThreadCache<'_>, size: usize) -> Blk {
    let p = c.alloc(size, 8);
    assert!(!p.is_null());
    // SAFETY: fresh block of `size` bytes.
    unsafe { Blk::stamp(p, size) }
}

/// The remote-free handoff alone: the owner hands blocks to another thread (a spawn, which
/// orders owner -> freer), the freer checks and frees them (remote pushes), and the owner drains
/// and reuses them after a Relaxed flag says the freer is done. Freer -> owner is ordered by
/// nothing but the owner's inbox: the freer's Release push of a batch, the owner's Acquire take;
/// with `fault-remote-relaxed` (an entry of the fault catalog) TSan reports the free's writes to
/// a batch (`batch.rs`, published by the inbox's CAS) racing with the owner's reads of it as it
/// takes the batch in (`CacheInner::take_in`).
#[test]
fn remote_free_handoff_is_ordered_by_the_queue_alone() {
    let heap: Heap = Heap::new();
    let mut owner = heap.cache();
    let mut freer = heap.cache();
    for round in 0..20 {
        let size = [16, 48, 200, 1000, 6000][round % 5];
        let blocks: Vec<Blk> = (0..64).map(|_| stamped(&mut owner, size)).collect();
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let (freer, done, blocks) = (&mut freer, &done, &blocks);
            s.spawn(move || {
                for b in blocks {
                    // SAFETY: the block was handed to this thread and is live.
                    unsafe { freer.free(b.verify()) };
                }
                done.store(true, Relaxed);
            });
            wait_for(done);
            // Drain the remote queues and hand the same slots out again; write them all.
            owner.flush();
            let again: Vec<Blk> = (0..64).map(|_| stamped(&mut owner, size)).collect();
            for b in again {
                // SAFETY: ours and live.
                unsafe { owner.free(b.verify()) };
            }
        });
    }
}

/// Every block is freed by the next thread of a ring: all frees are remote, across all classes
/// (tiny, mid and a few large), and every block is checked before it is freed.
#[test]
fn ring_of_threads_frees_each_others_blocks() {
    const T: usize = 3;
    let heap: Heap = Heap::new();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..T).map(|_| mpsc::sync_channel::<Vec<Blk>>(4)).unzip();
    std::thread::scope(|s| {
        for (t, rx) in rxs.into_iter().enumerate() {
            let (heap, tx) = (&heap, txs[(t + 1) % T].clone());
            s.spawn(move || {
                let mut c = heap.cache();
                let mut rng = 0x9e37_79b9 + t as u64;
                for _ in 0..200 {
                    let batch: Vec<Blk> = (0..64)
                        .map(|_| {
                            let r = xorshift(&mut rng);
                            let size = match r % 64 {
                                0 => 40_000 + (r >> 8) as usize % 60_000,
                                1..=8 => 1025 + (r >> 8) as usize % 31_000,
                                _ => 1 + (r >> 8) as usize % 1024,
                            };
                            stamped(&mut c, size)
                        })
                        .collect();
                    tx.send(batch).unwrap();
                    for b in rx.recv().unwrap() {
                        // SAFETY: the block was sent to this thread and is live.
                        unsafe { c.free(b.verify()) };
                    }
                }
                // The last batch of the previous thread is still in flight; take it after our
                // own sender is gone so that no thread waits on a full channel.
                drop(tx);
                for batch in rx {
                    for b in batch {
                        // SAFETY: as above.
                        unsafe { c.free(b.verify()) };
                    }
                }
            });
        }
        drop(txs);
    });
    assert_eq!(heap.stats().caches, 0);
}

/// A cache goes away (its slabs are abandoned) while two other threads are still freeing its
/// blocks remotely; a fourth thread then adopts the slabs or the heap reclaims them, and reuses
/// the slots. Only the heap lock and the remote queues order these.
#[test]
fn abandoned_slabs_with_remote_frees_in_flight() {
    let heap: Heap = Heap::new();
    for round in 0..40 {
        let freed = AtomicUsize::new(0);
        let handed = AtomicBool::new(false);
        let blocks: Vec<Blk> = {
            let mut owner = heap.cache();
            let mut rng = round as u64 + 1;
            let v = (0..600).map(|_| stamped(&mut owner, 8 + (xorshift(&mut rng) % 2000) as usize)).collect();
            // The owner is dropped below while the freers run.
            std::thread::scope(|s| {
                let blocks: &Vec<Blk> = &v;
                for half in 0..2 {
                    let (heap, freed, handed) = (&heap, &freed, &handed);
                    s.spawn(move || {
                        let mut c = heap.cache();
                        wait_for(handed);
                        for b in blocks.iter().skip(half).step_by(2) {
                            // SAFETY: each block goes to exactly one freer and is live.
                            unsafe { c.free(b.verify()) };
                            freed.fetch_add(1, Relaxed);
                        }
                    });
                }
                handed.store(true, Relaxed);
                drop(owner);
                // A new cache adopts the abandoned slabs (or the heap reclaims them once emptied)
                // while frees may still be arriving.
                let mut adopter = heap.cache();
                let mut rng = 7 + round as u64;
                let mine: Vec<Blk> = (0..600).map(|_| stamped(&mut adopter, 8 + (xorshift(&mut rng) % 2000) as usize)).collect();
                wait_until(&freed, 600);
                for b in mine {
                    // SAFETY: ours and live.
                    unsafe { adopter.free(b.verify()) };
                }
            });
            v
        };
        drop(blocks);
        let st = heap.stats();
        assert_eq!(st.caches, 0, "{st:?}");
    }
}

/// Slabs change class and thread: one thread fills slabs with tiny blocks that another frees
/// remotely; the first gives the emptied slabs back to the pool and the second carves them
/// for a mid class and writes every byte of the memory the first thread had used.
#[test]
fn pooled_slabs_change_class_and_thread() {
    let heap: Heap = Heap::new();
    for round in 0..12 {
        let freed = AtomicBool::new(false);
        let pooled = AtomicBool::new(false);
        let mut a = heap.cache();
        let tiny: Vec<Blk> = (0..8192).map(|_| stamped(&mut a, 16 + round % 3 * 16)).collect();
        std::thread::scope(|s| {
            let (heap, tiny, freed, pooled) = (&heap, &tiny, &freed, &pooled);
            s.spawn(move || {
                let mut b = heap.cache();
                for blk in tiny {
                    // SAFETY: handed over by the spawn and live.
                    unsafe { b.free(blk.verify()) };
                }
                freed.store(true, Relaxed);
                wait_for(pooled);
                let mid: Vec<Blk> = (0..256).map(|_| stamped(&mut b, 3000)).collect();
                for blk in mid {
                    // SAFETY: ours and live.
                    unsafe { b.free(blk.verify()) };
                }
            });
            wait_for(freed);
            a.flush();
            pooled.store(true, Relaxed);
        });
        drop(a);
    }
}
