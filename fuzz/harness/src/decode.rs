//! Bytes to [`Program`] and back.
//!
//! The format is hand-written on top of `arbitrary::Unstructured` rather than derived, so that
//! [`encode`] can be its exact inverse (seed corpora are written by `encode` and stay valid as the
//! format evolves; `tests/format.rs` checks `decode(encode(p)) == p`). Layout:
//!
//! ```text
//! header byte 0  threads-1 in bits 0-2; knobs pending (bit 3), spares (4), api (5) and
//!                poison (6, plain programs only); bit 7: release heap (plain programs only)
//! header byte 1  knobs dirty-pool (bits 0-1), empty-regions (2), large-cache (3-4),
//!                region-slabs (5-6), max-regions (7)   (see `program::Knobs`)
//! header byte 2  knob guard (bits 0-1, plain programs only); bits 2-7 ignored
//! then per step:   thread  kind  fields...
//! kind = mod 64, an op of the weighted table `KINDS`; 0xE0-0xEF in plain programs: a schedule
//!        prefix of the next step, `value 0xE0` (start at point value+1) or `value 0xE1`
//!        (pause at point value+1); from 0xF0 in misuse programs: a misuse
//! thread = mod threads; for an op on a block, an index (mod count) into the threads holding one
//! size  = tier byte + u16 LE   (tier, low 4 bits: 0-10: 0..=1024, 11-13: 1025..=32768,
//!                               14: 32769..=557056, 15: edge table)
//! align = one byte             (< 213: 1..=16; < 245: 32..=4096; else 8 KiB..=8 MiB)
//! slot  = one byte, an index (mod count) into the blocks the acting thread holds
//! ```
//!
//! The decoder replays each step on a [`Sim`] (which blocks are live, who holds them, how big they
//! are) and rejects nonsense: a step naming a block when its thread holds none, a misuse outside
//! a misuse program or a second one inside it, a misuse on a block it cannot be judged on, or
//! limits exceeded. So every accepted program runs every step.

use crate::program::{BlockId, Knobs, Op, Program, Step, MAX_THREADS};
use arbitrary::{Arbitrary, Unstructured};

/// Most steps in a program; longer inputs are rejected to bound the time per input.
pub const MAX_STEPS: usize = 1024;
/// Most blocks one thread may hold at once (so a one-byte slot index reaches each of them).
pub const MAX_HELD: usize = 256;
/// Most requested bytes live at once, so that no input runs into the fuzzer's memory limit.
pub const MAX_LIVE_BYTES: usize = 64 << 20;
/// Bytes in the harness-owned buffer that `FreeWild` points into.
pub const WILD_LEN: usize = 4096;
/// Largest block a misuse may target: well inside the slab tiers under any header size, because
/// large blocks are page-mapped and carry no canaries or poison.
pub const MISUSE_SIZE_MAX: usize = 16 * 1024;
/// Largest large block an interior free or an underflow may target.
pub const MISUSE_LARGE_MAX: usize = 1 << 20;
/// Most bytes an `Overflow` writes past the end.
pub const MAX_OVERFLOW: usize = 8;
/// Most bytes an `Underflow` changes below a block's start: a checked header's 16 (all of
/// them: no longer an underflow that the header can tell, but a header overwritten).
pub const MAX_UNDERFLOW: usize = 16;
/// Most elements of a calloc.
pub const MAX_CALLOC_N: usize = 16;

/// Sizes at tier boundaries and other corners, chosen by tier 15.
pub const EDGE_SIZES: [usize; 28] = [
    0,
    1,
    7,
    8,
    9,
    15,
    16,
    17,
    1023,
    1024,
    1025,
    4095,
    4096,
    4097,
    16384,
    21760,
    21761,
    32767,
    32768,
    32769,
    65535,
    65536,
    65537,
    1 << 20,
    (1 << 22) - 4096,
    1 << 22,
    (1 << 22) + 1,
    8 << 20,
];

