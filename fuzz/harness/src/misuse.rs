//! Misuse mode and the checked policy's reports: a program commits exactly one client misuse, and
//! the checked heap must report exactly that (never a silent pass, never a wrong kind or address,
//! never a report before it).

use crate::interp::{final_sweep, with_heap, Expected, Failure, Interp, Misuse, Observed, ReusedHeap, RunOpts, Sweep};
use std::cell::RefCell;
use crate::program::{BlockId, Program};
use hakmem::{Checked, Heap, Report, ReportKind};

impl Observed for Checked {
    type Report = Report;

    fn capture(heap: &Heap<Self>) {
        heap.capture_reports();
    }

    fn take(heap: &Heap<Self>, into: &mut Vec<Report>) {
        into.extend(heap.take_reports());
    }

    fn reused() -> &'static ReusedHeap<Self> {
        thread_local!(static HEAP: RefCell<Option<Box<Heap<Checked>>>> = const { RefCell::new(None) });
        &HEAP
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
    }
}

/// Runs a misuse program deterministically on a checked heap and judges its reports. Steps run
/// until the first report after the misuse (a write after free shows only when its slot is handed
/// out again or its slab retires); then every live block is freed and every cache dropped, which
/// is where a write after free shows at the latest. Returns the matching report, or `None` when
/// the misuse could not be committed (a write after a free that sent its slab back to the pool)
/// and, as required then, nothing was reported.
pub fn run_misuse(prog: &Program, opts: RunOpts) -> Result<Option<Report>, Failure> {
    with_heap::<Checked, Option<Report>>(opts.heap, |heap| {
        let mut it = Interp::new(heap, prog.threads);
        if let Err(f) = drive(&mut it, prog, opts.sweep) {
            // The heap may be corrupt: dropping the caches could crash before the failure prints.
            std::mem::forget(it);
            return Err(f);
        }
        let (misuse, mut reports) = (it.misuse, std::mem::take(&mut it.reports));
        drop(it);
        // A write after free into a slot never handed out again shows here at the latest.
        reports.extend(final_sweep(heap));
        judge(misuse, &reports)
    })
}

/// Runs the steps until the misuse is reported (or the program ends), then frees every live
/// block and drops every cache.
fn drive(it: &mut Interp<'_, Checked>, prog: &Program, sweep: Sweep) -> Result<(), Failure> {
    let mut next_id: BlockId = 0;
    for (i, s) in prog.steps.iter().enumerate() {
        let r = it.step(s, next_id, sweep);
        next_id += s.op.creates_block() as BlockId;
        it.poll();
        let before = match it.misuse {
            None => it.reports.first(),
            Some(m) => it.reports.first().filter(|_| m.reports_before > 0),
        };
        if let Some(rep) = before {
            return Err(Failure::at(Some(i), format!("report before the misuse: {rep}")));
        }
        // Reported: stop here. The op that ran into the report was skipped, so the model's view
        // of it (a null from an allocation, say) is no failure.
        if it.misuse.is_some() && !it.reports.is_empty() {
            break;
        }
        r.map_err(|v| Failure::at(Some(i), v))?;
    }
    // A misuse may leave contents the model cannot vouch for; the checked heap judges now.
    it.finish(false).map_err(|v| Failure::at(None, v))?;
    it.poll();
    Ok(())
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
    Ok(Some(first.clone()))
}
