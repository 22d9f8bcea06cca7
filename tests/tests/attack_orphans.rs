//! Attacks on the merge of an exited thread's objects by the next collection (fifteenth
//! session: `HeapState::left`, `collect::Orphans`, `count::merge_orphan`; CPython 3.13t's
//! `gc_restore_tid`). A thread that leaves a heap lists its id; the next collection's walk
//! merges every object still naming it as owner. These tests try to make that merge meet an
//! object whose count is not what `local + shared` says (a death running, a resurrection, a
//! queue entry, a zombie, a frozen or weakly referenced object), or race it with the exit
//! itself, other heaps' exits, thread-local destructors, `Heap::detached`, `sync::Mutex`
//! holders and the `gc` surface's walks. Each asserts the outcomes: every finalizer and
//! `Drop` once, at the right time, and `live_objects() == 0` at the end. Run natively, under
//! Miri and under ThreadSanitizer.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;

use reap::sync::{Gc, Heap, Weak};
use reap::{Trace, Tracer};
use reap_tests::shared::{chain, fin, hooked, reps, set_fin, settled_live, within, Fin, Log};

/// A plain leaf counting its drops.
#[derive(Trace)]
struct Leaf {
    slot: Mutex<Option<Gc<Leaf>>>,
    #[reap(skip)]
    log: Arc<Log>,
}

impl Drop for Leaf {
    fn drop(&mut self) {
        self.log.drops.fetch_add(1, SeqCst);
    }
}

fn leaf(h: &Heap, log: &Arc<Log>) -> Gc<Leaf> {
    h.alloc(Leaf {
        slot: Mutex::new(None),
        log: log.clone(),
    })
}

/// Runs `f` on a new thread (attached to whatever heaps it touches) and joins it: the thread
/// has left every heap when this returns.
fn on_worker<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    thread::spawn(f).join().unwrap()
}

/// 1. Objects of a worker with every kind of count: owned only (`local` 1), shared with other
///    threads (shared count above 0), weakly referenced (`MAYBE_WEAK`), queued to it before
///    it left (merged by its exit), a 2-cycle, a frozen one. A collection merges what is left;
///    the strong counts are the same before and after, and each object dies once, at its last
///    drop, whichever thread drops it.
#[test]
fn every_kind_of_count_survives_the_orphan_merge() {
    let heap = Heap::new();
    let reports = hooked(&heap);
    let log = Log::new();
    for round in 0..reps(20, 2) {
        let (h, l) = (heap.clone(), log.clone());
        let (only, shared, weakly, cyc, w, held) = on_worker(move || {
            let only = leaf(&h, &l);
            let shared = leaf(&h, &l);
            let held = thread::scope(|s| s.spawn(|| shared.clone()).join().unwrap());
            let weakly = fin(&h, round as u32, &l);
            let l2 = l.clone();
            let w = Weak::with_callback(&weakly, move |_| {
                l2.cbs.fetch_add(1, SeqCst);
            });
            // A 2-cycle kept from outside by one handle.
            let a = leaf(&h, &l);
            let b = leaf(&h, &l);
            *a.slot.lock().unwrap() = Some(b.clone());
            *b.slot.lock().unwrap() = Some(a.clone());
            drop(b);
            (only, shared, weakly, a, w, held)
        });
        let before = [
            Gc::strong_count(&only),
            Gc::strong_count(&shared),
            Gc::strong_count(&weakly),
            Gc::strong_count(&cyc),
        ];
        assert_eq!(before, [1, 2, 1, 2]);
        if round % 3 == 1 {
            heap.freeze();
        }
        assert_eq!(heap.collect(), 0);
        if round % 2 == 0 {
            assert_eq!(heap.collect_exhaustive(), 0);
        }
        let after = [
            Gc::strong_count(&only),
            Gc::strong_count(&shared),
            Gc::strong_count(&weakly),
            Gc::strong_count(&cyc),
        ];
        assert_eq!(before, after, "the merge kept the counts");
        if round % 3 == 1 {
            heap.unfreeze();
        }
        // Clones and drops on three threads (the merged path) and on this one.
        thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..reps(50, 3) {
                        let g = w.upgrade().expect("alive");
                        let c = (only.clone(), shared.clone(), cyc.clone(), g.clone());
                        drop(c);
                    }
                });
            }
        });
        let d0 = log.drops();
        drop(held);
        assert_eq!(log.drops(), d0, "one handle of `shared` left");
        on_worker(move || drop((only, shared)));
        assert_eq!(log.drops(), d0 + 2);
        assert_eq!(log.fin(), round);
        on_worker(move || drop(weakly));
        assert_eq!(log.fin(), round + 1);
        assert_eq!(log.cbs(), round + 1);
        assert!(w.upgrade().is_none());
        drop(cyc);
        assert_eq!(heap.collect(), 2, "the cycle, merged and then dropped");
        assert_eq!(log.drops(), d0 + 5);
    }
    assert_eq!(settled_live(&heap), 0);
    assert!(
        reports.lock().unwrap().is_empty(),
        "{:?}",
        reports.lock().unwrap()
    );
}

