//! A batch the SIEM accepted but the queue could not ack comes back after a restart (a
//! duplicate, never a loss). The lane must not keep sending batches whose acks fail too,
//! each one more duplicate: it pauses on the degraded schedule and says why in the
//! destination's state, then delivers again once acks work. Every way an ack can fail:
//! at once on the lane (`ack_without_waiting`), in the rest run on the storage pool
//! before it was durable (then the next batch must not leave), and in the ack poller
//! after Splunk's indexer confirmed a request (`useACK`).

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use raxe_adapters::config::{SiemConfig, SiemOptions, SplunkOptions};
use raxe_adapters::event::ScanEvent;
use raxe_adapters::splunk::ack::new_channel;
use raxe_engine::{AuditLog, BackoffPolicy, DestinationOptions, DestinationState, SiemDispatcher};
use raxe_storage::{Lease, Queue, QueueError, SledStore, StoreOptions};
use raxe_tests::hec::HecReceiver;
use raxe_tests::hec_ack::{AckMode, HecAckReceiver};
use support::hooked_store::{AckHook, HookedStore};
use support::*;

const WAIT: Duration = Duration::from_secs(30);
const BATCH: usize = 100;
const EVENTS: usize = 3_000;
/// Acks that work before they start failing.
const GOOD_ACKS: usize = 3;
/// How long acks keep failing once the lane paused.
const WINDOW: Duration = Duration::from_secs(6);

/// The error a failing hook returns: what the sled store's ack journal gives on a disk
/// error.
fn injected_failure() -> QueueError {
    QueueError::Io {
        path: PathBuf::from("acks-0000000000000001.log"),
        source: std::io::Error::other("injected ack failure"),
    }
}

/// Acks work `good_acks` times, then fail until `healed`. A failed ack gives its records
/// back to the queue (as a restart would), so they are at its head again: while acks
/// fail, a lane that pauses as it should only ever sends that batch again.
struct FailingAcks {
    /// Fail in `ack_without_waiting` itself, not in the rest it hands back.
    inline: bool,
    good_acks: usize,
    succeeded: AtomicUsize,
    failed: AtomicUsize,
    healed: AtomicBool,
}

impl FailingAcks {
    fn fails_now(&self) -> bool {
        !self.healed.load(Ordering::SeqCst)
            && self.succeeded.load(Ordering::SeqCst) >= self.good_acks
    }

