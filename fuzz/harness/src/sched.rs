//! THE SCHEDULER of deterministic mode: runs a program's steps one logical thread at a time, and
//! lets a step start in the middle of another's allocator call, at a preemption point the
//! program names, so that a race inside one operation (a remote push between an owner's load
//! and its swap) is an ordinary input that replays and minimizes.
//!
//! # Points and schedules
//! hakmem reports every atomic operation, free-list link access and lock event to the hooks of
//! `hakmem::sync` (`sched` feature). Each atomic operation is a preemption point. Steps start in
//! program order; a step with `at: Some(k)` starts at the k-th point reached after the step
//! before it started, suspending the step that reached it (if the two share no cache and no
//! block; else as soon as they do not); the suspended step resumes when the interrupting one
//! ends, pauses or waits. A step with `pause: Some(m)` lets the steps it interrupted run on at
//! its own m-th point. A step that must wait for a lock another (suspended) step holds lets the
//! holder run: a cycle of such waits is a deadlock, reported with who holds and waits for what.
//! This is bounded-preemption scheduling in the manner of CHESS and shuttle's PCT, with the
//! preemptions chosen by the input rather than at random.
//!
//! Only one logical thread ever runs. A step that starts inside another runs on an OS thread
//! of its own (a worker kept across programs), the others being parked on a condition
//! variable; without schedules every step runs on the calling thread and nothing switches.
//!
//! # Happens-before
//! Every logical thread has a vector clock. Release stores and read-modify-writes publish the
//! writer's clock at their location; acquiring loads join it; handing a block to another thread
//! (a remote free, a `give`) joins the sender's clock into the receiver's, as the client's own
//! synchronization would. A free-list link (and a lock's protected state, which its acquirer
//! touches) read or written by a thread that has not synchronized with its last writer is a
//! data race, reported with both threads and steps: a missing Release on a push or a missing
//! Acquire on a drain is a deterministic finding, whatever the interleaving, with no need for
//! the hardware to reorder anything (x86 would hide it) nor for TSan. A lock taken while
//! another is held records their order; the opposite order anywhere in the same program is a
//! lock-order inversion, reported even if no deadlock happened.

use crate::interp::Failure;
use crate::program::{BlockId, MAX_THREADS};
use hakmem::sync::{Access, Hooks, LockClass, LockEvent, Ordering};
use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// What the scheduler needs to know of a step.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    /// The logical thread whose cache the step uses (`None`: no cache), which is also the one
    /// its happens-before is tracked for.
    pub cache: Option<u8>,
    /// The block the step acts on, if any.
    pub block: Option<BlockId>,
    /// Start at this point of the steps before it (see the module docs).
    pub at: Option<u16>,
    /// Pause at this point of its own.
    pub pause: Option<u16>,
}

/// What a step tells the scheduler when it ends well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the program.
    Continue,
    /// Start no further step (the misuse interpreter stops at the misuse's report).
    Stop,
}

/// A vector clock, one entry per logical thread.
type Clock = [u32; MAX_THREADS as usize];

fn join(a: &mut Clock, b: &Clock) {
    for (x, y) in a.iter_mut().zip(b) {
        *x = (*x).max(*y);
    }
}

fn acquires(o: Ordering) -> bool {
    matches!(o, Ordering::Acquire | Ordering::AcqRel | Ordering::SeqCst)
}

fn releases(o: Ordering) -> bool {
    matches!(o, Ordering::Release | Ordering::AcqRel | Ordering::SeqCst)
}

/// A hasher for addresses: one multiply (std's SipHash was most of the hooks' cost).
#[derive(Default)]
struct AddrHasher(u64);
impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
}
type AddrMap<V> = HashMap<usize, V, BuildHasherDefault<AddrHasher>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Running,
    /// Interrupted by a step that started inside it, or let go by a lock it waited for.
    Ready,
    /// Paused at its own `pause` point.
    Paused,
    /// Waiting for the lock at this address.
    Blocked(usize),
}

/// A step that has started and not ended.
struct Active {
    step: usize,
    ctx: usize,
    /// Its logical thread (for clocks and messages).
    thread: Option<u8>,
    points: u32,
    status: Status,
    /// Locks it holds, in the order taken.
    held: Vec<(usize, LockClass)>,
}

