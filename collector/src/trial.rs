//! Trial deletion (SEMANTICS 2.2), over any heap that implements [`CollectorHeap`].

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

    /// Step 2 for one candidate: subtracts one from the scratch count of every candidate it
    /// holds a handle to (never below zero: an over-reporting traversal, a broken hand-written
    /// trace, must not wrap around into "reachable"). Returns `false` when the object could not be
    /// traversed completely. The default goes through [`CollectorHeap::visit_edges`]; a heap can
    /// do the same without an indirect call per edge.
    fn subtract_edges(&self, object: Self::Object) -> bool {
        self.visit_edges(object, &mut |t| {
            if self.mark(t) == Mark::Candidate {
                self.set_scratch(t, self.scratch(t).saturating_sub(1));
            }
        })
    }

    /// For [`mark_reachable_from`]: makes `object` a candidate if it may belong to the garbage
    /// of the running collection and is not a candidate yet (step 1 for it: scratch count set
    /// to its strong count, marked [`Mark::Candidate`]), and says whether it did. The default
    /// discovers nothing: a heap that finds its candidates from possible roots overrides it.
    fn discover(&self, _object: Self::Object) -> bool {
        false
    }

    /// For [`mark_reachable_from`]: step 2 for one candidate, discovering as it goes. Every
    /// object it holds a handle to that [`CollectorHeap::discover`] makes a candidate is pushed
    /// on `found`; then one is subtracted from the scratch count of the target of every handle
    /// to a candidate, as [`CollectorHeap::subtract_edges`]. Returns `false` when the object
    /// could not be traversed completely.
    fn discover_edges(&self, object: Self::Object, found: &mut Vec<Self::Object>) -> bool {
        self.visit_edges(object, &mut |t| {
            if self.discover(t) {
                found.push(t);
            }
            if self.mark(t) == Mark::Candidate {
                self.set_scratch(t, self.scratch(t).saturating_sub(1));
            }
        })
    }

    /// Step 3 for one reachable object: marks every candidate it holds a handle to reachable,
    /// and pushes it on `stack`. The default goes through [`CollectorHeap::visit_edges`].
    fn mark_edges(&self, object: Self::Object, stack: &mut Vec<Self::Object>) {
        self.visit_edges(object, &mut |t| {
            if self.mark(t) == Mark::Candidate {
                self.set_mark(t, Mark::Reachable);
                stack.push(t);
            }
        });
    }
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
    let mut opaque = Vec::new();
    for &o in candidates {
        if !heap.subtract_edges(o) {
            opaque.push(o);
        }
    }
    mark_from_outside(heap, candidates, opaque);
}

/// Trial deletion over the part of the heap that `roots` reach, for a collection that finds
/// its candidates instead of gathering them: steps 1 and 2 run as the candidates are
/// discovered, and `candidates` ends up holding every object discovered (roots first), marked as
/// [`mark_reachable`] leaves them.
///
/// Why this finds all the garbage: a set of objects becomes garbage when the last handle into
/// it from outside is dropped, and that drop, not reaching zero, makes its target a possible
/// root; every member of the set is reachable from such targets (each has a holder inside the
/// set, and following holders backwards ends in a cycle that one of those drops cut off). So
/// the garbage lies inside what the possible roots reach, and what is not discovered is
/// reachable from outside by construction. A handle from an undiscovered object into a
/// candidate is simply never subtracted: it counts as a reference from outside, as it should.
///
/// The caller owns `candidates` so that, if a traversal panics, it still knows which objects
/// were made candidates (and must be put back).
pub fn mark_reachable_from<H: CollectorHeap>(
    heap: &H,
    roots: &[H::Object],
    candidates: &mut Vec<H::Object>,
) {
    for &r in roots {
        if heap.discover(r) {
            candidates.push(r);
        }
    }
    // `candidates` is also the queue: each is traced once, after its discovery, so every edge
    // between candidates is subtracted exactly once.
    let mut opaque = Vec::new();
    let mut next = 0;
    while next < candidates.len() {
        let o = candidates[next];
        next += 1;
        if !heap.discover_edges(o, candidates) {
            opaque.push(o);
        }
    }
    mark_from_outside(heap, candidates, opaque);
}

