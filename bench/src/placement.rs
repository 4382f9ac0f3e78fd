//! How far apart two CPUs are at the moment: the round trip of one cache line between threads
//! pinned to the first two CPUs this process may use, taken before every timed run so the
//! report can say which figures came from which placement.
//!
//! On the 2-vCPU EPYC machines this project runs on, the probe reads about 40 to 50 ns (at most
//! 88) most of the time, and 300 to 470 ns in spells of a minute or so that came every few
//! minutes and, on 2026-12-06, took 40% of the time: the host has put the two vCPUs far apart
//! (in different core complexes, which share no cache; an inference from inside the VM). Then
//! every workload whose threads exchange memory changes regime, for every allocator and not
//! alike: xmalloc-like ran 2 to 3 times slower when its two threads used both vCPUs (hakmem from
//! about 1.0x jemalloc to 0.7x) and faster than usual when the scheduler put both on one, while
//! single-thread workloads kept their rate. Run beside xmalloc-like for 20 minutes (861 rounds,
//! two probes a second), every probe of the second read far in 277 of the 288 rounds slower than
//! 70 Mops/s, and one at least in 287; in 8 of the other 573. So a workload measured in a
//! spell is marked in the report rather than silently mixed in.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Round trips per block; the probe takes the median of [`BLOCKS`] blocks, so one preemption
/// does not decide it.
const TRIPS: u64 = 200;
const BLOCKS: usize = 5;
/// A peer that has not answered for this long (its vCPU descheduled, or pinning failed) ends
/// the probe without a figure rather than holding up the benchmark.
const GIVE_UP: Duration = Duration::from_millis(50);

/// A row whose runs' median round trip is above this many times the run's fastest probe was
/// measured with the CPUs far apart: far probes read 7 to 10 times the usual figure, usual ones
/// at most 2 times their fastest.
pub const FAR_FACTOR: f64 = 2.5;

/// The ping-pong line, alone in its cache line so nothing else moves with it.
#[repr(align(128))]
struct Line(AtomicU64);

/// Median nanoseconds for one cache line to go from the first usable CPU to the second and back,
/// or None with fewer than two usable CPUs or when a side stops answering.
pub fn round_trip_ns() -> Option<f64> {
    let (a, b) = first_two_cpus()?;
    let line = Line(AtomicU64::new(0));
    let abort = AtomicBool::new(false);
    // Each side waits for the other's value: the pinger writes odd values, the ponger even.
    // The clock starts only after a while, so a normal wait does not pay for reading it.
    let wait_for = |want: u64| -> bool {
        let mut spins = 0u32;
        let mut since: Option<Instant> = None;
        while line.0.load(Ordering::Acquire) != want {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                if abort.load(Ordering::Relaxed) {
                    return false;
                }
                if since.get_or_insert_with(Instant::now).elapsed() > GIVE_UP {
                    abort.store(true, Ordering::Relaxed);
                    return false;
                }
            }
            std::hint::spin_loop();
        }
        true
    };
    let total = TRIPS * BLOCKS as u64;
    let blocks = std::thread::scope(|s| {
        s.spawn(|| {
            if !pin(b) {
                abort.store(true, Ordering::Relaxed);
                return;
            }
            for i in 0..total {
                if !wait_for(2 * i + 1) {
                    return;
                }
                line.0.store(2 * i + 2, Ordering::Release);
            }
        });
        s.spawn(|| {
            if !pin(a) {
                abort.store(true, Ordering::Relaxed);
                return None;
            }
            let mut blocks = Vec::with_capacity(BLOCKS);
            for block in 0..BLOCKS as u64 {
                let t = Instant::now();
                for i in block * TRIPS..(block + 1) * TRIPS {
                    line.0.store(2 * i + 1, Ordering::Release);
                    if !wait_for(2 * i + 2) {
                        return None;
                    }
                }
                blocks.push(t.elapsed().as_nanos() as f64 / TRIPS as f64);
            }
            Some(blocks)
        })
        .join()
        .expect("probe thread panicked")
    })?;
    crate::report::median(&blocks)
}

/// Whether a row whose runs probed `rtt` (ns each) ran with the CPUs far apart, given the
/// run's fastest probe `best`.
pub fn far(rtt: &[f64], best: Option<f64>) -> bool {
    match (crate::report::median(rtt), best) {
        (Some(m), Some(b)) => m > FAR_FACTOR * b,
        _ => false,
    }
}

/// The fastest probe among all rows' probes.
pub fn best<'a>(probes: impl Iterator<Item = &'a [f64]>) -> Option<f64> {
    probes.flatten().copied().reduce(f64::min)
}

