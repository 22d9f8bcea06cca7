//! The heap's own allocator for small objects: segregated free lists by size class, carved out
//! of 64 KiB chunks (pymalloc's idea).
//!
//! Objects of at most [`MAX_SMALL`] bytes and alignment at most [`BLOCK_ALIGN`] take a block of
//! their size class (a multiple of 8 bytes; of 16 for 16-aligned objects): allocation pops the
//! class's free list or bumps a pointer in its current chunk, and freeing pushes the block back.
//! There is no per-block allocator header, so a tracked object with an 8-byte value costs
//! exactly 40 bytes. Blocks of a class sit at multiples of the class size from a 16-aligned
//! chunk start, so classes whose size is a multiple of 16 give 16-aligned blocks. Larger or over-aligned
//! objects go to the global allocator. Chunks go back to the global allocator when the heap's
//! state is freed (after its last object).
//!
//! Invariants: a block on a free list is unused and holds, in its first word, the next free
//! block of the same class (or null); `bump[c] <= end[c]`, and `[bump[c], end[c])` is unused
//! space of the current chunk of class `c`.

use std::alloc::Layout;
use std::cell::{Cell, RefCell};
use std::ptr::{self, NonNull};

/// Largest alignment served from size classes (and the chunks' alignment).
pub(crate) const BLOCK_ALIGN: usize = 16;
/// Size classes step by this.
pub(crate) const GRAIN: usize = 8;
/// Largest object served from size classes.
pub(crate) const MAX_SMALL: usize = 512;
pub(crate) const CLASSES: usize = MAX_SMALL / GRAIN;
const CHUNK: usize = 64 * 1024;

pub(crate) struct Slabs {
    free: [Cell<*mut u8>; CLASSES],
    bump: [Cell<*mut u8>; CLASSES],
    end: [Cell<*mut u8>; CLASSES],
    chunks: RefCell<Vec<NonNull<u8>>>,
}

/// The size class of a layout: blocks of `(class + 1) * GRAIN` bytes.
/// A `const fn`, so that each type's vtable carries its class ([`ObjectLayout::class`]).
///
/// [`ObjectLayout::class`]: crate::object::header::ObjectLayout
#[inline]
pub(crate) const fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() > MAX_SMALL || layout.align() > BLOCK_ALIGN {
        return None;
    }
    // A 16-aligned object takes a class whose size is a multiple of 16.
    let step = if layout.align() > GRAIN {
        BLOCK_ALIGN
    } else {
        GRAIN
    };
    let size = if layout.size() == 0 { 1 } else { layout.size() };
    Some(size.div_ceil(step) * step / GRAIN - 1)
}

/// Pops the head of a free list (Local's or Shared's slab; module invariant: each free block
/// holds the next one's address in its first word).
#[inline]
pub(crate) fn pop_free(list: &Cell<*mut u8>) -> Option<NonNull<u8>> {
    let block = NonNull::new(list.get())?;
    // SAFETY: a free block holds the next free block's address in its first word (module
    // invariant); blocks are 8-aligned.
    list.set(unsafe { block.as_ptr().cast::<*mut u8>().read() });
    Some(block)
}

/// Pushes a block onto a free list.
///
/// # Safety
/// `block` is unused from now on, 8-aligned and at least 8 bytes (room for the link), and of
/// the list's class.
#[inline]
pub(crate) unsafe fn push_free(list: &Cell<*mut u8>, block: NonNull<u8>) {
    // SAFETY: the caller's contract.
    unsafe { block.as_ptr().cast::<*mut u8>().write(list.get()) };
    list.set(block.as_ptr());
}

/// Takes `size` bytes from the unused space `[bump, end)` of a class's current chunk, if they
/// fit (both null before the class's first chunk).
#[inline]
pub(crate) fn take_from_bump(
    bump: &Cell<*mut u8>,
    end: &Cell<*mut u8>,
    size: usize,
) -> Option<NonNull<u8>> {
    let b = bump.get();
    if b.is_null() || end.get().addr() - b.addr() < size {
        return None;
    }
    // SAFETY: `[bump, end)` is unused space of a live chunk and `size` fits in it.
    bump.set(unsafe { b.add(size) });
    // SAFETY: inside a live chunk, so not null.
    Some(unsafe { NonNull::new_unchecked(b) })
}

fn chunk_layout() -> Layout {
    Layout::from_size_align(CHUNK, BLOCK_ALIGN).expect("chunk layout")
}

impl Slabs {
    pub(crate) fn new() -> Slabs {
        Slabs {
            free: std::array::from_fn(|_| Cell::new(ptr::null_mut())),
            bump: std::array::from_fn(|_| Cell::new(ptr::null_mut())),
            end: std::array::from_fn(|_| Cell::new(ptr::null_mut())),
            chunks: RefCell::new(Vec::new()),
        }
    }

