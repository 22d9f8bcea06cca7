//! Adversarial review of 3ebe7db: (1) `GC_FINALIZING`, the mark `count::resurrect_start`
//! sets on an object whose finalizer runs on the refcount path and `count::resurrect_end`
//! clears before it publishes a resurrected count; other threads' weak upgrades
//! (`count::try_inc`, under the referent's weak lock) refuse a marked object, while the
//! finalizer's own thread's upgrades succeed (SEMANTICS 8.3); (2) `asked_again`: an explicit
//! `collect` asked for on a thread while another thread's collection runs returns 0 and the
//! running collector runs one more collection, adding its count to its own return value
//! (SEMANTICS 8.5).
//!
//! Written by the sixteenth session's second review helper. Each test says what it attacks
//! and asserts the outcomes: finalizers and `Drop`s run once, upgrades on other threads never
//! return an object inside its finalizer or after a `None` unless the finalizer stored a
//! reference, the finalizer's own thread may upgrade its object, no hang (watchdog), counts
//! add up, and `live_objects() == 0` at the end.
//!
//! Five of them failed on 3ebe7db and pass since the fixes of the same session: a lent clone
//! dropped elsewhere left the object upgradable between its finalizer's end and its queue
//! entry's drain (`count::resurrect_end` now keeps the mark when only that entry's reference
//! is left); the finalizer's own thread was refused once the object was merged in
//! mid-finalizer or inside `Heap::detached` (every refcount-path finalizer is now recorded,
//! `thread::finalizes`); and an exhaustive request made during another collection was served
//! by a non-exhaustive one (the request's scope is now recorded).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use reap::sync::{CollectPhase, Gc, Heap, Weak};
use reap::{Trace, UnraisableKind};
use reap_tests::shared::{
    ends_clean, fin, hooked, merged, no_reports, reps, see, set_fin, settled_live, within, Fin,
    Log, Seen, Upgrader,
};

/// 1. The owner's finalizer (attached thread, owner path: the temporary reference in
///    `local`) lends a clone to another thread, which drops it while the finalizer runs (a
///    foreign drop at a shared count of 0: the object is queued to its own finalizing thread,
///    `QUEUED`). The finalizer returns with no safe point in between, so the queue entry is
///    not drained: `resurrect_end` sees `local` 2 and a queued word, clears the mark and
///    merges to `MERGED`/1, the queue entry's reference (returns "resurrected"). Nothing was
///    stored anywhere (the clone is gone), so by SEMANTICS 8.3 ("whatever clones of its
///    temporary reference it makes and drops, wherever it drops them") an upgrade on another
///    thread, `None` during the finalizer, must stay `None` after it.
#[test]
fn lent_clone_dropped_elsewhere_is_no_resurrection() {
    let (answers, fins, drops) = within("lent_clone_dropped_elsewhere", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let x = fin(&heap, 1, &log);
        let w = Weak::new(&x);
        let up = Upgrader::new(w.clone(), false);
        let answers: Seen = Arc::default();
        let (a2, up2) = (answers.clone(), up.clone());
        set_fin(&x, move |this| {
            see(&a2, "in fin, before the clone", up2.ask());
            let c = this.clone();
            thread::spawn(move || drop(c)).join().unwrap();
            see(&a2, "in fin, clone dropped elsewhere", up2.ask());
        });
        drop(x);
        // The finalizer has returned; this thread has passed no safe point since.
        see(&answers, "after the finalizer", up.ask());
        heap.safepoint();
        see(&answers, "after a safe point", up.ask());
        up.finish(&heap);
        heap.safepoint();
        assert!(w.upgrade().is_none());
        drop(w);
        ends_clean(&heap, &reports);
        let a = answers.lock().unwrap().clone();
        (a, log.fin(), log.drops())
    });
    assert_eq!((fins, drops), (1, 1));
    assert!(
        answers.iter().all(|&(_, v)| !v),
        "SEMANTICS 8.3: another thread's upgrade returned the object after one returned None, \
         though the finalizer stored no reference (its clone was dropped on another thread \
         during it): {answers:?}"
    );
}

/// 1b. As 1, with the upgrader keeping what it gets: the object then lives on, held by a
///     thread that took it after being refused. Counts the rounds in which that happened
///     (a storm: the lent clone is dropped while another thread hammers).
#[test]
fn lent_clone_dropped_elsewhere_storm() {
    let bad = within("lent_clone_dropped_elsewhere_storm", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let mut bad = Vec::new();
        for round in 0..reps(100, 2) as u32 {
            let log = Log::new();
            let x = fin(&heap, round, &log);
            let w = Weak::new(&x);
            let stop = Arc::new(AtomicBool::new(false));
            let some_after_none = Arc::new(AtomicUsize::new(0));
            let (w2, st, san) = (w.clone(), stop.clone(), some_after_none.clone());
            let started = Arc::new(Barrier::new(2));
            let s2 = started.clone();
            let t = thread::spawn(move || {
                s2.wait();
                let mut none = false;
                loop {
                    let last = st.load(SeqCst);
                    match w2.upgrade() {
                        Some(_) if none => {
                            san.fetch_add(1, SeqCst);
                        }
                        Some(_) => {}
                        None => none = true,
                    }
                    if last {
                        break;
                    }
                }
            });
            set_fin(&x, |this| {
                let c = this.clone();
                thread::spawn(move || drop(c)).join().unwrap();
            });
            heap.detached(|| started.wait());
            drop(x);
            // Let the hammer run past the finalizer's return before any safe point.
            let until = Instant::now() + Duration::from_micros(300);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            stop.store(true, SeqCst);
            heap.detached(|| t.join().unwrap());
            heap.safepoint();
            assert!(w.upgrade().is_none());
            assert_eq!((log.fin(), log.drops()), (1, 1), "round {round}");
            let n = some_after_none.load(SeqCst);
            if n > 0 {
                bad.push((round, n));
            }
        }
        ends_clean(&heap, &reports);
        bad
    });
    assert!(
        bad.is_empty(),
        "SEMANTICS 8.3: upgrades returned the object after a None, no reference stored \
         (round, count): {bad:?}"
    );
}

