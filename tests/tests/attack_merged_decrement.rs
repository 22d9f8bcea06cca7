//! Adversarial tests of Shared mode's one-step decrements (issue 12, ninth session): a merged
//! object's foreign decrement is one `fetch_sub` (`count::dec_merged`), an unmerged one takes one
//! compare-and-swap first (`count::dec_foreign_fast`, in `heap::dec_ref_foreign`), and the
//! owner's last drop has its own out-of-line path (`heap::dec_ref_owner`). Each test races the
//! new paths against the other writers of `counts` (the owner's merge, queueing, weak upgrades,
//! resurrection by a finalizer, a collection's holds, zombies, owners that exit) on attached
//! threads, threads inside `Heap::detached` and threads that never attached (the gate), and
//! asserts what was dropped, how many times, what upgrades returned, and that the heap empties.
//!
//! Natively: `cargo test -p reap-tests --test attack_merged_decrement`.
//! Miri: `MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p reap-tests --test attack_merged_decrement`.
//!
//! Also run under ThreadSanitizer (`.ci/run`): with the death paths' acquire fences, TSAN
//! (which does not model fences) reported about 80 data races here between a thread's read of
//! a value before its merged `fetch_sub(Release)` and the dying thread's drop and free; the
//! death paths now use an acquire load of `counts` instead, as std's `Arc` does under TSAN.
//! loom and Miri model fences and check the ordering either way
//! (`runtime/tests/loom_death_order.rs`).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;

use reap::sync::{Gc, Heap, Weak};
use reap::Trace;
use reap_tests::shared::{fin_with, merged, reps, set_fin, settled_live, within, Fin, Log};

// ---------------------------------------------------------------------------------------------
// Helpers.

/// What a `Probe`'s pattern holds while its value is alive.
fn pattern(id: usize) -> [u64; 4] {
    let x = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5_5A5A_F0F0_0F0F;
    [x, !x, x.rotate_left(17), x ^ 0xFFFF]
}

type ProbeHook = Box<dyn FnOnce(Option<Gc<Probe>>) + Send>;

/// A value whose heap-allocated pattern is checked on every read and on its drop, and wiped by
/// the drop (a read after the drop, or a second drop, fails), counting its drops; its `Drop`
/// can run a closure the test gives it with the handle it holds (user code in a death).
#[derive(Trace)]
struct Probe {
    #[reap(skip)]
    id: usize,
    #[reap(skip)]
    pattern: Box<[u64; 4]>,
    #[reap(skip)]
    drops: Arc<AtomicUsize>,
    next: Mutex<Option<Gc<Probe>>>,
    #[reap(skip)]
    on_drop: Mutex<Option<ProbeHook>>,
}

impl Probe {
    /// Reads the whole value: it must be intact.
    fn check(&self) {
        assert_eq!(
            *self.pattern,
            pattern(self.id),
            "probe {} read after its drop",
            self.id
        );
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        assert_eq!(
            *self.pattern,
            pattern(self.id),
            "probe {} dropped twice",
            self.id
        );
        *self.pattern = [0; 4];
        self.drops.fetch_add(1, SeqCst);
        let next = self.next.get_mut().unwrap().take();
        if let Some(f) = self.on_drop.get_mut().unwrap().take() {
            f(next);
        }
    }
}

fn probe(heap: &Heap, id: usize, drops: &Arc<AtomicUsize>) -> Gc<Probe> {
    heap.alloc(Probe {
        id,
        pattern: Box::new(pattern(id)),
        drops: drops.clone(),
        next: Mutex::new(None),
        on_drop: Mutex::new(None),
    })
}

/// How a worker thread meets the heap.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Attached (a safe point first): decrements on the direct paths.
    Attached,
    /// Attached, then running inside `Heap::detached`: every operation takes the gate.
    Detached,
    /// Never attached: every operation takes the gate.
    Unattached,
}

const KINDS: [Kind; 3] = [Kind::Attached, Kind::Detached, Kind::Unattached];

/// Runs `f` on the calling thread as a thread of kind `k`.
fn as_kind<R>(heap: &Heap, k: Kind, f: impl FnOnce() -> R) -> R {
    match k {
        Kind::Attached => {
            heap.safepoint();
            f()
        }
        Kind::Detached => heap.detached(f),
        Kind::Unattached => f(),
    }
}

