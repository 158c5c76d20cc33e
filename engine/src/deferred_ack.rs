//! A lease's ack, deferred past the send that settled it (see [`crate::delivery`]).
//!
//! Held first, not started: the worker's next storage call (the next batch's lease,
//! ahead of its send or not) takes it along, and the storage pool runs both as one job,
//! the ack first. One thread wake-up per batch instead of two; the ack still runs beside
//! the next batch's decoding and encoding. Whatever does not take it along starts it on
//! its own, and so does dropping it, so a held ack never waits on anything but the pool.

use std::sync::Arc;

use raxe_storage::{Lease, Queue};
use tokio::sync::oneshot;

use crate::storage_pool::{self, StorageTask};

pub(crate) struct DeferredAck {
    /// Records the ack removes from the queue (still counted in its length until then).
    pub records: usize,
    state: State,
}

enum State {
    Held {
        queue: Arc<dyn Queue>,
        lease: Lease,
        ack_upto: usize,
    },
    /// Started; says whether the ack succeeded once it is done.
    Running(oneshot::Receiver<bool>),
    Finished,
}

impl DeferredAck {
    /// Acks the first `ack_upto` records of `lease` and releases the rest, once started.
    pub fn hold(queue: Arc<dyn Queue>, lease: Lease, ack_upto: usize) -> DeferredAck {
        DeferredAck {
            records: lease.len(),
            state: State::Held {
                queue,
                lease,
                ack_upto,
            },
        }
    }

    /// Runs `then` on the storage pool after the ack, in the same job when the ack is
    /// still held (else on its own). The ack is done before `then` starts.
    pub fn start_then<F, R>(&mut self, then: F) -> StorageTask<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        match self.take_held() {
            Some(settle) => storage_pool::spawn(move || {
                settle.run();
                then()
            }),
            None => storage_pool::spawn(then),
        }
    }

    /// Starts the ack if it is still held.
    pub fn start(&mut self) {
        if let Some(settle) = self.take_held() {
            // Its result comes back through the channel, not this handle.
            drop(storage_pool::spawn(move || settle.run()));
        }
    }

    /// Starts the ack if needed and waits for it to be done (it logs its own failure).
    pub async fn finish(mut self) {
        self.start();
        if let State::Running(done) = std::mem::replace(&mut self.state, State::Finished) {
            if done.await.is_err() {
                tracing::error!("ack task failed; the events will be delivered again");
            }
        }
    }

    /// The held ack, to run; the state becomes `Running`. None when already started.
    fn take_held(&mut self) -> Option<Settle> {
        if !matches!(self.state, State::Held { .. }) {
            return None;
        }
        let (done, rx) = oneshot::channel();
        match std::mem::replace(&mut self.state, State::Running(rx)) {
            State::Held {
                queue,
                lease,
                ack_upto,
            } => Some(Settle {
                queue,
                lease,
                ack_upto,
                done,
            }),
            _ => unreachable!("checked above"),
        }
    }
}

/// A held ack taken out to run, and where its result goes.
struct Settle {
    queue: Arc<dyn Queue>,
    lease: Lease,
    ack_upto: usize,
    done: oneshot::Sender<bool>,
}

impl Settle {
    fn run(self) {
        let acked = finish_lease_blocking(self.queue, self.lease, self.ack_upto);
        let _ = self.done.send(acked);
    }
}

impl Drop for DeferredAck {
    fn drop(&mut self) {
        self.start();
    }
}

/// Acks the first `ack_upto` records of `lease` and releases the rest; false (logged) when
/// the ack failed. Blocks on the queue: call it from the storage pool.
pub(crate) fn finish_lease_blocking(queue: Arc<dyn Queue>, lease: Lease, ack_upto: usize) -> bool {
    let (settled, rest) = queue.split_lease(lease, ack_upto);
    if !rest.is_empty() {
        queue.release(rest);
    }
    if settled.is_empty() {
        return true;
    }
    // Dropping `settled` after a failed ack leaves it leased; nothing is lost, and the
    // records come back after a restart.
    match queue.ack(settled) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(queue = %queue.name(), error = %e, "ack failed; the events will be delivered again");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use raxe_storage::{QueueStore, SledStore};

    use super::*;

    /// A queue of `n` records `0..n`, and its first `batch` leased.
    fn queue_with_lease(n: usize, batch: usize) -> (tempfile::TempDir, Arc<dyn Queue>, Lease) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let queue = store.open_queue("q").unwrap();
        let records: Vec<Vec<u8>> = (0..n).map(|i| i.to_string().into_bytes()).collect();
        let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
        queue.append(&refs).unwrap();
        let lease = queue.lease(batch, usize::MAX).unwrap().unwrap();
        (dir, queue, lease)
    }

    fn payloads(lease: &Lease) -> Vec<String> {
        lease
            .records
            .iter()
            .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
            .collect()
    }

    /// The lease taken along runs after the ack, in the same job: it sees the acked
    /// records gone and leases the next ones; the ack reports done.
    #[tokio::test]
    async fn a_held_ack_runs_before_the_call_that_takes_it_along() {
        let (_dir, queue, lease) = queue_with_lease(10, 4);
        let mut ack = DeferredAck::hold(queue.clone(), lease, 3);
        assert_eq!(ack.records, 4);
        // Held: nothing acked yet.
        assert_eq!(queue.stats().len, 10);
        let q = queue.clone();
        let next = ack
            .start_then(move || (q.stats().len, q.lease(10, usize::MAX).unwrap()))
            .await
            .unwrap();
        // Three acked before the lease; the fourth was released to the head.
        assert_eq!(next.0, 7);
        let next = next.1.unwrap();
        assert_eq!(payloads(&next), ["3", "4", "5", "6", "7", "8", "9"]);
        ack.finish().await;
        queue.ack(next).unwrap();
        assert_eq!(queue.stats().len, 0);
    }

    /// Once the ack started, a call goes to the pool on its own, and finishing still waits.
    #[tokio::test]
    async fn a_call_after_the_ack_started_runs_on_its_own() {
        let (_dir, queue, lease) = queue_with_lease(6, 6);
        let mut ack = DeferredAck::hold(queue.clone(), lease, 6);
        ack.start();
        let q = queue.clone();
        let len = ack
            .start_then(move || {
                // The ack may still be running on another thread: wait for it.
                let deadline = Instant::now() + Duration::from_secs(10);
                while q.stats().len != 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                q.stats().len
            })
            .await
            .unwrap();
        assert_eq!(len, 0);
        ack.finish().await;
        assert_eq!(queue.stats().len, 0);
    }

    /// Finishing a held ack starts it and waits for it.
    #[tokio::test]
    async fn finishing_a_held_ack_acks() {
        let (_dir, queue, lease) = queue_with_lease(5, 5);
        DeferredAck::hold(queue.clone(), lease, 2).finish().await;
        assert_eq!(queue.stats().len, 3);
        let rest = queue.lease(10, usize::MAX).unwrap().unwrap();
        assert_eq!(payloads(&rest), ["2", "3", "4"]);
    }

    /// A held ack dropped unstarted still runs: nothing is left leased and unacked.
    #[tokio::test]
    async fn a_dropped_held_ack_still_acks() {
        let (_dir, queue, lease) = queue_with_lease(5, 5);
        drop(DeferredAck::hold(queue.clone(), lease, 5));
        let deadline = Instant::now() + Duration::from_secs(10);
        while queue.stats().len != 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(queue.stats().len, 0);
    }
}
