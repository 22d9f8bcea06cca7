//! What `collect` returns when weak references take part (SEMANTICS 2.8), against CPython
//! 3.11–3.13, which counts every weak-reference object of the garbage (it tracks all of them)
//! and every weak reference that dies as its callback runs during the collection
//! (`handle_weakrefs` adds them). Each test is the reap form of a line of this program, whose
//! output `python3` gives as `wvd 6`, `wkd 6`, `finalize 6`, `plain ref in garbage 6`,
//! `ref with callback held outside 3`:
//!
//! ```python
//! import gc, weakref
//! class C: pass
//! gc.collect(); gc.disable()
//! d = weakref.WeakValueDictionary()
//! for i in range(3):
//!     c = C(); c.me = c; d[i] = c
//! del c
//! print("wvd", gc.collect())
//! k = weakref.WeakKeyDictionary()
//! for i in range(3):
//!     c = C(); c.me = c; k[c] = i
//! del c
//! print("wkd", gc.collect())
//! for i in range(3):
//!     c = C(); c.me = c; weakref.finalize(c, print, "fin")
//! del c
//! print("finalize", gc.collect())
//! for i in range(3):
//!     c = C(); c.me = c; c.w = weakref.ref(c)
//! del c
//! print("plain ref in garbage", gc.collect())
//! keep = []
//! for i in range(3):
//!     c = C(); c.me = c; keep.append(weakref.ref(c, lambda w: None))
//! del c
//! print("ref with callback held outside", gc.collect())
//! ```

use std::cell::{Cell, RefCell};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use reap::{Gc, Heap, Trace, Weak, WeakKeyMap, WeakValueMap};

/// Python's `C` with `c.me = c` (and, for one test, `c.w = weakref.ref(c)`).
#[derive(Trace, Default)]
struct C {
    me: RefCell<Option<Gc<C>>>,
    w: RefCell<Option<Weak<C>>>,
}

impl PartialEq for C {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}
impl Eq for C {}
impl Hash for C {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(self, state)
    }
}

fn self_cycle(heap: &Heap) -> Gc<C> {
    let c = heap.alloc(C::default());
    *c.me.borrow_mut() = Some(c.clone());
    c
}

fn quiet_heap() -> Heap {
    let heap = Heap::new();
    heap.disable();
    heap
}

#[test]
fn weak_value_map_entries_of_cyclic_values_count_with_their_weak_references() {
    let heap = quiet_heap();
    let d: WeakValueMap<i32, C> = WeakValueMap::new();
    for i in 0..3 {
        d.insert(i, &self_cycle(&heap));
    }
    assert_eq!(heap.collect(2), 6, "python3 prints `wvd 6`");
    assert!(d.is_empty());
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn weak_key_map_entries_of_cyclic_keys_count_with_their_weak_references() {
    let heap = quiet_heap();
    let k: WeakKeyMap<C, i32> = WeakKeyMap::new();
    for i in 0..3 {
        k.insert(&self_cycle(&heap), i);
    }
    assert_eq!(heap.collect(2), 6, "python3 prints `wkd 6`");
    assert!(k.is_empty());
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn finalize_on_cyclic_objects_counts_its_weak_references() {
    let heap = quiet_heap();
    let ran = Rc::new(Cell::new(0));
    for _ in 0..3 {
        let r = ran.clone();
        // The registration stays alive by itself, as CPython's `finalize` objects do.
        let _registration = reap::finalize(&self_cycle(&heap), move || r.set(r.get() + 1));
    }
    assert_eq!(heap.collect(2), 6, "python3 prints `finalize 6`");
    assert_eq!(ran.get(), 3);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn callback_less_weak_reference_held_by_garbage_counts_with_it() {
    let heap = quiet_heap();
    for _ in 0..3 {
        let c = self_cycle(&heap);
        *c.w.borrow_mut() = Some(Weak::new(&c));
    }
    assert_eq!(
        heap.collect(2),
        6,
        "python3 prints `plain ref in garbage 6`"
    );
    assert_eq!(heap.live_objects(), 0);
}

/// `b = A(); a = []; a.append(a); a.append(weakref.ref(b)); del a; gc.collect()` → 2 in
/// python3: the weak reference held only by the garbage is garbage too, though its referent
/// lives on; afterwards `getweakrefcount(b)` is 0.
#[test]
fn callback_less_weak_reference_to_a_live_object_held_by_garbage_counts_with_it() {
    let heap = quiet_heap();
    let live = self_cycle(&heap);
    for _ in 0..3 {
        let c = self_cycle(&heap);
        *c.w.borrow_mut() = Some(Weak::new(&live));
    }
    assert_eq!(
        Gc::weak_count(&live),
        1,
        "the three share one weak reference"
    );
    assert_eq!(
        heap.collect(2),
        4,
        "three garbage objects and the weak reference"
    );
    assert_eq!(Gc::weak_count(&live), 0);
    assert_eq!(heap.live_objects(), 1);
    let w = Weak::new(&live);
    assert!(w.upgrade().is_some(), "a new shared weak reference");
}

#[test]
fn weak_reference_with_callback_held_outside_is_not_counted() {
    let heap = quiet_heap();
    let fired = Rc::new(Cell::new(0));
    let keep: Vec<Weak<C>> = (0..3)
        .map(|_| {
            let f = fired.clone();
            Weak::with_untraced_callback(&self_cycle(&heap), move |_: &Weak<C>| f.set(f.get() + 1))
        })
        .collect();
    assert_eq!(
        heap.collect(2),
        3,
        "python3 prints `ref with callback held outside 3`"
    );
    assert_eq!(fired.get(), 3);
    assert!(keep.iter().all(|w| w.upgrade().is_none()));
}
