//! The Shared-mode heap: its state ([`HeapState`]), allocation, the death of an object on the
//! refcount path (CPython's order, SEMANTICS 3.1), and reporting to the unraisable hook.
//!
//! **Lifetime.** The state is freed when its reference count `refs` reaches zero. `refs`
//! counts the [`Heap`] handles, the attached threads, and one per live object, so an object
//! can always reach its heap (the heap of the thread that drops it last may have been dropped
//! long ago). Counting one per object with an atomic on every allocation and free would make
//! two threads that allocate contend on one cache line, so each attached thread keeps a
//! *reserve* of references it took in advance: an allocation takes one from the reserve
//! (refilling it 1024 at a time), a free gives one back (returning the surplus past 2048). So
//! at every moment `refs = handles + attached threads + Σ reserves + live objects`, and a heap
//! with a live object is never freed. A thread returns its reserve when it exits.

use std::alloc::Layout;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::Arc;

use hashbrown::HashMap;

use crate::object::header::{Flags, META_WEAK_INFO};
use crate::object::shared::{Gc, SharedHeader, SHARED_HEADER_SIZE};
use crate::object::vtable::{vtable_of, VTable};
use crate::shim::{
    self, fence, lock, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Mutex, Ordering::*,
};
use crate::sync::count::{self, Dec};
use crate::sync::thread::{self, ThreadSlot, ThreadState};
use crate::sync::weak;
use crate::trace::Trace;
use crate::unraisable::{drop_guarded, drop_payload, message_of, print_unraisable, take_location};
use crate::{Unraisable, UnraisableKind};

/// How many heap references a thread takes at once for the objects it allocates.
const RESERVE_BATCH: usize = 1024;

/// The Shared unraisable hook: called on the thread where the panic was caught.
pub type SharedUnraisableHook = Arc<dyn Fn(&Unraisable) + Send + Sync>;

/// Number of weak-reference lock stripes.
#[cfg(not(reap_loom))]
const WEAK_STRIPES: usize = 64;
#[cfg(reap_loom)]
const WEAK_STRIPES: usize = 2;

/// All of a Shared heap's state. Reached from every object's header.
pub(crate) struct HeapState {
    /// See the module docs: handles + attached threads + reserves + live objects.
    pub(crate) refs: AtomicUsize,
    /// The [`Heap`] handles.
    handles: AtomicUsize,
    /// Thread id → the thread's state and merge queue.
    pub(crate) threads: Mutex<HashMap<u32, ThreadSlot>>,
    /// The unraisable hook (cloned out before it is called: no lock held while it runs).
    hook: Mutex<Option<SharedUnraisableHook>>,
    /// Weak-reference locks, striped by referent address (CPython 3.13t's `_PyWeakref_LOCK`).
    weak_locks: Box<[Mutex<()>]>,
}

impl HeapState {
    /// The weak-reference lock of the object with this header.
    pub(crate) fn weak_lock(&self, obj: NonNull<SharedHeader>) -> &Mutex<()> {
        &self.weak_locks[(obj.as_ptr().addr() >> 5) % WEAK_STRIPES]
    }

    /// Hands a caught panic to the hook (or prints it), with no lock held.
    pub(crate) fn report_panic(
        &self,
        kind: UnraisableKind,
        type_name: &'static str,
        payload: Box<dyn std::any::Any + Send>,
    ) {
        let message = message_of(&*payload);
        let mut report = Unraisable::new(kind, type_name, message);
        report.location = take_location(&report.message);
        report.payload = Some(payload);
        let hook = lock(&self.hook).clone();
        match hook {
            Some(h) => {
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| h(&report))) {
                    print_unraisable(&report);
                    drop_payload(p);
                }
                if let Some(p) = drop_guarded(h) {
                    drop_payload(p);
                }
            }
            None => print_unraisable(&report),
        }
        if let Some(p) = report.payload.take() {
            drop_payload(p);
        }
    }
}

/// Gives back `n` references of the heap; the last one frees it.
///
/// # Safety
/// The caller owns `n` of the heap's references and does not use the heap afterwards.
pub(crate) unsafe fn release_refs(heap: NonNull<HeapState>, n: usize) {
    // SAFETY: the caller's references keep the heap alive until this subtraction.
    let old = unsafe { heap.as_ref() }.refs.fetch_sub(n, Release);
    debug_assert!(old >= n, "reap: heap reference count underflow");
    if old == n {
        fence(Acquire);
        // SAFETY: that was the last reference: no handle, attached thread or object is left,
        // so nothing else can reach the state. It was made by `Box::new` in `Heap::new`.
        drop(unsafe { Box::from_raw(heap.as_ptr()) });
    }
}

