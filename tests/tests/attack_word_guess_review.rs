//! The review of the foreign drop's guessed word (`count::dec_shared_fast`; issue 12,
//! twenty-second session, written by a helper attacking the change): each test
//! drives a thread's remembered word stale (or, worse, *right* in a new situation: the same
//! word after an ABA, a queued word, a word of the object's previous life) and checks the
//! total count after each step, that the death runs once, and that the heap empties.
//!
//! Natively: `cargo test -p reap-tests --test attack_word_guess_review`.
//! Miri: `MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p reap-tests --test attack_word_guess_review`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;

use reap::sync::{Gc, Heap};
use reap::Trace;
use reap_tests::shared::{dropped, fin, reps, set_fin, Dropped, Fin, Log};

/// A worker drops a run of its own clones with no clone between: each drop's guess is the
/// word the previous one found, one too high, so every first compare-and-swap fails (with a
/// clone/drop pair now and then, where the guess is exact). Every decrement lands once.
#[test]
fn a_run_of_drops_each_guess_one_stale() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let x = dropped(&heap, &drops);
    let n = reps(64, 6);
    let seen = thread::scope(|s| {
        let (heap, a) = (&heap, x.clone());
        s.spawn(move || {
            heap.safepoint();
            let mut seen = Vec::new();
            let mut v: Vec<_> = (0..n).map(|_| a.clone()).collect();
            for k in (0..n).rev() {
                v.pop();
                seen.push((Gc::strong_count(&a), 2 + k));
                if k % 3 == 0 {
                    let c = a.clone();
                    drop(c);
                    seen.push((Gc::strong_count(&a), 2 + k));
                }
            }
            drop(a); // shared 0: queued to the owner
            seen
        })
        .join()
        .unwrap()
    });
    for (got, want) in seen {
        assert_eq!(got, want);
    }
    heap.safepoint();
    assert_eq!(Gc::strong_count(&x), 1);
    assert_eq!(drops.load(SeqCst), 0);
    drop(x);
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(heap.live_objects(), 0);
}

/// The guess is a QUEUED word with a count above zero, and right: the compare-and-swap from
/// it publishes (as a load would have). Then it is one too high, then the word is a queued
/// zero (the slow path takes it to -1). The queue's merge and the death are exact.
#[test]
fn a_right_guess_of_a_queued_word() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let x = dropped(&heap, &drops);
    let (a, b) = (x.clone(), x.clone());
    let seen = thread::scope(|s| {
        let heap = &heap;
        s.spawn(move || {
            heap.safepoint();
            let mut seen = Vec::new();
            drop(a); // shared 0 unqueued: queued, the queue holds a's reference
            seen.push((Gc::strong_count(&b), 2));
            for _ in 0..reps(10, 3) {
                let c = b.clone(); // (1, QUEUED)
                seen.push((Gc::strong_count(&b), 3));
                drop(c); // guess (1, QUEUED), right after the first
                seen.push((Gc::strong_count(&b), 2));
            }
            let (c1, c2) = (b.clone(), b.clone()); // (2, QUEUED)
            drop(c1); // guess (1, QUEUED): wrong, retried
            seen.push((Gc::strong_count(&b), 3));
            drop(c2); // guess (2, QUEUED): wrong, retried
            seen.push((Gc::strong_count(&b), 2));
            drop(b); // guess (1, QUEUED), word (0, QUEUED): slow path, -1
            seen
        })
        .join()
        .unwrap()
    });
    for (i, (got, want)) in seen.into_iter().enumerate() {
        assert_eq!(got, want, "step {i}");
    }
    assert_eq!(Gc::strong_count(&x), 1);
    heap.safepoint(); // merges the queued object
    assert_eq!(Gc::strong_count(&x), 1);
    assert_eq!(drops.load(SeqCst), 0);
    drop(x);
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(heap.live_objects(), 0);
}

