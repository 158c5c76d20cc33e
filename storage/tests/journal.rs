//! The ack journal: acks survive a (simulated) kill -9 without waiting for sled's flush,
//! stale records never touch a new queue of the same name, and the journal stays bounded.
//!
//! A kill -9 is simulated by copying the data directory's files while the store is open:
//! the copy holds what the page cache holds (the journal, sled's flushed writes), not
//! sled's in-memory buffers, and opening it skips the clean close.

mod common;
use common::raw_sled;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use raxe_storage::{Queue, QueueStore, SledStore, StoreOptions};

fn opts(journal_bytes: u64) -> StoreOptions {
    StoreOptions {
        // No background flush: acks reach sled's file only through appends' flushes and
        // journal rotations.
        flush_every_ms: None,
        ack_journal_bytes: journal_bytes,
        ..StoreOptions::default()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            match fs::copy(e.path(), &dst) {
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => panic!("copy {}: {err}", e.path().display()),
            }
        }
    }
}

fn crash_copy(dir: &Path) -> tempfile::TempDir {
    let snap = tempfile::tempdir().unwrap();
    copy_dir(dir, snap.path());
    snap
}

fn journals(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with("acks-") && n.ends_with(".log")
        })
        .collect();
    v.sort();
    v
}

fn recs(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("record-{i:04}").into_bytes())
        .collect()
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(|r| r.as_slice()).collect()
}

fn seqs_left(dir: &Path, name: &str) -> Vec<u64> {
    let store = SledStore::open_with(dir, opts(1 << 20)).unwrap();
    let q = store.queue(name).unwrap();
    let mut out = Vec::new();
    while let Some(l) = q.lease(1000, usize::MAX).unwrap() {
        out.extend(l.records.iter().map(|r| r.seq));
        std::mem::forget(l);
    }
    out
}

#[test]
fn acks_survive_kill_9_through_the_journal_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with(dir.path(), opts(1 << 20)).unwrap();
    let q = store.queue("q").unwrap();
    q.append(&refs(&recs(100))).unwrap();
    let l = q.lease(30, usize::MAX).unwrap().unwrap();
    q.ack(l).unwrap();
    // Out of order too: skip 30..40, ack 40..60.
    let skip = q.lease(10, usize::MAX).unwrap().unwrap();
    let l = q.lease(20, usize::MAX).unwrap().unwrap();
    q.ack(l).unwrap();
    q.release(skip);
    let snap = crash_copy(dir.path());
    drop((q, store));

    // Without the journal, sled's file alone still holds every record: the acks were not
    // flushed, so the test really depends on the journal.
    let no_journal = crash_copy(snap.path());
    for j in journals(no_journal.path()) {
        fs::remove_file(j).unwrap();
    }
    assert_eq!(seqs_left(no_journal.path(), "q").len(), 100);

    let want: Vec<u64> = (30..40).chain(60..100).collect();
    assert_eq!(seqs_left(snap.path(), "q"), want);
    // Replayed and flushed at open: the old journal is gone, and a second crash right
    // after the reopen keeps the acks.
    let store = SledStore::open_with(snap.path(), opts(1 << 20)).unwrap();
    let again = crash_copy(snap.path());
    drop(store);
    assert_eq!(journals(again.path()).len(), 1);
    assert_eq!(seqs_left(again.path(), "q"), want);
}

#[test]
fn stale_journal_records_never_ack_a_new_queue_of_the_same_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with(dir.path(), opts(1 << 20)).unwrap();
    let q = store.queue("reused").unwrap();
    q.append(&refs(&recs(20))).unwrap();
    let l = q.lease(20, usize::MAX).unwrap().unwrap();
    q.ack(l).unwrap();
    store.drop_queue("reused").unwrap();
    // Same name, seqs start at 0 again: the journal still holds "acked 0..20" for the
    // old queue.
    let q = store.queue("reused").unwrap();
    assert_eq!(q.append(&refs(&recs(20))).unwrap(), 0..20);
    let snap = crash_copy(dir.path());
    drop((q, store));
    assert_eq!(
        seqs_left(snap.path(), "reused"),
        (0..20).collect::<Vec<_>>()
    );
}

#[test]
fn journal_rotates_and_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 2000;
    let store = SledStore::open_with(dir.path(), opts(limit)).unwrap();
    let q = store.queue("q").unwrap();
    q.append(&refs(&recs(3000))).unwrap();
    for i in 0..2999 {
        let l = q.lease(1, usize::MAX).unwrap().unwrap();
        assert_eq!(l.records[0].seq, i);
        q.ack(l).unwrap();
        let files = journals(dir.path());
        assert!(files.len() <= 2, "{files:?}");
        for f in files {
            let len = fs::metadata(&f).unwrap().len();
            assert!(len < limit + 100, "{} is {len} bytes", f.display());
        }
    }
    let snap = crash_copy(dir.path());
    drop((q, store));
    assert_eq!(seqs_left(snap.path(), "q"), vec![2999]);
}

