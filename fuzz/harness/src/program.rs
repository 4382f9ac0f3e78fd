//! What a fuzz input means: a multi-thread allocator program, and its readable form.
//!
//! A [`Program`] is a number of logical threads and a list of [`Step`]s. Blocks are named by the
//! order they were allocated in (`b0`, `b1`, ...): the n-th `alloc` or `calloc` of the program
//! creates block `bn`, and every later op names the block it acts on by that number. `realloc`
//! keeps the name. The decoder (`decode.rs`) only produces programs where every named block is
//! live and held by the thread that acts on it, so the interpreter never has to skip a step
//! (except after an allocation the program's region budget made fail: see [`Knobs`]).
//!
//! The header also chooses the heap's thresholds ([`Knobs`]), and a step may say when it starts
//! and pauses relative to the steps running before it ([`Step::at`], [`Step::pause`]): the
//! deterministic interpreter's scheduler then runs it in the middle of another thread's
//! operation, at the preemption point the program names (see `sched.rs`).

use core::fmt;

/// Most logical threads a program may have.
pub const MAX_THREADS: u8 = 8;

/// Name of a block: the index of the allocation that created it.
pub type BlockId = u32;

/// The heap thresholds a program's header chooses. Each field indexes a small table, 0 being
/// the harness's usual setting; the others make a few steps cross a threshold that takes
/// thousands of steps otherwise (see [`Knobs::limits`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Knobs {
    /// Pooled slabs that keep their pages: 64, 0, 1, 8.
    pub dirty_pool: u8,
    /// Empty regions kept mapped: 1, 0.
    pub empty_regions: u8,
    /// The large-mapping cache: the harness's (32 MiB blocks, 256 MiB), the library's default
    /// (1 MiB, 8 MiB), tiny (1 MiB, 2 MiB, two mappings), off.
    pub large_cache: u8,
    /// Slabs a region hands out: 64, 1, 2, 4.
    pub region_slabs: u8,
    /// Small regions mapped at most: no limit, 2 (then small allocations can fail).
    pub max_regions: u8,
    /// Remote frees chained per slab before they are queued: 32, 1.
    pub pending: u8,
    /// Bytes of spare mappings kept: 256 MiB, 8 MiB.
    pub spares: u8,
    /// The entry points the program calls: `ThreadCache`'s Rust API, or the C library's paths
    /// (malloc's size-class tables; free, realloc and usable size classifying a pointer by the
    /// region map), as `LD_PRELOAD` users reach them. See `client.rs`.
    pub api: u8,
    /// Checked heaps: poison every freed slot whole (the harness's usual setting, so that any
    /// write after free shows), or only its first and last bytes on most frees, as the library's
    /// default does. Plain programs only: a misuse program's write after free must show.
    pub poison: u8,
    /// Guarded blocks (`Heap::set_guard_sample`): one small allocation in N per cache, N of
    /// [`GUARD_SAMPLES`] (0: none). Plain programs only: a misuse of a guarded block faults.
    pub guard: u8,
}

/// The guard samples the knob `guard` chooses from: none, often enough that a few steps make
/// guarded blocks, every one (so that a program of a few hundred steps cycles the quarantine),
/// and rarely.
pub const GUARD_SAMPLES: [u32; 4] = [0, 3, 1, 16];

/// Each knob's name in a listing, and its settings' names (index 0 first).
const KNOB_NAMES: [(&str, &[&str]); Knobs::COUNT] = [
    ("dirty-pool", &["64", "0", "1", "8"]),
    ("empty-regions", &["1", "0"]),
    ("large-cache", &["fuzz", "default", "tiny", "off"]),
    ("region-slabs", &["64", "1", "2", "4"]),
    ("max-regions", &["none", "2"]),
    ("pending", &["32", "1"]),
    ("spares", &["256M", "8M"]),
    ("api", &["rust", "c"]),
    ("poison", &["whole", "partial"]),
    ("guard", &["0", "3", "1", "16"]),
];

impl Knobs {
    /// How many knobs there are.
    pub const COUNT: usize = 10;

    /// The knobs' settings in the order of their names in a listing.
    pub fn fields(&self) -> [u8; Knobs::COUNT] {
        [
            self.dirty_pool,
            self.empty_regions,
            self.large_cache,
            self.region_slabs,
            self.max_regions,
            self.pending,
            self.spares,
            self.api,
            self.poison,
            self.guard,
        ]
    }

