//! Settling a delivered lease: what is acked now, what waits for an indexer ack (with the
//! dead-letter markers of records inside its requests), what goes back to the queue.

use std::ops::Range;
use std::sync::Arc;

use raxe_storage::{Lease, Queue, QueueError};

use super::{Delivery, Halt};
use crate::indexer_ack::Tracked;
use crate::storage_pool::StorageTask;

/// The rest of a lease's ack running in the background (see [`Delivery::run`]).
pub(crate) struct DeferredAck {
    /// Records the rest removes from the queue's length (0 once the part run on the lane
    /// took them off).
    pub records: usize,
    /// Fires once the ack survives a crash (the store's ack journal has it, or sled
    /// flushed it); closed without firing if the ack failed before that.
    durable: Option<tokio::sync::oneshot::Receiver<()>>,
    /// The ack failed (or panicked) before it was durable.
    failed: bool,
    /// Whether the rest succeeded (it logs its own failure).
    handle: StorageTask<bool>,
}

impl DeferredAck {
    pub(super) fn new(
        records: usize,
        durable: tokio::sync::oneshot::Receiver<()>,
        handle: StorageTask<bool>,
    ) -> DeferredAck {
        DeferredAck {
            records,
            durable: Some(durable),
            failed: false,
            handle,
        }
    }

    /// Waits until the ack survives a crash: true; false if it failed before that. The
    /// rest of its work after that point (the queue's sled writes, a journal switch) may
    /// still run.
    pub async fn durable(&mut self) -> bool {
        // Forgotten only once awaited to the end, so a cancelled wait waits again next time.
        if let Some(durable) = self.durable.as_mut() {
            self.failed = durable.await.is_err();
            self.durable = None;
        }
        !self.failed
    }

    /// Waits for the ack to be done. Err when it failed before it was durable: its
    /// records may be delivered again after a restart (see [`ack_failed`]). A failure
    /// after that point (a journal switch) is only logged: the ack itself holds.
    pub async fn finish(mut self) -> Result<(), Halt> {
        let done = match (&mut self.handle).await {
            Ok(succeeded) => succeeded,
            Err(e) => {
                tracing::error!(error = %e, "ack task failed");
                false
            }
        };
        // The rest has ended: its durable signal fired or never will.
        if done || self.durable().await {
            Ok(())
        } else {
            Err(ack_failed())
        }
    }
}

/// Why a lane pauses after an ack failed (its state says it, Degraded).
pub(crate) const ACK_FAILED: &str = "an ack in the queue failed (see the log): its events may \
                                     be delivered again after a restart; pausing";

/// The halt after settled records (accepted by the SIEM, or dead-lettered) could not be
/// acked in the queue (the error is logged where it happened). They may be delivered
/// again after a restart: the lane pauses on the degraded schedule rather than send more
/// batches whose acks may fail too.
pub(crate) fn ack_failed() -> Halt {
    Halt::Retry {
        after: None,
        reason: ACK_FAILED.into(),
    }
}

/// A request the SIEM accepted with an ack id, waiting for the indexer to confirm it.
pub(super) struct AwaitingAck {
    /// The request's events (positions among the lease's decoded events).
    pub span: Range<usize>,
    pub ack_id: u64,
    /// What `AckTracker::issued` said when the id came.
    pub epoch: u64,
}

impl Delivery<'_> {
    /// Hands the accepted requests' records to the ack tracker, each request as a lease
    /// of its own with the dead-letter markers of the records inside its span (a resend
    /// must find them, so as not to dead-letter those records again); acks the other
    /// settled records (dead letters) and releases the rest. True when that ack succeeded.
    pub(super) async fn hand_over_to_acks(
        &mut self,
        queue: Arc<dyn Queue>,
        lease: Lease,
        ack_upto: usize,
    ) -> bool {
        // Lease positions of each request (undecodable records inside go with it).
        let segments: Vec<Range<usize>> = self
            .awaiting_ack
            .iter()
            .map(|a| self.positions[a.span.start]..self.positions[a.span.end - 1] + 1)
            .collect();
        let mut markers_by_segment = vec![Vec::new(); segments.len()];
        self.dead_letter_markers.retain_mut(|(position, key)| {
            match segments.iter().position(|span| span.contains(position)) {
                Some(i) => {
                    markers_by_segment[i].push(std::mem::take(key));
                    false
                }
                None => true,
            }
        });
        let (leases, acked) = split_for_acks(queue.clone(), lease, ack_upto, segments).await;
        let tracked = self
            .awaiting_ack
            .iter()
            .zip(leases)
            .zip(markers_by_segment)
            .map(|((a, lease), dead_letter_markers)| Tracked {
                ack_id: a.ack_id,
                epoch: a.epoch,
                lease,
                dead_letter_markers,
            })
            .collect();
        let refused = self.dest.acks.add(&self.ack_target(), tracked);
        crate::indexer_ack::release_leases(queue, refused).await;
        acked
    }

    /// Removes the dead-letter markers of the records acked (those before `ack_upto`;
    /// records from there on were released and keep theirs).
    pub(super) async fn remove_dead_letter_markers(&mut self, ack_upto: usize) {
        if self.dead_letter_markers.is_empty() {
            return;
        }
        let store = self.dest.store.clone();
        let markers: Vec<Vec<u8>> = std::mem::take(&mut self.dead_letter_markers)
            .into_iter()
            .filter(|(position, _)| *position < ack_upto)
            .map(|(_, key)| key)
            .collect();
        let _ = crate::storage_pool::spawn(move || {
            crate::dead_letter::remove_markers(&*store, markers)
        })
        .await;
    }
}

