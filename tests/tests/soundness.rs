//! Soundness regressions (issue 8, SEMANTICS 5.1, 5.4, 5.5): safe programs that reached freed
//! memory, leaked, aborted the process or let a panic escape the runtime, each pinned by tests
//! that assert the correct outcome (which objects were finalized and dropped, exactly once;
//! which callbacks ran; what `collect` returned; `live_objects`; what the unraisable hook got).
//! By the numbering:
//!
//! 1. `Trace for Cell<T>` ran user code (`T::default`, the placeholder's `Drop`) inside trial
//!    deletion: a `Default` that drops the last handle to a candidate, borrows the `RefCell`
//!    being traced mutably, or upgrades a weak reference to garbage.
//! 2. An unraisable hook that drops the last live object at heap shutdown freed the heap's
//!    state (the hook included) under the runtime's feet.
//! 3. Collecting heap A from user code that runs during heap B's collection (a finalizer, a
//!    `Drop` in reclaim) marked B's garbage, which B then freed early and again later. Handles
//!    across heaps are supported: each heap's collector sees the other's objects as outside, so
//!    a cycle through two heaps is collected by neither until broken by hand.
//! 4. `Heap::get_referents` traced the value of an object whose value the collector had
//!    already dropped (a "zombie" kept by a `Drop`).
//! 5. A hook that panics with a payload whose own `Drop` panics let that panic leave `Gc::drop`
//!    and `Heap::collect`, leaving the heap broken for good.
//! 6. A weak reference with a callback and a `finalize` registration made by a finalizer during
//!    a collection, on an object of that garbage, never fired; one made during shutdown never
//!    ran and kept the heap's state alive.
//! 7. A weak reference made by a finalizer to garbage could be upgraded by a `Drop` during
//!    reclaim (SEMANTICS 2.7).
//! 8. A `Gc` and a `Heap` in a `thread_local!` destroyed after reap's own thread-local state
//!    aborted the process at thread exit ("thread local panicked on drop").
//! 9. Frozen garbage leaked at shutdown, with a report claiming handles that did not exist.
//!
//! Safe code only, small enough to run under Miri. Each test's comment names the defect it
//! pins.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reap::{Finalize, Gc, Heap, Trace, Unraisable, UnraisableKind, Weak};
use reap_tests::Log;

/// A heap whose unraisable hook records every report.
fn recording_heap() -> (Heap, Rc<RefCell<Vec<Unraisable>>>) {
    let heap = Heap::new();
    heap.disable();
    let seen: Rc<RefCell<Vec<Unraisable>>> = Rc::default();
    let s = seen.clone();
    heap.set_unraisable_hook(Some(Box::new(move |u: &Unraisable| {
        s.borrow_mut().push(u.clone())
    })));
    (heap, seen)
}

fn kinds(seen: &RefCell<Vec<Unraisable>>) -> Vec<UnraisableKind> {
    seen.borrow().iter().map(|u| u.kind).collect()
}

/// Asserts that each of `names` was finalized (if `finalized`) and dropped exactly once.
fn assert_died_once(log: &Log, names: &[&str], finalized: bool) {
    for name in names {
        if finalized {
            assert_eq!(
                log.count(&format!("del {name}")),
                1,
                "finalizer of {name}: {:?}",
                log.events()
            );
        }
        assert_eq!(
            log.count(&format!("drop {name}")),
            1,
            "drop of {name}: {:?}",
            log.events()
        );
    }
}

// --- 1. Trace for Cell runs no user code ------------------------------------------------------

thread_local! {
    static DEFAULT_CALLS: Cell<usize> = const { Cell::new(0) };
    static ON_DEFAULT: RefCell<Option<Rc<dyn Fn()>>> = const { RefCell::new(None) };
}

/// What the `Cell`s hold. Its `Default` is user code: it counts its calls and runs the action
/// the test installed. Tracing a `Cell<Probe>` must call neither it nor a placeholder's `Drop`.
#[derive(Trace)]
struct Probe(Option<Gc<String>>);

impl Default for Probe {
    fn default() -> Probe {
        DEFAULT_CALLS.with(|c| c.set(c.get() + 1));
        let action = ON_DEFAULT.with(|a| a.borrow().clone());
        if let Some(action) = action {
            action();
        }
        Probe(None)
    }
}

/// Installs the action `Probe::default` runs (and zeroes the call count); removing it when
/// dropped, so nothing the action captured outlives the test in a thread-local.
struct OnDefault;

impl OnDefault {
    fn install(action: impl Fn() + 'static) -> OnDefault {
        DEFAULT_CALLS.with(|c| c.set(0));
        ON_DEFAULT.with(|a| *a.borrow_mut() = Some(Rc::new(action)));
        OnDefault
    }
}

impl Drop for OnDefault {
    fn drop(&mut self) {
        let action = ON_DEFAULT.with(|a| a.borrow_mut().take());
        drop(action);
    }
}

fn default_calls() -> usize {
    DEFAULT_CALLS.with(Cell::get)
}

/// An object with a `Cell<Probe>` reached through a `RefCell` and a `Vec`, as an interpreter's
/// slots might be.
#[derive(Trace)]
struct CellNode {
    next: RefCell<Option<Gc<CellNode>>>,
    probes: RefCell<Vec<Cell<Probe>>>,
    #[reap(skip)]
    log: Log,
    #[reap(skip)]
    name: &'static str,
}

