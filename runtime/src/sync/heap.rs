//! The Shared-mode heap: its state ([`HeapState`]), allocation, the death of an object on the
//! refcount path (CPython's order, SEMANTICS 3.1), and reporting to the unraisable hook.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use crate::object::header::{Flags, META_WEAK_INFO};
use crate::object::shared::{Gc, SharedHeader, GC_FINALIZING, GC_RECLAIM};
use crate::object::vtable::vtable_of_meta;
#[cfg(not(reap_loom))]
use crate::object::vtable::vtable_of_shared;
use crate::shim::{lock, Ordering::*};
use crate::sync::count::{self, Dec, Rest, NO_OWNER};
use crate::sync::spin::WeakGuard;
use crate::sync::state::{
    alloc_on, count_tracked, free_memory, give_back_object_ref, give_back_object_refs, heap_of,
    release_refs, vtable, HeapState, SharedUnraisableHook, ThreadState, LEAVING_SHIFT, PENDING_GC,
    REFS_MASK,
};
#[cfg(not(reap_loom))]
use crate::sync::state::{init_object, take_fast};
use crate::sync::{thread, weak};
use crate::trace::Trace;
use crate::unraisable::{drop_guarded, drop_payload};
use crate::UnraisableKind;

/// A Shared-mode heap: `Send + Sync`, cheap to clone, usable from any number of threads.
///
/// Objects allocated on it are [`Gc`] handles that may be sent to and dropped on any thread.
/// A thread attaches to the heap the first time it uses it or one of its objects, and is
/// detached when it exits; nothing needs to be called first. [`Heap::collect`] collects
/// cycles, stopping every attached thread at its next safe point.
///
/// ```
/// use reap::sync::Heap;
///
/// let heap = Heap::new();
/// let workers: Vec<_> = (0..4)
///     .map(|i| {
///         let heap = heap.clone();
///         std::thread::spawn(move || heap.alloc(i * 10))
///     })
///     .collect();
/// let objects: Vec<_> = workers.into_iter().map(|t| t.join().unwrap()).collect();
/// assert_eq!(objects.iter().map(|o| **o).sum::<i32>(), 60);
/// ```
pub struct Heap {
    pub(crate) state: NonNull<HeapState>,
}

// SAFETY: the heap's state is all atomics and mutexes; a `Heap` handle is a counted reference.
unsafe impl Send for Heap {}
// SAFETY: as above.
unsafe impl Sync for Heap {}

impl Default for Heap {
    fn default() -> Self {
        Heap::new()
    }
}

impl Clone for Heap {
    fn clone(&self) -> Heap {
        self.st().refs.fetch_add(1, Relaxed);
        self.st().handles.fetch_add(1, Relaxed);
        Heap { state: self.state }
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        self.st().handles.fetch_sub(1, Relaxed);
        // SAFETY: this handle owns one reference and is gone after this.
        unsafe { release_refs(self.state, 1) };
    }
}

impl std::fmt::Debug for Heap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("sync::Heap")
            .field("live_objects", &self.live_objects())
            .finish()
    }
}

impl Heap {
    /// A new, empty heap.
    pub fn new() -> Heap {
        Heap {
            state: HeapState::new_leaked(release),
        }
    }

    pub(crate) fn st(&self) -> &HeapState {
        // SAFETY: this handle holds a reference of the state.
        unsafe { self.state.as_ref() }
    }

    /// Moves `value` into a new object on this heap, owned by the calling thread.
    ///
    /// If the type has a Shared finalizer (`#[reap(sync_finalize)]`) and the value wants it
    /// ([`Finalize::wants_finalizer`](crate::sync::Finalize::wants_finalizer)), the object
    /// runs it once before it dies.
    #[inline]
    pub fn alloc<T: Trace + Send + Sync>(&self, value: T) -> Gc<T> {
        // The common case, with no call (so no stack frame): a type with no finalizer, on a
        // thread attached to this heap with nothing pending, whose slab, reserve and
        // allocation count each have room (`state::take_fast`).
        #[cfg(not(reap_loom))]
        if T::sync_finalizer().is_none() {
            if let Some((me, s)) = thread::cached(self.state) {
                // SAFETY: the attachment outlives this call.
                let st = unsafe { s.as_ref() };
                if st.pending.load(Acquire) == 0 {
                    let layout = vtable_of_shared::<T>().shared_layout;
                    if let Some(base) = take_fast(st, layout, T::needs_trace()) {
                        // SAFETY: a fresh slab block of `T`'s class, with its heap reference
                        // taken from the reserve; this handle keeps the heap alive.
                        return unsafe {
                            init_object(self.state, me, base.as_ptr(), true, || value, false, false)
                        };
                    }
                }
            }
        }
        self.alloc_slow(value)
    }

