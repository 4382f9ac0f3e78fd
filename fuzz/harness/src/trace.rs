//! Traces: what a deterministic run did, in terms that do not depend on where the kernel put a
//! mapping, so that two runs of one input compare equal exactly when the heap behaved the same.
//! Every address becomes (region ordinal, offset): the n-th distinct region (4 MiB-aligned
//! address range) the run met, and the offset inside it. The history-independence check
//! (`history` binary, `just history`) runs every input of a corpus alone, after the whole
//! corpus, and after the corpus shuffled, and requires the same trace each time.

use crate::interp::{run_plain_traced, Failure, HeapUse, RunOpts, Sweep};
use crate::misuse::run_misuse_traced;
use crate::program::Program;
use hakmem::layout::REGION_SIZE;
use hakmem::{Checked, Release};

/// One thing a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Step `step` got a block at `addr` with this usable size.
    Block { step: usize, addr: usize, usable: usize },
    /// Step `step`'s allocation returned null (the program's region budget ran out).
    Null { step: usize },
    /// The heap reported; `text` holds the report's fields, `addrs` the addresses in it.
    Report { step: Option<usize>, text: String, addrs: Vec<usize> },
}

/// Region ordinals in order of first appearance.
#[derive(Default)]
struct Regions(Vec<usize>);

impl Regions {
    fn name(&mut self, addr: usize) -> String {
        let r = addr & !(REGION_SIZE - 1);
        let n = self.0.iter().position(|&x| x == r).unwrap_or_else(|| {
            self.0.push(r);
            self.0.len() - 1
        });
        format!("r{n}+{:#x}", addr - r)
    }
}

/// Replaces every hexadecimal address in `s` by its region-relative name.
fn normalize_text(s: &str, regions: &mut Regions) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("0x") {
        out.push_str(&rest[..i]);
        let hex: String = rest[i + 2..].chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        match usize::from_str_radix(&hex, 16) {
            // Small numbers (expected and found values, offsets) are not addresses.
            Ok(a) if a >= 1 << 32 => out.push_str(&regions.name(a)),
            _ => {
                out.push_str("0x");
                out.push_str(&hex);
            }
        }
        rest = &rest[i + 2 + hex.len()..];
    }
    out.push_str(rest);
    out
}

/// The trace of a run as lines that compare equal across placements, ending with the verdict.
pub fn normalize(events: &[Event], verdict: &Result<String, Failure>) -> Vec<String> {
    let mut regions = Regions::default();
    let mut lines: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::Block { step, addr, usable } => format!("{step}: {} usable {usable}", regions.name(*addr)),
            Event::Null { step } => format!("{step}: null"),
            Event::Report { step, text, addrs } => {
                let names: Vec<String> = addrs.iter().map(|&a| regions.name(a)).collect();
                format!("{step:?}: report {text} at {}", names.join(" "))
            }
        })
        .collect();
    lines.push(match verdict {
        Ok(s) => format!("verdict: {}", normalize_text(s, &mut regions)),
        Err(f) => format!("verdict: FAIL {}", normalize_text(&f.to_string(), &mut regions)),
    });
    lines
}

/// Runs `prog` (of the target whose flavor it has) deterministically on a heap as `heap` says,
/// with the fuzz targets' sweeps, and returns its normalized trace.
pub fn trace(prog: &Program, misuse: bool, heap: HeapUse) -> Vec<String> {
    let opts = RunOpts { sweep: Sweep::Local, heap };
    let (verdict, events) = if misuse {
        let (r, e) = run_misuse_traced(prog, opts, true);
        (r.map(|r| r.map_or("not committed".to_owned(), |r| format!("{}", crate::misuse::without_secret(r)))), e)
    } else if prog.release {
        let (r, e) = run_plain_traced::<Release>(prog, opts, true);
        (r.map(|()| "pass".to_owned()), e)
    } else {
        let (r, e) = run_plain_traced::<Checked>(prog, opts, true);
        (r.map(|()| "pass".to_owned()), e)
    };
    normalize(&events, &verdict)
}

/// The first difference between two traces, as a message, or None if they are equal.
pub fn difference(a: &[String], b: &[String]) -> Option<String> {
    if a == b {
        return None;
    }
    let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    Some(format!(
        "traces differ at line {i}: {:?} vs {:?} ({} and {} lines)",
        a.get(i).map_or("(end)", |s| s.as_str()),
        b.get(i).map_or("(end)", |s| s.as_str()),
        a.len(),
        b.len()
    ))
}

/// The history-independence check over `inputs` of one target: each input's trace alone (on a
/// new heap) against its traces when run after all of them on one reused heap, in their order
/// and shuffled (reproducibly, by `seed`). Returns a message per input whose trace differs.
pub fn history<N: std::fmt::Display>(inputs: &[(N, Program)], misuse: bool, mut seed: u64) -> Vec<String> {
    let alone: Vec<Vec<String>> = inputs.iter().map(|(_, p)| trace(p, misuse, HeapUse::New)).collect();
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    let mut out = Vec::new();
    for pass in ["after the corpus, in order", "after the corpus, shuffled"] {
        for &i in &order {
            let again = trace(&inputs[i].1, misuse, HeapUse::Reset);
            if let Some(d) = difference(&alone[i], &again) {
                out.push(format!("DIFFERS {} ({pass}): {d}", inputs[i].0));
            }
        }
        for k in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(k, (seed % (k as u64 + 1)) as usize);
        }
    }
    out
}
