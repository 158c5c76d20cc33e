//! The sled-backed store: one sled database per data directory, one tree per queue.

mod ack;
mod chunk;
mod codec;
mod commit;
mod group;
mod journal;
mod lease;
mod load;
mod log_scan;
mod open;
mod ranges;
mod salvage;
mod shared;
mod sled_queue;
#[cfg(test)]
mod staging_tests;
mod tips;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

pub use commit::{FsSyncer, Syncer};
pub use log_scan::{find_log_damage, LogDamage};
pub use salvage::{scan_raw_chunks, scan_raw_records, DamagedChunk, Quarantined};
pub use sled_queue::{SledQueue, MAX_RECORD_BYTES};

use crate::error::QueueError;
use crate::queue::{Queue, QueueStore};
use commit::Level;
pub(crate) use shared::Shared;
use shared::{sled_err, sled_let_go, sync_path, SledHandles};

const QUEUE_TREE_PREFIX: &str = "q/";
/// Lock file held (flock) for as long as the store is open.
pub const LOCK_FILE: &str = "raxe.lock";
const MAX_NAME_BYTES: usize = 200;

/// Tuning and hooks for [`SledStore::open_with`].
#[derive(Clone)]
pub struct StoreOptions {
    /// sled's page cache. sled's default (1 GiB) lets RSS grow with the queue. Below 16
    /// leaves (one per LRU shard; see the crate's Memory notes) a smaller value saves nothing.
    /// Many busy queues want more: see [`StoreOptions::cache_for_queues`].
    pub cache_capacity: u64,
    /// Largest stored value of one chunk (many records per sled value), packed or plain.
    /// Capped at `segment_size / 96` (21 KiB with the default segment): sled rewrites a
    /// whole leaf (up to ~20 values) as one log item, and items above a quarter segment go
    /// to unsynced blob files. With `pack_chunks` a chunk takes up to 2.5 times this of
    /// plain records, and one that does not pack under it is cut shorter (`cut_chunks`).
    /// Fewer, bigger chunks mean fewer sled items per record, and sled's per-item work
    /// dominates: against 8 KiB, 20 KiB of plain records measured (packed scan events)
    /// +33% durable appends of 100, lease + ack of 100 in 52 instead of 84 µs, -6% CPU per
    /// event end to end; 2.5 times that per packed chunk (~117 scan events, ~17 KiB stored)
    /// another 8% less CPU end to end to one HEC destination (3 A/B pairs).
    pub chunk_bytes: usize,
    /// Store chunks LZ4-packed when that saves at least an eighth (on by default). Scan
    /// events pack ~3x, so sled writes, rewrites and caches a third of the bytes: end to
    /// end (one HEC destination) 6% less CPU per event and 30% less peak RSS. The cost: a
    /// byte damaged inside a packed value spoils its whole chunk (up to ~117 scan events)
    /// for `raxe repair`'s raw scan, where a plain chunk loses only the record it hit. Either setting reads both
    /// kinds of chunk.
    pub pack_chunks: bool,
    /// sled's segment (IO buffer) size; fixed when the directory is created (sled refuses
    /// to open with another value). sled writes any value above a quarter of it to a
    /// separate blob file, so chunks are kept to `segment_size / 96` at most.
    pub segment_size: usize,
    /// Byte cap for queues opened through [`QueueStore::open_queue`]; `None` = unbounded.
    pub max_queue_bytes: Option<u64>,
    /// sled's background flush interval (our appends fdatasync themselves anyway). Acks
    /// do not wait for a flush: until one happens they are in the ack journal only.
    pub flush_every_ms: Option<u64>,
    /// The ack journal (`acks-<gen>.log`) starts a new file, after a sled flush, once the
    /// current one reaches this many bytes (~50 bytes per ack). Bounds the journal's disk
    /// use and the replay work at open.
    pub ack_journal_bytes: u64,
    /// Every durability sync goes through this.
    pub syncer: Arc<dyn Syncer>,
}

