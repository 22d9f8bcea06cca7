//! Adversarial review of 3747af9: a referent's weak mark is its tagged `meta` (set when its
//! weak-info block is installed), not a `MAYBE_WEAK` state of the shared word. The owner's
//! last local drop takes the fast death only on an all-zero word of an object with no weak
//! info; otherwise it publishes `MERGED` (even `MERGED`/0) by a compare-and-swap. A weak
//! upgrade on another thread (`count::try_inc`, under the referent's weak lock) accepts an
//! all-zero word unless the object is inside its refcount-path finalizer, and
//! `heap::destroy` marks it so and stores the finalizer's all-zero word under the weak lock
//! when the object has weak info.
//!
//! Written by the sixteenth session's review helper. Tests 17 and 18 found two older breaches
//! of SEMANTICS 8.3 (the refusal then rested on the all-zero word, which the finalizer's own
//! clones could change: one dropped inside `Heap::detached`, or one made on a thread with no
//! owner id); they pass since upgrades refuse the mark `GC_FINALIZING`, held from
//! `count::resurrect_start` to `count::resurrect_end`.
//!
//! Each test says what it attacks and asserts the outcomes: finalizers and `Drop`s run once
//! (and at the right time), upgrades on other threads never return an object that is inside
//! or past its finalizer without a resurrection (SEMANTICS 8.3/8.4: once one returned `None`,
//! none returns the object again), no report to the unraisable hook, no hang (watchdog), and
//! `live_objects() == 0` at the end. Run natively (debug and release), under Miri and under
//! ThreadSanitizer.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;

use reap::sync::{Finalize, Gc, Heap, Weak, WeakRefObj};
use reap::Trace;
use reap_tests::shared::{fin, hooked, merged, reps, set_fin, settled_live, within, Fin, Log};

/// What an upgrading thread saw of one object.
#[derive(Default, Debug)]
struct Seen {
    /// Upgrades that returned the object.
    some: AtomicUsize,
    /// Upgrades that returned `None`.
    none: AtomicUsize,
    /// Violations, described.
    bad: Mutex<Vec<String>>,
}

impl Seen {
    fn bad(&self, s: String) {
        self.bad.lock().unwrap().push(s);
    }
    fn assert_clean(&self) {
        let bad = self.bad.lock().unwrap();
        assert!(bad.is_empty(), "{bad:?}");
    }
}

/// Upgrades `w` until `stop`, recording into `seen`; with `strict` (the finalizer never
/// resurrects the object), a handle obtained while (or after) the finalizer ran, or one
/// obtained after an upgrade returned `None`, is a violation. The handle is dropped on this
/// thread at once (or kept for a few iterations, `hold`).
fn hammer(w: &Weak<Fin>, stop: &AtomicBool, seen: &Seen, log: &Log, strict: bool, hold: bool) {
    let mut kept = Vec::new();
    let mut none_seen = false;
    loop {
        let last = stop.load(SeqCst);
        match w.upgrade() {
            Some(g) => {
                seen.some.fetch_add(1, SeqCst);
                if strict && log.fin() > 0 {
                    seen.bad(format!(
                        "upgrade returned object {} after its finalizer began (fin={})",
                        g.id,
                        log.fin()
                    ));
                }
                if strict && none_seen {
                    seen.bad(format!(
                        "upgrade returned object {} after an upgrade returned None",
                        g.id
                    ));
                }
                if hold {
                    kept.push(g);
                    if kept.len() > 3 {
                        kept.clear();
                    }
                }
            }
            None => {
                none_seen = true;
                seen.none.fetch_add(1, SeqCst);
            }
        }
        if last {
            break;
        }
        if none_seen && seen.none.load(SeqCst) > 3 {
            // A few more after the first None, then stop spinning.
            if stop.load(SeqCst) {
                break;
            }
            thread::yield_now();
        }
    }
    drop(kept);
}

/// A plain object (no finalizer) counting its drops.
#[derive(Trace)]
struct Plain {
    slot: Mutex<Option<Gc<Plain>>>,
    #[reap(skip)]
    drops: Arc<AtomicUsize>,
}

impl Drop for Plain {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

fn plain(heap: &Heap, drops: &Arc<AtomicUsize>) -> Gc<Plain> {
    heap.alloc(Plain {
        slot: Mutex::new(None),
        drops: drops.clone(),
    })
}

/// 1. The core race: the owner's last local drop (shared word all zero, weak info installed by
///    the owner) against upgrades hammering on another, never-attached thread, with a
///    finalizer that does not resurrect. An upgrade must never return the object once its
///    finalizer began, and never after a `None`; finalized and dropped once each round.
#[test]
fn owner_last_drop_against_upgrade_storm() {
    within("owner_last_drop_against_upgrade_storm", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(300, 3) as u32 {
            let log = Log::new();
            let x = fin(&heap, round, &log);
            let w = Weak::new(&x);
            let stop = Arc::new(AtomicBool::new(false));
            let seen = Arc::new(Seen::default());
            let go = Arc::new(Barrier::new(3));
            let ts: Vec<_> = (0..2)
                .map(|i| {
                    let (w, stop, seen, log, go) = (
                        w.clone(),
                        stop.clone(),
                        seen.clone(),
                        log.clone(),
                        go.clone(),
                    );
                    thread::spawn(move || {
                        go.wait();
                        hammer(&w, &stop, &seen, &log, true, i == 1);
                    })
                })
                .collect();
            heap.detached(|| go.wait());
            drop(x);
            stop.store(true, SeqCst);
            heap.detached(|| ts.into_iter().for_each(|t| t.join().unwrap()));
            heap.safepoint();
            seen.assert_clean();
            assert!(w.upgrade().is_none());
            assert_eq!(log.fin(), 1, "round {round}");
            assert_eq!(log.drops(), 1, "round {round}");
        }
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(settled_live(&heap), 0);
    });
}

