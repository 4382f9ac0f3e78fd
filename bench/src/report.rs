//! Turning samples into the printed table and the JSON file.

use std::fmt::Write as _;

use crate::allocators::REFERENCES;
use crate::memory::{self, MemOutcome};
use crate::placement;

/// Facts about the machine printed in the header and stored in JSON.
pub struct Machine {
    /// CPUs this process may run on.
    pub nproc: usize,
    /// "model name" from /proc/cpuinfo, or "unknown".
    pub cpu_model: String,
    /// Kernel release, or "unknown".
    pub kernel: String,
    /// MemTotal from /proc/meminfo in GiB, or 0 if unreadable.
    pub mem_gib: f64,
    /// glibc version, which is what "system" means here.
    pub libc: String,
}

impl Machine {
    /// Reads the machine facts; missing /proc files give "unknown" rather than an error.
    pub fn detect() -> Self {
        let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let mem_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
        // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
        let libc = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) }
            .to_string_lossy()
            .into_owned();
        Machine {
            nproc,
            cpu_model,
            kernel,
            mem_gib,
            libc: format!("glibc {libc}"),
        }
    }
}

/// All timed rounds of one workload on one allocator.
pub struct Outcome {
    /// Workload name.
    pub workload: &'static str,
    /// Allocator name.
    pub allocator: &'static str,
    /// Operations in each timed run.
    pub ops: u64,
    /// Throughput of each completed round, in millions of operations per second.
    pub mops: Vec<f64>,
    /// The placement probe before each timed round (ns; see `placement`), where it completed.
    pub rtt_ns: Vec<f64>,
    /// Why the runs stopped early, if they did (a panic message).
    pub error: Option<String>,
}

impl Outcome {
    /// Median of the rounds, if any completed.
    pub fn median(&self) -> Option<f64> {
        self.error.is_none().then(|| median(&self.mops)).flatten()
    }

    /// (max - min) / median, a rough noise indicator for this row.
    pub fn spread(&self) -> Option<f64> {
        self.error.is_none().then(|| spread(&self.mops)).flatten()
    }
}

/// Median of `v` (mean of the middle two for an even count), None if empty.
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// (max - min) / median of `v`, a rough noise indicator; None if empty.
pub fn spread(v: &[f64]) -> Option<f64> {
    let max = v.iter().copied().fold(f64::MIN, f64::max);
    let min = v.iter().copied().fold(f64::MAX, f64::min);
    Some((max - min) / median(v)?)
}

/// Each row's (workload, placement probes), for `placement`'s verdicts.
pub fn probes(all: &[Outcome]) -> impl Iterator<Item = (&str, &[f64])> + Clone {
    all.iter().map(|o| (o.workload, &o.rtt_ns[..]))
}

/// Geometric mean of positive ratios, None if there are none.
pub fn geomean(ratios: impl Iterator<Item = f64>) -> Option<f64> {
    let logs: Vec<f64> = ratios.map(f64::ln).collect();
    (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp())
}

/// Throughput of `row` relative to allocator `reference` on the same workload (>1 = faster).
pub fn ratio(all: &[Outcome], row: &Outcome, reference: &str) -> Option<f64> {
    let base = all
        .iter()
        .find(|o| o.workload == row.workload && o.allocator == reference)?
        .median()?;
    Some(row.median()? / base)
}

/// The column header line (and its underline) for the result table.
pub fn table_header(refs: &[&str]) -> String {
    let mut s = format!(
        "{:<14} {:<10} {:>9} {:>7} {:>7}",
        "workload", "allocator", "Mops/s", "spread", "rtt ns"
    );
    for r in refs {
        let _ = write!(s, " {:>12}", format!("vs {r}"));
    }
    let width = s.len();
    s.push('\n');
    s.push_str(&"-".repeat(width));
    s
}

/// One table line for `row`.
pub fn table_row(all: &[Outcome], row: &Outcome, refs: &[&str]) -> String {
    let mut s = format!("{:<14} {:<10}", row.workload, row.allocator);
    match (row.median(), &row.error) {
        (Some(m), _) => {
            let _ = write!(
                s,
                " {:>9.2} {:>6.1}% {:>7}",
                m,
                row.spread().unwrap_or(0.0) * 100.0,
                md_cell(median(&row.rtt_ns), 0)
            );
            for r in refs {
                match ratio(all, row, r) {
                    Some(x) => {
                        let _ = write!(s, " {:>11.2}x", x);
                    }
                    None => {
                        let _ = write!(s, " {:>12}", "-");
                    }
                }
            }
        }
        (None, Some(e)) => {
            let _ = write!(s, " FAILED: {e}");
        }
        (None, None) => s.push_str(" (no completed rounds)"),
    }
    s
}