impl StoreOptions {
    /// The default page cache (8 MiB, enough for one queue however long).
    pub const BASE_CACHE: u64 = 8 << 20;
    /// What each busy queue adds. A queue works on one or two leaves (the one its appends
    /// go to, the one its leases and acks work on; 8-16 chunks, up to ~270 KiB of scan
    /// events each), and most of the time they are the same leaf: 160 KiB a queue is
    /// where the gain in the measurements below levels off.
    pub const CACHE_PER_QUEUE: u64 = 160 << 10;
    /// The most [`StoreOptions::cache_for_queues`] asks for, however many queues (250 busy
    /// ones): it keeps the cache well inside the 64 MiB peak-RSS target. More busy queues
    /// than that cost CPU re-reading leaves, never data.
    pub const MAX_CACHE: u64 = 48 << 20;

    /// A page cache that holds the working leaves of `queues` busy queues: the base cache
    /// plus [`StoreOptions::CACHE_PER_QUEUE`] each, at most [`StoreOptions::MAX_CACHE`].
    ///
    /// Why: a queue's appends, leases and acks each need its leaf in sled's cache. When
    /// the leaves of the queues in use do not fit, every turn of the round over them pages
    /// each one out and reads it back (a pread and a decode of ~200 KiB), and the memory
    /// churn raises RSS as well. Measured (`e2e_bench` hec100, 100 destinations, 3 runs
    /// each): 8 MiB 3.25-3.48 CPU-s/M, 16 MiB 2.95-3.14, 24 MiB 2.95-3.00, 32 MiB
    /// 2.91-2.98, 48 MiB 2.95-3.10; this sizing (23.6 MiB) against 8 MiB, 4 pairs: 2.93
    /// against 3.33 (lower in 4 of 4), peak RSS 52-55 against 59-66 MiB. Idle queues'
    /// leaves are never read, so they cost nothing: the capacity is a bound, not an
    /// allocation. A backlog on every queue at once keeps two leaves each busy, which
    /// this does not hold (`tests/sled_cache_queues.rs`): then the cost is CPU, not data.
    pub fn cache_for_queues(queues: usize) -> u64 {
        let queues = u64::try_from(queues).unwrap_or(u64::MAX);
        Self::BASE_CACHE
            .saturating_add(Self::CACHE_PER_QUEUE.saturating_mul(queues))
            .min(Self::MAX_CACHE)
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity: Self::BASE_CACHE,
            chunk_bytes: 20 << 10,
            pack_chunks: true,
            segment_size: 2 << 20,
            max_queue_bytes: None,
            flush_every_ms: Some(1000),
            ack_journal_bytes: 1 << 20,
            syncer: Arc::new(FsSyncer),
        }
    }
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("cache_capacity", &self.cache_capacity)
            .field("chunk_bytes", &self.chunk_bytes)
            .field("pack_chunks", &self.pack_chunks)
            .field("segment_size", &self.segment_size)
            .field("max_queue_bytes", &self.max_queue_bytes)
            .field("flush_every_ms", &self.flush_every_ms)
            .field("ack_journal_bytes", &self.ack_journal_bytes)
            .finish_non_exhaustive()
    }
}

/// See [`SledStore::closed_signal`].
#[derive(Clone)]
pub struct ClosedSignal(std::sync::Weak<()>);

impl ClosedSignal {
    /// True once the store and all its queue handles were dropped and the store has closed.
    pub fn is_closed(&self) -> bool {
        self.0.strong_count() == 0
    }
}

/// Durable queues in one data directory. See the crate docs for the design.
pub struct SledStore {
    shared: Arc<Shared>,
    queues: Mutex<HashMap<String, Arc<SledQueue>>>,
    default_cap: Option<u64>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

impl SledStore {
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// `Err(Poisoned)` once a durability sync has failed (a full disk, say): from then on
    /// nothing can be appended or promised durable until the store is closed and opened
    /// again. A long-running owner polls this to know when to reopen.
    pub fn health(&self) -> Result<(), QueueError> {
        self.shared.check_not_poisoned()
    }

