//! The threaded workloads of `reap-stress --threads N`: N mutator threads on one shared
//! [`reap::sync::Heap`], each workload a shape of [`crate::workloads`] spread over threads or a
//! shape only threads have (a graph all of them mutate, objects handed from thread to thread, a
//! weak-value cache they share).
//!
//! Every thread that blocks (on a channel, or the calling thread waiting for the workers) does it
//! inside [`Heap::detached`], so that a collection can always stop the world. Collections are
//! the heap's automatic ones and explicit [`Heap::collect`] calls from the worker threads at
//! intervals, staggered so that the threads together collect about once an interval.
//!
//! [`peers`] runs the shapes that `dumpster::sync` and `std::sync::Arc` can run, for
//! `reap-stress --compare --threads N`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

// Objects' mutable fields use reap's lock, which a collection reads without taking.
use reap::sync::Mutex as ReapMutex;
use std::time::{Duration, Instant};

use reap::sync::{Finalize, Gc, Heap, Weak};
use reap::Trace;

use crate::workloads::XorShift;

/// Counters the threaded workloads keep (from any thread), checked at the end of the run.
#[derive(Default)]
pub struct Tally {
    /// Objects the workloads allocated (weak-reference objects not counted).
    pub allocated: AtomicU64,
    /// Objects with a counting finalizer that were made.
    pub finalizable: AtomicU64,
    /// Times a counting finalizer ran.
    pub finalized: AtomicU64,
    /// Weak references with a callback that were made.
    pub weak_callbacks_made: AtomicU64,
    /// Times such a callback ran.
    pub weak_callbacks_run: AtomicU64,
    /// Weak references that upgraded when they must not have (in their callback, or after
    /// their referent was let go and collected); must stay 0.
    pub weak_violations: AtomicU64,
}

impl Tally {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// The value of a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}

/// How a threaded workload runs.
pub struct Params {
    /// Mutator threads.
    pub threads: usize,
    /// Scale (1.0 is the default of a comparison; the plain run's default is 4).
    pub size: f64,
    /// When the workload's threads stop early.
    pub deadline: Instant,
}

/// A threaded workload: its name, what it does, and how to run it.
pub struct ThreadedWorkload {
    /// The name on the command line.
    pub name: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// Runs it on `heap` with `params.threads` threads of its own; returns once they are done
    /// and what it kept is let go (the caller collects and checks that nothing is left).
    pub run: fn(&Heap, &Params, &Arc<Tally>),
}

/// Every threaded workload, in the order `--threads N` runs them.
pub const THREADED: &[ThreadedWorkload] = &[
    ThreadedWorkload {
        name: "trees",
        about: "GCBench on each thread: a long-lived tree, then its share of trees of depth 4..16",
        run: trees,
    },
    ThreadedWorkload {
        name: "rings",
        about: "each thread its share of garbage rings of 2, 10 and 21 nodes, collecting after each size",
        run: rings,
    },
    ThreadedWorkload {
        name: "mutator",
        about: "one random graph mutated by all threads: vertices in shared slots, edges behind a Mutex rewired at random",
        run: mutator,
    },
    ThreadedWorkload {
        name: "handoff",
        about: "producer/consumer in a ring of threads: batches of objects with finalizers sent on, dropped by the receiver",
        run: handoff,
    },
    ThreadedWorkload {
        name: "weak-cache",
        about: "a weak-value cache shared by all threads: hits, misses, values dying by refcount and by collection",
        run: weak_cache,
    },
    ThreadedWorkload {
        name: "mix",
        about: "interpreter-like: each thread a little of everything, on the shared graph, cache and handoff ring",
        run: mix,
    },
];

/// Finds a threaded workload by name.
pub fn find(name: &str) -> Option<&'static ThreadedWorkload> {
    THREADED.iter().find(|w| w.name == name)
}

fn scaled(n: usize, size: f64) -> usize {
    ((n as f64 * size) as usize).max(1)
}

/// Thread `i`'s share of `total` among `threads`.
fn share(total: usize, i: usize, threads: usize) -> usize {
    total / threads + usize::from(i < total % threads)
}

