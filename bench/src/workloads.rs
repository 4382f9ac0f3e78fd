//! The allocation patterns under test. Each takes an allocator handle and an operation budget
//! and returns how many operations it actually did (some round up to whole cycles); an
//! "operation" is one allocation (or one `realloc` call), its matching free included.

use std::hint::black_box;
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;

use crate::allocators::Handle;
use crate::heap::{self, Block};
use crate::rng::Rng;

/// One named workload.
pub struct Workload {
    /// Name used on the command line, in the table and in JSON.
    pub name: &'static str,
    /// One-line description for `--list`.
    pub about: &'static str,
    /// Operations per timed run by default; sized so one run of the system allocator takes
    /// about 0.35 s on a 2-core EPYC, which keeps a default run of two allocators near 30 s
    /// and of five (hakmem plus three fast peers) near 60 s.
    pub default_ops: u64,
    /// Runs the workload and returns the operations done.
    pub run: fn(Handle, u64) -> u64,
}

/// Every workload, in report order.
pub static WORKLOADS: &[Workload] = &[
    Workload {
        name: "random-mixed",
        about: "1 thread, 1000 slots, replace a random slot with 8..=1024 B",
        default_ops: 15_000_000,
        run: random_mixed,
    },
    Workload {
        name: "larson-1t",
        about: "1 thread, 1000 slots, replace a random slot with 16..=512 B",
        default_ops: 15_000_000,
        run: larson_1t,
    },
    Workload {
        name: "larson-2t",
        about: "2 threads, larson slots, 1 in 8 replaced blocks handed to the peer to free",
        default_ops: 12_000_000,
        run: larson_2t,
    },
    Workload {
        name: "prod-cons",
        about: "producer allocates 16..=256 B in batches of 256, consumer frees (all remote)",
        default_ops: 2_700_000,
        run: prod_cons,
    },
    Workload {
        name: "xmalloc-like",
        about: "2 threads swap batches of 2048 blocks (8..=128 B); each frees the other's batch",
        default_ops: 12_000_000,
        run: xmalloc_like,
    },
    Workload {
        name: "xmalloc-4x4",
        about: "4 producers, 4 consumers (8 threads): batches of 512 blocks (16..=256 B) rotate over the consumers",
        default_ops: 4_000_000,
        run: xmalloc_4x4,
    },
    Workload {
        name: "all-to-all",
        about: "4 threads; each round every thread allocates 1024 blocks (16..=512 B), frees a quarter, sends a quarter to each peer",
        default_ops: 4_000_000,
        run: all_to_all,
    },
    Workload {
        name: "sh6-like-1t",
        about: "1 thread, 3/4 short-lived blocks, 1/4 kept in a 10k ring, 8..=512 B skewed small",
        default_ops: 15_000_000,
        run: sh6_like_1t,
    },
    Workload {
        name: "sh6-like-2t",
        about: "sh6-like on 2 independent threads",
        default_ops: 27_000_000,
        run: sh6_like_2t,
    },
    Workload {
        name: "grow-shrink",
        about: "grow to 200k blocks (16..=256 B), free all in scattered order, repeat",
        default_ops: 1_800_000,
        run: grow_shrink,
    },
    Workload {
        name: "realloc-grow",
        about: "16 blocks realloc'd from 8 B to 64 KiB in ~12% steps, then freed, repeat",
        default_ops: 1_100_000,
        run: realloc_grow,
    },
];

