//! THE SCHEDULER of deterministic mode: runs a program's steps one logical thread at a time, and
//! lets a step start in the middle of another's allocator call, at a preemption point the
//! program names, so that a race inside one operation (a remote push between an owner's load
//! and its swap) is an ordinary input that replays and minimizes.
//!
//! # Points and schedules
//! hakmem reports every atomic operation, free-list link access and lock event to the hooks of
//! `hakmem::sync` (`sched` feature). Each atomic operation, and each lock acquisition once the
//! lock is held, is a preemption point. Steps start in program order; a step with `at: Some(k)`
//! starts at the k-th point reached after the step before it started, suspending the step that reached it (if the two share no cache and no
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
use hakmem::sync::{Access, Hooks, LockClass, LockEvent, Ordering, Plain};
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
    held: Held,
    /// Where its last atomic operation was a read-modify-write (0 if it was not): a lock word
    /// it has just taken, if it was suspended at that point before reporting `Acquired`.
    last_rmw: usize,
}

/// The locks a step holds, in the order taken (hakmem nests three at most: no allocation, as a
/// vector's first push was, once per step).
#[derive(Clone, Copy, Default)]
struct Held {
    locks: [(usize, Option<LockClass>); 4],
    len: usize,
}

impl Held {
    fn iter(&self) -> impl Iterator<Item = (usize, LockClass)> + '_ {
        self.locks[..self.len].iter().map(|&(a, c)| (a, c.unwrap_or(LockClass::Other)))
    }
    fn push(&mut self, addr: usize, class: LockClass) {
        assert!(self.len < self.locks.len(), "hakmem-fuzz: more than four locks held at once");
        self.locks[self.len] = (addr, Some(class));
        self.len += 1;
    }
    fn remove(&mut self, addr: usize) {
        if let Some(i) = self.locks[..self.len].iter().rposition(|&(a, _)| a == addr) {
            self.locks.copy_within(i + 1..self.len, i);
            self.len -= 1;
        }
    }
    fn first(&self) -> Option<LockClass> {
        self.iter().next().map(|(_, c)| c)
    }
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
    failure: Option<Failure>,
    stop: bool,
    /// The next step to start.
    next: usize,
    /// Points reached since the last step started.
    since: u32,
    active: Vec<Active>,
    /// Worker contexts are numbered from 1.
    next_ctx: usize,
    track: bool,
    /// Whether any step has a schedule: without one, points need no counting.
    scheduled: bool,
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

/// What changes hands between contexts: under the mutex.
struct Baton {
    /// The context allowed to run, and so to touch [`State`].
    turn: usize,
    /// Everyone unwinds: the run failed while steps were suspended.
    abort: bool,
    /// Worker jobs not yet ended.
    jobs: usize,
    /// Contexts waiting on `wake` (without any, a notify would be a system call for nothing,
    /// once per step).
    parked: usize,
}

/// One run's scheduler, shared by its contexts. Exactly one context runs at a time: the one
/// holding the turn, which alone reads and writes `state`, without a lock (an atomic operation
/// of the allocator is a hook call; locking there was most of the scheduler's cost). The turn
/// passes only through `baton`'s mutex, whose release and acquire order every access to
/// `state` by one context before every access by the next.
struct Shared {
    baton: Mutex<Baton>,
    wake: Condvar,
    state: std::cell::UnsafeCell<State>,
}

// SAFETY: `state` is only touched by the context holding the turn (see the type's docs).
unsafe impl Sync for Shared {}

impl Shared {
    /// The state, for the context holding the turn.
    ///
    /// # Safety
    /// The caller holds the turn, and no other reference from this call is live.
    #[allow(clippy::mut_from_ref)]
    unsafe fn st(&self) -> &mut State {
        // SAFETY: per the contract.
        unsafe { &mut *self.state.get() }
    }

    fn baton(&self) -> MutexGuard<'_, Baton> {
        self.baton.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the parked contexts, if any.
    fn notify(&self, b: &Baton) {
        if b.parked > 0 {
            self.wake.notify_all();
        }
    }

    /// Waits until `until` holds of the baton.
    fn park<'a>(&'a self, mut b: MutexGuard<'a, Baton>, until: impl Fn(&Baton) -> bool) -> MutexGuard<'a, Baton> {
        while !until(&b) {
            b.parked += 1;
            b = self.wake.wait(b).unwrap_or_else(PoisonError::into_inner);
            b.parked -= 1;
        }
        b
    }