/// Whether thread `i` of `threads` collects at its step `step`: each thread once every
/// `every * threads` of its steps, staggered, so that together they collect about once every
/// `every` steps.
fn collects_now(step: usize, i: usize, threads: usize, every: usize) -> bool {
    (step + i * every) % (every * threads) == every * threads - 1
}

/// Runs `body(i)` for `i` in `0..threads`, each on a thread of its own; the calling thread
/// waits for them detached from `heap` (a blocked attached thread would hold up collections).
///
/// Each worker is joined with its handle, which waits for its thread-local destructors, where
/// it leaves the heap, as joining a thread does in CPython: the checks that follow see a heap
/// no thread is still leaving. (A scope's own wait returns before those destructors run; the
/// runtime's behaviour then is checked by `tests/tests/sync_exit.rs` and
/// `sync_collect.rs::chain_dropped_as_owner_exits_freed_by_one_collection`.)
fn on_threads(heap: &Heap, threads: usize, body: impl Fn(usize) + Sync) {
    heap.detached(|| {
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|i| {
                    let body = &body;
                    s.spawn(move || body(i))
                })
                .collect();
            for w in workers {
                if let Err(p) = w.join() {
                    std::panic::resume_unwind(p);
                }
            }
        })
    });
}

/// A worker's allocator: the heap and a count of what it allocated, added to the tally at the
/// end.
struct Alloc<'h> {
    heap: &'h Heap,
    n: u64,
}

impl<'h> Alloc<'h> {
    fn new(heap: &'h Heap) -> Self {
        Alloc { heap, n: 0 }
    }

    fn new_obj<T: Trace + Send + Sync>(&mut self, value: T) -> Gc<T> {
        self.n += 1;
        self.heap.alloc(value)
    }

    fn done(self, tally: &Tally) {
        Tally::add(&tally.allocated, self.n);
    }
}

#[derive(Trace)]
struct TreeNode {
    left: Option<Gc<TreeNode>>,
    right: Option<Gc<TreeNode>>,
}

fn tree(a: &mut Alloc, depth: u32) -> Gc<TreeNode> {
    let (left, right) = if depth == 0 {
        (None, None)
    } else {
        (Some(tree(a, depth - 1)), Some(tree(a, depth - 1)))
    };
    a.new_obj(TreeNode { left, right })
}

fn trees(heap: &Heap, p: &Params, tally: &Arc<Tally>) {
    on_threads(heap, p.threads, |i| {
        let mut a = Alloc::new(heap);
        let long_lived = tree(&mut a, 16.min(10 + (p.size * 6.0) as u32));
        let rounds = scaled(4, p.size);
        'outer: for depth in (4..=16).step_by(2) {
            for k in 0..share(rounds << (16 - depth), i, p.threads) {
                drop(tree(&mut a, depth));
                if k % 64 == 0 && Instant::now() > p.deadline {
                    break 'outer;
                }
            }
        }
        drop(long_lived);
        a.done(tally);
    });
}

#[derive(Trace)]
struct Node {
    prev: ReapMutex<Option<Gc<Node>>>,
    next: ReapMutex<Option<Gc<Node>>>,
}

fn node(a: &mut Alloc) -> Gc<Node> {
    a.new_obj(Node {
        prev: ReapMutex::new(None),
        next: ReapMutex::new(None),
    })
}

fn make_ring(a: &mut Alloc, len: usize) {
    let first = node(a);
    let mut prev = first.clone();
    for _ in 1..len {
        let n = node(a);
        *n.prev.lock() = Some(prev.clone());
        *prev.next.lock() = Some(n.clone());
        prev = n;
    }
    *prev.next.lock() = Some(first.clone());
    *first.prev.lock() = Some(prev);
}

fn rings(heap: &Heap, p: &Params, tally: &Arc<Tally>) {
    on_threads(heap, p.threads, |i| {
        let mut a = Alloc::new(heap);
        let total = scaled(300_000, p.size);
        for ring in [2, 10, 21] {
            for _ in 0..share(total / ring, i, p.threads) {
                make_ring(&mut a, ring);
            }
            heap.collect();
            if Instant::now() > p.deadline {
                break;
            }
        }
        a.done(tally);
    });
}

#[derive(Trace)]
struct Vertex {
    edges: ReapMutex<Vec<Gc<Vertex>>>,
}

