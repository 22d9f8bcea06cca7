//! Adversarial review of bb30d8c: a finalizer run on a thread with no owner id on the heap
//! holds its temporary reference as `count::RESURRECTING`; the dying thread records the
//! object (`Hot::finalizing`) and its own upgrades go to `count::try_inc_finalizing`.
//! Each test asserts finalizer/drop counts, upgrade results (SEMANTICS 8.3) and that
//! `live_objects()` is 0 at the end. Three of them failed before the fixes that followed
//! the review: a weak reference made in a finalizer marked the object `MAYBE_WEAK`, which
//! let other threads' upgrades take it (`weak_with_callback_in_finalizer_*`, and a check of
//! `finalizer_during_thread_exit`); a nested finalizer could not upgrade the enclosing dying
//! object on a thread with no owner id (`nested_finalizers_upgrades`); and `Heap::detached`
//! inside a gated finalizer kept the gate, so another thread's collection timed out
//! (`nested_detached_section_in_gated_finalizer`).

use std::sync::atomic::Ordering::SeqCst;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use reap::sync::{Gc, Heap, Weak};
use reap_tests::shared::{fin, hooked, merged, reps, set_fin, settled_live, Fin, Log};

/// A thread that upgrades `w` each time it is asked and answers whether it got the object
/// (dropping the handle at once, on that thread). Never attached to the heap.
fn upgrader(
    w: Weak<Fin>,
) -> (
    mpsc::Sender<bool>,
    mpsc::Receiver<bool>,
    thread::JoinHandle<()>,
) {
    let (req_tx, req_rx) = mpsc::channel::<bool>();
    let (ans_tx, ans_rx) = mpsc::channel::<bool>();
    let t = thread::spawn(move || {
        while let Ok(go) = req_rx.recv() {
            if !go {
                break;
            }
            let got = w.upgrade();
            let some = got.is_some();
            drop(got);
            ans_tx.send(some).unwrap();
        }
    });
    (req_tx, ans_rx, t)
}

fn ask(tx: &mpsc::Sender<bool>, rx: &mpsc::Receiver<bool>) -> bool {
    tx.send(true).unwrap();
    rx.recv().unwrap()
}

/// How the last reference goes.
#[derive(Clone, Copy, Debug)]
enum Where {
    /// A thread that never attached to the heap (no owner id).
    Unattached,
    /// Inside `Heap::detached` (no owner id).
    Detached,
    /// The owner path (an attached thread; for comparison).
    Attached,
}

/// Drops `g` (merged, its only handle) on a fresh thread, the way `how` says.
fn die(heap: &Heap, g: Gc<Fin>, how: Where) {
    let h = heap.clone();
    let t = thread::spawn(move || match how {
        Where::Unattached => drop(g),
        Where::Detached => {
            // Attach first (an allocation), then drop inside a detached section.
            drop(h.alloc(0u8));
            h.detached(|| drop(g));
        }
        Where::Attached => {
            drop(h.alloc(0u8));
            drop(g);
        }
    });
    heap.detached(|| t.join().unwrap());
}

/// 1. The finalizer makes a weak reference with a callback to `this` (in the fifteenth session
///    marking the referent on a shared word 0 gave `MAYBE_WEAK` with count 0, which `try_inc`
///    did not refuse; since the sixteenth, `GC_FINALIZING` is refused). Another
///    thread's upgrade returned None before; does it return the object after, with no strong
///    reference stored or handed out? (SEMANTICS 8.3)
fn weak_made_in_finalizer(how: Where, callback: bool) -> (bool, bool) {
    let heap = Heap::new();
    let reports = hooked(&heap);
    let log = Log::new();
    let a = merged(fin(&heap, 1, &log));
    let w = Weak::new(&a);
    let (tx, rx, t) = upgrader(w.clone());
    let results = Arc::new(Mutex::new(Vec::new()));
    let r = results.clone();
    let (tx2, rx2) = (tx.clone(), Mutex::new(rx));
    set_fin(&a, move |this| {
        let rx = rx2.lock().unwrap();
        let before = ask(&tx2, &rx);
        let w2 = if callback {
            Weak::with_callback(this, |_| {})
        } else {
            Weak::new(this)
        };
        let after = ask(&tx2, &rx);
        drop(w2);
        r.lock().unwrap().push((before, after));
    });
    die(&heap, a, how);
    tx.send(false).unwrap();
    t.join().unwrap();
    drop(w);
    assert_eq!(log.fin(), 1);
    assert_eq!(log.drops(), 1);
    assert!(
        reports.lock().unwrap().is_empty(),
        "{:?}",
        reports.lock().unwrap()
    );
    assert_eq!(settled_live(&heap), 0);
    let v = results.lock().unwrap()[0];
    v
}