    /// Allocates memory for `layout` (non-zero size).
    #[inline]
    pub(crate) fn alloc(&self, layout: Layout) -> NonNull<u8> {
        self.alloc_object(layout, class_of(layout).map(|c| c as u8))
    }

    #[inline(never)]
    fn alloc_from_chunk(&self, c: usize) -> NonNull<u8> {
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
        self.chunks.borrow_mut().push(chunk);
        let usable = CHUNK - CHUNK % size;
        // SAFETY: both are inside (or one past the end of) the new chunk.
        unsafe {
            self.bump[c].set(chunk.as_ptr().add(size));
            self.end[c].set(chunk.as_ptr().add(usable));
        }
        chunk
    }

    /// Memory for `layout`, whose size class `class` was computed ahead ([`class_of`], kept in
    /// each type's vtable): no class computation at run time, unlike [`Slabs::alloc`].
    #[inline]
    pub(crate) fn alloc_object(&self, layout: Layout, class: Option<u8>) -> NonNull<u8> {
        let Some(c) = class else {
            // SAFETY: the layout has non-zero size (callers allocate headers at least).
            let p = unsafe { std::alloc::alloc(layout) };
            return NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        };
        let c = c as usize;
        match pop_free(&self.free[c]) {
            Some(block) => block,
            None => self.alloc_from_chunk(c),
        }
    }

    /// Frees memory that [`Slabs::alloc_object`] gave for the same `layout` and `class`.
    ///
    /// # Safety
    /// `block` came from `self.alloc_object(layout, class)` and is not used again.
    #[inline]
    pub(crate) unsafe fn dealloc_object(
        &self,
        block: NonNull<u8>,
        layout: Layout,
        class: Option<u8>,
    ) {
        match class {
            // SAFETY: the block is ours, unused from now on, 8-aligned, at least 8 bytes and
            // of class `c`.
            Some(c) => unsafe { push_free(&self.free[c as usize], block) },
            // SAFETY: large blocks came from the global allocator with this layout.
            None => unsafe { std::alloc::dealloc(block.as_ptr(), layout) },
        }
    }

    /// Frees memory that [`Slabs::alloc`] gave for the same `layout`.
    ///
    /// # Safety
    /// `block` came from `self.alloc(layout)` and is not used again.
    #[inline]
    pub(crate) unsafe fn dealloc(&self, block: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller's contract; `alloc` went through `alloc_object` with this class.
        unsafe { self.dealloc_object(block, layout, class_of(layout).map(|c| c as u8)) }
    }
}

impl Drop for Slabs {
    fn drop(&mut self) {
        for chunk in self.chunks.take() {
            // SAFETY: every chunk was allocated with `chunk_layout` and, the heap being empty,
            // none of its blocks is in use.
            unsafe { std::alloc::dealloc(chunk.as_ptr(), chunk_layout()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_to_eight_and_sixteen_aligned_to_sixteen() {
        let l = |s, a| Layout::from_size_align(s, a).unwrap();
        assert_eq!(class_of(l(1, 1)), Some(0));
        assert_eq!(class_of(l(40, 8)), Some(4)); // 40-byte blocks
        assert_eq!(class_of(l(40, 16)), Some(5)); // 48-byte blocks: multiples of 16
        assert_eq!(class_of(l(512, 8)), Some(63));
        assert_eq!(class_of(l(513, 8)), None);
        assert_eq!(class_of(l(64, 32)), None);
    }

    #[test]
    fn blocks_are_aligned_distinct_and_reused() {
        let slabs = Slabs::new();
        let mut seen = std::collections::HashSet::new();
        let mut blocks = Vec::new();
        let n = if cfg!(miri) { 50 } else { 5_000 };
        for i in 0..n {
            let layout =
                Layout::from_size_align(8 + (i % 60) * 8, if i % 3 == 0 { 16 } else { 8 }).unwrap();
            let b = slabs.alloc(layout);
            assert_eq!(b.as_ptr() as usize % layout.align(), 0);
            assert!(
                seen.insert(b.as_ptr() as usize),
                "a live block handed out twice"
            );
            // SAFETY: fresh block of at least `layout.size()` bytes.
            unsafe { b.as_ptr().write_bytes(0xAB, layout.size()) };
            blocks.push((b, layout));
        }
        let (b, layout) = blocks.pop().unwrap();
        // SAFETY: allocated above with this layout, not used again.
        unsafe { slabs.dealloc(b, layout) };
        assert_eq!(slabs.alloc(layout), b, "a freed block is reused first");
        for (b, layout) in blocks {
            // SAFETY: allocated above with this layout.
            unsafe { slabs.dealloc(b, layout) };
        }
    }
}