    fn failure(&self) -> QueueError {
        self.failed.fetch_add(1, Ordering::SeqCst);
        injected_failure()
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

impl FailingAcks {
    fn new(inline: bool, good_acks: usize) -> Arc<FailingAcks> {
        Arc::new(FailingAcks {
            inline,
            good_acks,
            succeeded: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            healed: AtomicBool::new(false),
        })
    }
}

/// A dispatcher over a sled store whose acks go through `hook`, with destination `id`
/// registered and `batch` queued, not started yet. The default degraded schedule (1 s,
/// 2 s, 4 s ..., full jitter), capped at 8 s so that the lane is back soon after acks
/// work again.
async fn dispatcher_with<H: AckHook>(
    dir: &Path,
    hook: &Arc<H>,
    id: &str,
    config: SiemConfig,
    batch: &[ScanEvent],
) -> Arc<SiemDispatcher> {
    let sled = Arc::new(SledStore::open_with(dir, StoreOptions::default()).unwrap());
    let store = Arc::new(HookedStore {
        inner: sled,
        hook: hook.clone(),
    });
    let policy = BackoffPolicy {
        degraded_max: Duration::from_secs(8),
        ..BackoffPolicy::default()
    };
    let dispatcher = Arc::new(
        SiemDispatcher::with_policy(store, Arc::new(AuditLog::in_memory()), policy).unwrap(),
    );
    let adapter = raxe_adapters::create_siem_adapter(config).unwrap();
    dispatcher
        .register_destination(id, adapter.into(), None, DestinationOptions::default())
        .unwrap();
    dispatcher
        .dispatch_batch_async(batch.to_vec())
        .await
        .unwrap();
    dispatcher
}

/// Waits until destination `id` is paused because an ack failed.
async fn wait_for_pause(dispatcher: &SiemDispatcher, id: &str) {
    let paused = wait_until(WAIT, || {
        matches!(
            dispatcher.state(id),
            Ok(DestinationState::Degraded(reason)) if reason.contains("an ack in the queue failed")
        )
    })
    .await;
    assert!(paused, "state: {:?}", dispatcher.state(id));
}

async fn lane_pauses_while_acks_fail(inline: bool) {
    let dir = tempfile::tempdir().unwrap();
    let hec = HecReceiver::start("t").await;
    let hook = FailingAcks::new(inline, GOOD_ACKS);
    let mut config = splunk_config(&hec.url(), "t");
    config.batch_size = BATCH;
    let batch = events("m", "c", 0..EVENTS);
    let dispatcher = dispatcher_with(dir.path(), &hook, "d", config, &batch).await;
    dispatcher.start().unwrap();

    wait_for_pause(&dispatcher, "d").await;
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

/// Requests with indexer acks (`useACK`): one lane sends up to 64 before the first poll.
const ACK_BATCH: usize = 10;
const ACK_EVENTS: usize = 3_000;
const MAX_PENDING: usize = 64;

/// Splunk with indexer acks to `hec`: a poll a second, requests of `ACK_BATCH` events.
fn indexer_ack_config(hec: &HecAckReceiver) -> SiemConfig {
    let mut config = SiemConfig::with_options(
        &hec.url(),
        "t",
        SiemOptions::Splunk(SplunkOptions {
            ack: true,
            channel: Some(new_channel()),
            ack_interval_seconds: 1,
            ack_timeout_seconds: 60,
            ..Default::default()
        }),
    )
    .unwrap();
    config.flush_interval_seconds = 0;
    config.batch_size = ACK_BATCH;
    config
}

/// The log of this test binary (every test's), as an operator would read it.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts writing the engine's log (info and up) to [`LOG`]; returns where it is now.
fn log_position() -> usize {
    static CAPTURE: Once = Once::new();
    CAPTURE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .with_writer(|| LogWriter)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    LOG.lock().unwrap().len()
}

fn log_since(position: usize) -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap()[position..]).into_owned()
}

/// With indexer acks the lane does not wait for its acks: the poller acks confirmed
/// requests in the queue. When those acks fail, the lane pauses as above, and after each
/// pause sends one request at most, whose ack tells whether acks work again. Until one
/// does, the destination stays Degraded, never flipping to "delivering" (a request the
/// SIEM accepted proves nothing before its ack), and its schedule keeps growing; then
/// it delivers the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_failing_after_the_indexer_confirmed_pause_the_lane() {
    let start = log_position();
    let dir = tempfile::tempdir().unwrap();
    let hec = HecAckReceiver::start("t", AckMode::After(Duration::ZERO)).await;
    // Failing from the first: however many requests went before the first poll, it fails
    // them all.
    let hook = FailingAcks::new(false, 0);
    let config = indexer_ack_config(&hec);
    let batch = events("m", "c", 0..ACK_EVENTS);
    let id = "indexer-acked";
    let dispatcher = dispatcher_with(dir.path(), &hook, id, config, &batch).await;
    dispatcher.start().unwrap();