impl Drop for CellNode {
    fn drop(&mut self) {
        self.log.push(format!("drop {}", self.name));
    }
}

/// A node whose probe holds a string of its own (so freeing the node frees two objects).
fn cell_node(heap: &Heap, log: &Log, name: &'static str) -> Gc<CellNode> {
    let payload = heap.alloc(format!("payload of {name}"));
    heap.alloc(CellNode {
        next: RefCell::new(None),
        probes: RefCell::new(vec![Cell::new(Probe(Some(payload)))]),
        log: log.clone(),
        name,
    })
}

/// Two nodes in a cycle, returned still held.
fn cell_pair(heap: &Heap, log: &Log) -> (Gc<CellNode>, Gc<CellNode>) {
    let a = cell_node(heap, log, "a");
    let b = cell_node(heap, log, "b");
    *a.next.borrow_mut() = Some(b.clone());
    *b.next.borrow_mut() = Some(a.clone());
    (a, b)
}

/// Defect 1: collecting (and `get_referents`, which traces too) never calls `T::default` of a
/// traced `Cell<T>`; the garbage pair and its payloads are freed, the live node is untouched.
#[test]
fn cell_trace_runs_no_user_code() {
    let heap = Heap::new();
    heap.disable();
    let log = Log::new();
    let _probe = OnDefault::install(|| {});
    let (a, b) = cell_pair(&heap, &log);
    let kept = cell_node(&heap, &log, "kept");
    drop((a, b));
    assert_eq!(heap.live_objects(), 6);
    assert_eq!(heap.collect(2), 2);
    assert_eq!(default_calls(), 0, "tracing a Cell ran T::default");
    assert_died_once(&log, &["a", "b"], false);
    assert_eq!(heap.live_objects(), 2, "kept and its payload");
    assert_eq!(heap.get_referents(&kept).len(), 1, "the payload");
    assert_eq!(default_calls(), 0, "get_referents ran T::default");
    drop(kept);
    assert_eq!(log.count("drop kept"), 1);
    assert_eq!(heap.live_objects(), 0);
}

/// Defect 1: a `Default` that would drop the last handle to a candidate (the old code then
/// unlinked it through links that held scratch counts: SIGSEGV) never runs; the candidate stays
/// alive while its handle is held, and dies exactly once when it goes.
#[test]
fn cell_trace_default_dropping_last_handle_to_candidate() {
    let heap = Heap::new();
    heap.disable();
    let log = Log::new();
    let victim = cell_node(&heap, &log, "victim");
    let stash = Rc::new(RefCell::new(Some(victim)));
    let s = stash.clone();
    let _probe = OnDefault::install(move || drop(s.borrow_mut().take()));
    let (a, b) = cell_pair(&heap, &log);
    drop((a, b));
    assert_eq!(heap.collect(2), 2);
    assert_eq!(default_calls(), 0, "tracing a Cell ran T::default");
    assert!(
        stash.borrow().is_some(),
        "the victim's handle was dropped during tracing"
    );
    assert_eq!(log.count("drop victim"), 0);
    assert_died_once(&log, &["a", "b"], false);
    assert_eq!(heap.live_objects(), 2, "the victim and its payload");
    drop(stash.borrow_mut().take());
    assert_died_once(&log, &["victim"], false);
    assert_eq!(heap.live_objects(), 0);
}

/// Defect 1: a `Default` that mutably borrows the `RefCell` being traced (read without a borrow
/// guard by the collector; Miri: protected tag) never runs, so the traced vector is unchanged.
#[test]
fn cell_trace_default_borrowing_the_traced_refcell() {
    let heap = Heap::new();
    heap.disable();
    let log = Log::new();
    let kept = cell_node(&heap, &log, "kept");
    let borrowed = Rc::new(Cell::new(0_usize));
    let (w, n) = (Weak::new(&kept), borrowed.clone());
    let probe = OnDefault::install(move || {
        if let Some(kept) = w.upgrade() {
            if let Ok(mut probes) = kept.probes.try_borrow_mut() {
                n.set(n.get() + 1);
                probes.push(Cell::new(Probe(None)));
            }
        }
    });
    let (a, b) = cell_pair(&heap, &log);
    drop((a, b));
    assert_eq!(heap.collect(2), 2);
    assert_eq!(default_calls(), 0, "tracing a Cell ran T::default");
    assert_eq!(
        borrowed.get(),
        0,
        "user code borrowed the RefCell being traced"
    );
    assert_eq!(kept.probes.borrow().len(), 1);
    assert_died_once(&log, &["a", "b"], false);
    drop((probe, kept)); // the action holds a weak reference
    assert_eq!(heap.live_objects(), 0);
}

/// Defect 1: a `Default` that upgrades a weak reference to garbage during trial deletion (the
/// old collector then dropped the value of an object that handle still held) never runs; the
/// garbage is collected whole and its weak reference is dead.
#[test]
fn cell_trace_default_upgrading_weak_to_garbage() {
    let heap = Heap::new();
    heap.disable();
    let log = Log::new();
    let (a, b) = cell_pair(&heap, &log);
    let weak_b = Weak::new(&b);
    let stash: Rc<RefCell<Vec<Gc<CellNode>>>> = Rc::default();
    let (w, s) = (weak_b.clone(), stash.clone());
    let probe = OnDefault::install(move || {
        if let Some(b) = w.upgrade() {
            s.borrow_mut().push(b);
        }
    });
    drop((a, b));
    assert_eq!(heap.collect(2), 2);
    assert_eq!(default_calls(), 0, "tracing a Cell ran T::default");
    assert!(
        stash.borrow().is_empty(),
        "a handle to garbage escaped trial deletion"
    );
    assert!(weak_b.upgrade().is_none());
    assert_died_once(&log, &["a", "b"], false);
    drop((probe, weak_b)); // the action holds a weak reference
    assert_eq!(heap.live_objects(), 0);
}

