//! The named workloads of `reap-stress`, each a GC stress shape run on one reap heap.
//!
//! Every workload allocates through the heap it is given, keeps the counters of [`Tally`] up to
//! date, and leaves nothing behind but what the heap's shutdown frees. Sizes scale with `size`
//! (1.0 is the default), so a smoke test can run them tiny.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use reap::{Finalize, Gc, Heap, Trace, Weak};

/// Counters a workload keeps, checked by the invariants at the end of the run.
#[derive(Default)]
pub struct Tally {
    /// Objects with a counting finalizer that were made.
    pub finalizable: Cell<u64>,
    /// Times a counting finalizer ran.
    pub finalized: Cell<u64>,
    /// Weak references with a callback that were made.
    pub weak_callbacks_made: Cell<u64>,
    /// Times such a callback ran.
    pub weak_callbacks_run: Cell<u64>,
    /// Weak references found pointing at a freed object but still upgradable (must stay 0).
    pub weak_violations: Cell<u64>,
}

impl Tally {
    fn add(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }
}

/// A workload: its name, what it does, and how to run it.
pub struct Workload {
    /// The name on the command line.
    pub name: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// Runs it on `heap` at scale `size`, until done or `deadline`.
    pub run: fn(&Heap, f64, Instant, &Rc<Tally>),
}

/// Every workload, in the order the default mix runs them.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "trees",
        about: "GCBench: a long-lived tree, then trees of depth 4..16 built and dropped",
        run: trees,
    },
    Workload {
        name: "rings",
        about: "doubly linked garbage rings of 2, 10 and 21 nodes (pyperformance gc_collect)",
        run: rings,
    },
    Workload {
        name: "big-ring",
        about: "one big garbage ring",
        run: big_ring,
    },
    Workload {
        name: "live-heap",
        about: "1,000 chains of 1,000 live nodes, young garbage arriving (gc_traversal)",
        run: live_heap,
    },
    Workload {
        name: "live-heap-touched",
        about: "live-heap, with every chain head cloned and dropped between rounds",
        run: live_heap_touched,
    },
    Workload {
        name: "weak-churn",
        about: "weak references made, upgraded, and cleared by refcount and by collection",
        run: weak_churn,
    },
    Workload {
        name: "finalizers",
        about: "cyclic garbage whose objects have finalizers",
        run: finalizers,
    },
    Workload {
        name: "mutator",
        about: "random graph mutator: allocate, add edge, drop edge, drop root",
        run: mutator,
    },
    Workload {
        name: "weak-map",
        about: "a WeakValueMap cache: insert, hit, values dying, misses (WeakValueDictionary)",
        run: weak_map,
    },
    Workload {
        name: "mix",
        about: "interpreter-like: all of the above interleaved in small doses on one heap",
        run: mix,
    },
];

/// Finds a workload by name.
pub fn find(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

fn scaled(n: usize, size: f64) -> usize {
    ((n as f64 * size) as usize).max(1)
}

#[derive(Trace)]
struct TreeNode {
    left: Option<Gc<TreeNode>>,
    right: Option<Gc<TreeNode>>,
}

fn tree(heap: &Heap, depth: u32) -> Gc<TreeNode> {
    let (left, right) = if depth == 0 {
        (None, None)
    } else {
        (Some(tree(heap, depth - 1)), Some(tree(heap, depth - 1)))
    };
    heap.alloc(TreeNode { left, right })
}

fn trees(heap: &Heap, size: f64, deadline: Instant, _: &Rc<Tally>) {
    let long_lived = tree(heap, 16.min(10 + (size * 6.0) as u32));
    let rounds = scaled(4, size);
    'outer: for _ in 0..rounds {
        for depth in (4..=16).step_by(2) {
            let iterations = 1 << (16 - depth);
            for _ in 0..iterations {
                drop(tree(heap, depth));
                if Instant::now() > deadline {
                    break 'outer;
                }
            }
        }
    }
    drop(long_lived);
}

#[derive(Trace)]
struct Node {
    prev: RefCell<Option<Gc<Node>>>,
    next: RefCell<Option<Gc<Node>>>,
}

fn node(heap: &Heap) -> Gc<Node> {
    heap.alloc(Node {
        prev: RefCell::new(None),
        next: RefCell::new(None),
    })
}

fn make_ring(heap: &Heap, len: usize) {
    let first = node(heap);
    let mut prev = first.clone();
    for _ in 1..len {
        let n = node(heap);
        *n.prev.borrow_mut() = Some(prev.clone());
        *prev.next.borrow_mut() = Some(n.clone());
        prev = n;
    }
    *prev.next.borrow_mut() = Some(first.clone());
    *first.prev.borrow_mut() = Some(prev);
}

fn rings(heap: &Heap, size: f64, deadline: Instant, _: &Rc<Tally>) {
    let total = scaled(300_000, size);
    for ring in [2, 10, 21] {
        for _ in 0..total / ring {
            make_ring(heap, ring);
        }
        heap.collect(2);
        if Instant::now() > deadline {
            break;
        }
    }
}

