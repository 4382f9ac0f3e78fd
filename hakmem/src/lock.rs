//! A spin-then-yield lock. The allocator cannot use `std::sync::Mutex` because fork handlers must
//! release a lock held across `fork()` without a guard, and because slow paths hold it only briefly.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// A lock around `T` with an explicit unlock for the fork child.
pub struct SpinLock<T> {
    locked: AtomicBool,
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
    /// A new unlocked lock.
    pub const fn new(value: T) -> Self {
        SpinLock { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
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
            while self.locked.load(Ordering::Relaxed) {
                spins += 1;
                if spins < 64 {
                    core::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    }

    /// Releases a lock taken by [`SpinLock::acquire`].
    ///
    /// # Safety
    /// The caller must hold the lock (or be the only thread left after `fork`).
    pub unsafe fn force_unlock(&self) {
        // FAULT fault-unlock-relaxed (failure 3): a Relaxed release publishes nothing the next
        // holder can rely on.
        let order = if cfg!(feature = "fault-unlock-relaxed") { Ordering::Relaxed } else { Ordering::Release };
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
