//! Helpers shared by the storage integration tests.

use std::path::Path;
use std::time::{Duration, Instant};

use raxe_storage::StoreOptions;

/// sled itself on a store's directory (to damage or inspect what the store wrote), opened
/// once the store's background threads let go of the file: a truncation thread may hold
/// sled's file lock for a moment after the store is dropped.
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