/// Which ops a decoder accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Well-behaved programs only (deterministic and free-running targets).
    Plain,
    /// Exactly one misuse op (misuse target).
    Misuse,
}

/// Why an input was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reject(pub &'static str);

/// Op kinds as they sit in the kind byte; the table weights them (its length is a power of two
/// so that every byte value maps to a kind). Misuse kinds live at `MISUSE_BASE..` instead.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Alloc,
    Calloc,
    Realloc,
    Free,
    FreeUncached,
    RemoteFree,
    Give,
    Write,
    Check,
    Flush,
    EndThread,
    Fork,
    Trim,
}

const KINDS: [Kind; 64] = {
    use Kind::*;
    [
        Alloc, Alloc, Alloc, Alloc, Alloc, Alloc, Alloc, Alloc, // 16
        Alloc, Alloc, Alloc, Alloc, Alloc, Alloc, Alloc, Alloc,
        Calloc, Calloc, Calloc, Calloc, // 4
        Realloc, Realloc, Realloc, Realloc, Realloc, Realloc, Realloc, Realloc, // 8
        Free, Free, Free, Free, Free, Free, Free, Free, Free, FreeUncached, // 10
        RemoteFree, RemoteFree, RemoteFree, RemoteFree, RemoteFree, // 10
        RemoteFree, RemoteFree, RemoteFree, RemoteFree, RemoteFree,
        Give, Give, Give, Give, // 4
        Write, Write, Write, Write, Check, Check, // 6
        // A fork costs the process's page tables (most under ASan): one step in 64.
        Flush, Flush, EndThread, EndThread, Trim, Fork, // 6
    ]
};

/// Kind bytes from here up are misuse ops in a misuse program (and plain kinds, mod 64, in a
/// plain one).
const MISUSE_BASE: u8 = 0xF0;
/// Kind bytes `SCHED_BASE` (start at a point) and `SCHED_BASE + 1` (pause at a point) are a
/// schedule prefix of the next step in a plain program (the rest of 0xE0-0xEF are plain kinds).
const SCHED_BASE: u8 = 0xE0;
const MISUSE_KINDS: u8 = 6;

/// What the decoder and encoder know about the program so far.
#[derive(Default)]
pub struct Sim {
    threads: u8,
    /// Per thread, the blocks it holds, in an order both sides agree on.
    held: Vec<Vec<BlockId>>,
    /// Per block: requested size, alignment, and holder while live.
    blocks: Vec<SimBlock>,
    live_bytes: usize,
    misuses: usize,
}

#[derive(Clone, Copy)]
struct SimBlock {
    size: usize,
    align_log2: u8,
    holder: Option<u8>,
}

impl Sim {
    /// State at the start of a program with `threads` threads.
    pub fn new(threads: u8) -> Self {
        Sim { threads, held: vec![Vec::new(); threads as usize], ..Default::default() }
    }

