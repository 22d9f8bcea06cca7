//! Adversarial tests of the tagged `owner` field of a Shared-mode snapshot (written by the
//! twenty-first session's review, which found the first two failing): while the world is stopped each candidate's
//! `owner` holds `CANDIDATE_TAG | index`, and the collecting thread's drops of references to
//! candidates are held back. These tests attack the claims that no candidate's count changes
//! and no candidate dies while it is tagged, that every tag is put back, and that every
//! held-back reference is dropped once.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use reap::sync::{Finalize, Gc, Heap, Weak};
use reap::{Trace, Tracer};
use reap_tests::shared::{hooked, no_reports, within};

/// What a [`Node`]'s trace does besides visiting its link, once armed.
#[derive(Default)]
enum Act {
    /// Visits its link (the contract).
    #[default]
    Visit,
    /// Drops its link instead of visiting it.
    DropLink,
    /// Calls `Heap::safepoint`, then allocates a node into the shelf.
    SafepointAlloc,
    /// Drops its link, then panics.
    DropLinkPanic,
    /// Clones its link, visits it, makes a weak reference to the clone, upgrades it, and drops
    /// the clone, the upgrade and the weak reference.
    CloneWeakDrop,
}

/// What a test's nodes share.
#[derive(Default)]
struct Shared {
    /// Node values dropped.
    drops: AtomicUsize,
    /// Node values dropped so far, as an armed trace saw it after its act (while the world
    /// is stopped): any drop counted there is a death during the snapshot.
    seen_in_trace: Mutex<Option<usize>>,
    /// Nodes allocated by traces.
    shelf: Mutex<Vec<Gc<Node>>>,
}

impl Shared {
    /// Records the drops so far (an armed trace, after its act).
    fn saw(&self) {
        *self.seen_in_trace.lock().unwrap() = Some(self.drops.load(SeqCst));
    }

    /// Asserts that an armed trace ran and that nothing had died when it had acted.
    fn nothing_died_in_the_snapshot(&self) {
        assert_eq!(
            *self.seen_in_trace.lock().unwrap(),
            Some(0),
            "an object died while the world was stopped (or the armed trace did not run)"
        );
    }
}

struct Node {
    next: Mutex<Option<Gc<Node>>>,
    act: Mutex<Act>,
    heap: Heap,
    s: Arc<Shared>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.s.drops.fetch_add(1, SeqCst);
    }
}

// SAFETY: visits its one handle, except once armed (`Act`), when it breaks the contract on
// purpose.
unsafe impl Trace for Node {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        let act = std::mem::take(&mut *self.act.lock().unwrap());
        match act {
            Act::Visit => self.next.trace(tracer),
            Act::DropLink => {
                drop(self.next.lock().unwrap().take());
                self.s.saw();
            }
            Act::SafepointAlloc => {
                self.next.trace(tracer);
                self.heap.safepoint();
                let fresh = node(&self.heap, &self.s);
                self.s.shelf.lock().unwrap().push(fresh);
                self.s.saw();
            }
            Act::DropLinkPanic => {
                drop(self.next.lock().unwrap().take());
                self.s.saw();
                panic!("a trace that dropped a handle panics");
            }
            Act::CloneWeakDrop => {
                let link = self.next.lock().unwrap().clone();
                self.next.trace(tracer);
                if let Some(l) = link {
                    let _ = Gc::strong_count(&l);
                    let w = Weak::new(&l);
                    let up = w.upgrade();
                    assert!(up.is_some(), "a candidate is alive");
                    drop(up);
                    drop(w);
                    drop(l);
                }
                self.s.saw();
            }
        }
    }
}

fn node(heap: &Heap, s: &Arc<Shared>) -> Gc<Node> {
    heap.alloc(Node {
        next: Mutex::new(None),
        act: Mutex::new(Act::Visit),
        heap: heap.clone(),
        s: s.clone(),
    })
}

/// Marks `g`'s object a possible root (a drop of a clone).
fn mark(g: &Gc<Node>) {
    drop(g.clone());
}