    /// [`Heap::alloc`] past its fast path: attaches, runs the safe point's pending work, and
    /// allocates on the whole path (which refills the slab, the reserve, and flushes the
    /// allocation count), or through the gate on a detached thread.
    #[inline(never)]
    fn alloc_slow<T: Trace + Send + Sync>(&self, value: T) -> Gc<T> {
        let finalized = T::sync_finalizer().is_some() && value.wants_finalizer();
        let (me, state) = thread::attach(self.state);
        let Some(s) = state else {
            return self.alloc_unattached(value, finalized);
        };
        // SAFETY: the attachment outlives this call.
        let st = unsafe { s.as_ref() };
        if st.pending.load(Acquire) != 0 {
            self.run_pending(st);
        }
        // SAFETY: this handle keeps the heap alive.
        unsafe { alloc_on(self.state, me, state, || value, finalized, false) }
    }

    /// A safe point with work to do (this thread's state `s`): merges the queue, parks if a
    /// collection asks, and collects if this thread's allocations made one due.
    #[cold]
    #[inline(never)]
    fn run_pending(&self, s: &ThreadState) {
        thread::safepoint(self.state, s);
        if s.pending.load(Relaxed) & PENDING_GC != 0 {
            s.pending.fetch_and(!PENDING_GC, Relaxed);
            self.collect_automatically();
        }
    }

    /// [`Heap::alloc`] on a thread that is detached (or exiting): a merged object from the
    /// global allocator, made inside the gate so that no collection is running meanwhile.
    #[cold]
    #[inline(never)]
    fn alloc_unattached<T: Trace + Send + Sync>(&self, value: T, finalized: bool) -> Gc<T> {
        thread::gated(self.state, || {
            // SAFETY: this handle keeps the heap alive.
            unsafe { alloc_on(self.state, NO_OWNER, None, || value, finalized, false) }
        })
    }

    /// Sets (or with `None` removes) the hook that receives the panics the runtime caught on
    /// this heap's objects: in finalizers, weak-reference callbacks and `Drop`s. Without one,
    /// each is printed to stderr. The hook runs on the thread where the panic was caught, with
    /// no runtime lock held.
    ///
    /// ```
    /// use reap::sync::{Heap, Weak};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let heap = Heap::new();
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let s = seen.clone();
    /// heap.set_unraisable_hook(Some(Arc::new(move |u: &reap::Unraisable| {
    ///     s.lock().unwrap().push(u.message.clone());
    /// })));
    /// let obj = heap.alloc(1_u32);
    /// let _w = Weak::with_callback(&obj, |_| panic!("boom"));
    /// drop(obj);
    /// assert_eq!(*seen.lock().unwrap(), ["boom"]);
    /// ```
    pub fn set_unraisable_hook(&self, hook: Option<SharedUnraisableHook>) {
        let old = std::mem::replace(&mut *lock(&self.st().hook), hook);
        // The old hook's captures are user code: dropped with no lock held.
        if let Some(p) = drop_guarded(old) {
            drop_payload(p);
        }
    }

    /// Merges now what other threads queued to this thread (the references they dropped to
    /// objects this thread owns), running the deaths that result. An owner thread does this
    /// by itself when it allocates, detaches or exits; a thread that runs long without
    /// allocating calls this to free such objects promptly. Also parks if a collection asks,
    /// and runs the automatic collection this thread's allocations made due, if any (SEMANTICS
    /// 8.5a).
    pub fn safepoint(&self) {
        if let (_, Some(s)) = thread::attach(self.state) {
            // SAFETY: the attachment outlives this call.
            let s = unsafe { s.as_ref() };
            if s.pending.load(Acquire) != 0 {
                self.run_pending(s);
            }
        }
    }

