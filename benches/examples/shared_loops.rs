//! Shared mode's hot paths next to Local mode's, as plain loops for instruction counting with
//! cachegrind (steady from run to run, unlike times on a shared machine):
//!
//! ```sh
//! cargo build --release -p reap-bench --example shared_loops
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/shared_loops sync-trees 10
//! ```
//!
//! Workloads (`<mode>`: `sync-` for Shared mode, `local-` for Local mode; `N` the second
//! argument, 10 by default):
//! - `trees`: `N` binary trees of depth 16 (131,071 nodes each) built and dropped (automatic
//!   collection off in both modes: this measures counting and allocation);
//! - `rings`: `N` rounds of 10,000 rings of 4 nodes built, dropped and collected by one full
//!   collection; `rings-broken`: the same rings, each broken by hand before it is dropped (so
//!   they die on the refcount path): the difference between the two is the collection's cost;
//!   `sync-once-rings`: the Shared rings linked through a `OnceLock` (traced without a lock);
//!   `sync-mutex-rings` (and `-broken`): linked through `reap::sync::Mutex`; `local-rings` and
//!   `sync-mutex-rings` print the median and fastest collection time;
//! - `upgrade`: `N` × 100,000 upgrades of a weak reference to a live object, each result dropped;
//! - `weak-create`: `N` × 10,000 rounds of an object allocated, a weak reference made to it, and
//!   both dropped;
//! - `foreign` (`sync-` or `arc-`): `N` × 100,000 clones and drops of a handle whose allocating
//!   thread has exited (Shared mode: on an attached thread); also prints the time a pair;
//! - `owner` (`sync-`, `local-` or `arc-`): `N` × 100,000 clones and drops of a handle by the
//!   thread that allocated it; also prints the time a pair;
//! - `sync-finalize`: `N` × 100,000 objects with a finalizer allocated and dropped by their
//!   owner (each death runs its finalizer on the refcount path); prints the time a death.
//!
//! Divide the instruction count by the work done (131,071 × `N` nodes, and so on).

use std::hint::black_box;

use reap::Trace;

