//! Shared-mode cycle collection (SEMANTICS 2, in CPython 3.13t's order,
//! `Python/gc_free_threading.c`): trial deletion over every tracked object of the heap while
//! the world is stopped, user code only once it runs again.
//!
//! One collection, phase by phase (each a function below):
//!
//! 1. **Stop the world** ([`thread::stop_the_world`]): attached threads park at their next safe
//!    point, detached ones are taken as they are, the gate closes to the rest.
//! 2. **Merge every queue** ([`merge_queues`]): afterwards no count is split by a pending queue
//!    entry. Objects whose count this takes to zero die after the restart.
//! 3. **Snapshot** ([`Snapshot::take`]): every possible root (an object a reference to which
//!    went without its death since the last collection: `SharedHeader::note_drop`) with a count
//!    above zero and a live value is a candidate, and so is every such object a candidate holds
//!    a handle to; each is traced once, its edges to other candidates recorded,
//!    and the guards of the locks its handles sit behind kept until the verdict, so that the
//!    threads that still run (detached ones, those that never attached) cannot move a handle
//!    between the snapshot and the verdict. A candidate's `owner` holds its index meanwhile
//!    ([`Candidates`]); a reference the collecting thread drops to one (a `Trace` breaking its
//!    contract, a `Drop` run by a death) is held back, its count unchanged, until the restart
//!    ([`drop_held_back`]).
//! 4. **Trial deletion** on the snapshot ([`Snapshot::unreachable`]): what only
//!    other candidates reach is garbage. The guards are released.
//! 5. **Hold the garbage** ([`hold`], in step 4's last pass): one reference each, merged, so
//!    nothing of it dies on the refcount path before reclaim, and every count change on it is
//!    atomic.
//! 6. **Weak references** to garbage cleared, garbage weak references unlisted (their
//!    callbacks never run); the other callbacks are taken to run later.
//! 7. **Restart the world**; then, on the collecting thread only: the deaths from step 2, the
//!    references held back in step 3, the callbacks, the finalizers (each once).
//! 8. If a finalizer ran, **stop the world again** for the resurrection check: trial deletion
//!    over what is left of the garbage (its counts less the collector's hold); what something
//!    outside reaches now survives. Every remaining garbage object is marked `VALUE_DROPPED`
//!    before the restart, so a `Drop` that reaches one panics instead of reading a dropped
//!    value, on any thread.
//! 9. **Reclaim**, world running, on the collecting thread: weak references made since are
//!    cleared, values dropped, the holds given back; an object whose count then reaches zero
//!    is freed, one a `Drop` kept a handle to lives on as a zombie until that handle goes.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::time::Duration;

use crate::object::header::Flags;
use crate::object::shared::{SharedHeader, GC_GARBAGE, GC_RECLAIM, GC_WEAKREF};
use crate::shim::Ordering::Relaxed;
use crate::shim::{lock, Instant};
use crate::sync::count;
use crate::sync::gcstate::{Candidate, CollectCallback, CollectInfo, CollectPhase, Scratch};
use crate::sync::heap::{account_frees, dec_ref, give_back_hold, Heap};
use crate::sync::state::{vtable, HeapState, SendPtr, ThreadState};
use crate::sync::thread::{self, NotStopped};
use crate::sync::weak;
use crate::trace::{HeldGuard, Tracer};
use crate::UnraisableKind;

/// How long [`Heap::collect`] keeps trying to stop the world before it gives up.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A Shared-mode collection could not stop the world: some attached threads did not reach a
/// safe point in time. A thread that blocks (joins, waits on a channel or a lock, sleeps) while
/// attached must do so inside [`Heap::detached`]; one that computes for long without allocating
/// calls [`Heap::safepoint`] now and then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotStoppedError {
    /// How many attached threads had not parked when the collection gave up.
    pub threads: usize,
    /// How long it tried.
    pub waited: Duration,
}

impl std::fmt::Display for NotStoppedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reap: a collection could not stop the world: {} attached thread(s) did not reach \
             a safe point within {:?} (a thread that blocks while attached to a Shared heap \
             must do it inside Heap::detached; a long computation that does not allocate calls \
             Heap::safepoint now and then)",
            self.threads, self.waited
        )
    }
}

impl std::error::Error for NotStoppedError {}

