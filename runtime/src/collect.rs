//! One collection of generation `g`, in CPython's phase order (SEMANTICS 2), on this heap.
//!
//! The algorithm itself (trial deletion) is `reap_collector::mark_reachable`; this module
//! implements its `CollectorHeap` trait over object headers and runs the phases that involve user
//! code, each its own function:
//!
//! 1. [`gather`]: the objects of generations `0..=g` become the candidates. Their list links are
//!    free for the collector's use until [`relink`]: `prev` holds the scratch count.
//! 2. trial deletion (no user code but `Trace`; a panic there abandons the collection with every
//!    real count and list intact).
//! 3. [`relink`]: survivors move to generation `g + 1`; the garbage goes to a list of its own.
//! 4. [`handle_weakrefs`]: every weak reference to garbage is cleared, weak references that are
//!    garbage themselves are detached (their callbacks never run), then the callbacks of the
//!    other cleared weak references run.
//! 5. [`finalize_garbage`]: each garbage object's finalizer, once.
//! 6. [`handle_resurrected`]: if a finalizer ran, trial deletion again over what is left of the
//!    garbage; whatever is now reachable from outside survives, in the oldest generation.
//! 7. [`reclaim`]: the cycles are broken by dropping every garbage value (a handle to a dropped
//!    value panics on use instead of reading freed memory), then the garbage is freed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use reap_collector::{mark_reachable_prepared, CollectorHeap, Mark};

use crate::header::{flag, Header, Links};
use crate::heap::{free_object, release, HeapInner, UnraisableKind};
use crate::introspect::{any_handle, debug, CollectInfo, CollectPhase};
use crate::trace::Tracer;

/// The collector's view of the heap during trial deletion.
struct View;

impl CollectorHeap for View {
    type Object = NonNull<Header>;

    fn strong_count(&self, o: NonNull<Header>) -> usize {
        // SAFETY: candidates are live objects.
        unsafe { o.as_ref() }.strong() as usize
    }

    fn scratch(&self, o: NonNull<Header>) -> usize {
        // SAFETY: scratch is asked only of candidates, which are tracked; their links are the
        // collector's until `relink`.
        unsafe { Header::links(o).as_ref() }
            .prev
            .get()
            .as_ptr()
            .addr()
            - 1
    }

    fn set_scratch(&self, o: NonNull<Header>, value: usize) {
        // The scratch count lives in the `prev` link word, which `relink` rewrites. A count is
        // never 0 as a pointer is never null: store it plus one.
        let word = NonNull::new(std::ptr::without_provenance_mut::<Links>(value + 1))
            .expect("scratch overflow");
        // SAFETY: as above.
        unsafe { Header::links(o).as_ref() }.prev.set(word);
    }

    fn mark(&self, o: NonNull<Header>) -> Mark {
        // SAFETY: handles lead to allocated objects.
        let h = unsafe { o.as_ref() };
        if !h.has(flag::COLLECTING) {
            Mark::Outside
        } else if h.has(flag::REACHABLE) {
            Mark::Reachable
        } else {
            Mark::Candidate
        }
    }

    fn set_mark(&self, o: NonNull<Header>, mark: Mark) {
        // SAFETY: as above.
        let h = unsafe { o.as_ref() };
        match mark {
            Mark::Outside => h.clear(flag::COLLECTING | flag::REACHABLE),
            Mark::Candidate => {
                h.set(flag::COLLECTING);
                h.clear(flag::REACHABLE);
            }
            Mark::Reachable => h.set(flag::COLLECTING | flag::REACHABLE),
        }
    }

    fn visit_edges(&self, o: NonNull<Header>, visit: &mut dyn FnMut(NonNull<Header>)) -> bool {
        // SAFETY: candidates are live and their values initialised.
        let h = unsafe { o.as_ref() };
        let vtable = h.vtable();
        let mut tracer = Tracer::new(visit);
        // SAFETY: the value is live (candidates never have dropped values).
        unsafe { (vtable.trace)(Header::value_ptr(o), &mut tracer) };
        if tracer.is_incomplete() {
            // Kept without being traced: what it holds may be garbage once the borrow ends,
            // with no drop to flag it, so it stays a possible root.
            h.set_possible_root();
            false
        } else {
            true
        }
    }
}