    /// The knobs of settings in the order of [`Knobs::fields`].
    pub fn from_fields(f: [u8; Knobs::COUNT]) -> Knobs {
        Knobs {
            dirty_pool: f[0],
            empty_regions: f[1],
            large_cache: f[2],
            region_slabs: f[3],
            max_regions: f[4],
            pending: f[5],
            spares: f[6],
            api: f[7],
            poison: f[8],
            guard: f[9],
        }
    }

    /// Whether every knob is within its table.
    pub fn valid(&self) -> bool {
        self.fields().iter().zip(KNOB_NAMES).all(|(&v, (_, names))| (v as usize) < names.len())
    }

    /// The heap limits these knobs choose. The purge delay is always zero, so that a program
    /// runs the same however fast it runs.
    pub fn limits(&self) -> hakmem::Limits {
        const MIB: usize = 1 << 20;
        let (large_cache_block, large_cache_bytes, large_cache_count) = match self.large_cache {
            0 => (32 * MIB, 256 * MIB, 64),
            1 => (hakmem::heap::LARGE_CACHE_BLOCK, hakmem::heap::LARGE_CACHE_BYTES, hakmem::heap::LARGE_CACHE_COUNT),
            2 => (MIB, 2 * MIB, 2),
            _ => (0, 0, 1),
        };
        hakmem::Limits {
            dirty_pool: [64, 0, 1, 8][self.dirty_pool as usize % 4],
            empty_regions: [1, 0][self.empty_regions as usize % 2],
            purge_delay: std::time::Duration::ZERO,
            large_cache_block,
            large_cache_bytes,
            large_cache_count,
            region_slabs: [64, 1, 2, 4][self.region_slabs as usize % 4],
            max_regions: [usize::MAX, 2][self.max_regions as usize % 2],
            pending_max: [32, 1][self.pending as usize % 2],
            spare_bytes: [256 * MIB, 8 * MIB][self.spares as usize % 2],
            grow_mappings: false,
        }
    }
}

/// The knobs not at their usual setting, as a listing shows them: `dirty-pool=0 pending=1`.
impl fmt::Display for Knobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (&v, (name, values)) in self.fields().iter().zip(KNOB_NAMES) {
            if v != 0 {
                write!(f, "{sep}{name}={}", values.get(v as usize).unwrap_or(&"?"))?;
                sep = " ";
            }
        }
        Ok(())
    }
}

impl Knobs {
    /// Reads the knobs from the words of a listing's header (`name=value`; others ignored).
    fn parse(words: &str) -> Result<Knobs, String> {
        let mut f = [0u8; Knobs::COUNT];
        for w in words.split_whitespace() {
            let Some((name, value)) = w.trim_end_matches(',').split_once('=') else { continue };
            let i = KNOB_NAMES.iter().position(|(n, _)| *n == name).ok_or_else(|| format!("unknown limit {name}"))?;
            f[i] = KNOB_NAMES[i].1.iter().position(|v| *v == value).ok_or_else(|| format!("unknown setting {value} of {name}"))? as u8;
        }
        Ok(Knobs::from_fields(f))
    }
}

/// A multi-thread allocator program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Logical threads (thread caches), `1..=MAX_THREADS`.
    pub threads: u8,
    /// The heap's thresholds.
    pub knobs: Knobs,
    /// Run on a release heap instead of a checked one. The checked heap finds more (every
    /// report is a failure), but release mode has paths of its own (realloc in place, usable size
    /// of the whole slot) that only a release heap runs. Misuse programs are always checked.
    pub release: bool,
    /// Steps in the order the deterministic interpreter runs them.
    pub steps: Vec<Step>,
}

/// One operation by one logical thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The logical thread that performs the op.
    pub thread: u8,
    /// What it does.
    pub op: Op,
    /// Deterministic mode: start this step at the `at`-th preemption point (an atomic operation
    /// of the allocator) after the step before it started, suspending whatever step is running
    /// then; without, or if the steps running first finish sooner, it starts after them.
    pub at: Option<u16>,
    /// Deterministic mode: at this step's own `pause`-th preemption point, let the steps it
    /// interrupted run on (until they end, or wait for a lock it holds) before it continues.
    pub pause: Option<u16>,
}

