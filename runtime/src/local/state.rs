//! The Local heap's state ([`HeapInner`]) and what every Local module needs of it: the
//! thread's registry of heaps (an object finds its heap through its header's slot), runtime
//! frames (which keep a heap's state allocated while user code runs), reports to the
//! unraisable hook, and returning an object's memory. The state's field types are defined here
//! or below (`gcstate`, the object layer), so the modules that work on the state (`roots`,
//! `weak`, `heap`, `gc/*`, `weakref/*`) import it without importing each other in a circle.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use reap_collector::Generations;

use crate::object::header::{Flags, Header, Links};
use crate::object::vtable::VTable;
use crate::unraisable::{drop_guarded, drop_payload, print_unraisable};
pub use crate::unraisable::{Unraisable, UnraisableHook, UnraisableKind};

/// All the state of one heap.
pub(crate) struct HeapInner {
    /// Slot of this heap in the thread's registry; the `heap` field of its objects' headers.
    pub(crate) slot: u16,
    /// `Header::candidate_key(slot)`, for the collector's tracer.
    pub(crate) candidate_key: u32,
    /// Generation lists 0, 1, 2 and the permanent set, each a circular list head.
    pub(crate) lists: [Links; 4],
    pub(crate) gens: Generations,
    /// Memory for small objects.
    pub(crate) slabs: crate::object::slab::Slabs,
    /// Collection callbacks, debug flags, the garbage list.
    pub(crate) gcmod: crate::local::gcstate::GcModule,
    /// Pending `finalize` registrations, oldest first (they keep themselves alive here).
    pub(crate) finalizers: RefCell<Vec<(u64, std::rc::Rc<dyn Registered>)>>,
    pub(crate) next_finalizer_id: Cell<u64>,
    /// Nesting of `Heap::without_collection` scopes: automatic collection waits while above 0.
    pub(crate) no_collect: Cell<u32>,
    /// Whether an object of a type with a clear hook was ever allocated here (else collections
    /// skip the clear phase).
    pub(crate) clear_hooks: Cell<bool>,
    /// Objects allocated and not yet freed.
    pub(crate) live: Cell<usize>,
    /// Objects in the lists (generations and the permanent set): the population a full
    /// collection from possible roots counts as survivors without looking at them.
    pub(crate) listed: Cell<usize>,
    /// The record of possible roots, for full collections (`roots`).
    pub(crate) possible_roots: PossibleRoots,
    /// Current nesting of object deaths.
    pub(crate) depth: Cell<u32>,
    /// Runtime frames on the stack that use this heap and may run user code (see [`Frame`]).
    pub(crate) frames: Cell<u32>,
    /// While reclaim drops the garbage's values: how many untracked weak-reference objects died
    /// (counted as collected, as CPython counts the weak references in its garbage).
    pub(crate) reclaim_weakrefs: Cell<Option<usize>>,
    /// Finalizers run by collections so far (shutdown goes on while a round runs any: one that
    /// only resurrected can still have made new garbage).
    pub(crate) finalizers_run: Cell<u64>,
    /// Deaths deferred past `TRASHCAN_DEPTH`, drained by the outermost death.
    pub(crate) deferred: RefCell<Vec<NonNull<Header>>>,
    /// The `Heap` handle was dropped: free this when `live` reaches 0 and no frame is active.
    pub(crate) closed: Cell<bool>,
    /// The embedder's data (`Heap::set_user_data`), for user code that runs inside the
    /// runtime (finalizers, callbacks) to reach the interpreter.
    pub(crate) data: RefCell<Option<std::rc::Rc<dyn std::any::Any>>>,
    /// The unraisable hook, shared so that a report can call it with no borrow held (the hook
    /// may replace itself, or report again).
    pub(crate) hook: RefCell<Option<std::rc::Rc<UnraisableHook>>>,
    /// Statistics: objects allocated and freed since the heap was made.
    pub(crate) allocated: Cell<u64>,
    pub(crate) freed: Cell<u64>,
}

/// This thread's heaps, by slot (`None`: a free slot).
type Registry = Vec<Option<NonNull<HeapInner>>>;

