//! The review of the weak-reference object's death decided at its owner's last drop
//! (`sync::heap::weakref_zero`, `Dec::WeakZero`: no trashcan, no general death when the
//! reference has no callback; the version reviewed freed it from inside the decrement, which
//! Miri flagged in nearly every test here), of `Weak::new`'s one-call first reference (`Weak::new_first`)
//! and of `count::try_inc_owner`'s one comparison (twenty-fourth session; written by a helper
//! attacking the change). Each test puts the shortcut where it could go wrong and asserts what
//! must hold: the accounting (`live_objects`, `get_objects`, `get_count`,
//! `get_freeze_count`), callbacks run exactly when due, captures dropped, weak references to
//! the weak-reference object made by another thread racing its owner's last drop, concurrent
//! collections, drops from a collection's reclaim, from finalizers (on an attached thread and
//! on one never attached), from weak callbacks and from callbacks' captures, inside
//! `Heap::detached`, at thread exit, after `Heap::shutdown`, on a thread attached to two heaps,
//! two threads racing the first weak reference, and the owner's count at `LOCAL_MAX`.
//!
//! Natively: `cargo test -p reap-tests --test attack_weakref_death_review`.
//! Miri: `MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p reap-tests --test attack_weakref_death_review`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use reap::sync::{Gc, Heap, Weak};
use reap_tests::shared::{
    fin, hook_node, merged, reps, set_fin, settled_live, weak_objects, within, DropFlag, HookNode,
    Log,
};

/// `heap.live_objects()` once it reads `n` (the threads that used the heap may still be leaving
/// it), or after five seconds: the last read.
fn live_at(heap: &Heap, n: usize) -> usize {
    let start = std::time::Instant::now();
    loop {
        heap.safepoint();
        let live = heap.live_objects();
        if live == n || start.elapsed() > std::time::Duration::from_secs(5) {
            return live;
        }
        thread::yield_now();
    }
}

/// The shortcut accounts each free: after many rounds of a shared reference made and dropped
/// by its owner (automatic collection off), `get_count` has not grown by the rounds (a free
/// left uncounted would be reported every 512), `live_objects` is exact at every step, and no
/// weak-reference object is left in `get_objects`. The same for references with a callback
/// (the general death) interleaved.
#[test]
fn the_shortcut_keeps_get_count_live_objects_and_get_objects_exact() {
    let heap = Heap::new();
    heap.disable();
    heap.collect();
    let o = heap.alloc(7_u64);
    let before = heap.get_count()[0];
    let rounds = reps(3000, 1100);
    for i in 0..rounds {
        let w = Weak::new(&o);
        if i % 64 == 0 {
            assert_eq!(heap.live_objects(), 2, "round {i}");
        }
        if i % 3 == 0 {
            let dropped = Arc::new(AtomicBool::new(false));
            let f = DropFlag(dropped.clone());
            let cb = Weak::with_callback(&o, move |_| {
                let _keep = &f;
                panic!("never called")
            });
            drop(cb);
            assert!(dropped.load(SeqCst), "round {i}: the captures dropped");
        }
        drop(w);
        if i % 64 == 0 {
            assert_eq!(heap.live_objects(), 1, "round {i}: freed at the drop");
        }
    }
    let after = heap.get_count()[0];
    assert!(
        after < before + 512,
        "get_count grew from {before} to {after} over {rounds} rounds: frees not counted"
    );
    assert_eq!(weak_objects(&heap), 0);
    assert_eq!(heap.live_objects(), 1);
    assert_eq!(heap.collect(), 0);
    drop(o);
    assert_eq!(heap.live_objects(), 0);
}

/// A shared reference in the permanent set (`Heap::freeze`) freed by the shortcut leaves it:
/// `get_freeze_count` counts one fewer, and nothing is left for a collection after unfreeze.
#[test]
fn a_frozen_shared_reference_freed_by_the_shortcut_leaves_the_permanent_set() {
    let heap = Heap::new();
    let o = hook_node(&heap, None);
    let w = Weak::new(&o);
    heap.freeze();
    let frozen = heap.get_freeze_count();
    assert!(
        frozen >= 1,
        "the weak-reference object is tracked, so frozen"
    );
    drop(w);
    assert_eq!(heap.get_freeze_count(), frozen - 1);
    assert_eq!(heap.live_objects(), 1);
    assert_eq!(weak_objects(&heap), 0);
    heap.unfreeze();
    assert_eq!(heap.collect(), 0);
    drop(o);
    assert_eq!(heap.live_objects(), 0);
}