impl Heap {
    /// Collects the heap's unreachable cycles (SEMANTICS 2), stopping every attached thread
    /// at its next safe point (see the [module docs](crate::sync)); returns how many objects
    /// it freed. It examines the possible roots and what they reach (SEMANTICS 8.5), which
    /// finds every cycle whose last reference from outside was dropped; garbage made without a
    /// dropped reference waits for an examination of the whole heap
    /// ([`Heap::collect_exhaustive`]). If a collection is running already (on another thread, or this one's, whose
    /// finalizer asks), returns 0 at once.
    ///
    /// # Panics
    /// If the world cannot be stopped within [`DEFAULT_STOP_TIMEOUT`] (an attached thread is
    /// blocked outside [`Heap::detached`]): see [`Heap::try_collect`], which reports it as an
    /// error instead.
    ///
    /// ```
    /// use reap::sync::{Gc, Heap};
    /// use reap::Trace;
    /// use std::sync::Mutex;
    ///
    /// #[derive(Trace)]
    /// struct Node {
    ///     next: Mutex<Option<Gc<Node>>>,
    /// }
    ///
    /// let heap = Heap::new();
    /// let a = heap.alloc(Node { next: Mutex::new(None) });
    /// let b = heap.alloc(Node { next: Mutex::new(Some(a.clone())) });
    /// *a.next.lock().unwrap() = Some(b.clone());
    /// drop((a, b));
    /// assert_eq!(heap.collect(), 2);
    /// assert_eq!(heap.live_objects(), 0);
    /// ```
    pub fn collect(&self) -> usize {
        match self.try_collect(DEFAULT_STOP_TIMEOUT) {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Heap::collect`], giving up (and freeing nothing) if the world cannot be stopped
    /// within `timeout`. A thread inside [`Heap::detached`], or exiting, collects nothing
    /// (`Ok(0)`), as does a `Trace` impl that calls it (against [`Trace`](crate::Trace)'s
    /// contract) while its thread holds a world stopped.
    pub fn try_collect(&self, timeout: Duration) -> Result<usize, NotStoppedError> {
        self.collect_on_this_thread(2, timeout, Scope::Discover)
    }

    /// [`Heap::collect`] examining every tracked object of the heap, not only the possible
    /// roots and what they reach (SEMANTICS 8.5): it also finds garbage that no dropped
    /// reference announced, such as a cycle closed by moving a handle into a traced place
    /// through a path that holds no handle to its holder (an `Arc` shared with code outside the
    /// heap), or one an earlier collection kept because a `Trace` hid an edge. A collection
    /// examines the whole heap on its own too when the tracked objects the last one left alive
    /// exceed twice the fewest any collection left since the last such examination, plus
    /// 2,000 (unless `threshold2` is 0: [`Heap::set_threshold`]); [`Heap::shutdown`] uses this
    /// one.
    ///
    /// ```
    /// use reap::sync::{Gc, Heap};
    /// use reap::{Trace, Tracer};
    /// use std::sync::{Arc, Mutex};
    ///
    /// // A node whose slot it shares with whoever else holds the `Arc`.
    /// struct Node {
    ///     slot: Arc<Mutex<Option<Gc<Node>>>>,
    /// }
    ///
    /// // SAFETY: visits the handle in its slot, once, through the lock; nothing else.
    /// unsafe impl Trace for Node {
    ///     fn trace(&self, tracer: &mut Tracer<'_>) {
    ///         self.slot.trace(tracer);
    ///     }
    /// }
    ///
    /// let heap = Heap::new();
    /// let slot = Arc::new(Mutex::new(None));
    /// let node = heap.alloc(Node { slot: slot.clone() });
    /// // The only handle moved into the node's own slot: no reference was dropped.
    /// *slot.lock().unwrap() = Some(node);
    /// drop(slot);
    /// assert_eq!(heap.collect(), 0, "no possible root leads to it");
    /// assert_eq!(heap.collect_exhaustive(), 1);
    /// ```
    ///
    /// # Panics
    /// As [`Heap::collect`].
    pub fn collect_exhaustive(&self) -> usize {
        match self.collect_on_this_thread(2, DEFAULT_STOP_TIMEOUT, Scope::Everything) {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        }
    }

    /// The automatic collection a safe point runs when this thread's allocations made one
    /// due (`sync::gcstate`). A world that cannot be stopped is not an error here: the next
    /// due collection tries again.
    pub(crate) fn collect_automatically(&self) {
        // SAFETY: this handle keeps the heap alive.
        if unsafe { self.state.as_ref() }.gc.is_due() {
            let _ = self.collect_on_this_thread(0, DEFAULT_STOP_TIMEOUT, Scope::Discover);
        }
    }

    /// A collection run by this thread, reported to the callbacks as of `generation`.
    fn collect_on_this_thread(
        &self,
        generation: usize,
        timeout: Duration,
        scope: Scope,
    ) -> Result<usize, NotStoppedError> {
        let heap = self.state;
        // Asked by a `Trace` impl while this thread holds a world stopped (this heap's, in a
        // collection or a walk, or another's): it cannot stop one, which would wait for itself
        // (or for threads parked at its own stop). Nothing, as a nested collection.
        if thread::holds_a_stop() {
            return Ok(0);
        }
        let (me, state) = thread::attach(heap);
        let Some(state) = state else { return Ok(0) };
        // SAFETY: the attachment outlives this call.
        let s = unsafe { state.as_ref() };
        thread::safepoint(heap, s);
        thread::outside_gates(|| collect(heap, me, s, timeout, generation, scope))
    }
}

/// Which objects a collection takes as candidates to begin with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scope {
    /// The possible roots (SEMANTICS 8.5), or every tracked object when
    /// `GcState::exhaustive_due` says so.
    Discover,
    /// Every tracked object.
    Everything,
}

/// Ends a collection however it is left: gives up the claim.
struct Finish(NonNull<HeapState>);

impl Drop for Finish {
    fn drop(&mut self) {
        thread::finish_collection(self.0);
    }
}

/// One collection by the attached thread `me` (state `s`) of `heap`, with the callbacks
/// around it.
fn collect(
    heap: NonNull<HeapState>,
    me: u32,
    s: &ThreadState,
    timeout: Duration,
    generation: usize,
    scope: Scope,
) -> Result<usize, NotStoppedError> {
    match thread::claim_collection(heap, s, generation != 0, scope == Scope::Everything) {
        Ok(()) => {}
        // Another thread collects (CPython's answer to a second collection: 0 at once, never a
        // wait, which could deadlock with user code the running collection waits for; an
        // explicit request is recorded, see below), or this thread does already (asked from
        // its finalizers or callbacks).
        Err(_) => return Ok(0),
    }
    let _finish = Finish(heap);
    let result = collect_reported(heap, me, s, timeout, generation, scope);
    // Other threads asked for a collection while this one ran, and were answered 0 at once:
    // one more, which sees what they dropped before asking, so that threads that collect
    // often do not let garbage pile up between the collections that get to run (SEMANTICS
    // 8.5). One at most, so that this call ends; requests made during it are answered by
    // nothing more, as CPython answers every second request.
    match result {
        Ok(n) => match thread::take_asked_again(heap) {
            None => Ok(n),
            Some(exhaustive) => {
                // Not this caller's request: given up sooner if the world does not stop (a thread
                // that asked may have gone on to block while attached, which is the program's
                // error, but should not cost this caller a full timeout).
                let wait = timeout.min(ASKED_AGAIN_TIMEOUT);
                // Counted as this call's generation, its count added to this call's (which an
                // automatic collection returns to nobody: the statistics have it); exhaustive if
                // one of the requests was.
                let scope = if exhaustive {
                    Scope::Everything
                } else {
                    Scope::Discover
                };
                let more = collect_reported(heap, me, s, wait, generation, scope);
                Ok(n + more.unwrap_or(0))
            }
        },
        Err(e) => Err(e),
    }
}

/// How long the collection run for another thread's request (see [`collect`]) tries to stop
/// the world before it gives up.
const ASKED_AGAIN_TIMEOUT: Duration = Duration::from_millis(100);

/// One collection of a claimed heap, with the callbacks around it and its statistics.
fn collect_reported(
    heap: NonNull<HeapState>,
    me: u32,
    s: &ThreadState,
    timeout: Duration,
    generation: usize,
    scope: Scope,
) -> Result<usize, NotStoppedError> {
    // SAFETY: the collecting thread's attachment keeps the heap alive.
    let h = unsafe { heap.as_ref() };
    let began = Instant::now();
    let mut info = CollectInfo {
        generation,
        ..CollectInfo::default()
    };
    run_callbacks(h, CollectPhase::Start, &info);
    let result = collect_claimed(heap, me, s, timeout, &mut info, scope);
    let collected = *result.as_ref().unwrap_or(&0);
    if result.is_ok() {
        // A collection that could not stop the world did not run: not counted (its
        // callbacks still see it stop, with nothing collected).
        h.gc.collections[generation].fetch_add(1, Relaxed);
        h.gc.collected[generation].fetch_add(collected as u64, Relaxed);
    }
    info.collected = collected;
    info.duration = began.elapsed();
    run_callbacks(h, CollectPhase::Stop, &info);
    result
}

/// Runs the collection callbacks, each under a panic guard; a panic goes to the hook.
fn run_callbacks(h: &HeapState, phase: CollectPhase, info: &CollectInfo) {
    let callbacks: Vec<CollectCallback> =
        h.gc.callbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
    for cb in callbacks {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| cb(phase, info))) {
            h.report_panic(UnraisableKind::CollectionCallback, "collection callback", p);
        }
        // If the callback removed itself, this is its last owner: its captures' `Drop`s are
        // user code.
        if let Some(p) = crate::unraisable::drop_guarded(cb) {
            h.report_panic(UnraisableKind::Drop, "collection callback", p);
        }
    }
}

