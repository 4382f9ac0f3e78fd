//! A slab: one size class's slots within one 64 KiB unit of a region, or a span of several in a
//! span region (see `layout`), its free list and its remote-free queue.
//!
//! Ownership rule: [`SlabLocal`] belongs to whoever owns the slab (a thread cache, or the heap
//! under its lock while the slab is pooled or abandoned), and only the owner ever borrows it.
//! Other threads read `owner`, and send the slots they free to the owner's inbox in batches (see
//! `cache` and `batch`) or, when the slab has no owning cache, push them onto `remote`; the owner
//! takes a whole queue with one swap. Keeping the two apart is what makes the owner's
//! `&mut SlabLocal` sound while remote frees run concurrently; keeping them on separate cache
//! lines keeps a remote free's read of `owner` from taking the line the owner writes at every
//! allocation. A slot is therefore in exactly one place: handed out, on `free`, on `remote`, or
//! on its way there, named by a batch in a cache's outbox or inbox (failure 6 of the C history
//! was a slot in two of those at once).

use crate::layout::BasePtr;
use crate::policy::{Carving, Policy};
use crate::list::{Adapter, Links};
use core::ptr::null_mut;
use crate::sync::{AtomicPtr, Ordering};

/// What currently holds a slab.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum SlabState {
    /// In the heap's pool, serving no class.
    Pool,
    /// Owned by a thread cache.
    Owned,
    /// Its cache went away while slots were still live; waiting in the heap to be adopted.
    Abandoned,
}

/// Owner token of a slab no cache owns.
pub const NO_OWNER: usize = 0;

/// Metadata of one slab, kept in the region header, out of reach of client overflows.
#[repr(C, align(64))]
pub struct Slab {
    /// State only the owner touches (a cache line of its own).
    pub local: SlabLocal,
    /// The owning cache (its inbox is reachable from it), or null. Read by every free; written
    /// only when the slab changes hands. [`Slab::owner_token`] compares it.
    pub owner: AtomicPtr<u8>,
    /// Slots freed by threads other than the owner while the slab has no owning cache, or that
    /// an owner's inbox forwarded here (a Treiber stack, drained all at once).
    pub remote: RemoteQueue,
}

/// The owner's part of a slab.
#[repr(C, align(64))]
pub struct SlabLocal {
    /// Free slots ready to hand out.
    pub free: Option<BasePtr>,
    /// Slots handed out and not yet returned to `free`.
    pub used: u32,
    /// Slot size in bytes.
    pub slot_size: u32,
    /// First slot never handed out; slots from here to `end` are carved on demand.
    pub bump: *mut u8,
    /// End of the last whole slot.
    pub end: *mut u8,
    /// Links in the owning cache's per-class list or the heap's abandoned list.
    pub links: Links<Slab>,
    /// Size class served.
    pub class: u8,
    /// Whether the uncarved tail `[bump, end)` is known to read as zero.
    pub zero_tail: bool,
    /// Who holds the slab.
    pub state: SlabState,
}

/// Orderings of the remote-free handoff: Release on push, Acquire on the owner's swap.
/// (Faults `fault-remote-relaxed`, `fault-remote-push-relaxed` and `fault-remote-take-relaxed`
/// weaken them to Relaxed: failure 3. `just tsan` builds the first as its control.)
const PUSH_ORDER: Ordering =
    if cfg!(any(feature = "fault-remote-relaxed", feature = "fault-remote-push-relaxed")) { Ordering::Relaxed } else { Ordering::Release };
const TAKE_ORDER: Ordering =
    if cfg!(any(feature = "fault-remote-relaxed", feature = "fault-remote-take-relaxed")) { Ordering::Relaxed } else { Ordering::Acquire };

/// A multi-producer, single-consumer queue of remotely freed slots, a slab's: slots the owner
/// finds in its inbox but no longer owns, and frees into a slab no cache owns.
#[repr(C)]
pub struct RemoteQueue {
    stack: Stack,
}

