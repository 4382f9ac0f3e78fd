//! Thread caches: the allocation and free fast paths.
//!
//! A cache owns slabs. Per class it has one current slab (`bins`) that malloc pops from, and a
//! list of its other slabs (`others`). A free of a slot whose slab this cache owns pushes it back
//! onto that slab's free list. So the fast paths are a pop and a push with no atomic operation,
//! and a slot lives in exactly one list.
//!
//! # Remote frees
//! A free of a slot another cache owns names the slot in this cache's batch for that owner (a
//! few owners at a time, by a hash of the owner) and writes nothing into the slot. A batch is
//! sent to its owner's inbox with one atomic operation when it holds
//! [`Limits::pending_max`] slots, when another owner needs its place (less than half full, its
//! slots go to their slabs' own queues instead), and when the cache flushes or ends. The owner
//! takes its whole inbox with one swap in its slow path and puts each slot back on its slab's
//! free list, writing the link itself: the slot's line stays with the owner, which allocated it
//! and will hand it out again (see `batch` for why). So both sides pay
//! one atomic operation per batch, whatever the classes and slabs of its slots (snmalloc's
//! message queues, jemalloc's bulk tcache flush), and the empty batch stays with the owner for
//! its own remote frees. The freeing cache never hands such a slot out itself, as jemalloc's and
//! tcmalloc's thread caches do: two threads' live blocks would then share cache lines (the test
//! `a_cache_hands_out_only_its_own_slots_after_remote_frees` has the figures).
//!
//! A slot on its way stays the freeing cache's, then the inbox's, then the owner's: in exactly
//! one place. An owner is named by its address, read from the slab, so a batch may reach a
//! cache that no longer owns some of its slots (the slab was abandoned, or the cache ended and a
//! new one took its storage): the owner checks each slot's slab and forwards the slots it does
//! not own to their slab's own remote queue, which the heap or the slab's next owner drains. A
//! cache that ends closes its inbox first, and a batch for a closed inbox goes the same way; so
//! does a free into a slab no cache owns.
//!
//! [`Limits::pending_max`]: crate::Limits::pending_max
//!
//! A cache is an explicit handle: several can be driven from one OS thread in any order (the fuzz
//! harness replays multi-thread schedules that way), and one can be sent to another thread. The
//! global allocator keeps one per OS thread in TLS.

use crate::batch::{Batch, BatchList, BatchQueue, BATCH_SLOTS};
use crate::check;
use crate::heap::{Heap, CACHE_SLOT};
use crate::layout::{region_base, slot_needed, usable, user_offset, BasePtr, UserPtr};
use crate::list::List;
use crate::policy::{Policy, Release};
use crate::report::Identity;
use crate::guard::GUARD_KIND;
use crate::region::{Block, RegionHeader, SmallRegion, Span, SMALL_KIND};
use crate::size_class::{class_for, malloc_class, small_class, CLASS_SIZES, NUM_CLASSES, SMALL_MAX};
use crate::slab::{Slab, SlabLinks};
use core::marker::PhantomData;
use core::ptr::{self, null_mut, NonNull};
use crate::sync::Ordering::Relaxed;

/// Slabs of a class inspected for free room before asking the heap for another, bounding the
/// slow path when a cache holds many full slabs.
const SCAN_LIMIT: usize = 16;

/// The state behind a [`ThreadCache`], at a stable address inside the heap's arena; its address
/// is its owner token.
#[repr(C)]
pub struct CacheInner<P: Policy> {
    bins: [*mut Slab; NUM_CLASSES],
    /// The slab with no free slot that every empty bin points at, so the fast path needs no null
    /// check and a class's first use falls into the slow path (failure 8: a class used before its
    /// cache entry was set up).
    empty: *mut Slab,
    others: [List<Slab, SlabLinks>; NUM_CLASSES],
    /// Per class, one slab of `others` that became entirely free and was kept rather than given
    /// back (null: none): see [`CacheInner::retire`].
    spare: [*mut Slab; NUM_CLASSES],
    heap: *const Heap<P>,
    /// Names this cache in reports.
    id: u32,
    /// Operations this cache has done (checked mode numbers them for reports).
    seq: u64,
    /// Remote frees not yet sent, by owner (see the module docs).
    outbox: [Outbound; OUTBOX],
    /// Remote frees to one owner gathered before they are sent with one atomic operation (the
    /// heap's `Limits::pending_max` when the cache was made, at most a batch).
    pending_max: usize,
    /// Empty batches, for remote frees to owners the outbox has none for.
    stash: BatchList,
    /// This cache's slot in the heap's arena, whose inbox other caches send to: the address
    /// slabs name as their owner, with the provenance of the whole slot.
    slot: *mut CacheSlot<P>,
    /// Allocations left before the next one is guarded (see `Heap::set_guard_sample`); with
    /// sampling off, before the sample is looked at again.
    guard_left: u32,
}

/// Allocations between two looks at a heap's guard sample while it is off.
const GUARD_RECHECK: u32 = 1 << 16;

/// Owners whose remote frees a cache gathers at once: a consumer freeing what a few producers
/// allocated keeps a batch for each.
const OUTBOX: usize = 8;

/// Empty batches a cache takes from the heap at once, and gives back when it holds twice as
/// many: the heap's lock is taken once per this many batches (about 2000 remote frees), and a
/// stash holds at most 32 KiB.
///
/// Each trip to the heap moves its lock's line and its list's between cores, and more when the
/// cores do not share a cache. 16 rather than 4 leaves a round of xmalloc-like (2048 blocks each
/// way) within the stash: at 20M operations, xmalloc-like took the lock 4.8k times rather than
/// 63.5k, all-to-all 136 rather than 33.4k, prod-cons and xmalloc-4x4 19.8k rather than 79k
/// (there the batches flow one way, from the consumers to the producers, so through the heap).
const STASH_TAKE: usize = 16;

/// Remote frees to one owner not yet sent.
#[derive(Clone, Copy)]
struct Outbound {
    /// The owning cache's address. An unused entry names an address no cache has and that no
    /// slab names, not null, which is what a slab without an owner names: a free into one of
    /// those must not find a batch in an unused entry.
    owner: *mut u8,
    /// The slots (null for an unused entry).
    batch: *mut Batch,
}

impl Outbound {
    const EMPTY: Outbound = Outbound { owner: core::ptr::without_provenance_mut(usize::MAX), batch: null_mut() };
}

/// The outbox entry of the owner at `owner`: cache slots are [`CACHE_SLOT`] bytes apart.
#[inline(always)]
fn outbox_index(owner: usize) -> usize {
    (owner / CACHE_SLOT) % OUTBOX
}

/// A cache's slabs and pending remote frees, as [`CacheInner::holdings`] shows them.
pub(crate) struct Holdings<'a> {
    /// The current slab of each class (the empty slab where there is none).
    pub bins: &'a [*mut Slab; NUM_CLASSES],
    /// The other slabs of each class.
    pub others: &'a [List<Slab, SlabLinks>; NUM_CLASSES],
    /// The empty slab every empty bin points at (it must stay empty).
    pub empty: *mut Slab,
    /// The outbox's batches (null: none).
    pub outbox: [*const Batch; OUTBOX],
    /// The first batch in the inbox (a chain through `Batch::next` ending in null), or null.
    pub inbox: *const Batch,
    /// Empty batches held.
    pub stash: usize,
    /// The cache's id.
    pub id: u32,
}

/// What a cache occupies in the heap's arena. The empty slab sits beside the cache rather than
/// inside it: the fast path reaches it through `bins` while `&mut CacheInner` is live, which
/// would alias if it were a field (Miri's borrow checker rejects exactly that).
///
/// The inbox comes last and outlives the cache: remote frees may still be sent to it after the
/// cache ended (they read the owner from a slab before it changed hands), so it is closed, never
/// cleared, when the cache ends; it is never written but atomically; and the heap's
/// bookkeeping of free slots (the link in the first word, checked mode's zeroing) stops short of
/// it ([`CacheSlot::CLEARED`]).
#[repr(C)]
pub(crate) struct CacheSlot<P: Policy> {
    inner: CacheInner<P>,
    empty: Slab,
    inbox: BatchQueue,
}

impl<P: Policy> CacheSlot<P> {
    /// Bytes of a slot the heap may clear and check for zero: all but the inbox.
    const CLEARED: usize = core::mem::offset_of!(CacheSlot<P>, inbox);

