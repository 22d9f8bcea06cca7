//! `reap::sync::Mutex`: the lock a collection's snapshot reads instead of taking. Its API, the
//! collections it takes part in (a cycle through it is collected; a lock held by this thread
//! or another keeps its object), contention (threads sleeping on it while its holder is parked
//! for a collection), and the attacks: a hand-written `Trace` that locks during the snapshot,
//! a panic while the lock is held, threads outside the stop moving handles through it while
//! collections run. Run natively, under Miri and under ThreadSanitizer (`.ci/run`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use reap::sync::{Finalize, Gc, Heap, Mutex};
use reap::{Trace, Tracer};

#[derive(Trace)]
#[reap(sync_finalize)]
struct Node {
    next: Mutex<Option<Gc<Node>>>,
    #[reap(skip)]
    dropped: Arc<AtomicUsize>,
}

impl Finalize for Node {
    fn finalize(_: &Gc<Self>) {}
}

impl Drop for Node {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, SeqCst);
    }
}

fn node(heap: &Heap, dropped: &Arc<AtomicUsize>) -> Gc<Node> {
    heap.alloc(Node {
        next: Mutex::new(None),
        dropped: dropped.clone(),
    })
}

#[test]
fn lock_try_lock_get_mut_into_inner() {
    let mut m = Mutex::new(5_u32);
    {
        let mut g = m.lock();
        *g += 1;
        assert!(m.is_locked());
        assert!(m.try_lock().is_none(), "held: try_lock fails");
        assert_eq!(format!("{m:?}"), "Mutex { data: <locked>, .. }");
    }
    assert!(!m.is_locked());
    assert_eq!(*m.try_lock().expect("free"), 6);
    *m.get_mut() += 1;
    assert_eq!(format!("{m:?}"), "Mutex { data: 7, .. }");
    assert_eq!(m.into_inner(), 7);
    let d: Mutex<Vec<u8>> = Mutex::default();
    assert!(d.lock().is_empty());
    let f = Mutex::from(String::from("x"));
    assert_eq!(&*f.lock(), "x");
    // Unsized values, as std's.
    let b: Box<Mutex<[u8]>> = Box::new(Mutex::new([1, 2, 3]));
    assert_eq!(b.lock().len(), 3);
}

#[test]
fn a_cycle_through_the_lock_is_collected() {
    let heap = Heap::new();
    heap.disable();
    let dropped = Arc::new(AtomicUsize::new(0));
    let a = node(&heap, &dropped);
    let b = node(&heap, &dropped);
    *a.next.lock() = Some(b.clone());
    *b.next.lock() = Some(a.clone());
    drop((a, b));
    assert_eq!(heap.collect(), 2);
    assert_eq!(dropped.load(SeqCst), 2);
}

#[test]
fn a_lock_this_thread_holds_keeps_its_object_until_released() {
    let heap = Heap::new();
    heap.disable();
    let dropped = Arc::new(AtomicUsize::new(0));
    let a = node(&heap, &dropped);
    *a.next.lock() = Some(a.clone());
    let w = reap::sync::Weak::new(&a);
    let raw: *const Mutex<Option<Gc<Node>>> = &a.next;
    drop(a);
    // SAFETY: (test) the node holds itself (the handle in its lock), so it stays allocated
    // for as long as no collection frees it, and the held lock makes every collection keep it
    // (asserted below); the guard is dropped before the collection that frees it.
    let g = unsafe { &*raw }.lock();
    // Held while the collection reads it: not traversed, so kept.
    assert_eq!(heap.collect(), 0);
    assert!(w.upgrade().is_some());
    assert_eq!(dropped.load(SeqCst), 0);
    drop(g);
    assert_eq!(heap.collect(), 1);
    assert_eq!(dropped.load(SeqCst), 1);
    assert!(w.upgrade().is_none());
}

