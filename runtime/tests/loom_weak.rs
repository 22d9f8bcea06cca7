//! loom models of weak references against the last strong drop (issue 12, models 1, 6 and
//! 26), of two first weak references made at once (models 13, 14 and 37), and of a weak reference
//! dying while its referent dies on another thread (models 18 and 19), and of a weak
//! reference's owner dropping it while other threads reach it through its referent (models 31
//! to 33).
//! `RUSTFLAGS="--cfg reap_loom" cargo test -p reap --release --test loom_weak`
#![cfg(reap_loom)]

mod common;

use common::{model, model_bounded, setup, setup_obj, upgrade_twice, Obj, Quiet};
use loom::sync::atomic::Ordering::SeqCst;
use loom::thread;
use reap::sync::{Gc, Weak};

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

/// Model 13: two threads make the object's first weak reference at once, each holding a
/// strong handle: both take `Weak::new`'s lock-free path (the block installed by one
/// compare-and-swap of the header's `meta`), and one of them loses and takes the lock path.
/// Both must get the same shared reference (a callback-less reference is shared while it
/// lives), and no block or reference may leak (loom's leak tracking). Bounded (4 preemptions):
/// unbounded, the two allocations on each side multiply the interleavings past 80,000 at 6.
#[test]
fn two_first_weak_references_at_once() {
    model_bounded("two_first_weak_references_at_once", Some(4), || {
        let (heap, counters, obj) = setup_obj();
        let c = obj.clone();
        let t = thread::spawn(move || {
            let w = Weak::new(&c);
            assert_eq!(w.upgrade().map(|g| g.value), Some(7));
            drop(c);
            w
        });
        let w = Weak::new(&obj);
        let other = t.join().unwrap();
        assert!(Weak::ptr_eq(&w, &other), "two shared weak references");
        drop(obj);
        heap.safepoint();
        assert_eq!(counters.dropped(), 1);
        assert!(w.upgrade().is_none() && other.upgrade().is_none());
    });
}

/// Model 37: the owner makes the object's first weak reference while it holds the only
/// strong reference it counts, against another thread that made one from a handle of its own
/// (counted in the shared word) and drops that handle. When the owner finds itself the only
/// holder (`count::uniquely_referenced`) it installs its block with a plain store, and must
/// then see the other thread's block, if that thread's drop came first, and not write over
/// it: both get the same shared reference, and nothing leaks (twenty-second session).
#[test]
fn first_weak_reference_when_the_owner_holds_the_only_reference() {
    model_bounded(
        "first_weak_reference_when_the_owner_holds_the_only_reference",
        Some(4),
        || {
            let (heap, counters, obj) = setup_obj();
            let c = obj.clone();
            // A handle counted in the shared word, made on another thread, which hands back
            // the owner's.
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
            let w = Weak::new(&obj);
            let other = t.join().unwrap();
            assert!(Weak::ptr_eq(&w, &other), "two shared weak references");
            drop(obj);
            heap.safepoint();
            assert_eq!(counters.dropped(), 1);
            assert!(w.upgrade().is_none() && other.upgrade().is_none());
        },
    );
}

/// Model 14: a first weak reference without a callback (`Weak::new`'s lock-free install)
/// against one with a callback (installing the block under the lock) on another thread. The
/// callback runs once, after the object's death has cleared both references. Bounded as
/// model 13.
#[test]
fn first_weak_reference_against_a_callback_reference() {
    model_bounded(
        "first_weak_reference_against_a_callback_reference",
        Some(4),
        || {
            let (heap, counters, obj) = setup_obj();
            let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let c = obj.clone();
            let n = calls.clone();
            let t = thread::spawn(move || {
                let w = Weak::with_callback(&c, move |w| {
                    assert!(w.upgrade().is_none(), "called back before the clear");
                    n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                });
                drop(c);
                w
            });
            let w = Weak::new(&obj);
            let cb = t.join().unwrap();
            drop(obj);
            heap.safepoint();
            assert_eq!(counters.dropped(), 1);
            assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
            assert!(w.upgrade().is_none() && cb.upgrade().is_none());
        },
    );
}

/// Models 18 and 19: the weak reference `make` gives (made detached, as the object is) has its
/// last handle dropped on one thread (its death unlists it from the referent's block) while the
/// referent's last handle goes on another (its death clears the block, or skips the clearing
/// and its lock when it reads that nothing is listed). Both objects are merged from birth
/// (made through the gate), so each dies on the thread that drops it, at the same time as the
/// other. loom checks every access to the block's lists (loom cells) against the others, and
/// its leak tracking that the object, the reference and the block are all freed; the weak
/// reference reads cleared once the value is dropped.
fn weak_death_against_referent_death(make: impl FnOnce(&Gc<Obj>) -> Weak<Obj>) {
    let (heap, counters) = setup();
    let obj = heap.detached(|| common::obj(&heap, &counters));
    let w = heap.detached(|| make(&obj));
    let cs = counters.clone();
    let t = thread::spawn(move || {
        // Once the value is dropped (a `SeqCst` read of the death's count), the reference
        // reads cleared: a death clears before it drops (SEMANTICS 3.1).
        if cs.dropped() == 1 {
            assert!(
                !w.is_alive(),
                "value dropped before its weak reference was cleared"
            );
        }
        drop(w);
    });
    drop(obj);
    t.join().unwrap();
    assert_eq!(counters.dropped(), 1);
}

