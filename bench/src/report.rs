//! Turning samples into the printed table and the JSON file.

use std::fmt::Write as _;

use crate::allocators::REFERENCES;

/// Facts about the machine printed in the header and stored in JSON.
pub struct Machine {
    /// CPUs this process may run on.
    pub nproc: usize,
    /// "model name" from /proc/cpuinfo, or "unknown".
    pub cpu_model: String,
    /// Kernel release, or "unknown".
    pub kernel: String,
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
        Machine {
            nproc,
            cpu_model,
            kernel,
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
    /// Why the runs stopped early, if they did (a panic message).
    pub error: Option<String>,
}

impl Outcome {
    /// Median of the rounds (mean of the middle two for an even count), if any completed.
    pub fn median(&self) -> Option<f64> {
        if self.mops.is_empty() || self.error.is_some() {
            return None;
        }
        let mut v = self.mops.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }

    /// (max - min) / median, a rough noise indicator for this row.
    pub fn spread(&self) -> Option<f64> {
        let med = self.median()?;
        let max = self.mops.iter().copied().fold(f64::MIN, f64::max);
        let min = self.mops.iter().copied().fold(f64::MAX, f64::min);
        Some((max - min) / med)
    }
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
        "{:<14} {:<10} {:>9} {:>7}",
        "workload", "allocator", "Mops/s", "spread"
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
                " {:>9.2} {:>6.1}%",
                m,
                row.spread().unwrap_or(0.0) * 100.0
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
            let logs: Vec<f64> = all
                .iter()
                .filter(|o| o.allocator == *a)
                .filter_map(|o| ratio(all, o, r))
                .map(f64::ln)
                .collect();
            if logs.is_empty() {
                let _ = write!(s, "  vs {r}: -");
            } else {
                let g = (logs.iter().sum::<f64>() / logs.len() as f64).exp();
                let _ = write!(s, "  vs {r}: {g:.2}x over {} workloads", logs.len());
            }
        }
        s.push('\n');
    }
    s
}

fn json_str(s: &str) -> String {
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

// JSON has no NaN/inf; a missing figure is null.
fn json_num(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.6}"),
        _ => "null".into(),
    }
}

/// Serialises the whole run; hand-formatted to keep the crate dependency-free.
pub fn to_json(
    machine: &Machine,
    rounds: usize,
    quick: bool,
    note: &str,
    all: &[Outcome],
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
        let _ = write!(
            s,
            "    {{\"workload\": {}, \"allocator\": {}, \"ops_per_run\": {}, \"mops_median\": {}, \
             \"spread\": {}, \"samples_mops\": [{}]",
            json_str(o.workload),
            json_str(o.allocator),
            o.ops,
            json_num(o.median()),
            json_num(o.spread()),
            samples.join(", ")
        );
        for r in REFERENCES {
            let _ = write!(s, ", \"ratio_vs_{r}\": {}", json_num(ratio(all, o, r)));
        }
        let err = o.error.as_deref().map_or("null".into(), json_str);
        let _ = write!(s, ", \"error\": {err}}}");
        s.push_str(if i + 1 == all.len() { "\n" } else { ",\n" });
    }
    s.push_str("  ]\n}\n");
    s
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
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(json_num(Some(f64::NAN)), "null");
    }
}
