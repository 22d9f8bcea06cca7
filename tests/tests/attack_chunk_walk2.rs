//! More adversarial tests of the Shared-mode snapshot's walk chunk by chunk (written by the
//! review of 659cb15/a6b58ae; the two about new chunks failed then, one with a use after
//! free, and pass since `shared_slab::UNNUMBERED`). Layouts are arranged by hand: a chunk is
//! 64 KiB, `Node` blocks are 240 bytes (272 a chunk), `Leaf` blocks 48 bytes; the numbering
//! goes newest chunk first. The chunk size is fixed, so Miri runs the same sizes (a few
//! hundred objects).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};

use reap::sync::{Gc, Heap};
use reap::{Trace, Tracer};
use reap_tests::shared::{hooked, no_reports, within, Reports};

const CHUNK: usize = 64 * 1024;
const NODE_BLOCK: usize = 240;
const NODES_A_CHUNK: usize = (CHUNK - NODE_BLOCK) / NODE_BLOCK; // 272

/// A tracked leaf with no handles, counting its drops.
use reap_tests::shared::Payload as Leaf;

/// What a node's trace does (once), besides visiting its handles. Each is a breach of
/// `Trace`'s contract (it allocates, mutates, drops handles), of the kind the eighteenth
/// session's walk claims to survive.
enum Act {
    None,
    /// Allocates this many leaves into `made` (visited right after).
    Make(usize),
    /// Empties the world's shelf, then allocates one leaf into `made` and the second shelf.
    ClearThenMake,
    /// Panics (legitimate: SEMANTICS 5.4).
    Panic,
}

struct Node {
    id: usize,
    next: Mutex<Option<Gc<Node>>>,
    other: Mutex<Option<Gc<Node>>>,
    /// A handle set once, traced with no lock (so a second traversal is not stopped by the
    /// first one's kept guard).
    link: OnceLock<Gc<Node>>,
    link2: OnceLock<Gc<Node>>,
    made: OnceLock<Vec<Gc<Leaf>>>,
    act: Mutex<Act>,
    w: Arc<Shared>,
    _pad: [u8; NODE_BLOCK - 32 - 136],
}

/// What a test's nodes share.
struct Shared {
    heap: Heap,
    node_drops: Arc<AtomicUsize>,
    dropped_ids: Mutex<Vec<usize>>,
    leaf_drops: Arc<AtomicUsize>,
    shelf: Mutex<Vec<Gc<Leaf>>>,
    shelf2: Mutex<Vec<Gc<Leaf>>>,
    panic_armed: AtomicBool,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.w.node_drops.fetch_add(1, SeqCst);
        self.w.dropped_ids.lock().unwrap().push(self.id);
    }
}

// SAFETY: visits the handles it holds (breached on purpose by the acts).
unsafe impl Trace for Node {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        // Nodes linked by `link` keep their locks empty: not traversed (a second traversal
        // would find the first one's kept guard, and be incomplete).
        if self.link.get().is_none() {
            self.next.trace(tracer);
            self.other.trace(tracer);
        }
        self.link.trace(tracer);
        self.link2.trace(tracer);
        let act = std::mem::replace(&mut *self.act.lock().unwrap(), Act::None);
        match act {
            Act::None => {}
            Act::Make(n) => {
                let leaves: Vec<_> = (0..n).map(|id| self.w.leaf(id)).collect();
                let _ = self.made.set(leaves);
            }
            Act::ClearThenMake => {
                drop(std::mem::take(&mut *self.w.shelf.lock().unwrap()));
                let l = self.w.leaf(7777);
                self.w.shelf2.lock().unwrap().push(l.clone());
                let _ = self.made.set(vec![l]);
            }
            Act::Panic => {
                if self.w.panic_armed.load(SeqCst) {
                    *self.act.lock().unwrap() = Act::Panic;
                    panic!("a Trace panics mid-walk");
                }
            }
        }
        if let Some(m) = self.made.get() {
            m.trace(tracer);
        }
    }
}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            heap: Heap::new(),
            node_drops: Arc::default(),
            dropped_ids: Mutex::default(),
            leaf_drops: Arc::default(),
            shelf: Mutex::default(),
            shelf2: Mutex::default(),
            panic_armed: AtomicBool::new(false),
        })
    }
    fn leaf(&self, id: usize) -> Gc<Leaf> {
        self.heap.alloc(Leaf {
            id,
            drops: self.leaf_drops.clone(),
        })
    }
}

fn node(w: &Arc<Shared>, id: usize, act: Act) -> Gc<Node> {
    w.heap.alloc(Node {
        id,
        next: Mutex::new(None),
        other: Mutex::new(None),
        link: OnceLock::new(),
        link2: OnceLock::new(),
        made: OnceLock::new(),
        act: Mutex::new(act),
        w: w.clone(),
        _pad: [0; NODE_BLOCK - 32 - 136],
    })
}

/// Block address of an object (its header starts the block).
fn block<T>(g: &Gc<T>) -> usize {
    Gc::as_ptr(g) as usize - 32
}

