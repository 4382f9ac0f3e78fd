//! Guarded allocation in the style of GWP-ASan: a block of up to a page gets a page of its own
//! between two inaccessible guard pages, and its page becomes inaccessible when it is freed. An
//! overflow past the page, an underflow before it, or any use after free then faults at the
//! faulting instruction, and the signal handler ([`install_fault_handler`]) names the block. The
//! allocator sends a sample of its requests here (the caller decides which); every guarded block
//! costs a page and two `mprotect`s, so it is for sampling, not for every request.
//!
//! # Arenas
//! A pool maps arenas of [`REGION_SIZE`], aligned to their size like every hakmem region, so
//! `region_base(p)` finds an arena from any of its addresses and the arena's first word,
//! [`GUARD_KIND`], tells the free path that `p` is guarded:
//! ```text
//! | header: kind, per-slot records | guard | data 0 | guard | data 1 | ... | data 507 | guard | spare |
//!   HEADER_PAGES pages, read-write    PROT_NONE except the data page of a live block
//! ```
//! A block sits at the END of its data page (`user = page_end - round_up(size, align)`), so
//! reading or writing past its rounded size faults on the next guard page; a page-sized block
//! also starts at its page, so `p[-1]` faults on the guard page before. The bytes of the page
//! around the block (in front of it, and the up to `align - 1` bytes of rounding after it) hold
//! [`crate::layout::TAIL`] and are checked at free: a small overflow inside the rounding, or an
//! underflow into the front of the page, is reported then (heap buffer overflow / underflow).
//!
//! # Lifetime of a slot
//! never used → live (alloc: the data page is made read-write) → quarantined (free: the page is
//! made `PROT_NONE`) → free, when [`QUARANTINE`] later frees pushed it out of the pool's FIFO
//! quarantine → live again. So a freed block's address is not handed out again for at least
//! `QUARANTINE` frees, and a use after free within that window faults. A freed page keeps its
//! contents: dropping them (`MADV_DONTNEED`) and the zero-fill fault when the page is used again
//! cost twice what the two `mprotect`s do. Instead a reused slot's block is zeroed, so a guarded
//! block always reads as zero when handed out; and as the free list is LIFO, a pool touches
//! about `QUARANTINE` pages more than its peak of live blocks (1 MiB), which
//! [`GuardPool::trim`] (`Heap::trim`, `malloc_trim`) gives back.
//!
//! # Faults
//! The handler may run on a thread that holds the pool's lock (a fault in the middle of an
//! allocation), so it never takes it: a process-wide registry of arena addresses (atomics,
//! written when an arena is mapped or unmapped) says whether an address is in an arena, and each
//! slot's record is a small seqlock of atomics, which the handler reads until it gets a settled
//! copy (a few thousand tries; a record the faulting thread itself was rewriting is reported as
//! such). The pool's lock is held across the `mprotect`s of alloc and free so that a slot's
//! protection always matches its record (guarded allocations are rare: contention is not).
//!
//! In `sched` builds with hooks installed, the handler's atomic loads report to the hooks like
//! any others (the fuzz harness does not fault on purpose, so they never run there).
//!
//! Under Miri (no `mprotect`, no signals) [`GuardPool::alloc`] always declines, so callers fall
//! back to the normal allocator, and the tests are ignored.
//!
//! # How the allocator uses it
//! - free: test `kind == GUARD_KIND` at `region_base(p)` before the large-block fallback of
//!   `cache::locate` (which takes every kind but SMALL_KIND for a large block), and hand `p` to
//!   [`GuardPool::free`]; a checked free of an unknown pointer can ask [`owns`] first, which
//!   reads no memory;
//! - usable size and realloc: [`GuardPool::usable_size`] (a guarded block has exactly the bytes
//!   requested; realloc moves it out to a normal block or another guarded one);
//! - calloc: a guarded block reads as zero, so no memset;
//! - heap drop and reset: [`GuardPool::release_all`] (dropping the pool does it too); fork:
//!   [`GuardPool::lock_for_fork`] and [`GuardPool::unlock_after_fork`] with the heap's locks;
//! - [`install_fault_handler`] once the first guarded block exists (it is idempotent).

// Parts of the pool's API (its statistics, an arena limit) serve only its tests.
#![cfg_attr(not(test), allow(dead_code))]

use crate::layout::TAIL;
use crate::layout::{region_base, region_offset, round_up, PAGE, REGION_SIZE};
use crate::lock::SpinLock;
use crate::os;
use crate::report::{Fault, Identity, Report, ReportKind};
use crate::sync::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, LockClass, Ordering::{Acquire, Relaxed, Release}};
use core::cell::UnsafeCell;
use core::ptr::null_mut;

/// Marks a guard arena: the first word of each, as [`crate::region::SMALL_KIND`] marks a small
/// region.
pub(crate) const GUARD_KIND: u64 = 0x6861_6b6d_6775_6172; // "hakmguar"
/// Largest request the pool serves (one data page); alignments up to a page are served too.
pub(crate) const MAX_REQUEST: usize = PAGE;
/// Arenas a pool maps at most. Each live guarded block splits its arena's mapping into two more
/// kernel VMAs (a read-write page between `PROT_NONE` ones), and a process has 65530 by default:
/// 16 arenas (8128 live blocks at most) keep the pool to a quarter of that.
pub(crate) const MAX_ARENAS: usize = 16;
/// Freed slots a pool keeps unusable before reusing the oldest (per pool, FIFO).
pub(crate) const QUARANTINE: usize = 256;
/// Arenas of all pools in the process at most (the registry's size); a pool that finds it full
/// maps no more and its allocations fall back to the normal allocator.
const REGISTRY_LEN: usize = 256;
/// Slots per arena: as many as fit with their header (see [`slots_per_arena`]).
pub(crate) const SLOTS: usize = slots_per_arena();
/// Pages at the start of an arena holding its header.
const HEADER_PAGES: usize = header_pages(SLOTS);
/// Tries the fault handler makes at reading a settled slot record.
const SNAPSHOT_TRIES: usize = 10_000;

/// A slot's states (the record's `state`). Never allocated: zero, as a fresh mapping reads.
const NEVER: u32 = 0;
/// Holds a live block; its data page is read-write.
const LIVE: u32 = 1;
/// Freed, in the quarantine; its page is `PROT_NONE` (so is every page not live).
const QUARANTINED: u32 = 2;
/// Freed and out of the quarantine: on the free list, ready for reuse.
const FREE: u32 = 3;
/// End of the pool's free-slot list.
const NONE: u32 = u32::MAX;

/// What one slot's data page holds, readable without the pool's lock (see the module docs).
/// Writers hold the lock; `version` is odd while one rewrites the record.
#[repr(C)]
struct SlotMeta {
    version: AtomicU32,
    state: AtomicU32,
    /// Offset of the block in its data page.
    offset: AtomicU32,
    /// Bytes requested.
    size: AtomicU32,
    alloc_thread: AtomicU32,
    free_thread: AtomicU32,
    alloc_seq: AtomicU64,
    free_seq: AtomicU64,
    /// Next slot id on the pool's free list (under the lock only).
    next_free: AtomicU32,
    /// Non-zero: the page holds what its last block left (freed pages keep their contents, see
    /// the module docs); the block is zeroed when the slot is next used.
    dirty: AtomicU32,
}

/// The header of an arena, at its first byte.
#[repr(C)]
struct Arena {
    /// [`GUARD_KIND`]: where every region keeps its kind.
    kind: u64,
    slots: [SlotMeta; SLOTS],
}

const fn header_pages(slots: usize) -> usize {
    (8 + slots * core::mem::size_of::<SlotMeta>()).div_ceil(PAGE)
}

/// The most slots whose header pages, data and guard pages (one more guard than data) fit in
/// an arena.
const fn slots_per_arena() -> usize {
    let pages = REGION_SIZE / PAGE;
    let mut n = pages / 2;
    while header_pages(n) + 2 * n + 1 > pages {
        n -= 1;
    }
    n
}

