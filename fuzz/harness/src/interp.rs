//! THE INTERPRETER (deterministic mode): runs a [`Program`] on one heap in the state of a new
//! one, all logical threads as thread caches on the calling OS thread, interleaved exactly in step
//! order, and checks the reference model after every step. Start reading at [`run_plain`] and
//! [`Interp::exec`].
//!
//! Every input starts from a new heap's state (a new `Heap`, or one `Heap::reset` returned to that
//! state: see [`HeapUse`]), so every crash replays from its input alone.

use crate::decode::WILD_LEN;
use crate::model::{check_new, fill_for, AddrMap, Block, Violation};
use crate::program::{BlockId, Op, Program, Step};
use hakmem::layout::SLAB_SIZE;
use hakmem::{Heap, Policy, Release, ThreadCache};
use std::cell::RefCell;
use std::fmt;
use std::mem::ManuallyDrop;
use std::time::Duration;
use std::thread::LocalKey;

/// How the harness sees a policy's reports (the checked policy has them; release has none).
pub trait Observed: Policy {
    /// One report of the allocator's checks.
    type Report: fmt::Display + fmt::Debug;
    /// Makes `heap` record its reports (and skip the offending operation) instead of aborting.
    fn capture(heap: &Heap<Self>);
    /// Moves the reports recorded since the last call into `into`.
    fn take(heap: &Heap<Self>, into: &mut Vec<Self::Report>);
    /// This thread's heap of this policy for [`HeapUse::Reset`] runs.
    fn reused() -> &'static ReusedHeap<Self>;
}

/// A thread's heap kept between runs (see [`HeapUse::Reset`]).
pub type ReusedHeap<P> = LocalKey<RefCell<Option<Box<Heap<P>>>>>;

/// The release policy reports nothing.
#[derive(Debug)]
pub enum NoReport {}

impl fmt::Display for NoReport {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl Observed for Release {
    type Report = NoReport;
    fn capture(_: &Heap<Self>) {}
    fn take(_: &Heap<Self>, _: &mut Vec<NoReport>) {}

    fn reused() -> &'static ReusedHeap<Self> {
        thread_local!(static HEAP: RefCell<Option<Box<Heap<Release>>>> = const { RefCell::new(None) });
        &HEAP
    }
}

/// A failed run: where, and what went wrong. The fuzz entry points print it with the program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Index of the step during or after which it was found; `None` for the final cleanup.
    pub step: Option<usize>,
    /// What went wrong.
    pub what: String,
}

impl Failure {
    pub(crate) fn at(step: Option<usize>, what: impl fmt::Display) -> Self {
        Failure { step, what: what.to_string() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(i) => write!(f, "at step {i}: {}", self.what),
            None => write!(f, "at the end of the program: {}", self.what),
        }
    }
}

/// How much of the model the interpreter checks after each step, beyond the blocks the step
/// itself touched (those are always checked in full).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// The edges of the live blocks in the slabs the step touched, and of every live block after
    /// a flush or a thread's end (which drain queues everywhere). What the fuzz targets use: the
    /// allocator writes free-list links into the slabs it works on, so that is where it corrupts
    /// a live block; anything else shows when the block is next checked, freed, or at the end.
    Local,
    /// The edges of every live block after every step: the replay tool and tests, to name the
    /// exact step that corrupted a block. Its cost grows with steps times live blocks.
    Full,
}

/// The report kinds a misuse must produce, in the harness's own words (mapped to the checked
/// mode's `ReportKind` in `misuse.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// A block freed twice.
    DoubleFree,
    /// A pointer that no heap region holds.
    ForeignPointer,
    /// A pointer inside a block, not its start.
    InvalidFree,
    /// A freed block changed before it was handed out again.
    WriteAfterFree,
    /// Bytes past the requested size changed.
    Overflow,
}

/// The misuse a program committed: which report it must cause, about which address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Misuse {
    /// The report kind expected.
    pub kind: Expected,
    /// The address the report must name.
    pub addr: usize,
    /// Reports that were already recorded when the misuse happened (must be none).
    pub reports_before: usize,
    /// Requested size and alignment of the block misused (zero for a wild pointer).
    pub size: usize,
    /// Alignment of that block.
    pub align: usize,
}

