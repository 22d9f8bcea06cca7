//! Threads and Shared heaps: each thread's id (the owner id of the objects it allocates), its
//! attachment to each heap it uses (a [`ThreadState`] in the heap's table, holding its merge
//! queue), the safe points where it merges what other threads queued to it, its exit, and the
//! per-thread trashcan.
//!
//! Attachment is on first use and ends at thread exit. A handle can reach a thread that never
//! heard of its heap (sent through a channel, left in a static): the thread must be able to
//! drop it there, and dropping the last one runs the object's death, which needs a thread
//! state (a trashcan, an owner id for the finalizer's reference). So any operation that needs
//! the thread's state for a heap attaches it; nothing has to be called first. A thread stays
//! attached until it exits because the objects it owns keep its id: until its state leaves the
//! heap's table, other threads queue those objects to it rather than merging them themselves.

use std::cell::{Cell, RefCell};
use std::ptr::NonNull;

use smallvec::SmallVec;

use crate::object::shared::SharedHeader;
use crate::shim::{lock, AtomicU8, AtomicUsize, Ordering::*};
use crate::sync::count::{self, NO_OWNER};
use crate::sync::state::{heap_of, release_refs, HeapState, ThreadSlot, ThreadState};

/// Hands out thread ids: unique for the process's life, never 0 (merged) or `NO_OWNER`. A
/// plain std atomic even under loom: ids only need to differ.
static NEXT_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// The thread-local state every Shared-mode operation reads, in one place so that a clone, a
/// drop, an allocation or a death costs one thread-local access: the thread's id, its
/// trashcan, and the heap it last attached to or found (a one-entry cache in front of
/// [`ThreadData::attached`]). No destructor, so it can be used at any point of thread exit.
struct Hot {
    /// This thread's id as an owner: `NO_OWNER` until it first attaches, and again once its
    /// exit has begun.
    id: Cell<u32>,
    /// The trashcan: nested deaths on this thread ...
    depth: Cell<u32>,
    /// ... and the outermost death's list of deferred ones (on its stack), or null.
    deferred: Cell<*mut Vec<NonNull<SharedHeader>>>,
    /// The last heap `attach` returned a state for, and that state (null when none). Valid
    /// while the thread is attached to that heap, which is until its exit begins (when the
    /// cache is cleared): the attachment keeps the heap, and so the state, alive.
    last_heap: Cell<*const HeapState>,
    last_state: Cell<*mut ThreadState>,
}

impl Hot {
    const fn new() -> Hot {
        Hot {
            id: Cell::new(NO_OWNER),
            depth: Cell::new(0),
            deferred: Cell::new(std::ptr::null_mut()),
            last_heap: Cell::new(std::ptr::null()),
            last_state: Cell::new(std::ptr::null_mut()),
        }
    }
}

#[cfg(not(reap_loom))]
std::thread_local! {
    static HOT: Hot = const { Hot::new() };
    /// This thread's attachments; its destructor detaches the thread.
    static THREAD: ThreadData = ThreadData::default();
}

#[cfg(reap_loom)]
loom::thread_local! {
    static HOT: Hot = Hot::new();
    static THREAD: ThreadData = ThreadData::default();
}

/// This thread's id as an owner (`NO_OWNER` if it has none: it owns nothing).
#[inline]
pub(crate) fn current_id() -> u32 {
    HOT.try_with(|h| h.id.get()).unwrap_or(NO_OWNER)
}

/// A heap this thread is attached to, and its state there.
type Attachment = (NonNull<HeapState>, NonNull<ThreadState>);

#[derive(Default)]
struct ThreadData {
    /// This thread's id once it has one (`HOT` has it too, but sets it to `NO_OWNER` when the
    /// exit begins).
    id: Cell<u32>,
    /// The heaps this thread is attached to, with its state in each.
    attached: RefCell<SmallVec<[Attachment; 2]>>,
}

/// Past this many nested deaths on one thread, further ones are deferred (as Local mode's
/// trashcan, and CPython's).
const TRASHCAN_DEPTH: u32 = 50;

/// This thread's id, assigned on first use; `NO_OWNER` once its exit has begun.
fn ensure_id() -> u32 {
    HOT.try_with(|hot| {
        let id = hot.id.get();
        if id != NO_OWNER {
            return id;
        }
        // A thread whose exit has begun must not take a new id: its state could not be
        // cleaned up. Its THREAD slot is then unusable.
        if THREAD.try_with(|_| ()).is_err() {
            return NO_OWNER;
        }
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if id == NO_OWNER || id == 0 {
            // Four billion threads: give up, as on a count overflow.
            std::process::abort();
        }
        hot.id.set(id);
        let _ = THREAD.try_with(|t| t.id.set(id));
        id
    })
    .unwrap_or(NO_OWNER)
}

