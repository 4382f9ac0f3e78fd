//! Checked mode: every check fires on the misuse or corruption it exists for, with the right
//! kind and fields, and never on correct use. Each test plants exactly one bug.

use hakmem::check::{POISON, TAIL};
use hakmem::{Checked, Heap, Release, Report, ReportKind, ThreadCache};

type Cache<'h> = ThreadCache<'h, Checked>;

/// A checked heap that records its reports.
fn heap() -> Heap<Checked> {
    let h = Heap::new();
    h.capture_reports();
    h
}

/// The single report the heap made, asserting there was exactly one.
fn only_report(h: &Heap<Checked>) -> Report {
    let mut r = h.take_reports();
    assert_eq!(r.len(), 1, "expected one report, got {r:#?}");
    r.remove(0)
}

fn filled(c: &mut Cache<'_>, size: usize) -> *mut u8 {
    let p = c.alloc(size, 8);
    assert!(!p.is_null());
    unsafe { p.write_bytes(0x5a, size) };
    p
}

#[test]
fn correct_use_reports_nothing() {
    let h = heap();
    let mut a = h.cache();
    let mut b = h.cache();
    let mut v = Vec::new();
    for i in 0..2000usize {
        v.push(filled(&mut a, 1 + i * 37 % 5000));
    }
    for (i, p) in v.drain(..).enumerate() {
        unsafe {
            if i % 3 == 0 {
                b.free(p)
            } else {
                a.free(p)
            }
        };
    }
    let z = a.alloc_zeroed(3000, 16);
    assert!(unsafe { core::slice::from_raw_parts(z, 3000) }.iter().all(|&x| x == 0));
    let r = unsafe { a.realloc(z, 9000, 16) };
    unsafe { a.free(r) };
    drop((a, b));
    assert_eq!(h.take_reports(), vec![]);
}

#[test]
fn double_free_names_both_frees() {
    let h = heap();
    let mut c = h.cache();
    let id = c.id();
    let p = filled(&mut c, 40);
    unsafe {
        c.free(p);
        c.free(p);
    }
    let r = only_report(&h);
    assert_eq!(r.kind, ReportKind::DoubleFree);
    assert_eq!(r.addr, p.addr());
    assert_eq!(r.requested, Some(40));
    assert_eq!(r.class_size, Some(64));
    let (a, f) = (r.alloc.unwrap(), r.free.unwrap());
    assert_eq!((a.thread, f.thread, r.thread), (id, id, id));
    assert!(a.seq < f.seq);
    let text = r.to_string();
    assert!(text.starts_with(&format!("double free of {p:p} (class ")), "{text}");
    assert!(text.contains(&format!("allocated at #{} by thread {id}, first freed at #{} by thread {id}", a.seq, f.seq)), "{text}");
}

#[test]
fn double_free_through_another_cache_is_caught_before_the_remote_queue() {
    let h = heap();
    let mut a = h.cache();
    let mut b = h.cache();
    let p = filled(&mut a, 100);
    unsafe {
        b.free(p); // remote: queued on a's slab
        b.free(p);
    }
    let r = only_report(&h);
    assert_eq!(r.kind, ReportKind::DoubleFree);
    assert_eq!(r.free.unwrap().thread, b.id());
    // The queue holds the block once: a drains it and hands it out again, no report.
    let q = a.alloc(100, 8);
    unsafe { a.free(q) };
    assert_eq!(h.take_reports(), vec![]);
}

#[test]
fn interior_pointer_is_an_invalid_free_with_its_offset() {
    let h = heap();
    let mut c = h.cache();
    let p = filled(&mut c, 200);
    unsafe { c.free(p.add(24)) };
    let r = only_report(&h);
    assert_eq!(r.kind, ReportKind::InvalidFree);
    assert_eq!(r.addr, p.addr() + 24);
    assert_eq!(r.offset, Some(24));
    unsafe { c.free(p) };
    assert_eq!(h.take_reports(), vec![]);
}

#[test]
fn slot_never_handed_out_is_an_invalid_free() {
    let h = heap();
    let mut c = h.cache();
    let p = filled(&mut c, 48);
    let q = filled(&mut c, 48);
    let stride = q.addr() - p.addr();
    let never = unsafe { q.add(stride) };
    unsafe { c.free(never) };
    let r = only_report(&h);
    assert_eq!(r.kind, ReportKind::InvalidFree);
    assert_eq!(r.detail, "never allocated");
    assert_eq!(r.alloc, None);
}