/// The interpreter's state: one heap's caches and the model of its live blocks.
pub struct Interp<'h, P: Observed> {
    heap: &'h Heap<P>,
    /// One cache per logical thread; `None` only in the middle of `EndThread`.
    caches: Vec<Option<ThreadCache<'h, P>>>,
    /// Per block id, its holder thread and model entry while live.
    blocks: Vec<Option<(u8, Block)>>,
    addrs: AddrMap,
    /// Addresses of the blocks the current step allocated or freed, for [`Sweep::Local`].
    touched: Vec<usize>,
    /// Whether the current step touched slabs of every cache (flush, end of thread).
    touched_all: bool,
    /// The buffer `FreeWild` points into: harness memory, never the heap's (made on first use).
    wild: Vec<u64>,
    /// Reports recorded so far (checked policy only).
    pub reports: Vec<P::Report>,
    /// The misuse committed, once it has been.
    pub misuse: Option<Misuse>,
}

impl<'h, P: Observed> Interp<'h, P> {
    /// Caches for `threads` logical threads on `heap`.
    pub fn new(heap: &'h Heap<P>, threads: u8) -> Self {
        Interp {
            heap,
            caches: (0..threads).map(|_| Some(heap.cache())).collect(),
            blocks: Vec::new(),
            addrs: AddrMap::default(),
            touched: Vec::new(),
            touched_all: false,
            wild: Vec::new(),
            reports: Vec::new(),
            misuse: None,
        }
    }

