//! A heap's record of its possible roots, so that a full collection looks only at what they
//! reach instead of at every object (`reap_collector::mark_reachable_from`).
//!
//! A handle's drop that leaves its object's count above zero marks the object a possible root
//! (`Root::POSSIBLE`). Objects of generation 0 are only marked: a full collection walks that
//! generation (it is the young one, and young collections walk it anyway) and takes its
//! marked objects as roots. An object that has left generation 0 (`Root::OLD`, set by
//! [`HeapInner::promote`] wherever an object leaves it) is also recorded here
//! (`Root::BUFFERED`) the first time, by [`suspect`], out of line, off the drop's fast path.
//! Untracked objects are born marked, so their drops never come here. A full collection takes
//! the whole record ([`PossibleRoots::take`]); the live objects in it are its other roots.
//! Young collections leave the record alone.
//!
//! Invariants:
//! 1. Every entry points at an allocated object of this heap, recorded once (`BUFFERED` set
//!    while, and only while, an entry points at it). A recorded object that dies keeps its memory,
//!    marked `FREED` (`heap::free_object`); whoever drops the entry frees it.
//! 2. An object outside generation 0 is `OLD`; a tracked `OLD` object marked `POSSIBLE` is
//!    recorded, except during a full collection that has taken the record and its roots: that
//!    collection clears the mark of every object it took, and marks again (recording them) the
//!    ones it keeps without finding them reachable.
//! 3. The record never holds more than about twice the possible roots alive at its last sweep
//!    (at least [`MIN_LIMIT`]): a push that reaches the limit sweeps out dead and unmarked
//!    entries, so a heap that never runs a full collection does not keep dead memory.

use std::ptr::NonNull;

use crate::local::state::{dealloc_object, heap_of, HeapInner, PossibleRoots, MIN_LIMIT};
use crate::object::header::{Flags, Header, Root};
use crate::object::slab::Slabs;

// The hot half of a handle's drop lives here, beside the cold half it calls, so that the
// header's module depends on nothing above it.
impl Header {
    /// Subtracts one from the strong count for a dropped handle and, if the count stays above
    /// zero, marks the object a possible root (recording it in its heap the first time).
    /// Returns whether the count reached zero.
    ///
    /// # Safety
    /// `this` is a live object's header, with the provenance of its whole allocation.
    #[inline]
    pub(crate) unsafe fn dec_strong_from_handle(this: NonNull<Header>) -> bool {
        // SAFETY: caller.
        let h = unsafe { this.as_ref() };
        let v = h.rc.get() - 1;
        h.rc.set(v);
        if v == 0 {
            return true;
        }
        let r = h.root.get();
        if r.intersection(Root::POSSIBLE | Root::OLD) == Root::OLD {
            // SAFETY: caller.
            unsafe { suspect(this) };
        } else {
            // A young object (or one already marked): only the mark, with a plain store.
            h.root.set(r | Root::POSSIBLE);
        }
        false
    }
}

/// Marks an `OLD` object a possible root and records it in its heap: the slow half of a
/// handle's drop that left the count above zero.
///
/// # Safety
/// `o` is a live object's header, with the provenance of its whole allocation.
#[cold]
#[inline(never)]
pub(crate) unsafe fn suspect(o: NonNull<Header>) {
    // SAFETY: caller.
    let h = unsafe { o.as_ref() };
    heap_of(h).note_possible_root(o);
}

impl HeapInner {
    /// Marks one of this heap's objects a possible root, recording it if it is `OLD` and not
    /// recorded yet.
    pub(crate) fn note_possible_root(&self, o: NonNull<Header>) {
        // SAFETY: callers pass live objects.
        let h = unsafe { o.as_ref() };
        h.root.set(h.root.get() | Root::POSSIBLE);
        // Garbage of a collection (its values dropping into one another) is never a candidate
        // again: recording it would only delay its memory.
        if !h.has(Flags::UNLINKED) {
            self.record_if_owed(o, h);
        }
    }

    /// An object leaves generation 0 (or may be about to): marked `OLD`, and recorded if it is
    /// a possible root.
    #[inline]
    pub(crate) fn promote(&self, o: NonNull<Header>) {
        // SAFETY: callers pass live objects.
        let h = unsafe { o.as_ref() };
        h.root.set(h.root.get() | Root::OLD);
        self.record_if_owed(o, h);
    }