/// Runs `f` with `heap`'s world stopped, on this attached thread (the `gc` surface's walks of
/// every object: `what` names the caller in panics). Does not claim the collection: a
/// collection running on another thread is waited for only while it holds the world stopped
/// (this thread parks meanwhile), never while it runs user code, which may be waiting for this
/// thread; the objects of its garbage are marked (`SharedHeader::is_garbage`) for the walk to
/// skip. From this thread's own collection's user code it works the same way.
///
/// # Panics
/// On a thread inside `Heap::detached` (which must not wait for the world), on a thread that
/// holds a world stopped already (a `Trace` impl calling the `gc` surface during a collection
/// or a walk: it would wait for its own stop), or if the world cannot be stopped within
/// [`DEFAULT_STOP_TIMEOUT`].
pub(crate) fn with_world_stopped<R>(
    heap: NonNull<HeapState>,
    what: &str,
    f: impl FnOnce(&HeapState) -> R,
) -> R {
    if thread::holds_a_stop() {
        panic!(
            "reap: Heap::{what} called while this thread holds a heap's world stopped \
             (from a Trace impl, during a collection or a walk of the gc surface; tracing \
             must not call into the runtime)"
        )
    }
    let (_, state) = thread::attach(heap);
    let Some(state) = state else {
        panic!("reap: Heap::{what} called on a thread inside Heap::detached (or exiting)")
    };
    // SAFETY: the attachment outlives this call.
    let s = unsafe { state.as_ref() };
    thread::outside_gates(|| {
        thread::safepoint(heap, s);
        // Detached from the other heaps while it waits for and holds this one's world.
        let others = thread::OthersDetached::new(heap);
        if let Err(NotStopped::Timeout(ids)) = stop(heap, s, DEFAULT_STOP_TIMEOUT) {
            panic!(
                "{}",
                NotStoppedError {
                    threads: ids.len(),
                    waited: DEFAULT_STOP_TIMEOUT
                }
            );
        }
        /// Restarts the world however `f` is left.
        struct Restart(NonNull<HeapState>);
        impl Drop for Restart {
            fn drop(&mut self) {
                thread::restart_the_world(self.0);
            }
        }
        let restart = Restart(heap);
        // SAFETY: the attachment keeps the heap alive.
        let r = f(unsafe { heap.as_ref() });
        drop(restart);
        drop(others);
        r
    })
}

/// Stops the world, and how long that took (the time to safe point).
fn timed_stop(
    heap: NonNull<HeapState>,
    s: &ThreadState,
    timeout: Duration,
) -> (Result<(), NotStopped>, Instant, Duration) {
    let asked = Instant::now();
    let r = stop(heap, s, timeout);
    (r, asked, asked.elapsed())
}

/// The collection proper, once claimed; fills in `info`'s pause times.
fn collect_claimed(
    heap: NonNull<HeapState>,
    me: u32,
    s: &ThreadState,
    timeout: Duration,
    info: &mut CollectInfo,
    scope: Scope,
) -> Result<usize, NotStoppedError> {
    // Detached from the other heaps this thread uses while it stops and holds this one.
    let others = thread::OthersDetached::new(heap);
    let (stopped, asked, to_safepoint) = timed_stop(heap, s, timeout);
    if let Err(NotStopped::Timeout(ids)) = stopped {
        return Err(NotStoppedError {
            threads: ids.len(),
            waited: timeout,
        });
    }
    info.time_to_safepoint = to_safepoint;
    // SAFETY: the collecting thread's attachment keeps the heap alive.
    let h = unsafe { heap.as_ref() };

    // Pause 1.
    let dead = merge_queues(h);
    h.gc.young.store(0, Relaxed);
    h.gc.scheduled.store(false, Relaxed);
    let everything = scope == Scope::Everything || h.gc.exhaustive_due();
    merge_orphans(heap);
    // The holds, the marks, and whether the weak phase and the finalizers have anything to do
    // (some garbage is or has a weak reference; some has a finalizer not run), taken for each
    // garbage object in the verdict's last pass over the candidates, which puts their owners
    // back ([`hold`]): a separate pass over memory the snapshot has evicted from the caches
    // costs about as much. The garbage is poisoned in the same pass, on the guess that no
    // finalizer is owed (the common case, where this is the final garbage; [`poison`]'s
    // comment says why it must be done before any value is dropped). If some finalizer is
    // owed after all, the poison is taken off again before the world restarts
    // ([`unpoison`]).
    let (mut weakly, mut finalizers) = (false, false);
    let mut on_garbage = |o: &SharedHeader| {
        let (w, f) = hold(o);
        weakly |= w;
        finalizers |= f;
    };
    let found = find_garbage(heap, 0, None, everything, &mut on_garbage);
    let (garbage, population) = match found {
        Ok(g) => g,
        Err(p) => {
            let released = thread::restart_the_world(heap);
            info.first_pause = released.duration_since(asked);
            settle_dead(dead);
            drop_held_back(h);
            h.report_panic(
                UnraisableKind::Drop,
                "reap::Trace (collection abandoned)",
                p,
            );
            return Ok(0);
        }
    };
    if finalizers {
        // The finalizers run on values whole, and what they resurrect must not stay poisoned:
        // pause 2 poisons what is still garbage.
        unpoison(&garbage);
    }
    // The garbage is exactly what carries `GC_GARBAGE` now (set above; the bit is only
    // written with the world stopped or by this thread).
    // SAFETY: a listed weak reference is allocated.
    let is_garbage = |o: NonNull<SharedHeader>| unsafe { o.as_ref() }.is_garbage();
    let mut calls = Vec::new();
    for &g in garbage.iter().filter(|_| weakly) {
        // SAFETY: held, so allocated; the world is stopped.
        unsafe { weak::clear_for_collection(g, me, &is_garbage, &mut calls) };
        // SAFETY: as above.
        if unsafe { g.as_ref() }.is_weakref() {
            // A garbage weak reference: unlisted from its referent, so its callback never
            // runs (SEMANTICS 2.4).
            // SAFETY: a held weak-reference object whose value is not dropped.
            unsafe { weak::unlist(SharedHeader::value_ptr(g)) };
        }
    }
    let released = thread::restart_the_world(heap);
    info.first_pause = released.duration_since(asked);
    drop(others);
    // What this collection leaves alive (`GcState::note_survivors`): counted once the
    // resurrection check has decided (a resurrected object survives).
    let survived = |freed: usize| population.saturating_sub(freed);

    // User code, on this thread only.
    settle_dead(dead);
    drop_held_back(h);
    for (w, type_name) in calls {
        weak::call_back(w, type_name);
    }
    let finalized = finalizers && run_finalizers(h, &garbage);

    // Pause 2, if a finalizer may have resurrected something.
    let garbage = if finalized {
        let others = thread::OthersDetached::new(heap);
        let (stopped, asked, to_safepoint) = timed_stop(heap, s, timeout);
        info.second_time_to_safepoint = Some(to_safepoint);
        match stopped {
            Ok(()) => {}
            Err(_) => {
                // The check cannot run: everything is kept, as if resurrected. (A walk of
                // the `gc` surface running meanwhile may still skip some: harmless.)
                unmark(&garbage);
                release_holds(&garbage);
                h.gc.note_survivors(survived(0), everything);
                return Ok(0);
            }
        }
        let still = match find_garbage(heap, 1, Some(&garbage), false, &mut |_: &SharedHeader| {}) {
            Ok((g, _)) => g,
            Err(p) => {
                unmark(&garbage);
                let released = thread::restart_the_world(heap);
                info.second_pause = Some(released.duration_since(asked));
                release_holds(&garbage);
                drop_held_back(h);
                h.gc.note_survivors(survived(0), everything);
                h.report_panic(
                    UnraisableKind::Drop,
                    "reap::Trace (collection abandoned)",
                    p,
                );
                return Ok(0);
            }
        };
        // What survives loses its mark first: then `GC_GARBAGE` marks exactly `still`.
        let resurrected = left_out(&garbage, &still);
        unmark(&resurrected);
        poison(&still);
        // Weak references the finalizers made to what is still garbage: cleared now, while no
        // thread can upgrade them, their callbacks (those not garbage) run after the restart.
        let mut calls = Vec::new();
        for &g in &still {
            // SAFETY: held, so allocated; the world is stopped.
            unsafe { weak::clear_for_collection(g, me, &is_garbage, &mut calls) };
        }
        let released = thread::restart_the_world(heap);
        info.second_pause = Some(released.duration_since(asked));
        drop(others);
        release_holds(&resurrected);
        drop_held_back(h);
        for (w, type_name) in calls {
            weak::call_back(w, type_name);
        }
        still
    } else {
        // Poisoned in pause 1.
        garbage
    };
    // The garbage's frees are not the program's: the count of allocations net of frees
    // leaves them out (or they would push the next collection back by as many objects).
    let before = s.allocs.swap(0, Relaxed);
    h.gc.note_survivors(survived(garbage.len()), everything);
    let n = reclaim(h, me, s, garbage);
    let after = s.allocs.swap(0, Relaxed);
    h.gc.young
        .fetch_add(before as isize + n as isize + after as isize, Relaxed);
    Ok(n)
}

