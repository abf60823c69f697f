//! The process's allocator: mimalloc, asked for plain blocks whenever the
//! alignment wanted is one every plain block has.
//!
//! The `mimalloc` crate's allocator asks for every block through
//! `mi_malloc_aligned`. In mimalloc 3 that call takes a block straight
//! from its size's free list only when one is there; otherwise, for a size
//! whose block is not a power of two (96, 192, 368 bytes...), it
//! over-allocates a larger block and points inside it, and never starts a
//! page of the size asked. So those sizes never get a free list, and every
//! such allocation took the slow path: about a quarter of a `beaver
//! beanstalkd` put's 20 allocations, 160 instructions each instead of 20
//! (`valgrind --tool=callgrind`; docs/performance.md). Rust's own system
//! allocator makes the same choice as this one: plain `malloc` when the
//! alignment is at most what `malloc` guarantees and at most the size.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment of every `mi_malloc` block of this many bytes or more
/// (mimalloc's `MI_MAX_ALIGN_SIZE`, `max_align_t`'s); a smaller block is
/// aligned to its size rounded up to a multiple of 8.
const PLAIN_ALIGN: usize = 16;

/// mimalloc, without its aligned path for alignments a plain block has
/// anyway. Blocks of either path are freed by `mi_free`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allocator;

/// Whether a plain block of `size` bytes is aligned to `align`.
fn plain(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every block comes from mimalloc with at least the layout's size
// and alignment (checked by `plain`, else asked of the aligned calls), and
// goes back through `mi_free`/`mi_realloc*`, which take blocks of both kinds.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain FFI calls; a null return is passed on as failure.
        unsafe {
            if plain(layout.size(), layout.align()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if plain(layout.size(), layout.align()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's promise).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the new
        // block keeps the alignment (plain only when a plain block has it).
        unsafe {
            if plain(new_size, layout.align()) {
                mi::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size from 1 byte to 1 KiB, then sizes up to 64 KiB and two
    /// larger, at every alignment from 1 byte to 4 KiB (also above the
    /// size): the block is aligned, holds its bytes through a realloc up
    /// and down, and zeroed blocks are zero.
    #[test]
    fn blocks_have_the_alignment_asked_and_keep_their_bytes_through_reallocs() {
        let a = Allocator;
        let sizes = (1..=1024usize)
            .chain((1025..=65_536).step_by(251))
            .chain([1 << 20, 3 << 20]);
        for size in sizes {
            for shift in 0..=12 {
                let align = 1usize << shift;
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                // SAFETY: a non-zero size; each block is freed once, with
                // the layout it has.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null(), "{size} bytes at {align}");
                    assert_eq!(p as usize % align, 0, "{size} bytes at {align}");
                    p.write_bytes(0xa5, size);
                    let grown = a.realloc(p, layout, size * 2 + 8);
                    assert_eq!(grown as usize % align, 0, "grown {size} at {align}");
                    assert!(
                        std::slice::from_raw_parts(grown, size)
                            .iter()
                            .all(|&b| b == 0xa5)
                    );
                    let grown_layout =
                        Layout::from_size_align(size * 2 + 8, align).unwrap_or(layout);
                    let shrunk = a.realloc(grown, grown_layout, size.div_ceil(2));
                    assert_eq!(shrunk as usize % align, 0, "shrunk {size} at {align}");
                    assert!(
                        std::slice::from_raw_parts(shrunk, size.div_ceil(2))
                            .iter()
                            .all(|&b| b == 0xa5)
                    );
                    let shrunk_layout =
                        Layout::from_size_align(size.div_ceil(2), align).unwrap_or(layout);
                    a.dealloc(shrunk, shrunk_layout);
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "zeroed {size} at {align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
