//! `finalize(obj, f)` (SEMANTICS 4.7), Python's `weakref.finalize`: a callable registered
//! against an object, run at most once: when the object dies, when called explicitly, or at heap
//! shutdown (newest first), unless detached.
//!
//! A [`Finalizer`] holds its object only weakly (through a weak reference with a callback), and
//! the heap's registry keeps the registration alive, so dropping the `Finalizer` handle does not
//! cancel it (as in CPython, where `finalize` objects keep themselves alive).

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::rc::Rc;

use crate::local::state::{heap_ptr_of, HeapInner, Registered, UnraisableKind};
use crate::{Gc, Weak};

/// The callable of a [`Finalizer`], as [`Finalizer::detach`] gives it back.
pub type Func<R> = Box<dyn FnOnce() -> R>;

/// Invariant: while `alive`, the registration is in its heap's registry (which the heap runs
/// and empties before it is freed), so `heap` is valid; once not alive, `heap` is never read.
struct State<T: ?Sized + 'static, R: 'static> {
    heap: NonNull<HeapInner>,
    id: u64,
    func: RefCell<Option<Func<R>>>,
    weak: RefCell<Option<Weak<T>>>,
    alive: Cell<bool>,
    /// Whether heap shutdown runs it if still pending (`finalize.atexit`).
    atexit: Cell<bool>,
}

impl<T: ?Sized + 'static, R: 'static> State<T, R> {
    /// Marks it dead and takes the function, if it was alive.
    fn take(&self) -> Option<Func<R>> {
        if !self.alive.replace(false) {
            return None;
        }
        // SAFETY: it was alive, so its heap is (State invariant).
        let heap = unsafe { self.heap.as_ref() };
        let mine = {
            let mut all = heap.finalizers.borrow_mut();
            let at = all.iter().position(|(id, _)| *id == self.id);
            at.map(|at| all.remove(at))
        };
        // Dropped with no borrow held (the caller holds the registration too, so this is not
        // its last owner, but no runtime borrow is ever held across a drop).
        drop(mine);
        // The weak reference goes too: its callback must not fire afterwards.
        let weak = self.weak.borrow_mut().take();
        drop(weak);
        self.func.borrow_mut().take()
    }
}

impl<T: ?Sized + 'static, R: 'static> Registered for State<T, R> {
    fn run_at_shutdown(&self, heap: &HeapInner) {
        let atexit = self.atexit.get();
        if let Some(f) = self.take() {
            if atexit {
                if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
                    heap.report_panic(UnraisableKind::WeakCallback, "reap::Finalizer", p);
                }
            } else if let Some(p) = crate::unraisable::drop_guarded(f) {
                // Not run: only released, and its captures' `Drop`s guarded.
                heap.report_panic(UnraisableKind::Drop, "reap::Finalizer", p);
            }
        }
    }
}

/// A registered `finalize` callable (Python's `weakref.finalize`).
///
/// ```
/// use reap::{finalize, Heap};
/// use std::{cell::RefCell, rc::Rc};
///
/// let heap = Heap::new();
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let obj = heap.alloc(String::from("resource"));
/// let l = log.clone();
/// let f = finalize(&obj, move || l.borrow_mut().push("closed"));
/// assert!(f.alive());
/// drop(obj); // the object dies: the callable runs
/// assert_eq!(*log.borrow(), ["closed"]);
/// assert!(!f.alive());
/// ```
pub struct Finalizer<T: ?Sized + 'static, R: 'static = ()> {
    state: Rc<State<T, R>>,
}

