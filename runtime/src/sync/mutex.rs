//! `sync::Mutex<T>`: a mutual-exclusion lock for the fields of Shared-mode objects that a
//! collection's snapshot reads without taking it.
//!
//! Tracing a `std::sync::Mutex` in a collection's snapshot takes it (`try_lock`) and keeps the
//! guard until the verdict: two locked instructions a traced object. This lock is read
//! instead. While any snapshot is in progress (the process-wide *frozen* count is raised, by
//! [`Freeze`]), every acquisition backs off right after its compare-and-swap and waits for the
//! count to drop; the snapshot loads the lock's state, and a lock it sees unlocked stays so,
//! its value unchanged, until the verdict. The two sides are a store-buffering pair that
//! sequential consistency orders (`docs/ARCHITECTURE.md`, "`sync::Mutex`").
//!
//! A contended lock spins briefly, then sleeps on one of a few process-wide condition
//! variables chosen by its address, detached from the heaps the thread is attached to.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use crate::shim::Ordering::{Relaxed, SeqCst};
use crate::shim::{lock as raw_lock, wait, AtomicU32, AtomicUsize, Condvar, Mutex as RawMutex};
use crate::trace::{Trace, Tracer};

/// The state word's bit for "held".
const LOCKED: u32 = 1;
/// The state word's bit for "a thread sleeps waiting for it": the release wakes its bucket.
const PARKED: u32 = 2;

/// Buckets of sleeping threads (by the lock's address). One under loom, whose executions
/// must not depend on addresses.
#[cfg(not(reap_loom))]
const BUCKETS: usize = 64;
#[cfg(reap_loom)]
const BUCKETS: usize = 1;

/// Times a contended lock looks again before it sleeps (none under loom, where a spin would
/// only multiply the executions).
#[cfg(not(reap_loom))]
const SPINS: u32 = 100;
#[cfg(reap_loom)]
const SPINS: u32 = 0;

/// Where threads sleep: those waiting for a lock whose address falls in the bucket.
struct Bucket {
    lock: RawMutex<()>,
    cv: Condvar,
}

/// The process-wide state of every `sync::Mutex`.
struct Globals {
    /// Snapshots in progress (raised [`Freeze`]s): while above zero no lock is acquired.
    frozen: AtomicUsize,
    /// Where threads wait for `frozen` to drop to zero.
    thaw_lock: RawMutex<()>,
    thaw: Condvar,
    buckets: [Bucket; BUCKETS],
}

#[cfg(not(reap_loom))]
static GLOBALS: Globals = Globals {
    frozen: AtomicUsize::new(0),
    thaw_lock: RawMutex::new(()),
    thaw: Condvar::new(),
    buckets: [const {
        Bucket {
            lock: RawMutex::new(()),
            cv: Condvar::new(),
        }
    }; BUCKETS],
};

#[cfg(not(reap_loom))]
#[inline(always)]
fn globals() -> &'static Globals {
    &GLOBALS
}

#[cfg(reap_loom)]
loom::lazy_static! {
    static ref GLOBALS: Globals = Globals {
        frozen: AtomicUsize::new(0),
        thaw_lock: RawMutex::new(()),
        thaw: Condvar::new(),
        buckets: [Bucket {
            lock: RawMutex::new(()),
            cv: Condvar::new(),
        }],
    };
}

#[cfg(reap_loom)]
fn globals() -> &'static Globals {
    &GLOBALS
}

