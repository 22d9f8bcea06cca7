//! Bytes of resident memory per live object: reap (tracked and untracked) against `std::rc::Rc`,
//! for a 16-byte payload (one handle and one integer), measured as RSS growth over 1,000,000
//! live objects. `benches/python/rss.py` measures CPython the same way.
//!
//! Run: `cargo run --release -p reap-bench --bin rss`

use std::cell::RefCell;
use std::rc::Rc;

use reap::{Gc, Heap, Trace};

const N: usize = 1_000_000;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[derive(Trace)]
struct Tracked {
    next: Option<Gc<Tracked>>,
    value: u64,
}

#[derive(Trace)]
struct Untracked {
    a: u64,
    b: u64,
}

#[allow(dead_code)]
struct RcNode {
    next: Option<Rc<RefCell<RcNode>>>,
    value: u64,
}

fn measure<T>(name: &str, make: impl Fn(Option<&T>) -> T) {
    let before = rss_bytes();
    let mut keep: Vec<T> = Vec::with_capacity(N);
    let vec_bytes = N * std::mem::size_of::<T>();
    for i in 0..N {
        let t = make(if i == 0 { None } else { keep.last() });
        keep.push(t);
    }
    let grown = rss_bytes().saturating_sub(before).saturating_sub(vec_bytes);
    let per = grown as f64 / N as f64;
    println!(
        "{name:<28} {per:>6.1} bytes/object  ({:>5.1} over the 16-byte payload)",
        per - 16.0
    );
    drop(keep);
}

fn main() {
    let heap = Heap::new();
    heap.disable();
    measure::<Gc<Tracked>>("reap tracked", |prev| {
        heap.alloc(Tracked {
            next: prev.cloned(),
            value: 1,
        })
    });
    measure::<Gc<Untracked>>("reap untracked", |_| heap.alloc(Untracked { a: 1, b: 2 }));
    // Not chained: dropping a 1,000,000-long Rc chain overflows the stack (Rc has no trashcan).
    measure::<Rc<RefCell<RcNode>>>("Rc<RefCell<..>>", |_| {
        Rc::new(RefCell::new(RcNode {
            next: None,
            value: 1,
        }))
    });
}
