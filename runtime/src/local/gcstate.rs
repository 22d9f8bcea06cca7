//! The state a Local heap keeps for the `gc` module (collection callbacks, debug flags, the
//! `garbage` list) and the type-erased handle it lists objects with. Types only, and the two
//! helpers the heap needs of them: the surface over this state is `gc::introspect`, which sits
//! above the heap; this sits below it, so the heap can own the state without an import circle.

use std::any::Any;
use std::cell::Cell;
use std::ptr::NonNull;

use crate::object::header::{Header, Links};
use crate::Gc;

/// A type-erased handle: any object of the heap. Downcast with [`Gc::downcast`] or through `Any`.
pub type AnyGc = Gc<dyn Any>;

/// A handle to the object with this header, taking a new count.
///
/// # Safety
/// The object is live (strong count above 0) and its value not dropped.
pub(crate) unsafe fn any_handle(o: NonNull<Header>) -> AnyGc {
    // SAFETY: live (caller).
    let h = unsafe { o.as_ref() };
    h.inc_strong();
    let any = (h.vtable().as_any)(Header::value_ptr(o));
    // SAFETY: the pointer is the object's value (as `dyn Any`), and the handle owns the count
    // just added.
    unsafe { Gc::from_value_ptr(any) }
}

/// The headers of a list, in order.
pub(crate) fn members(head: &Links) -> Vec<NonNull<Header>> {
    // SAFETY: a heap's list head; copying the members out runs no user code.
    unsafe { head.objects() }.collect()
}

/// Phase of a collection callback (SEMANTICS 2.1, 2.8): `Start` or `Stop`.
pub use reap_collector::CallbackPhase as CollectPhase;

/// What a collection callback is told, as CPython's `info` dict: `generation`, `collected`,
/// `uncollectable` (always 0: reap has no legacy finalizers) and `duration`.
pub use reap_collector::CollectionInfo as CollectInfo;

/// A collection callback.
pub type CollectCallback = Box<dyn Fn(CollectPhase, &CollectInfo)>;

bitflags::bitflags! {
    /// Debug flags (`gc.set_debug`), with CPython's values (`gc.DEBUG_STATS`,
    /// `gc.DEBUG_SAVEALL`), so an interpreter converts its integer with
    /// [`DebugFlags::from_bits_truncate`].
    ///
    /// ```
    /// use reap::{DebugFlags, Heap};
    ///
    /// let heap = Heap::new();
    /// heap.set_debug(DebugFlags::from_bits_truncate(32)); // gc.set_debug(gc.DEBUG_SAVEALL)
    /// assert_eq!(heap.get_debug(), DebugFlags::SAVEALL);
    /// assert_eq!(DebugFlags::STATS.bits(), 1);
    /// ```
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct DebugFlags: u32 {
        /// Print a line to stderr for every collection.
        const STATS = 1;
        /// Keep the garbage in [`Heap::garbage`](crate::Heap::garbage) instead of freeing it.
        const SAVEALL = 1 << 5;
    }
}

/// State of the gc-module surface, kept in the heap.
pub(crate) struct GcModule {
    pub(crate) callbacks: std::cell::RefCell<Vec<(u64, std::rc::Rc<CollectCallback>)>>,
    pub(crate) next_callback_id: Cell<u64>,
    pub(crate) debug: Cell<DebugFlags>,
    pub(crate) garbage: std::cell::RefCell<Vec<AnyGc>>,
}

impl GcModule {
    pub(crate) fn new() -> GcModule {
        GcModule {
            callbacks: Default::default(),
            next_callback_id: Cell::new(0),
            debug: Cell::new(DebugFlags::empty()),
            garbage: Default::default(),
        }
    }
}
