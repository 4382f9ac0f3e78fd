//! What a fuzz input means: a multi-thread allocator program, and its readable form.
//!
//! A [`Program`] is a number of logical threads and a list of [`Step`]s. Blocks are named by the
//! order they were allocated in (`b0`, `b1`, ...): the n-th `alloc` or `calloc` of the program
//! creates block `bn`, and every later op names the block it acts on by that number. `realloc`
//! keeps the name. The decoder (`decode.rs`) only produces programs where every named block is
//! live and held by the thread that acts on it, so the interpreter never has to skip a step.

use core::fmt;

/// Most logical threads a program may have.
pub const MAX_THREADS: u8 = 8;

/// Name of a block: the index of the allocation that created it.
pub type BlockId = u32;

/// A multi-thread allocator program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Logical threads (thread caches), `1..=MAX_THREADS`.
    pub threads: u8,
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
            | Op::RemoteFree { slot, .. }
            | Op::Give { slot, .. }
            | Op::Write { slot, .. }
            | Op::Check { slot }
            | Op::DoubleFree { slot, .. }
            | Op::FreeInterior { slot, .. }
            | Op::WriteAfterFree { slot, .. }
            | Op::Overflow { slot, .. } => Some(slot),
            Op::Alloc { .. } | Op::Calloc { .. } | Op::Flush | Op::EndThread | Op::FreeWild { .. } => None,
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
        writeln!(f, "program: {} thread(s), {} step(s), {heap} heap", self.threads, self.steps.len())?;
        let mut next_block = 0;
        for (i, s) in self.steps.iter().enumerate() {
            write!(f, "{i:4} t{}  ", s.thread)?;
            if s.op.creates_block() {
                write!(f, "b{next_block} = ")?;
                next_block += 1;
            }
            writeln!(f, "{}", s.op)?;
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
            Op::RemoteFree { slot, by } => write!(f, "free b{slot} remotely by t{by}"),
            Op::Give { slot, to } => write!(f, "give b{slot} to t{to}"),
            Op::Write { slot, byte } => write!(f, "write b{slot} with {byte:#04x}"),
            Op::Check { slot } => write!(f, "check b{slot}"),
            Op::Flush => write!(f, "flush"),
            Op::EndThread => write!(f, "end thread (new cache)"),
            Op::DoubleFree { slot, by } => write!(f, "MISUSE double free b{slot} (second free by t{by})"),
            Op::FreeWild { offset } => write!(f, "MISUSE free wild pointer (harness buffer + {offset})"),
            Op::FreeInterior { slot, offset } => write!(f, "MISUSE free interior pointer b{slot} + {offset}"),
            Op::WriteAfterFree { slot, offset } => write!(f, "MISUSE free b{slot}, then write to it at offset {offset}"),
            Op::Overflow { slot, by } => write!(f, "MISUSE overflow b{slot} by {by} byte(s), then free it"),
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
        let mut steps = Vec::new();
        for line in lines {
            // "  12 t1  b4 = alloc 100 align 8": index, thread, then the op after any "bN =".
            let mut words = line.split_whitespace();
            let (Some(_index), Some(t)) = (words.next(), words.next()) else { return Err(err(line, "expected a step")) };
            let thread = t.strip_prefix('t').and_then(|x| x.parse().ok()).ok_or_else(|| err(line, "thread"))?;
            let rest: Vec<&str> = words.collect();
            let rest = match rest.iter().position(|w| *w == "=") {
                Some(i) => rest[i + 1..].join(" "),
                None => rest.join(" "),
            };
            let op = parse_op(&rest).ok_or_else(|| err(line, "unknown op"))?;
            steps.push(Step { thread, op });
        }
        Ok(Program { threads, release, steps })
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
    } else if s.starts_with("double free") {
        Op::DoubleFree { slot: slot(0)?, by: small(1)? }
    } else if s.starts_with("overflow") {
        Op::Overflow { slot: slot(0)?, by: *n.get(1)? }
    } else {
        return None;
    })
}
