//! Repair paths: a damaged chunk is set aside without losing the intact ones, and records
//! are read back out of a database file sled can no longer open.

use std::collections::HashSet;

mod common;

use raxe_storage::{scan_raw_records, Queue, QueueError, SledStore, StoreOptions};

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
        out.extend(l.records.iter().map(|r| r.data.to_vec()));
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

/// A plain chunk whose magic byte is damaged is refused by name, and setting it aside
/// still gives back every record its length prefixes delimit.
#[test]
fn plain_chunk_with_a_damaged_magic_byte_still_yields_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        pack_chunks: false,
        ..StoreOptions::default()
    };
    {
        let store = SledStore::open_with(dir.path(), opts.clone()).unwrap();
        append_range(store.queue("dest").unwrap().as_ref(), 0..5);
    }
    {
        let db = common::raw_sled(dir.path());
        let t = db.open_tree("q/dest").unwrap();
        let key = [b"c".as_slice(), &0u64.to_be_bytes()].concat();
        let mut v = t.get(&key).unwrap().unwrap().to_vec();
        assert_eq!(v[0], 0xC1);
        v[0] ^= 0x02;
        t.insert(&key, v).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open_with(dir.path(), opts).unwrap();
    let q = store.queue("dest").unwrap();
    let damaged = q.verify().unwrap();
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert!(damaged[0].detail.contains("format byte"), "{damaged:?}");
    let taken = q.quarantine(0).unwrap();
    assert_eq!(taken.records, (0..5).map(record).collect::<Vec<_>>());
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
/// A refused file keeps every record on disk for `raxe repair`: a cut one, and one damaged
/// inside sled's log (found by the pre-open scan), are copied before sled rewrites them.
#[test]
fn damage_inside_sled_is_an_error_or_harmless_never_silent_loss() {
    for truncate in [true, false] {
        for at in [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.97] {
            let dir = tempfile::tempdir().unwrap();
            fill_15k(dir.path());
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
            let tips = std::fs::read(dir.path().join("tips")).unwrap();
            let store = SledStore::open(dir.path());
            let refused_at_open = store.is_err();
            if refused_at_open {
                // What the next open checks the file against is left as it was.
                let now = std::fs::read(dir.path().join("tips")).unwrap();
                assert!(now == tips, "{case} at {at}: a refused open rewrote `tips`");
            }
            let opened = store.and_then(|store| {
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
                    // A cut file, or one damaged inside sled's log, is copied before sled
                    // opens it (and rewrites it): every record it held is still on disk
                    // for `raxe repair`.
                    let kept = salvage_dir(dir.path());
                    let lost = intact.difference(&kept).count();
                    assert_eq!(
                        lost, 0,
                        "{case} at {at}: opening destroyed {lost} records: {text}"
                    );
                    // Refused it stays (a service restarted in a loop): opened again,
                    // the store, its queue or a lease of every record fails, loudly.
                    let again = SledStore::open(dir.path()).and_then(|store| {
                        let q = store.queue("dest")?;
                        q.lease(20_000, usize::MAX).map(|_| ())
                    });
                    assert!(
                        again.is_err(),
                        "{case} at {at}: refused once ({}), then opened and read silently",
                        if refused_at_open { "open" } else { "queue" }
                    );
                }
                Err(other) => panic!("{case} at {at}: unexpected {other}"),
            }
        }
    }
}

/// What `raxe repair` reads after a refused open: every file left in the directory (the
/// data file and any `db.pre-open-*` copy), scanned for our chunk layout.
fn salvage_dir(dir: &std::path::Path) -> HashSet<Vec<u8>> {
    let mut kept = HashSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            kept.extend(scan_raw_records(&std::fs::read(&path).unwrap()));
        }
    }
    kept
}

fn pre_open_copies(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("db.pre-open-"))
        .collect()
}

