//! The C suite: the C programs of bench/c/ (compiled by build.rs) and real programs (sqlite3,
//! python3, sort, gcc), each run as a process of its own under `LD_PRELOAD` of each allocator's
//! shared library (glibc: nothing preloaded), the way C users meet an allocator.
//!
//! Every benchmark first runs once untimed under glibc; its stdout is the reference that every
//! later run, glibc's own included, must reproduce byte for byte (the C programs print their
//! parameters and a checksum of every block they read, the real programs their results). Then
//! come the timed rounds, each running every allocator once, starting with a different allocator
//! each round so none always runs first or last. A run that exits non-zero, dies by a signal, runs
//! past the time limit or prints something else fails its cell, loudly, and the allocator runs no
//! more rounds of that benchmark.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::inputs;
use crate::process::{self, Ending};
use crate::report::{median, spread};

/// The allocators of the C suite in report order; glibc, the reference, first.
pub const ALLOCATORS: &[&str] = &[
    "glibc",
    "hakmem",
    "hakmem-checked",
    "mimalloc",
    "jemalloc",
    "tcmalloc",
];

/// The peers whose best (fastest, or smallest) figure hakmem is measured against.
pub const PEERS: &[&str] = &["mimalloc", "jemalloc", "tcmalloc"];

/// The Debian packages of the peers, and the end of their library's path in the package.
const DEBS: &[(&str, &str, &str)] = &[
    ("mimalloc", "libmimalloc2.0", "/libmimalloc.so.2"),
    ("jemalloc", "libjemalloc2", "/libjemalloc.so.2"),
    (
        "tcmalloc",
        "libtcmalloc-minimal4",
        "/libtcmalloc_minimal.so.4",
    ),
];

/// An allocator as the C suite runs it.
pub struct Preload {
    /// Name in tables and on the command line.
    pub name: &'static str,
    /// The library to preload; None for glibc's own malloc.
    pub lib: Option<PathBuf>,
    /// Where it comes from, for the report (package and version, or the build).
    pub origin: String,
}

/// How to start one benchmark: a program, its arguments and what to feed its stdin.
pub struct Invocation {
    program: PathBuf,
    args: Vec<String>,
    stdin: Option<PathBuf>,
}

impl Invocation {
    /// The command as a person would type it (inputs named by their file in the scratch dir).
    pub fn display(&self) -> String {
        let mut s = self
            .program
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        for a in &self.args {
            s.push(' ');
            s.push_str(a.rsplit('/').next().unwrap_or(a));
        }
        if let Some(f) = &self.stdin {
            s.push_str(" < ");
            s.push_str(&f.file_name().unwrap_or_default().to_string_lossy());
        }
        s
    }
}