fn arm(g: &Gc<Node>, act: Act) {
    *g.act.lock().unwrap() = act;
}

/// The collecting thread is attached to a second heap, so its collection runs detached from
/// it (`thread::OthersDetached`), with the id `NO_OWNER` in its thread-local cache. A `Trace`
/// (against its contract) drops the only handle to `y`, an object this thread owns and no
/// candidate yet: the decrement, a foreign one under `NO_OWNER`, queues `y` to this very
/// thread. `y`, a possible root later in the same chunk, then becomes a candidate (tagged).
/// A later `Trace` reaches a safe point (`Heap::safepoint`, or any allocation with something
/// pending): the drain merges `y`, which overwrites its tag with 0 and takes its count to zero
/// while it is a candidate: `y` dies, its block is freed and handed out again to the node the
/// trace allocates, and the snapshot's restore writes `y`'s old owner into that new,
/// merged object.
#[test]
fn a_self_queued_object_drained_mid_snapshot_dies_as_a_candidate() {
    within("self-queued drain", || {
        let heap = Heap::new();
        heap.disable();
        let reports = hooked(&heap);
        // A second heap this thread is attached to.
        let other = Heap::new();
        let _attached = other.alloc(0_u8);
        let s = Arc::new(Shared::default());
        // One chunk, in this order: x (drops its link to y), y, w (a safe point).
        let x = node(&heap, &s);
        let y = node(&heap, &s);
        let w = node(&heap, &s);
        *x.next.lock().unwrap() = Some(y.clone());
        // Clears every mark.
        assert_eq!(heap.collect(), 0);
        mark(&x);
        mark(&w);
        let y_at = Gc::as_ptr(&y) as usize;
        // y's only handle is x's link; y is a possible root.
        drop(y);
        arm(&x, Act::DropLink);
        arm(&w, Act::SafepointAlloc);
        assert_eq!(heap.collect(), 0);
        let died = *s.seen_in_trace.lock().unwrap();
        // The node the trace allocated (in y's block, if y died and its block was reused):
        // merged (allocated under `NO_OWNER`), its `owner` must be 0 (checked by debug builds
        // on this load).
        let fresh = s.shelf.lock().unwrap().pop().unwrap();
        let reused = Gc::as_ptr(&fresh) as usize == y_at;
        let sound =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Gc::strong_count(&fresh)))
                .is_ok();
        if died != Some(0) || !sound {
            // Not dropped: a drop of a stale-owner object would panic while unwinding.
            std::mem::forget(fresh);
            std::mem::forget((x, w, heap));
            panic!(
                "a candidate died while the world was stopped (drops seen in the trace: \
                 {died:?}); the trace's new node took its block: {reused}; its owner sound \
                 after the restore: {sound}"
            );
        }
        drop(fresh);
        drop((x, w));
        assert_eq!(heap.collect(), 0);
        assert_eq!(s.drops.load(SeqCst), 4, "each node dropped once");
        assert_eq!(heap.live_objects(), 0);
        no_reports(&reports);
    });
}

/// As above, with `y` held from outside as well (so it does not die): the drain merges it
/// mid-snapshot (its tag overwritten with 0), and the restore then writes this thread's id
/// back into a merged object's `owner`. This thread's next drop of `y` takes the owner's path
/// on a `local` count of 0.
#[test]
fn a_self_queued_object_drained_mid_snapshot_gets_a_stale_owner_back() {
    within("self-queued drain, held", || {
        let heap = Heap::new();
        heap.disable();
        let reports = hooked(&heap);
        let other = Heap::new();
        let _attached = other.alloc(0_u8);
        let s = Arc::new(Shared::default());
        let x = node(&heap, &s);
        let y = node(&heap, &s);
        let w = node(&heap, &s);
        *x.next.lock().unwrap() = Some(y.clone());
        // An outside handle (this thread's, counted in `local` with x's link).
        let keep = y.clone();
        assert_eq!(heap.collect(), 0);
        mark(&x);
        mark(&w);
        drop(y);
        arm(&x, Act::DropLink);
        arm(&w, Act::SafepointAlloc);
        assert_eq!(heap.collect(), 0);
        s.nothing_died_in_the_snapshot();
        // A merged object must have `owner` 0 (checked by debug builds on this load); this
        // thread's drop of a merged object whose `owner` names it would take the owner's path
        // on a `local` of 0 (a subtraction overflow in debug builds, a leak in release ones).
        let sound =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Gc::strong_count(&keep)));
        if sound.is_err() {
            // Not dropped: its drop would panic inside the unwinding and abort the run.
            std::mem::forget(keep);
            std::mem::forget(s.shelf.lock().unwrap().drain(..).collect::<Vec<_>>());
            std::mem::forget((x, w, heap));
            panic!("the snapshot put back a stale owner into a merged object");
        }
        drop(keep);
        s.shelf.lock().unwrap().clear();
        drop((x, w));
        assert_eq!(heap.collect(), 0);
        assert_eq!(s.drops.load(SeqCst), 4, "each node dropped once");
        assert_eq!(heap.live_objects(), 0);
        no_reports(&reports);
    });
}

