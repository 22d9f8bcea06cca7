//! The state of a Shared heap and of each thread attached to it, with what every other
//! Shared module needs of them: the heap's counted lifetime, allocation, an object's vtable and
//! heap, and reporting to the unraisable hook. Imports no other module of `sync` but `count`
//! and `gcstate` (which import none),
//! so that `thread`, `weak` and `heap` (the death path) sit above it without a circle: the
//! death routine reaches `thread` as a function pointer, [`HeapState::release`].
//!
//! **Lifetime.** The state is freed when its reference count `refs` reaches zero. `refs`
//! counts the `Heap` handles, the attached threads, the outermost entries into the heap's
//! gate (but for an exiting thread's, which borrows its attachment's), and one per live
//! object, so an object can always reach its heap (the heap of the thread that drops it last
//! may have been dropped long ago). Counting one per object with an atomic on every allocation and free would make
//! two threads that allocate contend on one cache line, so each attached thread keeps a
//! *reserve* of references it took in advance: an allocation takes one from the reserve
//! (refilling it 1024 at a time), a free gives one back (returning the surplus past 2048). So
//! at every moment `refs = handles + attached threads + leaving threads + gate entries +
//! Σ reserves + live objects`, and a heap with a live object is never freed. A thread that
//! exits returns its reserve as it leaves the thread table, under the table's lock, and marks
//! its attachment's reference as a leaving thread's in the same word (`LEAVING_ONE`, the high
//! bits of `refs`); it gives back both, the reference and the mark, with one subtraction once
//! it is done with the heap (after its last unlock: a reference is never given back while
//! this thread still touches the state). So `Heap::live_objects`, which reads `refs` once
//! under the table's lock, stays exact while threads exit.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::Arc;

use crate::object::header::{Flags, ObjectLayout};
use crate::object::shared::{Fixed, Gc, SharedHeader, GC_WEAKREF, SHARED_HEADER_SIZE};
#[cfg(not(reap_loom))]
use crate::object::shared_slab::{SharedSlab, SlabChunk};
use crate::object::vtable::{vtable_of_meta, vtable_of_shared, VTable};
use crate::shim::{
    self, lock, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Condvar, Mutex,
    Ordering::*, PtrSet, ThreadTable,
};
use crate::sync::count;
use crate::sync::gcstate::{GcState, FLUSH_EVERY};
use crate::sync::spin::WeakLock;
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
/// One under loom: the stripe is chosen by address, which differs between executions (see
/// `shim`'s module docs).
#[cfg(reap_loom)]
const WEAK_STRIPES: usize = 1;

/// The most thread ids [`HeapState::left`] holds between two collections (256 KiB of them; 4
/// in the unit tests, which exercise the limit).
pub(crate) const LEFT_MAX: usize = if cfg!(test) { 4 } else { 1 << 16 };

/// All of a Shared heap's state. Reached from every object's header.
pub(crate) struct HeapState {
    /// See the module docs: in its low bits ([`REFS_MASK`]) the references (handles +
    /// attached threads + leaving threads + gate entries + reserves + live objects); from bit
    /// [`LEAVING_SHIFT`] up ([`LEAVING_ONE`] each) how many of those references are leaving
    /// threads'.
    pub(crate) refs: AtomicU64,
    /// The `Heap` handles.
    pub(crate) handles: AtomicUsize,
    /// Thread id → the thread's state and merge queue.
    pub(crate) threads: Mutex<ThreadTable<ThreadSlot>>,
    /// The ids of the threads that left [`threads`](Self::threads) since the last
    /// collection's walk: objects they allocated or resurrected may still name them as
    /// owner, unmerged, and the walk merges them (`sync::collect`, orphans). A std lock even
    /// under loom: a leaf, held for one push (by an exiting thread, inside the gate) or one
    /// take (with the world stopped), never across a scheduling point. At most [`LEFT_MAX`]
    /// ids: the objects of a thread that found it full stay unmerged, their drops correct and
    /// only slower, so that a heap whose collections are disabled does not grow with every
    /// thread that exits.
    pub(crate) left: std::sync::Mutex<Vec<u32>>,
    /// References to candidates of a collection's snapshot that the collecting thread dropped
    /// while the snapshot ran (a `Trace` that, against its contract, drops handles; or the
    /// `Drop` of an object that died meanwhile): held, uncounted, until the world runs again
    /// (`sync::thread::queue` files them, `sync::collect` drops them). The candidates' `owner`
    /// is the snapshot's scratch then (`count::CANDIDATE_TAG`): their counts stay as the
    /// snapshot read them. A std lock even under loom: a leaf, held for one push or one take.
    pub(crate) snapshot_drops: std::sync::Mutex<Vec<SendPtr>>,
    /// The unraisable hook (cloned out before it is called: no lock held while it runs).
    pub(crate) hook: Mutex<Option<SharedUnraisableHook>>,
    /// Weak-reference locks, striped by referent address (CPython 3.13t's `_PyWeakref_LOCK`).
    /// An array in the state, not a boxed slice: a stripe is found with no load of the slice's
    /// address and no bounds check.
    weak_locks: [WeakLock; WEAK_STRIPES],
    /// The death routine (`sync::heap::release`), for the modules below `heap` that take a
    /// count to zero (a merge in `thread`).
    pub(crate) release: unsafe fn(NonNull<SharedHeader>),
    /// Every slab made for a thread on this heap, and those no thread owns now (their
    /// threads exited): an attaching thread takes an idle one before making a new one. The
    /// slabs and their chunks are freed with the heap. (Not in loom builds, where objects
    /// come from loom's allocator so that its leak check sees them.)
    #[cfg(not(reap_loom))]
    slabs: Mutex<SlabPool>,
    /// The stop-the-world handshake of Shared-mode collection (`sync::thread`).
    pub(crate) stw: StopTheWorld,
    /// The live tracked objects whose memory came from the global allocator (large ones, and
    /// those made with no slab at hand), which a collection cannot find by walking slabs.
    pub(crate) outside_slabs: Mutex<OutsideSlabs>,
    /// The `gc` surface's settings, callbacks and allocation count (`sync::gcstate`).
    pub(crate) gc: GcState,
}

