//! The review of `Weak::new`'s look-up of the shared weak reference without the lock
//! (`weak::owner_shared`; issue 12, twenty-third session, written by a helper attacking the
//! change). Each test puts the look-up where its argument could break: the slot changed by
//! another thread (a dying reference replaced), the listed reference dead and its block reused
//! by this thread after a remote free (by weak references to *other* referents, so that a stale
//! slot would hand out a live weak reference of this thread to the wrong object), a slab
//! inherited from an exited thread, orphans merged by a collection, collections running
//! concurrently, a collection's clearing followed by `Weak::new` from a garbage `Drop`,
//! finalizers and weak callbacks calling `Weak::new`, weak references to the weak-reference
//! object, a thread attached to two heaps, `Heap::detached` sections, and thread-exit
//! destructors. Each asserts one shared reference at a time (`Weak::ptr_eq`), that what
//! `Weak::new` returns is alive and upgrades to *its* referent, and that the heap empties.
//!
//! Natively: `cargo test -p reap-tests --test attack_owner_shared_review`.
//! Miri: `MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p reap-tests --test attack_owner_shared_review`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;

use reap::sync::{Gc, Heap, Weak};
use reap_tests::shared::{
    dropped, fin, hook_node, merged, reps, set_fin, settled_live, Dropped, Fin, HookNode, Log,
};

/// Asserts that `w`, just returned by `Weak::new(obj)`, is alive and upgrades to `obj`.
fn check_fresh<T: Send + Sync + 'static>(w: &Weak<T>, obj: &Gc<T>, what: &str) {
    assert!(
        w.is_alive(),
        "{what}: a dead weak reference for a live referent"
    );
    let up = w
        .upgrade()
        .unwrap_or_else(|| panic!("{what}: upgrade refused"));
    assert!(
        Gc::ptr_eq(&up, obj),
        "{what}: the weak reference names another object"
    );
}

/// Case 1: The shared reference's death on another thread (merged: the owner gave its last
/// local handle up) frees its block remotely into the owner's slab; the owner then makes weak
/// references to *other* objects, taking the remote stack and reusing that block for a
/// weak-reference object it owns, of another referent. A stale slot would now name a live
/// weak-reference object of this thread: `Weak::new(&obj)` must return one that upgrades to
/// `obj`, never the other referent's.
#[test]
fn remote_death_then_block_reused_by_a_weak_reference_to_another_object() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let obj = dropped(&heap, &drops);
    let others: Vec<_> = (0..16).map(|_| dropped(&heap, &drops)).collect();
    for round in 0..reps(200, 4) {
        let w = Weak::new(&obj);
        check_fresh(&w, &obj, "first");
        // Its only handle goes to another thread; this thread's drop merges it there, and the
        // other thread's drop is its death, its block pushed onto this slab's remote stack.
        let (tx, rx) = mpsc::channel::<Weak<Dropped>>();
        let t = thread::spawn(move || {
            let w: Weak<Dropped> = rx.recv().unwrap();
            drop(w);
        });
        let c = w.clone();
        tx.send(c).unwrap();
        drop(w);
        heap.detached(|| t.join().unwrap());
        heap.safepoint();
        // Many weak-reference objects of this thread, to other referents (each a first
        // reference: the lock-free install), reusing freed blocks.
        let ws: Vec<_> = others.iter().map(Weak::new).collect();
        let fills: Vec<_> = (0..32).map(|i| heap.alloc([i as u64; 4])).collect();
        let again = Weak::new(&obj);
        check_fresh(&again, &obj, &format!("round {round}"));
        let third = Weak::new(&obj);
        assert!(
            Weak::ptr_eq(&again, &third),
            "round {round}: two shared references"
        );
        for (o, ow) in others.iter().zip(&ws) {
            check_fresh(ow, o, "other");
            assert!(!Weak::ptr_eq(ow, &again));
        }
        drop((ws, fills, again, third));
    }
    drop(others);
    drop(obj);
    heap.safepoint();
    assert_eq!(drops.load(SeqCst), 17);
    assert_eq!(heap.live_objects(), 0);
}

