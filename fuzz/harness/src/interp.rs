//! THE INTERPRETER (deterministic mode): runs a [`Program`] on a heap in the state of a new one,
//! every logical thread a thread cache, the steps in program order under the scheduler of
//! [`crate::sched`] (which starts a step inside another's allocator call where the program says
//! so), and checks the reference model after every step. Start reading at [`run_plain`] and
//! [`Interp::exec`].
//!
//! Every input starts from a new heap's state (a new `Heap`, or one `Heap::reset` returned to
//! exactly that state: see [`HeapUse`]), so every failure replays from its input alone. Every
//! few steps, and at the end, the heap's consistency sweep (`Heap::verify`) checks its whole
//! structure against the model's live blocks, so that damage shows near the step that did it.
//!
//! A step may run on another OS thread than the one that called the run (when it starts inside
//! another step), and a suspended step may be in the middle of an allocator call: so each cache
//! sits behind a lock of its own, held by the step that uses it, and the model behind one that
//! is never held across an allocator call.

use crate::decode::{MAX_UNDERFLOW, WILD_LEN};
use crate::model::{check_new, fill_for, AddrMap, Block, Violation};
use crate::program::{BlockId, Knobs, Op, Program, Step};
use crate::sched::{self, Flow, StepInfo};
use std::panic::AssertUnwindSafe;
use crate::trace::Event;
use hakmem::layout::SPAN_SIZE;
use crate::client::Client;
use hakmem::{Heap, Policy, Release};
use std::cell::RefCell;
use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::LocalKey;

/// How the harness sees a policy's reports (the checked policy has them; release has none).
pub trait Observed: Policy {
    /// One report of the allocator's checks.
    type Report: fmt::Display + fmt::Debug + Send;
    /// Makes `heap` record its reports (and skip the offending operation) instead of aborting.
    fn capture(heap: &Heap<Self>);
    /// Moves the reports recorded since the last call into `into`.
    fn take(heap: &Heap<Self>, into: &mut Vec<Self::Report>);
    /// The report as a trace event (its fields, addresses left for the trace to normalize).
    fn event(r: &Self::Report, step: Option<usize>) -> Event;
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
    fn event(r: &NoReport, _: Option<usize>) -> Event {
        match *r {}
    }

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
    /// a live block; anything else shows when the block is next checked, freed, at the heap's
    /// next consistency sweep, or at the end.
    Local,
    /// The edges of every live block after every step: the replay tool and tests, to name the
    /// exact step that corrupted a block. Its cost grows with steps times live blocks.
    Full,
}

/// The heap's consistency sweep (`Heap::verify`) runs after every this many steps and after each
/// thread's end or flush (without its pass over the checked shadow map), and in full at the end.
/// Every 8 steps was a quarter of a seed's time.
pub const VERIFY_EVERY: usize = 16;

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
    /// Bytes just below the block's start changed.
    Underflow,
    /// A block's header overwritten whole.
    HeaderCorrupt,
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

/// The model of a run: what the program holds, and what the heap said.
pub struct Model<R> {
    /// Per block id, its holder thread and model entry while live.
    blocks: Vec<Option<(u8, Block)>>,
    /// Blocks whose allocation failed because the program's region budget ran out: the steps
    /// that name them do nothing.
    failed: Vec<BlockId>,
    addrs: AddrMap,
    /// Reports recorded so far (checked policy only).
    pub reports: Vec<R>,
    /// The misuse committed, once it has been.
    pub misuse: Option<Misuse>,
    /// What the run did, when it is traced.
    trace: Option<Vec<Event>>,
}

impl<R> Model<R> {
    fn live(&self, id: BlockId) -> Option<Block> {
        self.blocks.get(id as usize).and_then(|b| b.map(|(_, b)| b))
    }

    /// Removes a block from the model before it is freed (so that a reuse of its address by a
    /// later allocation is not mistaken for an overlap); None if its allocation failed.
    fn retire(&mut self, id: BlockId) -> Option<Block> {
        if self.failed.contains(&id) {
            return None;
        }
        let (_, b) = self.blocks[id as usize].take().expect("the decoder only names live blocks");
        self.addrs.remove(&b);
        Some(b)
    }

    fn admit(&mut self, t: u8, id: BlockId, b: Block) -> Result<(), Violation> {
        self.addrs.insert(id, &b)?;
        if self.blocks.len() <= id as usize {
            self.blocks.resize(id as usize + 1, None);
        }
        self.blocks[id as usize] = Some((t, b));
        Ok(())
    }

