//! Adversarial tests of the references the collecting thread drops to candidates while a
//! Shared-mode snapshot runs (twenty-first session). The snapshot keeps its scratch in each
//! candidate's `owner` field, so such a drop must change no candidate's count: here a `Trace`
//! drops, against its contract, the last handle to another candidate, owned by this thread, by
//! no thread (merged), or by a thread waiting in a detached section; and garbage drops links
//! in the resurrection check. Without the hold-back the candidate would die, and its death free
//! the node whose trace is running. The dropped references are held back until the world runs
//! again; each test checks that nothing died while it was stopped, that every object is freed
//! once, and that the heap empties.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use reap::sync::{Finalize, Gc, Heap};
use reap::{Trace, Tracer};
use reap_tests::shared::{hooked, no_reports, within};

/// A ring node whose trace, once armed, drops its link instead of visiting it (against the
/// `Trace` contract), and records how many nodes had been dropped just after.
struct Node {
    next: Mutex<Option<Gc<Node>>>,
    s: Arc<Shared>,
}

/// What a test's nodes share.
#[derive(Default)]
struct Shared {
    /// Counts traces down: the one that takes it from 1 to 0 drops its link.
    armed: Mutex<usize>,
    /// The node drops counted when the armed trace had dropped its link.
    seen_in_trace: Mutex<Option<usize>>,
    drops: AtomicUsize,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.s.drops.fetch_add(1, SeqCst);
    }
}

// SAFETY: visits the one handle it holds (through its lock), except once armed: then it drops
// it instead, breaking the contract on purpose.
unsafe impl Trace for Node {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        let fire = {
            let mut armed = self.s.armed.lock().unwrap();
            let fire = *armed == 1;
            *armed = armed.saturating_sub(1);
            fire
        };
        if fire {
            drop(self.next.lock().unwrap().take());
            *self.s.seen_in_trace.lock().unwrap() = Some(self.s.drops.load(SeqCst));
        } else {
            self.next.trace(tracer);
        }
    }
}

/// A ring `a` ⇄ `b` on `heap`; returns `a` (the handle to `b` dropped: `b` is a possible root).
fn ring(heap: &Heap, s: &Arc<Shared>) -> Gc<Node> {
    let node = || {
        heap.alloc(Node {
            next: Mutex::new(None),
            s: s.clone(),
        })
    };
    let (a, b) = (node(), node());
    *a.next.lock().unwrap() = Some(b.clone());
    *b.next.lock().unwrap() = Some(a.clone());
    a
}

/// The collection that matters, once the ring's only outside handle (to `a`) is gone and `a`
/// alone is a possible root: `a` is traced first, which finds `b`, a candidate before its own
/// trace (the second of the collection, armed) drops the last reference to `a`, a candidate
/// too. That drop is held back:
/// `a` keeps its count, so the collection finds nothing, and the held-back drop, once the world
/// runs again, frees `a`, then `b`. Nothing dies while the world is stopped.
fn armed_collection(heap: &Heap, s: &Shared) {
    *s.armed.lock().unwrap() = 2;
    assert_eq!(heap.collect(), 0, "the held-back reference keeps the ring");
    assert_eq!(*s.armed.lock().unwrap(), 0, "the armed trace ran");
    assert_eq!(
        *s.seen_in_trace.lock().unwrap(),
        Some(0),
        "nothing died in the trace"
    );
}

/// The ring's nodes are this thread's: the held-back drop is the owner's last, after the
/// collection; each node is freed once.
#[test]
fn a_trace_drops_the_last_handle_to_a_candidate_this_thread_owns() {
    within("owned", || {
        let heap = Heap::new();
        heap.disable();
        let reports = hooked(&heap);
        let s = Arc::new(Shared::default());
        let a = ring(&heap, &s);
        // Clears `b`'s mark (the ring is reachable from `a`).
        assert_eq!(heap.collect(), 0);
        drop(a);
        armed_collection(&heap, &s);
        assert_eq!(s.drops.load(SeqCst), 2, "each node freed once");
        assert_eq!(heap.live_objects(), 0);
        no_reports(&reports);
    });
}

