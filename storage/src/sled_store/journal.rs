//! The ack journal: what makes an `ack` survive kill -9 without waiting for sled's flush.
//!
//! `ack` appends one small record (queue nonce, acked seq ranges, crc) to `acks-<gen>.log`
//! with a single `write()` (no fsync: the page cache survives a process crash), then
//! applies the ack to sled in memory; sled writes it out with its next flush (group
//! commits, the background flusher, or a rotation). Reopen replays every journal file into
//! the queues' persisted ack state before anything else reads it; acking is idempotent, so
//! replaying acks that sled did persist changes nothing.
//!
//! Rotation bounds the journal: once a file passes its size limit, the next ack switches
//! to a new generation file, waits for a sled flush that started after the switch, and
//! deletes the old file. The switch and every ack's (journal write + sled apply) happen
//! under the same lock, so when the switch happens every record in the old file already
//! has its effect in sled's memory, and that flush makes all of it redundant.
//!
//! A record names its queue by the nonce stored in the queue's tree (key `i`), not by
//! name: a dropped queue and a new queue of the same name (whose seqs start at 0 again)
//! have different nonces, so a stale record can never ack the new queue's records.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::codec;
use crate::error::QueueError;
use crate::queue::Seq;

const PREFIX: &str = "acks-";
const SUFFIX: &str = ".log";

pub(crate) fn journal_path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{gen:016x}{SUFFIX}"))
}

fn parse_gen(name: &str) -> Option<u64> {
    let hex = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if hex.len() != 16 {
        return None;
    }
    // Generations count up from 0 by one per rotation: one near the top of the range is
    // not ours (and counting on from it would wrap).
    u64::from_str_radix(hex, 16)
        .ok()
        .filter(|gen| *gen < u64::MAX / 2)
}

/// What reopen found in the journal files of a data directory.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// Acked ranges by queue nonce, in journal order.
    pub(crate) acks: HashMap<u64, Vec<Range<Seq>>>,
    /// The files read (delete them once their acks are flushed into sled).
    pub(crate) files: Vec<PathBuf>,
    /// Generation for the next journal file (above every existing one).
    pub(crate) next_gen: u64,
    /// Bytes at file ends that were not whole valid records (torn by a crash).
    pub(crate) torn_bytes: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads every journal file in `dir`.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, QueueError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(gen) = entry.file_name().to_str().and_then(parse_gen) {
            found.push((gen, entry.path()));
        }
    }
    found.sort();
    let mut rec = Recovered::default();
    for (gen, path) in found {
        let data = fs::read(&path).map_err(io_err(&path))?;
        let (acks, used) = codec::decode_journal(&data, gen);
        for a in acks {
            rec.acks.entry(a.nonce).or_default().extend(a.ranges);
        }
        rec.torn_bytes += (data.len() - used) as u64;
        rec.next_gen = rec.next_gen.max(gen + 1);
        rec.files.push(path);
    }
    Ok(rec)
}

struct Inner {
    /// `None` after a failed write: the file may end in a torn record, after which
    /// nothing would be replayed, so acks fall back to waiting for sled's flush.
    file: Option<File>,
    gen: u64,
    len: u64,
    /// Rotate once `len` reaches this.
    rotate_at: u64,
    /// A rotation is in progress (its new file's creation and its flush run outside the
    /// lock).
    rotating: bool,
    /// Old generations to delete after the next completed flush.
    retired: Vec<PathBuf>,
    buf: Vec<u8>,
}

/// The open journal of a store.
pub(crate) struct Journal {
    dir: PathBuf,
    limit: u64,
    inner: Mutex<Inner>,
}

/// How an ack was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// In the journal; `rotate`: the caller should call [`Journal::begin_rotation`].
    Journaled { rotate: bool },
    /// Not journaled (the journal is broken): the caller must wait for sled's flush.
    NotJournaled,
}

fn create(dir: &Path, gen: u64) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(journal_path(dir, gen))
}

