//! The whole-heap consistency sweep, [`Heap::verify`]: every slab in exactly one place and in the
//! state that place says, every free list and remote queue well formed and accounted for, the
//! heap's counters true, and, in checked heaps, the shadow map agreeing with the lists.
//!
//! The per-operation checks look only at what an operation touches, so a slot lost from every
//! list or a slab that sits in no cache's lists shows, if at all, far from the step that caused
//! it. The fuzz harness runs this sweep every few steps and at the end of each program instead.
//! It reads every list of the heap, caches' private ones included, so nothing may run on the
//! heap meanwhile; it allocates its bookkeeping through the global allocator.

use crate::batch::Batch;
use crate::cache::CacheInner;
use crate::check;
use crate::heap::{Heap, State, ARENA_CHUNK, BATCHES_PER_CHUNK, CACHE_SLOT};
use crate::layout::{region_base, region_offset, BasePtr, SLABS_PER_REGION, UNIT_MASK};
use crate::region::whole_spans;
use crate::list::List;
use crate::policy::Policy;
use crate::region::{SmallRegion, LARGE_KIND, SMALL_HEADER, SMALL_KIND};
use crate::report::{Report, ReportKind};
use crate::size_class::{CLASS_SIZES, NUM_CLASSES};
use crate::slab::{Slab, SlabState, NO_OWNER};
use std::collections::{HashMap, HashSet};

/// Where the sweep found a slab.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Place {
    /// In a cache (by token and id): its current slab of a class, or one of its others.
    Cache { token: usize, id: u32, class: usize },
    /// On the heap's abandoned list of a class.
    Abandoned { class: usize },
}

/// The sweep's findings.
struct Sweep {
    reports: Vec<Report>,
}

impl Sweep {
    /// An invariant report about `addr`, in `slab` of `region` if known.
    fn bad(&mut self, addr: usize, at: Option<(*mut SmallRegion, usize)>, class: Option<usize>, detail: &'static str, expected: u64, found: u64) {
        let mut r = Report::new(ReportKind::Invariant, addr, 0);
        r.detail = detail;
        r.expected = expected;
        r.found = found;
        r.class = class;
        r.class_size = class.map(|c| CLASS_SIZES[c]);
        if let Some((region, slab)) = at {
            r.region = Some(region.addr());
            r.slab = Some(slab);
        }
        self.reports.push(r);
    }
}

/// A slab's slots on one list (free list or remote queue), walked with every link checked to
/// name a carved slot of the slab before it is followed. Returns how many (pushing them onto
/// `out` if given), or None after a report.
///
/// # Safety
/// `first` heads a list of `slab` (slab `i` of the live region `r`, policy `P`) that nothing
/// changes meanwhile.
unsafe fn walk<P: Policy>(sw: &mut Sweep, r: *mut SmallRegion, i: usize, slab: *mut Slab, first: Option<BasePtr>, what: &'static str, mut out: Option<&mut Vec<BasePtr>>) -> Option<usize> {
    // SAFETY: per the contract; every slot is checked to lie in the slab before its link is read.
    unsafe {
        let local = &(*slab).local;
        let (start, _) = SmallRegion::slab_span(r, i);
        let size = local.slot_size as usize;
        let carved = (local.bump.addr() - start.addr()) / size.max(1);
        let mut n = 0;
        let mut cur = first;
        while let Some(b) = cur {
            let a = b.as_ptr().addr();
            if a < start.addr() || a >= local.bump.addr() || (a - start.addr()) % size != 0 {
                sw.bad(a, Some((r, i)), Some(local.class as usize), what, 0, a as u64);
                return None;
            }
            if n == carved {
                sw.bad(a, Some((r, i)), Some(local.class as usize), "a slab's list is longer than its carved slots (a cycle?)", carved as u64, carved as u64 + 1);
                return None;
            }
            n += 1;
            if let Some(out) = out.as_deref_mut() {
                out.push(b);
            }
            cur = b.link::<P>();
        }
        Some(n)
    }
}

