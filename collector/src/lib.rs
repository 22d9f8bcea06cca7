//! The cycle collector behind `reap`: generation bookkeeping, the trigger rule and (as the
//! algorithm lands) generational trial deletion, generic over the heap it collects.
//!
//! This crate knows nothing of memory layout, allocation or handle types. A heap describes
//! itself through the [`CollectorHeap`] trait; the bookkeeping of SEMANTICS §1 (counts,
//! thresholds, the 25% long-lived rule, statistics) lives in [`Generations`], a plain value the
//! heap owns.
//!
//! ```
//! use reap_collector::Generations;
//!
//! let gens = Generations::new();
//! gens.set_thresholds(3, 10, 10);
//! for _ in 0..3 {
//!     assert!(!gens.note_allocation());
//!     assert_eq!(gens.generation_to_collect(), None);
//! }
//! assert!(gens.note_allocation());
//! assert_eq!(gens.generation_to_collect(), Some(0));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::cell::Cell;

/// Number of collectable generations (0 young, 1, 2 old). The permanent (frozen) set is apart.
pub const GENERATIONS: usize = 3;

/// Default thresholds, as CPython 3.13: `(2000, 10, 10)`.
pub const DEFAULT_THRESHOLDS: [usize; GENERATIONS] = [2000, 10, 10];

/// The collector's mark on an object during trial deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Not part of the collection (another generation, or not tracked).
    Outside,
    /// A candidate not (yet) known to be reachable from outside the candidates.
    Candidate,
    /// A candidate found reachable from outside.
    Reachable,
}

/// What a heap offers the collector for trial deletion.
///
/// The collector reads each candidate's strong count, keeps a scratch count apart from the real
/// one (so a panicking traversal leaves real counts intact), marks candidates, and visits each
/// candidate's outgoing handles. No method may run user code other than traversal.
pub trait CollectorHeap {
    /// An object of this heap, as the collector names it: cheap to copy.
    type Object: Copy;

    /// The object's current strong count.
    fn strong_count(&self, object: Self::Object) -> usize;

    /// The object's scratch count.
    fn scratch(&self, object: Self::Object) -> usize;

    /// Sets the object's scratch count.
    fn set_scratch(&self, object: Self::Object, value: usize);

    /// The object's mark. Objects the collector never marked read as [`Mark::Outside`].
    fn mark(&self, object: Self::Object) -> Mark;

    /// Sets the object's mark.
    fn set_mark(&self, object: Self::Object, mark: Mark);

    /// Calls `visit` for every handle `object` holds. Returns `false` when the object could
    /// not be traversed completely (its interior was borrowed mutably): the collector then
    /// treats it as reachable from outside (SEMANTICS 5.3).
    fn visit_edges(&self, object: Self::Object, visit: &mut dyn FnMut(Self::Object)) -> bool;
}

/// Trial deletion, SEMANTICS 2.2: splits `candidates` into those reachable from outside the set
/// and the unreachable rest, which it returns. Every candidate is left marked
/// [`Mark::Reachable`] or [`Mark::Candidate`] (unreachable); the caller resets the marks.
///
/// See [`mark_reachable`] for the algorithm; this adds the final partition.
pub fn find_unreachable<H: CollectorHeap>(heap: &H, candidates: &[H::Object]) -> Vec<H::Object> {
    mark_reachable(heap, candidates);
    candidates
        .iter()
        .copied()
        .filter(|&o| heap.mark(o) == Mark::Candidate)
        .collect()
}

/// Trial deletion without the partition: afterwards every candidate reachable from outside the
/// set is marked [`Mark::Reachable`] and every unreachable one is still [`Mark::Candidate`]. A
/// heap that walks the candidates once more anyway (to relink survivors) partitions there and
/// saves a pass.
///
/// The algorithm, in three passes, each linear in candidates plus edges, none recursive:
///
/// 1. *Copy counts*: each candidate's scratch count starts at its strong count, and it is marked
///    as a candidate.
/// 2. *Subtract internal edges*: for every handle a candidate holds to another candidate, the
///    target's scratch count goes down by one. What is left is the number of handles held from
///    outside the candidates (from Rust locals, from objects of older generations, ...).
/// 3. *Mark from the roots*: every candidate with a scratch count above zero (or that could not
///    be traversed) is reachable, and so is everything it reaches through handles; an explicit
///    stack walks them. Unlike CPython's `move_unreachable`, the cost does not depend on the
///    order in which objects were linked.
///
/// Whatever is still only a candidate afterwards is referenced solely by other such candidates:
/// the garbage set.
pub fn mark_reachable<H: CollectorHeap>(heap: &H, candidates: &[H::Object]) {
    for &o in candidates {
        heap.set_scratch(o, heap.strong_count(o));
        heap.set_mark(o, Mark::Candidate);
    }
    mark_reachable_prepared(heap, candidates);
}

