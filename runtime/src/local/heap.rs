//! The heap: allocation, generation lists, the death of an object on the refcount path
//! (SEMANTICS 3), the trashcan, reporting to the unraisable hook, and shutdown.
//!
//! A [`Heap`] is a handle to a boxed [`HeapInner`] that holds all of the heap's state. Objects
//! find their heap through the `heap` slot in their header, an index into this thread's
//! registry of heaps (handles are `!Send`, so an object always dies on the thread that owns its
//! heap). The inner heap outlives its objects: dropping the [`Heap`] shuts it down, and if objects
//! are still held from outside, the inner heap stays until the last of them dies.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use reap_collector::Generations;

use crate::local::state::{
    dealloc_with, heap_ptr_of, registry_all, registry_update, Frame, Heap, HeapInner,
};
use crate::local::weak;
use crate::object::header::{Flags, Header, Links, Root, HEADER_SIZE};
use crate::object::vtable::{vtable_of, VTable};
use crate::trace::Trace;
use crate::unraisable::drop_guarded;
pub use crate::unraisable::{Unraisable, UnraisableHook, UnraisableKind};
use crate::Gc;

/// How deep deaths may nest before further ones are deferred to the trashcan list
/// (SEMANTICS 3.3). Each level costs a few hundred bytes of stack at most, well inside a 2 MiB
/// thread stack.
const TRASHCAN_DEPTH: u32 = 50;

impl Default for Heap {
    fn default() -> Self {
        Self::new()
    }
}

