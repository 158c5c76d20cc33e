//! Everyday behaviour not covered by the model test: chunk cache, stats, caps, queues.

use raxe_storage::{Queue, QueueStore, SledStore, StoreOptions};

#[test]
fn consecutive_leases_from_one_chunk_read_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        chunk_bytes: 20_000,
        ..StoreOptions::default()
    };
    let store = SledStore::open_with(dir.path(), opts).unwrap();
    let q = store.queue("q").unwrap();
    let recs: Vec<Vec<u8>> = (0..150u32).map(|i| i.to_le_bytes().repeat(25)).collect();
    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    q.append(&refs).unwrap();
    let a = q.lease(60, usize::MAX).unwrap().unwrap();
    let b = q.lease(60, usize::MAX).unwrap().unwrap();
    assert_eq!(q.chunk_reads(), 1, "150 x 100 B fit one chunk: read once");
    assert_eq!(b.records[0].seq, 60);
    assert_eq!(b.records[0].data, recs[60]);
    q.ack(a).unwrap();
    q.release(b);
    let c = q.lease(1000, usize::MAX).unwrap().unwrap();
    assert_eq!(c.len(), 90);
    assert_eq!(c.records[0].seq, 60);
}

#[test]
fn stats_and_out_of_order_acks_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let q = store.open_queue("q").unwrap();
        let recs: Vec<Vec<u8>> = (0..30u8).map(|i| vec![i; 10]).collect();
        let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
        q.append(&refs).unwrap();
        let s = q.stats();
        assert_eq!((s.len, s.bytes), (30, 300));
        assert!(s.oldest_age.unwrap() < std::time::Duration::from_secs(60));
        let a = q.lease(10, usize::MAX).unwrap().unwrap();
        let b = q.lease(10, usize::MAX).unwrap().unwrap();
        let (b1, b2) = q.split_lease(b, 4);
        q.ack(b2).unwrap(); // seqs 14..20, out of order
        assert_eq!(q.stats().len, 24);
        q.release(a);
        q.release(b1);
    }
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.open_queue("q").unwrap();
    assert_eq!((q.stats().len, q.stats().bytes), (24, 240));
    let l = q.lease(100, usize::MAX).unwrap().unwrap();
    let seqs: Vec<u64> = l.records.iter().map(|r| r.seq).collect();
    let want: Vec<u64> = (0..14).chain(20..30).collect();
    assert_eq!(seqs, want);
    q.ack(l).unwrap();
    assert_eq!(q.stats(), Default::default());
    assert_eq!(q.lease(10, 10).unwrap().map(|l| l.len()), None);
}

#[test]
fn dropped_queue_handle_errors_and_name_can_be_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.open_queue("gone").unwrap();
    q.append(&[b"x"]).unwrap();
    assert_eq!(store.list_queues().unwrap(), vec!["gone".to_string()]);
    store.drop_queue("gone").unwrap();
    assert!(q.append(&[b"y"]).is_err());
    assert!(store.list_queues().unwrap().is_empty());
    let q = store.open_queue("gone").unwrap();
    assert_eq!(q.stats().len, 0);
}

#[test]
fn group_append_through_the_trait_object() {
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn QueueStore> =
        std::sync::Arc::new(SledStore::open(dir.path()).unwrap());
    let a: Vec<&[u8]> = vec![b"1", b"2"];
    let ranges = store
        .append_group(&[("x", &a), ("y", &a)], Some((b"k", b"v")))
        .unwrap();
    assert_eq!(ranges, vec![0..2, 0..2]);
    assert_eq!(store.marker(b"k").unwrap(), Some(b"v".to_vec()));
    assert!(store.remove_marker(b"k").unwrap());
    assert!(!store.remove_marker(b"k").unwrap());
    assert_eq!(store.open_queue("y").unwrap().stats().len, 2);
}
