//! Thin layer over an allocator handle that touches every block like a real program would
//! and catches the grossest heap corruption on the way.

use std::alloc::Layout;

use crate::allocators::Handle;

/// Alignment of every request: what `Box<u64>`/`Vec<usize>` ask for, the common case in Rust.
pub const ALIGN: usize = 8;

/// A live allocation and its size (needed again for `dealloc`).
#[derive(Clone, Copy, Debug)]
pub struct Block {
    /// Start of the block; null means "empty slot".
    pub ptr: *mut u8,
    /// Requested size in bytes.
    pub size: usize,
}

// SAFETY: a Block is an owned heap allocation; handing it to another thread is exactly the
// remote-free pattern under test, and GlobalAlloc implementations must allow it.
unsafe impl Send for Block {}

impl Block {
    /// The empty slot marker.
    pub const EMPTY: Block = Block {
        ptr: std::ptr::null_mut(),
        size: 0,
    };

    /// Whether this slot holds an allocation.
    #[inline(always)]
    pub fn is_live(&self) -> bool {
        !self.ptr.is_null()
    }
}

/// The byte written at both ends of a block; derived from the size so nothing extra is stored.
#[inline(always)]
fn tag(size: usize) -> u8 {
    (size as u8) ^ 0xA5
}

#[inline(always)]
fn layout(size: usize) -> Layout {
    // SAFETY: ALIGN is a power of two and workload sizes are far below isize::MAX.
    unsafe { Layout::from_size_align_unchecked(size, ALIGN) }
}

/// Allocates `size` bytes and writes the first and last byte, so page faults and cache
/// misses on fresh memory are paid here as they would be in a real program.
#[inline(always)]
pub fn alloc(a: Handle, size: usize) -> Block {
    // SAFETY: size is non-zero for every workload.
    let ptr = unsafe { a.alloc(layout(size)) };
    if ptr.is_null() {
        null_return(size);
    }
    let t = tag(size);
    // SAFETY: ptr is valid for size bytes.
    unsafe {
        ptr.write(t);
        ptr.add(size - 1).write(t);
    }
    Block { ptr, size }
}

/// Checks the tags written by [`alloc`] and frees the block.
#[inline(always)]
pub fn free(a: Handle, b: Block) {
    let t = tag(b.size);
    // SAFETY: b came from `alloc`/`realloc` here and is still live.
    let (first, last) = unsafe { (b.ptr.read(), b.ptr.add(b.size - 1).read()) };
    if first != t || last != t {
        corrupted(b, first, last, t);
    }
    // SAFETY: same layout as at allocation.
    unsafe { a.dealloc(b.ptr, layout(b.size)) }
}

/// Grows (or shrinks) a block with `realloc`, checking that the first byte survived the move
/// and re-tagging both ends for the new size.
#[inline(always)]
pub fn realloc(a: Handle, b: Block, new_size: usize) -> Block {
    let old_tag = tag(b.size);
    // SAFETY: b is live with this layout; new_size is non-zero.
    let ptr = unsafe { a.realloc(b.ptr, layout(b.size), new_size) };
    if ptr.is_null() {
        null_return(new_size);
    }
    // SAFETY: ptr is valid for new_size bytes and its prefix holds the old contents.
    let first = unsafe { ptr.read() };
    if first != old_tag {
        corrupted(
            Block {
                ptr,
                size: new_size,
            },
            first,
            old_tag,
            old_tag,
        );
    }
    let t = tag(new_size);
    // SAFETY: as above.
    unsafe {
        ptr.write(t);
        ptr.add(new_size - 1).write(t);
    }
    Block {
        ptr,
        size: new_size,
    }
}

// Cold and out of line so the checks cost one compare each in the hot path.
#[cold]
#[inline(never)]
fn null_return(size: usize) -> ! {
    panic!("allocator returned null for {size} bytes (align {ALIGN})");
}

#[cold]
#[inline(never)]
fn corrupted(b: Block, first: u8, last: u8, want: u8) -> ! {
    panic!(
        "heap corruption: block {:p} size {} has end bytes {first:#04x}/{last:#04x}, expected {want:#04x}",
        b.ptr, b.size
    );
}
