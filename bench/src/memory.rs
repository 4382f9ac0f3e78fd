//! Memory use per allocator and workload. Throughput runs share one process, where RSS would
//! mix every allocator's retained pages, so each memory figure comes from a fresh child
//! process (this binary re-executed with `--rss-child WORKLOAD ALLOC`) that runs the workload
//! once and reads its own /proc/self/status.

use std::fmt::Write as _;
use std::process::{Command, ExitCode, Stdio};

use crate::allocators::Allocator;
use crate::workloads::Workload;

/// Marker the child prints before its figures, so stray output cannot be mistaken for them.
const TAG: &str = "rss-child:";

/// One child's figures, in KiB as the kernel reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rss {
    /// VmRSS just before the workload: the binary, the harness and libc, the same for everyone.
    pub base_kib: u64,
    /// VmHWM after the workload: the process's peak resident set.
    pub peak_kib: u64,
    /// VmRSS after the workload returned, by which time it has freed every block.
    pub final_kib: u64,
}

/// The memory measurement of one workload on one allocator.
pub struct MemOutcome {
    /// Workload name.
    pub workload: &'static str,
    /// Allocator name.
    pub allocator: &'static str,
    /// The figures, or why there are none (the child crashed, hung or printed nothing).
    pub rss: Result<Rss, String>,
}

/// Reads (VmHWM, VmRSS) in KiB from /proc/self/status.
pub fn read_status() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// The child side: runs `w` once on `a` and prints one tagged line of figures.
pub fn child_main(w: &Workload, a: &Allocator, ops: u64) -> ExitCode {
    let Some((_, base)) = read_status() else {
        eprintln!("hakmem-bench: /proc/self/status unreadable; no RSS figures on this system");
        return ExitCode::from(2);
    };
    (w.run)(a.handle, ops);
    let (peak, fin) = read_status().expect("status was readable a moment ago");
    println!("{TAG} base_kib={base} peak_kib={peak} final_kib={fin}");
    ExitCode::SUCCESS
}

/// Parses the child's tagged line out of its stdout.
pub fn parse_child(stdout: &str) -> Option<Rss> {
    let line = stdout.lines().find(|l| l.starts_with(TAG))?;
    let mut base = None;
    let mut peak = None;
    let mut fin = None;
    for kv in line[TAG.len()..].split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        let v: u64 = v.parse().ok()?;
        match k {
            "base_kib" => base = Some(v),
            "peak_kib" => peak = Some(v),
            "final_kib" => fin = Some(v),
            _ => {}
        }
    }
    Some(Rss {
        base_kib: base?,
        peak_kib: peak?,
        final_kib: fin?,
    })
}

/// Child runs per cell: multi-thread workloads' live memory depends on scheduling (a descheduled
/// thread's mailbox fills up), so one run can be far off; the median of three is stable.
const RUNS: usize = 3;

/// The parent side: re-executes this binary for `w` on `a` with `ops` operations [`RUNS`] times
/// and keeps the run with the median peak; the child's own watchdog bounds each by `timeout_secs`.
pub fn measure(
    w: &'static Workload,
    a: &'static Allocator,
    ops: u64,
    timeout_secs: u64,
) -> MemOutcome {
    let mut runs = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        match measure_once(w, a, ops, timeout_secs) {
            Ok(r) => runs.push(r),
            Err(e) => {
                return MemOutcome {
                    workload: w.name,
                    allocator: a.name,
                    rss: Err(e),
                }
            }
        }
    }
    runs.sort_by_key(|r| r.peak_kib);
    MemOutcome {
        workload: w.name,
        allocator: a.name,
        rss: Ok(runs.swap_remove(RUNS / 2)),
    }
}

fn measure_once(
    w: &'static Workload,
    a: &'static Allocator,
    ops: u64,
    timeout_secs: u64,
) -> Result<Rss, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let out = Command::new(exe)
        .args(["--rss-child", w.name, a.name, "--ops"])
        .arg(ops.to_string())
        .args(["--timeout", &timeout_secs.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("child {}", out.status));
    }
    parse_child(&stdout).ok_or_else(|| "child printed no figures".to_string())
}

/// KiB to MiB for display.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Figure `pick` of `row` over the same figure of allocator `reference` on the same workload.
pub fn ratio(
    all: &[MemOutcome],
    row: &MemOutcome,
    reference: &str,
    pick: fn(&Rss) -> u64,
) -> Option<f64> {
    let base = all
        .iter()
        .find(|o| o.workload == row.workload && o.allocator == reference)?
        .rss
        .as_ref()
        .ok()?;
    let mine = row.rss.as_ref().ok()?;
    let b = pick(base);
    (b > 0).then(|| pick(mine) as f64 / b as f64)
}

/// Header of the printed memory table.
pub fn table_header(refs: &[&str]) -> String {
    let mut s = format!(
        "{:<14} {:<10} {:>9} {:>9}",
        "workload", "allocator", "peak MiB", "final MiB"
    );
    for r in refs {
        let _ = write!(
            s,
            " {:>14} {:>15}",
            format!("peak vs {r}"),
            format!("final vs {r}")
        );
    }
    let width = s.len();
    s.push('\n');
    s.push_str(&"-".repeat(width));
    s
}

/// One printed memory table line.
pub fn table_row(all: &[MemOutcome], row: &MemOutcome, refs: &[&str]) -> String {
    let mut s = format!("{:<14} {:<10}", row.workload, row.allocator);
    match &row.rss {
        Ok(r) => {
            let _ = write!(s, " {:>9.1} {:>9.1}", mib(r.peak_kib), mib(r.final_kib));
            for reference in refs {
                for (pick, width) in [(peak as fn(&Rss) -> u64, 14), (fin, 15)] {
                    match ratio(all, row, reference, pick) {
                        Some(x) => {
                            let _ = write!(s, " {:>w$.2}x", x, w = width - 1);
                        }
                        None => {
                            let _ = write!(s, " {:>width$}", "-");
                        }
                    }
                }
            }
        }
        Err(e) => {
            let _ = write!(s, " FAILED: {e}");
        }
    }
    s
}

/// Selects the peak figure (for [`ratio`]).
pub fn peak(r: &Rss) -> u64 {
    r.peak_kib
}

/// Selects the final figure (for [`ratio`]).
pub fn fin(r: &Rss) -> u64 {
    r.final_kib
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_child_line_among_other_output() {
        let out = "noise\nrss-child: base_kib=10 peak_kib=300 final_kib=20\n";
        assert_eq!(
            parse_child(out),
            Some(Rss {
                base_kib: 10,
                peak_kib: 300,
                final_kib: 20
            })
        );
        assert_eq!(parse_child("rss-child: base_kib=1"), None);
        assert_eq!(parse_child(""), None);
    }

    #[test]
    fn status_is_readable_here() {
        let (hwm, rss) = read_status().expect("Linux /proc");
        assert!(hwm >= rss && rss > 0);
    }
}