/// 2. The weak reference is made on a foreign thread that got a clone, which it drops right
///    after making it (so the tag must reach the owner through that drop's decrement), just
///    before the owner's last drop, while a third thread upgrades. Finalizer and no finalizer.
#[test]
fn foreign_weak_then_foreign_drop_before_owner_last_drop() {
    within("foreign_weak_then_foreign_drop", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(300, 3) as u32 {
            let log = Log::new();
            let drops = Arc::new(AtomicUsize::new(0));
            let x = fin(&heap, round, &log);
            let p = plain(&heap, &drops);
            let (wtx, wrx) = mpsc::channel::<(Weak<Fin>, Weak<Plain>)>();
            let stop = Arc::new(AtomicBool::new(false));
            let seen = Arc::new(Seen::default());
            let (xc, pc) = (x.clone(), p.clone());
            let maker = thread::spawn(move || {
                // Never attached before: makes the weak references through the gate.
                let w = (Weak::new(&xc), Weak::new(&pc));
                drop(xc);
                drop(pc);
                w
            });
            let (s2, seen2, log2) = (stop.clone(), seen.clone(), log.clone());
            let upgrader = thread::spawn(move || {
                let (w, wp) = wrx.recv().unwrap();
                let mut none_p = false;
                loop {
                    let last = s2.load(SeqCst);
                    match wp.upgrade() {
                        Some(_) if none_p => seen2.bad("plain upgraded after None".into()),
                        Some(_) => {}
                        None => none_p = true,
                    }
                    hammer_once(&w, &seen2, &log2);
                    if last {
                        break;
                    }
                }
            });
            let ws = heap.detached(|| maker.join().unwrap());
            wtx.send(ws.clone()).unwrap();
            drop(x);
            drop(p);
            stop.store(true, SeqCst);
            heap.detached(|| upgrader.join().unwrap());
            heap.safepoint();
            seen.assert_clean();
            assert!(ws.0.upgrade().is_none() && ws.1.upgrade().is_none());
            assert_eq!(log.fin(), 1);
            assert_eq!(log.drops(), 1);
            assert_eq!(drops.load(SeqCst), 1);
        }
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(settled_live(&heap), 0);
    });
}

/// One strict upgrade of `w` (no resurrection expected), recorded in `seen`.
fn hammer_once(w: &Weak<Fin>, seen: &Seen, log: &Log) {
    match w.upgrade() {
        Some(g) => {
            seen.some.fetch_add(1, SeqCst);
            if log.fin() > 0 {
                seen.bad(format!(
                    "upgrade returned object {} in/after its finalizer",
                    g.id
                ));
            }
            if seen.none.load(SeqCst) > 0 {
                seen.bad(format!("upgrade returned object {} after None", g.id));
            }
        }
        None => {
            seen.none.fetch_add(1, SeqCst);
        }
    }
}

/// 3. The weak reference is made by a scoped thread through a *borrowed* handle (the shared
///    word is never touched: only the scope's join orders the tag before the owner's last
///    drop), and handed to an upgrader that races the owner's last drop.
#[test]
fn weak_made_through_borrow_in_scope() {
    within("weak_made_through_borrow_in_scope", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(300, 3) as u32 {
            let log = Log::new();
            let drops = Arc::new(AtomicUsize::new(0));
            let x = fin(&heap, round, &log);
            let p = plain(&heap, &drops);
            let stop = Arc::new(AtomicBool::new(false));
            let seen = Arc::new(Seen::default());
            let (wtx, wrx) = mpsc::channel::<(Weak<Fin>, Weak<Plain>)>();
            let (s2, seen2, log2) = (stop.clone(), seen.clone(), log.clone());
            let upgrader = thread::spawn(move || {
                let (w, wp) = wrx.recv().unwrap();
                loop {
                    let last = s2.load(SeqCst);
                    hammer_once(&w, &seen2, &log2);
                    drop(wp.upgrade());
                    if last {
                        break;
                    }
                }
                (w, wp)
            });
            heap.detached(|| {
                thread::scope(|s| {
                    s.spawn(|| wtx.send((Weak::new(&x), Weak::new(&p))).unwrap());
                })
            });
            drop(x);
            drop(p);
            stop.store(true, SeqCst);
            let (w, wp) = heap.detached(|| upgrader.join().unwrap());
            heap.safepoint();
            seen.assert_clean();
            assert!(w.upgrade().is_none() && wp.upgrade().is_none());
            assert_eq!((log.fin(), log.drops(), drops.load(SeqCst)), (1, 1, 1));
        }
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(settled_live(&heap), 0);
    });
}