impl Journal {
    /// Starts a new, empty journal file of generation `gen`.
    pub(crate) fn create(dir: &Path, gen: u64, limit: u64) -> Result<Journal, QueueError> {
        let file = create(dir, gen).map_err(io_err(&journal_path(dir, gen)))?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            limit: limit.max(1),
            inner: Mutex::new(Inner {
                file: Some(file),
                gen,
                len: 0,
                rotate_at: limit.max(1),
                rotating: false,
                retired: Vec::new(),
                buf: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns once no `record` call is in progress.
    pub(crate) fn barrier(&self) {
        drop(self.lock());
    }

    /// Journals an ack of `ranges` in the queue with `nonce`, calls `journaled` once the
    /// record is written, then runs `apply` (the ack's sled write) under the same lock, so
    /// a rotation never separates the two.
    pub(crate) fn record<T>(
        &self,
        nonce: u64,
        ranges: &[Range<Seq>],
        journaled: &mut dyn FnMut(),
        apply: impl FnOnce() -> T,
    ) -> (Recorded, T) {
        let mut g = self.lock();
        let inner = &mut *g;
        let mut recorded = Recorded::NotJournaled;
        if let Some(file) = &inner.file {
            inner.buf.clear();
            codec::encode_journal_ack(&mut inner.buf, inner.gen, nonce, ranges);
            match (&*file).write_all(&inner.buf) {
                Ok(()) => {
                    inner.len += inner.buf.len() as u64;
                    let rotate = !inner.rotating && inner.len >= inner.rotate_at;
                    recorded = Recorded::Journaled { rotate };
                    journaled();
                }
                Err(e) => {
                    tracing::warn!(
                        path = %journal_path(&self.dir, inner.gen).display(),
                        error = %e,
                        "ack journal write failed; acks now wait for the storage \
                         engine's flush until the store is reopened"
                    );
                    inner.file = None;
                }
            }
        }
        let out = apply();
        (recorded, out)
    }

    /// Switches to a new generation file. Returns false if no rotation is to be done
    /// (one is running, or the new file could not be created: the old one then keeps
    /// growing and the next attempt is one `limit` later).
    pub(crate) fn begin_rotation(&self) -> bool {
        let gen = {
            let mut g = self.lock();
            if g.rotating || g.file.is_none() || g.len < g.rotate_at {
                return false;
            }
            // Claimed: no other rotation starts. Records keep going to the current file
            // while the new one is created outside the lock (acks wait on this lock, some
            // on async threads); the flush after the switch covers them all.
            g.rotating = true;
            g.gen + 1
        };
        let created = create(&self.dir, gen);
        let mut g = self.lock();
        match created {
            Ok(f) if g.file.is_some() => {
                let old = journal_path(&self.dir, g.gen);
                g.retired.push(old);
                g.file = Some(f);
                g.gen = gen;
                g.len = 0;
                g.rotate_at = self.limit;
                true
            }
            // The journal broke meanwhile: acks wait for sled's flush now, and the new
            // file, empty, is not used.
            Ok(_) => {
                g.rotating = false;
                drop(g);
                let _ = fs::remove_file(journal_path(&self.dir, gen));
                false
            }
            Err(e) => {
                tracing::warn!(
                    path = %journal_path(&self.dir, gen).display(),
                    error = %e,
                    "could not start a new ack journal file; the current one keeps growing"
                );
                g.rotating = false;
                g.rotate_at = g.len + self.limit;
                false
            }
        }
    }

    /// Ends a rotation. `flushed`: a sled flush that started after `begin_rotation`
    /// completed, so the retired files are redundant and are deleted.
    pub(crate) fn end_rotation(&self, flushed: bool) {
        let retired = {
            let mut g = self.lock();
            g.rotating = false;
            if flushed {
                std::mem::take(&mut g.retired)
            } else {
                Vec::new()
            }
        };
        for path in retired {
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e,
                        "could not delete a retired ack journal file (it is replayed, \
                         harmlessly, at the next open)");
                }
            }
        }
    }

    /// Current generation and length.
    #[cfg(test)]
    pub(crate) fn position(&self) -> (u64, u64) {
        let g = self.lock();
        (g.gen, g.len)
    }

    /// Makes every later write fail, as a full or failing disk would.
    #[cfg(test)]
    pub(crate) fn fail_writes(&self) {
        let mut g = self.lock();
        let path = journal_path(&self.dir, g.gen);
        g.file = Some(File::open(path).expect("the journal file exists"));
    }
}

#[cfg(test)]
// Lists of one seq range are what these tests mean.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    #[test]
    fn generations_near_the_top_are_not_ours() {
        let name = |gen: u64| format!("{PREFIX}{gen:016x}{SUFFIX}");
        assert_eq!(parse_gen(&name(7)), Some(7));
        assert_eq!(parse_gen(&name(u64::MAX)), None);
        assert_eq!(parse_gen(&name(u64::MAX - 1)), None);
    }

    #[test]
    fn records_rotate_and_recover() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path(), 5, 100).unwrap();
        let mut rotations = 0;
        for i in 0..20u64 {
            let (r, applied) = j.record(9, &[i * 10..i * 10 + 5], &mut || {}, || i);
            assert_eq!(applied, i);
            match r {
                Recorded::Journaled { rotate: true } => {
                    assert!(j.begin_rotation());
                    // A second rotation waits for the first.
                    assert!(!j.begin_rotation());
                    // The first rotation's flush "fails": its file is kept until a later
                    // rotation's flush (which covers it too) completes.
                    j.end_rotation(rotations > 0);
                    if rotations == 0 {
                        assert_eq!(recover(dir.path()).unwrap().files.len(), 2);
                    }
                    rotations += 1;
                }
                Recorded::Journaled { rotate: false } => {}
                Recorded::NotJournaled => panic!("journal broken"),
            }
        }
        assert!(rotations >= 2);
        let rec = recover(dir.path()).unwrap();
        let (gen, _) = j.position();
        assert_eq!(rec.next_gen, gen + 1);
        assert_eq!(rec.torn_bytes, 0);
        // Only the current file is left, holding the acks since the last rotation.
        assert_eq!(rec.files, vec![journal_path(dir.path(), gen)]);
        assert_eq!(rec.acks[&9].last(), Some(&(190..195)));
    }

    #[test]
    fn torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path(), 0, 1 << 20).unwrap();
        let _ = j.record(1, &[0..3], &mut || {}, || ());
        let _ = j.record(1, &[3..7], &mut || {}, || ());
        drop(j);
        let path = journal_path(dir.path(), 0);
        let mut data = fs::read(&path).unwrap();
        data.truncate(data.len() - 5);
        fs::write(&path, &data).unwrap();
        let rec = recover(dir.path()).unwrap();
        assert_eq!(rec.acks[&1], vec![0..3]);
        assert!(rec.torn_bytes > 0);
        assert_eq!(rec.next_gen, 1);
    }
}
