//! Weak references (SEMANTICS 4.1–4.5).
//!
//! As in CPython, a weak reference is itself an object on the heap (a [`WeakRefObj`]): it has an
//! identity, may carry a callback, can be held by other objects and can become garbage. A
//! [`Weak<T>`] is a typed handle to one. The referent points back at its weak references through
//! a [`WeakInfo`] block, allocated the first time the referent gets a weak reference and reached
//! through the tagged `meta` word of its header (so objects that never have weak references pay
//! nothing for them):
//!
//! - `shared`: the one callback-less weak reference of the object, reused by every
//!   [`Weak::new`] while it lives (CPython's `ref(o) is ref(o)`), so creating a weak reference
//!   to an object that has one is a count increment, as cheap as `Rc::downgrade`. As in
//!   CPython, the block does not own it: it dies with its last handle (taking itself out of the
//!   block), so one held only by garbage is garbage too;
//! - `head`: the weak references with callbacks, in an intrusive doubly linked list through
//!   the weak-reference objects' extra blocks, newest first (CPython inserts them after the basic reference, so
//!   callbacks run newest first). Insertion and removal are O(1) and allocate nothing.
//!
//! Neither list owns its weak references: a weak reference that dies first takes itself out of
//! its referent's lists, so its callback never runs. When the referent dies, every weak
//! reference is cleared (its target set to `None`) before any callback runs; each callback gets
//! its (now dead) weak reference.

use std::any::Any;
use std::cell::{Cell, OnceCell, RefCell};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use smallvec::SmallVec;

use crate::local::state::{heap_of, HeapInner, UnraisableKind};
use crate::object::header::{Flags, Header, META_WEAK_INFO};
use crate::object::vtable::VTable;
use crate::trace::{Trace, Tracer};
use crate::Gc;

/// The weak-reference bookkeeping of one referent.
///
/// `repr(C)` with `vtable` first: `Header::vtable` reads it through the tagged `meta` word
/// without naming this type.
#[repr(C)]
pub(crate) struct WeakInfo {
    /// The referent's vtable (the header's `meta` points here instead, tagged).
    pub(crate) vtable: &'static VTable,
    /// The shared weak reference, not owned: it clears this when it dies.
    shared: Cell<Option<NonNull<WeakRefObj>>>,
    /// Newest weak reference with a callback (or payload); the list continues through
    /// `WeakExtra::next`. Its length is counted by walking it, as CPython's
    /// `getweakrefcount` does, which keeps this block at three words.
    head: Cell<Option<NonNull<WeakRefObj>>>,
}

impl WeakInfo {
    /// Puts a weak reference with a callback at the head of the list.
    fn push(&self, w: NonNull<WeakRefObj>) {
        // SAFETY: `w` and the listed weak references are allocated (they unlist themselves
        // before they are freed).
        unsafe {
            let wr = w.as_ref().links();
            wr.prev.set(None);
            wr.next.set(self.head.get());
            if let Some(h) = self.head.get() {
                h.as_ref().links().prev.set(Some(w));
            }
        }
        self.head.set(Some(w));
    }

    /// Takes a listed weak reference out of the list.
    fn unlist(&self, w: NonNull<WeakRefObj>) {
        // SAFETY: `w` is listed here, and so are its neighbours: all allocated.
        unsafe {
            let wr = w.as_ref().links();
            let (prev, next) = (wr.prev.take(), wr.next.take());
            match prev {
                Some(p) => p.as_ref().links().next.set(next),
                None => self.head.set(next),
            }
            if let Some(n) = next {
                n.as_ref().links().prev.set(prev);
            }
        }
    }

    /// Takes the shared weak reference out of its slot, cleared (no callback is owed for it).
    fn clear_shared(&self) {
        if let Some(shared) = self.shared.take() {
            // SAFETY: a weak reference in the shared slot is allocated (its `Drop` takes it out).
            unsafe { shared.as_ref() }.target.set(None);
        }
    }

    /// Number of weak references in the list.
    fn listed_len(&self) -> usize {
        let mut n = 0;
        let mut cur = self.head.get();
        while let Some(w) = cur {
            n += 1;
            // SAFETY: listed weak references are allocated.
            cur = unsafe { w.as_ref() }.links().next.get();
        }
        n
    }

    /// Empties the list, handing `f` its members newest first. `f` must not change the list.
    fn drain(&self, mut f: impl FnMut(NonNull<WeakRefObj>)) {
        let mut cur = self.head.take();
        while let Some(w) = cur {
            // SAFETY: listed weak references are allocated.
            let wr = unsafe { w.as_ref() }.links();
            cur = wr.next.take();
            wr.prev.set(None);
            f(w);
        }
    }
}

