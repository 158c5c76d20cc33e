//! Spool intake: agents drop JSON-lines files into the spool directory and make them
//! visible by rename (`*.tmp` and dot-files are ignored). The service first claims a
//! complete `*.jsonl` file by moving it into `spool/ingesting/` (a rename that never
//! replaces a file already there), then parses every line, makes the good events durable in
//! their queues, records the progress in the same durable step, and deletes the file.
//! Only the service touches `ingesting/`: an agent that reuses a name while the first file
//! is read just drops a new file into the spool, which waits for the first to finish.
//!
//! Crash safety: progress is a marker `spool:<name>:<inode>:<size>:<mtime>` → byte offset,
//! line number, rejects length, written atomically with each step's events
//! (`dispatch_encoded_marked`), the identity being the one of the file actually opened.
//! After a crash the claimed file is resumed at the recorded offset: no event is lost or
//! taken twice. Files stream in steps of
//! 1,000-8,000 lines (see [`Step`]), so a large file never sits in memory. Bad lines go to
//! `rejected/<file>.rejected` with the line number and the reason, each once: the marker
//! also records the rejects file's length, and a step tried again (after a failure or a
//! crash) first cuts what its earlier attempt wrote.

mod file;
mod steps;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use raxe_engine::SiemDispatcher;
use raxe_storage::SledStore;

pub use file::ingest_file;
pub(crate) use steps::{line_text, read_line_bounded, Step};

/// Where claimed files are read from, inside the spool.
pub const INGESTING_DIR: &str = "ingesting";
/// Marker keys of spool progress start with this.
const MARKER_PREFIX: &str = "spool:";
/// A file that keeps failing is logged as an error at most this often.
const COMPLAINT_INTERVAL: Duration = Duration::from_secs(60);

/// The service's spool: where agents drop files, and its `ingesting/` and `rejected/`.
pub struct Spool {
    dir: PathBuf,
    ingesting: PathBuf,
    rejected: PathBuf,
    /// Files that failed, and when that was last logged as an error.
    complaints: Mutex<HashMap<PathBuf, Instant>>,
}