/// Stops the world, trying again with longer waits until `timeout` has passed. Between two
/// attempts the world runs for as long as the last attempt waited: an attached thread that
/// could not park because it waits on a lock held by a parked thread, or by a thread waiting
/// at the gate, gets it once those run, and parks at its next safe point.
fn stop(heap: NonNull<HeapState>, s: &ThreadState, timeout: Duration) -> Result<(), NotStopped> {
    let start = Instant::now();
    let mut step = Duration::from_millis(2);
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        match thread::stop_the_world(heap, s, step.min(left)) {
            Err(NotStopped::Timeout(_)) if start.elapsed() < timeout => {
                std::thread::sleep(step.min(timeout.saturating_sub(start.elapsed())));
                step = (step * 2).min(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// Merges every thread's queue (pause 1): returns the objects whose count reached zero, to
/// die once the world runs again.
fn merge_queues(h: &HeapState) -> Vec<NonNull<SharedHeader>> {
    let mut dead = Vec::new();
    let mut table = lock(&h.threads);
    for slot in table.values_mut() {
        // The collection starts the count of allocations afresh (every thread is stopped).
        slot.state().allocs.store(0, Relaxed);
        slot.state().pending.fetch_and(
            !crate::sync::state::PENDING_QUEUE,
            crate::shim::Ordering::Relaxed,
        );
        for obj in std::mem::take(&mut slot.queue) {
            // SAFETY: the queue entry's reference keeps the object allocated; its owner is
            // parked, detached or gone, so nothing else touches its `local` count.
            if count::merge(unsafe { obj.as_ref() }, -1) == 0 {
                dead.push(obj);
            }
        }
    }
    dead
}

/// Runs the deaths of objects whose count a merge of the pause took to zero.
fn settle_dead(dead: Vec<NonNull<SharedHeader>>) {
    for obj in dead {
        // SAFETY: dead (count zero) and its death not begun; its heap is alive.
        unsafe {
            let heap = crate::sync::state::heap_of(obj.as_ref());
            (heap.as_ref().release)(obj)
        };
    }
}

/// Drops the references the collecting thread dropped to candidates while a snapshot ran
/// (`HeapState::snapshot_drops`: a `Trace` that drops handles, against its contract, or the
/// `Drop` of an object that died meanwhile), now that the world runs again and every owner is
/// put back: each as the drop it was. Until now their counts were left as the snapshot read
/// them, so the verdict took each for a reference still held (it keeps more, never less).
fn drop_held_back(h: &HeapState) {
    loop {
        // Taken one list at a time: a death below may run a collection of this heap (its
        // `Drop`), whose snapshot holds references back again.
        let held = std::mem::take(&mut *h.snapshot_drops.lock().unwrap_or_else(|e| e.into_inner()));
        if held.is_empty() {
            return;
        }
        for SendPtr(obj) in held {
            // SAFETY: each entry is a reference given up to the list, dropped once, here.
            unsafe { dec_ref(obj) };
        }
    }
}

/// Trial deletion while the world is stopped: over the possible roots of the heap and what
/// they reach (`among` = `None`; every tracked object if `everything`), or over `among` (the
/// resurrection check, `held` = 1: each has the collector's reference, not counted as one from
/// outside). Returns what only other
/// candidates reach, and the number of tracked objects of the heap (walked; 0 for `among`);
/// `on_garbage` runs on each garbage object in the verdict's last pass (pause 1's [`hold`]).
/// A panicking traversal (a hand-written `Trace`) abandons it; every tracked object is then
/// marked a possible root again.
fn find_garbage(
    heap: NonNull<HeapState>,
    held: usize,
    among: Option<&[NonNull<SharedHeader>]>,
    everything: bool,
    on_garbage: &mut impl FnMut(&SharedHeader),
) -> Result<Verdict, Box<dyn std::any::Any + Send>> {
    // SAFETY: the collecting thread's attachment keeps the heap alive.
    let gc = unsafe { &heap.as_ref().gc };
    // Taken out, not borrowed: a `Trace` that collects another heap finds none here.
    let mut scratch = std::mem::take(&mut *gc.scratch.lock().unwrap_or_else(|e| e.into_inner()));
    let mut guards = std::mem::take(&mut scratch.guards);
    let mut used = 0;
    // No thread takes a `sync::Mutex` until the verdict is in: the snapshot reads their states
    // instead of taking them (`sync::mutex`; the world is stopped, as `Freeze` requires).
    let freeze = crate::sync::mutex::Freeze::raise();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let (snap, population) =
            Snapshot::take(heap, held, among, everything, &mut guards, &mut scratch);
        used = snap.cands.len();
        (snap.unreachable(&mut scratch, on_garbage), population)
    }));
    // The verdict is in: the threads that run may move handles again. Released last in, first
    // out: a lock inside a value is released before the lock around it.
    guards.drain(..).rev().for_each(drop);
    drop(freeze);
    scratch.guards = guards;
    if result.is_err() && among.is_none() {
        // The walk cleared marks of objects whose reach was never decided: every tracked
        // object is marked again (SEMANTICS 5.4: the heap stays as it was, or safer).
        let mark = |o: NonNull<SharedHeader>| {
            // SAFETY: an object of the heap: allocated.
            let h = unsafe { o.as_ref() };
            if h.has(Flags::TRACKED) {
                h.set_possible_root_stopped(true);
            }
        };
        // SAFETY: the world is stopped, and this thread collects.
        unsafe { heap.as_ref().for_each_object(mark) };
    }
    *gc.scratch.lock().unwrap_or_else(|e| e.into_inner()) = scratch.emptied(used);
    result
}

/// Merges the objects of the threads that left the heap since the last collection (pause 1,
/// before the snapshot; CPython 3.13t's `gc_restore_tid` does it for the objects of an
/// abandoned segment): until then every other thread's drop of one is a compare-and-swap
/// from a load, and afterwards one `fetch_sub`, as for any merged object
/// (`count::merge_orphan`). A pool of workers that allocate and exit leaves its objects to the
/// threads that outlive it; the first collection after an exit gives them the cheaper path.
/// A walk of its own, only in a collection that follows an exit, so that the snapshot's walk
/// keeps its cost.
///
/// The walk meets every object of the slabs and every tracked one from the global
/// allocator: an untracked object too large for a slab stays unmerged (its drops stay
/// correct, only slower). Ids are never reused, so an id that left names no live thread.
fn merge_orphans(heap: NonNull<HeapState>) {
    // SAFETY: the collecting thread's attachment keeps the heap alive.
    let h = unsafe { heap.as_ref() };
    let Some(mut orphans) = Orphans::take(h) else {
        return;
    };
    // SAFETY: an object of the heap, allocated; the world is stopped.
    let adopt = |o: NonNull<SharedHeader>| orphans.adopt(unsafe { o.as_ref() });
    // SAFETY: the world is stopped, and this thread collects.
    unsafe { h.for_each_object(adopt) };
}

/// The ids [`merge_orphans`] looks for.
struct Orphans {
    /// Sorted, for a binary search.
    ids: Vec<u32>,
    /// The last owner looked up, and whether it is among `ids`: the blocks of one slab mostly
    /// share their owner.
    last: (u32, bool),
}

impl Orphans {
    /// The ids that left `h` since the last walk, taken (with the world stopped: no thread
    /// leaves meanwhile); `None` if there are none.
    fn take(h: &HeapState) -> Option<Orphans> {
        let mut ids = std::mem::take(&mut *h.left.lock().unwrap_or_else(|e| e.into_inner()));
        if ids.is_empty() {
            return None;
        }
        ids.sort_unstable();
        Some(Orphans {
            ids,
            last: (0, false),
        })
    }

    /// Merges `o` (an object of the heap, allocated, the world stopped) if its owner left.
    #[inline]
    fn adopt(&mut self, o: &SharedHeader) {
        let owner = o.owner.load(Relaxed);
        if owner == 0 {
            return;
        }
        if owner != self.last.0 {
            self.last = (owner, self.ids.binary_search(&owner).is_ok());
        }
        if self.last.1 {
            count::merge_orphan(o);
        }
    }
}

/// What [`find_garbage`] found: the garbage, and how many tracked objects the heap has.
type Verdict = (Vec<NonNull<SharedHeader>>, usize);

/// A scratch count's mark in [`Snapshot::unreachable`]: found reachable.
const REACHED: u32 = u32::MAX;

/// The object graph of a pause: candidates by index (each with its count less the edges other
/// candidates hold to it: trial deletion's step 2 runs as the edges are recorded, `gc_refs`),
/// and their edges to other candidates (compressed rows: [`Candidate::start`]).
struct Snapshot {
    cands: Vec<Candidate>,
    edges: Vec<u32>,
    /// The candidates not traversed completely (a lock held elsewhere): reachable.
    opaque: Vec<u32>,
}

/// The candidates of a snapshot as they are found, with their scratch counts.
///
/// A candidate is found from its header: while the snapshot runs, its `owner` holds
/// [`count::CANDIDATE_TAG`] and its index in `cands` (CPython 3.13t keeps its scratch count in
/// `ob_tid` the same way), and the owner it replaced is kept in the candidate's entry, put
/// back before the verdict is acted on ([`Candidates::untag`]). The world is stopped, so no
/// thread changes `owner` meanwhile, and the threads that still run (attached to other heaps,
/// detached, never attached) only compare it with their own id, which is never tagged
/// (`count::CANDIDATE_TAG`), before they take this heap's gate.
struct Candidates {
    cands: Vec<Candidate>,
    /// References of the collector's own in each count (1 in the resurrection check).
    held: usize,
}

impl Candidates {
    /// The index of `o`, an object of the heap (allocated), if it is a candidate of this
    /// snapshot.
    #[inline]
    fn index_of(&self, o: NonNull<SharedHeader>) -> Option<u32> {
        // SAFETY: an object of the heap (a block whose first word names it, one of the outside
        // set, a target of a candidate's handle, or held garbage): allocated.
        let tagged = unsafe { o.as_ref() }.owner.load(Relaxed);
        if tagged & count::CANDIDATE_TAG == 0 {
            return None;
        }
        let i = tagged & !count::CANDIDATE_TAG;
        // Checked against the list (one compare, on an entry about to be written): a tag not
        // this snapshot's would lose an edge at worst (keeping more), never name another
        // candidate.
        self.cands
            .get(i as usize)
            .is_some_and(|c| c.obj == o)
            .then_some(i)
    }

    /// The candidate index of `o`, an object of the heap (allocated), making it a candidate
    /// first if it is one and is not yet (discovery's step).
    #[inline]
    fn index_or_consider(&mut self, o: NonNull<SharedHeader>) -> Option<u32> {
        match self.index_of(o) {
            Some(i) => Some(i),
            None => self.consider(o),
        }
    }

    /// Makes `o` a candidate if it is one (tracked, value live, not frozen, alive), tagging
    /// its header; returns its index.
    #[inline]
    fn consider(&mut self, o: NonNull<SharedHeader>) -> Option<u32> {
        // SAFETY: an object of the heap (a block whose first word names it, one of the outside
        // set, a target of a candidate's handle, or held garbage): allocated, and the world is
        // stopped.
        let h = unsafe { o.as_ref() };
        // One load of the flags for both tests (the world is stopped: nothing writes them).
        let flags = Flags::from_bits_retain(h.flags.load(Relaxed));
        if !flags.contains(Flags::TRACKED) || flags.contains(Flags::VALUE_DROPPED) || h.is_frozen()
        {
            return None;
        }
        let n = count::stopped_count(h).saturating_sub(self.held);
        if n == 0 && self.held == 0 {
            // Dead, its death pending or running somewhere: not a candidate (its value's
            // handles count as references from outside).
            return None;
        }
        // A tag must stay below `RESURRECTING` (`count::is_candidate_tag`): past 2^31 - 2
        // candidates (64 GiB of objects of at least 32 bytes), the rest are left out, which
        // keeps them and what they reach, as a lock held elsewhere does.
        let Ok(i) = u32::try_from(self.cands.len()) else {
            return None;
        };
        if i >= count::CANDIDATE_TAG - 2 {
            return None;
        }
        let owner = h.owner.load(Relaxed);
        h.owner.store(count::CANDIDATE_TAG | i, Relaxed);
        self.cands.push(Candidate {
            obj: o,
            // No count comes near `REACHED` (`count::SHARED_MAX` + `LOCAL_MAX` is far below).
            count: n.min(REACHED as usize - 1) as u32,
            start: 0,
            owner,
        });
        Some(i)
    }

    /// Puts back the owner of every candidate (see [`Candidates`]).
    fn untag(&self) {
        for (i, c) in self.cands.iter().enumerate() {
            // SAFETY: a candidate, allocated; the world is stopped.
            put_back_owner(unsafe { c.obj.as_ref() }, i, c.owner);
        }
    }
}

/// Puts back the owner of candidate `i` of the snapshot (`h`, allocated, the world stopped).
/// Its `owner` still holds the tag: no count of a candidate changes while the snapshot runs
/// (`count::dec_shared` holds the collecting thread's drops back, and its safe points merge
/// no queue), so none is merged, and none dies and has its block handed out again.
#[inline]
fn put_back_owner(h: &SharedHeader, i: usize, owner: u32) {
    debug_assert_eq!(
        h.owner.load(Relaxed),
        count::CANDIDATE_TAG | i as u32,
        "reap: a candidate's tag overwritten during the snapshot"
    );
    h.owner.store(owner, Relaxed);
}

/// The tracing of a snapshot under way: the candidates found so far, the edges recorded, and
/// the next candidate to trace. Candidates are traced in the order they are found, so that a
/// candidate's edges are the slice from its `start` to the next one's. If a `Trace` panics,
/// the candidates' owners are put back as the tracing is dropped.
struct Tracing<'t> {
    found_so_far: Candidates,
    edges: Vec<u32>,
    opaque: Vec<u32>,
    tracer: Tracer<'t>,
    /// The first candidate not yet traced.
    next: usize,
    /// Whether tracing discovers candidates (the slabs were walked), or only finds those of
    /// a given list.
    discover: bool,
}