enum Program {
    /// A program of bench/c/, given the sizes as its arguments.
    C(&'static str),
    /// A program of a Debian package, at `path`; `input` writes its input for the sizes into
    /// the scratch directory and returns its arguments and stdin.
    Real {
        package: &'static str,
        path: &'static str,
        input: fn(&Path, &[u64]) -> Result<Input, String>,
    },
}

/// A real program's arguments and the file for its stdin.
type Input = (Vec<String>, Option<PathBuf>);

/// One benchmark of the suite.
pub struct Bench {
    /// Name in tables and for `--only`.
    pub name: &'static str,
    /// What it does, for `--list` and the report.
    pub about: &'static str,
    full: &'static [u64],
    quick: &'static [u64],
    program: Program,
}

/// Every benchmark, in report order. The full sizes make the fastest allocators take a few tenths
/// of a second per run on a 2-core EPYC (the real programs 1 to 3 s); quick sizes are about a
/// tenth, for the smoke run.
pub static BENCHES: &[Bench] = &[
    Bench {
        name: "larson",
        about: "larson: 2 threads replace random blocks (8..1000 B) in 5000 slots each; every \
            generation's threads exit and their successors free their blocks",
        full: &[2, 20, 200_000, 5000, 8, 1000],
        quick: &[2, 4, 20_000, 5000, 8, 1000],
        program: Program::C("larson"),
    },
    Bench {
        name: "xmalloc-test",
        about: "xmalloc-test: 4 producers pass blocks (8..256 B) in batches through a queue to 4 \
            consumers that free them (all frees remote, 8 threads on 2 cores)",
        full: &[4, 4, 2_000_000, 64, 256],
        quick: &[4, 4, 100_000, 64, 256],
        program: Program::C("xmalloc-test"),
    },
    Bench {
        name: "sh6bench",
        about: "sh6bench: 2 threads allocate arrays of 2000 blocks (16..512 B, small first), free \
            half LIFO and half FIFO, 1 in 16 kept longer",
        full: &[2, 6000, 2000, 16, 512],
        quick: &[2, 300, 2000, 16, 512],
        program: Program::C("sh6bench"),
    },
    Bench {
        name: "sh8bench",
        about: "sh8bench: sh6bench's rounds, but the next thread in a ring frees half of each \
            array (remote), keeping 1 in 16 longer",
        full: &[2, 4500, 2000, 16, 512],
        quick: &[2, 250, 2000, 16, 512],
        program: Program::C("sh8bench"),
    },
    Bench {
        name: "cache-scratch-1t",
        about: "cache-scratch, 1 thread: free an 8 B object from the main thread, then allocate, \
            write 400k times and free an 8 B object, 1000 times",
        full: &[1, 1000, 8, 50_000],
        quick: &[1, 100, 8, 50_000],
        program: Program::C("cache-scratch"),
    },
    Bench {
        name: "cache-scratch-2t",
        about: "cache-scratch, 2 threads: as above on both cores; an allocator that puts the two \
            threads' objects in one cache line is slow (false sharing)",
        full: &[2, 1000, 8, 50_000],
        quick: &[2, 100, 8, 50_000],
        program: Program::C("cache-scratch"),
    },
    Bench {
        name: "cfrac",
        about: "cfrac-like: continued fractions of sqrt(N) for 60 N of 64..400 bits with a bignum \
            library that allocates every result (8..60 B, short-lived)",
        full: &[60, 15_000, 40],
        quick: &[20, 2000, 40],
        program: Program::C("cfrac"),
    },
    Bench {
        name: "malloc-thread-1t",
        about: "glibc's bench-malloc-thread, 1 thread: replace a random one of 1024 blocks with \
            one of 4..32767 B (log-uniform), 20M times",
        full: &[1, 20_000_000],
        quick: &[1, 1_000_000],
        program: Program::C("bench-malloc-thread"),
    },
    Bench {
        name: "malloc-thread-4t",
        about: "glibc's bench-malloc-thread, 4 threads (on 2 cores), 5M replacements each",
        full: &[4, 5_000_000],
        quick: &[4, 250_000],
        program: Program::C("bench-malloc-thread"),
    },
    Bench {
        name: "exchange",
        about: "all-to-all: 4 threads each allocate 4000 blocks (16..512 B) a round; each frees a \
            quarter of every thread's blocks (3/4 of frees remote)",
        full: &[4, 1200, 4000, 16, 512],
        quick: &[4, 60, 4000, 16, 512],
        program: Program::C("exchange"),
    },
    Bench {
        name: "sqlite3",
        about: "sqlite3 CLI, in-memory database: 100k inserts of varied text in one transaction, \
            then three aggregating SELECTs (bench/real/sqlite-session.awk)",
        full: &[100_000],
        quick: &[10_000],
        program: Program::Real {
            package: "sqlite3",
            path: "/usr/bin/sqlite3",
            input: sqlite_session,
        },
    },
    Bench {
        name: "python-json",
        about: "python3: build 10k nested records, json dumps and loads them 3 times, checking \
            each round trip (bench/real/json_roundtrip.py)",
        full: &[10_000, 3],
        quick: &[1000, 2],
        program: Program::Real {
            package: "python3",
            path: "/usr/bin/python3",
            input: python_json,
        },
    },
    Bench {
        name: "sort",
        about: "GNU sort (LC_ALL=C) of 1M generated lines of words and numbers, about 55 MB",
        full: &[1_000_000],
        quick: &[100_000],
        program: Program::Real {
            package: "coreutils",
            path: "/usr/bin/sort",
            input: sort_file,
        },
    },
    Bench {
        name: "gcc-O2",
        about: "gcc -O2 -S of a generated C file of 100 units (5000 lines: structs, qsort \
            comparators, switch loops, inlined statics)",
        full: &[100],
        quick: &[10],
        program: Program::Real {
            package: "gcc",
            path: "/usr/bin/gcc",
            input: gcc_file,
        },
    },
];

/// Looks a benchmark up by name.
pub fn by_name(name: &str) -> Option<&'static Bench> {
    BENCHES.iter().find(|b| b.name == name)
}

