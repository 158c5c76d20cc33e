//! Acking a lease: the ack journal first (one `write()`, survives kill -9), then the new
//! ack state and the removal of chunks that became fully acked, as plain sled writes
//! (see the crate docs, "Leases and acks").

use super::codec::{self, AckState};
use super::commit::Level;
use super::journal::Recorded;
use super::sled_queue::{normalize_low, SledQueue};
use crate::error::QueueError;
use crate::queue::{Lease, Seq};

impl SledQueue {
    /// [`crate::Queue::ack_notifying`]: see the crate docs for what it promises. `durable`
    /// runs as soon as the journal holds the ack (or, without a journal, once sled flushed).
    pub(super) fn ack_lease(
        &self,
        lease: Lease,
        durable: &mut dyn FnMut(),
    ) -> Result<(), QueueError> {
        let mut st = self.lock();
        self.check_live(&st)?;
        let info = match st.leases.remove(&lease.id) {
            Some(info) => info,
            // The empty part of a split: never registered, nothing to ack. (A lease whose
            // records were dropped and that is no longer known, acked twice say, lands
            // here too: it cannot be told from an empty part.)
            None if lease.records.is_empty() => {
                durable();
                return Ok(());
            }
            None => {
                return Err(QueueError::UnknownLease {
                    queue: self.name.clone(),
                    id: lease.id,
                })
            }
        };
        if info.count == 0 {
            durable();
            return Ok(());
        }
        st.len = st.len.saturating_sub(info.count);
        st.bytes = st.bytes.saturating_sub(info.bytes);
        for r in &info.ranges {
            st.acked_above.insert(r.clone());
        }
        let mut dead: Vec<Seq> = Vec::new();
        for r in &info.ranges {
            let lead = st.chunks.range(..r.start).next_back().map(|(&f, _)| f);
            let firsts: Vec<Seq> = lead
                .into_iter()
                .chain(st.chunks.range(r.start..r.end).map(|(&f, _)| f))
                .collect();
            for f in firsts {
                let Some(m) = st.chunks.get(&f).copied() else {
                    continue;
                };
                let span = f..m.end(f);
                // Acked = below `acked_low` or inside one acked range above it.
                let rest = span.start.max(st.acked_low)..span.end;
                if rest.is_empty() || st.acked_above.contains_range(&rest) {
                    st.chunks.remove(&f);
                    dead.push(f);
                    if st.cache.as_ref().is_some_and(|c| c.first == f) {
                        st.cache = None;
                    }
                }
            }
        }
        normalize_low(&mut st);
        let state = AckState {
            low: st.acked_low,
            next: st.written_next(),
            above: st.acked_above.iter().collect(),
        };
        let state = codec::encode_ack(&state);
        // Plain writes, not a sled batch: sled writes out (pwrite + sync_file_range) its
        // log buffer around every batch, which about doubled the time of an ack.
        // The order makes every prefix of them (all sled can recover) safe: the ack state
        // first, so a chunk is never gone while the persisted state says it is unacked (its
        // seqs could be reused); then each dead chunk's payload, then its metadata (a
        // payload without metadata would never be cleaned up; metadata without payload,
        // fully acked, is removed at load).
        let apply = || {
            self.shared.sled_call("an ack", || {
                self.tree.insert(codec::ACK_KEY, state)?;
                for &f in &dead {
                    self.tree.remove(codec::chunk_key(f))?;
                    self.tree.remove(codec::meta_key(f))?;
                }
                Ok(())
            })
        };
        // Journal first (one write(), in the page cache: survives kill -9), then apply to
        // sled without waiting for its flush; reopen replays the journal. If the sled write
        // fails the records stay acked in memory and the journal acks them after a restart.
        let (recorded, applied) =
            self.shared
                .journal
                .record(self.nonce, &info.ranges, &mut *durable, apply);
        drop(st);
        applied?;
        match recorded {
            Recorded::Journaled { rotate } => {
                if rotate {
                    self.shared.rotate_journal();
                }
                Ok(())
            }
            // No journal (a write to it failed): wait for sled's flush instead.
            Recorded::NotJournaled => {
                let ticket = self.shared.committer.ticket();
                self.commit(ticket, Level::Flush)?;
                durable();
                Ok(())
            }
        }
    }
}