impl Step {
    /// A step that runs after the steps before it.
    pub fn new(thread: u8, op: Op) -> Step {
        Step { thread, op, at: None, pause: None }
    }
}

/// An allocator operation. The last five are client misuse, allowed only in misuse programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Allocate `size` bytes aligned to `1 << align_log2`; creates the next block.
    Alloc { size: usize, align_log2: u8 },
    /// Allocate `n * size` zeroed bytes (16-byte aligned, as C's calloc); creates the next block.
    Calloc { n: usize, size: usize },
    /// Resize a block, keeping its alignment; contents must survive up to the smaller size.
    Realloc { slot: BlockId, size: usize },
    /// Free a block through the acting thread's cache.
    Free { slot: BlockId },
    /// Free a block through another thread's cache (in free-running mode, that thread frees it).
    RemoteFree { slot: BlockId, by: u8 },
    /// Free a block from the acting thread as if its cache were gone (a thread-local destructor
    /// that runs after the allocator's): through the slab's remote queue.
    FreeUncached { slot: BlockId },
    /// Hand a block to thread `to`, which holds it from then on (in free-running mode the block
    /// crosses OS threads, and `to` uses it when it next needs it).
    Give { slot: BlockId, to: u8 },
    /// Fill a block with one byte value.
    Write { slot: BlockId, byte: u8 },
    /// Verify a block's contents.
    Check { slot: BlockId },
    /// Flush the acting thread's cache (collect remote frees, return empty slabs).
    Flush,
    /// Drop the acting thread's cache and start a fresh one, as a thread exits and another
    /// starts; the blocks it holds stay live.
    EndThread,
    /// Run the heap's fork handlers as `fork()` would; at the moment the process would be copied,
    /// no other logical thread may hold a heap lock (the child would inherit it locked).
    Fork,
    /// Give the memory the heap holds but does not use back to the OS, as `malloc_trim`.
    Trim,
    /// Misuse: free a block, then free it again through thread `by`.
    DoubleFree { slot: BlockId, by: u8 },
    /// Misuse: free a pointer into a buffer the harness owns, `offset` bytes in.
    FreeWild { offset: usize },
    /// Misuse: free a pointer `offset` bytes inside a live block.
    FreeInterior { slot: BlockId, offset: usize },
    /// Misuse: free a block, then change its byte at `offset` (unless the free sent the block's
    /// slab back to the pool: then no block owns the byte and nothing is written).
    WriteAfterFree { slot: BlockId, offset: usize },
    /// Misuse: change `by` bytes past the requested end of a block, then free it. The bytes stop
    /// at the end of the block's slot: what lies beyond is the next block's, whose header damage
    /// would be reported against that block.
    Overflow { slot: BlockId, by: usize },
    /// Misuse: change the `by` bytes right below a block's start (its header's, in checked
    /// mode), then free it.
    Underflow { slot: BlockId, by: usize },
}

impl Op {
    /// Whether this op is a client misuse (only misuse programs contain one).
    pub fn is_misuse(&self) -> bool {
        matches!(
            self,
            Op::DoubleFree { .. }
                | Op::FreeWild { .. }
                | Op::FreeInterior { .. }
                | Op::WriteAfterFree { .. }
                | Op::Overflow { .. }
                | Op::Underflow { .. }
        )
    }

    /// Whether this op acts on a live block the acting thread holds.
    pub fn acts_on_block(&self) -> bool {
        self.slot().is_some()
    }

    /// The block this op acts on, if any.
    pub fn slot(&self) -> Option<BlockId> {
        match *self {
            Op::Realloc { slot, .. }
            | Op::Free { slot }
            | Op::FreeUncached { slot }
            | Op::RemoteFree { slot, .. }
            | Op::Give { slot, .. }
            | Op::Write { slot, .. }
            | Op::Check { slot }
            | Op::DoubleFree { slot, .. }
            | Op::FreeInterior { slot, .. }
            | Op::WriteAfterFree { slot, .. }
            | Op::Overflow { slot, .. }
            | Op::Underflow { slot, .. } => Some(slot),
            Op::Alloc { .. } | Op::Calloc { .. } | Op::Flush | Op::EndThread | Op::Fork | Op::Trim | Op::FreeWild { .. } => None,
        }
    }

