//! Shared-mode collections discover their candidates from the possible roots (SEMANTICS 8.5):
//! only objects a dropped reference left possibly garbage, and what they reach, are traced,
//! so an untouched live heap is walked (one test per block) but never traced. Each way a
//! reference can go without the object's death marks it: the owner's drop, another thread's
//! (directly or through the owner's queue), a finalizer's resurrection; and a collection that
//! could not decide an object (its lock held elsewhere, a panicking `Trace`) marks it again.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use reap::sync::{Gc, Heap};
use reap::{Trace, Tracer};
use reap_tests::shared::{counted, fin, hooked, quiet_cycle, set_fin, within, Counted, Log};

/// A live chain of `len` nodes built by moving handles (no reference is dropped, so nothing in
/// it is a possible root); returns its head.
fn chain(heap: &Heap, traced: &Arc<AtomicUsize>, len: usize) -> Gc<Counted> {
    let mut head = counted(heap, traced, None);
    for _ in 1..len {
        head = counted(heap, traced, Some(head));
    }
    head
}

#[test]
fn untouched_structure_is_not_traced_until_a_reference_is_dropped() {
    let heap = Heap::new();
    let traced = Arc::new(AtomicUsize::new(0));
    let head = chain(&heap, &traced, 100);
    assert_eq!(heap.collect(), 0);
    assert_eq!(
        traced.load(SeqCst),
        0,
        "nothing was dropped: nothing traced"
    );
    // A reference to the head dropped: the head is a possible root, and the collection
    // traces it and everything it reaches, once.
    drop(head.clone());
    assert_eq!(heap.collect(), 0);
    assert_eq!(traced.load(SeqCst), 100);
    // Found reachable: the mark is cleared.
    assert_eq!(heap.collect(), 0);
    assert_eq!(traced.load(SeqCst), 100);
    drop(head);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn garbage_is_found_from_the_possible_root_that_reaches_it() {
    let heap = Heap::new();
    let traced = Arc::new(AtomicUsize::new(0));
    let live = chain(&heap, &traced, 50);
    // A ring of 12 closed through its last node: dropping the outside handles marks the two
    // ends; the ten between are reached only through them.
    let end = counted(&heap, &traced, None);
    let mut head = end.clone();
    for _ in 1..12 {
        head = counted(&heap, &traced, Some(head));
    }
    *end.next.lock().unwrap() = Some(head.clone());
    drop((end, head));
    // The ring; the live chain is never traced.
    assert_eq!(heap.collect(), 12);
    assert_eq!(traced.load(SeqCst), 12);
    drop(live);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn a_drop_through_the_owners_queue_marks_a_possible_root() {
    within("queued drop", || {
        let heap = Heap::new();
        let traced = Arc::new(AtomicUsize::new(0));
        let a = quiet_cycle(&heap, &traced);
        // A thread that never attached drops the last outside handle of an object this
        // thread owns and counted: the reference goes to this thread's queue.
        thread::spawn(move || drop(a)).join().unwrap();
        assert_eq!(heap.collect(), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Collects the heap when dropped (user code run by a death).
#[derive(Trace)]
struct CollectsOnDrop {
    #[reap(skip)]
    heap: Heap,
}

impl Drop for CollectsOnDrop {
    fn drop(&mut self) {
        self.heap.collect();
    }
}

/// The owner drains its queue `[w, a]`: `w`'s death collects while `a`'s entry has left the
/// queue but not been merged. That collection counts the entry's reference as one from outside
/// (`a` survives) and clears `a`'s mark; the merge after it must mark `a` again, or the cycle
/// it leaves is never collected. (Found by an adversarial review.)
#[test]
fn a_collection_during_a_queue_drain_leaves_the_rest_marked() {
    within("drain interrupted", || {
        let heap = Heap::new();
        let traced = Arc::new(AtomicUsize::new(0));
        let w = heap.alloc(CollectsOnDrop { heap: heap.clone() });
        let a = quiet_cycle(&heap, &traced);
        // A thread that never attached drops references this thread counted: both go to
        // this thread's queue, in this order.
        thread::spawn(move || {
            drop(w);
            drop(a);
        })
        .join()
        .unwrap();
        // The drain: `w` dies (its `Drop` collects: 0, `a` is held by the queue entry), then
        // `a`'s entry is merged.
        heap.safepoint();
        assert_eq!(heap.collect(), 2, "the cycle the merge left is found");
        assert_eq!(heap.live_objects(), 0);
    });
}

#[test]
fn a_foreign_drop_of_a_merged_object_marks_a_possible_root() {
    within("foreign drop", || {
        let heap = Heap::new();
        let traced = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let (h, t) = (heap.clone(), traced.clone());
        // The cycle is owned by a thread that has exited (its objects merged at its exit).
        thread::spawn(move || tx.send(quiet_cycle(&h, &t)).unwrap())
            .join()
            .unwrap();
        let a = rx.recv().unwrap();
        drop(a);
        assert_eq!(heap.collect(), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

#[test]
fn a_finalizer_resurrecting_into_a_cycle_marks_a_possible_root() {
    within("resurrection", || {
        let heap = Heap::new();
        let log = Log::new();
        let x = fin(&heap, 1, &log);
        let y = fin(&heap, 2, &log);
        *x.next.lock().unwrap() = Some(y);
        // x's finalizer stores a handle to x in y, which only x holds: x and y become a cycle
        // as the finalizer's temporary reference goes, with no other drop.
        set_fin(&x, |this| {
            let y = this.next.lock().unwrap();
            *y.as_ref().unwrap().next.lock().unwrap() = Some(this.clone());
        });
        drop(x);
        assert_eq!(log.fin(), 1);
        assert_eq!(log.drops(), 0, "resurrected");
        // y's finalizer runs now (x's ran), then both go.
        assert_eq!(heap.collect(), 2);
        assert_eq!(log.fin(), 2);
        assert_eq!(log.drops(), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// A node whose lock lives in an `Arc`, so that another thread can hold it without a handle
/// to the node (and so without dropping one afterwards).
struct Shared {
    next: Arc<Mutex<Option<Gc<Shared>>>>,
}

// SAFETY: visits the one handle it holds (through its lock).
unsafe impl Trace for Shared {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.next.trace(tracer);
    }
}

#[test]
fn an_object_whose_lock_was_held_stays_a_possible_root() {
    within("locked root", || {
        let heap = Heap::new();
        let a = heap.alloc(Shared {
            next: Arc::new(Mutex::new(None)),
        });
        let b = heap.alloc(Shared {
            next: Arc::new(Mutex::new(Some(a.clone()))),
        });
        *a.next.lock().unwrap() = Some(b.clone());
        let lock = a.next.clone();
        drop((a, b));
        let (locked_tx, locked_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let holder = thread::spawn(move || {
            let g = lock.lock().unwrap();
            locked_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            drop(g);
        });
        locked_rx.recv().unwrap();
        assert_eq!(heap.collect(), 0, "a's interior is locked elsewhere: kept");
        go_tx.send(()).unwrap();
        holder.join().unwrap();
        // No reference was dropped since: the mark the first collection put back finds it.
        assert_eq!(heap.collect(), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Panics when traced while its switch is on.
struct Bomb {
    armed: Arc<AtomicBool>,
}

// SAFETY: holds no handle.
unsafe impl Trace for Bomb {
    fn trace(&self, _: &mut Tracer<'_>) {
        if self.armed.load(SeqCst) {
            panic!("trace bomb");
        }
    }
}

#[test]
fn a_panicking_trace_leaves_every_object_a_possible_root() {
    within("panicking trace", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let traced = Arc::new(AtomicUsize::new(0));
        let armed = Arc::new(AtomicBool::new(true));
        let bomb = heap.alloc(Bomb {
            armed: armed.clone(),
        });
        drop(bomb.clone());
        drop(quiet_cycle(&heap, &traced));
        assert_eq!(heap.collect(), 0, "abandoned");
        assert_eq!(reports.lock().unwrap().len(), 1);
        armed.store(false, SeqCst);
        // Nothing dropped since; the abandoned collection's walk had cleared the marks.
        assert_eq!(heap.collect(), 2);
        drop(bomb);
        assert_eq!(heap.live_objects(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Other ways a reference goes, each after a collection that cleared every mark (scenarios of the
// adversarial review of possible roots).

/// A 2-cycle built by dropping references; returns `a`, its one outside handle.
fn dropped_cycle(heap: &Heap, traced: &Arc<AtomicUsize>) -> Gc<Counted> {
    let a = counted(heap, traced, None);
    let b = counted(heap, traced, Some(a.clone()));
    *a.next.lock().unwrap() = Some(b);
    a
}

#[test]
fn a_cycle_closed_through_weak_upgrades_is_found() {
    within("weak upgrades", || {
        let heap = Heap::new();
        let traced = Arc::new(AtomicUsize::new(0));
        let b = counted(&heap, &traced, None);
        let a = counted(&heap, &traced, Some(b));
        let wa = reap::sync::Weak::new(&a);
        let wb = reap::sync::Weak::new(a.next.lock().unwrap().as_ref().unwrap());
        assert_eq!(heap.collect(), 0);
        // Upgraded handles moved into the structure close the cycle; the drops that follow
        // are the marks.
        let b2 = wb.upgrade().unwrap();
        *b2.next.lock().unwrap() = Some(wa.upgrade().unwrap());
        drop((b2, a));
        assert_eq!(heap.collect(), 2);
        assert!(wa.upgrade().is_none());
        drop((wa, wb));
        assert_eq!(heap.live_objects(), 0);
    });
}

#[test]
fn a_cycle_whose_owner_exited_is_found_when_its_last_handle_goes() {
    within("owner exited", || {
        let heap = Heap::new();
        let traced = Arc::new(AtomicUsize::new(0));
        let (h, t) = (heap.clone(), traced.clone());
        let (a, a2) = thread::spawn(move || {
            let a = dropped_cycle(&h, &t);
            let a2 = a.clone();
            (a, a2)
        })
        .join()
        .unwrap();
        assert_eq!(heap.collect(), 0);
        drop(a2);
        assert_eq!(heap.collect(), 0, "still held");
        drop(a);
        assert_eq!(heap.collect(), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}

#[test]
fn a_cycle_held_only_by_another_heaps_garbage_is_found_after_it() {
    within("two heaps", || {
        let (h1, h2) = (Heap::new(), Heap::new());
        let traced = Arc::new(AtomicUsize::new(0));
        let inner = dropped_cycle(&h2, &traced);
        // A cycle of heap 1 holds heap 2's cycle through one of its nodes' payload.
        let p = h1.alloc(Holder {
            next: Mutex::new(None),
            other: Mutex::new(Some(inner)),
        });
        let q = h1.alloc(Holder {
            next: Mutex::new(Some(p.clone())),
            other: Mutex::new(None),
        });
        *p.next.lock().unwrap() = Some(q);
        assert_eq!(h2.collect(), 0, "held from heap 1");
        drop(p);
        assert_eq!(h2.collect(), 0, "heap 1's cycle still holds it");
        assert_eq!(h1.collect(), 2);
        // Heap 1's reclaim dropped the last outside handle: a mark on heap 2's side.
        assert_eq!(h2.collect(), 2);
        assert_eq!((h1.live_objects(), h2.live_objects()), (0, 0));
    });
}

/// A node of heap 1 that may hold an object of another heap.
#[derive(Trace)]
struct Holder {
    next: Mutex<Option<Gc<Holder>>>,
    other: Mutex<Option<Gc<Counted>>>,
}

#[test]
fn a_collection_that_could_not_stop_the_world_keeps_the_marks() {
    within("abandoned", || {
        let heap = Heap::new();
        let traced = Arc::new(AtomicUsize::new(0));
        drop(dropped_cycle(&heap, &traced));
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let h = heap.clone();
        let blocked = thread::spawn(move || {
            // Attached (it allocated), then blocked outside `detached`: no safe point.
            drop(h.alloc(1u8));
            ready_tx.send(()).unwrap();
            go_rx.recv().unwrap();
        });
        ready_rx.recv().unwrap();
        assert!(heap
            .try_collect(std::time::Duration::from_millis(20))
            .is_err());
        go_tx.send(()).unwrap();
        blocked.join().unwrap();
        assert_eq!(heap.collect(), 2);
        assert_eq!(heap.live_objects(), 0);
    });
}