/// 4. Weak references made *inside* the finalizer on the owner path (an attached thread:
///    `Weak::new(this)`, `Weak::with_callback(this, ..)`), handed to another thread that
///    upgrades them and the pre-existing one while the finalizer waits: all `None`; the
///    callback runs once, after the finalizer, and its weak reference upgrades to `None`.
///    Also with no pre-existing weak reference (no weak info when the death began: no lock).
#[test]
fn weak_refs_made_in_owner_finalizer() {
    within("weak_refs_made_in_owner_finalizer", || {
        for pre in [true, false] {
            let heap = Heap::new();
            let reports = hooked(&heap);
            for round in 0..reps(100, 2) as u32 {
                let log = Log::new();
                let x = fin(&heap, round, &log);
                let w0 = pre.then(|| Weak::new(&x));
                let (req_tx, req_rx) = mpsc::channel::<Vec<Weak<Fin>>>();
                let (ans_tx, ans_rx) = mpsc::channel::<Vec<bool>>();
                let t = thread::spawn(move || {
                    while let Ok(ws) = req_rx.recv() {
                        let r = ws.iter().map(|w| w.upgrade().is_some()).collect();
                        ans_tx.send(r).unwrap();
                    }
                });
                let cb_ok = Arc::new(AtomicUsize::new(0));
                let cb_ran = Arc::new(AtomicUsize::new(0));
                let (c1, c2, l2) = (cb_ok.clone(), cb_ran.clone(), log.clone());
                let w0c = w0.clone();
                let answers = Arc::new(Mutex::new(Vec::new()));
                let a2 = answers.clone();
                let keep = Arc::new(Mutex::new(Vec::new()));
                let k2 = keep.clone();
                set_fin(&x, move |this| {
                    let wn = Weak::new(this);
                    let wc = Weak::with_callback(this, move |w| {
                        c2.fetch_add(1, SeqCst);
                        // After the finalizer, the referent cleared.
                        if w.upgrade().is_none() && l2.fin() == 1 {
                            c1.fetch_add(1, SeqCst);
                        }
                    });
                    // Own thread's upgrade: resurrects if kept, so drop it at once.
                    drop(wn.upgrade());
                    let mut ws = vec![wn.clone(), wc.clone()];
                    ws.extend(w0c);
                    req_tx.send(ws).unwrap();
                    a2.lock().unwrap().extend(ans_rx.recv().unwrap());
                    k2.lock().unwrap().push(wn);
                    k2.lock().unwrap().push(wc);
                });
                drop(x);
                heap.detached(|| t.join().unwrap());
                heap.safepoint();
                let answers = answers.lock().unwrap().clone();
                assert!(
                    answers.iter().all(|s| !s),
                    "pre={pre} round {round}: another thread upgraded the object in its finalizer: {answers:?}"
                );
                assert_eq!(log.fin(), 1);
                assert_eq!(log.drops(), 1);
                assert_eq!(
                    cb_ran.load(SeqCst),
                    1,
                    "callback of a finalizer-made weak reference"
                );
                assert_eq!(cb_ok.load(SeqCst), 1);
                for w in keep.lock().unwrap().iter() {
                    assert!(w.upgrade().is_none());
                }
                if let Some(w0) = w0 {
                    assert!(w0.upgrade().is_none());
                }
            }
            assert!(
                reports.lock().unwrap().is_empty(),
                "{:?}",
                reports.lock().unwrap()
            );
            assert_eq!(settled_live(&heap), 0);
        }
    });
}

/// 5. Resurrection then a second death: the finalizer stores a clone (and makes a weak
///    reference); after it returns, another thread's upgrade returns the object (stored, so
///    resurrected); the stored handle's drop on a third thread is the second death, with no
///    finalizer; upgrades racing it follow 8.4. Repeated, with the finalizer's upgrade path too.
#[test]
fn resurrection_then_second_death_with_weak_refs() {
    within("resurrection_then_second_death", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(200, 2) as u32 {
            let log = Log::new();
            let x = fin(&heap, round, &log);
            let w = Weak::new(&x);
            let slot: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
            let wslot: Arc<Mutex<Option<Weak<Fin>>>> = Arc::default();
            let (s2, ws2) = (slot.clone(), wslot.clone());
            let by_upgrade = round % 2 == 0;
            set_fin(&x, move |this| {
                let w = Weak::new(this);
                if by_upgrade {
                    *s2.lock().unwrap() = w.upgrade();
                } else {
                    *s2.lock().unwrap() = Some(this.clone());
                }
                *ws2.lock().unwrap() = Some(w);
            });
            drop(x);
            assert_eq!(log.fin(), 1);
            assert_eq!(log.drops(), 0, "resurrected object dropped");
            let w2 = wslot.lock().unwrap().take().unwrap();
            let (wa, wb) = (w.clone(), w2.clone());
            let got = thread::spawn(move || (wa.upgrade().is_some(), wb.upgrade().is_some()))
                .join()
                .unwrap();
            assert_eq!(
                got,
                (true, true),
                "resurrected object not upgradable elsewhere"
            );
            // Second death on another thread, racing upgrades on a third.
            let stop = Arc::new(AtomicBool::new(false));
            let none_then_some = Arc::new(AtomicBool::new(false));
            let (wc, st, nts) = (w.clone(), stop.clone(), none_then_some.clone());
            let up = thread::spawn(move || {
                let mut none = false;
                loop {
                    let last = st.load(SeqCst);
                    match wc.upgrade() {
                        Some(_) if none => nts.store(true, SeqCst),
                        Some(_) => {}
                        None => none = true,
                    }
                    if last {
                        break;
                    }
                }
            });
            let s3 = slot.clone();
            let dropper = thread::spawn(move || drop(s3.lock().unwrap().take()));
            heap.detached(|| dropper.join().unwrap());
            stop.store(true, SeqCst);
            heap.detached(|| up.join().unwrap());
            heap.safepoint();
            assert!(
                !none_then_some.load(SeqCst),
                "upgrade after None on second death"
            );
            assert!(w.upgrade().is_none() && w2.upgrade().is_none());
            assert_eq!(log.fin(), 1, "finalizer ran twice");
            assert_eq!(log.drops(), 1);
        }
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(settled_live(&heap), 0);
    });
}

