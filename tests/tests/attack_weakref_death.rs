//! The death of a weak-reference object decided at its owner's last drop
//! (`sync::heap::weakref_zero`, twenty-fourth session): when `sync::weak::dies_unlisted`
//! finds it dead, a reference with no callback, no finalizer and its value whole is freed
//! right there, with no trashcan and no general death; any other takes the general death.
//! These tests pin what that shortcut must keep: the accounting (live objects, the tracked
//! objects' list), callbacks that must not run and captures that must be dropped, weak
//! references to the weak-reference object itself, other threads' references, and deaths run
//! by user code around it. Also the first weak reference's one-call path (`Weak::new_first`)
//! on a thread whose first use of the heap it is, and inside a detached section.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;

use reap::sync::{Gc, Heap, Weak};
use reap::Trace;
use reap_tests::shared::{settled_live, weak_objects, within, DropFlag};

const N: usize = if cfg!(miri) { 16 } else { 2000 };

/// The shared reference dropped by its owner is gone at once: not counted alive, not in the
/// tracked objects, and the next `Weak::new` makes a new one.
#[test]
fn the_shared_reference_is_freed_at_its_owners_last_drop() {
    let heap = Heap::new();
    let o = heap.alloc(1_u64);
    for i in 0..N {
        let w = Weak::new(&o);
        assert!(Weak::ptr_eq(&w, &Weak::new(&o)), "round {i}: shared");
        assert_eq!(heap.live_objects(), 2);
        assert_eq!(weak_objects(&heap), 1);
        drop(w);
        assert_eq!(heap.live_objects(), 1, "round {i}: freed at the drop");
        assert_eq!(weak_objects(&heap), 0);
    }
    drop(o);
    assert_eq!(heap.live_objects(), 0);
    assert_eq!(heap.collect(), 0);
}

/// The benchmark's shape and its mirror (referent dropped first), on objects of three sizes:
/// everything freed, nothing left for the collector.
#[test]
fn alloc_weak_drop_rounds_on_three_sizes_leave_nothing() {
    let heap = Heap::new();
    for i in 0..N {
        let a = heap.alloc(i as u64);
        let b = heap.alloc([i as u64; 6]);
        let c = heap.alloc(vec![i; 3]);
        let (wa, wb, wc) = (Weak::new(&a), Weak::new(&b), Weak::new(&c));
        if i % 2 == 0 {
            drop((wa, wb, wc));
            drop((a, b, c));
        } else {
            drop((a, b, c));
            assert!(wa.upgrade().is_none() && wb.upgrade().is_none() && wc.upgrade().is_none());
            drop((wa, wb, wc));
        }
    }
    assert_eq!(heap.live_objects(), 0);
    assert_eq!(weak_objects(&heap), 0);
    assert_eq!(heap.collect(), 0);
}

/// A reference with a callback, dropped before its referent, takes the general death: the
/// callback never runs, and its captures are dropped with the reference.
#[test]
fn a_callback_reference_dropped_first_drops_its_captures_and_never_calls() {
    let heap = Heap::new();
    let o = heap.alloc(1_u64);
    let ran = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let (r, f) = (ran.clone(), DropFlag(dropped.clone()));
    let w = Weak::with_callback(&o, move |_| {
        let _keep = &f;
        r.store(true, SeqCst);
    });
    let shared = Weak::new(&o);
    drop(w);
    assert!(
        dropped.load(SeqCst),
        "the callback's captures go with the reference"
    );
    drop(shared);
    assert_eq!(heap.live_objects(), 1);
    drop(o);
    assert!(!ran.load(SeqCst));
    assert_eq!(heap.live_objects(), 0);
}

/// The shared reference has weak references of its own (one plain, one with a callback): its
/// owner's last drop is not the shortcut; both are cleared when it dies, and the callback runs
/// once, seeing its reference cleared.
#[test]
fn a_shared_reference_with_weak_references_of_its_own_clears_them() {
    let heap = Heap::new();
    let o = heap.alloc(1_u64);
    let w = Weak::new(&o);
    let obj = Weak::as_object(&w);
    let ww = Weak::new(&obj);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let wcb = Weak::with_callback(&obj, move |me| {
        assert!(me.upgrade().is_none());
        c.fetch_add(1, SeqCst);
    });
    drop(obj);
    assert!(ww.upgrade().is_some());
    drop(w);
    assert!(!ww.is_alive() && ww.upgrade().is_none());
    assert_eq!(calls.load(SeqCst), 1);
    drop((ww, wcb));
    assert_eq!(heap.live_objects(), 1);
    drop(o);
    assert_eq!(heap.live_objects(), 0);
}