    /// Runs `f` with this thread detached from the heap: the equivalent of CPython's
    /// `Py_BEGIN_ALLOW_THREADS` / `Py_END_ALLOW_THREADS` around a blocking call. The thread
    /// merges its queue before and after. A detached thread must not wait on another thread's
    /// collection (none waits on it); it may still use handles. Called from a `Trace` impl
    /// while its thread holds a world stopped (against [`Trace`](crate::Trace)'s contract),
    /// `f` runs attached: detaching then would wait for that very stop.
    ///
    /// ```
    /// use reap::sync::Heap;
    ///
    /// let heap = Heap::new();
    /// let line = heap.detached(|| "read from a socket, say".to_string());
    /// assert_eq!(heap.attached_threads(), 1);
    /// # drop(line);
    /// ```
    pub fn detached<R>(&self, f: impl FnOnce() -> R) -> R {
        thread::detached(self.state, f)
    }

    /// How many threads are attached to this heap (have used it and not exited).
    pub fn attached_threads(&self) -> usize {
        lock(&self.st().threads).len()
    }

    /// How many of this heap's objects are alive. Exact when no other thread changes the
    /// heap meanwhile: allocates or frees, clones or drops a `Heap`, or runs a handle
    /// operation without being attached (inside the heap's gate). Threads that attach or exit
    /// meanwhile are accounted for at every step (though an exiting thread's merges may free
    /// objects), so the count is exact right after `std::thread::scope` returns, while the
    /// joined threads may still be running their thread-local destructors.
    pub fn live_objects(&self) -> usize {
        let st = self.st();
        let table = lock(&st.threads);
        let reserves: usize = table
            .values()
            .map(|s| s.state().reserve.load(Relaxed))
            .sum();
        // Read-modify-writes read the latest value, whatever this thread has seen of others'.
        let word = st.refs.fetch_add(0, AcqRel);
        // The references, and how many of them are threads' that left the table (their
        // leaving mark and their reference go in one subtraction).
        let (refs, leaving) = (
            (word & REFS_MASK) as usize,
            (word >> LEAVING_SHIFT) as usize,
        );
        let handles = st.handles.fetch_add(0, AcqRel);
        // A stale reserve read can only make the sum too large: never below zero.
        refs.saturating_sub(handles + table.len() + leaving + reserves)
    }
}

/// Adds one reference to `h` on this thread.
#[inline]
pub(crate) fn inc_ref(h: &SharedHeader) {
    let (me, cur) = thread::hot();
    // The owner first, with no heap check (as `count::dec_fast`): an object names only the
    // thread that allocated it, which stays attached to that heap until its exit, and whose
    // id is `NO_OWNER` (named by no object) while it is detached from any heap.
    if count::inc_if_owner(h, me) {
        return;
    }
    if h.heap.get().as_ptr().cast_const().cast() == cur {
        inc_foreign(h);
    } else {
        thread::with_access(h.heap.get().cast(), |me| {
            if !count::inc_if_owner(h, me) {
                inc_foreign(h);
            }
        });
    }
}

/// A clone by a thread that does not own the object: one more reference in the shared count,
/// and, if the object's finalizer runs on the refcount path meanwhile (its mark set), the end
/// of the refusal of other threads' upgrades, unless this thread may be the finalizer's.
///
/// A thread other than the finalizer's holds a handle to a finalizing object only because the
/// finalizer handed one out (stored it where this thread took it): the object is resurrected,
/// and on the free-threaded build this clone, an increment of the shared count, makes its
/// weak upgrades succeed at once (SEMANTICS 8.3), this thread's own included. The finalizer's
/// own clones (the shared count's too, with no owner id or inside `Heap::detached`) must not:
/// they resurrect nothing unless stored.
#[inline]
fn inc_foreign(h: &SharedHeader) {
    count::inc_shared(h);
    // The word this thread predicts for its next decrement: one more than it remembers,
    // computed from what it remembers rather than from the `fetch_add`'s result, which would
    // make the decrement's compare-and-swap wait for it.
    thread::predict_clone(std::ptr::from_ref(h));
    if h.is_finalizing() {
        cloned_while_finalizing(h);
    }
}

/// [`inc_foreign`]'s rare case: the object's finalizer runs on the refcount path.
///
/// Lifting the mark outside the weak lock is safe: this thread holds a counted handle, so
/// the object cannot be found dead until that reference goes, after this; and once the
/// finalizer has returned, `count::resurrect_end` (under the lock, where upgrades run) sets
/// the mark again before it leaves a dead object's word looking alive.
#[cold]
#[inline(never)]
fn cloned_while_finalizing(h: &SharedHeader) {
    if !thread::may_finalize(h) {
        h.set_gc_bit(GC_FINALIZING, false);
    }
}

