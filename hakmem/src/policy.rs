//! Policies: the compile-time switch between the release allocator and its checked twin.
//!
//! The heap, the caches and the layout are generic over a [`Policy`]; every per-block check is a
//! call on the policy, so a release build compiles them away and a checked heap can live beside a
//! release heap in one program (the fuzz harness needs exactly that).

/// Compile-time configuration of a heap.
pub trait Policy: 'static + Send + Sync + Sized {
    /// Bytes the allocator keeps in front of the client's bytes in every slab slot.
    const HEADER: usize;
    /// Name printed in statistics and reports.
    const NAME: &'static str;
}

/// The production policy: no per-block header, no checks on any path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Release;

impl Policy for Release {
    const HEADER: usize = 0;
    const NAME: &'static str = "release";
}