impl Drop for Tracing<'_> {
    fn drop(&mut self) {
        // Empty once the snapshot is taken whole (`Snapshot::take` moves the list out).
        self.found_so_far.untag();
    }
}

impl Tracing<'_> {
    /// Makes `o`, a possible root the walk met (an object of the heap, allocated), a
    /// candidate unless it is one already (found by the traces of an earlier chunk) or is
    /// none.
    #[inline]
    fn root(&mut self, o: NonNull<SharedHeader>) {
        let _ = self.found_so_far.index_or_consider(o);
    }

    /// Traces every candidate not yet traced, each once, in order, adding what they lead to
    /// (if discovering): a candidate's count loses one for every edge another candidate holds
    /// to it, and the edge is recorded.
    fn trace_pending(&mut self) {
        while let Some(c) = self.found_so_far.cands.get_mut(self.next) {
            c.start = self.edges.len() as u32;
            let o = c.obj;
            // SAFETY: a candidate, allocated, its value live (not `VALUE_DROPPED`).
            let (vt, value) = unsafe { (vtable(o.as_ref()), SharedHeader::value_ptr(o)) };
            // SAFETY: the value is a live value of the vtable's type.
            unsafe { (vt.trace)(value, &mut self.tracer) };
            if self.tracer.take_incomplete() {
                self.opaque.push(self.next as u32);
            }
            let Some(found) = self.tracer.shared_edges() else {
                unreachable!("a shared tracer")
            };
            for &t in found.iter() {
                let t = if self.discover {
                    self.found_so_far.index_or_consider(t)
                } else {
                    self.found_so_far.index_of(t)
                };
                let Some(t) = t else { continue };
                let c = &mut self.found_so_far.cands[t as usize];
                // Never below zero: an over-reporting hand-written `Trace` must not wrap
                // around into "reachable".
                c.count = c.count.saturating_sub(1);
                self.edges.push(t);
            }
            found.clear();
            self.next += 1;
        }
    }
}