impl Heap {
    /// A new, empty heap on this thread.
    ///
    /// # Panics
    /// If this thread already has 65,536 heaps alive.
    pub fn new() -> Heap {
        let inner = Box::new(HeapInner {
            slot: 0,
            candidate_key: 0,
            lists: [
                Links::dangling(),
                Links::dangling(),
                Links::dangling(),
                Links::dangling(),
            ],
            gens: Generations::new(),
            slabs: crate::object::slab::Slabs::new(),
            gcmod: crate::local::gcstate::GcModule::new(),
            finalizers: RefCell::new(Vec::new()),
            next_finalizer_id: Cell::new(0),
            no_collect: Cell::new(0),
            clear_hooks: Cell::new(false),
            live: Cell::new(0),
            listed: Cell::new(0),
            possible_roots: crate::local::state::PossibleRoots::default(),
            depth: Cell::new(0),
            frames: Cell::new(0),
            reclaim_weakrefs: Cell::new(None),
            finalizers_run: Cell::new(0),
            deferred: RefCell::new(Vec::new()),
            closed: Cell::new(false),
            data: RefCell::new(None),
            hook: RefCell::new(None),
            allocated: Cell::new(0),
            freed: Cell::new(0),
        });
        // Leak first, then point the list heads at themselves: the heads' addresses are final
        // only once the box is no longer moved or uniquely borrowed.
        // SAFETY: Box::into_raw never returns null.
        let inner = unsafe { NonNull::new_unchecked(Box::into_raw(inner)) };
        let slot = registry_update(|r| {
            let slot = match r.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    assert!(
                        r.len() <= u16::MAX as usize,
                        "reap: too many heaps on one thread"
                    );
                    r.push(None);
                    r.len() - 1
                }
            };
            r[slot] = Some(inner);
            slot
        })
        .expect("reap: Heap::new called while the thread is exiting");
        // SAFETY: just leaked and registered; no reference to it exists yet.
        unsafe {
            (*inner.as_ptr()).slot = slot as u16;
            (*inner.as_ptr()).candidate_key = Header::candidate_key(slot as u16);
        }
        // SAFETY: only shared references are made from here on.
        let shared = unsafe { inner.as_ref() };
        for l in &shared.lists {
            l.init_empty();
        }
        Heap { inner }
    }

    pub(crate) fn inner(&self) -> &HeapInner {
        // SAFETY: the inner heap lives at least as long as the `Heap` handle.
        unsafe { self.inner.as_ref() }
    }

    /// Moves `value` into a new object and returns the first handle to it.
    ///
    /// Types that may hold handles ([`Trace::needs_trace`]) are tracked: linked into generation 0
    /// with 32 bytes of bookkeeping; others carry a 16-byte header and are never scanned.
    #[inline]
    pub fn alloc<T: Trace>(&self, value: T) -> Gc<T> {
        self.inner().alloc(value)
    }

    /// Allocates a value that holds a weak reference to itself, made before the value exists
    /// (as `Rc::new_cyclic`): the safe way for an object to get a `Gc<Self>` from inside its own
    /// methods (`self.me.upgrade()`). While `make` runs, the weak reference does not upgrade;
    /// afterwards it does for as long as the object lives. If `make` panics, nothing is
    /// allocated and the weak reference (and every clone of it) is dead.
    ///
    /// ```
    /// use reap::{Gc, Heap, Trace, Weak};
    ///
    /// #[derive(Trace)]
    /// struct Node {
    ///     me: Weak<Node>,
    ///     name: &'static str,
    /// }
    /// impl Node {
    ///     fn handle(&self) -> Gc<Node> {
    ///         self.me.upgrade().expect("called on a live node")
    ///     }
    /// }
    ///
    /// let heap = Heap::new();
    /// let n = heap.alloc_cyclic(|me| {
    ///     assert!(me.upgrade().is_none(), "not yet");
    ///     Node { me: me.clone(), name: "n" }
    /// });
    /// assert!(Gc::ptr_eq(&n.handle(), &n));
    /// ```
    pub fn alloc_cyclic<T: Trace>(&self, make: impl FnOnce(&crate::Weak<T>) -> T) -> Gc<T> {
        self.inner().alloc_cyclic(make)
    }

    /// Sets the unraisable hook: it receives every panic the runtime catches in finalizers,
    /// weak-reference callbacks and `Drop`s (SEMANTICS 5.4). `None` restores the default, which
    /// prints one line to stderr naming the object's type.
    ///
    /// ```
    /// use reap::{Heap, Unraisable};
    /// use std::{cell::RefCell, rc::Rc};
    ///
    /// let heap = Heap::new();
    /// let seen = Rc::new(RefCell::new(Vec::new()));
    /// let s = seen.clone();
    /// heap.set_unraisable_hook(Some(Box::new(move |u: &Unraisable| s.borrow_mut().push(u.message.clone()))));
    /// ```
    pub fn set_unraisable_hook(&self, hook: Option<UnraisableHook>) {
        let new = hook.map(std::rc::Rc::new);
        let old = std::mem::replace(&mut *self.inner().hook.borrow_mut(), new);
        // The old hook's captures may run user `Drop`s: not under the cell's borrow.
        if let Some(p) = drop_guarded(old) {
            self.inner()
                .report_panic(UnraisableKind::Drop, "reap::UnraisableHook", p);
        }
    }

    /// Sets the embedder's data: typically the interpreter's state (or a weak pointer to it), so
    /// that finalizers and weak-reference callbacks, which run inside allocation, collection and
    /// shutdown, can reach it through [`Gc::user_data`] or [`Weak::user_data`](crate::Weak::user_data)
    /// without a thread-local. Returns the previous data. Kept until the heap shuts down, after
    /// the finalizers owed have run.
    ///
    /// ```
    /// use reap::{Finalize, Gc, Heap, Trace};
    /// use std::{cell::RefCell, rc::Rc};
    ///
    /// struct Interp { output: RefCell<Vec<String>> }
    ///
    /// #[derive(Trace)]
    /// #[reap(finalize)]
    /// struct Instance { name: &'static str }
    ///
    /// impl Finalize for Instance {
    ///     fn finalize(this: &Gc<Self>) {
    ///         let interp = Gc::user_data::<Interp>(this).expect("set at start-up");
    ///         interp.output.borrow_mut().push(format!("__del__ of {}", this.name));
    ///     }
    /// }
    ///
    /// let heap = Heap::new();
    /// let interp = Rc::new(Interp { output: RefCell::new(vec![]) });
    /// heap.set_user_data(Some(interp.clone()));
    /// drop(heap.alloc(Instance { name: "x" }));
    /// assert_eq!(*interp.output.borrow(), ["__del__ of x"]);
    /// ```
    pub fn set_user_data(
        &self,
        data: Option<std::rc::Rc<dyn std::any::Any>>,
    ) -> Option<std::rc::Rc<dyn std::any::Any>> {
        std::mem::replace(&mut *self.inner().data.borrow_mut(), data)
    }

    /// The embedder's data, if it is set and is a `D`.
    pub fn user_data<D: std::any::Any>(&self) -> Option<std::rc::Rc<D>> {
        self.inner().user_data()
    }

    /// Runs what heap shutdown owes while the embedder is still whole (SEMANTICS 5.5), and
    /// returns the number of objects still alive: the collection callbacks are removed (CPython
    /// runs none at exit), the permanent set unfrozen, then pending `finalize` registrations run
    /// and full collections repeat until nothing more is found. The heap stays usable; dropping
    /// it afterwards finds nothing left to run.
    pub fn shutdown(&self) -> usize {
        let inner = self.inner();
        inner.settle_for_shutdown(self.inner);
        inner.live.get()
    }

    /// Objects allocated on this heap and not yet freed.
    pub fn live_objects(&self) -> usize {
        self.inner().live.get()
    }

    /// Objects allocated since the heap was made.
    pub fn allocated_objects(&self) -> u64 {
        self.inner().allocated.get()
    }

    /// Objects freed since the heap was made.
    pub fn freed_objects(&self) -> u64 {
        self.inner().freed.get()
    }

    /// `gc.get_count()`: the generation counts.
    pub fn get_count(&self) -> [usize; 3] {
        self.inner().gens.counts()
    }

    /// `gc.get_threshold()`.
    pub fn get_threshold(&self) -> [usize; 3] {
        self.inner().gens.thresholds()
    }

    /// `gc.set_threshold(t0, t1, t2)`; `t0 == 0` disables automatic collection.
    pub fn set_threshold(&self, t0: usize, t1: usize, t2: usize) {
        self.inner().gens.set_thresholds(t0, t1, t2);
    }

    /// Collects generation `g` and every younger one (`gc.collect(g)`); returns the number of
    /// objects collected. A collection asked for while one is running returns 0.
    ///
    /// ```
    /// use reap::{Gc, Heap, Trace};
    /// use std::cell::RefCell;
    ///
    /// #[derive(Trace)]
    /// struct Node(RefCell<Option<Gc<Node>>>);
    ///
    /// let heap = Heap::new();
    /// let a = heap.alloc(Node(RefCell::new(None)));
    /// *a.0.borrow_mut() = Some(a.clone()); // a self-cycle
    /// drop(a);
    /// assert_eq!(heap.collect(2), 1);
    /// ```
    ///
    /// # Panics
    /// If `g > 2`.
    pub fn collect(&self, g: usize) -> usize {
        collect(self.inner, g)
    }

    /// A full collection ([`Heap::collect`]`(2)`) that examines every object of the
    /// generations, not only the possible roots and what they reach (SEMANTICS 2.2): it also
    /// finds garbage that no dropped reference announced, such as a cycle closed by moving a
    /// handle into a traced place through a path that holds no handle to its holder (an `Rc`
    /// shared with code outside the heap), or one an earlier collection kept because a
    /// `Trace` hid an edge. A full collection examines everything on its own too when the
    /// listed objects (the generations and the permanent set) exceed twice the fewest that
    /// full collections left since the last such examination, plus 2,000; [`Heap::shutdown`]
    /// and the heap's drop use this one.
    ///
    /// ```
    /// use reap::{Gc, Heap, Trace, Tracer};
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    ///
    /// // A node whose slot it shares with whoever else holds the `Rc`.
    /// struct Node {
    ///     slot: Rc<RefCell<Option<Gc<Node>>>>,
    /// }
    ///
    /// // SAFETY: visits the handle in its slot, once; nothing else.
    /// unsafe impl Trace for Node {
    ///     fn trace(&self, tracer: &mut Tracer<'_>) {
    ///         self.slot.trace(tracer);
    ///     }
    /// }
    ///
    /// let heap = Heap::new();
    /// heap.disable();
    /// let slot = Rc::new(RefCell::new(None));
    /// let node = heap.alloc(Node { slot: slot.clone() });
    /// drop(node.clone());
    /// assert_eq!(heap.collect(2), 0); // reachable (through `node`): its mark is cleared
    /// // The only handle moved into the node's own slot: no reference was dropped.
    /// *slot.borrow_mut() = Some(node);
    /// drop(slot);
    /// assert_eq!(heap.collect(2), 0, "no possible root leads to it");
    /// assert_eq!(heap.collect_exhaustive(), 1);
    /// ```
    pub fn collect_exhaustive(&self) -> usize {
        self.inner().possible_roots.force_exhaustive.set(true);
        collect(self.inner, 2)
    }

    /// Enables automatic collection (`gc.enable()`).
    pub fn enable(&self) {
        self.inner().gens.set_enabled(true);
    }

    /// Disables automatic collection (`gc.disable()`); [`Heap::collect`] still works.
    pub fn disable(&self) {
        self.inner().gens.set_enabled(false);
    }

    /// Whether automatic collection is enabled (`gc.isenabled()`).
    pub fn is_enabled(&self) -> bool {
        self.inner().gens.is_enabled()
    }

    /// Per-generation statistics (`gc.get_stats()`).
    pub fn get_stats(&self) -> [crate::GenerationStats; 3] {
        self.inner().gens.stats()
    }

    /// Runs `f` with automatic collection held off (SEMANTICS 1.5): for embedder code that must
    /// not be re-entered by finalizers. Explicit [`Heap::collect`] calls still run.
    pub fn without_collection<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Guard<'a>(&'a Cell<u32>);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                self.0.set(self.0.get() - 1);
            }
        }
        let c = &self.inner().no_collect;
        c.set(c.get() + 1);
        let _g = Guard(c);
        f()
    }

    /// Number of tracked objects in generation `g` (0..=2), or in the permanent set (`g == 3`).
    pub fn generation_len(&self, g: usize) -> usize {
        assert!(g < 4, "reap: generation {g} out of range 0..=3");
        // SAFETY: this heap's list head; counting runs no user code.
        unsafe { self.inner().lists[g].objects() }.count()
    }
}

