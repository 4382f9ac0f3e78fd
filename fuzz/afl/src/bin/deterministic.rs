//! AFL++ target `deterministic`: see hakmem_fuzz::fuzz_deterministic.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        hakmem_fuzz::fuzz_deterministic(data);
    });
}