/// Geometric mean over workloads of each allocator's ratio to each reference.
pub fn summary(all: &[Outcome], allocators: &[&str], refs: &[&str]) -> String {
    let mut s =
        String::from("geometric mean of per-workload ratios (workloads where both completed):\n");
    for a in allocators {
        let _ = write!(s, "  {a:<10}");
        for r in refs {
            let ratios: Vec<f64> = all
                .iter()
                .filter(|o| o.allocator == *a)
                .filter_map(|o| ratio(all, o, r))
                .collect();
            match geomean(ratios.iter().copied()) {
                Some(g) => {
                    let _ = write!(s, "  vs {r}: {g:.2}x over {} workloads", ratios.len());
                }
                None => {
                    let _ = write!(s, "  vs {r}: -");
                }
            }
        }
        s.push('\n');
    }
    s
}

/// `s` as a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A number for JSON; JSON has no NaN or infinity, so those and a missing figure are null.
pub fn json_num(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.6}"),
        _ => "null".into(),
    }
}

/// Serialises the whole run, with the C suite's object (already JSON) when it ran;
/// hand-formatted to keep the crate dependency-free.
pub fn to_json(
    machine: &Machine,
    rounds: usize,
    quick: bool,
    note: &str,
    all: &[Outcome],
    mem: &[MemOutcome],
    c_suite: Option<&str>,
) -> String {
    let mut s = String::from("{\n");
    let _ = writeln!(
        s,
        "  \"machine\": {{\"nproc\": {}, \"cpu_model\": {}, \"kernel\": {}}},",
        machine.nproc,
        json_str(&machine.cpu_model),
        json_str(&machine.kernel)
    );
    let _ = writeln!(s, "  \"rounds\": {rounds},");
    let _ = writeln!(s, "  \"quick\": {quick},");
    let _ = writeln!(s, "  \"note\": {},", json_str(note));
    s.push_str("  \"results\": [\n");
    for (i, o) in all.iter().enumerate() {
        let samples: Vec<String> = o.mops.iter().map(|m| json_num(Some(*m))).collect();
        let rtt: Vec<String> = o.rtt_ns.iter().map(|m| json_num(Some(*m))).collect();
        let _ = write!(
            s,
            "    {{\"workload\": {}, \"allocator\": {}, \"ops_per_run\": {}, \"mops_median\": {}, \
             \"spread\": {}, \"samples_mops\": [{}], \"samples_rtt_ns\": [{}]",
            json_str(o.workload),
            json_str(o.allocator),
            o.ops,
            json_num(o.median()),
            json_num(o.spread()),
            samples.join(", "),
            rtt.join(", ")
        );
        for r in REFERENCES {
            let _ = write!(s, ", \"ratio_vs_{r}\": {}", json_num(ratio(all, o, r)));
        }
        let err = o.error.as_deref().map_or("null".into(), json_str);
        let _ = write!(s, ", \"error\": {err}}}");
        s.push_str(if i + 1 == all.len() { "\n" } else { ",\n" });
    }
    s.push_str("  ],\n  \"memory\": [\n");
    for (i, m) in mem.iter().enumerate() {
        let _ = write!(
            s,
            "    {{\"workload\": {}, \"allocator\": {}",
            json_str(m.workload),
            json_str(m.allocator)
        );
        match &m.rss {
            Ok(r) => {
                let _ = write!(
                    s,
                    ", \"base_kib\": {}, \"peak_kib\": {}, \"final_kib\": {}, \"error\": null}}",
                    r.base_kib, r.peak_kib, r.final_kib
                );
            }
            Err(e) => {
                let _ = write!(s, ", \"error\": {}}}", json_str(e));
            }
        }
        s.push_str(if i + 1 == mem.len() { "\n" } else { ",\n" });
    }
    s.push_str("  ]");
    if let Some(c) = c_suite {
        let _ = write!(s, ",\n  \"c_suite\": {c}");
    }
    s.push_str("\n}\n");
    s
}

/// What the markdown report is about, beyond the results themselves.
pub struct RunInfo<'a> {
    /// Timed rounds per allocator and workload.
    pub rounds: usize,
    /// Operation-count multiplier in force.
    pub scale: f64,
    /// The caveat printed with every table.
    pub note: &'a str,
    /// Workloads in report order.
    pub workloads: &'a [&'a str],
    /// Allocators in report order.
    pub allocs: &'a [&'a str],
    /// File name of the chart beside the markdown, if one was written.
    pub chart: Option<&'a str>,
}

