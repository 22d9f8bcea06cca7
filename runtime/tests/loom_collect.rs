//! loom models of Shared-mode cycle collection (issue 13, item 5: models 9 to 12 of the loom
//! table in docs/ARCHITECTURE.md; and model 20, the hold's give-back).
//! `RUSTFLAGS="--cfg reap_loom" cargo test -p reap --release --test loom_collect`
//!
//! A thread attached to the heap stays attached until its thread-local destructor runs, which
//! loom does when the thread's closure returns (after `join` may already have returned): a
//! collection that starts meanwhile waits for that destructor to detach the thread. So no
//! model needs its mutators to end detached, and none reads `heap.live_objects()`; loom's leak
//! tracking checks that every object is freed.
#![cfg(reap_loom)]

mod common;

use common::{model_bounded, obj, setup, Counters, Obj};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use loom::sync::{Arc, Mutex};
use loom::thread;
use reap::sync::{Finalize, Gc, Heap, Weak};
use reap::{Trace, Tracer};

/// A node of a cycle. Its link sits behind a std mutex (traced through `try_lock`, the guard
/// kept until the verdict; loom's mutex has no `Trace`). No loom thread ever waits on it: it
/// is locked only by attached threads, and by the collector while they are stopped. Checks
/// that its value is dropped once.
#[derive(Trace)]
struct Node {
    next: std::sync::Mutex<Option<Gc<Node>>>,
    #[reap(skip)]
    dropped: Arc<AtomicUsize>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let before = self.dropped.fetch_add(1, SeqCst);
        assert_eq!(before, 0, "node dropped twice");
    }
}

fn node(heap: &Heap, dropped: &Arc<AtomicUsize>) -> Gc<Node> {
    heap.alloc(Node {
        next: std::sync::Mutex::new(None),
        dropped: dropped.clone(),
    })
}

/// Sets `from`'s link to `to`.
fn link(from: &Gc<Node>, to: &Gc<Node>) {
    *from.next.lock().unwrap() = Some(to.clone());
}

/// What the collector sees of the world while it is stopped: a tracked object whose `Trace`
/// (run only by a collection's snapshot, inside a pause) reads plain memory that mutators
/// write, and the strong count of an object a detached thread clones and drops.
struct Probe {
    /// Written by an attached mutator between its safe points; read here by `trace`. loom's
    /// cell tracking fails the model if a write is not ordered before or after the pause.
    touched: UnsafeCell<u32>,
    /// Written by the `Drop` of an object a detached thread frees (a death inside the
    /// heap's gate); read by `trace` as above.
    freed: Arc<UnsafeCell<u32>>,
    /// An object a detached thread clones and drops (its count changes inside the gate).
    watched: Gc<Obj>,
    /// The strong count of `watched` each time `trace` ran.
    seen: std::sync::Mutex<Vec<usize>>,
}

// SAFETY: the cells are written only by code the stop-the-world handshake orders against the
// pause in which they are read (that is what the model checks: loom fails it on any access
// the handshake leaves unordered); `seen` is a std mutex, `watched` a Shared handle.
unsafe impl Sync for Probe {}
// SAFETY: as above; every field may move between threads.
unsafe impl Send for Probe {}

// SAFETY: visits its one handle, `watched`.
unsafe impl Trace for Probe {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        // SAFETY: a read; loom checks it against the mutators' writes.
        let _ = self.touched.with(|p| unsafe { *p });
        // SAFETY: as above.
        let _ = self.freed.with(|p| unsafe { *p });
        self.seen
            .lock()
            .unwrap()
            .push(Gc::strong_count(&self.watched));
        tracer.visit_shared(&self.watched);
    }
}

/// An untracked object whose `Drop` writes a cell a [`Probe`] reads.
#[derive(Trace)]
struct Victim {
    #[reap(skip)]
    freed: Arc<UnsafeCell<u32>>,
}

// SAFETY: as for `Probe`: the cell's accesses are what the model checks.
unsafe impl Sync for Victim {}
// SAFETY: as above.
unsafe impl Send for Victim {}

impl Drop for Victim {
    fn drop(&mut self) {
        // SAFETY: a write; loom checks it against the pause's reads.
        self.freed.with_mut(|p| unsafe { *p += 1 });
    }
}

