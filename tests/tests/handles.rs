//! Handles: the header budget, trait-object coercion and downcasting, counts, identity, Debug.

use std::cell::RefCell;

use reap::{Gc, Heap, Trace, Weak};

#[test]
#[cfg(target_pointer_width = "64")]
fn header_budget_is_32_bytes_tracked_16_untracked() {
    assert_eq!(reap::TRACKED_OVERHEAD, 32);
    assert_eq!(reap::UNTRACKED_OVERHEAD, 16);
    assert_eq!(std::mem::size_of::<Gc<u64>>(), 8);
    assert_eq!(std::mem::size_of::<Option<Gc<u64>>>(), 8);
    // Objects sit right after their bookkeeping: two back-to-back allocations of a tracked
    // 8-byte value are at least 40 bytes apart, and an untracked one's header is 16 bytes.
    let heap = Heap::new();
    #[derive(Trace)]
    struct T(Option<Gc<u64>>);
    let a = heap.alloc(T(None));
    assert!(reap::is_tracked(&a));
    let b = heap.alloc(1_u64);
    assert!(!reap::is_tracked(&b));
}

trait Object {
    fn describe(&self) -> String;
}

#[derive(Trace, Debug, PartialEq)]
struct Int(i64);
impl Object for Int {
    fn describe(&self) -> String {
        format!("int({})", self.0)
    }
}

#[derive(Trace)]
struct List(RefCell<Vec<Gc<dyn Object>>>);
impl Object for List {
    fn describe(&self) -> String {
        let items: Vec<String> = self.0.borrow().iter().map(|o| o.describe()).collect();
        format!("[{}]", items.join(", "))
    }
}

