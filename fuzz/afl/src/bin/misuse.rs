//! AFL++ target `misuse`: see hakmem_fuzz::fuzz_misuse.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        hakmem_fuzz::fuzz_misuse(data);
    });
}