const C_PROGRAMS: &str = env!("HAKMEM_C_PROGRAMS");
const REAL_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/real");

fn write_input(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn sqlite_session(dir: &Path, size: &[u64]) -> Result<Input, String> {
    let sql = dir.join(format!("session-{}.sql", size[0]));
    let out = Command::new("awk")
        .arg("-v")
        .arg(format!("n={}", size[0]))
        .arg("-f")
        .arg(format!("{REAL_DIR}/sqlite-session.awk"))
        .output()
        .map_err(|e| format!("cannot run awk: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "awk failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::write(&sql, &out.stdout)
        .map_err(|e| format!("cannot write {}: {e}", sql.display()))?;
    Ok((vec![":memory:".into()], Some(sql)))
}

fn python_json(_dir: &Path, size: &[u64]) -> Result<Input, String> {
    let script = format!("{REAL_DIR}/json_roundtrip.py");
    Ok((vec![script, size[0].to_string(), size[1].to_string()], None))
}

fn sort_file(dir: &Path, size: &[u64]) -> Result<Input, String> {
    let input = dir.join(format!("lines-{}.txt", size[0]));
    write_input(&input, &inputs::sort_input(size[0]))?;
    Ok((vec![input.display().to_string()], None))
}

fn gcc_file(dir: &Path, size: &[u64]) -> Result<Input, String> {
    let src = dir.join(format!("units-{}.c", size[0]));
    write_input(&src, &inputs::gcc_source(size[0]))?;
    let args = ["-O2", "-S", "-o", "-", &src.display().to_string()].map(String::from);
    Ok((args.to_vec(), None))
}

impl Bench {
    /// Writes the benchmark's input into `dir` and says how to start it at quick or full size.
    pub fn invocation(&self, dir: &Path, quick: bool) -> Result<Invocation, String> {
        let size = if quick { self.quick } else { self.full };
        match self.program {
            Program::C(name) => Ok(Invocation {
                program: Path::new(C_PROGRAMS).join(name),
                args: size.iter().map(|n| n.to_string()).collect(),
                stdin: None,
            }),
            Program::Real { path, input, .. } => {
                let (args, stdin) = input(dir, size)?;
                Ok(Invocation {
                    program: path.into(),
                    args,
                    stdin,
                })
            }
        }
    }

    fn program(&self) -> PathBuf {
        match self.program {
            Program::C(name) => Path::new(C_PROGRAMS).join(name),
            Program::Real { path, .. } => path.into(),
        }
    }

    /// The Debian package of a real program and its version, e.g. "sqlite3 3.40.1".
    pub fn origin(&self) -> Option<String> {
        match self.program {
            Program::C(_) => None,
            Program::Real { package, .. } => Some(format!(
                "{package} {}",
                deb_version(package).unwrap_or_default()
            )),
        }
    }
}

/// The upstream part of a Debian package's version ("1:3.40.1-2+deb12u2" gives "3.40.1").
fn deb_version(pkg: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", pkg])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = v.split_once(':').map_or(v.as_str(), |(_, r)| r);
    let end = v.find(['-', '+', '~']).unwrap_or(v.len());
    (out.status.success() && end > 0).then(|| v[..end].to_string())
}

/// The file of Debian package `pkg` whose path ends in `suffix`.
fn deb_file(pkg: &str, suffix: &str) -> Result<PathBuf, String> {
    let out = Command::new("dpkg")
        .args(["-L", pkg])
        .output()
        .map_err(|e| format!("cannot run dpkg: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.ends_with(suffix))
        .map(PathBuf::from)
        .ok_or_else(|| format!("package {pkg} is not installed (or ships no *{suffix})"))
}

fn hakmem_origin() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => {
            let dirty =
                git(&["status", "--porcelain", "--", "../hakmem"]).is_some_and(|s| !s.is_empty());
            format!(
                "this tree at {rev}{}",
                if dirty { " (modified)" } else { "" }
            )
        }
        None => "this tree".into(),
    }
}

/// Finds every allocator's library and every program the benchmarks run; an error names what
/// is missing. `hakmem_dir` holds libhakmem.so and libhakmem_checked.so.
pub fn prepare(
    names: &[&'static str],
    benches: &[&'static Bench],
    hakmem_dir: &Path,
) -> Result<Vec<Preload>, String> {
    let mut missing = Vec::new();
    let mut out = Vec::new();
    for &name in names {
        let found = match name {
            "glibc" => Ok((None, crate::report::Machine::detect().libc)),
            "hakmem" | "hakmem-checked" => {
                let file = if name == "hakmem" {
                    "libhakmem.so"
                } else {
                    "libhakmem_checked.so"
                };
                let lib = hakmem_dir.join(file);
                if lib.is_file() {
                    Ok((Some(lib), hakmem_origin()))
                } else {
                    Err(format!("no {}", lib.display()))
                }
            }
            _ => {
                let &(_, pkg, suffix) = DEBS
                    .iter()
                    .find(|d| d.0 == name)
                    .expect("every C-suite allocator is glibc, hakmem or a Debian peer");
                deb_file(pkg, suffix).map(|lib| {
                    let v = deb_version(pkg).unwrap_or_default();
                    (Some(lib), format!("Debian {pkg} {v}"))
                })
            }
        };
        match found {
            Ok((lib, origin)) => out.push(Preload { name, lib, origin }),
            Err(e) => missing.push(e),
        }
    }
    for b in benches {
        if !b.program().is_file() {
            missing.push(format!("no {} (for {})", b.program().display(), b.name));
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "the C suite cannot run: {}. `just bench` installs the Debian packages and builds the \
             preload libraries; --suite rust skips the C suite",
            missing.join("; ")
        ))
    }
}

/// Every timed run of one benchmark under one allocator.
pub struct CRow {
    /// Benchmark name.
    pub bench: &'static str,
    /// Allocator name.
    pub alloc: &'static str,
    /// Wall seconds of each completed run.
    pub secs: Vec<f64>,
    /// Peak RSS of each completed run, KiB.
    pub peak_kib: Vec<u64>,
    /// CPU seconds (user + system) of each completed run.
    pub cpu: Vec<f64>,
    /// The time the program reported itself (C programs only), seconds.
    pub self_secs: Vec<f64>,
    /// The placement probe before each run (ns; see `placement`), where it completed.
    pub rtt_ns: Vec<f64>,
    /// Why the runs stopped, if one failed.
    pub error: Option<String>,
}

impl CRow {
    /// Median wall time, unless a run failed.
    pub fn time(&self) -> Option<f64> {
        self.error.is_none().then(|| median(&self.secs)).flatten()
    }

    /// Median peak RSS in KiB, unless a run failed.
    pub fn peak(&self) -> Option<f64> {
        let v: Vec<f64> = self.peak_kib.iter().map(|&k| k as f64).collect();
        self.error.is_none().then(|| median(&v)).flatten()
    }

    /// Median CPU time (user + system), unless a run failed.
    pub fn cpu_time(&self) -> Option<f64> {
        self.error.is_none().then(|| median(&self.cpu)).flatten()
    }

    /// (max - min) / median of the wall times.
    pub fn spread(&self) -> Option<f64> {
        self.error.is_none().then(|| spread(&self.secs)).flatten()
    }
}

/// What a C-suite run is asked to do.
pub struct Config<'a> {
    /// Timed rounds.
    pub rounds: usize,
    /// Quick sizes instead of full ones.
    pub quick: bool,
    /// Limit for one run.
    pub timeout: Duration,
    /// Benchmarks in report order.
    pub benches: &'a [&'static Bench],
    /// Allocators to time (glibc runs the reference whether it is here or not).
    pub allocs: &'a [Preload],
    /// Where inputs, outputs and the logs of failed runs go.
    pub scratch: &'a Path,
}

/// The scratch directory of this process's C suite, under the system's temp dir.
pub fn scratch_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("hakmem-csuite.{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// One finished run: its usage and its output files' contents.
struct Ran {
    usage: process::Usage,
    stdout: Vec<u8>,
    stderr: String,
}

fn run_once(inv: &Invocation, lib: Option<&Path>, cfg: &Config) -> Result<Ran, String> {
    let out_path = cfg.scratch.join("stdout");
    let err_path = cfg.scratch.join("stderr");
    let report = cfg.scratch.join("usage");
    let file =
        |p: &Path| File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()));
    let mut cmd = process::launcher(&report, lib, &inv.program, &inv.args);
    cmd.current_dir(cfg.scratch)
        .env("LC_ALL", "C")
        .stdout(file(&out_path)?)
        .stderr(file(&err_path)?);
    match &inv.stdin {
        Some(p) => {
            cmd.stdin(File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?)
        }
        None => cmd.stdin(Stdio::null()),
    };
    let usage = process::run(&mut cmd, &report, cfg.timeout)
        .map_err(|e| format!("cannot run {}: {e}", inv.program.display()))?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    Ok(Ran {
        usage,
        stdout: read(&out_path)?,
        stderr: String::from_utf8_lossy(&read(&err_path)?).into_owned(),
    })
}

/// The last few lines of a failed run's stderr, for its message.
fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(3);
    let t = lines[from..].join(" / ");
    if t.is_empty() {
        "nothing on stderr".into()
    } else {
        format!("stderr: {}", t.chars().take(300).collect::<String>())
    }
}