    /// The threads that hold a block, in thread order.
    fn holders(&self) -> impl Iterator<Item = u8> + '_ {
        (0..self.threads).filter(|&t| !self.held[t as usize].is_empty())
    }

    /// The acting thread that thread byte `b` names: for an op on a block, one of the threads
    /// that hold a block (so that the op is never nonsense while any block is live).
    fn thread(&self, b: u8, needs_block: bool) -> Result<u8, Reject> {
        if !needs_block {
            return Ok(b % self.threads);
        }
        let n = self.holders().count();
        if n == 0 {
            return Err(Reject("op on a block, but no block is live"));
        }
        Ok(self.holders().nth(b as usize % n).expect("n holders"))
    }

    /// The thread byte that names thread `t` for an op (the inverse of [`Sim::thread`]).
    fn thread_byte(&self, t: u8, needs_block: bool) -> Result<u8, Reject> {
        if !needs_block {
            return Ok(t);
        }
        self.holders().position(|h| h == t).map(|i| i as u8).ok_or(Reject("block op by a thread that holds no block"))
    }

    /// The block that slot byte `b` names for thread `t`.
    fn pick(&self, t: u8, b: u8) -> Result<BlockId, Reject> {
        let held = &self.held[t as usize];
        if held.is_empty() {
            return Err(Reject("op on a block, but the thread holds none"));
        }
        Ok(held[b as usize % held.len()])
    }

    /// The slot byte that names block `id` for thread `t`.
    fn slot_byte(&self, t: u8, id: BlockId) -> Result<u8, Reject> {
        let i = self.held[t as usize].iter().position(|&x| x == id).ok_or(Reject("block not held by the acting thread"))?;
        Ok(i as u8)
    }

    /// Requested size of live block `id`.
    fn size(&self, id: BlockId) -> usize {
        self.blocks[id as usize].size
    }

    /// Whether a misuse that writes into a block or frees inside it can be judged on block `id`:
    /// a slab block, or (`large`: an interior free, a write just before the block, which checked
    /// mode sees on large blocks too) a large one of at most [`MISUSE_LARGE_MAX`] bytes aligned
    /// to a page at most, so that it and its front lie in the one region its mapping starts.
    fn misusable(&self, id: BlockId, large: bool) -> Result<(), Reject> {
        let b = self.blocks[id as usize];
        let slab = b.size <= MISUSE_SIZE_MAX && crate::in_slab::<hakmem::Checked>(b.size, 1 << b.align_log2);
        let large_ok = large && !crate::in_slab::<hakmem::Checked>(b.size, 1 << b.align_log2) && b.size <= MISUSE_LARGE_MAX && b.align_log2 <= 12;
        if !slab && !large_ok {
            return Err(Reject("misuse on a block it cannot be judged on (large, or too big a slab block)"));
        }
        Ok(())
    }

    fn create(&mut self, t: u8, size: usize, align_log2: u8) -> Result<(), Reject> {
        if self.held[t as usize].len() >= MAX_HELD {
            return Err(Reject("thread holds too many blocks"));
        }
        self.live_bytes += size;
        if self.live_bytes > MAX_LIVE_BYTES {
            return Err(Reject("too many live bytes"));
        }
        self.held[t as usize].push(self.blocks.len() as BlockId);
        self.blocks.push(SimBlock { size, align_log2, holder: Some(t) });
        Ok(())
    }

    fn kill(&mut self, id: BlockId) {
        let b = &mut self.blocks[id as usize];
        let t = b.holder.take().expect("kill of a dead block") as usize;
        self.live_bytes -= b.size;
        let i = self.held[t].iter().position(|&x| x == id).expect("holder holds the block");
        self.held[t].swap_remove(i);
    }

    /// Checks `step` against the state and applies it; both the decoder and the encoder call it
    /// after resolving the step, so they agree on everything later steps depend on.
    pub fn apply(&mut self, step: &Step, flavor: Flavor) -> Result<(), Reject> {
        let t = step.thread;
        if t >= self.threads {
            return Err(Reject("thread out of range"));
        }
        let held = |s: &Self, id: BlockId| match s.blocks.get(id as usize) {
            Some(b) if b.holder == Some(t) => Ok(()),
            _ => Err(Reject("block not held by the acting thread")),
        };
        if step.op.is_misuse() {
            if flavor == Flavor::Plain {
                return Err(Reject("misuse in a plain program"));
            }
            self.misuses += 1;
            if self.misuses > 1 {
                return Err(Reject("more than one misuse"));
            }
        }
        match step.op {
            Op::Alloc { size, align_log2 } => self.create(t, size, align_log2)?,
            Op::Calloc { n, size } => {
                let total = n.checked_mul(size).ok_or(Reject("calloc overflow"))?;
                self.create(t, total, 4)?
            }
            Op::Realloc { slot, size } => {
                held(self, slot)?;
                let b = &mut self.blocks[slot as usize];
                self.live_bytes = self.live_bytes - b.size + size;
                b.size = size;
                if self.live_bytes > MAX_LIVE_BYTES {
                    return Err(Reject("too many live bytes"));
                }
            }
            Op::Free { slot } | Op::FreeUncached { slot } | Op::RemoteFree { slot, .. } | Op::DoubleFree { slot, .. } => {
                // A double free is judged on any block, large ones included.
                held(self, slot)?;
                self.kill(slot);
            }
            Op::Give { slot, to } => {
                held(self, slot)?;
                if to >= self.threads {
                    return Err(Reject("thread out of range"));
                }
                let i = self.held[t as usize].iter().position(|&x| x == slot).expect("held");
                self.held[t as usize].swap_remove(i);
                if self.held[to as usize].len() >= MAX_HELD {
                    return Err(Reject("thread holds too many blocks"));
                }
                self.held[to as usize].push(slot);
                self.blocks[slot as usize].holder = Some(to);
            }
            Op::Write { slot, .. } | Op::Check { slot } => held(self, slot)?,
            Op::Flush | Op::EndThread | Op::Fork | Op::Trim | Op::FreeWild { .. } => {}
            Op::FreeInterior { slot, offset } => {
                held(self, slot)?;
                self.misusable(slot, true)?;
                if offset == 0 || offset >= self.size(slot) {
                    return Err(Reject("interior offset outside the block"));
                }
            }
            Op::WriteAfterFree { slot, offset } => {
                held(self, slot)?;
                self.misusable(slot, false)?;
                if offset >= self.size(slot) {
                    return Err(Reject("write-after-free offset outside the block"));
                }
                self.kill(slot);
            }
            Op::Overflow { slot, by } | Op::Underflow { slot, by } => {
                held(self, slot)?;
                self.misusable(slot, matches!(step.op, Op::Underflow { .. }))?;
                let max = if matches!(step.op, Op::Overflow { .. }) { MAX_OVERFLOW } else { MAX_UNDERFLOW };
                if !(1..=max).contains(&by) {
                    return Err(Reject("overflow or underflow length out of range"));
                }
                self.kill(slot);
            }
        }
        Ok(())
    }
}

