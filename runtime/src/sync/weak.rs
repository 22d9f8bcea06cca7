//! Shared-mode weak references (SEMANTICS 4.1–4.4): a weak reference is an object
//! ([`WeakRefObj`]) listed in its referent's weak-info block, all under the referent's weak
//! lock, one of the heap's striped spin locks (`sync::spin`) chosen by the referent's address
//! (CPython 3.13t's `_PyWeakref_LOCK`).
//!
//! - **Create** (under the lock): make the referent's block if it has none (its `meta` then
//!   points at the block, tagged, which is also the mark that makes its owner's last drop
//!   merge instead of freeing at once: `count::merge_zero_local`), and list the reference. The
//!   callback-less reference is shared: `Weak::new` returns the live one if there is one
//!   (`ref(o) is ref(o)`), and otherwise allocates and lists a new one in the same critical
//!   section (the allocation runs no user code and takes no lock).
//! - **The first reference, without the lock** (`Weak::new` on a referent with no block): the
//!   new reference and a block already naming it as the shared one are made, and the block
//!   installed by one compare-and-swap of `meta` (ARCHITECTURE, "The
//!   first weak reference without the lock"). The loser of a race takes the lock path. Every
//!   installation, locked or not, is that compare-and-swap (or, when the caller's handle is
//!   the only strong reference, a store), and after it the block's lists are touched only
//!   under the lock.
//! - **The shared reference again, without the lock** (`Weak::new` on a referent with a
//!   block): if the listed shared reference is this thread's, in this thread's slab, one more
//!   owner reference is taken to it with no lock ([`owner_shared`]; ARCHITECTURE, "The shared
//!   weak reference without the lock"). Otherwise the lock path.
//! - **Upgrade** (under the lock): re-read the target (a clear may have won), then try to add a
//!   reference, which refuses a count of zero. An upgrade racing the last drop either wins
//!   before the clear (the object lives on) or returns `None`.
//! - **Upgrade by the referent's owner** (no lock): when the referent came from a slab, and
//!   that slab (noted in the weak reference at its making: a chunk's slab never changes) is the
//!   calling thread's now, the thread loads the referent's `owner` without the lock. The
//!   block may have died and been reused meanwhile, but the load is defined: slab chunks stay
//!   allocated while their heap lives, and the `owner` bytes of a block of this
//!   thread's slab are written non-atomically only by this thread (when it allocates the
//!   block; `object::shared_slab`'s invariant). If the field names this thread, the
//!   block still holds the referent, alive and unmerged: an object this thread allocated
//!   there after the referent's death would mean the clear, which precedes the free, happened
//!   before the target was read non-null. And an unmerged object can die only through its
//!   owner, so it stays alive while the owner increments its count. Otherwise the upgrade
//!   takes the lock path.
//! - **Death of the referent**: under the lock, every reference's target is cleared and the
//!   block emptied, and the references with a callback that are still alive are taken (one
//!   reference each); then, with the lock released, their callbacks run newest first. A
//!   referent whose references all died first (the block's `listed` count, read with
//!   `Acquire`, is 0) skips this and its lock.
//! - **Death of a weak reference**: under its target's lock, if its target is still set, it
//!   unlists itself. When its owner's last drop finds no other reference counted (and it has
//!   no weak reference of its own), the death is decided in that same critical section
//!   ([`dies_unlisted`]): every other thread's try-increment of it runs under that lock.
//!
//! The lock is never held while user code runs. The block's list of callback references is a
//! plain field read and written only under the lock; its shared-reference slot is written only
//! there too, and read there and by [`owner_shared`]; the referent's memory stays allocated
//! while listed references can reach it (its death clears them under the lock before freeing
//! it).

use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use smallvec::SmallVec;

use crate::object::header::ObjectLayout;
use crate::object::header::META_WEAK_INFO;
use crate::object::shared::{Gc, SharedHeader};
#[cfg(not(reap_loom))]
use crate::object::shared_slab::SharedSlab;
use crate::object::vtable::VTable;
use crate::shim::{AtomicPtr, AtomicUsize, Ordering::*, UnsafeCell};
use crate::sync::count::{self, NO_OWNER};
use crate::sync::state::{self as heap, alloc_on, HeapState, ThreadState};
use crate::sync::thread;
use crate::trace::{Trace, Tracer};
use crate::UnraisableKind;

/// A referent's weak-reference block. `repr(C)` with `vtable` first: the header's tagged
/// `meta` leads to the vtable through it (`sync::heap::vtable`). Its memory comes from the
/// making thread's slab when it has one (as an object's), else from the global allocator.
#[repr(C)]
struct WeakInfo {
    vtable: &'static VTable,
    /// Whether the block's memory came from a slab (written once, at its making). Second,
    /// where a header keeps `counts` and `owner`: in a slab block those bytes are written only
    /// when the block is allocated (`object::shared_slab`'s invariant), as this field is.
    in_slab: bool,
    /// Always 0, where a header keeps `owner`: the owner upgrade may load those bytes from a
    /// block that has become a weak-information block (module docs), and finds them
    /// initialised and naming no thread.
    no_owner: u32,
    /// The callback-less shared reference's header, if one is listed (else null), its address
    /// tagged with [`IN_SLAB`] when its memory came from a slab. Written only under the
    /// referent's weak lock, with `Release`; read there, and by [`owner_shared`] without it.
    shared: AtomicPtr<SharedHeader>,
    /// Under the referent's weak lock: the other references (those with a callback), oldest
    /// first; boxed, and only once there is one, so that the block of a referent with only
    /// the shared reference (the common case) is five words, not seven.
    // One word where a `Vec` is three: the box is the point.
    #[allow(clippy::box_collection)]
    list: UnsafeCell<Option<Box<Vec<NonNull<SharedHeader>>>>>,
    /// How many references the block lists (`shared` and `list` together), stored with
    /// `Release` under the lock by every change of them: the referent's death reads it with
    /// `Acquire` and, at zero, skips its clearing and its lock ([`clear_and_call`]). So the
    /// store is the last touch of the block by whoever makes it (see [`WeakInfo::listed_now`]).
    listed: AtomicUsize,
}

/// Tag bit of [`WeakInfo::shared`]: the listed reference's memory came from a slab (so its
/// chunk, and the chunk's slab, can be looked up from its address: [`owner_shared`]).
const IN_SLAB: usize = 1;

impl WeakInfo {
    /// The listed shared reference, untagged (`order`: `Relaxed` under the lock, `Acquire`
    /// without it).
    fn shared_ref(&self, order: crate::shim::Ordering) -> Option<NonNull<SharedHeader>> {
        NonNull::new(self.shared.load(order).map_addr(|a| a & !IN_SLAB))
    }