/// 6. Weak references to weak-reference objects (`Weak::as_object`), whose own count is in
///    `MAYBE_WEAK` state *and* whose `meta` is tagged: the last handle of the weak-reference
///    object goes on its owner while another thread upgrades the weak reference to it; the
///    referent dies later (the dead weak reference's callback must not run), and a callback
///    on the weak-reference object itself runs once.
#[test]
fn weak_refs_to_weak_reference_objects() {
    within("weak_refs_to_weak_reference_objects", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(300, 3) as u32 {
            let log = Log::new();
            let x = fin(&heap, round, &log);
            let cb1 = Arc::new(AtomicUsize::new(0));
            let cb2 = Arc::new(AtomicUsize::new(0));
            let c1 = cb1.clone();
            let w1 = Weak::with_callback(&x, move |_| {
                c1.fetch_add(1, SeqCst);
            });
            let o1 = Weak::as_object(&w1);
            let ww: Weak<WeakRefObj> = Weak::new(&o1);
            let c2 = cb2.clone();
            let wwc = Weak::with_callback(&o1, move |w| {
                assert!(w.upgrade().is_none());
                c2.fetch_add(1, SeqCst);
            });
            drop(o1);
            let stop = Arc::new(AtomicBool::new(false));
            let bad = Arc::new(AtomicBool::new(false));
            let (st, b2, wwt) = (stop.clone(), bad.clone(), ww.clone());
            let up = thread::spawn(move || {
                let mut none = false;
                loop {
                    let last = st.load(SeqCst);
                    match wwt.upgrade() {
                        Some(_) if none => b2.store(true, SeqCst),
                        Some(o) => drop(o),
                        None => none = true,
                    }
                    if last {
                        break;
                    }
                }
            });
            // The weak reference object's last handle: on the owner, or on another thread.
            if round % 2 == 0 {
                drop(w1);
            } else {
                heap.detached(|| thread::spawn(move || drop(w1)).join().unwrap());
                heap.safepoint();
            }
            stop.store(true, SeqCst);
            heap.detached(|| up.join().unwrap());
            heap.safepoint();
            assert!(
                !bad.load(SeqCst),
                "weak-reference object upgraded after None"
            );
            assert!(ww.upgrade().is_none());
            assert_eq!(cb2.load(SeqCst), 1, "callback on the weak-reference object");
            drop(x);
            heap.safepoint();
            assert_eq!(cb1.load(SeqCst), 0, "a dead weak reference called back");
            assert_eq!((log.fin(), log.drops()), (1, 1));
            drop((ww, wwc));
        }
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(settled_live(&heap), 0);
    });
}

/// 7. The object queued to its owner while weakly referenced: the owner hands its only
///    handle to another thread, which drops it (the shared count is 0: queued, word
///    `QUEUED`/0); an upgrader hammers meanwhile; the owner merges at its safe point (death
///    there). Finalized and dropped once; no upgrade after None; no upgrade returns the
///    object after its finalizer began.
#[test]
fn queued_weakly_referenced_object() {
    within("queued_weakly_referenced_object", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(300, 3) as u32 {
            let log = Log::new();
            let x = fin(&heap, round, &log);
            let w = Weak::new(&x);
            let stop = Arc::new(AtomicBool::new(false));
            let seen = Arc::new(Seen::default());
            let (w2, st, se, lg) = (w.clone(), stop.clone(), seen.clone(), log.clone());
            let up = thread::spawn(move || hammer(&w2, &st, &se, &lg, true, true));
            heap.detached(|| thread::spawn(move || drop(x)).join().unwrap());
            // Queued: alive until this safe point.
            heap.safepoint();
            stop.store(true, SeqCst);
            heap.detached(|| up.join().unwrap());
            heap.safepoint();
            seen.assert_clean();
            assert!(w.upgrade().is_none());
            assert_eq!((log.fin(), log.drops()), (1, 1), "round {round}");
        }
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(settled_live(&heap), 0);
    });
}

/// 8. Objects allocated inside `Heap::detached` (merged from the start) and weakly referenced
///    there; last drop on the owner (outside), inside a detached section, or on an unattached
///    thread, against upgrades; each with a finalizer that makes another weak reference and
///    asks for an upgrade elsewhere (refused).
#[test]
fn detached_allocations_weakly_referenced() {
    within("detached_allocations_weakly_referenced", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(150, 3) as u32 {
            let log = Log::new();
            let x = heap.detached(|| fin(&heap, round, &log));
            let w = heap.detached(|| Weak::new(&x));
            let inner_ok = Arc::new(AtomicUsize::new(0));
            let io = inner_ok.clone();
            set_fin(&x, move |this| {
                let w = Weak::new(this);
                let got = thread::spawn(move || w.upgrade().is_some()).join().unwrap();
                if !got {
                    io.fetch_add(1, SeqCst);
                }
            });
            let stop = Arc::new(AtomicBool::new(false));
            let seen = Arc::new(Seen::default());
            let (w2, st, se, lg) = (w.clone(), stop.clone(), seen.clone(), log.clone());
            let up = thread::spawn(move || hammer(&w2, &st, &se, &lg, true, false));
            match round % 3 {
                0 => drop(x),
                1 => heap.detached(|| drop(x)),
                _ => heap.detached(|| thread::spawn(move || drop(x)).join().unwrap()),
            }
            stop.store(true, SeqCst);
            heap.detached(|| up.join().unwrap());
            heap.safepoint();
            seen.assert_clean();
            assert_eq!(
                inner_ok.load(SeqCst),
                1,
                "upgrade in finalizer from elsewhere"
            );
            assert!(w.upgrade().is_none());
            assert_eq!((log.fin(), log.drops()), (1, 1));
        }
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(settled_live(&heap), 0);
    });
}

/// 9. The owner thread exits leaving a weakly referenced object it owns (shared word all
///    zero, `local` 1: an orphan until a collection merges it). Another thread upgrades it
///    (accepted on the all-zero word, by a compare-and-swap), the stored handle (counted in
///    the exited owner's `local`) is dropped while upgraders race, with and without a
///    collection (`merge_orphan`) first.
#[test]
fn owner_exits_leaving_weakly_referenced_object() {
    within("owner_exits_leaving_weakly_referenced_object", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(100, 2) as u32 {
            let log = Log::new();
            let (h, l) = (heap.clone(), log.clone());
            let (x, w) = heap.detached(|| {
                thread::spawn(move || {
                    let x = fin(&h, round, &l);
                    let w = Weak::new(&x);
                    (x, w)
                })
                .join()
                .unwrap()
            });
            if round % 2 == 0 {
                heap.collect();
            }
            let g = w.upgrade().expect("orphan alive");
            assert_eq!(Gc::strong_count(&g), 2);
            drop(g);
            let stop = Arc::new(AtomicBool::new(false));
            let seen = Arc::new(Seen::default());
            let (w2, st, se, lg) = (w.clone(), stop.clone(), seen.clone(), log.clone());
            let up = thread::spawn(move || hammer(&w2, &st, &se, &lg, true, true));
            if round % 4 < 2 {
                drop(x);
            } else {
                heap.detached(|| thread::spawn(move || drop(x)).join().unwrap());
            }
            stop.store(true, SeqCst);
            heap.detached(|| up.join().unwrap());
            heap.safepoint();
            seen.assert_clean();
            assert!(w.upgrade().is_none());
            assert_eq!((log.fin(), log.drops()), (1, 1), "round {round}");
        }
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(settled_live(&heap), 0);
    });
}

