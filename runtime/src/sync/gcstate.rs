//! What a Shared heap keeps for the `gc` surface (SEMANTICS 8.6): whether automatic collection
//! is on, the thresholds, the count of tracked allocations net of frees since the last
//! collection, the collection callbacks, and the types a callback is told. Types and the
//! allocation counting only: the surface is `sync::introspect`, the collection `sync::collect`.
//!
//! **The automatic trigger** (free-threaded CPython's `gc_should_collect`): Shared mode has one
//! generation. Each attached thread counts the tracked objects it allocates less those it frees
//! ([`ThreadState::allocs`](crate::sync::state::ThreadState::allocs)) and adds the count to the
//! heap's [`GcState::young`] every [`FLUSH_EVERY`] of them, so that threads allocating at once
//! do not contend on one counter. When a flush takes `young` past the first threshold (2000 by
//! default), past a quarter of the objects the last collection left alive, and automatic
//! collection is enabled, the thread sets its `PENDING_GC` bit: its next safe point (its next
//! allocation, or [`Heap::safepoint`](crate::sync::Heap::safepoint)) collects.

use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use crate::object::shared::SharedHeader;
use crate::trace::HeldGuard;

// std's atomics and lock even in loom builds: these are settings and a heuristic count, not
// part of any protocol a loom model checks (a stale read only moves a collection a little).
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;

/// A thread adds its allocation count to the heap's every this many tracked allocations (or
/// frees), as CPython's `LOCAL_ALLOC_COUNT_THRESHOLD`.
pub(crate) const FLUSH_EVERY: i32 = 512;

/// Phase of a collection callback: `Start` (before the first pause) or `Stop` (after reclaim).
pub use reap_collector::CallbackPhase as CollectPhase;

/// What a Shared-mode collection callback is told: CPython's `info` dict (`generation`,
/// `collected`, `uncollectable`) and how long the collection and its pauses took.
///
/// ```
/// use reap::sync::{CollectInfo, CollectPhase, Heap};
/// use std::sync::{Arc, Mutex};
///
/// let heap = Heap::new();
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let s = seen.clone();
/// heap.add_collect_callback(Arc::new(move |phase: CollectPhase, info: &CollectInfo| {
///     s.lock().unwrap().push((phase, info.generation, info.collected));
/// }));
/// heap.collect();
/// assert_eq!(
///     *seen.lock().unwrap(),
///     [(CollectPhase::Start, 2, 0), (CollectPhase::Stop, 2, 0)]
/// );
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CollectInfo {
    /// 2 for [`Heap::collect`](crate::sync::Heap::collect), 0 for an automatic collection
    /// (CPython's numbers for `gc.collect()` and the threshold's collections).
    pub generation: usize,
    /// Objects collected (0 at `Start`).
    pub collected: usize,
    /// Objects found uncollectable: always 0 (reap has no legacy finalizers).
    pub uncollectable: usize,
    /// The whole collection, from its claim to the end of reclaim (zero at `Start`).
    pub duration: Duration,
    /// The first pause's time to safe point: from asking the threads to stop until the last
    /// one stopped.
    pub time_to_safepoint: Duration,
    /// The first pause: from asking the threads to stop until the world was released (the
    /// parked threads told to run; the collecting thread's own wait for its processor after
    /// that, when a woken thread takes it, is not part of the pause).
    pub first_pause: Duration,
    /// The second pause (the resurrection check), if a finalizer ran, measured as the first.
    pub second_pause: Option<Duration>,
    /// The second pause's time to safe point, if there was one.
    pub second_time_to_safepoint: Option<Duration>,
}

/// A Shared-mode collection callback: runs on the collecting thread, with the world running.
pub type CollectCallback = Arc<dyn Fn(CollectPhase, &CollectInfo) + Send + Sync>;