    /// Lists `w` (or nothing) as the shared reference, returning the one it replaces.
    ///
    /// # Safety
    /// The caller holds the referent's weak lock; `w`, if any, is an allocated
    /// weak-reference object of the referent.
    unsafe fn set_shared(&self, w: Option<NonNull<SharedHeader>>) -> Option<NonNull<SharedHeader>> {
        // A load and a store, not a swap (a locked instruction): every writer holds the lock.
        let old = self.shared_ref(Relaxed);
        // SAFETY: as this function's (caller).
        self.shared.store(unsafe { tagged_shared(w) }, Release);
        old
    }

    /// The count of listed references, for the caller to store in `listed` after a change of
    /// the lists (`info.listed.store(info.listed_now(), Release)`). It returns before that
    /// store: once the last unlisting has stored 0, the referent's death may free the block
    /// without the lock, so no reference to the whole block (as this method's `&self`, which
    /// covers its plain fields until the method returns) may still be live then; only the
    /// atomic's own, as in `Arc`'s drop.
    ///
    /// # Safety
    /// The caller holds the referent's weak lock (or the world is stopped).
    unsafe fn listed_now(&self) -> usize {
        usize::from(!self.shared.load(Relaxed).is_null())
            + self.list.with(|l| {
                // SAFETY: under the lock (caller).
                unsafe { (*l).as_ref().map_or(0, |v| v.len()) }
            })
    }
}

/// The value of [`WeakInfo::shared`] listing `w`: its address, tagged [`IN_SLAB`] if its
/// memory came from a slab; null for none.
///
/// # Safety
/// `w`, if any, is an allocated weak-reference object.
unsafe fn tagged_shared(w: Option<NonNull<SharedHeader>>) -> *mut SharedHeader {
    match w {
        None => std::ptr::null_mut(),
        Some(w) => {
            // SAFETY: allocated (caller); `in_slab` is written once, when it is allocated.
            let in_slab = unsafe { w.as_ref() }.in_slab.get();
            w.as_ptr()
                .map_addr(|a| a | if in_slab { IN_SLAB } else { 0 })
        }
    }
}

/// The callback of a weak reference, type-erased: gets the weak-reference object.
type Callback = Box<dyn FnOnce(&Gc<WeakRefObj>) + Send>;

/// A weak reference as an object of its heap (so it has identity, as in CPython). Reached
/// through [`Weak`].
pub struct WeakRefObj {
    /// The referent's header; null once cleared. Set at creation, only ever cleared after,
    /// always under the referent's weak lock.
    target: AtomicPtr<SharedHeader>,
    /// The slab whose chunk holds the referent's memory (a chunk's slab never changes), or
    /// null if it came from the global allocator (always, in loom builds): the owner of that
    /// slab may upgrade without the lock.
    #[cfg_attr(reap_loom, allow(dead_code))]
    target_slab: *const (),
    /// The callback, boxed (`Box<Callback>`, a thin pointer), or null: none, or taken when it
    /// runs. Taken by one swap, so one thread gets it. Three words in all: the first weak
    /// reference of a real heap's objects costs memory more than instructions (its object's
    /// value was six words, with the heap and a `Mutex`, until the twenty-third session).
    callback: AtomicPtr<Callback>,
}

impl WeakRefObj {
    /// Takes the callback, if it has one still: the caller runs it (or drops it).
    fn take_callback(&self) -> Option<Callback> {
        let p = self.callback.swap(std::ptr::null_mut(), Acquire);
        // SAFETY: a non-null pointer came from `Box::into_raw` (`new_ref_obj`), and the swap
        // gave it to this call alone.
        (!p.is_null()).then(|| *unsafe { Box::from_raw(p) })
    }
}

impl Drop for WeakRefObj {
    fn drop(&mut self) {
        // A callback never run (the reference died first) is dropped with it. Looked at with a
        // load first: the swap is a locked instruction, and most references have none.
        if !self.callback.load(Relaxed).is_null() {
            drop(self.take_callback());
        }
    }
}

// SAFETY: `target` is atomic and changed only under the referent's weak lock; `target_slab` is
// only compared, never followed; the callback is `Send`, and taken by one swap (one thread
// gets it).
unsafe impl Send for WeakRefObj {}
// SAFETY: as above.
unsafe impl Sync for WeakRefObj {}

// Tracked all the same (`needs_trace` is true): a weak reference that only garbage holds is
// then garbage itself, found with its holders, and its callback never runs (SEMANTICS 2.4).
// SAFETY: a weak reference holds no strong handle; its callback's captures are not traced,
// which can only keep garbage.
unsafe impl Trace for WeakRefObj {
    fn trace(&self, _: &mut Tracer<'_>) {}
}

impl fmt::Debug for WeakRefObj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakRefObj")
            .field("alive", &!self.target.load(Relaxed).is_null())
            .finish()
    }
}

/// The weak-info block of `h`, if it has one.
///
/// # Safety
/// The caller holds `h`'s weak lock, or is running `h`'s death, or holds a reference to `h`
/// and reads only the block's atomics (the block, once installed, is never replaced, and is
/// freed by the death only).
#[inline]
unsafe fn info_of(h: &SharedHeader) -> Option<NonNull<WeakInfo>> {
    let meta = h.meta.load(Acquire);
    if meta.addr() & META_WEAK_INFO == 0 {
        None
    } else {
        // SAFETY: a tagged `meta` is a block's address with the tag (`install_info`): a block
        // is never at address 0.
        Some(unsafe { NonNull::new_unchecked(meta.map_addr(|a| a & !META_WEAK_INFO).cast()) })
    }
}

/// Where a [`WeakInfo`] sits in its memory (no header: the block is all of it).
const INFO_LAYOUT: ObjectLayout =
    ObjectLayout::with_prefix(std::alloc::Layout::new::<WeakInfo>(), 0, 1);

/// The weak-info block of `h`, made if it has none (in the memory of the calling thread, whose
/// state on `h`'s heap is `state`).
///
/// # Safety
/// The caller holds `h`'s weak lock; `state` is this thread's attachment, if any.
unsafe fn info_or_make(h: &SharedHeader, state: Option<NonNull<ThreadState>>) -> NonNull<WeakInfo> {
    // SAFETY: the caller holds the lock.
    if let Some(info) = unsafe { info_of(h) } {
        return info;
    }
    let info = make_info(h, state, None);
    // SAFETY: a block just made, published by nobody else.
    match unsafe { install_info(h, info, state, false) } {
        Ok(()) => info,
        // A first weak reference made without the lock won (`Weak::new`'s fast path).
        // SAFETY: the caller holds the lock.
        Err(()) => unsafe { info_of(h) }.expect("reap: a weak-info block installed"),
    }
}

