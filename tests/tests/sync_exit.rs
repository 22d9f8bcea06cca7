//! Thread exit against drops and collections (issue 12): a thread whose exit has begun marks
//! its slots leaving, and a drop that would queue to it merges instead (ARCHITECTURE,
//! "Counting"). From the fourteenth session's adversarial review.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;

use reap::sync::{Gc, Heap};
use reap::Trace;
use reap_tests::shared::{hooked, reps, settled_live, Log};

#[derive(Trace)]
struct Leaf {
    slot: Mutex<Option<Gc<Leaf>>>,
    #[reap(skip)]
    log: Arc<Log>,
}

impl Drop for Leaf {
    fn drop(&mut self) {
        self.log.drops.fetch_add(1, SeqCst);
    }
}

/// A node of heap 1 holding a leaf of heap 2 and the next node.
#[derive(Trace)]
struct Node {
    next: Option<Gc<Node>>,
    other: Gc<Leaf>,
    #[reap(skip)]
    log: Arc<Log>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.log.drops.fetch_add(1, SeqCst);
    }
}

fn cross_chain(h1: &Heap, h2: &Heap, n: usize, log: &Arc<Log>) -> Gc<Node> {
    let mut head = None;
    for _ in 0..n {
        let other = h2.alloc(Leaf {
            slot: Mutex::new(None),
            log: log.clone(),
        });
        head = Some(h1.alloc(Node {
            next: head.take(),
            other,
            log: log.clone(),
        }));
    }
    head.unwrap()
}

