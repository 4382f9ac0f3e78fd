//! The process-wide allocator under sanitizers: std (instrumented, with `-Zbuild-std`) allocating
//! through hakmem on many threads, blocks crossing threads, threads exiting with live blocks, and
//! allocation after a thread's cache is gone (the locked fallback cache and unowned frees).

use hakmem_sanitizers::xorshift;
use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc, Arc, Mutex};

#[global_allocator]
static A: hakmem::HakMem = hakmem::HakMem;

#[test]
fn std_collections_cross_threads() {
    let shared: Arc<Mutex<Vec<Box<[u8]>>>> = Arc::new(Mutex::new(Vec::new()));
    let hs: Vec<_> = (0..4u64)
        .map(|t| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut rng = t + 11;
                let mut m: HashMap<u64, String> = HashMap::new();
                let mut b: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
                for i in 0..20_000 as u64 {
                    let r = xorshift(&mut rng);
                    m.insert(r % 512, format!("{t}-{i}-{r}"));
                    b.insert(r % 300, (0..(r % 40) as u32).collect());
                    if r % 7 == 0 {
                        // Blocks made here are freed by whichever thread takes them next.
                        let mut v = shared.lock().unwrap();
                        v.push(vec![t as u8; 1 + (r % 3000) as usize].into_boxed_slice());
                        if v.len() > 64 {
                            let old = v.swap_remove((r % 64) as usize);
                            assert!(old.iter().all(|&x| x == old[0]));
                        }
                    }
                }
                m.len() + b.len()
            })
        })
        .collect();
    for h in hs {
        assert!(h.join().unwrap() > 0);
    }
}

#[test]
fn short_lived_threads_leave_blocks_to_others() {
    let (tx, rx) = mpsc::channel::<Vec<String>>();
    let mut kept = Vec::new();
    for round in 0..40 {
        let hs: Vec<_> = (0..3)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let v: Vec<String> = (0..200).map(|i| format!("{round}:{t}:{i}:{}", "x".repeat(i % 90))).collect();
                    tx.send(v).unwrap();
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        while let Ok(v) = rx.try_recv() {
            kept.push(v);
        }
        if kept.len() > 12 {
            kept.drain(..6);
        }
    }
    assert!(kept.iter().all(|v| v.len() == 200));
}

/// A pthread key destructor registered after hakmem's runs after the thread's cache is gone:
/// it frees a block the thread made (an unowned free) and allocates more (the fallback cache).
#[test]
fn allocation_after_the_thread_cache_is_gone() {
    static mut KEY: libc::pthread_key_t = 0;
    unsafe extern "C" fn late(p: *mut libc::c_void) {
        // SAFETY: `p` is the Box<Vec<u8>> leaked into the key below.
        let v = unsafe { Box::from_raw(p.cast::<Vec<u8>>()) };
        assert!(v.iter().all(|&x| x == 7));
        let again: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        assert_eq!(again.len(), 50);
    }
    // Make sure hakmem's own key exists first, so ours runs after it.
    drop(vec![0u8; 10]);
    // SAFETY: KEY is written once here, before any thread reads it.
    assert_eq!(unsafe { libc::pthread_key_create(&raw mut KEY, Some(late)) }, 0);
    let hs: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                let v = Box::new(vec![7u8; 3000]);
                // SAFETY: KEY was created before this thread started.
                unsafe { libc::pthread_setspecific(KEY, Box::into_raw(v).cast()) };
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}
