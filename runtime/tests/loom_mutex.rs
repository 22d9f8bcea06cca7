//! loom models of `reap::sync::Mutex` (models 21 and 22 of the loom table in
//! docs/ARCHITECTURE.md): the snapshot that reads a lock instead of taking it, against a
//! thread outside the stop that takes it; and two threads contending for it (sleeping and
//! waking).
//! `RUSTFLAGS="--cfg reap_loom" cargo test -p reap --release --test loom_mutex`
#![cfg(reap_loom)]

mod common;

use common::{model, model_bounded};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;
use reap::sync::{Gc, Heap, Mutex};
use reap::{Trace, Tracer};

/// A node whose mutable part sits behind a `sync::Mutex`.
#[derive(Trace)]
struct Node {
    inner: Mutex<Inner>,
    #[reap(skip)]
    dropped: Arc<AtomicUsize>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let before = self.dropped.fetch_add(1, SeqCst);
        assert_eq!(before, 0, "node dropped twice");
    }
}

/// What the lock guards: a handle, and plain memory that a thread holding the lock writes and
/// the snapshot's `trace` reads (loom's cell tracking fails the model on any access the
/// protocol leaves unordered).
struct Inner {
    next: Option<Gc<Node>>,
    probe: UnsafeCell<u32>,
}

// SAFETY: visits its one handle.
unsafe impl Trace for Inner {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        // SAFETY: a read; loom checks it against the writes of the lock's holders.
        let _ = self.probe.with(|p| unsafe { *p });
        self.next.trace(tracer);
    }
}

/// Model 21: a thread outside the stop (inside `Heap::detached`) takes a `sync::Mutex` of a
/// self-cycle, writes the memory it guards and moves the cycle's handle out of it, while the
/// main thread collects. The snapshot reads the lock's state instead of taking it.
///
/// Invariants: the snapshot's read of the guarded memory is ordered against every write of
/// the lock's holder (loom's cell tracking); the first collection frees the node only if the
/// other thread's handle is gone at the pause, and the second (after the join) frees it if the
/// first did not: exactly one frees it, and it is dropped once; no deadlock (a thread that
/// acquires while the snapshot runs waits for it). Two threads, at a preemption bound of 5
/// (77,845 executions; bound 6 gives 408,683 in 29 s, and an unbounded run went past 15
/// minutes). With the acquisition's check of the frozen count removed, or the release made
/// `Release` (see `Mutex::release`), it fails at a bound of 2.
#[test]
fn snapshot_reads_a_lock_a_detached_thread_takes() {
    model_bounded(
        "snapshot_reads_a_lock_a_detached_thread_takes",
        Some(5),
        || {
            let heap = Heap::new();
            heap.disable();
            // A panicking `Trace` (loom's report of a race in it) abandons the collection, which
            // reports it here: the model fails on any report.
            let reports = Arc::new(AtomicUsize::new(0));
            let r = reports.clone();
            heap.set_unraisable_hook(Some(std::sync::Arc::new(move |u: &reap::Unraisable| {
                r.fetch_add(1, SeqCst);
                panic!("unraisable: {}", u.message);
            })));
            let dropped = Arc::new(AtomicUsize::new(0));
            let a = heap.alloc(Node {
                inner: Mutex::new(Inner {
                    next: None,
                    probe: UnsafeCell::new(0),
                }),
                dropped: dropped.clone(),
            });
            a.inner.lock().next = Some(a.clone());
            let (h, a2) = (heap.clone(), a.clone());
            // A possible root: the snapshot traces it.
            drop(a);
            let t = thread::spawn(move || {
                h.detached(|| {
                    let mut g = a2.inner.lock();
                    // SAFETY: a write under the lock; loom checks it against the snapshot's read.
                    g.probe.with_mut(|p| unsafe { *p += 1 });
                    // The cycle's handle moved out and back under the lock.
                    let own = g.next.take();
                    g.next = own;
                    drop(g);
                    drop(a2);
                });
            });
            let first = heap.collect();
            t.join().unwrap();
            let second = heap.collect();
            assert_eq!(reports.load(SeqCst), 0, "a traversal panicked");
            assert_eq!(first + second, 1, "freed by exactly one of the collections");
            assert_eq!(dropped.load(SeqCst), 1, "the node dropped once");
        },
    );
}

/// Model 22: two threads contend for a `sync::Mutex` (no heap involved): each takes it twice
/// and increments plain memory under it; the loser sleeps and is woken.
///
/// Invariants: mutual exclusion (loom's cell tracking on the guarded counter, and the total);
/// no lost wake-up (loom fails a model whose threads all block). Two threads: exhaustive.
#[test]
fn two_threads_contend_for_a_lock() {
    model("two_threads_contend_for_a_lock", || {
        let m = Arc::new(Mutex::new(UnsafeCell::new(0_u32)));
        let m2 = m.clone();
        let bump = |m: &Mutex<UnsafeCell<u32>>| {
            for _ in 0..2 {
                let g = m.lock();
                // SAFETY: under the lock; loom checks the exclusion.
                g.with_mut(|p| unsafe { *p += 1 });
            }
        };
        let t = thread::spawn(move || bump(&m2));
        bump(&m);
        t.join().unwrap();
        // SAFETY: the other thread is joined.
        assert_eq!(m.lock().with(|p| unsafe { *p }), 4);
    });
}
