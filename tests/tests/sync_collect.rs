//! Shared-mode cycle collection (`reap::sync::Heap::collect`): CPython's `Lib/test/test_gc.py`
//! scenarios ported to Shared objects (named after the originals: `g_` for `GCTests`), and the
//! threaded cases of issue 13: cycles built on several threads, owners that exited, threads
//! that are attached, detached or never attached while a collection stops the world.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier, Mutex, RwLock};
use std::thread;
use std::time::Duration;

use reap::sync::{Finalize, Gc, Heap, Weak};
use reap::{gc_coerce, Trace};
use reap_tests::shared::{hooked, reps, Log};

type AnyGc = Gc<dyn Any + Send + Sync>;

/// A generic container object: a list of handles (Python's list / dict / instance dict).
#[derive(Trace, Default)]
struct List {
    items: Mutex<Vec<AnyGc>>,
}

fn list(heap: &Heap) -> Gc<List> {
    heap.alloc(List::default())
}

fn any<T: Trace + Send + Sync + 'static>(g: &Gc<T>) -> AnyGc {
    gc_coerce!(g.clone() => dyn Any + Send + Sync)
}

fn push(l: &Gc<List>, g: AnyGc) {
    l.items.lock().unwrap().push(g);
}

/// An instance with a finalizer that logs `del <name>` and, if it has a `keep` list, stores
/// itself there (resurrection).
#[derive(Trace)]
#[reap(sync_finalize)]
struct Instance {
    name: &'static str,
    a: Mutex<Option<Gc<Instance>>>,
    #[reap(skip)]
    log: Arc<Log>,
    keep: Option<Gc<List>>,
}

impl Finalize for Instance {
    fn finalize(this: &Gc<Self>) {
        this.log.push(format!("del {}", this.name));
        if let Some(k) = &this.keep {
            push(k, any(this));
        }
    }
}

fn instance(heap: &Heap, name: &'static str, log: &Arc<Log>) -> Gc<Instance> {
    heap.alloc(Instance {
        name,
        a: Mutex::new(None),
        log: log.clone(),
        keep: None,
    })
}

fn resurrector(heap: &Heap, name: &'static str, log: &Arc<Log>, keep: &Gc<List>) -> Gc<Instance> {
    heap.alloc(Instance {
        name,
        a: Mutex::new(None),
        log: log.clone(),
        keep: Some(keep.clone()),
    })
}

fn count(log: &Log, e: &str) -> usize {
    log.events().iter().filter(|x| *x == e).count()
}

