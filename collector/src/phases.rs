//! One collection of generation `g`, in the order of SEMANTICS 2.
//!
//! [`collect`] is the whole algorithm's order; a heap supplies each phase by implementing
//! [`CollectionPhases`]. The order, and why:
//!
//! 1. **Guard** (1.5): a collection asked for while one runs returns 0 and does nothing.
//! 2. **Start callbacks** (2.1), with generation, collected 0, uncollectable 0.
//! 3. **Candidate filtering**: garbage needs a possible root among the candidates (an object a
//!    handle to which was dropped without reaching zero since a full collection last scanned it).
//!    With none, the generations only age.
//! 4. **Gather** the candidates (generations `0..=g`), copying each strong count into its
//!    scratch count, then **trial deletion** ([`mark_reachable_prepared`]). A full collection
//!    on a heap that keeps a record of its possible roots instead **discovers** its
//!    candidates from them ([`mark_reachable_from`]): it looks only at what they reach. No user code runs
//!    but traversal; a traversal that panics abandons the collection with real counts intact.
//! 5. **Partition** (2.3): survivors move to generation `g + 1`; the rest is the garbage.
//! 6. **Weak references** (2.4), only if some garbage has weak references or is one: every weak
//!    reference to garbage cleared, garbage weak references detached (their callbacks never
//!    run), then the other callbacks run. From partitioning on, the garbage is held back from
//!    the refcount path (a garbage object whose count reaches zero while user code runs is left
//!    for reclaim), so the collector's list of it stays valid through user code.
//! 7. **Finalizers** (2.5), each once.
//! 8. **Resurrection** (2.6), only if a finalizer ran: trial deletion again over what is left of
//!    the garbage; what is now reachable from outside survives, in generation `g + 1` with the
//!    survivors.
//! 9. **Reclaim** (2.7): break the cycles and free (or, with SAVEALL, keep) the garbage.
//! 10. **Statistics and stop callbacks** (2.8); the guard is released last, so a collection
//!     asked for from a stop callback returns 0 too.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::{
    mark_reachable_from, mark_reachable_prepared, CollectorHeap, Generations, GENERATIONS,
};

/// Phase of a collection callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackPhase {
    /// Before the collection.
    Start,
    /// After it.
    Stop,
}

/// What collection callbacks are told, as CPython's `info` dict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CollectionInfo {
    /// The oldest generation collected.
    pub generation: usize,
    /// Objects collected (0 at start).
    pub collected: usize,
    /// Objects found uncollectable (0 at start).
    pub uncollectable: usize,
    /// Time the collection took (zero at start).
    pub duration: Duration,
}

/// The outcome of partitioning the candidates after trial deletion.
#[derive(Debug)]
pub struct Partition<O> {
    /// How many candidates survived (moved to the next generation).
    pub survivors: usize,
    /// The unreachable candidates.
    pub garbage: Vec<O>,
    /// Whether some garbage object has weak references or is one (phase 6 is needed).
    pub needs_weak_phase: bool,
    /// Whether some garbage object has a finalizer that has not run (phase 7 is needed).
    pub needs_finalizers: bool,
}

/// The phases a heap supplies to [`collect`]. Every method but the callbacks, the weak phase,
/// the finalizer phase and reclaim must run no user code other than traversal.
pub trait CollectionPhases: CollectorHeap {
    /// The heap's generation bookkeeping.
    fn generations(&self) -> &Generations;

    /// Runs the collection callbacks; a panic in one is the heap's to report.
    fn run_callbacks(&self, phase: CallbackPhase, info: &CollectionInfo);

    /// The number of objects in generations `0..=g` if none of them is a possible root.
    fn count_if_no_possible_root(&self, g: usize) -> Option<usize>;

    /// Moves every object of generations `0..=g` into generation `to`, without looking at them.
    fn age(&self, g: usize, to: usize);

    /// For a full collection: the heap's possible roots (objects a handle to which was dropped
    /// without reaching zero since a full collection last found them reachable), taken from
    /// the heap's record of them, if the heap finds its candidates from them
    /// ([`crate::mark_reachable_from`], with [`CollectorHeap::discover`]). `None`, the default,
    /// makes the collection gather every object of the generations instead.
    ///
    /// `young` is generation 0's count as it stood when the collection began (tracked
    /// allocations less deallocations since the last collection; the counts are reset before
    /// this is asked), which stands in for generation 0's length when the heap weighs walking
    /// it against gathering everything.
    fn take_possible_roots(&self, young: usize) -> Option<Vec<Self::Object>> {
        let _ = young;
        None
    }

