//! libFuzzer target `misuse`: see hakmem_fuzz::fuzz_misuse.
#![no_main]

use hakmem_fuzz::Verdict;
use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(|data: &[u8]| -> Corpus {
    match hakmem_fuzz::fuzz_misuse(data) {
        Verdict::Ran => Corpus::Keep,
        Verdict::Rejected => Corpus::Reject,
    }
});