/// A vertex has at most this many edges; adding one more rewires one of them.
const EDGES_MAX: usize = 8;

/// The graph all threads mutate: its roots, in slots.
type Slots = Vec<ReapMutex<Option<Gc<Vertex>>>>;

fn slots(size: f64) -> Slots {
    (0..scaled(20_000, size))
        .map(|_| ReapMutex::new(None))
        .collect()
}

/// One random step on the shared graph: allocate a vertex into a slot, add (or rewire) an edge,
/// remove an edge, or empty a slot. No lock is held across an allocation (a safe point) or a
/// drop (which may free a whole subgraph), and never two at once.
fn graph_step(a: &mut Alloc, slots: &Slots, rng: &mut XorShift) {
    let get = |i: usize| slots[i].lock().clone();
    match rng.below(10) {
        0..=3 => {
            let v = a.new_obj(Vertex {
                edges: ReapMutex::new(Vec::new()),
            });
            let old = slots[rng.below(slots.len())].lock().replace(v);
            drop(old);
        }
        4..=6 => {
            let (from, to) = (get(rng.below(slots.len())), get(rng.below(slots.len())));
            if let (Some(from), Some(to)) = (from, to) {
                let old = {
                    let mut e = from.edges.lock();
                    if e.len() < EDGES_MAX {
                        e.push(to);
                        None
                    } else {
                        let k = rng.below(e.len());
                        Some(std::mem::replace(&mut e[k], to))
                    }
                };
                drop(old);
            }
        }
        7 => {
            if let Some(from) = get(rng.below(slots.len())) {
                let old = {
                    let mut e = from.edges.lock();
                    (!e.is_empty()).then(|| {
                        let k = rng.below(e.len());
                        e.swap_remove(k)
                    })
                };
                drop(old);
            }
        }
        _ => {
            let old = slots[rng.below(slots.len())].lock().take();
            drop(old);
        }
    }
}

fn mutator(heap: &Heap, p: &Params, tally: &Arc<Tally>) {
    let slots = slots(p.size);
    on_threads(heap, p.threads, |i| {
        let mut a = Alloc::new(heap);
        let mut rng = XorShift::seeded(i as u64);
        for step in 0..share(scaled(1_000_000, p.size), i, p.threads) {
            graph_step(&mut a, &slots, &mut rng);
            if collects_now(step, i, p.threads, 100_000) {
                heap.collect();
            }
            if step % 4096 == 0 && Instant::now() > p.deadline {
                break;
            }
        }
        a.done(tally);
    });
    drop(slots);
}

/// What the handoff sends: an object with a counting finalizer that holds a small tree.
#[derive(Trace)]
#[reap(sync_finalize)]
struct Parcel {
    tree: Option<Gc<TreeNode>>,
    other: ReapMutex<Option<Gc<Parcel>>>,
    #[reap(skip)]
    tally: Arc<Tally>,
}

impl Finalize for Parcel {
    fn finalize(this: &Gc<Self>) {
        Tally::add(&this.tally.finalized, 1);
    }
}

fn parcel(a: &mut Alloc, tally: &Arc<Tally>, depth: u32) -> Gc<Parcel> {
    let tree = Some(tree(a, depth));
    Tally::add(&tally.finalizable, 1);
    a.new_obj(Parcel {
        tree,
        other: ReapMutex::new(None),
        tally: tally.clone(),
    })
}

/// A batch of the handoff, or `None`: the sender stopped early (its successor stops too).
type Batch = Option<Vec<Gc<Parcel>>>;

/// A thread's place in a ring of channels: the sender to its successor and its own receiver,
/// taken by the thread when it starts.
type RingPlace<T> = Mutex<Option<(Sender<T>, Receiver<T>)>>;

/// The channels of a ring of `threads` threads: thread `i` gets the sender to thread `i + 1`
/// and its own receiver (one thread sends to itself). Nothing else keeps a sender, so a thread
/// that exits disconnects its successor.
fn ring_channels<T>(threads: usize) -> Vec<RingPlace<T>> {
    let (mut txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::channel()).unzip();
    txs.rotate_left(1);
    txs.into_iter()
        .zip(rxs)
        .map(|ends| Mutex::new(Some(ends)))
        .collect()
}