/// Model 18: [`weak_death_against_referent_death`] with the shared callback-less reference.
#[test]
fn weak_reference_dies_against_its_referents_death() {
    model("weak_reference_dies_against_its_referents_death", || {
        weak_death_against_referent_death(Weak::new);
    });
}

/// Model 19: [`weak_death_against_referent_death`] with a callback: it runs at most once,
/// after the clear, and only if the object died while the weak reference was alive.
#[test]
fn weak_reference_with_callback_dies_against_its_referents_death() {
    model(
        "weak_reference_with_callback_dies_against_its_referents_death",
        || {
            let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let n = calls.clone();
            weak_death_against_referent_death(move |obj| {
                Weak::with_callback(obj, move |w| {
                    assert!(w.upgrade().is_none(), "called back before the clear");
                    n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                })
            });
            assert!(calls.load(std::sync::atomic::Ordering::Relaxed) <= 1);
        },
    );
}

/// Model 26 (written by the sixteenth session's review): a foreign thread makes the first weak
/// reference through a clone, drops the clone and upgrades twice, against the owner's last
/// drop of an object with a finalizer. The referent's mark is its tagged `meta`, which the
/// owner's fast-death test reads `Relaxed` after an `Acquire` load of the shared word: it must
/// see the tag whenever the word it read is the foreign drop's. Asserted: an upgrade that
/// returns the object does so before the finalizer began; once one returned `None`, the next
/// does too; finalized once, dropped and freed once. Exhaustive.
#[test]
fn foreign_weak_then_drop_against_owners_last_drop() {
    model("foreign_weak_then_drop_against_owners_last_drop", || {
        let (heap, counters) = setup();
        let obj = heap.alloc(Quiet {
            counters: counters.clone(),
        });
        let c = obj.clone();
        let cs = counters.clone();
        let t = thread::spawn(move || {
            let w = Weak::new(&c);
            drop(c);
            upgrade_twice(&w, Some(&cs));
        });
        drop(obj);
        t.join().unwrap();
        heap.safepoint();
        assert_eq!(counters.finalized(), 1);
        assert_eq!(counters.dropped(), 1);
    });
}

/// Model 29 (seventeenth session): the owner's last drop of an object whose only weak
/// reference dies on another thread meanwhile. The other thread makes the weak reference from
/// a clone (counted in the shared word), drops the clone and says so; the owner then drops its
/// last reference while the other thread upgrades, drops the weak reference (its death
/// unlists it) and uses and drops what the upgrade returned. The owner's last drop takes the
/// fast death if no weak reference is listed and the word is zero (`count::merge_zero_local`):
/// it must load the listed count before the word, or it can read the zero word before the
/// upgrade and the zero count after the unlisting, and free the object the other thread
/// holds. Asserted: an upgrade that returns the object finds it undropped while it holds it,
/// its value whole; dropped and freed once. With the word loaded only before the count, loom
/// finds a use of the freed object at preemption bound 2. Preemption bound 5 (205,031
/// executions, 19 s; the owner's wait for the other thread's signal makes it grow fast:
/// unbounded it ran past ten minutes).
#[test]
fn weak_reference_dies_on_another_thread_against_owners_last_drop() {
    model_bounded(
        "weak_reference_dies_on_another_thread_against_owners_last_drop",
        Some(5),
        || {
            let (heap, counters, obj) = setup_obj();
            // Cloned with no owner id: counted in the shared word, so that the other thread's
            // drop of it takes the word back to zero (an owner's clone dropped there would
            // queue the object).
            let c = heap.detached(|| obj.clone());
            let ready = loom::sync::Arc::new(loom::sync::atomic::AtomicBool::new(false));
            let (cs, r) = (counters.clone(), ready.clone());
            let t = thread::spawn(move || {
                let w = Weak::new(&c);
                drop(c);
                r.store(true, SeqCst);
                let g = w.upgrade();
                drop(w);
                if let Some(g) = g {
                    assert_eq!(cs.dropped(), 0, "an upgraded object was dropped while held");
                    assert_eq!(g.value, 7);
                    drop(g);
                }
            });
            while !ready.load(SeqCst) {
                thread::yield_now();
            }
            drop(obj);
            t.join().unwrap();
            heap.safepoint();
            assert_eq!(counters.dropped(), 1);
        },
    );
}

