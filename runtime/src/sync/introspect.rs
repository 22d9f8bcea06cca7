//! The `gc` surface of a Shared heap (SEMANTICS 8.6): automatic collection's switch and
//! thresholds, the counts and statistics, collection callbacks, type-erased handles to the
//! heap's objects, referents and referrers, freezing, and shutdown. What needs every object
//! (`get_objects`, `get_referrers`, `freeze`) walks the heap with the world stopped, as
//! free-threaded CPython does.

use std::any::Any;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::Relaxed;

use crate::object::header::Flags;
use crate::object::shared::{Gc, SharedHeader, GC_FROZEN};
use crate::sync::collect::with_world_stopped;
use crate::sync::count;
use crate::sync::gcstate::CollectCallback;
use crate::sync::heap::{inc_ref, Heap};
use crate::sync::state::{vtable, HeapState};
use crate::trace::{HeldGuard, Tracer};
use crate::{GenerationStats, UnraisableKind};

/// A type-erased handle to any object of a Shared heap: what [`Heap::get_objects`] and
/// [`Heap::get_referrers`] return. Downcast with [`Gc::downcast`].
///
/// ```
/// use reap::sync::{AnyGc, Heap};
///
/// let heap = Heap::new();
/// let n = heap.alloc(7_u64);
/// let any: AnyGc = reap::gc_coerce!(n.clone() => dyn std::any::Any + Send + Sync);
/// assert_eq!(*any.downcast::<u64>().ok().unwrap(), 7);
/// ```
pub type AnyGc = Gc<dyn Any + Send + Sync>;

/// A new handle to the object `o` (live, its value not dropped), type-erased.
fn any_handle(o: NonNull<SharedHeader>) -> AnyGc {
    // SAFETY: the caller's object is allocated (a block of the stopped heap, or one a held
    // lock guard keeps a handle to).
    let h = unsafe { o.as_ref() };
    let as_any = vtable(h)
        .as_any_shared
        .expect("reap: a Shared object's vtable has as_any_shared");
    inc_ref(h);
    // SAFETY: the pointer is the object's value as `dyn Any + Send + Sync`, and the handle owns
    // the reference just added.
    unsafe { Gc::from_value_ptr(as_any(SharedHeader::value_ptr(o))) }
}

/// Whether `o` may be handed out: alive (a count above zero), its value intact, and not
/// garbage a collection holds (it would drop the value while the handle lives).
fn usable(o: &SharedHeader) -> bool {
    !o.has(Flags::VALUE_DROPPED) && !o.is_garbage() && count::stopped_count(o) > 0
}

/// Lock guards kept while traced handles are turned into new handles; released last in,
/// first out however they are left (a lock inside a value before the lock around it, also
/// when a `Trace` panics).
struct Guards(Vec<HeldGuard>);

impl Drop for Guards {
    fn drop(&mut self) {
        while let Some(g) = self.0.pop() {
            drop(g);
        }
    }
}

/// The handles `o`'s value holds to objects of `heap`, while `guards` keep the locks they sit
/// behind. Objects whose value is dropped have none.
fn edges_of(
    heap: NonNull<HeapState>,
    o: NonNull<SharedHeader>,
    guards: &mut Guards,
) -> Vec<NonNull<SharedHeader>> {
    let mut found = Vec::new();
    // SAFETY: callers pass allocated objects.
    let h = unsafe { o.as_ref() };
    if h.has(Flags::VALUE_DROPPED) {
        return found;
    }
    let vt = vtable(h);
    let mut tracer = Tracer::shared(heap.cast(), &mut found, &mut guards.0);
    // SAFETY: an allocated object whose value is not dropped: a live value of the vtable's
    // type.
    unsafe { (vt.trace)(SharedHeader::value_ptr(o), &mut tracer) };
    found
}

impl Heap {
    /// `gc.enable()`: turns automatic collection on (it is on when a heap is made).
    pub fn enable(&self) {
        self.st().gc.enabled.store(true, Relaxed);
    }