// A user thread-local destructor order: one registered before the thread first attaches is
// destroyed after the runtime's (LIFO), so its handles are dropped after the thread has left
// the heap and listed its id: through the gate, racing a collection on another thread that
// merges the same objects.
thread_local! {
    static EARLY: RefCell<Vec<Gc<Fin>>> = const { RefCell::new(Vec::new()) };
}

/// 2. A worker's handles to its own objects dropped by a thread-local destructor that runs
///    after the worker left the heap, while the main thread collects in a loop (each of those
///    collections may merge the objects the destructor drops, before or after its drops). The
///    last drop of some is the destructor's (the death runs on the exiting thread, with no
///    owner id: a finalizer that resurrects there stores into a merged count); of the others,
///    the main thread's.
#[test]
fn thread_local_destructor_drops_orphans_while_collections_merge_them() {
    within("tls orphans", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let kept: Arc<Mutex<Vec<Gc<Fin>>>> = Arc::default();
        const N: u32 = 6;
        for round in 0..reps(30, 2) {
            let stop = Arc::new(AtomicBool::new(false));
            let collector = {
                let (h, stop) = (heap.clone(), stop.clone());
                thread::spawn(move || {
                    let mut n = 0;
                    while !stop.load(SeqCst) {
                        n += h.collect();
                        h.detached(thread::yield_now);
                    }
                    n
                })
            };
            let (h, l, k) = (heap.clone(), log.clone(), kept.clone());
            // Joined detached: the collector does not wait for this thread meanwhile.
            let mine = heap.detached(|| {
                on_worker(move || {
                    // Registered before the first attachment: destroyed after the runtime's.
                    EARLY.with(|e| e.borrow_mut().clear());
                    let mut mine = Vec::new();
                    for i in 0..N {
                        let f = fin(&h, 1000 * round as u32 + i, &l);
                        if i % 2 == 0 {
                            // Resurrected by its finalizer (on the exiting thread, or wherever
                            // its last drop is) into `kept`.
                            let k = k.clone();
                            set_fin(&f, move |g| k.lock().unwrap().push(g.clone()));
                            EARLY.with(|e| e.borrow_mut().push(f));
                        } else {
                            mine.push(f.clone());
                            EARLY.with(|e| e.borrow_mut().push(f));
                        }
                    }
                    mine
                })
            });
            stop.store(true, SeqCst);
            assert_eq!(
                heap.detached(|| collector.join().unwrap()),
                0,
                "nothing is garbage"
            );
            let r = round;
            assert_eq!(
                log.fin(),
                r * N as usize + N as usize / 2,
                "the resurrected ones' finalizers"
            );
            assert_eq!(log.drops(), r * N as usize);
            assert_eq!(kept.lock().unwrap().len(), N as usize / 2);
            heap.collect();
            for f in &mine {
                assert_eq!(Gc::strong_count(f), 1);
            }
            on_worker(move || drop(mine));
            let resurrected = std::mem::take(&mut *kept.lock().unwrap());
            for f in &resurrected {
                assert_eq!(Gc::strong_count(f), 1);
            }
            drop(resurrected);
            assert_eq!(log.fin(), (r + 1) * N as usize);
            assert_eq!(log.drops(), (r + 1) * N as usize);
        }
        assert_eq!(settled_live(&heap), 0);
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
    });
}

/// A node whose `Drop` collects both heaps and drops what it holds of the other.
#[derive(Trace)]
struct Cross {
    other: Mutex<Option<Gc<Leaf>>>,
    #[reap(skip)]
    heaps: Vec<Heap>,
    #[reap(skip)]
    log: Arc<Log>,
}