/// The headers of a list, in order.
fn list_members(head: &Links) -> Vec<NonNull<Header>> {
    let mut out = Vec::new();
    let mut cur = head.next.get();
    while cur != NonNull::from(head) {
        out.push(Header::from_links(cur));
        // SAFETY: nodes of a heap list are valid links of allocated objects.
        cur = unsafe { cur.as_ref() }.next.get();
    }
    out
}

/// Phase 1: takes every object of generations `0..=g` out of its list. Objects whose death has
/// begun (count 0) are not candidates and go straight back.
///
/// A full collection (`g == 2`) also clears the candidates' possible-root marks: whatever it
/// finds reachable is reachable from outside the heap's collectable objects, so only a later
/// drop can make it garbage, and that drop marks it again. A younger collection must leave the
/// marks: a young object may be reachable only through an old object that is itself garbage
/// (a cycle across generations), which only a full collection can tell, and it needs the mark
/// to look at all.
fn gather(heap: &HeapInner, g: usize) -> Vec<NonNull<Header>> {
    let mut candidates = Vec::new();
    let full = g == 2;
    for gen in 0..=g {
        let head = &heap.lists[gen];
        let end = NonNull::from(head);
        let mut cur = head.next.get();
        head.init_empty();
        while cur != end {
            let o = Header::from_links(cur);
            // SAFETY: listed objects are allocated; `next` is read before the links are reused.
            cur = unsafe { cur.as_ref() }.next.get();
            // SAFETY: as above.
            let h = unsafe { o.as_ref() };
            if h.strong() == 0 {
                // SAFETY: its links are free (the list was reset) and the head is valid.
                unsafe { head.push_back(Header::links(o)) };
            } else {
                if full {
                    h.clear_possible_root();
                }
                // Step 1 of trial deletion, done here to save a pass: the scratch count starts
                // at the strong count, and the object is marked a candidate.
                View.set_scratch(o, h.strong() as usize);
                h.set(flag::COLLECTING);
                candidates.push(o);
            }
        }
    }
    candidates
}

/// Puts objects into the list `to`.
fn relink(objects: &[NonNull<Header>], to: &Links) {
    for &o in objects {
        // SAFETY: the objects are allocated and in no list (their links were the collector's).
        unsafe { to.push_back(Header::links(o)) };
    }
}

fn clear_marks(objects: &[NonNull<Header>]) {
    for &o in objects {
        // SAFETY: allocated.
        unsafe { o.as_ref() }.clear(flag::COLLECTING | flag::REACHABLE);
    }
}

impl HeapInner {
    /// Collects generation `g` (and all younger ones). Returns the number of objects collected;
    /// 0 if a collection is already running (SEMANTICS 1.5).
    pub(crate) fn collect(&self, g: usize) -> usize {
        assert!(g <= 2, "reap: generation {g} out of range 0..=2");
        if !self.gens.begin_collection(g) {
            return 0;
        }
        let start = std::time::Instant::now();
        let mut info = CollectInfo {
            generation: g,
            collected: 0,
            uncollectable: 0,
            duration: std::time::Duration::ZERO,
        };
        self.run_collect_callbacks(CollectPhase::Start, &info);
        let (survivors, collected) = self.collect_generations(g);
        info.collected = collected;
        info.duration = start.elapsed();
        self.gens.record_collection(g, survivors, collected, 0);
        if self.gcmod.debug.get() & debug::STATS != 0 {
            eprintln!(
                "reap: gc: generation {g}: {collected} collected, 0 uncollectable, {survivors} survivors, {:.3} ms",
                info.duration.as_secs_f64() * 1000.0
            );
        }
        self.run_collect_callbacks(CollectPhase::Stop, &info);
        self.gens.finish_collection();
        collected
    }