#[cfg(not(reap_loom))]
std::thread_local! {
    /// The [`Freeze`]s this thread holds: it must not wait for the count to drop.
    static FREEZING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

#[cfg(reap_loom)]
loom::thread_local! {
    static FREEZING: std::cell::Cell<u32> = std::cell::Cell::new(0);
}

/// One raise of the frozen count, held by a collection's snapshot (with its world stopped)
/// until its verdict is in: no `sync::Mutex` is acquired meanwhile. Not `Send`: it is lowered
/// on the thread that raised it.
pub(crate) struct Freeze(PhantomData<*const ()>);

impl Freeze {
    /// Raises the count. Call it with the world stopped (the pause waits for no thread
    /// afterwards, so the threads that wait for the count wait one pause at most).
    pub(crate) fn raise() -> Freeze {
        let _ = FREEZING.try_with(|f| f.set(f.get() + 1));
        globals().frozen.fetch_add(1, SeqCst);
        Freeze(PhantomData)
    }
}

impl Drop for Freeze {
    fn drop(&mut self) {
        let g = globals();
        if g.frozen.fetch_sub(1, SeqCst) == 1 {
            let _l = raw_lock(&g.thaw_lock);
            g.thaw.notify_all();
        }
        let _ = FREEZING.try_with(|f| f.set(f.get() - 1));
    }
}

/// Waits until no snapshot is in progress; `false` at once if this thread's own snapshot is
/// (it would wait for itself).
#[cold]
fn wait_thawed() -> bool {
    if FREEZING.try_with(|f| f.get() != 0).unwrap_or(false) {
        return false;
    }
    let g = globals();
    // Detached meanwhile, as a thread waiting for a holder: snapshots of several heaps may
    // follow each other, and a collection of a heap this thread is attached to must not wait
    // for it until they all end.
    crate::sync::thread::blocking(|| {
        let mut l = raw_lock(&g.thaw_lock);
        while g.frozen.load(SeqCst) != 0 {
            l = wait(&g.thaw, l);
        }
    });
    true
}

/// A mutual-exclusion lock for values inside Shared-mode objects, which a collection reads
/// without taking (see the module docs): use it rather than `std::sync::Mutex` for an object's
/// mutable fields that hold handles. Its `Trace` reads the state word where
/// `std::sync::Mutex`'s takes the lock and keeps it until the collection's verdict.
///
/// As `std::sync::Mutex`, but:
/// - no poisoning: a thread that panics while holding it releases it (the guard's `Drop`);
/// - a thread that waits for it does so detached from the heaps it is attached to, so a
///   collection does not wait for it (while another thread may hold the lock and be parked);
/// - acquiring it waits while some heap's collection is in its snapshot (a part of a pause);
/// - locking it again on the thread that holds it deadlocks.
///
/// ```
/// use reap::sync::{Gc, Heap, Mutex};
///
/// #[derive(reap::Trace)]
/// struct Node {
///     next: Mutex<Option<Gc<Node>>>,
/// }
///
/// let heap = Heap::new();
/// let a = heap.alloc(Node { next: Mutex::new(None) });
/// *a.next.lock() = Some(a.clone()); // a cycle
/// drop(a);
/// assert_eq!(heap.collect(), 1);
/// ```
pub struct Mutex<T: ?Sized> {
    /// [`LOCKED`] and [`PARKED`].
    state: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: the value moves with the lock, so it must be `Send`.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: one thread at a time reaches the value (a guard's holder, or a snapshot that saw the
// lock free and keeps it so), so sharing the lock needs only `T: Send`, as for std's.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    /// A new unlocked lock holding `value`.
    pub fn new(value: T) -> Mutex<T> {
        Mutex {
            state: AtomicU32::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, the lock consumed.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Acquires the lock, waiting while another thread holds it (detached from this thread's
    /// heaps) or while a collection's snapshot is in progress.
    ///
    /// # Panics
    /// Inside a collection's snapshot on this thread (a hand-written `Trace` that locks),
    /// which would wait for itself.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        if !(self.cas(0, LOCKED) && self.admitted()) {
            self.lock_contended();
        }
        MutexGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Acquires the lock if no thread holds it; never waits for a holder (it may wait for a
    /// collection's snapshot to end). `None` if it is held, or inside a snapshot on this
    /// thread.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        loop {
            let s = self.state.load(Relaxed);
            if s & LOCKED != 0 {
                return None;
            }
            if !self.cas(s, s | LOCKED) {
                continue;
            }
            if self.admitted() {
                return Some(MutexGuard {
                    lock: self,
                    _not_send: PhantomData,
                });
            }
            if !wait_thawed() {
                return None;
            }
        }
    }

    /// The value, through exclusive access to the lock (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// Whether some thread holds the lock right now (a hint: it may change at once).
    pub fn is_locked(&self) -> bool {
        self.state.load(Relaxed) & LOCKED != 0
    }

    /// Sets [`LOCKED`] over the state `from`. Sequentially consistent: the store half of the
    /// pair with [`Freeze::raise`] (the load half is [`Mutex::admitted`]).
    #[inline(always)]
    fn cas(&self, from: u32, to: u32) -> bool {
        self.state
            .compare_exchange(from, to, SeqCst, Relaxed)
            .is_ok()
    }

    /// Just acquired: whether no snapshot is in progress. If one is, the lock is released
    /// again (the snapshot may have read it free) and `false` returned.
    #[inline(always)]
    fn admitted(&self) -> bool {
        if globals().frozen.load(SeqCst) == 0 {
            return true;
        }
        release(&self.state);
        false
    }

    /// `lock`'s slow path: a held lock, or a snapshot in progress.
    #[cold]
    fn lock_contended(&self) {
        loop {
            if globals().frozen.load(SeqCst) != 0 && !wait_thawed() {
                panic!("reap::sync::Mutex::lock inside a collection's snapshot on this thread");
            }
            let mut spins = SPINS;
            loop {
                let s = self.state.load(Relaxed);
                if s & LOCKED == 0 {
                    // Keeps `PARKED`: other threads may sleep on it still.
                    if self.cas(s, s | LOCKED) {
                        if self.admitted() {
                            return;
                        }
                        // A snapshot began: wait for it above.
                        break;
                    }
                } else if spins > 0 {
                    spins -= 1;
                    std::hint::spin_loop();
                } else {
                    self.sleep();
                    spins = SPINS;
                }
            }
        }
    }

    /// Sleeps until the lock's holder releases it (or spuriously), detached from this
    /// thread's heaps.
    #[cold]
    fn sleep(&self) {
        let b = bucket(&self.state);
        crate::sync::thread::blocking(|| {
            let g = raw_lock(&b.lock);
            loop {
                let s = self.state.load(Relaxed);
                if s & LOCKED == 0 {
                    return;
                }
                // With the bucket's lock held from here to the wait: a release that clears
                // `PARKED` after this point takes the bucket's lock to wake the sleepers, so
                // it waits until this thread sleeps.
                if s & PARKED != 0 || self.cas_parked(s) {
                    drop(wait(&b.cv, g));
                    return;
                }
            }
        });
    }

    /// Sets [`PARKED`] over the state `from` (sequentially consistent as every write of the
    /// state word: see [`Mutex::release`]).
    fn cas_parked(&self, from: u32) -> bool {
        self.state
            .compare_exchange(from, from | PARKED, SeqCst, Relaxed)
            .is_ok()
    }
}

/// The bucket that threads waiting for the lock whose state word is `state` sleep in.
#[cfg(not(reap_loom))]
fn bucket(state: &AtomicU32) -> &'static Bucket {
    let addr = (state as *const AtomicU32).addr();
    &globals().buckets[(addr >> 4) % BUCKETS]
}

/// The bucket that threads waiting for a lock sleep in: the one there is, under loom.
#[cfg(reap_loom)]
fn bucket(_state: &AtomicU32) -> &'static Bucket {
    &globals().buckets[0]
}

/// Releases the lock whose state word is `state`, waking its sleepers if any.
///
/// A function of the state word, not a `&self` method: once the swap has published the
/// release, another thread may take the lock, release it and free it (a hand-over through a
/// raw pointer, which std's `Mutex` allows too) while this call still runs. A `&Mutex`
/// argument would cover the value's frozen bytes and the padding beside the state word, which
/// Rust's aliasing rules forbid anyone to free until the call returns; a reference to the
/// atomic covers only bytes in a cell (as std's unlock, and `Arc`'s drop). `wake` only takes
/// the address for the bucket.
///
/// `SeqCst` (the same instruction as `Release` on x86, where a swap is locked anyway),
/// so that every write of the state word is sequentially consistent: a snapshot's `SeqCst`
/// load then cannot read a release older than an acquisition that precedes it in the
/// single total order. C11 forbids that read already when the release happens before the
/// acquisition (here it always does: the acquirer read it, or a later write), but loom
/// 0.7 allows it for a store that is not `SeqCst` itself (see `shim`'s module docs), and
/// reported a race that cannot happen.
#[inline]
fn release(state: &AtomicU32) {
    if state.swap(0, SeqCst) & PARKED != 0 {
        wake(state);
    }
}

/// Wakes the threads sleeping for the lock whose state word is `state` (see [`release`]).
#[cold]
fn wake(state: &AtomicU32) {
    let b = bucket(state);
    let _g = raw_lock(&b.lock);
    b.cv.notify_all();
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Mutex<T> {
        Mutex::new(value)
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(g) => d.field("data", &&*g),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// Holds a [`Mutex`] until dropped; derefs to its value. Released on the thread that took
/// it (not `Send`).
pub struct MutexGuard<'a, T: ?Sized> {
    lock: &'a Mutex<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard gives only `&T`.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock: no other guard exists, and no snapshot reads the
        // value (it sees the lock held).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes the access exclusive among the guard's users.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        release(&self.lock.state);
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + std::fmt::Display> std::fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&**self, f)
    }
}

