//! Adversarial scenarios for the record of possible roots (`runtime/src/roots.rs`) and the full
//! collections that discover their candidates from it (SEMANTICS 2.2, ARCHITECTURE invariant
//! 9): user code (`Drop`s, finalizers, weak-reference and collection callbacks, the unraisable
//! hook, `Trace` implementations) calling back into the runtime while the record is live, being
//! swept, or taken by a collection.
//!
//! Every test asserts outcomes: which objects were finalized and dropped (exactly once), what
//! `collect` returned, the counts, what the unraisable hook was told. The `cpython_*` tests run
//! the same program as the Python script quoted in their comment (python3 3.11, `__slots__`
//! classes so that each Python object is one reap object) and compare the logs line for line.
//!
//! Full collections only discover from the record when the possible roots are few for the
//! heap's size (`DISCOVERY_RATIO`), so most tests keep a ballast of live, untouched objects,
//! and check with a trace counter that the collection looked only at what the roots reach.
//! Sizes are small enough for Miri; the record's sweep limit is 64 entries under Miri, 4,096
//! natively (`roots::MIN_LIMIT`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reap::{CollectPhase, Finalize, Gc, Heap, Trace, Tracer, Unraisable, UnraisableKind, Weak};
use reap_tests::Rng;

/// The record's sweep limit (`roots::MIN_LIMIT`).
const LIMIT: usize = if cfg!(miri) { 64 } else { 4096 };
/// Live objects no one touches: enough that a full collection discovers from its few roots.
const BALLAST: usize = 200;

thread_local! {
    /// What ran, in order.
    static LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// How many times a `Node` was traced.
    static TRACES: Cell<usize> = const { Cell::new(0) };
    /// Calls of `trace` per lying node (by address).
    static CALLS: RefCell<HashMap<usize, usize>> = RefCell::new(HashMap::new());
    /// Nodes with `Lie::PanicWhileArmed` panic in `trace` while this is set.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// A heap that user code may take and drop.
    static HEAP_SLOT: RefCell<Option<Heap>> = const { RefCell::new(None) };
}

fn log(s: impl Into<String>) {
    let s = s.into();
    if s.starts_with("drop exit") {
        EXIT_DROPS.fetch_add(1, Ordering::SeqCst);
    } else if s.starts_with("del exit") {
        EXIT_DELS.fetch_add(1, Ordering::SeqCst);
    }
    // At thread exit the log may be gone already.
    let _ = LOG.try_with(|l| l.borrow_mut().push(s));
}

/// Everything logged since the last call (and forgets it).
fn take_log() -> Vec<String> {
    LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// The log without the `drop …` lines (CPython has no `Drop`).
fn without_drops(events: &[String]) -> Vec<String> {
    events
        .iter()
        .filter(|e| !e.starts_with("drop "))
        .cloned()
        .collect()
}

/// The `drop …` lines, sorted.
fn drops(events: &[String]) -> Vec<String> {
    let mut d: Vec<String> = events
        .iter()
        .filter(|e| e.starts_with("drop "))
        .cloned()
        .collect();
    d.sort();
    d
}

fn count_of(events: &[String], s: &str) -> usize {
    events.iter().filter(|e| *e == s).count()
}

fn traces() -> usize {
    TRACES.with(|t| t.get())
}

/// Resets the thread's test state (tests may share a thread under some runners).
fn reset() {
    take_log();
    CALLS.with(|c| c.borrow_mut().clear());
    ARMED.with(|a| a.set(false));
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// How a node's `trace` behaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Lie {
    /// Visits every handle, every time.
    Honest,
    /// Panics while `ARMED` is set.
    PanicWhileArmed,
    /// Visits its handles on its first call only (fewer on later calls: allowed by `Trace`'s
    /// contract call by call, inconsistent across calls).
    EdgesOnFirstCallOnly,
    /// Visits no handle on its first call, every handle afterwards.
    EdgesAfterFirstCall,
}

/// A node's finalizer behaviour.
type Fin = Rc<dyn Fn(&Gc<Node>)>;
/// What a node's `Drop` runs.
type DropHook = Box<dyn FnOnce(&mut Node)>;
/// What the unraisable hook was told: (kind, type name, message).
type Reports = Rc<RefCell<Vec<(UnraisableKind, String, String)>>>;

/// An object of the test programs: a Python instance with slots `x`, `y` (and a list `more`),
/// an optional finalizer and an optional hook run by its `Drop`.
struct Node {
    name: String,
    x: RefCell<Option<Gc<Node>>>,
    y: RefCell<Option<Gc<Node>>>,
    more: RefCell<Vec<Gc<Node>>>,
    fin: Option<Fin>,
    on_drop: Cell<Option<DropHook>>,
    lie: Lie,
}

// SAFETY: visits only the handles in `x`, `y` and `more`, each once per call (or none, which
// the contract allows); the counters live in thread-locals, outside the runtime and the value.
// `Lie::PanicWhileArmed` panics, which the collector must survive (SEMANTICS 2).
unsafe impl Trace for Node {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        TRACES.with(|t| t.set(t.get() + 1));
        let visit = match self.lie {
            Lie::Honest => true,
            Lie::PanicWhileArmed => {
                if ARMED.with(|a| a.get()) {
                    panic!("trace of {} panics", self.name);
                }
                true
            }
            Lie::EdgesOnFirstCallOnly | Lie::EdgesAfterFirstCall => {
                let key = std::ptr::from_ref(self).addr();
                let n = CALLS.with(|c| {
                    let mut c = c.borrow_mut();
                    let n = c.entry(key).or_insert(0);
                    *n += 1;
                    *n
                });
                (n == 1) == (self.lie == Lie::EdgesOnFirstCallOnly)
            }
        };
        if visit {
            self.x.trace(tracer);
            self.y.trace(tracer);
            self.more.trace(tracer);
        }
    }

    fn finalizer() -> Option<fn(&Gc<Self>)> {
        Some(<Self as Finalize>::finalize)
    }

    fn wants_finalizer(&self) -> bool {
        self.fin.is_some()
    }
}