#[test]
fn wild_and_foreign_pointers_are_reported_without_being_followed() {
    let h = heap();
    let mut c = h.cache();
    let _warm = filled(&mut c, 10);
    let mut local = [0u64; 4];
    unsafe { c.free(local.as_mut_ptr().cast()) };
    let r = only_report(&h);
    assert_eq!(r.kind, ReportKind::ForeignPointer);
    assert_eq!(r.addr, local.as_ptr().addr());

    let other = heap();
    let mut oc = other.cache();
    let theirs = filled(&mut oc, 10);
    unsafe { c.free(theirs) };
    assert_eq!(only_report(&h).kind, ReportKind::ForeignPointer);
    let boxed = Box::into_raw(Box::new([0u8; 64]));
    unsafe { c.free(boxed.cast()) };
    assert_eq!(only_report(&h).kind, ReportKind::ForeignPointer);
    unsafe { drop(Box::from_raw(boxed)) };
    unsafe { oc.free(theirs) };
    assert_eq!(other.take_reports(), vec![]);
}

#[test]
#[cfg_attr(asan, ignore = "ASan reports the planted misuse first (sanitizers/tests/controls.rs)")]
fn one_byte_overflow_is_caught_at_free_with_its_offset() {
    let h = heap();
    let mut c = h.cache();
    for size in [1usize, 13, 64, 100, 1000, 5000, 30000] {
        let p = filled(&mut c, size);
        unsafe {
            p.add(size).write(0);
            c.free(p);
        }
        let r = only_report(&h);
        assert_eq!(r.kind, ReportKind::Overflow, "{r}");
        assert_eq!((r.addr, r.offset, r.requested), (p.addr(), Some(size), Some(size)));
        assert_eq!((r.expected, r.found), (TAIL as u64, 0));
    }
}

#[test]
#[cfg_attr(asan, ignore = "ASan reports the planted misuse first (sanitizers/tests/controls.rs)")]
fn overflow_into_the_next_header_blames_the_block_that_overflowed() {
    let h = heap();
    let mut c = h.cache();
    let p = filled(&mut c, 40);
    let q = filled(&mut c, 40);
    let stride = q.addr() - p.addr();
    let fill = stride - 16; // the whole slot after p's header: tail and q's header word0
    unsafe {
        p.write_bytes(0x77, fill + 16); // runs through p's tail and all of q's header
        c.free(q);
    }
    let r = only_report(&h);
    assert_eq!(r.kind, ReportKind::Overflow, "{r}");
    assert_eq!(r.addr, p.addr());
    assert_eq!(r.offset, Some(40));
}

#[test]
#[cfg_attr(asan, ignore = "ASan reports the planted misuse first (sanitizers/tests/controls.rs)")]
fn write_after_free_is_caught_when_the_slot_comes_back() {
    let h = heap();
    let mut c = h.cache();
    let p = filled(&mut c, 72);
    unsafe {
        c.free(p);
        p.add(30).write(1);
    }
    let q = c.alloc(72, 8);
    assert!(q.is_null(), "the damaged slot must not be handed out");
    let r = only_report(&h);
    assert_eq!(r.kind, ReportKind::WriteAfterFree);
    assert_eq!((r.addr, r.offset), (p.addr(), Some(30)));
    assert_eq!((r.expected, r.found), (POISON as u64, 1));
    assert!(r.free.is_some());
}

#[test]
#[cfg_attr(asan, ignore = "ASan reports the planted misuse first (sanitizers/tests/controls.rs)")]
fn write_after_free_is_caught_when_the_slab_retires_unused() {
    let h = heap();
    let mut c = h.cache();
    let p = filled(&mut c, 500);
    let other = filled(&mut c, 3000); // keeps the 500-B slab out of the bin when it empties
    unsafe {
        c.free(p);
        p.write(9);
    }
    drop(c); // flushes: the empty slab goes back to the pool and is checked on the way
    let r = only_report(&h);
    assert_eq!(r.kind, ReportKind::WriteAfterFree);
    assert_eq!((r.addr, r.offset), (p.addr(), Some(0)));
    let mut c = h.cache();
    unsafe { c.free(other) };
}

