//! Weak proxies and weak methods (SEMANTICS 4.8): access to a referent through a weak
//! reference that reports a clear error once the referent is dead, and a bound method that holds
//! its receiver weakly.

use std::fmt;

use crate::{Gc, Weak, WeakGone};

/// CPython's `ReferenceError`: the object a proxy or weak method refers to is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReferenceError;

impl fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("weakly-referenced object no longer exists")
    }
}

impl std::error::Error for ReferenceError {}

impl From<WeakGone> for ReferenceError {
    fn from(_: WeakGone) -> Self {
        ReferenceError
    }
}

/// A weak proxy (`weakref.proxy`): forwards access to its referent while it lives, and returns
/// [`ReferenceError`] afterwards, never a panic. It is a weak reference: it does not keep the
/// referent alive, and it may carry a callback.
///
/// ```
/// use reap::{Heap, WeakProxy, ReferenceError};
///
/// let heap = Heap::new();
/// let s = heap.alloc(String::from("hello"));
/// let p = WeakProxy::new(&s);
/// assert_eq!(p.with(|s| s.len()), Ok(5));
/// drop(s);
/// assert_eq!(p.with(|s| s.len()), Err(ReferenceError));
/// assert_eq!(p.to_string(), "<weakproxy; dead>");
/// ```
pub struct WeakProxy<T: ?Sized + 'static> {
    weak: Weak<T>,
}

/// The payload that marks a weak reference as a proxy's (proxies and weak references are never
/// the same object, as in CPython).
struct ProxyMark;

// SAFETY: holds no handles.
unsafe impl crate::Trace for ProxyMark {
    fn trace(&self, _: &mut crate::Tracer<'_>) {}
}

impl<T: ?Sized + 'static> WeakProxy<T> {
    /// A proxy for `target`. Callback-less proxies are shared, as in CPython
    /// (`proxy(o) is proxy(o)`): while one lives, a new one is the same weak reference.
    ///
    /// ```
    /// use reap::{Heap, WeakProxy};
    ///
    /// let heap = Heap::new();
    /// let s = heap.alloc(1_u8);
    /// let (a, b) = (WeakProxy::new(&s), WeakProxy::new(&s));
    /// assert!(a.weak().ptr_eq(b.weak()));
    /// ```
    pub fn new(target: &Gc<T>) -> WeakProxy<T> {
        let shared = Gc::weak_refs(target)
            .into_iter()
            .find(|w| w.payload::<ProxyMark>().is_some() && !w.has_callback());
        WeakProxy {
            weak: shared.unwrap_or_else(|| Weak::with_payload(target, ProxyMark)),
        }
    }

    /// A proxy whose callback runs once when the referent dies while the proxy lives; `state`
    /// is traced, as for [`Weak::with_callback`]. Proxies with callbacks are never shared.
    pub fn with_callback<S: crate::Trace + 'static>(
        target: &Gc<T>,
        state: S,
        callback: impl Fn(&S, &Weak<T>) + Copy + 'static,
    ) -> WeakProxy<T> {
        WeakProxy {
            weak: Weak::with_payload_and_callback(target, ProxyMark, state, callback),
        }
    }

    /// Like [`WeakProxy::with_callback`], with an untraced closure (see
    /// [`Weak::with_untraced_callback`]).
    pub fn with_untraced_callback(
        target: &Gc<T>,
        callback: impl Fn(&Weak<T>) + 'static,
    ) -> WeakProxy<T> {
        // The untraced closure is the callback's state: it holds no traced handles.
        let state = Untraced(Box::new(callback) as ProxyCallback<T>);
        WeakProxy {
            weak: Weak::with_payload_and_callback(
                target,
                ProxyMark,
                state,
                |s: &Untraced<T>, w: &Weak<T>| (s.0)(w),
            ),
        }
    }

    /// Runs `f` on the referent, or returns [`ReferenceError`] if it is gone.
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Result<R, ReferenceError> {
        let strong = self.weak.upgrade().ok_or(ReferenceError)?;
        Ok(f(&strong))
    }

    /// A strong handle to the referent, or [`ReferenceError`] if it is gone.
    pub fn get(&self) -> Result<Gc<T>, ReferenceError> {
        self.weak.upgrade().ok_or(ReferenceError)
    }

    /// Whether the referent is alive.
    pub fn is_alive(&self) -> bool {
        self.weak.is_alive()
    }

    /// The proxy's weak reference.
    pub fn weak(&self) -> &Weak<T> {
        &self.weak
    }

    /// Whether a weak reference is a proxy's (`type(x) is weakref.ProxyType`).
    pub fn is_proxy(weak: &Weak<T>) -> bool {
        weak.payload::<ProxyMark>().is_some()
    }
}

