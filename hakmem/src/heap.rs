//! The heap: owns every mapping, the pool of unassigned slabs, abandoned slabs, and large blocks.
//!
//! All of it sits behind one lock, taken only on slow paths (a slab changes hands, a large block
//! is mapped or unmapped, a cache is created). One lock means no lock order to get wrong: the C
//! design deadlocked on its pool and registry locks (failure 11). (The spare mappings have a
//! lock of their own, but it is a leaf: nothing else is taken while it is held.)
//!
//! Memory comes back in three steps. A slab whose slots are all free returns to the pool, where
//! any class can take it. Up to [`DIRTY_POOL_LIMIT`] pooled slabs keep their dirty pages, and up
//! to [`MAX_EMPTY_REGIONS`] regions whose slabs are all pooled stay mapped. Beyond those limits,
//! memory is kept for [`PURGE_DELAY`] more: then the first slow path of the heap purges the
//! excess slabs (their pages go back to the OS) and unmaps the excess regions, as does
//! [`Heap::trim`] at once. So a steady workload reuses its slabs, one that shrinks and grows
//! again within the delay does not pay for page faults and mappings each time, and one that
//! shrinks for good gives its memory back.

use crate::batch::{BatchList, BATCH_BYTES};
use crate::check::{self, CheckState};
use crate::guard::{self, GuardPool};
use crate::layout::{region_base, region_offset, round_up, PAGE, REGION_SIZE};
use crate::list::List;
use crate::lock::SpinLock;
use crate::os;
use crate::policy::{Policy, Release};
use crate::region::{Span, AllRegions, AvailRegions, LargeRegions, RegionHeader, SmallRegion, ALL_SLABS, LARGE_KIND, SMALL_HEADER};
use crate::size_class::{CLASS_SIZES, NUM_CLASSES};
use crate::slab::{Slab, SlabLinks, SlabState};
use core::marker::PhantomData;
use core::ptr::null_mut;
use crate::report::Report;
use crate::sync::{AtomicPtr, AtomicU32, AtomicUsize, LockClass, Ordering::{AcqRel, Acquire, Relaxed}};

/// Spans a region must hold for the heap to cut regions into spans (see `take_pooled`).
const MIN_REGION_SPANS: usize = 4;

/// Whether the heap cuts regions whose usable units are `full_mask` into spans: only when each
/// holds several (a region of a few units, a heap limited to them, keeps them for slabs of
/// every class).
pub(crate) fn cuts_spans(full_mask: u64) -> bool {
    crate::region::whole_spans(full_mask).count_ones() as usize >= MIN_REGION_SPANS * crate::layout::SPAN_UNITS
}

/// Pooled slabs allowed to keep their dirty pages for good.
pub const DIRTY_POOL_LIMIT: usize = 64;
/// How long memory beyond the retention limits stays before the next slow path returns it.
/// Purging at once made a workload that shrinks and grows again fault in every page and map
/// every region anew each cycle (grow-shrink ran at half mimalloc's speed).
pub const PURGE_DELAY: std::time::Duration = std::time::Duration::from_millis(50);
/// Entirely free regions kept mapped for reuse.
pub const MAX_EMPTY_REGIONS: usize = 1;
/// Freed large mappings up to this size are kept for reuse instead of unmapped: for blocks just
/// above the slab tier, mmap and munmap cost more than the pages.
pub const LARGE_CACHE_BLOCK: usize = 1 << 20;
/// Bytes of freed large mappings kept at most (their pages stay resident).
pub const LARGE_CACHE_BYTES: usize = 8 << 20;
/// A cached mapping up to this size may serve any smaller block (beyond that, only blocks of at
/// least half its size): page-aligned requests of a few bytes get a mapping of their own each.
pub const LARGE_REUSE_SLACK: usize = 64 << 10;
/// Freed large mappings kept at most (reuse searches them one by one).
pub const LARGE_CACHE_COUNT: usize = 64;
/// Remote frees to one owning cache that a cache gathers before sending them with one atomic
/// operation (see `cache`'s remote frees); a batch holds at most `batch::BATCH_SLOTS` of them.
pub const PENDING_MAX: u32 = 128;

/// A heap's thresholds: what it keeps, for how long, and how much it may map. Each field's
/// default is the constant named in its doc; [`Heap::set_limits`] changes them, which the fuzz
/// harness does per program so that a few steps cross each threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Pooled slabs allowed to keep their dirty pages ([`DIRTY_POOL_LIMIT`]).
    pub dirty_pool: usize,
    /// Entirely free regions kept mapped ([`MAX_EMPTY_REGIONS`]).
    pub empty_regions: usize,
    /// How long memory beyond those limits stays ([`PURGE_DELAY`]).
    pub purge_delay: std::time::Duration,
    /// Largest freed large mapping kept for reuse ([`LARGE_CACHE_BLOCK`]).
    pub large_cache_block: usize,
    /// Bytes of freed large mappings kept ([`LARGE_CACHE_BYTES`]).
    pub large_cache_bytes: usize,
    /// Freed large mappings kept ([`LARGE_CACHE_COUNT`]).
    pub large_cache_count: usize,
    /// Slabs of each small region the heap uses, 1 to 64 (all 64): fewer make a program cross
    /// region boundaries with few blocks.
    pub region_slabs: usize,
    /// Small regions mapped at once at most (no limit: `usize::MAX`); beyond it, a small
    /// allocation that finds no room returns null.
    pub max_regions: usize,
    /// Remote frees a cache gathers per slab and per owner before passing them on
    /// ([`PENDING_MAX`]); caches made later take it.
    pub pending_max: u32,
    /// Bytes of given-back mappings kept as spares (0; see [`Heap::set_spare_mappings`]).
    pub spare_bytes: usize,
    /// Whether a large block may grow by extending its mapping (`mremap`, true). Whether that
    /// works depends on what else the process mapped next to the block, which a fuzz input
    /// does not control, so the harness turns it off to keep every run of an input the same.
    pub grow_mappings: bool,
}