fn big_ring(heap: &Heap, size: f64, _: Instant, _: &Rc<Tally>) {
    make_ring(heap, scaled(1_000_000, size));
    heap.collect(2);
}

fn chains(heap: &Heap, count: usize, len: usize) -> Vec<Gc<Node>> {
    (0..count)
        .map(|_| {
            let head = node(heap);
            let mut cur = head.clone();
            for _ in 1..len {
                let n = node(heap);
                *cur.next.borrow_mut() = Some(n.clone());
                cur = n;
            }
            head
        })
        .collect()
}

fn live_heap_with(heap: &Heap, size: f64, deadline: Instant, touch: bool) {
    let count = scaled(1000, size.sqrt());
    let heads = chains(heap, count, scaled(1000, size.sqrt()));
    heap.collect(2);
    for _ in 0..scaled(20, size) {
        for _ in 0..1000 {
            make_ring(heap, 2);
        }
        if touch {
            for h in &heads {
                drop(h.clone());
            }
        }
        heap.collect(0);
        if Instant::now() > deadline {
            break;
        }
    }
    heap.collect(2);
    drop(heads);
}

fn live_heap(heap: &Heap, size: f64, deadline: Instant, _: &Rc<Tally>) {
    live_heap_with(heap, size, deadline, false);
}

fn live_heap_touched(heap: &Heap, size: f64, deadline: Instant, _: &Rc<Tally>) {
    live_heap_with(heap, size, deadline, true);
}

fn weak_churn(heap: &Heap, size: f64, deadline: Instant, tally: &Rc<Tally>) {
    let rounds = scaled(200, size);
    for _ in 0..rounds {
        let mut weaks = Vec::with_capacity(2000);
        let mut keep = Vec::with_capacity(1000);
        for i in 0..1000 {
            let a = node(heap);
            let t = tally.clone();
            Tally::add(&tally.weak_callbacks_made, 1);
            weaks.push(Weak::with_untraced_callback(&a, move |w: &Weak<Node>| {
                Tally::add(&t.weak_callbacks_run, 1);
                if w.upgrade().is_some() {
                    Tally::add(&t.weak_violations, 1);
                }
            }));
            weaks.push(Weak::new(&a));
            if i % 2 == 0 {
                // Cleared by the collector: a self-cycle.
                *a.next.borrow_mut() = Some(a.clone());
            } else if i % 3 == 0 {
                keep.push(a.clone());
            }
            // Otherwise cleared by refcount, right here.
            drop(a);
        }
        for w in &weaks {
            if let Some(x) = w.upgrade() {
                drop(x);
            }
        }
        heap.collect(2);
        drop(keep);
        for w in &weaks {
            if w.upgrade().is_some() {
                Tally::add(&tally.weak_violations, 1);
            }
        }
        if Instant::now() > deadline {
            break;
        }
    }
}

#[derive(Trace)]
#[reap(finalize)]
struct Fin {
    other: RefCell<Option<Gc<Fin>>>,
    #[reap(skip)]
    tally: Rc<Tally>,
}

impl Finalize for Fin {
    fn finalize(this: &Gc<Self>) {
        Tally::add(&this.tally.finalized, 1);
    }
}

fn finalizers(heap: &Heap, size: f64, deadline: Instant, tally: &Rc<Tally>) {
    let rounds = scaled(20, size);
    for _ in 0..rounds {
        for _ in 0..10_000 {
            let a = heap.alloc(Fin {
                other: RefCell::new(None),
                tally: tally.clone(),
            });
            let b = heap.alloc(Fin {
                other: RefCell::new(Some(a.clone())),
                tally: tally.clone(),
            });
            *a.other.borrow_mut() = Some(b);
            Tally::add(&tally.finalizable, 2);
        }
        heap.collect(2);
        if Instant::now() > deadline {
            break;
        }
    }
}

#[derive(Trace)]
struct Vertex {
    edges: RefCell<Vec<Gc<Vertex>>>,
}

/// The mutator's random numbers: xorshift64 from a fixed seed, so every runtime in a
/// comparison (`benches/python/stress.py` too) makes the same graph.
pub struct XorShift(u64);

impl Default for XorShift {
    fn default() -> Self {
        XorShift(0x2545_F491_4F6C_DD1D)
    }
}

