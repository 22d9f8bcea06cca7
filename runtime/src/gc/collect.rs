//! One collection, on this heap: the runtime's side of `reap_collector::collect`.
//!
//! The order of the phases (SEMANTICS 2) is `reap_collector::collect`; this module implements
//! `CollectorHeap` (trial deletion's view of object headers) and `CollectionPhases` (each phase,
//! on the heap's lists) for [`HeapInner`]:
//!
//! - while a candidate is being collected, its list links are the collector's: `prev` holds the
//!   scratch count (plus one, so it is never null), `next` is unused until the candidate is
//!   relinked;
//! - marks are header flags: `COLLECTING` (candidate), `REACHABLE`; the tracer only reads and
//!   writes the marks of this heap's objects (a handle into another heap is a reference from
//!   outside, ignored), so a collection of one heap run from user code during another's never
//!   touches the other's candidates or garbage;
//! - from partitioning on, the garbage is in no list and marked `UNLINKED | COLLECTING`: held
//!   back from the refcount path, so while user code runs (weak-reference callbacks, finalizers)
//!   a garbage object whose count reaches zero stays allocated for reclaim (`heap::release`);
//! - reclaim marks the garbage `RECLAIMING` (no weak reference upgrades to it from then on),
//!   clears the weak references made to it since the weak phase and runs their callbacks, then
//!   drops each value (`VALUE_DROPPED`: a handle to it now panics on use instead of reading
//!   freed memory) and clears `COLLECTING`; the object is freed once nothing holds it.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use reap_collector::{
    CallbackPhase, CollectionInfo, CollectionPhases, CollectorHeap, Generations, Mark, Partition,
};

use crate::gc::introspect::any_handle;
use crate::gc::introspect::DebugFlags;
use crate::local::heap::{free_object, release};
use crate::local::state::{HeapInner, UnraisableKind};
use crate::object::header::{Flags, Header, Links, Root};
use crate::trace::Tracer;

impl CollectorHeap for HeapInner {
    type Object = NonNull<Header>;

    fn strong_count(&self, o: NonNull<Header>) -> usize {
        // SAFETY: candidates are live objects.
        unsafe { o.as_ref() }.strong() as usize
    }

    fn scratch(&self, o: NonNull<Header>) -> usize {
        // SAFETY: scratch is asked only of candidates, which are tracked; their links are the
        // collector's until they are relinked.
        unsafe { Header::links(o).as_ref() }
            .prev
            .get()
            .as_ptr()
            .addr()
            - 1
    }

    fn set_scratch(&self, o: NonNull<Header>, value: usize) {
        // The scratch count lives in the `prev` link word, which relinking rewrites. A pointer
        // is never null: store it plus one.
        let word = NonNull::new(std::ptr::without_provenance_mut::<Links>(value + 1))
            .expect("scratch overflow");
        // SAFETY: as above.
        unsafe { Header::links(o).as_ref() }.prev.set(word);
    }

    fn mark(&self, o: NonNull<Header>) -> Mark {
        // SAFETY: handles lead to allocated objects.
        let h = unsafe { o.as_ref() };
        if !h.has(Flags::COLLECTING) {
            Mark::Outside
        } else if h.has(Flags::REACHABLE) {
            Mark::Reachable
        } else {
            Mark::Candidate
        }
    }

    fn set_mark(&self, o: NonNull<Header>, mark: Mark) {
        // SAFETY: as above.
        let h = unsafe { o.as_ref() };
        match mark {
            Mark::Outside => h.clear(Flags::COLLECTING | Flags::REACHABLE),
            Mark::Candidate => {
                h.set(Flags::COLLECTING);
                h.clear(Flags::REACHABLE);
            }
            Mark::Reachable => h.set(Flags::COLLECTING | Flags::REACHABLE),
        }
    }

    fn visit_edges(&self, o: NonNull<Header>, visit: &mut dyn FnMut(NonNull<Header>)) -> bool {
        // Only this heap's objects: another heap's marks are not this collection's.
        let slot = self.slot;
        let mut own = |t: NonNull<Header>| {
            // SAFETY: handles lead to allocated objects.
            if unsafe { t.as_ref() }.heap == slot {
                visit(t);
            }
        };
        self.trace_with(o, Tracer::new(&mut own))
    }