fn handoff(heap: &Heap, p: &Params, tally: &Arc<Tally>) {
    let ends = ring_channels::<Batch>(p.threads);
    on_threads(heap, p.threads, |i| {
        let mut a = Alloc::new(heap);
        let (tx, rx) = ends[i]
            .lock()
            .unwrap()
            .take()
            .expect("one thread a ring place");
        // Every thread sends as many batches as it receives: the same number of rounds each.
        let rounds = scaled(20_000, p.size) / p.threads;
        for round in 0..rounds {
            let batch: Vec<Gc<Parcel>> = (0..16).map(|_| parcel(&mut a, tally, 3)).collect();
            let stop = Instant::now() > p.deadline;
            // A successor that exited hands the batch back: dropped here.
            let _ = tx.send(if stop { None } else { Some(batch) });
            if stop {
                break;
            }
            // Blocking: detached. The receiver drops what it got (the sender owns it).
            match heap.detached(|| rx.recv()) {
                Ok(Some(got)) => drop(got),
                Ok(None) | Err(_) => {
                    let _ = tx.send(None);
                    break;
                }
            }
            if collects_now(round, i, p.threads, 500) {
                heap.collect();
            }
        }
        a.done(tally);
    });
}

/// A cached value: sometimes a self-cycle (only a collection frees it).
#[derive(Trace)]
struct Value {
    me: ReapMutex<Option<Gc<Value>>>,
}

/// The weak-value cache all threads share: key to a weak reference whose callback removes the
/// entry when the value dies.
type Cache = ReapMutex<HashMap<u64, Weak<Value>>>;

/// A thread's side of the cache: the values it keeps using (the most recent ones) and the weak
/// references it took out of the cache while they may still be alive (kept until their referent
/// is dead, so that every callback runs).
#[derive(Default)]
struct CacheUser {
    held: VecDeque<Gc<Value>>,
    retired: Vec<Weak<Value>>,
}

/// Keys of the cache.
const CACHE_KEYS: usize = 4096;
/// Values a thread keeps using.
const CACHE_HELD: usize = 256;

/// One look-up of a random key: a hit keeps the value in use; a miss makes the value (a
/// self-cycle every other time), a weak reference with a callback to it, and puts that in the
/// cache. No cache lock is held across an allocation or a drop of a value.
fn cache_step(
    a: &mut Alloc,
    cache: &Arc<Cache>,
    user: &mut CacheUser,
    rng: &mut XorShift,
    tally: &Arc<Tally>,
) {
    let key = rng.below(CACHE_KEYS) as u64;
    let hit = cache.lock().get(&key).and_then(Weak::upgrade);
    let value = match hit {
        Some(v) => v,
        None => {
            let v = a.new_obj(Value {
                me: ReapMutex::new(None),
            });
            if rng.below(2) == 0 {
                *v.me.lock() = Some(v.clone());
            }
            let (c, t) = (cache.clone(), tally.clone());
            Tally::add(&tally.weak_callbacks_made, 1);
            let w = Weak::with_callback(&v, move |w: &Weak<Value>| {
                Tally::add(&t.weak_callbacks_run, 1);
                if w.upgrade().is_some() {
                    Tally::add(&t.weak_violations, 1);
                }
                let removed = {
                    let mut m = c.lock();
                    match m.get(&key) {
                        Some(x) if Weak::ptr_eq(x, w) => m.remove(&key),
                        _ => None,
                    }
                };
                drop(removed);
            });
            let old = cache.lock().insert(key, w);
            user.retired.extend(old);
            v
        }
    };
    user.held.push_back(value);
    if user.held.len() > CACHE_HELD {
        drop(user.held.pop_front());
    }
    if user.retired.len() > 64 {
        // A weak reference whose target reads cleared has had its callback taken: it runs
        // whether or not this reference is kept.
        user.retired.retain(Weak::is_alive);
    }
}

/// The end of a cache's life: every value was let go and collected, so every weak reference
/// left in it, or taken out of it (`retired`), must be dead; then they go.
fn retire_cache(cache: &Cache, retired: Mutex<Vec<Weak<Value>>>, tally: &Tally) {
    let left = std::mem::take(&mut *cache.lock());
    let retired = retired.into_inner().unwrap();
    let alive = left
        .values()
        .chain(&retired)
        .filter(|w| w.is_alive())
        .count();
    Tally::add(&tally.weak_violations, alive as u64);
    drop((left, retired));
}