/// Clones and drops `g` `n` times (reading the value if `read`), in overlapping pairs, then
/// drops it.
fn churn(g: Gc<Probe>, n: usize, read: bool) {
    for i in 0..n {
        let a = g.clone();
        if read {
            a.check();
        }
        if i % 3 == 0 {
            let b = a.clone();
            drop(a);
            if read {
                b.check();
            }
        }
    }
    drop(g);
}

// ---------------------------------------------------------------------------------------------
// The merged `fetch_sub`.

/// A merged object (its owner's last reference gone) cloned, read and dropped at once on an
/// attached thread, one inside `Heap::detached` and one that never attached, while the main
/// thread (not its owner) drops its handle: the last `fetch_sub` lands on any of them, through
/// the direct path or the gate; the value is read intact until then, dropped once, freed.
#[test]
fn merged_object_churned_on_every_kind_of_thread() {
    within("merged churn", || {
        let heap = Heap::new();
        heap.disable();
        for round in 0..reps(30, 6) {
            let drops = Arc::new(AtomicUsize::new(0));
            let g = merged(probe(&heap, round, &drops));
            let n = reps(2000, 15);
            let workers: Vec<_> = KINDS
                .iter()
                .chain([Kind::Attached].iter())
                .map(|&k| {
                    let c = g.clone();
                    let h = heap.clone();
                    thread::spawn(move || as_kind(&h, k, || churn(c, n, true)))
                })
                .collect();
            g.check();
            drop(g);
            for w in workers {
                w.join().unwrap();
            }
            assert_eq!(drops.load(SeqCst), 1, "round {round}");
        }
        assert_eq!(settled_live(&heap), 0);
    });
}

/// The last two handles of a merged object dropped at once on two threads (attached, never
/// attached) while two others (attached, never attached) upgrade a weak reference to it in a
/// loop: every upgrade that succeeds sees the value intact, once one upgrade on a thread has
/// returned `None` no later one on that thread returns the object, and it is dropped once.
#[test]
fn last_merged_drops_race_weak_upgrades() {
    within("merged drops vs upgrades", || {
        let heap = Heap::new();
        heap.disable();
        for round in 0..reps(1000, 10) {
            let drops = Arc::new(AtomicUsize::new(0));
            let g = merged(probe(&heap, round, &drops));
            let w = Weak::new(&g);
            let a = g.clone();
            let b = g;
            assert_eq!(Gc::strong_count(&a), 2);
            let go = Arc::new(Barrier::new(4));
            let dropper = |x: Gc<Probe>, k: Kind| {
                let (h, go) = (heap.clone(), go.clone());
                thread::spawn(move || {
                    as_kind(&h, k, || {
                        h.detached(|| go.wait());
                        x.check();
                        drop(x);
                    })
                })
            };
            let upgrader = |w: Weak<Probe>, k: Kind| {
                let (h, go) = (heap.clone(), go.clone());
                thread::spawn(move || {
                    as_kind(&h, k, || {
                        h.detached(|| go.wait());
                        let mut seen = 0;
                        loop {
                            match w.upgrade() {
                                Some(x) => {
                                    x.check();
                                    seen += 1;
                                    drop(x);
                                }
                                None => break,
                            }
                            assert!(seen < 10_000_000, "the object never died");
                        }
                        for _ in 0..10 {
                            assert!(w.upgrade().is_none(), "upgraded after a refusal");
                        }
                        seen
                    })
                })
            };
            let ts = [dropper(a, Kind::Attached), dropper(b, Kind::Unattached)];
            let us = [
                upgrader(w.clone(), Kind::Attached),
                upgrader(w.clone(), Kind::Unattached),
            ];
            for t in ts {
                t.join().unwrap();
            }
            for u in us {
                u.join().unwrap();
            }
            assert_eq!(drops.load(SeqCst), 1, "round {round}");
            assert!(w.upgrade().is_none());
            assert!(!w.is_alive());
        }
        heap.safepoint();
        assert_eq!(settled_live(&heap), 0);
    });
}

