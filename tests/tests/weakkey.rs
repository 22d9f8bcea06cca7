//! `WeakKeyMap` and `WeakSet` (SEMANTICS 4.6): test_weakref.py's weak-keyed dictionary tests and
//! test_weakset.py's.

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use reap::{Gc, Heap, Trace, WeakKeyMap, WeakSet};

#[derive(Trace, PartialEq, Eq, Hash, Debug)]
struct Object(i64);

/// W::test_weak_keys: entries vanish with their keys; equal keys find the entry.
#[test]
fn w_test_weak_keys() {
    let heap = Heap::new();
    let d: WeakKeyMap<Object, i64> = WeakKeyMap::new();
    let objects: Vec<Gc<Object>> = (0..10).map(|i| heap.alloc(Object(i))).collect();
    for o in &objects {
        d.insert(o, o.0 * 10);
    }
    assert_eq!(d.len(), 10);
    // An equal key (another object) finds the entry: keys compare by value while alive.
    let twin = heap.alloc(Object(7));
    assert_eq!(d.get(&twin), Some(70));
    let mut objects = objects;
    objects.truncate(5);
    assert_eq!(d.len(), 5);
    assert_eq!(d.get(&twin), None, "its key died");
    drop(objects);
    assert!(d.is_empty());
}

/// W::test_weak_keys_destroy_while_iterating.
#[test]
fn w_test_weak_keys_destroy_while_iterating() {
    let heap = Heap::new();
    let d: WeakKeyMap<Object, ()> = WeakKeyMap::new();
    let mut objects: Vec<Gc<Object>> = (0..5).map(|i| heap.alloc(Object(i))).collect();
    for o in &objects {
        d.insert(o, ());
    }
    let mut it = d.iter();
    let (first, ()) = it.next().unwrap();
    let victim = objects.iter().position(|o| o.0 != first.0).unwrap();
    let victim_value = objects[victim].0;
    objects.remove(victim);
    assert_eq!(d.len(), 4);
    let rest: Vec<i64> = it.by_ref().map(|(k, ())| k.0).collect();
    assert!(!rest.contains(&victim_value));
    // Mutating during iteration is fine.
    let extra = heap.alloc(Object(99));
    d.insert(&extra, ());
    drop(it);
    assert_eq!(d.len(), 5);
    drop(first);
}

#[derive(Trace)]
struct CyclicKey {
    n: i64,
    me: RefCell<Option<Gc<CyclicKey>>>,
}
impl PartialEq for CyclicKey {
    fn eq(&self, o: &Self) -> bool {
        self.n == o.n
    }
}
impl Eq for CyclicKey {}
impl Hash for CyclicKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.n.hash(h)
    }
}

/// W::test_weak_keyed_len_cycles and S::test_len_cycles.
#[test]
fn w_test_weak_keyed_len_cycles_and_s_test_len_cycles() {
    let heap = Heap::new();
    let d: WeakKeyMap<CyclicKey, i64> = WeakKeyMap::new();
    let s: WeakSet<CyclicKey> = WeakSet::new();
    for i in 0..20 {
        let k = heap.alloc(CyclicKey {
            n: i,
            me: RefCell::new(None),
        });
        *k.me.borrow_mut() = Some(k.clone());
        d.insert(&k, i);
        s.insert(&k);
    }
    let mut it = d.iter();
    let held = it.next();
    heap.collect(2);
    assert!(d.len() <= 1 && s.len() <= 1, "{} {}", d.len(), s.len());
    drop(held);
    drop(it);
    heap.collect(2);
    assert_eq!(d.len(), 0);
    assert_eq!(s.len(), 0);
}

thread_local!(static DROPPED_BY_EQ: RefCell<Option<Gc<Killer>>> = const { RefCell::new(None) });

#[derive(Trace)]
struct Killer(i64);
impl PartialEq for Killer {
    fn eq(&self, o: &Self) -> bool {
        // Kills another key of the map while the map compares keys.
        DROPPED_BY_EQ.with(|d| d.borrow_mut().take());
        self.0 == o.0
    }
}
impl Eq for Killer {}
impl Hash for Killer {
    fn hash<H: Hasher>(&self, h: &mut H) {
        0_u8.hash(h) // every key in one bucket, so lookups compare
    }
}

