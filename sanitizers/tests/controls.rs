//! Control tests: each runs a deliberately broken program in a child process (this same test
//! binary, re-executed with `HAKMEM_SANITIZER_CHILD=<case>`) and fails unless the child dies with
//! the expected report. If hakmem's ASan poisoning (or LeakSanitizer, or the checked mode) is
//! switched off or broken, the child exits cleanly and these tests turn red.
//!
//! What each build expects:
//!
//! | case              | ASan build, release heap      | ASan build, checked heap      | plain build, checked heap  |
//! |-------------------|-------------------------------|-------------------------------|----------------------------|
//! | one-byte overflow | ASan use-after-poison (WRITE) | ASan use-after-poison (WRITE) | checked: heap buffer overflow |
//! | ... of a large block, fresh or reused mapping | ASan use-after-poison (WRITE) | - | not detectable (skipped) |
//! | read after free   | ASan use-after-poison (READ)  | ASan use-after-poison (READ)  | not detectable (skipped)   |
//! | double free       | hakmem line + ASan report     | checked: double free          | checked: double free       |
//! | leaked Box        | LeakSanitizer: memory leaks (also in the LSan-only build, `just lsan`)                     |
//!
//! A plain build's release heap detects none of these by design, so it has no controls.

use hakmem::{Checked, Heap, Policy, Release};
use hakmem_sanitizers::{expect_report, is_child, sanitizer, CHILD_ENV};
use std::hint::black_box;

const ASAN_BAD_ACCESS: &str = "ERROR: AddressSanitizer: use-after-poison";

fn overflow_one_byte<P: Policy>() {
    let heap: Heap<P> = Heap::new();
    let mut c = heap.cache();
    let p = black_box(c.alloc(24, 8));
    // SAFETY: none, on purpose: byte 24 of a 24-byte block.
    unsafe {
        p.add(24).write(0x41);
        c.free(p);
    }
}

/// A one-byte overflow of a large block: in a fresh mapping, or (`reused`) in a mapping the
/// heap's large cache hands out again, whose poisoning works differently.
fn overflow_large(reused: bool) {
    let heap: Heap<Release> = Heap::new();
    let mut c = heap.cache();
    let size = if reused {
        // SAFETY: a live block of this cache, freed once; its mapping goes to the large cache.
        let first = c.alloc(100_000, 8);
        unsafe { c.free(first) };
        90_000
    } else {
        100_000
    };
    let p = black_box(c.alloc(size, 8));
    // SAFETY: none, on purpose: the byte after the block.
    unsafe {
        p.add(size).write(0x41);
        c.free(p);
    }
}

/// A one-byte underflow of a 64 KiB-aligned large block, whose client bytes start 64 KiB into
/// its mapping: in a mapping that held a block at another offset (from the large cache), or
/// (`spare`) in one given back and handed out again as new (see `hakmem::os::Spares`).
fn underflow_aligned_large(spare: bool) {
    let heap: Heap<Release> = Heap::new();
    if spare {
        heap.set_large_cache(0, 0);
        heap.set_spare_mappings(64 << 20);
    }
    let mut c = heap.cache();
    let first = if spare { c.alloc(1000, 65536) } else { c.alloc(100_000, 8) };
    // SAFETY: a live block of this cache, freed once.
    unsafe { c.free(first) };
    let p = black_box(c.alloc(1000, 65536));
    // SAFETY: none, on purpose: the byte in front of the block.
    unsafe {
        p.sub(1).write(0x41);
        c.free(p);
    }
}

fn read_after_free<P: Policy>() {
    let heap: Heap<P> = Heap::new();
    let mut c = heap.cache();
    let keep = c.alloc(100, 8);
    let p = black_box(c.alloc(100, 8));
    // SAFETY: none, on purpose: reads a byte of a freed block.
    unsafe {
        p.write_bytes(7, 100);
        c.free(p);
        black_box(p.add(10).read());
        c.free(keep);
    }
}

