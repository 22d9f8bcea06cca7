//! The tracing trait, its visitor, and implementations for the std types an interpreter keeps
//! handles in.
//!
//! A type says which handles it holds by visiting each of them with a [`Tracer`]. The cycle
//! collector relies on this: every handle reported must really be owned by the value (an extra
//! edge could make the collector free live data), so implementing [`Trace`] by hand is `unsafe`.
//! A missed edge only makes the collector keep garbage (SEMANTICS 5.2). `#[derive(Trace)]` covers
//! structs and enums, generics included, and is always correct.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, LinkedList, VecDeque};
use std::ptr::NonNull;
#[cfg(target_has_atomic = "8")]
use std::sync::atomic::{AtomicBool, AtomicI8, AtomicU8};
#[cfg(target_has_atomic = "16")]
use std::sync::atomic::{AtomicI16, AtomicU16};
#[cfg(target_has_atomic = "32")]
use std::sync::atomic::{AtomicI32, AtomicU32};
#[cfg(target_has_atomic = "64")]
use std::sync::atomic::{AtomicI64, AtomicU64};
#[cfg(target_has_atomic = "ptr")]
use std::sync::atomic::{AtomicIsize, AtomicPtr, AtomicUsize};
use std::sync::TryLockError;

use crate::object::header::Header;
use crate::object::raw::Gc;
use crate::object::shared::SharedHeader;

/// Visits the handles a value holds.
///
/// Handed to [`Trace::trace`]; it reports each handle to the runtime. It also learns when a
/// value could not be traversed (a `RefCell` borrowed mutably, a `Mutex` locked), in which case
/// the collector treats the object as reachable (SEMANTICS 5.3).
pub struct Tracer<'a> {
    mode: Mode<'a>,
    /// `Header::candidate_key` of the heap whose collection traces: in the two trial-deletion
    /// modes, a handle to another heap's object is a reference from outside this heap's
    /// candidates and is ignored (another heap's marks are never read or written).
    key: u32,
    incomplete: bool,
}

/// What a [`Tracer`] does with each handle. The collector's two hot modes are written out here,
/// so tracing a candidate costs no indirect call per handle.
enum Mode<'a> {
    /// Trial deletion's step 2: one less on a candidate's scratch count.
    Subtract,
    /// Trial deletion's step 3: mark a candidate reachable and push it.
    Mark(&'a mut Vec<NonNull<Header>>),
    /// Anything else.
    Visit(&'a mut dyn FnMut(NonNull<Header>)),
    /// A Shared-mode collection's snapshot of one object (`sync::collect`), taken while the
    /// world is stopped: the handles to objects of the heap `heap` go to `edges`, and the
    /// guards of the locks the value's handles sit behind are kept in `guards` (see
    /// [`Tracer::hold`]).
    Shared {
        heap: NonNull<()>,
        edges: &'a mut Vec<NonNull<SharedHeader>>,
        guards: &'a mut Vec<HeldGuard>,
        /// `sync::Mutex` acquisitions are held off (the collection's snapshot, see
        /// [`Tracer::snapshot`]): such a lock is read, not taken.
        frozen: bool,
    },
}

/// A lock guard a Shared-mode collection keeps while its world is stopped, type-erased, its
/// borrow of the lock's object extended (see [`Tracer::hold`]). Guards of two words or less
/// (std's `MutexGuard` and `RwLockReadGuard`) are kept inline: no allocation per traced lock.
pub(crate) struct HeldGuard {
    data: std::mem::MaybeUninit<[usize; 2]>,
    /// Drops the guard stored in `data` (inline) or boxed there.
    drop: unsafe fn(*mut [usize; 2]),
    /// A guard is released on the thread that took it: neither `Send` nor `Sync`.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl HeldGuard {
    /// Keeps `guard` (its borrow already extended by the caller).
    fn new<G>(guard: G) -> HeldGuard {
        let mut data = std::mem::MaybeUninit::<[usize; 2]>::uninit();
        if std::mem::size_of::<G>() <= std::mem::size_of::<[usize; 2]>()
            && std::mem::align_of::<G>() <= std::mem::align_of::<[usize; 2]>()
        {
            // SAFETY: `G` fits in `data`'s size and alignment (just checked).
            unsafe { data.as_mut_ptr().cast::<G>().write(guard) };
            HeldGuard {
                data,
                drop: drop_inline::<G>,
                _not_send: std::marker::PhantomData,
            }
        } else {
            // SAFETY: a pointer fits in `data`.
            unsafe {
                data.as_mut_ptr()
                    .cast::<*mut G>()
                    .write(Box::into_raw(Box::new(guard)))
            };
            HeldGuard {
                data,
                drop: drop_boxed::<G>,
                _not_send: std::marker::PhantomData,
            }
        }
    }
}

/// # Safety
/// `p` holds a `G` written by [`HeldGuard::new`], dropped once.
unsafe fn drop_inline<G>(p: *mut [usize; 2]) {
    // SAFETY: caller.
    unsafe { std::ptr::drop_in_place(p.cast::<G>()) }
}

/// # Safety
/// `p` holds a `Box<G>` turned raw by [`HeldGuard::new`], freed once.
unsafe fn drop_boxed<G>(p: *mut [usize; 2]) {
    // SAFETY: caller.
    drop(unsafe { Box::from_raw(p.cast::<*mut G>().read()) })
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        // SAFETY: `data` holds what `new` put there for this `drop` function, dropped once.
        unsafe { (self.drop)(self.data.as_mut_ptr()) }
    }
}

