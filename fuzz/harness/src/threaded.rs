//! Free-running mode: the same program split over real OS threads, one per logical thread, for
//! ThreadSanitizer and real races (threads of a pool kept across programs: see [`crate::pool`]).
//! Each thread runs its own steps in program order. A remote free sends the block to the freeing
//! thread over a channel, and that thread frees it at its next step (or once its own steps are
//! done); a `Give` sends it the same way, and the receiving thread waits for it when a step of
//! its own needs it. The program order is a schedule in which every block is sent before it is
//! needed, so the waits always end. The interleaving is up to the OS, so a failure here may not
//! replay; its program still runs in deterministic mode.
//!
//! The model is split: each thread checks the contents of the blocks it holds, and one address map
//! behind a mutex catches overlapping blocks. A block leaves the map just before it is freed and
//! enters it just after it is handed out, so the map never holds a block the allocator could
//! legitimately hand out again.

use crate::interp::{alloc_block, calloc_block, check_block, final_sweep, fork, realloc_block, with_heap, write_block, Failure, HeapUse, Observed};
use crate::model::{AddrMap, Block, Violation};
use crate::pool;
use crate::program::{BlockId, Op, Program, Step};
use crate::client::Client;
use hakmem::Heap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

/// A block on its way to another thread.
struct Parcel {
    id: BlockId,
    block: Block,
    /// The step that sent it, for failure messages.
    step: usize,
    /// Whether the receiver frees it (a remote free) or keeps it (a `Give`).
    free: bool,
}

// SAFETY: the sender gives the block up when it sends it; only the receiver touches it after.
unsafe impl Send for Parcel {}

/// What one OS thread needs: its steps (with their index and the id an allocating step creates),
/// how many blocks other threads will send it, and where to send blocks.
struct Plan {
    steps: Vec<(usize, Step, BlockId)>,
    inbound: usize,
}

/// Runs a plain program on real threads; any model violation or report is a failure.
pub fn run_free<P: Observed>(prog: &Program, heap: HeapUse) -> Result<(), Failure> {
    let n = prog.threads as usize;
    let mut plans: Vec<Plan> = (0..n).map(|_| Plan { steps: Vec::new(), inbound: 0 }).collect();
    let mut next_id = 0;
    for (i, s) in prog.steps.iter().enumerate() {
        plans[s.thread as usize].steps.push((i, *s, next_id));
        next_id += s.op.creates_block() as BlockId;
        if let Op::RemoteFree { by: to, .. } | Op::Give { to, .. } = s.op {
            if to != s.thread {
                plans[to as usize].inbound += 1;
            }
        }
        if s.op.is_misuse() {
            return Err(Failure::at(Some(i), "misuse ops cannot run in free-running mode"));
        }
    }
    let blocks = next_id as usize;
    // Allocations on real threads have no budget to fail against: the order in which threads
    // map regions is up to the OS.
    let knobs = crate::program::Knobs { max_regions: 0, ..prog.knobs };
    with_heap::<P, ()>(heap, knobs, |heap_mut| {
        let heap = &*heap_mut;
        let addrs = Mutex::new(AddrMap::default());
        let (txs, rxs): (Vec<Sender<Parcel>>, Vec<Receiver<Parcel>>) = (0..n).map(|_| channel()).unzip();
        let jobs: Vec<Box<dyn FnOnce() -> Result<(), Failure> + Send + '_>> = plans
            .into_iter()
            .zip(rxs)
            .enumerate()
            .filter(|(_, (plan, _))| !plan.steps.is_empty() || plan.inbound > 0)
            .map(|(t, (plan, rx))| {
                // A thread holds no sender to itself, so its inbox closes once every other
                // thread is done, even one that failed before sending all it should have.
                let txs: Vec<Option<Sender<Parcel>>> = txs.iter().enumerate().map(|(u, tx)| (u != t).then(|| tx.clone())).collect();
                let addrs = &addrs;
                let c_api = knobs.api == 1;
                Box::new(move || Worker { heap, cache: Some(Client::new(heap.cache(), c_api)), c_api, held: vec![None; blocks], addrs, txs }.run(plan, rx))
                    as Box<_>
            })
            .collect();
        drop(txs);
        // All have ended; report the failure of the earliest step.
        let mut failures: Vec<Failure> =
            pool::run_all(jobs).into_iter().filter_map(|r| r.unwrap_or_else(|p| std::panic::resume_unwind(p)).err()).collect();
        failures.sort_by_key(|f| f.step.unwrap_or(usize::MAX));
        failures.into_iter().next().map_or(Ok(()), Err)?;
        // Every worker dropped its cache on the way out.
        let (reports, verify) = final_sweep(heap_mut);
        if let Some(r) = reports.first() {
            return Err(Failure::at(None, format!("checked mode reported: {r}")));
        }
        if let Some(v) = verify {
            return Err(Failure::at(None, v));
        }
        let large = heap_mut.stats().large_blocks;
        if large != 0 {
            return Err(Failure::at(None, format!("{large} large block(s) still mapped after every block was freed")));
        }
        Ok(())
    })
}

/// One OS thread's state.
struct Worker<'h, 'a, P: Observed> {
    heap: &'h Heap<P>,
    /// `None` only in the middle of `EndThread`.
    cache: Option<Client<'h, P>>,
    c_api: bool,
    /// Blocks this thread holds, by id.
    held: Vec<Option<Block>>,
    addrs: &'a Mutex<AddrMap>,
    txs: Vec<Option<Sender<Parcel>>>,
}