// --- objects with a finalizer and a logged Drop (defects 2, 9) --------------------------------

#[derive(Trace)]
#[reap(finalize)]
struct Fin {
    next: RefCell<Option<Gc<Fin>>>,
    #[reap(skip)]
    log: Log,
    #[reap(skip)]
    name: &'static str,
}

impl Finalize for Fin {
    fn finalize(this: &Gc<Self>) {
        this.log.push(format!("del {}", this.name));
    }
}

impl Drop for Fin {
    fn drop(&mut self) {
        self.log.push(format!("drop {}", self.name));
    }
}

fn fin(heap: &Heap, log: &Log, name: &'static str) -> Gc<Fin> {
    heap.alloc(Fin {
        next: RefCell::new(None),
        log: log.clone(),
        name,
    })
}

// --- 2. the hook frees the heap's last object ---------------------------------------------------

/// Defect 2: the hook receiving the shutdown report drops the last live object, which frees
/// the heap's state (the hook's own box included) while the hook runs. It is finalized and
/// dropped once, the hook got exactly that one report, and the thread's heaps still work.
#[test]
fn hook_dropping_last_object_at_shutdown() {
    let log = Log::new();
    let heap = Heap::new();
    let reports: Rc<RefCell<Vec<UnraisableKind>>> = Rc::default();
    let last: Rc<RefCell<Option<Gc<Fin>>>> = Rc::new(RefCell::new(Some(fin(&heap, &log, "last"))));
    let (r, l) = (reports.clone(), last.clone());
    heap.set_unraisable_hook(Some(Box::new(move |u: &Unraisable| {
        let obj = l.borrow_mut().take();
        drop(obj);
        // The hook (its captures included) must still be alive here.
        r.borrow_mut().push(u.kind);
    })));
    drop(heap);
    assert_eq!(*reports.borrow(), [UnraisableKind::Shutdown]);
    assert!(last.borrow().is_none());
    assert_died_once(&log, &["last"], true);
    assert_eq!(log.events(), ["del last", "drop last"]);

    let again = Heap::new();
    let obj = fin(&again, &log, "again");
    drop(obj);
    assert_died_once(&log, &["again"], true);
    assert_eq!(again.live_objects(), 0);
}

// --- 3. handles across heaps -----------------------------------------------------------------

/// What an object does with the other heap, from its finalizer or its `Drop`.
enum Act {
    Nothing,
    InFinalizer(Rc<Heap>),
    InDrop(Rc<Heap>),
}

/// A node usable in either heap; its edges may lead into the other heap.
#[derive(Trace)]
#[reap(finalize)]
struct XNode {
    edges: RefCell<Vec<Gc<XNode>>>,
    #[reap(skip)]
    act: Act,
    #[reap(skip)]
    log: Log,
    #[reap(skip)]
    name: &'static str,
}

fn xnode(heap: &Heap, log: &Log, name: &'static str, act: Act) -> Gc<XNode> {
    heap.alloc(XNode {
        edges: RefCell::new(Vec::new()),
        act,
        log: log.clone(),
        name,
    })
}

/// From user code running during heap B's collection: allocates in `heap_a` an object holding
/// handles into B (`into_b`), and a garbage self-cycle, then collects A's youngest generation
/// while the first object is still held.
fn collect_other_heap(heap_a: &Heap, log: &Log, into_b: Vec<Gc<XNode>>) {
    let holder = xnode(heap_a, log, "holder", Act::Nothing);
    holder.edges.borrow_mut().extend(into_b);
    drop(holder.clone()); // a possible root in A
    let garbage = xnode(heap_a, log, "g", Act::Nothing);
    garbage.edges.borrow_mut().push(garbage.clone());
    drop(garbage);
    let n = heap_a.collect(0);
    log.push(format!("A.collect(0) = {n}"));
    drop(holder);
}

impl Finalize for XNode {
    fn finalize(this: &Gc<Self>) {
        this.log.push(format!("del {}", this.name));
        if let Act::InFinalizer(heap_a) = &this.act {
            collect_other_heap(heap_a, &this.log, vec![this.clone()]);
            // Then break the cycle: the other member's count reaches zero while it is still
            // garbage of B's running collection.
            let edges = std::mem::take(&mut *this.edges.borrow_mut());
            drop(edges);
        }
    }
}

impl Drop for XNode {
    fn drop(&mut self) {
        self.log.push(format!("drop {}", self.name));
        if let Act::InDrop(heap_a) = &self.act {
            let into_b = self.edges.borrow().clone();
            collect_other_heap(heap_a, &self.log, into_b);
        }
    }
}