    /// The inbox of the cache at `owner` (a slab's owner: the address of a cache slot of the
    /// heap, live or not).
    ///
    /// # Safety
    /// `owner` is a cache slot of a live heap.
    #[inline(always)]
    unsafe fn inbox<'a>(owner: *mut u8) -> &'a BatchQueue {
        // SAFETY: arena slots stay mapped while the heap lives; the inbox is only ever accessed
        // atomically.
        unsafe { &*(&raw const (*owner.cast::<CacheSlot<P>>()).inbox) }
    }
}

impl<P: Policy> CacheInner<P> {
    /// Creates a cache in the heap's arena; null if the OS refuses memory.
    pub(crate) fn create(heap: &Heap<P>) -> *mut CacheInner<P> {
        let slot = heap.alloc_cache_slot(CacheSlot::<P>::CLEARED).cast::<CacheSlot<P>>();
        if slot.is_null() {
            return null_mut();
        }
        // SAFETY: the arena slot is large enough, aligned, and ours.
        unsafe {
            let empty = &raw mut (*slot).empty;
            empty.write(Slab::unassigned());
            (&raw mut (*slot).inner).write(CacheInner {
                bins: [empty; NUM_CLASSES],
                empty,
                others: [const { List::new() }; NUM_CLASSES],
                spare: [null_mut(); NUM_CLASSES],
                heap,
                id: heap.new_cache_id(),
                seq: 0,
                outbox: [Outbound::EMPTY; OUTBOX],
                pending_max: (heap.pending_max() as usize).min(BATCH_SLOTS),
                stash: BatchList::new(),
                slot,
                guard_left: heap.guard_sample().max(1).min(GUARD_RECHECK),
            });
            (*slot).inbox.open();
            &raw mut (*slot).inner
        }
    }

    /// Gives every slab back (pooled if free, abandoned otherwise) and frees the storage.
    ///
    /// # Safety
    /// `this` came from `create` and is not used afterwards.
    pub(crate) unsafe fn destroy(this: *mut CacheInner<P>) {
        // SAFETY: forwarded; `inner` is the first field, so the slot starts at `this`.
        unsafe {
            (*this).release_slabs(true);
            (*(*this).heap).free_cache_slot(this.cast(), CacheSlot::<P>::CLEARED);
        }
    }

    /// The cache's address: what its slabs name as their owner.
    #[inline(always)]
    pub(crate) fn token(&self) -> usize {
        self as *const Self as usize
    }

    /// Test only: forgets the current slab of `class` (a planted bug); returns it.
    #[cfg(test)]
    pub(crate) fn forget_bin(&mut self, class: usize) -> *mut Slab {
        core::mem::replace(&mut self.bins[class], self.empty)
    }

    /// Test only: undoes [`CacheInner::forget_bin`].
    #[cfg(test)]
    pub(crate) fn restore_bin(&mut self, class: usize, slab: *mut Slab) {
        self.bins[class] = slab;
    }

