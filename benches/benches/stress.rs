//! Each `reap-stress` workload as a criterion bench, at a small size (0.05 of the default
//! scale), on a fresh heap per iteration: `stress_workload/<name>` measures one whole run of
//! that workload, collections and teardown included.

use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use reap::Heap;
use reap_bench::workloads::{Tally, WORKLOADS};

fn stress(c: &mut Criterion) {
    let mut g = c.benchmark_group("stress_workload");
    g.sample_size(10);
    for w in WORKLOADS {
        g.bench_function(w.name, |b| {
            b.iter(|| {
                let heap = Heap::new();
                let tally = Rc::new(Tally::default());
                (w.run)(
                    &heap,
                    0.05,
                    Instant::now() + Duration::from_secs(60),
                    &tally,
                );
                drop(heap);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, stress);
criterion_main!(benches);