/// The owner makes and drops the shared reference in a loop (the shortcut when nobody else
/// took it); another thread takes it through the lock path, makes weak references to the
/// weak-reference object itself (installing a weak-info block on it from that thread), drops
/// its strong handles and upgrades those: the shortcut must never free an object with a
/// block of its own, nor one another thread just took. A third thread collects meanwhile.
#[test]
fn weak_references_to_the_weak_object_made_by_another_thread_race_the_owners_last_drop() {
    within("weak_to_weak_object_race", || {
        let heap = Arc::new(Heap::new());
        let o = heap.alloc(11_u64);
        let rounds = reps(3000, 25);
        let stop = Arc::new(AtomicBool::new(false));
        let upgraded = Arc::new(AtomicUsize::new(0));
        let theirs = o.clone();
        let (s2, u2) = (stop.clone(), upgraded.clone());
        let other = thread::spawn(move || {
            let mut i = 0;
            while !s2.load(SeqCst) || i < 4 {
                i += 1;
                let w = Weak::new(&theirs);
                assert_eq!(w.upgrade().map(|g| *g), Some(11));
                let obj = Weak::as_object(&w);
                let ww = Weak::new(&obj);
                let wcb = Weak::with_callback(&obj, |me| assert!(me.upgrade().is_none()));
                drop(obj);
                drop(w);
                if let Some(again) = ww.upgrade() {
                    // The weak-reference object, alive: a weak reference of `theirs` again.
                    assert!(format!("{:?}", *again).contains("alive: true"));
                    u2.fetch_add(1, SeqCst);
                }
                drop((ww, wcb));
                if cfg!(miri) {
                    thread::yield_now();
                }
            }
        });
        let h2 = heap.clone();
        let s3 = stop.clone();
        let collector = thread::spawn(move || {
            let mut n = 0;
            while !s3.load(SeqCst) && n < reps(200, 3) {
                h2.collect();
                n += 1;
                thread::yield_now();
            }
        });
        for i in 0..rounds {
            let w = Weak::new(&o);
            assert_eq!(w.upgrade().map(|g| *g), Some(11), "round {i}");
            drop(w);
            heap.safepoint();
            if cfg!(miri) {
                thread::yield_now();
            }
        }
        stop.store(true, SeqCst);
        heap.detached(|| {
            other.join().unwrap();
            collector.join().unwrap();
        });
        heap.safepoint();
        assert_eq!(heap.live_objects(), 1, "only the referent");
        drop(o);
        assert_eq!(settled_live(&heap), 0);
    });
}

/// Two threads race to make the first weak reference to each of a series of objects (neither
/// thread attached at the first round: `new_first` attaches): the loser takes the lock path
/// and finds the winner's reference, so the two are one; everything is freed after.
#[test]
fn two_threads_race_the_first_weak_reference() {
    within("first_weak_race", || {
        let heap = Heap::new();
        let rounds = reps(400, 6);
        let objs: Vec<Gc<u64>> = (0..rounds as u64).map(|i| heap.alloc(i)).collect();
        let barrier = Arc::new(Barrier::new(2));
        let spawn = |objs: Vec<Gc<u64>>, b: Arc<Barrier>| {
            thread::spawn(move || {
                let mut out = Vec::new();
                for o in &objs {
                    b.wait();
                    let w = Weak::new(o);
                    assert_eq!(w.upgrade().map(|g| *g), Some(**o));
                    out.push(w);
                }
                b.wait();
                out
            })
        };
        let a = spawn(objs.clone(), barrier.clone());
        let b = spawn(objs.clone(), barrier);
        let (wa, wb) = heap.detached(|| (a.join().unwrap(), b.join().unwrap()));
        for (i, (x, y)) in wa.iter().zip(&wb).enumerate() {
            assert!(Weak::ptr_eq(x, y), "round {i}: two shared references");
            assert!(Weak::ptr_eq(x, &Weak::new(&objs[i])));
        }
        assert_eq!(heap.live_objects(), 2 * rounds);
        drop((wa, wb));
        assert_eq!(live_at(&heap, rounds), rounds);
        drop(objs);
        assert_eq!(settled_live(&heap), 0);
    });
}

