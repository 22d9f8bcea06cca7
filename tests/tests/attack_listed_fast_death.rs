//! Adversarial review of 95989bc: the owner's last local drop (`count::merge_zero_local`)
//! takes the fast death (no atomic write: the word left all-zero `INIT`, `owner` still
//! naming the owner) not only for an object with no weak-info block, but also for one whose
//! block lists no weak reference any more (`weak::none_listed`, an `Acquire` load of the
//! block's `listed`, then the shared word loaded again and found zero). The argument: an
//! upgrade needs a listed weak reference; one unlisted since was unlisted (a `Release` store
//! under the weak lock) after its upgrade's increment, which the second load then sees; and
//! no new weak reference can be made without a strong reference.
//!
//! Written by the seventeenth session's review helper. Each test says what it attacks and
//! asserts real outcomes: `Drop`s and finalizers run once (and not while a handle an upgrade
//! returned is held), what upgrades return, callbacks run once or not at all as SEMANTICS 4.2
//! says, no report to the unraisable hook, and `live_objects() == 0` at the end. A use of a
//! freed object shows as a poisoned value natively and as undefined behaviour under Miri.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;

use reap::sync::{Gc, Heap, Weak, WeakRefObj};
use reap::Trace;
use reap_tests::shared::{ends_clean, fin, hooked, reps, see, set_fin, within, Fin, Log, Seen};

/// Two weak references to one object, handed to another thread.
type WeakPair = (Weak<Fin>, Weak<Fin>);

/// What a live [`Plain`] holds; its `Drop` overwrites it.
const MAGIC: u64 = 0x5EED_F00D_CAFE_D00D;

/// A plain object (no finalizer): counts its drops, poisons its value when dropped.
#[derive(Trace)]
struct Plain {
    #[reap(skip)]
    val: AtomicUsize,
    #[reap(skip)]
    magic: std::sync::atomic::AtomicU64,
    slot: Mutex<Option<Gc<Plain>>>,
    #[reap(skip)]
    drops: Arc<AtomicUsize>,
}

impl Drop for Plain {
    fn drop(&mut self) {
        self.magic.store(0, SeqCst);
        self.drops.fetch_add(1, SeqCst);
    }
}

fn plain(heap: &Heap, drops: &Arc<AtomicUsize>) -> Gc<Plain> {
    heap.alloc(Plain {
        val: AtomicUsize::new(7),
        magic: std::sync::atomic::AtomicU64::new(MAGIC),
        slot: Mutex::new(None),
        drops: drops.clone(),
    })
}

/// Whether a held `Plain` is whole and undropped.
fn whole(g: &Plain) -> bool {
    g.magic.load(SeqCst) == MAGIC && g.val.load(SeqCst) == 7
}

/// Counts in `bad` a held object found dropped (`drops`) or not whole: a use after free.
fn check_held(g: &Plain, drops: &AtomicUsize, bad: &AtomicUsize) {
    if drops.load(SeqCst) != 0 || !whole(g) {
        bad.fetch_add(1, SeqCst);
    }
}

/// A short busy wait of `n` steps (to move the racing step around).
fn spin(n: usize) {
    for _ in 0..n {
        std::hint::spin_loop();
    }
}

