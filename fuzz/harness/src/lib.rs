//! hakmem-fuzz: turns fuzzer bytes into multi-thread allocator programs, runs them on a fresh
//! hakmem heap per input, and checks them against a reference model.
//!
//! Where things are:
//! - what an input means, and its readable listing: [`program`] ([`Program`], [`Op`]);
//! - bytes to program and back (the seed encoder): [`mod@decode`];
//! - **the interpreter** (deterministic mode, misuse ops included): [`interp`], start at
//!   [`interp::run_plain`] and [`interp::Interp::exec`]; its scheduler, which runs steps inside
//!   each other's allocator calls and checks happens-before, lock order and deadlocks: [`sched`];
//! - traces and the history-independence check: [`trace`];
//! - the oracle (reference model of live blocks): [`model`]; misuse judging and the checked
//!   policy's reports: [`misuse`];
//! - free-running mode on real threads: [`threaded`], on the threads of a [`pool`];
//! - the entry points every fuzz target calls (libFuzzer and AFL alike): [`fuzz_deterministic`],
//!   [`fuzz_free_running`], [`fuzz_misuse`] below;
//! - seed programs for the corpora: [`seeds`]; the `replay` and `seed` binaries in `src/bin/`;
//!   the structure-aware minimizer `just tmin` runs: [`minimize`].

pub mod client;
pub mod decode;
pub mod interp;
pub mod minimize;
pub mod misuse;
pub mod model;
pub mod pool;
pub mod program;
pub mod rng;
pub mod sched;
pub mod seeds;
pub mod threaded;
pub mod trace;

pub use decode::{decode, encode, Flavor, MisuseProgram, Reject};
pub use interp::{run_plain, Failure, HeapUse, Observed, RunOpts, Sweep};
pub use misuse::run_misuse;
pub use program::{BlockId, Knobs, Op, Program, Step};
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

/// Prints the failure and the program in readable form and aborts: the fuzzer saves the input, and
/// `just replay <file>` runs it again. A reset heap is a new heap's state, so a failure replays
/// from its input alone; `again` re-runs it on a new heap to say so (or, should that ever not
/// hold, that the harness has a history dependence to fix, which `just history` would show).
fn fail(mode: &str, prog: &Program, first: Failure, again: impl Fn(HeapUse) -> Result<(), Failure>, more: &str) -> ! {
    let (f, how) = match again(HeapUse::New) {
        Err(f) => (f, "it fails again on a new heap: just replay <crash file>".to_owned()),
        Ok(()) if mode == "free-running" => (first, "it did not fail again on real threads: the race needs the timing it had".to_owned()),
        Ok(()) => (
            first,
            "it does NOT fail again on a new heap from this input alone; a deterministic run that depends on what ran before \
             it is a harness bug (see `just history`)"
                .to_owned(),
        ),
    };
    // An abort, not a panic: the fuzzer saves the input on the signal, and nothing unwinds into
    // its C frames.
    eprintln!("hakmem-fuzz: {mode} run FAILED {f}\n{prog}({how}){more}");
    std::process::abort();
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

/// Makes panics unwind to the harness, which turns a panic inside a run into the run's failure,
/// naming the checked report that came before it (see `interp::guarded`). libFuzzer's and AFL's
/// panic hooks abort the process at once, before the harness could say so; the hook installed
/// here only prints. Every fuzz entry point calls it (once per process it does anything).
fn unwinding_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("{info}"))));
}

/// The deterministic target: one OS thread, caches interleaved in step order.
pub fn fuzz_deterministic(data: &[u8]) -> Verdict {
    unwinding_panics();
    let Ok(prog) = decode(data, Flavor::Plain) else { return Verdict::Rejected };
    if let Err(f) = run_deterministic(&prog, RunOpts::FUZZ) {
        fail("deterministic", &prog, f, |heap| run_deterministic(&prog, RunOpts { heap, ..RunOpts::FUZZ }), "");
    }
    Verdict::Ran
}

/// The free-running target: one OS thread per logical thread. A failure here depends on how
/// the OS interleaved the threads, so before reporting it the harness looks for a
/// deterministic input that fails too (see [`deterministic_repro`]) and saves it.
pub fn fuzz_free_running(data: &[u8]) -> Verdict {
    unwinding_panics();
    let Ok(prog) = decode(data, Flavor::Plain) else { return Verdict::Rejected };
    if let Err(f) = run_free_running(&prog, HeapUse::Reset) {
        let more = match deterministic_repro(&prog, repro_seconds()) {
            Some((p, found)) => {
                let path = save_repro(&p);
                format!(
                    "\nreproduced by the deterministic scheduler ({found}): saved as {path}, a deterministic input that replays \
                     and minimizes (just replay {path}; just tmin deterministic {path}):\n{p}"
                )
            }
            None => format!("\nno deterministic schedule of this program failed within {} s", repro_seconds().as_secs()),
        };
        fail("free-running", &prog, f, |heap| run_free_running(&prog, heap), &more);
    }
    Verdict::Ran
}

