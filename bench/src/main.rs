//! Side-by-side allocator benchmark in two suites. The Rust suite: every allocator under test
//! lives in this one process and is called through a `dyn GlobalAlloc` handle, rounds are
//! interleaved across allocators, and the report shows medians and ratios. No
//! `#[global_allocator]` is set, so the harness's own bookkeeping (Vecs, channels, strings) uses
//! the system allocator equally for everyone. The C suite (csuite.rs): C programs and real
//! programs, each run as a process of its own under `LD_PRELOAD` of each allocator.

mod allocators;
mod chart;
mod creport;
mod csuite;
mod guard;
mod heap;
mod inputs;
mod memory;
mod placement;
mod process;
mod report;
mod rng;
mod workloads;

use std::io::IsTerminal;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use allocators::{Allocator, ALLOCATORS};
use creport::CInfo;
use csuite::{Bench, CRow, Preload, BENCHES};
use memory::MemOutcome;
use report::{Machine, Outcome, RunInfo};
use workloads::{Workload, WORKLOADS};

const NOTE: &str = "Figures are medians of interleaved rounds measured in one process on a \
shared, noisy machine: read the ratios between allocators, not the absolute Mops/s, and treat \
differences under ~10% as noise.";

const USAGE: &str = "\
usage: hakmem-bench [options]
       hakmem-bench --pair-loop N --alloc NAME
       hakmem-bench --rss-child WORKLOAD ALLOC --ops N

options:
  --suite S          rust (GlobalAlloc in one process), c (programs under LD_PRELOAD)
                     or all (default)
  --quick            smoke run: the Rust suite at 1/10 of the operations and 3 rounds,
                     the C suite at its quick sizes and 1 round
  --rounds N         timed rounds per allocator and workload (default: Rust 5, C 3)
  --scale F          multiply every Rust workload's operation count by F
  --only W[,W..]     run only these workloads (Rust) and benchmarks (C)
  --alloc A[,A..]    run only these allocators (of either suite; the C suite still runs
                     glibc once per benchmark for the reference output)
  --preload-dir DIR  where libhakmem.so and libhakmem_checked.so are (default: the
                     directory of this binary, i.e. target/release)
  --json PATH        also write the results as JSON to PATH
  --no-rss           skip the Rust suite's memory table (one child process per cell)
  --out-dir DIR      write DIR/latest.md, DIR/latest.png and DIR/latest-c.png (charts)
                     and DIR/latest.json; a full run (both suites, no --quick, --only,
                     --alloc or --scale) defaults to bench/results, any other run writes
                     nothing unless this is given
  --no-out           write no result files even for a full run
  --timeout SECS     Rust suite: abort (exit 3) if one run exceeds SECS; C suite: kill
                     a run after SECS and report it failed (default 120)
  --pair-loop N      do exactly N alloc/free pairs of 64 B on the one --alloc and exit
                     (for callgrind: --toggle-collect='*pair_loop*', divide by N)
  --rss-child W A    internal: run workload W once on allocator A with --ops N operations
                     and print peak/final RSS (the parent's memory table runs this)
  --list             list workloads, benchmarks and allocators
  -h, --help         this text

Rust suite: an operation is one allocation (or realloc) with its matching free; Mops/s =
million operations per second, and 'vs X' is that allocator's throughput over X's (>1 =
faster). C suite: wall time of each process and its peak RSS; speed vs best = the best of
mimalloc, jemalloc and tcmalloc's time over this one's (>1 = faster), peak vs best = this
one's peak RSS over the smallest of theirs. `just bench` installs the C suite's Debian
packages and builds the preload libraries first.";

/// Which suites to run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Suite {
    Rust,
    C,
    All,
}

/// Parsed command line. `only` and `allocs` hold the Rust suite's picks, `c_only` and
/// `c_allocs` the C suite's, from the same flags.
struct Options {
    suite: Suite,
    quick: bool,
    rounds: Option<usize>,
    scale: f64,
    only: Option<Vec<&'static Workload>>,
    c_only: Option<Vec<&'static Bench>>,
    allocs: Option<Vec<&'static Allocator>>,
    c_allocs: Option<Vec<&'static str>>,
    preload_dir: Option<PathBuf>,
    json: Option<String>,
    timeout: Duration,
    pair_loop: Option<u64>,
    list: bool,
    rss: bool,
    out_dir: Option<PathBuf>,
    no_out: bool,
    rss_child: Option<(&'static Workload, &'static Allocator)>,
    ops: Option<u64>,
}