fn big(i: usize) -> Vec<u8> {
    format!(r#"{{"event_id":"e{i}","pad":"{}"}}"#, "x".repeat(380)).into_bytes()
}

/// 20,000 records of ~400 bytes in 200 appends; the first 5,000 delivered and acked.
fn fill_15k(dir: &std::path::Path) {
    fill_15k_with(dir, StoreOptions::default());
}

fn fill_15k_with(dir: &std::path::Path, opts: StoreOptions) {
    let store = SledStore::open_with(dir, opts).unwrap();
    let q = store.queue("dest").unwrap();
    for k in 0..200 {
        let recs: Vec<Vec<u8>> = (k * 100..(k + 1) * 100).map(big).collect();
        let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
        q.append(&refs).unwrap();
    }
    let delivered = q.lease(5_000, usize::MAX).unwrap().unwrap();
    q.ack(delivered).unwrap();
}

/// A byte flipped inside a message of sled's log (not a segment header): sled takes the
/// message for the end of its log and overwrites what follows while opening (1,157 of
/// 15,000 records gone in one case before the scan). The store finds the damage before
/// sled opens, keeps a copy, and refuses loudly; salvaging the directory then yields every
/// record the file held, byte for byte, except the one the flipped byte is in.
#[test]
fn byte_flipped_inside_a_plain_chunk_loses_at_most_its_record() {
    let opts = StoreOptions {
        pack_chunks: false,
        ..StoreOptions::default()
    };
    byte_flipped_inside_a_log_message(opts, |original, all| {
        // Inside a record's padding: in the newest copy of some records, and the first one
        // at or after each fraction of the file.
        let mut targets: Vec<usize> = [5_000, 9_000, 12_345, 19_990]
            .iter()
            .map(|&i| {
                let r = big(i);
                let at = original.windows(r.len()).rposition(|w| w == r.as_slice());
                at.unwrap() + 40
            })
            .collect();
        for f in [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.97] {
            let from = (original.len() as f64 * f) as usize;
            let pad = original[from..].windows(16).position(|w| w == [b'x'; 16]);
            targets.push(from + pad.unwrap() + 8);
        }
        targets
            .into_iter()
            .map(|offset| {
                // The records the flip spoils: those whose bytes it landed in.
                let from = offset.saturating_sub(500);
                let window = &original[from..(offset + 500).min(original.len())];
                let hit: HashSet<Vec<u8>> = all
                    .iter()
                    .filter(|r| {
                        window.windows(r.len()).enumerate().any(|(k, w)| {
                            w == r.as_slice() && from + k <= offset && offset < from + k + r.len()
                        })
                    })
                    .cloned()
                    .collect();
                assert_eq!(hit.len(), 1, "flip at {offset} is not inside one record");
                (offset, hit)
            })
            .collect()
    });
}

/// The same for LZ4-packed chunks (the default): a flipped byte spoils at most the records
/// of the packed value it lands in; every other record comes back byte for byte.
#[test]
fn byte_flipped_inside_a_packed_chunk_loses_at_most_its_chunk() {
    byte_flipped_inside_a_log_message(StoreOptions::default(), |original, _| {
        let chunks = raxe_storage::scan_raw_chunks(original);
        assert!(chunks.len() > 100, "{} chunk values found", chunks.len());
        // The middle of: the newest copy of the chunk of some records, and the first chunk
        // at or after each fraction of the file.
        let mut picked: Vec<&std::ops::Range<usize>> = [5_000, 9_000, 12_345, 19_990]
            .iter()
            .map(|&i| {
                let r = big(i);
                &chunks
                    .iter()
                    .rev()
                    .find(|(_, recs)| recs.contains(&r))
                    .unwrap()
                    .0
            })
            .collect();
        for f in [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.97] {
            let from = (original.len() as f64 * f) as usize;
            picked.push(&chunks.iter().find(|(at, _)| at.start >= from).unwrap().0);
        }
        picked
            .into_iter()
            .map(|at| {
                assert_eq!(original[at.start], 0xC2, "a packed chunk at {at:?}");
                let offset = at.start + at.len() / 2;
                // Every chunk value the byte is inside (one, unless values overlap).
                let hit: HashSet<Vec<u8>> = chunks
                    .iter()
                    .filter(|(r, _)| r.contains(&offset))
                    .flat_map(|(_, recs)| recs.iter().cloned())
                    .collect();
                // One chunk's worth: as many records as a packed chunk takes, up to 2.5
                // times the chunk cap of plain records (`cut_chunks`).
                let per_chunk = StoreOptions::default().chunk_bytes * 5 / 2 / (big(0).len() + 4);
                assert!(
                    !hit.is_empty() && hit.len() <= per_chunk,
                    "{} records hit, {per_chunk} fit a chunk",
                    hit.len()
                );
                (offset, hit)
            })
            .collect()
    });
}

/// Flips one byte at each target `targets(original file, every record in it)` gives, with
/// the records that flip may spoil; checks that the store refuses or reads everything, and
/// that salvage then loses nothing else.
fn byte_flipped_inside_a_log_message(
    opts: StoreOptions,
    targets: impl Fn(&[u8], &HashSet<Vec<u8>>) -> Vec<(usize, HashSet<Vec<u8>>)>,
) {
    let template = tempfile::tempdir().unwrap();
    fill_15k_with(template.path(), opts);
    let original = std::fs::read(template.path().join("db")).unwrap();
    let len = original.len();
    let all: HashSet<Vec<u8>> = scan_raw_records(&original).into_iter().collect();
    assert!((0..20_000).all(|i| all.contains(&big(i))));
    let (mut refused, mut kept_copy) = (0, 0);
    for (offset, hit) in targets(&original, &all) {
        let dir = copy_store(template.path());
        let mut bytes = original.clone();
        bytes[offset] ^= 0x10;
        std::fs::write(dir.path().join("db"), &bytes).unwrap();
        let damage =
            raxe_storage::find_log_damage(dir.path(), StoreOptions::default().segment_size)
                .unwrap();
        let case = format!("flip at byte {offset} of {len} ({damage:?})");
        let opened = SledStore::open(dir.path()).and_then(|store| {
            let q = store.queue("dest")?;
            Ok(drain(q.as_ref()))
        });
        match &opened {
            // Harmless (a superseded copy sled skips or never reads at open): every
            // queued record. A copy taken for the check stays: sled has lost a chunk
            // after such an open had read every chunk back (it did, 1 run in ~5). No
            // check, no copy: a flip past the end of the log in a reused segment, or
            // below the replay floor, is in bytes sled does not read at open (CI saw
            // one at 1 MiB into a 2 MiB segment; where sled's log ends varies by run).
            Ok(Ok(records)) => {
                eprintln!("{case}: opened with {} records", records.len());
                assert_eq!(records.len(), 15_000, "{case}: opened with records missing");
                assert_eq!(
                    pre_open_copies(dir.path()).len(),
                    usize::from(damage.is_some()),
                    "{case}: a copy is kept exactly when the check found damage"
                );
                continue;
            }
            // Sled opened, a chunk read failed its check: loud, per chunk.
            Ok(Err(e)) => assert!(
                matches!(e, QueueError::Damaged { .. } | QueueError::Corrupt { .. }),
                "{case}: {e}"
            ),
            Err(_) => refused += 1,
        }
        let copies = pre_open_copies(dir.path());
        kept_copy += usize::from(!copies.is_empty());
        let salvaged = salvage_dir(dir.path());
        let lost = all
            .iter()
            .filter(|r| !salvaged.contains(*r) && !hit.contains(*r))
            .count();
        let queued_lost = (5_000..20_000)
            .filter(|&i| !salvaged.contains(&big(i)))
            .count();
        eprintln!(
            "{case}: {} records in the file, {lost} lost ({queued_lost} of 15,000 queued)",
            all.len()
        );
        assert_eq!(lost, 0, "{case}: salvage lost {lost} intact records");
        assert!(
            queued_lost <= hit.len(),
            "{case}: {queued_lost} queued records lost, {} hit",
            hit.len()
        );
        if let Err(e) = &opened {
            let text = e.to_string();
            assert!(text.contains("db"), "{case}: {text}");
            if !copies.is_empty() {
                assert!(text.contains("db.pre-open-"), "{case}: {text}");
            }
        }
    }
    assert!(refused >= 2, "only {refused} flips were refused");
    assert!(kept_copy >= 2, "only {kept_copy} refusals kept a copy");
}

/// A crash mid-write leaves the log's tail past the last synced append cut or garbled:
/// that is no damage. The scan finds nothing, no copy is taken, and the store opens with
/// every record.
#[test]
fn torn_tail_past_the_last_synced_append_is_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let q = store.queue("dest").unwrap();
        append_range(q.as_ref(), 0..300);
    }
    let synced_len = std::fs::metadata(dir.path().join("db")).unwrap().len() as usize;
    // Writes the store never synced nor recorded: sled's own, flushed, past the tip.
    {
        let db = common::raw_sled(dir.path());
        let t = db.open_tree("unsynced").unwrap();
        for i in 0..200u32 {
            t.insert(i.to_be_bytes(), record(i as usize)).unwrap();
        }
        db.flush().unwrap();
    }
    let full = std::fs::read(dir.path().join("db")).unwrap();
    assert!(full.len() > synced_len);
    let tail = &full[synced_len..];
    let last = tail.iter().rposition(|&b| b != 0).unwrap() + synced_len;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("cut mid-message", full[..(synced_len + last) / 2].to_vec()),
        ("cut near the end", full[..last - 7].to_vec()),
        ("tail zeroed", {
            let mut b = full.clone();
            b[(synced_len + last) / 2..].fill(0);
            b
        }),
        ("tail garbled", {
            let mut b = full.clone();
            for (k, x) in b[(synced_len + last) / 2..=last].iter_mut().enumerate() {
                *x = (k as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2];
            }
            b
        }),
    ];
    for (case, bytes) in cases {
        let copy = copy_store(dir.path());
        std::fs::write(copy.path().join("db"), &bytes).unwrap();
        let damage =
            raxe_storage::find_log_damage(copy.path(), StoreOptions::default().segment_size)
                .unwrap();
        assert_eq!(damage, None, "{case}");
        let store = SledStore::open(copy.path()).unwrap_or_else(|e| panic!("{case}: {e}"));
        let q = store.queue("dest").unwrap();
        assert_eq!(
            drain(q.as_ref()).unwrap(),
            (0..300).map(record).collect::<Vec<_>>(),
            "{case}"
        );
        assert!(pre_open_copies(copy.path()).is_empty(), "{case}");
    }
}

