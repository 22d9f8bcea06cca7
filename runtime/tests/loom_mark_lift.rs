//! loom model of the seventeenth session's review (of 42a915f): a foreign clone lifts the
//! finalizing mark (`heap::inc_foreign`), and `count::resurrect_end`'s fast dead verdict sets
//! it again, relying on the referent's weak lock to keep upgrades off the all-zero word. That
//! lock was taken only if `destroy` saw a weak reference when the finalizer returned; a thread
//! holding a foreign clone can make the *first* weak reference after that check. Since the
//! fix, `destroy` takes the lock around the verdict whatever the object's weak references.
//! `CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true RUSTFLAGS="--cfg reap_loom"
//!  cargo test -p reap --release --test loom_mark_lift -- --nocapture`
#![cfg(reap_loom)]

mod common;

use common::{model_bounded, setup, Lender};
use loom::sync::{Arc, Mutex};
use loom::thread;
use reap::sync::Weak;

/// Model 28 (review): the owner drops the last reference to a [`Lender`] with no weak
/// reference; its finalizer stores a clone in a slot and takes back whatever the slot holds.
/// Another thread takes the handle, clones it (lifting the mark), puts the handle back, then
/// makes the object's first weak reference from its clone, drops the clone and upgrades.
/// The dangerous interleaving: the finalizer returns, `destroy` reads no weak reference (no
/// lock), the other thread makes the weak reference and drops its clone (shared word 0),
/// `resurrect_end` reads `local == 1 && word == 0` (dead), and before its `fetch_or` of the
/// mark the upgrade (under a lock the finalizer's thread does not hold) sees the mark lifted
/// and the word all zero, and takes the dead object. Asserted: an upgrade that returns the
/// object finds it undropped while it holds it; finalized once, dropped and freed once.
/// On 42a915f this model ends in a segmentation fault at preemption bound 3 (the upgraded
/// object freed under its handle); with 42a915f's `runtime/src` changes reverted it passes
/// (6,096 executions), and so it does with 42a915f plus the weak lock taken unconditionally
/// around `resurrect_end` in `heap::destroy` (4,045 executions; an experiment, and then the
/// fix). Preemption bound 5 (193,397 executions, 12 s; unbounded it ran past seven minutes).
#[test]
fn foreign_clone_makes_first_weak_after_finalizer_returns() {
    model_bounded(
        "foreign_clone_makes_first_weak_after_finalizer_returns",
        Some(5),
        || {
            let (heap, counters) = setup();
            let slot = Arc::new(Mutex::new(None));
            let obj = heap.alloc(Lender {
                counters: counters.clone(),
                slot: slot.clone(),
            });
            let (s, c) = (slot.clone(), counters.clone());
            let t = thread::spawn(move || {
                let taken = s.lock().unwrap().take();
                if let Some(g) = taken {
                    let again = g.clone();
                    *s.lock().unwrap() = Some(g);
                    let w = Weak::new(&again);
                    drop(again);
                    if let Some(up) = w.upgrade() {
                        thread::yield_now();
                        assert_eq!(c.dropped(), 0, "an upgraded object was dropped while held");
                        drop(up);
                    }
                    drop(w);
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