    wait_for_pause(&dispatcher, id).await;
    let failed_at_pause = hook.failed.load(Ordering::SeqCst);
    tokio::time::sleep(WINDOW).await;
    // Nothing past the requests sent before the first poll (at most 64 wait for acks):
    // a lane waiting for room waited until their acks were done, saw them fail, and
    // paused; a lane still sending paused after that request. Each failed request went
    // back to the queue's head, so retries send them again, not what follows.
    let first_requests = ids(&batch[..MAX_PENDING * ACK_BATCH]);
    assert!(
        as_set(&hec.accepted()).is_subset(&first_requests),
        "events past the requests whose acks failed were sent"
    );
    // Requests tested the acks after the pause (the first one's ack fails in a later
    // round), fewer and fewer: each costs a pause, and the pauses grow (up to 1, 2, 4,
    // 8 s ...). The poll interval alone keeps failures near one a second, so a schedule
    // that restarts after each request is caught by the state below, not by this count.
    let retries = hook.failed.load(Ordering::SeqCst) - failed_at_pause;
    assert!(retries > 0, "no request tested the acks in {WINDOW:?}");
    assert!(
        retries <= 7,
        "{retries} retries in {WINDOW:?}: the lane does not pause"
    );
    // None of them turned the state to Ok (it starts Ok, so any "delivering" is a flip):
    // the SIEM accepting a request proves nothing while its ack may fail.
    let flips: Vec<String> = log_since(start)
        .lines()
        .filter(|line| line.contains(&format!("destination={id}")) && line.contains("delivering"))
        .map(String::from)
        .collect();
    assert!(
        flips.is_empty(),
        "while acks fail, {retries} requests that tested them turned the state to Ok: {flips:?}"
    );

    hook.healed.store(true, Ordering::SeqCst);
    let resumed = wait_until(WAIT, || {
        dispatcher.state(id).ok() == Some(DestinationState::Ok)
    })
    .await;
    assert!(resumed, "state: {:?}", dispatcher.state(id));
    assert!(dispatcher.drain(WAIT).await, "not delivered once acks work");
    assert_eq!(as_set(&hec.indexed()), ids(&batch));
    assert_eq!(dispatcher.state(id).unwrap(), DestinationState::Ok);
    dispatcher.shutdown(Duration::from_secs(5)).await;
    // Each failed ack repeats its request, no more.
    let failed = hook.failed.load(Ordering::SeqCst);
    assert!(
        hec.accepted_count() <= ACK_EVENTS + failed * ACK_BATCH,
        "{} accepted for {ACK_EVENTS} events and {failed} failed acks",
        hec.accepted_count()
    );
    assert!(
        log_since(start).lines().any(|line| line.contains(id)
            && line.contains("ack failed; the events may be delivered again")),
        "the failed acks were not logged"
    );
}

/// Fails the first ack though the ack holds (as the sled store keeps a failed ack's
/// records as acked in memory); every later ack works.
struct FailsOnce {
    failed: AtomicBool,
}

impl AckHook for FailsOnce {
    fn ack_notifying(
        &self,
        inner: &dyn Queue,
        lease: Lease,
        durable: &mut dyn FnMut(),
    ) -> Result<(), QueueError> {
        inner.ack_notifying(lease, durable)?;
        if self.failed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        Err(injected_failure())
    }
}

/// Acks fail once, on the only request there was; the events that come next are all
/// refused by the SIEM, so the worker dead-letters them and acks them itself. That ack
/// holding says acks work again as well as a poll's round would: the destination does
/// not stay degraded for want of a request through the ack tracker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_ack_that_holds_ends_an_ack_failure() {
    let dir = tempfile::tempdir().unwrap();
    let hec = HecAckReceiver::start("t", AckMode::After(Duration::ZERO)).await;
    let hook = Arc::new(FailsOnce {
        failed: AtomicBool::new(false),
    });
    let accepted = events("m", "c", 0..ACK_BATCH);
    let id = "dead-letters-only";
    let dispatcher =
        dispatcher_with(dir.path(), &hook, id, indexer_ack_config(&hec), &accepted).await;
    dispatcher.start().unwrap();
    wait_for_pause(&dispatcher, id).await;

    let refused = events("m", "c", ACK_BATCH..2 * ACK_BATCH);
    for event in &refused {
        hec.poison(&event.event_id);
    }
    dispatcher.dispatch_batch_async(refused).await.unwrap();
    let well = wait_until(WAIT, || {
        dispatcher.state(id).ok() == Some(DestinationState::Ok)
    })
    .await;
    assert!(well, "state: {:?}", dispatcher.state(id));
    assert_eq!(
        dispatcher.stats().destinations[0].dead_letters.len,
        ACK_BATCH as u64
    );
    assert_eq!(as_set(&hec.indexed()), ids(&accepted));
    dispatcher.shutdown(Duration::from_secs(5)).await;
}
