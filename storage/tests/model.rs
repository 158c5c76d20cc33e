//! Model-based property test: random interleavings of append / lease / ack / release /
//! split / reopen against a plain in-memory model of the queue.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use raxe_storage::{Lease, Queue, SledQueue, SledStore, StoreOptions};

#[derive(Debug, Clone)]
enum Op {
    /// Record lengths; a length of 9999 stands for one oversized (70 KiB) record.
    Append(Vec<usize>),
    Lease {
        max_records: usize,
        max_bytes: usize,
    },
    Ack(usize),
    Release(usize),
    Split(usize, usize),
    /// Split a lease by a mask: bit `i` picks the lease's `i`th record.
    SplitBy(usize, u32),
    Reopen,
    /// kill -9 as the disk sees it: reopen a copy of the data directory's files as they
    /// are now, without the clean close (sled's unflushed writes are not in the copy;
    /// acks since the last flush exist only in the ack journal).
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(prop_oneof![20 => 0usize..300, 1 => Just(9999usize)], 0..40)
            .prop_map(Op::Append),
        4 => (0usize..30, 0usize..4000).prop_map(|(max_records, max_bytes)| Op::Lease { max_records, max_bytes }),
        3 => any::<usize>().prop_map(Op::Ack),
        2 => any::<usize>().prop_map(Op::Release),
        1 => (any::<usize>(), 0usize..12).prop_map(|(i, at)| Op::Split(i, at)),
        1 => (any::<usize>(), any::<u32>()).prop_map(|(i, mask)| Op::SplitBy(i, mask)),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

#[derive(Default)]
struct Model {
    /// seq -> (data, leased)
    records: BTreeMap<u64, (Vec<u8>, bool)>,
    next_seq: u64,
}

fn open(dir: &Path, journal_bytes: u64) -> (SledStore, Arc<SledQueue>) {
    let opts = StoreOptions {
        // Tiny chunks so chunk boundaries, partial acks and the chunk cache get exercised.
        chunk_bytes: 700,
        // No background flush: acks reach sled's file only with appends' flushes and
        // journal rotations, so `Crash` depends on the journal replay.
        flush_every_ms: None,
        // Small: rotations happen mid-sequence; large: the journal is replayed whole.
        ack_journal_bytes: journal_bytes,
        ..StoreOptions::default()
    };
    let store = SledStore::open_with(dir, opts).expect("open");
    let q = store.queue("dest-1").expect("queue");
    (store, q)
}

fn data_for(seq_hint: u64, i: usize, len: usize) -> Vec<u8> {
    let len = if len == 9999 { 70 << 10 } else { len };
    (0..len)
        .map(|j| (seq_hint as usize * 31 + i * 7 + j) as u8)
        .collect()
}

fn check_stats(q: &SledQueue, m: &Model) {
    let s = q.stats();
    assert_eq!(s.len, m.records.len() as u64, "len");
    let bytes: u64 = m.records.values().map(|(d, _)| d.len() as u64).sum();
    assert_eq!(s.bytes, bytes, "bytes");
    assert_eq!(s.oldest_age.is_some(), !m.records.is_empty());
}

/// Copies the files of `from` (recursively) into `to`, as a crash would leave them.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            match std::fs::copy(e.path(), &dst) {
                Ok(_) => {}
                // sled may remove a file (old snapshot, blob) while we copy.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => panic!("copy {}: {err}", e.path().display()),
            }
        }
    }
}

