//! The process allocator: jemalloc, tuned for a small, flat footprint.
//!
//! Why not glibc's malloc: the service allocates from several threads (runtime workers,
//! spool intake, sled's flusher), and glibc gives each its own arena that keeps freed pages
//! until a trim. In e2e_bench (1,000,000 events to one HEC destination, back-to-back single
//! runs) the process peaked at 89-95 MiB with glibc (malloc_trim after every spool pass
//! included) against 71-84 MiB here, and used 10-20% fewer CPU-seconds, most of it kernel
//! time (fewer page faults).
//!
//! The settings below: two arenas (the process has two busy threads at a time, not one
//! per runtime worker); a background thread returns freed pages ~100 ms after they are
//! freed instead of waiting for the next allocation; small thread caches (up to 4 KiB
//! objects), since chunks and batches are larger and pass between threads. `_RJEM_MALLOC_CONF`
//! in the environment overrides them (jemalloc reads it after this string).
//!
//! One call is not forwarded as is: large zeroed byte buffers are cleared with memset (see
//! [`ZEROED_BY_MEMSET`]), which keeps reopening a full store as fast as with glibc.
//!
//! Build with `--no-default-features` for the system allocator (heaptrack, massif): that
//! build is for profiling, and does not return freed memory to the kernel as this one does.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

/// jemalloc, except for large zeroed byte buffers (see [`ZEROED_BY_MEMSET`]).
#[cfg(feature = "jemalloc")]
struct Jemalloc;

/// Smallest zeroed byte buffer cleared with memset instead of jemalloc's zeroing.
///
/// jemalloc zeroes a recycled large extent by purging it (madvise), so the caller's first
/// write faults every page back in. A zeroed *byte* buffer is nearly always about to be
/// filled (`vec![0u8; n]` then a read), which touches every page anyway: memset on the
/// still-mapped pages is cheaper. sled's recovery reads each 2 MiB log segment into such a
/// buffer: with jemalloc's zeroing, reopening a store holding 1,000,000 records took
/// 0.85-0.96 s to the first delivery against 0.25-0.35 s with glibc; with memset it is back
/// to glibc's figure. The price: a large zeroed byte buffer that is only partly written
/// costs its full size in RSS. Typed arrays (sled's page table, sparse by design) keep
/// jemalloc's zeroing: their alignment is not 1.
#[cfg(feature = "jemalloc")]
const ZEROED_BY_MEMSET: usize = 16 << 10;

#[cfg(feature = "jemalloc")]
// SAFETY: every call forwards to tikv-jemallocator's allocator with the caller's layout;
// `alloc_zeroed` for large byte buffers allocates through `alloc` and zeroes all
// `layout.size()` bytes itself (a null result is passed through untouched).
unsafe impl std::alloc::GlobalAlloc for Jemalloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        tikv_jemallocator::Jemalloc.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.align() != 1 || layout.size() < ZEROED_BY_MEMSET {
            return tikv_jemallocator::Jemalloc.alloc_zeroed(layout);
        }
        let ptr = tikv_jemallocator::Jemalloc.alloc(layout);
        if !ptr.is_null() {
            std::ptr::write_bytes(ptr, 0, layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        tikv_jemallocator::Jemalloc.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        tikv_jemallocator::Jemalloc.realloc(ptr, layout, new_size)
    }
}

/// jemalloc's compiled-in options: its `malloc_conf` (a `const char *`, prefixed `_rjem_`
/// by tikv-jemalloc-sys, which declares it `Option<&'static c_char>` as here).
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&'static std::ffi::c_char> = Some(
    // SAFETY: a C string literal is NUL-terminated and lives for the whole program.
    unsafe {
        &*c"narenas:2,background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0,tcache_max:4096"
            .as_ptr()
    },
);

#[cfg(all(test, feature = "jemalloc"))]
mod tests {
    use super::ZEROED_BY_MEMSET;

    /// `vec![0u8; n]` asks for zeroed memory; a buffer freed dirty and handed out again
    /// must still read as zeros, on both sides of the memset threshold.
    #[test]
    fn recycled_byte_buffers_come_back_zeroed() {
        let sizes = [
            ZEROED_BY_MEMSET - 1,
            ZEROED_BY_MEMSET,
            ZEROED_BY_MEMSET + 1,
            1 << 20,
            2 << 20,
        ];
        for size in sizes {
            for round in 0..4 {
                let mut buf = vec![0u8; size];
                assert!(buf.iter().all(|&b| b == 0), "{size} bytes, round {round}");
                buf.fill(0xA5);
                drop(buf);
            }
        }
    }

    /// Typed arrays keep jemalloc's own zeroing; they must be zero as well.
    #[test]
    fn recycled_typed_arrays_come_back_zeroed() {
        for round in 0..4 {
            let mut words = vec![0u64; 1 << 18];
            assert!(words.iter().all(|&w| w == 0), "round {round}");
            words.fill(u64::MAX);
            drop(words);
        }
    }
}
