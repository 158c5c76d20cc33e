//! Repair: finding damaged chunks, setting them aside, and reading records back out of a
//! database sled can no longer open.
//!
//! A chunk whose checksum fails stops its queue at that point (a lease reports
//! [`QueueError::Damaged`]); nothing after it is lost, but nothing after it is delivered
//! either. [`SledQueue::quarantine`] takes such a chunk out of the queue (recorded as acked,
//! like a delivered one) and hands back whatever records its length prefixes still
//! delimit, plus its raw bytes, for the caller to keep or check. The records of every
//! intact chunk stay queued, in order.
//!
//! [`scan_raw_records`] is the last resort, for a database file sled refuses: it looks for
//! byte runs shaped like our chunk values (magic byte, count, length-prefixed records that
//! fit exactly; for a packed chunk, an LZ4 block that unpacks to such records) in raw file
//! bytes. It cannot tell which queue a record belonged to, nor whether it was already
//! acked, so the caller must route what it finds again and accept duplicates. A damaged
//! byte costs the record it lands in when the chunk is plain, the whole chunk when it is
//! packed (unless sled's log holds another copy of it, which it often does).

use std::ops::Range;

use super::codec::{self, u32_at, ChunkMeta};
use super::sled_queue::SledQueue;
use super::SledStore;
use crate::error::QueueError;
use crate::queue::{Queue, QueueStore, Seq};

use super::chunk::{self, CHUNK_HEADER, CHUNK_MAGIC, PACKED_HEADER, PACKED_MAGIC};

/// A chunk never holds more records than this when scanning raw bytes (bounds false hits).
const MAX_SCAN_COUNT: usize = 1 << 16;

/// A chunk that failed its check.
#[derive(Debug, Clone)]
pub struct DamagedChunk {
    pub first: Seq,
    /// Records the chunk holds according to its metadata.
    pub count: u32,
    pub detail: String,
}

/// What [`SledQueue::quarantine`] took out of the queue.
#[derive(Debug, Clone)]
pub struct Quarantined {
    /// Seqs taken out (the unacked part of the chunk).
    pub seqs: Vec<Range<Seq>>,
    /// Records its length prefixes still delimit, in order; unverified.
    pub records: Vec<Vec<u8>>,
    /// The stored value, if sled still had one.
    pub raw: Option<Vec<u8>>,
}