impl Finalize for Node {
    fn finalize(this: &Gc<Self>) {
        log(format!("del {}", this.name));
        if let Some(f) = this.fin.clone() {
            f(this);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if !self.name.is_empty() {
            log(format!("drop {}", self.name));
        }
        if let Some(hook) = self.on_drop.take() {
            hook(self);
        }
    }
}

fn make(name: &str, lie: Lie, fin: Option<Fin>) -> Node {
    Node {
        name: name.to_string(),
        x: RefCell::new(None),
        y: RefCell::new(None),
        more: RefCell::new(Vec::new()),
        fin,
        on_drop: Cell::new(None),
        lie,
    }
}

/// A plain node (Python's `P(name)`).
fn n(heap: &Heap, name: &str) -> Gc<Node> {
    heap.alloc(make(name, Lie::Honest, None))
}

/// A node with a finalizer (Python's `F(name)` with `FINS[name] = f`).
fn nf(heap: &Heap, name: &str, f: impl Fn(&Gc<Node>) + 'static) -> Gc<Node> {
    heap.alloc(make(name, Lie::Honest, Some(Rc::new(f))))
}

/// A node that logs `del name` when finalized and does nothing else (`F(name)`).
fn nd(heap: &Heap, name: &str) -> Gc<Node> {
    nf(heap, name, |_| {})
}

fn nl(heap: &Heap, name: &str, lie: Lie) -> Gc<Node> {
    heap.alloc(make(name, lie, None))
}

fn set_x(a: &Gc<Node>, b: &Gc<Node>) {
    *a.x.borrow_mut() = Some(b.clone());
}

fn set_y(a: &Gc<Node>, b: &Gc<Node>) {
    *a.y.borrow_mut() = Some(b.clone());
}

fn on_drop(a: &Gc<Node>, f: impl FnOnce(&mut Node) + 'static) {
    a.on_drop.set(Some(Box::new(f)));
}

/// A two-node cycle `a.x = b`, `b.x = a`; returns both handles.
fn pair(a: Gc<Node>, b: Gc<Node>) -> (Gc<Node>, Gc<Node>) {
    set_x(&a, &b);
    set_x(&b, &a);
    (a, b)
}

/// `k` unnamed live nodes, built without any drop that marks them.
fn ballast(heap: &Heap, k: usize) -> Vec<Gc<Node>> {
    (0..k).map(|_| n(heap, "")).collect()
}

/// Makes the object a possible root: a handle to it dropped, its count staying above zero
/// (Python's `extra = o; del extra`). Old objects are recorded by this.
fn touch(o: &Gc<Node>) {
    drop(o.clone());
}

fn is_in(o: &Gc<Node>, objs: &[reap::AnyGc]) -> bool {
    objs.iter().any(|g| Gc::ptr_eq(g, o))
}

/// A heap with automatic collection off whose unraisable hook records (kind, type, message).
fn recording_heap() -> (Rc<Heap>, Reports) {
    let heap = Rc::new(Heap::new());
    heap.disable();
    let seen: Reports = Rc::default();
    let s = seen.clone();
    heap.set_unraisable_hook(Some(Box::new(move |u: &Unraisable| {
        s.borrow_mut()
            .push((u.kind, u.type_name.to_string(), u.message.clone()))
    })));
    (heap, seen)
}

/// Asserts that a full collection looked at no more than `at_most` objects (discovery from
/// the record, not gathering, which traces the whole ballast).
fn assert_discovered(before: usize, at_most: usize) {
    let cost = traces() - before;
    assert!(
        cost <= at_most,
        "the collection traced {cost} objects: it gathered instead of discovering"
    );
}

// --- Old objects dying while recorded ----------------------------------------------------------

#[test]
fn recorded_object_dying_clones_out_of_and_frees_other_recorded_objects() {
    reset();
    let heap = Heap::new();
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let a = n(&heap, "a");
    let b = n(&heap, "b");
    let c = n(&heap, "c");
    a.more.borrow_mut().extend([b.clone(), c.clone()]);
    let kept: Rc<RefCell<Vec<Gc<Node>>>> = Rc::default();
    let k = kept.clone();
    on_drop(&a, move |me| {
        let edges = std::mem::take(me.more.get_mut());
        // A handle cloned out of a recorded object that outlives the dying one...
        k.borrow_mut().push(edges[0].clone());
        // ...and the last handle to another recorded one: it dies while recorded.
        drop(edges);
        log("a's drop done");
    });
    assert_eq!(heap.collect(2), 0, "all old now");
    for o in [&a, &b, &c] {
        touch(o);
    }
    drop((b, c));
    let freed = heap.freed_objects();
    drop(a);
    assert_eq!(take_log(), ["drop a", "drop c", "a's drop done"]);
    assert_eq!(heap.freed_objects(), freed + 2);
    assert_eq!(heap.live_objects(), BALLAST + 1);
    let b = kept.borrow()[0].clone();
    assert_eq!(b.name, "b");
    assert_eq!(Gc::strong_count(&b), 2);
    drop(b);
    // The record holds two dead objects and a live one: the collection frees the dead ones'
    // memory and finds nothing to collect.
    let before = traces();
    assert_eq!(heap.collect(2), 0);
    assert_discovered(before, 8);
    kept.borrow_mut().clear();
    assert_eq!(take_log(), ["drop b"]);
    assert_eq!(heap.live_objects(), BALLAST);
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// ```python
/// class P:  __slots__ = ('name', 'x', 'y', '__weakref__')
/// class F(P):  # __del__ logs 'del name', then runs FINS[name]
/// ballast = [P('w%d' % i) for i in range(200)]
/// a = F('a')                      # FINS['a']: log('nested %d' % gc.collect())
/// c1 = F('c1'); c2 = P('c2'); c1.x = c2; c2.x = c1
/// gc.collect()
/// extra = a; del extra
/// del c1, c2
/// del a
/// log('after %d' % gc.collect())
/// # ['del a', 'del c1', 'nested 2', 'after 0']
/// ```
#[test]
fn cpython_recorded_objects_finalizer_runs_a_full_collection() {
    reset();
    let heap = Rc::new(Heap::new());
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let hw = Rc::downgrade(&heap);
    let a = nf(&heap, "a", move |_| {
        let heap = hw.upgrade().unwrap();
        log(format!("nested {}", heap.collect(2)));
    });
    let (c1, c2) = pair(nd(&heap, "c1"), n(&heap, "c2"));
    heap.collect(2);
    touch(&a);
    drop((c1, c2));
    let before = traces();
    drop(a);
    assert_discovered(before, 8);
    log(format!("after {}", heap.collect(2)));
    let events = take_log();
    assert_eq!(
        without_drops(&events),
        ["del a", "del c1", "nested 2", "after 0"]
    );
    assert_eq!(drops(&events), ["drop a", "drop c1", "drop c2"]);
    assert_eq!(heap.live_objects(), BALLAST);
    drop(w);
}

#[test]
fn recorded_objects_drop_runs_full_collections_while_its_own_entry_is_recorded() {
    // The dying object is in the record (count 0, value dropping) when its own `Drop` makes
    // full collections take the record, and records new entries in between.
    reset();
    let heap = Rc::new(Heap::new());
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let a = n(&heap, "a");
    let (c1, c2) = pair(nd(&heap, "c1"), n(&heap, "c2"));
    let olds: Vec<Gc<Node>> = (0..10).map(|i| n(&heap, &format!("o{i}"))).collect();
    let hw = Rc::downgrade(&heap);
    let o2 = olds.clone();
    on_drop(&a, move |me| {
        let heap = hw.upgrade().unwrap();
        log(format!("first {}", heap.collect(2)));
        for o in &o2 {
            touch(o);
        }
        // A new garbage cycle among old objects, made by the dying object's `Drop`.
        set_x(&o2[0], &o2[1]);
        set_x(&o2[1], &o2[0]);
        drop(o2);
        me.more.get_mut().clear();
        log(format!("second {}", heap.collect(2)));
    });
    heap.collect(2);
    touch(&a);
    drop((c1, c2));
    let rest: Vec<Gc<Node>> = olds[2..].to_vec();
    drop(olds);
    drop(a);
    let events = take_log();
    assert_eq!(
        without_drops(&events),
        ["del c1", "first 2", "second 2"],
        "{events:?}"
    );
    assert_eq!(
        drops(&events),
        ["drop a", "drop c1", "drop c2", "drop o0", "drop o1"]
    );
    assert_eq!(heap.live_objects(), BALLAST + 8);
    assert_eq!(heap.collect(2), 0);
    drop((rest, w));
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn recorded_objects_drop_drops_the_last_heap_handle() {
    // Shutdown runs inside the `Drop` of an object that is dying while recorded: its full
    // collections take the record (the dying object's entry too), collect an old cycle, and
    // the heap's state outlives them until the last object goes.
    reset();
    let heap = Heap::new();
    heap.disable();
    let seen: Rc<RefCell<Vec<(UnraisableKind, String)>>> = Rc::default();
    let s = seen.clone();
    heap.set_unraisable_hook(Some(Box::new(move |u: &Unraisable| {
        s.borrow_mut().push((u.kind, u.message.clone()))
    })));
    let w = ballast(&heap, BALLAST);
    let a = n(&heap, "a");
    let (c1, c2) = pair(nd(&heap, "c1"), n(&heap, "c2"));
    let keep = n(&heap, "keep");
    set_x(&a, &keep);
    on_drop(&a, |_| {
        let h = HEAP_SLOT.with(|s| s.borrow_mut().take());
        drop(h);
        log("heap dropped");
    });
    heap.collect(2);
    touch(&a);
    touch(&keep);
    drop((c1, c2));
    HEAP_SLOT.with(|s| *s.borrow_mut() = Some(heap));
    drop(a);
    let events = take_log();
    assert_eq!(
        without_drops(&events),
        ["del c1", "heap dropped"],
        "{events:?}"
    );
    assert_eq!(drops(&events), ["drop a", "drop c1", "drop c2"]);
    // `keep` (still held by the dying `a` while shutdown ran) and the ballast were alive; `a`
    // itself, whose value was dropping, is not counted: its death was under way.
    let reports = seen.borrow().clone();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].0, UnraisableKind::Shutdown);
    let alive: usize = reports[0].1.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(alive, BALLAST + 1, "{reports:?}");
    // `a` is gone, `keep` with it (its last handle was in `a`); the ballast goes last and
    // frees the heap's state (Miri checks that nothing leaks).
    drop(w);
    assert_eq!(drops(&take_log()), Vec::<String>::new());
}

// --- The record's sweep under user code --------------------------------------------------------

#[test]
fn sweeps_run_while_a_drop_records_new_entries_and_frees_recorded_objects() {
    // The record sweeps when it reaches its limit. A dying recorded object's `Drop` pushes it
    // past the limit twice, and between the sweeps lets recorded objects die (they keep their
    // memory, marked freed, until the next sweep drops their entries).
    reset();
    let heap = Heap::new();
    heap.disable();
    let holder = n(&heap, "holder");
    let dead: Vec<Gc<Node>> = (0..10).map(|i| n(&heap, &format!("d{i}"))).collect();
    holder.more.borrow_mut().extend(dead.iter().cloned());
    let a = n(&heap, "a");
    let mine: Vec<Gc<Node>> = (0..10).map(|i| n(&heap, &format!("m{i}"))).collect();
    a.more.borrow_mut().extend(mine.iter().cloned());
    let olds: Rc<Vec<Gc<Node>>> = Rc::new((0..3 * LIMIT).map(|_| n(&heap, "")).collect());
    let o = olds.clone();
    on_drop(&a, move |me| {
        for (i, old) in o.iter().enumerate() {
            touch(old);
            if i == LIMIT {
                // Past the first sweep: the recorded `m*` die now, recorded.
                me.more.get_mut().clear();
                log("mine dropped");
            }
        }
    });
    assert_eq!(heap.collect(2), 0);
    // The `d*` die while recorded.
    for d in &dead {
        touch(d);
    }
    drop(dead);
    holder.more.borrow_mut().clear();
    for m in &mine {
        touch(m);
    }
    drop(mine);
    touch(&a);
    let freed = heap.freed_objects();
    drop(a);
    let events = take_log();
    let mut expected: Vec<String> = (0..10).map(|i| format!("drop d{i}")).collect();
    expected.push("drop a".into());
    expected.extend((0..10).map(|i| format!("drop m{i}")));
    expected.sort();
    assert_eq!(drops(&events), expected);
    assert_eq!(count_of(&events, "mine dropped"), 1);
    assert_eq!(heap.freed_objects(), freed + 11);
    assert_eq!(heap.live_objects(), 1 + 3 * LIMIT);
    // Every old object is recorded and alive: nothing to collect.
    assert_eq!(heap.collect(2), 0);
    // And again, with the record refilled past its limit.
    for old in olds.iter() {
        touch(old);
    }
    assert_eq!(heap.collect(2), 0);
    drop((olds, holder));
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn sweep_inside_the_drop_of_a_recorded_object_that_a_gathering_collection_unmarked() {
    // A full collection that gathers (the permanent set is not empty) clears the marks of the
    // objects it finds reachable but leaves them recorded. One of them then dies, and its
    // `Drop` makes the record sweep: the sweep drops the dying object's entry (unmarked), so
    // the object's memory must go when its death ends, once, and not at a later sweep.
    reset();
    let heap = Heap::new();
    heap.disable();
    let frozen = n(&heap, "frozen");
    heap.freeze();
    let x = n(&heap, "x");
    let olds: Rc<Vec<Gc<Node>>> = Rc::new((0..LIMIT + 1).map(|_| n(&heap, "")).collect());
    assert_eq!(heap.collect(2), 0);
    touch(&x);
    let before = traces();
    assert_eq!(heap.collect(2), 0);
    assert!(
        traces() - before > LIMIT,
        "gathered (the permanent set holds an object)"
    );
    let o = olds.clone();
    on_drop(&x, move |_| {
        for old in o.iter() {
            touch(old);
        }
        log("x's drop done");
    });
    drop(x);
    assert_eq!(take_log(), ["drop x", "x's drop done"]);
    assert_eq!(heap.live_objects(), LIMIT + 2);
    // More pushes, another sweep, a collection: x's memory is not touched again.
    for old in olds.iter() {
        touch(old);
    }
    heap.unfreeze();
    assert_eq!(heap.collect(2), 0);
    drop((olds, frozen));
    assert_eq!(heap.live_objects(), 0);
}

// --- User code during a full collection that discovers from the record -------------------------

/// ```python
/// keep = []; o1 = ballast[0]; o2 = ballast[1]
/// def fin_a(s):
///     keep.append(s.x)                         # resurrects b (and a)
///     log('nested %d' % gc.collect())
///     gc.freeze()
///     log('a listed %s' % is_in(s, gc.get_objects()))
///     log('o1 listed %s' % is_in(o1, gc.get_objects()))
///     gc.unfreeze()
///     log('o1 in 2 %s' % is_in(o1, gc.get_objects(2)))
///     gc.set_threshold(5, 6, 7)
///     o1.x = o2; o2.x = o1                     # a new cycle among old objects
///     ballast[0] = None; ballast[1] = None
/// a = F('a'); b = P('b', a); a.x = b
/// gc.collect()
/// del a, b
/// log('collect %d' % gc.collect())
/// log('count %s' % (gc.get_count(),))
/// log('thresholds %s' % (gc.get_threshold(),))
/// log('a in 2 %s' % is_in(keep[0].x, gc.get_objects(2)))
/// del o1, o2
/// log('collect %d' % gc.collect())
/// keep.clear()
/// log('collect %d' % gc.collect())
/// log('count %s' % (gc.get_count(),))
/// ```
#[test]
fn cpython_finalizer_in_a_discovering_collection_resurrects_collects_freezes_rethresholds() {
    reset();
    let heap = Rc::new(Heap::new());
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let o1 = n(&heap, "o1");
    let o2 = n(&heap, "o2");
    let holders: Rc<RefCell<Vec<Gc<Node>>>> = Rc::new(RefCell::new(vec![o1.clone(), o2.clone()]));
    let keep: Rc<RefCell<Vec<Gc<Node>>>> = Rc::default();
    // The finalizer reaches o1 and o2 through `holders` (Python's `ballast` list): it holds
    // no handle of its own to them.
    let (hw, k, hs) = (Rc::downgrade(&heap), keep.clone(), holders.clone());
    let a = nf(&heap, "a", move |s| {
        let heap = hw.upgrade().unwrap();
        let (p1, p2) = {
            let h = hs.borrow();
            (h[0].clone(), h[1].clone())
        };
        k.borrow_mut().push(s.x.borrow().clone().unwrap());
        log(format!("nested {}", heap.collect(2)));
        heap.freeze();
        log(format!(
            "a listed {}",
            py_bool(is_in(s, &heap.get_objects(None)))
        ));
        log(format!(
            "o1 listed {}",
            py_bool(is_in(&p1, &heap.get_objects(None)))
        ));
        heap.unfreeze();
        log(format!(
            "o1 in 2 {}",
            py_bool(is_in(&p1, &heap.get_objects(Some(2))))
        ));
        heap.set_threshold(5, 6, 7);
        set_x(&p1, &p2);
        set_x(&p2, &p1);
        drop((p1, p2));
        hs.borrow_mut().clear();
    });
    let b = n(&heap, "b");
    set_x(&b, &a);
    set_x(&a, &b);
    heap.collect(2);
    drop((a, b));
    let before = traces();
    log(format!("collect {}", heap.collect(2)));
    assert_discovered(before, 12);
    log(format!("count {:?}", heap.get_count()));
    log(format!("thresholds {:?}", heap.get_threshold()));
    let a = keep.borrow()[0].x.borrow().clone().unwrap();
    log(format!(
        "a in 2 {}",
        py_bool(is_in(&a, &heap.get_objects(Some(2))))
    ));
    drop(a);
    drop((o1, o2));
    log(format!("collect {}", heap.collect(2)));
    keep.borrow_mut().clear();
    log(format!("collect {}", heap.collect(2)));
    log(format!("count {:?}", heap.get_count()));
    let events = take_log();
    assert_eq!(
        without_drops(&events),
        [
            "del a",
            "nested 0",
            "a listed False",
            "o1 listed False",
            "o1 in 2 True",
            "collect 0",
            "count [0, 0, 0]",
            "thresholds [5, 6, 7]",
            "a in 2 True",
            "collect 2",
            "collect 2",
            "count [0, 0, 0]",
        ]
    );
    assert_eq!(drops(&events), ["drop a", "drop b", "drop o1", "drop o2"]);
    assert_eq!(heap.live_objects(), BALLAST);
    drop((w, holders));
}

/// ```python
/// o1 = ballast[0]; o2 = ballast[1]
/// def cb(w):
///     log('callback dead %s' % (w() is None))
///     o1.x = o2; o2.x = o1
///     ballast[0] = None; ballast[1] = None
///     log('nested %d' % gc.collect())
/// a = P('a'); b = P('b', a); a.x = b
/// w = weakref.ref(a, cb)
/// gc.collect()
/// del a, b
/// log('collect %d' % gc.collect())
/// log('count %s' % (gc.get_count(),))
/// del o1, o2
/// log('collect %d' % gc.collect())
/// log('collect %d' % gc.collect())
/// ```
#[test]
fn cpython_weak_callback_in_a_discovering_collection_builds_a_cycle_among_old_objects() {
    reset();
    let heap = Rc::new(Heap::new());
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let o1 = n(&heap, "o1");
    let o2 = n(&heap, "o2");
    let holders: Rc<RefCell<Vec<Gc<Node>>>> = Rc::new(RefCell::new(vec![o1.clone(), o2.clone()]));
    let (a, b) = pair(n(&heap, "a"), n(&heap, "b"));
    let (hw, hs) = (Rc::downgrade(&heap), holders.clone());
    let weak = Weak::with_untraced_callback(&a, move |w: &Weak<Node>| {
        log(format!("callback dead {}", py_bool(w.upgrade().is_none())));
        let heap = hw.upgrade().unwrap();
        let (p1, p2) = {
            let h = hs.borrow();
            (h[0].clone(), h[1].clone())
        };
        set_x(&p1, &p2);
        set_x(&p2, &p1);
        drop((p1, p2));
        hs.borrow_mut().clear();
        log(format!("nested {}", heap.collect(2)));
    });
    heap.collect(2);
    drop((a, b));
    let before = traces();
    log(format!("collect {}", heap.collect(2)));
    assert_discovered(before, 12);
    log(format!("count {:?}", heap.get_count()));
    drop((o1, o2));
    log(format!("collect {}", heap.collect(2)));
    log(format!("collect {}", heap.collect(2)));
    let events = take_log();
    assert_eq!(
        without_drops(&events),
        [
            "callback dead True",
            "nested 0",
            "collect 2",
            "count [0, 0, 0]",
            "collect 2",
            "collect 0",
        ]
    );
    assert_eq!(drops(&events), ["drop a", "drop b", "drop o1", "drop o2"]);
    assert!(weak.upgrade().is_none());
    drop(weak);
    assert_eq!(heap.live_objects(), BALLAST);
    drop((w, holders));
}

/// ```python
/// holder = ballast[5]
/// def fin_a(s):
///     objs = gc.get_objects()
///     log('a listed %s, b listed %s, holder listed %s' % (is_in(s, objs), is_in(s.x, objs), is_in(holder, objs)))
///     log('a refers to b: %s' % is_in(s, gc.get_referrers(s.x)))
///     log('holder refers to live: %s' % is_in(holder, gc.get_referrers(holder.x)))
///     log('a in 2: %s, holder in 2: %s' % (is_in(s, gc.get_objects(2)), is_in(holder, gc.get_objects(2))))
/// live = P('live'); holder.x = live; del live
/// a = F('a'); b = P('b', a); a.x = b
/// gc.collect()
/// del a, b
/// log('collect %d' % gc.collect())
/// ```
#[test]
fn cpython_introspection_from_a_finalizer_in_a_discovering_collection() {
    reset();
    let heap = Rc::new(Heap::new());
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let holder = w[5].clone();
    let live = n(&heap, "live");
    set_x(&holder, &live);
    drop(live);
    let (hw, h) = (Rc::downgrade(&heap), holder.clone());
    let a = nf(&heap, "a", move |s| {
        let heap = hw.upgrade().unwrap();
        let objs = heap.get_objects(None);
        let b = s.x.borrow().clone().unwrap();
        log(format!(
            "a listed {}, b listed {}, holder listed {}",
            py_bool(is_in(s, &objs)),
            py_bool(is_in(&b, &objs)),
            py_bool(is_in(&h, &objs))
        ));
        drop(objs);
        log(format!(
            "a refers to b: {}",
            py_bool(is_in(s, &heap.get_referrers(&b)))
        ));
        let live = h.x.borrow().clone().unwrap();
        log(format!(
            "holder refers to live: {}",
            py_bool(is_in(&h, &heap.get_referrers(&live)))
        ));
        let g2 = heap.get_objects(Some(2));
        log(format!(
            "a in 2: {}, holder in 2: {}",
            py_bool(is_in(s, &g2)),
            py_bool(is_in(&h, &g2))
        ));
    });
    let b = n(&heap, "b");
    set_x(&b, &a);
    set_x(&a, &b);
    heap.collect(2);
    drop((a, b));
    let before = traces();
    log(format!("collect {}", heap.collect(2)));
    // Discovery itself traces a handful; the finalizer's get_referrers traces everything.
    assert!(traces() - before >= 2 * BALLAST);
    let events = take_log();
    assert_eq!(
        without_drops(&events),
        [
            "del a",
            "a listed False, b listed False, holder listed True",
            "a refers to b: False",
            "holder refers to live: True",
            "a in 2: False, holder in 2: True",
            "collect 2",
        ]
    );
    assert_eq!(drops(&events), ["drop a", "drop b"]);
    // After the collection, every survivor (untouched or found reachable) is in generation 2,
    // and introspection sees it there.
    assert_eq!(heap.generation_len(0) + heap.generation_len(1), 0);
    assert_eq!(heap.generation_len(2), BALLAST + 1);
    assert_eq!(heap.get_objects(Some(2)).len(), BALLAST + 1);
    let live = holder.x.borrow().clone().unwrap();
    let referrers = heap.get_referrers(&live);
    assert_eq!(referrers.len(), 1);
    assert!(Gc::ptr_eq(&referrers[0], &holder));
    drop((referrers, live, holder, w));
    assert_eq!(heap.live_objects(), 0);
}

/// ```python
/// hold = [F('r2', F('r1'))]
/// def fin_a(s):
///     log('a drops r2'); hold.clear(); log('a dropped r2')
/// def fin_r1(s):
///     log('nested %d' % gc.collect())
/// a = F('a'); b = P('b', a); a.x = b
/// gc.collect()
/// extra = hold[0]; del extra; extra = hold[0].x; del extra     # r1, r2 recorded
/// del a, b
/// log('collect %d' % gc.collect())
/// log('collect %d' % gc.collect())
/// # ['del a', 'a drops r2', 'del r2', 'del r1', 'nested 0', 'a dropped r2', 'collect 2', 'collect 0']
/// ```
#[test]
fn cpython_garbage_finalizer_kills_recorded_old_objects_nested() {
    reset();
    let heap = Rc::new(Heap::new());
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let hw = Rc::downgrade(&heap);
    let r1 = nf(&heap, "r1", move |_| {
        let heap = hw.upgrade().unwrap();
        log(format!("nested {}", heap.collect(2)));
    });
    let r2 = nd(&heap, "r2");
    set_x(&r2, &r1);
    drop(r1);
    let hold: Rc<RefCell<Vec<Gc<Node>>>> = Rc::new(RefCell::new(vec![r2]));
    let h = hold.clone();
    let a = nf(&heap, "a", move |_| {
        log("a drops r2");
        h.borrow_mut().clear();
        log("a dropped r2");
    });
    let b = n(&heap, "b");
    set_x(&b, &a);
    set_x(&a, &b);
    heap.collect(2);
    touch(&hold.borrow()[0]);
    let r1 = hold.borrow()[0].x.borrow().clone().unwrap();
    touch(&r1);
    drop(r1);
    drop((a, b));
    let before = traces();
    log(format!("collect {}", heap.collect(2)));
    assert_discovered(before, 12);
    log(format!("collect {}", heap.collect(2)));
    let events = take_log();
    assert_eq!(
        without_drops(&events),
        [
            "del a",
            "a drops r2",
            "del r2",
            "del r1",
            "nested 0",
            "a dropped r2",
            "collect 2",
            "collect 0",
        ]
    );
    assert_eq!(drops(&events), ["drop a", "drop b", "drop r1", "drop r2"]);
    assert_eq!(heap.live_objects(), BALLAST);
    drop(w);
}

/// ```python
/// d = P('d'); x = P('x'); y = P('y', x); x.x = y; d.x = x
/// def cb(w): log('callback nested %d' % gc.collect())
/// w = weakref.ref(d, cb)
/// gc.collect()
/// extra = d; del extra
/// del x, y
/// del d
/// log('collect %d' % gc.collect())
/// # ['callback nested 0', 'collect 2']
/// ```
#[test]
fn cpython_weak_callback_of_a_recorded_object_dying_runs_a_full_collection() {
    // The dying object (count 0, still listed, value whole) holds the only outside handle to
    // an old cycle: the nested collection must keep the cycle, the next one collect it.
    reset();
    let heap = Rc::new(Heap::new());
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let d = n(&heap, "d");
    let x = n(&heap, "x");
    let y = n(&heap, "y");
    set_x(&y, &x);
    set_x(&x, &y);
    set_x(&d, &x);
    let hw = Rc::downgrade(&heap);
    let weak = Weak::with_untraced_callback(&d, move |_: &Weak<Node>| {
        let heap = hw.upgrade().unwrap();
        log(format!("callback nested {}", heap.collect(2)));
    });
    heap.collect(2);
    touch(&d);
    drop((x, y));
    drop(d);
    log(format!("collect {}", heap.collect(2)));
    let events = take_log();
    assert_eq!(without_drops(&events), ["callback nested 0", "collect 2"]);
    assert_eq!(drops(&events), ["drop d", "drop x", "drop y"]);
    drop(weak);
    assert_eq!(heap.live_objects(), BALLAST);
    drop(w);
}

/// ```python
/// def cb(phase, info):
///     if phase == 'start' and info['generation'] == 2:
///         a = F('s'); b = P('t', a); a.x = b
///     if phase == 'stop':
///         log('stop collected %d nested %d' % (info['collected'], gc.collect()))
/// gc.callbacks.append(cb)
/// log('collect %d' % gc.collect())
/// gc.callbacks.remove(cb)
/// log('collect %d' % gc.collect())
/// # ['del s', 'stop collected 2 nested 0', 'collect 2', 'collect 0']
/// ```
#[test]
fn cpython_start_callback_makes_garbage_that_the_discovering_collection_finds() {
    reset();
    let heap = Rc::new(Heap::new());
    heap.disable();
    let w = ballast(&heap, BALLAST);
    heap.collect(2);
    let hw = Rc::downgrade(&heap);
    let id = heap.add_collect_callback(Box::new(move |phase, info| {
        let heap = hw.upgrade().unwrap();
        if phase == CollectPhase::Start && info.generation == 2 {
            let a = nd(&heap, "s");
            let b = n(&heap, "t");
            set_x(&b, &a);
            set_x(&a, &b);
        }
        if phase == CollectPhase::Stop {
            log(format!(
                "stop collected {} nested {}",
                info.collected,
                heap.collect(2)
            ));
        }
    }));
    let before = traces();
    log(format!("collect {}", heap.collect(2)));
    assert_discovered(before, 8);
    assert!(heap.remove_collect_callback(id));
    log(format!("collect {}", heap.collect(2)));
    let events = take_log();
    assert_eq!(
        without_drops(&events),
        [
            "del s",
            "stop collected 2 nested 0",
            "collect 2",
            "collect 0"
        ]
    );
    assert_eq!(drops(&events), ["drop s", "drop t"]);
    assert_eq!(heap.live_objects(), BALLAST);
    drop(w);
}

/// ```python
/// gc.collect()
/// a = F('a'); b = P('b', a); a.x = b
/// gc.collect(0)                                  # a, b in generation 1
/// c = F('c'); d = P('d', c); c.x = d
/// gc.collect(1)                                  # a, b, c, d in 2
/// e = F('e'); f = P('f', e); e.x = f
/// gc.collect(0)                                  # e, f in 1
/// del a, b, e, f
/// log('collect1 %d' % gc.collect(1))
/// log('count %s' % (gc.get_count(),))
/// del c, d
/// log('collect0 %d' % gc.collect(0))
/// log('collect2 %d' % gc.collect(2))
/// log('count %s' % (gc.get_count(),))
/// # ['del e', 'collect1 2', 'count (0, 0, 2)', 'collect0 0', 'del a', 'del c', 'collect2 4',
/// #  'count (0, 0, 0)']
/// ```
#[test]
fn cpython_young_collections_with_recorded_old_objects_then_a_discovering_one() {
    reset();
    let heap = Heap::new();
    heap.disable();
    let w = ballast(&heap, BALLAST);
    heap.collect(2);
    let (a, b) = pair(nd(&heap, "a"), n(&heap, "b"));
    heap.collect(0);
    let (c, d) = pair(nd(&heap, "c"), n(&heap, "d"));
    heap.collect(1);
    let (e, f) = pair(nd(&heap, "e"), n(&heap, "f"));
    heap.collect(0);
    drop((a, b, e, f));
    log(format!("collect1 {}", heap.collect(1)));
    log(format!("count {:?}", heap.get_count()));
    drop((c, d));
    log(format!("collect0 {}", heap.collect(0)));
    let before = traces();
    log(format!("collect2 {}", heap.collect(2)));
    assert_discovered(before, 16);
    log(format!("count {:?}", heap.get_count()));
    let events = take_log();
    assert_eq!(
        without_drops(&events),
        [
            "del e",
            "collect1 2",
            "count [0, 0, 2]",
            "collect0 0",
            "del a",
            "del c",
            "collect2 4",
            "count [0, 0, 0]",
        ]
    );
    assert_eq!(
        drops(&events),
        ["drop a", "drop b", "drop c", "drop d", "drop e", "drop f"]
    );
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// ```python
/// a = P('a'); b = P('b', a); a.x = b
/// gc.collect()
/// young = F('young'); yb = P('yb', young); young.x = yb
/// extra = young; del extra                       # a young possible root
/// gc.freeze()
/// del a, b                                       # old garbage, frozen
/// del young, yb                                  # young garbage, frozen
/// log('frozen collect %d' % gc.collect())
/// gc.unfreeze()
/// log('unfrozen collect %d' % gc.collect())
/// log('again %d' % gc.collect())
/// # ['frozen collect 0', 'del young', 'unfrozen collect 4', 'again 0']
/// ```
#[test]
fn cpython_garbage_made_while_frozen_is_found_after_unfreezing() {
    reset();
    let heap = Heap::new();
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let (a, b) = pair(n(&heap, "a"), n(&heap, "b"));
    heap.collect(2);
    let (young, yb) = pair(nd(&heap, "young"), n(&heap, "yb"));
    touch(&young);
    heap.freeze();
    assert_eq!(heap.get_freeze_count(), BALLAST + 4);
    drop((a, b));
    drop((young, yb));
    log(format!("frozen collect {}", heap.collect(2)));
    heap.unfreeze();
    let before = traces();
    log(format!("unfrozen collect {}", heap.collect(2)));
    assert_discovered(before, 16);
    log(format!("again {}", heap.collect(2)));
    let events = take_log();
    assert_eq!(
        without_drops(&events),
        [
            "frozen collect 0",
            "del young",
            "unfrozen collect 4",
            "again 0"
        ]
    );
    assert_eq!(
        drops(&events),
        ["drop a", "drop b", "drop yb", "drop young"]
    );
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// ```python
/// keep = []
/// def fin_a(s):
///     for i in range(3): keep.append(P('k%d' % i))
/// a = F('a'); b = P('b', a); a.x = b
/// gc.collect()
/// del a, b
/// log('collect %d' % gc.collect())
/// log('count %s' % (gc.get_count(),))
/// # ['del a', 'collect 2', 'count (1, 0, 0)']
/// ```
#[test]
fn cpython_counts_after_a_discovering_collection_whose_finalizer_allocates() {
    // Objects made by a finalizer count in generation 0; the garbage freed afterwards counts
    // against it (CPython's `PyObject_GC_Del`).
    reset();
    let heap = Rc::new(Heap::new());
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let keep: Rc<RefCell<Vec<Gc<Node>>>> = Rc::default();
    let (hw, k) = (Rc::downgrade(&heap), keep.clone());
    let a = nf(&heap, "a", move |_| {
        let heap = hw.upgrade().unwrap();
        for i in 0..3 {
            k.borrow_mut().push(n(&heap, &format!("k{i}")));
        }
    });
    let (a, b) = pair(a, n(&heap, "b"));
    heap.collect(2);
    drop((a, b));
    let before = traces();
    log(format!("collect {}", heap.collect(2)));
    assert_discovered(before, 8);
    log(format!("count {:?}", heap.get_count()));
    let events = take_log();
    assert_eq!(
        without_drops(&events),
        ["del a", "collect 2", "count [1, 0, 0]"]
    );
    assert_eq!(heap.generation_len(0), 3);
    drop((keep, w));
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn finalizer_resurrecting_into_an_unrecorded_old_object_is_found_again_later() {
    // A finalizer stores its garbage object in an old live object that is not a possible
    // root. Only resurrection marks the cycle; when the holder lets go, the next discovering
    // collection must find it. CPython: `L.x = s` in `__del__`; collect -> 0; `L.x = None`;
    // collect -> 2 (the finalizer does not run again).
    reset();
    let heap = Heap::new();
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let holder = w[7].clone();
    let h = holder.clone();
    let a = nf(&heap, "a", move |s| set_x(&h, s));
    let b = n(&heap, "b");
    set_x(&b, &a);
    set_x(&a, &b);
    heap.collect(2);
    drop((a, b));
    log(format!("collect {}", heap.collect(2)));
    *holder.x.borrow_mut() = None;
    let before = traces();
    log(format!("collect {}", heap.collect(2)));
    assert_discovered(before, 8);
    let events = take_log();
    assert_eq!(without_drops(&events), ["del a", "collect 0", "collect 2"]);
    assert_eq!(drops(&events), ["drop a", "drop b"]);
    drop((holder, w));
    assert_eq!(heap.live_objects(), 0);
}

// --- Trace implementations that panic or lie during discovery ----------------------------------

#[test]
fn trace_panicking_during_discovery_abandons_and_the_roots_stay_recorded() {
    // An old cycle and a young one, each with a node whose trace panics while armed. The
    // abandoned collection keeps everything; the roots it took (from the record and from
    // generation 0) must be recorded again, or the next discovering collection would miss
    // the cycles for good.
    reset();
    let (heap, seen) = recording_heap();
    let w = ballast(&heap, BALLAST);
    let (p, q) = pair(nl(&heap, "p", Lie::PanicWhileArmed), nd(&heap, "q"));
    heap.collect(2);
    let (r, s) = pair(nl(&heap, "r", Lie::PanicWhileArmed), nd(&heap, "s"));
    drop((p, q, r, s));
    ARMED.with(|a| a.set(true));
    log(format!("collect {}", heap.collect(2)));
    assert_eq!(heap.live_objects(), BALLAST + 4);
    assert_eq!(heap.generation_len(0), 0);
    assert_eq!(heap.generation_len(2), BALLAST + 4);
    let reports = seen.borrow().clone();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].0, UnraisableKind::Drop);
    assert_eq!(reports[0].1, "reap::Trace (collection abandoned)");
    assert!(reports[0].2.contains("panics"), "{reports:?}");
    ARMED.with(|a| a.set(false));
    let before = traces();
    log(format!("collect {}", heap.collect(2)));
    assert_discovered(before, 16);
    let events = take_log();
    let mut dels = without_drops(&events);
    dels[1..3].sort();
    assert_eq!(dels, ["collect 0", "del q", "del s", "collect 4"]);
    assert_eq!(drops(&events), ["drop p", "drop q", "drop r", "drop s"]);
    assert_eq!(heap.live_objects(), BALLAST);
    drop(w);
}

#[test]
fn trace_panicking_in_the_resurrection_check_of_a_discovering_collection() {
    // The finalizer arms the panic: trial deletion over the garbage, after the finalizers,
    // panics. Everything is kept as resurrected; the next collection collects the cycle
    // without finalizing it again.
    reset();
    let (heap, seen) = recording_heap();
    let w = ballast(&heap, BALLAST);
    let a = nf(&heap, "a", |_| ARMED.with(|a| a.set(true)));
    let (a, p) = pair(a, nl(&heap, "p", Lie::PanicWhileArmed));
    heap.collect(2);
    drop((a, p));
    log(format!("collect {}", heap.collect(2)));
    assert_eq!(heap.live_objects(), BALLAST + 2);
    assert_eq!(seen.borrow().len(), 1);
    assert_eq!(seen.borrow()[0].1, "reap::Trace (collection abandoned)");
    ARMED.with(|a| a.set(false));
    let before = traces();
    log(format!("collect {}", heap.collect(2)));
    assert_discovered(before, 8);
    let events = take_log();
    assert_eq!(without_drops(&events), ["del a", "collect 0", "collect 2"]);
    assert_eq!(drops(&events), ["drop a", "drop p"]);
    assert_eq!(heap.live_objects(), BALLAST);
    drop(w);
}

/// Builds an old holder `h` (a possible root, held from outside) whose only child `x` is
/// held by nothing else, `h`'s trace lying as `lie`; runs a full collection (discovering if
/// `with_ballast`, else gathering) and returns what it collected, `h`, the heap and the
/// ballast.
fn lying_holder(lie: Lie, with_ballast: bool) -> (usize, Gc<Node>, Heap, Vec<Gc<Node>>) {
    reset();
    let heap = Heap::new();
    heap.disable();
    let w = if with_ballast {
        ballast(&heap, BALLAST)
    } else {
        Vec::new()
    };
    let h = nl(&heap, "h", lie);
    // Moved in, not cloned: no drop marks anything, so the young collection below only ages
    // the generation, without tracing (and the lie has not been told yet).
    *h.x.borrow_mut() = Some(n(&heap, "x"));
    let before = traces();
    assert_eq!(heap.collect(0), 0);
    assert_eq!(traces(), before, "aged without tracing");
    touch(&h);
    let collected = heap.collect(2);
    (collected, h, heap, w)
}

#[test]
fn trace_that_reports_an_edge_only_while_discovering_cannot_reach_freed_memory() {
    // The holder's trace reports its child to discovery (which subtracts the child's only
    // count) and not to marking: the child looks like garbage while the holder keeps a handle.
    // That breaks `Trace`'s promise that fewer edges only keep more; the runtime must stay
    // memory-safe: the child is reclaimed as a zombie (value dropped once, memory kept while
    // the handle lives, every use through it refused with a clear message). Gathering does the
    // same, so discovery changes nothing here.
    for with_ballast in [true, false] {
        let (collected, h, heap, w) = lying_holder(Lie::EdgesOnFirstCallOnly, with_ballast);
        assert_eq!(collected, 1, "ballast {with_ballast}");
        assert_eq!(take_log(), ["drop x"]);
        let x = h.x.borrow().clone().unwrap();
        assert!(Gc::is_reclaimed(&x));
        assert!(Gc::try_deref(&x).is_err());
        let err = catch_unwind(AssertUnwindSafe(|| x.name.len())).unwrap_err();
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            msg.contains("whose cycle the collector has broken"),
            "{msg}"
        );
        // The zombie is in no generation, and introspection does not trace it.
        assert!(heap.get_referents(&x).is_empty());
        drop(x);
        assert_eq!(heap.live_objects(), w.len() + 2);
        drop(h);
        assert_eq!(take_log(), ["drop h"]);
        assert_eq!(heap.live_objects(), w.len());
        drop(w);
        assert_eq!(heap.collect(2), 0);
    }
}

#[test]
fn trace_that_hides_an_edge_from_discovery_keeps_its_target() {
    // The holder hides its child from discovery and reports it to marking: the child is never
    // a candidate, so it is kept, whole.
    for with_ballast in [true, false] {
        let (collected, h, heap, w) = lying_holder(Lie::EdgesAfterFirstCall, with_ballast);
        assert_eq!(collected, 0, "ballast {with_ballast}");
        assert_eq!(take_log(), Vec::<String>::new());
        let x = h.x.borrow().clone().unwrap();
        assert!(!Gc::is_reclaimed(&x));
        assert_eq!(x.name, "x");
        drop(x);
        drop(h);
        assert_eq!(take_log(), ["drop h", "drop x"]);
        assert_eq!(heap.live_objects(), w.len());
    }
}

// --- Heaps: dropped, crossed, dropped from the hook --------------------------------------------

#[test]
fn recorded_objects_outlive_their_heap_and_sweep_its_record() {
    // The heap is dropped while old, recorded objects are held from outside. They go on being
    // recorded (the record sweeps past its limit), die while recorded, and the last one frees
    // the heap's state with the record's dead entries (Miri checks that none leaks).
    reset();
    let (heap, seen) = recording_heap();
    let olds: Vec<Gc<Node>> = (0..2 * LIMIT).map(|_| n(&heap, "")).collect();
    let a = n(&heap, "a");
    let b = n(&heap, "b");
    set_x(&a, &b);
    heap.collect(2);
    touch(&a);
    touch(&b);
    drop(Rc::try_unwrap(heap).expect("one owner"));
    let reports = seen.borrow().clone();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].0, UnraisableKind::Shutdown);
    assert!(
        reports[0]
            .2
            .starts_with(&format!("{} object(s) still alive", 2 * LIMIT + 2)),
        "{reports:?}"
    );
    // Recorded on a closed heap, past the sweep limit, with half of them dying meanwhile.
    for o in &olds {
        touch(o);
    }
    let (first, second) = olds.split_at(LIMIT);
    let second = second.to_vec();
    drop(first.to_vec());
    drop(olds);
    for o in &second {
        touch(o);
        touch(o);
    }
    drop(b);
    assert_eq!(a.x.borrow().as_ref().unwrap().name, "b");
    drop(second);
    assert_eq!(take_log(), Vec::<String>::new());
    drop(a);
    assert_eq!(take_log(), ["drop a", "drop b"]);
    assert_eq!(seen.borrow().len(), 1);
}

