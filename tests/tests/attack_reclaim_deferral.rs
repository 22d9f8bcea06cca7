//! Adversarial review of the reclaim's deferred drops (ebcf6a6, b730908): `count::dec_hold`'s
//! give-back with a plain load, the drops of the collecting thread counted in a reclaiming
//! object's `local` (`heap::dec_ref_reclaiming`, `GcState::reclaimer`, `GC_RECLAIM`), pause 1's
//! optimistic poison, and the owner-first `heap::inc_ref`.
//!
//! One test failed against the code it was written for:
//! `detached_collector_shares_its_reclaimer_id_with_other_detached_threads` (and, under Miri,
//! `detached_reclaimer_takes_another_threads_drop_without_synchronisation`). A thread that
//! collects inside another heap's detached section has the id `NO_OWNER`, which every thread
//! in such a section shares, and `reclaim` named it the reclaimer: another detached thread's
//! drops of garbage handles were then counted as the collector's deferred drops (a leak, and
//! under Miri a free not ordered after that thread's reads). Fixed: `reclaim` names no
//! reclaimer when its id is `NO_OWNER`, and `heap::dec_ref_reclaiming` asserts it in debug
//! builds.
//!
//! Natively: `cargo test -p reap-tests --test attack_reclaim_deferral`.
//! Miri: `MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p reap-tests --test attack_reclaim_deferral`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use reap::sync::{Gc, Heap, Weak};
use reap::{Trace, Tracer};
use reap_tests::shared::{fin_with, set_fin, settled_live, within, Fin, Log};

/// What a [`Node`]'s `Drop` runs, given the handles the node held (before they are dropped).
type Action = Box<dyn FnOnce(&[Gc<Node>]) + Send>;

/// A node of a test graph: its links (traced), and a one-shot action its `Drop` runs on them.
struct Node {
    links: Mutex<Vec<Gc<Node>>>,
    action: Mutex<Option<Action>>,
    drops: Arc<AtomicUsize>,
}

// SAFETY: visits the handles it owns, through its lock; nothing else.
unsafe impl Trace for Node {
    fn trace(&self, t: &mut Tracer<'_>) {
        self.links.trace(t);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
        let links = std::mem::take(self.links.get_mut().unwrap());
        if let Some(a) = self.action.get_mut().unwrap().take() {
            a(&links);
        }
        // The links go one by one (each a drop the reclaim may defer).
        drop(links);
    }
}

fn node(heap: &Heap, drops: &Arc<AtomicUsize>) -> Gc<Node> {
    heap.alloc(Node {
        links: Mutex::new(Vec::new()),
        action: Mutex::new(None),
        drops: drops.clone(),
    })
}

fn set_action(n: &Gc<Node>, a: impl FnOnce(&[Gc<Node>]) + Send + 'static) {
    *n.action.lock().unwrap() = Some(Box::new(a));
}

/// A hub and `spokes` spokes, each spoke holding `per` handles to the hub and the hub holding
/// every spoke; returns (hub, spokes). Garbage once the returned handles go.
fn star(
    heap: &Heap,
    drops: &Arc<AtomicUsize>,
    spokes: usize,
    per: usize,
) -> (Gc<Node>, Vec<Gc<Node>>) {
    let hub = node(heap, drops);
    let ss: Vec<Gc<Node>> = (0..spokes)
        .map(|_| {
            let s = node(heap, drops);
            s.links
                .lock()
                .unwrap()
                .extend((0..per).map(|_| hub.clone()));
            s
        })
        .collect();
    hub.links.lock().unwrap().extend(ss.iter().cloned());
    (hub, ss)
}

// ---------------------------------------------------------------------------------------------
// FINDING: the reclaimer's id is `NO_OWNER` when the collecting thread is inside another heap's
// detached section, and every other thread inside some detached section shares that id.

/// The collecting thread runs `heap.collect()` inside `side.detached(..)`: its hot id is
/// `NO_OWNER`, and `thread::attach` (`cache_attachment`) returns that as `me`, so `reclaim`
/// stores `GcState::reclaimer = NO_OWNER`. Another thread attached to `heap`, inside a detached
/// section of some other heap and with `heap` in its one-entry cache (it touched a handle of
/// `heap` there), also has hot id `NO_OWNER`: `dec_ref_reclaiming` takes its drops of the
/// garbage's handles (clones a `Drop` of the reclaim sends it) for the reclaimer's, and both
/// threads do their unsynchronised `local.store(local.load() + 1)` on the same header. A lost
/// update leaves the hub's count one too high for ever (a leak), and a drop that lands after
/// the give-back read `local` is never subtracted (a leak, with `local` != 0 on a merged
/// zombie); when the give-back does see the other thread's relaxed store it frees the object
/// with no happens-before from that thread's accesses (a data race with the deallocation,
/// which Miri reports).
#[test]
fn detached_collector_shares_its_reclaimer_id_with_other_detached_threads() {
    star_with_clones_dropped_by_a_detached_thread(true);
}

