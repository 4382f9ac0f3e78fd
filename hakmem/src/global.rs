//! The process-wide allocators: per policy one [`Heap`], one cache per OS thread in TLS, and C
//! malloc semantics on top (used by `#[global_allocator]` and by the preload libraries).
//! [`HakMem`] is the release one, [`HakMemChecked`] the checked one; the C functions take the
//! policy as a type parameter (`malloc::<Release>`).
//!
//! Setting up a thread's cache allocates nothing through hakmem: the cache lives in the heap's
//! arena, the TLS slot is a plain pointer, and thread exit is caught by a pthread key (whose
//! `pthread_setspecific` needs no memory for the first 32 keys). If something on that path ever
//! did call malloc, the thread would find its slot marked `SETTING_UP` and abort with a message,
//! rather than recurse.
//!
//! After a thread's cache is destroyed (its pthread key destructor ran), later frees on that
//! thread go through remote queues and later allocations through one shared, locked fallback
//! cache, so nothing a late destructor does is lost.

use crate::cache::{free_unowned, usable_size, CacheInner};
use crate::heap::Heap;
use crate::layout::{round_up, PAGE};
use crate::lock::SpinLock;
use crate::report::fatal;
use crate::check::Checked;
use crate::policy::{Policy, Release};
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::null_mut;
use std::sync::Once;

/// The process-wide state of one policy's global allocator.
pub struct Statics<P: Policy> {
    /// The heap every thread's cache draws from.
    pub heap: Heap<P>,
    fallback: SpinLock<Fallback<P>>,
    key_once: Once,
    fork_once: Once,
    key: UnsafeCell<libc::pthread_key_t>,
}

// SAFETY: `key` is written once under `key_once` and only read after it; the rest is Sync.
unsafe impl<P: Policy> Sync for Statics<P> {}

impl<P: Policy> Statics<P> {
    const fn new() -> Self {
        Statics {
            heap: Heap::new(),
            fallback: SpinLock::new(crate::sync::LockClass::Fallback, Fallback(null_mut())),
            key_once: Once::new(),
            fork_once: Once::new(),
            key: UnsafeCell::new(0),
        }
    }
}

/// A policy with a process-wide allocator: its statics and its per-thread cache slot.
pub trait Global: Policy {
    /// This policy's process-wide state.
    fn statics() -> &'static Statics<Self>;
    /// This thread's cache pointer (or UNSET / SETTING_UP / GONE).
    fn cache() -> *mut CacheInner<Self>;
    /// Sets this thread's cache pointer.
    fn set_cache(c: *mut CacheInner<Self>);
}