/// The worker's guess is kept across detached sections, whose gated operations change the
/// word without remembering anything; the last gated drop queues the object.
#[test]
fn a_guess_kept_across_detached_sections() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let x = dropped(&heap, &drops);
    let a = x.clone();
    let seen = thread::scope(|s| {
        let heap = &heap;
        s.spawn(move || {
            heap.safepoint();
            let mut seen = Vec::new();
            let c = a.clone();
            drop(c); // remembers (1, INIT)
                     // Gated: two clones kept, the word (2, INIT).
            let (d1, d2) = heap.detached(|| (a.clone(), a.clone()));
            seen.push((Gc::strong_count(&a), 4));
            drop(d1); // guess 1, word 2
            seen.push((Gc::strong_count(&a), 3));
            // Gated: the word back to 1 then 2 then 1 (an ABA of the remembered 2).
            heap.detached(|| {
                let e = a.clone();
                drop(e);
            });
            drop(d2); // guess 2, word 1
            seen.push((Gc::strong_count(&a), 2));
            let c = a.clone();
            drop(c); // remembers (1, INIT)
                     // Gated drop of the last handle: a shared 0, queued through the gate.
            heap.detached(move || drop(a));
            seen
        })
        .join()
        .unwrap()
    });
    for (i, (got, want)) in seen.into_iter().enumerate() {
        assert_eq!(got, want, "step {i}");
    }
    heap.safepoint();
    assert_eq!(Gc::strong_count(&x), 1);
    assert_eq!(drops.load(SeqCst), 0);
    drop(x);
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(heap.live_objects(), 0);
}

/// One thread's guess is per thread, not per heap: a worker attached to two heaps alternates
/// drops of objects of both (the first drop on a heap is gated, as the one-entry cache names
/// the other heap; the second's remembered word is the other heap's object's), then drops a handle to an object of the second heap
/// allocated, if it can be, where the first heap's dead object was.
#[test]
fn guesses_across_two_heaps() {
    let (h1, h2) = (Heap::new(), Heap::new());
    h1.safepoint();
    h2.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let x1 = dropped(&h1, &drops);
    let x2 = dropped(&h2, &drops);
    let addr = Gc::as_ptr(&x1) as usize;
    let (to_worker, from_main) = mpsc::channel::<Gc<Dropped>>();
    let (to_main, from_worker) = mpsc::channel::<Vec<(usize, usize)>>();
    thread::scope(|s| {
        let (h1r, h2r) = (&h1, &h2);
        let (a1, a2) = (x1.clone(), x2.clone());
        s.spawn(move || {
            h1r.safepoint();
            h2r.safepoint();
            let mut seen = Vec::new();
            for i in 0..reps(20, 4) {
                // Attached to the heap of the object it touches first (the cache follows).
                if i % 2 == 0 {
                    h1r.safepoint();
                } else {
                    h2r.safepoint();
                }
                // The first drop on each heap is gated (the cache moves, `count::dec`); the
                // second takes the fast path with the other heap's object's guess.
                let (c1, d1, c2, d2) = (a1.clone(), a1.clone(), a2.clone(), a2.clone());
                drop(c1);
                drop(d1);
                drop(c2);
                drop(d2);
                seen.push((Gc::strong_count(&a1), 2));
                seen.push((Gc::strong_count(&a2), 2));
            }
            drop(a1); // queued to main on h1
            drop(a2);
            to_main.send(seen).unwrap();
            // The object of h2 at x1's old address (or elsewhere).
            let y = from_main.recv().unwrap();
            h2r.safepoint();
            let mut seen = Vec::new();
            for _ in 0..reps(8, 3) {
                let c = y.clone();
                seen.push((Gc::strong_count(&y), 3));
                drop(c);
                seen.push((Gc::strong_count(&y), 2));
            }
            drop(y);
            to_main.send(seen).unwrap();
        });
        for (got, want) in from_worker.recv().unwrap() {
            assert_eq!(got, want);
        }
        h1.safepoint();
        h2.safepoint();
        assert_eq!(Gc::strong_count(&x1), 1);
        assert_eq!(Gc::strong_count(&x2), 1);
        drop(x1);
        assert_eq!(drops.load(SeqCst), 1);
        h2.safepoint();
        let mut misses = Vec::new();
        let mut y = None;
        for _ in 0..64 {
            let g = dropped(&h2, &drops);
            if Gc::as_ptr(&g) as usize == addr {
                y = Some(g);
                break;
            }
            misses.push(g);
        }
        let hit = y.is_some();
        let y = y.unwrap_or_else(|| dropped(&h2, &drops));
        eprintln!("guesses_across_two_heaps: same address reused: {hit}");
        drop(misses);
        let before = drops.load(SeqCst);
        to_worker.send(y.clone()).unwrap();
        for (got, want) in from_worker.recv().unwrap() {
            assert_eq!(got, want);
        }
        h2.safepoint();
        assert_eq!(Gc::strong_count(&y), 1);
        assert_eq!(drops.load(SeqCst), before);
        drop(y);
        assert_eq!(drops.load(SeqCst), before + 1);
    });
    drop(x2);
    h2.safepoint();
    assert_eq!(h1.live_objects(), 0);
    assert_eq!(h2.live_objects(), 0);
}

