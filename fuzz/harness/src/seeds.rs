//! Seed programs: small hand-written programs that reach each path of the allocator, written to
//! `corpora/<target>/` by `cargo run -p hakmem-fuzz --bin seed` (`just seed`). They are kept as
//! programs, not bytes, so the corpora are rewritten whenever the byte format changes.

use crate::decode::EDGE_SIZES;
use crate::program::{BlockId, Knobs, Op, Program, Step};

/// Builds a program step by step, numbering blocks as the decoder does.
pub struct Builder {
    prog: Program,
    next: BlockId,
}

impl Builder {
    /// An empty program with `threads` logical threads.
    pub fn new(threads: u8) -> Self {
        Builder { prog: Program { threads, knobs: Knobs::default(), release: false, steps: Vec::new() }, next: 0 }
    }

    /// Runs the program on a release heap.
    pub fn release(&mut self) -> &mut Self {
        self.prog.release = true;
        self
    }

    /// Appends `op` for thread `t`.
    pub fn op(&mut self, t: u8, op: Op) -> &mut Self {
        self.prog.steps.push(Step::new(t, op));
        self
    }

    /// Sets the heap thresholds of the program's header.
    pub fn knobs(&mut self, k: Knobs) -> &mut Self {
        self.prog.knobs = k;
        self
    }

    /// Gives the last step its schedule: start at point `at` of the steps before it, pause at
    /// its own point `pause`.
    pub fn sched(&mut self, at: Option<u16>, pause: Option<u16>) -> &mut Self {
        let s = self.prog.steps.last_mut().expect("a step to schedule");
        (s.at, s.pause) = (at, pause);
        self
    }

    /// Appends an allocation and returns the new block's id.
    pub fn alloc(&mut self, t: u8, size: usize, align_log2: u8) -> BlockId {
        self.op(t, Op::Alloc { size, align_log2 });
        self.next += 1;
        self.next - 1
    }

    /// Appends a calloc and returns the new block's id.
    pub fn calloc(&mut self, t: u8, n: usize, size: usize) -> BlockId {
        self.op(t, Op::Calloc { n, size });
        self.next += 1;
        self.next - 1
    }

    /// The program built so far.
    pub fn build(&self) -> Program {
        self.prog.clone()
    }
}