const _: () = assert!(core::mem::size_of::<Arena>() <= HEADER_PAGES * PAGE);
const _: () = assert!(MAX_ARENAS * SLOTS < NONE as usize && MAX_REQUEST <= u32::MAX as usize);

/// A settled copy of a slot's record.
#[derive(Clone, Copy)]
struct Record {
    state: u32,
    offset: usize,
    size: usize,
    alloc: Identity,
    free: Identity,
    /// False when no settled copy could be read (the record was being rewritten throughout).
    settled: bool,
}

impl SlotMeta {
    /// Rewrites the record. Stores are Release and reads Acquire, so a reader that sees any
    /// store of this update also sees the odd version before it (see [`SlotMeta::read`]).
    /// Under the pool's lock.
    fn update(&self, f: impl FnOnce(&SlotMeta)) {
        let v = self.version.load(Relaxed);
        self.version.store(v.wrapping_add(1), Relaxed);
        f(self);
        self.version.store(v.wrapping_add(2), Release);
    }

    /// Reads the record without the lock (a seqlock read: retried until no writer ran during it).
    fn read(&self) -> Record {
        let mut r;
        let mut tries = 0;
        loop {
            let v = self.version.load(Acquire);
            r = Record {
                state: self.state.load(Acquire),
                offset: self.offset.load(Acquire) as usize,
                size: self.size.load(Acquire) as usize,
                alloc: Identity { seq: self.alloc_seq.load(Acquire), thread: self.alloc_thread.load(Acquire) },
                free: Identity { seq: self.free_seq.load(Acquire), thread: self.free_thread.load(Acquire) },
                settled: false,
            };
            if v % 2 == 0 && self.version.load(Relaxed) == v {
                r.settled = true;
                return r;
            }
            tries += 1;
            if tries == SNAPSHOT_TRIES {
                return r;
            }
            core::hint::spin_loop();
        }
    }
}

/// The record of slot `slot` of `arena`.
///
/// # Safety
/// `arena` is a live arena and `slot < SLOTS`.
unsafe fn meta<'a>(arena: *mut Arena, slot: usize) -> &'a SlotMeta {
    debug_assert!(slot < SLOTS);
    // SAFETY: per the contract the record is in the arena's mapped, read-write header; it is
    // made of atomics, so a shared reference is sound however many threads use it.
    unsafe { &*(&raw const (*arena).slots).cast::<SlotMeta>().add(slot) }
}

/// The data page of slot `slot` of `arena`.
fn data_page(arena: *mut Arena, slot: usize) -> *mut u8 {
    arena.cast::<u8>().wrapping_add((HEADER_PAGES + 2 * slot + 1) * PAGE)
}

/// Where an address of an arena falls.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Spot {
    /// The header pages.
    Header,
    /// The data page of this slot.
    Data(usize),
    /// The guard page just before the data page of this slot (`SLOTS` for the last guard).
    Guard(usize),
    /// The spare page(s) after the last guard.
    Spare,
}

fn spot(offset: usize) -> Spot {
    let page = offset / PAGE;
    if page < HEADER_PAGES {
        return Spot::Header;
    }
    let q = page - HEADER_PAGES;
    match (q / 2, q % 2) {
        (s, 1) if s < SLOTS => Spot::Data(s),
        (s, 0) if s <= SLOTS => Spot::Guard(s),
        _ => Spot::Spare,
    }
}

// ---- the process-wide registry ---------------------------------------------------------------

/// Every live arena of every pool; null entries are free. Read by the fault handler.
static REGISTRY: [AtomicPtr<Arena>; REGISTRY_LEN] = [const { AtomicPtr::new(null_mut()) }; REGISTRY_LEN];
/// Entries ever used: readers scan no further.
static REGISTRY_USED: AtomicUsize = AtomicUsize::new(0);

/// Records a new arena (its header already written); false when the registry is full.
fn register(arena: *mut Arena) -> bool {
    for (i, e) in REGISTRY.iter().enumerate() {
        if e.compare_exchange(null_mut(), arena, Release, Relaxed).is_ok() {
            REGISTRY_USED.fetch_max(i + 1, Release);
            return true;
        }
    }
    false
}

/// Forgets an arena before it is unmapped.
fn unregister(arena: *mut Arena) {
    let used = REGISTRY_USED.load(Acquire);
    if let Some(e) = REGISTRY[..used].iter().find(|e| e.load(Relaxed) == arena) {
        e.store(null_mut(), Release);
    }
}

/// The live arena containing `addr`, if any. Reads nothing but the registry.
fn registered(addr: usize) -> Option<*mut Arena> {
    let base = addr & !(REGION_SIZE - 1);
    if base == 0 {
        return None;
    }
    let used = REGISTRY_USED.load(Acquire);
    REGISTRY[..used].iter().map(|e| e.load(Acquire)).find(|a| a.addr() == base)
}

/// Whether `p` lies in a live guard arena of any pool. Reads only the registry, never memory at
/// `p`: safe for any address (a signal handler's, a wild pointer passed to free).
pub(crate) fn owns(p: *mut u8) -> bool {
    registered(p.addr()).is_some()
}

// ---- the pool --------------------------------------------------------------------------------

/// A heap's guarded blocks: its arenas, free slots and quarantine.
pub(crate) struct GuardPool {
    state: SpinLock<Pool>,
}

/// What the pool's lock protects. A slot id is `arena index * SLOTS + slot`.
struct Pool {
    arenas: [*mut Arena; MAX_ARENAS],
    count: usize,
    /// Arenas this pool may map (`MAX_ARENAS` unless a test says fewer).
    limit: usize,
    /// Slots of the newest arena handed out at least once; later ones are fresh.
    carved: usize,
    /// Slots that left the quarantine, linked through `next_free` (LIFO).
    free: u32,
    /// Freed slots, oldest at `q_head`.
    quarantine: [u32; QUARANTINE],
    q_head: usize,
    q_len: usize,
    live: usize,
}

// SAFETY: the arenas are mappings the pool owns; the lock serialises every use of them through
// `Pool` (the fault handler reads only their atomics).
unsafe impl Send for Pool {}

/// Counts, for statistics and tests.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct GuardStats {
    /// Arenas mapped.
    pub arenas: usize,
    /// Live guarded blocks.
    pub live: usize,
    /// Freed blocks in the quarantine.
    pub quarantined: usize,
}

impl Pool {
    const fn new(limit: usize) -> Pool {
        Pool {
            arenas: [null_mut(); MAX_ARENAS],
            count: 0,
            limit,
            carved: 0,
            free: NONE,
            quarantine: [NONE; QUARANTINE],
            q_head: 0,
            q_len: 0,
            live: 0,
        }
    }

    fn locate(&self, id: u32) -> (*mut Arena, usize) {
        let id = id as usize;
        (self.arenas[id / SLOTS], id % SLOTS)
    }

    fn meta(&self, id: u32) -> &SlotMeta {
        let (a, s) = self.locate(id);
        // SAFETY: ids name slots of the pool's live arenas.
        unsafe { meta(a, s) }
    }

    /// A slot to allocate in: a reused one, a fresh one, or the first of a new arena.
    fn take(&mut self) -> Option<u32> {
        if self.free != NONE {
            let id = self.free;
            self.free = self.meta(id).next_free.load(Relaxed);
            return Some(id);
        }
        if self.count == 0 || self.carved == SLOTS {
            if self.count == self.limit || !self.add_arena() {
                return None;
            }
        }
        self.carved += 1;
        Some(((self.count - 1) * SLOTS + self.carved - 1) as u32)
    }

    fn push_free(&mut self, id: u32) {
        self.meta(id).next_free.store(self.free, Relaxed);
        self.free = id;
    }

