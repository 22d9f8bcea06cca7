//! Adversarial tests of Shared mode (`reap::sync`): user code (Drop, finalizers, weak
//! callbacks, the unraisable hook, `wants_finalizer`, `PartialEq`/`Hash`) that calls back into
//! the runtime from any thread, thread-local destructors on both sides of the runtime's own,
//! owners that exit while others hold their objects, races of upgrades against deaths, deep
//! chains, panics everywhere. Safe Rust only.
//!
//! Each test that once found a bug says, in its doc comment, what went wrong and how it was
//! fixed; they all pass now, natively and under Miri. The ones whose failure would take the
//! process down (a use after free, a stack overflow, a panic in a thread-local destructor) run
//! their scenario in a child process (this test binary, re-run on that one test) and assert
//! that it exits cleanly; under Miri, which cannot spawn processes, they run in place.
//!
//! Natively: `cargo test -p reap-tests --test adversarial_sync`.
//! Miri: `MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p reap-tests --test adversarial_sync`.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use reap::sync::{Finalize, Gc, Heap, Weak};
use reap::{Trace, UnraisableKind};
use reap_tests::shared::{
    chain, fin, fin_with, hooked, in_child_process, merged, reps, Fin, FinHook, Log, Reports,
};

// ---------------------------------------------------------------------------------------------
// Shared helpers.

/// The weak-lock stripe of a Shared object (the runtime's rule: header address / 32 mod 64;
/// the header is the 32 bytes right before the value).
fn stripe<T: ?Sized>(g: &Gc<T>) -> usize {
    let header = (Gc::as_ptr(g) as *const u8 as usize) - 32;
    (header >> 5) % 64
}

/// Allocates finalized `Fin`s until two share a weak-lock stripe; returns them and how many
/// others were allocated (and dropped, finalized, on the way).
fn same_stripe_pair(heap: &Heap, log: &Arc<Log>) -> (Gc<Fin>, Gc<Fin>, usize) {
    let mut seen: HashMap<usize, Gc<Fin>> = HashMap::new();
    for i in 0..1000 {
        let g = fin(heap, 1000 + i, log);
        if let Some(first) = seen.remove(&stripe(&g)) {
            let spare = seen.len();
            drop(seen);
            return (first, g, spare);
        }
        seen.insert(stripe(&g), g);
    }
    unreachable!("1000 objects over 64 stripes always collide")
}

/// Runs `body` in a child process, for scenarios that would abort the whole test process
/// (`reap_tests::shared::in_child_process`, with no time limit).
fn in_child(name: &str, body: impl FnOnce()) {
    in_child_process(name, None, body);
}