/// Splits a comma-separated list of names between the Rust suite (`rust`) and the C suite
/// (`c`); a name may belong to both, and one that belongs to neither is an error.
fn parse_both<R, C>(
    arg: &str,
    what: &str,
    rust: impl Fn(&str) -> Option<R>,
    c: impl Fn(&str) -> Option<C>,
    known: &[&str],
) -> Result<(Vec<R>, Vec<C>), String> {
    let (mut rs, mut cs) = (Vec::new(), Vec::new());
    for name in arg.split(',').filter(|s| !s.is_empty()) {
        let (r, k) = (rust(name), c(name));
        if r.is_none() && k.is_none() {
            return Err(format!(
                "unknown {what} '{name}' (known: {})",
                known.join(", ")
            ));
        }
        rs.extend(r);
        cs.extend(k);
    }
    Ok((rs, cs))
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        suite: Suite::All,
        quick: false,
        rounds: None,
        scale: 1.0,
        only: None,
        c_only: None,
        allocs: None,
        c_allocs: None,
        preload_dir: None,
        json: None,
        timeout: Duration::from_secs(120),
        pair_loop: None,
        list: false,
        rss: true,
        out_dir: None,
        no_out: false,
        rss_child: None,
        ops: None,
    };
    let workload_names: Vec<&str> = WORKLOADS
        .iter()
        .map(|w| w.name)
        .chain(BENCHES.iter().map(|b| b.name))
        .collect();
    let rust_names: Vec<&str> = ALLOCATORS.iter().map(|a| a.name).collect();
    let c_only_names = csuite::ALLOCATORS
        .iter()
        .filter(|a| !rust_names.contains(a));
    let alloc_names: Vec<&str> = rust_names.iter().chain(c_only_names).copied().collect();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        // Accept both "--flag value" and "--flag=value".
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--quick" => o.quick = true,
            "--list" => o.list = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--rounds" => {
                let n: usize = value()?.parse().map_err(|e| format!("--rounds: {e}"))?;
                if n == 0 {
                    return Err("--rounds must be at least 1".into());
                }
                o.rounds = Some(n);
            }
            "--scale" => {
                o.scale = value()?.parse().map_err(|e| format!("--scale: {e}"))?;
                if !(o.scale > 0.0 && o.scale.is_finite()) {
                    return Err("--scale must be a positive number".into());
                }
            }
            "--timeout" => {
                let secs: u64 = value()?.parse().map_err(|e| format!("--timeout: {e}"))?;
                o.timeout = Duration::from_secs(secs.max(1));
            }
            "--pair-loop" => {
                o.pair_loop = Some(value()?.parse().map_err(|e| format!("--pair-loop: {e}"))?)
            }
            "--suite" => {
                o.suite = match value()?.as_str() {
                    "rust" => Suite::Rust,
                    "c" => Suite::C,
                    "all" => Suite::All,
                    other => return Err(format!("--suite: '{other}' is not rust, c or all")),
                }
            }
            "--only" => {
                let (r, c) = parse_both(
                    &value()?,
                    "workload or benchmark",
                    workloads::by_name,
                    csuite::by_name,
                    &workload_names,
                )?;
                o.only = Some(r);
                o.c_only = Some(c);
            }
            "--alloc" => {
                let c_alloc = |n: &str| csuite::ALLOCATORS.iter().copied().find(|a| *a == n);
                let (r, c) = parse_both(
                    &value()?,
                    "allocator",
                    allocators::by_name,
                    c_alloc,
                    &alloc_names,
                )?;
                o.allocs = Some(r);
                o.c_allocs = Some(c);
            }
            "--preload-dir" => o.preload_dir = Some(PathBuf::from(value()?)),
            "--json" => o.json = Some(value()?),
            "--no-rss" => o.rss = false,
            "--no-out" => o.no_out = true,
            "--out-dir" => o.out_dir = Some(PathBuf::from(value()?)),
            "--ops" => o.ops = Some(value()?.parse().map_err(|e| format!("--ops: {e}"))?),
            "--rss-child" => {
                let w = value()?;
                let w = workloads::by_name(&w)
                    .ok_or_else(|| format!("--rss-child: unknown workload '{w}'"))?;
                let a = args
                    .next()
                    .ok_or("--rss-child needs a workload and an allocator")?;
                let a = allocators::by_name(&a)
                    .ok_or_else(|| format!("--rss-child: unknown allocator '{a}'"))?;
                o.rss_child = Some((w, a));
            }
            _ => return Err(format!("unknown argument '{arg}'\n\n{USAGE}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("hakmem-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if opts.list {
        println!("Rust suite workloads:");
        for w in WORKLOADS {
            println!(
                "  {:<14} {} (default {} ops)",
                w.name, w.about, w.default_ops
            );
        }
        println!(
            "Rust suite allocators: {}",
            ALLOCATORS
                .iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("C suite benchmarks:");
        for b in BENCHES {
            println!("  {:<17} {}", b.name, b.about);
        }
        println!("C suite allocators: {}", csuite::ALLOCATORS.join(", "));
        return ExitCode::SUCCESS;
    }
    guard::install_crash_handler();
    guard::install_panic_hook();
    if let Some(n) = opts.pair_loop {
        return pair_loop(&opts, n);
    }
    if let Some((w, a)) = opts.rss_child {
        let Some(ops) = opts.ops else {
            eprintln!("hakmem-bench: --rss-child needs --ops N");
            return ExitCode::from(2);
        };
        guard::start_watchdog(opts.timeout);
        guard::enter(index_of(WORKLOADS, w), index_of(ALLOCATORS, a), 1);
        return memory::child_main(w, a, ops);
    }
    run_all(&opts)
}

fn pair_loop(opts: &Options, n: u64) -> ExitCode {
    let alloc = match opts.allocs.as_deref() {
        Some([one]) => *one,
        _ => {
            eprintln!("hakmem-bench: --pair-loop needs exactly one --alloc NAME");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    workloads::pair_loop(alloc.handle, n);
    let secs = start.elapsed().as_secs_f64();
    // Timing is a by-product here; instruction counts from callgrind are the point.
    println!(
        "pair-loop: {n} pairs of 64 B on {} in {secs:.3} s",
        alloc.name
    );
    ExitCode::SUCCESS
}

fn index_of<T>(table: &[T], item: &T) -> usize {
    table
        .iter()
        .position(|x| std::ptr::eq(x, item))
        .expect("item comes from the table")
}

/// What the Rust suite measured, for the report.
struct RustResults {
    workloads: Vec<&'static str>,
    allocs: Vec<&'static str>,
    all: Vec<Outcome>,
    mem: Vec<MemOutcome>,
}

/// What the C suite measured, for the report.
struct CResults {
    allocs: Vec<Preload>,
    benches: Vec<(&'static str, &'static str, String, Option<String>)>,
    rows: Vec<CRow>,
    rounds: usize,
}

fn run_all(opts: &Options) -> ExitCode {
    let machine = Machine::detect();
    let rust_workloads: Vec<&Workload> = match opts.suite {
        Suite::C => Vec::new(),
        _ => opts
            .only
            .clone()
            .unwrap_or_else(|| WORKLOADS.iter().collect()),
    };
    let c_benches: Vec<&'static Bench> = match opts.suite {
        Suite::Rust => Vec::new(),
        _ => opts
            .c_only
            .clone()
            .unwrap_or_else(|| BENCHES.iter().collect()),
    };
    let c_names: Vec<&'static str> = opts
        .c_allocs
        .clone()
        .unwrap_or_else(|| csuite::ALLOCATORS.to_vec());
    let rust_allocs: Vec<&Allocator> = opts
        .allocs
        .clone()
        .unwrap_or_else(|| ALLOCATORS.iter().collect());
    let run_rust = !rust_workloads.is_empty() && !rust_allocs.is_empty();
    let run_c = !c_benches.is_empty() && !c_names.is_empty();
    if !run_rust && !run_c {
        eprintln!("hakmem-bench: nothing to run (check --suite, --only and --alloc)");
        return ExitCode::from(2);
    }
    // The C suite's libraries and programs are looked for first, so a missing package fails the
    // run at once instead of after the Rust suite.
    let c_allocs = if run_c {
        let dir = opts.preload_dir.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(PathBuf::from))
                .unwrap_or_default()
        });
        match csuite::prepare(&c_names, &c_benches, &dir) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("hakmem-bench: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        Vec::new()
    };
    println!(
        "machine: nproc {}, CPU {}, kernel {}",
        machine.nproc, machine.cpu_model, machine.kernel
    );
    let started = Instant::now();
    let rust = run_rust.then(|| rust_suite(opts, &rust_workloads, &rust_allocs));
    let c = run_c.then(|| c_suite(opts, c_allocs, &c_benches));
    let c = match c {
        Some(Err(e)) => {
            eprintln!("hakmem-bench: {e}");
            return ExitCode::from(2);
        }
        Some(Ok(c)) => Some(c),
        None => None,
    };
    println!("total time {:.1} s", started.elapsed().as_secs_f64());

    let rust_rounds = rust_rounds(opts);
    let c_json = c
        .as_ref()
        .map(|c| creport::to_json(&c_info(opts, c, None), &c.rows));
    if let Some(path) = &opts.json {
        let (all, mem) = rust
            .as_ref()
            .map_or((&[][..], &[][..]), |r| (&r.all[..], &r.mem[..]));
        let json = report::to_json(
            &machine,
            rust_rounds,
            opts.quick,
            NOTE,
            all,
            mem,
            c_json.as_deref(),
        );
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("hakmem-bench: cannot write {path}: {e}");
            return ExitCode::from(2);
        }
        println!("wrote {path}");
    }
    let full_run = !opts.quick
        && opts.only.is_none()
        && opts.allocs.is_none()
        && opts.scale == 1.0
        && opts.suite == Suite::All;
    let out_dir = match (&opts.out_dir, opts.no_out) {
        (_, true) => None,
        (Some(d), false) => Some(d.clone()),
        // Only a full default run may overwrite the published results.
        (None, false) if full_run => {
            Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results"))
        }
        (None, false) => None,
    };
    if let Some(dir) = out_dir {
        if let Err(e) = write_results(&dir, opts, &machine, rust.as_ref(), c.as_ref()) {
            eprintln!("hakmem-bench: {e}");
            return ExitCode::from(2);
        }
        println!("wrote {}/latest.{{md,json}} and the charts", dir.display());
    }
    let rust_failed = rust.as_ref().is_some_and(|r| {
        r.all.iter().any(|o| o.error.is_some()) || r.mem.iter().any(|m| m.rss.is_err())
    });
    let c_failed = c
        .as_ref()
        .is_some_and(|c| c.rows.iter().any(|r| r.error.is_some()));
    if rust_failed || c_failed {
        println!("some runs FAILED; see the tables above");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The order in which `n` allocators run in `round`: a different shuffle each round (the same
/// in every run), so that no allocator always runs right after the same one. Whoever ran right
/// after the system allocator's larson-2t (300 MiB touched) was about 6% slower, side by side
/// with the CPUs near (hakmem 180-194 Mops/s after it, 188-211 after jemalloc; jemalloc alike);
/// in a fixed order that was always hakmem. A rotation would not do: it keeps who follows whom.
fn round_order(n: usize, round: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = rng::Rng::new(0x5eed_0000 + round as u64);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

fn rust_rounds(opts: &Options) -> usize {
    opts.rounds.unwrap_or(if opts.quick { 3 } else { 5 })
}

fn rust_suite(
    opts: &Options,
    chosen_workloads: &[&'static Workload],
    chosen_allocs: &[&'static Allocator],
) -> RustResults {
    let rounds = rust_rounds(opts);
    let scale = opts.scale / if opts.quick { 10.0 } else { 1.0 };
    println!(
        "\nRust suite: {} workloads x {} allocators x {rounds} rounds{}",
        chosen_workloads.len(),
        chosen_allocs.len(),
        if opts.quick { " (quick)" } else { "" }
    );
    println!("{NOTE}");
    println!();

    guard::start_watchdog(opts.timeout);
    // A progress line is only useful to a person watching; in logs it interleaves with rows.
    let progress = std::io::stderr().is_terminal();
    let mut all: Vec<Outcome> = Vec::new();
    // Header needs to know which ratio columns exist before any row is printed.
    let refs: Vec<&str> = allocators::REFERENCES
        .iter()
        .copied()
        .filter(|r| chosen_allocs.iter().any(|a| a.name == *r))
        .collect();
    println!("{}", report::table_header(&refs));

    let ops_of = |w: &Workload| ((w.default_ops as f64 * scale).round() as u64).max(1000);
    for w in chosen_workloads {
        let ops = ops_of(w);
        let wi = index_of(WORKLOADS, *w);
        if progress {
            eprint!("running {:<14}\r", w.name);
        }
        let mut rows: Vec<Outcome> = chosen_allocs
            .iter()
            .map(|a| Outcome {
                workload: w.name,
                allocator: a.name,
                ops,
                mops: Vec::new(),
                rtt_ns: Vec::new(),
                error: None,
            })
            .collect();
        // Round 0 is an untimed warm-up at a tenth of the size, so first-touch page faults and
        // lazy initialisation are not charged to whichever allocator happens to go first.
        for round in 0..=rounds {
            for i in round_order(rows.len(), round) {
                let (row, a) = (&mut rows[i], &chosen_allocs[i]);
                if row.error.is_some() {
                    continue;
                }
                let n = if round == 0 {
                    (ops / 10).max(1000)
                } else {
                    ops
                };
                if round > 0 {
                    row.rtt_ns.extend(placement::round_trip_ns());
                }
                guard::enter(wi, index_of(ALLOCATORS, *a), round);
                let t = Instant::now();
                let result = panic::catch_unwind(AssertUnwindSafe(|| (w.run)(a.handle, n)));
                let secs = t.elapsed().as_secs_f64();
                guard::leave();
                match result {
                    Ok(done) if round > 0 => row.mops.push(done as f64 / secs / 1e6),
                    Ok(_) => {}
                    Err(p) => {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panic".into());
                        let when = if round == 0 {
                            "warm-up".to_string()
                        } else {
                            format!("round {round}")
                        };
                        row.error = Some(format!("panicked in {when}: {msg}"));
                    }
                }
            }
        }
        all.extend(rows);
        for row in all.iter().filter(|o| o.workload == w.name) {
            println!("{}", report::table_row(&all, row, &refs));
        }
    }
    if progress {
        eprint!("{:<30}\r", "");
    }
    println!();
    let names: Vec<&str> = chosen_allocs.iter().map(|a| a.name).collect();
    print!("{}", report::summary(&all, &names, &refs));
    println!("{}", placement::note(report::probes(&all), "workload"));

    let mut mem: Vec<MemOutcome> = Vec::new();
    if opts.rss {
        println!();
        println!(
            "memory: each workload once per allocator, each in its own process; peak = VmHWM, \
             final = VmRSS after everything was freed (MiB, including the process baseline)"
        );
        let mem_refs: Vec<&str> = refs.iter().copied().filter(|r| *r == "mimalloc").collect();
        println!("{}", memory::table_header(&mem_refs));
        for w in chosen_workloads {
            if progress {
                eprint!("memory {:<14}\r", w.name);
            }
            for a in chosen_allocs {
                mem.push(memory::measure(w, a, ops_of(w), opts.timeout.as_secs()));
            }
            for row in mem.iter().filter(|o| o.workload == w.name) {
                println!("{}", memory::table_row(&mem, row, &mem_refs));
            }
        }
        if progress {
            eprint!("{:<30}\r", "");
        }
        println!();
    }
    RustResults {
        workloads: chosen_workloads.iter().map(|w| w.name).collect(),
        allocs: names,
        all,
        mem,
    }
}

fn c_suite(
    opts: &Options,
    allocs: Vec<Preload>,
    benches: &[&'static Bench],
) -> Result<CResults, String> {
    let rounds = opts.rounds.unwrap_or(if opts.quick { 1 } else { 3 });
    println!(
        "\nC suite: {} benchmarks x {} allocators x {rounds} rounds{}, each run a process under \
         LD_PRELOAD; every output checked against glibc's",
        benches.len(),
        allocs.len(),
        if opts.quick { " (quick sizes)" } else { "" }
    );
    for a in &allocs {
        let lib = a
            .lib
            .as_deref()
            .map_or("(no preload)".into(), |l| l.display().to_string());
        println!("  {:<15} {lib} ({})", a.name, a.origin);
    }
    println!();
    process::no_core_files();
    let scratch = csuite::scratch_dir()?;
    let cfg = csuite::Config {
        rounds,
        quick: opts.quick,
        timeout: opts.timeout,
        benches,
        allocs: &allocs,
        scratch: &scratch,
    };
    println!("{}", creport::table_header());
    // A benchmark's ratios need only its own rows, which is what each call gets.
    let rows = csuite::run(&cfg, |rows| {
        for r in rows {
            println!("{}", creport::table_row(rows, r));
        }
    });
    println!();
    print!("{}", creport::summary(&rows, &allocs));
    println!("{}", placement::note(creport::probes(&rows), "benchmark"));
    let commands = benches
        .iter()
        .map(|b| {
            let cmd = b
                .invocation(&scratch, opts.quick)
                .map_or_else(|e| format!("({e})"), |i| i.display());
            (b.name, b.about, cmd, b.origin())
        })
        .collect();
    if rows.iter().any(|r| r.error.is_some()) {
        println!(
            "C suite: the logs of the failed runs' inputs stay in {}",
            scratch.display()
        );
    } else if let Err(e) = std::fs::remove_dir_all(&scratch) {
        eprintln!("hakmem-bench: cannot remove {}: {e}", scratch.display());
    }
    Ok(CResults {
        allocs,
        benches: commands,
        rows,
        rounds,
    })
}

fn c_info<'a>(opts: &Options, c: &'a CResults, chart: Option<&'a str>) -> CInfo<'a> {
    CInfo {
        rounds: c.rounds,
        quick: opts.quick,
        timeout_secs: opts.timeout.as_secs(),
        allocs: &c.allocs,
        benches: &c.benches,
        chart,
    }
}

fn write_results(
    dir: &std::path::Path,
    opts: &Options,
    machine: &Machine,
    rust: Option<&RustResults>,
    c: Option<&CResults>,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let suites = match (rust.is_some(), c.is_some()) {
        (true, true) => "both suites",
        (true, false) => "the Rust suite only",
        _ => "the C suite only",
    };
    let rounds = rust_rounds(opts);
    let mut md = report::markdown_head(machine, opts.quick, suites);
    let subtitle = |rounds: usize| {
        format!(
            "median of {rounds} round{}; {}; {} CPUs; {}{}",
            if rounds == 1 { "" } else { "s" },
            machine.cpu_model,
            machine.nproc,
            machine.libc,
            if opts.quick { "; QUICK RUN" } else { "" }
        )
    };
    if let Some(r) = rust {
        let value = |w: &str, a: &str| {
            let row = r.all.iter().find(|o| o.workload == w && o.allocator == a)?;
            report::ratio(&r.all, row, "system")
        };
        chart::write_png(
            &dir.join("latest.png"),
            &chart::Chart {
                title: "Throughput relative to the system allocator (higher is better)",
                y_desc: "ops/s ÷ system ops/s",
                subtitle: &subtitle(rounds),
                workloads: &r.workloads,
                allocs: &r.allocs,
            },
            &value,
        )?;
        let info = RunInfo {
            rounds,
            scale: opts.scale / if opts.quick { 10.0 } else { 1.0 },
            note: NOTE,
            workloads: &r.workloads,
            allocs: &r.allocs,
            chart: Some("latest.png"),
        };
        md.push_str(&report::markdown(&info, &r.all, &r.mem));
    }
    let mut c_json = None;
    if let Some(c) = c {
        let info = c_info(opts, c, Some("latest-c.png"));
        creport::write_chart(
            &dir.join("latest-c.png"),
            &info,
            &c.rows,
            &subtitle(c.rounds),
        )?;
        md.push_str(&creport::markdown(&info, &c.rows));
        c_json = Some(creport::to_json(&info, &c.rows));
    }
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    write("latest.md", md)?;
    let (all, mem) = rust.map_or((&[][..], &[][..]), |r| (&r.all[..], &r.mem[..]));
    write(
        "latest.json",
        report::to_json(
            machine,
            rounds,
            opts.quick,
            NOTE,
            all,
            mem,
            c_json.as_deref(),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::round_order;

    #[test]
    fn each_round_is_a_permutation_and_predecessors_vary() {
        let n = super::ALLOCATORS.len();
        let rounds: Vec<Vec<usize>> = (1..=5).map(|r| round_order(n, r)).collect();
        for order in &rounds {
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        }
        // Over the timed rounds, no allocator runs right after the same one most of the time.
        for a in 0..n {
            let before: Vec<Option<usize>> = rounds
                .iter()
                .map(|o| {
                    let at = o.iter().position(|&x| x == a).unwrap();
                    at.checked_sub(1).map(|p| o[p])
                })
                .collect();
            // At most two of five: a median of five never rests on rounds after the same one.
            for b in &before {
                let same = before.iter().filter(|x| *x == b).count();
                assert!(same <= 2, "allocator {a} after {b:?} in {same} of 5 rounds: {rounds:?}");
            }
        }
    }
}
