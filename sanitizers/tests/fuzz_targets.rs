//! The fuzz targets over their committed corpora (plus deterministic pseudo-random inputs), so the
//! sanitizer jobs cover them without a fuzzing run: `free_running` (real OS threads) under TSan and
//! ASan, `deterministic` under ASan. The `misuse` target is left out on purpose: its programs
//! overflow and write after free deliberately to test the checked mode's reports, and under ASan
//! the poisoning rightly stops them first (see sanitizers/README.md).

use hakmem_sanitizers::xorshift;
use hakmem_fuzz::Verdict;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpora").join(target);
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no corpus in {}", dir.display());
    // Random bytes: most decode to some program (the decoder takes any input it can).
    let mut rng = 0x5eed_u64;
    for i in 0..64 {
        let len = 16 + (xorshift(&mut rng) % 600) as usize;
        v.push((format!("random#{i}"), (0..len).map(|_| xorshift(&mut rng) as u8).collect()));
    }
    v
}

#[test]
fn free_running_target_over_its_corpus() {
    let mut ran = 0;
    for (name, data) in inputs("free_running") {
        // A few times each: the interleaving is up to the OS.
        for _ in 0..3 {
            eprintln!("free_running: {name}");
            ran += matches!(hakmem_fuzz::fuzz_free_running(&data), Verdict::Ran) as usize;
        }
    }
    assert!(ran > 30, "only {ran} inputs decoded");
}

#[test]
fn deterministic_target_over_its_corpus() {
    let mut ran = 0;
    for (_, data) in inputs("deterministic") {
        ran += matches!(hakmem_fuzz::fuzz_deterministic(&data), Verdict::Ran) as usize;
    }
    assert!(ran > 10, "only {ran} inputs decoded");
}