/// Case 2: The shared reference has a weak reference with a callback; its death (on another thread,
/// after a merge) runs that callback while it is still listed, dying. There, `Weak::new` of the
/// referent replaces it (the locked path) with one of the callback's thread, and a second
/// `Weak::new` there takes that one without the lock. Then the first owner finds it too.
#[test]
fn a_replacement_in_the_locked_path_then_the_lock_free_look_up_on_its_thread() {
    let heap = Arc::new(Heap::new());
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let obj = dropped(&heap, &drops);
    for round in 0..reps(60, 3) {
        let w = Weak::new(&obj);
        let made: Arc<Mutex<Option<Weak<Dropped>>>> = Arc::default();
        let (o, m) = (obj.clone(), made.clone());
        let of_w = Weak::with_callback(&Weak::as_object(&w), move |_| {
            let fresh = Weak::new(&o);
            check_fresh(&fresh, &o, "in the callback");
            let again = Weak::new(&o);
            assert!(
                Weak::ptr_eq(&fresh, &again),
                "two shared references in the callback"
            );
            // Handles to it dropped here, on its own thread, while one survives.
            drop(again);
            *m.lock().unwrap() = Some(fresh);
        });
        // `w` merged, its last handle on another thread, which runs its death.
        let (tx, rx) = mpsc::channel::<Weak<Dropped>>();
        let h = heap.clone();
        let t = thread::spawn(move || {
            h.safepoint();
            let w = rx.recv().unwrap();
            drop(w);
            h.safepoint();
        });
        tx.send(w.clone()).unwrap();
        drop(w);
        heap.detached(|| t.join().unwrap());
        heap.safepoint();
        let fresh = made.lock().unwrap().take().expect("the callback ran");
        check_fresh(&fresh, &obj, &format!("round {round}"));
        let mine = Weak::new(&obj);
        assert!(
            Weak::ptr_eq(&mine, &fresh),
            "round {round}: two shared references"
        );
        assert!(of_w.upgrade().is_none());
        drop((fresh, mine, of_w));
        heap.safepoint();
    }
    drop(obj);
    heap.safepoint();
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(settled_live(&heap), 0);
}

/// Case 3: The shared reference's death on this thread (it has a weak reference of its own, so it
/// merges and runs callbacks while listed): the callback makes a new shared reference, drops
/// it at once (its own death, nested in the first), makes another, and the lock-free
/// look-up must find the live one each time.
#[test]
fn nested_deaths_of_shared_references_inside_a_callback() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let obj = dropped(&heap, &drops);
    let w = Weak::new(&obj);
    let kept: Arc<Mutex<Vec<Weak<Dropped>>>> = Arc::default();
    let (o, k) = (obj.clone(), kept.clone());
    let of_w = Weak::with_callback(&Weak::as_object(&w), move |_| {
        for i in 0..4 {
            let a = Weak::new(&o);
            check_fresh(&a, &o, "a");
            let b = Weak::new(&o);
            assert!(Weak::ptr_eq(&a, &b), "{i}");
            // A weak reference to the new one, with a callback that makes yet another.
            let o2 = o.clone();
            let k2 = k.clone();
            let inner = Weak::with_callback(&Weak::as_object(&a), move |_| {
                let c = Weak::new(&o2);
                check_fresh(&c, &o2, "inner");
                assert!(Weak::ptr_eq(&c, &Weak::new(&o2)));
                k2.lock().unwrap().push(c);
            });
            drop((a, b));
            k.lock().unwrap().push(Weak::new(&o));
            drop(inner);
            let k = k.lock().unwrap();
            for pair in k.windows(2) {
                assert!(
                    Weak::ptr_eq(&pair[0], &pair[1]),
                    "{i}: two live shared references"
                );
            }
        }
    });
    drop(w);
    heap.safepoint();
    {
        let k = kept.lock().unwrap();
        assert!(!k.is_empty());
        let mine = Weak::new(&obj);
        for x in k.iter() {
            assert!(Weak::ptr_eq(x, &mine));
            check_fresh(x, &obj, "kept");
        }
    }
    drop(of_w);
    drop(obj);
    heap.safepoint();
    assert_eq!(drops.load(SeqCst), 1);
    assert!(kept.lock().unwrap().iter().all(|w| w.upgrade().is_none()));
    kept.lock().unwrap().clear();
    heap.safepoint();
    assert_eq!(heap.live_objects(), 0);
}