/// A new weak-info block for `h` (not yet installed), in the memory of the calling thread,
/// whose state on `h`'s heap is `state`, with `shared` as its shared reference.
#[inline(always)]
fn make_info(
    h: &SharedHeader,
    state: Option<NonNull<ThreadState>>,
    shared: Option<NonNull<SharedHeader>>,
) -> NonNull<WeakInfo> {
    let (base, in_slab) = heap::alloc_memory(INFO_LAYOUT, state);
    let ptr = base.cast::<WeakInfo>();
    // SAFETY: `shared`, if any, is the new reference, allocated (callers).
    let shared = unsafe { tagged_shared(shared) };
    // SAFETY: fresh memory of `WeakInfo`'s layout (value offset 0).
    unsafe {
        ptr.write(WeakInfo {
            vtable: heap::vtable(h),
            in_slab,
            no_owner: 0,
            shared: AtomicPtr::new(shared),
            list: UnsafeCell::new(None),
            listed: AtomicUsize::new(usize::from(!shared.is_null())),
        })
    };
    // SAFETY: `alloc_memory` never returns null.
    unsafe { NonNull::new_unchecked(ptr) }
}

/// Installs `info` as `h`'s weak-info block if `h` has none: one compare-and-swap of `meta`
/// from the plain vtable to the tagged block, with `Release`, so that whoever finds the block
/// (loading `meta` with `Acquire`) sees it whole. If another block won, `info` is freed
/// (on a thread whose state on `h`'s heap is `state`) and `Err` returned. When the caller's
/// handle is the only strong reference to `h` (`unique`, [`count::uniquely_referenced`]) and
/// `meta`, loaded after that verdict, still holds the plain vtable (a block installed by a
/// thread whose reference has gone since is seen here: its drop happened before the
/// verdict's `Acquire` load), no other thread can install a block meanwhile (that takes a
/// strong reference, and there is no weak one to take it from): a `Release` store does, with
/// no locked instruction.
///
/// # Safety
/// `info` was made by [`make_info`] for `h` and nobody else can reach it; `unique` only if
/// [`count::uniquely_referenced`] said so for this thread's handle, still held.
#[inline]
unsafe fn install_info(
    h: &SharedHeader,
    info: NonNull<WeakInfo>,
    state: Option<NonNull<ThreadState>>,
    unique: bool,
) -> Result<(), ()> {
    // SAFETY: ours alone (caller).
    let vt: *const VTable = unsafe { info.as_ref() }.vtable;
    let tagged = info.as_ptr().map_addr(|a| a | META_WEAK_INFO).cast();
    if unique && h.meta.load(Relaxed) == vt.cast_mut().cast() {
        h.meta.store(tagged, Release);
        return Ok(());
    }
    match h
        .meta
        .compare_exchange(vt.cast_mut().cast(), tagged, Release, Relaxed)
    {
        Ok(_) => Ok(()),
        Err(_) => {
            // SAFETY: never published: dropped and freed once, here.
            unsafe {
                let in_slab = info.as_ref().in_slab;
                std::ptr::drop_in_place(info.as_ptr());
                heap::free_memory(in_slab, info.as_ptr().cast(), INFO_LAYOUT, state);
            }
            Err(())
        }
    }
}

/// A weak reference to a Shared-mode object: it does not keep the object alive, and
/// [`upgrade`](Weak::upgrade) gives a strong handle while the object lives. When the object
/// dies its weak references are cleared, on whichever thread it dies, and then their
/// callbacks run there, newest first (SEMANTICS 4.2).
///
/// ```
/// use reap::sync::{Heap, Weak};
///
/// let heap = Heap::new();
/// let obj = heap.alloc(String::from("data"));
/// let w = Weak::new(&obj);
/// assert!(Weak::ptr_eq(&w, &Weak::new(&obj)), "callback-less weak references are shared");
/// let t = std::thread::spawn(move || w.upgrade().map(|s| s.len()));
/// assert_eq!(t.join().unwrap(), Some(4));
/// drop(obj);
/// ```
pub struct Weak<T: ?Sized> {
    obj: Gc<WeakRefObj>,
    /// The referent's value pointer (its header is found from it).
    _t: PhantomData<Gc<T>>,
}

impl<T: ?Sized> Clone for Weak<T> {
    fn clone(&self) -> Self {
        Weak {
            obj: self.obj.clone(),
            _t: PhantomData,
        }
    }
}

// SAFETY: a weak reference owns exactly one strong handle: to its weak-reference object (a
// garbage weak reference is then found with its holder, and never calls back).
unsafe impl<T: ?Sized + 'static> Trace for Weak<T> {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        tracer.visit_shared(&self.obj);
    }
}

impl<T: ?Sized> fmt::Debug for Weak<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(sync::Weak)")
    }
}

impl<T: ?Sized + Send + Sync> Weak<T> {
    /// The shared callback-less weak reference to `target`, made if it has none.
    #[inline]
    pub fn new(target: &Gc<T>) -> Weak<T> {
        // The shared reference this thread owns, without the lock and with no call; or the
        // first weak reference, with one call.
        #[cfg(not(reap_loom))]
        // SAFETY: the handle holds the target; only the block's atomics are read.
        match unsafe { info_of(target.header()) } {
            Some(info) => {
                // SAFETY: the block lives as long as the target, which the handle holds.
                if let Some(w) = unsafe { owner_shared(info.as_ref()) } {
                    return Weak::from_obj(w);
                }
            }
            None => return Self::new_first(target),
        }
        Self::new_slow(target)
    }

    /// [`Weak::new`] on a referent that had no weak-info block when it looked: on a thread
    /// attached to its heap, the first reference without the lock ([`first_ref`]) in this one
    /// call; otherwise, or if another thread installed a block first, [`Weak::new_slow`].
    #[cfg(not(reap_loom))]
    #[inline(never)]
    fn new_first(target: &Gc<T>) -> Weak<T> {
        if let (me, Some(state)) = thread::attach(heap::heap_of(target.header())) {
            // SAFETY: the handle's header pointer, which the handle keeps alive; `state` is
            // this thread's attachment to its heap.
            if let Some(w) = unsafe { first_ref(target.header_ptr(), me, Some(state)) } {
                return Weak::from_obj(w);
            }
        }
        Self::new_slow(target)
    }

