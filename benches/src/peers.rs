//! The comparison workloads on reap's peers: `std::rc::Rc`, rust-cc, dumpster, bacon_rajan_cc
//! and gcmodule, in the shapes and sizes of [`crate::workloads`]. Each peer runs what its API
//! allows and says why not otherwise (`mix` needs weak-reference callbacks, which no peer has);
//! CPython runs `benches/python/stress.py`.
//!
//! The peers have no generations, so where reap collects generation 0 they collect everything;
//! none has weak-reference callbacks, so their `weak-churn` makes, upgrades and clears weak
//! references without callbacks.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// What the comparison runs.
pub const COMPARED: &[&str] = &[
    "trees",
    "rings",
    "big-ring",
    "live-heap",
    "live-heap-touched",
    "weak-churn",
    "finalizers",
    "mutator",
    "weak-map",
    "mix",
];

/// A peer: its name and how it runs a workload (the time it took, or why it cannot).
pub struct Peer {
    /// Its name in the table.
    pub name: &'static str,
    /// Runs `workload` at scale `size`.
    pub run: fn(&str, f64) -> Result<Duration, String>,
}

/// The Rust peers, in table order.
pub const PEERS: &[Peer] = &[
    Peer {
        name: "Rc",
        run: rc::run,
    },
    Peer {
        name: "rust-cc",
        run: rustcc::run,
    },
    Peer {
        name: "dumpster",
        run: dumpster_peer::run,
    },
    Peer {
        name: "bacon_rajan_cc",
        run: bacon::run,
    },
    Peer {
        name: "gcmodule",
        run: gcmod::run,
    },
];

fn scaled(n: usize, size: f64) -> usize {
    ((n as f64 * size) as usize).max(1)
}

thread_local! {
    /// Finalizer runs, for the peers' `finalizers` workload (checked: each ran once).
    static FINALIZED: Cell<u64> = const { Cell::new(0) };
}

fn count_finalizer() {
    FINALIZED.with(|f| f.set(f.get() + 1));
}

/// The workload bodies, over a peer module's `P` (the pointer), its node types `TreeNode`,
/// `Node`, `Fin` and `new_fin`, its `collect()`, and (if it has weak references) `weak_churn`.
macro_rules! shapes {
    () => {
        fn tree(depth: u32) -> P<TreeNode> {
            let (left, right) = if depth == 0 {
                (None, None)
            } else {
                (Some(tree(depth - 1)), Some(tree(depth - 1)))
            };
            P::new(TreeNode { left, right })
        }

        fn trees(size: f64) {
            let long_lived = tree(16.min(10 + (size * 6.0) as u32));
            for _ in 0..super::scaled(4, size) {
                for depth in (4..=16).step_by(2) {
                    for _ in 0..(1 << (16 - depth)) {
                        drop(tree(depth));
                    }
                }
            }
            drop(long_lived);
        }

        fn node() -> P<Node> {
            P::new(Node {
                prev: RefCell::new(None),
                next: RefCell::new(None),
            })
        }

        fn make_ring(len: usize) {
            let first = node();
            let mut prev = first.clone();
            for _ in 1..len {
                let n = node();
                *n.prev.borrow_mut() = Some(prev.clone());
                *prev.next.borrow_mut() = Some(n.clone());
                prev = n;
            }
            *prev.next.borrow_mut() = Some(first.clone());
            *first.prev.borrow_mut() = Some(prev);
        }

        fn rings(size: f64) {
            let total = super::scaled(300_000, size);
            for ring in [2, 10, 21] {
                for _ in 0..total / ring {
                    make_ring(ring);
                }
                collect();
            }
        }

        fn big_ring(size: f64) {
            make_ring(super::scaled(1_000_000, size));
            collect();
        }

        fn live_heap(size: f64, touch: bool) {
            let count = super::scaled(1000, size.sqrt());
            let len = super::scaled(1000, size.sqrt());
            let heads: Vec<P<Node>> = (0..count)
                .map(|_| {
                    let head = node();
                    let mut cur = head.clone();
                    for _ in 1..len {
                        let n = node();
                        *cur.next.borrow_mut() = Some(n.clone());
                        cur = n;
                    }
                    head
                })
                .collect();
            collect();
            for _ in 0..super::scaled(20, size) {
                for _ in 0..1000 {
                    make_ring(2);
                }
                if touch {
                    for h in &heads {
                        drop(h.clone());
                    }
                }
                collect();
            }
            collect();
            drop(heads);
        }

        fn mutator(size: f64) {
            crate::workloads::run_mutator(
                super::scaled(1_000_000, size),
                || {
                    P::new(Vertex {
                        edges: RefCell::new(Vec::new()),
                    })
                },
                |v: &Vertex| &v.edges,
                || false,
            );
            collect();
        }

        fn finalizers(size: f64) -> Result<(), String> {
            let before = super::FINALIZED.with(|f| f.get());
            let mut made = 0_u64;
            for _ in 0..super::scaled(20, size) {
                for _ in 0..10_000 {
                    let a = new_fin(None);
                    let b = new_fin(Some(a.clone()));
                    *a.other.borrow_mut() = Some(b);
                    made += 2;
                }
                collect();
            }
            let ran = super::FINALIZED.with(|f| f.get()) - before;
            if ran != made {
                return Err(format!(
                    "{made} objects with finalizers, {ran} finalizer runs"
                ));
            }
            Ok(())
        }

        /// Runs one workload and times it.
        pub fn run(workload: &str, size: f64) -> Result<std::time::Duration, String> {
            let start = std::time::Instant::now();
            match workload {
                "trees" => trees(size),
                "rings" => rings(size),
                "big-ring" => big_ring(size),
                "live-heap" => live_heap(size, false),
                "live-heap-touched" => live_heap(size, true),
                "mutator" => mutator(size),
                "mix" => {
                    return Err("cannot: no weak-reference callbacks (the mix has them)".into())
                }
                "weak-map" => {
                    return Err("not measured: no weak-value map (Rc's row shows a HashMap of weak references pruned by hand)".into())
                }
                "weak-churn" => weak_churn(size)?,
                "finalizers" => finalizers(size)?,
                other => return Err(format!("no such workload {other}")),
            }
            collect();
            Ok(start.elapsed())
        }
    };
}

