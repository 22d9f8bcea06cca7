//! [`Gc<T>`]'s behaviour in Shared mode: clone, drop, deref, identity, counts, downcasts.

use crate::object::handle::value_trait_impls;
use crate::object::header::Flags;
use crate::object::shared::{Gc, SharedHeader};
use crate::sync::{count, heap, state};

impl<T: ?Sized> Gc<T> {
    /// The number of strong references to the object. Exact when no other thread clones or
    /// drops one meanwhile (a snapshot otherwise, as `Arc::strong_count`).
    ///
    /// ```
    /// use reap::sync::{Gc, Heap};
    ///
    /// let heap = Heap::new();
    /// let a = heap.alloc(5_u8);
    /// let b = a.clone();
    /// assert_eq!(Gc::strong_count(&a), 2);
    /// drop(b);
    /// assert_eq!(Gc::strong_count(&a), 1);
    /// ```
    pub fn strong_count(this: &Self) -> usize {
        count::strong_count(this.header())
    }

    /// Whether two handles point at the same object.
    pub fn ptr_eq(a: &Self, b: &Gc<impl ?Sized>) -> bool {
        a.header_ptr() == b.header_ptr()
    }

    /// The address of the value.
    pub fn as_ptr(this: &Self) -> *const T {
        this.ptr.as_ptr()
    }

    /// Whether the object's finalizer has run (it is then never run again).
    pub fn is_finalized(this: &Self) -> bool {
        this.header().has(crate::object::header::Flags::FINALIZED)
    }

    /// The name of the object's concrete type (`std::any::type_name`).
    pub fn type_name(this: &Self) -> &'static str {
        (state::vtable(this.header()).type_name)()
    }

    /// The `TypeId` of the object's concrete type.
    pub fn value_type_id(this: &Self) -> std::any::TypeId {
        (state::vtable(this.header()).type_id)()
    }

    /// Whether the object's concrete type is `V`.
    pub fn is<V: 'static>(this: &Self) -> bool {
        Self::value_type_id(this) == std::any::TypeId::of::<V>()
    }

    /// Converts back to the concrete type if the object's value is a `V`; otherwise returns the
    /// handle unchanged.
    ///
    /// ```
    /// use reap::sync::{Gc, Heap};
    /// use std::any::Any;
    ///
    /// let heap = Heap::new();
    /// let any: Gc<dyn Any + Send + Sync> = reap::gc_coerce!(heap.alloc(7_i64) => dyn Any + Send + Sync);
    /// let back: Gc<i64> = any.downcast::<i64>().ok().unwrap();
    /// assert_eq!(*back, 7);
    /// ```
    pub fn downcast<V: 'static>(self) -> Result<Gc<V>, Gc<T>> {
        if Self::is::<V>(&self) {
            let value = SharedHeader::value_ptr(self.header_ptr()).cast::<V>();
            std::mem::forget(self);
            // SAFETY: the object's value is a `V` (type ids match), and the forgotten handle's
            // reference passes to the new one.
            Ok(unsafe { Gc::from_value_ptr(value) })
        } else {
            Err(self)
        }
    }
}

impl<T: ?Sized> Clone for Gc<T> {
    #[inline]
    fn clone(&self) -> Gc<T> {
        heap::inc_ref(self.header());
        // SAFETY: the reference just added is the new handle's.
        unsafe { Gc::from_value_ptr(self.ptr) }
    }
}

impl<T: ?Sized> Drop for Gc<T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: this handle owns one reference and gives it up.
        unsafe { heap::dec_ref(self.header_ptr()) }
    }
}

impl<T: ?Sized> std::ops::Deref for Gc<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        if self.header().has(Flags::VALUE_DROPPED) {
            value_dropped(self.header());
        }
        // Only a collection drops a value while handles remain, and it marks every object of
        // the garbage before it drops the first value, while no other thread can reach them.
        // SAFETY: the handle keeps the object alive, and its value is not dropped (checked
        // above).
        unsafe { self.ptr.as_ref() }
    }
}

#[cold]
#[inline(never)]
fn value_dropped(h: &SharedHeader) -> ! {
    panic!(
        "reap: use of a {} whose cycle the collector has broken (its value was already dropped); \
         a Drop implementation must not use handles to other objects of its garbage cycle",
        (state::vtable(h).type_name)()
    )
}

value_trait_impls!(Gc);