impl<P: Policy> Heap<P> {
    /// Checks the whole heap's structure and returns what is wrong, as `Invariant` reports
    /// (none for a sound heap): each slab pooled, owned by exactly one live cache that lists it
    /// under its class, or abandoned under its class; each free list and remote queue made of
    /// carved slots of its slab, without cycles; each slab's count of handed-out slots equal to
    /// its carved slots minus its free ones; the pool's counters true. `live_in(start, end)`,
    /// if given, says how many blocks the caller holds in `[start, end)`: then every slot
    /// handed out must be one of them, queued, or pending in a cache (a slot in no list and
    /// not live is lost). Checked heaps, with `shadow`: each slot's shadow state agrees with the
    /// list it is on, and the shadow's counts with the slab's (a pass over every carved slot's
    /// entry, so the costliest part: the fuzz harness does it at the end of each program).
    ///
    /// # Safety
    /// Nothing may use the heap (no cache, on any thread) during the call.
    pub unsafe fn verify(&self, live_in: Option<&dyn Fn(usize, usize) -> usize>, shadow: bool) -> Vec<Report> {
        let mut sw = Sweep { reports: Vec::new() };
        let st = self.state.lock();
        // SAFETY: per the contract, nothing changes the lists while they are read.
        unsafe {
            let (places, pending) = self.caches_and_abandoned(&st, &mut sw);
            self.regions(&st, &places, &pending, live_in, shadow, &mut sw);
            large(&st, &mut sw);
        }
        sw.reports
    }

    /// Where every slab that a live cache or the abandoned lists hold is, checking each holds it
    /// in the state it should, and pending chains.
    ///
    /// # Safety
    /// As for [`Heap::verify`].
    unsafe fn caches_and_abandoned(&self, st: &State, sw: &mut Sweep) -> (HashMap<usize, Place>, HashMap<usize, u32>) {
        let mut places: HashMap<usize, Place> = HashMap::new();
        let mut pending: HashMap<usize, u32> = HashMap::new();
        fn place(places: &mut HashMap<usize, Place>, sw: &mut Sweep, s: *mut Slab, p: Place) {
            if let Some(&q) = places.get(&s.addr()) {
                let class = match q {
                    Place::Cache { class, .. } | Place::Abandoned { class } => class,
                };
                sw.bad(s.addr(), None, Some(class), "a slab is in two places (two caches' lists, or a cache's and the abandoned list)", 1, 2);
                return;
            }
            places.insert(s.addr(), p);
        }
        // SAFETY: per the contract.
        unsafe {
            let regions: HashSet<usize> = nodes(&st.regions).into_iter().map(|r| r.addr()).collect();
            // Slots named by batches (a slot in two of them, or twice in one, is in two places),
            // and batches held: by the caches and the heap's pool, every batch of the chunks.
            let mut named = HashSet::new();
            let mut batches = st.batches.len();
            for c in live_caches::<P>(st) {
                let h = (*c).holdings();
                let token = (*c).token();
                let e = &(*h.empty).local;
                if e.free.is_some() || e.used != 0 || e.bump != e.end {
                    sw.bad(h.empty.addr(), None, None, "a cache's empty slab holds slots (its memory was overwritten?)", 0, e.used as u64);
                }
                for class in 0..NUM_CLASSES {
                    let mut visit = |sw: &mut Sweep, s: *mut Slab| {
                        let l = &(*s).local;
                        if l.state != SlabState::Owned || (*s).owner_token() != token || l.class as usize != class {
                            sw.bad(s.addr(), None, Some(class), "a slab in a cache's list of a class is not owned by that cache for that class", class as u64, l.class as u64);
                        }
                        place(&mut places, sw, s, Place::Cache { token, id: h.id, class });
                    };
                    if h.bins[class] != h.empty {
                        visit(sw, h.bins[class]);
                    }
                    for s in nodes(&h.others[class]) {
                        if s == h.bins[class] {
                            sw.bad(s.addr(), None, Some(class), "a cache's current slab is also in its list of other slabs", 1, 2);
                            continue;
                        }
                        visit(sw, s);
                    }
                }
                // The outbox's batches and the inbox's chain of them: slots given up, on their
                // way to their slabs.
                batches += h.stash;
                for &b in h.outbox.iter().filter(|b| !b.is_null()) {
                    batches += 1;
                    batch_slots(&regions, sw, b, &mut named, &mut pending);
                }
                let mut b = h.inbox;
                let mut seen = HashSet::new();
                while !b.is_null() {
                    if !seen.insert(b.addr()) {
                        sw.bad(b.addr(), None, None, "a cache's inbox of batches loops", 0, b.addr() as u64);
                        break;
                    }
                    batches += 1;
                    batch_slots(&regions, sw, b, &mut named, &mut pending);
                    b = (*b).next();
                }
            }
            let mut chunks = 0;
            let mut c = st.batch_chunks;
            while !c.is_null() {
                chunks += 1;
                c = c.cast::<*mut u8>().read();
            }
            let all = chunks * BATCHES_PER_CHUNK;
            if batches != all {
                sw.bad(st.batch_chunks.addr(), None, None, "batches of remote frees were lost (or counted twice): the caches and the heap hold a different number than were made", all as u64, batches as u64);
            }
            for (class, list) in st.abandoned.iter().enumerate() {
                for s in nodes(list) {
                    let l = &(*s).local;
                    if l.state != SlabState::Abandoned || (*s).owner_token() != NO_OWNER || l.class as usize != class {
                        sw.bad(s.addr(), None, Some(class), "a slab on the abandoned list of a class is not an abandoned slab of that class", class as u64, l.class as u64);
                    }
                    place(&mut places, sw, s, Place::Abandoned { class });
                }
            }
        }
        (places, pending)
    }