impl Drop for Cross {
    fn drop(&mut self) {
        self.log.drops.fetch_add(1, SeqCst);
        for h in &self.heaps {
            // On the exiting thread: nothing (it has no attachment); elsewhere a real one.
            h.collect();
        }
        drop(self.other.get_mut().unwrap().take());
    }
}

/// 3. A thread attached to two heaps exits with a queue on each (the main thread dropped
///    handles the worker counted, while it waited attached), whose deaths collect both heaps
///    and drop objects of the other heap that the worker owns; meanwhile two threads collect
///    the heaps in loops. The ids listed on each heap, the queues merged at the exit and the
///    objects merged by the collections: every object dies once.
#[test]
fn exit_from_two_heaps_with_queues_while_both_collect() {
    within("two heaps", || {
        let (a, b) = (Heap::new(), Heap::new());
        let (ra, rb) = (hooked(&a), hooked(&b));
        let log = Log::new();
        const N: usize = 4;
        let rounds = reps(30, 2);
        for round in 0..rounds {
            let (tx, rx) = mpsc::channel::<Vec<Gc<Cross>>>();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let (ha, hb, l) = (a.clone(), b.clone(), log.clone());
            let worker = thread::spawn(move || {
                let mut out = Vec::new();
                let mut kept = Vec::new();
                for i in 0..N {
                    // Alternate heaps: each `Cross` of one holds a `Leaf` of the other.
                    let (mine, theirs) = if i % 2 == 0 { (&ha, &hb) } else { (&hb, &ha) };
                    let x = mine.alloc(Cross {
                        other: Mutex::new(Some(leaf(theirs, &l))),
                        heaps: vec![ha.clone(), hb.clone()],
                        log: l.clone(),
                    });
                    // A clone the worker counts, sent out: its drop on main queues to us.
                    out.push(x.clone());
                    if i % 2 == 0 {
                        drop(x);
                    } else {
                        kept.push(x);
                    }
                }
                tx.send(out).unwrap();
                // Waits attached (briefly): the queues fill meanwhile. No collection may run
                // now (it would wait for us), so main collects only after the go.
                go_rx.recv().unwrap();
                // `kept` goes here, before the exit: their last handles are the queue's.
                drop(kept);
            });
            let out = rx.recv().unwrap();
            drop(out); // Queued to the worker: half of them its last references.
            let stop = Arc::new(AtomicBool::new(false));
            let collectors: Vec<_> = [a.clone(), b.clone()]
                .into_iter()
                .map(|h| {
                    let stop = stop.clone();
                    thread::spawn(move || {
                        while !stop.load(SeqCst) {
                            h.collect();
                            h.detached(thread::yield_now);
                        }
                    })
                })
                .collect();
            go_tx.send(()).unwrap();
            a.detached(|| {
                b.detached(|| {
                    worker.join().unwrap();
                    stop.store(true, SeqCst);
                    for c in collectors {
                        c.join().unwrap();
                    }
                })
            });
            a.collect();
            b.collect();
            assert_eq!(log.drops(), (round + 1) * 2 * N, "round {round}");
        }
        assert_eq!((settled_live(&a), settled_live(&b)), (0, 0));
        assert!(ra.lock().unwrap().is_empty(), "{:?}", ra.lock().unwrap());
        assert!(rb.lock().unwrap().is_empty(), "{:?}", rb.lock().unwrap());
    });
}

/// A value whose `Trace` panics when told to.
struct Bomb {
    armed: Arc<AtomicBool>,
    next: Mutex<Option<Gc<Bomb>>>,
    log: Arc<Log>,
}

// SAFETY: visits its one handle, through the lock; panics before visiting anything.
unsafe impl Trace for Bomb {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if self.armed.load(SeqCst) {
            panic!("bomb");
        }
        self.next.trace(tracer);
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        self.log.drops.fetch_add(1, SeqCst);
    }
}

