//! Opening a store: the directory lock, checks of the data file before sled reads it
//! (see `log_scan.rs`), sled itself, the format marker, replaying the ack journal, and
//! the copy kept while a damaged or cut file is checked.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fs2::FileExt;

use super::commit::{Committer, Level};
use super::journal::{self, Journal};
use super::{
    codec, log_scan, sled_err, sled_let_go, sled_queue, sync_path, tips, Shared, SledHandles,
    SledStore, StoreOptions, LOCK_FILE, QUEUE_TREE_PREFIX,
};
use crate::error::QueueError;
use crate::queue::Seq;

/// Key in sled's default tree that marks a database as ours, with its layout version.
const FORMAT_KEY: &[u8] = b"raxe-storage/format";
/// Plain chunks only. Still read; a store opened with packing on is marked v2.
const FORMAT_V1: &[u8] = b"raxe-storage chunked queues v1";
/// Adds LZ4-packed chunks (`chunk.rs`). The bump makes an older binary refuse the store
/// as "unsupported format" instead of reporting every packed chunk as damaged.
const FORMAT_V2: &[u8] = b"raxe-storage chunked queues v2 (lz4 chunks)";
const MARKERS_TREE: &[u8] = b"raxe/markers";

impl SledStore {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<SledStore, QueueError> {
        Self::open_with(dir, StoreOptions::default())
    }