// The per-thread cache slot, read on every malloc and free. Rust's `thread_local!` compiles to
// the general-dynamic TLS model in a shared library, a call to `__tls_get_addr` per access (22
// instructions of the preload library's ~88 per malloc/free op), and stable Rust cannot ask for
// another model. So on x86-64 Linux the slot is an 8-byte `.tbss` symbol of our own, reached
// with the initial-exec sequence (the slot's offset from the thread pointer, loaded from the
// GOT, then one %fs-relative access), as mimalloc's C library does. Initial-exec needs the slot
// in the static TLS block: true for LD_PRELOAD libraries and executables (where the linker
// relaxes it further to local-exec); a `dlopen`ed library gets glibc's surplus static TLS.
// Elsewhere, and under Miri (which runs no assembly), `thread_local!`.
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
macro_rules! tls_storage {
    ($policy:ty, $sym:literal) => {
        // 8 zeroed bytes of thread-local storage; hidden, so that a program with two copies of
        // the library cannot bind one's accesses to the other's slot.
        core::arch::global_asm!(
            ".pushsection .tbss,\"awT\",@nobits",
            ".p2align 3",
            concat!(".globl ", $sym),
            concat!(".hidden ", $sym),
            concat!(".type ", $sym, ",@object"),
            concat!(".size ", $sym, ",8"),
            concat!($sym, ":"),
            ".zero 8",
            ".popsection",
        );
    };
}
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
macro_rules! tls_slot {
    ($policy:ty, $sym:literal) => {
        #[inline(always)]
        fn cache() -> *mut CacheInner<$policy> {
            let c: *mut CacheInner<$policy>;
            // SAFETY: reads this thread's own slot (declared by `tls_storage`), which only this
            // thread writes; touches no stack and no flags.
            unsafe {
                core::arch::asm!(
                    concat!("mov {c}, qword ptr [rip + ", $sym, "@GOTTPOFF]"),
                    "mov {c}, qword ptr fs:[{c}]",
                    c = out(reg) c,
                    options(nostack, preserves_flags, readonly, pure),
                );
            }
            c
        }
        #[inline(always)]
        fn set_cache(c: *mut CacheInner<$policy>) {
            // SAFETY: writes this thread's own slot (declared by `tls_storage`); touches no
            // stack and no flags.
            unsafe {
                core::arch::asm!(
                    concat!("mov {t}, qword ptr [rip + ", $sym, "@GOTTPOFF]"),
                    "mov qword ptr fs:[{t}], {c}",
                    t = out(reg) _,
                    c = in(reg) c,
                    options(nostack, preserves_flags),
                );
            }
        }
    };
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri))))]
macro_rules! tls_storage {
    ($policy:ty, $sym:literal) => {
        impl $policy {
            fn slot() -> &'static std::thread::LocalKey<core::cell::Cell<*mut CacheInner<$policy>>> {
                thread_local! {
                    static SLOT: core::cell::Cell<*mut CacheInner<$policy>> = const { core::cell::Cell::new(null_mut()) };
                }
                &SLOT
            }
        }
    };
}
#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri))))]
macro_rules! tls_slot {
    ($policy:ty, $sym:literal) => {
        #[inline(always)]
        fn cache() -> *mut CacheInner<$policy> {
            Self::slot().with(core::cell::Cell::get)
        }
        #[inline(always)]
        fn set_cache(c: *mut CacheInner<$policy>) {
            Self::slot().with(|s| s.set(c))
        }
    };
}

// Statics cannot be generic, so each policy gets its own by macro.
macro_rules! global_for {
    ($policy:ty, $statics:ident, $sym:literal) => {
        static $statics: Statics<$policy> = Statics::new();
        tls_storage!($policy, $sym);
        impl Global for $policy {
            #[inline(always)]
            fn statics() -> &'static Statics<$policy> {
                &$statics
            }
            tls_slot!($policy, $sym);
        }
    };
}
global_for!(Release, RELEASE, "hakmem_tls_cache_release");
global_for!(Checked, CHECKED, "hakmem_tls_cache_checked");

const UNSET: usize = 0;
const SETTING_UP: usize = 1;
const GONE: usize = 2;

struct Fallback<P: Policy>(*mut CacheInner<P>);
// SAFETY: the fallback cache is only used under its lock.
unsafe impl<P: Policy> Send for Fallback<P> {}

/// Runs `f` on this thread's cache, setting it up on first use.
#[inline(always)]
fn with_cache<G: Global, R>(f: impl FnOnce(&mut CacheInner<G>) -> R) -> R {
    let c = G::cache();
    if c.addr() > GONE {
        // SAFETY: a valid TLS pointer is this thread's own live cache.
        f(unsafe { &mut *c })
    } else {
        with_cache_slow(c, f)
    }
}

#[cold]
#[inline(never)]
fn with_cache_slow<G: Global, R>(c: *mut CacheInner<G>, f: impl FnOnce(&mut CacheInner<G>) -> R) -> R {
    match c.addr() {
        UNSET => {
            let c = setup_thread::<G>();
            if !c.is_null() {
                // SAFETY: just created for this thread.
                return f(unsafe { &mut *c });
            }
        }
        SETTING_UP => fatal("hakmem: allocation re-entered while setting up a thread cache\n"),
        _ => {}
    }
    let g = G::statics();
    let mut fb = g.fallback.lock();
    if fb.0.is_null() {
        fb.0 = CacheInner::create(&g.heap);
        if fb.0.is_null() {
            fatal("hakmem: out of memory creating the fallback cache\n");
        }
    }
    // SAFETY: the fallback cache is live forever and the lock makes this use exclusive.
    f(unsafe { &mut *fb.0 })
}

