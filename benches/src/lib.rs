//! Benchmarks and the stress binary for reap.
//!
//! `reap-stress` (in `src/bin`) runs the named GC stress [`workloads`] and prints a report; the
//! criterion benches live in `benches/`.

pub mod peers;
pub mod plot;
pub mod realheap;
pub mod threaded;
pub mod workloads;
