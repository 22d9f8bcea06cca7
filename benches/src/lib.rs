//! Benchmarks and the stress binary for reap.