/// The stop-the-world record of a heap (the protocol is `sync::thread`'s; see
/// docs/ARCHITECTURE.md, "Shared-mode cycle collection").
pub(crate) struct StopTheWorld {
    /// 1 while a collection stops the world or holds it stopped (written under `lock`; read
    /// by every thread that attaches, re-attaches or enters the gate).
    pub(crate) stopping: AtomicU8,
    /// Operations in flight by threads not attached to the heap (the gate: a collection waits
    /// for it to reach zero, and none starts while `stopping` is set).
    pub(crate) passive: AtomicUsize,
    /// Guards the transitions that block: parking, waiting for a restart, collecting.
    pub(crate) lock: Mutex<StopState>,
    /// Signalled when a thread parks or leaves the attached state while a stop is requested,
    /// and when the world restarts or a collection ends.
    pub(crate) cv: Condvar,
}

/// What [`StopTheWorld::lock`] guards.
#[derive(Default)]
pub(crate) struct StopState {
    /// A collection is running (between its first stop and its end).
    pub(crate) collecting: bool,
    /// The state of the thread running it (its address; 0 when none): a collection asked
    /// for from its own user code (a finalizer, a callback) returns 0 at once.
    pub(crate) collector: usize,
    /// Another thread asked for an explicit collection while this one ran (it was answered
    /// 0 at once): the collector runs one more before it ends (`sync::collect`).
    pub(crate) asked_again: bool,
    /// ... and one of those requests was for an exhaustive collection: the one more is.
    pub(crate) asked_exhaustive: bool,
}

/// See [`HeapState::outside_slabs`]: the headers of those objects.
#[derive(Default)]
pub(crate) struct OutsideSlabs {
    pub(crate) objects: PtrSet<SendPtr>,
}

/// A header pointer that may sit in a heap-wide table.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SendPtr(pub(crate) NonNull<SharedHeader>);

// SAFETY: only a name for an object of the heap; used by the collector while the world is
// stopped, or by the object's death.
unsafe impl Send for SendPtr {}

/// See [`HeapState::slabs`]. Each pointer is a `Box<SharedSlab>` turned raw, freed with the
/// heap.
/// One chunk of one of the heap's slabs, listed for a collection's walk
/// ([`HeapState::list_chunks`]). Empty in loom builds, which have no slabs.
#[derive(Clone, Copy)]
pub(crate) struct HeapChunk {
    #[cfg(not(reap_loom))]
    slab: NonNull<SharedSlab>,
    #[cfg(not(reap_loom))]
    chunk: SlabChunk,
}

#[cfg(not(reap_loom))]
#[derive(Default)]
struct SlabPool {
    all: Vec<NonNull<SharedSlab>>,
    idle: Vec<NonNull<SharedSlab>>,
}

// SAFETY: the pool only stores the pointers; slabs are `Send` (`object::shared_slab`).
#[cfg(not(reap_loom))]
unsafe impl Send for SlabPool {}