/// 4. A collection whose `Trace` panics after the orphans were merged (the merge's walk runs
///    before the snapshot, and no user code runs in it) is abandoned; the next collection
///    finds them merged. Then the orphans' handles go on other threads, and the cycle is
///    collected once disarmed.
#[test]
fn panicking_trace_after_the_orphans_merged() {
    let heap = Heap::new();
    let reports = hooked(&heap);
    let log = Log::new();
    let armed = Arc::new(AtomicBool::new(false));
    let (h, l, arm) = (heap.clone(), log.clone(), armed.clone());
    let (bomb, leaves) = on_worker(move || {
        let a = h.alloc(Bomb {
            armed: arm.clone(),
            next: Mutex::new(None),
            log: l.clone(),
        });
        let b = h.alloc(Bomb {
            armed: arm,
            next: Mutex::new(Some(a.clone())),
            log: l.clone(),
        });
        *a.next.lock().unwrap() = Some(b);
        let leaves: Vec<_> = (0..5).map(|_| leaf(&h, &l)).collect();
        // `a` dropped while the cycle is armed: a possible root for the panicking collection.
        (a, leaves)
    });
    drop(bomb);
    armed.store(true, SeqCst);
    assert_eq!(heap.collect(), 0, "abandoned");
    assert_eq!(reports.lock().unwrap().len(), 1);
    assert_eq!(heap.collect(), 0, "abandoned again, the ids walked again");
    assert_eq!(reports.lock().unwrap().len(), 2);
    for l in &leaves {
        assert_eq!(Gc::strong_count(l), 1);
    }
    let clones: Vec<_> = leaves.to_vec();
    on_worker(move || drop(clones));
    assert_eq!(log.drops(), 0);
    on_worker(move || drop(leaves));
    assert_eq!(log.drops(), 5);
    armed.store(false, SeqCst);
    assert_eq!(heap.collect(), 2);
    assert_eq!(log.drops(), 7);
    assert_eq!(settled_live(&heap), 0);
}

/// 5. Objects made in a detached section (merged at birth) mixed with owned ones in one chain,
///    by a worker that then exits; a second worker drops the head inside `Heap::detached`
///    (through the gate: a chain of deaths of merged and orphaned links) while another thread
///    collects in a loop.
#[test]
fn detached_allocations_and_orphans_in_one_chain() {
    within("detached chain", || {
        let heap = Heap::new();
        let log = Log::new();
        let n = reps(200, 6);
        let (h, l) = (heap.clone(), log.clone());
        let head = on_worker(move || {
            let mut head: Option<Gc<Link2>> = None;
            for i in 0..n {
                let next = head.take();
                let make = || {
                    h.alloc(Link2 {
                        next,
                        log: l.clone(),
                    })
                };
                head = Some(if i % 2 == 0 { h.detached(make) } else { make() });
            }
            head.unwrap()
        });
        let stop = Arc::new(AtomicBool::new(false));
        let collector = {
            let (h, stop) = (heap.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(SeqCst) {
                    h.collect();
                    h.detached(thread::yield_now);
                }
            })
        };
        let h = heap.clone();
        // Dropped inside a detached section: through the gate, a death chain of merged and
        // orphaned links.
        heap.detached(|| {
            on_worker(move || h.detached(move || drop(head)));
            stop.store(true, SeqCst);
            collector.join().unwrap();
        });
        assert_eq!(log.drops(), n);
        assert_eq!(settled_live(&heap), 0);
    });
}

#[derive(Trace)]
struct Link2 {
    next: Option<Gc<Link2>>,
    #[reap(skip)]
    log: Arc<Log>,
}

impl Drop for Link2 {
    fn drop(&mut self) {
        self.log.drops.fetch_add(1, SeqCst);
    }
}

/// 6. The `gc` surface with exited threads: `get_objects`, `get_referrers`, `freeze` and the
///    freeze count, before and after the collection that merges; the handles the walks hand
///    out count.
#[test]
fn gc_surface_walks_over_orphans() {
    let heap = Heap::new();
    let log = Log::new();
    let (h, l) = (heap.clone(), log.clone());
    let (a, b) = on_worker(move || {
        let a = leaf(&h, &l);
        let b = leaf(&h, &l);
        *b.slot.lock().unwrap() = Some(a.clone());
        (a, b)
    });
    let objs = heap.get_objects();
    assert_eq!(objs.len(), 2);
    assert_eq!(Gc::strong_count(&a), 3, "b's, ours, get_objects'");
    let refs = heap.get_referrers(&a);
    assert_eq!(refs.len(), 1);
    heap.freeze();
    assert_eq!(heap.get_freeze_count(), 2);
    assert_eq!(heap.collect(), 0);
    assert_eq!(heap.get_objects().len(), 0, "frozen");
    heap.unfreeze();
    assert_eq!(heap.collect(), 0);
    assert_eq!(Gc::strong_count(&a), 3);
    drop((objs, refs));
    assert_eq!(Gc::strong_count(&a), 2);
    // The cycle closed on another thread, the last handles dropped on two more.
    let b2 = b.clone();
    let a2 = a.clone();
    on_worker(move || *a2.slot.lock().unwrap() = Some(b2));
    on_worker(move || drop(a));
    on_worker(move || drop(b));
    assert_eq!(log.drops(), 0);
    assert_eq!(heap.collect(), 2);
    assert_eq!(log.drops(), 2);
    assert_eq!(settled_live(&heap), 0);
}

