//! # reap: CPython's object lifetimes for Rust interpreters
//!
//! `reap` gives the objects of a language interpreter the lifetimes CPython gives Python
//! objects: reference counting that frees an object the moment its last handle goes, weak
//! references that are cleared (with callbacks) when their referent dies, `__del__`-style
//! finalizers that run exactly once and may resurrect their object, and (in `reap-collector`)
//! a generational cycle collector.
//!
//! ```
//! use reap::{Finalize, Gc, Heap, Trace, Weak};
//! use std::cell::RefCell;
//!
//! #[derive(Trace)]
//! #[reap(finalize)]
//! struct MyObject {
//!     name: String,
//!     children: RefCell<Vec<Gc<MyObject>>>,
//! }
//!
//! impl Finalize for MyObject {
//!     fn finalize(this: &Gc<Self>) {
//!         println!("{} has been garbage collected", this.name);
//!     }
//! }
//!
//! let heap = Heap::new();
//! let obj = heap.alloc(MyObject { name: "My Object".into(), children: RefCell::new(vec![]) });
//! let weak = Weak::with_callback(&obj, (), |_, _w: &Weak<MyObject>| println!("callback"));
//! drop(obj); // prints "My Object has been garbage collected", then "callback"
//! assert!(weak.upgrade().is_none());
//! ```
//!
//! The map of the implementation is `docs/ARCHITECTURE.md`; the behaviour, rule by rule (cited
//! in these docs as "SEMANTICS 2.7" and so on), is `docs/SEMANTICS.md`.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate self as reap;

mod gc;
mod local;
mod object;
mod shim;
pub mod sync;
mod trace;
mod unraisable;
mod weakref;

pub use gc::view::Views;
/// The `hashbrown` whose maps and sets implement [`Trace`] here (so an embedder's own tables
/// can use the same version).
pub use hashbrown;
/// The `indexmap` whose `IndexMap` and `IndexSet` implement [`Trace`] here (feature
/// `indexmap`): insertion-ordered tables, as Python's dicts are.
#[cfg(feature = "indexmap")]
pub use indexmap;
pub use local::gcstate::{AnyGc, CollectCallback, CollectInfo, CollectPhase, DebugFlags};
pub use local::handle::{is_tracked, ByAddress, Reclaimed};
pub use local::state::Heap;
pub use local::weak::{Weak, WeakGone, WeakRefObj};
pub use object::raw::Gc;
pub use reap_collector::GenerationStats;
pub use reap_derive::Trace;
/// The `smallvec` whose `SmallVec` implements [`Trace`] here.
pub use smallvec;
pub use trace::{Clear, Finalize, Trace, Tracer};
pub use unraisable::{
    record_panic_locations, PanicLocation, Unraisable, UnraisableHook, UnraisableKind,
};
pub use weakref::finalizer::{finalize, Finalizer, Func};
pub use weakref::proxy::{ReferenceError, WeakFnMethod, WeakMethod, WeakProxy};
pub use weakref::weakkey::{ByIdentity, ByValue, KeyEq, WeakKeyIter, WeakKeyMap, WeakSet};
pub use weakref::weakmap::{Iter as WeakValueMapIter, WeakValueMap};

/// Size in bytes of the bookkeeping in front of a tracked object's value (links and header),
/// on this target. The budget is 32 on 64-bit targets (DESIGN.md).
pub const TRACKED_OVERHEAD: usize = object::header::HEADER_SIZE + object::header::LINKS_SIZE;

/// Size in bytes of the header in front of an untracked object's value.
pub const UNTRACKED_OVERHEAD: usize = object::header::HEADER_SIZE;

/// What `gc_coerce!` expands to: a handle taken apart into its value pointer and a marker of
/// its kind, which rebuilds the same kind of handle from the coerced pointer.
#[doc(hidden)]
pub mod __coerce {
    /// A handle that `gc_coerce!` can take apart.
    pub trait IntoRaw {
        /// The handle's value type.
        type Value: ?Sized;
        /// The marker that rebuilds this kind of handle.
        type Kind;
        /// Gives up the handle, keeping its reference in the pointer.
        fn into_raw(self) -> (*const Self::Value, Self::Kind);
    }

    /// Rebuilds Local handles.
    pub struct LocalKind;
    /// Rebuilds Shared handles.
    pub struct SharedKind;

    impl<T: ?Sized> IntoRaw for crate::Gc<T> {
        type Value = T;
        type Kind = LocalKind;
        fn into_raw(self) -> (*const T, LocalKind) {
            (crate::Gc::into_raw_value(self), LocalKind)
        }
    }

    impl<T: ?Sized> IntoRaw for crate::sync::Gc<T> {
        type Value = T;
        type Kind = SharedKind;
        fn into_raw(self) -> (*const T, SharedKind) {
            (crate::sync::Gc::into_raw_value(self), SharedKind)
        }
    }

    impl LocalKind {
        /// # Safety
        /// As [`Gc::from_raw_value`](crate::Gc::from_raw_value).
        pub unsafe fn rebuild<U: ?Sized>(self, p: *const U) -> crate::Gc<U> {
            // SAFETY: forwarded contract (caller).
            unsafe { crate::Gc::from_raw_value(p) }
        }
    }

    impl SharedKind {
        /// # Safety
        /// As [`sync::Gc::from_raw_value`](crate::sync::Gc::from_raw_value).
        pub unsafe fn rebuild<U: ?Sized>(self, p: *const U) -> crate::sync::Gc<U> {
            // SAFETY: forwarded contract (caller).
            unsafe { crate::sync::Gc::from_raw_value(p) }
        }
    }
}

/// The README's examples, compiled and run as doctests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