/// The control of the test above: the same, the collection run outside any detached section
/// (the reclaimer's id is the collecting thread's own). Passes.
#[test]
fn attached_collector_control() {
    star_with_clones_dropped_by_a_detached_thread(false);
}

fn star_with_clones_dropped_by_a_detached_thread(collector_detached: bool) {
    within("NO_OWNER reclaimer", move || {
        let heap = Heap::new();
        let side = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let reps = if cfg!(miri) { 2 } else { 40 };
        let (spokes, per, sent) = if cfg!(miri) { (6, 3, 3) } else { (3000, 8, 8) };
        for _ in 0..reps {
            let (tx, rx) = mpsc::channel::<Vec<Gc<Node>>>();
            let ready = Arc::new(AtomicBool::new(false));
            let u = {
                let (heap, side, ready, drops) =
                    (heap.clone(), side.clone(), ready.clone(), drops.clone());
                thread::spawn(move || {
                    // Attached to `heap` (it owns `probe`).
                    let probe = node(&heap, &drops);
                    side.detached(|| {
                        // A handle operation of `heap` inside the detached section: the cache
                        // now names `heap`, with the hot id `NO_OWNER`.
                        drop(probe.clone());
                        ready.store(true, SeqCst);
                        // Attached to `heap`: it must reach safe points while it waits.
                        loop {
                            match rx.try_recv() {
                                Ok(batch) => {
                                    for h in batch {
                                        drop(h);
                                    }
                                }
                                Err(mpsc::TryRecvError::Empty) => {
                                    heap.safepoint();
                                    thread::yield_now();
                                }
                                Err(mpsc::TryRecvError::Disconnected) => break,
                            }
                        }
                    });
                    drop(probe);
                })
            };
            let (hub, ss) = star(&heap, &drops, spokes, per);
            for s in &ss {
                let tx = tx.clone();
                set_action(s, move |links| {
                    // Clones of the hub (garbage) handed to the other thread, which drops
                    // them while this reclaim drops the rest.
                    let batch: Vec<Gc<Node>> = (0..sent).map(|_| links[0].clone()).collect();
                    let _ = tx.send(batch);
                });
            }
            drop(tx);
            drop((hub, ss));
            while !ready.load(SeqCst) {
                heap.safepoint();
                thread::yield_now();
            }
            let n = if collector_detached {
                side.detached(|| heap.collect())
            } else {
                heap.collect()
            };
            u.join().unwrap();
            assert_eq!(n, spokes + 1, "the star is garbage");
        }
        assert_eq!(
            drops.load(SeqCst),
            reps * (spokes + 2),
            "every value dropped once"
        );
        assert_eq!(settled_live(&heap), 0, "every object of the stars freed");
    });
}

