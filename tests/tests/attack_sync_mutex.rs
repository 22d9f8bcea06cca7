//! Adversarial review of `reap::sync::Mutex` (thirteenth session): the snapshot reads the lock
//! instead of taking it. Attacks: a `gc` walk whose `Trace` waits for a lock (it deadlocked on
//! its own stop before `thread::blocking` learnt to keep a stopper attached), thread exit whose
//! deaths wait for a lock, two heaps collecting while threads of both lock, Local heaps
//! holding the lock, unsized values, a contended lock in a thread-local destructor. (Its other
//! finding, one lock reported by two traced values through a shared `Arc`, breaks the `Trace`
//! contract, which now says so: see `reap::Trace`.) Run natively, under Miri and TSAN.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use reap::sync::{Gc, Heap, Mutex};
use reap::{Trace, Tracer};

/// A tracked leaf (its lock may hold a handle) that counts its drops.
#[derive(Trace)]
struct Leaf {
    next: Mutex<Option<Gc<Leaf>>>,
    #[reap(skip)]
    dropped: Arc<AtomicUsize>,
}

impl Drop for Leaf {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, SeqCst);
    }
}

fn leaf(heap: &Heap, dropped: &Arc<AtomicUsize>) -> Gc<Leaf> {
    heap.alloc(Leaf {
        next: Mutex::new(None),
        dropped: dropped.clone(),
    })
}

/// A value whose hand-written `Trace` locks (with `lock`, not `try_lock`) a `sync::Mutex` of its
/// own. Outside a collection's snapshot the contract's "runs no user code" is all it breaks.
struct LocksInTrace {
    m: Arc<Mutex<Option<Gc<Leaf>>>>,
}

// SAFETY: (test) visits the one handle its lock holds, once per call.
unsafe impl Trace for LocksInTrace {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if let Some(l) = self.m.lock().as_ref() {
            tracer.visit_shared(l);
        }
    }
}

/// Found by the review: a `gc` walk (`get_referrers`: the world stopped by this thread, non-frozen tracer)
/// whose `Trace` waits for a `sync::Mutex` that a never-attached thread holds for a moment.
/// `lock` sleeps in `thread::blocking`, which detaches this thread from every heap, the one it
/// holds stopped included; on its way back `reenter_attached` finds that heap stopping and
/// parks, waiting for a restart only this thread can do: a deadlock, where a
/// `std::sync::Mutex` would just have waited for the holder. Now a thread that holds a world
/// stopped waits without detaching.
#[test]
fn gc_walk_whose_trace_waits_for_a_sync_lock_returns() {
    let heap = Heap::new();
    heap.disable();
    let dropped = Arc::new(AtomicUsize::new(0));
    let m = Arc::new(Mutex::new(None));
    let (held_tx, held_rx) = mpsc::channel();
    let holder = {
        let m = m.clone();
        thread::spawn(move || {
            // Never attached to the heap.
            let g = m.lock();
            held_tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(if cfg!(miri) { 20 } else { 100 }));
            drop(g);
        })
    };
    held_rx.recv().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let walker = {
        let (heap, m, dropped) = (heap.clone(), m.clone(), dropped.clone());
        thread::spawn(move || {
            let target = leaf(&heap, &dropped);
            let obj = heap.alloc(LocksInTrace { m });
            let _ = &obj;
            let found = heap.get_referrers(&target);
            done_tx.send(found.len()).unwrap();
        })
    };
    holder.join().unwrap();
    match done_rx.recv_timeout(Duration::from_secs(if cfg!(miri) { 60 } else { 3 })) {
        Ok(n) => {
            assert_eq!(n, 0);
            walker.join().unwrap();
        }
        Err(_) => panic!(
            "get_referrers never returned: its Trace's lock() detached the walker from the \
             heap it holds stopped, and re-attaching parked it on its own stop"
        ),
    }
}

/// Control for the walk above: the same `Trace` with a `std::sync::Mutex` waits for the holder
/// and the walk returns.
#[test]
fn gc_walk_whose_trace_waits_for_a_std_lock_returns() {
    struct StdLocksInTrace {
        m: Arc<std::sync::Mutex<Option<Gc<Leaf>>>>,
    }
    // SAFETY: (test) visits the one handle its lock holds, once per call.
    unsafe impl Trace for StdLocksInTrace {
        fn trace(&self, tracer: &mut Tracer<'_>) {
            if let Some(l) = self.m.lock().unwrap().as_ref() {
                tracer.visit_shared(l);
            }
        }
    }
    let heap = Heap::new();
    heap.disable();
    let dropped = Arc::new(AtomicUsize::new(0));
    let m = Arc::new(std::sync::Mutex::new(None));
    let (held_tx, held_rx) = mpsc::channel();
    let holder = {
        let m = m.clone();
        thread::spawn(move || {
            let g = m.lock().unwrap();
            held_tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(if cfg!(miri) { 20 } else { 100 }));
            drop(g);
        })
    };
    held_rx.recv().unwrap();
    let target = leaf(&heap, &dropped);
    let obj = heap.alloc(StdLocksInTrace { m });
    assert_eq!(heap.get_referrers(&target).len(), 0);
    drop(obj);
    holder.join().unwrap();
}