    fn record(&mut self, e: Event) {
        if let Some(t) = &mut self.trace {
            t.push(e);
        }
    }

    /// Checks the edges of the live blocks that start in `[from, to)`.
    fn check_edges_in(&self, from: usize, to: usize) -> Result<(), Violation> {
        self.addrs.ids_in(from, to).filter_map(|id| self.live(id).map(|b| (id, b))).try_for_each(|(id, b)| b.check_edges(id))
    }
}

/// The buffer `FreeWild` points into: harness memory, never the heap's (nothing writes it: the
/// checked heap must report the free without following the pointer).
static WILD: [u64; WILD_LEN / 8] = [0; WILD_LEN / 8];

/// The addresses of the blocks a step allocated or freed (at most two: a realloc's old and new).
#[derive(Default)]
pub struct Touched([Option<usize>; 2]);

impl Touched {
    fn add(&mut self, a: usize) {
        let slot = self.0.iter_mut().find(|x| x.is_none()).expect("a step touches two blocks at most");
        *slot = Some(a);
    }

    /// The addresses.
    pub fn iter(&self) -> impl Iterator<Item = &Option<usize>> {
        self.0.iter()
    }
}

/// The interpreter's state: one heap's caches and the model of its live blocks.
pub struct Interp<'h, P: Observed> {
    heap: &'h Heap<P>,
    /// One cache per logical thread; `None` only in the middle of `EndThread`.
    caches: Vec<Mutex<Option<Client<'h, P>>>>,
    /// The program calls the C entry points' paths (knob `api=c`).
    c_api: bool,
    model: Mutex<Model<P::Report>>,
    /// Whether the program's region budget may make a small allocation fail.
    budget: bool,
    sweep: Sweep,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<'h, P: Observed> Interp<'h, P> {
    /// Caches for `threads` logical threads on `heap`, sweeping as `sweep` says.
    pub fn new(heap: &'h Heap<P>, threads: u8, knobs: Knobs, sweep: Sweep, trace: bool) -> Result<Self, Failure> {
        let mut caches = Vec::new();
        for t in 0..threads {
            let Some(c) = heap.try_cache() else {
                let what = match first_captured(heap) {
                    Some(r) => format!("checked mode reported: {r} (creating t{t}'s cache)"),
                    None => format!("t{t}'s cache could not be created (out of memory)"),
                };
                return Err(Failure::at(None, what));
            };
            caches.push(Mutex::new(Some(Client::new(c, knobs.api == 1))));
        }
        Ok(Interp {
            heap,
            caches,
            c_api: knobs.api == 1,
            model: Mutex::new(Model {
                blocks: Vec::new(),
                failed: Vec::new(),
                addrs: AddrMap::default(),
                reports: Vec::new(),
                misuse: None,
                trace: trace.then(Vec::new),
            }),
            budget: knobs.limits().max_regions != usize::MAX,
            sweep,
        })
    }

    /// The model (never held across an allocator call: another step may need it meanwhile).
    pub fn model(&self) -> MutexGuard<'_, Model<P::Report>> {
        locked(&self.model)
    }

    /// Runs `f` on thread `t`'s cache (its lock held throughout: no other step uses the cache
    /// meanwhile, which the scheduler guarantees by never starting one that would).
    fn with_cache<R>(&self, t: u8, f: impl FnOnce(&mut Client<'h, P>) -> R) -> R {
        let mut c = locked(&self.caches[t as usize]);
        f(c.as_mut().expect("every thread has a cache between steps"))
    }

    /// The heap this interpreter runs on.
    pub fn heap(&self) -> &'h Heap<P> {
        self.heap
    }

    /// Collects the reports the heap recorded since the last poll; `step` is the step that
    /// just ended (for the trace).
    pub fn poll(&self, step: Option<usize>) {
        let mut v = Vec::new();
        P::take(self.heap, &mut v);
        if v.is_empty() {
            return;
        }
        let mut m = self.model();
        for r in &v {
            let e = P::event(r, step);
            m.record(e);
        }
        m.reports.extend(v);
    }

    /// Whether the program's small regions are all mapped.
    fn budget_spent(&self) -> bool {
        self.budget && self.heap.stats().small_regions >= self.heap.limits().max_regions
    }

    /// Whether a null from an allocation of `size` bytes at `align` is the program's region
    /// budget running out rather than a bug. `spent_before`: the budget was spent when the call
    /// started. A step started inside the call may give a region back before it returns (a
    /// flush that empties one, with no empty region kept), so the budget the allocator found
    /// spent may not be spent any more when the call returns.
    fn out_of_budget(&self, size: usize, align: usize, spent_before: bool) -> bool {
        self.budget && crate::in_slab::<P>(size, align) && (spent_before || self.budget_spent())
    }

    /// A new block `id` at `p` (or a null the budget explains: None), into the model.
    #[allow(clippy::too_many_arguments)]
    fn admit_new(&self, t: u8, step: usize, id: BlockId, p: *mut u8, size: usize, align: usize, fill: u8, spent_before: bool) -> Result<Option<Block>, Violation> {
        if p.is_null() && self.out_of_budget(size, align, spent_before) {
            let mut m = self.model();
            m.failed.push(id);
            m.record(Event::Null { step });
            return Ok(None);
        }
        let b = self.with_cache(t, |c| new_block(c, id, p, size, align, fill))?;
        let mut m = self.model();
        m.record(Event::Block { step, addr: p.addr(), usable: b.usable });
        m.admit(t, id, b)?;
        Ok(Some(b))
    }

    /// Runs one step (`id` is the id an allocating step creates, `i` its index) and checks the
    /// model as the sweep setting says.
    pub fn step(&self, i: usize, s: &Step, id: BlockId) -> Result<(), Violation> {
        let touched = self.exec(i, s, id)?;
        // (Under the model's lock, which no allocator call needs: reading blocks is all.)
        let m = self.model();
        match touched {
            Some(t) if self.sweep == Sweep::Local => t.iter().flatten().try_for_each(|&a| {
                let slab = a & !(SPAN_SIZE - 1);
                m.check_edges_in(slab, slab + SPAN_SIZE)
            }),
            _ => m.check_edges_in(0, usize::MAX),
        }
    }

    /// Runs one step; `id` is the id an allocating step creates. Checks the blocks the step
    /// touched; returns their addresses for [`Interp::step`] to check their slabs' other blocks
    /// (None: it touched every cache's slabs, as a flush or a thread's end drains queues).
    pub fn exec(&self, i: usize, s: &Step, id: BlockId) -> Result<Option<Touched>, Violation> {
        let t = s.thread;
        let mut touched = Touched::default();
        match s.op {
            Op::Alloc { size, align_log2 } => {
                let align = 1 << align_log2;
                let spent = self.budget_spent();
                let p = self.with_cache(t, |c| c.alloc(size, align));
                if let Some(b) = self.admit_new(t, i, id, p, size, align, fill_for(id), spent)? {
                    b.fill_all();
                    touched.add(p.addr());
                }
            }
            Op::Calloc { n, size } => {
                let spent = self.budget_spent();
                let p = self.with_cache(t, |c| c.alloc_zeroed(n * size, 16));
                if let Some(b) = self.admit_new(t, i, id, p, n * size, 16, 0, spent)? {
                    b.check(id).map_err(|v| Violation(format!("calloc memory not zero: {v}")))?;
                    touched.add(p.addr());
                }
            }
            Op::Realloc { slot, size } => {
                let Some(old) = self.model().retire(slot) else { return Ok(Some(touched)) };
                old.check(slot)?;
                touched.add(old.ptr.addr());
                let spent = self.budget_spent();
                // SAFETY: `old` is live in this heap; on success only the returned block is.
                let (p, align) = self.with_cache(t, |c| (unsafe { c.realloc(old.ptr, size, old.align) }, c.realloc_align(old.align)));
                if p.is_null() && self.out_of_budget(size, align, spent) {
                    // C's realloc: the old block stays as it was.
                    let mut m = self.model();
                    m.record(Event::Null { step: i });
                    m.admit(t, slot, old)?;
                    return Ok(Some(touched));
                }
                let b = self.admit_new(t, i, slot, p, size, align, old.fill, spent)?.expect("not null");
                // The bytes the model kept of the old block, as far as the new one reaches, must have moved.
                b.check_as(slot, old.size, old.size.min(size)).map_err(|v| Violation(format!("realloc lost contents: {v}")))?;
                b.fill_all();
                touched.add(p.addr());
            }
            Op::Free { slot } | Op::RemoteFree { slot, .. } => {
                let by = if let Op::RemoteFree { by, .. } = s.op { by } else { t };
                let Some(b) = self.model().retire(slot) else { return Ok(Some(touched)) };
                b.check(slot)?;
                touched.add(b.ptr.addr());
                // The client hands the block to the freeing thread.
                sched::handoff(t, by);
                // SAFETY: `b` was live; the model forgot it first.
                self.with_cache(by, |c| unsafe { c.free(b.ptr) });
            }
            Op::FreeUncached { slot } => {
                let Some(b) = self.model().retire(slot) else { return Ok(Some(touched)) };
                b.check(slot)?;
                touched.add(b.ptr.addr());
                // SAFETY: `b` was live; the model forgot it first. (The thread's cache, held
                // meanwhile, goes unused: the free is as if it were gone.)
                self.with_cache(t, |c| unsafe { c.free_uncached(self.heap, b.ptr) });
            }
            Op::Give { slot, to } => {
                let mut m = self.model();
                if let Some((holder, b)) = m.blocks.get_mut(slot as usize).and_then(Option::as_mut) {
                    b.check(slot)?;
                    *holder = to;
                }
                drop(m);
                sched::handoff(t, to);
            }
            Op::Write { slot, byte } => {
                let mut m = self.model();
                if let Some((_, b)) = m.blocks.get_mut(slot as usize).and_then(Option::as_mut) {
                    b.fill = byte;
                    b.fill_all();
                }
            }
            Op::Check { slot } => {
                let Some(b) = self.model().live(slot) else { return Ok(Some(touched)) };
                self.with_cache(t, |c| check_block(c, slot, &b))?;
            }
            Op::Flush => {
                self.with_cache(t, |c| c.flush());
                return Ok(None);
            }
            Op::EndThread => {
                let mut c = locked(&self.caches[t as usize]);
                // Drop first, as a thread exits before another starts: the new cache may then
                // reuse the old one's storage and owner token.
                *c = None;
                let new = self.heap.try_cache().ok_or_else(|| Violation(format!("a new cache for t{t} could not be created")))?;
                *c = Some(Client::new(new, self.c_api));
                return Ok(None);
            }
            Op::Fork => fork(self.heap)?,
            Op::Trim => {
                self.heap.trim();
                return Ok(None);
            }
            Op::DoubleFree { slot, by } => {
                let b = self.model().retire(slot).expect("misuse programs have no budget failures");
                b.check(slot)?;
                let small = self.heap.holds_small(b.ptr);
                // SAFETY: the first free is legitimate; the second is the misuse under test, which
                // the checked heap in capture mode reports and skips.
                unsafe {
                    self.with_cache(t, |c| c.free(b.ptr));
                    // If the first free emptied the block's region, which then went, the pointer is
                    // no longer in the heap at all, and that is what must be reported. (Another
                    // region going meanwhile says nothing: a count of regions was fooled by it.)
                    let gone = small && !self.heap.holds_small(b.ptr);
                    let kind = if gone { Expected::ForeignPointer } else { Expected::DoubleFree };
                    self.commit_misuse(kind, b.ptr, Some(&b));
                    self.with_cache(by, |c| c.free(b.ptr));
                }
            }
            Op::FreeWild { offset } => {
                let p = WILD.as_ptr().cast::<u8>().cast_mut().wrapping_add(offset);
                self.commit_misuse(Expected::ForeignPointer, p, None);
                // SAFETY: deliberately not a heap block: the checked heap must report it and skip.
                self.with_cache(t, |c| unsafe { c.free(p) });
            }
            Op::FreeInterior { slot, offset } => {
                let b = self.model().live(slot).expect("live");
                let p = b.ptr.wrapping_add(offset);
                self.commit_misuse(Expected::InvalidFree, p, Some(&b));
                // SAFETY: deliberately not a block start: reported and skipped; `b` stays live.
                self.with_cache(t, |c| unsafe { c.free(p) });
            }
            Op::WriteAfterFree { slot, offset } => {
                let b = self.model().retire(slot).expect("live");
                b.check(slot)?;
                let pool = |h: &Heap<P>| {
                    let s = h.stats();
                    (s.dirty_pooled_slabs, s.purges, s.small_regions)
                };
                let before = pool(self.heap);
                // SAFETY: a legitimate free.
                self.with_cache(t, |c| unsafe { c.free(b.ptr) });
                // A free that emptied its slab sends the slab back to the pool (or unmaps its
                // region): then no block owns the slot, nothing will check its poison, and the
                // write could even fault. The misuse is not committed; the run expects silence.
                if pool(self.heap) == before {
                    self.commit_misuse(Expected::WriteAfterFree, b.ptr, Some(&b));
                    // SAFETY: the misuse under test, inside a free slot of a slab still in use
                    // (a slab block, as the decoder made sure), so mapped.
                    unsafe { flip(b.ptr.add(offset), 1) };
                }
            }
            Op::Overflow { slot, by } => {
                let b = self.model().retire(slot).expect("live");
                b.check(slot)?;
                self.commit_misuse(Expected::Overflow, b.ptr, Some(&b));
                // SAFETY: the misuse under test: `by` bytes past the requested size, inside the
                // slot's tail (see `overflow_room`), then a free that must report it.
                unsafe { flip(b.ptr.add(b.size), by.min(crate::overflow_room::<P>(b.size, b.align))) };
                self.with_cache(t, |c| unsafe { c.free(b.ptr) });
            }
            Op::Underflow { slot, by } => {
                let b = self.model().retire(slot).expect("live");
                b.check(slot)?;
                // A slab block's 16 bytes below are its header: all of them changed is a header
                // overwritten, not an underflow it can tell. A large block's are its own.
                let kind = if by < MAX_UNDERFLOW || !self.heap.holds_small(b.ptr) { Expected::Underflow } else { Expected::HeaderCorrupt };
                self.commit_misuse(kind, b.ptr, Some(&b));
                // SAFETY: the misuse under test: the bytes below a block's start are its own (a
                // slab block's header, a large block's front), then a free that must report them.
                unsafe { flip(b.ptr.sub(by), by) };
                self.with_cache(t, |c| unsafe { c.free(b.ptr) });
            }
        }
        Ok(Some(touched))
    }

    /// Records the misuse about to be committed; reports so far came before it.
    fn commit_misuse(&self, kind: Expected, addr: *mut u8, b: Option<&Block>) {
        self.poll(None);
        let (size, align) = b.map_or((0, 0), |b| (b.size, b.align));
        let mut m = self.model();
        let reports_before = m.reports.len();
        m.misuse = Some(Misuse { kind, addr: addr as usize, reports_before, size, align });
    }

    /// Checks the edges of every live block.
    pub fn sweep(&self) -> Result<(), Violation> {
        self.model().check_edges_in(0, usize::MAX)
    }

    /// The heap's consistency sweep against the model's live blocks (nothing may run on the
    /// heap meanwhile: the scheduler calls it when no step is active).
    pub fn verify(&self) -> Result<(), Violation> {
        let m = self.model();
        let live = |from: usize, to: usize| m.addrs.ids_in(from, to).count();
        // SAFETY: no step is active, so no cache is in use.
        let r = unsafe { self.heap.verify(Some(&live), false) };
        match r.first() {
            Some(r) => Err(Violation(format!("the heap's consistency sweep: {r}"))),
            None => Ok(()),
        }
    }

    /// Frees every live block through its holder's cache (checking contents first when `check`)
    /// and drops every cache.
    pub fn finish(&mut self, check: bool) -> Result<(), Violation> {
        let live: Vec<(BlockId, u8, Block)> = {
            let m = self.model();
            m.addrs.ids().filter_map(|id| m.blocks[id as usize].map(|(h, b)| (id, h, b))).collect()
        };
        for (id, h, b) in live {
            if check {
                b.check(id)?;
            }
            self.model().retire(id);
            // SAFETY: live block, forgotten by the model first.
            self.with_cache(h, |c| unsafe { c.free(b.ptr) });
        }
        self.caches.clear();
        Ok(())
    }

    /// The trace recorded, if the run was traced.
    pub fn take_trace(&self) -> Vec<Event> {
        self.model().trace.take().unwrap_or_default()
    }
}