/// A Treiber stack of nodes linked through a word each push writes, taken whole with one swap
/// by its one consumer, and closable (pushes then fail): the shape of both remote-free queues,
/// a slab's (of slots) and a cache's inbox (of batches, see `batch`).
#[repr(C)]
pub(crate) struct Stack {
    head: AtomicPtr<u8>,
}

/// The head of a closed queue (never a slot: slots are 8-aligned).
const CLOSED: *mut u8 = core::ptr::without_provenance_mut(1);

/// Selects [`Slab::links`] for intrusive lists.
pub struct SlabLinks;
impl Adapter<Slab> for SlabLinks {
    unsafe fn links(s: *mut Slab) -> *mut Links<Slab> {
        // SAFETY: the caller passes a live slab.
        unsafe { &raw mut (*s).local.links }
    }
}

/// Carve at most this many bytes of fresh slots at a time, so a slab's pages are touched only as
/// they are needed (a slab of 16-byte slots would otherwise write 4096 links up front).
const CARVE_BYTES: usize = 4096;

impl Slab {
    /// A slab that serves nothing: the state of every slab before its region assigns it.
    pub const fn unassigned() -> Self {
        Slab {
            local: SlabLocal {
                free: None,
                used: 0,
                slot_size: 0,
                bump: null_mut(),
                end: null_mut(),
                links: Links::new(),
                class: 0,
                zero_tail: false,
                state: SlabState::Pool,
            },
            owner: AtomicPtr::new(null_mut()),
            remote: RemoteQueue { stack: Stack::new() },
        }
    }
}

impl Slab {
    /// The owning cache's token (its address), or [`NO_OWNER`].
    #[inline(always)]
    pub fn owner_token(&self) -> usize {
        self.owner.load(Ordering::Relaxed).addr()
    }
}

impl SlabLocal {
    /// Prepares the slab to serve `class` with slots of `slot_size` bytes in `[start, limit)`.
    pub fn assign(&mut self, class: usize, slot_size: usize, start: *mut u8, limit: *mut u8, zero: bool) {
        let mut slots = (limit.addr() - start.addr()) / slot_size;
        // FAULT fault-slot-count-rounds (failure 10): rounds the slot count to the nearest, so a
        // slab whose slack is half a slot or more gets a last slot that runs into the next slab.
        if cfg!(feature = "fault-slot-count-rounds") {
            slots = (limit.addr() - start.addr() + slot_size / 2) / slot_size;
        }
        debug_assert!(slots > 0);
        self.free = None;
        self.used = 0;
        self.slot_size = slot_size as u32;
        self.bump = start;
        // SAFETY: `slots * slot_size` bytes fit in [start, limit).
        self.end = unsafe { start.add(slots * slot_size) };
        self.class = class as u8;
        self.zero_tail = zero;
    }

    /// What the policy's free-list hooks see of this slab.
    #[inline(always)]
    pub fn carving(&self) -> Carving {
        Carving { class: self.class as usize, slot_size: self.slot_size as usize, bump: self.bump }
    }

    /// Pops a free slot; the owner's fast path.
    #[inline(always)]
    pub fn pop<P: Policy>(&mut self) -> Option<BasePtr> {
        let b = self.free?;
        // SAFETY: slots on `free` are free and carry a link written with the same policy.
        let next = unsafe { b.link::<P>() };
        // SAFETY: b is a slot of this slab, in its live region.
        self.free = if P::CHECKED { next.and_then(|n| BasePtr::from_raw(unsafe { P::next_free(self.carving(), b.as_ptr(), n.as_ptr()) })) } else { next };
        if !P::CHECKED {
            // The next pop reads the next slot's link, and the client writes the slot. On slots
            // that came back from other threads that line is seldom in L1: the freeing core read
            // it last, and `place` links a whole batch (more than L1 holds in xmalloc-like)
            // before the first pop. Fetched now, the miss overlaps with the client's work.
            // Measured again once batches had replaced linked runs (side by side, near CPUs):
            // without it the remote workloads lost 1.5-5% against jemalloc, the single-thread
            // ones gained 1-4%. (No branch: on an emptied list this slot is prefetched again; a
            // branch here cost 5% on single-thread workloads.)
            next.unwrap_or(b).prefetch();
        }
        self.used += 1;
        Some(b)
    }

