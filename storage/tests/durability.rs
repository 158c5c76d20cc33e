//! Durability: append returns only after our fdatasync of sled's data file, group commit
//! shares syncs, sync failures poison the store, no unsynced blob files, group appends.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use raxe_storage::{Queue, QueueError, QueueStore, SledStore, StoreOptions, Syncer};

#[derive(Default)]
struct Recorder {
    log: Mutex<Vec<String>>,
    fail: AtomicBool,
    delay_ms: AtomicUsize,
    /// While true, syncs of the data file block until it turns false.
    gate: Mutex<bool>,
    gate_cv: Condvar,
}

impl Recorder {
    fn push(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
    fn entries(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    fn db_syncs(&self) -> usize {
        self.entries().iter().filter(|e| *e == "sync db").count()
    }
    fn set_gate(&self, closed: bool) {
        *self.gate.lock().unwrap() = closed;
        self.gate_cv.notify_all();
    }
}

impl Syncer for Recorder {
    fn sync_data(&self, path: &Path, file: &File) -> io::Result<()> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let is_db = name.as_deref() == Some("db");
        if is_db {
            let mut g = self.gate.lock().unwrap();
            while *g {
                g = self.gate_cv.wait(g).unwrap();
            }
        }
        let d = self.delay_ms.load(Ordering::SeqCst);
        if d > 0 {
            std::thread::sleep(Duration::from_millis(d as u64));
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected EIO"));
        }
        file.sync_data()?;
        let kind = if is_db {
            "db".to_string()
        } else if path
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "blobs")
        {
            "blob".to_string()
        } else {
            name.unwrap_or_default()
        };
        self.push(format!("sync {kind}"));
        Ok(())
    }
}

fn open(dir: &Path, rec: &Arc<Recorder>) -> SledStore {
    let opts = StoreOptions {
        syncer: rec.clone(),
        ..StoreOptions::default()
    };
    SledStore::open_with(dir, opts).unwrap()
}

fn rec400(i: usize) -> Vec<u8> {
    let mut v = format!("event-{i}-").into_bytes();
    v.resize(400, b'x');
    v
}

#[test]
fn append_returns_only_after_fdatasync_of_the_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let store = Arc::new(open(dir.path(), &rec));
    let q = store.queue("q").unwrap();
    // Strict ordering: every returned append is preceded by a data-file sync that
    // happened after the previous one returned.
    for i in 0..20 {
        let r = rec400(i);
        q.append(&[&r]).unwrap();
        rec.push("append returned".into());
    }
    let log = rec.entries();
    let mut synced_since_last = false;
    for e in &log {
        match e.as_str() {
            "sync db" => synced_since_last = true,
            "append returned" => {
                assert!(
                    synced_since_last,
                    "append returned before fdatasync: {log:?}"
                );
                synced_since_last = false;
            }
            _ => {}
        }
    }
    // With the sync held back, append does not return.
    rec.set_gate(true);
    let returned = Arc::new(AtomicBool::new(false));
    let t = {
        let (q, returned) = (q.clone(), returned.clone());
        std::thread::spawn(move || {
            let r = rec400(99);
            let res = q.append(&[&r]);
            returned.store(true, Ordering::SeqCst);
            res
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !returned.load(Ordering::SeqCst),
        "append returned while fdatasync was blocked"
    );
    // Not leasable either until durable.
    assert_eq!(q.stats().len, 20);
    rec.set_gate(false);
    assert_eq!(t.join().unwrap().unwrap(), 20..21);
    assert_eq!(q.stats().len, 21);
}

#[test]
fn concurrent_appends_share_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    rec.delay_ms.store(3, Ordering::SeqCst);
    let store = Arc::new(open(dir.path(), &rec));
    let before = rec.db_syncs();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let q = store.queue(&format!("q{}", t % 3)).unwrap();
                for i in 0..25 {
                    let r = rec400(i);
                    q.append(&[&r, &r]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let syncs = rec.db_syncs() - before;
    assert!(
        syncs < 200 / 2,
        "200 appends took {syncs} syncs: no group commit"
    );
    let total: u64 = (0..3)
        .map(|i| store.queue(&format!("q{i}")).unwrap().stats().len)
        .sum();
    assert_eq!(total, 400);
}

#[test]
fn failed_sync_poisons_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let store = open(dir.path(), &rec);
    let q = store.queue("q").unwrap();
    let r = rec400(0);
    q.append(&[&r]).unwrap();
    assert!(store.health().is_ok());
    rec.fail.store(true, Ordering::SeqCst);
    let err = q.append(&[&r]).unwrap_err();
    assert!(
        matches!(store.health(), Err(QueueError::Poisoned { .. })),
        "health must report the failed sync"
    );
    assert!(matches!(err, QueueError::Poisoned { .. }), "{err:?}");
    assert!(err.to_string().contains("fdatasync"), "{err}");
    rec.fail.store(false, Ordering::SeqCst);
    // Poisoned for good: the kernel may have dropped the pages that failed to sync.
    assert!(matches!(q.append(&[&r]), Err(QueueError::Poisoned { .. })));
    // The owner reopens only once every handle is gone (sled and the lock are released).
    let closed = store.closed_signal();
    let tips = std::fs::read(dir.path().join("tips")).unwrap();
    drop(store);
    assert!(
        !closed.is_closed(),
        "a queue handle still holds the store open"
    );
    drop(q);
    assert!(closed.is_closed());
    // A poisoned store's close records nothing: its file is what the next open checks.
    assert!(std::fs::read(dir.path().join("tips")).unwrap() == tips);
    let store = open(dir.path(), &rec);
    assert!(store.health().is_ok());
    let q = store.queue("q").unwrap();
    let n = q.stats().len;
    assert!((1..=2).contains(&n), "{n}");
    q.append(&[&r]).unwrap();
}

fn blob_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("blobs"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn chunks_stay_below_sleds_blob_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let store = open(dir.path(), &rec);
    let q = store.queue("q").unwrap();
    let recs: Vec<Vec<u8>> = (0..1000).map(rec400).collect();
    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    for _ in 0..40 {
        q.append(&refs).unwrap();
        if let Some(l) = q.lease(700, usize::MAX).unwrap() {
            q.ack(l).unwrap();
        }
    }
    assert_eq!(blob_files(dir.path()), Vec::<PathBuf>::new());
    assert!(!rec.entries().iter().any(|e| e == "sync blob"));
}

#[test]
fn oversized_records_in_blob_files_are_synced_too() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let store = open(dir.path(), &rec);
    let q = store.queue("q").unwrap();
    // Incompressible, so the stored value stays 1 MiB (chunks are LZ4-packed).
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let big: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    q.append(&[&big]).unwrap();
    let blobs = blob_files(dir.path());
    assert!(
        !blobs.is_empty(),
        "expected sled to use a blob file for a 1 MiB value"
    );
    let log = rec.entries();
    let blob_at = log
        .iter()
        .position(|e| e == "sync blob")
        .expect("blob synced");
    assert!(log[blob_at..].iter().any(|e| e == "sync db"), "{log:?}");
    let l = q.lease(10, usize::MAX).unwrap().unwrap();
    assert_eq!(l.records[0].data, big);
    q.ack(l).unwrap();
}