/// The scheduler's view of a program's steps.
pub fn step_info(prog: &Program) -> Vec<StepInfo> {
    prog.steps
        .iter()
        .zip(block_ids(prog))
        .map(|(s, id)| {
            // (A fork is called by its step's thread: it must not start inside another step of
            // that thread, which one thread cannot be in while it forks. It was cache-less, and
            // a fork started inside its own thread's allocation waited for a lock that thread
            // held: a deadlock the scheduler could only call "held by nobody".)
            let cache = match s.op {
                Op::RemoteFree { by, .. } => Some(by),
                Op::Give { .. } | Op::Write { .. } => None,
                _ => Some(s.thread),
            };
            // A step that creates a block uses it too: nothing may free it before it exists.
            let block = s.op.slot().or(s.op.creates_block().then_some(id));
            StepInfo { cache, block, at: s.at, pause: s.pause }
        })
        .collect()
}

/// A misuse's write: each of the `n` bytes from `p` becomes its complement, so that each surely
/// changes (volatile: the compiler must not drop a write to memory the program gave away).
///
/// # Safety
/// The bytes must be mapped and writable.
unsafe fn flip(p: *mut u8, n: usize) {
    for i in 0..n {
        // SAFETY: per the contract.
        unsafe {
            let q = p.add(i);
            q.write_volatile(!q.read_volatile());
        }
    }
}