    /// [`Weak::new`] past its owner's look-up: the first reference without the lock, or the
    /// lock path.
    #[inline(never)]
    fn new_slow(target: &Gc<T>) -> Weak<T> {
        let heap = heap::heap_of(target.header());
        match thread::attach(heap) {
            (me, Some(state)) => Self::new_on(target, me, Some(state)),
            // Detached (or exiting): inside the gate, as a thread with no state.
            (_, None) => thread::gated(heap, || Self::new_on(target, NO_OWNER, None)),
        }
    }

    /// [`Weak::new`] on a thread whose id and state on the target's heap are `me` and `state`.
    // Inlined, as `new_ref_obj`: out of line, their entries and exits cost a first weak
    // reference about 35 instructions (twentieth session).
    #[inline]
    fn new_on(target: &Gc<T>, me: u32, state: Option<NonNull<ThreadState>>) -> Weak<T> {
        let th = target.header_ptr();
        let h = target.header();
        let heap = heap::heap_of(h);
        if !h.has_weak_info() {
            // SAFETY: `th` is the target's header, which the caller's handle keeps alive;
            // `state` is this thread's attachment.
            if let Some(w) = unsafe { first_ref(th, me, state) } {
                return Weak::from_obj(w);
            }
        }
        // SAFETY: the target keeps its heap alive.
        let hs = unsafe { heap.as_ref() };
        // One critical section for the look-up and, if there is no live shared reference, the
        // new one's allocation and listing: the allocation runs no user code (it skips the safe
        // point, and a `WeakRefObj` is built from plain fields) and takes no lock. `fresh` is
        // declared before the guard so that, should anything below panic, the guard is dropped
        // first: the new object's death (`unlist`) takes this same lock.
        let fresh;
        let _g = hs.weak_lock(th).lock();
        // SAFETY: under the lock.
        if let Some(w) = unsafe { shared_live(h, me) } {
            return Weak::from_obj(w);
        }
        fresh = new_ref_obj(heap, me, state, th, None);
        // SAFETY: under the lock.
        unsafe {
            let info = info_or_make(h, state).as_ref();
            let replaced = info.set_shared(Some(fresh.header_ptr()));
            if let Some(old) = replaced {
                // A dying shared reference (count zero, its drop still to come): it is
                // unlisted by being replaced, so its target is cleared now: its drop must not
                // look for a block the referent may have freed by then.
                old_ref(old).target.store(std::ptr::null_mut(), Release);
            }
            info.listed.store(info.listed_now(), Release);
        }
        Weak::from_obj(fresh)
    }

    /// A new weak reference with a callback, run once on the thread where `target` dies, after
    /// all its weak references are cleared, newest first; it receives this weak reference
    /// (dead by then). A panic in it goes to the heap's unraisable hook. The callback's
    /// captures are not traced: a handle captured there keeps its object alive until the
    /// callback runs or the weak reference dies.
    ///
    /// ```
    /// use reap::sync::{Heap, Weak};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let heap = Heap::new();
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let obj = heap.alloc(1_u32);
    /// let (l1, l2) = (log.clone(), log.clone());
    /// let _a = Weak::with_callback(&obj, move |w| l1.lock().unwrap().push(("a", w.upgrade().is_none())));
    /// let _b = Weak::with_callback(&obj, move |_| l2.lock().unwrap().push(("b", true)));
    /// // The last reference goes on another thread; the object is this thread's, so that drop
    /// // waits in this thread's merge queue, and the object dies at its next safe point.
    /// std::thread::spawn(move || drop(obj)).join().unwrap();
    /// heap.safepoint();
    /// assert_eq!(*log.lock().unwrap(), [("b", true), ("a", true)]);
    /// ```
    pub fn with_callback(
        target: &Gc<T>,
        callback: impl FnOnce(&Weak<T>) + Send + 'static,
    ) -> Weak<T> {
        let cb: Callback = Box::new(move |obj: &Gc<WeakRefObj>| {
            callback(&Weak::from_obj(obj.clone()));
        });
        let heap = heap::heap_of(target.header());
        match thread::attach(heap) {
            (me, Some(state)) => Self::with_callback_on(target, me, Some(state), cb),
            // Detached (or exiting): inside the gate, as a thread with no state.
            (_, None) => thread::gated(heap, || Self::with_callback_on(target, NO_OWNER, None, cb)),
        }
    }

    /// [`Weak::with_callback`] on a thread whose id and state on the target's heap are `me`
    /// and `state`.
    fn with_callback_on(
        target: &Gc<T>,
        me: u32,
        state: Option<NonNull<ThreadState>>,
        cb: Callback,
    ) -> Weak<T> {
        let th = target.header_ptr();
        let h = target.header();
        let heap = heap::heap_of(h);
        // SAFETY: the target keeps its heap alive.
        let hs = unsafe { heap.as_ref() };
        let fresh = new_ref_obj(heap, me, state, th, Some(cb));
        let _g = hs.weak_lock(th).lock();
        // SAFETY: under the lock.
        unsafe {
            let info = info_or_make(h, state).as_ref();
            info.list.with_mut(|l| {
                (*l).get_or_insert_with(Box::default)
                    .push(fresh.header_ptr())
            });
            info.listed.store(info.listed_now(), Release);
        }
        Weak::from_obj(fresh)
    }
}

impl<T: ?Sized> Weak<T> {
    fn from_obj(obj: Gc<WeakRefObj>) -> Weak<T> {
        Weak {
            obj,
            _t: PhantomData,
        }
    }

    /// A strong handle to the referent if it is alive, `None` once it is dead or dying.
    #[inline]
    pub fn upgrade(&self) -> Option<Gc<T>>
    where
        T: Sized,
    {
        let w = &*self.obj;
        let t = NonNull::new(w.target.load(Acquire))?;
        #[cfg(not(reap_loom))]
        // SAFETY: `t` was read non-null from `w.target`.
        let took = match unsafe { owner_upgrade(w, t) } {
            Some(took) => took,
            // SAFETY: as above.
            None => unsafe { upgrade_locked(w, heap::heap_of(self.obj.header()), t) },
        };
        #[cfg(reap_loom)]
        // SAFETY: as above.
        let took = unsafe { upgrade_locked(w, heap::heap_of(self.obj.header()), t) };
        took.then(|| {
            let value = SharedHeader::value_ptr(t).cast::<T>();
            // SAFETY: the reference just taken is the new handle's; the value is a `T` (the
            // weak reference was made from a `Gc<T>`).
            unsafe { Gc::from_value_ptr(value) }
        })
    }

    /// Whether the referent is still alive (not yet cleared).
    pub fn is_alive(&self) -> bool {
        !self.obj.target.load(Acquire).is_null()
    }

