//! An ack while another append's range is staged (seqs taken, sled write not done): the
//! ack must neither count the staged records as acked nor persist their seqs as used.

use super::codec;
use super::sled_queue::now_ms;
use super::SledStore;
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