/// A Shared object whose finalizer does nothing but read its value (`sync-finalize`).
#[derive(Trace)]
#[reap(sync_finalize)]
struct Finalized(#[reap(skip)] u64);

impl reap::sync::Finalize for Finalized {
    fn finalize(this: &reap::sync::Gc<Self>) {
        black_box(this.0);
    }
}

/// The fields are only ever dropped: that is the workload.
#[allow(dead_code)]
#[derive(Trace)]
struct LocalNode {
    left: Option<reap::Gc<LocalNode>>,
    right: Option<reap::Gc<LocalNode>>,
}

#[allow(dead_code)]
#[derive(Trace)]
struct SyncNode {
    left: Option<reap::sync::Gc<SyncNode>>,
    right: Option<reap::sync::Gc<SyncNode>>,
}

fn local_tree(depth: u32, heap: &reap::Heap) -> reap::Gc<LocalNode> {
    let (left, right) = if depth == 0 {
        (None, None)
    } else {
        (
            Some(local_tree(depth - 1, heap)),
            Some(local_tree(depth - 1, heap)),
        )
    };
    heap.alloc(LocalNode { left, right })
}

fn sync_tree(depth: u32, heap: &reap::sync::Heap) -> reap::sync::Gc<SyncNode> {
    let (left, right) = if depth == 0 {
        (None, None)
    } else {
        (
            Some(sync_tree(depth - 1, heap)),
            Some(sync_tree(depth - 1, heap)),
        )
    };
    heap.alloc(SyncNode { left, right })
}

#[derive(Trace)]
struct LocalRing {
    next: std::cell::RefCell<Option<reap::Gc<LocalRing>>>,
}

#[derive(Trace)]
struct SyncRing {
    next: std::sync::Mutex<Option<reap::sync::Gc<SyncRing>>>,
}

const RINGS: usize = 10_000;

/// One round of `RINGS` rings of 4 Local nodes; broken by hand if `broken`.
fn local_rings(heap: &reap::Heap, broken: bool) {
    for _ in 0..RINGS {
        let first = heap.alloc(LocalRing {
            next: std::cell::RefCell::new(None),
        });
        let mut last = first.clone();
        for _ in 0..3 {
            let n = heap.alloc(LocalRing {
                next: std::cell::RefCell::new(Some(last)),
            });
            last = n;
        }
        *first.next.borrow_mut() = Some(last);
        if broken {
            first.next.borrow_mut().take();
        }
    }
}

/// One round of `RINGS` rings of 4 Shared nodes; broken by hand if `broken`.
fn sync_rings(heap: &reap::sync::Heap, broken: bool) {
    for _ in 0..RINGS {
        let first = heap.alloc(SyncRing {
            next: std::sync::Mutex::new(None),
        });
        let mut last = first.clone();
        for _ in 0..3 {
            let n = heap.alloc(SyncRing {
                next: std::sync::Mutex::new(Some(last)),
            });
            last = n;
        }
        *first.next.lock().unwrap() = Some(last);
        if broken {
            first.next.lock().unwrap().take();
        }
    }
}

/// A Shared ring node linked through `reap::sync::Mutex` (read, not taken, by the snapshot).
#[derive(Trace)]
struct ReapRing {
    next: reap::sync::Mutex<Option<reap::sync::Gc<ReapRing>>>,
}

/// One round of `RINGS` rings of 4 `ReapRing` nodes (criterion's
/// `collect_rings/sync_reap_mutex`); broken by hand if `broken`.
fn sync_mutex_rings(heap: &reap::sync::Heap, broken: bool) {
    for _ in 0..RINGS {
        let first = heap.alloc(ReapRing {
            next: reap::sync::Mutex::new(None),
        });
        let mut last = first.clone();
        for _ in 0..3 {
            let n = heap.alloc(ReapRing {
                next: reap::sync::Mutex::new(Some(last)),
            });
            last = n;
        }
        *first.next.lock() = Some(last);
        if broken {
            first.next.lock().take();
        }
    }
}

/// A Shared ring node whose link tracing reads without a lock (`OnceLock::get`).
#[derive(Trace)]
struct OnceRing {
    next: std::sync::OnceLock<reap::sync::Gc<OnceRing>>,
}

/// `RINGS` garbage rings of 4 `OnceRing` nodes (criterion's `collect_rings/sync_oncelock`).
fn sync_once_rings(heap: &reap::sync::Heap) {
    for _ in 0..RINGS {
        let first = heap.alloc(OnceRing {
            next: std::sync::OnceLock::new(),
        });
        let mut last = first.clone();
        for _ in 0..3 {
            let n = heap.alloc(OnceRing {
                next: std::sync::OnceLock::new(),
            });
            let _ = n.next.set(last);
            last = n;
        }
        let _ = first.next.set(last);
    }
}

/// Allocations made to build the live heap of `live-rings` (about half stay alive).
const LIVE: usize = 120_000;

/// A deterministic pseudo-random sequence (xorshift).
fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Defines the live heap's three tracked types of one mode, and the function that builds it
/// (the handles it returns are the roots).
macro_rules! live_heap {
    ($build:ident, $heap:ty, $gc:ident, $cell:ident, $lock:ident,
     $small:ident, $mid:ident, $big:ident) => {
        live_heap!(@ty $small, $gc, $cell, 0);
        live_heap!(@ty $mid, $gc, $cell, 4);
        live_heap!(@ty $big, $gc, $cell, 12);

        fn $build(heap: &$heap) -> Vec<Box<dyn std::any::Any>> {
            let mut all: Vec<Option<Box<dyn std::any::Any>>> = (0..LIVE)
                .map(|i| {
                    Some(match i % 4 {
                        0 => Box::new(heap.alloc($small { next: $cell::new(None), pad: [0; 0] }))
                            as Box<dyn std::any::Any>,
                        1 => Box::new(heap.alloc($mid { next: $cell::new(None), pad: [0; 4] })),
                        2 => Box::new(heap.alloc($big { next: $cell::new(None), pad: [0; 12] })),
                        _ => Box::new(heap.alloc([i as u64; 2])),
                    })
                })
                .collect();
            // About half freed, in a scattered order.
            let mut x = 0x9E37_79B9_7F4A_7C15_u64;
            for _ in 0..LIVE / 2 {
                all[(xorshift(&mut x) % LIVE as u64) as usize] = None;
            }
            // The rest in chains of 100 of one type: only the heads, and the untracked
            // objects, are roots.
            let mut roots = Vec::new();
            let mut small: Option<($gc<$small>, usize)> = None;
            let mut mid: Option<($gc<$mid>, usize)> = None;
            let mut big: Option<($gc<$big>, usize)> = None;
            for h in all.into_iter().flatten() {
                let h = match h.downcast::<$gc<$small>>() {
                    Ok(o) => {
                        live_heap!(@link small, o, roots, $lock);
                        continue;
                    }
                    Err(h) => h,
                };
                let h = match h.downcast::<$gc<$mid>>() {
                    Ok(o) => {
                        live_heap!(@link mid, o, roots, $lock);
                        continue;
                    }
                    Err(h) => h,
                };
                match h.downcast::<$gc<$big>>() {
                    Ok(o) => live_heap!(@link big, o, roots, $lock),
                    Err(h) => roots.push(h),
                }
            }
            roots
        }
    };
    (@ty $name:ident, $gc:ident, $cell:ident, $n:expr) => {
        #[allow(dead_code)]
        #[derive(Trace)]
        struct $name {
            next: $cell<Option<$gc<$name>>>,
            pad: [u64; $n],
        }
    };
    (@link $chain:ident, $o:ident, $roots:ident, $lock:ident) => {{
        let o = *$o;
        match $chain.take() {
            Some((prev, n)) if n < 100 => {
                *prev.next.$lock() = Some(o.clone());
                $chain = Some((o, n + 1));
            }
            _ => {
                $roots.push(Box::new(o.clone()) as Box<dyn std::any::Any>);
                $chain = Some((o, 1));
            }
        }
    }};
}

/// `RefCell::borrow_mut` and `Mutex::lock`, under one name for the macro above.
trait LockNext<T> {
    fn lock_next(&self) -> impl std::ops::DerefMut<Target = T> + '_;
}

impl<T> LockNext<T> for std::cell::RefCell<T> {
    fn lock_next(&self) -> impl std::ops::DerefMut<Target = T> + '_ {
        self.borrow_mut()
    }
}

