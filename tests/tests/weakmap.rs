//! `WeakValueMap` (SEMANTICS 4.6): test_weakref.py's weak-valued dictionary tests.

use std::cell::RefCell;
use std::rc::Rc;

use reap::{Gc, Heap, Trace, WeakValueMap};

#[derive(Trace, PartialEq, Debug)]
struct Object(i64);

#[derive(Trace)]
struct Cyclic {
    n: i64,
    me: RefCell<Option<Gc<Cyclic>>>,
}

fn make(heap: &Heap, n: i64) -> (WeakValueMap<i64, Object>, Vec<Gc<Object>>) {
    let d = WeakValueMap::new();
    let objects: Vec<Gc<Object>> = (0..n).map(|i| heap.alloc(Object(i))).collect();
    for o in &objects {
        d.insert(o.0, o);
    }
    (d, objects)
}

/// W::test_weak_values: entries vanish with their values; a dead key is absent.
#[test]
fn w_test_weak_values() {
    let heap = Heap::new();
    let (d, mut objects) = make(&heap, 10);
    assert_eq!(d.len(), 10);
    for o in &objects {
        assert_eq!(*d.get(&o.0).unwrap(), **o);
    }
    let o = objects.pop().unwrap();
    drop(o);
    assert_eq!(d.len(), 9);
    assert!(d.get(&9).is_none(), "the dead entry is gone");
    objects.clear();
    assert_eq!(d.len(), 0);
    assert!(d.is_empty());
}

/// W::test_weak_values_destroy_while_iterating: a value dying mid-iteration is never yielded,
/// the iteration goes on, and the removal waits until the iteration ends.
#[test]
fn w_test_weak_values_destroy_while_iterating() {
    let heap = Heap::new();
    let (d, mut objects) = make(&heap, 5);
    let mut it = d.iter();
    let first = it.next().unwrap();
    // Kill an entry not yet reached.
    let victim = objects.iter().position(|o| o.0 != first.0).unwrap();
    let victim_key = objects[victim].0;
    objects.remove(victim);
    assert_eq!(d.len(), 4, "len leaves out the queued removal");
    let rest: Vec<i64> = it.by_ref().map(|(k, _)| k).collect();
    assert!(!rest.contains(&victim_key), "a dead value is never yielded");
    assert_eq!(rest.len(), 3);
    // Mutation during iteration is allowed.
    let extra = heap.alloc(Object(100));
    d.insert(100, &extra);
    drop(it);
    assert_eq!(d.len(), 5);
    assert!(d.get(&victim_key).is_none());
    drop(first);
}

/// W::test_weak_valued_len_cycles: values in cycles, a live iterator, a collection: the length
/// is 0 or 1 (the iterator's current item) and 0 once the iterator is gone.
#[test]
fn w_test_weak_valued_len_cycles() {
    let heap = Heap::new();
    let d: WeakValueMap<i64, Cyclic> = WeakValueMap::new();
    for i in 0..20 {
        let c = heap.alloc(Cyclic {
            n: i,
            me: RefCell::new(None),
        });
        *c.me.borrow_mut() = Some(c.clone());
        d.insert(i, &c);
    }
    let mut it = d.iter();
    let held = it.next();
    heap.collect(2);
    let n = d.len();
    assert!(n <= 1, "{n}");
    drop(held);
    drop(it);
    heap.collect(2);
    assert_eq!(d.len(), 0);
}

/// W::test_weak_valued_len_race: automatic collection at thresholds 1..99 while the map fills:
/// the length stays within bounds and only goes down once filling stops.
#[test]
fn w_test_weak_valued_len_race() {
    let range = if cfg!(miri) { 1..5 } else { 1..100 };
    for th in range {
        let heap = Heap::new();
        heap.set_threshold(th, 10, 10);
        let d: WeakValueMap<i64, Cyclic> = WeakValueMap::new();
        let n = 20;
        for i in 0..n {
            let c = heap.alloc(Cyclic {
                n: i,
                me: RefCell::new(None),
            });
            *c.me.borrow_mut() = Some(c.clone());
            d.insert(i, &c);
        }
        let mut last = d.len();
        assert!(last <= n as usize);
        for _ in 0..5 {
            heap.collect(0);
            let now = d.len();
            assert!(now <= last, "length grew: {last} -> {now}");
            last = now;
        }
        heap.collect(2);
        assert_eq!(d.len(), 0);
    }
}