fn weak_cache(heap: &Heap, p: &Params, tally: &Arc<Tally>) {
    let cache: Arc<Cache> = Arc::default();
    let retired = Mutex::new(Vec::new());
    on_threads(heap, p.threads, |i| {
        let mut a = Alloc::new(heap);
        let mut rng = XorShift::seeded(i as u64);
        let mut user = CacheUser::default();
        for step in 0..share(scaled(400_000, p.size), i, p.threads) {
            cache_step(&mut a, &cache, &mut user, &mut rng, tally);
            if collects_now(step, i, p.threads, 20_000) {
                heap.collect();
            }
            if step % 4096 == 0 && Instant::now() > p.deadline {
                break;
            }
        }
        drop(user.held);
        retired.lock().unwrap().extend(user.retired);
        a.done(tally);
    });
    heap.collect();
    retire_cache(&cache, retired, tally);
}

/// The mix's finalizable object: a `Parcel` without a tree, a self-cycle every third time.
fn fin(a: &mut Alloc, tally: &Arc<Tally>, cyclic: bool) {
    Tally::add(&tally.finalizable, 1);
    let f = a.new_obj(Parcel {
        tree: None,
        other: ReapMutex::new(None),
        tally: tally.clone(),
    });
    if cyclic {
        *f.other.lock() = Some(f.clone());
    }
}

fn mix(heap: &Heap, p: &Params, tally: &Arc<Tally>) {
    // Long-lived state, made by this thread and touched by all: a "module" of chains.
    let module: Vec<Gc<Node>> = {
        let mut a = Alloc::new(heap);
        let heads = (0..50)
            .map(|_| {
                let head = node(&mut a);
                let mut cur = head.clone();
                for _ in 1..200 {
                    let n = node(&mut a);
                    *cur.next.lock() = Some(n.clone());
                    cur = n;
                }
                head
            })
            .collect();
        a.done(tally);
        heads
    };
    let slots = slots(p.size / 8.0);
    let cache: Arc<Cache> = Arc::default();
    let retired = Mutex::new(Vec::new());
    let ends = ring_channels::<Gc<Parcel>>(p.threads);
    let kept: Mutex<Vec<Weak<Node>>> = Mutex::new(Vec::new());
    on_threads(heap, p.threads, |i| {
        let mut a = Alloc::new(heap);
        let mut rng = XorShift::seeded(i as u64);
        let mut user = CacheUser::default();
        let (tx, rx) = ends[i]
            .lock()
            .unwrap()
            .take()
            .expect("one thread a ring place");
        let mut weaks: Vec<Weak<Node>> = Vec::new();
        for step in 0..share(scaled(2000, p.size), i, p.threads) {
            // Short-lived expression trees.
            drop(tree(&mut a, 6));
            // Closures and frames: small cycles.
            make_ring(&mut a, 2 + step % 8);
            // A weak reference with a callback, to something cyclic every other time.
            let n = node(&mut a);
            let t = tally.clone();
            Tally::add(&tally.weak_callbacks_made, 1);
            weaks.push(Weak::with_callback(&n, move |w: &Weak<Node>| {
                Tally::add(&t.weak_callbacks_run, 1);
                if w.upgrade().is_some() {
                    Tally::add(&t.weak_violations, 1);
                }
            }));
            if step % 2 == 0 {
                *n.next.lock() = Some(n.clone());
            }
            drop(n);
            // Objects with finalizers, now and then in a cycle.
            fin(&mut a, tally, step % 3 == 0);
            // Touch the long-lived state (another thread's objects).
            drop(module[step % module.len()].clone());
            // The shared graph and the shared cache.
            graph_step(&mut a, &slots, &mut rng);
            cache_step(&mut a, &cache, &mut user, &mut rng, tally);
            // Hand an object to the next thread; drop what the previous one handed here.
            if step % 8 == 0 {
                // A successor that exited hands it back: dropped here.
                let _ = tx.send(parcel(&mut a, tally, 2));
                while let Ok(got) = rx.try_recv() {
                    drop(got);
                }
            }
            if collects_now(step, i, p.threads, 100) {
                heap.collect();
            }
            if step % 64 == 63 {
                weaks.retain(Weak::is_alive);
            }
            if step % 256 == 0 && Instant::now() > p.deadline {
                break;
            }
        }
        drop(user.held);
        retired.lock().unwrap().extend(user.retired);
        // Kept to the end of the workload: each one's referent dies while it lives.
        kept.lock().unwrap().extend(weaks);
        drop((tx, rx));
        a.done(tally);
    });
    drop(module);
    drop(slots);
    heap.collect();
    retire_cache(&cache, retired, tally);
    // Every referent was let go and the cycles among them collected.
    let kept = kept.into_inner().unwrap();
    let alive = kept.iter().filter(|w| w.is_alive()).count();
    Tally::add(&tally.weak_violations, alive as u64);
    drop(kept);
}