#[test]
#[cfg_attr(asan, ignore = "ASan reports the planted misuse first (sanitizers/tests/controls.rs)")]
fn forged_free_list_link_is_rejected_at_pop() {
    let h = heap();
    let mut c = h.cache();
    let p = filled(&mut c, 24);
    let q = filled(&mut c, 24);
    let target = [0u8; 64];
    unsafe {
        c.free(q);
        c.free(p); // p is now the head; its link (in the header's first word) names q
        // A stray write stores a raw pointer there, as an attacker or a bug would.
        p.sub(16).cast::<usize>().write(target.as_ptr().addr());
    }
    let a = c.alloc(24, 8); // pops p and validates the link it leaves as the head
    assert_eq!(a, p);
    let r = only_report(&h);
    assert_eq!(r.kind, ReportKind::CorruptLink);
    assert_eq!(r.addr, p.addr());
    assert_eq!(r.detail, "link points outside the slab's slots");
}

#[test]
#[cfg_attr(asan, ignore = "ASan reports the planted misuse first (sanitizers/tests/controls.rs)")]
fn header_corruption_is_caught_at_free() {
    let h = heap();
    let mut c = h.cache();
    let p = filled(&mut c, 24);
    unsafe {
        // Flip bits of word1 (canary, state, class, thread): writing a constant would leave the
        // header intact whenever the random canary byte already held it.
        p.sub(3).write(p.sub(3).read() ^ 0x5a);
        c.free(p);
    }
    let r = only_report(&h);
    assert_eq!(r.kind, ReportKind::HeaderCorrupt);
    assert_eq!(r.addr, p.addr());
}

#[test]
fn large_blocks_double_and_interior_frees() {
    let h = heap();
    let mut c = h.cache();
    let p = c.alloc(200_000, 8);
    unsafe { c.free(p.add(4096)) };
    assert_eq!(only_report(&h).kind, ReportKind::InvalidFree);
    unsafe {
        c.free(p);
        c.free(p);
    }
    assert_eq!(only_report(&h).kind, ReportKind::DoubleFree);
}

#[test]
fn realloc_and_usable_size_of_freed_blocks() {
    let h = heap();
    let mut c = h.cache();
    let p = filled(&mut c, 50);
    unsafe { c.free(p) };
    assert!(unsafe { c.realloc(p, 80, 8) }.is_null());
    let r = only_report(&h);
    assert_eq!((r.kind, r.detail), (ReportKind::DoubleFree, "realloc of a freed block"));
    assert_eq!(unsafe { c.usable_size(p) }, 0);
    assert_eq!(only_report(&h).kind, ReportKind::DoubleFree);
}

#[test]
fn usable_size_is_the_requested_size_so_using_it_is_no_overflow() {
    let h = heap();
    let mut c = h.cache();
    let p = c.alloc(37, 8);
    let n = unsafe { c.usable_size(p) };
    assert_eq!(n, 37);
    unsafe {
        p.write_bytes(1, n);
        c.free(p);
    }
    assert_eq!(h.take_reports(), vec![]);
}

#[test]
fn release_blocks_carry_no_header_or_tail() {
    // What the checks cost in memory is paid only by checked heaps: a 64-byte request fills a
    // 64-byte release slot exactly, while a checked one needs a larger class.
    let r: Heap<Release> = Heap::new();
    let mut rc = r.cache();
    let a = rc.alloc(64, 8);
    let b = rc.alloc(64, 8);
    assert_eq!(b.addr() - a.addr(), 64);
    assert_eq!(unsafe { rc.usable_size(a) }, 64);
    let h = heap();
    let mut c = h.cache();
    let x = c.alloc(64, 8);
    let y = c.alloc(64, 8);
    assert!(y.addr() - x.addr() >= 64 + 16 + 1);
    unsafe {
        rc.free(a);
        rc.free(b);
        c.free(x);
        c.free(y);
    }
}

#[test]
fn default_action_prints_the_report_and_aborts() {
    if std::env::var_os("HAKMEM_CHILD_DOUBLE_FREE").is_some() {
        let h: Heap<Checked> = Heap::new();
        let mut c = h.cache();
        let p = c.alloc(40, 8);
        unsafe {
            c.free(p);
            c.free(p);
        }
        unreachable!("the checked heap let a double free through");
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "default_action_prints_the_report_and_aborts", "--nocapture", "--test-threads=1"])
        .env("HAKMEM_CHILD_DOUBLE_FREE", "1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "child: {:?}\n{err}", out.status);
    let line = err.lines().find(|l| l.starts_with("hakmem: ")).unwrap_or_else(|| panic!("no report in:\n{err}"));
    assert!(line.starts_with("hakmem: double free of 0x"), "{line}");
    assert!(line.contains("(class ") && line.contains("40 B requested") && line.contains("first freed at #"), "{line}");
}