/// A thread attached to two heaps alternates between them (its one-entry cache names the other
/// heap at each first weak reference and at each owner's last drop): each heap's count exact
/// at every step, on the main thread and on a fresh one.
#[test]
fn a_thread_on_two_heaps_makes_and_drops_shared_references_alternately() {
    let run = || {
        let (ha, hb) = (Heap::new(), Heap::new());
        let rounds = reps(300, 8);
        for i in 0..rounds {
            let oa = ha.alloc(1_u64);
            let ob = hb.alloc(2_u64);
            let wa = Weak::new(&oa);
            let wb = Weak::new(&ob);
            assert!(Weak::ptr_eq(&wa, &Weak::new(&oa)), "round {i}");
            assert!(Weak::ptr_eq(&wb, &Weak::new(&ob)), "round {i}");
            assert_eq!((ha.live_objects(), hb.live_objects()), (2, 2));
            if i % 2 == 0 {
                drop(wa);
                let _touch = hb.alloc(0_u8);
                drop(wb);
            } else {
                drop(wb);
                let _touch = ha.alloc(0_u8);
                drop(wa);
            }
            assert_eq!((ha.live_objects(), hb.live_objects()), (1, 1), "round {i}");
            drop(oa);
            assert!(Weak::new(&ob).upgrade().is_some());
            drop(ob);
            assert_eq!((ha.live_objects(), hb.live_objects()), (0, 0), "round {i}");
        }
    };
    run();
    thread::spawn(run).join().unwrap();
}

/// In a collection's reclaim, a garbage member's `Drop` makes shared references (and one with
/// a callback) to the other member, drops one (the shortcut, its referent garbage), keeps the
/// others, and makes and drops one to a live object: the kept ones die with their referent
/// (the callback once), the live object's is freed, and the heap empties.
#[test]
fn drops_in_a_collections_reclaim_take_the_shortcut_soundly() {
    let heap = Heap::new();
    let live = heap.alloc(3_u64);
    for round in 0..reps(40, 3) {
        let a = hook_node(&heap, None);
        let b = hook_node(&heap, Some(a.clone()));
        *a.other.lock().unwrap() = Some(b.clone());
        let kept: Arc<Mutex<Vec<Weak<HookNode>>>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let (k, c, l) = (kept.clone(), calls.clone(), live.clone());
        *a.on_drop.lock().unwrap() = Some(Box::new(move |other: Option<&Gc<HookNode>>| {
            let other = other.expect("a member of the cycle");
            let x = Weak::new(other);
            let y = Weak::new(other);
            assert!(Weak::ptr_eq(&x, &y));
            drop(y);
            let cb = Weak::with_callback(other, move |_| {
                c.fetch_add(1, SeqCst);
            });
            k.lock().unwrap().extend([x, cb]);
            let wl = Weak::new(&l);
            assert_eq!(wl.upgrade().map(|g| *g), Some(3));
            drop(wl);
            drop(l);
        }));
        drop((a, b));
        assert_eq!(heap.collect(), 2, "round {round}");
        heap.safepoint();
        let kept = std::mem::take(&mut *kept.lock().unwrap());
        assert_eq!(kept.len(), 2);
        for w in &kept {
            assert!(!w.is_alive() && w.upgrade().is_none(), "round {round}");
        }
        assert_eq!(calls.load(SeqCst), 1, "round {round}: the callback once");
        drop(kept);
        assert_eq!(heap.live_objects(), 1, "round {round}");
        assert_eq!(weak_objects(&heap), 0, "round {round}");
    }
    drop(live);
    assert_eq!(heap.live_objects(), 0);
}

/// A finalizer makes a shared reference to its own object and to another, upgrades and drops
/// them (the shortcut, inside the death), and keeps a third: once on this (attached) thread,
/// once on a thread never attached to the heap (the object merged, its death there inside the
/// gate; `Weak::new` attaches that thread). The kept reference is dead after, everything freed,
/// the finalizer and the drop once each.
#[test]
fn finalizers_make_and_drop_shared_references_on_attached_and_fresh_threads() {
    within("finalizer_weak_refs", || {
        let heap = Heap::new();
        let other = heap.alloc(5_u64);
        for round in 0..reps(40, 4) {
            let log = Log::new();
            let f = fin(&heap, round as u32, &log);
            let kept: Arc<Mutex<Option<Weak<reap_tests::shared::Fin>>>> = Arc::default();
            let (k, o2) = (kept.clone(), other.clone());
            set_fin(&f, move |this| {
                for _ in 0..3 {
                    let w = Weak::new(this);
                    assert!(w.upgrade().is_some());
                    drop(w);
                    let wo = Weak::new(&o2);
                    assert_eq!(wo.upgrade().map(|g| *g), Some(5));
                    drop(wo);
                }
                *k.lock().unwrap() = Some(Weak::new(this));
                drop(o2);
            });
            if round % 2 == 0 {
                drop(f);
            } else {
                let m = merged(f);
                thread::spawn(move || drop(m)).join().unwrap();
            }
            heap.safepoint();
            assert_eq!((log.fin(), log.drops()), (1, 1), "round {round}");
            let w = kept.lock().unwrap().take().expect("the finalizer ran");
            assert!(!w.is_alive() && w.upgrade().is_none(), "round {round}");
            drop(w);
            assert_eq!(live_at(&heap, 1), 1, "round {round}: only `other`");
            assert_eq!(weak_objects(&heap), 0);
        }
        drop(other);
        assert_eq!(settled_live(&heap), 0);
    });
}

