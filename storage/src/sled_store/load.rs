//! Reopen: rebuilds a queue's in-memory index from its metadata keys and ack state.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::codec::{self, AckState};
use super::commit::Level;
use super::ranges::RangeSet;
use super::sled_queue::{normalize_low, QState, SledQueue};
use super::{sync_path, Shared};
use crate::error::QueueError;
use crate::queue::Seq;

impl SledQueue {
    /// Loads the queue's index from its metadata keys (chunk payloads are read only for
    /// the few chunks that are partly acked).
    pub(crate) fn load(
        name: &str,
        tree: sled::Tree,
        shared: Arc<Shared>,
        cap: Option<u64>,
    ) -> Result<SledQueue, QueueError> {
        let nonce = match tree.get(codec::NONCE_KEY).map_err(|e| shared.db_err(e))? {
            Some(v) => codec::decode_nonce(&v).map_err(|d| shared.corrupt(name, &d))?,
            None => {
                // A new queue (or one from before the ack journal). Flushed before any ack
                // can journal it, so reopen finds the same nonce.
                let n = new_nonce();
                tree.insert(codec::NONCE_KEY, &codec::encode_nonce(n)[..])
                    .map_err(|e| shared.db_err(e))?;
                let t = shared.committer.ticket();
                shared.commit(t, Level::Flush)?;
                n
            }
        };
        let ack = match tree.get(codec::ACK_KEY).map_err(|e| shared.db_err(e))? {
            Some(v) => codec::decode_ack(&v).map_err(|d| shared.corrupt(name, &d))?,
            None => AckState::default(),
        };
        let mut acked_above = RangeSet::new();
        for r in &ack.above {
            acked_above.insert(r.clone());
        }
        let mut st = QState::new(cap);
        st.next_seq = ack.next.max(ack.low);
        st.acked_low = ack.low;
        st.acked_above = acked_above;
        let q = SledQueue {
            name: name.to_string(),
            nonce,
            tree,
            shared,
            state: Mutex::new(QState::new(cap)),
            chunk_reads: AtomicU64::new(0),
            ack_applied: AtomicU64::new(0),
            dropped: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            ack_pause: Mutex::new(None),
            appending: Mutex::new(()),
        };
        let mut stale = sled::Batch::default();
        let mut any_stale = false;
        // Seqs are contiguous and a chunk is deleted only once all of it is acked, so every
        // seq from the acked low-water mark on is in a chunk or acked: anything else is a
        // chunk sled lost.
        let mut covered = st.acked_low;
        let missing = |from: Seq, to: Seq, st: &QState| -> Option<QueueError> {
            let gap = from..to;
            (!gap.is_empty() && !st.acked_above.contains_range(&gap)).then(|| {
                q.shared.corrupt(
                    name,
                    &format!(
                        "records {}..{} are neither stored nor acked: sled lost them (a \
                         truncated or damaged data file). Stop here and run `raxe repair`",
                        gap.start, gap.end
                    ),
                )
            })
        };
        for item in q.tree.scan_prefix([codec::META_PREFIX]) {
            let (k, v) = item.map_err(|e| q.shared.db_err(e))?;
            let first = codec::key_seq(&k)
                .ok_or_else(|| q.shared.corrupt(name, "malformed chunk metadata key"))?;
            let meta = codec::decode_meta(first, &v).map_err(|d| q.damaged(first, d))?;
            let end = meta.end(first);
            if let Some(e) = missing(covered, first, &st) {
                return Err(e);
            }
            covered = covered.max(end);
            st.next_seq = st.next_seq.max(end);
            let mut unacked = RangeSet::new();
            unacked.insert(first.max(st.acked_low)..end);
            // Only the acked ranges inside this chunk: not every range for every chunk.
            for r in st.acked_above.overlapping(&(first..end)) {
                unacked.remove(r);
            }
            if unacked.is_empty() {
                // Fully acked but still present (defensive: acks delete atomically).
                stale.remove(&codec::meta_key(first));
                stale.remove(&codec::chunk_key(first));
                any_stale = true;
                continue;
            }
            let count = unacked.count_in(&(first..end));
            let bytes = if count == meta.count as u64 {
                meta.bytes
            } else {
                let chunk = q.read_chunk(first, &meta)?;
                let mut b = 0u64;
                for r in unacked.iter() {
                    for s in r {
                        b += chunk.len_of(s).map_or(0, |n| n as u64);
                    }
                }
                b
            };
            for r in unacked.iter() {
                st.avail.insert(r);
            }
            st.len += count;
            st.bytes = st.bytes.saturating_add(bytes);
            st.chunks.insert(first, meta);
        }
        if any_stale {
            q.tree.apply_batch(stale).map_err(|e| q.shared.db_err(e))?;
        }
        if let Some(e) = missing(covered, st.next_seq, &st) {
            return Err(e);
        }
        normalize_low(&mut st);
        if let Some(expected) = q.shared.tips.expected(nonce) {
            if st.next_seq < expected {
                return Err(q.shared.corrupt(
                    name,
                    &format!(
                        "the data file holds records up to seq {} but seq {} was appended and \
                         synced before: sled lost the end of its log (a truncated or damaged \
                         file). Stop here and run `raxe repair`",
                        st.next_seq,
                        expected - 1
                    ),
                ));
            }
        }
        q.move_out_unwritten_payloads(name, covered)?;
        *q.lock() = st;
        Ok(q)
    }
}

impl SledQueue {
    /// Moves chunk payloads that have no metadata and lie past both `covered` (the end of
    /// the last chunk) and the queue's durable tip out of sled, into a file beside it
    /// (`orphan-<queue nonce>-<seq>.chunk`, synced before the key goes). A group write that
    /// sled applied in part before failing leaves them: the append failed and was never
    /// synced, so they should hold no accepted record, but a store damaged in an unlucky
    /// way could also look like this, so the bytes are kept and the log says where. Without
    /// a tip from the last run nothing is touched (`raxe repair` may want it).
    fn move_out_unwritten_payloads(&self, name: &str, covered: Seq) -> Result<(), QueueError> {
        let Some(tip) = self.shared.tips.expected(self.nonce) else {
            return Ok(());
        };
        let from = covered.max(tip);
        let mut unwritten = sled::Batch::default();
        let mut moved = 0usize;
        for item in self
            .tree
            .range(codec::chunk_key(from)..=codec::chunk_key(Seq::MAX))
        {
            let (key, value) = item.map_err(|e| self.shared.db_err(e))?;
            let seq = codec::key_seq(&key).unwrap_or(Seq::MAX);
            let path = self
                .shared
                .dir
                .join(format!("orphan-{:016x}-{seq}.chunk", self.nonce));
            std::fs::write(&path, &value).map_err(|source| QueueError::Io {
                path: path.clone(),
                source,
            })?;
            sync_path(&*self.shared.syncer, &path)?;
            tracing::warn!(queue = name, seq, file = %path.display(), "a chunk payload without metadata (left by a failed append) was moved out of the queue into a file");
            unwritten.remove(key);
            moved += 1;
        }
        if moved > 0 {
            sync_path(&*self.shared.syncer, &self.shared.dir)?;
            self.tree
                .apply_batch(unwritten)
                .map_err(|e| self.shared.db_err(e))?;
        }
        Ok(())
    }
}

/// A queue's incarnation nonce: random (std's per-process random hasher keys), mixed with
/// the time, pid and a counter. Distinguishes a queue from a dropped one of the same name.
fn new_nonce() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(now);
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}
