//! Many busy queues against sled's page cache: each queue's appends, leases and acks need
//! its working leaves in the cache, and a cache that cannot hold them all pages every
//! leaf out and reads it back on each turn of the round (`StoreOptions::cache_for_queues`).
//!
//! Its own test binary: it reads the process's I/O counters.

use std::fs;

use raxe_storage::{QueueStore, SledStore, StoreOptions};

mod common;

const QUEUES: usize = 100;
/// Records per queue per round, as the service appends one spool file of 10,000 lines
/// routed to 100 destinations.
const PER_ROUND: usize = 100;

/// Bytes this process has read through read(2)-like calls (sled's page-ins are preads,
/// mostly from the OS page cache).
fn bytes_read() -> u64 {
    let io = fs::read_to_string("/proc/self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap()
}

/// Runs rounds over `QUEUES` queues, each a few appends behind: one group append to all
/// of them, then one lease and ack on each. Returns the bytes read per measured round.
fn bytes_read_per_round(cache_capacity: u64) -> u64 {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let opts = StoreOptions {
        cache_capacity,
        ..StoreOptions::default()
    };
    let store = SledStore::open_with(dir.path(), opts).unwrap();
    let names: Vec<String> = (0..QUEUES).map(|i| format!("dest-{i:03}")).collect();
    let queues: Vec<_> = names.iter().map(|n| store.open_queue(n).unwrap()).collect();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut append_round = || {
        let records: Vec<Vec<Vec<u8>>> = (0..QUEUES)
            .map(|_| common::scan_like_records(&mut x, PER_ROUND))
            .collect();
        let refs: Vec<Vec<&[u8]>> = records
            .iter()
            .map(|r| r.iter().map(Vec::as_slice).collect())
            .collect();
        let parts: Vec<(&str, &[&[u8]])> = names
            .iter()
            .zip(&refs)
            .map(|(n, r)| (n.as_str(), r.as_slice()))
            .collect();
        store.append_group(&parts, None).unwrap();
    };
    let deliver_round = || {
        for q in &queues {
            let lease = q.lease(PER_ROUND, usize::MAX).unwrap().unwrap();
            assert_eq!(lease.len(), PER_ROUND);
            q.ack(lease).unwrap();
        }
    };
    // A short backlog (3 chunks a queue), as while delivery trails intake a little; then
    // rounds until the leaves reach their usual size. Measured: 0.8 MiB read per round
    // with the sized cache, 11.6 MiB with the base one; backlogs of 1 and 2 chunks read
    // 0 against 4.2 and 6.0 MiB. A backlog of 6 on every queue at once keeps two leaves
    // per queue busy (~18 MiB read per round with either cache; none with 48 MiB).
    let behind = 3;
    for _ in 0..behind {
        append_round();
    }
    for _ in 0..8 {
        append_round();
        deliver_round();
    }
    let measured = 8;
    let before = bytes_read();
    for _ in 0..measured {
        append_round();
        deliver_round();
    }
    (bytes_read() - before) / measured
}

#[test]
fn a_cache_sized_for_the_queues_does_not_read_their_leaves_back_every_round() {
    let sized = bytes_read_per_round(StoreOptions::cache_for_queues(QUEUES));
    let base = bytes_read_per_round(StoreOptions::BASE_CACHE);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "bytes read per round of {QUEUES} queues: {:.2} MiB with the cache sized for them, \
         {:.2} MiB with the base cache",
        mib(sized),
        mib(base)
    );
    // A round appends ~1.7 MiB (packed) over all the queues. Each lease's chunk is read
    // through sled's cache too, so every read counted is a leaf paged back in.
    assert!(
        sized * 4 < base,
        "a cache sized for {QUEUES} queues read {:.2} MiB per round, the base cache {:.2} MiB",
        mib(sized),
        mib(base)
    );
}