/// Heap B's two-node cycle, each node acting on heap A as `act` says.
fn cycle_in_b(heap_b: &Heap, log: &Log, act: impl Fn() -> Act) {
    let b1 = xnode(heap_b, log, "b1", act());
    let b2 = xnode(heap_b, log, "b2", act());
    b1.edges.borrow_mut().push(b2.clone());
    b2.edges.borrow_mut().push(b1.clone());
}

/// What every test of defect 3 expects of heap A after B's collection: both of B's nodes
/// called `collect_other_heap` once, each A collection freed exactly its garbage self-cycle,
/// and every A object died once.
fn assert_a_collected_its_own_garbage(log: &Log) {
    assert_eq!(log.count("A.collect(0) = 1"), 2, "{:?}", log.events());
    assert_eq!(log.count("del g"), 2, "{:?}", log.events());
    assert_eq!(log.count("drop g"), 2, "{:?}", log.events());
    assert_eq!(log.count("del holder"), 2, "{:?}", log.events());
    assert_eq!(log.count("drop holder"), 2, "{:?}", log.events());
}

/// Defect 3: B's garbage finalizers allocate in A objects holding handles into B, collect A,
/// then break their cycle (the old code: A's marking set B's `RECLAIM_DONE` bit, so the member
/// whose count reached zero was freed at once, its value undropped, and again at reclaim). A's
/// collection sees B's objects as outside and frees only A's own garbage; B collects its cycle
/// (2), each object of both heaps is finalized and dropped once, both heaps end empty.
#[test]
fn collect_other_heap_during_finalizer() {
    let heap_a = Rc::new(Heap::new());
    let heap_b = Heap::new();
    heap_a.disable();
    heap_b.disable();
    let log = Log::new();
    cycle_in_b(&heap_b, &log, || Act::InFinalizer(heap_a.clone()));
    assert_eq!(heap_b.collect(2), 2);
    assert_died_once(&log, &["b1", "b2"], true);
    assert_a_collected_its_own_garbage(&log);
    assert_eq!(heap_b.live_objects(), 0);
    assert_eq!(heap_a.live_objects(), 0);
    assert_eq!(heap_a.collect(2), 0);
    assert_eq!(heap_b.collect(2), 0);
}

/// Defect 3: the same from B's `Drop`s during reclaim (the old code: A's marking set B's
/// `RECLAIM_DONE` bit, so B freed an object early and again later: `live` overflowed). Each
/// object dies once, `collect` returns 2 for B and 1 for each A collection, both heaps end
/// empty.
#[test]
fn collect_other_heap_during_reclaim() {
    let heap_a = Rc::new(Heap::new());
    let heap_b = Heap::new();
    heap_a.disable();
    heap_b.disable();
    let log = Log::new();
    cycle_in_b(&heap_b, &log, || Act::InDrop(heap_a.clone()));
    assert_eq!(heap_b.collect(2), 2);
    assert_died_once(&log, &["b1", "b2"], true);
    assert_a_collected_its_own_garbage(&log);
    assert_eq!(heap_b.live_objects(), 0);
    assert_eq!(heap_a.live_objects(), 0);
    // Both heaps still hand out fresh, distinct objects.
    let (x, y) = (
        xnode(&heap_b, &log, "x", Act::Nothing),
        xnode(&heap_b, &log, "y", Act::Nothing),
    );
    assert!(!Gc::ptr_eq(&x, &y));
    assert_eq!(heap_b.live_objects(), 2);
    drop((x, y));
    assert_eq!(heap_b.live_objects(), 0);
}

/// Defect 3 (the choice made): a cycle through two heaps is outside each heap's collector, so
/// neither collects it; broken by hand, it dies by reference counting, each object once.
#[test]
fn cross_heap_cycle_is_collected_by_neither_heap() {
    let heap_a = Heap::new();
    let heap_b = Heap::new();
    let log = Log::new();
    let a = xnode(&heap_a, &log, "a", Act::Nothing);
    let b = xnode(&heap_b, &log, "b", Act::Nothing);
    a.edges.borrow_mut().push(b.clone());
    b.edges.borrow_mut().push(a.clone());
    let weak_a = Weak::new(&a);
    drop((a, b));
    assert_eq!(heap_a.collect(2), 0);
    assert_eq!(heap_b.collect(2), 0);
    assert_eq!(heap_a.collect(2), 0);
    assert!(log.events().is_empty(), "{:?}", log.events());
    assert_eq!((heap_a.live_objects(), heap_b.live_objects()), (2, 1));
    let a = weak_a.upgrade().expect("the cycle is kept");
    a.edges.borrow_mut().clear();
    drop(a);
    assert_died_once(&log, &["a", "b"], true);
    drop(weak_a);
    assert_eq!((heap_a.live_objects(), heap_b.live_objects()), (0, 0));
}

// --- 4. introspection of a zombie --------------------------------------------------------------

/// The first `Drop` of the test stashes a handle to the next member of its cycle: that member
/// outlives the collection with its value dropped (a zombie).
#[derive(Trace)]
struct Zombie {
    next: RefCell<Vec<Gc<Zombie>>>,
    #[reap(skip)]
    stash: Rc<RefCell<Option<Gc<Zombie>>>>,
    #[reap(skip)]
    log: Log,
    #[reap(skip)]
    name: &'static str,
}

impl Drop for Zombie {
    fn drop(&mut self) {
        self.log.push(format!("drop {}", self.name));
        let mut stash = self.stash.borrow_mut();
        if stash.is_none() {
            *stash = self.next.borrow().first().cloned();
        }
    }
}