/// 2. The finalizer's own thread's upgrade (SEMANTICS 8.3: "and so does a weak upgrade on the
///    finalizer's own thread") after its object was merged during the finalizer: a clone lent
///    to another thread and dropped there queues the object to the finalizing thread, and the
///    finalizer's `safepoint` drains the entry (`owner` 0, `MERGED`). The finalizer's upgrade
///    then goes the foreign way (`owned_by` fails) and meets the mark.
#[test]
fn own_upgrade_after_a_merge_inside_the_finalizer() {
    let (own, fins, drops) = within("own_upgrade_after_merge", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let x = fin(&heap, 1, &log);
        let w = Weak::new(&x);
        let up = Upgrader::new(w.clone(), false);
        let answers: Seen = Arc::default();
        let (a2, up2, w2, h2) = (answers.clone(), up.clone(), w.clone(), heap.clone());
        set_fin(&x, move |this| {
            see(&a2, "own, before", w2.upgrade().is_some());
            let c = this.clone();
            thread::spawn(move || drop(c)).join().unwrap();
            h2.safepoint();
            see(&a2, "other, after merge", up2.ask());
            see(&a2, "own, after merge", w2.upgrade().is_some());
        });
        drop(x);
        heap.safepoint();
        see(&answers, "other, after fin", up.ask());
        up.finish(&heap);
        assert!(w.upgrade().is_none());
        drop(w);
        ends_clean(&heap, &reports);
        let a = answers.lock().unwrap().clone();
        (a, log.fin(), log.drops())
    });
    assert_eq!((fins, drops), (1, 1));
    assert!(
        !own[1].1,
        "other thread upgraded during the finalizer: {own:?}"
    );
    assert!(
        !own[3].1,
        "other thread upgraded after the finalizer: {own:?}"
    );
    assert!(own[0].1, "own upgrade refused before the merge: {own:?}");
    assert!(
        own[2].1,
        "SEMANTICS 8.3: the finalizer's own thread could not upgrade its object once a safe \
         point in the finalizer merged it: {own:?}"
    );
}

/// 3. The finalizer's own thread's upgrade from inside `Heap::detached` in a finalizer that
///    began on the owner path (attached): the thread then has no owner id, and is not recorded
///    as finalizing the object (only a death begun with no owner id is), so its upgrade is a
///    foreign one and meets the mark.
#[test]
fn own_upgrade_inside_detached_in_an_owner_path_finalizer() {
    let (own, fins, drops) = within("own_upgrade_inside_detached", || {
        let heap = Heap::new();
        let log = Log::new();
        let x = fin(&heap, 1, &log);
        let w = Weak::new(&x);
        let answers: Seen = Arc::default();
        let (a2, w2, h2) = (answers.clone(), w.clone(), heap.clone());
        set_fin(&x, move |_this| {
            see(&a2, "attached", w2.upgrade().is_some());
            see(&a2, "detached", h2.detached(|| w2.upgrade().is_some()));
        });
        drop(x);
        heap.safepoint();
        assert!(w.upgrade().is_none());
        drop(w);
        assert_eq!(settled_live(&heap), 0);
        let a = answers.lock().unwrap().clone();
        (a, log.fin(), log.drops())
    });
    assert_eq!((fins, drops), (1, 1));
    assert!(own[0].1, "{own:?}");
    assert!(
        own[1].1,
        "SEMANTICS 8.3: the finalizer's own thread, inside Heap::detached, could not upgrade \
         its object: {own:?}"
    );
}

/// 4. A finalizer run with no owner id (a never-attached thread drops the last reference of a
///    merged object) whose thread attaches during it (`heap.alloc` in the finalizer): its own
///    upgrades keep succeeding (recorded as finalizing), other threads' keep failing, and
///    the clone it makes and drops after attaching changes nothing; dead once after.
#[test]
fn unattached_finalizer_attaches_midway() {
    let (a, fins, drops) = within("unattached_finalizer_attaches", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let x = merged(fin(&heap, 1, &log));
        let w = Weak::new(&x);
        let up = Upgrader::new(w.clone(), false);
        let answers: Seen = Arc::default();
        let (a2, up2, w2, h2) = (answers.clone(), up.clone(), w.clone(), heap.clone());
        set_fin(&x, move |this| {
            see(&a2, "own, unattached", w2.upgrade().is_some());
            see(&a2, "other, unattached", up2.ask());
            let junk = h2.alloc(7u32);
            drop(junk);
            see(&a2, "own, attached", w2.upgrade().is_some());
            let c = this.clone();
            see(&a2, "other, attached, clone held", up2.ask());
            drop(c);
            h2.safepoint();
            see(&a2, "other, attached, clone dropped", up2.ask());
            let g = w2.upgrade();
            see(&a2, "own, attached again", g.is_some());
            drop(g);
        });
        heap.detached(|| thread::spawn(move || drop(x)).join().unwrap());
        see(&answers, "other, after", up.ask());
        up.finish(&heap);
        heap.safepoint();
        assert!(w.upgrade().is_none());
        drop(w);
        ends_clean(&heap, &reports);
        let a = answers.lock().unwrap().clone();
        (a, log.fin(), log.drops())
    });
    assert_eq!((fins, drops), (1, 1), "{a:?}");
    let expect = [true, false, true, false, false, true, false];
    let got: Vec<bool> = a.iter().map(|&(_, v)| v).collect();
    assert_eq!(got, expect, "{a:?}");
}

/// 5. A panicking finalizer that took a clone (held on its stack) and made a weak reference
///    with a callback to its object: the panic goes to the hook, the clone is dropped by the
///    unwind, the mark is cleared by `resurrect_end`; other threads' upgrades are refused
///    throughout and after; the callback runs once, the value is dropped once.
#[test]
fn panicking_finalizer_with_clone_and_callback() {
    within("panicking_finalizer", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(20, 2) as u32 {
            let log = Log::new();
            let x = if round % 2 == 0 {
                fin(&heap, round, &log)
            } else {
                merged(fin(&heap, round, &log))
            };
            let w = Weak::new(&x);
            let up = Upgrader::new(w.clone(), true);
            let answers: Seen = Arc::default();
            let cbs = Arc::new(AtomicUsize::new(0));
            let keep_cb = Arc::new(Mutex::new(None));
            let (a2, up2, cb2, kc) = (answers.clone(), up.clone(), cbs.clone(), keep_cb.clone());
            set_fin(&x, move |this| {
                let _c = this.clone();
                let cb3 = cb2.clone();
                let wc = Weak::with_callback(this, move |_w| {
                    cb3.fetch_add(1, SeqCst);
                });
                *kc.lock().unwrap() = Some(wc);
                see(&a2, "in fin", up2.ask());
                panic!("finalizer panics");
            });
            match round % 4 {
                0 | 1 => drop(x),
                _ => heap.detached(|| thread::spawn(move || drop(x)).join().unwrap()),
            }
            heap.safepoint();
            see(&answers, "after", up.ask());
            up.finish(&heap);
            heap.safepoint();
            assert!(w.upgrade().is_none());
            assert_eq!((log.fin(), log.drops()), (1, 1), "round {round}");
            assert_eq!(cbs.load(SeqCst), 1, "round {round}");
            let a = answers.lock().unwrap().clone();
            assert!(a.iter().all(|&(_, v)| !v), "round {round}: {a:?}");
            drop(keep_cb.lock().unwrap().take());
        }
        let r = reports.lock().unwrap().clone();
        assert_eq!(r.len(), reps(20, 2));
        assert!(
            r.iter().all(|(k, _)| *k == UnraisableKind::Finalizer),
            "{r:?}"
        );
        assert_eq!(settled_live(&heap), 0);
    });
}