/// Looks a workload up by its command-line name.
pub fn by_name(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

// The handle goes through black_box so the optimiser cannot specialise a loop for one
// allocator (all must be reached the same way) nor prove an allocation unused.
#[inline(always)]
fn opaque(a: Handle) -> Handle {
    black_box(a)
}

fn free_all(a: Handle, blocks: &mut [Block]) {
    for b in blocks.iter_mut() {
        if b.is_live() {
            heap::free(a, *b);
            *b = Block::EMPTY;
        }
    }
}

/// Single thread, random sizes 8..=1024, 1000 slots; each step frees a random slot's block
/// and puts a fresh one there.
pub fn random_mixed(a: Handle, ops: u64) -> u64 {
    const SLOTS: usize = 1000;
    let a = opaque(a);
    let mut rng = Rng::new(1);
    let mut slots = vec![Block::EMPTY; SLOTS];
    for _ in 0..ops {
        let i = rng.below(SLOTS);
        let size = rng.range(8, 1024);
        if slots[i].is_live() {
            heap::free(a, slots[i]);
        }
        slots[i] = heap::alloc(a, size);
        black_box(slots[i].ptr);
    }
    free_all(a, &mut slots);
    ops
}

fn larson_1t(a: Handle, ops: u64) -> u64 {
    larson(a, ops, 1)
}

fn larson_2t(a: Handle, ops: u64) -> u64 {
    larson(a, ops, 2)
}

/// Larson-style slot replacement on `threads` threads, each owning 1000 slots of 16..=512 B.
/// With more than one thread, 1 in 8 replaced blocks is mailed to the next thread instead of
/// being freed locally, so that share of frees is remote.
pub fn larson(a: Handle, ops: u64, threads: usize) -> u64 {
    const SLOTS: usize = 1000;
    const HANDOFF_ONE_IN: usize = 8;
    // Mail goes out in batches so the mutex is taken rarely, as a real work queue would be.
    const BATCH: usize = 64;
    // Reserved up front so the mailboxes (system-allocated) never grow during the timed loop.
    const MAILBOX_CAP: usize = 1 << 14;

    let a = opaque(a);
    let per_thread = ops / threads as u64;
    let mailboxes: Vec<Mutex<Vec<Block>>> = (0..threads)
        .map(|_| Mutex::new(Vec::with_capacity(MAILBOX_CAP)))
        .collect();
    let mailboxes = &mailboxes;

    thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let peer = (t + 1) % threads;
                let mut rng = Rng::new(100 + t as u64);
                let mut slots = vec![Block::EMPTY; SLOTS];
                let mut outbox: Vec<Block> = Vec::with_capacity(BATCH);
                let mut inbox: Vec<Block> = Vec::with_capacity(MAILBOX_CAP);
                for i in 0..per_thread {
                    let idx = rng.below(SLOTS);
                    let size = rng.range(16, 512);
                    let old = slots[idx];
                    if old.is_live() {
                        if threads > 1 && rng.one_in(HANDOFF_ONE_IN) {
                            outbox.push(old);
                            if outbox.len() == BATCH {
                                mailboxes[peer].lock().unwrap().append(&mut outbox);
                            }
                        } else {
                            heap::free(a, old);
                        }
                    }
                    slots[idx] = heap::alloc(a, size);
                    black_box(slots[idx].ptr);
                    if threads > 1 && i % BATCH as u64 == 0 {
                        // Swap rather than drain under the lock: the peer is blocked only for
                        // a pointer exchange, and both Vecs keep their capacity.
                        std::mem::swap(&mut *mailboxes[t].lock().unwrap(), &mut inbox);
                        for b in inbox.drain(..) {
                            heap::free(a, b);
                        }
                    }
                }
                if !outbox.is_empty() {
                    mailboxes[peer].lock().unwrap().append(&mut outbox);
                }
                free_all(a, &mut slots);
            });
        }
    });
    // Whatever was mailed after its owner last looked is freed here: remote frees as well.
    for m in mailboxes {
        for b in m.lock().unwrap().drain(..) {
            heap::free(a, b);
        }
    }
    per_thread * threads as u64
}

/// One producer thread allocates 16..=256 B blocks and ships them in batches of 256 to a
/// consumer thread that frees them, so every free is remote.
pub fn prod_cons(a: Handle, ops: u64) -> u64 {
    const BATCH: usize = 256;
    // Bounded so the producer cannot run arbitrarily far ahead and turn this into grow-shrink.
    const IN_FLIGHT: usize = 16;

    let a = opaque(a);
    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<Block>>(IN_FLIGHT);
    // Emptied batch Vecs travel back so the channel traffic allocates (from the system
    // allocator) only while warming up, not once per batch.
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<Block>>();

    thread::scope(|s| {
        s.spawn(move || {
            let mut rng = Rng::new(3);
            let mut left = ops;
            while left > 0 {
                let mut batch = empty_rx
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(BATCH));
                let n = left.min(BATCH as u64);
                for _ in 0..n {
                    let b = heap::alloc(a, rng.range(16, 256));
                    black_box(b.ptr);
                    batch.push(b);
                }
                left -= n;
                full_tx.send(batch).expect("consumer gone");
            }
        });
        s.spawn(move || {
            for mut batch in full_rx {
                for b in batch.drain(..) {
                    heap::free(a, b);
                }
                // The producer may have finished and dropped its end; that is fine.
                let _ = empty_tx.send(batch);
            }
        });
    });
    ops
}