#[test]
fn object_recorded_in_a_dropped_heap_dies_in_another_heaps_discovering_collection() {
    // x (heap A, old, recorded) is held only by y, a member of an old garbage cycle of heap B.
    // Heap A is dropped; B's discovering collection reclaims y, whose value releases x: x dies
    // while recorded in the closed heap A, which goes with it.
    reset();
    let (heap_a, seen_a) = recording_heap();
    let heap_b = Heap::new();
    heap_b.disable();
    let wb = ballast(&heap_b, BALLAST);
    let x = nd(&heap_a, "x");
    let (y, z) = pair(n(&heap_b, "y"), n(&heap_b, "z"));
    set_y(&y, &x);
    heap_a.collect(2);
    heap_b.collect(2);
    touch(&x);
    drop(x);
    drop(Rc::try_unwrap(heap_a).expect("one owner"));
    let reports = seen_a.borrow().clone();
    assert_eq!(reports.len(), 1);
    assert!(
        reports[0]
            .2
            .contains("1 of them held by objects of other heaps"),
        "{reports:?}"
    );
    drop((y, z));
    let before = traces();
    assert_eq!(heap_b.collect(2), 2);
    assert_discovered(before, 8);
    let events = take_log();
    assert_eq!(without_drops(&events), ["del x"]);
    assert_eq!(drops(&events), ["drop x", "drop y", "drop z"]);
    assert_eq!(heap_b.live_objects(), BALLAST);
    drop(wb);
}