impl<'a> Tracer<'a> {
    /// A tracer that hands every handle to `visit`, whatever heap its object belongs to.
    pub(crate) fn new(visit: &'a mut dyn FnMut(NonNull<Header>)) -> Self {
        Tracer {
            mode: Mode::Visit(visit),
            key: 0,
            incomplete: false,
        }
    }

    /// A tracer for trial deletion's step 2 in the heap whose `Header::candidate_key` is `key`.
    #[inline]
    pub(crate) fn subtract(key: u32) -> Tracer<'static> {
        Tracer {
            mode: Mode::Subtract,
            key,
            incomplete: false,
        }
    }

    /// A tracer that records the edges of one Shared-mode object to objects of `heap`,
    /// keeping the guards of the locks it takes (introspection: see [`Mode::Shared`]).
    pub(crate) fn shared(
        heap: NonNull<()>,
        edges: &'a mut Vec<NonNull<SharedHeader>>,
        guards: &'a mut Vec<HeldGuard>,
    ) -> Self {
        Self::shared_mode(heap, edges, guards, false)
    }

    /// A [`Mode::Shared`] tracer, its locks frozen or not.
    fn shared_mode(
        heap: NonNull<()>,
        edges: &'a mut Vec<NonNull<SharedHeader>>,
        guards: &'a mut Vec<HeldGuard>,
        frozen: bool,
    ) -> Self {
        Tracer {
            mode: Mode::Shared {
                heap,
                edges,
                guards,
                frozen,
            },
            key: 0,
            incomplete: false,
        }
    }

    /// [`Tracer::shared`] for a Shared-mode collection's snapshot, during which no thread
    /// acquires a `sync::Mutex`: their `Trace` reads the lock's state instead of taking it.
    ///
    /// # Safety
    /// For as long as the tracer lives, this thread holds a raise of `sync::mutex`'s frozen
    /// count (a `sync::mutex::Freeze`), and the world of `heap` is stopped.
    pub(crate) unsafe fn snapshot(
        heap: NonNull<()>,
        edges: &'a mut Vec<NonNull<SharedHeader>>,
        guards: &'a mut Vec<HeldGuard>,
    ) -> Self {
        Self::shared_mode(heap, edges, guards, true)
    }

    /// Whether `sync::Mutex` acquisitions are held off while this tracer runs
    /// ([`Tracer::snapshot`]): a lock seen unlocked then stays unlocked, and its value
    /// unchanged, until the tracer's owner lowers the frozen count.
    #[inline]
    pub(crate) fn locks_frozen(&self) -> bool {
        matches!(self.mode, Mode::Shared { frozen: true, .. })
    }

    /// A tracer for trial deletion's step 3 in the heap whose `Header::candidate_key` is `key`.
    #[inline]
    pub(crate) fn mark(stack: &'a mut Vec<NonNull<Header>>, key: u32) -> Self {
        Tracer {
            mode: Mode::Mark(stack),
            key,
            incomplete: false,
        }
    }

    /// Reports a strong handle.
    #[inline]
    pub fn visit<T: ?Sized>(&mut self, handle: &Gc<T>) {
        let target = handle.header_ptr();
        match &mut self.mode {
            Mode::Subtract => {
                // SAFETY: the handle keeps its object allocated.
                let h = unsafe { target.as_ref() };
                if h.is_unmarked_candidate_of(self.key) {
                    // SAFETY: a candidate's links are the collector's.
                    unsafe {
                        let n = Header::scratch(target);
                        Header::set_scratch(target, n.saturating_sub(1));
                    }
                }
            }
            Mode::Mark(stack) => {
                // SAFETY: as above.
                let h = unsafe { target.as_ref() };
                if h.is_unmarked_candidate_of(self.key) {
                    h.set(crate::object::header::Flags::REACHABLE);
                    stack.push(target);
                }
            }
            Mode::Visit(f) => f(target),
            // A Shared collection has no Local candidates.
            Mode::Shared { .. } => {}
        }
    }

    /// Reports a strong Shared-mode handle. Only a Shared-mode collection's snapshot looks at
    /// it (a Local collection has no Shared candidates).
    #[inline]
    pub fn visit_shared<T: ?Sized>(&mut self, handle: &crate::sync::Gc<T>) {
        if let Mode::Shared { heap, edges, .. } = &mut self.mode {
            let target = handle.header_ptr();
            // SAFETY: the handle keeps its object allocated.
            if unsafe { target.as_ref() }.heap.get() == *heap {
                edges.push(target);
            }
        }
    }

    /// Traces the value behind a lock guard. In a Shared-mode collection's snapshot the guard
    /// is kept first ([`Tracer::hold`]) and the value traced through it after, so that a
    /// panicking inner `trace` cannot release this lock while guards of locks inside the value
    /// are still kept (another thread could then free those locks); elsewhere the guard is
    /// dropped once the value is traced.
    pub(crate) fn trace_under<G: std::ops::Deref>(&mut self, guard: G)
    where
        G::Target: Trace,
    {
        if matches!(self.mode, Mode::Shared { .. }) {
            let value: *const G::Target = &*guard;
            self.hold(guard);
            // SAFETY: the kept guard locks the value until the collection's pause ends (the
            // held guards are released last in, first out, after this returns), so the value
            // is alive and shared-borrowable for this call.
            unsafe { (*value).trace(self) };
        } else {
            guard.trace(self);
        }
    }

    /// Keeps `guard` (a lock guard over the handles just visited) until the Shared-mode
    /// collection whose snapshot this is ends its pause, so that no thread moves those
    /// handles between the snapshot and the verdict; in every other mode drops it at once.
    pub(crate) fn hold<G>(&mut self, guard: G) {
        if let Mode::Shared { guards, .. } = &mut self.mode {
            // The guard's borrow of its lock is erased here: it borrows a lock inside a value
            // of the heap being collected, and `sync::collect` drops every held guard before
            // its pause ends, while no object of the heap can be freed (the world is stopped,
            // and the collector frees nothing then), so the lock outlives the guard.
            guards.push(HeldGuard::new(guard));
        }
    }

    /// Reports that part of the value could not be traversed (for example a `RefCell` that is
    /// borrowed mutably right now, or a `Mutex` that is locked). The object is then kept by the
    /// collection that asked.
    pub fn mark_incomplete(&mut self) {
        self.incomplete = true;
    }

    /// Whether [`Tracer::mark_incomplete`] was called.
    pub(crate) fn is_incomplete(&self) -> bool {
        self.incomplete
    }

    /// Whether [`Tracer::mark_incomplete`] was called since the last call; resets it (a
    /// tracer reused for the next value).
    pub(crate) fn take_incomplete(&mut self) -> bool {
        std::mem::take(&mut self.incomplete)
    }

    /// A Shared-mode snapshot's tracer: the edges it recorded (to be emptied before the next
    /// value is traced). `None` in the other modes.
    pub(crate) fn shared_edges(&mut self) -> Option<&mut Vec<NonNull<SharedHeader>>> {
        match &mut self.mode {
            Mode::Shared { edges, .. } => Some(edges),
            _ => None,
        }
    }
}