/// 6. Resurrection then a second death: the finalizer stores a clone in a slot outside the
///    heap. Another thread's upgrade is refused during the finalizer (the resurrection is
///    visible once it returned), succeeds after; the slot is then emptied on a third thread
///    (merged death, no finalizer), and the object dies once. On the owner path, merged on a
///    foreign thread, and on a never-attached thread.
#[test]
fn resurrect_then_second_death() {
    within("resurrect_then_second_death", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(30, 3) as u32 {
            let log = Log::new();
            let how = round % 3;
            let x = if how == 0 {
                fin(&heap, round, &log)
            } else {
                merged(fin(&heap, round, &log))
            };
            let w = Weak::new(&x);
            let up = Upgrader::new(w.clone(), false);
            let answers: Seen = Arc::default();
            let slot: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
            let (a2, up2, s2, w2) = (answers.clone(), up.clone(), slot.clone(), w.clone());
            set_fin(&x, move |this| {
                see(&a2, "other, before store", up2.ask());
                *s2.lock().unwrap() = Some(this.clone());
                see(&a2, "other, after store", up2.ask());
                see(&a2, "own, after store", w2.upgrade().is_some());
            });
            match how {
                0 => drop(x),
                1 => {
                    // Merged: this thread's drop is the death, with its owner id.
                    drop(x)
                }
                _ => heap.detached(|| thread::spawn(move || drop(x)).join().unwrap()),
            }
            see(&answers, "other, after fin", up.ask());
            assert_eq!(log.drops(), 0);
            let g = slot.lock().unwrap().take().unwrap();
            heap.detached(|| thread::spawn(move || drop(g)).join().unwrap());
            heap.safepoint();
            see(&answers, "other, after second death", up.ask());
            up.finish(&heap);
            assert!(w.upgrade().is_none());
            assert_eq!((log.fin(), log.drops()), (1, 1), "round {round}");
            let got: Vec<bool> = answers.lock().unwrap().iter().map(|&(_, v)| v).collect();
            assert_eq!(
                got,
                [false, false, true, true, false],
                "round {round}: {:?}",
                answers.lock().unwrap()
            );
        }
        ends_clean(&heap, &reports);
    });
}

/// 7. A finalizer that collects (an explicit `collect` on the refcount path's finalizer, with
///    a cycle to free and another thread's upgrades hammering) and makes weak references to
///    itself with callbacks: the collection runs with the object in its finalizer (its count
///    the temporary reference: not garbage); other threads are refused; dead once after,
///    each callback once.
#[test]
fn finalizer_that_collects() {
    within("finalizer_that_collects", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(20, 2) as u32 {
            let log = Log::new();
            let x = fin(&heap, round, &log);
            let w = Weak::new(&x);
            let up = Upgrader::new(w.clone(), true);
            let cyc_log = Log::new();
            {
                let a = fin(&heap, 1000, &cyc_log);
                let b = fin(&heap, 1001, &cyc_log);
                *a.next.lock().unwrap() = Some(b.clone());
                *b.next.lock().unwrap() = Some(a.clone());
            }
            let answers: Seen = Arc::default();
            let cbs = Arc::new(AtomicUsize::new(0));
            let collected = Arc::new(AtomicUsize::new(0));
            let (a2, up2, h2, cb2, col2) = (
                answers.clone(),
                up.clone(),
                heap.clone(),
                cbs.clone(),
                collected.clone(),
            );
            set_fin(&x, move |this| {
                let mut ws = Vec::new();
                for _ in 0..3 {
                    let cb3 = cb2.clone();
                    ws.push(Weak::with_callback(this, move |_| {
                        cb3.fetch_add(1, SeqCst);
                    }));
                }
                see(&a2, "before collect", up2.ask());
                col2.store(h2.collect(), SeqCst);
                see(&a2, "after collect", up2.ask());
                // The weak references are dropped here (before the death): no callback.
                drop(ws);
            });
            if round % 2 == 0 {
                drop(x);
            } else {
                let x = merged(x);
                drop(x);
            }
            heap.safepoint();
            see(&answers, "after", up.ask());
            up.finish(&heap);
            assert!(w.upgrade().is_none());
            assert_eq!((log.fin(), log.drops()), (1, 1), "round {round}");
            assert_eq!(collected.load(SeqCst), 2, "round {round}");
            assert_eq!((cyc_log.fin(), cyc_log.drops()), (2, 2));
            assert_eq!(cbs.load(SeqCst), 0);
            let a = answers.lock().unwrap().clone();
            assert!(a.iter().all(|&(_, v)| !v), "round {round}: {a:?}");
        }
        ends_clean(&heap, &reports);
    });
}

/// 8. A frozen object (in the permanent set, `GC_FROZEN` in the same `gc_bits` byte) dies on
///    the refcount path: the mark is set and cleared beside the frozen bit; other threads
///    refused; its finalizer resurrects it once, and the resurrected object is still frozen
///    (a collection does not free it), then dies for good; after `unfreeze` nothing remains.
#[test]
fn frozen_object_finalizer() {
    within("frozen_object_finalizer", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let x = fin(&heap, 1, &log);
        let w = Weak::new(&x);
        heap.freeze();
        let up = Upgrader::new(w.clone(), false);
        let answers: Seen = Arc::default();
        let slot: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
        let (a2, up2, s2) = (answers.clone(), up.clone(), slot.clone());
        set_fin(&x, move |this| {
            see(&a2, "in fin", up2.ask());
            *s2.lock().unwrap() = Some(this.clone());
        });
        drop(x);
        see(&answers, "after fin", up.ask());
        let g = slot.lock().unwrap().take().unwrap();
        // A self-cycle through its own slot, frozen object: the collection skips it.
        *g.next.lock().unwrap() = Some(g.clone());
        drop(g);
        assert_eq!(heap.collect(), 0);
        see(&answers, "frozen cycle", up.ask());
        heap.unfreeze();
        assert_eq!(heap.collect(), 1);
        see(&answers, "collected", up.ask());
        up.finish(&heap);
        assert_eq!((log.fin(), log.drops()), (1, 1));
        let got: Vec<bool> = answers.lock().unwrap().iter().map(|&(_, v)| v).collect();
        assert_eq!(
            got,
            [false, true, true, false],
            "{:?}",
            answers.lock().unwrap()
        );
        drop(w);
        ends_clean(&heap, &reports);
    });
}

