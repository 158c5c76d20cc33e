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
mod sled_queue;
#[cfg(test)]
mod staging_tests;
mod tips;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use commit::{FsSyncer, Syncer};
pub use log_scan::{find_log_damage, LogDamage};
pub use salvage::{scan_raw_chunks, scan_raw_records, DamagedChunk, Quarantined};
pub use sled_queue::{SledQueue, MAX_RECORD_BYTES};

use crate::error::QueueError;
use crate::queue::{Queue, QueueStore, Seq};
use commit::{Committer, Level};
use journal::Journal;

const QUEUE_TREE_PREFIX: &str = "q/";
/// Lock file held (flock) for as long as the store is open.
pub const LOCK_FILE: &str = "raxe.lock";
const MAX_NAME_BYTES: usize = 200;

/// Tuning and hooks for [`SledStore::open_with`].
#[derive(Clone)]
pub struct StoreOptions {
    /// sled's page cache. sled's default (1 GiB) lets RSS grow with the queue. Below ~256
    /// leaves (one per LRU shard; see the crate's Memory notes) a smaller value saves nothing.
    pub cache_capacity: u64,
    /// Target size of one chunk's plain encoding (many records per sled value; packing
    /// only shrinks it). Capped at `segment_size / 96` (21 KiB with the default segment):
    /// sled rewrites a whole leaf (up to ~20 values) as one log item, and items above a
    /// quarter segment go to unsynced blob files. Fewer, bigger chunks mean fewer sled
    /// items per record, and sled's per-item work dominates: against 8 KiB, the default
    /// 20 KiB measured (packed scan events) +33% durable appends of 100, lease + ack of 100
    /// in 52 instead of 84 µs, -6% CPU per event end to end; it holds ~9 MiB more RSS with
    /// 1M records queued in `queue_bench` (sled's LRU floor, below), none measurable end to
    /// end.
    pub chunk_bytes: usize,
    /// Store chunks LZ4-packed when that saves at least an eighth (on by default). Scan
    /// events pack ~3x, so sled writes, rewrites and caches a third of the bytes: end to
    /// end (one HEC destination) 6% less CPU per event and 30% less peak RSS. The cost: a
    /// byte damaged inside a packed value spoils its whole chunk for `raxe repair`'s raw
    /// scan, where a plain chunk loses only the record it hit. Either setting reads both
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

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity: 8 << 20,
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

/// State shared by the store and its queue handles. Field order matters: sled closes
/// before the directory lock is released.
pub(crate) struct Shared {
    dir: PathBuf,
    db_path: PathBuf,
    db: sled::Db,
    markers: sled::Tree,
    /// Our own handle on sled's data file, for fdatasync.
    db_file: File,
    blobs_dir: PathBuf,
    /// Blob files synced, with the length they had then.
    synced_blobs: Mutex<HashMap<OsString, u64>>,
    syncer: Arc<dyn Syncer>,
    pub(crate) committer: Committer,
    pub(crate) journal: Journal,
    /// Every queue's durable next seq, outside sled (see `tips.rs`).
    pub(crate) tips: tips::Tips,
    pub(crate) chunk_bytes: usize,
    pub(crate) pack_chunks: bool,
    _lock: File,
}

impl Shared {
    /// Maps a sled error; an I/O error also poisons the store: sled 0.34 remembers its
    /// first I/O error and fails every later write with it until it is reopened.
    pub(crate) fn db_err(&self, e: sled::Error) -> QueueError {
        if let sled::Error::Io(io) = &e {
            self.committer.poison(format!(
                "sled I/O error on {}: {io}",
                self.db_path.display()
            ));
        }
        sled_err(&self.dir, &self.db_path, e)
    }

    /// Runs an append's sled write (see `unwind_guard` for panics). Any failure poisons
    /// the store: sled may have applied part of the batch, so no append may take its seqs
    /// again before a reopen has looked at what is there.
    pub(crate) fn write_append(
        &self,
        what: &str,
        write: impl FnOnce() -> Result<(), QueueError>,
    ) -> Result<(), QueueError> {
        let written = self.unwind_guard(what, || {
            write_fault_point().map_err(|e| self.db_err(e))?;
            write()
        });
        if let Err(e) = &written {
            self.committer.poison(format!(
                "{what} failed inside sled and may be partly applied: {e}"
            ));
        }
        written
    }

    /// Runs a sled call, turning a panic inside sled into an error (see `unwind_guard`).
    pub(crate) fn sled_call<T>(
        &self,
        what: &str,
        call: impl FnOnce() -> sled::Result<T>,
    ) -> Result<T, QueueError> {
        self.unwind_guard(what, || call().map_err(|e| self.db_err(e)))
    }

    /// Runs storage work that calls into sled, turning a panic inside it into an error.
    /// sled 0.34 panics on some trees rebuilt from a damaged log ("cannot find pid ... in
    /// view_for_key"); its state is then not to be trusted, so the store is poisoned (no
    /// more appends) and the caller gets `Corrupt`, which points to a restart or `raxe
    /// repair`, not a crash. The panic's message is kept in the error: a bug of ours that
    /// panics here reads as what it is. The caller's own locks are never unwound through,
    /// so it can still undo what it had started.
    pub(crate) fn unwind_guard<T>(
        &self,
        what: &str,
        call: impl FnOnce() -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        match catch_unwind(AssertUnwindSafe(call)) {
            Ok(result) => result,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("no message");
                let detail = format!(
                    "the storage engine panicked during {what} ({message}): its data file may \
                     be damaged; restart to check it, or run `raxe repair`"
                );
                self.committer.poison(detail.clone());
                Err(QueueError::Corrupt {
                    path: self.db_path.clone(),
                    detail,
                })
            }
        }
    }