impl Spool {
    /// Creates the spool's subdirectories (private) if needed.
    pub fn open(dir: PathBuf) -> Result<Spool> {
        let ingesting = dir.join(INGESTING_DIR);
        let rejected = dir.join("rejected");
        for sub in [&ingesting, &rejected] {
            crate::data_dir::create_private_dir(sub)
                .with_context(|| format!("cannot create {}", sub.display()))?;
        }
        Ok(Spool {
            dir,
            ingesting,
            rejected,
            complaints: Mutex::new(HashMap::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Ingests the files claimed earlier (a crash or a failure left them), then claims and
    /// ingests every complete file in the spool, oldest first. A file that fails stays
    /// where it is and is tried again on the next call, without holding up the files
    /// after it; a failure of the store itself stops the call (every file would fail).
    pub fn ingest_pending(&self, dispatcher: &SiemDispatcher, store: &SledStore) {
        let listed = pending_files(&self.ingesting)
            .and_then(|claimed| Ok((claimed, pending_files(&self.dir)?)));
        let (claimed, fresh) = match listed {
            Ok(files) => files,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read the spool");
                return;
            }
        };
        let fresh = fresh
            .into_iter()
            .filter_map(|file| match claim(&file, &self.ingesting) {
                Ok(claimed) => claimed,
                Err(e) => {
                    self.complain(&file, &anyhow::Error::new(e).context("cannot claim it"));
                    None
                }
            });
        for claimed in claimed.into_iter().chain(fresh) {
            match ingest_file(&claimed, dispatcher, store, &self.rejected) {
                Ok(report) => {
                    lock(&self.complaints).remove(&claimed);
                    dispatcher
                        .audit()
                        .metrics()
                        .intake(report.accepted, report.rejected);
                    tracing::info!(
                        file = %claimed.display(),
                        accepted = report.accepted,
                        rejected = report.rejected,
                        unrouted = report.unrouted,
                        "spool file ingested"
                    )
                }
                Err(e) => {
                    self.complain(&claimed, &e);
                    // A queue that refused events (full, or the store failed) would refuse
                    // the next file's too, and taking later files first would put their
                    // events ahead of this one's in the queues they share. Only a fault of
                    // this file (unreadable, its rejects unwritable) lets the others pass.
                    if e.is::<file::QueueRefused>() || store.health().is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Logs a file's failure: as an error the first time and then once a minute, in
    /// between at debug level, so a file that cannot be read does not flood the log.
    fn complain(&self, file: &Path, error: &anyhow::Error) {
        let mut complaints = lock(&self.complaints);
        let due = complaints
            .get(file)
            .is_none_or(|last| last.elapsed() >= COMPLAINT_INTERVAL);
        if due {
            complaints.insert(file.to_path_buf(), Instant::now());
            tracing::error!(file = %file.display(), error = %format!("{error:#}"), "spool file not ingested; will retry");
        } else {
            tracing::debug!(file = %file.display(), error = %format!("{error:#}"), "spool file not ingested; will retry");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Complete spool files, oldest first.
pub fn pending_files(spool: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in
        fs::read_dir(spool).with_context(|| format!("cannot read spool {}", spool.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.ends_with(".tmp") || !name.ends_with(".jsonl") {
            continue;
        }
        // Claimed or deleted since the listing (the service works meanwhile): not pending.
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        if meta.is_file() {
            files.push((meta.modified()?, entry.path()));
        }
    }
    files.sort();
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

/// Claims a spool file for reading: moves it into `ingesting_dir` under its name. Returns
/// the new path, or `None` when it is gone or a file of that name is still being ingested
/// (it is claimed once that one is done). The rename never replaces a file.
pub fn claim(file: &Path, ingesting_dir: &Path) -> io::Result<Option<PathBuf>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Some(name) = file.file_name() else {
        return Ok(None);
    };
    let target = ingesting_dir.join(name);
    let c_path = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    };
    let (from, to) = (c_path(file)?, c_path(&target)?);
    // SAFETY: two NUL-terminated paths that outlive the call.
    let renamed = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if renamed == 0 {
        return Ok(Some(target));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EEXIST) | Some(libc::ENOENT) => Ok(None),
        // A file system without RENAME_NOREPLACE: check, then rename (the service is the
        // only writer of `ingesting_dir`, so nothing appears there in between).
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            if fs::symlink_metadata(&target).is_ok() {
                return Ok(None);
            }
            match fs::rename(file, &target) {
                Ok(()) => Ok(Some(target)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }
        _ => Err(err),
    }
}

/// Removes progress markers of spool files that no longer exist (a crash between deleting
/// a file and removing its marker, or a power loss that brought a removed marker back), so
/// that a later file can never take a stale offset. Returns how many were removed.
pub fn sweep_markers(store: &SledStore, spool: &Path) -> Result<usize> {
    let mut removed = 0;
    for key in store.marker_keys(MARKER_PREFIX.as_bytes())? {
        let text = String::from_utf8_lossy(&key);
        let mut parts = text[MARKER_PREFIX.len()..].rsplitn(4, ':');
        let (_mtime, _size, inode, name) = (parts.next(), parts.next(), parts.next(), parts.next());
        let inode: Option<u64> = inode.and_then(|i| i.parse().ok());
        // A name that was not UTF-8 cannot be looked up from its key: leave it (a stale
        // marker only matters to a file of the same name, inode, size and mtime).
        if name.is_some_and(|n| n.contains(char::REPLACEMENT_CHARACTER)) {
            continue;
        }
        // Earlier versions read files in the spool itself.
        let alive = name.zip(inode).is_some_and(|(name, inode)| {
            [spool.join(INGESTING_DIR).join(name), spool.join(name)]
                .iter()
                .any(|path| fs::symlink_metadata(path).is_ok_and(|m| m.ino() == inode))
        });
        if !alive {
            store.remove_marker(&key)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_jsonl_files_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.jsonl", "b.jsonl.tmp", ".c.jsonl", "d.txt"] {
            fs::write(dir.path().join(name), "{}\n").unwrap();
        }
        let files = pending_files(dir.path()).unwrap();
        assert_eq!(files, vec![dir.path().join("a.jsonl")]);
    }

    #[test]
    fn a_claim_moves_the_file_and_never_replaces_one() {
        let spool = tempfile::tempdir().unwrap();
        let ingesting = spool.path().join(INGESTING_DIR);
        fs::create_dir(&ingesting).unwrap();
        let file = spool.path().join("x.jsonl");
        fs::write(&file, "first\n").unwrap();
        assert_eq!(
            claim(&file, &ingesting).unwrap(),
            Some(ingesting.join("x.jsonl"))
        );
        assert!(!file.exists());
        // A new file of that name waits while the first is in ingesting/.
        fs::write(&file, "second\n").unwrap();
        assert_eq!(claim(&file, &ingesting).unwrap(), None);
        assert_eq!(fs::read_to_string(&file).unwrap(), "second\n");
        let claimed = ingesting.join("x.jsonl");
        assert_eq!(fs::read_to_string(&claimed).unwrap(), "first\n");
        // Gone meanwhile: nothing to claim.
        assert_eq!(
            claim(&spool.path().join("gone.jsonl"), &ingesting).unwrap(),
            None
        );
    }

    #[test]
    fn sweeping_removes_only_markers_of_files_that_are_gone() {
        let spool = tempfile::tempdir().unwrap();
        let store = SledStore::open(spool.path().join("queues")).unwrap();
        fs::create_dir(spool.path().join(INGESTING_DIR)).unwrap();
        let claimed = spool.path().join(INGESTING_DIR).join("a:b.jsonl");
        let legacy = spool.path().join("c.jsonl");
        fs::write(&claimed, "{}\n").unwrap();
        fs::write(&legacy, "{}\n").unwrap();
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        let keys = [
            format!("spool:a:b.jsonl:{}:3:17", ino(&claimed)),
            format!("spool:c.jsonl:{}:3:17", ino(&legacy)),
            // Gone, and a file of that name with another inode.
            "spool:gone.jsonl:1:3:17".to_string(),
            format!("spool:c.jsonl:{}:3:17", ino(&legacy) + 1),
            // A name that was not UTF-8: cannot be checked, so it stays.
            "spool:caf\u{FFFD}.jsonl:1:3:17".to_string(),
        ];
        let none: Vec<&[u8]> = Vec::new();
        for key in &keys {
            store
                .append_group(&[("q", &none)], Some((key.as_bytes(), b"0,0")))
                .unwrap();
        }
        store
            .append_group(&[("q", &none)], Some((b"dead:1", b"")))
            .unwrap();
        assert_eq!(sweep_markers(&store, spool.path()).unwrap(), 2);
        let mut left: Vec<Vec<u8>> = [&keys[0], &keys[1], &keys[4]]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        left.sort();
        assert_eq!(store.marker_keys(b"spool:").unwrap(), left);
        assert!(
            store.marker(b"dead:1").unwrap().is_some(),
            "other markers stay"
        );
    }

    /// A queue that refuses a file's events (full) ends the round: later files wait, so
    /// their events cannot get ahead of that file's in a queue they share.
    #[test]
    fn a_refused_append_stops_the_round() {
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let opts = raxe_storage::StoreOptions {
            max_queue_bytes: Some(4_000),
            ..Default::default()
        };
        let store = Arc::new(SledStore::open_with(dir.path().join("queues"), opts).unwrap());
        let audit = Arc::new(raxe_engine::AuditLog::in_memory());
        let dispatcher = SiemDispatcher::new(store.clone(), audit).unwrap();
        let spool = Spool::open(dir.path().join("spool")).unwrap();
        let line = |n: usize| {
            format!(
                r#"{{"event_id":"e{n}","timestamp":1769769000123,"threat_detected":true,"severity":"HIGH","customer_id":"c","agent_id":"a"}}"#
            )
        };
        let write = |name: &str, lines: std::ops::Range<usize>| {
            let text: Vec<String> = lines.map(line).collect();
            fs::write(spool.dir().join(name), text.join("\n") + "\n").unwrap();
        };
        write("a.jsonl", 0..100); // more than the queue holds
        std::thread::sleep(Duration::from_millis(20));
        write("b.jsonl", 100..101);
        spool.ingest_pending(&dispatcher, &store);
        assert!(spool.dir().join(INGESTING_DIR).join("a.jsonl").exists());
        assert!(spool.dir().join("b.jsonl").exists(), "b waits for a");
    }
}