/// Registers `f` to run once when `obj` dies (or when called, or at heap shutdown), unless
/// detached first. Holds no strong handle to `obj`.
pub fn finalize<T: ?Sized + 'static, R: 'static>(
    obj: &Gc<T>,
    f: impl FnOnce() -> R + 'static,
) -> Finalizer<T, R> {
    let heap_ptr = heap_ptr_of(obj.header());
    // SAFETY: the object is alive, so its heap is.
    let heap = unsafe { heap_ptr.as_ref() };
    let id = heap.next_finalizer_id.get();
    heap.next_finalizer_id.set(id + 1);
    let state = Rc::new(State {
        heap: heap_ptr,
        id,
        func: RefCell::new(Some(Box::new(f) as Func<R>)),
        weak: RefCell::new(None),
        alive: Cell::new(true),
        atexit: Cell::new(true),
    });
    let on_death = Rc::downgrade(&state);
    // Untraced: the registration is kept by the heap until it runs, like a root, so what the
    // callable holds lives until then whether the collector sees it or not (as in CPython,
    // where the registry keeps `func` and its arguments).
    let weak = Weak::with_untraced_callback(obj, move |_: &Weak<T>| {
        if let Some(state) = on_death.upgrade() {
            if let Some(f) = state.take() {
                // A panic here is caught and reported by the weak-reference machinery.
                drop(f());
            }
        }
    });
    *state.weak.borrow_mut() = Some(weak);
    heap.finalizers
        .borrow_mut()
        .push((id, state.clone() as Rc<dyn Registered>));
    Finalizer { state }
}

impl<T: ?Sized + 'static, R: 'static> Finalizer<T, R> {
    /// Whether it is still pending (not run, not detached; `finalize.alive`).
    pub fn alive(&self) -> bool {
        self.state.alive.get()
    }

    /// Whether heap shutdown runs it if it is still pending (`finalize.atexit`; true by default).
    pub fn atexit(&self) -> bool {
        self.state.atexit.get()
    }

    /// Sets whether heap shutdown runs it if it is still pending (`finalize.atexit = False`
    /// makes shutdown release it without calling it).
    ///
    /// ```
    /// use reap::{finalize, Heap};
    /// use std::{cell::Cell, rc::Rc};
    ///
    /// let heap = Heap::new();
    /// let ran = Rc::new(Cell::new(0));
    /// let obj = heap.alloc(0_u8);
    /// let r = ran.clone();
    /// let f = finalize(&obj, move || r.set(r.get() + 1));
    /// f.set_atexit(false);
    /// heap.shutdown(); // `obj` is still alive: `f` is released, not run
    /// assert_eq!(ran.get(), 0);
    /// assert!(!f.alive());
    /// drop(obj);
    /// assert_eq!(ran.get(), 0);
    /// ```
    pub fn set_atexit(&self, atexit: bool) {
        self.state.atexit.set(atexit);
    }

    /// Runs the callable now if it is still pending, and returns its result; `None` if it already
    /// ran or was detached (`finalize.__call__`). It never runs again.
    pub fn call(&self) -> Option<R> {
        let f = self.state.take()?;
        Some(f())
    }

    /// Unregisters it without running it, returning the object (if alive) and the callable
    /// (`finalize.detach`); `None` if it already ran or was detached.
    pub fn detach(&self) -> Option<(Option<Gc<T>>, Func<R>)> {
        let obj = self.peek_object();
        let f = self.state.take()?;
        Some((obj, f))
    }

    /// The object, if the registration is pending and the object alive (`finalize.peek`, which
    /// also returns the callable; a `FnOnce` cannot be lent out, so only the object is).
    pub fn peek(&self) -> Option<Gc<T>> {
        if !self.alive() {
            return None;
        }
        self.peek_object()
    }

    fn peek_object(&self) -> Option<Gc<T>> {
        self.state.weak.borrow().as_ref()?.upgrade()
    }
}

impl HeapInner {
    /// Runs the pending `finalize` registrations, newest first (SEMANTICS 4.7, 5.5). A
    /// registration made while they run (by one of them) runs too.
    pub(crate) fn run_pending_finalizers(&self) {
        loop {
            let last = self.finalizers.borrow().last().map(|(_, r)| r.clone());
            match last {
                Some(r) => r.run_at_shutdown(self),
                None => break,
            }
        }
    }
}

// The registration is shared with the heap's list of pending registrations, so the weak
// reference it holds is not this handle's to report (reporting it from a garbage owner would let
// the collector take the weak reference from under the registration).
// SAFETY: visits nothing, which is allowed (at worst a leak).
unsafe impl<T: ?Sized + 'static, R: 'static> crate::Trace for Finalizer<T, R> {
    fn trace(&self, _: &mut crate::Tracer<'_>) {}
    fn needs_trace() -> bool {
        false
    }
}