fn byte(u: &mut Unstructured<'_>) -> u8 {
    // An exhausted input reads as zeros, which is fine: the step is still well formed.
    u8::arbitrary(u).unwrap_or(0)
}

fn word(u: &mut Unstructured<'_>) -> u16 {
    u16::from_le_bytes([byte(u), byte(u)])
}

fn decode_size(u: &mut Unstructured<'_>) -> usize {
    let b = byte(u);
    let v = word(u) as usize;
    match b % 16 {
        0..=10 => v % 1025,
        11..=13 => 1025 + v % (32768 - 1024),
        // The tier byte's high bits give the low bits of a large size.
        14 => 32769 + v * 8 + (b as usize >> 4) % 8,
        _ => EDGE_SIZES[v % EDGE_SIZES.len()],
    }
}

/// Appends the three bytes that decode to `size`.
pub fn encode_size(out: &mut Vec<u8>, size: usize) -> Result<(), Reject> {
    let (tier, v) = if size <= 1024 {
        (0, size)
    } else if size <= 32768 {
        (11, size - 1025)
    } else if (size - 32769) / 8 <= u16::MAX as usize {
        (14 | ((size - 32769) % 8) << 4, (size - 32769) / 8)
    } else if let Some(i) = EDGE_SIZES.iter().position(|&s| s == size) {
        (15, i)
    } else {
        return Err(Reject("size has no encoding"));
    };
    out.push(tier as u8);
    out.extend_from_slice(&(v as u16).to_le_bytes());
    Ok(())
}

fn decode_align(b: u8) -> u8 {
    // Mostly the alignments programs use. Anything above a page maps a block of its own, which
    // costs mmap, munmap and page faults: at a quarter of all allocations they halved the checked
    // target's speed.
    match b {
        0..=212 => b % 5,
        213..=244 => 5 + (b - 213) % 8,
        _ => 13 + (b - 245) % 11,
    }
}

