//! Replays every committed input: the seeds under `corpora/<target>/` and every crash ever found,
//! under `corpora/regressions/<target>/` (as program listings, `.prog`, which keep their meaning
//! when the byte format changes). Each must decode and pass. Also checks that the seeds on
//! disk are exactly what the seed tool writes, so they never go stale.

use hakmem_fuzz::{encode, load, replay_one, seed_sets, TARGETS};
use std::path::{Path, PathBuf};

fn corpora() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpora")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn replay_dir(target: &str, dir: &Path) -> usize {
    let mut n = 0;
    for f in files(dir) {
        if f.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let prog = load(&f, target).unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = replay_one(target, &prog) {
            panic!("{} FAILED {e}\n{prog}", f.display());
        }
        n += 1;
    }
    n
}

#[test]
fn seeds_pass() {
    for t in TARGETS {
        assert!(replay_dir(t, &corpora().join(t)) > 0, "no seeds for {t}: run `just seed`");
    }
}

#[test]
fn regressions_pass() {
    let n: usize = TARGETS.iter().map(|t| replay_dir(t, &corpora().join("regressions").join(t))).sum();
    println!("{n} regression input(s) replayed");
}

#[test]
fn seeds_on_disk_are_current() {
    for (target, progs) in seed_sets() {
        let dir = corpora().join(target);
        for (name, p) in &progs {
            let on_disk = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{target}/{name}: {e}: run `just seed`"));
            assert_eq!(on_disk, encode(p).unwrap(), "{target}/{name} is stale: run `just seed`");
        }
        assert_eq!(files(&dir).len(), progs.len(), "{target}: files that no seed writes: run `just seed`");
    }
    let dict = std::fs::read_to_string(corpora().join("hakmem.dict")).unwrap_or_default();
    assert_eq!(dict, hakmem_fuzz::dictionary(), "corpora/hakmem.dict is stale: run `just seed`");
}

#[test]
fn every_committed_input_runs_the_same_whatever_ran_before_it() {
    // The history-independence check (`just history`) over the seeds and regressions.
    for t in TARGETS {
        let mut inputs = Vec::new();
        for dir in [corpora().join(t), corpora().join("regressions").join(t)] {
            for f in files(&dir).into_iter().filter(|f| !f.extension().is_some_and(|e| e == "md")) {
                inputs.push((f.display().to_string(), load(&f, t).unwrap_or_else(|e| panic!("{e}"))));
            }
        }
        let differs = hakmem_fuzz::trace::history(&inputs, t == "misuse", 1);
        assert!(differs.is_empty(), "{}", differs.join("\n"));
    }
}