#[cfg(not(reap_loom))]
impl Drop for HeapState {
    fn drop(&mut self) {
        let pool = std::mem::take(&mut *lock(&self.slabs));
        for slab in pool.all {
            // SAFETY: made by `Box::into_raw` in `take_slab`; the heap is being freed, so no
            // thread owns or frees into it any more.
            drop(unsafe { Box::from_raw(slab.as_ptr()) });
        }
    }
}

impl HeapState {
    /// A new heap's state with one reference (its first handle's), leaked to a raw pointer:
    /// [`release_refs`] frees it.
    pub(crate) fn new_leaked(release: unsafe fn(NonNull<SharedHeader>)) -> NonNull<HeapState> {
        let state = Box::new(HeapState {
            refs: AtomicU64::new(1),
            handles: AtomicUsize::new(1),
            threads: Mutex::new(ThreadTable::new()),
            left: std::sync::Mutex::new(Vec::new()),
            snapshot_drops: std::sync::Mutex::new(Vec::new()),
            hook: Mutex::new(None),
            weak_locks: std::array::from_fn(|_| WeakLock::new()),
            release,
            #[cfg(not(reap_loom))]
            slabs: Mutex::new(SlabPool::default()),
            stw: StopTheWorld {
                stopping: AtomicU8::new(0),
                passive: AtomicUsize::new(0),
                lock: Mutex::new(StopState::default()),
                cv: Condvar::new(),
            },
            outside_slabs: Mutex::new(OutsideSlabs::default()),
            gc: GcState::new(),
        });
        NonNull::from(Box::leak(state))
    }

    /// A slab for a thread attaching to this heap: an idle one (its thread exited), or a new
    /// one. The caller owns it until it gives it back with [`give_back_slab`](Self::give_back_slab).
    #[cfg(not(reap_loom))]
    pub(crate) fn take_slab(&self) -> NonNull<SharedSlab> {
        let mut pool = lock(&self.slabs);
        if let Some(slab) = pool.idle.pop() {
            return slab;
        }
        // SAFETY: `Box::into_raw` never returns null.
        let slab = unsafe { NonNull::new_unchecked(Box::into_raw(Box::new(SharedSlab::new()))) };
        pool.all.push(slab);
        slab
    }

    /// Gives back the slab of a thread that is exiting: idle until another thread takes it.
    #[cfg(not(reap_loom))]
    pub(crate) fn give_back_slab(&self, slab: NonNull<SharedSlab>) {
        lock(&self.slabs).idle.push(slab);
    }

    /// Calls `f` with the header of every object of this heap: every block of every slab whose
    /// first word names this heap (a free block holds a link there, a weak-info block its
    /// vtable), and every tracked object from the global allocator. Runs under the slab pool's
    /// and the outside set's locks: `f` takes neither.
    ///
    /// # Safety
    /// The world is stopped: no thread allocates or frees on this heap during the call.
    pub(crate) unsafe fn for_each_object(&self, mut f: impl FnMut(NonNull<SharedHeader>)) {
        #[cfg(not(reap_loom))]
        {
            let me = (self as *const HeapState).cast::<()>();
            let pool = lock(&self.slabs);
            for slab in &pool.all {
                // SAFETY: the world is stopped (caller), so the slab's owner (parked, detached
                // or gone) does not use it, and its last writes happened before the stop; the
                // slab lives as long as the heap.
                unsafe {
                    slab.as_ref().for_each_block(|b| {
                        // The first word of a block ever handed out is initialised.
                        if b.cast::<*const ()>().read() == me {
                            f(b.cast());
                        }
                    })
                };
            }
        }
        for p in lock(&self.outside_slabs).objects.iter() {
            f(p.0);
        }
    }

    /// Pushes every chunk of every slab of this heap onto `out`, to be walked with
    /// [`walk_chunk`](Self::walk_chunk); returns how many blocks they hold (a bound on the
    /// slab objects a walk can meet). The list comes first, whole, so that a collection can
    /// trace the objects of a chunk as soon as it has walked it.
    ///
    /// # Safety
    /// The world is stopped, and the caller is the thread collecting this heap.
    pub(crate) unsafe fn list_chunks(&self, out: &mut Vec<HeapChunk>) -> usize {
        #[cfg(not(reap_loom))]
        {
            let pool = lock(&self.slabs);
            let mut blocks = 0;
            let mut listed = Vec::new();
            for &slab in &pool.all {
                // The world is stopped and this thread collects (caller): the slab's owner
                // (parked, detached or gone) does not use it, and its last writes happened
                // before the stop. The slab lives as long as the heap.
                // SAFETY: as said above.
                blocks += unsafe { slab.as_ref().list_chunks(&mut listed) };
                out.extend(listed.drain(..).map(|chunk| HeapChunk { slab, chunk }));
            }
            blocks
        }
        #[cfg(reap_loom)]
        {
            let _ = out;
            0
        }
    }