/// Defect 4: `get_referents` of an object whose value the collector dropped returns nothing
/// (it must not trace the dropped value), `get_objects` and `get_referrers` do not list it,
/// using it panics with a clear message, and its last handle frees it.
#[test]
fn get_referents_of_zombie() {
    let heap = Heap::new();
    heap.disable();
    let log = Log::new();
    let stash: Rc<RefCell<Option<Gc<Zombie>>>> = Rc::default();
    let zombie = |name| {
        heap.alloc(Zombie {
            next: RefCell::new(Vec::new()),
            stash: stash.clone(),
            log: log.clone(),
            name,
        })
    };
    let (a, b, leaf) = (zombie("a"), zombie("b"), zombie("leaf"));
    a.next.borrow_mut().extend([b.clone(), leaf.clone()]);
    b.next.borrow_mut().extend([a.clone(), leaf.clone()]);
    drop((a, b));
    assert_eq!(heap.collect(2), 2);
    assert_died_once(&log, &["a", "b"], false);
    let zombie = stash
        .borrow_mut()
        .take()
        .expect("a Drop kept a member of its cycle");
    assert_eq!(Gc::strong_count(&zombie), 1);
    assert_eq!(heap.live_objects(), 2, "the zombie and the leaf");

    assert!(
        heap.get_referents(&zombie).is_empty(),
        "traced a dropped value"
    );
    assert!(heap.get_referrers(&zombie).is_empty());
    assert!(
        heap.get_referrers(&leaf).is_empty(),
        "the cycle no longer holds the leaf"
    );
    let objects = heap.get_objects(None);
    assert_eq!(objects.len(), 1);
    assert!(Gc::ptr_eq(&objects[0], &leaf));
    assert!(!objects.iter().any(|o| Gc::ptr_eq(o, &zombie)));
    drop(objects);

    let used = catch_unwind(AssertUnwindSafe(|| zombie.next.borrow().len()));
    let payload = used.expect_err("using a zombie must panic");
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(message.contains("dropped"), "{message}");

    drop(zombie);
    assert_died_once(&log, &["a", "b"], false);
    assert_eq!(heap.live_objects(), 1);
    drop(leaf);
    assert_died_once(&log, &["leaf"], false);
    assert_eq!(heap.live_objects(), 0);
}

// --- 5. the hook's panic payload panics in its Drop ----------------------------------------------

/// A panic payload whose `Drop` panics. It is dropped by whoever catches the hook's panic,
/// outside any unwinding, so its own panic is an ordinary one.
struct PanickyPayload;

impl Drop for PanickyPayload {
    fn drop(&mut self) {
        panic!("the hook's panic payload panicked in its Drop");
    }
}

/// Installs a hook that records each report and, while `armed`, panics with a
/// [`PanickyPayload`].
fn panicking_hook(heap: &Heap) -> (Rc<Cell<bool>>, Rc<RefCell<Vec<UnraisableKind>>>) {
    let armed = Rc::new(Cell::new(false));
    let reports: Rc<RefCell<Vec<UnraisableKind>>> = Rc::default();
    let (a, r) = (armed.clone(), reports.clone());
    heap.set_unraisable_hook(Some(Box::new(move |u: &Unraisable| {
        r.borrow_mut().push(u.kind);
        if a.get() {
            std::panic::panic_any(PanickyPayload);
        }
    })));
    (armed, reports)
}

/// A node whose `Drop` panics if `fail`, and counts its drops.
#[derive(Trace)]
struct Counted {
    next: RefCell<Option<Gc<Counted>>>,
    #[reap(skip)]
    drops: Rc<Cell<usize>>,
    #[reap(skip)]
    fail: bool,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
        if self.fail {
            panic!("drop failed");
        }
    }
}

fn counted(heap: &Heap, drops: &Rc<Cell<usize>>, fail: bool) -> Gc<Counted> {
    heap.alloc(Counted {
        next: RefCell::new(None),
        drops: drops.clone(),
        fail,
    })
}

/// A ring of `n` (the first one failing in its `Drop` if `fail_first`), dropped: garbage.
fn counted_ring(heap: &Heap, drops: &Rc<Cell<usize>>, n: usize, fail_first: bool) {
    let first = counted(heap, drops, fail_first);
    let mut last = first.clone();
    for _ in 1..n {
        let next = counted(heap, drops, false);
        *last.next.borrow_mut() = Some(next.clone());
        last = next;
    }
    *last.next.borrow_mut() = Some(first);
}

/// After a panic was contained: the refcount path still frees a chain deeper than the
/// trashcan's limit, whole, and the collector still collects a cycle and counts it.
fn assert_heap_still_works(heap: &Heap) {
    let before = heap.live_objects();
    let drops = Rc::new(Cell::new(0));
    let mut head = counted(heap, &drops, false);
    for _ in 1..1001 {
        let next = counted(heap, &drops, false);
        *next.next.borrow_mut() = Some(head);
        head = next;
    }
    drop(head);
    assert_eq!(
        drops.get(),
        1001,
        "every node of a 1,001-node chain is freed"
    );
    assert_eq!(heap.live_objects(), before);

    let ring_drops = Rc::new(Cell::new(0));
    counted_ring(heap, &ring_drops, 3, false);
    assert_eq!(heap.collect(2), 3, "a later collection finds the ring");
    assert_eq!(ring_drops.get(), 3);
    assert_eq!(heap.live_objects(), before);
}