/// 1. Model 29 natively: another thread's clone (counted in the shared word) makes the only
///    weak reference and is dropped; then the owner's last drop races that thread's upgrade,
///    its drop of the weak reference (the unlisting) and its use of what it got. The owner may
///    take the fast death only if the upgrade failed or its handle is gone: an upgrade that
///    returns the object must find it whole and undropped while held; dropped once.
#[test]
fn weak_dies_on_other_thread_while_upgraded_against_owner_last_drop() {
    within("weak_dies_on_other_thread_while_upgraded", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let bad = Arc::new(AtomicUsize::new(0));
        let got = Arc::new(AtomicUsize::new(0));
        for round in 0..reps(400, 4) {
            let drops = Arc::new(AtomicUsize::new(0));
            let x = plain(&heap, &drops);
            let c = heap.detached(|| x.clone());
            let ready = Arc::new(AtomicBool::new(false));
            let (r, d, b, gt) = (ready.clone(), drops.clone(), bad.clone(), got.clone());
            let t = thread::spawn(move || {
                let w = Weak::new(&c);
                drop(c);
                r.store(true, SeqCst);
                spin(round % 7 * 20);
                let g = w.upgrade();
                drop(w);
                if let Some(g) = g {
                    gt.fetch_add(1, SeqCst);
                    spin(50);
                    check_held(&g, &d, &b);
                    drop(g);
                }
            });
            while !ready.load(SeqCst) {
                std::hint::spin_loop();
            }
            spin(round % 5 * 30);
            drop(x);
            heap.detached(|| t.join().unwrap());
            heap.safepoint();
            assert_eq!(drops.load(SeqCst), 1, "round {round}");
        }
        assert_eq!(
            bad.load(SeqCst),
            0,
            "an upgraded object was dropped while held"
        );
        ends_clean(&heap, &reports);
    });
}

/// 2. The owner's own lock-free upgrade (`owner_upgrade`: the referent in this thread's slab):
///    it counts the handle in `local`, never in the shared word. The weak reference is
///    dropped (unlisted, the listed count 0) while the upgraded handle lives; the original's
///    drop must not be the death (local still 1), the upgraded handle's must (the fast
///    death, nothing listed). A callback reference dropped first never calls back; one kept
///    makes the death merge and calls back once. The freed block is then reused on this
///    thread and its new object's weak reference upgrades to it, not to the dead one.
#[test]
fn owner_lock_free_upgrade_then_weak_dropped_then_last_drops() {
    within("owner_lock_free_upgrade", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let cbs = Arc::new(AtomicUsize::new(0));
        for round in 0..reps(200, 3) {
            let drops = Arc::new(AtomicUsize::new(0));
            let x = plain(&heap, &drops);
            let c = cbs.clone();
            let wcb = Weak::with_callback(&x, move |_| {
                c.fetch_add(1, SeqCst);
            });
            let w = Weak::new(&x);
            let g = w.upgrade().expect("alive");
            let g2 = wcb.upgrade().expect("alive");
            drop(wcb);
            drop(w);
            drop(x);
            assert_eq!(drops.load(SeqCst), 0, "round {round}");
            assert!(whole(&g) && whole(&g2));
            drop(g2);
            // Weak references made again from the last handle, one kept (with a callback) in
            // odd rounds: then the death merges and calls back once.
            let w2 = Weak::new(&g);
            assert!(Gc::ptr_eq(&w2.upgrade().unwrap(), &g));
            drop(w2);
            let kept = (round % 2 == 1).then(|| {
                let c = cbs.clone();
                Weak::with_callback(&g, move |w: &Weak<Plain>| {
                    assert!(w.upgrade().is_none());
                    c.fetch_add(1, SeqCst);
                })
            });
            drop(g);
            assert_eq!(drops.load(SeqCst), 1, "round {round}");
            if let Some(k) = kept {
                assert!(k.upgrade().is_none());
                assert!(!k.is_alive());
            }
            // Reuse of the freed block on this thread.
            let y = plain(&heap, &drops);
            let wy = Weak::new(&y);
            let gy = wy.upgrade().expect("y alive");
            assert!(Gc::ptr_eq(&gy, &y) && whole(&gy));
            drop((gy, wy, y));
            assert_eq!(drops.load(SeqCst), 2);
        }
        assert_eq!(cbs.load(SeqCst), reps(200, 3) / 2);
        ends_clean(&heap, &reports);
    });
}

