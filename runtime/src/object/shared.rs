//! What a Shared-mode object looks like: its header, and the representation of its strong
//! handle, [`sync::Gc`](crate::sync::Gc) (the struct and raw constructors; its behaviour is in
//! `sync::handle`).
//!
//! ```text
//!  [pad][ SharedHeader: heap (8), counts (4), owner (4), meta (8), local (4), flags (1), in_slab (1), gc_bits (1), possible (1) ][ value ]
//! ```
//!
//! The last 16 bytes are Local mode's `Header` with atomics for cells (`meta`, then the count
//! the owner thread changes, then the flags); in front of them, where a tracked Local object
//! has its generation links, are the object's heap and the counts other threads share. The
//! header sits right before the value (found by subtracting [`SHARED_HEADER_SIZE`]), so a
//! handle is one pointer, as in Local mode.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::object::handle::raw_handle_methods;
use crate::object::header::Flags;
use crate::shim::{AtomicPtr, AtomicU32, AtomicU8, Ordering};

/// [`SharedHeader::gc_bits`]: in the permanent set.
pub(crate) const GC_FROZEN: u8 = 1;
/// [`SharedHeader::gc_bits`]: garbage of the running collection.
pub(crate) const GC_GARBAGE: u8 = 2;
/// [`SharedHeader::gc_bits`]: the value is a `sync::WeakRefObj` (whose death must unlist it
/// from its referent). Set before the object is published, never changed: a bit here rather
/// than a type-id comparison on every death.
pub(crate) const GC_WEAKREF: u8 = 4;
/// [`SharedHeader::gc_bits`]: final garbage of the collection whose reclaim is dropping values
/// now. Set by the collecting thread as it marks the object `VALUE_DROPPED`, cleared as it
/// gives back its hold. While the bit is set and `GcState::reclaimer` names this thread, its
/// drops of handles to the object are counted in `local` (a merged object's is otherwise 0)
/// instead of `counts`, and the give-back subtracts them with its own reference: the edges
/// between garbage objects cost no read-modify-write each.
pub(crate) const GC_RECLAIM: u8 = 8;
/// [`SharedHeader::gc_bits`]: the object's finalizer runs on the refcount path, from the
/// temporary reference of `count::resurrect_start` until `count::resurrect_end` decides
/// (cleared there, before it publishes a resurrected count; left set on an object that dies).
/// Other threads' weak upgrades refuse the object while it is set (SEMANTICS 8.3), whatever
/// the finalizer does with its count meanwhile. Written by the thread running the death (a
/// read-modify-write), under the referent's weak lock when it has weak references, where
/// upgrades read it.
pub(crate) const GC_FINALIZING: u8 = 16;

/// Size of [`SharedHeader`]; the value starts this many bytes after the header.
pub(crate) const SHARED_HEADER_SIZE: usize = std::mem::size_of::<SharedHeader>();

#[cfg(not(reap_loom))]
const _: () = assert!(SHARED_HEADER_SIZE == 32);

// No padding (a padding byte is a frozen byte: the header's invariants), on any target: the
// header is exactly its fields.
#[cfg(not(reap_loom))]
const _: () = {
    use std::mem::size_of;
    assert!(
        SHARED_HEADER_SIZE
            == size_of::<Fixed<NonNull<()>>>()
                + 3 * size_of::<AtomicU32>()
                + size_of::<AtomicPtr<()>>()
                + 3 * size_of::<AtomicU8>()
                + size_of::<Fixed<bool>>()
    );
};

