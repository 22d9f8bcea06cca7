//! Adversarial tests of a Shared collection's reclaim, written by the twenty-first session's
//! second review: the collection's holds taken in `Snapshot::unreachable`'s last pass
//! (`collect::hold`), the reclaiming thread's drops counted inline in `heap::dec_ref_foreign`,
//! `give_back_hold`'s free with no header write (`count::hold_is_last`), `free_object`'s single
//! `meta` load, and the frees of a collection's garbage accounted in batches
//! (`heap::account_frees`).
//!
//! The oracles: every value dropped once, `live_objects` (computed from the heap's reference
//! count, so a heap reference not given back, or given back twice, shows), `get_count` (the
//! thread's `allocs` and `young`), `get_objects` (a block reused after a header-write-free
//! free keeps no `GC_GARBAGE`), and, under Miri, its leak check (a heap reference kept for
//! ever leaks the heap's state) and its data-race and use-after-free checks.
//!
//! The review found `live_objects_inside_give_back_loop_counts_freed_garbage` failing: user
//! code run inside the give-back loop (weak callbacks from `free_object`'s `clear_and_call`)
//! saw `live_objects` still counting the garbage the loop had already freed, whose heap
//! references were given back only after the loop. The give-back now accounts for the frees
//! so far before any path that may run user code.
//!
//! Natively: `cargo test -p reap-tests --test attack_reclaim_batch`.
//! Miri: `MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p reap-tests --test attack_reclaim_batch`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use reap::sync::{Gc, Heap, Weak};
use reap::{Trace, Tracer};
use reap_tests::shared::{hooked, settled_live, within};

type Action = Box<dyn FnOnce(&[Gc<Node>]) + Send>;

/// A node: traced links, a one-shot action its `Drop` runs on them, and a drop counter.
struct Node {
    links: Mutex<Vec<Gc<Node>>>,
    action: Mutex<Option<Action>>,
    drops: Arc<AtomicUsize>,
}

// SAFETY: visits the handles it owns, through its lock; nothing else.
unsafe impl Trace for Node {
    fn trace(&self, t: &mut Tracer<'_>) {
        self.links.trace(t);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
        let links = std::mem::take(self.links.get_mut().unwrap());
        if let Some(a) = self.action.get_mut().unwrap().take() {
            a(&links);
        }
        drop(links);
    }
}

fn node(heap: &Heap, drops: &Arc<AtomicUsize>) -> Gc<Node> {
    heap.alloc(Node {
        links: Mutex::new(Vec::new()),
        action: Mutex::new(None),
        drops: drops.clone(),
    })
}

fn set_action(n: &Gc<Node>, a: impl FnOnce(&[Gc<Node>]) + Send + 'static) {
    *n.action.lock().unwrap() = Some(Box::new(a));
}

/// A ring of `n` nodes, each also holding `extra` more handles to its successor (so that the
/// reclaim defers several drops of each: `local` != 0 at the give-back). Returns the nodes.
fn ring(heap: &Heap, drops: &Arc<AtomicUsize>, n: usize, extra: usize) -> Vec<Gc<Node>> {
    let ns: Vec<Gc<Node>> = (0..n).map(|_| node(heap, drops)).collect();
    for i in 0..n {
        let next = ns[(i + 1) % n].clone();
        let mut l = ns[i].links.lock().unwrap();
        for _ in 0..extra {
            l.push(next.clone());
        }
        l.push(next);
    }
    ns
}

fn small(native: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        native
    }
}

// ---------------------------------------------------------------------------------------------
// Claim 2/3: the give-back's slow path with a weak reference a `Drop` made meanwhile; its
// callback (user code inside the give-back loop, before `account_frees`) allocates, collects
// the same heap (claimed: 0) and another heap (a nested reclaim with its own batch).