/// A node whose `Drop` moves the handle it holds into a stash (a zombie, if that handle's
/// object is garbage of the same collection).
#[derive(Trace)]
struct Zomb {
    next: Mutex<Option<Gc<Zomb>>>,
    #[reap(skip)]
    stash: Arc<Mutex<Vec<Gc<Zomb>>>>,
    #[reap(skip)]
    log: Arc<Log>,
}

impl Drop for Zomb {
    fn drop(&mut self) {
        self.log.drops.fetch_add(1, SeqCst);
        if let Some(n) = self.next.get_mut().unwrap().take() {
            self.stash.lock().unwrap().push(n);
        }
    }
}

/// 7. A finalizer resurrects an orphan (its last drop on main, after the collection that
///    merged it) by a thread it spawns, which clones, stores and drops the temporary handle's
///    clone and exits; and a worker's collected cycle leaves a zombie (a `Drop` kept its peer)
///    that is dropped after more collections, on another thread.
#[test]
fn resurrections_and_zombies_of_orphans() {
    let heap = Heap::new();
    let reports = hooked(&heap);
    let log = Log::new();
    let stash: Arc<Mutex<Vec<Gc<Fin>>>> = Arc::default();
    let zstash: Arc<Mutex<Vec<Gc<Zomb>>>> = Arc::default();
    for round in 0..reps(10, 2) as u32 {
        let (h, l, st, zs) = (heap.clone(), log.clone(), stash.clone(), zstash.clone());
        let (x, cyc_a) = on_worker(move || {
            let x = fin(&h, round, &l);
            let st2 = st.clone();
            set_fin(&x, move |g| {
                let g = g.clone();
                let st = st2.clone();
                thread::spawn(move || {
                    let c = g.clone();
                    st.lock().unwrap().push(c);
                    drop(g);
                })
                .join()
                .unwrap();
            });
            let a = h.alloc(Zomb {
                next: Mutex::new(None),
                stash: zs.clone(),
                log: l.clone(),
            });
            let b = h.alloc(Zomb {
                next: Mutex::new(Some(a.clone())),
                stash: zs,
                log: l.clone(),
            });
            *a.next.lock().unwrap() = Some(b);
            (x, a)
        });
        let r = round as usize;
        assert_eq!(heap.collect(), 0);
        drop(x);
        assert_eq!(log.fin(), r + 1, "x's finalizer");
        assert_eq!(stash.lock().unwrap().len(), 1, "x resurrected");
        assert_eq!(heap.collect(), 0);
        drop(cyc_a);
        assert_eq!(heap.collect(), 2, "the cycle");
        assert_eq!(log.drops(), 3 * r + 2);
        // Each `Drop` kept the other: two zombies (values dropped, counts 1).
        let zombies = std::mem::take(&mut *zstash.lock().unwrap());
        assert_eq!(zombies.len(), 2);
        assert_eq!(heap.collect(), 0);
        let z2 = zombies[0].clone();
        on_worker(move || drop(z2));
        assert_eq!(heap.collect(), 0);
        on_worker(move || drop(zombies));
        let st = std::mem::take(&mut *stash.lock().unwrap());
        assert_eq!(Gc::strong_count(&st[0]), 1);
        assert!(Gc::is_finalized(&st[0]));
        assert_eq!(heap.collect(), 0);
        on_worker(move || drop(st));
        assert_eq!(log.drops(), 3 * r + 3);
        assert_eq!(log.fin(), r + 1, "finalizers once");
    }
    assert_eq!(settled_live(&heap), 0);
    assert!(
        reports.lock().unwrap().is_empty(),
        "{:?}",
        reports.lock().unwrap()
    );
}