/// A `Trace` drops the last handle to a candidate, then panics: the snapshot is abandoned, the
/// tags put back by the tracing's drop, and the held-back reference dropped once the world
/// runs again (both nodes then die, once each).
#[test]
fn a_trace_drops_a_candidate_then_panics() {
    within("drop then panic 2", || {
        let heap = Heap::new();
        heap.disable();
        let reports = hooked(&heap);
        let s = Arc::new(Shared::default());
        let a = node(&heap, &s);
        let b = node(&heap, &s);
        *a.next.lock().unwrap() = Some(b.clone());
        *b.next.lock().unwrap() = Some(a.clone());
        assert_eq!(heap.collect(), 0);
        arm(&b, Act::DropLinkPanic);
        drop(b);
        drop(a);
        // a is the root (its drop marked it), traced first, finds b; b's trace drops the last
        // handle to a and panics.
        assert_eq!(heap.collect(), 0);
        s.nothing_died_in_the_snapshot();
        {
            let r = reports.lock().unwrap();
            assert_eq!(r.len(), 1, "{r:?}");
        }
        // The held-back drop freed a (and a's link freed b).
        assert_eq!(s.drops.load(SeqCst), 2, "each node dropped once");
        assert_eq!(heap.live_objects(), 0);
        // Another collection: no stale tag left behind.
        assert_eq!(heap.collect(), 0);
    });
}

/// A `Trace` clones a candidate, makes a weak reference to it, upgrades it, reads its count,
/// and drops the lot, on a thread that owns it and on one attached to two heaps (`NO_OWNER`
/// in the snapshot): no count of a candidate changes for good, nothing dies mid-snapshot,
/// every object dies once afterwards.
#[test]
fn a_trace_clones_weakens_upgrades_and_drops_a_candidate() {
    for two_heaps in [false, true] {
        within("clone weak drop", move || {
            let heap = Heap::new();
            heap.disable();
            let reports = hooked(&heap);
            let other = Heap::new();
            let _attached = two_heaps.then(|| other.alloc(0_u8));
            let s = Arc::new(Shared::default());
            let a = node(&heap, &s);
            let b = node(&heap, &s);
            *a.next.lock().unwrap() = Some(b.clone());
            *b.next.lock().unwrap() = Some(a.clone());
            assert_eq!(heap.collect(), 0);
            arm(&b, Act::CloneWeakDrop);
            drop(b);
            drop(a);
            // The ring is garbage: the trace's clones and drops must not change that.
            assert_eq!(heap.collect(), 2);
            s.nothing_died_in_the_snapshot();
            assert_eq!(s.drops.load(SeqCst), 2, "each node dropped once");
            assert_eq!(heap.live_objects(), 0);
            no_reports(&reports);
        });
    }
}