/// Two threads each allocate a batch of 2048 blocks (8..=128 B) and hand it to the other,
/// which frees the whole batch before allocating its next one: allocation and free of every
/// block happen on different threads, with both roles on both threads.
pub fn xmalloc_like(a: Handle, ops: u64) -> u64 {
    const BATCH: usize = 2048;
    let a = opaque(a);
    let rounds = (ops / (2 * BATCH as u64)).max(1);
    let (to_b, from_a) = mpsc::channel::<Vec<Block>>();
    let (to_a, from_b) = mpsc::channel::<Vec<Block>>();

    let side = move |seed: u64, tx: mpsc::Sender<Vec<Block>>, rx: mpsc::Receiver<Vec<Block>>| {
        let mut rng = Rng::new(seed);
        for r in 0..rounds {
            let mut batch = if r == 0 {
                Vec::with_capacity(BATCH)
            } else {
                let mut got = rx.recv().expect("peer gone");
                for b in got.drain(..) {
                    heap::free(a, b);
                }
                got
            };
            for _ in 0..BATCH {
                let b = heap::alloc(a, rng.range(8, 128));
                black_box(b.ptr);
                batch.push(b);
            }
            tx.send(batch).expect("peer gone");
        }
        // The peer's last batch has nobody else to free it.
        for b in rx.recv().expect("peer gone") {
            heap::free(a, b);
        }
    };
    thread::scope(|s| {
        s.spawn(move || side(4, to_b, from_b));
        s.spawn(move || side(5, to_a, from_a));
    });
    rounds * 2 * BATCH as u64
}

/// mimalloc-bench's xmalloc-test, with more threads than cores: 4 producers allocate batches
/// of 512 blocks and hand them to 4 consumers, producer `p`'s `r`-th batch going to consumer
/// `(p + r) % 4`, so every consumer frees blocks of every producer (all remote), and both sides
/// run on 2 cores at once.
pub fn xmalloc_4x4(a: Handle, ops: u64) -> u64 {
    const SIDE: usize = 4;
    const BATCH: usize = 512;
    // Bounded, so that producers cannot run far ahead and turn this into grow-shrink.
    const IN_FLIGHT: usize = 4;
    let a = opaque(a);
    let per_producer = (ops / (SIDE * BATCH) as u64).max(1);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..SIDE).map(|_| mpsc::sync_channel::<Vec<Block>>(IN_FLIGHT)).unzip();
    thread::scope(|s| {
        for p in 0..SIDE {
            let txs = txs.clone();
            s.spawn(move || {
                let mut rng = Rng::new(200 + p as u64);
                for r in 0..per_producer {
                    let mut batch = Vec::with_capacity(BATCH);
                    for _ in 0..BATCH {
                        let b = heap::alloc(a, rng.range(16, 256));
                        black_box(b.ptr);
                        batch.push(b);
                    }
                    txs[(p + r as usize) % SIDE].send(batch).expect("consumer gone");
                }
            });
        }
        // The consumers end when every producer's sender is gone.
        drop(txs);
        for rx in rxs {
            s.spawn(move || {
                for batch in rx {
                    for b in batch {
                        heap::free(a, b);
                    }
                }
            });
        }
    });
    per_producer * (SIDE * BATCH) as u64
}

/// Every thread frees a share of every other thread's blocks: in each round each of 4 threads
/// allocates 1024 blocks, frees a quarter itself and sends a quarter to each peer, then frees
/// what its peers sent it.
pub fn all_to_all(a: Handle, ops: u64) -> u64 {
    const THREADS: usize = 4;
    const ROUND: usize = 1024;
    const SHARE: usize = ROUND / THREADS;
    let a = opaque(a);
    let rounds = (ops / (THREADS * ROUND) as u64).max(1);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel::<Vec<Block>>()).unzip();
    thread::scope(|s| {
        for (t, rx) in rxs.into_iter().enumerate() {
            let txs = txs.clone();
            s.spawn(move || {
                let mut rng = Rng::new(300 + t as u64);
                for _ in 0..rounds {
                    let mut mine: Vec<Block> = (0..ROUND).map(|_| heap::alloc(a, rng.range(16, 512))).collect();
                    for (peer, tx) in txs.iter().enumerate() {
                        let share: Vec<Block> = mine.drain(mine.len() - SHARE..).collect();
                        if peer == t {
                            for b in share {
                                heap::free(a, b);
                            }
                        } else {
                            tx.send(share).expect("peer gone");
                        }
                    }
                    // One share from each peer for this round (they may run a round ahead).
                    for _ in 1..THREADS {
                        for b in rx.recv().expect("peer gone") {
                            heap::free(a, b);
                        }
                    }
                }
            });
        }
    });
    rounds * (THREADS * ROUND) as u64
}

fn sh6_like_1t(a: Handle, ops: u64) -> u64 {
    sh6_like(a, ops, 1)
}

fn sh6_like_2t(a: Handle, ops: u64) -> u64 {
    sh6_like(a, ops, 2)
}

