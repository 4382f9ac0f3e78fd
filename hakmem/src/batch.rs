//! Batches: remote frees on their way to the cache that owns their slabs, as arrays of slot
//! addresses.
//!
//! A freeing thread names each slot it frees in a batch for the slot's owner and writes nothing
//! into the slot; the owner, taking the batch in, links each slot onto its slab's free list. A
//! slot's cache line thus stays where it was: with the owner, which allocated the slot and will
//! hand it out again, while the freeing core at most read it. The runs this replaced linked the
//! freed slots themselves, which moved each line to the freeing core for the link and back to
//! the owner for its next pop. Side by side with them (5 alternations, median): all-to-all went
//! from 1.21x to 1.33x jemalloc, the C exchange from 0.217 s to 0.196 s (tcmalloc 0.201 s) and
//! xmalloc-test from 0.426 s to 0.399 s; the other remote workloads moved within their noise.
//! It costs instructions: the owner links every slot (17 instructions each, where a run was
//! spliced whole), 11 more per remote free in all on prod-cons.
//!
//! A batch is [`BATCH_SLOTS`] slot addresses in 1 KiB. Batches live in chunks of their
//! own that the heap maps and keeps until it drops; caches take them a few at a time
//! into a stash and give the surplus back ([`BatchList`]), so the heap's lock is taken once per
//! many batches. A batch that the owner has taken in stays with the owner, empty, for its own
//! remote frees.

use crate::layout::BasePtr;
use crate::slab::Stack;
use crate::sync::Plain;
use core::ptr::null_mut;

/// Slots a batch names at most.
///
/// The addresses cross cores whatever the batch size (8 bytes a slot); what a larger batch saves
/// is the atomic operations at both ends, each of which waits for the line of the inbox and for
/// the core's pending stores. 126 rather than 30 (256 bytes), side by side under `LD_PRELOAD`
/// (5 alternations): xmalloc-test 0.12-0.13 s to 0.10-0.11 s, exchange 0.18-0.19 s to 0.17-0.18 s,
/// for 2-5% more peak RSS; in the Rust suite xmalloc-4x4 1.43x to 1.57x jemalloc, all-to-all
/// 1.26x to 1.38x, the others within their noise. 510 (4 KiB) rather than 126, alternated for 12
/// minutes (hakmem/jemalloc, medians): xmalloc-like 1.06x to 1.10x with the CPUs near but 0.89x
/// to 0.84x far apart, prod-cons 1.41x to 1.53x far apart, the rest within 3%: no clear gain.
pub(crate) const BATCH_SLOTS: usize = 126;

/// Remote frees for one owning cache: `len` given-up slots, by their base addresses.
#[repr(C)]
pub(crate) struct Batch {
    /// The next batch in an inbox or a list of empty batches.
    next: *mut Batch,
    len: usize,
    slots: [*mut u8; BATCH_SLOTS],
}

/// Bytes of a batch: sixteen cache lines.
pub(crate) const BATCH_BYTES: usize = 1024;
const _: () = assert!(core::mem::size_of::<Batch>() == BATCH_BYTES);

impl Batch {
    /// Slots named.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Names one more slot.
    ///
    /// # Safety
    /// The batch has room (`len() < BATCH_SLOTS`); the caller gives the slot up to it.
    #[inline(always)]
    pub(crate) unsafe fn push(&mut self, b: BasePtr) {
        debug_assert!(self.len < BATCH_SLOTS);
        // The harness's race check: the owner reads what the sender wrote (see `sync`).
        crate::sync::plain((&raw const self.len).addr(), Plain::Batch, true);
        // SAFETY: in bounds per the contract.
        unsafe { *self.slots.get_unchecked_mut(self.len) = b.as_ptr() };
        self.len += 1;
    }

    /// The slots named, oldest first.
    #[inline(always)]
    pub(crate) fn slots(&self) -> &[*mut u8] {
        crate::sync::plain((&raw const self.len).addr(), Plain::Batch, false);
        // SAFETY: `len` never exceeds the array (push's contract).
        unsafe { self.slots.get_unchecked(..self.len) }
    }

    /// The next batch of an inbox's chain (null at its end).
    pub(crate) fn next(&self) -> *mut Batch {
        crate::sync::plain((&raw const self.next).addr(), Plain::Batch, false);
        self.next
    }

    /// Test only: names `b` as the slot at `i` (a planted bug).
    #[cfg(test)]
    pub(crate) fn set_slot(&mut self, i: usize, b: *mut u8) {
        self.slots[i] = b;
    }

    /// Test only: links `next` after this batch (a planted bug).
    #[cfg(test)]
    pub(crate) fn set_next(&mut self, next: *mut Batch) {
        self.next = next;
    }
}