#[test]
fn g_test_list() {
    let heap = Heap::new();
    let l = list(&heap);
    push(&l, any(&l));
    drop(l);
    assert_eq!(heap.collect(), 1);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn g_test_dict() {
    #[derive(Trace, Default)]
    struct Dict(Mutex<HashMap<u32, AnyGc>>);
    let heap = Heap::new();
    let d = heap.alloc(Dict::default());
    d.0.lock().unwrap().insert(1, any(&d));
    drop(d);
    assert_eq!(heap.collect(), 1);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn g_test_instance() {
    let heap = Heap::new();
    let log = Log::new();
    let a = instance(&heap, "a", &log);
    let b = instance(&heap, "b", &log);
    *a.a.lock().unwrap() = Some(b.clone());
    *b.a.lock().unwrap() = Some(a.clone());
    drop((a, b));
    assert_eq!(heap.collect(), 2);
    assert_eq!(count(&log, "del a"), 1);
    assert_eq!(count(&log, "del b"), 1);
    assert_eq!(heap.live_objects(), 0);
    assert_eq!(heap.collect(), 0);
}

/// Reachable objects survive, and a cycle that something outside still holds is kept.
#[test]
fn reachable_cycles_survive() {
    let heap = Heap::new();
    let a = list(&heap);
    let b = list(&heap);
    push(&a, any(&b));
    push(&b, any(&a));
    let keep = b.clone();
    drop((a, b));
    assert_eq!(heap.collect(), 0);
    assert_eq!(heap.live_objects(), 2);
    assert_eq!(keep.items.lock().unwrap().len(), 1);
    drop(keep);
    assert_eq!(heap.collect(), 2);
    assert_eq!(heap.live_objects(), 0);
}

/// Two self-cycles with callback weak references; each callback reads every weak reference and
/// finds them all dead.
#[test]
fn g_test_bug1055820b() {
    let heap = Heap::new();
    let log = Log::new();
    let c0 = list(&heap);
    let c1 = list(&heap);
    push(&c0, any(&c0));
    push(&c1, any(&c1));
    let refs: Arc<Mutex<Vec<Weak<List>>>> = Arc::default();
    for c in [&c0, &c1] {
        let (r, l) = (refs.clone(), log.clone());
        let w = Weak::with_callback(c, move |_: &Weak<List>| {
            let alive = r
                .lock()
                .unwrap()
                .iter()
                .filter(|w| w.upgrade().is_some())
                .count();
            l.push(format!("callback alive={alive}"));
        });
        refs.lock().unwrap().push(w);
    }
    drop((c0, c1));
    assert_eq!(heap.collect(), 2);
    assert_eq!(log.events(), ["callback alive=0", "callback alive=0"]);
    refs.lock().unwrap().clear();
    assert_eq!(heap.live_objects(), 0);
}

/// A↔B, where B's finalizer writes into A (its partner, also garbage): no crash, both
/// collected, and the write lands in A's intact value.
#[test]
fn g_test_bug21435() {
    #[derive(Trace)]
    #[reap(sync_finalize)]
    struct Node {
        name: &'static str,
        partner: Mutex<Option<Gc<Node>>>,
        attr: Mutex<Option<String>>,
        #[reap(skip)]
        log: Arc<Log>,
    }
    impl Finalize for Node {
        fn finalize(this: &Gc<Self>) {
            if this.name == "b" {
                let a = this.partner.lock().unwrap().clone().unwrap();
                *a.attr.lock().unwrap() = Some("set by b".into());
                this.log.push("b wrote into a");
            }
        }
    }
    impl Drop for Node {
        fn drop(&mut self) {
            let attr = self.attr.lock().unwrap().clone();
            self.log
                .push(format!("drop {} attr={:?}", self.name, attr.as_deref()));
        }
    }
    let heap = Heap::new();
    let log = Log::new();
    let new = |name| {
        heap.alloc(Node {
            name,
            partner: Mutex::new(None),
            attr: Mutex::new(None),
            log: log.clone(),
        })
    };
    let a = new("a");
    let b = new("b");
    *a.partner.lock().unwrap() = Some(b.clone());
    *b.partner.lock().unwrap() = Some(a.clone());
    drop((a, b));
    assert_eq!(heap.collect(), 2);
    let e = log.events();
    assert_eq!(e[0], "b wrote into a");
    assert!(
        e.contains(&"drop a attr=Some(\"set by b\")".to_string()),
        "{e:?}"
    );
    assert!(e.contains(&"drop b attr=None".to_string()), "{e:?}");
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn g_test_resurrection_only_happens_once_per_object() {
    let heap = Heap::new();
    let log = Log::new();
    let keep = list(&heap);
    let lazarus = resurrector(&heap, "lazarus", &log, &keep);
    *lazarus.a.lock().unwrap() = Some(lazarus.clone());
    drop(lazarus);
    assert_eq!(heap.collect(), 0, "resurrected: nothing freed");
    assert_eq!(count(&log, "del lazarus"), 1);
    keep.items.lock().unwrap().clear();
    assert_eq!(heap.collect(), 1);
    assert_eq!(count(&log, "del lazarus"), 1, "a finalizer runs once");
    assert_eq!(heap.live_objects(), 1, "only `keep` is left");
}

#[test]
fn g_test_resurrection_is_transitive() {
    let heap = Heap::new();
    let log = Log::new();
    let keep = list(&heap);
    let lazarus = resurrector(&heap, "lazarus", &log, &keep);
    let cargo = instance(&heap, "cargo", &log);
    let cargo_id = Gc::as_ptr(&cargo);
    *lazarus.a.lock().unwrap() = Some(cargo.clone());
    *cargo.a.lock().unwrap() = Some(lazarus.clone());
    drop((lazarus, cargo));
    assert_eq!(heap.collect(), 0);
    let back = keep.items.lock().unwrap()[0]
        .clone()
        .downcast::<Instance>()
        .ok()
        .unwrap();
    let cargo_back = back.a.lock().unwrap().clone().unwrap();
    assert_eq!(Gc::as_ptr(&cargo_back), cargo_id);
    assert!(Gc::ptr_eq(
        cargo_back.a.lock().unwrap().as_ref().unwrap(),
        &back
    ));
    assert_eq!(cargo_back.name, "cargo");
    drop((back, cargo_back));
    keep.items.lock().unwrap().clear();
    assert_eq!(heap.collect(), 2);
    assert_eq!(count(&log, "del lazarus"), 1);
    assert_eq!(count(&log, "del cargo"), 1);
}

#[test]
fn g_test_resurrection_does_not_block_cleanup_of_other_objects() {
    let heap = Heap::new();
    let log = Log::new();
    let n = reps(100, 10);
    let keep = list(&heap);
    let lazarus = resurrector(&heap, "lazarus", &log, &keep);
    *lazarus.a.lock().unwrap() = Some(lazarus.clone());
    drop(lazarus);
    for _ in 0..n {
        let x = list(&heap);
        push(&x, any(&x));
    }
    assert_eq!(heap.collect(), n);
    keep.items.lock().unwrap().clear();
    assert_eq!(heap.collect(), 1);
    assert_eq!(count(&log, "del lazarus"), 1);
    assert_eq!(heap.live_objects(), 1);
}

/// A garbage weak reference whose callback would have run never runs it.
#[test]
fn g_test_trash_weakref_clear() {
    #[derive(Trace)]
    struct Holder(Weak<List>);
    let heap = Heap::new();
    let log = Log::new();
    let a = list(&heap);
    let b = list(&heap);
    let l = log.clone();
    let wr = Weak::with_callback(&a, move |_: &Weak<List>| l.push("callback"));
    // b holds the weak reference and a; b and a are a cycle of garbage.
    push(&b, any(&heap.alloc(Holder(wr))));
    push(&b, any(&a));
    push(&a, any(&b));
    drop((a, b));
    assert_eq!(
        heap.collect(),
        4,
        "a, b, the holder and the weak-reference object"
    );
    assert!(
        log.events().is_empty(),
        "a garbage weak reference's callback never runs"
    );
    assert_eq!(heap.live_objects(), 0);
}

/// Weak references to garbage are cleared before any finalizer runs (SEMANTICS 2.4 before
/// 2.5), and an outside weak reference's callback runs.
#[test]
fn weak_references_cleared_before_finalizers_and_outside_callbacks_run() {
    #[derive(Trace)]
    #[reap(sync_finalize)]
    struct Node {
        next: Mutex<Option<Gc<Node>>>,
        #[reap(skip)]
        seen: Arc<Mutex<Option<Weak<Node>>>>,
        #[reap(skip)]
        log: Arc<Log>,
    }
    impl Finalize for Node {
        fn finalize(this: &Gc<Self>) {
            let w = this.seen.lock().unwrap().clone();
            if let Some(w) = w {
                this.log
                    .push(format!("fin sees partner alive={}", w.upgrade().is_some()));
            }
        }
    }
    let heap = Heap::new();
    let log = Log::new();
    let seen = Arc::new(Mutex::new(None));
    let a = heap.alloc(Node {
        next: Mutex::new(None),
        seen: seen.clone(),
        log: log.clone(),
    });
    let b = heap.alloc(Node {
        next: Mutex::new(Some(a.clone())),
        seen: Arc::default(),
        log: log.clone(),
    });
    *a.next.lock().unwrap() = Some(b.clone());
    *seen.lock().unwrap() = Some(Weak::new(&b));
    let l = log.clone();
    let outside = Weak::with_callback(&b, move |w: &Weak<Node>| {
        l.push(format!("callback alive={}", w.upgrade().is_some()))
    });
    drop((a, b));
    assert_eq!(heap.collect(), 2);
    assert_eq!(
        log.events(),
        ["callback alive=false", "fin sees partner alive=false"]
    );
    assert!(outside.upgrade().is_none());
    drop(outside);
    *seen.lock().unwrap() = None;
    assert_eq!(heap.live_objects(), 0);
}

/// A `Drop` of a garbage object that reaches another garbage object gets a clear panic, caught
/// and reported, never a use of a dropped value; a handle a `Drop` keeps (a zombie) stays
/// unusable and is freed when it goes.
#[test]
fn drop_reaching_broken_garbage_panics_clearly() {
    static KEPT: Mutex<Vec<Gc<Node>>> = Mutex::new(Vec::new());
    #[derive(Trace)]
    struct Node {
        id: u32,
        next: Mutex<Option<Gc<Node>>>,
    }
    impl Drop for Node {
        fn drop(&mut self) {
            if let Some(n) = self.next.get_mut().unwrap().take() {
                KEPT.lock().unwrap().push(n.clone());
                // The partner is garbage too: this panics, whichever was dropped first.
                let _ = n.id;
            }
        }
    }
    let heap = Heap::new();
    let reports = hooked(&heap);
    let a = heap.alloc(Node {
        id: 1,
        next: Mutex::new(None),
    });
    let b = heap.alloc(Node {
        id: 2,
        next: Mutex::new(Some(a.clone())),
    });
    *a.next.lock().unwrap() = Some(b.clone());
    drop((a, b));
    assert_eq!(heap.collect(), 2);
    let r = reports.lock().unwrap().clone();
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r
        .iter()
        .all(|(_, m)| m.contains("cycle the collector has broken")));
    let kept = std::mem::take(&mut *KEPT.lock().unwrap());
    assert_eq!(kept.len(), 2);
    assert_eq!(heap.live_objects(), 2, "two zombies, kept by the Drops");
    let t = thread::spawn({
        let z = kept[0].clone();
        move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| z.id)).is_err()
    });
    assert!(t.join().unwrap(), "a zombie panics on use on any thread");
    drop(kept);
    assert_eq!(
        heap.live_objects(),
        0,
        "zombies freed when their handles go"
    );
}