/// Case 4: A thread makes the shared reference and exits; a collection merges its orphans (or
/// not); the next thread takes its slab over, finds the reference (never its own), drops the
/// last handle of it there (freeing it into the slab it now owns), reuses the block with weak
/// references to other objects, and makes a new one, which it then takes without the lock.
#[test]
fn an_inherited_slab_with_and_without_orphan_merging() {
    let heap = Arc::new(Heap::new());
    let drops = Arc::new(AtomicUsize::new(0));
    let obj = {
        heap.safepoint();
        dropped(&heap, &drops)
    };
    for round in 0..reps(40, 3) {
        let (h, o) = (heap.clone(), obj.clone());
        let w = thread::spawn(move || {
            h.safepoint();
            let w = Weak::new(&o);
            let _pad: Vec<_> = (0..4).map(|i| h.alloc(i as u64)).collect();
            assert!(Weak::ptr_eq(&w, &Weak::new(&o)));
            w
        })
        .join()
        .unwrap();
        if round % 2 == 0 {
            heap.collect();
        }
        let (h, o, d) = (heap.clone(), obj.clone(), drops.clone());
        let w2 = thread::spawn(move || {
            h.safepoint();
            let again = Weak::new(&o);
            assert!(
                Weak::ptr_eq(&again, &w),
                "round {round}: two shared references"
            );
            check_fresh(&again, &o, "inherited");
            drop((again, w));
            let others: Vec<_> = (0..8).map(|_| dropped(&h, &d)).collect();
            let ows: Vec<_> = others.iter().map(Weak::new).collect();
            let fresh = Weak::new(&o);
            check_fresh(&fresh, &o, "fresh");
            let again = Weak::new(&o);
            assert!(Weak::ptr_eq(&fresh, &again));
            for (x, xw) in others.iter().zip(&ows) {
                check_fresh(xw, x, "other");
            }
            drop((ows, others));
            fresh
        })
        .join()
        .unwrap();
        check_fresh(&w2, &obj, "back on the main thread");
        assert!(Weak::ptr_eq(&w2, &Weak::new(&obj)));
        drop(w2);
        heap.safepoint();
    }
    drop(obj);
    heap.safepoint();
    assert_eq!(drops.load(SeqCst), 1 + 8 * reps(40, 3));
    assert_eq!(settled_live(&heap), 0);
}

/// Case 5: Collections run while two threads make and drop weak references to shared objects (and
/// to objects of garbage cycles that the collections clear): every `Weak::new` pair is one
/// reference, alive, naming its object.
#[test]
fn collections_concurrent_with_the_look_up() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let objs: Vec<_> = (0..4).map(|_| dropped(&heap, &drops)).collect();
    let rounds = reps(3000, 20);
    let stop = AtomicBool::new(false);
    // This thread is attached: it waits for the others detached, so collections can stop it.
    heap.detached(|| {
        thread::scope(|s| {
            for t in 0..2 {
                let (objs, heap, stop) = (objs.clone(), &heap, &stop);
                s.spawn(move || {
                    heap.safepoint();
                    for i in 0..rounds {
                        let o = &objs[(i + t) % objs.len()];
                        let w = Weak::new(o);
                        let again = Weak::new(o);
                        assert!(Weak::ptr_eq(&w, &again), "thread {t} round {i}");
                        check_fresh(&w, o, "concurrent");
                        // Garbage cycles with weak references to them, for the collections.
                        if i % 16 == 0 {
                            let a = hook_node(heap, None);
                            let b = hook_node(heap, Some(a.clone()));
                            *a.other.lock().unwrap() = Some(b.clone());
                            let wa = Weak::new(&a);
                            assert!(Weak::ptr_eq(&wa, &Weak::new(&a)));
                            drop((a, b));
                            drop(wa);
                        }
                        if i % 32 == 0 {
                            heap.safepoint();
                        }
                    }
                    stop.store(true, SeqCst);
                });
            }
            let (heap, stop) = (&heap, &stop);
            s.spawn(move || {
                heap.safepoint();
                let mut n = 0;
                while !stop.load(SeqCst) || n < 2 {
                    heap.collect();
                    n += 1;
                }
            });
        })
    });
    heap.collect();
    drop(objs);
    heap.safepoint();
    heap.collect();
    assert_eq!(drops.load(SeqCst), 4);
    assert_eq!(settled_live(&heap), 0);
}

