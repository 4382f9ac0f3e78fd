//! The C suite's tables: printed as each benchmark finishes, as a section of latest.md, as JSON,
//! and its chart. Times are compared as speed, the other's time over this one's (>1 = faster),
//! so they read like the Rust suite's throughput ratios; peak RSS as this one's over the other's
//! (<1 = less memory).

use std::fmt::Write as _;
use std::path::Path;

use crate::chart;
use crate::csuite::{CRow, Preload, PEERS};
use crate::placement;
use crate::report::{geomean, json_num, json_str, md_cell, md_header, median, with_ratio};

/// What the report says about a C-suite run beyond its rows.
pub struct CInfo<'a> {
    /// Timed rounds.
    pub rounds: usize,
    /// Whether the quick sizes ran.
    pub quick: bool,
    /// Per-run time limit, seconds.
    pub timeout_secs: u64,
    /// The allocators, in report order.
    pub allocs: &'a [Preload],
    /// (name, what it does, command line, program version) of each benchmark, in report order.
    pub benches: &'a [(&'static str, &'static str, String, Option<String>)],
    /// File name of the chart beside the markdown, if one was written.
    pub chart: Option<&'a str>,
}

fn find<'a>(rows: &'a [CRow], bench: &str, alloc: &str) -> Option<&'a CRow> {
    rows.iter().find(|r| r.bench == bench && r.alloc == alloc)
}

fn time_of(rows: &[CRow], bench: &str, alloc: &str) -> Option<f64> {
    find(rows, bench, alloc)?.time()
}

fn peak_of(rows: &[CRow], bench: &str, alloc: &str) -> Option<f64> {
    find(rows, bench, alloc)?.peak()
}

fn cpu_of(rows: &[CRow], bench: &str, alloc: &str) -> Option<f64> {
    find(rows, bench, alloc)?.cpu_time()
}

/// The best (smallest) of the peers' figures on `bench`, among peers that completed it.
fn best_peer(
    rows: &[CRow],
    bench: &str,
    figure: fn(&[CRow], &str, &str) -> Option<f64>,
) -> Option<f64> {
    PEERS
        .iter()
        .filter_map(|p| figure(rows, bench, p))
        .min_by(f64::total_cmp)
}

/// `row`'s speed over the best peer's: the best peer's time over `row`'s (>1 = faster than all).
pub fn speed_vs_best(rows: &[CRow], row: &CRow) -> Option<f64> {
    Some(best_peer(rows, row.bench, time_of)? / row.time()?)
}

/// As [`speed_vs_best`], by CPU time instead of wall time.
pub fn cpu_speed_vs_best(rows: &[CRow], row: &CRow) -> Option<f64> {
    Some(best_peer(rows, row.bench, cpu_of)? / row.cpu_time()?)
}

/// `row`'s peak RSS over the smallest of the peers' (<1 = less memory than all).
pub fn peak_vs_best(rows: &[CRow], row: &CRow) -> Option<f64> {
    Some(row.peak()? / best_peer(rows, row.bench, peak_of)?)
}

