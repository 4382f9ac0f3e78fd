//! AFL++ target `free_running`: see hakmem_fuzz::fuzz_free_running.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        hakmem_fuzz::fuzz_free_running(data);
    });
}
