//! Shared mode's allocator for small objects: one slab per thread attached to a heap, whose
//! free lists only that thread touches, plus a lock-free stack onto which other threads push
//! the blocks of its objects that they free (mimalloc's "thread-delayed free" list, on
//! pymalloc's size classes from [`slab`](crate::object::slab)).
//!
//! Most objects die on the thread that made them (a tree built and dropped by one thread), so
//! the common allocation and free are a pop and a push on a thread-private list, with no
//! atomic operation. A free on another thread (the object's last reference was dropped there)
//! pushes the block onto its slab's `remote` stack; the owning thread takes the whole stack
//! when a class's free list runs dry.
//!
//! Layout: chunks of [`CHUNK`] bytes, aligned to [`CHUNK`], each for one size class; the first
//! [`CHUNK_HEADER`] bytes say which slab the chunk belongs to, so that any block finds its slab
//! by rounding its address down.
//!
//! Invariants:
//! - a chunk belongs to one slab for the heap's whole life; its header is written once, when
//!   the chunk is made, before any of its blocks is handed out;
//! - `free`, `bump` and `end` are used only by the slab's current owner thread (a slab changes
//!   owner only through the heap's slab pool, under its lock, while no thread owns it);
//! - a block on a free list is unused and holds, in its first word, the next free block of its
//!   class (or null); a block on the `remote` stack holds the next block of the stack and, in
//!   its third word, its class;
//! - a free never writes a block's second word, where a Shared object's header keeps its
//!   `counts` (every slab object's header is at the start of its block): those bytes are only
//!   ever written by the slab's owner thread when it allocates the block, and by atomic
//!   operations. So the owner thread may load them atomically from a block of its own slab
//!   that may have died meanwhile (`sync::weak`'s owner upgrade, and `Weak::new`'s look-up of
//!   the shared weak reference, `owner_shared`) without a data race;
//! - `[bump[c], end[c])` is unused space of the current chunk of class `c`;
//! - chunks are freed only with the slab, when the heap is freed (after its last object).

use std::alloc::Layout;
use std::cell::Cell;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, Ordering::*};

use crate::object::shared::SHARED_HEADER_SIZE;
use crate::object::slab::{pop_free, push_free, take_from_bump, BLOCK_ALIGN, CLASSES, GRAIN};

// A slab object's header is at the start of its block: slab objects are aligned to at most
// BLOCK_ALIGN, which divides the header's size, so their value follows the header with no
// padding in front of it (`ObjectLayout::with_prefix`). The invariant on `counts` above rests
// on this.
const _: () = assert!(SHARED_HEADER_SIZE % BLOCK_ALIGN == 0);

/// Size (and alignment) of a chunk.
pub(crate) const CHUNK: usize = 64 * 1024;
/// Bytes at the start of a chunk holding its [`ChunkHeader`] (a multiple of 16, so blocks of
/// classes that are multiples of 16 stay 16-aligned).
const CHUNK_HEADER: usize = 32;

/// The start of every chunk.
#[repr(C)]
struct ChunkHeader {
    /// The slab the chunk belongs to.
    slab: *const SharedSlab,
    /// The slab's previous chunk (a list, for freeing them all, and for a collection's walk).
    next: *mut ChunkHeader,
    /// The size class of the chunk's blocks.
    class: usize,
}

const _: () = assert!(std::mem::size_of::<ChunkHeader>() <= CHUNK_HEADER);

/// A chunk of a slab, listed for a collection's walk ([`SharedSlab::list_chunks`]) and
/// walked with [`SharedSlab::walk_chunk`]. Only a pointer: the chunk lives as long as its slab.
#[derive(Clone, Copy)]
pub(crate) struct SlabChunk(NonNull<ChunkHeader>);

/// One thread's small-object allocator on one Shared heap (see the module docs).
pub(crate) struct SharedSlab {
    free: [Cell<*mut u8>; CLASSES],
    bump: [Cell<*mut u8>; CLASSES],
    end: [Cell<*mut u8>; CLASSES],
    /// The slab's chunks, newest first.
    chunks: Cell<*mut ChunkHeader>,
    /// Blocks other threads freed, not yet taken back by the owner (a Treiber stack: pushes
    /// from any thread, and the owner takes the whole stack at once, so no ABA problem).
    remote: AtomicPtr<u8>,
}