/// The last write to a plain location: by which thread, at which of its clock's ticks, in
/// which step.
#[derive(Clone, Copy)]
struct Write {
    thread: u8,
    tick: u32,
    step: usize,
}

struct State {
    info: Vec<StepInfo>,
    /// The context allowed to run.
    turn: usize,
    /// Everyone unwinds: the run failed while steps were suspended.
    abort: bool,
    failure: Option<Failure>,
    stop: bool,
    /// The next step to start.
    next: usize,
    /// Points reached since the last step started.
    since: u32,
    active: Vec<Active>,
    /// Worker contexts are numbered from 1.
    next_ctx: usize,
    /// Worker jobs not yet ended.
    jobs: usize,
    track: bool,
    clocks: [Clock; MAX_THREADS as usize],
    /// Release clocks of atomic locations.
    released: AddrMap<Clock>,
    plain: AddrMap<Write>,
    /// Lock orders seen: (held class, taken class) and the step that did it.
    order: Vec<(LockClass, LockClass, usize)>,
    /// The step function, for workers.
    exec: ExecPtr,
    /// Workers this run started steps on, idle again once it ends.
    workers: Vec<Sender<Task>>,
}

/// One run's scheduler, shared by its contexts.
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The unwinding payload that ends a context's step when the run is aborted.
struct AbortRun;

thread_local! {
    /// The scheduler of the run this thread is a context of, and its context number.
    static CURRENT: Cell<(*const Shared, usize)> = const { Cell::new((core::ptr::null(), 0)) };
}

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The run this thread is a context of, if it is running a step now.
fn current() -> Option<(&'static Shared, usize)> {
    if std::thread::panicking() {
        return None;
    }
    let (p, ctx) = CURRENT.with(Cell::get);
    // SAFETY: a context's pointer is set while its run is live (the run waits for every
    // context to leave before its Shared goes).
    (!p.is_null()).then(|| (unsafe { &*p }, ctx))
}

impl State {
    fn me(&mut self, ctx: usize) -> Option<&mut Active> {
        self.active.iter_mut().find(|a| a.ctx == ctx && a.status == Status::Running)
    }

    /// Whether step `j` may start while the active steps run.
    fn independent(&self, j: usize) -> bool {
        let i = self.info[j];
        self.active.iter().all(|a| {
            let o = self.info[a.step];
            (i.cache.is_none() || i.cache != o.cache) && (i.block.is_none() || i.block != o.block)
        })
    }

    /// The active step to run next: the latest-started ready one, else the latest paused one.
    fn pick(&self) -> Option<usize> {
        let ready = self.active.iter().rposition(|a| a.status == Status::Ready);
        ready.or_else(|| self.active.iter().rposition(|a| a.status == Status::Paused))
    }

    /// Hands the turn to active step `k`.
    fn resume(&mut self, k: usize) {
        self.active[k].status = Status::Running;
        self.turn = self.active[k].ctx;
    }

    fn fail(&mut self, f: Failure) {
        if self.failure.is_none() {
            self.failure = Some(f);
        }
    }

    /// Fails the run at once, waking every context to unwind.
    fn abort(&mut self, f: Failure) {
        self.fail(f);
        self.abort = true;
    }

    /// Who holds the lock at `addr`.
    fn holder(&self, addr: usize) -> Option<usize> {
        self.active.iter().position(|a| a.held.iter().any(|&(l, _)| l == addr))
    }

    fn name(&self, k: usize) -> String {
        let a = &self.active[k];
        match a.thread {
            Some(t) => format!("step {} (t{t})", a.step),
            None => format!("step {}", a.step),
        }
    }
}

/// Parks context `ctx` until it has the turn; unwinds it if the run is aborted.
fn wait_turn<'a>(s: &'a Shared, mut st: MutexGuard<'a, State>, ctx: usize) -> MutexGuard<'a, State> {
    s.wake.notify_all();
    while st.turn != ctx && !st.abort {
        st = s.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
    }
    if st.abort {
        drop(st);
        resume_unwind(Box::new(AbortRun));
    }
    st
}

/// The hooks hakmem reports to (installed once per process).
static HOOKS: Hooks = Hooks { atomic: on_atomic, plain: on_plain, lock: on_lock };

