//! Error paths: full queue, damaged or foreign files, directory in use, unwritable
//! directory. None may panic; each message must say what and where.

mod common;

use std::fs;

use raxe_storage::{Queue, QueueError, QueueStore, SledStore, StoreOptions};

fn recs(n: usize, len: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![b'a' + (i % 26) as u8; len]).collect()
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(|r| r.as_slice()).collect()
}

fn sled_with_our_segment_size(dir: &std::path::Path) -> sled::Db {
    common::raw_sled(dir)
}

#[test]
fn queue_full_names_queue_and_cap_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue_with_cap("splunk-prod", Some(1000)).unwrap();
    let r = q.append(&refs(&recs(9, 100))).unwrap();
    assert_eq!(r, 0..9);
    let err = q.append(&refs(&recs(2, 100))).unwrap_err();
    match &err {
        QueueError::Full { queue, cap, .. } => {
            assert_eq!(queue, "splunk-prod");
            assert_eq!(*cap, 1000);
        }
        other => panic!("expected Full, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("splunk-prod") && msg.contains("1000"), "{msg}");
    assert_eq!(q.stats().len, 9);
    assert_eq!(q.stats().bytes, 900);
    // One more record of 100 fits exactly; the failed call left no trace.
    assert_eq!(q.append(&refs(&recs(1, 100))).unwrap(), 9..10);
    // Group append past a cap fails as a whole.
    let other = store.queue("other").unwrap();
    let a = recs(1, 10);
    let b = recs(1, 10);
    let err = store
        .append_group(
            &[("other", &refs(&a)), ("splunk-prod", &refs(&b))],
            Some((b"spool-1", b"done")),
        )
        .unwrap_err();
    assert!(matches!(err, QueueError::Full { .. }), "{err:?}");
    assert_eq!(other.stats().len, 0);
    assert_eq!(store.marker(b"spool-1").unwrap(), None);
    drop((q, other, store));
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("splunk-prod").unwrap();
    assert_eq!(q.stats().len, 10);
    assert_eq!(store.queue("other").unwrap().stats().len, 0);
}

#[test]
fn directory_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _store = SledStore::open(dir.path()).unwrap();
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, QueueError::InUse { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("in use by another raxe process"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}

#[test]
fn unwritable_directory() {
    // Tests may run as root, so permissions would not stop us: use a path under a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    fs::write(&file, b"x").unwrap();
    let target = file.join("data");
    let err = SledStore::open(&target).unwrap_err();
    assert!(matches!(err, QueueError::Directory { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&target.display().to_string()), "{msg}");

    let err = SledStore::open("/proc/raxe-storage-test").unwrap_err();
    assert!(matches!(err, QueueError::Directory { .. }), "{err:?}");
}

#[test]
fn garbage_db_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(dir.path().join("db"), &garbage).unwrap();
    let err = SledStore::open(dir.path()).unwrap_err();
    let msg = err.to_string();
    eprintln!("garbage db: {msg}");
    assert!(
        msg.contains(dir.path().join("db").to_str().unwrap()),
        "{msg}"
    );
}

#[test]
fn garbage_conf_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("conf"),
        b"this is not a sled config at all, no sir",
    )
    .unwrap();
    let err = SledStore::open(dir.path()).unwrap_err();
    let msg = err.to_string();
    eprintln!("garbage conf: {msg}");
    assert!(
        msg.contains(dir.path().join("conf").to_str().unwrap()),
        "{msg}"
    );
}

#[test]
fn foreign_sled_database_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled_with_our_segment_size(dir.path());
        db.insert(b"someone else's", b"data").unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, QueueError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("db") && msg.contains("not written by raxe"),
        "{msg}"
    );

    // A sled database with other settings: sled's own complaint, naming `conf`.
    let dir = tempfile::tempdir().unwrap();
    drop(sled::open(dir.path()).unwrap());
    let err = SledStore::open(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(dir.path().join("conf").to_str().unwrap()),
        "{msg}"
    );
}