/// A panic payload whose `Drop` panics again, `depth` times.
struct Bomb {
    depth: u32,
    log: Arc<Log>,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        self.log.push(format!("bomb {}", self.depth));
        if self.depth > 0 {
            std::panic::panic_any(Bomb {
                depth: self.depth - 1,
                log: self.log.clone(),
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Counting across threads.

/// BUG (Miri only; UB under both Stacked and Tree Borrows): `attach` keeps a raw pointer to the
/// thread's `ThreadState` taken from `&*state` (a `Box`), then moves the `Box` into the table
/// (`ThreadSlot { state, .. }`, `HashMap::insert`, and later `remove`), which retags it as
/// unique; every later use of the pointer (`reserve`, `pending` in `alloc`, `safepoint`, ...)
/// is then through an invalidated tag. Miri stops at the first attachment in any test of this
/// file. Fix: own the state through a raw pointer (`Box::into_raw`, freed when the slot drops).
#[test]
fn thread_attach_under_miri() {
    let heap = Heap::new();
    drop(heap.alloc(1_u8));
    let h = heap.clone();
    thread::spawn(move || drop(h.alloc(2_u8))).join().unwrap();
    drop(heap.alloc(3_u8));
    assert_eq!(heap.live_objects(), 0);
}

/// Objects passed through a ring of threads many times, each thread cloning, dropping and
/// forwarding; every object dies exactly once, wherever its last handle goes.
#[test]
fn objects_moved_around_a_ring_of_threads() {
    let heap = Heap::new();
    let log = Log::new();
    let threads = reps(6, 3);
    let objects = reps(200, 6) as u32;
    let laps = reps(20, 2);
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..threads {
        let (tx, rx) = mpsc::channel::<(Gc<Fin>, usize)>();
        senders.push(tx);
        receivers.push(rx);
    }
    let done = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for (i, rx) in receivers.into_iter().enumerate() {
        let next = senders[(i + 1) % threads].clone();
        let heap = heap.clone();
        let done = done.clone();
        let total = objects as usize;
        handles.push(thread::spawn(move || {
            let mut kept = Vec::new();
            while done.load(SeqCst) < total {
                match rx.recv_timeout(std::time::Duration::from_millis(5)) {
                    Ok((g, lap)) => {
                        let c = g.clone();
                        if lap % 3 == 0 {
                            kept.push(c);
                        } else {
                            drop(c);
                        }
                        if kept.len() > 8 {
                            kept.remove(0);
                        }
                        if lap + 1 >= laps * threads {
                            drop(g);
                            done.fetch_add(1, SeqCst);
                        } else {
                            next.send((g, lap + 1)).unwrap();
                        }
                    }
                    Err(_) => heap.safepoint(),
                }
            }
            drop(kept);
            heap.safepoint();
        }));
    }
    for id in 0..objects {
        senders[0].send((fin(&heap, id, &log), 0)).unwrap();
    }
    drop(senders);
    for h in handles {
        h.join().unwrap();
    }
    heap.safepoint();
    assert_eq!(log.fin(), objects as usize);
    assert_eq!(log.drops(), objects as usize);
    assert_eq!(heap.live_objects(), 0);
}

/// The owner's count reaches `LOCAL_MAX` (2^27) and spills half into the shared count; then
/// half the handles go on another thread (shared decrements past zero: queued), half here,
/// and a weak reference watches: exact counts throughout, one death. (About 1 GiB of handles.)
#[test]
#[cfg(not(miri))] // 2^27 handles
fn owner_count_spills_at_local_max() {
    let heap = Heap::new();
    let log = Log::new();
    let o = fin(&heap, 1, &log);
    let n = (1_usize << 27) + 3;
    let mut v: Vec<Gc<Fin>> = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(o.clone());
    }
    assert_eq!(Gc::strong_count(&o), n + 1);
    let w = Weak::new(&o);
    let other = v.split_off(n / 2);
    let w2 = w.clone();
    thread::spawn(move || {
        let g = w2.upgrade().unwrap();
        drop(other);
        drop(g);
    })
    .join()
    .unwrap();
    drop(v);
    heap.safepoint();
    assert_eq!(Gc::strong_count(&o), 1);
    assert_eq!(log.fin(), 0);
    drop(o);
    assert_eq!((log.fin(), log.drops()), (1, 1));
    assert!(w.upgrade().is_none());
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// Clones taken on many threads of objects owned by one, dropped in random order while the
/// owner allocates (its safe points): counts end exact.
#[test]
fn random_clone_drop_storm() {
    let heap = Heap::new();
    let log = Log::new();
    let n = reps(64, 4) as u32;
    let objs: Vec<Gc<Fin>> = (0..n).map(|i| fin(&heap, i, &log)).collect();
    let workers: Vec<_> = (0..reps(4, 2) as u64)
        .map(|t| {
            let mine: Vec<Gc<Fin>> = objs.to_vec();
            let heap = heap.clone();
            thread::spawn(move || {
                let mut rng = reap_tests::Rng(0x9E37_79B9 ^ (t + 1));
                let mut held: Vec<Gc<Fin>> = Vec::new();
                for _ in 0..reps(5000, 40) {
                    match rng.below(4) {
                        0 | 1 => held.push(mine[rng.below(mine.len())].clone()),
                        2 if !held.is_empty() => {
                            let i = rng.below(held.len());
                            held.swap_remove(i);
                        }
                        _ => {
                            if rng.below(8) == 0 {
                                // Allocate (a safe point of this thread) and drop at once.
                                drop(heap.alloc(t));
                            }
                        }
                    }
                }
                drop(held);
                drop(mine);
            })
        })
        .collect();
    // The owner keeps reaching safe points while the others work.
    let mut spin = 0;
    while workers.iter().any(|w| !w.is_finished()) {
        drop(heap.alloc(spin));
        spin += 1;
        thread::yield_now();
    }
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(log.fin(), 0);
    heap.safepoint();
    for o in &objs {
        assert_eq!(Gc::strong_count(o), 1);
    }
    drop(objs);
    assert_eq!(log.fin(), n as usize);
    assert_eq!(log.drops(), n as usize);
    assert_eq!(heap.live_objects(), 0);
}

/// A fixed bug: the owner id and the shared count share one 64-bit word, and a foreign
/// increment once was a `fetch_add` on the shared count in the word's low half. While an object
/// is queued to its owner its shared count may be negative (other threads dropped
/// owner-counted handles), and adding to it then carried into the owner id above: each foreign
/// clone walked the id up until it named another live thread, which counted on `local` as if it
/// owned the object, and the object died while handles remained (use after free). Now the
/// shared count is the word's high half (a carry falls off the top). Here: thread U holds
/// owner-counted handles of the owner's object, drops two (queued, count -1), then clones and
/// drops in a loop while the owner merges. `random_clone_drop_storm` hit this by chance (seen
/// under ThreadSanitizer as a use after free). Runs in a child process natively (the early
/// death would be a use after free).
#[test]
fn foreign_clone_of_a_queued_object_with_negative_count() {
    in_child(
        "foreign_clone_of_a_queued_object_with_negative_count",
        || {
            let heap = Heap::new();
            let log = Log::new();
            let rounds = reps(200, 2);
            for round in 0..rounds {
                let o = fin(&heap, round as u32, &log);
                let hs: Vec<Gc<Fin>> = (0..4).map(|_| o.clone()).collect();
                let (barrier, stop) = (Arc::new(Barrier::new(2)), Arc::new(AtomicBool::new(false)));
                let (b, st, h) = (barrier.clone(), stop.clone(), heap.clone());
                let u = thread::spawn(move || {
                    drop(h.alloc(0_u8)); // attach: this thread's id comes after the owner's
                    let mut hs = hs;
                    drop(hs.pop()); // queued to the owner (shared count 0, QUEUED)
                    drop(hs.pop()); // shared count -1
                    b.wait();
                    let mut n = 0_u32;
                    while !st.load(SeqCst) || n < reps(100_000, 50) as u32 {
                        drop(hs[0].clone());
                        n += 1;
                    }
                    drop(hs);
                });
                barrier.wait();
                if !cfg!(miri) {
                    thread::sleep(std::time::Duration::from_millis(1));
                }
                heap.safepoint(); // the owner merges while U clones and drops
                stop.store(true, SeqCst);
                u.join().unwrap();
                heap.safepoint();
                assert_eq!(
                    log.fin(),
                    round,
                    "round {round}: the object died while held"
                );
                assert_eq!(Gc::strong_count(&o), 1, "round {round}");
                drop(o);
                assert_eq!(log.fin(), round + 1, "round {round}");
            }
            assert_eq!(heap.live_objects(), 0);
        },
    );
}

/// The owner thread exits while other threads hold its objects (some with weak references,
/// some resurrected by their finalizers onto the holders' threads); every object dies once.
#[test]
fn owner_exits_while_others_hold_its_objects() {
    let heap = Heap::new();
    let log = Log::new();
    let n = reps(50, 4) as u32;
    let resurrected: Arc<Mutex<Vec<Gc<Fin>>>> = Arc::default();
    let (objs, weaks): (Vec<Gc<Fin>>, Vec<Weak<Fin>>) = {
        let heap = heap.clone();
        let log = log.clone();
        let res = resurrected.clone();
        thread::spawn(move || {
            let mut objs = Vec::new();
            let mut weaks = Vec::new();
            for i in 0..n {
                let on_fin: Option<FinHook> = if i % 3 == 0 {
                    let res = res.clone();
                    Some(Box::new(move |me: &Gc<Fin>| {
                        res.lock().unwrap().push(me.clone())
                    }))
                } else {
                    None
                };
                let o = fin_with(&heap, i, &log, on_fin, None);
                if i % 2 == 0 {
                    weaks.push(Weak::new(&o));
                }
                // Extra owner-local references held elsewhere.
                objs.push(o.clone());
                objs.push(o);
            }
            (objs, weaks)
        })
        .join()
        .unwrap()
    };
    assert_eq!(log.fin(), 0);
    // Split the handles between two other threads, which drop them.
    let (a, b): (Vec<_>, Vec<_>) = objs.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let ta = thread::spawn(move || drop(a));
    let tb = thread::spawn(move || drop(b));
    ta.join().unwrap();
    tb.join().unwrap();
    assert_eq!(log.fin(), n as usize);
    let resurrected_now = resurrected.lock().unwrap().len();
    assert_eq!(resurrected_now, n.div_ceil(3) as usize);
    assert_eq!(log.drops(), n as usize - resurrected_now);
    for w in &weaks {
        // The resurrected ones live on; the others are gone.
        let alive = w.upgrade().is_some();
        assert_eq!(alive, w.is_alive());
    }
    let res = std::mem::take(&mut *resurrected.lock().unwrap());
    thread::spawn(move || drop(res)).join().unwrap();
    heap.safepoint();
    assert_eq!(log.fin(), n as usize, "no finalizer runs twice");
    assert_eq!(log.drops(), n as usize);
    assert!(weaks.iter().all(|w| w.upgrade().is_none()));
    drop(weaks);
    assert_eq!(heap.live_objects(), 0);
}

// ---------------------------------------------------------------------------------------------
// Weak references.

/// Many threads upgrade while the last strong references go, over many rounds: exactly one
/// finalizer and one drop per object, no upgrade after the death.
#[test]
fn weak_upgrade_races_death_on_many_threads() {
    let heap = Heap::new();
    let log = Log::new();
    let rounds = reps(200, 3);
    let threads = reps(4, 2);
    for round in 0..rounds {
        let obj = fin(&heap, round as u32, &log);
        let w = Weak::new(&obj);
        let dead = Arc::new(AtomicBool::new(false));
        let barrier = Arc::new(Barrier::new(threads + 1));
        let holder = obj.clone();
        let upgraders: Vec<_> = (0..threads)
            .map(|_| {
                let (w, dead, barrier) = (w.clone(), dead.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    let mut got = 0;
                    for _ in 0..reps(200, 5) {
                        let seen_dead = dead.load(SeqCst);
                        match w.upgrade() {
                            Some(g) => {
                                assert!(!seen_dead, "upgrade succeeded after the death");
                                assert_eq!(g.id as usize, round);
                                got += 1;
                            }
                            None => assert!(!w.is_alive()),
                        }
                    }
                    got
                })
            })
            .collect();
        // The last strong reference goes on a non-owner thread: the owner gives up its own
        // first (its drop merges, the object's count is then the other thread's).
        let dropper = {
            let (barrier, dead, log) = (barrier.clone(), dead.clone(), log.clone());
            thread::spawn(move || {
                barrier.wait();
                thread::yield_now();
                let before = log.drops();
                drop(holder);
                if log.drops() > before {
                    dead.store(true, SeqCst);
                }
            })
        };
        drop(obj);
        for u in upgraders {
            u.join().unwrap();
        }
        dropper.join().unwrap();
        heap.safepoint();
        assert_eq!(log.fin(), round + 1, "round {round}");
        assert_eq!(log.drops(), round + 1, "round {round}");
        assert!(w.upgrade().is_none());
    }
    assert_eq!(heap.live_objects(), 0);
}

/// BUG: a weak-reference object never gets `MAYBE_WEAK`, so `try_inc` from any thread but its
/// owner refuses it while its shared count is 0. `Weak::new` on thread B takes the live shared
/// weak reference that thread A made for dying, replaces it and clears its target: A's weak
/// reference reads dead while the referent lives.
#[test]
fn shared_weak_survives_weak_new_on_another_thread() {
    let heap = Heap::new();
    let obj = heap.alloc(5_u32);
    let w1 = Weak::new(&obj);
    let o2 = obj.clone();
    let w2 = thread::spawn(move || {
        let w = Weak::new(&o2);
        drop(o2);
        w
    })
    .join()
    .unwrap();
    heap.safepoint();
    assert!(
        Weak::ptr_eq(&w1, &w2),
        "callback-less weak references are shared"
    );
    assert!(w1.is_alive(), "w1 cleared while its referent lives");
    assert_eq!(w1.upgrade().map(|g| *g), Some(5));
    drop(obj);
    assert!(!w1.is_alive() && !w2.is_alive());
    drop((w1, w2));
    assert_eq!(heap.live_objects(), 0);
}

/// BUG (same cause): the referent's death calls back only the weak references it can
/// try-increment; one with a callback owned by another thread (never cloned across threads, so
/// its shared count is 0) is refused as if dying: its callback never runs.
#[test]
fn callback_of_weak_owned_by_another_thread_runs() {
    let heap = Heap::new();
    let log = Log::new();
    let obj = fin(&heap, 1, &log);
    // (a) The weak reference's owner thread is alive and holds it.
    let barrier = Arc::new(Barrier::new(2));
    let o = obj.clone();
    let (b, l) = (barrier.clone(), log.clone());
    let holder = thread::spawn(move || {
        let l2 = l.clone();
        let w = Weak::with_callback(&o, move |w| {
            assert!(w.upgrade().is_none());
            l2.cbs.fetch_add(1, SeqCst);
        });
        drop(o);
        b.wait(); // weak made
        b.wait(); // referent dead
        assert!(!w.is_alive());
        drop(w);
    });
    barrier.wait();
    heap.safepoint(); // merge the holder's drop of its clone
    drop(obj);
    assert_eq!(log.fin(), 1);
    assert_eq!(log.drops(), 1);
    barrier.wait();
    holder.join().unwrap();
    assert_eq!(
        log.cbs(),
        1,
        "callback of a live weak reference owned by another thread"
    );

    // (b) The weak reference's owner thread has exited.
    let obj = fin(&heap, 2, &log);
    let o = obj.clone();
    let l = log.clone();
    let w = thread::spawn(move || {
        let w = Weak::with_callback(&o, move |_| {
            l.cbs.fetch_add(1, SeqCst);
        });
        drop(o);
        w
    })
    .join()
    .unwrap();
    heap.safepoint();
    drop(obj);
    assert_eq!(
        log.cbs(),
        2,
        "callback of a weak reference whose owner exited"
    );
    drop(w);

    // (c) The referent dies on the weak reference's own thread, in a thread-local destroyed
    // after the runtime's: the thread's id is gone, so it is "another thread" to itself.
    let (h, l) = (heap.clone(), log.clone());
    thread::spawn(move || {
        EARLY.with(|_| ());
        let obj = fin(&h, 3, &l);
        let l2 = l.clone();
        let w = Weak::with_callback(&obj, move |_| {
            l2.cbs.fetch_add(1, SeqCst);
        });
        EARLY.with(|e| {
            let mut e = e.borrow_mut();
            e.push(Box::new(obj));
            e.push(Box::new(w));
        });
    })
    .join()
    .unwrap();
    assert_eq!(log.fin(), 3);
    assert_eq!(
        log.cbs(),
        3,
        "callback at a death during the owner's own exit"
    );
    assert_eq!(heap.live_objects(), 0);
}

/// Weak references made, upgraded and dropped from many threads at once on one referent (all
/// callback-less): at every moment they agree with the referent's life.
#[test]
fn weak_new_from_many_threads_while_alive() {
    let heap = Heap::new();
    let obj = heap.alloc(7_u64);
    let threads: Vec<_> = (0..reps(4, 2))
        .map(|_| {
            let o = obj.clone();
            thread::spawn(move || {
                let mut ws = Vec::new();
                for _ in 0..reps(300, 6) {
                    let w = Weak::new(&o);
                    // The referent is alive (this thread holds it): an upgrade must work.
                    // Only checked through a weak reference this thread made and holds.
                    ws.push(w);
                    if ws.len() > 4 {
                        ws.remove(0);
                    }
                }
                drop(o);
                ws
            })
        })
        .collect();
    let held: Vec<Vec<Weak<u64>>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    heap.safepoint();
    drop(obj);
    for w in held.iter().flatten() {
        assert!(!w.is_alive());
        assert!(w.upgrade().is_none());
    }
    drop(held);
    heap.safepoint();
    assert_eq!(heap.live_objects(), 0);
}

/// A callback makes weak references (with and without callbacks) to, and upgrades a weak
/// reference to, another object on the same weak-lock stripe as the dying referent; the
/// referent's finalizer does the same. No deadlock; everything runs once.
#[test]
fn callbacks_and_finalizers_use_weak_refs_on_the_same_stripe() {
    let heap = Heap::new();
    let log = Log::new();
    let (a, b, spare) = same_stripe_pair(&heap, &log);
    assert_eq!(stripe(&a), stripe(&b));
    assert_eq!(log.fin(), spare);
    let wb = Weak::new(&b);
    let made: Arc<Mutex<Vec<Weak<Fin>>>> = Arc::default();
    let bb = b.clone();
    let (m, l) = (made.clone(), log.clone());
    let wa = Weak::with_callback(&a, move |w| {
        assert!(w.upgrade().is_none());
        let l2 = l.clone();
        let mut m = m.lock().unwrap();
        m.push(Weak::new(&bb));
        m.push(Weak::with_callback(&bb, move |_| {
            l2.cbs.fetch_add(1, SeqCst);
        }));
        m.push(Weak::new(&bb));
        assert!(Weak::ptr_eq(&m[0], &m[2]));
        assert!(m[0].upgrade().is_some());
        l.cbs.fetch_add(1, SeqCst);
        drop(m);
        drop(bb);
    });
    let wb2 = wb.clone();
    let a_weak = Weak::new(&a);
    *a.on_fin.lock().unwrap() = Some(Box::new(move |me: &Gc<Fin>| {
        // In the referent's own finalizer: weak references to itself and to its stripe-mate.
        let again = Weak::new(me);
        assert!(again.upgrade().is_some());
        let g = wb2.upgrade().expect("b alive");
        drop(Weak::new(&g));
        drop(g);
    }));
    drop(a);
    assert_eq!(log.fin(), spare + 1);
    assert!(a_weak.upgrade().is_none());
    assert_eq!(log.cbs(), 1);
    assert_eq!(made.lock().unwrap().len(), 3);
    assert!(Weak::ptr_eq(&made.lock().unwrap()[0], &wb));
    drop(b);
    assert_eq!(log.fin(), spare + 2);
    assert_eq!(
        log.cbs(),
        2,
        "the callback made in a callback ran at b's death"
    );
    assert!(wb.upgrade().is_none());
    drop((wb, made, a_weak, wa));
    assert_eq!(log.drops(), spare + 2);
    assert_eq!(heap.live_objects(), 0);
}

/// Two finalized objects on one stripe: X's finalizer drops the last handle to Y, whose Drop
/// upgrades a weak reference to X (resurrecting it for the moment, then letting go); X's
/// value's Drop drops Z, whose Drop upgrades a weak reference to X (cleared by then).
#[test]
fn drop_upgrades_weak_to_a_dying_object_on_the_same_stripe() {
    let heap = Heap::new();
    let log = Log::new();
    // Find two stripe-mates, then build finalized objects until two collide again.
    let mut xs: HashMap<usize, Gc<Fin>> = HashMap::new();
    let (x, y) = loop {
        let g = fin(&heap, 10 + xs.len() as u32, &log);
        if let Some(first) = xs.remove(&stripe(&g)) {
            break (first, g);
        }
        xs.insert(stripe(&g), g);
    };
    let spare_fins = xs.len();
    drop(xs); // those die now, each with its finalizer
    assert_eq!(log.fin(), spare_fins);
    let base_fin = log.fin();
    let base_drops = log.drops();
    let wx = Weak::new(&x);
    let upgraded_in_y = Arc::new(AtomicUsize::new(0));
    let (wx1, u1) = (wx.clone(), upgraded_in_y.clone());
    *y.on_drop.lock().unwrap() = Some(Box::new(move || {
        if let Some(g) = wx1.upgrade() {
            u1.fetch_add(1, SeqCst);
            drop(g);
        }
    }));
    let y_slot = Arc::new(Mutex::new(Some(y)));
    let ys = y_slot.clone();
    *x.on_fin.lock().unwrap() = Some(Box::new(move |_me: &Gc<Fin>| {
        drop(ys.lock().unwrap().take());
    }));
    let z = fin(&heap, 99, &log);
    let (wx2, u2) = (wx.clone(), upgraded_in_y.clone());
    *z.on_drop.lock().unwrap() = Some(Box::new(move || {
        if wx2.upgrade().is_some() {
            u2.fetch_add(100, SeqCst);
        }
    }));
    *x.next.lock().unwrap() = Some(z);
    drop(x);
    assert_eq!(
        upgraded_in_y.load(SeqCst),
        1,
        "Y's Drop (in X's finalizer) upgrades X; Z's Drop (in X's drop) does not"
    );
    // X, Y and Z each finalized once and dropped once.
    assert_eq!(log.fin() - base_fin, 3);
    assert_eq!(log.drops() - base_drops, 3);
    assert!(wx.upgrade().is_none());
    drop((wx, y_slot));
    assert_eq!(heap.live_objects(), 0);
}

/// A weak reference whose callback captures a strong handle to its own referent: dropping the
/// weak reference drops the closure, which drops the referent (on this thread or another).
#[test]
fn weak_callback_capturing_its_referent() {
    let heap = Heap::new();
    let log = Log::new();
    for on_other_thread in [false, true] {
        let obj = fin(&heap, 1, &log);
        let o = obj.clone();
        let l = log.clone();
        let w = Weak::with_callback(&obj, move |_| {
            let _keep = &o;
            l.cbs.fetch_add(1, SeqCst);
        });
        drop(obj);
        assert_eq!(
            log.fin(),
            usize::from(on_other_thread),
            "kept by the closure"
        );
        assert!(w.is_alive());
        if on_other_thread {
            thread::spawn(move || drop(w)).join().unwrap();
            heap.safepoint();
        } else {
            drop(w);
        }
        assert_eq!(log.cbs(), 0, "the callback is dropped, never run");
    }
    assert_eq!(log.fin(), 2);
    assert_eq!(log.drops(), 2);
    assert_eq!(heap.live_objects(), 0);
}

/// A weak reference to a weak-reference object, with a callback; the inner weak reference's
/// own callback drops the outer one.
#[test]
fn weak_reference_to_a_weak_reference_object() {
    let heap = Heap::new();
    let log = Log::new();
    let obj = fin(&heap, 1, &log);
    let outer_slot: Arc<Mutex<Option<Weak<reap::sync::WeakRefObj>>>> = Arc::default();
    let (os, l) = (outer_slot.clone(), log.clone());
    let inner = Weak::with_callback(&obj, move |w| {
        l.push("inner cb");
        // The weak-reference object is alive here (it is being called back).
        let o = Weak::as_object(w);
        assert!(Gc::strong_count(&o) >= 1);
        drop(os.lock().unwrap().take());
    });
    let inner_obj = Weak::as_object(&inner);
    let l = log.clone();
    *outer_slot.lock().unwrap() = Some(Weak::with_callback(&inner_obj, move |_| {
        l.push("outer cb");
    }));
    drop(inner_obj);
    drop(obj);
    assert_eq!(log.fin(), 1);
    // The outer weak reference was dropped by the inner callback before its referent died.
    drop(inner);
    let ev = log.events();
    assert!(ev.contains(&"inner cb".to_string()));
    assert!(!ev.contains(&"outer cb".to_string()), "{ev:?}");
    assert_eq!(heap.live_objects(), 0);
}

/// The last strong reference to a weakly referenced object dropped on another thread while the
/// weak references to it (one with a callback) are dropped here: no double unlisting, no lost
/// memory. Natively this passes (almost always: it can hit the use after free of
/// `weak_refs_freed_while_their_referent_dies`, which ThreadSanitizer reports here).
///
/// BUG (Miri, Stacked Borrows): a dying weak-reference object is still listed in its
/// referent's block while its value is dropped: `drop_in_place` (and `WeakRefObj::drop`'s
/// `&mut self`) hold a protected unique borrow of it, and the referent's death on another
/// thread makes `&WeakRefObj` to it (`old_ref`) and writes its `target` meanwhile. Fix: unlist
/// (through a shared reference) in the death path before `drop_value`, not in `Drop`.
#[test]
fn weak_drop_races_referent_death() {
    let heap = Heap::new();
    let log = Log::new();
    let n = reps(300, 6);
    for i in 0..n {
        let obj = merged(fin(&heap, i as u32, &log));
        let l = log.clone();
        let w = Weak::with_callback(&obj, move |_| {
            l.cbs.fetch_add(1, SeqCst);
        });
        let w2 = Weak::new(&obj);
        let barrier = Arc::new(Barrier::new(2));
        let b = barrier.clone();
        let t = thread::spawn(move || {
            b.wait();
            drop(obj); // merged: the death runs here
        });
        barrier.wait();
        drop(w);
        drop(w2);
        t.join().unwrap();
        assert_eq!(log.fin(), i + 1);
        assert_eq!(log.drops(), i + 1);
    }
    assert!(log.cbs() <= n);
    heap.safepoint();
    assert_eq!(heap.live_objects(), 0);
}

/// BUG: use after free. `clear_and_call` (the referent's death) first clears the target of
/// every listed weak reference, and only then, in a second loop, try-increments each one to
/// call it back. A weak reference dying meanwhile on another thread reads its target without
/// the lock (`WeakRefObj::drop`'s first load), sees it cleared, returns at once and is freed;
/// the second loop then reads the freed object's counts (and, if that read looks alive, takes
/// a "reference" to it and runs its callback from freed memory). ThreadSanitizer reports the
/// free racing with `try_inc` (weak.rs, `clear_and_call`), Miri reports the use after free.
/// Here the window is made wide: 2000 weak references, the oldest dropped as soon as the newest
/// reads cleared (the second loop visits newest first). Run in a child process natively.
#[test]
fn weak_refs_freed_while_their_referent_dies() {
    in_child("weak_refs_freed_while_their_referent_dies", || {
        let heap = Heap::new();
        let log = Log::new();
        let k = reps(2000, 12);
        for round in 0..reps(20, 1) {
            let obj = merged(fin(&heap, round as u32, &log));
            let ws: Vec<Weak<Fin>> = (0..k)
                .map(|_| {
                    let l = log.clone();
                    Weak::with_callback(&obj, move |_| {
                        l.cbs.fetch_add(1, SeqCst);
                    })
                })
                .collect();
            let t = thread::spawn(move || drop(obj)); // merged: the death runs there
                                                      // Wait until the first loop of the death reached the newest weak reference...
            while ws[k - 1].is_alive() {
                thread::yield_now();
            }
            // ...then free the oldest ones at once (their targets read cleared: no lock).
            drop(ws);
            t.join().unwrap();
        }
        heap.safepoint();
        assert_eq!(log.fin(), reps(20, 1));
        assert!(log.cbs() <= k * reps(20, 1));
        assert_eq!(heap.live_objects(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Finalizers.

/// A finalizer resurrects its object by sending a clone to another thread, which drops it at
/// once: the object dies once more (no second finalizer) wherever the last drop lands.
#[test]
fn finalizer_resurrects_to_a_thread_that_drops_it_at_once() {
    let heap = Heap::new();
    let log = Log::new();
    let (tx, rx) = mpsc::channel::<Gc<Fin>>();
    let sink = thread::spawn(move || {
        let mut n = 0;
        for g in rx {
            drop(g);
            n += 1;
        }
        n
    });
    let n = reps(100, 4) as u32;
    for i in 0..n {
        let tx = tx.clone();
        let o = fin_with(
            &heap,
            i,
            &log,
            Some(Box::new(move |me: &Gc<Fin>| tx.send(me.clone()).unwrap())),
            None,
        );
        if i % 2 == 0 {
            // Make some weakly referenced (the resurrected count may then be raced).
            let w = Weak::new(&o);
            drop(o);
            drop(w);
        } else {
            drop(o);
        }
    }
    drop(tx);
    assert_eq!(sink.join().unwrap(), n);
    heap.safepoint();
    assert_eq!(log.fin(), n as usize);
    assert_eq!(log.drops(), n as usize);
    assert_eq!(heap.live_objects(), 0);
}

/// A finalizer that calls `safepoint` while its object dies inside a safe point's drain; it
/// also makes another thread queue a drop to this one first, so the nested drain has work.
#[test]
fn finalizer_calls_safepoint_during_a_safepoint() {
    let heap = Heap::new();
    let log = Log::new();
    let d = fin(&heap, 4, &log);
    let d_slot = Arc::new(Mutex::new(Some(d)));
    let (h2, ds) = (heap.clone(), d_slot.clone());
    let a = fin_with(
        &heap,
        1,
        &log,
        Some(Box::new(move |_me: &Gc<Fin>| {
            // Another thread drops D (owned here): queued to this thread...
            let d = ds.lock().unwrap().take().unwrap();
            thread::spawn(move || drop(d)).join().unwrap();
            // ...and merged by this nested safe point, inside the outer drain.
            h2.safepoint();
            h2.safepoint();
        })),
        None,
    );
    let b = fin(&heap, 2, &log);
    let c = fin(&heap, 3, &log);
    // All three dropped by another thread: queued to this one.
    thread::spawn(move || drop((a, b, c))).join().unwrap();
    assert_eq!(log.fin(), 0);
    heap.safepoint();
    assert_eq!(log.fin(), 4);
    assert_eq!(log.drops(), 4);
    let ev = log.events();
    let pos = |e: &str| ev.iter().position(|x| x == e).unwrap();
    assert!(
        pos("fin 1") < pos("fin 4")
            && pos("fin 4") < pos("drop 4")
            && pos("drop 4") < pos("drop 1"),
        "{ev:?}"
    );
    assert_eq!(heap.live_objects(), 0);
}

/// `wants_finalizer` false: no finalizer; `wants_finalizer` panicking: the allocation panics
/// in the caller, the value is dropped once, nothing is left on the heap.
#[test]
fn wants_finalizer_false_or_panicking() {
    #[derive(Trace)]
    #[reap(sync_finalize)]
    struct Picky {
        #[reap(skip)]
        mode: u8,
        #[reap(skip)]
        log: Arc<Log>,
        #[reap(skip)]
        heap: Heap,
    }
    impl Finalize for Picky {
        fn finalize(this: &Gc<Self>) {
            this.log.fin.fetch_add(1, SeqCst);
        }
        fn wants_finalizer(&self) -> bool {
            match self.mode {
                0 => false,
                1 => panic!("wants_finalizer panics"),
                _ => {
                    // Allocates on the same heap from inside the allocation.
                    drop(self.heap.alloc(1_u8));
                    true
                }
            }
        }
    }
    impl Drop for Picky {
        fn drop(&mut self) {
            self.log.drops.fetch_add(1, SeqCst);
        }
    }
    let heap = Heap::new();
    let log = Log::new();
    let mk = |mode| Picky {
        mode,
        log: log.clone(),
        heap: heap.clone(),
    };
    drop(heap.alloc(mk(0)));
    assert_eq!((log.fin(), log.drops()), (0, 1));
    let r = catch_unwind(AssertUnwindSafe(|| heap.alloc(mk(1))));
    assert!(r.is_err());
    assert_eq!((log.fin(), log.drops()), (0, 2));
    drop(heap.alloc(mk(2)));
    assert_eq!((log.fin(), log.drops()), (1, 3));
    assert_eq!(heap.live_objects(), 0);
}

// ---------------------------------------------------------------------------------------------
// The heap's lifetime.

/// The last `Heap` handle and the last objects are dropped inside a finalizer, a weak callback
/// and a `Drop`, on a thread that never used the heap before; allocation and weak references
/// inside them too. (The objects' owner has exited, so every drop takes effect where it runs.)
#[test]
fn last_heap_handle_dropped_inside_user_code() {
    for variant in 0..3 {
        let log = Log::new();
        let heap = Heap::new();
        let (h, l) = (heap.clone(), log.clone());
        let (obj, others) = thread::spawn(move || {
            let others: Vec<Gc<Fin>> = (0..5).map(|i| fin(&h, 100 + i, &l)).collect();
            (fin(&h, 1, &l), others)
        })
        .join()
        .unwrap();
        let keep = Arc::new(Mutex::new(Some((heap.clone(), others))));
        let k = keep.clone();
        let l = log.clone();
        let user_code = move || {
            let (heap, others) = k.lock().unwrap().take().unwrap();
            // Allocate and weakly reference on the heap before giving it up.
            let extra = fin(&heap, 200, &l);
            let w = Weak::new(&extra);
            let l2 = l.clone();
            let _w2 = Weak::with_callback(&extra, move |w| {
                assert!(w.upgrade().is_none());
                l2.cbs.fetch_add(1, SeqCst);
            });
            drop(heap);
            drop(others);
            drop(extra);
            assert!(w.upgrade().is_none());
        };
        let user_code: Box<dyn FnOnce() + Send> = Box::new(user_code);
        drop(heap);
        let l = log.clone();
        thread::spawn(move || match variant {
            0 => {
                *obj.on_fin.lock().unwrap() = Some(Box::new(move |_| user_code()));
                drop(obj);
            }
            1 => {
                *obj.on_drop.lock().unwrap() = Some(user_code);
                drop(obj);
            }
            _ => {
                let w = Weak::with_callback(&obj, move |_| {
                    l.cbs.fetch_add(1, SeqCst);
                    user_code();
                });
                drop(obj);
                drop(w);
            }
        })
        .join()
        .unwrap();
        assert!(keep.lock().unwrap().is_none(), "variant {variant}");
        assert_eq!(log.fin(), 7, "variant {variant}");
        assert_eq!(log.drops(), 7, "variant {variant}");
        assert_eq!(log.cbs(), if variant == 2 { 2 } else { 1 });
    }
}

/// The last `Heap` handle and the last objects dropped inside the unraisable hook, called for
/// a panicking finalizer on another thread; the hook also removes itself.
#[test]
fn hook_drops_the_last_heap_handle_and_objects() {
    let log = Log::new();
    let heap = Heap::new();
    let (h, l) = (heap.clone(), log.clone());
    let (bad, objs) = thread::spawn(move || {
        let objs: Vec<Gc<Fin>> = (0..4).map(|i| fin(&h, 10 + i, &l)).collect();
        let bad = fin_with(
            &h,
            1,
            &l,
            Some(Box::new(|_| panic!("finalizer panics"))),
            None,
        );
        (bad, objs)
    })
    .join()
    .unwrap();
    let keep = Arc::new(Mutex::new(Some((heap.clone(), objs))));
    let calls = Arc::new(AtomicUsize::new(0));
    let (k, c) = (keep.clone(), calls.clone());
    heap.set_unraisable_hook(Some(Arc::new(move |u: &reap::Unraisable| {
        c.fetch_add(1, SeqCst);
        assert_eq!(u.kind, UnraisableKind::Finalizer);
        if let Some((heap, objs)) = k.lock().unwrap().take() {
            heap.set_unraisable_hook(None);
            drop(heap);
            drop(objs);
        }
    })));
    drop(heap);
    // The owner exited: the drop kills `bad` on this new thread.
    thread::spawn(move || drop(bad)).join().unwrap();
    assert_eq!(calls.load(SeqCst), 1);
    assert!(keep.lock().unwrap().is_none());
    assert_eq!(log.fin(), 5);
    assert_eq!(log.drops(), 5);
}

// ---------------------------------------------------------------------------------------------
// Thread-local destructors.

thread_local! {
    static EARLY: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
    static LATE: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Handles (to objects this thread owns and to others', a `Heap`, weak references with
/// callbacks, short chains) kept in thread-locals destroyed after the runtime's own (`EARLY`,
/// first touched before the thread used the heap) and before it (`LATE`).
#[test]
fn handles_in_thread_locals_at_thread_exit() {
    let heap = Heap::new();
    let log = Log::new();
    let mains: Vec<Gc<Fin>> = (0..4).map(|i| fin(&heap, 500 + i, &log)).collect();
    let (h, l) = (heap.clone(), log.clone());
    let (m0, m1) = (mains[0].clone(), mains[1].clone());
    let (m2, m3) = (mains[2].clone(), mains[3].clone());
    thread::spawn(move || {
        EARLY.with(|_| ()); // registered before the runtime's thread-local
        let own_a = fin(&h, 1, &l);
        let own_b = fin(&h, 2, &l);
        let l1 = l.clone();
        let wa = Weak::with_callback(&own_a, move |_| {
            l1.cbs.fetch_add(1, SeqCst);
        });
        // A finalizer that allocates and makes weak references during thread exit.
        let h2 = h.clone();
        let l3 = l.clone();
        let own_c = fin_with(
            &h,
            3,
            &l,
            Some(Box::new(move |me: &Gc<Fin>| {
                let w = Weak::new(me);
                let x = fin(&h2, 4, &l3);
                drop(w);
                drop(x);
            })),
            None,
        );
        let ch1 = chain(&h, 40, &l);
        let ch2 = chain(&h, 40, &l);
        let wb = Weak::new(&own_b);
        EARLY.with(|e| {
            let mut e = e.borrow_mut();
            e.push(Box::new(own_b));
            e.push(Box::new(m0));
            e.push(Box::new(wb));
            e.push(Box::new(h.clone()));
            e.push(Box::new(own_c));
            e.push(Box::new(ch1));
            e.push(Box::new(m2));
        });
        LATE.with(|e| {
            let mut e = e.borrow_mut();
            e.push(Box::new(own_a));
            e.push(Box::new(m1));
            e.push(Box::new(wa));
            e.push(Box::new(h));
            e.push(Box::new(ch2));
            e.push(Box::new(m3));
        });
    })
    .join()
    .unwrap();
    // The thread's objects are all dead: 1, 2, 3 and 4 finalized, and 80 links dropped.
    assert_eq!(log.fin(), 4);
    assert_eq!(log.drops(), 4 + 80);
    assert_eq!(log.cbs(), 1, "own_a's callback ran");
    heap.safepoint();
    for m in &mains {
        assert_eq!(Gc::strong_count(m), 1);
    }
    drop(mains);
    assert_eq!(log.fin(), 8);
    assert_eq!(log.drops(), 8 + 80);
    assert_eq!(heap.attached_threads(), 1);
    assert_eq!(heap.live_objects(), 0);
}

/// A thread whose first contact with the heap is a thread-local destructor: it drops (and
/// kills) an object there, and allocates there.
#[test]
fn first_contact_in_a_thread_local_destructor() {
    struct OnExit(Option<(Heap, Gc<Fin>, Arc<Log>)>);
    impl Drop for OnExit {
        fn drop(&mut self) {
            let (heap, g, log) = self.0.take().unwrap();
            drop(g);
            let x = fin(&heap, 9, &log);
            let w = Weak::new(&x);
            drop(x);
            assert!(w.upgrade().is_none());
        }
    }
    thread_local! {
        static ON_EXIT: RefCell<Option<OnExit>> = const { RefCell::new(None) };
    }
    let heap = Heap::new();
    let log = Log::new();
    let g = fin(&heap, 1, &log);
    let w = Weak::new(&g);
    // Merge the object's count, so the last drop kills it wherever it happens.
    let g = merged(g);
    let (h, l) = (heap.clone(), log.clone());
    thread::spawn(move || {
        ON_EXIT.with(|s| *s.borrow_mut() = Some(OnExit(Some((h, g, l)))));
    })
    .join()
    .unwrap();
    heap.safepoint();
    assert_eq!(log.fin(), 2);
    assert_eq!(log.drops(), 2);
    assert!(w.upgrade().is_none());
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

// ---------------------------------------------------------------------------------------------
// Deep chains.

/// A 100k chain dropped on a non-owner thread while the owner lives (the owner's safe point
/// runs the deaths) and after the owner exited (the dropper merges each link): bounded stack.
#[test]
fn deep_chains_dropped_on_non_owner_threads() {
    let n = reps(100_000, 300);
    let heap = Heap::new();
    let log = Log::new();
    // Owner alive: this thread.
    let head = chain(&heap, n, &log);
    thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || drop(head))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(log.drops(), 0);
    heap.safepoint();
    assert_eq!(log.drops(), n);
    // Owner exited; the dropper has a small stack and never used the heap before.
    let (h, l) = (heap.clone(), log.clone());
    let head = thread::spawn(move || chain(&h, n, &l)).join().unwrap();
    thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || drop(head))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(log.drops(), 2 * n);
    assert_eq!(heap.live_objects(), 0);
}

/// BUG: at thread exit the runtime's thread-local (which holds the trashcan) is being
/// destroyed, so `with_trashcan` runs each death directly (its `Err` branch): a deep chain
/// queued to an owner that exits without a safe point dies inside `ThreadData::drop`'s
/// `merge_all`, recursing once per link (drop -> dec_ref -> queue -> merge_all -> destroy ->
/// drop ...), and overflows the stack: SIGSEGV, the whole process dies.
#[test]
fn deep_chain_queued_to_an_exiting_owner() {
    in_child("deep_chain_queued_to_an_exiting_owner", || {
        let n = reps(100_000, 300);
        let heap = Heap::new();
        let log = Log::new();
        let (h, l) = (heap.clone(), log.clone());
        let (tx, rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let owner = thread::spawn(move || {
            tx.send(chain(&h, n, &l)).unwrap();
            go_rx.recv().unwrap();
        });
        let head = rx.recv().unwrap();
        drop(head); // queued to the owner, which merges it as it exits
        go_tx.send(()).unwrap();
        owner.join().unwrap();
        assert_eq!(log.drops(), n);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// BUG (same cause): a deep chain held in a thread-local that is destroyed after the runtime's
/// (first touched before the thread used the heap) dies with no trashcan either.
#[test]
fn deep_chain_in_a_thread_local_destroyed_after_the_runtimes() {
    in_child(
        "deep_chain_in_a_thread_local_destroyed_after_the_runtimes",
        || {
            let n = reps(100_000, 300);
            let heap = Heap::new();
            let log = Log::new();
            let (h, l) = (heap.clone(), log.clone());
            thread::spawn(move || {
                EARLY.with(|_| ());
                let head = chain(&h, n, &l);
                EARLY.with(|e| e.borrow_mut().push(Box::new(head)));
            })
            .join()
            .unwrap();
            assert_eq!(log.drops(), n);
            assert_eq!(heap.live_objects(), 0);
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Detached sections.

/// Nested `detached` sections, one panicking from inside: the panic reaches the caller, the
/// thread is usable afterwards, and the outermost section merges what was queued on its way
/// in and out (a nested section is already detached: it merges nothing).
#[test]
fn detached_nested_and_panicking() {
    let heap = Heap::new();
    let log = Log::new();
    let a = fin(&heap, 1, &log);
    let b = fin(&heap, 2, &log);
    thread::spawn(move || drop(a)).join().unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| {
        heap.detached(|| {
            assert_eq!(log.fin(), 1, "merged on entry");
            heap.detached(|| {
                let b = b;
                thread::spawn(move || drop(b)).join().unwrap();
                heap.detached(|| panic!("inside detached"))
            })
        })
    }));
    assert!(r.is_err());
    assert_eq!(
        log.fin(),
        1,
        "the panic skipped the outer section's merge on its way out: b's drop waits"
    );
    let v = heap.detached(|| heap.detached(|| 5));
    assert_eq!(v, 5);
    assert_eq!(log.fin(), 2, "merged on entry to the next section");
    assert_eq!(log.drops(), 2);
    assert_eq!(heap.attached_threads(), 1);
    assert_eq!(heap.live_objects(), 0);
}

// ---------------------------------------------------------------------------------------------
// Panics.

/// Panics in Drop, finalizer, callback and hook, one with a payload whose own Drop panics
/// (several times): each is reported or swallowed, none escapes, every object dies once.
#[test]
fn panics_everywhere_none_escapes() {
    let heap = Heap::new();
    let log = Log::new();
    let reports: Reports = Arc::default();
    let r = reports.clone();
    let hook_panics = Arc::new(AtomicBool::new(false));
    let hp = hook_panics.clone();
    let l = log.clone();
    heap.set_unraisable_hook(Some(Arc::new(move |u: &reap::Unraisable| {
        r.lock().unwrap().push((u.kind, u.message.clone()));
        if hp.swap(false, SeqCst) {
            std::panic::panic_any(Bomb {
                depth: 2,
                log: l.clone(),
            });
        }
    })));
    let l = log.clone();
    let a = fin_with(
        &heap,
        1,
        &log,
        Some(Box::new(move |_| {
            std::panic::panic_any(Bomb { depth: 3, log: l })
        })),
        None,
    );
    let b = fin_with(
        &heap,
        2,
        &log,
        None,
        Some(Box::new(|| panic!("drop panics"))),
    );
    let c = fin(&heap, 3, &log);
    let _wc = Weak::with_callback(&c, |_| panic!("callback panics"));
    let l = log.clone();
    let _wc2 = Weak::with_callback(&c, move |_| {
        l.cbs.fetch_add(1, SeqCst);
    });
    let d = fin_with(
        &heap,
        4,
        &log,
        Some(Box::new(|_| panic!("hook will panic too"))),
        None,
    );
    // Each dies on a different thread.
    thread::spawn(move || drop(a)).join().unwrap();
    thread::spawn(move || drop(b)).join().unwrap();
    drop(c);
    hook_panics.store(true, SeqCst);
    drop(d);
    heap.safepoint();
    assert_eq!(log.fin(), 4);
    assert_eq!(log.drops(), 4);
    assert_eq!(log.cbs(), 1);
    let kinds: Vec<UnraisableKind> = reports.lock().unwrap().iter().map(|r| r.0).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == UnraisableKind::Finalizer)
            .count(),
        2
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == UnraisableKind::Drop).count(),
        1
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == UnraisableKind::WeakCallback)
            .count(),
        1
    );
    let ev = log.events();
    for d in ["bomb 3", "bomb 2", "bomb 1", "bomb 0"] {
        assert!(ev.iter().any(|e| e == d), "{d} missing: {ev:?}");
    }
    assert_eq!(heap.live_objects(), 2, "the two weak references");
}

/// A finalizer that resurrects its object and then panics: reported once, the object lives on,
/// and dies later without a second finalizer.
#[test]
fn finalizer_resurrects_then_panics() {
    let heap = Heap::new();
    let reports = hooked(&heap);
    let log = Log::new();
    let slot: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
    let s = slot.clone();
    let o = fin_with(
        &heap,
        1,
        &log,
        Some(Box::new(move |me: &Gc<Fin>| {
            *s.lock().unwrap() = Some(me.clone());
            panic!("after resurrecting");
        })),
        None,
    );
    let w = Weak::new(&o);
    drop(o);
    assert_eq!(log.fin(), 1);
    assert_eq!(log.drops(), 0);
    assert!(w.upgrade().is_some());
    let back = slot.lock().unwrap().take().unwrap();
    assert!(Gc::is_finalized(&back));
    // A resurrected object is merged (SEMANTICS 8.3): the other thread's drop is its last
    // and runs the death there, at once.
    thread::spawn(move || drop(back)).join().unwrap();
    assert_eq!(log.drops(), 1);
    assert_eq!(log.fin(), 1);
    assert_eq!(reports.lock().unwrap().len(), 1);
    assert!(w.upgrade().is_none());
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// A hook whose captures panic when dropped, replaced by `set_unraisable_hook`: the panic is
/// caught (reported to the new hook or printed), never thrown to the caller.
#[test]
fn replacing_a_hook_whose_drop_panics() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("hook capture dropped");
        }
    }
    let heap = Heap::new();
    let p = PanicOnDrop;
    heap.set_unraisable_hook(Some(Arc::new(move |_: &reap::Unraisable| {
        let _ = &p;
    })));
    let r = catch_unwind(AssertUnwindSafe(|| heap.set_unraisable_hook(None)));
    assert!(r.is_ok());
}

/// BUG: the heap's state drops its unraisable hook unguarded when its last reference goes. If
/// the hook's captures panic when dropped, the panic escapes the runtime from wherever the last
/// reference went: a worker thread's exit (a panic in a thread-local destructor: the process
/// aborts), or any `Gc` drop on an exiting thread. `set_unraisable_hook` guards this very drop.
#[test]
fn hook_with_panicking_drop_freed_at_thread_exit() {
    in_child("hook_with_panicking_drop_freed_at_thread_exit", || {
        struct PanicOnDrop;
        impl Drop for PanicOnDrop {
            fn drop(&mut self) {
                panic!("hook capture dropped");
            }
        }
        let heap = Heap::new();
        let p = PanicOnDrop;
        heap.set_unraisable_hook(Some(Arc::new(move |_: &reap::Unraisable| {
            let _ = &p;
        })));
        let h = heap.clone();
        drop(heap);
        // The worker holds the last handle; its attachment is the last reference at its exit.
        thread::spawn(move || {
            drop(h.alloc(1_u8));
            drop(h);
        })
        .join()
        .unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// Types: coercion, downcast, identity, equality.

/// `gc_coerce!` to `dyn Any + Send + Sync`, sent to other threads, downcast there (right and
/// wrong type), weak references through the erased handle; one finalizer, one drop.
#[test]
fn coerce_to_any_and_downcast_across_threads() {
    let heap = Heap::new();
    let log = Log::new();
    let o = fin(&heap, 1, &log);
    let any: Gc<dyn Any + Send + Sync> = reap::gc_coerce!(o => dyn Any + Send + Sync);
    let w_any = Weak::new(&any);
    assert!(Gc::is::<Fin>(&any));
    assert!(Gc::type_name(&any).ends_with("Fin"));
    let threads: Vec<_> = (0..3)
        .map(|i| {
            let a = any.clone();
            thread::spawn(move || {
                let a = match a.downcast::<u32>() {
                    Ok(_) => unreachable!(),
                    Err(a) => a,
                };
                let f = a.downcast::<Fin>().ok().unwrap();
                assert_eq!(f.id, 1);
                // (Not `Weak::new`: see shared_weak_survives_weak_new_on_another_thread.)
                let w = Weak::with_callback(&f, |_| {});
                if i == 0 {
                    assert!(w.upgrade().is_some());
                }
                drop(f);
                w
            })
        })
        .collect();
    let ws: Vec<Weak<Fin>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    heap.safepoint();
    assert_eq!(Gc::strong_count(&any), 1);
    let back: Gc<Fin> = any.downcast::<Fin>().ok().unwrap();
    assert!(ws
        .iter()
        .all(|w| w.upgrade().is_some_and(|g| Gc::ptr_eq(&g, &back))));
    drop(back);
    assert_eq!((log.fin(), log.drops()), (1, 1));
    assert!(!w_any.is_alive());
    drop((ws, w_any));
    assert_eq!(heap.live_objects(), 0);
}

/// Zero-sized and over-aligned values and coerced slices, weakly referenced, sent to and
/// dropped on other threads: values where they should be, one finalizer and one drop each.
#[test]
fn odd_layouts_across_threads() {
    #[derive(Trace)]
    #[reap(sync_finalize)]
    struct Zst;
    static ZST_FIN: AtomicUsize = AtomicUsize::new(0);
    impl Finalize for Zst {
        fn finalize(_: &Gc<Self>) {
            ZST_FIN.fetch_add(1, SeqCst);
        }
    }
    #[derive(Trace)]
    #[repr(align(128))]
    struct Big {
        #[reap(skip)]
        v: [u8; 3],
        #[reap(skip)]
        log: Arc<Log>,
    }
    impl Drop for Big {
        fn drop(&mut self) {
            assert_eq!(self.v, [1, 2, 3]);
            self.log.drops.fetch_add(1, SeqCst);
        }
    }
    let heap = Heap::new();
    let log = Log::new();
    let before = ZST_FIN.load(SeqCst);
    let z = heap.alloc(Zst);
    let b = heap.alloc(Big {
        v: [1, 2, 3],
        log: log.clone(),
    });
    assert_eq!(Gc::as_ptr(&b) as usize % 128, 0);
    let sl: Gc<[u64]> = reap::gc_coerce!(heap.alloc([7_u64; 5]) => [u64]);
    let (wz, wb, ws) = (Weak::new(&z), Weak::new(&b), Weak::new(&sl));
    let t = thread::spawn(move || {
        assert_eq!(b.v, [1, 2, 3]);
        assert_eq!(sl.iter().sum::<u64>(), 35);
        drop((z, b, sl));
    });
    t.join().unwrap();
    heap.safepoint();
    assert_eq!(ZST_FIN.load(SeqCst) - before, 1);
    assert_eq!(log.drops(), 1);
    assert!(wz.upgrade().is_none() && wb.upgrade().is_none() && !ws.is_alive());
    drop((wz, wb, ws));
    assert_eq!(heap.live_objects(), 0);
}

/// `PartialEq` and `Hash` of values that call into the runtime (drop other objects' last
/// handles, upgrade weak references, allocate) while the handles are keys of a map used from
/// several threads.
#[test]
fn eq_and_hash_call_into_the_runtime() {
    #[derive(Trace)]
    struct Key {
        #[reap(skip)]
        k: u32,
        #[reap(skip)]
        heap: Heap,
        victim: Mutex<Option<Gc<Fin>>>,
        #[reap(skip)]
        weak: Mutex<Option<Weak<Fin>>>,
    }
    impl PartialEq for Key {
        fn eq(&self, other: &Self) -> bool {
            drop(self.victim.lock().unwrap().take());
            drop(other.weak.lock().unwrap().as_ref().and_then(Weak::upgrade));
            self.k == other.k
        }
    }
    impl Eq for Key {}
    impl Hash for Key {
        fn hash<H: Hasher>(&self, h: &mut H) {
            drop(self.heap.alloc(self.k));
            drop(self.victim.lock().unwrap().take());
            self.k.hash(h);
        }
    }
    let heap = Heap::new();
    let log = Log::new();
    let map: Arc<Mutex<HashMap<Gc<Key>, u32>>> = Arc::default();
    let threads: Vec<_> = (0..reps(3, 2) as u32)
        .map(|t| {
            let (heap, log, map) = (heap.clone(), log.clone(), map.clone());
            thread::spawn(move || {
                for i in 0..reps(50, 3) as u32 {
                    let v = fin(&heap, t * 1000 + i, &log);
                    let w = Weak::new(&v);
                    let key = heap.alloc(Key {
                        k: i % 7,
                        heap: heap.clone(),
                        victim: Mutex::new(Some(v)),
                        weak: Mutex::new(Some(w)),
                    });
                    map.lock().unwrap().insert(key, t);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total = reps(3, 2) * reps(50, 3);
    assert_eq!(log.fin(), total, "every victim dropped by a Hash");
    drop(std::mem::take(&mut *map.lock().unwrap()));
    heap.safepoint();
    assert_eq!(log.drops(), total);
    assert_eq!(heap.live_objects(), 0);
}

/// A Local `reap::Gc` may hold a `sync::Gc` (it is `Send`); the reverse does not compile
/// (`sync::Heap::alloc` needs `Send + Sync`, a Local `Gc` is neither). A Local cycle holding
/// Shared objects: its collection kills them, their finalizers run.
#[test]
fn local_objects_hold_shared_ones() {
    #[derive(Trace)]
    struct LocalNode {
        shared: Option<Gc<Fin>>,
        next: RefCell<Option<reap::Gc<LocalNode>>>,
    }
    let sheap = Heap::new();
    let log = Log::new();
    let lheap = reap::Heap::new();
    let a = lheap.alloc(LocalNode {
        shared: Some(fin(&sheap, 1, &log)),
        next: RefCell::new(None),
    });
    let b = lheap.alloc(LocalNode {
        shared: Some(fin(&sheap, 2, &log)),
        next: RefCell::new(Some(a.clone())),
    });
    *a.next.borrow_mut() = Some(b.clone());
    let s = a.shared.clone().unwrap();
    let t = thread::spawn(move || {
        let w = Weak::new(&s);
        drop(s);
        w
    });
    let w = t.join().unwrap();
    drop((a, b));
    lheap.collect(2);
    sheap.safepoint();
    assert_eq!(log.fin(), 2);
    assert_eq!(log.drops(), 2);
    assert!(w.upgrade().is_none());
    drop(w);
    assert_eq!(sheap.live_objects(), 0);
}
