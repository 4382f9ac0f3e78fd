//! The interpreter and oracle on many random programs: a correct allocator must pass every one,
//! in every mode (a harness that cries wolf is as useless as one that never does).

use hakmem_fuzz::rng::Rng;
use hakmem_fuzz::{decode, run_deterministic, run_free_running, run_misuse, Flavor, HeapUse, RunOpts};

/// Random inputs shaped to decode.
trait Programs {
    fn program_bytes(&mut self, flavor: Flavor) -> Vec<u8>;
}

impl Programs for Rng {
    /// Random bytes shaped to decode: a few allocations first, so that most inputs are accepted.
    fn program_bytes(&mut self, flavor: Flavor) -> Vec<u8> {
        // The header's two bytes: threads and release, then the heap's knobs.
        let mut d = vec![self.next_u64() as u8, self.next_u64() as u8];
        for _ in 0..1 + self.next_u64() % 4 {
            d.extend([self.next_u64() as u8, 0, self.next_u64() as u8 % 11, self.next_u64() as u8, self.next_u64() as u8, 0]);
        }
        let len = (self.next_u64() % 120) as usize;
        d.extend((0..len).map(|_| self.next_u64() as u8));
        if flavor == Flavor::Misuse {
            // One misuse kind byte somewhere after the allocations.
            let at = d.len() - len + 1 + (self.next_u64() % (len as u64 + 1)) as usize;
            if at < d.len() {
                for b in d[..at].iter_mut().skip(25) {
                    if *b >= 0xf0 {
                        *b = 0;
                    }
                }
                d[at] = 0xf0 + (self.next_u64() % 5) as u8;
            }
        }
        d
    }
}

fn run_many(flavor: Flavor, n: usize, mut run: impl FnMut(&hakmem_fuzz::Program) -> Result<(), hakmem_fuzz::Failure>) -> usize {
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ n as u64);
    let mut ran = 0;
    for _ in 0..n {
        let data = rng.program_bytes(flavor);
        let Ok(p) = decode(&data, flavor) else { continue };
        if let Err(f) = run(&p) {
            panic!("{f}\n{p}\ninput: {data:?}");
        }
        ran += 1;
    }
    ran
}

#[test]
fn random_plain_programs_pass_deterministically() {
    let ran = run_many(Flavor::Plain, 3000, |p| run_deterministic(p, RunOpts::THOROUGH));
    assert!(ran > 1000, "only {ran} accepted");
}

#[test]
fn random_plain_programs_pass_on_a_reset_heap() {
    // The fuzz targets' way: one heap per thread and policy, reset between programs.
    let ran = run_many(Flavor::Plain, 3000, |p| run_deterministic(p, RunOpts::FUZZ));
    assert!(ran > 1000, "only {ran} accepted");
}

#[test]
fn random_plain_programs_pass_on_threads() {
    let ran = run_many(Flavor::Plain, 300, |p| run_free_running(p, HeapUse::Reset));
    assert!(ran > 100, "only {ran} accepted");
}

#[test]
fn random_misuse_programs_are_reported_exactly() {
    let ran = run_many(Flavor::Misuse, 3000, |p| run_misuse(p, RunOpts::THOROUGH).map(|_| ()));
    assert!(ran > 300, "only {ran} accepted");
    let ran = run_many(Flavor::Misuse, 3000, |p| run_misuse(p, RunOpts::FUZZ).map(|_| ()));
    assert!(ran > 300, "only {ran} accepted");
}