#[test]
fn group_append_with_marker_is_atomic_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    {
        let store = open(dir.path(), &rec);
        let before = rec.db_syncs();
        let a: Vec<&[u8]> = vec![b"a1", b"a2"];
        let b: Vec<&[u8]> = vec![b"b1"];
        let ranges = store
            .append_group(
                &[("qa", &a), ("qb", &b), ("qa", &b)],
                Some((b"spool/1", b"ok")),
            )
            .unwrap();
        assert_eq!(ranges, vec![0..2, 0..1, 2..3]);
        assert_eq!(rec.db_syncs() - before, 1, "one group commit");
        assert_eq!(
            store.marker(b"spool/1").unwrap().as_deref(),
            Some(&b"ok"[..])
        );
        // Marker only.
        store.append_group(&[], Some((b"spool/2", b""))).unwrap();
    }
    let store = open(dir.path(), &rec);
    assert_eq!(
        store.marker(b"spool/1").unwrap().as_deref(),
        Some(&b"ok"[..])
    );
    assert_eq!(store.marker(b"spool/2").unwrap().as_deref(), Some(&b""[..]));
    assert!(store.remove_marker(b"spool/1").unwrap());
    assert_eq!(store.marker(b"spool/1").unwrap(), None);
    let qa = store.queue("qa").unwrap();
    let l = qa.lease(10, usize::MAX).unwrap().unwrap();
    let data: Vec<&[u8]> = l.records.iter().map(|r| &r.data[..]).collect();
    assert_eq!(data, vec![&b"a1"[..], b"a2", b"b1"]);
    qa.release(l);
    assert_eq!(
        store.list_queues().unwrap(),
        vec!["qa".to_string(), "qb".to_string()]
    );
}

#[test]
fn seqs_keep_increasing_after_everything_is_acked_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    for round in 0..3u64 {
        let store = open(dir.path(), &rec);
        let q = store.queue("q").unwrap();
        let r = q.append(&[b"x", b"y", b"z"]).unwrap();
        assert_eq!(r, round * 3..round * 3 + 3);
        let l = q.lease(10, usize::MAX).unwrap().unwrap();
        assert_eq!(l.len(), 3);
        q.ack(l).unwrap();
        assert_eq!(q.stats().len, 0);
    }
    let store = open(dir.path(), &rec);
    store.drop_queue("q").unwrap();
    assert!(store.list_queues().unwrap().is_empty());
    assert!(store.disk_bytes().unwrap() > 0);
}

/// A blob file seen while sled was still writing it (another append's group commit can
/// list it half written) is synced again once it has grown.
#[test]
fn a_blob_file_that_grew_since_its_sync_is_synced_again() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let store = open(dir.path(), &rec);
    let q = store.queue("q").unwrap();
    q.append(&[b"first".as_slice()]).unwrap();
    // Stand-in for a blob sled is in the middle of writing.
    let blobs = dir.path().join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let blob = blobs.join("17");
    std::fs::write(&blob, vec![1u8; 1000]).unwrap();
    q.append(&[b"second".as_slice()]).unwrap();
    let synced = |rec: &Recorder| rec.entries().iter().filter(|e| *e == "sync blob").count();
    assert_eq!(synced(&rec), 1);
    // Unchanged: not again.
    q.append(&[b"third".as_slice()]).unwrap();
    assert_eq!(synced(&rec), 1);
    // The rest of it written: synced again before the next append returns.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&blob)
        .unwrap();
    std::io::Write::write_all(&mut f, &[2u8; 1000]).unwrap();
    drop(f);
    q.append(&[b"fourth".as_slice()]).unwrap();
    assert_eq!(synced(&rec), 2);
    std::fs::remove_file(&blob).unwrap();
}
