//! Minimizing a failing program by its structure: libFuzzer's byte-level minimizer rarely gets a
//! program to the few steps that matter (deleting one byte shifts every field after it), so
//! this removes whole steps, a block's allocation with every step that names the block,
//! schedules and knobs, and keeps each change after which the program still fails the same way
//! (see [`failure_kind`]). Every candidate is a program the decoder could produce, so its
//! listing and bytes replay it exactly.

use crate::interp::{Failure, HeapUse, RunOpts, Sweep};
use crate::program::{BlockId, Knobs, Op, Program};
use crate::{encode, run_deterministic, run_misuse, Flavor};
use std::time::{Duration, Instant};

/// What kind of failure `f` is, without its addresses and numbers: two failures of one kind
/// are taken to be the same bug while minimizing. Which sweep saw a broken invariant (a
/// periodic one or the final one) is not part of the kind: removing steps moves the damage
/// from one to the other.
pub fn failure_kind(f: &Failure) -> String {
    let w = f.what.replacen(" with every block freed:", ":", 1);
    let cut = [" of 0x", " at 0x", " 0x", ": b"].iter().filter_map(|p| w.find(p)).min().unwrap_or(w.len());
    let head: String = w[..cut].chars().filter(|c| !c.is_ascii_digit()).collect();
    head.trim().to_owned()
}

/// How a program of `flavor` fails deterministically on a new heap, if it does.
pub fn failure(prog: &Program, flavor: Flavor) -> Option<Failure> {
    let opts = RunOpts { sweep: Sweep::Local, heap: HeapUse::New };
    match flavor {
        Flavor::Plain => run_deterministic(prog, opts).err(),
        Flavor::Misuse => run_misuse(prog, opts).err(),
    }
}

/// The program without step `i`; if it creates a block, without every step that names the block
/// either, and with the later blocks renumbered. None if that is no valid program.
pub fn without_step(prog: &Program, i: usize) -> Option<Program> {
    let created = prog.steps[..i].iter().filter(|s| s.op.creates_block()).count() as BlockId;
    let mut p = prog.clone();
    if prog.steps[i].op.creates_block() {
        p.steps = prog
            .steps
            .iter()
            .enumerate()
            .filter(|&(j, s)| j != i && s.op.slot() != Some(created))
            .map(|(_, s)| {
                let mut s = *s;
                renumber(&mut s.op, created);
                s
            })
            .collect();
    } else {
        p.steps.remove(i);
    }
    (!p.steps.is_empty() && encode(&p).is_ok()).then_some(p)
}

/// Renumbers the block an op names after block `gone` was removed.
fn renumber(op: &mut Op, gone: BlockId) {
    let fix = |b: &mut BlockId| {
        if *b > gone {
            *b -= 1
        }
    };
    match op {
        Op::Realloc { slot, .. }
        | Op::Free { slot }
        | Op::FreeUncached { slot }
        | Op::RemoteFree { slot, .. }
        | Op::Give { slot, .. }
        | Op::Write { slot, .. }
        | Op::Check { slot }
        | Op::DoubleFree { slot, .. }
        | Op::FreeInterior { slot, .. }
        | Op::WriteAfterFree { slot, .. }
        | Op::Overflow { slot, .. }
        | Op::Underflow { slot, .. } => fix(slot),
        Op::Alloc { .. } | Op::Calloc { .. } | Op::Flush | Op::EndThread | Op::Fork | Op::Trim | Op::FreeWild { .. } => {}
    }
}

/// Minimizes `prog` (which fails as `kind` says) for at most `budget`; returns the smallest
/// program found that fails the same way, and how many candidates were run.
pub fn minimize(prog: &Program, flavor: Flavor, kind: &str, budget: Duration) -> (Program, usize) {
    let start = Instant::now();
    let mut best = prog.clone();
    let mut tries = 0;
    let mut same = |p: &Program| {
        tries += 1;
        failure(p, flavor).is_some_and(|f| failure_kind(&f) == kind)
    };
    loop {
        let before = best.steps.len();
        // Chunks of steps from the end backwards, halving, then one at a time.
        let mut n = (best.steps.len() / 2).max(1);
        loop {
            let mut i = best.steps.len();
            while i > 0 && start.elapsed() < budget {
                i = i.saturating_sub(n);
                let mut cand = Some(best.clone());
                for k in (i..(i + n).min(best.steps.len())).rev() {
                    cand = cand.and_then(|c| if k < c.steps.len() { without_step(&c, k) } else { Some(c) });
                }
                if let Some(c) = cand.filter(|c| c.steps.len() < best.steps.len()) {
                    if same(&c) {
                        best = c;
                        i = i.min(best.steps.len());
                    }
                }
            }
            if n == 1 || start.elapsed() >= budget {
                break;
            }
            n /= 2;
        }
        // Schedules, knobs and the heap kind that are not needed go.
        for i in 0..best.steps.len() {
            for clear in [(true, false), (false, true)] {
                let mut c = best.clone();
                let s = &mut c.steps[i];
                if (clear.0 && s.at.is_none()) || (clear.1 && s.pause.is_none()) {
                    continue;
                }
                if clear.0 {
                    s.at = None;
                } else {
                    s.pause = None;
                }
                if encode(&c).is_ok() && same(&c) {
                    best = c;
                }
            }
        }
        if best.knobs != Knobs::default() {
            for f in 0..Knobs::COUNT {
                let mut c = best.clone();
                let mut v = c.knobs.fields();
                if v[f] == 0 {
                    continue;
                }
                v[f] = 0;
                c.knobs = Knobs::from_fields(v);
                if same(&c) {
                    best = c;
                }
            }
        }
        // Fewer threads, if the highest is not used.
        while best.threads > 1 && !best.steps.iter().any(|s| uses_thread(s, best.threads - 1)) {
            let mut c = best.clone();
            c.threads -= 1;
            if encode(&c).is_ok() && same(&c) {
                best = c;
            } else {
                break;
            }
        }
        if best.steps.len() == before || start.elapsed() >= budget {
            break;
        }
    }
    (best, tries)
}

fn uses_thread(s: &crate::program::Step, t: u8) -> bool {
    s.thread == t
        || matches!(s.op, Op::RemoteFree { by, .. } | Op::DoubleFree { by, .. } if by == t)
        || matches!(s.op, Op::Give { to, .. } if to == t)
}