fn run(ops: Vec<Op>, journal_bytes: u64) {
    let mut dir = tempfile::tempdir().expect("tempdir");
    let mut m = Model::default();
    let (mut store, mut q) = open(dir.path(), journal_bytes);
    let mut leases: Vec<Lease> = Vec::new();
    for op in ops {
        match op {
            Op::Append(lens) => {
                let recs: Vec<Vec<u8>> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| data_for(m.next_seq, i, l))
                    .collect();
                let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
                let r = q.append(&refs).expect("append");
                assert_eq!(r.end - r.start, recs.len() as u64);
                assert!(
                    r.start >= m.next_seq,
                    "seq went backwards: {r:?} < {}",
                    m.next_seq
                );
                if !recs.is_empty() {
                    m.next_seq = r.end;
                }
                for (s, d) in r.zip(recs) {
                    m.records.insert(s, (d, false));
                }
            }
            Op::Lease {
                max_records,
                max_bytes,
            } => {
                let got = q.lease(max_records, max_bytes).expect("lease");
                // Expected: oldest available, at most max_records (at least 1), within
                // max_bytes except that the first record always goes.
                let mut want = Vec::new();
                let mut bytes = 0;
                for (&s, (d, leased)) in &m.records {
                    if *leased {
                        continue;
                    }
                    if want.len() >= max_records.max(1) {
                        break;
                    }
                    if !want.is_empty() && bytes + d.len() > max_bytes {
                        break;
                    }
                    bytes += d.len();
                    want.push((s, d.clone()));
                }
                match got {
                    None => assert!(
                        want.is_empty(),
                        "lease returned nothing, expected {}",
                        want.len()
                    ),
                    Some(l) => {
                        let have: Vec<(u64, Vec<u8>)> =
                            l.records.iter().map(|r| (r.seq, r.data.to_vec())).collect();
                        assert_eq!(have, want);
                        for r in &l.records {
                            m.records.get_mut(&r.seq).expect("exists").1 = true;
                        }
                        leases.push(l);
                    }
                }
            }
            Op::Ack(i) if !leases.is_empty() => {
                let l = leases.swap_remove(i % leases.len());
                for r in &l.records {
                    m.records.remove(&r.seq);
                }
                q.ack(l).expect("ack");
            }
            Op::Release(i) if !leases.is_empty() => {
                let l = leases.swap_remove(i % leases.len());
                for r in &l.records {
                    m.records.get_mut(&r.seq).expect("exists").1 = false;
                }
                q.release(l);
            }
            Op::Split(i, at) if !leases.is_empty() => {
                let l = leases.swap_remove(i % leases.len());
                let n = l.len();
                let (a, b) = q.split_lease(l, at);
                assert_eq!(a.len(), at.min(n));
                assert_eq!(a.len() + b.len(), n);
                leases.push(a);
                leases.push(b);
            }
            Op::SplitBy(i, mask) if !leases.is_empty() => {
                let l = leases.swap_remove(i % leases.len());
                let picked: Vec<bool> =
                    (0..l.len()).map(|i| i < 32 && mask >> i & 1 == 1).collect();
                let seqs = |records: &[raxe_storage::Record]| -> Vec<u64> {
                    records.iter().map(|r| r.seq).collect()
                };
                let all = seqs(&l.records);
                let (a, b) = q.split_lease_by(l, &picked);
                let want_a: Vec<u64> = all
                    .iter()
                    .zip(&picked)
                    .filter(|(_, p)| **p)
                    .map(|(s, _)| *s)
                    .collect();
                let want_b: Vec<u64> = all
                    .iter()
                    .zip(&picked)
                    .filter(|(_, p)| !**p)
                    .map(|(s, _)| *s)
                    .collect();
                assert_eq!(seqs(&a.records), want_a);
                assert_eq!(seqs(&b.records), want_b);
                leases.push(a);
                leases.push(b);
            }
            Op::Reopen => {
                // Leases live in memory only: everything leased comes back.
                leases.clear();
                for v in m.records.values_mut() {
                    v.1 = false;
                }
                drop(q);
                drop(store);
                (store, q) = open(dir.path(), journal_bytes);
            }
            Op::Crash => {
                // Same expectations as a reopen: acks that returned stick, leases return.
                leases.clear();
                for v in m.records.values_mut() {
                    v.1 = false;
                }
                let snap = tempfile::tempdir().expect("tempdir");
                copy_dir(dir.path(), snap.path());
                drop(q);
                drop(store);
                dir = snap;
                (store, q) = open(dir.path(), journal_bytes);
            }
            _ => {}
        }
        check_stats(&q, &m);
    }
    // Final drain after a reopen: exactly the model's records, in order.
    drop(leases);
    drop(q);
    drop(store);
    let (_store, q) = open(dir.path(), journal_bytes);
    let mut got = Vec::new();
    while let Some(l) = q.lease(1000, usize::MAX).expect("lease") {
        got.extend(l.records.iter().map(|r| (r.seq, r.data.to_vec())));
        q.ack(l).expect("ack");
    }
    let want: Vec<(u64, Vec<u8>)> = m
        .records
        .iter()
        .map(|(&s, (d, _))| (s, d.clone()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(q.stats().len, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
    #[test]
    fn queue_matches_model(
        ops in prop::collection::vec(op(), 1..80),
        journal_bytes in prop_oneof![Just(150u64), Just(1u64 << 20)],
    ) {
        run(ops, journal_bytes);
    }
}