/// A merged object `A` holding the only handle to a merged object `B` dies on a foreign
/// thread's `fetch_sub`; `A`'s `Drop` (user code, run by that death) hands `B`'s handle to
/// two threads (attached, never attached) which clone and drop it at once, while the main
/// thread drops a handle to `B` it kept: `B` is dropped once, after `A`.
#[test]
fn a_drop_hands_a_merged_object_to_other_threads() {
    within("drop hands on", || {
        let heap = Heap::new();
        heap.disable();
        for round in 0..reps(50, 5) {
            let drops = Arc::new(AtomicUsize::new(0));
            let b = merged(probe(&heap, 2 * round + 1, &drops));
            let a = merged(probe(&heap, 2 * round, &drops));
            *a.next.lock().unwrap() = Some(b.clone());
            let (tx1, rx1) = mpsc::channel::<Gc<Probe>>();
            let (tx2, rx2) = mpsc::channel::<Gc<Probe>>();
            *a.on_drop.lock().unwrap() = Some(Box::new(move |next| {
                let next = next.expect("A holds B");
                tx2.send(next.clone()).unwrap();
                tx1.send(next).unwrap();
            }));
            let n = reps(1000, 10);
            let h = heap.clone();
            let t1 = thread::spawn(move || {
                h.safepoint();
                let g = h.detached(|| rx1.recv().unwrap());
                churn(g, n, true);
            });
            let t2 = thread::spawn(move || churn(rx2.recv().unwrap(), n, true));
            // A dies on a thread of its own (not its owner, attached).
            let h = heap.clone();
            thread::spawn(move || {
                h.safepoint();
                drop(a);
            })
            .join()
            .unwrap();
            b.check();
            drop(b);
            t1.join().unwrap();
            t2.join().unwrap();
            assert_eq!(drops.load(SeqCst), 2, "round {round}");
        }
        assert_eq!(settled_live(&heap), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Resurrection: `resurrect_start` is the one writer that leaves `MERGED`.

thread_local! {
    static PARKED: RefCell<Option<Gc<Fin>>> = const { RefCell::new(None) };
}

/// A merged object with a finalizer dies on a thread of each kind (attached; inside
/// `Heap::detached`; never attached, so its finalizer's temporary reference is a merged count;
/// a thread-local destructor at thread exit); the finalizer hands clones to two threads
/// (attached, never attached) that clone, read and drop them at once, racing the end of the
/// finalizer (`resurrect_end`, itself a merged decrement in two of the cases): one finalizer
/// run, one drop, wherever the last decrement lands.
#[test]
fn finalizer_publishes_its_merged_object_to_churning_threads() {
    within("finalizer publishes", || {
        let heap = Heap::new();
        heap.disable();
        let rounds = reps(12, 2);
        for round in 0..rounds {
            for dier in 0..4 {
                let log = Log::new();
                let g = merged(fin_with(&heap, round as u32, &log, None, None));
                let (tx1, rx1) = mpsc::channel::<Gc<Fin>>();
                let (tx2, rx2) = mpsc::channel::<Gc<Fin>>();
                set_fin(&g, move |me| {
                    tx1.send(me.clone()).unwrap();
                    tx2.send(me.clone()).unwrap();
                });
                let n = reps(1000, 10);
                let fin_churn = move |g: Gc<Fin>| {
                    for _ in 0..n {
                        let c = g.clone();
                        assert_eq!(c.id, round as u32);
                        drop(c);
                    }
                    drop(g);
                };
                let h = heap.clone();
                let c1 = thread::spawn(move || {
                    h.safepoint();
                    let g = h.detached(|| rx1.recv().unwrap());
                    fin_churn(g);
                });
                let c2 = thread::spawn(move || {
                    if let Ok(g) = rx2.recv() {
                        fin_churn(g);
                    }
                });
                let h = heap.clone();
                thread::spawn(move || match dier {
                    0 => {
                        h.safepoint();
                        drop(g);
                    }
                    1 => h.detached(|| drop(g)),
                    2 => drop(g),
                    _ => {
                        h.safepoint();
                        PARKED.with(|p| *p.borrow_mut() = Some(g));
                    }
                })
                .join()
                .unwrap();
                c1.join().unwrap();
                c2.join().unwrap();
                heap.safepoint();
                assert_eq!(
                    (log.fin(), log.drops()),
                    (1, 1),
                    "round {round}, death on thread kind {dier}: {:?}",
                    log.events()
                );
            }
        }
        heap.safepoint();
        assert_eq!(settled_live(&heap), 0);
    });
}

/// A finalizer that resurrects its object into a slot, then the slot's handle and a weak
/// upgrade race on two other threads: the resurrected object is merged again (so later
/// foreign drops are `fetch_sub`s), is read intact by whoever upgrades, and is dropped once
/// with no second finalizer.
#[test]
fn resurrected_object_dropped_while_upgraded_elsewhere() {
    within("resurrected then raced", || {
        let heap = Heap::new();
        heap.disable();
        for round in 0..reps(100, 6) {
            let log = Log::new();
            let slot: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
            let s = slot.clone();
            let g = merged(fin_with(
                &heap,
                round as u32,
                &log,
                Some(Box::new(move |me: &Gc<Fin>| {
                    *s.lock().unwrap() = Some(me.clone());
                })),
                None,
            ));
            let w = Weak::new(&g);
            // Dies on an attached foreign thread and is resurrected there.
            let h = heap.clone();
            thread::spawn(move || {
                h.safepoint();
                drop(g);
            })
            .join()
            .unwrap();
            assert_eq!(log.fin(), 1);
            assert_eq!(log.drops(), 0);
            let r = slot.lock().unwrap().take().expect("resurrected");
            assert_eq!(Gc::strong_count(&r), 1, "merged again with its one handle");
            let go = Arc::new(Barrier::new(2));
            let (h, g2) = (heap.clone(), go.clone());
            let t = thread::spawn(move || {
                h.safepoint();
                h.detached(|| g2.wait());
                drop(r);
            });
            let u = thread::spawn(move || {
                go.wait();
                let mut n = 0;
                while let Some(x) = w.upgrade() {
                    assert_eq!(x.id, round as u32);
                    n += 1;
                    assert!(n < 10_000_000);
                }
                assert!(w.upgrade().is_none());
            });
            t.join().unwrap();
            u.join().unwrap();
            assert_eq!((log.fin(), log.drops()), (1, 1), "round {round}");
        }
        heap.safepoint();
        assert_eq!(settled_live(&heap), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Collections: holds (merged by a plain store while the world is stopped) and zombies.

/// A garbage 2-cycle `A <-> B` is collected; `A`'s `Drop` (run by reclaim) moves its handle to
/// `B` out to two threads (attached, never attached) that clone and drop it (never reading it:
/// its value is dropped too) while reclaim gives back the collection's hold on `B`: `B` is a
/// zombie for a while, its memory freed once, by whichever `fetch_sub` comes last; each value
/// is dropped once.
#[test]
fn zombie_handles_churned_while_reclaim_gives_back_the_holds() {
    within("zombie churn", || {
        let heap = Heap::new();
        heap.disable();
        for round in 0..reps(40, 5) {
            let drops = Arc::new(AtomicUsize::new(0));
            let a = probe(&heap, 2 * round, &drops);
            let b = probe(&heap, 2 * round + 1, &drops);
            *a.next.lock().unwrap() = Some(b.clone());
            *b.next.lock().unwrap() = Some(a.clone());
            let (tx1, rx1) = mpsc::channel::<Gc<Probe>>();
            let (tx2, rx2) = mpsc::channel::<Gc<Probe>>();
            *a.on_drop.lock().unwrap() = Some(Box::new(move |next| {
                let zb = next.expect("A holds B");
                tx2.send(zb.clone()).unwrap();
                tx1.send(zb).unwrap();
            }));
            drop((a, b));
            let n = reps(2000, 10);
            let h = heap.clone();
            let t1 = thread::spawn(move || {
                h.safepoint();
                let z = h.detached(|| rx1.recv().unwrap());
                churn(z, n, false);
            });
            let t2 = thread::spawn(move || churn(rx2.recv().unwrap(), n, false));
            assert_eq!(heap.collect(), 2, "round {round}");
            t1.join().unwrap();
            t2.join().unwrap();
            assert_eq!(drops.load(SeqCst), 2, "round {round}");
            heap.safepoint();
            assert_eq!(
                settled_live(&heap),
                0,
                "round {round}: the zombie was not freed"
            );
        }
    });
}

/// A garbage 2-cycle of finalized objects whose finalizer (run by the collection after the
/// restart) hands clones of `A` to two threads, one attached that clones and drops them with a
/// safe point now and then (so it parks for the resurrection check) and one never attached
/// (the gate): the check finds `A` and `B` resurrected, the holds go back while the threads
/// churn, and once the threads are done a collection frees the cycle: one finalizer run and
/// one drop each.
#[test]
fn collection_finalizer_resurrects_into_churning_threads() {
    within("collection resurrection churn", || {
        let heap = Heap::new();
        heap.disable();
        for round in 0..reps(10, 2) {
            let log = Log::new();
            let a = fin_with(&heap, 1, &log, None, None);
            let b = fin_with(&heap, 2, &log, None, None);
            *a.next.lock().unwrap() = Some(b.clone());
            *b.next.lock().unwrap() = Some(a.clone());
            let (tx1, rx1) = mpsc::channel::<Gc<Fin>>();
            let (tx2, rx2) = mpsc::channel::<Gc<Fin>>();
            set_fin(&a, move |me| {
                tx1.send(me.clone()).unwrap();
                tx2.send(me.clone()).unwrap();
            });
            drop((a, b));
            let n = reps(3000, 20);
            let h = heap.clone();
            let t1 = thread::spawn(move || {
                h.safepoint();
                let g = h.detached(|| rx1.recv().unwrap());
                for i in 0..n {
                    let c = g.clone();
                    assert_eq!(c.id, 1);
                    drop(c);
                    if i % 64 == 0 {
                        h.safepoint();
                    }
                }
                drop(g);
            });
            let t2 = thread::spawn(move || {
                let g = rx2.recv().unwrap();
                for _ in 0..n {
                    let c = g.clone();
                    assert_eq!(c.id, 1);
                    drop(c);
                }
                drop(g);
            });
            let first = heap.collect();
            t1.join().unwrap();
            t2.join().unwrap();
            let mut total = first;
            for _ in 0..5 {
                total += heap.collect();
            }
            assert_eq!(total, 2, "round {round}: {:?}", log.events());
            assert_eq!((log.fin(), log.drops()), (2, 2), "round {round}");
            assert_eq!(settled_live(&heap), 0);
        }
    });
}

/// Collections run back to back on one thread while three threads (attached with safe
/// points, inside `Heap::detached`, never attached) clone and drop handles to a merged object
/// that sits in a 2-cycle, and to its unmerged partner: every count change of a thread that is
/// not parked goes through the gate, so the collections read counts nobody changes and never
/// take the reachable cycle for garbage; once the threads are done the cycle is freed once.
#[test]
fn collections_against_churn_on_every_kind_of_thread() {
    within("collections vs churn", || {
        let heap = Heap::new();
        heap.disable();
        let drops = Arc::new(AtomicUsize::new(0));
        let a = merged(probe(&heap, 1, &drops));
        let b = probe(&heap, 2, &drops);
        *a.next.lock().unwrap() = Some(b.clone());
        *b.next.lock().unwrap() = Some(a.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let n = reps(20_000, 30);
        let workers: Vec<_> = KINDS
            .iter()
            .map(|&k| {
                let (a, b, h, stop) = (a.clone(), b.clone(), heap.clone(), stop.clone());
                thread::spawn(move || {
                    as_kind(&h, k, || {
                        let mut i = 0;
                        while i < n || !stop.load(SeqCst) {
                            let x = a.clone();
                            let y = b.clone();
                            x.check();
                            y.check();
                            drop(x);
                            drop(y);
                            if i % 128 == 0 {
                                h.safepoint();
                            }
                            i += 1;
                            if cfg!(miri) && i >= n {
                                break;
                            }
                        }
                        drop((a, b));
                    })
                })
            })
            .collect();
        let mut freed = 0;
        for _ in 0..reps(40, 2) {
            freed += heap.collect();
        }
        assert_eq!(freed, 0, "a reachable cycle collected");
        drop((a, b));
        stop.store(true, SeqCst);
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(drops.load(SeqCst), 0);
        let mut total = 0;
        for _ in 0..5 {
            total += heap.collect();
        }
        assert_eq!(total, 2);
        assert_eq!(drops.load(SeqCst), 2);
        assert_eq!(settled_live(&heap), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// The unmerged one-CAS path against the owner.

/// The owner's last local drop (the merge's compare-and-swap, in `dec_ref_owner`) at the same
/// moment as three foreign drops (attached, so each tries its one compare-and-swap first; one
/// inside `Heap::detached`; one never attached) of references counted in the shared word:
/// whatever interleaving, the object is dropped once, by whoever is last.
#[test]
fn owner_last_drop_races_foreign_drops() {
    within("owner vs foreign", || {
        let heap = Heap::new();
        heap.disable();
        let rounds = reps(2000, 10);
        let drops = Arc::new(AtomicUsize::new(0));
        for round in 0..rounds {
            let g = probe(&heap, round, &drops);
            let slot = Mutex::new(Some(g));
            let cloned = Barrier::new(5);
            let go = Barrier::new(5);
            thread::scope(|s| {
                for k in [
                    Kind::Attached,
                    Kind::Attached,
                    Kind::Detached,
                    Kind::Unattached,
                ] {
                    let (slot, cloned, go, h) = (&slot, &cloned, &go, &heap);
                    s.spawn(move || {
                        as_kind(h, k, || {
                            // Counted in the shared word (this thread is not the owner).
                            let c = slot.lock().unwrap().as_ref().unwrap().clone();
                            h.detached(|| {
                                cloned.wait();
                                go.wait();
                            });
                            c.check();
                            drop(c);
                        })
                    });
                }
                cloned.wait();
                let g = slot.lock().unwrap().take().unwrap();
                assert_eq!(Gc::strong_count(&g), 5);
                heap.detached(|| go.wait());
                g.check();
                drop(g);
            });
            assert_eq!(drops.load(SeqCst), round + 1, "round {round}");
        }
        heap.safepoint();
        assert_eq!(settled_live(&heap), 0);
    });
}

/// Foreign drops of references the owner counted (each finds the shared count at zero or
/// below and queues, or goes negative) mixed with foreign clones and drops that take the
/// one-CAS path, while the owner runs safe points that merge its queue: dropped once, after
/// the last reference, and not before.
#[test]
fn foreign_drops_of_owner_counted_references_race_queue_merges() {
    within("queue vs fast path", || {
        let heap = Heap::new();
        heap.disable();
        let drops = Arc::new(AtomicUsize::new(0));
        for round in 0..reps(100, 5) {
            let g = probe(&heap, round, &drops);
            // References the owner counted, moved to other threads.
            let owned: Vec<Gc<Probe>> = (0..3).map(|_| g.clone()).collect();
            let n = reps(500, 8);
            let workers: Vec<_> = owned
                .into_iter()
                .zip(KINDS)
                .map(|(o, k)| {
                    let h = heap.clone();
                    thread::spawn(move || {
                        as_kind(&h, k, || {
                            // A shared-count reference, then the owner-counted one dropped
                            // (to zero or below: queued), then churn on the shared count.
                            let mine = o.clone();
                            drop(o);
                            churn(mine, n, true);
                        })
                    })
                })
                .collect();
            while !workers.iter().all(|w| w.is_finished()) {
                heap.safepoint();
                g.check();
                std::hint::spin_loop();
                if cfg!(miri) {
                    thread::yield_now();
                }
            }
            for w in workers {
                w.join().unwrap();
            }
            heap.safepoint();
            assert_eq!(drops.load(SeqCst), round, "dropped while the owner held it");
            assert_eq!(Gc::strong_count(&g), 1);
            drop(g);
            assert_eq!(drops.load(SeqCst), round + 1, "round {round}");
        }
        assert_eq!(settled_live(&heap), 0);
    });
}

/// The owner exits while other threads still drop the references it counted and clone and
/// drop their own: some queue to it before its exit (merged by the exit), some find it gone
/// (merged by the queueing thread), some take the one-CAS path against the exit's merges;
/// each object is dropped once.
#[test]
fn owner_exits_while_foreign_threads_drop() {
    within("owner exit vs drops", || {
        let heap = Heap::new();
        heap.disable();
        for round in 0..reps(40, 3) {
            let drops = Arc::new(AtomicUsize::new(0));
            let m = reps(16, 3);
            let (txs, rxs): (Vec<_>, Vec<_>) =
                (0..3).map(|_| mpsc::channel::<Vec<Gc<Probe>>>()).unzip();
            let n = reps(50, 3);
            let workers: Vec<_> = rxs
                .into_iter()
                .zip(KINDS)
                .map(|(rx, k)| {
                    let h = heap.clone();
                    thread::spawn(move || {
                        let v = h.detached(|| rx.recv().unwrap());
                        as_kind(&h, k, || {
                            for o in v {
                                let mine = o.clone();
                                drop(o);
                                churn(mine, n, true);
                            }
                        })
                    })
                })
                .collect();
            let (h, d) = (heap.clone(), drops.clone());
            thread::spawn(move || {
                let objs: Vec<_> = (0..m).map(|i| probe(&h, i, &d)).collect();
                for tx in &txs {
                    tx.send(objs.to_vec()).unwrap();
                }
                drop(objs);
                // Exits now, owning every object, while the workers drop.
            })
            .join()
            .unwrap();
            for w in workers {
                w.join().unwrap();
            }
            heap.safepoint();
            assert_eq!(drops.load(SeqCst), m, "round {round}");
        }
        assert_eq!(settled_live(&heap), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Possible-root marks of the new paths (written before the decrement).

/// A 2-cycle `A <-> B` whose only outside handle is a foreign thread's, counted in `A`'s
/// shared word (unmerged: the owner lives and `B`'s edge is its local count): a collection
/// first decides everything (clearing every mark), then that thread drops its handle on the
/// one-CAS path (`dec_foreign_fast`). That drop alone must mark `A` a possible root, or
/// `collect` never finds the cycle.
#[test]
fn foreign_one_cas_drop_marks_a_possible_root() {
    within("fast path mark", || {
        let heap = Heap::new();
        heap.disable();
        let drops = Arc::new(AtomicUsize::new(0));
        let a = probe(&heap, 1, &drops);
        let b = probe(&heap, 2, &drops);
        *a.next.lock().unwrap() = Some(b.clone());
        *b.next.lock().unwrap() = Some(a.clone());
        drop(b);
        let slot = Mutex::new(Some(a));
        let (tx, rx) = mpsc::channel::<()>();
        let (back_tx, back_rx) = mpsc::channel::<()>();
        thread::scope(|s| {
            let (slot, h) = (&slot, &heap);
            let t = s.spawn(move || {
                h.safepoint();
                let mine = slot.lock().unwrap().as_ref().unwrap().clone();
                back_tx.send(()).unwrap();
                h.detached(|| rx.recv().unwrap());
                assert_eq!(Gc::strong_count(&mine), 2, "B's edge and this handle");
                // Unmerged, shared count 1: the one compare-and-swap.
                drop(mine);
                back_tx.send(()).unwrap();
            });
            back_rx.recv().unwrap();
            drop(slot.lock().unwrap().take());
            // Every mark so far decided: the cycle is held from outside.
            assert_eq!(heap.collect(), 0);
            assert_eq!(heap.collect(), 0);
            tx.send(()).unwrap();
            back_rx.recv().unwrap();
            t.join().unwrap();
        });
        assert_eq!(heap.collect(), 2, "the foreign drop did not mark A");
        assert_eq!(drops.load(SeqCst), 2);
        assert_eq!(settled_live(&heap), 0);
    });
}

/// A 2-cycle `A <-> B` with `A` merged: `A`'s count is the edge from `B` and one handle of
/// a foreign thread, both that thread's increments. A collection decides everything (clearing
/// the marks); then the foreign thread drops its handle with one `fetch_sub` (from 2, so not
/// the last): that drop alone must mark `A`, and `collect` must then find the cycle.
#[test]
fn merged_one_step_drop_marks_a_possible_root() {
    within("merged mark", || {
        let heap = Heap::new();
        heap.disable();
        let drops = Arc::new(AtomicUsize::new(0));
        let a = probe(&heap, 1, &drops);
        let b = probe(&heap, 2, &drops);
        *a.next.lock().unwrap() = Some(b.clone());
        let slot = Mutex::new(Some((a, b)));
        let (tx, rx) = mpsc::channel::<()>();
        let (back_tx, back_rx) = mpsc::channel::<()>();
        thread::scope(|s| {
            let (slot, h) = (&slot, &heap);
            let t = s.spawn(move || {
                h.safepoint();
                let mine = {
                    let g = slot.lock().unwrap();
                    let (a, b) = g.as_ref().unwrap();
                    // Both counted in `A`'s shared word.
                    *b.next.lock().unwrap() = Some(a.clone());
                    a.clone()
                };
                back_tx.send(()).unwrap();
                h.detached(|| rx.recv().unwrap());
                assert_eq!(
                    Gc::strong_count(&mine),
                    2,
                    "merged: B's edge and this handle"
                );
                drop(mine);
                back_tx.send(()).unwrap();
            });
            back_rx.recv().unwrap();
            // The owner's last local reference to `A`: `A` merges (count 2).
            drop(slot.lock().unwrap().take());
            assert_eq!(heap.collect(), 0);
            assert_eq!(heap.collect(), 0);
            tx.send(()).unwrap();
            back_rx.recv().unwrap();
            t.join().unwrap();
        });
        assert_eq!(heap.collect(), 2, "the merged drop did not mark A");
        assert_eq!(drops.load(SeqCst), 2);
        assert_eq!(settled_live(&heap), 0);
    });
}
