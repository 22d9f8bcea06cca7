//! The insertion-ordered hash table behind `dict`, `set` and instance attributes.
//!
//! Entries live in a vector in insertion order (deleted ones leave a hole until the next
//! compaction); a `hashbrown::HashTable<usize>` indexes them by hash. The table never runs
//! Python code: callers compare keys that need `__eq__` outside any borrow (see
//! `interp::dict_find`), and take removed values out to drop them after the borrow ends.

use hashbrown::HashTable;
use reap::Trace;

use crate::value::{native_eq, Value};

/// One entry.
#[derive(Trace, Clone)]
pub struct Entry {
    /// The key's Python hash.
    pub hash: u64,
    /// The key.
    pub key: Value,
    /// The value (`None` in sets).
    pub value: Value,
}

/// An insertion-ordered hash table of Python values.
#[derive(Trace, Default)]
pub struct Table {
    entries: Vec<Option<Entry>>,
    #[reap(skip)]
    index: HashTable<usize>,
    /// Whether `index` is in use: small tables are searched linearly (no index allocated).
    #[reap(skip)]
    indexed: bool,
    len: usize,
    /// A class's namespace: any change bumps [`class_epoch`] (invalidating the classes'
    /// lookup caches).
    #[reap(skip)]
    class_dict: bool,
}

/// Tables with at most this many slots are searched linearly.
const SMALL: usize = 8;

thread_local! {
    static CLASS_EPOCH: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
}

/// A counter bumped by every change to any class namespace.
#[inline]
pub fn class_epoch() -> u64 {
    CLASS_EPOCH.with(|e| e.get())
}

impl Table {
    /// Marks the table as a class namespace (see [`class_epoch`]).
    pub fn mark_class_dict(&mut self) {
        self.class_dict = true;
        self.touch();
    }

    #[inline]
    fn touch(&self) {
        if self.class_dict {
            CLASS_EPOCH.with(|e| e.set(e.get() + 1));
        }
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot of the entry whose key satisfies `eq`, among those with this hash.
    #[inline]
    pub fn find(&self, hash: u64, eq: impl Fn(&Value) -> bool) -> Option<usize> {
        let entries = &self.entries;
        if !self.indexed {
            return entries
                .iter()
                .position(|e| e.as_ref().is_some_and(|e| e.hash == hash && eq(&e.key)));
        }
        self.index
            .find(hash, |&i| {
                entries[i]
                    .as_ref()
                    .is_some_and(|e| e.hash == hash && eq(&e.key))
            })
            .copied()
    }

    /// Native lookup (identity or value equality of immutables).
    pub fn find_native(&self, hash: u64, key: &Value) -> Option<usize> {
        self.find(hash, |k| native_eq(k, key))
    }

    /// Lookup of a `str` key.
    pub fn find_str(&self, hash: u64, key: &str) -> Option<usize> {
        // Interned names: the same text pointer in the common case.
        self.find(hash, |k| {
            matches!(k, Value::Str(s) if std::ptr::eq(s.as_ptr(), key.as_ptr()) && s.len() == key.len() || &**s == key)
        })
    }

    /// Slots of entries with this hash (for comparisons that run Python code).
    pub fn candidates(&self, hash: u64) -> Vec<(usize, Value)> {
        let mut out = Vec::new();
        if !self.indexed {
            for (i, e) in self.entries.iter().enumerate() {
                if let Some(e) = e {
                    if e.hash == hash {
                        out.push((i, e.key.clone()));
                    }
                }
            }
            return out;
        }
        for &i in self.index.iter_hash(hash) {
            if let Some(e) = &self.entries[i] {
                if e.hash == hash {
                    out.push((i, e.key.clone()));
                }
            }
        }
        out
    }

    /// The entry at a slot.
    pub fn entry(&self, slot: usize) -> &Entry {
        self.entries[slot].as_ref().expect("live slot")
    }

    /// The value at a slot.
    pub fn value(&self, slot: usize) -> &Value {
        &self.entry(slot).value
    }

    /// Replaces the value at a slot, returning the old one (drop it after the borrow ends).
    pub fn set_value(&mut self, slot: usize, value: Value) -> Value {
        self.touch();
        let e = self.entries[slot].as_mut().expect("live slot");
        std::mem::replace(&mut e.value, value)
    }

    /// Appends an entry whose key is known to be absent.
    pub fn insert_new(&mut self, hash: u64, key: Value, value: Value) {
        self.touch();
        let i = self.entries.len();
        self.entries.push(Some(Entry { hash, key, value }));
        self.len += 1;
        if !self.indexed {
            if self.entries.len() <= SMALL {
                return;
            }
            // Grown out of linear search: index every live entry.
            self.indexed = true;
            let entries = &self.entries;
            for (j, e) in entries.iter().enumerate() {
                if let Some(e) = e {
                    self.index
                        .insert_unique(e.hash, j, |&k| entries[k].as_ref().map_or(0, |e| e.hash));
                }
            }
            return;
        }
        let entries = &self.entries;
        self.index
            .insert_unique(hash, i, |&j| entries[j].as_ref().map_or(0, |e| e.hash));
    }

    /// Removes the entry at a slot and returns it (drop it after the borrow ends).
    pub fn remove_at(&mut self, slot: usize) -> Entry {
        self.touch();
        let e = self.entries[slot].take().expect("live slot");
        if self.indexed {
            if let Ok(o) = self.index.find_entry(e.hash, |&i| i == slot) {
                o.remove();
            }
        }
        self.len -= 1;
        if self.entries.len() > 16 && self.entries.len() > self.len * 3 {
            self.compact();
        }
        e
    }

    fn compact(&mut self) {
        let old = std::mem::take(&mut self.entries);
        self.index.clear();
        self.indexed = false;
        self.len = 0;
        for e in old.into_iter().flatten() {
            self.insert_new(e.hash, e.key, e.value);
        }
    }

    /// Removes everything, returning the entries (drop them after the borrow ends).
    pub fn take_all(&mut self) -> Vec<Entry> {
        self.touch();
        self.index.clear();
        self.indexed = false;
        self.len = 0;
        std::mem::take(&mut self.entries)
            .into_iter()
            .flatten()
            .collect()
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().flatten()
    }

    /// Slot of the `n`-th live entry at or after raw position `pos` (for iteration that
    /// tolerates mutation): returns (slot, next raw position).
    pub fn next_from(&self, pos: usize) -> Option<usize> {
        (pos..self.entries.len()).find(|&i| self.entries[i].is_some())
    }

    /// The last entry's slot.
    pub fn last_slot(&self) -> Option<usize> {
        (0..self.entries.len())
            .rev()
            .find(|&i| self.entries[i].is_some())
    }

    /// A copy of the table (cloned values: increfs).
    pub fn copy(&self) -> Table {
        let mut t = Table::default();
        for e in self.iter() {
            t.insert_new(e.hash, e.key.clone(), e.value.clone());
        }
        t
    }

    /// Keys, cloned.
    pub fn keys(&self) -> Vec<Value> {
        self.iter().map(|e| e.key.clone()).collect()
    }

    /// Values, cloned.
    pub fn values(&self) -> Vec<Value> {
        self.iter().map(|e| e.value.clone()).collect()
    }
}
