//! Atomic multi-queue append with an optional marker, in one sled transaction and one
//! group commit.

use std::ops::Range;
use std::sync::{Arc, MutexGuard};

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::commit::Level;
use super::sled_queue::{now_ms, SledQueue, Staged};
use super::SledStore;
use crate::error::QueueError;
use crate::queue::{Queue, Seq};

impl SledStore {
    /// Appends to several queues and optionally sets a marker key, all or nothing, and
    /// returns once all of it is durable (one fdatasync). Returns one seq range per part.
    /// A queue may appear in several parts; its parts get consecutive ranges.
    ///
    /// A crash before return leaves either every record and the marker, or none of it.
    /// Any queue past its cap fails the whole call with `QueueError::Full`.
    pub fn append_group(
        &self,
        parts: &[(&str, &[&[u8]])],
        marker: Option<(&[u8], &[u8])>,
    ) -> Result<Vec<Range<Seq>>, QueueError> {
        self.append_group_with_markers(parts, marker.as_slice())
    }

    /// See [`QueueStore::append_group_with_markers`](crate::QueueStore).
    pub fn append_group_with_markers(
        &self,
        parts: &[(&str, &[&[u8]])],
        markers: &[(&[u8], &[u8])],
    ) -> Result<Vec<Range<Seq>>, QueueError> {
        let mut queues: Vec<Arc<SledQueue>> = Vec::new();
        let mut part_queue = Vec::with_capacity(parts.len());
        for (name, _) in parts {
            let i = match queues.iter().position(|q| q.name() == *name) {
                Some(i) => i,
                None => {
                    queues.push(self.queue(name)?);
                    queues.len() - 1
                }
            };
            part_queue.push(i);
        }
        self.shared.check_not_poisoned()?;
        // Encoding needs no lock; then appends lock in name order so concurrent groups
        // cannot deadlock. The state locks are held only to stage and to commit (or undo):
        // leases and acks go on during the sled write.
        let mut planned = Vec::with_capacity(parts.len());
        for (p, (_, records)) in parts.iter().enumerate() {
            planned.push(queues[part_queue[p]].plan(records)?);
        }
        let mut order: Vec<usize> = (0..queues.len()).collect();
        order.sort_by(|&a, &b| queues[a].name().cmp(queues[b].name()));
        let appends: Vec<MutexGuard<'_, ()>> =
            order.iter().map(|&i| queues[i].lock_appends()).collect();
        // Again under the append locks (see `SledQueue::append`).
        self.shared.check_not_poisoned()?;
        let now = now_ms();
        let mut batches: Vec<sled::Batch> =
            (0..queues.len()).map(|_| sled::Batch::default()).collect();
        let mut staged: Vec<(usize, Staged)> = Vec::with_capacity(parts.len());
        let mut failure = None;
        for (p, planned) in planned.into_iter().enumerate() {
            let qi = part_queue[p];
            // The state lock is held for this statement only.
            let result =
                queues[qi].stage(&mut queues[qi].lock_state(), planned, &mut batches[qi], now);
            match result {
                Ok(s) => staged.push((qi, s)),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() {
            // A sled panic here must not unwind past the staging: it is undone below.
            let written = self.shared.write_append("a group append", || {
                self.write_group(&queues, batches, markers)
            });
            if let Err(e) = written {
                failure = Some(e);
            }
        }
        if let Some(e) = failure {
            // Newest first: a queue named by two parts rolls back to its first part's start.
            for (qi, s) in staged.iter().rev() {
                queues[*qi].unstage(&mut queues[*qi].lock_state(), s);
            }
            return Err(e);
        }
        let ticket = self.shared.committer.ticket();
        let ranges: Vec<Range<Seq>> = staged.iter().map(|(_, s)| s.range.clone()).collect();
        let tips: Vec<(u64, Seq)> = staged
            .iter()
            .map(|(qi, s)| (queues[*qi].nonce, s.range.end))
            .collect();
        for (qi, s) in staged {
            queues[qi].commit_staged(&mut queues[qi].lock_state(), s, ticket);
        }
        drop(appends);
        self.shared.commit(ticket, Level::Sync)?;
        self.shared.note_tips(&tips);
        for q in &queues {
            let mut st = q.lock_state();
            q.publish(&mut st);
        }
        Ok(ranges)
    }

    fn write_group(
        &self,
        queues: &[Arc<SledQueue>],
        mut batches: Vec<sled::Batch>,
        markers: &[(&[u8], &[u8])],
    ) -> Result<(), QueueError> {
        if queues.len() == 1 && markers.is_empty() {
            if let Some(b) = batches.pop() {
                return queues[0]
                    .tree
                    .apply_batch(b)
                    .map_err(|e| self.shared.db_err(e));
            }
        }
        let mut trees: Vec<&sled::Tree> = queues.iter().map(|q| &q.tree).collect();
        trees.push(self.shared.markers());
        let n = queues.len();
        let res: Result<(), TransactionError<()>> = trees[..].transaction(|tx| {
            for (i, b) in batches.iter().enumerate() {
                tx[i].apply_batch(b)?;
            }
            for &(k, v) in markers {
                tx[n].insert(k, v)?;
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        match res {
            Ok(()) => Ok(()),
            Err(TransactionError::Storage(e)) => Err(self.shared.db_err(e)),
            Err(TransactionError::Abort(())) => Err(QueueError::Db {
                path: self.dir().to_path_buf(),
                detail: "group append transaction aborted".into(),
            }),
        }
    }
}
