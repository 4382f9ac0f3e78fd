//! libFuzzer target `deterministic`: see hakmem_fuzz::fuzz_deterministic.
#![no_main]

use hakmem_fuzz::Verdict;
use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(|data: &[u8]| -> Corpus {
    match hakmem_fuzz::fuzz_deterministic(data) {
        Verdict::Ran => Corpus::Keep,
        Verdict::Rejected => Corpus::Reject,
    }
});
