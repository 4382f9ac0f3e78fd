//! Misuse mode and the checked policy's reports: a program commits exactly one client misuse, and
//! the checked heap must report exactly that (never a silent pass, never a wrong kind or address,
//! never a report before it).

use crate::interp::{block_ids, final_sweep, step_info, with_heap, Expected, Failure, Interp, Misuse, Observed, ReusedHeap, RunOpts};
use crate::program::Program;
use crate::sched::{self, Flow};
use crate::trace::Event;
use hakmem::{Checked, Heap, Report, ReportKind};
use std::cell::RefCell;

impl Observed for Checked {
    type Report = Report;

    fn capture(heap: &Heap<Self>) {
        heap.capture_reports();
        // Every free's poison whole: a sampled check would miss a write after free the
        // program makes, depending on operation numbers.
        heap.set_whole_poison_every(1);
    }

    fn take(heap: &Heap<Self>, into: &mut Vec<Report>) {
        into.extend(heap.take_reports());
    }

    fn event(r: &Report, step: Option<usize>) -> Event {
        let values = if secret_values(r) { String::new() } else { format!(" {:#x}/{:#x}", r.expected, r.found) };
        Event::Report {
            step,
            text: format!(
                "{:?} class {:?} requested {:?} offset {:?} alloc {:?} free {:?} by {} [{}]{values}",
                r.kind, r.class, r.requested, r.offset, r.alloc, r.free, r.thread, r.detail
            ),
            addrs: [Some(r.addr), r.region].into_iter().flatten().collect(),
        }
    }

    fn reused() -> &'static ReusedHeap<Self> {
        thread_local!(static HEAP: RefCell<Option<Box<Heap<Checked>>>> = const { RefCell::new(None) });
        &HEAP
    }
}

/// Whether the values a report expected and found are header bytes, which depend on the heap's
/// secret (so differ from run to run).
fn secret_values(r: &Report) -> bool {
    matches!(r.kind, ReportKind::HeaderCorrupt | ReportKind::Underflow)
}

/// `r` without the values that depend on the heap's secret, for traces that compare runs.
pub fn without_secret(r: Report) -> Report {
    if secret_values(&r) {
        Report { expected: 0, found: 0, ..r }
    } else {
        r
    }
}

/// The checked mode's name for what a misuse must cause.
pub fn report_kind(e: Expected) -> ReportKind {
    match e {
        Expected::DoubleFree => ReportKind::DoubleFree,
        Expected::ForeignPointer => ReportKind::ForeignPointer,
        Expected::InvalidFree => ReportKind::InvalidFree,
        Expected::WriteAfterFree => ReportKind::WriteAfterFree,
        Expected::Overflow => ReportKind::Overflow,
        Expected::Underflow => ReportKind::Underflow,
        Expected::HeaderCorrupt => ReportKind::HeaderCorrupt,
    }
}

/// Runs a misuse program deterministically on a checked heap and judges its reports. Steps run
/// until the first report after the misuse (a write after free shows only when its slot is handed
/// out again or its slab retires); then every live block is freed and every cache dropped, which
/// is where a write after free shows at the latest. Returns the matching report, or `None` when
/// the misuse could not be committed (a write after a free that sent its slab back to the pool)
/// and, as required then, nothing was reported.
pub fn run_misuse(prog: &Program, opts: RunOpts) -> Result<Option<Report>, Failure> {
    run_misuse_traced(prog, opts, false).0
}

/// As [`run_misuse`], traced if `trace`.
pub fn run_misuse_traced(prog: &Program, opts: RunOpts, trace: bool) -> (Result<Option<Report>, Failure>, Vec<Event>) {
    let mut events = Vec::new();
    let r = with_heap::<Checked, Option<Report>>(opts.heap, prog.knobs, |heap| {
        let mut it = Interp::new(heap, prog.threads, prog.knobs, opts.sweep, trace)?;
        let r = drive(&it, prog);
        events = it.take_trace();
        if let Err(f) = r {
            // The heap may be corrupt: dropping the caches could crash before the failure prints.
            std::mem::forget(it);
            return Err(f);
        }
        // A misuse may leave contents the model cannot vouch for; the checked heap judges now.
        it.finish(false).map_err(|v| Failure::at(None, v))?;
        it.poll(None);
        let (misuse, mut reports) = {
            let mut m = it.model();
            (m.misuse, std::mem::take(&mut m.reports))
        };
        drop(it);
        // A write after free into a slot never handed out again shows here at the latest.
        reports.extend(final_sweep(heap).0);
        judge(misuse, &reports)
    });
    (r, events)
}

/// Runs the steps until the misuse is reported (or the program ends).
fn drive(it: &Interp<'_, Checked>, prog: &Program) -> Result<(), Failure> {
    let ids = block_ids(prog);
    let exec = |i: usize| {
        let r = it.step(i, &prog.steps[i], ids[i]);
        it.poll(Some(i));
        let m = it.model();
        let before = match m.misuse {
            None => m.reports.first(),
            Some(mu) => m.reports.first().filter(|_| mu.reports_before > 0),
        };
        if let Some(rep) = before {
            return Err(Failure::at(Some(i), format!("report before the misuse: {rep}")));
        }
        // Reported: stop here. The op that ran into the report was skipped, so the model's view
        // of it (a null from an allocation, say) is no failure.
        if m.misuse.is_some() && !m.reports.is_empty() {
            return Ok(Flow::Stop);
        }
        drop(m);
        r.map_err(|v| Failure::at(Some(i), v))?;
        Ok(Flow::Continue)
    };
    sched::run(&step_info(prog), prog.threads, &exec, &mut |_| Ok(()))
}

/// The verdict on a misuse program's reports: exactly the misuse, reported first.
fn judge(misuse: Option<Misuse>, reports: &[Report]) -> Result<Option<Report>, Failure> {
    let Some(m) = misuse else {
        return match reports.first() {
            Some(r) => Err(Failure::at(None, format!("report, but the misuse was not committed: {r}"))),
            None => Ok(None),
        };
    };
    let kind = report_kind(m.kind);
    if let Some(bug) = reports.iter().find(|r| !r.kind.is_client_error()) {
        return Err(Failure::at(None, format!("allocator invariant broken after the misuse: {bug}")));
    }
    let Some(first) = reports.first() else {
        return Err(Failure::at(None, format!("misuse not reported: expected {kind:?} of {:#x}", m.addr)));
    };
    if first.kind != kind || first.addr != m.addr {
        return Err(Failure::at(None, format!("wrong report: expected {kind:?} of {:#x}, got: {first}", m.addr)));
    }
    // The message a user reads must name the block too (the report's Display, not only its fields).
    let text = first.to_string();
    if !text.contains(&format!(" of {:#x}", m.addr)) {
        return Err(Failure::at(None, format!("the report's message does not name {:#x}: {text}", m.addr)));
    }
    Ok(Some(first.clone()))
}