#[test]
fn weak_with_callback_in_finalizer_unattached() {
    let (before, after) = weak_made_in_finalizer(Where::Unattached, true);
    assert!(!before, "other thread's upgrade took the dying object");
    assert!(
        !after,
        "SEMANTICS 8.3: upgrade returned the object after None (Weak::with_callback in the finalizer)"
    );
}

#[test]
fn weak_with_callback_in_finalizer_detached() {
    let (before, after) = weak_made_in_finalizer(Where::Detached, true);
    assert!(!before, "other thread's upgrade took the dying object");
    assert!(
        !after,
        "SEMANTICS 8.3: upgrade returned the object after None (Weak::with_callback in the finalizer)"
    );
}

#[test]
fn weak_with_callback_in_finalizer_attached() {
    let (before, after) = weak_made_in_finalizer(Where::Attached, true);
    assert!(!before, "other thread's upgrade took the dying object");
    assert!(
        !after,
        "SEMANTICS 8.3: upgrade returned the object after None (Weak::with_callback in the finalizer, owner thread)"
    );
}

#[test]
fn weak_new_in_finalizer_unattached() {
    // A shared weak reference already exists (`w`): `Weak::new` returns it, no mark.
    let (before, after) = weak_made_in_finalizer(Where::Unattached, false);
    assert!(!before && !after, "{before} {after}");
}

/// 2. The finalizer clones `this` and sends the clone to another thread, which drops it
///    while the finalizer continues; the finalizer then upgrades its own weak reference
///    (Some) and drops it. Not resurrected: finalized and dropped once; freed.
#[test]
fn clone_sent_away_and_dropped_during_finalizer() {
    for how in [Where::Unattached, Where::Detached, Where::Attached] {
        for _ in 0..reps(20, 2) {
            let heap = Heap::new();
            let log = Log::new();
            let a = merged(fin(&heap, 1, &log));
            let w = Weak::new(&a);
            let (tx, rx, t) = upgrader(w.clone());
            let rx = Mutex::new(rx);
            let seen = Arc::new(Mutex::new(Vec::new()));
            let s = seen.clone();
            let w2 = w.clone();
            set_fin(&a, move |this| {
                let rx = rx.lock().unwrap();
                let first = ask(&tx, &rx);
                let c = this.clone();
                let d = thread::spawn(move || drop(c));
                let own = w2.upgrade();
                d.join().unwrap();
                let own2 = w2.upgrade();
                s.lock()
                    .unwrap()
                    .push((first, own.is_some(), own2.is_some()));
                drop((own, own2));
                tx.send(false).unwrap();
            });
            die(&heap, a, how);
            t.join().unwrap();
            assert!(w.upgrade().is_none(), "{how:?}: alive after its death");
            drop(w);
            let v = seen.lock().unwrap()[0];
            assert_eq!(v, (false, true, true), "{how:?}");
            assert_eq!((log.fin(), log.drops()), (1, 1), "{how:?}");
            assert_eq!(settled_live(&heap), 0, "{how:?}");
        }
    }
}