fn setup_thread<G: Global>() -> *mut CacheInner<G> {
    let g = G::statics();
    G::set_cache(core::ptr::without_provenance_mut(SETTING_UP));
    g.key_once.call_once(|| {
        // SAFETY: the key is written once, here, before any reader passes the Once.
        let rc = unsafe { libc::pthread_key_create(g.key.get(), Some(thread_exit::<G>)) };
        if rc != 0 {
            fatal("hakmem: pthread_key_create failed\n");
        }
        // Before the first cache, which takes its countdown from it.
        g.heap.set_guard_sample(env_number(c"HAKMEM_GUARD_SAMPLE"));
    });
    let c = CacheInner::create(&g.heap);
    if c.is_null() {
        G::set_cache(core::ptr::without_provenance_mut(UNSET));
        return c;
    }
    // SAFETY: the key was created above; a non-null value makes the destructor run at thread exit.
    unsafe { libc::pthread_setspecific(*g.key.get(), c.cast()) };
    G::set_cache(c);
    // Registration may allocate (glibc grows a list); the cache is usable by now, so that is fine.
    g.fork_once.call_once(install_fork_handlers::<G>);
    c
}

/// The decimal number in environment variable `name` (0 when unset or not a number), read
/// without allocating: this runs inside the first allocation.
fn env_number(name: &core::ffi::CStr) -> u32 {
    // SAFETY: getenv with a NUL-terminated name; a non-null result is a NUL-terminated string,
    // read up to its NUL.
    unsafe {
        let mut s = libc::getenv(name.as_ptr()).cast::<u8>().cast_const();
        if s.is_null() {
            return 0;
        }
        let mut n = 0u32;
        while (*s).is_ascii_digit() {
            n = n.saturating_mul(10).saturating_add((*s - b'0') as u32);
            s = s.add(1);
        }
        if *s == 0 { n } else { 0 }
    }
}

unsafe extern "C" fn thread_exit<G: Global>(c: *mut libc::c_void) {
    G::set_cache(core::ptr::without_provenance_mut(GONE));
    // SAFETY: `c` is the cache this thread set up; no one else uses it.
    unsafe { CacheInner::<G>::destroy(c.cast()) };
}

// fork() copies one thread; a lock held by another thread at that moment would never be released
// in the child. Holding every allocator lock across the fork prevents that. Order: fallback, then
// heap (the fallback path takes them in that order too).
extern "C" fn fork_prepare<G: Global>() {
    let g = G::statics();
    g.fallback.acquire();
    g.heap.lock_for_fork();
}

extern "C" fn fork_release<G: Global>() {
    let g = G::statics();
    // SAFETY: fork_prepare took both locks in this thread (the only one left in the child).
    unsafe {
        g.heap.unlock_after_fork();
        g.fallback.force_unlock();
    }
}

fn install_fork_handlers<G: Global>() {
    // SAFETY: the handlers are plain functions that live as long as the process.
    unsafe { libc::pthread_atfork(Some(fork_prepare::<G>), Some(fork_release::<G>), Some(fork_release::<G>)) };
}


/// The global allocator: `#[global_allocator] static A: hakmem::HakMem = hakmem::HakMem;`
#[derive(Debug, Clone, Copy, Default)]
pub struct HakMem;

/// The checked global allocator: every misuse is reported (and aborts) instead of corrupting.
/// `#[global_allocator] static A: hakmem::HakMemChecked = hakmem::HakMemChecked;`
#[derive(Debug, Clone, Copy, Default)]
pub struct HakMemChecked;