/// 8. The stress: waves of workers allocate chains, finalizable objects with weak references
///    and garbage cycles, hand handles to a pool and exit, while a collector thread loops
///    (ordinary and exhaustive collections), two mutators clone, upgrade and drop from the
///    pool (some inside `Heap::detached`), and one holds a `sync::Mutex` with pool handles
///    that it moves in and out. Every object dies once; nothing is left.
#[test]
fn waves_of_exiting_workers_against_collections_and_mutators() {
    within("waves", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let pool: Pool = Arc::default();
        // The weak references, kept until the end: a last drop while the owner (a worker)
        // lives is queued to it, and the death (and the callback, if the weak reference is
        // still alive) comes at its next safe point or exit.
        let weaks: Arc<Mutex<Vec<Weak<Fin>>>> = Arc::default();
        let box_: Gc<Boxed> = heap.alloc(Boxed {
            inner: reap::sync::Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicUsize::new(0));
        let mut helpers = Vec::new();
        {
            let (h, stop) = (heap.clone(), stop.clone());
            helpers.push(thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(SeqCst) {
                    if i % 4 == 3 {
                        h.collect_exhaustive();
                    } else {
                        h.collect();
                    }
                    i += 1;
                    h.detached(thread::yield_now);
                }
            }));
        }
        for m in 0..2 {
            let (h, stop, pool, weaks) = (heap.clone(), stop.clone(), pool.clone(), weaks.clone());
            helpers.push(thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(SeqCst) {
                    let taken = pool.lock().unwrap().pop();
                    if let Some((g, w)) = taken {
                        let u = w.upgrade().expect("held by g");
                        let c = g.clone();
                        if (i + m) % 2 == 0 {
                            h.detached(move || drop((g, u)));
                            drop(c);
                        } else {
                            drop((g, c));
                            drop(u);
                        }
                        weaks.lock().unwrap().push(w);
                    }
                    i += 1;
                    h.safepoint();
                    h.detached(thread::yield_now);
                }
            }));
        }
        {
            let (h, stop, pool, bx, weaks) = (
                heap.clone(),
                stop.clone(),
                pool.clone(),
                box_.clone(),
                weaks.clone(),
            );
            helpers.push(thread::spawn(move || {
                while !stop.load(SeqCst) {
                    let taken = pool.lock().unwrap().pop();
                    if let Some((g, w)) = taken {
                        bx.inner.lock().push(g);
                        let back = bx.inner.lock().pop();
                        h.detached(move || drop(back));
                        weaks.lock().unwrap().push(w);
                    }
                    h.detached(thread::yield_now);
                }
            }));
        }
        let waves = reps(15, 2);
        const WORKERS: usize = 3;
        const N: usize = 5;
        for wave in 0..waves {
            let ws: Vec<_> = (0..WORKERS)
                .map(|w| {
                    let (h, l, pool, made) =
                        (heap.clone(), log.clone(), pool.clone(), made.clone());
                    thread::spawn(move || {
                        let id = (wave * WORKERS + w) as u32 * 100;
                        let links = chain(&h, N, &l);
                        made.fetch_add(N, SeqCst);
                        for i in 0..N as u32 {
                            let f = fin(&h, id + i, &l);
                            let l2 = l.clone();
                            let wk = Weak::with_callback(&f, move |_| {
                                l2.cbs.fetch_add(1, SeqCst);
                            });
                            pool.lock().unwrap().push((f, wk));
                        }
                        made.fetch_add(N, SeqCst);
                        let (a, b) = (fin(&h, id + 90, &l), fin(&h, id + 91, &l));
                        *a.next.lock().unwrap() = Some(b.clone());
                        *b.next.lock().unwrap() = Some(a);
                        made.fetch_add(2, SeqCst);
                        // The chain goes with a pool entry's death (its `Drop` drops it).
                        let f = fin(&h, id + 95, &l);
                        made.fetch_add(1, SeqCst);
                        let keep = links.clone();
                        *f.on_drop.lock().unwrap() = Some(Box::new(move || drop(keep)));
                        let wk = Weak::new(&f);
                        pool.lock().unwrap().push((f, wk));
                        drop(links);
                    })
                })
                .collect();
            heap.detached(|| {
                for w in ws {
                    w.join().unwrap();
                }
            });
        }
        // Drain the pool.
        while !pool.lock().unwrap().is_empty() {
            heap.detached(thread::yield_now);
        }
        stop.store(true, SeqCst);
        heap.detached(|| {
            for t in helpers {
                t.join().unwrap();
            }
        });
        drop(box_);
        while heap.collect() > 0 {}
        assert_eq!(log.drops(), made.load(SeqCst));
        let fins = waves * WORKERS * (N + 3);
        assert_eq!(log.fin(), fins);
        assert_eq!(log.cbs(), waves * WORKERS * N);
        assert!(weaks.lock().unwrap().iter().all(|w| w.upgrade().is_none()));
        drop(weaks);
        assert_eq!(settled_live(&heap), 0);
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
    });
}

