//! Adversarial review of Shared-mode possible roots (SEMANTICS 8.5): sequences in which a
//! reference appears or disappears after a collection cleared an object's mark, at every point
//! where user code runs. Each test ends by asserting that the garbage is found and the heap
//! empties (a lost mark shows as a cycle `collect` never frees).
//!
//! The first group is garbage that no dropped reference announces (a handle moved into a traced
//! place through an `Arc`, an edge a `Trace` hid from an earlier collection): `collect` does not
//! find it, an examination of the whole heap does (`collect_exhaustive`, `shutdown`, and the
//! automatic one once the survivors have doubled).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;

use reap::sync::{CollectPhase, Gc, Heap, Weak};
use reap::{Trace, Tracer};
use reap_tests::shared::{
    counted, fin, hooked, quiet_cycle, reps, set_fin, within, Counted, Fin, Log,
};

/// Collects until a round frees nothing; returns the total.
fn collect_all(heap: &Heap) -> usize {
    let mut total = 0;
    for _ in 0..10 {
        let n = heap.collect();
        total += n;
        if n == 0 {
            break;
        }
    }
    total
}

// ---------------------------------------------------------------------------------------------
// Nodes.

/// A node whose slot lives in an `Arc` (as `sync_possible_roots`' `Shared`): code that holds the
/// `Arc` can move a handle into the node without holding a handle to it.
struct ArcSlot {
    slot: Arc<Mutex<Option<Gc<ArcSlot>>>>,
}

// SAFETY: visits the one handle it holds (through its lock), as `sync_possible_roots`' `Shared`.
unsafe impl Trace for ArcSlot {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.slot.trace(tracer);
    }
}

/// A new `ArcSlot` whose only handle is moved into its own slot (no clone, no drop, no count
/// change): garbage that no dropped reference announces.
fn moved_self_cycle(heap: &Heap) {
    let slot = Arc::new(Mutex::new(None));
    let x = heap.alloc(ArcSlot { slot: slot.clone() });
    *slot.lock().unwrap() = Some(x);
}

/// A child whose back pointer to its parent is set once, through an `Arc<OnceLock>` the
/// builder keeps.
struct Child {
    parent: Arc<OnceLock<Gc<Parent>>>,
}

// SAFETY: visits the one handle it holds (a set `OnceLock`, which never changes again).
unsafe impl Trace for Child {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.parent.trace(tracer);
    }
}

#[derive(Trace)]
struct Parent {
    child: Gc<Child>,
}

/// A node whose `Trace` leaves its handle out while its switch is on (allowed by `Trace`'s
/// contract: "visiting fewer handles than the value holds is allowed (the collector then keeps
/// what they lead to), provided every call in one collection visits the same handles").
struct Hider {
    next: Mutex<Option<Gc<Hider>>>,
    hide: Arc<AtomicBool>,
}

// SAFETY: visits its one handle or none; the switch is only flipped between collections.
unsafe impl Trace for Hider {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if !self.hide.load(SeqCst) {
            self.next.trace(tracer);
        }
    }
}

/// A node whose `Trace` panics on its `n`th call and later ones while armed.
struct Bomb {
    next: Mutex<Option<Gc<Bomb>>>,
    calls: Arc<AtomicUsize>,
    panic_at: Arc<AtomicUsize>,
}

// SAFETY: visits the one handle it holds; the counters touch no runtime state.
unsafe impl Trace for Bomb {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        let n = self.calls.fetch_add(1, SeqCst) + 1;
        if n >= self.panic_at.load(SeqCst) {
            panic!("bomb at trace {n}");
        }
        self.next.trace(tracer);
    }
}

/// Runs a closure when dropped (user code in a death, or in reclaim).
#[derive(Trace)]
struct OnDrop {
    #[reap(skip)]
    f: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    next: Mutex<Option<Gc<OnDrop>>>,
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.f.get_mut().unwrap().take() {
            f();
        }
    }
}

fn on_drop(heap: &Heap, f: impl FnOnce() + Send + 'static) -> Gc<OnDrop> {
    heap.alloc(OnDrop {
        f: Mutex::new(Some(Box::new(f))),
        next: Mutex::new(None),
    })
}

// ---------------------------------------------------------------------------------------------
// Garbage no dropped reference announces.

