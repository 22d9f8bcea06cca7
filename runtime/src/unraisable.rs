//! Reports of what the runtime caught and could hand to no caller (SEMANTICS 5.4): panics in
//! finalizers, weak-reference callbacks, clear hooks, `Drop`s and collection callbacks, and
//! shutdown problems; CPython's `sys.unraisablehook`. Also the optional panic hook that records
//! where panics happen, and the guarded drops of panic payloads and runtime-owned closures.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Where a panic caught by the runtime came from (SEMANTICS 5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnraisableKind {
    /// An object's finalizer.
    Finalizer,
    /// A weak-reference callback.
    WeakCallback,
    /// The `Drop` of an object's value.
    Drop,
    /// An object's clear hook ([`Clear`](crate::Clear)).
    Clear,
    /// A collection callback.
    CollectionCallback,
    /// Heap shutdown found objects still held from outside.
    Shutdown,
}

/// A panic (or shutdown problem) the runtime caught and could not hand to anyone: what
/// CPython passes to `sys.unraisablehook`.
pub struct Unraisable {
    /// Where it came from.
    pub kind: UnraisableKind,
    /// The type name of the object concerned.
    pub type_name: &'static str,
    /// The panic message (or a description).
    pub message: String,
    /// See [`Unraisable::object`].
    pub(crate) object: Option<crate::AnyGc>,
    /// See [`Unraisable::location`].
    pub(crate) location: Option<PanicLocation>,
    /// See [`Unraisable::payload`].
    pub(crate) payload: Option<Box<dyn Any + Send>>,
}

impl fmt::Debug for Unraisable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unraisable")
            .field("kind", &self.kind)
            .field("type_name", &self.type_name)
            .field("message", &self.message)
            .field("object", &self.object.as_ref().map(crate::Gc::as_ptr))
            .field("location", &self.location)
            .field("payload", &self.payload.is_some())
            .finish()
    }
}

impl Unraisable {
    /// The object concerned, while the hook runs: the object whose finalizer panicked (the
    /// runtime still holds it) or the weak reference whose callback panicked; `None` for a
    /// `Drop` (the value is gone) and for reports about the heap itself. An interpreter prints
    /// "Exception ignored in: ..." with its repr. Cloning the handle and keeping it resurrects
    /// the object, as storing `self` in `__del__` would; a clone of the report leaves the object
    /// out, so recording reports keeps nothing alive.
    pub fn object(&self) -> Option<&crate::AnyGc> {
        self.object.as_ref()
    }

    /// Where the panic happened (file, line, column), if panic locations are recorded
    /// ([`record_panic_locations`]) and the panic came from `panic!` (a payload thrown with
    /// `resume_unwind` has no location: it is the interpreter's own exception).
    pub fn location(&self) -> Option<&PanicLocation> {
        self.location.as_ref()
    }

    /// The panic's payload, while the hook runs: what was passed to `panic!` or
    /// `std::panic::resume_unwind` (an interpreter's exception value, say), for the hook to
    /// downcast. The runtime drops it after the hook returns.
    ///
    /// ```
    /// use reap::{Finalize, Gc, Heap, Trace, Unraisable};
    /// use std::{cell::RefCell, rc::Rc};
    ///
    /// /// An exception of the language, as the interpreter throws it out of a `__del__`.
    /// struct PyException { class: &'static str, message: String }
    ///
    /// #[derive(Trace)]
    /// #[reap(finalize)]
    /// struct Broken;
    /// impl Finalize for Broken {
    ///     fn finalize(_: &Gc<Self>) {
    ///         let e = PyException { class: "ValueError", message: "boom".into() };
    ///         std::panic::resume_unwind(Box::new(e));
    ///     }
    /// }
    ///
    /// let heap = Heap::new();
    /// let seen = Rc::new(RefCell::new(Vec::new()));
    /// let s = seen.clone();
    /// heap.set_unraisable_hook(Some(Box::new(move |u: &Unraisable| {
    ///     if let Some(e) = u.payload().and_then(|p| p.downcast_ref::<PyException>()) {
    ///         s.borrow_mut().push(format!("Exception ignored: {}: {}", e.class, e.message));
    ///     }
    /// })));
    /// drop(heap.alloc(Broken));
    /// assert_eq!(*seen.borrow(), ["Exception ignored: ValueError: boom"]);
    /// ```
    pub fn payload(&self) -> Option<&(dyn Any + Send)> {
        self.payload.as_deref()
    }

    pub(crate) fn new(kind: UnraisableKind, type_name: &'static str, message: String) -> Self {
        Unraisable {
            kind,
            type_name,
            message,
            object: None,
            location: None,
            payload: None,
        }
    }
}