/// A weak-reference callback, type-erased.
pub(crate) trait ErasedCallback {
    fn call(&self, weak: &Gc<WeakRefObj>);
    fn trace(&self, tracer: &mut Tracer<'_>);
    /// The traced state handed to the callback, if it has one.
    fn state(&self) -> Option<&dyn Any>;
}

/// A weak reference's payload, type-erased.
pub(crate) trait ErasedPayload {
    fn trace(&self, tracer: &mut Tracer<'_>);
    fn as_any(&self) -> &dyn Any;
}

impl<P: Trace + 'static> ErasedPayload for P {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        Trace::trace(self, tracer);
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct PlainCallback<T: ?Sized, F> {
    f: F,
    ptr: NonNull<T>,
}

impl<T: ?Sized + 'static, F: Fn(&Weak<T>) + 'static> ErasedCallback for PlainCallback<T, F> {
    fn call(&self, weak: &Gc<WeakRefObj>) {
        let w = Weak {
            obj: weak.clone(),
            ptr: self.ptr,
        };
        (self.f)(&w);
    }
    fn trace(&self, _: &mut Tracer<'_>) {}
    fn state(&self) -> Option<&dyn Any> {
        None
    }
}

struct TracedCallback<T: ?Sized, S, F> {
    state: S,
    f: F,
    ptr: NonNull<T>,
}

impl<T: ?Sized + 'static, S: Trace + 'static, F: Fn(&S, &Weak<T>) + 'static> ErasedCallback
    for TracedCallback<T, S, F>
{
    fn call(&self, weak: &Gc<WeakRefObj>) {
        let w = Weak {
            obj: weak.clone(),
            ptr: self.ptr,
        };
        (self.f)(&self.state, &w);
    }
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.state.trace(tracer);
    }
    fn state(&self) -> Option<&dyn Any> {
        Some(&self.state)
    }
}

/// A weak-reference object: what a [`Weak`] handle points at.
///
/// Two words, so that the first weak reference to an object costs little memory: the target
/// and, for weak references with a callback or payload (or once hashed), a boxed
/// `WeakExtra`. The callback-less shared weak reference, the common kind, has none.
///
/// Invariant: `target` is `Some(h)` only while `h` is allocated and this object is listed in
/// `h`'s weak-info block; clearing sets it to `None` and takes it out of the lists together.
pub struct WeakRefObj {
    target: Cell<Option<NonNull<Header>>>,
    /// Set at creation for listed weak references; set on first hash for a shared one; never
    /// replaced once set (so references into it live as long as the object).
    extra: OnceCell<Box<WeakExtra>>,
}

/// What a weak reference with a callback or payload carries besides its target.
struct WeakExtra {
    /// Whether the weak reference belongs in its referent's list (made with a callback or a
    /// payload) rather than in the shared slot. Fixed at creation.
    listed: bool,
    callback: RefCell<Option<Box<dyn ErasedCallback>>>,
    /// Set at creation, never changed: the `KeyedRef` key.
    payload: Option<Box<dyn ErasedPayload>>,
    hash: Cell<Option<u64>>,
    /// Neighbours in the referent's list of weak references with callbacks.
    prev: Cell<Option<NonNull<WeakRefObj>>>,
    next: Cell<Option<NonNull<WeakRefObj>>>,
}

impl WeakExtra {
    fn new(
        listed: bool,
        callback: Option<Box<dyn ErasedCallback>>,
        payload: Option<Box<dyn ErasedPayload>>,
    ) -> WeakExtra {
        WeakExtra {
            listed,
            callback: RefCell::new(callback),
            payload,
            hash: Cell::new(None),
            prev: Cell::new(None),
            next: Cell::new(None),
        }
    }
}

// SAFETY: the only handles a weak-reference object owns are those its callback's state holds,
// which the callback traces; the target is not owned and not visited.
unsafe impl Trace for WeakRefObj {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        // SAFETY: no user code runs while tracing (Trace's contract), so the callback cannot be
        // borrowed mutably while this shared reference lives.
        let Some(extra) = self.extra.get() else {
            return;
        };
        // SAFETY: as above.
        match unsafe { extra.callback.try_borrow_unguarded() } {
            Ok(cb) => {
                if let Some(cb) = cb {
                    cb.trace(tracer);
                }
            }
            Err(_) => tracer.mark_incomplete(),
        }
        if let Some(p) = &extra.payload {
            p.trace(tracer);
        }
    }
}

impl Drop for WeakRefObj {
    fn drop(&mut self) {
        // A weak reference that dies before its referent leaves the referent's lists, so its
        // callback never runs (SEMANTICS 4.2).
        self.detach();
    }
}

impl WeakRefObj {
    /// Whether this weak reference belongs in its referent's list rather than in the shared
    /// slot: it was made with a callback or a payload.
    fn is_listed_kind(&self) -> bool {
        self.extra.get().is_some_and(|e| e.listed)
    }

    /// The list links and callback of a listed weak reference.
    fn links(&self) -> &WeakExtra {
        self.extra
            .get()
            .expect("reap: a listed weak reference without its extra block")
    }

    /// Whether a callback is still pending.
    fn has_callback(&self) -> bool {
        self.extra
            .get()
            .is_some_and(|e| e.callback.borrow().is_some())
    }

    /// Clears this weak reference and takes it out of its referent's lists.
    fn detach(&self) {
        if let Some(target) = self.target.take() {
            let me = NonNull::from(self);
            // SAFETY: a set target is allocated and lists us (WeakRefObj invariant).
            let info = unsafe { info_of(target) }.expect("weak target without weak info");
            if info.shared.get() == Some(me) {
                info.shared.set(None);
            } else if self.is_listed_kind() {
                info.unlist(me);
            }
            // A shared-kind weak reference that a newer one replaced in the slot while it was
            // dying never gets here: the replacement cleared its target (`Weak::new_shared`).
        }
    }
}

// The typed side of the header's tagged `meta` word, kept here so that the header's module
// does not depend on this one.
impl Header {
    /// The object's weak-info block, if it has one.
    #[inline]
    pub(crate) fn weak_info(&self) -> Option<*mut WeakInfo> {
        let meta = self.meta.get();
        if meta.addr() & META_WEAK_INFO == 0 {
            None
        } else {
            Some(meta.map_addr(|a| a & !META_WEAK_INFO) as *mut WeakInfo)
        }
    }