impl<T: Trace> Mutex<T> {
    /// [`Trace::trace`] outside a snapshot: through the lock, if it can be taken at once.
    #[inline(never)]
    fn trace_locked(&self, tracer: &mut Tracer<'_>) {
        match self.try_lock() {
            Some(g) => tracer.trace_under(g),
            None => tracer.mark_incomplete(),
        }
    }
}

// SAFETY: the lock owns its value; `trace` visits exactly its handles, in a snapshot (locks
// frozen) by reading a lock no thread holds or can take until the verdict, elsewhere under
// `try_lock`. A held lock is not traversed: the tracer is told, the object kept.
unsafe impl<T: Trace> Trace for Mutex<T> {
    // Inlined into the value's `trace`: the collection's snapshot (the frozen case) is the
    // hot path, one load of the state; the others lock, out of line.
    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if !T::needs_trace() {
            return;
        }
        if tracer.locks_frozen() {
            // The load half of the pair with `cas` (see `Freeze`): it reads `LOCKED` for any
            // acquisition that did not see the raise, or the release that ended it (`Acquire`:
            // then its writes are seen).
            if self.state.load(SeqCst) & LOCKED != 0 {
                tracer.mark_incomplete();
                return;
            }
            // SAFETY: no thread holds the lock (just read), and none takes it while the
            // tracer lives (`Tracer::locks_frozen`: a raise is held), so nothing writes the
            // value meanwhile; the lock is borrowed, so it is alive.
            unsafe { &*self.value.get() }.trace(tracer);
        } else {
            self.trace_locked(tracer);
        }
    }

    fn needs_trace() -> bool {
        T::needs_trace()
    }
}
