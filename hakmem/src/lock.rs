//! A spin-then-yield lock. The allocator cannot use `std::sync::Mutex` because fork handlers must
//! release a lock held across `fork()` without a guard, and because slow paths hold it only briefly.
//! Each lock has a [`LockClass`] and reports taking, waiting and releasing to the scheduler hooks
//! of `sched` builds (see [`crate::sync`]): lock order and deadlocks are checked there.

use crate::sync::{lock_event, AtomicBool, LockClass, LockEvent, Ordering};
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};

/// A lock around `T` with an explicit unlock for the fork child.
pub struct SpinLock<T> {
    locked: AtomicBool,
    class: LockClass,
    value: UnsafeCell<T>,
}

// SAFETY: the lock serialises all access to `value`.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the value; no thread can hold it across the move.
unsafe impl<T: Send> Send for SpinLock<T> {}

/// Proof that the lock is held; unlocks on drop.
pub struct Guard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> SpinLock<T> {
    /// A new unlocked lock of class `class`.
    pub const fn new(class: LockClass, value: T) -> Self {
        SpinLock { locked: AtomicBool::new(false), class, value: UnsafeCell::new(value) }
    }

    /// The lock word's address: the scheduler of `sched` builds knows a lock by it, so that it
    /// can tell the step whose compare-and-swap just took the lock from one that has not.
    fn addr(&self) -> usize {
        &self.locked as *const AtomicBool as usize
    }

    /// Acquires the lock, spinning briefly and then yielding the CPU.
    pub fn lock(&self) -> Guard<'_, T> {
        self.acquire();
        Guard { lock: self }
    }

    /// Acquires the lock with no guard; pair with [`SpinLock::force_unlock`].
    pub fn acquire(&self) {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // A scheduler that runs one logical thread at a time lets the holder run here; under
            // one, spinning would keep the turn from the holder, so each try reports again.
            lock_event(self.addr(), self.class, LockEvent::Wait);
            while !crate::sync::scheduled() && self.locked.load(Ordering::Relaxed) {
                spins += 1;
                if spins < 64 {
                    core::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        lock_event(self.addr(), self.class, LockEvent::Acquired);
    }

    /// Releases a lock taken by [`SpinLock::acquire`].
    ///
    /// # Safety
    /// The caller must hold the lock (or be the only thread left after `fork`).
    pub unsafe fn force_unlock(&self) {
        // FAULT fault-unlock-relaxed (failure 3): a Relaxed release publishes nothing the next
        // holder can rely on.
        let order = if cfg!(feature = "fault-unlock-relaxed") { Ordering::Relaxed } else { Ordering::Release };
        lock_event(self.addr(), self.class, LockEvent::Released);
        self.locked.store(false, order);
    }

    /// Mutable access without locking, through exclusive ownership.
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held, and `&mut self` makes this access unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard holds the lock.
        unsafe { self.lock.force_unlock() }
    }
}