thread_local! {
    /// This thread's registry of heaps, made on first use and freed when its last heap goes.
    ///
    /// A raw pointer in a `Cell`: a thread-local without drop glue has no destructor, so it
    /// stays usable while other thread-locals are destroyed at thread exit (a `Gc` or `Heap`
    /// kept in a user's `thread_local!` can still die then). Only `Heap::new` and `free_heap`
    /// change the registry, and neither runs user code while they do; readers copy one entry
    /// out and let go at once.
    static REGISTRY: Cell<*mut Registry> = const { Cell::new(std::ptr::null_mut()) };
}

pub(crate) fn registry_get(slot: usize) -> Option<NonNull<HeapInner>> {
    REGISTRY
        .try_with(|r| {
            let p = r.get();
            if p.is_null() {
                return None;
            }
            // SAFETY: a non-null registry pointer is the live box made by `registry_update`;
            // this read copies one entry out and keeps no reference.
            unsafe { (&*p).get(slot).copied().flatten() }
        })
        .ok()
        .flatten()
}

/// Every heap of this thread, as the registry holds them.
pub(crate) fn registry_all() -> Vec<NonNull<HeapInner>> {
    REGISTRY
        .try_with(|r| {
            let p = r.get();
            if p.is_null() {
                return Vec::new();
            }
            // SAFETY: as in `registry_get`; the entries are copied out.
            unsafe { (&*p).iter().flatten().copied().collect() }
        })
        .unwrap_or_default()
}

pub(crate) fn registry_update<R>(f: impl FnOnce(&mut Registry) -> R) -> Option<R> {
    REGISTRY
        .try_with(|r| {
            let mut p = r.get();
            if p.is_null() {
                p = Box::into_raw(Box::new(Registry::new()));
                r.set(p);
            }
            // SAFETY: the box is live (made above or earlier) and no other reference to it
            // exists: `f` only edits the vector (no user code), readers copy and let go.
            let registry = unsafe { &mut *p };
            let out = f(registry);
            if registry.iter().all(Option::is_none) {
                r.set(std::ptr::null_mut());
                // SAFETY: made by Box::into_raw above; unreachable now that the cell is null.
                drop(unsafe { Box::from_raw(p) });
            }
            out
        })
        .ok()
}

/// A runtime frame on a heap: while one is on the stack, the heap's state is not freed, even if
/// user code run from inside it drops the `Heap` handle and the last object (SEMANTICS 5.1,
/// 5.5). The outermost frame to end on a closed heap with no objects left frees the heap.
///
/// Every path that may run user code without the caller holding the `Heap` handle enters one:
/// an object's death (`release`), a collection, and the heap's shutdown.
pub(crate) struct Frame {
    heap: NonNull<HeapInner>,
}

impl Frame {
    /// Enters a frame on the heap made with this pointer (the registry's).
    #[inline]
    pub(crate) fn enter(heap: NonNull<HeapInner>) -> Frame {
        // SAFETY: the caller reached the heap through a live object or its handle, so it is
        // allocated; frames keep it so.
        let h = unsafe { heap.as_ref() };
        h.frames.set(h.frames.get() + 1);
        Frame { heap }
    }
}

impl Drop for Frame {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: this frame kept the heap allocated.
        let h = unsafe { self.heap.as_ref() };
        let n = h.frames.get() - 1;
        h.frames.set(n);
        if n == 0 && h.closed.get() {
            // SAFETY: the last frame on a closed heap (the reference above is not used again).
            unsafe { free_if_empty(self.heap) };
        }
    }
}

/// Frees a closed heap with no frame on it once no object is left.
///
/// # Safety
/// The heap is closed, allocated, and no frame is active on it.
#[cold]
#[inline(never)]
unsafe fn free_if_empty(heap: NonNull<HeapInner>) {
    // SAFETY: allocated (caller).
    if unsafe { heap.as_ref() }.live.get() == 0 {
        // SAFETY: the handle is gone, no object is left and no frame uses the heap: nothing
        // refers to it.
        unsafe { free_heap(heap) };
    }
}

/// The heap that owns the object with this header.
#[inline]
pub(crate) fn heap_of(header: &Header) -> &HeapInner {
    // SAFETY: a heap stays registered (and allocated) while it owns live objects, and this object
    // is live; the reference does not outlive the object's use by the caller.
    unsafe { heap_ptr_of(header).as_ref() }
}

/// The heap that owns the object with this header, as the pointer the heap was made with.
#[inline]
pub(crate) fn heap_ptr_of(header: &Header) -> NonNull<HeapInner> {
    registry_get(header.heap as usize)
        .expect("reap: object used on a thread that does not own its heap")
}