impl Limits {
    /// Every threshold at its default.
    pub const DEFAULT: Limits = Limits {
        dirty_pool: DIRTY_POOL_LIMIT,
        empty_regions: MAX_EMPTY_REGIONS,
        purge_delay: PURGE_DELAY,
        large_cache_block: LARGE_CACHE_BLOCK,
        large_cache_bytes: LARGE_CACHE_BYTES,
        large_cache_count: LARGE_CACHE_COUNT,
        region_slabs: crate::layout::SLABS_PER_REGION,
        max_regions: usize::MAX,
        pending_max: PENDING_MAX,
        spare_bytes: 0,
        grow_mappings: true,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Bytes reserved per thread cache in the metadata arena.
/// (FAULT fault-cache-slot-overlap, failure 9: 1 KiB, less than a cache's 1664 bytes, so a new
/// cache writes over the end of its neighbour's: its outbox, its empty slab and its inbox.)
pub(crate) const CACHE_SLOT: usize = if cfg!(feature = "fault-cache-slot-overlap") { 1024 } else { 4096 };
/// Bytes per arena chunk.
pub(crate) const ARENA_CHUNK: usize = 64 * 1024;

/// Bytes of a chunk of batches (the first batch's room links the chunks): an arena chunk's, so
/// that both are unmapped alike.
pub(crate) const BATCH_CHUNK: usize = ARENA_CHUNK;
/// Batches a chunk holds (its first batch's room links the chunks).
pub(crate) const BATCHES_PER_CHUNK: usize = BATCH_CHUNK / BATCH_BYTES - 1;

/// An allocator instance: create it, hand out [`crate::ThreadCache`]s, drop it to unmap everything.
pub struct Heap<P: Policy = Release> {
    pub(crate) state: SpinLock<State>,
    stats: Counters,
    /// Checked heaps: secret, reports, region table; made on first use.
    checks: AtomicPtr<CheckState>,
    /// Id of the next thread cache (ids start at 1; 0 means "no cache").
    next_cache_id: AtomicU32,
    /// Mappings given back, kept to stand in for new ones (none unless
    /// [`Heap::set_spare_mappings`] says so). A lock of its own, taken last and around nothing
    /// but its own bookkeeping (and unmapping what it evicts), so that mappings can be made and
    /// given back with or without the heap lock held.
    spares: SpinLock<os::Spares>,
    /// `Limits::pending_max`, for caches to read when they are made (without the lock).
    pending_max: AtomicU32,
    /// Sampled guard-page blocks (see [`Heap::set_guard_sample`]).
    guard: GuardPool,
    /// One allocation in this many is guarded; 0: none.
    guard_sample: AtomicU32,
    _policy: PhantomData<P>,
}

/// Everything the heap lock guards (fields shared with the consistency sweep, `verify.rs`).
pub(crate) struct State {
    pub(crate) regions: List<SmallRegion, AllRegions>,
    pub(crate) avail: List<SmallRegion, AvailRegions>,
    pub(crate) empty_regions: usize,
    pub(crate) dirty_pooled: usize,
    /// When the memory beyond the retention limits goes back; None while within them.
    pub(crate) purge_at: Option<std::time::Instant>,
    pub(crate) limits: Limits,
    /// The `pooled` bits of a region whose usable slabs (`limits.region_slabs`) are all pooled.
    pub(crate) full_mask: u64,
    pub(crate) abandoned: [List<Slab, SlabLinks>; NUM_CLASSES],
    pub(crate) large: List<RegionHeader, LargeRegions>,
    /// Freed large mappings kept for reuse, newest first, within the limits' `large_cache_*`.
    pub(crate) large_cache: List<RegionHeader, LargeRegions>,
    pub(crate) large_cached_bytes: usize,
    pub(crate) arena_chunks: *mut u8,
    pub(crate) arena_free: *mut u8,
    /// Chunks of batches (`batch`), linked through their first word; never given back before
    /// the heap drops.
    pub(crate) batch_chunks: *mut u8,
    /// Empty batches no cache holds.
    pub(crate) batches: BatchList,
}

// SAFETY: the raw pointers in State point into mappings the heap owns; the lock serialises them.
unsafe impl Send for State {}

#[derive(Default)]
struct Counters {
    mapped: AtomicUsize,
    peak_mapped: AtomicUsize,
    large_allocs: AtomicUsize,
    caches: AtomicUsize,
    purges: AtomicUsize,
}

/// A snapshot of a heap's bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes currently mapped (regions, large blocks, metadata).
    pub mapped_bytes: usize,
    /// Largest `mapped_bytes` seen.
    pub peak_mapped_bytes: usize,
    /// Small regions mapped.
    pub small_regions: usize,
    /// Small regions whose slabs are all pooled.
    pub empty_regions: usize,
    /// Large blocks live.
    pub large_blocks: usize,
    /// Large blocks ever mapped.
    pub large_allocs: usize,
    /// Thread caches live.
    pub caches: usize,
    /// Slabs waiting for adoption.
    pub abandoned_slabs: usize,
    /// Pooled slabs whose pages are still dirty.
    pub dirty_pooled_slabs: usize,
    /// Slabs purged on return to the pool.
    pub purges: usize,
}

impl<P: Policy> Default for Heap<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Policy> Heap<P> {
    /// An empty heap; it maps nothing until first used.
    pub const fn new() -> Self {
        Heap {
            state: SpinLock::new(LockClass::Heap, State {
                regions: List::new(),
                avail: List::new(),
                empty_regions: 0,
                dirty_pooled: 0,
                purge_at: None,
                limits: Limits::DEFAULT,
                full_mask: ALL_SLABS,
                abandoned: [const { List::new() }; NUM_CLASSES],
                large: List::new(),
                large_cache: List::new(),
                large_cached_bytes: 0,
                arena_chunks: null_mut(),
                batch_chunks: null_mut(),
                batches: BatchList::new(),
                arena_free: null_mut(),
            }),
            stats: Counters {
                mapped: AtomicUsize::new(0),
                peak_mapped: AtomicUsize::new(0),
                large_allocs: AtomicUsize::new(0),
                caches: AtomicUsize::new(0),
                purges: AtomicUsize::new(0),
            },
            checks: AtomicPtr::new(null_mut()),
            next_cache_id: AtomicU32::new(1),
            spares: SpinLock::new(LockClass::Spares, os::Spares::new()),
            pending_max: AtomicU32::new(PENDING_MAX),
            guard: GuardPool::new(),
            guard_sample: AtomicU32::new(0),
            _policy: PhantomData,
        }
    }

    /// From now on this heap records its checked-mode reports (see [`Heap::take_reports`])
    /// instead of printing them and aborting; the operation that failed a check is skipped.
    /// A release heap never reports.
    pub fn capture_reports(&self) {
        if P::CHECKED {
            self.check_state().capture();
        }
    }

    /// Checked heaps: one free in `n` poisons its block whole, and the block's reuse checks it
    /// whole (default [`crate::check::WHOLE_POISON_EVERY`]); the others poison and check only
    /// the bytes a stale pointer's write lands on first. 1 (or 0): every free, as the fuzz
    /// harness runs. A release heap ignores it.
    pub fn set_whole_poison_every(&self, n: u32) {
        if P::CHECKED {
            self.check_state().set_whole_poison_every(n);
        }
    }

    /// Guards one small allocation in `n` (0: none, the default; 1: every one up to a page), in
    /// checked and release heaps alike, GWP-ASan style: the block gets a page of its own between
    /// two inaccessible pages, and its page becomes inaccessible when it is freed and stays so
    /// while a bounded quarantine keeps it. A read or write after free, an overflow past the
    /// page or an underflow before it then faults, and a signal handler (installed here) turns
    /// the fault into a report naming the block, its allocation and free, and the access. The
    /// caches pick the value up at their next sample (a cache made later, at once). Off in ASan
    /// builds, whose own redzones and quarantine do this.
    pub fn set_guard_sample(&self, n: u32) {
        if crate::asan::ENABLED {
            return;
        }
        if n > 0 {
            guard::install_fault_handler();
        }
        self.guard_sample.store(n, Relaxed);
    }

    /// The current guard sample (see [`Heap::set_guard_sample`]).
    pub(crate) fn guard_sample(&self) -> u32 {
        self.guard_sample.load(Relaxed)
    }

    /// A guarded block for a sampled request, or null (the caller allocates normally).
    pub(crate) fn guard_alloc(&self, size: usize, align: usize, who: crate::report::Identity) -> *mut u8 {
        self.guard.alloc(size, align, who)
    }

    /// Frees the guarded block `p`, or reports why it cannot be freed (checked heaps record the
    /// report in capture mode, others print it and abort).
    ///
    /// # Safety
    /// `p` lies in a guard arena (its region's kind says so); it is dead afterwards.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn guard_free(&self, p: *mut u8, who: crate::report::Identity) {
        // SAFETY: forwarded; the pool checks p before it reads anything for it.
        if let Err(r) = unsafe { self.guard.free(p, who) } {
            self.deliver(r);
        }
    }

