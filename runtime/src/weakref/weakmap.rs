//! `WeakValueMap` (SEMANTICS 4.6, Python's `WeakValueDictionary`): a map whose values are held
//! weakly, whose entries disappear when their value dies.
//!
//! Each entry's weak reference carries a callback that removes the entry, if it is still the
//! entry that weak reference made (a key may have been given a new value since). While any
//! iteration is in progress, deaths only queue their removal; the queue is applied when the last
//! iteration ends or at the next mutation. Iteration works on a snapshot of the entries taken
//! when it starts, so it never fails because the map changed, and never yields a dead value.

use std::cell::{Cell, RefCell};
use std::hash::Hash;
use std::rc::{Rc, Weak as RcWeak};

use hashbrown::HashMap;

use crate::{Gc, Weak};

struct Inner<K, V: ?Sized + 'static> {
    map: RefCell<HashMap<K, Weak<V>>>,
    /// Removals queued while iterations run: (key, the weak reference that died).
    pending: RefCell<Vec<(K, Weak<V>)>>,
    iterating: Cell<usize>,
}

impl<K: Hash + Eq + Clone + 'static, V: ?Sized + 'static> Inner<K, V> {
    /// Removes `key` if it still maps to `dead`.
    fn remove_if_same(&self, key: &K, dead: &Weak<V>) {
        let mut map = self.map.borrow_mut();
        if map.get(key).is_some_and(|w| w.ptr_eq(dead)) {
            let entry = map.remove(key);
            drop(map);
            drop(entry);
        }
    }

    fn commit_pending(&self) {
        if self.iterating.get() > 0 {
            return;
        }
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for (k, w) in pending {
            self.remove_if_same(&k, &w);
        }
    }
}

/// A map from keys to weakly held values (Python's `WeakValueDictionary`).
///
/// ```
/// use reap::{Heap, WeakValueMap};
///
/// let heap = Heap::new();
/// let cache: WeakValueMap<&str, String> = WeakValueMap::new();
/// let image = heap.alloc(String::from("decoded pixels"));
/// cache.insert("cat.png", &image);
/// assert_eq!(cache.get(&"cat.png").as_deref().map(String::as_str), Some("decoded pixels"));
/// drop(image); // the last user lets go: the entry goes, no eviction needed
/// assert!(cache.get(&"cat.png").is_none());
/// assert!(cache.is_empty());
/// ```
pub struct WeakValueMap<K, V: ?Sized + 'static> {
    inner: Rc<Inner<K, V>>,
}

