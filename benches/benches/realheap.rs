//! The real-heap shapes of `reap_bench::realheap` (aged heaps, payloads of 16, 40 and 100 bytes,
//! cold collections of 1M objects, weak-reference costs, automatic collection), on reap and,
//! where it can run them (the weak-reference shapes: `Rc::downgrade`, `rc::Weak::upgrade`,
//! dropping `Rc`s with weak references), on `std::rc::Rc`. CPython's figures come from
//! `benches/python/realheap.py`.
//!
//! Each iteration ages a fresh heap and builds the shape untimed (`iter_custom`), and counts
//! only the shape's timed part. Binary trees with automatic collection on are in
//! `refcount.rs` (`binary_trees_depth16_build_drop`, on a fresh heap).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reap_bench::realheap::{objects, run, SHAPES};

fn timed(runtime: &str, shape: &str, iters: u64) -> Duration {
    (0..iters)
        .map(|_| run(runtime, shape, 1.0).unwrap_or_else(|e| panic!("{runtime} {shape}: {e}")))
        .sum()
}

fn realheap(c: &mut Criterion) {
    for shape in SHAPES {
        let mut g = c.benchmark_group(format!("realheap_{shape}"));
        g.sample_size(10);
        g.throughput(Throughput::Elements(objects(shape, 1.0).unwrap() as u64));
        for runtime in ["reap", "Rc"] {
            if let Err(e) = run(runtime, shape, 0.001) {
                if e.starts_with("cannot") {
                    continue;
                }
                panic!("{runtime} {shape}: {e}");
            }
            g.bench_function(runtime, |b| {
                b.iter_custom(|iters| timed(runtime, shape, iters))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, realheap);
criterion_main!(benches);
