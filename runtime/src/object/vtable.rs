//! The per-type vtable: what the runtime knows about an object's type (how to trace, finalize,
//! clear, drop and free it, its name and `TypeId`), one `'static` constant per type, and the
//! header's way to it through its `meta` word.

use std::alloc::Layout;
use std::any::TypeId;
use std::ptr::NonNull;

use crate::object::header::{Header, ObjectLayout, META_WEAK_INFO};
use crate::object::shared::{SharedHeader, SHARED_HEADER_SIZE};
use crate::trace::{Trace, Tracer};

/// What the runtime knows about an object's type: how to trace it, finalize it, drop it and
/// free it. One static per type, built by [`vtable_of`].
pub(crate) struct VTable {
    /// Where the value sits in the allocation of a tracked object of this type.
    pub(crate) tracked_layout: ObjectLayout,
    /// Where the value sits in the allocation of an untracked object of this type.
    pub(crate) untracked_layout: ObjectLayout,
    /// `drop_in_place::<T>` on the value.
    pub(crate) drop_value: unsafe fn(NonNull<u8>),
    /// `T::trace` on the value.
    pub(crate) trace: unsafe fn(NonNull<u8>, &mut Tracer<'_>),
    /// Runs `T`'s finalizer with a temporary handle to the object.
    pub(crate) finalize: unsafe fn(NonNull<Header>),
    /// Where the value sits in the allocation of a Shared-mode object of this type.
    pub(crate) shared_layout: ObjectLayout,
    /// Runs `T`'s Shared-mode finalizer with a temporary handle to the object at this value.
    pub(crate) finalize_shared: unsafe fn(NonNull<u8>),
    /// Runs `T`'s clear hook on the value (nothing if the type has none).
    pub(crate) clear: unsafe fn(NonNull<u8>),
    /// `std::any::type_name::<T>`.
    pub(crate) type_name: fn() -> &'static str,
    /// `TypeId::of::<T>`.
    pub(crate) type_id: fn() -> TypeId,
    /// The value as `dyn Any`, for type-erased handles.
    pub(crate) as_any: fn(NonNull<u8>) -> NonNull<dyn std::any::Any>,
    /// The value as `dyn Any + Send + Sync`, for Shared mode's type-erased handles: set in the
    /// vtables of Shared objects (whose types are `Send + Sync`), `None` in Local ones.
    pub(crate) as_any_shared: Option<AsAnyShared>,
}

/// [`VTable::as_any_shared`]'s function.
pub(crate) type AsAnyShared = fn(NonNull<u8>) -> NonNull<dyn std::any::Any + Send + Sync>;

struct VTableFor<T>(std::marker::PhantomData<T>);

impl<T: Trace> VTableFor<T> {
    const VTABLE: VTable = VTable {
        tracked_layout: ObjectLayout::new(Layout::new::<T>(), true),
        untracked_layout: ObjectLayout::new(Layout::new::<T>(), false),
        drop_value: drop_value::<T>,
        trace: trace_value::<T>,
        finalize: finalize_value::<T>,
        shared_layout: ObjectLayout::with_prefix(
            Layout::new::<T>(),
            SHARED_HEADER_SIZE,
            SHARED_HEADER_ALIGN,
        ),
        finalize_shared: finalize_shared_value::<T>,
        clear: clear_value::<T>,
        type_name: std::any::type_name::<T>,
        type_id: TypeId::of::<T>,
        as_any: as_any::<T>,
        as_any_shared: None,
    };
}

impl<T: Trace + Send + Sync> VTableFor<T> {
    const SHARED_VTABLE: VTable = VTable {
        as_any_shared: Some(as_any_shared::<T>),
        ..Self::VTABLE
    };
}

/// The vtable of `T` as a Shared-mode object's, a `'static` constant: [`vtable_of`]'s, with
/// [`VTable::as_any_shared`].
pub(crate) fn vtable_of_shared<T: Trace + Send + Sync>() -> &'static VTable {
    &VTableFor::<T>::SHARED_VTABLE
}

fn as_any_shared<T: Trace + Send + Sync>(
    value: NonNull<u8>,
) -> NonNull<dyn std::any::Any + Send + Sync> {
    value.cast::<T>()
}

