//! What the store and its queue handles share: sled, our handle on its data file, group
//! commit and the ack journal, the tips, and the close that records the file's length.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::commit::{Committer, Level, Syncer};
use super::journal::Journal;
use super::{tips, write_fault_point};
use crate::error::QueueError;
use crate::queue::Seq;

/// State shared by the store and its queue handles. Its `Drop` closes sled first, records
/// the data file's length, and only then are the directory lock and `alive` released.
pub(crate) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) db_path: PathBuf,
    /// `None` only while the store closes.
    pub(super) sled: Option<SledHandles>,
    /// Our own handle on sled's data file, for fdatasync.
    pub(super) db_file: File,
    pub(super) blobs_dir: PathBuf,
    /// Blob files synced, with the length they had then.
    pub(super) synced_blobs: Mutex<HashMap<OsString, u64>>,
    pub(super) syncer: Arc<dyn Syncer>,
    pub(crate) committer: Committer,
    pub(crate) journal: Journal,
    /// Every queue's durable next seq, outside sled (see `tips.rs`).
    pub(crate) tips: tips::Tips,
    pub(crate) chunk_bytes: usize,
    pub(crate) pack_chunks: bool,
    /// Set once an open has passed every check: only then does the close record the
    /// data file's length (a refused open must leave the next one its checks).
    pub(super) opened: AtomicBool,
    pub(super) _lock: File,
    /// Dropped last: [`super::ClosedSignal`] watches it.
    pub(super) alive: Arc<()>,
}

pub(super) struct SledHandles {
    pub(super) db: sled::Db,
    pub(super) markers: sled::Tree,
}

/// How long a clean close waits for sled's threads to let go of the data file before it
/// records the file's length (they keep it open a few milliseconds after the last `Db`).
const CLOSE_WAIT: Duration = Duration::from_secs(2);

impl Drop for Shared {
    /// sled shortens its data file whenever segments at its tail fall free (while it runs,
    /// starts or closes); a start that finds the file shorter than recorded copies it
    /// aside and reads every chunk back. So a clean close records the length sled left. A
    /// poisoned store records nothing: its file is what the next start must check.
    fn drop(&mut self) {
        let clean = self.committer.poisoned().is_none() && *self.opened.get_mut();
        drop(self.sled.take());
        if clean && sled_let_go(&self.db_path, CLOSE_WAIT) {
            self.tips.note_db_len(|| self.db_len());
        }
    }
}

/// Waits until no one holds sled's lock on `db_path`: sled's last handle on the file is
/// closed, with any truncation it had started (sled's threads keep it open a few
/// milliseconds after the last `Db` is dropped). True too when there is no file; false if
/// that takes longer than `wait`, or the lock cannot be tested.
pub(super) fn sled_let_go(db_path: &Path, wait: Duration) -> bool {
    use fs2::FileExt;
    let file = match fs::OpenOptions::new().read(true).write(true).open(db_path) {
        Ok(file) => file,
        Err(e) => return e.kind() == io::ErrorKind::NotFound,
    };
    let contended = fs2::lock_contended_error().raw_os_error();
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock_exclusive() {
            Ok(()) => {
                let _ = FileExt::unlock(&file);
                return true;
            }
            Err(e)
                if (e.raw_os_error() == contended || e.kind() == io::ErrorKind::WouldBlock)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return false,
        }
    }
}

impl Shared {
    pub(crate) fn db(&self) -> &sled::Db {
        &self.sled_handles().db
    }

    pub(crate) fn markers(&self) -> &sled::Tree {
        &self.sled_handles().markers
    }

    fn sled_handles(&self) -> &SledHandles {
        self.sled
            .as_ref()
            .expect("sled stays open until the last handle on the store is dropped")
    }

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
        self.tips.advance(tips, || self.db_len());
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
        // sled may have shortened its file since the last append (tips.rs).
        if flushed {
            self.tips.note_db_len(|| self.db_len());
        }
    }

    pub(crate) fn db_len(&self) -> Option<u64> {
        self.db_file.metadata().ok().map(|m| m.len())
    }

    /// sled's flush writes its log buffer and calls sync_file_range, which survives a
    /// process crash but not a power loss (no disk cache flush, no metadata). So for
    /// `sync` we fdatasync the data file (and any blob files) ourselves.
    fn flush(&self, sync: bool) -> Result<(), String> {
        self.db()
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

pub(super) fn sync_path(syncer: &dyn Syncer, path: &Path) -> Result<(), QueueError> {
    let io_err = |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(io_err)?;
    syncer.sync_data(path, &f).map_err(io_err)
}

pub(super) fn sled_err(dir: &Path, db_path: &Path, e: sled::Error) -> QueueError {
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