/// 3. Callback references against the owner's last drop: another thread drops its weak
///    reference with a callback while the owner drops the object (either the reference dies
///    first, unlisted, and never calls back, or the object dies first and calls it back
///    once, or the reference is dying and gets no call: never twice, never a freed one);
///    a second callback reference the owner keeps throughout must be called exactly once
///    (while it is listed the owner's last drop must merge, not take the fast death).
#[test]
fn callback_weak_dropped_on_other_thread_against_owner_last_drop() {
    within("callback_weak_dropped_on_other_thread", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let rounds = reps(300, 4);
        let (mut racing, mut kept_calls) = (0, 0);
        for round in 0..rounds {
            let drops = Arc::new(AtomicUsize::new(0));
            let x = plain(&heap, &drops);
            let cb1 = Arc::new(AtomicUsize::new(0));
            let cb2 = Arc::new(AtomicUsize::new(0));
            let (c1, c2) = (cb1.clone(), cb2.clone());
            let w1 = Weak::with_callback(&x, move |w: &Weak<Plain>| {
                assert!(w.upgrade().is_none());
                c1.fetch_add(1, SeqCst);
            });
            let keep = round % 3 == 0;
            let w2 = keep.then(|| {
                Weak::with_callback(&x, move |_| {
                    c2.fetch_add(1, SeqCst);
                })
            });
            let go = Arc::new(Barrier::new(2));
            let g2 = go.clone();
            let t = thread::spawn(move || {
                g2.wait();
                spin(round % 9 * 15);
                drop(w1);
            });
            heap.detached(|| go.wait());
            spin(round % 4 * 25);
            drop(x);
            heap.detached(|| t.join().unwrap());
            heap.safepoint();
            assert_eq!(drops.load(SeqCst), 1, "round {round}");
            assert!(cb1.load(SeqCst) <= 1, "round {round}: called back twice");
            racing += cb1.load(SeqCst);
            if let Some(w2) = w2 {
                assert!(w2.upgrade().is_none());
                assert_eq!(cb2.load(SeqCst), 1, "round {round}: the kept callback");
                kept_calls += 1;
            }
        }
        assert_eq!(kept_calls, rounds.div_ceil(3));
        eprintln!("racing callbacks called: {racing} of {rounds}");
        ends_clean(&heap, &reports);
    });
}

/// 4. The callback-less shared reference replaced while dying (`Weak::new`: a shared
///    reference whose count is zero, its death still to come, is unlisted by being replaced
///    and its target cleared). Two threads make, upgrade and drop the shared weak reference
///    of one object in a loop (one through a clone counted in the shared word), so that one's
///    `Weak::new` often finds the other's dying; then each drops its handle and the owner's
///    last drop may take the fast death while the replaced reference's death still runs
///    somewhere (it must not touch the freed referent). Every upgrade while a handle is held
///    returns the object whole; dropped once.
#[test]
fn shared_weak_replaced_while_dying_then_owner_fast_death() {
    within("shared_weak_replaced_while_dying", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let bad = Arc::new(AtomicUsize::new(0));
        for round in 0..reps(60, 2) {
            let drops = Arc::new(AtomicUsize::new(0));
            let x = plain(&heap, &drops);
            let c = heap.detached(|| x.clone());
            let go = Arc::new(Barrier::new(2));
            let (g2, b2) = (go.clone(), bad.clone());
            let n = reps(200, 5);
            let t = thread::spawn(move || {
                g2.wait();
                for _ in 0..n {
                    let w = Weak::new(&c);
                    match w.upgrade() {
                        Some(g) if whole(&g) => {}
                        _ => {
                            b2.fetch_add(1, SeqCst);
                        }
                    }
                    drop(w);
                }
                // The last shared reference made here is dropped before the handle.
                let w = Weak::new(&c);
                drop(c);
                w
            });
            heap.detached(|| go.wait());
            for _ in 0..n {
                let w = Weak::new(&x);
                match w.upgrade() {
                    Some(g) if whole(&g) => {}
                    _ => {
                        bad.fetch_add(1, SeqCst);
                    }
                }
                drop(w);
            }
            let w = heap.detached(|| t.join().unwrap());
            // Dropped here, after the other thread's exit: then the owner's last drop.
            let up = w.upgrade().expect("the owner still holds it");
            drop(w);
            drop(x);
            assert_eq!(drops.load(SeqCst), 0, "round {round}");
            assert!(whole(&up));
            drop(up);
            heap.safepoint();
            assert_eq!(drops.load(SeqCst), 1, "round {round}");
        }
        assert_eq!(bad.load(SeqCst), 0);
        ends_clean(&heap, &reports);
    });
}