    fn subtract_edges(&self, o: NonNull<Header>) -> bool {
        self.trace_with(o, Tracer::subtract(self.candidate_key))
    }

    fn mark_edges(&self, o: NonNull<Header>, stack: &mut Vec<NonNull<Header>>) {
        self.trace_with(o, Tracer::mark(stack, self.candidate_key));
    }

    fn discover(&self, o: NonNull<Header>) -> bool {
        self.discover_candidate(o)
    }

    /// Through the general tracer (one indirect call per handle): a fourth mode in `Tracer`
    /// kept its two hot modes from inlining into every `trace`, which cost every collection.
    fn discover_edges(&self, o: NonNull<Header>, found: &mut Vec<NonNull<Header>>) -> bool {
        let key = self.candidate_key;
        let mut visit = |t: NonNull<Header>| {
            // SAFETY: handles lead to allocated objects.
            let h = unsafe { t.as_ref() };
            let candidate = h.is_unmarked_candidate_of(key) || {
                let new = self.discover_candidate(t);
                if new {
                    found.push(t);
                }
                new
            };
            if candidate {
                // SAFETY: a candidate's links are the collector's.
                unsafe { Header::set_scratch(t, Header::scratch(t).saturating_sub(1)) };
            }
        };
        self.trace_with(o, Tracer::new(&mut visit))
    }
}

impl HeapInner {
    /// Traces a candidate with `tracer`. Returns `false` if the traversal was incomplete.
    #[inline]
    fn trace_with(&self, o: NonNull<Header>, mut tracer: Tracer<'_>) -> bool {
        // SAFETY: candidates are live and their values initialised.
        let h = unsafe { o.as_ref() };
        let vtable = h.vtable();
        // SAFETY: the value is live (candidates never have dropped values).
        unsafe { (vtable.trace)(Header::value_ptr(o), &mut tracer) };
        if tracer.is_incomplete() {
            // Kept without being traced: what it holds may be garbage once the borrow ends,
            // with no drop to flag it, so it stays a possible root.
            self.note_possible_root(o);
            false
        } else {
            true
        }
    }

    /// Puts objects into the list `to`.
    fn relink(&self, objects: &[NonNull<Header>], to: usize) {
        for &o in objects {
            // SAFETY: the objects are allocated and in no list (their links were the
            // collector's).
            unsafe { self.lists[to].push_back(Header::links(o)) };
        }
        self.listed.set(self.listed.get() + objects.len());
    }

    /// [`CollectorHeap::discover`]: during a full collection from possible roots, makes `o` a
    /// candidate if it is one of this heap's tracked objects, alive, in a generation list (the
    /// permanent set is empty then: `take_possible_roots`) and not a candidate yet. It leaves its
    /// list, as gathered candidates do, so its links can hold the scratch count.
    #[inline]
    pub(crate) fn discover_candidate(&self, o: NonNull<Header>) -> bool {
        // SAFETY: handles and roots lead to allocated objects.
        let h = unsafe { o.as_ref() };
        if h.heap != self.slot
            || !h.has(Flags::TRACKED)
            || h.has(Flags::COLLECTING | Flags::UNLINKED)
            || h.strong() == 0
        {
            return false;
        }
        // SAFETY: a tracked object of this heap that is neither a candidate nor unlinked is in
        // one of its lists.
        unsafe { Links::unlink(Header::links(o)) };
        self.listed.set(self.listed.get() - 1);
        self.prepare(o, h);
        true
    }

