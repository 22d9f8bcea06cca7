//! `Gc<T>`, the strong handle.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::ops::Deref;

use crate::local::heap;
use crate::object::handle::value_trait_impls;
use crate::object::header::{Flags, Header};
use crate::object::raw::Gc;

impl<T: ?Sized> Gc<T> {
    /// The number of strong handles to this object.
    pub fn strong_count(this: &Self) -> usize {
        this.header().strong() as usize
    }

    /// The number of weak references to this object (`weakref.getweakrefcount`).
    pub fn weak_count(this: &Self) -> usize {
        crate::local::weak::weak_count(this.header_ptr())
    }

    /// Whether two handles point at the same object (`a is b`).
    pub fn ptr_eq(a: &Self, b: &Gc<impl ?Sized>) -> bool {
        a.header_ptr() == b.header_ptr()
    }

    /// The object's address, stable for its life: an identity (`id(obj)`).
    pub fn as_ptr(this: &Self) -> *const T {
        this.ptr.as_ptr()
    }

    /// Whether the object's finalizer has run (`gc.is_finalized`).
    pub fn is_finalized(this: &Self) -> bool {
        this.header().has(Flags::FINALIZED)
    }

    /// The name of the object's concrete type.
    pub fn type_name(this: &Self) -> &'static str {
        (this.header().vtable().type_name)()
    }

    /// Converts back to the concrete type if the object's value is a `V`; otherwise returns the
    /// handle unchanged.
    pub fn downcast<V: 'static>(self) -> Result<Gc<V>, Gc<T>> {
        if (self.header().vtable().type_id)() == std::any::TypeId::of::<V>() {
            let header = self.header_ptr();
            std::mem::forget(self);
            // SAFETY: the object's value is a `V` (type ids match), and the forgotten handle's
            // strong count passes to the new one.
            Ok(unsafe { Gc::from_header(header) })
        } else {
            Err(self)
        }
    }

    /// The `TypeId` of the object's concrete value type, also behind a trait object (what
    /// [`Views`](crate::Views) dispatches on).
    pub fn value_type_id(this: &Self) -> std::any::TypeId {
        (this.header().vtable().type_id)()
    }

    /// Whether the object's value is a `V`.
    pub fn is<V: 'static>(this: &Self) -> bool {
        (this.header().vtable().type_id)() == std::any::TypeId::of::<V>()
    }
}

/// The error of using an object whose value the collector already dropped: a handle to a
/// member of a garbage cycle that a `Drop` kept past its reclaim (SEMANTICS 2.7).
/// [`Gc::try_deref`] and [`Gc::try_clone`] return it where `Deref` would panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reclaimed;

impl fmt::Display for Reclaimed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("object already reclaimed by the collector")
    }
}

impl std::error::Error for Reclaimed {}

impl<T: ?Sized> Gc<T> {
    /// The value, or [`Reclaimed`] if the collector already dropped it (a `Drop` that reads
    /// another member of its own garbage cycle can use this instead of `Deref`, which panics).
    ///
    /// ```
    /// use reap::{Gc, Heap, Trace};
    /// use std::cell::RefCell;
    ///
    /// #[derive(Trace)]
    /// struct Node { name: &'static str, peer: RefCell<Option<Gc<Node>>> }
    ///
    /// impl Drop for Node {
    ///     fn drop(&mut self) {
    ///         // The peer's value may already be gone if the collector dropped it first.
    ///         if let Some(peer) = self.peer.get_mut() {
    ///             let _ = Gc::try_deref(peer).map(|p| p.name);
    ///         }
    ///     }
    /// }
    ///
    /// let heap = Heap::new();
    /// let a = heap.alloc(Node { name: "a", peer: RefCell::new(None) });
    /// let b = heap.alloc(Node { name: "b", peer: RefCell::new(Some(a.clone())) });
    /// *a.peer.borrow_mut() = Some(b.clone());
    /// assert_eq!(Gc::try_deref(&b).map(|n| n.name), Ok("b"));
    /// drop((a, b));
    /// assert_eq!(heap.collect(2), 2); // neither Drop panicked
    /// ```
    pub fn try_deref(this: &Self) -> Result<&T, Reclaimed> {
        if this.header().has(Flags::VALUE_DROPPED) {
            return Err(Reclaimed);
        }
        // SAFETY: as `Deref`: the handle keeps the object allocated and its value is intact.
        Ok(unsafe { this.ptr.as_ref() })
    }

    /// A new handle, or [`Reclaimed`] if the collector already dropped the value (a handle to
    /// such an object keeps only its memory).
    pub fn try_clone(this: &Self) -> Result<Gc<T>, Reclaimed> {
        if this.header().has(Flags::VALUE_DROPPED) {
            return Err(Reclaimed);
        }
        Ok(this.clone())
    }

    /// The data the embedder set on this object's heap ([`Heap::set_user_data`]), if it is a `D`:
    /// how a finalizer or a method reaches the interpreter.
    ///
    /// [`Heap::set_user_data`]: crate::Heap::set_user_data
    pub fn user_data<D: std::any::Any>(this: &Self) -> Option<std::rc::Rc<D>> {
        crate::local::state::heap_of(this.header()).user_data()
    }

    /// Whether the collector already dropped the value (`Deref` would panic).
    pub fn is_reclaimed(this: &Self) -> bool {
        this.header().has(Flags::VALUE_DROPPED)
    }
}

