//! loom models of weak references against the last strong drop (issue 12, models 1 and 6).
//! `RUSTFLAGS="--cfg reap_loom" cargo test -p reap --release --test loom_weak`
#![cfg(reap_loom)]

mod common;

use common::{model, setup_obj};
use loom::thread;
use reap::sync::Weak;

/// Model 1: an upgrade on one thread races the last strong drop on the owner. The upgrade
/// sees the object whole or gets `None`; the object is dropped once and freed (loom's leak
/// tracking fails the model if its memory is not).
#[test]
fn weak_upgrade_against_last_strong_drop() {
    model("weak_upgrade_against_last_strong_drop", || {
        let (heap, counters, obj) = setup_obj();
        let w = Weak::new(&obj);
        let kept = w.clone();
        let c = counters.clone();
        let t = thread::spawn(move || {
            if let Some(g) = w.upgrade() {
                assert_eq!(g.value, 7);
                assert_eq!(c.dropped(), 0, "upgraded to a dropped object");
            }
        });
        drop(obj);
        t.join().unwrap();
        // The upgrader's drop may have been queued to this thread, the owner.
        heap.safepoint();
        assert_eq!(counters.dropped(), 1);
        assert!(kept.upgrade().is_none());
    });
}

/// Model 6: a foreign thread makes the object's first weak reference and drops its strong
/// handle while the owner drops its last one. Once a weak reference exists the object never
/// takes the owner's fast death (a debug assertion in the runtime), and no upgrade sees it
/// dropped.
#[test]
fn first_weak_reference_against_owners_last_drop() {
    model("first_weak_reference_against_owners_last_drop", || {
        let (heap, counters, obj) = setup_obj();
        let c = obj.clone();
        let cs = counters.clone();
        let t = thread::spawn(move || {
            let w = Weak::new(&c);
            drop(c);
            if let Some(g) = w.upgrade() {
                assert_eq!(g.value, 7);
                assert_eq!(cs.dropped(), 0, "upgraded to a dropped object");
            }
            w
        });
        drop(obj);
        let w = t.join().unwrap();
        heap.safepoint();
        assert_eq!(counters.dropped(), 1);
        assert!(w.upgrade().is_none());
    });
}