/// Model 9 (issue 13, 5.1): the stop-the-world handshake. The main thread collects; one
/// mutator is attached, one detached.
///
/// - The attached mutator writes plain memory of a tracked object (a [`Probe`]) between its
///   safe points (allocations, where it parks if asked) and drops what it allocated.
/// - The detached mutator, inside `Heap::detached`, clones and drops a handle of an object
///   the main thread owns, and allocates and drops a [`Victim`], whose allocation and death
///   (and `Drop`, writing memory a probe reads) run inside the heap's gate.
///
/// Invariants: no object is touched while the world is stopped: each probe's `Trace` (run
/// only in the pause) reads both written cells and loom's cell tracking finds every write
/// ordered before or after it; two probes traced at different points of the one pause see the
/// same strong count of the object the detached thread clones and drops. The collection frees
/// the self-cycle and nothing else; no deadlock (loom fails a model whose threads all block,
/// and the collector's timed waits are plain waits under loom, so a lost wake-up is a
/// deadlock); every thread resumes and finishes; loom's leak tracking sees every object freed.
/// Three threads: at a preemption bound of 2.
#[test]
fn stop_the_world_handshake() {
    model_bounded("stop_the_world_handshake", Some(2), || {
        let (heap, counters) = setup();
        let watched = obj(&heap, &counters);
        let freed = Arc::new(UnsafeCell::new(0));
        let probe = |heap: &Heap| {
            heap.alloc(Probe {
                touched: UnsafeCell::new(0),
                freed: freed.clone(),
                watched: watched.clone(),
                seen: std::sync::Mutex::new(Vec::new()),
            })
        };
        let (a, b) = (probe(&heap), probe(&heap));
        // Possible roots (a reference dropped), so that the pause traces them.
        drop((a.clone(), b.clone()));
        let cycle_dropped = Arc::new(AtomicUsize::new(0));
        let cycle = node(&heap, &cycle_dropped);
        link(&cycle, &cycle);
        drop(cycle);

        let (h1, a1) = (heap.clone(), a.clone());
        let attached = thread::spawn(move || {
            let dropped = Arc::new(AtomicUsize::new(0));
            // Attaches (a thread that never attached runs during a pause, as a detached one).
            h1.safepoint();
            // SAFETY: a write; the model checks it against the pause's reads.
            a1.touched.with_mut(|p| unsafe { *p += 1 });
            // An allocation: a safe point.
            let n = node(&h1, &dropped);
            // SAFETY: as above.
            a1.touched.with_mut(|p| unsafe { *p += 1 });
            drop(n);
            drop(a1);
            assert_eq!(dropped.load(SeqCst), 1);
        });
        let (h2, w2, f2) = (heap.clone(), watched.clone(), freed.clone());
        let detached = thread::spawn(move || {
            h2.detached(|| {
                // Made inside the gate (merged, owned by no thread), so its last drop here
                // runs its death inside the gate too.
                let victim = h2.alloc(Victim { freed: f2 });
                let c = w2.clone();
                assert_eq!(c.value, 7);
                drop(c);
                drop(w2);
                drop(victim);
            });
        });
        assert_eq!(heap.collect(), 1, "the self-cycle, and only it");
        assert_eq!(cycle_dropped.load(SeqCst), 1);
        attached.join().unwrap();
        detached.join().unwrap();
        // SAFETY: both mutators are joined.
        assert_eq!(freed.with(|p| unsafe { *p }), 1, "the victim dropped once");
        let (sa, sb) = (
            a.seen.lock().unwrap().clone(),
            b.seen.lock().unwrap().clone(),
        );
        assert_eq!(sa.len(), 1, "each probe traced once, in the one pause");
        assert_eq!(sb.len(), 1);
        assert_eq!(sa, sb, "a count changed while the world was stopped");
        drop((a, b, watched));
        heap.safepoint();
        assert_eq!(counters.dropped(), 1);
    });
}

/// A node of the 2-cycle of model 10: its `Trace` (run only inside a pause) notes whether
/// the mutator had dropped the cycle's outside handle by then.
struct Watched {
    next: std::sync::Mutex<Option<Gc<Watched>>>,
    /// Set by the mutator right after it drops the outside handle (no safe point between).
    gone: Arc<AtomicBool>,
    /// What each `trace` saw of `gone`.
    seen: Arc<std::sync::Mutex<Vec<bool>>>,
    dropped: Arc<AtomicUsize>,
    value: u32,
}

// SAFETY: visits its one handle, behind `next`.
unsafe impl Trace for Watched {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.seen.lock().unwrap().push(self.gone.load(SeqCst));
        self.next.trace(tracer);
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        assert_eq!(self.value, 7, "value read after it was dropped");
        self.value = 0;
        let before = self.dropped.fetch_add(1, SeqCst);
        assert!(before < 2, "a node dropped twice");
    }
}

