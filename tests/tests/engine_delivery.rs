//! The engine end to end: SiemDispatcher → sled queues → workers → Splunk HEC adapter →
//! a real hyper HEC receiver on 127.0.0.1. Counts what the receiver accepted.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use raxe_adapters::event::ScanEvent;
use raxe_engine::{CustomerKey, DestinationState, RemovePolicy};
use raxe_tests::hec::{Fault, HecReceiver};
use support::*;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_exactly_its_customers_siem_and_the_global_one() {
    let engine = Engine::new();
    let acme = HecReceiver::start("tok-a").await;
    let globex = HecReceiver::start("tok-b").await;
    let soc = HecReceiver::start("tok-g").await;
    engine.add("acme", &acme, "tok-a", Some(CustomerKey::new("m1", "acme")));
    engine.add(
        "globex",
        &globex,
        "tok-b",
        Some(CustomerKey::new("m1", "globex")),
    );
    engine.add("soc", &soc, "tok-g", None);
    engine.dispatcher.start().unwrap();

    let a = events("m1", "acme", 0..250);
    let b = events("m1", "globex", 1000..1100);
    engine.dispatch(a.clone()).await;
    engine.dispatch(b.clone()).await;

    assert!(acme.wait_for(250, WAIT).await);
    assert!(globex.wait_for(100, WAIT).await);
    assert!(soc.wait_for(350, WAIT).await);
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(as_set(&acme.accepted()), ids(&a));
    assert_eq!(as_set(&globex.accepted()), ids(&b));
    let all: HashSet<String> = ids(&a).union(&ids(&b)).cloned().collect();
    assert_eq!(as_set(&soc.accepted()), all);
    assert_eq!(acme.accepted_count(), 250, "no duplicates without faults");
    assert_eq!(soc.accepted_count(), 350);
    // The envelope carries the scan event as the adapter encoded it.
    let envelope = &acme.envelopes()[0];
    assert_eq!(envelope["event"]["customer_id"], "acme");
    assert_eq!(envelope["source"], "raxe");
    let stats = engine.dispatcher.stats();
    assert_eq!(stats.total.events_delivered, 700);
    assert_eq!(stats.queued(), 0);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_until_delivered() {
    let engine = Engine::new();
    let hec = HecReceiver::start("t").await;
    for fault in [
        Fault::Status {
            status: 503,
            code: 9,
            retry_after: None,
        },
        Fault::Status {
            status: 503,
            code: 9,
            retry_after: None,
        },
        Fault::Status {
            status: 429,
            code: 9,
            retry_after: Some(1),
        },
        Fault::Reset,
        Fault::Hang,
        Fault::Status {
            status: 500,
            code: 8,
            retry_after: None,
        },
        Fault::Slow(Duration::from_millis(300)),
    ] {
        hec.push_fault(fault);
    }
    engine.add("d", &hec, "t", None);
    engine.dispatcher.start().unwrap();
    let batch = events("m", "c", 0..300);
    engine.dispatch(batch.clone()).await;
    assert!(
        hec.wait_for(300, WAIT).await,
        "got {}",
        hec.accepted_count()
    );
    assert_eq!(as_set(&hec.accepted()), ids(&batch));
    let stats = engine.dispatcher.stats();
    assert!(stats.total.retried >= 6, "{:?}", stats.total);
    assert_eq!(stats.total.dead_lettered, 0);
    assert_eq!(engine.dispatcher.state("d").unwrap(), DestinationState::Ok);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// A request waiting to be tried again (here a 429 with Retry-After: 2) shows as
/// `retrying` with the SIEM's answer, not `ok`: an exploratory run saw a Logs Ingestion 403
/// retried every minute show `ok` everywhere. Delivered, it is `ok` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_for_its_retry_shows_as_retrying() {
    let engine = Engine::new();
    let hec = HecReceiver::start("t").await;
    hec.push_fault(Fault::Status {
        status: 429,
        code: 9,
        retry_after: Some(2),
    });
    engine.add("d", &hec, "t", None);
    engine.dispatcher.start().unwrap();
    engine.dispatch(events("m", "c", 0..10)).await;
    let retrying = wait_until(WAIT, || {
        matches!(
            engine.dispatcher.state("d"),
            Ok(DestinationState::Retrying(_))
        )
    })
    .await;
    assert!(retrying, "{:?}", engine.dispatcher.state("d"));
    let DestinationState::Retrying(reason) = engine.dispatcher.state("d").unwrap() else {
        unreachable!()
    };
    assert!(reason.contains("429"), "{reason}");
    assert_eq!(hec.accepted_count(), 0);
    assert!(hec.wait_for(10, WAIT).await);
    assert!(
        wait_until(WAIT, || engine.dispatcher.state("d").unwrap()
            == DestinationState::Ok)
        .await
    );
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// With one request in flight (the default) events arrive in queue order, also when a
/// delivery halts: the halted batch goes back to the head of the queue, and nothing leased
/// after it goes out first. (Until the worker leased on its own task it also held the
/// next batch, leased ahead during the send, which had to go back too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_order_when_a_delivery_halts() {
    let engine = Engine::new();
    let hec = HecReceiver::start("t").await;
    // Three batches through, then the fourth halts (no quick retries).
    for _ in 0..3 {
        hec.push_fault(Fault::Slow(Duration::from_millis(1)));
    }
    hec.push_fault(Fault::Status {
        status: 503,
        code: 9,
        retry_after: None,
    });
    engine.add_with("d", &hec, "t", None, |c| {
        c.retry_count = 0;
        c.batch_size = 50;
    });
    engine.dispatcher.start().unwrap();
    let batch = events("m", "c", 0..1000);
    engine.dispatch(batch.clone()).await;
    let arrived = hec.wait_for(1000, WAIT).await;
    assert!(arrived, "got {}", hec.accepted_count());
    let expected: Vec<String> = batch.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(hec.accepted(), expected, "arrival order");
    assert!(engine.dispatcher.stats().total.retried >= 1);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// Disabled during a slow send, a destination holds no undelivered batch: while disabled,
/// the queue's head is the first undelivered event, and the delivered batch is acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_disabled_during_a_send_holds_no_further_batch() {
    let engine = Engine::new();
    let hec = HecReceiver::start("t").await;
    // The first batch is answered slowly: the destination is disabled meanwhile.
    hec.push_fault(Fault::Slow(Duration::from_millis(800)));
    engine.add_with("d", &hec, "t", None, |c| c.batch_size = 50);
    engine.dispatcher.start().unwrap();
    let batch = events("m", "c", 0..500);
    engine.dispatch(batch.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine.dispatcher.set_enabled("d", false).unwrap();
    assert!(hec.wait_for(50, WAIT).await, "the slow batch arrives");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hec.accepted_count(), 50);
    let name = engine
        .store()
        .list_queues()
        .unwrap()
        .into_iter()
        .find(|q| q.ends_with(":d"))
        .unwrap();
    let queue = engine.store().open_queue(&name).unwrap();
    // The delivered batch is acked while disabled, not held until the next lease.
    let deadline = std::time::Instant::now() + WAIT;
    while queue.stats().len != 450 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(queue.stats().len, 450);
    let head = queue.lease(1, usize::MAX).unwrap().expect("events queued");
    let first = String::from_utf8_lossy(&head.records[0].data).into_owned();
    assert!(first.contains("\"evt-50\""), "queue head: {first}");
    queue.release(head);
    engine.dispatcher.set_enabled("d", true).unwrap();
    let arrived = hec.wait_for(500, WAIT).await;
    assert!(arrived, "got {}", hec.accepted_count());
    let expected: Vec<String> = batch.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(hec.accepted(), expected, "arrival order");
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_dead_lettered_and_the_rest_delivered() {
    let engine = Engine::new();
    let hec = HecReceiver::start("t").await;
    let batch = events("m", "c", 0..100);
    let poison = batch[37].event_id.clone();
    hec.poison(&poison);
    engine.add_with("d", &hec, "t", None, |c| c.batch_size = 100);
    engine.dispatch(batch.clone()).await;
    engine.dispatcher.start().unwrap();
    assert!(engine.dispatcher.drain(WAIT).await);
    let accepted = as_set(&hec.accepted());
    assert_eq!(accepted.len(), 99);
    assert!(!accepted.contains(&poison));
    let letters = raxe_engine::dead_letter::ops::list(engine.store(), "d", 10).unwrap();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].header.reason.contains("400"),
        "{}",
        letters[0].header.reason
    );
    let event = raxe_adapters::event::ScanEvent::from_queue_bytes(&letters[0].event).unwrap();
    assert_eq!(event.event_id, poison);
    assert_eq!(engine.dispatcher.stats().total.dead_lettered, 1);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_keeps_events_queued_until_reconfigured() {
    let engine = Engine::new();
    let hec = HecReceiver::start("right").await;
    engine.add("d", &hec, "wrong", None);
    engine.dispatcher.start().unwrap();
    let batch = events("m", "c", 0..50);
    engine.dispatch(batch.clone()).await;
    let stopped = wait_until(WAIT, || engine.dispatcher.state("d").unwrap().is_stopped()).await;
    assert!(stopped, "state: {:?}", engine.dispatcher.state("d"));
    assert!(matches!(
        engine.dispatcher.state("d").unwrap(),
        DestinationState::AuthFailed(_)
    ));
    assert_eq!(hec.accepted_count(), 0);
    assert_eq!(engine.dispatcher.stats().queued(), 50, "nothing lost");
    engine.add("d", &hec, "right", None);
    assert!(hec.wait_for(50, WAIT).await);
    assert_eq!(as_set(&hec.accepted()), ids(&batch));
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_siem_does_not_slow_another_destination() {
    let engine = Engine::new();
    let stuck = HecReceiver::start("t").await;
    stuck.set_always_hang(true);
    let healthy = HecReceiver::start("t").await;
    engine.add("stuck", &stuck, "t", Some(CustomerKey::new("m", "a")));
    engine.add("healthy", &healthy, "t", Some(CustomerKey::new("m", "b")));
    engine.dispatcher.start().unwrap();
    engine.dispatch(events("m", "a", 0..500)).await;
    let batch = events("m", "b", 1000..3000);
    engine.dispatch(batch.clone()).await;
    // The stuck destination's requests time out after 1 s each; the healthy one must finish
    // its 20 batches while the other is still stuck in its first.
    assert!(healthy.wait_for(2000, Duration::from_secs(10)).await);
    assert_eq!(as_set(&healthy.accepted()), ids(&batch));
    assert_eq!(stuck.accepted_count(), 0);
    engine.dispatcher.shutdown(Duration::from_millis(200)).await;
}

/// One batch mixing customers event by event (a routed one, another MSSP's customer of
/// the same name, one with no destination): each event goes to its own queue, in batch
/// order, and the report counts every placement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_mixing_customers_is_routed_event_by_event() {
    let engine = Engine::new();
    let acme = HecReceiver::start("tok-a").await;
    let globex = HecReceiver::start("tok-b").await;
    engine.add("acme", &acme, "tok-a", Some(CustomerKey::new("m1", "acme")));
    engine.add(
        "globex",
        &globex,
        "tok-b",
        Some(CustomerKey::new("m1", "globex")),
    );
    let a = events("m1", "acme", 0..4);
    let b = events("m1", "globex", 10..14);
    let other_mssp = events("m2", "acme", 20..22);
    let nobody = events("m1", "nobody", 30..32);
    let mut batch = Vec::new();
    for i in 0..4 {
        batch.push(a[i].clone());
        batch.push(b[i].clone());
        if i < 2 {
            batch.push(other_mssp[i].clone());
            batch.push(nobody[i].clone());
        }
    }
    let report = engine.dispatch(batch.clone()).await;
    assert_eq!(report.accepted, 12);
    assert_eq!(report.queued, 8);
    assert_eq!(report.unrouted, 4);
    assert_eq!(engine.dispatcher.stats().unrouted.len, 4);

    engine.dispatcher.start().unwrap();
    assert!(acme.wait_for(4, WAIT).await);
    assert!(globex.wait_for(4, WAIT).await);
    assert!(engine.dispatcher.drain(WAIT).await);
    let in_order = |events: &[ScanEvent]| -> Vec<String> {
        events.iter().map(|e| e.event_id.clone()).collect()
    };
    assert_eq!(acme.accepted(), in_order(&a));
    assert_eq!(globex.accepted(), in_order(&b));
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_destination_accumulates_and_delivers_when_enabled() {
    let engine = Engine::new();
    let hec = HecReceiver::start("t").await;
    engine.add("d", &hec, "t", None);
    engine.dispatcher.start().unwrap();
    engine.dispatcher.set_enabled("d", false).unwrap();
    let batch = events("m", "c", 0..120);
    engine.dispatch(batch.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hec.accepted_count(), 0);
    assert_eq!(
        engine.dispatcher.state("d").unwrap(),
        DestinationState::Disabled
    );
    engine.dispatcher.set_enabled("d", true).unwrap();
    assert!(hec.wait_for(120, WAIT).await);
    engine
        .dispatcher
        .remove_destination("d", RemovePolicy::Drop)
        .unwrap();
    assert!(engine
        .store()
        .list_queues()
        .unwrap()
        .iter()
        .all(|q| !q.ends_with(":d")));
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_delivery_loses_nothing_and_repeats_little() {
    let dir = tempfile::tempdir().unwrap();
    let hec = HecReceiver::start("t").await;
    let batch = events("m", "c", 0..2_000);
    {
        let engine = Engine::open(dir.path());
        engine.add_with("d", &hec, "t", None, |c| c.batch_size = 100);
        engine.dispatch(batch.clone()).await;
        hec.push_fault(Fault::Slow(Duration::from_millis(200)));
        engine.dispatcher.start().unwrap();
        assert!(hec.wait_for(500, WAIT).await);
        // Stop with a request in flight: the shutdown deadline is shorter than the answer.
        hec.push_fault(Fault::Slow(Duration::from_secs(2)));
        engine.dispatcher.shutdown(Duration::from_millis(50)).await;
    }
    let engine = Engine::open(dir.path());
    engine.add_with("d", &hec, "t", None, |c| c.batch_size = 100);
    engine.dispatcher.start().unwrap();
    assert!(engine.dispatcher.drain(WAIT).await);
    let accepted = hec.accepted();
    assert_eq!(as_set(&accepted), ids(&batch), "every event delivered");
    let duplicates = accepted.len() - batch.len();
    assert!(
        duplicates <= 100,
        "{duplicates} duplicates, more than the one batch in flight"
    );
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// A crash after a refused event was dead-lettered but before its lease was acked: the
/// event comes back, is refused again, and must not be dead-lettered twice.
#[test]
fn a_crash_between_dead_letter_and_ack_writes_the_dead_letter_once() {
    let dir = tempfile::tempdir().unwrap();
    let receivers = tokio::runtime::Runtime::new().unwrap();
    let hec = receivers.block_on(HecReceiver::start("t"));
    let batch = events("m", "c", 0..10);
    hec.poison("evt-3");
    let dead_letters = |engine: &Engine| engine.dispatcher.stats().destinations[0].dead_letters.len;
    {
        // The engine's own runtime, dropped mid-request below: a crash, no ack.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let engine = runtime.block_on(async {
            let engine = Engine::open(dir.path());
            engine.add_with("d", &hec, "t", None, |c| {
                c.batch_size = 10;
                c.timeout_seconds = 30;
            });
            engine.dispatch(batch.clone()).await;
            hec.push_fault(Fault::Slow(Duration::ZERO)); // answered: 400 for evt-3
            hec.push_fault(Fault::Slow(Duration::ZERO)); // evt-0..2 again, delivered
            hec.push_fault(Fault::Hang); // evt-4..9 never get an answer
            engine.dispatcher.start().unwrap();
            assert!(wait_until(WAIT, || dead_letters(&engine) == 1).await);
            engine
        });
        runtime.shutdown_background();
        drop(engine);
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let engine = Engine::open(dir.path());
        engine.add_with("d", &hec, "t", None, |c| c.batch_size = 10);
        engine.dispatcher.start().unwrap();
        assert!(engine.dispatcher.drain(WAIT).await);
        let mut expected = ids(&batch);
        expected.remove("evt-3");
        assert_eq!(as_set(&hec.accepted()), expected);
        assert_eq!(
            dead_letters(&engine),
            1,
            "the same dead letter written twice"
        );
        let store = engine.store();
        let letters = raxe_engine::dead_letter::ops::list(store, "d", 10).unwrap();
        assert_eq!(letters.len(), 1);
        engine.dispatcher.shutdown(Duration::from_secs(5)).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_queued_in_the_earlier_record_format_deliver_unchanged() {
    let engine = Engine::new();
    let hec = HecReceiver::start("t").await;
    engine.add("d", &hec, "t", None);
    let old = events("m", "c", 0..30);
    let new = events("m", "c", 30..60);
    // What an earlier version left queued (v1), then what this one writes (v2).
    let queue = engine
        .store()
        .open_queue(&raxe_engine::queue_names::destination("d"))
        .unwrap();
    let v1: Vec<Vec<u8>> = old
        .iter()
        .map(raxe_adapters::event::to_v1_queue_bytes)
        .collect();
    let v1: Vec<&[u8]> = v1.iter().map(Vec::as_slice).collect();
    queue.append(&v1).unwrap();
    engine.dispatch(new.clone()).await;
    engine.dispatcher.start().unwrap();
    assert!(hec.wait_for(60, WAIT).await);
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(hec.accepted_count(), 60);
    // Both formats give the same envelope: the event object and its exact time.
    let all: Vec<_> = old.iter().chain(&new).collect();
    let envelopes = hec.envelopes();
    for (envelope, event) in envelopes.iter().zip(all) {
        assert_eq!(envelope["event"], serde_json::to_value(event).unwrap());
        let time = envelope["time"].as_f64().unwrap();
        assert_eq!((time * 1000.0).round() as i64, event.timestamp_ms);
    }
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_built_in_code_that_would_not_read_back_is_refused_whole_batch() {
    let engine = Engine::new();
    let hec = HecReceiver::start("t").await;
    engine.add("d", &hec, "t", None);
    let mut batch = events("m", "c", 0..5);
    batch[3].customer_id = " ".into();
    let err = engine
        .dispatcher
        .dispatch_batch_async(batch)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("customer_id"), "{err}");
    assert_eq!(
        engine.dispatcher.stats().queued(),
        0,
        "nothing of the batch queued"
    );
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_settles_every_ack_so_a_restart_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let hec = HecReceiver::start("t").await;
    let batch = events("m", "c", 0..1_050);
    {
        let engine = Engine::open(dir.path());
        engine.add_with("d", &hec, "t", None, |c| c.batch_size = 100);
        engine.dispatch(batch.clone()).await;
        engine.dispatcher.start().unwrap();
        assert!(hec.wait_for(1_050, WAIT).await);
        // Acks of the last batches may still run in the background: shutdown waits.
        engine.dispatcher.shutdown(Duration::from_secs(5)).await;
    }
    let engine = Engine::open(dir.path());
    engine.add_with("d", &hec, "t", None, |c| c.batch_size = 100);
    assert_eq!(engine.dispatcher.stats().queued(), 0, "every batch acked");
    engine.dispatcher.start().unwrap();
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(hec.accepted_count(), 1_050, "nothing sent twice");
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// A record that does not decode is settled only by its dead letter: while the dead-letter
/// queue refuses it (full), the record stays queued; once there is room it is moved there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_stays_queued_until_it_can_be_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let hec = HecReceiver::start("t").await;
    let garbage: &[u8] = b"not a queue record";
    {
        // Room for the record (18 bytes), none for its dead letter (header + record).
        let capped = raxe_storage::StoreOptions {
            max_queue_bytes: Some(40),
            ..Default::default()
        };
        let engine = Engine::open_with(dir.path(), capped);
        engine.add("d", &hec, "t", None);
        let queue = engine
            .store()
            .open_queue(&raxe_engine::queue_names::destination("d"))
            .unwrap();
        queue.append(&[garbage]).unwrap();
        engine.dispatcher.start().unwrap();
        let refused = wait_until(WAIT, || {
            matches!(
                engine.dispatcher.state("d"),
                Ok(DestinationState::Degraded(reason)) if reason.contains("dead-letter")
            )
        })
        .await;
        assert!(refused, "state: {:?}", engine.dispatcher.state("d"));
        // Let the worker try again a few times.
        tokio::time::sleep(Duration::from_millis(500)).await;
        engine.dispatcher.shutdown(Duration::from_secs(5)).await;
        assert_eq!(queue.stats().len, 1, "acked without its dead letter");
    }
    let engine = Engine::open(dir.path());
    engine.add("d", &hec, "t", None);
    engine.dispatcher.start().unwrap();
    assert!(engine.dispatcher.drain(WAIT).await);
    let letters = raxe_engine::dead_letter::ops::list(engine.store(), "d", 10).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event, garbage);
    assert!(
        letters[0].header.reason.contains("undecodable"),
        "{}",
        letters[0].header.reason
    );
    assert_eq!(hec.accepted_count(), 0);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// New options for a destination give it new workers over the same queue; they start only
/// once the old ones have stopped, so a batch still in flight is never overtaken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_workers_of_a_replaced_destination_wait_for_the_old_ones() {
    let engine = Engine::new();
    let hec = HecReceiver::start("t").await;
    hec.push_fault(Fault::Slow(Duration::from_millis(1500)));
    engine.add_with("d", &hec, "t", None, |c| c.batch_size = 50);
    let batch = events("m", "c", 0..300);
    engine.dispatch(batch.clone()).await;
    engine.dispatcher.start().unwrap();
    // The first batch is at the SIEM, held for a while; the worker has leased the next.
    assert!(wait_until(WAIT, || hec.requests() >= 1).await);
    let mut config = splunk_config(&hec.url(), "t");
    config.batch_size = 50;
    let adapter = raxe_adapters::create_siem_adapter(config).unwrap();
    let options = raxe_engine::DestinationOptions {
        max_batch_bytes: 500_000,
        ..Default::default()
    };
    engine
        .dispatcher
        .register_destination("d", adapter.into(), None, options)
        .unwrap();
    assert!(
        hec.wait_for(300, WAIT).await,
        "got {}",
        hec.accepted_count()
    );
    let expected: Vec<String> = batch.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(hec.accepted(), expected, "arrival order");
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// A destination stopped for a bad token, then removed (queue kept) and added back with
/// the right one: the old worker leaves its wait for a new configuration when retired, so
/// the new one (which waits for it) delivers everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_removed_while_stopped_and_added_back_delivers() {
    let engine = Engine::new();
    let hec = HecReceiver::start("right").await;
    engine.add("d", &hec, "wrong", None);
    engine.dispatcher.start().unwrap();
    let batch = events("m", "c", 0..120);
    engine.dispatch(batch.clone()).await;
    let stopped = wait_until(WAIT, || engine.dispatcher.state("d").unwrap().is_stopped()).await;
    assert!(stopped, "state: {:?}", engine.dispatcher.state("d"));
    engine
        .dispatcher
        .remove_destination("d", RemovePolicy::Keep)
        .unwrap();
    engine.add("d", &hec, "right", None);
    assert!(
        hec.wait_for(120, WAIT).await,
        "got {}",
        hec.accepted_count()
    );
    assert_eq!(as_set(&hec.accepted()), ids(&batch));
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// A worker waiting between quick retries (here a 30 s Retry-After) stops at once when its
/// destination is replaced, so the new workers, which wait for it, deliver without delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_destination_does_not_wait_out_the_old_workers_retry_pause() {
    let engine = Engine::with_policy(raxe_engine::BackoffPolicy {
        retry_after_max: Duration::from_secs(60),
        ..fast_policy()
    });
    let hec = HecReceiver::start("t").await;
    hec.push_fault(Fault::Status {
        status: 503,
        code: 9,
        retry_after: Some(30),
    });
    engine.add("d", &hec, "t", None);
    let batch = events("m", "c", 0..50);
    engine.dispatch(batch.clone()).await;
    engine.dispatcher.start().unwrap();
    assert!(wait_until(WAIT, || hec.requests() >= 1).await);
    let mut config = splunk_config(&hec.url(), "t");
    config.batch_size = 50;
    let options = raxe_engine::DestinationOptions {
        max_batch_bytes: 500_000,
        ..Default::default()
    };
    engine
        .dispatcher
        .register_destination(
            "d",
            raxe_adapters::create_siem_adapter(config).unwrap().into(),
            None,
            options,
        )
        .unwrap();
    // Well within the 30 s the old worker would have slept.
    assert!(hec.wait_for(50, WAIT).await, "got {}", hec.accepted_count());
    assert_eq!(as_set(&hec.accepted()), ids(&batch));
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// A destination id keeps its customer: its queue holds that customer's events, which must
/// never go to another customer's SIEM. Ids with '/' inside a part are refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_cannot_change_customer_under_the_same_id() {
    let engine = Engine::new();
    let acme = HecReceiver::start("t").await;
    let globex = HecReceiver::start("t").await;
    engine.add("d", &acme, "t", Some(CustomerKey::new("m", "acme")));
    let batch = events("m", "acme", 0..20);
    engine.dispatch(batch.clone()).await;
    let refused = engine.register(
        "d",
        splunk_config(&globex.url(), "t"),
        Some(CustomerKey::new("m", "globex")),
    );
    assert!(refused.is_err(), "{refused:?}");
    engine.dispatcher.start().unwrap();
    assert!(acme.wait_for(20, WAIT).await);
    assert_eq!(globex.accepted_count(), 0);
    let adapter = raxe_adapters::create_siem_adapter(splunk_config(&acme.url(), "t")).unwrap();
    let err = engine
        .dispatcher
        .register_adapter(adapter, Some(CustomerKey::new("a/b", "c")))
        .unwrap_err();
    assert!(err.to_string().contains('/'), "{err}");
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}