/// shbench-style mixed lifetimes on `threads` independent threads: 3 in 4 blocks are freed
/// right away, the rest go into a ring of 10k long-lived blocks, evicting the oldest.
/// Sizes 8..=512 skewed small (product of two uniforms), as in typical object-heavy code.
pub fn sh6_like(a: Handle, ops: u64, threads: usize) -> u64 {
    const RING: usize = 10_000;
    let a = opaque(a);
    let per_thread = ops / threads as u64;
    thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut rng = Rng::new(200 + t as u64);
                let mut ring = vec![Block::EMPTY; RING];
                let mut cursor = 0;
                for _ in 0..per_thread {
                    let size = 8 + rng.below(505) * rng.below(505) / 504;
                    if rng.below(4) != 0 {
                        let b = heap::alloc(a, size);
                        black_box(b.ptr);
                        heap::free(a, b);
                    } else {
                        if ring[cursor].is_live() {
                            heap::free(a, ring[cursor]);
                        }
                        ring[cursor] = heap::alloc(a, size);
                        black_box(ring[cursor].ptr);
                        cursor = if cursor + 1 == RING { 0 } else { cursor + 1 };
                    }
                }
                free_all(a, &mut ring);
            });
        }
    });
    per_thread * threads as u64
}

/// Grows a working set to 200k blocks of 16..=256 B, then frees all of them in a scattered
/// order (like tearing down a hash map or a tree), and repeats.
pub fn grow_shrink(a: Handle, ops: u64) -> u64 {
    const PEAK: usize = 200_000;
    // Coprime with PEAK (2^6 * 5^5), so i * STRIDE % PEAK visits every index once.
    const STRIDE: usize = 7919;
    let a = opaque(a);
    let cycles = ops.div_ceil(PEAK as u64).max(1);
    let mut rng = Rng::new(6);
    let mut live: Vec<Block> = Vec::with_capacity(PEAK);
    for _ in 0..cycles {
        for _ in 0..PEAK {
            let b = heap::alloc(a, rng.range(16, 256));
            black_box(b.ptr);
            live.push(b);
        }
        for i in 0..PEAK {
            heap::free(a, live[i * STRIDE % PEAK]);
        }
        live.clear();
    }
    cycles * PEAK as u64
}

/// Sixteen blocks grown round-robin by `realloc` from 8 B to 64 KiB in ~12% steps (like several
/// Vecs or Strings filling up at once), each freed and restarted at 8 B when it reaches the top.
/// With one or a few blocks, glibc grows whichever sits below the heap top in place and the
/// figure swings by 2-30x with heap layout; sixteen make in-place growth the exception and
/// the result stable.
pub fn realloc_grow(a: Handle, ops: u64) -> u64 {
    const BLOCKS: usize = 16;
    const TOP: usize = 64 * 1024;
    let a = opaque(a);
    // Staggered start sizes so the four blocks are not in lockstep.
    let mut blocks: Vec<Block> = (0..BLOCKS)
        .map(|i| heap::alloc(a, 8 << (3 * (i % 4))))
        .collect();
    for op in 0..ops {
        let j = op as usize % BLOCKS;
        let b = blocks[j];
        blocks[j] = if b.size >= TOP {
            heap::free(a, b);
            heap::alloc(a, 8)
        } else {
            heap::realloc(a, b, (b.size + b.size / 8 + 8).min(TOP))
        };
        black_box(blocks[j].ptr);
    }
    free_all(a, &mut blocks);
    ops
}

/// Exactly `n` alloc/free pairs of 64 bytes and nothing else, for instruction counting under
/// callgrind (`--toggle-collect='*pair_loop*'` isolates it from process start-up).
#[inline(never)]
pub fn pair_loop(a: Handle, n: u64) {
    let a = opaque(a);
    let layout = std::alloc::Layout::from_size_align(64, heap::ALIGN).unwrap();
    for _ in 0..n {
        // SAFETY: non-zero layout; the block is freed with the same layout right after.
        unsafe {
            let p = a.alloc(layout);
            if p.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            a.dealloc(black_box(p), layout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WORKLOADS;
    use crate::allocators::ALLOCATORS;

    // Correctness only: every workload runs to completion on every allocator, with the tag
    // checks in `heap` watching for corruption. No timing is checked anywhere.
    #[test]
    fn every_workload_runs_small_on_every_allocator() {
        for a in ALLOCATORS {
            for w in WORKLOADS {
                let done = (w.run)(a.handle, 10_000);
                assert!(done > 0, "{} on {} did nothing", w.name, a.name);
            }
        }
    }
}