/// 10. Nested finalizers: X's finalizer drops the last handle to Y (weakly referenced, with a
///     finalizer that itself makes weak references and asks another thread to upgrade X and
///     Y). Every answer `None`; each finalized and dropped once; the objects' weak locks
///     (striped) are taken in both deaths, one inside the other's finalizer.
#[test]
fn nested_finalizers_with_weak_refs() {
    within("nested_finalizers_with_weak_refs", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(100, 2) as u32 {
            let log = Log::new();
            let x = fin(&heap, 2 * round, &log);
            let y = fin(&heap, 2 * round + 1, &log);
            let wx = Weak::new(&x);
            let wy = Weak::new(&y);
            let answers = Arc::new(Mutex::new(Vec::new()));
            let (a, wx2, wy2) = (answers.clone(), wx.clone(), wy.clone());
            set_fin(&y, move |this| {
                let wy3 = Weak::with_callback(this, |_| {});
                let (wx2, wy2) = (wx2.clone(), wy2.clone());
                let r = thread::spawn(move || {
                    (
                        wx2.upgrade().is_some(),
                        wy2.upgrade().is_some(),
                        wy3.upgrade().is_some(),
                    )
                })
                .join()
                .unwrap();
                a.lock().unwrap().push(r);
            });
            *x.next.lock().unwrap() = Some(y);
            let mode = round % 3;
            let h2 = heap.clone();
            set_fin(&x, move |this| {
                let y = this.next.lock().unwrap().take();
                match mode {
                    0 => drop(y),
                    1 => h2.detached(|| drop(y)),
                    _ => thread::spawn(move || drop(y)).join().unwrap(),
                }
            });
            match round % 2 {
                0 => drop(x),
                _ => heap.detached(|| drop(x)),
            }
            heap.safepoint();
            heap.safepoint();
            let answers = answers.lock().unwrap().clone();
            assert_eq!(answers, vec![(false, false, false)], "round {round}");
            assert!(wx.upgrade().is_none() && wy.upgrade().is_none());
            assert_eq!((log.fin(), log.drops()), (2, 2), "round {round}");
        }
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(settled_live(&heap), 0);
    });
}

/// A node whose finalizer drops what it holds and makes weak references to other objects.
#[derive(Trace)]
#[reap(sync_finalize)]
struct Web {
    id: usize,
    held: Mutex<Vec<Gc<Web>>>,
    #[reap(skip)]
    weaks: Mutex<Vec<Weak<Web>>>,
    #[reap(skip)]
    fins: Arc<AtomicUsize>,
    #[reap(skip)]
    drops: Arc<AtomicUsize>,
    #[reap(skip)]
    bad: Arc<Mutex<Vec<String>>>,
}

impl Finalize for Web {
    fn finalize(this: &Gc<Self>) {
        this.fins.fetch_add(1, SeqCst);
        // Weak references to itself and to what it holds, then upgrades of the weak
        // references it was given (to anything).
        let me = Weak::new(this);
        let _cb = Weak::with_callback(this, |_| {});
        let held = std::mem::take(&mut *this.held.lock().unwrap());
        let mut ws: Vec<Weak<Web>> = held.iter().map(Weak::new).collect();
        for w in this.weaks.lock().unwrap().iter() {
            if let Some(g) = w.upgrade() {
                ws.push(Weak::new(&g));
            }
        }
        drop(held);
        if me.upgrade().map(|g| g.id) != Some(this.id) {
            this.bad
                .lock()
                .unwrap()
                .push("own upgrade in finalizer failed".into());
        }
        drop(ws);
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

/// 11. Many weakly referenced objects with finalizers dying inside each other's finalizers and
///     weak callbacks, on several threads at once, the objects spread over the weak locks'
///     stripes (deaths take their referent's stripe now): no deadlock, every finalizer and
///     `Drop` once. Collections run meanwhile on one thread.
#[test]
fn webs_of_finalizers_and_weak_refs_no_deadlock() {
    within("webs_of_finalizers_and_weak_refs", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let fins = Arc::new(AtomicUsize::new(0));
        let drops = Arc::new(AtomicUsize::new(0));
        let bad: Arc<Mutex<Vec<String>>> = Arc::default();
        let per = reps(400, 12);
        let threads = if cfg!(miri) { 2 } else { 3 };
        let stop = Arc::new(AtomicBool::new(false));
        let hc = heap.clone();
        let st = stop.clone();
        let collector = thread::spawn(move || {
            while !st.load(SeqCst) {
                hc.collect();
                hc.detached(thread::yield_now);
            }
        });
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (h, f, d, b) = (heap.clone(), fins.clone(), drops.clone(), bad.clone());
                thread::spawn(move || {
                    let mut prev: Vec<Gc<Web>> = Vec::new();
                    let mut cbs = Vec::new();
                    for i in 0..per {
                        let n = h.alloc(Web {
                            id: t * 100_000 + i,
                            held: Mutex::new(Vec::new()),
                            weaks: Mutex::new(Vec::new()),
                            fins: f.clone(),
                            drops: d.clone(),
                            bad: b.clone(),
                        });
                        if let Some(p) = prev.last() {
                            n.held.lock().unwrap().push(p.clone());
                            n.weaks.lock().unwrap().push(Weak::new(p));
                        }
                        if i % 3 == 0 {
                            // A callback that drops a weakly referenced object with a
                            // finalizer (its death takes its weak lock) and upgrades others.
                            let victim = prev.pop();
                            let other = prev.first().map(Weak::new);
                            cbs.push(Weak::with_callback(&n, move |_| {
                                drop(victim);
                                drop(other.and_then(|w| w.upgrade()));
                            }));
                        }
                        prev.push(n);
                        if prev.len() > 6 {
                            prev.remove(0);
                        }
                        if i % 7 == 0 {
                            prev.clear();
                        }
                    }
                    drop(prev);
                    drop(cbs);
                })
            })
            .collect();
        heap.detached(|| workers.into_iter().for_each(|t| t.join().unwrap()));
        stop.store(true, SeqCst);
        heap.detached(|| collector.join().unwrap());
        heap.collect();
        assert!(bad.lock().unwrap().is_empty(), "{:?}", bad.lock().unwrap());
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(settled_live(&heap), 0);
        assert_eq!(fins.load(SeqCst), per * threads, "finalizers");
        assert_eq!(drops.load(SeqCst), per * threads, "drops");
    });
}

