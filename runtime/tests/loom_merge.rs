//! loom models of the merge queue (issue 12, models 4 and 5).
//! `RUSTFLAGS="--cfg reap_loom" cargo test -p reap --release --test loom_merge`
#![cfg(reap_loom)]

mod common;

use common::{model, obj, setup, setup_obj};
use loom::thread;
use reap::sync::Gc;

/// Model 4: a foreign decrement queued to the owner while the owner reaches safe points: the
/// queued reference is neither lost nor counted twice.
#[test]
fn queued_decrement_merged_at_owners_safepoint() {
    model("queued_decrement_merged_at_owners_safepoint", || {
        let (heap, counters, obj) = setup_obj();
        let sent = obj.clone();
        let t = thread::spawn(move || drop(sent));
        heap.safepoint();
        assert_eq!(counters.dropped(), 0);
        t.join().unwrap();
        heap.safepoint();
        assert_eq!(
            Gc::strong_count(&obj),
            1,
            "the queued reference was merged once"
        );
        assert_eq!(counters.dropped(), 0);
        drop(obj);
        assert_eq!(counters.dropped(), 1);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Model 5: the owner thread exits while a foreign thread drops (and so queues) its last
/// reference: the object is merged exactly once, by the exiting owner or by the foreign
/// thread that finds it gone, and dies once.
#[test]
fn owner_exits_while_foreign_thread_queues() {
    model("owner_exits_while_foreign_thread_queues", || {
        let (heap, counters) = setup();
        let (h, c) = (heap.clone(), counters.clone());
        let owner = thread::spawn(move || {
            let obj = obj(&h, &c);
            let sent = obj.clone();
            drop(obj);
            thread::spawn(move || drop(sent))
        });
        let foreign = owner.join().unwrap();
        foreign.join().unwrap();
        // With std, `join` returns after the joined thread's thread-local destructors, where
        // an exiting owner merges its queue; loom's `join` may return before them, so wait.
        while counters.dropped() == 0 {
            thread::yield_now();
        }
        assert_eq!(counters.dropped(), 1);
        // The object's memory was freed: loom's leak tracking fails the model otherwise.
        // (`live_objects` is not asserted: loom lets `join` return before the joined thread's
        // thread-local destructors, where a thread returns its heap references, have run.)
    });
}