    /// Pushes a slot the owner freed; returns true when the slab became entirely free.
    ///
    /// # Safety
    /// `b` must be a slot of this slab that is handed out, and the caller must own the slab.
    #[inline(always)]
    pub unsafe fn push<P: Policy>(&mut self, b: BasePtr) -> bool {
        // SAFETY: forwarded; a single slot is a run from itself to itself.
        unsafe { self.splice::<P>(b, b, 1) }
    }

    /// Puts the `n` slots linked from `first` to `last` (whose link is overwritten) onto the free
    /// list at once; returns true when the slab became entirely free.
    ///
    /// # Safety
    /// The slots must be slots of this slab that were handed out and are given up, and the
    /// caller must own the slab.
    #[inline(always)]
    pub unsafe fn splice<P: Policy>(&mut self, first: BasePtr, last: BasePtr, n: u32) -> bool {
        // SAFETY: the slots were given back, so their first words are ours to write.
        unsafe { last.set_link::<P>(self.free) };
        self.free = Some(first);
        self.used -= n;
        self.used == 0
    }

    /// True if uncarved slots remain.
    #[inline]
    pub fn can_carve(&self) -> bool {
        self.bump < self.end
    }

    /// Carves fresh slots: returns the first, threads up to a page's worth more onto `free`.
    /// The returned slot reads as zero when `zero_tail` is set.
    ///
    /// # Safety
    /// The caller must own the slab, `free` must be empty and [`Slab::can_carve`] true.
    pub unsafe fn carve<P: Policy>(&mut self) -> BasePtr {
        debug_assert!(self.free.is_none() && self.can_carve());
        let size = self.slot_size as usize;
        let left = (self.end.addr() - self.bump.addr()) / size;
        let n = (CARVE_BYTES / size).clamp(1, left);
        let first = self.bump;
        // SAFETY: n slots starting at bump lie within [bump, end); all are fresh and ours.
        unsafe {
            // (Before the links: it poisons the slots whole, links included.)
            P::fresh_slots(self.carving(), first, n);
            let mut next: Option<BasePtr> = None;
            // Link back to front so the list hands slots out in address order.
            for i in (1..n).rev() {
                let b = BasePtr::new_unchecked(first.add(i * size));
                b.set_link::<P>(next);
                next = Some(b);
            }
            self.free = next;
            self.bump = first.add(n * size);
            self.used += 1;
            BasePtr::new_unchecked(first)
        }
    }

    /// Moves every slot queued on `q` (this slab's remote queue) onto `free`; returns how many.
    pub fn drain<P: Policy>(&mut self, q: &RemoteQueue) -> u32 {
        // FAULT fault-drain-keeps-queue (failure 6): "a queue of one slot needs no swap" takes
        // the slot but leaves it queued, so a later drain splices it in again, handed out or not.
        #[cfg(feature = "fault-drain-keeps-queue")]
        {
            let head = q.peek();
            // SAFETY (of the fault): a queued slot carries a link written with this policy.
            if let Some(h) = head.filter(|h| unsafe { h.link::<P>() }.is_none()) {
                // SAFETY: as for the real drain below.
                unsafe { h.set_link::<P>(self.free) };
                self.free = Some(h);
                self.used -= 1;
                return 1;
            }
        }
        let Some(first) = q.take_all() else { return 0 };
        let mut n = 1;
        let mut last = first;
        // SAFETY: every slot on the queue was published with a link written with the same policy,
        // and take_all made them ours.
        unsafe {
            if !P::drained(self.carving(), first.as_ptr()) {
                return 0;
            }
            loop {
                let mut next = last.link::<P>();
                if P::CHECKED {
                    next = next.and_then(|n| BasePtr::from_raw(P::next_free(self.carving(), last.as_ptr(), n.as_ptr())));
                }
                let Some(next) = next else { break };
                if !P::drained(self.carving(), next.as_ptr()) {
                    break;
                }
                last = next;
                n += 1;
            }
            self.splice::<P>(first, last, n);
        }
        n
    }