/// The `gc` state of a Shared heap.
pub(crate) struct GcState {
    /// Automatic collection is on (`gc.enable()`; on by default).
    pub(crate) enabled: AtomicBool,
    /// `gc.set_threshold`: the first triggers automatic collection; the second at 0 turns off
    /// its quarter rule, the third at 0 the exhaustive examination's trigger (one generation).
    pub(crate) thresholds: [AtomicUsize; 3],
    /// Tracked objects allocated less those freed since the last collection, as flushed by the
    /// threads (may go below zero: a collection's frees are counted after it reset this).
    pub(crate) young: AtomicIsize,
    /// How many tracked objects the last collection left alive.
    pub(crate) long_lived: AtomicUsize,
    /// The fewest tracked objects a collection left alive since the last one that examined
    /// every tracked object (`usize::MAX` before the first collection): the base of the
    /// exhaustive examination's trigger ([`GcState::exhaustive_due`]). Written by the
    /// collecting thread only.
    pub(crate) survivors_low: AtomicUsize,
    /// A collection was found due by a thread that could not run it (one exiting): every
    /// thread attached then was asked, and a thread attaching later is asked too. Cleared by
    /// the next collection.
    pub(crate) scheduled: AtomicBool,
    /// The collection callbacks, with their ids; cloned out before they run.
    pub(crate) callbacks: Mutex<Vec<(u64, CollectCallback)>>,
    /// The id of the next callback added.
    pub(crate) next_callback: AtomicU64,
    /// How many collections ran, by generation (0: automatic, 2: `Heap::collect`).
    pub(crate) collections: [AtomicU64; 3],
    /// How many objects those collections collected.
    pub(crate) collected: [AtomicU64; 3],
    /// The snapshot's memory, kept for the next collection (taken out while one runs).
    pub(crate) scratch: Mutex<Scratch>,
    /// The id of the thread dropping the values of a collection's final garbage right now
    /// (`sync::collect::reclaim`), 0 otherwise (and when that thread's id is `NO_OWNER`, which
    /// all threads in a detached section share): its drops of handles to that garbage
    /// ([`GC_RECLAIM`](crate::object::shared::GC_RECLAIM)) are deferred to the hold's
    /// give-back (`heap::give_back_hold`). Written and compared by that thread only; another
    /// thread reads 0 or an id not its own (a thread reads its own last write, or a later
    /// one), so a std atomic even under loom.
    pub(crate) reclaimer: std::sync::atomic::AtomicU32,
}

/// A candidate of a collection's snapshot (`sync::collect::Snapshot`): the object, its scratch
/// count and where its edges start, side by side (the lookup of an edge's target checks the
/// object and decrements the count). Its fields are `sync::collect`'s to interpret.
#[derive(Clone, Copy)]
pub(crate) struct Candidate {
    pub(crate) obj: NonNull<SharedHeader>,
    /// The candidate's count less the handles other candidates hold to it (never below
    /// zero); trial deletion marks it `REACHED` (`sync::collect`).
    pub(crate) count: u32,
    /// The candidate's edges are `edges[start..]`, up to the next candidate's `start` (the
    /// last one's, to the end). Set as it is traced.
    pub(crate) start: u32,
    /// The object's `owner`, which the snapshot replaced with the candidate's tagged index
    /// (`sync::collect::Candidates`) and puts back.
    pub(crate) owner: u32,
}

/// The vectors a collection's snapshot (`sync::collect::Snapshot`) fills, kept by the heap
/// between collections so that a collection neither allocates them afresh nor touches fresh
/// pages (about 60 bytes a candidate; a heap that shrinks gives the excess back). The fields
/// are `sync::collect`'s to interpret.
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) cands: Vec<Candidate>,
    pub(crate) edges: Vec<u32>,
    pub(crate) opaque: Vec<u32>,
    pub(crate) found: Vec<NonNull<SharedHeader>>,
    pub(crate) guards: Vec<HeldGuard>,
    pub(crate) stack: Vec<u32>,
    /// The most candidates a recent snapshot had: the largest use, losing an eighth at each
    /// snapshot that uses less. What is kept follows it, so that a small snapshot (a
    /// resurrection check, a collection with little to do) between large ones does not give
    /// back the memory the next large one would allocate again. Also the room a collection
    /// reserves ([`Scratch::room`]).
    peak: usize,
}

// SAFETY: a `Scratch` is stored in its heap's `GcState` only after `Scratch::emptied`: no
// vector then holds a pointer or a guard (they are empty), so only the allocations move
// between threads, and allocations are not tied to a thread.
unsafe impl Send for Scratch {}

impl Scratch {
    /// The room for candidates a collection reserves up front: the recent peak, 0 before the
    /// heap's first snapshot.
    pub(crate) fn room(&self) -> usize {
        self.peak
    }

