//! Helpers for hakmem's sanitizer jobs: which sanitizer this build has, and control tests that
//! run a deliberately broken program as a child process and check how it died.
//!
//! A control test is a pair of `#[test]`s in one test binary: a *child* that does the bad thing
//! only when [`CHILD_ENV`] names it (and otherwise returns at once, so ordinary runs pass), and a
//! *parent* that re-runs the binary's own executable with just that child selected and asserts
//! that it died with the expected report. A child that exits cleanly fails the parent: that is
//! what makes a sanitizer that silently sees nothing turn the suite red.

use std::process::{Command, Output};

/// Environment variable that selects the child case to run in a re-executed test binary.
pub const CHILD_ENV: &str = "HAKMEM_SANITIZER_CHILD";

/// The sanitizer runtime this build links (`-Zsanitizer=...` in RUSTFLAGS, found by build.rs):
/// "asan", "tsan", "lsan" (LeakSanitizer alone) or "none". Independent of whether hakmem itself
/// was built with its ASan poisoning (`--cfg asan`, see [`hakmem::asan::ENABLED`]).
pub fn sanitizer() -> &'static str {
    if cfg!(san_address) {
        "asan"
    } else if cfg!(san_thread) {
        "tsan"
    } else if cfg!(san_leak) {
        "lsan"
    } else {
        "none"
    }
}

/// True when LeakSanitizer checks this process at exit (ASan includes it on x86_64 Linux).
pub fn leak_checked() -> bool {
    cfg!(san_address) || cfg!(san_leak)
}

/// True when this process was started as the child for `case`.
pub fn is_child(case: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == case)
}

/// How a child ended.
pub struct Death {
    /// Exit code, or None when a signal killed it.
    pub code: Option<i32>,
    /// Signal that killed it, if any.
    pub signal: Option<i32>,
    /// Everything it wrote to stderr and stdout.
    pub output: String,
}

impl Death {
    /// True if the child ended in any way other than a clean exit.
    pub fn failed(&self) -> bool {
        self.code != Some(0)
    }
}

/// Re-runs this test binary with only the test `child_test` selected and [`CHILD_ENV`] = `case`.
pub fn run_child(child_test: &str, case: &str, env: &[(&str, &str)]) -> Death {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([child_test, "--exact", "--nocapture", "--test-threads=1"]).env(CHILD_ENV, case);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let Output { status, stdout, stderr } = cmd.output().expect("spawn child test binary");
    use std::os::unix::process::ExitStatusExt;
    let mut output = String::from_utf8_lossy(&stderr).into_owned();
    output.push_str(&String::from_utf8_lossy(&stdout));
    Death { code: status.code(), signal: status.signal(), output }
}

/// Runs the child `case` and asserts that it failed and printed every one of `needles`.
/// Prints the key lines of the report, so a CI log shows what the control saw.
pub fn expect_report(child_test: &str, case: &str, env: &[(&str, &str)], needles: &[&str]) {
    let d = run_child(child_test, case, env);
    let missing: Vec<&str> = needles.iter().copied().filter(|n| !d.output.contains(n)).collect();
    assert!(
        d.failed() && missing.is_empty(),
        "control `{case}` ({}, hakmem ASan poisoning {}): expected the child to die with {needles:?}; it exited \
         with code {:?} signal {:?}, missing {missing:?}; its output:\n{}",
        sanitizer(),
        if hakmem::asan::ENABLED { "on" } else { "off" },
        d.code,
        d.signal,
        d.output
    );
    let key: Vec<&str> = d
        .output
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)) || l.contains("SUMMARY:"))
        .take(6)
        .collect();
    eprintln!("control `{case}` ({}) died as expected (code {:?}, signal {:?}):", sanitizer(), d.code, d.signal);
    for l in key {
        eprintln!("    {l}");
    }
}

/// A small xorshift generator, so the stress tests are deterministic per seed.
pub fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// A block address that may cross threads (the allocator's blocks are plain memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blk(pub usize, pub usize);

impl Blk {
    /// Fills the block's bytes with a pattern derived from its address and size.
    ///
    /// # Safety
    /// The block must be live with at least `size` bytes, and not used by another thread meanwhile.
    pub unsafe fn stamp(p: *mut u8, size: usize) -> Blk {
        // SAFETY: per the contract.
        unsafe { p.write_bytes(Self::pat(p.addr(), size), size) };
        Blk(p.addr(), size)
    }

    fn pat(addr: usize, size: usize) -> u8 {
        ((addr >> 4) ^ size) as u8 | 1
    }

    /// Checks the pattern written by [`Blk::stamp`] and returns the pointer.
    ///
    /// # Safety
    /// As for `stamp`.
    pub unsafe fn verify(self) -> *mut u8 {
        let p = self.0 as *mut u8;
        // SAFETY: per the contract.
        let body = unsafe { std::slice::from_raw_parts(p, self.1) };
        let want = Self::pat(self.0, self.1);
        assert!(body.iter().all(|&b| b == want), "block {p:p} of {} bytes corrupted", self.1);
        p
    }
}