/// This thread's id and its state on `heap`, attaching it if it is not yet attached; `None`
/// for the state once the thread's exit has begun (the caller then counts on the heap
/// directly). The returned state lives as long as the thread's attachment, which outlasts the
/// caller.
#[inline]
pub(crate) fn attach(heap: NonNull<HeapState>) -> (u32, Option<NonNull<ThreadState>>) {
    let cached = HOT.try_with(|hot| {
        if hot.last_heap.get() == heap.as_ptr().cast_const() {
            (hot.id.get(), NonNull::new(hot.last_state.get()))
        } else {
            (NO_OWNER, None)
        }
    });
    match cached {
        Ok((id, Some(state))) => (id, Some(state)),
        _ => attach_slow(heap),
    }
}

/// This thread's id and its state on `heap` if `heap` is the one it last attached to or found
/// (the one-entry cache of [`attach`]); `None` otherwise, attaching nothing.
#[cfg(not(reap_loom))]
#[inline]
pub(crate) fn cached_state(heap: NonNull<HeapState>) -> Option<(u32, NonNull<ThreadState>)> {
    HOT.try_with(|hot| {
        if hot.last_heap.get() == heap.as_ptr().cast_const() {
            NonNull::new(hot.last_state.get()).map(|s| (hot.id.get(), s))
        } else {
            None
        }
    })
    .ok()
    .flatten()
}

#[cold]
#[inline(never)]
fn attach_slow(heap: NonNull<HeapState>) -> (u32, Option<NonNull<ThreadState>>) {
    let id = ensure_id();
    if id == NO_OWNER {
        return (NO_OWNER, None);
    }
    let found = THREAD.try_with(|t| {
        let attached = t.attached.borrow();
        attached
            .iter()
            .find(|(h, _)| *h == heap)
            .map(|&(_, state)| state)
    });
    let state = match found {
        Ok(Some(state)) => state,
        Ok(None) => {
            // SAFETY: the caller keeps the heap alive (it holds a handle, an object or a
            // reference of it).
            let h = unsafe { heap.as_ref() };
            let (slot, ptr) = ThreadSlot::new(ThreadState {
                pending: AtomicU8::new(0),
                reserve: AtomicUsize::new(0),
                detached: AtomicUsize::new(0),
                #[cfg(not(reap_loom))]
                slab: h.take_slab(),
            });
            // The attachment holds one reference of the heap until the thread exits.
            h.refs.fetch_add(1, Relaxed);
            lock(&h.threads).insert(id, slot);
            let pushed = THREAD.try_with(|t| t.attached.borrow_mut().push((heap, ptr)));
            debug_assert!(pushed.is_ok());
            ptr
        }
        Err(_) => return (NO_OWNER, None),
    };
    // THREAD is alive, so its destructor (which clears the cache) has not run yet.
    let _ = HOT.try_with(|hot| {
        hot.last_heap.set(heap.as_ptr().cast_const());
        hot.last_state.set(state.as_ptr());
    });
    (id, Some(state))
}

/// Merges what other threads queued to this thread on `heap`, if anything: the owner's safe
/// point. Runs the deaths of the objects whose count this takes to zero (after the table's
/// lock is released).
pub(crate) fn safepoint(heap: NonNull<HeapState>, state: &ThreadState) {
    if state.pending.load(Acquire) != 0 {
        drain(heap, state);
    }
}

#[cold]
fn drain(heap: NonNull<HeapState>, state: &ThreadState) {
    let id = current_id();
    // SAFETY: the thread's attachment keeps the heap alive.
    let h = unsafe { heap.as_ref() };
    let queue = {
        let mut table = lock(&h.threads);
        state.pending.store(0, Relaxed);
        match table.get_mut(&id) {
            Some(slot) => std::mem::take(&mut slot.queue),
            None => Vec::new(),
        }
    };
    merge_all(queue);
}

/// Merges queued objects (each entry holding one reference), running the deaths that result.
fn merge_all(queue: Vec<NonNull<SharedHeader>>) {
    for obj in queue {
        // SAFETY: the queue entry holds a reference, so the object is allocated.
        let total = count::merge(unsafe { obj.as_ref() }, -1);
        if total == 0 {
            // SAFETY: the queue entry's reference kept the object, and so its heap, alive.
            let heap = heap_of(unsafe { obj.as_ref() });
            // SAFETY: the merge took the count to zero; the death is this thread's to run.
            unsafe { (heap.as_ref().release)(obj) };
        }
    }
}