    /// The work of [`HeapInner::collect`] between its callbacks. Returns (survivors, collected).
    fn collect_generations(&self, g: usize) -> (usize, usize) {
        let survivors_gen = (g + 1).min(2);

        // Candidate filtering: a garbage set always holds an object a handle to which was
        // dropped without reaching zero since the collector last scanned it (POSSIBLE_ROOT). With
        // none among the candidates, there is no garbage: the generations only age, in O(1) per
        // list after a scan of the flags.
        if let Some(survivors) = self.count_if_no_possible_root(g) {
            for gen in 0..=g {
                if gen != survivors_gen {
                    // SAFETY: both are this heap's initialised list heads.
                    unsafe { self.lists[gen].splice_into(&self.lists[survivors_gen]) };
                }
            }
            return (survivors, 0);
        }

        let candidates = gather(self, g);

        // Trial deletion: no user code runs here but `Trace`, which may panic.
        let found = catch_unwind(AssertUnwindSafe(|| {
            mark_reachable_prepared(&View, &candidates)
        }));
        if let Err(p) = found {
            // Abandon: real counts were never touched; keep everything, as survivors, and as
            // possible roots so the next collection looks again.
            clear_marks(&candidates);
            for &o in &candidates {
                // SAFETY: allocated.
                unsafe { o.as_ref() }.set_possible_root();
            }
            relink(&candidates, &self.lists[survivors_gen]);
            self.report_panic(
                UnraisableKind::Drop,
                "reap::Trace (collection abandoned)",
                p,
            );
            return (0, 0);
        }

        // One pass: survivors leave their marks and move to generation g+1; the garbage keeps
        // its COLLECTING mark (so weak references that are garbage can be told apart) and is
        // sorted by whether anything in it runs user code before reclaim.
        let mut unreachable = Vec::new();
        let mut survivors = 0;
        let mut needs_weak_phase = false;
        let mut needs_finalizers = false;
        let to = &self.lists[survivors_gen];
        for &o in &candidates {
            // SAFETY: candidates are allocated and their links are free.
            let h = unsafe { o.as_ref() };
            if h.has(flag::REACHABLE) {
                h.clear(flag::COLLECTING | flag::REACHABLE);
                // SAFETY: links free, head valid.
                unsafe { to.push_back(Header::links(o)) };
                survivors += 1;
            } else {
                // Weak references to garbage must be cleared, and garbage weak references
                // detached, before any user code runs (finalizers, or drops during reclaim).
                needs_weak_phase |= h.weak_info().is_some() || crate::weak::is_weakref(h);
                needs_finalizers |= h.has(flag::HAS_FINALIZER) && !h.has(flag::FINALIZED);
                // Ready for reclaim, should no user code be owed (undone by `relink` otherwise).
                h.set(flag::UNLINKED);
                unreachable.push(o);
            }
        }
        drop(candidates);

        if unreachable.is_empty() {
            return (survivors, 0);
        }
        if !needs_weak_phase && !needs_finalizers {
            // No weak references to clear and no finalizer to run: no user code runs before
            // reclaim, so the garbage needs no list, and is already marked for reclaim.
            return (survivors, self.reclaim(unreachable, true));
        }
        for &o in &unreachable {
            // SAFETY: allocated.
            unsafe { o.as_ref() }.clear(flag::UNLINKED);
        }
        relink(&unreachable, &self.garbage_list);
        if needs_weak_phase {
            self.handle_weakrefs(&unreachable);
        }
        drop(unreachable);
        // The garbage keeps its COLLECTING marks: harmless from here on (the resurrection check
        // resets them, reclaim sets them).
        let any_finalized = needs_finalizers && self.finalize_garbage();
        if any_finalized {
            let garbage = self.handle_resurrected();
            return (survivors, self.reclaim(garbage, true));
        }
        // User code may have freed garbage (by the refcount path): read what is left.
        let garbage = list_members(&self.garbage_list);
        self.garbage_list.init_empty();
        (survivors, self.reclaim(garbage, false))
    }