/// The flags a new object starts with.
#[inline]
fn initial_flags(tracked: bool, finalizer: bool) -> Flags {
    let mut flags = if tracked {
        Flags::TRACKED
    } else {
        Flags::empty()
    };
    if finalizer {
        flags |= Flags::HAS_FINALIZER;
    }
    flags
}

impl HeapInner {
    #[inline]
    pub(crate) fn alloc<T: Trace>(&self, value: T) -> Gc<T> {
        self.alloc_tracked_if(value, T::needs_trace())
    }

    /// Allocates with the tracking decided by the caller. Leaving untracked a value that holds
    /// handles is safe: the collector then sees those handles as held from outside, so what
    /// they lead to is kept (at worst a leak of cycles through it, SEMANTICS 5.2).
    #[inline]
    pub(crate) fn alloc_tracked_if<T: Trace>(&self, value: T, tracked: bool) -> Gc<T> {
        let vtable = vtable_of::<T>();
        let ol = if tracked {
            vtable.tracked_layout
        } else {
            vtable.untracked_layout
        };
        // Asked before anything changes: it may be user code (`Finalize::wants_finalizer`).
        let finalizer = T::finalizer().is_some() && value.wants_finalizer();
        self.note_type::<T>();
        let base = self.slabs.alloc_object(ol.layout, ol.class);
        // SAFETY: value_offset + size_of::<T>() is inside the allocation, and value_offset is a
        // multiple of T's alignment; the header occupies the HEADER_SIZE bytes before the value.
        let header = unsafe {
            let slot = base.as_ptr().add(ol.value_offset);
            slot.cast::<T>().write(value);
            let header = slot.sub(HEADER_SIZE).cast::<Header>();
            header.write(self.new_header(vtable, 1, initial_flags(tracked, finalizer)));
            NonNull::new_unchecked(header)
        };
        // SAFETY: just made, with its value, count 1 and flags; in no list yet.
        unsafe { self.finish_alloc(header, tracked) };
        // SAFETY: the object was just made with strong count 1, which the handle takes over.
        unsafe { Gc::from_header(header) }
    }

