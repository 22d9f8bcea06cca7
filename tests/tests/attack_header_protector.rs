//! The two last drops of one object, by its owner and by another thread, at once. The owner's
//! merge publishes the count the other thread holds, and that thread's decrement can take it to
//! zero and free the object before the owner's merging function has returned; the other way
//! round, too. Rust forbids freeing memory that a reference *argument* still covers (a
//! "protector" in Stacked and Tree Borrows) unless the bytes are inside an `UnsafeCell`, as
//! std's `Arc` relies on for its counts. So the header has no frozen bytes: its two fields
//! written only at allocation, `heap` and `in_slab`, are cells too (`object::shared::Fixed`).
//!
//! These rounds race the two drops at 64 offsets, on objects in a slab and on objects from the
//! global allocator (whose free is a real deallocation), with and without a weak reference and
//! a racing upgrade; each asserts one death per object and an empty heap. Under Miri the window
//! is narrow (the free runs many steps after the merge returns), and these rounds did not land
//! in it with the old header, at preemption rates up to 1.0; a two-thread program of the same
//! shape, which waits inside the window, is reported by Miri under both models with a frozen
//! field and passes with the field in a cell (docs/ARCHITECTURE.md, "No frozen byte in a
//! shared header").
//!
//! Natively: `cargo test -p reap-tests --test attack_header_protector`.
//! Miri: `MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p reap-tests --test attack_header_protector`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use reap::sync::{Gc, Heap, Weak};
use reap::Trace;

/// A value whose drop is counted, padded to `N` bytes (past the slab's largest class when `N`
/// is large, so that its free is a deallocation).
#[derive(Trace)]
struct Padded<const N: usize> {
    #[reap(skip)]
    drops: Arc<AtomicUsize>,
    #[reap(skip)]
    _pad: [u8; N],
}

impl<const N: usize> Drop for Padded<N> {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

/// A delay of `round % 64` steps, so that the rounds try the two drops at many offsets.
fn spin(round: usize) {
    for i in 0..round % 64 {
        std::hint::black_box(i);
    }
}

const ROUNDS: usize = if cfg!(miri) { 128 } else { 2_000 };

/// The owner's last drop (a merge publishing the foreign thread's count) against the foreign
/// thread's last drop (a decrement of the merged count to zero, which frees), `rounds` times
/// with `N`-byte values: whichever comes second frees, and the object dies once. With `weak`,
/// the object has a weak reference (the last drops go through the weak lock and its clearing)
/// and a third thread upgrades it at the same moment.
fn race_last_drops<const N: usize>(rounds: usize, weak: bool) {
    let heap = Heap::new();
    heap.safepoint();
    let drops = Arc::new(AtomicUsize::new(0));
    for round in 0..rounds {
        let obj: Gc<Padded<N>> = heap.alloc(Padded {
            drops: drops.clone(),
            _pad: [0; N],
        });
        let w = weak.then(|| Weak::new(&obj));
        let parties = if weak { 3 } else { 2 };
        let (obj, barrier) = (Mutex::new(Some(obj)), Barrier::new(parties));
        thread::scope(|s| {
            let (obj_ref, barrier, w) = (&obj, &barrier, &w);
            let t = s.spawn(move || {
                // A foreign clone: counted in the shared word.
                let mine = obj_ref.lock().unwrap().as_ref().unwrap().clone();
                barrier.wait();
                barrier.wait();
                spin(round);
                drop(mine);
            });
            let u = w.as_ref().map(|w| {
                s.spawn(move || {
                    barrier.wait();
                    barrier.wait();
                    // Alive or gone, never freed memory.
                    let _ = w.upgrade();
                })
            });
            barrier.wait();
            // The foreign clone exists; now the last drops go at once.
            let mine = obj.lock().unwrap().take();
            barrier.wait();
            drop(mine);
            t.join().unwrap();
            if let Some(u) = u {
                u.join().unwrap();
            }
        });
        heap.safepoint();
        assert_eq!(drops.load(SeqCst), round + 1, "round {round}");
        if let Some(w) = &w {
            assert!(w.upgrade().is_none(), "round {round}");
        }
    }
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn owner_and_foreign_last_drops_in_a_slab() {
    race_last_drops::<8>(ROUNDS, false);
}

#[test]
fn owner_and_foreign_last_drops_deallocated() {
    race_last_drops::<2048>(ROUNDS, false);
}

#[test]
fn last_drops_with_a_weak_reference_and_an_upgrade() {
    race_last_drops::<2048>(ROUNDS / 2, true);
}
