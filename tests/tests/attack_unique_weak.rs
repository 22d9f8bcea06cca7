//! The first weak reference made by an owner that holds the only strong reference (issue 12,
//! twenty-second session): `Weak::new` then installs the referent's weak-info block with a
//! plain store rather than a compare-and-swap (`count::uniquely_referenced`, `weak::
//! install_info`). Each test makes that path meet another thread that made a block of its own
//! from a handle it has just dropped, or uses the block afterwards from other threads, and
//! asserts that there is one shared weak reference, that upgrades and callbacks see the
//! object's life exactly, and that the heap empties. loom model 37 (`runtime/tests/
//! loom_weak.rs`) explores the race of the first test.
//!
//! Natively: `cargo test -p reap-tests --test attack_unique_weak`.
//! Miri: `MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p reap-tests --test attack_unique_weak`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;

use reap::sync::{Gc, Heap, Weak};
use reap_tests::shared::dropped;

/// Model 37 natively, many times: another thread makes a first weak reference from a handle
/// counted in the shared word and drops that handle while the owner, holding the only handle
/// it counts, makes its own. Both must get the same shared weak reference.
#[test]
fn first_weak_reference_against_a_block_made_by_a_thread_that_let_go() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let rounds = if cfg!(miri) { 12 } else { 2_000 };
    for round in 0..rounds {
        let obj = dropped(&heap, &drops);
        let c = obj.clone();
        let (c, theirs) = thread::spawn(move || {
            let theirs = c.clone();
            (c, theirs)
        })
        .join()
        .unwrap();
        drop(c);
        let t = thread::spawn(move || {
            let w = Weak::new(&theirs);
            drop(theirs);
            w
        });
        if round % 2 == 0 {
            thread::yield_now();
        }
        let w = Weak::new(&obj);
        let other = t.join().unwrap();
        assert!(
            Weak::ptr_eq(&w, &other),
            "round {round}: two shared weak references"
        );
        assert!(w.upgrade().is_some());
        drop(obj);
        heap.safepoint();
        assert_eq!(drops.load(SeqCst), round + 1);
        assert!(w.upgrade().is_none() && other.upgrade().is_none());
    }
    assert_eq!(heap.live_objects(), 0);
}

/// A block installed by the plain store, then used from other threads: upgrades there while
/// the owner holds the object, a callback reference added there, and the death clearing
/// everything on the owner's drop (callback once, after the clear).
#[test]
fn a_block_installed_by_the_owner_alone_serves_other_threads() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let obj = dropped(&heap, &drops);
    let w = Weak::new(&obj);
    assert!(Weak::ptr_eq(&w, &Weak::new(&obj)));
    let cb = thread::scope(|s| {
        let h = s.spawn(|| {
            heap.safepoint();
            let mut seen = 0;
            for _ in 0..100 {
                if let Some(g) = w.upgrade() {
                    assert_eq!(drops.load(SeqCst), 0, "upgraded to a dropped object");
                    seen += 1;
                    drop(g);
                }
            }
            let g = w.upgrade().expect("the owner holds the object");
            let n = calls.clone();
            let cb = Weak::with_callback(&g, move |w| {
                assert!(w.upgrade().is_none(), "called back before the clear");
                n.fetch_add(1, SeqCst);
            });
            drop(g);
            (seen, cb)
        });
        let (seen, cb) = h.join().unwrap();
        assert_eq!(seen, 100);
        cb
    });
    heap.safepoint();
    assert_eq!(Gc::strong_count(&obj), 1);
    drop(obj);
    heap.safepoint();
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(calls.load(SeqCst), 1);
    assert!(w.upgrade().is_none() && cb.upgrade().is_none());
    drop((w, cb));
    assert_eq!(heap.live_objects(), 0);
}
