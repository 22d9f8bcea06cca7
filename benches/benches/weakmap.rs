//! The weak-value map against what a program without weak-reference callbacks does: a
//! `HashMap` of `std::rc::Weak` values pruned by hand. One iteration is one run of the
//! `weak-map` workload at size 0.05 (10 rounds of 1,000 entries filled, hit twice, half the
//! values dying, looked up again, the rest dying). CPython's `WeakValueDictionary` runs the same
//! shape in `reap-stress --compare`.

use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use reap::Heap;
use reap_bench::peers::PEERS;
use reap_bench::workloads::{find, Tally};

const SIZE: f64 = 0.05;

fn weak_map(c: &mut Criterion) {
    let mut g = c.benchmark_group("weak_value_map_fill_hit_churn");
    g.bench_function("reap_weak_value_map", |b| {
        let w = find("weak-map").expect("the weak-map workload");
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let heap = Heap::new();
                let tally = Rc::new(Tally::default());
                let start = Instant::now();
                (w.run)(&heap, SIZE, start + Duration::from_secs(60), &tally);
                total += start.elapsed();
            }
            total
        })
    });
    g.bench_function("hashmap_of_rc_weak_pruned_by_hand", |b| {
        let rc = PEERS.iter().find(|p| p.name == "Rc").expect("the Rc peer");
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| (rc.run)("weak-map", SIZE).expect("Rc runs weak-map"))
                .sum()
        })
    });
    g.finish();
}

criterion_group!(benches, weak_map);
criterion_main!(benches);