    /// The clear phase (SEMANTICS 2.7): every garbage object whose type has a clear hook lets go
    /// of its handles while all of the garbage is still whole. Handles released here to other
    /// garbage only lower counts (`COLLECTING` keeps those objects for the loop that drops the
    /// values); handles to anything else may free it on the spot, running its user code.
    pub(crate) fn run_clear_hooks(&self, garbage: &[NonNull<Header>]) {
        if !self.clear_hooks.get() {
            return;
        }
        for &o in garbage {
            // SAFETY: garbage stays allocated (held back by `COLLECTING`) and its value
            // initialised until the value-dropping loop.
            let vtable = unsafe { o.as_ref() }.vtable();
            let clear = vtable.clear;
            // SAFETY: the value is live and initialised (above).
            let r = catch_unwind(AssertUnwindSafe(|| unsafe { clear(Header::value_ptr(o)) }));
            if let Err(p) = r {
                self.report_panic_on(UnraisableKind::Clear, (vtable.type_name)(), p, Some(o));
            }
        }
    }

    /// Step 1 of trial deletion for one object: scratch count from the strong count, marked a
    /// candidate.
    fn prepare(&self, o: NonNull<Header>, h: &Header) {
        self.set_scratch(o, h.strong() as usize);
        h.set(Flags::COLLECTING);
        h.clear(Flags::REACHABLE);
    }
}

/// A full collection discovers its candidates only if generation 0 and the record of possible
/// roots hold fewer than one object for this many listed ones (the collector checks the roots
/// it is handed against the same ratio).
const DISCOVERY_RATIO: usize = reap_collector::DISCOVERY_RATIO;

impl CollectionPhases for HeapInner {
    fn generations(&self) -> &Generations {
        &self.gens
    }

    fn run_callbacks(&self, phase: CallbackPhase, info: &CollectionInfo) {
        self.run_collect_callbacks(phase, info);
    }

    /// The record of possible roots, unless the permanent set holds objects: the collection
    /// would have to tell its objects from the generations' while discovering, so it gathers
    /// instead (walking the generations, not the permanent set).
    fn take_possible_roots(&self, young: usize) -> Option<Vec<NonNull<Header>>> {
        // An examination of everything is due, or asked for: gather (and no shortcut in
        // `count_if_no_possible_root`).
        let exhaustive = self.exhaustive_due();
        self.possible_roots.force_exhaustive.set(false);
        self.possible_roots.exhaustive_now.set(exhaustive);
        if exhaustive || !self.lists[3].is_empty() {
            return None;
        }
        // Generation 0's objects are all roots or walked: when they and the record make up a
        // large part of the heap, gathering everything costs less than walking, then
        // discovering (generation 0's count at the start, allocations less deallocations since
        // the last collection, stands in for its length).
        if (self.possible_roots.len() + young).saturating_mul(DISCOVERY_RATIO) >= self.listed.get()
        {
            return None;
        }
        let mut roots = self.possible_roots.take(&self.slabs);
        // Generation 0's possible roots are not recorded: walk it. Its objects are all about to
        // leave it (candidates for generation 2, the rest spliced there).
        // SAFETY: this heap's list head; the walk only marks.
        for o in unsafe { self.lists[0].objects() } {
            // SAFETY: listed objects are allocated.
            let h = unsafe { o.as_ref() };
            let r = h.root.get();
            h.root.set(r.difference(Root::POSSIBLE) | Root::OLD);
            if r.contains(Root::POSSIBLE) && h.strong() > 0 {
                roots.push(o);
            }
        }
        Some(roots)
    }

    fn population(&self) -> usize {
        let n = self.listed.get();
        if cfg!(debug_assertions) && n < 50_000 {
            let walked: usize = self
                .lists
                .iter()
                // SAFETY: this heap's list heads; counting runs no user code.
                .map(|head| unsafe { head.objects() }.count())
                .sum();
            debug_assert_eq!(walked, n, "reap: the count of listed objects is off");
        }
        n
    }

    fn count_if_no_possible_root(&self, g: usize) -> Option<usize> {
        if self.possible_roots.exhaustive_now.get() {
            // An examination of everything looks past the marks.
            return None;
        }
        let mut n = 0;
        // Walked by hand rather than with `Links::objects`: this is the walk before every young
        // collection, and the iterator cost one more instruction per object here (cachegrind,
        // `reap-stress trees --size 0.1`: 194.5M to 195.2M in all).
        for gen in 0..=g {
            let head = &self.lists[gen];
            let mut cur = head.next.get();
            while cur != NonNull::from(head) {
                let o = Header::from_links(cur);
                // SAFETY: listed objects are allocated.
                if unsafe { o.as_ref() }.is_possible_root() {
                    return None;
                }
                // No possible root so far: if none follows, it is aged out of generation 0.
                self.promote(o);
                n += 1;
                // SAFETY: as above.
                cur = unsafe { cur.as_ref() }.next.get();
            }
        }
        Some(n)
    }