fn encode_align(log2: u8) -> Result<u8, Reject> {
    match log2 {
        0..=4 => Ok(log2),
        5..=12 => Ok(log2 - 5 + 213),
        13..=23 => Ok(log2 - 13 + 245),
        _ => Err(Reject("alignment has no encoding")),
    }
}

/// Decodes a program from raw fuzzer bytes, or says why the bytes are nonsense.
pub fn decode(data: &[u8], flavor: Flavor) -> Result<Program, Reject> {
    let mut u = Unstructured::new(data);
    decode_from(&mut u, flavor)
}

/// The knobs the header bytes choose.
fn decode_knobs(h0: u8, h1: u8, h2: u8) -> Knobs {
    Knobs {
        pending: (h0 >> 3) & 1,
        spares: (h0 >> 4) & 1,
        api: (h0 >> 5) & 1,
        poison: (h0 >> 6) & 1,
        dirty_pool: h1 & 3,
        empty_regions: (h1 >> 2) & 1,
        large_cache: (h1 >> 3) & 3,
        region_slabs: (h1 >> 5) & 3,
        max_regions: h1 >> 7,
        guard: h2 & 3,
    }
}

/// The header bytes of a program.
fn encode_header(p: &Program) -> [u8; 3] {
    let k = p.knobs;
    [
        (p.threads - 1) | (k.pending << 3) | (k.spares << 4) | (k.api << 5) | (k.poison << 6) | ((p.release as u8) << 7),
        k.dirty_pool | (k.empty_regions << 2) | (k.large_cache << 3) | (k.region_slabs << 5) | (k.max_regions << 7),
        k.guard,
    ]
}