/// Speed of `row`'s allocator relative to glibc's on the same benchmark (the chart's bars).
pub fn speed_vs_glibc(rows: &[CRow], bench: &str, alloc: &str) -> Option<f64> {
    Some(time_of(rows, bench, "glibc")? / time_of(rows, bench, alloc)?)
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// Header of the printed table.
pub fn table_header() -> String {
    let s = format!(
        "{:<17} {:<15} {:>8} {:>7} {:>7} {:>9} {:>15} {:>15}",
        "benchmark", "allocator", "time s", "spread", "rtt ns", "peak MiB", "speed vs best", "peak vs best"
    );
    let width = s.len();
    format!("{s}\n{}", "-".repeat(width))
}

/// One printed line for `row`.
pub fn table_row(rows: &[CRow], row: &CRow) -> String {
    let mut s = format!("{:<17} {:<15}", row.bench, row.alloc);
    match (&row.error, row.time(), row.peak()) {
        (None, Some(t), Some(p)) => {
            let _ = write!(
                s,
                " {t:>8.3} {:>6.1}% {:>7} {:>9.1} {:>14}x {:>14}x",
                row.spread().unwrap_or(0.0) * 100.0,
                md_cell(median(&row.rtt_ns), 0),
                mib(p),
                md_cell(speed_vs_best(rows, row), 2),
                md_cell(peak_vs_best(rows, row), 2)
            );
        }
        (Some(e), _, _) => {
            let _ = write!(s, " FAILED: {e}");
        }
        _ => s.push_str(" (no completed rounds)"),
    }
    s
}

/// Each row's (benchmark, placement probes), for `placement`'s verdicts.
pub fn probes(rows: &[CRow]) -> impl Iterator<Item = (&str, &[f64])> + Clone {
    rows.iter().map(|r| (r.bench, &r.rtt_ns[..]))
}

/// Printed summary: each allocator's geometric means against the best peer.
pub fn summary(rows: &[CRow], allocs: &[Preload]) -> String {
    let mut s = String::from(
        "geometric mean over benchmarks of speed and peak RSS relative to the best of mimalloc, \
         jemalloc, tcmalloc:\n",
    );
    for a in allocs {
        let mine = || rows.iter().filter(|r| r.alloc == a.name);
        let speed = geomean(mine().filter_map(|r| speed_vs_best(rows, r)));
        let peak = geomean(mine().filter_map(|r| peak_vs_best(rows, r)));
        let _ = writeln!(
            s,
            "  {:<15} speed {}x, peak RSS {}x",
            a.name,
            md_cell(speed, 2),
            md_cell(peak, 2)
        );
    }
    s
}

/// The C suite's section of latest.md.
pub fn markdown(info: &CInfo, rows: &[CRow]) -> String {
    let names: Vec<&str> = info.allocs.iter().map(|a| a.name).collect();
    let benches: Vec<&str> = info.benches.iter().map(|b| b.0).collect();
    let mut s =
        String::from("## C suite: every benchmark a process of its own, under `LD_PRELOAD`\n\n");
    let _ =
        writeln!(
        s,
        "Each benchmark runs as a separate process with the allocator's library in `LD_PRELOAD` \
         (glibc: none); {} timed round{}{}, each running every allocator once, starting with a \
         different allocator each round; the figures are medians. A small launcher \
         (`bench/c/launch.c`) forks and execs each run: time is wall-clock time from fork to \
         exit, peak RSS is `ru_maxrss` from its `wait4` (the largest resident set of the program \
         or of a child it waited for, such as gcc's cc1). Every run's stdout must equal that of \
         an untimed glibc run first (the C programs print a checksum of every block they read \
         back, the real programs their results); a run that differs, crashes or takes over {} s \
         is reported as FAILED below. A shared, noisy 2-core machine: read the ratios, not the \
         seconds, and treat differences under ~10% as noise.\n",
        info.rounds,
        if info.rounds == 1 { "" } else { "s" },
        if info.quick { " at the quick sizes (QUICK RUN)" } else { "" },
        info.timeout_secs
    );
    if let Some(chart) = info.chart {
        let _ = writeln!(s, "![C suite: speed relative to glibc]({chart})\n");
    }
    s.push_str("| allocator | library |\n|---|---|\n");
    for a in info.allocs {
        let lib = a
            .lib
            .as_deref()
            .map_or("(none: glibc's malloc)".into(), |l| {
                format!("`{}`", l.display())
            });
        let _ = writeln!(s, "| {} | {lib}, {} |", a.name, a.origin);
    }
    s.push_str("\n| benchmark | what it does | command |\n|---|---|---|\n");
    for (name, about, cmd, origin) in info.benches {
        let by = origin
            .as_deref()
            .map_or(String::new(), |o| format!(" ({o})"));
        let _ = writeln!(s, "| {name} | {about} | `{cmd}`{by} |");
    }
    s.push('\n');

    // The benchmarks measured with the CPUs far apart, marked in every table.
    let far = placement::far_names(probes(rows));
    s.push_str("### Time\n\n");
    s.push_str(
        "Median wall time in seconds and, in parentheses, the speed relative to the best of \
         mimalloc, jemalloc and tcmalloc on that benchmark (the best one's time over this one's: \
         >1 = faster than all three).\n\n",
    );
    figure_table(
        &mut s,
        rows,
        &benches,
        &names,
        time_of,
        |t| t,
        |r| speed_vs_best(rows, r),
        3,
        &far,
    );
    let _ = writeln!(s, "{}\n", placement::note(probes(rows), "benchmark"));

    let others: Vec<&str> = names.iter().copied().filter(|a| *a != "hakmem").collect();
    if names.contains(&"hakmem") {
        s.push_str("#### hakmem relative to each allocator\n\n");
        s.push_str(
            "hakmem's speed over the other's: the other's median time over hakmem's (>1 = hakmem \
             faster); best peer = the fastest of mimalloc, jemalloc, tcmalloc.\n\n",
        );
        hakmem_table(
            &mut s,
            rows,
            &benches,
            &others,
            |other, hak| Some(other? / hak?),
            time_of,
            &far,
        );
    }

    s.push_str("### CPU time\n\n");
    s.push_str(
        "Median CPU time (user + system, of the process and the children it waited for) in \
         seconds and, in parentheses, the speed by this measure relative to the best of \
         mimalloc, jemalloc and tcmalloc. On a shared machine wall time also counts the time the \
         VM was not scheduled, which CPU time does not; but CPU time leaves out the time threads \
         spent blocked, which is part of an allocator's cost where threads wait on each other.\n\n",
    );
    figure_table(
        &mut s,
        rows,
        &benches,
        &names,
        cpu_of,
        |t| t,
        |r| cpu_speed_vs_best(rows, r),
        3,
        &far,
    );

    s.push_str("### Peak RSS\n\n");
    s.push_str(
        "Median peak RSS in MiB (the whole process: program, libraries and heap) and, in \
         parentheses, the ratio to the smallest of mimalloc, jemalloc and tcmalloc (<1 = less \
         memory than all three).\n\n",
    );
    figure_table(
        &mut s,
        rows,
        &benches,
        &names,
        peak_of,
        mib,
        |r| peak_vs_best(rows, r),
        1,
        &far,
    );
    if names.contains(&"hakmem") {
        s.push_str("#### hakmem's peak RSS relative to each allocator\n\n");
        s.push_str(
            "hakmem's median peak RSS over the other's (<1 = hakmem smaller); best peer = the \
             smallest of mimalloc, jemalloc, tcmalloc.\n\n",
        );
        hakmem_table(
            &mut s,
            rows,
            &benches,
            &others,
            |other, hak| Some(hak? / other?),
            peak_of,
            &far,
        );
    }

    let failed: Vec<&CRow> = rows.iter().filter(|r| r.error.is_some()).collect();
    if !failed.is_empty() {
        s.push_str("### Failures\n\n| benchmark | allocator | what happened |\n|---|---|---|\n");
        for r in failed {
            let e = r.error.as_deref().unwrap_or_default().replace('|', "/");
            let _ = writeln!(s, "| {} | {} | {e} |", r.bench, r.alloc);
        }
        s.push('\n');
    }
    s
}

/// A table of one figure per benchmark and allocator, each with its ratio to the best peer,
/// and a geometric-mean row of the ratios.
#[allow(clippy::too_many_arguments)]
fn figure_table(
    s: &mut String,
    rows: &[CRow],
    benches: &[&str],
    names: &[&str],
    figure: fn(&[CRow], &str, &str) -> Option<f64>,
    shown: fn(f64) -> f64,
    vs_best: impl Fn(&CRow) -> Option<f64>,
    digits: usize,
    far: &[&str],
) {
    md_header(s, "benchmark", names);
    for b in benches {
        let _ = write!(s, "| {b}{} |", placement::mark(far, b));
        for a in names {
            let cell = match find(rows, b, a) {
                Some(r) if r.error.is_some() => "FAILED".into(),
                Some(r) => match figure(rows, b, a) {
                    Some(v) => with_ratio(shown(v), vs_best(r), digits),
                    None => "–".into(),
                },
                None => "–".into(),
            };
            let _ = write!(s, " {cell} |");
        }
        s.push('\n');
    }
    s.push_str("| geometric mean of the ratios |");
    for a in names {
        let g = geomean(rows.iter().filter(|r| r.alloc == *a).filter_map(&vs_best));
        let _ = write!(s, " {}x |", md_cell(g, 2));
    }
    s.push_str("\n\n");
}

/// hakmem's ratio (`ratio(other's figure, hakmem's figure)`) to each other allocator and to the
/// best peer, per benchmark, with a geometric-mean row.
fn hakmem_table(
    s: &mut String,
    rows: &[CRow],
    benches: &[&str],
    others: &[&str],
    ratio: fn(Option<f64>, Option<f64>) -> Option<f64>,
    figure: fn(&[CRow], &str, &str) -> Option<f64>,
    far: &[&str],
) {
    let mut columns: Vec<&str> = others.to_vec();
    columns.push("best peer");
    md_header(s, "benchmark", &columns);
    let cell = |b: &str, col: &str| {
        let other = if col == "best peer" {
            best_peer(rows, b, figure)
        } else {
            figure(rows, b, col)
        };
        ratio(other, figure(rows, b, "hakmem"))
    };
    for b in benches {
        let _ = write!(s, "| {b}{} |", placement::mark(far, b));
        for col in &columns {
            let _ = write!(s, " {}x |", md_cell(cell(b, col), 2));
        }
        s.push('\n');
    }
    s.push_str("| geometric mean |");
    for col in &columns {
        let g = geomean(benches.iter().filter_map(|b| cell(b, col)));
        let _ = write!(s, " {}x |", md_cell(g, 2));
    }
    s.push_str("\n\n");
}

/// The C suite as a JSON object (the value of "c_suite" in latest.json).
pub fn to_json(info: &CInfo, rows: &[CRow]) -> String {
    let mut s = String::from("{\n");
    let _ = writeln!(
        s,
        "    \"rounds\": {},\n    \"quick\": {},",
        info.rounds, info.quick
    );
    s.push_str("    \"allocators\": [\n");
    let allocs: Vec<String> = info
        .allocs
        .iter()
        .map(|a| {
            let lib = a
                .lib
                .as_deref()
                .map_or("null".into(), |l| json_str(&l.display().to_string()));
            format!(
                "      {{\"name\": {}, \"library\": {lib}, \"origin\": {}}}",
                json_str(a.name),
                json_str(&a.origin)
            )
        })
        .collect();
    let _ = writeln!(s, "{}\n    ],", allocs.join(",\n"));
    s.push_str("    \"benchmarks\": [\n");
    let benches: Vec<String> = info
        .benches
        .iter()
        .map(|(name, about, cmd, origin)| {
            format!(
                "      {{\"name\": {}, \"about\": {}, \"command\": {}, \"program\": {}}}",
                json_str(name),
                json_str(about),
                json_str(cmd),
                origin.as_deref().map_or("null".into(), json_str)
            )
        })
        .collect();
    let _ = writeln!(s, "{}\n    ],", benches.join(",\n"));
    s.push_str("    \"results\": [\n");
    let nums = |v: &mut dyn Iterator<Item = f64>| {
        v.map(|x| json_num(Some(x))).collect::<Vec<_>>().join(", ")
    };
    let results: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "      {{\"benchmark\": {}, \"allocator\": {}, \"seconds_median\": {}, \
                 \"spread\": {}, \"cpu_seconds_median\": {}, \"peak_kib_median\": {}, \
                 \"speed_vs_best_peer\": {}, \"cpu_speed_vs_best_peer\": {}, \
                 \"peak_vs_best_peer\": {}, \"samples_seconds\": [{}], \
                 \"samples_cpu_seconds\": [{}], \"samples_peak_kib\": [{}], \
                 \"samples_self_reported_seconds\": [{}], \"samples_rtt_ns\": [{}], \
                 \"error\": {}}}",
                json_str(r.bench),
                json_str(r.alloc),
                json_num(r.time()),
                json_num(r.spread()),
                json_num(r.cpu_time()),
                json_num(r.peak()),
                json_num(speed_vs_best(rows, r)),
                json_num(cpu_speed_vs_best(rows, r)),
                json_num(peak_vs_best(rows, r)),
                nums(&mut r.secs.iter().copied()),
                nums(&mut r.cpu.iter().copied()),
                r.peak_kib
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                nums(&mut r.self_secs.iter().copied()),
                nums(&mut r.rtt_ns.iter().copied()),
                r.error.as_deref().map_or("null".into(), json_str)
            )
        })
        .collect();
    let _ = write!(s, "{}\n    ]\n  }}", results.join(",\n"));
    s
}