impl<K: Hash + Eq + Clone + 'static, V: ?Sized + 'static> Default for WeakValueMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq + Clone + 'static, V: ?Sized + 'static> WeakValueMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        WeakValueMap {
            inner: Rc::new(Inner {
                map: RefCell::new(HashMap::new()),
                pending: RefCell::new(Vec::new()),
                iterating: Cell::new(0),
            }),
        }
    }

    fn weak_for(&self, key: &K, value: &Gc<V>) -> Weak<V> {
        let owner: RcWeak<Inner<K, V>> = Rc::downgrade(&self.inner);
        let key = key.clone();
        Weak::with_untraced_callback(value, move |dead: &Weak<V>| {
            if let Some(inner) = owner.upgrade() {
                if inner.iterating.get() > 0 {
                    // The key's `Clone` is user code: run it before borrowing.
                    let entry = (key.clone(), dead.clone());
                    inner.pending.borrow_mut().push(entry);
                } else {
                    inner.remove_if_same(&key, dead);
                }
            }
        })
    }

    /// Maps `key` to `value` (held weakly); returns the previous live value.
    pub fn insert(&self, key: K, value: &Gc<V>) -> Option<Gc<V>> {
        self.inner.commit_pending();
        let w = self.weak_for(&key, value);
        let old = self.inner.map.borrow_mut().insert(key, w);
        old.and_then(|w| w.upgrade())
    }

    /// The live value for `key`.
    pub fn get(&self, key: &K) -> Option<Gc<V>> {
        let w = self.inner.map.borrow().get(key).cloned();
        w.and_then(|w| w.upgrade())
    }

    /// Whether `key` maps to a live value.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Removes `key`, returning its live value (`pop`).
    pub fn remove(&self, key: &K) -> Option<Gc<V>> {
        self.inner.commit_pending();
        let w = self.inner.map.borrow_mut().remove(key);
        w.and_then(|w| w.upgrade())
    }

    /// The live value for `key`, or `value` inserted for it (`setdefault`).
    pub fn get_or_insert(&self, key: K, value: &Gc<V>) -> Gc<V> {
        match self.get(&key) {
            Some(v) => v,
            None => {
                self.insert(key, value);
                value.clone()
            }
        }
    }

    /// Inserts every pair (`update`).
    pub fn extend<'a>(&self, pairs: impl IntoIterator<Item = (K, &'a Gc<V>)>) {
        for (k, v) in pairs {
            self.insert(k, v);
        }
    }

    /// Keeps only the entries for which `f` returns true.
    pub fn retain(&self, mut f: impl FnMut(&K, &Gc<V>) -> bool) {
        for (k, v) in self.iter() {
            if !f(&k, &v) {
                self.remove(&k);
            }
        }
    }

    /// Removes every entry.
    pub fn clear(&self) {
        let old = std::mem::take(&mut *self.inner.map.borrow_mut());
        self.inner.pending.borrow_mut().clear();
        drop(old);
    }

    /// The number of entries whose value is alive; removals queued during iteration are not
    /// counted.
    pub fn len(&self) -> usize {
        let pending = self.inner.pending.borrow().len();
        self.inner.map.borrow().len().saturating_sub(pending)
    }

    /// Whether no entry has a live value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live entries, as of now. While the iterator lives, deaths only queue their removal.
    pub fn iter(&self) -> Iter<K, V> {
        let snapshot: Vec<(K, Weak<V>)> = self
            .inner
            .map
            .borrow()
            .iter()
            .map(|(k, w)| (k.clone(), w.clone()))
            .collect();
        self.inner.iterating.set(self.inner.iterating.get() + 1);
        Iter {
            inner: self.inner.clone(),
            entries: snapshot.into_iter(),
        }
    }

    /// The keys of the live entries.
    pub fn keys(&self) -> impl Iterator<Item = K> {
        self.iter().map(|(k, _)| k)
    }

    /// The live values.
    pub fn values(&self) -> impl Iterator<Item = Gc<V>> {
        self.iter().map(|(_, v)| v)
    }
}

/// An iteration over a [`WeakValueMap`]: yields (key, value) for entries whose value is alive
/// when reached.
pub struct Iter<K: Hash + Eq + Clone + 'static, V: ?Sized + 'static> {
    inner: Rc<Inner<K, V>>,
    entries: std::vec::IntoIter<(K, Weak<V>)>,
}

impl<K: Hash + Eq + Clone + 'static, V: ?Sized + 'static> Iterator for Iter<K, V> {
    type Item = (K, Gc<V>);

    fn next(&mut self) -> Option<(K, Gc<V>)> {
        for (k, w) in self.entries.by_ref() {
            if let Some(v) = w.upgrade() {
                return Some((k, v));
            }
        }
        None
    }
}

impl<K: Hash + Eq + Clone + 'static, V: ?Sized + 'static> Drop for Iter<K, V> {
    fn drop(&mut self) {
        // Drop the snapshot's weak references first: their callbacks may not run any more.
        for _ in self.entries.by_ref() {}
        self.inner.iterating.set(self.inner.iterating.get() - 1);
        self.inner.commit_pending();
    }
}

// The map owns its keys and one strong handle to each entry's weak-reference object (the values
// are weak: not owned, not visited), in the table and in the queue of pending removals. The
// shared state is owned by this map alone among traced values: the iterators that also hold it
// are not `Trace`. The cells are read without guards: no user code runs while tracing, so no
// borrow can begin meanwhile; one that is active (a key's `Hash`/`Eq` is running under it and
// started a collection) makes the tracer give up on this value (kept, SEMANTICS 5.3).
// SAFETY: visits exactly the handles the map owns (see above).
unsafe impl<K: Hash + Eq + Clone + crate::Trace, V: ?Sized + 'static> crate::Trace
    for WeakValueMap<K, V>
{
    fn trace(&self, tracer: &mut crate::Tracer<'_>) {
        // SAFETY: see above.
        let (map, pending) = unsafe {
            (
                self.inner.map.try_borrow_unguarded(),
                self.inner.pending.try_borrow_unguarded(),
            )
        };
        let (Ok(map), Ok(pending)) = (map, pending) else {
            tracer.mark_incomplete();
            return;
        };
        for (k, w) in map.iter() {
            k.trace(tracer);
            w.trace(tracer);
        }
        for (k, w) in pending.iter() {
            k.trace(tracer);
            w.trace(tracer);
        }
    }
}