/// The vtable of `T`, a `'static` constant.
pub(crate) fn vtable_of<T: Trace>() -> &'static VTable {
    &VTableFor::<T>::VTABLE
}

fn as_any<T: Trace>(value: NonNull<u8>) -> NonNull<dyn std::any::Any> {
    value.cast::<T>()
}

/// # Safety
/// `value` points to a live, initialised `T` that is not used again.
unsafe fn drop_value<T>(value: NonNull<u8>) {
    // SAFETY: caller guarantees a live `T` that nobody will read again.
    unsafe { std::ptr::drop_in_place(value.cast::<T>().as_ptr()) }
}

/// # Safety
/// `value` points to a live, initialised `T`.
unsafe fn trace_value<T: Trace>(value: NonNull<u8>, tracer: &mut Tracer<'_>) {
    // SAFETY: caller guarantees a live `T`; tracing only reads it.
    unsafe { value.cast::<T>().as_ref().trace(tracer) }
}

/// # Safety
/// `value` points to a live, initialised `T`.
unsafe fn clear_value<T: Trace>(value: NonNull<u8>) {
    if let Some(f) = T::clearer() {
        // SAFETY: caller guarantees a live `T`; the hook gets a shared reference only.
        f(unsafe { value.cast::<T>().as_ref() });
    }
}

/// # Safety
/// `header` is the header of a live object of type `T` whose strong count the caller holds one
/// of (the temporary reference handed to the finalizer).
unsafe fn finalize_value<T: Trace>(header: NonNull<Header>) {
    if let Some(f) = T::finalizer() {
        // SAFETY: the caller owns one strong count; the ManuallyDrop handle borrows it without
        // giving it back, so the count stays the caller's to settle.
        let handle = std::mem::ManuallyDrop::new(unsafe {
            crate::object::raw::Gc::<T>::from_header(header)
        });
        f(&handle);
    }
}

const SHARED_HEADER_ALIGN: usize = std::mem::align_of::<SharedHeader>();

/// # Safety
/// `value` is the value of a live Shared-mode object of type `T` whose count the caller holds
/// one of (the temporary reference handed to the finalizer).
unsafe fn finalize_shared_value<T: Trace>(value: NonNull<u8>) {
    if let Some(f) = T::sync_finalizer() {
        // SAFETY: the caller owns one reference; the ManuallyDrop handle borrows it without
        // giving it back, so the count stays the caller's to settle.
        let handle = std::mem::ManuallyDrop::new(unsafe {
            crate::object::shared::Gc::<T>::from_value_ptr(value.cast())
        });
        f(&handle);
    }
}

/// The vtable an object's `meta` word leads to: the word itself when untagged, else the first
/// field of the weak-info block it points at (tagged with [`META_WEAK_INFO`]). The one decoding
/// of `meta`, for Local ([`Header::vtable`]) and Shared (`sync::state::vtable`) headers alike.
///
/// # Safety
/// `meta` was read from the `meta` word of an allocated object's header, Local or Shared: an
/// untagged word is a `&'static VTable`, a tagged one points at the object's weak-info block,
/// which is `repr(C)` with its `&'static VTable` first (`local::weak::WeakInfo`,
/// `sync::weak::WeakInfo`) and lives as long as the object's allocation.
#[inline]
pub(crate) unsafe fn vtable_of_meta(meta: *const ()) -> &'static VTable {
    if meta.addr() & META_WEAK_INFO == 0 {
        // SAFETY: an untagged `meta` is a `&'static VTable` (caller).
        unsafe { &*meta.cast::<VTable>() }
    } else {
        // SAFETY: a tagged `meta` points to the object's live weak-info block, whose first
        // field is the object's vtable (caller).
        unsafe {
            *meta
                .map_addr(|a| a & !META_WEAK_INFO)
                .cast::<&'static VTable>()
        }
    }
}

impl Header {
    /// The object's vtable, through the weak-info block if there is one.
    #[inline]
    pub(crate) fn vtable(&self) -> &'static VTable {
        // SAFETY: `meta` of a header `&self` keeps allocated (header invariant: it always
        // leads to the vtable).
        unsafe { vtable_of_meta(self.meta.get()) }
    }

    /// Points `meta` at the vtable (untagged).
    pub(crate) fn set_vtable(&self, vtable: &'static VTable) {
        self.meta.set((vtable as *const VTable).cast());
    }
}
