//! The representation of a strong handle: [`Gc`]'s struct and the raw ways to make one from,
//! and take one apart into, an object's header and value pointers. Kept apart from the handle's
//! behaviour (`handle`: clone, drop, deref), which needs the heap, so that the object layer
//! (header, tracing, vtables) can name `Gc` without depending on the heap.

use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::object::handle::raw_handle_methods;
use crate::object::header::Header;

/// A strong handle to an object on a [`Heap`](crate::Heap): the `Rc` of reap.
///
/// Cloning adds one to the strong count and dropping subtracts one, non-atomically; when the
/// count reaches zero the object dies in CPython's order (SEMANTICS 3.1): finalizer, then weak
/// references cleared and their callbacks run, then the value dropped. Handles are `!Send` and
/// `!Sync` (Local mode).
///
/// A `Gc<T>` converts to a trait-object handle on stable Rust with [`gc_coerce!`](crate::gc_coerce)
/// and back with [`Gc::downcast`]:
///
/// ```
/// use reap::{Gc, Heap, Trace};
/// use std::any::Any;
///
/// trait Object { fn name(&self) -> String; }
///
/// #[derive(Trace)]
/// struct Int(i64);
/// impl Object for Int { fn name(&self) -> String { format!("int {}", self.0) } }
///
/// let heap = Heap::new();
/// let obj: Gc<dyn Object> = reap::gc_coerce!(heap.alloc(Int(7)) => dyn Object);
/// assert_eq!(obj.name(), "int 7");
/// let back: Gc<Int> = obj.downcast::<Int>().ok().unwrap();
/// assert_eq!(back.0, 7);
/// ```
pub struct Gc<T: ?Sized> {
    /// Points at the value; the header is `HEADER_SIZE` bytes before it.
    pub(crate) ptr: NonNull<T>,
    pub(crate) _owns: PhantomData<T>,
}

impl<T> Gc<T> {
    /// Takes over one strong count of the object with this header.
    ///
    /// # Safety
    /// `header` is the header of a live object whose value is a `T`, and the caller gives the
    /// new handle one strong count it owns.
    #[inline]
    pub(crate) unsafe fn from_header(header: NonNull<Header>) -> Gc<T> {
        Gc {
            ptr: Header::value_ptr(header).cast(),
            _owns: PhantomData,
        }
    }
}

raw_handle_methods!(Gc, Header);

impl<T: ?Sized> Gc<T> {
    #[inline]
    pub(crate) fn value_ptr(&self) -> NonNull<T> {
        self.ptr
    }
}