/// How long a free-running failure's search for a deterministic schedule lasts
/// (`HAKMEM_FUZZ_REPRO_SECONDS`, default 10).
fn repro_seconds() -> std::time::Duration {
    let s = std::env::var("HAKMEM_FUZZ_REPRO_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    std::time::Duration::from_secs(s)
}

/// Looks for a deterministic input that fails like a free-running one did: the program as it
/// is, then the program with up to three steps started inside others and paused, at points
/// drawn at random (seeded by the program, so the search is itself reproducible), for up to
/// `limit`. Returns the failing program and what found it.
pub fn deterministic_repro(prog: &Program, limit: std::time::Duration) -> Option<(Program, String)> {
    let opts = RunOpts { heap: HeapUse::New, ..RunOpts::FUZZ };
    if run_deterministic(prog, opts).is_err() {
        return Some((prog.clone(), "as it is, in program order".to_owned()));
    }
    if prog.steps.len() < 2 {
        return None;
    }
    let seed = encode(prog).map_or(1, |b| b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100_0000_01b3)));
    let mut rng = rng::Rng(seed | 1);
    let start = std::time::Instant::now();
    let mut tries = 0;
    while start.elapsed() < limit {
        tries += 1;
        let mut p = prog.clone();
        for _ in 0..1 + rng.next_u64() % 3 {
            let i = 1 + (rng.next_u64() as usize) % (p.steps.len() - 1);
            p.steps[i].at = Some(1 + (rng.next_u64() % 24) as u16);
            if rng.next_u64() % 2 == 0 {
                p.steps[i].pause = Some(1 + (rng.next_u64() % 12) as u16);
            }
        }
        if run_deterministic(&p, opts).is_err() {
            return Some((p, format!("schedule {tries} of a random search")));
        }
    }
    None
}

/// Writes a deterministic reproducer to `$HAKMEM_FUZZ_REPRO_DIR` (default: the current
/// directory) and returns its path.
fn save_repro(p: &Program) -> String {
    let dir = std::env::var("HAKMEM_FUZZ_REPRO_DIR").unwrap_or_else(|_| ".".into());
    let bytes = encode(p).expect("the search only adds schedules a program can encode");
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100_0000_01b3));
    let path = std::path::Path::new(&dir).join(format!("deterministic-repro-{h:016x}"));
    match std::fs::write(&path, &bytes) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(not saved: {e})"),
    }
}

/// The misuse target: exactly one client misuse, which the checked mode must report precisely.
pub fn fuzz_misuse(data: &[u8]) -> Verdict {
    unwinding_panics();
    let Ok(prog) = decode(data, Flavor::Misuse) else { return Verdict::Rejected };
    if let Err(f) = run_misuse(&prog, RunOpts::FUZZ) {
        fail("misuse", &prog, f, |heap| run_misuse(&prog, RunOpts { heap, ..RunOpts::FUZZ }).map(|_| ()), "");
    }
    Verdict::Ran
}

/// The seed programs of each target's corpus, by target name.
/// The seed programs of each target's corpus, by target name: the hand-written ones, then
/// every regression listing of the target (`corpora/regressions/<target>/NAME.prog`, as
/// `regress-NAME`; free-running takes the deterministic ones too), so that fuzzing starts from
/// every state that ever broke the allocator.
pub fn seed_sets() -> Vec<(&'static str, Vec<(String, Program)>)> {
    let named = |v: Vec<(&'static str, Program)>| v.into_iter().map(|(n, p)| (n.to_owned(), p)).collect::<Vec<_>>();
    let regress = |targets: &[&str]| {
        let mut out = Vec::new();
        for t in targets {
            let dir = corpora_dir().join("regressions").join(t);
            let mut files: Vec<_> = std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
            files.sort();
            for f in files.into_iter().filter(|f| f.extension().is_some_and(|e| e == "prog")) {
                let prog = load(&f, t).unwrap_or_else(|e| panic!("{e}"));
                out.push((format!("regress-{}", f.file_stem().expect("a name").to_string_lossy()), prog));
            }
        }
        out
    };
    let with = |mut v: Vec<(String, Program)>, r: Vec<(String, Program)>| {
        v.extend(r);
        v
    };
    vec![
        ("deterministic", with(named(seeds::plain()), regress(&["deterministic"]))),
        ("free_running", with(named(seeds::plain()), regress(&["deterministic", "free_running"]))),
        ("misuse", with(named(seeds::misuse()), regress(&["misuse"]))),
    ]
}

/// The `corpora` directory of the source tree.
pub fn corpora_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpora")
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
/// after every step, on a new heap and then on a reset one, whose traces must be the same (a
/// reset heap is a new heap). Says what the runs did, or how the first failing one failed.
pub fn replay_one(target: &str, prog: &Program) -> Result<String, Failure> {
    let misuse = flavor_of(target) == Flavor::Misuse;
    let new = trace::trace(prog, misuse, HeapUse::New);
    let reset = trace::trace(prog, misuse, HeapUse::Reset);
    if let Some(d) = trace::difference(&new, &reset) {
        return Err(Failure::at(None, format!("a reset heap ran it differently from a new heap: {d}")));
    }
    let opts = RunOpts { heap: HeapUse::New, ..RunOpts::THOROUGH };
    match flavor_of(target) {
        Flavor::Plain => {
            run_deterministic(prog, opts)?;
            Ok("every check held, no report".to_owned())
        }
        Flavor::Misuse => Ok(match run_misuse(prog, opts)? {
            Some(r) => format!("reported as expected: {r}"),
            None => "the write after free was not made (the free sent its slab back to the pool); no report, as expected".to_owned(),
        }),
    }
}