/// Case 6: A garbage cycle whose members have shared weak references owned by this thread: the
/// collection clears them; then, in the reclaim, a member's `Drop` makes weak references to
/// the other member (garbage, not yet freed): the first takes the lock path, the second the
/// lock-free one, and they are one. They are dead once the collection is over.
#[test]
fn weak_new_on_a_garbage_object_from_a_drop_in_the_reclaim() {
    let heap = Heap::new();
    heap.safepoint();
    for round in 0..reps(40, 3) {
        let a = hook_node(&heap, None);
        let b = hook_node(&heap, Some(a.clone()));
        *a.other.lock().unwrap() = Some(b.clone());
        let (wa, wb) = (Weak::new(&a), Weak::new(&b));
        assert!(Weak::ptr_eq(&wb, &Weak::new(&b)));
        let made: Arc<Mutex<Vec<Weak<HookNode>>>> = Arc::default();
        for n in [&a, &b] {
            let m = made.clone();
            *n.on_drop.lock().unwrap() = Some(Box::new(move |other: Option<&Gc<HookNode>>| {
                let other = other.expect("a member of the cycle");
                let x = Weak::new(other);
                let y = Weak::new(other);
                assert!(Weak::ptr_eq(&x, &y), "two shared references in the reclaim");
                m.lock().unwrap().push(x);
                drop(y);
            }));
        }
        drop((a, b));
        assert!(wa.is_alive() && wb.is_alive());
        heap.collect();
        heap.safepoint();
        assert!(
            wa.upgrade().is_none() && wb.upgrade().is_none(),
            "round {round}"
        );
        let made = std::mem::take(&mut *made.lock().unwrap());
        assert_eq!(made.len(), 2);
        for w in &made {
            assert!(
                w.upgrade().is_none() && !w.is_alive(),
                "round {round}: outlived its referent"
            );
            assert!(!Weak::ptr_eq(w, &wa) && !Weak::ptr_eq(w, &wb));
        }
        drop((made, wa, wb));
        heap.safepoint();
        assert_eq!(heap.live_objects(), 0, "round {round}");
    }
}

/// Case 7: A finalizer calls `Weak::new` on its own object: the object dies on another thread (which
/// becomes its owner for the finalizer), whose shared reference is or is not that thread's.
/// The reference it gets is the listed one, alive while the finalizer runs, cleared after; one
/// round resurrects.
#[test]
fn finalizer_makes_weak_references_to_its_object() {
    let heap = Arc::new(Heap::new());
    heap.safepoint();
    for round in 0..reps(40, 4) {
        let log = Log::new();
        // Merged (its one handle on this thread, counted in the shared word), so that it dies
        // on the thread that drops that handle, which becomes its owner for the finalizer.
        let f = merged(fin(&heap, round as u32, &log));
        let other_made = round % 2 == 0;
        let mine = (!other_made).then(|| Weak::new(&f));
        let got: Arc<Mutex<Vec<Weak<Fin>>>> = Arc::default();
        let saved: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
        let (g, sv) = (got.clone(), saved.clone());
        let resurrect = round % 4 >= 2;
        set_fin(&f, move |this| {
            let a = Weak::new(this);
            let b = Weak::new(this);
            assert!(
                Weak::ptr_eq(&a, &b),
                "two shared references in the finalizer"
            );
            assert!(a.is_alive());
            g.lock().unwrap().push(a);
            if resurrect {
                *sv.lock().unwrap() = Some(this.clone());
            }
        });
        let h = heap.clone();
        let theirs = thread::spawn(move || {
            h.safepoint();
            // The other thread's own shared reference, if it makes it (in its slab, owned by
            // it: the finalizer's `Weak::new` there finds it without the lock).
            let w = other_made.then(|| Weak::new(&f));
            drop(f);
            h.safepoint();
            w
        })
        .join()
        .unwrap();
        heap.safepoint();
        let listed = mine.or(theirs).unwrap();
        let got = std::mem::take(&mut *got.lock().unwrap());
        assert_eq!(log.fin(), 1, "round {round}");
        assert_eq!(got.len(), 1, "round {round}");
        assert!(
            Weak::ptr_eq(&got[0], &listed),
            "round {round}: the finalizer made a second one"
        );
        if resurrect {
            let back = saved.lock().unwrap().take().expect("resurrected");
            check_fresh(&got[0], &back, "resurrected");
            assert!(Weak::ptr_eq(&Weak::new(&back), &listed));
            drop(back);
            heap.safepoint();
        }
        assert!(
            got[0].upgrade().is_none() && listed.upgrade().is_none(),
            "round {round}"
        );
        assert_eq!(log.drops(), 1);
        drop((got, listed));
        heap.safepoint();
        assert_eq!(settled_live(&heap), 0, "round {round}");
    }
}