fn on_atomic(addr: usize, access: Access) {
    let Some((s, ctx)) = current() else { return };
    let mut st = lock(s);
    let Some(me) = st.me(ctx) else { return };
    me.points += 1;
    let (step, thread, points) = (me.step, me.thread, me.points);
    if st.track {
        if let Some(t) = thread {
            track_atomic(&mut st, t as usize, addr, access);
        }
    }
    st.since += 1;
    let n = st.info.len();
    if st.info[step].pause == Some(points as u16) && st.pick().is_some() {
        let k = st.active.iter().position(|a| a.ctx == ctx).expect("me");
        st.active[k].status = Status::Paused;
        let next = st.pick().expect("another step to run");
        st.resume(next);
        let st = wait_turn(s, st, ctx);
        drop(st);
        return;
    }
    if !st.stop && st.next < n && st.info[st.next].at == Some(st.since as u16) && st.independent(st.next) {
        let k = st.active.iter().position(|a| a.ctx == ctx).expect("me");
        st.active[k].status = Status::Ready;
        start_on_worker(s, &mut st);
        let st = wait_turn(s, st, ctx);
        drop(st);
    }
}

fn track_atomic(st: &mut State, t: usize, addr: usize, access: Access) {
    let (read, write, rmw) = match access {
        Access::Load(o) => (Some(o), None, false),
        Access::Store(o) => (None, Some(o), false),
        Access::Rmw(o) => (Some(o), Some(o), true),
    };
    if read.is_some_and(acquires) {
        if let Some(c) = st.released.get(&addr).copied() {
            join(&mut st.clocks[t], &c);
        }
    }
    if let Some(o) = write {
        if releases(o) {
            let mine = st.clocks[t];
            let c = st.released.entry(addr).or_insert([0; MAX_THREADS as usize]);
            if rmw {
                join(c, &mine);
            } else {
                *c = mine;
            }
            st.clocks[t][t] += 1;
        } else if !rmw {
            // A relaxed store ends the release sequence; a relaxed read-modify-write continues it.
            st.released.remove(&addr);
        }
    }
}

/// A plain access by thread `t` in `step`: a race unless `t` has synchronized with the last
/// writer. `what` names the location in the report.
fn track_plain(st: &mut State, t: u8, step: usize, addr: usize, write: bool, what: &dyn Fn() -> String) {
    if let Some(w) = st.plain.get(&addr).copied() {
        if w.thread != t && st.clocks[t as usize][w.thread as usize] < w.tick {
            let f = Failure::at(
                Some(step),
                format!(
                    "data race: {} was written by t{} in step {} and is {} by t{t} in step {step} with no happens-before \
                     between them (a Release or Acquire missing?)",
                    what(),
                    w.thread,
                    w.step,
                    if write { "written" } else { "read" }
                ),
            );
            st.fail(f);
        }
    }
    if write {
        st.plain.insert(addr, Write { thread: t, tick: st.clocks[t as usize][t as usize], step });
    }
}

fn on_plain(addr: usize, write: bool) {
    let Some((s, ctx)) = current() else { return };
    let mut st = lock(s);
    if !st.track {
        return;
    }
    let Some(me) = st.me(ctx) else { return };
    let (step, Some(t)) = (me.step, me.thread) else { return };
    track_plain(&mut st, t, step, addr, write, &|| describe_link(addr));
}

/// A free-list link's place, for race reports.
fn describe_link(addr: usize) -> String {
    let region = addr & !(hakmem::layout::REGION_SIZE - 1);
    let slab = (addr - region) >> hakmem::layout::SLAB_SHIFT;
    format!("the free-list link of slot {addr:#x} (region {region:#x} slab {slab})")
}