/// Drops one reference to `obj` on this thread; runs its death if that was the last.
///
/// # Safety
/// The caller owns one reference to `obj` and gives it up.
#[inline]
pub(crate) unsafe fn dec_ref(obj: NonNull<SharedHeader>) {
    let (me, cur) = thread::hot();
    // SAFETY: the caller's reference keeps the object allocated.
    // Past the inlined common case: two out-of-line paths, each kept free of a stack frame in
    // its own common case.
    match count::dec_fast(unsafe { obj.as_ref() }, me) {
        Rest::Done => {}
        // SAFETY: the caller's reference, not yet dropped.
        Rest::Owner => unsafe { dec_ref_owner(obj) },
        // SAFETY: as above.
        Rest::Foreign => unsafe { dec_ref_foreign(obj, me, cur) },
    }
}

/// [`dec_ref`] of the owner's last local reference (the caller's load of `owner` named this
/// thread), out of line, with no stack frame on the way to the fast death.
///
/// # Safety
/// As [`dec_ref`].
#[inline(never)]
unsafe fn dec_ref_owner(obj: NonNull<SharedHeader>) {
    // SAFETY: the caller's reference keeps the object allocated.
    let h = unsafe { obj.as_ref() };
    // SAFETY: the caller's reference.
    unsafe { settle(obj, count::dec_owner(h, weak::none_listed)) }
}

/// The owner's last drop of a weak-reference object that no other thread counts
/// ([`Dec::WeakZero`]): [`weak::dies_unlisted`] decides under its referent's lock; if dead
/// (and unlisted there), its death, else the merge. Out of line, and reached by a jump with
/// nothing to restore: the owner's other last drops keep their path free of a stack frame.
///
/// The death of a reference with no callback, no finalizer and its value whole runs no user
/// code and frees nothing but the object's memory (a `WeakRefObj` without a callback has
/// nothing to drop): it skips the trashcan (no death can follow from it) and the steps of
/// [`destroy`] that do not apply (about 25 instructions of every weak reference's death).
/// Any other takes the general death, [`release`]. The death runs here, after the decrement's
/// functions have returned: their arguments borrow the header, which must not outlive its
/// memory (Miri's protectors flagged a first version that freed it from inside).
///
/// # Safety
/// `obj` is the header of a weak-reference object (with the provenance of the whole object)
/// whose owner's count this thread just took to zero, with no other reference counted.
#[inline(never)]
unsafe fn weakref_zero(obj: NonNull<SharedHeader>) {
    // SAFETY: as this function's (caller).
    if !unsafe { weak::dies_unlisted(obj) } {
        // SAFETY: the caller's reference keeps the object allocated.
        let then = count::merge_weak_taken(unsafe { obj.as_ref() });
        // SAFETY: the reference the caller's decrement dropped.
        return unsafe { settle(obj, then) };
    }
    // SAFETY: dead, allocated until freed below.
    let h = unsafe { obj.as_ref() };
    // The value is read only if the collection has not dropped it.
    // SAFETY: a weak-reference object, its value whole.
    if h.has(Flags::HAS_FINALIZER | Flags::VALUE_DROPPED) || unsafe { weak::has_callback(obj) } {
        // SAFETY: its count reached zero here, and its death has not begun.
        return unsafe { release(obj) };
    }
    // As `destroy`'s: every other thread's use of the object happened before this.
    let _ = h.counts.load(Acquire);
    let (_, state) = thread::current(heap_of(h));
    // It has no weak-info block: `dies_unlisted` looked under the lock, and nobody can make
    // one now (that takes a strong reference, and there is none, nor a listing to take one
    // from). `free_object` would clear one first all the same (`clear_weak`), as `destroy`
    // does, at the cost of the tag's test it makes anyway.
    debug_assert!(!h.has_weak_info());
    // SAFETY: dead and unreferenced, unlisted; its value has nothing to drop.
    unsafe { free_object(obj, state, true, true) };
}