    /// A handle that tells when this store, and every queue handle it gave out, is gone:
    /// only then are sled's files and the directory lock released, so a reopen in the same
    /// process waits for it.
    pub fn closed_signal(&self) -> ClosedSignal {
        ClosedSignal(Arc::downgrade(&self.shared.alive))
    }

    /// The nonce stored in an existing queue tree, if it has a readable one.
    fn stored_nonce(&self, tree: &str) -> Option<u64> {
        let db = self.shared.db();
        if !db.tree_names().iter().any(|t| &t[..] == tree.as_bytes()) {
            return None;
        }
        let value = db.open_tree(tree).ok()?.get(codec::NONCE_KEY).ok()??;
        codec::decode_nonce(&value).ok()
    }

    fn queues(&self) -> MutexGuard<'_, HashMap<String, Arc<SledQueue>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The queue named `name` (created if needed), as its concrete type.
    pub fn queue(&self, name: &str) -> Result<Arc<SledQueue>, QueueError> {
        validate_name(name)?;
        let mut map = self.queues();
        if let Some(q) = map.get(name) {
            return Ok(q.clone());
        }
        let tree = self
            .shared
            .db()
            .open_tree(format!("{QUEUE_TREE_PREFIX}{name}"))
            .map_err(|e| self.shared.db_err(e))?;
        let q = Arc::new(SledQueue::load(
            name,
            tree,
            self.shared.clone(),
            self.default_cap,
        )?);
        map.insert(name.to_string(), q.clone());
        Ok(q)
    }

    /// Like [`SledStore::queue`], setting the queue's byte cap (`None` = unbounded).
    pub fn queue_with_cap(
        &self,
        name: &str,
        cap: Option<u64>,
    ) -> Result<Arc<SledQueue>, QueueError> {
        let q = self.queue(name)?;
        q.set_cap(cap);
        Ok(q)
    }

    /// The value of a marker set by [`SledStore::append_group`], if present.
    pub fn marker(&self, key: &[u8]) -> Result<Option<Vec<u8>>, QueueError> {
        Ok(self
            .shared
            .markers()
            .get(key)
            .map_err(|e| self.shared.db_err(e))?
            .map(|v| v.to_vec()))
    }

    /// The keys of every marker that starts with `prefix`, in key order.
    pub fn marker_keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, QueueError> {
        self.shared
            .markers()
            .scan_prefix(prefix)
            .keys()
            .map(|key| key.map(|k| k.to_vec()).map_err(|e| self.shared.db_err(e)))
            .collect()
    }

    /// Removes a marker; returns whether it existed. Durable against a process crash on
    /// return (not fdatasynced: after a power loss the marker may come back).
    pub fn remove_marker(&self, key: &[u8]) -> Result<bool, QueueError> {
        let old = self
            .shared
            .markers()
            .remove(key)
            .map_err(|e| self.shared.db_err(e))?;
        let t = self.shared.committer.ticket();
        self.shared.commit(t, Level::Flush)?;
        Ok(old.is_some())
    }
}

fn validate_name(name: &str) -> Result<(), QueueError> {
    let why = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_BYTES {
        "longer than 200 bytes"
    } else if name.chars().any(char::is_control) {
        "contains control characters"
    } else {
        return Ok(());
    };
    Err(QueueError::InvalidName {
        name: name.to_string(),
        why,
    })
}

fn dir_bytes(path: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        let md = entry.metadata()?;
        total += if md.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            md.len()
        };
    }
    Ok(total)
}

impl QueueStore for SledStore {
    fn open_queue(&self, name: &str) -> Result<Arc<dyn Queue>, QueueError> {
        Ok(self.queue(name)?)
    }