/// `weak-churn` without callbacks, for peers with weak references: `downgrade`, `upgrade`.
macro_rules! weak_churn_with {
    ($downgrade:expr, $upgrade:expr) => {
        fn weak_churn(size: f64) -> Result<(), String> {
            for _ in 0..super::scaled(200, size) {
                let mut weaks = Vec::with_capacity(1000);
                let mut keep = Vec::with_capacity(1000);
                for i in 0..1000 {
                    let a = node();
                    weaks.push($downgrade(&a));
                    if i % 2 == 0 {
                        *a.next.borrow_mut() = Some(a.clone());
                    } else if i % 3 == 0 {
                        keep.push(a.clone());
                    }
                    drop(a);
                }
                for w in &weaks {
                    drop($upgrade(w));
                }
                collect();
                drop(keep);
                if weaks.iter().any(|w| $upgrade(w).is_some()) {
                    return Err("a weak reference to a freed object upgraded".into());
                }
            }
            Ok(())
        }
    };
}

mod rc {
    use super::*;

    /// `weak-map` the way a program without weak-reference callbacks does it: a `HashMap` of
    /// `rc::Weak` values, pruned by hand after the values die.
    fn weak_map(size: f64) {
        use std::collections::HashMap;
        use std::rc::{Rc, Weak};
        #[allow(dead_code)]
        struct Node(u64, u64);
        let mut map: HashMap<u64, Weak<Node>> = HashMap::new();
        let mut hits = 0_u64;
        for round in 0..scaled(200, size) as u64 {
            let mut values: Vec<Rc<Node>> = (0..1000).map(|i| Rc::new(Node(i, 0))).collect();
            for (i, v) in values.iter().enumerate() {
                map.insert(round * 1000 + i as u64, Rc::downgrade(v));
            }
            for _ in 0..2 {
                for i in 0..1000 {
                    hits += map
                        .get(&(round * 1000 + i))
                        .and_then(Weak::upgrade)
                        .is_some() as u64;
                }
            }
            let mut i = 0;
            values.retain(|_| {
                i += 1;
                i % 2 == 0
            });
            map.retain(|_, w| w.strong_count() > 0);
            for i in 0..1000 {
                hits += map
                    .get(&(round * 1000 + i))
                    .and_then(Weak::upgrade)
                    .is_some() as u64;
            }
            drop(values);
            map.retain(|_, w| w.strong_count() > 0);
        }
        std::hint::black_box(hits);
    }

    pub fn run(workload: &str, size: f64) -> Result<Duration, String> {
        if workload == "weak-map" {
            let start = Instant::now();
            weak_map(size);
            return Ok(start.elapsed());
        }
        if workload != "trees" {
            return Err("cannot: Rc leaks reference cycles (no collector)".into());
        }
        #[allow(dead_code)]
        struct TreeNode {
            left: Option<std::rc::Rc<TreeNode>>,
            right: Option<std::rc::Rc<TreeNode>>,
        }
        fn tree(depth: u32) -> std::rc::Rc<TreeNode> {
            let (left, right) = if depth == 0 {
                (None, None)
            } else {
                (Some(tree(depth - 1)), Some(tree(depth - 1)))
            };
            std::rc::Rc::new(TreeNode { left, right })
        }
        let start = Instant::now();
        let long_lived = tree(16.min(10 + (size * 6.0) as u32));
        for _ in 0..scaled(4, size) {
            for depth in (4..=16).step_by(2) {
                for _ in 0..(1 << (16 - depth)) {
                    drop(tree(depth));
                }
            }
        }
        drop(long_lived);
        Ok(start.elapsed())
    }
}

mod rustcc {
    use super::*;
    use rust_cc::{Cc as P, Finalize, Trace};

    #[derive(Trace, Finalize)]
    struct TreeNode {
        left: Option<P<TreeNode>>,
        right: Option<P<TreeNode>>,
    }

    #[derive(Trace, Finalize)]
    struct Node {
        prev: RefCell<Option<P<Node>>>,
        next: RefCell<Option<P<Node>>>,
    }