    /// Calls `block` with the header of every object of this heap in `chunk`
    /// (a block whose first word names this heap; a free block holds a link there, a
    /// weak-info block its vtable), in block order. No lock is held during the call: `block`
    /// may run user code (a `Trace`).
    ///
    /// # Safety
    /// `chunk` is from this thread's latest [`list_chunks`](Self::list_chunks) of this
    /// heap, in the same stop of the world; no other thread allocates or frees on this heap
    /// (the world is stopped), and this thread does not during the call (`block` may, between
    /// blocks: a block handed out or freed meanwhile is seen as it is when it is reached).
    pub(crate) unsafe fn walk_chunk(
        &self,
        chunk: HeapChunk,
        mut block: impl FnMut(NonNull<SharedHeader>),
    ) {
        #[cfg(not(reap_loom))]
        {
            let me = (self as *const HeapState).cast::<()>();
            // SAFETY: a slab of this heap (it lives as long as the heap), and a chunk of it
            // listed by this thread in this stop (caller).
            unsafe {
                chunk.slab.as_ref().walk_chunk(chunk.chunk, |b| {
                    // The first word of a block ever handed out is initialised.
                    if b.cast::<*const ()>().read() == me {
                        block(b.cast());
                    }
                })
            };
        }
        #[cfg(reap_loom)]
        let _ = (chunk, &mut block);
    }

    /// Pushes every tracked object of this heap from the global allocator onto `out`.
    pub(crate) fn outside_objects(&self, out: &mut Vec<NonNull<SharedHeader>>) {
        out.extend(lock(&self.outside_slabs).objects.iter().map(|p| p.0));
    }

    /// Forgets a tracked object from the global allocator that is being freed.
    pub(crate) fn forget_outside_slabs(&self, obj: NonNull<SharedHeader>) {
        lock(&self.outside_slabs).objects.remove(&SendPtr(obj));
    }