/// [`dec_ref`] by a thread other than the owner (`cur`: the heap this thread's cache says it
/// is attached to).
///
/// # Safety
/// As [`dec_ref`].
#[inline(never)]
unsafe fn dec_ref_foreign(obj: NonNull<SharedHeader>, me: u32, cur: *const HeapState) {
    // SAFETY: the caller's reference keeps the object allocated.
    let h = unsafe { obj.as_ref() };
    if h.heap.get().as_ptr().cast_const().cast() != cur {
        // Not attached to the object's heap (as far as the cache says): the gate.
        // SAFETY: the caller's reference.
        return unsafe { dec_ref_gated(obj) };
    }
    if h.gc_bits.load(Relaxed) & GC_RECLAIM != 0 {
        // SAFETY: `cur` is the object's heap (checked above), which the reference keeps.
        let heap = unsafe { &*cur };
        // `reclaimer` is never `NO_OWNER` (`collect::reclaim`), the id every thread in a
        // detached section has: only the reclaiming thread itself matches.
        if heap.gc.reclaimer.load(Relaxed) == me {
            debug_assert_ne!(me, NO_OWNER);
            // The collection's hold keeps the object (and merged) until its give-back, which
            // this thread runs after the last value is dropped: a plain increment of a field
            // only this thread writes now. (Inline: once an edge of the garbage, the
            // collection's own drops.)
            h.local.store(h.local.load(Relaxed) + 1, Relaxed);
            return;
        }
        // SAFETY: the caller's reference.
        return unsafe { dec_ref_reclaiming(obj, me) };
    }
    // One `fetch_sub` for a merged object (`Arc`'s drop); for one another thread owns, a
    // compare-and-swap from the word this thread predicts (`thread::word_guess`), if it has
    // a prediction for this object, else from a load. The rest out of line. The prediction
    // is kept by address (`obj`'s, never `h`: once the decrement is published, another
    // thread may free the object, and a reference to it must not be used, even as an
    // address).
    let addr = obj.as_ptr().cast_const();
    match count::dec_shared_fast(h, || thread::word_guess(addr)) {
        count::Fast::Alive => {}
        count::Fast::AliveFrom(word) => thread::remember_word(addr, word),
        // SAFETY: the count reached zero here: the death is ours.
        count::Fast::Dead => unsafe { release(obj) },
        // SAFETY: the caller's reference (nothing was done with it).
        count::Fast::Slow => unsafe { dec_ref_shared_slow(obj) },
    }
}

/// [`dec_ref_foreign`] past [`count::dec_shared_fast`], which did nothing: the whole
/// [`count::dec_shared`].
///
/// # Safety
/// As [`dec_ref`].
#[inline(never)]
unsafe fn dec_ref_shared_slow(obj: NonNull<SharedHeader>) {
    // SAFETY: the caller's reference keeps the object allocated.
    let h = unsafe { obj.as_ref() };
    // SAFETY: the caller's reference.
    unsafe { settle(obj, count::dec_shared(h)) }
}

/// [`dec_ref_foreign`] of an object of a collection's final garbage whose values are being
/// dropped ([`GC_RECLAIM`]), by a thread other than the one dropping them (a `Drop` handed it
/// a clone): the usual merged decrement. (On the reclaiming thread, `dec_ref_foreign` counts
/// the reference in the object's `local`, 0 for a merged object otherwise, which the hold's
/// give-back subtracts.)
///
/// # Safety
/// As [`dec_ref`]; this thread is attached to the object's heap as `me`.
#[cold]
#[inline(never)]
unsafe fn dec_ref_reclaiming(obj: NonNull<SharedHeader>, me: u32) {
    // SAFETY: the caller's reference keeps the object allocated.
    let h = unsafe { obj.as_ref() };
    // SAFETY: the caller's reference.
    unsafe { settle(obj, count::dec(h, me)) }
}

/// [`dec_ref`] on a thread the cache does not name as attached to `obj`'s heap: the
/// decrement runs inside [`thread::with_access`] (directly if the thread is attached after
/// all, otherwise through the heap's gate).
///
/// # Safety
/// As [`dec_ref`].
#[inline(never)]
unsafe fn dec_ref_gated(obj: NonNull<SharedHeader>) {
    // SAFETY: the caller's reference keeps the object allocated.
    let heap = heap_of(unsafe { obj.as_ref() });
    // The closure captures the pointer, not a reference to the header: the death it may run
    // frees the object, which a reference held across the call must not cover.
    thread::with_access(heap, move |me| {
        // SAFETY: the caller's reference keeps the object allocated until it is dropped here.
        let h = unsafe { obj.as_ref() };
        // SAFETY: as above.
        unsafe { settle(obj, count::dec(h, me)) }
    });
}