    /// A new object's header on this heap.
    #[inline]
    fn new_header(&self, vtable: &'static VTable, rc: u32, flags: Flags) -> Header {
        Header {
            meta: Cell::new((vtable as *const VTable).cast()),
            rc: Cell::new(rc),
            root: Cell::new(Header::initial_root(flags.contains(Flags::TRACKED))),
            flags: Cell::new(flags),
            heap: self.slot,
        }
    }

    /// Notes what a newly allocated type needs from later collections: the clear phase runs
    /// only on heaps that ever allocated a type with a [`crate::Clear`] hook.
    #[inline]
    fn note_type<T: Trace>(&self) {
        if T::clearer().is_some() {
            self.clear_hooks.set(true);
        }
    }

    /// The last step of every allocation: the object is counted, linked into generation 0 if
    /// tracked, and may start an automatic collection.
    ///
    /// # Safety
    /// `header` is a new object of this heap, value written, count 1, flags set, in no list.
    #[inline]
    unsafe fn finish_alloc(&self, header: NonNull<Header>, tracked: bool) {
        self.live.set(self.live.get() + 1);
        self.allocated.set(self.allocated.get() + 1);
        if tracked {
            // SAFETY: a tracked object's links are in front of its header (the caller's
            // contract: not yet in any list); the list head lives in this heap, which outlives
            // the object.
            unsafe {
                let links = Header::links(header);
                links.as_ptr().write(Links::dangling());
                self.lists[0].push_back(links);
            }
            self.listed.set(self.listed.get() + 1);
            if self.gens.note_allocation() {
                self.collect_automatically();
            }
        }
    }

