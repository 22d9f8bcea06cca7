//! Shared mode (`reap::sync`) side by side with Local mode (`reap::Gc`), `std::sync::Arc`,
//! `std::rc::Rc` and `dumpster::sync::Gc` (dumpster has no weak references: it is left out of
//! the weak groups).
//!
//! Groups (each variant of a group measures the same work):
//! - `clone_drop`: 1000 clones + drops of a handle by the thread that allocated it (for
//!   `sync::Gc`, the owner: plain loads and stores).
//! - `clone_drop_foreign`: 1000 clones + drops on the bench thread of a handle allocated by
//!   another thread, which has *exited* before the measurement starts: the steady state of a
//!   handle shared by a pool whose allocating worker is gone (for `sync::Gc`, every clone and
//!   drop is then an atomic operation on the shared count). The owner's exit does not change
//!   the foreign path: a foreign clone + drop that never takes the shared count below zero
//!   neither looks at the owner nor queues to it. `sync_owner_exited` is on a thread attached
//!   to the heap (an interpreter's threads are); `sync_owner_exited_unattached` on one that is
//!   not, whose operations go through the heap's gate (issue 13's stop-the-world);
//!   `sync_owner_exited_collected` after a collection, whose walk merges the objects of
//!   threads that left the heap (as CPython 3.13t's collector does);
//!   `sync_merged` on an object made in a detached section, merged (owned by no thread), whose
//!   drop is one `fetch_sub` with no load before it (an unmerged object's is a
//!   compare-and-swap from a load).
//! - `binary_trees`: build and drop one complete binary tree of depth 16 (131,071 nodes, each
//!   two `Option<Handle<Node>>`), GCBench's shape as in `refcount.rs`. Local mode is measured
//!   with its cycle collector on (the default) and off (Shared mode collects cycles only when
//!   asked, so `local_gc_off` is the like-for-like baseline).
//! - `weak_create`: allocate an object, make a weak reference to it, drop both.
//! - `weak_create_again`: 1000 `Weak::new` + drops on a live object that already has a weak
//!   reference (kept alive), on the allocating thread: the repeated `weakref.ref(o)`, which
//!   returns the shared reference (`Arc`/`Rc`: `downgrade`).
//! - `weak_upgrade`: 1000 upgrades + drops of an existing weak reference to a live object, on
//!   the allocating thread.
//! - `two_threads_trees`: `TREES` depth-16 trees built and dropped by one thread (`*/1thread`)
//!   and the same number split across two threads (`*/2threads`), both on fresh scoped
//!   threads; for `sync::Gc` both threads allocate from one shared heap. Throughput ratio =
//!   time(1thread) / time(2threads); 2.0 is perfect scaling.
//! - `collect_rings`: one full collection of `RINGS` garbage rings of 4 nodes (each node one
//!   handle behind its mode's cell: `RefCell` in Local mode, `Mutex` in Shared mode), built
//!   untimed before each collection on a heap whose automatic collection is off: issue 13's
//!   "collection in Shared mode with one thread" target, in time. `sync_reap_mutex` links the
//!   Shared nodes through `reap::sync::Mutex` (its state read, not taken, by the snapshot),
//!   `sync_oncelock` through a `OnceLock`, which tracing reads without a lock.
//! - `mutex_lock_unlock`: 1000 uncontended lock + unlock pairs of `reap::sync::Mutex` against
//!   `std::sync::Mutex` (the price of the snapshot's frozen-count check on the mutator).

use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// Clones + drops per iteration of the clone_drop and weak_upgrade groups.
const N: usize = 1000;
/// Tree depth of the tree groups.
const DEPTH: u32 = 16;
/// Trees per iteration of `two_threads_trees` (split evenly between the two threads).
const TREES: usize = 4;

#[inline(always)]
fn churn<H: Clone>(h: &H) {
    let h = black_box(h);
    for _ in 0..N {
        let x = h.clone();
        black_box(&x);
        drop(x);
    }
}