/// Another thread holds a clone of the shared reference: the owner's drop merges rather than
/// freeing; that thread still upgrades, and its drop frees the reference.
#[test]
fn another_threads_clone_outlives_the_owners_drop() {
    within("another_threads_clone", || {
        let heap = Heap::new();
        let o = heap.alloc(5_u64);
        for _ in 0..if cfg!(miri) { 4 } else { 200 } {
            let w = Weak::new(&o);
            let theirs = w.clone();
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let t = thread::spawn(move || {
                rx.recv().unwrap();
                let got = theirs.upgrade().map(|g| *g);
                drop(theirs);
                got
            });
            drop(w);
            tx.send(()).unwrap();
            assert_eq!(t.join().unwrap(), Some(5));
        }
        assert!(Weak::new(&o).upgrade().is_some());
        drop(o);
        assert_eq!(settled_live(&heap), 0);
    });
}

/// A link whose `Drop` makes a weak reference to `other` and drops it, then checks it can
/// still make one: deaths inside deaths (and inside the trashcan's deferred ones, past depth
/// 50), each freeing a shared reference with the shortcut.
#[derive(Trace)]
struct Link {
    next: Option<Gc<Link>>,
    other: Gc<u64>,
    #[reap(skip)]
    seen: Arc<AtomicUsize>,
}

impl Drop for Link {
    fn drop(&mut self) {
        let w = Weak::new(&self.other);
        assert_eq!(w.upgrade().map(|g| *g), Some(9));
        drop(w);
        let again = Weak::new(&self.other);
        assert!(again.is_alive());
        self.seen.fetch_add(1, SeqCst);
    }
}

#[test]
fn weak_references_made_and_dropped_inside_a_deep_chains_deaths() {
    let heap = Heap::new();
    let other = heap.alloc(9_u64);
    let seen = Arc::new(AtomicUsize::new(0));
    let len = if cfg!(miri) { 60 } else { 500 };
    let mut head: Option<Gc<Link>> = None;
    for _ in 0..len {
        head = Some(heap.alloc(Link {
            next: head.take(),
            other: other.clone(),
            seen: seen.clone(),
        }));
    }
    drop(head);
    assert_eq!(seen.load(SeqCst), len);
    assert_eq!(heap.live_objects(), 1);
    drop(other);
    assert_eq!(heap.live_objects(), 0);
}

/// A handle and its shared weak reference, which a callback takes.
type Held = Arc<Mutex<Option<(Gc<u64>, Weak<u64>)>>>;

/// A weak reference's callback makes and drops shared references to another object, and drops
/// the last handle to a third whose shared reference it held: deaths run from user code that
/// the runtime runs.
#[test]
fn a_callback_makes_and_drops_shared_references() {
    let heap = Heap::new();
    let a = heap.alloc(1_u64);
    let b = heap.alloc(2_u64);
    let c = heap.alloc(3_u64);
    let wc = Weak::new(&c);
    let held: Held = Arc::new(Mutex::new(Some((c, wc))));
    let (b2, h2) = (b.clone(), held.clone());
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let _w = Weak::with_callback(&a, move |_| {
        for _ in 0..10 {
            let w = Weak::new(&b2);
            assert!(w.upgrade().is_some());
        }
        let (c, wc) = h2.lock().unwrap().take().unwrap();
        drop(wc);
        drop(c);
        d.store(true, SeqCst);
    });
    drop(a);
    assert!(done.load(SeqCst));
    assert!(held.lock().unwrap().is_none());
    drop(_w);
    assert_eq!(heap.live_objects(), 1, "only b, held here");
    drop(b);
    assert_eq!(heap.live_objects(), 0);
}

/// `Weak::new` as the first use of the heap on a new thread (the one-call path attaches
/// first), and inside a detached section (the lock path, as a thread with no state): shared
/// where they should be, and everything freed.
#[test]
fn first_weak_reference_on_a_fresh_thread_and_detached() {
    within("first_weak_reference_fresh_thread", || {
        let heap = Heap::new();
        let objs: Vec<Gc<u64>> = heap.detached(|| (0..8).map(|i| heap.alloc(i)).collect());
        let theirs = objs.clone();
        let made = thread::spawn(move || {
            let ws: Vec<Weak<u64>> = theirs.iter().map(Weak::new).collect();
            for (w, o) in ws.iter().zip(&theirs) {
                assert!(Weak::ptr_eq(w, &Weak::new(o)));
                assert_eq!(w.upgrade().map(|g| *g), Some(**o));
            }
            ws
        })
        .join()
        .unwrap();
        let detached: Vec<Weak<u64>> = heap.detached(|| objs.iter().map(Weak::new).collect());
        for (a, b) in made.iter().zip(&detached) {
            assert!(
                Weak::ptr_eq(a, b),
                "the other thread's shared reference is found"
            );
        }
        drop(made);
        drop(detached);
        let fresh = heap.detached(|| Weak::new(&objs[0]));
        assert!(fresh.upgrade().is_some());
        drop(fresh);
        drop(objs);
        assert_eq!(settled_live(&heap), 0);
    });
}