/// 5. A finalizer object whose weak references all died first takes the fast death (the word
///    left all-zero `INIT`, not a merged zero) and then `resurrect_start`: its finalizer makes
///    new weak references (callback-less and with a callback), hands the callback-less one to
///    a thread that upgrades it meanwhile (refused: the object is finalizing and not
///    resurrected), and does not resurrect. Finalized once, the callback called once after
///    the finalizer, dropped once; every upgrade after `None`.
#[test]
fn finalizer_after_fast_death_makes_weak_refs_and_does_not_resurrect() {
    within("finalizer_after_fast_death", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(100, 3) as u32 {
            let log = Log::new();
            let seen: Seen = Arc::default();
            let x = fin(&heap, round, &log);
            let w0 = Weak::new(&x);
            let w0c = Weak::with_callback(&x, |_| panic!("a dead weak reference called back"));
            drop(w0c);
            assert!(w0.upgrade().is_some());
            drop(w0);
            let (tx, rx) = mpsc::channel::<Weak<Fin>>();
            let (ans_tx, ans_rx) = mpsc::channel::<bool>();
            let (after_tx, after_rx) = mpsc::channel::<()>();
            let up = thread::spawn(move || {
                let w = rx.recv().unwrap();
                let got = w.upgrade().is_some();
                ans_tx.send(got).unwrap();
                // Upgraded again after the death (the handle is kept until then).
                after_rx.recv().unwrap();
                w.upgrade().is_some()
            });
            let keep: Arc<Mutex<Option<Weak<Fin>>>> = Arc::default();
            let (s2, k2, l2) = (seen.clone(), keep.clone(), log.clone());
            let h2 = heap.clone();
            set_fin(&x, move |this| {
                let w = Weak::new(this);
                let l3 = l2.clone();
                let wc = Weak::with_callback(this, move |w: &Weak<Fin>| {
                    l3.cbs.fetch_add(1, SeqCst);
                    assert!(w.upgrade().is_none());
                });
                *k2.lock().unwrap() = Some(wc);
                // The owner's own upgrade inside its finalizer succeeds (dropped at once).
                see(&s2, "own upgrade", w.upgrade().is_some());
                tx.send(w).unwrap();
                let got = h2.detached(|| ans_rx.recv().unwrap());
                see(&s2, "foreign upgrade in finalizer", got);
            });
            drop(x);
            after_tx.send(()).unwrap();
            let later = heap.detached(|| up.join().unwrap());
            heap.safepoint();
            assert_eq!(log.fin(), 1, "round {round}");
            assert_eq!(log.drops(), 1, "round {round}");
            assert_eq!(log.cbs(), 1, "round {round}");
            assert!(!later, "round {round}: upgraded after the death");
            assert_eq!(
                *seen.lock().unwrap(),
                [
                    ("own upgrade", true),
                    ("foreign upgrade in finalizer", false)
                ],
                "round {round}"
            );
            let k = keep.lock().unwrap().take().unwrap();
            assert!(k.upgrade().is_none());
        }
        ends_clean(&heap, &reports);
    });
}