    /// The number of objects in generations `0..=g` if none of them is a possible root.
    fn count_if_no_possible_root(&self, g: usize) -> Option<usize> {
        let mut n = 0;
        for gen in 0..=g {
            let head = &self.lists[gen];
            let mut cur = head.next.get();
            while cur != NonNull::from(head) {
                let o = Header::from_links(cur);
                // SAFETY: listed objects are allocated.
                if unsafe { o.as_ref() }.is_possible_root() {
                    return None;
                }
                n += 1;
                // SAFETY: as above.
                cur = unsafe { cur.as_ref() }.next.get();
            }
        }
        Some(n)
    }

    /// Phase 4: weak references (SEMANTICS 2.4). `garbage` is the unreachable set, still marked.
    fn handle_weakrefs(&self, garbage: &[NonNull<Header>]) {
        let mut calls = Vec::new();
        for &o in garbage {
            // SAFETY: no user code has run since trial deletion: the garbage is allocated.
            unsafe { crate::weak::clear_for_collection(o, &mut calls) };
        }
        for &o in garbage {
            // SAFETY: as above.
            unsafe { crate::weak::detach_if_weakref(o) };
        }
        crate::weak::run_callbacks(self, calls);
    }

    /// Phase 5: runs each garbage object's finalizer once (SEMANTICS 2.5). Objects move from the
    /// garbage list to `seen` one at a time, so a finalizer that frees other garbage (by the
    /// refcount path) leaves the list consistent. Returns whether any finalizer ran.
    fn finalize_garbage(&self) -> bool {
        let mut any = false;
        let head = &self.garbage_list;
        let seen = &self.seen_list;
        while !head.is_empty() {
            let links = head.next.get();
            // SAFETY: listed objects are allocated; `seen` is a valid head.
            unsafe {
                Links::unlink(links);
                seen.push_back(links);
            }
            let o = Header::from_links(links);
            // SAFETY: allocated (it was listed).
            let h = unsafe { o.as_ref() };
            if h.has(flag::HAS_FINALIZER) && !h.has(flag::FINALIZED) {
                any = true;
                h.set(flag::FINALIZED);
                h.inc_strong();
                let vtable = h.vtable();
                // SAFETY: the object is live and the runtime holds the count just added.
                let r = catch_unwind(AssertUnwindSafe(|| unsafe { (vtable.finalize)(o) }));
                if let Err(p) = r {
                    self.report_panic(UnraisableKind::Finalizer, (vtable.type_name)(), p);
                }
                let n = h.strong() - 1;
                h.set_strong(n);
                if n == 0 {
                    // The finalizer broke the last reference: an ordinary death.
                    // SAFETY: count just reached 0; its death has not begun.
                    unsafe { release(o) };
                }
            }
        }
        // Back to the garbage list for the next phases.
        // SAFETY: both are valid heads.
        unsafe { seen.splice_into(head) };
        any
    }