fn double_free<P: Policy>() {
    let heap: Heap<P> = Heap::new();
    let mut c = heap.cache();
    let keep = c.alloc(64, 8);
    let p = black_box(c.alloc(64, 8));
    // SAFETY: none, on purpose: the second free.
    unsafe {
        c.free(p);
        c.free(p);
        c.free(keep);
    }
}

fn leak_a_box() {
    // The leak happens on a thread that then exits, so no stale copy of the pointer is left in a
    // live stack or register for LeakSanitizer to mistake for a reference.
    std::thread::spawn(|| {
        let b = Box::new([0x5au8; 4000]);
        std::mem::forget(black_box(b));
    })
    .join()
    .unwrap();
}

/// The child side: does the bad thing named by the environment, or nothing in a normal run.
#[test]
fn child() {
    let Ok(case) = std::env::var(CHILD_ENV) else { return };
    match case.as_str() {
        "overflow-release" => overflow_one_byte::<Release>(),
        "overflow-checked" => overflow_one_byte::<Checked>(),
        "overflow-large-fresh" => overflow_large(false),
        "overflow-large-reused" => overflow_large(true),
        "underflow-large-reused" => underflow_aligned_large(false),
        "underflow-large-spare" => underflow_aligned_large(true),
        "read-after-free-release" => read_after_free::<Release>(),
        "read-after-free-checked" => read_after_free::<Checked>(),
        "double-free-release" => double_free::<Release>(),
        "double-free-checked" => double_free::<Checked>(),
        "leak" => leak_a_box(),
        other => panic!("unknown control case {other}"),
    }
    // Reaching here means nothing fired; the parent sees a clean exit and fails.
    assert!(is_child(&case));
}

fn control(case: &str, needles: &[&str]) {
    expect_report("child", case, &[], needles);
}

fn asan() -> bool {
    sanitizer() == "asan"
}

#[test]
fn control_one_byte_overflow() {
    if asan() {
        control("overflow-release", &[ASAN_BAD_ACCESS, "WRITE of size 1", "controls::overflow_one_byte"]);
        control("overflow-checked", &[ASAN_BAD_ACCESS, "WRITE of size 1", "controls::overflow_one_byte"]);
        control("overflow-large-fresh", &[ASAN_BAD_ACCESS, "WRITE of size 1", "controls::overflow_large"]);
        control("overflow-large-reused", &[ASAN_BAD_ACCESS, "WRITE of size 1", "controls::overflow_large"]);
        control("underflow-large-reused", &[ASAN_BAD_ACCESS, "WRITE of size 1", "controls::underflow_aligned_large"]);
        control("underflow-large-spare", &[ASAN_BAD_ACCESS, "WRITE of size 1", "controls::underflow_aligned_large"]);
    } else {
        control("overflow-checked", &["hakmem: heap buffer overflow of", "byte 24 is 0x41"]);
    }
}

#[test]
fn control_read_after_free() {
    if asan() {
        control("read-after-free-release", &[ASAN_BAD_ACCESS, "READ of size 1", "controls::read_after_free"]);
        control("read-after-free-checked", &[ASAN_BAD_ACCESS, "READ of size 1", "controls::read_after_free"]);
    } else {
        eprintln!("control read-after-free: skipped: only ASan sees reads (checked mode sees writes after free)");
    }
}

#[test]
fn control_double_free() {
    if asan() {
        control(
            "double-free-release",
            &["hakmem: double free", ASAN_BAD_ACCESS, "hakmem::asan::check_live", "controls::double_free"],
        );
    }
    control("double-free-checked", &["hakmem: double free of"]);
}

#[test]
fn control_leak() {
    if hakmem_sanitizers::leak_checked() {
        control(
            "leak",
            &["ERROR: LeakSanitizer: detected memory leaks", "Direct leak of 4000 byte(s) in 1 object(s)", "controls::leak_a_box"],
        );
    } else {
        eprintln!("control leak: skipped: LeakSanitizer runs in ASan and LSan builds only");
    }
}
