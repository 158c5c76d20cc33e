//! Appends whose sled write is staged or failed: an ack while another append's range is staged
//! (seqs taken, sled write not done) must neither count the staged records as acked nor
//! persist their seqs as used; a write that sled applied in part leaves nothing behind.

use super::codec;
use super::sled_queue::now_ms;
use super::SledStore;
use crate::error::QueueError;
use crate::queue::Queue;

#[test]
fn an_ack_beside_a_staged_range_stops_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("q").unwrap();
    let recs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 40]).collect();
    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    q.append(&refs).unwrap();
    let lease = q.lease(10, usize::MAX).unwrap().unwrap();

    // Another append stages 10..15 and has not written it yet.
    let appends = q.lock_appends();
    let mut batch = sled::Batch::default();
    let planned = q.plan(&refs[..5]).unwrap();
    let staged = q
        .stage(&mut q.lock(), planned, &mut batch, now_ms())
        .unwrap();
    assert_eq!(staged.range, 10..15);

    // Acking every written record drains the queue: no chunk, nothing pending.
    q.ack(lease).unwrap();
    let state = codec::decode_ack(&q.tree.get(codec::ACK_KEY).unwrap().unwrap()).unwrap();
    assert_eq!(
        state.next, 10,
        "the persisted next must not claim the staged seqs"
    );
    assert_eq!(
        state.low, 10,
        "the low-water mark stops below the staged range"
    );
    assert_eq!(q.append(&[]).unwrap(), 10..10);

    // The write fails: the seqs go back, and the next append takes them.
    q.unstage(&mut q.lock(), &staged);
    drop(appends);
    assert_eq!(q.append(&refs[..3]).unwrap(), 10..13);
    let again = q.lease(10, usize::MAX).unwrap().unwrap();
    let seqs: Vec<u64> = again.records.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        vec![10, 11, 12],
        "records on reused seqs are not taken as acked"
    );
}

/// sled can panic inside a write (a damaged tree). The append must fail with `Corrupt`
/// instead of unwinding, give its staged seqs back and poison the store, so that no later
/// append leaves a gap that the next open would report as records sled lost. Both append
/// paths: one queue on its own, and a group with a marker.
#[test]
fn a_panic_inside_the_sled_write_undoes_the_staging() {
    let single = |store: &SledStore, records: &[&[u8]]| store.queue("q")?.append(records);
    let group = |store: &SledStore, records: &[&[u8]]| {
        store
            .append_group(&[("q", records)], Some((b"m", b"1")))
            .map(|ranges| ranges[0].clone())
    };
    for panics in [true, false] {
        fault_inside_the_write_of(single, panics);
        fault_inside_the_write_of(group, panics);
    }
    poisoned_while_waiting_for_the_lock(single);
    poisoned_while_waiting_for_the_lock(group);
}

/// An append already waiting for the append lock when another one fails inside sled (and
/// poisons the store) must not write the seqs the failed one gave back.
fn poisoned_while_waiting_for_the_lock(
    append: impl Fn(&SledStore, &[&[u8]]) -> Result<std::ops::Range<u64>, QueueError> + Sync,
) {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 40]).collect();
    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("q").unwrap();
    assert_eq!(q.append(&refs).unwrap(), 0..10);
    let waited = std::thread::scope(|s| {
        let appends = q.lock_appends();
        let waiter = s.spawn(|| append(&store, &refs[..5]));
        // Long enough for the waiter to pass the early poison check and block on the lock.
        std::thread::sleep(std::time::Duration::from_millis(200));
        store
            .shared
            .committer
            .poison("injected: a sled panic".into());
        drop(appends);
        waiter.join().unwrap()
    });
    assert!(waited.is_err(), "{waited:?}");
    assert_eq!(q.lock().next_seq, 10, "nothing was staged after the poison");
    assert!(store.marker(b"m").unwrap().is_none());
}

