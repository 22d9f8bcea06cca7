//! loom model of a finalizer that resurrects its object by publishing it to another thread
//! (issue 12, model 7).
//! `RUSTFLAGS="--cfg reap_loom" cargo test -p reap --release --test loom_finalizer`
#![cfg(reap_loom)]

mod common;

use common::{model_bounded, setup, Publisher};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// Model 7: the finalizer stores a handle where another thread takes it, clones and drops it.
/// The finalizer runs once, and the object is dropped and freed once, after the last drop.
/// Preemption bound 5 (119,234 executions; exhaustive it runs past ten minutes since the end
/// of the finalizer marks its object queued before it merges it: bound 6 explores 397,809).
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