/// The pool of attack 8: handles and weak references workers hand out.
type Pool = Arc<Mutex<Vec<(Gc<Fin>, Weak<Fin>)>>>;

#[derive(Trace)]
struct Boxed {
    inner: reap::sync::Mutex<Vec<Gc<Fin>>>,
}

/// 9. A worker's exit races a collection directly: the worker drops its last local handles at
///    the end of its closure (owner fast path), hands clones out (shared count), and is joined
///    only after main has started collecting. Objects whose owner is leaving (slot marked,
///    id not yet listed) or gone are then dropped by a third thread during the collections.
#[test]
fn exit_races_collection_and_foreign_drops() {
    within("exit race", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let rounds = reps(100, 3);
        for round in 0..rounds {
            let bar = Arc::new(Barrier::new(3));
            let (tx, rx) = mpsc::channel::<Vec<Gc<Leaf>>>();
            let (h, l, b) = (heap.clone(), log.clone(), bar.clone());
            let worker = thread::spawn(move || {
                let objs: Vec<_> = (0..4).map(|_| leaf(&h, &l)).collect();
                let out = objs.to_vec();
                tx.send(out).unwrap();
                // The owner's handles dropped (its `local` now counts only the clones sent out).
                drop(objs);
                b.wait();
            });
            let out = rx.recv().unwrap();
            let (b, l2) = (bar.clone(), log.clone());
            let dropper = thread::spawn(move || {
                b.wait();
                let mut out = out;
                while let Some(o) = out.pop() {
                    let c = o.clone();
                    drop(o);
                    drop(c);
                    thread::yield_now();
                }
                let _ = l2;
            });
            bar.wait();
            heap.collect();
            worker.join().unwrap();
            heap.collect();
            dropper.join().unwrap();
            heap.collect();
            assert_eq!(log.drops(), (round + 1) * 4);
        }
        assert_eq!(settled_live(&heap), 0);
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
    });
}

/// 10. Weak references of orphans in `MAYBE_WEAK` whose owner's count is 1 (the only strong
///     handle left with the owner's count), upgraded on several threads while a collection
///     merges them; the strong handle dropped while the upgrades race; an upgrade that
///     fails must keep failing, and the object dies once with its callback once.
#[test]
fn weak_upgrades_of_orphans_race_the_merge_and_the_death() {
    within("weak orphans", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let rounds = reps(60, 2);
        for round in 0..rounds {
            let (h, l) = (heap.clone(), log.clone());
            let (g, w) = heap.detached(|| {
                on_worker(move || {
                    let g = fin(&h, round as u32, &l);
                    let l2 = l.clone();
                    let w = Weak::with_callback(&g, move |_| {
                        l2.cbs.fetch_add(1, SeqCst);
                    });
                    (g, w)
                })
            });
            let w = Arc::new(w);
            let bar = Arc::new(Barrier::new(4));
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let (w, bar) = (w.clone(), bar.clone());
                    let h = heap.clone();
                    thread::spawn(move || {
                        // Attached (an owner id): a finalizer run here keeps other threads'
                        // upgrades failing (SEMANTICS 8.3).
                        h.safepoint();
                        h.detached(|| bar.wait());
                        let mut dead = false;
                        for _ in 0..reps(50, 3) {
                            match w.upgrade() {
                                Some(u) => {
                                    assert!(!dead, "an upgrade succeeded after one failed");
                                    drop(u);
                                }
                                None => dead = true,
                            }
                        }
                    })
                })
                .collect();
            let (bar2, h) = (bar.clone(), heap.clone());
            let collector = thread::spawn(move || {
                bar2.wait();
                h.collect();
            });
            heap.detached(|| bar.wait());
            // Attached, racing the collection's merge of it.
            drop(g);
            heap.detached(|| {
                for t in ts {
                    t.join().unwrap();
                }
                collector.join().unwrap();
            });
            heap.collect();
            assert_eq!(log.fin(), round + 1);
            assert_eq!(log.drops(), round + 1);
            assert_eq!(log.cbs(), round + 1);
            assert!(w.upgrade().is_none());
        }
        assert_eq!(settled_live(&heap), 0);
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
    });
}