    pub(crate) fn corrupt(&self, queue: &str, detail: &str) -> QueueError {
        QueueError::Corrupt {
            path: self.db_path.clone(),
            detail: format!("queue {queue:?}: {detail}"),
        }
    }

    /// Fails once the store is poisoned: appends check it before their work and again
    /// under the append lock.
    pub(crate) fn check_not_poisoned(&self) -> Result<(), QueueError> {
        match self.committer.poisoned() {
            Some(detail) => Err(self.poisoned(detail)),
            None => Ok(()),
        }
    }

    pub(crate) fn poisoned(&self, detail: String) -> QueueError {
        QueueError::Poisoned {
            dir: self.dir.clone(),
            detail,
        }
    }

    /// Records queues' durable tips `(nonce, next seq)` after their append was synced,
    /// with the data file's length now.
    pub(crate) fn note_tips(&self, tips: &[(u64, Seq)]) {
        let len = self.db_file.metadata().map(|m| m.len()).unwrap_or(0);
        self.tips.advance(tips, len);
    }

    /// Waits until `ticket` is durable at `level` (group commit).
    pub(crate) fn commit(&self, ticket: u64, level: Level) -> Result<(), QueueError> {
        self.committer
            .wait(ticket, level, &|sync| self.flush(sync))
            .map_err(|p| self.poisoned(p))
    }

    /// Rotates the ack journal: new file, a sled flush that started after the switch, then
    /// the old file is deleted (see `journal.rs`). A failed flush keeps the old file.
    pub(crate) fn rotate_journal(&self) {
        if !self.journal.begin_rotation() {
            return;
        }
        let t = self.committer.ticket();
        let flushed = self.commit(t, Level::Flush).is_ok();
        self.journal.end_rotation(flushed);
    }

    /// sled's flush writes its log buffer and calls sync_file_range, which survives a
    /// process crash but not a power loss (no disk cache flush, no metadata). So for
    /// `sync` we fdatasync the data file (and any blob files) ourselves.
    fn flush(&self, sync: bool) -> Result<(), String> {
        self.db
            .flush()
            .map_err(|e| format!("sled flush of {}: {e}", self.db_path.display()))?;
        if sync {
            self.sync_blobs()?;
            self.syncer
                .sync_data(&self.db_path, &self.db_file)
                .map_err(|e| format!("fdatasync of {}: {e}", self.db_path.display()))?;
        }
        Ok(())
    }

    /// sled never syncs its blob files (values above its inline threshold). Chunks are
    /// sized to avoid them; should any appear anyway, sync them and their directory.
    fn sync_blobs(&self) -> Result<(), String> {
        let rd = match fs::read_dir(&self.blobs_dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("{}: {e}", self.blobs_dir.display())),
        };
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|e| e.into_inner());
        let mut present = HashMap::new();
        let mut new_files = false;
        for entry in rd {
            let entry = entry.map_err(|e| format!("{}: {e}", self.blobs_dir.display()))?;
            let name = entry.file_name();
            let path = entry.path();
            // Garbage-collected by sled meanwhile: nothing to sync.
            let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
            // sled writes a blob on the appending thread, in several writes: a file seen
            // while another append was still writing it is synced again once it grew. A
            // stat, not an open, tells whether it did.
            let len = match entry.metadata() {
                Ok(meta) => meta.len(),
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            };
            if synced.get(&name) != Some(&len) {
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if gone(&e) => continue,
                    Err(e) => return Err(format!("{}: {e}", path.display())),
                };
                self.syncer
                    .sync_data(&path, &file)
                    .map_err(|e| format!("fdatasync of {}: {e}", path.display()))?;
                new_files |= !synced.contains_key(&name);
            }
            present.insert(name, len);
        }
        if new_files {
            sync_path(&*self.syncer, &self.blobs_dir).map_err(|e| e.to_string())?;
        }
        *synced = present;
        Ok(())
    }
}

fn sync_path(syncer: &dyn Syncer, path: &Path) -> Result<(), QueueError> {
    let io_err = |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(io_err)?;
    syncer.sync_data(path, &f).map_err(io_err)
}

fn sled_err(dir: &Path, db_path: &Path, e: sled::Error) -> QueueError {
    match e {
        sled::Error::Io(source) => QueueError::Io {
            path: db_path.to_path_buf(),
            source,
        },
        sled::Error::Corruption { at, .. } => QueueError::Corrupt {
            path: db_path.to_path_buf(),
            detail: format!("the storage engine found corruption at {at:?}"),
        },
        other => QueueError::Db {
            path: dir.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

/// See [`SledStore::closed_signal`].
#[derive(Clone)]
pub struct ClosedSignal(std::sync::Weak<Shared>);

impl ClosedSignal {
    /// True once the store and all its queue handles were dropped.
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
        ClosedSignal(Arc::downgrade(&self.shared))
    }

    /// The nonce stored in an existing queue tree, if it has a readable one.
    fn stored_nonce(&self, tree: &str) -> Option<u64> {
        let db = &self.shared.db;
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
            .db
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
            .markers
            .get(key)
            .map_err(|e| self.shared.db_err(e))?
            .map(|v| v.to_vec()))
    }

    /// The keys of every marker that starts with `prefix`, in key order.
    pub fn marker_keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, QueueError> {
        self.shared
            .markers
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
            .markers
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
            .db
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
            .db
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