    /// The weak-reference lock of the object with this header.
    // One stripe under loom: the modulo is then 0, as meant.
    #[cfg_attr(reap_loom, allow(clippy::modulo_one))]
    pub(crate) fn weak_lock(&self, obj: NonNull<SharedHeader>) -> &WeakLock {
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
    let n = n as u64;
    // SAFETY: the caller's references keep the heap alive until this subtraction.
    let old = unsafe { heap.as_ref() }.refs.fetch_sub(n, Release);
    debug_assert!(old & REFS_MASK >= n, "reap: heap reference count underflow");
    if old == n {
        // SAFETY: that was the last reference.
        unsafe { free_state(heap) };
    }
}

/// One leaving thread in [`HeapState::refs`]' high bits: a thread that left the thread table
/// at exit and still holds its attachment's reference (counted in the low bits as well).
pub(crate) const LEAVING_ONE: u64 = 1 << LEAVING_SHIFT;
/// Where [`HeapState::refs`]' count of leaving threads starts.
pub(crate) const LEAVING_SHIFT: u32 = 48;
/// The references in [`HeapState::refs`] (its low bits; far more than any process can hold:
/// each is an object, a handle, a thread or a reserve slot).
pub(crate) const REFS_MASK: u64 = LEAVING_ONE - 1;

/// Gives back the attachment's reference of a thread that left the thread table at exit,
/// with its leaving mark, in one subtraction (so that `Heap::live_objects` never sees the one
/// without the other). The last reference frees the heap.
///
/// # Safety
/// The caller is that thread, after its last use of the heap; it owns that reference and
/// marked it leaving (`LEAVING_ONE`).
pub(crate) unsafe fn release_leaving(heap: NonNull<HeapState>) {
    // SAFETY: the caller's reference keeps the heap alive until the subtraction.
    let old = unsafe { heap.as_ref() }
        .refs
        .fetch_sub(1 + LEAVING_ONE, Release);
    debug_assert!(
        old >= LEAVING_ONE && old & REFS_MASK >= 1,
        "reap: heap reference count underflow"
    );
    if old == 1 + LEAVING_ONE {
        // SAFETY: that was the last reference.
        unsafe { free_state(heap) };
    }
}

/// Frees a heap's state once its last reference is gone.
///
/// # Safety
/// The caller released the last reference, and nothing uses the state afterwards.
unsafe fn free_state(heap: NonNull<HeapState>) {
    // An acquire load rather than a fence (as std's `Arc` under ThreadSanitizer, which does
    // not model fences): every other release of a reference happens before the free.
    // SAFETY: still allocated (this thread released the last reference, nobody frees it
    // but this thread).
    let _ = unsafe { heap.as_ref() }.refs.load(Acquire);
    // SAFETY: that was the last reference: no handle, attached thread or object is left,
    // so nothing else can reach the state. It was made by `Box::new` in `Heap::new`.
    let state = unsafe { Box::from_raw(heap.as_ptr()) };
    // The hook's captures are user code (as in `set_unraisable_hook`): dropped guarded,
    // after the state is gone. This may run on an exiting thread, where a panic aborts.
    let hook = lock(&state.hook).take();
    // So are the collection callbacks' captures.
    let callbacks =
        std::mem::take(&mut *state.gc.callbacks.lock().unwrap_or_else(|e| e.into_inner()));
    drop(state);
    if let Some(p) = drop_guarded(hook) {
        drop_payload(p);
    }
    for (_, cb) in callbacks {
        if let Some(p) = drop_guarded(cb) {
            drop_payload(p);
        }
    }
}

/// [`ThreadState::pending`]: another thread queued an object to this one.
pub(crate) const PENDING_QUEUE: u8 = 1;
/// [`ThreadState::pending`]: a collection asks this thread to park at its next safe point.
pub(crate) const PENDING_STOP: u8 = 2;
/// [`ThreadState::pending`]: this thread's allocations made an automatic collection due; its
/// next safe point that may run user code collects (`sync::gcstate`).
pub(crate) const PENDING_GC: u8 = 4;

/// [`ThreadState::status`]: running, and counted on to park at a safe point when asked.
pub(crate) const ATTACHED: u8 = 0;
/// [`ThreadState::status`]: inside `Heap::detached` or exiting: touches none of the heap's
/// objects but through the gate, so a collection takes it as stopped without waiting.
pub(crate) const DETACHED: u8 = 1;
/// [`ThreadState::status`]: parked for a collection; waits until the world restarts.
pub(crate) const PARKED: u8 = 2;

/// A thread's state on one heap, in the heap's thread table. Its queue is in the table's
/// entry (under the table's lock); the flag here lets the owner test it without the lock.
pub(crate) struct ThreadState {
    /// The thread's id (its key in the heap's table).
    pub(crate) id: u32,
    /// What the thread must do at its next safe point: [`PENDING_QUEUE`] (set when another
    /// thread queued an object to it, cleared when it drains) and [`PENDING_STOP`] (set and
    /// cleared by a collection).
    pub(crate) pending: AtomicU8,
    /// [`ATTACHED`], [`DETACHED`] or [`PARKED`]. Only the thread itself leaves `ATTACHED`
    /// or enters it from `DETACHED`; a collection's restart turns `PARKED` into `ATTACHED`.
    pub(crate) status: AtomicU8,
    /// Heap references this thread holds for objects it will allocate or has seen freed
    /// (`sync::heap`'s batched counting). Only the thread itself writes it.
    pub(crate) reserve: AtomicUsize,
    /// Tracked objects this thread allocated less those it freed since it last flushed the
    /// count into the heap's (`sync::gcstate`). Written by the thread itself, and reset by a
    /// collection while the thread is stopped. A std atomic even in loom builds: a heuristic.
    pub(crate) allocs: std::sync::atomic::AtomicI32,
    /// The thread's slab on this heap (taken from the heap's pool when the thread attached,
    /// given back when it exits); only this thread allocates from it.
    #[cfg(not(reap_loom))]
    pub(crate) slab: NonNull<SharedSlab>,
}

/// The entry of a thread in its heap's table.
pub(crate) struct ThreadSlot {
    /// Made by `Box::into_raw` and freed when the slot is dropped. A raw pointer, not a
    /// `Box`: the owner thread keeps a pointer to the state while the slot moves (into the
    /// table, and within it when the table grows), and moving a `Box` asserts it is unique.
    state: NonNull<ThreadState>,
    /// Objects other threads queued to this one: each holds one reference, merged by the
    /// owner at its next safe point.
    pub(crate) queue: Vec<NonNull<SharedHeader>>,
    /// Set (under the table's lock) when the thread's exit begins, after it gave up its id:
    /// from then on it touches no local count, and a thread that would queue an object to it
    /// merges the object itself ([`crate::sync::thread::queue`]). What was queued before is
    /// merged by the exiting thread when it leaves the table.
    pub(crate) leaving: bool,
}

// SAFETY: the queued pointers are objects of the heap, each kept allocated by the reference
// its entry holds; they are only used by the thread that merges them.
unsafe impl Send for ThreadSlot {}

impl ThreadSlot {
    /// A slot owning a new state; also returns the pointer to the state the thread keeps.
    pub(crate) fn new(state: ThreadState) -> (ThreadSlot, NonNull<ThreadState>) {
        // SAFETY: `Box::into_raw` never returns null.
        let ptr = unsafe { NonNull::new_unchecked(Box::into_raw(Box::new(state))) };
        (
            ThreadSlot {
                state: ptr,
                queue: Vec::new(),
                leaving: false,
            },
            ptr,
        )
    }

