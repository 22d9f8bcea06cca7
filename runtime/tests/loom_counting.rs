//! loom models of biased counting (issue 12, models 2, 3 and 8; model 15, a merged object's
//! one-step decrement).
//! `RUSTFLAGS="--cfg reap_loom" cargo test -p reap --release --test loom_counting`
//! (three-thread models with `LOOM_MAX_PREEMPTIONS=2`).
#![cfg(reap_loom)]

mod common;

use common::{model, model_bounded, setup_obj};
use loom::sync::{Arc, Mutex};
use loom::thread;
use reap::sync::{Gc, Weak};

/// Model 2: clones and drops on three threads plus a weak upgrade: the count reaches zero
/// once, one destructor, one free. Three threads: at a preemption bound of 3.
#[test]
fn clone_drop_three_threads_and_upgrade() {
    model_bounded("clone_drop_three_threads_and_upgrade", Some(3), || {
        let (heap, counters, obj) = setup_obj();
        let w = Weak::new(&obj);
        let a = obj.clone();
        let b = obj.clone();
        // The two threads attach first: the model is about the counts of attached threads
        // (a thread that never attached goes through the heap's gate, a counter of its own).
        let (h1, h2) = (heap.clone(), heap.clone());
        let t1 = thread::spawn(move || {
            h1.safepoint();
            let c = a.clone();
            drop(a);
            assert_eq!(c.value, 7);
        });
        let t2 = thread::spawn(move || {
            h2.safepoint();
            if let Some(g) = w.upgrade() {
                assert_eq!(g.value, 7);
            }
            drop(b);
        });
        drop(obj);
        t1.join().unwrap();
        t2.join().unwrap();
        heap.safepoint();
        assert_eq!(counters.dropped(), 1);
    });
}

/// Model 3: the owner's local count reaching zero against a foreign decrement. The owner
/// gets back a handle the foreign thread cloned (counted in the shared count) and drops it
/// and its own, taking its local count to zero, while the foreign thread drops the handle the
/// owner had counted. Either the foreign drop comes first (the shared word is then zero and
/// the owner frees at once) or the owner merges and the foreign drop of the merged count
/// frees. "merged ⇒ owner 0" is checked by the runtime at every acquire load of the counts
/// (debug assertions); one deallocation.
#[test]
fn owner_zero_against_foreign_decrement() {
    model("owner_zero_against_foreign_decrement", || {
        let (heap, counters, obj) = setup_obj();
        let sent = obj.clone();
        let back = Arc::new(Mutex::new(None));
        let b = back.clone();
        let t = thread::spawn(move || {
            *b.lock().unwrap() = Some(sent.clone());
            drop(sent);
        });
        drop(obj);
        loop {
            let got = back.lock().unwrap().take();
            if let Some(c) = got {
                drop(c);
                break;
            }
            thread::yield_now();
        }
        t.join().unwrap();
        heap.safepoint();
        assert_eq!(counters.dropped(), 1);
    });
}

/// Model 8: the owner's count spills into the shared count (the loom build's limits are
/// tiny) while a foreign thread increments and decrements: the total is conserved, so the
/// object dies exactly once when the last reference goes.
#[test]
fn spill_against_foreign_increment() {
    model("spill_against_foreign_increment", || {
        let (heap, counters, obj) = setup_obj();
        let sent = obj.clone();
        let t = thread::spawn(move || {
            let c = sent.clone();
            drop(sent);
            c
        });
        let clones: Vec<Gc<_>> = (0..3).map(|_| obj.clone()).collect();
        let c = t.join().unwrap();
        assert_eq!(Gc::strong_count(&obj), 5);
        drop(clones);
        drop(c);
        drop(obj);
        heap.safepoint();
        assert_eq!(counters.dropped(), 1);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Model 8, the abort path: more references than the shared count can hold reach the
/// overflow check (a panic in the loom build, an abort otherwise), which refuses before it
/// changes anything: the handles made so far still drop to one clean death.
#[test]
fn overflow_reaches_the_abort_path() {
    model("overflow_reaches_the_abort_path", || {
        let (heap, counters, obj) = setup_obj();
        let mut clones = Vec::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for _ in 0..64 {
                clones.push(obj.clone());
            }
        }));
        let message = r.expect_err("64 clones must overflow the loom build's counts");
        assert_eq!(
            message.downcast_ref::<&str>(),
            Some(&"reap: reference count overflow")
        );
        assert!(clones.len() < 64);
        drop(clones);
        drop(obj);
        assert_eq!(counters.dropped(), 1);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Model 8, the foreign abort path: a thread that does not own the object clones it past the
/// loom build's `SHARED_MAX`. The increment is one `fetch_add` checked after the fact
/// (`count::inc_shared`), so the one that finds the limit withdraws itself before the panic:
/// the handles made so far still drop to one clean death, with the owner's reference.
#[test]
fn foreign_overflow_withdraws_its_increment() {
    model("foreign_overflow_withdraws_its_increment", || {
        let (heap, counters, obj) = setup_obj();
        let sent = obj.clone();
        let t = thread::spawn(move || {
            let mut clones = Vec::new();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for _ in 0..64 {
                    clones.push(sent.clone());
                }
            }));
            let message = r.expect_err("64 foreign clones must overflow the loom build's counts");
            assert_eq!(
                message.downcast_ref::<&str>(),
                Some(&"reap: reference count overflow")
            );
            assert!(clones.len() < 64);
            assert_eq!(Gc::strong_count(&sent), clones.len() + 2);
            drop(clones);
            drop(sent);
        });
        t.join().unwrap();
        assert_eq!(Gc::strong_count(&obj), 1);
        drop(obj);
        heap.safepoint();
        assert_eq!(counters.dropped(), 1);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// Model 15: a merged object's last two references dropped on two threads at once, one of
/// them after a weak upgrade (a merged decrement is one `fetch_sub`, a merged upgrade a
/// compare-and-swap that refuses zero): the count reaches zero once, one destructor, one
/// free, and the upgrade sees the value only while it is alive.
#[test]
fn merged_last_drops_on_two_threads() {
    model("merged_last_drops_on_two_threads", || {
        let (heap, counters, obj) = setup_obj();
        let w = Weak::new(&obj);
        // Clones made in a detached section are counted as another thread's would be, in
        // the shared count; the owner's drop of its one local reference then merges the
        // object: its whole count, two, in the shared word.
        let (c, d) = heap.detached(|| (obj.clone(), obj.clone()));
        drop(obj);
        assert_eq!(
            Gc::strong_count(&c),
            2,
            "merged with the two references left"
        );
        let h = heap.clone();
        let t = thread::spawn(move || {
            h.safepoint();
            drop(c);
        });
        if let Some(g) = w.upgrade() {
            assert_eq!(g.value, 7);
        }
        drop(d);
        t.join().unwrap();
        heap.safepoint();
        assert_eq!(counters.dropped(), 1);
        assert!(w.upgrade().is_none());
    });
}