#[test]
fn weak_callback_in_give_back_loop_nests_collections() {
    within("weak callback nests collections", || {
        let heap = Heap::new();
        let other = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let other_drops = Arc::new(AtomicUsize::new(0));
        let kept: Arc<Mutex<Vec<Gc<Node>>>> = Arc::default();
        let weaks: Arc<Mutex<Vec<Weak<Node>>>> = Arc::default();
        let nested = Arc::new(Mutex::new(Vec::<(usize, usize, usize)>::new()));
        let n = small(300, 6);
        let alloc_per_cb = small(700, 3);
        let other_ring = small(50, 3);
        let ns = ring(&heap, &drops, n, 2);
        for (i, x) in ns.iter().enumerate() {
            let (heap2, other2, weaks, kept, nested, drops, other_drops) = (
                heap.clone(),
                other.clone(),
                weaks.clone(),
                kept.clone(),
                nested.clone(),
                drops.clone(),
                other_drops.clone(),
            );
            set_action(x, move |links| {
                // A weak reference to the successor (garbage, its value not yet dropped if it
                // comes later): its give-back then takes the slow path, and the callback runs
                // from `free_object`'s `clear_and_call`.
                let w = Weak::with_callback(&links[0], move |_| {
                    // Tracked allocations kept: `allocs` goes up meanwhile (flushes included).
                    {
                        let mut k = kept.lock().unwrap();
                        for _ in 0..alloc_per_cb {
                            k.push(node(&heap2, &drops));
                        }
                    }
                    // The same heap: claimed by this thread, 0 at once.
                    let c = heap2.collect();
                    nested.lock().unwrap().push((i, 0, c));
                    if i % 2 == 0 {
                        // Another heap with garbage of its own: a nested reclaim and batch.
                        drop(ring(&other2, &other_drops, other_ring, 1));
                        let c = other2.collect();
                        nested.lock().unwrap().push((i, 1, c));
                    }
                });
                weaks.lock().unwrap().push(w);
            });
        }
        drop(ns);
        let got = heap.collect();
        assert_eq!(got, n, "the ring is garbage");
        assert_eq!(drops.load(SeqCst), n, "every ring value dropped once");
        let log = nested.lock().unwrap().clone();
        assert_eq!(log.len(), n + n.div_ceil(2), "every callback ran once");
        for &(i, which, c) in &log {
            if which == 0 {
                assert_eq!(c, 0, "the same heap is not re-entered");
            } else {
                assert_eq!(i % 2, 0);
                assert_eq!(c, other_ring, "the other heap's ring collected");
            }
        }
        let k = kept.lock().unwrap().len();
        assert_eq!(k, n * alloc_per_cb);
        // The weak references are objects of the heap too (n of them).
        assert_eq!(
            heap.live_objects(),
            k + n,
            "only the callbacks' objects and the weaks"
        );
        assert_eq!(
            heap.get_count()[0],
            k + n,
            "allocations net of frees since the collection: the callbacks' objects and the \
             weak-reference objects (tracked) the drops made"
        );
        assert_eq!(other.live_objects(), 0, "the other heap's rings freed");
        assert_eq!(
            other_drops.load(SeqCst),
            other_ring * n.div_ceil(2),
            "every other value dropped once"
        );
        weaks.lock().unwrap().clear();
        kept.lock().unwrap().clear();
        assert_eq!(settled_live(&heap), 0);
        assert_eq!(drops.load(SeqCst), n + k);
    });
}

// ---------------------------------------------------------------------------------------------
// Claim 2/5: another thread is handed clones of the garbage by the reclaim's drops, makes weak
// references to them and drops the clones: the give-back must see the weak-info block (its
// `Acquire` load of `counts`) and take the slow path; Miri checks the free is ordered after
// the other thread's accesses.