    /// Gives the turn to `to` and parks `me` until it has the turn again; unwinds it if the run
    /// is aborted meanwhile.
    fn switch(&self, to: usize, me: usize) {
        let mut b = self.baton();
        b.turn = to;
        self.notify(&b);
        let b = self.park(b, |b| b.turn == me || b.abort);
        if b.abort {
            drop(b);
            resume_unwind(Box::new(AbortRun));
        }
    }

    /// Gives the turn to `to` for good (the caller's step has ended).
    fn give(&self, to: usize) {
        let mut b = self.baton();
        b.turn = to;
        self.notify(&b);
    }

    /// Aborts the run: every parked context unwinds.
    fn abort(&self) {
        let mut b = self.baton();
        b.abort = true;
        self.notify(&b);
    }
}

/// The unwinding payload that ends a context's step when the run is aborted.
struct AbortRun;

thread_local! {
    /// The happens-before maps of the last run on this thread, emptied, for the next: growing
    /// them anew each run was a tenth of an input's time under ASan.
    static MAPS: std::cell::RefCell<(AddrMap<Clock>, AddrMap<Write>)> = std::cell::RefCell::new(Default::default());
    /// The scheduler of the run this thread is a context of, and its context number.
    static CURRENT: Cell<(*const Shared, usize)> = const { Cell::new((core::ptr::null(), 0)) };
}

/// The run this thread is a context of, if it is running a step now.
fn current() -> Option<(&'static Shared, usize)> {
    let (p, ctx) = CURRENT.with(Cell::get);
    if p.is_null() || std::thread::panicking() {
        return None;
    }
    // SAFETY: a context's pointer is set while its run is live (the run waits for every
    // context to leave before its Shared goes).
    Some((unsafe { &*p }, ctx))
}