impl Snapshot {
    /// Finds the candidates and traces each once, keeping the lock guards in `guards`;
    /// returns the snapshot and the number of tracked objects the walk saw.
    ///
    /// Without `among`, the candidates are *discovered* (SEMANTICS 8.5): the walk over every
    /// block takes the possible roots (clearing their mark), or every tracked object if
    /// `everything`, and tracing adds every object a candidate holds a handle to. What the
    /// roots do not reach keeps a reference from outside the candidates or from a live
    /// thread, so it is not garbage, and is never traced.
    ///
    /// The walk goes chunk by chunk, and each root is traced, with everything not yet traced
    /// that it leads to, as soon as its chunk has been walked: the candidates' memory is then
    /// still in the caches, and the candidates (so the garbage, whose later passes follow
    /// their order) come in the order of the heap's memory, a root followed by what it
    /// reaches, rather than every root first and the rest in sweeps after them (about 10% of
    /// a collection of rings, eighteenth session).
    fn take(
        heap: NonNull<HeapState>,
        held: usize,
        among: Option<&[NonNull<SharedHeader>]>,
        everything: bool,
        guards: &mut Vec<HeldGuard>,
        mem: &mut Scratch,
    ) -> (Snapshot, usize) {
        let mut chunks = Vec::new();
        // How many blocks the walk can meet (the first collection's room).
        let bound = match among {
            Some(list) => list.len(),
            // SAFETY: the world is stopped, and this thread collects.
            None => unsafe { heap.as_ref().list_chunks(&mut chunks) },
        };
        let mut found_so_far = Candidates {
            cands: std::mem::take(&mut mem.cands),
            held,
        };
        let mut population = 0;
        // Room for as many candidates as recent snapshots had (`Scratch::emptied` keeps the
        // memory), or for every block (the heap's first collection, an exhaustive one; the
        // resurrection check: its list): the lists do not grow while the world is stopped,
        // unless the heap did.
        let room = match (among, mem.room()) {
            (Some(_), _) | (None, 0) => bound,
            (None, _) if everything => bound,
            (None, recent) => recent,
        };
        found_so_far.cands.reserve(room);
        let mut edges = std::mem::take(&mut mem.edges);
        edges.reserve(room);
        let opaque = std::mem::take(&mut mem.opaque);
        let mut found = std::mem::take(&mut mem.found);
        // Most traced objects keep one guard (their lock): room for one each, as many as
        // recent snapshots had (not the first collection's every block).
        guards.reserve(mem.room());
        let mut t = Tracing {
            found_so_far,
            edges,
            opaque,
            // SAFETY: `find_garbage` holds a `Freeze` across this call, with the world stopped.
            tracer: unsafe { Tracer::snapshot(heap.cast(), &mut found, guards) },
            next: 0,
            discover: among.is_none(),
        };
        match among {
            Some(list) => {
                for &o in list {
                    let _ = t.found_so_far.consider(o);
                }
                t.trace_pending();
            }
            None => {
                // Whether `o` is a possible root (or `everything`), clearing its mark;
                // counts the tracked objects.
                let mut is_root = |o: NonNull<SharedHeader>| {
                    // SAFETY: an object of the heap, allocated; the world is stopped.
                    let h = unsafe { o.as_ref() };
                    // The trigger's `long_lived` counts neither untracked nor frozen objects.
                    population += usize::from(h.has(Flags::TRACKED) && !h.is_frozen());
                    if h.is_possible_root() {
                        h.set_possible_root_stopped(false);
                        true
                    } else {
                        everything
                    }
                };
                // SAFETY: the collecting thread's attachment keeps the heap alive.
                let h = unsafe { heap.as_ref() };
                let mut roots = Vec::new();
                for &chunk in &chunks {
                    // SAFETY: listed above, in this stop, by this thread; the closure neither
                    // allocates nor frees.
                    unsafe {
                        h.walk_chunk(chunk, |o| {
                            if is_root(o) {
                                roots.push(o);
                            }
                        })
                    };
                    // Each root traced with what it leads to before the next is taken: the
                    // candidates come in the order of the heap's memory.
                    for o in roots.drain(..) {
                        t.root(o);
                        t.trace_pending();
                    }
                }
                let mut outside = Vec::new();
                h.outside_objects(&mut outside);
                for o in outside {
                    if is_root(o) {
                        t.root(o);
                    }
                }
                t.trace_pending();
            }
        }
        // Taken whole: the candidates stay tagged until `unreachable` puts their owners back.
        let snap = Snapshot {
            cands: std::mem::take(&mut t.found_so_far.cands),
            edges: std::mem::take(&mut t.edges),
            opaque: std::mem::take(&mut t.opaque),
        };
        drop(t);
        mem.found = found;
        (snap, population)
    }

