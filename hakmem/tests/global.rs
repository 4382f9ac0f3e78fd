//! The process-wide allocator under real Rust code: std collections on many threads, thread exit
//! with live blocks, frees on other threads, and fork while other threads allocate.

use std::collections::HashMap;
use std::sync::mpsc;

#[global_allocator]
static A: hakmem::HakMem = hakmem::HakMem;

#[test]
fn std_collections_on_many_threads() {
    let hs: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut m: HashMap<String, Vec<u64>> = HashMap::new();
                for i in 0..20_000u64 {
                    m.insert(format!("key-{t}-{i}"), (0..(i % 50)).collect());
                    if i % 3 == 0 {
                        m.remove(&format!("key-{t}-{}", i / 2));
                    }
                }
                m.values().map(|v| v.iter().sum::<u64>()).sum::<u64>()
            })
        })
        .collect();
    let sums: Vec<u64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(sums.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn blocks_outlive_their_threads_and_free_elsewhere() {
    let (tx, rx) = mpsc::channel::<Vec<Box<[u8]>>>();
    let hs: Vec<_> = (0..8u8)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let v: Vec<Box<[u8]>> = (0..2000).map(|i| vec![t; 1 + (i * 37) % 5000].into_boxed_slice()).collect();
                tx.send(v).unwrap();
            })
        })
        .collect();
    drop(tx);
    for h in hs {
        h.join().unwrap();
    }
    let mut n = 0;
    for v in rx {
        let t = v[0][0];
        assert!(v.iter().all(|b| b.iter().all(|&x| x == t)));
        n += v.len();
    }
    assert_eq!(n, 16_000);
}

#[test]
fn zeroed_and_aligned_layouts() {
    use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
    for align in [1, 8, 16, 64, 4096, 1 << 16, 1 << 22] {
        for size in [1, 24, 1000, 40_000, 1 << 20] {
            let l = Layout::from_size_align(size, align).unwrap();
            unsafe {
                let p = alloc_zeroed(l);
                assert_eq!(p.addr() % align, 0);
                assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                p.write_bytes(0x5a, size);
                let q = realloc(p, l, size * 3);
                assert_eq!(q.addr() % align, 0);
                assert!(std::slice::from_raw_parts(q, size).iter().all(|&b| b == 0x5a));
                dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
                let r = alloc(l);
                assert_eq!(r.addr() % align, 0);
                dealloc(r, l);
            }
        }
    }
}

#[test]
fn fork_while_other_threads_allocate() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let v: Vec<Vec<u8>> = (0..200).map(|i| vec![0u8; 1 + i * 300]).collect();
                    std::hint::black_box(v);
                }
            })
        })
        .collect();
    for _ in 0..20 {
        // SAFETY: the child only allocates, frees and exits with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let v: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
            let code = if v.len() == 1000 { 0 } else { 1 };
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // A child that deadlocked on an allocator lock would hang here; the test harness's
        // timeout would then report it.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
}