/// Names of the workloads (or benchmarks) any of whose rows ran with the CPUs far apart, from
/// every row's (name, probes).
pub fn far_names<'a>(rows: impl Iterator<Item = (&'a str, &'a [f64])> + Clone) -> Vec<&'a str> {
    let b = best(rows.clone().map(|(_, p)| p));
    let mut names = Vec::new();
    for (name, p) in rows {
        if far(p, b) && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The mark after a table's name cell: a dagger for a name in `far`.
pub fn mark(far: &[&str], name: &str) -> &'static str {
    if far.contains(&name) {
        " †"
    } else {
        ""
    }
}

/// The report's paragraph on placement: the fastest and median probe, and which `what`s
/// (workloads, benchmarks) were measured with the CPUs far apart, marked † in the tables.
pub fn note<'a>(rows: impl Iterator<Item = (&'a str, &'a [f64])> + Clone, what: &str) -> String {
    let all: Vec<f64> = rows.clone().flat_map(|(_, p)| p.iter().copied()).collect();
    let (Some(fastest), Some(mid)) = (best(rows.clone().map(|(_, p)| p)), crate::report::median(&all)) else {
        return "Placement: not probed (fewer than two usable CPUs, or the probe did not complete).".into();
    };
    let mut s = format!(
        "Placement: before every timed run a cache line made {} round trips between the first two \
         CPUs this process may use; the fastest probe took {fastest:.0} ns a round trip, the \
         median {mid:.0} ns.",
        TRIPS * BLOCKS as u64
    );
    let far = far_names(rows.clone());
    if far.is_empty() {
        s.push_str(&format!(" No {what} was measured with them far apart."));
        return s;
    }
    let list: Vec<String> = far
        .iter()
        .map(|name| {
            let p: Vec<f64> = rows.clone().filter(|(n, _)| n == name).flat_map(|(_, p)| p.iter().copied()).collect();
            format!("{name} ({:.0} ns)", crate::report::median(&p).unwrap_or(f64::NAN))
        })
        .collect();
    s.push_str(&format!(
        " † Measured with them far apart (a row's median probe above {FAR_FACTOR}x the fastest): \
         {}. There every allocator runs slower where threads share memory, and not alike, so \
         those ratios describe that placement, not the usual one.",
        list.join(", ")
    ));
    s
}

/// The first two CPUs in this thread's affinity mask.
fn first_two_cpus() -> Option<(usize, usize)> {
    // SAFETY: cpu_set_t is plain bits; sched_getaffinity writes at most its size.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        set
    };
    // SAFETY: CPU_ISSET reads the set in bounds for every cpu below CPU_SETSIZE.
    let mut cpus = (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) });
    Some((cpus.next()?, cpus.next()?))
}

/// Pins the calling thread to `cpu`; false if the kernel refused.
fn pin(cpu: usize) -> bool {
    // SAFETY: as in first_two_cpus; the set names one CPU this process may use.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_gives_a_plausible_round_trip_with_two_cpus() {
        if first_two_cpus().is_none() {
            eprintln!("one usable CPU: nothing to probe");
            return;
        }
        // Other tests run beside this one and may keep a side off its CPU past the give-up
        // time; a probe that never completes in five tries is broken.
        let ns = (0..5).find_map(|_| round_trip_ns()).expect("two CPUs, so a probe completes");
        // A line crossing between cores takes tens to thousands of nanoseconds; a figure outside
        // that means the two sides did not really wait for each other.
        assert!((10.0..100_000.0).contains(&ns), "{ns} ns");
    }

    #[test]
    fn the_note_names_the_far_rows_and_the_tables_mark_them() {
        let rows: Vec<(&str, &[f64])> =
            vec![("a", &[140.0, 130.0]), ("b", &[150.0, 145.0]), ("b", &[600.0, 700.0])];
        let far = far_names(rows.iter().copied());
        assert_eq!(far, vec!["b"]);
        assert_eq!(mark(&far, "b"), " †");
        assert_eq!(mark(&far, "a"), "");
        let n = note(rows.iter().copied(), "workload");
        assert!(n.contains("fastest probe took 130 ns"), "{n}");
        assert!(n.contains("b (375 ns)"), "{n}");
        let quiet = note(rows[..2].iter().copied(), "workload");
        assert!(quiet.ends_with("No workload was measured with them far apart."), "{quiet}");
        assert!(note(std::iter::empty(), "workload").contains("not probed"));
    }

    #[test]
    fn far_is_relative_to_the_runs_best_probe() {
        let rows: [&[f64]; 3] = [&[140.0, 135.0, 150.0], &[600.0, 640.0, 150.0], &[300.0, 140.0, 310.0]];
        let b = best(rows.iter().copied());
        assert_eq!(b, Some(135.0));
        assert!(!far(rows[0], b));
        assert!(far(rows[1], b));
        // 2.2x the best, the size of a noisy probe: not far.
        assert!(!far(rows[2], b));
        assert!(!far(&[], b));
        assert!(!far(rows[1], None));
    }
}