/// 6. Model 5's counterpart that resurrects: the fast death of a finalizer object whose weak
///    references died, whose finalizer makes a weak reference, hands it to another thread
///    and stores a clone of itself in a slot: the other thread's upgrade after the finalizer
///    returns the object (resurrected, merged); the slot's handle is then dropped on a third
///    thread, the death there (no finalizer again), a callback made in the finalizer called
///    once, dropped once.
#[test]
fn finalizer_after_fast_death_resurrects_then_dies_elsewhere() {
    within("finalizer_after_fast_death_resurrects", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(100, 3) as u32 {
            let log = Log::new();
            let x = fin(&heap, round, &log);
            drop(Weak::new(&x));
            let slot: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
            let wslot: Arc<Mutex<Option<WeakPair>>> = Arc::default();
            let (s2, w2, l2) = (slot.clone(), wslot.clone(), log.clone());
            set_fin(&x, move |this| {
                let w = Weak::new(this);
                let wc = Weak::with_callback(this, move |_| {
                    l2.cbs.fetch_add(1, SeqCst);
                });
                *w2.lock().unwrap() = Some((w, wc));
                *s2.lock().unwrap() = Some(this.clone());
            });
            drop(x);
            assert_eq!(log.fin(), 1);
            assert_eq!(log.drops(), 0, "round {round}: resurrected");
            let (w, wc) = wslot.lock().unwrap().take().unwrap();
            let w1 = w.clone();
            let got = heap.detached(|| {
                thread::spawn(move || w1.upgrade().map(|g| g.id))
                    .join()
                    .unwrap()
            });
            assert_eq!(got, Some(round), "round {round}");
            let s3 = slot.clone();
            heap.detached(|| {
                thread::spawn(move || drop(s3.lock().unwrap().take()))
                    .join()
                    .unwrap()
            });
            heap.safepoint();
            assert_eq!(log.fin(), 1, "round {round}");
            assert_eq!(log.drops(), 1, "round {round}");
            assert_eq!(log.cbs(), 1, "round {round}");
            assert!(w.upgrade().is_none() && wc.upgrade().is_none());
        }
        ends_clean(&heap, &reports);
    });
}

/// 7. Collections running on another thread (stop the world, holds, weak clearing of garbage,
///    reclaim) while the owner makes an object, a weak reference, upgrades it (owner path),
///    drops the weak reference and its handles (the fast death), and also puts objects in
///    garbage cycles with a weak reference (with a callback) to one of them, which the
///    collection clears and calls back unless the owner dropped it first, and makes and
///    drops a weak reference to another object before its fast death. Every object dropped
///    once (the last collection takes what is left); at most one callback a round.
#[test]
fn fast_deaths_against_concurrent_collections() {
    within("fast_deaths_against_concurrent_collections", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let (h2, st2, d2) = (heap.clone(), stop.clone(), done.clone());
        let collector = thread::spawn(move || {
            while !st2.load(SeqCst) {
                h2.collect();
                d2.fetch_add(1, SeqCst);
                h2.detached(thread::yield_now);
            }
        });
        let drops = Arc::new(AtomicUsize::new(0));
        let cbs = Arc::new(AtomicUsize::new(0));
        let (min_rounds, want) = (reps(400, 4), reps(30, 2));
        let mut rounds = 0;
        while rounds < min_rounds || done.load(SeqCst) < want {
            rounds += 1;
            let x = plain(&heap, &drops);
            let w = Weak::new(&x);
            let g = w.upgrade().unwrap();
            drop(w);
            drop(x);
            assert!(whole(&g));
            drop(g);
            // A 2-cycle with a weak reference (kept) to one of its members, and a live object
            // the cycle holds a weak reference to.
            let a = plain(&heap, &drops);
            let b = plain(&heap, &drops);
            *a.slot.lock().unwrap() = Some(b.clone());
            *b.slot.lock().unwrap() = Some(a.clone());
            let c = cbs.clone();
            let wa = Weak::with_callback(&a, move |_| {
                c.fetch_add(1, SeqCst);
            });
            drop((a, b));
            let y = plain(&heap, &drops);
            let wy = Weak::new(&y);
            drop(wy);
            drop(y);
            // Let the collector find the cycle now and then.
            heap.detached(thread::yield_now);
            drop(wa);
        }
        stop.store(true, SeqCst);
        heap.detached(|| collector.join().unwrap());
        heap.collect();
        heap.safepoint();
        eprintln!("{rounds} rounds against {} collections", done.load(SeqCst));
        assert_eq!(drops.load(SeqCst), rounds * 4);
        assert!(cbs.load(SeqCst) <= rounds);
        ends_clean(&heap, &reports);
    });
}