/// [`mark_reachable`] for a heap that did step 1 itself while gathering the candidates (each
/// candidate's scratch count set to its strong count, and marked [`Mark::Candidate`]): saves a
/// pass over the candidates.
pub fn mark_reachable_prepared<H: CollectorHeap>(heap: &H, candidates: &[H::Object]) {
    let mut stack = Vec::new();
    for &o in candidates {
        let complete = heap.visit_edges(o, &mut |t| {
            if heap.mark(t) == Mark::Candidate {
                // A count never goes below zero: an over-reporting traversal (a broken
                // hand-written Trace) must not wrap around into "reachable".
                heap.set_scratch(t, heap.scratch(t).saturating_sub(1));
            }
        });
        if !complete {
            stack.push(o);
        }
    }
    for &o in &stack {
        heap.set_mark(o, Mark::Reachable);
    }
    for &o in candidates {
        if heap.mark(o) == Mark::Candidate && heap.scratch(o) > 0 {
            heap.set_mark(o, Mark::Reachable);
            stack.push(o);
        }
    }
    while let Some(o) = stack.pop() {
        heap.visit_edges(o, &mut |t| {
            if heap.mark(t) == Mark::Candidate {
                heap.set_mark(t, Mark::Reachable);
                stack.push(t);
            }
        });
    }
}

/// Statistics of one generation, as `gc.get_stats()` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenerationStats {
    /// Collections of this generation (as the oldest generation collected).
    pub collections: u64,
    /// Objects collected by those collections.
    pub collected: u64,
    /// Objects found uncollectable by those collections.
    pub uncollectable: u64,
}

/// Generation bookkeeping of SEMANTICS §1: the counts, the thresholds, the trigger rule with
/// CPython's 25% long-lived rule, the enabled flag and per-generation statistics.
///
/// All methods take `&self` (the fields are cells), so a heap can keep this inline and update it
/// on every allocation without a borrow check.
///
/// Invariants: `counts[0]` is tracked allocations minus tracked deallocations since the last
/// generation-0 collection, never below zero; `counts[g]` for `g > 0` is the number of
/// collections of generation `g - 1` since the last collection of generation `g`.
#[derive(Debug)]
pub struct Generations {
    count0: Cell<usize>,
    /// `threshold0` when automatic collection may run, `usize::MAX` when it may not (disabled,
    /// threshold 0, or a collection running): the allocation fast path compares against this
    /// alone.
    trigger_at: Cell<usize>,
    counts: Cell<[usize; GENERATIONS]>,
    thresholds: Cell<[usize; GENERATIONS]>,
    enabled: Cell<bool>,
    collecting: Cell<bool>,
    long_lived_total: Cell<usize>,
    long_lived_pending: Cell<usize>,
    stats: Cell<[GenerationStats; GENERATIONS]>,
}

impl Default for Generations {
    fn default() -> Self {
        Self::new()
    }
}

impl Generations {
    /// Bookkeeping for an empty heap: counts zero, default thresholds, enabled.
    pub fn new() -> Self {
        let g = Generations {
            count0: Cell::new(0),
            trigger_at: Cell::new(0),
            counts: Cell::new([0; GENERATIONS]),
            thresholds: Cell::new(DEFAULT_THRESHOLDS),
            enabled: Cell::new(true),
            collecting: Cell::new(false),
            long_lived_total: Cell::new(0),
            long_lived_pending: Cell::new(0),
            stats: Cell::new([GenerationStats::default(); GENERATIONS]),
        };
        g.update_trigger();
        g
    }

    fn update_trigger(&self) {
        let t0 = self.thresholds.get()[0];
        let armed = self.enabled.get() && !self.collecting.get() && t0 != 0;
        self.trigger_at.set(if armed { t0 } else { usize::MAX });
    }