/// 3. The finalizer upgrades its own weak reference and hands the handle to another thread,
///    which drops it (shared count back to 0) and upgrades again (None: 8.3); the finalizer
///    upgrades once more and stores that handle (a resurrection); it dies later, once.
#[test]
fn finalizer_upgrade_handed_away_then_resurrect() {
    for how in [Where::Unattached, Where::Detached] {
        for _ in 0..reps(20, 2) {
            let heap = Heap::new();
            let log = Log::new();
            let a = merged(fin(&heap, 1, &log));
            let w = Weak::new(&a);
            let store: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
            let st = store.clone();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let s = seen.clone();
            let w2 = w.clone();
            set_fin(&a, move |_this| {
                let h = w2.upgrade().expect("the finalizer's own upgrade");
                let w3 = w2.clone();
                let other = thread::spawn(move || {
                    drop(h);
                    w3.upgrade().is_some()
                })
                .join()
                .unwrap();
                let again = w2.upgrade();
                s.lock().unwrap().push((other, again.is_some()));
                *st.lock().unwrap() = again;
            });
            die(&heap, a, how);
            assert_eq!(seen.lock().unwrap()[0], (false, true), "{how:?}");
            assert_eq!((log.fin(), log.drops()), (1, 0), "{how:?}");
            // Resurrected: other threads see it now.
            let w4 = w.clone();
            let up = thread::spawn(move || w4.upgrade().is_some())
                .join()
                .unwrap();
            assert!(up, "{how:?}: resurrected object not upgradable");
            let g = store.lock().unwrap().take().unwrap();
            thread::spawn(move || drop(g)).join().unwrap();
            assert!(w.upgrade().is_none());
            drop(w);
            assert_eq!((log.fin(), log.drops()), (1, 1), "{how:?}");
            assert_eq!(settled_live(&heap), 0, "{how:?}");
        }
    }
}

/// 4. Nested finalizers on one thread with no owner id: A's finalizer drops B's last handle;
///    B's finalizer upgrades A's and B's weak references. On an owner thread both succeed
///    (owner path for A, whose temporary reference is this thread's); here?
fn nested(how: Where) -> Vec<(String, bool)> {
    let heap = Heap::new();
    let log = Log::new();
    let a = merged(fin(&heap, 1, &log));
    let b = merged(fin(&heap, 2, &log));
    let wa = Weak::new(&a);
    let wb = Weak::new(&b);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s1, s2) = (seen.clone(), seen.clone());
    let (wa1, wa2, wb2) = (wa.clone(), wa.clone(), wb.clone());
    set_fin(&b, move |_| {
        let ga = wa2.upgrade();
        let gb = wb2.upgrade();
        s2.lock().unwrap().push(("B: A".to_string(), ga.is_some()));
        s2.lock().unwrap().push(("B: B".to_string(), gb.is_some()));
    });
    let bslot = Mutex::new(Some(b));
    set_fin(&a, move |_| {
        drop(bslot.lock().unwrap().take());
        let ga = wa1.upgrade();
        s1.lock()
            .unwrap()
            .push(("A after B: A".to_string(), ga.is_some()));
    });
    die(&heap, a, how);
    assert!(wa.upgrade().is_none() && wb.upgrade().is_none());
    drop((wa, wb));
    assert_eq!((log.fin(), log.drops()), (2, 2), "{how:?}");
    assert_eq!(settled_live(&heap), 0, "{how:?}");
    let v = seen.lock().unwrap().clone();
    v
}

#[test]
fn nested_finalizers_upgrades() {
    let att = nested(Where::Attached);
    let un = nested(Where::Unattached);
    let det = nested(Where::Detached);
    eprintln!("attached: {att:?}\nunattached: {un:?}\ndetached: {det:?}");
    assert_eq!(un, att, "no-owner thread differs from the owner thread");
    assert_eq!(det, att, "detached differs from the owner thread");
}