    /// Whether this op creates a block.
    pub fn creates_block(&self) -> bool {
        matches!(self, Op::Alloc { .. } | Op::Calloc { .. })
    }
}

impl Program {
    /// The misuse step of a misuse program: its index and op.
    pub fn misuse(&self) -> Option<(usize, Op)> {
        self.steps.iter().enumerate().find(|(_, s)| s.op.is_misuse()).map(|(i, s)| (i, s.op))
    }

    /// Number of blocks the program allocates.
    pub fn blocks(&self) -> usize {
        self.steps.iter().filter(|s| s.op.creates_block()).count()
    }
}

/// One line per step: `  12 t1  b4 = alloc 100 align 8`.
impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let heap = if self.release { "release" } else { "checked" };
        write!(f, "program: {} thread(s), {} step(s), {heap} heap", self.threads, self.steps.len())?;
        if self.knobs != Knobs::default() {
            write!(f, ", limits: {}", self.knobs)?;
        }
        writeln!(f)?;
        let mut next_block = 0;
        for (i, s) in self.steps.iter().enumerate() {
            write!(f, "{i:4} t{}  ", s.thread)?;
            if s.op.creates_block() {
                write!(f, "b{next_block} = ")?;
                next_block += 1;
            }
            write!(f, "{}", s.op)?;
            match (s.at, s.pause) {
                (None, None) => {}
                (Some(a), None) => write!(f, "  [at point {a}]")?,
                (None, Some(p)) => write!(f, "  [pause at point {p}]")?,
                (Some(a), Some(p)) => write!(f, "  [at point {a}, pause at point {p}]")?,
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// The op alone, in the program listing's words.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Alloc { size, align_log2 } => write!(f, "alloc {size} align {}", 1usize << align_log2),
            Op::Calloc { n, size } => write!(f, "calloc {n} x {size}"),
            Op::Realloc { slot, size } => write!(f, "realloc b{slot} to {size}"),
            Op::Free { slot } => write!(f, "free b{slot}"),
            Op::FreeUncached { slot } => write!(f, "free b{slot} with no cache (the thread's is gone)"),
            Op::RemoteFree { slot, by } => write!(f, "free b{slot} remotely by t{by}"),
            Op::Give { slot, to } => write!(f, "give b{slot} to t{to}"),
            Op::Write { slot, byte } => write!(f, "write b{slot} with {byte:#04x}"),
            Op::Check { slot } => write!(f, "check b{slot}"),
            Op::Flush => write!(f, "flush"),
            Op::EndThread => write!(f, "end thread (new cache)"),
            Op::Fork => write!(f, "fork"),
            Op::Trim => write!(f, "trim (malloc_trim)"),
            Op::DoubleFree { slot, by } => write!(f, "MISUSE double free b{slot} (second free by t{by})"),
            Op::FreeWild { offset } => write!(f, "MISUSE free wild pointer (harness buffer + {offset})"),
            Op::FreeInterior { slot, offset } => write!(f, "MISUSE free interior pointer b{slot} + {offset}"),
            Op::WriteAfterFree { slot, offset } => write!(f, "MISUSE free b{slot}, then write to it at offset {offset}"),
            Op::Overflow { slot, by } => write!(f, "MISUSE overflow b{slot} by {by} byte(s), then free it"),
            Op::Underflow { slot, by } => write!(f, "MISUSE underflow b{slot} by {by} byte(s), then free it"),
        }
    }
}

/// Why a program listing could not be read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

