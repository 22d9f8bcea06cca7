//! `Weak::new` on a referent that already has a shared weak reference, taken without the lock
//! when this thread owns that reference and it sits in this thread's slab (issue 12,
//! twenty-third session: `weak::owner_shared`). Each test puts the look-up where its argument
//! could break: a reference another thread made (another slab), one whose slab passed to a
//! new thread after its maker exited, one that died and whose block this thread reused, one
//! still listed while its own death runs user code, two heaps, and two threads making and
//! dropping the shared reference at once. Each asserts one shared reference at a time, that
//! upgrades see the referent's life exactly, and that the heap empties.
//!
//! Natively: `cargo test -p reap-tests --test attack_owner_shared`.
//! Miri: `MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p reap-tests --test attack_owner_shared`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;

use reap::sync::{Heap, Weak};
use reap_tests::shared::{dropped, settled_live};

/// The owner's repeated `Weak::new` returns the one shared reference, each call one more
/// handle to it; the references die with their last handle, and the referent's death clears
/// the survivors.
#[test]
fn owner_weak_new_returns_the_shared_reference() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let obj = dropped(&heap, &drops);
    let w = Weak::new(&obj);
    let again: Vec<_> = (0..10).map(|_| Weak::new(&obj)).collect();
    assert!(again.iter().all(|a| Weak::ptr_eq(a, &w)));
    // The referent, its weak-reference object: nothing else.
    assert_eq!(heap.live_objects(), 2);
    drop(again);
    assert_eq!(heap.live_objects(), 2, "the reference lives while `w` does");
    assert!(w.upgrade().is_some());
    drop(obj);
    heap.safepoint();
    assert_eq!(drops.load(SeqCst), 1);
    assert!(w.upgrade().is_none() && !w.is_alive());
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// A shared reference made by another thread lives in that thread's slab: the owner of the
/// referent finds it (under the lock) rather than making a second one, and the other thread
/// finds the owner's.
#[test]
fn the_shared_reference_of_another_thread_is_found() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    for round in 0..if cfg!(miri) { 4 } else { 200 } {
        let obj = dropped(&heap, &drops);
        let (mine, theirs) = if round % 2 == 0 {
            let c = obj.clone();
            let theirs = thread::spawn(move || Weak::new(&c)).join().unwrap();
            (Weak::new(&obj), theirs)
        } else {
            let mine = Weak::new(&obj);
            let c = obj.clone();
            (mine, thread::spawn(move || Weak::new(&c)).join().unwrap())
        };
        assert!(
            Weak::ptr_eq(&mine, &theirs),
            "round {round}: two shared references"
        );
        assert!(Weak::ptr_eq(&mine, &Weak::new(&obj)));
        drop(obj);
        heap.safepoint();
        assert_eq!(drops.load(SeqCst), round + 1);
        assert!(mine.upgrade().is_none() && theirs.upgrade().is_none());
    }
    assert_eq!(heap.live_objects(), 0);
}

/// The thread that made the referent and its shared reference exits; its slab goes back to
/// the heap and a new thread takes it, so the reference now sits in the new thread's slab,
/// owned by a thread that is gone (or merged). The new thread's `Weak::new` must not take it
/// as its own: it finds it under the lock.
#[test]
fn a_slab_passed_to_a_new_thread_does_not_make_its_references_that_threads() {
    let heap = Arc::new(Heap::new());
    let drops = Arc::new(AtomicUsize::new(0));
    for round in 0..if cfg!(miri) { 3 } else { 50 } {
        let (h, d) = (heap.clone(), drops.clone());
        let (obj, w) = thread::spawn(move || {
            h.safepoint();
            let obj = dropped(&h, &d);
            let w = Weak::new(&obj);
            (obj, w)
        })
        .join()
        .unwrap();
        let h = heap.clone();
        let (obj, again) = thread::spawn(move || {
            h.safepoint();
            // Allocations that may reuse the exited thread's slab and its free blocks.
            let others: Vec<_> = (0..8).map(|i| h.alloc(i as u64)).collect();
            let again = Weak::new(&obj);
            drop(others);
            (obj, again)
        })
        .join()
        .unwrap();
        assert!(
            Weak::ptr_eq(&w, &again),
            "round {round}: two shared references"
        );
        assert!(again.upgrade().is_some());
        drop(obj);
        heap.safepoint();
        assert_eq!(drops.load(SeqCst), round + 1);
        assert!(w.upgrade().is_none());
    }
    assert_eq!(heap.live_objects(), 0);
}