    /// `gc.disable()`: turns automatic collection off; [`Heap::collect`] still collects.
    pub fn disable(&self) {
        self.st().gc.enabled.store(false, Relaxed);
    }

    /// `gc.isenabled()`.
    pub fn is_enabled(&self) -> bool {
        self.st().gc.enabled.load(Relaxed)
    }

    /// `gc.set_threshold(t0, t1, t2)`. Shared mode has one generation (as free-threaded
    /// CPython): a collection runs when the tracked objects allocated less those freed since
    /// the last one pass `t0` and a quarter of what the last one left alive (the quarter rule
    /// is off when `t1` is 0); `t0 = 0` turns automatic collection off. A collection examines
    /// the whole heap, not only what the possible roots reach, when the objects collections
    /// leave alive have doubled since their low point (see [`Heap::collect_exhaustive`]);
    /// `t2 = 0` turns that off. Other values of `t1` and `t2` are only kept for
    /// [`Heap::get_threshold`].
    ///
    /// ```
    /// use reap::sync::Heap;
    ///
    /// let heap = Heap::new();
    /// assert_eq!(heap.get_threshold(), [2000, 10, 10]);
    /// heap.set_threshold(700, 10, 10);
    /// assert_eq!(heap.get_threshold(), [700, 10, 10]);
    /// ```
    pub fn set_threshold(&self, t0: usize, t1: usize, t2: usize) {
        for (cell, t) in self.st().gc.thresholds.iter().zip([t0, t1, t2]) {
            cell.store(t, Relaxed);
        }
    }

    /// `gc.get_threshold()`.
    pub fn get_threshold(&self) -> [usize; 3] {
        self.st().gc.thresholds.each_ref().map(|t| t.load(Relaxed))
    }

    /// `gc.get_count()`: the tracked objects allocated less those freed since the last
    /// collection, as the threads have reported them so far (each thread reports every 512),
    /// then two zeros (one generation).
    pub fn get_count(&self) -> [usize; 3] {
        [self.st().gc.young.load(Relaxed).max(0) as usize, 0, 0]
    }

    /// `gc.get_stats()`: per generation, the collections, objects collected and uncollectable
    /// (always 0). Automatic collections count as generation 0, [`Heap::collect`] as
    /// generation 2.
    pub fn get_stats(&self) -> [GenerationStats; 3] {
        let gc = &self.st().gc;
        std::array::from_fn(|g| GenerationStats {
            collections: gc.collections[g].load(Relaxed),
            collected: gc.collected[g].load(Relaxed),
            uncollectable: 0,
        })
    }

