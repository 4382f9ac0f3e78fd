//! Runs fuzz targets' entry points over their corpora in a loop, without a fuzzer, and prints
//! executions per second: the harness's own cost, to profile (callgrind, ASan builds) apart from
//! the engine's. The fuzzers' own exec/s figures come from `just fuzz`/`just main`.
//!
//! Usage: exec-rate [--secs S | --rounds N] [--each] [--no-points] [TARGET[=DIR]...]   (default: every
//! target on corpora/<target>; --each also times every input on its own; --no-points runs with
//! the scheduler's hooks removed, to measure what the preemption points and the happens-before
//! tracking cost: schedules are then ignored and races not checked; --rounds N runs the corpus
//! N times instead of for S seconds, a fixed amount of work for callgrind)

use hakmem_fuzz::{fuzz_deterministic, fuzz_free_running, fuzz_misuse, Verdict, TARGETS};
use std::time::{Duration, Instant};

fn main() {
    let mut secs = 3.0;
    let mut each = false;
    let mut rounds = None;
    let mut picks = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--each" => each = true,
            "--no-points" => hakmem_fuzz::sched::disable(),
            "--rounds" => rounds = Some(args.next().and_then(|s| s.parse::<u64>().ok()).expect("--rounds needs a number")),
            "--secs" => secs = args.next().and_then(|s| s.parse().ok()).expect("--secs needs a number"),
            _ => picks.push(a),
        }
    }
    if picks.is_empty() {
        picks = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    for pick in picks {
        let (target, dir) = match pick.split_once('=') {
            Some((t, d)) => (t.to_owned(), d.to_owned()),
            None => (pick.clone(), format!("corpora/{pick}")),
        };
        let run: fn(&[u8]) -> Verdict = match target.as_str() {
            "deterministic" => fuzz_deterministic,
            "free_running" => fuzz_free_running,
            "misuse" => fuzz_misuse,
            _ => panic!("unknown target {target} (targets: {})", TARGETS.join(", ")),
        };
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.expect("dir entry").path())
            .collect();
        files.sort();
        let inputs: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).expect("readable input")).collect();
        if each {
            for (f, i) in files.iter().zip(&inputs) {
                let (start, mut n) = (Instant::now(), 0u64);
                while start.elapsed() < Duration::from_secs_f64(secs / inputs.len() as f64) {
                    run(i);
                    n += 1;
                }
                println!("  {:>9.0} exec/s  {}", n as f64 / start.elapsed().as_secs_f64(), f.display());
            }
        }
        let (mut n, mut rejected) = (0u64, 0u64);
        let start = Instant::now();
        let mut round = 0;
        while rounds.map_or(start.elapsed() < Duration::from_secs_f64(secs), |r| round < r) {
            round += 1;
            for i in &inputs {
                rejected += (run(i) == Verdict::Rejected) as u64;
                n += 1;
            }
        }
        let t = start.elapsed().as_secs_f64();
        println!("{target:14} {:>9.0} exec/s  ({n} runs of {} inputs from {dir}, {rejected} rejected)", n as f64 / t, inputs.len());
    }
}