    /// Whether two weak references are the same weak-reference object.
    pub fn ptr_eq(a: &Self, b: &Weak<T>) -> bool {
        Gc::ptr_eq(&a.obj, &b.obj)
    }

    /// Whether this weak reference still has a callback to run.
    pub fn has_callback(&self) -> bool {
        !self.obj.callback.load(Acquire).is_null()
    }

    /// The weak-reference object (it has identity: a key in a table, say).
    pub fn as_object(this: &Self) -> Gc<WeakRefObj> {
        this.obj.clone()
    }
}

/// The upgrade under the referent's weak lock: whether it took a reference.
///
/// # Safety
/// `t` was read non-null from `w.target`; `heap` is `w`'s heap.
#[inline(never)]
unsafe fn upgrade_locked(
    w: &WeakRefObj,
    heap: NonNull<HeapState>,
    t: NonNull<SharedHeader>,
) -> bool {
    // SAFETY: the weak-reference object, which the caller's handle keeps, keeps its heap.
    let hs = unsafe { heap.as_ref() };
    // A thread not attached to the heap takes the gate around the lock (never the other way).
    thread::with_access(heap, |me| {
        let _g = hs.weak_lock(t).lock();
        if w.target.load(Relaxed) != t.as_ptr() {
            return false;
        }
        // SAFETY: still listed, under the lock: the referent is allocated (its death clears
        // this reference under the same lock before freeing it).
        let h = unsafe { t.as_ref() };
        // The finalizer of `t` runs on this thread: its upgrade resurrects the object, though
        // other threads' are refused (on the owner's path `try_inc` takes it already; with no
        // owner id, or once the object was merged in mid-finalizer, this does).
        count::try_inc(h, me) || (thread::finalizes(t.as_ptr()) && count::try_inc_finalizing(h))
    })
}

/// The lock-free upgrade of a referent this thread owns (module docs): `Some(true)` if it
/// took a reference, `Some(false)` if the referent is dying on this thread, `None` if it
/// cannot tell (another thread's object, or not in this thread's slab): the caller takes the
/// lock path.
///
/// # Safety
/// `t` was read non-null from `w.target`.
#[cfg(not(reap_loom))]
#[inline]
unsafe fn owner_upgrade(w: &WeakRefObj, t: NonNull<SharedHeader>) -> Option<bool> {
    // The cache's slab is this thread's on the heap it is attached to now (`usize::MAX`, which
    // is no pointer's address, if none); a referent from the global allocator has a null
    // `target_slab`, which matches no slab.
    let (me, slab) = thread::cached_slab();
    if slab != w.target_slab.addr() {
        return None;
    }
    // Only the `owner` field is touched until the owner is known: no reference to the whole
    // header, whose other words a free may be writing. The block is in this thread's slab,
    // whose chunks stay allocated while the heap lives; its `owner` bytes (in the second
    // word) are written non-atomically only by this thread, when it allocates the block, and
    // otherwise only atomically (`object::shared_slab`'s invariant).
    // SAFETY: allocated memory, which an atomic load reads without a race (above).
    let owner = unsafe { &*std::ptr::addr_of!((*t.as_ptr()).owner) };
    if owner.load(Relaxed) != me {
        return None;
    }
    // The block holds the referent, alive and unmerged (module docs): only this thread can
    // change that, so the header is whole for the rest of the call.
    // SAFETY: as just said.
    Some(count::try_inc_owner(unsafe { t.as_ref() }))
}

/// [`Weak::new`]'s first weak reference to `th` (held by the caller), made without the lock
/// (ARCHITECTURE, "Weak references"): the new reference and a block already naming it as the
/// shared reference are made, and the block installed by one compare-and-swap of `meta`
/// (which also marks the referent weakly referenced: `count::merge_zero_local`). Nothing
/// written here is reachable by another thread before that publication, and after it this
/// thread touches the block only under the lock, like everyone else. `None` if another thread
/// installed a block first: the caller takes the lock path (the reference made here is
/// dropped unlisted).
///
/// # Safety
/// `th` is the header of an object the caller holds a strong reference to (the handle's
/// pointer, whose provenance covers the slab chunk); `state` is this thread's attachment to
/// its heap, if any.
#[inline(always)]
unsafe fn first_ref(
    th: NonNull<SharedHeader>,
    me: u32,
    state: Option<NonNull<ThreadState>>,
) -> Option<Gc<WeakRefObj>> {
    // `th` is the handle's pointer, not one made from a reference to the header: its
    // provenance covers the slab chunk, whose header `new_ref_obj` reads (`slab_of`).
    // SAFETY: the caller's reference keeps the referent alive.
    let h = unsafe { th.as_ref() };
    let fresh = new_ref_obj(heap::heap_of(h), me, state, th, None);
    let info = make_info(h, state, Some(fresh.header_ptr()));
    // SAFETY: made just above, reachable by nobody else.
    match unsafe { install_info(h, info, state, count::uniquely_referenced(h, me)) } {
        Ok(()) => Some(fresh),
        Err(()) => {
            // Never listed: cleared, so that its death does not look for it in the block.
            fresh.target.store(std::ptr::null_mut(), Relaxed);
            drop(fresh);
            None
        }
    }
}