    /// The number of objects in generations `0..=2`, read before a full collection that
    /// discovers its candidates: the objects it never looks at survive too.
    fn population(&self) -> usize {
        0
    }

    /// Takes the objects of generations `0..=g` out of their lists as candidates, each with its
    /// scratch count set to its strong count and marked a candidate (trial deletion's step 1).
    fn gather(&self, g: usize) -> Vec<Self::Object>;

    /// A traversal panicked during trial deletion: keep every candidate, in generation `to`,
    /// and report the panic.
    fn abandon(&self, candidates: &[Self::Object], to: usize, panic: Box<dyn Any + Send>);

    /// Moves the reachable candidates to generation `to`, and returns the rest, held back from
    /// the refcount path until reclaim: none of it is freed before, whatever user code runs.
    fn partition(&self, candidates: Vec<Self::Object>, to: usize) -> Partition<Self::Object>;

    /// Phase 6 over the garbage. Returns how many weak-reference objects died as their
    /// callbacks ran (their last holder let go): CPython counts them as collected.
    fn handle_weakrefs(&self, garbage: &[Self::Object]) -> usize;

    /// Phase 7 over the garbage; returns whether any finalizer ran.
    fn finalize_garbage(&self, garbage: &[Self::Object]) -> bool;

    /// Phase 8's first half: prepares the garbage as candidates again, as
    /// [`CollectionPhases::gather`] does.
    fn prepare_resurrection_check(&self, garbage: &[Self::Object]);

    /// Phase 8's second half: moves the resurrected (reachable) ones to generation `to` (the
    /// survivors' generation, as CPython 3.11–3.13's `handle_resurrected_objects`) and returns
    /// the rest.
    fn partition_resurrected(&self, garbage: Vec<Self::Object>, to: usize) -> Vec<Self::Object>;

    /// Phase 9. Returns how many objects were collected: the garbage, and what CPython would
    /// have counted as part of it (weak-reference objects that only the garbage held).
    ///
    /// With the heap's "save all" debug flag, the garbage is kept instead, in generation `to`
    /// (the survivors', as CPython's `DEBUG_SAVEALL`).
    fn reclaim(&self, garbage: Vec<Self::Object>, to: usize) -> usize;

    /// Called once the outcome is known, before the stop callbacks (for debug output).
    fn collection_done(&self, _info: &CollectionInfo, _survivors: usize) {}
}

/// Collects generation `g` and every younger one; returns the number of objects collected, or
/// 0 if a collection is already running.
///
/// # Panics
/// If `g` is not a generation (0..=2).
pub fn collect<H: CollectionPhases>(heap: &H, g: usize) -> usize {
    assert!(g < GENERATIONS, "reap: generation {g} out of range 0..=2");
    let gens = heap.generations();
    if !gens.try_begin(g) {
        return 0;
    }
    // Ends the collection however this function is left: a panic that escaped a phase (a bug
    // in the heap's phases: user code's panics are the heap's to catch) must not leave the
    // heap believing a collection still runs, refusing every later one.
    struct Running<'a>(&'a Generations);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.0.finish_collection();
        }
    }
    let _running = Running(gens);
    let start = Instant::now();
    let mut info = CollectionInfo {
        generation: g,
        collected: 0,
        uncollectable: 0,
        duration: Duration::ZERO,
    };
    heap.run_callbacks(CallbackPhase::Start, &info);
    // The counts are reset after the start callbacks, which see them as they were (CPython's
    // `gc_collect_main` resets them after `invoke_gc_callback("start")`).
    let young = gens.counts()[0];
    gens.reset_counts(g);
    let (survivors, collected) = collect_generations(heap, g, young);
    info.collected = collected;
    info.duration = start.elapsed();
    gens.record_collection(g, survivors, collected, 0);
    heap.collection_done(&info, survivors);
    heap.run_callbacks(CallbackPhase::Stop, &info);
    collected
}

/// A full collection discovers its candidates from the possible roots only while there are
/// fewer than one root for this many objects of the generations; otherwise it gathers them all.
pub const DISCOVERY_RATIO: usize = 8;

