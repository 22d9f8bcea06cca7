//! Cycle scenarios of SEMANTICS 7 (test_gc.py: G, test_finalization.py: F, test_weakref.py: W),
//! named after CPython's tests, asserting what they assert.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use reap::{AnyGc, CollectInfo, CollectPhase, Finalize, Gc, Heap, Trace, Weak};
use reap_tests::Log;

/// A generic container object: a list of handles (Python's list / dict / instance dict).
#[derive(Trace, Default)]
struct List(RefCell<Vec<AnyGc>>);

fn list(heap: &Heap) -> Gc<List> {
    heap.alloc(List::default())
}

fn any<T: Trace>(g: &Gc<T>) -> AnyGc {
    reap::gc_coerce!(g.clone() => dyn std::any::Any)
}

#[test]
fn g_test_list() {
    let heap = Heap::new();
    let l = list(&heap);
    l.0.borrow_mut().push(any(&l));
    drop(l);
    assert_eq!(heap.collect(2), 1);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn g_test_dict() {
    #[derive(Trace, Default)]
    struct Dict(RefCell<std::collections::HashMap<i64, Gc<Dict>>>);
    let heap = Heap::new();
    let d = heap.alloc(Dict::default());
    d.0.borrow_mut().insert(1, d.clone());
    drop(d);
    assert_eq!(heap.collect(2), 1);
}

#[test]
fn g_test_tuple() {
    // A tuple holding a list that holds the tuple.
    #[derive(Trace)]
    struct Tuple(Gc<List>);
    let heap = Heap::new();
    let l = list(&heap);
    let t = heap.alloc(Tuple(l.clone()));
    l.0.borrow_mut().push(any(&t));
    drop((l, t));
    assert_eq!(heap.collect(2), 2);
}

#[derive(Trace)]
#[reap(finalize)]
struct Instance {
    name: &'static str,
    log: Log,
    a: RefCell<Option<Gc<Instance>>>,
    keep: Option<Gc<List>>,
    #[reap(skip)]
    collect_from_del: Option<Rc<Heap>>,
}

impl Finalize for Instance {
    fn finalize(this: &Gc<Self>) {
        this.log.push(format!("del {}", this.name));
        if let Some(keep) = &this.keep {
            keep.0.borrow_mut().push(any(this));
        }
        if let Some(h) = &this.collect_from_del {
            this.log.push(format!("nested collect {}", h.collect(2)));
        }
    }
}

/// An instance whose finalizer resurrects it into `keep`.
fn resurrector(heap: &Heap, name: &'static str, log: &Log, keep: &Gc<List>) -> Gc<Instance> {
    heap.alloc(Instance {
        name,
        log: log.clone(),
        a: RefCell::new(None),
        keep: Some(keep.clone()),
        collect_from_del: None,
    })
}

fn instance(heap: &Heap, name: &'static str, log: &Log) -> Gc<Instance> {
    heap.alloc(Instance {
        name,
        log: log.clone(),
        a: RefCell::new(None),
        keep: None,
        collect_from_del: None,
    })
}

#[test]
fn g_test_instance() {
    let heap = Heap::new();
    let log = Log::new();
    let a = instance(&heap, "a", &log);
    *a.a.borrow_mut() = Some(a.clone());
    drop(a);
    assert_ne!(heap.collect(2), 0);
    assert_eq!(log.events(), ["del a"]);
}

#[test]
fn g_test_saveall() {
    let heap = Heap::new();
    heap.set_debug(reap::DebugFlags::SAVEALL);
    let l = list(&heap);
    let id = Gc::as_ptr(&l) as *const u8;
    l.0.borrow_mut().push(any(&l));
    drop(l);
    assert_eq!(heap.collect(2), 1);
    let garbage = heap.garbage();
    assert_eq!(garbage.len(), 1);
    assert_eq!(Gc::as_ptr(&garbage[0]) as *const u8, id);
    drop(garbage);
    heap.set_debug(reap::DebugFlags::empty());
    heap.clear_garbage();
    assert_eq!(heap.collect(2), 1, "freed once the garbage list lets go");
}

/// A finalizer that allocates while automatic collection is at threshold 1.
#[test]
fn g_test_del() {
    #[derive(Trace)]
    #[reap(finalize)]
    struct Allocating(RefCell<Option<Gc<Allocating>>>);
    thread_local!(static HEAP: RefCell<Option<Rc<Heap>>> = const { RefCell::new(None) });
    impl Finalize for Allocating {
        fn finalize(_: &Gc<Self>) {
            HEAP.with(|h| {
                let heap = h.borrow().clone().unwrap();
                for _ in 0..10 {
                    drop(heap.alloc(List::default()));
                }
            });
        }
    }
    let heap = Rc::new(Heap::new());
    HEAP.with(|h| *h.borrow_mut() = Some(heap.clone()));
    heap.set_threshold(1, 10, 10);
    for _ in 0..50 {
        let a = heap.alloc(Allocating(RefCell::new(None)));
        *a.0.borrow_mut() = Some(a.clone());
    }
    heap.collect(2);
    heap.collect(2);
    HEAP.with(|h| h.borrow_mut().take());
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn g_test_get_count() {
    let heap = Heap::new();
    heap.collect(2);
    assert_eq!(heap.get_count(), [0, 0, 0]);
    let _x = list(&heap);
    let c = heap.get_count();
    assert!(c[0] >= 1);
    assert_eq!(&c[1..], [0, 0]);
}

#[test]
fn g_test_collect_generations() {
    let heap = Heap::new();
    heap.collect(2);
    let _x = list(&heap);
    heap.collect(0);
    assert_eq!(&heap.get_count()[..2], [0, 1]);
    heap.collect(1);
    assert_eq!(heap.get_count(), [0, 0, 1]);
    heap.collect(2);
    assert_eq!(heap.get_count(), [0, 0, 0]);
}

/// 150-deep nested containers of finalizer objects; every 17th finalizer calls collect (which
/// returns 0 inside a collection, and collects otherwise).
#[test]
fn g_test_trashcan() {
    thread_local!(static N: Cell<u32> = const { Cell::new(0) });
    thread_local!(static HEAP: RefCell<Option<Rc<Heap>>> = const { RefCell::new(None) });
    #[derive(Trace)]
    #[reap(finalize)]
    struct Ouch;
    impl Finalize for Ouch {
        fn finalize(_: &Gc<Self>) {
            let n = N.with(|n| {
                n.set(n.get() + 1);
                n.get()
            });
            if n % 17 == 0 {
                HEAP.with(|h| {
                    if let Some(h) = h.borrow().as_ref() {
                        h.collect(2);
                    }
                });
            }
        }
    }
    let heap = Rc::new(Heap::new());
    HEAP.with(|h| *h.borrow_mut() = Some(heap.clone()));
    let depth = if cfg!(miri) { 30 } else { 150 };
    for _ in 0..2 {
        let top = list(&heap);
        let mut cur = top.clone();
        for _ in 0..depth {
            let next = list(&heap);
            cur.0.borrow_mut().push(any(&next));
            cur.0.borrow_mut().push(any(&heap.alloc(Ouch)));
            cur = next;
        }
        // A cycle back to the top, so the collector (not refcounting) tears it down.
        cur.0.borrow_mut().push(any(&top));
        drop((top, cur));
        heap.collect(2);
    }
    HEAP.with(|h| h.borrow_mut().take());
    assert_eq!(N.with(Cell::get), 2 * depth);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn g_test_get_referents() {
    let heap = Heap::new();
    let a = list(&heap);
    let b = heap.alloc(String::from("b"));
    let l = list(&heap);
    l.0.borrow_mut().extend([any(&a), any(&b), any(&a)]);
    let r = heap.get_referents(&l);
    assert_eq!(r.len(), 3);
    assert!(Gc::ptr_eq(&r[0], &a) && Gc::ptr_eq(&r[1], &b) && Gc::ptr_eq(&r[2], &a));
    // Atoms hold nothing.
    assert!(heap.get_referents(&b).is_empty());
    let referrers = heap.get_referrers(&a);
    assert_eq!(referrers.len(), 1);
    assert!(Gc::ptr_eq(&referrers[0], &l));
}

#[test]
fn g_test_is_tracked() {
    let heap = Heap::new();
    assert!(!reap::is_tracked(&heap.alloc(1_i64)));
    assert!(!reap::is_tracked(&heap.alloc(String::from("a"))));
    assert!(!reap::is_tracked(&heap.alloc(())));
    assert!(reap::is_tracked(&list(&heap)));
    assert!(reap::is_tracked(&instance(&heap, "i", &Log::new())));
}

#[test]
fn g_test_is_finalized() {
    let heap = Heap::new();
    let log = Log::new();
    let keep = list(&heap);
    let lazarus = resurrector(&heap, "lazarus", &log, &keep);
    *lazarus.a.borrow_mut() = Some(lazarus.clone());
    assert!(!Gc::is_finalized(&lazarus));
    let w = Weak::new(&lazarus);
    drop(lazarus);
    heap.collect(2);
    let back = keep.0.borrow()[0]
        .clone()
        .downcast::<Instance>()
        .ok()
        .unwrap();
    assert!(Gc::is_finalized(&back));
    drop(w);
}

/// Two self-cycles with callback weak references; each callback reads every weak reference and
/// finds them all dead.
#[test]
fn g_test_bug1055820b() {
    let heap = Heap::new();
    let log = Log::new();
    let c0 = list(&heap);
    let c1 = list(&heap);
    c0.0.borrow_mut().push(any(&c0));
    c1.0.borrow_mut().push(any(&c1));
    let refs: Rc<RefCell<Vec<Weak<List>>>> = Rc::default();
    for c in [&c0, &c1] {
        let (r, l) = (refs.clone(), log.clone());
        let w = Weak::with_untraced_callback(c, move |_: &Weak<List>| {
            let alive = r.borrow().iter().filter(|w| w.upgrade().is_some()).count();
            l.push(format!("callback alive={alive}"));
        });
        refs.borrow_mut().push(w);
    }
    drop((c0, c1));
    heap.collect(2);
    assert_eq!(log.events(), ["callback alive=0", "callback alive=0"]);
    refs.borrow_mut().clear();
}

/// A↔B, where B's finalizer writes into A (its partner, also garbage): no crash, both
/// collected, and the write lands in A's intact value.
#[test]
fn g_test_bug21435() {
    #[derive(Trace)]
    #[reap(finalize)]
    struct Node {
        name: &'static str,
        partner: RefCell<Option<Gc<Node>>>,
        attr: RefCell<Option<String>>,
        log: Log,
    }
    impl Finalize for Node {
        fn finalize(this: &Gc<Self>) {
            if this.name == "b" {
                let a = this.partner.borrow().clone().unwrap();
                *a.attr.borrow_mut() = Some("set by b".into());
                this.log.push("b wrote into a");
            }
        }
    }
    impl Drop for Node {
        fn drop(&mut self) {
            self.log.push(format!(
                "drop {} attr={:?}",
                self.name,
                self.attr.borrow().as_deref()
            ));
        }
    }
    let heap = Heap::new();
    let log = Log::new();
    let new = |name| {
        heap.alloc(Node {
            name,
            partner: RefCell::new(None),
            attr: RefCell::new(None),
            log: log.clone(),
        })
    };
    let a = new("a");
    let b = new("b");
    *a.partner.borrow_mut() = Some(b.clone());
    *b.partner.borrow_mut() = Some(a.clone());
    drop((a, b));
    assert_eq!(heap.collect(2), 2);
    let e = log.events();
    assert_eq!(e[0], "b wrote into a");
    assert!(
        e.contains(&"drop a attr=Some(\"set by b\")".to_string()),
        "{e:?}"
    );
    assert!(e.contains(&"drop b attr=None".to_string()));
}

#[test]
fn g_test_get_stats() {
    let heap = Heap::new();
    let old = heap.get_stats();
    heap.collect(0);
    let new = heap.get_stats();
    assert_eq!(new[0].collections, old[0].collections + 1);
    assert_eq!(new[1].collections, old[1].collections);
    assert_eq!(new[2].collections, old[2].collections);
    heap.collect(2);
    let newer = heap.get_stats();
    assert_eq!(newer[0].collections, new[0].collections);
    assert_eq!(newer[1].collections, new[1].collections);
    assert_eq!(newer[2].collections, new[2].collections + 1);
}

#[test]
fn g_test_freeze() {
    let heap = Heap::new();
    let _keep = list(&heap);
    heap.freeze();
    assert!(heap.get_freeze_count() > 0);
    heap.unfreeze();
    assert_eq!(heap.get_freeze_count(), 0);
}

#[test]
fn g_test_get_objects_generations() {
    let heap = Heap::new();
    heap.collect(2);
    let l = list(&heap);
    let has = |g: usize| heap.get_objects(Some(g)).iter().any(|o| Gc::ptr_eq(o, &l));
    assert!(has(0) && !has(1) && !has(2));
    heap.collect(0);
    assert!(!has(0) && has(1) && !has(2));
    heap.collect(1);
    assert!(!has(0) && !has(1) && has(2));
    heap.collect(2);
    assert!(!has(0) && !has(1) && has(2));
    assert!(heap.get_objects(None).iter().any(|o| Gc::ptr_eq(o, &l)));
}

#[test]
#[should_panic(expected = "generation 3 out of range")]
fn g_test_get_objects_arguments() {
    let heap = Heap::new();
    heap.get_objects(Some(3));
}

#[test]
fn g_test_resurrection_only_happens_once_per_object() {
    let heap = Heap::new();
    let log = Log::new();
    let keep = list(&heap);
    let lazarus = resurrector(&heap, "lazarus", &log, &keep);
    *lazarus.a.borrow_mut() = Some(lazarus.clone());
    drop(lazarus);
    heap.collect(2);
    assert_eq!(log.count("del lazarus"), 1);
    keep.0.borrow_mut().clear();
    heap.collect(2);
    assert_eq!(log.count("del lazarus"), 1, "a finalizer runs once");
    assert_eq!(heap.live_objects(), 1, "only `keep` is left");
}

#[test]
fn g_test_resurrection_is_transitive() {
    let heap = Heap::new();
    let log = Log::new();
    let keep = list(&heap);
    let lazarus = resurrector(&heap, "lazarus", &log, &keep);
    let cargo = instance(&heap, "cargo", &log);
    let cargo_id = Gc::as_ptr(&cargo);
    *lazarus.a.borrow_mut() = Some(cargo.clone());
    *cargo.a.borrow_mut() = Some(lazarus.clone());
    drop((lazarus, cargo));
    heap.collect(2);
    let back = keep.0.borrow()[0]
        .clone()
        .downcast::<Instance>()
        .ok()
        .unwrap();
    let cargo_back = back.a.borrow().clone().unwrap();
    assert_eq!(Gc::as_ptr(&cargo_back), cargo_id);
    assert!(Gc::ptr_eq(cargo_back.a.borrow().as_ref().unwrap(), &back));
    assert_eq!(cargo_back.name, "cargo");
}

#[test]
fn g_test_resurrection_does_not_block_cleanup_of_other_objects() {
    let heap = Heap::new();
    let log = Log::new();
    let n = 100;
    let keep = list(&heap);
    let lazarus = resurrector(&heap, "lazarus", &log, &keep);
    *lazarus.a.borrow_mut() = Some(lazarus.clone());
    drop(lazarus);
    for _ in 0..n {
        let x = list(&heap);
        x.0.borrow_mut().push(any(&x));
    }
    let before = heap.get_stats()[2].collected;
    assert_eq!(heap.collect(2), n);
    assert_eq!(heap.get_stats()[2].collected, before + n as u64);
    // The resurrected one is collected (and counted) later, once released, finalizer not rerun.
    keep.0.borrow_mut().clear();
    assert_eq!(heap.collect(2), 1);
    assert_eq!(log.count("del lazarus"), 1);
}

/// A garbage weak reference whose callback would have run never runs it.
#[test]
fn g_test_trash_weakref_clear() {
    let heap = Heap::new();
    let log = Log::new();
    let a = list(&heap);
    let b = list(&heap);
    let l = log.clone();
    let wr = Weak::with_untraced_callback(&a, move |_: &Weak<List>| l.push("callback"));
    // b holds the weak reference and a; b and a are a cycle of garbage.
    #[derive(Trace)]
    struct Holder(Weak<List>);
    b.0.borrow_mut().push(any(&heap.alloc(Holder(wr))));
    b.0.borrow_mut().push(any(&a));
    a.0.borrow_mut().push(any(&b));
    drop((a, b));
    heap.collect(2);
    assert!(
        log.events().is_empty(),
        "a garbage weak reference's callback never runs"
    );
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn g_gccallbacks_test_collect() {
    let heap = Heap::new();
    let seen: Rc<RefCell<Vec<(usize, CollectPhase, CollectInfo)>>> = Rc::default();
    for i in 0..2 {
        let s = seen.clone();
        heap.add_collect_callback(Box::new(move |p, info| s.borrow_mut().push((i, p, *info))));
    }
    let x = list(&heap);
    x.0.borrow_mut().push(any(&x));
    drop(x);
    heap.collect(2);
    let seen = seen.borrow();
    assert_eq!(seen.len(), 4);
    let phases: Vec<_> = seen.iter().map(|(i, p, _)| (*i, *p)).collect();
    assert_eq!(
        phases,
        [
            (0, CollectPhase::Start),
            (1, CollectPhase::Start),
            (0, CollectPhase::Stop),
            (1, CollectPhase::Stop)
        ]
    );
    assert_eq!(seen[0].2.generation, 2);
    assert_eq!(seen[0].2.collected, 0);
    assert_eq!(seen[2].2.collected, 1);
    assert_eq!(seen[2].2.uncollectable, 0);
}

#[test]
fn g_gccallbacks_test_collect_generation() {
    let heap = Heap::new();
    let gens: Rc<RefCell<Vec<usize>>> = Rc::default();
    let g = gens.clone();
    heap.add_collect_callback(Box::new(move |_, info| {
        g.borrow_mut().push(info.generation)
    }));
    heap.collect(2);
    assert_eq!(*gens.borrow(), [2, 2]);
}

/// A young garbage object keeps an old object alive; the old object's weak-reference callback
/// tries to read the garbage and finds it gone.
#[test]
fn g_test_bug1055820c() {
    let heap = Heap::new();
    let log = Log::new();
    let c0 = list(&heap);
    let c1 = list(&heap);
    heap.collect(2); // c0 and c1 are old now
    let c2 = list(&heap);
    c0.0.borrow_mut().push(any(&c0)); // c0 is a self-cycle
    let c2wr = Weak::new(&c2);
    let l = log.clone();
    let c0wr = Weak::with_untraced_callback(&c0, move |_: &Weak<List>| {
        l.push(format!("callback reads {}", c2wr.upgrade().is_some()));
    });
    c0.0.borrow_mut().push(any(&c2)); // c0 -> c2
    c2.0.borrow_mut().push(any(&c1)); // c2 -> c1, kept alive only by garbage
                                      // The callback's weak reference is held by c1 (old, reachable only from garbage).
    #[derive(Trace)]
    struct Holder(Weak<List>);
    c1.0.borrow_mut().push(any(&heap.alloc(Holder(c0wr))));
    drop((c0, c1, c2));
    heap.collect(2);
    // Either the callback never ran (its weak reference was garbage too), or it read nothing.
    for e in log.events() {
        assert_eq!(e, "callback reads false");
    }
    assert_eq!(heap.live_objects(), 0);
}

/// As bug1055820c, with the old object's finalizer reading a weak reference to young garbage.
#[test]
fn g_test_bug1055820d() {
    thread_local!(static READ: RefCell<Vec<bool>> = const { RefCell::new(Vec::new()) });
    #[derive(Trace)]
    #[reap(finalize)]
    struct D(RefCell<Option<Weak<List>>>);
    impl Finalize for D {
        fn finalize(this: &Gc<Self>) {
            let alive = this.0.borrow().as_ref().unwrap().upgrade().is_some();
            READ.with(|r| r.borrow_mut().push(alive));
        }
    }
    let heap = Heap::new();
    let d0 = heap.alloc(D(RefCell::new(None)));
    heap.collect(2); // d0 is old
    let c = list(&heap);
    c.0.borrow_mut().push(any(&c));
    c.0.borrow_mut().push(any(&d0)); // young garbage keeps old d0 alive
    *d0.0.borrow_mut() = Some(Weak::new(&c));
    drop((c, d0));
    heap.collect(2);
    assert_eq!(READ.with(|r| r.borrow().clone()), [false]);
}

#[test]
fn g_test_indirect_calls_with_gc_disabled() {
    let heap = Heap::new();
    heap.set_threshold(100, 10, 10);
    heap.disable();
    let before = heap.get_stats()[0].collections;
    let keep: Vec<_> = (0..10_000).map(|_| list(&heap)).collect();
    assert_eq!(heap.get_stats()[0].collections, before);
    heap.enable();
    drop(keep);
    let _one = (0..200).map(|_| list(&heap)).collect::<Vec<_>>();
    assert!(
        heap.get_stats()[0].collections > before,
        "enabled again, it triggers"
    );
}

// --- test_finalization.py ---------------------------------------------------------------------

#[test]
fn f_selfcycle_test_simple() {
    let heap = Heap::new();
    let log = Log::new();
    let s = instance(&heap, "s", &log);
    *s.a.borrow_mut() = Some(s.clone());
    let w = Weak::new(&s);
    drop(s);
    heap.collect(2);
    assert_eq!(log.events(), ["del s"]);
    assert!(w.upgrade().is_none());
}

#[test]
fn f_selfcycle_test_simple_suicide() {
    // The finalizer breaks the cycle itself.
    #[derive(Trace)]
    #[reap(finalize)]
    struct Suicidal(RefCell<Option<Gc<Suicidal>>>, Log);
    impl Finalize for Suicidal {
        fn finalize(this: &Gc<Self>) {
            this.1.push("del");
            this.0.borrow_mut().take();
        }
    }
    let heap = Heap::new();
    let log = Log::new();
    let s = heap.alloc(Suicidal(RefCell::new(None), log.clone()));
    *s.0.borrow_mut() = Some(s.clone());
    let w = Weak::new(&s);
    drop(s);
    heap.collect(2);
    assert_eq!(log.events(), ["del"]);
    assert!(w.upgrade().is_none());
    assert_eq!(heap.live_objects(), 1, "only the weak reference");
}

#[test]
fn f_selfcycle_test_simple_resurrect() {
    let heap = Heap::new();
    let log = Log::new();
    let keep = list(&heap);
    let s = resurrector(&heap, "s", &log, &keep);
    *s.a.borrow_mut() = Some(s.clone());
    let w = Weak::new(&s);
    drop(s);
    heap.collect(2);
    assert_eq!(log.events(), ["del s"]);
    // 3.11 semantics: weak references to garbage are cleared before finalizers, so even the
    // survivor's weak reference reads None.
    assert!(w.upgrade().is_none());
    assert_eq!(keep.0.borrow().len(), 1, "the survivor is kept");
    keep.0.borrow_mut().clear();
    heap.collect(2);
    assert_eq!(log.events(), ["del s"], "no second finalizer");
}

/// Rings of 3-4 nodes mixing plain, suicidal and resurrecting finalizers: every finalizer runs
/// once, neighbours are intact inside finalizers, every weak reference is cleared.
#[test]
fn f_cyclechain_test_homogenous_and_heterogenous() {
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Plain,
        Suicidal,
        Resurrecting,
    }
    #[derive(Trace)]
    #[reap(finalize)]
    struct Node {
        #[reap(skip)]
        kind: Kind,
        id: usize,
        log: Log,
        next: RefCell<Option<Gc<Node>>>,
        keep: Gc<List>,
    }
    impl Finalize for Node {
        fn finalize(this: &Gc<Self>) {
            // The neighbour is intact: its value has not been dropped.
            let next_id = this.next.borrow().as_ref().map(|n| n.id);
            this.log.push(format!("del {} next={:?}", this.id, next_id));
            match this.kind {
                Kind::Plain => {}
                Kind::Suicidal => {
                    this.next.borrow_mut().take();
                }
                Kind::Resurrecting => this.keep.0.borrow_mut().push(any(this)),
            }
        }
    }
    use Kind::*;
    let cases: [&[Kind]; 7] = [
        &[Plain, Plain, Plain],
        &[Suicidal, Suicidal, Suicidal, Suicidal],
        &[Suicidal, Plain, Plain],
        &[Suicidal, Plain, Suicidal, Plain],
        &[Resurrecting, Resurrecting, Resurrecting],
        &[Resurrecting, Plain, Plain, Suicidal],
        &[Resurrecting, Plain, Resurrecting, Suicidal],
    ];
    for kinds in cases {
        let heap = Heap::new();
        let log = Log::new();
        let keep = list(&heap);
        let nodes: Vec<Gc<Node>> = kinds
            .iter()
            .enumerate()
            .map(|(id, &kind)| {
                heap.alloc(Node {
                    kind,
                    id,
                    log: log.clone(),
                    next: RefCell::new(None),
                    keep: keep.clone(),
                })
            })
            .collect();
        for i in 0..nodes.len() {
            *nodes[i].next.borrow_mut() = Some(nodes[(i + 1) % nodes.len()].clone());
        }
        let weaks: Vec<_> = nodes.iter().map(Weak::new).collect();
        drop(nodes);
        heap.collect(2);
        let n = kinds.len();
        let events = log.events();
        assert_eq!(events.len(), n, "each finalizer once: {events:?}");
        for id in 0..n {
            let next = (id + 1) % n;
            assert!(
                events.contains(&format!("del {id} next=Some({next})"))
                    || events.contains(&format!("del {id} next=None")),
                "{events:?}"
            );
        }
        assert!(
            weaks.iter().all(|w| w.upgrade().is_none()),
            "every ref cleared"
        );
        let resurrected = kinds.iter().filter(|k| **k == Resurrecting).count();
        if resurrected > 0 {
            assert!(keep.0.borrow().len() == resurrected);
            keep.0.borrow_mut().clear();
            heap.collect(2);
            assert_eq!(log.events().len(), n, "no second finalizer");
        }
        drop(weaks);
        drop(keep);
        drop(heap);
    }
}

// --- test_weakref.py: weak references and the collector ---------------------------------------

/// c2 -> c1, c2 holds a callback weak reference to c1; all garbage: no crash, callback not run.
#[test]
fn w_test_callback_reachable_one_way() {
    #[derive(Trace)]
    struct C {
        other: RefCell<Option<Gc<C>>>,
        wr: RefCell<Option<Weak<C>>>,
        me: RefCell<Option<Gc<C>>>,
    }
    let heap = Heap::new();
    let log = Log::new();
    let new = || {
        heap.alloc(C {
            other: RefCell::new(None),
            wr: RefCell::new(None),
            me: RefCell::new(None),
        })
    };
    let c1 = new();
    let c2 = new();
    *c1.me.borrow_mut() = Some(c1.clone());
    *c2.me.borrow_mut() = Some(c2.clone());
    *c2.other.borrow_mut() = Some(c1.clone());
    let l = log.clone();
    *c2.wr.borrow_mut() = Some(Weak::with_untraced_callback(&c1, move |_: &Weak<C>| {
        l.push("cb")
    }));
    drop((c1, c2));
    assert_eq!(heap.collect(2), 3);
    assert!(log.events().is_empty());
}

/// Weak references that are garbage, whose callbacks would resurrect garbage, never run; an
/// external weak reference's callback does.
#[test]
fn w_test_callback_in_cycle_resurrection() {
    #[derive(Trace)]
    struct C {
        attr: RefCell<Option<Gc<C>>>,
        wr: RefCell<Option<Weak<C>>>,
    }
    let heap = Heap::new();
    let log = Log::new();
    let alist: Rc<RefCell<Vec<Gc<C>>>> = Rc::default();
    let c1 = heap.alloc(C {
        attr: RefCell::new(None),
        wr: RefCell::new(None),
    });
    let c2 = heap.alloc(C {
        attr: RefCell::new(None),
        wr: RefCell::new(None),
    });
    *c1.attr.borrow_mut() = Some(c2.clone());
    *c2.attr.borrow_mut() = Some(c1.clone());
    // Garbage weak references whose callbacks would save the other.
    let (a1, l1) = (alist.clone(), log.clone());
    *c1.wr.borrow_mut() = Some(Weak::with_untraced_callback(&c2, move |w: &Weak<C>| {
        l1.push("garbage cb 1");
        if let Some(x) = w.upgrade() {
            a1.borrow_mut().push(x);
        }
    }));
    let (a2, l2) = (alist.clone(), log.clone());
    *c2.wr.borrow_mut() = Some(Weak::with_untraced_callback(&c1, move |w: &Weak<C>| {
        l2.push("garbage cb 2");
        if let Some(x) = w.upgrade() {
            a2.borrow_mut().push(x);
        }
    }));
    // An external weak reference with a callback.
    let l3 = log.clone();
    let external = Weak::with_untraced_callback(&c1, move |_: &Weak<C>| l3.push("external cb"));
    drop((c1, c2));
    heap.collect(2);
    assert_eq!(log.events(), ["external cb"]);
    assert!(alist.borrow().is_empty());
    assert!(external.upgrade().is_none());
    log.clear();
    heap.collect(2);
    assert!(log.events().is_empty());
}

/// A weak reference to a garbage callback holder: only the external weak reference's callback
/// fires.
#[test]
fn w_test_callbacks_on_callback() {
    #[derive(Trace)]
    struct C {
        me: RefCell<Option<Gc<C>>>,
        wr: RefCell<Option<Weak<C>>>,
    }
    let heap = Heap::new();
    let log = Log::new();
    let c = heap.alloc(C {
        me: RefCell::new(None),
        wr: RefCell::new(None),
    });
    *c.me.borrow_mut() = Some(c.clone());
    let callback_holder = heap.alloc(C {
        me: RefCell::new(None),
        wr: RefCell::new(None),
    });
    *callback_holder.me.borrow_mut() = Some(c.clone());
    *c.wr.borrow_mut() = Some(Weak::new(&callback_holder));
    let l = log.clone();
    let external_wr = Weak::with_untraced_callback(&c, move |_: &Weak<C>| l.push("external"));
    let l = log.clone();
    *callback_holder.wr.borrow_mut() =
        Some(Weak::with_untraced_callback(&c, move |_: &Weak<C>| {
            l.push("garbage")
        }));
    drop((c, callback_holder));
    heap.collect(2);
    assert_eq!(log.events(), ["external"]);
    assert!(external_wr.upgrade().is_none());
}

/// Automatic collection at threshold 1 while weak references are being created: no crash.
#[test]
fn w_test_gc_during_ref_creation() {
    let heap = Heap::new();
    heap.set_threshold(1, 1, 1);
    let o = list(&heap);
    let mut refs = Vec::new();
    for _ in 0..50 {
        let x = list(&heap);
        x.0.borrow_mut().push(any(&x));
        refs.push(Weak::with_untraced_callback(&o, |_: &Weak<List>| {}));
        refs.push(Weak::new(&o));
    }
    assert!(refs.iter().all(Weak::is_alive));
}

/// W::test_callback_gcs: a callback that collects while an object with a finalizer dies.
#[test]
fn w_test_callback_gcs() {
    let heap = Rc::new(Heap::new());
    let log = Log::new();
    let o = heap.alloc(Instance {
        name: "o",
        log: log.clone(),
        a: RefCell::new(None),
        keep: None,
        collect_from_del: None,
    });
    let h = heap.clone();
    let w = Weak::with_untraced_callback(&o, move |_: &Weak<Instance>| {
        h.collect(2);
    });
    drop(o);
    assert!(w.upgrade().is_none());
    assert_eq!(log.events(), ["del o"]);
}

/// collect called from a finalizer during a collection returns 0.
#[test]
fn collect_from_finalizer_during_collection_returns_zero() {
    let heap = Rc::new(Heap::new());
    let log = Log::new();
    let a = heap.alloc(Instance {
        name: "a",
        log: log.clone(),
        a: RefCell::new(None),
        keep: None,
        collect_from_del: Some(heap.clone()),
    });
    *a.a.borrow_mut() = Some(a.clone());
    drop(a);
    assert_eq!(heap.collect(2), 1);
    assert_eq!(log.events(), ["del a", "nested collect 0"]);
}

/// A `Drop` of a garbage object that reaches another garbage object gets a clear panic, caught
/// and reported, never a use-after-free.
#[test]
fn drop_reaching_broken_garbage_panics_clearly() {
    struct Peek(Rc<RefCell<Option<String>>>);
    #[derive(Trace)]
    struct N {
        other: RefCell<Option<Gc<N>>>,
        name: String,
        #[reap(skip)]
        peek: Peek,
    }
    impl Drop for N {
        fn drop(&mut self) {
            if let Some(o) = self.other.borrow().as_ref() {
                *self.peek.0.borrow_mut() = Some(o.name.clone());
            }
        }
    }
    let heap = Heap::new();
    let reports: Rc<RefCell<Vec<String>>> = Rc::default();
    let r = reports.clone();
    heap.set_unraisable_hook(Some(Box::new(move |u: &reap::Unraisable| {
        r.borrow_mut().push(u.message.clone())
    })));
    let cell: Rc<RefCell<Option<String>>> = Rc::default();
    let a = heap.alloc(N {
        other: RefCell::new(None),
        name: "a".into(),
        peek: Peek(cell.clone()),
    });
    let b = heap.alloc(N {
        other: RefCell::new(Some(a.clone())),
        name: "b".into(),
        peek: Peek(cell.clone()),
    });
    *a.other.borrow_mut() = Some(b.clone());
    drop((a, b));
    assert_eq!(heap.collect(2), 2);
    // The first value dropped could read its partner; the second found it broken.
    assert_eq!(reports.borrow().len(), 1);
    assert!(reports.borrow()[0].contains("whose cycle the collector has broken"));
    assert_eq!(heap.live_objects(), 0);
}

/// A cycle whose member's interior is mutably borrowed during the collection is kept, and
/// collected by a later collection once the borrow ends.
#[test]
fn borrowed_interior_is_kept_then_collected() {
    let heap = Heap::new();
    let a = list(&heap);
    let b = list(&heap);
    a.0.borrow_mut().push(any(&b));
    b.0.borrow_mut().push(any(&a));
    let wa = Weak::new(&a);
    let a2 = a.clone();
    drop((a, b));
    {
        let _guard = a2.0.borrow_mut();
        assert_eq!(heap.collect(2), 0, "kept while borrowed");
        assert!(wa.is_alive());
    }
    drop(a2);
    assert_eq!(heap.collect(2), 2, "collected once the borrow ended");
    assert!(!wa.is_alive());
}

/// Young garbage holds the last handle to an old object and a weak reference (with a callback)
/// to it. A generation-0 collection frees the old object while breaking the young cycle: the
/// garbage weak reference's callback must not run.
#[test]
fn garbage_weakref_to_an_object_freed_during_reclaim_never_fires() {
    #[derive(Trace)]
    struct Holder(Weak<List>);
    let heap = Heap::new();
    let log = Log::new();
    let old = list(&heap);
    heap.collect(2); // `old` is in generation 2 now
    let young = list(&heap);
    young.0.borrow_mut().push(any(&young)); // a young self-cycle
    young.0.borrow_mut().push(any(&old)); // holding the only other handle to `old`
    let l = log.clone();
    let w = Weak::with_untraced_callback(&old, move |_: &Weak<List>| l.push("callback"));
    young.0.borrow_mut().push(any(&heap.alloc(Holder(w))));
    let probe = Weak::new(&old);
    drop((old, young));
    assert_eq!(
        heap.collect(0),
        3,
        "the cycle, and the weak reference's holder"
    );
    assert!(
        probe.upgrade().is_none(),
        "the old object died with the cycle"
    );
    assert!(
        log.events().is_empty(),
        "a garbage weak reference's callback never runs"
    );
}

/// A cycle across generations whose last outside reference goes from the young member: a young
/// collection finds the young one reachable (through its old partner, which it cannot look
/// into), and the full collection that follows must still find the pair, with no other
/// possible root anywhere.
#[test]
fn cycle_across_generations_is_found_by_a_later_full_collection() {
    let heap = Heap::new();
    let old = list(&heap);
    heap.collect(2); // `old` in generation 2, no possible root anywhere
    let young = list(&heap);
    old.0.borrow_mut().push(any(&young));
    // The handle to `old` moves into `young` (no count goes down, so `old` is never marked).
    young
        .0
        .borrow_mut()
        .push(reap::gc_coerce!(old => dyn std::any::Any));
    drop(young); // the last outside reference: marks `young` a possible root
    assert_eq!(heap.collect(0), 0, "kept: the old partner refers to it");
    assert_eq!(heap.collect(2), 2, "the cross-generation cycle is garbage");
    assert_eq!(heap.live_objects(), 0);
}

/// DEBUG_STATS prints a line per collection (to stderr) and changes nothing else.
#[test]
fn debug_stats_flag_is_kept_and_collections_run() {
    let heap = Heap::new();
    heap.set_debug(reap::DebugFlags::STATS);
    assert_eq!(heap.get_debug(), reap::DebugFlags::STATS);
    let x = list(&heap);
    x.0.borrow_mut().push(any(&x));
    drop(x);
    assert_eq!(heap.collect(2), 1);
    assert!(heap.garbage().is_empty(), "STATS alone keeps no garbage");
}

/// CPython 3.11–3.13's `handle_resurrected_objects` moves what a finalizer resurrected into the
/// survivors' generation (g+1), not the oldest: `python3` shows a self-cycle resurrected by
/// `gc.collect(0)` in `gc.get_objects(1)`.
#[test]
fn resurrected_objects_move_to_the_next_generation() {
    let heap = Heap::new();
    heap.disable();
    let log = Log::new();
    let keep = list(&heap);
    heap.collect(2); // `keep` is old now
    let r = resurrector(&heap, "r", &log, &keep);
    *r.a.borrow_mut() = Some(r.clone());
    drop(r);
    assert_eq!(heap.collect(0), 0, "resurrected: not counted");
    assert_eq!(log.events(), ["del r"]);
    assert_eq!(heap.generation_len(0), 0);
    assert_eq!(
        heap.generation_len(1),
        1,
        "the resurrected one, in generation 1"
    );
    assert_eq!(heap.generation_len(2), 1, "only `keep`");
    // And from a generation-1 collection, into generation 2.
    keep.0.borrow_mut().clear();
    assert_eq!(
        heap.collect(1),
        1,
        "finalized already: collected without a second __del__"
    );
    assert_eq!(log.events(), ["del r"]);
}

/// `gc.get_referrers` scans generations 0–2 only, never the permanent set (CPython's
/// `gc_get_referrers_impl` walks the three generations).
#[test]
fn get_referrers_skips_the_permanent_generation() {
    let heap = Heap::new();
    let target = list(&heap);
    let frozen = list(&heap);
    frozen.0.borrow_mut().push(any(&target));
    heap.freeze();
    let young = list(&heap);
    young.0.borrow_mut().push(any(&target));
    let referrers = heap.get_referrers(&target);
    assert_eq!(referrers.len(), 1);
    assert!(Gc::ptr_eq(&referrers[0], &young));
    heap.unfreeze();
    assert_eq!(heap.get_referrers(&target).len(), 2);
}

/// Collection callbacks see the counts as they were when the collection started: CPython resets
/// them after the "start" callbacks. `python3` shows `('start', (9, 0, 0))`, `('stop', (0, 1, 0))`
/// for a `gc.collect(0)` after nine allocations.
#[test]
fn start_callbacks_see_the_counts_before_the_collection_resets_them() {
    let heap = Rc::new(Heap::new());
    heap.disable();
    heap.collect(2);
    type Seen = Rc<RefCell<Vec<(CollectPhase, [usize; 3])>>>;
    let seen: Seen = Rc::default();
    let (s, h) = (seen.clone(), Rc::downgrade(&heap));
    heap.add_collect_callback(Box::new(move |phase, _| {
        let counts = h.upgrade().map(|h| h.get_count()).unwrap_or_default();
        s.borrow_mut().push((phase, counts));
    }));
    let kept: Vec<_> = (0..9).map(|_| list(&heap)).collect();
    heap.collect(0);
    assert_eq!(
        *seen.borrow(),
        [
            (CollectPhase::Start, [9, 0, 0]),
            (CollectPhase::Stop, [0, 1, 0])
        ]
    );
    drop(kept);
}

/// `gc.freeze()` sets every count to zero (CPython 3.11–3.13's `gc_freeze_impl`): `python3`
/// prints `(11, 1, 0)` then `(0, 0, 0)`.
#[test]
fn freeze_resets_the_counts() {
    let heap = Heap::new();
    heap.disable();
    heap.collect(0);
    let kept: Vec<_> = (0..11).map(|_| list(&heap)).collect();
    assert_eq!(heap.get_count(), [11, 1, 0]);
    heap.freeze();
    assert_eq!(heap.get_count(), [0, 0, 0]);
    drop(kept);
}

/// With SAVEALL, the garbage of `collect(0)` is kept in generation 1 (CPython's
/// `delete_garbage` leaves it in `old`, the survivors' generation): `python3` finds the saved
/// self-referencing list in `gc.get_objects(1)`.
#[test]
fn saveall_keeps_the_garbage_in_the_next_generation() {
    let heap = Heap::new();
    heap.disable();
    heap.set_debug(reap::DebugFlags::SAVEALL);
    let l = list(&heap);
    l.0.borrow_mut().push(any(&l));
    drop(l);
    assert_eq!(heap.collect(0), 1);
    assert_eq!(heap.garbage().len(), 1);
    assert_eq!(
        (0..3).map(|g| heap.generation_len(g)).collect::<Vec<_>>(),
        [0, 1, 0]
    );
    heap.set_debug(reap::DebugFlags::empty());
    heap.clear_garbage();
    assert_eq!(heap.collect(2), 1);
}