    /// A tracked object was allocated. Returns whether `count0` now exceeds an armed
    /// `threshold0`, that is, whether [`Generations::generation_to_collect`] should be asked.
    #[inline]
    pub fn note_allocation(&self) -> bool {
        let c = self.count0.get() + 1;
        self.count0.set(c);
        c > self.trigger_at.get()
    }

    /// A tracked object was freed. `counts[0]` never goes below zero.
    #[inline]
    pub fn note_deallocation(&self) {
        self.count0.set(self.count0.get().saturating_sub(1));
    }

    /// `n` tracked objects were freed at once.
    pub fn note_deallocations(&self, n: usize) {
        self.count0.set(self.count0.get().saturating_sub(n));
    }

    /// The counts, as `gc.get_count()`.
    pub fn counts(&self) -> [usize; GENERATIONS] {
        let mut c = self.counts.get();
        c[0] = self.count0.get();
        c
    }

    /// The thresholds, as `gc.get_threshold()`.
    pub fn thresholds(&self) -> [usize; GENERATIONS] {
        self.thresholds.get()
    }

    /// Sets the thresholds, as `gc.set_threshold()`. A `threshold0` of 0 disables automatic
    /// collection.
    pub fn set_thresholds(&self, t0: usize, t1: usize, t2: usize) {
        self.thresholds.set([t0, t1, t2]);
        self.update_trigger();
    }

    /// Whether automatic collection is enabled (`gc.isenabled()`).
    pub fn is_enabled(&self) -> bool {
        self.enabled.get()
    }