/// The finding above without a race on `local` itself, for Miri: a garbage 2-cycle (allocated
/// inside `heap.detached`, so its blocks come from the global allocator and their free is a
/// deallocation Miri checks); the first `Drop` of the reclaim sends a clone of its peer to the
/// other thread (hot id `NO_OWNER`, `heap` cached) and waits until a *relaxed* flag says it
/// was dropped. That drop is taken for the reclaimer's and counted in the peer's `local`
/// (with no read-modify-write of `counts`, so nothing the give-back's `Acquire` load
/// synchronises with); the give-back then reads the other thread's store and frees the peer
/// with no happens-before from that thread's accesses to its header: Miri reports a data race
/// between the other thread's atomic store to `local` and the deallocation (or, if its relaxed
/// load reads the older value, the peer leaks). Natively (x86) it passes.
#[test]
fn detached_reclaimer_takes_another_threads_drop_without_synchronisation() {
    within("NO_OWNER reclaimer, relaxed", || {
        let heap = Heap::new();
        let side = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let reps = if cfg!(miri) { 1 } else { 50 };
        for _ in 0..reps {
            let (tx, rx) = mpsc::channel::<Gc<Node>>();
            let ready = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicBool::new(false));
            let u = {
                let (heap, side, ready, done, drops) = (
                    heap.clone(),
                    side.clone(),
                    ready.clone(),
                    done.clone(),
                    drops.clone(),
                );
                thread::spawn(move || {
                    let probe = node(&heap, &drops);
                    side.detached(|| {
                        drop(probe.clone());
                        ready.store(true, SeqCst);
                        loop {
                            match rx.try_recv() {
                                Ok(h) => {
                                    drop(h);
                                    done.store(true, Relaxed);
                                }
                                Err(mpsc::TryRecvError::Empty) => {
                                    heap.safepoint();
                                    thread::yield_now();
                                }
                                Err(mpsc::TryRecvError::Disconnected) => break,
                            }
                        }
                    });
                    drop(probe);
                })
            };
            let (x, y) = heap.detached(|| (node(&heap, &drops), node(&heap, &drops)));
            x.links.lock().unwrap().push(y.clone());
            y.links.lock().unwrap().push(x.clone());
            let first = Arc::new(AtomicBool::new(false));
            for n in [&x, &y] {
                let (tx, first, done) = (tx.clone(), first.clone(), done.clone());
                set_action(n, move |links| {
                    if !first.swap(true, SeqCst) {
                        let _ = tx.send(links[0].clone());
                        while !done.load(Relaxed) {
                            thread::yield_now();
                        }
                    }
                });
            }
            drop(tx);
            drop((x, y));
            while !ready.load(SeqCst) {
                heap.safepoint();
                thread::yield_now();
            }
            let n = side.detached(|| heap.collect());
            u.join().unwrap();
            assert_eq!(n, 2);
        }
        assert_eq!(drops.load(SeqCst), reps * 3);
        assert_eq!(settled_live(&heap), 0);
    });
}

