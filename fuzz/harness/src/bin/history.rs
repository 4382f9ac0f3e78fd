//! The history-independence check (`just history`): an input must behave the same whatever ran
//! before it. Runs every input of each corpus alone (on a new heap), then all of them one after
//! another on one reused heap (reset between inputs, as the fuzz targets run them), in corpus
//! order and in a shuffled order, and requires each input's trace (addresses relative to their
//! region, reports, verdict: see `hakmem_fuzz::trace`) to be the same all three times.
//!
//! Usage: history [--shuffle-seed N] [TARGET[=DIR]...]   (default: every target on its seeds
//! and regression listings, `corpora/<target>/` and `corpora/regressions/<target>/`).
//! Exit status 1 if any input's trace depends on what ran before it.

use hakmem_fuzz::trace::history;
use hakmem_fuzz::{corpora_dir, flavor_of, load, Flavor, Program, TARGETS};
use std::path::PathBuf;

fn main() {
    let mut seed = 0x5eed_u64;
    let mut picks = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--shuffle-seed" => seed = args.next().and_then(|s| s.parse().ok()).expect("--shuffle-seed needs a number"),
            "-h" | "--help" => {
                eprintln!("usage: history [--shuffle-seed N] [TARGET[=DIR]...]");
                return;
            }
            _ => picks.push(a),
        }
    }
    let mut jobs: Vec<(String, Vec<PathBuf>)> = Vec::new();
    if picks.is_empty() {
        for t in TARGETS {
            jobs.push((t.to_owned(), vec![corpora_dir().join(t), corpora_dir().join("regressions").join(t)]));
        }
    } else {
        for p in picks {
            let (t, d) = p.split_once('=').map_or((p.clone(), corpora_dir().join(&p)), |(t, d)| (t.to_owned(), PathBuf::from(d)));
            jobs.push((t, vec![d]));
        }
    }
    let mut bad = 0;
    for (target, dirs) in jobs {
        let misuse = flavor_of(&target) == Flavor::Misuse;
        let mut inputs: Vec<(PathBuf, Program)> = Vec::new();
        for d in &dirs {
            let mut files: Vec<PathBuf> = std::fs::read_dir(d).into_iter().flatten().flatten().map(|e| e.path()).collect();
            files.retain(|f| f.is_file() && !f.extension().is_some_and(|e| e == "md"));
            files.sort();
            for f in files {
                match load(&f, &target) {
                    Ok(p) => inputs.push((f, p)),
                    // Rejected fuzzer bytes are no program: nothing to compare.
                    Err(_) => {}
                }
            }
        }
        let named: Vec<(String, Program)> = inputs.into_iter().map(|(f, p)| (f.display().to_string(), p)).collect();
        let found = history(&named, misuse, seed);
        for m in &found {
            println!("{m}");
        }
        let mismatches = found.len();
        println!("{target:14} {} input(s): alone, after the corpus and after it shuffled: {}", named.len(), if mismatches == 0 { "the same trace each time".to_owned() } else { format!("{mismatches} trace(s) DIFFER") });
        bad += mismatches;
    }
    std::process::exit((bad > 0) as i32);
}