/// A callback closure of a proxy, boxed.
type ProxyCallback<T> = Box<dyn Fn(&Weak<T>)>;

/// An untraced closure carried as callback state.
struct Untraced<T: ?Sized + 'static>(ProxyCallback<T>);

// SAFETY: visits nothing: the closure's captures are untraced by definition (at worst a leak).
unsafe impl<T: ?Sized + 'static> crate::Trace for Untraced<T> {
    fn trace(&self, _: &mut crate::Tracer<'_>) {}
}

/// Forwards to the referent's `Display`; a dead proxy shows `<weakproxy; dead>`.
impl<T: ?Sized + fmt::Display + 'static> fmt::Display for WeakProxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.weak.upgrade() {
            Some(t) => fmt::Display::fmt(&*t, f),
            None => f.write_str("<weakproxy; dead>"),
        }
    }
}

/// A weak method (`weakref.WeakMethod`): a receiver and a function *value*, both held weakly,
/// as Python's `WeakMethod` holds `__self__` and `__func__`. It is dead as soon as either dies,
/// and its callback (if any) runs once, when the first of them dies while the weak method lives.
///
/// ```
/// use reap::{Gc, Heap, WeakMethod};
///
/// let heap = Heap::new();
/// let receiver = heap.alloc(String::from("self"));
/// let func = heap.alloc(String::from("function value"));
/// let m = WeakMethod::new(&receiver, &func);
/// let (r, f) = m.upgrade().expect("both alive");
/// assert!(Gc::ptr_eq(&r, &receiver) && Gc::ptr_eq(&f, &func));
/// drop((r, f));
/// drop(func); // the function dies: the method is dead, though its receiver lives
/// assert!(m.upgrade().is_none() && !m.is_alive());
/// ```
pub struct WeakMethod<T: ?Sized + 'static, F: ?Sized + 'static> {
    receiver: Weak<T>,
    func: Weak<F>,
}

/// The callback of a [`WeakMethod`], shared by its two weak references: a heap object, so that
/// both can hold (and the collector trace) it, and it runs once.
struct MethodCallback<S, C> {
    fired: std::cell::Cell<bool>,
    state: S,
    callback: C,
}

// SAFETY: visits the state, the only handles it owns.
unsafe impl<S: crate::Trace, C: 'static> crate::Trace for MethodCallback<S, C> {
    fn trace(&self, tracer: &mut crate::Tracer<'_>) {
        self.state.trace(tracer);
    }
}

impl<S: crate::Trace + 'static, C: Fn(&S) + Copy + 'static> MethodCallback<S, C> {
    fn fire<X: ?Sized>(this: &Gc<Self>, _: &Weak<X>) {
        if !this.fired.replace(true) {
            (this.callback)(&this.state);
        }
    }
}

impl<T: ?Sized + 'static, F: ?Sized + 'static> WeakMethod<T, F> {
    /// `func` bound to `receiver`, both held weakly.
    pub fn new(receiver: &Gc<T>, func: &Gc<F>) -> WeakMethod<T, F> {
        WeakMethod {
            receiver: Weak::new(receiver),
            func: Weak::new(func),
        }
    }

    /// Like [`WeakMethod::new`], with a callback run once, when the receiver or the function
    /// dies while the weak method lives. `state` is traced, as for [`Weak::with_callback`].
    pub fn with_callback<S: crate::Trace + 'static>(
        receiver: &Gc<T>,
        func: &Gc<F>,
        state: S,
        callback: impl Fn(&S) + Copy + 'static,
    ) -> WeakMethod<T, F> {
        let shared = crate::local::state::heap_of(receiver.header()).alloc(MethodCallback {
            fired: std::cell::Cell::new(false),
            state,
            callback,
        });
        WeakMethod {
            receiver: Weak::with_callback(receiver, shared.clone(), MethodCallback::fire),
            func: Weak::with_callback(func, shared, MethodCallback::fire),
        }
    }

    /// The receiver and the function as strong handles (calling `WeakMethod()` gives the bound
    /// method), or `None` if either is dead.
    pub fn upgrade(&self) -> Option<(Gc<T>, Gc<F>)> {
        Some((self.receiver.upgrade()?, self.func.upgrade()?))
    }

    /// Whether both the receiver and the function are alive.
    pub fn is_alive(&self) -> bool {
        self.receiver.is_alive() && self.func.is_alive()
    }

    /// The weak reference to the receiver (`__self__`).
    pub fn receiver(&self) -> &Weak<T> {
        &self.receiver
    }

    /// The weak reference to the function (`__func__`).
    pub fn func(&self) -> &Weak<F> {
        &self.func
    }
}