/// Step 3: marks reachable every candidate whose scratch count stayed above zero (held from
/// outside the candidates), the ones that could not be traversed (`opaque`), and everything
/// they reach.
fn mark_from_outside<H: CollectorHeap>(
    heap: &H,
    candidates: &[H::Object],
    mut stack: Vec<H::Object>,
) {
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
        heap.mark_edges(o, &mut stack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A plain model heap: objects are indices, edges are lists of indices, and the strong count
    /// of an object is its in-degree plus its external roots.
    struct Model {
        edges: Vec<Vec<usize>>,
        roots: Vec<usize>,
        opaque: Vec<bool>,
        indegree: Vec<usize>,
        scratch: Vec<Cell<usize>>,
        mark: Vec<Cell<Mark>>,
        /// The objects `discover` may make candidates (the generations being collected).
        eligible: Vec<bool>,
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
                eligible: vec![true; n],
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
        fn discover(&self, o: usize) -> bool {
            if !self.eligible[o] || self.mark[o].get() != Mark::Outside {
                return false;
            }
            self.scratch[o].set(self.strong(o));
            self.mark[o].set(Mark::Candidate);
            true
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

    /// What `roots` reach through eligible objects (the roots included if eligible); an opaque
    /// object's edges cannot be followed.
    fn reach(m: &Model, roots: &[usize]) -> Vec<usize> {
        let mut seen = vec![false; m.edges.len()];
        let mut stack: Vec<usize> = roots.iter().copied().filter(|&r| m.eligible[r]).collect();
        for &r in &stack {
            seen[r] = true;
        }
        let mut out = Vec::new();
        while let Some(o) = stack.pop() {
            out.push(o);
            if m.opaque[o] {
                continue;
            }
            for &t in &m.edges[o] {
                if m.eligible[t] && !seen[t] {
                    seen[t] = true;
                    stack.push(t);
                }
            }
        }
        out.sort_unstable();
        out
    }

    #[test]
    fn discovery_from_roots_matches_the_oracle_over_what_they_reach() {
        let cases = if cfg!(miri) { 20 } else { 3000 };
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for _ in 0..cases {
            let n = 1 + rng.below(30);
            let edges: Vec<Vec<usize>> = (0..n)
                .map(|_| (0..rng.below(4)).map(|_| rng.below(n)).collect())
                .collect();
            let roots: Vec<usize> = (0..n).map(|_| usize::from(rng.below(5) == 0)).collect();
            let mut m = Model::new(edges, roots);
            for o in 0..n {
                m.opaque[o] = rng.below(20) == 0;
                m.eligible[o] = rng.below(5) != 0;
            }
            let possible: Vec<usize> = (0..n).filter(|_| rng.below(3) == 0).collect();
            let mut found = Vec::new();
            mark_reachable_from(&m, &possible, &mut found);
            let mut discovered = found.clone();
            discovered.sort_unstable();
            let expected_set = reach(&m, &possible);
            assert_eq!(discovered, expected_set, "each object discovered once");
            let mut garbage: Vec<usize> = found
                .iter()
                .copied()
                .filter(|&o| m.mark(o) == Mark::Candidate)
                .collect();
            garbage.sort_unstable();
            assert_eq!(garbage, oracle(&m, &expected_set), "graph {:?}", m.edges);
        }
    }

    #[test]
    fn discovery_from_every_possible_root_finds_all_the_garbage() {
        // Every eligible object a possible root: the same garbage as gathering them all.
        let cases = if cfg!(miri) { 20 } else { 1000 };
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        for _ in 0..cases {
            let n = 1 + rng.below(30);
            let edges: Vec<Vec<usize>> = (0..n)
                .map(|_| (0..rng.below(4)).map(|_| rng.below(n)).collect())
                .collect();
            let roots: Vec<usize> = (0..n).map(|_| usize::from(rng.below(5) == 0)).collect();
            let m = Model::new(edges, roots);
            let all: Vec<usize> = (0..n).collect();
            let mut found = Vec::new();
            mark_reachable_from(&m, &all, &mut found);
            let mut garbage: Vec<usize> = found
                .iter()
                .copied()
                .filter(|&o| m.mark(o) == Mark::Candidate)
                .collect();
            garbage.sort_unstable();
            assert_eq!(garbage, oracle(&m, &all));
        }
    }
}
