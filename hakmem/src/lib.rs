//! hakmem: a fast small-object allocator with a checked twin, built to be fuzzed.
//!
//! Where things are:
//! - the fast paths (malloc pop, free push): [`cache`] (`CacheInner::alloc_class`, `free`);
//! - the block layout and pointer types: [`layout`];
//! - slabs and the lock-free remote-free queue: `slab`; remote frees in transit: `batch`;
//!   regions: `region`;
//! - the heap (slab pool, abandonment, large blocks, returning memory): [`heap`];
//! - the global allocator, TLS caches, and C malloc semantics: [`global`];
//! - the checked mode (canaries, poison, shadow map), all of it: [`check`]; its reports:
//!   [`report`]; the switch between the two: [`policy`];
//! - sampled guard-page blocks (GWP-ASan style) and their fault handler: `guard`.
//!
//! The modules are layers, each importing only those before it (`tests/layers.rs` keeps it so):
//! `sync`, `list`, `report`, `policy`, `os`, `lock`, `asan`, `size_class`, `layout`, `slab`,
//! `batch`, `region`, `guard`, `check`, `heap`, `cache`, `verify`, `global`. The slabs call the checked mode
//! only through the free-list hooks of [`Policy`]; the heap and the caches call [`check`]
//! behind `if P::CHECKED` and own the state it checks.
//!
//! A [`Heap`] is an ordinary value: make one, take [`ThreadCache`]s from it (several per OS
//! thread if you like), drop it and every byte goes back to the OS. [`HakMem`] is the process-wide
//! allocator for `#[global_allocator]`; the `hakmem-preload` crate exports it as C malloc.

pub mod asan;
mod batch;
pub mod cache;
pub mod check;
pub mod global;
mod guard;
pub mod heap;
pub mod layout;
mod list;
mod lock;
pub mod os;
pub mod policy;
pub mod report;
mod region;
pub mod size_class;
mod slab;
pub mod sync;
mod verify;

pub use cache::ThreadCache;
pub use global::{HakMem, HakMemChecked};
pub use heap::{Heap, HeapStats, Limits};
pub use check::Checked;
pub use policy::{Policy, Release};
pub use report::{Identity, Report, ReportKind};
