//! loom model of the owner's fast death of a weakly referenced object none of whose weak
//! references is listed (95989bc, reviewed by the seventeenth session's review helper): the
//! listed count reaches zero on a thread other than the one whose upgrade it must order
//! before the owner's second load of the shared word (the order goes through the weak lock).
//! `RUSTFLAGS="--cfg reap_loom" cargo test -p reap --release --test loom_listed`
#![cfg(reap_loom)]

mod common;

use common::{model_bounded, setup_obj};
use loom::sync::atomic::{AtomicBool, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;
use reap::sync::Weak;

/// Model 30: two other threads each make a weak reference from a clone counted in the shared word
/// (one callback-less, one with a callback) and drop the clone; then, while the owner drops
/// its last reference, the first upgrades through its reference, drops it (unlisting it),
/// checks what it got and drops that, and the second drops its reference (unlisting it). The
/// listed count may reach zero on the second thread after the first's upgrade: the owner's
/// fast death must still see the upgrade's increment (through the weak lock both unlistings
/// take). Asserted: an upgrade that returns the object finds it undropped and whole while it
/// holds it; the callback, if called, finds the object dead; dropped and freed once.
/// Preemption bound 2: 348,758 executions, 40 s (bound 3 did not finish within about four
/// minutes).
#[test]
fn listed_count_reaches_zero_on_a_third_thread_after_an_upgrade() {
    model_bounded(
        "listed_count_reaches_zero_on_a_third_thread_after_an_upgrade",
        Some(2),
        || {
            let (heap, counters, obj) = setup_obj();
            let c1 = heap.detached(|| obj.clone());
            let c2 = heap.detached(|| obj.clone());
            let r1 = Arc::new(AtomicBool::new(false));
            let r2 = Arc::new(AtomicBool::new(false));
            let (cs, f1, f2) = (counters.clone(), r1.clone(), r2.clone());
            let t1 = thread::spawn(move || {
                let w = Weak::new(&c1);
                drop(c1);
                f1.store(true, SeqCst);
                let g = w.upgrade();
                drop(w);
                if let Some(g) = g {
                    assert_eq!(cs.dropped(), 0, "an upgraded object was dropped while held");
                    assert_eq!(g.value, 7);
                    drop(g);
                }
            });
            let cs2 = counters.clone();
            let t2 = thread::spawn(move || {
                let w = Weak::with_callback(&c2, move |w| {
                    assert!(w.upgrade().is_none());
                    assert_eq!(cs2.dropped(), 0, "called back after the drop");
                });
                drop(c2);
                f2.store(true, SeqCst);
                drop(w);
            });
            while !(r1.load(SeqCst) && r2.load(SeqCst)) {
                thread::yield_now();
            }
            drop(obj);
            t1.join().unwrap();
            t2.join().unwrap();
            heap.safepoint();
            assert_eq!(counters.dropped(), 1);
        },
    );
}