/// Model 31 (nineteenth session): the owner of an object's shared weak reference drops its
/// last handle to it (the weak reference's death, which decides "no other reference" under the
/// referent's weak lock and unlists there, with no compare-and-swap:
/// `sync::weak::dies_unlisted`) while another thread asks `Weak::new` for the object's weak
/// reference, which takes the shared one (a try-increment under that lock) if it is still
/// listed and alive, or makes a new one. Asserted: the other thread's reference upgrades to
/// the object while it holds the object; each weak reference is freed exactly once (a double
/// death would free it twice, which loom's allocator reports; a lost one leaks); the object
/// is dropped once. Exhaustive.
#[test]
fn shared_weak_reference_dies_against_weak_new_on_another_thread() {
    model(
        "shared_weak_reference_dies_against_weak_new_on_another_thread",
        || {
            owner_drops_shared_weak_against(|c| {
                let w2 = Weak::new(&c);
                let g = w2
                    .upgrade()
                    .expect("upgraded while a strong handle is held");
                assert_eq!(g.value, 7);
                drop(g);
                drop(w2);
                drop(c);
            });
        },
    );
}

/// Models 31 and 33: this thread, the owner, drops the object's shared weak reference while
/// `other` runs on another thread with a strong handle to the object (counted in the shared
/// word: made with no owner id, so that its drop there needs no merge); then the object is
/// dropped once and everything freed (loom's leak tracking).
fn owner_drops_shared_weak_against(other: impl FnOnce(Gc<Obj>) + Send + 'static) {
    let (heap, counters, obj) = setup_obj();
    let w = Weak::new(&obj);
    let c = heap.detached(|| obj.clone());
    let t = thread::spawn(move || other(c));
    drop(w);
    t.join().unwrap();
    drop(obj);
    heap.safepoint();
    assert_eq!(counters.dropped(), 1);
}

/// Model 32 (nineteenth session): the owner of a weak reference with a callback drops its last
/// handle to it (the lock-decided death of model 31) while the referent dies on another
/// thread, whose death takes a reference to each live weak reference with a callback (a
/// try-increment under the same lock) before clearing it. Either the weak reference is
/// unlisted first (no callback) or the referent's death holds it, and its callback runs once,
/// after the clear, and then frees it. Asserted: at most one call, after the clear; the object
/// dropped once; both freed (loom's leak tracking). Preemption bound 6 (374,178 executions,
/// about 20 s; unbounded it ran past ten minutes).
#[test]
fn weak_reference_with_callback_dies_on_its_owner_against_its_referents_death() {
    model_bounded(
        "weak_reference_with_callback_dies_on_its_owner_against_its_referents_death",
        Some(6),
        || {
            let (heap, counters, obj) = setup_obj();
            let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let n = calls.clone();
            let cb = Weak::with_callback(&obj, move |w| {
                assert!(w.upgrade().is_none(), "called back before the clear");
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
            // The referent's last reference goes to the other thread: counted in the shared
            // word, then the owner's own dropped (the object is merged, its count that one).
            let c = heap.detached(|| obj.clone());
            drop(obj);
            let t = thread::spawn(move || drop(c));
            drop(cb);
            t.join().unwrap();
            heap.safepoint();
            assert_eq!(counters.dropped(), 1);
            assert!(calls.load(std::sync::atomic::Ordering::Relaxed) <= 1);
        },
    );
}

/// Model 33 (the nineteenth session's review): model 31, but the other thread, holding the
/// shared weak reference it got by `Weak::new` (a try-increment under the referent's lock),
/// makes a weak reference *to that weak-reference object* (`Weak::new(&Weak::as_object(..))`,
/// which installs a weak-information block on it without the lock), drops its strong handle
/// to it, and upgrades the new weak reference. `dies_unlisted` is chosen by the owner's
/// `merge_zero_local` on a `!has_weak_info()` read *before* the referent's lock, and the
/// upgrade of a weak reference to the weak-reference object try-increments it under the
/// weak-reference object's own stripe, not under its referent's: so an upgrade after the
/// owner's verdict may take a reference to a weak-reference object already declared dead
/// (its word still `MAYBE_WEAK`, count 0: `try_inc` accepts it). It failed that way (a
/// segmentation fault, at preemption bound 4) until `dies_unlisted` looked at
/// `has_weak_info` again after its `Acquire` load of the word. Asserted: an upgrade that
/// returns the weak-reference object finds it whole; everything dropped and freed once.
/// Preemption bound 4 (87,294 executions).
#[test]
fn weak_reference_to_the_shared_weak_reference_against_its_owners_last_drop() {
    model_bounded(
        "weak_reference_to_the_shared_weak_reference_against_its_owners_last_drop",
        Some(4),
        || {
            owner_drops_shared_weak_against(|c| {
                let w2 = Weak::new(&c);
                let o = Weak::as_object(&w2);
                drop(w2);
                let ww = Weak::new(&o);
                drop(o);
                if let Some(g) = ww.upgrade() {
                    // The weak-reference object, held: its target is its referent, alive
                    // (`c` holds it) or cleared, never freed memory.
                    let _ = format!("{:?}", &*g);
                    assert!(
                        ww.is_alive(),
                        "a weak reference to a weak-reference object this thread holds was cleared"
                    );
                    drop(g);
                }
                drop(ww);
                drop(c);
            });
        },
    );
}
