//! The runtime's side of a cycle collection (the phases `reap_collector` drives) and the `gc`
//! module surface over it: introspection and views of type-erased handles.

pub(crate) mod collect;
pub(crate) mod introspect;
pub(crate) mod view;
