//! Panic containment, SEMANTICS 5.4: panics in finalizers, weak-reference callbacks and `Drop`
//! are caught, handed to the unraisable hook, and the heap stays consistent.

use std::cell::RefCell;
use std::rc::Rc;

use reap::{Finalize, Gc, Heap, Trace, Unraisable, UnraisableKind, Weak};

fn recording_heap() -> (Heap, Rc<RefCell<Vec<Unraisable>>>) {
    let heap = Heap::new();
    let seen: Rc<RefCell<Vec<Unraisable>>> = Rc::default();
    let s = seen.clone();
    heap.set_unraisable_hook(Some(Box::new(move |u: &Unraisable| {
        s.borrow_mut().push(u.clone())
    })));
    (heap, seen)
}

#[derive(Trace)]
#[reap(finalize)]
struct Bomb {
    other: Option<Gc<String>>,
}

impl Finalize for Bomb {
    fn finalize(_this: &Gc<Self>) {
        panic!("boom in __del__");
    }
}

#[test]
fn panicking_finalizer_is_reported_and_the_object_still_dies() {
    let (heap, seen) = recording_heap();
    let other = heap.alloc(String::from("held"));
    let b = heap.alloc(Bomb {
        other: Some(other.clone()),
    });
    let w = Weak::new(&b);
    drop(b);
    {
        let seen = seen.borrow();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].kind, UnraisableKind::Finalizer);
        assert!(seen[0].type_name.ends_with("Bomb"), "{}", seen[0].type_name);
        assert_eq!(seen[0].message, "boom in __del__");
        assert!(seen[0].to_string().contains("Bomb"));
    }
    assert!(w.upgrade().is_none());
    assert_eq!(Gc::strong_count(&other), 1, "the value was dropped");
    // The heap works on.
    let again = heap.alloc(String::from("after"));
    assert_eq!(*again, "after");
    drop((again, other, w));
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn panicking_callback_is_reported_and_other_callbacks_run() {
    let (heap, seen) = recording_heap();
    let o = heap.alloc(7_u32);
    let ran = Rc::new(RefCell::new(Vec::new()));
    let r1 = ran.clone();
    let _w1 = Weak::with_untraced_callback(&o, move |_: &Weak<u32>| r1.borrow_mut().push("first"));
    let _w2 = Weak::with_untraced_callback(&o, |_: &Weak<u32>| panic!("callback failed"));
    drop(o);
    assert_eq!(*ran.borrow(), ["first"]);
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].kind, UnraisableKind::WeakCallback);
    assert_eq!(seen[0].type_name, "u32");
    assert_eq!(seen[0].message, "callback failed");
}

struct Noisy(Rc<RefCell<Vec<&'static str>>>, &'static str);
impl Drop for Noisy {
    fn drop(&mut self) {
        self.0.borrow_mut().push(self.1);
    }
}

/// The skipped fields are only ever dropped: that is what the test watches.
#[allow(dead_code)]
#[derive(Trace)]
struct BadDrop {
    #[reap(skip)]
    first: Noisy,
    child: Gc<String>,
    #[reap(skip)]
    second: Noisy,
}

impl Drop for BadDrop {
    fn drop(&mut self) {
        panic!("drop failed");
    }
}

#[test]
fn panicking_drop_is_reported_fields_still_dropped_memory_freed() {
    let (heap, seen) = recording_heap();
    let drops = Rc::new(RefCell::new(Vec::new()));
    let child = heap.alloc(String::from("child"));
    let b = heap.alloc(BadDrop {
        first: Noisy(drops.clone(), "first"),
        child: child.clone(),
        second: Noisy(drops.clone(), "second"),
    });
    let w = Weak::new(&child);
    drop(child);
    drop(b);
    assert_eq!(*drops.borrow(), ["first", "second"]);
    assert!(
        w.upgrade().is_none(),
        "the child was released during unwinding"
    );
    {
        let seen = seen.borrow();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].kind, UnraisableKind::Drop);
        assert!(seen[0].type_name.ends_with("BadDrop"));
    }
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn panicking_hook_falls_back_to_stderr() {
    let heap = Heap::new();
    heap.set_unraisable_hook(Some(Box::new(|_: &Unraisable| panic!("hook broke"))));
    drop(heap.alloc(Bomb { other: None }));
    heap.set_unraisable_hook(None);
    drop(heap.alloc(Bomb { other: None }));
    assert_eq!(heap.live_objects(), 0);
}