    /// What the cache holds, for the consistency sweep: its current slab of each class (or the
    /// empty slab), its other slabs of each class, its empty slab, and its pending chain.
    pub(crate) fn holdings(&self) -> Holdings<'_> {
        Holdings {
            bins: &self.bins,
            others: &self.others,
            empty: self.empty,
            outbox: self.outbox.map(|o| o.batch.cast_const()),
            // SAFETY: the slot is this cache's; nothing takes from its inbox but the cache.
            inbox: unsafe { (*self.slot).inbox.peek() },
            stash: self.stash.len(),
            id: self.id,
        }
    }

    #[inline(always)]
    fn heap(&self) -> &Heap<P> {
        // SAFETY: the heap outlives its caches.
        unsafe { &*self.heap }
    }

    /// Who is doing this checked operation: this cache, and its next operation number.
    fn next_op(&mut self) -> Identity {
        self.seq += 1;
        Identity { seq: self.seq, thread: self.id }
    }

    #[inline(always)]
    fn empty_slab(&self) -> *mut Slab {
        self.empty
    }

    // ---- allocation ----------------------------------------------------------------------

    /// Allocates `size` bytes aligned to `align` (a power of two); null when out of memory.
    #[inline(always)]
    pub fn alloc(&mut self, size: usize, align: usize) -> *mut u8 {
        if size <= Self::SMALL_REQUEST && align <= 8 {
            self.alloc_class(small_class(slot_needed::<P>(size, align)), size, align)
        } else {
            self.alloc_generic(size, align, false)
        }
    }

    /// Allocates with malloc's guarantee of 16-byte alignment.
    #[inline(always)]
    pub fn malloc(&mut self, size: usize) -> *mut u8 {
        match self.malloc_fast(size) {
            Some(p) => p,
            None => self.malloc_slow(size),
        }
    }

    /// [`CacheInner::malloc`]'s fast path: a slot of the class's current slab, or None, with
    /// nothing changed, when anything else is needed ([`CacheInner::malloc_slow`] then). Apart,
    /// so that the C entry point can tail-call a slow path of its own.
    #[inline(always)]
    pub(crate) fn malloc_fast(&mut self, size: usize) -> Option<*mut u8> {
        // Every class above the 8-byte one is a multiple of 16 (asserted in size_class), so
        // keeping tiny requests out of that class is all 16-byte alignment takes.
        if size > Self::SMALL_REQUEST {
            return None;
        }
        self.alloc_fast(malloc_class(slot_needed::<P>(size, 16)), size, 16)
    }

    /// [`CacheInner::malloc`] when [`CacheInner::malloc_fast`] said None (just before).
    #[inline(never)]
    pub(crate) fn malloc_slow(&mut self, size: usize) -> *mut u8 {
        if size <= Self::SMALL_REQUEST {
            self.alloc_class_slow(malloc_class(slot_needed::<P>(size, 16)), size, 16)
        } else {
            self.alloc_generic(size, 16, false)
        }
    }

    /// Allocates zeroed memory, skipping the memset when the slot is fresh from the OS.
    pub fn alloc_zeroed(&mut self, size: usize, align: usize) -> *mut u8 {
        self.alloc_generic(size, align, true)
    }

    /// Largest request the fast paths serve from slabs (the rest is mapped on its own).
    const SMALL_REQUEST: usize = SMALL_MAX - P::HEADER - P::MIN_TAIL;

    #[inline(always)]
    fn alloc_class(&mut self, class: usize, size: usize, align: usize) -> *mut u8 {
        match self.alloc_fast(class, size, align) {
            Some(p) => p,
            None => self.alloc_class_slow(class, size, align),
        }
    }

    /// A slot of the current slab of `class` (this allocation counted down to the guard
    /// sample), or None when the sample is due (the countdown at 0) or the slab has no free slot:
    /// [`CacheInner::alloc_class_slow`] then.
    #[inline(always)]
    fn alloc_fast(&mut self, class: usize, size: usize, align: usize) -> Option<*mut u8> {
        self.guard_left -= 1;
        if self.guard_left == 0 {
            return None;
        }
        // SAFETY: bins always point at a slab this cache owns, or at `empty`, whose free list is
        // empty; `local` is only ever borrowed by the owner.
        unsafe {
            let slab = *self.bins.get_unchecked(class);
            let b = (*slab).local.pop::<P>()?;
            Some(self.hand_out(slab, b, size, align))
        }
    }

    /// [`CacheInner::alloc_class`] after its fast path said None (so counted down): the guard
    /// sample if due, else the current slab had no free slot and the class refills.
    #[inline(never)]
    fn alloc_class_slow(&mut self, class: usize, size: usize, align: usize) -> *mut u8 {
        if self.guard_left == 0 {
            return self.alloc_sampled(class, size, align);
        }
        self.alloc_refill(class, size, align)
    }

    /// [`CacheInner::alloc_class`] past the guard sample.
    #[inline(always)]
    fn alloc_unsampled(&mut self, class: usize, size: usize, align: usize) -> *mut u8 {
        // SAFETY: bins always point at a slab this cache owns, or at `empty`, whose free list is
        // empty; `local` is only ever borrowed by the owner.
        unsafe {
            let slab = *self.bins.get_unchecked(class);
            if let Some(b) = (*slab).local.pop::<P>() {
                return self.hand_out(slab, b, size, align);
            }
        }
        self.alloc_refill(class, size, align)
    }

    /// A slot of `class` once its current slab has no free one (the pop just failed).
    #[inline(always)]
    fn alloc_refill(&mut self, class: usize, size: usize, align: usize) -> *mut u8 {
        match self.alloc_slow(class) {
            // SAFETY: alloc_slow took `b` from the class's current slab.
            Some((b, _)) => unsafe { self.hand_out(self.bins[class], b, size, align) },
            None => ptr::null_mut(),
        }
    }

    /// The sampled allocation: a guarded block if the heap's guard sample asks for one and the
    /// pool has room, else a block as usual. Sets the next countdown.
    #[cold]
    #[inline(never)]
    fn alloc_sampled(&mut self, class: usize, size: usize, align: usize) -> *mut u8 {
        let n = self.heap().guard_sample();
        self.guard_left = if n == 0 { GUARD_RECHECK } else { n };
        if n != 0 {
            let who = self.next_op();
            let p = self.heap().guard_alloc(size, align, who);
            if !p.is_null() {
                return p;
            }
        }
        self.alloc_unsampled(class, size, align)
    }

    /// Turns a slot just taken from `slab` into the client's pointer (checked mode verifies and
    /// stamps it first, and may refuse it).
    ///
    /// # Safety
    /// The cache owns `slab` and just took `b` from it.
    #[inline(always)]
    unsafe fn hand_out(&mut self, slab: *mut Slab, b: BasePtr, size: usize, align: usize) -> *mut u8 {
        let user = if P::CHECKED {
            let who = self.next_op();
            // SAFETY: forwarded.
            unsafe { check::hand_out(slab, b, size, user_offset::<P>(align), who) }
        } else {
            b.to_user::<P>().as_ptr()
        };
        // ASan builds: the slot is poisoned whole (free); open exactly the requested bytes.
        if crate::asan::ENABLED && !user.is_null() {
            crate::asan::unpoison(user, size.max(1));
        }
        user
    }

    fn alloc_generic(&mut self, size: usize, align: usize, zero: bool) -> *mut u8 {
        let class = if size <= SMALL_MAX { class_for(slot_needed::<P>(size, align), align) } else { None };
        let Some(class) = class else {
            return self.heap().alloc_large(size, align, zero);
        };
        if !zero {
            return self.alloc_class(class, size, align);
        }
        // SAFETY: as in alloc_class.
        let (user, fresh) = unsafe {
            let slab = self.bins[class];
            match (*slab).local.pop::<P>() {
                Some(b) => (self.hand_out(slab, b, size, align), false),
                None => match self.alloc_slow(class) {
                    Some((b, fresh)) => (self.hand_out(self.bins[class], b, size, align), fresh),
                    None => return ptr::null_mut(),
                },
            }
        };
        // A checked slot is never fresh: it held poison; and only the requested bytes are the
        // client's (the rest is tail canary).
        // Under ASan, too, only the requested bytes are addressable.
        if (P::CHECKED || crate::asan::ENABLED) && !user.is_null() {
            // SAFETY: the block is ours and has `size` client bytes.
            unsafe { ptr::write_bytes(user, 0, size) };
        } else if !fresh && !user.is_null() {
            // SAFETY: the slot is ours and has this many client bytes.
            unsafe { ptr::write_bytes(user, 0, usable::<P>(CLASS_SIZES[class])) };
        }
        user
    }

    /// Finds a slot when the current slab of `class` has none on its free list. The flag says
    /// the slot was carved from never-touched memory and reads as zero.
    #[cold]
    fn alloc_slow(&mut self, class: usize) -> Option<(BasePtr, bool)> {
        self.collect_inbox();
        loop {
            let slab = self.bins[class];
            if slab != self.empty_slab() {
                // SAFETY: the cache owns `slab`; `local` and `remote` are disjoint fields.
                unsafe {
                    let local = &mut (*slab).local;
                    local.drain::<P>(&(*slab).remote);
                    if let Some(b) = local.pop::<P>() {
                        return Some((b, false));
                    }
                    if local.can_carve() {
                        return Some((local.carve::<P>(), local.zero_tail));
                    }
                    self.others[class].push_back(slab);
                }
                self.bins[class] = self.empty_slab();
            }
            let mut next = self.find_room(class);
            if next.is_null() {
                next = self.heap().acquire_slab(class, self.slot.cast());
                if next.is_null() {
                    return None;
                }
                // FAULT fault-first-refill-skips-bin (failure 8): a class's first refill hands a
                // slot out of the new slab before the slab is recorded as the class's current one.
                #[cfg(feature = "fault-first-refill-skips-bin")]
                // SAFETY (of the fault): the cache owns the slab it just acquired.
                unsafe {
                    let local = &mut (*next).local;
                    if let Some(b) = local.pop::<P>() {
                        return Some((b, false));
                    }
                    if local.can_carve() {
                        return Some((local.carve::<P>(), local.zero_tail));
                    }
                }
            } else {
                // SAFETY: find_room returns a member of others[class].
                unsafe { self.others[class].remove(next) };
                if next == self.spare[class] {
                    self.spare[class] = null_mut();
                }
            }
            self.bins[class] = next;
        }
    }

    /// One of this cache's other slabs of `class` that can hand out a slot, or null. Looks at no
    /// more than [`SCAN_LIMIT`] of them, rotating the ones without room to the back.
    fn find_room(&mut self, class: usize) -> *mut Slab {
        let list = &mut self.others[class];
        for _ in 0..list.len().min(SCAN_LIMIT) {
            let s = list.head();
            // SAFETY: members of `others` are slabs this cache owns.
            unsafe {
                (*s).local.drain::<P>(&(*s).remote);
                if (*s).local.has_room() {
                    return s;
                }
                list.remove(s);
                list.push_back(s);
            }
        }
        ptr::null_mut()
    }

    // ---- free ----------------------------------------------------------------------------

    /// Frees a block this heap handed out (through any of its caches).
    ///
    /// # Safety
    /// `p` must be a live block of this cache's heap; it is dead afterwards.
    #[inline(always)]
    pub unsafe fn free(&mut self, p: *mut u8) {
        // SAFETY: forwarded.
        unsafe { self.free_in::<false>(p) }
    }

    /// [`CacheInner::free`] for a pointer from C, which may be in no heap's mapping at all
    /// (then reported; see [`locate`]).
    ///
    /// # Safety
    /// `p` must be a live block of this cache's heap, or in no heap's mapping.
    #[inline(always)]
    pub(crate) unsafe fn free_untrusted(&mut self, p: *mut u8) {
        // SAFETY: forwarded.
        unsafe { self.free_in::<true>(p) }
    }

    /// [`CacheInner::free`], with `UNTRUSTED` as for [`locate`] (and then `p` may be null).
    ///
    /// # Safety
    /// As for [`CacheInner::free`] or [`CacheInner::free_untrusted`].
    #[inline(always)]
    pub(crate) unsafe fn free_in<const UNTRUSTED: bool>(&mut self, p: *mut u8) {
        // SAFETY: the caller promises a live block (checked mode proves it).
        unsafe {
            if P::CHECKED || crate::asan::ENABLED {
                return self.free_any::<UNTRUSTED>(p);
            }
            // Release: a slot of a small region here, anything else out of line, every call a
            // tail call, so that the fast path saves no register (8 instructions per free in
            // the C entry point, measured under callgrind).
            match locate_small::<P, UNTRUSTED>(p) {
                Some((slab, base)) => self.free_slot(slab, base),
                None => self.free_other::<UNTRUSTED>(p),
            }
        }
    }

    /// Frees `base`, a slot of `slab`: onto the slab's free list if this cache owns the slab,
    /// else toward its owner.
    ///
    /// # Safety
    /// `base` is a slot of `slab` that the caller gives up (checked mode: proven live).
    #[inline(always)]
    unsafe fn free_slot(&mut self, slab: *mut Slab, base: BasePtr) {
        // SAFETY: slab metadata is shared through atomics except `local`, which only the owner
        // (checked just before) borrows.
        unsafe {
            let owner = (*slab).owner.load(Relaxed);
            if owner.addr() != self.token() {
                return self.free_remote(owner, slab, base);
            }
            // The current slab stays even when empty; testing that here keeps the common
            // alloc/free ping-pong from calling the cold path at all.
            if (*slab).local.push::<P>(base) && *self.bins.get_unchecked((*slab).local.class as usize) != slab {
                self.retire(slab);
            }
        }
    }

    /// [`CacheInner::free_any`] out of line, for release frees of a block that is not a slot
    /// (or of null from C). `extern "C"` makes it a function that cannot unwind (a panic in it
    /// aborts, as one in an allocator must), so that the C entry point may tail-call it.
    ///
    /// # Safety
    /// As for [`CacheInner::free_in`].
    #[inline(never)]
    unsafe extern "C" fn free_other<const UNTRUSTED: bool>(&mut self, p: *mut u8) {
        // SAFETY: forwarded.
        unsafe { self.free_any::<UNTRUSTED>(p) }
    }

    /// [`CacheInner::free_in`] whatever the block, with checked mode's proof and ASan's
    /// poisoning: every free of checked and ASan builds.
    ///
    /// # Safety
    /// As for [`CacheInner::free_in`].
    #[inline(always)]
    unsafe fn free_any<const UNTRUSTED: bool>(&mut self, p: *mut u8) {
        if UNTRUSTED && p.is_null() {
            return;
        }
        // SAFETY: as for free_in.
        unsafe {
            // The heap outlives its caches; reaching it through the raw pointer leaves `self` free
            // for the closure that numbers the operation.
            let (heap, token) = (&*self.heap, self.token());
            let Some(block) = block_to_free::<P, UNTRUSTED>(heap, p, token, || self.next_op()) else { return };
            match block {
                Block::Small(slab, base) => self.free_slot(slab, base),
                Block::Large => self.heap().free_large(p),
                Block::Guard => {
                    let who = self.next_op();
                    self.heap().guard_free(p, who)
                }
                Block::Foreign => self.heap().foreign(p, self.id),
            }
        }
    }

    /// Frees a slot of `slab`, which the cache at `owner` (null: none) owns: into the batch for
    /// that owner (sent when full), or, with no owner, onto the slab's own queue.
    ///
    /// # Safety
    /// `base` is a slot of `slab` that the caller gives up; this cache does not own `slab`.
    #[inline(always)]
    unsafe fn free_remote(&mut self, owner: *mut u8, slab: *mut Slab, base: BasePtr) {
        let i = outbox_index(owner.addr());
        let o = &mut self.outbox[i];
        // The common case, a slot joining its owner's batch, in as few registers as can be: the
        // local free path shares them.
        // SAFETY: an entry's batch is set with its owner, and ours; the slot is ours to give up.
        unsafe {
            if o.owner == owner && (*o.batch).len() + 1 < self.pending_max {
                (*o.batch).push(base);
                return;
            }
            self.free_remote_slow(owner, slab, base, i)
        }
    }

    /// [`CacheInner::free_remote`] of a slot that starts the batch of entry `i` or fills it, or
    /// whose slab no cache owns.
    ///
    /// # Safety
    /// As for [`CacheInner::free_remote`]; `i` is the owner's entry.
    // `extern "C"` (cannot unwind), as every out-of-line step of free: see `free_other`.
    #[inline(never)]
    unsafe extern "C" fn free_remote_slow(&mut self, owner: *mut u8, slab: *mut Slab, base: BasePtr, i: usize) {
        // SAFETY: as for free_remote.
        unsafe {
            if self.outbox[i].owner != owner {
                if owner.is_null() {
                    // Abandoned: the heap, or whoever adopts the slab, drains its queue.
                    (*slab).remote.push::<P>(base);
                    return;
                }
                self.evict(i);
                let batch = self.empty_batch();
                if batch.is_null() {
                    // Out of memory for batches: the slab's own queue needs none.
                    (*slab).remote.push::<P>(base);
                    return;
                }
                self.outbox[i] = Outbound { owner, batch };
            }
            let b = &mut *self.outbox[i].batch;
            // FAULT fault-remote-chain-user-ptr (failure 1): a new batch names the client's
            // pointer, which is the slot only where there is no header (release mode).
            if cfg!(feature = "fault-remote-chain-user-ptr") && b.len() == 0 {
                b.push(BasePtr::new_unchecked(base.to_user::<P>().as_ptr()));
            } else {
                b.push(base);
            }
            if b.len() >= self.pending_max {
                self.send(i);
            }
        }
    }

    /// An empty batch from the stash, which takes some from the heap when it has none; null
    /// when the OS refuses memory.
    fn empty_batch(&mut self) -> *mut Batch {
        if self.stash.len() == 0 {
            // The heap outlives its caches; through the raw pointer, `self.stash` stays free.
            // SAFETY: as in `heap()`.
            unsafe { (*self.heap).take_batches(&mut self.stash, STASH_TAKE) };
        }
        self.stash.pop()
    }

    /// Keeps the emptied batch `b`, giving the heap back half the stash when it grows large.
    ///
    /// # Safety
    /// `b` is a batch this cache holds and gives up, its slots placed.
    unsafe fn keep_batch(&mut self, b: *mut Batch) {
        // SAFETY: per the contract.
        unsafe { self.stash.push(b) };
        if self.stash.len() >= 2 * STASH_TAKE {
            // SAFETY: as in `heap()`.
            unsafe { (*self.heap).give_batches(&mut self.stash, STASH_TAKE) };
        }
    }

    /// Sends the batch of outbox entry `i` to its owner's inbox with one atomic operation; if the
    /// owner has closed it (the cache ended), each slot goes to its slab's own queue instead.
    fn send(&mut self, i: usize) {
        let o = core::mem::replace(&mut self.outbox[i], Outbound::EMPTY);
        if o.batch.is_null() {
            return;
        }
        // SAFETY: the entry's batch is ours, its slots given up; the owner is a cache slot of
        // this heap.
        unsafe {
            if !CacheSlot::<P>::inbox(o.owner).try_push(o.batch) {
                self.forward(o.batch);
            }
        }
    }

    /// Makes room in outbox entry `i` for another owner: sends its batch if at least half full,
    /// else puts its slots on their slabs' own queues. So a batch in flight costs at most about
    /// 17 bytes per slot it names, even for a cache that frees to more owners at once than its
    /// outbox has entries (each eviction would otherwise send a 1 KiB batch of a slot or two,
    /// and an owner that does not allocate keeps them until it ends).
    fn evict(&mut self, i: usize) {
        let b = self.outbox[i].batch;
        // SAFETY: the entry's batch, if any, is ours, its slots given up.
        unsafe {
            if !b.is_null() && 2 * (*b).len() < self.pending_max {
                self.outbox[i] = Outbound::EMPTY;
                self.forward(b);
                return;
            }
        }
        self.send(i);
    }

    /// Sends every batch of the outbox.
    fn send_all(&mut self) {
        for i in 0..OUTBOX {
            self.send(i);
        }
    }

    /// Takes every batch sent to this cache's inbox, when some are (the slow paths' first step).
    ///
    /// The slots are placed at once. Holding a chain until the next slow path, so that the
    /// freeing core is done with the lines before the owner writes them, changed nothing with
    /// the CPUs far apart, where the owner's trip home costs most: xmalloc-like stayed at 0.89x
    /// jemalloc (about 60 far-apart runs of each build, alternated).
    #[inline]
    fn collect_inbox(&mut self) {
        // SAFETY: the slot is this cache's, whose inbox only it takes from.
        let inbox = unsafe { &(*self.slot).inbox };
        if !inbox.is_empty() {
            let batches = inbox.take_all();
            // SAFETY: the batches came from the inbox.
            unsafe { self.take_in(batches) };
        }
    }

    /// Places the slots of a chain of batches sent to this cache ([`CacheInner::place`], owned
    /// slabs' onto their free lists) and keeps the emptied batches.
    ///
    /// # Safety
    /// The chain is one this cache took from its inbox.
    unsafe fn take_in(&mut self, mut batch: *mut Batch) {
        // SAFETY: per the contract, the batches and their slots are ours to place.
        unsafe {
            while !batch.is_null() {
                let next = (*batch).next();
                self.place(batch, true);
                self.keep_batch(batch);
                batch = next;
            }
        }
    }

    /// Puts each slot of a batch onto its slab's own queue and keeps the emptied batch: where a
    /// batch goes when its owner has closed its inbox, or when it is evicted nearly empty.
    ///
    /// # Safety
    /// `batch` is this cache's, its slots given up.
    unsafe fn forward(&mut self, batch: *mut Batch) {
        // SAFETY: forwarded.
        unsafe {
            self.place(batch, false);
            self.keep_batch(batch);
        }
    }

    /// Puts each slot of `batch` back: with `own`, on its slab's free list where this cache owns
    /// the slab, and otherwise onto the slab's own queue. Checked heaps prove each slot queued
    /// before reading it, and stop at one that is not, after the report.
    ///
    /// Slot by slot: consecutive slots of one batch seldom share a slab (frees interleave
    /// classes), so gathering them into runs first cost more than it saved.
    ///
    /// # Safety
    /// `batch` and its slots are this cache's to place.
    unsafe fn place(&mut self, batch: *mut Batch, own: bool) {
        let token = self.token();
        // SAFETY: per the contract.
        unsafe {
            // Newest first, so that the slab's free list hands the slots out in the order they
            // were freed.
            for &p in (*batch).slots().iter().rev() {
                if P::CHECKED && !check::queued_in_batch(self.heap().check_state(), p) {
                    break;
                }
                let b = BasePtr::new_unchecked(p);
                let slab = SmallRegion::slab_of(region_base(p).cast(), p);
                if !own || (*slab).owner_token() != token {
                    (*slab).remote.push::<P>(b);
                    continue;
                }
                let l = &mut (*slab).local;
                if P::CHECKED && !P::drained(l.carving(), p) {
                    break;
                }
                // A slab this empties stays with the cache, as one a drain empties does: the
                // slow path that takes in a batch is about to allocate again.
                l.push::<P>(b);
            }
        }
    }

    /// A slab of this cache became entirely free: give it back unless it is the current one,
    /// which stays to avoid bouncing a slab between the cache and the pool, or the class has no
    /// spare yet, which it becomes.
    ///
    /// The spare is what keeps a class's pages its own. A program whose live blocks of a class
    /// go up and down empties a slab of few slots now and then and needs one again soon after;
    /// given back, the slab went to whichever class asked next, whose slots lie elsewhere in it,
    /// and in time every page of every slab it passed through was resident. One spare per class
    /// took glibc's bench-malloc-thread with 4 threads from 32 to 26 MiB peak RSS (tcmalloc: 25)
    /// and made it 5% faster; a cache that flushes or ends gives its spares back.
    // `extern "C"` (cannot unwind), as every out-of-line step of free: see `free_other`.
    #[cold]
    unsafe extern "C" fn retire(&mut self, slab: *mut Slab) {
        // SAFETY: the cache owns `slab`, so it is either current or in `others`.
        unsafe {
            let class = (*slab).local.class as usize;
            if self.bins[class] == slab {
                return;
            }
            if self.spare[class].is_null() {
                self.spare[class] = slab;
                return;
            }
            self.others[class].remove(slab);
            self.heap().release_slab(slab);
        }
    }

    /// Returns what the cache holds without use: collects remote frees, pools every slab that is
    /// entirely free. With `all`, also abandons slabs that still have live slots.
    pub fn release_slabs(&mut self, all: bool) {
        // FAULT fault-exit-drops-pending (thread exit): a cache that ends forgets its outbox of
        // remote frees; those slots are then in no list at all.
        if cfg!(feature = "fault-exit-drops-pending") && all {
            self.outbox = [Outbound::EMPTY; OUTBOX];
        }
        self.send_all();
        // A cache that ends closes its inbox, so that later batches go to the slabs' queues.
        // SAFETY: the slot is this cache's, whose inbox only it takes from.
        let batches = unsafe { if all { (*self.slot).inbox.close() } else { (*self.slot).inbox.take_all() } };
        // SAFETY: the batches came from the inbox.
        unsafe { self.take_in(batches) };
        if all {
            let n = self.stash.len();
            // SAFETY: as in `heap()`.
            unsafe { (*self.heap).give_batches(&mut self.stash, n) };
        }
        self.spare = [null_mut(); NUM_CLASSES];
        let empty = self.empty_slab();
        for class in 0..NUM_CLASSES {
            let current = core::mem::replace(&mut self.bins[class], empty);
            if current != empty {
                // SAFETY: current is owned and in no list.
                unsafe { self.others[class].push_front(current) };
            }
            let mut s = self.others[class].head();
            while !s.is_null() {
                // SAFETY: members of `others` are owned by this cache.
                unsafe {
                    let next = self.others[class].next(s);
                    (*s).local.drain::<P>(&(*s).remote);
                    if (*s).local.used == 0 {
                        self.others[class].remove(s);
                        self.heap().release_slab(s);
                    } else if all {
                        self.others[class].remove(s);
                        self.heap().abandon_slab(s);
                    }
                    s = next;
                }
            }
        }
    }

    // ---- queries and realloc -------------------------------------------------------------

    /// Bytes the client may use in block `p`.
    ///
    /// # Safety
    /// `p` must be a live block of this cache's heap.
    pub unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: forwarded contract.
        unsafe { usable_size::<P, false>(self.heap(), p, self.id) }
    }

    /// Resizes block `p` to `new_size` bytes aligned to `align`, in place when it can; null (and
    /// `p` untouched) when out of memory.
    ///
    /// # Safety
    /// `p` must be a live block of this cache's heap; on success it is dead unless returned.
    pub unsafe fn realloc(&mut self, p: *mut u8, new_size: usize, align: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.realloc_in::<false>(p, new_size, align) }
    }

    /// [`CacheInner::realloc`] for a pointer from C (see [`CacheInner::free_untrusted`]).
    ///
    /// # Safety
    /// As for [`CacheInner::realloc`], or `p` is in no heap's mapping.
    pub(crate) unsafe fn realloc_untrusted(&mut self, p: *mut u8, new_size: usize, align: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.realloc_in::<true>(p, new_size, align) }
    }

    /// [`CacheInner::realloc`], with `UNTRUSTED` as for [`locate`].
    ///
    /// # Safety
    /// As for [`CacheInner::realloc`] or [`CacheInner::realloc_untrusted`].
    unsafe fn realloc_in<const UNTRUSTED: bool>(&mut self, p: *mut u8, new_size: usize, align: usize) -> *mut u8 {
        if P::CHECKED {
            // SAFETY: forwarded contract; the check proves `p` live before it is read.
            return unsafe { self.realloc_checked(p, new_size, align) };
        }
        // SAFETY: forwarded contract.
        unsafe {
            let old = usable_size::<P, UNTRUSTED>(self.heap(), p, self.id);
            let aligned = p.addr() & (align - 1) == 0;
            // Keep the block while the new size still uses at least half of it.
            // (Under ASan, `old` is the requested size and a block always moves, so that the new
            // one is poisoned to its new size.)
            if !crate::asan::ENABLED && aligned && new_size <= old && new_size >= old / 2 {
                return p;
            }
            if !crate::asan::ENABLED && aligned && new_size > old && old > SMALL_MAX && self.heap().grow_large(p, new_size) {
                return p;
            }
            let q = self.alloc(new_size, align);
            if !q.is_null() {
                ptr::copy_nonoverlapping(p, q, realloc_copy_len(old, new_size));
                self.free(p);
            }
            q
        }
    }

    /// Checked realloc: always moves a slab block, so the new block gets fresh canaries and the
    /// old one is checked and poisoned like any free; copies only the requested bytes.
    ///
    /// # Safety
    /// As for [`CacheInner::realloc`], except that a bad `p` is reported rather than trusted.
    unsafe fn realloc_checked(&mut self, p: *mut u8, new_size: usize, align: usize) -> *mut u8 {
        // SAFETY: requested_size proves `p` live before anything reads it.
        unsafe {
            let Some(old) = check::requested_size(self.heap().check_state(), p, self.id, "realloc of a freed block", |p| self.heap().large_header(p), |p| self.heap().guard_usable_size(p, self.id)) else {
                return ptr::null_mut();
            };
            // (Not under ASan, where the grown bytes would still be poisoned: the block moves.)
            if !crate::asan::ENABLED && old > SMALL_MAX && p.addr() & (align - 1) == 0 && new_size > SMALL_MAX && self.heap().grow_large(p, new_size) {
                return p;
            }
            let q = self.alloc(new_size, align);
            if !q.is_null() {
                ptr::copy_nonoverlapping(p, q, realloc_copy_len(old, new_size));
                self.free(p);
            }
            q
        }
    }
}