    /// The requested size of the guarded block `p`, or (after its report) None.
    ///
    /// # Safety
    /// As for [`Heap::guard_free`], but `p` stays live.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn guard_usable_size(&self, p: *mut u8, thread: u32) -> Option<usize> {
        // SAFETY: forwarded.
        match unsafe { self.guard.usable_size(p, thread) } {
            Ok(n) => Some(n),
            Err(r) => {
                self.deliver(r);
                None
            }
        }
    }

    /// Reports `p`, which is in no mapping of any heap, handed to free, realloc or a size query
    /// by cache `thread` (release mode's check; checked heaps find it in their own region table).
    #[cold]
    #[inline(never)]
    pub(crate) fn foreign(&self, p: *mut u8, thread: u32) {
        self.deliver(Report { detail: "not in any region of hakmem", ..Report::new(crate::report::ReportKind::ForeignPointer, p.addr(), thread) });
    }

    /// A report from outside the checked mode's own hooks: recorded by a capturing checked heap,
    /// else printed with an abort.
    fn deliver(&self, r: Report) {
        if P::CHECKED {
            self.check_state().report(r);
        } else {
            crate::report::print_and_abort(&r);
        }
    }

    /// The reports recorded since the last call, oldest first.
    pub fn take_reports(&self) -> Vec<Report> {
        if P::CHECKED {
            self.check_state().take()
        } else {
            Vec::new()
        }
    }

    /// The check state of a checked heap, made on first use.
    pub(crate) fn check_state(&self) -> &CheckState {
        let mut s = self.checks.load(Acquire);
        if s.is_null() {
            let new = check::create_state();
            if new.is_null() {
                crate::report::fatal("hakmem: out of memory creating a checked heap's state\n");
            }
            s = match self.checks.compare_exchange(null_mut(), new, AcqRel, Acquire) {
                Ok(_) => new,
                Err(other) => {
                    // SAFETY: `new` lost the race and was never shared.
                    unsafe { check::destroy_state(new) };
                    other
                }
            };
        }
        // SAFETY: the state lives until the heap is dropped.
        unsafe { &*s }
    }

    /// A cache was forgotten (see `ThreadCache` tests): no longer counted.
    #[cfg(test)]
    pub(crate) fn forget_cache_count(&self) {
        self.stats.caches.fetch_sub(1, Relaxed);
    }

    /// Checked heaps: checks the header and poison of every free block, reporting a write after
    /// free into one that was never handed out again (for instance on an abandoned slab's remote
    /// queue, which nothing drains). Runs when a checked heap is dropped; callers that reuse a
    /// heap with [`Heap::reset`] call it at the end of each program. Needs no cache (`&mut`).
    pub fn verify_free_slots(&mut self) {
        if !P::CHECKED {
            return;
        }
        let st = self.state.get_mut();
        let mut r = st.regions.head();
        while !r.is_null() {
            // SAFETY: regions on the list are live; `&mut self` means no cache exists.
            unsafe {
                check::verify_free_slots(r);
                r = st.regions.next(r);
            }
        }
    }

    /// A new cache's id.
    pub(crate) fn new_cache_id(&self) -> u32 {
        self.next_cache_id.fetch_add(1, Relaxed)
    }

    /// Unmaps every large block and every cached large mapping.
    ///
    /// # Safety
    /// No large block of the heap may be in use, nor be used afterwards.
    unsafe fn unmap_large(st: &mut State, stats: &Counters, spares: &mut os::Spares) {
        // SAFETY: forwarded.
        unsafe {
            Self::unmap_list(&mut st.large, stats, spares, false);
            Self::unmap_list(&mut st.large_cache, stats, spares, true);
        }
        st.large_cached_bytes = 0;
    }

    /// Unmaps every large mapping on `list`, leaving it empty.
    ///
    /// # Safety
    /// The mappings are the heap's, and no block in them may be in use or used afterwards.
    unsafe fn unmap_list(list: &mut List<RegionHeader, LargeRegions>, stats: &Counters, spares: &mut os::Spares, freed: bool) {
        loop {
            // SAFETY: per the contract; each header is unlinked before it is unmapped.
            unsafe {
                let h = list.pop_front();
                if h.is_null() {
                    break;
                }
                Self::give_back_large(h, stats, spares, freed);
            }
        }
    }

    /// Gives a large block's mapping back to the OS or the spares; `freed` if it was cached (its
    /// block freed), rather than holding a block.
    ///
    /// # Safety
    /// `h` heads a large mapping of this heap that is in no list and no longer used.
    unsafe fn give_back_large(h: *mut RegionHeader, stats: &Counters, spares: &mut os::Spares, freed: bool) {
        // SAFETY: forwarded; the header is intact until the mapping goes.
        unsafe {
            let (base, size, align) = (h.cast::<u8>(), (*h).map_size, (*h).map_align);
            crate::region::mark_mapping(base, size, Span::Foreign);
            stats.mapped.fetch_sub(size, Relaxed);
            if !spares.keeps(size) {
                return os::unmap(base, size, align);
            }
            let user = base.add((*h).user_offset);
            crate::asan::large_released(base, size, user, freed);
            // The header page is written whole. Past it, any page may hold bytes, even in front
            // of an aligned block: the large cache hands a mapping to blocks at other offsets.
            base.write_bytes(0, PAGE);
            os::zero_resident(base.add(PAGE), size - PAGE);
            spares.keep(base, size, align);
        }
    }

    /// Gives a small region's mapping back to the OS or the spares.
    ///
    /// # Safety
    /// `r` is a region of this heap that is in no list and no longer used.
    unsafe fn give_back_region(r: *mut SmallRegion, stats: &Counters, spares: &mut os::Spares) {
        crate::region::mark_mapping(r.cast(), REGION_SIZE, Span::Foreign);
        stats.mapped.fetch_sub(REGION_SIZE, Relaxed);
        // SAFETY: forwarded; the region's header is intact until the mapping goes.
        unsafe {
            if !spares.keeps(REGION_SIZE) {
                return os::unmap(r.cast(), REGION_SIZE, REGION_SIZE);
            }
            crate::asan::unpoison(r.cast(), REGION_SIZE);
            // Each slab that may hold non-zero bytes, up to the end of what it ever carved (no
            // byte beyond it was written: the allocator writes only carved slots, the client
            // only handed-out ones), then the header, written whole. The other slabs are
            // untouched or were purged.
            let mut ends = [0usize; crate::layout::SLABS_PER_REGION];
            let dirty = (*r).dirty;
            for (i, e) in ends.iter_mut().enumerate() {
                if dirty & (1 << i) != 0 {
                    *e = SmallRegion::touched_end(r, i);
                }
            }
            let mut runs = dirty;
            while runs != 0 {
                let first = runs.trailing_zeros() as usize;
                let end = first + (runs >> first).trailing_ones() as usize;
                // FAULT fault-spare-skips-last-run (spare mappings): the last slab of a run of
                // two or more is left as it was.
                let last = if cfg!(feature = "fault-spare-skips-last-run") && end - first > 1 { end - 1 } else { end };
                for (i, &e) in ends.iter().enumerate().take(last).skip(first) {
                    let (start, _) = SmallRegion::unit_span(r, i);
                    let stop = r.cast::<u8>().add(e);
                    if stop > start {
                        start.write_bytes(0, stop.addr() - start.addr());
                    }
                }
                // The run and every bit below it are done.
                runs = if end == 64 { 0 } else { runs & (u64::MAX << end) };
            }
            // Debug builds (the fuzz targets): what the runs zeroed, read back slab by slab. A
            // spare must be as good as a new mapping, or a later program sees this one's bytes.
            if cfg!(debug_assertions) {
                for (i, &e) in ends.iter().enumerate() {
                    let (start, _) = SmallRegion::unit_span(r, i);
                    let len = (r.cast::<u8>().add(e).addr()).saturating_sub(start.addr());
                    let words = core::slice::from_raw_parts(start.cast::<u64>(), len / 8);
                    if let Some(k) = words.iter().position(|&w| w != 0) {
                        panic!("hakmem: a region given to the spares is not zero: slab {i} at {:#x} holds {:#x}", start.addr() + 8 * k, words[k]);
                    }
                }
            }
            r.cast::<u8>().write_bytes(0, SMALL_HEADER);
            spares.keep(r.cast(), REGION_SIZE, REGION_SIZE);
        }
    }

    /// The heap's thresholds.
    pub fn limits(&self) -> Limits {
        self.state.lock().limits
    }

    /// Sets the heap's thresholds. Meant for a heap that has mapped no small region yet (a new
    /// one, or one just [`Heap::reset`]): `region_slabs` applies to regions mapped afterwards.
    pub fn set_limits(&self, limits: Limits) {
        let limits = Limits { region_slabs: limits.region_slabs.clamp(1, crate::layout::SLABS_PER_REGION), ..limits };
        let mut st = self.state.lock();
        debug_assert!(st.regions.len() == 0 || limits.region_slabs == st.limits.region_slabs, "region_slabs changed on a heap with regions");
        st.limits = limits;
        st.full_mask = if limits.region_slabs == 64 { u64::MAX } else { (1u64 << limits.region_slabs) - 1 };
        self.pending_max.store(limits.pending_max.max(1), Relaxed);
        self.spares.lock().set_limit(limits.spare_bytes);
    }

    /// Sets the limits of the cache of freed large mappings (default [`LARGE_CACHE_BLOCK`] and
    /// [`LARGE_CACHE_BYTES`]): the largest mapping kept and the bytes kept in all. A caller that
    /// allocates big blocks over and over (the fuzz harness) trades resident memory for the
    /// mmap, munmap and page faults each fresh mapping costs.
    pub fn set_large_cache(&self, max_block: usize, max_bytes: usize) {
        let mut st = self.state.lock();
        st.limits.large_cache_block = max_block;
        st.limits.large_cache_bytes = max_bytes;
    }

    /// Keeps up to `max_bytes` of the mappings this heap gives back (zeroed; the pages that were
    /// touched stay resident) and uses them in place of new mappings of the same size and
    /// alignment (see [`os::Spares`]). Default 0. For callers that run many short programs on
    /// one heap, such as the fuzz harness: each program would otherwise map and unmap its
    /// regions and large blocks anew.
    pub fn set_spare_mappings(&self, max_bytes: usize) {
        self.state.lock().limits.spare_bytes = max_bytes;
        self.spares.lock().set_limit(max_bytes);
    }

    /// Remote frees a new cache chains per slab (`Limits::pending_max`).
    pub(crate) fn pending_max(&self) -> u32 {
        self.pending_max.load(Relaxed)
    }

    /// Frees every block and returns the heap to the state of a new one with the same limits, for
    /// callers that run many short programs on one heap, such as the fuzz harness (a new `Heap`
    /// per program costs more in mmap, munmap and page faults than the program itself). Blocks
    /// still live become invalid. Every region, shadow map and large mapping is given back: to
    /// the spares if [`Heap::set_spare_mappings`] allows, which zero them, so that the next
    /// program finds memory exactly as a new heap would (fresh, zeroed, no dirty slab) and runs
    /// the same whatever ran before it. Only the cache arena (which no program can observe) stays.
    pub fn reset(&mut self) {
        assert_eq!(self.stats.caches.load(Relaxed), 0, "hakmem: reset of a heap with live caches");
        // SAFETY: no cache, so no guarded block is in use.
        unsafe { self.guard.release_all() };
        let st = self.state.get_mut();
        let spares = self.spares.get_mut();
        // SAFETY: no cache exists (`&mut self` and the count say so), so no block or slab is in
        // use; each mapping is given back once, after being unlinked.
        unsafe {
            // FAULT fault-reset-keeps-large-cache (reset): the cached freed large mappings stay
            // for the next program, which then reuses what earlier programs freed.
            if cfg!(feature = "fault-reset-keeps-large-cache") {
                Self::unmap_list(&mut st.large, &self.stats, spares, false);
            } else {
                Self::unmap_large(st, &self.stats, spares);
            }
            loop {
                let r = st.regions.pop_front();
                if r.is_null() {
                    break;
                }
                if P::CHECKED {
                    give_back_shadow(check::region_dropped(r), spares);
                }
                Self::give_back_region(r, &self.stats, spares);
            }
            st.avail = List::new();
            st.abandoned = [const { List::new() }; NUM_CLASSES];
            st.empty_regions = 0;
            st.dirty_pooled = 0;
            st.purge_at = None;
            // The batches, all unused now (the sweep counts them while caches live), in their
            // canonical order too.
            st.batches = BatchList::new();
            let mut c = st.batch_chunks;
            while !c.is_null() {
                Self::carve_batch_chunk(st, c);
                c = c.cast::<*mut u8>().read();
            }
            // The arena's free list in its canonical order, so caches land where they would in a
            // new heap with these chunks.
            st.arena_free = null_mut();
            let mut c = st.arena_chunks;
            while !c.is_null() {
                // (Checked: every slot already reads as zero past its link, as in a new chunk:
                // each cache zeroed its storage when it ended.)
                Self::carve_arena_chunk(st, c);
                c = c.cast::<*mut u8>().read();
            }
            let cs = *self.checks.get_mut();
            if P::CHECKED && !cs.is_null() {
                check::state_reset(&*cs);
            }
        }
        self.next_cache_id.store(1, Relaxed);
        self.stats.large_allocs.store(0, Relaxed);
        self.stats.purges.store(0, Relaxed);
        self.stats.peak_mapped.store(self.stats.mapped.load(Relaxed), Relaxed);
    }

    /// Whether `p` lies in one of the small regions this heap has mapped now (a pointer into a
    /// region it gave back, or into no region of it, does not).
    pub fn holds_small(&self, p: *const u8) -> bool {
        let base = region_base(p.cast_mut()).addr();
        let st = self.state.lock();
        let mut r = st.regions.head();
        while !r.is_null() {
            if r.addr() == base {
                return true;
            }
            // SAFETY: the lock is held; r is on the list.
            r = unsafe { st.regions.next(r) };
        }
        false
    }

    /// Current bookkeeping figures.
    pub fn stats(&self) -> HeapStats {
        let st = self.state.lock();
        HeapStats {
            mapped_bytes: self.stats.mapped.load(Relaxed),
            peak_mapped_bytes: self.stats.peak_mapped.load(Relaxed),
            small_regions: st.regions.len(),
            empty_regions: st.empty_regions,
            large_blocks: st.large.len(),
            large_allocs: self.stats.large_allocs.load(Relaxed),
            caches: self.stats.caches.load(Relaxed),
            abandoned_slabs: st.abandoned.iter().map(List::len).sum(),
            dirty_pooled_slabs: st.dirty_pooled,
            purges: self.stats.purges.load(Relaxed),
        }
    }

    fn map(&self, size: usize, align: usize) -> *mut u8 {
        let mut p = self.spares.lock().take(size, align);
        if p.is_null() {
            // SAFETY: callers pass page multiples.
            p = unsafe { os::map_aligned(size, align) };
        }
        if !p.is_null() {
            let now = self.stats.mapped.fetch_add(size, Relaxed) + size;
            self.stats.peak_mapped.fetch_max(now, Relaxed);
        }
        p
    }

    /// A zeroed mapping for a checked region's shadow map: a spare if one fits. (Not counted as
    /// the heap's mapped bytes: it is the checks' overhead.)
    fn map_shadow(&self) -> *mut u8 {
        let mut p = self.spares.lock().take(check::SHADOW_BYTES, PAGE);
        if p.is_null() {
            // SAFETY: a page multiple.
            p = unsafe { os::map_aligned(check::SHADOW_BYTES, PAGE) };
        }
        p
    }

    /// # Safety
    /// `r` is a region of this heap that is in no list and no longer used.
    unsafe fn unmap_region(&self, r: *mut SmallRegion) {
        // SAFETY: forwarded.
        unsafe { Self::give_back_region(r, &self.stats, &mut self.spares.lock()) }
    }

    /// `fork()`'s prepare handler: takes the heap's locks, so that no other thread holds one
    /// across the fork (which would leave it locked for good in the child). Pair with
    /// [`Heap::fork_parent`] and [`Heap::fork_child`]. The global allocator registers these with
    /// `pthread_atfork`; a program that forks while using a heap of its own calls them itself.
    pub fn fork_prepare(&self) {
        self.lock_for_fork();
    }

    /// `fork()`'s parent handler: releases what [`Heap::fork_prepare`] took.
    ///
    /// # Safety
    /// The calling thread called `fork_prepare` and has not released it since.
    pub unsafe fn fork_parent(&self) {
        // SAFETY: forwarded.
        unsafe { self.unlock_after_fork() }
    }

    /// `fork()`'s child handler: the child's copy of the locks, taken by the thread that forked
    /// (the child's only one), released.
    ///
    /// # Safety
    /// Called in the child of a fork whose parent called `fork_prepare` before forking.
    pub unsafe fn fork_child(&self) {
        // SAFETY: forwarded.
        unsafe { self.unlock_after_fork() }
    }

    /// Takes the heap lock (and the spares' lock, in that order) with no guard, for `fork` handlers.
    pub(crate) fn lock_for_fork(&self) {
        self.state.acquire();
        // FAULT fault-fork-skips-spares-lock (failure 11, fork handlers): the spares' lock is
        // not held across fork, so a child can inherit it locked by a thread it does not have.
        if !cfg!(feature = "fault-fork-skips-spares-lock") {
            self.spares.acquire();
        }
        self.guard.lock_for_fork();
    }

    /// Releases the lock taken by [`Heap::lock_for_fork`].
    ///
    /// # Safety
    /// The calling thread must hold the lock through `lock_for_fork`.
    pub(crate) unsafe fn unlock_after_fork(&self) {
        // SAFETY: forwarded (the locks were taken by `lock_for_fork`).
        unsafe {
            self.guard.unlock_after_fork();
            if !cfg!(feature = "fault-fork-skips-spares-lock") {
                self.spares.force_unlock();
            }
            self.state.force_unlock();
        }
    }

    // ---- thread caches -------------------------------------------------------------------

    /// Storage for a new cache, from the heap's own arena so that creating a cache never calls
    /// back into an allocator (the global one may be this very heap).
    /// `size` is the bytes of a cache (at most [`CACHE_SLOT`]).
    pub(crate) fn alloc_cache_slot(&self, size: usize) -> *mut u8 {
        let mut st = self.state.lock();
        if st.arena_free.is_null() {
            let chunk = self.map(ARENA_CHUNK, PAGE);
            if chunk.is_null() {
                return null_mut();
            }
            // SAFETY: the chunk is fresh; its first slot links the chunk list, the rest are free.
            unsafe {
                chunk.cast::<*mut u8>().write(st.arena_chunks);
                st.arena_chunks = chunk;
                Self::carve_arena_chunk(&mut st, chunk);
            }
        }
        let slot = st.arena_free;
        // SAFETY: free arena slots hold the next free slot in their first word.
        st.arena_free = unsafe { slot.cast::<*mut u8>().read() };
        // Checked: a free slot reads as zero past that word (fresh, or zeroed when freed), so
        // anything else is another cache's memory (slots that overlap).
        // SAFETY: the slot is CACHE_SLOT bytes of a live chunk, ours under the lock.
        if P::CHECKED && !unsafe { check::cache_slot_unused(self.check_state(), slot, size) } {
            return null_mut();
        }
        self.stats.caches.fetch_add(1, Relaxed);
        slot
    }

    /// Links the cache slots of an arena chunk (all but the first, which links the chunks) into
    /// the free list, lowest address first.
    ///
    /// # Safety
    /// `chunk` is an arena chunk of this heap whose slots are all unused.
    unsafe fn carve_arena_chunk(st: &mut State, chunk: *mut u8) {
        for i in (1..ARENA_CHUNK / CACHE_SLOT).rev() {
            // SAFETY: within the chunk, per the contract.
            unsafe {
                let slot = chunk.add(i * CACHE_SLOT);
                slot.cast::<*mut u8>().write(st.arena_free);
                st.arena_free = slot;
            }
        }
    }

    /// Moves up to `n` empty batches into a cache's `stash`, mapping a chunk of them when the
    /// heap has too few (fewer only when the OS refuses memory).
    pub(crate) fn take_batches(&self, stash: &mut BatchList, n: usize) {
        let mut st = self.state.lock();
        if st.batches.len() < n {
            let chunk = self.map(BATCH_CHUNK, PAGE);
            if !chunk.is_null() {
                // SAFETY: the chunk is fresh and ours; its first batch's room links the chunks.
                unsafe {
                    chunk.cast::<*mut u8>().write(st.batch_chunks);
                    st.batch_chunks = chunk;
                    Self::carve_batch_chunk(&mut st, chunk);
                }
            }
        }
        stash.take_from(&mut st.batches, n);
    }

    /// Puts the batches of a chunk of them (all but the first's room, which links the chunks)
    /// into the heap's empty ones, lowest address first.
    ///
    /// # Safety
    /// `chunk` is a chunk of batches of this heap whose batches are all unused.
    unsafe fn carve_batch_chunk(st: &mut State, chunk: *mut u8) {
        // SAFETY: per the contract.
        unsafe { st.batches.carve(chunk.add(BATCH_BYTES), BATCHES_PER_CHUNK * BATCH_BYTES) };
    }

    /// Takes `n` empty batches back from a cache's `stash` (all of them when the cache ends).
    pub(crate) fn give_batches(&self, stash: &mut BatchList, n: usize) {
        self.state.lock().batches.take_from(stash, n);
    }

    /// Returns a cache's storage to the arena.
    ///
    /// # Safety
    /// `slot` came from `alloc_cache_slot` and is no longer used.
    pub(crate) unsafe fn free_cache_slot(&self, slot: *mut u8, size: usize) {
        let mut st = self.state.lock();
        // SAFETY: the slot is ours again.
        unsafe {
            if P::CHECKED {
                slot.write_bytes(0, size);
            }
            slot.cast::<*mut u8>().write(st.arena_free);
        }
        st.arena_free = slot;
        self.stats.caches.fetch_sub(1, Relaxed);
    }

    // ---- slabs ---------------------------------------------------------------------------

    /// A slab for `class`, owned by the cache at `owner`: an abandoned one of that class if any (so its live
    /// slots' memory is reused), else one from the pool. Null when the OS refuses memory.
    pub(crate) fn acquire_slab(&self, class: usize, owner: *mut u8) -> *mut Slab {
        let mut st = self.state.lock();
        self.purge_when_due(&mut st);
        // SAFETY: the abandoned lists hold live slabs.
        let mut adopted = unsafe { st.abandoned[class].pop_front() };
        // FAULT fault-adopt-neighbour-class (failure 5): with none of its class abandoned, a
        // cache adopts a slab of the class below.
        if cfg!(feature = "fault-adopt-neighbour-class") && adopted.is_null() && class > 0 {
            // SAFETY: as above.
            adopted = unsafe { st.abandoned[class - 1].pop_front() };
        }
        if !adopted.is_null() {
            // SAFETY: abandoned slabs are live and the lock makes the heap their owner.
            unsafe {
                (*adopted).local.state = SlabState::Owned;
                (*adopted).owner.store(owner, Relaxed);
            }
            return adopted;
        }
        let slab = self.take_pooled(&mut st, crate::layout::prefers_span(CLASS_SIZES[class]));
        if !slab.is_null() {
            // SAFETY: a pooled slab is owned by the heap, which holds the lock.
            unsafe {
                let r = SmallRegion::of_slab(slab);
                let i = SmallRegion::index_of(r, slab);
                let (start, limit) = SmallRegion::slab_span(r, i);
                let bits = SmallRegion::unit_bits(r, i);
                // FAULT fault-calloc-trusts-dirty-slab (calloc's zero shortcut): every pooled slab
                // is taken for fresh, zeroed memory.
                let zero = (*r).dirty & bits == 0 || cfg!(feature = "fault-calloc-trusts-dirty-slab");
                (*r).dirty |= bits;
                (*slab).local.assign(class, CLASS_SIZES[class], start, limit, zero);
                // ASan builds: uncarved slab space is off limits until slots are handed out.
                crate::asan::poison(start, limit.addr() - start.addr());
                if P::CHECKED {
                    check::slab_assigned(r, i, class, CLASS_SIZES[class]);
                }
                (*slab).local.state = SlabState::Owned;
                (*slab).owner.store(owner, Relaxed);
            }
        }
        slab
    }

    /// A pooled slab, from a span region if `span` (else a region of single units), mapping a
    /// region of that kind if none has room; or, when the limits allow no new region, from a
    /// region of the other kind. Null when there is none.
    fn take_pooled(&self, st: &mut State, span: bool) -> *mut Slab {
        let span = span && cuts_spans(st.full_mask);
        loop {
            // The first region with room of the kind wanted.
            let mut r = st.avail.head();
            // SAFETY: regions on `avail` are live.
            while !r.is_null() && unsafe { SmallRegion::is_span_region(r) } != span {
                // SAFETY: as above.
                r = unsafe { st.avail.next(r) };
            }
            if r.is_null() {
                if st.avail.head().is_null() && Self::reclaim_abandoned(self, st) > 0 {
                    continue;
                }
                // No new region allowed: any region with room.
                if st.regions.len() >= st.limits.max_regions {
                    r = st.avail.head();
                    if r.is_null() {
                        return null_mut();
                    }
                }
            }
            if r.is_null() {
                let base = self.map(REGION_SIZE, REGION_SIZE);
                if base.is_null() {
                    return null_mut();
                }
                // SAFETY: a fresh region-aligned mapping of REGION_SIZE bytes.
                let r = unsafe { SmallRegion::init(base, st.full_mask, span) };
                crate::region::mark_mapping(base, REGION_SIZE, Span::Small);
                if P::CHECKED {
                    let shadow = self.map_shadow();
                    if shadow.is_null() {
                        // SAFETY: the region was never shared.
                        unsafe { self.unmap_region(r) };
                        return null_mut();
                    }
                    // SAFETY: r is fresh, the shadow a zeroed mapping of its size; the state lives
                    // as long as the heap.
                    unsafe { check::region_created((self.check_state() as *const CheckState).cast_mut(), r, shadow) };
                }
                // SAFETY: r is a new region in no list.
                unsafe {
                    st.regions.push_back(r);
                    st.avail.push_back(r);
                }
                st.empty_regions += 1;
                continue;
            }
            // SAFETY: regions on `avail` are live and have at least one pooled slab (a span
            // region's units are pooled in whole spans, so the lowest is a span's first).
            unsafe {
                let pooled = (*r).pooled;
                debug_assert!(pooled != 0);
                if pooled == (*r).full {
                    st.empty_regions -= 1;
                }
                let i = pooled.trailing_zeros() as usize;
                let bits = SmallRegion::unit_bits(r, i);
                debug_assert!(pooled & bits == bits);
                (*r).pooled &= !bits;
                if (*r).pooled == 0 {
                    st.avail.remove(r);
                }
                st.dirty_pooled -= ((*r).dirty & bits).count_ones() as usize;
                return (&raw mut (*r).slabs).cast::<Slab>().add(i);
            }
        }
    }

    /// Returns an entirely free slab to the pool.
    ///
    /// # Safety
    /// The caller must own `slab`, and none of its slots may be live or queued.
    pub(crate) unsafe fn release_slab(&self, slab: *mut Slab) {
        let mut st = self.state.lock();
        // SAFETY: forwarded.
        unsafe { self.release_locked(&mut st, slab) }
    }

    unsafe fn release_locked(&self, st: &mut State, slab: *mut Slab) {
        // SAFETY: the caller owns the slab; its region is live; the lock covers region fields.
        unsafe {
            // (The checked mode first: its report names the slot a slab goes back with.)
            if P::CHECKED {
                check::slab_released(self.check_state(), slab);
            }
            debug_assert!((*slab).local.used == 0 && (*slab).remote.is_empty(), "hakmem: a slab goes back to the pool with slots handed out or queued");
            (*slab).local.state = SlabState::Pool;
            (*slab).owner.store(null_mut(), Relaxed);
            let r = SmallRegion::of_slab(slab);
            let i = SmallRegion::index_of(r, slab);
            let n = SmallRegion::units(r);
            for u in i..i + n {
                (*r).touched[u] = SmallRegion::touched_end(r, u) as u32;
            }
            let bits = SmallRegion::unit_bits(r, i);
            if (*r).pooled == 0 {
                st.avail.push_front(r);
            }
            (*r).pooled |= bits;
            // (Every unit handed out is dirty: `acquire_slab` marks it so.)
            st.dirty_pooled += n;
            if (*r).pooled == (*r).full {
                // Partly used regions stay at the front so empty ones are the last to be cut up.
                st.avail.remove(r);
                st.avail.push_back(r);
                st.empty_regions += 1;
            }
            if st.dirty_pooled > st.limits.dirty_pool || st.empty_regions > st.limits.empty_regions {
                // (With a zero delay the deadline is now, so the excess goes at once.)
                let delay = st.limits.purge_delay;
                st.purge_at.get_or_insert_with(|| std::time::Instant::now() + delay);
                self.purge_when_due(st);
            }
        }
    }

    /// Returns the memory beyond the retention limits once [`PURGE_DELAY`] has passed since it
    /// went over them.
    fn purge_when_due(&self, st: &mut State) {
        if st.purge_at.is_some_and(|t| std::time::Instant::now() >= t) {
            self.purge_excess(st);
        }
    }

    /// Unmaps the empty regions beyond the limit of those kept (in checked heaps, after checking
    /// that none of their blocks is live or queued), then purges pooled slabs until no more than
    /// the limit of them hold dirty pages.
    fn purge_excess(&self, st: &mut State) {
        let (regions, dirty) = (st.limits.empty_regions, st.limits.dirty_pool);
        self.purge_to(st, regions, dirty);
    }

    /// Unmaps empty regions until `regions` are left (in checked heaps, after checking that none
    /// of their blocks is live or queued), then purges pooled slabs until `dirty` of them hold
    /// dirty pages.
    fn purge_to(&self, st: &mut State, regions: usize, dirty: usize) {
        // SAFETY: regions on `avail` are live, their pooled slabs owned by the heap under its
        // lock; a region is unlinked from both lists before it is unmapped.
        unsafe {
            let mut r = st.avail.head();
            while !r.is_null() && st.empty_regions > regions {
                let next = st.avail.next(r);
                // FAULT fault-purge-takes-avail-head (failure 7): takes the regions at the head
                // of the list for the empty ones, though partly used regions are kept in front.
                if (*r).pooled == (*r).full || cfg!(feature = "fault-purge-takes-avail-head") {
                    st.avail.remove(r);
                    st.empty_regions -= 1;
                    st.dirty_pooled -= ((*r).dirty & (*r).pooled).count_ones() as usize;
                    st.regions.remove(r);
                    let mut spares = self.spares.lock();
                    if P::CHECKED {
                        give_back_shadow(check::region_released(r), &mut spares);
                    }
                    Self::give_back_region(r, &self.stats, &mut spares);
                }
                r = next;
            }
            let mut r = st.avail.head();
            while !r.is_null() && st.dirty_pooled > dirty {
                // FAULT fault-purge-owned-slabs (delayed purge): purges the region's dirty slabs,
                // pooled or not, so the pages of blocks in use go back to the OS.
                let mut bits = if cfg!(feature = "fault-purge-owned-slabs") { (*r).dirty } else { (*r).pooled & (*r).dirty };
                while bits != 0 && st.dirty_pooled > dirty {
                    let i = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let (start, limit) = SmallRegion::unit_span(r, i);
                    os::purge(start, limit.addr() - start.addr());
                    (*r).dirty &= !(1 << i);
                    (*r).touched[i] = 0;
                    st.dirty_pooled -= 1;
                    self.stats.purges.fetch_add(1, Relaxed);
                }
                r = st.avail.next(r);
            }
        }
        st.purge_at = None;
    }

    /// Sets how long memory beyond the retention limits stays (default [`PURGE_DELAY`]). Zero
    /// returns it at once, which makes the heap's behaviour independent of the clock: the fuzz
    /// harness needs every run of a program to do exactly the same. Memory already waiting goes
    /// no later than the new delay from now says.
    pub fn set_purge_delay(&self, delay: std::time::Duration) {
        let mut st = self.state.lock();
        st.limits.purge_delay = delay;
        if let Some(t) = st.purge_at {
            st.purge_at = Some(t.min(std::time::Instant::now() + delay));
        }
    }

    /// Gives the memory the heap holds but does not use back to the OS now (what `malloc_trim`
    /// does in the C library): the empty regions beyond the limit of those kept, and the pages
    /// of every pooled slab (the delayed purge keeps [`DIRTY_POOL_LIMIT`] of them), including
    /// slabs abandoned by ended caches that remote frees have emptied since; and the pages of
    /// guard slots that hold no live block.
    pub fn trim(&self) {
        let mut st = self.state.lock();
        // Abandoned slabs that remote frees emptied are pooled first, so that their memory
        // goes too (threads that allocated and ended, another that freed it all). Every pooled
        // slab's pages go, as glibc's malloc_trim gives back every free page; the empty
        // regions kept stay mapped, but hold no pages.
        self.reclaim_abandoned(&mut st);
        let regions = st.limits.empty_regions;
        self.purge_to(&mut st, regions, 0);
        drop(st);
        self.guard.trim();
    }

    /// Parks a slab whose cache is going away while some of its slots are live.
    ///
    /// # Safety
    /// The caller must own `slab` and give it up.
    pub(crate) unsafe fn abandon_slab(&self, slab: *mut Slab) {
        let mut st = self.state.lock();
        // SAFETY: per the contract; the lock makes the heap its owner from here on.
        unsafe {
            (*slab).local.state = SlabState::Abandoned;
            // FAULT fault-abandon-keeps-owner (failure 6): the slab keeps its old owner's token,
            // which a new cache made in the same arena slot has too.
            if !cfg!(feature = "fault-abandon-keeps-owner") {
                (*slab).owner.store(null_mut(), Relaxed);
            }
            let class = (*slab).local.class as usize;
            st.abandoned[class].push_back(slab);
        }
    }

    /// Drains every abandoned slab and pools those that turned out entirely free.
    fn reclaim_abandoned(&self, st: &mut State) -> usize {
        let mut released = 0;
        for class in 0..NUM_CLASSES {
            let mut s = st.abandoned[class].head();
            while !s.is_null() {
                // SAFETY: abandoned slabs are live and owned by the heap under its lock.
                unsafe {
                    let next = st.abandoned[class].next(s);
                    (*s).local.drain::<P>(&(*s).remote);
                    // FAULT fault-reclaim-live-slab (failure 7): "nothing queued" taken for
                    // "nothing live": every drained slab goes back to the pool.
                    if (*s).local.used == 0 || (cfg!(feature = "fault-reclaim-live-slab") && (*s).remote.is_empty()) {
                        st.abandoned[class].remove(s);
                        self.release_locked(st, s);
                        released += 1;
                    }
                    s = next;
                }
            }
        }
        released
    }

    // ---- large blocks --------------------------------------------------------------------

    /// Maps a block of `size` bytes aligned to `align` on its own, zeroed if `zero` (a fresh
    /// mapping is; a reused one gets a memset).
    pub(crate) fn alloc_large(&self, size: usize, align: usize, zero: bool) -> *mut u8 {
        // The header takes the first page; the block starts at the first aligned offset after it.
        // Alignments of a region or more cannot keep the header at the masked address, so those
        // blocks are found by searching the large list instead (see `find_large`).
        let (offset, map_align) = if align < REGION_SIZE { (align.max(PAGE), REGION_SIZE) } else { (align, align) };
        // A zero-byte block still gets a byte, or its pointer would be one past the mapping: the
        // start of whatever is mapped next (found by the checked heap's region table).
        let Some(total) = offset.checked_add(size.max(1)).and_then(|n| round_up(n, PAGE)) else {
            return null_mut();
        };
        let reused = self.reuse_large(total, map_align);
        let (base, map_size) = if reused.is_null() {
            let base = self.map(total, map_align);
            if !base.is_null() {
                crate::region::mark_mapping(base, total, Span::Large);
            }
            (base, total)
        } else {
            // SAFETY: a cached mapping is ours alone; its header is intact.
            (reused.cast::<u8>(), unsafe { (*reused).map_size })
        };
        if base.is_null() {
            return null_mut();
        }
        // ASan builds: only the requested bytes (and the header) are addressable.
        // SAFETY: a cached mapping's header is intact.
        let old_user = if reused.is_null() { null_mut() } else { base.wrapping_add(unsafe { (*reused).user_offset }) };
        crate::asan::large_allocated(base, map_size, base.wrapping_add(offset), size, old_user);
        let hdr = base.cast::<RegionHeader>();
        // SAFETY: the mapping is ours, aligned, and at least `total` bytes long.
        unsafe {
            if !reused.is_null() && zero {
                base.add(offset).write_bytes(0, size);
            }
            hdr.write(RegionHeader {
                kind: LARGE_KIND,
                map_size,
                map_align,
                user_offset: offset,
                large_links: crate::list::Links::new(),
                link_key: 0,
                checks: null_mut(),
            });
            if P::CHECKED {
                check::large_allocated(base.add(offset));
            }
            let mut st = self.state.lock();
            if P::CHECKED {
                check::large_mapped(self.check_state(), region_base(base.add(offset)).addr());
            }
            st.large.push_back(hdr);
        }
        self.stats.large_allocs.fetch_add(1, Relaxed);
        // SAFETY: offset < total.
        unsafe { base.add(offset) }
    }

    /// A cached mapping aligned to `map_align` of at least `total` bytes (and at most twice that
    /// or [`LARGE_REUSE_SLACK`], so a small block does not pin a big mapping), taken out of the
    /// cache; null if none fits.
    fn reuse_large(&self, total: usize, map_align: usize) -> *mut RegionHeader {
        let mut st = self.state.lock();
        if total > st.limits.large_cache_block {
            return null_mut();
        }
        let fits = |h: *mut RegionHeader| {
            // SAFETY: cached headers are live mappings owned by the heap under its lock.
            let (size, align) = unsafe { ((*h).map_size, (*h).map_align) };
            // FAULT fault-large-reuse-page-short (large cache): a mapping up to a page short fits.
            let need = if cfg!(feature = "fault-large-reuse-page-short") { total - PAGE } else { total };
            align == map_align && size >= need && size <= (2 * total).max(LARGE_REUSE_SLACK)
        };
        let mut h = st.large_cache.head();
        // SAFETY: as in `fits`.
        unsafe {
            while !h.is_null() && !fits(h) {
                h = st.large_cache.next(h);
            }
            if !h.is_null() {
                st.large_cache.remove(h);
                st.large_cached_bytes -= (*h).map_size;
            }
        }
        h
    }

    /// The header of the large block whose client pointer is `p`.
    ///
    /// # Safety
    /// `p` must be a live large block of this heap.
    pub(crate) unsafe fn find_large(&self, p: *mut u8) -> *mut RegionHeader {
        if region_offset(p) != 0 {
            return region_base(p).cast();
        }
        let h = self.large_header(p);
        assert!(!h.is_null(), "hakmem: free of {p:p}, which is no block of this heap");
        h
    }

    /// Unmaps the large block `p`, or keeps its mapping for reuse when it is small enough.
    ///
    /// # Safety
    /// `p` must be a live large block of this heap; it is dead afterwards.
    pub(crate) unsafe fn free_large(&self, p: *mut u8) {
        // SAFETY: forwarded; after unlinking the mapping is ours alone.
        unsafe {
            let h = self.find_large(p);
            // FAULT fault-spares-before-heap-lock (failure 11): a mapping too big for the cache
            // takes the spares' lock first, then the heap lock; everywhere else the heap lock
            // comes first (purging gives regions to the spares under it).
            #[cfg(feature = "fault-spares-before-heap-lock")]
            if (*h).map_size > self.state.lock().limits.large_cache_block {
                let mut spares = self.spares.lock();
                let mut st = self.state.lock();
                st.large.remove(h);
                if P::CHECKED {
                    check::large_unmapped(self.check_state(), region_base(p).addr());
                }
                drop(st);
                return Self::give_back_large(h, &self.stats, &mut spares, false);
            }
            let mut st = self.state.lock();
            st.large.remove(h);
            if P::CHECKED {
                check::large_unmapped(self.check_state(), region_base(p).addr());
            }
            let size = (*h).map_size;
            if size > st.limits.large_cache_block || size > st.limits.large_cache_bytes {
                drop(st);
                return Self::give_back_large(h, &self.stats, &mut self.spares.lock(), false);
            }
            // The least recently cached mappings make room (unmapped once the lock is dropped):
            // a full cache that turned every newcomer away kept serving none of the sizes a
            // workload had moved on to.
            let mut evicted = List::<RegionHeader, LargeRegions>::new();
            while st.large_cached_bytes + size > st.limits.large_cache_bytes || st.large_cache.len() >= st.limits.large_cache_count.max(1) {
                let old = st.large_cache.pop_back();
                st.large_cached_bytes -= (*old).map_size;
                evicted.push_back(old);
            }
            crate::asan::large_freed(h.cast(), size, p);
            st.large_cache.push_front(h);
            st.large_cached_bytes += size;
            drop(st);
            Self::unmap_list(&mut evicted, &self.stats, &mut self.spares.lock(), true);
        }
    }

    /// The header of the large block that starts exactly at `p`, or null: a search of the large
    /// list, for checked mode's validation of arbitrary pointers.
    pub(crate) fn large_header(&self, p: *mut u8) -> *mut RegionHeader {
        let st = self.state.lock();
        let mut h = st.large.head();
        // SAFETY: every node of the large list is a live header.
        unsafe {
            while !h.is_null() && h.cast::<u8>().add((*h).user_offset) != p {
                h = st.large.next(h);
            }
        }
        h
    }

    /// Tries to make the large block `p` hold `new_size` bytes without moving it.
    ///
    /// # Safety
    /// `p` must be a live large block of this heap.
    pub(crate) unsafe fn grow_large(&self, p: *mut u8, new_size: usize) -> bool {
        // SAFETY: forwarded; the header belongs to whoever owns the block.
        unsafe {
            let h = self.find_large(p);
            let Some(total) = (*h).user_offset.checked_add(new_size).and_then(|n| round_up(n, PAGE)) else {
                return false;
            };
            // FAULT fault-grow-large-page-short (realloc in place): growth by up to a page is
            // taken to fit without mapping anything.
            let have = if cfg!(feature = "fault-grow-large-page-short") { (*h).map_size + PAGE } else { (*h).map_size };
            if total <= have {
                return true;
            }
            if !self.state.lock().limits.grow_mappings || !os::grow_in_place(h.cast(), (*h).map_size, total) {
                return false;
            }
            let grown = total - (*h).map_size;
            let now = self.stats.mapped.fetch_add(grown, Relaxed) + grown;
            self.stats.peak_mapped.fetch_max(now, Relaxed);
            (*h).map_size = total;
            true
        }
    }
}