/// The id each step creates if it allocates (the number of allocating steps before it).
pub fn block_ids(prog: &Program) -> Vec<BlockId> {
    let mut next = 0;
    prog.steps
        .iter()
        .map(|s| {
            let id = next;
            next += s.op.creates_block() as BlockId;
            id
        })
        .collect()
}

/// `Fork`: the heap's fork handlers around the moment a `fork()` would copy the process. A
/// real fork copies every lock as it is; one held by another thread then stays locked in the
/// child, which has no such thread, and hangs at its first use. So at that moment no other
/// logical thread may hold a heap lock: the prepare handler must have waited for each. The
/// scheduler knows who holds what, which makes the check exact and deterministic, and cheap
/// (a real fork under ASan cost tens of milliseconds: most of an input's time).
pub(crate) fn fork<P: Policy>(heap: &Heap<P>) -> Result<(), Violation> {
    heap.fork_prepare();
    let held = sched::locks_held_by_others();
    // SAFETY: this thread took the locks in fork_prepare.
    unsafe { heap.fork_parent() };
    match held {
        Some(who) => Err(Violation(format!(
            "fork while {who}: the child would inherit it locked and hang at its first use (the fork handlers must take every heap lock)"
        ))),
        None => Ok(()),
    }
}

/// A new block from the allocator: checks its address and usable size.
fn new_block<P: Policy>(
    cache: &mut Client<'_, P>,
    id: BlockId,
    ptr: *mut u8,
    size: usize,
    align: usize,
    fill: u8,
) -> Result<Block, Violation> {
    // SAFETY: usable_size is only asked of a non-null block this heap just handed out.
    let usable = if ptr.is_null() { 0 } else { unsafe { cache.usable_size(ptr) } };
    check_new(id, ptr, size, align, usable)?;
    let b = Block { ptr, size, usable, align, fill };
    b.check_mapped(id)?;
    Ok(b)
}