/// (chunk base, index of the block in its chunk) for a Node.
fn place(g: &Gc<Node>) -> (usize, usize) {
    let b = block(g);
    let base = b & !(CHUNK - 1);
    (base, (b - base) / NODE_BLOCK - 1)
}

/// Makes `a -> b -> a`, dropping both locals: each is a possible root, each held once, by
/// the other.
fn ring2(a: Gc<Node>, b: Gc<Node>) {
    *a.next.lock().unwrap() = Some(b.clone());
    drop(a.clone());
    *b.next.lock().unwrap() = Some(a);
    drop(b);
}

fn tidy(w: &Arc<Shared>, reports: &Reports) {
    w.shelf.lock().unwrap().clear();
    w.shelf2.lock().unwrap().clear();
    assert_eq!(w.heap.live_objects(), 0, "heap empty at the end");
    no_reports(reports);
}

#[test]
fn layout_is_as_the_tests_assume() {
    assert_eq!(std::mem::size_of::<Node>() + 32, NODE_BLOCK);
    assert_eq!(std::mem::size_of::<Leaf>() + 32, 48);
    assert_eq!(NODES_A_CHUNK, 272);
}

/// A `Trace` makes a chunk of leaves during the first collection of a heap whose numbering
/// gave 272 numbers (not a multiple of 64): a leaf of the new chunk (whose header says 0)
/// gets a number in 272..320, which the bitmap covers but `slots` (resized to exactly 272)
/// does not. `Index::record` indexes out of bounds: the collection is abandoned and reported
/// as a panicking `Trace`, though no `Trace` panicked. (3021510: the edge is lost, nothing
/// reported.)
#[test]
fn a_new_chunk_numbered_past_the_slots_but_inside_the_bitmap() {
    within("new-chunk-oob", || {
        let w = Shared::new();
        let reports = hooked(&w.heap);
        w.heap.disable();
        // One chunk of nodes: 272 numbers in all.
        let a = node(&w, 0, Act::Make(400));
        let b = node(&w, 1, Act::None);
        ring2(a, b);
        let freed = w.heap.collect();
        let r = reports.lock().unwrap().clone();
        assert!(r.is_empty(), "collection abandoned: {r:?}");
        assert_eq!(
            w.node_drops.load(SeqCst),
            2,
            "the ring freed (freed {freed})"
        );
        assert_eq!(w.leaf_drops.load(SeqCst), 400);
        tidy(&w, &reports);
    });
}

/// The new chunk's leaves take numbers 1..=300 (the header of a chunk made during the walk
/// says 0), overwriting this snapshot's entries of real blocks: B (number 1) and H (272).
/// B <-> H is a garbage ring, found whole in the first chunk walked (B1, H1); B also holds C,
/// which the test holds too. When H's chunk is walked, H (a possible root) finds a leaf's
/// entry at its number and is made a candidate again (H2); H2 leads to B, again (B2); B2's
/// edge to C takes C's count from 1 to 0. Every copy ends at 0, so C, still held by the test,
/// is declared garbage and its value dropped.
#[test]
fn a_new_chunk_overwrites_entries_and_a_ring_is_counted_twice() {
    within("new-chunk-dup", || {
        let w = Shared::new();
        let reports = hooked(&w.heap);
        w.heap.disable();
        let mut fillers = Vec::new();
        // The old chunk: H at index 0, C at index 100, fillers elsewhere.
        let h = node(&w, 100, Act::None);
        for i in 1..100 {
            fillers.push(node(&w, 1000 + i, Act::None));
        }
        let c = node(&w, 200, Act::None);
        for i in 101..NODES_A_CHUNK {
            fillers.push(node(&w, 1000 + i, Act::None));
        }
        // The new chunk: a filler, B, A.
        fillers.push(node(&w, 999, Act::None));
        let b = node(&w, 101, Act::None);
        let a = node(&w, 300, Act::Make(300));
        assert_eq!(place(&h).1, 0);
        assert_eq!(place(&c), (place(&h).0, 100));
        assert_eq!(place(&b).1, 1);
        assert_eq!(place(&a), (place(&b).0, 2));
        assert_ne!(place(&b).0, place(&h).0);
        // Lock-free links (`OnceLock`): a second traversal of B or H is not stopped by the
        // guard the first one kept (a `Mutex` would make it incomplete, hence kept).
        let _ = b.link2.set(c.clone());
        *a.next.lock().unwrap() = Some(a.clone());
        drop(a);
        let _ = b.link.set(h.clone());
        drop(b.clone());
        let _ = h.link.set(b);
        drop(h);
        let freed = w.heap.collect();
        no_reports(&reports);
        let mut ids = w.dropped_ids.lock().unwrap().clone();
        ids.sort();
        assert_eq!(ids, vec![100, 101, 300], "B, H and A only (freed {freed})");
        assert_eq!(c.id, 200, "C intact");
        drop(c);
        drop(fillers);
        tidy(&w, &reports);
    });
}