/// Plain seeds (deterministic and free-running targets), by file name.
pub fn plain() -> Vec<(&'static str, Program)> {
    let mut v = Vec::new();

    // One thread through every tier: write, check, grow and shrink in place and by moving.
    let mut b = Builder::new(1);
    let blocks: Vec<BlockId> = [8, 24, 100, 1000, 1024, 3000, 20000, 32768, 40000, 300_000]
        .iter()
        .map(|&s| b.alloc(0, s, 3))
        .collect();
    for (i, &x) in blocks.iter().enumerate() {
        b.op(0, Op::Write { slot: x, byte: i as u8 + 1 }).op(0, Op::Check { slot: x });
    }
    b.op(0, Op::Realloc { slot: blocks[0], size: 700 });
    b.op(0, Op::Realloc { slot: blocks[3], size: 600 });
    b.op(0, Op::Realloc { slot: blocks[6], size: 90_000 });
    b.op(0, Op::Realloc { slot: blocks[9], size: 500_000 });
    for &x in blocks.iter().rev() {
        b.op(0, Op::Free { slot: x });
    }
    v.push(("tiers", b.build()));

    // Producer/consumer: every free is remote, then the owner drains and reuses.
    let mut b = Builder::new(2);
    let xs: Vec<BlockId> = (0..24).map(|i| b.alloc(0, 16 + i * 40, 3)).collect();
    for &x in &xs {
        b.op(0, Op::RemoteFree { slot: x, by: 1 });
    }
    for i in 0..8 {
        let y = b.alloc(0, 16 + i * 40, 3);
        b.op(0, Op::Free { slot: y });
    }
    b.op(1, Op::Flush).op(0, Op::Flush);
    v.push(("remote", b.build()));

    // A thread ends with live blocks: its slabs are abandoned, adopted by another cache, and
    // the blocks freed remotely afterwards.
    let mut b = Builder::new(2);
    let xs: Vec<BlockId> = (0..10).map(|_| b.alloc(0, 48, 3)).collect();
    b.op(0, Op::EndThread);
    let ys: Vec<BlockId> = (0..10).map(|_| b.alloc(1, 48, 3)).collect();
    for &x in &xs {
        b.op(0, Op::RemoteFree { slot: x, by: 1 });
    }
    for &y in &ys {
        b.op(1, Op::Check { slot: y }).op(1, Op::Free { slot: y });
    }
    b.op(1, Op::EndThread);
    v.push(("abandon", b.build()));

    // Aligned and large blocks, large realloc growth, region-sized alignment.
    let mut b = Builder::new(1);
    let xs: Vec<BlockId> = [(64, 12), (100, 6), (5000, 12), (1, 13), (100_000, 12), (200, 22), (4096, 12)]
        .iter()
        .map(|&(s, a)| b.alloc(0, s, a))
        .collect();
    b.op(0, Op::Realloc { slot: xs[4], size: 400_000 });
    b.op(0, Op::Realloc { slot: xs[0], size: 3000 });
    for &x in &xs {
        b.op(0, Op::Check { slot: x }).op(0, Op::Free { slot: x });
    }
    v.push(("aligned", b.build()));

    // calloc on fresh and on reused memory.
    let mut b = Builder::new(1);
    let xs: Vec<BlockId> = (0..6).map(|i| b.alloc(0, 64 << i, 4)).collect();
    for &x in &xs {
        b.op(0, Op::Free { slot: x });
    }
    for i in 0..6 {
        let y = b.calloc(0, 1 + i, 64 << i);
        b.op(0, Op::Write { slot: y, byte: 0xee });
    }
    b.calloc(0, 16, 40000);
    v.push(("calloc", b.build()));

    // Eight threads in a ring: each frees its neighbour's blocks, some threads end midway.
    let mut b = Builder::new(8);
    let mut held: Vec<Vec<BlockId>> = vec![Vec::new(); 8];
    for round in 0..2usize {
        for t in 0..8u8 {
            for k in 0..3usize {
                held[t as usize].push(b.alloc(t, 8 + (round * 97 + k * 301 + t as usize * 13) % 1024, 3));
            }
        }
        for t in 0..8u8 {
            let x = held[t as usize].remove(0);
            b.op(t, Op::RemoteFree { slot: x, by: (t + 1) % 8 });
        }
        b.op(round as u8, Op::EndThread);
    }
    v.push(("ring", b.build()));

    // realloc through every tier and back.
    let mut b = Builder::new(2);
    let x = b.alloc(0, 8, 3);
    for s in [1024, 1025, 32768, 32769, 1 << 20, 100, 0, 5] {
        b.op(0, Op::Realloc { slot: x, size: s });
    }
    b.op(0, Op::RemoteFree { slot: x, by: 1 });
    v.push(("realloc-chain", b.build()));

    // Every edge size, each written and freed.
    let mut b = Builder::new(1);
    for &s in EDGE_SIZES.iter() {
        let x = b.alloc(0, s, 4);
        b.op(0, Op::Free { slot: x });
    }
    v.push(("edges", b.build()));

    // Fill more than two slabs of one class (64 KiB slabs of 3-4 KiB slots), free it all
    // remotely, flush, and fill again.
    let mut b = Builder::new(2);
    let xs: Vec<BlockId> = (0..40).map(|_| b.alloc(0, 3000, 4)).collect();
    for &x in &xs {
        b.op(0, Op::RemoteFree { slot: x, by: 1 });
    }
    b.op(0, Op::Flush);
    let ys: Vec<BlockId> = (0..30).map(|_| b.alloc(0, 2900, 3)).collect();
    for &y in ys.iter().step_by(2) {
        b.op(0, Op::Free { slot: y });
    }
    b.op(0, Op::Flush).op(0, Op::EndThread);
    v.push(("slab-cycle", b.build()));

    // Blocks handed between threads: reallocated, written and freed by a thread that did not
    // allocate them, then handed back.
    let mut b = Builder::new(3);
    let xs: Vec<BlockId> = (0..6).map(|i| b.alloc(0, 24 + i * 500, 3)).collect();
    for &x in &xs {
        b.op(0, Op::Give { slot: x, to: 1 });
    }
    for (i, &x) in xs.iter().enumerate() {
        b.op(1, Op::Realloc { slot: x, size: 40 + i * 700 }).op(1, Op::Write { slot: x, byte: 0x42 });
    }
    for &x in &xs[..3] {
        b.op(1, Op::Give { slot: x, to: 2 });
    }
    b.op(0, Op::EndThread);
    for &x in &xs[..3] {
        b.op(2, Op::Check { slot: x }).op(2, Op::Free { slot: x });
    }
    for &x in &xs[3..] {
        b.op(1, Op::Give { slot: x, to: 0 });
    }
    for &x in &xs[3..] {
        b.op(0, Op::RemoteFree { slot: x, by: 2 });
    }
    v.push(("give", b.build()));

    // ---- Thresholds, crossed in a few steps through the header's knobs --------------------

    // Every pooled slab over the dirty-pool limit (0) is purged at once; the next calloc of the
    // class gets purged memory, the next block of another class the same slab.
    let mut b = Builder::new(1);
    b.knobs(Knobs { dirty_pool: 1, ..Knobs::default() });
    let x = b.alloc(0, 200, 3);
    let y = b.alloc(0, 3000, 3);
    b.op(0, Op::Write { slot: x, byte: 0x11 }).op(0, Op::Free { slot: y });
    let z = b.calloc(0, 1, 3000);
    b.alloc(0, 100, 3);
    b.op(0, Op::Check { slot: x }).op(0, Op::Free { slot: z }).op(0, Op::Flush);
    v.push(("purge", b.build()));

    // Regions of one slab each, none kept empty: every region that empties is unmapped (a spare
    // then) and mapped again for the next class; calloc on the re-mapped memory.
    let region_cycle = |release: bool| {
        let mut b = Builder::new(1);
        if release {
            b.release();
        }
        b.knobs(Knobs { region_slabs: 1, empty_regions: 1, ..Knobs::default() });
        let xs: Vec<BlockId> = [64, 3000, 20000, 100].iter().map(|&s| b.alloc(0, s, 3)).collect();
        for &x in &xs[..3] {
            b.op(0, Op::Free { slot: x });
        }
        b.op(0, Op::Flush);
        for s in [64, 3000, 20000] {
            let c = b.calloc(0, 1, s);
            b.op(0, Op::Free { slot: c });
        }
        b.op(0, Op::Check { slot: xs[3] });
        b.build()
    };
    v.push(("region-cycle", region_cycle(false)));
    // Regions of two slabs: both dirty when the region goes, so the spare it becomes is zeroed
    // as one run of two slabs; calloc then lands on each.
    let mut b = Builder::new(1);
    b.knobs(Knobs { region_slabs: 2, empty_regions: 1, ..Knobs::default() });
    let xs: Vec<BlockId> = [64, 3000].iter().map(|&s| b.alloc(0, s, 3)).collect();
    for &x in &xs {
        b.op(0, Op::Free { slot: x });
    }
    b.op(0, Op::Flush);
    for s in [64, 3000] {
        b.calloc(0, 1, s);
    }
    v.push(("region-cycle-runs", b.build()));
    v.push(("region-cycle-release", region_cycle(true)));
    // Regions of two slabs, none kept empty: a partly used region before an empty one on the
    // list of regions with room; the purge passes it and gives back only the empty one.
    let mut b = Builder::new(1);
    b.knobs(Knobs { region_slabs: 2, empty_regions: 1, ..Knobs::default() });
    let xs: Vec<BlockId> = [64, 3000, 20000, 100].iter().map(|&s| b.alloc(0, s, 3)).collect();
    b.op(0, Op::Free { slot: xs[1] }).op(0, Op::Flush);
    b.op(0, Op::Free { slot: xs[2] }).op(0, Op::Free { slot: xs[3] }).op(0, Op::Flush);
    b.op(0, Op::Check { slot: xs[0] });
    v.push(("purge-passes-partial", b.build()));

    // Two regions of two slabs at most: allocations beyond them fail (and realloc keeps the
    // block); freeing makes room again; the abandoned slabs are reclaimed when nothing else is.
    let mut b = Builder::new(2);
    b.knobs(Knobs { region_slabs: 1, max_regions: 1, ..Knobs::default() });
    let xs: Vec<BlockId> = [64, 3000, 20000].iter().map(|&s| b.alloc(0, s, 3)).collect();
    b.op(0, Op::Realloc { slot: xs[0], size: 5000 });
    b.op(0, Op::EndThread);
    b.op(0, Op::RemoteFree { slot: xs[1], by: 1 });
    b.op(1, Op::Flush);
    let y = b.alloc(1, 64, 3);
    b.op(1, Op::Free { slot: y });
    b.op(0, Op::Free { slot: xs[0] }).op(0, Op::Free { slot: xs[2] });
    b.alloc(1, 3000, 3);
    v.push(("budget", b.build()));

    // A tiny large-mapping cache (two mappings, 2 MiB): freed blocks evict each other; blocks a
    // little larger or smaller than a cached mapping reuse it; one block grows by a page.
    let mut b = Builder::new(1);
    b.knobs(Knobs { large_cache: 2, ..Knobs::default() });
    let xs: Vec<BlockId> = [40_000, 300_000, 500_000, 100_000].iter().map(|&s| b.alloc(0, s, 3)).collect();
    for &x in &xs {
        b.op(0, Op::Free { slot: x });
    }
    let y = b.alloc(0, 101_000, 3);
    let z = b.calloc(0, 2, 350_000);
    b.op(0, Op::Realloc { slot: y, size: 103_000 }).op(0, Op::Check { slot: z });
    v.push(("large-cache", b.build()));

    // No large-mapping cache at all: every freed block goes back (to the spares) at once,
    // while slabs are mapped and given back too.
    let mut b = Builder::new(2);
    b.knobs(Knobs { large_cache: 3, ..Knobs::default() });
    let x = b.alloc(0, 1 << 20, 3);
    let y = b.alloc(1, 100, 3);
    b.op(0, Op::Free { slot: x });
    let z = b.alloc(0, 1 << 20, 3);
    b.op(1, Op::Free { slot: y }).op(0, Op::Free { slot: z });
    v.push(("large-uncached", b.build()));

    // Remote frees queued one by one (chains of one), and a thread that ends with its chain
    // pending.
    let mut b = Builder::new(2);
    b.knobs(Knobs { pending: 1, ..Knobs::default() });
    let xs: Vec<BlockId> = (0..6).map(|i| b.alloc(0, 48 + (i % 2) * 300, 3)).collect();
    for &x in &xs[..3] {
        b.op(0, Op::RemoteFree { slot: x, by: 1 });
    }
    b.op(1, Op::EndThread);
    for &x in &xs[3..] {
        b.op(0, Op::RemoteFree { slot: x, by: 1 });
    }
    b.alloc(0, 48, 3);
    v.push(("pending", b.build()));

    // The largest slab classes fill their slabs with two or three slots.
    let mut b = Builder::new(1);
    b.release();
    let xs: Vec<BlockId> = [32768, 32768, 32768, 21760, 21760, 21760, 21760].iter().map(|&s| b.alloc(0, s, 3)).collect();
    b.alloc(0, 1000, 3);
    for &x in &xs {
        b.op(0, Op::Check { slot: x }).op(0, Op::Free { slot: x });
    }
    v.push(("full-slabs-release", b.build()));

    // Spares of 8 MiB at most, no large cache, no empty region kept: freed large mappings and
    // regions evict older spares, and a mapping larger than 8 MiB goes back to the OS. All at the
    // end: which spares are there depends on what ran before (a reset heap starts with spares a
    // new heap does not have), so no allocation may follow that could reuse one.
    let mut b = Builder::new(1);
    b.knobs(Knobs { spares: 1, large_cache: 3, empty_regions: 1, region_slabs: 1, ..Knobs::default() });
    let xs: Vec<BlockId> = [(1 << 22) - 4096, 1 << 22, (1 << 22) + 1, 8 << 20, 64, 3000, 20000].iter().map(|&s| b.alloc(0, s, 3)).collect();
    for &x in &xs {
        b.op(0, Op::Free { slot: x });
    }
    b.op(0, Op::Flush);
    v.push(("spares-full", b.build()));

    // Two slabs in all, both abandoned with a live block each; their blocks freed remotely; a
    // third class then finds no pooled slab and no room for a region, so the heap reclaims the
    // abandoned slabs that turned out empty.
    let mut b = Builder::new(2);
    b.knobs(Knobs { region_slabs: 1, max_regions: 1, ..Knobs::default() });
    let xs: Vec<BlockId> = [64, 3000].iter().map(|&s| b.alloc(0, s, 3)).collect();
    b.op(0, Op::EndThread);
    for &x in &xs {
        b.op(0, Op::RemoteFree { slot: x, by: 1 });
    }
    b.op(1, Op::Flush);
    let y = b.alloc(1, 20000, 3);
    b.op(1, Op::Check { slot: y });
    // Then the second reclaimed slab serves a calloc, and a calloc of a fourth class fails.
    b.calloc(1, 1, 500);
    b.calloc(1, 1, 100);
    v.push(("reclaim", b.build()));

    // A large block grows within the pages it already has (realloc in place, both heaps), and a
    // calloc reuses a cached mapping, which must be zeroed.
    let large_in_place = |release: bool| {
        let mut b = Builder::new(1);
        if release {
            b.release();
        }
        let x = b.alloc(0, 100_000, 3);
        b.op(0, Op::Write { slot: x, byte: 0x5a }).op(0, Op::Realloc { slot: x, size: 102_000 }).op(0, Op::Check { slot: x });
        let y = b.alloc(0, 300_000, 3);
        b.op(0, Op::Write { slot: y, byte: 0x77 }).op(0, Op::Free { slot: y });
        let z = b.calloc(0, 1, 300_000);
        b.op(0, Op::Check { slot: z }).op(0, Op::Free { slot: z }).op(0, Op::Free { slot: x });
        b.build()
    };
    v.push(("large-in-place", large_in_place(false)));
    v.push(("large-in-place-release", large_in_place(true)));

    // ---- Schedules: steps that start inside another thread's allocator call -----------------

    // A remote push (t1's flush of its pending chain) starting at each of the first points of
    // the owner's flush, which drains its queues; and one that pauses to let the owner on.
    for (name, at, pause) in [
        ("race-drain-1", 1, None),
        ("race-drain-2", 2, None),
        ("race-drain-3", 3, None),
        ("race-drain-4", 4, None),
        ("race-drain-pause", 2, Some(1)),
    ] {
        let mut b = Builder::new(2);
        let xs: Vec<BlockId> = (0..4).map(|_| b.alloc(0, 40, 3)).collect();
        b.op(0, Op::RemoteFree { slot: xs[0], by: 1 }).op(1, Op::Flush);
        b.op(0, Op::RemoteFree { slot: xs[1], by: 1 });
        b.op(0, Op::Flush);
        b.op(1, Op::Flush).sched(Some(at), pause);
        b.alloc(0, 40, 3);
        v.push((name, b.build()));
    }

    // A thread ends (abandoning its slab) while another frees into that slab remotely, and a
    // third adopts it.
    let mut b = Builder::new(3);
    let xs: Vec<BlockId> = (0..3).map(|_| b.alloc(0, 100, 3)).collect();
    b.op(0, Op::Give { slot: xs[0], to: 1 });
    b.op(0, Op::EndThread);
    b.op(1, Op::RemoteFree { slot: xs[0], by: 1 }).sched(Some(2), None);
    b.alloc(2, 100, 3);
    b.op(0, Op::Free { slot: xs[1] }).op(0, Op::Free { slot: xs[2] });
    v.push(("race-abandon", b.build()));

    // Locks held while other threads run: a large block freed (its mapping going back under
    // the spares' lock) while another thread maps a region; a fork while a thread maps.
    let mut b = Builder::new(2);
    b.knobs(Knobs { large_cache: 3, ..Knobs::default() });
    let x = b.alloc(0, 1 << 20, 3);
    b.op(0, Op::Free { slot: x });
    b.alloc(1, 64, 3);
    b.sched(Some(3), None);
    v.push(("race-locks", b.build()));
    // A fork at each of the first points of a large allocation (which takes the heap's lock and
    // the spares'), and of a small one that maps its region.
    for (name, at) in [("race-fork-2", 2), ("race-fork-4", 4), ("race-fork-5", 5), ("race-fork-10", 10)] {
        let mut b = Builder::new(2);
        b.alloc(0, 1 << 20, 3);
        b.op(1, Op::Fork).sched(Some(at), None);
        b.alloc(0, 64, 3);
        b.op(1, Op::Fork).sched(Some(at), None);
        v.push((name, b.build()));
    }

    // malloc_trim: slabs abandoned by an ended thread and emptied by remote frees are
    // reclaimed, pooled slabs' pages given back, while blocks stay live around them.
    let mut b = Builder::new(2);
    let xs: Vec<BlockId> = (0..40).map(|i| b.alloc(0, 64 + (i % 4) * 700, 3)).collect();
    let keep = b.alloc(0, 64, 3);
    b.op(0, Op::Give { slot: keep, to: 1 }).op(0, Op::EndThread);
    for &x in &xs {
        b.op(0, Op::RemoteFree { slot: x, by: 1 });
    }
    b.op(1, Op::Trim);
    let y = b.alloc(0, 2000, 3);
    b.op(1, Op::Check { slot: keep }).op(0, Op::Free { slot: y }).op(0, Op::Flush).op(0, Op::Trim);
    v.push(("trim", b.build()));

    // Frees from threads whose cache is gone (thread-local destructors that run after the
    // allocator's): small, large and guarded blocks through their slabs' queues, which the
    // owner drains, and a slab abandoned with such frees in flight.
    let mut b = Builder::new(2);
    b.knobs(Knobs { guard: 1, ..Knobs::default() });
    let xs: Vec<BlockId> = (0..12).map(|i| b.alloc(0, 24 + i * 90, 3)).collect();
    let big = b.alloc(0, 70_000, 4);
    for &x in &xs[..6] {
        b.op(0, Op::FreeUncached { slot: x });
    }
    for &x in &xs[6..] {
        b.op(0, Op::Give { slot: x, to: 1 });
    }
    b.op(0, Op::FreeUncached { slot: big }).op(0, Op::EndThread);
    for &x in &xs[6..] {
        b.op(1, Op::FreeUncached { slot: x });
    }
    let y = b.alloc(0, 24, 3);
    b.op(1, Op::Flush).op(0, Op::Free { slot: y });
    v.push(("uncached-free", b.build()));

    // Every allocation guarded, more frees than the guard pool's quarantine holds: its slots
    // are handed out again (zeroed), by two threads, one freeing the other's.
    let mut b = Builder::new(2);
    b.knobs(Knobs { guard: 2, ..Knobs::default() });
    for i in 0..150usize {
        let x = b.alloc(0, 16 + i % 200, 3);
        b.op(0, Op::Free { slot: x });
        let y = b.alloc(1, 100, 4);
        b.op(1, Op::RemoteFree { slot: y, by: 0 });
    }
    let z = b.calloc(0, 4, 100);
    b.op(0, Op::Check { slot: z });
    v.push(("guard-quarantine", b.build()));

    // Release heaps run paths of their own (realloc in place, whole-slot usable sizes).
    let release = |name: &'static str, from: &str, v: &[(&str, Program)]| {
        let mut p = v.iter().find(|(n, _)| *n == from).expect("seed exists").1.clone();
        p.release = true;
        (name, p)
    };
    for (name, from) in [("tiers-release", "tiers"), ("realloc-chain-release", "realloc-chain"), ("ring-release", "ring")] {
        let seed = release(name, from, &v);
        v.push(seed);
    }
    // The C entry points' paths (malloc's tables, free and realloc by the region map), on
    // both heaps; and the library's partial poison on checked heaps.
    let variant = |name: &'static str, from: &str, release: bool, knobs: fn(Knobs) -> Knobs, v: &[(&str, Program)]| {
        let mut p = v.iter().find(|(n, _)| *n == from).expect("seed exists").1.clone();
        p.release |= release;
        p.knobs = knobs(p.knobs);
        (name, p)
    };
    let c_api = |k: Knobs| Knobs { api: 1, ..k };
    let partial = |k: Knobs| Knobs { poison: 1, ..k };
    let guard = |k: Knobs| Knobs { guard: 1, ..k };
    for (name, from, release, knobs) in [
        ("tiers-c", "tiers", false, c_api as fn(Knobs) -> Knobs),
        ("tiers-c-release", "tiers", true, c_api),
        ("aligned-c-release", "aligned", true, c_api),
        ("realloc-chain-c-release", "realloc-chain", true, c_api),
        ("remote-c-release", "remote", true, c_api),
        ("give-c", "give", false, c_api),
        ("trim-release", "trim", true, |k| k),
        ("uncached-free-c-release", "uncached-free", true, c_api),
        // Guarded blocks: allocated, written, checked, resized, freed locally and remotely,
        // handed between threads, trimmed.
        ("tiers-guard", "tiers", false, guard),
        ("remote-guard-release", "remote", true, guard),
        ("give-guard", "give", false, guard),
        ("trim-guard", "trim", false, guard),
        ("calloc-guard-c-release", "calloc", true, |k| Knobs { guard: 1, api: 1, ..k }),
        ("ring-guard", "ring", false, guard),
        ("tiers-partial-poison", "tiers", false, partial),
        ("slab-cycle-partial-poison", "slab-cycle", false, partial),
        ("give-partial-poison", "give", false, partial),
    ] {
        let seed = variant(name, from, release, knobs, &v);
        v.push(seed);
    }
    v
}