/// Model 10 (issue 13, 5.2): a mutator moves the only outside handle of a 2-cycle across
/// safe points while the main thread collects. The handle starts in the mutator's closure
/// (the thread not yet attached), crosses its first attachment and an allocation, sits in a
/// shared slot across an explicit safe point, is taken back and read through (both nodes'
/// values), and is dropped; the mutator then sets `gone`, with no safe point between.
///
/// Invariants: the collection frees the cycle (2 objects) if and only if the handle was gone
/// at the pause (each node's `Trace`, run inside the pause, reads `gone`; both readings
/// agree), and frees nothing otherwise; no node is dropped while the handle reaches it (the
/// mutator reads both values after the collection may have run, and `Drop` zeroes them); a
/// second collection after the join frees what the first did not. Both outcomes occur (at a
/// bound of 3, 641 of the 2,843 executions free the cycle). Two threads, at a
/// preemption bound of 4 (unbounded runs past a million executions).
#[test]
fn handle_moved_across_safe_points_during_collection() {
    model_bounded(
        "handle_moved_across_safe_points_during_collection",
        Some(4),
        || {
            let (heap, _) = setup();
            let gone = Arc::new(AtomicBool::new(false));
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let dropped = Arc::new(AtomicUsize::new(0));
            let make = || {
                heap.alloc(Watched {
                    next: std::sync::Mutex::new(None),
                    gone: gone.clone(),
                    seen: seen.clone(),
                    dropped: dropped.clone(),
                    value: 7,
                })
            };
            let (a, b) = (make(), make());
            *a.next.lock().unwrap() = Some(b.clone());
            *b.next.lock().unwrap() = Some(a.clone());
            drop(b);
            // `a` is now the cycle's only outside handle.
            let slot: Arc<Mutex<Option<Gc<Watched>>>> = Arc::new(Mutex::new(None));
            let (h1, g1, s1) = (heap.clone(), gone.clone(), slot.clone());
            let mutator = thread::spawn(move || {
                // Attaches: a safe point.
                h1.safepoint();
                // An allocation: a safe point.
                drop(h1.alloc(0_u32));
                *s1.lock().unwrap() = Some(a);
                h1.safepoint();
                let a = s1.lock().unwrap().take().unwrap();
                let b = a.next.lock().unwrap().clone().unwrap();
                assert_eq!((a.value, b.value), (7, 7), "a node dropped while reachable");
                drop(b);
                drop(a);
                g1.store(true, SeqCst);
            });
            let first = heap.collect();
            mutator.join().unwrap();
            let seen_first: Vec<bool> = seen.lock().unwrap().clone();
            assert_eq!(seen_first.len(), 2, "both nodes traced in the pause");
            assert_eq!(seen_first[0], seen_first[1]);
            let expected = if seen_first[0] { 2 } else { 0 };
            assert_eq!(first, expected, "freed iff unreachable at the pause");
            assert_eq!(dropped.load(SeqCst), first);
            let second = heap.collect();
            assert_eq!(first + second, 2);
            assert_eq!(dropped.load(SeqCst), 2);
        },
    );
}

