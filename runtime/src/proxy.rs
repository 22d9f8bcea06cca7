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

impl<T: ?Sized + 'static> WeakProxy<T> {
    /// A proxy for `target`. Proxies are never shared: each has its own weak reference, so
    /// `Gc::weak_count` counts it (as `getweakrefcount` counts proxies).
    pub fn new(target: &Gc<T>) -> WeakProxy<T> {
        WeakProxy {
            weak: Weak::with_callback(target, |_: &Weak<T>| {}),
        }
    }

    /// A proxy whose callback runs once when the referent dies while the proxy lives.
    pub fn with_callback(target: &Gc<T>, callback: impl Fn(&Weak<T>) + 'static) -> WeakProxy<T> {
        WeakProxy {
            weak: Weak::with_callback(target, callback),
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

/// A weak method (`weakref.WeakMethod`): a method bound to a receiver held weakly. It yields
/// nothing once the receiver is dead, and its callback (if any) runs once, when the receiver
/// dies while the weak method lives.
///
/// ```
/// use reap::{Heap, WeakMethod};
///
/// struct Counter(std::cell::Cell<u32>);
/// # unsafe impl reap::Trace for Counter { fn trace(&self, _: &mut reap::Tracer<'_>) {} }
/// impl Counter {
///     fn bump(&self) -> u32 { self.0.set(self.0.get() + 1); self.0.get() }
/// }
///
/// let heap = Heap::new();
/// let c = heap.alloc(Counter(std::cell::Cell::new(0)));
/// let m = WeakMethod::new(&c, Counter::bump);
/// assert_eq!(m.call(), Some(1));
/// drop(c);
/// assert_eq!(m.call(), None);
/// ```
pub struct WeakMethod<T: ?Sized + 'static, R> {
    receiver: Weak<T>,
    method: fn(&T) -> R,
}

impl<T: ?Sized + 'static, R> WeakMethod<T, R> {
    /// `method` bound to `receiver`, held weakly.
    pub fn new(receiver: &Gc<T>, method: fn(&T) -> R) -> WeakMethod<T, R> {
        WeakMethod {
            receiver: Weak::new(receiver),
            method,
        }
    }

    /// Like [`WeakMethod::new`], with a callback run once when the receiver dies while the weak
    /// method lives.
    pub fn with_callback(
        receiver: &Gc<T>,
        method: fn(&T) -> R,
        callback: impl Fn(&Weak<T>) + 'static,
    ) -> WeakMethod<T, R> {
        WeakMethod {
            receiver: Weak::with_callback(receiver, callback),
            method,
        }
    }

    /// Calls the method on the receiver; `None` if the receiver is dead.
    pub fn call(&self) -> Option<R> {
        let r = self.receiver.upgrade()?;
        Some((self.method)(&r))
    }

    /// The bound method as a closure holding the receiver strongly (`WeakMethod()` returning
    /// the bound method), or `None` if the receiver is dead.
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

// SAFETY: a weak method owns its weak reference to the receiver and a function pointer.
unsafe impl<T: ?Sized + 'static, R: 'static> crate::Trace for WeakMethod<T, R> {
    fn trace(&self, tracer: &mut crate::Tracer<'_>) {
        crate::Trace::trace(&self.receiver, tracer);
    }
}