    /// Maps, protects and registers one more arena.
    fn add_arena(&mut self) -> bool {
        // The layout assumes the OS's page is hakmem's PAGE (mprotect works in OS pages).
        // SAFETY: sysconf has no preconditions.
        if unsafe { libc::sysconf(libc::_SC_PAGESIZE) } != PAGE as libc::c_long {
            return false;
        }
        // SAFETY: REGION_SIZE is a non-zero multiple of the page size.
        let a = unsafe { os::map_aligned(REGION_SIZE, REGION_SIZE) }.cast::<Arena>();
        if a.is_null() {
            return false;
        }
        // SAFETY: a fresh zeroed mapping: every record reads NEVER; the header gets its kind
        // before the registry (Release) publishes it, and everything after it becomes PROT_NONE.
        unsafe {
            (&raw mut (*a).kind).write(GUARD_KIND);
            let rest = a.cast::<u8>().add(HEADER_PAGES * PAGE);
            if !protect(rest, REGION_SIZE - HEADER_PAGES * PAGE, libc::PROT_NONE) || !register(a) {
                os::unmap(a.cast(), REGION_SIZE, REGION_SIZE);
                return false;
            }
        }
        crate::region::mark_mapping(a.cast(), REGION_SIZE, crate::region::Span::Guard);
        self.arenas[self.count] = a;
        self.count += 1;
        self.carved = 0;
        true
    }

    /// Puts a freed slot in the quarantine; the oldest one leaves it for the free list when full.
    fn quarantine(&mut self, id: u32) {
        if self.q_len < QUARANTINE {
            self.quarantine[(self.q_head + self.q_len) % QUARANTINE] = id;
            self.q_len += 1;
            return;
        }
        let old = core::mem::replace(&mut self.quarantine[self.q_head], id);
        self.q_head = (self.q_head + 1) % QUARANTINE;
        // The record keeps its identities: a later stray access to the page still names them.
        self.meta(old).update(|m| m.state.store(FREE, Release));
        self.push_free(old);
    }

    /// The slot whose live block starts at `p`, or the report that says why `p` is not one
    /// (`freed` is the detail for a block already freed).
    fn find_live(&self, p: *mut u8, thread: u32, freed: &'static str) -> Result<(u32, Record), Report> {
        let invalid = |detail| Report { guarded: true, detail, ..Report::new(ReportKind::InvalidFree, p.addr(), thread) };
        let base = region_base(p);
        let Some(i) = self.arenas[..self.count].iter().position(|a| a.cast::<u8>() == base) else {
            return Err(Report { detail: "not in a guard arena of this heap", ..Report::new(ReportKind::ForeignPointer, p.addr(), thread) });
        };
        let arena = self.arenas[i];
        let slot = match spot(region_offset(p)) {
            Spot::Data(s) => s,
            Spot::Header => return Err(Report { region: Some(base.addr()), ..invalid("points into a guard arena's header") }),
            Spot::Guard(_) | Spot::Spare => return Err(Report { region: Some(base.addr()), ..invalid("points into a guard page") }),
        };
        // SAFETY: a slot of a live arena of this pool.
        let rec = unsafe { meta(arena, slot) }.read();
        let user = data_page(arena, slot).addr() + rec.offset;
        let report = |kind, detail| Report { detail, ..block_report(kind, arena, slot, &rec, thread) };
        match rec.state {
            NEVER => Err(Report { addr: p.addr(), ..report(ReportKind::InvalidFree, "never allocated") }),
            LIVE if p.addr() == user => Ok(((i * SLOTS + slot) as u32, rec)),
            _ if p.addr() == user => Err(report(ReportKind::DoubleFree, freed)),
            _ => Err(Report {
                addr: p.addr(),
                offset: p.addr().checked_sub(user).filter(|&o| o < rec.size),
                ..report(ReportKind::InvalidFree, "not the start of a block")
            }),
        }
    }
}

/// A report about the block of slot `slot` as its record describes it.
fn block_report(kind: ReportKind, arena: *mut Arena, slot: usize, rec: &Record, thread: u32) -> Report {
    let used = rec.state != NEVER;
    let freed = rec.state == QUARANTINED || rec.state == FREE;
    Report {
        guarded: true,
        region: Some(arena.addr()),
        requested: used.then_some(rec.size),
        alloc: used.then_some(rec.alloc),
        free: freed.then_some(rec.free),
        ..Report::new(kind, data_page(arena, slot).addr() + rec.offset, thread)
    }
}

/// `mprotect`s whole pages; false when the kernel refuses (out of VMAs).
///
/// # Safety
/// The range is page-aligned and lies in an arena the caller owns.
unsafe fn protect(p: *mut u8, len: usize, prot: libc::c_int) -> bool {
    // SAFETY: per the contract; changing the protection of our own mapping.
    unsafe { libc::mprotect(p.cast(), len, prot) == 0 }
}

/// A page of the pattern the bytes around a guarded block hold, for one `memcmp`.
static TAIL_PAGE: [u8; PAGE] = [TAIL; PAGE];

/// Index of the changed pattern byte in `bytes` nearest the block: the last one when the bytes
/// are in front of it (`before`), else the first.
fn changed(bytes: &[u8], before: bool) -> Option<usize> {
    if bytes == &TAIL_PAGE[..bytes.len()] {
        return None;
    }
    if before {
        bytes.iter().rposition(|&b| b != TAIL)
    } else {
        bytes.iter().position(|&b| b != TAIL)
    }
}

impl GuardPool {
    /// An empty pool: maps nothing until the first guarded allocation.
    pub(crate) const fn new() -> GuardPool {
        GuardPool::with_arena_limit(MAX_ARENAS)
    }

    /// An empty pool that maps at most `limit` (at most [`MAX_ARENAS`]) arenas.
    pub(crate) const fn with_arena_limit(limit: usize) -> GuardPool {
        let limit = if limit < MAX_ARENAS { limit } else { MAX_ARENAS };
        GuardPool { state: SpinLock::new(LockClass::Guard, Pool::new(limit)) }
    }

    /// A guarded block of `size` bytes aligned to `align` (a power of two), allocated by `who`;
    /// null when the request is too large or every slot is live or quarantined and no arena can
    /// be added: the caller then uses the normal allocator. The block reads as zero.
    pub(crate) fn alloc(&self, size: usize, align: usize, who: Identity) -> *mut u8 {
        if cfg!(miri) || size > MAX_REQUEST || !align.is_power_of_two() || align > PAGE {
            return null_mut();
        }
        // A zero-byte block still needs an address inside its page.
        let Some(rounded) = round_up(size.max(1), align) else { return null_mut() };
        let offset = PAGE - rounded;
        let mut st = self.state.lock();
        let Some(id) = st.take() else { return null_mut() };
        let (arena, slot) = st.locate(id);
        let page = data_page(arena, slot);
        // SAFETY: the data page of a slot of ours, which nothing else uses while it is not live.
        unsafe {
            if !protect(page, PAGE, libc::PROT_READ | libc::PROT_WRITE) {
                st.push_free(id);
                return null_mut();
            }
            let m = meta(arena, slot);
            // (The bytes around the block are all rewritten below.)
            if m.dirty.swap(0, Relaxed) != 0 {
                page.add(offset).write_bytes(0, size);
            }
            page.write_bytes(TAIL, offset);
            page.add(offset + size).write_bytes(TAIL, PAGE - offset - size);
            m.update(|m| {
                m.offset.store(offset as u32, Release);
                m.size.store(size as u32, Release);
                m.alloc_seq.store(who.seq, Release);
                m.alloc_thread.store(who.thread, Release);
                m.state.store(LIVE, Release);
            });
            st.live += 1;
            page.add(offset)
        }
    }