    fn cache(&mut self, t: u8) -> &mut ThreadCache<'h, P> {
        self.caches[t as usize].as_mut().expect("every thread has a cache between steps")
    }

    /// A live block's model entry (a reference: sweeps call this for every neighbour of every
    /// step, and under ASan each 48-byte copy was a checked memcpy, 12% of a typical input).
    fn live(&self, id: BlockId) -> &Block {
        &self.blocks[id as usize].as_ref().expect("the decoder only names live blocks").1
    }

    /// Removes a block from the model before it is freed, so that a reuse of its address by a
    /// later allocation is not mistaken for an overlap.
    fn retire(&mut self, id: BlockId) -> Block {
        let (_, b) = self.blocks[id as usize].take().expect("the decoder only names live blocks");
        self.addrs.remove(&b);
        self.touched.push(b.ptr as usize);
        b
    }

    /// Checks a block the allocator just handed out and enters it into the model.
    fn admit(&mut self, t: u8, id: BlockId, b: Block) -> Result<(), Violation> {
        self.addrs.insert(id, &b)?;
        self.touched.push(b.ptr as usize);
        if self.blocks.len() <= id as usize {
            self.blocks.resize(id as usize + 1, None);
        }
        self.blocks[id as usize] = Some((t, b));
        Ok(())
    }

    /// Records the misuse about to be committed; reports so far came before it.
    fn commit_misuse(&mut self, kind: Expected, addr: *mut u8, b: Option<&Block>) {
        self.poll();
        let (size, align) = b.map_or((0, 0), |b| (b.size, b.align));
        self.misuse = Some(Misuse { kind, addr: addr as usize, reports_before: self.reports.len(), size, align });
    }

    /// The heap this interpreter runs on.
    pub fn heap(&self) -> &'h Heap<P> {
        self.heap
    }

    /// Collects the reports the heap recorded since the last poll.
    pub fn poll(&mut self) {
        P::take(self.heap, &mut self.reports);
    }

    /// Runs one step (`next_id` is the id an allocating step creates) and checks the model as
    /// `sweep` says.
    pub fn step(&mut self, s: &Step, next_id: BlockId, sweep: Sweep) -> Result<(), Violation> {
        self.touched.clear();
        self.touched_all = false;
        self.exec(s, next_id)?;
        if sweep == Sweep::Full || self.touched_all {
            return self.sweep();
        }
        for i in 0..self.touched.len() {
            let slab = self.touched[i] & !(SLAB_SIZE - 1);
            for id in self.addrs.ids_in(slab, slab + SLAB_SIZE) {
                self.live(id).check_edges(id)?;
            }
        }
        Ok(())
    }

    /// Runs one step; `next_id` is the id an allocating step creates. Checks the blocks the step
    /// touched; [`Interp::step`] checks the others.
    pub fn exec(&mut self, s: &Step, next_id: BlockId) -> Result<(), Violation> {
        let t = s.thread;
        if matches!(s.op, Op::Flush | Op::EndThread) {
            self.touched_all = true;
        }
        match s.op {
            Op::Alloc { size, align_log2 } => {
                let b = alloc_block(self.cache(t), next_id, size, 1 << align_log2)?;
                self.admit(t, next_id, b)?;
            }
            Op::Calloc { n, size } => {
                let b = calloc_block(self.cache(t), next_id, n * size)?;
                self.admit(t, next_id, b)?;
            }
            Op::Realloc { slot, size } => {
                let old = self.retire(slot);
                let b = realloc_block(self.cache(t), slot, old, size)?;
                self.admit(t, slot, b)?;
            }
            Op::Free { slot } | Op::RemoteFree { slot, .. } => {
                let by = if let Op::RemoteFree { by, .. } = s.op { by } else { t };
                let b = self.retire(slot);
                b.check(slot)?;
                // SAFETY: `b` was live; the model forgot it first.
                unsafe { self.cache(by).free(b.ptr) };
            }
            Op::Give { slot, to } => {
                let (holder, b) = self.blocks[slot as usize].as_mut().expect("the decoder only names live blocks");
                b.check(slot)?;
                *holder = to;
            }
            Op::Write { slot, byte } => {
                let (_, b) = self.blocks[slot as usize].as_mut().expect("the decoder only names live blocks");
                write_block(b, byte);
            }
            Op::Check { slot } => {
                let b = *self.live(slot);
                check_block(self.cache(t), slot, &b)?;
            }
            Op::Flush => self.cache(t).flush(),
            Op::EndThread => {
                // Drop first, as a thread exits before another starts: the new cache may then
                // reuse the old one's storage and owner token.
                self.caches[t as usize] = None;
                self.caches[t as usize] = Some(self.heap.cache());
            }
            Op::DoubleFree { slot, by } => {
                let b = self.retire(slot);
                b.check(slot)?;
                // SAFETY: the first free is legitimate; the second is the misuse under test, which
                // the checked heap in capture mode reports and skips.
                unsafe {
                    let regions = self.heap.stats().small_regions;
                    self.cache(t).free(b.ptr);
                    // If the first free emptied a region that was then unmapped, the pointer is
                    // no longer in the heap at all, and that is what must be reported.
                    let kind = if self.heap.stats().small_regions < regions { Expected::ForeignPointer } else { Expected::DoubleFree };
                    self.commit_misuse(kind, b.ptr, Some(&b));
                    self.cache(by).free(b.ptr);
                }
            }
            Op::FreeWild { offset } => {
                self.wild.resize(WILD_LEN / 8, 0);
                let p = self.wild.as_mut_ptr().cast::<u8>().wrapping_add(offset);
                self.commit_misuse(Expected::ForeignPointer, p, None);
                // SAFETY: deliberately not a heap block: the checked heap must report it and skip.
                unsafe { self.cache(t).free(p) };
            }
            Op::FreeInterior { slot, offset } => {
                let b = *self.live(slot);
                let p = b.ptr.wrapping_add(offset);
                self.commit_misuse(Expected::InvalidFree, p, Some(&b));
                // SAFETY: deliberately not a block start: reported and skipped; `b` stays live.
                unsafe { self.cache(t).free(p) };
            }
            Op::WriteAfterFree { slot, offset } => {
                let b = self.retire(slot);
                b.check(slot)?;
                let pool = |h: &Heap<P>| {
                    let s = h.stats();
                    (s.dirty_pooled_slabs, s.purges, s.small_regions)
                };
                let before = pool(self.heap);
                // SAFETY: a legitimate free.
                unsafe { self.cache(t).free(b.ptr) };
                // A free that emptied its slab sends the slab back to the pool (or unmaps its
                // region): then no block owns the slot, nothing will check its poison, and the
                // write could even fault. The misuse is not committed; the run expects silence.
                if pool(self.heap) == before {
                    self.commit_misuse(Expected::WriteAfterFree, b.ptr, Some(&b));
                    // SAFETY: the misuse under test, inside a free slot of a slab still in use
                    // (a slab block, as the decoder made sure), so mapped.
                    unsafe {
                        let q = b.ptr.add(offset);
                        q.write_volatile(!q.read_volatile());
                    }
                }
            }
            Op::Overflow { slot, by } => {
                let b = self.retire(slot);
                b.check(slot)?;
                self.commit_misuse(Expected::Overflow, b.ptr, Some(&b));
                // SAFETY: the misuse under test: `by` bytes past the requested size, inside the
                // slot's tail (see `overflow_room`), then a free that must report it.
                unsafe {
                    for i in 0..by.min(crate::overflow_room::<P>(b.size, b.align)) {
                        let q = b.ptr.add(b.size + i);
                        q.write_volatile(!q.read_volatile());
                    }
                    self.cache(t).free(b.ptr);
                }
            }
        }
        Ok(())
    }

    /// Checks the edges of every live block: catches a free-list link or another block's bytes
    /// written into a live block, right after the step that did it.
    pub fn sweep(&self) -> Result<(), Violation> {
        for id in self.addrs.ids() {
            self.live(id).check_edges(id)?;
        }
        Ok(())
    }

    /// Frees every live block through its holder's cache (checking contents first when `check`)
    /// and drops every cache.
    pub fn finish(&mut self, check: bool) -> Result<(), Violation> {
        let ids: Vec<BlockId> = self.addrs.ids().collect();
        for id in ids {
            let (h, b) = self.blocks[id as usize].expect("live");
            if check {
                b.check(id)?;
            }
            self.retire(id);
            // SAFETY: live block, forgotten by the model first.
            unsafe { self.cache(h).free(b.ptr) };
        }
        self.caches.clear();
        Ok(())
    }
}

