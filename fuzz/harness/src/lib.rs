//! hakmem-fuzz: turns fuzzer bytes into multi-thread allocator programs, runs them on a fresh
//! hakmem heap per input, and checks them against a reference model.
//!
//! Where things are:
//! - what an input means, and its readable listing: [`program`] ([`Program`], [`Op`]);
//! - bytes to program and back (the seed encoder): [`mod@decode`];
//! - **the interpreter** (deterministic mode, misuse ops included): [`interp`], start at
//!   [`interp::run_plain`] and [`interp::Interp::exec`];
//! - the oracle (reference model of live blocks): [`model`]; misuse judging and the checked
//!   policy's reports: [`misuse`];
//! - free-running mode on real threads: [`threaded`], on the threads of a [`pool`];
//! - the entry points every fuzz target calls (libFuzzer and AFL alike): [`fuzz_deterministic`],
//!   [`fuzz_free_running`], [`fuzz_misuse`] below;
//! - seed programs for the corpora: [`seeds`]; the `replay` and `seed` binaries in `src/bin/`.

pub mod decode;
pub mod interp;
pub mod misuse;
pub mod model;
pub mod pool;
pub mod program;
pub mod rng;
pub mod seeds;
pub mod threaded;

pub use decode::{decode, encode, Flavor, MisuseProgram, Reject};
pub use interp::{run_plain, Failure, HeapUse, Observed, RunOpts, Sweep};
pub use misuse::run_misuse;
pub use program::{BlockId, Op, Program, Step};
pub use threaded::run_free;

use hakmem::layout::{slot_needed, user_offset};
use hakmem::size_class::{class_for, CLASS_SIZES};
use hakmem::{Checked, Policy, Release};

/// The fuzz targets, by the name of their corpus directory and binary.
pub const TARGETS: [&str; 3] = ["deterministic", "free_running", "misuse"];

/// What a fuzz entry point did with an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The input decoded to a program, which ran and passed every check.
    Ran,
    /// The input decodes to nonsense; the fuzzer should not keep it.
    Rejected,
}

/// Whether a block of `size` bytes at `align` lives in a slab slot under `P`, rather than in a
/// mapping of its own.
pub fn in_slab<P: Policy>(size: usize, align: usize) -> bool {
    slab_class::<P>(size, align).is_some()
}

/// The class of the slab slot a block of `size` bytes at `align` gets under `P`, if any: the same
/// class choice as `CacheInner::alloc_generic`.
fn slab_class<P: Policy>(size: usize, align: usize) -> Option<usize> {
    class_for(slot_needed::<P>(size, align), align)
}

/// Bytes between the requested size and the end of the slot a slab block of `size` bytes at
/// `align` gets under `P`: room an overflow can write into without leaving the slot.
pub fn overflow_room<P: Policy>(size: usize, align: usize) -> usize {
    match slab_class::<P>(size, align) {
        Some(c) => CLASS_SIZES[c] - user_offset::<P>(align) - size,
        None => 0,
    }
}

/// Panics with the failure and the program in readable form: the fuzzer saves the input, and
/// `just replay <file>` runs it again. The targets run on a reset heap, whose slabs earlier
/// inputs may have left dirty, so first `again` re-runs the input on a new heap and on an
/// all-dirty reset one (what replay does), and the message says whether and how it replays.
fn fail(mode: &str, prog: &Program, first: Failure, again: impl Fn(HeapUse) -> Result<(), Failure>) -> ! {
    let (f, how) = match (again(HeapUse::New), again(HeapUse::Dirty)) {
        (Err(f), _) => (f, "it replays on a new heap: just replay <crash file>"),
        (Ok(()), Err(f)) => (f, "it replays on a reset heap whose slabs are all dirty, as `just replay <crash file>` runs it"),
        (Ok(()), Ok(())) => (
            first,
            "it does NOT replay from this input alone: it needs what earlier inputs left in the reused heap; \
             fuzz on, an input that fails alone usually follows within seconds",
        ),
    };
    panic!("hakmem-fuzz: {mode} run FAILED {f}\n{prog}({how})");
}

/// Runs a plain program deterministically on the kind of heap it asks for.
pub fn run_deterministic(prog: &Program, opts: RunOpts) -> Result<(), Failure> {
    if prog.release {
        run_plain::<Release>(prog, opts)
    } else {
        run_plain::<Checked>(prog, opts)
    }
}

/// Runs a plain program on real threads on the kind of heap it asks for.
pub fn run_free_running(prog: &Program, heap: HeapUse) -> Result<(), Failure> {
    if prog.release {
        run_free::<Release>(prog, heap)
    } else {
        run_free::<Checked>(prog, heap)
    }
}

/// The deterministic target: one OS thread, caches interleaved in step order.
pub fn fuzz_deterministic(data: &[u8]) -> Verdict {
    let Ok(prog) = decode(data, Flavor::Plain) else { return Verdict::Rejected };
    if let Err(f) = run_deterministic(&prog, RunOpts::FUZZ) {
        fail("deterministic", &prog, f, |heap| run_deterministic(&prog, RunOpts { heap, ..RunOpts::FUZZ }));
    }
    Verdict::Ran
}

