//! Refcount-path scenarios of SEMANTICS 7 (test_finalization.py: F, test_weakref.py: W),
//! named after CPython's tests.

use std::cell::RefCell;

use reap::{Finalize, Gc, Heap, Trace, Weak};
use reap_tests::Log;

/// An instance of a class with a `__del__` that logs its name; it may hold a slot and may
/// resurrect itself into `survivors`.
#[derive(Trace)]
#[reap(finalize)]
struct Obj {
    name: &'static str,
    log: Log,
    slot: RefCell<Option<Gc<Obj>>>,
    survivors: Option<Gc<Survivors>>,
}

#[derive(Trace, Default)]
struct Survivors(RefCell<Vec<Gc<Obj>>>);

impl Finalize for Obj {
    fn finalize(this: &Gc<Self>) {
        this.log.push(format!("del {}", this.name));
        if let Some(s) = &this.survivors {
            s.0.borrow_mut().push(this.clone());
        }
    }
}

impl Obj {
    fn new(heap: &Heap, name: &'static str, log: &Log) -> Gc<Obj> {
        heap.alloc(Obj {
            name,
            log: log.clone(),
            slot: RefCell::new(None),
            survivors: None,
        })
    }
}

#[test]
fn f_test_simple() {
    let heap = Heap::new();
    let log = Log::new();
    let s = Obj::new(&heap, "s", &log);
    let w = Weak::new(&s);
    drop(s);
    assert_eq!(log.events(), ["del s"]);
    assert!(w.upgrade().is_none());
    assert_eq!(
        heap.live_objects(),
        1,
        "only the weak reference object is left"
    );
}

#[test]
fn f_test_simple_resurrect() {
    let heap = Heap::new();
    let log = Log::new();
    let survivors = heap.alloc(Survivors::default());
    let s = heap.alloc(Obj {
        name: "s",
        log: log.clone(),
        slot: RefCell::new(None),
        survivors: Some(survivors.clone()),
    });
    let w = Weak::new(&s);
    drop(s);
    assert_eq!(log.events(), ["del s"]);
    // Resurrected: the weak reference still works and the object is finalized.
    let back = w
        .upgrade()
        .expect("resurrected object must stay reachable by its weak ref");
    assert!(Gc::is_finalized(&back));
    drop(back);
    // Second death: no second finalizer, and now the weak reference is dead.
    survivors.0.borrow_mut().clear();
    assert_eq!(log.events(), ["del s"]);
    assert!(w.upgrade().is_none());
}