    fn age(&self, g: usize, to: usize) {
        for gen in 0..=g {
            if gen != to {
                // SAFETY: both are this heap's initialised list heads.
                unsafe { self.lists[gen].splice_into(&self.lists[to]) };
            }
        }
    }

    /// Takes every object of generations `0..=g` out of its list, prepared for trial deletion.
    /// Objects whose death has begun (count 0) are not candidates and go straight back.
    ///
    /// A full collection (`g == 2`) also clears the candidates' possible-root marks: whatever it
    /// finds reachable is reachable from outside the heap's collectable objects, so only a later
    /// drop can make it garbage, and that drop marks it again. A younger collection must leave
    /// the marks: a young object may be reachable only through an old object that is itself
    /// garbage (a cycle across generations), which only a full collection can tell, and it needs
    /// the mark to look at all.
    fn gather(&self, g: usize) -> Vec<NonNull<Header>> {
        let mut candidates = Vec::new();
        let full = g == 2;
        for head in &self.lists[..=g] {
            // SAFETY: this heap's list head. Each object is relinked (back onto this head) or
            // taken out only once yielded, and no user code runs.
            let objects = unsafe { head.objects() };
            head.init_empty();
            for o in objects {
                // SAFETY: listed objects are allocated.
                let h = unsafe { o.as_ref() };
                if h.strong() == 0 {
                    // SAFETY: its links are free (the list was reset) and the head is valid.
                    unsafe { head.push_back(Header::links(o)) };
                } else {
                    if full {
                        h.clear_possible_root();
                    }
                    self.prepare(o, h);
                    candidates.push(o);
                }
            }
        }
        self.listed.set(self.listed.get() - candidates.len());
        candidates
    }

    fn abandon(&self, candidates: &[NonNull<Header>], to: usize, panic: Box<dyn Any + Send>) {
        // Real counts were never touched: keep everything, as survivors, and as possible roots
        // so the next collection looks again.
        for &o in candidates {
            // SAFETY: allocated.
            let h = unsafe { o.as_ref() };
            h.clear(Flags::COLLECTING | Flags::REACHABLE | Flags::UNLINKED);
            self.note_possible_root(o);
            self.promote(o);
        }
        self.relink(candidates, to);
        self.report_panic(
            UnraisableKind::Drop,
            "reap::Trace (collection abandoned)",
            panic,
        );
        for &o in candidates {
            // SAFETY: allocated (held back until now).
            if unsafe { o.as_ref() }.strong() == 0 {
                // A finalizer broke its last reference while it was held back: it dies now.
                // SAFETY: count 0, death not begun.
                unsafe { release(o) };
            }
        }
    }

    /// One pass: survivors leave their marks and move to generation `to`; the garbage keeps its
    /// COLLECTING mark (so weak references that are garbage can be told apart) and is marked
    /// UNLINKED: together, "held back for reclaim" (`heap::release` leaves such an object alone
    /// when its count reaches zero, so the garbage stays allocated through the user code of the
    /// next phases).
    fn partition(&self, candidates: Vec<NonNull<Header>>, to: usize) -> Partition<NonNull<Header>> {
        let mut part = Partition {
            survivors: 0,
            garbage: Vec::new(),
            needs_weak_phase: false,
            needs_finalizers: false,
        };
        let to = &self.lists[to];
        for o in candidates {
            // SAFETY: candidates are allocated and their links are free.
            let h = unsafe { o.as_ref() };
            if h.has(Flags::REACHABLE) {
                h.clear(Flags::COLLECTING | Flags::REACHABLE);
                // SAFETY: links free, head valid.
                unsafe { to.push_back(Header::links(o)) };
                self.promote(o);
                part.survivors += 1;
            } else {
                // Weak references to garbage must be cleared, and garbage weak references
                // detached, before any user code runs (finalizers, or drops during reclaim).
                part.needs_weak_phase |= h.has_weak_info() || crate::local::weak::is_weakref(h);
                part.needs_finalizers |= h.has(Flags::HAS_FINALIZER) && !h.has(Flags::FINALIZED);
                h.set(Flags::UNLINKED);
                part.garbage.push(o);
            }
        }
        self.listed.set(self.listed.get() + part.survivors);
        part
    }