/// The owner's shared reference dies (its last handle dropped), this thread reuses its block
/// for other objects it owns, and `Weak::new` then makes a new reference: the dead one's
/// unlisting came before the reuse, so the look-up never takes an object of this thread that
/// happens to sit at the old address.
#[test]
fn a_dead_shared_reference_whose_block_was_reused_is_not_taken() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let obj = dropped(&heap, &drops);
    for _ in 0..if cfg!(miri) { 4 } else { 100 } {
        let w = Weak::new(&obj);
        drop(w);
        // Objects of every small size, some of which reuse the dead reference's block.
        let fill = (
            (0..16)
                .map(|i| heap.alloc([i as u64; 6]))
                .collect::<Vec<_>>(),
            (0..16)
                .map(|i| heap.alloc([i as u64; 4]))
                .collect::<Vec<_>>(),
        );
        let w = Weak::new(&obj);
        assert!(w.is_alive());
        assert_eq!(
            w.upgrade().expect("the referent lives").drops.load(SeqCst),
            0
        );
        assert!(Weak::ptr_eq(&w, &Weak::new(&obj)));
        drop(fill);
    }
    drop(obj);
    heap.safepoint();
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(heap.live_objects(), 0);
}

/// The shared reference has a weak reference of its own, whose callback runs during the
/// shared reference's death, while it is still listed in the referent's block: a `Weak::new`
/// of the referent there must not take the dying reference. It gets a new, live one.
#[test]
fn weak_new_inside_the_death_of_the_shared_reference_makes_a_new_one() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let obj = dropped(&heap, &drops);
    let w = Weak::new(&obj);
    let made = Arc::new(Mutex::new(None));
    let (o, m) = (obj.clone(), made.clone());
    let of_w = Weak::with_callback(&Weak::as_object(&w), move |_| {
        let fresh = Weak::new(&o);
        assert!(fresh.is_alive());
        *m.lock().unwrap() = Some(fresh);
    });
    drop(w);
    heap.safepoint();
    let fresh = made.lock().unwrap().take().expect("the callback ran");
    assert!(fresh.upgrade().is_some());
    assert!(
        Weak::ptr_eq(&fresh, &Weak::new(&obj)),
        "the new one is listed"
    );
    drop(obj);
    heap.safepoint();
    assert_eq!(drops.load(SeqCst), 1);
    assert!(fresh.upgrade().is_none());
    assert!(of_w.upgrade().is_none(), "the dead shared reference");
    drop((fresh, of_w));
    heap.safepoint();
    assert_eq!(heap.live_objects(), 0);
}

/// A thread attached to a second heap (its cache names that heap's slab) makes weak
/// references to an object of the first: never the owner's look-up.
#[test]
fn a_thread_on_another_heap_takes_the_lock_path() {
    let (a, b) = (Heap::new(), Heap::new());
    let drops = Arc::new(AtomicUsize::new(0));
    a.safepoint();
    let obj = dropped(&a, &drops);
    let w = Weak::new(&obj);
    b.safepoint();
    let _other = b.alloc(7_u64);
    assert!(Weak::ptr_eq(&w, &Weak::new(&obj)));
    let in_detached = a.detached(|| Weak::new(&obj));
    assert!(Weak::ptr_eq(&w, &in_detached));
    drop(obj);
    a.safepoint();
    assert_eq!(drops.load(SeqCst), 1);
    assert!(w.upgrade().is_none());
}

/// Two threads make and drop weak references to one object at once, so the shared reference
/// dies and is made again by either of them, and each finds the other's: at every moment the
/// references they hold are one object, and everything is freed at the end.
#[test]
fn two_threads_churn_the_shared_reference() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let obj = dropped(&heap, &drops);
    let rounds = if cfg!(miri) { 30 } else { 20_000 };
    let held = Mutex::new(Vec::new());
    thread::scope(|s| {
        for t in 0..2 {
            let (obj, held) = (obj.clone(), &held);
            s.spawn(move || {
                for i in 0..rounds {
                    let w = Weak::new(&obj);
                    let again = Weak::new(&obj);
                    assert!(Weak::ptr_eq(&w, &again), "thread {t} round {i}");
                    assert!(w.upgrade().is_some());
                    if i % 64 == 0 {
                        held.lock().unwrap().push(w);
                    }
                }
            });
        }
    });
    let held = held.into_inner().unwrap();
    for pair in held.windows(2) {
        // Whatever was held at once is one reference (held ones never died).
        assert!(Weak::ptr_eq(&pair[0], &pair[1]));
    }
    drop(obj);
    heap.safepoint();
    assert_eq!(drops.load(SeqCst), 1);
    assert!(held.iter().all(|w| w.upgrade().is_none()));
    drop(held);
    // The threads' exits may still be merging what they own (a scope returns before its
    // threads' thread-local destructors have run).
    assert_eq!(settled_live(&heap), 0);
}
