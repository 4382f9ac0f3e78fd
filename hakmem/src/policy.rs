//! Policies: the compile-time switch between the release allocator and its checked twin.
//!
//! The heap, the caches and the layout are generic over a [`Policy`]. Every check sits behind
//! `if P::CHECKED`, a constant, so a release build compiles them away and a checked heap can live
//! beside a release heap in one program (the fuzz harness needs exactly that). The checks
//! themselves are all in [`crate::check`].

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

/// The checked policy: a canary header and tail per block, poisoned free blocks, encoded links,
/// and a shadow map of every block's state. See [`crate::check`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Checked;

impl Policy for Checked {
    const HEADER: usize = 16;
    const MIN_TAIL: usize = 1;
    const CHECKED: bool = true;
    const NAME: &'static str = "checked";
}
