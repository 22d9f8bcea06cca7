//! The clear phase (SEMANTICS 2.7, issue 9 A.5): `Clear` hooks run on every garbage object of a
//! collection, after its finalizers and weak-reference callbacks, before any value drops.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use reap::{Clear, Finalize, Gc, Heap, Reclaimed, Trace, UnraisableKind, Weak};

type Log = Rc<RefCell<Vec<String>>>;

#[derive(Trace)]
#[reap(clear)]
struct Node {
    name: String,
    next: RefCell<Option<Gc<Node>>>,
    #[reap(skip)]
    log: Log,
    #[reap(skip)]
    on_clear: Cell<Option<fn(&Node)>>,
}

impl Clear for Node {
    fn clear(&self) {
        if let Some(f) = self.on_clear.get() {
            f(self);
        }
        let next = self.next.borrow_mut().take();
        let seen = next.as_ref().map(|n| n.name.clone());
        self.log.borrow_mut().push(format!(
            "clear {} (next {})",
            self.name,
            seen.as_deref().unwrap_or("-")
        ));
        drop(next);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // After the clear phase no neighbour is left to meet, whatever the order.
        let next = self.next.get_mut().take();
        let state = match next.as_ref().map(Gc::try_deref) {
            None => "cleared",
            Some(Ok(_)) => "whole",
            Some(Err(Reclaimed)) => "reclaimed",
        };
        self.log
            .borrow_mut()
            .push(format!("drop {} ({state})", self.name));
    }
}

fn node(heap: &Heap, name: &str, log: &Log) -> Gc<Node> {
    heap.alloc(Node {
        name: name.into(),
        next: RefCell::new(None),
        log: log.clone(),
        on_clear: Cell::new(None),
    })
}

fn ring(heap: &Heap, names: &[&str], log: &Log) -> Vec<Gc<Node>> {
    let nodes: Vec<_> = names.iter().map(|n| node(heap, n, log)).collect();
    for (i, n) in nodes.iter().enumerate() {
        *n.next.borrow_mut() = Some(nodes[(i + 1) % nodes.len()].clone());
    }
    nodes
}

/// Every hook sees its neighbour whole, then every `Drop` finds its link cleared: the outcome
/// does not depend on the order the garbage is visited in.
#[test]
fn clear_hooks_run_on_all_garbage_before_any_value_drops() {
    let heap = Heap::new();
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    drop(ring(&heap, &["a", "b", "c"], &log));
    assert_eq!(heap.collect(2), 3);
    let log = log.borrow();
    let (clears, drops) = log.split_at(3);
    let mut clears = clears.to_vec();
    clears.sort();
    assert_eq!(
        clears,
        ["clear a (next b)", "clear b (next c)", "clear c (next a)"]
    );
    assert!(drops.iter().all(|d| d.ends_with("(cleared)")), "{drops:?}");
    assert_eq!(heap.live_objects(), 0);
}

/// Objects freed by refcounting never run their clear hook (CPython's `tp_clear` is for
/// cycles only).
#[test]
fn clear_hook_is_not_run_on_the_refcount_path() {
    let heap = Heap::new();
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let a = node(&heap, "a", &log);
    *a.next.borrow_mut() = Some(node(&heap, "b", &log));
    drop(a);
    assert_eq!(*log.borrow(), ["drop a (whole)", "drop b (cleared)"]);
}

