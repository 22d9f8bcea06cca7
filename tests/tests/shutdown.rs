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