/// Reads back the listing that `Display` writes, so that regression inputs can be kept as text:
/// a listing keeps its meaning when the byte format changes, raw bytes do not.
impl core::str::FromStr for Program {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = |line: &str, what: &str| ParseError(format!("{what}: {line:?}"));
        let mut lines = s.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        let head = lines.next().ok_or_else(|| ParseError("empty listing".into()))?;
        let n = numbers(head);
        if !head.starts_with("program:") || n.is_empty() {
            return Err(err(head, "expected `program: N thread(s), ...`"));
        }
        let threads = u8::try_from(n[0]).map_err(|_| err(head, "thread count"))?;
        let release = head.contains("release heap");
        let knobs = match head.split_once("limits:") {
            Some((_, words)) => Knobs::parse(words).map_err(|e| err(head, &e))?,
            None => Knobs::default(),
        };
        let mut steps = Vec::new();
        for line in lines {
            // "  12 t1  b4 = alloc 100 align 8": index, thread, then the op after any "bN =".
            let mut words = line.split_whitespace();
            let (Some(_index), Some(t)) = (words.next(), words.next()) else { return Err(err(line, "expected a step")) };
            let thread = t.strip_prefix('t').and_then(|x| x.parse().ok()).ok_or_else(|| err(line, "thread"))?;
            let mut rest: Vec<&str> = words.collect();
            // A trailing "[at point A, pause at point P]" is the step's schedule.
            let (mut at, mut pause) = (None, None);
            if let Some(i) = rest.iter().position(|w| w.starts_with('[')) {
                let sched = rest[i..].join(" ");
                rest.truncate(i);
                for part in sched.trim_matches(|c| c == '[' || c == ']').split(',') {
                    let v = numbers(part).first().and_then(|&v| u16::try_from(v).ok()).ok_or_else(|| err(line, "schedule"))?;
                    if part.contains("pause") {
                        pause = Some(v);
                    } else {
                        at = Some(v);
                    }
                }
            }
            let rest = match rest.iter().position(|w| *w == "=") {
                Some(i) => rest[i + 1..].join(" "),
                None => rest.join(" "),
            };
            let op = parse_op(&rest).ok_or_else(|| err(line, "unknown op"))?;
            steps.push(Step { thread, op, at, pause });
        }
        Ok(Program { threads, knobs, release, steps })
    }
}

/// The numbers in `s`, in order: `b4`, `t1`, `0x5a`, `100` and `(buffer + 64)` all count.
fn numbers(s: &str) -> Vec<usize> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter_map(|w| match w.strip_prefix("0x") {
            Some(hex) => usize::from_str_radix(hex, 16).ok(),
            None => w.trim_start_matches(['b', 't']).parse().ok(),
        })
        .collect()
}

/// One op in the listing's words (see `Display for Op`).
fn parse_op(s: &str) -> Option<Op> {
    let s = s.strip_prefix("MISUSE ").unwrap_or(s);
    let n = numbers(s);
    let slot = |i: usize| n.get(i).map(|&x| x as BlockId);
    let small = |i: usize| n.get(i).and_then(|&x| u8::try_from(x).ok());
    Some(if s.starts_with("alloc ") {
        let align = *n.get(1)?;
        if !align.is_power_of_two() {
            return None;
        }
        Op::Alloc { size: *n.first()?, align_log2: align.trailing_zeros() as u8 }
    } else if s.starts_with("calloc ") {
        Op::Calloc { n: *n.first()?, size: *n.get(1)? }
    } else if s.starts_with("realloc ") {
        Op::Realloc { slot: slot(0)?, size: *n.get(1)? }
    } else if s.starts_with("free wild") {
        Op::FreeWild { offset: *n.first()? }
    } else if s.starts_with("free interior") {
        Op::FreeInterior { slot: slot(0)?, offset: *n.get(1)? }
    } else if s.starts_with("free ") && s.contains("no cache") {
        Op::FreeUncached { slot: slot(0)? }
    } else if s.starts_with("free ") && s.contains("remotely") {
        Op::RemoteFree { slot: slot(0)?, by: small(1)? }
    } else if s.starts_with("free ") && s.contains("then write") {
        Op::WriteAfterFree { slot: slot(0)?, offset: *n.get(1)? }
    } else if s.starts_with("free ") {
        Op::Free { slot: slot(0)? }
    } else if s.starts_with("give ") {
        Op::Give { slot: slot(0)?, to: small(1)? }
    } else if s.starts_with("write ") {
        Op::Write { slot: slot(0)?, byte: small(1)? }
    } else if s.starts_with("check ") {
        Op::Check { slot: slot(0)? }
    } else if s == "flush" {
        Op::Flush
    } else if s.starts_with("end thread") {
        Op::EndThread
    } else if s.starts_with("fork") {
        Op::Fork
    } else if s.starts_with("trim") {
        Op::Trim
    } else if s.starts_with("double free") {
        Op::DoubleFree { slot: slot(0)?, by: small(1)? }
    } else if s.starts_with("overflow") {
        Op::Overflow { slot: slot(0)?, by: *n.get(1)? }
    } else if s.starts_with("underflow") {
        Op::Underflow { slot: slot(0)?, by: *n.get(1)? }
    } else {
        return None;
    })
}