/// Does what a decrement of `obj` left to do.
///
/// # Safety
/// The decrement was of the caller's reference, on this thread.
#[inline]
unsafe fn settle(obj: NonNull<SharedHeader>, then: Dec) {
    match then {
        Dec::Alive => {}
        // SAFETY: the count reached zero here: the death is ours.
        Dec::Dead => unsafe { release(obj) },
        // SAFETY: the owner's last drop of a weak-reference object no other thread counts.
        Dec::WeakZero => unsafe { weakref_zero(obj) },
        // SAFETY: the dropped reference now belongs to the queue entry.
        Dec::Queue(owner) => unsafe { thread::queue(obj, owner) },
    }
}

/// Called when an object's count has just reached zero: runs its death, through this thread's
/// trashcan (deep chains of deaths are deferred, so the stack stays bounded).
///
/// # Safety
/// `obj`'s count is zero and its death has not begun.
#[cold]
#[inline(never)]
pub(crate) unsafe fn release(obj: NonNull<SharedHeader>) {
    thread::with_trashcan(obj, destroy);
}

/// The death of an object, in CPython's order (SEMANTICS 3.1): the finalizer (once, with a
/// temporary reference; if it resurrects the object, stop), then every weak reference cleared
/// and the callbacks of those still alive run, newest first, then the value dropped and the
/// memory freed. User code runs with no runtime lock held, and its panics go to the hook.
///
/// # Safety
/// As [`release`].
// Inlined into `release`, its one direct caller: out of line, its entry and exit cost every
// death about 16 instructions (the trashcan's deferred deaths call a copy through the pointer).
#[inline(always)]
unsafe fn destroy(obj: NonNull<SharedHeader>) {
    // SAFETY: a dead object is allocated until this function frees it.
    let h = unsafe { obj.as_ref() };
    // Every other thread's use of the object happened before its last reference went: an
    // acquire load of `counts`, which every decrement changed by a read-modify-write (a
    // release), rather than a fence, which ThreadSanitizer does not model (as std's `Arc`
    // under it).
    let _ = h.counts.load(Acquire);
    let heap = heap_of(h);
    let vt = vtable(h);
    // An attached thread's state (its slab, its reserve); a thread inside the gate has none.
    let (me, state) = thread::current(heap);
    if h.has(Flags::VALUE_DROPPED) {
        // A zombie: its value was dropped by the collection that broke its cycle, while a
        // handle to it lived on (a `Drop` stored one). Only its memory is left to free.
        // SAFETY: dead, value dropped, and (its count is zero) unreferenced.
        return unsafe { free_object(obj, state, true, true) };
    }
    if h.has(Flags::HAS_FINALIZER) && !h.has(Flags::FINALIZED) {
        // With weak references, under the weak lock, where other threads' upgrades run: the
        // word goes from the merged zero of the death back to the all zero of an owned
        // object, which an upgrade tells from a living object's zero by the mark
        // `resurrect_start` sets (`count::try_inc`). Without, no other thread can reach the
        // object. No user code runs inside.
        // SAFETY: this thread's attachment, or its gate entry on a thread with none, keeps the
        // heap alive while the death runs, even once a resurrected object may be freed by
        // another thread (before the guards below are dropped).
        let hs = unsafe { heap.as_ref() };
        let guard = weak_guard(h, hs, obj);
        h.set(Flags::FINALIZED);
        count::resurrect_start(h, me);
        drop(guard);
        // Recorded whatever this thread's id: its upgrades of the object succeed though the
        // finalizing mark refuses other threads', also with no owner id, once the object is
        // merged in mid-finalizer, or inside a `Heap::detached` section.
        let recorded = thread::begin_finalizing(obj.as_ptr());
        let value = SharedHeader::value_ptr(obj);
        // SAFETY: the object is whole, and the temporary reference is the finalizer's.
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| unsafe { (vt.finalize_shared)(value) })) {
            hs.report_panic(UnraisableKind::Finalizer, (vt.type_name)(), p);
        }
        if recorded {
            thread::end_finalizing();
        }
        // Marked while the temporary reference still holds it: if the finalizer stored a
        // reference, where it stored it may be garbage (SEMANTICS 2.2).
        h.note_drop();
        // The verdict under the weak lock, whether or not the object has weak references
        // now: an upgrade sees the mark or the published verdict, never the mark cleared (or
        // lifted by another thread's clone, `inc_foreign`) while the count it would take is
        // being settled. Not only if it has weak references: a thread holding a handle the
        // finalizer gave out may make the first one after any check made here, and upgrade
        // through it between the verdict's read of an all-zero word and its setting of the
        // mark again (a use after free the seventeenth session's review found, loom model
        // 28). One uncontended lock more per refcount-path finalizer.
        let guard = hs.weak_lock(obj).lock();
        let dead = count::resurrect_end(h, me);
        drop(guard);
        if !dead {
            // Resurrected: somebody stored a reference; it dies again when that goes.
            return;
        }
        // As at the top: whatever the finalizer's reference met happened before this.
        let _ = h.counts.load(Acquire);
    }
    if h.has_weak_info() {
        // SAFETY: dead, with weak references: they are cleared and called back here.
        unsafe { weak::clear_and_call(obj) };
    }
    let value = SharedHeader::value_ptr(obj);
    if h.is_weakref() {
        // SAFETY: a dead weak-reference object, its value not yet dropped.
        unsafe { weak::unlist(value) };
    }
    h.set(Flags::VALUE_DROPPED);
    // SAFETY: dead and unreachable (no reference, no weak reference left): the value is
    // dropped once, here.
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| unsafe { (vt.drop_value)(value) })) {
        // SAFETY: the heap outlives the object, which is still allocated.
        unsafe { heap.as_ref() }.report_panic(UnraisableKind::Drop, (vt.type_name)(), p);
    }
    // SAFETY: dead, dropped, unreferenced; its weak references were cleared above.
    unsafe { free_object(obj, state, false, true) };
}