/// The owner's exit merges (on heap 1) a drop queued to it before; the deaths drop handles to
/// objects it owns on heap 2, whose slot is leaving: merged there and then. Everything dies,
/// once.
#[test]
fn exit_merges_queue_whose_deaths_drop_objects_owned_on_another_heap() {
    let (h1, h2) = (Heap::new(), Heap::new());
    let (r1, r2) = (hooked(&h1), hooked(&h2));
    let log = Log::new();
    const N: usize = reps(50, 4);
    let (tx, rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (a, b, l) = (h1.clone(), h2.clone(), log.clone());
    let t = thread::spawn(move || {
        let head = cross_chain(&a, &b, N, &l);
        tx.send(head).unwrap();
        // Blocks attached (no collection runs meanwhile): no safe point merges the drop.
        go_rx.recv().unwrap();
    });
    let head = rx.recv().unwrap();
    drop(head); // queued to the owner on heap 1
    go_tx.send(()).unwrap();
    t.join().unwrap();
    assert_eq!(log.drops(), 2 * N);
    assert_eq!(settled_live(&h1), 0);
    assert_eq!(settled_live(&h2), 0);
    assert!(r1.lock().unwrap().is_empty() && r2.lock().unwrap().is_empty());
}

/// Rounds of: a scoped thread builds a cross-heap chain and exits while this thread drops the
/// chain and collects both heaps (and a third thread, attached to heap 2 only, collects it).
/// After the rounds and one collection each, nothing is left; each value dropped once.
#[test]
fn exit_races_drops_and_collections_on_two_heaps() {
    let (h1, h2) = (Heap::new(), Heap::new());
    let log = Log::new();
    const N: usize = reps(60, 3);
    let rounds = reps(40, 2);
    let mut expected = 0;
    for _ in 0..rounds {
        let out = Mutex::new(None);
        let barrier = Arc::new(Barrier::new(2));
        let (b, c) = (barrier.clone(), h2.clone());
        let collector = thread::spawn(move || {
            b.wait();
            c.collect();
        });
        h1.detached(|| {
            h2.detached(|| {
                thread::scope(|s| {
                    s.spawn(|| {
                        let head = cross_chain(&h1, &h2, N, &log);
                        // a cycle on heap 2 held by the head's leaf
                        let leaf = h2.alloc(Leaf {
                            slot: Mutex::new(None),
                            log: log.clone(),
                        });
                        *leaf.slot.lock().unwrap() = Some(leaf.clone());
                        *head.other.slot.lock().unwrap() = Some(leaf);
                        *out.lock().unwrap() = Some(head);
                    });
                });
            })
        });
        expected += 2 * N + 1;
        let head = out.lock().unwrap().take();
        h1.detached(|| h2.detached(|| barrier.wait()));
        drop(head);
        h1.collect();
        h2.collect();
        h1.detached(|| h2.detached(|| collector.join().unwrap()));
    }
    h1.collect();
    h2.collect();
    let (l1, l2) = (settled_live(&h1), settled_live(&h2));
    if l2 != 0 {
        h2.collect();
    }
    assert_eq!((l1, l2), (0, 0), "after one collection each");
    assert_eq!(log.drops(), expected);
}

/// Objects whose owner thread exited are merged by the next collection (issue 12: CPython
/// 3.13t's `gc_restore_tid` merges an abandoned segment's objects), and nothing of their
/// lifetimes changes: workers build chains, finalizable objects with weak references (with
/// callbacks), and cycles, hand some out and exit; one collection frees the cycles (their
/// finalizers run) and merges the rest; then threads clone, upgrade and drop the survivors,
/// and the last drops, on any thread, run each finalizer, callback and drop once.
#[test]
fn orphans_merged_by_a_collection_die_once_on_any_thread() {
    use reap::sync::Weak;
    use reap_tests::shared::{chain, fin};

    let heap = Heap::new();
    let reports = hooked(&heap);
    let log = Log::new();
    const WORKERS: usize = 3;
    const N: usize = reps(40, 3);
    let mut kept = Vec::new();
    for w in 0..WORKERS {
        let (h, l) = (heap.clone(), log.clone());
        kept.push(
            thread::spawn(move || {
                let links = chain(&h, N, &l);
                let fins: Vec<_> = (0..N as u32)
                    .map(|i| fin(&h, 100 * w as u32 + i, &l))
                    .collect();
                let weaks: Vec<_> = fins
                    .iter()
                    .map(|f| {
                        let l = l.clone();
                        Weak::with_callback(f, move |_| {
                            l.cbs.fetch_add(1, SeqCst);
                        })
                    })
                    .collect();
                // A garbage cycle of two finalizable objects, left behind.
                let (a, b) = (fin(&h, 9000, &l), fin(&h, 9001, &l));
                *a.next.lock().unwrap() = Some(b.clone());
                *b.next.lock().unwrap() = Some(a);
                (links, fins, weaks)
            })
            .join()
            .unwrap(),
        );
    }
    // The workers are gone: one collection frees their cycles and merges the rest.
    let freed = heap.collect();
    assert_eq!(freed, 2 * WORKERS);
    assert_eq!(log.fin(), 2 * WORKERS);
    assert_eq!(log.drops(), 2 * WORKERS);
    assert_eq!(log.cbs(), 0);
    let kept = Arc::new(kept);
    thread::scope(|s| {
        for _ in 0..3 {
            let kept = kept.clone();
            s.spawn(move || {
                for (links, fins, weaks) in kept.iter() {
                    let l2 = links.clone();
                    for (f, w) in fins.iter().zip(weaks) {
                        let g = w.upgrade().expect("alive");
                        assert!(Gc::ptr_eq(&g, f));
                        let copies: Vec<_> = (0..5).map(|_| g.clone()).collect();
                        drop(copies);
                    }
                    drop(l2);
                }
            });
        }
    });
    // The last handles go on other threads, one worker's each.
    let kept = Arc::into_inner(kept).unwrap();
    let weaks: Vec<_> = kept
        .into_iter()
        .map(|(links, fins, weaks)| {
            thread::spawn(move || drop((links, fins))).join().unwrap();
            weaks
        })
        .collect();
    heap.safepoint();
    assert_eq!(log.fin(), 2 * WORKERS + N * WORKERS);
    assert_eq!(log.cbs(), N * WORKERS);
    assert_eq!(log.drops(), 2 * WORKERS + 2 * N * WORKERS);
    assert!(weaks.iter().flatten().all(|w| w.upgrade().is_none()));
    drop(weaks);
    assert_eq!(settled_live(&heap), 0);
    assert!(reports.lock().unwrap().is_empty());
}

/// A finalizer run on the refcount path by a thread with no owner id on the heap (here:
/// inside `Heap::detached`, and during the thread's exit) hides its object from other
/// threads' weak upgrades, as on an owner thread (SEMANTICS 8.3): the upgrade another thread
/// tries meanwhile returns `None`, while one on the finalizer's own thread returns the object
/// (dropped at once, it does not resurrect it); storing a clone resurrects the object, which
/// other threads can then upgrade, and which dies once, at its last drop.
#[test]
fn finalizer_on_a_thread_without_owner_id_hides_its_object_from_upgrades() {
    use reap::sync::Weak;
    use reap_tests::shared::{fin, merged, set_fin, Fin};

    for resurrect in [false, true] {
        for during_exit in [false, true] {
            let heap = Heap::new();
            let log = Log::new();
            let g = fin(&heap, 1, &log);
            let w = Arc::new(Weak::new(&g));
            let kept: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
            let seen: Arc<Mutex<Vec<bool>>> = Arc::default();
            let (w2, kept2, seen2) = (w.clone(), kept.clone(), seen.clone());
            set_fin(&g, move |this| {
                let w3 = w2.clone();
                let other = thread::spawn(move || w3.upgrade().is_some())
                    .join()
                    .unwrap();
                let own = w2.upgrade().is_some();
                seen2.lock().unwrap().extend([other, own]);
                if resurrect {
                    *kept2.lock().unwrap() = Some(this.clone());
                }
            });
            // Merged, so that the last drop is the death wherever it happens.
            let c = merged(g);
            let h = heap.clone();
            if during_exit {
                // Dropped by a thread-local's destructor after the thread gave up its id: the
                // thread-local is made before the thread first uses the heap, so that it is
                // destroyed after the runtime's (destructors run newest first).
                thread_local!(static LAST: std::cell::RefCell<Option<Gc<Fin>>> =
                    const { std::cell::RefCell::new(None) });
                thread::spawn(move || {
                    LAST.with(|_| ());
                    h.safepoint();
                    LAST.with(|l| *l.borrow_mut() = Some(c));
                })
                .join()
                .unwrap();
            } else {
                thread::spawn(move || h.detached(|| drop(c)))
                    .join()
                    .unwrap();
            }
            assert_eq!(log.fin(), 1);
            assert_eq!(
                *seen.lock().unwrap(),
                [false, true],
                "resurrect {resurrect} exit {during_exit}"
            );
            let back = kept.lock().unwrap().take();
            assert_eq!(back.is_some(), resurrect);
            if let Some(back) = back {
                assert_eq!(log.drops(), 0);
                let w3 = w.clone();
                let up = thread::spawn(move || w3.upgrade().is_some())
                    .join()
                    .unwrap();
                assert!(up, "a resurrected object is upgradable");
                thread::spawn(move || drop(back)).join().unwrap();
            }
            heap.safepoint();
            assert_eq!(log.drops(), 1);
            assert!(w.upgrade().is_none());
            drop(w);
            assert_eq!(settled_live(&heap), 0);
        }
    }
}