/// A Shared-mode heap: `Send + Sync`, cheap to clone, usable from any number of threads.
///
/// Objects allocated on it are [`Gc`] handles that may be sent to and dropped on any thread.
/// A thread attaches to the heap the first time it uses it or one of its objects, and is
/// detached when it exits; nothing needs to be called first. Until part 2 of Shared mode lands,
/// Shared-mode cycles are not collected (as with `Arc`): break them by hand.
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
    state: NonNull<HeapState>,
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
        let state = Box::new(HeapState {
            refs: AtomicUsize::new(1),
            handles: AtomicUsize::new(1),
            threads: Mutex::new(HashMap::new()),
            hook: Mutex::new(None),
            weak_locks: (0..WEAK_STRIPES).map(|_| Mutex::new(())).collect(),
        });
        Heap {
            state: NonNull::from(Box::leak(state)),
        }
    }

    fn st(&self) -> &HeapState {
        // SAFETY: this handle holds a reference of the state.
        unsafe { self.state.as_ref() }
    }

    /// Moves `value` into a new object on this heap, owned by the calling thread.
    ///
    /// If the type has a Shared finalizer (`#[reap(sync_finalize)]`) and the value wants it
    /// ([`Finalize::wants_finalizer`](crate::sync::Finalize::wants_finalizer)), the object
    /// runs it once before it dies.
    pub fn alloc<T: Trace + Send + Sync>(&self, value: T) -> Gc<T> {
        let finalized = T::sync_finalizer().is_some() && value.wants_finalizer();
        let (me, state) = thread::attach(self.state);
        if let Some(s) = state {
            // SAFETY: the attachment outlives this call.
            thread::safepoint(self.state, unsafe { s.as_ref() });
        }
        // SAFETY: this handle keeps the heap alive.
        unsafe { alloc_on(self.state, me, state, value, finalized) }
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
    /// allocating calls this to free such objects promptly.
    pub fn safepoint(&self) {
        if let (_, Some(s)) = thread::attach(self.state) {
            // SAFETY: the attachment outlives this call.
            thread::safepoint(self.state, unsafe { s.as_ref() });
        }
    }

    /// Runs `f` with this thread detached from the heap: the equivalent of CPython's
    /// `Py_BEGIN_ALLOW_THREADS` / `Py_END_ALLOW_THREADS` around a blocking call. The thread
    /// merges its queue before and after. A detached thread must not wait on another thread's
    /// collection (none waits on it); it may still use handles.
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

    /// How many of this heap's objects are alive. Exact when no other thread allocates or
    /// frees meanwhile.
    pub fn live_objects(&self) -> usize {
        let st = self.st();
        let table = lock(&st.threads);
        let reserves: usize = table.values().map(|s| s.state.reserve.load(Relaxed)).sum();
        // Read-modify-writes read the latest value, whatever this thread has seen of others'.
        let refs = st.refs.fetch_add(0, AcqRel);
        let handles = st.handles.fetch_add(0, AcqRel);
        refs - handles - table.len() - reserves
    }
}

/// Allocates `value` on `heap`, owned by thread `me` (or merged, if `me` is `NO_OWNER`).
///
/// # Safety
/// Something keeps `heap` alive for the call; `state` is thread `me`'s state on it.
pub(crate) unsafe fn alloc_on<T: Trace + Send + Sync>(
    heap: NonNull<HeapState>,
    me: u32,
    state: Option<NonNull<ThreadState>>,
    value: T,
    finalized: bool,
) -> Gc<T> {
    let vt = vtable_of::<T>();
    let layout = vt.shared_layout;
    // SAFETY: the layout has a non-zero size (it holds the header).
    let base = unsafe { shim::alloc(layout.layout) };
    if base.is_null() {
        std::alloc::handle_alloc_error(layout.layout);
    }
    // One heap reference for the new object, from the thread's reserve.
    match state {
        Some(s) => {
            // SAFETY: the attachment outlives this call.
            let s = unsafe { s.as_ref() };
            let mut r = s.reserve.load(Relaxed);
            if r == 0 {
                // SAFETY: the caller keeps the heap alive.
                unsafe { heap.as_ref() }
                    .refs
                    .fetch_add(RESERVE_BATCH, Relaxed);
                r = RESERVE_BATCH;
            }
            s.reserve.store(r - 1, Relaxed);
        }
        // SAFETY: as above.
        None => _ = unsafe { heap.as_ref() }.refs.fetch_add(1, Relaxed),
    }
    let (counts, local) = count::initial(me);
    // SAFETY: the value offset is within the allocation and leaves room for the header in
    // front of it (ObjectLayout's rule).
    let value_ptr = unsafe { base.add(layout.value_offset) }.cast::<T>();
    // SAFETY: in bounds (as above), and suitably aligned: the header's alignment divides the
    // value offset's.
    let header = unsafe { value_ptr.cast::<u8>().sub(SHARED_HEADER_SIZE) }.cast::<SharedHeader>();
    let flags = if finalized {
        Flags::HAS_FINALIZER
    } else {
        Flags::empty()
    };
    // SAFETY: freshly allocated, properly aligned memory of the object's layout.
    unsafe {
        header.write(SharedHeader {
            heap: heap.cast(),
            counts: AtomicU64::new(counts),
            meta: AtomicPtr::new((vt as *const VTable).cast_mut().cast()),
            local: AtomicU32::new(local),
            flags: AtomicU8::new(flags.bits()),
        });
        value_ptr.write(value);
    }
    // SAFETY: a live object with one reference, given to the handle.
    unsafe { Gc::from_value_ptr(NonNull::new_unchecked(value_ptr)) }
}