/// A new block from the allocator: checks its address and usable size.
fn new_block<P: Policy>(
    cache: &mut ThreadCache<'_, P>,
    id: BlockId,
    ptr: *mut u8,
    size: usize,
    align: usize,
    fill: u8,
) -> Result<Block, Violation> {
    // SAFETY: usable_size is only asked of a non-null block this heap just handed out.
    let usable = if ptr.is_null() { 0 } else { unsafe { cache.usable_size(ptr) } };
    check_new(id, ptr, size, align, usable)?;
    Ok(Block { ptr, size, usable, align, fill })
}

/// `Alloc`: a new block, checked and filled with its id's byte.
pub(crate) fn alloc_block<P: Policy>(cache: &mut ThreadCache<'_, P>, id: BlockId, size: usize, align: usize) -> Result<Block, Violation> {
    let p = cache.alloc(size, align);
    let b = new_block(cache, id, p, size, align, fill_for(id))?;
    b.fill_all();
    Ok(b)
}

/// `Calloc`: a new zeroed block with C's alignment, checked to read as zero.
pub(crate) fn calloc_block<P: Policy>(cache: &mut ThreadCache<'_, P>, id: BlockId, total: usize) -> Result<Block, Violation> {
    let p = cache.alloc_zeroed(total, 16);
    let b = new_block(cache, id, p, total, 16, 0)?;
    b.check(id).map_err(|v| Violation(format!("calloc memory not zero: {v}")))?;
    Ok(b)
}

/// `Realloc`: resizes `old` (already out of the model), checking that its contents survive.
pub(crate) fn realloc_block<P: Policy>(cache: &mut ThreadCache<'_, P>, id: BlockId, old: Block, size: usize) -> Result<Block, Violation> {
    old.check(id)?;
    // SAFETY: `old` is live in this heap; on success only the returned block is.
    let p = unsafe { cache.realloc(old.ptr, size, old.align) };
    let b = new_block(cache, id, p, size, old.align, old.fill)?;
    // The bytes the model kept of the old block, as far as the new one reaches, must have moved.
    b.check_as(id, old.size, old.size.min(size)).map_err(|v| Violation(format!("realloc lost contents: {v}")))?;
    b.fill_all();
    Ok(b)
}