    /// Trial deletion's step 3 and the partition: every candidate with a count left (held from
    /// outside the candidates) or not traversed completely is reachable, and so is everything
    /// it reaches; the rest is returned, `on_garbage` run on each (its owner put back first).
    fn unreachable(
        mut self,
        mem: &mut Scratch,
        on_garbage: &mut impl FnMut(&SharedHeader),
    ) -> Vec<NonNull<SharedHeader>> {
        for &o in &self.opaque {
            let c = &mut self.cands[o as usize];
            c.count = c.count.max(1);
            // What is behind the lock is not traversed: a possible root again (SEMANTICS 5.3).
            // SAFETY: a candidate, allocated; the world is stopped.
            unsafe { c.obj.as_ref() }.set_possible_root_stopped(true);
        }
        let Snapshot {
            mut cands,
            edges,
            opaque,
        } = self;
        // A candidate found reachable is set to `REACHED` as it is pushed, so each is expanded
        // once; what stays 0 is garbage.
        let mut stack = std::mem::take(&mut mem.stack);
        // How many candidates are marked `REACHED`: the rest is the garbage.
        let mut reached = 0;
        for root in 0..cands.len() {
            let s = &mut cands[root].count;
            if *s == 0 || *s == REACHED {
                continue;
            }
            *s = REACHED;
            reached += 1;
            stack.push(root as u32);
            while let Some(o) = stack.pop() {
                let o = o as usize;
                let end = cands.get(o + 1).map_or(edges.len(), |c| c.start as usize);
                for &t in &edges[cands[o].start as usize..end] {
                    let s = &mut cands[t as usize].count;
                    if *s != REACHED {
                        *s = REACHED;
                        reached += 1;
                        stack.push(t);
                    }
                }
            }
        }
        let mut garbage = Vec::with_capacity(cands.len() - reached);
        for (i, c) in cands.iter().enumerate() {
            // SAFETY: a candidate, allocated; the world is stopped.
            let o = unsafe { c.obj.as_ref() };
            // The owner back (see `Candidates`): in the pass the verdict takes anyway.
            put_back_owner(o, i, c.owner);
            if c.count == 0 {
                on_garbage(o);
                garbage.push(c.obj);
            }
        }
        (mem.cands, mem.edges, mem.opaque, mem.stack) = (cands, edges, opaque, stack);
        garbage
    }
}

/// Takes a collection's hold on `o`, an object of its garbage (pause 1, the world stopped,
/// its owner put back): one reference, merged (`count::collector_hold`), hidden from the
/// `gc` surface's walks ([`GC_GARBAGE`]) and poisoned (`VALUE_DROPPED`, and [`GC_RECLAIM`] for
/// its drops) on the guess that no finalizer is owed ([`unpoison`] takes that off if one is).
/// Returns whether it is or has a weak reference, and whether it has a finalizer not run.
#[inline]
fn hold(o: &SharedHeader) -> (bool, bool) {
    count::collector_hold(o);
    // One load each of `gc_bits` and the flags: the world is stopped, and only this thread
    // writes them now.
    let bits = o.gc_bits.load(Relaxed);
    // Hidden from the `gc` surface's walks until it is given back or freed. (A plain store,
    // as `set_gc_bit_stopped`'s: no garbage has the bit yet.)
    o.gc_bits.store(bits | GC_GARBAGE | GC_RECLAIM, Relaxed);
    let weakly = bits & GC_WEAKREF != 0 || o.has_weak_info();
    let flags = o.flags.load(Relaxed);
    o.flags.store(flags | Flags::VALUE_DROPPED.bits(), Relaxed);
    let flags = Flags::from_bits_retain(flags);
    (
        weakly,
        flags.contains(Flags::HAS_FINALIZER) && !flags.contains(Flags::FINALIZED),
    )
}

/// Runs the finalizers of the garbage that has one not yet run (SEMANTICS 2.5), each once,
/// with the world running; returns whether any ran.
fn run_finalizers(h: &HeapState, garbage: &[NonNull<SharedHeader>]) -> bool {
    let mut ran = false;
    for &g in garbage {
        // SAFETY: held, so allocated; only this thread touches the garbage's flags.
        let o = unsafe { g.as_ref() };
        if o.has(Flags::HAS_FINALIZER) && !o.has(Flags::FINALIZED) {
            o.set(Flags::FINALIZED);
            ran = true;
            let vt = vtable(o);
            let value = SharedHeader::value_ptr(g);
            let finalize = || {
                // SAFETY: the value is live, and the collector's reference is the one the
                // finalizer's temporary handle borrows.
                unsafe { (vt.finalize_shared)(value) }
            };
            if let Err(p) = catch_unwind(AssertUnwindSafe(finalize)) {
                h.report_panic(UnraisableKind::Finalizer, (vt.type_name)(), p);
            }
        }
    }
    ran
}

/// Marks every object of the final garbage `VALUE_DROPPED` before any of their values is
/// dropped: from now on a handle to one (a `Drop` may hand one out) panics on use rather
/// than reach a value that is, or is about to be, dropped. Marks it [`GC_RECLAIM`] too: the
/// reclaim's own drops of handles to it are deferred to its hold's give-back.
fn poison(garbage: &[NonNull<SharedHeader>]) {
    for &g in garbage {
        // SAFETY: held, so allocated; no other thread can reach it.
        let o = unsafe { g.as_ref() };
        o.set(Flags::VALUE_DROPPED);
        // A plain load and store: `gc_bits` is written only by this thread while the world
        // runs (and by a thread holding it stopped, which this attached thread would be
        // parked for).
        o.gc_bits
            .store(o.gc_bits.load(Relaxed) | GC_RECLAIM, Relaxed);
    }
}

/// Undoes pause 1's [`poison`] of `garbage` when a finalizer is owed (the world stopped).
fn unpoison(garbage: &[NonNull<SharedHeader>]) {
    for &g in garbage {
        // SAFETY: held, so allocated; the world is stopped.
        let o = unsafe { g.as_ref() };
        o.flags.store(
            o.flags.load(Relaxed) & !Flags::VALUE_DROPPED.bits(),
            Relaxed,
        );
        o.gc_bits
            .store(o.gc_bits.load(Relaxed) & !GC_RECLAIM, Relaxed);
    }
}

/// The members of `all` not in `some`, where `some` is a subsequence of `all` in the same
/// order (what [`find_garbage`] over `all` returns).
fn left_out(
    all: &[NonNull<SharedHeader>],
    some: &[NonNull<SharedHeader>],
) -> Vec<NonNull<SharedHeader>> {
    let mut rest = some.iter().peekable();
    let out: Vec<_> = all
        .iter()
        .filter(|&&o| {
            if rest.peek() == Some(&&o) {
                rest.next();
                false
            } else {
                true
            }
        })
        .copied()
        .collect();
    if rest.next().is_none() {
        return out;
    }
    // Not a subsequence after all (never, as `Snapshot::unreachable` keeps the candidates'
    // order): the plain difference, rather than a panic while the world is stopped.
    debug_assert!(false, "reap: a verdict out of order");
    let keep: hashbrown::HashSet<NonNull<SharedHeader>> = some.iter().copied().collect();
    all.iter().copied().filter(|o| !keep.contains(o)).collect()
}