    /// Points `meta` at a weak-info block (tagged).
    pub(crate) fn set_weak_info(&self, info: *mut WeakInfo) {
        let p = (info as *const ()).map_addr(|a| a | META_WEAK_INFO);
        self.meta.set(p);
    }
}

/// The weak info of the object with this header, if it has one.
///
/// # Safety
/// `header` is allocated.
unsafe fn info_of<'a>(header: NonNull<Header>) -> Option<&'a WeakInfo> {
    // SAFETY: allocated (caller).
    let info = unsafe { header.as_ref() }.weak_info()?;
    // SAFETY: a tagged meta points at the object's live WeakInfo.
    Some(unsafe { &*info })
}

/// The weak info of a live object of `heap`, made on first use.
#[inline]
fn ensure_info<'a>(heap: &HeapInner, header: NonNull<Header>) -> &'a WeakInfo {
    // SAFETY: callers pass the header of an object they hold a handle to.
    match unsafe { info_of(header) } {
        Some(info) => info,
        None => make_info(heap, header),
    }
}

#[cold]
#[inline(never)]
fn make_info<'a>(heap: &HeapInner, header: NonNull<Header>) -> &'a WeakInfo {
    // SAFETY: callers pass the header of an object they hold a handle to.
    let h = unsafe { header.as_ref() };
    let ptr = heap
        .slabs
        .alloc(std::alloc::Layout::new::<WeakInfo>())
        .cast::<WeakInfo>();
    // SAFETY: fresh memory with WeakInfo's layout.
    unsafe {
        ptr.as_ptr().write(WeakInfo {
            vtable: h.vtable(),
            shared: Cell::new(None),
            head: Cell::new(None),
        })
    };
    h.set_weak_info(ptr.as_ptr());
    // SAFETY: just made; freed only with the object (`free_info`).
    unsafe { &*ptr.as_ptr() }
}

/// The shared weak reference, if it is alive (not dying: count above 0).
fn held_shared(info: &WeakInfo) -> Option<NonNull<WeakRefObj>> {
    let s = info.shared.get()?;
    // SAFETY: a weak reference in the shared slot is allocated (it clears the slot when it
    // dies, in its `Drop`).
    let strong = unsafe { Header::from_value(s).as_ref() }.strong();
    (strong > 0).then_some(s)
}

/// Number of weak references to the object (`getweakrefcount`).
pub(crate) fn weak_count(header: NonNull<Header>) -> usize {
    // SAFETY: callers hold a handle to the object.
    match unsafe { info_of(header) } {
        None => 0,
        Some(info) => held_shared(info).is_some() as usize + info.listed_len(),
    }
}

/// Work owed once every weak reference to a dying object is cleared.
pub(crate) enum Pending {
    /// A callback to run: the weak reference (held; its callback is taken when it runs) and the
    /// referent's vtable (for the type name in reports).
    Call(Gc<WeakRefObj>, &'static VTable),
}

pub(crate) type PendingCallback = Pending;

/// Clears every weak reference to the object and queues the callbacks of those still alive,
/// newest first. With `in_collection`, weak references that are garbage of the running
/// collection (marked `COLLECTING` and not `REACHABLE`) keep their callback: it never runs.
///
/// # Safety
/// The object is allocated and will not be reachable through weak references again.
unsafe fn clear_all(
    header: NonNull<Header>,
    in_collection: bool,
    calls: &mut impl Extend<PendingCallback>,
) {
    // SAFETY: allocated (caller).
    let Some(info) = (unsafe { info_of(header) }) else {
        return;
    };
    let vtable = info.vtable;
    info.clear_shared();
    // Newest first, the order callbacks run in.
    info.drain(|w| {
        // SAFETY: as above.
        let wr = unsafe { w.as_ref() };
        wr.target.set(None);
        let wh = Header::from_value(w);
        // SAFETY: allocated.
        let h = unsafe { wh.as_ref() };
        // A weak reference whose own death is pending (count 0) is treated as dead already.
        let alive = h.strong() > 0;
        let garbage = in_collection && h.has(Flags::COLLECTING) && !h.has(Flags::REACHABLE);
        if alive && !garbage && wr.has_callback() {
            h.inc_strong();
            // SAFETY: alive; the new handle owns the count just added.
            let handle = unsafe { Gc::from_value_ptr(w) };
            calls.extend(std::iter::once(Pending::Call(handle, vtable)));
        }
    });
}

/// Runs queued callbacks in order, each under a panic guard. Returns how many of the weak
/// references called back died right after (the runtime held the last handle), which a
/// collection counts as collected, as CPython's `handle_weakrefs` does.
pub(crate) fn run_callbacks(
    heap: &HeapInner,
    calls: impl IntoIterator<Item = PendingCallback>,
) -> usize {
    let mut freed = 0;
    for pending in calls {
        match pending {
            Pending::Call(w, vtable) => {
                // Taken now: the weak reference is cleared and out of every list, so this is
                // the only place its callback can run, and it runs once.
                let Some(extra) = w.extra.get() else {
                    continue;
                };
                let type_name = (vtable.type_name)();
                // The cell is borrowed only while `Weak::callback_state` clones the state: a
                // `Clone` that killed the referent. The callback cannot be taken from under it;
                // it is dropped unrun, and said so, rather than panicking out of the death.
                let Ok(mut slot) = extra.callback.try_borrow_mut() else {
                    heap.report(crate::unraisable::Unraisable::new(
                        UnraisableKind::WeakCallback,
                        type_name,
                        "weak reference callback not run: its referent died while \
                         `callback_state` was cloning the callback's state"
                            .to_string(),
                    ));
                    continue;
                };
                let Some(cb) = slot.take() else {
                    continue;
                };
                drop(slot);
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| cb.call(&w))) {
                    heap.report_panic_on(
                        UnraisableKind::WeakCallback,
                        type_name,
                        p,
                        Some(w.header_ptr()),
                    );
                }
                // The callback's captures may run user `Drop`s; the weak reference's own death
                // (if this was its last handle) guards its user code itself.
                if let Err(p) = catch_unwind(AssertUnwindSafe(move || drop(cb))) {
                    heap.report_panic(UnraisableKind::Drop, type_name, p);
                }
                freed += usize::from(Gc::strong_count(&w) == 1);
                drop(w);
            }
        }
    }
    freed
}