// --- panics during a collection ---------------------------------------------------------------

#[derive(Trace)]
struct Cyc(RefCell<Option<Gc<Cyc>>>);

#[test]
fn panicking_finalizer_in_a_collection_is_reported_and_the_cycle_still_freed() {
    #[derive(Trace)]
    #[reap(finalize)]
    struct BombCycle(RefCell<Option<Gc<BombCycle>>>);
    impl Finalize for BombCycle {
        fn finalize(_: &Gc<Self>) {
            panic!("boom in cyclic __del__");
        }
    }
    let (heap, seen) = recording_heap();
    let a = heap.alloc(BombCycle(RefCell::new(None)));
    *a.0.borrow_mut() = Some(a.clone());
    let w = Weak::new(&a);
    drop(a);
    assert_eq!(heap.collect(2), 1);
    assert!(w.upgrade().is_none());
    assert_eq!(seen.borrow().len(), 1);
    assert_eq!(seen.borrow()[0].kind, UnraisableKind::Finalizer);
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn panicking_callback_in_a_collection_is_reported() {
    let (heap, seen) = recording_heap();
    let a = heap.alloc(Cyc(RefCell::new(None)));
    *a.0.borrow_mut() = Some(a.clone());
    let w = Weak::with_untraced_callback(&a, |_: &Weak<Cyc>| panic!("callback boom"));
    drop(a);
    assert_eq!(heap.collect(2), 1);
    assert_eq!(seen.borrow()[0].kind, UnraisableKind::WeakCallback);
    assert!(w.upgrade().is_none());
}

#[test]
fn panicking_collection_callback_is_reported_and_the_collection_goes_on() {
    let (heap, seen) = recording_heap();
    heap.add_collect_callback(Box::new(|_, _| panic!("gc callback boom")));
    let a = heap.alloc(Cyc(RefCell::new(None)));
    *a.0.borrow_mut() = Some(a.clone());
    drop(a);
    assert_eq!(heap.collect(2), 1);
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2, "start and stop");
    assert!(seen
        .iter()
        .all(|u| u.kind == UnraisableKind::CollectionCallback));
}

/// A hand-written `Trace` that panics: the collection is abandoned with every real count and
/// list intact, and a later collection (once tracing works) frees the cycle.
#[test]
fn panicking_trace_abandons_the_collection_cleanly() {
    thread_local!(static FAIL: std::cell::Cell<bool> = const { std::cell::Cell::new(true) });
    struct Fragile(RefCell<Option<Gc<Fragile>>>);
    // SAFETY: visits exactly the handle it owns (or panics before visiting anything).
    unsafe impl Trace for Fragile {
        fn trace(&self, tracer: &mut reap::Tracer<'_>) {
            if FAIL.with(|f| f.get()) {
                panic!("trace failed");
            }
            self.0.trace(tracer);
        }
    }
    let (heap, seen) = recording_heap();
    let a = heap.alloc(Fragile(RefCell::new(None)));
    let b = heap.alloc(Fragile(RefCell::new(Some(a.clone()))));
    *a.0.borrow_mut() = Some(b.clone());
    let keep = heap.alloc(Fragile(RefCell::new(None)));
    let wa = Weak::new(&a);
    drop((a, b));
    assert_eq!(heap.collect(2), 0, "abandoned");
    assert_eq!(seen.borrow().len(), 1);
    assert!(wa.is_alive(), "nothing was freed");
    assert_eq!(Gc::strong_count(&keep), 1, "real counts intact");
    FAIL.with(|f| f.set(false));
    assert_eq!(heap.collect(2), 2);
    assert!(!wa.is_alive());
}