/// A method given as a Rust function pointer, bound to a receiver held weakly: the Rust-side
/// form of [`WeakMethod`] for methods that are code rather than values (a function pointer
/// cannot die, so only the receiver is held weakly).
///
/// ```
/// use reap::{Heap, WeakFnMethod};
///
/// struct Counter(std::cell::Cell<u32>);
/// # unsafe impl reap::Trace for Counter { fn trace(&self, _: &mut reap::Tracer<'_>) {} }
/// impl Counter {
///     fn bump(&self) -> u32 { self.0.set(self.0.get() + 1); self.0.get() }
/// }
///
/// let heap = Heap::new();
/// let c = heap.alloc(Counter(std::cell::Cell::new(0)));
/// let m = WeakFnMethod::new(&c, Counter::bump);
/// assert_eq!(m.call(), Some(1));
/// drop(c);
/// assert_eq!(m.call(), None);
/// ```
pub struct WeakFnMethod<T: ?Sized + 'static, R> {
    receiver: Weak<T>,
    method: fn(&T) -> R,
}

impl<T: ?Sized + 'static, R> WeakFnMethod<T, R> {
    /// `method` bound to `receiver`, held weakly.
    pub fn new(receiver: &Gc<T>, method: fn(&T) -> R) -> WeakFnMethod<T, R> {
        WeakFnMethod {
            receiver: Weak::new(receiver),
            method,
        }
    }

    /// Like [`WeakFnMethod::new`], with a callback run once when the receiver dies while the
    /// weak method lives; `state` is traced, as for [`Weak::with_callback`].
    pub fn with_callback<S: crate::Trace + 'static>(
        receiver: &Gc<T>,
        method: fn(&T) -> R,
        state: S,
        callback: impl Fn(&S, &Weak<T>) + Copy + 'static,
    ) -> WeakFnMethod<T, R> {
        WeakFnMethod {
            receiver: Weak::with_callback(receiver, state, callback),
            method,
        }
    }

    /// Calls the method on the receiver; `None` if the receiver is dead.
    pub fn call(&self) -> Option<R> {
        let r = self.receiver.upgrade()?;
        Some((self.method)(&r))
    }

    /// The bound method as a closure holding the receiver strongly, or `None` if the receiver
    /// is dead.
    pub fn upgrade(&self) -> Option<impl Fn() -> R> {
        let r = self.receiver.upgrade()?;
        let method = self.method;
        Some(move || method(&r))
    }

    /// Whether the receiver is alive.
    pub fn is_alive(&self) -> bool {
        self.receiver.is_alive()
    }
}

// SAFETY: a proxy owns its weak reference (a handle to the weak-reference object), not the
// referent.
unsafe impl<T: ?Sized + 'static> crate::Trace for WeakProxy<T> {
    fn trace(&self, tracer: &mut crate::Tracer<'_>) {
        crate::Trace::trace(&self.weak, tracer);
    }
}

// SAFETY: a weak method owns its two weak references.
unsafe impl<T: ?Sized + 'static, F: ?Sized + 'static> crate::Trace for WeakMethod<T, F> {
    fn trace(&self, tracer: &mut crate::Tracer<'_>) {
        crate::Trace::trace(&self.receiver, tracer);
        crate::Trace::trace(&self.func, tracer);
    }
}

// SAFETY: a weak method owns its weak reference to the receiver and a function pointer.
unsafe impl<T: ?Sized + 'static, R: 'static> crate::Trace for WeakFnMethod<T, R> {
    fn trace(&self, tracer: &mut crate::Tracer<'_>) {
        crate::Trace::trace(&self.receiver, tracer);
    }
}