impl State {
    fn me(&mut self, ctx: usize) -> Option<usize> {
        self.active.iter().position(|a| a.ctx == ctx && a.status == Status::Running)
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

    /// Marks active step `k` running and returns its context, to give the turn to.
    fn resume(&mut self, k: usize) -> usize {
        self.active[k].status = Status::Running;
        self.active[k].ctx
    }

    fn fail(&mut self, f: Failure) {
        if self.failure.is_none() {
            self.failure = Some(f);
        }
    }

    /// Who holds the lock at `addr`.
    fn holder(&self, addr: usize) -> Option<usize> {
        self.active.iter().position(|a| a.held.iter().any(|(l, _)| l == addr))
    }

    fn name(&self, k: usize) -> String {
        let a = &self.active[k];
        match a.thread {
            Some(t) => format!("step {} (t{t})", a.step),
            None => format!("step {}", a.step),
        }
    }
}

/// The hooks hakmem reports to (installed once per process).
static HOOKS: Hooks = Hooks { atomic: on_atomic, plain: on_plain, lock: on_lock, scheduled: || current().is_some() };

fn on_atomic(addr: usize, access: Access) {
    let Some((s, ctx)) = current() else { return };
    // SAFETY: this context runs a step, so it holds the turn.
    let st = unsafe { s.st() };
    let Some(k) = st.me(ctx) else { return };
    st.active[k].last_rmw = if matches!(access, Access::Rmw(_)) { addr } else { 0 };
    if st.track {
        if let Some(t) = st.active[k].thread {
            track_atomic(st, t as usize, addr, access);
        }
    }
    point(s, st, k, ctx);
}

/// Step `k` (on context `ctx`) reached a preemption point: it pauses there, or the next step
/// starts there, if the program says so.
fn point(s: &Shared, st: &mut State, k: usize, ctx: usize) {
    if !st.scheduled {
        return;
    }
    st.active[k].points += 1;
    let (step, points) = (st.active[k].step, st.active[k].points);
    st.since += 1;
    if st.info[step].pause == Some(points as u16) && st.pick().is_some() {
        st.active[k].status = Status::Paused;
        let next = st.pick().expect("another step to run");
        let to = st.resume(next);
        s.switch(to, ctx);
        return;
    }
    let n = st.info.len();
    if !st.stop && st.next < n && st.info[st.next].at == Some(st.since as u16) && st.independent(st.next) {
        st.active[k].status = Status::Ready;
        let to = start_on_worker(s, st);
        s.switch(to, ctx);
    }
}

fn track_atomic(st: &mut State, t: usize, addr: usize, access: Access) {
    let (read, write, rmw) = match access {
        Access::Load(Ordering::Relaxed) | Access::Store(Ordering::Relaxed) => return,
        Access::Load(o) => (Some(o), None, false),
        Access::Store(o) => (None, Some(o), false),
        Access::Rmw(o) => (Some(o), Some(o), true),
    };
    if read.is_some_and(acquires) {
        if let Some(c) = st.released.get(&addr) {
            let c = *c;
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
        }
    }
    // (A relaxed store ends the release sequence: see `on_atomic`'s early return, which keeps
    // the clock instead. That only ever adds happens-before, so it can hide a race but not
    // make one up; hakmem publishes nothing by a release store followed by a relaxed one.)
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

fn on_plain(addr: usize, what: Plain, write: bool) {
    let Some((s, ctx)) = current() else { return };
    // SAFETY: as in on_atomic.
    let st = unsafe { s.st() };
    if !st.track {
        return;
    }
    let Some(k) = st.me(ctx) else { return };
    let (step, Some(t)) = (st.active[k].step, st.active[k].thread) else { return };
    track_plain(st, t, step, addr, write, &|| match what {
        Plain::Link => describe_link(addr),
        Plain::Batch => format!("a batch of remote frees (its word at {addr:#x})"),
    });
}

/// A free-list link's place, for race reports.
fn describe_link(addr: usize) -> String {
    let region = addr & !(hakmem::layout::REGION_SIZE - 1);
    let slab = (addr - region) >> hakmem::layout::SLAB_SHIFT;
    format!("the free-list link of slot {addr:#x} (region {region:#x} slab {slab})")
}

fn on_lock(addr: usize, class: LockClass, event: LockEvent) {
    let Some((s, ctx)) = current() else { return };
    // SAFETY: as in on_atomic.
    let st = unsafe { s.st() };
    let Some(k) = st.me(ctx) else { return };
    match event {
        LockEvent::Wait => {
            // The holder is the step that reported taking the lock, or one suspended right
            // after its CAS took it. With neither, the lock is free: the failed try was the
            // point at which other steps ran, one of which let the lock go (or the weak CAS
            // failed spuriously), and the caller tries again.
            let Some(h) = st.holder(addr).or_else(|| st.active.iter().position(|a| a.last_rmw == addr)) else { return };
            if h == k {
                let f = Failure::at(Some(st.active[k].step), format!("deadlock: {} waits for {} it holds itself", st.name(k), class.name()));
                st.fail(f);
                s.abort();
                s.switch(usize::MAX, ctx);
                return;
            }
            st.active[k].status = Status::Blocked(addr);
            // The holder runs if it can; any other step that can run may, too.
            let next = if matches!(st.active[h].status, Status::Ready | Status::Paused) { Some(h) } else { st.pick() };
            match next {
                Some(n) => {
                    let to = st.resume(n);
                    s.switch(to, ctx);
                }
                None => {
                    let f = Failure::at(Some(st.active[k].step), deadlock(st));
                    st.fail(f);
                    s.abort();
                    s.switch(usize::MAX, ctx);
                }
            }
        }
        LockEvent::Acquired => {
            let step = st.active[k].step;
            let held = st.active[k].held;
            for (_, before) in held.iter() {
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
            st.active[k].held.push(addr, class);
            st.active[k].last_rmw = 0;
            if st.track {
                if let Some(t) = st.active[k].thread {
                    // Taking a lock touches what it protects: its last holder must have
                    // released it to us.
                    track_plain(st, t, step, addr | 1, true, &|| format!("the state {} protects", class.name()));
                }
            }
            // Holding a lock is a point of its own: a critical section with no atomic inside
            // (the spares' bookkeeping) could otherwise never be interrupted, and what another
            // thread does meanwhile (a fork) never be tried.
            point(s, st, k, ctx);
        }
        LockEvent::Released => {
            st.active[k].held.remove(addr);
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
            let class = st.active.iter().flat_map(|b| b.held.iter().collect::<Vec<_>>()).find(|&(x, _)| x == l).map_or(LockClass::Other, |(_, c)| c);
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

/// Starts the next step on a new worker context; returns the context, to give the turn to.
fn start_on_worker(s: &Shared, st: &mut State) -> usize {
    let j = st.next;
    st.next += 1;
    st.since = 0;
    let ctx = st.next_ctx;
    st.next_ctx += 1;
    s.baton().jobs += 1;
    st.active.push(Active { step: j, ctx, thread: st.info[j].cache, points: 0, status: Status::Running, held: Held::default(), last_rmw: 0 });
    let (shared, exec) = (SharedPtr(s as *const Shared), st.exec);
    let task: Task = Box::new(move || {
        let (shared, exec) = (shared, exec);
        // SAFETY: the run does not return before this job has ended (it waits for `jobs` to
        // reach zero), so its Shared and step function outlive the job.
        let (s, exec) = unsafe { (&*shared.0, &*exec.0) };
        let b = s.park(s.baton(), |b| b.turn == ctx || b.abort);
        let go = !b.abort;
        drop(b);
        if go {
            run_context(s, ctx, j, exec);
        }
        let mut b = s.baton();
        b.jobs -= 1;
        s.notify(&b);
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
    ctx
}

#[derive(Clone, Copy)]
struct SharedPtr(*const Shared);
// SAFETY: the pointer is only dereferenced while the run it belongs to is live.
unsafe impl Send for SharedPtr {}

#[derive(Clone, Copy)]
struct ExecPtr(*const Exec<'static>);
// SAFETY: as for SharedPtr; the step function is Sync.
unsafe impl Send for ExecPtr {}

/// Runs step `j` on context `ctx` (which has the turn), then ends it and gives the turn on.
fn run_context(s: &Shared, ctx: usize, j: usize, exec: &Exec<'_>) {
    let prev = CURRENT.with(|c| c.replace((s as *const Shared, ctx)));
    let r = catch_unwind(AssertUnwindSafe(|| exec(j)));
    CURRENT.with(|c| c.set(prev));
    let r = match r {
        Ok(r) => r,
        Err(p) if p.is::<AbortRun>() => return,
        Err(p) => Err(Failure::at(Some(j), format!("panicked: {}", panic_text(&*p)))),
    };
    // SAFETY: the step ran to its end here, so this context still holds the turn.
    let st = unsafe { s.st() };
    match end_step(st, ctx, r) {
        Some(to) => s.give(to),
        None => s.abort(),
    }
}

/// A panic's message.
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "(no message)".into())
}

/// The step on `ctx` ended with `r`: the context to run next, or None to abort the run
/// (suspended steps unwind).
fn end_step(st: &mut State, ctx: usize, r: Result<Flow, Failure>) -> Option<usize> {
    let k = st.active.iter().position(|a| a.ctx == ctx).expect("the ending step is active");
    let a = st.active.remove(k);
    match r {
        Err(f) => st.fail(f),
        Ok(Flow::Stop) => st.stop = true,
        Ok(Flow::Continue) => {}
    }
    if let (None, Some(c)) = (&st.failure, a.held.first()) {
        st.fail(Failure::at(Some(a.step), format!("step {} ended holding {}", a.step, c.name())));
    }
    if st.failure.is_some() {
        return st.active.is_empty().then_some(0);
    }
    match st.pick() {
        Some(n) => Some(st.resume(n)),
        None if st.active.is_empty() => Some(0),
        None => {
            let f = Failure::at(Some(a.step), deadlock(st));
            st.fail(f);
            None
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
    let (released, plain) = MAPS.with(|m| std::mem::take(&mut *m.borrow_mut()));
    let shared = Arc::new(Shared {
        baton: Mutex::new(Baton { turn: 0, abort: false, jobs: 0, parked: 0 }),
        wake: Condvar::new(),
        state: std::cell::UnsafeCell::new(State {
            info: info.to_vec(),
            failure: None,
            stop: false,
            next: 0,
            since: 0,
            active: Vec::new(),
            next_ctx: 1,
            track: threads > 1,
            scheduled: info.iter().any(|i| i.at.is_some() || i.pause.is_some()),
            clocks,
            released,
            plain,
            order: Vec::new(),
            exec: ExecPtr(exec_static),
            workers: Vec::new(),
        }),
    });
    let s: &Shared = &shared;
    let mut done = 0;
    loop {
        if s.park(s.baton(), |b| b.turn == 0 || b.abort).abort {
            break;
        }
        // SAFETY: context 0 holds the turn.
        let st = unsafe { s.st() };
        if st.failure.is_some() {
            break;
        }
        debug_assert!(st.active.is_empty());
        if let Err(f) = quiet(done) {
            st.fail(f);
            break;
        }
        if st.stop || st.next == info.len() {
            break;
        }
        let j = st.next;
        st.next += 1;
        st.since = 0;
        st.active.push(Active { step: j, ctx: 0, thread: info[j].cache, points: 0, status: Status::Running, held: Held::default(), last_rmw: 0 });
        run_context(s, 0, j, exec);
        done = j + 1;
    }
    // Every worker leaves: suspended ones unwind, and the run waits for all.
    let mut b = s.baton();
    b.abort = true;
    s.notify(&b);
    drop(s.park(b, |b| b.jobs == 0));
    // SAFETY: every other context has left.
    let st = unsafe { s.st() };
    let failure = st.failure.take();
    let back = std::mem::take(&mut st.workers);
    let (mut released, mut plain) = (std::mem::take(&mut st.released), std::mem::take(&mut st.plain));
    released.clear();
    plain.clear();
    MAPS.with(|m| *m.borrow_mut() = (released, plain));
    if !back.is_empty() {
        let mut w = WORKERS.lock().unwrap_or_else(PoisonError::into_inner);
        if w.0 == std::process::id() {
            w.1.extend(back);
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Joins thread `from`'s clock into `to`'s: the client hands a block from one to the other.
pub fn handoff(from: u8, to: u8) {
    let Some((s, _)) = current() else { return };
    // SAFETY: the caller runs a step, so it holds the turn.
    let st = unsafe { s.st() };
    if from != to && st.track {
        let c = st.clocks[from as usize];
        join(&mut st.clocks[to as usize], &c);
        st.clocks[from as usize][from as usize] += 1;
    }
}

/// The locks that steps other than the calling one hold, as a message (None if none): what a
/// fork made now would copy locked into a child that has none of those threads.
pub fn locks_held_by_others() -> Option<String> {
    let (s, ctx) = current()?;
    // SAFETY: as in handoff.
    let st = unsafe { s.st() };
    let held: Vec<String> = st
        .active
        .iter()
        .enumerate()
        .filter(|(_, a)| a.ctx != ctx)
        .flat_map(|(k, a)| a.held.iter().map(move |(_, c)| (k, c)).collect::<Vec<_>>())
        .map(|(k, c)| format!("{} holds {}", st.name(k), c.name()))
        .collect();
    (!held.is_empty()).then(|| held.join(" and "))
}

/// Whether runs install the hooks (see [`disable`]).
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Installs the hooks in hakmem (once; harmless again), unless [`disable`]d.
pub fn install() {
    if ENABLED.load(std::sync::atomic::Ordering::Relaxed) {
        hakmem::sync::set_hooks(&HOOKS);
    }
}

/// Runs from now on report no preemption point, lock event or link access to the scheduler:
/// no schedule is taken and no race or lock order is checked. Only for measuring what the
/// points cost (`exec_rate --no-points`).
pub fn disable() {
    ENABLED.store(false, std::sync::atomic::Ordering::Relaxed);
    hakmem::sync::clear_hooks();
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
                plain(at, Plain::Link, true);
                flag.store(true, publish);
            } else {
                assert!(flag.load(take));
                plain(at, Plain::Link, false);
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
        /// The lock word's address, as hakmem's locks report.
        fn addr(&self) -> usize {
            &self.0 as *const AtomicBool as usize
        }
        fn lock(&self) {
            while self.0.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
                lock_event(self.addr(), self.1, LockEvent::Wait);
            }
            lock_event(self.addr(), self.1, LockEvent::Acquired);
        }
        fn unlock(&self) {
            lock_event(self.addr(), self.1, LockEvent::Released);
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

    #[test]
    fn a_lock_freed_between_a_failed_try_and_its_wait_is_taken_again() {
        // Step 1's try at l fails while step 0 holds it, and step 2 starts right there (at
        // that failed try). Step 2 holds m and waits for l; step 0 lets l go and waits for m;
        // step 2 ends; when step 1 says it waits, l is free and nobody is about to take it.
        // (The fuzzer's three-step deadlock "waits for a lock held by nobody": a large
        // allocation, the spares' lock and the heap lock.)
        let l = Toy(AtomicBool::new(false), LockClass::Spares);
        let m = Toy(AtomicBool::new(false), LockClass::Heap);
        let exec = |j: usize| {
            match j {
                0 => {
                    l.lock();
                    l.unlock();
                    m.lock();
                    m.unlock();
                }
                1 => {
                    l.lock();
                    l.unlock();
                }
                _ => {
                    m.lock();
                    l.lock();
                    l.unlock();
                    m.unlock();
                }
            }
            Ok(Flow::Continue)
        };
        run(&info(3, &[(1, Some(2), None), (2, Some(1), None)]), 3, &exec, &mut |_| Ok(())).unwrap();
    }
}

