//! Reports: what the checked mode says when a check fails.
//!
//! One type for every failure, client misuse and allocator invariant alike, so tests and the fuzz
//! oracle match on a kind and a few fields, and a human reads one sentence. By default a report is
//! printed to stderr (without allocating: the allocator may be the global one) and the process
//! aborts; a heap can instead capture its reports ([`crate::Heap::capture_reports`]), in which
//! case the operation that failed is skipped and the program goes on.

use core::fmt;

/// What went wrong.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum ReportKind {
    /// A block freed again after it was already freed.
    DoubleFree,
    /// A pointer into this heap that is not the start of a live block: interior or never allocated.
    InvalidFree,
    /// A pointer that is not in any mapping of this heap (wild, or from another allocator or heap).
    ForeignPointer,
    /// A block's header (in front of the client's bytes) does not match its keyed canary.
    HeaderCorrupt,
    /// The client wrote past the requested size of a block (the tail canary changed).
    Overflow,
    /// The client wrote before the start of a block (the canary in front of it changed), not
    /// reached from the block below.
    Underflow,
    /// The client wrote into a block after freeing it (the poison pattern changed, or a write
    /// to a guarded block's protected page faulted).
    WriteAfterFree,
    /// The client read a block after freeing it (a read of a guarded block's protected page).
    ReadAfterFree,
    /// The client touched a guard arena's page that belongs to no block (a guard page with no
    /// live neighbour, a slot never allocated).
    WildAccess,
    /// A free-list link that does not name a free slot of the same slab.
    CorruptLink,
    /// The allocator broke one of its own invariants (a block in two places, a live block in a
    /// released slab, ...). Always a bug in hakmem, never in the client.
    Invariant,
}

impl ReportKind {
    /// True for misuse by the program; false for a broken allocator invariant.
    pub fn is_client_error(self) -> bool {
        !matches!(self, ReportKind::Invariant)
    }

    fn describe(self) -> &'static str {
        match self {
            ReportKind::DoubleFree => "double free",
            ReportKind::InvalidFree => "invalid free",
            ReportKind::ForeignPointer => "free of a pointer hakmem never handed out",
            ReportKind::HeaderCorrupt => "corrupted block header",
            ReportKind::Overflow => "heap buffer overflow",
            ReportKind::Underflow => "heap buffer underflow",
            ReportKind::WriteAfterFree => "write after free",
            ReportKind::ReadAfterFree => "read after free",
            ReportKind::WildAccess => "wild access to a guard arena",
            ReportKind::CorruptLink => "corrupted free-list link",
            ReportKind::Invariant => "allocator invariant broken",
        }
    }
}

/// Who did something to a block, and when.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Identity {
    /// The operation's number among those of its thread cache (each checked allocation and free
    /// takes the next); numbers of threads with no cache are shared by the heap.
    pub seq: u64,
    /// The id of the thread cache that did it ([`crate::ThreadCache::id`]), or for a thread
    /// with no cache [`Identity::NO_CACHE`] with the OS thread id in the bits below it.
    pub thread: u32,
}

impl Identity {
    /// Flag of a thread number that names an OS thread with no cache by its id (`gettid`).
    pub const NO_CACHE: u32 = 1 << 23;

    /// The thread number of the calling thread, which has no cache.
    pub fn uncached_thread() -> u32 {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        Self::NO_CACHE | (tid & (Self::NO_CACHE - 1))
    }
}

/// Prints a thread number: a cache's id, or an OS thread with no cache.
struct Thread(u32);

impl fmt::Display for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 & Identity::NO_CACHE != 0 {
            write!(f, "OS thread {} (no cache)", self.0 & !Identity::NO_CACHE)
        } else {
            write!(f, "thread {}", self.0)
        }
    }
}

/// The memory access that faulted, for reports made by the guard pool's signal handler.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Fault {
    /// The faulting address.
    pub addr: usize,
    /// A write (true) or a read (false); None where the architecture does not say.
    pub write: Option<bool>,
}