    #[inline]
    fn record_if_owed(&self, o: NonNull<Header>, h: &Header) {
        let r = h.root.get();
        if r & (Root::POSSIBLE | Root::OLD | Root::BUFFERED) == Root::POSSIBLE | Root::OLD
            && h.has(Flags::TRACKED)
        {
            h.root.set(r | Root::BUFFERED);
            self.possible_roots.push(o, &self.slabs);
        }
    }
}

impl HeapInner {
    /// Whether the next full collection examines every object of the generations rather than
    /// what the possible roots reach (SEMANTICS 2.2): asked for, or
    /// [`reap_collector::exhaustive_due`] over the listed objects (the generations and the
    /// permanent set) and the fewest that full collections left listed since the last such
    /// examination (the rule and its reasons are there).
    pub(crate) fn exhaustive_due(&self) -> bool {
        let r = &self.possible_roots;
        r.force_exhaustive.get()
            || reap_collector::exhaustive_due(self.listed.get(), r.survivors_low.get())
    }

    /// A full collection ended with `survivors` listed (the permanent set included, as
    /// [`HeapInner::exhaustive_due`] counts them): the trigger's low point follows them, and
    /// restarts from them after an examination of everything.
    pub(crate) fn note_full_survivors(&self, survivors: usize) {
        let r = &self.possible_roots;
        if r.exhaustive_now.replace(false) || survivors < r.survivors_low.get() {
            r.survivors_low.set(survivors);
        }
    }
}

impl PossibleRoots {
    fn push(&self, o: NonNull<Header>, slabs: &Slabs) {
        let len = {
            let mut entries = self.entries.borrow_mut();
            entries.push(o);
            entries.len()
        };
        if len >= self.limit.get() {
            self.sweep(slabs);
        }
    }

    /// Drops the entries of dead objects (freeing their memory) and of objects no longer marked.
    fn sweep(&self, slabs: &Slabs) {
        let mut entries = self.entries.borrow_mut();
        entries.retain(|&o| {
            // SAFETY: entries point at allocated objects (invariant 1).
            let h = unsafe { o.as_ref() };
            let r = h.root.get();
            if r.contains(Root::FREED) {
                // SAFETY: dead and recorded only here; this entry is dropped.
                unsafe { dealloc_object(slabs, o) };
                false
            } else if !r.contains(Root::POSSIBLE) {
                h.root.set(r.difference(Root::BUFFERED));
                false
            } else {
                true
            }
        });
        self.limit.set((entries.len() * 2).max(MIN_LIMIT));
    }

    /// Empties the record for a full collection: returns the objects that can be its roots
    /// (marked, alive, in a generation list). Every object taken is unmarked and unrecorded; dead
    /// ones are freed. No user code runs.
    pub(crate) fn take(&self, slabs: &Slabs) -> Vec<NonNull<Header>> {
        let taken = std::mem::take(&mut *self.entries.borrow_mut());
        self.limit.set(MIN_LIMIT);
        let mut roots = Vec::with_capacity(taken.len());
        for o in taken {
            // SAFETY: entries point at allocated objects (invariant 1).
            let h = unsafe { o.as_ref() };
            let r = h.root.get();
            h.root.set(r.difference(Root::POSSIBLE | Root::BUFFERED));
            if r.contains(Root::FREED) {
                // SAFETY: dead, and this was its only entry.
                unsafe { dealloc_object(slabs, o) };
            } else if r.contains(Root::POSSIBLE)
                && h.strong() > 0
                && !h.has(Flags::UNLINKED | Flags::COLLECTING)
            {
                roots.push(o);
            }
        }
        roots
    }

    /// Frees the memory of every dead object still recorded: the heap is going, and none of
    /// its objects is alive.
    pub(crate) fn release_all(&self, slabs: &Slabs) {
        for o in std::mem::take(&mut *self.entries.borrow_mut()) {
            // SAFETY: entries point at allocated objects (invariant 1).
            debug_assert!(unsafe { o.as_ref() }.root.get().contains(Root::FREED));
            // SAFETY: as above; with no object alive, every entry is a dead one's.
            unsafe { dealloc_object(slabs, o) };
        }
    }

    /// How many entries the record holds.
    pub(crate) fn len(&self) -> usize {
        self.entries.borrow().len()
    }
}
