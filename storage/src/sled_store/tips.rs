//! The durable tip of every queue, kept outside sled, to catch records sled loses quietly.
//!
//! sled 0.34 treats the first bad entry of its log as the end of the log and opens without
//! a word: a truncated or damaged data file comes back as an older, smaller store. So after
//! every append is synced, the queue's next seq is written to `tips` (a pwrite, no fsync:
//! the page cache survives `kill -9`). At open, a queue that sled recovers with a lower
//! next seq has lost records that were promised durable, and the store refuses to open,
//! naming the data file. A stale `tips` (power lost before the page cache reached the disk)
//! only lowers the bar: it can miss a loss, never invent one. A torn or foreign file fails
//! its CRC and is ignored the same way.
//!
//! The data file's length as the store last saw it is kept too: a file found shorter at
//! open may have been cut, and sled is about to rewrite it, so the store copies it aside
//! first (see `SledStore::open_with`). sled also shortens its file itself (free segments at
//! the tail, freed as acks supersede them), so the length is recorded at each synced
//! append, after each flush that rotates the ack journal, and at a clean close once sled
//! has let go of the file. After a clean stop the next start then finds the file as
//! recorded; after a crash a shrink since the last record is possible, and a shorter file
//! is a reason for that copy, never an error on its own.
//!
//! Layout: `RXT2` | count u32 | data file length u64 | (queue nonce u64, next seq u64)* |
//! crc32 of all before, all little-endian.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::crc::crc32;
use crate::queue::Seq;

const MAGIC: &[u8; 4] = b"RXT2";
pub(crate) const TIPS_FILE: &str = "tips";

pub(crate) struct Tips {
    path: PathBuf,
    /// What the file said when the store was opened.
    at_open: BTreeMap<u64, Seq>,
    db_len_at_open: u64,
    live: Mutex<Live>,
}

struct Live {
    file: Option<File>,
    /// The file's length, so it is truncated only when a queue comes or goes.
    file_len: Option<u64>,
    tips: BTreeMap<u64, Seq>,
    db_len: u64,
    /// Queues dropped in this run. An append that was waiting for its sync when its queue
    /// was dropped must not put the tip back: a tip of a queue that is gone would make a
    /// missing data file look like lost records forever after.
    forgotten: HashSet<u64>,
}

impl Tips {
    /// Reads `dir/tips` (an unreadable one counts as empty) and keeps it open for writing.
    pub(crate) fn open(dir: &Path) -> Tips {
        let path = dir.join(TIPS_FILE);
        let (db_len_at_open, at_open) = std::fs::read(&path)
            .ok()
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .ok();
        Tips {
            path,
            live: Mutex::new(Live {
                file_len: None,
                file,
                tips: at_open.clone(),
                db_len: db_len_at_open,
                forgotten: HashSet::new(),
            }),
            at_open,
            db_len_at_open,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next seq a queue had durably reached when the store was last used.
    pub(crate) fn expected(&self, nonce: u64) -> Option<Seq> {
        self.at_open.get(&nonce).copied()
    }

    /// The data file's length as the previous run last recorded it.
    pub(crate) fn db_len_at_open(&self) -> u64 {
        self.db_len_at_open
    }

    /// Whether any queue had records (a missing data file then means they are gone).
    pub(crate) fn any_records(&self) -> bool {
        self.at_open.values().any(|&next| next > 0)
    }

    /// Records that each queue's appends are durable up to its `next` (call after the
    /// sync), with the data file's length then: one write for the whole group. The length
    /// is read under the lock, so records of it land in the order they were read.
    pub(crate) fn advance(&self, tips: &[(u64, Seq)], db_len: impl FnOnce() -> Option<u64>) {
        let mut live = self.lock();
        let db_len = db_len().unwrap_or(live.db_len);
        let mut changed = live.db_len != db_len;
        for &(nonce, next) in tips {
            if live.forgotten.contains(&nonce) {
                continue;
            }
            let tip = live.tips.entry(nonce).or_insert(0);
            if *tip < next {
                *tip = next;
                changed = true;
            }
        }
        if changed {
            live.db_len = db_len;
            write(&mut live, &self.path);
        }
    }

    /// Records the data file's length as `db_len` reads it now, under the lock (sled
    /// shortened it, or it grew by a flush); writes only if it changed, nothing if the
    /// length cannot be read.
    pub(crate) fn note_db_len(&self, db_len: impl FnOnce() -> Option<u64>) {
        self.advance(&[], db_len);
    }

    /// A dropped queue: its nonce never comes back, and a later `advance` for it (an append
    /// that raced the drop) is ignored.
    pub(crate) fn forget(&self, nonce: u64) {
        let mut live = self.lock();
        live.forgotten.insert(nonce);
        if live.tips.remove(&nonce).is_some() {
            write(&mut live, &self.path);
        }
    }
}

/// Best effort: a failed write leaves an older tip, which can only miss a loss.
fn write(live: &mut Live, path: &Path) {
    let bytes = encode(live.db_len, &live.tips);
    let Some(file) = live.file.as_ref() else {
        return;
    };
    let len = bytes.len() as u64;
    let ok = file.write_all_at(&bytes, 0).is_ok()
        && (live.file_len == Some(len) || file.set_len(len).is_ok());
    live.file_len = ok.then_some(len);
    if !ok {
        tracing::warn!(path = %path.display(), "cannot update the queue tips file");
    }
}

fn encode(db_len: u64, tips: &BTreeMap<u64, Seq>) -> Vec<u8> {
    let mut v = Vec::with_capacity(20 + tips.len() * 16);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&(tips.len() as u32).to_le_bytes());
    v.extend_from_slice(&db_len.to_le_bytes());
    for (nonce, next) in tips {
        v.extend_from_slice(&nonce.to_le_bytes());
        v.extend_from_slice(&next.to_le_bytes());
    }
    let crc = crc32(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

fn decode(bytes: &[u8]) -> Option<(u64, BTreeMap<u64, Seq>)> {
    let body = bytes.get(..bytes.len().checked_sub(4)?)?;
    let stored = u32::from_le_bytes(bytes[body.len()..].try_into().ok()?);
    if crc32(body) != stored || body.get(..4)? != MAGIC {
        return None;
    }
    let count = u32::from_le_bytes(body.get(4..8)?.try_into().ok()?) as usize;
    let db_len = u64::from_le_bytes(body.get(8..16)?.try_into().ok()?);
    let entries = body.get(16..)?;
    if entries.len() != count.checked_mul(16)? {
        return None;
    }
    let tips = entries
        .chunks_exact(16)
        .map(|e| {
            let nonce = u64::from_le_bytes(e[..8].try_into().unwrap_or_default());
            let next = u64::from_le_bytes(e[8..].try_into().unwrap_or_default());
            (nonce, next)
        })
        .collect();
    Some((db_len, tips))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_ignored() {
        let tips: BTreeMap<u64, Seq> = [(7, 100), (9, 3)].into_iter().collect();
        let bytes = encode(4096, &tips);
        assert_eq!(decode(&bytes), Some((4096, tips)));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert_eq!(decode(&bad), None, "flip at {i}");
        }
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode(b""), None);
    }

    #[test]
    fn advance_persists_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let tips = Tips::open(dir.path());
        tips.advance(&[(1, 10)], || Some(100));
        tips.advance(&[(1, 5)], || Some(200));
        tips.advance(&[(2, 3)], || Some(200));
        tips.forget(2);
        let again = Tips::open(dir.path());
        assert_eq!(again.expected(1), Some(10));
        assert_eq!(again.expected(2), None);
        assert!(again.any_records());
        assert_eq!(again.db_len_at_open(), 200);
    }

