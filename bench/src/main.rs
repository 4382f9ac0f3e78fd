//! Side-by-side allocator benchmark: every allocator under test lives in this one process and
//! is called through a `dyn GlobalAlloc` handle, rounds are interleaved across allocators, and
//! the report shows medians and ratios. No `#[global_allocator]` is set, so the harness's own
//! bookkeeping (Vecs, channels, strings) uses the system allocator equally for everyone.

mod allocators;
mod chart;
mod guard;
mod heap;
mod memory;
mod report;
mod rng;
mod workloads;

use std::io::IsTerminal;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use allocators::{Allocator, ALLOCATORS};
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
  --quick            few-second smoke run (1/10 of the operations, 3 rounds)
  --rounds N         timed rounds per allocator and workload (default 5, quick 3)
  --scale F          multiply every workload's operation count by F
  --only W[,W..]     run only these workloads
  --alloc A[,A..]    run only these allocators
  --json PATH        also write the results as JSON to PATH
  --no-rss           skip the memory table (peak/final RSS, one child process per cell)
  --out-dir DIR      write DIR/latest.md, DIR/latest.png (chart) and DIR/latest.json;
                     a full run (no --quick, --only, --alloc or --scale) defaults to
                     bench/results, any other run writes nothing unless this is given
  --no-out           write no result files even for a full run
  --timeout SECS     abort (exit 3) if one run exceeds SECS (default 120)
  --pair-loop N      do exactly N alloc/free pairs of 64 B on the one --alloc and exit
                     (for callgrind: --toggle-collect='*pair_loop*', divide by N)
  --rss-child W A    internal: run workload W once on allocator A with --ops N operations
                     and print peak/final RSS (the parent's memory table runs this)
  --list             list workloads and allocators
  -h, --help         this text

An operation is one allocation (or realloc) with its matching free; Mops/s = million
operations per second, and 'vs X' is that allocator's throughput over X's (>1 = faster).";

/// Parsed command line.
struct Options {
    quick: bool,
    rounds: Option<usize>,
    scale: f64,
    only: Option<Vec<&'static Workload>>,
    allocs: Option<Vec<&'static Allocator>>,
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

fn parse_list<T>(
    arg: &str,
    what: &str,
    find: impl Fn(&str) -> Option<T>,
    known: &[&str],
) -> Result<Vec<T>, String> {
    arg.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            find(s).ok_or_else(|| format!("unknown {what} '{s}' (known: {})", known.join(", ")))
        })
        .collect()
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        rounds: None,
        scale: 1.0,
        only: None,
        allocs: None,
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
    let workload_names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
    let alloc_names: Vec<&str> = ALLOCATORS.iter().map(|a| a.name).collect();
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
            "--only" => {
                o.only = Some(parse_list(
                    &value()?,
                    "workload",
                    workloads::by_name,
                    &workload_names,
                )?)
            }
            "--alloc" => {
                o.allocs = Some(parse_list(
                    &value()?,
                    "allocator",
                    allocators::by_name,
                    &alloc_names,
                )?)
            }
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
        println!("workloads:");
        for w in WORKLOADS {
            println!(
                "  {:<14} {} (default {} ops)",
                w.name, w.about, w.default_ops
            );
        }
        println!("allocators:");
        for a in ALLOCATORS {
            println!("  {}", a.name);
        }
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

fn run_all(opts: &Options) -> ExitCode {
    let machine = Machine::detect();
    let rounds = opts.rounds.unwrap_or(if opts.quick { 3 } else { 5 });
    let scale = opts.scale / if opts.quick { 10.0 } else { 1.0 };
    let chosen_workloads: Vec<&Workload> = opts
        .only
        .clone()
        .unwrap_or_else(|| WORKLOADS.iter().collect());
    let chosen_allocs: Vec<&Allocator> = opts
        .allocs
        .clone()
        .unwrap_or_else(|| ALLOCATORS.iter().collect());

    println!(
        "hakmem-bench: {} workloads x {} allocators x {rounds} rounds{}",
        chosen_workloads.len(),
        chosen_allocs.len(),
        if opts.quick { " (quick)" } else { "" }
    );
    println!(
        "machine: nproc {}, CPU {}, kernel {}",
        machine.nproc, machine.cpu_model, machine.kernel
    );
    println!("{NOTE}");
    println!();

    guard::start_watchdog(opts.timeout);
    // A progress line is only useful to a person watching; in logs it interleaves with rows.
    let progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut all: Vec<Outcome> = Vec::new();
    // Header needs to know which ratio columns exist before any row is printed.
    let refs: Vec<&str> = allocators::REFERENCES
        .iter()
        .copied()
        .filter(|r| chosen_allocs.iter().any(|a| a.name == *r))
        .collect();
    println!("{}", report::table_header(&refs));

    let ops_of = |w: &Workload| ((w.default_ops as f64 * scale).round() as u64).max(1000);
    for w in &chosen_workloads {
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
                error: None,
            })
            .collect();
        // Round 0 is an untimed warm-up at a tenth of the size, so first-touch page faults and
        // lazy initialisation are not charged to whichever allocator happens to go first.
        for round in 0..=rounds {
            for (row, a) in rows.iter_mut().zip(&chosen_allocs) {
                if row.error.is_some() {
                    continue;
                }
                let n = if round == 0 {
                    (ops / 10).max(1000)
                } else {
                    ops
                };
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

    let mut mem: Vec<MemOutcome> = Vec::new();
    if opts.rss {
        println!();
        println!(
            "memory: each workload once per allocator, each in its own process; peak = VmHWM, \
             final = VmRSS after everything was freed (MiB, including the process baseline)"
        );
        let mem_refs: Vec<&str> = refs.iter().copied().filter(|r| *r == "mimalloc").collect();
        println!("{}", memory::table_header(&mem_refs));
        for w in &chosen_workloads {
            if progress {
                eprint!("memory {:<14}\r", w.name);
            }
            for a in &chosen_allocs {
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
    println!(
        "total time {:.1} s; {NOTE}",
        started.elapsed().as_secs_f64()
    );

    if let Some(path) = &opts.json {
        let json = report::to_json(&machine, rounds, opts.quick, NOTE, &all, &mem);
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("hakmem-bench: cannot write {path}: {e}");
            return ExitCode::from(2);
        }
        println!("wrote {path}");
    }
    let full_run = !opts.quick && opts.only.is_none() && opts.allocs.is_none() && opts.scale == 1.0;
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
        let workload_names: Vec<&str> = chosen_workloads.iter().map(|w| w.name).collect();
        let info = RunInfo {
            machine: &machine,
            rounds,
            quick: opts.quick,
            scale,
            note: NOTE,
            workloads: &workload_names,
            allocs: &names,
            chart: Some("latest.png"),
        };
        if let Err(e) = write_results(&dir, &info, &all, &mem) {
            eprintln!("hakmem-bench: {e}");
            return ExitCode::from(2);
        }
        println!("wrote {}/latest.{{md,png,json}}", dir.display());
    }
    if all.iter().any(|o| o.error.is_some()) || mem.iter().any(|m| m.rss.is_err()) {
        println!("some runs FAILED; see the table above");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn write_results(
    dir: &std::path::Path,
    info: &RunInfo,
    all: &[Outcome],
    mem: &[MemOutcome],
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let subtitle = format!(
        "median of {} rounds; {}; {} CPUs; {}{}",
        info.rounds,
        info.machine.cpu_model,
        info.machine.nproc,
        info.machine.libc,
        if info.quick { "; QUICK RUN" } else { "" }
    );
    chart::write_png(
        &dir.join("latest.png"),
        all,
        info.workloads,
        info.allocs,
        &subtitle,
    )?;
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    write("latest.md", report::markdown(info, all, mem))?;
    write(
        "latest.json",
        report::to_json(info.machine, info.rounds, info.quick, info.note, all, mem),
    )
}