/// Case 8: Weak references to the weak-reference object, three levels deep, each made twice (the
/// second lock-free), and dropped in every order.
#[test]
fn weak_references_to_weak_reference_objects() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    for order in 0..6 {
        let obj = dropped(&heap, &drops);
        let w1 = Weak::new(&obj);
        let o1 = Weak::as_object(&w1);
        let w2 = Weak::new(&o1);
        assert!(Weak::ptr_eq(&w2, &Weak::new(&o1)));
        let o2 = Weak::as_object(&w2);
        let w3 = Weak::new(&o2);
        assert!(Weak::ptr_eq(&w3, &Weak::new(&o2)));
        check_fresh(&w3, &o2, "level 3");
        check_fresh(&w2, &o1, "level 2");
        check_fresh(&w1, &obj, "level 1");
        drop((o1, o2));
        let mut ws: Vec<Box<dyn std::any::Any>> = vec![Box::new(w1), Box::new(w2), Box::new(w3)];
        // Drop order: a permutation of the three.
        let perm = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ][order];
        let mut slots: Vec<Option<Box<dyn std::any::Any>>> = ws.drain(..).map(Some).collect();
        for i in perm {
            drop(slots[i].take());
            // The referent's shared reference is made again lock-free or not.
            let again = Weak::new(&obj);
            check_fresh(&again, &obj, "again");
            assert!(Weak::ptr_eq(&again, &Weak::new(&obj)));
        }
        drop(obj);
        heap.safepoint();
        assert_eq!(heap.live_objects(), 0, "order {order}");
    }
    assert_eq!(drops.load(SeqCst), 6);
}

/// Case 9: One thread attached to two heaps, alternating between them (its cache switches slab):
/// shared references of each heap's object are found, never mixed up; and inside a detached
/// section of one, the other's.
#[test]
fn a_thread_on_two_heaps_alternating() {
    let (a, b) = (Heap::new(), Heap::new());
    let drops = Arc::new(AtomicUsize::new(0));
    a.safepoint();
    b.safepoint();
    let oa = dropped(&a, &drops);
    let ob = dropped(&b, &drops);
    let wa = Weak::new(&oa);
    let wb = Weak::new(&ob);
    for i in 0..reps(200, 6) {
        // Switch the cache with an allocation on each heap in turn.
        let _x = if i % 2 == 0 {
            a.alloc(i as u64)
        } else {
            b.alloc(i as u64)
        };
        let na = Weak::new(&oa);
        let nb = Weak::new(&ob);
        assert!(Weak::ptr_eq(&na, &wa) && Weak::ptr_eq(&nb, &wb), "{i}");
        check_fresh(&na, &oa, "a");
        check_fresh(&nb, &ob, "b");
        // Now the cache names `b` (the look-up just attached there): lock-free for `ob`, then
        // `oa` again after an allocation on `a`.
        assert!(Weak::ptr_eq(&Weak::new(&ob), &wb));
        let _y = a.alloc(0_u8);
        assert!(Weak::ptr_eq(&Weak::new(&oa), &wa));
        let in_a = a.detached(|| (Weak::new(&oa), Weak::new(&ob)));
        assert!(Weak::ptr_eq(&in_a.0, &wa) && Weak::ptr_eq(&in_a.1, &wb));
        let in_b = b.detached(|| (Weak::new(&oa), Weak::new(&ob)));
        assert!(Weak::ptr_eq(&in_b.0, &wa) && Weak::ptr_eq(&in_b.1, &wb));
    }
    // A shared reference made inside a detached section (no slab: from the global
    // allocator) is found afterwards, under the lock.
    drop((wa, wb));
    let made = a.detached(|| Weak::new(&oa));
    check_fresh(&made, &oa, "detached");
    assert!(Weak::ptr_eq(&made, &Weak::new(&oa)));
    drop(made);
    drop((oa, ob));
    a.safepoint();
    b.safepoint();
    assert_eq!(drops.load(SeqCst), 2);
    assert_eq!(a.live_objects(), 0);
    assert_eq!(b.live_objects(), 0);
}