/// A thread exits with an object queued to it whose `Drop` waits for a `sync::Mutex` the main
/// thread holds: the death runs in the exit's gated section, and `thread::blocking` leaves that
/// gate (a `Heap::detached` there leaves nothing). Collections run meanwhile, then the lock is
/// released and the exit finishes. Nothing is lost or freed twice.
#[test]
fn exit_death_waiting_for_a_lock_while_collections_run() {
    struct Waits {
        m: Arc<Mutex<u32>>,
        told: mpsc::Sender<()>,
        cyc: Mutex<Option<Gc<Leaf>>>,
        dropped: Arc<AtomicUsize>,
    }
    // SAFETY: (test) its one handle, through its lock.
    unsafe impl Trace for Waits {
        fn trace(&self, tracer: &mut Tracer<'_>) {
            self.cyc.trace(tracer);
        }
    }
    impl Drop for Waits {
        fn drop(&mut self) {
            let _ = self.told.send(());
            *self.m.lock() += 1;
            self.dropped.fetch_add(1, SeqCst);
        }
    }
    for _ in 0..(if cfg!(miri) { 1 } else { 10 }) {
        let heap = Heap::new();
        heap.disable();
        let dropped = Arc::new(AtomicUsize::new(0));
        let m = Arc::new(Mutex::new(0));
        let g = m.lock();
        let (told_tx, told_rx) = mpsc::channel();
        let (h_tx, h_rx) = mpsc::channel::<Gc<Waits>>();
        let (back_tx, back_rx) = mpsc::channel::<()>();
        let t = {
            let (heap, m, dropped) = (heap.clone(), m.clone(), dropped.clone());
            thread::spawn(move || {
                // Owned by this thread; a cycle of leaves hangs off it.
                let l = leaf(&heap, &dropped);
                *l.next.lock() = Some(l.clone());
                let w = heap.alloc(Waits {
                    m,
                    told: told_tx,
                    cyc: Mutex::new(Some(l)),
                    dropped: dropped.clone(),
                });
                h_tx.send(w.clone()).unwrap();
                // The main thread drops its clone: a foreign decrement below zero, queued here.
                back_rx.recv().unwrap();
                drop(w);
                // Exit without a safe point: the exit merges the queue and runs the death.
            })
        };
        let w = h_rx.recv().unwrap();
        drop(w);
        back_tx.send(()).unwrap();
        told_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the death ran");
        thread::sleep(Duration::from_millis(if cfg!(miri) { 5 } else { 20 }));
        for _ in 0..3 {
            heap.try_collect(Duration::from_secs(2))
                .expect("the exiting thread waits outside the gate");
        }
        drop(g);
        t.join().unwrap();
        assert_eq!(*m.lock(), 1);
        heap.collect();
        assert_eq!(heap.live_objects(), 0);
        assert_eq!(dropped.load(SeqCst), 2, "the leaf and the waiter");
    }
}

/// Two heaps collect at once on two threads while threads attached to each (and one attached
/// to both) move handles through `sync::Mutex`es shared by both heaps' objects (an `Arc`), and
/// a never-attached thread locks them too: no deadlock (every stop succeeds in time), nothing
/// reachable freed, everything freed at the end.
#[test]
fn two_heaps_collecting_while_threads_of_both_lock() {
    #[derive(Trace)]
    struct N {
        next: Mutex<Option<Gc<N>>>,
        #[reap(skip)]
        shared: Arc<Mutex<u64>>,
        #[reap(skip)]
        dropped: Arc<AtomicUsize>,
    }
    impl Drop for N {
        fn drop(&mut self) {
            // A death that locks (contended: the workers hold it often).
            *self.shared.lock() += 1;
            self.dropped.fetch_add(1, SeqCst);
        }
    }
    let heaps = [Heap::new(), Heap::new()];
    for h in &heaps {
        h.disable();
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let shared = Arc::new(Mutex::new(0_u64));
    let stop = Arc::new(AtomicBool::new(false));
    let per = if cfg!(miri) { 3 } else { 20_000 };
    let mut ts = Vec::new();
    for w in 0..3 {
        let (heaps, shared, dropped) = (heaps.clone(), shared.clone(), dropped.clone());
        ts.push(thread::spawn(move || {
            for k in 0..per {
                // Worker 2 uses both heaps: attached to both.
                let h = &heaps[if w == 2 { k % 2 } else { w }];
                let a = h.alloc(N {
                    next: Mutex::new(None),
                    shared: shared.clone(),
                    dropped: dropped.clone(),
                });
                let b = h.alloc(N {
                    next: Mutex::new(Some(a.clone())),
                    shared: shared.clone(),
                    dropped: dropped.clone(),
                });
                {
                    let mut g = shared.lock();
                    *g += 1;
                    *a.next.lock() = Some(b.clone());
                    // A safe point with two locks held.
                    h.safepoint();
                }
                assert!(a.next.lock().is_some());
                drop((a, b));
            }
        }));
    }
    // A thread that never attaches: locks the shared counter in a loop.
    let never = {
        let (shared, stop) = (shared.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(SeqCst) {
                *shared.lock() += 1;
                thread::yield_now();
            }
        })
    };
    let collectors: Vec<_> = heaps
        .iter()
        .cloned()
        .map(|h| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut n = 0;
                while !stop.load(SeqCst) || n < 2 {
                    h.try_collect(Duration::from_secs(20))
                        .expect("the world stops in time");
                    n += 1;
                }
                n
            })
        })
        .collect();
    ts.into_iter().for_each(|t| t.join().unwrap());
    stop.store(true, SeqCst);
    never.join().unwrap();
    for c in collectors {
        assert!(c.join().unwrap() >= 2);
    }
    for h in &heaps {
        h.collect();
        assert_eq!(h.live_objects(), 0);
    }
}

