//! Adversarial tests of Shared-mode cycle collection (`reap::sync::Heap::collect` /
//! `try_collect`): the stop-the-world handshake, the gate for threads not attached, the
//! snapshot that keeps lock guards, resurrection, zombies, weak references.
//!
//! Every scenario that could hang runs under a watchdog ([`within`]): a deadlock fails the
//! test after `WATCHDOG` instead of hanging the run. The tests marked "found" below failed
//! against the first version of the collection (commit 4e67368); their doc comments say what
//! was wrong.
//!
//! Natively: `cargo test -p reap-tests --test adversarial_sync_collect`.
//! Miri: `MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p reap-tests --test adversarial_sync_collect`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use reap::sync::{Gc, Heap, Weak};
use reap::{Trace, Tracer, UnraisableKind};
use reap_tests::shared::{fin, fin_with, hooked, reps, set_fin, within, Fin, Log, WATCHDOG};

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A plain node: a traced slot, a traced list, a drop counter.
#[derive(Trace)]
struct Node {
    #[reap(skip)]
    id: u32,
    #[reap(skip)]
    log: Arc<Log>,
    next: Mutex<Option<Gc<Node>>>,
    more: Mutex<Vec<Gc<Node>>>,
    /// Weak references the node holds (traced: each holds its weak-reference object).
    weak: Mutex<Vec<Weak<Node>>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.log.drops.fetch_add(1, SeqCst);
    }
}

fn node(heap: &Heap, id: u32, log: &Arc<Log>) -> Gc<Node> {
    heap.alloc(Node {
        id,
        log: log.clone(),
        next: Mutex::new(None),
        more: Mutex::new(Vec::new()),
        weak: Mutex::new(Vec::new()),
    })
}

fn link(a: &Gc<Node>, b: &Gc<Node>) {
    *a.next.lock().unwrap() = Some(b.clone());
}

/// A garbage two-node cycle (allocated on the calling thread, dropped at once).
fn garbage_pair(heap: &Heap, log: &Arc<Log>) {
    let a = node(heap, 9000, log);
    let b = node(heap, 9001, log);
    link(&a, &b);
    link(&b, &a);
}

/// Two `Fin`s in a cycle.
fn fin_pair(heap: &Heap, log: &Arc<Log>, ids: (u32, u32)) -> (Gc<Fin>, Gc<Fin>) {
    let a = fin(heap, ids.0, log);
    let b = fin(heap, ids.1, log);
    *a.next.lock().unwrap() = Some(b.clone());
    *b.next.lock().unwrap() = Some(a.clone());
    (a, b)
}

/// Collects until the heap has no live object left (other threads may still let go of
/// references meanwhile); returns the total freed. Fails after `WATCHDOG`.
fn collect_until_empty(heap: &Heap) -> usize {
    let start = Instant::now();
    let mut total = 0;
    loop {
        total += heap.collect();
        if heap.live_objects() == 0 {
            return total;
        }
        assert!(
            start.elapsed() < WATCHDOG,
            "{} objects still alive",
            heap.live_objects()
        );
        thread::yield_now();
    }
}

// ---------------------------------------------------------------------------------------------
// Baseline.

/// A cycle is freed, a chain hanging off a live root is not, `collect` says how many.
#[test]
fn collects_a_cycle_and_nothing_live() {
    let heap = Heap::new();
    let log = Log::new();
    let root = node(&heap, 1, &log);
    let kid = node(&heap, 2, &log);
    link(&root, &kid);
    link(&kid, &root); // a cycle, but held from outside through `root`
    drop(kid);
    garbage_pair(&heap, &log);
    assert_eq!(heap.collect(), 2);
    assert_eq!(log.drops(), 2);
    assert_eq!(root.next.lock().unwrap().as_ref().unwrap().id, 2);
    assert_eq!(heap.collect(), 0);
    drop(root);
    assert_eq!(heap.collect(), 2);
    assert_eq!(log.drops(), 4);
    assert_eq!(heap.live_objects(), 0);
}

/// Inside `Heap::detached`, `try_collect` collects nothing (documented).
#[test]
fn collect_while_detached_returns_zero() {
    let heap = Heap::new();
    let log = Log::new();
    garbage_pair(&heap, &log);
    assert_eq!(
        heap.detached(|| heap.try_collect(Duration::from_secs(1))),
        Ok(0)
    );
    assert_eq!(log.drops(), 0);
    assert_eq!(heap.collect(), 2);
    assert_eq!(heap.live_objects(), 0);
}

// ---------------------------------------------------------------------------------------------
// Concurrent collectors.

/// Three threads collect in a loop while a fourth makes cycles: every cycle is freed exactly
/// once, every finalizer runs once, and the returns add up.
#[test]
fn concurrent_collectors_free_each_cycle_once() {
    within("concurrent collectors", || {
        let heap = Heap::new();
        let log = Log::new();
        let rounds = reps(200, 6);
        let stop = Arc::new(AtomicBool::new(false));
        let freed = Arc::new(AtomicUsize::new(0));
        let collectors: Vec<_> = (0..3)
            .map(|_| {
                let (h, stop, freed) = (heap.clone(), stop.clone(), freed.clone());
                thread::spawn(move || {
                    while !stop.load(SeqCst) {
                        freed.fetch_add(h.collect(), SeqCst);
                    }
                })
            })
            .collect();
        for i in 0..rounds as u32 {
            drop(fin_pair(&heap, &log, (2 * i, 2 * i + 1)));
        }
        stop.store(true, SeqCst);
        // Joined detached: this thread is attached (it allocated), the collectors stop it.
        heap.detached(|| {
            for c in collectors {
                c.join().unwrap();
            }
        });
        freed.fetch_add(collect_until_empty(&heap), SeqCst);
        assert_eq!(freed.load(SeqCst), 2 * rounds);
        assert_eq!(log.fin(), 2 * rounds, "each finalizer once");
        assert_eq!(log.drops(), 2 * rounds, "each value dropped once");
    });
}

