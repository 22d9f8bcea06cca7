//! Adversarial tests of the foreign drop's guessed word (issue 12, twenty-second session): a
//! thread's drop of an object another thread owns tries its compare-and-swap from the shared
//! word it found at its last decrement of that object (`count::dec_shared_fast`, remembered
//! per thread by `thread::remember_word`), not from a load. A guess can be stale in every way
//! there is: another thread changed the count since, the object was queued since, or the
//! address now holds another object with another word. Each test steps threads through such a
//! sequence and asserts the counts after each step, which drop ran the death, and that the
//! heap empties: a wrong guess must cost a retry, never a lost or doubled decrement.
//!
//! Natively: `cargo test -p reap-tests --test attack_word_guess`.
//! Miri: `MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p reap-tests --test attack_word_guess`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;

use reap::sync::{Gc, Heap, Weak};
use reap_tests::shared::{dropped, Dropped};

/// Allocates until an object lands at `addr` (the block of an object just freed), keeping the
/// misses alive meanwhile so that each try gets a new block; `None` after 64 tries (the slab
/// hands the block to another thread's cache, say): the caller then tests a fresh address.
fn alloc_at(heap: &Heap, drops: &Arc<AtomicUsize>, addr: usize) -> Option<Gc<Dropped>> {
    let mut misses = Vec::new();
    for _ in 0..64 {
        let g = dropped(heap, drops);
        if Gc::as_ptr(&g) as usize == addr {
            return Some(g);
        }
        misses.push(g);
    }
    None
}

/// The worker's remembered word is for an object that died; the block is handed out again,
/// and the worker drops handles to the new object: first with a guess that happens to be the
/// word (a shared count of one, unqueued), then with one that is not (the shared count is 0:
/// the reference was counted by the owner, and the drop must queue it, not take the count to
/// -1).
#[test]
fn a_stale_guess_for_another_object_at_the_same_address() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let x = dropped(&heap, &drops);
    let addr = Gc::as_ptr(&x) as usize;
    thread::scope(|s| {
        let heap = &heap;
        // Made in the scope, so that a failed assertion here drops the sender and the worker
        // stops waiting.
        let (to_worker, from_main) = mpsc::channel::<Gc<Dropped>>();
        let (to_main, from_worker) = mpsc::channel::<()>();
        s.spawn(move || {
            heap.safepoint();
            let a = from_main.recv().unwrap();
            // A clone of its own and its drop: the worker remembers a shared count of one.
            let c = a.clone();
            assert_eq!(Gc::strong_count(&a), 3);
            drop(c);
            assert_eq!(Gc::strong_count(&a), 2);
            // The owner's reference: the shared count is 0, the guess says 1.
            drop(a);
            to_main.send(()).unwrap();
            // The object now at the old address (or another one).
            let b = from_main.recv().unwrap();
            let c = b.clone();
            drop(c);
            assert_eq!(Gc::strong_count(&b), 2);
            drop(b);
            to_main.send(()).unwrap();
        });
        to_worker.send(x.clone()).unwrap();
        from_worker.recv().unwrap();
        // The worker's drop queued the reference to this thread: merged here.
        heap.safepoint();
        assert_eq!(Gc::strong_count(&x), 1);
        assert_eq!(drops.load(SeqCst), 0);
        drop(x);
        assert_eq!(drops.load(SeqCst), 1, "the owner's drop was the last");
        let y = alloc_at(heap, &drops, addr).unwrap_or_else(|| dropped(heap, &drops));
        let before = drops.load(SeqCst);
        to_worker.send(y.clone()).unwrap();
        from_worker.recv().unwrap();
        heap.safepoint();
        assert_eq!(Gc::strong_count(&y), 1);
        assert_eq!(
            drops.load(SeqCst),
            before,
            "the worker's drops were not the last"
        );
        drop(y);
        assert_eq!(drops.load(SeqCst), before + 1);
    });
    assert_eq!(heap.live_objects(), 0);
}

/// The same address, now with a weak reference made to the new object (its word's state
/// differs from the one the worker remembers): every guess fails, and the retries count right.
#[test]
fn a_stale_guess_with_another_state() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let x = dropped(&heap, &drops);
    let addr = Gc::as_ptr(&x) as usize;
    thread::scope(|s| {
        let heap = &heap;
        let (to_worker, from_main) = mpsc::channel::<Gc<Dropped>>();
        let (to_main, from_worker) = mpsc::channel::<()>();
        s.spawn(move || {
            heap.safepoint();
            for _ in 0..2 {
                let a = from_main.recv().unwrap();
                let extra: Vec<_> = (0..3).map(|_| a.clone()).collect();
                drop(extra);
                drop(a);
                to_main.send(()).unwrap();
            }
        });
        to_worker.send(x.clone()).unwrap();
        from_worker.recv().unwrap();
        heap.safepoint();
        drop(x);
        assert_eq!(drops.load(SeqCst), 1);
        let y = alloc_at(heap, &drops, addr).unwrap_or_else(|| dropped(heap, &drops));
        let w = Weak::new(&y);
        let before = drops.load(SeqCst);
        to_worker.send(y.clone()).unwrap();
        from_worker.recv().unwrap();
        heap.safepoint();
        assert_eq!(Gc::strong_count(&y), 1);
        assert!(w.upgrade().is_some());
        drop(y);
        assert_eq!(drops.load(SeqCst), before + 1);
        assert!(w.upgrade().is_none());
    });
    assert_eq!(heap.live_objects(), 0);
}