/// Lets `heap` settle after a workload, on the calling thread: its queued drops merged, a full
/// collection, and its queue once more (the collection's finalizers may drop handles). Returns
/// how many objects are left alive: 0 unless something leaked.
pub fn settle(heap: &Heap) -> usize {
    heap.safepoint();
    heap.collect();
    heap.safepoint();
    heap.live_objects()
}

/// The invariants the counters say are broken, one sentence each (none when all hold).
pub fn broken(tally: &Tally) -> Vec<String> {
    let mut failures = Vec::new();
    let (made, ran) = (Tally::get(&tally.finalizable), Tally::get(&tally.finalized));
    if made != ran {
        failures.push(format!(
            "{made} finalizable objects but {ran} finalizer runs (each must run exactly once)"
        ));
    }
    let (made, ran) = (
        Tally::get(&tally.weak_callbacks_made),
        Tally::get(&tally.weak_callbacks_run),
    );
    if made != ran {
        failures.push(format!(
            "{made} weak references with callbacks to objects that all died, but {ran} callbacks ran"
        ));
    }
    let violations = Tally::get(&tally.weak_violations);
    if violations != 0 {
        failures.push(format!(
            "{violations} weak references to dead objects could still be upgraded"
        ));
    }
    failures
}

/// One timed run of `workload` on reap for `--compare --threads`: a fresh heap, the workload,
/// a last collection; the time, or the invariant that broke.
pub fn measure_reap(workload: &str, size: f64, threads: usize) -> Result<Duration, String> {
    let w = find(workload).ok_or_else(|| format!("no threaded workload {workload}"))?;
    let heap = Heap::new();
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let params = Params {
        threads,
        size,
        deadline: start + Duration::from_secs(3600),
    };
    (w.run)(&heap, &params, &tally);
    let left = settle(&heap);
    let t = start.elapsed();
    let mut failures = broken(&tally);
    if left != 0 {
        failures.push(format!("{left} objects left alive"));
    }
    if failures.is_empty() {
        Ok(t)
    } else {
        Err(format!("invariant broken: {}", failures.join("; ")))
    }
}

/// The threaded shapes on `dumpster::sync` (the one Rust peer that collects cycles across
/// threads) and `std::sync::Arc` (no collector: only the acyclic shapes), for
/// `reap-stress --compare --threads N`. Same threads, steps, seeds and explicit collections as
/// reap's; no deadline.
pub mod peers {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::{collects_now, ring_channels, scaled, share, EDGES_MAX};
    use crate::workloads::XorShift;

    /// A peer: its name in the table and how it runs a threaded workload at a scale on a
    /// number of threads (the time it took, or why it cannot).
    pub struct ThreadedPeer {
        /// Its name in the table.
        pub name: &'static str,
        /// Runs `workload` at scale `size` on `threads` threads.
        pub run: fn(&str, f64, usize) -> Result<Duration, String>,
    }

    /// The peers, in table order.
    pub const PEERS: &[ThreadedPeer] = &[
        ThreadedPeer {
            name: "dumpster::sync",
            run: dumpster_sync::run,
        },
        ThreadedPeer {
            name: "Arc",
            run: arc::run,
        },
    ];

    /// Drops of handoff parcels (each must drop once).
    static PARCELS_DROPPED: AtomicU64 = AtomicU64::new(0);