/// One failed check.
#[derive(Clone, PartialEq, Eq, Debug, Hash)]
pub struct Report {
    /// What went wrong.
    pub kind: ReportKind,
    /// The client address involved (the block start, or the pointer that was passed).
    pub addr: usize,
    /// Size class of the block, when it lies in a slab.
    pub class: Option<usize>,
    /// Slot size of that class in bytes.
    pub class_size: Option<usize>,
    /// Bytes the client asked for, when known.
    pub requested: Option<usize>,
    /// Start of the region containing the address, when it is in this heap.
    pub region: Option<usize>,
    /// Index of the slab within the region.
    pub slab: Option<usize>,
    /// Offset of the first bad byte from `addr`, for content checks (for [`ReportKind::Underflow`]:
    /// how many bytes before `addr` it lies); for a fault, of the faulting address.
    pub offset: Option<usize>,
    /// The value the check expected.
    pub expected: u64,
    /// The value it found.
    pub found: u64,
    /// When and by whom the block was last allocated.
    pub alloc: Option<Identity>,
    /// When and by whom it was last freed.
    pub free: Option<Identity>,
    /// The thread that ran into the failure, numbered as in [`Identity::thread`] (0: the heap
    /// itself, in a sweep or a slab or region going back).
    pub thread: u32,
    /// A few words on the specific check, for invariants and corrupted metadata.
    pub detail: &'static str,
    /// The block is a guarded one (see `guard`): it has no class.
    pub guarded: bool,
    /// The access that faulted, for a report made by the guard pool's signal handler.
    pub fault: Option<Fault>,
}

impl Report {
    /// A report of `kind` at `addr` with every optional field empty.
    pub fn new(kind: ReportKind, addr: usize, thread: u32) -> Report {
        Report {
            kind,
            addr,
            class: None,
            class_size: None,
            requested: None,
            region: None,
            slab: None,
            offset: None,
            expected: 0,
            found: 0,
            alloc: None,
            free: None,
            thread,
            detail: "",
            guarded: false,
            fault: None,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {:#x}", self.kind.describe(), self.addr)?;
        match (self.class, self.class_size) {
            (Some(c), Some(s)) => write!(f, " (class {c}, {s} B")?,
            _ if self.guarded => write!(f, " (guarded block")?,
            _ => write!(f, " (no slab block")?,
        }
        if let Some(r) = self.requested {
            write!(f, ", {r} B requested")?;
        }
        f.write_str(")")?;
        let underflow = self.kind == ReportKind::Underflow;
        if let Some(a) = self.fault {
            let what = match a.write {
                Some(true) => "write",
                Some(false) => "read",
                None => "access",
            };
            write!(f, ": {what} at {:#x}", a.addr)?;
            match self.offset {
                Some(1) if underflow => write!(f, ", 1 byte before the block")?,
                Some(o) if underflow => write!(f, ", {o} bytes before the block")?,
                Some(o) => write!(f, ", byte {o} of the block")?,
                None => {}
            }
        } else if let (Some(o), ReportKind::InvalidFree) = (self.offset, self.kind) {
            write!(f, ": {o} bytes into the block")?;
        } else if let (Some(o), true) = (self.offset, underflow) {
            write!(f, ": written up to {o} before the block, byte -{o} is {:#04x}, expected {:#04x}", self.found, self.expected)?;
        } else if let Some(o) = self.offset {
            write!(f, ": byte {o} is {:#04x}, expected {:#04x}", self.found, self.expected)?;
        } else if self.expected != self.found {
            write!(f, ": found {:#x}, expected {:#x}", self.found, self.expected)?;
        }
        if let Some(a) = self.alloc {
            write!(f, ", allocated at #{} by {}", a.seq, Thread(a.thread))?;
        }
        if let Some(fr) = self.free {
            let first = if self.kind == ReportKind::DoubleFree { "first freed" } else { "freed" };
            write!(f, ", {first} at #{} by {}", fr.seq, Thread(fr.thread))?;
        }
        // (A fault's handler runs in no particular cache: it has no thread to name.)
        if self.fault.is_none() {
            write!(f, "; seen by {}", Thread(self.thread))?;
        }
        if let (Some(r), Some(s)) = (self.region, self.slab) {
            write!(f, " in region {r:#x} slab {s}")?;
        }
        if !self.detail.is_empty() {
            write!(f, " [{}]", self.detail)?;
        }
        Ok(())
    }
}

/// Prints `r` to stderr with no allocation and aborts: the default action.
pub(crate) fn print_and_abort(r: &Report) -> ! {
    use core::fmt::Write;
    struct Buf {
        b: [u8; 1024],
        n: usize,
    }
    impl Write for Buf {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let k = s.len().min(self.b.len() - self.n);
            self.b[self.n..self.n + k].copy_from_slice(&s.as_bytes()[..k]);
            self.n += k;
            Ok(())
        }
    }
    let mut out = Buf { b: [0; 1024], n: 0 };
    let _ = writeln!(out, "hakmem: {r}");
    // SAFETY: writing an initialised buffer to stderr, then aborting.
    unsafe {
        libc::write(2, out.b.as_ptr().cast(), out.n);
        libc::abort()
    }
}

/// Writes `msg` to stderr without allocating and aborts.
pub(crate) fn fatal(msg: &str) -> ! {
    // SAFETY: writing a static buffer to stderr; abort never returns.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::abort()
    }
}