/// `Check`: contents intact and the usable size unchanged.
pub(crate) fn check_block<P: Policy>(cache: &mut ThreadCache<'_, P>, id: BlockId, b: &Block) -> Result<(), Violation> {
    b.check(id)?;
    // SAFETY: `b` is live.
    let usable = unsafe { cache.usable_size(b.ptr) };
    if usable != b.usable {
        return Err(Violation(format!("b{id}: usable size changed from {} to {usable}", b.usable)));
    }
    Ok(())
}

/// Writes `byte` over all of `b` and makes it the expected contents.
pub(crate) fn write_block(b: &mut Block, byte: u8) {
    b.fill = byte;
    b.fill_all();
}

/// Where a run gets its heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapUse {
    /// `Heap::new()`, dropped after the run: nothing carries over from anything before.
    New,
    /// This thread's heap of the policy, `reset()` before the run: the state of a new heap but
    /// for the mappings it keeps (one region, its shadow, the cache arena) and the dirtiness of
    /// the slabs earlier runs used. A new checked heap costs more in mmap, munmap and page faults
    /// than a short program does, so the fuzz targets use this.
    Reset,
    /// As `Reset`, after a warm-up that dirtied every slab of the region a reset heap keeps: the
    /// state a long fuzzing run drifts toward. A failure found on a reset heap may need slabs an
    /// earlier input left dirty (say, a bug in calloc's skipping of the memset on fresh memory);
    /// this is how such a failure replays from its input alone.
    Dirty,
}

/// Dirties every slab of the first region of an empty `heap`: fills more than a region with
/// the largest slab blocks, written through (two fill a slab), then frees them all.
fn dirty_everything<P: Policy>(heap: &Heap<P>) {
    let size = hakmem::size_class::SMALL_MAX - P::HEADER - P::MIN_TAIL;
    let mut c = heap.cache();
    let blocks: Vec<*mut u8> = (0..140).map(|_| c.alloc(size, 16)).filter(|p| !p.is_null()).collect();
    for &p in &blocks {
        // SAFETY: a live block of `size` bytes.
        unsafe { p.write_bytes(0xa5, size) };
    }
    for p in blocks {
        // SAFETY: a live block of this heap, freed once.
        unsafe { c.free(p) };
    }
}

/// How a run gets its heap and how much of the model it checks after each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOpts {
    /// How much to check after each step.
    pub sweep: Sweep,
    /// Where the heap comes from.
    pub heap: HeapUse,
}

impl RunOpts {
    /// The fuzz targets: local sweeps, a reset heap.
    pub const FUZZ: RunOpts = RunOpts { sweep: Sweep::Local, heap: HeapUse::Reset };
    /// Replay and tests: full sweeps, a new heap.
    pub const THOROUGH: RunOpts = RunOpts { sweep: Sweep::Full, heap: HeapUse::New };
}

/// Checks every free block of a heap whose program is over (no cache left): a write after free
/// into a block that was never handed out again shows only here, for instance in a slab
/// abandoned by an ended thread, whose remote queue nothing drains. Returns the reports.
pub(crate) fn final_sweep<P: Observed>(heap: &mut Heap<P>) -> Vec<P::Report> {
    heap.verify_free_slots();
    let mut reports = Vec::new();
    P::take(heap, &mut reports);
    reports
}

/// The largest freed mapping a reused heap keeps: room for the largest size the decoder makes
/// at its largest alignment (8 MiB each, plus the header page).
const REUSED_LARGE_CACHE_BLOCK: usize = 32 << 20;
/// The bytes of freed mappings a reused heap keeps. Mostly address space: the model touches at
/// most 18 pages of a large block, so this bounds the resident memory kept only in the worst case,
/// well under libFuzzer's default RSS limit of 2 GB.
const REUSED_LARGE_CACHE_BYTES: usize = 256 << 20;
/// The bytes of given-back mappings a reused heap keeps to stand in for new ones, across
/// programs (see `hakmem::os::Spares`: unlike the large cache, they cannot change what a program
/// does). The pages programs touched stay resident: all of this at worst, well under
/// libFuzzer's 2 GB limit. With them, deterministic inputs ran 2x as fast under
/// libFuzzer+ASan (2916 -> 5836 exec/s, 30 s from the seeds).
const REUSED_SPARE_BYTES: usize = 256 << 20;

