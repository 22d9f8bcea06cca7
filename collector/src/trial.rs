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
    let mut stack = Vec::new();
    for &o in candidates {
        if !heap.subtract_edges(o) {
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
}