/// Bytes a moving realloc copies from a block of `old` bytes into one of `new_size`.
#[inline(always)]
fn realloc_copy_len(old: usize, new_size: usize) -> usize {
    // FAULT fault-realloc-copies-old-size (failure 4): a shrinking move copies the old size,
    // past the end of the smaller block.
    if cfg!(feature = "fault-realloc-copies-old-size") {
        return old;
    }
    old.min(new_size)
}


/// Classifies the live block `p`. `UNTRUSTED` (the C entry points): by what its span of the
/// address space holds, one byte of the region map, so that a pointer in no heap's mapping is
/// found no block of ours before anything is read behind it (C callers hand in anything).
/// Otherwise (`GlobalAlloc`, `ThreadCache`, whose callers promise a live block) by its region's
/// header, which the block's own cache lines are near: the map's load cost the Rust path 7
/// instructions per free and a tenth of its speed on single-thread workloads.
///
/// # Safety
/// `p` must be a live block of a heap with policy `P`; with `UNTRUSTED`, or in no heap's
/// mapping.
#[inline(always)]
pub(crate) unsafe fn locate<P: Policy, const UNTRUSTED: bool>(p: *mut u8) -> Block {
    let region = region_base(p);
    let small = if UNTRUSTED {
        match crate::region::span_of(region) {
            Span::Small => true,
            Span::Large => return Block::Large,
            Span::Guard => return Block::Guard,
            Span::Foreign => return Block::Foreign,
        }
    } else {
        // A slab slot never starts at a region's first byte (the header is there), and a large
        // block starts there only when aligned to a region or more; otherwise the region starts
        // with the header whose kind says which it is. The guard arenas' kind is tested only off
        // the small blocks' path.
        // SAFETY: per the contract, `region` is a live region header unless it equals `p`.
        let kind = if region == p { 0 } else { unsafe { (*region.cast::<RegionHeader>()).kind } };
        if kind == GUARD_KIND {
            return Block::Guard;
        }
        kind == SMALL_KIND
    };
    if !small {
        return Block::Large;
    }
    // SAFETY: per the contract, a slot of a live small region.
    unsafe { Block::Small(SmallRegion::slab_of(region.cast(), p), UserPtr::new(p).unwrap_unchecked().to_base::<P>()) }
}