    /// The shapes without cycles, over a module's `P`, `TreeNode`, `Parcel` and `collect()`.
    macro_rules! acyclic_shapes {
        () => {
            fn tree(depth: u32) -> P<TreeNode> {
                let (left, right) = if depth == 0 {
                    (None, None)
                } else {
                    (Some(tree(depth - 1)), Some(tree(depth - 1)))
                };
                P::new(TreeNode { left, right })
            }

            fn trees(size: f64, threads: usize) {
                std::thread::scope(|s| {
                    for i in 0..threads {
                        s.spawn(move || {
                            let long_lived = tree(16.min(10 + (size * 6.0) as u32));
                            let rounds = scaled(4, size);
                            for depth in (4..=16).step_by(2) {
                                for _ in 0..share(rounds << (16 - depth), i, threads) {
                                    drop(tree(depth));
                                }
                            }
                            drop(long_lived);
                        });
                    }
                });
            }

            fn handoff(size: f64, threads: usize) -> Result<(), String> {
                let ends = ring_channels::<Vec<P<Parcel>>>(threads);
                let rounds = scaled(20_000, size) / threads;
                std::thread::scope(|s| {
                    for i in 0..threads {
                        let ends = &ends;
                        s.spawn(move || {
                            let (tx, rx) = ends[i].lock().unwrap().take().unwrap();
                            for round in 0..rounds {
                                let batch: Vec<P<Parcel>> = (0..16)
                                    .map(|_| {
                                        P::new(Parcel {
                                            tree: Some(tree(3)),
                                        })
                                    })
                                    .collect();
                                tx.send(batch).unwrap();
                                drop(rx.recv().unwrap());
                                if collects_now(round, i, threads, 500) {
                                    collect();
                                }
                            }
                        });
                    }
                });
                collect();
                let (made, dropped) = (
                    (rounds * threads * 16) as u64,
                    PARCELS_DROPPED.load(Relaxed),
                );
                if made != dropped {
                    return Err(format!("{made} parcels, {dropped} dropped"));
                }
                Ok(())
            }
        };
    }

    /// The shapes with cycles, over a module's `P`, `Node`, `Vertex` and `collect()`.
    macro_rules! cyclic_shapes {
        () => {
            fn make_ring(len: usize) {
                let first = P::new(Node {
                    prev: Mutex::new(None),
                    next: Mutex::new(None),
                });
                let mut prev = first.clone();
                for _ in 1..len {
                    let n = P::new(Node {
                        prev: Mutex::new(None),
                        next: Mutex::new(None),
                    });
                    *n.prev.lock().unwrap() = Some(prev.clone());
                    *prev.next.lock().unwrap() = Some(n.clone());
                    prev = n;
                }
                *prev.next.lock().unwrap() = Some(first.clone());
                *first.prev.lock().unwrap() = Some(prev);
            }

            fn rings(size: f64, threads: usize) {
                std::thread::scope(|s| {
                    for i in 0..threads {
                        s.spawn(move || {
                            let total = scaled(300_000, size);
                            for ring in [2, 10, 21] {
                                for _ in 0..share(total / ring, i, threads) {
                                    make_ring(ring);
                                }
                                collect();
                            }
                        });
                    }
                });
            }

            /// reap's `graph_step`, on this peer.
            fn graph_step(slots: &[Mutex<Option<P<Vertex>>>], rng: &mut XorShift) {
                let get = |i: usize| slots[i].lock().unwrap().clone();
                match rng.below(10) {
                    0..=3 => {
                        let v = P::new(Vertex {
                            edges: Mutex::new(Vec::new()),
                        });
                        let old = slots[rng.below(slots.len())].lock().unwrap().replace(v);
                        drop(old);
                    }
                    4..=6 => {
                        let (from, to) = (get(rng.below(slots.len())), get(rng.below(slots.len())));
                        if let (Some(from), Some(to)) = (from, to) {
                            let old = {
                                let mut e = from.edges.lock().unwrap();
                                if e.len() < EDGES_MAX {
                                    e.push(to);
                                    None
                                } else {
                                    let k = rng.below(e.len());
                                    Some(std::mem::replace(&mut e[k], to))
                                }
                            };
                            drop(old);
                        }
                    }
                    7 => {
                        if let Some(from) = get(rng.below(slots.len())) {
                            let old = {
                                let mut e = from.edges.lock().unwrap();
                                (!e.is_empty()).then(|| {
                                    let k = rng.below(e.len());
                                    e.swap_remove(k)
                                })
                            };
                            drop(old);
                        }
                    }
                    _ => {
                        let old = slots[rng.below(slots.len())].lock().unwrap().take();
                        drop(old);
                    }
                }
            }

            fn mutator(size: f64, threads: usize) {
                let slots: Vec<Mutex<Option<P<Vertex>>>> = (0..scaled(20_000, size))
                    .map(|_| Mutex::new(None))
                    .collect();
                std::thread::scope(|s| {
                    for i in 0..threads {
                        let slots = &slots;
                        s.spawn(move || {
                            let mut rng = XorShift::seeded(i as u64);
                            for step in 0..share(scaled(1_000_000, size), i, threads) {
                                graph_step(slots, &mut rng);
                                if collects_now(step, i, threads, 100_000) {
                                    collect();
                                }
                            }
                        });
                    }
                });
                drop(slots);
            }
        };
    }

