//! libFuzzer target `free_running`: see hakmem_fuzz::fuzz_free_running.
#![no_main]

use hakmem_fuzz::Verdict;
use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(|data: &[u8]| -> Corpus {
    match hakmem_fuzz::fuzz_free_running(data) {
        Verdict::Ran => Corpus::Keep,
        Verdict::Rejected => Corpus::Reject,
    }
});