/// [`locate`]'s answer when it is a slot, found without a call (None: anything else, and null;
/// [`locate`] then tells which).
///
/// # Safety
/// As for [`locate`].
#[inline(always)]
unsafe fn locate_small<P: Policy, const UNTRUSTED: bool>(p: *mut u8) -> Option<(*mut Slab, BasePtr)> {
    let region = region_base(p);
    let small = if UNTRUSTED {
        crate::region::span_is_small(region)
    } else {
        // SAFETY: as in `locate`.
        region != p && unsafe { (*region.cast::<RegionHeader>()).kind } == SMALL_KIND
    };
    // SAFETY: per the contract, a slot of a live small region.
    small.then(|| unsafe { (SmallRegion::slab_of(region.cast(), p), UserPtr::new(p).unwrap_unchecked().to_base::<P>()) })
}

/// Where the block `p` about to be freed lives, by the cache with `token` (whose next operation
/// `who` names): checked mode proves it live and marks it freed first, and says None when the
/// free must not happen (after its report); ASan builds poison it.
///
/// # Safety
/// `p` must be a live block of `heap` (checked mode reports it instead when it is not).
#[inline(always)]
unsafe fn block_to_free<P: Policy, const UNTRUSTED: bool>(heap: &Heap<P>, p: *mut u8, token: usize, who: impl FnOnce() -> Identity) -> Option<Block> {
    // SAFETY: forwarded contract.
    unsafe {
        let block = if P::CHECKED { check::before_free(heap.check_state(), p, token, who(), |p| heap.large_header(p))? } else { locate::<P, UNTRUSTED>(p) };
        asan_free::<P>(p, &block);
        Some(block)
    }
}