    /// An append whose sync finished after its queue was dropped does not bring the
    /// dropped queue's tip back.
    #[test]
    fn a_tip_advanced_after_its_queue_was_dropped_stays_gone() {
        let dir = tempfile::tempdir().unwrap();
        let tips = Tips::open(dir.path());
        tips.advance(&[(3, 10)], || Some(100));
        tips.forget(3);
        tips.advance(&[(3, 15), (4, 2)], || Some(150));
        let again = Tips::open(dir.path());
        assert_eq!(again.expected(3), None);
        assert_eq!(again.expected(4), Some(2));
        tips.forget(4);
        assert!(!Tips::open(dir.path()).any_records());
    }

    /// sled shortens its file after the last append recorded a length: while it starts
    /// (segments at the tail that the last run's acks freed) and while it runs. The store
    /// records the length again once a start has finished and at a clean close, so the
    /// next start does not take a file sled shortened for a cut one (and copy it aside and
    /// read every chunk back).
    #[test]
    fn the_recorded_length_follows_what_sled_leaves() {
        use crate::queue::Queue;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        let len = || std::fs::metadata(&db).unwrap().len();
        let recorded = || Tips::open(dir.path()).db_len_at_open();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let (mut shrank_at_start, mut closed_at) = (false, 0);
        // Until a start has shortened the file. Whether one does depends on where sled's IO
        // threads left its pages (a start shortens the file when the tail segment holds no
        // live page), so it is a search: in 11 trials here (run on past the first) the first
        // came at run 3 to 25, then one every 3 to 16 runs, and one trial under load found
        // none in 30 (the bound then). The assertions on each run are the test; this makes
        // sure the case came up.
        for run in 0..80 {
            if shrank_at_start {
                break;
            }
            let store = super::super::SledStore::open(dir.path()).unwrap();
            shrank_at_start = len() < closed_at;
            assert_eq!(recorded(), len(), "run {run}, once open");
            let q = store.queue("q").unwrap();
            // Scan-event-like records (they pack ~3x); all but the first 5,000 acked.
            for round in 0..300 {
                let recs: Vec<Vec<u8>> = (0..100)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        format!(r#"{{"event_id":"{x:016x}","pad":"{}"}}"#, "y".repeat(300))
                            .into_bytes()
                    })
                    .collect();
                let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
                q.append(&refs).unwrap();
                if round >= 50 {
                    q.ack(q.lease(100, usize::MAX).unwrap().unwrap()).unwrap();
                }
            }
            // Every other run ends drained.
            if run % 2 == 1 {
                while let Some(lease) = q.lease(1_000, usize::MAX).unwrap() {
                    q.ack(lease).unwrap();
                }
            }
            drop(q);
            drop(store);
            closed_at = len();
            assert_eq!(recorded(), closed_at, "run {run}, closed");
        }
        assert!(
            shrank_at_start,
            "sled never shortened its file while starting"
        );
    }

    /// A queue dropped in a run that never opened it takes its tip with it too.
    #[test]
    fn dropping_a_queue_not_opened_in_this_run_forgets_its_tip() {
        use crate::queue::{Queue, QueueStore};
        let dir = tempfile::tempdir().unwrap();
        {
            let store = super::super::SledStore::open(dir.path()).unwrap();
            store.queue("q").unwrap().append(&[b"x"]).unwrap();
        }
        assert!(Tips::open(dir.path()).any_records());
        {
            let store = super::super::SledStore::open(dir.path()).unwrap();
            store.drop_queue("q").unwrap();
        }
        assert!(!Tips::open(dir.path()).any_records());
    }
}
