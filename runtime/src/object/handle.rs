//! What the two strong handles, Local mode's [`Gc`](crate::Gc) (`object::raw`) and Shared
//! mode's [`sync::Gc`](crate::sync::Gc) (`object::shared`), have in common, as macros that each
//! handle's module expands for its own type. Both are `{ ptr: NonNull<T>, _owns: PhantomData<T> }`
//! with `ptr` at the value and their header type's `from_value` finding the header in front of
//! it, and both `Deref` to `T`; what they do differently (counting, `Deref`'s checks) stays in
//! `local::handle` and `sync::handle`.

/// The raw ways to make a handle `$gc` whose header type is `$header`, and to take one apart:
/// `from_value_ptr`, `header_ptr`, `header`, and the public (hidden) pair `gc_coerce!` uses,
/// `into_raw_value` and `from_raw_value`.
macro_rules! raw_handle_methods {
    ($gc:ident, $header:ident) => {
        impl<T: ?Sized> $gc<T> {
            /// Takes over one strong count of the object whose value (or a part of it, at the
            /// same address) is at `ptr`.
            ///
            /// # Safety
            /// `ptr` points into a live object of this handle's mode at its value's address,
            /// and the caller gives the new handle one strong count it owns.
            #[inline]
            pub(crate) unsafe fn from_value_ptr(ptr: ::std::ptr::NonNull<T>) -> $gc<T> {
                $gc {
                    ptr,
                    _owns: ::std::marker::PhantomData,
                }
            }

            /// The object's header, in front of its value.
            #[inline]
            pub(crate) fn header_ptr(&self) -> ::std::ptr::NonNull<$header> {
                $header::from_value(self.ptr)
            }

            /// The object's header.
            #[inline]
            pub(crate) fn header(&self) -> &$header {
                // SAFETY: this handle keeps the object allocated.
                unsafe { self.header_ptr().as_ref() }
            }

            /// Gives up the handle without dropping its reference; returns the value pointer,
            /// with provenance over the whole object. Used by [`gc_coerce!`](crate::gc_coerce).
            #[doc(hidden)]
            pub fn into_raw_value(this: Self) -> *const T {
                let p = this.ptr.as_ptr().cast_const();
                ::std::mem::forget(this);
                p
            }

            /// Takes back a handle given up by [`Gc::into_raw_value`], possibly as another
            /// type.
            ///
            /// # Safety
            /// `ptr` is the pointer [`Gc::into_raw_value`] returned (or an unsizing coercion of
            /// it), and the handle it came from was not taken back already.
            #[doc(hidden)]
            pub unsafe fn from_raw_value(ptr: *const T) -> $gc<T> {
                // SAFETY: a value pointer of a live object is not null, and the reference is
                // handed back (caller).
                unsafe { $gc::from_value_ptr(::std::ptr::NonNull::new_unchecked(ptr.cast_mut())) }
            }
        }
    };
}
pub(crate) use raw_handle_methods;

/// The traits a handle `$gc` forwards to its value, as `Rc` and `Arc` do: `AsRef`, `Borrow`,
/// `Debug`, `Display`, `PartialEq`, `Eq` and `Hash` through `Deref`; `Pointer` prints the
/// value's address.
macro_rules! value_trait_impls {
    ($gc:ident) => {
        impl<T: ?Sized> ::std::convert::AsRef<T> for $gc<T> {
            fn as_ref(&self) -> &T {
                self
            }
        }

        impl<T: ?Sized> ::std::borrow::Borrow<T> for $gc<T> {
            fn borrow(&self) -> &T {
                self
            }
        }

        impl<T: ?Sized + ::std::fmt::Debug> ::std::fmt::Debug for $gc<T> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(&**self, f)
            }
        }

        impl<T: ?Sized + ::std::fmt::Display> ::std::fmt::Display for $gc<T> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&**self, f)
            }
        }

        impl<T: ?Sized> ::std::fmt::Pointer for $gc<T> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Pointer::fmt(&self.ptr.as_ptr(), f)
            }
        }

        /// Compares the values, as `Rc` and `Arc` do; use [`Gc::ptr_eq`] for identity.
        impl<T: ?Sized + PartialEq> PartialEq for $gc<T> {
            fn eq(&self, other: &Self) -> bool {
                **self == **other
            }
        }

        impl<T: ?Sized + Eq> Eq for $gc<T> {}

        impl<T: ?Sized + ::std::hash::Hash> ::std::hash::Hash for $gc<T> {
            fn hash<H: ::std::hash::Hasher>(&self, state: &mut H) {
                ::std::hash::Hash::hash(&**self, state)
            }
        }
    };
}
pub(crate) use value_trait_impls;
