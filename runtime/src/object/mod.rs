//! The object layer, shared by both modes: the header and its layout, the handle's raw
//! representation, the per-type vtable and the slab allocator. Nothing here imports any other
//! part of the runtime except `trace` (the trait the vtable calls).

pub(crate) mod handle;
pub(crate) mod header;
pub(crate) mod raw;
pub(crate) mod shared;
pub(crate) mod slab;
pub(crate) mod vtable;