#[test]
fn unraisable_hook_drops_the_heap_when_discovery_is_abandoned() {
    // An automatic full collection (started by a weak reference's allocation: nobody holds
    // the `Heap` but the slot) discovers from the record, and a trace panics. The report goes
    // to a hook that drops the heap: shutdown runs inside the abandoned collection (its own
    // collections refused), and the heap's state lives on until the last object.
    reset();
    let heap = Heap::new();
    heap.disable();
    let seen: Rc<RefCell<Vec<UnraisableKind>>> = Rc::default();
    let s = seen.clone();
    heap.set_unraisable_hook(Some(Box::new(move |u: &Unraisable| {
        s.borrow_mut().push(u.kind);
        ARMED.with(|a| a.set(false));
        let h = HEAP_SLOT.with(|slot| slot.borrow_mut().take());
        drop(h);
    })));
    let w = ballast(&heap, BALLAST);
    let r = nl(&heap, "r", Lie::PanicWhileArmed);
    let c = n(&heap, "c");
    set_x(&r, &c);
    drop(c);
    // Old without a full collection (which would start the 25% long-lived rule), and one
    // generation-1 collection counted, so the next automatic collection is a full one.
    heap.collect(0);
    heap.collect(1);
    touch(&r);
    heap.set_threshold(1, 0, 0);
    heap.enable();
    HEAP_SLOT.with(|slot| *slot.borrow_mut() = Some(heap));
    ARMED.with(|a| a.set(true));
    let fired = Rc::new(Cell::new(0));
    let weaks: Vec<Weak<Node>> = (0..3)
        .map(|_| {
            let f = fired.clone();
            Weak::with_untraced_callback(&r, move |_: &Weak<Node>| f.set(f.get() + 1))
        })
        .collect();
    assert!(
        !ARMED.with(|a| a.get()),
        "the full collection ran and was abandoned"
    );
    assert!(HEAP_SLOT.with(|slot| slot.borrow().is_none()));
    assert_eq!(
        *seen.borrow(),
        [UnraisableKind::Drop, UnraisableKind::Shutdown]
    );
    assert_eq!(r.x.borrow().as_ref().unwrap().name, "c");
    drop(r);
    assert_eq!(take_log(), ["drop r", "drop c"]);
    assert_eq!(fired.get(), 3);
    drop((weaks, w));
}

