//! Replays fuzz inputs: prints each as a readable program, runs it in deterministic mode on the
//! heap it names (and on a checked heap too, if that is a release one), and prints what the run
//! found; free-running inputs also run 50 times on real threads. Exit status 1 if any failed.
//!
//! Usage: replay [--target deterministic|free_running|misuse] [--save LISTING.prog] [--list]
//!               [--minimize [--secs S]] [--fuzz-build DIR] FILE...
//! Without --target, a file under a `misuse` directory decodes as a misuse program and any other
//! file as a plain one. A `.prog` file is a program listing (how regressions are kept); `--save`
//! writes the listing of the input, which is how a crash becomes a regression; `--list` only
//! prints the listing; `--minimize` minimizes a failing input by its structure (see
//! `hakmem_fuzz::minimize`, at most S seconds, default 60) and writes `FILE.min` (bytes) and
//! `FILE.min.prog` (its listing). With `--fuzz-build DIR` (the libFuzzer targets' directory),
//! each input (or minimized input) also runs in the fuzz target itself, the exact build that
//! found it (ASan included), and the two verdicts are compared.

use hakmem_fuzz::{load, replay_one, run_deterministic, run_free_running, Failure, HeapUse, Program, RunOpts, TARGETS};
use std::path::Path;

fn main() {
    let mut target: Option<String> = None;
    let mut save: Option<String> = None;
    let mut list_only = false;
    let mut minimize = false;
    let mut secs = 60.0;
    let mut fuzz_build: Option<String> = None;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--target" => target = args.next(),
            "--save" => save = args.next(),
            "--list" => list_only = true,
            "--minimize" => minimize = true,
            "--fuzz-build" => fuzz_build = args.next(),
            "--secs" => secs = args.next().and_then(|s| s.parse().ok()).expect("--secs needs a number"),
            "-h" | "--help" => {
                eprintln!("usage: replay [--target {}] [--save LISTING.prog] FILE...", TARGETS.join("|"));
                return;
            }
            _ => files.push(a),
        }
    }
    if files.is_empty() {
        eprintln!("usage: replay [--target {}] FILE...", TARGETS.join("|"));
        std::process::exit(2);
    }
    let mut failed = false;
    for f in &files {
        let target = target.clone().unwrap_or_else(|| guess_target(Path::new(f)).to_owned());
        if !list_only {
            println!("== {f} (as a {target} input)");
        }
        match load(Path::new(f), &target) {
            Err(e) => {
                println!("{e}");
                failed = true;
            }
            Ok(prog) => {
                print!("{prog}");
                if list_only {
                    continue;
                }
                if minimize {
                    let ok = minimize_one(f, &target, &prog, secs);
                    failed |= !ok;
                    if let (true, Some(dir)) = (ok, &fuzz_build) {
                        let min: Program = std::fs::read_to_string(format!("{f}.min.prog")).expect("written").parse().expect("a listing");
                        in_fuzz_build(dir, "deterministic", &min, true);
                    }
                    continue;
                }
                if let Some(out) = &save {
                    std::fs::write(out, prog.to_string()).unwrap_or_else(|e| panic!("{out}: {e}"));
                    println!("(listing saved to {out})");
                }
                let verdict = replay_one(&target, &prog);
                let here_fails = verdict.is_err();
                failed |= !report("", verdict);
                if let Some(dir) = &fuzz_build {
                    let t = if target == "free_running" { "deterministic" } else { target.as_str() };
                    failed |= in_fuzz_build(dir, t, &prog, here_fails);
                }
                if prog.release {
                    // The checked heap may say more about a failure on a release heap.
                    let checked = Program { release: false, ..prog.clone() };
                    report("on a checked heap too: ", run_deterministic(&checked, RunOpts::THOROUGH).map(|()| "no report".into()));
                }
                if target == "free_running" {
                    // A race may need many tries; deterministic mode above may not show it.
                    let tries = 50;
                    let r = (0..tries).try_for_each(|_| run_free_running(&prog, HeapUse::Reset));
                    failed |= !report(&format!("on real threads ({tries} runs): "), r.map(|()| "every check held".into()));
                }
            }
        }
    }
    std::process::exit(failed as i32);
}