/// `__del__` runs again for untracked types in CPython; here the once-only rule holds for every
/// object (SEMANTICS 3.2), untracked ones included.
#[test]
fn f_test_non_gc_resurrect_runs_finalizer_once() {
    thread_local!(static KEEP: RefCell<Vec<Gc<Atom>>> = const { RefCell::new(Vec::new()) });
    thread_local!(static DELS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
    #[derive(Trace)]
    #[reap(finalize)]
    struct Atom(u32);
    impl Finalize for Atom {
        fn finalize(this: &Gc<Self>) {
            DELS.with(|d| d.set(d.get() + 1));
            KEEP.with(|k| k.borrow_mut().push(this.clone()));
        }
    }
    let heap = Heap::new();
    let a = heap.alloc(Atom(1));
    assert!(!reap::is_tracked(&a));
    drop(a);
    assert_eq!(DELS.with(|d| d.get()), 1);
    let a = KEEP.with(|k| k.borrow_mut().pop()).unwrap();
    assert_eq!(a.0, 1);
    drop(a);
    assert_eq!(DELS.with(|d| d.get()), 1);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn w_test_basic_ref() {
    let heap = Heap::new();
    let o = heap.alloc(String::from("C"));
    let r = Weak::new(&o);
    let back = r.upgrade().unwrap();
    assert!(Gc::ptr_eq(&back, &o));
    assert_eq!(*back, "C");
}

#[test]
fn w_test_basic_callback() {
    let heap = Heap::new();
    let log = Log::new();
    let o = heap.alloc(5_u64);
    let l = log.clone();
    let r = Weak::with_untraced_callback(&o, move |w: &Weak<u64>| {
        l.push(format!("callback alive={}", w.is_alive()));
    });
    drop(o);
    assert_eq!(log.events(), ["callback alive=false"]);
    assert!(r.upgrade().is_none());
}

#[test]
fn w_test_multiple_callbacks() {
    let heap = Heap::new();
    let log = Log::new();
    let o = heap.alloc(String::from("o"));
    let (l1, l2) = (log.clone(), log.clone());
    let r1 = Weak::with_untraced_callback(&o, move |_: &Weak<String>| l1.push("cb1"));
    let r2 = Weak::with_untraced_callback(&o, move |_: &Weak<String>| l2.push("cb2"));
    assert_eq!(Gc::weak_count(&o), 2);
    drop(o);
    // Newest first (CPython inserts callback refs after the basic ref).
    assert_eq!(log.events(), ["cb2", "cb1"]);
    assert!(r1.upgrade().is_none() && r2.upgrade().is_none());
}

/// Every weak reference is cleared before any callback runs: a callback that reads the other
/// weak references finds them all dead.
#[test]
fn w_test_multiple_selfref_callbacks() {
    let heap = Heap::new();
    let log = Log::new();
    let o = heap.alloc(1_i32);
    let plain = Weak::new(&o);
    let others: std::rc::Rc<RefCell<Vec<Weak<i32>>>> = Default::default();
    let mut refs = Vec::new();
    for i in 0..3 {
        let (l, others) = (log.clone(), others.clone());
        let r = Weak::with_untraced_callback(&o, move |me: &Weak<i32>| {
            let alive = others.borrow().iter().filter(|w| w.is_alive()).count();
            l.push(format!(
                "cb{i} self_alive={} others_alive={alive}",
                me.is_alive()
            ));
        });
        refs.push(r);
    }
    others.borrow_mut().extend(refs.iter().cloned());
    others.borrow_mut().push(plain.clone());
    drop(o);
    assert_eq!(
        log.events(),
        [
            "cb2 self_alive=false others_alive=0",
            "cb1 self_alive=false others_alive=0",
            "cb0 self_alive=false others_alive=0"
        ]
    );
}

/// Callback-less weak references are shared; weak references with callbacks are not.
/// (CPython's test uses a proxy for the second weak reference; a callback ref plays its part.)
#[test]
fn w_test_ref_reuse() {
    let heap = Heap::new();
    let o = heap.alloc(String::from("o"));
    let ref1 = Weak::new(&o);
    let other = Weak::with_untraced_callback(&o, |_: &Weak<String>| {});
    let ref2 = Weak::new(&o);
    assert!(ref1.ptr_eq(&ref2), "callback-less refs must be identical");
    assert!(!ref1.ptr_eq(&other));
    assert_eq!(Gc::weak_count(&o), 2);
    drop(other);
    assert_eq!(Gc::weak_count(&o), 1);
    drop((ref1, ref2));
    assert_eq!(Gc::weak_count(&o), 0);
    // A fresh shared ref is made once the old one is gone.
    let ref3 = Weak::new(&o);
    assert!(ref3.is_alive());
    assert_eq!(Gc::weak_count(&o), 1);
}

#[test]
fn w_test_getweakrefcount() {
    let heap = Heap::new();
    let o = heap.alloc(String::from("o"));
    let ref1 = Weak::new(&o);
    let ref2 = Weak::with_untraced_callback(&o, |_: &Weak<String>| {});
    assert_eq!(Gc::weak_count(&o), 2);
    let ref3 = Weak::new(&o);
    let ref4 = Weak::with_untraced_callback(&o, |_: &Weak<String>| {});
    assert_eq!(
        Gc::weak_count(&o),
        3,
        "the second plain ref is the shared one"
    );
    drop((ref1, ref2, ref3, ref4));
    assert_eq!(
        Gc::weak_count(&o),
        0,
        "weak reference objects were not removed"
    );
    // An object that never had weak references.
    let n = heap.alloc(1_u8);
    assert_eq!(Gc::weak_count(&n), 0);
}

#[test]
fn w_test_getweakrefs() {
    let heap = Heap::new();
    let o = heap.alloc(String::from("o"));
    let ref1 = Weak::with_untraced_callback(&o, |_: &Weak<String>| {});
    let ref2 = Weak::with_untraced_callback(&o, |_: &Weak<String>| {});
    drop(ref1);
    let list = Gc::weak_refs(&o);
    assert_eq!(list.len(), 1);
    assert!(list[0].ptr_eq(&ref2));
    drop(list);

    let ref1 = Weak::with_untraced_callback(&o, |_: &Weak<String>| {});
    drop(ref2);
    let list = Gc::weak_refs(&o);
    assert_eq!(list.len(), 1);
    assert!(list[0].ptr_eq(&ref1));
    drop(list);
    drop(ref1);
    assert!(Gc::weak_refs(&o).is_empty());

    // Order: the shared plain ref first, then callback refs newest first.
    let a = Weak::with_untraced_callback(&o, |_: &Weak<String>| {});
    let b = Weak::with_untraced_callback(&o, |_: &Weak<String>| {});
    let p = Weak::new(&o);
    let list = Gc::weak_refs(&o);
    assert!(list[0].ptr_eq(&p) && list[1].ptr_eq(&b) && list[2].ptr_eq(&a));
    let n = heap.alloc(2_u8);
    assert!(Gc::weak_refs(&n).is_empty());
}

#[test]
fn w_test_callback_attribute() {
    let heap = Heap::new();
    let x = heap.alloc(1_u32);
    let r1 = Weak::with_untraced_callback(&x, |_: &Weak<u32>| {});
    let r2 = Weak::new(&x);
    assert!(r1.has_callback());
    assert!(!r2.has_callback());
}

#[test]
fn w_test_callback_attribute_after_deletion() {
    let heap = Heap::new();
    let x = heap.alloc(1_u32);
    let r = Weak::with_untraced_callback(&x, |_: &Weak<u32>| {});
    assert!(r.has_callback());
    drop(x);
    assert!(!r.has_callback());
}

/// A finalizer that makes a weak reference to its own object: no crash, and the weak reference
/// is dead once the object is.
#[test]
fn w_test_ref_created_during_del() {
    thread_local!(static MADE: RefCell<Vec<Weak<Target>>> = const { RefCell::new(Vec::new()) });
    #[derive(Trace)]
    #[reap(finalize)]
    struct Target;
    impl Finalize for Target {
        fn finalize(this: &Gc<Self>) {
            let w = Weak::new(this);
            assert!(w.is_alive(), "the object is alive while its finalizer runs");
            MADE.with(|m| m.borrow_mut().push(w));
        }
    }
    let heap = Heap::new();
    drop(heap.alloc(Target));
    let w = MADE.with(|m| m.borrow_mut().pop()).unwrap();
    assert!(w.upgrade().is_none());
}

#[test]
fn w_test_equality() {
    let heap = Heap::new();
    let x = heap.alloc(1_i64);
    let y = heap.alloc(1_i64);
    let z = heap.alloc(2_i64);
    let a = Weak::new(&x);
    let b = Weak::new(&y);
    let c = Weak::new(&z);
    assert!(a == b, "live refs compare by referent");
    assert!(a != c);
    assert!(!a.ptr_eq(&b));
    drop((x, y));
    // Dead: identity only.
    assert!(a != b);
    assert!(a == a.clone());
    assert!(a != c, "dead vs alive is identity");
}

#[test]
fn w_test_hashing() {
    use std::collections::HashSet;
    let heap = Heap::new();
    let x = heap.alloc(42_i32);
    let y = heap.alloc(42_i32);
    let a = Weak::new(&x);
    let b = Weak::new(&y);
    let ha = a.try_hash().unwrap();
    assert_eq!(
        ha,
        b.clone()
            .upgrade()
            .map(|_| Weak::new(&y).try_hash().unwrap())
            .unwrap()
    );
    drop(b);
    let b = Weak::with_untraced_callback(&y, |_: &Weak<i32>| {});
    drop((x, y));
    // `a` was hashed while alive: it keeps its hash.
    assert_eq!(a.try_hash(), Ok(ha));
    let mut set = HashSet::new();
    set.insert(a.clone());
    assert!(set.contains(&a));
    // `b` was never hashed: a clear error.
    assert_eq!(b.try_hash(), Err(reap::WeakGone));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut s = HashSet::new();
        s.insert(b.clone());
    }));
    let msg = r.unwrap_err();
    assert_eq!(
        msg.downcast_ref::<String>().unwrap(),
        "weak object has gone away"
    );
}