/// Model 11 (issue 13, 5.3): a self-cycle's last outside handle dropped on thread A (a thread
/// that never attached: its drop goes through the gate and queues the object to its owner),
/// a weak upgrade on thread B (attached), and a collection on thread C (the main thread),
/// with a weak-reference callback that takes runtime locks: it makes a weak reference to
/// another object (the weak-reference lock) and reads whether its own reference has a
/// callback (that reference's callback lock).
///
/// Invariants: the callback runs once (in whichever collection frees the cycle: C's, or the
/// one after the joins); every weak reference to the cycle is cleared before it runs (the
/// callback upgrades its own and B's, and gets `None`); an upgrade that succeeds sees the
/// value whole and the callback not run; the node is dropped once; no deadlock (a callback
/// taking the weak-reference lock would deadlock if the runtime held it). Both courses occur
/// (433 of the executions free the cycle in C's collection; most see B's upgrade succeed).
/// Three threads, at a preemption bound of 2.
#[test]
fn last_drop_upgrade_and_collection_with_locking_callback() {
    model_bounded(
        "last_drop_upgrade_and_collection_with_locking_callback",
        Some(2),
        || {
            let (heap, counters) = setup();
            let other = obj(&heap, &counters);
            let dropped = Arc::new(AtomicUsize::new(0));
            let x = node(&heap, &dropped);
            link(&x, &x);
            let calls = Arc::new(AtomicUsize::new(0));
            let w_b = Weak::new(&x);
            let (cc, wb2, o2) = (calls.clone(), w_b.clone(), other.clone());
            let w_cb = Weak::with_callback(&x, move |me: &Weak<Node>| {
                assert!(me.upgrade().is_none(), "called back before its clear");
                assert!(
                    wb2.upgrade().is_none(),
                    "another weak reference not cleared"
                );
                // Runtime locks: the weak-reference lock, then this reference's own.
                let made = Weak::new(&o2);
                assert!(made.upgrade().is_some());
                let _ = me.has_callback();
                let before = cc.fetch_add(1, SeqCst);
                assert_eq!(before, 0, "callback run twice");
            });
            let a = thread::spawn(move || drop(x));
            let (hb, cb, db) = (heap.clone(), calls.clone(), dropped.clone());
            let b = thread::spawn(move || {
                hb.safepoint();
                if let Some(g) = w_b.upgrade() {
                    assert_eq!(db.load(SeqCst), 0, "upgraded to a dropped node");
                    assert_eq!(cb.load(SeqCst), 0, "upgraded after the callback");
                    assert!(g.next.lock().unwrap().is_some());
                }
                w_b
            });
            let first = heap.collect();
            assert!(first <= 1, "the node at most");
            a.join().unwrap();
            let w_b = b.join().unwrap();
            let second = heap.collect();
            assert_eq!(first + second, 1, "the node, once");
            assert_eq!(calls.load(SeqCst), 1, "the callback once");
            assert_eq!(dropped.load(SeqCst), 1);
            assert!(w_b.upgrade().is_none() && w_cb.upgrade().is_none());
            drop((w_b, w_cb, other));
            heap.safepoint();
            assert_eq!(counters.dropped(), 1);
        },
    );
}

/// A self-cycle whose finalizer publishes its object into `slot` (resurrecting it).
#[derive(Trace)]
#[reap(sync_finalize)]
struct Phoenix {
    next: std::sync::Mutex<Option<Gc<Phoenix>>>,
    #[reap(skip)]
    slot: Arc<Mutex<Option<Gc<Phoenix>>>>,
    #[reap(skip)]
    counters: Arc<Counters>,
    #[reap(skip)]
    value: u32,
}

impl Finalize for Phoenix {
    fn finalize(this: &Gc<Self>) {
        let before = this.counters.finalized.fetch_add(1, SeqCst);
        assert_eq!(before, 0, "finalized twice");
        *this.slot.lock().unwrap() = Some(this.clone());
    }
}

impl Drop for Phoenix {
    fn drop(&mut self) {
        assert_eq!(self.value, 7, "value read after it was dropped");
        self.value = 0;
        assert_eq!(
            self.counters.finalized(),
            1,
            "dropped before its finalizer ran"
        );
        let before = self.counters.dropped.fetch_add(1, SeqCst);
        assert_eq!(before, 0, "dropped twice");
    }
}

/// Model 12 (issue 13, 5.4): a collection finds a self-cycle with a finalizer; after the
/// restart the finalizer (on the collecting thread) publishes the object into a slot that an
/// attached reader thread is reading: twice, with a safe point between, each time taking
/// what is there, reading through it and dropping it.
///
/// Invariants: the finalizer runs once, before the object is dropped; the reader sees the
/// value whole, finalized, not dropped; the resurrection check (pause 2) keeps the object if
/// and only if something reaches it then: the first collection frees it only if the reader
/// had already taken and dropped it, otherwise a second collection after the join does; the
/// object is dropped and freed once, the finalizer not run again. All three courses occur
/// (at a bound of 3: never taken; taken and the object kept by pause 2; taken and dropped
/// before pause 2, so that the first collection frees it). Two threads, at a preemption
/// bound of 4.
#[test]
fn finalizer_resurrects_into_structure_another_thread_reads() {
    model_bounded(
        "finalizer_resurrects_into_structure_another_thread_reads",
        Some(4),
        || {
            let (heap, counters) = setup();
            let slot = Arc::new(Mutex::new(None));
            let p = heap.alloc(Phoenix {
                next: std::sync::Mutex::new(None),
                slot: slot.clone(),
                counters: counters.clone(),
                value: 7,
            });
            *p.next.lock().unwrap() = Some(p.clone());
            drop(p);
            let (h1, s1, c1) = (heap.clone(), slot.clone(), counters.clone());
            let reader = thread::spawn(move || {
                h1.safepoint();
                let mut seen = 0;
                for _ in 0..2 {
                    let got = s1.lock().unwrap().take();
                    if let Some(g) = got {
                        assert_eq!(g.value, 7);
                        assert_eq!(c1.finalized(), 1);
                        assert_eq!(c1.dropped(), 0, "a published object dropped");
                        assert!(g.next.lock().unwrap().is_some());
                        seen += 1;
                    }
                    h1.safepoint();
                }
                seen
            });
            let first = heap.collect();
            assert_eq!(counters.finalized(), 1);
            assert!(first <= 1);
            let seen = reader.join().unwrap();
            assert!(seen <= 1, "published once");
            if first == 1 {
                assert_eq!(seen, 1, "freed while nothing had taken it");
            }
            drop(slot.lock().unwrap().take());
            let second = heap.collect();
            assert_eq!(first + second, 1, "freed once");
            assert_eq!(counters.finalized(), 1, "finalized once");
            assert_eq!(counters.dropped(), 1);
        },
    );
}