/// A guess from the object's previous life is right again in its finalizer: the worker
/// remembered (1, INIT) before the death; the finalizer (on the owner, which holds the
/// temporary reference as owner again: word (0, INIT)) lends it a handle, and the worker's
/// clone/drop pair finds (1, INIT) again. Then stale guesses, a queueing drop, the
/// resurrection's end and the death, once.
#[test]
fn a_guess_from_the_previous_life_in_the_finalizer() {
    let heap = Heap::new();
    heap.safepoint();
    let log = Log::new();
    let x = fin(&heap, 1, &log);
    let (lend_tx, lend_rx) = mpsc::channel::<Gc<Fin>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (queued_tx, queued_rx) = mpsc::channel::<()>();
    set_fin(&x, move |this| {
        lend_tx.send(this.clone()).unwrap();
        done_rx.recv().unwrap();
    });
    let a = x.clone();
    let seen = thread::scope(|s| {
        let heap = &heap;
        let log2 = log.clone();
        let w = s.spawn(move || {
            heap.safepoint();
            let mut seen = Vec::new();
            let c = a.clone();
            drop(c); // remembers (1, INIT)
            drop(a); // shared 0: queued to main
            queued_tx.send(()).unwrap();
            // In the finalizer: a handle counted in the owner's `local`.
            let g = lend_rx.recv().unwrap();
            seen.push((log2.fin(), 1));
            let c = g.clone(); // (1, INIT)
            drop(c); // the old guess, right
            let (c1, c2) = (g.clone(), g.clone());
            drop(c1); // guess 1, word 2
            drop(c2); // guess 2, word 1
            seen.push((log2.drops(), 0));
            drop(g); // shared 0: queued to main (the finalizer's thread)
            done_tx.send(()).unwrap();
            seen
        });
        // The worker's queueing drop of `a` has returned (its queue entry pushed): a
        // safepoint before that could miss the entry, leaving `x` owned and its death to
        // a later safepoint (the test's first version hung there, under load).
        queued_rx.recv().unwrap();
        assert_eq!(Gc::strong_count(&x), 1);
        heap.safepoint(); // merges a's queue entry: x merged, count 1
        drop(x); // the death: the finalizer lends a handle and waits
        heap.safepoint(); // drains the finalizer's queued object: dead
        w.join().unwrap()
    });
    for (i, (got, want)) in seen.into_iter().enumerate() {
        assert_eq!(got, want, "step {i}");
    }
    heap.safepoint();
    assert_eq!(log.fin(), 1);
    assert_eq!(log.drops(), 1);
    assert_eq!(heap.live_objects(), 0);
}

/// The owner's merge at a local zero races a worker's guessed compare-and-swaps: the owner
/// drops its own handle and one the worker cloned (counted in the shared word) while the
/// worker clones and drops its handle (counted by the owner). Each round's object dies once.
#[test]
fn owner_merge_races_guessed_drops() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let rounds = reps(2_000, 12);
    let (to_worker, from_main) = mpsc::channel::<(Gc<Dropped>, usize)>();
    let (to_main, from_worker) = mpsc::channel::<Option<Gc<Dropped>>>();
    thread::scope(|s| {
        let heap = &heap;
        s.spawn(move || {
            heap.safepoint();
            while let Ok((a, k)) = from_main.recv() {
                let b = a.clone(); // shared
                to_main.send(Some(b)).unwrap();
                for _ in 0..k {
                    let c = a.clone();
                    drop(c);
                }
                drop(a);
                to_main.send(None).unwrap();
            }
        });
        for r in 0..rounds {
            let x = dropped(heap, &drops);
            to_worker.send((x.clone(), r % 7)).unwrap();
            let b = from_worker.recv().unwrap().unwrap();
            if r % 3 == 0 {
                thread::yield_now();
            }
            drop(x);
            drop(b); // the owner's local zero: merge (or death)
            assert!(from_worker.recv().unwrap().is_none());
            heap.safepoint();
            assert_eq!(drops.load(SeqCst), r + 1, "round {r}");
        }
        drop(to_worker);
    });
    assert_eq!(heap.live_objects(), 0);
}