/// Clears every weak reference to a dying object, then runs the callbacks of those still
/// alive, newest first (SEMANTICS 3.1 b, 4.2).
///
/// # Safety
/// The object has strong count 0 and is allocated.
pub(crate) unsafe fn clear_and_call(heap: &HeapInner, header: NonNull<Header>) {
    // SAFETY: allocated (caller).
    let Some(info) = (unsafe { info_of(header) }) else {
        return;
    };
    if info.head.get().is_none() {
        // The common case, at most the shared weak reference: clearing it owes no callback.
        info.clear_shared();
        return;
    }
    // Inline: an object rarely has more than a few weak references with callbacks, and its
    // death should not allocate to run them.
    let mut calls = SmallVec::<[PendingCallback; 4]>::new();
    // SAFETY: caller.
    unsafe { clear_all(header, false, &mut calls) };
    run_callbacks(heap, calls);
}

/// Collection phase 2.4 for one garbage object: clears its weak references and queues the
/// callbacks of those that are not garbage themselves.
///
/// # Safety
/// The object is allocated and part of the running collection's garbage.
pub(crate) unsafe fn clear_for_collection(
    header: NonNull<Header>,
    calls: &mut Vec<PendingCallback>,
) {
    // SAFETY: caller.
    unsafe { clear_all(header, true, calls) };
}

/// Whether the object is a weak-reference object.
pub(crate) fn is_weakref(h: &Header) -> bool {
    (h.vtable().type_id)() == std::any::TypeId::of::<WeakRefObj>()
}

/// If the garbage object is itself a weak reference, detaches it from its referent: it is
/// cleared and its callback never runs (SEMANTICS 2.4, bpo-38006).
///
/// # Safety
/// The object is allocated.
pub(crate) unsafe fn detach_if_weakref(header: NonNull<Header>) {
    // SAFETY: allocated (caller).
    let h = unsafe { header.as_ref() };
    if (h.vtable().type_id)() == std::any::TypeId::of::<WeakRefObj>() {
        // SAFETY: its value is a live WeakRefObj.
        let w = unsafe { Header::value_ptr(header).cast::<WeakRefObj>().as_ref() };
        w.detach();
    }
}

/// Frees the weak info of a dead object, clearing anything still listed.
///
/// # Safety
/// The object is dead: no handle can reach it.
pub(crate) unsafe fn free_info(heap: &HeapInner, header: NonNull<Header>) {
    // SAFETY: allocated until the caller frees it.
    let h = unsafe { header.as_ref() };
    let Some(ptr) = h.weak_info() else {
        return;
    };
    // SAFETY: a tagged meta points at the live WeakInfo.
    let info = unsafe { &*ptr };
    // Weak references made after the object's weak references were last cleared (a `Drop`
    // during reclaim made one to a member of its garbage) are cleared now, and their callbacks
    // run, as on the refcount path (SEMANTICS 2.7). The count is 0, so nobody can make another
    // meanwhile; the loop is only belt and braces.
    while info.shared.get().is_some() || info.head.get().is_some() {
        // SAFETY: allocated, count 0: it is not reachable through weak references again.
        unsafe { clear_and_call(heap, header) };
    }
    h.set_vtable(info.vtable);
    info.clear_shared();
    // SAFETY: listed weak references are allocated.
    info.drain(|w| unsafe { w.as_ref() }.target.set(None));
    // SAFETY: made by `make_info` from this heap's slabs with this layout; nothing refers to it
    // any more (the header's meta points at the vtable again). WeakInfo has no drop glue.
    unsafe {
        heap.slabs.dealloc(
            NonNull::new_unchecked(ptr.cast()),
            std::alloc::Layout::new::<WeakInfo>(),
        )
    };
}

/// The error of using a weak reference whose referent is gone: CPython's `ReferenceError`
/// ("weakly-referenced object no longer exists") and the `TypeError` of hashing a dead weak
/// reference that was never hashed ("weak object has gone away").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeakGone;

impl fmt::Display for WeakGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("weak object has gone away")
    }
}