    pub fn open_with(dir: impl AsRef<Path>, opts: StoreOptions) -> Result<SledStore, QueueError> {
        let dir = dir.as_ref().to_path_buf();
        let dir_err = |source| QueueError::Directory {
            dir: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(dir_err)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(dir_err)?;
        if let Err(e) = lock.try_lock_exclusive() {
            let contended = fs2::lock_contended_error().raw_os_error();
            if e.raw_os_error() == contended || e.kind() == io::ErrorKind::WouldBlock {
                return Err(QueueError::InUse {
                    dir,
                    lock: lock_path,
                });
            }
            return Err(dir_err(e));
        }
        let db_path = dir.join("db");
        // sled silently treats an unreadable data file as empty; remember it was not.
        let preexisting = fs::metadata(&db_path).map(|m| m.len()).unwrap_or(0);
        // sled rewrites a file whose segment headers it cannot read (as empty, or cut at
        // the damage): check them first, so a damaged file is refused untouched and
        // `raxe repair` can still read every record out of it.
        if preexisting > 0 {
            log_scan::check_segment_headers(&db_path, opts.segment_size)?;
        }
        let tips = tips::Tips::open(&dir);
        // Before sled creates anything: a refused open must leave the directory as it was,
        // or the next attempt would find a fresh (empty, marked) data file and accept it.
        if preexisting == 0 && tips.any_records() {
            return Err(QueueError::Corrupt {
                path: db_path,
                detail: "the data file is missing or empty, but queues held records in it; \
                         restore it, or move the directory away to start an empty store"
                    .into(),
            });
        }
        // A message inside sled's log that fails its checksum with intact ones after it:
        // sled would take it for the end of its log and overwrite the rest (see
        // `log_scan.rs`). Reads the part of the log sled is about to replay.
        let damage = if preexisting > 0 {
            log_scan::find_log_damage(&dir, opts.segment_size).map_err(|source| QueueError::Io {
                path: db_path.clone(),
                source,
            })?
        } else {
            None
        };
        // Shorter than the store last recorded it (perhaps cut), or damaged inside: sled
        // rewrites such a file while opening it. Keep a copy until every queue has loaded
        // and checked out.
        let short = preexisting > 0 && preexisting < tips.db_len_at_open();
        let pre_open_copy = if short || damage.is_some() {
            let copy = dir.join(format!("db.pre-open-{}", now_secs()));
            fs::copy(&db_path, &copy).map_err(|source| QueueError::Io {
                path: copy.clone(),
                source,
            })?;
            match &damage {
                Some(d) => tracing::warn!(
                    file = %db_path.display(),
                    copy = %copy.display(),
                    "the data file is damaged inside ({d}); checking it, with a copy kept"
                ),
                None => tracing::warn!(
                    file = %db_path.display(),
                    bytes = preexisting,
                    was = tips.db_len_at_open(),
                    copy = %copy.display(),
                    "the data file is shorter than the store last recorded it; checking it, with a copy kept"
                ),
            }
            Some(copy)
        } else {
            None
        };
        // Names the copy in an error that refuses the open.
        let kept = |e: QueueError| match (e, &pre_open_copy) {
            (QueueError::Corrupt { path, detail }, Some(copy)) => QueueError::Corrupt {
                path,
                detail: format!(
                    "{detail} (the file as it was before this open is kept as {}{})",
                    copy.display(),
                    damage
                        .as_ref()
                        .map(|d| format!("; in it, {d}"))
                        .unwrap_or_default()
                ),
            },
            (e, _) => e,
        };
        let config = sled::Config::new()
            .path(&dir)
            .cache_capacity(opts.cache_capacity)
            .segment_size(opts.segment_size)
            .flush_every_ms(opts.flush_every_ms);
        // sled may panic on some kinds of garbage; report it as a damaged file instead.
        let db = match open_sled(&db_path, &config) {
            Ok(Ok(db)) => db,
            // Bad options, or options that differ from the ones in `conf`.
            Ok(Err(sled::Error::Unsupported(detail))) => {
                return Err(QueueError::Db {
                    path: dir.join("conf"),
                    detail,
                })
            }
            // At open, sled reports a bad `conf` (its only checksummed file without a
            // log position) as corruption at no position.
            Ok(Err(sled::Error::Corruption { at: None, .. })) => {
                return Err(QueueError::Corrupt {
                    path: dir.join("conf"),
                    detail: "sled's configuration file fails its checksum".into(),
                })
            }
            Ok(Err(e)) => return Err(kept(sled_err(&dir, &db_path, e))),
            Err(_) => {
                return Err(kept(QueueError::Corrupt {
                    path: db_path,
                    detail: "the storage engine could not read it (it panicked)".into(),
                }))
            }
        };
        let err = |e| sled_err(&dir, &db_path, e);
        match db.get(FORMAT_KEY).map_err(err)? {
            Some(v) if v == FORMAT_V2 => {}
            Some(v) if v == FORMAT_V1 => {
                // Made durable by the sync below, before any packed chunk can be written.
                // Without packing the store stays v1, so an older build can still open it.
                if opts.pack_chunks {
                    db.insert(FORMAT_KEY, FORMAT_V2).map_err(err)?;
                }
            }
            Some(v) => {
                return Err(QueueError::Corrupt {
                    path: db_path,
                    detail: format!(
                        "unsupported raxe-storage format {:?}",
                        String::from_utf8_lossy(&v)
                    ),
                })
            }
            None => {
                if db.tree_names().len() > 1 || !db.is_empty() {
                    return Err(QueueError::Corrupt {
                        path: db_path,
                        detail: "a sled database without the raxe-storage format marker \
                                 (not written by raxe)"
                            .into(),
                    });
                }
                if preexisting > 0 {
                    return Err(QueueError::Corrupt {
                        path: db_path,
                        detail: format!(
                            "the file has {preexisting} bytes but no readable raxe-storage \
                             data (damaged, or not written by raxe); move it away to start \
                             an empty store"
                        ),
                    });
                }
                let format = if opts.pack_chunks {
                    FORMAT_V2
                } else {
                    FORMAT_V1
                };
                db.insert(FORMAT_KEY, format).map_err(err)?;
            }
        }
        let markers = db.open_tree(MARKERS_TREE).map_err(err)?;
        // Acks journaled but perhaps not in sled yet (kill -9): fold them into the queues'
        // ack state before any queue is loaded.
        let recovered = journal::recover(&dir)?;
        if recovered.torn_bytes > 0 {
            tracing::warn!(
                dir = %dir.display(),
                bytes = recovered.torn_bytes,
                "ignored a torn ack journal tail (an ack cut by a crash)"
            );
        }
        let replayed_all = replay_acks(&db, &recovered.acks).map_err(err)?;
        let journal = Journal::create(&dir, recovered.next_gen, opts.ack_journal_bytes)?;
        let db_file = File::open(&db_path).map_err(|source| QueueError::Io {
            path: db_path.clone(),
            source,
        })?;
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            db_path,
            sled: Some(SledHandles { db, markers }),
            db_file,
            blobs_dir: dir.join("blobs"),
            synced_blobs: Mutex::new(HashMap::new()),
            syncer: opts.syncer.clone(),
            committer: Committer::default(),
            journal,
            tips,
            // A leaf holds up to ~20 values before sled splits it (more while merging);
            // the whole leaf must stay under the blob threshold (segment_size / 4).
            chunk_bytes: opts.chunk_bytes.clamp(64, (opts.segment_size / 96).max(64)),
            pack_chunks: opts.pack_chunks,
            opened: AtomicBool::new(false),
            _lock: lock,
            alive: Arc::new(()),
        });
        // Make the files sled just created (and the format marker, and the replayed acks)
        // durable once; then the journal files just replayed are redundant.
        let t = shared.committer.ticket();
        shared.commit(t, Level::Sync)?;
        sync_path(&*opts.syncer, &dir.join("conf"))?;
        // Kept while a queue's nonce or ack state is unreadable (its load fails and names
        // it): its acks may be in these files. Replaying them again later is harmless.
        let replayed = if replayed_all {
            &recovered.files[..]
        } else {
            &[]
        };
        for path in replayed {
            fs::remove_file(path).map_err(|source| QueueError::Io {
                path: path.clone(),
                source,
            })?;
        }
        sync_path(&*opts.syncer, &dir)?;
        let store = SledStore {
            shared,
            queues: Mutex::new(HashMap::new()),
            default_cap: opts.max_queue_bytes,
        };
        if let Some(copy) = &pre_open_copy {
            // Their checks tell whether sled kept everything; a failure refuses the open
            // with the copy kept, the file salvage can read everything from.
            if let Err(e) = store.read_back_every_chunk() {
                return Err(kept(e));
            }
            match &damage {
                // sled replayed a log with a damaged message in it: every chunk reads back
                // now, yet sled was seen to lose one later (a leaf rebuilt from that log),
                // so the file as it was stays for `raxe repair` until someone deletes it.
                Some(d) => tracing::warn!(
                    file = %store.shared.db_path.display(),
                    copy = %copy.display(),
                    "sled's log looked damaged ({d}); every queue loaded and every record \
                     read back, but the copy taken before the open is kept: should a queue \
                     later report damaged records, `raxe repair` reads it too. Delete it \
                     once the queues have drained"
                ),
                // Only shorter than last recorded, and nothing missing: sled
                // cut a torn tail, and the copy holds nothing more.
                None => {
                    let _ = fs::remove_file(copy);
                }
            }
        }
        // sled may have shortened the file while it started (tail segments the last run's
        // acks freed): a crash before the next append must not find it "shorter" then.
        // Only now, past every check, and so too the close (see `Shared::drop`).
        store.shared.tips.note_db_len(|| store.shared.db_len());
        store.shared.opened.store(true, Ordering::Release);
        Ok(store)
    }
}