/// A heap of reference-counted objects, in Local mode: it and its handles stay on the thread
/// that made it.
///
/// A thread may have several heaps, and an object of one may hold handles to objects of
/// another. Each heap's collector counts such a handle as a reference from outside, so what it
/// leads to is kept; a cycle that runs through two heaps is therefore never collected (break it
/// by hand), and heap shutdown reports how many of its objects other heaps still hold.
///
/// Dropping the `Heap` shuts it down (see [`Drop`](#impl-Drop-for-Heap)); that is allowed
/// anywhere, even from a finalizer, a callback or the unraisable hook while this heap's own
/// code is on the stack: the heap's state then lives until that code is done and the last
/// object is gone.
///
/// ```
/// use reap::{Gc, Heap};
///
/// let heap = Heap::new();
/// let s: Gc<String> = heap.alloc(String::from("hello"));
/// let t = s.clone();
/// assert_eq!(Gc::strong_count(&s), 2);
/// assert!(Gc::ptr_eq(&s, &t));
/// assert_eq!(*t, "hello");
/// ```
pub struct Heap {
    pub(crate) inner: NonNull<HeapInner>,
}

impl HeapInner {
    /// The embedder's data, if it is set and is a `D`.
    pub(crate) fn user_data<D: std::any::Any>(&self) -> Option<std::rc::Rc<D>> {
        let data = self.data.borrow().clone()?;
        data.downcast::<D>().ok()
    }

    /// The pointer this heap was made with (with the provenance to free it), from the registry.
    pub(crate) fn ptr(&self) -> NonNull<HeapInner> {
        registry_get(self.slot as usize).expect("reap: heap used on a thread that does not own it")
    }

    /// Hands a caught panic or a report to the unraisable hook. The hook runs with no borrow
    /// held: it may replace itself, report again, or drop the heap's last objects (callers are
    /// inside a [`Frame`], which keeps the heap's state allocated meanwhile).
    pub(crate) fn report(&self, u: Unraisable) {
        if let Some(p) = self.report_and_keep_payload(u) {
            drop_payload(p);
        }
    }

    /// Hands the report to the hook (or prints it), then gives back its panic payload for the
    /// caller to drop safely; the rest of the report (its object handle) is dropped here.
    fn report_and_keep_payload(&self, mut u: Unraisable) -> Option<Box<dyn std::any::Any + Send>> {
        self.call_hook(&u);
        u.payload.take()
    }

    fn call_hook(&self, u: &Unraisable) {
        let hook = self.hook.borrow().clone();
        match hook {
            Some(h) => {
                // A panicking hook must not unwind through the runtime.
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| h(u))) {
                    print_unraisable(u);
                    drop_payload(p);
                }
                // If the hook was replaced meanwhile, this was its last owner: its captures'
                // `Drop`s are user code too.
                if let Some(p) = drop_guarded(h) {
                    drop_payload(p);
                }
            }
            None => print_unraisable(u),
        }
    }

    pub(crate) fn report_panic(
        &self,
        kind: UnraisableKind,
        type_name: &'static str,
        payload: Box<dyn std::any::Any + Send>,
    ) {
        self.report_panic_on(kind, type_name, payload, None);
    }

    /// As `report_panic`, about the object with this header, which the runtime still holds
    /// (its count is above 0 and its value intact).
    pub(crate) fn report_panic_on(
        &self,
        kind: UnraisableKind,
        type_name: &'static str,
        payload: Box<dyn std::any::Any + Send>,
        object: Option<NonNull<Header>>,
    ) {
        let message = crate::unraisable::message_of(&*payload);
        let location = crate::unraisable::take_location(&message);
        // SAFETY: the caller holds the object, with its value intact.
        let object = object.map(|o| unsafe { crate::local::gcstate::any_handle(o) });
        let mut report = Unraisable::new(kind, type_name, message);
        report.object = object;
        report.location = location;
        report.payload = Some(payload);
        let payload = self.report_and_keep_payload(report);
        // Dropped under a guard of its own: its Drop is user code too.
        if let Some(p) = payload {
            drop_payload(p);
        }
    }
}