/// The scan's cost on every open (run with `--release -- --ignored --nocapture`;
/// `RAXE_SCAN_RECORDS` sets the record count, 100,000 by default). Everything is appended
/// after one open, so sled replays (and the scan reads) the whole log; after another open
/// sled's snapshot moves to the end and the scan reads only the newest segment.
#[test]
#[ignore]
fn log_scan_cost() {
    let n: usize = std::env::var("RAXE_SCAN_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let q = store.queue("dest").unwrap();
        for k in 0..n / 1000 {
            let recs: Vec<Vec<u8>> = (k * 1000..(k + 1) * 1000).map(big).collect();
            let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
            q.append(&refs).unwrap();
        }
    }
    let seg = StoreOptions::default().segment_size;
    let len = std::fs::metadata(dir.path().join("db")).unwrap().len();
    let time = |what: &str| {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = std::time::Instant::now();
            assert_eq!(
                raxe_storage::find_log_damage(dir.path(), seg).unwrap(),
                None
            );
            best = best.min(t.elapsed().as_secs_f64());
        }
        eprintln!(
            "{n} records, db {:.1} MB, {what}: scan {:.3} s ({:.3} s per 400 MB of file)",
            len as f64 / 1e6,
            best,
            best * 400e6 / len as f64
        );
    };
    time("whole log replayed");
    let t = std::time::Instant::now();
    drop(SledStore::open(dir.path()).unwrap());
    eprintln!("open: {:.3} s", t.elapsed().as_secs_f64());
    time("after a reopen");
}

/// A copy of a closed store's files (not its lock) in a new temporary directory.
fn copy_store(from: &std::path::Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.file_name().unwrap() != "raxe.lock" {
            std::fs::copy(&path, to.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    to
}
