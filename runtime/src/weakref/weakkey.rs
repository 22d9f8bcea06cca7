//! `WeakKeyMap` and `WeakSet` (SEMANTICS 4.6, Python's `WeakKeyDictionary` and `WeakSet`): keys
//! held weakly, compared by their referents' `Eq` / `Hash` while alive; an entry disappears when
//! its key dies.
//!
//! Entries live in a `hashbrown::HashTable` under the hash the key had when inserted (a weak
//! reference keeps its hash after death), each with a weak reference whose callback removes that
//! very entry. While any iteration is in progress, deaths only queue their removal, applied when
//! the last iteration ends or at the next mutation; iteration works on a snapshot, never fails,
//! and never yields a dead key.

use std::cell::{Cell, RefCell};
use std::hash::Hash;
use std::rc::{Rc, Weak as RcWeak};

use hashbrown::HashTable;

use crate::local::weak::hash_value;
use crate::{Gc, Weak};

/// How a [`WeakKeyMap`] or [`WeakSet`] compares keys.
///
/// Besides [`ByValue`] and [`ByIdentity`], an interpreter implements it to compare keys with the
/// language's own `__hash__` and `__eq__` (reaching the interpreter through
/// [`Gc::user_data`]), and makes the map with [`WeakKeyMap::with_key_eq`]. Both functions are
/// user code: they run with no borrow of the map held, may use the map, and a panic in them
/// (an unhashable key, say) reaches the caller of the map operation.
///
/// ```
/// use reap::{ByIdentity, Gc, Heap, KeyEq, WeakKeyMap};
///
/// /// Keys equal when their lengths are: a stand-in for a language's `__eq__`.
/// struct ByLen;
/// impl KeyEq<String> for ByLen {
///     fn hash(key: &Gc<String>) -> u64 { key.len() as u64 }
///     fn eq(a: &Gc<String>, b: &Gc<String>) -> bool { a.len() == b.len() }
/// }
///
/// let heap = Heap::new();
/// let m: WeakKeyMap<String, u8, ByLen> = WeakKeyMap::with_key_eq();
/// let (ab, cd) = (heap.alloc(String::from("ab")), heap.alloc(String::from("cd")));
/// m.insert(&ab, 1);
/// assert_eq!(m.get(&cd), Some(1), "an equal key finds the entry");
/// ```
pub trait KeyEq<K: ?Sized> {
    /// The key's hash (of a live key).
    fn hash(key: &Gc<K>) -> u64;
    /// Whether two live keys are the same key.
    fn eq(a: &Gc<K>, b: &Gc<K>) -> bool;
}

/// Keys compare by their referents' `Eq` and `Hash` while alive (`WeakKeyDictionary`).
pub struct ByValue;

impl<K: ?Sized + Hash + Eq> KeyEq<K> for ByValue {
    fn hash(key: &Gc<K>) -> u64 {
        hash_value(&**key)
    }
    fn eq(a: &Gc<K>, b: &Gc<K>) -> bool {
        **a == **b
    }
}

/// Keys compare by object identity (`a is b`): per-object side data for any type.
pub struct ByIdentity;

impl<K: ?Sized> KeyEq<K> for ByIdentity {
    fn hash(key: &Gc<K>) -> u64 {
        hash_value(&(Gc::as_ptr(key) as *const u8 as usize))
    }
    fn eq(a: &Gc<K>, b: &Gc<K>) -> bool {
        Gc::ptr_eq(a, b)
    }
}

struct Entry<K: ?Sized + 'static, V> {
    hash: u64,
    key: Weak<K>,
    value: V,
}

struct Inner<K: ?Sized + 'static, V> {
    table: RefCell<HashTable<Entry<K, V>>>,
    /// Removals queued while iterations run: (hash, the key's weak reference that died).
    pending: RefCell<Vec<(u64, Weak<K>)>>,
    iterating: Cell<usize>,
}

