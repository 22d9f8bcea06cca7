//! The one place Shared mode gets its atomics, locks and raw allocation from: std's
//! normally, loom's when built with `--cfg reap_loom` (the project's own cfg name, so that a
//! workspace-wide `--cfg loom` does not switch other crates' code paths). Everything the
//! Shared-mode protocol reads or writes across threads goes through here, so loom sees and
//! permutes every such access.
//!
//! Not here: the counter that hands out thread ids (a plain std atomic: ids need only be
//! unique, and their order is part of no protocol; under loom the thread table is iterated
//! in it, below) and Local mode, which has no atomics.
//!
//! **Determinism under loom.** loom explores executions by replaying a recorded prefix of
//! choices (which thread runs, which store a load reads) and branching after it, so every
//! execution of a model must perform the same loom operations for the same choices. Three
//! things in Shared mode made an execution's course depend on something else:
//!
//! - the heap's thread table, iterated by a collection as it sets and clears each thread's
//!   `pending` bits, is keyed by thread id, and ids come from a process-wide counter, so the
//!   hash order changed from one execution to the next. loom's replay then applied a recorded
//!   choice to another thread's `pending` atomic (an RMW reading a store that is not the
//!   newest) and failed with its internal assertion `assert_ne!(mo_i, mo_j)` in
//!   `match_load_to_stores` / `match_rmw_to_stores`, the symptom of loom's open bug
//!   tokio-rs/loom#252 / #389 but not that bug. Under loom the table is a `BTreeMap`
//!   ([`ThreadTable`]): ids are handed out in the order threads first attach, which the
//!   schedule fixes;
//! - the list of tracked objects from the global allocator (every object, under loom) is keyed
//!   by address: under loom it is a `Vec` in insertion order ([`PtrSet`]); likewise the
//!   weak-reference lock stripe is chosen by address, so under loom there is one stripe
//!   (`sync::state`);
//! - a stop of the world gives up and tries again after a deadline of wall-clock time, so its
//!   course depended on how fast loom ran: under loom the clock stands still ([`Instant`]).
//!   loom's timed condition-variable wait never times out either, so under loom a stop waits
//!   until it succeeds, and one that could never succeed is a deadlock loom reports.
//!
//! Normally all of these are the std or hashbrown types.