impl std::error::Error for WeakGone {}

/// A weak reference: a handle to a weak-reference object that does not keep its referent alive.
///
/// ```
/// use reap::{Heap, Weak};
/// use std::{cell::Cell, rc::Rc};
///
/// let heap = Heap::new();
/// let obj = heap.alloc(String::from("data"));
/// let plain = Weak::new(&obj);
/// assert!(plain.ptr_eq(&Weak::new(&obj)), "callback-less weak references are shared");
///
/// let fired = Rc::new(Cell::new(false));
/// let f = fired.clone();
/// let with_cb = Weak::with_untraced_callback(&obj, move |w: &Weak<String>| {
///     assert!(w.upgrade().is_none());
///     f.set(true);
/// });
/// assert_eq!(plain.upgrade().as_deref().map(String::as_str), Some("data"));
/// drop(obj);
/// assert!(fired.get());
/// assert!(plain.upgrade().is_none() && with_cb.upgrade().is_none());
/// ```
pub struct Weak<T: ?Sized> {
    obj: Gc<WeakRefObj>,
    ptr: NonNull<T>,
}

impl<T: ?Sized + 'static> Weak<T> {
    /// The object's shared callback-less weak reference, made on first use (SEMANTICS 4.3).
    #[inline]
    pub fn new(target: &Gc<T>) -> Weak<T> {
        // SAFETY: `target` keeps the object allocated.
        if let Some(shared) = unsafe { info_of(target.header_ptr()) }.and_then(held_shared) {
            // SAFETY: the shared weak reference is alive (count above 0: its death has not
            // begun); the new handle owns the count added here.
            let obj = unsafe {
                Header::from_value(shared).as_ref().inc_strong();
                Gc::from_value_ptr(shared)
            };
            return Weak {
                obj,
                ptr: target.value_ptr(),
            };
        }
        // No weak info yet, no shared weak reference, or the one in the slot is dying (its
        // count reached 0 and its `Drop`, which clears the slot, is still to come): a new one
        // takes the slot.
        Self::new_shared(target)
    }

    #[cold]
    #[inline(never)]
    fn new_shared(target: &Gc<T>) -> Weak<T> {
        let heap = heap_of(target.header());
        let info = ensure_info(heap, target.header_ptr());
        // Untracked: no collection (no user code) can run before the slot is set.
        let obj = Self::make(heap, target, None, None);
        if let Some(dying) = info.shared.replace(Some(obj.value_ptr())) {
            // The one in the slot has count 0 (`held_shared` refused it): its death has begun
            // and its `Drop` may come after the referent's, which will clear only the new one.
            // Cleared now, it can never reach the referent again (WeakRefObj invariant).
            // SAFETY: a weak reference in the shared slot is allocated until its `Drop` takes
            // it out of the slot, which has not happened (it is still there).
            unsafe { dying.as_ref() }.target.set(None);
        }
        Weak {
            obj,
            ptr: target.value_ptr(),
        }
    }

    /// A new weak reference whose callback runs once when the referent dies while this weak
    /// reference is still alive (`weakref.ref(obj, callback)`). The callback receives `state`
    /// and this weak reference (already dead).
    ///
    /// `state` is traced: handles in it are visible to the collector, so a cycle through the
    /// callback (the usual case: a Python callback is a closure over objects) is collectable
    /// (SEMANTICS 4.2). The closure itself must be `Copy`, which keeps handles out of its
    /// captures: put everything the callback needs in `state`. [`Weak::callback_state`] reads
    /// `state` back (`__callback__`). A closure that must capture non-`Copy` data can use
    /// [`Weak::with_untraced_callback`].
    ///
    /// ```
    /// use reap::{Gc, Heap, Weak};
    /// use std::cell::RefCell;
    ///
    /// let heap = Heap::new();
    /// let log: Gc<RefCell<Vec<String>>> = heap.alloc(RefCell::new(Vec::new()));
    /// let obj = heap.alloc(String::from("data"));
    /// let w = Weak::with_callback(&obj, log.clone(), |log, w: &Weak<String>| {
    ///     log.borrow_mut().push(format!("dead: {}", w.upgrade().is_none()));
    /// });
    /// assert!(Gc::ptr_eq(&w.callback_state::<Gc<RefCell<Vec<String>>>>().unwrap(), &log));
    /// drop(obj);
    /// assert_eq!(*log.borrow(), ["dead: true"]);
    /// assert!(!w.has_callback(), "a callback runs once, then is released");
    /// ```
    pub fn with_callback<S: Trace + 'static>(
        target: &Gc<T>,
        state: S,
        callback: impl Fn(&S, &Weak<T>) + Copy + 'static,
    ) -> Weak<T> {
        Self::with_traced_callback(target, None, state, callback)
    }

    /// A new weak reference with a callback closure that the collector does not see: handles
    /// captured by the closure are not traced, so a cycle through them is never collected (it
    /// leaks until heap shutdown). For callbacks that capture only data outside the heap (a log,
    /// a channel); [`Weak::with_callback`] is the form for everything else.
    ///
    /// ```
    /// use reap::{Heap, Weak};
    /// use std::{cell::Cell, rc::Rc};
    ///
    /// let heap = Heap::new();
    /// let fired = Rc::new(Cell::new(false));
    /// let obj = heap.alloc(1_u8);
    /// let f = fired.clone();
    /// let _w = Weak::with_untraced_callback(&obj, move |_: &Weak<u8>| f.set(true));
    /// drop(obj);
    /// assert!(fired.get());
    /// ```
    pub fn with_untraced_callback(
        target: &Gc<T>,
        callback: impl Fn(&Weak<T>) + 'static,
    ) -> Weak<T> {
        let cb = Box::new(PlainCallback {
            f: callback,
            ptr: target.value_ptr(),
        });
        Self::with_erased(target, Some(cb), None)
    }

    /// A new weak reference carrying a traced `payload` (Python's `weakref.KeyedRef`, whose
    /// `key` a weak container's callback reads). It is never the shared weak reference. The
    /// payload lives as long as the weak-reference object, also after the referent died; read
    /// it with [`Weak::payload`].
    ///
    /// ```
    /// use reap::{Heap, Weak};
    ///
    /// let heap = Heap::new();
    /// let obj = heap.alloc(1_u8);
    /// let w = Weak::with_payload(&obj, String::from("key"));
    /// drop(obj);
    /// assert_eq!(w.payload::<String>().map(String::as_str), Some("key"));
    /// ```
    pub fn with_payload<P: Trace + 'static>(target: &Gc<T>, payload: P) -> Weak<T> {
        Self::with_erased(target, None, Some(Box::new(payload)))
    }

    /// [`Weak::with_payload`] and [`Weak::with_callback`] together: the callback reads the
    /// payload through the weak reference it receives.
    ///
    /// ```
    /// use reap::{Heap, Weak};
    /// use std::cell::RefCell;
    ///
    /// let heap = Heap::new();
    /// let removed = heap.alloc(RefCell::new(Vec::<String>::new()));
    /// let value = heap.alloc(1_u8);
    /// let _w = Weak::with_payload_and_callback(&value, String::from("k"), removed.clone(), |r, w| {
    ///     r.borrow_mut().push(w.payload::<String>().unwrap().clone());
    /// });
    /// drop(value);
    /// assert_eq!(*removed.borrow(), ["k"]);
    /// ```
    pub fn with_payload_and_callback<P: Trace + 'static, S: Trace + 'static>(
        target: &Gc<T>,
        payload: P,
        state: S,
        callback: impl Fn(&S, &Weak<T>) + Copy + 'static,
    ) -> Weak<T> {
        Self::with_traced_callback(target, Some(Box::new(payload)), state, callback)
    }

    /// [`Weak::with_callback`] and [`Weak::with_payload_and_callback`]: a listed weak reference
    /// whose callback gets the traced `state`.
    fn with_traced_callback<S: Trace + 'static>(
        target: &Gc<T>,
        payload: Option<Box<dyn ErasedPayload>>,
        state: S,
        callback: impl Fn(&S, &Weak<T>) + 'static,
    ) -> Weak<T> {
        let cb = Box::new(TracedCallback {
            state,
            f: callback,
            ptr: target.value_ptr(),
        });
        Self::with_erased(target, Some(cb), payload)
    }

    fn with_erased(
        target: &Gc<T>,
        cb: Option<Box<dyn ErasedCallback>>,
        payload: Option<Box<dyn ErasedPayload>>,
    ) -> Weak<T> {
        let heap = heap_of(target.header());
        let info = ensure_info(heap, target.header_ptr());
        // The allocation may start a collection, which runs user code; `target` keeps the
        // referent, and so its weak info, alive meanwhile.
        let obj = Self::make(heap, target, cb, payload);
        info.push(obj.value_ptr());
        Weak {
            obj,
            ptr: target.value_ptr(),
        }
    }

    fn make(
        heap: &HeapInner,
        target: &Gc<T>,
        callback: Option<Box<dyn ErasedCallback>>,
        payload: Option<Box<dyn ErasedPayload>>,
    ) -> Gc<WeakRefObj> {
        // A weak reference with a callback is tracked even when the callback holds nothing
        // traced: the collector must know when it is garbage, because then its callback never
        // runs (SEMANTICS 2.4). One with a payload is tracked for the payload's handles. A
        // plain one holds nothing and runs nothing: untracked.
        let tracked = callback.is_some() || payload.is_some();
        heap.alloc_tracked_if(
            WeakRefObj {
                target: Cell::new(Some(target.header_ptr())),
                extra: if tracked {
                    OnceCell::from(Box::new(WeakExtra::new(true, callback, payload)))
                } else {
                    OnceCell::new()
                },
            },
            tracked,
        )
    }
}