/// Inside a weak callback (a death's user code), the last handle of a reference with a
/// callback is dropped: the general death, whose callback box's capture has a `Drop` that
/// itself makes and drops a shared reference (the shortcut, nested in the general death's
/// value drop) and drops the last handle of another shared reference. The inner callback never
/// runs; every capture is dropped; counts exact.
#[test]
fn shortcuts_nested_in_a_callbacks_and_a_captures_drops() {
    /// Makes and drops a shared reference to its object when dropped, and drops its held one.
    struct MakesWeak {
        target: Gc<u64>,
        held: Option<Weak<u64>>,
        done: Arc<AtomicBool>,
    }
    impl Drop for MakesWeak {
        fn drop(&mut self) {
            let w = Weak::new(&self.target);
            assert_eq!(w.upgrade().map(|g| *g), Some(2));
            drop(w);
            drop(self.held.take());
            assert!(Weak::new(&self.target).is_alive());
            self.done.store(true, SeqCst);
        }
    }
    let heap = Heap::new();
    for round in 0..reps(60, 4) {
        let a = heap.alloc(1_u64);
        let b = heap.alloc(2_u64);
        let wb = Weak::new(&b);
        let done = Arc::new(AtomicBool::new(false));
        let inner_ran = Arc::new(AtomicBool::new(false));
        let cap = MakesWeak {
            target: b.clone(),
            held: Some(wb),
            done: done.clone(),
        };
        let ir = inner_ran.clone();
        let inner = Weak::with_callback(&b, move |_| {
            let _keep = &cap;
            ir.store(true, SeqCst);
        });
        let slot = Arc::new(Mutex::new(Some(inner)));
        let s2 = slot.clone();
        let outer_ran = Arc::new(AtomicUsize::new(0));
        let or = outer_ran.clone();
        let outer = Weak::with_callback(&a, move |_| {
            drop(s2.lock().unwrap().take());
            or.fetch_add(1, SeqCst);
        });
        drop(a);
        assert_eq!(outer_ran.load(SeqCst), 1, "round {round}");
        assert!(done.load(SeqCst), "round {round}: the capture dropped");
        assert!(
            !inner_ran.load(SeqCst),
            "round {round}: the inner callback ran"
        );
        drop(outer);
        assert_eq!(heap.live_objects(), 1, "round {round}");
        assert_eq!(weak_objects(&heap), 0, "round {round}");
        drop(b);
        assert_eq!(heap.live_objects(), 0, "round {round}");
    }
}

/// The owner's shared reference dropped inside `Heap::detached` (a foreign drop, queued to the
/// owner), then `Weak::new` inside the section finds it and outside again: one reference,
/// alive while held, and freed once its last handle goes.
#[test]
fn a_shared_reference_dropped_and_found_again_inside_detached() {
    let heap = Heap::new();
    let o = heap.alloc(4_u64);
    for round in 0..reps(50, 4) {
        let w = Weak::new(&o);
        let w2 = heap.detached(|| {
            drop(w);
            let w2 = Weak::new(&o);
            assert_eq!(w2.upgrade().map(|g| *g), Some(4));
            w2
        });
        heap.safepoint();
        assert!(Weak::ptr_eq(&w2, &Weak::new(&o)), "round {round}");
        assert_eq!(w2.upgrade().map(|g| *g), Some(4));
        assert_eq!(heap.live_objects(), 2, "round {round}");
        drop(w2);
        heap.safepoint();
        assert_eq!(heap.live_objects(), 1, "round {round}");
    }
    drop(o);
    assert_eq!(heap.live_objects(), 0);
}

