//! Control through std: with `HakMem` as the global allocator, an overflow of a `Vec`'s buffer by
//! one element is reported by ASan in an ASan build (std itself rebuilt with ASan). A plain
//! build's release allocator cannot see it, so the control runs only under ASan.

use hakmem_sanitizers::{expect_report, sanitizer, CHILD_ENV};
use std::hint::black_box;

#[global_allocator]
static A: hakmem::HakMem = hakmem::HakMem;

#[test]
fn child() {
    if std::env::var(CHILD_ENV).as_deref() != Ok("vec-overflow") {
        return;
    }
    let mut v: Vec<u32> = Vec::with_capacity(10);
    v.extend(0..10);
    let p = black_box(v.as_mut_ptr());
    // SAFETY: none, on purpose: element 10 of a 10-element buffer (40 bytes in a 48-byte slot).
    unsafe { p.add(10).write(7) };
    black_box(&v);
}

#[test]
fn control_vec_overflow_under_the_global_allocator() {
    if sanitizer() != "asan" {
        eprintln!("control vec-overflow: skipped: needs ASan");
        return;
    }
    expect_report(
        "child",
        "vec-overflow",
        &[],
        &["ERROR: AddressSanitizer: use-after-poison", "WRITE of size 4", "controls_global::child"],
    );
}