    /// [`Heap::alloc_cyclic`]: the object's memory and header exist (count 0, in no list, so
    /// nothing can reach it but its weak reference, which does not upgrade at count 0) while
    /// `make` runs; then the value is written and the object comes to life as `alloc` makes it.
    fn alloc_cyclic<T: Trace>(&self, make: impl FnOnce(&crate::Weak<T>) -> T) -> Gc<T> {
        let vtable = vtable_of::<T>();
        let tracked = T::needs_trace();
        let ol = if tracked {
            vtable.tracked_layout
        } else {
            vtable.untracked_layout
        };
        let base = self.slabs.alloc_object(ol.layout, ol.class);
        // SAFETY: as in `alloc_tracked_if`; the value slot stays uninitialised until `make`
        // returns, and nothing reads it meanwhile (count 0: no upgrade, no handle; in no list:
        // no collection or introspection sees it).
        let header = unsafe {
            let header = base
                .as_ptr()
                .add(ol.value_offset)
                .sub(HEADER_SIZE)
                .cast::<Header>();
            header.write(self.new_header(vtable, 0, Flags::empty()));
            NonNull::new_unchecked(header)
        };
        // A handle that owns no count, only lent to `Weak::new` (which reads the header and
        // makes the weak-reference bookkeeping, never the value); it is never dropped.
        // SAFETY: the header is written; the handle is not used as an owner.
        let unowned = std::mem::ManuallyDrop::new(unsafe { Gc::<T>::from_header(header) });
        let weak = crate::Weak::new(&unowned);
        let made = catch_unwind(AssertUnwindSafe(|| {
            let value = make(&weak);
            // Asked before the object exists, as `alloc` does: it may be user code.
            let finalizer = T::finalizer().is_some() && value.wants_finalizer();
            (value, finalizer)
        }));
        drop(weak);
        let (value, finalizer) = match made {
            Ok(made) => made,
            Err(panic) => {
                // SAFETY: count 0 and no value: clearing its weak references (no callbacks can
                // exist: making one needs a strong handle) and freeing the weak info and the
                // memory is all there is to undo.
                unsafe {
                    weak::free_info(self, header);
                    self.slabs.dealloc(base, ol.layout);
                }
                std::panic::resume_unwind(panic);
            }
        };
        self.note_type::<T>();
        // SAFETY: the slot is the value's (layout above) and still uninitialised.
        unsafe { Header::value_ptr(header).cast::<T>().as_ptr().write(value) };
        // SAFETY: the header is allocated; nothing else refers to it but cleared-or-dead-looking
        // weak references, which upgrade from now on.
        let h = unsafe { header.as_ref() };
        h.rc.set(1);
        h.flags.set(initial_flags(tracked, finalizer));
        h.root.set(Header::initial_root(tracked));
        // SAFETY: value written, count 1, flags set; in no list (see above).
        unsafe { self.finish_alloc(header, tracked) };
        // SAFETY: strong count 1, which the handle takes over.
        unsafe { Gc::from_header(header) }
    }

    #[cold]
    #[inline(never)]
    fn collect_automatically(&self) {
        if self.no_collect.get() == 0 {
            if let Some(g) = self.gens.generation_to_collect() {
                collect(self.ptr(), g);
            }
        }
    }

    /// How many of this heap's objects are held by tracked objects of this thread's other heaps
    /// (for the shutdown report: each heap's collector sees such handles as held from outside,
    /// so a cycle across heaps is never collected). Runs no user code: tracing runs none.
    fn held_by_other_heaps(&self) -> usize {
        let me = self.slot;
        let mut held = std::collections::HashSet::new();
        for other in registry_all() {
            // SAFETY: registered heaps are allocated; only shared references are made, and no
            // user code runs while this one lives.
            let other = unsafe { other.as_ref() };
            if other.slot == me {
                continue;
            }
            for head in &other.lists {
                for o in crate::local::gcstate::members(head) {
                    // SAFETY: listed objects are allocated.
                    if unsafe { o.as_ref() }.has(Flags::VALUE_DROPPED) {
                        continue;
                    }
                    let mut visit = |t: NonNull<Header>| {
                        // SAFETY: handles lead to allocated objects.
                        if unsafe { t.as_ref() }.heap == me {
                            held.insert(t);
                        }
                    };
                    let mut tracer = crate::trace::Tracer::new(&mut visit);
                    // SAFETY: a listed object with an intact value; tracing only reads it.
                    unsafe {
                        (o.as_ref().vtable().trace)(Header::value_ptr(o), &mut tracer);
                    }
                }
            }
        }
        held.len()
    }
}