impl<T> LockNext<T> for std::sync::Mutex<T> {
    fn lock_next(&self) -> impl std::ops::DerefMut<Target = T> + '_ {
        self.lock().unwrap()
    }
}

use reap::sync::Gc as SyncGc;
use reap::sync::Weak as SyncWeak;
use reap::Gc as LocalGc;
use reap::Weak as LocalWeak;
use std::cell::RefCell;
use std::sync::Mutex;

live_heap!(
    local_live_heap,
    reap::Heap,
    LocalGc,
    RefCell,
    lock_next,
    LocalSmall,
    LocalMid,
    LocalBig
);
live_heap!(
    sync_live_heap,
    reap::sync::Heap,
    SyncGc,
    Mutex,
    lock_next,
    SyncSmall,
    SyncMid,
    SyncBig
);

/// `n` × 100,000 clones and drops of `h`, timed (the time goes to stderr: cachegrind counts
/// the instructions, a plain run the nanoseconds a pair).
/// `n` × 100,000 clones and drops of `h`, timed (the `foreign` and `owner` modes).
fn foreign_churn<H: Clone>(h: &H, n: u32) {
    let h = black_box(h);
    let start = std::time::Instant::now();
    for _ in 0..n * 100_000 {
        let x = h.clone();
        black_box(&x);
        drop(x);
    }
    let ns = start.elapsed().as_nanos() as f64 / (f64::from(n) * 100_000.0);
    eprintln!("{ns:.2} ns a clone + drop");
}

/// As [`foreign_churn`], two clones at a time, then both drops (the drops come in a run).
fn foreign_churn_two<H: Clone>(h: &H, n: u32) {
    let h = black_box(h);
    let start = std::time::Instant::now();
    for _ in 0..n * 50_000 {
        let (x, y) = (h.clone(), h.clone());
        black_box((&x, &y));
        drop(x);
        drop(y);
    }
    let ns = start.elapsed().as_nanos() as f64 / (f64::from(n) * 100_000.0);
    eprintln!("{ns:.2} ns a clone + drop");
}

/// Prints the median and the fastest of the collections' times (the `rings` modes).
fn report_collections(mut times: Vec<std::time::Duration>) {
    times.sort();
    if let (Some(min), Some(mid)) = (times.first(), times.get(times.len() / 2)) {
        eprintln!("collection: median {mid:.2?}, fastest {min:.2?}");
    }
}