impl<T: ?Sized> Weak<T> {
    /// The referent's header, if the weak reference is not cleared.
    #[inline]
    fn target(&self) -> Option<NonNull<Header>> {
        // Read without `Deref`'s dropped-value check: `target` is a plain cell that a dropped
        // weak-reference object leaves as `None` (its Drop clears it), so it stays readable.
        // SAFETY: the handle keeps the weak-reference object allocated.
        unsafe { self.obj.value_ptr().as_ref() }.target.get()
    }

    /// A strong handle to the referent, or `None` once it is dead or dying (SEMANTICS 4.1).
    #[inline]
    pub fn upgrade(&self) -> Option<Gc<T>> {
        let target = self.target()?;
        // SAFETY: a set target is allocated (WeakRefObj invariant).
        let h = unsafe { target.as_ref() };
        if !upgradable(h) {
            return None;
        }
        h.inc_strong();
        // SAFETY: the referent is alive and the new handle owns the count just added; `ptr`
        // points at its value.
        Some(unsafe { Gc::from_value_ptr(self.ptr) })
    }

    /// Whether the referent is still alive (an upgrade would succeed).
    pub fn is_alive(&self) -> bool {
        match self.target() {
            // SAFETY: a set target is allocated.
            Some(t) => upgradable(unsafe { t.as_ref() }),
            None => false,
        }
    }