/// The weak lock of the dying object `obj` (header `h`, heap `hs`), taken if it has weak
/// references: `destroy`'s steps into and out of the finalizer run under it, where other
/// threads' upgrades do.
fn weak_guard<'h>(
    h: &SharedHeader,
    hs: &'h HeapState,
    obj: NonNull<SharedHeader>,
) -> Option<WeakGuard<'h>> {
    h.has_weak_info().then(|| hs.weak_lock(obj).lock())
}

/// Gives back a collection's hold on an object of its final garbage, on the collecting thread
/// (attached, its state `state`) once every value of the garbage is dropped: the refcount
/// path's decrement without its dispatch (a merged decrement, as the hold keeps the object
/// merged). A count that reaches zero frees the object at once (the value is dropped, so its
/// death is only the memory, and no deep chain of deaths can follow: nothing else runs but
/// callbacks of weak references made to it since the collection cleared the others).
///
/// An object freed by the common path (the hold its last reference, no weak reference) is
/// counted in `pending` and accounted by the caller, once for the whole garbage
/// ([`account_frees`]: the count of tracked objects and the heap reference the object held).
/// The other path may run user code (a weak reference's callback): it accounts for the
/// pending frees first, and for its own at once, so that what that code observes
/// (`Heap::live_objects`) is exact.
///
/// # Safety
/// `obj` is held by the collection (merged, `VALUE_DROPPED`), the hold given back once here;
/// `state` is this thread's attachment to `obj`'s heap; `pending` counts frees of this heap's
/// objects not yet accounted.
// Inlined into reclaim's loop: called once an object, out of line it saved and restored its
// registers each time (about 17 instructions an object).
#[inline(always)]
pub(crate) unsafe fn give_back_hold(
    obj: NonNull<SharedHeader>,
    state: NonNull<ThreadState>,
    pending: &mut usize,
) {
    // SAFETY: the collection's hold keeps the object allocated until it is given back here.
    let h = unsafe { obj.as_ref() };
    debug_assert!(h.has(Flags::VALUE_DROPPED));
    // This thread's drops deferred by the reclaim go back with the hold.
    let deferred = h.local.load(Relaxed);
    if count::hold_is_last(h, deferred) {
        // The last references: freed with no write to the header before (nothing reads it
        // again; `hold_is_last`'s `Acquire` load orders every other thread's last use
        // before the free).
        // SAFETY: dead, its value dropped, unreferenced, with no weak reference (so no user
        // code runs here). Accounted by the caller.
        unsafe { free_object(obj, Some(state), true, false) };
        *pending += 1;
        return;
    }
    // SAFETY: the frees counted in `pending` are this heap's (caller), which this thread's
    // attachment keeps alive.
    unsafe { account_frees(heap_of(h), state, std::mem::take(pending)) };
    // Another reference, or weak references: the deferral ends for this object. Plain
    // stores: this thread alone writes both fields now, and they come before the decrement
    // that may let another thread free the object.
    if deferred != 0 {
        h.local.store(0, Relaxed);
    }
    h.gc_bits
        .store(h.gc_bits.load(Relaxed) & !GC_RECLAIM, Relaxed);
    // Merged (the hold merged it, and keeps it so): one `fetch_sub`, whoever else holds it.
    if count::dec_hold(h, deferred) == Dec::Dead {
        // Every other thread's use of the object happened before its last reference went
        // (an acquire load rather than a fence, as in `destroy`).
        let _ = h.counts.load(Acquire);
        // SAFETY: dead, its value dropped, unreferenced; weak references made since the
        // collection cleared the others are cleared by `free_object` (their callbacks run).
        unsafe { free_object(obj, Some(state), true, true) };
    }
}