/// First weak references on a real-heap shape (issue 12's weak create, beyond the one-object
/// loop): 1M live objects of three sizes, allocated among 500k others that die in a
/// pseudo-random order (free lists scrambled), visited in a shuffled order. Times, in ns an
/// object: making the first weak reference to each (kept), dropping the weak references, and
/// dropping the objects.
/// A vector shuffled in place by [`xorshift`] (Fisher–Yates).
trait Shuffle {
    fn shuffle(&mut self, x: &mut u64);
}

impl<T> Shuffle for Vec<T> {
    fn shuffle(&mut self, x: &mut u64) {
        for i in (1..self.len()).rev() {
            self.swap(i, (xorshift(x) % (i as u64 + 1)) as usize);
        }
    }
}

macro_rules! weak_first_heap {
    ($name:ident, $heap:ty, $weak:ident) => {
        fn $name() {
            const LIVE: usize = 1_000_000;
            let heap = <$heap>::new();
            let mut x = 0x9E37_79B9_7F4A_7C15_u64;
            let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
            let (mut da, mut db, mut dc) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..LIVE + LIVE / 2 {
                // A third die (500k), chosen pseudo-randomly.
                let doomed = da.len() + db.len() + dc.len() < LIVE / 2
                    && (xorshift(&mut x) % 3 == 0 || a.len() + b.len() + c.len() == LIVE);
                match (i % 3, doomed) {
                    (0, false) => a.push(heap.alloc(i as u64)),
                    (0, true) => da.push(heap.alloc(i as u64)),
                    (1, false) => b.push(heap.alloc([i as u64; 4])),
                    (1, true) => db.push(heap.alloc([i as u64; 4])),
                    (_, false) => c.push(heap.alloc([i as u64; 8])),
                    (_, true) => dc.push(heap.alloc([i as u64; 8])),
                }
            }
            // They die in a pseudo-random order within each size.
            for d in [&mut da as &mut dyn Shuffle, &mut db, &mut dc] {
                d.shuffle(&mut x);
            }
            drop((da, db, dc));
            let mut order: Vec<(u8, usize)> = (0..a.len())
                .map(|i| (0, i))
                .chain((0..b.len()).map(|i| (1, i)))
                .chain((0..c.len()).map(|i| (2, i)))
                .collect();
            order.shuffle(&mut x);
            let n = order.len() as f64;
            let start = std::time::Instant::now();
            let mut wa = Vec::with_capacity(a.len());
            let mut wb = Vec::with_capacity(b.len());
            let mut wc = Vec::with_capacity(c.len());
            for &(k, i) in &order {
                match k {
                    0 => wa.push($weak::new(&a[i])),
                    1 => wb.push($weak::new(&b[i])),
                    _ => wc.push($weak::new(&c[i])),
                }
            }
            let made = start.elapsed();
            let start = std::time::Instant::now();
            drop((wa, wb, wc));
            let weak_dropped = start.elapsed();
            let start = std::time::Instant::now();
            drop((a, b, c));
            let objects_dropped = start.elapsed();
            let ns = |d: std::time::Duration| d.as_nanos() as f64 / n;
            eprintln!(
                "{:.2} ns a round: first weak {:.2}, weak drop {:.2}, object drop {:.2} ns an object ({} objects)",
                ns(made + weak_dropped + objects_dropped),
                ns(made),
                ns(weak_dropped),
                ns(objects_dropped),
                order.len()
            );
        }
    };
}

