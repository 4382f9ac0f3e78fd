//! OS threads kept from one free-running program to the next. Starting and ending up to eight
//! threads per input was most of free-running mode's time (under ASan, each new thread also
//! builds and tears down an allocator cache of its own); the programs themselves were a sixth.
//!
//! The pool runs a batch of jobs at once, each on its own thread (the jobs of a program wait for
//! each other: a block sent by one is received by another), and returns when all have ended, so
//! that, like `std::thread::scope`, they may borrow from the caller.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;

/// A job as a pool thread holds it.
type Task = Box<dyn FnOnce() + Send + 'static>;

/// The pool threads, one sender each, and the process they belong to; the lock also makes
/// batches take turns.
static THREADS: Mutex<(u32, Vec<Sender<Task>>)> = Mutex::new((0, Vec::new()));

/// Runs every job on a thread of its own, all at once, and returns their results in order (a
/// job that panicked gives its panic), once every one of them has ended.
pub fn run_all<'a, R: Send + 'a>(jobs: Vec<Box<dyn FnOnce() -> R + Send + 'a>>) -> Vec<thread::Result<R>> {
    let mut pool = THREADS.lock().unwrap_or_else(PoisonError::into_inner);
    let (pid, threads) = &mut *pool;
    if *pid != std::process::id() {
        // A forked child (AFL++'s fork server forks the process it fuzzes) has none of its
        // parent's threads: a job sent to one would never run. (Forgotten, not dropped: the
        // channels' state is whatever the parent's threads left.)
        std::mem::forget(std::mem::take(threads));
        *pid = std::process::id();
    }
    while threads.len() < jobs.len() {
        let (tx, rx) = channel::<Task>();
        thread::Builder::new()
            .name(format!("hakmem-fuzz pool {}", threads.len()))
            .spawn(move || rx.into_iter().for_each(|task| task()))
            .expect("a pool thread");
        threads.push(tx);
    }
    let results: Mutex<Vec<Option<thread::Result<R>>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    // Jobs not yet ended; 'static, so that a task's last act touches nothing of the caller's.
    let pending = Arc::new((Mutex::new(jobs.len()), Condvar::new()));
    for (i, (job, tx)) in jobs.into_iter().zip(threads.iter()).enumerate() {
        let (results, pending) = (&results, Arc::clone(&pending));
        let task: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(job));
            results.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(r);
            let (left, ended) = &*pending;
            *left.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
            ended.notify_one();
        });
        // SAFETY: only the lifetime changes. The task borrows `results` (local to this call)
        // and what the job borrows (for 'a, longer than this call), and this call does not
        // return before every task has decremented `pending`, after which a task touches only
        // its own `Arc` of it. Nor does it unwind once a task is out: a failed send aborts, and
        // nothing else below can panic (poisoned locks are taken as they are).
        let task: Task = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Task>(task) };
        if tx.send(task).is_err() {
            // A pool thread ended, which only a panic outside `catch_unwind` could do.
            eprintln!("hakmem-fuzz: a pool thread is gone");
            std::process::abort();
        }
    }
    let (left, ended) = &*pending;
    let mut n = left.lock().unwrap_or_else(PoisonError::into_inner);
    while *n > 0 {
        n = ended.wait(n).unwrap_or_else(PoisonError::into_inner);
    }
    drop(n);
    results.into_inner().unwrap_or_else(PoisonError::into_inner).into_iter().map(|r| r.expect("every job ended")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn jobs_run_at_once_borrow_from_the_caller_and_return_in_order() {
        let base = vec![10, 20, 30];
        for _ in 0..3 {
            // Job 0 waits for a message from job 2: they must run on threads of their own.
            let (tx, rx) = channel();
            let rx = Mutex::new(rx);
            let (base, rx) = (&base, &rx);
            let jobs: Vec<Box<dyn FnOnce() -> i32 + Send + '_>> = vec![
                Box::new(move || base[0] + rx.lock().unwrap().recv().unwrap()),
                Box::new(move || base[1]),
                Box::new(move || {
                    tx.send(5).unwrap();
                    base[2]
                }),
            ];
            let r: Vec<i32> = run_all(jobs).into_iter().map(|r| r.unwrap()).collect();
            assert_eq!(r, vec![15, 20, 30]);
        }
    }

    #[test]
    fn a_panicking_job_gives_its_panic_and_the_pool_goes_on() {
        let jobs: Vec<Box<dyn FnOnce() -> u8 + Send>> = vec![Box::new(|| panic!("planted")), Box::new(|| 7)];
        let r = run_all(jobs);
        assert!(r[0].is_err());
        assert_eq!(*r[1].as_ref().unwrap(), 7);
        let again: Vec<Box<dyn FnOnce() -> u8 + Send>> = vec![Box::new(|| 8)];
        assert_eq!(run_all(again).pop().unwrap().unwrap(), 8);
    }
}