/// The same `me == NO_OWNER` of a collection run inside another heap's detached section also
/// reaches `weak::clear_for_collection`'s `count::try_inc(w, me)` on a weak-reference object the
/// collecting thread owns: its callback must still run. (It does: found nothing.)
#[test]
fn detached_collector_runs_the_callbacks_of_its_own_weak_references() {
    within("detached collector's callbacks", || {
        let heap = Heap::new();
        let side = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let cbs = Arc::new(AtomicUsize::new(0));
        let (x, y) = (node(&heap, &drops), node(&heap, &drops));
        x.links.lock().unwrap().push(y.clone());
        y.links.lock().unwrap().push(x.clone());
        let c = cbs.clone();
        let w = Weak::with_callback(&x, move |_| {
            c.fetch_add(1, SeqCst);
        });
        drop((x, y));
        assert_eq!(side.detached(|| heap.collect()), 2);
        assert!(w.upgrade().is_none());
        assert_eq!(
            cbs.load(SeqCst),
            1,
            "the live weak reference's callback ran"
        );
        drop(w);
        assert_eq!(settled_live(&heap), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Attacks that found nothing (kept as regression tests).

/// Zombies kept by the reclaim's `Drop`s: clones of garbage stored outside, weak references
/// (with and without callbacks) made to garbage, `Gc::strong_count` read on the deferred
/// objects, upgrades; then the zombies dropped by a thread that never attached to the heap.
#[test]
fn drops_keep_zombies_weak_refs_and_read_counts() {
    within("zombies, weak refs, counts", || {
        let heap = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let cbs = Arc::new(AtomicUsize::new(0));
        let kept: Arc<Mutex<Vec<Gc<Node>>>> = Arc::default();
        let weaks: Arc<Mutex<Vec<Weak<Node>>>> = Arc::default();
        let counts: Arc<Mutex<Vec<usize>>> = Arc::default();
        let reps = if cfg!(miri) { 2 } else { 50 };
        for _ in 0..reps {
            // A ring of 4, each also holding its successor twice.
            let ring: Vec<Gc<Node>> = (0..4).map(|_| node(&heap, &drops)).collect();
            for i in 0..4 {
                let next = ring[(i + 1) % 4].clone();
                ring[i]
                    .links
                    .lock()
                    .unwrap()
                    .extend([next.clone(), next.clone(), next]);
            }
            for (i, n) in ring.iter().enumerate() {
                let (kept, weaks, counts, cbs) =
                    (kept.clone(), weaks.clone(), counts.clone(), cbs.clone());
                set_action(n, move |links| {
                    let peer = &links[0];
                    // The hold and at least this node's three handles (dropped or deferred
                    // afterwards), plus what earlier `Drop`s kept.
                    counts.lock().unwrap().push(Gc::strong_count(peer));
                    let c = cbs.clone();
                    let w = if i % 2 == 0 {
                        Weak::with_callback(peer, move |_| {
                            c.fetch_add(1, SeqCst);
                        })
                    } else {
                        Weak::new(peer)
                    };
                    // An upgrade of a garbage object's new weak reference: whatever it
                    // answers, its handle goes at once.
                    drop(w.upgrade());
                    weaks.lock().unwrap().push(w);
                    if i == 1 {
                        kept.lock().unwrap().push(peer.clone());
                    }
                });
            }
            drop(ring);
            assert_eq!(heap.collect(), 4);
            let zombies = std::mem::take(&mut *kept.lock().unwrap());
            assert_eq!(zombies.len(), 1);
            assert_eq!(Gc::strong_count(&zombies[0]), 1, "a zombie's only handle");
            // Dropped by a thread that never attached to the heap.
            thread::spawn(move || drop(zombies)).join().unwrap();
            let ws = std::mem::take(&mut *weaks.lock().unwrap());
            for w in &ws {
                assert!(w.upgrade().is_none(), "every referent freed");
            }
            drop(ws);
        }
        assert!(counts.lock().unwrap().iter().all(|&c| c >= 2));
        assert_eq!(drops.load(SeqCst), 4 * reps);
        assert_eq!(cbs.load(SeqCst), 2 * reps, "each callback once");
        assert_eq!(settled_live(&heap), 0);
    });
}

/// A `Drop` of the reclaim collects the same heap (nested: 0) and another heap whose garbage
/// holds handles to this heap's garbage (the nested reclaim drops them; the other heap's
/// reclaimer is this thread too). Both heaps end empty.
#[test]
fn reclaims_drop_collects_the_same_heap_and_another() {
    within("nested collections", || {
        let a = Heap::new();
        let b = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let nested: Arc<Mutex<Vec<usize>>> = Arc::default();
        let reps = if cfg!(miri) { 2 } else { 30 };
        for _ in 0..reps {
            let (hub, ss) = star(&a, &drops, 5, 2);
            // A garbage 2-cycle of `b` whose nodes hold the hub of `a`.
            let (x, y) = (node(&b, &drops), node(&b, &drops));
            x.links.lock().unwrap().extend([y.clone(), hub.clone()]);
            y.links.lock().unwrap().extend([x.clone(), hub.clone()]);
            let (a2, b2, nested2) = (a.clone(), b.clone(), nested.clone());
            set_action(&ss[0], move |links| {
                // The hub into `b`'s garbage, which a second cycle there keeps.
                let (p, q) = (
                    node(&b2, &Arc::new(AtomicUsize::new(0))),
                    node(&b2, &Arc::new(AtomicUsize::new(0))),
                );
                p.links
                    .lock()
                    .unwrap()
                    .extend([q.clone(), links[0].clone(), links[1].clone()]);
                q.links.lock().unwrap().push(p.clone());
                drop((p, q));
                nested2.lock().unwrap().push(a2.collect());
                nested2.lock().unwrap().push(b2.collect());
            });
            drop((x, y, hub, ss));
            // `b`'s first cycle holds the hub, so `a` has nothing to collect yet.
            assert_eq!(a.collect(), 0);
            assert_eq!(b.collect(), 2);
            assert_eq!(a.collect(), 6);
        }
        let n = nested.lock().unwrap().clone();
        assert!(n.chunks(2).all(|c| c == [0, 2]), "nested results {n:?}");
        assert_eq!(drops.load(SeqCst), reps * 8);
        assert_eq!(settled_live(&a), 0);
        assert_eq!(settled_live(&b), 0);
    });
}

/// Zombies of an earlier collection dropped by a later collection's reclaim on the same thread
/// (and a later one's `Drop` keeping zombies of the earlier ones' peers).
#[test]
fn earlier_zombies_dropped_by_a_later_reclaim() {
    within("zombies across collections", || {
        let heap = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let carried: Arc<Mutex<Vec<Gc<Node>>>> = Arc::default();
        let reps = if cfg!(miri) { 3 } else { 40 };
        for _ in 0..reps {
            let (hub, ss) = star(&heap, &drops, 3, 2);
            let carried2 = carried.clone();
            set_action(&ss[1], move |links| {
                // Drops the earlier collection's zombies here (in this reclaim), and keeps a
                // zombie of this one for the next.
                let old = std::mem::take(&mut *carried2.lock().unwrap());
                drop(old);
                carried2
                    .lock()
                    .unwrap()
                    .extend([links[0].clone(), links[1].clone()]);
            });
            drop((hub, ss));
            assert_eq!(heap.collect(), 4);
        }
        drop(std::mem::take(&mut *carried.lock().unwrap()));
        assert_eq!(drops.load(SeqCst), reps * 4);
        assert_eq!(settled_live(&heap), 0);
    });
}

/// Finalizers owed (pause 1 poisons, then unpoisons): one resurrects its object, whose value
/// must be whole afterwards (not poisoned); the rest is poisoned by pause 2, and its `Drop`s
/// keep clones of what is still garbage.
#[test]
fn finalizer_resurrects_and_pause_two_poisons_the_rest() {
    within("resurrection", || {
        let heap = Heap::new();
        let log = Log::new();
        let saved: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
        let zombies: Arc<Mutex<Vec<Gc<Fin>>>> = Arc::default();
        let reps = if cfg!(miri) { 2 } else { 30 };
        for r in 0..reps {
            let z2 = zombies.clone();
            let a = fin_with(&heap, 1, &log, None, None);
            let b = fin_with(
                &heap,
                2,
                &log,
                None,
                Some(Box::new(move || {
                    // Nothing to keep: `b`'s own handle is gone with its value.
                    let _ = &z2;
                })),
            );
            let c = fin_with(&heap, 3, &log, None, None);
            // a -> b -> c -> a, and b resurrects a.
            *a.next.lock().unwrap() = Some(b.clone());
            *b.next.lock().unwrap() = Some(c.clone());
            *c.next.lock().unwrap() = Some(a.clone());
            let s2 = saved.clone();
            set_fin(&b, move |_| {
                let _ = &s2;
            });
            let s3 = saved.clone();
            set_fin(&a, move |this| {
                *s3.lock().unwrap() = Some(this.clone());
            });
            drop((a, b, c));
            // Everything reachable from `a` survives: none is collected.
            assert_eq!(heap.collect(), 0, "rep {r}");
            let a = saved.lock().unwrap().take().expect("resurrected");
            // The value is whole.
            assert_eq!(a.id, 1);
            let b = a.next.lock().unwrap().clone().unwrap();
            assert_eq!(b.id, 2);
            // Break it again: now every finalizer has run, the next collection frees it in
            // one pause (poisoned in pause 1).
            drop((a, b));
            assert_eq!(heap.collect(), 3, "rep {r}");
        }
        assert_eq!(log.fin(), reps * 3);
        assert_eq!(log.drops(), reps * 3);
        drop(std::mem::take(&mut *zombies.lock().unwrap()));
        assert_eq!(settled_live(&heap), 0);
    });
}

/// A garbage object's `Drop` panics with a handle to garbage as its payload; the unraisable
/// hook keeps a clone of it (a zombie), dropped later on another thread.
#[test]
fn panic_payload_carries_a_garbage_handle() {
    within("panic payload", || {
        let heap = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let kept: Arc<Mutex<Vec<Gc<Node>>>> = Arc::default();
        let k2 = kept.clone();
        heap.set_unraisable_hook(Some(Arc::new(move |u: &reap::Unraisable| {
            if let Some(g) = u.payload().and_then(|p| p.downcast_ref::<Gc<Node>>()) {
                k2.lock().unwrap().push(g.clone());
            }
        })));
        let reps = if cfg!(miri) { 2 } else { 30 };
        for _ in 0..reps {
            let (hub, ss) = star(&heap, &drops, 3, 2);
            set_action(&ss[2], |links| std::panic::panic_any(links[0].clone()));
            drop((hub, ss));
            assert_eq!(heap.collect(), 4);
        }
        let k = std::mem::take(&mut *kept.lock().unwrap());
        assert_eq!(k.len(), reps);
        thread::spawn(move || drop(k)).join().unwrap();
        assert_eq!(drops.load(SeqCst), reps * 4);
        assert_eq!(settled_live(&heap), 0);
    });
}

/// A reclaim's `Drop` detaches from the heap being reclaimed (its drops of garbage handles
/// then take the gate, undeferred) and from another heap, dropping clones of garbage there.
#[test]
fn reclaims_drop_detaches() {
    within("detached drops in reclaim", || {
        let heap = Heap::new();
        let side = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let reps = if cfg!(miri) { 2 } else { 30 };
        for _ in 0..reps {
            let (hub, ss) = star(&heap, &drops, 4, 3);
            let (h2, s2) = (heap.clone(), side.clone());
            set_action(&ss[0], move |links| {
                let c: Vec<Gc<Node>> = (0..3).map(|_| links[0].clone()).collect();
                h2.detached(|| {
                    let more = c[0].clone();
                    drop(c);
                    s2.detached(|| drop(more));
                });
            });
            let s3 = side.clone();
            set_action(&ss[1], move |links| {
                let c = links[0].clone();
                s3.detached(|| {
                    let d = c.clone();
                    assert!(Gc::strong_count(&d) >= 3);
                    drop(c);
                    drop(d);
                });
            });
            drop((hub, ss));
            assert_eq!(heap.collect(), 5);
        }
        assert_eq!(drops.load(SeqCst), reps * 5);
        assert_eq!(settled_live(&heap), 0);
    });
}

/// Garbage allocated by threads that have exited (owners gone), collected while other threads
/// drop zombie clones the reclaim's `Drop`s send them.
#[test]
fn garbage_of_exited_owners_with_zombies_sent_away() {
    within("exited owners", || {
        let heap = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let reps = if cfg!(miri) { 2 } else { 30 };
        for _ in 0..reps {
            let (tx, rx) = mpsc::channel::<Gc<Node>>();
            let taker = thread::spawn(move || rx.into_iter().count());
            let (h2, d2) = (heap.clone(), drops.clone());
            let (hub, ss) = thread::spawn(move || star(&h2, &d2, 6, 2)).join().unwrap();
            for s in &ss {
                let tx = tx.clone();
                set_action(s, move |links| {
                    let _ = tx.send(links[0].clone());
                    let _ = tx.send(links[1].clone());
                });
            }
            drop(tx);
            drop((hub, ss));
            assert_eq!(heap.collect(), 7);
            assert_eq!(taker.join().unwrap(), 12);
        }
        assert_eq!(drops.load(SeqCst), reps * 7);
        assert_eq!(settled_live(&heap), 0);
    });
}

/// `inc_ref`'s owner-first clone: a thread clones and drops objects it owns on `heap` from
/// inside a detached section of another heap (its hot id `NO_OWNER`, so through `heap`'s gate)
/// and attached with another heap in its cache, while another thread collects `heap` over and
/// over. Counts stay exact.
#[test]
fn owner_clones_while_another_heap_is_cached_or_detached() {
    within("owner-first clone", || {
        let heap = Heap::new();
        let side = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let collector = {
            let (heap, stop) = (heap.clone(), stop.clone());
            thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Relaxed) {
                    // (Miri is slow to reach safe points: a timeout is no finding.)
                    n += heap
                        .try_collect(std::time::Duration::from_secs(600))
                        .unwrap_or(0);
                    thread::yield_now();
                }
                n
            })
        };
        let reps = if cfg!(miri) { 2 } else { 3000 };
        let mine: Vec<Gc<Node>> = (0..4).map(|_| node(&heap, &drops)).collect();
        for i in 0..reps {
            // Garbage for the collector.
            let (p, q) = (node(&heap, &drops), node(&heap, &drops));
            p.links.lock().unwrap().push(q.clone());
            q.links.lock().unwrap().push(p.clone());
            drop((p, q));
            let o = &mine[i % 4];
            if i % 2 == 0 {
                side.detached(|| {
                    let c: Vec<_> = (0..3).map(|_| o.clone()).collect();
                    assert_eq!(Gc::strong_count(o), 4);
                    drop(c);
                });
            } else {
                // `side` in the cache, attached to both.
                drop(side.alloc(0_u8));
                let c: Vec<_> = (0..3).map(|_| o.clone()).collect();
                assert_eq!(Gc::strong_count(o), 4);
                drop(c);
                heap.safepoint();
            }
            assert_eq!(Gc::strong_count(o), 1);
        }
        stop.store(true, Relaxed);
        // Joined detached: this thread is attached and owns objects, so a collection the
        // collector is in the middle of waits for it to reach a safe point (a blocking wait
        // while attached is what `detached` is for).
        let n = heap.detached(|| collector.join().unwrap());
        drop(mine);
        // Automatic collections on this thread collect some cycles too.
        let n = n + heap.collect();
        assert!(n <= 2 * reps);
        assert_eq!(drops.load(SeqCst), 2 * reps + 4);
        assert_eq!(settled_live(&heap), 0);
    });
}