fn clone_drop(c: &mut Criterion) {
    let mut g = c.benchmark_group("clone_drop");
    let local_heap = reap::Heap::new();
    let local = local_heap.alloc(5_u64);
    g.bench_function("local", |b| b.iter(|| churn(&local)));
    let sync_heap = reap::sync::Heap::new();
    let sync = sync_heap.alloc(5_u64);
    g.bench_function("sync_owner", |b| b.iter(|| churn(&sync)));
    let arc = Arc::new(5_u64);
    g.bench_function("arc", |b| b.iter(|| churn(&arc)));
    let rc = Rc::new(5_u64);
    g.bench_function("rc", |b| b.iter(|| churn(&rc)));
    let dumpster = dumpster::sync::Gc::new(5_u64);
    g.bench_function("dumpster_sync", |b| b.iter(|| churn(&dumpster)));
    g.finish();
}

/// `make` runs on a new thread, which has exited when this returns.
fn on_other_thread<T: Send + 'static>(make: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(make).join().unwrap()
}

fn clone_drop_foreign(c: &mut Criterion) {
    let mut g = c.benchmark_group("clone_drop_foreign");
    let sync_heap = reap::sync::Heap::new();
    let h = sync_heap.clone();
    let sync = on_other_thread(move || h.alloc(5_u64));
    // A thread that never attached to the heap goes through its gate (a counter a collection
    // waits on) on every clone and drop: measured apart, then attached.
    g.bench_function("sync_owner_exited_unattached", |b| b.iter(|| churn(&sync)));
    sync_heap.safepoint();
    g.bench_function("sync_owner_exited", |b| b.iter(|| churn(&sync)));
    // A collection after the owner's exit merges its objects: each drop one `fetch_sub`.
    sync_heap.collect();
    g.bench_function("sync_owner_exited_collected", |b| b.iter(|| churn(&sync)));
    // Made in a detached section: merged, owned by no thread (each drop one `fetch_sub`).
    let merged = sync_heap.detached(|| sync_heap.alloc(5_u64));
    g.bench_function("sync_merged", |b| b.iter(|| churn(&merged)));
    let arc = on_other_thread(|| Arc::new(5_u64));
    g.bench_function("arc", |b| b.iter(|| churn(&arc)));
    let dumpster = on_other_thread(|| dumpster::sync::Gc::new(5_u64));
    g.bench_function("dumpster_sync", |b| b.iter(|| churn(&dumpster)));
    g.finish();
}

/// The fields are only ever dropped: that is the workload.
#[allow(dead_code)]
#[derive(reap::Trace)]
struct LocalNode {
    left: Option<reap::Gc<LocalNode>>,
    right: Option<reap::Gc<LocalNode>>,
}

#[allow(dead_code)]
#[derive(reap::Trace)]
struct SyncNode {
    left: Option<reap::sync::Gc<SyncNode>>,
    right: Option<reap::sync::Gc<SyncNode>>,
}

#[allow(dead_code)]
struct ArcNode {
    left: Option<Arc<ArcNode>>,
    right: Option<Arc<ArcNode>>,
}

#[allow(dead_code)]
struct RcNode {
    left: Option<Rc<RcNode>>,
    right: Option<Rc<RcNode>>,
}

#[allow(dead_code)]
#[derive(dumpster::Trace)]
struct DumpsterNode {
    left: Option<dumpster::sync::Gc<DumpsterNode>>,
    right: Option<dumpster::sync::Gc<DumpsterNode>>,
}

/// A complete binary tree of `depth` built bottom-up (children before parent), through `new`.
macro_rules! tree_fn {
    ($name:ident, $handle:ty, $node:ident) => {
        fn $name(depth: u32, new: &impl Fn($node) -> $handle) -> $handle {
            let (left, right) = if depth == 0 {
                (None, None)
            } else {
                (Some($name(depth - 1, new)), Some($name(depth - 1, new)))
            };
            new($node { left, right })
        }
    };
}