/// Hands `obj` (whose owner is `owner`, and whose counts now say `QUEUED`) to its owner's
/// merge queue; if the owner has exited, merges it here instead (CPython's
/// `_Py_brc_queue_object`). Runs the death if that merge reaches zero.
///
/// # Safety
/// The caller's dropped reference now belongs to the queue entry: `obj` is allocated.
pub(crate) unsafe fn queue(obj: NonNull<SharedHeader>, owner: u32) {
    // SAFETY: the queued reference keeps the object, and so its heap, alive.
    let heap = unsafe { obj.as_ref() }.heap.cast::<HeapState>();
    // SAFETY: as above.
    let h = unsafe { heap.as_ref() };
    let merge_here = {
        let mut table = lock(&h.threads);
        match table.get_mut(&owner) {
            Some(slot) => {
                slot.queue.push(obj);
                slot.state().pending.store(1, Release);
                false
            }
            // The owner has exited: its last writes to the object's local count happened
            // before it left the table, under this lock.
            None => true,
        }
    };
    if merge_here {
        merge_all(vec![obj]);
    }
}

/// Runs `death` now, or defers it if this thread is already `TRASHCAN_DEPTH` deaths deep; the
/// outermost death on the thread runs the deferred ones. Bounded stack for any chain, at any
/// point of the thread's life (its exit included: the trashcan has no destructor).
pub(crate) fn with_trashcan(obj: NonNull<SharedHeader>, death: unsafe fn(NonNull<SharedHeader>)) {
    let Ok((depth, deferred)) = HOT.try_with(|hot| (hot.depth.get(), hot.deferred.get())) else {
        // Only in loom builds, whose thread-locals are all destroyed at thread exit (std's
        // `HOT` has no destructor): no trashcan there.
        // SAFETY: the caller hands over a dead object whose death has not begun.
        return unsafe { death(obj) };
    };
    if depth >= TRASHCAN_DEPTH {
        // SAFETY: an outermost death is running on this thread (depth > 0), and its list
        // lives on its stack until it has run every deferred death; nothing else borrows it.
        unsafe { (*deferred).push(obj) };
        return;
    }
    let _ = HOT.try_with(|hot| hot.depth.set(depth + 1));
    if depth == 0 {
        let mut deferred: Vec<NonNull<SharedHeader>> = Vec::new();
        let list: *mut Vec<NonNull<SharedHeader>> = &mut deferred;
        let _ = HOT.try_with(|hot| hot.deferred.set(list));
        // SAFETY: the caller hands over a dead object whose death has not begun.
        unsafe { death(obj) };
        // SAFETY: `list` is only used through this pointer while it is published.
        while let Some(o) = unsafe { (*list).pop() } {
            // SAFETY: deferred objects are dead, their deaths not begun.
            unsafe { death(o) };
        }
        let _ = HOT.try_with(|hot| hot.deferred.set(std::ptr::null_mut()));
    } else {
        // SAFETY: as above.
        unsafe { death(obj) };
    }
    let _ = HOT.try_with(|hot| hot.depth.set(depth));
}

/// Runs `f` marked detached from `heap` (after merging this thread's queue, and again after).
pub(crate) fn detached<R>(heap: NonNull<HeapState>, f: impl FnOnce() -> R) -> R {
    let (_, state) = attach(heap);
    let Some(state) = state else { return f() };
    // SAFETY: the attachment outlives this call.
    let s = unsafe { state.as_ref() };
    safepoint(heap, s);
    s.detached.fetch_add(1, Relaxed);
    struct Reattach<'a>(&'a ThreadState);
    impl Drop for Reattach<'_> {
        fn drop(&mut self) {
            self.0.detached.fetch_sub(1, Relaxed);
        }
    }
    let guard = Reattach(s);
    let r = f();
    drop(guard);
    safepoint(heap, s);
    r
}

impl Drop for ThreadData {
    /// Thread exit: the thread gives up its id (from now on it owns nothing, so its handles'
    /// drops go the shared way), then leaves each heap's table, merging what was queued to it.
    /// Objects it still owns stay with its id; whoever queues one next finds it gone and
    /// merges it.
    fn drop(&mut self) {
        let _ = HOT.try_with(|hot| {
            hot.id.set(NO_OWNER);
            hot.last_heap.set(std::ptr::null());
            hot.last_state.set(std::ptr::null_mut());
        });
        let id = self.id.get();
        let attached = std::mem::take(self.attached.get_mut());
        for (heap, state) in attached {
            // SAFETY: the attachment holds a reference of the heap until released below.
            let h = unsafe { heap.as_ref() };
            // SAFETY: the state lives in the table until removed here.
            let reserve = unsafe { state.as_ref() }.reserve.load(Relaxed);
            // SAFETY: as above.
            #[cfg(not(reap_loom))]
            let slab = unsafe { state.as_ref() }.slab;
            let slot = lock(&h.threads).remove(&id);
            if let Some(mut slot) = slot {
                merge_all(std::mem::take(&mut slot.queue));
            }
            // The thread allocates no more (it has no id): its slab waits for another thread.
            // (The deaths just run freed their blocks into it the way other threads do.)
            #[cfg(not(reap_loom))]
            h.give_back_slab(slab);
            // The attachment's reference and the unused reserve go back to the heap.
            // SAFETY: the caller's references are exactly these.
            unsafe { release_refs(heap, reserve + 1) };
        }
    }
}
