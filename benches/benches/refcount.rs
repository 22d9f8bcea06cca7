//! The refcount path against `std::rc::Rc`, each group with Rc in it:
//! handle clone + drop, weak create / upgrade, and GCBench-shaped binary trees built and dropped.

use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, Criterion};
use reap::{Gc, Heap, Trace, Weak};

fn clone_drop(c: &mut Criterion) {
    let mut g = c.benchmark_group("clone_drop_not_reaching_zero");
    let rc = Rc::new(RefCell::new(5_u64));
    g.bench_function("rc", |b| {
        b.iter(|| {
            let x = black_box(&rc).clone();
            black_box(&x);
            drop(x);
        })
    });
    let heap = Heap::new();
    #[derive(Trace)]
    struct Obj(RefCell<u64>);
    let gc = heap.alloc(Obj(RefCell::new(5)));
    g.bench_function("reap", |b| {
        b.iter(|| {
            let x = black_box(&gc).clone();
            black_box(&x);
            drop(x);
        })
    });
    g.finish();
}

fn weak(c: &mut Criterion) {
    let heap = Heap::new();
    let rc = Rc::new(5_u64);
    let gc = heap.alloc(5_u64);
    // The object already has a weak reference, as an object with weak references in use does.
    let rc_w = Rc::downgrade(&rc);
    let gc_w = Weak::new(&gc);

    let mut g = c.benchmark_group("weak_create_drop");
    g.bench_function("rc", |b| {
        b.iter(|| {
            let w = Rc::downgrade(black_box(&rc));
            black_box(&w);
        })
    });
    g.bench_function("reap", |b| {
        b.iter(|| {
            let w = Weak::new(black_box(&gc));
            black_box(&w);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("weak_upgrade_drop");
    g.bench_function("rc", |b| {
        b.iter(|| {
            let s = black_box(&rc_w).upgrade();
            black_box(&s);
        })
    });
    g.bench_function("reap", |b| {
        b.iter(|| {
            let s = black_box(&gc_w).upgrade();
            black_box(&s);
        })
    });
    g.finish();

    // First weak reference to a fresh object: allocation of the weak-reference object included.
    let mut g = c.benchmark_group("weak_first_create_with_object");
    g.bench_function("rc", |b| {
        b.iter(|| {
            let o = Rc::new(black_box(1_u64));
            let w = Rc::downgrade(&o);
            black_box((&o, &w));
        })
    });
    g.bench_function("reap", |b| {
        b.iter(|| {
            let o = heap.alloc(black_box(1_u64));
            let w = Weak::new(&o);
            black_box((&o, &w));
        })
    });
    g.finish();
}

/// The fields are only ever dropped: that is the workload.
#[allow(dead_code)]
struct RcNode {
    left: Option<Rc<RefCell<RcNode>>>,
    right: Option<Rc<RefCell<RcNode>>>,
}

fn rc_tree(depth: u32) -> Rc<RefCell<RcNode>> {
    // Built bottom-up through an explicit stack of levels would obscure the shape; depth 16 is
    // shallow enough for recursion.
    if depth == 0 {
        Rc::new(RefCell::new(RcNode {
            left: None,
            right: None,
        }))
    } else {
        Rc::new(RefCell::new(RcNode {
            left: Some(rc_tree(depth - 1)),
            right: Some(rc_tree(depth - 1)),
        }))
    }
}

#[derive(Trace)]
struct GcNode {
    left: RefCell<Option<Gc<GcNode>>>,
    right: RefCell<Option<Gc<GcNode>>>,
}

fn gc_tree(heap: &Heap, depth: u32) -> Gc<GcNode> {
    if depth == 0 {
        heap.alloc(GcNode {
            left: RefCell::new(None),
            right: RefCell::new(None),
        })
    } else {
        let l = gc_tree(heap, depth - 1);
        let r = gc_tree(heap, depth - 1);
        heap.alloc(GcNode {
            left: RefCell::new(Some(l)),
            right: RefCell::new(Some(r)),
        })
    }
}

fn binary_trees(c: &mut Criterion) {
    let mut g = c.benchmark_group("binary_trees_depth16_build_drop");
    g.sample_size(20);
    g.bench_function("rc_refcell", |b| b.iter(|| drop(black_box(rc_tree(16)))));
    let heap = Heap::new();
    heap.disable();
    g.bench_function("reap_gc_off", |b| {
        b.iter(|| drop(black_box(gc_tree(&heap, 16))))
    });
    let heap = Heap::new();
    g.bench_function("reap_gc_on", |b| {
        b.iter(|| drop(black_box(gc_tree(&heap, 16))))
    });
    g.finish();
}

criterion_group!(benches, clone_drop, weak, binary_trees);
criterion_main!(benches);