/// Gives a checked region's shadow map (from [`check::region_released`] or
/// [`check::region_dropped`], which zeroed it; null if it had none) back to the OS or the spares.
///
/// # Safety
/// `shadow` is a zeroed shadow mapping nothing uses any more.
unsafe fn give_back_shadow(shadow: *mut u8, spares: &mut os::Spares) {
    if shadow.is_null() {
        return;
    }
    // SAFETY: per the contract.
    unsafe {
        if spares.keeps(check::SHADOW_BYTES) {
            spares.keep(shadow, check::SHADOW_BYTES, PAGE);
        } else {
            os::unmap(shadow, check::SHADOW_BYTES, PAGE);
        }
    }
}

impl<P: Policy> Drop for Heap<P> {
    fn drop(&mut self) {
        debug_assert_eq!(self.stats.caches.load(Relaxed), 0, "heap dropped with live caches");
        // Under Miri this sweep made each checked unit test take minutes (CI's Miri job went from
        // 10 to 24 minutes); tests that need it call verify_free_slots themselves.
        if !cfg!(miri) {
            self.verify_free_slots();
        }
        let st = self.state.get_mut();
        // SAFETY: no cache is left (they borrow the heap), so every mapping is unused; each is
        // unmapped once, after being unlinked from its list.
        unsafe {
            loop {
                let r = st.regions.pop_front();
                if r.is_null() {
                    break;
                }
                if P::CHECKED {
                    let shadow = check::region_dropped(r);
                    if !shadow.is_null() {
                        os::unmap(shadow, check::SHADOW_BYTES, PAGE);
                    }
                }
                crate::region::mark_mapping(r.cast(), REGION_SIZE, Span::Foreign);
                os::unmap(r.cast(), REGION_SIZE, REGION_SIZE);
            }
            // With no room left for spares, giving back is unmapping.
            let spares = self.spares.get_mut();
            spares.set_limit(0);
            Self::unmap_large(st, &self.stats, spares);
            for list in [&mut st.arena_chunks, &mut st.batch_chunks] {
                while !list.is_null() {
                    let c = *list;
                    *list = c.cast::<*mut u8>().read();
                    os::unmap(c, ARENA_CHUNK, PAGE);
                }
            }
            let cs = *self.checks.get_mut();
            if !cs.is_null() {
                check::destroy_state(cs);
            }
        }
    }
}