/// Settles a lease some of whose requests wait for an indexer ack: releases the records
/// from `ack_upto` on, acks the settled records outside `segments` (dead letters) now,
/// and returns one lease per segment, for the ack tracker. `segments` are lease
/// positions, in order, disjoint, all below `ack_upto`.
async fn split_for_acks(
    queue: Arc<dyn Queue>,
    lease: Lease,
    ack_upto: usize,
    segments: Vec<Range<usize>>,
) -> (Vec<Lease>, bool) {
    let id = queue.name().to_string();
    let done = crate::storage_pool::spawn(move || {
        let (mut remaining, rest) = queue.split_lease(lease, ack_upto);
        // Empty parts are released too: that unregisters them.
        queue.release(rest);
        let mut cursor = 0;
        let mut now = Vec::new();
        let mut tracked = Vec::new();
        for range in segments {
            // Saturating: a segment out of order would be a bug, but never a panic here.
            let start = range.start.max(cursor);
            let (before, tail) = queue.split_lease(remaining, start - cursor);
            let (segment, tail) = queue.split_lease(tail, range.end.saturating_sub(start));
            now.push(before);
            tracked.push(segment);
            remaining = tail;
            cursor = range.end.max(start);
        }
        now.push(remaining);
        let mut acked = true;
        for part in now {
            if part.is_empty() {
                queue.release(part);
            } else if !ack_whole_lease(&*queue, part, &mut || {}) {
                acked = false;
            }
        }
        (tracked, acked)
    })
    .await;
    done.unwrap_or_else(|e| {
        // The leases died with the task: their records stay leased until a restart.
        tracing::error!(queue = %id, error = %e, "ack task failed");
        (Vec::new(), false)
    })
}

/// Acks the first `ack_upto` records of the lease and releases the rest; true when the
/// ack succeeded (or there was nothing to ack).
pub(super) async fn finish_lease(queue: Arc<dyn Queue>, lease: Lease, ack_upto: usize) -> bool {
    let id = queue.name().to_string();
    match crate::storage_pool::spawn(move || finish_lease_blocking(queue, lease, ack_upto)).await {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(queue = %id, error = %e, "ack task failed");
            false
        }
    }
}

/// Acks every record of `lease`, calling `durable` once the ack survives a crash; false
/// (logged) when the ack failed. Blocks on the queue: call it from the storage pool.
/// A failed ack loses nothing: its records may come back after a restart (unless the
/// journal took the ack before the failure).
pub(crate) fn ack_whole_lease(queue: &dyn Queue, lease: Lease, durable: &mut dyn FnMut()) -> bool {
    ack_succeeded(queue.name(), queue.ack_notifying(lease, durable))
}

/// Logs a failed ack of `queue`; true when it succeeded.
pub(crate) fn ack_succeeded(queue: &str, acked: Result<(), QueueError>) -> bool {
    match acked {
        Ok(()) => true,
        Err(e) => {
            log_ack_failure(queue, &e);
            false
        }
    }
}

/// The one complaint about an ack of `queue` that failed (or panicked).
pub(super) fn log_ack_failure(queue: &str, error: &dyn std::fmt::Display) {
    tracing::error!(queue = %queue, error = %error, "ack failed; the events may be delivered again");
}

/// Acks the first `ack_upto` records of `lease` and releases the rest; false (logged) when
/// the ack failed. Blocks on the queue: call it from the storage pool.
pub(super) fn finish_lease_blocking(queue: Arc<dyn Queue>, lease: Lease, ack_upto: usize) -> bool {
    let (settled, rest) = queue.split_lease(lease, ack_upto);
    if !rest.is_empty() {
        queue.release(rest);
    }
    if settled.is_empty() {
        return true;
    }
    ack_whole_lease(&*queue, settled, &mut || {})
}