/// 12. Collections running while owners drop the last handles of weakly referenced objects
///     (with finalizers, some in 2-cycles) and other threads upgrade them: the collection's
///     holds, merges of queues and the refcount deaths' weak-lock steps interleave.
#[test]
fn collections_against_owner_last_drops() {
    within("collections_against_owner_last_drops", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let rounds = reps(150, 3);
        let stop = Arc::new(AtomicBool::new(false));
        let (hc, st) = (heap.clone(), stop.clone());
        let collector = thread::spawn(move || {
            while !st.load(SeqCst) {
                hc.collect();
                hc.detached(thread::yield_now);
            }
        });
        let logs: Arc<Mutex<Vec<Arc<Log>>>> = Arc::default();
        let seen = Arc::new(Seen::default());
        let workers: Vec<_> = (0..2)
            .map(|t| {
                let (h, logs, seen) = (heap.clone(), logs.clone(), seen.clone());
                thread::spawn(move || {
                    for r in 0..rounds {
                        let log = Log::new();
                        logs.lock().unwrap().push(log.clone());
                        let a = fin(&h, (t * 10_000 + r) as u32, &log);
                        let w = Weak::new(&a);
                        let cyc = r % 3 == 0;
                        if cyc {
                            let b = fin(&h, 0, &log);
                            *b.next.lock().unwrap() = Some(a.clone());
                            *a.next.lock().unwrap() = Some(b);
                        }
                        let st = Arc::new(AtomicBool::new(false));
                        let (w2, st2, se, lg) = (w.clone(), st.clone(), seen.clone(), log.clone());
                        let up = thread::spawn(move || {
                            // With a cycle a finalizer may resurrect nothing but the other
                            // member may run first: only the None rule is strict then.
                            let mut none = false;
                            loop {
                                let last = st2.load(SeqCst);
                                match w2.upgrade() {
                                    Some(g) => {
                                        if none {
                                            se.bad(format!("obj {} upgraded after None", g.id));
                                        }
                                        if !cyc && lg.fin() > 0 {
                                            se.bad(format!("obj {} upgraded in finalizer", g.id));
                                        }
                                    }
                                    None => none = true,
                                }
                                if last {
                                    break;
                                }
                            }
                        });
                        drop(a);
                        h.safepoint();
                        st.store(true, SeqCst);
                        h.detached(|| up.join().unwrap());
                    }
                })
            })
            .collect();
        heap.detached(|| workers.into_iter().for_each(|t| t.join().unwrap()));
        stop.store(true, SeqCst);
        heap.detached(|| collector.join().unwrap());
        heap.collect();
        seen.assert_clean();
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(settled_live(&heap), 0);
        for (i, l) in logs.lock().unwrap().iter().enumerate() {
            let n = if i % 3 == 0 { 2 } else { 1 };
            let _ = n;
            assert!(
                l.fin() == l.drops() && (l.fin() == 1 || l.fin() == 2),
                "log {i}: fin {} drops {}",
                l.fin(),
                l.drops()
            );
        }
    });
}

/// 13. A weak callback that, running on the referent's dying thread, drops the last handle of
///     another weakly referenced object with a finalizer whose weak lock stripe may be the
///     referent's (many objects), upgrades weak references to both, and makes new ones to the
///     survivor. Objects allocated adjacent, so stripes collide (address >> 5).
#[test]
fn callbacks_drop_weakly_referenced_finalizable_objects() {
    within("callbacks_drop_weakly_referenced", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let log = Log::new();
        let n = reps(500, 10);
        let mut objs: Vec<Gc<Fin>> = (0..n as u32).map(|i| fin(&heap, i, &log)).collect();
        let ws: Vec<Weak<Fin>> = objs.iter().map(Weak::new).collect();
        let mut cbs = Vec::new();
        let cb_runs = Arc::new(AtomicUsize::new(0));
        for i in 0..n {
            if i + 1 < n {
                let next = objs[i + 1].clone();
                let (wi, wn) = (ws[i].clone(), ws[i + 1].clone());
                let c = cb_runs.clone();
                cbs.push(Weak::with_callback(&objs[i], move |me| {
                    c.fetch_add(1, SeqCst);
                    assert!(me.upgrade().is_none() && wi.upgrade().is_none());
                    let _w = Weak::new(&next);
                    drop(next);
                    drop(wn.upgrade());
                }));
            }
        }
        // Drop on different threads: half on the owner, half elsewhere (queued to it).
        let other: Vec<Gc<Fin>> = objs.drain(n / 2..).collect();
        let t = thread::spawn(move || drop(other));
        drop(objs);
        heap.detached(|| t.join().unwrap());
        heap.safepoint();
        heap.safepoint();
        assert!(ws.iter().all(|w| w.upgrade().is_none()));
        assert_eq!(cb_runs.load(SeqCst), n - 1);
        assert_eq!((log.fin(), log.drops()), (n, n));
        drop(cbs);
        drop(ws);
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(settled_live(&heap), 0);
    });
}