/// The header in front of every Shared-mode value.
///
/// Invariants (the counting protocol is `sync::count`'s; see docs/ARCHITECTURE.md):
/// - No byte of the header is *frozen* (outside an `UnsafeCell`): every field is an atomic or a
///   [`Fixed`], and `repr(C)` with these sizes leaves no padding. A function of one thread may
///   hold a `&SharedHeader` argument when another thread frees the object: the owner's merge
///   publishes its count, and a foreign decrement may take it to zero and free the object
///   before the merging function returns (and the other way round). Rust's aliasing rules
///   (Stacked and Tree Borrows) forbid freeing, or writing, the frozen bytes a reference
///   argument covers until that function returns; bytes in a cell are exempt, which is what
///   std's `Arc` relies on for its counts. (A plain `bool` field here made that race undefined
///   behaviour that Miri reports when it lands in the window; ARCHITECTURE, "No frozen byte in
///   a shared header".)
/// - `heap` points at the object's heap state, which outlives the object (each live object
///   holds one of the heap's references, `sync::heap`).
/// - `counts` is the shared word: a signed count of references other threads took or
///   dropped, shifted left by 2, and a 2-bit state. The count on top lets a foreign increment
///   be one `fetch_add` and a merged object's decrement one `fetch_sub` (a carry out of a
///   negative count leaves the word).
/// - `owner` is the owner thread's id, 0 once merged: a merge stores 0 here before it
///   publishes the merged state, so "merged ⇒ owner 0" holds at every instant, and a thread
///   finds its own id here only while it owns the object unmerged. Apart from `counts` so
///   that the ownership test does not load the bytes the thread's last atomic operation on
///   `counts` wrote (on x86 that load waits for the locked instruction to drain).
/// - `local` is the owner thread's count; only the owner reads or writes it (relaxed loads and
///   stores, no read-modify-write), except the merge that moves it into `counts`, which runs on
///   the owner or, once the owner has exited, on the thread that found it gone. A merged
///   object's is 0, except while a reclaim drops the values of its garbage ([`GC_RECLAIM`]):
///   then it counts the collecting thread's deferred drops, which the hold's give-back
///   subtracts from `counts` (and zeroes) before it gives back the hold.
/// - `meta` is the `&'static VTable` (low bit clear) or, once a weak reference was made to the
///   object, its weak-info block (low bit set, written under the referent's weak lock).
/// - `flags` holds `Flags::HAS_FINALIZER`, `FINALIZED` and `VALUE_DROPPED`, written only by the
///   thread running the object's death.
/// - `in_slab` says whether the object's memory came from a thread's slab
///   (`object::shared_slab`) or from the global allocator; written once, before the object
///   is published.
/// - `gc_bits` holds [`GC_FROZEN`] (the object is in the permanent set, `sync::Heap::freeze`),
///   [`GC_GARBAGE`] (garbage of a running collection, held by it: the `gc` surface's walks
///   skip it), [`GC_WEAKREF`] (set before the object is published, never changed) and
///   [`GC_RECLAIM`] (final garbage whose values are being dropped: a plain load and store by
///   the collecting thread, which holds the object, with the world running) and
///   [`GC_FINALIZING`] (a refcount-path finalizer runs: a read-modify-write by the dying
///   thread, never while the world is stopped). Otherwise written
///   by the thread that holds the world stopped (a plain load and store), or by the collecting
///   thread with the world running (`GC_GARBAGE` cleared on survivors, a read-modify-write);
///   read by those threads. Relaxed accesses do.
/// - `possible` is 1 when the object is a *possible root* (SEMANTICS 8.5): a reference to it
///   went without its death since a collection last cleared the mark, so a set of objects that
///   only it reaches may have become garbage; a collection takes the marked objects and what
///   they reach as its candidates (`sync::collect`). Any thread that drops a reference stores 1
///   (a blind store: no load, no read-modify-write), while it still holds the object (before a
///   decrement that could let another thread free it; the owner after its store, as its count
///   still above zero keeps the object); the collecting thread stores 0 while the world is
///   stopped, when no thread drops a reference (unattached ones wait at the gate). Relaxed
///   accesses do: the stop's handshake orders the two sides.
#[repr(C)]
pub(crate) struct SharedHeader {
    pub(crate) heap: Fixed<NonNull<()>>,
    pub(crate) counts: AtomicU32,
    pub(crate) owner: AtomicU32,
    pub(crate) meta: AtomicPtr<()>,
    pub(crate) local: AtomicU32,
    pub(crate) flags: AtomicU8,
    pub(crate) in_slab: Fixed<bool>,
    pub(crate) gc_bits: AtomicU8,
    pub(crate) possible: AtomicU8,
}

/// A header field written once, when the object is built (before any other thread can reach
/// it), and only read after: a plain value in an `UnsafeCell`, so that it is not a frozen byte
/// of the header (see [`SharedHeader`]'s invariants). Reading it costs what reading the plain
/// field did: the header holds atomics already, so a `&SharedHeader` never carried the
/// `noalias` and `readonly` promises that a cell would take away.
#[repr(transparent)]
pub(crate) struct Fixed<T: Copy>(UnsafeCell<T>);

impl<T: Copy> Fixed<T> {
    /// The field with value `v`, for a header being built.
    #[inline(always)]
    pub(crate) const fn new(v: T) -> Self {
        Fixed(UnsafeCell::new(v))
    }