/// Where two outputs first differ, as "line N: 'expected' vs 'got'".
fn first_difference(expected: &[u8], got: &[u8]) -> String {
    let (e, g) = (
        String::from_utf8_lossy(expected),
        String::from_utf8_lossy(got),
    );
    let mut el = e.lines();
    let mut gl = g.lines();
    for n in 1.. {
        match (el.next(), gl.next()) {
            (Some(a), Some(b)) if a == b => continue,
            (a, b) => {
                let show = |l: Option<&str>| {
                    l.map_or("(end of output)".to_string(), |l| {
                        format!("'{}'", l.chars().take(120).collect::<String>())
                    })
                };
                return format!("line {n}: glibc printed {}, this run {}", show(a), show(b));
            }
        }
    }
    unreachable!("the loop returns at the first difference or at the end")
}

/// Checks one run against the reference; a failure message names how it failed.
fn verdict(ran: &Ran, reference: Option<&[u8]>) -> Result<(), String> {
    if ran.usage.ending != Ending::Exited(0) {
        return Err(format!(
            "{}; {}",
            ran.usage.ending.describe(),
            tail(&ran.stderr)
        ));
    }
    match reference {
        Some(r) if r != ran.stdout.as_slice() => Err(format!(
            "output differs from glibc's: {}",
            first_difference(r, &ran.stdout)
        )),
        _ => Ok(()),
    }
}