// --- Odds and ends -----------------------------------------------------------------------------

#[test]
fn alloc_cyclic_make_runs_a_discovering_collection() {
    // While `make` runs, the new object is in no list, count 0, untracked: a full collection
    // from inside it takes the record and collects an old cycle without seeing the new object.
    reset();
    let heap = Rc::new(Heap::new());
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let (c1, c2) = pair(nd(&heap, "c1"), n(&heap, "c2"));
    heap.collect(2);
    drop((c1, c2));
    let hw = Rc::downgrade(&heap);
    let made = heap.alloc_cyclic(|me: &Weak<Node>| {
        let heap = hw.upgrade().unwrap();
        log(format!("make collect {}", heap.collect(2)));
        assert!(me.upgrade().is_none());
        make("made", Lie::Honest, None)
    });
    assert_eq!(heap.generation_len(0), 1);
    touch(&made);
    assert_eq!(heap.collect(2), 0);
    let events = take_log();
    assert_eq!(without_drops(&events), ["del c1", "make collect 2"]);
    assert_eq!(drops(&events), ["drop c1", "drop c2"]);
    drop((made, w));
    assert_eq!(heap.live_objects(), 0);
}

/// ```python
/// hold = [F('r')]
/// def func():
///     log('finalize nested %d' % gc.collect()); hold.clear(); log('finalize done')
/// a = P('a'); b = P('b', a); a.x = b
/// f = weakref.finalize(a, func)
/// gc.collect()
/// extra = hold[0]; del extra
/// del a, b
/// s0 = gc.get_stats()[2]
/// log('collect %d' % gc.collect())
/// s1 = gc.get_stats()[2]
/// log('alive %s' % f.alive)
/// log('stats +%d collections +%d collected' % (...))
/// log('collect %d' % gc.collect())
/// # ['finalize nested 0', 'del r', 'finalize done', 'collect 3', 'alive False',
/// #  'stats +1 collections +3 collected', 'collect 0']
/// ```
#[test]
fn cpython_finalize_registration_runs_in_a_discovering_collection() {
    reset();
    let heap = Rc::new(Heap::new());
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let hold: Rc<RefCell<Vec<Gc<Node>>>> = Rc::new(RefCell::new(vec![nd(&heap, "r")]));
    let (a, b) = pair(n(&heap, "a"), n(&heap, "b"));
    let (hw, h) = (Rc::downgrade(&heap), hold.clone());
    let f = reap::finalize(&a, move || {
        let heap = hw.upgrade().unwrap();
        log(format!("finalize nested {}", heap.collect(2)));
        h.borrow_mut().clear();
        log("finalize done");
    });
    heap.collect(2);
    touch(&hold.borrow()[0]);
    drop((a, b));
    let s0 = heap.get_stats()[2];
    let before = traces();
    log(format!("collect {}", heap.collect(2)));
    assert_discovered(before, 8);
    let s1 = heap.get_stats()[2];
    log(format!("alive {}", py_bool(f.alive())));
    log(format!(
        "stats +{} collections +{} collected",
        s1.collections - s0.collections,
        s1.collected - s0.collected
    ));
    log(format!("collect {}", heap.collect(2)));
    let events = take_log();
    assert_eq!(
        without_drops(&events),
        [
            "finalize nested 0",
            "del r",
            "finalize done",
            "collect 3",
            "alive False",
            "stats +1 collections +3 collected",
            "collect 0",
        ]
    );
    assert_eq!(drops(&events), ["drop a", "drop b", "drop r"]);
    drop((f, w));
    assert_eq!(heap.live_objects(), 0);
}