/// A node of a garbage cycle whose `Drop` (run by the collection's reclaim) hands a clone of
/// its link, another node of the same garbage, to an outside slot: that node outlives its
/// value (a zombie) for as long as the clone does.
#[derive(Trace)]
struct Leaky {
    next: std::sync::Mutex<Option<Gc<Leaky>>>,
    #[reap(skip)]
    out: Arc<Mutex<Option<Gc<Leaky>>>>,
    #[reap(skip)]
    dropped: Arc<AtomicUsize>,
}

impl Drop for Leaky {
    fn drop(&mut self) {
        let before = self.dropped.fetch_add(1, SeqCst);
        assert!(before < 2, "a node dropped twice");
        if before == 0 {
            // The first node dropped leaks its link (the other, its value not dropped yet).
            *self.out.lock().unwrap() = self.next.get_mut().unwrap().clone();
        }
    }
}

/// Model 20: the collection's hold given back while another thread drops a zombie's last
/// handle. A 2-cycle is garbage; the first of its `Drop`s run by the reclaim hands a clone of
/// the other node to a slot, which a thread that never attached takes, makes a weak reference
/// to (inside the gate), drops, and upgrades the weak reference once (a zombie's value is
/// dropped, so the upgrade may only see it alive or refuse it).
///
/// The hold's give-back (`count::dec_hold`) frees an object with no read-modify-write when its
/// load sees the hold as the last reference and no weak reference: whichever of the two
/// threads goes last must free the zombie, once, and a weak reference made by the other thread
/// must send the give-back down the counted path. The reclaim's own drops of handles to the
/// garbage (the `Drop`'s link, as its fields drop) are deferred to the give-back
/// (`GC_RECLAIM`); the other thread's are not.
///
/// Invariants: both values are dropped once; the collection returns 2; the zombie is freed
/// once, after the last of its handles (loom's leak tracking; a double free or a free under
/// the other thread's handle fails the model's own checks or loom's); no deadlock. Two
/// threads, at a preemption bound of 4 (109,655 executions; exhaustively it runs for more than
/// twenty minutes). Taking the fast path with a weak reference still there, or with a count
/// of 2, fails it (loom reports the freed object's use), and so does deferring the other
/// thread's drop too (a leak).
#[test]
fn hold_given_back_against_a_zombies_last_handle_on_another_thread() {
    model_bounded(
        "hold_given_back_against_a_zombies_last_handle_on_another_thread",
        Some(4),
        || {
            let heap = Heap::new();
            let out = Arc::new(Mutex::new(None));
            let dropped = Arc::new(AtomicUsize::new(0));
            let make = || {
                heap.alloc(Leaky {
                    next: std::sync::Mutex::new(None),
                    out: out.clone(),
                    dropped: dropped.clone(),
                })
            };
            let (a, b) = (make(), make());
            *a.next.lock().unwrap() = Some(b.clone());
            *b.next.lock().unwrap() = Some(a.clone());
            drop((a, b));
            let o1 = out.clone();
            let other = thread::spawn(move || {
                let got = o1.lock().unwrap().take();
                if let Some(zombie) = got {
                    let w = Weak::new(&zombie);
                    drop(zombie);
                    if let Some(again) = w.upgrade() {
                        assert!(Gc::strong_count(&again) >= 1);
                    }
                    drop(w);
                    true
                } else {
                    false
                }
            });
            assert_eq!(heap.collect(), 2);
            assert_eq!(dropped.load(SeqCst), 2, "both values dropped once");
            let took = other.join().unwrap();
            // What the other thread did not take is dropped here.
            let left = out.lock().unwrap().take();
            assert!(took != left.is_some(), "the clone taken once");
            drop(left);
        },
    );
}
