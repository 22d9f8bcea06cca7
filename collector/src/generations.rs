//! Generation bookkeeping (SEMANTICS 1.3–1.5): counts, thresholds, the trigger rule with
//! CPython's 25% long-lived rule, the enabled flag and per-generation statistics.

use std::cell::Cell;

use crate::{DEFAULT_THRESHOLDS, GENERATIONS};

/// Statistics of one generation, as `gc.get_stats()` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenerationStats {
    /// Collections of this generation (as the oldest generation collected).
    pub collections: u64,
    /// Objects collected by those collections.
    pub collected: u64,
    /// Objects found uncollectable by those collections.
    pub uncollectable: u64,
}

/// Generation bookkeeping of SEMANTICS §1: the counts, the thresholds, the trigger rule with
/// CPython's 25% long-lived rule, the enabled flag and per-generation statistics.
///
/// All methods take `&self` (the fields are cells), so a heap can keep this inline and update it
/// on every allocation without a borrow check.
///
/// Invariants: `counts[0]` is tracked allocations minus tracked deallocations since the last
/// generation-0 collection, never below zero; `counts[g]` for `g > 0` is the number of
/// collections of generation `g - 1` since the last collection of generation `g`.
#[derive(Debug)]
pub struct Generations {
    count0: Cell<usize>,
    /// `threshold0` when automatic collection may run, `usize::MAX` when it may not (disabled,
    /// threshold 0, or a collection running): the allocation fast path compares against this
    /// alone.
    trigger_at: Cell<usize>,
    counts: Cell<[usize; GENERATIONS]>,
    thresholds: Cell<[usize; GENERATIONS]>,
    enabled: Cell<bool>,
    collecting: Cell<bool>,
    long_lived_total: Cell<usize>,
    long_lived_pending: Cell<usize>,
    stats: Cell<[GenerationStats; GENERATIONS]>,
}

impl Default for Generations {
    fn default() -> Self {
        Self::new()
    }
}

impl Generations {
    /// Bookkeeping for an empty heap: counts zero, default thresholds, enabled.
    pub fn new() -> Self {
        let g = Generations {
            count0: Cell::new(0),
            trigger_at: Cell::new(0),
            counts: Cell::new([0; GENERATIONS]),
            thresholds: Cell::new(DEFAULT_THRESHOLDS),
            enabled: Cell::new(true),
            collecting: Cell::new(false),
            long_lived_total: Cell::new(0),
            long_lived_pending: Cell::new(0),
            stats: Cell::new([GenerationStats::default(); GENERATIONS]),
        };
        g.update_trigger();
        g
    }

    fn update_trigger(&self) {
        let t0 = self.thresholds.get()[0];
        let armed = self.enabled.get() && !self.collecting.get() && t0 != 0;
        self.trigger_at.set(if armed { t0 } else { usize::MAX });
    }

    /// A tracked object was allocated. Returns whether `count0` now exceeds an armed
    /// `threshold0`, that is, whether [`Generations::generation_to_collect`] should be asked.
    #[inline]
    pub fn note_allocation(&self) -> bool {
        let c = self.count0.get() + 1;
        self.count0.set(c);
        c > self.trigger_at.get()
    }

    /// A tracked object was freed. `counts[0]` never goes below zero.
    #[inline]
    pub fn note_deallocation(&self) {
        self.count0.set(self.count0.get().saturating_sub(1));
    }

    /// `n` tracked objects were freed at once.
    pub fn note_deallocations(&self, n: usize) {
        self.count0.set(self.count0.get().saturating_sub(n));
    }

    /// The counts, as `gc.get_count()`.
    pub fn counts(&self) -> [usize; GENERATIONS] {
        let mut c = self.counts.get();
        c[0] = self.count0.get();
        c
    }

    /// The thresholds, as `gc.get_threshold()`.
    pub fn thresholds(&self) -> [usize; GENERATIONS] {
        self.thresholds.get()
    }

    /// Sets the thresholds, as `gc.set_threshold()`. A `threshold0` of 0 disables automatic
    /// collection.
    pub fn set_thresholds(&self, t0: usize, t1: usize, t2: usize) {
        self.thresholds.set([t0, t1, t2]);
        self.update_trigger();
    }

    /// Whether automatic collection is enabled (`gc.isenabled()`).
    pub fn is_enabled(&self) -> bool {
        self.enabled.get()
    }