/// The last outside handle of an object is *moved* into the object itself through an `Arc`
/// the code holds: the object becomes a garbage self-cycle without any handle being dropped, so
/// nothing marks it a possible root and `collect` does not look at it (SEMANTICS 8.5); an
/// examination of every tracked object collects it.
#[test]
fn a_handle_moved_into_its_own_node_through_an_arc_is_found_by_an_exhaustive_collection() {
    within("moved self-cycle", || {
        let heap = Heap::new();
        moved_self_cycle(&heap);
        assert_eq!(heap.live_objects(), 1);
        assert_eq!(collect_all(&heap), 0, "no possible root leads to it");
        assert_eq!(heap.collect_exhaustive(), 1);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// `Heap::shutdown` examines every tracked object: it frees the moved self-cycle.
#[test]
fn shutdown_frees_a_cycle_closed_by_a_move() {
    within("moved self-cycle at shutdown", || {
        let heap = Heap::new();
        moved_self_cycle(&heap);
        let freed = heap.shutdown().unwrap();
        assert_eq!((freed, heap.live_objects()), (1, 0));
    });
}

/// The same with a parent/child back pointer set through the child's `Arc<OnceLock>` (a
/// common way to build a back pointer once): moving the parent's last handle into the
/// `OnceLock` leaves the pair garbage with no handle dropped. Here a collection runs first and
/// finds the pair reachable (so even a mark set while building would be gone).
#[test]
fn a_back_pointer_set_through_an_arc_once_lock_is_found_by_an_exhaustive_collection() {
    within("once-lock back pointer", || {
        let heap = Heap::new();
        let back = Arc::new(OnceLock::new());
        let child = heap.alloc(Child {
            parent: back.clone(),
        });
        let parent = heap.alloc(Parent { child });
        // Everything that was marked is decided (reachable) and unmarked.
        drop(parent.clone());
        assert_eq!(heap.collect(), 0);
        assert!(back.set(parent).is_ok());
        drop(back);
        assert_eq!(heap.live_objects(), 2);
        assert_eq!(collect_all(&heap), 0, "no possible root leads to it");
        assert_eq!(heap.collect_exhaustive(), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// The move can happen on any thread, even one that never attached to the heap (no gate, no
/// count change), and while the world runs or not: here a thread that never attached closes the
/// cycle between two collections that already decided the object.
#[test]
fn a_move_on_an_unattached_thread_is_found_by_an_exhaustive_collection() {
    within("moved on another thread", || {
        let heap = Heap::new();
        let slot = Arc::new(Mutex::new(None));
        let x = heap.alloc(ArcSlot { slot: slot.clone() });
        drop(x.clone());
        assert_eq!(heap.collect(), 0);
        thread::spawn(move || {
            *slot.lock().unwrap() = Some(x);
        })
        .join()
        .unwrap();
        assert_eq!(collect_all(&heap), 0, "no possible root leads to it");
        assert_eq!(heap.collect_exhaustive(), 1);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// A `Trace` that leaves a handle out in one collection (consistently within it, as its contract
/// allows: "the collector then keeps what they lead to") makes that collection clear the mark of
/// the root it decided reachable. Once the trace reports its handle again, no mark is left: the
/// cycle waits for an examination of the whole heap.
#[test]
fn a_cycle_kept_once_by_a_hidden_edge_is_found_by_an_exhaustive_collection() {
    within("hidden edge", || {
        let heap = Heap::new();
        let hide = Arc::new(AtomicBool::new(false));
        let b = heap.alloc(Hider {
            next: Mutex::new(None),
            hide: hide.clone(),
        });
        let a = heap.alloc(Hider {
            next: Mutex::new(Some(b.clone())),
            hide: hide.clone(),
        });
        *b.next.lock().unwrap() = Some(a.clone());
        drop(b);
        hide.store(true, SeqCst);
        drop(a);
        // Each hides its edge: both look held from outside, and are kept (fine).
        assert_eq!(heap.collect(), 0);
        hide.store(false, SeqCst);
        assert_eq!(collect_all(&heap), 0, "its marks were cleared");
        assert_eq!(heap.collect_exhaustive(), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Collections examine the whole heap on their own once the objects they leave alive have
/// more than doubled (plus a slack of 2,000) since their low point: garbage no dropped
/// reference announced cannot grow past the rest of the heap.
#[test]
fn a_collection_examines_the_whole_heap_once_the_survivors_double() {
    within("exhaustive by growth", || {
        let heap = Heap::new();
        heap.disable();
        moved_self_cycle(&heap);
        // One survivor: the low point.
        assert_eq!(heap.collect(), 0);
        let traced = Arc::new(AtomicUsize::new(0));
        let live: Vec<_> = (0..2_100).map(|_| counted(&heap, &traced, None)).collect();
        // Discovery: the new objects are not traced (nothing dropped a reference to them).
        assert_eq!(heap.collect(), 0);
        assert_eq!(traced.load(SeqCst), 0);
        // 2,101 survivors, past 2 × 1 + 2,000: this one examines everything.
        assert_eq!(heap.collect(), 1);
        assert_eq!(traced.load(SeqCst), 2_100);
        // The low point is now 2,100: the next collection discovers again.
        assert_eq!(heap.collect(), 0);
        assert_eq!(traced.load(SeqCst), 2_100);
        drop(live);
        assert_eq!(heap.live_objects(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Attacks that held up (regression tests).

/// A finalizer on the refcount path closes a cycle through its object and collects before it
/// returns: that collection sees the temporary reference as one from outside and clears the
/// marks of what it reached. The mark `destroy` sets before `resurrect_end` must survive it.
#[test]
fn a_finalizer_that_resurrects_into_a_cycle_and_collects() {
    within("resurrect + collect", || {
        let heap = Heap::new();
        let log = Log::new();
        let x = fin(&heap, 1, &log);
        let y = fin(&heap, 2, &log);
        *x.next.lock().unwrap() = Some(y);
        let h = heap.clone();
        set_fin(&x, move |this| {
            {
                let y = this.next.lock().unwrap();
                *y.as_ref().unwrap().next.lock().unwrap() = Some(this.clone());
            }
            // Drops and collections inside the finalizer: the cycle is held by the temporary
            // reference, so kept.
            drop(this.clone());
            assert_eq!(h.collect(), 0);
        });
        drop(x);
        assert_eq!(log.fin(), 1);
        assert_eq!(log.drops(), 0);
        assert_eq!(collect_all(&heap), 2);
        assert_eq!(log.fin(), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// A finalizer run by a collection stores a handle to its object in a live object (a
/// resurrection), and a second collection runs before that handle is dropped. The drop after it
/// must still find the cycle.
#[test]
fn a_collector_finalizer_resurrects_then_the_handle_goes() {
    within("collector resurrection", || {
        let heap = Heap::new();
        let log = Log::new();
        let keep: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
        let x = fin(&heap, 1, &log);
        let y = fin(&heap, 2, &log);
        *x.next.lock().unwrap() = Some(y.clone());
        *y.next.lock().unwrap() = Some(x.clone());
        let k = keep.clone();
        set_fin(&x, move |this| *k.lock().unwrap() = Some(this.clone()));
        drop((x, y));
        assert_eq!(heap.collect(), 0, "resurrected");
        assert_eq!(heap.collect(), 0, "held by `keep`");
        assert_eq!(heap.collect(), 0);
        drop(keep.lock().unwrap().take());
        assert_eq!(collect_all(&heap), 2);
        assert_eq!(log.fin(), 2, "each finalizer once");
        assert_eq!(heap.live_objects(), 0);
    });
}

/// A `Trace` that panics only in the resurrection check (the second stop, after a finalizer
/// ran): the collection gives all its garbage back. Every object of it must stay findable.
#[test]
fn a_trace_that_panics_only_in_the_resurrection_check() {
    within("panic in pause 2", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let panic_at = Arc::new(AtomicUsize::new(usize::MAX));
        // b (a bomb) <-> f (with a finalizer) through c.
        let f = fin(&heap, 1, &log);
        let b = heap.alloc(Bomb {
            next: Mutex::new(None),
            calls: calls.clone(),
            panic_at: panic_at.clone(),
        });
        // Fin holds a Fin, Bomb holds a Bomb: link them through an OnDrop-free pair of cycles
        // sharing nothing but the collection: f <-> f2 (finalizer) and b <-> b2.
        let f2 = fin(&heap, 2, &log);
        *f.next.lock().unwrap() = Some(f2.clone());
        *f2.next.lock().unwrap() = Some(f.clone());
        let b2 = heap.alloc(Bomb {
            next: Mutex::new(Some(b.clone())),
            calls: calls.clone(),
            panic_at: panic_at.clone(),
        });
        *b.next.lock().unwrap() = Some(b2.clone());
        drop((f, f2, b, b2));
        // Pause 1 traces each bomb once; pause 2 traces them again: the third call panics.
        calls.store(0, SeqCst);
        panic_at.store(3, SeqCst);
        assert_eq!(heap.collect(), 0, "abandoned in the resurrection check");
        assert_eq!(
            reports.lock().unwrap().len(),
            1,
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(log.fin(), 2);
        panic_at.store(usize::MAX, SeqCst);
        assert_eq!(
            collect_all(&heap),
            4,
            "every object given back stays a possible root"
        );
        assert_eq!(log.fin(), 2, "finalizers ran once");
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Marked objects frozen at collection time lose their mark in the walk; `unfreeze` must mark
/// them again, and also the ones frozen by a collection callback in the middle of a collection.
#[test]
fn freeze_and_unfreeze_around_collections() {
    within("freeze", || {
        let heap = Heap::new();
        let traced = Arc::new(AtomicUsize::new(0));
        drop(quiet_cycle(&heap, &traced));
        heap.freeze();
        assert_eq!(heap.collect(), 0, "frozen");
        assert_eq!(heap.collect(), 0);
        heap.unfreeze();
        assert_eq!(heap.collect(), 2);
        // Frozen by a collection's start callback, after the collection claimed the heap.
        drop(quiet_cycle(&heap, &traced));
        let h = heap.clone();
        let id = heap.add_collect_callback(Arc::new(move |phase, _| {
            if phase == CollectPhase::Start {
                h.freeze();
            }
        }));
        assert_eq!(heap.collect(), 0);
        assert!(heap.remove_collect_callback(id));
        assert_eq!(heap.collect(), 0, "still frozen");
        heap.unfreeze();
        assert_eq!(heap.collect(), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// User code inside a collection (a start callback, a stop callback, a `Drop` in reclaim, a
/// weak callback, the unraisable hook) drops the last outside handle of another cycle, or
/// collects: the cycle is found by a later collection.
#[test]
fn user_code_inside_a_collection_drops_the_last_handle_of_a_cycle() {
    within("drops inside a collection", || {
        let heap = Heap::new();
        let traced = Arc::new(AtomicUsize::new(0));
        let stash: Arc<Mutex<Vec<Gc<Counted>>>> = Arc::default();
        for _ in 0..5 {
            stash.lock().unwrap().push(quiet_cycle(&heap, &traced));
        }
        // Start and stop callbacks.
        let s = stash.clone();
        let h = heap.clone();
        let id = heap.add_collect_callback(Arc::new(move |_, _| {
            drop(s.lock().unwrap().pop());
            assert_eq!(h.collect(), 0, "nested");
        }));
        assert_eq!(heap.collect(), 2, "the start callback's cycle");
        assert!(heap.remove_collect_callback(id));
        // The stop callback's cycle.
        assert_eq!(heap.collect(), 2);
        // A Drop run by reclaim (its object garbage).
        let s = stash.clone();
        let h = heap.clone();
        let g = on_drop(&heap, move || {
            drop(s.lock().unwrap().pop());
            assert_eq!(h.collect(), 0, "nested");
        });
        *g.next.lock().unwrap() = Some(g.clone());
        drop(g);
        assert_eq!(heap.collect(), 1);
        // A weak callback (its referent garbage).
        let s = stash.clone();
        let h = heap.clone();
        let t = on_drop(&heap, || {});
        *t.next.lock().unwrap() = Some(t.clone());
        let w = Weak::with_callback(&t, move |_| {
            drop(s.lock().unwrap().pop());
            assert_eq!(h.collect(), 0, "nested");
        });
        drop(t);
        // The unraisable hook (a finalizer of garbage panics).
        let s = stash.clone();
        let h = heap.clone();
        heap.set_unraisable_hook(Some(Arc::new(move |_: &reap::Unraisable| {
            drop(s.lock().unwrap().pop());
            assert_eq!(h.collect(), 0, "nested");
        })));
        let log = Log::new();
        let p = fin(&heap, 9, &log);
        *p.next.lock().unwrap() = Some(p.clone());
        set_fin(&p, |_| panic!("finalizer panics"));
        drop(p);
        let n = collect_all(&heap);
        assert!(n >= 2 + 2 + 2, "{n}");
        drop(w);
        // Whatever is left in the stash is live; dropping it makes it garbage.
        stash.lock().unwrap().clear();
        collect_all(&heap);
        heap.set_unraisable_hook(None);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// The owner gives up ownership (its last local reference goes while another thread holds
/// one), a collection clears the mark, then the other thread drops the last handle.
#[test]
fn give_up_ownership_then_collection_then_the_last_foreign_drop() {
    within("give up ownership", || {
        let heap = Heap::new();
        let traced = Arc::new(AtomicUsize::new(0));
        let a = quiet_cycle(&heap, &traced);
        let a2 = a.clone();
        let (tx, rx) = mpsc::channel::<Gc<Counted>>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let h = heap.clone();
        let other = thread::spawn(move || {
            let a2 = h.detached(|| rx.recv().unwrap());
            // Attached (it allocates), so its drop is a direct foreign decrement.
            drop(h.alloc(0u8));
            done_tx.send(()).unwrap();
            // Wait until the owner gave up and a collection ran.
            h.detached(|| {
                let _ = rx.recv();
            });
            drop(a2);
            h.safepoint();
        });
        tx.send(a2).unwrap();
        done_rx.recv().unwrap();
        drop(a);
        assert_eq!(heap.collect(), 0, "held by the other thread");
        drop(tx);
        heap.detached(|| other.join().unwrap());
        assert_eq!(collect_all(&heap), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// A thread that allocated (owns) a cycle keeps a handle in a thread-local and exits: the
/// thread-local's destructor drops it during the exit, between collections.
#[test]
fn an_owner_exiting_drops_a_handle_from_a_thread_local() {
    thread_local! {
        static KEEP: std::cell::RefCell<Option<Gc<Counted>>> = const { std::cell::RefCell::new(None) };
    }
    within("thread-local at exit", || {
        let heap = Heap::new();
        let traced = Arc::new(AtomicUsize::new(0));
        let (h, t) = (heap.clone(), traced.clone());
        let (tx, rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let j = thread::spawn(move || {
            let a = quiet_cycle(&h, &t);
            KEEP.with(|k| *k.borrow_mut() = Some(a));
            tx.send(()).unwrap();
            h.detached(|| go_rx.recv().unwrap());
        });
        rx.recv().unwrap();
        assert_eq!(heap.collect(), 0);
        go_tx.send(()).unwrap();
        j.join().unwrap();
        assert_eq!(collect_all(&heap), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// A weak upgraded after the collection that cleared its referent's mark, moved into another
/// object of the cycle, and the handles dropped on a thread that never attached (the queue).
#[test]
fn a_weak_upgrade_after_a_collection_then_a_queued_drop() {
    within("upgrade + queue", || {
        let heap = Heap::new();
        let traced = Arc::new(AtomicUsize::new(0));
        let b = counted(&heap, &traced, None);
        let a = counted(&heap, &traced, Some(b.clone()));
        let wa = Weak::new(&a);
        drop(a.clone());
        assert_eq!(heap.collect(), 0);
        *b.next.lock().unwrap() = Some(wa.upgrade().unwrap());
        assert_eq!(heap.collect(), 0);
        thread::spawn(move || drop((a, b))).join().unwrap();
        assert_eq!(collect_all(&heap), 2);
        assert!(wa.upgrade().is_none());
        drop(wa);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// A death whose `Drop` collects while the dying object still holds the last outside handle of
/// a cycle (counted from outside, mark cleared); the value's drop then drops that handle.
#[test]
fn a_drop_that_collects_before_its_fields_go() {
    within("drop collects", || {
        let heap = Heap::new();
        let traced = Arc::new(AtomicUsize::new(0));
        let a = quiet_cycle(&heap, &traced);
        let h = heap.clone();
        // `a` is dropped after the closure runs (a field after `f`).
        struct Holder {
            f: Mutex<Option<Box<dyn FnOnce() + Send>>>,
            _a: Gc<Counted>,
        }
        impl Drop for Holder {
            fn drop(&mut self) {
                (self.f.get_mut().unwrap().take().unwrap())();
            }
        }
        // SAFETY: visits the one handle it holds.
        unsafe impl Trace for Holder {
            fn trace(&self, tracer: &mut Tracer<'_>) {
                self._a.trace(tracer);
            }
        }
        drop(a.clone());
        let holder = heap.alloc(Holder {
            f: Mutex::new(Some(Box::new(move || {
                assert_eq!(h.collect(), 0);
            }))),
            _a: a,
        });
        drop(holder);
        assert_eq!(collect_all(&heap), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Threads racing: an attached thread builds and drops cycles and upgrades weak references,
/// a thread that never attached drops handles it was sent, and this thread collects meanwhile.
/// Afterwards everything is garbage and must go.
#[test]
fn racing_drops_upgrades_and_collections() {
    within("race", || {
        let heap = Heap::new();
        let traced = Arc::new(AtomicUsize::new(0));
        let rounds = reps(200, 6);
        let (tx, rx) = mpsc::channel::<Gc<Counted>>();
        let (h, t) = (heap.clone(), traced.clone());
        let builder = thread::spawn(move || {
            let mut weaks = Vec::new();
            for i in 0..rounds {
                let a = quiet_cycle(&h, &t);
                weaks.push(Weak::new(&a));
                if let Some(up) = weaks.get(i / 2).and_then(Weak::upgrade) {
                    // Close a longer cycle through an upgraded handle, or just drop it.
                    if i % 3 == 0 {
                        *a.next
                            .lock()
                            .unwrap()
                            .as_ref()
                            .unwrap()
                            .next
                            .lock()
                            .unwrap() = Some(up);
                    } else {
                        drop(up);
                    }
                }
                tx.send(a.clone()).unwrap();
                drop(a);
                h.safepoint();
            }
        });
        let dropper = thread::spawn(move || {
            for a in rx {
                drop(a);
            }
        });
        for _ in 0..rounds / 2 {
            heap.collect();
        }
        builder.join().unwrap();
        dropper.join().unwrap();
        heap.safepoint();
        collect_all(&heap);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// A heap's object holds the last handle to another heap's cycle; the first heap's collection
/// frees it while the second heap is collected concurrently on another thread.
#[test]
fn two_heaps_collected_concurrently() {
    within("two heaps", || {
        let (h1, h2) = (Heap::new(), Heap::new());
        let traced = Arc::new(AtomicUsize::new(0));
        let inner = quiet_cycle(&h2, &traced);
        let outer = on_drop(&h1, move || drop(inner));
        *outer.next.lock().unwrap() = Some(outer.clone());
        drop(outer);
        let h2c = h2.clone();
        let j = thread::spawn(move || {
            for _ in 0..reps(20, 2) {
                h2c.collect();
            }
        });
        // This thread is attached to heap 2 (it allocated there): detached from it while it
        // collects heap 1 (whose reclaim drops heap 2's handle, through heap 2's gate) and waits.
        h2.detached(|| {
            assert_eq!(h1.collect(), 1);
            j.join().unwrap();
        });
        // The other thread's collections may have found it already.
        collect_all(&h2);
        assert_eq!((h1.live_objects(), h2.live_objects()), (0, 0));
    });
}

/// A cycle through an object too large for the slab (the walk's "outside" list and the
/// discovery's hash map) and slab objects, whose last handle goes after a collection.
#[test]
fn a_cycle_through_a_large_object() {
    #[derive(Trace)]
    struct Big {
        #[reap(skip)]
        _pad: [u8; 16384],
        next: Mutex<Option<Gc<OnDrop>>>,
        back: Mutex<Option<Gc<Big>>>,
    }
    within("large object", || {
        let heap = Heap::new();
        let big = heap.alloc(Big {
            _pad: [0; 16384],
            next: Mutex::new(None),
            back: Mutex::new(None),
        });
        let small = on_drop(&heap, || {});
        *big.next.lock().unwrap() = Some(small.clone());
        // small -> big through a second Big, so that discovery crosses slab and outside twice.
        let big2 = heap.alloc(Big {
            _pad: [0; 16384],
            next: Mutex::new(None),
            back: Mutex::new(Some(big.clone())),
        });
        *big.back.lock().unwrap() = Some(big2.clone());
        drop(small);
        assert_eq!(heap.collect(), 0);
        drop(big2);
        assert_eq!(heap.collect(), 0);
        drop(big);
        assert_eq!(collect_all(&heap), 3);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Runs a closure when dropped (a plain field, dropped after the fields before it).
struct After(Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl Drop for After {
    fn drop(&mut self) {
        if let Some(f) = self.0.get_mut().unwrap().take() {
            f();
        }
    }
}

/// A link of a deep chain: its `next` is dropped first (a death deferred by the trashcan when
/// deep), then the cycle handle it keeps, then `after` runs (here: a collection).
#[derive(Trace)]
struct Deep {
    next: Mutex<Option<Gc<Deep>>>,
    keep: Mutex<Option<Gc<Counted>>>,
    #[reap(skip)]
    _after: After,
}

/// A chain of deaths deeper than the trashcan: the deferred deaths (count zero, not begun)
/// hold the last handles of cycles while a `Drop` deep in the chain collects; the deferred
/// deaths then drop them.
#[test]
fn deferred_deaths_hold_cycles_while_a_drop_collects() {
    within("trashcan", || {
        let heap = Heap::new();
        let traced = Arc::new(AtomicUsize::new(0));
        let mut head: Option<Gc<Deep>> = None;
        let n = reps(160, 120);
        for i in 0..n {
            let h = heap.clone();
            let collect: Option<Box<dyn FnOnce() + Send>> = if i % 3 == 0 {
                Some(Box::new(move || {
                    h.collect();
                }))
            } else {
                None
            };
            head = Some(heap.alloc(Deep {
                next: Mutex::new(head.take()),
                keep: Mutex::new((i % 4 == 0).then(|| quiet_cycle(&heap, &traced))),
                _after: After(Mutex::new(collect)),
            }));
        }
        drop(head);
        collect_all(&heap);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Two threads collect the same heap while a third (attached) drops cycles and upgrades weak
/// references, a thread that never attached drops handles, and freeze/unfreeze run. Everything
/// is garbage at the end and must go.
#[test]
fn chaos_collectors_freeze_and_drops() {
    within("chaos", || {
        let heap = Heap::new();
        let traced = Arc::new(AtomicUsize::new(0));
        let rounds = reps(100, 4);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Gc<Counted>>();
        let mut joins = Vec::new();
        {
            let (h, t) = (heap.clone(), traced.clone());
            joins.push(thread::spawn(move || {
                let mut weaks: Vec<Weak<Counted>> = Vec::new();
                for i in 0..rounds {
                    let a = quiet_cycle(&h, &t);
                    if let Some(up) = weaks.last().and_then(Weak::upgrade) {
                        *a.next.lock().unwrap() = Some(up);
                    }
                    weaks.push(Weak::new(&a));
                    if i % 2 == 0 {
                        tx.send(a).unwrap();
                    } else {
                        drop(a);
                    }
                    if i % 7 == 0 {
                        h.freeze();
                    }
                    if i % 7 == 3 {
                        h.unfreeze();
                    }
                    h.safepoint();
                }
                drop(weaks);
            }));
        }
        joins.push(thread::spawn(move || {
            for a in rx {
                drop(a);
            }
        }));
        {
            let (h, s) = (heap.clone(), stop.clone());
            joins.push(thread::spawn(move || {
                while !s.load(SeqCst) {
                    h.collect();
                    h.detached(thread::yield_now);
                }
            }));
        }
        for _ in 0..rounds / 2 {
            heap.collect();
            heap.detached(thread::yield_now);
        }
        let collector = joins.pop().unwrap();
        heap.detached(|| {
            for j in joins {
                j.join().unwrap();
            }
            stop.store(true, SeqCst);
            collector.join().unwrap();
        });
        heap.unfreeze();
        heap.safepoint();
        collect_all(&heap);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// `threshold2 = 0` turns the automatic exhaustive examination off; `collect_exhaustive` still
/// finds the garbage.
#[test]
fn threshold2_zero_turns_the_exhaustive_trigger_off() {
    within("exhaustive trigger off", || {
        let heap = Heap::new();
        heap.disable();
        heap.set_threshold(2000, 10, 0);
        moved_self_cycle(&heap);
        assert_eq!(heap.collect(), 0);
        let traced = Arc::new(AtomicUsize::new(0));
        let live: Vec<_> = (0..2_100).map(|_| counted(&heap, &traced, None)).collect();
        assert_eq!(heap.collect(), 0);
        assert_eq!(
            heap.collect(),
            0,
            "past the doubling, but the trigger is off"
        );
        assert_eq!(traced.load(SeqCst), 0);
        assert_eq!(heap.collect_exhaustive(), 1);
        drop(live);
        assert_eq!(heap.live_objects(), 0);
    });
}