// ---------------------------------------------------------------------------------------------
// Re-entrant collections: from the user code a collection runs.

/// Found: a `collect` from a finalizer that the collection runs deadlocks. The finalizers run on
/// the collecting thread while it still owns the heap's collection (`collecting` is only
/// cleared by `Finish`, collect.rs:152-158); the nested `collect` finds `collecting` set
/// (`stop_the_world`, thread.rs: `if g.collecting { return Err(Busy) }`) and
/// `wait_for_collection` (collect.rs:140-142) waits for `finished` to move, which only this very
/// thread can do. CPython returns 0 from a nested `gc.collect()` (so does Local mode here).
#[test]
fn collect_from_finalizer() {
    within("collect from a finalizer", || {
        let heap = Heap::new();
        let log = Log::new();
        let (a, b) = fin_pair(&heap, &log, (1, 2));
        let h = heap.clone();
        let nested = Arc::new(Mutex::new(None));
        let n = nested.clone();
        set_fin(&a, move |_| *n.lock().unwrap() = Some(h.collect()));
        drop((a, b));
        assert_eq!(heap.collect(), 2);
        assert_eq!(*nested.lock().unwrap(), Some(0));
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Found: the same deadlock from a weak-reference callback the collection runs (collect.rs:
/// `weak::call_back` after the restart, `collecting` still set).
#[test]
fn collect_from_weak_callback() {
    within("collect from a weak callback", || {
        let heap = Heap::new();
        let log = Log::new();
        let a = node(&heap, 1, &log);
        let b = node(&heap, 2, &log);
        link(&a, &b);
        link(&b, &a);
        let h = heap.clone();
        let nested = Arc::new(Mutex::new(None));
        let n = nested.clone();
        let w = Weak::with_callback(&a, move |_| *n.lock().unwrap() = Some(h.collect()));
        drop((a, b));
        assert_eq!(heap.collect(), 2);
        assert_eq!(*nested.lock().unwrap(), Some(0));
        assert!(w.upgrade().is_none());
        drop(w);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Found: the same deadlock from a `Drop` of the garbage (reclaim runs with `collecting` set).
#[test]
fn collect_from_drop_of_garbage() {
    within("collect from a Drop of garbage", || {
        let heap = Heap::new();
        let log = Log::new();
        let h = heap.clone();
        let nested = Arc::new(Mutex::new(None));
        let n = nested.clone();
        let a = fin_with(
            &heap,
            1,
            &log,
            None,
            Some(Box::new(move || *n.lock().unwrap() = Some(h.collect()))),
        );
        let b = fin(&heap, 2, &log);
        *a.next.lock().unwrap() = Some(b.clone());
        *b.next.lock().unwrap() = Some(a.clone());
        drop((a, b));
        assert_eq!(heap.collect(), 2);
        assert_eq!(*nested.lock().unwrap(), Some(0));
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Found: the same deadlock from the unraisable hook, called for a panicking `Drop` of the
/// garbage during reclaim.
#[test]
fn collect_from_unraisable_hook() {
    within("collect from the unraisable hook", || {
        let heap = Heap::new();
        let log = Log::new();
        let h = heap.clone();
        let nested = Arc::new(Mutex::new(Vec::new()));
        let n = nested.clone();
        heap.set_unraisable_hook(Some(Arc::new(move |u: &reap::Unraisable| {
            assert_eq!(u.kind, UnraisableKind::Drop);
            n.lock().unwrap().push(h.collect());
        })));
        let a = fin_with(&heap, 1, &log, None, Some(Box::new(|| panic!("drop boom"))));
        let b = fin(&heap, 2, &log);
        *a.next.lock().unwrap() = Some(b.clone());
        *b.next.lock().unwrap() = Some(a.clone());
        drop((a, b));
        assert_eq!(heap.collect(), 2);
        assert_eq!(*nested.lock().unwrap(), [0]);
        heap.set_unraisable_hook(None);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Found: a finalizer that waits (detached, as documented) for a thread that calls `collect`
/// deadlocks: the other thread's `collect` does not return 0 when a collection is running,
/// it waits for that collection to end (`wait_for_collection`, thread.rs), and that
/// collection waits for the finalizer. CPython's `gc.collect()` returns 0 at once when another
/// collection runs (`gcstate->collecting`).
#[test]
fn finalizer_joins_a_thread_that_collects() {
    within("finalizer joins a collecting thread", || {
        let heap = Heap::new();
        let log = Log::new();
        let (a, b) = fin_pair(&heap, &log, (1, 2));
        let h = heap.clone();
        let nested = Arc::new(Mutex::new(None));
        let n = nested.clone();
        set_fin(&a, move |_| {
            let h2 = h.clone();
            let t = thread::spawn(move || h2.collect());
            let r = h.detached(|| t.join().unwrap());
            *n.lock().unwrap() = Some(r);
        });
        drop((a, b));
        assert_eq!(heap.collect(), 2);
        assert_eq!(*nested.lock().unwrap(), Some(0));
        assert_eq!(heap.live_objects(), 0);
    });
}

/// A `collect` from the `Drop` of an object dying on a thread that never attached (its death
/// runs inside the heap's gate): the thread attaches, leaves the gate for the collection, and
/// the collection frees the cycle.
#[test]
fn collect_from_drop_on_never_attached_thread() {
    within("collect from a gated death", || {
        let heap = Heap::new();
        let log = Log::new();
        garbage_pair(&heap, &log);
        let h = heap.clone();
        let nested = Arc::new(Mutex::new(None));
        let n = nested.clone();
        // Allocated on a thread that exits: whoever drops it last runs its death there.
        let hh = heap.clone();
        let l = log.clone();
        let x = thread::spawn(move || {
            fin_with(
                &hh,
                7,
                &l,
                None,
                Some(Box::new(move || *n.lock().unwrap() = Some(h.collect()))),
            )
        })
        .join()
        .unwrap();
        let t = thread::spawn(move || drop(x));
        heap.detached(|| t.join().unwrap());
        assert_eq!(*nested.lock().unwrap(), Some(2));
        assert_eq!(log.drops(), 3);
        assert_eq!(log.fin(), 1);
        assert_eq!(heap.live_objects(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Threads that keep running during the pause.

/// A root holds `SLOTS` holders; a payload cycle P <-> Q sits in one holder's slot. A mover
/// thread (inside `Heap::detached`, or never attached at all) keeps moving P from slot to slot
/// (taking it onto its stack between the two locks) while the main thread collects in a loop,
/// each time with one fresh garbage cycle: every collection must free exactly that cycle,
/// never P or Q, and the mover always finds P and Q whole.
fn mover_scenario(detached: bool) {
    const SLOTS: usize = 6;
    let heap = Heap::new();
    let log = Log::new();
    let root = node(&heap, 1, &log);
    for i in 0..SLOTS {
        root.more
            .lock()
            .unwrap()
            .push(node(&heap, 100 + i as u32, &log));
    }
    let p = node(&heap, 50, &log);
    let q = node(&heap, 51, &log);
    link(&p, &q);
    link(&q, &p);
    *root.more.lock().unwrap()[0].next.lock().unwrap() = Some(p.clone());
    let (wp, wq) = (Weak::new(&p), Weak::new(&q));
    drop((p, q));
    let stop = Arc::new(AtomicBool::new(false));
    let moves = Arc::new(AtomicUsize::new(0));
    let mover = {
        let (root, stop, moves, h) = (root.clone(), stop.clone(), moves.clone(), heap.clone());
        let body = move || {
            let holders: Vec<Gc<Node>> = root.more.lock().unwrap().clone();
            let mut at = 0;
            while !stop.load(SeqCst) || moves.load(SeqCst) < 3 {
                let p = holders[at]
                    .next
                    .lock()
                    .unwrap()
                    .take()
                    .expect("P where we left it");
                assert_eq!(p.id, 50);
                let q_id = p.next.lock().unwrap().as_ref().map(|q| q.id);
                assert_eq!(q_id, Some(51));
                thread::yield_now();
                let to = (at + 1 + moves.load(SeqCst) % (SLOTS - 1)) % SLOTS;
                let old = holders[to].next.lock().unwrap().replace(p);
                assert!(old.is_none());
                at = to;
                moves.fetch_add(1, SeqCst);
            }
            drop(holders);
            at
        };
        thread::spawn(move || if detached { h.detached(body) } else { body() })
    };
    let rounds = reps(300, 8);
    for i in 0..rounds {
        garbage_pair(&heap, &log);
        let n = heap.collect();
        assert_eq!(n, 2, "round {i}: exactly the fresh cycle");
        assert!(wp.upgrade().is_some() && wq.upgrade().is_some());
        assert_eq!(log.drops(), 2 * (i + 1));
    }
    stop.store(true, SeqCst);
    let at = mover.join().unwrap();
    assert!(moves.load(SeqCst) >= 3);
    let p = root.more.lock().unwrap()[at]
        .next
        .lock()
        .unwrap()
        .clone()
        .unwrap();
    assert_eq!(p.id, 50);
    drop(p);
    drop(root);
    assert_eq!(heap.collect(), 2, "P and Q, once the root is gone");
    assert!(wp.upgrade().is_none() && wq.upgrade().is_none());
    drop((wp, wq));
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn detached_mover_vs_collect_loop() {
    within("detached mover", || mover_scenario(true));
}

#[test]
fn never_attached_mover_vs_collect_loop() {
    within("never-attached mover", || mover_scenario(false));
}

/// A thread that never attaches clones and drops handles to a cycle member (each its gate)
/// while the main thread collects; the cycle lives while the thread holds it and is freed
/// once, after.
#[test]
fn never_attached_cloner_during_collections() {
    within("never-attached cloner", || {
        let heap = Heap::new();
        let log = Log::new();
        let a = node(&heap, 1, &log);
        let b = node(&heap, 2, &log);
        link(&a, &b);
        link(&b, &a);
        let stop = Arc::new(AtomicBool::new(false));
        let t = {
            let (a, stop) = (a.clone(), stop.clone());
            thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(SeqCst) || n < 10 {
                    let b = a.next.lock().unwrap().clone().unwrap();
                    let a2 = b.next.lock().unwrap().clone().unwrap();
                    assert_eq!((b.id, a2.id), (2, 1));
                    let extra: Vec<_> = (0..4).map(|_| b.clone()).collect();
                    drop(extra);
                    n += 1;
                }
            })
        };
        drop((a, b));
        for _ in 0..reps(200, 6) {
            garbage_pair(&heap, &log);
            assert_eq!(heap.collect(), 2);
        }
        stop.store(true, SeqCst);
        t.join().unwrap();
        assert_eq!(heap.collect(), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Threads attach (first allocation), build cycles, sometimes collect, and exit, while
/// another thread collects in a loop: everything is freed once.
#[test]
fn threads_attach_and_exit_during_collections() {
    within("attach/exit churn", || {
        let heap = Heap::new();
        let log = Log::new();
        let stop = Arc::new(AtomicBool::new(false));
        let collector = {
            let (h, stop) = (heap.clone(), stop.clone());
            thread::spawn(move || {
                let mut n = 0;
                while !stop.load(SeqCst) {
                    n += h.collect();
                }
                n
            })
        };
        let threads = reps(40, 3);
        let mut total = 0;
        for round in 0..threads / 4 + 1 {
            let ws: Vec<_> = (0..4)
                .map(|i| {
                    let (h, log) = (heap.clone(), log.clone());
                    thread::spawn(move || {
                        let keep = node(&h, 1, &log);
                        for _ in 0..5 {
                            garbage_pair(&h, &log);
                        }
                        if (round + i) % 3 == 0 {
                            h.collect();
                        }
                        // Leave a cycle through an object this (exiting) thread owns.
                        let other = node(&h, 2, &log);
                        link(&keep, &other);
                        link(&other, &keep);
                    })
                })
                .collect();
            for w in ws {
                w.join().unwrap();
            }
            total += 4 * 12;
        }
        stop.store(true, SeqCst);
        let mut freed = collector.join().unwrap();
        freed += collect_until_empty(&heap);
        // (Some were freed by the workers' own collections.)
        assert_eq!(log.drops(), total);
        assert!(freed <= total);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// A ring whose nodes were allocated by different threads, all exited (one of them exits
/// while a collection is stopping the world): freed as one cycle.
#[test]
fn cycle_across_exited_owners() {
    within("exited owners", || {
        let heap = Heap::new();
        let log = Log::new();
        let n = reps(8, 3);
        let nodes: Vec<Gc<Node>> = (0..n)
            .map(|i| {
                let (h, l) = (heap.clone(), log.clone());
                thread::spawn(move || node(&h, i as u32, &l))
                    .join()
                    .unwrap()
            })
            .collect();
        for i in 0..n {
            link(&nodes[i], &nodes[(i + 1) % n]);
        }
        // One more owner that is still alive when the collection starts, and exits during it.
        let (tx, rx) = mpsc::channel::<()>();
        let (h, l) = (heap.clone(), log.clone());
        let (gtx, grx) = mpsc::channel();
        let late = thread::spawn(move || {
            let x = node(&h, 99, &l);
            gtx.send(x.clone()).unwrap();
            drop(x);
            h.detached(|| rx.recv().unwrap());
        });
        let x = grx.recv().unwrap();
        link(&nodes[0], &x);
        link(&x, &nodes[1]);
        drop(x);
        drop(nodes);
        tx.send(()).unwrap();
        let freed = heap.collect() + {
            late.join().unwrap();
            heap.collect()
        };
        assert_eq!(freed, n + 1);
        assert_eq!(log.drops(), n + 1);
        assert_eq!(heap.live_objects(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Resurrection, finalizers, zombies.

/// A finalizer resurrects its object into a global another thread reads (and derefs through)
/// while the collection goes on: nothing is dropped, each finalizer ran once, and once the
/// global lets go the cycle is freed without running them again.
#[test]
fn finalizer_resurrects_into_global_read_by_other_thread() {
    within("resurrection", || {
        let heap = Heap::new();
        let log = Log::new();
        let global: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
        let (a, b) = fin_pair(&heap, &log, (1, 2));
        let g = global.clone();
        set_fin(&a, move |this| *g.lock().unwrap() = Some(this.clone()));
        drop((a, b));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (g, stop) = (global.clone(), stop.clone());
            thread::spawn(move || {
                let mut seen = 0;
                while !stop.load(SeqCst) {
                    let got = g.lock().unwrap().clone();
                    if let Some(a) = got {
                        let b = a.next.lock().unwrap().clone().unwrap();
                        assert_eq!((a.id, b.id), (1, 2));
                        let a2 = b.next.lock().unwrap().clone().unwrap();
                        assert!(Gc::ptr_eq(&a, &a2));
                        seen += 1;
                    }
                    thread::yield_now();
                }
                seen
            })
        };
        assert_eq!(heap.collect(), 0, "resurrected with what it reaches");
        assert_eq!(log.fin(), 2);
        assert_eq!(log.drops(), 0);
        while global.lock().unwrap().is_none() {}
        thread::sleep(Duration::from_millis(if cfg!(miri) { 1 } else { 20 }));
        stop.store(true, SeqCst);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(heap.collect(), 0);
        global.lock().unwrap().take();
        assert_eq!(heap.collect(), 2);
        assert_eq!(log.fin(), 2, "no second finalizer");
        assert_eq!(log.drops(), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// A finalizer resurrects its object into a global, and another thread takes it and drops it
/// right away (before the resurrection check, most of the time): the cycle is freed by that
/// collection or by the next, never twice, and no finalizer runs twice.
#[test]
fn resurrected_then_dropped_by_other_thread() {
    within("resurrect and drop", || {
        for _ in 0..reps(50, 3) {
            let heap = Heap::new();
            let log = Log::new();
            let (tx, rx) = mpsc::channel::<Gc<Fin>>();
            let (a, b) = fin_pair(&heap, &log, (1, 2));
            let tx = Mutex::new(tx);
            set_fin(&a, move |this| {
                tx.lock().unwrap().send(this.clone()).unwrap()
            });
            drop((a, b));
            let t = thread::spawn(move || {
                let a = rx.recv().unwrap();
                assert_eq!(a.id, 1);
                drop(a);
            });
            let first = heap.collect();
            t.join().unwrap();
            let second = heap.collect();
            assert_eq!(first + second, 2);
            assert_eq!(log.fin(), 2);
            assert_eq!(log.drops(), 2);
            assert_eq!(heap.live_objects(), 0);
        }
    });
}

/// A node whose `Drop` hands the handle it holds to a sink (a `Drop` that stores a handle to
/// another object of its garbage cycle).
#[derive(Trace)]
struct Z {
    #[reap(skip)]
    id: u32,
    next: Mutex<Option<Gc<Z>>>,
    #[reap(skip)]
    sink: Arc<Mutex<Vec<Gc<Z>>>>,
}

impl Drop for Z {
    fn drop(&mut self) {
        if let Some(n) = self.next.get_mut().unwrap().take() {
            self.sink.lock().unwrap().push(n);
        }
    }
}

/// Each `Drop` of a garbage cycle stores its handle to the other into a global: both become
/// zombies. Another thread (never attached) takes them: every deref panics (no use of a
/// dropped value), `Weak::new` on a zombie works and is cleared when the zombie is freed, and
/// dropping them frees the memory.
#[test]
fn zombie_deref_from_other_thread_panics() {
    within("zombies", || {
        let heap = Heap::new();
        let sink: Arc<Mutex<Vec<Gc<Z>>>> = Arc::default();
        let a = heap.alloc(Z {
            id: 1,
            next: Mutex::new(None),
            sink: sink.clone(),
        });
        let b = heap.alloc(Z {
            id: 2,
            next: Mutex::new(Some(a.clone())),
            sink: sink.clone(),
        });
        *a.next.lock().unwrap() = Some(b.clone());
        drop((a, b));
        assert_eq!(heap.collect(), 2);
        assert_eq!(heap.live_objects(), 2, "two zombies held by the sink");
        let s = sink.clone();
        let weaks = thread::spawn(move || {
            let zs = std::mem::take(&mut *s.lock().unwrap());
            assert_eq!(zs.len(), 2);
            let mut weaks = Vec::new();
            for z in &zs {
                let r = catch_unwind(AssertUnwindSafe(|| z.id));
                assert!(r.is_err(), "deref of a zombie must panic");
                let w = Weak::new(z);
                let up = w.upgrade();
                if let Some(u) = up {
                    assert!(catch_unwind(AssertUnwindSafe(|| u.id)).is_err());
                }
                weaks.push(w);
            }
            drop(zs);
            weaks
        })
        .join()
        .unwrap();
        for w in &weaks {
            assert!(
                w.upgrade().is_none(),
                "a freed zombie's weak reference is cleared"
            );
        }
        drop(weaks);
        assert_eq!(heap.collect(), 0);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// An object queued to its owner (another thread dropped the last reference) while the owner
/// sits in `Heap::detached`: the collection merges the queue and runs the death (finalizer,
/// which resurrects it once) on the collecting thread; later it dies for good, once.
#[test]
fn queued_death_settled_by_collection() {
    within("queued death", || {
        let heap = Heap::new();
        let log = Log::new();
        let global: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
        let (xtx, xrx) = mpsc::channel();
        let (gotx, gorx) = mpsc::channel::<()>();
        let owner = {
            let (h, l, g) = (heap.clone(), log.clone(), global.clone());
            thread::spawn(move || {
                let x = fin(&h, 5, &l);
                set_fin(&x, move |this| *g.lock().unwrap() = Some(this.clone()));
                xtx.send(x).unwrap();
                h.detached(|| gorx.recv().unwrap());
            })
        };
        let x = xrx.recv().unwrap();
        drop(x); // queued to the (detached) owner
        assert_eq!(log.fin(), 0);
        assert_eq!(heap.collect(), 0);
        assert_eq!(log.fin(), 1, "the queued death ran in the collection");
        assert_eq!(global.lock().unwrap().as_ref().unwrap().id, 5);
        gotx.send(()).unwrap();
        owner.join().unwrap();
        global.lock().unwrap().take();
        assert_eq!(log.fin(), 1);
        assert_eq!(log.drops(), 1);
        assert_eq!(heap.live_objects(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Weak references.

/// A weak reference that only the garbage holds is garbage itself: SEMANTICS 2.4 (and
/// CPython's `handle_weakrefs`): it is detached from its referent, and its callback never
/// runs. (Found by this file: weak-reference objects were untracked, so never garbage.)
#[test]
fn garbage_weakref_callback_does_not_run() {
    within("garbage weakref callback", || {
        let heap = Heap::new();
        let log = Log::new();
        let a = node(&heap, 1, &log);
        let b = node(&heap, 2, &log);
        link(&a, &b);
        link(&b, &a);
        let l = log.clone();
        let w = Weak::with_callback(&b, move |_| {
            l.cbs.fetch_add(1, SeqCst);
        });
        a.weak.lock().unwrap().push(w); // held only by the garbage
        drop((a, b));
        assert_eq!(heap.collect(), 3, "a, b and the weak-reference object");
        assert_eq!(log.drops(), 2);
        assert_eq!(
            log.cbs(),
            0,
            "the callback of a garbage weak reference never runs"
        );
        assert_eq!(heap.live_objects(), 0);
    });
}

/// A weak reference held from outside, with a callback, to a garbage object: cleared in the
/// pause, its callback runs once (after the restart) and sees it cleared.
#[test]
fn live_weakref_callback_runs_once_cleared() {
    let heap = Heap::new();
    let log = Log::new();
    let a = node(&heap, 1, &log);
    let b = node(&heap, 2, &log);
    link(&a, &b);
    link(&b, &a);
    let l = log.clone();
    let w = Weak::with_callback(&b, move |w| {
        assert!(w.upgrade().is_none());
        l.cbs.fetch_add(1, SeqCst);
    });
    let plain = Weak::new(&a);
    drop((a, b));
    assert_eq!(heap.collect(), 2);
    assert_eq!(log.cbs(), 1);
    assert!(w.upgrade().is_none() && plain.upgrade().is_none());
    assert!(!w.has_callback());
    drop((w, plain));
    assert_eq!(heap.live_objects(), 0);
}

/// Threads of every kind (attached, detached, never attached) upgrade weak references to a
/// cycle's members while collections run: an upgrade either yields the whole object or
/// `None`; after the cycle is freed every upgrade is `None`.
#[test]
fn weak_upgrades_race_collections() {
    within("weak upgrade race", || {
        let heap = Heap::new();
        let log = Log::new();
        let a = node(&heap, 1, &log);
        let b = node(&heap, 2, &log);
        link(&a, &b);
        link(&b, &a);
        let (wa, wb) = (Weak::new(&a), Weak::new(&b));
        drop((a, b));
        let upgraders: Vec<_> = (0..3)
            .map(|kind| {
                let (wa, wb, h) = (wa.clone(), wb.clone(), heap.clone());
                thread::spawn(move || {
                    let body = |h: &Heap| {
                        let mut got = 0usize;
                        loop {
                            let (x, y) = (wa.upgrade(), wb.upgrade());
                            if let Some(x) = &x {
                                assert_eq!(x.id, 1);
                                let n = x.next.lock().unwrap().clone().unwrap();
                                assert_eq!(n.id, 2);
                                got += 1;
                            }
                            if let Some(y) = &y {
                                assert_eq!(y.id, 2);
                            }
                            let done = x.is_none() && y.is_none();
                            drop((x, y));
                            if kind == 0 {
                                h.safepoint();
                            }
                            if done {
                                return got;
                            }
                        }
                    };
                    match kind {
                        0 => {
                            drop(h.alloc(0_u8)); // attached
                            body(&h)
                        }
                        1 => h.detached(|| body(&h)),
                        _ => body(&h),
                    }
                })
            })
            .collect();
        let freed = collect_until_empty_but(&heap, 2);
        assert_eq!(freed, 2);
        for u in upgraders {
            u.join().unwrap();
        }
        assert!(wa.upgrade().is_none() && wb.upgrade().is_none());
        drop((wa, wb));
        assert_eq!(log.drops(), 2);
        heap.safepoint();
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Collects until no more than `left` objects are alive (weak-reference objects the test
/// still holds); returns the total freed.
fn collect_until_empty_but(heap: &Heap, left: usize) -> usize {
    let start = Instant::now();
    let mut total = 0;
    while heap.live_objects() > left {
        total += heap.collect();
        assert!(start.elapsed() < WATCHDOG);
        thread::yield_now();
    }
    total
}

/// Found: a weak reference a finalizer made to its (garbage) object can be upgraded by another
/// thread after the resurrection check said the object is garbage and marked it
/// `VALUE_DROPPED`, but before `reclaim` clears it: the upgrade returns `Some` of an object
/// whose value is being dropped (its deref panics, and it lives on as a zombie). Pause 2
/// (collect.rs:205-232) poisons `still` but leaves the weak references made since pause 1 for
/// `reclaim` (collect.rs:477-490), which clears them with the world running, one object at a
/// time, running each one's callbacks (user code) in between; the window between the restart
/// and each clear is open to any thread. They should be cleared (targets nulled) while the
/// world is still stopped in pause 2, their callbacks run after.
#[test]
fn upgrade_after_resurrection_check_returns_none() {
    within("upgrade after pause 2", || {
        let heap = Heap::new();
        let log = Log::new();
        const K: u32 = 4;
        let plain: Arc<Mutex<Vec<Weak<Fin>>>> = Arc::default();
        let cbs: Arc<Mutex<Vec<Weak<Fin>>>> = Arc::default();
        let reclaiming = Arc::new(AtomicBool::new(false));
        let ring: Vec<Gc<Fin>> = (0..K).map(|i| fin(&heap, i, &log)).collect();
        for i in 0..K as usize {
            *ring[i].next.lock().unwrap() = Some(ring[(i + 1) % K as usize].clone());
            let (p, c, r) = (plain.clone(), cbs.clone(), reclaiming.clone());
            set_fin(&ring[i], move |this| {
                p.lock().unwrap().push(Weak::new(this));
                c.lock().unwrap().push(Weak::with_callback(this, move |_| {
                    r.store(true, SeqCst);
                    thread::sleep(Duration::from_millis(30));
                }));
            });
        }
        drop(ring);
        let (p, r) = (plain.clone(), reclaiming.clone());
        let upgrader = thread::spawn(move || {
            while !r.load(SeqCst) {
                thread::yield_now();
            }
            let ws = p.lock().unwrap().clone();
            let mut bad = 0;
            for w in &ws {
                if let Some(g) = w.upgrade() {
                    if catch_unwind(AssertUnwindSafe(|| g.id)).is_err() {
                        bad += 1;
                    }
                }
            }
            bad
        });
        let n = heap.collect();
        let bad = upgrader.join().unwrap();
        assert_eq!(bad, 0, "upgrades handed out objects condemned by pause 2");
        assert_eq!(n, K as usize);
        assert_eq!(log.fin(), K as usize);
        plain.lock().unwrap().clear();
        cbs.lock().unwrap().clear();
        heap.collect();
        assert_eq!(heap.live_objects(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Locks held elsewhere.

#[derive(Trace)]
struct RwNode {
    #[reap(skip)]
    id: u32,
    slot: RwLock<Option<Gc<RwNode>>>,
}

/// An attached thread holds the write lock of an object's `RwLock` (whose contents reach a
/// cycle) and parks at safe points meanwhile: collections neither hang nor free what the
/// locked slot reaches; once it lets go, the cycle is freed.
#[test]
fn rwlock_write_held_by_parked_thread_keeps_object() {
    within("rwlock held by a parked thread", || {
        let heap = Heap::new();
        let c = heap.alloc(RwNode {
            id: 0,
            slot: RwLock::new(None),
        });
        let a = heap.alloc(RwNode {
            id: 1,
            slot: RwLock::new(None),
        });
        let b = heap.alloc(RwNode {
            id: 2,
            slot: RwLock::new(Some(a.clone())),
        });
        *a.slot.write().unwrap() = Some(b.clone());
        *c.slot.write().unwrap() = Some(a.clone());
        drop((a, b));
        let (locked_tx, locked_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let h = heap.clone();
        let w = thread::spawn(move || {
            drop(h.alloc(0_u8)); // attached
            let mut g = c.slot.write().unwrap();
            locked_tx.send(()).unwrap();
            while go_rx.try_recv().is_err() {
                h.safepoint();
                thread::yield_now();
            }
            // Let go of the cycle under the lock, between collections.
            let a = g.take().unwrap();
            assert_eq!(a.id, 1);
            drop(g);
            drop(a);
            assert_eq!(c.id, 0);
        });
        locked_rx.recv().unwrap();
        for _ in 0..reps(20, 3) {
            assert_eq!(heap.collect(), 0);
        }
        go_tx.send(()).unwrap();
        w.join().unwrap();
        assert_eq!(heap.collect(), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// The collecting thread itself holds the lock of a garbage object's `Mutex` (a guard alive
/// across `collect`): that object is not traversed and the cycle is kept, not freed under the
/// guard.
#[test]
fn collector_holding_a_guard_keeps_the_cycle() {
    let heap = Heap::new();
    let log = Log::new();
    let a = node(&heap, 1, &log);
    let b = node(&heap, 2, &log);
    link(&a, &b);
    link(&b, &a);
    let bb = b.clone();
    drop((a, b));
    {
        let g = bb.next.lock().unwrap();
        assert_eq!(heap.collect(), 0);
        assert_eq!(g.as_ref().unwrap().id, 1);
    }
    drop(bb);
    assert_eq!(heap.collect(), 2);
    assert_eq!(heap.live_objects(), 0);
}

// ---------------------------------------------------------------------------------------------
// Stopping the world.

/// `try_collect` with a tiny timeout while an attached thread blocks outside `detached`:
/// `Err` (naming one thread), nothing freed, the heap usable (a never-attached thread can
/// drop handles at once); after the thread moves on, `collect` frees the cycle.
#[test]
fn try_collect_times_out_on_blocked_attached_thread() {
    within("try_collect timeout", || {
        let heap = Heap::new();
        let log = Log::new();
        garbage_pair(&heap, &log);
        let (ready_tx, ready_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let h = heap.clone();
        let blocked = thread::spawn(move || {
            let mine = h.alloc(5_u32);
            ready_tx.send(()).unwrap();
            go_rx.recv().unwrap(); // blocking while attached: not in `detached`
            assert_eq!(*mine, 5);
            drop(h.alloc(6_u32)); // a safe point
        });
        ready_rx.recv().unwrap();
        let t = Duration::from_millis(if cfg!(miri) { 5 } else { 30 });
        let e = heap.try_collect(t).unwrap_err();
        assert_eq!(e.threads, 1);
        assert_eq!(e.waited, t);
        assert!(e.to_string().contains("safe point"));
        assert_eq!(log.drops(), 0);
        // The gate is open again: a never-attached thread's clone and drop go through.
        let x = node(&heap, 3, &log);
        let y = x.clone();
        thread::spawn(move || drop(y.clone())).join().unwrap();
        drop(x);
        assert!(heap.try_collect(Duration::ZERO).is_err());
        go_tx.send(()).unwrap();
        blocked.join().unwrap();
        assert_eq!(heap.collect(), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Found (liveness): a death that runs on a thread not attached to the heap runs inside the
/// heap's gate, and user code there cannot let a collection in, even by blocking inside
/// `Heap::detached` as documented: `detached` (thread.rs, `pub(crate) fn detached`) attaches
/// the thread and marks it DETACHED, but does not leave the gate the death holds
/// (`leave_gate` is only used by `park`, `wait_for_collection` and `outside_gate`), and
/// `stop_the_world` waits for `passive == 0`. So every collection of the heap times out (and
/// `collect` panics) while such a `Drop` blocks, however it blocks.
#[test]
fn gated_death_blocking_in_detached_lets_collections_run() {
    within("gated death blocking in detached", || {
        let heap = Heap::new();
        let log = Log::new();
        let (tx, rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let h = heap.clone();
        let l = log.clone();
        let x = thread::spawn(move || {
            let rx = Mutex::new(rx);
            let h2 = h.clone();
            fin_with(
                &h,
                1,
                &l,
                None,
                Some(Box::new(move || {
                    started_tx.send(()).unwrap();
                    h2.detached(|| rx.lock().unwrap().recv().unwrap());
                })),
            )
        })
        .join()
        .unwrap();
        let dropper = thread::spawn(move || drop(x)); // never attached: its death is gated
        started_rx.recv().unwrap();
        garbage_pair(&heap, &log);
        let r = heap.try_collect(Duration::from_millis(300));
        tx.send(()).unwrap();
        dropper.join().unwrap();
        assert_eq!(r, Ok(2), "the blocked Drop is inside Heap::detached");
        heap.collect();
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Found (liveness, design): attachments are per heap and all stay ATTACHED at once, so a thread
/// attached to two heaps that is busy with one of them never reaches the other's safe points.
/// Two threads each collecting a different heap, both attached to both, each wait for the
/// other to park (`stop_the_world` only counts PARKED/DETACHED states of the heap being
/// collected; a thread spinning in another heap's `stop` or parked in another heap's pause is
/// ATTACHED here): both time out. CPython's thread is attached to one interpreter at a time.
#[test]
fn two_heaps_cross_attached_collectors() {
    within("cross-attached collectors", || {
        let h1 = Heap::new();
        let h2 = Heap::new();
        let barrier = Arc::new(Barrier::new(2));
        let run = |mine: Heap, other: Heap, barrier: Arc<Barrier>| {
            thread::spawn(move || {
                drop(mine.alloc(1_u8));
                drop(other.alloc(1_u8));
                barrier.wait();
                let mut errors = 0;
                for _ in 0..5 {
                    let log = Log::new();
                    garbage_pair(&mine, &log);
                    if mine.try_collect(Duration::from_millis(200)).is_err() {
                        errors += 1;
                    }
                }
                errors
            })
        };
        let x = run(h1.clone(), h2.clone(), barrier.clone());
        let y = run(h2.clone(), h1.clone(), barrier);
        let (ex, ey) = (x.join().unwrap(), y.join().unwrap());
        assert_eq!(
            (ex, ey),
            (0, 0),
            "collections that failed to stop the world"
        );
        h1.collect();
        h2.collect();
        assert_eq!(h1.live_objects() + h2.live_objects(), 0);
    });
}

/// The last `Heap` handles go (on other threads) while a collection runs: the collecting
/// thread's attachment keeps the heap alive; everything is freed once.
#[test]
fn heap_handles_dropped_while_collecting() {
    within("heap dropped while collecting", || {
        let log = Log::new();
        for _ in 0..reps(20, 2) {
            let heap = Heap::new();
            // Built by a thread that exits: nobody attached is left to stop.
            let (h, l) = (heap.clone(), log.clone());
            thread::spawn(move || {
                for i in 0..10 {
                    drop(fin_pair(&h, &l, (i, i + 100)));
                }
            })
            .join()
            .unwrap();
            let (tx, rx) = mpsc::channel::<Heap>();
            let dropper = thread::spawn(move || {
                let h = rx.recv().unwrap();
                drop(h);
            });
            let h = heap.clone();
            let collector = thread::spawn(move || h.collect());
            tx.send(heap).unwrap();
            dropper.join().unwrap();
            assert_eq!(collector.join().unwrap(), 20);
        }
        assert_eq!(log.fin(), reps(20, 2) * 20);
        assert_eq!(log.drops(), reps(20, 2) * 20);
    });
}

// ---------------------------------------------------------------------------------------------
// A hand-written `Trace` that panics.

struct Bad {
    next: Mutex<Option<Gc<Bad>>>,
    boom: AtomicBool,
}

// SAFETY: visits exactly the handle it holds (then may panic, which a collection survives).
unsafe impl Trace for Bad {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.next.trace(tracer);
        if self.boom.load(SeqCst) {
            panic!("trace boom");
        }
    }
}

/// A panicking `Trace` abandons the collection (reported to the hook, nothing freed, the
/// world restarted, the lock it held not poisoned); the next collection frees the cycle.
#[test]
fn panicking_trace_abandons_collection() {
    within("panicking trace", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let a = heap.alloc(Bad {
            next: Mutex::new(None),
            boom: AtomicBool::new(true),
        });
        let b = heap.alloc(Bad {
            next: Mutex::new(Some(a.clone())),
            boom: AtomicBool::new(false),
        });
        *a.next.lock().unwrap() = Some(b.clone());
        let wa = Weak::new(&a);
        drop(b);
        let aa = a.clone();
        drop(a);
        // Another thread can still allocate and drop (the world was restarted).
        let h = heap.clone();
        thread::spawn(move || drop(h.alloc(3_u8))).join().unwrap();
        drop(aa);
        assert_eq!(heap.collect(), 0);
        {
            let r = reports.lock().unwrap();
            assert_eq!(r.len(), 1);
            assert!(r[0].1.contains("trace boom"));
        }
        let a = wa.upgrade().expect("kept");
        assert!(!a.next.is_poisoned());
        a.boom.store(false, SeqCst);
        drop(a);
        assert_eq!(heap.collect(), 2);
        drop(wa);
        assert_eq!(heap.live_objects(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// A collection while an owner is halfway through draining its merge queue.

/// Found (debug builds): an owner drains its merge queue (`thread::drain` takes the whole queue
/// out of its slot, then `merge_all` merges entry by entry, running deaths), and the death of
/// the first entry reaches a safe point and parks. The later entries are still `QUEUED` but in
/// no slot, so `merge_queues` cannot merge them, and the snapshot's `count::stopped_count`
/// (count.rs, `debug_assert!(state_of(word) != QUEUED, "a queued object in a stopped
/// world")`) panics: the panic is caught by `find_garbage`, the collection is abandoned (the
/// cycle below is not freed) and reported to the hook as a panicking `Trace`. (In release
/// builds the count read includes the queue entry's reference, which no candidate explains:
/// the object is only kept, which is right.)
#[test]
fn collection_while_owner_drains_its_queue() {
    within("collect during a drain", || {
        let heap = Heap::new();
        let log = Log::new();
        let reports = hooked(&heap);
        let (objs_tx, objs_rx) = mpsc::channel::<Vec<Gc<Fin>>>();
        let (in_drop_tx, in_drop_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (queued_tx, queued_rx) = mpsc::channel::<()>();
        let owner = {
            let (h, l) = (heap.clone(), log.clone());
            thread::spawn(move || {
                let h2 = h.clone();
                let go_rx = Mutex::new(go_rx);
                let x1 = fin_with(
                    &h,
                    1,
                    &l,
                    None,
                    Some(Box::new(move || {
                        in_drop_tx.send(()).unwrap();
                        // Parks at these safe points while the main thread collects.
                        while go_rx.lock().unwrap().try_recv().is_err() {
                            h2.safepoint();
                            thread::yield_now();
                        }
                    })),
                );
                let x2 = fin(&h, 2, &l);
                objs_tx.send(vec![x1, x2]).unwrap();
                h.detached(|| queued_rx.recv().unwrap());
                h.safepoint(); // drains: x1 dies (and parks inside its Drop), x2 waits
            })
        };
        drop(objs_rx.recv().unwrap()); // both queued to the owner
        queued_tx.send(()).unwrap();
        in_drop_rx.recv().unwrap();
        garbage_pair(&heap, &log);
        let n = heap.collect();
        go_tx.send(()).unwrap();
        heap.detached(|| owner.join().unwrap());
        assert_eq!(*reports.lock().unwrap(), []);
        assert_eq!(n, 2);
        heap.collect();
        assert_eq!(heap.live_objects(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Found by Miri.

/// Found (Miri, under Stacked Borrows and Tree Borrows; UB): the last drop, on a thread never attached to the heap, of
/// an object whose owner has exited. `heap::dec_ref_slow` (heap.rs:233-238 then; now `dec_ref_gated`) passed
/// `thread::with_access` a closure that captures `h: &SharedHeader` (from `obj.as_ref()`);
/// closure captures are function arguments of `with_access`/`gated`, so Miri protects that
/// shared reference for the whole call, and inside it `settle` -> `queue` (owner gone) ->
/// `merge_all` -> `release` -> `destroy` -> `free_object` -> `SharedSlab::free_remote` writes
/// the block's first word (the header's `heap` field, not in an `UnsafeCell`) while the
/// protected `&SharedHeader` still covers it: "not granting access to tag ... because that
/// would remove [SharedReadOnly ...] which is strongly protected" (shared_slab.rs:250). The
/// closure should capture only `obj` (a raw pointer) and re-derive the reference for the
/// decrement. Natively it passes (the memory stays allocated in the slab).
#[test]
fn last_drop_on_never_attached_thread() {
    let heap = Heap::new();
    let log = Log::new();
    let (h, l) = (heap.clone(), log.clone());
    let x = thread::spawn(move || node(&h, 1, &l)).join().unwrap();
    thread::spawn(move || drop(x)).join().unwrap();
    assert_eq!(log.drops(), 1);
    assert_eq!(heap.live_objects(), 0);
}