    /// Phase 2.4: weak references. `garbage` is the unreachable set, still marked.
    fn handle_weakrefs(&self, garbage: &[NonNull<Header>]) -> usize {
        let mut calls = Vec::new();
        for &o in garbage {
            // SAFETY: no user code has run since trial deletion: the garbage is allocated.
            unsafe { crate::local::weak::clear_for_collection(o, &mut calls) };
        }
        for &o in garbage {
            // SAFETY: as above.
            unsafe { crate::local::weak::detach_if_weakref(o) };
        }
        crate::local::weak::run_callbacks(self, calls)
    }

    /// Phase 2.5: runs each garbage object's finalizer once, holding the object meanwhile.
    /// Garbage whose count reaches zero (a finalizer broke its cycle) is not freed here: the
    /// garbage is held back from the refcount path until reclaim (see `heap::release`), so every
    /// object of `garbage` stays allocated.
    fn finalize_garbage(&self, garbage: &[NonNull<Header>]) -> bool {
        let mut any = false;
        for &o in garbage {
            // SAFETY: garbage stays allocated until reclaim.
            let h = unsafe { o.as_ref() };
            if h.has(Flags::HAS_FINALIZER) && !h.has(Flags::FINALIZED) {
                any = true;
                self.finalizers_run.set(self.finalizers_run.get() + 1);
                h.set(Flags::FINALIZED);
                h.inc_strong();
                let vtable = h.vtable();
                // SAFETY: the object is live and the runtime holds the count just added.
                let r = catch_unwind(AssertUnwindSafe(|| unsafe { (vtable.finalize)(o) }));
                if let Err(p) = r {
                    self.report_panic_on(
                        UnraisableKind::Finalizer,
                        (vtable.type_name)(),
                        p,
                        Some(o),
                    );
                }
                h.set_strong(h.strong() - 1);
            }
        }
        any
    }

    fn prepare_resurrection_check(&self, garbage: &[NonNull<Header>]) {
        for &o in garbage {
            // SAFETY: garbage stays allocated until reclaim.
            self.prepare(o, unsafe { o.as_ref() });
        }
    }

    /// Resurrected objects (reachable now) move to generation `to`, the survivors' (CPython
    /// 3.11–3.13's `handle_resurrected_objects`), with their finalized mark; the rest is
    /// returned, marked for reclaim (no user code runs before reclaim, so it needs no list).
    fn partition_resurrected(
        &self,
        garbage: Vec<NonNull<Header>>,
        to: usize,
    ) -> Vec<NonNull<Header>> {
        let mut still = Vec::with_capacity(garbage.len());
        for o in garbage {
            // SAFETY: garbage stays allocated until reclaim; its links are the collector's.
            let h = unsafe { o.as_ref() };
            if h.has(Flags::REACHABLE) {
                h.clear(Flags::COLLECTING | Flags::REACHABLE | Flags::UNLINKED);
                // SAFETY: links free, head valid.
                unsafe { self.lists[to].push_back(Header::links(o)) };
                self.listed.set(self.listed.get() + 1);
                // What it was stored in may be garbage now: a possible root, as on the
                // refcount path.
                self.note_possible_root(o);
                self.promote(o);
            } else {
                still.push(o);
            }
        }
        still
    }