impl SledStore {
    /// Loads every queue and reads back every chunk holding unacked records (after sled
    /// replayed a log that looked damaged). Damage, or a panic inside sled on the way,
    /// comes back as `Corrupt`.
    pub(super) fn read_back_every_chunk(&self) -> Result<(), QueueError> {
        for name in self.list_queues()? {
            let what = format!("the read-back of queue {name:?}");
            let damaged = self
                .shared
                .unwind_guard(&what, || self.queue(&name)?.verify())?;
            if let Some(d) = damaged.first() {
                return Err(self.shared.corrupt(
                    &name,
                    &format!(
                        "stored records at seq {} are damaged: {}",
                        d.first, d.detail
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl SledQueue {
    /// Reads and checks every chunk holding unacked records.
    pub fn verify(&self) -> Result<Vec<DamagedChunk>, QueueError> {
        let chunks: Vec<(Seq, ChunkMeta)> = {
            let st = self.lock();
            st.chunks.iter().map(|(&f, &m)| (f, m)).collect()
        };
        let mut damaged = Vec::new();
        for (first, meta) in chunks {
            match self.read_chunk(first, &meta) {
                Ok(_) => {}
                Err(QueueError::Damaged { detail, .. }) => damaged.push(DamagedChunk {
                    first,
                    count: meta.count,
                    detail,
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(damaged)
    }

    /// Takes the chunk starting at `first` out of the queue, durably, as if its unacked
    /// records had been delivered, and returns what could be read of it. Leased records
    /// are left alone (none are, on a store opened for repair).
    pub fn quarantine(&self, first: Seq) -> Result<Quarantined, QueueError> {
        let raw = self
            .tree
            .get(codec::chunk_key(first))
            .map_err(|e| self.shared.db_err(e))?
            .map(|v| v.to_vec());
        let lease = {
            let mut st = self.lock();
            let meta = *st
                .chunks
                .get(&first)
                .ok_or_else(|| self.damaged(first, "no such chunk".into()))?;
            let span = first..meta.end(first);
            let seqs: Vec<Range<Seq>> = st
                .avail
                .iter()
                .filter_map(|r| {
                    let cut = r.start.max(span.start)..r.end.min(span.end);
                    (!cut.is_empty()).then_some(cut)
                })
                .collect();
            let unacked: u64 = seqs.iter().map(|r| r.end - r.start).sum();
            // Exact when the whole chunk was unacked (the usual case), else pro rata.
            let bytes =
                u128::from(meta.bytes) * u128::from(unacked) / u128::from(meta.count.max(1));
            let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
            if st.cache.as_ref().is_some_and(|c| c.first == first) {
                st.cache = None;
            }
            let id = super::lease::lease_unread(&mut st, seqs.clone(), bytes);
            (id, seqs)
        };
        let (id, seqs) = lease;
        self.ack(crate::queue::Lease {
            id,
            records: Vec::new(),
        })?;
        let records = raw
            .as_deref()
            .and_then(|v| chunk_records(v, usize::MAX))
            .map(|(records, _)| records)
            .unwrap_or_default();
        Ok(Quarantined { seqs, records, raw })
    }
}

/// Records a chunk value holds by its length prefixes, ignoring its checksum (a packed
/// one unpacked first; any other magic byte is read as plain), and the bytes of `v` the
/// value spans if they delimit exactly its count of records. `None` if it is too short
/// for a header or is packed and does not unpack.
fn chunk_records(v: &[u8], max_count: usize) -> Option<(Vec<Vec<u8>>, Option<usize>)> {
    if v.len() < CHUNK_HEADER {
        return None;
    }
    let count = u32_at(v, 1) as usize;
    if v[0] != PACKED_MAGIC {
        // Plain, or a magic byte damaged: the length prefixes may still hold.
        let (records, used) = delimited_records(&v[CHUNK_HEADER..], count, max_count);
        return Some((records, used.map(|n| CHUNK_HEADER + n)));
    }
    if count > max_count || v.len() < PACKED_HEADER {
        return None;
    }
    let packed = u32_at(v, 13) as usize;
    let end = PACKED_HEADER.checked_add(packed)?;
    let entries = chunk::unpack(v.get(..end)?).ok()?;
    let (records, used) = delimited_records(&entries, count, max_count);
    let exact = used == Some(entries.len());
    Some((records, exact.then_some(end)))
}

/// Up to `max_count` of the `count` length-prefixed entries at the start of `entries`, and
/// the bytes all `count` of them use if they are all there.
fn delimited_records(
    entries: &[u8],
    count: usize,
    max_count: usize,
) -> (Vec<Vec<u8>>, Option<usize>) {
    let (spans, end) = chunk::walk_entries(entries, 0, count.min(max_count));
    let whole = spans.len() == count;
    let records = spans
        .into_iter()
        .map(|span| entries[span].to_vec())
        .collect();
    (records, whole.then_some(end))
}

/// Finds chunk-shaped values in raw bytes (a database file sled cannot open) and returns
/// their records, in file order. A hit needs a magic byte, a plausible count, and that
/// many length-prefixed records fitting in the bytes (a packed chunk: unpacking exactly
/// to them); the caller validates each record (our records are JSON). Old versions of a
/// value may be found more than once.
pub fn scan_raw_records(bytes: &[u8]) -> Vec<Vec<u8>> {
    scan_raw_chunks(bytes)
        .into_iter()
        .flat_map(|(_, records)| records)
        .collect()
}

/// [`scan_raw_records`], chunk by chunk: each hit's byte range in `bytes` and its records.
pub fn scan_raw_chunks(bytes: &[u8]) -> Vec<(Range<usize>, Vec<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + CHUNK_HEADER <= bytes.len() {
        let Some(found) = bytes[at..]
            .iter()
            .position(|&b| b == CHUNK_MAGIC || b == PACKED_MAGIC)
        else {
            break;
        };
        let start = at + found;
        let window = &bytes[start..];
        if window.len() < CHUNK_HEADER {
            break;
        }
        let count = u32_at(window, 1) as usize;
        if (1..=MAX_SCAN_COUNT).contains(&count) {
            if let Some((records, Some(used))) = chunk_records(window, MAX_SCAN_COUNT) {
                out.push((start..start + used, records));
                at = start + used;
                continue;
            }
        }
        at = start + 1;
    }
    out
}