/// A type whose values may hold [`Gc`] handles, and can list them.
///
/// Use `#[derive(Trace)]`; it visits every field. Add `#[reap(finalize)]` to give the type a
/// finalizer from its [`Finalize`] implementation.
///
/// ```
/// use reap::{Gc, Heap, Trace};
/// use std::cell::RefCell;
///
/// #[derive(Trace)]
/// struct Node {
///     name: String,
///     next: RefCell<Option<Gc<Node>>>,
/// }
///
/// let heap = Heap::new();
/// let a = heap.alloc(Node { name: "a".into(), next: RefCell::new(None) });
/// let b = heap.alloc(Node { name: "b".into(), next: RefCell::new(Some(a.clone())) });
/// assert_eq!(b.next.borrow().as_ref().unwrap().name, "a");
/// assert!(reap::is_tracked(&b));
/// ```
///
/// # Safety
///
/// `trace` must visit only handles that `self` owns (each strong handle it holds at most once
/// per call for every time it holds it). It runs in the middle of trial deletion, while the
/// collector keeps scratch counts in the candidates' links and reads `RefCell`s and `Cell`s
/// without guards, so it must run no code that could touch the runtime or the traced values:
/// it must not create, clone or drop handles or weak references, allocate, collect, mutate any
/// part of the value (no `Cell::take`/`set`, no `RefCell::borrow_mut`), or call user code that
/// might (a `Default`, a `Drop`, a callback). In Shared mode it runs while its thread holds
/// the heap's world stopped, so it must not block on another thread either (a thread that
/// attaches to the heap, or waits for this one's lock, waits for the world to run). A `trace`
/// that calls the runtime anyway gets no deadlock from the calls that would wait for a stop:
/// `collect` returns 0, `detached` runs its closure attached, and the `gc` walks (`get_objects`,
/// `get_referrers`, `freeze`, `unfreeze`, `get_freeze_count`, `shutdown`) panic.
///
/// Visiting fewer handles than the value holds is allowed (the collector then keeps what they
/// lead to), provided every call in one collection visits the same handles: a collection traces an object more than once (to find candidates,
/// to subtract internal references, to mark what is reachable), and a `trace` that reports an
/// edge on one call and hides it on another can get a child collected that a live object still
/// holds. That is never undefined behaviour (the child is reclaimed as garbage and any later use
/// of it panics, or gives `Reclaimed` through `Gc::try_deref`), but it is a bug in the `Trace`
/// impl. `needs_trace` may return `false` only if values of the type can never hold a handle.
///
/// Each handle is reported by one value at most: values that share a container (an `Rc` or
/// `Arc` several of them hold) must not all visit what is in it, at most one of them. Reported
/// twice, a handle's reference is subtracted twice, and the collector can reclaim an object
/// still referenced from outside (undefined behaviour if another thread is reading it). This
/// holds whatever the container: the shared `RwLock`, `OnceLock` and `sync::Mutex` are read
/// by every holder's traversal (a shared `std::sync::Mutex` happens to be spared, as the
/// second traversal finds it taken by the first and is marked incomplete).
///
/// Collections follow the handles that were dropped (SEMANTICS 2.2, 8.5). Garbage made without
/// a dropped handle — a handle moved into a place `trace` visits through a path that holds no
/// handle to its holder (an `Rc` or `Arc` the value shares with code outside the heap), or an
/// edge `trace` hid from an earlier collection and shows again — is found by an exhaustive
/// collection (`Heap::collect_exhaustive`, shutdown, and one on its own each time the heap's
/// surviving objects double), not necessarily by the next `collect`.
///
/// In Shared mode (`reap::sync`), a collection stops only the threads attached to the heap;
/// others (detached ones, those that never attached) keep running, and may move handles between
/// values. So a Shared type's `trace` must report handles that cannot move until the collection
/// has its verdict: handles behind `std::sync::Mutex` or `RwLock` (whose `Trace` keeps the lock
/// held for the collector until then), in a set `OnceLock`, or in fields no thread can change.
/// A type with interior mutability of its own (another lock, an atomic pointer) must report
/// nothing from behind it (the collector then keeps what it holds) or call
/// [`Tracer::mark_incomplete`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `reap::Trace`",
    label = "a heap object and everything it holds must be traceable",
    note = "add `#[derive(reap::Trace)]` to the type, or mark a field that holds no handles with `#[reap(skip)]`"
)]
pub unsafe trait Trace: 'static {
    /// Visits every handle this value holds.
    fn trace(&self, tracer: &mut Tracer<'_>);

    /// Whether values of this type may hold handles. Objects of types that cannot are
    /// untracked: smaller, and never scanned by the collector (SEMANTICS 1.1).
    fn needs_trace() -> bool
    where
        Self: Sized,
    {
        true
    }

    /// The type's finalizer (`__del__`), if it has one. `#[derive(Trace)]` with
    /// `#[reap(finalize)]` returns `Some(<Self as Finalize>::finalize)`.
    fn finalizer() -> Option<fn(&Gc<Self>)>
    where
        Self: Sized,
    {
        None
    }

    /// Whether this value, allocated now, gets the type's finalizer: asked once, at
    /// allocation, only of types that have one. `#[derive(Trace)]` with `#[reap(finalize)]`
    /// forwards to [`Finalize::wants_finalizer`].
    fn wants_finalizer(&self) -> bool
    where
        Self: Sized,
    {
        Self::finalizer().is_some()
    }

    /// The type's Shared-mode finalizer, if it has one. `#[derive(Trace)]` with
    /// `#[reap(sync_finalize)]` returns `Some(<Self as reap::sync::Finalize>::finalize)`.
    fn sync_finalizer() -> Option<fn(&crate::object::shared::Gc<Self>)>
    where
        Self: Sized,
    {
        None
    }

    /// The type's clear hook (CPython's `tp_clear`), if it has one. `#[derive(Trace)]` with
    /// `#[reap(clear)]` returns `Some(<Self as Clear>::clear)`.
    fn clearer() -> Option<fn(&Self)>
    where
        Self: Sized,
    {
        None
    }
}