/// Misuse seeds, one or more per kind of misuse, by file name.
pub fn misuse() -> Vec<(&'static str, Program)> {
    let mut v = Vec::new();
    let with = |threads: u8, setup: &dyn Fn(&mut Builder) -> Op| {
        let mut b = Builder::new(threads);
        let op = setup(&mut b);
        b.op(0, op);
        b.build()
    };
    v.push(("double-free", with(1, &|b| Op::DoubleFree { slot: b.alloc(0, 40, 3), by: 0 })));
    // A large block's second free finds its mapping marked freed in the region table.
    v.push(("double-free-large", with(1, &|b| Op::DoubleFree { slot: b.alloc(0, 100_000, 3), by: 0 })));
    v.push((
        "double-free-remote",
        with(2, &|b| {
            let x = b.alloc(0, 200, 3);
            b.alloc(1, 200, 3);
            Op::DoubleFree { slot: x, by: 1 }
        }),
    ));
    v.push(("free-wild", with(1, &|b| {
        b.alloc(0, 64, 3);
        Op::FreeWild { offset: 64 }
    })));
    // Through the C entry points (the program header's api=c).
    let c = |mut p: Program| {
        p.knobs.api = 1;
        p
    };
    v.push(("free-wild-c", c(with(1, &|b| {
        b.alloc(0, 64, 3);
        Op::FreeWild { offset: 8 }
    }))));
    v.push(("double-free-c", c(with(1, &|b| Op::DoubleFree { slot: b.alloc(0, 3000, 3), by: 0 }))));
    v.push(("free-interior-c", c(with(1, &|b| Op::FreeInterior { slot: b.alloc(0, 5000, 4), offset: 32 }))));
    v.push(("free-interior", with(1, &|b| Op::FreeInterior { slot: b.alloc(0, 100, 3), offset: 16 })));
    v.push(("free-interior-mid", with(1, &|b| Op::FreeInterior { slot: b.alloc(0, 5000, 4), offset: 1 })));
    v.push(("write-after-free", with(1, &|b| Op::WriteAfterFree { slot: b.alloc(0, 64, 3), offset: 40 })));
    // The freed slot is handed out again by the next allocation of its class.
    let mut b = Builder::new(1);
    let x = b.alloc(0, 96, 4);
    b.op(0, Op::WriteAfterFree { slot: x, offset: 95 });
    let y = b.alloc(0, 96, 4);
    b.op(0, Op::Free { slot: y });
    v.push(("write-after-free-reuse", b.build()));
    v.push(("overflow-1", with(1, &|b| Op::Overflow { slot: b.alloc(0, 100, 3), by: 1 })));
    v.push(("overflow-8", with(1, &|b| Op::Overflow { slot: b.alloc(0, 3000, 4), by: 8 })));
    // Blocks aligned above the header's 16 bytes: the client bytes start at the alignment.
    v.push(("overflow-aligned", with(1, &|b| Op::Overflow { slot: b.alloc(0, 100, 6), by: 1 })));
    v.push(("underflow-1", with(1, &|b| Op::Underflow { slot: b.alloc(0, 100, 3), by: 1 })));
    v.push(("underflow-aligned", with(1, &|b| Op::Underflow { slot: b.alloc(0, 300, 7), by: 9 })));
    v.push(("underflow-large", with(1, &|b| Op::Underflow { slot: b.alloc(0, 100_000, 4), by: 16 })));
    v.push(("free-interior-large", with(1, &|b| Op::FreeInterior { slot: b.alloc(0, 500_000, 12), offset: 5000 })));
    // The lower neighbour is live: the damage is not its overflow.
    v.push(("header-overwritten", with(1, &|b| {
        b.alloc(0, 48, 3);
        Op::Underflow { slot: b.alloc(0, 48, 3), by: 16 }
    })));
    v.push(("free-interior-aligned", with(1, &|b| Op::FreeInterior { slot: b.alloc(0, 300, 8), offset: 8 })));
    // The first free of a block is remote (it stays queued on its owner's slab), the second
    // local.
    v.push((
        "double-free-after-remote",
        with(2, &|b| {
            let x = b.alloc(1, 200, 3);
            b.op(1, Op::Give { slot: x, to: 0 });
            b.alloc(1, 200, 3);
            Op::DoubleFree { slot: x, by: 0 }
        }),
    ));
    v
}