/// `Alloc`: a new block, checked and filled with its id's byte.
pub(crate) fn alloc_block<P: Policy>(cache: &mut Client<'_, P>, id: BlockId, size: usize, align: usize) -> Result<Block, Violation> {
    let p = cache.alloc(size, align);
    let b = new_block(cache, id, p, size, align, fill_for(id))?;
    b.fill_all();
    Ok(b)
}

/// `Calloc`: a new zeroed block with C's alignment, checked to read as zero.
pub(crate) fn calloc_block<P: Policy>(cache: &mut Client<'_, P>, id: BlockId, total: usize) -> Result<Block, Violation> {
    let p = cache.alloc_zeroed(total, 16);
    let b = new_block(cache, id, p, total, 16, 0)?;
    b.check(id).map_err(|v| Violation(format!("calloc memory not zero: {v}")))?;
    Ok(b)
}

/// `Realloc`: resizes `old` (already out of the model), checking that its contents survive.
pub(crate) fn realloc_block<P: Policy>(cache: &mut Client<'_, P>, id: BlockId, old: Block, size: usize) -> Result<Block, Violation> {
    old.check(id)?;
    // SAFETY: `old` is live in this heap; on success only the returned block is.
    let p = unsafe { cache.realloc(old.ptr, size, old.align) };
    let b = new_block(cache, id, p, size, cache.realloc_align(old.align), old.fill)?;
    // The bytes the model kept of the old block, as far as the new one reaches, must have moved.
    b.check_as(id, old.size, old.size.min(size)).map_err(|v| Violation(format!("realloc lost contents: {v}")))?;
    b.fill_all();
    Ok(b)
}