/// A cycle member whose lock another (unattached) thread holds during the collection is kept
/// (its interior cannot be read), and collected by a later collection once the lock is free.
#[test]
fn locked_interior_is_kept_then_collected() {
    let heap = Heap::new();
    let a = list(&heap);
    let b = list(&heap);
    push(&a, any(&b));
    push(&b, any(&a));
    let (locked_tx, locked_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let a2 = a.clone();
    let holder = thread::spawn(move || {
        let g = a2.items.lock().unwrap();
        locked_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        drop(g);
        drop(a2);
    });
    locked_rx.recv().unwrap();
    drop((a, b));
    assert_eq!(heap.collect(), 0, "a's interior is locked elsewhere: kept");
    go_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(heap.collect(), 2);
    assert_eq!(heap.live_objects(), 0);
}

/// An `RwLock` read by another thread during the collection is traversed (readers share), and
/// the cycle is collected.
#[test]
fn rwlock_read_elsewhere_is_traversed() {
    #[derive(Trace)]
    struct Node(RwLock<Option<Gc<Node>>>);
    let heap = Heap::new();
    let a = heap.alloc(Node(RwLock::new(None)));
    let b = heap.alloc(Node(RwLock::new(Some(a.clone()))));
    *a.0.write().unwrap() = Some(b.clone());
    let (locked_tx, locked_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let b2 = b.clone();
    let reader = thread::spawn(move || {
        let g = b2.0.read().unwrap();
        locked_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        drop(g);
        b2
    });
    locked_rx.recv().unwrap();
    drop((a, b));
    assert_eq!(heap.collect(), 0, "the reader still holds b");
    go_tx.send(()).unwrap();
    drop(reader.join().unwrap());
    assert_eq!(heap.collect(), 2);
    assert_eq!(heap.live_objects(), 0);
}

/// A ring built by several threads (each allocates its nodes, so each owns some), whose
/// threads then exit: the main thread collects the whole ring.
#[test]
fn ring_built_on_four_threads_is_collected_after_they_exit() {
    #[derive(Trace)]
    struct Node {
        next: Mutex<Option<Gc<Node>>>,
    }
    let heap = Heap::new();
    let n = reps(50, 4);
    let nodes: Vec<Gc<Node>> = (0..4)
        .map(|_| {
            let h = heap.clone();
            thread::spawn(move || {
                (0..n)
                    .map(|_| {
                        h.alloc(Node {
                            next: Mutex::new(None),
                        })
                    })
                    .collect::<Vec<_>>()
            })
        })
        .flat_map(|t| t.join().unwrap())
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        *node.next.lock().unwrap() = Some(nodes[(i + 1) % nodes.len()].clone());
    }
    drop(nodes);
    assert_eq!(heap.collect(), 4 * n);
    assert_eq!(heap.live_objects(), 0);
}

/// A collection stops an attached thread that keeps reaching safe points (it allocates), and
/// that thread's objects are consistent afterwards; cycles it drops are collected.
#[test]
fn attached_thread_parks_at_its_safe_points() {
    let heap = Heap::new();
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let (h, s, m) = (heap.clone(), stop.clone(), made.clone());
    let worker = thread::spawn(move || {
        let mut keep = Vec::new();
        while !s.load(SeqCst) {
            let l = list(&h);
            push(&l, any(&l));
            if keep.len() < 10 {
                keep.push(l.clone());
            }
            m.fetch_add(1, SeqCst);
        }
        keep.len()
    });
    let mut collected = 0;
    for _ in 0..reps(20, 2) {
        while made.load(SeqCst) < 1 {
            thread::yield_now();
        }
        collected += heap.collect();
    }
    stop.store(true, SeqCst);
    // Joining blocks: detached, or a collection the worker runs could not stop this thread.
    let kept = heap.detached(|| worker.join().unwrap());
    collected += heap.collect();
    // The worker's allocations also trigger automatic collections (generation 0).
    let automatic = heap.get_stats()[0].collected as usize;
    assert_eq!(
        collected + automatic,
        made.load(SeqCst),
        "every self-cycle collected once"
    );
    assert_eq!(heap.get_stats()[2].collected as usize, collected);
    assert_eq!(kept, 10.min(made.load(SeqCst)));
    assert_eq!(heap.live_objects(), 0);
}

/// A thread blocked while attached (not inside `detached`): `try_collect` gives up with an
/// error instead of hanging, frees nothing, and the heap works afterwards.
#[test]
fn try_collect_reports_a_thread_blocked_while_attached() {
    let heap = Heap::new();
    let (tx, rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let h = heap.clone();
    let blocked = thread::spawn(move || {
        let l = list(&h); // attaches
        ready_tx.send(()).unwrap();
        rx.recv().unwrap(); // blocks while attached
        drop(l);
        h.safepoint();
    });
    ready_rx.recv().unwrap();
    let l = list(&heap);
    push(&l, any(&l));
    drop(l);
    let err = heap.try_collect(Duration::from_millis(50)).unwrap_err();
    assert_eq!(err.threads, 1);
    assert!(err.to_string().contains("Heap::detached"), "{err}");
    assert_eq!(heap.live_objects(), 2, "nothing freed");
    tx.send(()).unwrap();
    blocked.join().unwrap();
    assert_eq!(heap.collect(), 1);
    assert_eq!(heap.live_objects(), 0);
}

/// The same thread blocking inside `detached` does not hold the collection up.
#[test]
fn a_thread_blocked_inside_detached_does_not_stop_collection() {
    let heap = Heap::new();
    let (tx, rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let h = heap.clone();
    let blocked = thread::spawn(move || {
        let l = list(&h);
        h.detached(|| {
            ready_tx.send(()).unwrap();
            rx.recv().unwrap();
        });
        drop(l);
    });
    ready_rx.recv().unwrap();
    let l = list(&heap);
    push(&l, any(&l));
    drop(l);
    assert_eq!(heap.collect(), 1);
    tx.send(()).unwrap();
    blocked.join().unwrap();
    assert_eq!(heap.live_objects(), 0);
}

/// Threads that never attach (they only clone, drop and upgrade handles) run during a
/// collection through the gate; the cycles they let go of are collected, nothing else.
#[test]
fn unattached_threads_churn_handles_during_collections() {
    #[derive(Trace)]
    struct Node {
        next: Mutex<Option<Gc<Node>>>,
    }
    let heap = Heap::new();
    let rounds = reps(200, 10);
    let anchor = heap.alloc(Node {
        next: Mutex::new(None),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (a, s) = (anchor.clone(), stop.clone());
            let w = Weak::new(&anchor);
            thread::spawn(move || {
                let mut n = 0;
                while !s.load(SeqCst) {
                    let c = a.clone();
                    let u = w.upgrade().expect("the anchor lives");
                    drop((c, u));
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut collected = 0;
    for _ in 0..rounds / 10 {
        for _ in 0..10 {
            let a = heap.alloc(Node {
                next: Mutex::new(None),
            });
            let b = heap.alloc(Node {
                next: Mutex::new(Some(a.clone())),
            });
            *a.next.lock().unwrap() = Some(b);
        }
        collected += heap.collect();
    }
    stop.store(true, SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(collected, 2 * rounds);
    // The workers' last drops of the anchor (this thread's) wait in this thread's queue.
    heap.safepoint();
    assert_eq!(Gc::strong_count(&anchor), 1);
    drop(anchor);
    assert_eq!(heap.live_objects(), 0);
}

/// Two threads collecting at once: one runs, the other waits for it (and returns 0); every
/// cycle is collected exactly once.
#[test]
fn two_collectors_at_once() {
    let heap = Heap::new();
    let n = reps(200, 10);
    for _ in 0..n {
        let l = list(&heap);
        push(&l, any(&l));
    }
    let go = Arc::new(Barrier::new(2));
    let (h, g) = (heap.clone(), go.clone());
    let other = thread::spawn(move || {
        h.safepoint();
        g.wait();
        h.collect()
    });
    go.wait();
    let mine = heap.collect();
    // Joining blocks: done detached, or the other thread's collection could not stop this one.
    let theirs = heap.detached(|| other.join().unwrap());
    assert_eq!(mine + theirs, n);
    assert_eq!(heap.live_objects(), 0);
}

/// A collection asked for on another thread while one runs is answered 0 at once, and is not
/// lost: the running collector runs one more before its `collect` returns, which frees the
/// cycle the other thread dropped before asking (sixteenth session; until then it waited for
/// some later collection). Only one more; the collector's `collect` returns both counts.
#[test]
fn a_collection_asked_for_while_another_runs_is_run_by_the_collector() {
    /// A self-cycle whose finalizer, run by the first collection with the world running,
    /// tells the other thread so and waits until it has asked for its collection.
    #[derive(Trace)]
    #[reap(sync_finalize)]
    struct Waiter {
        me: Mutex<Option<Gc<Waiter>>>,
        #[reap(skip)]
        chans: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<usize>)>>,
        #[reap(skip)]
        log: Arc<Log>,
    }
    impl Finalize for Waiter {
        fn finalize(this: &Gc<Self>) {
            let (started, asked) = this.chans.lock().unwrap().take().expect("finalized once");
            started.send(()).unwrap();
            let answer = asked.recv().unwrap();
            this.log
                .push(format!("the other thread was answered {answer}"));
        }
    }
    let heap = Heap::new();
    let log = Log::new();
    let (started_tx, started_rx) = mpsc::channel();
    let (asked_tx, asked_rx) = mpsc::channel();
    let w = heap.alloc(Waiter {
        me: Mutex::new(None),
        chans: Mutex::new(Some((started_tx, asked_rx))),
        log: log.clone(),
    });
    *w.me.lock().unwrap() = Some(w.clone());
    drop(w);
    let h = heap.clone();
    let other = thread::spawn(move || {
        // Not attached yet: its wait does not hold up the first collection's pause.
        started_rx.recv().unwrap();
        let cycle = list(&h);
        push(&cycle, any(&cycle));
        let weak = Weak::new(&cycle);
        drop(cycle);
        asked_tx.send(h.collect()).unwrap();
        weak
    });
    let before = heap.get_stats()[2].collections;
    assert_eq!(
        heap.collect(),
        2,
        "the waiter, then the other thread's cycle"
    );
    let weak = heap.detached(|| other.join().unwrap());
    assert_eq!(log.events(), ["the other thread was answered 0"]);
    assert!(
        weak.upgrade().is_none(),
        "the cycle dropped before asking is freed"
    );
    assert_eq!(
        heap.get_stats()[2].collections - before,
        2,
        "one more, no more"
    );
    drop(weak);
    assert_eq!(heap.live_objects(), 0);
}

/// A finalizer that collects (a nested collection on the collecting thread returns 0).
#[test]
fn collect_from_a_finalizer_during_collection_returns_zero() {
    #[derive(Trace)]
    #[reap(sync_finalize)]
    struct Node {
        me: Mutex<Option<Gc<Node>>>,
        #[reap(skip)]
        heap: Heap,
        #[reap(skip)]
        log: Arc<Log>,
    }
    impl Finalize for Node {
        fn finalize(this: &Gc<Self>) {
            let n = this.heap.collect();
            this.log.push(format!("nested collect {n}"));
        }
    }
    let heap = Heap::new();
    let log = Log::new();
    let a = heap.alloc(Node {
        me: Mutex::new(None),
        heap: heap.clone(),
        log: log.clone(),
    });
    *a.me.lock().unwrap() = Some(a.clone());
    drop(a);
    assert_eq!(heap.collect(), 1);
    assert_eq!(log.events(), ["nested collect 0"]);
    assert_eq!(heap.live_objects(), 0);
}

/// A chain made on a scoped thread and dropped by the caller as soon as the scope returns,
/// while the thread may still be running its thread-local destructors (where it leaves the
/// heap): after one collection nothing is left. The collection merges the head (queued to the
/// exiting owner) and runs its death after the pause, which drops the next node, owned by the
/// exiting thread, and so on down the chain: once the owner's exit has begun, each of those
/// drops is merged by the dropping thread, not queued to the exiting one (whose queue this
/// collection has already drained: each later collection used to free one more node).
#[test]
fn chain_dropped_as_owner_exits_freed_by_one_collection() {
    const LINKS: usize = reps(200, 20);
    #[derive(Trace)]
    struct Node {
        next: Option<Gc<Node>>,
    }
    for round in 0..reps(40, 2) {
        let heap = Heap::new();
        let out = std::sync::Mutex::new(None);
        heap.detached(|| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut head = None;
                    for _ in 0..LINKS {
                        head = Some(heap.alloc(Node { next: head.take() }));
                    }
                    *out.lock().unwrap() = head;
                });
            });
        });
        drop(out.lock().unwrap().take());
        assert_eq!(heap.collect(), 0, "no cycles");
        assert_eq!(
            heap.live_objects(),
            0,
            "round {round}: the whole chain is freed by one collection"
        );
    }
}

/// A drop queued to an owner that is blocked (detached) takes the object's count to zero when
/// a collection merges the queue in its first pause: the object dies by its count after the
/// restart, in 3.1's order, its `Drop` free to read what it holds (the refcount path), as it
/// would had the owner merged the drop. The 2-cycle only it held is garbage from then on, and
/// the next collection takes it. (Making such an object garbage of the collection that merged
/// it, as free-threaded CPython hands it to its collector, would let a queued drop's timing
/// decide whether a cycle-free object's `Drop` may read its children: CPython's collector only
/// clears references, reap's drops whole values once every garbage object is poisoned.)
#[test]
fn queued_drop_merged_to_zero_in_a_pause_dies_by_its_count() {
    #[derive(Trace)]
    struct Holder {
        a: Gc<Instance>,
        #[reap(skip)]
        log: Arc<Log>,
    }
    impl Drop for Holder {
        fn drop(&mut self) {
            // Panics if the collector has poisoned `a` (reported to the hook).
            self.log.push(format!("holder drop saw {}", self.a.name));
        }
    }
    let heap = Heap::new();
    let reports = hooked(&heap);
    let log = Arc::new(Log::default());
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (tx, rx) = mpsc::channel();
    let (h, l) = (heap.clone(), log.clone());
    let owner = thread::spawn(move || {
        // `holder` → a ↔ b, all owned by this thread, which then blocks detached.
        let (a, b) = (instance(&h, "a", &l), instance(&h, "b", &l));
        *a.a.lock().unwrap() = Some(b.clone());
        *b.a.lock().unwrap() = Some(a.clone());
        let holder = h.alloc(Holder { a, log: l });
        let w = Weak::new(&holder);
        drop(b);
        // Sent from inside the detached section: the drop below cannot be merged by a safe
        // point of this thread before the collection.
        h.detached(|| {
            tx.send((holder, w)).unwrap();
            go_rx.recv().unwrap()
        });
    });
    let (holder, w) = rx.recv().unwrap();
    // The last reference, dropped here: queued to the blocked owner.
    drop(holder);
    assert!(w.upgrade().is_some(), "queued, not merged yet");
    assert_eq!(heap.collect(), 0, "the cycle was held when the pause began");
    assert!(w.upgrade().is_none(), "the holder died after the restart");
    assert_eq!(log.events(), ["holder drop saw a"]);
    assert!(reports.lock().unwrap().is_empty());
    assert_eq!(heap.collect(), 2, "the next collection takes the cycle");
    assert_eq!(count(&log, "del a") + count(&log, "del b"), 2);
    // The weak reference is an object too, the owner's: its drop here waits in the owner's
    // queue until the owner comes back from its detached section.
    drop(w);
    go_tx.send(()).unwrap();
    owner.join().unwrap();
    assert_eq!(heap.live_objects(), 0);
}
