//! loom models of the death's ordering (issue 12, models 16 and 17): the value of the object
//! sits in a loom `UnsafeCell`, read by each thread before it drops its handle and written by
//! the value's `Drop`, so loom checks that every read happens before the drop, whichever
//! thread's decrement runs the death (the `Release` decrement and the death path's acquire
//! load of `counts`, or the owner's `Acquire` load, must order them).
//! `RUSTFLAGS="--cfg reap_loom" cargo test -p reap --release --test loom_death_order -- --nocapture`
#![cfg(reap_loom)]

mod common;

use common::model;
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;
use reap::sync::{Gc, Heap};
use reap::Trace;

/// A loom cell shared by the object's readers.
struct Cell(UnsafeCell<u32>);

// SAFETY: the models only read the cell while holding a handle and write it in `Drop`; loom
// checks that those accesses are ordered.
unsafe impl Sync for Cell {}

#[derive(Trace)]
struct Val {
    #[reap(skip)]
    cell: Cell,
    #[reap(skip)]
    drops: Arc<AtomicUsize>,
}

impl Val {
    fn read(&self) -> u32 {
        // SAFETY: a shared read, checked by loom against the write in `Drop`.
        self.cell.0.with(|p| unsafe { *p })
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        self.cell.0.with_mut(|p| {
            // SAFETY: checked by loom against every read.
            unsafe {
                assert_eq!(*p, 7, "dropped twice");
                *p = 0;
            }
        });
        self.drops.fetch_add(1, SeqCst);
    }
}

fn val(heap: &Heap, drops: &Arc<AtomicUsize>) -> Gc<Val> {
    heap.alloc(Val {
        cell: Cell(UnsafeCell::new(7)),
        drops: drops.clone(),
    })
}

/// Model 16: a merged object's last two handles, each read and then dropped on its thread (the main
/// thread, no longer the owner, and an attached one): both drops are `fetch_sub(Release)`,
/// and the death (on either thread) must see the other thread's read.
#[test]
fn merged_last_drops_after_reads() {
    model("merged_last_drops_after_reads", || {
        let heap = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let obj = val(&heap, &drops);
        let (c, d) = heap.detached(|| (obj.clone(), obj.clone()));
        drop(obj);
        assert_eq!(Gc::strong_count(&c), 2);
        let h = heap.clone();
        let t = thread::spawn(move || {
            h.safepoint();
            assert_eq!(c.read(), 7);
            drop(c);
        });
        assert_eq!(d.read(), 7);
        drop(d);
        t.join().unwrap();
        assert_eq!(drops.load(SeqCst), 1);
    });
}

/// Model 17: an unmerged object: the owner's handle (local) and an attached foreign thread's (shared
/// count 1), each read and then dropped. The foreign drop is the one-CAS path (`Release`),
/// or, if the owner merged first, a merged `fetch_sub`; the owner's drop is the fast death
/// (its `Acquire` load of a zero shared word) or the merge. Whoever runs the death must see
/// the other's read.
#[test]
fn foreign_one_cas_drop_against_owner_last_drop_after_reads() {
    model(
        "foreign_one_cas_drop_against_owner_last_drop_after_reads",
        || {
            let heap = Heap::new();
            let drops = Arc::new(AtomicUsize::new(0));
            let obj = val(&heap, &drops);
            let c = heap.detached(|| obj.clone());
            let h = heap.clone();
            let t = thread::spawn(move || {
                h.safepoint();
                assert_eq!(c.read(), 7);
                drop(c);
            });
            assert_eq!(obj.read(), 7);
            drop(obj);
            t.join().unwrap();
            assert_eq!(drops.load(SeqCst), 1);
        },
    );
}
