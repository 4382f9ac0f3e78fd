//! One benchmark process, run through the launcher (bench/c/launch.c), which forks and execs it,
//! times it from fork to exit and reports its rusage from `wait4`. Peak RSS is that `ru_maxrss`:
//! the largest resident set of the program or of any descendant it waited for (gcc's cc1, say),
//! in KiB. Started straight from hakmem-bench, a program's `ru_maxrss` would include the resident
//! set it had before exec, that is at least hakmem-bench's own peak; forked from the small
//! launcher it starts from the launcher's few hundred KiB.
//!
//! The launcher runs in a process group of its own, so the time limit kills it and the program
//! together. It is first waited for with `waitid(WNOWAIT)`, which leaves it unreaped, so the
//! watchdog can still signal its group without the id having been recycled.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
    /// It ran past the time limit and was killed.
    TimedOut,
}

impl Ending {
    /// A short description for a failure message, e.g. "killed by SIGSEGV".
    pub fn describe(self) -> String {
        match self {
            Ending::Exited(c) => format!("exited with status {c}"),
            Ending::Signaled(s) => format!("killed by {}", signal_name(s)),
            Ending::TimedOut => "ran past the time limit and was killed".into(),
        }
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGFPE => "SIGFPE".into(),
        libc::SIGKILL => "SIGKILL".into(),
        s => format!("signal {s}"),
    }
}

/// What one run of a child cost.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// How it ended.
    pub ending: Ending,
    /// Wall-clock seconds from fork to exit, by the launcher's clock (on a time-out: from spawn
    /// to the kill).
    pub wall: f64,
    /// User plus system CPU seconds of the child and its waited-for descendants.
    pub cpu: f64,
    /// Peak resident set in KiB (`ru_maxrss`).
    pub peak_kib: u64,
}

const LAUNCH: &str = concat!(env!("HAKMEM_C_PROGRAMS"), "/launch");

/// A command that runs `program` with `args` through the launcher, with `preload` (None:
/// nothing) in the program's `LD_PRELOAD` alone; the launcher writes its figures to `report`.
/// The program inherits the command's working directory, environment and stdio.
pub fn launcher(report: &Path, preload: Option<&Path>, program: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new(LAUNCH);
    cmd.arg(report)
        .arg(preload.map_or(Path::new("-"), |p| p))
        .arg(program)
        .args(args)
        .env_remove("LD_PRELOAD");
    cmd
}

/// Runs `cmd` (made by [`launcher`] with `report`) and returns the program's usage, killing
/// launcher and program after `limit`.
pub fn run(cmd: &mut Command, report: &Path, limit: Duration) -> io::Result<Usage> {
    let start = Instant::now();
    let mut child = cmd.process_group(0).spawn()?;
    let pid = child.id() as libc::pid_t;
    let (done, stop) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if stop.recv_timeout(limit) == Err(mpsc::RecvTimeoutError::Timeout) {
            // SAFETY: the launcher is not reaped until this thread is joined, so its id, which
            // is its group's, is still ours.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            return true;
        }
        false
    });
    let waited = wait_unreaped(pid);
    drop(done);
    let timed_out = watchdog.join().expect("the watchdog does not panic");
    waited?;
    let status = child.wait()?;
    if timed_out {
        return Ok(Usage {
            ending: Ending::TimedOut,
            wall: start.elapsed().as_secs_f64(),
            cpu: 0.0,
            peak_kib: 0,
        });
    }
    if !status.success() {
        return Err(io::Error::other(format!("the launcher failed ({status})")));
    }
    let text = std::fs::read_to_string(report)?;
    parse_report(&text)
        .ok_or_else(|| io::Error::other(format!("the launcher's report is unreadable: '{text}'")))
}

/// Reads the launcher's line: "exited N|signaled N wall SECS maxrss_kib KIB cpu SECS".
fn parse_report(text: &str) -> Option<Usage> {
    let f: Vec<&str> = text.split_whitespace().collect();
    let [how, code, "wall", wall, "maxrss_kib", kib, "cpu", cpu] = f[..] else {
        return None;
    };
    let code: i32 = code.parse().ok()?;
    Some(Usage {
        ending: match how {
            "exited" => Ending::Exited(code),
            "signaled" => Ending::Signaled(code),
            _ => return None,
        },
        wall: wall.parse().ok()?,
        cpu: cpu.parse().ok()?,
        peak_kib: kib.parse().ok()?,
    })
}

fn wait_unreaped(pid: libc::pid_t) -> io::Result<()> {
    loop {
        // SAFETY: siginfo_t is plain data that waitid fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waiting for our own child; info is valid for writes.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Keeps crashing children from writing core files into the scratch directory (inherited by
/// every child started afterwards).
pub fn no_core_files() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit with a valid struct; failure only means core files stay possible.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(program: &str, args: &[&str], limit: Duration) -> Usage {
        let report = std::env::temp_dir()
            .join(format!("hakmem-launch-test.{}.{program}", std::process::id()).replace('/', "_"));
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut cmd = launcher(&report, None, Path::new(program), &args);
        cmd.stderr(std::process::Stdio::null());
        let usage = run(&mut cmd, &report, limit).unwrap();
        let _ = std::fs::remove_file(&report);
        usage
    }

    #[test]
    fn exit_status_signal_and_timeout() {
        let limit = Duration::from_secs(20);
        let ok = launch("/bin/true", &[], limit);
        assert_eq!(ok.ending, Ending::Exited(0));
        assert!(ok.peak_kib > 0);
        assert_eq!(
            launch("/bin/sh", &["-c", "exit 3"], limit).ending,
            Ending::Exited(3)
        );
        let killed = launch("/bin/sh", &["-c", "kill -SEGV $$"], limit);
        assert_eq!(killed.ending, Ending::Signaled(libc::SIGSEGV));
        let slow = launch("/bin/sleep", &["30"], Duration::from_millis(300));
        assert_eq!(slow.ending, Ending::TimedOut);
        assert!(slow.wall < 20.0);
        assert_eq!(
            launch("/nonexistent", &[], limit).ending,
            Ending::Exited(127)
        );
    }

    #[test]
    fn peak_rss_is_the_programs_not_ours() {
        // This process touches 300 MiB first: a program started straight from it would report
        // at least that much as its own peak.
        let ballast = vec![1u8; 300 << 20];
        std::hint::black_box(&ballast);
        let limit = Duration::from_secs(60);
        let small = launch("/bin/true", &[], limit);
        assert!(small.peak_kib < 20 << 10, "{small:?}");
        let big = launch(
            "/usr/bin/python3",
            &["-c", "b = bytearray(200 * 1024 * 1024)"],
            limit,
        );
        assert_eq!(big.ending, Ending::Exited(0));
        assert!(
            big.peak_kib > 190 << 10 && big.peak_kib < 290 << 10,
            "{big:?}"
        );
    }

    #[test]
    fn reports_parse() {
        let u = parse_report("signaled 11 wall 0.5 maxrss_kib 1234 cpu 0.25\n").unwrap();
        assert_eq!(u.ending, Ending::Signaled(11));
        assert_eq!((u.wall, u.cpu, u.peak_kib), (0.5, 0.25, 1234));
        assert!(parse_report("exited 0 wall 1").is_none());
    }
}