/// A panicking hook is reported (kind `Clear`, with the object) and the collection goes on.
#[test]
fn a_panicking_clear_hook_is_reported_and_the_rest_still_runs() {
    let heap = Heap::new();
    let reports = Rc::new(RefCell::new(Vec::new()));
    let r = reports.clone();
    heap.set_unraisable_hook(Some(Box::new(move |u: &reap::Unraisable| {
        let name = u
            .object()
            .and_then(|o| o.clone().downcast::<Node>().ok())
            .map(|n| n.name.clone());
        r.borrow_mut().push((u.kind, name));
    })));
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let nodes = ring(&heap, &["a", "b"], &log);
    nodes[0].on_clear.set(Some(|_| panic!("clear failed")));
    drop(nodes);
    assert_eq!(heap.collect(2), 2);
    assert_eq!(
        *reports.borrow(),
        [(UnraisableKind::Clear, Some("a".to_string()))]
    );
    assert_eq!(
        log.borrow()
            .iter()
            .filter(|l| l.starts_with("clear"))
            .count(),
        1
    );
    assert_eq!(heap.live_objects(), 0);
}

thread_local! {
    static KEPT: RefCell<Vec<Gc<Node>>> = const { RefCell::new(Vec::new()) };
}

/// A hook that keeps a handle to a member (here itself, through its neighbour's link) gets a
/// reclaimed object afterwards: `try_deref` says so, nothing panics, and dropping it frees it.
#[test]
fn a_hook_that_keeps_a_member_gets_a_reclaimed_handle() {
    let heap = Heap::new();
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let nodes = ring(&heap, &["a", "b"], &log);
    nodes[0].on_clear.set(Some(|n| {
        let next = n.next.borrow().clone().expect("linked");
        KEPT.with(|k| k.borrow_mut().push(next));
    }));
    drop(nodes);
    assert_eq!(heap.collect(2), 2);
    let kept = KEPT.with(|k| k.borrow_mut().pop()).expect("kept");
    assert_eq!(Gc::try_deref(&kept).err(), Some(Reclaimed));
    assert_eq!(heap.live_objects(), 1);
    drop(kept);
    assert_eq!(heap.live_objects(), 0);
}

#[derive(Trace)]
#[reap(finalize)]
struct Outside {
    #[reap(skip)]
    log: Log,
    #[reap(skip)]
    heap: Rc<Heap>,
}

impl Finalize for Outside {
    fn finalize(this: &Gc<Self>) {
        // User code run from inside the clear phase: it collects (a no-op while one runs) and
        // allocates.
        this.log.borrow_mut().push("outside finalized".into());
        this.heap.collect(2);
        drop(this.heap.alloc(5_u32));
    }
}

#[derive(Trace)]
#[reap(clear)]
struct Holder {
    me: RefCell<Option<Gc<Holder>>>,
    outside: RefCell<Option<Gc<Outside>>>,
    weak_me: RefCell<Option<Weak<Holder>>>,
    #[reap(skip)]
    log: Log,
}

impl Clear for Holder {
    fn clear(&self) {
        let alive = self.weak_me.borrow().as_ref().map(Weak::is_alive);
        self.log
            .borrow_mut()
            .push(format!("weak to garbage alive: {alive:?}"));
        let outside = self.outside.borrow_mut().take();
        drop(outside);
        let me = self.me.borrow_mut().take();
        drop(me);
    }
}

/// Releasing a handle to an object outside the garbage from a hook frees it on the spot, its
/// finalizer running (and re-entering the runtime) inside the clear phase; weak references to
/// the garbage no longer upgrade while hooks run.
#[test]
fn a_hook_releasing_an_outside_object_runs_its_finalizer_safely() {
    let heap = Rc::new(Heap::new());
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let outside = heap.alloc(Outside {
        log: log.clone(),
        heap: heap.clone(),
    });
    let h = heap.alloc(Holder {
        me: RefCell::new(None),
        outside: RefCell::new(Some(outside)),
        weak_me: RefCell::new(None),
        log: log.clone(),
    });
    *h.me.borrow_mut() = Some(h.clone());
    *h.weak_me.borrow_mut() = Some(Weak::new(&h));
    drop(h);
    assert_eq!(heap.collect(2), 2, "the holder and its weak reference");
    assert_eq!(
        *log.borrow(),
        ["weak to garbage alive: Some(false)", "outside finalized"]
    );
    assert_eq!(heap.live_objects(), 0);
}