/// Accounts for `freed` tracked objects of `heap` freed by [`give_back_hold`] on this thread
/// (state `state`): the thread's count of tracked objects, and their heap references, given
/// back to the thread's reserve (the surplus to the heap). Once for a collection's garbage
/// rather than once an object (about 10 instructions an object).
///
/// The count is not flushed into the heap's here (`state::count_tracked`'s test is for steps
/// of one, and its product overflows for millions): the collection takes the thread's count
/// as soon as the reclaim returns (`collect::collect_claimed`).
#[inline]
///
/// # Safety
/// The thread's attachment keeps `heap` alive; `state` is this thread's state on it; each of
/// the `freed` objects' heap references is the caller's to give.
pub(crate) unsafe fn account_frees(
    heap: NonNull<HeapState>,
    state: NonNull<ThreadState>,
    freed: usize,
) {
    if freed == 0 {
        return;
    }
    // SAFETY: the attachment outlives the call (caller).
    let s = unsafe { state.as_ref() };
    let n = i32::try_from(freed).unwrap_or(i32::MAX);
    s.allocs
        .store(s.allocs.load(Relaxed).saturating_sub(n), Relaxed);
    // SAFETY: as this function's (caller).
    unsafe { give_back_object_refs(heap, Some(state), freed) };
}

/// Frees a dead object whose value has been dropped: clears its weak references first if
/// `clear_weak` (a zombie's, made after its collection cleared the others), frees its
/// weak-info block and its memory, and gives its heap reference back (on a thread whose state
/// on the heap is `state`).
///
/// Unless `account`, the caller accounts for the object afterwards (its count among the tracked
/// objects and its heap reference: [`account_frees`]).
///
/// # Safety
/// `obj` is dead (count zero), its value dropped, and nothing refers to it; if not `account`,
/// the caller gives its heap reference back (the heap must outlive the call otherwise).
// Inlined into both of its callers: out of line it costs the refcount path's deaths about 20
// instructions each.
#[inline(always)]
pub(crate) unsafe fn free_object(
    obj: NonNull<SharedHeader>,
    state: Option<NonNull<crate::sync::state::ThreadState>>,
    clear_weak: bool,
    account: bool,
) {
    // SAFETY: allocated until freed below.
    let h = unsafe { obj.as_ref() };
    let heap = heap_of(h);
    // One load of `meta` for the weak-info test and the vtable: a dead object's `meta` no
    // longer changes (a block is installed only by a holder of a strong reference).
    let meta = h.meta.load(Acquire);
    // SAFETY: the object's `meta`, its weak-info block (if tagged) still allocated.
    let vt = unsafe { vtable_of_meta(meta) };
    if meta.addr() & META_WEAK_INFO != 0 {
        if clear_weak {
            // A weak reference made to a zombie: cleared (its callbacks run) now.
            // SAFETY: dead, with weak references.
            unsafe { weak::clear_and_call(obj) };
        }
        // SAFETY: nothing refers to the object any more.
        unsafe { weak::free_info(h, state) };
    }
    if h.has(Flags::TRACKED) {
        if !h.in_slab.get() {
            // SAFETY: the object's reference keeps the heap alive.
            unsafe { heap.as_ref() }.forget_outside_slabs(obj);
        }
        if account {
            // SAFETY: as above; `state` is this thread's on the heap.
            unsafe { count_tracked(heap, state, -1) };
        }
    }
    let layout = vt.shared_layout;
    // SAFETY: the allocation started `value_offset` bytes before the value.
    let base = unsafe {
        SharedHeader::value_ptr(obj)
            .as_ptr()
            .sub(layout.value_offset)
    };
    // SAFETY: dead, dropped and unreferenced; the object's reference keeps the heap alive.
    unsafe { free_memory(h.in_slab.get(), base, layout, state) };
    if account {
        // The object's heap reference goes back to this thread's reserve, or to the heap.
        // SAFETY: the object's reference is ours to give; the heap is not used after.
        unsafe { give_back_object_ref(heap, state) };
    }
}
