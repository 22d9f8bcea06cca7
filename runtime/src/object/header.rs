//! The object header, the per-type vtable and the allocation layout.
//!
//! Every object is one allocation:
//!
//! ```text
//!  tracked:    [pad][ Links: prev, next (16) ][ Header: meta (8), rc (4), flags (1), root (1), heap (2) ][ value ]
//!  untracked:  [pad][ Header (16) ][ value ]
//! ```
//!
//! The header sits immediately before the value, so it is found from any pointer to the value by
//! subtracting [`HEADER_SIZE`], whatever the value's alignment; the links, when present, sit
//! immediately before the header. The padding at the front (only for values aligned above 16 or
//! 32 bytes) keeps that rule. A tracked object therefore spends 32 bytes on bookkeeping, an
//! untracked one 16 (SEMANTICS 1.1, DESIGN budgets).
//!
//! `meta` is either a `&'static VTable` (low bit clear) or, once the object has had a weak
//! reference, a pointer to a heap-allocated `WeakInfo` (the weak module's) whose first field
//! is that vtable (low bit set). This is the "lazily allocated slot" for weak-reference lists.

use std::alloc::Layout;
use std::cell::Cell;
use std::ptr::NonNull;

/// Size of [`Header`]; the value starts this many bytes after the header.
pub(crate) const HEADER_SIZE: usize = std::mem::size_of::<Header>();
/// Size of [`Links`]; tracked objects carry them in front of the header.
pub(crate) const LINKS_SIZE: usize = std::mem::size_of::<Links>();

bitflags::bitflags! {
    /// Header flag bits. Each bit has one meaning; the states below say which combinations occur.
    ///
    /// - live, in a generation list: `TRACKED` (if tracked), maybe `HAS_FINALIZER`, `FINALIZED`;
    /// - candidate of the running collection of its own heap (trial deletion): `COLLECTING`, and
    ///   `REACHABLE` once found reachable; links hold the scratch count;
    /// - garbage held back from the refcount path (partition to reclaim): `UNLINKED | COLLECTING`;
    ///   during the resurrection check also maybe `REACHABLE`;
    /// - being reclaimed: `UNLINKED | COLLECTING | RECLAIMING`, and `VALUE_DROPPED` once its value's
    ///   drop has begun;
    /// - reclaimed but still held (a "zombie": a `Drop` stored a handle to it):
    ///   `UNLINKED | RECLAIMING | VALUE_DROPPED`, without `COLLECTING`; freed by its last handle.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) struct Flags: u8 {
        /// The object has generation links in front of its header and is in a generation list.
        const TRACKED = 1 << 0;
        /// The object has a finalizer.
        const HAS_FINALIZER = 1 << 1;
        /// The finalizer has run (or is running); it never runs again.
        const FINALIZED = 1 << 2;
        /// Garbage whose reclaim has begun: no weak reference upgrades to it any more, even one made
        /// after its weak references were cleared (SEMANTICS 2.7).
        const RECLAIMING = 1 << 3;
        /// The object's value has been dropped (or its drop has begun); its memory waits for the last
        /// handle to go. `Deref` panics from then on.
        const VALUE_DROPPED = 1 << 4;
        /// The object is a candidate of its heap's running collection or, with `UNLINKED`, garbage
        /// of it whose value has not finished dropping.
        const COLLECTING = 1 << 5;
        /// The candidate was found reachable from outside (trial deletion only).
        const REACHABLE = 1 << 6;
        /// A tracked object that has left every generation list: garbage of a collection.
        const UNLINKED = 1 << 7;
    }
}

bitflags::bitflags! {
    /// Bits of the header's `root` byte: the object's place in the candidate filtering of the
    /// collector and in its heap's record of possible roots (`roots::PossibleRoots`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) struct Root: u8 {
        /// A handle to the object was dropped without reaching zero since a full collection last
        /// found it reachable: it may be the way into a garbage cycle. Set from the start on
        /// untracked objects, which can never be garbage of a cycle. On an `OLD` tracked object it
        /// implies `BUFFERED`.
        const POSSIBLE = 1 << 0;
        /// The object is in its heap's record of possible roots: its memory is not returned to the
        /// allocator while it is (`FREED` marks it dead instead).
        const BUFFERED = 1 << 1;
        /// The object died while recorded: value dropped, weak references cleared, unlisted and
        /// uncounted; only its memory waits for the record to let it go.
        const FREED = 1 << 2;
        /// The object may have left generation 0 (set whenever it does, and sometimes just before):
        /// a full collection finds the possible roots of generation 0 by walking it, and those of
        /// the older generations in the record, so only `OLD` objects are recorded.
        const OLD = 1 << 3;
    }
}