/// 9. Cycles with finalizers and weak references collected by the collector (finalizers run
///    by the collection, where the mark plays no part) while another thread hammers upgrades,
///    the finalizers cloning their handle and dropping the clone inside `Heap::detached` and
///    on another thread: no upgrade after a `None`, each finalized and dropped once.
#[test]
fn collected_cycles_with_clone_dropping_finalizers() {
    within("collected_cycles", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(40, 2) as u32 {
            let log = Log::new();
            let a = fin(&heap, 2 * round, &log);
            let b = fin(&heap, 2 * round + 1, &log);
            *a.next.lock().unwrap() = Some(b.clone());
            *b.next.lock().unwrap() = Some(a.clone());
            let wa = Weak::new(&a);
            let h2 = heap.clone();
            set_fin(&a, move |this| {
                let c = this.clone();
                h2.detached(|| drop(c));
            });
            set_fin(&b, |this| {
                let c = this.clone();
                thread::spawn(move || drop(c)).join().unwrap();
            });
            drop((a, b));
            let stop = Arc::new(AtomicBool::new(false));
            let bad = Arc::new(AtomicUsize::new(0));
            let (w2, st, bad2) = (wa.clone(), stop.clone(), bad.clone());
            let t = thread::spawn(move || {
                let mut none = false;
                loop {
                    let last = st.load(SeqCst);
                    match w2.upgrade() {
                        Some(_) if none => {
                            bad2.fetch_add(1, SeqCst);
                        }
                        Some(_) => {}
                        None => none = true,
                    }
                    if last {
                        break;
                    }
                }
            });
            let n = heap.collect();
            stop.store(true, SeqCst);
            heap.detached(|| t.join().unwrap());
            heap.safepoint();
            let n2 = heap.collect();
            assert_eq!(n + n2, 2, "round {round}");
            assert_eq!(bad.load(SeqCst), 0, "round {round}");
            assert!(wa.upgrade().is_none());
            assert_eq!((log.fin(), log.drops()), (2, 2), "round {round}");
        }
        ends_clean(&heap, &reports);
    });
}

thread_local! {
    static HELD: std::cell::RefCell<Option<Gc<Fin>>> = const { std::cell::RefCell::new(None) };
}

/// 10. A finalizer run by a thread's exit (a thread-local destructor drops the last handle,
///     before or after reap's own exit handling): the finalizer's own upgrades succeed, another
///     thread's are refused during and after; a clone made and dropped in it changes
///     nothing; dead once.
#[test]
fn finalizer_in_thread_local_destructor() {
    within("finalizer_in_tls_destructor", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(20, 2) as u32 {
            let log = Log::new();
            let (wtx, wrx) = mpsc::channel::<Weak<Fin>>();
            let (go_tx, go_rx) = mpsc::channel::<Arc<Upgrader>>();
            let h = heap.clone();
            let l2 = log.clone();
            let t = thread::spawn(move || {
                let x = fin(&h, round, &l2);
                wtx.send(Weak::new(&x)).unwrap();
                let up = h.detached(|| go_rx.recv().unwrap());
                let w2 = Weak::new(&x);
                let l3 = l2.clone();
                set_fin(&x, move |this| {
                    l3.see(format!("own {}", w2.upgrade().is_some()));
                    l3.see(format!("other {}", up.ask()));
                    let c = this.clone();
                    drop(c);
                    l3.see(format!("other {}", up.ask()));
                    l3.see(format!("own {}", w2.upgrade().is_some()));
                    drop(w2);
                });
                if round % 2 == 1 {
                    // Attached before the thread local: its destructor runs after reap's.
                    HELD.with(|s| *s.borrow_mut() = Some(x));
                } else {
                    let x = merged(x);
                    HELD.with(|s| *s.borrow_mut() = Some(x));
                }
            });
            let w = wrx.recv().unwrap();
            let up = Upgrader::new(w.clone(), false);
            go_tx.send(up.clone()).unwrap();
            heap.detached(|| t.join().unwrap());
            heap.safepoint();
            let after = up.ask();
            up.finish(&heap);
            assert!(!after, "round {round}");
            assert!(w.upgrade().is_none());
            assert_eq!((log.fin(), log.drops()), (1, 1), "round {round}");
            assert_eq!(
                log.seen(),
                ["own true", "other false", "other false", "own true"],
                "round {round}"
            );
        }
        ends_clean(&heap, &reports);
    });
}

/// 11. Nested finalizers on one thread with no owner id (a never-attached thread drops the
///     last reference of a merged object whose finalizer drops the last reference of
///     another): the outer finalizer's own upgrade keeps succeeding inside the inner one and
///     after it; other threads refused both; each dead once.
#[test]
fn nested_unattached_finalizers_upgrade_each_other() {
    within("nested_unattached_finalizers", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let outer = merged(fin(&heap, 1, &log));
        let inner = merged(fin(&heap, 2, &log));
        let wo = Weak::new(&outer);
        let wi = Weak::new(&inner);
        let up = Upgrader::new(wo.clone(), false);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s1, s2) = (seen.clone(), seen.clone());
        let (wo1, wo2, wi2, up1, up2) =
            (wo.clone(), wo.clone(), wi.clone(), up.clone(), up.clone());
        set_fin(&inner, move |_| {
            s2.lock()
                .unwrap()
                .push(("inner: own outer", wo2.upgrade().is_some()));
            s2.lock()
                .unwrap()
                .push(("inner: own inner", wi2.upgrade().is_some()));
            s2.lock().unwrap().push(("inner: other outer", up2.ask()));
        });
        let inner_slot = Mutex::new(Some(inner));
        set_fin(&outer, move |_| {
            drop(inner_slot.lock().unwrap().take());
            s1.lock()
                .unwrap()
                .push(("outer: own outer", wo1.upgrade().is_some()));
            s1.lock().unwrap().push(("outer: other outer", up1.ask()));
        });
        heap.detached(|| thread::spawn(move || drop(outer)).join().unwrap());
        heap.safepoint();
        let after = up.ask();
        up.finish(&heap);
        assert!(!after);
        assert_eq!((log.fin(), log.drops()), (2, 2));
        assert!(wo.upgrade().is_none() && wi.upgrade().is_none());
        let got = seen.lock().unwrap().clone();
        assert_eq!(
            got,
            [
                ("inner: own outer", true),
                ("inner: own inner", true),
                ("inner: other outer", false),
                ("outer: own outer", true),
                ("outer: other outer", false)
            ]
        );
        drop((wo, wi));
        ends_clean(&heap, &reports);
    });
}