#[test]
#[cfg_attr(asan, ignore = "ASan reports the planted write after free first")]
fn write_after_free_in_an_abandoned_slab_is_caught_by_the_final_sweep() {
    // The slot goes onto an abandoned slab's remote queue and nothing drains that slab again:
    // only the heap's sweep of its free slots (at drop, or asked for) can see the write.
    let mut h = heap();
    let (p, keep) = {
        let mut a = h.cache();
        let mut b = h.cache();
        let p = filled(&mut a, 64);
        let keep = filled(&mut a, 64);
        drop(a); // the slab is abandoned with two live blocks
        unsafe { b.free(p) }; // queued remote on the abandoned slab
        (p, keep)
    };
    unsafe { p.add(5).write(1) };
    assert_eq!(h.take_reports(), vec![]);
    h.verify_free_slots();
    let r = only_report(&h);
    assert_eq!((r.kind, r.addr, r.offset), (ReportKind::WriteAfterFree, p.addr(), Some(5)));
    let _ = keep;
}

/// An aligned block from a checked heap: in a slab, with every check a 16-aligned one has.
fn aligned(c: &mut Cache<'_>, size: usize, align: usize) -> *mut u8 {
    let p = c.alloc(size, align);
    assert!(!p.is_null());
    assert_eq!(p.addr() % align, 0, "{p:p} not aligned to {align}");
    unsafe { p.write_bytes(0x5a, size) };
    p
}

#[test]
#[cfg_attr(asan, ignore = "ASan reports the planted misuse first (sanitizers/tests/controls.rs)")]
fn aligned_blocks_live_in_slabs_and_are_checked_like_any_other() {
    let h = heap();
    let mut c = h.cache();
    for align in [32usize, 64, 256, 4096] {
        for size in [1usize, 100, 3000] {
            let p = aligned(&mut c, size, align);
            assert_eq!(h.stats().large_blocks, 0, "{size} B at {align} went to the large path");
            assert_eq!(unsafe { c.usable_size(p) }, size);
            // A one-byte overflow, then a second free, then a free inside the block.
            unsafe {
                p.add(size).write(0);
                c.free(p);
            }
            let r = only_report(&h);
            assert_eq!((r.kind, r.addr, r.offset), (ReportKind::Overflow, p.addr(), Some(size)), "{r}");
            let q = aligned(&mut c, size, align);
            unsafe {
                c.free(q);
                c.free(q);
            }
            assert_eq!(only_report(&h).kind, ReportKind::DoubleFree);
            let q = aligned(&mut c, size, align);
            unsafe { c.free(q.sub(16)) };
            let r = only_report(&h);
            assert_eq!((r.kind, r.detail), (ReportKind::InvalidFree, "not the start of a block"), "{r}");
            unsafe { c.free(q) };
            assert!(h.take_reports().is_empty());
        }
    }
}

#[test]
#[cfg_attr(asan, ignore = "ASan reports the planted misuse first (sanitizers/tests/controls.rs)")]
fn overflow_into_an_aligned_block_blames_the_block_that_overflowed() {
    let h = heap();
    let mut c = h.cache();
    let p = aligned(&mut c, 100, 64);
    let q = aligned(&mut c, 100, 64);
    let stride = q.addr() - p.addr();
    // p's slot ends `stride - 64` bytes after p (64 is the offset of both blocks in their slots):
    // run through p's tail and one byte into q's slot, its front padding.
    unsafe {
        p.write_bytes(0x77, stride - 64 + 1);
        c.free(q);
    }
    let r = only_report(&h);
    assert_eq!((r.kind, r.addr, r.offset), (ReportKind::Overflow, p.addr(), Some(100)), "{r}");
}

