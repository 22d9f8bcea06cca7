//! The `gc` module surface (SEMANTICS 6): type-erased handles to heap objects, referents and
//! referrers, objects per generation, freezing, collection callbacks, debug flags and the
//! `garbage` list.

use std::ptr::NonNull;

pub(crate) use crate::local::gcstate::{any_handle, members};
pub use crate::local::gcstate::{AnyGc, CollectCallback, CollectInfo, CollectPhase, DebugFlags};
use crate::local::state::{Heap, HeapInner};
use crate::object::header::{Flags, Header};
use crate::trace::Tracer;
use crate::Gc;

/// Whether handles to the object may be made: alive and with its value intact.
fn usable(o: NonNull<Header>) -> bool {
    // SAFETY: listed or visited objects are allocated.
    let h = unsafe { o.as_ref() };
    h.strong() > 0 && !h.has(Flags::VALUE_DROPPED)
}

/// The handles the object's value holds, as headers; none once its value is dropped (a
/// reclaimed object kept by a handle that a `Drop` stored: its value must not be traced).
fn edges(o: NonNull<Header>) -> Vec<NonNull<Header>> {
    let mut out = Vec::new();
    // SAFETY: callers pass allocated objects.
    if unsafe { o.as_ref() }.has(Flags::VALUE_DROPPED) {
        return out;
    }
    let mut visit = |t: NonNull<Header>| out.push(t);
    let mut tracer = Tracer::new(&mut visit);
    // SAFETY: allocated with an intact value (checked above).
    unsafe { (o.as_ref().vtable().trace)(Header::value_ptr(o), &mut tracer) };
    out
}

impl HeapInner {
    /// Runs the collection callbacks, each under a panic guard (SEMANTICS 2.1).
    pub(crate) fn run_collect_callbacks(&self, phase: CollectPhase, info: &CollectInfo) {
        let callbacks: Vec<_> = self
            .gcmod
            .callbacks
            .borrow()
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        for cb in callbacks {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(phase, info)));
            if let Err(p) = r {
                self.report_panic(
                    crate::UnraisableKind::CollectionCallback,
                    "collection callback",
                    p,
                );
            }
            // If the callback removed itself, this is its last owner: its captures' `Drop`s
            // are user code.
            if let Some(p) = crate::unraisable::drop_guarded(cb) {
                self.report_panic(crate::UnraisableKind::Drop, "collection callback", p);
            }
        }
    }
}

impl Heap {
    /// `gc.get_objects(generation)`: handles to the tracked objects of generation `g` (0..=2), or
    /// of every generation with `None`. The permanent (frozen) set is left out, as in CPython.
    ///
    /// # Panics
    /// If `g > 2` (CPython raises `ValueError`).
    pub fn get_objects(&self, g: Option<usize>) -> Vec<AnyGc> {
        let inner = self.inner();
        let gens: Vec<usize> = match g {
            Some(g) => {
                assert!(g <= 2, "reap: generation {g} out of range 0..=2");
                vec![g]
            }
            None => vec![0, 1, 2],
        };
        let mut out = Vec::new();
        for gen in gens {
            for o in members(&inner.lists[gen]) {
                if usable(o) {
                    // SAFETY: live with an intact value (checked).
                    out.push(unsafe { any_handle(o) });
                }
            }
        }
        out
    }

    /// `gc.get_referents(obj)`: handles to the objects `obj` holds handles to, in tracing order.
    pub fn get_referents<T: ?Sized>(&self, obj: &Gc<T>) -> Vec<AnyGc> {
        edges(obj.header_ptr())
            .into_iter()
            .filter(|&o| usable(o))
            // SAFETY: held by `obj`, so live; value intact (checked).
            .map(|o| unsafe { any_handle(o) })
            .collect()
    }

    /// `gc.get_referrers(obj)`: handles to the tracked objects of generations 0–2 that hold a
    /// handle to `obj`. The permanent (frozen) set is not scanned, as in CPython.
    pub fn get_referrers<T: ?Sized>(&self, obj: &Gc<T>) -> Vec<AnyGc> {
        let target = obj.header_ptr();
        let inner = self.inner();
        let mut out = Vec::new();
        for head in &inner.lists[..3] {
            for o in members(head) {
                if usable(o) && edges(o).contains(&target) {
                    // SAFETY: live with an intact value (checked).
                    out.push(unsafe { any_handle(o) });
                }
            }
        }
        out
    }

    /// `gc.freeze()`: moves every tracked object into the permanent set, which no collection
    /// examines, and sets the generation counts to zero (SEMANTICS 1.6).
    pub fn freeze(&self) {
        let inner = self.inner();
        // Generation 0's objects leave it: marked old (and recorded if possible roots).
        // SAFETY: this heap's list head; `promote` marks and records, relinking nothing and
        // running no user code.
        for o in unsafe { inner.lists[0].objects() } {
            inner.promote(o);
        }
        for g in 0..3 {
            // SAFETY: this heap's list heads.
            unsafe { inner.lists[g].splice_into(&inner.lists[3]) };
        }
        // CPython 3.11–3.13's `gc.freeze()` sets every generation's count to zero.
        inner.gens.clear_counts();
    }

    /// `gc.unfreeze()`: moves the permanent set back into generation 2.
    pub fn unfreeze(&self) {
        let inner = self.inner();
        // SAFETY: this heap's list heads.
        unsafe { inner.lists[3].splice_into(&inner.lists[2]) };
    }

    /// `gc.get_freeze_count()`: the number of objects in the permanent set.
    pub fn get_freeze_count(&self) -> usize {
        self.generation_len(3)
    }

    /// Registers a collection callback (`gc.callbacks.append`); it runs at the start and stop of
    /// every collection. Returns an id for [`Heap::remove_collect_callback`]. A panic in it is
    /// reported to the unraisable hook and the collection goes on.
    pub fn add_collect_callback(&self, cb: CollectCallback) -> u64 {
        let m = &self.inner().gcmod;
        let id = m.next_callback_id.get();
        m.next_callback_id.set(id + 1);
        m.callbacks.borrow_mut().push((id, std::rc::Rc::new(cb)));
        id
    }

    /// Removes a collection callback; returns whether it was registered.
    pub fn remove_collect_callback(&self, id: u64) -> bool {
        let removed = {
            let mut cbs = self.inner().gcmod.callbacks.borrow_mut();
            let at = cbs.iter().position(|(i, _)| *i == id);
            at.map(|at| cbs.remove(at))
        };
        // Dropped with no borrow held: the callback's captures may run user code.
        let found = removed.is_some();
        if let Some(p) = crate::unraisable::drop_guarded(removed) {
            self.inner()
                .report_panic(crate::UnraisableKind::Drop, "collection callback", p);
        }
        found
    }

    /// `gc.set_debug(flags)`: a combination of [`DebugFlags::STATS`] and
    /// [`DebugFlags::SAVEALL`].
    pub fn set_debug(&self, flags: DebugFlags) {
        self.inner().gcmod.debug.set(flags);
    }

    /// `gc.get_debug()`.
    pub fn get_debug(&self) -> DebugFlags {
        self.inner().gcmod.debug.get()
    }

    /// `gc.garbage`: the objects collections found with [`DebugFlags::SAVEALL`] set, kept alive here.
    pub fn garbage(&self) -> Vec<AnyGc> {
        self.inner().gcmod.garbage.borrow().clone()
    }

    /// Empties `gc.garbage` (`gc.garbage.clear()`), releasing the objects.
    pub fn clear_garbage(&self) {
        let g = std::mem::take(&mut *self.inner().gcmod.garbage.borrow_mut());
        drop(g);
    }
}