/// Clears the garbage mark of objects that survive after all (with the world stopped, or
/// before their holds are given back).
fn unmark(objs: &[NonNull<SharedHeader>]) {
    for &o in objs {
        // SAFETY: held by the collector, so allocated.
        unsafe { o.as_ref() }.set_gc_bit(GC_GARBAGE, false);
    }
}

/// Gives back the collector's references to objects that survive after all.
fn release_holds(objs: &[NonNull<SharedHeader>]) {
    for &o in objs {
        // SAFETY: the collector's reference, given up.
        unsafe { dec_ref(o) };
    }
}

/// Reclaims the final garbage (world running, on the collecting thread `me`; its weak
/// references were cleared while the world was stopped): unlists garbage weak references,
/// drops every value, then gives back the holds (freeing what that takes to zero; a weak
/// reference a `Drop` made to garbage meanwhile is cleared when its referent is freed).
/// Returns how many objects it reclaimed.
///
/// While the values are dropped, this thread's drops of handles to the garbage (the edges
/// between garbage objects, mostly) are deferred ([`GC_RECLAIM`], `GcState::reclaimer`): each
/// give-back subtracts them with the hold. The deferral ends before the first give-back,
/// whose death may run user code (a weak reference's callback) that drops handles too.
fn reclaim(h: &HeapState, me: u32, s: &ThreadState, garbage: Vec<NonNull<SharedHeader>>) -> usize {
    // A nested reclaim on this thread (a `Drop` collecting another heap) names its own heap's
    // state; this heap's collection is not re-entered (one at a time). A thread collecting
    // inside another heap's detached section has the id `NO_OWNER`, which every thread in such
    // a section shares: it defers nothing (a review found that another detached thread's drops
    // were taken as its own: a leak, and a free not ordered after that thread's reads).
    h.gc.reclaimer
        .store(if me == count::NO_OWNER { 0 } else { me }, Relaxed);
    for &g in &garbage {
        // SAFETY: held, so allocated.
        let o = unsafe { g.as_ref() };
        let value = SharedHeader::value_ptr(g);
        if o.is_weakref() {
            // SAFETY: a weak-reference object whose value is not dropped yet.
            unsafe { weak::unlist(value) };
        }
        let vt = vtable(o);
        // SAFETY: unreachable; the value is dropped once, here (it was marked before).
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| unsafe { (vt.drop_value)(value) })) {
            h.report_panic(UnraisableKind::Drop, (vt.type_name)(), p);
        }
    }
    h.gc.reclaimer.store(0, Relaxed);
    let n = garbage.len();
    // A count that reaches zero here frees the object (its value is dropped); one a `Drop`
    // kept a handle to lives on as a zombie until that handle goes.
    // Frees not yet accounted (`give_back_hold`).
    let mut pending = 0;
    for &g in &garbage {
        // SAFETY: the collector's hold on final garbage (merged and marked `VALUE_DROPPED`),
        // given back once, on this attached thread.
        unsafe { give_back_hold(g, NonNull::from(s), &mut pending) };
    }
    // SAFETY: this thread's attachment keeps the heap alive; the freed objects' heap
    // references are given back here.
    unsafe { account_frees(NonNull::from(h), NonNull::from(s), pending) };
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct header pointers that are never dereferenced.
    fn ptrs(n: usize) -> Vec<NonNull<SharedHeader>> {
        let base = NonNull::<SharedHeader>::dangling();
        (0..n)
            .map(|i| NonNull::new(base.as_ptr().wrapping_add(i)).unwrap())
            .collect()
    }

    /// Whether `g`'s object is merged (owned by no thread).
    #[cfg(not(reap_loom))]
    fn merged<T: ?Sized>(g: &crate::sync::Gc<T>) -> bool {
        let h = g.header();
        h.owner.load(Relaxed) == 0 && count::state_of(h.counts.load(Relaxed)) == count::MERGED
    }

    /// The objects of a thread that exited keep its id until the next collection, whose walk
    /// merges them (`Orphans`), tracked or not, cycle members or not; a live thread's stay
    /// its own; and the counts stay whole: every object dies once, by its last drop.
    #[cfg(not(reap_loom))]
    #[test]
    fn a_collection_merges_the_objects_of_threads_that_left() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        use std::sync::Arc;

        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, SeqCst);
            }
        }
        // SAFETY: no handles inside.
        unsafe impl crate::Trace for Counted {
            fn trace(&self, _: &mut crate::Tracer<'_>) {}
        }

        let heap = crate::sync::Heap::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let mine = heap.alloc(5_u64);
        let (h, d) = (heap.clone(), drops.clone());
        let (plain, tracked) = std::thread::spawn(move || (h.alloc(7_u64), h.alloc(Counted(d))))
            .join()
            .unwrap();
        let extra = tracked.clone();
        assert!(!merged(&plain) && !merged(&tracked) && !merged(&mine));
        assert_eq!(heap.collect(), 0);
        assert!(merged(&plain) && merged(&tracked), "orphans merged");
        assert!(!merged(&mine), "a live thread's object stays its own");
        assert_eq!(crate::sync::Gc::strong_count(&tracked), 2);
        // Their last drops, here and on another thread, are the merged path's.
        drop(extra);
        std::thread::spawn(move || drop(tracked)).join().unwrap();
        assert_eq!(drops.load(SeqCst), 1);
        assert_eq!(*plain, 7);
        drop((plain, mine));
        assert_eq!(heap.live_objects(), 0);
        // The list was taken: the next collection walks without it.
        assert!(heap.st().left.lock().unwrap().is_empty());
    }

    /// The list of threads that left holds at most `LEFT_MAX` ids (4 in unit tests): the
    /// objects of the threads past it stay unmerged after a collection, and every object
    /// still dies once, by its last drop, on any thread.
    #[cfg(not(reap_loom))]
    #[test]
    fn the_list_of_threads_that_left_is_bounded() {
        use crate::sync::state::LEFT_MAX;

        let heap = crate::sync::Heap::new();
        heap.disable();
        let objs: Vec<_> = (0..LEFT_MAX + 2)
            .map(|i| {
                let h = heap.clone();
                std::thread::spawn(move || h.alloc(i)).join().unwrap()
            })
            .collect();
        assert_eq!(heap.st().left.lock().unwrap().len(), LEFT_MAX);
        assert_eq!(heap.collect(), 0);
        let merged_now = objs.iter().filter(|g| merged(g)).count();
        assert_eq!(
            merged_now, LEFT_MAX,
            "the listed threads' objects merged, no others"
        );
        assert!(heap.st().left.lock().unwrap().is_empty());
        // Merged or not, each dies once by its last drop, here or on another thread.
        let (here, there): (Vec<_>, Vec<_>) = objs.into_iter().partition(|g| **g % 2 == 0);
        for (i, g) in here.iter().enumerate() {
            assert_eq!(**g, 2 * i);
        }
        drop(here);
        std::thread::spawn(move || drop(there)).join().unwrap();
        assert_eq!(heap.live_objects(), 0);
    }

    #[test]
    fn left_out_is_the_ordered_difference() {
        let all = ptrs(6);
        let some = [all[1], all[2], all[5]];
        assert_eq!(left_out(&all, &some), [all[0], all[3], all[4]]);
        assert_eq!(left_out(&all, &all), []);
        assert_eq!(left_out(&all, &[]), all);
        assert_eq!(left_out(&[], &[]), []);
    }
}