    /// Registers a collection callback (`gc.callbacks.append`): it runs on the collecting
    /// thread, with the world running, at the start and the stop of every collection. Returns
    /// an id for [`Heap::remove_collect_callback`]. A panic in it goes to the unraisable hook
    /// and the collection goes on; a collection it asks for returns 0. A callback that
    /// captures a `Heap` handle keeps the heap alive (as an `Arc` cycle) until it is removed
    /// or [`Heap::shutdown`] drops it.
    pub fn add_collect_callback(&self, cb: CollectCallback) -> u64 {
        let gc = &self.st().gc;
        let id = gc.next_callback.fetch_add(1, Relaxed);
        gc.callbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, cb));
        id
    }

    /// Removes a collection callback; returns whether it was registered.
    pub fn remove_collect_callback(&self, id: u64) -> bool {
        let removed = {
            let mut cbs = self
                .st()
                .gc
                .callbacks
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let at = cbs.iter().position(|(i, _)| *i == id);
            at.map(|at| cbs.remove(at))
        };
        // Dropped with no lock held: the callback's captures may run user code.
        let found = removed.is_some();
        if let Some(p) = crate::unraisable::drop_guarded(removed) {
            self.st()
                .report_panic(UnraisableKind::Drop, "collection callback", p);
        }
        found
    }

    /// `gc.get_objects()`: handles to every live tracked object of the heap but the frozen
    /// ones, found with the world stopped.
    ///
    /// # Panics
    /// On a thread inside [`Heap::detached`], and if the world cannot be stopped (as
    /// [`Heap::collect`]).
    pub fn get_objects(&self) -> Vec<AnyGc> {
        with_world_stopped(self.state, "get_objects", |h| {
            let mut out = Vec::new();
            // SAFETY: the world is stopped.
            unsafe {
                h.for_each_object(|o| {
                    let r = o.as_ref();
                    if r.has(Flags::TRACKED) && !r.is_frozen() && usable(r) {
                        out.push(o);
                    }
                })
            };
            out.into_iter().map(any_handle).collect()
        })
    }

    /// `gc.get_referents(obj)`: handles to the objects of this heap that `obj`'s value holds
    /// handles to, in tracing order. A value behind a lock another thread holds is left out.
    pub fn get_referents<T: ?Sized>(&self, obj: &Gc<T>) -> Vec<AnyGc> {
        let mut guards = Guards(Vec::new());
        let found = edges_of(self.state, obj.header_ptr(), &mut guards);
        // The handles are made while the guards keep the locks their originals sit behind.
        let out = found
            .into_iter()
            // SAFETY: a handle the held guards keep in place holds the object.
            .filter(|&o| usable(unsafe { o.as_ref() }))
            .map(any_handle)
            .collect();
        drop(guards);
        out
    }

    /// `gc.get_referrers(obj)`: handles to the live tracked objects of the heap (the frozen
    /// ones left out, as in CPython) whose values hold a handle to `obj`, found with the world
    /// stopped.
    ///
    /// # Panics
    /// As [`Heap::get_objects`].
    pub fn get_referrers<T: ?Sized>(&self, obj: &Gc<T>) -> Vec<AnyGc> {
        let target = obj.header_ptr();
        let heap = self.state;
        with_world_stopped(heap, "get_referrers", |h| {
            let mut objs = Vec::new();
            // SAFETY: the world is stopped.
            unsafe {
                h.for_each_object(|o| {
                    let r = o.as_ref();
                    if r.has(Flags::TRACKED) && !r.is_frozen() && usable(r) {
                        objs.push(o);
                    }
                })
            };
            let mut guards = Guards(Vec::new());
            let out = objs
                .into_iter()
                .filter(|&o| edges_of(heap, o, &mut guards).contains(&target))
                .collect::<Vec<_>>();
            drop(guards);
            out.into_iter().map(any_handle).collect()
        })
    }

    /// `gc.freeze()`: puts every live tracked object into the permanent set, which
    /// collections skip (what it holds stays alive), and sets the count to zero.
    ///
    /// ```
    /// use reap::sync::{Gc, Heap};
    /// use std::sync::Mutex;
    ///
    /// #[derive(reap::Trace)]
    /// struct Node(Mutex<Option<Gc<Node>>>);
    ///
    /// let heap = Heap::new();
    /// let a = heap.alloc(Node(Mutex::new(None)));
    /// *a.0.lock().unwrap() = Some(a.clone());
    /// drop(a);
    /// heap.freeze();
    /// assert_eq!(heap.get_freeze_count(), 1);
    /// assert_eq!(heap.collect(), 0);
    /// heap.unfreeze();
    /// assert_eq!(heap.collect(), 1);
    /// ```
    pub fn freeze(&self) {
        with_world_stopped(self.state, "freeze", |h| {
            // SAFETY: the world is stopped: no other thread reads or writes `frozen`.
            unsafe {
                h.for_each_object(|o| {
                    let r = o.as_ref();
                    if r.has(Flags::TRACKED) && usable(r) {
                        r.set_gc_bit_stopped(GC_FROZEN, true);
                    }
                })
            };
            h.gc.young.store(0, Relaxed);
        });
    }

    /// `gc.unfreeze()`: empties the permanent set; its objects are examined by collections
    /// again (each is marked a possible root: references to it may have gone while it was
    /// frozen, and the collections that skipped it kept no record).
    pub fn unfreeze(&self) {
        with_world_stopped(self.state, "unfreeze", |h| {
            // SAFETY: the world is stopped, as in `freeze`.
            unsafe {
                h.for_each_object(|o| {
                    let r = o.as_ref();
                    if r.is_frozen() {
                        r.set_gc_bit_stopped(GC_FROZEN, false);
                        r.set_possible_root_stopped(true);
                    }
                })
            };
        });
    }

    /// `gc.get_freeze_count()`: how many objects of the permanent set are alive.
    pub fn get_freeze_count(&self) -> usize {
        with_world_stopped(self.state, "get_freeze_count", |h| {
            let mut n = 0;
            // SAFETY: the world is stopped.
            unsafe {
                h.for_each_object(|o| {
                    let r = o.as_ref();
                    if r.is_frozen() && usable(r) {
                        n += 1;
                    }
                })
            };
            n
        })
    }

    /// Shuts the heap down (SEMANTICS 8.6): turns automatic collection off, drops the
    /// collection callbacks (none runs during shutdown), empties the permanent set, then
    /// collects until a collection frees nothing (at most 100 rounds, each examining every
    /// tracked object: [`Heap::collect_exhaustive`]). Returns how many objects
    /// it freed; what is still alive is held from outside, and freed when its last handle goes.
    ///
    /// # Errors
    /// If threads other than this one are attached to the heap: they must exit (be joined)
    /// first. Nothing is changed then.
    ///
    /// # Panics
    /// On a thread inside [`Heap::detached`], and as [`Heap::collect`].
    ///
    /// ```
    /// use reap::sync::{Gc, Heap};
    /// use std::sync::Mutex;
    ///
    /// #[derive(reap::Trace)]
    /// struct Node(Mutex<Option<Gc<Node>>>);
    ///
    /// let heap = Heap::new();
    /// let worker = {
    ///     let heap = heap.clone();
    ///     std::thread::spawn(move || {
    ///         let a = heap.alloc(Node(Mutex::new(None)));
    ///         *a.0.lock().unwrap() = Some(a.clone());
    ///     })
    /// };
    /// worker.join().unwrap();
    /// assert_eq!(heap.shutdown(), Ok(1));
    /// assert_eq!(heap.live_objects(), 0);
    /// ```
    pub fn shutdown(&self) -> Result<usize, ThreadsAttachedError> {
        let st = self.st();
        let (_, me) = crate::sync::thread::attach(self.state);
        if me.is_none() {
            panic!("reap: Heap::shutdown called on a thread inside Heap::detached (or exiting)");
        }
        let others = {
            let table = crate::shim::lock(&st.threads);
            table
                .values()
                .filter(|slot| me.is_some_and(|m| !std::ptr::eq(slot.state(), m.as_ptr())))
                .count()
        };
        if others > 0 {
            return Err(ThreadsAttachedError { threads: others });
        }
        self.disable();
        let callbacks =
            std::mem::take(&mut *st.gc.callbacks.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(p) = crate::unraisable::drop_guarded(callbacks) {
            st.report_panic(UnraisableKind::Drop, "collection callback", p);
        }
        self.unfreeze();
        let mut freed = 0;
        for _ in 0..100 {
            let n = self.collect_exhaustive();
            freed += n;
            if n == 0 {
                break;
            }
        }
        Ok(freed)
    }
}

/// [`Heap::shutdown`] found other threads attached to the heap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadsAttachedError {
    /// How many threads other than the caller were attached.
    pub threads: usize,
}

impl std::fmt::Display for ThreadsAttachedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reap: cannot shut the heap down: {} other thread(s) are still attached to it \
             (join the threads that used the heap first)",
            self.threads
        )
    }
}

impl std::error::Error for ThreadsAttachedError {}
