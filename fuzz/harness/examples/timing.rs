//! Times each input (deterministic mode, release policy): `cargo run --release --example timing -- FILES`.
use hakmem_fuzz::{decode, run_deterministic, Flavor, RunOpts};
fn main() {
    for f in std::env::args().skip(1) {
        let d = std::fs::read(&f).unwrap();
        let Ok(p) = decode(&d, Flavor::Plain) else { println!("{f}: rejected"); continue };
        let t = std::time::Instant::now();
        let n = 200;
        for _ in 0..n { run_deterministic(&p, RunOpts::FUZZ).unwrap(); }
        println!("{f}: {:.1} us/exec", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
}