    /// The data the embedder set on the heap of this weak reference (and of its referent):
    /// how a weak-reference callback reaches the interpreter. See
    /// [`Heap::set_user_data`](crate::Heap::set_user_data).
    pub fn user_data<D: std::any::Any>(this: &Self) -> Option<std::rc::Rc<D>> {
        Gc::user_data(&this.obj)
    }

    /// Gives up the weak reference as its parts, for [`weak_coerce!`](crate::weak_coerce).
    #[doc(hidden)]
    pub fn into_raw_parts(this: Self) -> (Gc<WeakRefObj>, *const T) {
        (this.obj, this.ptr.as_ptr().cast_const())
    }

    /// Takes back the parts [`Weak::into_raw_parts`] gave, possibly as another type.
    ///
    /// # Safety
    /// `ptr` is the pointer `into_raw_parts` returned with `obj` (or an unsizing coercion of
    /// it).
    #[doc(hidden)]
    pub unsafe fn from_raw_parts(obj: Gc<WeakRefObj>, ptr: *const T) -> Weak<T> {
        Weak {
            obj,
            // SAFETY: a value pointer is never null (caller).
            ptr: unsafe { NonNull::new_unchecked(ptr.cast_mut()) },
        }
    }

    /// The weak-reference object's address, stable for its life: its identity (`id(ref)`).
    pub fn as_ptr(this: &Self) -> *const WeakRefObj {
        Gc::as_ptr(&this.obj)
    }

    /// Whether both are the same weak-reference object (`a is b`).
    pub fn ptr_eq(&self, other: &Weak<T>) -> bool {
        Gc::ptr_eq(&self.obj, &other.obj)
    }

    /// Whether this weak reference still carries a callback (`__callback__ is not None`): false
    /// once the callback ran (or was dropped because the referent died while nobody held the
    /// weak reference any more). A weak reference that is garbage of the same collection as its
    /// referent keeps its callback, which never runs, until it is dropped itself: read from a
    /// finalizer, clear hook or `Drop` of that garbage, it is cleared (`is_alive` false) yet
    /// `has_callback` is true, as CPython's `__callback__` is still set there.
    pub fn has_callback(&self) -> bool {
        self.obj.has_callback()
    }

    /// A clone of the state of the pending callback (`ref.__callback__`), if this weak
    /// reference was made by [`Weak::with_callback`] (or [`Weak::with_payload_and_callback`])
    /// with state of type `S`, and still carries its callback (see [`Weak::has_callback`]).
    /// `None` once it ran, for another type, and for an untraced callback. `S::clone` runs
    /// while the callback is borrowed: if it makes the referent die, that callback cannot run;
    /// it is reported to the unraisable hook (kind `WeakCallback`) instead.
    pub fn callback_state<S: Clone + 'static>(&self) -> Option<S> {
        // Cloned under the borrow; `S::clone` of a handle or of a derived value runs no runtime
        // code, and one that does meets a borrowed cell (a panic), never freed memory.
        let cb = self.obj.extra.get()?.callback.borrow();
        cb.as_ref()?.state()?.downcast_ref::<S>().cloned()
    }

    /// The payload given to [`Weak::with_payload`], if it is of type `P` (`KeyedRef.key`). It
    /// stays readable after the referent died.
    pub fn payload<P: 'static>(&self) -> Option<&P> {
        self.obj
            .extra
            .get()?
            .payload
            .as_ref()?
            .as_any()
            .downcast_ref::<P>()
    }

    /// The weak-reference object itself, as a strong handle: to keep it in a value of the
    /// language, or to make a weak reference to the weak reference (`weakref.ref(r)`), which
    /// is cleared when this weak-reference object dies.
    ///
    /// ```
    /// use reap::{Heap, Weak};
    ///
    /// let heap = Heap::new();
    /// let obj = heap.alloc(1_u8);
    /// let w = Weak::with_payload(&obj, 0_u8);
    /// let ww = Weak::new(&Weak::as_object(&w));
    /// assert!(ww.is_alive());
    /// drop(w); // the last handle to the weak-reference object
    /// assert!(!ww.is_alive() && obj.eq(&obj));
    /// ```
    pub fn as_object(this: &Self) -> Gc<WeakRefObj> {
        this.obj.clone()
    }

    /// The weak reference's hash: the referent's (by a fixed SipHash), computed on first use
    /// while the referent is alive and kept afterwards (SEMANTICS 4.5). `Err(WeakGone)` if the
    /// referent died before the weak reference was ever hashed.
    pub fn try_hash(&self) -> Result<u64, WeakGone>
    where
        T: Hash,
    {
        if let Some(h) = self.obj.extra.get().and_then(|e| e.hash.get()) {
            return Ok(h);
        }
        let strong = self.upgrade().ok_or(WeakGone)?;
        let h = hash_value(&*strong);
        let extra = self
            .obj
            .extra
            .get_or_init(|| Box::new(WeakExtra::new(false, None, None)));
        extra.hash.set(Some(h));
        Ok(h)
    }
}

