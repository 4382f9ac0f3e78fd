//! Every place where hakmem's threads meet goes through this module: its atomics, the free-list
//! links one thread writes and another reads, and its locks. In a normal build this is core's
//! atomics and nothing more (each method is an inline forward).
//!
//! With the `sched` feature (the fuzz harness turns it on), each of those operations first
//! reports itself to the [`Hooks`] a scheduler installed with [`set_hooks`]: after every atomic
//! operation (a preemption point, at which the scheduler may run another logical thread, and
//! where it tracks happens-before), before and after every plain access to a free-list link (a
//! data-race check), and when a lock is taken, waited for or released (lock order, deadlocks).
//! So the harness can run a race between, say, an owner's drain and a remote push as an ordinary
//! deterministic program, and a missing Release or Acquire shows as a data race on the link it
//! failed to publish. Code written later gets the hooks by using these types; nothing in the core
//! uses `core::sync::atomic` directly.
//!
//! Without hooks installed (the default even in `sched` builds), an operation costs one relaxed
//! load and a branch more.

pub use core::sync::atomic::Ordering;

/// What an atomic operation did, for the hooks' happens-before tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A load with this ordering.
    Load(Ordering),
    /// A store with this ordering.
    Store(Ordering),
    /// A read-modify-write that took effect, with this ordering.
    Rmw(Ordering),
}

/// Which lock a lock event is about: the classes a lock-order check compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockClass {
    /// A heap's lock (its pool, lists and large blocks).
    Heap,
    /// A heap's spare mappings' lock (a leaf: nothing is taken while it is held).
    Spares,
    /// The global allocator's shared fallback cache.
    Fallback,
    /// A heap's guard pool (a leaf, like the spares' lock).
    Guard,
    /// Any other lock.
    Other,
}

impl LockClass {
    /// The lock's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            LockClass::Heap => "the heap lock",
            LockClass::Spares => "the spares' lock",
            LockClass::Fallback => "the fallback cache's lock",
            LockClass::Guard => "the guard pool's lock",
            LockClass::Other => "a lock",
        }
    }
}

/// A lock event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockEvent {
    /// The lock is held by someone else and the caller is about to wait.
    Wait,
    /// The caller now holds the lock.
    Acquired,
    /// The caller is about to release the lock.
    Released,
}

/// What a plain access that crosses threads touched, for race reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plain {
    /// A free slot's link.
    Link,
    /// A batch of remote frees (`batch`): its count of slots or its link.
    Batch,
}

/// What a scheduler does at each of hakmem's synchronization points (see the module docs).
pub struct Hooks {
    /// After an atomic operation at `addr`.
    pub atomic: fn(addr: usize, access: Access),
    /// A plain access to memory that crosses threads (`what` it is): `write` or a read.
    pub plain: fn(addr: usize, what: Plain, write: bool),
    /// A lock event on the lock at `addr`.
    pub lock: fn(addr: usize, class: LockClass, event: LockEvent),
    /// Whether the calling thread runs under the scheduler (which then decides who runs, so
    /// the thread must not spin).
    pub scheduled: fn() -> bool,
}

#[cfg(feature = "sched")]
static HOOKS: core::sync::atomic::AtomicPtr<Hooks> = core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Installs the hooks every later synchronization point of this process reports to (only in
/// `sched` builds; elsewhere nothing reports and this does nothing).
pub fn set_hooks(hooks: &'static Hooks) {
    #[cfg(feature = "sched")]
    HOOKS.store((hooks as *const Hooks).cast_mut(), Ordering::Release);
    let _ = hooks;
}

/// Removes the hooks: later synchronization points report to nothing (for measuring what the
/// hooks cost).
pub fn clear_hooks() {
    #[cfg(feature = "sched")]
    HOOKS.store(core::ptr::null_mut(), Ordering::Release);
}

/// Whether the calling thread runs under a scheduler, which decides who runs: it must not spin.
#[inline(always)]
pub fn scheduled() -> bool {
    hooks().is_some_and(|h| (h.scheduled)())
}

/// The installed hooks, if any.
#[inline(always)]
fn hooks() -> Option<&'static Hooks> {
    #[cfg(feature = "sched")]
    {
        let h = HOOKS.load(Ordering::Acquire);
        // SAFETY: set_hooks stores only 'static references (Acquire pairs with its Release).
        if !h.is_null() {
            return Some(unsafe { &*h });
        }
    }
    None
}