    /// Every small region's slabs against the places found, their lists, counts and shadow.
    ///
    /// # Safety
    /// As for [`Heap::verify`].
    unsafe fn regions(&self, st: &State, places: &HashMap<usize, Place>, pending: &HashMap<usize, u32>, live_in: Option<&dyn Fn(usize, usize) -> usize>, shadow: bool, sw: &mut Sweep) {
        let (mut empty, mut dirty_pooled) = (0, 0);
        // SAFETY: per the contract.
        unsafe {
            for r in nodes(&st.regions) {
                if (*r).hdr.kind != SMALL_KIND {
                    sw.bad(r.addr(), None, None, "a small region's header is not a small region's", SMALL_KIND, (*r).hdr.kind);
                    continue;
                }
                let pooled = (*r).pooled;
                let full = (*r).full;
                let spans = SmallRegion::is_span_region(r);
                empty += (pooled == full) as usize;
                dirty_pooled += (pooled & (*r).dirty).count_ones() as usize;
                let cut = if spans { ((*r).unit_mask, whole_spans(st.full_mask)) } else { (UNIT_MASK, st.full_mask) };
                if cut != ((*r).unit_mask, full) || (spans && !crate::heap::cuts_spans(st.full_mask)) {
                    sw.bad(r.addr(), None, None, "a region's cut (units per slab, units used) is not one the heap makes", cut.1, full);
                }
                if pooled & !full != 0 {
                    sw.bad(r.addr(), None, None, "a region pools slabs it does not use", full, pooled);
                }
                for i in 0..SLABS_PER_REGION {
                    let s = (&raw mut (*r).slabs).cast::<Slab>().add(i);
                    let at = Some((r, i));
                    let l = &(*s).local;
                    let found = places.get(&s.addr()).copied();
                    let head = i & (*r).unit_mask;
                    if head != i {
                        // A span's other unit: pooled with its first or not at all, and its
                        // metadata never used.
                        if (pooled >> i) & 1 != (pooled >> head) & 1 {
                            sw.bad(s.addr(), at, None, "a span's units are not pooled together", (pooled >> head) & 1, (pooled >> i) & 1);
                        }
                        if l.state != SlabState::Pool || (*s).owner_token() != NO_OWNER || !(*s).remote.is_empty() || found.is_some() || !l.bump.is_null() {
                            sw.bad(s.addr(), at, Some(l.class as usize), "a span's unit other than its first is used as a slab", SlabState::Pool as u64, l.state as u64);
                        }
                        continue;
                    }
                    if pooled & (1 << i) != 0 || full & (1 << i) == 0 {
                        if l.state != SlabState::Pool || (*s).owner_token() != NO_OWNER || !(*s).remote.is_empty() || found.is_some() {
                            sw.bad(s.addr(), at, Some(l.class as usize), "a pooled slab is owned, abandoned, listed or queued to", SlabState::Pool as u64, l.state as u64);
                        }
                        continue;
                    }
                    match (l.state, found) {
                        (SlabState::Owned, Some(Place::Cache { .. })) | (SlabState::Abandoned, Some(Place::Abandoned { .. })) => {}
                        (SlabState::Pool, _) => sw.bad(s.addr(), at, Some(l.class as usize), "a slab out of the pool is marked pooled", SlabState::Owned as u64, l.state as u64),
                        _ => sw.bad(s.addr(), at, Some(l.class as usize), "a slab out of the pool is in no live cache's lists nor the abandoned ones", 1, 0),
                    }
                    self.slab(r, i, s, pending.get(&s.addr()).copied().unwrap_or(0), live_in, shadow, sw);
                }
            }
            let avail = nodes(&st.avail);
            for &r in &avail {
                if (*r).pooled == 0 {
                    sw.bad(r.addr(), None, None, "a region with no pooled slab is on the list of regions with room", 1, 0);
                }
            }
            let with_room = nodes(&st.regions).iter().filter(|&&r| (*r).pooled != 0).count();
            if with_room != avail.len() {
                sw.bad(0, None, None, "the list of regions with pooled slabs misses some (or holds others)", with_room as u64, avail.len() as u64);
            }
        }
        if empty != st.empty_regions {
            sw.bad(0, None, None, "the heap's count of empty regions is wrong", empty as u64, st.empty_regions as u64);
        }
        if dirty_pooled != st.dirty_pooled {
            sw.bad(0, None, None, "the heap's count of dirty pooled slabs is wrong", dirty_pooled as u64, st.dirty_pooled as u64);
        }
    }