/// A node of a cycle holding a handle to the shared object.
#[derive(Trace)]
struct Node {
    next: Mutex<Option<Gc<Node>>>,
    x: Gc<Dropped>,
}

/// Collections (snapshot tags on `owner`, merges of orphans, the reclaim's drops) run on one
/// worker while another clones and drops an object the main thread owns; the collecting
/// worker's own cycles hold handles to that object, which its reclaim drops (foreign drops on
/// the collecting thread, with its guesses). The counts add up and the object dies once.
#[test]
fn guessed_drops_across_collections() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let x = dropped(&heap, &drops);
    let rounds = reps(300, 3);
    let (a, b) = (x.clone(), x.clone());
    let go = Barrier::new(2);
    heap.detached(|| {
        thread::scope(|s| {
            let (heap, go) = (&heap, &go);
            s.spawn(move || {
                heap.safepoint();
                go.wait();
                for i in 0..rounds * 8 {
                    let c = a.clone();
                    let d = a.clone();
                    drop(c);
                    if i % 5 == 0 {
                        heap.safepoint();
                    }
                    drop(d);
                }
                drop(a);
            });
            s.spawn(move || {
                heap.safepoint();
                go.wait();
                for _ in 0..rounds {
                    let n1 = heap.alloc(Node {
                        next: Mutex::new(None),
                        x: b.clone(),
                    });
                    let n2 = heap.alloc(Node {
                        next: Mutex::new(Some(n1.clone())),
                        x: b.clone(),
                    });
                    *n1.next.lock().unwrap() = Some(n2);
                    let c = b.clone();
                    drop(n1);
                    drop(c);
                    heap.collect();
                }
                drop(b);
            });
        });
    });
    heap.collect();
    heap.safepoint();
    assert_eq!(Gc::strong_count(&x), 1);
    assert_eq!(drops.load(SeqCst), 0);
    drop(x);
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(heap.live_objects(), 0);
}

/// The owner frees the object right after a foreign drop's fast compare-and-swap, before
/// `dec_ref_foreign` remembers the word: the worker drops its handle (counted by the owner)
/// at a shared count of 1 (the handle it gave the owner), `(1, INIT) -> 0`, `AliveFrom`; the
/// owner then drops its last two handles: its local count reaches 0 on a zero word, and it
/// frees the block at once (its slab writes the free-list link into it). `remember_word(h, …)`
/// then reborrows the `&SharedHeader` of freed memory: Miri reports a data race between
/// that retag and the slab's write (heap.rs `thread::remember_word(h, word)`).
#[test]
fn owner_frees_right_after_a_foreign_fast_drop() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let rounds = reps(1_000, 30);
    let go = Barrier::new(2);
    thread::scope(|s| {
        let (heap, go) = (&heap, &go);
        let (to_worker, from_main) = mpsc::channel::<Gc<Dropped>>();
        let (to_main, from_worker) = mpsc::channel::<Gc<Dropped>>();
        s.spawn(move || {
            heap.safepoint();
            while let Ok(a) = from_main.recv() {
                let b = a.clone(); // shared (1, INIT)
                to_main.send(b).unwrap();
                go.wait();
                drop(a); // the fast path's CAS (1, INIT) -> 0, or the merged fetch_sub
                go.wait();
            }
        });
        for r in 0..rounds {
            let x = dropped(heap, &drops);
            to_worker.send(x.clone()).unwrap();
            let b = from_worker.recv().unwrap();
            drop(x); // local 1
            go.wait();
            drop(b); // local 0: dead at once on a zero word, or merged
            go.wait();
            assert_eq!(drops.load(SeqCst), r + 1, "round {r}");
        }
        drop(to_worker);
    });
    assert_eq!(heap.live_objects(), 0);
}