/// A cache's inbox: the batches other caches sent it, taken whole by the cache with one swap;
/// closed when the cache ends, after which sends fail.
#[repr(C)]
pub(crate) struct BatchQueue {
    stack: Stack,
}

impl BatchQueue {
    /// Sends `b` with one atomic operation; false (nothing sent) if the queue is closed.
    ///
    /// # Safety
    /// `b` is a batch the caller gives up.
    #[inline]
    pub(crate) unsafe fn try_push(&self, b: *mut Batch) -> bool {
        // SAFETY: the batch is ours until the push publishes it (with its slots: Release).
        unsafe {
            self.stack.try_push(b.cast(), |head| {
                crate::sync::plain((&raw const (*b).next).addr(), Plain::Batch, true);
                (*b).next = head.cast();
            })
        }
    }

    /// Takes every batch sent (a chain through [`Batch::next`], null: none).
    #[inline]
    pub(crate) fn take_all(&self) -> *mut Batch {
        self.stack.take_all().cast()
    }

    /// Closes the queue; returns what it held, which the caller now owns.
    pub(crate) fn close(&self) -> *mut Batch {
        self.stack.close().cast()
    }

    /// Opens a closed or never used queue, empty.
    pub(crate) fn open(&self) {
        self.stack.open()
    }

    /// The first batch without taking any (for the consistency sweep, while no thread frees).
    pub(crate) fn peek(&self) -> *mut Batch {
        self.stack.peek().cast()
    }

    /// True if no batch waits (a hint). A closed queue counts as empty.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.stack.is_empty()
    }
}

/// Empty batches: a cache's stash, or the heap's pool. Owned by whoever holds the list.
pub(crate) struct BatchList {
    head: *mut Batch,
    len: usize,
}

// SAFETY: the batches are plain memory owned by the list's holder (the heap's pool is under its
// lock).
unsafe impl Send for BatchList {}

impl BatchList {
    /// No batch.
    pub(crate) const fn new() -> Self {
        BatchList { head: null_mut(), len: 0 }
    }

    /// Batches held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Takes a batch, empty; null if there is none.
    #[inline]
    pub(crate) fn pop(&mut self) -> *mut Batch {
        let b = self.head;
        if !b.is_null() {
            // SAFETY: the list's batches are ours.
            self.head = unsafe { (*b).next };
            self.len -= 1;
        }
        b
    }

    /// Keeps `b`, emptied.
    ///
    /// # Safety
    /// `b` is a batch (of a live chunk) that the caller gives up, in no other list.
    #[inline]
    pub(crate) unsafe fn push(&mut self, b: *mut Batch) {
        // SAFETY: per the contract.
        unsafe {
            (*b).len = 0;
            (*b).next = self.head;
        }
        self.head = b;
        self.len += 1;
    }

    /// Moves up to `n` batches from `other` into this list.
    pub(crate) fn take_from(&mut self, other: &mut BatchList, n: usize) {
        for _ in 0..n {
            let b = other.pop();
            if b.is_null() {
                return;
            }
            // SAFETY: popped, so ours and in no list.
            unsafe { self.push(b) };
        }
    }

    /// Makes batches of the fresh memory `[start, start + bytes)` and keeps them.
    ///
    /// # Safety
    /// The memory is the caller's to give up, `BATCH_BYTES`-aligned, and stays mapped while any
    /// of its batches is used.
    pub(crate) unsafe fn carve(&mut self, start: *mut u8, bytes: usize) {
        for i in (0..bytes / BATCH_BYTES).rev() {
            // SAFETY: per the contract.
            unsafe { self.push(start.add(i * BATCH_BYTES).cast()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_hands_out_each_batch_once_and_a_closed_queue_refuses() {
        let mut mem = vec![0u64; 4 * BATCH_BYTES / 8];
        let mut pool = BatchList::new();
        unsafe { pool.carve(mem.as_mut_ptr().cast(), 4 * BATCH_BYTES) };
        let mut stash = BatchList::new();
        stash.take_from(&mut pool, 3);
        assert_eq!((stash.len(), pool.len()), (3, 1));
        let (a, b) = (stash.pop(), stash.pop());
        assert!(a != b && !a.is_null() && !b.is_null());
        let q = BatchQueue { stack: Stack::new() };
        unsafe {
            (*a).push(BasePtr::new_unchecked(core::ptr::without_provenance_mut(64)));
            assert!(q.try_push(a) && q.try_push(b));
            assert_eq!(q.take_all(), b);
            assert_eq!(((*b).next(), (*a).next(), (*a).slots().len()), (a, null_mut(), 1));
            assert!(q.try_push(a));
            assert_eq!(q.close(), a);
            assert!(!q.try_push(b) && (*b).next().is_null() && q.is_empty());
            stash.push(a);
            stash.push(b);
        }
        assert_eq!(stash.len(), 3);
    }
}