/// Called when an object's strong count has just reached zero (SEMANTICS 3.1, 3.3).
///
/// Deaths nest (dropping a value drops the handles it holds); past `TRASHCAN_DEPTH` they are
/// deferred to the heap's list, which the outermost death drains, so a 10,000,000-long chain
/// needs no more stack than 50 levels.
///
/// # Safety
/// `header` is the header of an object whose strong count is 0 and whose death has not begun.
#[cold]
#[inline(never)]
pub(crate) unsafe fn release(header: NonNull<Header>) {
    // SAFETY: the object is still allocated (its death has not begun).
    let h = unsafe { header.as_ref() };
    let heap_ptr = heap_ptr_of(h);
    if h.has(Flags::UNLINKED) {
        // SAFETY: as above.
        unsafe { release_collected(heap_ptr, header) };
        return;
    }
    // SAFETY: the heap outlives its objects, and the frame entered below (or the outer death's
    // frame) keeps it allocated until this function's last use of it.
    let heap: &HeapInner = unsafe { heap_ptr.as_ref() };
    let depth = heap.depth.get();
    if depth >= TRASHCAN_DEPTH {
        heap.deferred.borrow_mut().push(header);
        return;
    }
    if depth > 0 {
        // Nested in an outer death of this heap, which holds a frame.
        let _depth = DepthGuard::set(&heap.depth, depth + 1, depth);
        // SAFETY: the object's strong count is 0 and its death has not begun (caller).
        unsafe { destroy(heap, header) };
        return;
    }
    // The outermost death: a frame (the heap stays allocated even if user code drops the
    // `Heap` handle and the last object), and the trashcan drained before it ends.
    let _frame = Frame::enter(heap_ptr);
    let _depth = DepthGuard::set(&heap.depth, 1, 0);
    // SAFETY: as above.
    unsafe { destroy(heap, header) };
    loop {
        let next = heap.deferred.borrow_mut().pop();
        let Some(d) = next else { break };
        // SAFETY: deferred objects have strong count 0 and have not begun dying; nothing can
        // raise their count (weak upgrades refuse a zero count).
        unsafe { destroy(heap, d) };
    }
}

/// Sets a depth counter for a scope and restores it when the scope ends, also by unwinding.
struct DepthGuard<'a> {
    cell: &'a Cell<u32>,
    restore: u32,
}

impl<'a> DepthGuard<'a> {
    fn set(cell: &'a Cell<u32>, value: u32, restore: u32) -> DepthGuard<'a> {
        cell.set(value);
        DepthGuard { cell, restore }
    }
}

impl Drop for DepthGuard<'_> {
    fn drop(&mut self) {
        self.cell.set(self.restore);
    }
}

/// `release` for garbage of a collection (`UNLINKED`). While its value has not finished
/// dropping (`COLLECTING`), the collection owns it: weak phase, finalizers, or reclaim not yet
/// done with it; reclaim frees it in its turn, or it is resurrected. Once reclaimed (a zombie:
/// value dropped, `COLLECTING` cleared), nothing else is owed but the weak references made
/// since its collection cleared them: free it.
///
/// # Safety
/// As `release`; the object is marked `UNLINKED`.
#[cold]
#[inline(never)]
unsafe fn release_collected(heap_ptr: NonNull<HeapInner>, header: NonNull<Header>) {
    // SAFETY: allocated.
    let h = unsafe { header.as_ref() };
    if h.has(Flags::COLLECTING) {
        return;
    }
    debug_assert!(h.has(Flags::VALUE_DROPPED) && h.has(Flags::RECLAIMING));
    let _frame = Frame::enter(heap_ptr);
    // SAFETY: the frame keeps the heap allocated; count 0, value dropped: nothing reaches it.
    unsafe { free_object(heap_ptr.as_ref(), header, false) };
}