/// Opens sled, waiting out its own lock on `db` first: we hold the directory lock, so
/// whoever still holds sled's is a closing handle of this process.
fn open_sled(db_path: &Path, config: &sled::Config) -> std::thread::Result<sled::Result<sled::Db>> {
    sled_let_go(db_path, Duration::from_secs(5));
    catch_unwind(AssertUnwindSafe(|| config.open()))
}

/// Merges journaled acks into the persisted ack state of the queues they name (by nonce;
/// records of dropped queues match nothing). Idempotent. Returns false if some queue's
/// nonce or ack state could not be read (its acks may be in the journal).
fn replay_acks(db: &sled::Db, acks: &HashMap<u64, Vec<Range<Seq>>>) -> sled::Result<bool> {
    if acks.is_empty() {
        return Ok(true);
    }
    let mut all = true;
    for name in db.tree_names() {
        if !name.starts_with(QUEUE_TREE_PREFIX.as_bytes()) {
            continue;
        }
        let tree = db.open_tree(&name)?;
        // A damaged nonce or ack state fails that queue's load later, with its name.
        let nonce = match tree.get(codec::NONCE_KEY)? {
            Some(v) => match codec::decode_nonce(&v) {
                Ok(n) => n,
                Err(_) => {
                    all = false;
                    continue;
                }
            },
            // From before the journal: no record can name it.
            None => continue,
        };
        let Some(ranges) = acks.get(&nonce) else {
            continue;
        };
        let mut state = match tree.get(codec::ACK_KEY)? {
            Some(v) => match codec::decode_ack(&v) {
                Ok(s) => s,
                Err(_) => {
                    all = false;
                    continue;
                }
            },
            None => codec::AckState::default(),
        };
        if codec::merge_acks(&mut state, ranges) {
            tree.insert(codec::ACK_KEY, codec::encode_ack(&state))?;
        }
    }
    Ok(all)
}

fn now_secs() -> u64 {
    sled_queue::now_ms() / 1000
}
