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
//! - `trees`: `N` binary trees of depth 16 (131,071 nodes each) built and dropped (Local with
//!   automatic collection off, as Shared mode has no collector yet);
//! - `upgrade`: `N` × 100,000 upgrades of a weak reference to a live object, each result dropped;
//! - `weak-create`: `N` × 10,000 rounds of an object allocated, a weak reference made to it, and
//!   both dropped.
//!
//! Divide the instruction count by the work done (131,071 × `N` nodes, and so on).

use std::hint::black_box;

use reap::Trace;

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
        "sync-trees" => {
            let heap = reap::sync::Heap::new();
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
            for _ in 0..n * 10_000 {
                let o = heap.alloc(black_box(1_u64));
                let w = reap::Weak::new(&o);
                black_box((&o, &w));
            }
        }
        "sync-weak-create" => {
            let heap = reap::sync::Heap::new();
            for _ in 0..n * 10_000 {
                let o = heap.alloc(black_box(1_u64));
                let w = reap::sync::Weak::new(&o);
                black_box((&o, &w));
            }
        }
        _ => {
            eprintln!(
                "usage: shared_loops (sync|local)-(trees|upgrade|weak-create) [N]\n\
                 (see the module docs)"
            );
            std::process::exit(2);
        }
    }
}