    /// Enables or disables automatic collection (`gc.enable()` / `gc.disable()`).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.set(enabled);
        self.update_trigger();
    }

    /// Whether a collection is running.
    pub fn is_collecting(&self) -> bool {
        self.collecting.get()
    }

    /// Per-generation statistics.
    pub fn stats(&self) -> [GenerationStats; GENERATIONS] {
        self.stats.get()
    }

    /// The trigger rule, SEMANTICS 1.4: when `counts[0] > threshold0` (and automatic collection
    /// is enabled, `threshold0 != 0` and no collection is running), the oldest generation whose
    /// count exceeds its threshold; generation 2 only when the objects that survived
    /// generation-1 collections since the last full collection exceed 25% of those that survived
    /// it.
    pub fn generation_to_collect(&self) -> Option<usize> {
        if self.count0.get() <= self.trigger_at.get() {
            return None;
        }
        let counts = self.counts.get();
        let thresholds = self.thresholds.get();
        for g in (1..GENERATIONS).rev() {
            if counts[g] > thresholds[g] {
                if g == GENERATIONS - 1
                    && self.long_lived_pending.get() < self.long_lived_total.get() / 4
                {
                    // Full collections wait until enough new long-lived objects piled up.
                    continue;
                }
                return Some(g);
            }
        }
        Some(0)
    }

    /// Marks the start of a collection of `generation`: counts `0..=generation` reset, the next
    /// generation's count goes up. Returns `false` (and changes nothing) when a collection is
    /// already running. [`Generations::try_begin`] then [`Generations::reset_counts`].
    pub fn begin_collection(&self, generation: usize) -> bool {
        if !self.try_begin(generation) {
            return false;
        }
        self.reset_counts(generation);
        true
    }

    /// Marks a collection of `generation` as running, leaving the counts as they are (the start
    /// callbacks see them so, as in CPython). Returns `false` (and changes nothing) when a
    /// collection is already running.
    pub fn try_begin(&self, generation: usize) -> bool {
        assert!(
            generation < GENERATIONS,
            "generation {generation} out of range 0..=2"
        );
        if self.collecting.get() {
            return false;
        }
        self.collecting.set(true);
        self.update_trigger();
        true
    }

    /// Sets all three counts to zero (`gc.freeze()` does, in CPython 3.11–3.13).
    pub fn clear_counts(&self) {
        self.counts.set([0; GENERATIONS]);
        self.count0.set(0);
    }

    /// The counts' part of starting a collection of `generation`: counts `0..=generation`
    /// reset, the next generation's count goes up.
    pub fn reset_counts(&self, generation: usize) {
        let mut counts = self.counts.get();
        if generation + 1 < GENERATIONS {
            counts[generation + 1] += 1;
        }
        for c in &mut counts[..=generation] {
            *c = 0;
        }
        self.counts.set(counts);
        self.count0.set(0);
    }

    /// Marks the end of a collection of `generation` that left `survivors` objects in the
    /// generation it moved them to, collected `collected` and found `uncollectable`:
    /// [`Generations::record_collection`] then [`Generations::finish_collection`].
    pub fn end_collection(
        &self,
        generation: usize,
        survivors: usize,
        collected: usize,
        uncollectable: usize,
    ) {
        self.record_collection(generation, survivors, collected, uncollectable);
        self.finish_collection();
    }

    /// Records the outcome of the running collection (statistics and the long-lived counts),
    /// leaving it running: a heap runs its "stop" callbacks between this and
    /// [`Generations::finish_collection`], so a collection asked for there returns 0.
    pub fn record_collection(
        &self,
        generation: usize,
        survivors: usize,
        collected: usize,
        uncollectable: usize,
    ) {
        debug_assert!(self.collecting.get());
        if generation == 1 {
            self.long_lived_pending
                .set(self.long_lived_pending.get() + survivors);
        } else if generation == 2 {
            self.long_lived_pending.set(0);
            self.long_lived_total.set(survivors);
        }
        let mut stats = self.stats.get();
        let s = &mut stats[generation];
        s.collections += 1;
        s.collected += collected as u64;
        s.uncollectable += uncollectable as u64;
        self.stats.set(stats);
    }

    /// Ends the running collection.
    pub fn finish_collection(&self) {
        debug_assert!(self.collecting.get());
        self.collecting.set(false);
        self.update_trigger();
    }
}

/// Objects beyond twice their low point that make a collection exhaustive
/// ([`exhaustive_due`]): a small heap is not examined whole for every few objects it gains.
pub const EXHAUSTIVE_SLACK: usize = 2000;