/// One object's death, in the order of SEMANTICS 3.1.
///
/// # Safety
/// `header` belongs to `heap`, has strong count 0, and its death has not begun.
unsafe fn destroy(heap: &HeapInner, header: NonNull<Header>) {
    // SAFETY: the object is allocated until `free_object` below.
    let h = unsafe { header.as_ref() };
    let vtable = h.vtable();

    // (a) The finalizer, once, with a temporary strong count. A finalizer that stores a handle
    // to its object resurrects it.
    if h.has(Flags::HAS_FINALIZER) && !h.has(Flags::FINALIZED) && !h.has(Flags::VALUE_DROPPED) {
        h.set_strong(1);
        // SAFETY: the object is live with the runtime's temporary count of 1.
        let r = catch_unwind(AssertUnwindSafe(|| unsafe { (vtable.finalize)(header) }));
        // Marked once the finalizer returns, as CPython's `PyObject_CallFinalizerFromDealloc`
        // does (`gc.is_finalized` inside `__del__` on this path is False). It cannot run twice
        // meanwhile: the temporary count keeps the object from dying again or being garbage.
        h.set(Flags::FINALIZED);
        if let Err(p) = r {
            heap.report_panic_on(
                UnraisableKind::Finalizer,
                (vtable.type_name)(),
                p,
                Some(header),
            );
        }
        let n = h.strong() - 1;
        h.set_strong(n);
        if n > 0 {
            // Resurrected: the object lives on, finalized, its weak references still valid.
            // Where it was stored may be garbage: a possible root.
            heap.note_possible_root(header);
            return;
        }
    }

    // (b) Clear every weak reference, then run the callbacks of those still alive.
    if h.has_weak_info() {
        // SAFETY: the object is dying with count 0; its weak info is live.
        unsafe { weak::clear_and_call(heap, header) };
    }

    // (c) Untrack, drop the value, free the memory.
    // SAFETY: the object is dead: count 0, weak references cleared, nothing can reach it.
    unsafe { free_object(heap, header, true) };
}

/// Unlinks, drops the value (unless already dropped) and frees the allocation.
///
/// # Safety
/// No handle or weak reference can reach the object any more.
// Inlined into `destroy`: called from three places, it was otherwise left out of line, which
// cost the refcount path about 20% (binary trees, `benches/examples/trees.rs`).
#[inline(always)]
pub(crate) unsafe fn free_object(heap: &HeapInner, header: NonNull<Header>, drop_value: bool) {
    // SAFETY: allocated until the dealloc below.
    let h = unsafe { header.as_ref() };
    let vtable = h.vtable();
    let tracked = h.has(Flags::TRACKED);
    if tracked && !h.has(Flags::UNLINKED) {
        // SAFETY: a tracked object not marked UNLINKED is linked in one of this heap's lists.
        unsafe { Links::unlink(Header::links(header)) };
        heap.listed.set(heap.listed.get() - 1);
        heap.gens.note_deallocation();
    } else if !tracked {
        if let Some(n) = heap.reclaim_weakrefs.get() {
            if weak::is_weakref(h) {
                heap.reclaim_weakrefs.set(Some(n + 1));
            }
        }
    }
    if drop_value && !h.has(Flags::VALUE_DROPPED) {
        h.set(Flags::VALUE_DROPPED);
        let value = Header::value_ptr(header);
        // SAFETY: the value is initialised and nobody can reach it again.
        let r = catch_unwind(AssertUnwindSafe(|| unsafe { (vtable.drop_value)(value) }));
        if let Err(p) = r {
            heap.report_panic(UnraisableKind::Drop, (vtable.type_name)(), p);
        }
    }
    // The weak-info block goes with the object. Weak references made after the object's
    // weak references were cleared (by a `Drop` during reclaim) are cleared there, and their
    // callbacks run.
    if h.has_weak_info() {
        // SAFETY: the object is dead; its weak info is no longer read.
        unsafe { weak::free_info(heap, header) };
    }
    let r = h.root.get();
    if r.contains(Root::BUFFERED) {
        // The record of possible roots points at it: its memory goes when the entry does.
        h.root.set(r | Root::FREED);
    } else {
        // SAFETY: nothing refers to the object any more (caller), not even the record.
        unsafe { dealloc_with(&heap.slabs, header, vtable, tracked) };
    }
    heap.live.set(heap.live.get() - 1);
    heap.freed.set(heap.freed.get() + 1);
}