/// A holder whose `Drop` makes a weak reference to the object it holds and sends it away
/// (user code making a weak reference on whichever thread drops the holder).
#[derive(Trace)]
struct Holder {
    r: Gc<Plain>,
    #[reap(skip)]
    out: Mutex<Option<mpsc::Sender<Weak<Plain>>>>,
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Some(tx) = self.out.lock().unwrap().take() {
            let _ = tx.send(Weak::new(&self.r));
        }
    }
}

/// 8. A weak reference made inside another object's `Drop` on another thread (from the
///    handle the holder keeps, counted in the shared word, dropped right after the `Drop`),
///    sent to a third thread that upgrades it, checks what it got and drops it, against the
///    owner's last drop. What an upgrade returns is whole while held; dropped once.
#[test]
fn weak_made_in_drop_on_other_thread_against_owner_last_drop() {
    within("weak_made_in_drop", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let bad = Arc::new(AtomicUsize::new(0));
        for round in 0..reps(300, 3) {
            let drops = Arc::new(AtomicUsize::new(0));
            let x = plain(&heap, &drops);
            let (tx, rx) = mpsc::channel::<Weak<Plain>>();
            let holder = heap.detached(|| {
                heap.alloc(Holder {
                    r: x.clone(),
                    out: Mutex::new(Some(tx)),
                })
            });
            let (d, b) = (drops.clone(), bad.clone());
            let user = thread::spawn(move || {
                let w = rx.recv().unwrap();
                let g = w.upgrade();
                drop(w);
                if let Some(g) = g {
                    spin(30);
                    check_held(&g, &d, &b);
                }
            });
            let dropper = thread::spawn(move || drop(holder));
            spin(round % 6 * 40);
            drop(x);
            heap.detached(|| {
                dropper.join().unwrap();
                user.join().unwrap();
            });
            heap.safepoint();
            assert_eq!(drops.load(SeqCst), 1, "round {round}");
        }
        assert_eq!(bad.load(SeqCst), 0);
        ends_clean(&heap, &reports);
    });
}

/// 9. Clones of one weak reference across threads: one thread upgrades through its clone
///    and holds what it got, another drops its clone, and the owner drops its weak handle and
///    then its last strong handle, all at once. The weak-reference object is unlisted only by
///    the last of its handles; an upgrade that returned the object finds it whole while held;
///    dropped once.
#[test]
fn weak_clones_dropped_and_upgraded_across_threads() {
    within("weak_clones_across_threads", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let bad = Arc::new(AtomicUsize::new(0));
        for round in 0..reps(300, 3) {
            let drops = Arc::new(AtomicUsize::new(0));
            let x = plain(&heap, &drops);
            let w = Weak::new(&x);
            let (wb, wc) = (w.clone(), w.clone());
            let go = Arc::new(Barrier::new(3));
            let (g1, g2) = (go.clone(), go.clone());
            let (d, b) = (drops.clone(), bad.clone());
            let up = thread::spawn(move || {
                g1.wait();
                let g = wb.upgrade();
                drop(wb);
                if let Some(g) = g {
                    spin(40);
                    check_held(&g, &d, &b);
                }
            });
            let dr = thread::spawn(move || {
                g2.wait();
                drop(wc);
            });
            heap.detached(|| go.wait());
            spin(round % 5 * 20);
            drop(w);
            drop(x);
            heap.detached(|| {
                up.join().unwrap();
                dr.join().unwrap();
            });
            heap.safepoint();
            assert_eq!(drops.load(SeqCst), 1, "round {round}");
        }
        assert_eq!(bad.load(SeqCst), 0);
        ends_clean(&heap, &reports);
    });
}