/// A pooled slab purged for being over the dirty-slab limit lost its bytes, headers and poison
/// included: the sweep of free slots must not take that for corruption. (Found by the fuzzer:
/// eight threads' slabs, pooled at once, with the harness's zero purge delay.)
#[test]
fn purged_slabs_pass_the_free_slot_sweep() {
    let mut h = heap();
    h.set_purge_delay(std::time::Duration::ZERO);
    let kept: Vec<_> = {
        let mut c = h.cache();
        let v: Vec<_> = (0..10_000).map(|_| filled(&mut c, 1000)).collect();
        // A block live in every tenth slab or so keeps each region mapped, purged slabs and all.
        let (kept, freed): (Vec<_>, Vec<_>) = v.into_iter().enumerate().partition(|(i, _)| i % 600 == 0);
        for (_, p) in freed {
            unsafe { c.free(p) };
        }
        c.flush();
        kept.into_iter().map(|(_, p)| p).collect()
    };
    assert!(h.stats().purges > 0, "the test needs purged slabs: {:?}", h.stats());
    h.verify_free_slots();
    let r = h.take_reports();
    assert!(r.is_empty(), "{} reports, the first: {}", r.len(), r[0]);
    let mut c = h.cache();
    for p in kept {
        unsafe { c.free(p) };
    }
}

#[test]
#[cfg_attr(asan, ignore = "ASan reports the planted misuse first (sanitizers/tests/controls.rs)")]
fn one_byte_underflow_is_named_a_write_before_the_block() {
    let h = heap();
    let mut c = h.cache();
    let _below = filled(&mut c, 40);
    let p = filled(&mut c, 40);
    // The byte below the block is the top of its header's keyed canary, random per heap: a
    // fixed value was already there in one heap in 256 (a CI run under TSan hit it), and a
    // write that changes nothing is no bug to find. So the planted write always changes it.
    let written = unsafe { p.sub(1).read() } ^ 0x42;
    unsafe {
        p.sub(1).write(written);
        c.free(p);
    }
    let r = only_report(&h);
    assert_eq!(r.kind, ReportKind::Underflow, "{r}");
    assert_eq!((r.addr, r.offset, r.found), (p.addr(), Some(1), u64::from(written)));
    assert!(r.to_string().starts_with("heap buffer underflow of "), "{r}");
}

#[test]
#[cfg_attr(asan, ignore = "ASan reports the planted misuse first (sanitizers/tests/controls.rs)")]
fn underflow_in_front_of_a_large_block_is_caught_at_free() {
    let h = heap();
    let mut c = h.cache();
    let p = filled(&mut c, 100_000);
    unsafe {
        p.sub(3).write(7);
        c.free(p);
    }
    let r = only_report(&h);
    assert_eq!(r.kind, ReportKind::Underflow, "{r}");
    assert_eq!((r.addr, r.offset, r.found), (p.addr(), Some(3), 7));
    // The block was not freed: a correct free of it now goes through.
    unsafe {
        p.sub(3).write(TAIL);
        c.free(p);
    }
    assert_eq!(h.take_reports(), vec![]);
}

#[test]
#[cfg_attr(asan, ignore = "ASan reports the planted misuse first (sanitizers/tests/controls.rs)")]
fn write_after_free_in_the_middle_is_caught_when_every_free_poisons_whole() {
    let h = heap();
    h.set_whole_poison_every(1);
    let mut c = h.cache();
    let p = filled(&mut c, 900);
    unsafe {
        c.free(p);
        p.add(400).write(1);
    }
    assert!(c.alloc(900, 8).is_null(), "the damaged slot must not be handed out");
    let r = only_report(&h);
    assert_eq!((r.kind, r.offset), (ReportKind::WriteAfterFree, Some(400)));
}

#[test]
#[cfg_attr(asan, ignore = "ASan reports the planted misuse first (sanitizers/tests/controls.rs)")]
fn sampled_poison_still_checks_where_stale_writes_land_first() {
    // By default most frees poison only the block's first 32 and last 16 bytes: a write there
    // is caught on every reuse, whatever the sample.
    let h = heap();
    let mut c = h.cache();
    for i in 0..64 {
        let p = filled(&mut c, 900);
        let at = if i % 2 == 0 { 5 } else { 900 - 3 }; // the first fields, the last
        unsafe {
            c.free(p);
            p.add(at).write(1);
        }
        assert!(c.alloc(900, 8).is_null(), "round {i}: the damaged slot must not be handed out");
        let r = only_report(&h);
        assert_eq!((r.kind, r.offset), (ReportKind::WriteAfterFree, Some(at)), "round {i}");
    }
}