    /// Empties every vector, giving back memory beyond four times what the recent peak of
    /// candidates (with `used` the latest) needs.
    pub(crate) fn emptied(mut self, used: usize) -> Scratch {
        fn empty<T>(v: &mut Vec<T>, keep: usize) {
            v.clear();
            if v.capacity() > keep.max(64) {
                *v = Vec::new();
            }
        }
        self.peak = used.max(self.peak - self.peak / 8);
        let keep = self.peak.saturating_mul(4);
        empty(&mut self.cands, keep);
        empty(&mut self.edges, keep.saturating_mul(2));
        empty(&mut self.opaque, keep);
        empty(&mut self.found, keep);
        empty(&mut self.guards, keep);
        empty(&mut self.stack, keep);
        self
    }
}

impl GcState {
    pub(crate) fn new() -> GcState {
        GcState {
            enabled: AtomicBool::new(true),
            thresholds: [
                AtomicUsize::new(2000),
                AtomicUsize::new(10),
                AtomicUsize::new(10),
            ],
            young: AtomicIsize::new(0),
            long_lived: AtomicUsize::new(0),
            survivors_low: AtomicUsize::new(usize::MAX),
            scheduled: AtomicBool::new(false),
            callbacks: Mutex::new(Vec::new()),
            next_callback: AtomicU64::new(0),
            collections: Default::default(),
            collected: Default::default(),
            scratch: Mutex::new(Scratch::default()),
            reclaimer: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Adds a thread's flushed allocation count; returns whether a collection is now due.
    pub(crate) fn flush(&self, n: i32) -> bool {
        let young = self.young.fetch_add(n as isize, Relaxed) + n as isize;
        n > 0 && self.due(young)
    }

    /// Whether a collection is due now (an automatic collection checks again once it runs:
    /// one may have run since it was asked for).
    pub(crate) fn is_due(&self) -> bool {
        self.due(self.young.load(Relaxed))
    }

    /// Whether the next collection examines every tracked object rather than what the
    /// possible roots reach (SEMANTICS 8.5): [`reap_collector::exhaustive_due`] over the
    /// objects the last collection left alive and their low point since the last such
    /// examination (the rule and its reasons are there). `threshold2 = 0` turns this trigger
    /// off (an explicit `collect_exhaustive` still works).
    pub(crate) fn exhaustive_due(&self) -> bool {
        self.thresholds[2].load(Relaxed) != 0
            && reap_collector::exhaustive_due(
                self.long_lived.load(Relaxed),
                self.survivors_low.load(Relaxed),
            )
    }

    /// Records what a collection left alive (`survivors`), and whether it examined every
    /// tracked object (then the next trigger counts from it).
    pub(crate) fn note_survivors(&self, survivors: usize, exhaustive: bool) {
        self.long_lived.store(survivors, Relaxed);
        let low = self.survivors_low.load(Relaxed);
        if exhaustive || survivors < low {
            self.survivors_low.store(survivors, Relaxed);
        }
    }

    /// Free-threaded CPython's `gc_should_collect`: past the threshold and past a quarter of
    /// what the last collection left alive (so that a growing live heap is not scanned over
    /// and over), with automatic collection on. A threshold of 0 turns it off.
    fn due(&self, young: isize) -> bool {
        let threshold = self.thresholds[0].load(Relaxed);
        if young <= 0 || threshold == 0 || !self.enabled.load(Relaxed) {
            return false;
        }
        let young = young as usize;
        young > threshold
            && (young > self.long_lived.load(Relaxed) / 4 || self.thresholds[1].load(Relaxed) == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::Scratch;

    fn with_capacity(n: usize) -> Scratch {
        Scratch {
            cands: Vec::with_capacity(n),
            ..Scratch::default()
        }
    }

    #[test]
    fn a_small_snapshot_between_large_ones_keeps_the_memory() {
        let s = with_capacity(10_000).emptied(10_000);
        assert!(s.cands.capacity() >= 10_000);
        // A resurrection check over 100 objects: the large collection's room stays.
        let s = s.emptied(100);
        assert!(s.cands.capacity() >= 10_000);
    }

    #[test]
    fn memory_goes_back_once_the_snapshots_stay_small() {
        let mut s = with_capacity(10_000).emptied(10_000);
        let mut rounds = 0;
        while s.cands.capacity() > 0 {
            s = s.emptied(100);
            rounds += 1;
            assert!(rounds < 100, "never given back");
        }
        // The peak loses an eighth a round: below a quarter of 10,000 after about 11.
        assert!((8..=16).contains(&rounds), "{rounds} rounds");
    }
}
