//! A batch the SIEM accepted but the queue could not ack comes back after a restart (a
//! duplicate, never a loss). The lane must not keep sending batches whose acks fail too,
//! each one more duplicate: it pauses on the degraded schedule and says why in the
//! destination's state, then delivers again once acks work. Both ways an ack can fail:
//! at once on the lane (`ack_without_waiting`), and in the rest run on the storage pool
//! before it was durable (then the next batch must not leave).

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raxe_engine::{AuditLog, BackoffPolicy, DestinationOptions, DestinationState, SiemDispatcher};
use raxe_storage::{Lease, Queue, QueueError, SledStore, StoreOptions};
use raxe_tests::hec::HecReceiver;
use support::hooked_store::{AckHook, HookedStore};
use support::*;

const WAIT: Duration = Duration::from_secs(30);
const BATCH: usize = 100;
const EVENTS: usize = 3_000;
/// Acks that work before they start failing.
const GOOD_ACKS: usize = 3;
/// How long acks keep failing once the lane paused.
const WINDOW: Duration = Duration::from_secs(6);

/// Acks work `GOOD_ACKS` times, then fail until `healed`. A failed ack gives its records
/// back to the queue (as a restart would), so they are at its head again: while acks
/// fail, a lane that pauses as it should only ever sends that batch again.
struct FailingAcks {
    /// Fail in `ack_without_waiting` itself, not in the rest it hands back.
    inline: bool,
    succeeded: AtomicUsize,
    failed: AtomicUsize,
    healed: AtomicBool,
}

impl FailingAcks {
    fn fails_now(&self) -> bool {
        !self.healed.load(Ordering::SeqCst) && self.succeeded.load(Ordering::SeqCst) >= GOOD_ACKS
    }

    fn failure(&self) -> QueueError {
        self.failed.fetch_add(1, Ordering::SeqCst);
        QueueError::Io {
            path: PathBuf::from("acks-0000000000000001.log"),
            source: std::io::Error::other("injected ack failure"),
        }
    }
}

impl AckHook for FailingAcks {
    fn ack_notifying(
        &self,
        inner: &dyn Queue,
        lease: Lease,
        durable: &mut dyn FnMut(),
    ) -> Result<(), QueueError> {
        if self.fails_now() {
            inner.release(lease);
            return Err(self.failure());
        }
        inner.ack_notifying(lease, durable)?;
        self.succeeded.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn inline_failure(&self) -> Option<QueueError> {
        (self.inline && self.fails_now()).then(|| self.failure())
    }
}

async fn lane_pauses_while_acks_fail(inline: bool) {
    let dir = tempfile::tempdir().unwrap();
    let hec = HecReceiver::start("t").await;
    let hook = Arc::new(FailingAcks {
        inline,
        succeeded: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        healed: AtomicBool::new(false),
    });
    let sled = Arc::new(SledStore::open_with(dir.path(), StoreOptions::default()).unwrap());
    let store = Arc::new(HookedStore {
        inner: sled,
        hook: hook.clone(),
    });
    // The default degraded schedule (1 s, 2 s, 4 s ..., full jitter), capped at 8 s so
    // that the lane is back soon after acks work again.
    let policy = BackoffPolicy {
        degraded_max: Duration::from_secs(8),
        ..BackoffPolicy::default()
    };
    let dispatcher = Arc::new(
        SiemDispatcher::with_policy(store, Arc::new(AuditLog::in_memory()), policy).unwrap(),
    );
    let mut config = splunk_config(&hec.url(), "t");
    config.batch_size = BATCH;
    let adapter = raxe_adapters::create_siem_adapter(config).unwrap();
    dispatcher
        .register_destination("d", adapter.into(), None, DestinationOptions::default())
        .unwrap();
    let batch = events("m", "c", 0..EVENTS);
    dispatcher
        .dispatch_batch_async(batch.clone())
        .await
        .unwrap();
    dispatcher.start().unwrap();

    let paused = wait_until(WAIT, || {
        matches!(
            dispatcher.state("d"),
            Ok(DestinationState::Degraded(reason)) if reason.contains("an ack in the queue failed")
        )
    })
    .await;
    assert!(paused, "state: {:?}", dispatcher.state("d"));
    // Paused: a retry now and then, each the batch whose ack failed (it is back at the
    // head). Not a batch after it (the lane went on), and fewer and fewer retries: the
    // degraded schedule grows (pauses of up to 1, 2, 4, 8, 8 ... s), so ~3 fit in the
    // window, more than 7 far less than once in 10,000 runs; a lane whose schedule
    // restarted after every batch it delivered (each pause up to 1 s) makes ~12.
    let failed_at_pause = hook.failed.load(Ordering::SeqCst);
    tokio::time::sleep(WINDOW).await;
    let first_batches = ids(&batch[..(GOOD_ACKS + 1) * BATCH]);
    assert_eq!(
        as_set(&hec.accepted()),
        first_batches,
        "events past the batch whose ack failed were sent"
    );
    let retries = hook.failed.load(Ordering::SeqCst) - failed_at_pause;
    assert!(
        retries <= 7,
        "{retries} retries in {WINDOW:?}: the degraded schedule does not grow"
    );

    hook.healed.store(true, Ordering::SeqCst);
    assert!(dispatcher.drain(WAIT).await, "not delivered once acks work");
    dispatcher.shutdown(Duration::from_secs(5)).await;
    assert_eq!(as_set(&hec.accepted()), ids(&batch));
    // Each failed ack repeats its batch, no more.
    let failed = hook.failed.load(Ordering::SeqCst);
    assert!(
        hec.accepted_count() <= EVENTS + failed * BATCH,
        "{} accepted for {EVENTS} events and {failed} failed acks",
        hec.accepted_count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_failing_on_the_lane_pauses_it() {
    lane_pauses_while_acks_fail(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_failing_before_it_is_durable_holds_the_next_batch() {
    lane_pauses_while_acks_fail(false).await;
}
