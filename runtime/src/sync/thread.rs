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
use crate::shim::{lock, wait, wait_timeout, AtomicU8, AtomicUsize, Ordering::*};
use crate::sync::count::{self, NO_OWNER};
use crate::sync::state::{
    heap_of, release_leaving, release_refs, HeapState, SendPtr, StopState, ThreadSlot, ThreadState,
    ATTACHED, DETACHED, LEAVING_ONE, PARKED, PENDING_GC, PENDING_QUEUE, PENDING_STOP,
};

/// Hands out thread ids: unique for the process's life, never 0 (merged) or `NO_OWNER`. A
/// plain std atomic even under loom: ids only need to differ.
static NEXT_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// The thread-local state every Shared-mode operation reads, in one place so that a clone, a
/// drop, an allocation or a death costs one thread-local access: the thread's id, its
/// trashcan, and the heap it last attached to or found (a one-entry cache in front of
/// [`ThreadData::attached`]). No destructor, so it can be used at any point of thread exit.
struct Hot {
    /// This thread's id as an owner, as its handle operations compare it with objects'
    /// owners: `NO_OWNER` until it first attaches, inside a detached section (where its
    /// operations take the gate), and once its exit has begun.
    id: Cell<u32>,
    /// The trashcan: nested deaths on this thread ...
    depth: Cell<u32>,
    /// ... and the list of deferred deaths, made by the first deferral and freed by the
    /// outermost death once it has run them (null when there is none).
    deferred: Cell<*mut Vec<NonNull<SharedHeader>>>,
    /// The last heap `attach` returned a state for, and that state (null when none). Valid
    /// while the thread is attached to that heap, which is until its exit begins (when the
    /// cache is cleared): the attachment keeps the heap, and so the state, alive.
    last_heap: Cell<*const HeapState>,
    last_state: Cell<*mut ThreadState>,
    /// The address of `last_state`'s slab (`usize::MAX`, no slab's, when there is none): set
    /// and cleared with it (by [`Hot::set_cache`]), so that the owner's weak upgrade compares
    /// a referent's slab with this thread's in one load.
    #[cfg_attr(reap_loom, allow(dead_code))]
    last_slab: Cell<usize>,
    /// The gates this thread is inside, outermost first: each heap's once, with how many
    /// times over (`Gate::enter` nests on an entry of the same heap). At most `MAX_GATES`
    /// heaps are recorded; a deeper one is entered untracked.
    gates: [Cell<*const HeapState>; MAX_GATES],
    gate_depths: [Cell<u32>; MAX_GATES],
    gates_len: Cell<usize>,
    /// How many heaps' worlds this thread holds stopped (between [`stop_the_world`]'s success
    /// and [`restart_the_world`]): [`blocking`] then detaches from nothing, since re-attaching
    /// would park it on its own stop.
    stops_held: Cell<u32>,
    /// The objects whose finalizers this thread runs on the refcount path, innermost last
    /// (finalizers nest: a finalizer's drop may run another's): this thread's weak upgrades of
    /// them succeed where its id does not own them (no owner id, inside `Heap::detached`,
    /// merged mid-finalizer), and its clones of them leave their finalizing mark alone.
    /// At most [`MAX_FINALIZING`], which the trashcan keeps them from exceeding.
    finalizing: [Cell<*const SharedHeader>; MAX_FINALIZING],
    finalizing_len: Cell<usize>,
    /// The shared word this thread predicts for its next foreign decrement of the object
    /// `guess_obj`: the word its last one published, plus one for each foreign clone of that
    /// object it made since (`count::dec_shared_fast`). Exact unless another thread changed
    /// the count meanwhile; never dereferenced, never trusted (a compare-and-swap checks it).
    guess_obj: Cell<*const SharedHeader>,
    guess_word: Cell<u32>,
}

/// How many nested refcount-path finalizers a thread records: as many as it runs nested
/// deaths (each finalizer runs inside one, and the trashcan defers deaths past
/// [`TRASHCAN_DEPTH`]), so none goes unrecorded.
const MAX_FINALIZING: usize = TRASHCAN_DEPTH as usize;

/// How many heaps' gates a thread's [`Hot`] records at once (gates nest when a gated death's
/// user code touches another heap's objects).
const MAX_GATES: usize = 8;

impl Hot {
    const fn new() -> Hot {
        Hot {
            id: Cell::new(NO_OWNER),
            depth: Cell::new(0),
            deferred: Cell::new(std::ptr::null_mut()),
            last_heap: Cell::new(std::ptr::null()),
            last_state: Cell::new(std::ptr::null_mut()),
            last_slab: Cell::new(usize::MAX),
            gates: [const { Cell::new(std::ptr::null()) }; MAX_GATES],
            gate_depths: [const { Cell::new(0) }; MAX_GATES],
            gates_len: Cell::new(0),
            stops_held: Cell::new(0),
            finalizing: [const { Cell::new(std::ptr::null()) }; MAX_FINALIZING],
            finalizing_len: Cell::new(0),
            guess_obj: Cell::new(std::ptr::null()),
            guess_word: Cell::new(0),
        }
    }

