//! Python's `weakref` module over the weak-reference core: value and key maps, sets, proxies,
//! weak methods and `finalize`.

pub(crate) mod finalizer;
pub(crate) mod proxy;
pub(crate) mod weakkey;
pub(crate) mod weakmap;