#[test]
#[cfg_attr(any(asan, miri), ignore = "guard sampling is off under ASan and Miri")]
fn guarded_blocks_are_allocated_freed_and_checked_through_the_heap() {
    let h = heap();
    h.set_guard_sample(1);
    let mut c = h.cache();
    let p = filled(&mut c, 40);
    // A guarded block ends at its page's end.
    assert_eq!((p.addr() + 40) % 4096, 0, "{p:p}");
    assert_eq!(unsafe { c.usable_size(p) }, 40);
    let q = unsafe { c.realloc(p, 100, 8) };
    assert!(!q.is_null());
    assert_eq!(unsafe { *q.add(39) }, 0x5a);
    unsafe {
        c.free(q);
        c.free(q);
    }
    let r = only_report(&h);
    assert_eq!((r.kind, r.addr, r.guarded), (ReportKind::DoubleFree, q.addr(), true), "{r}");
    // Large requests are not guarded, and sampling can be switched off again.
    let big = filled(&mut c, 10_000);
    unsafe { c.free(big) };
    h.set_guard_sample(0);
    assert_eq!(h.take_reports(), vec![]);
}

#[test]
#[cfg_attr(any(asan, miri), ignore = "guard sampling is off under ASan and Miri")]
fn a_release_heap_guards_a_sample_too() {
    let h: Heap<Release> = Heap::new();
    h.set_guard_sample(2);
    let mut c = h.cache();
    let v: Vec<*mut u8> = (0..64).map(|_| c.alloc(24, 8)).collect();
    let guarded = v.iter().filter(|p| p.addr() & 4095 == 4096 - 24).count();
    assert!((16..=48).contains(&guarded), "{guarded} of 64 guarded at a sample of 2");
    for p in v {
        unsafe { c.free(p) };
    }
}

/// Slabs of classes above 4 KiB are spans of several 64 KiB units: a block in a span's later
/// unit is found, freed, and its misuses reported exactly as in its first unit.
#[test]
fn span_blocks_in_later_units_keep_exact_reports() {
    use hakmem::layout::{SLAB_SIZE, SPAN_SIZE};
    let h = heap();
    let mut c = h.cache();
    let mut other = h.cache();
    let v: Vec<*mut u8> = (0..8).map(|_| filled(&mut c, 30000)).collect();
    // All eight 32 KiB slots share one span (the first unit of a region loses the header's
    // bytes, so a span there holds seven: allow one more slab).
    let spans: std::collections::HashSet<usize> = v.iter().map(|p| p.addr() & !(SPAN_SIZE - 1)).collect();
    assert!(spans.len() <= 2, "{spans:x?}");
    let late = *v.iter().find(|p| (p.addr() & (SPAN_SIZE - 1)) >= 2 * SLAB_SIZE).expect("a block past the span's second unit");
    unsafe {
        c.free(late.add(4096));
        let r = only_report(&h);
        assert_eq!((r.kind, r.offset, r.class_size), (ReportKind::InvalidFree, Some(4096), Some(32768)));
        other.free(late); // remote, from a later unit
        c.free(late);
        let r = only_report(&h);
        assert_eq!((r.kind, r.addr, r.requested), (ReportKind::DoubleFree, late.addr(), Some(30000)));
        assert_eq!(c.usable_size(v[0]), 30000);
        for &p in &v {
            if p != late {
                c.free(p);
            }
        }
        drop(other);
        c.flush();
        assert_eq!(h.verify(None, true), vec![]);
        // The span went back to the pool (or stays the current slab); a late double free of
        // its blocks is still one.
        c.free(v[1]);
        let r = only_report(&h);
        assert_eq!(r.kind, ReportKind::DoubleFree);
    }
    drop(c);
    assert_eq!(h.take_reports(), vec![]);
}

/// A heap whose regions use too few units for a span, or may map no more regions, still serves
/// every class (span classes from single units, small classes from a span region).
#[test]
fn spans_fall_back_to_single_units_and_back() {
    for (slabs, max_regions) in [(1, usize::MAX), (2, usize::MAX), (4, 1), (16, 1), (64, 1)] {
        let h = heap();
        h.set_limits(hakmem::Limits { region_slabs: slabs, max_regions, ..h.limits() });
        let mut c = h.cache();
        let big = c.alloc(20000, 8);
        let small = c.alloc(100, 8);
        assert!(!big.is_null() && !small.is_null(), "slabs {slabs} regions {max_regions}");
        unsafe {
            c.free(big);
            c.free(small);
            c.flush();
            assert_eq!(h.verify(None, true), vec![], "slabs {slabs} regions {max_regions}");
        }
        drop(c);
        assert_eq!(h.take_reports(), vec![]);
    }
}