fn on_lock(addr: usize, class: LockClass, event: LockEvent) {
    let Some((s, ctx)) = current() else { return };
    let mut st = lock(s);
    let Some(k) = st.active.iter().position(|a| a.ctx == ctx && a.status == Status::Running) else { return };
    match event {
        LockEvent::Wait => {
            // No known holder: the lock was taken by a step suspended between its CAS and its
            // `Acquired` report (any other step that can run may be it), or the weak CAS failed
            // spuriously (nothing else can run: just try again).
            let Some(h) = st.holder(addr) else {
                st.active[k].status = Status::Blocked(addr);
                match st.pick() {
                    Some(n) => {
                        st.resume(n);
                        drop(wait_turn(s, st, ctx));
                    }
                    None => st.active[k].status = Status::Running,
                }
                return;
            };
            if h == k {
                let f = Failure::at(Some(st.active[k].step), format!("deadlock: {} waits for {} it holds itself", st.name(k), class.name()));
                st.abort(f);
                drop(wait_turn(s, st, ctx));
                return;
            }
            st.active[k].status = Status::Blocked(addr);
            // The holder runs if it can; any other step that can run may, too.
            let next = if matches!(st.active[h].status, Status::Ready | Status::Paused) { Some(h) } else { st.pick() };
            match next {
                Some(n) => st.resume(n),
                None => {
                    let f = Failure::at(Some(st.active[k].step), deadlock(&st));
                    st.abort(f);
                }
            }
            drop(wait_turn(s, st, ctx));
        }
        LockEvent::Acquired => {
            let step = st.active[k].step;
            for &(_, before) in &st.active[k].held.clone() {
                if let Some(&(_, _, other)) = st.order.iter().find(|&&(a, b, _)| a == class && b == before) {
                    let f = Failure::at(
                        Some(step),
                        format!(
                            "lock order inversion: {} takes {} while holding {}; step {other} took them the other way round \
                             (two threads doing so at once deadlock)",
                            st.name(k),
                            class.name(),
                            before.name()
                        ),
                    );
                    st.fail(f);
                }
                if !st.order.iter().any(|&(a, b, _)| a == before && b == class) {
                    st.order.push((before, class, step));
                }
            }
            st.active[k].held.push((addr, class));
            if st.track {
                if let Some(t) = st.active[k].thread {
                    // Taking a lock touches what it protects: its last holder must have
                    // released it to us.
                    track_plain(&mut st, t, step, addr | 1, true, &|| format!("the state {} protects", class.name()));
                }
            }
        }
        LockEvent::Released => {
            if let Some(i) = st.active[k].held.iter().rposition(|&(l, _)| l == addr) {
                st.active[k].held.remove(i);
            }
            for a in st.active.iter_mut() {
                if a.status == Status::Blocked(addr) {
                    a.status = Status::Ready;
                }
            }
        }
    }
}

/// The message of a deadlock: every waiting step, what it waits for and who holds that.
fn deadlock(st: &State) -> String {
    let mut parts = Vec::new();
    for (k, a) in st.active.iter().enumerate() {
        if let Status::Blocked(l) = a.status {
            let class = st.active.iter().flat_map(|b| &b.held).find(|&&(x, _)| x == l).map_or(LockClass::Other, |&(_, c)| c);
            let holder = st.holder(l).map_or("nobody".to_owned(), |h| st.name(h));
            parts.push(format!("{} waits for {} held by {holder}", st.name(k), class.name()));
        }
    }
    format!("deadlock: {}", parts.join("; "))
}

/// The code every context runs for a step: a step function and the run's shared state.
type Exec<'a> = dyn Fn(usize) -> Result<Flow, Failure> + Sync + 'a;

/// A task for a worker thread.
type Task = Box<dyn FnOnce() + Send + 'static>;

/// Idle workers (one sender each), for the process they belong to (a forked child has none).
static WORKERS: Mutex<(u32, Vec<Sender<Task>>)> = Mutex::new((0, Vec::new()));

