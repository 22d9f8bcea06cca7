//! loom models of the merge queue (issue 12, models 4 and 5) and of the merge of an exited
//! owner's objects by a collection (model 23).
//! `RUSTFLAGS="--cfg reap_loom" cargo test -p reap --release --test loom_merge`
#![cfg(reap_loom)]

mod common;

use common::{model, model_bounded, obj, setup, setup_obj, Obj};
use loom::thread;
use reap::sync::Gc;
use reap::Trace;

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

/// A tracked object (it holds a handle), which a collection's walk meets.
#[derive(Trace)]
struct Holder {
    child: Option<Gc<Obj>>,
}

/// Model 23: a thread allocates a tracked object and exits while a collection runs and a
/// foreign thread clones and drops the object: the collection merges it if its owner has left
/// the heap by the pause (`Orphans`), or leaves it to a later one; either way the counts stay
/// whole and the object dies once, at its last drop. (Three threads besides the exiting
/// one's destructors: at a preemption bound of 3.)
#[test]
fn collection_merges_exited_owners_object() {
    model_bounded("collection_merges_exited_owners_object", Some(3), || {
        let (heap, counters) = setup();
        let (h, c) = (heap.clone(), counters.clone());
        let holder = thread::spawn(move || {
            h.alloc(Holder {
                child: Some(obj(&h, &c)),
            })
        })
        .join()
        .unwrap();
        let sent = holder.clone();
        let t = thread::spawn(move || {
            let copy = sent.clone();
            drop(sent);
            drop(copy);
        });
        assert_eq!(heap.collect(), 0, "nothing is garbage");
        t.join().unwrap();
        assert_eq!(counters.dropped(), 0);
        drop(holder);
        // The last drop may be a queued one that the exiting owner merges (loom lets `join`
        // return before its thread-local destructors).
        while counters.dropped() == 0 {
            thread::yield_now();
        }
        assert_eq!(counters.dropped(), 1);
    });
}