/// Runs `prog` in the fuzz target `target` of the libFuzzer build in `dir` and says how that went
/// next to this build's verdict (`here_fails`); true if the fuzz build failed.
fn in_fuzz_build(dir: &str, target: &str, prog: &Program, here_fails: bool) -> bool {
    let bin = Path::new(dir).join(target);
    let Ok(bytes) = hakmem_fuzz::encode(prog) else { return false };
    let input = std::env::temp_dir().join(format!("hakmem-replay-{}", std::process::id()));
    std::fs::write(&input, bytes).expect("a temporary file");
    let out = std::process::Command::new(&bin).arg(&input).env("ASAN_OPTIONS", "detect_stack_use_after_return=0:detect_leaks=0").output();
    let _ = std::fs::remove_file(&input);
    let Ok(out) = out else {
        println!("in the fuzz build: {} is not built (just fuzz-build)", bin.display());
        return false;
    };
    let text = String::from_utf8_lossy(&out.stderr);
    let first = text.lines().find(|l| l.contains("FAILED") || l.contains("ERROR:") || l.contains("panicked")).unwrap_or("");
    let fails = !out.status.success();
    match (fails, here_fails) {
        (true, true) => println!("in the fuzz build ({target}, libFuzzer+ASan): FAILS too: {}", first.trim()),
        (false, false) => println!("in the fuzz build ({target}, libFuzzer+ASan): passes too"),
        (true, false) => println!(
            "in the fuzz build ({target}, libFuzzer+ASan): FAILS, though it passes here: a finding of ASan itself (this build has no ASan): {}",
            first.trim()
        ),
        (false, true) => println!("in the fuzz build ({target}, libFuzzer+ASan): PASSES, though it fails here: the builds differ"),
    }
    fails
}

/// Minimizes a failing input, writes `FILE.min` and `FILE.min.prog`; true if it did.
fn minimize_one(file: &str, target: &str, prog: &Program, secs: f64) -> bool {
    use hakmem_fuzz::minimize::{failure, failure_kind, minimize};
    let flavor = hakmem_fuzz::flavor_of(target);
    // A free-running input is minimized as the deterministic program it is.
    let Some(f) = failure(prog, flavor) else {
        println!("it does not fail deterministically on a new heap: nothing to minimize");
        return false;
    };
    let kind = failure_kind(&f);
    println!("fails: {f}\nminimizing, keeping failures of the kind {kind:?} ...");
    let (min, tries) = minimize(prog, flavor, &kind, std::time::Duration::from_secs_f64(secs));
    let again = failure(&min, flavor).expect("the minimized program fails");
    std::fs::write(format!("{file}.min"), hakmem_fuzz::encode(&min).expect("encodes")).expect("writable");
    std::fs::write(format!("{file}.min.prog"), min.to_string()).expect("writable");
    println!("minimized from {} to {} step(s) in {tries} tries: {file}.min (bytes), {file}.min.prog (listing)", prog.steps.len(), min.steps.len());
    print!("{min}");
    println!("FAIL {again}");
    true
}

/// Prints one outcome; true for a pass.
fn report(prefix: &str, r: Result<String, Failure>) -> bool {
    match &r {
        Ok(summary) => println!("{prefix}PASS: {summary}"),
        Err(f) => println!("{prefix}FAIL {f}"),
    }
    r.is_ok()
}

/// The target a file belongs to, from the directories in its path (`corpora/misuse/x`,
/// `fuzz/artifacts/misuse/crash-...`, `corpora/regressions/misuse/...`).
fn guess_target(path: &Path) -> &'static str {
    let names: Vec<&str> = path.iter().filter_map(|c| c.to_str()).collect();
    TARGETS.iter().rev().find(|t| names.contains(t)).copied().unwrap_or("deterministic")
}