/// The free-running target: one OS thread per logical thread.
pub fn fuzz_free_running(data: &[u8]) -> Verdict {
    let Ok(prog) = decode(data, Flavor::Plain) else { return Verdict::Rejected };
    if let Err(f) = run_free_running(&prog, HeapUse::Reset) {
        fail("free-running", &prog, f, |heap| run_free_running(&prog, heap));
    }
    Verdict::Ran
}

/// The misuse target: exactly one client misuse, which the checked mode must report precisely.
pub fn fuzz_misuse(data: &[u8]) -> Verdict {
    let Ok(prog) = decode(data, Flavor::Misuse) else { return Verdict::Rejected };
    if let Err(f) = run_misuse(&prog, RunOpts::FUZZ) {
        fail("misuse", &prog, f, |heap| run_misuse(&prog, RunOpts { heap, ..RunOpts::FUZZ }).map(|_| ()));
    }
    Verdict::Ran
}

/// The seed programs of each target's corpus, by target name.
pub fn seed_sets() -> Vec<(&'static str, Vec<(&'static str, Program)>)> {
    vec![("deterministic", seeds::plain()), ("free_running", seeds::plain()), ("misuse", seeds::misuse())]
}

/// The fuzzing dictionary (libFuzzer's `-dict`, AFL++'s `-x` format): the size encodings that
/// land exactly on, or one byte either side of, each size class boundary, under both policies,
/// since mutations rarely hit those by chance and that is where off-by-one bugs live.
pub fn dictionary() -> String {
    let mut sizes: Vec<usize> = Vec::new();
    for &c in CLASS_SIZES.iter() {
        // The largest request a slot serves under each policy (none under checked for slots
        // smaller than its header and tail).
        for exact in [Some(c), c.checked_sub(Checked::HEADER + Checked::MIN_TAIL)].into_iter().flatten() {
            sizes.extend([exact.saturating_sub(1), exact, exact + 1]);
        }
    }
    sizes.sort_unstable();
    sizes.dedup();
    let mut out = String::from("# Size encodings at hakmem's size class boundaries; written by `just seed`.\n");
    for s in sizes {
        let mut b = Vec::new();
        decode::encode_size(&mut b, s).expect("class sizes encode");
        let esc: String = b.iter().map(|x| format!("\\x{x:02x}")).collect();
        out.push_str(&format!("size_{s}=\"{esc}\"\n"));
    }
    out
}

/// Reads an input file of `target`: a program listing if it ends in `.prog` (how regressions are
/// kept), else fuzzer bytes.
pub fn load(path: &std::path::Path, target: &str) -> Result<Program, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if path.extension().is_some_and(|e| e == "prog") {
        let text = String::from_utf8(data).map_err(|e| format!("{}: {e}", path.display()))?;
        let prog: Program = text.parse().map_err(|e: program::ParseError| format!("{}: {}", path.display(), e.0))?;
        // Check the listing is a program the decoder could produce, so that it runs every step.
        encode(&prog).map_err(|r| format!("{}: not a valid program: {}", path.display(), r.0))?;
        Ok(prog)
    } else {
        decode(&data, flavor_of(target)).map_err(|r| format!("{}: rejected by the decoder: {}", path.display(), r.0))
    }
}

/// How the files of target `target` decode.
pub fn flavor_of(target: &str) -> Flavor {
    if target == "misuse" {
        Flavor::Misuse
    } else {
        Flavor::Plain
    }
}

/// Runs a decoded input of `target` the way the replay tool and the regression tests do: in
/// deterministic mode (free-running inputs too, so that they replay), checking every live block
/// after every step, on a new heap, then on a reset heap whose slabs are all dirty, then on one
/// reset after that run: the fuzz targets reuse a heap between inputs, and a failure may need
/// slabs an earlier input left dirty. Says what the runs did, or how the first failing one failed.
pub fn replay_one(target: &str, prog: &Program) -> Result<String, Failure> {
    let runs = [HeapUse::New, HeapUse::Dirty, HeapUse::Reset].map(|heap| RunOpts { heap, ..RunOpts::THOROUGH });
    match flavor_of(target) {
        Flavor::Plain => {
            for opts in runs {
                run_deterministic(prog, opts)?;
            }
            Ok("every check held, no report".to_owned())
        }
        Flavor::Misuse => {
            let r = run_misuse(prog, runs[0])?;
            for opts in &runs[1..] {
                let again = run_misuse(prog, *opts)?;
                if again.as_ref().map(|r| r.kind) != r.as_ref().map(|r| r.kind) {
                    return Err(Failure::at(None, format!("a reused heap reports {again:?}, a new one {r:?}")));
                }
            }
            Ok(match r {
                Some(r) => format!("reported as expected: {r}"),
                None => "the write after free was not made (the free sent its slab back to the pool); no report, as expected".to_owned(),
            })
        }
    }
}
