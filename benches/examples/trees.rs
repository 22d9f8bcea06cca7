//! 200 GCBench-shaped binary trees of depth 16, built and dropped, for quick whole-process
//! timing or profiling (`perf record`) outside criterion:
//!
//! ```sh
//! cargo build --release -p reap-bench --example trees
//! time target/release/examples/trees rc    # std::rc::Rc<RefCell<..>>
//! time target/release/examples/trees off   # reap, automatic collection off
//! time target/release/examples/trees on    # reap, automatic collection on
//! ```
//!
//! It prints the heap's collection statistics to stderr.

use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;

use reap::{Gc, Heap, Trace};

/// The fields are only ever dropped: that is the workload.
#[allow(dead_code)]
struct RcNode {
    left: Option<Rc<RefCell<RcNode>>>,
    right: Option<Rc<RefCell<RcNode>>>,
}

fn rc_tree(depth: u32) -> Rc<RefCell<RcNode>> {
    let (left, right) = if depth == 0 {
        (None, None)
    } else {
        (Some(rc_tree(depth - 1)), Some(rc_tree(depth - 1)))
    };
    Rc::new(RefCell::new(RcNode { left, right }))
}

#[derive(Trace)]
struct GcNode {
    left: RefCell<Option<Gc<GcNode>>>,
    right: RefCell<Option<Gc<GcNode>>>,
}

fn gc_tree(heap: &Heap, depth: u32) -> Gc<GcNode> {
    let (left, right) = if depth == 0 {
        (None, None)
    } else {
        (
            Some(gc_tree(heap, depth - 1)),
            Some(gc_tree(heap, depth - 1)),
        )
    };
    heap.alloc(GcNode {
        left: RefCell::new(left),
        right: RefCell::new(right),
    })
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "on".into());
    if !["rc", "off", "on"].contains(&mode.as_str()) {
        eprintln!("usage: trees [rc|off|on]");
        std::process::exit(2);
    }
    let heap = Heap::new();
    if mode == "off" {
        heap.disable();
    }
    for _ in 0..200 {
        if mode == "rc" {
            drop(black_box(rc_tree(16)));
        } else {
            drop(black_box(gc_tree(&heap, 16)));
        }
    }
    eprintln!("{mode}: {:?}", heap.get_stats());
}