/// A clear hook (CPython's `tp_clear`): runs on every object of a garbage cycle, after the
/// cycle's finalizers and weak-reference callbacks and before any of its values is dropped
/// (SEMANTICS 2.7). Its job is to let go of the handles the object holds, typically by emptying
/// its containers, so that the `Drop`s that follow meet no member of the cycle whose value is
/// already gone, whatever order they run in.
///
/// While clear hooks run, every member of the garbage is whole: a hook may read any of them.
/// Weak references to them no longer upgrade. A hook that keeps a handle to a member (stores it
/// somewhere that lives on) gets, as a `Drop` would, a handle to an object whose value is
/// dropped right after ([`Gc::try_deref`] then says [`Reclaimed`](crate::Reclaimed)). Opt in
/// with `#[reap(clear)]` beside `#[derive(Trace)]`.
///
/// ```
/// use reap::{Clear, Gc, Heap, Trace};
/// use std::cell::RefCell;
///
/// thread_local!(static SEEN: RefCell<Vec<String>> = RefCell::new(Vec::new()));
///
/// #[derive(Trace)]
/// #[reap(clear)]
/// struct Node {
///     name: &'static str,
///     next: RefCell<Option<Gc<Node>>>,
/// }
///
/// impl Clear for Node {
///     fn clear(&self) {
///         // Every member is still whole here; take the handle out, drop it after the borrow.
///         let next = self.next.borrow_mut().take();
///         let seen = format!("{} -> {}", self.name, next.as_ref().map_or("-", |n| n.name));
///         SEEN.with(|s| s.borrow_mut().push(seen));
///         drop(next);
///     }
/// }
///
/// impl Drop for Node {
///     fn drop(&mut self) {
///         // Cleared: no neighbour left to meet half-dropped, in any order.
///         assert!(self.next.get_mut().is_none());
///     }
/// }
///
/// let heap = Heap::new();
/// let a = heap.alloc(Node { name: "a", next: RefCell::new(None) });
/// let b = heap.alloc(Node { name: "b", next: RefCell::new(Some(a.clone())) });
/// *a.next.borrow_mut() = Some(b.clone());
/// drop((a, b));
/// assert_eq!(heap.collect(2), 2);
/// SEEN.with(|s| {
///     let mut seen = s.borrow().clone();
///     seen.sort();
///     assert_eq!(seen, ["a -> b", "b -> a"]);
/// });
/// ```
pub trait Clear: Trace + Sized {
    /// Lets go of the handles this object holds; called once, only for garbage of a collection.
    fn clear(&self);
}