/// Defect 5, on the refcount path: a `Drop` panics, the hook panics with a payload whose `Drop`
/// panics; `Gc::drop` still returns normally, the object is freed, and the heap works on.
#[test]
fn hook_payload_with_panicking_drop_on_refcount_path() {
    let heap = Heap::new();
    heap.disable();
    let (armed, reports) = panicking_hook(&heap);
    let drops = Rc::new(Cell::new(0));
    let obj = counted(&heap, &drops, true);
    armed.set(true);
    let dropped = catch_unwind(AssertUnwindSafe(move || drop(obj)));
    armed.set(false);
    assert!(dropped.is_ok(), "a panic left Gc::drop");
    assert_eq!(drops.get(), 1);
    assert_eq!(*reports.borrow(), [UnraisableKind::Drop]);
    assert_eq!(heap.live_objects(), 0);
    assert_heap_still_works(&heap);
    assert_eq!(*reports.borrow(), [UnraisableKind::Drop]);
}

/// Defect 5, in a collection: a garbage ring's `Drop` panics during reclaim and the hook's
/// payload panics in its `Drop`; `Heap::collect` still returns the ring's size, and later
/// collections work (the old code left the collecting flag set: every later `collect`
/// returned 0).
#[test]
fn hook_payload_with_panicking_drop_during_collect() {
    let heap = Heap::new();
    heap.disable();
    let (armed, reports) = panicking_hook(&heap);
    let drops = Rc::new(Cell::new(0));
    counted_ring(&heap, &drops, 3, true);
    armed.set(true);
    let collected = catch_unwind(AssertUnwindSafe(|| heap.collect(2)));
    armed.set(false);
    assert_eq!(collected.ok(), Some(3), "a panic left Heap::collect");
    assert_eq!(drops.get(), 3);
    assert_eq!(*reports.borrow(), [UnraisableKind::Drop]);
    assert_eq!(heap.live_objects(), 0);
    assert_heap_still_works(&heap);
}

// --- 6, 7. weak references and finalize registrations made by finalizers of garbage -----------

/// Its finalizer registers, on its own object: a weak reference with a callback (kept in
/// `keep`, if given, so it outlives its referent) and a `finalize` callable. Its `Drop` tries
/// to upgrade every weak reference in `upgrade_in_drop`.
#[derive(Trace)]
#[reap(finalize)]
struct Registrar {
    next: RefCell<Option<Gc<Registrar>>>,
    #[reap(skip)]
    keep: Option<Rc<RefCell<Vec<Weak<Registrar>>>>>,
    #[reap(skip)]
    register_finalize: bool,
    #[reap(skip)]
    upgrade_in_drop: Option<Rc<RefCell<Vec<Weak<Registrar>>>>>,
    #[reap(skip)]
    log: Log,
    #[reap(skip)]
    name: &'static str,
}

impl Finalize for Registrar {
    fn finalize(this: &Gc<Self>) {
        let name = this.name;
        this.log.push(format!("del {name}"));
        if let Some(keep) = &this.keep {
            let log = this.log.clone();
            let w = Weak::with_untraced_callback(this, move |w: &Weak<Registrar>| {
                let state = if w.upgrade().is_none() {
                    "dead"
                } else {
                    "ALIVE"
                };
                log.push(format!("callback {name} {state}"));
            });
            keep.borrow_mut().push(w);
        }
        if this.register_finalize {
            let log = this.log.clone();
            drop(reap::finalize(this, move || {
                log.push(format!("finalize {name}"))
            }));
        }
        if let Some(weaks) = &this.upgrade_in_drop {
            let next = this.next.borrow().clone();
            let mut weaks = weaks.borrow_mut();
            weaks.push(Weak::new(this));
            if let Some(next) = next {
                weaks.push(Weak::new(&next));
            }
        }
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        self.log.push(format!("drop {}", self.name));
        if let Some(weaks) = &self.upgrade_in_drop {
            let upgraded = weaks.borrow().iter().filter_map(Weak::upgrade).count();
            if upgraded > 0 {
                self.log
                    .push(format!("{} upgraded {upgraded} in drop", self.name));
            }
        }
    }
}

