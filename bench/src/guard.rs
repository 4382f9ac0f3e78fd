//! Makes a crash or hang in an allocator name the workload it happened in: the run in
//! progress is recorded in atomics that a signal handler, a panic hook and a watchdog read.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::allocators::ALLOCATORS;
use crate::workloads::WORKLOADS;

const IDLE: usize = usize::MAX;

static WORKLOAD: AtomicUsize = AtomicUsize::new(IDLE);
static ALLOC: AtomicUsize = AtomicUsize::new(IDLE);
static ROUND: AtomicUsize = AtomicUsize::new(0);
// Milliseconds since EPOCH at which the current run started, plus one (0 = nothing running).
static STARTED: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now_ms() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Records that `WORKLOADS[workload]` is about to run on `ALLOCATORS[alloc]`; round 0 is warm-up.
pub fn enter(workload: usize, alloc: usize, round: usize) {
    WORKLOAD.store(workload, Ordering::SeqCst);
    ALLOC.store(alloc, Ordering::SeqCst);
    ROUND.store(round, Ordering::SeqCst);
    STARTED.store(now_ms() + 1, Ordering::SeqCst);
}

/// Records that the current run finished.
pub fn leave() {
    STARTED.store(0, Ordering::SeqCst);
    WORKLOAD.store(IDLE, Ordering::SeqCst);
}

/// Describes the run in progress, e.g. "workload 'prod-cons' on allocator 'hakmem' (round 2)".
pub fn current() -> Option<String> {
    let w = WORKLOADS.get(WORKLOAD.load(Ordering::SeqCst))?;
    let a = ALLOCATORS.get(ALLOC.load(Ordering::SeqCst))?;
    let r = ROUND.load(Ordering::SeqCst);
    let round = if r == 0 {
        "warm-up".to_string()
    } else {
        format!("round {r}")
    };
    Some(format!(
        "workload '{}' on allocator '{}' ({round})",
        w.name, a.name
    ))
}

/// Adds the run in progress to every panic message (the default hook still prints first).
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        if let Some(run) = current() {
            eprintln!("*** hakmem-bench: panic during {run}");
        }
    }));
}

/// Starts a thread that ends the process with exit code 3 if one run takes longer than
/// `limit`, naming the run, so a deadlocked allocator fails loudly instead of stalling CI.
pub fn start_watchdog(limit: Duration) {
    let limit_ms = limit.as_millis() as u64;
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(250));
            let started = STARTED.load(Ordering::SeqCst);
            if started != 0 && now_ms() + 1 - started > limit_ms {
                let run = current().unwrap_or_else(|| "an unknown run".into());
                eprintln!(
                    "\n*** hakmem-bench: HANG: {run} still running after {} s; giving up",
                    limit.as_secs()
                );
                println!("HANG: {run} exceeded {} s", limit.as_secs());
                std::process::exit(3);
            }
        })
        .expect("spawn watchdog");
}

/// Installs handlers for fatal signals that print the run in progress, then re-raise the
/// signal with its default action so the exit status and any core dump stay as they were.
pub fn install_crash_handler() {
    now_ms();
    for sig in [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGABRT,
    ] {
        // SAFETY: plain sigaction setup with a handler that only calls async-signal-safe functions.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_fatal_signal as *const () as usize;
            // SA_ONSTACK: std gives every thread an alternate signal stack, so even a stack
            // overflow gets its message out.
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESETHAND;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

// Only async-signal-safe work here: no allocation, no locks, raw write(2).
extern "C" fn on_fatal_signal(
    sig: libc::c_int,
    _info: *mut libc::siginfo_t,
    _ctx: *mut libc::c_void,
) {
    let name: &[u8] = match sig {
        libc::SIGSEGV => b"SIGSEGV",
        libc::SIGBUS => b"SIGBUS",
        libc::SIGILL => b"SIGILL",
        libc::SIGFPE => b"SIGFPE",
        libc::SIGABRT => b"SIGABRT",
        _ => b"fatal signal",
    };
    write_err(b"\n*** hakmem-bench: ");
    write_err(name);
    match (
        WORKLOADS.get(WORKLOAD.load(Ordering::Relaxed)),
        ALLOCATORS.get(ALLOC.load(Ordering::Relaxed)),
    ) {
        (Some(w), Some(a)) => {
            write_err(b" during workload '");
            write_err(w.name.as_bytes());
            write_err(b"' on allocator '");
            write_err(a.name.as_bytes());
            let r = ROUND.load(Ordering::Relaxed);
            if r == 0 {
                write_err(b"' (warm-up)\n");
            } else {
                write_err(b"' (round ");
                let mut buf = [0u8; 20];
                let mut i = buf.len();
                let mut n = r;
                loop {
                    i -= 1;
                    buf[i] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                write_err(&buf[i..]);
                write_err(b")\n");
            }
        }
        _ => write_err(b" outside any workload\n"),
    }
    // SA_RESETHAND restored the default action; raising again terminates as the signal would have.
    // SAFETY: raise is async-signal-safe.
    unsafe {
        libc::raise(sig);
    }
}

fn write_err(bytes: &[u8]) {
    // SAFETY: writing a valid buffer to fd 2; a short or failed write is acceptable here.
    unsafe {
        libc::write(2, bytes.as_ptr().cast(), bytes.len());
    }
}
