//! Policies: the compile-time switch between the release allocator and its checked twin.
//!
//! The heap, the caches, the slabs and the layout are generic over a [`Policy`]. The release
//! policy is here; the checked one, [`crate::check::Checked`], lives with its checks. The slab
//! layer calls the free-list hooks below (no-ops for [`Release`]) and knows nothing else of
//! checking; the heap and the caches, which sit above the checks, call them behind
//! `if P::CHECKED`, a constant, so a release build compiles every check away and a checked heap
//! can live beside a release heap in one program (the fuzz harness needs exactly that).

/// Compile-time configuration of a heap.
pub trait Policy: 'static + Send + Sync + Sized {
    /// Bytes the allocator keeps in front of the client's bytes in every slab slot.
    const HEADER: usize;
    /// Bytes a slot keeps at least after the client's bytes (the tail canary's minimum).
    const MIN_TAIL: usize;
    /// Whether the checks of [`crate::check`] run.
    const CHECKED: bool;
    /// Name printed in statistics and reports.
    const NAME: &'static str;

    /// The link `next` (non-null) was just read from the free slot `slot` of a slab in the state
    /// `c`: returns it if it names a free slot of the slab, else null (after a report; the list
    /// ends there).
    ///
    /// # Safety
    /// `slot` is a free slot of a live slab of this policy's heap, in the state `c`.
    #[inline(always)]
    unsafe fn next_free(_c: Carving, _slot: *mut u8, next: *mut u8) -> *mut u8 {
        next
    }

    /// The `n` slots from `first` were just carved from a slab in the state `c`, for its free list.
    ///
    /// # Safety
    /// The slots are fresh and owned by the caller.
    #[inline(always)]
    unsafe fn fresh_slots(_c: Carving, _first: *mut u8, _n: usize) {}

    /// The slot `slot` was just taken from its slab's remote queue: false (after a report) if it
    /// was not queued there, and the drain must stop before it.
    ///
    /// # Safety
    /// `slot` is a slot of a live slab of this policy's heap, in the state `c`, owned by the caller.
    #[inline(always)]
    unsafe fn drained(_c: Carving, _slot: *mut u8) -> bool {
        true
    }
}

/// What the free-list hooks of a [`Policy`] see of a slab: its class and how far it was carved.
#[derive(Clone, Copy, Debug)]
pub struct Carving {
    /// The slab's size class.
    pub class: usize,
    /// Its slot size in bytes.
    pub slot_size: usize,
    /// Its first slot never carved.
    pub bump: *mut u8,
}

/// The production policy: no per-block header, no checks on any path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Release;

impl Policy for Release {
    const HEADER: usize = 0;
    const MIN_TAIL: usize = 0;
    const CHECKED: bool = false;
    const NAME: &'static str = "release";
}