/// 11. Many threads exit between two collections (the list grows), and one thread's objects
///     are merged in each of several heaps: the ids of a heap it never allocated in, of one it
///     only cloned in, and of one it allocated in. Then every handle is dropped on main.
#[test]
fn many_exits_between_collections_and_heaps_touched_only_by_clones() {
    let heaps: Vec<Heap> = (0..3).map(|_| Heap::new()).collect();
    let log = Log::new();
    let base: Vec<Gc<Leaf>> = heaps.iter().map(|h| leaf(h, &log)).collect();
    let mut got = Vec::new();
    for i in 0..reps(40, 3) {
        let (hs, l, bs) = (heaps.clone(), log.clone(), base.clone());
        got.push(on_worker(move || {
            // Allocates in heap i % 3, clones in another, only safepoints in the third.
            let k = i % 3;
            let mine = leaf(&hs[k], &l);
            let c = bs[(k + 1) % 3].clone();
            hs[(k + 2) % 3].safepoint();
            let extra = mine.clone();
            (mine, extra, c)
        }));
    }
    for h in &heaps {
        assert_eq!(h.collect(), 0);
    }
    for (m, e, c) in &got {
        assert_eq!(Gc::strong_count(m), 2);
        assert!(Gc::ptr_eq(m, e));
        assert!(Gc::strong_count(c) >= 2);
    }
    let n = got.len();
    drop(got);
    assert_eq!(log.drops(), n);
    drop(base);
    assert_eq!(log.drops(), n + 3);
    for h in &heaps {
        assert_eq!(settled_live(h), 0);
    }
}

/// 13. `Heap::shutdown` after workers exited (their ids listed, never collected before): its
///     first exhaustive collection merges their objects and frees their cycles; what main
///     still holds lives on and dies at its last drop on another thread.
#[test]
fn shutdown_after_workers_exited() {
    let heap = Heap::new();
    let log = Log::new();
    let mut kept = Vec::new();
    for _ in 0..reps(4, 2) {
        let (h, l) = (heap.clone(), log.clone());
        kept.push(on_worker(move || {
            let a = leaf(&h, &l);
            let b = leaf(&h, &l);
            *a.slot.lock().unwrap() = Some(b.clone());
            // A garbage cycle once `b`'s handle goes.
            *b.slot.lock().unwrap() = Some(a);
            leaf(&h, &l)
        }));
    }
    let n = kept.len();
    assert_eq!(heap.shutdown(), Ok(2 * n));
    assert_eq!(log.drops(), 2 * n);
    for k in &kept {
        assert_eq!(Gc::strong_count(k), 1);
    }
    on_worker(move || drop(kept));
    assert_eq!(log.drops(), 3 * n);
    assert_eq!(settled_live(&heap), 0);
}

/// 12. (Found by attack 10 before its threads attached; not the orphan merge's.) A finalizer
///     run on a thread with no owner id on the heap (one that never attached to it) counted its
///     temporary reference in a merged count, so another thread's upgrade succeeded during the
///     finalizer (and, racing the last drop, could return `None` and then the object). Now
///     the reference is held as `count::RESURRECTING`, an owner no thread is: SEMANTICS 8.3
///     holds there too.
#[test]
fn upgrade_during_a_finalizer_on_a_thread_that_never_attached() {
    let heap = Heap::new();
    let log = Log::new();
    let g = fin(&heap, 1, &log);
    let w = Arc::new(Weak::new(&g));
    let seen: Arc<Mutex<Option<bool>>> = Arc::default();
    let (w2, seen2) = (w.clone(), seen.clone());
    set_fin(&g, move |_| {
        // Another thread upgrades while the finalizer runs.
        let w3 = w2.clone();
        let got = thread::spawn(move || w3.upgrade().map(drop).is_some())
            .join()
            .unwrap();
        *seen2.lock().unwrap() = Some(got);
    });
    // The last handle dropped on a thread that never attached to the heap.
    // (Merged first, so that the drop there is the death, not a queue entry to this thread.)
    let c = reap_tests::shared::merged(g);
    thread::spawn(move || drop(c)).join().unwrap();
    assert_eq!(log.fin(), 1);
    assert_eq!(
        *seen.lock().unwrap(),
        Some(false),
        "another thread's upgrade returned the dying object during its finalizer"
    );
    assert_eq!(log.drops(), 1);
    assert!(w.upgrade().is_none());
    // The weak reference is an object of the heap too.
    drop(w);
    assert_eq!(settled_live(&heap), 0);
}