    /// The value.
    #[inline(always)]
    pub(crate) fn get(&self) -> T {
        // SAFETY: nothing writes a `Fixed` after `new` (it has no writing method; no `&mut`
        // to a built header is made), so this read of a value set before publication races
        // with nothing.
        unsafe { *self.0.get() }
    }
}

impl SharedHeader {
    /// The header in front of a value.
    #[inline]
    pub(crate) fn from_value<T: ?Sized>(value: NonNull<T>) -> NonNull<SharedHeader> {
        // SAFETY: every Shared value the runtime hands out is preceded by its header, in the
        // same allocation (layout rule above).
        unsafe {
            NonNull::new_unchecked(value.as_ptr().cast::<u8>().sub(SHARED_HEADER_SIZE).cast())
        }
    }

    /// The value that follows a header.
    #[inline]
    pub(crate) fn value_ptr(this: NonNull<SharedHeader>) -> NonNull<u8> {
        // SAFETY: the value starts SHARED_HEADER_SIZE bytes after the header, inside the same
        // allocation.
        unsafe { NonNull::new_unchecked(this.as_ptr().cast::<u8>().add(SHARED_HEADER_SIZE)) }
    }

    /// Whether any of the flags `f` is set.
    #[inline]
    pub(crate) fn has(&self, f: Flags) -> bool {
        Flags::from_bits_retain(self.flags.load(Ordering::Relaxed)).intersects(f)
    }

    /// Whether the object is frozen (in the permanent set, which collections skip).
    #[inline]
    pub(crate) fn is_frozen(&self) -> bool {
        self.gc_bits.load(Ordering::Relaxed) & GC_FROZEN != 0
    }

    /// Whether the object has a weak-information block (its `meta` tagged): whether a weak
    /// reference to it was ever made. A `Relaxed` load: see the callers for what orders it.
    #[inline]
    pub(crate) fn has_weak_info(&self) -> bool {
        self.meta.load(Ordering::Relaxed).addr() & crate::object::header::META_WEAK_INFO != 0
    }

    /// Whether the value is a `sync::WeakRefObj`.
    #[inline]
    pub(crate) fn is_weakref(&self) -> bool {
        self.gc_bits.load(Ordering::Relaxed) & GC_WEAKREF != 0
    }

    /// Whether the object's finalizer runs on the refcount path ([`GC_FINALIZING`]).
    #[inline]
    pub(crate) fn is_finalizing(&self) -> bool {
        self.gc_bits.load(Ordering::Relaxed) & GC_FINALIZING != 0
    }

    /// Whether the object is garbage of the running collection.
    #[inline]
    pub(crate) fn is_garbage(&self) -> bool {
        self.gc_bits.load(Ordering::Relaxed) & GC_GARBAGE != 0
    }

    /// Sets (`on`) or clears `bit` of `gc_bits` with the world stopped (see the invariants):
    /// a plain load and store.
    #[inline]
    pub(crate) fn set_gc_bit_stopped(&self, bit: u8, on: bool) {
        let old = self.gc_bits.load(Ordering::Relaxed);
        let new = if on { old | bit } else { old & !bit };
        if new != old {
            self.gc_bits.store(new, Ordering::Relaxed);
        }
    }

    /// Sets (`on`) or clears `bit` of `gc_bits` with the world running (the collecting thread
    /// on objects it holds): a read-modify-write.
    #[inline]
    pub(crate) fn set_gc_bit(&self, bit: u8, on: bool) {
        if on {
            self.gc_bits.fetch_or(bit, Ordering::Relaxed);
        } else {
            self.gc_bits.fetch_and(!bit, Ordering::Relaxed);
        }
    }

    /// Marks the object a possible root (`possible`), as a reference to it is dropped (or, on
    /// the owner's path, just was, with its count still above zero). The caller holds a
    /// reference, or is the owner whose count keeps the object: the header is allocated.
    #[inline]
    pub(crate) fn note_drop(&self) {
        self.possible.store(1, Ordering::Relaxed);
    }

    /// [`note_drop`](Self::note_drop) before a read-modify-write: a store only when the mark
    /// is not set already, as a store just before a locked instruction makes it wait for the
    /// store to drain. A load that finds the mark set finds one no collection has cleared
    /// since: the stop's handshake orders the collector's clearing before this thread's next
    /// access, as it does for the store.
    #[inline]
    pub(crate) fn note_drop_before_rmw(&self) {
        if self.possible.load(Ordering::Relaxed) == 0 {
            self.possible.store(1, Ordering::Relaxed);
        }
    }