/// 14. A finalizer that panics, on a weakly referenced object, with upgrades racing: the panic
///     goes to the hook; the object is not resurrected; its death goes on (weak references
///     cleared, value dropped once); no upgrade returns it after the finalizer began.
#[test]
fn panicking_finalizer_with_weak_refs() {
    within("panicking_finalizer_with_weak_refs", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let rounds = reps(100, 2) as u32;
        for round in 0..rounds {
            let log = Log::new();
            let x = fin(&heap, round, &log);
            let w = Weak::new(&x);
            set_fin(&x, |this| {
                let _w = Weak::with_callback(this, |_| {});
                panic!("finalizer panics");
            });
            let stop = Arc::new(AtomicBool::new(false));
            let seen = Arc::new(Seen::default());
            let (w2, st, se, lg) = (w.clone(), stop.clone(), seen.clone(), log.clone());
            let up = thread::spawn(move || hammer(&w2, &st, &se, &lg, true, false));
            drop(x);
            stop.store(true, SeqCst);
            heap.detached(|| up.join().unwrap());
            seen.assert_clean();
            assert!(w.upgrade().is_none());
            assert_eq!((log.fin(), log.drops()), (1, 1));
        }
        assert_eq!(reports.lock().unwrap().len(), rounds as usize);
        assert_eq!(settled_live(&heap), 0);
    });
}

/// 15. The merged death on a foreign thread (owner gave up ownership earlier: `merged`) of a
///     weakly referenced object, with a finalizer that hands a clone to yet another thread
///     which drops it during the finalizer (counted in the shared word: the word goes 0 →
///     1 → 0 while `FINALIZED`), while the upgrader hammers. After the finalizer returns the
///     object is dead: finalized and dropped once, and no upgrade after a None.
#[test]
fn finalizer_lends_clone_that_is_dropped_during_it() {
    within("finalizer_lends_clone", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(150, 2) as u32 {
            let log = Log::new();
            let x = merged(fin(&heap, round, &log));
            let w = Weak::new(&x);
            set_fin(&x, |this| {
                let c = this.clone();
                thread::spawn(move || drop(c)).join().unwrap();
            });
            let stop = Arc::new(AtomicBool::new(false));
            let none_then_some = Arc::new(AtomicBool::new(false));
            let (w2, st, nts) = (w.clone(), stop.clone(), none_then_some.clone());
            let up = thread::spawn(move || {
                let mut none = false;
                loop {
                    let last = st.load(SeqCst);
                    match w2.upgrade() {
                        Some(_) if none => nts.store(true, SeqCst),
                        Some(_) => {}
                        None => none = true,
                    }
                    if last {
                        break;
                    }
                }
            });
            match round % 2 {
                0 => drop(x),
                _ => heap.detached(|| thread::spawn(move || drop(x)).join().unwrap()),
            }
            heap.safepoint();
            stop.store(true, SeqCst);
            heap.detached(|| up.join().unwrap());
            heap.safepoint();
            // A clone lent and dropped during the finalizer is a resurrection (8.3: stored
            // elsewhere), so a Some after None is allowed while it lives; but the object must
            // be dead in the end, once.
            let _ = none_then_some.load(SeqCst);
            assert!(w.upgrade().is_none());
            assert_eq!((log.fin(), log.drops()), (1, 1), "round {round}");
        }
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(settled_live(&heap), 0);
    });
}

/// 16. `Weak::new`'s shared weak reference racing its own owner's last drop: one thread asks
///     `Weak::new` of the referent (which try-increments the listed shared reference object,
///     `MAYBE_WEAK`) while the owner of that weak-reference object drops its last handle to
///     it; the referent dies later. `Weak::new` either returns the same live object or a new
///     one, never a dying one; no double drop.
#[test]
fn shared_weak_ref_lookup_against_its_last_drop() {
    within("shared_weak_ref_lookup", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(400, 4) as u32 {
            let log = Log::new();
            let x = fin(&heap, round, &log);
            let w = Weak::new(&x);
            let xc = x.clone();
            let go = Arc::new(Barrier::new(2));
            let g2 = go.clone();
            let t = thread::spawn(move || {
                g2.wait();
                let w2 = Weak::new(&xc);
                let alive = w2.upgrade().is_some();
                drop(xc);
                (w2, alive)
            });
            heap.detached(|| go.wait());
            drop(w);
            let (w2, alive) = heap.detached(|| t.join().unwrap());
            assert!(alive);
            assert!(w2.upgrade().is_some());
            drop(x);
            heap.safepoint();
            assert!(w2.upgrade().is_none());
            assert_eq!((log.fin(), log.drops()), (1, 1));
        }
        assert!(
            reports.lock().unwrap().is_empty(),
            "{:?}",
            reports.lock().unwrap()
        );
        assert_eq!(settled_live(&heap), 0);
    });
}