impl<K: ?Sized + 'static, V> Inner<K, V> {
    fn remove_entry_of(&self, hash: u64, dead: &Weak<K>) {
        let removed = match self
            .table
            .borrow_mut()
            .find_entry(hash, |e| e.key.ptr_eq(dead))
        {
            Ok(entry) => Some(entry.remove().0),
            Err(_) => None,
        };
        drop(removed);
    }

    fn commit_pending(&self) {
        if self.iterating.get() > 0 {
            return;
        }
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for (h, w) in pending {
            self.remove_entry_of(h, &w);
        }
    }
}

/// A map with weakly held keys (Python's `WeakKeyDictionary`), for per-object side data.
///
/// ```
/// use reap::{Heap, WeakKeyMap};
///
/// let heap = Heap::new();
/// let notes: WeakKeyMap<String, &str> = WeakKeyMap::new();
/// let obj = heap.alloc(String::from("an object"));
/// notes.insert(&obj, "seen once");
/// assert_eq!(notes.get(&obj), Some("seen once"));
/// drop(obj);
/// assert!(notes.is_empty());
/// ```
///
/// `WeakKeyMap<K, V, ByIdentity>` (made by [`WeakKeyMap::by_identity`]) keys by object identity
/// instead, for any `K`: what an interpreter uses to hang side data on objects.
pub struct WeakKeyMap<K: ?Sized + 'static, V: Clone + 'static, E = ByValue> {
    inner: Rc<Inner<K, V>>,
    _eq: std::marker::PhantomData<E>,
}

impl<K: ?Sized + Hash + Eq + 'static, V: Clone + 'static> Default for WeakKeyMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: ?Sized + Hash + Eq + 'static, V: Clone + 'static> WeakKeyMap<K, V> {
    /// An empty map keyed by value.
    pub fn new() -> Self {
        Self::empty()
    }
}

impl<K: ?Sized + 'static, V: Clone + 'static> WeakKeyMap<K, V, ByIdentity> {
    /// An empty map keyed by object identity.
    ///
    /// ```
    /// use reap::{Heap, WeakKeyMap};
    ///
    /// let heap = Heap::new();
    /// let side: WeakKeyMap<f64, u32, _> = WeakKeyMap::by_identity();
    /// let (x, y) = (heap.alloc(1.5_f64), heap.alloc(1.5_f64));
    /// side.insert(&x, 1);
    /// assert_eq!(side.get(&x), Some(1));
    /// assert_eq!(side.get(&y), None, "equal but not the same object");
    /// ```
    pub fn by_identity() -> Self {
        Self::empty()
    }
}

impl<K: ?Sized + 'static, V: Clone + 'static, E: KeyEq<K>> WeakKeyMap<K, V, E> {
    /// An empty map whose keys compare by `E` (see [`KeyEq`]).
    pub fn with_key_eq() -> Self {
        Self::empty()
    }

    fn empty() -> Self {
        WeakKeyMap {
            inner: Rc::new(Inner {
                table: RefCell::new(HashTable::new()),
                pending: RefCell::new(Vec::new()),
                iterating: Cell::new(0),
            }),
            _eq: std::marker::PhantomData,
        }
    }

    /// The stored weak reference of the entry whose key equals `key`. The keys' `Eq` is user
    /// code, so it runs with no borrow of the table held (it may even use this map).
    fn find_weak(&self, hash: u64, key: &Gc<K>) -> Option<Weak<K>> {
        let candidates: Vec<Weak<K>> = self
            .inner
            .table
            .borrow()
            .iter_hash(hash)
            .map(|e| e.key.clone())
            .collect();
        candidates
            .into_iter()
            .find(|w| w.upgrade().is_some_and(|k| E::eq(&k, key)))
    }