impl<T: ?Sized> Clone for Gc<T> {
    /// Adds one to the strong count. Aborts the process if the count would overflow (as
    /// `std::rc::Rc`).
    #[inline]
    fn clone(&self) -> Self {
        self.header().inc_strong();
        Gc {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T: ?Sized> Drop for Gc<T> {
    #[inline]
    fn drop(&mut self) {
        // Also marks the object a possible root: it may now be kept alive only by a cycle.
        // SAFETY: the handle's header pointer is a live object's, with the allocation's
        // provenance.
        if unsafe { Header::dec_strong_from_handle(self.header_ptr()) } {
            // SAFETY: the count just reached zero, so the object's death begins now.
            unsafe { heap::release(self.header_ptr()) };
        }
    }
}

impl<T: ?Sized> Deref for Gc<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        if self.header().has(Flags::VALUE_DROPPED) {
            value_dropped(self.header());
        }
        // SAFETY: the handle keeps the object allocated, and its value is not dropped (checked
        // above: only the collector drops a value while handles remain, and marks it).
        unsafe { self.ptr.as_ref() }
    }
}

#[cold]
#[inline(never)]
fn value_dropped(h: &Header) -> ! {
    panic!(
        "reap: use of a {} whose cycle the collector has broken (its value was already dropped); \
         a Drop implementation must not use handles to other objects of its garbage cycle",
        (h.vtable().type_name)()
    )
}

value_trait_impls!(Gc);

impl<T: ?Sized + PartialOrd> PartialOrd for Gc<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (**self).partial_cmp(&**other)
    }
}

impl<T: ?Sized + Ord> Ord for Gc<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

/// A handle compared and hashed by object identity (Python's `is` and `id`) rather than by
/// value: the key of a map keyed by objects whose type has no `Eq`/`Hash`, or whose
/// `Eq`/`Hash` are user code that must not run.
///
/// ```
/// use reap::{ByAddress, Heap};
/// use std::collections::HashSet;
///
/// let heap = Heap::new();
/// let a = heap.alloc(String::from("same"));
/// let b = heap.alloc(String::from("same"));
/// assert_eq!(a, b); // `Gc` compares values
/// let set: HashSet<ByAddress<String>> = [ByAddress(a.clone()), ByAddress(b)].into();
/// assert_eq!(set.len(), 2); // `ByAddress` compares identities
/// assert!(set.contains(&ByAddress(a)));
/// ```
pub struct ByAddress<T: ?Sized>(pub Gc<T>);

impl<T: ?Sized> PartialEq for ByAddress<T> {
    fn eq(&self, other: &Self) -> bool {
        Gc::ptr_eq(&self.0, &other.0)
    }
}

impl<T: ?Sized> Eq for ByAddress<T> {}

impl<T: ?Sized> Hash for ByAddress<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.header_ptr().hash(state)
    }
}

impl<T: ?Sized> Clone for ByAddress<T> {
    fn clone(&self) -> Self {
        ByAddress(self.0.clone())
    }
}

impl<T: ?Sized> Deref for ByAddress<T> {
    type Target = Gc<T>;
    fn deref(&self) -> &Gc<T> {
        &self.0
    }
}

impl<T: ?Sized> fmt::Debug for ByAddress<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ByAddress({:p})", self.0.ptr.as_ptr() as *const u8)
    }
}

// SAFETY: it owns exactly its handle.
unsafe impl<T: ?Sized + 'static> crate::Trace for ByAddress<T> {
    fn trace(&self, tracer: &mut crate::Tracer<'_>) {
        tracer.visit(&self.0);
    }
}

/// Whether the object takes part in cycle collection (`gc.is_tracked`): its type may hold
/// handles.
pub fn is_tracked<T: ?Sized>(gc: &Gc<T>) -> bool {
    gc.header().has(Flags::TRACKED)
}

/// Converts a handle to a handle of an unsized type the value coerces to, typically a trait
/// object: `gc_coerce!(gc => dyn Trait)`, for Local ([`Gc`](crate::Gc)) and Shared
/// ([`sync::Gc`](crate::sync::Gc)) handles alike. Stable Rust cannot coerce a smart pointer implicitly;
/// this coerces the raw value pointer instead, so only a real unsizing coercion compiles.
///
/// ```
/// use reap::{gc_coerce, Gc, Heap};
/// use std::fmt::Display;
///
/// let heap = Heap::new();
/// let shown: Gc<dyn Display> = gc_coerce!(heap.alloc(42_u32) => dyn Display);
/// assert_eq!(shown.to_string(), "42");
/// let slice: Gc<[u8]> = gc_coerce!(heap.alloc([1_u8, 2, 3]) => [u8]);
/// assert_eq!(slice.len(), 3);
/// ```
#[macro_export]
macro_rules! gc_coerce {
    ($gc:expr => $u:ty) => {{
        let (raw, kind) = $crate::__coerce::IntoRaw::into_raw($gc);
        let raw: *const $u = raw;
        // SAFETY: `raw` is the value pointer just given up, unsized by the compiler's own
        // coercion, so it points at the same value with that value's real metadata; `kind`
        // rebuilds the same kind of handle (Local or Shared) it came from.
        unsafe { kind.rebuild(raw) }
    }};
}