#[test]
fn a_lock_another_thread_holds_keeps_its_object() {
    let heap = Heap::new();
    heap.disable();
    let dropped = Arc::new(AtomicUsize::new(0));
    let a = node(&heap, &dropped);
    *a.next.lock() = Some(a.clone());
    let held = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let t = {
        let (a, held, release) = (a.clone(), held.clone(), release.clone());
        let heap = heap.clone();
        thread::spawn(move || {
            // Held inside a detached section (a blocking call): the collection runs meanwhile.
            heap.detached(|| {
                let g = a.next.lock();
                held.wait();
                release.wait();
                drop(g);
            });
            drop(a);
        })
    };
    held.wait();
    drop(a);
    assert_eq!(heap.collect(), 0, "held by the other thread: kept");
    release.wait();
    t.join().unwrap();
    assert_eq!(heap.collect(), 1);
    assert_eq!(dropped.load(SeqCst), 1);
}

#[test]
fn contended_lock_counts_exactly() {
    let m = Arc::new(Mutex::new(0_usize));
    let threads = 4;
    let per = if cfg!(miri) { 30 } else { 20_000 };
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let m = m.clone();
            thread::spawn(move || {
                for _ in 0..per {
                    let mut g = m.lock();
                    // A read and a write apart: a lost exclusion loses increments.
                    let v = *g;
                    std::hint::black_box(&v);
                    *g = v + 1;
                }
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(*m.lock(), threads * per);
}

/// A thread holds the lock across safe points (it allocates, so it parks for collections)
/// while another sleeps waiting for it, attached: the sleeper is detached while it waits, so
/// every collection stops the world in time.
#[test]
fn a_thread_waiting_for_the_lock_does_not_hold_up_collections() {
    let heap = Heap::new();
    heap.disable();
    let dropped = Arc::new(AtomicUsize::new(0));
    let shared = node(&heap, &dropped);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let (heap, shared, stop, dropped) =
                (heap.clone(), shared.clone(), stop.clone(), dropped.clone());
            thread::spawn(move || {
                let mut rounds = 0;
                while !stop.load(SeqCst) || rounds < 3 {
                    let mut g = shared.next.lock();
                    // Allocations with the lock held: safe points where the thread parks.
                    for _ in 0..(if cfg!(miri) { 2 } else { 50 }) {
                        let n = node(&heap, &dropped);
                        *n.next.lock() = Some(n.clone());
                        *g = Some(n);
                    }
                    drop(g);
                    rounds += 1;
                    if i == 1 {
                        thread::yield_now();
                    }
                }
            })
        })
        .collect();
    for _ in 0..(if cfg!(miri) { 3 } else { 50 }) {
        heap.try_collect(Duration::from_secs(20))
            .expect("every attached thread parks or is detached while it waits");
    }
    stop.store(true, SeqCst);
    workers.into_iter().for_each(|h| h.join().unwrap());
    *shared.next.lock() = None;
    drop(shared);
    heap.collect();
    assert_eq!(heap.live_objects(), 0);
}