/// A Local heap's objects holding `sync::Mutex`es: a cycle through the lock is collected, a
/// lock held across `collect` keeps its object (every pass of the Local collection sees it
/// held), while another thread runs Shared collections (raising the frozen count) and locks
/// the same kind of lock.
#[test]
fn local_heap_objects_with_sync_mutex_while_shared_collections_run() {
    struct LNode {
        next: Mutex<Option<reap::Gc<LNode>>>,
    }
    // SAFETY: (test) its one handle, through the lock. `Mutex<reap::Gc<_>>` is `!Sync`: only
    // this thread reaches it.
    unsafe impl Trace for LNode {
        fn trace(&self, tracer: &mut Tracer<'_>) {
            self.next.trace(tracer);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let bg = {
        let stop = stop.clone();
        thread::spawn(move || {
            let heap = Heap::new();
            heap.disable();
            let dropped = Arc::new(AtomicUsize::new(0));
            while !stop.load(SeqCst) {
                let a = leaf(&heap, &dropped);
                *a.next.lock() = Some(a.clone());
                drop(a);
                heap.collect();
            }
        })
    };
    let heap = reap::Heap::new();
    for _ in 0..(if cfg!(miri) { 2 } else { 50 }) {
        let a = heap.alloc(LNode {
            next: Mutex::new(None),
        });
        *a.next.lock() = Some(a.clone());
        let w = reap::Weak::new(&a);
        let raw: *const Mutex<Option<reap::Gc<LNode>>> = &a.next;
        drop(a);
        // SAFETY: (test) the node holds itself, and the held lock makes the collection keep it.
        let g = unsafe { &*raw }.lock();
        heap.collect(2);
        assert!(w.upgrade().is_some(), "held: kept");
        drop(g);
        heap.collect(2);
        assert!(w.upgrade().is_none(), "released: collected");
    }
    stop.store(true, SeqCst);
    bg.join().unwrap();
}

/// A `sync::Mutex<dyn Trait>` (unsized through `Box`) and a lock behind a `dyn Any` handle:
/// locking through the unsized type and collecting.
#[test]
fn unsized_values() {
    let b: Box<Mutex<dyn std::fmt::Debug + Send>> = Box::new(Mutex::new(5_u8));
    assert_eq!(format!("{:?}", b.lock()), "5");
    let heap = Heap::new();
    heap.disable();
    let dropped = Arc::new(AtomicUsize::new(0));
    let a = leaf(&heap, &dropped);
    *a.next.lock() = Some(a.clone());
    let any: reap::sync::AnyGc = reap::gc_coerce!(a => dyn std::any::Any + Send + Sync);
    drop(any);
    assert_eq!(heap.collect(), 1);
    assert_eq!(dropped.load(SeqCst), 1);
}

/// A thread that never used the runtime waits for a contended `sync::Mutex` in a thread-local's
/// destructor (its exit): `thread::blocking` reaches the runtime's thread-locals then (the
/// registry's first use may come during the thread's teardown).
#[test]
fn contended_lock_in_a_thread_local_destructor() {
    struct OnExit(Arc<Mutex<u32>>, Option<mpsc::Sender<()>>);
    impl Drop for OnExit {
        fn drop(&mut self) {
            if let Some(tx) = self.1.take() {
                let _ = tx.send(());
            }
            *self.0.lock() += 1;
        }
    }
    thread_local! {
        static ON_EXIT: std::cell::RefCell<Option<OnExit>> = const { std::cell::RefCell::new(None) };
    }
    let m = Arc::new(Mutex::new(0));
    let g = m.lock();
    let (tx, rx) = mpsc::channel();
    let t = {
        let m = m.clone();
        thread::spawn(move || {
            ON_EXIT.with(|c| *c.borrow_mut() = Some(OnExit(m, Some(tx))));
        })
    };
    rx.recv().unwrap();
    thread::sleep(Duration::from_millis(if cfg!(miri) { 5 } else { 30 }));
    drop(g);
    t.join().unwrap();
    assert_eq!(*m.lock(), 1);
}