/// The shared weak reference listed in `info`, with one more reference, when this thread owns
/// it and it lives in this thread's slab: found without the lock (ARCHITECTURE, "The shared
/// weak reference without the lock"). `None` if there is none, or it is another thread's, or
/// in no slab or another slab, or dying on this thread: the caller takes the lock path.
///
/// The argument is the owner upgrade's ([`owner_upgrade`]). The slot is loaded with
/// `Acquire`, so the listing thread's writes before its `Release` store (the reference's
/// header, its chunk's header) are seen; a slot's first value, written with the block, is
/// published by the block's installation instead, the `Release` on `meta` that the caller's
/// `Acquire` load (`info_of`) reads. A reference tagged [`IN_SLAB`] sits in a slab chunk
/// of the referent's heap, which the caller's handle keeps alive: the chunk's header, written
/// once when the chunk was made, names its slab. If that slab is the calling thread's now,
/// the reference's `owner` bytes are written non-atomically only by this thread (when it
/// allocates the block: `object::shared_slab`'s invariant), so the atomic load of them does
/// not race. If they name this thread, the block holds a live, unmerged weak-reference object
/// this thread owns, and it is the one the slot listed: an object this thread allocated there
/// after that reference's death would mean the unlisting (which precedes the free, and is
/// ordered before this thread's reuse of the block by the slab's free lists) came before the
/// load (a reference freed by another thread was merged first, and reads owner 0). Only this
/// thread can change that now: an unmerged object dies only through its owner; its listing
/// goes only with its death, its referent's (which the caller's handle forbids), a
/// collection's clearing (with the world stopped, which this running thread prevents), or its
/// replacement by the lock path, which replaces only a reference at a merged zero (owner 0).
/// So its header is whole for the rest of the call, and the owner's try-increment refuses
/// only a reference dying further up this stack (no user code runs in that window today).
///
/// # Safety
/// `info` is the weak-info block of an object the caller holds a strong reference to.
#[cfg(not(reap_loom))]
#[inline]
unsafe fn owner_shared(info: &WeakInfo) -> Option<Gc<WeakRefObj>> {
    let tagged = info.shared.load(Acquire);
    if tagged.addr() & IN_SLAB == 0 {
        // None listed, or one from the global allocator.
        return None;
    }
    let w = tagged.map_addr(|a| a & !IN_SLAB);
    let (me, slab) = thread::cached_slab();
    // SAFETY: a block of a slab of the referent's heap, which the caller's reference keeps
    // alive (the function's docs).
    if unsafe { SharedSlab::of_block(NonNull::new_unchecked(w).cast()) }.addr() != slab {
        return None;
    }
    // Only the `owner` field until the owner is known (as in `owner_upgrade`).
    // SAFETY: allocated memory, which an atomic load reads without a race (above).
    let owner = unsafe { &*std::ptr::addr_of!((*w).owner) };
    if owner.load(Relaxed) != me {
        return None;
    }
    // SAFETY: a live weak-reference object this thread owns (above).
    let wh = unsafe { &*w };
    if !count::try_inc_owner(wh) {
        return None;
    }
    // SAFETY: the reference just taken; its value is a `WeakRefObj`.
    Some(unsafe { Gc::from_value_ptr(SharedHeader::value_ptr(NonNull::new_unchecked(w)).cast()) })
}

/// The live shared weak reference of `h`, with one more reference, if any.
///
/// # Safety
/// The caller holds `h`'s weak lock.
unsafe fn shared_live(h: &SharedHeader, me: u32) -> Option<Gc<WeakRefObj>> {
    // SAFETY: under the lock (caller).
    let info = unsafe { info_of(h)?.as_ref() };
    // SAFETY: under the lock; a listed reference is allocated (it unlists itself under the
    // lock before it is freed).
    let w = info.shared_ref(Relaxed)?;
    // SAFETY: as above.
    if count::try_inc(unsafe { w.as_ref() }, me) {
        // SAFETY: the reference just taken; its value is a WeakRefObj.
        Some(unsafe { Gc::from_value_ptr(SharedHeader::value_ptr(w).cast()) })
    } else {
        None
    }
}

/// The weak-reference object with this header.
///
/// # Safety
/// `w` is the header of an allocated weak-reference object.
unsafe fn old_ref<'a>(w: NonNull<SharedHeader>) -> &'a WeakRefObj {
    // SAFETY: caller.
    unsafe { SharedHeader::value_ptr(w).cast::<WeakRefObj>().as_ref() }
}

/// The slab holding a live object's memory, or null (see [`WeakRefObj::target_slab`]).
fn slab_of(target: NonNull<SharedHeader>) -> *const () {
    // SAFETY: the caller holds the target alive.
    #[cfg(not(reap_loom))]
    if unsafe { target.as_ref() }.in_slab.get() {
        // SAFETY: a live object of a slab, whose heap (and so its slabs' chunks) is alive.
        return unsafe { SharedSlab::of_block(target.cast()) }.cast();
    }
    #[cfg(reap_loom)]
    let _ = target;
    std::ptr::null()
}

/// A new weak-reference object to `target` (calling `callback`, if any, when it is cleared),
/// allocated by thread `me` (state `state`) on `heap`.
#[inline(always)]
fn new_ref_obj(
    heap: NonNull<HeapState>,
    me: u32,
    state: Option<NonNull<crate::sync::state::ThreadState>>,
    target: NonNull<SharedHeader>,
    callback: Option<Callback>,
) -> Gc<WeakRefObj> {
    let target_slab = slab_of(target);
    let callback = callback.map_or(std::ptr::null_mut(), |cb| Box::into_raw(Box::new(cb)));
    // Built where it is written (`alloc_on`).
    let make = move || WeakRefObj {
        target: AtomicPtr::new(target.as_ptr()),
        target_slab,
        callback: AtomicPtr::new(callback),
    };
    // Weak-reference objects are try-incremented from any thread (the shared reference by
    // `Weak::new`, those with callbacks by their referent's death): like their referents, they
    // must never read "dying" while alive (CPython's `init_weakref` marks both), so they are
    // made `MAYBE_WEAK` (`count::initial`).
    // SAFETY: the caller's target keeps the heap alive; `state` is this thread's.
    unsafe { alloc_on(heap, me, state, make, false, true) }
}

/// Unlists a dead weak-reference object from its referent (if its target is still set), run
/// by its death *before* its value is dropped: once `drop_in_place` has begun, the value is
/// exclusively borrowed, and the referent's death on another thread must no longer reach it
/// (it would write `target`). After this, no other thread touches the object.
///
/// # Safety
/// `value` is the value of a dead `WeakRefObj` whose value has not been dropped.
#[inline]
pub(crate) unsafe fn unlist(value: NonNull<u8>) {
    // SAFETY: caller: a live value; only shared references are made to it here.
    let w = unsafe { value.cast::<WeakRefObj>().as_ref() };
    // Already unlisted (by its owner's last drop, `dies_unlisted`, or by its referent's
    // death or a collection): nothing to do, and no call.
    if let Some(t) = NonNull::new(w.target.load(Acquire)) {
        // SAFETY: as this function's (caller).
        unsafe { unlist_slow(value, w, t) };
    }
}

/// [`unlist`] of a reference whose target was still set when loaded.
///
/// # Safety
/// As [`unlist`]; `w` is `value`'s weak-reference object, `t` the target it was loaded with.
#[inline(never)]
unsafe fn unlist_slow(value: NonNull<u8>, w: &WeakRefObj, t: NonNull<SharedHeader>) {
    // `value` is a dying object's value, with the provenance of the whole object.
    let obj = SharedHeader::from_value(value);
    // SAFETY: allocated, dying here; its heap is alive while it dies.
    let hs = unsafe { heap::heap_of(obj.as_ref()).as_ref() };
    let _g = hs.weak_lock(t).lock();
    // SAFETY: under `t`'s lock; `obj` is a weak-reference object's header.
    unsafe { unlist_locked(w, t, obj) };
}

