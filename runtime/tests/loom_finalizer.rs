//! loom models of a finalizer that resurrects its object by publishing it to another thread
//! (issue 12, model 7), of one run on a thread with no owner id against upgrades (model 24),
//! of the owner's last drop of a weakly referenced object with a finalizer against an
//! upgrade (model 25), and of a finalizer that lends its object to a thread that clones it
//! and upgrades (model 27).
//! `RUSTFLAGS="--cfg reap_loom" cargo test -p reap --release --test loom_finalizer`
#![cfg(reap_loom)]

mod common;

use common::{model, model_bounded, setup, upgrade_twice, Lender, Publisher, Quiet};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// Model 7: the finalizer stores a handle where another thread takes it, clones and drops it.
/// The finalizer runs once, and the object is dropped and freed once, after the last drop.
/// Preemption bound 5 (391,370 executions since the finalizer's verdict takes the weak lock
/// whatever the object's weak references, seventeenth session; 119,234 before; exhaustive it
/// runs past ten minutes since the end of the finalizer marks its object queued before it
/// merges it).
#[test]
fn finalizer_publishes_object_to_another_thread() {
    model_bounded(
        "finalizer_publishes_object_to_another_thread",
        Some(5),
        || {
            let (heap, counters) = setup();
            let slot = Arc::new(Mutex::new(None));
            let obj = heap.alloc(Publisher {
                counters: counters.clone(),
                slot: slot.clone(),
            });
            let (s, c) = (slot.clone(), counters.clone());
            let t = thread::spawn(move || {
                let taken = s.lock().unwrap().take();
                if let Some(g) = taken {
                    assert_eq!(c.finalized(), 1);
                    let again = g.clone();
                    drop(g);
                    drop(again);
                }
            });
            drop(obj);
            t.join().unwrap();
            let left = slot.lock().unwrap().take();
            drop(left);
            heap.safepoint();
            assert_eq!(counters.finalized(), 1);
            assert_eq!(counters.dropped(), 1);
        },
    );
}

/// Model 24: the last reference dropped inside `Heap::detached` (a thread with no owner id on
/// the heap; fifteenth session), whose finalizer does not resurrect the object, against
/// another thread's two weak upgrades: once one has returned `None`, the next does too
/// (SEMANTICS 8.3: the finalizer's temporary reference is held as `count::RESURRECTING`; it
/// used to go into a merged count, where this upgrade took it); finalized once, dropped and
/// freed once. Preemption bound 4 (65,180 executions; unbounded it ran past ten minutes).
#[test]
fn finalizer_without_owner_id_against_upgrades() {
    model_bounded(
        "finalizer_without_owner_id_against_upgrades",
        Some(4),
        || {
            let (heap, counters) = setup();
            // Made inside a detached section: merged, so the drop below is the death.
            let obj = heap.detached(|| {
                heap.alloc(Quiet {
                    counters: counters.clone(),
                })
            });
            let w = reap::sync::Weak::new(&obj);
            let t = thread::spawn(move || {
                upgrade_twice(&w, None);
            });
            heap.detached(|| drop(obj));
            t.join().unwrap();
            heap.safepoint();
            assert_eq!(counters.finalized(), 1);
            assert_eq!(counters.dropped(), 1);
        },
    );
}

/// Model 25: the owner drops the last reference to a weakly referenced object with a
/// finalizer while another thread upgrades twice (sixteenth session). A referent's mark is its
/// tagged `meta`, not a state of the shared word, so an unmerged object's word is all zero
/// both while it lives and while its finalizer runs on the refcount path; the upgrade tells
/// them apart by the mark `GC_FINALIZING`, which the death sets under the referent's weak
/// lock. Asserted:
/// an upgrade that returns the object does so before the finalizer began (the object is
/// then held, so the finalizer has not run while it is); once one returned `None`, the next
/// does too; finalized once, dropped and freed once. Without the lock, the upgrade's
/// compare-and-swap from a zero read before the death succeeds on the finalizer's zero.
/// Exhaustive (968,610 executions, about a minute).
#[test]
fn owners_last_drop_with_finalizer_against_upgrades() {
    model("owners_last_drop_with_finalizer_against_upgrades", || {
        let (heap, counters) = setup();
        let obj = heap.alloc(Quiet {
            counters: counters.clone(),
        });
        let w = reap::sync::Weak::new(&obj);
        let c = counters.clone();
        let t = thread::spawn(move || {
            upgrade_twice(&w, Some(&c));
        });
        drop(obj);
        t.join().unwrap();
        heap.safepoint();
        assert_eq!(counters.finalized(), 1);
        assert_eq!(counters.dropped(), 1);
    });
}

/// Model 27: the owner drops the last reference to a weakly referenced [`Lender`], whose
/// finalizer stores a clone in a slot and then takes back and drops whatever the slot holds;
/// another thread takes the handle from the slot if it is there, clones it (which lifts the
/// finalizing mark: seventeenth session, `heap::inc_foreign`), upgrades, drops both, puts the
/// handle back and upgrades again. Asserted: an upgrade made while the thread holds a clone
/// returns the object (SEMANTICS 8.3, as on the free-threaded build); an upgrade that
/// returns the object finds it undropped; finalized once, dropped and freed once. The
/// dangerous case is the second upgrade after the finalizer took the handle back and found
/// its object dead with the mark lifted and an all-zero word: `resurrect_end` sets the mark
/// again there, or that upgrade would take a freed object.
/// Without that, this model ends in a segmentation fault at preemption bound 6.
/// Exhaustive (1,124,349 executions, about 80 s).
#[test]
fn finalizer_lends_object_to_a_thread_that_clones_and_upgrades() {
    model(
        "finalizer_lends_object_to_a_thread_that_clones_and_upgrades",
        || {
            let (heap, counters) = setup();
            let slot = Arc::new(Mutex::new(None));
            let obj = heap.alloc(Lender {
                counters: counters.clone(),
                slot: slot.clone(),
            });
            let w = reap::sync::Weak::new(&obj);
            let (s, c) = (slot.clone(), counters.clone());
            let t = thread::spawn(move || {
                let taken = s.lock().unwrap().take();
                if let Some(g) = taken {
                    let again = g.clone();
                    let up = w.upgrade();
                    assert!(up.is_some(), "a thread holding a clone could not upgrade");
                    drop(up);
                    drop(again);
                    *s.lock().unwrap() = Some(g);
                    if let Some(late) = w.upgrade() {
                        assert_eq!(c.dropped(), 0, "upgraded a dropped object");
                        drop(late);
                    }
                }
            });
            drop(obj);
            t.join().unwrap();
            let left = slot.lock().unwrap().take();
            drop(left);
            heap.safepoint();
            assert_eq!(counters.finalized(), 1);
            assert_eq!(counters.dropped(), 1);
        },
    );
}