/// 10. Scoped threads borrowing the owner's `&Gc` (no count of their own) make weak
///     references, upgrade and drop what they got, and hand one weak reference to a
///     `'static` thread that keeps upgrading after the scope ends, while the owner drops its
///     last handle; that thread drops the weak reference meanwhile. Dropped once, and never
///     while a handle an upgrade returned is held.
#[test]
fn scoped_borrowers_make_weak_refs_then_owner_last_drop() {
    within("scoped_borrowers", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let bad = Arc::new(AtomicUsize::new(0));
        for round in 0..reps(200, 3) {
            let drops = Arc::new(AtomicUsize::new(0));
            let x = plain(&heap, &drops);
            let (tx, rx) = mpsc::channel::<Weak<Plain>>();
            let (d, b) = (drops.clone(), bad.clone());
            let late = thread::spawn(move || {
                let w = rx.recv().unwrap();
                for i in 0..4 {
                    match w.upgrade() {
                        Some(g) => {
                            check_held(&g, &d, &b);
                        }
                        None => break,
                    }
                    if i == 2 {
                        // Unlisted here, while the next upgrade's handle would live.
                        let g = w.upgrade();
                        drop(w);
                        if let Some(g) = g {
                            check_held(&g, &d, &b);
                        }
                        return;
                    }
                }
            });
            thread::scope(|s| {
                for i in 0..2 {
                    let (xr, tx) = (&x, tx.clone());
                    s.spawn(move || {
                        let w = if i == 0 {
                            Weak::new(xr)
                        } else {
                            Weak::with_callback(xr, |_| {})
                        };
                        assert!(w.upgrade().is_some());
                        if i == 0 {
                            tx.send(w).unwrap();
                        }
                    });
                }
            });
            drop(tx);
            spin(round % 4 * 30);
            drop(x);
            heap.detached(|| late.join().unwrap());
            heap.safepoint();
            assert_eq!(drops.load(SeqCst), 1, "round {round}");
        }
        assert_eq!(bad.load(SeqCst), 0);
        ends_clean(&heap, &reports);
    });
}

/// A chain link counting its drops.
#[derive(Trace)]
struct Node {
    next: Option<Gc<Node>>,
    #[reap(skip)]
    drops: Arc<AtomicUsize>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

/// 11. A long chain (past the trashcan's depth, so deaths are deferred with the word left
///     all-zero and the owner still named), each link once weakly referenced (its weak
///     references died first: the fast death), every third one with a callback reference
///     kept (it must merge and call back once), dropped from the head by its owner. Every
///     link dropped once, every kept callback called once, every kept reference dead.
#[test]
fn deferred_fast_deaths_of_a_long_chain_of_once_weakly_referenced_links() {
    within("deferred_fast_deaths", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let drops = Arc::new(AtomicUsize::new(0));
        let cbs = Arc::new(AtomicUsize::new(0));
        let n = reps(3000, 150);
        let mut head: Option<Gc<Node>> = None;
        let mut kept = Vec::new();
        for i in 0..n {
            let node = heap.alloc(Node {
                next: head.take(),
                drops: drops.clone(),
            });
            let w = Weak::new(&node);
            assert!(w.upgrade().is_some());
            drop(w);
            if i % 3 == 0 {
                let c = cbs.clone();
                kept.push(Weak::with_callback(&node, move |w: &Weak<Node>| {
                    assert!(w.upgrade().is_none());
                    c.fetch_add(1, SeqCst);
                }));
            } else {
                drop(Weak::with_callback(&node, |_| {
                    panic!("called back when dead")
                }));
            }
            head = Some(node);
        }
        drop(head);
        assert_eq!(drops.load(SeqCst), n);
        assert_eq!(cbs.load(SeqCst), n.div_ceil(3));
        assert!(kept.iter().all(|w| w.upgrade().is_none()));
        drop(kept);
        ends_clean(&heap, &reports);
    });
}