/// A finalizer (`__del__`): runs at most once in an object's life, before the object's weak
/// references are cleared and before its value is dropped (SEMANTICS 3.1, 3.2).
///
/// The finalizer receives a handle to its object. Storing a clone of it anywhere that lives on
/// resurrects the object: it then lives on, finalized, and its finalizer never runs again.
/// Opt in with `#[reap(finalize)]` beside `#[derive(Trace)]`.
///
/// ```
/// use reap::{Finalize, Gc, Heap, Trace};
/// use std::cell::Cell;
///
/// thread_local!(static DELS: Cell<u32> = Cell::new(0));
///
/// #[derive(Trace)]
/// #[reap(finalize)]
/// struct Resource;
///
/// impl Finalize for Resource {
///     fn finalize(_this: &Gc<Self>) {
///         DELS.with(|d| d.set(d.get() + 1));
///     }
/// }
///
/// let heap = Heap::new();
/// drop(heap.alloc(Resource));
/// assert_eq!(DELS.with(|d| d.get()), 1);
/// ```
pub trait Finalize: Trace + Sized {
    /// Called once, when the object is about to die.
    fn finalize(this: &Gc<Self>);

    /// Whether this value gets the finalizer at all, asked once when it is allocated. An
    /// interpreter whose instances are all one Rust type answers per class (`__del__` defined
    /// or not); an object that answers `false` pays nothing for finalization: it dies on the
    /// plain path, and a collection of it skips the finalizer and resurrection phases.
    ///
    /// ```
    /// use reap::{Finalize, Gc, Heap, Trace};
    /// use std::cell::Cell;
    ///
    /// thread_local!(static DELS: Cell<u32> = Cell::new(0));
    ///
    /// #[derive(Trace)]
    /// #[reap(finalize)]
    /// struct Instance { class_has_del: bool }
    ///
    /// impl Finalize for Instance {
    ///     fn finalize(_: &Gc<Self>) { DELS.with(|d| d.set(d.get() + 1)); }
    ///     fn wants_finalizer(&self) -> bool { self.class_has_del }
    /// }
    ///
    /// let heap = Heap::new();
    /// drop(heap.alloc(Instance { class_has_del: false }));
    /// drop(heap.alloc(Instance { class_has_del: true }));
    /// assert_eq!(DELS.with(|d| d.get()), 1);
    /// ```
    fn wants_finalizer(&self) -> bool {
        true
    }
}

/// A Shared-mode finalizer (`__del__`), exported as [`reap::sync::Finalize`](crate::sync::Finalize):
/// runs at most once in an object's life, on the thread where the object dies, before its weak
/// references are cleared and before its value is dropped (SEMANTICS 3.1, 3.2). Storing a clone
/// of the handle anywhere that lives on (another thread included) resurrects the object. Opt in
/// with `#[reap(sync_finalize)]` beside `#[derive(Trace)]`.
///
/// ```
/// use reap::sync::{Finalize, Gc, Heap};
/// use reap::Trace;
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// static DELS: AtomicU32 = AtomicU32::new(0);
///
/// #[derive(Trace)]
/// #[reap(sync_finalize)]
/// struct Resource;
///
/// impl Finalize for Resource {
///     fn finalize(_this: &Gc<Self>) {
///         DELS.fetch_add(1, Ordering::Relaxed);
///     }
/// }
///
/// let heap = Heap::new();
/// let r = heap.alloc(Resource);
/// std::thread::spawn(move || drop(r)).join().unwrap();
/// // `r` is this thread's object: the other thread's drop is merged at this thread's next
/// // safe point, where the object dies.
/// heap.safepoint();
/// assert_eq!(DELS.load(Ordering::Relaxed), 1);
/// ```
pub trait SharedFinalize: Trace + Send + Sync + Sized {
    /// Called once, when the object is about to die.
    fn finalize(this: &crate::object::shared::Gc<Self>);