/// `Check`: contents intact and the usable size unchanged.
pub(crate) fn check_block<P: Policy>(cache: &mut Client<'_, P>, id: BlockId, b: &Block) -> Result<(), Violation> {
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
    /// This thread's heap of the policy, `reset()` before the run: a new heap's state exactly
    /// (every mapping went back, to be handed out again zeroed), only cheaper than a new heap,
    /// which costs more in mmap, munmap and page faults than a short program does. The fuzz
    /// targets use this.
    Reset,
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
/// abandoned by an ended thread, whose remote queue nothing drains; then the consistency sweep
/// with no block live. Returns the reports, and the sweep's first finding.
pub(crate) fn final_sweep<P: Observed>(heap: &mut Heap<P>) -> (Vec<P::Report>, Option<String>) {
    heap.verify_free_slots();
    let mut reports = Vec::new();
    P::take(heap, &mut reports);
    let none = |_: usize, _: usize| 0;
    // SAFETY: `&mut` heap: no cache exists.
    let v = unsafe { heap.verify(Some(&none), true) };
    (reports, v.first().map(|r| format!("the heap's consistency sweep with every block freed: {r}")))
}

/// The bytes of given-back mappings a heap keeps to stand in for new ones, across programs on a
/// reused heap (see `hakmem::os::Spares`: they cannot change what a program does). The pages
/// programs touched stay resident: all of this at worst, well under libFuzzer's 2 GB limit.
/// With them, deterministic inputs ran 2x as fast under libFuzzer+ASan (2916 -> 5836 exec/s,
/// 30 s from the seeds). New heaps get the same limit, so that a program that cycles mappings
/// through the spares within itself behaves the same on both (a knob makes it smaller).
pub const SPARE_BYTES: usize = 256 << 20;

/// `f(heap)`, with a panic outside any step (a debug assertion while the caches are dropped, say)
/// as a failure that names the checked report captured before it, if any.
fn guarded<P: Observed, T>(heap: &mut Heap<P>, f: impl FnOnce(&mut Heap<P>) -> Result<T, Failure>) -> Result<T, Failure> {
    let p = match std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut *heap))) {
        Ok(r) => return r,
        Err(p) => sched::panic_text(&*p),
    };
    Err(Failure::at(
        None,
        match first_captured(heap) {
            Some(r) => format!("checked mode reported: {r} (and then panicked: {p})"),
            None => format!("panicked: {p}"),
        },
    ))
}

