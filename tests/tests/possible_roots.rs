//! Full collections that look only at what the possible roots reach (issue 11): a full
//! collection finds its candidates from the objects a dropped handle left possibly garbage,
//! so an untouched live heap costs nothing, while the objects collected, the counts and the
//! generations stay those of a collection of everything.

use std::cell::{Cell, RefCell};

use reap::{Gc, Heap, Trace, Tracer, Weak};

thread_local! {
    /// How many times a `Counted` was traced.
    static TRACED: Cell<usize> = const { Cell::new(0) };
}

fn traced() -> usize {
    TRACED.with(|t| t.get())
}

/// A node that counts its traversals.
struct Counted {
    next: RefCell<Option<Gc<Counted>>>,
}

// SAFETY: visits the one handle it holds; counting in a thread-local touches no runtime state.
unsafe impl Trace for Counted {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        TRACED.with(|t| t.set(t.get() + 1));
        self.next.trace(tracer);
    }
}

fn node(heap: &Heap, next: Option<Gc<Counted>>) -> Gc<Counted> {
    heap.alloc(Counted {
        next: RefCell::new(next),
    })
}

/// `chains` live chains of `len` nodes, built by moving handles (no drop leaves a count above
/// zero, so nothing in them is a possible root).
fn live_chains(heap: &Heap, chains: usize, len: usize) -> Vec<Gc<Counted>> {
    (0..chains)
        .map(|_| {
            let mut head = node(heap, None);
            for _ in 1..len {
                head = node(heap, Some(head));
            }
            head
        })
        .collect()
}

/// `n` garbage 2-rings: each ring's outside handles are dropped, which makes them possible roots.
fn garbage_rings(heap: &Heap, n: usize) {
    for _ in 0..n {
        let a = node(heap, None);
        let b = node(heap, Some(a.clone()));
        *a.next.borrow_mut() = Some(b);
    }
}

/// Chains and their length: smaller under Miri.
const SIDE: usize = if cfg!(miri) { 40 } else { 100 };

