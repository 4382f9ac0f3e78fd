//! hakmem as a C malloc drop-in: `LD_PRELOAD=target/release/libhakmem.so program`.
//!
//! Every symbol is a one-line forward to `hakmem::global`, which owns the semantics; this crate
//! only gives them C names. It is a separate crate so that linking the Rust library never
//! replaces a program's malloc by accident.
//!
//! The same source builds two libraries: `libhakmem.so` (release policy) from this crate, and
//! `libhakmem_checked.so` (checked policy: every misuse reported, then abort) from
//! `hakmem/preload-checked`, which compiles this file with its `checked` feature.
//!
//! Environment: `HAKMEM_STATS=1` prints the heap's statistics to stderr at exit;
//! `HAKMEM_GUARD_SAMPLE=N` puts one small block in N on guard pages (see
//! `hakmem::Heap::set_guard_sample`; 0, the default: none).

use core::ffi::c_void;
use hakmem::global as g;

#[cfg(not(feature = "checked"))]
type G = hakmem::Release;
#[cfg(feature = "checked")]
type G = hakmem::Checked;

/// Rust code inside this library allocates through hakmem too, never through a malloc that might
/// resolve back to the symbols below while they are being set up.
#[cfg(not(feature = "checked"))]
#[global_allocator]
static ALLOC: hakmem::HakMem = hakmem::HakMem;
#[cfg(feature = "checked")]
#[global_allocator]
static ALLOC: hakmem::HakMemChecked = hakmem::HakMemChecked;

/// C `malloc`.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    g::malloc::<G>(size).cast()
}

/// C `free`.
///
/// # Safety
/// `p` is null or a live block from this library.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: C's contract for free.
    unsafe { g::free::<G>(p.cast()) }
}

/// Old BSD alias of `free`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: C's contract for free.
    unsafe { g::free::<G>(p.cast()) }
}

/// C `calloc`.
#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    g::calloc::<G>(n, size).cast()
}

/// C `realloc`.
///
/// # Safety
/// `p` is null or a live block from this library.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: C's contract for realloc.
    unsafe { g::realloc::<G>(p.cast(), size).cast() }
}

/// `reallocarray` (glibc, BSD).
///
/// # Safety
/// `p` is null or a live block from this library.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    // SAFETY: C's contract for reallocarray.
    unsafe { g::reallocarray::<G>(p.cast(), n, size).cast() }
}

/// POSIX `posix_memalign`.
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    // SAFETY: POSIX's contract for posix_memalign.
    unsafe { g::posix_memalign::<G>(out.cast(), align, size) }
}

/// C11 `aligned_alloc`.
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    g::aligned_alloc::<G>(align, size).cast()
}

/// Obsolete `memalign`.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    g::memalign::<G>(align, size).cast()
}

/// Obsolete `valloc`.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    g::valloc::<G>(size).cast()
}

/// Obsolete `pvalloc`.
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    g::pvalloc::<G>(size).cast()
}

/// glibc `malloc_usable_size`.
///
/// # Safety
/// `p` is null or a live block from this library.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: glibc's contract for malloc_usable_size.
    unsafe { g::malloc_usable_size::<G>(p.cast()) }
}

/// glibc `malloc_trim`: returns the memory hakmem keeps beyond its limits to the OS now (the
/// padding argument does not apply: hakmem keeps no heap top to pad).
#[no_mangle]
pub extern "C" fn malloc_trim(_pad: usize) -> i32 {
    g::malloc_trim::<G>()
}

/// A private copy of stderr for the statistics line: programs such as coreutils close fd 2 in
/// their own exit handler, which runs before ours (it was registered later).
static STATS_FD: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(2);

extern "C" fn print_stats_at_exit() {
    g::write_stats::<G>(STATS_FD.load(core::sync::atomic::Ordering::Relaxed));
}

/// Runs when the library is loaded: arms `HAKMEM_STATS`.
extern "C" fn on_load() {
    // SAFETY: getenv with a NUL-terminated name; the result is only tested, not kept.
    let stats = unsafe { libc::getenv(c"HAKMEM_STATS".as_ptr()) };
    // SAFETY: a non-null result is a NUL-terminated string.
    if !stats.is_null() && unsafe { *stats } != 0 && unsafe { *stats } != b'0' as libc::c_char {
        // SAFETY: duplicating a descriptor; close-on-exec keeps it out of child programs, and a
        // high number keeps it out of the way of programs that expect low descriptors free.
        let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 100) };
        if fd >= 0 {
            STATS_FD.store(fd, core::sync::atomic::Ordering::Relaxed);
        }
        // SAFETY: registering a plain function.
        unsafe { libc::atexit(print_stats_at_exit) };
    }
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;