tree_fn!(local_tree, reap::Gc<LocalNode>, LocalNode);
tree_fn!(sync_tree, reap::sync::Gc<SyncNode>, SyncNode);
tree_fn!(arc_tree, Arc<ArcNode>, ArcNode);
tree_fn!(rc_tree, Rc<RcNode>, RcNode);
tree_fn!(
    dumpster_tree,
    dumpster::sync::Gc<DumpsterNode>,
    DumpsterNode
);

fn binary_trees(c: &mut Criterion) {
    let mut g = c.benchmark_group("binary_trees");
    g.sample_size(20);
    let local_on = reap::Heap::new();
    g.bench_function("local_gc_on", |b| {
        b.iter(|| drop(black_box(local_tree(DEPTH, &|n| local_on.alloc(n)))))
    });
    let local_off = reap::Heap::new();
    local_off.disable();
    g.bench_function("local_gc_off", |b| {
        b.iter(|| drop(black_box(local_tree(DEPTH, &|n| local_off.alloc(n)))))
    });
    let sync_heap = reap::sync::Heap::new();
    g.bench_function("sync", |b| {
        b.iter(|| drop(black_box(sync_tree(DEPTH, &|n| sync_heap.alloc(n)))))
    });
    g.bench_function("arc", |b| {
        b.iter(|| drop(black_box(arc_tree(DEPTH, &Arc::new))))
    });
    g.bench_function("rc", |b| {
        b.iter(|| drop(black_box(rc_tree(DEPTH, &Rc::new))))
    });
    g.bench_function("dumpster_sync", |b| {
        b.iter(|| drop(black_box(dumpster_tree(DEPTH, &dumpster::sync::Gc::new))))
    });
    g.finish();
}

fn weak(c: &mut Criterion) {
    let local_heap = reap::Heap::new();
    let sync_heap = reap::sync::Heap::new();

    let mut g = c.benchmark_group("weak_create");
    g.bench_function("local", |b| {
        b.iter(|| {
            let o = local_heap.alloc(black_box(1_u64));
            let w = reap::Weak::new(&o);
            black_box((&o, &w));
        })
    });
    g.bench_function("sync", |b| {
        b.iter(|| {
            let o = sync_heap.alloc(black_box(1_u64));
            let w = reap::sync::Weak::new(&o);
            black_box((&o, &w));
        })
    });
    g.bench_function("arc", |b| {
        b.iter(|| {
            let o = Arc::new(black_box(1_u64));
            let w = Arc::downgrade(&o);
            black_box((&o, &w));
        })
    });
    g.bench_function("rc", |b| {
        b.iter(|| {
            let o = Rc::new(black_box(1_u64));
            let w = Rc::downgrade(&o);
            black_box((&o, &w));
        })
    });
    g.finish();

    let local = local_heap.alloc(1_u64);
    let local_w = reap::Weak::new(&local);
    let sync = sync_heap.alloc(1_u64);
    let sync_w = reap::sync::Weak::new(&sync);
    let arc = Arc::new(1_u64);
    let rc = Rc::new(1_u64);
    macro_rules! again {
        ($new:expr) => {{
            for _ in 0..N {
                let w = $new;
                black_box(&w);
            }
        }};
    }
    let mut g = c.benchmark_group("weak_create_again");
    g.bench_function("local", |b| {
        b.iter(|| again!(reap::Weak::new(black_box(&local))))
    });
    g.bench_function("sync", |b| {
        b.iter(|| again!(reap::sync::Weak::new(black_box(&sync))))
    });
    g.bench_function("arc", |b| {
        b.iter(|| again!(Arc::downgrade(black_box(&arc))))
    });
    g.bench_function("rc", |b| b.iter(|| again!(Rc::downgrade(black_box(&rc)))));
    g.finish();
    drop((local, local_w, sync, sync_w, arc, rc));

    let local = local_heap.alloc(1_u64);
    let local_w = reap::Weak::new(&local);
    let sync = sync_heap.alloc(1_u64);
    let sync_w = reap::sync::Weak::new(&sync);
    let arc = Arc::new(1_u64);
    let arc_w = Arc::downgrade(&arc);
    let rc = Rc::new(1_u64);
    let rc_w = Rc::downgrade(&rc);
    macro_rules! upgrades {
        ($w:expr) => {{
            let w = black_box(&$w);
            for _ in 0..N {
                let s = w.upgrade();
                black_box(&s);
            }
        }};
    }
    let mut g = c.benchmark_group("weak_upgrade");
    g.bench_function("local", |b| b.iter(|| upgrades!(local_w)));
    g.bench_function("sync", |b| b.iter(|| upgrades!(sync_w)));
    g.bench_function("arc", |b| b.iter(|| upgrades!(arc_w)));
    g.bench_function("rc", |b| b.iter(|| upgrades!(rc_w)));
    g.finish();
    drop((local, sync, arc, rc));
}