impl<'h, P: Observed> Worker<'h, '_, P> {
    fn cache(&mut self) -> &mut Client<'h, P> {
        self.cache.as_mut().expect("a cache exists between steps")
    }

    fn run(mut self, plan: Plan, rx: Receiver<Parcel>) -> Result<(), Failure> {
        let mut received = 0;
        for (i, step, id) in plan.steps {
            while let Ok(p) = rx.try_recv() {
                self.receive(p)?;
                received += 1;
            }
            // A block given by another thread may still be on its way.
            while let Some(slot) = step.op.slot().filter(|&s| self.held[s as usize].is_none()) {
                let p = rx.recv().map_err(|_| Failure::at(Some(i), format!("b{slot} never arrived (its sender failed)")))?;
                self.receive(p)?;
                received += 1;
            }
            self.exec(i, step, id).map_err(|v| Failure::at(Some(i), v))?;
        }
        while received < plan.inbound {
            match rx.recv() {
                Ok(p) => self.receive(p)?,
                // Every sender is gone: one failed before sending; its failure is reported.
                Err(_) => break,
            }
            received += 1;
        }
        for id in 0..self.held.len() as BlockId {
            if let Some(b) = self.held[id as usize] {
                b.check(id).map_err(|v| Failure::at(None, v))?;
                self.free(id);
            }
        }
        Ok(())
    }

    fn admit(&mut self, id: BlockId, b: Block) -> Result<(), Violation> {
        self.addrs.lock().unwrap().insert(id, &b)?;
        self.held[id as usize] = Some(b);
        Ok(())
    }

    fn retire(&mut self, id: BlockId) -> Block {
        let b = self.held[id as usize].take().expect("the decoder only names blocks the thread holds");
        self.addrs.lock().unwrap().remove(&b);
        b
    }

    fn free(&mut self, id: BlockId) {
        let b = self.retire(id);
        // SAFETY: the block was live and is forgotten by the model.
        unsafe { self.cache().free(b.ptr) };
    }

    /// Takes a block another thread sent: frees it, or keeps it for the steps that need it.
    fn receive(&mut self, p: Parcel) -> Result<(), Failure> {
        // The contents must have crossed threads intact (the channel orders the writes).
        p.block.check(p.id).map_err(|v| Failure::at(Some(p.step), format!("after the hand-off: {v}")))?;
        self.held[p.id as usize] = Some(p.block);
        if p.free {
            self.free(p.id);
        }
        Ok(())
    }

    /// Sends block `slot` to thread `to`, to free or to keep; a thread sends nothing to itself.
    fn send(&mut self, i: usize, slot: BlockId, to: u8, free: bool) -> Result<(), Violation> {
        let block = self.held[slot as usize].expect("held");
        block.check(slot)?;
        match &self.txs[to as usize] {
            None if free => self.free(slot),
            None => {}
            Some(tx) => {
                self.held[slot as usize] = None;
                // A block stays in the address map while it travels: it is live. (A freed one
                // leaves it just before the receiver frees it.) A send fails only when the
                // receiver has failed already; its failure is the one reported, and the block
                // stays mapped until the heap goes.
                let _ = tx.send(Parcel { id: slot, block, step: i, free });
            }
        }
        Ok(())
    }

    fn exec(&mut self, i: usize, s: Step, next_id: BlockId) -> Result<(), Violation> {
        match s.op {
            Op::Alloc { size, align_log2 } => {
                let b = alloc_block(self.cache(), next_id, size, 1 << align_log2)?;
                self.admit(next_id, b)?;
            }
            Op::Calloc { n, size } => {
                let b = calloc_block(self.cache(), next_id, n * size)?;
                self.admit(next_id, b)?;
            }
            Op::Realloc { slot, size } => {
                let old = self.retire(slot);
                let b = realloc_block(self.cache(), slot, old, size)?;
                self.admit(slot, b)?;
            }
            Op::Free { slot } => {
                let b = self.held[slot as usize].expect("held");
                b.check(slot)?;
                self.free(slot);
            }
            Op::FreeUncached { slot } => {
                let b = self.held[slot as usize].expect("held");
                b.check(slot)?;
                let b = self.retire(slot);
                let heap = self.heap;
                // SAFETY: the block was live and is forgotten by the model.
                unsafe { self.cache().free_uncached(heap, b.ptr) };
            }
            Op::RemoteFree { slot, by } => self.send(i, slot, by, true)?,
            Op::Give { slot, to } => self.send(i, slot, to, false)?,
            Op::Write { slot, byte } => write_block(self.held[slot as usize].as_mut().expect("held"), byte),
            Op::Check { slot } => {
                let b = self.held[slot as usize].expect("held");
                check_block(self.cache(), slot, &b)?;
            }
            Op::Flush => self.cache().flush(),
            Op::EndThread => {
                // Drop first, as a thread exits before the next one starts.
                self.cache = None;
                self.cache = Some(Client::new(self.heap.cache(), self.c_api));
            }
            Op::Fork => fork(self.heap)?,
            Op::Trim => self.heap.trim(),
            _ => unreachable!("misuse ops are refused before the threads start"),
        }
        Ok(())
    }
}