/// At thread exit, a thread-local's destructor drops the thread's own shared reference and
/// makes and drops new ones: nothing leaks, nothing is freed twice.
#[test]
fn thread_exit_destructors_drop_and_make_shared_references() {
    struct AtExit {
        o: Gc<u64>,
        w: Option<Weak<u64>>,
        log: Arc<Log>,
    }
    impl Drop for AtExit {
        fn drop(&mut self) {
            let alive = self.w.as_ref().is_some_and(|w| w.upgrade().is_some());
            drop(self.w.take());
            let w = Weak::new(&self.o);
            let up = w.upgrade().map(|g| *g);
            drop(w);
            self.log.see(format!("{alive} {up:?}"));
        }
    }
    thread_local! {
        static HELD: std::cell::RefCell<Option<AtExit>> = const { std::cell::RefCell::new(None) };
    }
    within("thread_exit_weak", || {
        let heap = Heap::new();
        let o = heap.alloc(8_u64);
        let log = Log::new();
        for _ in 0..reps(20, 2) {
            let (o2, l2) = (o.clone(), log.clone());
            let t = thread::spawn(move || {
                let w = Weak::new(&o2);
                HELD.with(|h| {
                    *h.borrow_mut() = Some(AtExit {
                        o: o2,
                        w: Some(w),
                        log: l2,
                    })
                });
            });
            heap.detached(|| t.join().unwrap());
        }
        assert!(
            log.seen().iter().all(|s| s == "true Some(8)"),
            "{:?}",
            log.seen()
        );
        assert_eq!(log.seen().len(), reps(20, 2));
        assert_eq!(live_at(&heap, 1), 1);
        drop(o);
        assert_eq!(settled_live(&heap), 0);
    });
}

/// After `Heap::shutdown` (an object still held), shared references are made and dropped:
/// the shortcut still frees and accounts them.
#[test]
fn shared_references_after_shutdown() {
    let heap = Heap::new();
    let o = heap.alloc(6_u64);
    let w0 = Weak::new(&o);
    assert_eq!(heap.shutdown().ok(), Some(0));
    drop(w0);
    assert_eq!(heap.live_objects(), 1);
    for i in 0..reps(100, 5) {
        let w = Weak::new(&o);
        assert_eq!(w.upgrade().map(|g| *g), Some(6), "round {i}");
        drop(w);
        assert_eq!(heap.live_objects(), 1, "round {i}");
    }
    drop(o);
    assert_eq!(heap.live_objects(), 0);
}

/// `try_inc_owner` (the owner's look-up of the shared reference, `owner_shared`) with the
/// reference's owner count at `LOCAL_MAX - 1` (a plain increment to `LOCAL_MAX`) and at
/// `LOCAL_MAX` (a spill into the shared count), then back and forth over the spill's result:
/// exact counts, the same reference, and one free once the last handle goes (half of them on
/// another thread). About 1 GiB of handles.
#[test]
#[cfg(not(miri))] // 2^27 handles
fn owner_shared_at_local_max_minus_one_and_at_the_spill() {
    const LOCAL_MAX: usize = 1 << 27;
    let heap = Heap::new();
    let o = heap.alloc(9_u64);
    let w = Weak::new(&o);
    let mut v: Vec<Weak<u64>> = Vec::with_capacity(LOCAL_MAX + 8);
    for _ in 0..LOCAL_MAX - 2 {
        v.push(w.clone());
    }
    let count = |w: &Weak<u64>| Gc::strong_count(&Weak::as_object(w)) - 1;
    assert_eq!(count(&w), LOCAL_MAX - 1);
    // Owner count LOCAL_MAX - 1: incremented to LOCAL_MAX.
    let w3 = Weak::new(&o);
    assert!(Weak::ptr_eq(&w3, &w));
    assert_eq!(count(&w), LOCAL_MAX);
    v.push(w3);
    // Owner count LOCAL_MAX (`count` above cloned and dropped, spilling): one more each.
    for i in 0..4 {
        let w4 = Weak::new(&o);
        assert!(Weak::ptr_eq(&w4, &w), "step {i}");
        assert_eq!(count(&w), LOCAL_MAX + 1 + i);
        v.push(w4);
    }
    assert_eq!(w.upgrade().map(|g| *g), Some(9));
    let theirs = v.split_off(v.len() / 2);
    thread::spawn(move || drop(theirs)).join().unwrap();
    heap.safepoint();
    assert_eq!(count(&w), v.len() + 1);
    drop(v);
    heap.safepoint();
    assert_eq!(count(&w), 1);
    assert_eq!(heap.live_objects(), 2);
    drop(w);
    heap.safepoint();
    assert_eq!(heap.live_objects(), 1);
    assert_eq!(weak_objects(&heap), 0);
    drop(o);
    assert_eq!(heap.live_objects(), 0);
}