#[inline(always)]
fn atomic_done(addr: usize, access: Access) {
    if let Some(h) = hooks() {
        (h.atomic)(addr, access);
    }
}

/// Reports a plain access to memory that crosses threads: a free-list link or a batch.
#[inline(always)]
pub fn plain(addr: usize, what: Plain, write: bool) {
    if let Some(h) = hooks() {
        (h.plain)(addr, what, write);
    }
}

/// Reports a lock event.
#[inline(always)]
pub fn lock_event(addr: usize, class: LockClass, event: LockEvent) {
    if let Some(h) = hooks() {
        (h.lock)(addr, class, event);
    }
}

/// The ordering a compare-and-swap's read has when it fails.
fn load_part(o: Ordering) -> Ordering {
    match o {
        Ordering::AcqRel => Ordering::Acquire,
        Ordering::Release => Ordering::Relaxed,
        o => o,
    }
}

macro_rules! atomic_int {
    ($name:ident, $inner:ty, $t:ty) => {
        /// An atomic that reports its operations (see the module docs).
        #[repr(transparent)]
        #[derive(Default)]
        pub struct $name($inner);

        impl $name {
            /// A new atomic holding `v`.
            pub const fn new(v: $t) -> Self {
                Self(<$inner>::new(v))
            }
            #[inline(always)]
            fn addr(&self) -> usize {
                self as *const Self as usize
            }
            /// As `core`'s `load`.
            #[inline(always)]
            pub fn load(&self, o: Ordering) -> $t {
                let v = self.0.load(o);
                atomic_done(self.addr(), Access::Load(o));
                v
            }
            /// As `core`'s `store`.
            #[inline(always)]
            pub fn store(&self, v: $t, o: Ordering) {
                self.0.store(v, o);
                atomic_done(self.addr(), Access::Store(o));
            }
            /// As `core`'s `swap`.
            #[inline(always)]
            pub fn swap(&self, v: $t, o: Ordering) -> $t {
                let r = self.0.swap(v, o);
                atomic_done(self.addr(), Access::Rmw(o));
                r
            }
            /// As `core`'s `compare_exchange`.
            #[inline(always)]
            pub fn compare_exchange(&self, cur: $t, new: $t, ok: Ordering, err: Ordering) -> Result<$t, $t> {
                let r = self.0.compare_exchange(cur, new, ok, err);
                atomic_done(self.addr(), if r.is_ok() { Access::Rmw(ok) } else { Access::Load(load_part(err)) });
                r
            }
            /// As `core`'s `compare_exchange_weak`.
            #[inline(always)]
            pub fn compare_exchange_weak(&self, cur: $t, new: $t, ok: Ordering, err: Ordering) -> Result<$t, $t> {
                let r = self.0.compare_exchange_weak(cur, new, ok, err);
                atomic_done(self.addr(), if r.is_ok() { Access::Rmw(ok) } else { Access::Load(load_part(err)) });
                r
            }
            /// As `core`'s `get_mut`: exclusive, so no other thread can see it.
            #[inline(always)]
            pub fn get_mut(&mut self) -> &mut $t {
                self.0.get_mut()
            }
        }
    };
}

