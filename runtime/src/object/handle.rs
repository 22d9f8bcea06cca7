//! What the two strong handles, Local mode's [`Gc`](crate::Gc) (`object::raw`) and Shared
//! mode's [`sync::Gc`](crate::sync::Gc) (`object::shared`), have in common, as macros that each
//! handle's module expands for its own type. Both are `{ ptr: NonNull<T>, _owns: PhantomData<T> }`
//! with `ptr` at the value and their header type's `from_value` finding the header in front of
//! it, and both `Deref` to `T`; what they do differently (counting, `Deref`'s checks) stays in
//! `local::handle` and `sync::handle`.

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