/// A possible root X (a leaf, held by the shelf only) is made a candidate in the first chunk
/// walked (the leaves' chunk, newest); then a node's `Trace` empties the shelf and allocates a
/// leaf N, and visits it. Before the twenty-first session X was freed there and N took its
/// block; N's lookup found X's entry, and the check `cands[i].obj == o` passed (same address):
/// N was taken for X, with X's count (1), and the node's edge took it to 0, so N was declared
/// garbage while the second shelf held it.
///
/// A known failure from the eighteenth session (and before: it failed on `3021510` the same
/// way) until the twenty-first: the `Trace` breaks its contract (it drops handles and
/// allocates). Since the snapshot tags its candidates' `owner` and holds back the collecting
/// thread's drops of references to them (`count::dec_shared`), X keeps its count and its block
/// until the world runs again: N takes another block and is a candidate of its own, X dies
/// once, after the verdict, and N survives in the second shelf.
#[test]
fn a_block_freed_and_handed_out_again_in_the_same_pause() {
    within("reuse-block", || {
        let w = Shared::new();
        let reports = hooked(&w.heap);
        w.heap.disable();
        let a = node(&w, 1, Act::ClearThenMake);
        *a.next.lock().unwrap() = Some(a.clone());
        drop(a);
        let x = w.leaf(5);
        drop(x.clone());
        w.shelf.lock().unwrap().push(x);
        let freed = w.heap.collect();
        no_reports(&reports);
        assert_eq!(w.node_drops.load(SeqCst), 1, "the node (freed {freed})");
        assert_eq!(w.leaf_drops.load(SeqCst), 1, "only X, once");
        assert_eq!(w.shelf2.lock().unwrap()[0].id, 7777, "N intact");
        tidy(&w, &reports);
    });
}

/// A legitimate panic: a `Trace` of a root in the third chunk walked panics, after roots of
/// earlier chunks were traced (their locks' guards kept) and before later chunks are walked.
/// The collection is abandoned and reported once; nothing is freed; with the panic disarmed,
/// the next collection frees every ring (their marks restored), a live ring survives both,
/// and the heap empties.
#[test]
fn a_trace_panics_between_two_chunks_walks() {
    within("panic-midwalk", || {
        let w = Shared::new();
        let reports = hooked(&w.heap);
        w.heap.disable();
        let rings = if cfg!(miri) { 300 } else { 1_500 }; // 600 or 3,000 nodes: 3 to 12 chunks
        let mut live = None;
        for r in 0..rings {
            let act = if r == rings / 2 {
                Act::Panic
            } else {
                Act::None
            };
            let a = node(&w, 2 * r, act);
            let b = node(&w, 2 * r + 1, Act::None);
            if r == rings / 3 {
                live = Some(a.clone());
            }
            ring2(a, b);
        }
        w.panic_armed.store(true, SeqCst);
        assert_eq!(w.heap.collect(), 0, "abandoned");
        {
            let r = reports.lock().unwrap();
            assert_eq!(r.len(), 1, "{r:?}");
            assert!(r[0].1.contains("a Trace panics mid-walk"), "{r:?}");
        }
        reports.lock().unwrap().clear();
        assert_eq!(w.node_drops.load(SeqCst), 0);
        w.panic_armed.store(false, SeqCst);
        assert_eq!(
            w.heap.collect(),
            2 * (rings - 1),
            "every ring but the live one"
        );
        assert_eq!(w.node_drops.load(SeqCst), 2 * (rings - 1));
        let live = live.unwrap();
        assert!(live.next.lock().unwrap().is_some(), "live ring intact");
        drop(live);
        assert_eq!(w.heap.collect(), 2);
        tidy(&w, &reports);
    });
}

/// The index's scratch across collections: a large heap, then a small one (the `slots` of
/// the large one kept, with stale entries), then larger again, mixed with exhaustive
/// collections; every garbage ring found at each step, the live ones never.
#[test]
fn the_index_scratch_across_growing_and_shrinking_heaps() {
    within("scratch", || {
        let w = Shared::new();
        let reports = hooked(&w.heap);
        w.heap.disable();
        let sizes: &[usize] = if cfg!(miri) {
            &[400, 20, 3, 500, 1]
        } else {
            &[6_000, 100, 3, 9_000, 1, 2_000]
        };
        let mut expected = 0;
        let mut keep = Vec::new();
        for (step, &n) in sizes.iter().enumerate() {
            for r in 0..n {
                let a = node(&w, r, Act::None);
                let b = node(&w, r, Act::None);
                if r % 7 == 0 {
                    keep.push(a.clone());
                }
                ring2(a, b);
            }
            let freed = if step % 2 == 0 {
                w.heap.collect()
            } else {
                w.heap.collect_exhaustive()
            };
            let kept = n.div_ceil(7);
            assert_eq!(freed, 2 * (n - kept), "step {step}");
            expected += 2 * (n - kept);
            assert_eq!(w.node_drops.load(SeqCst), expected);
            // The kept rings go (the next collection finds them too).
            expected += 2 * keep.len();
            keep.clear();
            assert_eq!(w.heap.collect(), 2 * kept, "step {step}: the kept rings");
            assert_eq!(w.node_drops.load(SeqCst), expected);
        }
        tidy(&w, &reports);
    });
}
