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

#[test]
fn marker_keys_lists_one_prefix_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        let one: Vec<&[u8]> = vec![b"1"];
        for key in [&b"spool:b"[..], b"spool:a", b"dead:x", b"spoolx"] {
            store
                .append_group(&[("q", &one)], Some((key, b"v")))
                .unwrap();
        }
        assert_eq!(
            store.marker_keys(b"spool:").unwrap(),
            vec![b"spool:a".to_vec(), b"spool:b".to_vec()]
        );
        assert!(store.remove_marker(b"spool:a").unwrap());
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        store.marker_keys(b"spool:").unwrap(),
        vec![b"spool:b".to_vec()]
    );
    assert_eq!(store.marker_keys(b"").unwrap().len(), 3);
}

#[test]
fn splitting_a_lease_at_either_end_leaves_no_lease_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("q").unwrap();
    let recs: Vec<Vec<u8>> = (0..600u32).map(|i| i.to_le_bytes().to_vec()).collect();
    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    q.append(&refs).unwrap();
    for round in 0..6 {
        let lease = q.lease(100, usize::MAX).unwrap().unwrap();
        // Acked whole (how a delivered batch ends), or given back whole.
        let at = if round % 2 == 0 { lease.len() } else { 0 };
        let (settled, rest) = q.split_lease(lease, at);
        q.ack(settled).unwrap();
        if round % 2 == 0 {
            q.release(rest);
        } else {
            // The records go back to the head: lease them again and ack them.
            q.release(rest);
            let again = q.lease(100, usize::MAX).unwrap().unwrap();
            q.ack(again).unwrap();
        }
        assert_eq!(q.leases_outstanding(), 0, "round {round}");
    }
    assert_eq!(q.stats().len, 0);
}

#[test]
fn a_lease_without_its_records_is_acked_or_released_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let q = store.queue("q").unwrap();
    let recs: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_le_bytes().to_vec()).collect();
    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    q.append(&refs).unwrap();
    let first = q.lease(100, usize::MAX).unwrap().unwrap();
    let second = q.lease(100, usize::MAX).unwrap().unwrap();
    q.release(first.without_records());
    q.ack(second.without_records()).unwrap();
    assert_eq!(q.leases_outstanding(), 0);
    assert_eq!(q.stats().len, 200);
    let again = q.lease(1_000, usize::MAX).unwrap().unwrap();
    let seqs: Vec<u64> = again.records.iter().map(|r| r.seq).collect();
    let want: Vec<u64> = (0..100).chain(200..300).collect();
    assert_eq!(seqs, want);
}