/// The first report the heap captured and nobody took yet, as its message.
fn first_captured<P: Observed>(heap: &Heap<P>) -> Option<String> {
    let mut reports = Vec::new();
    P::take(heap, &mut reports);
    reports.first().map(|r| r.to_string())
}

/// Resets the heap a program ran on, right after it, on a new heap as on a reused one: what
/// the reset checks (debug builds: that every spare reads as zero) then fails the program that
/// left the damage, alone as after others, not the one after it.
fn end_reset<P: Observed>(heap: &mut Heap<P>) -> Result<(), Failure> {
    guarded(heap, |h| {
        h.reset();
        Ok(())
    })
}

/// Calls `f` with a heap as `heap` says, set up as `knobs` say, capturing its reports. After a
/// failure the heap may be corrupt, so it is never dropped (unmapping it could crash before the
/// failure is printed) nor used again.
pub(crate) fn with_heap<P: Observed, T>(heap_use: HeapUse, knobs: Knobs, f: impl FnOnce(&mut Heap<P>) -> Result<T, Failure>) -> Result<T, Failure> {
    match heap_use {
        HeapUse::New => {
            let mut heap = ManuallyDrop::new(Heap::<P>::new());
            heap.set_limits(knobs.limits());
            P::capture(&heap);
            set_checks(&heap, knobs);
            let r = guarded(&mut heap, f).and_then(|v| end_reset(&mut heap).map(|()| v));
            if r.is_ok() {
                ManuallyDrop::into_inner(heap);
            }
            r
        }
        HeapUse::Reset => P::reused().with(|cell| {
            let mut slot = cell.borrow_mut();
            // Boxed: caches point at their heap, so it must not move while they live.
            // (Reset already, at the end of the program before: see end_reset.)
            let heap = slot.get_or_insert_with(|| Box::new(Heap::new()));
            heap.set_limits(knobs.limits());
            P::capture(heap);
            set_checks(heap, knobs);
            let r = guarded(heap, f).and_then(|v| end_reset(heap).map(|()| v));
            if r.is_err() {
                std::mem::forget(slot.take());
            }
            r
        }),
    }
}