    /// Whether this value gets the finalizer at all, asked once when it is allocated (as
    /// [`Finalize::wants_finalizer`]).
    fn wants_finalizer(&self) -> bool {
        true
    }
}

macro_rules! leaf {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: these types never hold handles, so visiting nothing is exact.
        unsafe impl Trace for $t {
            #[inline]
            fn trace(&self, _: &mut Tracer<'_>) {}
            #[inline]
            fn needs_trace() -> bool { false }
        }
    )*};
}

leaf!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    &'static str,
    std::num::NonZeroU32,
    std::num::NonZeroU64,
    std::num::NonZeroUsize,
    std::num::NonZeroI64,
    std::time::Duration,
    std::path::PathBuf,
    std::ffi::OsString,
    std::any::TypeId,
);

// SAFETY: shared strings and byte slices hold no handles.
unsafe impl Trace for std::rc::Rc<str> {
    fn trace(&self, _: &mut Tracer<'_>) {}
    fn needs_trace() -> bool {
        false
    }
}
// SAFETY: as above.
unsafe impl Trace for std::sync::Arc<str> {
    fn trace(&self, _: &mut Tracer<'_>) {}
    fn needs_trace() -> bool {
        false
    }
}
// SAFETY: as above.
unsafe impl Trace for std::rc::Rc<[u8]> {
    fn trace(&self, _: &mut Tracer<'_>) {}
    fn needs_trace() -> bool {
        false
    }
}

macro_rules! fn_pointer {
    ($($arg:ident)*) => {
        // SAFETY: a function pointer holds no handles.
        unsafe impl<R: 'static $(, $arg: 'static)*> Trace for fn($($arg),*) -> R {
            fn trace(&self, _: &mut Tracer<'_>) {}
            fn needs_trace() -> bool {
                false
            }
        }
    };
}
fn_pointer!();
fn_pointer!(A);
fn_pointer!(A B);
fn_pointer!(A B C);
fn_pointer!(A B C D);

// SAFETY: `str` holds no handles.
unsafe impl Trace for str {
    fn trace(&self, _: &mut Tracer<'_>) {}
}

// SAFETY: a phantom holds nothing.
unsafe impl<T: ?Sized + 'static> Trace for std::marker::PhantomData<T> {
    fn trace(&self, _: &mut Tracer<'_>) {}
    fn needs_trace() -> bool {
        false
    }
}

// SAFETY: a handle owns exactly itself.
unsafe impl<T: ?Sized + 'static> Trace for Gc<T> {
    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        tracer.visit(self);
    }
}

// A Local heap's collection treats a handle to any object outside its heap as a reference from
// outside, and a Shared object is never one of its candidates: only a Shared collection looks.
// SAFETY: a handle owns exactly itself.
unsafe impl<T: ?Sized + 'static> Trace for crate::object::shared::Gc<T> {
    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        tracer.visit_shared(self);
    }
}

// SAFETY: visits the contained value, if any, which the option owns.
unsafe impl<T: Trace> Trace for Option<T> {
    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if let Some(v) = self {
            v.trace(tracer);
        }
    }
    fn needs_trace() -> bool {
        T::needs_trace()
    }
}

// SAFETY: visits both alternatives' owned values.
unsafe impl<T: Trace, E: Trace> Trace for Result<T, E> {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        match self {
            Ok(v) => v.trace(tracer),
            Err(e) => e.trace(tracer),
        }
    }
    fn needs_trace() -> bool {
        T::needs_trace() || E::needs_trace()
    }
}

// SAFETY: a box owns its contents.
unsafe impl<T: ?Sized + Trace> Trace for Box<T> {
    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        (**self).trace(tracer);
    }
    fn needs_trace() -> bool {
        // Unsized contents (a `Box<dyn Trait>`) may hold anything.
        true
    }
}

// SAFETY: a slice owns its elements.
unsafe impl<T: Trace> Trace for [T] {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        for v in self {
            v.trace(tracer);
        }
    }
}

// SAFETY: an array owns its elements.
unsafe impl<T: Trace, const N: usize> Trace for [T; N] {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        for v in self {
            v.trace(tracer);
        }
    }
    fn needs_trace() -> bool {
        T::needs_trace()
    }
}

macro_rules! sequence {
    ($($c:ident),*) => {$(
        // SAFETY: the collection owns its elements and iteration visits each once.
        unsafe impl<T: Trace> Trace for $c<T> {
            fn trace(&self, tracer: &mut Tracer<'_>) {
                for v in self.iter() {
                    v.trace(tracer);
                }
            }
            fn needs_trace() -> bool {
                T::needs_trace()
            }
        }
    )*};
}
sequence!(Vec, VecDeque, LinkedList, BTreeSet, BinaryHeap);

// SAFETY: the set owns its elements.
unsafe impl<T: Trace, S: 'static> Trace for HashSet<T, S> {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        for v in self.iter() {
            v.trace(tracer);
        }
    }
    fn needs_trace() -> bool {
        T::needs_trace()
    }
}