macro_rules! global_alloc_for {
    ($ty:ty, $policy:ty) => {
        // SAFETY: every method forwards to a cache that honours size and alignment, returns null
        // on failure, and accepts back exactly the blocks it handed out.
        unsafe impl GlobalAlloc for $ty {
            #[inline]
            unsafe fn alloc(&self, l: Layout) -> *mut u8 {
                with_cache::<$policy, _>(|c| c.alloc(l.size(), l.align()))
            }

            #[inline]
            unsafe fn dealloc(&self, p: *mut u8, _l: Layout) {
                // SAFETY: GlobalAlloc's contract: p is a live block from this allocator.
                unsafe { free_in::<$policy, false>(p) }
            }

            #[inline]
            unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
                with_cache::<$policy, _>(|c| c.alloc_zeroed(l.size(), l.align()))
            }

            #[inline]
            unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
                // SAFETY: GlobalAlloc's contract: p is live and was allocated with layout l.
                with_cache::<$policy, _>(|c| unsafe { c.realloc(p, new_size, l.align()) })
            }
        }
    };
}
global_alloc_for!(HakMem, Release);
global_alloc_for!(HakMemChecked, Checked);

// ---- C semantics ---------------------------------------------------------------------------
// These follow glibc where the standards leave room (realloc(p, 0) frees and returns null;
// memalign rounds a non-power-of-two alignment up).

fn set_errno(e: i32) {
    // SAFETY: errno is thread-local and always writable.
    unsafe { *libc::__errno_location() = e };
}

fn enomem_if_null(p: *mut u8) -> *mut u8 {
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p
}

/// C `malloc`: at least `size` bytes, 16-byte aligned; null with `ENOMEM` on failure.
#[inline]
pub fn malloc<G: Global>(size: usize) -> *mut u8 {
    let c = G::cache();
    if c.addr() > GONE {
        // SAFETY: a valid TLS pointer is this thread's own live cache.
        if let Some(p) = unsafe { (*c).malloc_fast(size) } {
            // Only a checked slot can be refused.
            return if G::CHECKED { enomem_if_null(p) } else { p };
        }
    }
    malloc_slow::<G>(size)
}

/// [`malloc`] past its fast path. `extern "C"` (cannot unwind) so that the C entry point
/// tail-calls it and saves no register (see `CacheInner::free_other`).
#[cold]
#[inline(never)]
extern "C" fn malloc_slow<G: Global>(size: usize) -> *mut u8 {
    let c = G::cache();
    enomem_if_null(if c.addr() > GONE {
        // SAFETY: as in `malloc`, whose fast path just said None.
        unsafe { (*c).malloc_slow(size) }
    } else {
        with_cache_slow(c, |c| c.malloc(size))
    })
}

/// C `free`: release mode reports a pointer in no mapping of a heap rather than read behind it
/// (see `cache::locate`).
///
/// # Safety
/// `p` is null or a live block of the global heap.
#[inline(always)]
pub unsafe fn free<G: Global>(p: *mut u8) {
    // The release path is a few instructions: inlined into the C entry point it saves a call
    // and a return. The checked path is long: a call costs it little, and inlined it made the
    // entry point save more registers (6 instructions per free, measured).
    // SAFETY: forwarded.
    unsafe {
        if G::CHECKED {
            free_outlined::<G>(p)
        } else {
            free_in::<G, true>(p)
        }
    }
}

/// The C [`free`]'s body, out of line.
///
/// # Safety
/// As for [`free`].
#[inline(never)]
unsafe fn free_outlined<G: Global>(p: *mut u8) {
    // SAFETY: forwarded.
    unsafe { free_in::<G, true>(p) }
}

/// The body of [`free`] (`UNTRUSTED`: from C) and of `GlobalAlloc::dealloc`.
///
/// # Safety
/// As for [`free`].
#[inline(always)]
unsafe fn free_in<G: Global, const UNTRUSTED: bool>(p: *mut u8) {
    // Null (from C) is told apart off the fast path: it lies in no small region.
    let c = G::cache();
    // SAFETY: the caller promises a live block; a valid TLS pointer is this thread's cache.
    unsafe {
        if c.addr() > GONE {
            (*c).free_in::<UNTRUSTED>(p)
        } else {
            free_slow::<G, UNTRUSTED>(c, p)
        }
    }
}

