//! Helpers shared by the storage integration tests.

use std::path::Path;
use std::time::{Duration, Instant};

use raxe_storage::StoreOptions;

/// sled itself on a store's directory (to damage or inspect what the store wrote), opened
/// once the store's background threads let go of the file: a truncation thread may hold
/// sled's file lock for a moment after the store is dropped.
#[allow(dead_code)] // Not every test binary that includes this module uses it.
pub fn raw_sled(dir: &Path) -> sled::Db {
    let config = sled::Config::new()
        .path(dir)
        .segment_size(StoreOptions::default().segment_size);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match config.open() {
            Ok(db) => return db,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("cannot open sled on {}: {e}", dir.display()),
        }
    }
}

/// `n` records like scan events (~430 bytes of JSON, LZ4 packs them ~2.5x), unique by the
/// xorshift state `x`.
#[allow(dead_code)] // Not every test binary that includes this module uses it.
pub fn scan_like_records(x: &mut u64, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            let x = *x;
            let h = |k: u32| x.rotate_left(k).wrapping_mul(0x94D0_49BB_1331_11EB);
            format!(
                r#"{{"event_id":"evt-{:016x}","timestamp":"2026-01-30T10:30:00.123Z","event_type":"scan","threat_detected":true,"severity":"high","rule_ids":["pi-001","pi-003"],"families":["PI"],"prompt_hash":"sha256:{:016x}{:016x}{:016x}{:016x}","prompt_length":{},"customer_id":"cust_acme","agent_id":"agent_{:06}","installation_id":"inst_{:08x}"}}"#,
                h(1),
                h(2),
                h(3),
                h(4),
                h(5),
                x % 10_000,
                x % 1_000_000,
                h(6) as u32
            )
            .into_bytes()
        })
        .collect()
}
