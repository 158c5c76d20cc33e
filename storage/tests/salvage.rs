//! Repair paths: a damaged chunk is set aside without losing the intact ones, and records
//! are read back out of a database file sled can no longer open.

use std::collections::HashSet;

mod common;

use raxe_storage::{scan_raw_records, Queue, QueueError, SledStore};

fn record(i: usize) -> Vec<u8> {
    format!(r#"{{"event_id":"e{i}","pad":"{}"}}"#, "x".repeat(300)).into_bytes()
}

fn append_range(q: &dyn Queue, range: std::ops::Range<usize>) {
    let recs: Vec<Vec<u8>> = range.map(record).collect();
    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    q.append(&refs).unwrap();
}

fn drain(q: &dyn Queue) -> Result<Vec<Vec<u8>>, QueueError> {
    let mut out = Vec::new();
    while let Some(l) = q.lease(1000, usize::MAX)? {
        out.extend(l.records.iter().map(|r| r.data.clone()));
        q.ack(l)?;
    }
    Ok(out)
}

#[test]
fn damaged_chunk_is_quarantined_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let q = store.queue("dest").unwrap();
        append_range(q.as_ref(), 0..5);
        append_range(q.as_ref(), 5..10);
        append_range(q.as_ref(), 10..15);
    }
    {
        // Flip a byte inside the second chunk's last record (key: b'c' + seq 5).
        let db = common::raw_sled(dir.path());
        let t = db.open_tree("q/dest").unwrap();
        let mut key = vec![b'c'];
        key.extend_from_slice(&5u64.to_be_bytes());
        let mut v = t.get(&key).unwrap().unwrap().to_vec();
        let n = v.len();
        v[n - 3] ^= 0x01;
        t.insert(&key, v).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("dest").unwrap();
    let damaged = q.verify().unwrap();
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert_eq!((damaged[0].first, damaged[0].count), (5, 5));
    assert!(damaged[0].detail.contains("checksum"), "{damaged:?}");
    // Before repair the queue stops at the damaged chunk.
    assert!(matches!(
        drain(q.as_ref()),
        Err(QueueError::Damaged { seq: 5, .. })
    ));

    let taken = q.quarantine(5).unwrap();
    assert_eq!(taken.seqs, vec![5..10]);
    assert_eq!(taken.records.len(), 5);
    // Four of the five are byte-for-byte intact; the flipped one differs in one byte.
    assert_eq!(
        &taken.records[..4],
        &(5..9).map(record).collect::<Vec<_>>()[..]
    );
    assert_ne!(taken.records[4], record(9));
    assert!(taken.raw.is_some());
    assert!(q.verify().unwrap().is_empty());
    assert_eq!(
        drain(q.as_ref()).unwrap(),
        (10..15).map(record).collect::<Vec<_>>()
    );
    drop((q, store));
    // Durable: after a reopen the damaged chunk stays out and nothing else comes back.
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("dest").unwrap();
    assert_eq!(q.stats().len, 0);
    assert!(q.verify().unwrap().is_empty());
}

#[test]
fn raw_scan_reads_records_back_out_of_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let total = 3_000;
    {
        let store = SledStore::open(dir.path()).unwrap();
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            let q = store.queue(name).unwrap();
            for k in 0..10 {
                let base = i * 1000 + k * 100;
                append_range(q.as_ref(), base..base + 100);
            }
        }
    }
    let mut bytes = std::fs::read(dir.path().join("db")).unwrap();
    let found: HashSet<Vec<u8>> = scan_raw_records(&bytes).into_iter().collect();
    for i in 0..total {
        assert!(found.contains(&record(i)), "record {i} not found");
    }
    assert!(found.iter().all(|r| r.starts_with(b"{\"event_id\":\"e")));

    // Damage the middle of the file: everything outside the damaged bytes still comes back.
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xA5;
    }
    let found: HashSet<Vec<u8>> = scan_raw_records(&bytes).into_iter().collect();
    let recovered = (0..total).filter(|&i| found.contains(&record(i))).count();
    assert!(
        recovered >= total - 20,
        "only {recovered} of {total} recovered around 64 damaged bytes"
    );
    // Garbage never panics and finds nothing plausible.
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = scan_raw_records(&noise);
}

/// sled 0.34 opens a truncated or damaged log as an older store without a word. With the
/// queue tips kept outside sled and the check that every seq is stored or acked, each kind
/// of damage below is an error naming the file, or opens with every record: never silence.
/// (Before those checks, a flip 10% into the file opened with 5,543 of 15,000 records.)
#[test]
fn damage_inside_sled_is_an_error_or_harmless_never_silent_loss() {
    let big =
        |i: usize| format!(r#"{{"event_id":"e{i}","pad":"{}"}}"#, "x".repeat(380)).into_bytes();
    for truncate in [true, false] {
        for at in [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.97] {
            let dir = tempfile::tempdir().unwrap();
            {
                let store = SledStore::open(dir.path()).unwrap();
                let q = store.queue("dest").unwrap();
                for k in 0..200 {
                    let recs: Vec<Vec<u8>> = (k * 100..(k + 1) * 100).map(big).collect();
                    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
                    q.append(&refs).unwrap();
                }
                let delivered = q.lease(5_000, usize::MAX).unwrap().unwrap();
                q.ack(delivered).unwrap();
            }
            let db = dir.path().join("db");
            let mut bytes = std::fs::read(&db).unwrap();
            let offset = (bytes.len() as f64 * at) as usize;
            if truncate {
                bytes.truncate(offset);
            } else {
                bytes[offset] ^= 0x10;
            }
            std::fs::write(&db, &bytes).unwrap();
            let intact: HashSet<Vec<u8>> = scan_raw_records(&bytes).into_iter().collect();
            let case = if truncate { "truncated" } else { "flipped" };
            let opened = SledStore::open(dir.path()).and_then(|store| {
                let q = store.queue("dest")?;
                Ok(q.stats().len)
            });
            match opened {
                Ok(len) => assert_eq!(len, 15_000, "{case} at {at}: records missing, silently"),
                Err(e @ (QueueError::Corrupt { .. } | QueueError::Db { .. })) => {
                    let text = e.to_string();
                    assert!(
                        text.contains("db") || text.contains("conf"),
                        "{case} at {at}: {text}"
                    );
                    // A cut file is copied before sled opens it: every record it held is
                    // still on disk for `raxe repair`. (A flipped byte leaves the length
                    // alone, and sled rewrites the rest of that segment while opening: a
                    // known limit, see README "Damaged files".)
                    if !truncate {
                        continue;
                    }
                    let mut kept = HashSet::new();
                    for entry in std::fs::read_dir(dir.path()).unwrap() {
                        let path = entry.unwrap().path();
                        if path.is_file() {
                            kept.extend(scan_raw_records(&std::fs::read(&path).unwrap()));
                        }
                    }
                    let lost = intact.difference(&kept).count();
                    assert_eq!(
                        lost, 0,
                        "{case} at {at}: opening destroyed {lost} records: {text}"
                    );
                }
                Err(other) => panic!("{case} at {at}: unexpected {other}"),
            }
        }
    }
}