/// Unlists `w` (whose header is `me`) from `t`, the target it was loaded with, if that is
/// still its target: clears it, and takes it out of `t`'s block.
///
/// # Safety
/// The caller holds `t`'s weak lock; `w` is allocated, and no thread holds an exclusive
/// reference to it.
unsafe fn unlist_locked(w: &WeakRefObj, t: NonNull<SharedHeader>, me: NonNull<SharedHeader>) {
    if w.target.load(Relaxed) != t.as_ptr() {
        return;
    }
    w.target.store(std::ptr::null_mut(), Relaxed);
    // SAFETY: still set under the lock: the referent is allocated and its block is ours
    // to edit.
    unsafe {
        if let Some(info) = info_of(t.as_ref()) {
            let info = info.as_ref();
            if info.shared_ref(Relaxed) == Some(me) {
                info.set_shared(None);
            }
            info.list.with_mut(|l| {
                if let Some(v) = (*l).as_mut() {
                    if let Some(i) = v.iter().position(|&w| w == me) {
                        v.remove(i);
                    }
                }
            });
            // The last unlisting's `Release` is what lets the referent's death skip its lock.
            info.listed.store(info.listed_now(), Release);
        }
    }
}

/// The owner's last drop of a weak-reference object `obj` that no other thread counts (its
/// shared word read as [`count::MAYBE_WEAK`] with a shared count of zero): whether it is dead,
/// unlisted here. `false`: another thread took a reference meanwhile, or the object has weak
/// references of its own, and the caller merges as for any object other threads count.
///
/// Every other thread's try-increment of a weak-reference object happens while it is listed,
/// under its referent's weak lock (`shared_live`, `take_calls`, `clear_for_collection`); the
/// owner's own, without the lock ([`owner_shared`]), comes before this drop in its program
/// order, and this verdict looks only at the shared word. So under that
/// lock a word still reading "no other reference" is the verdict, and the unlisting, in the
/// same critical section, leaves no way to take one: the death needs no compare-and-swap
/// publishing a merged zero (which `count::give_up_ownership` does, one locked instruction
/// more), and the lock is the one `unlist` takes anyway. A reference already unlisted (its
/// target cleared by the referent's death or a collection) needs no lock: the clearing
/// section took any reference before its `Release` store of the target, which the `Acquire`
/// load here reads, so the second load of the word sees that reference.
///
/// The object must also have no weak reference of its own, since an upgrade of one
/// try-increments it under *its* stripe, not its referent's, and would take the object the
/// verdict declared dead (its word is left `MAYBE_WEAK` with a zero count, which a
/// try-increment accepts). So `has_weak_info` is looked at after the `Acquire` load of the
/// word (a look before it is not enough): a block was installed by a thread holding a strong
/// reference, counted in the word, whose drop (a `Release` read-modify-write) that load reads,
/// or the word is not "no other reference" (loom model 33, written by the nineteenth
/// session's review, fails with a use after free when the only look came before the lock).
///
/// # Safety
/// `obj` is the header of a weak-reference object (with the provenance of the whole object)
/// whose owner's count this thread just took to zero.
#[inline]
pub(crate) unsafe fn dies_unlisted(obj: NonNull<SharedHeader>) -> bool {
    // SAFETY: allocated (the caller's object); only shared references are made to it.
    let (h, w) = unsafe {
        (
            obj.as_ref(),
            SharedHeader::value_ptr(obj).cast::<WeakRefObj>().as_ref(),
        )
    };
    debug_assert!(h.is_weakref());
    // No other reference, and no way to one but through the referent's block: the word first
    // (`Acquire`), then the object's own weak references (see above).
    let unreferenced = || count::unshared_weak_object(h) && !h.has_weak_info();
    let Some(t) = NonNull::new(w.target.load(Acquire)) else {
        return unreferenced();
    };
    // SAFETY: this object's heap is alive while it is.
    let hs = unsafe { heap::heap_of(h).as_ref() };
    let _g = hs.weak_lock(t).lock();
    if !unreferenced() {
        return false;
    }
    // SAFETY: under `t`'s lock; nobody else can reach `w` now but through `t`'s block, which
    // only holders of this lock read.
    unsafe { unlist_locked(w, t, obj) };
    true
}

/// Whether the weak-reference object `obj` still has its callback.
///
/// # Safety
/// `obj` is the header of an allocated weak-reference object whose value is not dropped.
#[inline]
pub(crate) unsafe fn has_callback(obj: NonNull<SharedHeader>) -> bool {
    // SAFETY: as this function's (caller).
    let w = unsafe { SharedHeader::value_ptr(obj).cast::<WeakRefObj>().as_ref() };
    !w.callback.load(Relaxed).is_null()
}

/// Whether `h` has no listed weak reference (no weak-info block, or a block whose count of
/// listed references is 0, loaded with `Acquire`): the owner's last drop may then take the
/// fast death (`count::merge_zero_local`, which says why that is enough).
///
/// The caller holds a reference to `h` (the block lives as long as the object).
pub(crate) fn none_listed(h: &SharedHeader) -> bool {
    // SAFETY: the caller holds a reference, and only the atomic `listed` is read.
    match unsafe { info_of(h) } {
        None => true,
        // SAFETY: an installed block lives until the object's death frees it.
        Some(info) => unsafe { info.as_ref() }.listed.load(Acquire) == 0,
    }
}

/// Clears every weak reference of a dead object and runs the callbacks of those still alive,
/// newest first, with the lock released (SEMANTICS 4.2).
///
/// # Safety
/// `obj` is dead (count zero, finalizer done) and has a weak-info block.
#[inline]
pub(crate) unsafe fn clear_and_call(obj: NonNull<SharedHeader>) {
    // SAFETY: dead but allocated.
    let h = unsafe { obj.as_ref() };
    // Nothing listed (every weak reference died first and unlisted itself): nothing to clear,
    // and nothing can touch the block any more, so no lock. A reference touches the block
    // only while its target is set, and every one was cleared in the critical section whose
    // `Release` store this `Acquire` load reads; no new one can be made (that takes a strong
    // reference), and no collection can run while this death does. The block's free
    // (`free_info`) then happens after those sections' writes.
    // SAFETY: the death is running: `meta` no longer changes.
    if let Some(info) = unsafe { info_of(h) } {
        // SAFETY: an installed block lives until the death frees it.
        if unsafe { info.as_ref() }.listed.load(Acquire) == 0 {
            return;
        }
    }
    // SAFETY: as this function's (caller).
    unsafe { clear_and_call_listed(obj, h) }
}