// ---------------------------------------------------------------------------------------
// asked_again
// ---------------------------------------------------------------------------------------

/// A self-cycle of a [`Fin`] on `heap` (garbage once the returned weak reference is all
/// that is left).
fn self_cycle(heap: &Heap, id: u32, log: &Arc<Log>) -> Weak<Fin> {
    let a = fin(heap, id, log);
    *a.next.lock().unwrap() = Some(a.clone());
    Weak::new(&a)
}

/// A collection callback that, at the `Start` of the first collection of `generation` it
/// sees, runs `f` (once), on the collecting thread.
fn on_first_start(heap: &Heap, generation: usize, f: impl FnOnce() + Send + 'static) -> u64 {
    let f = Mutex::new(Some(f));
    heap.add_collect_callback(Arc::new(move |phase, info| {
        if phase == CollectPhase::Start && info.generation == generation {
            if let Some(f) = f.lock().unwrap().take() {
                f();
            }
        }
    }))
}

/// 12. The basic promise, counted: while thread C's explicit collection runs (held in its
///     `Start` callback), thread B (never attached before) drops a cycle and asks; B gets 0,
///     C's `collect` returns both cycles, `get_stats` counts two collections and the objects
///     freed; the sum of every `collect`'s return equals the objects freed.
#[test]
fn asked_again_counts_add_up() {
    within("asked_again_counts", || {
        for round in 0..reps(20, 2) as u32 {
            let heap = Heap::new();
            let reports = hooked(&heap);
            let log = Log::new();
            let w1 = self_cycle(&heap, 1, &log);
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let (done_tx, done_rx) = mpsc::channel::<usize>();
            let h = heap.clone();
            let l2 = log.clone();
            let b = thread::spawn(move || {
                go_rx.recv().unwrap();
                let w2 = self_cycle(&h, 2, &l2);
                let n = h.collect();
                done_tx.send(n).unwrap();
                if round % 2 == 1 {
                    // Leaves the heap (exits) while the extra round is still to run.
                    return (n, w2);
                }
                // Waits, detached, for C's answer.
                h.detached(|| thread::sleep(Duration::from_millis(1)));
                (n, w2)
            });
            let done_rx = Mutex::new(done_rx);
            on_first_start(&heap, 2, move || {
                go_tx.send(()).unwrap();
                let _ = done_rx.lock().unwrap().recv().unwrap();
            });
            let before = heap.get_stats();
            let mine = heap.collect();
            let (theirs, w2) = heap.detached(|| b.join().unwrap());
            let after = heap.get_stats();
            assert_eq!(theirs, 0);
            assert_eq!(mine, 2, "round {round}");
            assert!(w1.upgrade().is_none() && w2.upgrade().is_none());
            assert_eq!(after[2].collections - before[2].collections, 2);
            assert_eq!(after[2].collected - before[2].collected, 2);
            assert_eq!((log.fin(), log.drops()), (2, 2));
            no_reports(&reports);
            drop((w1, w2));
            assert_eq!(settled_live(&heap), 0);
        }
    });
}

/// 13. An automatic collection (generation 0) runs the extra round for an explicit request
///     made while it ran: the asker's cycle is freed, but the automatic collection's count is
///     returned to nobody. SEMANTICS 8.5 says the extra round's count is "added to what that
///     one returns, so that every object an explicit collection frees is in the count some
///     `collect` returns": here the explicit request's objects are in no returned count
///     (only in `get_stats()[0]`). Asserts the statistics (which must add up) and reports the
///     returns.
#[test]
fn asked_again_during_an_automatic_collection() {
    let (returned, freed, stats) = within("asked_again_automatic", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        heap.set_threshold(50, 10, 0);
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<usize>();
        let h = heap.clone();
        let l2 = log.clone();
        let b = thread::spawn(move || {
            go_rx.recv().unwrap();
            let w2 = self_cycle(&h, 2, &l2);
            let n = h.collect();
            done_tx.send(n).unwrap();
            h.detached(|| thread::sleep(Duration::from_millis(1)));
            (n, w2)
        });
        let done_rx = Mutex::new(done_rx);
        let fired = Arc::new(AtomicBool::new(false));
        let f2 = fired.clone();
        on_first_start(&heap, 0, move || {
            f2.store(true, SeqCst);
            go_tx.send(()).unwrap();
            let _ = done_rx.lock().unwrap().recv().unwrap();
        });
        let before = heap.get_stats();
        // Enough tracked allocations to make an automatic collection due (threads report
        // theirs every 512); it runs at one of these allocations' safe points.
        let mut keep = Vec::new();
        let mut i = 0;
        while !fired.load(SeqCst) {
            keep.push(fin(&heap, 100 + i, &Log::new()));
            heap.safepoint();
            i += 1;
            assert!(i < 100_000, "no automatic collection");
        }
        let (theirs, w2) = heap.detached(|| b.join().unwrap());
        heap.safepoint();
        let after = heap.get_stats();
        let freed_b = w2.upgrade().is_none();
        drop(keep);
        drop(w2);
        no_reports(&reports);
        let stats: Vec<(usize, u64)> = (0..3)
            .map(|g| {
                (
                    (after[g].collections - before[g].collections) as usize,
                    after[g].collected - before[g].collected,
                )
            })
            .collect();
        assert_eq!(heap.collect(), 0);
        assert_eq!(settled_live(&heap), 0);
        (theirs, (freed_b, log.drops()), stats)
    });
    // The asker's cycle was freed by the automatic collection's extra round...
    assert_eq!(freed, (true, 1), "stats {stats:?}");
    // ...and is counted in generation 0's statistics.
    let total: u64 = stats.iter().map(|s| s.1).sum();
    assert_eq!(total, 1, "stats {stats:?}");
    assert_eq!(
        returned, 0,
        "the asker's collect returned its count after all"
    );
    // Report: the only explicit `collect` returned 0 though its cycle was freed.
    eprintln!(
        "asked_again_during_an_automatic_collection: explicit collect returned {returned}, \
         its cycle freed by an automatic collection whose count nobody receives; stats {stats:?}"
    );
}