/// [`free_in`] on a thread without a cache: its first free sets one up, as its first allocation
/// would, so that a thread that only frees (a consumer) batches its remote frees like any other
/// instead of paying an atomic operation on the slab's queue for every one. A thread whose cache
/// is being set up or is gone, or that cannot get one, frees onto the slab's queue.
///
/// # Safety
/// As for [`free_in`]; `c` is this thread's cache pointer, not a live cache.
// `extern "C"` (cannot unwind), so that the C entry point may tail-call it: see
// `CacheInner::free_other`.
#[cold]
#[inline(never)]
unsafe extern "C" fn free_slow<G: Global, const UNTRUSTED: bool>(c: *mut CacheInner<G>, p: *mut u8) {
    if p.is_null() {
        return;
    }
    if c.addr() == UNSET {
        let c = setup_thread::<G>();
        if !c.is_null() {
            // SAFETY: forwarded; just created for this thread.
            return unsafe { (*c).free_in::<UNTRUSTED>(p) };
        }
    }
    // SAFETY: forwarded.
    unsafe { free_unowned::<G, UNTRUSTED>(&G::statics().heap, p) }
}

/// C `calloc`: zeroed `n * size` bytes; null with `ENOMEM` on overflow or failure.
pub fn calloc<G: Global>(n: usize, size: usize) -> *mut u8 {
    match n.checked_mul(size) {
        Some(total) => enomem_if_null(with_cache::<G, _>(|c| c.alloc_zeroed(total, 16))),
        None => enomem_if_null(null_mut()),
    }
}

/// C `realloc`.
///
/// # Safety
/// `p` is null or a live block of the global heap.
pub unsafe fn realloc<G: Global>(p: *mut u8, size: usize) -> *mut u8 {
    if p.is_null() {
        return malloc::<G>(size);
    }
    if size == 0 {
        // SAFETY: forwarded.
        unsafe { free::<G>(p) };
        return null_mut();
    }
    // SAFETY: forwarded.
    enomem_if_null(with_cache::<G, _>(|c| unsafe { c.realloc_untrusted(p, size, 16) }))
}

/// C `reallocarray`: `realloc(p, n * size)` with overflow detection.
///
/// # Safety
/// `p` is null or a live block of the global heap.
pub unsafe fn reallocarray<G: Global>(p: *mut u8, n: usize, size: usize) -> *mut u8 {
    match n.checked_mul(size) {
        // SAFETY: forwarded.
        Some(total) => unsafe { realloc::<G>(p, total) },
        None => enomem_if_null(null_mut()),
    }
}

/// Allocation at `align` (a power of two), at least malloc's 16.
fn alloc_aligned<G: Global>(size: usize, align: usize) -> *mut u8 {
    enomem_if_null(with_cache::<G, _>(|c| c.alloc(size, align.max(16))))
}

/// C `posix_memalign`: returns 0, `EINVAL` or `ENOMEM` (and leaves errno alone).
///
/// # Safety
/// `out` must be writable.
pub unsafe fn posix_memalign<G: Global>(out: *mut *mut u8, align: usize, size: usize) -> i32 {
    if !align.is_power_of_two() || align % core::mem::size_of::<usize>() != 0 {
        return libc::EINVAL;
    }
    let p = with_cache::<G, _>(|c| c.alloc(size, align.max(16)));
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller promises `out` is writable.
    unsafe { *out = p };
    0
}

/// C11 `aligned_alloc`: as in glibc before 2.38 (Debian 12 has 2.36), which the standard
/// allows, the same as `memalign`: an alignment that is not a power of two (0 included) is
/// rounded up to one rather than refused.
pub fn aligned_alloc<G: Global>(align: usize, size: usize) -> *mut u8 {
    memalign::<G>(align, size)
}

/// Obsolete `memalign`: like glibc, rounds a non-power-of-two alignment up.
pub fn memalign<G: Global>(align: usize, size: usize) -> *mut u8 {
    match align.checked_next_power_of_two() {
        Some(a) => alloc_aligned::<G>(size, a),
        None => {
            set_errno(libc::EINVAL);
            null_mut()
        }
    }
}