/// The knobs a heap takes beyond its limits: poison (the library's default of whole-slot
/// poison on one free in `WHOLE_POISON_EVERY`, instead of `capture`'s every free) and guard
/// sampling (set either way: a reused heap keeps the last program's).
fn set_checks<P: Policy>(heap: &Heap<P>, knobs: Knobs) {
    if knobs.poison == 1 {
        heap.set_whole_poison_every(hakmem::check::WHOLE_POISON_EVERY);
    }
    heap.set_guard_sample(crate::program::GUARD_SAMPLES[knobs.guard as usize % 4]);
}

/// A plain program's run, traced if `trace`: the verdict and what it did.
pub fn run_plain_traced<P: Observed>(prog: &Program, opts: RunOpts, trace: bool) -> (Result<(), Failure>, Vec<Event>) {
    let mut events = Vec::new();
    let r = with_heap::<P, ()>(opts.heap, prog.knobs, |heap| {
        let mut it = Interp::new(heap, prog.threads, prog.knobs, opts.sweep, trace)?;
        let r = drive_plain(&it, prog);
        events = it.take_trace();
        if r.is_err() {
            // The heap may be corrupt: dropping the caches could crash before the failure prints.
            std::mem::forget(it);
            return r;
        }
        it.finish(true).map_err(|v| Failure::at(None, v))?;
        it.poll(None);
        if let Some(r) = it.model().reports.first() {
            return Err(Failure::at(None, format!("checked mode reported during cleanup: {r}")));
        }
        drop(it);
        let (reports, verify) = final_sweep(heap);
        if let Some(r) = reports.first() {
            return Err(Failure::at(None, format!("checked mode reported in the final sweep of free blocks: {r}")));
        }
        if let Some(v) = verify {
            return Err(Failure::at(None, v));
        }
        let large = heap.stats().large_blocks;
        if large != 0 {
            return Err(Failure::at(None, format!("{large} large block(s) still mapped after every block was freed")));
        }
        Ok(())
    });
    (r, events)
}

/// Runs a plain program deterministically and checks the model after every step; any report of
/// the checked policy is a failure too.
pub fn run_plain<P: Observed>(prog: &Program, opts: RunOpts) -> Result<(), Failure> {
    run_plain_traced::<P>(prog, opts, false).0
}

fn drive_plain<P: Observed>(it: &Interp<'_, P>, prog: &Program) -> Result<(), Failure> {
    let ids = block_ids(prog);
    let exec = |i: usize| {
        let r = it.step(i, &prog.steps[i], ids[i]);
        it.poll(Some(i));
        if let Err(v) = r {
            // A check that fired inside the allocator says more than what the model saw after.
            return Err(match it.model().reports.first() {
                Some(rep) => Failure::at(Some(i), format!("checked mode reported: {rep} (and then: {v})")),
                None => Failure::at(Some(i), v),
            });
        }
        match it.model().reports.first() {
            Some(r) => Err(Failure::at(Some(i), format!("checked mode reported: {r}"))),
            None => Ok(Flow::Continue),
        }
    };
    let mut last = 0;
    let mut quiet = |done: usize| {
        // Also right after a thread's end or a flush: caches made, slabs pooled and abandoned.
        let drained = done > 0 && matches!(prog.steps[done - 1].op, Op::EndThread | Op::Flush);
        if done >= last + VERIFY_EVERY || drained {
            last = done;
            it.verify().map_err(|v| Failure::at(done.checked_sub(1), v))?;
        }
        Ok(())
    };
    sched::run(&step_info(prog), prog.threads, &exec, &mut quiet).map_err(|f| {
        // A debug assertion that fired after a check reported says less than the report.
        if !f.what.starts_with("panicked: ") {
            return f;
        }
        it.poll(f.step);
        match it.model().reports.first() {
            Some(rep) => Failure::at(f.step, format!("checked mode reported: {rep} (and then {})", f.what)),
            None => f,
        }
    })
}