/// The object's vtable, through its weak-info block if it has one.
pub(crate) fn vtable(h: &SharedHeader) -> &'static VTable {
    let meta = h.meta.load(Acquire);
    if meta.addr() & META_WEAK_INFO == 0 {
        // SAFETY: an untagged `meta` is a `&'static VTable` (header invariant).
        unsafe { &*meta.cast::<VTable>() }
    } else {
        // SAFETY: a tagged `meta` points to the object's weak-info block, whose first field
        // is its vtable (`sync::weak::WeakInfo` is `repr(C)`, `vtable` first); the block lives
        // as long as the object's allocation.
        unsafe {
            *meta
                .map_addr(|a| a & !META_WEAK_INFO)
                .cast::<&'static VTable>()
        }
    }
}

/// The heap of an object.
pub(crate) fn heap_of(h: &SharedHeader) -> NonNull<HeapState> {
    h.heap.cast()
}

/// Drops one reference to `obj` on this thread; runs its death if that was the last.
///
/// # Safety
/// The caller owns one reference to `obj` and gives it up.
#[inline]
pub(crate) unsafe fn dec_ref(obj: NonNull<SharedHeader>) {
    // SAFETY: the caller's reference keeps the object allocated.
    match count::dec(unsafe { obj.as_ref() }, thread::current_id()) {
        Dec::Alive => {}
        // SAFETY: the count reached zero here: the death is ours.
        Dec::Dead => unsafe { release(obj) },
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
unsafe fn destroy(obj: NonNull<SharedHeader>) {
    // Every other thread's use of the object happened before its last reference went.
    fence(Acquire);
    // SAFETY: a dead object is allocated until this function frees it.
    let h = unsafe { obj.as_ref() };
    let heap = heap_of(h);
    let vt = vtable(h);
    let (me, state) = thread::attach(heap);
    if h.has(Flags::HAS_FINALIZER) && !h.has(Flags::FINALIZED) {
        h.set(Flags::FINALIZED);
        let weak = h.meta.load(Relaxed).addr() & META_WEAK_INFO != 0;
        count::resurrect_start(h, me, weak);
        let value = SharedHeader::value_ptr(obj);
        // SAFETY: the object is whole, and the temporary reference is the finalizer's.
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| unsafe { (vt.finalize_shared)(value) })) {
            // SAFETY: the object is alive (the temporary reference holds it).
            unsafe { heap.as_ref() }.report_panic(UnraisableKind::Finalizer, (vt.type_name)(), p);
        }
        if !count::resurrect_end(h, me) {
            // Resurrected: somebody stored a reference; it dies again when that goes.
            return;
        }
        fence(Acquire);
    }
    if h.meta.load(Relaxed).addr() & META_WEAK_INFO != 0 {
        // SAFETY: dead, with weak references: they are cleared and called back here.
        unsafe { weak::clear_and_call(obj) };
    }
    h.set(Flags::VALUE_DROPPED);
    let value = SharedHeader::value_ptr(obj);
    // SAFETY: dead and unreachable (no reference, no weak reference left): the value is
    // dropped once, here.
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| unsafe { (vt.drop_value)(value) })) {
        // SAFETY: the heap outlives the object, which is still allocated.
        unsafe { heap.as_ref() }.report_panic(UnraisableKind::Drop, (vt.type_name)(), p);
    }
    // SAFETY: nothing refers to the object any more.
    unsafe { weak::free_info(h) };
    let layout: Layout = vt.shared_layout.layout;
    // SAFETY: the allocation started `value_offset` bytes before the value, with this layout.
    unsafe { shim::dealloc(value.as_ptr().sub(vt.shared_layout.value_offset), layout) };
    // The object's heap reference goes back to this thread's reserve, or to the heap.
    match state {
        Some(s) => {
            // SAFETY: the attachment outlives this call.
            let s = unsafe { s.as_ref() };
            let r = s.reserve.load(Relaxed) + 1;
            if r > 2 * RESERVE_BATCH {
                s.reserve.store(r - RESERVE_BATCH, Relaxed);
                // SAFETY: the thread's reserve held these references; the attachment keeps
                // one more, so this never frees the heap.
                unsafe { release_refs(heap, RESERVE_BATCH) };
            } else {
                s.reserve.store(r, Relaxed);
            }
        }
        // SAFETY: the object's reference, given back; the heap is not used after.
        None => unsafe { release_refs(heap, 1) },
    }
}