/// 12. A weak-reference object that is itself weakly referenced (its `MAYBE_WEAK` word is
///     never all zero, so it never takes the fast death): weak references to it die first
///     or not, its referent's weak references die, the referent is dropped by its owner
///     (the fast death) and the weak-reference object by another thread. Upgrades of the
///     second-order reference return the weak-reference object while its handle lives, and
///     `None` after; the referent dropped once.
#[test]
fn weakly_referenced_weak_reference_objects() {
    within("weakly_referenced_weak_reference_objects", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        for round in 0..reps(200, 3) {
            let drops = Arc::new(AtomicUsize::new(0));
            let x = plain(&heap, &drops);
            let w = Weak::new(&x);
            let wobj: Gc<WeakRefObj> = Weak::as_object(&w);
            let ww: Weak<WeakRefObj> = Weak::new(&wobj);
            if round % 2 == 0 {
                drop(Weak::new(&wobj));
            }
            assert!(ww.upgrade().is_some());
            drop(wobj);
            let (g, ww2) = heap.detached(|| {
                thread::spawn(move || {
                    let g = w.upgrade();
                    drop(w);
                    (g, ww)
                })
                .join()
                .unwrap()
            });
            // The weak-reference object is gone with its last handle (the other thread's,
            // queued to this owner: dead once merged here).
            heap.safepoint();
            assert!(ww2.upgrade().is_none(), "round {round}");
            drop(x);
            let g = g.expect("the owner held it while it upgraded");
            assert_eq!(drops.load(SeqCst), 0);
            assert!(whole(&g));
            drop(g);
            assert_eq!(drops.load(SeqCst), 1, "round {round}");
            drop(ww2);
        }
        ends_clean(&heap, &reports);
    });
}

/// 13. A thread repeatedly upgrading (on the locked path) through its own weak reference
///     and dropping that reference, against the owner's last drop, with the object's weak
///     references made first by the owner (so the block is in the owner's slab) and also
///     with several listed at once (one dropped by each of two threads, so the listed count
///     reaches zero on whichever unlists last). Dropped once; what an upgrade returns is
///     whole while held.
#[test]
fn two_threads_unlist_the_last_two_references_against_owner_last_drop() {
    within("two_threads_unlist_the_last_two", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let bad = Arc::new(AtomicUsize::new(0));
        for round in 0..reps(300, 3) {
            let drops = Arc::new(AtomicUsize::new(0));
            let x = plain(&heap, &drops);
            let w1 = Weak::new(&x);
            let w2 = Weak::with_callback(&x, |_| {});
            let go = Arc::new(Barrier::new(3));
            let mut ts = Vec::new();
            for (i, w) in [(0, w1), (1, w2)] {
                let (g, d, b) = (go.clone(), drops.clone(), bad.clone());
                ts.push(thread::spawn(move || {
                    g.wait();
                    spin((round + i) % 5 * 20);
                    let got = w.upgrade();
                    drop(w);
                    if let Some(got) = got {
                        spin(30);
                        if d.load(SeqCst) != 0 || !whole(&got) {
                            b.fetch_add(1, SeqCst);
                        }
                    }
                }));
            }
            heap.detached(|| go.wait());
            spin(round % 7 * 15);
            drop(x);
            heap.detached(|| ts.into_iter().for_each(|t| t.join().unwrap()));
            heap.safepoint();
            assert_eq!(drops.load(SeqCst), 1, "round {round}");
        }
        assert_eq!(bad.load(SeqCst), 0);
        ends_clean(&heap, &reports);
    });
}