    /// The thread's state.
    pub(crate) fn state(&self) -> &ThreadState {
        // SAFETY: allocated until the slot is dropped.
        unsafe { self.state.as_ref() }
    }
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        // SAFETY: made by `Box::into_raw` in `new`, freed once here.
        drop(unsafe { Box::from_raw(self.state.as_ptr()) });
    }
}

/// Allocates the value `make` returns on `heap`, owned by thread `me` (or merged, if `me` is
/// `NO_OWNER`); `finalized` if it has a finalizer to run, `weakref` if it is a
/// `sync::WeakRefObj`. The value is made where it is written, so that a value built by the
/// caller's fields goes straight into the block (`weak::new_ref_obj`: built beforehand, its
/// copy from the stack was a store-forwarding stall, about a tenth of a weak-create round).
/// `make` runs no user code (the callers' closures only move or build plain fields).
///
/// # Safety
/// Something keeps `heap` alive for the call; `state` is thread `me`'s state on it; `weakref`
/// is true exactly when `T` is `sync::WeakRefObj`.
#[inline(always)]
pub(crate) unsafe fn alloc_on<T: Trace + Send + Sync>(
    heap: NonNull<HeapState>,
    me: u32,
    state: Option<NonNull<ThreadState>>,
    make: impl FnOnce() -> T,
    finalized: bool,
    weakref: bool,
) -> Gc<T> {
    let vt = vtable_of_shared::<T>();
    let layout = vt.shared_layout;
    #[cfg(not(reap_loom))]
    if let Some(s) = state {
        // SAFETY: the attachment outlives this call.
        if let Some(base) = take_fast(unsafe { s.as_ref() }, layout, T::needs_trace()) {
            // SAFETY: a fresh slab block of `T`'s class, with its heap reference taken from
            // the reserve.
            return unsafe { init_object(heap, me, base.as_ptr(), true, make, finalized, weakref) };
        }
    }
    let (base, in_slab) = alloc_memory(layout, state);
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
                    .fetch_add(RESERVE_BATCH as u64, Relaxed);
                r = RESERVE_BATCH;
            }
            s.reserve.store(r - 1, Relaxed);
        }
        // SAFETY: as above.
        None => _ = unsafe { heap.as_ref() }.refs.fetch_add(1, Relaxed),
    }
    // SAFETY: fresh memory of `T`'s layout, with the heap reference just taken.
    let gc = unsafe { init_object(heap, me, base, in_slab, make, finalized, weakref) };
    if T::needs_trace() {
        if !in_slab {
            // SAFETY: the caller keeps the heap alive; the header is the new object's.
            unsafe { register_outside_slabs(heap, gc.header_ptr()) };
        }
        // SAFETY: the caller keeps the heap alive, and the thread's attachment its state.
        unsafe { count_tracked(heap, state, 1) };
    }
    gc
}

/// [`alloc_on`]'s common case, all or nothing and with no call: a block of `layout`'s size
/// class from the head of this thread's slab free list, one heap reference from its reserve,
/// and (for a `tracked` object) one more allocation on its count short of a flush. `None`,
/// with nothing taken, when any of them would need more (a refill, a flush, a new chunk, no
/// size class): the caller then takes the whole path ([`alloc_on`]).
#[cfg(not(reap_loom))]
#[inline(always)]
pub(crate) fn take_fast(
    s: &ThreadState,
    layout: ObjectLayout,
    tracked: bool,
) -> Option<NonNull<u8>> {
    let c = layout.class? as usize;
    let r = s.reserve.load(Relaxed);
    let a = s.allocs.load(Relaxed) + 1;
    if r == 0 || (tracked && a == FLUSH_EVERY) {
        return None;
    }
    // SAFETY: the attachment (and so the slab, which this thread owns) outlives the call.
    let block = unsafe { s.slab.as_ref() }.pop(c)?;
    s.reserve.store(r - 1, Relaxed);
    if tracked {
        s.allocs.store(a, Relaxed);
    }
    Some(block)
}

