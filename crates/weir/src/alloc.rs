//! The global allocator: mimalloc (v2), called the way the system allocator is.
//!
//! Almost every allocation asks for an alignment of 16 or less, which mimalloc gives any block at
//! least that large. Those go to `mi_malloc`, whose fast path is a free-list pop; only a larger
//! alignment takes mimalloc's aligned entry points. (Sending every allocation through
//! `mi_malloc_aligned`, as a plain wrapper does, puts each block over 1 KiB on a slower generic path:
//! a few such blocks are made per request, header maps and boxed futures among them: 500
//! instructions per proxied HTTP/1.1 GET, 1.5%.)

// The one module of weir with unsafe code: a global allocator cannot be written without it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment mimalloc gives every block of at least that size (`MI_MAX_ALIGN_SIZE`).
const NATURAL_ALIGN: usize = 16;

pub struct Mimalloc;

/// Whether a plain allocation of `size` bytes is aligned enough for `align`.
fn naturally_aligned(size: usize, align: usize) -> bool {
    align <= NATURAL_ALIGN && align <= size
}

// SAFETY: every block comes from mimalloc with at least the layout's size and alignment (plain
// calls only where mimalloc's natural alignment covers it) and goes back through `mi_free`, which
// takes blocks from any of its entry points.
unsafe impl GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain FFI calls; a null return is how GlobalAlloc reports failure too.
        unsafe {
            if naturally_aligned(layout.size(), layout.align()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if naturally_aligned(layout.size(), layout.align()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (GlobalAlloc's contract); the new
        // block keeps the alignment by the same rule as `alloc`.
        unsafe {
            if naturally_aligned(new_size, layout.align()) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aligned_block(block: *mut u8, align: usize) -> bool {
        !block.is_null() && block.addr().is_multiple_of(align)
    }

    fn filled(block: *mut u8, size: usize) -> bool {
        // SAFETY: callers pass a live block of at least `size` bytes.
        (0..size).all(|i| unsafe { *block.add(i) } == i as u8)
    }

    /// Every size and alignment comes back aligned, zeroed when asked, and keeps its bytes through
    /// growing and shrinking.
    #[test]
    fn blocks_are_aligned_and_keep_their_bytes() {
        let alloc = Mimalloc;
        for align in [1, 2, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 7, 8, 15, 16, 24, 100, 1024, 1025, 4000, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                let grown = Layout::from_size_align(size * 3, align).unwrap();
                // SAFETY: non-zero sizes; each block is used within its size and freed with the
                // layout it has at that point.
                unsafe {
                    let zeroed = alloc.alloc_zeroed(layout);
                    assert!(aligned_block(zeroed, align), "zeroed {size}/{align}");
                    assert!((0..size).all(|i| *zeroed.add(i) == 0), "zeroed {size}/{align}");
                    alloc.dealloc(zeroed, layout);

                    let block = alloc.alloc(layout);
                    assert!(aligned_block(block, align), "alloc {size}/{align}");
                    (0..size).for_each(|i| *block.add(i) = i as u8);
                    let block = alloc.realloc(block, layout, grown.size());
                    assert!(aligned_block(block, align), "grown {size}/{align}");
                    assert!(filled(block, size), "grown {size}/{align}");
                    let block = alloc.realloc(block, grown, size);
                    assert!(aligned_block(block, align), "shrunk {size}/{align}");
                    assert!(filled(block, size), "shrunk {size}/{align}");
                    alloc.dealloc(block, layout);
                }
            }
        }
    }
}