/// Calls `f` with a heap as `heap` says, capturing its reports. After a failure the heap may be
/// corrupt, so it is never dropped (unmapping it could crash before the failure is printed) nor
/// used again.
pub(crate) fn with_heap<P: Observed, T>(heap_use: HeapUse, f: impl FnOnce(&mut Heap<P>) -> Result<T, Failure>) -> Result<T, Failure> {
    match heap_use {
        HeapUse::New => {
            let mut heap = ManuallyDrop::new(Heap::<P>::new());
            heap.set_purge_delay(Duration::ZERO);
            P::capture(&heap);
            let r = f(&mut heap);
            if r.is_ok() {
                ManuallyDrop::into_inner(heap);
            }
            r
        }
        HeapUse::Reset | HeapUse::Dirty => P::reused().with(|cell| {
            let mut slot = cell.borrow_mut();
            // Boxed: caches point at their heap, so it must not move while they live.
            let heap = slot.get_or_insert_with(|| {
                let h = Box::new(Heap::new());
                // Memory goes back at once, not after a delay: a program must run the same
                // however fast it runs.
                h.set_purge_delay(Duration::ZERO);
                // Inputs allocate big blocks all the time; a fresh mapping for each (mmap,
                // munmap, a page fault per page touched) was most of the time per input. The
                // new heaps of `HeapUse::New` keep the default, so both paths run in replays.
                h.set_large_cache(REUSED_LARGE_CACHE_BLOCK, REUSED_LARGE_CACHE_BYTES);
                h.set_spare_mappings(REUSED_SPARE_BYTES);
                h
            });
            heap.reset();
            if heap_use == HeapUse::Dirty {
                dirty_everything(heap);
                heap.reset();
            }
            P::capture(heap);
            let r = f(heap);
            if r.is_err() {
                std::mem::forget(slot.take());
            }
            r
        }),
    }
}

/// Runs a plain program deterministically and checks the model after every step; any report of
/// the checked policy is a failure too.
pub fn run_plain<P: Observed>(prog: &Program, opts: RunOpts) -> Result<(), Failure> {
    with_heap::<P, ()>(opts.heap, |heap| {
        let mut it = Interp::new(heap, prog.threads);
        let r = drive_plain(&mut it, prog, opts.sweep);
        if r.is_err() {
            // The heap may be corrupt: dropping the caches could crash before the failure prints.
            std::mem::forget(it);
            return r;
        }
        drop(it);
        if let Some(r) = final_sweep(heap).first() {
            return Err(Failure::at(None, format!("checked mode reported in the final sweep of free blocks: {r}")));
        }
        let large = heap.stats().large_blocks;
        if large != 0 {
            return Err(Failure::at(None, format!("{large} large block(s) still mapped after every block was freed")));
        }
        Ok(())
    })
}

fn drive_plain<P: Observed>(it: &mut Interp<'_, P>, prog: &Program, sweep: Sweep) -> Result<(), Failure> {
    let mut next_id = 0;
    for (i, s) in prog.steps.iter().enumerate() {
        it.step(s, next_id, sweep).map_err(|v| Failure::at(Some(i), v))?;
        next_id += s.op.creates_block() as BlockId;
        it.poll();
        if let Some(r) = it.reports.first() {
            return Err(Failure::at(Some(i), format!("checked mode reported: {r}")));
        }
    }
    it.finish(true).map_err(|v| Failure::at(None, v))?;
    it.poll();
    match it.reports.first() {
        Some(r) => Err(Failure::at(None, format!("checked mode reported during cleanup: {r}"))),
        None => Ok(()),
    }
}