/// A callback that calls collect while its referent is being torn down: no double free, and
/// the nested objects are freed exactly once.
#[test]
fn w_test_sf_bug_840829() {
    #[derive(Trace, Default)]
    struct C {
        i: Option<Gc<C>>,
        c1: Option<Gc<C>>,
    }
    let heap = std::rc::Rc::new(Heap::new());
    let c = heap.alloc(C::default());
    let h = heap.clone();
    let wr = Weak::with_untraced_callback(&c, move |_: &Weak<C>| {
        h.collect(2);
    });
    drop(c);
    drop(wr);

    let inner = heap.alloc(C::default());
    let h = heap.clone();
    let wr = Weak::with_untraced_callback(&inner, move |_: &Weak<C>| {
        h.collect(2);
    });
    let c1 = heap.alloc(C {
        i: Some(inner),
        c1: None,
    });
    let c2 = heap.alloc(C {
        i: None,
        c1: Some(c1),
    });
    drop(c2);
    assert!(wr.upgrade().is_none());
    drop(wr);
    assert_eq!(heap.live_objects(), 0);
}

/// SEMANTICS 3.1: finalizer first (it sees its weak reference alive), then all weak references
/// cleared, then callbacks newest first, then the value dropped.
#[test]
fn refcount_death_order_is_finalizer_weakrefs_callbacks_drop() {
    thread_local!(static LOG: Log = Log::new());
    #[derive(Trace)]
    #[reap(finalize)]
    struct D(Option<Weak<D>>);
    impl Finalize for D {
        fn finalize(this: &Gc<Self>) {
            let alive = Weak::new(this).is_alive();
            LOG.with(|l| l.push(format!("del weak_alive={alive}")));
        }
    }
    impl Drop for D {
        fn drop(&mut self) {
            LOG.with(|l| l.push("drop"));
        }
    }
    let heap = Heap::new();
    let d = heap.alloc(D(None));
    let _w1 = Weak::with_untraced_callback(&d, |w: &Weak<D>| {
        LOG.with(|l| l.push(format!("cb1 {}", w.is_alive())))
    });
    let _w2 = Weak::with_untraced_callback(&d, |w: &Weak<D>| {
        LOG.with(|l| l.push(format!("cb2 {}", w.is_alive())))
    });
    drop(d);
    assert_eq!(
        LOG.with(|l| l.events()),
        ["del weak_alive=true", "cb2 false", "cb1 false", "drop"]
    );
}