/// Checks (in debug builds) that the flags are those of one of the states listed in [`Flags`]:
/// each bit keeps its one meaning.
#[inline]
fn debug_assert_state(v: Flags) {
    debug_assert!(
        !v.contains(Flags::REACHABLE) || v.contains(Flags::COLLECTING),
        "reap: REACHABLE without COLLECTING ({v:?})"
    );
    debug_assert!(
        !v.contains(Flags::RECLAIMING) || v.contains(Flags::UNLINKED),
        "reap: RECLAIMING outside a collection's garbage ({v:?})"
    );
    debug_assert!(
        !v.contains(Flags::UNLINKED)
            || v.contains(Flags::COLLECTING)
            || v.contains(Flags::RECLAIMING | Flags::VALUE_DROPPED),
        "reap: UNLINKED object neither held back nor reclaimed ({v:?})"
    );
}

/// Intrusive links of a tracked object in its generation's circular list.
#[repr(C)]
pub(crate) struct Links {
    pub(crate) prev: Cell<NonNull<Links>>,
    pub(crate) next: Cell<NonNull<Links>>,
}

impl Links {
    /// A list head that is not yet linked to itself. Call [`Links::init_empty`] once it is at
    /// its final address.
    pub(crate) fn dangling() -> Links {
        Links {
            prev: Cell::new(NonNull::dangling()),
            next: Cell::new(NonNull::dangling()),
        }
    }

    /// Makes this head an empty circular list.
    pub(crate) fn init_empty(&self) {
        let me = NonNull::from(self);
        self.prev.set(me);
        self.next.set(me);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.next.get() == NonNull::from(self)
    }

    /// Links `node` at the tail of the list headed by `self`.
    ///
    /// # Safety
    /// `self` is an initialised list head and `node` points to links that are in no list, and
    /// both stay at their addresses while linked.
    pub(crate) unsafe fn push_back(&self, node: NonNull<Links>) {
        let head = NonNull::from(self);
        let tail = self.prev.get();
        // SAFETY: `node` is valid (caller) and `tail` is in this initialised list.
        unsafe {
            node.as_ref().prev.set(tail);
            node.as_ref().next.set(head);
            tail.as_ref().next.set(node);
        }
        self.prev.set(node);
    }

    /// Unlinks `node` from whatever list it is in.
    ///
    /// # Safety
    /// `node` is linked into an initialised list whose nodes are all valid.
    pub(crate) unsafe fn unlink(node: NonNull<Links>) {
        // SAFETY: the neighbours of a linked node are valid nodes of the same list (caller).
        unsafe {
            let prev = node.as_ref().prev.get();
            let next = node.as_ref().next.get();
            prev.as_ref().next.set(next);
            next.as_ref().prev.set(prev);
        }
    }

    /// The objects of the list headed by `self`, front to back. Each object's `next` link is
    /// read before the object is yielded, so the caller may relink the object it was just
    /// given (push it back onto this very head after [`Links::init_empty`], as gathering does).
    ///
    /// # Safety
    /// `self` is an initialised list head, and while the iterator is used no node it has not
    /// yielded yet is unlinked, relinked or freed (no user code runs meanwhile).
    #[inline]
    pub(crate) unsafe fn objects(&self) -> ListObjects<'_> {
        ListObjects {
            end: NonNull::from(self),
            cur: self.next.get(),
            _head: std::marker::PhantomData,
        }
    }

    /// Moves every node of `self` to the tail of `to`, leaving `self` empty. O(1).
    ///
    /// # Safety
    /// Both are initialised list heads of valid nodes.
    pub(crate) unsafe fn splice_into(&self, to: &Links) {
        if self.is_empty() {
            return;
        }
        let first = self.next.get();
        let last = self.prev.get();
        let to_tail = to.prev.get();
        // SAFETY: all nodes are valid (caller).
        unsafe {
            to_tail.as_ref().next.set(first);
            first.as_ref().prev.set(to_tail);
            last.as_ref().next.set(NonNull::from(to));
        }
        to.prev.set(last);
        self.init_empty();
    }
}

/// The iterator of [`Links::objects`].
pub(crate) struct ListObjects<'a> {
    end: NonNull<Links>,
    cur: NonNull<Links>,
    _head: std::marker::PhantomData<&'a Links>,
}

impl Iterator for ListObjects<'_> {
    type Item = NonNull<Header>;

    #[inline]
    fn next(&mut self) -> Option<NonNull<Header>> {
        if self.cur == self.end {
            return None;
        }
        let links = self.cur;
        // SAFETY: `links` is a node of the list not yet yielded (the contract of
        // `Links::objects`: such nodes stay linked and allocated); its `next` is read before it
        // is yielded.
        self.cur = unsafe { links.as_ref() }.next.get();
        Some(Header::from_links(links))
    }
}

