//! sled's page cache, patched in `vendor/sled` to keep 16 LRU shards instead of 256: a
//! shard never evicts the page it just admitted, and with 256 shards of an 8 MiB cache
//! (32 KiB each) every shard held one whole leaf of chunks (100-300 KiB) whatever the
//! capacity said, so ~256 leaves stayed resident as a queue grew (`vendor/README.md`).
//!
//! Its own test binary: it reads the process's resident memory.

use std::fs;

use raxe_storage::{Queue, SledStore};

mod common;

/// The process's resident set, in bytes.
fn rss() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap();
    kib << 10
}

#[test]
fn a_growing_queue_keeps_no_more_leaves_resident_than_the_cache_holds() {
    // On tmpfs the data file costs no disk time (and is not this process's memory).
    let dir = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("grows").unwrap();
    // Scan-event-like records (~430 bytes, pack ~2.5x): 1,000 per append, ~115 per chunk,
    // 8-17 chunks per leaf: 320,000 records make ~2,800 chunks in 160-350 leaves.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut append_some = |n: usize| {
        for _ in 0..n {
            let records = common::scan_like_records(&mut x, 1_000);
            let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            q.append(&refs).unwrap();
        }
    };
    // Warm up allocator arenas and sled's own structures first.
    append_some(20);
    let before = rss();
    append_some(300);
    let grown = rss().saturating_sub(before);

    // Measured here: 5.0-5.2 MiB with the patch, 31-33 MiB without. What may grow
    // besides the cache (8 MiB): the chunk index (~50 bytes per chunk) and sled's page
    // table.
    let mib = grown as f64 / (1 << 20) as f64;
    assert!(
        mib < 10.0,
        "resident memory grew {mib:.1} MiB while 300,000 records were queued: is the \
         vendored sled's LRU shard patch (vendor/README.md) in place?"
    );
}