/// [`clear_and_call`] of an object whose block listed references when it looked.
///
/// # Safety
/// As [`clear_and_call`]; `h` is `obj`'s header.
#[inline(never)]
unsafe fn clear_and_call_listed(obj: NonNull<SharedHeader>, h: &SharedHeader) {
    // SAFETY: the object keeps its heap alive.
    let hs = unsafe { heap::heap_of(h).as_ref() };
    let calls = {
        let _g = hs.weak_lock(obj).lock();
        // SAFETY: under the lock.
        let Some(info) = (unsafe { info_of(h) }) else {
            return;
        };
        // SAFETY: under the lock; listed references are allocated.
        unsafe {
            let info = info.as_ref();
            if let Some(w) = info.set_shared(None) {
                old_ref(w).target.store(std::ptr::null_mut(), Release);
            }
            let list = info.list.with_mut(|l| (*l).take());
            info.listed.store(0, Release);
            let Some(list) = list.filter(|v| !v.is_empty()) else {
                // No reference with a callback (never one, or all unlisted): nothing to take
                // or call.
                return;
            };
            take_calls(*list)
        }
    };
    call_all(h, hs, calls);
}

/// [`clear_and_call`]'s clearing of the references with callbacks (`list`, just taken from a
/// dead referent's block): each one's target is cleared, and those still alive are taken (one
/// reference each), newest first.
///
/// # Safety
/// The caller holds the referent's weak lock; the listed references are allocated.
#[inline(never)]
unsafe fn take_calls(list: Vec<NonNull<SharedHeader>>) -> SmallVec<[Gc<WeakRefObj>; 4]> {
    let me = thread::current_id();
    let mut calls: SmallVec<[Gc<WeakRefObj>; 4]> = SmallVec::new();
    for &w in list.iter().rev() {
        // A reference that is itself dying (count zero) gets no call. `w` is touched only
        // while its target is set: once it reads cleared, its own death (on any thread) no
        // longer waits for this lock and frees it.
        // SAFETY: listed, under the lock (caller): allocated.
        unsafe {
            if count::try_inc(w.as_ref(), me) {
                calls.push(Gc::from_value_ptr(SharedHeader::value_ptr(w).cast()));
            }
            old_ref(w).target.store(std::ptr::null_mut(), Release);
        }
    }
    calls
}

/// Runs the callbacks [`take_calls`] took for the dead referent `h` (of heap `hs`), in order,
/// with no lock held; a panic goes to the heap's hook.
#[inline(never)]
fn call_all(h: &SharedHeader, hs: &HeapState, calls: SmallVec<[Gc<WeakRefObj>; 4]>) {
    for w in calls {
        let cb = w.take_callback();
        if let Some(cb) = cb {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| cb(&w))) {
                hs.report_panic(
                    UnraisableKind::WeakCallback,
                    (heap::vtable(h).type_name)(),
                    p,
                );
            }
        }
        drop(w);
    }
}

/// A collection's clearing of the weak references to `obj`, one of its garbage (SEMANTICS
/// 2.4), while the world is stopped: every reference's target is cleared and the block
/// emptied; those that are alive and not garbage themselves (`is_garbage`) and have a
/// callback are taken (one reference each) into `calls`, newest first, for the collecting
/// thread `me` to call once the world restarts.
///
/// # Safety
/// The world is stopped (no other thread holds a weak lock: none is taken across a safe
/// point or outside the gate), and `obj` is allocated.
pub(crate) unsafe fn clear_for_collection(
    obj: NonNull<SharedHeader>,
    me: u32,
    is_garbage: &dyn Fn(NonNull<SharedHeader>) -> bool,
    calls: &mut Vec<(Gc<WeakRefObj>, &'static str)>,
) {
    // SAFETY: allocated (caller).
    let h = unsafe { obj.as_ref() };
    if h.meta.load(Acquire).addr() & META_WEAK_INFO == 0 {
        // Never weakly referenced (and nobody can make one while the world is stopped).
        return;
    }
    let type_name = (heap::vtable(h).type_name)();
    // SAFETY: the object keeps its heap alive.
    let hs = unsafe { heap::heap_of(h).as_ref() };
    let _g = hs.weak_lock(obj).lock();
    // SAFETY: under the lock; listed references are allocated.
    unsafe {
        let Some(info) = info_of(h) else { return };
        let info = info.as_ref();
        if let Some(w) = info.set_shared(None) {
            old_ref(w).target.store(std::ptr::null_mut(), Release);
        }
        let list = info.list.with_mut(|l| (*l).take()).unwrap_or_default();
        info.listed.store(0, Release);
        for &w in list.iter().rev() {
            if !is_garbage(w) && count::try_inc(w.as_ref(), me) {
                calls.push((
                    Gc::from_value_ptr(SharedHeader::value_ptr(w).cast()),
                    type_name,
                ));
            }
            old_ref(w).target.store(std::ptr::null_mut(), Release);
        }
    }
}

/// Runs the callback of a weak reference a collection took (see [`clear_for_collection`];
/// `type_name` is its referent's type), reporting a panic to the heap's hook.
pub(crate) fn call_back(w: Gc<WeakRefObj>, type_name: &'static str) {
    let cb = w.take_callback();
    if let Some(cb) = cb {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| cb(&w))) {
            // SAFETY: the weak-reference object keeps its heap alive.
            unsafe { heap::heap_of(w.header()).as_ref() }.report_panic(
                UnraisableKind::WeakCallback,
                type_name,
                p,
            );
        }
    }
}

/// Frees a dead object's weak-info block, if it has one, on a thread whose state on the
/// object's heap is `state`.
///
/// # Safety
/// The object is dead and its weak references cleared: nothing reaches the block. `state` is
/// this thread's attachment, if any.
#[inline]
pub(crate) unsafe fn free_info(h: &SharedHeader, state: Option<NonNull<ThreadState>>) {
    // SAFETY: the object's death is the only user of its header now.
    if let Some(info) = unsafe { info_of(h) } {
        // SAFETY: made by `info_or_make`, dropped and freed once here.
        unsafe {
            let block = info.as_ref();
            // The drop below writes the lists: declared as writes through their cells (no code
            // in std builds), which loom builds check against every other access (the last
            // unlisting's above all, which the death may not have locked against:
            // `clear_and_call`).
            block.list.with_mut(|_| ());
            let in_slab = block.in_slab;
            std::ptr::drop_in_place(info.as_ptr());
            heap::free_memory(in_slab, info.as_ptr().cast(), INFO_LAYOUT, state);
        }
    }
}