#[test]
fn other_thread_downgrades_handed_garbage_then_drops() {
    within("other thread downgrades garbage", || {
        let heap = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let n = small(400, 5);
        let reps = small(10, 1);
        let cbs = Arc::new(AtomicUsize::new(0));
        for _ in 0..reps {
            let (tx, rx) = mpsc::channel::<Gc<Node>>();
            let (wtx, wrx) = mpsc::channel::<Weak<Node>>();
            let cbs2 = cbs.clone();
            let heap2 = heap.clone();
            let t = thread::spawn(move || {
                let _attach = heap2.alloc(0u8);
                let mut ws = Vec::new();
                loop {
                    match rx.try_recv() {
                        Ok(g) => {
                            let c = cbs2.clone();
                            ws.push(Weak::with_callback(&g, move |_| {
                                c.fetch_add(1, SeqCst);
                            }));
                            drop(g);
                        }
                        Err(mpsc::TryRecvError::Empty) => {
                            heap2.safepoint();
                            thread::yield_now();
                        }
                        Err(mpsc::TryRecvError::Disconnected) => break,
                    }
                }
                for w in ws {
                    let _ = wtx.send(w);
                }
            });
            let ns = ring(&heap, &drops, n, 1);
            for x in &ns {
                let tx = tx.clone();
                set_action(x, move |links| {
                    let _ = tx.send(links[0].clone());
                });
            }
            drop(tx);
            drop(ns);
            assert_eq!(heap.collect(), n);
            // The other thread ends once every `Drop` ran (the senders are gone).
            while !t.is_finished() {
                heap.safepoint();
                thread::yield_now();
            }
            t.join().unwrap();
            // Keep the weak references alive until now; each referent died (freed by the
            // give-back or by the other thread's drop) with its weak reference listed, so its
            // callback ran: unless the weak reference was created after... never, here.
            let ws: Vec<Weak<Node>> = wrx.try_iter().collect();
            assert_eq!(ws.len(), n);
            for w in &ws {
                assert!(w.upgrade().is_none(), "a dead referent stays dead");
            }
            drop(ws);
        }
        assert_eq!(drops.load(SeqCst), reps * n);
        assert_eq!(cbs.load(SeqCst), reps * n, "every callback ran once");
        assert_eq!(settled_live(&heap), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Claim 2: blocks freed by the give-back's fast path (no write to `gc_bits` or `local`) are
// handed out again; nothing of the old header may show.

#[test]
fn blocks_reused_after_fast_free_carry_nothing_over() {
    within("block reuse after fast free", || {
        let heap = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let n = small(500, 6);
        for round in 0..small(4, 2) {
            let ns = ring(&heap, &drops, n, 3);
            drop(ns);
            assert_eq!(heap.collect(), n);
            assert_eq!(heap.live_objects(), 0);
            // Fresh nodes in the same blocks (this thread's slab, same class).
            let fresh: Vec<Gc<Node>> = (0..n).map(|_| node(&heap, &drops)).collect();
            // A leftover GC_GARBAGE would hide them from the walk.
            let listed = heap.get_objects().len();
            assert!(
                listed >= n,
                "round {round}: fresh objects listed ({listed} < {n})"
            );
            // A leftover GC_RECLAIM or `local` would misroute or miscount these drops: clones
            // dropped by another thread, then by this one.
            let clones: Vec<Gc<Node>> = fresh.to_vec();
            let h2 = heap.clone();
            thread::spawn(move || {
                let _a = h2.alloc(1u8);
                drop(clones);
            })
            .join()
            .unwrap();
            for g in &fresh {
                assert_eq!(Gc::strong_count(g), 1);
            }
            drop(fresh);
            heap.safepoint();
            assert_eq!(settled_live(&heap), 0, "round {round}");
        }
        assert_eq!(drops.load(SeqCst), small(4, 2) * 2 * n);
    });
}

// ---------------------------------------------------------------------------------------------
// Claim 4: the thread's `allocs` and the heap references after a large garbage (past several
// flushes of `FLUSH_EVERY`), with `Drop`s that allocate and keep objects during the reclaim.

#[test]
fn batch_accounting_with_allocating_drops() {
    within("batch accounting", || {
        let heap = Heap::new();
        // No automatic collection in the way.
        heap.disable();
        let drops = Arc::new(AtomicUsize::new(0));
        let n = small(20_000, 8);
        let every = small(7, 3);
        let kept: Arc<Mutex<Vec<Gc<Node>>>> = Arc::default();
        let ns = ring(&heap, &drops, n, 1);
        for x in ns.iter().step_by(every) {
            let (h2, k2, d2) = (heap.clone(), kept.clone(), drops.clone());
            set_action(x, move |_| {
                k2.lock().unwrap().push(node(&h2, &d2));
            });
        }
        drop(ns);
        assert_eq!(heap.collect(), n);
        let k = kept.lock().unwrap().len();
        assert_eq!(k, n.div_ceil(every));
        assert_eq!(heap.live_objects(), k);
        assert_eq!(heap.get_count()[0], k, "young: the drops' allocations only");
        kept.lock().unwrap().clear();
        assert_eq!(settled_live(&heap), 0);
        // The frees of the kept objects (refcount path, accounted one by one) bring the count
        // back down; `get_count` clamps at 0.
        assert_eq!(drops.load(SeqCst), n + k);
    });
}

// ---------------------------------------------------------------------------------------------
// Claim 4: the collection run by a thread inside another heap's detached section (id
// `NO_OWNER`, no reclaimer): the batch is still this thread's state on the heap.

#[test]
fn detached_collector_batch() {
    within("detached collector batch", || {
        let heap = Heap::new();
        let side = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let weaks: Arc<Mutex<Vec<Weak<Node>>>> = Arc::default();
        let n = small(300, 5);
        let ns = ring(&heap, &drops, n, 2);
        for x in ns.iter().step_by(3) {
            let w2 = weaks.clone();
            set_action(x, move |links| {
                w2.lock().unwrap().push(Weak::new(&links[0]));
            });
        }
        drop(ns);
        let got = side.detached(|| heap.collect());
        assert_eq!(got, n);
        let w = weaks.lock().unwrap().len();
        assert_eq!(w, n.div_ceil(3));
        assert_eq!(heap.live_objects(), w, "the weak-reference objects only");
        assert!(weaks.lock().unwrap().iter().all(|w| w.upgrade().is_none()));
        weaks.lock().unwrap().clear();
        assert_eq!(settled_live(&heap), 0);
        assert_eq!(drops.load(SeqCst), n);
    });
}

// ---------------------------------------------------------------------------------------------
// Claim 1: a collection abandoned by a panicking `Trace` takes no hold (the holds come after
// every trace, in the verdict): the garbage is collected by the next collection, nothing
// poisoned or leaked.

struct Bomb {
    armed: Arc<std::sync::atomic::AtomicBool>,
    links: Mutex<Vec<Gc<Node>>>,
    me: Mutex<Option<Gc<Bomb>>>,
}

// SAFETY: visits the handles it owns; panics (before visiting) while armed.
unsafe impl Trace for Bomb {
    fn trace(&self, t: &mut Tracer<'_>) {
        if self.armed.load(SeqCst) {
            panic!("bomb");
        }
        self.links.trace(t);
        self.me.trace(t);
    }
}

#[test]
fn abandoned_collection_takes_no_hold() {
    within("abandoned collection", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        let drops = Arc::new(AtomicUsize::new(0));
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let n = small(200, 4);
        // Garbage found first (allocated first: earlier in the slab walk), then the bomb.
        let ns = ring(&heap, &drops, n, 1);
        let bomb = heap.alloc(Bomb {
            armed: armed.clone(),
            links: Mutex::new(vec![ns[0].clone()]),
            me: Mutex::new(None),
        });
        *bomb.me.lock().unwrap() = Some(bomb.clone());
        drop(ns);
        drop(bomb);
        assert_eq!(heap.collect(), 0, "abandoned");
        assert!(!reports.lock().unwrap().is_empty(), "the panic reported");
        assert_eq!(drops.load(SeqCst), 0, "nothing dropped");
        // Nothing poisoned: the objects are listed and usable.
        let listed = heap.get_objects().len();
        assert_eq!(listed, n + 1, "nothing hidden as garbage");
        armed.store(false, SeqCst);
        assert_eq!(heap.collect(), n + 1, "everything collected now");
        assert_eq!(drops.load(SeqCst), n);
        assert_eq!(settled_live(&heap), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Claim 4/6: a `Drop` run by the reclaim collects another heap whose own `Drop`s collect the
// first (claimed: 0) and drop the first heap's last `Heap` handle held by a value.

#[test]
fn reclaim_drop_collects_other_heap_which_drops_heap_handles() {
    within("cross-heap reclaim", || {
        let a = Heap::new();
        let b = Heap::new();
        let da = Arc::new(AtomicUsize::new(0));
        let db = Arc::new(AtomicUsize::new(0));
        let n = small(100, 4);
        let ra = ring(&a, &da, n, 1);
        let rb = ring(&b, &db, n, 1);
        let results = Arc::new(Mutex::new(Vec::new()));
        for x in &rb {
            let (a2, r2) = (a.clone(), results.clone());
            set_action(x, move |_| {
                let c = a2.collect();
                r2.lock().unwrap().push(("a from b", c));
                drop(a2);
            });
        }
        drop(rb);
        let (b2, r2) = (b.clone(), results.clone());
        set_action(&ra[0], move |_| {
            let c = b2.collect();
            r2.lock().unwrap().push(("b from a", c));
            drop(b2);
        });
        drop(ra);
        assert_eq!(a.collect(), n);
        let r = results.lock().unwrap().clone();
        // B's drops (inside B's reclaim, inside A's) log first, then A's drop.
        assert_eq!(r[n], ("b from a", n));
        assert!(r[..n].iter().all(|&(w, c)| w == "a from b" && c == 0));
        assert_eq!(r.len(), n + 1);
        assert_eq!(a.live_objects(), 0);
        assert_eq!(b.live_objects(), 0);
        assert_eq!(a.get_count()[0], 0);
        assert_eq!(b.get_count()[0], 0);
        assert_eq!(da.load(SeqCst), n);
        assert_eq!(db.load(SeqCst), n);
    });
}

// ---------------------------------------------------------------------------------------------
// `Heap::live_objects` is documented exact "when no other thread changes the heap meanwhile";
// inside the give-back loop (a weak reference's callback run by `free_object`'s
// `clear_and_call`, single-threaded program) it must not count the garbage the loop already
// freed (the review's finding: it did, when every heap reference went back after the loop).

#[test]
fn live_objects_inside_give_back_loop_counts_freed_garbage() {
    within("live_objects mid give-back", || {
        let heap = Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let n = small(10, 4);
        let readings: Arc<Mutex<Vec<usize>>> = Arc::default();
        let ns = ring(&heap, &drops, n, 0);
        // A weak reference with a callback to every node, made by the reclaim's drops (after
        // pause 1 cleared the older ones): every give-back takes the slow path, frees its
        // object and runs the callback before the free.
        let weaks: Arc<Mutex<Vec<Weak<Node>>>> = Arc::default();
        for x in &ns {
            let (h2, r2, w2) = (heap.clone(), readings.clone(), weaks.clone());
            set_action(x, move |links| {
                let w = Weak::with_callback(&links[0], move |_| {
                    r2.lock().unwrap().push(h2.live_objects());
                });
                w2.lock().unwrap().push(w);
            });
        }
        drop(ns);
        assert_eq!(heap.collect(), n);
        let r = readings.lock().unwrap().clone();
        assert_eq!(r.len(), n, "every callback ran");
        // In callback k (1-based) the k - 1 objects given back before are freed: alive are
        // the n weak-reference objects and the n - k + 1 garbage objects not yet freed.
        let want: Vec<usize> = (1..=n).map(|k| n + n - k + 1).collect();
        assert_eq!(r, want, "live_objects inside the give-back loop");
        weaks.lock().unwrap().clear();
        assert_eq!(settled_live(&heap), 0);
    });
}