    /// Maps `key` (held weakly) to `value`; returns the previous value for an equal key.
    pub fn insert(&self, key: &Gc<K>, value: V) -> Option<V> {
        self.inner.commit_pending();
        let hash = E::hash(key);
        if let Some(w) = self.find_weak(hash, key) {
            let mut table = self.inner.table.borrow_mut();
            if let Some(e) = table.find_mut(hash, |e| e.key.ptr_eq(&w)) {
                return Some(std::mem::replace(&mut e.value, value));
            }
        }
        // Made with no borrow held: allocating may run a collection, and so callbacks.
        let owner: RcWeak<Inner<K, V>> = Rc::downgrade(&self.inner);
        let weak = Weak::with_untraced_callback(key, move |dead: &Weak<K>| {
            if let Some(inner) = owner.upgrade() {
                if inner.iterating.get() > 0 {
                    inner.pending.borrow_mut().push((hash, dead.clone()));
                } else {
                    inner.remove_entry_of(hash, dead);
                }
            }
        });
        self.inner.table.borrow_mut().insert_unique(
            hash,
            Entry {
                hash,
                key: weak,
                value,
            },
            |e| e.hash,
        );
        None
    }

    /// The value for a key equal to `key`.
    pub fn get(&self, key: &Gc<K>) -> Option<V> {
        let hash = E::hash(key);
        let w = self.find_weak(hash, key)?;
        let table = self.inner.table.borrow();
        table
            .find(hash, |e| e.key.ptr_eq(&w))
            .map(|e| e.value.clone())
    }

    /// Whether a live key equal to `key` is in the map.
    pub fn contains_key(&self, key: &Gc<K>) -> bool {
        self.get(key).is_some()
    }

    /// Removes the entry for a key equal to `key`, returning its value (`pop`).
    pub fn remove(&self, key: &Gc<K>) -> Option<V> {
        self.inner.commit_pending();
        let hash = E::hash(key);
        let w = self.find_weak(hash, key)?;
        let removed = match self
            .inner
            .table
            .borrow_mut()
            .find_entry(hash, |e| e.key.ptr_eq(&w))
        {
            Ok(entry) => Some(entry.remove().0),
            Err(_) => None,
        };
        removed.map(|e| e.value)
    }

    /// The value for `key`, or `value` inserted for it (`setdefault`).
    pub fn get_or_insert(&self, key: &Gc<K>, value: V) -> V {
        match self.get(key) {
            Some(v) => v,
            None => {
                self.insert(key, value.clone());
                value
            }
        }
    }

    /// Inserts every pair (`update`).
    pub fn extend<'a>(&self, pairs: impl IntoIterator<Item = (&'a Gc<K>, V)>) {
        for (k, v) in pairs {
            self.insert(k, v);
        }
    }

    /// Keeps only the entries for which `f` returns true.
    pub fn retain(&self, mut f: impl FnMut(&Gc<K>, &V) -> bool) {
        for (k, v) in self.iter() {
            if !f(&k, &v) {
                self.remove(&k);
            }
        }
    }

    /// Removes every entry.
    pub fn clear(&self) {
        let old = std::mem::take(&mut *self.inner.table.borrow_mut());
        self.inner.pending.borrow_mut().clear();
        drop(old);
    }

    /// The number of entries with live keys; removals queued during iteration are not counted.
    pub fn len(&self) -> usize {
        let pending = self.inner.pending.borrow().len();
        self.inner.table.borrow().len().saturating_sub(pending)
    }

    /// Whether no entry has a live key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live entries, as of now. While the iterator lives, deaths only queue their removal.
    pub fn iter(&self) -> WeakKeyIter<K, V> {
        let snapshot: Vec<(Weak<K>, V)> = self
            .inner
            .table
            .borrow()
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        self.inner.iterating.set(self.inner.iterating.get() + 1);
        WeakKeyIter {
            inner: self.inner.clone(),
            entries: snapshot.into_iter(),
        }
    }

    /// The live keys.
    pub fn keys(&self) -> impl Iterator<Item = Gc<K>> {
        self.iter().map(|(k, _)| k)
    }

    /// The values of the entries with live keys.
    pub fn values(&self) -> impl Iterator<Item = V> {
        self.iter().map(|(_, v)| v)
    }
}

/// An iteration over a [`WeakKeyMap`] (or a [`WeakSet`]): yields the entries whose key is alive
/// when reached.
pub struct WeakKeyIter<K: ?Sized + 'static, V: 'static> {
    inner: Rc<Inner<K, V>>,
    entries: std::vec::IntoIter<(Weak<K>, V)>,
}