/// The exhaustive-collection trigger both of `reap`'s modes use: whether `alive` objects
/// (those collections left alive, as the mode counts them) exceed twice `low` (their fewest
/// since the last collection that examined every object, `usize::MAX` before the first)
/// plus [`EXHAUSTIVE_SLACK`]. Garbage that no dropped reference announced is among `alive`,
/// so it never grows past the rest of the heap; and a growing heap is examined whole once
/// each time it doubles, a cost linear in its size.
///
/// ```
/// use reap_collector::{exhaustive_due, EXHAUSTIVE_SLACK};
///
/// assert!(!exhaustive_due(10_000, usize::MAX));
/// assert!(!exhaustive_due(2 * 1000 + EXHAUSTIVE_SLACK, 1000));
/// assert!(exhaustive_due(2 * 1000 + EXHAUSTIVE_SLACK + 1, 1000));
/// ```
pub fn exhaustive_due(alive: usize, low: usize) -> bool {
    low != usize::MAX && alive > low.saturating_mul(2).saturating_add(EXHAUSTIVE_SLACK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_cpython_after_collect_0_1_2() {
        // test_collect_generations: (1,0,0) -> collect(0) -> (0,1,0) -> collect(1) -> (0,0,1)
        // -> collect(2) -> (0,0,0)
        let g = Generations::new();
        g.note_allocation();
        assert_eq!(g.counts(), [1, 0, 0]);
        assert!(g.begin_collection(0));
        g.end_collection(0, 1, 0, 0);
        assert_eq!(g.counts(), [0, 1, 0]);
        assert!(g.begin_collection(1));
        g.end_collection(1, 1, 0, 0);
        assert_eq!(g.counts(), [0, 0, 1]);
        assert!(g.begin_collection(2));
        g.end_collection(2, 1, 0, 0);
        assert_eq!(g.counts(), [0, 0, 0]);
        assert_eq!(g.stats()[2].collections, 1);
    }

    #[test]
    fn nested_collection_is_refused() {
        let g = Generations::new();
        assert!(g.begin_collection(0));
        assert!(!g.begin_collection(2));
        g.end_collection(0, 0, 0, 0);
        assert!(g.begin_collection(2));
    }

    #[test]
    fn deallocation_never_goes_below_zero() {
        let g = Generations::new();
        g.note_deallocation();
        assert_eq!(g.counts()[0], 0);
    }

    #[test]
    fn trigger_picks_oldest_due_generation_with_long_lived_rule() {
        let g = Generations::new();
        g.set_thresholds(1, 1, 1);
        assert_eq!(g.generation_to_collect(), None);
        g.note_allocation();
        g.note_allocation();
        assert_eq!(g.generation_to_collect(), Some(0));
        // Two gen-0 collections make count1 = 2 > 1.
        for _ in 0..2 {
            g.begin_collection(0);
            g.end_collection(0, 0, 0, 0);
        }
        g.note_allocation();
        g.note_allocation();
        assert_eq!(g.generation_to_collect(), Some(1));
        // A full collection that left 100 survivors; then gen-1 collections with few survivors
        // make count2 exceed its threshold, but 25% of 100 is not reached: generation 1 is chosen.
        g.begin_collection(2);
        g.end_collection(2, 100, 0, 0);
        for _ in 0..2 {
            g.begin_collection(1);
            g.end_collection(1, 5, 0, 0);
        }
        for _ in 0..2 {
            g.begin_collection(0);
            g.end_collection(0, 0, 0, 0);
        }
        g.note_allocation();
        g.note_allocation();
        assert_eq!(g.counts()[2], 2);
        assert_eq!(g.generation_to_collect(), Some(1));
        // Enough long-lived survivors: now the full collection is due.
        g.begin_collection(1);
        g.end_collection(1, 20, 0, 0);
        for _ in 0..2 {
            g.begin_collection(0);
            g.end_collection(0, 0, 0, 0);
        }
        g.note_allocation();
        g.note_allocation();
        assert_eq!(g.generation_to_collect(), Some(2));
    }

    #[test]
    fn disabled_or_zero_threshold_never_triggers() {
        let g = Generations::new();
        g.set_thresholds(1, 10, 10);
        g.set_enabled(false);
        for _ in 0..10_000 {
            g.note_allocation();
        }
        assert_eq!(g.generation_to_collect(), None);
        g.set_enabled(true);
        g.set_thresholds(0, 10, 10);
        assert_eq!(g.generation_to_collect(), None);
    }
}
