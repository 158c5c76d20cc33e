//! Acking a lease: the ack journal first (one `write()`, survives kill -9), then the new
//! ack state and the removal of chunks that became fully acked, as plain sled writes
//! (see the crate docs, "Leases and acks").

use super::codec::{self, AckState};
use super::commit::Level;
use super::journal::Recorded;
use super::sled_queue::{normalize_low, SledQueue};
use std::sync::atomic::Ordering;

use crate::error::QueueError;
use crate::queue::{Lease, Seq};

impl SledQueue {
    /// Writes an ack's state (unless one computed later is written already) and removes
    /// the chunks it made fully acked, as plain sled writes. Must be called under the
    /// journal's lock: it orders these writes (the version check is a plain load and
    /// store), and a drop passes through it after it stopped them (`dropped`), so
    /// nothing is written to a dropped queue's tree.
    ///
    /// Plain writes, not a sled batch: sled writes out (pwrite + sync_file_range) its log
    /// buffer around every batch, which about doubled the time of an ack. The order makes
    /// every prefix of them (all sled can recover) safe: the ack state first, so a chunk is
    /// never gone while the persisted state says it is unacked (its seqs could be reused);
    /// then each dead chunk's payload, then its metadata (a payload without metadata would
    /// never be cleaned up; metadata without payload, fully acked, is removed at load). A
    /// state skipped for a later one is covered by it: that one was computed after this
    /// ack's ranges were in memory.
    pub(super) fn write_ack(
        &self,
        version: u64,
        state: &[u8],
        dead: &[Seq],
    ) -> Result<(), QueueError> {
        if self.dropped.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.shared.sled_call("an ack", || {
            if version > self.ack_applied.load(Ordering::Relaxed) {
                self.tree.insert(codec::ACK_KEY, state)?;
                self.ack_applied.store(version, Ordering::Relaxed);
            }
            for &f in dead {
                self.tree.remove(codec::chunk_key(f))?;
                self.tree.remove(codec::meta_key(f))?;
            }
            Ok(())
        })
    }

    /// [`crate::Queue::ack_notifying`]: see the crate docs for what it promises. `durable`
    /// runs as soon as the journal holds the ack (or, without a journal, once sled flushed).
    pub(super) fn ack_lease(
        &self,
        lease: Lease,
        durable: &mut dyn FnMut(),
    ) -> Result<(), QueueError> {
        let rest = self.ack_until_disk_wait(lease, durable)?;
        self.finish_ack(rest, durable)
    }