/// Starts the next step on a new worker context and gives it the turn.
fn start_on_worker(s: &Shared, st: &mut State) {
    let j = st.next;
    st.next += 1;
    st.since = 0;
    let ctx = st.next_ctx;
    st.next_ctx += 1;
    st.jobs += 1;
    st.active.push(Active { step: j, ctx, thread: st.info[j].cache, points: 0, status: Status::Running, held: Vec::new() });
    st.turn = ctx;
    let (shared, exec) = (SharedPtr(s as *const Shared), st.exec);
    let task: Task = Box::new(move || {
        let (shared, exec) = (shared, exec);
        // SAFETY: the run does not return before this job has ended (it waits for `jobs` to
        // reach zero), so its Shared and step function outlive the job.
        let (s, exec) = unsafe { (&*shared.0, &*exec.0) };
        run_context(s, ctx, j, exec);
        let mut st = lock(s);
        st.jobs -= 1;
        s.wake.notify_all();
    });
    let mut w = WORKERS.lock().unwrap_or_else(PoisonError::into_inner);
    if w.0 != std::process::id() {
        // A forked child has none of its parent's threads.
        std::mem::forget(std::mem::take(&mut w.1));
        w.0 = std::process::id();
    }
    let tx = w.1.pop().unwrap_or_else(|| {
        let (tx, rx) = channel::<Task>();
        std::thread::Builder::new()
            .name("hakmem-fuzz sched".into())
            .spawn(move || rx.into_iter().for_each(|t| t()))
            .expect("a scheduler worker");
        tx
    });
    drop(w);
    tx.send(task).unwrap_or_else(|_| std::process::abort());
    // Busy until the run ends; idle again then.
    st.workers.push(tx);
}

#[derive(Clone, Copy)]
struct SharedPtr(*const Shared);
// SAFETY: the pointer is only dereferenced while the run it belongs to is live.
unsafe impl Send for SharedPtr {}

#[derive(Clone, Copy)]
struct ExecPtr(*const Exec<'static>);
// SAFETY: as for SharedPtr; the step function is Sync.
unsafe impl Send for ExecPtr {}

/// Runs step `j` on context `ctx` (which has the turn), then ends it.
fn run_context(s: &Shared, ctx: usize, j: usize, exec: &Exec<'_>) {
    let prev = CURRENT.with(|c| c.replace((s as *const Shared, ctx)));
    let r = catch_unwind(AssertUnwindSafe(|| exec(j)));
    CURRENT.with(|c| c.set(prev));
    let mut st = lock(s);
    let r = match r {
        Ok(r) => r,
        Err(p) if p.is::<AbortRun>() => return,
        Err(p) => Err(Failure::at(Some(j), format!("panicked: {}", panic_text(&*p)))),
    };
    end_step(&mut st, ctx, r);
    s.wake.notify_all();
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "(no message)".into())
}

/// The step on `ctx` ended with `r`: who runs next.
fn end_step(st: &mut State, ctx: usize, r: Result<Flow, Failure>) {
    let k = st.active.iter().position(|a| a.ctx == ctx).expect("the ending step is active");
    let a = st.active.remove(k);
    match r {
        Err(f) => {
            st.fail(f);
        }
        Ok(Flow::Stop) => st.stop = true,
        Ok(Flow::Continue) => {}
    }
    if st.failure.is_some() {
        // Suspended steps are mid-call in the allocator: they unwind.
        if !st.active.is_empty() {
            st.abort = true;
        }
        st.turn = 0;
        return;
    }
    if !a.held.is_empty() {
        let f = Failure::at(Some(a.step), format!("step {} ended holding {}", a.step, a.held[0].1.name()));
        st.abort(f);
        return;
    }
    match st.pick() {
        Some(n) => st.resume(n),
        None if st.active.is_empty() => st.turn = 0,
        None => {
            let f = Failure::at(Some(a.step), deadlock(st));
            st.abort(f);
        }
    }
}