    mod dumpster_sync {
        use super::*;
        use dumpster::sync::Gc as P;
        use dumpster::Trace;

        #[derive(Trace)]
        struct TreeNode {
            left: Option<P<TreeNode>>,
            right: Option<P<TreeNode>>,
        }

        #[derive(Trace)]
        struct Node {
            prev: Mutex<Option<P<Node>>>,
            next: Mutex<Option<P<Node>>>,
        }

        #[derive(Trace)]
        struct Vertex {
            edges: Mutex<Vec<P<Vertex>>>,
        }

        #[derive(Trace)]
        struct Parcel {
            tree: Option<P<TreeNode>>,
        }

        impl Drop for Parcel {
            fn drop(&mut self) {
                PARCELS_DROPPED.fetch_add(1, Relaxed);
            }
        }

        fn collect() {
            dumpster::sync::collect();
        }

        acyclic_shapes!();
        cyclic_shapes!();

        /// Runs one threaded workload and times it.
        pub fn run(workload: &str, size: f64, threads: usize) -> Result<Duration, String> {
            let start = Instant::now();
            match workload {
                "trees" => trees(size, threads),
                "rings" => rings(size, threads),
                "mutator" => {
                    // Its automatic collection, run from a `Drop` on two threads at once,
                    // deadlocks here (both threads wait for the write lock of
                    // `GarbageTruck::collect_all`): explicit collections only.
                    dumpster::sync::set_collect_condition(|_| false);
                    mutator(size, threads)
                }
                "handoff" => handoff(size, threads)?,
                "weak-cache" => return Err("cannot: dumpster has no weak references".into()),
                "mix" => return Err("cannot: no weak references (the mix has them)".into()),
                other => return Err(format!("no such workload {other}")),
            }
            collect();
            Ok(start.elapsed())
        }
    }

    mod arc {
        use super::*;
        use std::sync::Arc as P;

        #[allow(dead_code)]
        struct TreeNode {
            left: Option<P<TreeNode>>,
            right: Option<P<TreeNode>>,
        }

        #[allow(dead_code)]
        struct Parcel {
            tree: Option<P<TreeNode>>,
        }

        impl Drop for Parcel {
            fn drop(&mut self) {
                PARCELS_DROPPED.fetch_add(1, Relaxed);
            }
        }

        /// `Arc` has no collector.
        fn collect() {}

        acyclic_shapes!();

        /// Runs one threaded workload and times it.
        pub fn run(workload: &str, size: f64, threads: usize) -> Result<Duration, String> {
            let start = Instant::now();
            match workload {
                "trees" => trees(size, threads),
                "handoff" => handoff(size, threads)?,
                "rings" | "mutator" | "mix" => {
                    return Err("cannot: Arc leaks reference cycles (no collector)".into())
                }
                "weak-cache" => return Err(
                    "not measured: no weak-reference callbacks (entries would be pruned by hand)"
                        .into(),
                ),
                other => return Err(format!("no such workload {other}")),
            }
            Ok(start.elapsed())
        }
    }
}