/// Copies the report without its object and payload (see [`Unraisable::object`]).
impl Clone for Unraisable {
    fn clone(&self) -> Self {
        Unraisable {
            location: self.location.clone(),
            ..Unraisable::new(self.kind, self.type_name, self.message.clone())
        }
    }
}

impl fmt::Display for Unraisable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            UnraisableKind::Finalizer => "finalizer of",
            UnraisableKind::WeakCallback => "weak-reference callback for",
            UnraisableKind::Drop => "drop of",
            UnraisableKind::Clear => "clear hook of",
            UnraisableKind::CollectionCallback => "collection callback of",
            UnraisableKind::Shutdown => "shutdown of",
        };
        write!(
            f,
            "reap: exception ignored in {what} {}: {}",
            self.type_name, self.message
        )?;
        if let Some(at) = &self.location {
            write!(f, " (at {at})")?;
        }
        Ok(())
    }
}

/// The unraisable hook's type: called with each report.
pub type UnraisableHook = Box<dyn Fn(&Unraisable)>;

/// Drops a caught panic's payload. The payload's own `Drop` is user code and may panic in turn
/// (with another payload whose `Drop` may panic...): each such panic is caught, and after a few
/// rounds the last payload is leaked rather than dropped, so no panic ever leaves the runtime.
pub(crate) fn drop_payload(payload: Box<dyn Any + Send>) {
    let mut payload = payload;
    for _ in 0..8 {
        match catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(next) => payload = next,
        }
    }
    std::mem::forget(payload);
}

/// Drops a value whose `Drop` is user code (a closure the runtime held, say), catching a panic
/// and dropping its payload safely. Returns the panic's payload, if any, for a report.
pub(crate) fn drop_guarded<T>(value: T) -> Option<Box<dyn Any + Send>> {
    catch_unwind(AssertUnwindSafe(move || drop(value))).err()
}

/// Writes a report to stderr, ignoring a failed write (`eprintln!` would panic).
pub(crate) fn print_unraisable(u: &Unraisable) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{u}");
}

/// Where a panic happened, as the panic hook saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PanicLocation {
    /// The source file.
    pub file: String,
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1.
    pub column: u32,
}

impl fmt::Display for PanicLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

thread_local! {
    /// The last panic of this thread, as the recording hook saw it: its message and location.
    static LAST_PANIC: RefCell<Option<(String, PanicLocation)>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that records where each panic happens, so that
/// [`Unraisable::location`] can say it, then calls the hook that was installed before (so what
/// panics print is unchanged). The runtime never installs it by itself: it changes
/// process-wide state, which is the embedder's to decide. A hook set later replaces it (then
/// locations are `None`). Call it at start-up, not while panicking.
///
/// ```
/// use reap::{Finalize, Gc, Heap, Trace, Unraisable};
/// use std::{cell::RefCell, rc::Rc};
///
/// #[derive(Trace)]
/// #[reap(finalize)]
/// struct Buggy;
/// impl Finalize for Buggy {
///     fn finalize(_: &Gc<Self>) {
///         panic!("index out of range");
///     }
/// }
///
/// reap::record_panic_locations();
/// let heap = Heap::new();
/// let lines = Rc::new(RefCell::new(Vec::new()));
/// let l = lines.clone();
/// heap.set_unraisable_hook(Some(Box::new(move |u: &Unraisable| {
///     l.borrow_mut().push(u.location().map(|at| at.line));
/// })));
/// drop(heap.alloc(Buggy));
/// assert!(matches!(lines.borrow()[0], Some(line) if line > 0));
/// ```
pub fn record_panic_locations() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    if std::thread::panicking() {
        return;
    }
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(at) = info.location() {
                let location = PanicLocation {
                    file: at.file().to_string(),
                    line: at.line(),
                    column: at.column(),
                };
                let message = message_of(info.payload());
                // `try_with`: the thread-local may be gone while a thread exits.
                let _ = LAST_PANIC.try_with(|last| {
                    if let Ok(mut last) = last.try_borrow_mut() {
                        *last = Some((message, location));
                    }
                });
            }
            previous(info);
        }));
    });
}

/// The location the recording hook saw for the last panic of this thread, if that panic had
/// this message (a payload thrown with `resume_unwind` never reached the hook: its message does
/// not match, and it gets no location). Taken: each location is given once.
pub(crate) fn take_location(message: &str) -> Option<PanicLocation> {
    LAST_PANIC
        .try_with(|last| {
            let mut last = last.try_borrow_mut().ok()?;
            match last.take() {
                Some((m, at)) if m == message => Some(at),
                _ => None,
            }
        })
        .ok()
        .flatten()
}

/// A payload's message: the text of a `panic!`, or a placeholder.
pub(crate) fn message_of(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}
