//! Adversarial tests of the Shared-mode snapshot's walk chunk by chunk (eighteenth session):
//! each root is traced as soon as its chunk is walked, so user code (a `Trace`) now runs
//! between two chunks' walks. What a `Trace` does there, on the collecting thread while the
//! world is stopped, must leave the walk sound and the verdict conservative: it allocates
//! (new blocks in chunks not yet walked, and new chunks the numbering never saw), and it
//! drops handles (blocks freed in chunks not yet walked). Each test checks what was freed and
//! that the heap empties at the end; Miri runs them on smaller heaps.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use reap::sync::{Gc, Heap};
use reap::{Trace, Tracer};
use reap_tests::shared::{hooked, no_reports, within, Payload};

/// Scales a count down under Miri.
fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        (n / 50).max(4)
    } else {
        n
    }
}

/// `n` new payloads on `heap`, numbered from 0, counting their drops in `drops`.
fn payloads(heap: &Heap, drops: &Arc<AtomicUsize>, n: usize) -> Vec<Gc<Payload>> {
    (0..n)
        .map(|id| {
            heap.alloc(Payload {
                id,
                drops: drops.clone(),
            })
        })
        .collect()
}

/// What a [`Node`]'s trace does besides visiting its link, once (the first time it runs).
enum Act {
    /// Nothing.
    None,
    /// Allocates this many payloads on the heap and keeps them in the shelf.
    Alloc(usize),
    /// Empties the shelf: its payloads die on the collecting thread, during the snapshot.
    Clear,
}

/// A ring node whose trace may act on the heap (see [`Act`]).
struct Node {
    next: Mutex<Option<Gc<Node>>>,
    act: Mutex<Act>,
    heap: Heap,
    shelf: Arc<Mutex<Vec<Gc<Payload>>>>,
    drops: Arc<AtomicUsize>,
    node_drops: Arc<AtomicUsize>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.node_drops.fetch_add(1, SeqCst);
    }
}

// SAFETY: visits the one handle it holds (through its lock); the payloads the shelf holds
// are the shelf's (an `Arc` outside the heap), not the node's.
unsafe impl Trace for Node {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.next.trace(tracer);
        let act = std::mem::replace(&mut *self.act.lock().unwrap(), Act::None);
        match act {
            Act::None => {}
            Act::Alloc(n) => {
                let made = payloads(&self.heap, &self.drops, n);
                self.shelf.lock().unwrap().extend(made);
            }
            Act::Clear => drop(std::mem::take(&mut *self.shelf.lock().unwrap())),
        }
    }
}

/// The shared parts of a test's nodes.
struct World {
    heap: Heap,
    shelf: Arc<Mutex<Vec<Gc<Payload>>>>,
    drops: Arc<AtomicUsize>,
    node_drops: Arc<AtomicUsize>,
}