/// A hand-written `Trace` that locks a `sync::Mutex` while the snapshot reads them: `lock`
/// panics (it would wait for its own snapshot), the collection is abandoned and reported, the
/// heap stays as it was; `try_lock` there returns `None`, which keeps the object.
#[test]
fn trace_that_locks_during_the_snapshot() {
    struct Bad {
        inner: Mutex<Option<Gc<Bad>>>,
        try_only: bool,
        tried: Arc<AtomicUsize>,
    }
    // SAFETY: (test) it reports exactly the handle it holds, when it can.
    unsafe impl Trace for Bad {
        fn trace(&self, tracer: &mut Tracer<'_>) {
            if self.try_only {
                self.tried.fetch_add(1, SeqCst);
                match self.inner.try_lock() {
                    Some(g) => g.trace(tracer),
                    None => tracer.mark_incomplete(),
                }
            } else {
                self.inner.lock().trace(tracer);
            }
        }
    }
    for try_only in [false, true] {
        let heap = Heap::new();
        heap.disable();
        let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
        let r = reports.clone();
        heap.set_unraisable_hook(Some(Arc::new(move |u: &reap::Unraisable| {
            r.lock().unwrap().push(u.message.clone());
        })));
        let tried = Arc::new(AtomicUsize::new(0));
        let a = heap.alloc(Bad {
            inner: Mutex::new(None),
            try_only,
            tried: tried.clone(),
        });
        *a.inner.lock() = Some(a.clone());
        let w = reap::sync::Weak::new(&a);
        drop(a);
        assert_eq!(heap.collect(), 0, "abandoned, or kept as incomplete");
        assert!(w.upgrade().is_some());
        let reports = reports.lock().unwrap().clone();
        if try_only {
            assert!(tried.load(SeqCst) >= 1);
            assert!(reports.is_empty(), "{reports:?}");
        } else {
            assert_eq!(reports.len(), 1, "{reports:?}");
            assert!(
                reports[0].contains("inside a collection's snapshot"),
                "{reports:?}"
            );
        }
        // The lock is free afterwards: the cycle is broken by hand and dies.
        let a = w.upgrade().unwrap();
        assert!(!a.inner.is_locked());
        *a.inner.lock() = None;
        drop(a);
        assert!(w.upgrade().is_none());
        heap.set_unraisable_hook(None);
    }
}

/// A `Drop` that panics while holding a lock: the guard releases it (no poisoning).
#[test]
fn a_panic_while_holding_releases_the_lock() {
    let m = Arc::new(Mutex::new(1));
    let m2 = m.clone();
    let r = thread::spawn(move || {
        let _g = m2.lock();
        panic!("while holding");
    })
    .join();
    assert!(r.is_err());
    assert!(!m.is_locked());
    *m.lock() += 1;
    assert_eq!(*m.lock(), 2);
}

/// Threads outside the stop (never attached to the heap, and detached ones) move handles in
/// and out of locks while collections run on another thread: nothing reachable is freed (each
/// thread checks its object after every move), everything is freed at the end.
#[test]
fn threads_outside_the_stop_move_handles_through_locks_during_collections() {
    let heap = Heap::new();
    heap.disable();
    let dropped = Arc::new(AtomicUsize::new(0));
    let slots: Arc<Vec<Gc<Node>>> = Arc::new((0..4).map(|_| node(&heap, &dropped)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let movers: Vec<_> = (0..2)
        .map(|i| {
            let (slots, stop, heap) = (slots.clone(), stop.clone(), heap.clone());
            // Nodes made by the main thread, handed over: this thread never allocates.
            let mine: Vec<Gc<Node>> = (0..2).map(|_| node(&heap, &dropped)).collect();
            thread::spawn(move || {
                let run = |mut mine: Vec<Gc<Node>>| {
                    let mut k = 0;
                    while !stop.load(SeqCst) || k < 4 {
                        let s = &slots[(k + i) % slots.len()];
                        // Swap a handle into the slot's lock and take out what it held.
                        let out = s.next.lock().replace(mine.pop().expect("two in hand"));
                        mine.push(out.unwrap_or_else(|| slots[(k + 1) % slots.len()].clone()));
                        // Each handle held is to a live node (Miri and TSAN check the reads).
                        for m in &mine {
                            assert!(m.dropped.load(SeqCst) <= 8);
                        }
                        k += 1;
                    }
                    mine
                };
                if i == 0 {
                    // Never attached: every handle operation takes the heap's gate.
                    drop(run(mine));
                } else {
                    let heap2 = heap.clone();
                    heap2.detached(|| drop(run(mine)));
                }
            })
        })
        .collect();
    for _ in 0..(if cfg!(miri) { 3 } else { 200 }) {
        heap.collect();
    }
    stop.store(true, SeqCst);
    movers.into_iter().for_each(|h| h.join().unwrap());
    for s in slots.iter() {
        *s.next.lock() = None;
    }
    drop(slots);
    heap.collect();
    assert_eq!(heap.live_objects(), 0);
    assert_eq!(dropped.load(SeqCst), 8);
}