/// As [`decode`], from an `Unstructured` (for `Arbitrary`).
pub fn decode_from(u: &mut Unstructured<'_>, flavor: Flavor) -> Result<Program, Reject> {
    let header = byte(u);
    let threads = 1 + header % MAX_THREADS;
    let release = flavor == Flavor::Plain && header & 0x80 != 0;
    let (h1, h2) = (byte(u), byte(u));
    let mut knobs = decode_knobs(header, h1, h2);
    if flavor == Flavor::Misuse {
        // A misuse is judged on blocks that exist: no budget to make an allocation fail; a
        // write after free anywhere in the slot must show; and a guarded block's misuse faults.
        knobs.max_regions = 0;
        knobs.poison = 0;
        knobs.guard = 0;
    }
    let mut sim = Sim::new(threads);
    let mut steps = Vec::new();
    let (mut at, mut pause) = (None, None);
    while !u.is_empty() {
        if steps.len() == MAX_STEPS {
            return Err(Reject("too many steps"));
        }
        let tb = byte(u);
        let k = byte(u);
        if flavor == Flavor::Plain && (k == SCHED_BASE || k == SCHED_BASE + 1) {
            let slot = if k == SCHED_BASE { &mut at } else { &mut pause };
            if slot.is_some() {
                return Err(Reject("two schedule prefixes of one kind"));
            }
            *slot = Some(tb as u16 + 1);
            continue;
        }
        let misuse = flavor == Flavor::Misuse && k >= MISUSE_BASE;
        let needs_block = if misuse {
            (k - MISUSE_BASE) % MISUSE_KINDS != 1
        } else {
            !matches!(KINDS[k as usize % KINDS.len()], Kind::Alloc | Kind::Calloc | Kind::Flush | Kind::EndThread | Kind::Fork | Kind::Trim)
        };
        let t = sim.thread(tb, needs_block)?;
        let op = if misuse {
            match (k - MISUSE_BASE) % MISUSE_KINDS {
                0 => Op::DoubleFree { slot: sim.pick(t, byte(u))?, by: byte(u) % threads },
                1 => Op::FreeWild { offset: word(u) as usize % WILD_LEN },
                2 => {
                    let slot = sim.pick(t, byte(u))?;
                    let size = sim.size(slot);
                    let v = word(u) as usize;
                    Op::FreeInterior { slot, offset: if size < 2 { 0 } else { 1 + v % (size - 1) } }
                }
                3 => {
                    let slot = sim.pick(t, byte(u))?;
                    let size = sim.size(slot);
                    let v = word(u) as usize;
                    // A size-0 block has no byte to write; apply() rejects the offset then.
                    Op::WriteAfterFree { slot, offset: if size == 0 { 0 } else { v % size } }
                }
                4 => Op::Overflow { slot: sim.pick(t, byte(u))?, by: 1 + byte(u) as usize % MAX_OVERFLOW },
                _ => Op::Underflow { slot: sim.pick(t, byte(u))?, by: 1 + byte(u) as usize % MAX_UNDERFLOW },
            }
        } else {
            match KINDS[k as usize % KINDS.len()] {
                Kind::Alloc => {
                    let size = decode_size(u);
                    Op::Alloc { size, align_log2: decode_align(byte(u)) }
                }
                Kind::Calloc => {
                    let n = 1 + byte(u) as usize % MAX_CALLOC_N;
                    Op::Calloc { n, size: decode_size(u) }
                }
                Kind::Realloc => {
                    let slot = sim.pick(t, byte(u))?;
                    Op::Realloc { slot, size: decode_size(u) }
                }
                Kind::Free => Op::Free { slot: sim.pick(t, byte(u))? },
                Kind::FreeUncached => Op::FreeUncached { slot: sim.pick(t, byte(u))? },
                Kind::RemoteFree => Op::RemoteFree { slot: sim.pick(t, byte(u))?, by: byte(u) % threads },
                Kind::Give => Op::Give { slot: sim.pick(t, byte(u))?, to: byte(u) % threads },
                Kind::Write => Op::Write { slot: sim.pick(t, byte(u))?, byte: byte(u) },
                Kind::Check => Op::Check { slot: sim.pick(t, byte(u))? },
                Kind::Flush => Op::Flush,
                Kind::EndThread => Op::EndThread,
                Kind::Fork => Op::Fork,
                Kind::Trim => Op::Trim,
            }
        };
        let step = Step { thread: t, op, at: at.take(), pause: pause.take() };
        sim.apply(&step, flavor)?;
        steps.push(step);
    }
    if steps.is_empty() {
        return Err(Reject("no steps"));
    }
    if at.is_some() || pause.is_some() {
        return Err(Reject("a schedule prefix with no step after it"));
    }
    if flavor == Flavor::Misuse && sim.misuses == 0 {
        return Err(Reject("misuse program without a misuse"));
    }
    Ok(Program { threads, knobs, release, steps })
}

