//! Appends and acks at once. An append holds the queue's state lock only to take its seqs
//! and to publish them, not during its sled write, so acks run beside appends in flight:
//! they must never count a record staged by one as acked, nor persist its seqs as used.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use raxe_storage::{Queue, SledStore, StoreOptions, Syncer};

/// No fdatasync: appends come back fast, so the consumer keeps draining the queue while
/// the next append is between taking its seqs and writing them, the window at stake.
struct NoSync;

impl Syncer for NoSync {
    fn sync_data(&self, _path: &Path, _file: &File) -> io::Result<()> {
        Ok(())
    }
}

fn record(i: u32) -> Vec<u8> {
    format!("{{\"n\":{i}}}").into_bytes()
}

#[test]
fn acks_beside_appends_in_flight_lose_nothing_and_reopen_cleanly() {
    const APPENDS: u32 = 3_000;
    // More records per append than per lease: a chunk is acked in parts, and a part acked
    // while the next append is staged must not let the rest of its chunk go.
    const PER_APPEND: u32 = 20;
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        syncer: Arc::new(NoSync),
        ..StoreOptions::default()
    };
    let total = (APPENDS * PER_APPEND) as usize;
    {
        let store = SledStore::open_with(dir.path(), opts.clone()).unwrap();
        let q = store.queue("q").unwrap();
        let done = AtomicBool::new(false);
        let received = std::thread::scope(|s| {
            s.spawn(|| {
                for a in 0..APPENDS {
                    let recs: Vec<Vec<u8>> = (0..PER_APPEND)
                        .map(|k| record(a * PER_APPEND + k))
                        .collect();
                    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
                    // Both append paths: the group one (with a marker) and the plain one.
                    if a % 2 == 0 {
                        let marker = format!("m{a}");
                        store
                            .append_group(&[("q", &refs)], Some((marker.as_bytes(), b"1")))
                            .unwrap();
                    } else {
                        q.append(&refs).unwrap();
                    }
                }
                done.store(true, Ordering::SeqCst);
            });
            let mut received: Vec<(u64, Vec<u8>)> = Vec::with_capacity(total);
            loop {
                let finished = done.load(Ordering::SeqCst);
                match q.lease(7, usize::MAX).unwrap() {
                    Some(lease) => {
                        received.extend(lease.records.iter().map(|r| (r.seq, r.data.to_vec())));
                        q.ack(lease).unwrap();
                    }
                    None if finished => break,
                    None => std::thread::yield_now(),
                }
            }
            received
        });
        assert_eq!(received.len(), total, "every record leased exactly once");
        for (i, (seq, data)) in received.iter().enumerate() {
            assert_eq!(*seq, i as u64, "in seq order, no gap");
            assert_eq!(*data, record(i as u32));
        }
        assert_eq!(q.stats().len, 0);
    }
    // The persisted ack state must describe written records only.
    let store = SledStore::open_with(dir.path(), opts).unwrap();
    let q = store.queue("q").unwrap();
    assert_eq!(
        q.stats().len,
        0,
        "nothing comes back: every record was acked"
    );
    let next = q.append(&[b"after".as_slice()]).unwrap();
    assert_eq!(next.start, total as u64, "seqs go on where they stopped");
}