    /// True if this slab can hand out a slot without help from the heap.
    #[inline]
    pub fn has_room(&self) -> bool {
        self.free.is_some() || self.can_carve()
    }
}

impl RemoteQueue {
    /// Queues a slot freed by a thread that does not own the slab.
    ///
    /// # Safety
    /// `b` must be a handed-out slot of the slab this queue belongs to; the caller gives it up.
    #[inline]
    pub unsafe fn push<P: Policy>(&self, b: BasePtr) {
        // SAFETY: the slot is ours until the push publishes it; a slab's queue is never closed.
        let pushed = unsafe { self.stack.try_push(b.as_ptr(), |head| b.set_link::<P>(BasePtr::from_raw(head))) };
        debug_assert!(pushed, "hakmem: a push onto a closed slab queue");
    }

    /// Takes the whole queue; the caller becomes the owner of every slot on it.
    #[inline]
    pub fn take_all(&self) -> Option<BasePtr> {
        BasePtr::from_raw(self.stack.take_all())
    }

    /// The first queued slot, without taking the queue (for the consistency sweep, which runs
    /// while no thread frees).
    pub(crate) fn peek(&self) -> Option<BasePtr> {
        BasePtr::from_raw(self.stack.peek())
    }

    /// True if a remote free is waiting (a hint; the owner drains to be sure).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.stack.is_empty()
    }
}

impl Stack {
    /// An empty, open stack.
    pub(crate) const fn new() -> Self {
        Stack { head: AtomicPtr::new(null_mut()) }
    }

