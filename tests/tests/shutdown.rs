//! Heap shutdown, SEMANTICS 5.5: dropping the heap runs the finalizers owed and frees every
//! object; objects still held from outside are reported and freed when their handle goes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use reap::{Finalize, Gc, Heap, Trace, Unraisable, UnraisableKind};

thread_local! {
    static DELS: Cell<usize> = const { Cell::new(0) };
    static DROPS: Cell<usize> = const { Cell::new(0) };
}

#[derive(Trace)]
#[reap(finalize)]
struct Member {
    next: RefCell<Option<Gc<Member>>>,
}

impl Finalize for Member {
    fn finalize(_: &Gc<Self>) {
        DELS.with(|d| d.set(d.get() + 1));
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        DROPS.with(|d| d.set(d.get() + 1));
    }
}

fn ring(heap: &Heap, n: usize) {
    let first = heap.alloc(Member {
        next: RefCell::new(None),
    });
    let mut prev = first.clone();
    for _ in 1..n {
        let m = heap.alloc(Member {
            next: RefCell::new(None),
        });
        *prev.next.borrow_mut() = Some(m.clone());
        prev = m;
    }
    *prev.next.borrow_mut() = Some(first);
}

#[test]
fn dropping_the_heap_finalizes_and_frees_everything() {
    let heap = Heap::new();
    heap.disable();
    for n in [1, 2, 10] {
        ring(&heap, n);
    }
    // Acyclic objects held only by the rings, plus plain leaves.
    let _ = heap.alloc(Member {
        next: RefCell::new(None),
    });
    assert_eq!(heap.live_objects(), 13);
    assert_eq!(DELS.with(Cell::get), 1, "the acyclic one died at once");
    drop(heap);
    assert_eq!(DELS.with(Cell::get), 14);
    assert_eq!(DROPS.with(Cell::get), 14);
}

#[test]
fn objects_held_outside_at_shutdown_are_reported_then_freed() {
    let heap = Heap::new();
    let seen: Rc<RefCell<Vec<Unraisable>>> = Rc::default();
    let s = seen.clone();
    heap.set_unraisable_hook(Some(Box::new(move |u: &Unraisable| {
        s.borrow_mut().push(u.clone())
    })));
    let kept = heap.alloc(String::from("kept"));
    drop(heap);
    assert_eq!(seen.borrow().len(), 1);
    assert_eq!(seen.borrow()[0].kind, UnraisableKind::Shutdown);
    assert!(seen.borrow()[0].message.starts_with("1 object"));
    assert_eq!(*kept, "kept");
    drop(kept); // frees the object, then the heap's state
}

/// A node of the cross-heap tests: counts its drops in `CROSS_DROPS`.
#[derive(Trace)]
struct Peer {
    other: RefCell<Option<Gc<Peer>>>,
}

thread_local! {
    static CROSS_DROPS: Cell<usize> = const { Cell::new(0) };
}

impl Drop for Peer {
    fn drop(&mut self) {
        CROSS_DROPS.with(|d| d.set(d.get() + 1));
    }
}

/// Handles across heaps are supported; each heap's collector sees a handle from another heap's
/// object as held from outside, so a cycle spanning two heaps is never collected. Shutdown says
/// so, and the cycle broken by hand is freed.
#[test]
fn cross_heap_cycle_is_reported_at_shutdown_and_freed_when_broken() {
    let a = Heap::new();
    let b = Heap::new();
    let seen: Rc<RefCell<Vec<Unraisable>>> = Rc::default();
    let s = seen.clone();
    a.set_unraisable_hook(Some(Box::new(move |u: &Unraisable| {
        s.borrow_mut().push(u.clone())
    })));
    let pa = a.alloc(Peer {
        other: RefCell::new(None),
    });
    let pb = b.alloc(Peer {
        other: RefCell::new(Some(pa.clone())),
    });
    *pa.other.borrow_mut() = Some(pb.clone());
    let wb = reap::Weak::new(&pb);
    drop((pa, pb));
    assert_eq!(a.collect(2), 0, "the other heap's handle keeps it");
    assert_eq!(b.collect(2), 0, "the other heap's handle keeps it");
    assert_eq!(CROSS_DROPS.with(Cell::get), 0);
    drop(a);
    {
        let seen = seen.borrow();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].kind, UnraisableKind::Shutdown);
        assert!(
            seen[0].message.starts_with("1 object(s) still alive")
                && seen[0]
                    .message
                    .contains("1 of them held by objects of other heaps"),
            "{}",
            seen[0].message
        );
    }
    // Break the cycle by hand: both die, and heap A's state with the last of its objects.
    let pb = wb.upgrade().expect("kept by the cycle");
    let pa = pb.other.borrow_mut().take().expect("its edge");
    drop(pb);
    assert_eq!(CROSS_DROPS.with(Cell::get), 0, "pa still holds pb");
    drop(pa);
    assert_eq!(CROSS_DROPS.with(Cell::get), 2);
    assert_eq!(b.live_objects(), 1, "only the weak reference is left");
    drop(wb);
    assert_eq!(b.live_objects(), 0);
}