/// Writes a new object's header and value (made by `make`, which runs no user code) into
/// `base` (the start of its allocation, from a slab if `in_slab`): owned by thread `me`
/// (merged if `NO_OWNER`), with one reference, held by the handle returned.
///
/// # Safety
/// `base` is fresh memory of `T`'s shared layout, unused by anything else; the caller took
/// the object's heap reference of `heap` (alive); `weakref` is true exactly when `T` is
/// `sync::WeakRefObj`.
#[inline(always)]
pub(crate) unsafe fn init_object<T: Trace + Send + Sync>(
    heap: NonNull<HeapState>,
    me: u32,
    base: *mut u8,
    in_slab: bool,
    make: impl FnOnce() -> T,
    finalized: bool,
    weakref: bool,
) -> Gc<T> {
    let vt = vtable_of_shared::<T>();
    let layout = vt.shared_layout;
    let (owner, counts, local) = count::initial(me, weakref);
    // SAFETY: the value offset is within the allocation and leaves room for the header in
    // front of it (ObjectLayout's rule).
    let value_ptr = unsafe { base.add(layout.value_offset) }.cast::<T>();
    // SAFETY: in bounds (as above), and suitably aligned: the header's alignment divides the
    // value offset's.
    let header = unsafe { value_ptr.cast::<u8>().sub(SHARED_HEADER_SIZE) }.cast::<SharedHeader>();
    let mut flags = if finalized {
        Flags::HAS_FINALIZER
    } else {
        Flags::empty()
    };
    if T::needs_trace() {
        flags |= Flags::TRACKED;
    }
    // SAFETY: freshly allocated, properly aligned memory of the object's layout.
    unsafe {
        header.write(SharedHeader {
            heap: Fixed::new(heap.cast()),
            counts: AtomicU32::new(counts),
            owner: AtomicU32::new(owner),
            meta: AtomicPtr::new((vt as *const VTable).cast_mut().cast()),
            local: AtomicU32::new(local),
            flags: AtomicU8::new(flags.bits()),
            in_slab: Fixed::new(in_slab),
            gc_bits: AtomicU8::new(if weakref { GC_WEAKREF } else { 0 }),
            possible: AtomicU8::new(0),
        });
        value_ptr.write(make());
        // A live object with one reference, given to the handle.
        Gc::from_value_ptr(NonNull::new_unchecked(value_ptr))
    }
}

/// Counts a tracked object allocated (`n` = 1) or freed (-1) for the automatic trigger: on
/// the thread's count, flushed into the heap's every [`FLUSH_EVERY`]; straight into the heap's
/// on a thread with no state there (one inside the gate). A flush that makes a collection due
/// sets the thread's [`PENDING_GC`]. The common case is a load and a store, inlined; the rest
/// is out of line.
///
/// # Safety
/// Something keeps `heap` alive for the call, and `state` (if any) is this thread's on it.
#[inline(always)]
pub(crate) unsafe fn count_tracked(
    heap: NonNull<HeapState>,
    state: Option<NonNull<ThreadState>>,
    n: i32,
) {
    if let Some(s) = state {
        // SAFETY: the attachment outlives the call (caller).
        let s = unsafe { s.as_ref() };
        let c = s.allocs.load(Relaxed) + n;
        if c != n * FLUSH_EVERY {
            s.allocs.store(c, Relaxed);
            return;
        }
    }
    // SAFETY: as above.
    unsafe { flush_tracked(heap, state, n) };
}

/// [`count_tracked`]'s flush: the thread's count plus `n` into the heap's (or `n` alone on a
/// thread with no state).
///
/// # Safety
/// As [`count_tracked`].
#[cold]
#[inline(never)]
unsafe fn flush_tracked(heap: NonNull<HeapState>, state: Option<NonNull<ThreadState>>, n: i32) {
    // SAFETY: kept alive by the caller.
    let gc = unsafe { &heap.as_ref().gc };
    match state {
        Some(s) => {
            // SAFETY: the attachment outlives the call (caller).
            let s = unsafe { s.as_ref() };
            let c = s.allocs.swap(0, Relaxed) + n;
            if gc.flush(c) {
                s.pending.fetch_or(PENDING_GC, Relaxed);
            }
        }
        None => _ = gc.flush(n),
    }
}

/// Records a new tracked object whose memory came from the global allocator (a collection
/// cannot find it by walking slabs).
///
/// # Safety
/// Something keeps `heap` alive for the call.
#[cold]
#[inline(never)]
unsafe fn register_outside_slabs(heap: NonNull<HeapState>, header: NonNull<SharedHeader>) {
    // SAFETY: the caller keeps the heap alive.
    lock(&unsafe { heap.as_ref() }.outside_slabs)
        .objects
        .insert(SendPtr(header));
}

