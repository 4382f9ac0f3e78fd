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

#[test]
fn each_misuse_in_a_c_program_is_reported_by_name() {
    let dir = scratch("misuse");
    let exe = dir.join("misuse");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/misuse.c");
    let ok = Command::new("cc").args(["-O1", "-o"]).arg(&exe).arg(&src).status().unwrap().success();
    assert!(ok, "compiling misuse.c failed");
    let clean = run(Command::new(&exe), true);
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stderr));
    for (arg, expect) in [
        ("double-free", "hakmem: double free of 0x"),
        ("overflow", "hakmem: heap buffer overflow of 0x"),
        ("write-after-free", "hakmem: write after free of 0x"),
        ("interior", "hakmem: invalid free of 0x"),
        ("wild", "hakmem: free of a pointer hakmem never handed out of 0x"),
    ] {
        let mut c = Command::new(&exe);
        c.arg(arg);
        let out = run(c, true);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{arg}: {:?}\n{err}", out.status);
        assert!(err.lines().any(|l| l.starts_with(expect)), "{arg}: expected `{expect}` in:\n{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