#[cfg(not(reap_loom))]
pub(crate) use std::sync::atomic::{
    AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(not(reap_loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

#[cfg(reap_loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, Ordering};
#[cfg(reap_loom)]
pub(crate) use seq_cst::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize};

/// loom's integer atomics, whose initial value is stored again with `SeqCst`.
///
/// loom 0.7 models `SeqCst` accesses only in part (its README, "Unsupported features";
/// tokio-rs/loom#180): a `SeqCst` load skips a store that a newer `SeqCst` store supersedes
/// only if that older store was `SeqCst` too, and the value an atomic is created with counts
/// as a `Release` store. So a `SeqCst` load may still read the initial value after another
/// thread's `SeqCst` store has run, which C11 forbids (the creation happens before that
/// store). The stop-the-world handshake relies on store-buffering pairs that only sequential
/// consistency orders: the gate (`passive += 1`, then read `stopping`; against the
/// collector's `stopping = 1`, then read `passive`) and the attached state (`status =
/// DETACHED`, then read `stopping`; against `stopping = 1`, then read `status`). With the
/// initial `stopping` readable after the collector's store, both sides may read the old
/// value, and loom reported a collector waiting for a gate nobody was in, with no one left
/// to wake it: a deadlock that cannot happen.
///
/// Here `new` stores the initial value a second time with `SeqCst` before the atomic is
/// shared, so every store a `SeqCst` load can be offered is ordered as C11 orders it.
/// Nothing else changes: every operation is loom's own (through `Deref`), with its own
/// ordering, and the other models' execution counts are unchanged. (Doing every `SeqCst` load
/// and store as a read-modify-write would also order these pairs, but loom then takes every
/// load of `stopping` as a write, and model 6's executions grew from 8,385 to 467,042;
/// `fence(SeqCst)`, which loom models by joining the clocks of every thread that ran one,
/// would hide the races the models look for.)
#[cfg(reap_loom)]
mod seq_cst {
    macro_rules! seq_cst_atomic {
        ($name:ident, $int:ty) => {
            #[doc = concat!("loom's `", stringify!($name), "`, its initial value stored again with `SeqCst` (see the module docs).")]
            #[derive(Debug)]
            pub(crate) struct $name(loom::sync::atomic::$name);

            impl $name {
                /// A new atomic holding `v`, as a `SeqCst` store.
                #[track_caller]
                pub(crate) fn new(v: $int) -> Self {
                    let a = loom::sync::atomic::$name::new(v);
                    a.store(v, loom::sync::atomic::Ordering::SeqCst);
                    Self(a)
                }
            }

            impl std::ops::Deref for $name {
                type Target = loom::sync::atomic::$name;

                fn deref(&self) -> &Self::Target {
                    &self.0
                }
            }

            impl std::ops::DerefMut for $name {
                fn deref_mut(&mut self) -> &mut Self::Target {
                    &mut self.0
                }
            }
        };
    }

    seq_cst_atomic!(AtomicU8, u8);
    seq_cst_atomic!(AtomicU32, u32);
    seq_cst_atomic!(AtomicU64, u64);
    seq_cst_atomic!(AtomicUsize, usize);
}
#[cfg(reap_loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

/// A cell of plain data that threads share under a lock (a weak-info block's lists): a
/// `std::cell::UnsafeCell` reached only through [`with`](UnsafeCell::with) and
/// [`with_mut`](UnsafeCell::with_mut), so that loom builds can swap in
/// `loom::cell::UnsafeCell`, which checks that every access happens after the last
/// conflicting one (tokio's shape).
#[cfg(not(reap_loom))]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(reap_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a pointer for reading the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a pointer for writing the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(reap_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// A heap's thread table: thread id → value (see the module docs for the loom variant).
#[cfg(not(reap_loom))]
pub(crate) type ThreadTable<V> = hashbrown::HashMap<u32, V>;
/// A heap's thread table: thread id → value, iterated in id order, which is the order in
/// which the threads first attached (see the module docs).
#[cfg(reap_loom)]
pub(crate) type ThreadTable<V> = std::collections::BTreeMap<u32, V>;

/// A set of object pointers, iterated by a collection (see the module docs for the loom
/// variant).
#[cfg(not(reap_loom))]
pub(crate) type PtrSet<T> = hashbrown::HashSet<T>;

/// A set kept as a vector in insertion order (a removal keeps the others' order), so that
/// its iteration order depends only on the sequence of inserts and removes, which the
/// schedule fixes, and not on addresses (see the module docs). Linear time: the models hold
/// a handful of objects.
#[cfg(reap_loom)]
pub(crate) struct PtrSet<T>(Vec<T>);

#[cfg(reap_loom)]
impl<T> Default for PtrSet<T> {
    fn default() -> Self {
        PtrSet(Vec::new())
    }
}

#[cfg(reap_loom)]
impl<T: PartialEq> PtrSet<T> {
    /// Adds `v`; `false` if it was there already.
    pub(crate) fn insert(&mut self, v: T) -> bool {
        if self.0.contains(&v) {
            return false;
        }
        self.0.push(v);
        true
    }

    /// Removes `v`; `false` if it was not there.
    pub(crate) fn remove(&mut self, v: &T) -> bool {
        match self.0.iter().position(|x| x == v) {
            Some(i) => {
                self.0.remove(i);
                true
            }
            None => false,
        }
    }

    /// The elements, in insertion order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

#[cfg(not(reap_loom))]
pub(crate) use std::time::Instant;

/// The collection's clock under loom: it stands still (see the module docs), so no deadline
/// is ever reached.
#[cfg(reap_loom)]
#[derive(Clone, Copy)]
pub(crate) struct Instant;

#[cfg(reap_loom)]
impl Instant {
    /// The one instant there is.
    pub(crate) fn now() -> Instant {
        Instant
    }

    /// Always zero.
    pub(crate) fn elapsed(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Always zero.
    pub(crate) fn duration_since(&self, _earlier: Instant) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// Allocates a block for a Shared-mode object or side block; loom's version tracks it, so a
/// model that leaks an object fails.
///
/// # Safety
/// As [`std::alloc::alloc`]: `layout` has a non-zero size.
#[inline]
pub(crate) unsafe fn alloc(layout: std::alloc::Layout) -> *mut u8 {
    #[cfg(not(reap_loom))]
    // SAFETY: forwarded contract (caller).
    unsafe {
        std::alloc::alloc(layout)
    }
    #[cfg(reap_loom)]
    // SAFETY: forwarded contract (caller).
    unsafe {
        loom::alloc::alloc(layout)
    }
}

/// Frees a block from [`alloc`].
///
/// # Safety
/// As [`std::alloc::dealloc`]: `ptr` came from [`alloc`] with this `layout`.
#[inline]
pub(crate) unsafe fn dealloc(ptr: *mut u8, layout: std::alloc::Layout) {
    #[cfg(not(reap_loom))]
    // SAFETY: forwarded contract (caller).
    unsafe {
        std::alloc::dealloc(ptr, layout)
    }
    #[cfg(reap_loom)]
    // SAFETY: forwarded contract (caller).
    unsafe {
        loom::alloc::dealloc(ptr, layout)
    }
}

/// Locks `m`, ignoring poisoning: the runtime's critical sections run no user code, so a
/// poisoned runtime lock can only come from a bug already reported by its panic.
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Waits on `cv`, ignoring poisoning (as [`lock`]).
#[inline]
pub(crate) fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    match cv.wait(g) {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Waits on `cv` for at most `timeout`, ignoring poisoning (as [`lock`]). May wake early.
#[inline]
pub(crate) fn wait_timeout<'a, T>(
    cv: &Condvar,
    g: MutexGuard<'a, T>,
    timeout: std::time::Duration,
) -> MutexGuard<'a, T> {
    match cv.wait_timeout(g, timeout) {
        Ok((g, _)) => g,
        Err(p) => p.into_inner().0,
    }
}