    /// Whether the object is marked a possible root.
    #[inline]
    pub(crate) fn is_possible_root(&self) -> bool {
        self.possible.load(Ordering::Relaxed) != 0
    }

    /// Sets or clears the possible-root mark with the world stopped.
    #[inline]
    pub(crate) fn set_possible_root_stopped(&self, on: bool) {
        self.possible.store(u8::from(on), Ordering::Relaxed);
    }

    /// Sets flags. Only the thread running the object's death (or its allocation) writes
    /// them, so a load and a store do: no read-modify-write, which would cost an atomic
    /// operation on every death.
    #[inline]
    pub(crate) fn set(&self, f: Flags) {
        let old = self.flags.load(Ordering::Relaxed);
        self.flags.store(old | f.bits(), Ordering::Relaxed);
    }
}

/// A strong handle to a Shared-mode object: the `Arc` of reap (see [`sync`](crate::sync)).
///
/// Cloning adds one to the object's count and dropping subtracts one: a plain load and store
/// on the thread that owns the object, an atomic operation on any other (biased reference
/// counting). When the count reaches zero the object dies in CPython's order on whichever
/// thread dropped the last handle: finalizer, then weak references cleared and their callbacks
/// run, then the value dropped. `Send` and `Sync` when `T` is.
///
/// ```
/// use reap::sync::{Gc, Heap};
///
/// let heap = Heap::new();
/// let a: Gc<String> = heap.alloc(String::from("shared"));
/// let b = a.clone();
/// let t = std::thread::spawn(move || b.len());
/// assert_eq!(t.join().unwrap(), 6);
/// assert_eq!(*a, "shared");
/// ```
pub struct Gc<T: ?Sized> {
    /// Points at the value; the header is `SHARED_HEADER_SIZE` bytes before it.
    pub(crate) ptr: NonNull<T>,
    pub(crate) _owns: PhantomData<T>,
}

// SAFETY: a `Gc<T>` gives `&T` to whichever thread holds it and may drop the `T` on any thread
// (the one that drops the last handle): exactly `Arc<T>`'s conditions. Its counts are changed
// with atomics (or by the owner thread only), so the handle itself is safe to share.
unsafe impl<T: ?Sized + Send + Sync> Send for Gc<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send + Sync> Sync for Gc<T> {}

raw_handle_methods!(Gc, SharedHeader);

#[cfg(all(test, not(reap_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Release};

    /// The owner's merge in miniature: a function holding a `&SharedHeader` argument publishes
    /// a count, and another thread that reads it frees the header before that function
    /// returns. Allowed only because no byte of the header is frozen (its invariants): under
    /// Miri, a plain field in the header (as `heap` and `in_slab` were) makes the free
    /// undefined behaviour ("strongly protected" in Stacked Borrows, "protected tags must
    /// never be Disabled" in Tree Borrows).
    #[test]
    fn a_header_is_freed_while_a_reference_argument_to_it_is_live() {
        fn publish_and_wait(h: &SharedHeader, freed: &AtomicBool) {
            h.counts.store(1, Release);
            while !freed.load(Acquire) {
                std::thread::yield_now();
            }
        }
        let header = Box::into_raw(Box::new(SharedHeader {
            heap: Fixed::new(NonNull::dangling()),
            counts: AtomicU32::new(0),
            owner: AtomicU32::new(0),
            meta: AtomicPtr::new(std::ptr::null_mut()),
            local: AtomicU32::new(0),
            flags: AtomicU8::new(0),
            in_slab: Fixed::new(false),
            gc_bits: AtomicU8::new(0),
            possible: AtomicU8::new(0),
        }));
        struct Sent(*mut SharedHeader);
        // SAFETY: the pointer is used by one thread at a time, ordered by `counts` below.
        unsafe impl Send for Sent {}
        let sent = Sent(header);
        let freed = AtomicBool::new(false);
        std::thread::scope(|s| {
            let freed = &freed;
            s.spawn(move || {
                let sent = sent;
                // SAFETY: allocated until this thread frees it, below.
                while unsafe { &(*sent.0).counts }.load(Acquire) == 0 {
                    std::thread::yield_now();
                }
                // SAFETY: made by `Box::new` above; the other thread only waits now.
                drop(unsafe { Box::from_raw(sent.0) });
                freed.store(true, Release);
            });
            // SAFETY: allocated until the other thread frees it, which it may do while this
            // reference is still an argument (the point of the test).
            publish_and_wait(unsafe { &*header }, freed);
        });
    }
}