/// Bytes the client may use in the live block `p` of `heap` (`UNTRUSTED`: see [`locate`]).
///
/// # Safety
/// `p` must be a live block of `heap` (or, `UNTRUSTED`, in no heap's mapping).
pub(crate) unsafe fn usable_size<P: Policy, const UNTRUSTED: bool>(heap: &Heap<P>, p: *mut u8, thread: u32) -> usize {
    if P::CHECKED {
        // SAFETY: the check proves `p` live before reading it.
        return unsafe { check::requested_size(heap.check_state(), p, thread, "size of a freed block", |p| heap.large_header(p), |p| heap.guard_usable_size(p, thread)) }.unwrap_or(0);
    }
    // SAFETY: forwarded contract.
    let usable = unsafe {
        match locate::<P, UNTRUSTED>(p) {
            Block::Small(slab, _) => usable::<P>((*slab).local.slot_size as usize),
            Block::Guard => heap.guard_usable_size(p, thread).unwrap_or(0),
            Block::Foreign => {
                heap.foreign(p, thread);
                0
            }
            Block::Large => {
                let h = heap.find_large(p);
                (*h).map_size - (*h).user_offset
            }
        }
    };
    // ASan builds: the requested size, the bytes the client may touch (as ASan's own malloc does).
    crate::asan::accessible_len(p, usable)
}

/// ASan builds, release heaps: a free must find the block live, or it is a double free that
/// ASan reports; the freed slot is poisoned whole. (Checked heaps do both in `check`.)
///
/// # Safety
/// `block` is where `p` lies.
#[inline(always)]
unsafe fn asan_free<P: Policy>(p: *mut u8, block: &Block) {
    if crate::asan::ENABLED && !P::CHECKED {
        crate::asan::check_live(p);
        if let &Block::Small(slab, base) = block {
            // SAFETY: the slot size is fixed while the slab holds a live block.
            crate::asan::poison(base.as_ptr(), unsafe { (*slab).local.slot_size } as usize);
        }
    }
}

/// Frees `p` on behalf of no cache: the path of a thread whose cache is gone. Every slot goes
/// through its slab's remote queue, as it would from any thread that does not own the slab.
/// (`UNTRUSTED`: see [`locate`].)
///
/// # Safety
/// `p` must be a live block of `heap` (or, `UNTRUSTED`, in no heap's mapping); it is dead
/// afterwards.
pub(crate) unsafe fn free_unowned<P: Policy, const UNTRUSTED: bool>(heap: &Heap<P>, p: *mut u8) {
    // SAFETY: forwarded contract; only the shared parts of the slab are touched.
    unsafe {
        let who = || Identity { seq: heap.check_state().next_seq(), thread: Identity::uncached_thread() };
        let Some(block) = block_to_free::<P, UNTRUSTED>(heap, p, crate::slab::NO_OWNER, who) else { return };
        match block {
            Block::Small(slab, base) => (*slab).remote.push::<P>(base),
            Block::Large => heap.free_large(p),
            Block::Guard => heap.guard_free(p, Identity { seq: 0, thread: Identity::uncached_thread() }),
            Block::Foreign => heap.foreign(p, Identity::uncached_thread()),
        }
    }
}

/// A handle through which one logical thread allocates from a [`Heap`].
///
/// Dropping it returns its free slabs to the heap and leaves slabs with live blocks for other
/// caches to adopt; blocks it allocated stay valid and may be freed through any cache.
pub struct ThreadCache<'h, P: Policy = Release> {
    inner: NonNull<CacheInner<P>>,
    _heap: PhantomData<&'h Heap<P>>,
}

// SAFETY: a cache is used by one thread at a time (`&mut self`); ownership is by cache identity,
// not by OS thread, so moving the handle to another thread is fine.
unsafe impl<P: Policy> Send for ThreadCache<'_, P> {}

impl<'h, P: Policy> ThreadCache<'h, P> {
    pub(crate) fn try_new(heap: &'h Heap<P>) -> Option<Self> {
        NonNull::new(CacheInner::create(heap)).map(|inner| ThreadCache { inner, _heap: PhantomData })
    }

    #[inline(always)]
    pub(crate) fn inner(&mut self) -> &mut CacheInner<P> {
        // SAFETY: the handle owns its state exclusively.
        unsafe { self.inner.as_mut() }
    }

    /// Allocates `size` bytes aligned to `align` (a power of two); null when out of memory.
    #[inline]
    pub fn alloc(&mut self, size: usize, align: usize) -> *mut u8 {
        self.inner().alloc(size, align)
    }