#[test]
fn callback_never_runs_when_weak_reference_died_first() {
    let heap = Heap::new();
    let log = Log::new();
    let o = heap.alloc(3_u8);
    let l = log.clone();
    let r = Weak::with_untraced_callback(&o, move |_: &Weak<u8>| l.push("cb"));
    drop(r);
    drop(o);
    assert!(log.events().is_empty());
}

/// A callback that drops another weak reference with a pending callback: CPython holds every
/// weak reference alive while callbacks run, so the other callback still runs.
#[test]
fn callback_dropping_another_weak_reference_does_not_cancel_it() {
    let heap = Heap::new();
    let log = Log::new();
    let o = heap.alloc(3_u8);
    let l1 = log.clone();
    let r1 = Weak::with_untraced_callback(&o, move |_: &Weak<u8>| l1.push("cb1"));
    let holder: std::rc::Rc<RefCell<Option<Weak<u8>>>> = std::rc::Rc::new(RefCell::new(Some(r1)));
    let (l2, h2) = (log.clone(), holder.clone());
    let _r2 = Weak::with_untraced_callback(&o, move |_: &Weak<u8>| {
        l2.push("cb2");
        h2.borrow_mut().take();
    });
    drop(o);
    assert_eq!(log.events(), ["cb2", "cb1"]);
}