/// W::test_weak_keyed_cascading_deletes: a key's `Eq` kills another key during a removal: no
/// error, and the map ends empty.
#[test]
fn w_test_weak_keyed_cascading_deletes() {
    let heap = Heap::new();
    let d: WeakKeyMap<Killer, i64> = WeakKeyMap::new();
    let a = heap.alloc(Killer(1));
    let b = heap.alloc(Killer(2));
    d.insert(&a, 1);
    d.insert(&b, 2);
    DROPPED_BY_EQ.with(|k| *k.borrow_mut() = Some(b));
    let mut rounds = 0;
    while !d.is_empty() {
        rounds += 1;
        let k = d.keys().next().unwrap();
        d.remove(&k);
        assert!(rounds <= 2, "looped");
    }
    assert!(rounds >= 1);
    assert_eq!(d.len(), 0);
    drop(a);
}

/// W::test_weak_keyed_dict_setdefault / update.
#[test]
fn w_test_weak_keyed_dict_setdefault_update() {
    let heap = Heap::new();
    let d: WeakKeyMap<Object, Rc<str>> = WeakKeyMap::new();
    let k = heap.alloc(Object(1));
    assert_eq!(&*d.get_or_insert(&k, "v1".into()), "v1");
    assert_eq!(&*d.get_or_insert(&k, "v2".into()), "v1");
    let k2 = heap.alloc(Object(2));
    d.extend([(&k2, Rc::from("two"))]);
    assert_eq!(d.len(), 2);
    assert_eq!(d.insert(&k2, "deux".into()).as_deref(), Some("two"));
    assert_eq!(d.remove(&k).as_deref(), Some("v1"));
    d.retain(|_, _| false);
    assert!(d.is_empty());
}

/// S::test_weak_destroy_while_iterating / test_weak_destroy_and_mutate_while_iterating.
#[test]
fn s_test_weak_destroy_and_mutate_while_iterating() {
    let heap = Heap::new();
    let s: WeakSet<Object> = WeakSet::new();
    let mut items: Vec<Gc<Object>> = (0..10).map(|i| heap.alloc(Object(i))).collect();
    for i in &items {
        s.insert(i);
    }
    let mut it = s.iter();
    let first = it.next().unwrap();
    items.retain(|i| i.0 == first.0 || i.0 % 2 == 0);
    let rest: Vec<i64> = it.by_ref().map(|i| i.0).collect();
    assert!(rest.iter().all(|v| items.iter().any(|i| i.0 == *v)));
    let extra = heap.alloc(Object(100));
    assert!(s.insert(&extra));
    assert!(!s.insert(&extra), "already there");
    drop(it);
    assert_eq!(s.len(), items.len() + 1);
    assert!(s.remove(&extra));
    s.clear();
    assert!(s.is_empty());
    drop(first);
}

/// Keying by object identity: per-object side data for any type, trait objects included.
#[test]
fn weak_key_map_by_identity_for_side_data() {
    use reap::ByIdentity;
    use std::any::Any;
    let heap = Heap::new();
    let side: WeakKeyMap<dyn Any, &str, ByIdentity> = WeakKeyMap::by_identity();
    let a: Gc<dyn Any> = reap::gc_coerce!(heap.alloc(Object(1)) => dyn Any);
    let b: Gc<dyn Any> = reap::gc_coerce!(heap.alloc(Object(1)) => dyn Any);
    side.insert(&a, "a's data");
    side.insert(&b, "b's data");
    assert_eq!(side.len(), 2, "equal values, different objects");
    assert_eq!(side.get(&a), Some("a's data"));
    assert_eq!(side.get(&b.clone()), Some("b's data"));
    drop(a);
    assert_eq!(side.len(), 1);
    drop(b);
    assert!(side.is_empty());
}

/// W::test_weak_keyed_len_race and S::test_len_race: automatic collection at thresholds 1..99
/// while cyclic keys are added: the length stays within bounds and never grows while only
/// collections run.
#[test]
fn w_test_weak_keyed_len_race_and_s_test_len_race() {
    let range = if cfg!(miri) { 1..4 } else { 1..100 };
    for th in range {
        let heap = Heap::new();
        heap.set_threshold(th, 10, 10);
        let d: WeakKeyMap<CyclicKey, i64> = WeakKeyMap::new();
        let s: WeakSet<CyclicKey> = WeakSet::new();
        let n = 20;
        for i in 0..n {
            let k = heap.alloc(CyclicKey {
                n: i,
                me: RefCell::new(None),
            });
            *k.me.borrow_mut() = Some(k.clone());
            d.insert(&k, i);
            s.insert(&k);
        }
        let (mut dl, mut sl) = (d.len(), s.len());
        assert!(dl <= n as usize && sl <= n as usize);
        for _ in 0..5 {
            heap.collect(0);
            assert!(d.len() <= dl && s.len() <= sl, "length grew");
            (dl, sl) = (d.len(), s.len());
        }
        heap.collect(2);
        assert_eq!((d.len(), s.len()), (0, 0));
    }
}