    /// Phase 7: breaks the cycles and frees the garbage (SEMANTICS 2.7). `garbage` is in no
    /// list. Returns how many objects were collected.
    ///
    /// Each object is marked `RECLAIMING`, the weak references made to it during the
    /// collection are cleared (their callbacks run), then, one by one, its value is dropped and,
    /// if nothing holds it any more, it is freed at once. A garbage object whose count reaches
    /// zero while another value drops is freed right there if its own value is already gone
    /// (its `COLLECTING` mark cleared), or left for its turn in the loop (see `heap::release`).
    /// Whatever is still held at the end (a `Drop` stored a handle) stays allocated with its
    /// value dropped, and is freed by its last handle.
    fn reclaim(&self, garbage: Vec<NonNull<Header>>, to: usize) -> usize {
        let collected = garbage.len();
        if self.gcmod.debug.get().contains(DebugFlags::SAVEALL) {
            // DEBUG_SAVEALL: the garbage is kept, whole, in the garbage list, and stays tracked
            // in the survivors' generation.
            let mut saved = self.gcmod.garbage.borrow_mut();
            for &o in &garbage {
                // SAFETY: allocated and live (its count is above 0: garbage is held by
                // garbage); links free.
                unsafe {
                    o.as_ref()
                        .clear(Flags::COLLECTING | Flags::REACHABLE | Flags::UNLINKED);
                    saved.push(any_handle(o));
                    self.lists[to].push_back(Header::links(o));
                }
                self.promote(o);
            }
            self.listed.set(self.listed.get() + collected);
            return collected;
        }
        self.gens.note_deallocations(collected);
        // Reclaim begins: from here on no weak reference upgrades to the garbage, not even one
        // a `Drop` below makes (SEMANTICS 2.7).
        // Weak references made to the garbage during the collection (by finalizers or callbacks)
        // are cleared now and their callbacks run, as on the refcount path, before any value is
        // dropped. Those callbacks can reach no garbage: their weak references, and what their
        // callbacks hold, were outside the garbage at the resurrection check.
        let mut calls = Vec::new();
        for &o in &garbage {
            // SAFETY: garbage stays allocated until the loop below frees it (held back).
            let h = unsafe { o.as_ref() };
            h.set(Flags::RECLAIMING);
            if h.has_weak_info() {
                // SAFETY: allocated garbage of this collection.
                unsafe { crate::local::weak::clear_for_collection(o, &mut calls) };
            }
        }
        if !calls.is_empty() {
            crate::local::weak::run_callbacks(self, calls);
        }
        self.run_clear_hooks(&garbage);
        // Weak-reference objects without a callback are untracked here (CPython tracks every
        // weak reference); one that only the garbage held dies as the values drop, and CPython
        // counts it with the garbage: so is it here.
        self.reclaim_weakrefs.set(Some(0));
        for &o in &garbage {
            // SAFETY: a reclaimed object is freed only by this loop or, once its `COLLECTING`
            // mark is cleared below, by `release`; this one's is still set: allocated.
            let h = unsafe { o.as_ref() };
            h.set(Flags::VALUE_DROPPED);
            let vtable = h.vtable();
            // SAFETY: the value is initialised; from now on handles to it panic on use.
            let r = catch_unwind(AssertUnwindSafe(|| unsafe {
                (vtable.drop_value)(Header::value_ptr(o))
            }));
            if let Err(p) = r {
                self.report_panic(UnraisableKind::Drop, (vtable.type_name)(), p);
            }
            // Reclaimed. If something still holds it (garbage not dropped yet, or whatever a
            // `Drop` stored it in), `release` frees it when the last handle goes.
            h.clear(Flags::COLLECTING);
            if h.strong() == 0 {
                // SAFETY: nothing holds it and its value is gone.
                unsafe { free_object(self, o, false) };
            }
        }
        collected + self.reclaim_weakrefs.take().unwrap_or(0)
    }

    fn collection_done(&self, info: &CollectionInfo, survivors: usize) {
        if info.generation == 2 {
            // The listed objects, not the collector's survivors: counted as the trigger counts
            // them (the permanent set included), and whole after an abandoned collection
            // (which reports none).
            self.note_full_survivors(self.listed.get());
        }
        if self.gcmod.debug.get().contains(DebugFlags::STATS) {
            eprintln!(
                "reap: gc: generation {}: {} collected, 0 uncollectable, {survivors} survivors, {:.3} ms",
                info.generation,
                info.collected,
                info.duration.as_secs_f64() * 1000.0
            );
        }
    }
}