/// 14. The asker blocks while attached (the program's error, SEMANTICS 8.5) waiting for the
///     collector's `collect` to return: the extra round cannot stop the world, gives up after
///     100 ms (not the collector's full timeout), and the collector's `collect` returns its
///     own count without panicking; a later collection frees the asker's cycle.
#[test]
fn asked_again_asker_blocks_attached() {
    within("asked_again_asker_blocks", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let w1 = self_cycle(&heap, 1, &log);
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (asked_tx, asked_rx) = mpsc::channel::<usize>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let h = heap.clone();
        let l2 = log.clone();
        let b = thread::spawn(move || {
            go_rx.recv().unwrap();
            let w2 = self_cycle(&h, 2, &l2);
            let n = h.collect();
            asked_tx.send(n).unwrap();
            // Blocks while attached until the collector's collect returned.
            release_rx.recv().unwrap();
            (n, w2)
        });
        let asked_rx = Mutex::new(asked_rx);
        on_first_start(&heap, 2, move || {
            go_tx.send(()).unwrap();
            let _ = asked_rx.lock().unwrap().recv().unwrap();
        });
        let t0 = Instant::now();
        // The first round, too, must stop the world with B blocked attached: it cannot,
        // unless B asked first... B asks inside the Start callback, then blocks: the first
        // round fails too. Use try_collect to see it.
        let r = heap.try_collect(Duration::from_millis(200));
        let took = t0.elapsed();
        release_tx.send(()).unwrap();
        let (theirs, w2) = heap.detached(|| b.join().unwrap());
        assert_eq!(theirs, 0);
        assert!(
            r.is_err(),
            "the first round stopped a world with a blocked thread: {r:?}"
        );
        assert!(took < Duration::from_secs(2), "took {took:?}");
        heap.safepoint();
        assert_eq!(heap.collect(), 2);
        assert!(w1.upgrade().is_none() && w2.upgrade().is_none());
        drop((w1, w2));
        ends_clean(&heap, &reports);
    });
}

/// 15. As 14 but the asker blocks attached only after the collector's first round has ended
///     (it waits, detached, for the first round's `Stop` callback to tell it, then blocks
///     attached until the collector's `collect` returned): the extra round cannot stop the
///     world, gives up within 100 ms (not the collector's 5 s), and the collector's `collect`
///     returns without panicking; a later collection frees what is left.
#[test]
fn asked_again_extra_round_times_out_quickly() {
    within("asked_again_extra_round_timeout", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let w1 = self_cycle(&heap, 1, &log);
        let (fin_tx, fin_rx) = mpsc::channel::<()>();
        let fin_tx = Mutex::new(Some(fin_tx));
        heap.add_collect_callback(Arc::new(move |phase, _| {
            if phase == CollectPhase::Stop {
                if let Some(t) = fin_tx.lock().unwrap().take() {
                    let _ = t.send(());
                }
            }
        }));
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let h = heap.clone();
        let l2 = log.clone();
        let b = thread::spawn(move || {
            let w2 = self_cycle(&h, 2, &l2);
            h.detached(|| go_rx.recv().unwrap());
            let n = h.collect();
            // Wait (detached) for the first round's finalizer, then block attached.
            h.detached(|| fin_rx.recv().unwrap());
            release_rx.recv().unwrap();
            (n, w2)
        });
        let asked = Arc::new(AtomicBool::new(false));
        let a2 = asked.clone();
        let go_tx = Mutex::new(Some(go_tx));
        on_first_start(&heap, 2, move || {
            go_tx.lock().unwrap().take().unwrap().send(()).unwrap();
            // Give B time to ask (it is detached while it waits, so this does not block
            // the world; B's collect happens while this callback runs).
            thread::sleep(Duration::from_millis(50));
            a2.store(true, SeqCst);
        });
        let t0 = Instant::now();
        let mine = heap.collect();
        let took = t0.elapsed();
        release_tx.send(()).unwrap();
        let (theirs, w2) = heap.detached(|| b.join().unwrap());
        assert!(asked.load(SeqCst));
        assert_eq!(theirs, 0);
        assert!(took < Duration::from_secs(2), "took {took:?}");
        heap.safepoint();
        let later = heap.collect();
        assert_eq!(mine + later, 2, "mine {mine} later {later}");
        assert!(w1.upgrade().is_none() && w2.upgrade().is_none());
        drop((w1, w2));
        ends_clean(&heap, &reports);
    });
}