    /// The part of an ack that waits for no flush: everything but its [`AckRest`].
    /// `durable` runs here if the ack is durable without a flush (journaled, or nothing
    /// to ack).
    pub(super) fn ack_until_disk_wait(
        &self,
        lease: Lease,
        durable: &mut dyn FnMut(),
    ) -> Result<AckRest, QueueError> {
        let mut st = self.lock();
        self.check_live()?;
        let info = match st.leases.remove(&lease.id) {
            Some(info) => info,
            // The empty part of a split: never registered, nothing to ack. (A lease whose
            // records were dropped and that is no longer known, acked twice say, lands
            // here too: it cannot be told from an empty part.)
            None if lease.records.is_empty() => {
                durable();
                return Ok(AckRest::Nothing);
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
            return Ok(AckRest::Nothing);
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
        st.ack_version += 1;
        let version = st.ack_version;
        // Journal first (one write(), in the page cache: survives kill -9), then the sled
        // writes, without waiting for sled's flush; reopen replays the journal. If the sled
        // write fails the records stay acked in memory and the journal acks them after a
        // restart. The state lock is let go first: the sled writes can wait behind an
        // append's, and leases, stats and appends need that lock meanwhile. The journal's
        // lock orders the sled writes of all acks; `version` keeps a state computed earlier
        // from overwriting one computed later.
        drop(st);
        #[cfg(test)]
        {
            let pause = self.ack_pause.lock().unwrap().take();
            if let Some(pause) = pause {
                pause();
            }
        }
        let (recorded, applied) =
            self.shared
                .journal
                .record(self.nonce, &info.ranges, &mut *durable, || {
                    self.write_ack(version, &state, &dead)
                });
        applied?;
        Ok(match recorded {
            Recorded::Journaled { rotate: false } => AckRest::Nothing,
            Recorded::Journaled { rotate: true } => AckRest::RotateJournal,
            Recorded::NotJournaled => AckRest::Flush,
        })
    }

    /// Does an ack's [`AckRest`]; calls `durable` after a [`AckRest::Flush`].
    pub(super) fn finish_ack(
        &self,
        rest: AckRest,
        durable: &mut dyn FnMut(),
    ) -> Result<(), QueueError> {
        match rest {
            AckRest::Nothing => {}
            AckRest::RotateJournal => self.shared.rotate_journal(),
            AckRest::Flush => {
                let ticket = self.shared.committer.ticket();
                self.commit(ticket, Level::Flush)?;
                durable();
            }
        }
        Ok(())
    }
}

/// What is left of an ack once the journal has it (or failed to take it): the steps that
/// wait for sled's flush.
#[derive(PartialEq, Eq)]
pub(super) enum AckRest {
    Nothing,
    /// The journal passed its size: switch files, which waits for a flush. The ack itself
    /// is durable already.
    RotateJournal,
    /// No journal (a write to it failed): the ack survives a crash once sled flushed.
    Flush,
}

#[cfg(test)]
mod tests {
    use super::super::codec;
    use super::super::{SledStore, StoreOptions};
    use crate::queue::{AckProgress, Queue};

    fn ack_state(low: u64, next: u64) -> Vec<u8> {
        codec::encode_ack(&codec::AckState {
            low,
            next,
            above: Vec::new(),
        })
    }

    /// Two acks can reach the journal's lock in either order: the state computed later
    /// stays, whichever is written last.
    #[test]
    fn an_older_ack_state_never_overwrites_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let q = store.queue("q").unwrap();
        let (older, newer) = (ack_state(30, 100), ack_state(60, 100));
        q.write_ack(2, &newer, &[]).unwrap();
        q.write_ack(1, &older, &[]).unwrap();
        assert_eq!(
            &q.tree.get(codec::ACK_KEY).unwrap().unwrap()[..],
            &newer[..]
        );
        // In order, the later one replaces it.
        q.write_ack(3, &older, &[]).unwrap();
        assert_eq!(
            &q.tree.get(codec::ACK_KEY).unwrap().unwrap()[..],
            &older[..]
        );
    }

    /// A crash copy of a store's directory, taken while it is open.
    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let dst = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &dst);
            } else if let Err(err) = std::fs::copy(e.path(), &dst) {
                assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
            }
        }
    }

    /// No background flush: only an ack's own wait makes it reach sled's file.
    fn options() -> StoreOptions {
        StoreOptions {
            flush_every_ms: None,
            ..StoreOptions::default()
        }
    }

    /// Seqs a store reopened from `dir` leases (everything not acked).
    fn unacked_after_reopen(dir: &std::path::Path) -> Vec<u64> {
        let store = SledStore::open_with(dir, options()).unwrap();
        let q = store.queue("q").unwrap();
        let lease = q.lease(1000, usize::MAX).unwrap().unwrap();
        lease.records.iter().map(|r| r.seq).collect()
    }

    fn records(seqs: std::ops::Range<u8>) -> Vec<Vec<u8>> {
        seqs.map(|i| vec![i; 40]).collect()
    }

    fn refs(records: &[Vec<u8>]) -> Vec<&[u8]> {
        records.iter().map(|r| r.as_slice()).collect()
    }

    /// Makes the queue's next ack stop between its two locks; returns (paused, go).
    fn pause_next_ack(
        q: &super::SledQueue,
    ) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (paused_tx, paused) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        *q.ack_pause.lock().unwrap() = Some(Box::new(move || {
            paused_tx.send(()).unwrap();
            go_rx.recv().unwrap();
        }));
        (paused, go)
    }

    /// An ack overtaken between its two locks (another ack computed and wrote a later
    /// state meanwhile) must not write its older state over the later one: that would
    /// persist a `next` below seqs in use.
    #[test]
    fn an_ack_overtaken_between_its_locks_keeps_the_later_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let q = store.queue("q").unwrap();
        q.append(&refs(&records(0..10))).unwrap();
        let first = q.lease(10, usize::MAX).unwrap().unwrap();
        let (paused, go) = pause_next_ack(&q);
        let slow = {
            let q = q.clone();
            std::thread::spawn(move || q.ack(first))
        };
        paused.recv().unwrap();
        q.append(&refs(&records(10..20))).unwrap();
        let second = q.lease(10, usize::MAX).unwrap().unwrap();
        assert_eq!(second.records[0].seq, 10);
        q.ack(second).unwrap();
        go.send(()).unwrap();
        slow.join().unwrap().unwrap();
        let state = codec::decode_ack(&q.tree.get(codec::ACK_KEY).unwrap().unwrap()).unwrap();
        assert_eq!((state.low, state.next), (20, 20));
    }

    /// A queue dropped (and opened again under its name) while an ack of it waits between
    /// its locks gets none of that ack's writes: the new queue's records stay.
    #[test]
    fn a_queue_dropped_under_a_waiting_ack_gets_none_of_its_writes() {
        use crate::queue::QueueStore;
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let q = store.queue("q").unwrap();
        q.append(&refs(&records(0..10))).unwrap();
        let lease = q.lease(10, usize::MAX).unwrap().unwrap();
        let (paused, go) = pause_next_ack(&q);
        let slow = {
            let q = q.clone();
            std::thread::spawn(move || q.ack(lease))
        };
        paused.recv().unwrap();
        store.drop_queue("q").unwrap();
        let fresh = store.queue("q").unwrap();
        fresh.append(&refs(&records(0..5))).unwrap();
        go.send(()).unwrap();
        slow.join().unwrap().unwrap();
        assert_eq!(fresh.tree.get(codec::ACK_KEY).unwrap(), None);
        let lease = fresh.lease(100, usize::MAX).unwrap().unwrap();
        let got: Vec<(u64, Vec<u8>)> = lease
            .records
            .iter()
            .map(|r| (r.seq, r.data.to_vec()))
            .collect();
        let want: Vec<(u64, Vec<u8>)> = (0..5u8).map(|i| (i as u64, vec![i; 40])).collect();
        assert_eq!(got, want);
    }

    /// An ack that took its state before its queue was dropped writes nothing once the
    /// drop has stopped acks: the queue's tree may be gone.
    #[test]
    fn a_stopped_queue_gets_no_ack_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let q = store.queue("q").unwrap();
        q.dropped.store(true, std::sync::atomic::Ordering::SeqCst);
        q.write_ack(1, &ack_state(5, 5), &[0]).unwrap();
        assert_eq!(q.tree.get(codec::ACK_KEY).unwrap(), None);
    }

    /// Without a journal (a write to it failed) an ack is durable only once sled flushed it,
    /// and says so only then: a crash copy taken inside the signal has the records acked.
    #[test]
    fn an_ack_without_its_journal_says_it_is_durable_only_after_sleds_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open_with(dir.path(), options()).unwrap();
        let q = store.queue("q").unwrap();
        q.append(&refs(&records(0..100))).unwrap();
        let lease = q.lease(30, usize::MAX).unwrap().unwrap();
        store.shared.journal.fail_writes();
        let snap = tempfile::tempdir().unwrap();
        let mut signals = 0;
        q.ack_notifying(lease, &mut || {
            signals += 1;
            copy_dir(dir.path(), snap.path());
        })
        .unwrap();
        assert_eq!(signals, 1);
        // The journal really took nothing: the copy's acks come from sled's flush alone.
        assert_eq!(store.shared.journal.position().1, 0);
        drop((q, store));
        assert_eq!(
            unacked_after_reopen(snap.path()),
            (30..100).collect::<Vec<u64>>()
        );
    }

    /// With its journal, an ack without waiting is whole and durable on return: a crash
    /// copy taken right then has the records acked, though sled never flushed.
    #[test]
    fn an_ack_without_waiting_is_durable_on_return() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open_with(dir.path(), options()).unwrap();
        let q = store.queue("q").unwrap();
        q.append(&refs(&records(0..100))).unwrap();
        let lease = q.lease(30, usize::MAX).unwrap().unwrap();
        let progress = q.clone().ack_without_waiting(lease).unwrap();
        assert!(matches!(progress, AckProgress::Durable), "{progress:?}");
        let snap = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), snap.path());
        assert_eq!(q.lease(1, usize::MAX).unwrap().unwrap().records[0].seq, 30);
        drop((q, store));
        assert_eq!(
            unacked_after_reopen(snap.path()),
            (30..100).collect::<Vec<u64>>()
        );
    }

    /// Without a journal the flush is left to the caller: the ack says it is durable only
    /// when that rest has run, and then it is.
    #[test]
    fn an_ack_without_waiting_leaves_the_flush_of_a_broken_journal_to_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open_with(dir.path(), options()).unwrap();
        let q = store.queue("q").unwrap();
        q.append(&refs(&records(0..100))).unwrap();
        let lease = q.lease(30, usize::MAX).unwrap().unwrap();
        store.shared.journal.fail_writes();
        let AckProgress::Pending { rest, counted } = q.clone().ack_without_waiting(lease).unwrap()
        else {
            panic!("an ack without its journal needs a flush");
        };
        // Acked in memory already: neither counted nor leased again.
        assert!(!counted);
        assert_eq!(q.stats().len, 70);
        assert_eq!(q.lease(1, usize::MAX).unwrap().unwrap().records[0].seq, 30);
        let snap = tempfile::tempdir().unwrap();
        let mut signals = 0;
        rest(&mut || {
            signals += 1;
            copy_dir(dir.path(), snap.path());
        })
        .unwrap();
        assert_eq!(signals, 1);
        drop((q, store));
        assert_eq!(
            unacked_after_reopen(snap.path()),
            (30..100).collect::<Vec<u64>>()
        );
    }

    /// An ack that fills the journal leaves the switch to a new file (which waits for a
    /// flush) to the caller; it is durable before that.
    #[test]
    fn an_ack_without_waiting_leaves_the_journal_rotation_to_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            ack_journal_bytes: 1,
            ..options()
        };
        let store = SledStore::open_with(dir.path(), options).unwrap();
        let q = store.queue("q").unwrap();
        q.append(&refs(&records(0..100))).unwrap();
        let lease = q.lease(30, usize::MAX).unwrap().unwrap();
        let AckProgress::Pending { rest, counted } = q.clone().ack_without_waiting(lease).unwrap()
        else {
            panic!("a full journal needs a rotation");
        };
        assert!(!counted);
        assert_eq!(q.stats().len, 70);
        let (gen, len) = store.shared.journal.position();
        assert_eq!(gen, 0);
        assert!(len > 0, "journaled before the rotation");
        let mut signals = 0;
        rest(&mut || signals += 1).unwrap();
        assert_eq!(signals, 1);
        assert_eq!(store.shared.journal.position(), (1, 0));
        assert!(!super::super::journal::journal_path(dir.path(), 0).exists());
    }
}