/// Phases 3 to 9. Returns (survivors, collected).
fn collect_generations<H: CollectionPhases>(heap: &H, g: usize, young: usize) -> (usize, usize) {
    let to = (g + 1).min(GENERATIONS - 1);
    let roots = if g == GENERATIONS - 1 {
        heap.take_possible_roots(young)
    } else {
        None
    };
    // A full collection that looks only at what the possible roots reach costs that part's
    // price, not the heap's. When the roots are many for the heap's size, most of it is likely
    // reached anyway, and gathering every object (a walk in list order) is the cheaper way.
    let population = if roots.is_some() {
        heap.population()
    } else {
        0
    };
    let (candidates, untouched) = match roots {
        Some(roots) if roots.is_empty() => {
            // Nothing was dropped that could have left garbage: everything survives.
            heap.age(g, to);
            return (population, 0);
        }
        Some(roots) if roots.len().saturating_mul(DISCOVERY_RATIO) < population => {
            // What this never looks at is reachable from outside (see `mark_reachable_from`)
            // and joins the oldest generation, as after a collection of everything.
            let mut candidates = Vec::new();
            let traced = catch_unwind(AssertUnwindSafe(|| {
                mark_reachable_from(heap, &roots, &mut candidates)
            }));
            heap.age(g, to);
            if let Err(p) = traced {
                heap.abandon(&candidates, to, p);
                return (0, 0);
            }
            let untouched = population.saturating_sub(candidates.len());
            (candidates, untouched)
        }
        taken => {
            // With roots taken (and unmarked), there is garbage to look for whatever the marks
            // say now: skip candidate filtering.
            if taken.is_none() {
                if let Some(n) = heap.count_if_no_possible_root(g) {
                    heap.age(g, to);
                    return (n, 0);
                }
            }
            let candidates = heap.gather(g);
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| {
                mark_reachable_prepared(heap, &candidates)
            })) {
                heap.abandon(&candidates, to, p);
                return (0, 0);
            }
            (candidates, 0)
        }
    };
    let part = heap.partition(candidates, to);
    let survivors = untouched + part.survivors;
    let garbage = part.garbage;
    if garbage.is_empty() {
        return (survivors, 0);
    }
    let weak_freed = if part.needs_weak_phase {
        heap.handle_weakrefs(&garbage)
    } else {
        0
    };
    if part.needs_finalizers && heap.finalize_garbage(&garbage) {
        heap.prepare_resurrection_check(&garbage);
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| mark_reachable_prepared(heap, &garbage))) {
            // Keep everything: treat all of it as resurrected.
            heap.abandon(&garbage, to, p);
            return (survivors, weak_freed);
        }
        let garbage = heap.partition_resurrected(garbage, to);
        return (survivors, weak_freed + heap.reclaim(garbage, to));
    }
    (survivors, weak_freed + heap.reclaim(garbage, to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mark;
    use std::cell::{Cell, RefCell};

    /// A model heap that records the phases it is asked to run. Objects are indices; `edges`
    /// and `roots` give strong counts; objects with a finalizer may resurrect themselves (become
    /// a root) when finalized.
    struct Model {
        edges: Vec<Vec<usize>>,
        roots: RefCell<Vec<usize>>,
        finalizer: Vec<bool>,
        resurrects: Vec<bool>,
        finalized: RefCell<Vec<bool>>,
        root_mark: Vec<bool>,
        gen: RefCell<Vec<usize>>,
        freed: RefCell<Vec<bool>>,
        scratch: Vec<Cell<usize>>,
        mark: Vec<Cell<Mark>>,
        gens: Generations,
        calls: RefCell<Vec<String>>,
        /// Full collections discover their candidates from the objects with `root_mark`.
        by_roots: bool,
    }

    impl Model {
        fn new(edges: Vec<Vec<usize>>, roots: Vec<usize>) -> Model {
            let n = edges.len();
            Model {
                edges,
                roots: RefCell::new(roots),
                finalizer: vec![false; n],
                resurrects: vec![false; n],
                finalized: RefCell::new(vec![false; n]),
                root_mark: vec![true; n],
                gen: RefCell::new(vec![0; n]),
                freed: RefCell::new(vec![false; n]),
                scratch: (0..n).map(|_| Cell::new(0)).collect(),
                mark: (0..n).map(|_| Cell::new(Mark::Outside)).collect(),
                gens: Generations::new(),
                calls: RefCell::new(Vec::new()),
                by_roots: false,
            }
        }
        fn call(&self, s: &str) {
            self.calls.borrow_mut().push(s.to_string());
        }
        fn live(&self, g: usize) -> Vec<usize> {
            (0..self.edges.len())
                .filter(|&o| !self.freed.borrow()[o] && self.gen.borrow()[o] <= g)
                .collect()
        }
        fn prepare(&self, objs: &[usize]) {
            for &o in objs {
                self.scratch[o].set(self.strong_count(o));
                self.mark[o].set(Mark::Candidate);
            }
        }
    }

    impl CollectorHeap for Model {
        type Object = usize;
        fn strong_count(&self, o: usize) -> usize {
            let freed = self.freed.borrow();
            self.roots.borrow().iter().filter(|&&r| r == o).count()
                + (0..self.edges.len())
                    .filter(|&s| !freed[s])
                    .map(|s| self.edges[s].iter().filter(|&&t| t == o).count())
                    .sum::<usize>()
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
            for &t in &self.edges[o] {
                visit(t);
            }
            true
        }
        fn discover(&self, o: usize) -> bool {
            if self.freed.borrow()[o] || self.mark[o].get() != Mark::Outside {
                return false;
            }
            self.prepare(&[o]);
            true
        }
    }

    impl CollectionPhases for Model {
        fn take_possible_roots(&self, young: usize) -> Option<Vec<usize>> {
            if !self.by_roots {
                return None;
            }
            self.call(&format!("take possible roots young={young}"));
            Some(
                self.live(2)
                    .into_iter()
                    .filter(|&o| self.root_mark[o])
                    .collect(),
            )
        }
        fn population(&self) -> usize {
            self.live(2).len()
        }
        fn generations(&self) -> &Generations {
            &self.gens
        }
        fn run_callbacks(&self, phase: CallbackPhase, info: &CollectionInfo) {
            self.call(&format!("{phase:?} collected={}", info.collected));
        }
        fn count_if_no_possible_root(&self, g: usize) -> Option<usize> {
            let live = self.live(g);
            (!live.iter().any(|&o| self.root_mark[o])).then_some(live.len())
        }
        fn age(&self, g: usize, to: usize) {
            self.call("age");
            for o in self.live(g) {
                self.gen.borrow_mut()[o] = to;
            }
        }
        fn gather(&self, g: usize) -> Vec<usize> {
            self.call("gather");
            let c = self.live(g);
            self.prepare(&c);
            c
        }
        fn abandon(&self, _: &[usize], _: usize, _: Box<dyn Any + Send>) {
            self.call("abandon");
        }
        fn partition(&self, candidates: Vec<usize>, to: usize) -> Partition<usize> {
            self.call("partition");
            let mut p = Partition {
                survivors: 0,
                garbage: Vec::new(),
                needs_weak_phase: false,
                needs_finalizers: false,
            };
            for o in candidates {
                if self.mark[o].get() == Mark::Reachable {
                    self.gen.borrow_mut()[o] = to;
                    p.survivors += 1;
                } else {
                    p.needs_finalizers |= self.finalizer[o] && !self.finalized.borrow()[o];
                    p.garbage.push(o);
                }
                self.mark[o].set(Mark::Outside);
            }
            p
        }
        fn handle_weakrefs(&self, _: &[usize]) -> usize {
            self.call("weakrefs");
            0
        }
        fn finalize_garbage(&self, garbage: &[usize]) -> bool {
            self.call("finalize");
            let mut any = false;
            for &o in garbage {
                if self.finalizer[o] && !self.finalized.borrow()[o] {
                    self.finalized.borrow_mut()[o] = true;
                    any = true;
                    if self.resurrects[o] {
                        self.roots.borrow_mut().push(o);
                    }
                }
            }
            any
        }
        fn prepare_resurrection_check(&self, garbage: &[usize]) {
            self.call("prepare resurrection check");
            self.prepare(garbage);
        }
        fn partition_resurrected(&self, remaining: Vec<usize>, to: usize) -> Vec<usize> {
            self.call("partition resurrected");
            let mut garbage = Vec::new();
            for o in remaining {
                if self.mark[o].get() == Mark::Reachable {
                    self.gen.borrow_mut()[o] = to;
                } else {
                    garbage.push(o);
                }
                self.mark[o].set(Mark::Outside);
            }
            garbage
        }
        fn reclaim(&self, garbage: Vec<usize>, _to: usize) -> usize {
            self.call(&format!("reclaim {garbage:?}"));
            for &o in &garbage {
                self.freed.borrow_mut()[o] = true;
            }
            garbage.len()
        }
    }

    #[test]
    fn plain_garbage_skips_the_user_code_phases() {
        // 0 <-> 1 garbage, 2 rooted.
        let m = Model::new(vec![vec![1], vec![0], vec![]], vec![2]);
        assert_eq!(collect(&m, 2), 2);
        assert_eq!(
            *m.calls.borrow(),
            [
                "Start collected=0",
                "gather",
                "partition",
                "reclaim [0, 1]",
                "Stop collected=2"
            ]
        );
        assert_eq!(m.gens.stats()[2].collected, 2);
    }

    #[test]
    fn finalizers_then_resurrection_check_then_reclaim() {
        // Two garbage cycles: 0 <-> 1 (0 resurrects itself, taking 1 with it) and 2 <-> 3.
        let mut m = Model::new(vec![vec![1], vec![0], vec![3], vec![2]], vec![]);
        m.finalizer[0] = true;
        m.resurrects[0] = true;
        m.finalizer[2] = true;
        assert_eq!(collect(&m, 2), 2, "the resurrected pair is not counted");
        assert_eq!(
            *m.calls.borrow(),
            [
                "Start collected=0",
                "gather",
                "partition",
                "finalize",
                "prepare resurrection check",
                "partition resurrected",
                "reclaim [2, 3]",
                "Stop collected=2"
            ]
        );
        assert_eq!(*m.freed.borrow(), [false, false, true, true]);
        assert_eq!(
            m.gen.borrow()[0],
            2,
            "resurrected objects go to the oldest generation"
        );
    }

    #[test]
    fn no_possible_root_only_ages() {
        let mut m = Model::new(vec![vec![1], vec![0]], vec![]);
        m.root_mark = vec![false, false];
        assert_eq!(collect(&m, 0), 0);
        assert_eq!(
            *m.calls.borrow(),
            ["Start collected=0", "age", "Stop collected=0"]
        );
        assert_eq!(*m.gen.borrow(), [1, 1]);
    }

    #[test]
    fn a_collection_inside_a_collection_returns_zero() {
        let m = Model::new(vec![vec![0]], vec![]);
        assert!(m.gens.begin_collection(0));
        assert_eq!(collect(&m, 2), 0);
        assert!(m.calls.borrow().is_empty());
    }

    #[test]
    fn full_collection_from_possible_roots_looks_only_at_what_they_reach() {
        // 0 <-> 1 garbage (1 a possible root); 2 -> 3 live, and 4..20 live, none of them a
        // possible root: never traced, yet counted as survivors and moved to the oldest
        // generation.
        let n = 20;
        let mut edges = vec![vec![1], vec![0], vec![3]];
        edges.resize(n, vec![]);
        let mut roots = vec![2];
        roots.extend(4..n);
        let mut m = Model::new(edges, roots);
        m.by_roots = true;
        m.root_mark = vec![false; n];
        m.root_mark[1] = true;
        assert_eq!(collect(&m, 2), 2);
        assert_eq!(
            *m.calls.borrow(),
            [
                "Start collected=0",
                "take possible roots young=0",
                "age",
                "partition",
                "reclaim [1, 0]",
                "Stop collected=2"
            ]
        );
        assert!(m.gen.borrow().iter().all(|&g| g == 2));
        // Objects 2.. were never candidates.
        assert!((2..n).all(|o| m.mark[o].get() == Mark::Outside));
        assert_eq!(m.gens.stats()[2].collected, 2);
    }

    #[test]
    fn many_possible_roots_for_the_heap_gather_instead() {
        // Every object a possible root: gathering them all is cheaper than discovering.
        let mut m = Model::new(vec![vec![1], vec![0], vec![]], vec![2]);
        m.by_roots = true;
        assert_eq!(collect(&m, 2), 2);
        assert_eq!(
            m.calls.borrow()[1..3],
            [
                "take possible roots young=0".to_string(),
                "gather".to_string()
            ]
        );
    }

    #[test]
    fn no_possible_root_taken_means_no_garbage() {
        let mut m = Model::new(vec![vec![1], vec![0]], vec![]);
        m.by_roots = true;
        m.root_mark = vec![false, false];
        assert_eq!(collect(&m, 2), 0);
        assert_eq!(
            *m.calls.borrow(),
            [
                "Start collected=0",
                "take possible roots young=0",
                "age",
                "Stop collected=0"
            ]
        );
    }

    #[test]
    fn take_possible_roots_sees_generation_0s_count_from_before_the_reset() {
        let mut m = Model::new(vec![vec![1], vec![0]], vec![]);
        m.by_roots = true;
        m.root_mark = vec![false, false];
        for _ in 0..5 {
            m.gens.note_allocation();
        }
        m.gens.note_deallocation();
        collect(&m, 2);
        assert!(m
            .calls
            .borrow()
            .contains(&"take possible roots young=4".to_string()));
        assert_eq!(m.gens.counts()[0], 0, "reset for the collection");
    }

    #[test]
    fn young_collections_gather_even_with_a_record_of_roots() {
        let mut m = Model::new(vec![vec![1], vec![0]], vec![]);
        m.by_roots = true;
        assert_eq!(collect(&m, 0), 2);
        assert_eq!(m.calls.borrow()[1], "gather");
    }
}