/// The ring's nodes were made by a thread that exited, and a first collection merged them
/// (owned by no thread): the drop held back would have taken a merged count to zero.
#[test]
fn a_trace_drops_the_last_handle_to_a_merged_candidate() {
    within("merged", || {
        let heap = Heap::new();
        heap.disable();
        let reports = hooked(&heap);
        let s = Arc::new(Shared::default());
        let a = {
            let (heap, s) = (heap.clone(), s.clone());
            std::thread::spawn(move || ring(&heap, &s)).join().unwrap()
        };
        // Merges the exited thread's objects, and clears `b`'s mark.
        assert_eq!(heap.collect(), 0);
        drop(a);
        armed_collection(&heap, &s);
        assert_eq!(s.drops.load(SeqCst), 2, "each node freed once");
        assert_eq!(heap.live_objects(), 0);
        no_reports(&reports);
    });
}

/// The ring's nodes belong to another thread, which waits in a detached section while the
/// collections run: the held-back drop goes to its merge queue once the world runs again, and
/// both nodes die once, on that thread, when it comes back.
#[test]
fn a_trace_drops_the_last_handle_to_another_threads_candidate() {
    within("other owner", || {
        let heap = Heap::new();
        heap.disable();
        let reports = hooked(&heap);
        let s = Arc::new(Shared::default());
        let (step_tx, step_rx) = std::sync::mpsc::channel::<()>();
        let (back_tx, back_rx) = std::sync::mpsc::channel::<()>();
        let owner = {
            let (heap, s) = (heap.clone(), s.clone());
            std::thread::spawn(move || {
                let a = ring(&heap, &s);
                back_tx.send(()).unwrap();
                heap.detached(|| step_rx.recv().unwrap());
                // The owner's drop: `a` is a possible root, its count the owner's.
                drop(a);
                back_tx.send(()).unwrap();
                heap.detached(|| step_rx.recv().unwrap());
                // Back: the queued reference is merged here.
                heap.safepoint();
            })
        };
        back_rx.recv().unwrap();
        // Clears `b`'s mark; the owner is detached.
        assert_eq!(heap.collect(), 0);
        step_tx.send(()).unwrap();
        back_rx.recv().unwrap();
        armed_collection(&heap, &s);
        step_tx.send(()).unwrap();
        owner.join().unwrap();
        assert_eq!(s.drops.load(SeqCst), 2, "each node freed once");
        assert_eq!(heap.live_objects(), 0);
        no_reports(&reports);
    });
}

/// A garbage ring with a finalizer whose nodes' traces, in the resurrection check (the second
/// snapshot, over the garbage), drop their link to the other node: the references held back
/// make the check keep both, and their drops once the world runs free both, each finalized
/// once and dropped once.
#[test]
fn a_trace_drops_links_between_garbage_in_the_resurrection_check() {
    #[derive(Default)]
    struct Seen {
        traces: AtomicUsize,
        finalized: AtomicUsize,
        dropped: AtomicUsize,
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
    // SAFETY: visits its one handle, in the first snapshot; in the second it drops it
    // (against the contract, on purpose) instead.
    unsafe impl Trace for Linked {
        fn trace(&self, tracer: &mut Tracer<'_>) {
            // Each node is traced once a snapshot: two traces in the first.
            if self.seen.traces.fetch_add(1, SeqCst) < 2 {
                self.next.trace(tracer);
            } else {
                drop(self.next.lock().unwrap().take());
            }
        }
        fn sync_finalizer() -> Option<fn(&Gc<Self>)> {
            Some(<Self as Finalize>::finalize)
        }
        fn wants_finalizer(&self) -> bool {
            true
        }
    }
    within("resurrection check", || {
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
        // The check keeps both (the held-back references count as from outside); their
        // drops then free both.
        assert_eq!(heap.collect(), 0);
        assert_eq!(
            seen.traces.load(SeqCst),
            4,
            "each node traced in both snapshots"
        );
        assert_eq!(seen.finalized.load(SeqCst), 2);
        assert_eq!(seen.dropped.load(SeqCst), 2, "each dropped once");
        assert_eq!(heap.live_objects(), 0);
        no_reports(&reports);
    });
}
