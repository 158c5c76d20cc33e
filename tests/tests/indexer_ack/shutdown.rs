//! A planned stop with requests waiting for their indexer ack: the poller gives the indexer
//! most of the shutdown deadline to confirm them, so a restart does not send again what
//! Splunk already indexed (Splunk does not de-duplicate).

use std::time::Duration;

use raxe_adapters::config::{SiemConfig, SiemOptions};
use raxe_adapters::splunk::ack::new_channel;
use raxe_tests::hec_ack::{AckMode, HecAckReceiver};

use super::support::*;
use super::{ack_config, add, queued, TOKEN, WAIT};

/// Polls only every 30 s: a test's requests still wait for their first poll when it stops.
fn rarely_polled(hec: &HecAckReceiver) -> SiemConfig {
    let mut config = ack_config(hec, &new_channel(), 60, 50);
    let SiemOptions::Splunk(splunk) = &mut config.extra else {
        unreachable!("a Splunk config");
    };
    splunk.ack_interval_seconds = 30;
    config
}

/// Records left in destination `d`'s queue in a store opened again after `engine` stopped.
fn queued_after_restart(dir: &std::path::Path) -> u64 {
    let engine = Engine::open(dir);
    let queue = engine
        .store()
        .open_queue(&raxe_engine::queue_names::destination("d"))
        .unwrap();
    queue.stats().len
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_stop_waits_for_the_indexer_to_confirm_what_it_sent() {
    let dir = tempfile::tempdir().unwrap();
    let hec = HecAckReceiver::start(TOKEN, AckMode::After(Duration::from_millis(300))).await;
    let batch = events("m", "c", 0..200);
    {
        let engine = Engine::open(dir.path());
        add(&engine, "d", rarely_polled(&hec), 1);
        engine.dispatch(batch.clone()).await;
        engine.dispatcher.start().unwrap();
        assert!(hec.wait_for(200, WAIT).await);
        // Sent, not yet polled (the first poll is 30 s away): all four requests wait.
        assert_eq!(queued(&engine), 200);
        assert_eq!(hec.polls(), 0);
        let started = std::time::Instant::now();
        engine.dispatcher.shutdown(Duration::from_secs(20)).await;
        let took = started.elapsed();
        assert!(hec.polls() >= 1, "the stop polled");
        // Indexed 0.3 s after acceptance, polled every 0.5 s: the stop ends once all is
        // confirmed, not at its deadline (19 s).
        assert!(took < Duration::from_secs(10), "the stop took {took:?}");
        assert_eq!(queued(&engine), 0, "every confirmed request left the queue");
    }
    assert_eq!(queued_after_restart(dir.path()), 0, "nothing to send again");
    assert_eq!(as_set(&hec.indexed()), ids(&batch));
    assert_eq!(hec.accepted().len(), 200, "no event was sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_gives_back_what_the_indexer_does_not_confirm_by_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    let batch = events("m", "c", 0..200);
    {
        let engine = Engine::open(dir.path());
        add(&engine, "d", rarely_polled(&hec), 1);
        engine.dispatch(batch.clone()).await;
        engine.dispatcher.start().unwrap();
        assert!(hec.wait_for(200, WAIT).await);
        engine.dispatcher.shutdown(Duration::from_secs(2)).await;
        assert!(hec.polls() >= 2, "it polled while it waited");
        // The poller gave the leases back itself, before the shutdown's deadline (a task
        // still running then is aborted, and its leases would stay leased): the events can
        // be leased again in this process.
        let queue = engine
            .store()
            .open_queue(&raxe_engine::queue_names::destination("d"))
            .unwrap();
        let lease = queue.lease(1_000, usize::MAX).unwrap().expect("released");
        assert_eq!(lease.len(), 200);
        queue.release(lease);
    }
    assert_eq!(
        queued_after_restart(dir.path()),
        200,
        "kept for the next start"
    );
    assert!(hec.indexed().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_does_not_wait_for_requests_of_a_channel_it_left() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    add(&engine, "d", ack_config(&hec, &new_channel(), 60, 10), 1);
    engine.dispatch(events("m", "c", 0..20)).await;
    engine.dispatcher.start().unwrap();
    assert!(hec.wait_for(20, WAIT).await);
    // A reload moves the destination to a new channel (the old ids can never be
    // confirmed there), and the stop comes before the poller has looked.
    hec.set_mode(AckMode::After(Duration::ZERO));
    add(&engine, "d", ack_config(&hec, &new_channel(), 60, 10), 1);
    let started = std::time::Instant::now();
    engine.dispatcher.shutdown(Duration::from_secs(20)).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "waited {took:?} for ids no poll asks about"
    );
}

/// A drain waits for the acks of what it sent: the poller polls every second meanwhile,
/// not at the interval (30 s here; a standalone `raxe drain` took the 10 s default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_polls_for_its_acks_without_waiting_for_the_interval() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::After(Duration::from_millis(300))).await;
    add(&engine, "d", rarely_polled(&hec), 1);
    let batch = events("m", "c", 0..100);
    engine.dispatch(batch.clone()).await;
    engine.dispatcher.start().unwrap();
    let started = std::time::Instant::now();
    assert!(engine.dispatcher.drain(Duration::from_secs(25)).await);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "the drain took {took:?}");
    assert_eq!(as_set(&hec.indexed()), ids(&batch));
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}