// SAFETY: the cells are used only by the slab's owner thread, and ownership passes between
// threads only under the heap's slab-pool lock (module invariant); `remote` is atomic.
unsafe impl Send for SharedSlab {}
// SAFETY: other threads use only `remote` (through `free_remote`), which is atomic.
unsafe impl Sync for SharedSlab {}

fn chunk_layout() -> Layout {
    Layout::from_size_align(CHUNK, CHUNK).expect("chunk layout")
}

impl SharedSlab {
    pub(crate) fn new() -> SharedSlab {
        SharedSlab {
            free: std::array::from_fn(|_| Cell::new(ptr::null_mut())),
            bump: std::array::from_fn(|_| Cell::new(ptr::null_mut())),
            end: std::array::from_fn(|_| Cell::new(ptr::null_mut())),
            chunks: Cell::new(ptr::null_mut()),
            remote: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// A block of size class `c` (`object::slab::class_of`; each type's vtable has its
    /// class). Only the owner thread calls this.
    #[inline]
    pub(crate) fn alloc(&self, c: usize) -> NonNull<u8> {
        match pop_free(&self.free[c]) {
            Some(block) => block,
            None => self.alloc_slow(c),
        }
    }

    /// A block of size class `c` without a call: the head of the free list, or else (when no
    /// other thread has freed blocks into the slab meanwhile, which [`alloc`](Self::alloc)
    /// takes first) one from the unused space of the class's chunk. `None` when neither has
    /// one: the allocation fast path, which leaves on `None` before taking anything else,
    /// then goes the whole way. Only the owner thread calls this.
    #[inline]
    pub(crate) fn pop(&self, c: usize) -> Option<NonNull<u8>> {
        if let Some(block) = pop_free(&self.free[c]) {
            return Some(block);
        }
        if !self.remote.load(Relaxed).is_null() {
            return None;
        }
        take_from_bump(&self.bump[c], &self.end[c], (c + 1) * GRAIN)
    }

    #[inline(never)]
    fn alloc_slow(&self, c: usize) -> NonNull<u8> {
        if !self.remote.load(Relaxed).is_null() {
            self.take_remote();
            if let Some(block) = pop_free(&self.free[c]) {
                return block;
            }
        }
        let size = (c + 1) * GRAIN;
        if let Some(block) = take_from_bump(&self.bump[c], &self.end[c], size) {
            return block;
        }
        let layout = chunk_layout();
        // SAFETY: CHUNK is non-zero.
        let chunk = unsafe { std::alloc::alloc(layout) };
        let Some(chunk) = NonNull::new(chunk) else {
            std::alloc::handle_alloc_error(layout)
        };
        // SAFETY: a fresh chunk, aligned for its header.
        unsafe {
            chunk.cast::<ChunkHeader>().write(ChunkHeader {
                slab: self,
                next: self.chunks.get(),
                class: c,
            })
        };
        self.chunks.set(chunk.as_ptr().cast());
        let (first, usable) = Self::span(size);
        // SAFETY: `first`, `first + size` and `usable` are inside (or one past the end of)
        // the new chunk: `first + size <= CHUNK_HEADER + 2 * size <= CHUNK` for classes of at
        // most 512 bytes.
        unsafe {
            self.bump[c].set(chunk.as_ptr().add(first + size));
            self.end[c].set(chunk.as_ptr().add(usable));
            NonNull::new_unchecked(chunk.as_ptr().add(first))
        }
    }

    /// Where the blocks of a chunk of `size`-byte blocks start and end (offsets in the chunk).
    fn span(size: usize) -> (usize, usize) {
        let first = CHUNK_HEADER.div_ceil(size) * size;
        (first, CHUNK - (CHUNK - first) % size)
    }

    /// Calls `f` with every block of this slab that was ever handed out (in use, on a free
    /// list or on the remote stack): the first word of each is initialised. A Shared-mode
    /// collection walks the slabs this way to find the heap's objects while the world is
    /// stopped.
    ///
    /// # Safety
    /// No thread allocates from or frees into this slab during the call (its owner is parked,
    /// detached or gone, and no gated operation runs: the world is stopped), and the owner's
    /// last writes to it happened before the call.
    pub(crate) unsafe fn for_each_block(&self, mut f: impl FnMut(NonNull<u8>)) {
        let mut chunk = self.chunks.get();
        while let Some(c) = NonNull::new(chunk) {
            // SAFETY: a chunk from this slab's list.
            let (base, first, size, limit, next) = unsafe { self.chunk_blocks(c) };
            let mut at = first;
            while at < limit {
                // SAFETY: inside the chunk (`at < limit <= usable <= CHUNK`).
                f(unsafe { NonNull::new_unchecked(base.add(at)) });
                at += size;
            }
            chunk = next;
        }
    }

    /// The blocks of chunk `c` of this slab that were ever handed out: the chunk's base, the
    /// offset of its first block, the block size, the offset past the last block handed out
    /// (the current chunk of its class has an unused tail, from `bump` on), and the next
    /// chunk.
    ///
    /// # Safety
    /// `c` is a chunk of this slab (from its `chunks` list).
    unsafe fn chunk_blocks(
        &self,
        c: NonNull<ChunkHeader>,
    ) -> (*mut u8, usize, usize, usize, *mut ChunkHeader) {
        // SAFETY: a chunk of this slab, with its header, written once when it was made.
        let (class, next) = unsafe { ((*c.as_ptr()).class, (*c.as_ptr()).next) };
        let size = (class + 1) * GRAIN;
        let (first, usable) = Self::span(size);
        let base = c.as_ptr().cast::<u8>();
        let end = self.end[class].get();
        let limit = if !end.is_null() && (end.addr() - 1) & !(CHUNK - 1) == base.addr() {
            self.bump[class].get().addr() - base.addr()
        } else {
            usable
        };
        (base, first, size, limit, next)
    }

    /// Pushes every chunk of this slab onto `out`, to be walked with
    /// [`walk_chunk`](Self::walk_chunk) by a collection; returns how many blocks they hold,
    /// handed out or not (a bound on the objects the walk can meet).
    ///
    /// # Safety
    /// The calling thread is collecting this slab's heap with the world stopped: the owner's
    /// last writes to the slab happened before the call, and no thread allocates from it
    /// meanwhile.
    pub(crate) unsafe fn list_chunks(&self, out: &mut Vec<SlabChunk>) -> usize {
        let mut blocks = 0;
        let mut chunk = self.chunks.get();
        while let Some(c) = NonNull::new(chunk) {
            // SAFETY: a chunk of this slab, with its header, whose `class` and `next` were
            // written once when it was made.
            let (class, following) = unsafe { ((*c.as_ptr()).class, (*c.as_ptr()).next) };
            let size = (class + 1) * GRAIN;
            let (first, usable) = Self::span(size);
            blocks += (usable - first) / size;
            out.push(SlabChunk(c));
            chunk = following;
        }
        blocks
    }

    /// Calls `f` with every block of chunk `c` that was ever handed out (in use, on a free
    /// list or on the remote stack: the first word of each is initialised), in block order.
    ///
    /// # Safety
    /// `c` is a chunk of this slab; no other thread allocates from or frees into this slab
    /// during the call (the world is stopped).
    pub(crate) unsafe fn walk_chunk(&self, c: SlabChunk, mut f: impl FnMut(NonNull<u8>)) {
        // SAFETY: a chunk from this slab's list (caller).
        let (base, first, size, limit, _) = unsafe { self.chunk_blocks(c.0) };
        // The blocks past `limit` were never handed out: no object is there.
        let mut at = first;
        while at < limit {
            // SAFETY: inside the chunk (`at < limit <= usable <= CHUNK`).
            f(unsafe { NonNull::new_unchecked(base.add(at)) });
            at += size;
        }
    }

    /// Moves every block other threads freed onto this slab's free lists (owner only).
    #[cold]
    fn take_remote(&self) {
        let mut block = self.remote.swap(ptr::null_mut(), Acquire);
        while let Some(b) = NonNull::new(block) {
            // SAFETY: a block on the remote stack holds the next one and its class in its
            // first and third words (module invariant), written before it was pushed (Release,
            // paired with the Acquire swap above).
            let (next, class) = unsafe {
                (
                    b.as_ptr().cast::<*mut u8>().read(),
                    b.as_ptr().cast::<usize>().add(2).read(),
                )
            };
            // SAFETY: the block is unused, of class `class`, and at least two words long.
            unsafe { push_free(&self.free[class], b) };
            block = next;
        }
    }

    /// Frees a block that came from some slab's [`alloc`](Self::alloc) for class `c`, on a
    /// thread whose own slab on that heap is `mine` (if it has one).
    ///
    /// # Safety
    /// `block` came from a slab's `alloc(c)`, is not used again, and that slab's heap is
    /// alive (so is the slab).
    #[inline]
    pub(crate) unsafe fn dealloc(block: NonNull<u8>, c: usize, mine: Option<&SharedSlab>) {
        // SAFETY: the block came from a slab of a live heap (caller), and that slab lives as
        // long as its heap.
        let owner = unsafe { &*Self::of_block(block) };
        match mine {
            // SAFETY: the block is ours now, of class `c`, 8-aligned and at least 8 bytes.
            Some(me) if ptr::eq(me, owner) => unsafe { push_free(&owner.free[c], block) },
            // SAFETY: as above; Shared objects are at least 32 bytes, room for four words.
            _ => unsafe { owner.free_remote(block, c) },
        }
    }

    /// The slab whose chunk holds `block` (the same for the heap's whole life).
    ///
    /// # Safety
    /// `block` points into a block a slab of a live heap handed out.
    #[inline]
    pub(crate) unsafe fn of_block(block: NonNull<u8>) -> *const SharedSlab {
        let chunk = block.as_ptr().map_addr(|a| a & !(CHUNK - 1));
        // SAFETY: the block's chunk starts at the rounded-down address (chunks are aligned to
        // CHUNK) with its header, written once before any of its blocks was handed out.
        unsafe { (*chunk.cast::<ChunkHeader>()).slab }
    }

    /// Pushes a block of class `c` onto this slab's remote stack (any thread).
    ///
    /// # Safety
    /// `block` is one of this slab's blocks of class `c`, unused from now on, at least four
    /// words long.
    unsafe fn free_remote(&self, block: NonNull<u8>, c: usize) {
        let words = block.as_ptr().cast::<usize>();
        // SAFETY: the block is ours until pushed, and holds at least four words. Not the
        // second word, where the header's counts were (module invariant).
        unsafe { words.add(2).write(c) };
        let mut head = self.remote.load(Relaxed);
        loop {
            // SAFETY: as above (rewritten on each attempt, before the publishing CAS).
            unsafe { block.as_ptr().cast::<*mut u8>().write(head) };
            match self
                .remote
                .compare_exchange_weak(head, block.as_ptr(), Release, Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }
}

impl Drop for SharedSlab {
    fn drop(&mut self) {
        let mut chunk = self.chunks.get();
        while !chunk.is_null() {
            // SAFETY: a chunk of this slab, with its header; none of its blocks is in use
            // (the heap is being freed, after its last object).
            let next = unsafe { (*chunk).next };
            // SAFETY: allocated with `chunk_layout` in `alloc_slow`.
            unsafe { std::alloc::dealloc(chunk.cast(), chunk_layout()) };
            chunk = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::slab::class_of;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    fn class(l: Layout) -> usize {
        class_of(l).unwrap()
    }

    #[test]
    fn blocks_are_aligned_distinct_in_their_slabs_chunks_and_reused_first() {
        let slab = SharedSlab::new();
        let mut seen = std::collections::HashSet::new();
        let mut blocks = Vec::new();
        let n = if cfg!(miri) { 60 } else { 5_000 };
        for i in 0..n {
            let l = layout(32 + (i % 60) * 8, if i % 3 == 0 { 16 } else { 8 });
            let b = slab.alloc(class(l));
            assert_eq!(b.as_ptr().addr() % l.align(), 0);
            assert!(
                seen.insert(b.as_ptr().addr()),
                "a live block handed out twice"
            );
            let chunk = b.as_ptr().addr() & !(CHUNK - 1);
            assert!(
                b.as_ptr().addr() - chunk >= CHUNK_HEADER,
                "a block over its chunk's header"
            );
            assert!(
                b.as_ptr().addr() + l.size() <= chunk + CHUNK,
                "a block past its chunk"
            );
            // SAFETY: a fresh block of at least `l.size()` bytes.
            unsafe { b.as_ptr().write_bytes(0xAB, l.size()) };
            blocks.push((b, l));
        }
        let (b, l) = blocks.pop().unwrap();
        // SAFETY: allocated above with this layout, not used again.
        unsafe { SharedSlab::dealloc(b, class(l), Some(&slab)) };
        assert_eq!(slab.alloc(class(l)), b, "a freed block is reused first");
        for (b, l) in blocks {
            // SAFETY: allocated above with this layout.
            unsafe { SharedSlab::dealloc(b, class(l), Some(&slab)) };
        }
    }

    #[test]
    fn blocks_freed_on_other_threads_come_back_to_their_slab() {
        let slab = SharedSlab::new();
        let other = SharedSlab::new();
        let l = layout(48, 16);
        let n = if cfg!(miri) { 20 } else { 2_000 };
        let blocks: Vec<usize> = (0..n)
            .map(|_| slab.alloc(class(l)).as_ptr().addr())
            .collect();
        // Two threads free half each: one with no slab, one whose own slab is another.
        let (a, b) = blocks.split_at(n / 2);
        let slab_ref = &slab;
        let other_ref = &other;
        std::thread::scope(|s| {
            for (part, mine) in [(a, None), (b, Some(other_ref))] {
                s.spawn(move || {
                    for &addr in part {
                        // Rebuilt from the chunk's pointer (strict provenance).
                        let block = find_block(slab_ref, addr);
                        // SAFETY: allocated above with `l`, freed once here.
                        unsafe { SharedSlab::dealloc(block, class(l), mine) };
                    }
                });
            }
        });
        assert!(
            other.remote.load(Relaxed).is_null(),
            "freed into the wrong slab"
        );
        let mut again: Vec<usize> = (0..n)
            .map(|_| slab.alloc(class(l)).as_ptr().addr())
            .collect();
        again.sort_unstable();
        let mut blocks = blocks;
        blocks.sort_unstable();
        assert_eq!(
            again, blocks,
            "the owner reuses exactly the blocks freed elsewhere"
        );
        let chunks_before = count_chunks(&slab);
        let _ = slab.alloc(class(l));
        assert_eq!(count_chunks(&slab), chunks_before);
    }

    #[test]
    fn a_walk_meets_every_block_handed_out_in_order() {
        let slab = SharedSlab::new();
        let n = if cfg!(miri) { 40 } else { 6_000 };
        let mut live = Vec::new();
        for i in 0..n {
            // Several classes (32 to 512 bytes), several chunks of some.
            let l = layout(32 + (i % 5) * 120, 16);
            live.push(slab.alloc(class(l)));
        }
        let mut chunks = Vec::new();
        // SAFETY: no other thread uses the slab; this thread walks it.
        let bound = unsafe { slab.list_chunks(&mut chunks) };
        assert_eq!(chunks.len(), count_chunks(&slab));
        let mut walked = Vec::new();
        for &c in &chunks {
            let mut last = None;
            // SAFETY: as above; a chunk listed just now.
            unsafe {
                slab.walk_chunk(c, |b| {
                    assert!(
                        last.is_none_or(|a| b.as_ptr().addr() > a),
                        "blocks in order"
                    );
                    last = Some(b.as_ptr().addr());
                    walked.push(b)
                })
            };
        }
        assert!(walked.len() >= n && bound >= walked.len());
        let seen: std::collections::HashSet<_> = walked.iter().map(|b| b.as_ptr().addr()).collect();
        assert_eq!(seen.len(), walked.len(), "each block once");
        assert!(
            live.iter().all(|b| seen.contains(&b.as_ptr().addr())),
            "the walk missed a block handed out"
        );
    }

    /// The block at `addr` of one of `slab`'s chunks, with the chunk's provenance.
    fn find_block(slab: &SharedSlab, addr: usize) -> NonNull<u8> {
        let mut chunk = slab.chunks.get();
        while !chunk.is_null() {
            let start = chunk.addr();
            if (start..start + CHUNK).contains(&addr) {
                return NonNull::new(chunk.cast::<u8>().with_addr(addr)).unwrap();
            }
            // SAFETY: a chunk of the slab, with its header.
            chunk = unsafe { (*chunk).next };
        }
        panic!("not a block of this slab");
    }

    fn count_chunks(slab: &SharedSlab) -> usize {
        let (mut n, mut chunk) = (0, slab.chunks.get());
        while !chunk.is_null() {
            n += 1;
            // SAFETY: as above.
            chunk = unsafe { (*chunk).next };
        }
        n
    }
}