/// Two workers share an object the main thread owns. The first remembers a shared count of
/// one; the second then holds a clone (the count is 2 when the first drops its next clone),
/// then drops everything (the count reaches 0 and the object is queued): each of the first's
/// guesses is wrong, and its decrements still land exactly once.
#[test]
fn a_guess_another_thread_made_stale() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let x = dropped(&heap, &drops);
    let step = Barrier::new(3);
    // Asserted after the threads are joined: a failed assertion in a thread would leave the
    // others waiting at the barrier.
    let count_after_retry = thread::scope(|s| {
        let (heap, step) = (&heap, &step);
        let a1 = x.clone();
        let a2 = x.clone();
        let first = s.spawn(move || {
            heap.safepoint();
            let c = a1.clone();
            drop(c); // remembers a shared count of 1; the count is 0
            step.wait(); // 1
            step.wait(); // 2: the other worker holds a clone
            let c = a1.clone(); // shared 2
            drop(c); // guess 1, word 2: retried
            let count = Gc::strong_count(&a1);
            step.wait(); // 3
            step.wait(); // 4: the other worker dropped everything (queued)
            drop(a1); // guess 2, word 0 queued: the slow path
            step.wait(); // 5
            count
        });
        s.spawn(move || {
            heap.safepoint();
            step.wait(); // 1
            let d = a2.clone();
            step.wait(); // 2
            step.wait(); // 3
            drop(d);
            drop(a2); // shared 0, unqueued: queued to the owner
            step.wait(); // 4
            step.wait(); // 5
        });
        for _ in 0..5 {
            step.wait();
        }
        first.join().unwrap()
    });
    assert_eq!(
        count_after_retry, 4,
        "x, a1, a2 and the second worker's clone"
    );
    heap.safepoint();
    assert_eq!(Gc::strong_count(&x), 1);
    assert_eq!(drops.load(SeqCst), 0);
    drop(x);
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(heap.live_objects(), 0);
}

/// The owner exits: its objects stay unmerged until a collection. Two workers clone and drop
/// one of them in turn, each drop's guess made wrong by the other's; the last drop is the
/// death, exactly once, after the collection merged the object midway.
#[test]
fn guesses_across_an_orphan_merge() {
    let heap = Heap::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let o = {
        let (heap, drops) = (heap.clone(), drops.clone());
        thread::spawn(move || dropped(&heap, &drops))
            .join()
            .unwrap()
    };
    let step = Barrier::new(2);
    thread::scope(|s| {
        let (heap, step) = (&heap, &step);
        let o2 = o.clone();
        s.spawn(move || {
            heap.safepoint();
            for round in 0..20 {
                step.wait();
                let c = o2.clone();
                drop(c);
                if round == 10 {
                    // A collection merges the exited owner's object: from here the drops
                    // are the merged `fetch_sub`, whatever this thread remembers.
                    heap.collect();
                }
                step.wait();
            }
            drop(o2);
        });
        heap.safepoint();
        let mut mine = Vec::new();
        for _ in 0..20 {
            // Detached while it waits: the worker's collection stops the world meanwhile.
            heap.detached(|| step.wait());
            heap.detached(|| step.wait());
            mine.push(o.clone());
            if mine.len() == 3 {
                mine.clear();
            }
        }
        drop(mine);
    });
    assert_eq!(Gc::strong_count(&o), 1);
    assert_eq!(drops.load(SeqCst), 0);
    drop(o);
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(heap.live_objects(), 0);
}

/// Random clone/drop/send among four attached threads on a pool of objects the main thread
/// owns (unmerged, so every worker's drop takes the guessed compare-and-swap or the queue):
/// every object dies once, after its last handle, and the heap empties.
#[test]
fn random_foreign_churn_with_guesses() {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    let objects = if cfg!(miri) { 4 } else { 32 };
    let rounds = if cfg!(miri) { 60 } else { 5_000 };
    let pool: Vec<Gc<Dropped>> = (0..objects).map(|_| dropped(&heap, &drops)).collect();
    thread::scope(|s| {
        for t in 0..4_u64 {
            let (heap, mine) = (&heap, pool.clone());
            s.spawn(move || {
                heap.safepoint();
                let mut held: Vec<Gc<Dropped>> = Vec::new();
                let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ t;
                for _ in 0..rounds {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let i = (seed as usize >> 8) % mine.len();
                    match seed % 4 {
                        0 | 1 => held.push(mine[i].clone()),
                        2 if !held.is_empty() => {
                            let j = (seed as usize >> 20) % held.len();
                            drop(held.swap_remove(j));
                        }
                        _ => heap.safepoint(),
                    }
                    if held.len() > 16 {
                        held.truncate(4);
                    }
                }
            });
        }
    });
    heap.safepoint();
    assert_eq!(drops.load(SeqCst), 0, "the pool still holds every object");
    for g in &pool {
        assert_eq!(Gc::strong_count(g), 1);
    }
    drop(pool);
    assert_eq!(drops.load(SeqCst), objects);
    assert_eq!(heap.live_objects(), 0);
}