/// Two registrars in a cycle, made by `make(name)`, returned still held.
fn registrar_pair(
    heap: &Heap,
    make: impl Fn(&'static str) -> Registrar,
) -> (Gc<Registrar>, Gc<Registrar>) {
    let r1 = heap.alloc(make("r1"));
    let r2 = heap.alloc(make("r2"));
    *r1.next.borrow_mut() = Some(r2.clone());
    *r2.next.borrow_mut() = Some(r1.clone());
    (r1, r2)
}

/// Defect 6: garbage whose finalizers make a weak reference with a callback and a `finalize`
/// registration on their own objects: each callback and each callable runs exactly once, during
/// that collection, as on the refcount path (the old code cleared them unrun at reclaim; the
/// registrations then ran at heap shutdown instead).
#[test]
fn weakref_created_by_finalizer_during_collection_fires() {
    let (heap, seen) = recording_heap();
    let log = Log::new();
    let keep: Rc<RefCell<Vec<Weak<Registrar>>>> = Rc::default();
    let pair = registrar_pair(&heap, |name| Registrar {
        next: RefCell::new(None),
        keep: Some(keep.clone()),
        register_finalize: true,
        upgrade_in_drop: None,
        log: log.clone(),
        name,
    });
    drop(pair);
    assert_eq!(heap.collect(2), 2);
    assert_died_once(&log, &["r1", "r2"], true);
    for name in ["r1", "r2"] {
        assert_eq!(
            log.count(&format!("callback {name} dead")),
            1,
            "{:?}",
            log.events()
        );
        assert_eq!(
            log.count(&format!("finalize {name}")),
            1,
            "{:?}",
            log.events()
        );
    }
    assert_eq!(
        log.events().len(),
        8,
        "nothing else ran: {:?}",
        log.events()
    );
    assert_eq!(keep.borrow().len(), 2);
    assert!(keep.borrow().iter().all(|w| w.upgrade().is_none()));
    drop(keep);
    assert_eq!(heap.live_objects(), 0);
    assert_eq!(heap.collect(2), 0);
    drop(heap);
    assert_eq!(
        log.events().len(),
        8,
        "nothing ran again at shutdown: {:?}",
        log.events()
    );
    assert!(seen.borrow().is_empty(), "{:?}", seen.borrow());
}

/// Defect 6, at shutdown: garbage found by the shutdown collection registers `finalize`
/// callables in its finalizers. Each runs exactly once, every object is finalized and dropped
/// once, and nothing is left for a shutdown report (the old code never ran them, and the
/// registrations kept the heap's state alive for good).
#[test]
fn finalize_registered_during_shutdown_runs() {
    let (heap, seen) = recording_heap();
    let log = Log::new();
    let pair = registrar_pair(&heap, |name| Registrar {
        next: RefCell::new(None),
        keep: None,
        register_finalize: true,
        upgrade_in_drop: None,
        log: log.clone(),
        name,
    });
    drop(pair);
    drop(heap);
    assert_died_once(&log, &["r1", "r2"], true);
    assert_eq!(log.count("finalize r1"), 1, "{:?}", log.events());
    assert_eq!(log.count("finalize r2"), 1, "{:?}", log.events());
    assert!(
        kinds(&seen).is_empty(),
        "every object was freed: no shutdown report"
    );
}

/// Defect 7: weak references made by finalizers to garbage (their own objects and the other
/// member of the cycle) cannot be upgraded by a `Drop` during reclaim (SEMANTICS 2.7), and are
/// dead afterwards.
#[test]
fn weak_created_by_finalizer_not_upgradable_in_reclaim_drop() {
    let heap = Heap::new();
    heap.disable();
    let log = Log::new();
    let weaks: Rc<RefCell<Vec<Weak<Registrar>>>> = Rc::default();
    let pair = registrar_pair(&heap, |name| Registrar {
        next: RefCell::new(None),
        keep: None,
        register_finalize: false,
        upgrade_in_drop: Some(weaks.clone()),
        log: log.clone(),
        name,
    });
    drop(pair);
    assert_eq!(heap.collect(2), 2);
    assert_died_once(&log, &["r1", "r2"], true);
    assert_eq!(
        log.events().len(),
        4,
        "a Drop upgraded a weak reference: {:?}",
        log.events()
    );
    assert_eq!(weaks.borrow().len(), 4);
    assert!(weaks.borrow().iter().all(|w| w.upgrade().is_none()));
    drop(weaks);
    assert_eq!(heap.live_objects(), 0);
}

// --- 8. thread-locals destroyed after reap's own ------------------------------------------------

static TLS_DROPS: AtomicUsize = AtomicUsize::new(0);

#[derive(Trace)]
struct TlsObject;

impl Drop for TlsObject {
    fn drop(&mut self) {
        TLS_DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

/// A handle and its heap, in that order: the object dies first, then the heap shuts down.
type HeldInTls = Option<(Gc<TlsObject>, Heap)>;

thread_local! {
    static EARLY: RefCell<HeldInTls> = const { RefCell::new(None) };
    static LATE: RefCell<HeldInTls> = const { RefCell::new(None) };
}

/// Defect 8: a `Gc` and its `Heap` in thread-locals destroyed at thread exit, one registered
/// before reap's first thread-local use and one after, so that whichever order the platform
/// destroys them in, one of them goes after reap's internals. The thread exits normally (the
/// old code aborted the whole process: "thread local panicked on drop") and both objects are
/// dropped.
#[test]
fn gc_in_thread_local_destroyed_late() {
    TLS_DROPS.store(0, Ordering::SeqCst);
    let thread = std::thread::spawn(|| {
        // Registered first: before this thread touches anything of reap.
        EARLY.with(|e| assert!(e.borrow().is_none()));
        let heap = Heap::new();
        let obj = heap.alloc(TlsObject);
        EARLY.with(|e| *e.borrow_mut() = Some((obj, heap)));
        // Registered after reap's thread-local state.
        let heap = Heap::new();
        let obj = heap.alloc(TlsObject);
        LATE.with(|l| *l.borrow_mut() = Some((obj, heap)));
    });
    assert!(thread.join().is_ok(), "the thread did not exit normally");
    assert_eq!(TLS_DROPS.load(Ordering::SeqCst), 2);
}

// --- 9. frozen garbage at shutdown ---------------------------------------------------------------

/// Defect 9: a cycle frozen, then dropped (garbage inside the permanent set), is finalized and
/// freed at shutdown, and no shutdown report is sent: nothing is held.
#[test]
fn frozen_garbage_freed_at_shutdown() {
    let (heap, seen) = recording_heap();
    let log = Log::new();
    let (f1, f2) = (fin(&heap, &log, "f1"), fin(&heap, &log, "f2"));
    *f1.next.borrow_mut() = Some(f2.clone());
    *f2.next.borrow_mut() = Some(f1.clone());
    heap.freeze();
    assert_eq!(heap.get_freeze_count(), 2);
    drop((f1, f2));
    drop(heap);
    assert_died_once(&log, &["f1", "f2"], true);
    assert!(
        kinds(&seen).is_empty(),
        "no object is held: no shutdown report"
    );
}

/// Defect 9, the report: with frozen garbage and one frozen object still held, the garbage is
/// freed at shutdown and the report counts only the held object, which its last handle frees.
#[test]
fn frozen_object_still_held_at_shutdown_is_the_only_one_reported() {
    let (heap, seen) = recording_heap();
    let log = Log::new();
    let (f1, f2) = (fin(&heap, &log, "f1"), fin(&heap, &log, "f2"));
    *f1.next.borrow_mut() = Some(f2.clone());
    *f2.next.borrow_mut() = Some(f1.clone());
    let held = fin(&heap, &log, "held");
    heap.freeze();
    assert_eq!(heap.get_freeze_count(), 3);
    drop((f1, f2));
    drop(heap);
    assert_died_once(&log, &["f1", "f2"], true);
    assert_eq!(kinds(&seen), [UnraisableKind::Shutdown]);
    let message = seen.borrow()[0].message.clone();
    assert!(message.starts_with("1 object"), "{message}");
    assert_eq!(log.count("drop held"), 0);
    drop(held);
    assert_died_once(&log, &["held"], true);
}

thread_local! {
    static SHUTDOWN_KEEP: RefCell<Vec<Gc<Resurrector>>> = const { RefCell::new(Vec::new()) };
    static SHUTDOWN_DROPS: Cell<u32> = const { Cell::new(0) };
}

#[derive(Trace)]
#[reap(finalize)]
struct Resurrector {
    name: &'static str,
    me: RefCell<Option<Gc<Resurrector>>>,
}

impl Finalize for Resurrector {
    fn finalize(this: &Gc<Self>) {
        if this.name == "x" {
            // y's last outside handle goes, and x resurrects itself: the collection collects
            // nothing, but y is garbage now.
            drop(SHUTDOWN_KEEP.with(|k| k.borrow_mut().pop()));
            SHUTDOWN_KEEP.with(|k| k.borrow_mut().push(this.clone()));
        }
    }
}

impl Drop for Resurrector {
    fn drop(&mut self) {
        SHUTDOWN_DROPS.with(|d| d.set(d.get() + 1));
    }
}

/// Found by the adversarial test: shutdown stopped at the first full collection that collected
/// nothing, though its finalizers (all resurrecting) had made new garbage, which then leaked
/// with the heap's state. Shutdown goes on while a round runs finalizers.
#[test]
fn shutdown_goes_on_after_a_round_that_only_resurrected() {
    let cyclic = |heap: &Heap, name| {
        let n = heap.alloc(Resurrector {
            name,
            me: RefCell::new(None),
        });
        *n.me.borrow_mut() = Some(n.clone());
        n
    };
    let heap = Heap::new();
    SHUTDOWN_KEEP.with(|k| k.borrow_mut().push(cyclic(&heap, "y")));
    drop(cyclic(&heap, "x"));
    drop(heap);
    assert_eq!(
        SHUTDOWN_DROPS.with(Cell::get),
        1,
        "y is collected at shutdown"
    );
    // x, resurrected into the thread-local, is freed by its last handle.
    let x = SHUTDOWN_KEEP.with(|k| k.borrow_mut().pop()).expect("x");
    *x.me.borrow_mut() = None;
    drop(x);
    assert_eq!(SHUTDOWN_DROPS.with(Cell::get), 2);
}

/// The shared weak reference is not owned by its referent (as in CPython): while it is dying
/// (count 0, its `Drop` still to come), user code that runs meanwhile (a callback of a weak
/// reference to the weak reference) may ask for the shared weak reference again. It must get a
/// new, live one, never the dying one, and the dying one must not disturb the new one when it
/// finally leaves.
#[test]
fn weak_new_while_the_shared_weak_reference_is_dying() {
    let heap = Heap::new();
    let target = heap.alloc(String::from("target"));
    let stash: Rc<RefCell<Vec<Weak<String>>>> = Rc::default();
    let w = Weak::new(&target);
    let (t, s) = (target.clone(), stash.clone());
    let ww = Weak::with_untraced_callback(&Weak::as_object(&w), move |_| {
        let again = Weak::new(&t);
        assert!(again.is_alive());
        s.borrow_mut().push(again);
    });
    drop(w);
    let again = stash.borrow_mut().pop().expect("the callback ran");
    assert!(!ww.is_alive());
    assert_eq!(
        again.upgrade().as_deref().map(String::as_str),
        Some("target")
    );
    assert!(
        again.ptr_eq(&Weak::new(&target)),
        "the new one is the shared one now"
    );
    assert_eq!(Gc::weak_count(&target), 1);
    drop(ww);
    drop(target);
    assert!(again.upgrade().is_none());
    drop(again);
    assert_eq!(heap.live_objects(), 0);
}
