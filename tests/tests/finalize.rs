//! `finalize(obj, f)`, SEMANTICS 4.7: W::FinalizeTestCase (test_finalize, test_order,
//! test_all_freed) and the shutdown order.

use std::cell::RefCell;
use std::rc::Rc;

use reap::{finalize, Gc, Heap, Trace, Weak};

#[derive(Trace)]
struct A(RefCell<Option<Gc<A>>>);

type Res = Rc<RefCell<Vec<String>>>;

fn push(res: &Res, s: &str) -> impl FnOnce() + 'static {
    let (res, s) = (res.clone(), s.to_string());
    move || res.borrow_mut().push(s)
}

#[test]
fn w_finalize_test_finalize() {
    fn add(x: i32, y: i32, z: i32) -> i32 {
        x + y + z
    }
    let heap = Heap::new();
    let a = heap.alloc(A(RefCell::new(None)));
    let f = finalize(&a, || add(67, 43, 89));
    assert!(f.alive());
    assert!(Gc::ptr_eq(&f.peek().unwrap(), &a));
    assert_eq!(f.call(), Some(199));
    assert_eq!(f.call(), None, "runs once");
    assert!(f.peek().is_none());
    assert!(!f.alive());

    let f = finalize(&a, || add(67, 43, 89));
    let (obj, func) = f.detach().expect("detach while pending");
    assert!(Gc::ptr_eq(&obj.unwrap(), &a));
    assert_eq!(func(), 199);
    assert!(!f.alive());
    assert!(f.detach().is_none());
    assert_eq!(f.call(), None);

    let f = finalize(&a, || add(67, 43, 89));
    assert!(f.alive());
    drop(a); // the object dies: it runs (its result is dropped)
    assert!(!f.alive());
    assert_eq!(f.call(), None);
}

/// Finalizers keep themselves alive: dropping the handle does not cancel them; when the object
/// dies they run newest first.
#[test]
fn w_finalize_test_order() {
    let heap = Heap::new();
    let a = heap.alloc(A(RefCell::new(None)));
    let res: Res = Rc::default();
    let f1 = finalize(&a, push(&res, "f1"));
    let f2 = finalize(&a, push(&res, "f2"));
    let f3 = finalize(&a, push(&res, "f3"));
    let f4 = finalize(&a, push(&res, "f4"));
    let f5 = finalize(&a, push(&res, "f5"));
    drop((f1, f4));
    assert!(f2.alive() && f3.alive() && f5.alive());
    assert!(f5.detach().is_some());
    assert!(!f5.alive());
    assert_eq!(f5.call(), None, "nothing: previously detached");
    res.borrow_mut().push("A".into());
    assert_eq!(f3.call(), Some(()));
    assert!(!f3.alive());
    res.borrow_mut().push("B".into());
    assert_eq!(f3.call(), None, "nothing: previously called");
    res.borrow_mut().push("C".into());
    // A cycle, so the collector (not refcounting) kills it.
    *a.0.borrow_mut() = Some(a.clone());
    drop(a);
    heap.collect(2);
    assert!(!f2.alive());
    res.borrow_mut().push("D".into());
    assert_eq!(
        f2.call(),
        None,
        "nothing: previously called by the collector"
    );
    assert_eq!(*res.borrow(), ["A", "f3", "B", "C", "f4", "f2", "f1", "D"]);
}

/// The callable and what it captured are freed once it has run.
#[test]
fn w_finalize_test_all_freed() {
    let heap = Heap::new();
    let a = heap.alloc(A(RefCell::new(None)));
    let captured = Rc::new(());
    let probe = Rc::downgrade(&captured);
    let c = captured.clone();
    let f = finalize(&a, move || drop(c));
    drop(captured);
    assert!(probe.upgrade().is_some(), "held by the pending callable");
    drop(a);
    assert!(probe.upgrade().is_none(), "freed after running");
    drop(f);
    // No weak reference to the dead object is left registered.
    let b = heap.alloc(A(RefCell::new(None)));
    let _f = finalize(&b, || ());
    assert_eq!(Gc::weak_count(&b), 1);
    drop(_f);
    assert_eq!(
        Gc::weak_count(&b),
        1,
        "the registration lives on without its handle"
    );
}

/// At heap shutdown the pending ones run newest first, including one registered by another
/// while they run; detached and already-run ones do not.
#[test]
fn w_finalize_test_atexit_order() {
    let res: Res = Rc::default();
    let heap = Heap::new();
    let keep = heap.alloc(A(RefCell::new(None)));
    let other = heap.alloc(A(RefCell::new(None)));
    let _f1 = finalize(&keep, push(&res, "f1"));
    let f2 = finalize(&keep, push(&res, "f2"));
    let (r, o) = (res.clone(), other.clone());
    let _f3 = finalize(&keep, move || {
        r.borrow_mut().push("f3".into());
        // Registered during shutdown: it runs too.
        let _registered_itself = finalize(&o, push(&r, "g1"));
    });
    let _f4 = finalize(&keep, push(&res, "f4"));
    f2.detach();
    // Objects still held from outside at shutdown: the registrations run anyway.
    let w = Weak::new(&keep);
    drop(heap);
    assert_eq!(*res.borrow(), ["f4", "f3", "g1", "f1"]);
    drop((keep, other, w));
}
