//! Stopping: draining the queues, and shutting the workers (and ack pollers) down.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{lock, read, SiemDispatcher};
use crate::destination::DestinationState;

/// The most of a shutdown's deadline kept for releasing what the indexer did not confirm
/// (a fifth of it when that is less).
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(1);

/// How long a drain waits for workers to take a configuration change before it takes a
/// disabled or stopped destination for one that cannot deliver.
const WORKERS_TAKE_CHANGES: Duration = Duration::from_millis(200);

/// The longest a stop polls for indexer acks, however long its deadline (an `Instant` a
/// huge `--shutdown-timeout` ahead would overflow).
const SETTLE_AT_MOST: Duration = Duration::from_secs(3_600);

impl SiemDispatcher {
    /// Delivers everything queued now, ignoring flush intervals. Returns true once every
    /// destination's queue is empty (unrouted events wait for a destination, and are not
    /// counted: see `stats().unrouted`); false at `timeout`, or as soon as only destinations
    /// that cannot deliver (disabled, or stopped for bad credentials or configuration)
    /// still hold events.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.flush_now.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        // Since when nothing queued could be delivered. A worker takes a new configuration
        // (enabled again, a new token) when it wakes: give it that moment.
        let mut stuck_since: Option<Instant> = None;
        let drained = loop {
            let (mut queued, mut deliverable) = (0, 0);
            for dest in read(&self.destinations).values() {
                dest.wake.notify_one();
                let len = dest.queue.stats().len;
                queued += len;
                let state = dest.state();
                if !state.is_stopped() && state != DestinationState::Disabled {
                    deliverable += len;
                }
            }
            if queued == 0 {
                break true;
            }
            let now = Instant::now();
            let stuck =
                deliverable == 0 && *stuck_since.get_or_insert(now) + WORKERS_TAKE_CHANGES <= now;
            if deliverable > 0 {
                stuck_since = None;
            }
            if stuck || now >= deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.flush_now.store(false, Ordering::Relaxed);
        drained
    }

    /// Stops the workers: no new batches; in-flight requests get until `deadline` to
    /// finish (their outcome is acked); whatever is unfinished stays queued. Requests that
    /// wait for an indexer ack (Splunk `useACK`) are polled for up to `deadline` less a
    /// fifth of it (at most 1 s less), so a planned restart does not send again what the
    /// indexer already has; the stop ends as soon as nothing waits.
    pub async fn shutdown(&self, deadline: Duration) {
        // A little of the deadline is kept for releasing what was not confirmed.
        let margin = (deadline / 5).min(SHUTDOWN_MARGIN);
        let settle_for = (deadline - margin).min(SETTLE_AT_MOST);
        self.stop(deadline, Some(Instant::now() + settle_for)).await;
    }

    /// As [`SiemDispatcher::shutdown`], but requests that wait for an indexer ack are
    /// given back at once: for a store that cannot ack them, or a caller whose own
    /// deadline has passed.
    pub async fn shutdown_releasing_acks(&self, deadline: Duration) {
        self.stop(deadline, None).await;
    }

    async fn stop(&self, deadline: Duration, settle_by: Option<Instant>) {
        self.settle_by.send_replace(settle_by);
        self.shutdown.send_replace(true);
        let tasks = lock(&self.running)
            .take()
            .map(|running| running.tasks)
            .unwrap_or_default();
        let abort: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let joined = tokio::time::timeout(deadline, async {
            for task in tasks {
                let _ = task.await;
            }
        })
        .await;
        if joined.is_err() {
            tracing::warn!(
                ?deadline,
                "in-flight deliveries did not finish in time; they stay queued"
            );
            for handle in abort {
                handle.abort();
            }
        }
    }
}
