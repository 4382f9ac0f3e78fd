//! The checked drop-in `libhakmem_checked.so`: real programs run under it with no report and the
//! same output, and each kind of misuse in a C program is reported by name before the abort.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// Builds the checked library once per test binary.
fn checked_so() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "--release", "-q", "-p", "hakmem-preload-checked"])
            .status()
            .expect("cargo build")
            .success();
        assert!(ok, "building libhakmem_checked.so failed");
        let so = target_dir().join("release/libhakmem_checked.so").canonicalize().unwrap();
        assert!(so.exists());
        so
    })
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hakmem-checked-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(mut cmd: Command, preload: bool) -> Output {
    if preload {
        cmd.env("LD_PRELOAD", checked_so());
    }
    cmd.output().expect("spawn")
}

/// Runs `make()` without and with the checked library; same status and stdout, no report.
fn same_without_report(label: &str, make: impl Fn() -> Command) {
    let plain = run(make(), false);
    let checked = run(make(), true);
    let err = String::from_utf8_lossy(&checked.stderr);
    assert!(!err.contains("hakmem: "), "{label}: the checked heap reported:\n{err}");
    assert_eq!(plain.status.code(), checked.status.code(), "{label}: exit status differs\n{err}");
    assert!(plain.stdout == checked.stdout, "{label}: stdout differs under the checked library");
    assert!(!plain.stdout.is_empty(), "{label}: no output to compare");
}

#[test]
fn python3_runs_clean_under_the_checked_library() {
    same_without_report("python3", || {
        let mut c = Command::new("python3");
        c.env("PYTHONHASHSEED", "0").arg("-c").arg(
            "import json\n\
             d = {str(i): 'x' * (i % 300) for i in range(100000)}\n\
             l = [str(i) * 7 for i in range(50000)]\n\
             s = json.dumps({k: v for k, v in list(d.items())[:5000]})\n\
             del d\n\
             print(len(s), sum(map(len, l)), sorted(l)[:3])\n",
        );
        c
    });
}

#[test]
fn git_runs_clean_under_the_checked_library() {
    for preload in [false, true] {
        let dir = scratch(if preload { "git-checked" } else { "git-plain" });
        let git = |args: &[&str]| {
            let mut c = Command::new("git");
            c.current_dir(&dir)
                .env("HOME", &dir)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
                .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
                .args(["-c", "user.name=hakmem", "-c", "user.email=h@example.com", "-c", "init.defaultBranch=main"])
                .args(args);
            let out = run(c, preload);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && !err.contains("hakmem: "), "git {args:?}: {err}");
            out.stdout
        };
        git(&["init", "-q"]);
        for i in 0..40 {
            std::fs::write(dir.join(format!("f{i}.txt")), format!("line {i}\n").repeat(i + 1)).unwrap();
        }
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "first"]);
        let log = git(&["log", "--stat"]);
        assert!(String::from_utf8_lossy(&log).contains("40 files changed"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Compiles tests/c/misuse.c (one misuse per run, chosen by argv[1]; the same program
/// `just checked-compare` runs under every allocator it compares) into `dir`.
fn misuse_program(dir: &Path) -> PathBuf {
    let exe = dir.join("misuse");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/misuse.c");
    let ok = Command::new("cc")
        .args(["-O1", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap()
        .success();
    assert!(ok, "compiling misuse.c failed");
    exe
}

/// Runs the misuse program with `arg` under the checked library, `env` set.
fn misuse(exe: &Path, arg: &str, env: &[(&str, &str)]) -> (Output, String) {
    let mut c = Command::new(exe);
    c.arg(arg).envs(env.iter().copied());
    let out = run(c, true);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, err)
}

#[test]
fn each_misuse_in_a_c_program_is_reported_by_name() {
    let dir = scratch("misuse");
    let exe = misuse_program(&dir);
    let clean = run(Command::new(&exe), true);
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stderr));
    // The first line of each report. A realloc of a freed block is a double free (with
    // "[realloc of a freed block]" after it); a stack address is not in any region, like any
    // pointer from elsewhere.
    for (arg, expect) in [
        ("double-free", "hakmem: double free of 0x"),
        ("overflow", "hakmem: heap buffer overflow of 0x"),
        ("write-after-free", "hakmem: write after free of 0x"),
        ("interior", "hakmem: invalid free of 0x"),
        ("remote-double-free", "hakmem: double free of 0x"),
        ("stack", "hakmem: free of a pointer hakmem never handed out of 0x"),
        ("realloc-after-free", "hakmem: double free of 0x"),
        ("underflow", "hakmem: heap buffer underflow of 0x"),
        ("wild", "hakmem: free of a pointer hakmem never handed out of 0x"),
        ("mapping", "hakmem: free of a pointer hakmem never handed out of 0x"),
    ] {
        let (out, err) = misuse(&exe, arg, &[]);
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{arg}: {:?}\n{err}", out.status);
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with(expect), "{arg}: expected a first line starting `{expect}`, got:\n{err}");
        if arg == "remote-double-free" {
            // The first free came from a thread that never allocated: its first free set up
            // its cache, the second the process made (the main thread's is the first).
            assert!(first.contains("first freed at #1 by thread 2;"), "{arg}: {first}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The ninth misuse of `just checked-compare`: a read leaves no trace in the block, so only a
/// block sampled onto guard pages can show it.
#[test]
fn a_read_after_free_is_reported_with_guard_sampling() {
    let dir = scratch("read-after-free");
    let exe = misuse_program(&dir);
    // Without guard pages a read after free goes unseen (it changes nothing to check).
    let (out, err) = misuse(&exe, "read-after-free", &[]);
    assert!(out.status.success(), "read-after-free without guard pages: {:?}\n{err}", out.status);
    let (out, err) = misuse(&exe, "read-after-free", &[("HAKMEM_GUARD_SAMPLE", "1")]);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "read-after-free: {:?}\n{err}", out.status);
    assert!(
        err.lines().any(|l| l.starts_with("hakmem: read after free")),
        "read-after-free: expected a line starting `hakmem: read after free` in:\n{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