/// Runs the steps `0..info.len()` of a program with `threads` logical threads: `exec(j)` runs
/// step j (on whichever OS thread the scheduler gives it), `quiet(done)` runs on the calling
/// thread whenever no step is active, after `done` steps have ended (for checks that need the
/// heap to themselves). Returns the first failure.
pub fn run(info: &[StepInfo], threads: u8, exec: &Exec<'_>, quiet: &mut dyn FnMut(usize) -> Result<(), Failure>) -> Result<(), Failure> {
    install();
    let mut clocks = [[0u32; MAX_THREADS as usize]; MAX_THREADS as usize];
    for (t, c) in clocks.iter_mut().enumerate() {
        c[t] = 1;
    }
    // SAFETY: only the lifetime changes; this function waits for every worker job (which is
    // all that uses the pointer) before it returns.
    let exec_static: *const Exec<'static> = unsafe { core::mem::transmute::<*const Exec<'_>, *const Exec<'static>>(exec) };
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            info: info.to_vec(),
            turn: 0,
            abort: false,
            failure: None,
            stop: false,
            next: 0,
            since: 0,
            active: Vec::new(),
            next_ctx: 1,
            jobs: 0,
            track: threads > 1,
            clocks,
            released: AddrMap::default(),
            plain: AddrMap::default(),
            order: Vec::new(),
            exec: ExecPtr(exec_static),
            workers: Vec::new(),
        }),
        wake: Condvar::new(),
    });
    let s: &Shared = &shared;
    let mut done = 0;
    let mut st = lock(s);
    loop {
        while st.turn != 0 && !st.abort {
            st = s.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        if st.abort || st.failure.is_some() {
            break;
        }
        debug_assert!(st.active.is_empty());
        drop(st);
        let q = quiet(done);
        st = lock(s);
        if let Err(f) = q {
            st.fail(f);
            break;
        }
        if st.stop || st.next == info.len() {
            break;
        }
        let j = st.next;
        st.next += 1;
        st.since = 0;
        st.active.push(Active { step: j, ctx: 0, thread: info[j].cache, points: 0, status: Status::Running, held: Vec::new() });
        drop(st);
        run_context(s, 0, j, exec);
        st = lock(s);
        done = j + 1;
        if st.abort {
            break;
        }
    }
    // Every worker leaves: suspended ones unwind, and the run waits for all.
    if !st.active.is_empty() {
        st.abort = true;
    }
    s.wake.notify_all();
    while st.jobs > 0 {
        st = s.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
    }
    let failure = st.failure.take();
    let back = std::mem::take(&mut st.workers);
    drop(st);
    let mut w = WORKERS.lock().unwrap_or_else(PoisonError::into_inner);
    if w.0 == std::process::id() {
        w.1.extend(back);
    }
    drop(w);
    failure.map_or(Ok(()), Err)
}

/// Joins thread `from`'s clock into `to`'s: the client hands a block from one to the other.
pub fn handoff(from: u8, to: u8) {
    let Some((s, _)) = current() else { return };
    let mut st = lock(s);
    if from != to && st.track {
        let c = st.clocks[from as usize];
        join(&mut st.clocks[to as usize], &c);
        st.clocks[from as usize][from as usize] += 1;
    }
}

/// Leaves the scheduler: this thread's allocator calls are no longer scheduled or tracked (a
/// forked child, which is alone in its process).
pub fn detach() {
    CURRENT.with(|c| c.set((core::ptr::null(), 0)));
}

/// Installs the hooks in hakmem (once; harmless again).
pub fn install() {
    hakmem::sync::set_hooks(&HOOKS);
}

#[cfg(test)]
mod tests {
    //! The scheduler on toy steps made of hakmem's instrumented atomics and lock events, so that
    //! each property shows on its own: preemption at a point, pause, happens-before, lock order,
    //! deadlock.
    use super::*;
    use hakmem::sync::{lock_event, plain, AtomicBool, AtomicUsize};

    fn info(n: usize, sched: &[(usize, Option<u16>, Option<u16>)]) -> Vec<StepInfo> {
        let mut v: Vec<StepInfo> = (0..n).map(|i| StepInfo { cache: Some(i as u8), block: None, at: None, pause: None }).collect();
        for &(i, at, pause) in sched {
            v[i].at = at;
            v[i].pause = pause;
        }
        v
    }

    /// Runs steps that each do `ops` atomic operations, logging (step, op) as they go.
    fn interleaving(n: usize, ops: usize, sched: &[(usize, Option<u16>, Option<u16>)]) -> Vec<(usize, usize)> {
        let log = Mutex::new(Vec::new());
        let a = AtomicUsize::new(0);
        let exec = |j: usize| {
            for k in 0..ops {
                log.lock().unwrap().push((j, k));
                a.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Flow::Continue)
        };
        run(&info(n, sched), 2, &exec, &mut |_| Ok(())).unwrap();
        log.into_inner().unwrap()
    }