    /// Enables or disables automatic collection (`gc.enable()` / `gc.disable()`).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.set(enabled);
        self.update_trigger();
    }

    /// Whether a collection is running.
    pub fn is_collecting(&self) -> bool {
        self.collecting.get()
    }

    /// Per-generation statistics.
    pub fn stats(&self) -> [GenerationStats; GENERATIONS] {
        self.stats.get()
    }

    /// The trigger rule, SEMANTICS 1.4: when `counts[0] > threshold0` (and automatic collection
    /// is enabled, `threshold0 != 0` and no collection is running), the oldest generation whose
    /// count exceeds its threshold; generation 2 only when the objects that survived
    /// generation-1 collections since the last full collection exceed 25% of those that survived
    /// it.
    pub fn generation_to_collect(&self) -> Option<usize> {
        if self.count0.get() <= self.trigger_at.get() {
            return None;
        }
        let counts = self.counts.get();
        let thresholds = self.thresholds.get();
        for g in (1..GENERATIONS).rev() {
            if counts[g] > thresholds[g] {
                if g == GENERATIONS - 1
                    && self.long_lived_pending.get() < self.long_lived_total.get() / 4
                {
                    // Full collections wait until enough new long-lived objects piled up.
                    continue;
                }
                return Some(g);
            }
        }
        Some(0)
    }

    /// Marks the start of a collection of `generation`: counts `0..=generation` reset, the next
    /// generation's count goes up. Returns `false` (and changes nothing) when a collection is
    /// already running.
    pub fn begin_collection(&self, generation: usize) -> bool {
        assert!(
            generation < GENERATIONS,
            "generation {generation} out of range 0..=2"
        );
        if self.collecting.get() {
            return false;
        }
        self.collecting.set(true);
        self.update_trigger();
        let mut counts = self.counts.get();
        if generation + 1 < GENERATIONS {
            counts[generation + 1] += 1;
        }
        for c in &mut counts[..=generation] {
            *c = 0;
        }
        self.counts.set(counts);
        self.count0.set(0);
        true
    }

    /// Marks the end of a collection of `generation` that left `survivors` objects in the
    /// generation it moved them to, collected `collected` and found `uncollectable`:
    /// [`Generations::record_collection`] then [`Generations::finish_collection`].
    pub fn end_collection(
        &self,
        generation: usize,
        survivors: usize,
        collected: usize,
        uncollectable: usize,
    ) {
        self.record_collection(generation, survivors, collected, uncollectable);
        self.finish_collection();
    }

    /// Records the outcome of the running collection (statistics and the long-lived counts),
    /// leaving it running: a heap runs its "stop" callbacks between this and
    /// [`Generations::finish_collection`], so a collection asked for there returns 0.
    pub fn record_collection(
        &self,
        generation: usize,
        survivors: usize,
        collected: usize,
        uncollectable: usize,
    ) {
        debug_assert!(self.collecting.get());
        if generation == 1 {
            self.long_lived_pending
                .set(self.long_lived_pending.get() + survivors);
        } else if generation == 2 {
            self.long_lived_pending.set(0);
            self.long_lived_total.set(survivors);
        }
        let mut stats = self.stats.get();
        let s = &mut stats[generation];
        s.collections += 1;
        s.collected += collected as u64;
        s.uncollectable += uncollectable as u64;
        self.stats.set(stats);
    }

    /// Ends the running collection.
    pub fn finish_collection(&self) {
        debug_assert!(self.collecting.get());
        self.collecting.set(false);
        self.update_trigger();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain model heap: objects are indices, edges are lists of indices, and the strong count
    /// of an object is its in-degree plus its external roots.
    struct Model {
        edges: Vec<Vec<usize>>,
        roots: Vec<usize>,
        opaque: Vec<bool>,
        indegree: Vec<usize>,
        scratch: Vec<Cell<usize>>,
        mark: Vec<Cell<Mark>>,
    }

    impl Model {
        fn new(edges: Vec<Vec<usize>>, roots: Vec<usize>) -> Model {
            let n = edges.len();
            let mut indegree = vec![0; n];
            for &t in edges.iter().flatten() {
                indegree[t] += 1;
            }
            Model {
                indegree,
                edges,
                roots,
                opaque: vec![false; n],
                scratch: (0..n).map(|_| Cell::new(0)).collect(),
                mark: (0..n).map(|_| Cell::new(Mark::Outside)).collect(),
            }
        }
        fn strong(&self, o: usize) -> usize {
            self.roots[o] + self.indegree[o]
        }
    }

    impl CollectorHeap for Model {
        type Object = usize;
        fn strong_count(&self, o: usize) -> usize {
            self.strong(o)
        }
        fn scratch(&self, o: usize) -> usize {
            self.scratch[o].get()
        }
        fn set_scratch(&self, o: usize, v: usize) {
            self.scratch[o].set(v)
        }
        fn mark(&self, o: usize) -> Mark {
            self.mark[o].get()
        }
        fn set_mark(&self, o: usize, m: Mark) {
            self.mark[o].set(m)
        }
        fn visit_edges(&self, o: usize, visit: &mut dyn FnMut(usize)) -> bool {
            if self.opaque[o] {
                return false;
            }
            for &t in &self.edges[o] {
                visit(t);
            }
            true
        }
    }

    /// The oracle: a candidate is live if it is reachable, through any objects, from an
    /// external root or from a non-candidate (all of whose referents are treated as live).
    fn oracle(m: &Model, candidates: &[usize]) -> Vec<usize> {
        let n = m.edges.len();
        let is_cand: Vec<bool> = (0..n).map(|o| candidates.contains(&o)).collect();
        let mut live = vec![false; n];
        let mut stack: Vec<usize> = (0..n)
            .filter(|&o| m.roots[o] > 0 || !is_cand[o] || m.opaque[o])
            .collect();
        for &o in &stack {
            live[o] = true;
        }
        while let Some(o) = stack.pop() {
            if m.opaque[o] && is_cand[o] {
                // Its edges still count from outside, since they were never subtracted.
            }
            for &t in &m.edges[o] {
                if !live[t] {
                    live[t] = true;
                    stack.push(t);
                }
            }
        }
        candidates.iter().copied().filter(|&o| !live[o]).collect()
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_graphs_match_the_reachability_oracle() {
        let cases = if cfg!(miri) { 20 } else { 3000 };
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..cases {
            let n = 1 + rng.below(30);
            let edges: Vec<Vec<usize>> = (0..n)
                .map(|_| (0..rng.below(4)).map(|_| rng.below(n)).collect())
                .collect();
            let roots: Vec<usize> = (0..n).map(|_| usize::from(rng.below(5) == 0)).collect();
            let mut m = Model::new(edges, roots);
            for o in 0..n {
                m.opaque[o] = rng.below(20) == 0;
            }
            let candidates: Vec<usize> = (0..n).filter(|_| rng.below(4) != 0).collect();
            let mut got = find_unreachable(&m, &candidates);
            got.sort_unstable();
            assert_eq!(got, oracle(&m, &candidates), "graph {:?}", m.edges);
        }
    }

    #[test]
    fn long_ring_and_chain_need_no_recursion() {
        let n = if cfg!(miri) { 1_000 } else { 1_000_000 };
        let ring: Vec<Vec<usize>> = (0..n).map(|i| vec![(i + 1) % n]).collect();
        let m = Model::new(ring, vec![0; n]);
        let all: Vec<usize> = (0..n).collect();
        assert_eq!(find_unreachable(&m, &all).len(), n);
        let mut chain: Vec<Vec<usize>> = (0..n).map(|i| vec![i + 1]).collect();
        chain[n - 1].clear();
        let mut roots = vec![0; n];
        roots[0] = 1;
        let m = Model::new(chain, roots);
        assert!(find_unreachable(&m, &all).is_empty());
    }

    #[test]
    fn counts_follow_cpython_after_collect_0_1_2() {
        // test_collect_generations: (1,0,0) -> collect(0) -> (0,1,0) -> collect(1) -> (0,0,1)
        // -> collect(2) -> (0,0,0)
        let g = Generations::new();
        g.note_allocation();
        assert_eq!(g.counts(), [1, 0, 0]);
        assert!(g.begin_collection(0));
        g.end_collection(0, 1, 0, 0);
        assert_eq!(g.counts(), [0, 1, 0]);
        assert!(g.begin_collection(1));
        g.end_collection(1, 1, 0, 0);
        assert_eq!(g.counts(), [0, 0, 1]);
        assert!(g.begin_collection(2));
        g.end_collection(2, 1, 0, 0);
        assert_eq!(g.counts(), [0, 0, 0]);
        assert_eq!(g.stats()[2].collections, 1);
    }

    #[test]
    fn nested_collection_is_refused() {
        let g = Generations::new();
        assert!(g.begin_collection(0));
        assert!(!g.begin_collection(2));
        g.end_collection(0, 0, 0, 0);
        assert!(g.begin_collection(2));
    }

    #[test]
    fn deallocation_never_goes_below_zero() {
        let g = Generations::new();
        g.note_deallocation();
        assert_eq!(g.counts()[0], 0);
    }

    #[test]
    fn trigger_picks_oldest_due_generation_with_long_lived_rule() {
        let g = Generations::new();
        g.set_thresholds(1, 1, 1);
        assert_eq!(g.generation_to_collect(), None);
        g.note_allocation();
        g.note_allocation();
        assert_eq!(g.generation_to_collect(), Some(0));
        // Two gen-0 collections make count1 = 2 > 1.
        for _ in 0..2 {
            g.begin_collection(0);
            g.end_collection(0, 0, 0, 0);
        }
        g.note_allocation();
        g.note_allocation();
        assert_eq!(g.generation_to_collect(), Some(1));
        // A full collection that left 100 survivors; then gen-1 collections with few survivors
        // make count2 exceed its threshold, but 25% of 100 is not reached: generation 1 is chosen.
        g.begin_collection(2);
        g.end_collection(2, 100, 0, 0);
        for _ in 0..2 {
            g.begin_collection(1);
            g.end_collection(1, 5, 0, 0);
        }
        for _ in 0..2 {
            g.begin_collection(0);
            g.end_collection(0, 0, 0, 0);
        }
        g.note_allocation();
        g.note_allocation();
        assert_eq!(g.counts()[2], 2);
        assert_eq!(g.generation_to_collect(), Some(1));
        // Enough long-lived survivors: now the full collection is due.
        g.begin_collection(1);
        g.end_collection(1, 20, 0, 0);
        for _ in 0..2 {
            g.begin_collection(0);
            g.end_collection(0, 0, 0, 0);
        }
        g.note_allocation();
        g.note_allocation();
        assert_eq!(g.generation_to_collect(), Some(2));
    }

    #[test]
    fn disabled_or_zero_threshold_never_triggers() {
        let g = Generations::new();
        g.set_thresholds(1, 10, 10);
        g.set_enabled(false);
        for _ in 0..10_000 {
            g.note_allocation();
        }
        assert_eq!(g.generation_to_collect(), None);
        g.set_enabled(true);
        g.set_thresholds(0, 10, 10);
        assert_eq!(g.generation_to_collect(), None);
    }
}