/// Bytes that decode to `p` (under the flavor `p` needs); fails if `p` is not a program the
/// decoder could produce.
pub fn encode(p: &Program) -> Result<Vec<u8>, Reject> {
    if p.threads == 0 || p.threads > MAX_THREADS {
        return Err(Reject("thread count out of range"));
    }
    let flavor = if p.misuse().is_some() { Flavor::Misuse } else { Flavor::Plain };
    if p.release && flavor == Flavor::Misuse {
        return Err(Reject("misuse programs run on a checked heap"));
    }
    if (p.knobs.max_regions != 0 || p.knobs.poison != 0 || p.knobs.guard != 0) && flavor == Flavor::Misuse {
        return Err(Reject("misuse programs have no region budget or guarded blocks, and poison whole"));
    }
    if !p.knobs.valid() {
        return Err(Reject("knob out of range"));
    }
    let mut out = encode_header(p).to_vec();
    let mut sim = Sim::new(p.threads);
    let kind = |k: Kind| KINDS.iter().position(|&x| x == k).expect("every kind is in the table") as u8;
    for step in &p.steps {
        let t = step.thread;
        for (v, k) in [(step.at, SCHED_BASE), (step.pause, SCHED_BASE + 1)] {
            let Some(v) = v else { continue };
            if flavor == Flavor::Misuse {
                return Err(Reject("misuse programs have no schedules"));
            }
            if !(1..=256).contains(&v) {
                return Err(Reject("schedule point out of range"));
            }
            out.extend([(v - 1) as u8, k]);
        }
        out.push(sim.thread_byte(t, step.op.acts_on_block())?);
        match step.op {
            Op::Alloc { size, align_log2 } => {
                out.push(kind(Kind::Alloc));
                encode_size(&mut out, size)?;
                out.push(encode_align(align_log2)?);
            }
            Op::Calloc { n, size } => {
                if !(1..=MAX_CALLOC_N).contains(&n) {
                    return Err(Reject("calloc count out of range"));
                }
                out.extend([kind(Kind::Calloc), (n - 1) as u8]);
                encode_size(&mut out, size)?;
            }
            Op::Realloc { slot, size } => {
                out.extend([kind(Kind::Realloc), sim.slot_byte(t, slot)?]);
                encode_size(&mut out, size)?;
            }
            Op::Free { slot } => out.extend([kind(Kind::Free), sim.slot_byte(t, slot)?]),
            Op::FreeUncached { slot } => out.extend([kind(Kind::FreeUncached), sim.slot_byte(t, slot)?]),
            Op::RemoteFree { slot, by } => out.extend([kind(Kind::RemoteFree), sim.slot_byte(t, slot)?, by]),
            Op::Give { slot, to } => out.extend([kind(Kind::Give), sim.slot_byte(t, slot)?, to]),
            Op::Write { slot, byte } => out.extend([kind(Kind::Write), sim.slot_byte(t, slot)?, byte]),
            Op::Check { slot } => out.extend([kind(Kind::Check), sim.slot_byte(t, slot)?]),
            Op::Flush => out.push(kind(Kind::Flush)),
            Op::EndThread => out.push(kind(Kind::EndThread)),
            Op::Fork => out.push(kind(Kind::Fork)),
            Op::Trim => out.push(kind(Kind::Trim)),
            Op::DoubleFree { slot, by } => out.extend([MISUSE_BASE, sim.slot_byte(t, slot)?, by]),
            Op::FreeWild { offset } => {
                out.push(MISUSE_BASE + 1);
                out.extend_from_slice(&(offset as u16).to_le_bytes());
            }
            Op::FreeInterior { slot, offset } => {
                out.extend([MISUSE_BASE + 2, sim.slot_byte(t, slot)?]);
                out.extend_from_slice(&(offset.saturating_sub(1) as u16).to_le_bytes());
            }
            Op::WriteAfterFree { slot, offset } => {
                out.extend([MISUSE_BASE + 3, sim.slot_byte(t, slot)?]);
                out.extend_from_slice(&(offset as u16).to_le_bytes());
            }
            Op::Overflow { slot, by } => out.extend([MISUSE_BASE + 4, sim.slot_byte(t, slot)?, by.wrapping_sub(1) as u8]),
            Op::Underflow { slot, by } => out.extend([MISUSE_BASE + 5, sim.slot_byte(t, slot)?, by.wrapping_sub(1) as u8]),
        }
        sim.apply(step, flavor)?;
    }
    Ok(out)
}

/// A plain program, as `arbitrary` decodes it (for `fuzz_target!(|p: Program| ...)` and tests).
impl<'a> Arbitrary<'a> for Program {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        decode_from(u, Flavor::Plain).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}

/// A program with exactly one misuse, as `arbitrary` decodes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MisuseProgram(pub Program);

impl<'a> Arbitrary<'a> for MisuseProgram {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        decode_from(u, Flavor::Misuse).map(MisuseProgram).map_err(|_| arbitrary::Error::IncorrectFormat)
    }
}