impl XorShift {
    /// Another fixed sequence for each `seed` (thread `i` of a threaded workload uses `i`).
    pub fn seeded(seed: u64) -> Self {
        let mut x = XorShift(XorShift::default().0 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        if x.0 == 0 {
            x.0 = 1;
        }
        x
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// The random graph mutator over any runtime's handles `H` (to values holding their edges in a
/// `RefCell<Vec<H>>`, reached through `edges`): `steps` random allocate / add edge / drop edge /
/// drop root operations, the same sequence for every runtime. Stops early when `stop()` says so
/// (asked every 4,096 steps).
pub fn run_mutator<H: Clone + std::ops::Deref>(
    steps: usize,
    mut new_vertex: impl FnMut() -> H,
    edges: impl Fn(&H::Target) -> &RefCell<Vec<H>>,
    mut stop: impl FnMut() -> bool,
) {
    let mut rng = XorShift::default();
    let mut roots: Vec<H> = Vec::new();
    for step in 0..steps {
        match rng.below(10) {
            0..=3 => roots.push(new_vertex()),
            4..=6 if !roots.is_empty() => {
                let a = roots[rng.below(roots.len())].clone();
                let b = roots[rng.below(roots.len())].clone();
                edges(&a).borrow_mut().push(b);
            }
            7 if !roots.is_empty() => {
                let a = &roots[rng.below(roots.len())];
                let mut e = edges(a).borrow_mut();
                if !e.is_empty() {
                    let i = rng.below(e.len());
                    e.swap_remove(i);
                }
            }
            _ if !roots.is_empty() => {
                let i = rng.below(roots.len());
                roots.swap_remove(i);
            }
            _ => {}
        }
        if step % 4096 == 0 && stop() {
            break;
        }
    }
}

fn mutator(heap: &Heap, size: f64, deadline: Instant, _: &Rc<Tally>) {
    run_mutator(
        scaled(1_000_000, size),
        || {
            heap.alloc(Vertex {
                edges: RefCell::new(Vec::new()),
            })
        },
        |v: &Vertex| &v.edges,
        || Instant::now() > deadline,
    );
    heap.collect(2);
}

/// A cache in a weak-value map: each round fills it, hits every entry twice, lets half the
/// values die (their entries go by themselves), looks everything up again, and lets the rest die.
fn weak_map(heap: &Heap, size: f64, deadline: Instant, tally: &Rc<Tally>) {
    let map: reap::WeakValueMap<u64, Node> = reap::WeakValueMap::new();
    let mut hits = 0_u64;
    for round in 0..scaled(200, size) as u64 {
        let mut values: Vec<Gc<Node>> = (0..1000).map(|_| node(heap)).collect();
        for (i, v) in values.iter().enumerate() {
            map.insert(round * 1000 + i as u64, v);
        }
        for _ in 0..2 {
            for i in 0..1000 {
                hits += map.get(&(round * 1000 + i)).is_some() as u64;
            }
        }
        let mut i = 0;
        values.retain(|_| {
            i += 1;
            i % 2 == 0
        });
        for i in 0..1000 {
            hits += map.get(&(round * 1000 + i)).is_some() as u64;
        }
        drop(values);
        if !map.is_empty() {
            Tally::add(&tally.weak_violations, 1);
        }
        if Instant::now() > deadline {
            break;
        }
    }
    std::hint::black_box(hits);
}

/// An interpreter's day: a little of everything, interleaved, with a long-lived module graph.
fn mix(heap: &Heap, size: f64, deadline: Instant, tally: &Rc<Tally>) {
    // Long-lived state: a "module" of chains, alive for the whole run.
    let module = chains(heap, 50, 200);
    // Weak references are held until the next full collection, by which time their referents
    // (dead by refcount at once, or self-cycles) must all be dead and their callbacks run.
    let mut weaks: Vec<Weak<Node>> = Vec::new();
    for step in 0..scaled(2000, size) {
        // Short-lived expression trees.
        drop(tree(heap, 6));
        // Closures and frames: small cycles.
        make_ring(heap, 2 + step % 8);
        // Weak references with callbacks, one of them to something cyclic.
        let a = node(heap);
        let t = tally.clone();
        Tally::add(&tally.weak_callbacks_made, 1);
        let w = Weak::with_untraced_callback(&a, move |w: &Weak<Node>| {
            Tally::add(&t.weak_callbacks_run, 1);
            if w.upgrade().is_some() {
                Tally::add(&t.weak_violations, 1);
            }
        });
        if step % 2 == 0 {
            *a.next.borrow_mut() = Some(a.clone());
        }
        drop(a);
        // Objects with finalizers, now and then in a cycle.
        let f = heap.alloc(Fin {
            other: RefCell::new(None),
            tally: tally.clone(),
        });
        Tally::add(&tally.finalizable, 1);
        if step % 3 == 0 {
            *f.other.borrow_mut() = Some(f.clone());
        }
        drop(f);
        // Touch the long-lived state.
        let head = module[step % module.len()].clone();
        drop(head);
        weaks.push(w);
        if step % 100 == 99 {
            heap.collect(2);
            for w in weaks.drain(..) {
                if w.upgrade().is_some() {
                    Tally::add(&tally.weak_violations, 1);
                }
            }
        }
        if step % 256 == 0 && Instant::now() > deadline {
            break;
        }
    }
    heap.collect(2);
    drop(weaks);
    drop(module);
    heap.collect(2);
}

/// Runs `workloads` one after the other on `heap` (the default mix runs all of them).
pub fn run_all(
    heap: &Heap,
    workloads: &[&Workload],
    size: f64,
    budget: Duration,
    tally: &Rc<Tally>,
) {
    for w in workloads {
        let deadline = Instant::now() + budget;
        (w.run)(heap, size, deadline, tally);
    }
}