    /// One slab out of the pool: geometry, lists, counts against `pending` slots in caches'
    /// chains and the caller's live blocks, and the shadow map.
    ///
    /// # Safety
    /// As for [`Heap::verify`]; `s` is slab `i` of the live region `r`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn slab(&self, r: *mut SmallRegion, i: usize, s: *mut Slab, pending: u32, live_in: Option<&dyn Fn(usize, usize) -> usize>, shadow: bool, sw: &mut Sweep) {
        // SAFETY: per the contract.
        unsafe {
            let at = Some((r, i));
            let l = &(*s).local;
            let class = l.class as usize;
            let (start, limit) = SmallRegion::slab_span(r, i);
            if class >= NUM_CLASSES || CLASS_SIZES[class] != l.slot_size as usize {
                return sw.bad(s.addr(), at, None, "a slab's class and slot size disagree", 0, l.slot_size as u64);
            }
            let size = l.slot_size as usize;
            if l.bump < start || l.bump > l.end || l.end > limit || (l.end.addr() - start.addr()) % size != 0 {
                return sw.bad(s.addr(), at, Some(class), "a slab's carved or whole-slot bounds lie outside it", limit.addr() as u64, l.end.addr() as u64);
            }
            let carved = (l.bump.addr() - start.addr()) / size;
            let keep = P::CHECKED && shadow;
            let (mut free, mut queued) = (Vec::new(), Vec::new());
            let what = "a free-list link names no carved slot of its slab";
            let Some(nfree) = walk::<P>(sw, r, i, s, l.free, what, keep.then_some(&mut free)) else { return };
            let what = "a remote-queue link names no carved slot of its slab";
            let Some(nqueued) = walk::<P>(sw, r, i, s, (*s).remote.peek(), what, keep.then_some(&mut queued)) else { return };
            if l.used as usize + nfree != carved {
                return sw.bad(s.addr(), at, Some(class), "a slab's count of handed-out slots is not its carved slots minus its free ones", (carved - nfree.min(carved)) as u64, l.used as u64);
            }
            let handed = (l.used as usize).checked_sub(nqueued + pending as usize);
            if let Some(live_in) = live_in {
                let live = live_in(start.addr(), limit.addr());
                if handed != Some(live) {
                    sw.bad(s.addr(), at, Some(class), "slots handed out are neither live, queued nor pending (lost), or live blocks are counted free", live as u64, handed.map_or(u64::MAX, |h| h as u64));
                }
            } else if handed.is_none() {
                sw.bad(s.addr(), at, Some(class), "a slab has more slots queued and pending than handed out", l.used as u64, (nqueued + pending as usize) as u64);
            }
            if keep {
                self.shadow(r, i, class, carved, &free, &queued, handed, sw);
            }
        }
    }

    /// Checked heaps: the shadow map of one slab against its lists and counts.
    ///
    /// # Safety
    /// As for [`Heap::slab`]; the lists were walked from that slab.
    #[allow(clippy::too_many_arguments)]
    unsafe fn shadow(&self, r: *mut SmallRegion, i: usize, class: usize, carved: usize, free: &[BasePtr], queued: &[BasePtr], handed: Option<usize>, sw: &mut Sweep) {
        // SAFETY: per the contract.
        unsafe {
            let at = Some((r, i));
            let (geometry, shadow_carved) = check::slab_shadow(r, i);
            if geometry != Some((class, CLASS_SIZES[class])) || shadow_carved != carved {
                let g = geometry.map_or(0, |(c, _)| c as u64);
                return sw.bad(r.addr(), at, Some(class), "the shadow map's class or carved count of a slab is not the slab's", class as u64, g);
            }
            let (start, _) = SmallRegion::slab_span(r, i);
            let slot = |b: BasePtr| (b.as_ptr().addr() - start.addr()) / CLASS_SIZES[class];
            for (list, want, what) in [(free, check::FREE, "a slot on a free list is not free in the shadow map"), (queued, check::REMOTE, "a slot on a remote queue is not queued in the shadow map")] {
                for &b in list {
                    let s = check::slot_state(r, i, slot(b));
                    if s != want {
                        sw.bad(b.as_ptr().addr(), at, Some(class), what, want, s);
                    }
                }
            }
            let mut count = [0usize; 5];
            for k in 0..carved {
                count[(check::slot_state(r, i, k) as usize).min(4)] += 1;
            }
            if count[check::FREE as usize] != free.len() {
                sw.bad(start.addr(), at, Some(class), "the shadow map's free slots of a slab are not those on its free list", free.len() as u64, count[check::FREE as usize] as u64);
            }
            if let Some(h) = handed {
                if count[check::ALLOCATED as usize] != h {
                    sw.bad(start.addr(), at, Some(class), "the shadow map's allocated slots of a slab are not those handed out and not queued", h as u64, count[check::ALLOCATED as usize] as u64);
                }
            }
        }
    }
}