    /// Allocates `size` zeroed bytes aligned to `align`.
    pub fn alloc_zeroed(&mut self, size: usize, align: usize) -> *mut u8 {
        self.inner().alloc_zeroed(size, align)
    }

    /// Frees `p`, which any cache of the same heap allocated.
    ///
    /// # Safety
    /// `p` must be a live block of this heap.
    #[inline]
    pub unsafe fn free(&mut self, p: *mut u8) {
        // SAFETY: forwarded.
        unsafe { self.inner().free(p) }
    }

    /// Resizes `p`; see [`CacheInner::realloc`].
    ///
    /// # Safety
    /// `p` must be a live block of this heap.
    pub unsafe fn realloc(&mut self, p: *mut u8, new_size: usize, align: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.inner().realloc(p, new_size, align) }
    }

    /// Bytes usable in block `p`.
    ///
    /// # Safety
    /// `p` must be a live block of this heap.
    pub unsafe fn usable_size(&mut self, p: *mut u8) -> usize {
        // SAFETY: forwarded.
        unsafe { self.inner().usable_size(p) }
    }

    /// As C's `malloc` (16-byte alignment), by the size-class tables the C entry point uses.
    #[inline]
    pub fn malloc(&mut self, size: usize) -> *mut u8 {
        self.inner().malloc(size)
    }

    /// As C's `free`: `p` is classified by the region map, so a pointer in no heap's mapping
    /// is reported instead of read behind (see [`locate`]).
    ///
    /// # Safety
    /// `p` must be a live block of this heap, or in no heap's mapping.
    pub unsafe fn free_untrusted(&mut self, p: *mut u8) {
        // SAFETY: forwarded.
        unsafe { self.inner().free_untrusted(p) }
    }

    /// As C's `realloc` of `p` (classified as by [`ThreadCache::free_untrusted`]).
    ///
    /// # Safety
    /// As for [`ThreadCache::free_untrusted`].
    pub unsafe fn realloc_untrusted(&mut self, p: *mut u8, new_size: usize, align: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.inner().realloc_untrusted(p, new_size, align) }
    }

    /// As C's `malloc_usable_size` of `p` (classified as by [`ThreadCache::free_untrusted`]).
    ///
    /// # Safety
    /// As for [`ThreadCache::free_untrusted`].
    pub unsafe fn usable_size_untrusted(&mut self, p: *mut u8) -> usize {
        let inner = self.inner();
        // SAFETY: forwarded.
        unsafe { usable_size::<P, true>(inner.heap(), p, inner.id) }
    }

    /// The cache's state, for tests that break it on purpose.
    #[cfg(test)]
    pub(crate) fn inner_for_tests(&mut self) -> &mut CacheInner<P> {
        self.inner()
    }

    /// This cache's id, as reports name it (ids start at 1 per heap).
    pub fn id(&mut self) -> u32 {
        self.inner().id
    }

    /// Collects remote frees and returns entirely free slabs to the heap.
    pub fn flush(&mut self) {
        self.inner().release_slabs(false);
    }
}