    /// Frees the guarded block `p` for `who`: checks the bytes around it, makes its page
    /// inaccessible and drops its contents, and quarantines the slot. A report (and no free)
    /// when `p` is not a live block's start or the bytes around it changed.
    ///
    /// # Safety
    /// Any `p` is checked (one outside this pool's arenas gets a foreign-pointer report, and no
    /// memory is read for it); nothing may use the block afterwards (a use faults).
    pub(crate) unsafe fn free(&self, p: *mut u8, who: Identity) -> Result<(), Report> {
        let mut st = self.state.lock();
        let (id, rec) = st.find_live(p, who.thread, "already freed")?;
        let (arena, slot) = st.locate(id);
        let page = data_page(arena, slot);
        // SAFETY: the page of a live block is mapped read-write; the pool's lock keeps it so.
        let (front, back) = unsafe {
            (
                core::slice::from_raw_parts(page, rec.offset),
                core::slice::from_raw_parts(p.add(rec.size), PAGE - rec.offset - rec.size),
            )
        };
        let bad = |kind, offset: usize, found: u8| Report {
            offset: Some(offset),
            expected: TAIL as u64,
            found: found as u64,
            ..block_report(kind, arena, slot, &rec, who.thread)
        };
        if let Some(i) = changed(back, false) {
            return Err(bad(ReportKind::Overflow, rec.size + i, back[i]));
        }
        if let Some(i) = changed(front, true) {
            return Err(bad(ReportKind::Underflow, rec.offset - i, front[i]));
        }
        let m = st.meta(id);
        m.update(|m| {
            m.free_seq.store(who.seq, Release);
            m.free_thread.store(who.thread, Release);
            m.state.store(QUARANTINED, Release);
        });
        // SAFETY: the block's page, no longer anyone's. Taking its access away merges it with
        // the guard pages around it, so the kernel needs no new VMA and this does not fail;
        // were it to, a use after free would go unseen, nothing worse. The contents stay (a
        // `madvise` and the zero-fill fault at the next use cost twice the two `mprotect`s):
        // the page is zeroed when reused, and `trim` drops the pages of unused slots.
        unsafe { protect(page, PAGE, libc::PROT_NONE) };
        m.dirty.store(1, Relaxed);
        st.live -= 1;
        st.quarantine(id);
        Ok(())
    }

    /// Bytes requested for the live guarded block `p`; the reports of [`GuardPool::free`] for
    /// anything else, made for `thread`.
    ///
    /// # Safety
    /// As for [`GuardPool::free`], but the block stays live.
    pub(crate) unsafe fn usable_size(&self, p: *mut u8, thread: u32) -> Result<usize, Report> {
        let st = self.state.lock();
        st.find_live(p, thread, "size of a freed block").map(|(_, rec)| rec.size)
    }

    /// Gives the pages of the slots that hold no live block back to the OS (their contents are
    /// kept at free, see the module docs); returns how many.
    pub(crate) fn trim(&self) -> usize {
        let st = self.state.lock();
        let mut dropped = 0;
        for id in 0..(st.count.saturating_sub(1) * SLOTS + st.carved) as u32 {
            let (arena, slot) = st.locate(id);
            // SAFETY: a slot of a live arena; the lock keeps its state and protection together.
            unsafe {
                let m = meta(arena, slot);
                if m.state.load(Relaxed) != LIVE && m.dirty.load(Relaxed) != 0 {
                    // The page is PROT_NONE, which madvise does not mind; a page it could not
                    // drop stays dirty.
                    if libc::madvise(data_page(arena, slot).cast(), PAGE, libc::MADV_DONTNEED) == 0 {
                        m.dirty.store(0, Relaxed);
                        dropped += 1;
                    }
                }
            }
        }
        dropped
    }

    /// Arenas, live blocks and quarantined blocks now.
    pub(crate) fn stats(&self) -> GuardStats {
        let st = self.state.lock();
        GuardStats { arenas: st.count, live: st.live, quarantined: st.q_len }
    }

    /// Unmaps every arena (unregistering it first); the pool is as new afterwards.
    ///
    /// # Safety
    /// No block of the pool is used again (the heap is dropped or reset).
    pub(crate) unsafe fn release_all(&self) {
        let mut st = self.state.lock();
        for &a in &st.arenas[..st.count] {
            unregister(a);
            crate::region::mark_mapping(a.cast(), REGION_SIZE, crate::region::Span::Foreign);
            // SAFETY: an arena is one whole mapping of ours, which per the contract nobody uses.
            unsafe { os::unmap(a.cast(), REGION_SIZE, REGION_SIZE) };
        }
        *st = Pool::new(st.limit);
    }

    /// `fork()`'s prepare handler: takes the pool's lock (see `Heap::fork_prepare`).
    pub(crate) fn lock_for_fork(&self) {
        self.state.acquire();
    }

    /// Releases what [`GuardPool::lock_for_fork`] took, in the parent or the child.
    ///
    /// # Safety
    /// The calling thread took the lock with `lock_for_fork`.
    pub(crate) unsafe fn unlock_after_fork(&self) {
        // SAFETY: forwarded contract.
        unsafe { self.state.force_unlock() }
    }
}

impl Drop for GuardPool {
    fn drop(&mut self) {
        // SAFETY: a dropped pool's blocks die with it.
        unsafe { self.release_all() }
    }
}

// ---- the fault handler -----------------------------------------------------------------------

/// What the handler says about a fault at `addr` (a `write`, a read, or unknown) in `arena`.
/// Reads only the arena's records, without the pool's lock.
///
/// # Safety
/// `arena` is a live arena.
unsafe fn fault_report(arena: *mut Arena, addr: usize, write: Option<bool>) -> Report {
    let fault = Some(Fault { addr, write });
    let wild = |detail| Report {
        guarded: true,
        region: Some(arena.addr()),
        fault,
        detail,
        ..Report::new(ReportKind::WildAccess, addr, 0)
    };
    // SAFETY: slots below SLOTS of a live arena.
    let read = |slot: usize| unsafe { meta(arena, slot) }.read();
    let on = |kind, slot, rec: &Record, offset, detail| Report {
        offset,
        fault,
        detail: if rec.settled { detail } else { "the slot's record was being rewritten" },
        ..block_report(kind, arena, slot, rec, 0)
    };
    let user = |slot: usize, rec: &Record| data_page(arena, slot).addr() + rec.offset;
    match spot(addr - arena.addr()) {
        Spot::Header => wild("the arena's header"),
        Spot::Spare => wild("past the arena's last slot"),
        Spot::Data(s) => {
            let rec = read(s);
            let kind = if write == Some(true) { ReportKind::WriteAfterFree } else { ReportKind::ReadAfterFree };
            let detail = match (rec.state, write) {
                (NEVER, _) => return wild("a slot never allocated"),
                (LIVE, _) => "the slot was allocated again since the fault",
                (_, None) => "read or write: this architecture's fault does not say",
                _ => "",
            };
            on(kind, s, &rec, addr.checked_sub(user(s, &rec)), detail)
        }
        Spot::Guard(g) => {
            // The live block that ends before this guard page, and the one that starts after.
            let before = g.checked_sub(1).map(|s| (s, read(s))).filter(|(_, r)| r.state == LIVE);
            let after = (g < SLOTS).then(|| (g, read(g))).filter(|(_, r)| r.state == LIVE);
            let over = before.map(|(s, r)| (s, r, addr - user(s, &r)));
            let under = after.map(|(s, r)| (s, r, user(s, &r) - addr));
            // Both live: blame the block whose edge is nearer.
            match (over, under) {
                (Some((s, r, o)), u) if u.is_none_or(|(_, _, b)| o - r.size <= b) => {
                    on(ReportKind::Overflow, s, &r, Some(o), "")
                }
                (_, Some((s, r, b))) => on(ReportKind::Underflow, s, &r, Some(b), ""),
                _ => wild("a guard page next to no live block"),
            }
        }
    }
}

