//! Unrouted events: kept while their customer has no destination, moved (re-routed) to
//! the destination registered later, in order, and only read again when that can move some.

mod support;

use std::time::Duration;

use raxe_adapters::event::ScanEvent;
use raxe_engine::{queue_names, CustomerKey};
use raxe_tests::hec::HecReceiver;
use support::*;

const WAIT: Duration = Duration::from_secs(20);

fn in_order(events: &[ScanEvent]) -> Vec<String> {
    events.iter().map(|e| e.event_id.clone()).collect()
}

fn queued(engine: &Engine, id: &str) -> u64 {
    let stats = engine.dispatcher.stats();
    let dest = stats.destinations.iter().find(|d| d.id == id).unwrap();
    dest.queue.len
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_events_wait_for_their_destination() {
    let engine = Engine::new();
    let batch = events("m", "late", 0..40);
    let report = engine.dispatch(batch.clone()).await;
    assert_eq!(report.unrouted, 40);
    assert_eq!(engine.dispatcher.stats().unrouted.len, 40);
    let hec = HecReceiver::start("t").await;
    engine.dispatcher.start().unwrap();
    engine.add("late", &hec, "t", Some(CustomerKey::new("m", "late")));
    assert_eq!(engine.dispatcher.stats().unrouted.len, 0);
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(as_set(&hec.accepted()), ids(&batch));
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_events_behind_others_are_found_too() {
    let engine = Engine::new();
    // More than one re-route lease (1,000) of events nobody wants, then the ones that match.
    engine.dispatch(events("m", "nobody", 0..1_500)).await;
    let batch = events("m", "late", 5_000..5_040);
    engine.dispatch(batch.clone()).await;
    let hec = HecReceiver::start("t").await;
    engine.dispatcher.start().unwrap();
    engine.add("late", &hec, "t", Some(CustomerKey::new("m", "late")));
    assert_eq!(engine.dispatcher.stats().unrouted.len, 1_500);
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(as_set(&hec.accepted()), ids(&batch));
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// Re-routing that fails (the destination's queue is full) leaves the unrouted events
/// leasable for the next try, not leased until a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reroute_leaves_the_unrouted_events_leasable() {
    let dir = tempfile::tempdir().unwrap();
    let capped = raxe_storage::StoreOptions {
        max_queue_bytes: Some(20_000),
        ..Default::default()
    };
    let engine = Engine::open_with(dir.path(), capped);
    engine.dispatch(events("m", "late", 0..40)).await;
    let hec = HecReceiver::start("t").await;
    // A small queue: the 40 events do not fit it.
    let mut config = splunk_config(&hec.url(), "t");
    config.enabled = false;
    let queue = engine
        .store()
        .open_queue(&raxe_engine::queue_names::destination("late"))
        .unwrap();
    queue.append(&[&vec![b'x'; 15_000][..]]).unwrap();
    let failed = engine.register("late", config, Some(CustomerKey::new("m", "late")));
    assert!(failed.is_err(), "{failed:?}");
    let unrouted = engine
        .store()
        .open_queue(raxe_engine::queue_names::UNROUTED)
        .unwrap();
    assert_eq!(unrouted.stats().len, 40);
    let lease = unrouted.lease(1_000, usize::MAX).unwrap().unwrap();
    assert_eq!(lease.len(), 40, "still leased by the failed re-route");
    unrouted.release(lease);
    // Room again: the next registration scans (the failed scan taught nothing).
    let blocker = queue.lease(1, usize::MAX).unwrap().unwrap();
    queue.ack(blocker).unwrap();
    let mut config = splunk_config(&hec.url(), "t");
    config.enabled = false;
    engine
        .register("late", config, Some(CustomerKey::new("m", "late")))
        .unwrap();
    assert_eq!(unrouted.stats().len, 0);
    assert_eq!(queued(&engine, "late"), 40);
}

/// A re-route lease mixing events that now have a destination with events that do not:
/// those that stay keep their places, ahead of the same customer's later events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_stay_unrouted_keep_their_order() {
    let engine = Engine::new();
    let late = events("m", "late", 0..500);
    let still = events("m", "still", 1_000..1_600);
    // One re-route lease (1,000 records) of both customers, event by event, then more of
    // the one that stays.
    let mixed: Vec<ScanEvent> = late
        .iter()
        .zip(&still[..500])
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    engine.dispatch(mixed).await;
    engine.dispatch(still[500..].to_vec()).await;

    let late_hec = HecReceiver::start("t").await;
    engine.add("late", &late_hec, "t", Some(CustomerKey::new("m", "late")));
    assert_eq!(engine.dispatcher.stats().unrouted.len, 600);
    let still_hec = HecReceiver::start("t").await;
    engine.add(
        "still",
        &still_hec,
        "t",
        Some(CustomerKey::new("m", "still")),
    );
    assert_eq!(engine.dispatcher.stats().unrouted.len, 0);

    engine.dispatcher.start().unwrap();
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(late_hec.accepted(), in_order(&late));
    assert_eq!(still_hec.accepted(), in_order(&still));
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// Registering a destination reads the unrouted queue only when events of its customer
/// (or, for a global destination, of anyone) may wait there: once after start, since the
/// queue's customers are not known yet, then only for customers whose events were kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_reads_the_unrouted_queue_only_when_its_customer_waits_there() {
    let engine = Engine::new();
    let hec = HecReceiver::start("t").await;
    let unrouted = engine.sled.queue(queue_names::UNROUTED).unwrap();
    engine.dispatch(events("m", "nobody", 0..1_500)).await;
    let reads = || unrouted.chunk_reads();

    engine.add("a", &hec, "t", Some(CustomerKey::new("m", "a")));
    let after_first = reads();
    assert!(after_first > 0, "the first registration reads the queue");
    engine.add("b", &hec, "t", Some(CustomerKey::new("m", "b")));
    engine.add("a", &hec, "t", Some(CustomerKey::new("m", "a")));
    assert_eq!(reads(), after_first, "nothing of a or b waits there");

    // Events kept after that scan are noted: their customer's registration moves them.
    let late = events("m", "late", 5_000..5_040);
    assert_eq!(engine.dispatch(late.clone()).await.unrouted, 40);
    engine.add("late", &hec, "t", Some(CustomerKey::new("m", "late")));
    assert!(reads() > after_first);
    assert_eq!(queued(&engine, "late"), 40);
    assert_eq!(engine.dispatcher.stats().unrouted.len, 1_500);

    // A global destination takes everyone's events.
    engine.add("soc", &hec, "t", None);
    assert_eq!(queued(&engine, "soc"), 1_500);
    assert_eq!(engine.dispatcher.stats().unrouted.len, 0);
    let after_global = reads();
    engine.add("c", &hec, "t", Some(CustomerKey::new("m", "c")));
    assert_eq!(reads(), after_global, "the queue is empty");
}