    /// Phase 6: resurrection (SEMANTICS 2.6). Trial deletion over what is left of the garbage;
    /// what is now reachable from outside survives, in the oldest generation, with its
    /// finalized mark.
    ///
    /// Returns the final garbage, in no list and marked for reclaim (no user code runs between
    /// this and reclaim, so it needs no list).
    fn handle_resurrected(&self) -> Vec<NonNull<Header>> {
        let members = list_members(&self.garbage_list);
        self.garbage_list.init_empty();
        let mut alive = Vec::with_capacity(members.len());
        for o in members {
            // SAFETY: listed objects are allocated; their links are free now.
            let h = unsafe { o.as_ref() };
            if h.strong() == 0 {
                // A death in progress (deferred): it keeps a list to unlink from.
                // SAFETY: links free, head valid.
                unsafe { self.lists[0].push_back(Header::links(o)) };
            } else {
                // Step 1 of trial deletion, as in `gather`.
                View.set_scratch(o, h.strong() as usize);
                h.set(flag::COLLECTING);
                h.clear(flag::REACHABLE);
                alive.push(o);
            }
        }
        let found = catch_unwind(AssertUnwindSafe(|| mark_reachable_prepared(&View, &alive)));
        if let Err(p) = found {
            // Keep everything: treat all of it as resurrected.
            clear_marks(&alive);
            relink(&alive, &self.lists[2]);
            self.report_panic(
                UnraisableKind::Drop,
                "reap::Trace (collection abandoned)",
                p,
            );
            return Vec::new();
        }
        let mut garbage = Vec::with_capacity(alive.len());
        for o in alive {
            // SAFETY: allocated; links free.
            let h = unsafe { o.as_ref() };
            if h.has(flag::REACHABLE) {
                h.clear(flag::COLLECTING | flag::REACHABLE);
                // SAFETY: links free, head valid.
                unsafe { self.lists[2].push_back(Header::links(o)) };
            } else {
                h.set(flag::UNLINKED);
                garbage.push(o);
            }
        }
        garbage
    }

    /// Phase 7: breaks the cycles and frees the garbage (SEMANTICS 2.7). `garbage` is in no
    /// list. Returns how many objects were collected.
    ///
    /// Each object is marked as being reclaimed (`UNLINKED` with `COLLECTING`), then, one by one,
    /// its value is dropped and, if nothing holds it any more, it is freed at once. A garbage
    /// object whose count reaches zero while another value drops is freed right there if its own
    /// value is already gone, or left for its turn in the loop (see `heap::release`). Whatever
    /// is still held at the end (a `Drop` stored a handle) stays allocated with its value dropped,
    /// and is freed by its last handle.
    fn reclaim(&self, garbage: Vec<NonNull<Header>>, marked: bool) -> usize {
        let collected = garbage.len();
        if self.gcmod.debug.get() & debug::SAVEALL != 0 {
            // DEBUG_SAVEALL: the garbage is kept, whole, in the garbage list, and stays tracked
            // in the oldest generation.
            let mut saved = self.gcmod.garbage.borrow_mut();
            for &o in &garbage {
                // SAFETY: allocated and live (its count is above 0: garbage is held by
                // garbage); links free.
                unsafe {
                    o.as_ref().clear(flag::COLLECTING | flag::REACHABLE);
                    saved.push(any_handle(o));
                    self.lists[2].push_back(Header::links(o));
                }
            }
            return collected;
        }
        if !marked {
            for &o in &garbage {
                // SAFETY: allocated; it leaves every list.
                let h = unsafe { o.as_ref() };
                h.clear(flag::REACHABLE);
                h.set(flag::UNLINKED | flag::COLLECTING);
            }
        }
        self.gens.note_deallocations(collected);
        for &o in &garbage {
            // SAFETY: reclaimed objects are freed only by this loop or, once RECLAIM_DONE, by
            // `release`; this one is not done yet, so it is allocated.
            let h = unsafe { o.as_ref() };
            h.set(flag::VALUE_DROPPED);
            let vtable = h.vtable();
            // SAFETY: the value is initialised; from now on handles to it panic on use.
            let r = catch_unwind(AssertUnwindSafe(|| unsafe {
                (vtable.drop_value)(Header::value_ptr(o))
            }));
            if let Err(p) = r {
                self.report_panic(UnraisableKind::Drop, (vtable.type_name)(), p);
            }
            h.set(flag::RECLAIM_DONE);
            if h.strong() == 0 {
                // SAFETY: nothing holds it and its value is gone.
                unsafe { free_object(self, o, false) };
            } else {
                // Held by garbage not dropped yet, or by whatever a Drop stored it in. When the
                // last handle goes, `release` frees it (it is marked as being reclaimed, with its
                // value dropped).
            }
        }
        collected
    }
}