    /// Sets the one-entry attachment cache: `heap` and this thread's `state` there (both
    /// null to clear it), and the state's slab.
    fn set_cache(&self, heap: *const HeapState, state: *mut ThreadState) {
        self.last_heap.set(heap);
        self.last_state.set(state);
        #[cfg(not(reap_loom))]
        self.last_slab.set(if state.is_null() {
            usize::MAX
        } else {
            // SAFETY: a cached state is this thread's attachment, alive while cached.
            unsafe { (*state).slab.as_ptr().addr() }
        });
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

/// Records `obj` as an object whose finalizer this thread runs on the refcount path
/// ([`Hot::finalizing`]) until [`end_finalizing`]; `false` if it could not (no room, which
/// the trashcan rules out, or the thread's locals are gone), when `end_finalizing` is not to
/// be called.
pub(crate) fn begin_finalizing(obj: *const SharedHeader) -> bool {
    HOT.try_with(|h| {
        let n = h.finalizing_len.get();
        debug_assert!(
            n < MAX_FINALIZING,
            "reap: more nested finalizers than deaths"
        );
        if n == MAX_FINALIZING {
            return false;
        }
        h.finalizing[n].set(obj);
        h.finalizing_len.set(n + 1);
        true
    })
    .unwrap_or(false)
}

/// Ends the innermost record of [`begin_finalizing`].
pub(crate) fn end_finalizing() {
    let _ = HOT.try_with(|h| {
        let n = h.finalizing_len.get();
        debug_assert!(n > 0, "reap: a finalizing record ended twice");
        h.finalizing_len.set(n.saturating_sub(1));
    });
}

/// Whether this thread records `obj` as an object whose finalizer it runs on the refcount
/// path; `if_gone` if the thread's locals are gone.
fn records_finalizing(obj: *const SharedHeader, if_gone: bool) -> bool {
    HOT.try_with(|h| (0..h.finalizing_len.get()).any(|i| h.finalizing[i].get() == obj))
        .unwrap_or(if_gone)
}

/// Whether this thread runs `obj`'s finalizer on the refcount path ([`begin_finalizing`]):
/// its weak upgrades of `obj` then resurrect it (`count::try_inc_finalizing`), whatever its
/// id and the object's state.
pub(crate) fn finalizes(obj: *const SharedHeader) -> bool {
    records_finalizing(obj, false)
}

/// Whether this thread may run `obj`'s finalizer on the refcount path: [`finalizes`], or the
/// thread's locals are gone (it cannot tell). A clone by a thread that surely does not lifts
/// the finalizing mark (`heap::inc_foreign`); one by a thread that may must not.
pub(crate) fn may_finalize(obj: *const SharedHeader) -> bool {
    records_finalizing(obj, true)
}

/// This thread's id as an owner (`NO_OWNER` if it has none: it owns nothing).
#[inline]
pub(crate) fn current_id() -> u32 {
    HOT.try_with(|h| h.id.get()).unwrap_or(NO_OWNER)
}

/// This thread's id as an owner and the heap it is attached to that its cache names (null if
/// none): one thread-local access for a handle operation. An object of that heap may have
/// its counts changed directly; any other needs [`with_access`]'s slow path.
#[inline]
pub(crate) fn hot() -> (u32, *const HeapState) {
    HOT.try_with(|h| (h.id.get(), h.last_heap.get()))
        .unwrap_or((NO_OWNER, std::ptr::null()))
}

/// The shared word this thread predicts for `h` ([`Hot::guess_word`]), if its prediction is
/// for `h`: a guess, which may be stale.
#[inline]
pub(crate) fn word_guess(h: *const SharedHeader) -> Option<u32> {
    HOT.try_with(|t| (t.guess_obj.get() == h).then(|| t.guess_word.get()))
        .ok()
        .flatten()
}

/// Remembers `word` as the shared word this thread's decrement of `h` just published.
#[inline]
pub(crate) fn remember_word(h: *const SharedHeader, word: u32) {
    let _ = HOT.try_with(|t| {
        t.guess_obj.set(h);
        t.guess_word.set(word);
    });
}

/// This thread added one to `h`'s shared count: one more in its prediction, if it has one
/// for `h`.
#[inline]
pub(crate) fn predict_clone(h: *const SharedHeader) {
    let _ = HOT.try_with(|t| {
        if t.guess_obj.get() == h {
            t.guess_word
                .set(t.guess_word.get().wrapping_add(count::SHARED_ONE));
        }
    });
}

/// Runs `op` with the id under which this thread may change the counts of `heap`'s objects
/// now: directly if it is attached to `heap`; otherwise inside the heap's gate, as
/// `NO_OWNER` (so that every change is a foreign one), which waits while a collection holds
/// the world stopped. `op` may run user code (an object's death).
#[inline]
pub(crate) fn with_access<R>(heap: NonNull<HeapState>, op: impl FnOnce(u32) -> R) -> R {
    let (me, cur) = hot();
    if cur == heap.as_ptr().cast_const() {
        op(me)
    } else {
        access_slow(heap, op)
    }
}

#[cold]
#[inline(never)]
fn access_slow<R>(heap: NonNull<HeapState>, op: impl FnOnce(u32) -> R) -> R {
    match current(heap) {
        (me, Some(_)) => op(me),
        (_, None) => gated(heap, || op(NO_OWNER)),
    }
}

/// This thread's id and its state on `heap` if it is attached there (and not detached),
/// without attaching it: `(NO_OWNER, None)` otherwise. Refreshes the one-entry cache.
pub(crate) fn current(heap: NonNull<HeapState>) -> (u32, Option<NonNull<ThreadState>>) {
    if let Ok(Some(found)) = HOT.try_with(|hot| {
        (hot.last_heap.get() == heap.as_ptr().cast_const())
            .then(|| NonNull::new(hot.last_state.get()).map(|s| (hot.id.get(), s)))
            .flatten()
    }) {
        return (found.0, Some(found.1));
    }
    let found = THREAD.try_with(|t| {
        let attached = t.attached.borrow();
        attached
            .iter()
            .find(|(h, _)| *h == heap)
            .map(|&(_, state)| state)
    });
    match found {
        Ok(Some(state)) => {
            // SAFETY: the attachment outlives this call.
            if unsafe { state.as_ref() }.status.load(Relaxed) != ATTACHED {
                return (NO_OWNER, None);
            }
            (cache_attachment(heap, state), Some(state))
        }
        _ => (NO_OWNER, None),
    }
}

/// Runs `f` inside `heap`'s gate: the operations of a thread not attached to the heap (never
/// attached, detached, or exiting) that change counts or free objects. A collection waits
/// for every such operation to leave and lets none in while it holds the world stopped, so
/// it reads counts no thread is changing. Re-entrant (a death inside the gate runs more
/// operations on the same heap).
pub(crate) fn gated<R>(heap: NonNull<HeapState>, f: impl FnOnce() -> R) -> R {
    let _gate = Gate::enter(heap, true);
    f()
}

/// [`gated`] for a thread whose own reference of the heap (its attachment's, at exit) keeps
/// the heap alive until after the gate is left: the gate takes no reference of its own, so
/// that the heap's reference count stays what `Heap::live_objects` accounts for.
fn gated_on_own_ref<R>(heap: NonNull<HeapState>, f: impl FnOnce() -> R) -> R {
    let _gate = Gate::enter(heap, false);
    f()
}

/// Inside a heap's gate until dropped (see [`gated`]).
struct Gate {
    heap: NonNull<HeapState>,
    /// Whether this entry counted the thread into the gate (else it nests in an outer entry
    /// of the same heap's gate).
    outermost: bool,
    /// Whether the entry is recorded in `Hot.gates` (all but past `MAX_GATES`).
    tracked: bool,
    /// Whether the (outermost) entry holds a reference of the heap of its own.
    own_ref: bool,
}

impl Hot {
    /// The index of `heap`'s entry in `gates`, if recorded.
    fn gate_index(&self, heap: *const HeapState) -> Option<usize> {
        (0..self.gates_len.get()).find(|&i| self.gates[i].get() == heap)
    }

    /// Removes entry `i`, keeping the others in order.
    fn remove_gate(&self, i: usize) {
        let len = self.gates_len.get();
        for k in i..len - 1 {
            self.gates[k].set(self.gates[k + 1].get());
            self.gate_depths[k].set(self.gate_depths[k + 1].get());
        }
        self.gates_len.set(len - 1);
    }

    /// Records an entry at the end; `false` if there is no room.
    fn push_gate(&self, heap: *const HeapState, depth: u32) -> bool {
        let len = self.gates_len.get();
        if len == MAX_GATES {
            return false;
        }
        self.gates[len].set(heap);
        self.gate_depths[len].set(depth);
        self.gates_len.set(len + 1);
        true
    }
}

impl Gate {
    /// Enters `heap`'s gate; the outermost entry takes a reference of the heap if `own_ref`
    /// (else the caller's keeps it alive until the gate is left).
    fn enter(heap: NonNull<HeapState>, own_ref: bool) -> Gate {
        let p = heap.as_ptr().cast_const();
        let nested = HOT
            .try_with(|hot| match hot.gate_index(p) {
                Some(i) => {
                    hot.gate_depths[i].set(hot.gate_depths[i].get() + 1);
                    true
                }
                None => false,
            })
            .unwrap_or(false);
        if nested {
            return Gate {
                heap,
                outermost: false,
                tracked: true,
                own_ref: false,
            };
        }
        // SAFETY: the caller keeps the heap alive until here.
        let h = unsafe { heap.as_ref() };
        // The gate holds a reference of the heap: the operation inside may drop the last
        // object, handle or attachment (the heap would be freed under the gate's release).
        if own_ref {
            h.refs.fetch_add(1, Relaxed);
        }
        gate_acquire(h);
        let tracked = HOT.try_with(|hot| hot.push_gate(p, 1)).unwrap_or(false);
        Gate {
            heap,
            outermost: true,
            tracked,
            own_ref,
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let p = self.heap.as_ptr().cast_const();
        if !self.outermost {
            let _ = HOT.try_with(|hot| {
                if let Some(i) = hot.gate_index(p) {
                    hot.gate_depths[i].set(hot.gate_depths[i].get() - 1);
                }
            });
            return;
        }
        if self.tracked {
            let _ = HOT.try_with(|hot| {
                if let Some(i) = hot.gate_index(p) {
                    hot.remove_gate(i);
                }
            });
        }
        // SAFETY: the gate's reference (or the caller's) keeps the heap alive until it is
        // given back right after.
        gate_release(unsafe { self.heap.as_ref() });
        if self.own_ref {
            // SAFETY: the reference `enter` took, not used after.
            unsafe { release_refs(self.heap, 1) };
        }
    }
}

/// Counts this thread into the heap's gate, waiting while the world is stopped. Sequentially
/// consistent with a collection's `stopping` store and its reads of `passive`: either the
/// collection sees this thread in, or this thread sees `stopping` and backs out.
fn gate_acquire(h: &HeapState) {
    loop {
        h.stw.passive.fetch_add(1, SeqCst);
        if h.stw.stopping.load(SeqCst) == 0 {
            return;
        }
        h.stw.passive.fetch_sub(1, SeqCst);
        let mut g = lock(&h.stw.lock);
        h.stw.cv.notify_all();
        while h.stw.stopping.load(SeqCst) != 0 {
            g = wait(&h.stw.cv, g);
        }
    }
}

fn gate_release(h: &HeapState) {
    h.stw.passive.fetch_sub(1, SeqCst);
    if h.stw.stopping.load(SeqCst) != 0 {
        let _g = lock(&h.stw.lock);
        h.stw.cv.notify_all();
    }
}

/// The gates [`leave_gates`] left, outermost first, with their depths.
type LeftGates = SmallVec<[(NonNull<HeapState>, u32); 2]>;

/// Leaves every gate this thread is inside (a thread that waits, parked or detached, or that
/// collects, holds none: a collection of any of those heaps would wait for it). Each entry's
/// `Gate` still holds its heap reference. Returns them for [`retake_gates`].
fn leave_gates() -> LeftGates {
    let left: LeftGates = HOT
        .try_with(|hot| {
            let n = hot.gates_len.get();
            hot.gates_len.set(0);
            (0..n)
                .filter_map(|i| {
                    NonNull::new(hot.gates[i].get().cast_mut())
                        .map(|h| (h, hot.gate_depths[i].get()))
                })
                .collect()
        })
        .unwrap_or_default();
    for &(h, _) in &left {
        // SAFETY: the entry's `Gate` holds a reference of the heap.
        gate_release(unsafe { h.as_ref() });
    }
    left
}

/// Re-enters, in order, the gates [`leave_gates`] left (waiting where the world is stopped).
fn retake_gates(left: LeftGates) {
    for (h, depth) in left {
        // SAFETY: as in `leave_gates`.
        gate_acquire(unsafe { h.as_ref() });
        let _ = HOT.try_with(|hot| hot.push_gate(h.as_ptr().cast_const(), depth));
    }
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

/// This thread's id, assigned on first use; `NO_OWNER` once its exit has begun (a thread
/// whose exit has begun must not take a new id: its state could not be cleaned up).
fn ensure_id() -> u32 {
    THREAD
        .try_with(|t| {
            let id = t.id.get();
            if id != 0 {
                return id;
            }
            let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Ids stay below `CANDIDATE_TAG`, which marks a collection's scratch in `owner`
            // (and `NO_OWNER` and `RESURRECTING` are above it).
            if id >= count::CANDIDATE_TAG || id == 0 {
                // Two billion threads: give up, as on a count overflow.
                std::process::abort();
            }
            t.id.set(id);
            // The first attachment: no detached section can be open yet.
            let _ = HOT.try_with(|hot| hot.id.set(id));
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
    match cached(heap) {
        Some((id, state)) => (id, Some(state)),
        None => attach_slow(heap),
    }
}

/// This thread's id and its state on `heap`, if the one-entry cache names `heap` (the thread
/// is attached there and using it); `None` otherwise, for [`attach`] to find out. No call:
/// the allocation fast path's look-up.
#[inline(always)]
pub(crate) fn cached(heap: NonNull<HeapState>) -> Option<(u32, NonNull<ThreadState>)> {
    HOT.try_with(|hot| {
        if hot.last_heap.get() == heap.as_ptr().cast_const() {
            NonNull::new(hot.last_state.get()).map(|state| (hot.id.get(), state))
        } else {
            None
        }
    })
    .ok()
    .flatten()
}

/// This thread's id and the address of its slab on the heap it is attached to now, as its
/// one-entry cache names them (`usize::MAX`, no slab's, when there is none): the owner's weak
/// upgrade compares the slab with its referent's (a slab belongs to one heap, so a match
/// names the heap too).
#[cfg(not(reap_loom))]
#[inline]
pub(crate) fn cached_slab() -> (u32, usize) {
    HOT.try_with(|hot| (hot.id.get(), hot.last_slab.get()))
        .unwrap_or((NO_OWNER, usize::MAX))
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
        Ok(Some(state)) => {
            // SAFETY: the attachment outlives this call.
            if unsafe { state.as_ref() }.status.load(Relaxed) != ATTACHED {
                // Inside `Heap::detached`: the caller takes the gate.
                return (NO_OWNER, None);
            }
            state
        }
        Ok(None) => {
            // SAFETY: the caller keeps the heap alive (it holds a handle, an object or a
            // reference of it).
            let h = unsafe { heap.as_ref() };
            let (slot, ptr) = ThreadSlot::new(ThreadState {
                id,
                // A collection an exiting thread found due is asked of a new thread too.
                pending: AtomicU8::new(if h.gc.scheduled.load(Relaxed) {
                    PENDING_GC
                } else {
                    0
                }),
                status: AtomicU8::new(ATTACHED),
                reserve: AtomicUsize::new(0),
                allocs: std::sync::atomic::AtomicI32::new(0),
                #[cfg(not(reap_loom))]
                slab: h.take_slab(),
            });
            // The attachment holds one reference of the heap until the thread exits, taken
            // under the table's lock with the insertion (`Heap::live_objects` reads both
            // under it).
            {
                let mut table = lock(&h.threads);
                h.refs.fetch_add(1, Relaxed);
                table.insert(id, slot);
            }
            let pushed = THREAD.try_with(|t| t.attached.borrow_mut().push((heap, ptr)));
            debug_assert!(pushed.is_ok());
            // A thread that attaches while a collection holds the world stopped waits for
            // the restart (the collection may have listed the threads before this one).
            if h.stw.stopping.load(SeqCst) != 0 {
                // SAFETY: just made; lives until the thread exits.
                park(heap, unsafe { ptr.as_ref() });
            }
            ptr
        }
        Err(_) => return (NO_OWNER, None),
    };
    // THREAD is alive, so its destructor (which clears the cache) has not run yet.
    (cache_attachment(heap, state), Some(state))
}

/// Makes `heap` and this thread's `state` there the one-entry cache's; returns the thread's
/// id as an owner.
fn cache_attachment(heap: NonNull<HeapState>, state: NonNull<ThreadState>) -> u32 {
    HOT.try_with(|hot| {
        hot.set_cache(heap.as_ptr().cast_const(), state.as_ptr());
        hot.id.get()
    })
    .unwrap_or(NO_OWNER)
}

/// The owner's safe point: merges what other threads queued to this thread on `heap`, if
/// anything (running the deaths of the objects whose count this takes to zero, after the
/// table's lock is released), and parks if a collection asks.
#[inline]
pub(crate) fn safepoint(heap: NonNull<HeapState>, state: &ThreadState) {
    if state.pending.load(Acquire) != 0 {
        safepoint_slow(heap, state);
    }
}

#[cold]
#[inline(never)]
fn safepoint_slow(heap: NonNull<HeapState>, state: &ThreadState) {
    // Not while this thread holds a world stopped (a `Trace` that allocates or calls
    // `safepoint`, against its contract, in the middle of a collection's snapshot): a merge
    // would disown a candidate whose `owner` is the snapshot's scratch, or run its death. The
    // queue waits for the next safe point after the restart (`PENDING_QUEUE` stays set).
    if state.pending.load(Acquire) & PENDING_QUEUE != 0 && !holds_a_stop() {
        drain(heap, state);
    }
    if state.pending.load(SeqCst) & PENDING_STOP != 0 {
        park(heap, state);
    }
}

/// Parks this (attached) thread while a collection holds the world stopped: marks it
/// `PARKED`, tells the collector, and waits until the restart marks it `ATTACHED` again. A
/// thread inside the heap's gate (a gated operation that reached a safe point) leaves it
/// meanwhile.
fn park(heap: NonNull<HeapState>, state: &ThreadState) {
    let gates = leave_gates();
    {
        let _others = OthersDetached::new(heap);
        // SAFETY: the thread's attachment keeps the heap alive.
        let h = unsafe { heap.as_ref() };
        let mut g = lock(&h.stw.lock);
        if h.stw.stopping.load(SeqCst) != 0 {
            state.status.store(PARKED, SeqCst);
            h.stw.cv.notify_all();
            while state.status.load(SeqCst) == PARKED {
                g = wait(&h.stw.cv, g);
            }
        }
    }
    retake_gates(gates);
}

/// While alive, this thread is detached from every heap it is attached to but one (it waits
/// for, or works on, that one's collection): a collection of another heap does not wait for
/// it meanwhile. Two threads attached to two heaps, each collecting one, would otherwise wait
/// for each other. Dropping it re-attaches them (waiting where the world is stopped) and
/// restores the thread's id and cache.
pub(crate) struct OthersDetached {
    others: SmallVec<[Attachment; 2]>,
    saved: (u32, *const HeapState, *mut ThreadState),
}

impl OthersDetached {
    pub(crate) fn new(keep: NonNull<HeapState>) -> OthersDetached {
        let others: SmallVec<[Attachment; 2]> = THREAD
            .try_with(|t| {
                t.attached
                    .borrow()
                    .iter()
                    .filter(|(h, s)| {
                        // SAFETY: the attachments outlive this call.
                        *h != keep && unsafe { s.as_ref() }.status.load(Relaxed) == ATTACHED
                    })
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        let saved = HOT
            .try_with(|hot| {
                let saved = (hot.id.get(), hot.last_heap.get(), hot.last_state.get());
                if !others.is_empty() {
                    hot.id.set(NO_OWNER);
                    hot.set_cache(std::ptr::null(), std::ptr::null_mut());
                }
                saved
            })
            .unwrap_or((NO_OWNER, std::ptr::null(), std::ptr::null_mut()));
        for &(h, s) in &others {
            // SAFETY: the attachment keeps the heap and its state alive.
            unsafe { leave_attached(h.as_ref(), s.as_ref()) };
        }
        OthersDetached { others, saved }
    }
}

impl Drop for OthersDetached {
    fn drop(&mut self) {
        if self.others.is_empty() {
            return;
        }
        for &(h, s) in &self.others {
            // SAFETY: as in `new`.
            reenter_attached(h, unsafe { s.as_ref() });
        }
        let (id, heap, state) = self.saved;
        let _ = HOT.try_with(|hot| {
            hot.id.set(id);
            hot.set_cache(heap, state);
        });
    }
}

/// Marks this thread detached from `heap` (a collection then takes it as stopped), telling a
/// collection that waits for it.
fn leave_attached(h: &HeapState, state: &ThreadState) {
    state.status.store(DETACHED, SeqCst);
    if h.stw.stopping.load(SeqCst) != 0 {
        let _g = lock(&h.stw.lock);
        h.stw.cv.notify_all();
    }
}

/// Marks this thread attached to `heap` again, parking first if the world is stopped.
fn reenter_attached(heap: NonNull<HeapState>, state: &ThreadState) {
    state.status.store(ATTACHED, SeqCst);
    // SAFETY: the thread's attachment keeps the heap alive.
    if unsafe { heap.as_ref() }.stw.stopping.load(SeqCst) != 0 {
        park(heap, state);
    }
}

/// Whether this thread holds some heap's world stopped (a collection, or a `gc` walk, between
/// [`stop_the_world`] and [`restart_the_world`]). The only user code that runs then is a
/// `Trace` impl, which must not call into the runtime; the calls that would wait for a world
/// to stop (this thread's own, or another heap's, whose threads may be parked here) check this
/// first: a collection collects nothing, a walk panics, `detached` runs its closure attached.
pub(crate) fn holds_a_stop() -> bool {
    HOT.try_with(|hot| hot.stops_held.get() != 0)
        .unwrap_or(false)
}

#[cold]
fn drain(heap: NonNull<HeapState>, state: &ThreadState) {
    // SAFETY: the thread's attachment keeps the heap alive.
    let h = unsafe { heap.as_ref() };
    let queue = {
        let mut table = lock(&h.threads);
        state.pending.fetch_and(!PENDING_QUEUE, Relaxed);
        match table.get_mut(&state.id) {
            Some(slot) => std::mem::take(&mut slot.queue),
            None => Vec::new(),
        }
    };
    merge_all(queue);
}

/// Merges queued objects (each entry holding one reference), running the deaths that result.
fn merge_all(queue: Vec<NonNull<SharedHeader>>) {
    for obj in queue {
        // Marked a possible root again before the entry's reference goes: the object was
        // marked when it was queued, but a collection may have run since the entry left its
        // slot (a death earlier in this list ran user code that collected, or parked), found
        // the object held by this very reference (a count the queue still holds looks like
        // one from outside) and cleared the mark. Never runs with the object's heap stopped
        // (a safe point, never on a thread that holds a stop; a thread's exit inside the gate;
        // or a decrement, never of a candidate: `count::dec_shared`).
        // SAFETY: the queue entry holds a reference, so the object is allocated.
        unsafe { obj.as_ref() }.note_drop();
        // SAFETY: as above.
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
/// merge queue; if the owner has exited, or its exit has begun, merges it here instead
/// (CPython's `_Py_brc_queue_object`). Runs the death if that merge reaches zero.
///
/// `owner` may also be a snapshot's tag (`count::CANDIDATE_TAG`): the collecting thread
/// dropped a reference to a candidate, whose count the decrement left alone. The reference is
/// then held back in the heap's `snapshot_drops`, which the collection drops once the world
/// runs again and every owner is put back.
///
/// # Safety
/// The caller's dropped reference now belongs to the queue entry: `obj` is allocated.
pub(crate) unsafe fn queue(obj: NonNull<SharedHeader>, owner: u32) {
    // SAFETY: the queued reference keeps the object, and so its heap, alive.
    let heap = unsafe { obj.as_ref() }.heap.get().cast::<HeapState>();
    // SAFETY: as above.
    let h = unsafe { heap.as_ref() };
    if count::is_candidate_tag(owner) {
        h.snapshot_drops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(SendPtr(obj));
        return;
    }
    let merge_here = {
        let mut table = lock(&h.threads);
        match table.get_mut(&owner) {
            Some(slot) if !slot.leaving => {
                slot.queue.push(obj);
                slot.state().pending.fetch_or(PENDING_QUEUE, Release);
                false
            }
            // The owner has exited, or is exiting: it touches no local count any more (it gave
            // up its id before it marked its slot leaving), and its last writes to the
            // object's local count happened before it marked the slot or left the table,
            // under this lock. Queued to it now, the object would wait for its leaving, which
            // may come after a collection this thread runs has drained every queue (each
            // death of a chain the owner made would then wait for the next drain).
            _ => true,
        }
    };
    if merge_here {
        merge_all(vec![obj]);
    }
}

/// Runs `death` now, or defers it if this thread is already `TRASHCAN_DEPTH` deaths deep; the
/// outermost death on the thread runs the deferred ones. Bounded stack for any chain, at any
/// point of the thread's life (its exit included: the trashcan has no destructor). The list
/// of deferred deaths is allocated by the first deferral and freed by the outermost death
/// once it has run them all, so a death that defers nothing (nearly all) costs two stores and
/// a load here.
pub(crate) fn with_trashcan(obj: NonNull<SharedHeader>, death: unsafe fn(NonNull<SharedHeader>)) {
    let Ok(depth) = HOT.try_with(|hot| hot.depth.get()) else {
        // Only in loom builds, whose thread-locals are all destroyed at thread exit (std's
        // `HOT` has no destructor): no trashcan there.
        // SAFETY: the caller hands over a dead object whose death has not begun.
        return unsafe { death(obj) };
    };
    if depth >= TRASHCAN_DEPTH {
        return defer(obj, death);
    }
    let _ = HOT.try_with(|hot| hot.depth.set(depth + 1));
    // SAFETY: the caller hands over a dead object whose death has not begun.
    unsafe { death(obj) };
    if depth == 0 {
        let list = HOT
            .try_with(|hot| hot.deferred.get())
            .unwrap_or(std::ptr::null_mut());
        if !list.is_null() {
            // SAFETY: the list is the one `defer` published, and this is the outermost death.
            unsafe { run_deferred(list, death) };
        }
    }
    let _ = HOT.try_with(|hot| hot.depth.set(depth));
}

/// Defers the death of `obj` to the outermost death running on this thread, into the list
/// published in `HOT.deferred` (made now if this is the first deferral). The outermost death
/// runs it with its own `death` (the only one there is, `heap::destroy`); this one is for a
/// thread-local that is gone (never, as the caller just read it; kept for totality).
#[cold]
#[inline(never)]
fn defer(obj: NonNull<SharedHeader>, death: unsafe fn(NonNull<SharedHeader>)) {
    let pushed = HOT.try_with(|hot| {
        let mut list = hot.deferred.get();
        if list.is_null() {
            list = Box::into_raw(Box::<Vec<NonNull<SharedHeader>>>::default());
            hot.deferred.set(list);
        }
        // SAFETY: the list is live while published (only the outermost death frees it, after
        // unpublishing it), and nothing else borrows it during this push.
        unsafe { (*list).push(obj) };
    });
    if pushed.is_err() {
        // SAFETY: the caller hands over a dead object whose death has not begun.
        unsafe { death(obj) };
    }
}

/// The outermost death runs the deferred deaths (which may defer more into the same list),
/// then unpublishes and frees the list.
///
/// # Safety
/// `list` is the published list (`defer`'s), the caller the outermost death on this thread.
#[cold]
#[inline(never)]
unsafe fn run_deferred(
    list: *mut Vec<NonNull<SharedHeader>>,
    death: unsafe fn(NonNull<SharedHeader>),
) {
    // SAFETY: the list stays published and live until the loop ends; each `pop` borrows it
    // for the call only, and the deaths it runs push through the same pointer.
    while let Some(o) = unsafe { (*list).pop() } {
        // SAFETY: deferred objects are dead, their deaths not begun.
        unsafe { death(o) };
    }
    let _ = HOT.try_with(|hot| hot.deferred.set(std::ptr::null_mut()));
    // SAFETY: made by `Box::into_raw` in `defer`, unpublished just above.
    drop(unsafe { Box::from_raw(list) });
}

/// Runs `f` detached from `heap` (after merging this thread's queue, and again after): a
/// collection takes the thread as stopped without waiting for it, and its handle operations
/// on the heap's objects meanwhile take the gate. On its way back the thread waits if the
/// world is stopped.
pub(crate) fn detached<R>(heap: NonNull<HeapState>, f: impl FnOnce() -> R) -> R {
    // A `Trace` impl, run while this thread holds some world stopped: detaching would make it
    // park for its own stop on the way back. Nobody waits for this thread meanwhile but
    // itself, so `f` runs attached, as `blocking` does.
    if holds_a_stop() {
        return f();
    }
    let (_, state) = attach(heap);
    // Already detached (a nested section), or exiting: no attachment to leave, but the gates
    // this thread is inside (a gated death's user code that detaches) are left for the
    // section, as below, so that no collection waits for it.
    let Some(state) = state else {
        return outside_gates(f);
    };
    // SAFETY: the attachment outlives this call.
    let s = unsafe { state.as_ref() };
    safepoint(heap, s);
    /// Restores the thread's attached state and its cache however `f` is left.
    struct Reattach<'a> {
        heap: NonNull<HeapState>,
        state: &'a ThreadState,
        saved: (u32, *const HeapState, *mut ThreadState),
        /// The gates this thread was inside (a gated death's user code that detaches): left
        /// for the section, so that no collection waits for it.
        gates: Option<LeftGates>,
    }
    impl Drop for Reattach<'_> {
        fn drop(&mut self) {
            reenter_attached(self.heap, self.state);
            if let Some(gates) = self.gates.take() {
                retake_gates(gates);
            }
            let (id, heap, state) = self.saved;
            let _ = HOT.try_with(|hot| {
                hot.id.set(id);
                hot.set_cache(heap, state);
            });
        }
    }
    let saved = HOT
        .try_with(|hot| {
            let saved = (hot.id.get(), hot.last_heap.get(), hot.last_state.get());
            // No owner fast path and no cached attachment while detached: every operation
            // finds the thread detached and takes the gate.
            hot.id.set(NO_OWNER);
            hot.set_cache(std::ptr::null(), std::ptr::null_mut());
            saved
        })
        .unwrap_or((NO_OWNER, std::ptr::null(), std::ptr::null_mut()));
    // SAFETY: the attachment keeps the heap alive.
    leave_attached(unsafe { heap.as_ref() }, s);
    let gates = Some(leave_gates());
    let guard = Reattach {
        heap,
        state: s,
        saved,
        gates,
    };
    let r = f();
    drop(guard);
    safepoint(heap, s);
    r
}

/// Runs `f` (a wait for a `sync::Mutex` another thread holds) detached from every heap this
/// thread is attached to and outside every gate it is inside: no collection waits for a thread
/// that waits for a lock, whose holder may be parked for that very collection. On its way back
/// the thread waits where the world is stopped. `f` touches no object.
///
/// A thread that holds some heap's world stopped (a `gc` walk whose `Trace` waits for a lock,
/// against the trait's contract) just waits: it would otherwise detach from that heap and, on
/// its way back, park for its own stop.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    if holds_a_stop() {
        return f();
    }
    // Outside the gates, then detached (a dangling pointer names none of this thread's
    // attachments, so none is kept); on the way back, however `f` is left, attached again
    // first, then inside the gates, as `detached` does.
    outside_gates(|| {
        let _detached = OthersDetached::new(NonNull::dangling());
        f()
    })
}

/// Why a collection could not stop the world.
#[derive(Debug)]
pub(crate) enum NotStopped {
    /// This thread is running a collection already (asked again from its user code).
    Nested,
    /// Another thread's collection runs.
    Busy,
    /// These threads (ids) stayed attached past the deadline without reaching a safe point.
    Timeout(Vec<u32>),
}

/// Claims `heap`'s collection for this thread (`me`, its state there): fails with `Nested` if
/// this thread has it already (a collection asked for from its own finalizers or callbacks),
/// with `Busy` if another thread has it. [`finish_collection`] gives it up.
pub(crate) fn claim_collection(
    heap: NonNull<HeapState>,
    me: &ThreadState,
    explicit: bool,
    exhaustive: bool,
) -> Result<(), NotStopped> {
    // SAFETY: the collecting thread's attachment keeps the heap alive.
    let h = unsafe { heap.as_ref() };
    let mut g = lock(&h.stw.lock);
    if g.collecting {
        if g.collector == (me as *const ThreadState).addr() {
            return Err(NotStopped::Nested);
        }
        // Served by one more collection of the running collector (`take_asked_again`).
        if explicit {
            g.asked_again = true;
            g.asked_exhaustive |= exhaustive;
        }
        return Err(NotStopped::Busy);
    }
    g.collecting = true;
    g.collector = (me as *const ThreadState).addr();
    // Every earlier request is served by this collection, whose snapshot comes after it (an
    // exhaustive one by an exhaustive collection only).
    g.asked_again = false;
    g.asked_exhaustive &= !exhaustive;
    Ok(())
}

/// Whether another thread asked for an explicit collection while this thread's (claimed)
/// ran, and if so whether an exhaustive one; the request is taken.
pub(crate) fn take_asked_again(heap: NonNull<HeapState>) -> Option<bool> {
    // SAFETY: the collecting thread's attachment keeps the heap alive.
    let h = unsafe { heap.as_ref() };
    let mut g = lock(&h.stw.lock);
    let exhaustive = std::mem::take(&mut g.asked_exhaustive);
    std::mem::take(&mut g.asked_again).then_some(exhaustive)
}

/// Stops the world of `heap` for the collection this thread (`me`) claimed: asks every other
/// attached thread to park at its next safe point, takes detached ones as they are, closes the
/// gate, and waits until every attached thread has parked and every gated operation has left,
/// or until `timeout` has passed (then restarts what it stopped and names the threads that
/// did not park).
pub(crate) fn stop_the_world(
    heap: NonNull<HeapState>,
    me: &ThreadState,
    timeout: std::time::Duration,
) -> Result<(), NotStopped> {
    // SAFETY: the collecting thread's attachment keeps the heap alive.
    let h = unsafe { heap.as_ref() };
    let mut g = lock(&h.stw.lock);
    // One stopper at a time: a collection's pause and a walk of the `gc` surface (which does
    // not claim the collection, so that it waits only for pauses, never for a collection's
    // user code) exclude each other. This thread parks meanwhile, as the other stopper asks.
    while h.stw.stopping.load(SeqCst) != 0 {
        drop(g);
        park(heap, me);
        g = lock(&h.stw.lock);
    }
    h.stw.stopping.store(1, SeqCst);
    for slot in lock(&h.threads).values() {
        let s = slot.state();
        if !std::ptr::eq(s, me) {
            s.pending.fetch_or(PENDING_STOP, SeqCst);
        }
    }
    let start = crate::shim::Instant::now();
    loop {
        let running: Vec<u32> = lock(&h.threads)
            .values()
            .map(|slot| slot.state())
            .filter(|s| !std::ptr::eq(*s, me) && s.status.load(SeqCst) == ATTACHED)
            .map(|s| s.id)
            .collect();
        if running.is_empty() && h.stw.passive.load(SeqCst) == 0 {
            let _ = HOT.try_with(|hot| hot.stops_held.set(hot.stops_held.get() + 1));
            return Ok(());
        }
        let waited = start.elapsed();
        if waited >= timeout {
            restart_locked(h);
            return Err(NotStopped::Timeout(running));
        }
        // Short waits: a thread that left the attached state just before `stopping` was set
        // notifies nobody, so the state is polled as well as waited for.
        let step = (timeout - waited).min(std::time::Duration::from_millis(1));
        g = wait_timeout(&h.stw.cv, g, step);
    }
}

/// Restarts the world a [`stop_the_world`] stopped: parked threads resume, the gate opens.
/// Returns when the world was released: the pause ends there. The unlock that follows wakes the
/// parked threads, and on a machine with few processors one of them may take this thread's
/// processor for milliseconds (the scheduler's wake-up preemption), while the world runs.
pub(crate) fn restart_the_world(heap: NonNull<HeapState>) -> crate::shim::Instant {
    let _ = HOT.try_with(|hot| hot.stops_held.set(hot.stops_held.get().saturating_sub(1)));
    // SAFETY: the collecting thread's attachment keeps the heap alive.
    let h = unsafe { heap.as_ref() };
    let _g = lock(&h.stw.lock);
    restart_locked(h);
    crate::shim::Instant::now()
}

fn restart_locked(h: &HeapState) {
    h.stw.stopping.store(0, SeqCst);
    for slot in lock(&h.threads).values() {
        let s = slot.state();
        s.pending.fetch_and(!PENDING_STOP, SeqCst);
        if s.status.load(SeqCst) == PARKED {
            s.status.store(ATTACHED, SeqCst);
        }
    }
    h.stw.cv.notify_all();
}

/// Ends the collection [`stop_the_world`] claimed, waking threads that wait for it.
pub(crate) fn finish_collection(heap: NonNull<HeapState>) {
    // SAFETY: as in `restart_the_world`.
    let h = unsafe { heap.as_ref() };
    let mut g = lock(&h.stw.lock);
    finish_locked(h, &mut g);
}

fn finish_locked(h: &HeapState, g: &mut StopState) {
    g.collecting = false;
    g.collector = 0;
    h.stw.cv.notify_all();
}

/// Runs `f` (a collection, on this attached thread) outside every gate this thread may be
/// inside (a collection asked for from a gated operation's user code).
pub(crate) fn outside_gates<R>(f: impl FnOnce() -> R) -> R {
    struct Retake(Option<LeftGates>);
    impl Drop for Retake {
        fn drop(&mut self) {
            if let Some(gates) = self.0.take() {
                retake_gates(gates);
            }
        }
    }
    let _retake = Retake(Some(leave_gates()));
    f()
}

impl Drop for ThreadData {
    /// Thread exit: the thread gives up its id (from now on it owns nothing, so its handles'
    /// drops go the shared way) and marks its slot in each heap's table leaving, then leaves
    /// each table, merging what was queued to it. Objects it still owns stay with its id
    /// until the heap's next collection merges them (its id is listed in `HeapState::left`);
    /// meanwhile whoever queues one finds the slot leaving or gone and merges it. The leaving
    /// happens detached and inside the gate, so not while a collection holds the world stopped.
    fn drop(&mut self) {
        let _ = HOT.try_with(|hot| {
            hot.id.set(NO_OWNER);
            hot.set_cache(std::ptr::null(), std::ptr::null_mut());
        });
        let id = self.id.get();
        let attached = std::mem::take(self.attached.get_mut());
        // Marked before anything else of the exit (a death it runs may drop handles to objects
        // this thread owns on another heap), under the lock that `queue` reads the mark under.
        for &(heap, _) in &attached {
            // SAFETY: the attachment holds a reference of the heap until released below.
            let h = unsafe { heap.as_ref() };
            if let Some(slot) = lock(&h.threads).get_mut(&id) {
                slot.leaving = true;
            }
        }
        for (heap, state) in attached {
            // SAFETY: the attachment holds a reference of the heap until released below.
            let h = unsafe { heap.as_ref() };
            // SAFETY: the state lives in the table until removed here.
            leave_attached(h, unsafe { state.as_ref() });
            // Inside the gate on the attachment's reference (see `release_leaving`).
            gated_on_own_ref(heap, || {
                // SAFETY: as above.
                let reserve = unsafe { state.as_ref() }.reserve.load(Relaxed);
                // SAFETY: as above.
                #[cfg(not(reap_loom))]
                let slab = unsafe { state.as_ref() }.slab;
                let mut table = lock(&h.threads);
                // The thread's count of tracked allocations not yet reported: reported now. If
                // that makes a collection due, every attached thread is asked for it (the
                // first to reach a safe point that may run user code collects).
                // SAFETY: as above.
                let unreported = unsafe { state.as_ref() }.allocs.swap(0, Relaxed);
                if h.gc.flush(unreported) {
                    h.gc.scheduled.store(true, Relaxed);
                    for other in table.values() {
                        other.state().pending.fetch_or(PENDING_GC, Relaxed);
                    }
                }
                let slot = table.remove(&id);
                if slot.is_some() {
                    // Objects this thread owns keep its id until a collection merges them
                    // (unless the list is full: then they stay unmerged).
                    let mut left = h.left.lock().unwrap_or_else(|e| e.into_inner());
                    if left.len() < crate::sync::state::LEFT_MAX {
                        left.push(id);
                    }
                }
                // The reserve goes back with the leaving, under the lock (the attachment's
                // reference keeps the heap alive), and the attachment's reference is marked a
                // leaving thread's until it goes back with its mark (`release_leaving`).
                h.refs.fetch_sub(reserve as u64, Release);
                h.refs.fetch_add(LEAVING_ONE, Relaxed);
                drop(table);
                if let Some(mut slot) = slot {
                    merge_all(std::mem::take(&mut slot.queue));
                }
                // The thread allocates no more (it has no id): its slab waits for another
                // thread. (The deaths just run freed their blocks into it the way other
                // threads do.)
                #[cfg(not(reap_loom))]
                h.give_back_slab(slab);
            });
            // The attachment's reference goes back to the heap.
            // SAFETY: this thread left the table above, and the reference is its own.
            unsafe { release_leaving(heap) };
        }
    }
}
