//! The object layer, shared by both modes: the header and its layout, the handle's raw
//! representation, the per-type vtable and the slab allocators (Local mode's, one per heap;
//! Shared mode's, one per thread and heap). Nothing here imports any other
//! part of the runtime except `trace` (the trait the vtable calls).

pub(crate) mod handle;
pub(crate) mod header;
pub(crate) mod raw;
pub(crate) mod shared;
#[cfg(not(reap_loom))]
pub(crate) mod shared_slab;
pub(crate) mod slab;
pub(crate) mod vtable;