/// CPython runs no `gc.callbacks` at exit (SEMANTICS 5.5): shutdown's collections do not call
/// them, though they still collect.
#[test]
fn collection_callbacks_do_not_run_at_shutdown() {
    let heap = Heap::new();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    heap.add_collect_callback(Box::new(move |_, _| c.set(c.get() + 1)));
    heap.collect(0);
    assert_eq!(calls.get(), 2, "start and stop");
    ring(&heap, 3);
    let before = DROPS.with(Cell::get);
    drop(heap);
    assert_eq!(calls.get(), 2, "no callback at shutdown");
    assert_eq!(DROPS.with(Cell::get), before + 3);
}

/// The interpreter's state, reached from finalizers through the heap's user data.
struct Interp {
    out: RefCell<Vec<String>>,
    globals: RefCell<Vec<Gc<Member>>>,
}

/// `Heap::shutdown` runs what shutdown owes while the embedder is whole: finalizers of cyclic
/// garbage reach the interpreter through the heap's user data (no thread-local), and dropping
/// the heap afterwards has nothing left to do.
#[test]
fn explicit_shutdown_runs_finalizers_that_reach_the_user_data() {
    #[derive(Trace)]
    #[reap(finalize)]
    struct Obj {
        name: &'static str,
        me: RefCell<Option<Gc<Obj>>>,
    }
    impl Finalize for Obj {
        fn finalize(this: &Gc<Self>) {
            let interp = Gc::user_data::<Interp>(this).expect("the interpreter is set");
            interp.out.borrow_mut().push(format!("del {}", this.name));
        }
    }
    let heap = Heap::new();
    heap.disable();
    let interp = Rc::new(Interp {
        out: RefCell::new(vec![]),
        globals: RefCell::new(vec![]),
    });
    assert!(heap.set_user_data(Some(interp.clone())).is_none());
    assert!(heap.user_data::<String>().is_none(), "another type");
    let obj = heap.alloc(Obj {
        name: "cyclic",
        me: RefCell::new(None),
    });
    *obj.me.borrow_mut() = Some(obj.clone());
    let registered = Rc::new(Cell::new(false));
    let r = registered.clone();
    let keep = heap.alloc(String::from("kept"));
    let _f = reap::finalize(&keep, move || r.set(true));
    drop(obj);
    assert_eq!(heap.shutdown(), 1, "only `keep`, held here, is left");
    assert_eq!(*interp.out.borrow(), ["del cyclic"]);
    assert!(registered.get(), "pending finalize registrations ran");
    assert_eq!(*keep, "kept", "the heap stays usable");
    drop(keep);
    assert_eq!(heap.live_objects(), 0);
    drop(heap);
    assert_eq!(Rc::strong_count(&interp), 1, "the heap let go of its data");
}

/// User data that holds handles into its own heap is dropped at shutdown after the finalizers
/// owed, and what it held is freed then: no object is reported as still alive.
#[test]
fn user_data_holding_handles_is_released_at_shutdown() {
    let heap = Heap::new();
    let seen: Rc<RefCell<Vec<Unraisable>>> = Rc::default();
    let s = seen.clone();
    heap.set_unraisable_hook(Some(Box::new(move |u: &Unraisable| {
        s.borrow_mut().push(u.clone())
    })));
    let interp = Rc::new(Interp {
        out: RefCell::new(vec![]),
        globals: RefCell::new(vec![]),
    });
    let before = DELS.with(Cell::get);
    interp.globals.borrow_mut().push(heap.alloc(Member {
        next: RefCell::new(None),
    }));
    heap.set_user_data(Some(interp));
    drop(heap);
    assert!(seen.borrow().is_empty(), "{:?}", seen.borrow());
    assert_eq!(DELS.with(Cell::get), before + 1);
}