// SAFETY: a trait-object handle is a handle; the trait object's own edges are traced through
// the object's header vtable, not through the trait.
unsafe impl Trace for dyn Object {
    fn trace(&self, _: &mut reap::Tracer<'_>) {}
}

#[test]
fn trait_object_handles_coerce_and_downcast() {
    let heap = Heap::new();
    let i: Gc<dyn Object> = reap::gc_coerce!(heap.alloc(Int(3)) => dyn Object);
    let l = heap.alloc(List(RefCell::new(vec![i.clone()])));
    l.0.borrow_mut()
        .push(reap::gc_coerce!(heap.alloc(Int(4)) => dyn Object));
    let l: Gc<dyn Object> = reap::gc_coerce!(l => dyn Object);
    assert_eq!(l.describe(), "[int(3), int(4)]");
    assert!(Gc::is::<Int>(&i));
    assert!(!Gc::is::<List>(&i));
    assert!(Gc::type_name(&l).ends_with("List"));
    let l = l.downcast::<Int>().expect_err("a list is not an int");
    let back = l.downcast::<List>().ok().unwrap();
    assert_eq!(back.0.borrow().len(), 2);
    let int = i.downcast::<Int>().ok().unwrap();
    assert_eq!(*int, Int(3));
    assert_eq!(Gc::strong_count(&int), 2);
    // Weak references to trait objects.
    let d: Gc<dyn Object> = reap::gc_coerce!(int.clone() => dyn Object);
    let w = Weak::new(&d);
    assert_eq!(w.upgrade().unwrap().describe(), "int(3)");
}

#[test]
fn counts_identity_and_debug() {
    let heap = Heap::new();
    let a = heap.alloc(Int(1));
    let b = a.clone();
    let c = heap.alloc(Int(1));
    assert_eq!(Gc::strong_count(&a), 2);
    assert!(Gc::ptr_eq(&a, &b));
    assert!(!Gc::ptr_eq(&a, &c));
    assert_eq!(a, c, "PartialEq compares values, as Rc");
    assert_eq!(format!("{a:?}"), "Int(1)");
    let w = Weak::new(&a);
    assert_eq!(Gc::weak_count(&a), 1);
    assert!(format!("{w:?}").contains("Int"));
    drop((a, b));
    assert!(format!("{w:?}").contains("dead"));
    assert!(format!("{heap:?}").contains("live_objects"));
}

#[test]
fn over_aligned_and_zero_sized_values() {
    #[derive(Trace)]
    #[repr(align(64))]
    struct Big(u8, Option<Gc<u8>>);
    #[derive(Trace)]
    struct Zst;
    let heap = Heap::new();
    let inner = heap.alloc(5_u8);
    let b = heap.alloc(Big(7, Some(inner.clone())));
    assert_eq!(Gc::as_ptr(&b) as usize % 64, 0);
    assert_eq!(b.0, 7);
    let w = Weak::new(&b);
    assert!(w.is_alive());
    let z = heap.alloc(Zst);
    let z2 = z.clone();
    drop((b, z, z2, inner));
    assert!(!w.is_alive());
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn derive_covers_enums_generics_and_untracked_types() {
    #[derive(Trace)]
    enum Value<T: 'static> {
        Nil,
        Num(f64),
        Pair(Gc<Value<T>>, Gc<Value<T>>),
        Named { name: String, extra: T },
    }
    #[derive(Trace)]
    struct Plain {
        a: u32,
        b: String,
        c: Vec<(i8, bool)>,
    }
    #[derive(Trace)]
    struct Tuple(u8, Option<Gc<u8>>);
    let heap = Heap::new();
    let nil = heap.alloc(Value::<u8>::Nil);
    let num = heap.alloc(Value::<u8>::Num(1.5));
    let pair = heap.alloc(Value::Pair(nil.clone(), num.clone()));
    let named = heap.alloc(Value::Named {
        name: "x".into(),
        extra: 3_u8,
    });
    assert!(reap::is_tracked(&pair) && reap::is_tracked(&nil));
    let plain = heap.alloc(Plain {
        a: 1,
        b: "b".into(),
        c: vec![(1, true)],
    });
    assert!(
        !reap::is_tracked(&plain),
        "a type that cannot hold handles is untracked"
    );
    assert_eq!(plain.a + plain.c.len() as u32, 2);
    assert_eq!(plain.b, "b");
    let t = heap.alloc(Tuple(1, None));
    assert!(reap::is_tracked(&t));
    if let Value::Named { name, extra } = &*named {
        assert_eq!((name.as_str(), *extra), ("x", 3));
    }
    drop((nil, num));
    if let Value::Pair(a, b) = &*pair {
        assert!(matches!(**a, Value::Nil));
        assert!(matches!(**b, Value::Num(x) if x == 1.5));
    }
}

/// A type that contains itself through a container: `needs_trace` must not ask itself without
/// end (the derive counts such a field as needing tracing).
#[test]
fn derive_on_a_self_containing_type_terminates() {
    #[derive(Trace)]
    struct Tree {
        label: u32,
        kids: Vec<Tree>,
    }
    #[derive(Trace)]
    enum Expr {
        Num(i64),
        Add(Box<Expr>, Box<Expr>),
    }
    let heap = Heap::new();
    let t = heap.alloc(Tree {
        label: 1,
        kids: vec![Tree {
            label: 2,
            kids: vec![],
        }],
    });
    assert_eq!(t.kids[0].label + t.label, 3);
    let e = heap.alloc(Expr::Add(Box::new(Expr::Num(1)), Box::new(Expr::Num(2))));
    assert!(matches!(&*e, Expr::Add(..)));
    assert!(reap::is_tracked(&t), "conservatively tracked");
}

/// A `Drop` that reads another member of its garbage cycle with `Gc::try_deref` gets
/// `Reclaimed` instead of a panic once that member's value is gone; `try_clone` likewise, and
/// a handle a `Drop` kept to such a member reports `is_reclaimed`.
#[test]
fn try_deref_and_try_clone_report_a_reclaimed_value() {
    use std::rc::Rc;

    #[derive(Trace)]
    struct Member {
        name: &'static str,
        peer: RefCell<Option<Gc<Member>>>,
        #[reap(skip)]
        seen: Rc<RefCell<Vec<String>>>,
        #[reap(skip)]
        kept: Rc<RefCell<Vec<Gc<Member>>>>,
    }
    impl Drop for Member {
        fn drop(&mut self) {
            let peer = self.peer.get_mut().take().expect("linked");
            let read = match Gc::try_deref(&peer) {
                Ok(p) => format!("{} read {}", self.name, p.name),
                Err(e) => format!("{} found {e}", self.name),
            };
            self.seen.borrow_mut().push(read);
            let cloned = Gc::try_clone(&peer).is_ok();
            self.seen
                .borrow_mut()
                .push(format!("{} cloned {cloned}", self.name));
            self.kept.borrow_mut().push(peer);
        }
    }
    let heap = Heap::new();
    let seen: Rc<RefCell<Vec<String>>> = Rc::default();
    let kept: Rc<RefCell<Vec<Gc<Member>>>> = Rc::default();
    let member = |name| {
        heap.alloc(Member {
            name,
            peer: RefCell::new(None),
            seen: seen.clone(),
            kept: kept.clone(),
        })
    };
    let (a, b) = (member("a"), member("b"));
    *a.peer.borrow_mut() = Some(b.clone());
    *b.peer.borrow_mut() = Some(a.clone());
    drop((a, b));
    assert_eq!(heap.collect(2), 2);
    let seen = seen.borrow().clone();
    // Whichever drops first reads its peer; the second finds the first's value gone.
    assert_eq!(seen.len(), 4);
    assert!(
        seen[0].ends_with("read a") || seen[0].ends_with("read b"),
        "{seen:?}"
    );
    assert!(seen[1].ends_with("cloned true"));
    assert!(seen[2].ends_with("found object already reclaimed by the collector"));
    assert!(seen[3].ends_with("cloned false"));
    let zombies = std::mem::take(&mut *kept.borrow_mut());
    assert_eq!(zombies.len(), 2);
    assert!(zombies.iter().all(Gc::is_reclaimed));
    let before = heap.live_objects();
    drop(zombies);
    assert_eq!(
        before - heap.live_objects(),
        2,
        "the last handles free the reclaimed objects"
    );
}

/// Shared strings and function pointers are leaves: untracked, and usable in traced types.
#[test]
fn shared_strings_and_function_pointers_are_leaves() {
    #[derive(Trace)]
    struct Builtin {
        name: std::rc::Rc<str>,
        call: fn(i64) -> i64,
    }
    fn double(x: i64) -> i64 {
        2 * x
    }
    let heap = Heap::new();
    let f = heap.alloc(Builtin {
        name: "double".into(),
        call: double,
    });
    assert!(!reap::is_tracked(&f));
    assert_eq!((f.call)(21), 42);
    assert_eq!(&*f.name, "double");
    assert!(!reap::is_tracked(
        &heap.alloc(std::sync::Arc::<str>::from("s"))
    ));
}

/// The containers behind the `indexmap` and `smallvec` features trace their handles: a cycle
/// through an `IndexMap` value (a Python dict) or a `SmallVec` is collected; `Box<str>` is
/// traceable too.
#[test]
fn indexmap_and_smallvec_trace_their_handles() {
    use reap::indexmap::IndexMap;
    use reap::smallvec::SmallVec;
    use std::cell::RefCell;

    #[derive(Trace)]
    struct Dict {
        name: Box<str>,
        items: RefCell<IndexMap<String, Gc<Dict>>>,
        small: RefCell<SmallVec<[Gc<Dict>; 2]>>,
    }
    let heap = Heap::new();
    let new = |name: &str| {
        heap.alloc(Dict {
            name: name.into(),
            items: RefCell::new(IndexMap::new()),
            small: RefCell::new(SmallVec::new()),
        })
    };
    let (a, b, c) = (new("a"), new("b"), new("c"));
    a.items.borrow_mut().insert("b".into(), b.clone());
    b.items.borrow_mut().insert("a".into(), a.clone());
    // A small vector spilled to the heap (three items, two inline).
    c.small
        .borrow_mut()
        .extend([c.clone(), c.clone(), c.clone()]);
    assert_eq!(heap.get_referents(&a).len(), 1);
    assert_eq!(heap.get_referents(&c).len(), 3);
    assert_eq!(&*b.name, "b");
    drop((a, b, c));
    assert_eq!(heap.collect(2), 3);
    assert_eq!(heap.live_objects(), 0);
    // Leaf contents stay untracked.
    assert!(!reap::is_tracked(
        &heap.alloc(IndexMap::<String, i64>::new())
    ));
    assert!(!reap::is_tracked(&heap.alloc(SmallVec::<[u8; 4]>::new())));
}

/// `Weak::as_ptr` is the weak-reference object's identity: shared callback-less weak
/// references have one, a weak reference with a callback its own.
#[test]
fn weak_as_ptr_is_the_weak_reference_identity() {
    let heap = Heap::new();
    let obj = heap.alloc(String::from("x"));
    let (a, b) = (Weak::new(&obj), Weak::new(&obj));
    let c = Weak::with_untraced_callback(&obj, |_: &Weak<String>| {});
    assert_eq!(Weak::as_ptr(&a), Weak::as_ptr(&b));
    assert_ne!(Weak::as_ptr(&a), Weak::as_ptr(&c));
}