/// Whether the interrupted access was a write: the page-fault error code's bit 1 on x86_64.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn fault_was_write(ctx: *mut libc::c_void) -> Option<bool> {
    if ctx.is_null() {
        return None;
    }
    // SAFETY: an SA_SIGINFO handler's third argument is the interrupted context.
    let err = unsafe { (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_ERR as usize] };
    Some(err & 2 != 0)
}

/// Whether the interrupted access was a write: unknown on this architecture.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn fault_was_write(_ctx: *mut libc::c_void) -> Option<bool> {
    None
}

/// The handlers SIGSEGV and SIGBUS had before ours, for faults outside the arenas.
struct Previous(UnsafeCell<[libc::sigaction; 2]>);
// SAFETY: written once, inside `INSTALL`, before our handler is installed; only read after.
unsafe impl Sync for Previous {}
// SAFETY: an all-zero sigaction is SIG_DFL with no flags.
static PREVIOUS: Previous = Previous(UnsafeCell::new(unsafe { core::mem::zeroed() }));
static INSTALL: std::sync::Once = std::sync::Once::new();
const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];
/// An SA_SIGINFO handler.
type Action = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Installs the fault handler for SIGSEGV and SIGBUS (once per process; later calls do nothing):
/// a fault in a guard arena prints a report and aborts; any other goes to the handler installed
/// before, or gets the default action.
pub(crate) fn install_fault_handler() {
    if cfg!(miri) {
        return;
    }
    INSTALL.call_once(|| {
        for (i, &sig) in SIGNALS.iter().enumerate() {
            // SAFETY: sigaction with valid pointers; PREVIOUS is written before the handler
            // that reads it can run.
            unsafe {
                libc::sigaction(sig, core::ptr::null(), PREVIOUS.0.get().cast::<libc::sigaction>().add(i));
                let mut sa: libc::sigaction = core::mem::zeroed();
                sa.sa_sigaction = on_fault as Action as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, null_mut());
            }
        }
    });
}

/// The handler. Async-signal-safe: no allocation, no lock; it reads the registry and the slot
/// records (atomics) and prints with [`crate::report::print_and_abort`].
extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr().addr()) };
    // si_code > 0: the kernel sent it for a fault, so si_addr is the faulting address.
    if code > 0 {
        if let Some(arena) = registered(addr) {
            // SAFETY: a registered arena is mapped until unregistered, which only a heap's drop
            // or reset does (and no block of it may be in use then).
            let r = unsafe { fault_report(arena, addr, fault_was_write(ctx)) };
            crate::report::print_and_abort(&r);
        }
    }
    // SAFETY: forwarding the signal we were given.
    unsafe { chain(sig, info, ctx) }
}