/// Draws the C suite's chart: each allocator's speed relative to glibc per benchmark.
pub fn write_chart(path: &Path, info: &CInfo, rows: &[CRow], subtitle: &str) -> Result<(), String> {
    let names: Vec<&str> = info.allocs.iter().map(|a| a.name).collect();
    let benches: Vec<&str> = info.benches.iter().map(|b| b.0).collect();
    chart::write_png(
        path,
        &chart::Chart {
            title: "C suite under LD_PRELOAD: speed relative to glibc (higher is better)",
            y_desc: "glibc's time ÷ time",
            subtitle,
            workloads: &benches,
            allocs: &names,
        },
        &|b, a| speed_vs_glibc(rows, b, a),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(bench: &'static str, alloc: &'static str, secs: f64, peak_kib: u64) -> CRow {
        CRow {
            bench,
            alloc,
            secs: vec![secs],
            peak_kib: vec![peak_kib],
            cpu: vec![secs],
            self_secs: vec![],
            rtt_ns: vec![130.0],
            error: None,
        }
    }

    fn preload(name: &'static str) -> Preload {
        Preload {
            name,
            lib: None,
            origin: "test".into(),
        }
    }

    #[test]
    fn ratios_against_the_best_peer() {
        let mut rows = vec![
            row("b", "glibc", 4.0, 4096),
            row("b", "hakmem", 1.0, 2048),
            row("b", "mimalloc", 2.0, 1024),
            row("b", "jemalloc", 0.5, 8192),
            row("b", "tcmalloc", 3.0, 4096),
        ];
        assert_eq!(speed_vs_best(&rows, &rows[1]), Some(0.5));
        assert_eq!(peak_vs_best(&rows, &rows[1]), Some(2.0));
        assert_eq!(speed_vs_glibc(&rows, "b", "hakmem"), Some(4.0));
        // A failed peer drops out of "best"; a failed row has no ratio at all.
        rows[3].error = Some("crashed".into());
        assert_eq!(speed_vs_best(&rows, &rows[1]), Some(2.0));
        assert_eq!(speed_vs_best(&rows, &rows[3]), None);
    }

    #[test]
    fn markdown_has_every_table_and_the_failures() {
        let mut rows = vec![
            row("b", "glibc", 4.0, 4096),
            row("b", "hakmem", 1.0, 2048),
            row("b", "mimalloc", 2.0, 1024),
        ];
        rows[2].error = Some("round 1: killed by SIGSEGV".into());
        let allocs = [preload("glibc"), preload("hakmem"), preload("mimalloc")];
        let benches = [("b", "about b", "b 1 2".to_string(), None)];
        let info = CInfo {
            rounds: 1,
            quick: true,
            timeout_secs: 5,
            allocs: &allocs,
            benches: &benches,
            chart: None,
        };
        let md = markdown(&info, &rows);
        assert!(md.contains("| b | 4.000 | 1.000 | FAILED |"), "{md}");
        assert!(
            md.contains("#### hakmem relative to each allocator"),
            "{md}"
        );
        assert!(md.contains("| b | 4.00x | –x | –x |"), "{md}");
        assert!(
            md.contains("| b | mimalloc | round 1: killed by SIGSEGV |"),
            "{md}"
        );
        let json = to_json(&info, &rows);
        assert!(
            json.contains("\"error\": \"round 1: killed by SIGSEGV\""),
            "{json}"
        );
    }
}