/// The heap's large lists: headers intact, the cache's byte count true.
///
/// # Safety
/// As for [`Heap::verify`].
unsafe fn large(st: &State, sw: &mut Sweep) {
    // SAFETY: per the contract.
    unsafe {
        for h in nodes(&st.large).into_iter().chain(nodes(&st.large_cache)) {
            if (*h).kind != LARGE_KIND {
                sw.bad(h.addr(), None, None, "a large block's header is not a large block's", LARGE_KIND, (*h).kind);
            }
        }
        let cached: usize = nodes(&st.large_cache).iter().map(|&h| (*h).map_size).sum();
        if cached != st.large_cached_bytes {
            sw.bad(0, None, None, "the large cache's byte count is wrong", cached as u64, st.large_cached_bytes as u64);
        }
    }
}

/// The nodes of a list, in order.
///
/// # Safety
/// The list's nodes are live.
unsafe fn nodes<T, A: crate::list::Adapter<T>>(l: &List<T, A>) -> Vec<*mut T> {
    let mut v = Vec::with_capacity(l.len());
    let mut n = l.head();
    while !n.is_null() && v.len() <= l.len() {
        v.push(n);
        // SAFETY: per the contract.
        n = unsafe { l.next(n) };
    }
    v
}

/// Counts, per slab, the slots a batch of remote frees names into `pending`, given the addresses
/// of the heap's small `regions`; reports a batch that names no slot of them, or a slot that
/// another batch (or this one) already named (`named`).
///
/// # Safety
/// As for [`Heap::verify`]; `b` is a batch of the heap.
unsafe fn batch_slots(regions: &HashSet<usize>, sw: &mut Sweep, b: *const Batch, named: &mut HashSet<usize>, pending: &mut HashMap<usize, u32>) {
    // SAFETY: per the contract.
    for &p in unsafe { (*b).slots() } {
        if !regions.contains(&region_base(p).addr()) || region_offset(p) < SMALL_HEADER || !named.insert(p.addr()) {
            sw.bad(p.addr(), None, None, "a batch of remote frees names no slot of the heap's regions, or a slot named already", 0, p.addr() as u64);
            continue;
        }
        // SAFETY: a slot of a live small region of the heap.
        let slab = unsafe { SmallRegion::slab_of(region_base(p).cast(), p) };
        *pending.entry(slab.addr()).or_insert(0) += 1;
    }
}