/// 5. A finalizer that upgrades itself and panics while holding the handle: the handle is
///    dropped while unwinding; `finalizing` is put back. Then another finalizable object on
///    the same thread: its upgrades by this thread after its death (from a weak callback)
///    must be None.
#[test]
fn panicking_finalizer() {
    let heap = Heap::new();
    let reports = hooked(&heap);
    let log = Log::new();
    let a = merged(fin(&heap, 1, &log));
    let b = merged(fin(&heap, 2, &log));
    let wa = Weak::new(&a);
    let wa1 = wa.clone();
    set_fin(&a, move |_| {
        let _g = wa1.upgrade().unwrap();
        panic!("boom");
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let wa2 = wa.clone();
    let _cb = Weak::with_callback(&b, move |wb: &Weak<Fin>| {
        s.lock()
            .unwrap()
            .push((wa2.upgrade().is_some(), wb.upgrade().is_some()));
    });
    let t = thread::spawn(move || {
        drop(a);
        drop(b);
    });
    heap.detached(|| t.join().unwrap());
    assert_eq!(*seen.lock().unwrap(), vec![(false, false)]);
    assert_eq!(reports.lock().unwrap().len(), 1);
    assert!(wa.upgrade().is_none());
    drop((wa, _cb));
    assert_eq!((log.fin(), log.drops()), (2, 2));
    assert_eq!(settled_live(&heap), 0);
}

thread_local! {
    static HELD: std::cell::RefCell<Option<Gc<Fin>>> = const { std::cell::RefCell::new(None) };
}

/// 6. A finalizer running during thread exit (a thread-local registered before the thread's
///    first heap use, so destroyed after the runtime's): other threads' upgrades refuse, its
///    own succeed; it sends a clone to another thread that drops it; `Weak::new` (no attach
///    possible); then a callback weak reference.
#[test]
fn finalizer_during_thread_exit() {
    for _ in 0..reps(10, 1) {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let a = merged(fin(&heap, 1, &log));
        let w = Weak::new(&a);
        let (tx, rx, t) = upgrader(w.clone());
        let rx = Mutex::new(rx);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let w2 = w.clone();
        set_fin(&a, move |this| {
            let rx = rx.lock().unwrap();
            let first = ask(&tx, &rx);
            let own = w2.upgrade().is_some();
            let c = this.clone();
            thread::spawn(move || drop(c)).join().unwrap();
            let second = ask(&tx, &rx);
            let wn = Weak::new(this);
            let own2 = wn.upgrade().is_some();
            let third = ask(&tx, &rx);
            let wc = Weak::with_callback(this, |_| {});
            let fourth = ask(&tx, &rx);
            drop((wn, wc));
            s.lock()
                .unwrap()
                .push((first, own, second, own2, third, fourth));
            tx.send(false).unwrap();
        });
        let h = heap.clone();
        let d = thread::spawn(move || {
            // Registered (first access) before any heap use: destroyed after the runtime's.
            HELD.with(|x| *x.borrow_mut() = Some(a));
            drop(h.alloc(0u8));
            drop(h);
        });
        heap.detached(|| d.join().unwrap());
        t.join().unwrap();
        assert!(w.upgrade().is_none());
        drop(w);
        assert_eq!((log.fin(), log.drops()), (1, 1));
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(settled_live(&heap), 0);
        let v = seen.lock().unwrap()[0];
        assert_eq!(
            v,
            (false, true, false, true, false, false),
            "(first, own, second, own2, third, fourth)"
        );
    }
}

/// 7. The finalizer (no owner id) leaves the gate with `Heap::detached` while another thread
///    collects (after another thread's exit, so the orphan walk runs), and collects itself.
#[test]
fn collections_during_finalizer() {
    // (`Where::Detached`: see `nested_detached_section_in_gated_finalizer`; a collection
    // there panics, as documented for a thread inside `Heap::detached`.)
    for how in [Where::Unattached] {
        for _ in 0..reps(10, 1) {
            let heap = Heap::new();
            let reports = hooked(&heap);
            let log = Log::new();
            // A thread that left: the next collection walks for orphans.
            let h0 = heap.clone();
            let l0 = log.clone();
            let orphan = thread::spawn(move || fin(&h0, 9, &l0)).join().unwrap();
            let a = merged(fin(&heap, 1, &log));
            let w = Weak::new(&a);
            let (tx, rx, t) = upgrader(w.clone());
            let rx = Mutex::new(rx);
            let seen = Arc::new(Mutex::new(Vec::new()));
            let s = seen.clone();
            let (w2, h2) = (w.clone(), heap.clone());
            set_fin(&a, move |this| {
                let rx = rx.lock().unwrap();
                let h3 = h2.clone();
                // Another thread collects while this one is detached.
                h2.detached(|| {
                    thread::spawn(move || {
                        h3.collect();
                    })
                    .join()
                    .unwrap()
                });
                let first = ask(&tx, &rx);
                // A self-cycle stored and removed, then a collection here.
                *this.next.lock().unwrap() = Some(this.clone());
                h2.collect();
                let mid = ask(&tx, &rx);
                let back = this.next.lock().unwrap().take();
                drop(back);
                h2.collect();
                let own = w2.upgrade().is_some();
                let last = ask(&tx, &rx);
                s.lock().unwrap().push((first, mid, own, last));
                tx.send(false).unwrap();
            });
            die(&heap, a, how);
            t.join().unwrap();
            assert!(w.upgrade().is_none(), "{how:?}");
            drop((w, orphan));
            assert_eq!((log.fin(), log.drops()), (2, 2), "{how:?}");
            assert!(
                reports.lock().unwrap().is_empty(),
                "{:?}",
                reports.lock().unwrap()
            );
            assert_eq!(settled_live(&heap), 0);
            let v = seen.lock().unwrap()[0];
            // `mid`: a reference stored in itself is a stored reference (resurrection): the
            // other thread may take it then. Only `first` and `last` are asserted.
            assert!(
                !v.0 && v.2 && !v.3,
                "{how:?}: (first, mid, own, last) = {v:?}"
            );
        }
    }
}

/// 8. Two heaps: A (heap 1) finalizes on a thread with no owner id on either heap; its
///    finalizer drops the last handle of B (heap 2), whose finalizer upgrades both.
#[test]
fn two_heaps_nested() {
    let h1 = Heap::new();
    let h2 = Heap::new();
    let log = Log::new();
    let a = merged(fin(&h1, 1, &log));
    let b = merged(fin(&h2, 2, &log));
    let wa = Weak::new(&a);
    let wb = Weak::new(&b);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s1, s2) = (seen.clone(), seen.clone());
    let (wa1, wa2, wb2) = (wa.clone(), wa.clone(), wb.clone());
    set_fin(&b, move |_| {
        s2.lock().unwrap().push(("B: A", wa2.upgrade().is_some()));
        s2.lock().unwrap().push(("B: B", wb2.upgrade().is_some()));
    });
    let bslot = Mutex::new(Some(b));
    set_fin(&a, move |_| {
        drop(bslot.lock().unwrap().take());
        s1.lock().unwrap().push(("A: A", wa1.upgrade().is_some()));
    });
    let t = thread::spawn(move || drop(a));
    h1.detached(|| h2.detached(|| t.join().unwrap()));
    eprintln!("{:?}", seen.lock().unwrap());
    drop((wa, wb));
    assert_eq!((log.fin(), log.drops()), (2, 2));
    assert_eq!(settled_live(&h1), 0);
    assert_eq!(settled_live(&h2), 0);
    let v = seen.lock().unwrap().clone();
    assert_eq!(v[1], ("B: B", true));
    assert_eq!(v[2], ("A: A", true));
}

/// 9. Concurrency: the finalizer repeatedly upgrades itself and hands handles to a thread
///    that drops them, while a third thread upgrades (must see None until a handle is handed
///    out — racy, so only memory and count outcomes are asserted) — and at the end it is
///    not resurrected.
#[test]
fn racing_handouts() {
    for how in [Where::Unattached, Where::Detached] {
        for _ in 0..reps(20, 2) {
            let heap = Heap::new();
            let log = Log::new();
            let a = merged(fin(&heap, 1, &log));
            let w = Weak::new(&a);
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (st, w3) = (stop.clone(), w.clone());
            let racer = thread::spawn(move || {
                let mut n = 0;
                while !st.load(SeqCst) {
                    if let Some(g) = w3.upgrade() {
                        n += 1;
                        drop(g);
                    }
                    thread::yield_now();
                }
                n
            });
            let w2 = w.clone();
            set_fin(&a, move |this| {
                let (tx, rx) = mpsc::channel::<Gc<Fin>>();
                let sink = thread::spawn(move || {
                    while let Ok(g) = rx.recv() {
                        drop(g);
                    }
                });
                for i in 0..reps(50, 5) {
                    let g = if i % 2 == 0 {
                        w2.upgrade().unwrap()
                    } else {
                        this.clone()
                    };
                    tx.send(g).unwrap();
                }
                drop(tx);
                sink.join().unwrap();
            });
            die(&heap, a, how);
            stop.store(true, SeqCst);
            racer.join().unwrap();
            assert!(w.upgrade().is_none());
            drop(w);
            assert_eq!((log.fin(), log.drops()), (1, 1), "{how:?}");
            assert_eq!(settled_live(&heap), 0, "{how:?}");
        }
    }
}

/// 10. A weak callback (run on the no-owner thread after the finalizer) upgrades both its
///     own weak reference and one made by the finalizer; and the finalizer's `Weak::new`
///     (which attaches the thread) followed by an upgrade and a clone dropped elsewhere.
#[test]
fn callbacks_and_attach_inside_finalizer() {
    let heap = Heap::new();
    let log = Log::new();
    let a = merged(fin(&heap, 1, &log));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let made: Arc<Mutex<Option<Weak<Fin>>>> = Arc::default();
    let m = made.clone();
    let _cb = Weak::with_callback(&a, move |w: &Weak<Fin>| {
        let other = m.lock().unwrap().as_ref().map(|x| x.upgrade().is_some());
        s.lock().unwrap().push((w.upgrade().is_some(), other));
    });
    let m2 = made.clone();
    set_fin(&a, move |this| {
        let wn = Weak::new(this); // attaches this thread
        let g = wn.upgrade().expect("own upgrade after attaching");
        thread::spawn(move || drop(g)).join().unwrap();
        *m2.lock().unwrap() = Some(wn);
    });
    let t = thread::spawn(move || drop(a));
    heap.detached(|| t.join().unwrap());
    assert_eq!(*seen.lock().unwrap(), vec![(false, Some(false))]);
    drop(made.lock().unwrap().take());
    drop(_cb);
    assert_eq!((log.fin(), log.drops()), (1, 1));
    assert_eq!(settled_live(&heap), 0);
}

/// 7b. A death inside `Heap::detached` runs its finalizer inside the heap's gate; the
///     finalizer opens a (nested) detached section and waits there for another thread's
///     collection. The nested `detached` returns `f()` at once ("nothing to leave") without
///     leaving the gate, so the collection cannot stop the world (passive > 0).
#[test]
fn nested_detached_section_in_gated_finalizer() {
    let heap = Heap::new();
    let reports = hooked(&heap);
    let log = Log::new();
    let a = merged(fin(&heap, 1, &log));
    let h2 = heap.clone();
    let ok = Arc::new(Mutex::new(None));
    let o = ok.clone();
    set_fin(&a, move |_| {
        let h3 = h2.clone();
        let r = h2.detached(|| {
            thread::spawn(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h3.collect())).is_ok()
            })
            .join()
            .unwrap()
        });
        *o.lock().unwrap() = Some(r);
    });
    die(&heap, a, Where::Detached);
    assert_eq!((log.fin(), log.drops()), (1, 1));
    assert!(
        reports.lock().unwrap().is_empty(),
        "{:?}",
        reports.lock().unwrap()
    );
    assert_eq!(settled_live(&heap), 0);
    assert_eq!(
        *ok.lock().unwrap(),
        Some(true),
        "the other thread's collection failed (could not stop the world)"
    );
}