impl<K: ?Sized + 'static, V: 'static> Iterator for WeakKeyIter<K, V> {
    type Item = (Gc<K>, V);

    fn next(&mut self) -> Option<(Gc<K>, V)> {
        for (k, v) in self.entries.by_ref() {
            if let Some(k) = k.upgrade() {
                return Some((k, v));
            }
        }
        None
    }
}

impl<K: ?Sized + 'static, V: 'static> Drop for WeakKeyIter<K, V> {
    fn drop(&mut self) {
        for _ in self.entries.by_ref() {}
        self.inner.iterating.set(self.inner.iterating.get() - 1);
        self.inner.commit_pending();
    }
}

/// A set of weakly held items (Python's `WeakSet`): an item disappears when it dies.
///
/// ```
/// use reap::{Heap, WeakSet};
///
/// let heap = Heap::new();
/// let subscribers: WeakSet<String> = WeakSet::new();
/// let a = heap.alloc(String::from("a"));
/// subscribers.insert(&a);
/// assert!(subscribers.contains(&a));
/// drop(a);
/// assert!(subscribers.is_empty());
/// ```
pub struct WeakSet<K: ?Sized + 'static, E = ByValue> {
    map: WeakKeyMap<K, (), E>,
}

impl<K: ?Sized + Hash + Eq + 'static> Default for WeakSet<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: ?Sized + Hash + Eq + 'static> WeakSet<K> {
    /// An empty set.
    pub fn new() -> Self {
        WeakSet {
            map: WeakKeyMap::new(),
        }
    }
}

impl<K: ?Sized + 'static, E: KeyEq<K>> WeakSet<K, E> {
    /// An empty set whose items compare by `E` (see [`KeyEq`]).
    pub fn with_key_eq() -> Self {
        WeakSet {
            map: WeakKeyMap::with_key_eq(),
        }
    }

    /// Adds `item` (held weakly); returns whether it was new.
    pub fn insert(&self, item: &Gc<K>) -> bool {
        self.map.insert(item, ()).is_none()
    }

    /// Whether a live item equal to `item` is in the set.
    pub fn contains(&self, item: &Gc<K>) -> bool {
        self.map.contains_key(item)
    }

    /// Removes an item equal to `item`; returns whether there was one.
    pub fn remove(&self, item: &Gc<K>) -> bool {
        self.map.remove(item).is_some()
    }

    /// The number of live items.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no item is alive.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Removes every item.
    pub fn clear(&self) {
        self.map.clear()
    }

    /// The live items, as of now; deaths during the iteration only queue their removal.
    pub fn iter(&self) -> impl Iterator<Item = Gc<K>> {
        self.map.keys()
    }
}

// The map owns its values and one strong handle to each key's weak-reference object (the keys
// themselves are weak: not owned, not visited), in the table and in the queue of pending
// removals. As for `WeakValueMap`: only this map traces the shared state, and a borrow active
// while tracing makes the tracer give up on the value.
// SAFETY: visits exactly the handles the map owns (see above).
unsafe impl<K: ?Sized + 'static, V: Clone + crate::Trace, E: 'static> crate::Trace
    for WeakKeyMap<K, V, E>
{
    fn trace(&self, tracer: &mut crate::Tracer<'_>) {
        // SAFETY: no user code runs while tracing, so no borrow begins meanwhile.
        let (table, pending) = unsafe {
            (
                self.inner.table.try_borrow_unguarded(),
                self.inner.pending.try_borrow_unguarded(),
            )
        };
        let (Ok(table), Ok(pending)) = (table, pending) else {
            tracer.mark_incomplete();
            return;
        };
        for e in table.iter() {
            e.key.trace(tracer);
            e.value.trace(tracer);
        }
        for (_, w) in pending.iter() {
            w.trace(tracer);
        }
    }
}

// SAFETY: as its map's.
unsafe impl<K: ?Sized + Hash + Eq + 'static> crate::Trace for WeakSet<K> {
    fn trace(&self, tracer: &mut crate::Tracer<'_>) {
        self.map.trace(tracer);
    }
}