#[test]
fn traced_callback_state_is_visible_to_the_collector() {
    // A cycle through a callback's state: object -> weakref (held by the object) -> callback
    // state -> object. Collectable because the state is traced.
    #[derive(Trace)]
    struct Holder(RefCell<Option<Weak<u8>>>);
    let heap = Heap::new();
    let target = heap.alloc(3_u8);
    let h = heap.alloc(Holder(RefCell::new(None)));
    let w = Weak::with_callback(&target, h.clone(), |_h: &Gc<Holder>, _w: &Weak<u8>| {});
    *h.0.borrow_mut() = Some(w);
    let _ = Weak::new(&h);
    drop(h);
    assert_eq!(
        heap.collect(2),
        2,
        "the holder and the weak reference object"
    );
    drop(target);
    assert_eq!(heap.live_objects(), 0);
}

/// `gc.is_finalized(self)` inside `__del__`: CPython marks the object finalized after
/// `tp_finalize` returns on the refcount path (`PyObject_CallFinalizer`), before calling it in a
/// collection (`finalize_garbage`). `python3` prints False, then True.
#[test]
fn is_finalized_inside_the_finalizer_false_on_refcount_path_true_in_collection() {
    #[derive(Trace)]
    #[reap(finalize)]
    struct Probe {
        log: Log,
        me: RefCell<Option<Gc<Probe>>>,
    }
    impl Finalize for Probe {
        fn finalize(this: &Gc<Self>) {
            this.log
                .push(format!("finalized {}", Gc::is_finalized(this)));
        }
    }
    let heap = Heap::new();
    let log = Log::new();
    drop(heap.alloc(Probe {
        log: log.clone(),
        me: RefCell::new(None),
    }));
    let cyclic = heap.alloc(Probe {
        log: log.clone(),
        me: RefCell::new(None),
    });
    *cyclic.me.borrow_mut() = Some(cyclic.clone());
    drop(cyclic);
    assert_eq!(heap.collect(2), 1);
    assert_eq!(log.events(), ["finalized false", "finalized true"]);
}

/// One Rust type, two Python classes: instances of the class without `__del__` opt out of the
/// finalizer at allocation (`Finalize::wants_finalizer`). They are never finalized, on the
/// refcount path or in a collection, and `is_finalized` stays false for them.
#[test]
fn objects_opt_out_of_their_type_finalizer_at_allocation() {
    #[derive(Trace)]
    #[reap(finalize)]
    struct Instance {
        name: &'static str,
        has_del: bool,
        log: Log,
        other: RefCell<Option<Gc<Instance>>>,
    }
    impl Finalize for Instance {
        fn finalize(this: &Gc<Self>) {
            this.log.push(format!("del {}", this.name));
        }
        fn wants_finalizer(&self) -> bool {
            self.has_del
        }
    }
    let heap = Heap::new();
    heap.disable();
    let log = Log::new();
    let new = |name, has_del| {
        heap.alloc(Instance {
            name,
            has_del,
            log: log.clone(),
            other: RefCell::new(None),
        })
    };
    drop(new("plain", false));
    drop(new("with_del", true));
    assert_eq!(log.events(), ["del with_del"]);
    // A cycle of one of each: only one finalizer, both collected.
    let (a, b) = (new("cyc_plain", false), new("cyc_del", true));
    *a.other.borrow_mut() = Some(b.clone());
    *b.other.borrow_mut() = Some(a.clone());
    let keep_plain = Weak::new(&a);
    drop((a, b));
    assert_eq!(heap.collect(2), 2);
    assert_eq!(log.events(), ["del with_del", "del cyc_del"]);
    assert!(keep_plain.upgrade().is_none());
    let still = new("still", false);
    assert!(!Gc::is_finalized(&still));
}