    #[test]
    fn steps_run_in_order_without_schedules() {
        assert_eq!(interleaving(2, 3, &[]), vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
    }

    #[test]
    fn a_step_starts_at_the_point_it_names_and_the_interrupted_one_resumes() {
        // Step 1 starts after step 0's second atomic operation.
        assert_eq!(interleaving(2, 3, &[(1, Some(2), None)]), vec![(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (0, 2)]);
        // Steps 1 and 2 nest: 2 starts at 1's first point.
        assert_eq!(
            interleaving(3, 2, &[(1, Some(1), None), (2, Some(1), None)]),
            vec![(0, 0), (1, 0), (2, 0), (2, 1), (1, 1), (0, 1)]
        );
    }

    #[test]
    fn a_paused_step_lets_the_one_it_interrupted_run_on() {
        // 1 starts at 0's first point and pauses at its own first: 0 finishes, then 1 does.
        assert_eq!(interleaving(2, 3, &[(1, Some(1), Some(1))]), vec![(0, 0), (1, 0), (0, 1), (0, 2), (1, 1), (1, 2)]);
    }

    /// Thread 0 writes a link and publishes it with `publish`; thread 1 reads the flag with
    /// `take`, then the link.
    fn handoff(publish: Ordering, take: Ordering) -> Result<(), Failure> {
        let flag = AtomicBool::new(false);
        let link = 0u64;
        let at = &link as *const u64 as usize;
        let exec = |j: usize| {
            if j == 0 {
                plain(at, true);
                flag.store(true, publish);
            } else {
                assert!(flag.load(take));
                plain(at, false);
            }
            Ok(Flow::Continue)
        };
        run(&info(2, &[]), 2, &exec, &mut |_| Ok(()))
    }

    #[test]
    fn a_missing_release_or_acquire_is_a_data_race() {
        assert_eq!(handoff(Ordering::Release, Ordering::Acquire), Ok(()));
        for (p, t) in [(Ordering::Relaxed, Ordering::Acquire), (Ordering::Release, Ordering::Relaxed)] {
            let f = handoff(p, t).unwrap_err();
            assert!(f.what.contains("data race") && f.what.contains("written by t0 in step 0"), "{f}");
            assert_eq!(f.step, Some(1));
        }
    }

    /// A toy spin lock reporting like hakmem's.
    struct Toy(AtomicBool, LockClass);
    impl Toy {
        fn lock(&self) {
            while self.0.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
                lock_event(self as *const Toy as usize, self.1, LockEvent::Wait);
            }
            lock_event(self as *const Toy as usize, self.1, LockEvent::Acquired);
        }
        fn unlock(&self) {
            lock_event(self as *const Toy as usize, self.1, LockEvent::Released);
            self.0.store(false, Ordering::Release);
        }
    }

    /// Step 0 takes a then b, step 1 b then a, with step 1 starting at `at` of step 0.
    fn two_locks(at: Option<u16>) -> Result<(), Failure> {
        let a = Toy(AtomicBool::new(false), LockClass::Heap);
        let b = Toy(AtomicBool::new(false), LockClass::Spares);
        let exec = |j: usize| {
            let (x, y) = if j == 0 { (&a, &b) } else { (&b, &a) };
            x.lock();
            y.lock();
            y.unlock();
            x.unlock();
            Ok(Flow::Continue)
        };
        run(&info(2, &[(1, at, None)]), 2, &exec, &mut |_| Ok(()))
    }

    #[test]
    fn opposite_lock_orders_are_an_inversion_and_a_deadlock_when_interleaved() {
        let f = two_locks(None).unwrap_err();
        assert!(f.what.contains("lock order inversion"), "{f}");
        // Step 1 starts once step 0 holds a (after its first atomic operation, the CAS).
        let f = two_locks(Some(1)).unwrap_err();
        assert!(f.what.contains("deadlock") && f.what.contains("held by step"), "{f}");
    }

    #[test]
    fn a_lock_held_by_a_suspended_step_lets_the_holder_run() {
        let l = Toy(AtomicBool::new(false), LockClass::Heap);
        let log = Mutex::new(Vec::new());
        let exec = |j: usize| {
            l.lock();
            log.lock().unwrap().push(j);
            l.unlock();
            Ok(Flow::Continue)
        };
        run(&info(2, &[(1, Some(1), None)]), 2, &exec, &mut |_| Ok(())).unwrap();
        assert_eq!(log.into_inner().unwrap(), vec![0, 1]);
    }
}