    fn list_queues(&self) -> Result<Vec<String>, QueueError> {
        let mut names: Vec<String> = self
            .shared
            .db()
            .tree_names()
            .iter()
            .filter_map(|n| std::str::from_utf8(n).ok())
            .filter_map(|n| n.strip_prefix(QUEUE_TREE_PREFIX))
            .map(str::to_string)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes the queue's tree. Live handles to it fail with `QueueError::Dropped`; a
    /// queue later opened under the same name is a new queue (its seqs start at 0 again).
    fn drop_queue(&self, name: &str) -> Result<(), QueueError> {
        validate_name(name)?;
        let tree = format!("{QUEUE_TREE_PREFIX}{name}");
        let mut map = self.queues();
        let dropped = map.remove(name);
        if let Some(q) = &dropped {
            // Acks in flight now skip their sled writes. Should the drop below fail, those
            // records come back when the queue is opened again: duplicates, never loss.
            q.mark_dropped();
        }
        // A queue not opened in this run still has a tip from an earlier one.
        let nonce = match &dropped {
            Some(q) => Some(q.nonce),
            None => self.stored_nonce(&tree),
        };
        self.shared
            .db()
            .drop_tree(&tree)
            .map_err(|e| self.shared.db_err(e))?;
        // Only once the tree is gone: a failed drop leaves the queue (and its nonce) to be
        // opened again, and its tip must keep advancing.
        if let Some(nonce) = nonce {
            self.shared.tips.forget(nonce);
        }
        let t = self.shared.committer.ticket();
        drop(map);
        self.shared.commit(t, Level::Flush)
    }

    fn append_group(
        &self,
        parts: &[(&str, &[&[u8]])],
        marker: Option<(&[u8], &[u8])>,
    ) -> Result<Vec<std::ops::Range<crate::queue::Seq>>, QueueError> {
        SledStore::append_group(self, parts, marker)
    }

    fn append_group_with_markers(
        &self,
        parts: &[(&str, &[&[u8]])],
        markers: &[(&[u8], &[u8])],
    ) -> Result<Vec<std::ops::Range<crate::queue::Seq>>, QueueError> {
        SledStore::append_group_with_markers(self, parts, markers)
    }

    fn marker(&self, key: &[u8]) -> Result<Option<Vec<u8>>, QueueError> {
        SledStore::marker(self, key)
    }

    fn remove_marker(&self, key: &[u8]) -> Result<bool, QueueError> {
        SledStore::remove_marker(self, key)
    }

    /// Sum of the files in the data directory. sled reuses space freed by acks and
    /// truncates its data file only by free segments at its tail, so this mostly keeps its
    /// high-water mark when queues drain.
    fn disk_bytes(&self) -> Result<u64, QueueError> {
        dir_bytes(&self.shared.dir).map_err(|source| QueueError::Io {
            path: self.shared.dir.clone(),
            source,
        })
    }
}

#[cfg(test)]
thread_local! {
    /// Test hook: the next append on this thread panics inside its sled write, as sled
    /// itself can on a damaged tree.
    pub(crate) static PANIC_IN_NEXT_WRITE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Test hook: the next append on this thread gets an error (not I/O) from its sled
    /// write, as sled can report a corrupt tree.
    pub(crate) static ERROR_IN_NEXT_WRITE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Where tests make an append's sled write panic or fail (nothing outside tests).
fn write_fault_point() -> sled::Result<()> {
    #[cfg(test)]
    if PANIC_IN_NEXT_WRITE.with(|f| f.replace(false)) {
        panic!("injected panic inside the sled write");
    }
    #[cfg(test)]
    if ERROR_IN_NEXT_WRITE.with(|f| f.replace(false)) {
        return Err(sled::Error::ReportableBug(
            "injected error inside the sled write".into(),
        ));
    }
    Ok(())
}
