//! Quickcheck properties: random alloc/free/realloc/calloc programs over several caches of one
//! heap, checked after every step against a model of the live blocks: blocks are aligned, never
//! overlap, are at least as large as asked, keep their contents, and calloc memory is zero.

use hakmem::{Checked, Heap, Policy, Release, ThreadCache};
use quickcheck::{Arbitrary, Gen, QuickCheck};
use std::collections::BTreeMap;

const CACHES: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Alloc { cache: usize, size: usize, align: usize },
    Calloc { cache: usize, size: usize },
    Free { cache: usize, pick: usize },
    Realloc { cache: usize, pick: usize, size: usize },
    Flush { cache: usize },
    Restart { cache: usize },
}

/// Sizes skewed the way programs skew them: mostly tiny, some mid, few large.
fn size(g: &mut Gen) -> usize {
    let r = u32::arbitrary(g);
    match r % 100 {
        0..=69 => (r as usize >> 8) % 1025,
        70..=94 => 1025 + (r as usize >> 8) % 32768,
        _ => 32769 + (r as usize >> 8) % 400_000,
    }
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        let cache = usize::arbitrary(g) % CACHES;
        let pick = usize::arbitrary(g);
        match u8::arbitrary(g) % 20 {
            0..=7 => {
                let align = match u8::arbitrary(g) % 10 {
                    0..=6 => 8,
                    7 => 16,
                    8 => 1 << (u8::arbitrary(g) % 13),
                    _ => 1 << (12 + u8::arbitrary(g) % 12),
                };
                Op::Alloc { cache, size: size(g), align }
            }
            8 => Op::Calloc { cache, size: size(g) },
            9..=15 => Op::Free { cache, pick },
            16..=17 => Op::Realloc { cache, pick, size: size(g) },
            18 => Op::Flush { cache },
            _ => Op::Restart { cache },
        }
    }
}

struct Live {
    size: usize,
    align: usize,
    seed: u8,
}

/// Interprets `ops` on a fresh heap, checking the model after every step.
fn run<P: Policy>(ops: &[Op]) -> Result<(), String> {
    let heap: Heap<P> = Heap::new();
    // A checked heap must find nothing wrong with a correct program.
    heap.capture_reports();
    let mut caches: Vec<ThreadCache<'_, P>> = (0..CACHES).map(|_| heap.cache()).collect();
    let mut live: BTreeMap<usize, Live> = BTreeMap::new();
    let mut seed = 0u8;
    let fill = |p: *mut u8, n: usize, s: u8| unsafe {
        for i in 0..n {
            p.add(i).write(s.wrapping_add(i as u8));
        }
    };
    let check = |p: *mut u8, l: &Live| -> Result<(), String> {
        for i in 0..l.size {
            let b = unsafe { p.add(i).read() };
            if b != l.seed.wrapping_add(i as u8) {
                return Err(format!("block {p:p} size {} byte {i} is {b:#x}", l.size));
            }
        }
        Ok(())
    };
    let insert = |live: &mut BTreeMap<usize, Live>, c: &mut ThreadCache<'_, P>, p: *mut u8, l: Live| {
        if p.is_null() {
            return Err(format!("allocation of {} bytes failed; reports: {:?}", l.size, heap.take_reports()));
        }
        if p.addr() % l.align.max(1) != 0 {
            return Err(format!("{p:p} not aligned to {}", l.align));
        }
        let usable = unsafe { c.usable_size(p) };
        if usable < l.size {
            return Err(format!("{p:p} usable {usable} < requested {}", l.size));
        }
        let end = p.addr() + l.size.max(1);
        if let Some((&a, o)) = live.range(..end).next_back() {
            if a + o.size.max(1) > p.addr() {
                return Err(format!("{p:p}+{} overlaps live block {a:#x}+{}", l.size, o.size));
            }
        }
        live.insert(p.addr(), l);
        Ok(())
    };
    for op in ops {
        match *op {
            Op::Alloc { cache, size, align } => {
                let p = caches[cache].alloc(size, align);
                seed = seed.wrapping_add(1);
                insert(&mut live, &mut caches[cache], p, Live { size, align, seed })?;
                fill(p, size, seed);
            }
            Op::Calloc { cache, size } => {
                let p = caches[cache].alloc_zeroed(size, 8);
                if let Some(i) = (0..size).find(|&i| unsafe { p.add(i).read() } != 0) {
                    return Err(format!("calloc {size} at {p:p}: byte {i} not zero"));
                }
                seed = seed.wrapping_add(1);
                insert(&mut live, &mut caches[cache], p, Live { size, align: 8, seed })?;
                fill(p, size, seed);
            }
            Op::Free { cache, pick } | Op::Realloc { cache, pick, .. } if !live.is_empty() => {
                let addr = *live.keys().nth(pick % live.len()).unwrap();
                let l = live.remove(&addr).unwrap();
                let p = addr as *mut u8;
                check(p, &l)?;
                if let Op::Realloc { size, .. } = *op {
                    let q = unsafe { caches[cache].realloc(p, size, l.align) };
                    if q.is_null() {
                        return Err(format!("realloc to {size} failed; reports: {:?}", heap.take_reports()));
                    }
                    let kept = Live { size: size.min(l.size), ..l };
                    check(q, &kept)?;
                    seed = seed.wrapping_add(1);
                    insert(&mut live, &mut caches[cache], q, Live { size, align: l.align, seed })?;
                    fill(q, size, seed);
                } else {
                    unsafe { caches[cache].free(p) };
                }
            }
            Op::Flush { cache } => caches[cache].flush(),
            Op::Restart { cache } => caches[cache] = heap.cache(),
            Op::Free { .. } | Op::Realloc { .. } => {}
        }
    }
    for (&a, l) in &live {
        check(a as *mut u8, l)?;
        unsafe { caches[0].free(a as *mut u8) };
    }
    drop(caches);
    match heap.take_reports().first() {
        Some(r) => Err(format!("{} heap reported: {r}", P::NAME)),
        None => Ok(()),
    }
}

#[test]
fn random_programs_keep_the_model() {
    fn prop(ops: Vec<Op>) -> Result<(), String> {
        run::<Release>(&ops)
    }
    QuickCheck::new().rng(Gen::new(400)).tests(300).quickcheck(prop as fn(Vec<Op>) -> Result<(), String>);
}

#[test]
fn a_long_program_keeps_the_model() {
    // One long program reaches states short ones do not: many slabs per class, full slabs
    // regaining room through remote frees, regions emptied and reused.
    let mut g = Gen::new(100);
    let ops: Vec<Op> = (0..60_000).map(|_| Op::arbitrary(&mut g)).collect();
    run::<Release>(&ops).unwrap();
}

#[test]
fn random_programs_keep_the_model_checked() {
    fn prop(ops: Vec<Op>) -> Result<(), String> {
        run::<Checked>(&ops)
    }
    QuickCheck::new().rng(Gen::new(400)).tests(150).quickcheck(prop as fn(Vec<Op>) -> Result<(), String>);
}

#[test]
fn a_long_program_keeps_the_model_checked() {
    let mut g = Gen::new(100);
    let ops: Vec<Op> = (0..30_000).map(|_| Op::arbitrary(&mut g)).collect();
    run::<Checked>(&ops).unwrap();
}
