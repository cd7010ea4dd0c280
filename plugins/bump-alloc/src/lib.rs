//! The global allocator of an ersatz plugin built for
//! `wasm32-unknown-unknown`; elsewhere this crate is empty. Depend on it and
//! write `use bump_alloc as _;` in the plugin's `lib.rs`.
//!
//! ersatz runs each call on a fresh instance, whose memory is thrown away
//! after one answer, so freeing is wasted work: this allocator only moves a
//! pointer forward, from the end of the data to the end of the memory, and
//! grows the memory when that runs out. Rust's default allocator for this
//! target grows the memory on its first allocation, whatever the memory
//! holds already, which cost every call a `memory.grow` (an `mprotect` on
//! the host). A runaway plugin still stops at its memory limit (`limits.memory`).

#![no_std]

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod bump {
    use core::alloc::{GlobalAlloc, Layout};
    use core::arch::wasm32::{memory_grow, memory_size};
    use core::cell::Cell;
    use core::ptr::null_mut;

    const PAGE: usize = 65536;

    extern "C" {
        /// Where the linker put the end of the stack and data.
        static __heap_base: u8;
    }

    struct Bump {
        /// The next free byte; 0 until the first allocation.
        next: Cell<usize>,
        /// The newest block, which can grow in place.
        newest: Cell<usize>,
    }

    // A plugin instance has one thread.
    unsafe impl Sync for Bump {}

    /// Makes `end` addressable, growing the memory if it must.
    fn reach(end: usize) -> bool {
        let have = memory_size(0) * PAGE;
        end <= have || memory_grow(0, (end - have).div_ceil(PAGE)) != usize::MAX
    }

    unsafe impl GlobalAlloc for Bump {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let next = match self.next.get() {
                0 => core::ptr::addr_of!(__heap_base) as usize,
                next => next,
            };
            let Some(start) = next.checked_next_multiple_of(layout.align()) else {
                return null_mut();
            };
            match start.checked_add(layout.size()) {
                Some(end) if reach(end) => {
                    self.next.set(end);
                    self.newest.set(start);
                    start as *mut u8
                }
                _ => null_mut(),
            }
        }

        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let start = ptr as usize;
            if start == self.newest.get() {
                return match start.checked_add(new_size) {
                    Some(end) if reach(end) => {
                        self.next.set(end);
                        ptr
                    }
                    _ => null_mut(),
                };
            }
            // SAFETY: the caller's layout, with the new size it asked for.
            let grown = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            let new = unsafe { self.alloc(grown) };
            if !new.is_null() {
                let kept = layout.size().min(new_size);
                // SAFETY: both blocks hold `kept` bytes, and a new block
                // never overlaps an old one.
                unsafe { core::ptr::copy_nonoverlapping(ptr, new, kept) };
            }
            new
        }
    }

    #[global_allocator]
    static ALLOCATOR: Bump = Bump {
        next: Cell::new(0),
        newest: Cell::new(0),
    };
}