/// Acks of several queues race with journal switches (a switch creates its new file
/// outside the journal's lock while other acks still write to the old one): after a
/// crash every ack that returned stays acked, and the journal stays bounded.
#[test]
fn acks_racing_journal_switches_stay_acked_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with(dir.path(), opts(500)).unwrap();
    let names = ["q0", "q1", "q2", "q3"];
    for name in names {
        store
            .queue(name)
            .unwrap()
            .append(&refs(&recs(300)))
            .unwrap();
    }
    std::thread::scope(|s| {
        for name in names {
            let q = store.queue(name).unwrap();
            s.spawn(move || {
                for i in 0..299 {
                    let l = q.lease(1, usize::MAX).unwrap().unwrap();
                    assert_eq!(l.records[0].seq, i);
                    q.ack(l).unwrap();
                }
            });
        }
    });
    assert!(
        journals(dir.path()).len() <= 2,
        "{:?}",
        journals(dir.path())
    );
    let snap = crash_copy(dir.path());
    drop(store);
    for name in names {
        assert_eq!(seqs_left(snap.path(), name), vec![299], "{name}");
    }
}

#[test]
fn torn_journal_tail_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with(dir.path(), opts(1 << 20)).unwrap();
    let q = store.queue("q").unwrap();
    q.append(&refs(&recs(10))).unwrap();
    let l = q.lease(4, usize::MAX).unwrap().unwrap();
    q.ack(l).unwrap();
    let snap = crash_copy(dir.path());
    drop((q, store));
    // A record cut by the crash, then garbage.
    let j = journals(snap.path());
    assert_eq!(j.len(), 1);
    let mut f = fs::OpenOptions::new().append(true).open(&j[0]).unwrap();
    f.write_all(&[0xAB, 1, 0, 0, 0, 9, 9]).unwrap();
    drop(f);
    assert_eq!(seqs_left(snap.path(), "q"), (4..10).collect::<Vec<_>>());
    // And a clean store keeps working after that reopen.
    let store = SledStore::open_with(snap.path(), opts(1 << 20)).unwrap();
    let q = store.open_queue("q").unwrap();
    assert_eq!(q.stats().len, 6);
}

fn key(prefix: u8, seq: u64) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// An ack's sled writes are not one batch: the ack state first, then each dead chunk's
/// payload, then its metadata. Every prefix of them (what sled may recover) must load as
/// "acked" or "not acked", never as damage or loss.
#[test]
fn every_prefix_of_an_acks_sled_writes_loads() {
    for keep_payload in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open_with(dir.path(), opts(1 << 20)).unwrap();
            let q = store.queue("q").unwrap();
            assert_eq!(q.append(&refs(&recs(5))).unwrap(), 0..5);
            assert_eq!(q.append(&refs(&recs(5))).unwrap(), 5..10);
        }
        let (chunk0, meta0) = {
            let db = raw_sled(dir.path());
            let t = db.open_tree("q/q").unwrap();
            (
                t.get(key(b'c', 0)).unwrap().unwrap(),
                t.get(key(b'm', 0)).unwrap().unwrap(),
            )
        };
        {
            let store = SledStore::open_with(dir.path(), opts(1 << 20)).unwrap();
            let q = store.queue("q").unwrap();
            let l = q.lease(5, usize::MAX).unwrap().unwrap();
            assert_eq!(l.records.last().unwrap().seq, 4);
            q.ack(l).unwrap();
        }
        // Put back what a crash could have kept: the ack state is written, the removals
        // (all of them, or only the payload's) are not.
        {
            let db = raw_sled(dir.path());
            let t = db.open_tree("q/q").unwrap();
            assert!(t.get(key(b'c', 0)).unwrap().is_none());
            if keep_payload {
                t.insert(key(b'c', 0), chunk0.clone()).unwrap();
            }
            t.insert(key(b'm', 0), meta0.clone()).unwrap();
            db.flush().unwrap();
        }
        assert_eq!(
            seqs_left(dir.path(), "q"),
            (5..10).collect::<Vec<_>>(),
            "keep_payload {keep_payload}"
        );
        // The load removed the leftovers.
        let db = raw_sled(dir.path());
        let t = db.open_tree("q/q").unwrap();
        assert!(t.get(key(b'c', 0)).unwrap().is_none());
        assert!(t.get(key(b'm', 0)).unwrap().is_none());
    }
}

#[test]
fn an_ack_survives_kill_9_from_the_moment_it_says_it_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with(dir.path(), opts(1 << 20)).unwrap();
    let q = store.queue("q").unwrap();
    let other = store.queue("other").unwrap();
    q.append(&refs(&recs(100))).unwrap();
    let lease = q.lease(30, usize::MAX).unwrap().unwrap();
    // The crash copy is taken inside the signal, before the ack call returns.
    let mut snaps = Vec::new();
    q.ack_notifying(lease, &mut || snaps.push(crash_copy(dir.path())))
        .unwrap();
    assert_eq!(snaps.len(), 1, "signalled once");

    // Nothing to ack (the empty part of a split) is durable at once.
    let lease = q.lease(10, usize::MAX).unwrap().unwrap();
    let (empty, whole) = q.split_lease(lease, 0);
    let mut signals = 0;
    q.ack_notifying(empty, &mut || signals += 1).unwrap();
    assert_eq!(signals, 1);
    // A failed ack never says it is durable.
    assert!(other.ack_notifying(whole, &mut || signals += 1).is_err());
    assert_eq!(signals, 1);
    drop((q, other, store));

    assert_eq!(
        seqs_left(snaps[0].path(), "q"),
        (30..100).collect::<Vec<u64>>()
    );
}
