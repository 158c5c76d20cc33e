//! One queue: a sled tree plus its in-memory index (chunk metadata, what is available,
//! leased, acked).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ack::AckRest;
use super::chunk::{self, DecodedChunk};
use super::codec::{self, ChunkMeta};
use super::commit::Level;
use super::lease::register_lease;
use super::ranges::RangeSet;
use super::Shared;
use crate::error::QueueError;
use crate::queue::{AckProgress, Lease, Queue, QueueStats, Record, Seq};

/// Largest single record accepted (chunk values hold u32 lengths; keep well below).
pub const MAX_RECORD_BYTES: usize = 32 << 20;

/// A chunk written to sled whose group commit has not completed yet: not leasable.
pub(super) struct Pending {
    ticket: u64,
    first: Seq,
    meta: ChunkMeta,
}

pub(super) struct LeaseInfo {
    pub(super) ranges: Vec<Range<Seq>>,
    pub(super) count: u64,
    pub(super) bytes: u64,
}

pub(crate) struct QState {
    /// The next seq to hand out; past any range staged by an append in progress.
    pub(super) next_seq: Seq,
    /// First seq staged by the append in progress (under the append lock, between `stage`
    /// and `commit_staged` or `unstage`), whose sled write may not have happened yet.
    /// Acks must not reach it: not their low-water mark (its records are not acked) and
    /// not the `next` they persist (a crash could keep the ack state and not the chunks).
    pub(super) staging: Option<Seq>,
    /// Durable chunks holding at least one unacked record, by first seq.
    pub(super) chunks: BTreeMap<Seq, ChunkMeta>,
    /// Written, waiting for their sync; in seq order (so tickets are increasing too).
    pub(super) pending: VecDeque<Pending>,
    pub(super) pending_bytes: u64,
    /// Seqs that exist, are durable, and are neither leased nor acked.
    pub(super) avail: RangeSet,
    /// Everything below is acked or never existed.
    pub(super) acked_low: Seq,
    /// Acked seqs at or above `acked_low` (out-of-order acks).
    pub(super) acked_above: RangeSet,
    pub(super) leases: HashMap<u64, LeaseInfo>,
    /// Durable, unacked records and their payload bytes.
    pub(super) len: u64,
    pub(super) bytes: u64,
    pub(super) cap: Option<u64>,
    /// Last decoded chunk, so consecutive leases from one chunk read it once.
    pub(super) cache: Option<Arc<DecodedChunk>>,
    /// Counts acks: a state computed later supersedes one computed earlier.
    pub(super) ack_version: u64,
}

impl QState {
    /// The next seq as far as acks may know it: staged ranges excluded.
    pub(super) fn written_next(&self) -> Seq {
        self.staging.unwrap_or(self.next_seq)
    }