macro_rules! atomic_arith {
    ($name:ident, $t:ty) => {
        impl $name {
            /// As `core`'s `fetch_add`.
            #[inline(always)]
            pub fn fetch_add(&self, v: $t, o: Ordering) -> $t {
                let r = self.0.fetch_add(v, o);
                atomic_done(self.addr(), Access::Rmw(o));
                r
            }
            /// As `core`'s `fetch_sub`.
            #[inline(always)]
            pub fn fetch_sub(&self, v: $t, o: Ordering) -> $t {
                let r = self.0.fetch_sub(v, o);
                atomic_done(self.addr(), Access::Rmw(o));
                r
            }
            /// As `core`'s `fetch_max`.
            #[inline(always)]
            pub fn fetch_max(&self, v: $t, o: Ordering) -> $t {
                let r = self.0.fetch_max(v, o);
                atomic_done(self.addr(), Access::Rmw(o));
                r
            }
            /// As `core`'s `fetch_or`.
            #[inline(always)]
            pub fn fetch_or(&self, v: $t, o: Ordering) -> $t {
                let r = self.0.fetch_or(v, o);
                atomic_done(self.addr(), Access::Rmw(o));
                r
            }
            /// As `core`'s `fetch_and`.
            #[inline(always)]
            pub fn fetch_and(&self, v: $t, o: Ordering) -> $t {
                let r = self.0.fetch_and(v, o);
                atomic_done(self.addr(), Access::Rmw(o));
                r
            }
        }
    };
}

atomic_int!(AtomicBool, core::sync::atomic::AtomicBool, bool);
atomic_int!(AtomicU8, core::sync::atomic::AtomicU8, u8);
atomic_int!(AtomicU32, core::sync::atomic::AtomicU32, u32);
atomic_int!(AtomicU64, core::sync::atomic::AtomicU64, u64);
atomic_int!(AtomicUsize, core::sync::atomic::AtomicUsize, usize);
atomic_arith!(AtomicU32, u32);
atomic_arith!(AtomicU64, u64);
atomic_arith!(AtomicU8, u8);
atomic_arith!(AtomicUsize, usize);

/// An atomic pointer that reports its operations (see the module docs).
#[repr(transparent)]
pub struct AtomicPtr<T>(core::sync::atomic::AtomicPtr<T>);

impl<T> AtomicPtr<T> {
    /// A new atomic holding `p`.
    pub const fn new(p: *mut T) -> Self {
        Self(core::sync::atomic::AtomicPtr::new(p))
    }
    #[inline(always)]
    fn addr(&self) -> usize {
        self as *const Self as usize
    }
    /// As `core`'s `load`.
    #[inline(always)]
    pub fn load(&self, o: Ordering) -> *mut T {
        let v = self.0.load(o);
        atomic_done(self.addr(), Access::Load(o));
        v
    }
    /// As `core`'s `store`.
    #[inline(always)]
    pub fn store(&self, v: *mut T, o: Ordering) {
        self.0.store(v, o);
        atomic_done(self.addr(), Access::Store(o));
    }
    /// As `core`'s `swap`.
    #[inline(always)]
    pub fn swap(&self, v: *mut T, o: Ordering) -> *mut T {
        let r = self.0.swap(v, o);
        atomic_done(self.addr(), Access::Rmw(o));
        r
    }
    /// As `core`'s `compare_exchange`.
    #[inline(always)]
    pub fn compare_exchange(&self, cur: *mut T, new: *mut T, ok: Ordering, err: Ordering) -> Result<*mut T, *mut T> {
        let r = self.0.compare_exchange(cur, new, ok, err);
        atomic_done(self.addr(), if r.is_ok() { Access::Rmw(ok) } else { Access::Load(load_part(err)) });
        r
    }
    /// As `core`'s `compare_exchange_weak`.
    #[inline(always)]
    pub fn compare_exchange_weak(&self, cur: *mut T, new: *mut T, ok: Ordering, err: Ordering) -> Result<*mut T, *mut T> {
        let r = self.0.compare_exchange_weak(cur, new, ok, err);
        atomic_done(self.addr(), if r.is_ok() { Access::Rmw(ok) } else { Access::Load(load_part(err)) });
        r
    }
    /// As `core`'s `get_mut`.
    #[inline(always)]
    pub fn get_mut(&mut self) -> &mut *mut T {
        self.0.get_mut()
    }
}
