//! Local mode: one heap per thread, handles that are `!Send`, plain non-atomic counts. The
//! heap, the handle's behaviour, the possible-roots record and the weak-reference core.

pub(crate) mod gcstate;
pub(crate) mod handle;
pub(crate) mod heap;
pub(crate) mod roots;
pub(crate) mod state;
pub(crate) mod weak;