impl<P: Policy> Drop for ThreadCache<'_, P> {
    fn drop(&mut self) {
        // SAFETY: the handle is the only user of its state and goes away here.
        unsafe { CacheInner::destroy(self.inner.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    //! Small enough for Miri, which checks every unsafe step of these paths.
    use crate::Heap;

    #[test]
    fn alloc_free_reuse_and_remote_free() {
        let heap: Heap = Heap::new();
        let mut a = heap.cache();
        let mut b = heap.cache();
        let p: Vec<*mut u8> = (0..40).map(|i| a.alloc(8 + i * 24, 8)).collect();
        for (i, &q) in p.iter().enumerate() {
            unsafe { q.write_bytes(i as u8, 8 + i * 24) };
        }
        // Half come back locally, half through b (remote to a's slabs).
        for (i, &q) in p.iter().enumerate() {
            assert_eq!(unsafe { q.add(7).read() }, i as u8);
            if i % 2 == 0 {
                unsafe { a.free(q) };
            } else {
                unsafe { b.free(q) };
            }
        }
        // a drains the remote frees when its lists run dry; slots are handed out again.
        let again: Vec<*mut u8> = (0..40).map(|i| a.alloc(8 + i * 24, 8)).collect();
        for q in again {
            unsafe { a.free(q) };
        }
        a.flush();
        b.flush();
    }

    #[test]
    fn threads_free_each_others_blocks() {
        struct Block(*mut u8);
        // SAFETY: the block moves to the receiving thread, which alone uses it afterwards.
        unsafe impl Send for Block {}
        let heap: Heap = Heap::new();
        let (tx, rx) = std::sync::mpsc::channel::<Block>();
        std::thread::scope(|s| {
            let h = &heap;
            s.spawn(move || {
                let mut c = h.cache();
                for i in 0..64usize {
                    let p = c.alloc(16 + i % 100, 8);
                    unsafe { p.write(i as u8) };
                    tx.send(Block(p)).unwrap();
                }
            });
            s.spawn(move || {
                let mut c = h.cache();
                for (i, Block(p)) in rx.iter().enumerate() {
                    assert_eq!(unsafe { p.read() }, i as u8);
                    unsafe { c.free(p) };
                }
            });
        });
        assert_eq!(heap.stats().caches, 0);
    }

    #[test]
    fn abandoned_blocks_stay_valid_and_are_adopted() {
        let heap: Heap = Heap::new();
        let mut a = heap.cache();
        let p = a.alloc(100, 8);
        unsafe { p.write_bytes(9, 100) };
        drop(a);
        assert_eq!(heap.stats().abandoned_slabs, 1);
        let mut b = heap.cache();
        let q = b.alloc(100, 8);
        assert_eq!(heap.stats().abandoned_slabs, 0);
        assert_eq!(unsafe { p.add(99).read() }, 9);
        unsafe {
            b.free(p);
            b.free(q);
        }
    }

    /// Blocks of many classes, allocated by one cache.
    fn mixed_blocks<P: crate::Policy>(c: &mut crate::ThreadCache<'_, P>, n: usize) -> Vec<*mut u8> {
        (0..n).map(|i| c.alloc(8 + (i * 97) % 900, 8)).collect()
    }

    /// The sweep finds every slot where it belongs, with `live` the blocks still allocated.
    fn sound<P: crate::Policy>(heap: &Heap<P>, live: &[*mut u8]) {
        let count = |a: usize, b: usize| live.iter().filter(|p| (a..b).contains(&p.addr())).count();
        // SAFETY: no cache is in use during the sweep.
        assert_eq!(unsafe { heap.verify(Some(&count), true) }, vec![]);
    }

    fn remote_batches_reach_their_owner<P: crate::Policy>() {
        let heap: Heap<P> = Heap::new();
        let mut a = heap.cache();
        let mut b = heap.cache();
        let blocks = mixed_blocks(&mut a, 100);
        for &p in &blocks {
            unsafe { b.free(p) };
        }
        sound(&heap, &[]); // in b's outbox, then a's inbox: counted, not lost
        b.flush();
        sound(&heap, &[]);
        // a takes its inbox in (here when it flushes): every slab is free again, so pooled.
        a.flush();
        sound(&heap, &[]);
        assert_eq!(heap.stats().empty_regions, 1, "every block came back to its slab");
    }

    /// A cache hands out only slots of slabs it owns, even right after freeing another cache's
    /// blocks of the very classes it then asks for. Handing those slots out again at once, as
    /// jemalloc's and tcmalloc's thread caches do, saves sending them home, but puts two
    /// threads' live blocks in one cache line (passive false sharing). Tried at d064a66 with a
    /// stack of up to 2 KiB per class (side by side, 3 runs each): the C cache-scratch with 2
    /// threads went from 153-155 ms to 597-619 ms (tcmalloc: 608-616), larson from 160-167 ms to
    /// 268-282 ms, and the Rust larson-2t from 1.06-1.13x jemalloc to 0.48-0.50x.
    #[test]
    fn a_cache_hands_out_only_its_own_slots_after_remote_frees() {
        let heap: Heap = Heap::new();
        let mut a = heap.cache();
        let mut b = heap.cache();
        let theirs = mixed_blocks(&mut a, 60);
        for &p in &theirs[..40] {
            unsafe { b.free(p) };
        }
        let mine = mixed_blocks(&mut b, 40);
        let token = b.inner().token();
        for &q in &mine {
            let crate::region::Block::Small(slab, _) = (unsafe { super::locate::<crate::Release, false>(q) }) else {
                panic!("a small request got no slot")
            };
            assert_eq!(unsafe { (*slab).owner_token() }, token, "a cache handed out a slot of a slab it does not own");
        }
        for &q in mine.iter().chain(&theirs[40..]) {
            unsafe { b.free(q) };
        }
        drop(b);
        drop(a);
        sound(&heap, &[]);
    }

    #[test]
    fn remote_batches_reach_their_owner_release() {
        remote_batches_reach_their_owner::<crate::Release>();
    }

    #[test]
    fn remote_batches_reach_their_owner_checked() {
        remote_batches_reach_their_owner::<crate::Checked>();
    }

    /// A batch for a cache that ended (its inbox closed), and one for a new cache in the ended
    /// cache's storage (which the batch's owner address now names), both end on the slabs' own
    /// queues, and the slabs' next owner gets them.
    fn batches_for_an_ended_owner<P: crate::Policy>(reuse: bool) {
        let heap: Heap<P> = Heap::new();
        let mut a = heap.cache();
        let mut b = heap.cache();
        let blocks = mixed_blocks(&mut a, 60);
        for &p in &blocks[..50] {
            unsafe { b.free(p) };
        }
        drop(a); // its slabs with live blocks are abandoned; b's outbox still names it
        let c = reuse.then(|| heap.cache());
        b.flush();
        sound(&heap, &blocks[50..]);
        drop(c);
        for &p in &blocks[50..] {
            unsafe { b.free(p) };
        }
        drop(b);
        sound(&heap, &[]);
        heap.trim();
        assert_eq!(heap.stats().abandoned_slabs, 0, "every abandoned slab goes back to the pool once empty");
        assert_eq!(heap.stats().empty_regions, 1);
    }

    #[test]
    fn batches_for_an_ended_owner_go_to_the_slabs() {
        batches_for_an_ended_owner::<crate::Release>(false);
        batches_for_an_ended_owner::<crate::Checked>(false);
    }

    #[test]
    fn batches_for_a_new_cache_in_an_ended_owners_place_go_to_the_slabs() {
        batches_for_an_ended_owner::<crate::Release>(true);
        batches_for_an_ended_owner::<crate::Checked>(true);
    }

    /// A cache freeing to more owners at once than its outbox has entries evicts a batch at
    /// nearly every free: those go to the slabs' queues, not to the inboxes one slot a batch.
    fn frees_to_many_owners<P: crate::Policy>() {
        let heap: Heap<P> = Heap::new();
        let mut owners: Vec<_> = (0..2 * super::OUTBOX + 1).map(|_| heap.cache()).collect();
        let mut freer = heap.cache();
        let blocks: Vec<Vec<*mut u8>> = owners.iter_mut().map(|c| (0..40).map(|_| c.alloc(32, 8)).collect()).collect();
        for k in 0..40 {
            for b in &blocks {
                unsafe { freer.free(b[k]) };
            }
        }
        let min = super::BATCH_SLOTS.min(heap.pending_max() as usize);
        let mut sent = 0;
        for o in &mut owners {
            let mut b = o.inner().holdings().inbox;
            while !b.is_null() {
                let n = unsafe { (*b).len() };
                assert!(2 * n >= min, "a batch of {n} slots was sent");
                sent += n;
                b = unsafe { (*b).next() };
            }
        }
        assert!(sent < 40 * blocks.len() / 2, "most of them were evicted");
        // Every slot is accounted for (on its way, or queued on its slab), none lost or twice.
        sound(&heap, &[]);
        freer.flush();
        sound(&heap, &[]);
    }

    #[test]
    fn frees_to_more_owners_than_the_outbox_holds_send_no_small_batches() {
        frees_to_many_owners::<crate::Release>();
        frees_to_many_owners::<crate::Checked>();
    }

    /// Frees every block of two full slabs of one class, neither the current one: the first
    /// slab stays as the class's spare, the second goes back to the heap's pool, and a flush
    /// gives the spare back too.
    fn one_spare_per_class<P: crate::policy::Policy>() {
        let heap: Heap<P> = Heap::new();
        let mut c = heap.cache();
        // 3800 bytes take 4096-byte slots under both policies: single 64 KiB units.
        let blocks: Vec<*mut u8> = (0..64).map(|_| c.alloc(3800, 8)).collect();
        let slab = |p: *mut u8| p.addr() >> crate::layout::SLAB_SHIFT;
        let current = slab(*blocks.last().unwrap());
        let mut full: Vec<usize> = blocks.iter().map(|&p| slab(p)).filter(|&s| s != current).collect();
        full.dedup();
        let (a, b) = (full[0], full[1]);
        let pooled = || heap.stats().dirty_pooled_slabs;
        let before = pooled();
        for &p in blocks.iter().filter(|&&p| slab(p) == a) {
            unsafe { c.free(p) };
        }
        assert_eq!(pooled(), before, "the first slab emptied is kept as the spare");
        for &p in blocks.iter().filter(|&&p| slab(p) == b) {
            unsafe { c.free(p) };
        }
        assert_eq!(pooled(), before + 1, "the second goes back");
        c.flush();
        assert_eq!(pooled(), before + 2, "a flush gives the spare back");
        for &p in blocks.iter().filter(|&&p| slab(p) != a && slab(p) != b) {
            unsafe { c.free(p) };
        }
    }

    #[test]
    fn a_class_keeps_one_emptied_slab_as_its_spare() {
        one_spare_per_class::<crate::Release>();
        one_spare_per_class::<crate::Checked>();
    }

    #[test]
    fn large_and_aligned_blocks() {
        let heap: Heap = Heap::new();
        let mut c = heap.cache();
        let p = c.alloc(100_000, 8);
        unsafe { p.add(99_999).write(1) };
        let q = c.alloc(64, 4096);
        assert_eq!(q.addr() % 4096, 0);
        let z = c.alloc_zeroed(3000, 8);
        assert!(unsafe { core::slice::from_raw_parts(z, 3000) }.iter().all(|&x| x == 0));
        let r = unsafe { c.realloc(p, 200_000, 8) };
        assert_eq!(unsafe { r.add(99_999).read() }, 1);
        unsafe {
            c.free(r);
            c.free(q);
            c.free(z);
        }
        assert_eq!(heap.stats().large_blocks, 0);
    }
}

/// Thread caches are made here, not in `heap`, which knows nothing of them but the storage it
/// keeps for them (the heap is the layer below its caches).
impl<P: Policy> Heap<P> {
    /// A new thread cache on this heap. Several may exist on one OS thread. Panics when the OS
    /// refuses memory for it.
    pub fn cache(&self) -> ThreadCache<'_, P> {
        self.try_cache().expect("hakmem: out of memory creating a thread cache")
    }

    /// A new thread cache, or None when the OS refuses memory for it (or, checked, when its
    /// storage fails a check, after the report).
    pub fn try_cache(&self) -> Option<ThreadCache<'_, P>> {
        ThreadCache::try_new(self)
    }

    /// Frees `p` as a thread whose cache is gone does (a thread-local destructor that runs
    /// after the allocator's): through its slab's remote queue, for the slab's owner to drain.
    /// `untrusted`: `p` is classified as C's `free` does (see [`ThreadCache::free_untrusted`]).
    ///
    /// # Safety
    /// `p` must be a live block of this heap (or, `untrusted`, in no heap's mapping).
    pub unsafe fn free_uncached(&self, p: *mut u8, untrusted: bool) {
        // SAFETY: forwarded.
        unsafe {
            if untrusted {
                free_unowned::<P, true>(self, p)
            } else {
                free_unowned::<P, false>(self, p)
            }
        }
    }

    /// Drops a cache handle without giving its slabs back, for tests that broke its state on
    /// purpose; the heap still unmaps everything when dropped.
    #[cfg(test)]
    pub(crate) fn forget_cache(&self, c: ThreadCache<'_, P>) {
        core::mem::forget(c);
        self.forget_cache_count();
    }
}

const _: () = assert!(core::mem::size_of::<CacheSlot<Release>>() <= crate::heap::CACHE_SLOT || cfg!(feature = "fault-cache-slot-overlap"));