/// A panic (`panics`) or an error other than I/O inside an append's sled write: either
/// way sled may have applied part of the batch, so the store must be poisoned.
fn fault_inside_the_write_of(
    append: impl Fn(&SledStore, &[&[u8]]) -> Result<std::ops::Range<u64>, QueueError>,
    panics: bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 40]).collect();
    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let q = store.queue("q").unwrap();
        assert_eq!(q.append(&refs).unwrap(), 0..10);

        let hook = if panics {
            &super::PANIC_IN_NEXT_WRITE
        } else {
            &super::ERROR_IN_NEXT_WRITE
        };
        hook.with(|f| f.set(true));
        let failed = append(&store, &refs[..5]);
        assert!(!hook.with(|f| f.get()), "the write ran");
        match &failed {
            Err(QueueError::Corrupt { detail, .. }) if panics => assert!(
                detail.contains("(injected panic inside the sled write)"),
                "{detail}"
            ),
            Err(e) if !panics => assert!(
                e.to_string()
                    .contains("injected error inside the sled write"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        {
            let st = q.lock();
            assert_eq!(st.next_seq, 10, "the staged seqs went back");
            assert_eq!(st.staging, None);
            assert_eq!(st.pending_bytes, 0);
        }
        assert!(store.marker(b"m").unwrap().is_none());

        // Poisoned: no more appends; what was written is still delivered and acked.
        assert!(append(&store, &refs[..1]).is_err());
        let lease = q.lease(20, usize::MAX).unwrap().unwrap();
        let seqs: Vec<u64> = lease.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (0..10).collect::<Vec<_>>());
        q.ack(lease).unwrap();
    }
    // The next open finds no gap, and seqs go on where the written records ended.
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("q").unwrap();
    assert!(q.lease(20, usize::MAX).unwrap().is_none());
    assert_eq!(append(&store, &refs[..3]).unwrap(), 10..13);
}

/// A payload left without its metadata past the queue's durable tip (a group write sled
/// applied in part before it failed) is moved out of sled into a file when the queue is
/// next opened; the queue itself is unchanged.
#[test]
fn payloads_without_metadata_past_the_last_chunk_are_moved_out_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 40]).collect();
    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let q = store.queue("q").unwrap();
        assert_eq!(q.append(&refs).unwrap(), 0..10);
        for seq in [10, 25] {
            q.tree
                .insert(codec::chunk_key(seq), &b"orphan payload"[..])
                .unwrap();
        }
        q.tree.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("q").unwrap();
    for seq in [10, 25] {
        assert_eq!(
            q.tree.get(codec::chunk_key(seq)).unwrap(),
            None,
            "seq {seq}"
        );
        // Kept beside the store, in case it held something after all.
        let kept = dir
            .path()
            .join(format!("orphan-{:016x}-{seq}.chunk", q.nonce));
        assert_eq!(
            std::fs::read(&kept).unwrap(),
            b"orphan payload",
            "seq {seq}"
        );
    }
    assert!(q.tree.get(codec::chunk_key(0)).unwrap().is_some());
    assert_eq!(q.stats().len, 10);
    assert_eq!(q.append(&refs[..3]).unwrap(), 10..13);
    let lease = q.lease(20, usize::MAX).unwrap().unwrap();
    let data: Vec<Vec<u8>> = lease.records.iter().map(|r| r.data.to_vec()).collect();
    let mut expected = recs.clone();
    expected.extend_from_slice(&recs[..3]);
    assert_eq!(data, expected);
    q.release(lease);

    // Without the durable tip of the last run, nothing past the last chunk is removed
    // (`raxe repair` may want it).
    q.tree
        .insert(codec::chunk_key(40), &b"orphan payload"[..])
        .unwrap();
    q.tree.flush().unwrap();
    drop(q);
    drop(store);
    std::fs::remove_file(dir.path().join(super::tips::TIPS_FILE)).unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("q").unwrap();
    assert!(q.tree.get(codec::chunk_key(40)).unwrap().is_some());
    assert_eq!(q.stats().len, 13);
}

/// A tip older than the data (the page cache lost the last `tips` write, say) leaves every
/// chunk that has metadata alone, also past that tip: only payloads past the last chunk go.
#[test]
fn a_stale_tip_removes_nothing_that_has_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 40]).collect();
    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    let tips = dir.path().join(super::tips::TIPS_FILE);
    {
        let store = SledStore::open(dir.path()).unwrap();
        let q = store.queue("q").unwrap();
        assert_eq!(q.append(&refs).unwrap(), 0..10);
        let stale = std::fs::read(&tips).unwrap();
        assert_eq!(q.append(&refs).unwrap(), 10..20);
        q.tree
            .insert(codec::chunk_key(30), &b"orphan payload"[..])
            .unwrap();
        q.tree.flush().unwrap();
        drop(q);
        drop(store);
        std::fs::write(&tips, stale).unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("q").unwrap();
    assert_eq!(store.shared.tips.expected(q.nonce), Some(10));
    assert!(q.tree.get(codec::chunk_key(10)).unwrap().is_some());
    assert_eq!(q.tree.get(codec::chunk_key(30)).unwrap(), None);
    let lease = q.lease(30, usize::MAX).unwrap().unwrap();
    let seqs: Vec<u64> = lease.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..20).collect::<Vec<_>>());
}