/// Whether a weak reference to this object may upgrade: not when its death has begun (count 0,
/// including a death deferred to the trashcan), nor when it is garbage whose reclaim has begun
/// or whose value is dropped (SEMANTICS 2.7, 4.1).
#[inline]
fn upgradable(h: &Header) -> bool {
    h.strong() != 0 && !h.has(Flags::RECLAIMING | Flags::VALUE_DROPPED)
}

/// The hash a weak reference takes from its referent: SipHash with fixed keys, so the same
/// value always hashes the same (weak containers hash lookup keys with it too).
pub(crate) fn hash_value<T: ?Sized + Hash>(value: &T) -> u64 {
    #[allow(deprecated)]
    let mut s = std::hash::SipHasher::new();
    value.hash(&mut s);
    s.finish()
}

impl<T: ?Sized> Clone for Weak<T> {
    fn clone(&self) -> Self {
        Weak {
            obj: self.obj.clone(),
            ptr: self.ptr,
        }
    }
}

// SAFETY: a weak handle owns one strong handle, to its weak-reference object; the referent is
// not owned and is not visited.
unsafe impl<T: ?Sized + 'static> Trace for Weak<T> {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        tracer.visit(&self.obj);
    }
}

/// While both referents live, equal when they are equal; otherwise equal only to the same weak
/// reference (SEMANTICS 4.5).
impl<T: ?Sized + PartialEq> PartialEq for Weak<T> {
    fn eq(&self, other: &Self) -> bool {
        match (self.upgrade(), other.upgrade()) {
            (Some(a), Some(b)) => *a == *b,
            _ => self.ptr_eq(other),
        }
    }
}

impl<T: ?Sized + Eq> Eq for Weak<T> {}

/// Hashes as [`Weak::try_hash`].
///
/// # Panics
/// With "weak object has gone away" if the referent died before this weak reference was ever
/// hashed, as CPython raises `TypeError`. Use [`Weak::try_hash`] to get an error instead.
impl<T: ?Sized + Hash> Hash for Weak<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self.try_hash() {
            Ok(h) => state.write_u64(h),
            Err(e) => panic!("{e}"),
        }
    }
}

impl<T: ?Sized> fmt::Debug for Weak<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.obj.target.get() {
            // SAFETY: a set target is allocated.
            Some(t) if unsafe { t.as_ref() }.strong() > 0 => {
                // SAFETY: as above.
                let name = (unsafe { t.as_ref() }.vtable().type_name)();
                write!(
                    f,
                    "<weakref at {:p}; to '{}' at {:p}>",
                    Gc::as_ptr(&self.obj),
                    name,
                    self.ptr.as_ptr() as *const u8
                )
            }
            _ => write!(f, "<weakref at {:p}; dead>", Gc::as_ptr(&self.obj)),
        }
    }
}

impl<T: ?Sized + 'static> Gc<T> {
    /// The weak references to this object (`weakref.getweakrefs`): the shared callback-less one
    /// first, then those with callbacks, newest first.
    pub fn weak_refs(this: &Self) -> Vec<Weak<T>> {
        let mut out = Vec::new();
        // SAFETY: `this` keeps the object allocated.
        let Some(info) = (unsafe { info_of(this.header_ptr()) }) else {
            return out;
        };
        let push = |w: NonNull<WeakRefObj>, out: &mut Vec<Weak<T>>| {
            let wh = Header::from_value(w);
            // SAFETY: listed weak references are allocated.
            let h = unsafe { wh.as_ref() };
            if h.strong() > 0 {
                h.inc_strong();
                out.push(Weak {
                    // SAFETY: alive; the handle owns the count just added.
                    obj: unsafe { Gc::from_value_ptr(w) },
                    ptr: this.value_ptr(),
                });
            }
        };
        if let Some(s) = held_shared(info) {
            push(s, &mut out);
        }
        let mut cur = info.head.get();
        while let Some(w) = cur {
            push(w, &mut out);
            // SAFETY: listed weak references are allocated.
            cur = unsafe { w.as_ref() }.links().next.get();
        }
        out
    }
}

/// Converts a weak reference to one of an unsized type the referent coerces to, typically a
/// trait object: `weak_coerce!(weak => dyn Trait)`, as [`gc_coerce!`](crate::gc_coerce) does for
/// strong handles. It is the same weak-reference object (same identity, same callback).
///
/// ```
/// use reap::{weak_coerce, Heap, Weak};
/// use std::fmt::Display;
///
/// let heap = Heap::new();
/// let n = heap.alloc(7_u32);
/// let w: Weak<dyn Display> = weak_coerce!(Weak::new(&n) => dyn Display);
/// assert_eq!(w.upgrade().map(|d| d.to_string()).as_deref(), Some("7"));
/// drop(n);
/// assert!(w.upgrade().is_none());
/// ```
#[macro_export]
macro_rules! weak_coerce {
    ($weak:expr => $u:ty) => {{
        let (obj, raw) = $crate::Weak::into_raw_parts($weak);
        let raw: *const $u = raw;
        // SAFETY: `raw` is the referent pointer just given up with `obj`, unsized by the
        // compiler's own coercion, so it points at the same value with its real metadata.
        unsafe { $crate::Weak::<$u>::from_raw_parts(obj, raw) }
    }};
}