/// The length below which the record is never swept (small under Miri, so that its tests reach
/// the sweep with few objects).
pub(crate) const MIN_LIMIT: usize = if cfg!(miri) { 64 } else { 4096 };

/// The record of possible roots (one per heap; its behaviour is `roots`).
pub(crate) struct PossibleRoots {
    pub(crate) entries: RefCell<Vec<NonNull<Header>>>,
    /// The length at which the next push sweeps.
    pub(crate) limit: Cell<usize>,
    /// The fewest objects a full collection left listed (the permanent set included) since the
    /// last one that examined every object of the generations (`usize::MAX` before the first full collection): the base of
    /// the exhaustive examination's trigger (`HeapInner::exhaustive_due`).
    pub(crate) survivors_low: Cell<usize>,
    /// The next full collection examines every object of the generations, whatever the
    /// trigger says (`Heap::collect_exhaustive`, shutdown).
    pub(crate) force_exhaustive: Cell<bool>,
    /// The running full collection examines every object of the generations.
    pub(crate) exhaustive_now: Cell<bool>,
}

impl Default for PossibleRoots {
    fn default() -> Self {
        PossibleRoots {
            entries: RefCell::new(Vec::new()),
            limit: Cell::new(MIN_LIMIT),
            survivors_low: Cell::new(usize::MAX),
            force_exhaustive: Cell::new(false),
            exhaustive_now: Cell::new(false),
        }
    }
}

/// A registration the heap keeps, type-erased, for shutdown and bookkeeping.
pub(crate) trait Registered {
    /// Runs it if still pending (at heap shutdown), reporting a panic.
    fn run_at_shutdown(&self, heap: &HeapInner);
}

/// Returns a dead object's memory to the allocator.
///
/// # Safety
/// The object is dead (its value dropped, its weak info freed, so `meta` is its vtable) and
/// nothing will read it again.
#[inline(always)]
pub(crate) unsafe fn dealloc_object(slabs: &crate::object::slab::Slabs, header: NonNull<Header>) {
    // SAFETY: allocated until the dealloc below (caller).
    let h = unsafe { header.as_ref() };
    // SAFETY: caller.
    unsafe { dealloc_with(slabs, header, h.vtable(), h.has(Flags::TRACKED)) };
}

/// [`dealloc_object`] with the object's vtable and tracking already read.
///
/// # Safety
/// As [`dealloc_object`]; `vtable` and `tracked` are the object's.
#[inline(always)]
pub(crate) unsafe fn dealloc_with(
    slabs: &crate::object::slab::Slabs,
    header: NonNull<Header>,
    vtable: &VTable,
    tracked: bool,
) {
    let ol = if tracked {
        vtable.tracked_layout
    } else {
        vtable.untracked_layout
    };
    // SAFETY: the allocation starts value_offset bytes before the value and was made for this
    // layout in `alloc` (`Slabs::alloc_object`).
    unsafe {
        let base = Header::value_ptr(header).as_ptr().sub(ol.value_offset);
        slabs.dealloc_object(NonNull::new_unchecked(base), ol.layout, ol.class);
    }
}

/// Frees a closed heap whose objects are all gone.
///
/// # Safety
/// The heap handle has been dropped, no object of the heap is alive and no frame uses it.
pub(crate) unsafe fn free_heap(inner: NonNull<HeapInner>) {
    // SAFETY: caller: nothing refers to the heap any more.
    let slot = unsafe { inner.as_ref().slot } as usize;
    registry_update(|r| r[slot] = None);
    // SAFETY: the inner heap was made by Box::into_raw in Heap::new and is freed once, here.
    let boxed = unsafe { Box::from_raw(inner.as_ptr()) };
    boxed.possible_roots.release_all(&boxed.slabs);
    let HeapInner {
        hook,
        gcmod,
        finalizers,
        data,
        ..
    } = *boxed;
    // What user code the heap still owned (the hook's and callbacks' captures) is dropped last,
    // once the heap is gone from the registry: it cannot reach this heap (no object is left),
    // and a panic in it is caught; with no heap to report to, it is printed.
    let leftovers = (hook, gcmod, finalizers, data);
    if let Some(p) = drop_guarded(leftovers) {
        drop_payload(p);
        print_unraisable(&Unraisable::new(
            UnraisableKind::Drop,
            "reap::Heap",
            "a panic while dropping the heap's hook or callbacks".into(),
        ));
    }
}
