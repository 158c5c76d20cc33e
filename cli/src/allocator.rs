//! The process allocator: jemalloc, tuned for a small, flat footprint.
//!
//! Why not glibc's malloc: the service allocates from several threads (runtime workers,
//! spool intake, sled's flusher), and glibc gives each its own arena that keeps freed pages
//! until a trim. In e2e_bench (1,000,000 events to one HEC destination) the process peaked
//! at 89-99 MiB with glibc (malloc_trim after every spool pass included) against 71-76 MiB
//! here, and spent ~1 CPU-s per million events less in the kernel (fewer page faults).
//!
//! The settings below: two arenas (the process has two busy threads at a time, not one
//! per runtime worker); a background thread returns freed pages ~100 ms after they are
//! freed instead of waiting for the next allocation; small thread caches (up to 4 KiB
//! objects), since chunks and batches are larger and pass between threads. `_RJEM_MALLOC_CONF`
//! in the environment overrides them (jemalloc reads it after this string).
//!
//! Build with `--no-default-features` for the system allocator (heaptrack, massif).

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's compiled-in options (`malloc_conf`, prefixed `_rjem_` by tikv-jemalloc-sys).
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] =
    b"narenas:2,background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0,tcache_max:4096\0";