#[test]
fn full_collection_of_an_untouched_live_heap_traces_only_the_garbage() {
    let heap = Heap::new();
    heap.disable();
    let chains = live_chains(&heap, SIDE, SIDE);
    heap.collect(2);
    garbage_rings(&heap, 10);
    let before = traced();
    assert_eq!(heap.collect(2), 20);
    let cost = traced() - before;
    assert!(
        cost <= 2 * 20,
        "traced {cost} times for 20 garbage objects beside {} live ones",
        SIDE * SIDE
    );
    // The generations are those of a collection of everything.
    assert_eq!(heap.generation_len(0), 0);
    assert_eq!(heap.generation_len(1), 0);
    assert_eq!(heap.generation_len(2), SIDE * SIDE);
    assert_eq!(heap.live_objects(), SIDE * SIDE);
    drop(chains);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn touching_a_chain_makes_only_that_chain_a_suspect() {
    let heap = Heap::new();
    heap.disable();
    let chains = live_chains(&heap, SIDE, SIDE);
    heap.collect(2);
    drop(chains[7].clone());
    garbage_rings(&heap, 1);
    let before = traced();
    assert_eq!(heap.collect(2), 2);
    let cost = traced() - before;
    // The touched chain (SIDE nodes) is discovered and found reachable: traced twice at most;
    // the other chains are never looked at.
    assert!(cost <= 2 * (SIDE + 2), "traced {cost} times");
    // Found reachable, the chain is no longer a possible root: the next collection skips it.
    garbage_rings(&heap, 1);
    let before = traced();
    assert_eq!(heap.collect(2), 2);
    assert!(traced() - before <= 4);
    drop(chains);
}

#[test]
fn garbage_reachable_only_through_an_old_untouched_object_is_found() {
    // The garbage cycle's only possible root is the old object the cut handle pointed at;
    // discovery follows it into the young part of the cycle.
    let heap = Heap::new();
    heap.disable();
    let old = node(&heap, None);
    heap.collect(2);
    let young = node(&heap, Some(old.clone()));
    *old.next.borrow_mut() = Some(young);
    // Only `old`'s handle is dropped: it is the one possible root.
    drop(old);
    assert_eq!(heap.collect(2), 2);
    assert_eq!(heap.live_objects(), 0);
}

/// `n` old objects (survivors of a collection), each recorded as a possible root by a drop that
/// leaves its count above zero, then dropped: they die while recorded.
fn recorded_then_dead(heap: &Heap, keep: &Gc<Counted>, n: usize) {
    let objs: Vec<_> = (0..n).map(|_| node(heap, Some(keep.clone()))).collect();
    heap.collect(0);
    for o in &objs {
        drop(o.clone());
    }
    drop(objs);
}

#[test]
fn objects_that_die_while_recorded_are_freed_and_counted_at_once() {
    // Dying while recorded, an object is freed and counted at once; its memory goes back when
    // the record lets go of it: at a sweep (the record outgrew its limit: 4,096 entries, 64
    // under Miri), or at the heap's end.
    let heap = Heap::new();
    heap.disable();
    let n = if cfg!(miri) { 300 } else { 5_000 };
    let keep = node(&heap, None);
    for round in 1..=3 {
        recorded_then_dead(&heap, &keep, n);
        assert_eq!(heap.live_objects(), 1);
        assert_eq!(heap.freed_objects(), (round * n) as u64);
    }
    assert_eq!(heap.collect(2), 0);
    recorded_then_dead(&heap, &keep, 100);
    drop(keep);
    assert_eq!(heap.live_objects(), 0);
    drop(heap);
}

#[test]
fn a_full_collection_takes_the_record_and_frees_the_dead_in_it() {
    let heap = Heap::new();
    heap.disable();
    let chains = live_chains(&heap, SIDE, SIDE);
    heap.collect(2);
    let keep = node(&heap, None);
    recorded_then_dead(&heap, &keep, 20);
    // An old garbage ring: its members were recorded when its outside handles went.
    let a = node(&heap, None);
    let b = node(&heap, Some(a.clone()));
    *a.next.borrow_mut() = Some(b.clone());
    heap.collect(0);
    drop((a, b));
    let before = traced();
    assert_eq!(heap.collect(2), 2);
    assert!(
        traced() - before <= 8,
        "found from the record, not by gathering"
    );
    assert_eq!(heap.live_objects(), SIDE * SIDE + 1);
    drop((chains, keep));
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn weak_references_and_finalizers_behave_the_same_from_possible_roots() {
    #[derive(Trace)]
    struct Pair {
        other: RefCell<Option<Gc<Pair>>>,
    }
    let heap = Heap::new();
    heap.disable();
    let live = live_chains(&heap, 10, 10);
    heap.collect(2);
    let a = heap.alloc(Pair {
        other: RefCell::new(None),
    });
    let b = heap.alloc(Pair {
        other: RefCell::new(Some(a.clone())),
    });
    *a.other.borrow_mut() = Some(b.clone());
    let called = std::rc::Rc::new(Cell::new(0));
    let c = called.clone();
    let w = Weak::with_untraced_callback(&a, move |_| c.set(c.get() + 1));
    drop((a, b));
    assert_eq!(heap.collect(2), 2);
    assert!(w.upgrade().is_none());
    assert_eq!(called.get(), 1);
    drop(live);
}

#[test]
fn freezing_falls_back_to_gathering_and_still_collects() {
    let heap = Heap::new();
    heap.disable();
    let frozen = live_chains(&heap, 1, 10);
    heap.freeze();
    garbage_rings(&heap, 3);
    assert_eq!(heap.collect(2), 6);
    assert_eq!(heap.generation_len(3), 10);
    heap.unfreeze();
    drop(frozen);
}

/// A node whose slot lives in an `Rc` shared with the test: a handle can be moved into it by
/// code that holds no handle to the node.
struct RcSlot {
    slot: std::rc::Rc<RefCell<Option<Gc<RcSlot>>>>,
}

// SAFETY: visits the one handle it holds.
unsafe impl Trace for RcSlot {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.slot.trace(tracer);
    }
}

/// Moves the only handle of a new node into the node's own slot, after a full collection
/// found it reachable (clearing its mark): garbage that no dropped reference announces.
fn moved_self_cycle(heap: &Heap) {
    let slot = std::rc::Rc::new(RefCell::new(None));
    let x = heap.alloc(RcSlot { slot: slot.clone() });
    drop(x.clone());
    assert_eq!(heap.collect(2), 0);
    *slot.borrow_mut() = Some(x);
}

#[test]
fn a_handle_moved_into_its_own_node_through_an_rc_is_found_by_an_exhaustive_collection() {
    let heap = Heap::new();
    heap.disable();
    moved_self_cycle(&heap);
    assert_eq!(heap.collect(2), 0, "no possible root leads to it");
    assert_eq!(heap.collect_exhaustive(), 1);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn shutdown_frees_a_cycle_closed_by_a_move() {
    let heap = Heap::new();
    heap.disable();
    moved_self_cycle(&heap);
    heap.shutdown();
    assert_eq!(heap.live_objects(), 0);
}

/// Full collections examine every object of the generations once those have more than doubled
/// (plus 2,000) since the low point of what full collections left alive.
#[test]
fn a_full_collection_examines_everything_once_the_heap_doubles() {
    let heap = Heap::new();
    heap.disable();
    moved_self_cycle(&heap);
    // One survivor: the low point.
    assert_eq!(heap.collect(2), 0);
    let before = traced();
    let live: Vec<_> = (0..2_100).map(|_| node(&heap, None)).collect();
    // 2,101 objects listed, past 2 × 1 + 2,000: this full collection examines everything.
    assert_eq!(heap.collect(2), 1);
    assert!(traced() - before >= 2_100, "every node traced");
    // The low point is now 2,100: the next one looks at the possible roots only.
    let before = traced();
    assert_eq!(heap.collect(2), 0);
    assert_eq!(traced(), before, "nothing traced");
    drop(live);
    assert_eq!(heap.collect(2), 0);
    assert_eq!(heap.live_objects(), 0);
}