/// The time a C program reported on stderr ("NAME: elapsed 0.123 s").
fn self_reported(stderr: &str) -> Option<f64> {
    stderr
        .lines()
        .find_map(|l| l.split_once(": elapsed "))
        .and_then(|(_, r)| r.trim_end_matches(" s").trim().parse().ok())
}

/// Runs every benchmark of `cfg` on every allocator and returns one row per pair; `each` is
/// called with a benchmark's rows once it is done (to print them).
pub fn run(cfg: &Config, mut each: impl FnMut(&[CRow])) -> Vec<CRow> {
    let mut all = Vec::new();
    for bench in cfg.benches {
        let mut rows: Vec<CRow> = cfg
            .allocs
            .iter()
            .map(|a| CRow {
                bench: bench.name,
                alloc: a.name,
                secs: Vec::new(),
                peak_kib: Vec::new(),
                cpu: Vec::new(),
                self_secs: Vec::new(),
                rtt_ns: Vec::new(),
                error: None,
            })
            .collect();
        let reference = bench.invocation(cfg.scratch, cfg.quick).and_then(|inv| {
            let ran = run_once(&inv, None, cfg)?;
            verdict(&ran, None)
                .map(|()| (inv, ran.stdout))
                .map_err(|e| format!("glibc's reference run failed: {e}"))
        });
        let (inv, expected) = match reference {
            Ok(r) => r,
            Err(e) => {
                for row in &mut rows {
                    row.error = Some(e.clone());
                }
                each(&rows);
                all.extend(rows);
                continue;
            }
        };
        for round in 0..cfg.rounds {
            let n = rows.len();
            for k in 0..n {
                let i = (k + round) % n;
                if rows[i].error.is_some() {
                    continue;
                }
                let lib = cfg.allocs[i].lib.as_deref();
                let row = &mut rows[i];
                row.rtt_ns.extend(crate::placement::round_trip_ns());
                match run_once(&inv, lib, cfg)
                    .and_then(|ran| verdict(&ran, Some(&expected)).map(|()| ran))
                {
                    Ok(ran) => {
                        row.secs.push(ran.usage.wall);
                        row.peak_kib.push(ran.usage.peak_kib);
                        row.cpu.push(ran.usage.cpu);
                        row.self_secs.extend(self_reported(&ran.stderr));
                    }
                    Err(e) => row.error = Some(format!("round {}: {e}", round + 1)),
                }
            }
        }
        each(&rows);
        all.extend(rows);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_c_program_was_built() {
        for b in BENCHES {
            if let Program::C(_) = b.program {
                assert!(b.program().is_file(), "{} not built", b.program().display());
            }
        }
    }

    #[test]
    fn names_are_unique_and_sizes_match() {
        for (i, b) in BENCHES.iter().enumerate() {
            assert!(BENCHES[..i].iter().all(|o| o.name != b.name), "{}", b.name);
            assert_eq!(b.full.len(), b.quick.len(), "{}", b.name);
        }
    }

    #[test]
    fn differences_and_self_time_are_read() {
        assert_eq!(
            first_difference(b"a\nb\n", b"a\nc\n"),
            "line 2: glibc printed 'b', this run 'c'"
        );
        assert_eq!(
            first_difference(b"a\n", b"a\nextra\n"),
            "line 2: glibc printed (end of output), this run 'extra'"
        );
        assert_eq!(self_reported("x\nlarson: elapsed 0.250000 s\n"), Some(0.25));
        assert_eq!(self_reported("nothing"), None);
    }

    /// A C program run under glibc twice prints the same thing, and a run whose output differs
    /// from the reference, or that fails, is refused.
    #[test]
    fn runs_are_checked_against_the_reference() {
        let scratch =
            std::env::temp_dir().join(format!("hakmem-csuite-test.{}", std::process::id()));
        std::fs::create_dir_all(&scratch).unwrap();
        let cfg = Config {
            rounds: 1,
            quick: true,
            timeout: Duration::from_secs(60),
            benches: &[],
            allocs: &[],
            scratch: &scratch,
        };
        let inv = by_name("cfrac")
            .unwrap()
            .invocation(&scratch, true)
            .unwrap();
        let first = run_once(&inv, None, &cfg).unwrap();
        let second = run_once(&inv, None, &cfg).unwrap();
        assert!(verdict(&first, None).is_ok());
        assert!(verdict(&second, Some(&first.stdout)).is_ok());
        assert!(self_reported(&second.stderr).is_some());
        let other = Invocation {
            args: vec!["3".into(), "100".into(), "40".into()],
            ..by_name("cfrac")
                .unwrap()
                .invocation(&scratch, true)
                .unwrap()
        };
        let ran = run_once(&other, None, &cfg).unwrap();
        let e = verdict(&ran, Some(&first.stdout)).unwrap_err();
        assert!(e.starts_with("output differs from glibc's: line 1:"), "{e}");
        let bad = Invocation {
            args: vec!["0".into()],
            ..by_name("cfrac")
                .unwrap()
                .invocation(&scratch, true)
                .unwrap()
        };
        let ran = run_once(&bad, None, &cfg).unwrap();
        let e = verdict(&ran, Some(&first.stdout)).unwrap_err();
        assert!(e.starts_with("exited with status 2; stderr: "), "{e}");
        std::fs::remove_dir_all(&scratch).unwrap();
    }

    /// A malloc that flips a bit of the block it handed out before, while that block is live:
    /// the checksums must notice (a C program that read its blocks back into nothing would not).
    const CORRUPTING_MALLOC: &str = r#"
#include <stddef.h>
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
static __thread char *last;
static __thread unsigned long count;
void *malloc(size_t n) {
    char *p = __libc_malloc(n);
    if (last && ++count % 1000 == 0)
        last[0] ^= 1;
    last = n >= 8 ? p : NULL;
    return p;
}
void free(void *p) {
    if (p == last)
        last = NULL;
    __libc_free(p);
}
"#;

    #[test]
    fn a_corrupting_allocator_fails_its_row() {
        let scratch =
            std::env::temp_dir().join(format!("hakmem-csuite-bad.{}", std::process::id()));
        std::fs::create_dir_all(&scratch).unwrap();
        let src = scratch.join("corrupt.c");
        let lib = scratch.join("libcorrupt.so");
        std::fs::write(&src, CORRUPTING_MALLOC).unwrap();
        let cc = Command::new("cc")
            .args(["-O1", "-shared", "-fPIC", "-o"])
            .arg(&lib)
            .arg(&src)
            .status()
            .unwrap();
        assert!(cc.success());
        let allocs = [
            Preload {
                name: "glibc",
                lib: None,
                origin: String::new(),
            },
            Preload {
                name: "corrupting",
                lib: Some(lib),
                origin: String::new(),
            },
        ];
        let cfg = Config {
            rounds: 2,
            quick: true,
            timeout: Duration::from_secs(60),
            benches: &[by_name("sh6bench").unwrap()],
            allocs: &allocs,
            scratch: &scratch,
        };
        let mut calls = 0;
        let rows = run(&cfg, |_| calls += 1);
        assert_eq!(calls, 1);
        assert_eq!(rows[0].error, None);
        assert_eq!(rows[0].secs.len(), 2);
        let e = rows[1]
            .error
            .as_deref()
            .expect("the corrupted run must fail");
        assert!(e.starts_with("round 1: output differs from glibc's"), "{e}");
        assert!(rows[1].secs.is_empty());
        std::fs::remove_dir_all(&scratch).unwrap();
    }
}
