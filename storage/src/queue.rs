//! The queue contract the engine programs against. `SledStore` implements it; tests and
//! future backends (a distributed one) implement it too.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::QueueError;

/// Sequence number of one record in one queue. Strictly increasing, never reused, across
/// restarts too.
pub type Seq = u64;

/// One queued record: opaque bytes (the engine stores one event per record). `data`
/// shares the memory of the chunk it was read from: leasing copies nothing, and while a
/// record is held its whole chunk stays in memory (copy the bytes to keep one for long).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: Seq,
    pub data: Bytes,
}

/// Records handed to one consumer until it acks or releases them. A lease lives in memory
/// only: after a restart everything not acked is leased again.
#[derive(Debug)]
#[must_use = "a lease must be acked or released"]
pub struct Lease {
    /// Identifies the lease within its queue (unique per process).
    pub id: u64,
    /// In the queue's delivery order, oldest first; consecutive unless the lease is a part
    /// made by [`Queue::split_lease_by`].
    pub records: Vec<Record>,
}

impl Lease {
    pub fn len(&self) -> usize {
        self.records.len()
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    /// Total payload bytes.
    pub fn bytes(&self) -> usize {
        self.records.iter().map(|r| r.data.len()).sum()
    }
    /// The same lease without its records (and the memory they hold), for a caller that
    /// holds many leases only to ack or release them later: a queue knows a lease by its id.
    pub fn without_records(self) -> Lease {
        Lease {
            id: self.id,
            records: Vec::new(),
        }
    }
}

/// Live figures for one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Records appended and not yet acked (leased ones included).
    pub len: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Age of the oldest record not yet acked, by its append time.
    pub oldest_age: Option<Duration>,
}

/// How far [`Queue::ack_without_waiting`] got.
#[must_use = "a pending ack must be finished: until then it may not survive a crash"]
pub enum AckProgress {
    /// The ack is done and survives a process crash.
    Durable,
    /// What is left of the ack waits for the disk: run `rest` where blocking is fine. It
    /// does what [`Queue::ack_notifying`] does with the rest: calls `durable` once the ack
    /// survives a crash (at most once, never after an error) and returns the ack's result.
    Pending {
        rest: PendingAck,
        /// The lease's records still count in [`Queue::stats`] until `rest` ran (nothing
        /// of the ack was done yet, as in the default implementation).
        counted: bool,
    },
}

/// The rest of an ack (see [`AckProgress::Pending`]).
pub type PendingAck = Box<dyn FnOnce(&mut dyn FnMut()) -> Result<(), QueueError> + Send>;

impl std::fmt::Debug for AckProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AckProgress::Durable => "Durable",
            AckProgress::Pending { counted: true, .. } => "Pending (counted)",
            AckProgress::Pending { counted: false, .. } => "Pending",
        })
    }
}

/// A durable FIFO of byte records with leases and acks.
pub trait Queue: Send + Sync + 'static {
    /// The stable name the queue was opened with.
    fn name(&self) -> &str;

    /// Appends records; returns their sequence numbers only once they are durable on disk
    /// (fsynced). Fails with `QueueError::Full` past the byte cap, appending nothing.
    fn append(&self, records: &[&[u8]]) -> Result<Range<Seq>, QueueError>;

    /// Leases the oldest records that are neither acked nor leased: at most `max_records`
    /// and at most `max_bytes` (but always at least one record when any is available).
    /// `Ok(None)` when nothing is available.
    fn lease(&self, max_records: usize, max_bytes: usize) -> Result<Option<Lease>, QueueError>;

    /// Splits a lease after its first `at` records, so the parts can be acked or released
    /// separately. An empty part holds nothing: acking, releasing or dropping it is the same.
    fn split_lease(&self, lease: Lease, at: usize) -> (Lease, Lease);

    /// Splits a lease into the records `picked` marks (`picked[i]` for the lease's `i`th
    /// record; missing entries are false) and the others, each part in lease order. A
    /// part released goes back to its place in the queue, not behind the other part.
    fn split_lease_by(&self, lease: Lease, picked: &[bool]) -> (Lease, Lease);

    /// Removes the lease's records for good (all it held, even if its records were
    /// dropped: see [`Lease::without_records`]).
    fn ack(&self, lease: Lease) -> Result<(), QueueError>;

    /// [`Queue::ack`], calling `durable` once the ack survives a process crash, which can
    /// be before the rest of the call's work (the sled store: once the ack is in its ack
    /// journal, before its sled writes). Called at most once, never if the ack failed
    /// before it was durable. After an error the records may still count as acked in
    /// memory (not leased again by this process) and may come back after a restart.
    /// `durable` can run with store locks held (the sled store: the journal's lock, which
    /// every queue's acks share, or the queue's own lock when there is nothing to ack):
    /// keep it short, and do not call back into the store.
    fn ack_notifying(&self, lease: Lease, durable: &mut dyn FnMut()) -> Result<(), QueueError> {
        self.ack(lease)?;
        durable();
        Ok(())
    }

    /// Acks `lease` as far as that needs no wait for the disk, for a caller that must not
    /// block long (an async task): locks held by other calls for a short while (the sled
    /// store: its queue and journal locks, sled's own while another call writes) are
    /// waited for; a flush is not. Whatever would wait for one comes back as
    /// [`AckProgress::Pending`]. The default hands the whole ack back.
    fn ack_without_waiting(self: Arc<Self>, lease: Lease) -> Result<AckProgress, QueueError> {
        Ok(AckProgress::Pending {
            rest: Box::new(move |durable| self.ack_notifying(lease, durable)),
            counted: true,
        })
    }

    /// Returns the lease's records to the queue, each to its place (ahead of everything
    /// not leased after it), order intact; all it held, as for `ack`.
    fn release(&self, lease: Lease);

    fn stats(&self) -> QueueStats;
}

/// A set of named queues sharing one data directory.
pub trait QueueStore: Send + Sync {
    /// Opens (creating if needed) the queue with this stable name.
    fn open_queue(&self, name: &str) -> Result<Arc<dyn Queue>, QueueError>;
    /// Names of every queue that exists on disk.
    fn list_queues(&self) -> Result<Vec<String>, QueueError>;
    /// Deletes a queue and its records.
    fn drop_queue(&self, name: &str) -> Result<(), QueueError>;
    /// Bytes the store occupies on disk (sled reuses freed space; its file shrinks only by
    /// free segments at its tail).
    fn disk_bytes(&self) -> Result<u64, QueueError>;

    /// Appends to several queues (opening them if needed) and optionally sets a marker
    /// key/value, all in one atomic step that is durable on return (one group commit).
    /// Returns one seq range per part. After a crash either all of it exists or none.
    /// A queue past its cap fails the whole call with `QueueError::Full`.
    fn append_group(
        &self,
        parts: &[(&str, &[&[u8]])],
        marker: Option<(&[u8], &[u8])>,
    ) -> Result<Vec<Range<Seq>>, QueueError>;

    /// As `append_group`, setting any number of markers in the same atomic step (e.g. one
    /// per record, to make a retried append idempotent).
    fn append_group_with_markers(
        &self,
        parts: &[(&str, &[&[u8]])],
        markers: &[(&[u8], &[u8])],
    ) -> Result<Vec<Range<Seq>>, QueueError>;

    /// The value of a marker set by `append_group`, if any.
    fn marker(&self, key: &[u8]) -> Result<Option<Vec<u8>>, QueueError>;

    /// Removes a marker; returns whether it existed.
    fn remove_marker(&self, key: &[u8]) -> Result<bool, QueueError>;
}