weak_first_heap!(local_weak_first_heap, reap::Heap, LocalWeak);
weak_first_heap!(sync_weak_first_heap, reap::sync::Heap, SyncWeak);

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let n: u32 = std::env::args()
        .nth(2)
        .map_or(10, |s| s.parse().expect("N must be a number"));
    match mode.as_str() {
        "local-trees" => {
            let heap = reap::Heap::new();
            heap.disable();
            for _ in 0..n {
                drop(black_box(local_tree(16, &heap)));
            }
        }
        "local-rings" | "local-rings-broken" => {
            let heap = reap::Heap::new();
            heap.disable();
            let mut times = Vec::new();
            for _ in 0..n {
                local_rings(&heap, mode.ends_with("broken"));
                let start = std::time::Instant::now();
                black_box(heap.collect(2));
                times.push(start.elapsed());
            }
            report_collections(times);
        }
        "sync-rings" | "sync-rings-broken" => {
            let heap = reap::sync::Heap::new();
            heap.disable();
            for _ in 0..n {
                sync_rings(&heap, mode.ends_with("broken"));
                black_box(heap.collect());
            }
        }
        "sync-mutex-rings" | "sync-mutex-rings-broken" => {
            let heap = reap::sync::Heap::new();
            heap.disable();
            let mut times = Vec::new();
            for _ in 0..n {
                sync_mutex_rings(&heap, mode.ends_with("broken"));
                let start = std::time::Instant::now();
                black_box(heap.collect());
                times.push(start.elapsed());
            }
            report_collections(times);
        }
        "sync-once-rings" => {
            let heap = reap::sync::Heap::new();
            heap.disable();
            for _ in 0..n {
                sync_once_rings(&heap);
                black_box(heap.collect());
            }
        }
        "local-live-rings" | "local-live-rings-broken" => {
            let heap = reap::Heap::new();
            heap.disable();
            let roots = local_live_heap(&heap);
            heap.collect(2);
            let mut times = Vec::new();
            for _ in 0..n {
                local_rings(&heap, mode.ends_with("broken"));
                let start = std::time::Instant::now();
                black_box(heap.collect(2));
                times.push(start.elapsed());
            }
            report_collections(times);
            drop(roots);
        }
        "sync-live-rings" | "sync-live-rings-broken" => {
            let heap = reap::sync::Heap::new();
            heap.disable();
            let roots = sync_live_heap(&heap);
            heap.collect();
            for _ in 0..n {
                sync_rings(&heap, mode.ends_with("broken"));
                black_box(heap.collect());
            }
            drop(roots);
        }
        "sync-foreign-merged" => {
            // Allocated in a detached section (merged, owned by no thread), then cloned and
            // dropped by this attached thread: each operation one `fetch_add` / `fetch_sub`.
            let heap = reap::sync::Heap::new();
            heap.safepoint();
            let o = heap.detached(|| heap.alloc(5_u64));
            foreign_churn(&o, n);
        }
        "sync-foreign-held" => {
            // As `sync-foreign`, with a second clone held by this thread throughout: each
            // drop takes the shared count from 2 to 1.
            let heap = reap::sync::Heap::new();
            let h = heap.clone();
            let o = std::thread::spawn(move || h.alloc(5_u64)).join().unwrap();
            heap.safepoint();
            let held = o.clone();
            foreign_churn(&o, n);
            drop(held);
        }
        "sync-foreign-two" => {
            // As `sync-foreign`, cloning two handles and then dropping both each round: the
            // drops come in a run, each from a count the one before it left.
            let heap = reap::sync::Heap::new();
            let h = heap.clone();
            let o = std::thread::spawn(move || h.alloc(5_u64)).join().unwrap();
            heap.safepoint();
            foreign_churn_two(&o, n);
        }
        "arc-foreign-two" => {
            let o = std::thread::spawn(|| std::sync::Arc::new(5_u64))
                .join()
                .unwrap();
            foreign_churn_two(&o, n);
        }
        "sync-foreign-shared" => {
            // As `sync-foreign`, with a second thread cloning and dropping the same object
            // meanwhile: the shared word changes under each thread's feet.
            let heap = reap::sync::Heap::new();
            let h = heap.clone();
            let o = std::thread::spawn(move || h.alloc(5_u64)).join().unwrap();
            heap.safepoint();
            std::thread::scope(|s| {
                let o2 = o.clone();
                let heap = &heap;
                s.spawn(move || {
                    heap.safepoint();
                    foreign_churn(&o2, n);
                });
                foreign_churn(&o, n);
            });
        }
        "arc-foreign-shared" => {
            let o = std::thread::spawn(|| std::sync::Arc::new(5_u64))
                .join()
                .unwrap();
            std::thread::scope(|s| {
                let o2 = o.clone();
                s.spawn(move || foreign_churn(&o2, n));
                foreign_churn(&o, n);
            });
        }
        "sync-foreign" | "sync-foreign-collected" => {
            // Allocated by a thread that has exited (the object keeps its id, unmerged), then
            // cloned and dropped by this attached thread: every operation is on the shared
            // count, the drop a compare-and-swap.
            let heap = reap::sync::Heap::new();
            let h = heap.clone();
            let o = std::thread::spawn(move || h.alloc(5_u64)).join().unwrap();
            heap.safepoint();
            if mode.ends_with("collected") {
                // The collection merges the exited owner's objects.
                heap.collect();
            }
            foreign_churn(&o, n);
        }
        "sync-owner" => {
            let heap = reap::sync::Heap::new();
            let o = heap.alloc(5_u64);
            foreign_churn(&o, n);
        }
        "local-owner" => {
            let heap = reap::Heap::new();
            let o = heap.alloc(5_u64);
            foreign_churn(&o, n);
        }
        "arc-owner" => {
            let o = std::sync::Arc::new(5_u64);
            foreign_churn(&o, n);
        }
        "arc-foreign" => {
            let o = std::thread::spawn(|| std::sync::Arc::new(5_u64))
                .join()
                .unwrap();
            foreign_churn(&o, n);
        }
        "sync-trees" => {
            let heap = reap::sync::Heap::new();
            heap.disable();
            for _ in 0..n {
                drop(black_box(sync_tree(16, &heap)));
            }
        }
        "local-upgrade" => {
            let heap = reap::Heap::new();
            let o = heap.alloc(1_u64);
            let w = reap::Weak::new(&o);
            for _ in 0..n * 100_000 {
                black_box(w.upgrade());
            }
        }
        "sync-upgrade" => {
            let heap = reap::sync::Heap::new();
            let o = heap.alloc(1_u64);
            let w = reap::sync::Weak::new(&o);
            for _ in 0..n * 100_000 {
                black_box(w.upgrade());
            }
        }
        "local-weak-create" => {
            let heap = reap::Heap::new();
            let start = std::time::Instant::now();
            for _ in 0..n * 10_000 {
                let o = heap.alloc(black_box(1_u64));
                let w = reap::Weak::new(&o);
                black_box((&o, &w));
            }
            let ns = start.elapsed().as_nanos() as f64 / (f64::from(n) * 10_000.0);
            eprintln!("{ns:.2} ns a round");
        }
        "sync-weak-create" => {
            let heap = reap::sync::Heap::new();
            let start = std::time::Instant::now();
            for _ in 0..n * 10_000 {
                let o = heap.alloc(black_box(1_u64));
                let w = reap::sync::Weak::new(&o);
                black_box((&o, &w));
            }
            let ns = start.elapsed().as_nanos() as f64 / (f64::from(n) * 10_000.0);
            eprintln!("{ns:.2} ns a round");
        }
        "local-weak-again" => {
            let heap = reap::Heap::new();
            let o = heap.alloc(1_u64);
            let w0 = reap::Weak::new(&o);
            let start = std::time::Instant::now();
            for _ in 0..n * 100_000 {
                let w = reap::Weak::new(black_box(&o));
                black_box(&w);
            }
            let ns = start.elapsed().as_nanos() as f64 / (f64::from(n) * 100_000.0);
            eprintln!("{ns:.2} ns a round");
            drop(w0);
        }
        "sync-weak-again" => {
            let heap = reap::sync::Heap::new();
            let o = heap.alloc(1_u64);
            let w0 = reap::sync::Weak::new(&o);
            let start = std::time::Instant::now();
            for _ in 0..n * 100_000 {
                let w = reap::sync::Weak::new(black_box(&o));
                black_box(&w);
            }
            let ns = start.elapsed().as_nanos() as f64 / (f64::from(n) * 100_000.0);
            eprintln!("{ns:.2} ns a round");
            drop(w0);
        }
        "local-weak-first-heap" => local_weak_first_heap(),
        "sync-weak-first-heap" => sync_weak_first_heap(),
        "sync-finalize" => {
            // An object with a finalizer allocated and dropped by its owner: each death runs
            // the finalizer on the refcount path (temporary reference, verdict under the
            // striped weak lock since the seventeenth session).
            let heap = reap::sync::Heap::new();
            let start = std::time::Instant::now();
            for i in 0..n * 100_000 {
                drop(black_box(heap.alloc(Finalized(i as u64))));
            }
            let per = start.elapsed().as_nanos() as f64 / (n * 100_000) as f64;
            println!("{per:.2} ns a death");
        }
        _ => {
            eprintln!(
                "usage: shared_loops (sync|local)-(trees|rings|rings-broken|upgrade|weak-create) [N]\n\
                 or (sync|arc)-foreign [N], (sync|local|arc)-owner [N], sync-finalize [N]\n\
                 (see the module docs)"
            );
            std::process::exit(2);
        }
    }
}
