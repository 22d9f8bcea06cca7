//! Weak proxies and weak methods, SEMANTICS 4.8 (test_weakref.py's proxy and WeakMethod tests).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use reap::{Gc, Heap, ReferenceError, Trace, Weak, WeakFnMethod, WeakMethod, WeakProxy};

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
    let ref2 = Weak::with_untraced_callback(&o, |_: &Weak<C>| {});
    assert_eq!(Gc::weak_count(&o), 2);
    let proxy1 = WeakProxy::new(&o);
    let proxy2 = WeakProxy::with_untraced_callback(&o, |_: &Weak<C>| {});
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
    let p = WeakProxy::with_untraced_callback(&o, move |w: &Weak<C>| {
        assert!(w.upgrade().is_none());
        f.set(f.get() + 1);
    });
    drop(o);
    assert_eq!(fired.get(), 1);
    assert!(!p.is_alive());
}

/// A function value of the language, as `WeakMethod` holds it weakly (`__func__`).
#[derive(Trace)]
struct Func {
    result: i64,
}

impl Func {
    fn call(&self, receiver: &C) -> i64 {
        self.result + receiver.bar.get()
    }
}

/// W::WeakMethod test_alive / test_object_dead.
#[test]
fn w_weakmethod_test_alive_and_object_dead() {
    let heap = Heap::new();
    let o = c(&heap);
    let f = heap.alloc(Func { result: 3 });
    let r = WeakMethod::new(&o, &f);
    assert!(r.is_alive());
    let (me, func) = r.upgrade().expect("alive");
    assert_eq!(func.call(&me), 4);
    drop((me, func));
    drop(o);
    assert!(!r.is_alive());
    assert!(r.upgrade().is_none());
    assert_eq!(
        Gc::strong_count(&f),
        1,
        "the function lives on, unowned by the method"
    );
}

/// W::WeakMethod test_method_dead: the weak method dies with its function, though the receiver
/// lives (Python's WeakMethod holds `__func__` weakly too).
#[test]
fn w_weakmethod_test_method_dead() {
    let heap = Heap::new();
    let o = c(&heap);
    let f = heap.alloc(Func { result: 3 });
    let r = WeakMethod::new(&o, &f);
    drop(f);
    assert!(!r.is_alive());
    assert!(r.upgrade().is_none());
    assert!(r.receiver().is_alive() && !r.func().is_alive());
}

/// W::WeakMethod test_callback_when_object_dead: the callback runs exactly once, though both
/// the receiver and then the function die.
#[test]
fn w_weakmethod_test_callback_when_object_dead() {
    let heap = Heap::new();
    let o = c(&heap);
    let f = heap.alloc(Func { result: 3 });
    let calls = heap.alloc(Cell::new(0));
    let r = WeakMethod::with_callback(&o, &f, calls.clone(), |k: &Gc<Cell<i32>>| {
        k.set(k.get() + 1)
    });
    drop(o);
    assert_eq!(calls.get(), 1);
    drop(f);
    assert_eq!(calls.get(), 1, "once, not once per weak reference");
    assert!(r.upgrade().is_none());
    heap.collect(2);
    assert_eq!(calls.get(), 1);
}

/// W::WeakMethod test_callback_when_method_dead.
#[test]
fn w_weakmethod_test_callback_when_method_dead() {
    let heap = Heap::new();
    let o = c(&heap);
    let f = heap.alloc(Func { result: 3 });
    let calls = heap.alloc(Cell::new(0));
    let _r = WeakMethod::with_callback(&o, &f, calls.clone(), |k: &Gc<Cell<i32>>| {
        k.set(k.get() + 1)
    });
    drop(f);
    assert_eq!(calls.get(), 1);
    drop(o);
    assert_eq!(calls.get(), 1);
}

/// W::WeakMethod test_no_cycles: dropping a weak method frees it at once (no self-cycle), and it
/// never kept its receiver or function alive; a callback whose state refers back to the
/// receiver (a cycle through the callback) is collectable, because the state is traced.
#[test]
fn w_weakmethod_test_no_cycles() {
    let heap = Heap::new();
    let o = c(&heap);
    let f = heap.alloc(Func { result: 3 });
    let r = WeakMethod::new(&o, &f);
    assert_eq!(Gc::strong_count(&o), 1);
    assert_eq!(Gc::strong_count(&f), 1);
    drop(r);
    drop((o, f));
    assert_eq!(heap.live_objects(), 0, "nothing left for the collector");

    // A receiver that holds its own weak method, whose callback state holds the receiver.
    #[derive(Trace)]
    struct Holder {
        method: RefCell<Option<WeakMethod<Holder, Func>>>,
    }
    let h = heap.alloc(Holder {
        method: RefCell::new(None),
    });
    let f = heap.alloc(Func { result: 1 });
    let m = WeakMethod::with_callback(&h, &f, h.clone(), |_: &Gc<Holder>| {});
    *h.method.borrow_mut() = Some(m);
    drop(h);
    assert_eq!(
        heap.collect(2),
        4,
        "the holder, the shared callback and both weak references"
    );
    drop(f);
    assert_eq!(heap.live_objects(), 0);
}

/// The Rust-function form: only the receiver is held weakly.
#[test]
fn weak_fn_method_binds_a_function_pointer() {
    let heap = Heap::new();
    let o = c(&heap);
    let calls = heap.alloc(Cell::new(0));
    let r = WeakFnMethod::with_callback(
        &o,
        C::some_method,
        calls.clone(),
        |k: &Gc<Cell<i32>>, _: &Weak<C>| k.set(k.get() + 1),
    );
    assert_eq!(r.call(), Some(4));
    assert_eq!(r.upgrade().map(|m| m()), Some(4));
    drop(o);
    assert_eq!(calls.get(), 1);
    assert_eq!(r.call(), None);
}