    /// Pushes the nodes from `first` to the one `link` links to the old head (null for none),
    /// with one atomic operation; false if the stack is closed (nothing pushed, and `link` was
    /// called with null last).
    ///
    /// # Safety
    /// The nodes are the caller's to give up, `first` is 8-aligned, and `link` writes only the
    /// last node's link.
    #[inline]
    pub(crate) unsafe fn try_push(&self, first: *mut u8, mut link: impl FnMut(*mut u8)) -> bool {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            if head == CLOSED {
                // An attempt that lost to the close linked the last node to the stack's old
                // head, nodes the consumer took as it closed: the chain must end here again, or
                // the caller would place those a second time.
                link(null_mut());
                return false;
            }
            link(head);
            // Release: every link and every node's contents must be visible to the consumer's
            // acquiring swap.
            match self.head.compare_exchange_weak(head, first, PUSH_ORDER, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(h) => head = h,
            }
        }
    }

    /// Closes the stack: later pushes fail. Returns what it held (null: nothing), which the
    /// caller now owns.
    pub(crate) fn close(&self) -> *mut u8 {
        let head = self.head.swap(CLOSED, TAKE_ORDER);
        debug_assert!(head != CLOSED, "hakmem: a queue closed twice");
        head
    }

    /// Opens a closed (or never used) stack, empty. The caller is its consumer from now on.
    pub(crate) fn open(&self) {
        self.head.store(null_mut(), Ordering::Relaxed);
    }

    /// Takes the whole (open) stack (null: nothing); the caller owns every node on it.
    #[inline]
    pub(crate) fn take_all(&self) -> *mut u8 {
        if self.head.load(Ordering::Relaxed).is_null() {
            return null_mut();
        }
        // FAULT fault-drain-not-atomic (failure 6): detaches the queue with a load and a store,
        // so a push that lands between them is lost: its nodes are in no list ever again.
        if cfg!(feature = "fault-drain-not-atomic") {
            let head = self.head.load(TAKE_ORDER);
            self.head.store(null_mut(), Ordering::Relaxed);
            return head;
        }
        // Acquire pairs with the Release of every push, making their links readable.
        self.head.swap(null_mut(), TAKE_ORDER)
    }

    /// The first node, without taking the stack (null: none, or closed); for the consistency
    /// sweep, which runs while no thread frees.
    pub(crate) fn peek(&self) -> *mut u8 {
        let h = self.head.load(Ordering::Acquire);
        if h == CLOSED { null_mut() } else { h }
    }

    /// True if nothing is waiting (a hint; the consumer takes to be sure). A closed stack counts
    /// as empty.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        let h = self.head.load(Ordering::Relaxed);
        h.is_null() || h == CLOSED
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Release;

    fn slab_over(buf: &mut [u64], slot: usize) -> Slab {
        let mut s = Slab::unassigned();
        let start = buf.as_mut_ptr().cast::<u8>();
        let limit = unsafe { start.add(buf.len() * 8) };
        s.local.assign(3, slot, start, limit, true);
        s
    }

    #[test]
    fn carve_pop_push_hand_out_each_slot_once() {
        let mut buf = vec![0u64; 64];
        let mut s = slab_over(&mut buf, 32);
        let mut slots = vec![unsafe { s.local.carve::<Release>() }];
        while let Some(b) = s.local.pop::<Release>() {
            slots.push(b);
        }
        assert!(!s.local.can_carve());
        assert_eq!(slots.len(), 16);
        assert_eq!(s.local.used, 16);
        // Handed out in address order, one stride apart, each once.
        for w in slots.windows(2) {
            assert_eq!(w[1].as_ptr().addr() - w[0].as_ptr().addr(), 32);
        }
        for &b in &slots[..15] {
            assert!(!unsafe { s.local.push::<Release>(b) });
        }
        assert!(unsafe { s.local.push::<Release>(slots[15]) });
    }

    #[test]
    fn remote_frees_come_back_through_drain() {
        let mut buf = vec![0u64; 64];
        let mut s = slab_over(&mut buf, 64);
        let a = unsafe { s.local.carve::<Release>() };
        let b = s.local.pop::<Release>().unwrap();
        assert_eq!(s.local.used, 2);
        unsafe {
            s.remote.push::<Release>(a);
            s.remote.push::<Release>(b);
        }
        assert!(!s.remote.is_empty());
        let before = s.local.free;
        assert_eq!(s.local.drain::<Release>(&s.remote), 2);
        assert_eq!(s.local.used, 0);
        assert!(s.remote.is_empty());
        assert_eq!(s.local.pop::<Release>(), Some(b));
        assert_eq!(s.local.pop::<Release>(), Some(a));
        assert_eq!(s.local.free, before);
    }

    #[test]
    fn remote_pushes_from_many_threads_all_arrive() {
        let mut buf = vec![0u64; 8 * 512];
        let mut s = slab_over(&mut buf, 64);
        struct Slots(Vec<BasePtr>);
        // SAFETY: each chunk of slots is handed to exactly one pushing thread.
        unsafe impl Send for Slots {}
        let mut slots = vec![unsafe { s.local.carve::<Release>() }];
        while slots.len() < 512 {
            match s.local.pop::<Release>() {
                Some(b) => slots.push(b),
                None => slots.push(unsafe { s.local.carve::<Release>() }),
            }
        }
        let shared = &s.remote;
        std::thread::scope(|sc| {
            for chunk in slots.chunks(128) {
                let chunk = Slots(chunk.to_vec());
                sc.spawn(move || {
                    let chunk = chunk;
                    for b in chunk.0 {
                        unsafe { shared.push::<Release>(b) };
                    }
                });
            }
        });
        assert_eq!(s.local.drain::<Release>(&s.remote), 512);
        assert_eq!(s.local.used, 0);
    }
}