/// Time for `iters` rounds of `TREES` trees, built and dropped by `threads` fresh threads, each
/// doing its share (`work(k)` builds and drops `k` trees); thread start and join included
/// (tens of microseconds against milliseconds per tree).
fn split(iters: u64, threads: usize, work: &(impl Fn(usize) + Sync)) -> Duration {
    let per_thread = iters as usize * TREES / threads;
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| work(per_thread));
        }
    });
    start.elapsed()
}

fn two_threads_trees(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_threads_trees");
    g.sample_size(10);
    let sync_heap = reap::sync::Heap::new();
    let sync_work = |k: usize| {
        for _ in 0..k {
            drop(black_box(sync_tree(DEPTH, &|n| sync_heap.alloc(n))));
        }
    };
    let arc_work = |k: usize| {
        for _ in 0..k {
            drop(black_box(arc_tree(DEPTH, &Arc::new)));
        }
    };
    let dumpster_work = |k: usize| {
        for _ in 0..k {
            drop(black_box(dumpster_tree(DEPTH, &dumpster::sync::Gc::new)));
        }
    };
    // Each thread its own Local heap: the machine's scaling with no shared state at all.
    let local_work = |k: usize| {
        let heap = reap::Heap::new();
        heap.disable();
        for _ in 0..k {
            drop(black_box(local_tree(DEPTH, &|n| heap.alloc(n))));
        }
    };
    for threads in [1, 2] {
        let id = |name| {
            BenchmarkId::new(
                name,
                format!("{threads}thread{}", if threads > 1 { "s" } else { "" }),
            )
        };
        g.bench_function(id("sync"), |b| {
            b.iter_custom(|iters| split(iters, threads, &sync_work))
        });
        g.bench_function(id("arc"), |b| {
            b.iter_custom(|iters| split(iters, threads, &arc_work))
        });
        g.bench_function(id("dumpster_sync"), |b| {
            b.iter_custom(|iters| split(iters, threads, &dumpster_work))
        });
        g.bench_function(id("local_gc_off_per_thread"), |b| {
            b.iter_custom(|iters| split(iters, threads, &local_work))
        });
    }
    g.finish();
}

/// Garbage rings of 4 nodes per collection of `collect_rings` (40,000 objects).
const RINGS: usize = 10_000;

#[derive(reap::Trace)]
struct LocalRing {
    next: std::cell::RefCell<Option<reap::Gc<LocalRing>>>,
}

#[derive(reap::Trace)]
struct SyncRing {
    next: std::sync::Mutex<Option<reap::sync::Gc<SyncRing>>>,
}

/// A Shared ring node whose link needs no lock to read (`OnceLock::get`): tracing it takes
/// none, so `collect_rings/sync_oncelock` measures the collector without `Mutex`'s two
/// locked instructions a node (its `try_lock` and its release after the verdict).
#[derive(reap::Trace)]
struct OnceRing {
    next: std::sync::OnceLock<reap::sync::Gc<OnceRing>>,
}