/// Collects generation `g` of the heap made with `heap` (its registry pointer), inside a frame:
/// user code run by the collection may drop the heap's handle and last objects.
pub(crate) fn collect(heap: NonNull<HeapInner>, g: usize) -> usize {
    let _frame = Frame::enter(heap);
    // SAFETY: the frame keeps the heap allocated for this call.
    reap_collector::collect(unsafe { heap.as_ref() }, g)
}

impl HeapInner {
    /// What shutdown owes, short of closing the heap (SEMANTICS 5.5): the collection callbacks
    /// dropped (CPython runs none at exit), the permanent set unfrozen, SAVEALL turned off,
    /// then rounds of pending `finalize` registrations (newest first), saved garbage released and
    /// a full collection, until a round leaves nothing to do.
    fn settle_for_shutdown(&self, ptr: NonNull<HeapInner>) {
        let callbacks = std::mem::take(&mut *self.gcmod.callbacks.borrow_mut());
        if let Some(p) = drop_guarded(callbacks) {
            self.report_panic(UnraisableKind::Drop, "reap::CollectCallback", p);
        }
        // SAFETY: this heap's list heads.
        unsafe { self.lists[3].splice_into(&self.lists[2]) };
        self.gcmod.debug.set(crate::DebugFlags::empty());
        for _ in 0..SHUTDOWN_ROUNDS {
            self.run_pending_finalizers();
            let saved = std::mem::take(&mut *self.gcmod.garbage.borrow_mut());
            drop(saved);
            let finalized_before = self.finalizers_run.get();
            self.possible_roots.force_exhaustive.set(true);
            let collected = collect(ptr, 2);
            // A round whose finalizers all resurrected their objects collects nothing, yet may
            // have released other objects into new garbage: go on while finalizers run (each
            // object is finalized once, so this ends).
            let finalized = self.finalizers_run.get() != finalized_before;
            let idle =
                self.finalizers.borrow().is_empty() && self.gcmod.garbage.borrow().is_empty();
            if collected == 0 && !finalized && idle {
                break;
            }
        }
    }
}

/// How many rounds shutdown gives finalizers that keep making garbage or registrations.
const SHUTDOWN_ROUNDS: usize = 100;

impl Drop for Heap {
    /// Shuts the heap down (SEMANTICS 5.5): runs the pending `finalize` registrations, then
    /// collects until nothing more is found (running the finalizers owed), and again while
    /// that user code registers or frees more; objects still held from outside are reported to
    /// the unraisable hook and freed when their last handle goes.
    fn drop(&mut self) {
        let ptr = self.inner;
        // The frame keeps the heap's state allocated through all the user code below, and frees
        // it at the end if nothing is left.
        let _frame = Frame::enter(ptr);
        // SAFETY: the frame keeps it allocated.
        let inner = unsafe { ptr.as_ref() };
        inner.closed.set(true);
        inner.settle_for_shutdown(ptr);
        // The embedder's data goes last: finalizers run above could still reach it. Its drop
        // may release objects, which one more settling frees.
        let data = inner.data.borrow_mut().take();
        if data.is_some() {
            if let Some(p) = drop_guarded(data) {
                inner.report_panic(UnraisableKind::Drop, "reap::Heap user data", p);
            }
            inner.settle_for_shutdown(ptr);
        }
        // Objects whose refcount death is under way (one for each death on the stack, as when a
        // `Drop` dropped the heap, and those deferred to the trashcan) are not held by anyone:
        // the death that is running frees them.
        let dying = inner.depth.get() as usize + inner.deferred.borrow().len();
        let live = inner.live.get().saturating_sub(dying);
        if live > 0 {
            let during = if inner.gens.is_collecting() {
                " (the heap was dropped during its own collection, which may still free some)"
            } else {
                ""
            };
            let across = match inner.held_by_other_heaps() {
                0 => String::new(),
                n => format!(
                    "; {n} of them held by objects of other heaps (a cycle across heaps is \
                     never collected: break it by hand)"
                ),
            };
            inner.report(Unraisable::new(
                UnraisableKind::Shutdown,
                "reap::Heap",
                format!(
                    "{live} object(s) still alive at heap shutdown{during}: held by handles the \
                     collector cannot see (outside the heap, in another heap's objects, or in \
                     untraced fields){across}; each is freed when its last handle goes"
                ),
            ));
        }
    }
}

impl std::fmt::Debug for Heap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heap")
            .field("live_objects", &self.live_objects())
            .field("count", &self.get_count())
            .finish()
    }
}