/// The caches alive in the heap's arena: every slot but each chunk's first (the chunk list)
/// and those on the free list.
///
/// # Safety
/// The heap lock is held (`st`), so no cache is made or destroyed meanwhile.
unsafe fn live_caches<P: Policy>(st: &State) -> Vec<*mut CacheInner<P>> {
    let mut free = std::collections::HashSet::new();
    let mut f = st.arena_free;
    // SAFETY: free arena slots hold the next free slot in their first word.
    unsafe {
        while !f.is_null() {
            free.insert(f.addr());
            f = f.cast::<*mut u8>().read();
        }
        let mut out = Vec::new();
        let mut c = st.arena_chunks;
        while !c.is_null() {
            for i in 1..ARENA_CHUNK / CACHE_SLOT {
                let slot = c.add(i * CACHE_SLOT);
                if !free.contains(&slot.addr()) {
                    out.push(slot.cast());
                }
            }
            c = c.cast::<*mut u8>().read();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::cache::locate;
    use crate::region::Block;
    use crate::{Checked, Heap, Policy, Release};

    /// Live blocks of a test, for `verify`'s count of them per slab.
    fn counter(live: &[*mut u8]) -> impl Fn(usize, usize) -> usize + '_ {
        move |a, b| live.iter().filter(|p| (a..b).contains(&p.addr())).count()
    }

    fn busy<P: Policy>() {
        let heap: Heap<P> = Heap::new();
        let mut a = heap.cache();
        let mut b = heap.cache();
        let mut live: Vec<*mut u8> = (0..60).map(|i| a.alloc(8 + i * 37, 8)).collect();
        live.push(a.alloc(100_000, 8));
        for p in live.drain(..30) {
            unsafe { b.free(p) };
        }
        let c = heap.cache();
        drop(c);
        // SAFETY: no cache is in use during the sweep.
        assert_eq!(unsafe { heap.verify(Some(&counter(&live)), true) }, vec![]);
        drop(a); // its slabs with live blocks are abandoned
        assert_eq!(unsafe { heap.verify(Some(&counter(&live)), true) }, vec![]);
        for p in live.drain(..) {
            unsafe { b.free(p) };
        }
        drop(b);
        assert_eq!(unsafe { heap.verify(Some(&counter(&live)), true) }, vec![]);
    }

    #[test]
    fn a_sound_heap_verifies_clean() {
        busy::<Release>();
        busy::<Checked>();
    }

    #[test]
    fn damaged_batches_of_remote_frees_are_reported() {
        let heap: Heap = Heap::new();
        let mut a = heap.cache();
        let mut b = heap.cache();
        let (p, q) = (a.alloc(64, 8), a.alloc(64, 8));
        unsafe {
            b.free(p);
            b.free(q);
        }
        let batch = b.inner().holdings().outbox.into_iter().find(|b| !b.is_null()).unwrap().cast_mut();
        // b's outbox holds a batch naming p and q. Planted bug: it names p twice.
        unsafe { (*batch).set_slot(1, p) };
        let r = unsafe { heap.verify(Some(&counter(&[])), true) };
        assert!(r.iter().any(|r| r.detail.contains("or a slot named already")), "{r:#?}");
        unsafe { (*batch).set_slot(1, q) };
        assert_eq!(unsafe { heap.verify(Some(&counter(&[])), true) }, vec![], "mended");
        // Sent: a's inbox holds the batch. Planted bug: it links to itself, a loop.
        b.flush();
        assert_eq!(a.inner().holdings().inbox, batch.cast_const());
        unsafe { (*batch).set_next(batch) };
        let r = unsafe { heap.verify(Some(&counter(&[])), true) };
        assert!(r.iter().any(|r| r.detail.contains("inbox of batches loops")), "{r:#?}");
        unsafe { (*batch).set_next(core::ptr::null_mut()) };
        assert_eq!(unsafe { heap.verify(Some(&counter(&[])), true) }, vec![], "mended");
        drop(b);
        drop(a);
        assert_eq!(unsafe { heap.verify(Some(&counter(&[])), true) }, vec![]);
    }

    #[test]
    fn a_damaged_span_region_is_reported() {
        use crate::region::SmallRegion;
        let heap: Heap = Heap::new();
        let mut c = heap.cache();
        // A class above 4 KiB: its slab is a span of a span region.
        let p = c.alloc(8000, 8);
        let r = crate::layout::region_base(p).cast::<SmallRegion>();
        let live = [p];
        unsafe {
            assert!(SmallRegion::is_span_region(r));
            let head = crate::layout::slab_index(p) & (*r).unit_mask;
            assert_eq!(heap.verify(Some(&counter(&live)), true), vec![], "intact");
            // Planted bug: the span's second unit pooled while its first is handed out.
            (*r).pooled |= 1 << (head + 1);
            let found = heap.verify(Some(&counter(&live)), true);
            assert!(found.iter().any(|x| x.detail.contains("not pooled together")), "{found:#?}");
            (*r).pooled &= !(1 << (head + 1));
            // Planted bug: the second unit's metadata used as a slab of its own.
            let other = (&raw mut (*r).slabs).cast::<crate::slab::Slab>().add(head + 1);
            (*other).local.bump = p;
            let found = heap.verify(Some(&counter(&live)), true);
            assert!(found.iter().any(|x| x.detail.contains("other than its first is used")), "{found:#?}");
            (*other).local.bump = core::ptr::null_mut();
            // Planted bug: the region's cut no longer the heap's.
            let full = (*r).full;
            (*r).full = full & !(1 << head);
            let found = heap.verify(Some(&counter(&live)), true);
            assert!(found.iter().any(|x| x.detail.contains("a region's cut")), "{found:#?}");
            (*r).full = full;
            assert_eq!(heap.verify(Some(&counter(&live)), true), vec![], "mended");
            c.free(p);
        }
    }

    #[test]
    fn a_lost_slot_and_an_unlisted_slab_are_reported() {
        let heap: Heap = Heap::new();
        let mut c = heap.cache();
        let p = c.alloc(64, 8);
        let q = c.alloc(64, 8);
        let Block::Small(slab, _) = (unsafe { locate::<Release, false>(p) }) else { unreachable!() };
        // As if q had been lost (failure 6): handed out, on no list, and not one the caller holds.
        let live = [p];
        let r = unsafe { heap.verify(Some(&counter(&live)), true) };
        assert_eq!(r.len(), 1, "{r:#?}");
        assert!(r[0].detail.contains("lost"), "{}", r[0]);
        unsafe { c.free(p) };
        // Planted bug (failure 8/9): the cache forgets its current slab of the class.
        let class = unsafe { (*slab).local.class } as usize;
        let saved = c.inner_for_tests().forget_bin(class);
        let r = unsafe { heap.verify(Some(&counter(&[q])), true) };
        assert!(r.iter().any(|r| r.detail.contains("in no live cache's lists")), "{r:#?}");
        // (A new borrow: the sweep read the cache meanwhile, which ends the first one.)
        c.inner_for_tests().restore_bin(class, saved);
        unsafe { c.free(q) };
        assert_eq!(unsafe { heap.verify(Some(&counter(&[])), true) }, vec![]);
    }
}