/// The common header in front of every value.
///
/// Invariants:
/// - `strong` is the number of live [`Gc`](crate::Gc) handles (plus one while the runtime runs
///   the finalizer or holds the object during a weak-reference callback); it reaches 0 exactly
///   once, when the object's death begins.
/// - `meta` always leads to the object's `VTable` (see [`Header::vtable`]).
/// - `heap` is the slot of the owning heap in this thread's registry; the heap outlives every
///   object it owns.
/// - The header, the links in front of it (if `TRACKED`) and the value stay at their addresses
///   until the allocation is freed.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) meta: Cell<*const ()>,
    /// The strong count.
    pub(crate) rc: Cell<u32>,
    pub(crate) flags: Cell<Flags>,
    /// The [`Root`] bits: whether the object is a possible root (a handle to it was dropped
    /// without reaching zero since a full collection last found it reachable: it may be the way
    /// into a garbage cycle, Bacon-Rajan candidate filtering), and whether its heap's record of
    /// possible roots holds it. A byte of its own, beside the flags, so that a handle's drop
    /// tests one bit of it.
    pub(crate) root: Cell<Root>,
    pub(crate) heap: u16,
}

/// Offset of the word made of `flags`, `root` and `heap` (see
/// [`Header::is_unmarked_candidate_of`]).
const FLAGS_WORD: usize = std::mem::offset_of!(Header, flags);
const _: () = {
    assert!(std::mem::size_of::<Flags>() == 1 && std::mem::size_of::<Root>() == 1);
    assert!(FLAGS_WORD % 4 == 0);
    assert!(std::mem::offset_of!(Header, root) == FLAGS_WORD + 1);
    assert!(std::mem::offset_of!(Header, heap) == FLAGS_WORD + 2);
    assert!(FLAGS_WORD + 4 <= std::mem::size_of::<Header>());
};

/// Tag bit of `meta` saying it points at a `WeakInfo`.
pub(crate) const META_WEAK_INFO: usize = 1;

impl Header {
    /// The strong count.
    #[inline]
    pub(crate) fn strong(&self) -> u32 {
        self.rc.get()
    }

    /// Sets the strong count.
    #[inline]
    pub(crate) fn set_strong(&self, n: u32) {
        self.rc.set(n);
    }

    /// Adds one to the strong count; aborts on overflow, as `std::rc::Rc` does.
    #[inline]
    pub(crate) fn inc_strong(&self) {
        let v = self.rc.get().wrapping_add(1);
        self.rc.set(v);
        if v == 0 {
            std::process::abort();
        }
    }

    /// Whether the object is marked a possible root.
    #[inline]
    pub(crate) fn is_possible_root(&self) -> bool {
        self.root.get().contains(Root::POSSIBLE)
    }

    /// Unmarks a possible root (it stays recorded, if it was, until the record is swept).
    #[inline]
    pub(crate) fn clear_possible_root(&self) {
        self.root.set(self.root.get().difference(Root::POSSIBLE));
    }

    /// The `root` byte of a new object.
    #[inline]
    pub(crate) fn initial_root(tracked: bool) -> Root {
        if tracked {
            Root::empty()
        } else {
            Root::POSSIBLE
        }
    }

    /// Whether any of the flags `f` is set.
    #[inline]
    pub(crate) fn has(&self, f: Flags) -> bool {
        self.flags.get().intersects(f)
    }

    #[inline]
    pub(crate) fn set(&self, f: Flags) {
        let v = self.flags.get() | f;
        debug_assert_state(v);
        self.flags.set(v);
    }

    #[inline]
    pub(crate) fn clear(&self, f: Flags) {
        let v = self.flags.get().difference(f);
        debug_assert_state(v);
        self.flags.set(v);
    }

    /// Whether the object has a weak-info block (`meta` tagged). The block itself is the weak
    /// module's (`Header::weak_info` there).
    #[inline]
    pub(crate) fn has_weak_info(&self) -> bool {
        self.meta.get().addr() & META_WEAK_INFO != 0
    }

    /// Pointer to the value that follows this header.
    #[inline]
    pub(crate) fn value_ptr(this: NonNull<Header>) -> NonNull<u8> {
        // SAFETY: the value starts HEADER_SIZE bytes after the header, inside the same
        // allocation (layout rule above).
        unsafe { NonNull::new_unchecked(this.as_ptr().cast::<u8>().add(HEADER_SIZE)) }
    }

    /// The links in front of a tracked object's header.
    #[inline]
    pub(crate) fn links(this: NonNull<Header>) -> NonNull<Links> {
        // SAFETY: a TRACKED object has its Links immediately before the header, in the same
        // allocation; callers only ask for links of tracked objects.
        unsafe { NonNull::new_unchecked(this.as_ptr().cast::<u8>().sub(LINKS_SIZE).cast()) }
    }