    pub(super) fn new(cap: Option<u64>) -> Self {
        QState {
            next_seq: 0,
            staging: None,
            chunks: BTreeMap::new(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            avail: RangeSet::new(),
            acked_low: 0,
            acked_above: RangeSet::new(),
            leases: HashMap::new(),
            len: 0,
            bytes: 0,
            cap,
            cache: None,
            ack_version: 0,
        }
    }
}

/// A queue handle from [`super::SledStore`]; cheap to share (`Arc`).
pub struct SledQueue {
    pub(super) name: String,
    /// Names this incarnation of the queue in the ack journal.
    pub(super) nonce: u64,
    /// Before `shared`: fields drop in order, and the store's close (`Shared::drop`)
    /// waits for sled to let go of its file, which this handle on sled would hold.
    pub(crate) tree: sled::Tree,
    pub(super) shared: Arc<Shared>,
    pub(super) state: Mutex<QState>,
    /// Held by an append from `stage` to `commit_staged` (or `unstage`), and by a drop:
    /// appends take seqs in turn, while the state lock is free for leases and acks during
    /// the sled write. Taken before the state lock, never after it.
    pub(super) appending: Mutex<()>,
    /// Chunk values read from sled (for tests of the chunk cache).
    pub(super) chunk_reads: AtomicU64,
    /// The newest ack state written to sled, by `QState::ack_version` (journal lock).
    pub(super) ack_applied: AtomicU64,
    /// Set (under the state lock) when the queue is dropped, before its tree is: leases,
    /// appends and acks are refused after it, and acks that took their state before it
    /// write nothing to sled.
    pub(super) dropped: std::sync::atomic::AtomicBool,
    /// Test hook: run by the next ack between letting go of the state lock and taking the
    /// journal's, the window where other acks, appends and drops can come between.
    #[cfg(test)]
    pub(super) ack_pause: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

/// An append's chunks, cut and encoded (unsealed) before any lock is taken: the costly
/// part of an append (copying and packing) never holds up a lease or an ack.
pub(crate) struct Planned {
    /// Unsealed value, record count and payload bytes of each chunk, in order.
    chunks: Vec<(Vec<u8>, u32, u64)>,
    bytes: u64,
}

/// What `stage` reserved in a queue for an append in progress.
pub(crate) struct Staged {
    pub(crate) range: Range<Seq>,
    pub(super) chunks: Vec<(Seq, ChunkMeta)>,
    pub(super) bytes: u64,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl SledQueue {
    pub(super) fn lock(&self) -> MutexGuard<'_, QState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn lock_state(&self) -> MutexGuard<'_, QState> {
        self.lock()
    }

    /// The append lock (see `appending`).
    pub(crate) fn lock_appends(&self) -> MutexGuard<'_, ()> {
        self.appending.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn damaged(&self, seq: Seq, detail: String) -> QueueError {
        QueueError::Damaged {
            queue: self.name.clone(),
            seq,
            detail,
        }
    }

    /// Sets (or removes) the byte cap.
    pub fn set_cap(&self, cap: Option<u64>) {
        self.lock().cap = cap;
    }

    pub fn cap(&self) -> Option<u64> {
        self.lock().cap
    }

    /// How many chunk values this handle has read from sled (diagnostics and tests).
    pub fn chunk_reads(&self) -> u64 {
        self.chunk_reads.load(Ordering::Relaxed)
    }

    /// Leases handed out and neither acked nor released (for tests).
    pub fn leases_outstanding(&self) -> usize {
        self.lock().leases.len()
    }

    pub(crate) fn mark_dropped(&self) {
        // After any append in progress: none writes into the tree once it is dropped.
        let _appends = self.lock_appends();
        {
            let _st = self.lock();
            self.dropped
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        // Through the journal's lock: an ack writing to this tree now finishes first, and
        // any later one sees `dropped` (acks let go of the state lock before their
        // sled writes, so that lock does not keep them out). Not holding it meanwhile:
        // the journal's lock can be busy with other queues' acks, and `dropped` already
        // turns away leases and acks of this one.
        self.shared.journal.barrier();
        let mut st = self.lock();
        st.chunks.clear();
        st.pending.clear();
        st.avail = RangeSet::new();
        st.leases.clear();
        st.cache = None;
        st.len = 0;
        st.bytes = 0;
    }

    /// Call under the state lock: `dropped` is set under it.
    pub(super) fn check_live(&self) -> Result<(), QueueError> {
        if self.dropped.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(QueueError::Dropped {
                queue: self.name.clone(),
            });
        }
        Ok(())
    }

    /// Cuts `records` into chunks and encodes them, holding no lock. Each chunk's encoded
    /// value stays under the chunk cap (see [`chunk::cut_chunks`]); an oversized record gets
    /// a chunk of its own.
    pub(crate) fn plan(&self, records: &[&[u8]]) -> Result<Planned, QueueError> {
        let mut bytes = 0u64;
        for r in records {
            if r.len() > MAX_RECORD_BYTES {
                return Err(QueueError::RecordTooLarge {
                    queue: self.name.clone(),
                    len: r.len(),
                    max: MAX_RECORD_BYTES,
                });
            }
            bytes += r.len() as u64;
        }
        let chunks = chunk::cut_chunks(records, self.shared.chunk_bytes, self.shared.pack_chunks);
        Ok(Planned { chunks, bytes })
    }

    /// Under the state lock (and the append lock, held until `commit_staged` or
    /// `unstage`): checks limits, allocates seqs, seals the planned chunks and adds their
    /// writes to `batch`. Nothing is visible until `commit_staged`.
    pub(crate) fn stage(
        &self,
        st: &mut QState,
        planned: Planned,
        batch: &mut sled::Batch,
        now: u64,
    ) -> Result<Staged, QueueError> {
        self.check_live()?;
        let incoming = planned.bytes;
        let queued = st.bytes.saturating_add(st.pending_bytes);
        if let Some(cap) = st.cap {
            if queued.saturating_add(incoming) > cap {
                return Err(QueueError::Full {
                    queue: self.name.clone(),
                    cap,
                    queued,
                    incoming,
                });
            }
        }
        let start = st.next_seq;
        let mut first = start;
        let mut chunks = Vec::with_capacity(planned.chunks.len());
        for (mut value, count, bytes) in planned.chunks {
            chunk::seal(first, &mut value);
            batch.insert(&codec::chunk_key(first), value);
            let meta = ChunkMeta {
                count,
                bytes,
                append_ms: now,
            };
            batch.insert(
                &codec::meta_key(first),
                &codec::encode_meta(first, &meta)[..],
            );
            chunks.push((first, meta));
            first += count as u64;
        }
        st.next_seq = first;
        st.staging.get_or_insert(start);
        st.pending_bytes += incoming;
        Ok(Staged {
            range: start..first,
            chunks,
            bytes: incoming,
        })
    }

    /// The write failed: release the byte reservation and the seqs (the caller held the
    /// append lock since `stage`, so none were handed out after them). Seqs stay
    /// contiguous, which lets a reopen tell a missing chunk from one that was never
    /// written. Several ranges staged together are undone newest first.
    pub(crate) fn unstage(&self, st: &mut QState, staged: &Staged) {
        st.pending_bytes = st.pending_bytes.saturating_sub(staged.bytes);
        if st.next_seq == staged.range.end {
            st.next_seq = staged.range.start;
        }
        if st.staging == Some(staged.range.start) {
            st.staging = None;
        }
    }

    /// The write is in sled under commit `ticket`: queue its chunks for publication.
    /// (Every range staged together was written by then.)
    pub(crate) fn commit_staged(&self, st: &mut QState, staged: Staged, ticket: u64) {
        st.staging = None;
        for (first, meta) in staged.chunks {
            st.pending.push_back(Pending {
                ticket,
                first,
                meta,
            });
        }
    }

    /// Makes pending chunks whose commit is synced leasable, in seq order.
    pub(crate) fn publish(&self, st: &mut QState) {
        if st.pending.is_empty() {
            return;
        }
        let synced = self.shared.committer.synced();
        while let Some(p) = st.pending.front() {
            if p.ticket > synced {
                break;
            }
            let (first, meta) = (p.first, p.meta);
            st.pending.pop_front();
            st.pending_bytes = st.pending_bytes.saturating_sub(meta.bytes);
            st.len += meta.count as u64;
            st.bytes = st.bytes.saturating_add(meta.bytes);
            st.avail.insert(first..meta.end(first));
            st.chunks.insert(first, meta);
        }
    }

    pub(super) fn read_chunk(
        &self,
        first: Seq,
        meta: &ChunkMeta,
    ) -> Result<DecodedChunk, QueueError> {
        self.chunk_reads.fetch_add(1, Ordering::Relaxed);
        let v = self
            .shared
            .sled_call("a read", || self.tree.get(codec::chunk_key(first)))?
            .ok_or_else(|| self.damaged(first, "chunk payload is missing".into()))?;
        let c = chunk::decode_chunk(first, v).map_err(|d| self.damaged(first, d))?;
        if c.count() != meta.count as u64 {
            return Err(self.damaged(
                first,
                format!(
                    "chunk holds {} records, metadata says {}",
                    c.count(),
                    meta.count
                ),
            ));
        }
        Ok(c)
    }

    fn cached_chunk(
        &self,
        st: &mut QState,
        first: Seq,
        meta: &ChunkMeta,
    ) -> Result<Arc<DecodedChunk>, QueueError> {
        if let Some(c) = &st.cache {
            if c.first == first {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(self.read_chunk(first, meta)?);
        st.cache = Some(c.clone());
        Ok(c)
    }

    /// Takes records off `avail` into `out`. Stops at the limits or on error.
    fn take(
        &self,
        st: &mut QState,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<Record>,
        bytes: &mut usize,
    ) -> Result<(), QueueError> {
        while out.len() < max_records {
            let Some(r) = st.avail.first() else {
                return Ok(());
            };
            let (first, meta) = match st.chunks.range(..=r.start).next_back() {
                Some((&f, &m)) if m.end(f) > r.start => (f, m),
                _ => return Err(self.damaged(r.start, "no chunk holds this record".into())),
            };
            let chunk = self.cached_chunk(st, first, &meta)?;
            let upto = r.end.min(meta.end(first));
            let mut seq = r.start;
            let mut full = false;
            while seq < upto && out.len() < max_records {
                let Some(data) = chunk.get(seq) else {
                    break;
                };
                if !out.is_empty() && *bytes + data.len() > max_bytes {
                    full = true;
                    break;
                }
                *bytes += data.len();
                out.push(Record { seq, data });
                seq += 1;
            }
            st.avail.remove(r.start..seq);
            if full {
                return Ok(());
            }
        }
        Ok(())
    }

    pub(super) fn commit(&self, ticket: u64, level: Level) -> Result<(), QueueError> {
        self.shared.commit(ticket, level)
    }
}

/// Raises `acked_low` over deleted or missing seqs and merges acked ranges into it.
pub(super) fn normalize_low(st: &mut QState) {
    let floor = st
        .chunks
        .keys()
        .next()
        .copied()
        .or_else(|| st.pending.front().map(|p| p.first))
        .unwrap_or_else(|| st.written_next());
    st.acked_low = st.acked_low.max(floor);
    while let Some(r) = st.acked_above.first() {
        if r.start > st.acked_low {
            break;
        }
        st.acked_low = st.acked_low.max(r.end);
        st.acked_above.remove(r);
    }
    let low = st.acked_low;
    st.acked_above.remove_below(low);
}

impl Queue for SledQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn append(&self, records: &[&[u8]]) -> Result<Range<Seq>, QueueError> {
        if records.is_empty() {
            let st = self.lock();
            self.check_live()?;
            // Not past a range still being written: it may yet be undone.
            let next = st.written_next();
            return Ok(next..next);
        }
        self.shared.check_not_poisoned()?;
        let planned = self.plan(records)?;
        let appends = self.lock_appends();
        // Again under the append lock: an append that failed inside sled while this one
        // waited poisoned the store before letting go of the lock, and the seqs it gave
        // back must not be written over a batch sled may have half applied.
        self.shared.check_not_poisoned()?;
        let mut batch = sled::Batch::default();
        let staged = self.stage(&mut self.lock(), planned, &mut batch, now_ms())?;
        let written = self.shared.write_append("an append", || {
            self.tree
                .apply_batch(batch)
                .map_err(|e| self.shared.db_err(e))
        });
        if let Err(e) = written {
            self.unstage(&mut self.lock(), &staged);
            return Err(e);
        }
        let ticket = self.shared.committer.ticket();
        let range = staged.range.clone();
        self.commit_staged(&mut self.lock(), staged, ticket);
        drop(appends);
        self.commit(ticket, Level::Sync)?;
        self.shared.note_tips(&[(self.nonce, range.end)]);
        let mut st = self.lock();
        self.publish(&mut st);
        Ok(range)
    }

    fn lease(&self, max_records: usize, max_bytes: usize) -> Result<Option<Lease>, QueueError> {
        let mut st = self.lock();
        self.check_live()?;
        self.publish(&mut st);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let res = self.take(&mut st, max_records.max(1), max_bytes, &mut out, &mut bytes);
        if out.is_empty() {
            res?;
            return Ok(None);
        }
        // On a damaged chunk, hand out what came before it; the next lease reports it.
        let id = register_lease(&mut st, &out);
        Ok(Some(Lease { id, records: out }))
    }

    fn split_lease(&self, lease: Lease, at: usize) -> (Lease, Lease) {
        self.split_lease_at(lease, at)
    }

    fn split_lease_by(&self, lease: Lease, picked: &[bool]) -> (Lease, Lease) {
        self.split_lease_picked(lease, picked)
    }

    fn ack(&self, lease: Lease) -> Result<(), QueueError> {
        self.ack_lease(lease, &mut || {})
    }

    fn ack_notifying(&self, lease: Lease, durable: &mut dyn FnMut()) -> Result<(), QueueError> {
        self.ack_lease(lease, durable)
    }

    fn ack_without_waiting(self: Arc<Self>, lease: Lease) -> Result<AckProgress, QueueError> {
        let rest = self.ack_until_disk_wait(lease, &mut || {})?;
        if rest == AckRest::Nothing {
            return Ok(AckProgress::Durable);
        }
        Ok(AckProgress::Pending {
            rest: Box::new(move |durable| {
                if rest == AckRest::RotateJournal {
                    // Journaled: durable before the switch.
                    durable();
                }
                self.finish_ack(rest, durable)
            }),
            counted: false,
        })
    }

    fn release(&self, lease: Lease) {
        let mut st = self.lock();
        if let Some(info) = st.leases.remove(&lease.id) {
            for r in info.ranges {
                st.avail.insert(r);
            }
        }
    }

    fn stats(&self) -> QueueStats {
        let mut st = self.lock();
        self.publish(&mut st);
        let oldest_age = st
            .chunks
            .values()
            .next()
            .map(|m| Duration::from_millis(now_ms().saturating_sub(m.append_ms)));
        QueueStats {
            len: st.len,
            bytes: st.bytes,
            oldest_age,
        }
    }
}

impl std::fmt::Debug for SledQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledQueue")
            .field("name", &self.name)
            .finish()
    }
}