#[test]
fn damaged_chunk_names_queue_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let q = store.queue("elastic").unwrap();
        q.append(&refs(&recs(5, 50))).unwrap();
        q.append(&refs(&recs(5, 50))).unwrap();
    }
    // Damage the second chunk through sled directly (its key is b'c' + seq 5 big-endian).
    {
        let db = sled_with_our_segment_size(dir.path());
        let t = db.open_tree("q/elastic").unwrap();
        let mut key = vec![b'c'];
        key.extend_from_slice(&5u64.to_be_bytes());
        let mut v = t.get(&key).unwrap().unwrap().to_vec();
        let n = v.len();
        v[n - 3] ^= 0xFF;
        t.insert(&key, v).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("elastic").unwrap();
    // The first chunk is fine and is handed out alone.
    let l = q.lease(100, usize::MAX).unwrap().unwrap();
    assert_eq!(l.len(), 5);
    q.ack(l).unwrap();
    let err = q.lease(100, usize::MAX).unwrap_err();
    match &err {
        QueueError::Damaged { queue, seq, .. } => {
            assert_eq!(queue, "elastic");
            assert_eq!(*seq, 5);
        }
        other => panic!("expected Damaged, got {other:?}"),
    }
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn invalid_queue_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with(dir.path(), StoreOptions::default()).unwrap();
    assert!(matches!(
        store.open_queue(""),
        Err(QueueError::InvalidName { .. })
    ));
    assert!(matches!(
        store.open_queue("a\nb"),
        Err(QueueError::InvalidName { .. })
    ));
}

#[test]
fn oversized_record_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("q").unwrap();
    let big = vec![0u8; raxe_storage::MAX_RECORD_BYTES + 1];
    let err = q.append(&[b"small", &big]).unwrap_err();
    assert!(matches!(err, QueueError::RecordTooLarge { .. }), "{err:?}");
    assert!(err.to_string().contains("\"q\""), "{err}");
    assert_eq!(q.stats().len, 0);
    assert_eq!(q.append(&[b"ok"]).unwrap(), 0..1);
}

/// A store of plain chunks only (layout v1: written before packing, or with it off) opens,
/// takes packed chunks beside its plain ones and delivers every record in order; once
/// opened with packing it is marked v2, so an older build refuses it rather than calling
/// packed chunks damaged. A layout this build does not know is refused by name.
#[test]
fn older_layout_is_read_and_upgraded_newer_is_refused() {
    const FORMAT_KEY: &[u8] = b"raxe-storage/format";
    let dir = tempfile::tempdir().unwrap();
    let owned: Vec<Vec<u8>> = (0..300)
        .map(|i| format!(r#"{{"event_id":"e{i}","pad":"{}"}}"#, "y".repeat(200)).into_bytes())
        .collect();
    {
        let opts = StoreOptions {
            pack_chunks: false,
            ..StoreOptions::default()
        };
        let store = SledStore::open_with(dir.path(), opts).unwrap();
        store
            .queue("q")
            .unwrap()
            .append(&refs(&owned[..150]))
            .unwrap();
    }
    {
        // Without packing, a store stays v1 (an older build can still open it).
        let db = common::raw_sled(dir.path());
        let marker = db.get(FORMAT_KEY).unwrap().unwrap();
        assert_eq!(&marker[..], b"raxe-storage chunked queues v1");
    }
    {
        let store = SledStore::open(dir.path()).unwrap();
        store
            .queue("q")
            .unwrap()
            .append(&refs(&owned[150..]))
            .unwrap();
    }
    {
        let db = common::raw_sled(dir.path());
        let marker = db.get(FORMAT_KEY).unwrap().unwrap();
        assert_eq!(&marker[..], b"raxe-storage chunked queues v2 (lz4 chunks)");
        let kinds: std::collections::BTreeSet<u8> = db
            .open_tree("q/q")
            .unwrap()
            .scan_prefix(b"c")
            .map(|kv| kv.unwrap().1[0])
            .collect();
        assert_eq!(
            kinds,
            [0xC1, 0xC2].into(),
            "plain and packed chunks side by side"
        );
        db.insert(FORMAT_KEY, &b"raxe-storage chunked queues v3"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("unsupported raxe-storage format") && msg.contains("v3"),
        "{msg}"
    );
    {
        let db = common::raw_sled(dir.path());
        db.insert(
            FORMAT_KEY,
            &b"raxe-storage chunked queues v2 (lz4 chunks)"[..],
        )
        .unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("q").unwrap();
    let lease = q.lease(1000, usize::MAX).unwrap().unwrap();
    let got: Vec<&[u8]> = lease.records.iter().map(|r| &r.data[..]).collect();
    assert_eq!(got, refs(&owned));
}

/// The data file is gone while the tips say its queues held records: every open refuses,
/// the second as the first (a refused open must not leave a fresh data file behind).
#[test]
fn a_missing_data_file_is_refused_every_time() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let q = store.queue("q").unwrap();
        q.append(&refs(&recs(10, 100))).unwrap();
    }
    fs::remove_file(dir.path().join("db")).unwrap();
    for attempt in 1..=3 {
        let err = SledStore::open(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("missing or empty"),
            "attempt {attempt}: {err}"
        );
    }
}