impl World {
    fn new() -> World {
        World {
            heap: Heap::new(),
            shelf: Arc::new(Mutex::new(Vec::new())),
            drops: Arc::new(AtomicUsize::new(0)),
            node_drops: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn node(&self, act: Act) -> Gc<Node> {
        self.heap.alloc(Node {
            next: Mutex::new(None),
            act: Mutex::new(act),
            heap: self.heap.clone(),
            shelf: self.shelf.clone(),
            drops: self.drops.clone(),
            node_drops: self.node_drops.clone(),
        })
    }

    /// `rings` garbage rings of `len` nodes; the node at `(ring, 0)` of `acting` acts.
    fn garbage_rings(&self, rings: usize, len: usize, acting: usize, act: impl Fn() -> Act) {
        for r in 0..rings {
            let first = self.node(if r == acting { act() } else { Act::None });
            let mut last = first.clone();
            for _ in 1..len {
                let n = self.node(Act::None);
                *n.next.lock().unwrap() = Some(last);
                last = n;
            }
            *first.next.lock().unwrap() = Some(last);
        }
    }

    fn shelved(&self) -> usize {
        self.shelf.lock().unwrap().len()
    }

    /// `n` new payloads, numbered from 0.
    fn payloads(&self, n: usize) -> Vec<Gc<Payload>> {
        payloads(&self.heap, &self.drops, n)
    }
}

/// Runs `f` on a new world whose heap collects only when asked, under the watchdog; then
/// empties the shelf and checks that the heap is empty and nothing was reported.
fn scenario(name: &str, f: impl FnOnce(&World) + Send + 'static) {
    within(name, || {
        let w = World::new();
        let reports = hooked(&w.heap);
        w.heap.disable();
        f(&w);
        w.shelf.lock().unwrap().clear();
        assert_eq!(w.heap.live_objects(), 0);
        no_reports(&reports);
    });
}

/// A `Trace` in the first chunk's first ring allocates enough payloads to fill several new
/// chunks while the walk has chunks left: the garbage is found whole, nothing else is freed,
/// and every payload is intact afterwards.
#[test]
fn a_trace_that_allocates_new_chunks_between_two_chunks_walks() {
    scenario("alloc-new-chunks", |w| {
        let rings = scaled(6_000);
        let made = scaled(5_000);
        w.garbage_rings(rings, 3, 0, || Act::Alloc(made));
        assert_eq!(w.heap.collect(), 3 * rings, "the rings, nothing else");
        assert_eq!(w.node_drops.load(SeqCst), 3 * rings);
        assert_eq!(w.shelved(), made);
        assert_eq!(w.drops.load(SeqCst), 0, "no payload freed");
        for (i, p) in w.shelf.lock().unwrap().iter().enumerate() {
            assert_eq!(p.id, i, "a payload intact");
        }
        w.shelf.lock().unwrap().clear();
        assert_eq!(w.drops.load(SeqCst), made);
    });
}

/// As above, with the allocating ring in the middle of the walk, after a first collection
/// left free blocks in every chunk: the payloads fill free blocks of chunks walked already
/// and of chunks not yet walked, then new chunks.
#[test]
fn a_trace_that_allocates_into_freed_blocks_of_walked_and_unwalked_chunks() {
    scenario("alloc-freed-blocks", |w| {
        let rings = scaled(4_000);
        w.garbage_rings(rings, 2, rings - 1, || Act::None);
        assert_eq!(w.heap.collect(), 2 * rings);
        let made = scaled(3_000);
        w.garbage_rings(rings, 2, rings / 2, || Act::Alloc(made));
        assert_eq!(w.heap.collect(), 2 * rings);
        assert_eq!(w.node_drops.load(SeqCst), 4 * rings);
        assert_eq!(w.shelved(), made);
        assert_eq!(w.drops.load(SeqCst), 0);
    });
}

/// A `Trace` empties the shelf during the walk: payloads in chunks walked already and in
/// chunks not yet walked die on the collecting thread while the world is stopped, those the
/// walk met being candidates (each is a possible root: a reference went, one is left). The
/// rings are still found, and each payload is freed once.
#[test]
fn a_trace_that_frees_blocks_of_chunks_not_yet_walked() {
    scenario("free-unwalked", |w| {
        let rings = scaled(3_000);
        let n = scaled(3_000);
        // Payloads before and after the rings, in memory.
        let before = w.payloads(n);
        w.garbage_rings(rings, 2, 0, || Act::Clear);
        let after = w.payloads(n);
        for p in before.iter().chain(&after) {
            drop(p.clone());
        }
        w.shelf
            .lock()
            .unwrap()
            .extend(before.into_iter().chain(after));
        assert_eq!(w.heap.collect(), 2 * rings);
        assert_eq!(w.node_drops.load(SeqCst), 2 * rings);
        assert_eq!(w.drops.load(SeqCst), 2 * n, "every payload freed once");
        assert_eq!(w.shelved(), 0);
    });
}

/// Garbage rings the walk meets as possible roots (their last outside handle just dropped),
/// and, in the middle of the walk, garbage rings whose `Trace` frees payloads: both kinds of
/// rings are found whole, each payload is freed once, during the snapshot.
#[test]
fn rings_met_as_roots_around_a_trace_that_frees() {
    scenario("free-roots", |w| {
        let rings = scaled(2_000);
        let keep: Vec<_> = (0..rings)
            .map(|_| {
                let a = w.node(Act::None);
                let b = w.node(Act::None);
                *a.next.lock().unwrap() = Some(b.clone());
                *b.next.lock().unwrap() = Some(a.clone());
                a
            })
            .collect();
        w.garbage_rings(rings, 2, rings / 2, || Act::Clear);
        let n = scaled(1_000);
        w.shelf.lock().unwrap().extend(w.payloads(n));
        drop(keep);
        assert_eq!(w.heap.collect(), 4 * rings, "both kinds of rings");
        assert_eq!(w.node_drops.load(SeqCst), 4 * rings);
        assert_eq!(w.drops.load(SeqCst), n);
    });
}

/// A node that, when first traced, allocates `n` payloads (the first of their size class on
/// the heap: a chunk the snapshot's numbering never saw, whose header says 0) and reports
/// an edge to each through a lock it traces after. Their numbers, computed from that header,
/// fall anywhere below the new chunk's capacity, past the numbered blocks too.
struct Grower {
    extra: Mutex<Vec<Gc<Payload>>>,
    grow: Mutex<usize>,
    heap: Heap,
    drops: Arc<AtomicUsize>,
}

// SAFETY: visits every handle it holds (those `extra` holds, through its lock).
unsafe impl Trace for Grower {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        let n = std::mem::take(&mut *self.grow.lock().unwrap());
        if n > 0 {
            let made = payloads(&self.heap, &self.drops, n);
            self.extra.lock().unwrap().extend(made);
        }
        self.extra.trace(tracer);
    }
}

/// The edges a `Trace` reports to objects of a chunk made during the snapshot are looked up
/// by numbers past the numbered blocks (the heap had one grower): found as no candidate,
/// never a panic; the collection frees nothing and reports nothing, and the payloads live
/// until their grower goes.
#[test]
fn edges_to_a_chunk_made_during_the_snapshot_past_the_numbered_blocks() {
    within("edges-new-chunk", || {
        let heap = Heap::new();
        let reports = hooked(&heap);
        heap.disable();
        let drops = Arc::new(AtomicUsize::new(0));
        let n = if cfg!(miri) { 300 } else { 3_000 };
        let a = heap.alloc(Grower {
            extra: Mutex::new(Vec::new()),
            grow: Mutex::new(n),
            heap: heap.clone(),
            drops: drops.clone(),
        });
        // A possible root (a reference went, one is left): the collection traces it.
        drop(a.clone());
        assert_eq!(heap.collect(), 0, "nothing is garbage");
        no_reports(&reports);
        {
            let extra = a.extra.lock().unwrap();
            assert_eq!(extra.len(), n);
            assert!(extra.iter().enumerate().all(|(i, p)| p.id == i));
        }
        assert_eq!(drops.load(SeqCst), 0);
        // Traced again with the payloads numbered this time: still nothing garbage.
        drop(a.clone());
        assert_eq!(heap.collect(), 0);
        drop(a);
        assert_eq!(drops.load(SeqCst), n, "the payloads went with their grower");
        assert_eq!(heap.live_objects(), 0);
        no_reports(&reports);
    });
}