/// 17. A finalizer on the owner path (attached thread) that clones its temporary handle and
///     drops the clone inside `Heap::detached` (where the thread has no owner id, so the drop is
///     a foreign one at a shared count of 0: the object is queued to its own finalizing thread,
///     and the detached section's closing safe point merges it, `MERGED`/1, in the middle of
///     the finalizer). Nothing is stored anywhere, so by SEMANTICS 8.3 another thread's upgrade,
///     which returned `None` when the count reached zero, must keep returning `None` through
///     the finalizer; and the object must die after it (finalized and dropped once).
///     `keep`: the other thread keeps what its upgrade returned until the finalizer is over.
fn finalizer_drops_clone_inside_detached(keep: bool) -> (Vec<bool>, usize, usize) {
    let heap = Heap::new();
    let reports = hooked(&heap);
    let log = Log::new();
    let x = fin(&heap, 1, &log);
    let w = Weak::new(&x);
    let (req_tx, req_rx) = mpsc::channel::<bool>();
    let (ans_tx, ans_rx) = mpsc::channel::<bool>();
    let (w2, l2) = (w.clone(), log.clone());
    let t = thread::spawn(move || {
        let mut kept = Vec::new();
        while let Ok(go) = req_rx.recv() {
            if !go {
                break;
            }
            let g = w2.upgrade();
            ans_tx.send(g.is_some()).unwrap();
            if keep {
                kept.extend(g);
            }
        }
        // Only after the finalizer returned (the test's last request).
        let _ = l2;
        drop(kept);
    });
    let answers = Arc::new(Mutex::new(Vec::new()));
    let (a2, h2) = (answers.clone(), heap.clone());
    let ans_rx = Mutex::new(ans_rx);
    let req = req_tx.clone();
    set_fin(&x, move |this| {
        let ask = |a: &Mutex<Vec<bool>>| {
            req.send(true).unwrap();
            let r = ans_rx.lock().unwrap().recv().unwrap();
            a.lock().unwrap().push(r);
        };
        ask(&a2);
        let c = this.clone();
        h2.detached(|| drop(c));
        ask(&a2);
    });
    drop(x);
    req_tx.send(false).unwrap();
    heap.detached(|| t.join().unwrap());
    heap.safepoint();
    let fins = log.fin();
    let drops = log.drops();
    assert!(w.upgrade().is_none() || keep);
    drop(w);
    let _ = reports;
    let a = answers.lock().unwrap().clone();
    (a, fins, drops)
}

#[test]
fn finalizer_drops_clone_inside_detached_upgrade_dropped() {
    let (answers, fins, drops) = within("finalizer_drops_clone_inside_detached", || {
        finalizer_drops_clone_inside_detached(false)
    });
    assert_eq!((fins, drops), (1, 1));
    assert_eq!(
        answers,
        vec![false, false],
        "SEMANTICS 8.3: an upgrade on another thread returned the object inside its finalizer \
         after one returned None, though the finalizer stored no reference"
    );
}

#[test]
fn finalizer_drops_clone_inside_detached_upgrade_kept() {
    let (answers, fins, drops) = within("finalizer_drops_clone_inside_detached_kept", || {
        finalizer_drops_clone_inside_detached(true)
    });
    assert_eq!(fins, 1);
    assert_eq!(
        answers,
        vec![false, false],
        "SEMANTICS 8.3: another thread's upgrade took (and kept alive) an object inside its \
         finalizer after one returned None; drops so far {drops}"
    );
}

/// 18. A finalizer that holds a *local* clone of its temporary handle (stored nowhere) while
///     another thread upgrades; the clone is dropped before the finalizer returns. By 8.3 the
///     upgrade, `None` when the count reached zero, stays `None`. On the owner path the clone
///     is counted in `local` (the word stays all zero: refused); on a thread with no owner id
///     (never attached, or inside `Heap::detached`) a clone is a shared increment, which makes
///     the word nonzero, which `count::try_inc` accepted until the sixteenth session.
fn finalizer_local_clone(how: u8) -> Vec<bool> {
    let heap = Heap::new();
    let log = Log::new();
    // Merged, so that any thread may run the death.
    let x = merged(fin(&heap, 1, &log));
    let w = Weak::new(&x);
    let (req_tx, req_rx) = mpsc::channel::<bool>();
    let (ans_tx, ans_rx) = mpsc::channel::<bool>();
    let w2 = w.clone();
    let t = thread::spawn(move || {
        while let Ok(true) = req_rx.recv() {
            ans_tx.send(w2.upgrade().is_some()).unwrap();
        }
    });
    let answers = Arc::new(Mutex::new(Vec::new()));
    let a2 = answers.clone();
    let ans_rx = Mutex::new(ans_rx);
    let req = req_tx.clone();
    set_fin(&x, move |this| {
        let ask = || {
            req.send(true).unwrap();
            let r = ans_rx.lock().unwrap().recv().unwrap();
            a2.lock().unwrap().push(r);
        };
        ask();
        let c = this.clone();
        ask();
        drop(c);
        ask();
    });
    let h = heap.clone();
    let d = thread::spawn(move || match how {
        0 => {
            drop(h.alloc(0u8));
            drop(x);
        }
        1 => {
            drop(h.alloc(0u8));
            h.detached(|| drop(x));
        }
        _ => drop(x),
    });
    heap.detached(|| d.join().unwrap());
    req_tx.send(false).unwrap();
    heap.detached(|| t.join().unwrap());
    heap.safepoint();
    assert_eq!((log.fin(), log.drops()), (1, 1));
    assert!(w.upgrade().is_none());
    drop(w);
    assert_eq!(settled_live(&heap), 0);
    let a = answers.lock().unwrap().clone();
    a
}

#[test]
fn finalizer_local_clone_attached() {
    let a = within("finalizer_local_clone_attached", || {
        finalizer_local_clone(0)
    });
    assert_eq!(
        a,
        vec![false, false, false],
        "SEMANTICS 8.3 (attached thread)"
    );
}

#[test]
fn finalizer_local_clone_detached() {
    let a = within("finalizer_local_clone_detached", || {
        finalizer_local_clone(1)
    });
    assert_eq!(
        a,
        vec![false, false, false],
        "SEMANTICS 8.3 (inside Heap::detached)"
    );
}

#[test]
fn finalizer_local_clone_unattached() {
    let a = within("finalizer_local_clone_unattached", || {
        finalizer_local_clone(2)
    });
    assert_eq!(
        a,
        vec![false, false, false],
        "SEMANTICS 8.3 (never-attached thread)"
    );
}