/// Passes a signal that is not about a guard arena to the handler installed before ours.
///
/// # Safety
/// The arguments are those our handler received.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let i = if sig == libc::SIGBUS { 1 } else { 0 };
    // SAFETY: written before our handler was installed (see `PREVIOUS`).
    let prev = unsafe { &(*PREVIOUS.0.get())[i] };
    let h = prev.sa_sigaction;
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        // The default action (the kernel applies it to an ignored fault too): restore it and
        // return, so the faulting instruction runs again and dies of it; a signal someone sent
        // is raised again instead, as it would not recur.
        // SAFETY: signal and raise are async-signal-safe; `info` is valid (see `on_fault`).
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            if (*info).si_code <= 0 {
                libc::raise(sig);
            }
        }
        return;
    }
    // SAFETY: a handler address the process installed, called as its flags say it expects.
    unsafe {
        if prev.sa_flags & libc::SA_SIGINFO != 0 {
            let f: Action = core::mem::transmute(h);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = core::mem::transmute(h);
            f(sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Output};

    fn id(seq: u64) -> Identity {
        Identity { seq, thread: 7 }
    }

    fn end_of_page(p: *mut u8) -> usize {
        (p.addr() | (PAGE - 1)) + 1
    }

    #[test]
    fn the_arena_layout_fits_its_region() {
        assert_eq!((SLOTS, HEADER_PAGES), (508, 6));
        assert!(HEADER_PAGES + 2 * SLOTS + 1 <= REGION_SIZE / PAGE);
        assert_eq!(spot(0), Spot::Header);
        assert_eq!(spot(HEADER_PAGES * PAGE), Spot::Guard(0));
        assert_eq!(spot((HEADER_PAGES + 1) * PAGE + 5), Spot::Data(0));
        assert_eq!(spot((HEADER_PAGES + 2) * PAGE), Spot::Guard(1));
        assert_eq!(spot((HEADER_PAGES + 2 * SLOTS) * PAGE), Spot::Guard(SLOTS));
        assert_eq!(spot(REGION_SIZE - 1), Spot::Spare);
    }

    #[test]
    #[cfg_attr(miri, ignore = "no mprotect under Miri")]
    fn blocks_end_at_their_page_end_read_as_zero_and_round_trip() {
        let pool = GuardPool::new();
        let mut seq = 0;
        for align in [1, 8, 16, 64, PAGE] {
            for size in [0, 1, 15, 16, 17, 100, 4095, 4096] {
                seq += 1;
                let p = pool.alloc(size, align, id(seq));
                assert!(!p.is_null() && p.addr() % align == 0, "{size} B at {align}");
                assert_eq!(p.addr() + round_up(size.max(1), align).unwrap(), end_of_page(p), "{size} B at {align}");
                assert!(owns(p));
                // SAFETY: a live block of `size` bytes in a guard arena.
                unsafe {
                    assert_eq!(*region_base(p).cast::<u64>(), GUARD_KIND);
                    assert!(core::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                    p.write_bytes(0xee, size);
                    assert_eq!(pool.usable_size(p, 7), Ok(size));
                    pool.free(p, id(seq)).unwrap();
                }
            }
        }
        assert_eq!(pool.stats(), GuardStats { arenas: 1, live: 0, quarantined: 40 });
    }

    #[test]
    fn a_pool_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<GuardPool>();
    }

    #[test]
    #[cfg_attr(miri, ignore = "no mprotect under Miri")]
    fn the_fork_handlers_take_and_release_the_lock() {
        let pool = GuardPool::new();
        let done = std::sync::atomic::AtomicBool::new(false);
        pool.lock_for_fork();
        std::thread::scope(|s| {
            s.spawn(|| {
                pool.stats();
                done.store(true, Relaxed);
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!done.load(Relaxed), "the lock is held");
            // SAFETY: this thread took the lock above.
            unsafe { pool.unlock_after_fork() };
        });
        assert!(done.load(Relaxed));
        let p = pool.alloc(8, 8, id(1));
        // SAFETY: a guarded block, freed once.
        unsafe { pool.free(p, id(2)).unwrap() };
    }

    #[test]
    #[cfg_attr(miri, ignore = "no mprotect under Miri")]
    fn requests_beyond_a_page_are_declined() {
        let pool = GuardPool::new();
        assert!(pool.alloc(PAGE + 1, 16, id(1)).is_null());
        assert!(pool.alloc(16, 2 * PAGE, id(1)).is_null());
        assert!(pool.alloc(16, 3, id(1)).is_null());
        assert_eq!(pool.stats().arenas, 0, "nothing mapped for nothing");
    }

    #[test]
    #[cfg_attr(miri, ignore = "no mprotect under Miri")]
    fn double_free_names_the_allocation_and_the_first_free() {
        let pool = GuardPool::new();
        let p = pool.alloc(40, 16, id(1));
        // SAFETY: p is a guarded block; its second free is refused.
        let r = unsafe {
            pool.free(p, id(2)).unwrap();
            pool.free(p, Identity { seq: 3, thread: 9 }).unwrap_err()
        };
        assert_eq!((r.kind, r.addr, r.requested), (ReportKind::DoubleFree, p.addr(), Some(40)));
        assert_eq!((r.alloc, r.free, r.thread), (Some(id(1)), Some(id(2)), 9));
        let text = r.to_string();
        assert!(text.starts_with(&format!("double free of {:#x} (guarded block, 40 B requested)", p.addr())), "{text}");
        assert!(text.contains("allocated at #1 by thread 7, first freed at #2 by thread 7"), "{text}");
        // SAFETY: as above.
        let r = unsafe { pool.usable_size(p, 9) }.unwrap_err();
        assert_eq!((r.kind, r.detail), (ReportKind::DoubleFree, "size of a freed block"));
    }

    #[test]
    #[cfg_attr(miri, ignore = "no mprotect under Miri")]
    fn interior_and_stray_frees_are_invalid_frees() {
        let pool = GuardPool::new();
        let other = GuardPool::new();
        let p = pool.alloc(100, 16, id(1));
        let q = other.alloc(100, 16, id(1));
        let base = region_base(p);
        // SAFETY: every pointer lies in a guard arena; none is freed.
        unsafe {
            let r = pool.free(p.add(10), id(2)).unwrap_err();
            assert_eq!((r.kind, r.addr, r.offset, r.alloc), (ReportKind::InvalidFree, p.addr() + 10, Some(10), Some(id(1))));
            assert!(r.to_string().contains(": 10 bytes into the block"), "{r}");
            let r = pool.free(p.sub(1), id(2)).unwrap_err();
            assert_eq!((r.kind, r.offset, r.detail), (ReportKind::InvalidFree, None, "not the start of a block"));
            let r = pool.free(data_page(base.cast(), 0).sub(8), id(2)).unwrap_err();
            assert_eq!((r.kind, r.detail), (ReportKind::InvalidFree, "points into a guard page"));
            let r = pool.free(base.add(64), id(2)).unwrap_err();
            assert_eq!((r.kind, r.detail), (ReportKind::InvalidFree, "points into a guard arena's header"));
            let r = pool.free(data_page(base.cast(), 5), id(2)).unwrap_err();
            assert_eq!((r.kind, r.detail, r.alloc), (ReportKind::InvalidFree, "never allocated", None));
            let r = pool.free(q, id(2)).unwrap_err();
            assert_eq!(r.kind, ReportKind::ForeignPointer);
            assert_eq!(pool.usable_size(p.add(1), 0).unwrap_err().kind, ReportKind::InvalidFree);
            pool.free(p, id(2)).unwrap();
            let r = pool.free(p.add(10), id(3)).unwrap_err();
            assert_eq!((r.kind, r.offset, r.free), (ReportKind::InvalidFree, Some(10), Some(id(2))));
            other.free(q, id(2)).unwrap();
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "no mprotect under Miri")]
    fn an_overflow_into_the_rounding_is_reported_at_free_and_the_block_stays() {
        let pool = GuardPool::new();
        let p = pool.alloc(13, 16, id(1));
        assert_eq!(end_of_page(p) - p.addr(), 16);
        // SAFETY: byte 14 is in the block's page (rounding), so the write itself does not fault.
        unsafe {
            p.add(14).write(0);
            let r = pool.free(p, id(2)).unwrap_err();
            assert_eq!((r.kind, r.offset, r.expected, r.found), (ReportKind::Overflow, Some(14), TAIL as u64, 0));
            assert!(r.to_string().contains("(guarded block, 13 B requested): byte 14 is 0x00, expected 0xcb"), "{r}");
            assert_eq!(pool.usable_size(p, 7), Ok(13), "a refused free leaves the block live");
            p.add(14).write(TAIL);
            pool.free(p, id(3)).unwrap();
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "no mprotect under Miri")]
    fn an_underflow_into_the_front_of_the_page_is_reported_at_free() {
        let pool = GuardPool::new();
        let p = pool.alloc(64, 16, id(1));
        // SAFETY: the page in front of the block is the block's page.
        unsafe {
            p.sub(3).write(1);
            p.sub(200).write(1);
            let r = pool.free(p, id(2)).unwrap_err();
            assert_eq!((r.kind, r.offset, r.found), (ReportKind::Underflow, Some(3), 1), "the byte nearest the block");
            assert!(r.to_string().contains(": written up to 3 before the block, byte -3 is 0x01, expected 0xcb"), "{r}");
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "no mprotect under Miri")]
    fn the_quarantine_delays_reuse_and_bounds_growth() {
        let pool = GuardPool::new();
        let mut history = Vec::new();
        for i in 0..4 * QUARANTINE as u64 {
            let p = pool.alloc(100, 16, id(i));
            let recent = &history[history.len().saturating_sub(QUARANTINE)..];
            assert!(!recent.contains(&p.addr()), "reused within {QUARANTINE} frees");
            // SAFETY: a live block of 100 bytes, freed once.
            unsafe {
                assert!(core::slice::from_raw_parts(p, 100).iter().all(|&b| b == 0), "a reused block reads as zero");
                p.write_bytes(0xff, 100);
                pool.free(p, id(i)).unwrap();
            }
            history.push(p.addr());
        }
        history.sort();
        history.dedup();
        assert_eq!(history.len(), QUARANTINE + 1, "one slot more than the quarantine");
        assert_eq!(pool.stats(), GuardStats { arenas: 1, live: 0, quarantined: QUARANTINE });
    }

    #[test]
    #[cfg_attr(miri, ignore = "no mprotect under Miri")]
    fn trim_gives_back_the_pages_of_freed_blocks_only() {
        let pool = GuardPool::new();
        let live = pool.alloc(100, 16, id(1));
        // SAFETY: live blocks of 100 bytes; each freed one is freed once and not touched again.
        unsafe {
            live.write_bytes(0x5a, 100);
            for i in 0..10 {
                let p = pool.alloc(100, 16, id(i));
                p.write_bytes(0xff, 100);
                pool.free(p, id(i)).unwrap();
            }
            assert_eq!(pool.trim(), 10, "the freed blocks' pages, not the live one's");
            assert_eq!(pool.trim(), 0, "nothing left to give back");
            assert!(core::slice::from_raw_parts(live, 100).iter().all(|&b| b == 0x5a), "the live block is intact");
            pool.free(live, id(2)).unwrap();
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "no mprotect under Miri")]
    fn a_full_pool_declines_until_the_quarantine_gives_a_slot_back() {
        let pool = GuardPool::with_arena_limit(1);
        let live: Vec<_> = (0..SLOTS as u64).map(|i| pool.alloc(8, 8, id(i))).collect();
        assert!(live.iter().all(|p| !p.is_null()));
        assert!(pool.alloc(8, 8, id(0)).is_null(), "every slot live");
        // SAFETY: each block freed once.
        unsafe {
            for (i, &p) in live[..QUARANTINE].iter().enumerate() {
                pool.free(p, id(i as u64)).unwrap();
            }
            assert!(pool.alloc(8, 8, id(0)).is_null(), "every slot live or quarantined");
            pool.free(live[QUARANTINE], id(0)).unwrap();
        }
        assert_eq!(pool.alloc(8, 8, id(0)), live[0], "the oldest quarantined slot comes back");
        assert_eq!(pool.stats(), GuardStats { arenas: 1, live: SLOTS - QUARANTINE, quarantined: QUARANTINE });
    }

    #[test]
    #[cfg_attr(miri, ignore = "no mprotect under Miri")]
    fn release_all_and_drop_unmap_and_unregister() {
        let out = child("release_all_and_drop_unmap_and_unregister", || {
            let pool = GuardPool::new();
            let p = pool.alloc(8, 8, id(1));
            // SAFETY: mincore only asks about the mapping.
            let mapped = |p: *mut u8| unsafe { libc::mincore(region_base(p).cast(), PAGE, [0u8; 1].as_mut_ptr()) } == 0;
            let before = os::mapped_bytes();
            assert!(owns(p) && mapped(p));
            // SAFETY: p is not used again.
            unsafe { pool.release_all() };
            assert!(!owns(p) && !mapped(p));
            assert_eq!(os::mapped_bytes(), before - REGION_SIZE);
            assert_eq!(pool.stats(), GuardStats { arenas: 0, live: 0, quarantined: 0 });
            let q = pool.alloc(8, 8, id(2));
            assert!(owns(q));
            drop(pool);
            assert!(!owns(q) && os::mapped_bytes() == before - REGION_SIZE);
        });
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    #[cfg_attr(miri, ignore = "no mprotect under Miri")]
    fn a_live_block_costs_two_vmas_and_a_freed_one_none() {
        // In a child: the count reads /proc/self/maps, which other tests' threads change.
        let out = child("a_live_block_costs_two_vmas_and_a_freed_one_none", || {
            let vmas = |arena: usize| {
                let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
                let start = |l: &str| usize::from_str_radix(l.split('-').next().unwrap(), 16).unwrap();
                maps.lines().filter(|l| (arena..arena + REGION_SIZE).contains(&start(l))).count()
            };
            let pool = GuardPool::new();
            let live: Vec<_> = (0..10).map(|i| pool.alloc(100, 16, id(i))).collect();
            let arena = region_base(live[0]).addr();
            assert_eq!(vmas(arena), 2 + 2 * 10, "the header, then a guard and a data page per live block");
            for (i, &p) in live.iter().enumerate() {
                // SAFETY: each block freed once.
                unsafe { pool.free(p, id(i as u64)).unwrap() };
            }
            assert_eq!(vmas(arena), 2, "freed pages merge back into the guard pages");
        });
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// A pool with slots 0 and 2 live (page-sized, so they start at their page), 1 and 3 freed.
    fn four_blocks(pool: &GuardPool) -> [*mut u8; 4] {
        let b = [0, 1, 2, 3].map(|i| pool.alloc(if i == 2 { 64 } else { PAGE }, 16, id(i + 1)));
        // SAFETY: blocks 1 and 3, freed once.
        unsafe {
            pool.free(b[1], id(11)).unwrap();
            pool.free(b[3], id(13)).unwrap();
        }
        b
    }

    #[test]
    #[cfg_attr(miri, ignore = "no mprotect under Miri")]
    fn faults_are_classified_from_the_records() {
        let pool = GuardPool::new();
        let b = four_blocks(&pool);
        let arena = region_base(b[0]).cast::<Arena>();
        // SAFETY: a live arena.
        let at = |addr: usize, write| unsafe { fault_report(arena, addr, Some(write)) };
        let r = at(b[1].addr() + 5, false);
        assert_eq!((r.kind, r.addr, r.offset, r.alloc, r.free), (ReportKind::ReadAfterFree, b[1].addr(), Some(5), Some(id(2)), Some(id(11))));
        assert_eq!(r.fault, Some(Fault { addr: b[1].addr() + 5, write: Some(false) }));
        assert!(r.to_string().starts_with(&format!("read after free of {:#x} (guarded block, 4096 B requested): read at {:#x}, byte 5 of the block, allocated at #2", b[1].addr(), b[1].addr() + 5)), "{r}");
        assert_eq!(at(b[3].addr(), true).kind, ReportKind::WriteAfterFree);
        // Past block 0: its overflow, though block 1 (freed) follows.
        let r = at(b[0].addr() + PAGE, false);
        assert_eq!((r.kind, r.addr, r.offset), (ReportKind::Overflow, b[0].addr(), Some(PAGE)));
        assert!(r.to_string().contains("read at"), "{r}");
        // Before block 0: its underflow.
        let r = at(b[0].addr() - 1, true);
        assert_eq!((r.kind, r.addr, r.offset), (ReportKind::Underflow, b[0].addr(), Some(1)));
        assert!(r.to_string().contains(": write at") && r.to_string().contains(", 1 byte before the block"), "{r}");
        // Between live block 2 (the end of its page) and freed block 3: 2's overflow.
        let r = at(end_of_page(b[2]) + 100, false);
        assert_eq!((r.kind, r.addr, r.offset), (ReportKind::Overflow, b[2].addr(), Some(64 + 100)));
        // Between freed 1 and live 2: 2's underflow, however far in front of it.
        let r = at(end_of_page(b[1]) + 8, false);
        assert_eq!((r.kind, r.addr, r.offset), (ReportKind::Underflow, b[2].addr(), Some(b[2].addr() - end_of_page(b[1]) - 8)));
        // Wild: after freed 3, a slot never allocated, the spare page.
        for (addr, detail) in [
            (end_of_page(b[3]), "a guard page next to no live block"),
            (end_of_page(b[3]) + PAGE + 1, "a slot never allocated"),
            (arena.addr() + REGION_SIZE - 1, "past the arena's last slot"),
        ] {
            let r = at(addr, false);
            assert_eq!((r.kind, r.addr, r.detail, r.alloc), (ReportKind::WildAccess, addr, detail, None));
        }
        // SAFETY: as above.
        let r = unsafe { fault_report(arena, b[1].addr(), None) };
        assert_eq!(r.kind, ReportKind::ReadAfterFree);
        assert!(r.to_string().contains(": access at"), "{r}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "no mprotect under Miri")]
    fn two_live_neighbours_blame_the_nearer_edge() {
        let pool = GuardPool::new();
        let a = pool.alloc(PAGE, 16, id(1));
        let b = pool.alloc(PAGE, 16, id(2));
        let arena = region_base(a).cast::<Arena>();
        // SAFETY: a live arena.
        let kind = |addr: usize| unsafe { fault_report(arena, addr, Some(false)) }.kind;
        assert_eq!(kind(a.addr() + PAGE + 10), ReportKind::Overflow);
        assert_eq!(kind(b.addr() - 10), ReportKind::Underflow);
    }

    #[test]
    #[cfg_attr(miri, ignore = "no mprotect under Miri")]
    fn a_record_being_rewritten_is_reported_as_such() {
        let pool = GuardPool::new();
        let p = pool.alloc(8, 8, id(1));
        // SAFETY: p is a guarded block.
        unsafe { pool.free(p, id(2)).unwrap() };
        let arena = region_base(p).cast::<Arena>();
        // SAFETY: slot 0 of a live arena; as if the faulting thread stopped mid-update.
        let m = unsafe { meta(arena, 0) };
        m.version.fetch_add(1, Relaxed);
        // SAFETY: as above.
        let r = unsafe { fault_report(arena, p.addr(), Some(true)) };
        assert_eq!((r.kind, r.detail), (ReportKind::WriteAfterFree, "the slot's record was being rewritten"));
        m.version.fetch_add(1, Relaxed);
    }

    // ---- faults, each in a child process (the handler aborts it) -----------------------------

    const CHILD: &str = "HAKMEM_GUARD_CHILD";

    /// In the child (this test binary run again for test `name` alone): runs `body` and exits.
    /// In the parent: runs the child and returns what it did.
    fn child(name: &str, body: impl FnOnce()) -> Output {
        if std::env::var(CHILD).as_deref() == Ok(name) {
            body();
            std::process::exit(0);
        }
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &format!("guard::tests::{name}"), "--nocapture", "--test-threads=1"])
            .env(CHILD, name)
            .output()
            .unwrap()
    }

    /// The report line of a child that must die of SIGABRT after one.
    fn reported(name: &str, body: impl FnOnce()) -> String {
        let out = child(name, body);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "child: {:?}\n{err}", out.status);
        err.lines().find(|l| l.starts_with("hakmem: ")).unwrap_or_else(|| panic!("no report in:\n{err}")).to_string()
    }

    /// A child's guarded block of `size` bytes with the handler installed; the pool is leaked
    /// (the child dies with it).
    fn guarded(size: usize, free: bool) -> *mut u8 {
        let pool = Box::leak(Box::new(GuardPool::new()));
        install_fault_handler();
        let p = pool.alloc(size, 16, id(1));
        if free {
            // SAFETY: p is a guarded block.
            unsafe { pool.free(p, id(2)).unwrap() };
        }
        p
    }

    #[test]
    #[cfg_attr(miri, ignore = "no signals under Miri")]
    fn a_read_after_free_faults_with_a_report() {
        let line = reported("a_read_after_free_faults_with_a_report", || {
            let p = guarded(40, true);
            // SAFETY: none: the read faults, which is the test.
            unsafe { p.add(3).read_volatile() };
        });
        assert!(line.starts_with("hakmem: read after free of 0x"), "{line}");
        assert!(line.contains("(guarded block, 40 B requested): read at 0x") && line.contains(", byte 3 of the block"), "{line}");
        assert!(line.contains("allocated at #1 by thread 7, freed at #2 by thread 7"), "{line}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "no signals under Miri")]
    fn a_write_after_free_faults_with_a_report() {
        let line = reported("a_write_after_free_faults_with_a_report", || {
            let p = guarded(40, true);
            // SAFETY: none: the write faults, which is the test.
            unsafe { p.write_volatile(1) };
        });
        assert!(line.starts_with("hakmem: write after free of 0x") && line.contains(": write at 0x"), "{line}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "no signals under Miri")]
    fn a_read_past_a_page_sized_block_faults_as_an_overflow() {
        let line = reported("a_read_past_a_page_sized_block_faults_as_an_overflow", || {
            let p = guarded(PAGE, false);
            // SAFETY: none: the read faults, which is the test.
            unsafe { p.add(PAGE).read_volatile() };
        });
        assert!(line.starts_with("hakmem: heap buffer overflow of 0x"), "{line}");
        assert!(line.contains("(guarded block, 4096 B requested): read at 0x") && line.contains(", byte 4096 of the block"), "{line}");
        assert!(line.contains("allocated at #1 by thread 7") && !line.contains("freed"), "{line}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "no signals under Miri")]
    fn a_write_before_a_page_aligned_block_faults_as_an_underflow() {
        let line = reported("a_write_before_a_page_aligned_block_faults_as_an_underflow", || {
            let p = guarded(PAGE, false);
            assert_eq!(p.addr() % PAGE, 0);
            // SAFETY: none: the write faults, which is the test.
            unsafe { p.sub(1).write_volatile(1) };
        });
        assert!(line.starts_with("hakmem: heap buffer underflow of 0x") && line.contains(": write at 0x"), "{line}");
        assert!(line.contains(", 1 byte before the block"), "{line}");
    }

    /// A page of the child's own that no access may touch: a fault outside every arena.
    fn fault_outside_the_arenas() -> ! {
        // SAFETY: a fresh PROT_NONE mapping, read once (the read faults).
        unsafe {
            let p = libc::mmap(null_mut(), PAGE, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
            assert!(p != libc::MAP_FAILED && !owns(p.cast()));
            p.cast::<u8>().read_volatile();
        }
        unreachable!("the read of a PROT_NONE page went through");
    }

    /// Asserts that SIGSEGV now runs our handler, and that a second install changed nothing.
    fn assert_handler_installed() {
        install_fault_handler();
        // SAFETY: reading the current action, and what we saved before ours.
        unsafe {
            let mut now: libc::sigaction = core::mem::zeroed();
            libc::sigaction(libc::SIGSEGV, core::ptr::null(), &mut now);
            assert_eq!(now.sa_sigaction, on_fault as Action as usize, "the handler is installed");
            assert_ne!((*PREVIOUS.0.get())[0].sa_sigaction, on_fault as Action as usize, "installed once");
        }
    }

    /// A child that runs `before`, installs the handler (twice) and faults outside the arenas
    /// must die of SIGSEGV with no report.
    fn dies_of_sigsegv(name: &str, before: impl FnOnce()) {
        let out = child(name, || {
            before();
            install_fault_handler();
            assert_handler_installed();
            fault_outside_the_arenas();
        });
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "child: {:?}\n{err}", out.status);
        assert!(!err.contains("hakmem:"), "{err}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "no signals under Miri")]
    #[cfg_attr(any(asan, tsan), ignore = "the sanitizer's own SIGSEGV handler comes before ours")]
    fn a_fault_elsewhere_gets_the_previous_handler_then_the_default() {
        // The previous handler is the Rust runtime's (stack overflows), which resets SIGSEGV
        // to the default for any other fault.
        dies_of_sigsegv("a_fault_elsewhere_gets_the_previous_handler_then_the_default", || {});
    }

    #[test]
    #[cfg_attr(miri, ignore = "no signals under Miri")]
    fn a_fault_elsewhere_with_no_previous_handler_gets_the_default() {
        dies_of_sigsegv("a_fault_elsewhere_with_no_previous_handler_gets_the_default", || {
            // SAFETY: resetting SIGSEGV to its default action.
            unsafe { libc::signal(libc::SIGSEGV, libc::SIG_DFL) };
        });
    }

    #[test]
    #[cfg_attr(miri, ignore = "no signals under Miri")]
    fn a_fault_elsewhere_reaches_a_previous_handler() {
        extern "C" fn previous(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
            let msg = b"previous handler ran\n";
            // SAFETY: write and _exit are async-signal-safe.
            unsafe {
                libc::write(2, msg.as_ptr().cast(), msg.len());
                libc::_exit(42);
            }
        }
        let out = child("a_fault_elsewhere_reaches_a_previous_handler", || {
            // SAFETY: installing a handler before ours.
            unsafe {
                let mut sa: libc::sigaction = core::mem::zeroed();
                sa.sa_sigaction = previous as Action as usize;
                sa.sa_flags = libc::SA_SIGINFO;
                libc::sigaction(libc::SIGSEGV, &sa, null_mut());
            }
            assert_handler_installed();
            fault_outside_the_arenas();
        });
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(42), "child: {:?}\n{err}", out.status);
        assert!(err.contains("previous handler ran") && !err.contains("hakmem:"), "{err}");
    }

    // ---- cost ----------------------------------------------------------------------------------

    /// Time per alloc+free pair of a guarded block, libc's malloc and a hakmem cache (run with
    /// `--release --ignored --nocapture`; `GUARD_COST=guard|malloc|hakmem N` runs one, for
    /// `perf stat`).
    #[test]
    #[ignore = "a measurement, not a test"]
    fn cost_of_a_guarded_pair() {
        let only = std::env::var("GUARD_COST").ok();
        let n: u64 = std::env::var("GUARD_COST_N").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
        let run = |name: &str, f: &mut dyn FnMut(u64)| {
            if only.as_deref().is_some_and(|o| o != name) {
                return;
            }
            for i in 0..n.min(1000) {
                f(i); // warm up: the quarantine fills, the caches fill
            }
            let t = std::time::Instant::now();
            for i in 0..n {
                f(i);
            }
            println!("{name:7} {:8.1} ns per alloc+free pair (64 B)", t.elapsed().as_nanos() as f64 / n as f64);
        };
        let pool = GuardPool::new();
        run("guard", &mut |i| {
            let p = pool.alloc(64, 16, id(i));
            // SAFETY: a guarded block, written and freed once.
            unsafe {
                p.write_volatile(1);
                pool.free(p, id(i)).unwrap();
            }
        });
        run("malloc", &mut |_| {
            // SAFETY: malloc and free of one block.
            unsafe {
                let p = libc::malloc(64).cast::<u8>();
                p.write_volatile(1);
                libc::free(p.cast());
            }
        });
        let heap = crate::Heap::<crate::Release>::new();
        let mut c = heap.cache();
        run("hakmem", &mut |_| {
            let p = c.alloc(64, 16);
            // SAFETY: a block of the cache, written and freed once.
            unsafe {
                p.write_volatile(1);
                c.free(p);
            }
        });
    }
}
