//! Misuse mode and the checked policy's reports: a program commits exactly one client misuse, and
//! the checked heap must report exactly that (never a silent pass, never a wrong kind or address,
//! never a report before it).

use crate::interp::{with_heap, Expected, Failure, Interp, Observed, ReusedHeap, RunOpts, Sweep};
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
        let r = drive(&mut it, prog, opts.sweep);
        if r.is_err() {
            // The heap may be corrupt: dropping the caches could crash before the failure prints.
            std::mem::forget(it);
        }
        r
    })
}

/// Makes abandoned slabs of the misused block's class retire, so that their free slots' poison
/// is checked.
///
/// A block freed into a slab whose cache has ended goes onto that abandoned slab's remote queue.
/// Dropping every cache does not retire such a slab, and dropping a checked heap checks no
/// poison, so a write after free there would never be reported (the fuzzer found this at once).
/// A fresh cache allocating the block's class adopts one abandoned slab of the class (and may
/// hand out the damaged slot, which is reported); dropping the cache then retires the emptied
/// slab, which checks the poison. Repeated while that adopts slabs and nothing is reported.
fn retire_abandoned(it: &mut Interp<'_, Checked>, size: usize, align: usize) {
    let heap = it.heap();
    for _ in 0..64 {
        let before = heap.stats().abandoned_slabs;
        if before == 0 {
            break;
        }
        let mut c = heap.cache();
        let p = c.alloc(size, align);
        if !p.is_null() {
            // SAFETY: a block this cache just allocated.
            unsafe { c.free(p) };
        }
        drop(c);
        it.poll();
        if !it.reports.is_empty() || heap.stats().abandoned_slabs >= before {
            break;
        }
    }
}

fn drive(it: &mut Interp<'_, Checked>, prog: &Program, sweep: Sweep) -> Result<Option<Report>, Failure> {
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
    let Some(m) = it.misuse else {
        return match it.reports.first() {
            Some(r) => Err(Failure::at(None, format!("report, but the misuse was not committed: {r}"))),
            None => Ok(None),
        };
    };
    if m.kind == Expected::WriteAfterFree && it.reports.is_empty() {
        retire_abandoned(it, m.size, m.align);
    }
    let kind = report_kind(m.kind);
    if let Some(bug) = it.reports.iter().find(|r| !r.kind.is_client_error()) {
        return Err(Failure::at(None, format!("allocator invariant broken after the misuse: {bug}")));
    }
    let Some(first) = it.reports.first() else {
        return Err(Failure::at(None, format!("misuse not reported: expected {kind:?} of {:#x}", m.addr)));
    };
    if first.kind != kind || first.addr != m.addr {
        return Err(Failure::at(None, format!("wrong report: expected {kind:?} of {:#x}, got: {first}", m.addr)));
    }
    Ok(Some(first.clone()))
}
