//! The cycle collector, in the shapes of `benches/python/collect.py` (run that for CPython's
//! figures): rings of 2, 10 and 21 nodes and one big ring, cyclic garbage with finalizers, weak
//! references cleared by the collector, and a large live heap (1,000 chains of 1,000) with young
//! garbage. Each iteration builds the heap shape untimed and times one `collect`.

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reap::{Finalize, Gc, Heap, Trace, Weak};

const N: usize = 1_000_000;

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

/// `total / size` doubly linked rings of `size` nodes, dropped: all garbage.
fn rings(heap: &Heap, size: usize, total: usize) {
    for _ in 0..total / size {
        let first = node(heap);
        let mut prev = first.clone();
        for _ in 1..size {
            let n = node(heap);
            *n.prev.borrow_mut() = Some(prev.clone());
            *prev.next.borrow_mut() = Some(n.clone());
            prev = n;
        }
        *prev.next.borrow_mut() = Some(first.clone());
        *first.prev.borrow_mut() = Some(prev);
    }
}

fn time_collect(
    iters: u64,
    g: usize,
    mut setup: impl FnMut(&Heap) -> Box<dyn std::any::Any>,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let heap = Heap::new();
        heap.disable();
        let keep = setup(&heap);
        let t = Instant::now();
        black_box(heap.collect(g));
        total += t.elapsed();
        drop(keep);
    }
    total
}

fn collect_rings(c: &mut Criterion) {
    let mut g = c.benchmark_group("collect_garbage_rings_1M_nodes");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    for size in [2, 10, 21, N] {
        let name = if size == N {
            "one_ring".to_string()
        } else {
            format!("rings_of_{size}")
        };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                time_collect(iters, 2, |heap| {
                    rings(heap, size, N);
                    Box::new(())
                })
            })
        });
    }
    g.finish();
}

#[derive(Trace)]
#[reap(finalize)]
struct Fin(RefCell<Option<Gc<Fin>>>);

impl Finalize for Fin {
    fn finalize(_: &Gc<Self>) {}
}

fn collect_finalizers_and_weakrefs(c: &mut Criterion) {
    let mut g = c.benchmark_group("collect_1M_objects");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("cyclic_pairs_with_finalizers", |b| {
        b.iter_custom(|iters| {
            time_collect(iters, 2, |heap| {
                for _ in 0..N / 2 {
                    let a = heap.alloc(Fin(RefCell::new(None)));
                    let b = heap.alloc(Fin(RefCell::new(Some(a.clone()))));
                    *a.0.borrow_mut() = Some(b);
                }
                Box::new(())
            })
        })
    });
    g.bench_function("cyclic_pairs_with_weakrefs_cleared", |b| {
        b.iter_custom(|iters| {
            time_collect(iters, 2, |heap| {
                let mut refs = Vec::with_capacity(N);
                for _ in 0..N / 2 {
                    let a = node(heap);
                    let b = node(heap);
                    *a.next.borrow_mut() = Some(b.clone());
                    *b.next.borrow_mut() = Some(a.clone());
                    refs.push(Weak::with_untraced_callback(&a, |_: &Weak<Node>| {}));
                    refs.push(Weak::with_untraced_callback(&b, |_: &Weak<Node>| {}));
                }
                Box::new(refs)
            })
        })
    });
    g.finish();
}

/// 1,000 chains of 1,000 live nodes (linked older to newer, or newer to older), collected once
/// so they are old, then 1,000 young garbage 2-rings.
fn live_heap(heap: &Heap, newer_to_older: bool, touch_heads: bool) -> Vec<Gc<Node>> {
    let mut heads = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let nodes: Vec<Gc<Node>> = (0..1000).map(|_| node(heap)).collect();
        if newer_to_older {
            for i in 1..nodes.len() {
                *nodes[i].next.borrow_mut() = Some(nodes[i - 1].clone());
            }
            heads.push(nodes[nodes.len() - 1].clone());
        } else {
            for i in 0..nodes.len() - 1 {
                *nodes[i].next.borrow_mut() = Some(nodes[i + 1].clone());
            }
            heads.push(nodes[0].clone());
        }
    }
    heap.collect(2);
    rings(heap, 2, 2000);
    if touch_heads {
        for h in &heads {
            drop(black_box(h.clone()));
        }
    }
    heads
}

fn collect_live_heap(c: &mut Criterion) {
    let mut g = c.benchmark_group("collect_with_1M_live_objects");
    g.sample_size(10);
    for (name, gen, n2o, touch) in [
        ("gen0", 0, false, false),
        ("gen0_heads_touched", 0, false, true),
        ("full_older_to_newer", 2, false, false),
        ("full_newer_to_older", 2, true, false),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                time_collect(iters, gen, |heap| Box::new(live_heap(heap, n2o, touch)))
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    collect_rings,
    collect_finalizers_and_weakrefs,
    collect_live_heap
);
criterion_main!(benches);