/// A figure with `digits` decimals, or a dash when there is none.
pub fn md_cell(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// The top of the markdown page: what produced it (`suites` names the suites that ran) and the
/// machine.
pub fn markdown_head(m: &Machine, quick: bool, suites: &str) -> String {
    let mut s = String::from("# hakmem-bench results\n\n");
    let _ = writeln!(
        s,
        "Produced by `hakmem-bench`{} ({suites}).\n",
        if quick { " --quick" } else { "" },
    );
    s.push_str("## Machine\n\n| fact | value |\n|---|---|\n");
    let _ = writeln!(s, "| CPU | {} |", m.cpu_model);
    let _ = writeln!(s, "| CPUs available | {} |", m.nproc);
    let _ = writeln!(s, "| memory | {:.1} GiB |", m.mem_gib);
    let _ = writeln!(s, "| kernel | {} |", m.kernel);
    let _ = writeln!(s, "| system allocator | {} |", m.libc);
    s.push('\n');
    s
}

/// The Rust suite's section of the markdown page: throughput, hakmem against each, memory.
pub fn markdown(info: &RunInfo, all: &[Outcome], mem: &[MemOutcome]) -> String {
    let mut s = String::from("## Rust suite: `GlobalAlloc`, every allocator in one process\n\n");
    let _ = writeln!(
        s,
        "{} timed rounds per cell, operation counts x{}; allocators: {}.\n\n{}\n",
        info.rounds,
        info.scale,
        info.allocs.join(", "),
        info.note
    );
    if let Some(chart) = info.chart {
        let _ = writeln!(s, "![throughput relative to system]({chart})\n");
    }

    // The ratio in each cell is to mimalloc when it ran (the strongest common peer), else to
    // system, so one table answers "how far from the best-known allocator".
    let reference = if info.allocs.contains(&"mimalloc") {
        "mimalloc"
    } else {
        "system"
    };
    s.push_str("### Throughput\n\n");
    let _ = writeln!(
        s,
        "Million operations per second (median), and in parentheses the ratio to {reference} \
         (>1 = faster).\n"
    );
    md_header(&mut s, "workload", info.allocs);
    let far = placement::far_names(probes(all));
    for w in info.workloads {
        let _ = write!(s, "| {w}{} |", placement::mark(&far, w));
        for a in info.allocs {
            let row = all.iter().find(|o| o.workload == *w && o.allocator == *a);
            let cell = match row {
                Some(o) => match (o.median(), &o.error) {
                    (Some(v), _) => with_ratio(v, ratio(all, o, reference), 1),
                    (None, Some(_)) => "FAILED".into(),
                    (None, None) => "–".into(),
                },
                None => "–".into(),
            };
            let _ = write!(s, " {cell} |");
        }
        s.push('\n');
    }
    let _ = write!(s, "| geometric mean vs {reference} |");
    for a in info.allocs {
        let g = geomean(
            all.iter()
                .filter(|o| o.allocator == *a)
                .filter_map(|o| ratio(all, o, reference)),
        );
        let _ = write!(s, " {}x |", md_cell(g, 2));
    }
    s.push_str("\n\n");
    let _ = writeln!(s, "{}\n", placement::note(probes(all), "workload"));

    // The question the project asks of every run: where does hakmem trail which peer.
    let peers: Vec<&str> = info
        .allocs
        .iter()
        .copied()
        .filter(|a| *a != "hakmem")
        .collect();
    if info.allocs.contains(&"hakmem") && !peers.is_empty() {
        s.push_str("#### hakmem relative to each allocator\n\n");
        s.push_str("hakmem's throughput over the other's (>1 = hakmem faster).\n\n");
        md_header(&mut s, "workload", &peers);
        for w in info.workloads {
            let _ = write!(s, "| {w} |");
            let hak = all
                .iter()
                .find(|o| o.workload == *w && o.allocator == "hakmem");
            for p in &peers {
                let _ = write!(s, " {}x |", md_cell(hak.and_then(|h| ratio(all, h, p)), 2));
            }
            s.push('\n');
        }
        s.push('\n');
    }

    if !mem.is_empty() {
        let mref = if info.allocs.contains(&"mimalloc") {
            "mimalloc"
        } else {
            "system"
        };
        s.push_str("### Memory\n\n");
        let base = mem
            .iter()
            .filter_map(|m| m.rss.as_ref().ok().map(|r| r.base_kib))
            .min();
        let _ = writeln!(
            s,
            "Each cell is the median (by peak) of three separate processes that each ran the \
             workload once (the same operation count as one timed round). Peak is VmHWM; final is VmRSS after the workload freed \
             every block and its threads exited. Both include the process's baseline of about \
             {} MiB before the workload. In parentheses: the ratio to {mref} (<1 = less memory).\n",
            md_cell(base.map(memory::mib), 1)
        );
        for (title, pick) in [
            ("Peak RSS (MiB)", memory::peak as fn(&memory::Rss) -> u64),
            ("Final RSS (MiB)", memory::fin),
        ] {
            let _ = writeln!(s, "#### {title}\n");
            md_header(&mut s, "workload", info.allocs);
            for w in info.workloads {
                let _ = write!(s, "| {w} |");
                for a in info.allocs {
                    let cell = match mem.iter().find(|o| o.workload == *w && o.allocator == *a) {
                        Some(o) => match &o.rss {
                            Ok(r) => with_ratio(
                                memory::mib(pick(r)),
                                memory::ratio(mem, o, mref, pick),
                                1,
                            ),
                            Err(_) => "FAILED".into(),
                        },
                        None => "–".into(),
                    };
                    let _ = write!(s, " {cell} |");
                }
                s.push('\n');
            }
            s.push('\n');
        }
    }
    s
}

/// A figure with `digits` decimals and its ratio in parentheses, or alone when there is nothing
/// to compare with.
pub fn with_ratio(v: f64, r: Option<f64>, digits: usize) -> String {
    match r {
        Some(r) => format!("{v:.digits$} ({r:.2}x)"),
        None => format!("{v:.digits$}"),
    }
}

/// A markdown table header: a first column `first`, then one right-aligned column per name.
pub fn md_header(s: &mut String, first: &str, allocs: &[&str]) {
    let _ = write!(s, "| {first} |");
    for a in allocs {
        let _ = write!(s, " {a} |");
    }
    s.push_str("\n|---|");
    for _ in allocs {
        s.push_str("---:|");
    }
    s.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(alloc: &'static str, mops: &[f64]) -> Outcome {
        Outcome {
            workload: "w",
            allocator: alloc,
            ops: 1,
            mops: mops.to_vec(),
            rtt_ns: vec![130.0],
            error: None,
        }
    }

    #[test]
    fn median_odd_and_even() {
        assert_eq!(outcome("a", &[3.0, 1.0, 2.0]).median(), Some(2.0));
        assert_eq!(outcome("a", &[4.0, 1.0, 2.0, 3.0]).median(), Some(2.5));
    }

    #[test]
    fn ratio_against_reference() {
        let all = vec![outcome("system", &[2.0]), outcome("x", &[3.0])];
        assert_eq!(ratio(&all, &all[1], "system"), Some(1.5));
        assert_eq!(ratio(&all, &all[1], "mimalloc"), None);
    }

    #[test]
    fn markdown_has_every_table() {
        let all = vec![outcome("system", &[2.0]), outcome("hakmem", &[3.0])];
        let mem = vec![MemOutcome {
            workload: "w",
            allocator: "hakmem",
            rss: Ok(memory::Rss {
                base_kib: 1024,
                peak_kib: 4096,
                final_kib: 2048,
            }),
        }];
        let info = RunInfo {
            rounds: 1,
            scale: 1.0,
            note: "n",
            workloads: &["w"],
            allocs: &["system", "hakmem"],
            chart: None,
        };
        let md = markdown(&info, &all, &mem);
        assert!(md.contains("| w | 2.0 (1.00x) | 3.0 (1.50x) |"), "{md}");
        assert!(md.contains("### hakmem relative to each allocator"));
        assert!(md.contains("| w | – | 4.0 |"), "{md}");
    }

    #[test]
    fn markdown_marks_a_workload_measured_far_apart() {
        let mut far = outcome("hakmem", &[1.0]);
        far.workload = "v";
        far.rtt_ns = vec![600.0, 650.0];
        let all = vec![outcome("system", &[2.0]), outcome("hakmem", &[3.0]), far];
        let info = RunInfo {
            rounds: 1,
            scale: 1.0,
            note: "n",
            workloads: &["w", "v"],
            allocs: &["system", "hakmem"],
            chart: None,
        };
        let md = markdown(&info, &all, &[]);
        assert!(md.contains("| w | 2.0"), "{md}");
        assert!(md.contains("| v † |"), "{md}");
        assert!(md.contains("far apart (a row's median probe above 2.5x the fastest): v (625 ns)"), "{md}");
        assert!(to_json(&Machine::detect(), 1, false, "n", &all, &[], None).contains("\"samples_rtt_ns\": [600.000000, 650.000000]"));
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(json_num(Some(f64::NAN)), "null");
    }
}