/// Memory for an object of `layout` (or a weak-info block): from the thread's slab if it has
/// one on the heap and the object is small, else from the global allocator. Also says which.
/// Never null.
#[inline]
pub(crate) fn alloc_memory(
    layout: ObjectLayout,
    state: Option<NonNull<ThreadState>>,
) -> (*mut u8, bool) {
    #[cfg(not(reap_loom))]
    if let (Some(s), Some(c)) = (state, layout.class) {
        // SAFETY: the attachment (and so the slab, which this thread owns) outlives the call.
        let slab = unsafe { s.as_ref().slab.as_ref() };
        return (slab.alloc(c as usize).as_ptr(), true);
    }
    #[cfg(reap_loom)]
    let _ = state;
    // SAFETY: the layout has a non-zero size (it holds the header).
    let base = unsafe { shim::alloc(layout.layout) };
    if base.is_null() {
        std::alloc::handle_alloc_error(layout.layout);
    }
    (base, false)
}

/// Frees the memory of a dead object whose allocation starts at `base` with `layout` and came
/// from a slab if `in_slab` (its header's flag, read by the caller: no reference into the
/// block may live across this call), on a thread whose state on the object's heap is `state`.
///
/// # Safety
/// The object is dead, its value dropped, and nothing refers to it; its heap is alive.
pub(crate) unsafe fn free_memory(
    in_slab: bool,
    base: *mut u8,
    layout: ObjectLayout,
    state: Option<NonNull<ThreadState>>,
) {
    #[cfg(not(reap_loom))]
    if let (true, Some(c)) = (in_slab, layout.class) {
        // SAFETY: the attachment outlives the call, and the thread's slab with it.
        let mine = state.map(|s| unsafe { s.as_ref().slab.as_ref() });
        // SAFETY: the block came from a slab of this heap for this class (`alloc_memory`),
        // and is not used again; the heap, and so its slabs, is alive.
        unsafe { SharedSlab::dealloc(NonNull::new_unchecked(base), c as usize, mine) };
        return;
    }
    #[cfg(reap_loom)]
    let _ = (in_slab, state);
    // SAFETY: from `shim::alloc` with this layout (`alloc_memory`), not used again.
    unsafe { shim::dealloc(base, layout.layout) };
}

/// The object's vtable, through its weak-info block if it has one.
pub(crate) fn vtable(h: &SharedHeader) -> &'static VTable {
    // SAFETY: `meta` of a header `h` keeps allocated, loaded with Acquire so that a tagged
    // word's weak-info block (`sync::weak::WeakInfo` is `repr(C)`, `vtable` first) is seen
    // initialised (header invariant).
    unsafe { vtable_of_meta(h.meta.load(Acquire)) }
}

/// The heap of an object.
pub(crate) fn heap_of(h: &SharedHeader) -> NonNull<HeapState> {
    h.heap.get().cast()
}

/// Gives back the heap reference of an object just freed on this thread: to the thread's
/// reserve (returning the surplus to the heap), or to the heap if the thread has no state.
///
/// # Safety
/// The caller owns the freed object's reference of `heap` and does not use the heap after
/// (if `state` is `None`, this may free it); `state` is this thread's state on `heap`.
#[inline]
pub(crate) unsafe fn give_back_object_ref(
    heap: NonNull<HeapState>,
    state: Option<NonNull<ThreadState>>,
) {
    // SAFETY: as this function's (caller).
    unsafe { give_back_object_refs(heap, state, 1) }
}

/// [`give_back_object_ref`] of `n` objects at once (one, or a collection's garbage): the
/// reserve keeps at most `2 * RESERVE_BATCH`, and goes back to `RESERVE_BATCH` when it passes.
///
/// # Safety
/// As [`give_back_object_ref`], for `n` references.
#[inline]
pub(crate) unsafe fn give_back_object_refs(
    heap: NonNull<HeapState>,
    state: Option<NonNull<ThreadState>>,
    n: usize,
) {
    match state {
        Some(s) => {
            // SAFETY: the attachment outlives this call.
            let s = unsafe { s.as_ref() };
            let r = s.reserve.load(Relaxed) + n;
            if r > 2 * RESERVE_BATCH {
                s.reserve.store(RESERVE_BATCH, Relaxed);
                // SAFETY: the thread's reserve held these references; the attachment keeps
                // one more, so this never frees the heap.
                unsafe { release_refs(heap, r - RESERVE_BATCH) };
            } else {
                s.reserve.store(r, Relaxed);
            }
        }
        // SAFETY: the objects' references, given back; the heap is not used after.
        None => unsafe { release_refs(heap, n) },
    }
}