/// 16. Collections asked for from finalizers and weak-reference callbacks on other threads
///     (refcount-path deaths), from another collection callback, and from `Drop`, while
///     thread C collects repeatedly; every `collect`'s return summed equals the objects
///     freed, and so does `get_stats`; no hang.
#[test]
fn asked_again_from_user_code_on_other_threads() {
    within("asked_again_user_code", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        heap.disable();
        let total_returned = Arc::new(AtomicUsize::new(0));
        let log = Log::new();
        let before = heap.get_stats();
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        let n_rounds = reps(200, 3);
        for k in 0..2u32 {
            let (h, l, tr, st) = (
                heap.clone(),
                log.clone(),
                total_returned.clone(),
                stop.clone(),
            );
            workers.push(thread::spawn(move || {
                for i in 0..n_rounds as u32 {
                    // A cycle, dropped.
                    let _ = self_cycle(&h, 10_000 * (k + 1) + i, &l);
                    // An object whose finalizer collects, dying here on the refcount path.
                    let x = fin(&h, 1, &l);
                    let (h2, tr2) = (h.clone(), tr.clone());
                    set_fin(&x, move |_| {
                        tr2.fetch_add(h2.collect(), SeqCst);
                    });
                    let (h3, tr3) = (h.clone(), tr.clone());
                    let y = fin(&h, 2, &l);
                    let wy = Weak::with_callback(&y, move |_| {
                        tr3.fetch_add(h3.collect(), SeqCst);
                    });
                    let (h4, tr4) = (h.clone(), tr.clone());
                    *y.on_drop.lock().unwrap() = Some(Box::new(move || {
                        tr4.fetch_add(h4.collect(), SeqCst);
                    }));
                    drop(x);
                    drop(y);
                    drop(wy);
                    if st.load(SeqCst) {
                        break;
                    }
                }
            }));
        }
        // A collection callback that asks on a fresh thread (a `collect` from its user code
        // on the collector's own thread is nested; on another thread it is a request).
        let (h5, tr5) = (heap.clone(), total_returned.clone());
        let asked_from_cb = Arc::new(AtomicUsize::new(0));
        let afc = asked_from_cb.clone();
        // It holds a heap handle: removed at the end, or the heap would leak (an `Arc` cycle).
        let cb = heap.add_collect_callback(Arc::new(move |phase, _| {
            if phase == CollectPhase::Start && afc.fetch_add(1, SeqCst) % 7 == 0 {
                let (h6, tr6) = (h5.clone(), tr5.clone());
                thread::spawn(move || tr6.fetch_add(h6.collect(), SeqCst))
                    .join()
                    .unwrap();
            }
        }));
        let mut mine = 0;
        while workers.iter().any(|w| !w.is_finished()) {
            mine += heap.collect();
            heap.detached(|| thread::sleep(Duration::from_micros(200)));
        }
        for w in workers {
            heap.detached(|| w.join().unwrap());
        }
        stop.store(true, SeqCst);
        heap.safepoint();
        mine += heap.collect();
        mine += heap.collect();
        let after = heap.get_stats();
        let returned = mine + total_returned.load(SeqCst);
        let stats_collected: u64 = (0..3)
            .map(|g| after[g].collected - before[g].collected)
            .sum();
        heap.remove_collect_callback(cb);
        ends_clean(&heap, &reports);
        // Every cycle (id >= 10_000) was freed by some collection: sum of returns equals
        // the collections' statistics.
        assert_eq!(returned as u64, stats_collected, "returns vs stats");
        assert_eq!(log.fin(), log.drops());
    });
}

/// 17. Two heaps, each collector's `Start` callback asking for a collection of the other
///     heap while the other's collector is in its own `Start` callback: both asks return 0
///     (busy), both collectors run an extra round; no deadlock, no panic, and every cycle
///     is freed by the end.
#[test]
fn asked_again_two_heaps_crosswise() {
    within("asked_again_two_heaps", || {
        let h1 = Heap::new();
        let h2 = Heap::new();
        let r1 = hooked(&h1);
        let r2 = hooked(&h2);
        let log = Log::new();
        let wa = self_cycle(&h1, 1, &log);
        let wb = self_cycle(&h2, 2, &log);
        let both = Arc::new(Barrier::new(2));
        let answers = Arc::new(Mutex::new(Vec::new()));
        for (mine, other, name) in [(&h1, &h2, "h1"), (&h2, &h1, "h2")] {
            let (o, b, a) = (other.clone(), both.clone(), answers.clone());
            let m = mine.clone();
            on_first_start(mine, 2, move || {
                // Both collectors are in their Start callbacks: ask the other heap, whose
                // collector is busy. Waits detached from this heap (not needed: the world
                // runs) and asks on a fresh thread, so this thread attaches to neither.
                m.detached(|| b.wait());
                let o2 = o.clone();
                let n = thread::spawn(move || o2.collect()).join().unwrap();
                a.lock().unwrap().push((name, n));
                m.detached(|| b.wait());
            });
        }
        let (ha, hb) = (h1.clone(), h2.clone());
        let ta = thread::spawn(move || ha.collect());
        let tb = thread::spawn(move || hb.collect());
        // This thread is attached to both heaps (it allocated): it joins detached from both.
        let (na, nb) = h1.detached(|| h2.detached(|| (ta.join().unwrap(), tb.join().unwrap())));
        let got = answers.lock().unwrap().clone();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|&(_, n)| n == 0), "{got:?}");
        assert_eq!((na, nb), (1, 1));
        assert!(wa.upgrade().is_none() && wb.upgrade().is_none());
        drop((wa, wb));
        no_reports(&r1);
        no_reports(&r2);
        assert_eq!(settled_live(&h1), 0);
        assert_eq!(settled_live(&h2), 0);
    });
}

/// A node whose one handle sits in an `Arc` slot it shares with code outside the heap
/// (the `collect_exhaustive` doc example): a cycle closed through it drops no reference.
struct SlotNode {
    slot: Arc<Mutex<Option<Gc<SlotNode>>>>,
    drops: Arc<AtomicUsize>,
}

// SAFETY: visits the handle in its slot, once, through the lock; nothing else.
unsafe impl Trace for SlotNode {
    fn trace(&self, tracer: &mut reap::Tracer<'_>) {
        self.slot.trace(tracer);
    }
}

