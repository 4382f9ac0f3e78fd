//! The allocators under test, all living in this one process and called through the same
//! kind of `dyn` handle so none gets an inlining advantage over another.
//!
//! To add one: add the crate to bench/Cargo.toml, declare a static of its `GlobalAlloc` type
//! and append an [`Allocator`] entry to [`ALLOCATORS`]. The peers are linked with their
//! symbols prefixed (the crates' default), so none of them replaces the process's `malloc`
//! and each is reached only through its handle, like hakmem.

use std::alloc::{GlobalAlloc, System};

/// How workloads reach an allocator: shared, thread-safe, and alive for the whole run.
pub type Handle = &'static (dyn GlobalAlloc + Sync);

/// One named allocator under test.
pub struct Allocator {
    /// Name used on the command line, in the table and in JSON.
    pub name: &'static str,
    /// The allocator itself.
    pub handle: Handle,
}

static SYSTEM: System = System;
static HAKMEM: hakmem::HakMem = hakmem::HakMem;
static HAKMEM_CHECKED: hakmem::HakMemChecked = hakmem::HakMemChecked;
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
static SNMALLOC: snmalloc_rs::SnMalloc = snmalloc_rs::SnMalloc;

/// Every allocator the binary knows, in report order; "system" first because it is the baseline.
pub static ALLOCATORS: &[Allocator] = &[
    Allocator {
        name: "system",
        handle: &SYSTEM,
    },
    Allocator {
        name: "hakmem",
        handle: &HAKMEM,
    },
    Allocator {
        name: "hakmem-checked",
        handle: &HAKMEM_CHECKED,
    },
    Allocator {
        name: "mimalloc",
        handle: &MIMALLOC,
    },
    Allocator {
        name: "jemalloc",
        handle: &JEMALLOC,
    },
    Allocator {
        name: "snmalloc",
        handle: &SNMALLOC,
    },
];

/// Allocators whose results get a "vs NAME" ratio column when they took part in a run.
pub const REFERENCES: &[&str] = &["system", "mimalloc", "jemalloc"];

/// Looks an allocator up by its command-line name.
pub fn by_name(name: &str) -> Option<&'static Allocator> {
    ALLOCATORS.iter().find(|a| a.name == name)
}