// SAFETY: the set owns its elements.
unsafe impl<T: Trace, S: 'static> Trace for hashbrown::HashSet<T, S> {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        for v in self.iter() {
            v.trace(tracer);
        }
    }
    fn needs_trace() -> bool {
        T::needs_trace()
    }
}

macro_rules! map {
    ($($m:ident)::* $(, $s:ident)?) => {
        // SAFETY: the map owns its keys and values.
        unsafe impl<K: Trace, V: Trace $(, $s: 'static)?> Trace for $($m)::*<K, V $(, $s)?> {
            fn trace(&self, tracer: &mut Tracer<'_>) {
                for (k, v) in self.iter() {
                    k.trace(tracer);
                    v.trace(tracer);
                }
            }
            fn needs_trace() -> bool {
                K::needs_trace() || V::needs_trace()
            }
        }
    };
}
map!(HashMap, S);
map!(hashbrown::HashMap, S);
map!(BTreeMap);

// The cell owns its value, and `trace` visits it in place. No `take`/`set` (which would run the
// user's `Default` and `Drop` in the middle of a collection): the value is read through the
// cell's pointer for the length of this call, during which no code that could write the cell
// runs (tracing runs no user code: the derive and these impls only visit fields, and a
// hand-written `Trace` must not either, by its contract). A `Cell`'s contents are only ever
// written by `Cell`'s own methods, which run no user code while the value is half-written.
// SAFETY: visits exactly the handles the cell's value owns, reading it in place (see above).
unsafe impl<T: Trace> Trace for Cell<T> {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        // SAFETY: see above: nothing writes the cell while this shared reference lives.
        unsafe { &*self.as_ptr() }.trace(tracer);
    }
    fn needs_trace() -> bool {
        T::needs_trace()
    }
}

// SAFETY: the cell owns its value. A value borrowed mutably right now is not traversed; the
// tracer is told, and the collector keeps the object (SEMANTICS 5.3).
unsafe impl<T: Trace> Trace for RefCell<T> {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        // SAFETY: the reference lives only for this call, in which no user code runs (tracing
        // runs none: Trace's contract), so nothing can borrow the cell mutably meanwhile. Not
        // taking a guard saves two writes per cell per pass of the collector.
        match unsafe { self.try_borrow_unguarded() } {
            Ok(v) => v.trace(tracer),
            Err(_) => tracer.mark_incomplete(),
        }
    }
    fn needs_trace() -> bool {
        T::needs_trace()
    }
}

// Locks and once-cells. A lock is never waited for: one held right now (on this thread, a guard
// alive across an allocation that started a collection) is not traversed; as with a mutably
// borrowed `RefCell`, the tracer is told and the collector keeps the object (SEMANTICS 5.3).
// `Gc` is `!Send`, so a lock whose value holds a handle is `!Sync`: only the heap's thread locks
// it, and no other guard is taken or released during a collection (no user code runs), so every
// pass of one collection sees the same state and visits the same handles. A lock whose type
// cannot hold handles is not locked at all (nothing to visit, and another thread's guard on a
// `Sync` lock must not keep the object). Locking runs no user code. In a Local collection the
// guard taken here is released before `trace` returns. In a Shared-mode collection other threads
// may run during the pause (detached ones, and those that never attached), so the guard is kept
// (`Tracer::hold`) until the collector has its verdict: no thread can move a handle out of or
// into a value between the snapshot of its edges and the end of trial deletion. (A lock already
// held by another thread is not traversed, and the object is kept.) A hand-written `Trace` for a
// Shared type with its own interior mutability must likewise report only handles that stay put
// while the world is stopped. A guard poisons its lock only if the value's own `trace` panics
// (a hand-written one), as any panic under a lock does.

// SAFETY: the mutex owns its value, and `trace` visits exactly the handles it holds, under the
// lock. A poisoned mutex still owns its value, so it is visited all the same. A mutex locked by
// someone else is not traversed; the tracer is told, and the collector keeps the object.
unsafe impl<T: Trace> Trace for std::sync::Mutex<T> {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if !T::needs_trace() {
            return;
        }
        match self.try_lock() {
            Ok(v) => tracer.trace_under(v),
            Err(TryLockError::Poisoned(p)) => tracer.trace_under(p.into_inner()),
            Err(TryLockError::WouldBlock) => tracer.mark_incomplete(),
        }
    }
    fn needs_trace() -> bool {
        T::needs_trace()
    }
}

// SAFETY: the lock owns its value, and `trace` visits exactly the handles it holds, under a read
// lock (taken even beside other readers; a poisoned lock's value is visited all the same). A lock
// held for writing is not traversed; the tracer is told, and the collector keeps the object.
unsafe impl<T: Trace> Trace for std::sync::RwLock<T> {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if !T::needs_trace() {
            return;
        }
        match self.try_read() {
            Ok(v) => tracer.trace_under(v),
            Err(TryLockError::Poisoned(p)) => tracer.trace_under(p.into_inner()),
            Err(TryLockError::WouldBlock) => tracer.mark_incomplete(),
        }
    }
    fn needs_trace() -> bool {
        T::needs_trace()
    }
}

