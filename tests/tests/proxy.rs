//! Weak proxies and weak methods, SEMANTICS 4.8 (test_weakref.py's proxy and WeakMethod tests).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use reap::{Gc, Heap, ReferenceError, Trace, Weak, WeakMethod, WeakProxy};

#[derive(Trace)]
struct C {
    bar: Cell<i64>,
    items: RefCell<Vec<i64>>,
}

impl C {
    fn some_method(&self) -> i64 {
        4
    }
}

fn c(heap: &Heap) -> Gc<C> {
    heap.alloc(C {
        bar: Cell::new(1),
        items: RefCell::new(Vec::new()),
    })
}

/// W::test_basic_proxy / test_proxy_deletion: access forwards while alive; a clear
/// ReferenceError afterwards, never a panic.
#[test]
fn w_test_basic_proxy_and_proxy_deletion() {
    let heap = Heap::new();
    let o = c(&heap);
    let p = WeakProxy::new(&o);
    assert_eq!(p.with(|o| o.bar.get()), Ok(1));
    p.with(|o| o.bar.set(2)).unwrap();
    assert_eq!(o.bar.get(), 2, "writes through the proxy reach the object");
    p.with(|o| o.items.borrow_mut().extend([1, 2, 3])).unwrap();
    assert_eq!(p.with(|o| o.items.borrow().len()), Ok(3));
    assert!(Gc::ptr_eq(&p.get().unwrap(), &o));
    drop(o);
    assert!(!p.is_alive());
    assert_eq!(p.with(|o| o.bar.get()), Err(ReferenceError));
    assert_eq!(p.get().err(), Some(ReferenceError));
    assert_eq!(
        ReferenceError.to_string(),
        "weakly-referenced object no longer exists"
    );
}

/// W::test_getweakrefcount: two references and two proxies count four.
#[test]
fn w_test_getweakrefcount_with_proxies() {
    let heap = Heap::new();
    let o = c(&heap);
    let ref1 = Weak::new(&o);
    let ref2 = Weak::with_callback(&o, |_: &Weak<C>| {});
    assert_eq!(Gc::weak_count(&o), 2);
    let proxy1 = WeakProxy::new(&o);
    let proxy2 = WeakProxy::with_callback(&o, |_: &Weak<C>| {});
    assert_eq!(Gc::weak_count(&o), 4);
    drop((ref1, ref2, proxy1, proxy2));
    assert_eq!(Gc::weak_count(&o), 0);
}

#[test]
fn proxy_callback_runs_once_with_its_weak_reference() {
    let heap = Heap::new();
    let o = c(&heap);
    let fired = Rc::new(Cell::new(0));
    let f = fired.clone();
    let p = WeakProxy::with_callback(&o, move |w: &Weak<C>| {
        assert!(w.upgrade().is_none());
        f.set(f.get() + 1);
    });
    drop(o);
    assert_eq!(fired.get(), 1);
    assert!(!p.is_alive());
}

/// W::WeakMethod test_alive / test_object_dead.
#[test]
fn w_weakmethod_test_alive_and_object_dead() {
    let heap = Heap::new();
    let o = c(&heap);
    let r = WeakMethod::new(&o, C::some_method);
    assert!(r.is_alive());
    assert_eq!(r.call(), Some(4));
    let bound = r.upgrade().expect("alive");
    assert_eq!(bound(), 4);
    drop(bound);
    drop(o);
    assert!(!r.is_alive());
    assert_eq!(r.call(), None);
    assert!(r.upgrade().is_none());
}

/// W::WeakMethod test_callback_when_object_dead: the callback runs exactly once.
#[test]
fn w_weakmethod_test_callback_when_object_dead() {
    let heap = Heap::new();
    let o = c(&heap);
    let calls = Rc::new(Cell::new(0));
    let k = calls.clone();
    let r = WeakMethod::with_callback(&o, C::some_method, move |_: &Weak<C>| k.set(k.get() + 1));
    drop(o);
    assert_eq!(calls.get(), 1);
    assert_eq!(r.call(), None);
    heap.collect(2);
    assert_eq!(calls.get(), 1);
}

/// W::WeakMethod test_no_cycles: dropping a weak method frees it at once (no self-cycle), and it
/// never kept its receiver alive.
#[test]
fn w_weakmethod_test_no_cycles() {
    let heap = Heap::new();
    let o = c(&heap);
    let r = WeakMethod::new(&o, C::some_method);
    assert_eq!(Gc::strong_count(&o), 1);
    drop(r);
    drop(o);
    assert_eq!(heap.live_objects(), 0, "nothing left for the collector");
}