/// A value in a thread-local whose destructor (run at thread exit, before or after the
/// runtime's) makes weak references.
struct AtExit {
    obj: Option<Gc<Dropped>>,
    out: Option<mpsc::Sender<(bool, bool)>>,
}

impl Drop for AtExit {
    fn drop(&mut self) {
        if let (Some(o), Some(tx)) = (self.obj.take(), self.out.take()) {
            let w = Weak::new(&o);
            let v = Weak::new(&o);
            let _ = tx.send((Weak::ptr_eq(&w, &v), w.is_alive() && v.upgrade().is_some()));
        }
    }
}

thread_local! {
    static AT_EXIT: std::cell::RefCell<AtExit> =
        const { std::cell::RefCell::new(AtExit { obj: None, out: None }) };
}

/// Case 10: `Weak::new` in a thread-local destructor at thread exit, on a thread that owns the
/// shared reference (its cache cleared by then, or not: both orders of the destructors).
#[test]
fn weak_new_in_thread_exit_destructors() {
    let heap = Arc::new(Heap::new());
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let obj = dropped(&heap, &drops);
    for round in 0..reps(20, 3) {
        let (tx, rx) = mpsc::channel();
        let (h, o) = (heap.clone(), obj.clone());
        let w = thread::spawn(move || {
            // Thread-local destructors run in the reverse order of their registration: with
            // this one registered first, the runtime's exit (its cache cleared) runs before.
            if round % 2 == 1 {
                AT_EXIT.with(|_| {});
            }
            h.safepoint();
            let w = Weak::new(&o);
            AT_EXIT.with(|e| {
                let mut e = e.borrow_mut();
                e.obj = Some(o);
                e.out = Some(tx);
            });
            w
        })
        .join()
        .unwrap();
        let (same, alive) = rx.recv().unwrap();
        assert!(same && alive, "round {round}");
        assert!(Weak::ptr_eq(&w, &Weak::new(&obj)));
        drop(w);
    }
    drop(obj);
    heap.safepoint();
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(settled_live(&heap), 0);
}

/// Case 11: Several threads churn the shared reference of one object, each also handing clones of
/// its references to the others to drop (remote deaths, merges, queues) while a collection
/// runs now and then: every pair is one reference, alive, and everything is freed.
#[test]
fn churn_with_remote_drops_and_collections() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let obj = dropped(&heap, &drops);
    let rounds = reps(4000, 25);
    let n = 3;
    let chans: Vec<_> = (0..n).map(|_| mpsc::channel::<Weak<Dropped>>()).collect();
    let txs: Vec<_> = chans.iter().map(|c| c.0.clone()).collect();
    let start = Barrier::new(n);
    heap.detached(|| {
        thread::scope(|s| {
            for (t, (_, rx)) in chans.into_iter().enumerate() {
                let (obj, heap, txs, start) = (obj.clone(), &heap, txs.clone(), &start);
                s.spawn(move || {
                    heap.safepoint();
                    start.wait();
                    for i in 0..rounds {
                        let w = Weak::new(&obj);
                        let again = Weak::new(&obj);
                        assert!(Weak::ptr_eq(&w, &again), "thread {t} round {i}");
                        check_fresh(&w, &obj, "churn");
                        if i % 3 == 0 {
                            let _ = txs[(t + 1) % n].send(w.clone());
                        }
                        drop((w, again));
                        while let Ok(x) = rx.try_recv() {
                            // Sometimes held across the next `Weak::new`, sometimes not.
                            if i % 2 == 0 {
                                let y = Weak::new(&obj);
                                if x.is_alive() {
                                    assert!(Weak::ptr_eq(&x, &y), "thread {t} round {i}: two live");
                                }
                            }
                            drop(x);
                        }
                        if t == 0 && i % 500 == 0 {
                            heap.collect();
                        }
                        if i % 64 == 0 {
                            heap.safepoint();
                        }
                    }
                    drop(txs);
                    heap.detached(|| while rx.recv().is_ok() {});
                });
            }
            drop(txs);
        })
    });
    drop(obj);
    heap.safepoint();
    heap.collect();
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(settled_live(&heap), 0);
}