// SAFETY: the cell owns its value once it is set, and `trace` visits exactly that value's
// handles. While unset (or still being initialised) it holds nothing.
unsafe impl<T: Trace> Trace for std::sync::OnceLock<T> {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if let Some(v) = self.get() {
            v.trace(tracer);
        }
    }
    fn needs_trace() -> bool {
        T::needs_trace()
    }
}

// Atomics hold plain numbers: leaves.
#[cfg(target_has_atomic = "8")]
leaf!(AtomicBool, AtomicU8, AtomicI8);
#[cfg(target_has_atomic = "16")]
leaf!(AtomicU16, AtomicI16);
#[cfg(target_has_atomic = "32")]
leaf!(AtomicU32, AtomicI32);
#[cfg(target_has_atomic = "64")]
leaf!(AtomicU64, AtomicI64);
#[cfg(target_has_atomic = "ptr")]
leaf!(AtomicUsize, AtomicIsize);

// SAFETY: a raw pointer owns nothing: even one that points at a heap object holds no count on
// it, so there is no handle to visit.
#[cfg(target_has_atomic = "ptr")]
unsafe impl<T: 'static> Trace for AtomicPtr<T> {
    #[inline]
    fn trace(&self, _: &mut Tracer<'_>) {}
    #[inline]
    fn needs_trace() -> bool {
        false
    }
}

macro_rules! tuple {
    ($($name:ident)+) => {
        // SAFETY: a tuple owns its fields.
        unsafe impl<$($name: Trace),+> Trace for ($($name,)+) {
            #[allow(non_snake_case)]
            fn trace(&self, tracer: &mut Tracer<'_>) {
                let ($($name,)+) = self;
                $($name.trace(tracer);)+
            }
            fn needs_trace() -> bool {
                false $(|| $name::needs_trace())+
            }
        }
    };
}
tuple!(A);
tuple!(A B);
tuple!(A B C);
tuple!(A B C D);
tuple!(A B C D E);
tuple!(A B C D E F);
tuple!(A B C D E F G);
tuple!(A B C D E F G H);
tuple!(A B C D E F G H I);
tuple!(A B C D E F G H I J);
tuple!(A B C D E F G H I J K);
tuple!(A B C D E F G H I J K L);

// SAFETY: the map owns its keys and values; iteration visits each once and runs no user code
// (it walks the entries vector).
#[cfg(feature = "indexmap")]
unsafe impl<K: Trace, V: Trace, S: 'static> Trace for indexmap::IndexMap<K, V, S> {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        for (k, v) in self.iter() {
            k.trace(tracer);
            v.trace(tracer);
        }
    }
    fn needs_trace() -> bool {
        K::needs_trace() || V::needs_trace()
    }
}

// SAFETY: the set owns its elements; iteration visits each once and runs no user code.
#[cfg(feature = "indexmap")]
unsafe impl<T: Trace, S: 'static> Trace for indexmap::IndexSet<T, S> {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        for v in self.iter() {
            v.trace(tracer);
        }
    }
    fn needs_trace() -> bool {
        T::needs_trace()
    }
}

// SAFETY: the vector owns its elements, inline or spilled; iteration visits each once.
unsafe impl<A: smallvec::Array + 'static> Trace for smallvec::SmallVec<A>
where
    A::Item: Trace,
{
    fn trace(&self, tracer: &mut Tracer<'_>) {
        for v in self.iter() {
            v.trace(tracer);
        }
    }
    fn needs_trace() -> bool {
        A::Item::needs_trace()
    }
}

#[cfg(test)]
mod tests {
    use super::HeldGuard;
    use std::cell::Cell;

    /// A guard that counts its drops in a counter it borrows, padded to `N` words.
    struct Counting<'a, const N: usize> {
        drops: &'a Cell<u32>,
        _pad: [usize; N],
    }

    impl<const N: usize> Drop for Counting<'_, N> {
        fn drop(&mut self) {
            self.drops.set(self.drops.get() + 1);
        }
    }

    #[test]
    fn a_small_guard_is_kept_inline_and_dropped_once() {
        let drops = Cell::new(0);
        let g = HeldGuard::new(Counting::<1> {
            drops: &drops,
            _pad: [7],
        });
        assert_eq!(drops.get(), 0, "kept, not dropped");
        drop(g);
        assert_eq!(drops.get(), 1);
    }

    #[test]
    fn a_large_guard_is_boxed_and_dropped_once() {
        // Five words: more than `HeldGuard`'s two inline words.
        let drops = Cell::new(0);
        let g = HeldGuard::new(Counting::<4> {
            drops: &drops,
            _pad: [1, 2, 3, 4],
        });
        assert_eq!(drops.get(), 0, "kept, not dropped");
        drop(g);
        assert_eq!(drops.get(), 1);
    }
}