/// Obsolete `valloc`: page-aligned.
pub fn valloc<G: Global>(size: usize) -> *mut u8 {
    alloc_aligned::<G>(size, PAGE)
}

/// Obsolete `pvalloc`: page-aligned and rounded up to whole pages.
pub fn pvalloc<G: Global>(size: usize) -> *mut u8 {
    match round_up(size.max(1), PAGE) {
        Some(s) => alloc_aligned::<G>(s, PAGE),
        None => enomem_if_null(null_mut()),
    }
}

/// `malloc_usable_size`: bytes usable in `p`, 0 for null.
///
/// # Safety
/// `p` is null or a live block of the global heap.
pub unsafe fn malloc_usable_size<G: Global>(p: *mut u8) -> usize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: forwarded.
    unsafe { usable_size::<G, true>(&G::statics().heap, p, 0) }
}

/// `malloc_trim`: gives the memory the global heap holds but does not use back to the OS now
/// ([`Heap::trim`]); 1 if that returned any memory, else 0.
pub fn malloc_trim<G: Global>() -> i32 {
    let heap = &G::statics().heap;
    let before = heap.stats();
    heap.trim();
    let after = heap.stats();
    (after.mapped_bytes < before.mapped_bytes || after.purges > before.purges) as i32
}

/// Writes the global heap's statistics to stderr as one `hakmem:` line, allocating nothing.
pub fn print_stats<G: Global>() {
    write_stats::<G>(2);
}

/// Writes the global heap's statistics as one `hakmem:` line to file descriptor `fd`.
pub fn write_stats<G: Global>(fd: i32) {
    use core::fmt::Write;
    struct Buf {
        b: [u8; 512],
        n: usize,
    }
    impl Write for Buf {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let room = self.b.len() - self.n;
            let k = s.len().min(room);
            self.b[self.n..self.n + k].copy_from_slice(&s.as_bytes()[..k]);
            self.n += k;
            Ok(())
        }
    }
    let s = G::statics().heap.stats();
    let mut out = Buf { b: [0; 512], n: 0 };
    let _ = writeln!(
        out,
        "hakmem: mapped {} KiB (peak {} KiB), {} small regions ({} empty), {} large blocks live of {} mapped, \
         {} caches, {} abandoned slabs, {} dirty pooled slabs, {} purges ({} heap)",
        s.mapped_bytes >> 10,
        s.peak_mapped_bytes >> 10,
        s.small_regions,
        s.empty_regions,
        s.large_blocks,
        s.large_allocs,
        s.caches,
        s.abandoned_slabs,
        s.dirty_pooled_slabs,
        s.purges,
        G::NAME
    );
    // SAFETY: writing an initialised buffer to stderr.
    unsafe { libc::write(fd, out.b.as_ptr().cast(), out.n) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks handed to another thread.
    struct Blocks(Vec<*mut u8>);
    // SAFETY: the blocks are the receiving thread's to free; nothing else touches them.
    unsafe impl Send for Blocks {}
    impl Blocks {
        fn take(self) -> Vec<*mut u8> {
            self.0
        }
    }

    #[test]
    fn a_thread_that_only_frees_gets_a_cache_and_batches() {
        let blocks = Blocks((0..100).map(|i| malloc::<Release>(16 + i % 7 * 16)).collect());
        assert!(blocks.0.iter().all(|p| !p.is_null()));
        std::thread::spawn(move || {
            assert_eq!(Release::cache().addr(), UNSET, "a new thread has no cache");
            for p in blocks.take() {
                // SAFETY: live blocks of the global heap, freed once.
                unsafe { free::<Release>(p) };
            }
            let c = Release::cache();
            assert!(c.addr() > GONE, "the first free set up a cache");
            // SAFETY: this thread's live cache, used by nobody else.
            let h = unsafe { (*c).holdings() };
            // SAFETY: the cache's own batches.
            assert!(h.outbox.iter().any(|&b| !b.is_null() && unsafe { (*b).len() } > 0), "the frees wait in the cache's outbox, not on the slabs' queues");
        })
        .join()
        .unwrap();
    }
}