    #[derive(Trace, Finalize)]
    struct Vertex {
        edges: RefCell<Vec<P<Vertex>>>,
    }

    #[derive(Trace)]
    struct Fin {
        other: RefCell<Option<P<Fin>>>,
    }

    impl Finalize for Fin {
        fn finalize(&self) {
            count_finalizer();
        }
    }

    fn new_fin(other: Option<P<Fin>>) -> P<Fin> {
        P::new(Fin {
            other: RefCell::new(other),
        })
    }

    fn collect() {
        rust_cc::collect_cycles();
    }

    weak_churn_with!(|p: &P<Node>| p.downgrade(), |w: &rust_cc::weak::Weak<
        Node,
    >| w.upgrade());
    shapes!();
}

mod dumpster_peer {
    use super::*;
    use dumpster::unsync::Gc as P;
    use dumpster::Trace;

    #[derive(Trace)]
    struct TreeNode {
        left: Option<P<TreeNode>>,
        right: Option<P<TreeNode>>,
    }

    #[derive(Trace)]
    struct Node {
        prev: RefCell<Option<P<Node>>>,
        next: RefCell<Option<P<Node>>>,
    }

    #[derive(Trace)]
    struct Vertex {
        edges: RefCell<Vec<P<Vertex>>>,
    }

    #[derive(Trace)]
    struct Fin {
        other: RefCell<Option<P<Fin>>>,
    }

    impl Drop for Fin {
        fn drop(&mut self) {
            count_finalizer();
        }
    }

    fn new_fin(other: Option<P<Fin>>) -> P<Fin> {
        P::new(Fin {
            other: RefCell::new(other),
        })
    }

    fn collect() {
        dumpster::unsync::collect();
    }

    fn weak_churn(_: f64) -> Result<(), String> {
        Err("cannot: dumpster has no weak references".into())
    }

    shapes!();
}

mod bacon {
    use super::*;
    use bacon_rajan_cc::{Cc as P, Trace, Tracer};

    struct TreeNode {
        left: Option<P<TreeNode>>,
        right: Option<P<TreeNode>>,
    }

    impl Trace for TreeNode {
        fn trace(&self, tracer: &mut Tracer) {
            self.left.trace(tracer);
            self.right.trace(tracer);
        }
    }

    struct Node {
        prev: RefCell<Option<P<Node>>>,
        next: RefCell<Option<P<Node>>>,
    }

    impl Trace for Node {
        fn trace(&self, tracer: &mut Tracer) {
            self.prev.trace(tracer);
            self.next.trace(tracer);
        }
    }

    struct Vertex {
        edges: RefCell<Vec<P<Vertex>>>,
    }

    impl Trace for Vertex {
        fn trace(&self, tracer: &mut Tracer) {
            self.edges.trace(tracer);
        }
    }

    struct Fin {
        other: RefCell<Option<P<Fin>>>,
    }

    impl Trace for Fin {
        fn trace(&self, tracer: &mut Tracer) {
            self.other.trace(tracer);
        }
    }

    impl Drop for Fin {
        fn drop(&mut self) {
            count_finalizer();
        }
    }

    fn new_fin(other: Option<P<Fin>>) -> P<Fin> {
        P::new(Fin {
            other: RefCell::new(other),
        })
    }

    fn collect() {
        bacon_rajan_cc::collect_cycles();
    }

    weak_churn_with!(|p: &P<Node>| p.downgrade(), |w: &bacon_rajan_cc::Weak<
        Node,
    >| w.upgrade());
    shapes!();
}

mod gcmod {
    use super::*;
    use gcmodule::{Cc as P, Trace, Tracer};

    // Written by hand: gcmodule's derive recurses without end on self-referential types (its
    // `is_type_tracked` asks the field types, which ask the type again).
    macro_rules! tracked {
        ($t:ident { $($f:ident),* }) => {
            impl Trace for $t {
                fn trace(&self, tracer: &mut Tracer) {
                    $(self.$f.trace(tracer);)*
                }
                fn is_type_tracked() -> bool {
                    true
                }
            }
        };
    }

    struct TreeNode {
        left: Option<P<TreeNode>>,
        right: Option<P<TreeNode>>,
    }
    tracked!(TreeNode { left, right });

    struct Node {
        prev: RefCell<Option<P<Node>>>,
        next: RefCell<Option<P<Node>>>,
    }
    tracked!(Node { prev, next });

    struct Vertex {
        edges: RefCell<Vec<P<Vertex>>>,
    }
    tracked!(Vertex { edges });

    struct Fin {
        other: RefCell<Option<P<Fin>>>,
    }
    tracked!(Fin { other });

    impl Drop for Fin {
        fn drop(&mut self) {
            count_finalizer();
        }
    }

    fn new_fin(other: Option<P<Fin>>) -> P<Fin> {
        P::new(Fin {
            other: RefCell::new(other),
        })
    }

    fn collect() {
        gcmodule::collect_thread_cycles();
    }

    fn weak_churn(_: f64) -> Result<(), String> {
        Err("cannot: gcmodule has no weak references".into())
    }

    shapes!();
}