/// W::test_weak_valued_dict_setdefault / popitem / update.
#[test]
fn w_test_weak_valued_dict_setdefault_pop_update() {
    let heap = Heap::new();
    let d: WeakValueMap<&str, Object> = WeakValueMap::new();
    let v1 = heap.alloc(Object(1));
    let v2 = heap.alloc(Object(2));
    // setdefault
    assert!(Gc::ptr_eq(&d.get_or_insert("k", &v1), &v1));
    assert!(
        Gc::ptr_eq(&d.get_or_insert("k", &v2), &v1),
        "the existing value wins"
    );
    // update
    let v3 = heap.alloc(Object(3));
    d.extend([("a", &v2), ("b", &v3)]);
    assert_eq!(d.len(), 3);
    let mut keys: Vec<&str> = d.keys().collect();
    keys.sort_unstable();
    assert_eq!(keys, ["a", "b", "k"]);
    // pop
    assert_eq!(d.remove(&"a").map(|v| v.0), Some(2));
    assert!(d.remove(&"a").is_none());
    assert_eq!(d.len(), 2);
    // A key given a new value: the old value's death does not remove the new entry.
    let old = heap.alloc(Object(7));
    d.insert("x", &old);
    let new = heap.alloc(Object(8));
    d.insert("x", &new);
    drop(old);
    assert_eq!(d.get(&"x").map(|v| v.0), Some(8));
    d.retain(|k, _| *k != "b");
    assert!(!d.contains_key(&"b"));
    d.clear();
    assert!(d.is_empty());
}

/// The cache use of the seed article: hits while a user holds the value, gone once the last
/// user lets go, without eviction.
#[test]
fn weak_value_map_as_a_cache() {
    let heap = Heap::new();
    let decoded = Rc::new(RefCell::new(0));
    let cache: WeakValueMap<String, Vec<u8>> = WeakValueMap::new();
    let load = |name: &str| -> Gc<Vec<u8>> {
        if let Some(hit) = cache.get(&name.to_string()) {
            return hit;
        }
        *decoded.borrow_mut() += 1;
        let image = heap.alloc(vec![0_u8; 1024]);
        cache.insert(name.to_string(), &image);
        image
    };
    let a = load("cat.png");
    let b = load("cat.png");
    assert!(Gc::ptr_eq(&a, &b));
    assert_eq!(*decoded.borrow(), 1);
    drop((a, b));
    assert!(cache.is_empty());
    let _c = load("cat.png");
    assert_eq!(*decoded.borrow(), 2);
}

/// A weak container can live inside a heap object (Python: a `WeakValueDictionary` attribute):
/// what it holds strongly (keys, and its entries' weak-reference objects) is traced, so an
/// object that holds its own registry in a cycle is collected, and the values, held weakly,
/// live on.
#[test]
fn weak_containers_inside_heap_objects_are_traced() {
    #[derive(Trace)]
    struct Item(u32);
    #[derive(Trace)]
    struct Owner {
        values: reap::WeakValueMap<u32, Item>,
        keys: reap::WeakKeyMap<Item, Gc<Owner>, reap::ByIdentity>,
        proxy: reap::WeakProxy<Item>,
        me: RefCell<Option<Gc<Owner>>>,
    }
    let heap = Heap::new();
    heap.disable();
    let item = heap.alloc(Item(7));
    let owner = heap.alloc(Owner {
        values: reap::WeakValueMap::new(),
        keys: reap::WeakKeyMap::by_identity(),
        proxy: reap::WeakProxy::new(&item),
        me: RefCell::new(None),
    });
    owner.values.insert(1, &item);
    // The value refers back to the owner: a cycle through the map's traced part.
    owner.keys.insert(&item, owner.clone());
    *owner.me.borrow_mut() = Some(owner.clone());
    let w = reap::Weak::new(&owner);
    drop(owner);
    // The owner, and the weak-reference objects of its two entries and of its proxy.
    assert_eq!(heap.collect(2), 4);
    assert!(w.upgrade().is_none());
    assert_eq!(item.0, 7, "held weakly: alive");
    assert_eq!(
        Gc::weak_count(&item),
        0,
        "the garbage's weak references are gone"
    );
}