impl Drop for SlotNode {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

/// 18. `collect_exhaustive` asked for on thread B while thread C's collection runs: 0 at
///     once; the extra round C runs for it is a `Discover` one, which does not examine every
///     object, so garbage no dropped reference announced (a cycle closed through an `Arc`
///     slot, B's reason to ask for an exhaustive collection) is not found by it. SEMANTICS
///     8.5: the request "is not lost". Asserts that B's garbage is freed by the time C's
///     `collect` returned.
#[test]
fn asked_again_exhaustive_request() {
    let (drops_after, mine, later) = within("asked_again_exhaustive", || {
        let heap = Heap::new();
        let log = Log::new();
        let w1 = self_cycle(&heap, 1, &log);
        let drops = Arc::new(AtomicUsize::new(0));
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<usize>();
        let h = heap.clone();
        let d2 = drops.clone();
        let b = thread::spawn(move || {
            go_rx.recv().unwrap();
            let slot = Arc::new(Mutex::new(None));
            let node = h.alloc(SlotNode {
                slot: slot.clone(),
                drops: d2,
            });
            *slot.lock().unwrap() = Some(node);
            drop(slot);
            let n = h.collect_exhaustive();
            done_tx.send(n).unwrap();
            n
        });
        let done_rx = Mutex::new(done_rx);
        on_first_start(&heap, 2, move || {
            go_tx.send(()).unwrap();
            let _ = done_rx.lock().unwrap().recv().unwrap();
        });
        let mine = heap.collect();
        let theirs = heap.detached(|| b.join().unwrap());
        assert_eq!(theirs, 0);
        let drops_after = drops.load(SeqCst);
        let later = heap.collect_exhaustive();
        assert_eq!(drops.load(SeqCst), 1);
        assert!(w1.upgrade().is_none());
        drop(w1);
        assert_eq!(settled_live(&heap), 0);
        (drops_after, mine, later)
    });
    assert_eq!(mine + later, 2);
    assert_eq!(
        (drops_after, mine),
        (1, 2),
        "SEMANTICS 8.5: an exhaustive collection asked for while another ran returned 0, and \
         the running collector's extra round (Discover) did not find the garbage it was asked \
         for; a later collect_exhaustive freed {later}"
    );
}

// Seventeenth session: a handle the finalizer hands out, cloned on another thread. The
// eight-thread stress test (`sync_stress.rs`) once found a worker holding a clone of a
// resurrecting object whose shared weak reference did not upgrade: the worker had taken the
// handle the finalizer stored before the finalizer returned, and the mark refused every
// thread's upgrade until then. On the free-threaded build that clone is an increment of the
// shared count, which makes upgrades succeed at once; here, since then, such a clone lifts
// the mark (`heap::inc_foreign`).

/// 20. The owner's finalizer stores a clone of its object where another thread takes it, and
///     waits for that thread. There, before any clone, the handle was only moved: the weak
///     reference still refuses (as on the free-threaded build, where a moved reference is no
///     increment). After a clone on that thread, its upgrades of the old weak reference and
///     of one made from the clone return the object, during the finalizer. Once everything
///     is dropped, the object dies once more (no second finalizer) and is dropped once.
#[test]
fn a_lent_handle_cloned_on_another_thread_upgrades_there_during_the_finalizer() {
    let (seen, fins, drops) = within("lent_handle_cloned_upgrades", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let x = fin(&heap, 20, &log);
        let w = Weak::new(&x);
        let slot: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
        let seen: Seen = Arc::default();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (s2, seen2, w2) = (slot.clone(), seen.clone(), w.clone());
        let other = thread::spawn(move || {
            go_rx.recv().unwrap();
            let g = s2
                .lock()
                .unwrap()
                .take()
                .expect("the finalizer stored its object");
            seen2
                .lock()
                .unwrap()
                .push(("moved only", w2.upgrade().is_some()));
            let c = g.clone();
            let up = w2.upgrade();
            let same = up.as_ref().is_some_and(|u| Gc::ptr_eq(u, &c));
            seen2.lock().unwrap().push(("after a clone", same));
            let fresh = Weak::new(&c);
            let up2 = fresh.upgrade();
            seen2
                .lock()
                .unwrap()
                .push(("a weak reference made here", up2.is_some()));
            drop((up, up2, fresh, c, g));
            done_tx.send(()).unwrap();
        });
        let done_rx = Mutex::new(done_rx);
        let s3 = slot.clone();
        set_fin(&x, move |this| {
            *s3.lock().unwrap() = Some(this.clone());
            go_tx.send(()).unwrap();
            done_rx.lock().unwrap().recv().unwrap();
        });
        drop(x);
        heap.detached(|| other.join().unwrap());
        heap.safepoint();
        assert!(w.upgrade().is_none(), "every handle is gone");
        drop(w);
        ends_clean(&heap, &reports);
        let s = seen.lock().unwrap().clone();
        (s, log.fin(), log.drops())
    });
    assert_eq!((fins, drops), (1, 1));
    assert_eq!(
        seen,
        vec![
            ("moved only", false),
            ("after a clone", true),
            ("a weak reference made here", true)
        ],
        "SEMANTICS 8.3: a thread holding a clone of a handle the finalizer stored upgrades \
         its weak references during the finalizer; a moved handle alone does not"
    );
}

/// 21. As 20, but the other thread gives the handle back: it clones it (lifting the mark),
///     upgrades, drops what it made and sends the stored handle back to the finalizer,
///     which drops it. Once lifted, the mark stays lifted until the finalizer returns (the
///     finalizer stored a reference, so SEMANTICS 8.3 lets upgrades take the object): an
///     upgrade on a third thread then returns it, and drops it at once. Nothing is stored
///     any more when the finalizer returns: the object is dead (`resurrect_end`'s fast
///     verdict, which sets the mark again, as the word is all zero), and an upgrade after
///     the finalizer returns `None`.
#[test]
fn a_lent_handle_cloned_elsewhere_and_given_back_leaves_the_object_dead() {
    let (seen, fins, drops, after) = within("lent_handle_given_back", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let x = fin(&heap, 21, &log);
        let w = Weak::new(&x);
        let up = Upgrader::new(w.clone(), false);
        let seen: Seen = Arc::default();
        let (lend_tx, lend_rx) = mpsc::channel::<Gc<Fin>>();
        let (back_tx, back_rx) = mpsc::channel::<Gc<Fin>>();
        let (seen2, w2) = (seen.clone(), w.clone());
        let other = thread::spawn(move || {
            let g = lend_rx.recv().unwrap();
            let c = g.clone();
            let u = w2.upgrade();
            seen2.lock().unwrap().push(("after a clone", u.is_some()));
            drop((u, c));
            back_tx.send(g).unwrap();
        });
        let (lend_tx, back_rx) = (Mutex::new(lend_tx), Mutex::new(back_rx));
        let (seen3, up2) = (seen.clone(), up.clone());
        set_fin(&x, move |this| {
            lend_tx.lock().unwrap().send(this.clone()).unwrap();
            let g = back_rx.lock().unwrap().recv().unwrap();
            drop(g);
            // The other thread's clone lifted the mark; its handles are gone and the
            // temporary reference is the only one left: this upgrade takes the object and
            // drops it on its thread, resurrecting nothing.
            seen3
                .lock()
                .unwrap()
                .push(("in the finalizer, given back", up2.ask()));
        });
        drop(x);
        let after = up.ask();
        up.finish(&heap);
        heap.detached(|| other.join().unwrap());
        heap.safepoint();
        assert!(w.upgrade().is_none());
        drop(w);
        ends_clean(&heap, &reports);
        let s = seen.lock().unwrap().clone();
        (s, log.fin(), log.drops(), after)
    });
    assert_eq!((fins, drops), (1, 1));
    assert_eq!(
        seen,
        vec![
            ("after a clone", true),
            ("in the finalizer, given back", true)
        ]
    );
    assert!(
        !after,
        "the object died after its finalizer, yet an upgrade returned it: {seen:?}"
    );
}