/// ```python
/// a = F('a'); b = P('b', a); a.x = b
/// gc.collect()
/// del a, b
/// gc.set_debug(gc.DEBUG_SAVEALL)
/// log('collect %d' % gc.collect())
/// log('saved %s' % sorted(o.name for o in gc.garbage))
/// gc.set_debug(0)
/// log('collect %d' % gc.collect())
/// gc.garbage.clear()
/// log('collect %d' % gc.collect())
/// # ['del a', 'collect 2', "saved ['a', 'b']", 'collect 0', 'collect 2']
/// ```
#[test]
fn cpython_saveall_garbage_found_from_the_record_is_found_again_once_released() {
    reset();
    let heap = Heap::new();
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let (a, b) = pair(nd(&heap, "a"), n(&heap, "b"));
    heap.collect(2);
    drop((a, b));
    heap.set_debug(reap::DebugFlags::SAVEALL);
    let before = traces();
    log(format!("collect {}", heap.collect(2)));
    assert_discovered(before, 8);
    let mut saved: Vec<String> = heap
        .garbage()
        .into_iter()
        .map(|g| g.downcast::<Node>().ok().unwrap().name.clone())
        .collect();
    saved.sort();
    log(format!("saved {saved:?}").replace('"', "'"));
    heap.set_debug(reap::DebugFlags::empty());
    log(format!("collect {}", heap.collect(2)));
    heap.clear_garbage();
    let before = traces();
    log(format!("collect {}", heap.collect(2)));
    assert_discovered(before, 8);
    let events = take_log();
    assert_eq!(
        without_drops(&events),
        [
            "del a",
            "collect 2",
            "saved ['a', 'b']",
            "collect 0",
            "collect 2"
        ]
    );
    assert_eq!(drops(&events), ["drop a", "drop b"]);
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn discovering_collection_while_a_recorded_objects_cell_is_borrowed_mutably() {
    // `a` (old, recorded) holds, in a vector the program has borrowed mutably, the only outside
    // handle to an old cycle. The collection cannot look inside the borrow (and must not read
    // it): it keeps the cycle and keeps `a` a possible root; once the handle is dropped under
    // the borrow, the next collection finds the cycle.
    reset();
    let heap = Heap::new();
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let a = n(&heap, "a");
    let (c, d) = pair(n(&heap, "c"), n(&heap, "d"));
    a.more.borrow_mut().push(c.clone());
    heap.collect(2);
    touch(&a);
    drop((c, d));
    {
        let mut more = a.more.borrow_mut();
        assert_eq!(heap.collect(2), 0);
        assert_eq!(heap.live_objects(), BALLAST + 3);
        more.clear();
        // Still borrowed: `a` cannot be traced, the cycle is found from its own roots.
        let before = traces();
        assert_eq!(heap.collect(2), 2);
        assert_discovered(before, 8);
        more.push(n(&heap, "late"));
    }
    assert_eq!(drops(&take_log()), ["drop c", "drop d"]);
    // `a` stayed a possible root: the collection traces it (and what it holds) again.
    let before = traces();
    assert_eq!(heap.collect(2), 0);
    assert!(traces() - before >= 2, "a was looked at again");
    drop(a);
    assert_eq!(drops(&take_log()), ["drop a", "drop late"]);
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

thread_local! {
    /// A heap and handles that die when the thread exits, in whatever order its thread-locals
    /// are destroyed.
    static EXIT_HEAP: RefCell<Option<Heap>> = const { RefCell::new(None) };
    static EXIT_OBJS: RefCell<Vec<Gc<Node>>> = const { RefCell::new(Vec::new()) };
}

/// Drops and finalizers of the `exit*` nodes (counted across threads and thread exit, when the
/// thread's log may already be gone).
static EXIT_DROPS: AtomicUsize = AtomicUsize::new(0);
static EXIT_DELS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn thread_exit_with_dead_and_live_objects_in_the_record() {
    // At thread exit the heap and old, recorded objects (some dead while recorded, an old
    // garbage cycle recorded, live ones held by a thread-local) go in either order: everything
    // is dropped once, the record's dead memory is freed with the heap's state, and nothing
    // leaks (Miri checks).
    std::thread::spawn(|| {
        reset();
        let heap = Heap::new();
        heap.disable();
        // Shutdown reports the objects the thread-local still holds: expected, not printed.
        heap.set_unraisable_hook(Some(Box::new(|_: &Unraisable| {})));
        let mut objs = ballast(&heap, 20);
        let keep = n(&heap, "exit-keep");
        let dead: Vec<Gc<Node>> = (0..5).map(|_| n(&heap, "exit-dead")).collect();
        keep.more.borrow_mut().extend(dead.iter().cloned());
        let (c, d) = pair(nd(&heap, "exit-c"), nd(&heap, "exit-d"));
        heap.collect(2);
        for o in dead.iter().chain([&keep, &c, &d]) {
            touch(o);
        }
        drop(dead);
        keep.more.borrow_mut().clear();
        assert_eq!(EXIT_DROPS.load(Ordering::SeqCst), 5);
        objs.push(keep);
        EXIT_OBJS.with(|o| *o.borrow_mut() = objs);
        EXIT_HEAP.with(|h| *h.borrow_mut() = Some(heap));
        drop((c, d));
    })
    .join()
    .unwrap();
    assert_eq!(EXIT_DROPS.load(Ordering::SeqCst), 8);
    assert_eq!(EXIT_DELS.load(Ordering::SeqCst), 2);
}

// --- Randomized: discovering collections are complete under adversarial finalizers -------------

/// Every node the program can reach from `roots` (handles' addresses), with a handle to each.
fn reachable(roots: &[Gc<Node>]) -> Vec<Gc<Node>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut stack: Vec<Gc<Node>> = roots.to_vec();
    while let Some(o) = stack.pop() {
        if !seen.insert(Gc::as_ptr(&o).addr()) {
            continue;
        }
        stack.extend(o.x.borrow().iter().cloned());
        stack.extend(o.y.borrow().iter().cloned());
        stack.extend(o.more.borrow().iter().cloned());
        out.push(o);
    }
    out
}

/// One random program over old and young objects, with finalizers that resurrect, cut their
/// own edges, drop program roots or ask for collections; after settling with full collections,
/// exactly the objects the program can reach are alive, all whole.
fn random_program(seed: u64, steps: usize) -> usize {
    reset();
    let mut rng = Rng(seed);
    let heap = Rc::new(Heap::new());
    heap.disable();
    let w = ballast(&heap, 2 * BALLAST);
    let roots: Rc<RefCell<Vec<Gc<Node>>>> = Rc::default();
    let stash: Rc<RefCell<Vec<Gc<Node>>>> = Rc::default();
    let mut weaks: Vec<Weak<Node>> = Vec::new();
    let mut made = 0usize;
    let mut frozen = false;
    let mut discovered = 0;
    let settle = |heap: &Heap,
                  stash: &RefCell<Vec<Gc<Node>>>,
                  roots: &RefCell<Vec<Gc<Node>>>,
                  base: usize| {
        for _ in 0..20 {
            let before = take_log();
            LOG.with(|l| l.borrow_mut().extend(before));
            let n_before = LOG.with(|l| l.borrow().len());
            let collected = heap.collect(2);
            let ran = LOG.with(|l| l.borrow()[n_before..].iter().any(|e| e.starts_with("del ")));
            if collected == 0 && !ran {
                break;
            }
        }
        let mut all = roots.borrow().clone();
        all.extend(stash.borrow().iter().cloned());
        let live = reachable(&all);
        for o in &live {
            assert!(
                !Gc::is_reclaimed(o),
                "seed {seed}: reachable {} reclaimed",
                o.name
            );
        }
        assert_eq!(
            heap.live_objects(),
            base + live.len(),
            "seed {seed}: unreachable objects left alive after settling"
        );
    };
    for _ in 0..steps {
        let all = {
            let mut r = roots.borrow().clone();
            r.extend(stash.borrow().iter().cloned());
            reachable(&r)
        };
        let pick = |rng: &mut Rng| -> Option<Gc<Node>> {
            (!all.is_empty()).then(|| all[rng.below(all.len())].clone())
        };
        match rng.below(15) {
            0..=2 => {
                let name = format!("n{made}");
                made += 1;
                let node = match rng.below(6) {
                    0 => {
                        let s = stash.clone();
                        nf(&heap, &name, move |me| s.borrow_mut().push(me.clone()))
                    }
                    1 => nf(&heap, &name, |me| {
                        let x = me.x.borrow_mut().take();
                        let more = std::mem::take(&mut *me.more.borrow_mut());
                        drop((x, more));
                    }),
                    2 => {
                        let hw = Rc::downgrade(&heap);
                        nf(&heap, &name, move |_| {
                            if let Some(h) = hw.upgrade() {
                                h.collect(2);
                            }
                        })
                    }
                    3 => {
                        let r = roots.clone();
                        nf(&heap, &name, move |_| {
                            let popped = r.try_borrow_mut().ok().and_then(|mut v| v.pop());
                            drop(popped);
                        })
                    }
                    _ => n(&heap, &name),
                };
                // Some `Drop`s call back in: a full collection (a real one on the refcount
                // path, refused during a collection's reclaim), entries recorded for every
                // root, a new object pushed on the roots.
                match rng.below(8) {
                    0 => {
                        let hw = Rc::downgrade(&heap);
                        on_drop(&node, move |_| {
                            if let Some(h) = hw.upgrade() {
                                h.collect(2);
                            }
                        });
                    }
                    1 => {
                        let r = Rc::downgrade(&roots);
                        on_drop(&node, move |_| {
                            let all = r
                                .upgrade()
                                .and_then(|r| r.try_borrow().ok().map(|v| v.clone()));
                            for o in all.iter().flatten() {
                                touch(o);
                            }
                        });
                    }
                    2 => {
                        let (hw, r) = (Rc::downgrade(&heap), Rc::downgrade(&roots));
                        on_drop(&node, move |_| {
                            if let (Some(h), Some(r)) = (hw.upgrade(), r.upgrade()) {
                                let fresh = n(&h, "");
                                if let Ok(mut v) = r.try_borrow_mut() {
                                    v.push(fresh);
                                }
                            }
                        });
                    }
                    _ => {}
                }
                roots.borrow_mut().push(node);
            }
            3..=4 => {
                if let (Some(a), Some(b)) = (pick(&mut rng), pick(&mut rng)) {
                    if rng.below(2) == 0 {
                        a.more.borrow_mut().push(b);
                    } else {
                        *a.x.borrow_mut() = Some(b);
                    }
                }
            }
            5 => {
                if let Some(a) = pick(&mut rng) {
                    let cut = {
                        let mut more = a.more.borrow_mut();
                        (!more.is_empty()).then(|| {
                            let i = rng.below(more.len());
                            more.swap_remove(i)
                        })
                    };
                    drop(cut);
                    let x = a.x.borrow_mut().take();
                    drop(x);
                }
            }
            6..=7 => {
                let len = roots.borrow().len();
                if len > 0 {
                    let i = rng.below(len);
                    let r = roots.borrow_mut().swap_remove(i);
                    drop(r);
                }
            }
            8 => {
                if let Some(a) = pick(&mut rng) {
                    roots.borrow_mut().push(a);
                }
            }
            9 => {
                if let Some(a) = pick(&mut rng) {
                    touch(&a);
                }
            }
            10 => {
                let g = rng.below(3);
                let before = traces();
                heap.collect(g);
                if g == 2 && traces() - before < BALLAST {
                    discovered += 1;
                }
            }
            11 => {
                if frozen {
                    heap.unfreeze();
                } else {
                    heap.freeze();
                }
                frozen = !frozen;
            }
            12 => {
                let s = stash.borrow_mut().pop();
                drop(s);
            }
            13 => {
                // A weak reference whose callback asks for a full collection and drops a root.
                if let Some(a) = pick(&mut rng) {
                    let (hw, r) = (Rc::downgrade(&heap), Rc::downgrade(&roots));
                    let weak = Weak::with_untraced_callback(&a, move |_: &Weak<Node>| {
                        if let Some(h) = hw.upgrade() {
                            h.collect(2);
                        }
                        let popped = r
                            .upgrade()
                            .and_then(|r| r.try_borrow_mut().ok().and_then(|mut v| v.pop()));
                        drop(popped);
                    });
                    weaks.push(weak);
                }
            }
            _ => {
                if !frozen {
                    drop(all);
                    settle(&heap, &stash, &roots, w.len() + weaks.len());
                }
            }
        }
    }
    if frozen {
        heap.unfreeze();
    }
    settle(&heap, &stash, &roots, w.len() + weaks.len());
    drop((weaks, w));
    // Finalizers may resurrect into the stash once more (each object is finalized once), and
    // `Drop`s push new roots (each dies once).
    loop {
        let r = std::mem::take(&mut *roots.borrow_mut());
        let s = std::mem::take(&mut *stash.borrow_mut());
        if r.is_empty() && s.is_empty() {
            break;
        }
        drop((r, s));
        settle(&heap, &stash, &roots, 0);
    }
    settle(&heap, &stash, &roots, 0);
    assert_eq!(heap.live_objects(), 0);
    drop(heap);
    let events = take_log();
    for i in 0..made {
        assert_eq!(
            count_of(&events, &format!("drop n{i}")),
            1,
            "seed {seed}: n{i} dropped once"
        );
    }
    discovered
}

#[test]
fn random_programs_discovering_collections_are_complete() {
    let (seeds, steps) = if cfg!(miri) { (2, 40) } else { (40, 400) };
    // More with `REAP_ROOTS_SEEDS=n` (natively).
    let seeds = std::env::var("REAP_ROOTS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(seeds);
    let mut discovered = 0;
    for seed in 1..=seeds {
        discovered += random_program(0x9E37_79B9_7F4A_7C15 ^ (seed * 0x1000_0001), steps);
    }
    assert!(discovered > 0, "no collection of the programs discovered");
}

/// ```python
/// keep = []
/// def fin_60(s): log('nested %d' % gc.collect())
/// def fin_65(s): keep.append(s)
/// head = None
/// for i in reversed(range(70)): head = F('n%d' % i, head)
/// c1 = F('c1'); c2 = P('c2', c1); c1.x = c2
/// gc.collect()
/// node = head
/// while node is not None:
///     if int(node.name[1:]) >= 50: extra = node; del extra
///     node = node.x
/// del c1, c2
/// del head
/// log('collect %d' % gc.collect())
/// log('kept %s' % keep[0].name)
/// keep.clear()
/// log('collect %d' % gc.collect())
/// # 'del n0' ... 'del n60', 'del c1', 'nested 2', 'del n61' ... 'del n65', 'collect 0',
/// # 'kept n65', 'del n66' ... 'del n69', 'collect 0'
/// ```
#[test]
fn cpython_long_chain_of_recorded_objects_dies_through_the_trashcan() {
    // Past 50 nested deaths the trashcan defers them (count 0, still listed, recorded): a
    // finalizer deep in the chain takes the record for a discovering full collection
    // meanwhile (dead, dying and deferred objects in it), another resurrects its object
    // (recorded again).
    reset();
    let heap = Rc::new(Heap::new());
    heap.disable();
    let w = ballast(&heap, BALLAST);
    let keep: Rc<RefCell<Vec<Gc<Node>>>> = Rc::default();
    let nested_cost = Rc::new(Cell::new(usize::MAX));
    let mut head: Option<Gc<Node>> = None;
    let mut extra = Vec::new();
    for i in (0..70).rev() {
        let name = format!("n{i}");
        let node = match i {
            60 => {
                let (hw, cost) = (Rc::downgrade(&heap), nested_cost.clone());
                nf(&heap, &name, move |_| {
                    let before = traces();
                    log(format!("nested {}", hw.upgrade().unwrap().collect(2)));
                    cost.set(traces() - before);
                })
            }
            65 => {
                let k = keep.clone();
                nf(&heap, &name, move |s| k.borrow_mut().push(s.clone()))
            }
            _ => nd(&heap, &name),
        };
        *node.x.borrow_mut() = head.take();
        if i >= 50 {
            extra.push(node.clone());
        }
        head = Some(node);
    }
    let (c1, c2) = pair(nd(&heap, "c1"), n(&heap, "c2"));
    heap.collect(2);
    // Only the deep part of the chain is recorded (the record stays small for the heap, so the
    // nested collection discovers).
    drop(extra);
    drop((c1, c2));
    drop(head);
    assert!(nested_cost.get() <= 24, "discovered: {}", nested_cost.get());
    log(format!("collect {}", heap.collect(2)));
    log(format!("kept {}", keep.borrow()[0].name));
    keep.borrow_mut().clear();
    log(format!("collect {}", heap.collect(2)));
    let events = without_drops(&take_log());
    let mut expected: Vec<String> = Vec::new();
    for i in 0..70 {
        expected.push(format!("del n{i}"));
        if i == 60 {
            expected.push("del c1".into());
            expected.push("nested 2".into());
        }
        if i == 65 {
            expected.push("collect 0".into());
            expected.push("kept n65".into());
        }
    }
    expected.push("collect 0".into());
    assert_eq!(events, expected);
    assert_eq!(heap.live_objects(), BALLAST);
    drop(w);
}