/// A `Trace` on a thread attached to two heaps drops the last handle to a candidate it owns:
/// the collection runs under `NO_OWNER`, the decrement sees the tag and holds the reference
/// back; after the restart it is dropped (`drop_held_back`) and the ring dies once.
#[test]
fn a_two_heap_collector_drops_a_candidate_it_owns() {
    within("two heaps held back", || {
        let heap = Heap::new();
        heap.disable();
        let reports = hooked(&heap);
        let other = Heap::new();
        let _attached = other.alloc(0_u8);
        let s = Arc::new(Shared::default());
        let a = node(&heap, &s);
        let b = node(&heap, &s);
        *a.next.lock().unwrap() = Some(b.clone());
        *b.next.lock().unwrap() = Some(a.clone());
        assert_eq!(heap.collect(), 0);
        drop(b);
        arm(&a, Act::Visit);
        // a is the root (held outside by `a`); b is found through it. b's trace drops the
        // link to a.
        let bb = a.next.lock().unwrap().clone().unwrap();
        arm(&bb, Act::DropLink);
        drop(bb);
        drop(a);
        assert_eq!(heap.collect(), 0);
        s.nothing_died_in_the_snapshot();
        assert_eq!(s.drops.load(SeqCst), 2, "each node dropped once");
        assert_eq!(heap.live_objects(), 0);
        no_reports(&reports);
    });
}

/// A garbage ring with a finalizer: in the resurrection check (pause 2, over the held garbage)
/// a node's trace drops its link to the other node, then panics. The check is abandoned: the
/// garbage is given back, the tags put back, and the held-back reference dropped once the
/// world runs again, after the holds: both nodes then die once each, finalized once.
#[test]
fn a_trace_drops_then_panics_in_the_resurrection_check() {
    #[derive(Default)]
    struct Seen {
        traces: AtomicUsize,
        finalized: AtomicUsize,
        dropped: AtomicUsize,
        seen_in_trace: Mutex<Option<usize>>,
    }
    struct Linked {
        next: Mutex<Option<Gc<Linked>>>,
        seen: Arc<Seen>,
    }
    impl Drop for Linked {
        fn drop(&mut self) {
            self.seen.dropped.fetch_add(1, SeqCst);
        }
    }
    impl Finalize for Linked {
        fn finalize(this: &Gc<Self>) {
            this.seen.finalized.fetch_add(1, SeqCst);
        }
    }
    // SAFETY: visits its handle in the first snapshot; in the second it breaks the contract.
    unsafe impl Trace for Linked {
        fn trace(&self, tracer: &mut Tracer<'_>) {
            if self.seen.traces.fetch_add(1, SeqCst) < 2 {
                self.next.trace(tracer);
            } else {
                drop(self.next.lock().unwrap().take());
                *self.seen.seen_in_trace.lock().unwrap() = Some(self.seen.dropped.load(SeqCst));
                panic!("a trace in the resurrection check");
            }
        }
        fn sync_finalizer() -> Option<fn(&Gc<Self>)> {
            Some(<Self as Finalize>::finalize)
        }
        fn wants_finalizer(&self) -> bool {
            true
        }
    }
    within("pause 2 panic", || {
        let heap = Heap::new();
        heap.disable();
        let reports = hooked(&heap);
        let seen = Arc::new(Seen::default());
        let node = || {
            heap.alloc(Linked {
                next: Mutex::new(None),
                seen: seen.clone(),
            })
        };
        let (a, b) = (node(), node());
        *a.next.lock().unwrap() = Some(b.clone());
        *b.next.lock().unwrap() = Some(a);
        drop(b);
        assert_eq!(
            heap.collect(),
            0,
            "the check was abandoned: nothing collected"
        );
        assert_eq!(*seen.seen_in_trace.lock().unwrap(), Some(0));
        assert_eq!(seen.finalized.load(SeqCst), 2);
        {
            let r = reports.lock().unwrap();
            assert_eq!(r.len(), 1, "{r:?}");
        }
        // One link is left (a -> b, or b -> a): the survivors are a ring no more, freed by
        // the held-back drop and the holds' give-back, or by the next collection.
        assert_eq!(heap.collect(), 0);
        assert_eq!(seen.dropped.load(SeqCst), 2, "each dropped once");
        assert_eq!(heap.live_objects(), 0);
    });
}