/// The report of a panicking finalizer carries the object while the hook runs (what an
/// interpreter needs to print "Exception ignored in: <... of X>"): a recorded copy of the
/// report keeps nothing alive, but a hook that keeps a clone of the handle resurrects the
/// object, as storing `self` in `__del__` would, and it is not finalized again. A panicking
/// weak callback's report carries its weak reference.
#[test]
fn reports_carry_the_object_and_a_kept_one_is_resurrected() {
    #[derive(Trace)]
    #[reap(finalize)]
    struct Faulty {
        name: &'static str,
    }
    impl Finalize for Faulty {
        fn finalize(_: &Gc<Self>) {
            panic!("__del__ failed");
        }
    }
    let (heap, seen) = recording_heap();
    let dropped = heap.alloc(Faulty { name: "d" });
    let w = Weak::new(&dropped);
    drop(dropped);
    assert_eq!(seen.borrow().len(), 1);
    assert!(
        seen.borrow()[0].object().is_none(),
        "a copy leaves the object out"
    );
    assert!(
        w.upgrade().is_none(),
        "a recorded report keeps nothing alive"
    );
    let kept: Rc<RefCell<Vec<reap::AnyGc>>> = Rc::default();
    let k = kept.clone();
    heap.set_unraisable_hook(Some(Box::new(move |u: &Unraisable| {
        if let Some(o) = u.object() {
            k.borrow_mut().push(o.clone());
        }
    })));
    let obj = heap.alloc(Faulty { name: "f" });
    let weak = Weak::new(&obj);
    drop(obj);
    let back = weak.upgrade().expect("the hook kept it: resurrected");
    assert_eq!(back.name, "f");
    assert!(Gc::is_finalized(&back));
    assert!(Gc::ptr_eq(&kept.borrow()[0], &back));
    // Its second death runs no finalizer (nothing more is kept).
    kept.borrow_mut().clear();
    drop(back);
    assert!(weak.upgrade().is_none());
    assert!(kept.borrow().is_empty());

    let target = heap.alloc(String::from("t"));
    let cb = Weak::with_untraced_callback(&target, |_: &Weak<String>| panic!("callback failed"));
    drop(target);
    let reported = kept.borrow_mut().pop().expect("the weak reference");
    assert!(reported.is::<reap::WeakRefObj>());
    assert_eq!(
        Gc::as_ptr(&reported) as *const u8,
        Weak::as_ptr(&cb) as *const u8
    );
}

#[derive(Trace)]
#[reap(finalize)]
struct Thrower {
    #[reap(skip)]
    how: u8,
}

impl Finalize for Thrower {
    fn finalize(this: &Gc<Self>) {
        match this.how {
            0 => panic!("a Rust bug"),
            1 => std::panic::resume_unwind(Box::new(42_u32)),
            _ => {
                // A panic caught by user code leaves a recorded location behind, which must
                // not be pinned on the next, unrelated report.
                let _ = std::panic::catch_unwind(|| panic!("caught inside"));
                std::panic::resume_unwind(Box::new(7_u32));
            }
        }
    }
}

/// Issue 9 A.7: a report carries the panic's location (when locations are recorded and the
/// panic came from `panic!`) and, while the hook runs, its payload.
#[test]
fn unraisable_reports_carry_location_and_payload() {
    reap::record_panic_locations();
    let heap = Heap::new();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    heap.set_unraisable_hook(Some(Box::new(move |u: &Unraisable| {
        let at = u.location().map(|l| (l.file.clone(), l.line > 0));
        let code = u.payload().and_then(|p| p.downcast_ref::<u32>()).copied();
        let kept = u.clone();
        assert!(kept.payload().is_none() && kept.object().is_none());
        s.borrow_mut().push((u.message.clone(), at, code));
    })));
    for how in 0..3 {
        drop(heap.alloc(Thrower { how }));
    }
    let seen = seen.borrow();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].0, "a Rust bug");
    assert_eq!(seen[0].1, Some((file!().to_string(), true)));
    assert_eq!(seen[0].2, None);
    assert_eq!(seen[1].1, None, "resume_unwind has no location");
    assert_eq!(seen[1].2, Some(42));
    assert_eq!(seen[2].1, None, "a stale location is not pinned on it");
    assert_eq!(seen[2].2, Some(7));
}