    /// The header of the object whose links are `links`.
    #[inline]
    pub(crate) fn from_links(links: NonNull<Links>) -> NonNull<Header> {
        // SAFETY: links of an object are immediately followed by its header.
        unsafe { NonNull::new_unchecked(links.as_ptr().cast::<u8>().add(LINKS_SIZE).cast()) }
    }

    /// A candidate's scratch count, kept in its `prev` link word during trial deletion (plus
    /// one, so the word is never null).
    ///
    /// # Safety
    /// `this` is a tracked object whose links are the collector's (a candidate).
    #[inline]
    pub(crate) unsafe fn scratch(this: NonNull<Header>) -> usize {
        // SAFETY: caller.
        unsafe { Header::links(this).as_ref() }
            .prev
            .get()
            .as_ptr()
            .addr()
            - 1
    }

    /// Sets a candidate's scratch count.
    ///
    /// # Safety
    /// As [`Header::scratch`].
    #[inline]
    pub(crate) unsafe fn set_scratch(this: NonNull<Header>, value: usize) {
        let word = NonNull::new(std::ptr::without_provenance_mut::<Links>(
            value.wrapping_add(1),
        ))
        .expect("reap: scratch count overflow");
        // SAFETY: caller.
        unsafe { Header::links(this).as_ref() }.prev.set(word);
    }

    /// The key [`Header::is_unmarked_candidate_of`] compares with, for the heap with registry
    /// slot `heap`: computed once per trace.
    #[inline]
    pub(crate) fn candidate_key(heap: u16) -> u32 {
        let [h0, h1] = heap.to_ne_bytes();
        u32::from_ne_bytes([Flags::COLLECTING.bits(), 0, h0, h1])
    }

    /// Whether the object belongs to the heap whose [`Header::candidate_key`] is `key` and is a
    /// candidate of its collection not yet found reachable: the test trial deletion makes for
    /// every edge.
    ///
    /// `flags`, `root` and `heap` are adjacent (checked at compile time below), so this reads
    /// them as one word and makes one comparison instead of two.
    #[inline]
    pub(crate) fn is_unmarked_candidate_of(&self, key: u32) -> bool {
        const MASK: u32 = u32::from_ne_bytes([
            Flags::COLLECTING.union(Flags::REACHABLE).bits(),
            0,
            0xff,
            0xff,
        ]);
        // SAFETY: `flags` starts a 4-byte-aligned run of four bytes inside the header (`flags`,
        // `root`, `heap`: FLAGS_WORD below), which `self` covers; they are plain integers in
        // cells, and no `&mut` to them exists (cells are only written through `&self`).
        let word = unsafe {
            std::ptr::from_ref(self)
                .cast::<u8>()
                .add(FLAGS_WORD)
                .cast::<u32>()
                .read()
        };
        word & MASK == key
    }

    /// The header in front of a value.
    #[inline]
    pub(crate) fn from_value<T: ?Sized>(value: NonNull<T>) -> NonNull<Header> {
        // SAFETY: every value the runtime hands out is preceded by its header (layout rule).
        unsafe { NonNull::new_unchecked(value.as_ptr().cast::<u8>().sub(HEADER_SIZE).cast()) }
    }
}

/// Where the pieces of an object of a given value layout sit in its allocation.
#[derive(Clone, Copy)]
pub(crate) struct ObjectLayout {
    /// Layout of the whole allocation.
    pub(crate) layout: Layout,
    /// Offset of the value from the allocation's start.
    pub(crate) value_offset: usize,
    /// The slab size class of `layout` (`object::slab::class_of`), `None` for an object the
    /// global allocator serves: computed once per type, not at each allocation and free.
    pub(crate) class: Option<u8>,
}

impl ObjectLayout {
    /// Computed at compile time for each type (in its vtable).
    pub(crate) const fn new(value: Layout, tracked: bool) -> ObjectLayout {
        let prefix = HEADER_SIZE + if tracked { LINKS_SIZE } else { 0 };
        ObjectLayout::with_prefix(value, prefix, std::mem::align_of::<Header>())
    }

    /// The layout of a value behind `prefix` bytes of bookkeeping aligned to `header_align`.
    pub(crate) const fn with_prefix(
        value: Layout,
        prefix: usize,
        header_align: usize,
    ) -> ObjectLayout {
        let align = if value.align() > header_align {
            value.align()
        } else {
            header_align
        };
        // The value offset is the prefix rounded up to the value's alignment, so the header and
        // links fit right before it.
        let value_offset = prefix.div_ceil(align) * align;
        let size = value_offset
            .checked_add(value.size())
            .expect("reap: object size overflows");
        let layout = match Layout::from_size_align(size, align) {
            Ok(l) => l,
            Err(_) => panic!("reap: object layout overflows"),
        };
        let class = match crate::object::slab::class_of(layout) {
            Some(c) => Some(c as u8),
            None => None,
        };
        ObjectLayout {
            layout,
            value_offset,
            class,
        }
    }
}