/// A Shared ring node linked through reap's own lock, which the snapshot reads without
/// taking (`collect_rings/sync_reap_mutex`).
#[derive(reap::Trace)]
struct ReapRing {
    next: reap::sync::Mutex<Option<reap::sync::Gc<ReapRing>>>,
}

/// Builds `RINGS` garbage rings of 4 nodes of type `$ty` on `$heap`, each node holding the one
/// before it in a cell made by `$new` (the first node's, reached by `$link`, is set to the
/// last node after the loop).
macro_rules! rings {
    ($heap:expr, $ty:ident, $new:path, $link:ident) => {
        for _ in 0..RINGS {
            let first = $heap.alloc($ty { next: $new(None) });
            let mut last = first.clone();
            for _ in 0..3 {
                last = $heap.alloc($ty {
                    next: $new(Some(last)),
                });
            }
            *first.next.$link().unwrap_or_else(|_| unreachable!()) = Some(last);
        }
    };
}

fn collect_rings(c: &mut Criterion) {
    let mut g = c.benchmark_group("collect_rings");
    g.sample_size(20);
    let local = reap::Heap::new();
    local.disable();
    g.bench_function("local", |b| {
        b.iter_batched(
            || rings!(local, LocalRing, std::cell::RefCell::new, try_borrow_mut),
            |()| assert_eq!(local.collect(2), 4 * RINGS),
            criterion::BatchSize::PerIteration,
        )
    });
    let sync = reap::sync::Heap::new();
    sync.disable();
    g.bench_function("sync", |b| {
        b.iter_batched(
            || rings!(sync, SyncRing, std::sync::Mutex::new, lock),
            |()| assert_eq!(sync.collect(), 4 * RINGS),
            criterion::BatchSize::PerIteration,
        )
    });
    g.bench_function("sync_reap_mutex", |b| {
        b.iter_batched(
            || {
                for _ in 0..RINGS {
                    let first = sync.alloc(ReapRing {
                        next: reap::sync::Mutex::new(None),
                    });
                    let mut last = first.clone();
                    for _ in 0..3 {
                        last = sync.alloc(ReapRing {
                            next: reap::sync::Mutex::new(Some(last)),
                        });
                    }
                    *first.next.lock() = Some(last);
                }
            },
            |()| assert_eq!(sync.collect(), 4 * RINGS),
            criterion::BatchSize::PerIteration,
        )
    });
    g.bench_function("sync_oncelock", |b| {
        b.iter_batched(
            || {
                for _ in 0..RINGS {
                    let first = sync.alloc(OnceRing {
                        next: std::sync::OnceLock::new(),
                    });
                    let mut last = first.clone();
                    for _ in 0..3 {
                        let n = sync.alloc(OnceRing {
                            next: std::sync::OnceLock::new(),
                        });
                        let _ = n.next.set(last);
                        last = n;
                    }
                    let _ = first.next.set(last);
                }
            },
            |()| assert_eq!(sync.collect(), 4 * RINGS),
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn mutex_lock_unlock(c: &mut Criterion) {
    let mut g = c.benchmark_group("mutex_lock_unlock");
    let reap_m = reap::sync::Mutex::new(0_u64);
    g.bench_function("reap", |b| {
        b.iter(|| {
            for _ in 0..N {
                *black_box(&reap_m).lock() += 1;
            }
        })
    });
    let std_m = std::sync::Mutex::new(0_u64);
    g.bench_function("std", |b| {
        b.iter(|| {
            for _ in 0..N {
                *black_box(&std_m).lock().unwrap() += 1;
            }
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    clone_drop,
    clone_drop_foreign,
    binary_trees,
    weak,
    two_threads_trees,
    collect_rings,
    mutex_lock_unlock
);
criterion_main!(benches);
