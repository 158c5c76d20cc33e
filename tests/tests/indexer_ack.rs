//! Splunk indexer acknowledgement end to end: SiemDispatcher → sled queues → workers →
//! HEC adapter with `ack` on → a real hyper HEC receiver with indexer acks on 127.0.0.1.
//! Events must leave the queue only once the receiver reported their request indexed.

mod support;

#[path = "indexer_ack/shutdown.rs"]
mod shutdown;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use raxe_adapters::config::{Compression, SiemConfig, SiemOptions, SplunkOptions};
use raxe_adapters::event::ScanEvent;
use raxe_adapters::splunk::ack::new_channel;
use raxe_engine::{DestinationOptions, DestinationState};
use raxe_tests::hec_ack::{AckMode, HecAckReceiver};
use support::*;

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "tok-ack";

/// An ack-enabled Splunk destination: 1 s ack interval, `timeout` s ack timeout.
fn ack_config(hec: &HecAckReceiver, channel: &str, timeout: u64, batch: usize) -> SiemConfig {
    ack_config_for(&hec.url(), channel, timeout, batch)
}

fn ack_config_for(url: &str, channel: &str, timeout: u64, batch: usize) -> SiemConfig {
    let mut config = SiemConfig::with_options(
        url,
        TOKEN,
        SiemOptions::Splunk(SplunkOptions {
            ack: true,
            channel: Some(channel.to_string()),
            ack_interval_seconds: 1,
            ack_timeout_seconds: timeout,
            compression: Compression::Gzip,
            ..Default::default()
        }),
    )
    .unwrap();
    config.flush_interval_seconds = 0;
    config.timeout_seconds = 5;
    config.batch_size = batch;
    config
}

fn add(engine: &Engine, id: &str, config: SiemConfig, lanes: usize) {
    let adapter = raxe_adapters::create_siem_adapter(config).unwrap();
    engine
        .dispatcher
        .register_destination(
            id,
            adapter.into(),
            None,
            DestinationOptions {
                max_in_flight: lanes,
                ..DestinationOptions::default()
            },
        )
        .unwrap();
}

fn queued(engine: &Engine) -> u64 {
    engine.dispatcher.stats().queued()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_leave_the_queue_only_after_the_indexer_acks() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::After(Duration::from_secs(3))).await;
    let channel = new_channel();
    add(&engine, "d", ack_config(&hec, &channel, 20, 50), 2);
    let batch = events("m", "c", 0..250);
    engine.dispatch(batch.clone()).await;
    engine.dispatcher.start().unwrap();

    assert!(hec.wait_for(250, WAIT).await);
    // Every batch went out before any was indexed: workers do not wait for acks...
    assert!(
        hec.indexed().is_empty(),
        "acks turned true before all batches were sent"
    );
    // ...and nothing left the queue on a bare 200.
    assert_eq!(queued(&engine), 250);
    assert!(hec.unconfirmed() >= 5, "one ack id per request");
    // Accepted requests count as successful (once their 200 is read: the receiver counts
    // the events first), their events as delivered only once indexed.
    assert!(wait_until(WAIT, || engine.dispatcher.stats().total.successful >= 5).await);
    let before = engine.dispatcher.stats().total;
    assert_eq!(before.events_delivered, 0, "{before:?}");

    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(queued(&engine), 0);
    assert_eq!(engine.dispatcher.stats().total.events_delivered, 250);
    assert_eq!(as_set(&hec.indexed()), ids(&batch));
    assert_eq!(
        hec.accepted().len(),
        250,
        "no resend while acks arrive in time"
    );
    assert!(hec.polls() >= 1);
    let channels: HashSet<String> = hec.seen_channels().into_iter().collect();
    assert_eq!(channels, HashSet::from([channel]));
    assert_eq!(engine.dispatcher.state("d").unwrap(), DestinationState::Ok);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_that_stays_false_is_resent_after_the_ack_timeout() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    add(&engine, "d", ack_config(&hec, &new_channel(), 2, 20), 1);
    let batch = events("m", "c", 0..20);
    engine.dispatch(batch.clone()).await;
    engine.dispatcher.start().unwrap();

    assert!(hec.wait_for(20, WAIT).await);
    assert_eq!(queued(&engine), 20);
    // Never acked: sent again once the 2 s ack timeout has passed, and still queued.
    assert!(
        hec.wait_for(40, WAIT).await,
        "not resent after the ack timeout"
    );
    assert_eq!(queued(&engine), 20);
    assert!(hec.indexed().is_empty());

    // The indexer recovers: the next copy is acked and the queue empties.
    hec.set_mode(AckMode::After(Duration::ZERO));
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(queued(&engine), 0);
    assert_eq!(as_set(&hec.indexed()), ids(&batch));
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_that_forgot_its_ids_gets_the_events_again() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    add(&engine, "d", ack_config(&hec, &new_channel(), 3, 10), 1);
    let batch = events("m", "c", 0..30);
    engine.dispatch(batch.clone()).await;
    engine.dispatcher.start().unwrap();
    assert!(hec.wait_for(30, WAIT).await);
    // Splunk restarts: the ids it issued are gone and polls for them answer false.
    hec.restart();
    hec.set_mode(AckMode::After(Duration::ZERO));
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(queued(&engine), 0);
    assert_eq!(as_set(&hec.indexed()), ids(&batch));
    assert!(
        hec.accepted().len() >= 60,
        "forgotten requests must be resent"
    );
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_disabled_on_the_token_stops_the_destination_with_a_hint() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    let channel = new_channel();
    add(&engine, "d", ack_config(&hec, &channel, 20, 10), 1);
    engine.dispatch(events("m", "c", 0..10)).await;
    engine.dispatcher.start().unwrap();
    assert!(hec.wait_for(10, WAIT).await);
    // The token loses useACK while the ids are pending: the poll answers code 14.
    hec.set_mode(AckMode::Disabled);
    let stopped = wait_until(WAIT, || {
        matches!(
            engine.dispatcher.state("d"),
            Ok(DestinationState::Misconfigured(_))
        )
    })
    .await;
    assert!(stopped, "state {:?}", engine.dispatcher.state("d"));
    let Ok(DestinationState::Misconfigured(reason)) = engine.dispatcher.state("d") else {
        unreachable!()
    };
    // The poll's code 14 (or, if a lane raced it, the ack-less 200 that followed).
    assert!(reason.contains("useACK"), "no hint: {reason}");
    assert!(!reason.contains(TOKEN));
    assert_eq!(queued(&engine), 10, "events stay queued");

    // A stopped destination sends nothing more; new events queue behind.
    engine.dispatch(events("m", "c", 10..15)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(queued(&engine), 15);

    // The operator turns useACK back on and reloads the destination: all delivered.
    hec.set_mode(AckMode::After(Duration::ZERO));
    add(&engine, "d", ack_config(&hec, &channel, 20, 10), 1);
    // drain gives up at once on stopped destinations: let the worker see the new config.
    let resumed = wait_until(WAIT, || {
        engine.dispatcher.state("d").ok() == Some(DestinationState::Ok)
    })
    .await;
    assert!(resumed, "state {:?}", engine.dispatcher.state("d"));
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(queued(&engine), 0);
    let indexed = as_set(&hec.indexed());
    assert_eq!(indexed, ids(&events("m", "c", 0..15)));
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_ack_never_lets_events_go_on_a_bare_200() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Disabled).await;
    add(&engine, "d", ack_config(&hec, &new_channel(), 20, 10), 1);
    engine.dispatch(events("m", "c", 0..10)).await;
    engine.dispatcher.start().unwrap();
    let stopped = wait_until(WAIT, || {
        matches!(
            engine.dispatcher.state("d"),
            Ok(DestinationState::Misconfigured(_))
        )
    })
    .await;
    assert!(stopped, "state {:?}", engine.dispatcher.state("d"));
    let Ok(DestinationState::Misconfigured(reason)) = engine.dispatcher.state("d") else {
        unreachable!()
    };
    assert!(reason.contains("no ackId"), "{reason}");
    assert_eq!(queued(&engine), 10);
    assert_eq!(hec.accepted().len(), 10);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_acks_pending_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    let channel = new_channel();
    let batch = events("m", "c", 0..200);
    {
        let engine = Engine::open(dir.path());
        add(&engine, "d", ack_config(&hec, &channel, 60, 50), 1);
        engine.dispatch(batch.clone()).await;
        engine.dispatcher.start().unwrap();
        assert!(hec.wait_for(200, WAIT).await);
        assert_eq!(queued(&engine), 200);
        engine.dispatcher.shutdown(Duration::from_millis(50)).await;
    }
    // The pending acks were in memory only: the reopened store still holds every event.
    hec.set_mode(AckMode::After(Duration::from_millis(200)));
    let engine = Engine::open(dir.path());
    assert_eq!(
        engine
            .store()
            .open_queue(&raxe_engine::queue_names::destination("d"))
            .unwrap()
            .stats()
            .len,
        200
    );
    add(&engine, "d", ack_config(&hec, &channel, 60, 50), 1);
    engine.dispatcher.start().unwrap();
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(queued(&engine), 0);
    assert_eq!(as_set(&hec.indexed()), ids(&batch));
    // Resend on restart: each pending request once more, no more.
    assert_eq!(hec.accepted().len(), 400);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_split_into_requests_waits_for_each_requests_ack() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    hec.poison("evt-7");
    let mut config = ack_config(&hec, &new_channel(), 20, 30);
    if let SiemOptions::Splunk(o) = &mut config.extra {
        // About three envelopes per request: one lease becomes ~10 requests.
        o.max_request_bytes = 2_000;
    }
    add(&engine, "d", config, 1);
    let batch = events("m", "c", 0..30);
    engine.dispatch(batch.clone()).await;
    engine.dispatcher.start().unwrap();

    assert!(hec.wait_for(29, WAIT).await);
    let dead = wait_until(WAIT, || {
        engine.dispatcher.stats().destinations[0].dead_letters.len == 1
    })
    .await;
    assert!(dead, "the poison event is dead-lettered");
    assert!(
        hec.unconfirmed() >= 8,
        "one ack id per request: {}",
        hec.unconfirmed()
    );
    // The dead letter left the queue at once; the 29 accepted events wait for acks.
    let settled = wait_until(WAIT, || queued(&engine) == 29).await;
    assert!(settled, "queued {}", queued(&engine));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(queued(&engine), 29);

    hec.set_mode(AckMode::After(Duration::ZERO));
    assert!(engine.dispatcher.drain(WAIT).await);
    let mut expected = ids(&batch);
    expected.remove("evt-7");
    assert_eq!(as_set(&hec.indexed()), expected);
    assert_eq!(
        hec.accepted().len(),
        29,
        "every request acked once, none resent"
    );
    assert_eq!(
        engine.dispatcher.stats().destinations[0].dead_letters.len,
        1
    );
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_acks_are_capped_so_the_worker_waits() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    // One event per request, so every request is one pending lease.
    let channel = new_channel();
    add(&engine, "d", ack_config(&hec, &channel, 60, 1), 1);
    let batch = events("m", "c", 0..100);
    engine.dispatch(batch.clone()).await;
    engine.dispatcher.start().unwrap();
    assert!(hec.wait_for(64, WAIT).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hec.accepted().len(),
        64,
        "no more than 64 requests wait for acks"
    );
    assert_eq!(queued(&engine), 100);

    // A reload with a wider window (`--ack-max-pending 80`) makes room for 16 more at
    // once, keeping the 64 (same channel).
    let mut wider = ack_config(&hec, &channel, 60, 1);
    if let SiemOptions::Splunk(o) = &mut wider.extra {
        o.ack_max_pending = 80;
    }
    add(&engine, "d", wider, 1);
    assert!(hec.wait_for(80, WAIT).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hec.accepted().len(), 80, "80 requests wait for acks");

    hec.set_mode(AckMode::After(Duration::ZERO));
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(as_set(&hec.indexed()), ids(&batch));
    assert_eq!(hec.accepted().len(), 100);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// A busy destination fills the tracker long before the ack interval (Splunk's 10 s
/// default) is up: the poller then polls every second, so it is not held to 64 requests
/// per interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tracker_is_polled_every_second_whatever_the_interval() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::After(Duration::ZERO)).await;
    let mut config = ack_config(&hec, &new_channel(), 60, 1);
    if let SiemOptions::Splunk(o) = &mut config.extra {
        o.ack_interval_seconds = 10;
    }
    add(&engine, "d", config, 1);
    // One event per request: 200 requests, 64 of them fill the tracker.
    let batch = events("m", "c", 0..200);
    engine.dispatch(batch.clone()).await;
    engine.dispatcher.start().unwrap();
    assert!(hec.wait_for(64, WAIT).await);

    // Within 8 s (the first poll of the interval alone would come at 10 s), polls a
    // second apart have made room for all of them.
    let polled = wait_until(Duration::from_secs(8), || hec.polls() >= 3).await;
    assert!(polled, "{} polls", hec.polls());
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(as_set(&hec.indexed()), ids(&batch));
    assert_eq!(hec.accepted().len(), 200, "nothing resent");
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// ...and while its polls confirm nothing (a slow or stuck indexer), a second apart for the
/// first four seconds of the wait (an indexer that takes 1.5 s is seen at 2 s), then a
/// quarter of the wait apart: about 5.1, 6.3, 7.9, 9.9, 12.4, 15.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tracker_whose_polls_confirm_nothing_is_polled_less_and_less() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    let mut config = ack_config(&hec, &new_channel(), 60, 1);
    if let SiemOptions::Splunk(o) = &mut config.extra {
        o.ack_interval_seconds = 10;
    }
    add(&engine, "d", config, 1);
    engine.dispatch(events("m", "c", 0..100)).await;
    engine.dispatcher.start().unwrap();
    assert!(hec.wait_for(64, WAIT).await);
    // The first look, a second into the wait.
    assert!(wait_until(WAIT, || hec.polls() >= 1).await);
    let first = std::time::Instant::now();
    let polls_by = |after: Duration| {
        let hec = &hec;
        async move {
            tokio::time::sleep_until((first + after).into()).await;
            hec.polls()
        }
    };
    let early = polls_by(Duration::from_millis(3_500)).await;
    assert!(
        early >= 4,
        "{early} polls by 4.5 s into the wait: not a second apart"
    );
    let before = polls_by(Duration::from_millis(7_500)).await;
    let after = polls_by(Duration::from_millis(13_500)).await;
    assert!(
        (1..=3).contains(&(after - before)),
        "{} polls from 8.5 to 14.5 s into a wait that confirmed nothing",
        after - before
    );
    assert_eq!(hec.accepted().len(), 64, "no more room, nothing resent");
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// ...and once a poll confirmed some of a full window, the rest is looked at when it has
/// waited as long as the youngest one confirmed had, not a whole look later: of four
/// requests sent 0.15 s apart and indexed 1.6 s after arrival, with more queued behind
/// them, the first three are confirmed at the 2 s look and the last at the next poll,
/// 250 ms later, where a look a second later would see it at 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_of_a_full_window_is_polled_when_it_has_waited_what_sufficed() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::After(Duration::from_millis(1_600))).await;
    let mut config = ack_config(&hec, &new_channel(), 60, 10);
    if let SiemOptions::Splunk(o) = &mut config.extra {
        o.ack_interval_seconds = 10;
        o.ack_max_pending = 4;
    }
    add(&engine, "d", config, 1);
    engine.dispatcher.start().unwrap();
    let started = std::time::Instant::now();
    for request in 0..4 {
        engine
            .dispatch(events("m", "c", request * 10..request * 10 + 10))
            .await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // A backlog keeps the window full once the first requests are confirmed.
    engine.dispatch(events("m", "c", 40..100)).await;
    let first_window = ids(&events("m", "c", 0..40));
    let confirmed = || as_set(&hec.indexed()).is_superset(&first_window);
    assert!(wait_until(WAIT, confirmed).await);
    let all_confirmed = started.elapsed();
    assert!(
        all_confirmed < Duration::from_millis(2_650),
        "the first window was confirmed {all_confirmed:?} after its first request was sent"
    );
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(hec.accepted().len(), 100, "nothing resent");
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_pending_acks_but_a_new_channel_resends() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    let channel = new_channel();
    add(&engine, "d", ack_config(&hec, &channel, 30, 10), 1);
    engine.dispatch(events("m", "c", 0..20)).await;
    engine.dispatcher.start().unwrap();
    assert!(hec.wait_for(20, WAIT).await);

    // The service re-registers unchanged destinations on every reload: same channel,
    // same ids, nothing to resend.
    add(&engine, "d", ack_config(&hec, &channel, 30, 10), 1);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(hec.accepted().len(), 20, "a reload must not resend");

    // A new channel cannot confirm the old ids: the events go out again on it.
    let other = new_channel();
    add(&engine, "d", ack_config(&hec, &other, 30, 10), 1);
    assert!(
        hec.wait_for(40, WAIT).await,
        "not resent on the new channel"
    );
    hec.set_mode(AckMode::After(Duration::ZERO));
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(hec.accepted().len(), 40);
    assert_eq!(as_set(&hec.indexed()), ids(&events("m", "c", 0..20)));
    // Two requests of 10 on each channel.
    let seen = hec.seen_channels();
    assert_eq!(seen.len(), 4);
    let last: HashSet<String> = seen[2..].iter().cloned().collect();
    assert_eq!(last, HashSet::from([other]));
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_with_acks_pending_keeps_the_events_queued() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    add(&engine, "d", ack_config(&hec, &new_channel(), 30, 10), 1);
    let batch = events("m", "c", 0..20);
    engine.dispatch(batch.clone()).await;
    engine.dispatcher.start().unwrap();
    assert!(hec.wait_for(20, WAIT).await);

    engine.dispatcher.set_enabled("d", false).unwrap();
    // A disabled destination sends nothing, polls included, and acks nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let polls = hec.polls();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(hec.polls(), polls);
    assert_eq!(queued(&engine), 20);
    assert_eq!(hec.accepted().len(), 20);

    hec.set_mode(AckMode::After(Duration::ZERO));
    engine.dispatcher.set_enabled("d", true).unwrap();
    // drain gives up at once on disabled destinations: let the worker see the change.
    let resumed = wait_until(WAIT, || {
        engine.dispatcher.state("d").ok() == Some(DestinationState::Ok)
    })
    .await;
    assert!(resumed);
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(queued(&engine), 0);
    assert_eq!(as_set(&hec.indexed()), ids(&batch));
    // The released leases went out again once enabled (bounded duplicates, no loss).
    assert_eq!(hec.accepted().len(), 40);
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// Set for the child process of the kill -9 test: `<data dir>|<url>|<channel>`.
const CHILD_ENV: &str = "RAXE_INDEXER_ACK_CHILD";

/// The engine process that the kill -9 test kills: queues 200 events, delivers them to
/// an ack receiver, and runs until SIGKILL. Does nothing unless spawned by that test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child half of kill_9_with_acks_pending_loses_nothing"]
async fn child_engine_until_killed() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let engine = Engine::open(Path::new(parts[0]));
    add(&engine, "d", ack_config_for(parts[1], parts[2], 60, 50), 1);
    engine.dispatch(events("m", "c", 0..200)).await;
    engine.dispatcher.start().unwrap();
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_acks_pending_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    let channel = new_channel();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_engine_until_killed",
            "--test-threads=1",
        ])
        .env(
            CHILD_ENV,
            format!("{}|{}|{channel}", dir.path().display(), hec.url()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sent = hec.wait_for(200, WAIT).await;
    // Let the child poll at least once (1 s interval) so its acks are really pending.
    let polled = wait_until(WAIT, || hec.polls() >= 1).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        sent && polled,
        "the child did not deliver (sent {sent}, polled {polled})"
    );
    assert!(hec.indexed().is_empty());

    hec.set_mode(AckMode::After(Duration::ZERO));
    let engine = Engine::open(dir.path());
    add(&engine, "d", ack_config(&hec, &channel, 60, 50), 1);
    assert_eq!(queued(&engine), 200, "every un-acked event is still queued");
    engine.dispatcher.start().unwrap();
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(queued(&engine), 0);
    assert_eq!(as_set(&hec.indexed()), ids(&events("m", "c", 0..200)));
    assert_eq!(
        hec.accepted().len(),
        400,
        "resend on restart: each pending request once"
    );
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// Splunk restarts with requests still waiting for their acks, and counts ids from 0
/// again. A new request gets an id an old one had; while the rest of its batch is slow to
/// go out, a poll about the old ids hears `true` for the new request. That must not ack the
/// old request, which the restarted server never indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_reused_id_never_acks_an_old_request() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    let mut config = ack_config(&hec, &new_channel(), 30, 20);
    if let SiemOptions::Splunk(o) = &mut config.extra {
        // Several requests per lease (about three envelopes each).
        o.max_request_bytes = 2_000;
    }
    add(&engine, "d", config, 1);
    let old = events("m", "c", 0..20);
    engine.dispatch(old.clone()).await;
    engine.dispatcher.start().unwrap();
    assert!(hec.wait_for(20, WAIT).await);
    let settled = wait_until(WAIT, || {
        engine.dispatcher.stats().destinations[0].queue.len == 20
    })
    .await;
    assert!(settled);
    // Restart; new requests are indexed at once; the second request of the next lease is
    // slow, so its first request's (reused) id is answered before the lease is handed over.
    hec.restart();
    hec.set_mode(AckMode::After(Duration::ZERO));
    let new = events("m", "c", 100..120);
    hec.delay_requests_with(&new[5].event_id, Duration::from_secs(3));
    engine.dispatch(new.clone()).await;
    assert!(engine.dispatcher.drain(Duration::from_secs(40)).await);
    // Every old event was indexed by the restarted server (it was resent), not acked on
    // the strength of a new request's answer.
    let indexed = as_set(&hec.indexed());
    for e in old.iter().chain(&new) {
        assert!(
            indexed.contains(&e.event_id),
            "{} never indexed",
            e.event_id
        );
    }
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// Splunk restarts in the middle of a lease: the lease's first requests got ids from the
/// old count (10, 11), the rest from the new one (0..). Those old ids would wait for acks
/// the restarted server never gives until the new count reached them, and then a new
/// request's id 10 could ack the old request 10 while the new one's lease is still going
/// out (lost: evt-10 was never indexed). Now the new 0 marks the restart and the old
/// requests are sent again, and a reused id is a restart too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_lease_never_acks_its_old_requests() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    let mut config = ack_config(&hec, &new_channel(), 30, 10);
    if let SiemOptions::Splunk(o) = &mut config.extra {
        // One event per request: request n gets ack id n.
        o.max_request_bytes = 600;
    }
    add(&engine, "d", config, 1);
    let first = events("m", "c", 0..10);
    engine.dispatch(first.clone()).await;
    engine.dispatcher.start().unwrap();
    assert!(hec.wait_for(10, WAIT).await);
    // The second lease: ids 10 and 11, then the server restarts while event 12 waits.
    let second = events("m", "c", 10..20);
    hec.delay_requests_with(&second[2].event_id, Duration::from_secs(1));
    engine.dispatch(second.clone()).await;
    assert!(hec.wait_for(12, WAIT).await);
    hec.restart();
    hec.set_mode(AckMode::After(Duration::ZERO));
    // The first lease is sent again (its ids were forgotten) and gets 8, 9, 10, 11...:
    // hold its 11 back so that polls come while its new 10 is answered.
    hec.delay_requests_with(&first[3].event_id, Duration::from_secs(3));
    assert!(engine.dispatcher.drain(Duration::from_secs(40)).await);
    let indexed = as_set(&hec.indexed());
    for e in first.iter().chain(&second) {
        assert!(
            indexed.contains(&e.event_id),
            "{} never indexed",
            e.event_id
        );
    }
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// Two lanes through a Splunk restart, end to end (the detection rules themselves are
/// pinned by `AckTracker`'s unit tests): every event is indexed by the restarted server;
/// the old events, which it forgot, are sent exactly twice; of the new ones only the
/// request one lane had out when the other noted the restart (its answer could have come
/// from either server) is sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_lanes_through_a_restart_lose_nothing_and_resend_little() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    add(&engine, "d", ack_config(&hec, &new_channel(), 30, 10), 2);
    let old = events("m", "c", 0..100);
    engine.dispatch(old.clone()).await;
    engine.dispatcher.start().unwrap();
    assert!(hec.wait_for(100, WAIT).await);
    hec.restart();
    hec.set_mode(AckMode::After(Duration::ZERO));
    let new = events("m", "c", 1_000..1_100);
    engine.dispatch(new.clone()).await;
    assert!(engine.dispatcher.drain(Duration::from_secs(40)).await);
    let indexed = as_set(&hec.indexed());
    for e in old.iter().chain(&new) {
        assert!(
            indexed.contains(&e.event_id),
            "{} never indexed",
            e.event_id
        );
    }
    let mut times: std::collections::HashMap<String, usize> = Default::default();
    for id in hec.accepted() {
        *times.entry(id).or_default() += 1;
    }
    let sent = |e: &ScanEvent| times.get(&e.event_id).copied().unwrap_or(0);
    assert!(old.iter().all(|e| sent(e) == 2), "{times:?}");
    let again = new.iter().filter(|e| sent(e) > 1).count();
    assert!(
        again <= 10 && new.iter().all(|e| sent(e) <= 2),
        "{again} new events sent again: {times:?}"
    );
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// Behind a load balancer that pins a channel to an indexer by cookie: the cookie set on
/// the event answers is sent back on the ack polls, so they reach the indexer that issued
/// the ids and the events leave the queue once indexed (without it every poll would
/// answer false and everything would be resent after the timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancers_session_cookie_goes_back_with_every_poll() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::After(Duration::ZERO)).await;
    hec.set_sticky_cookie("AWSALB=indexer-2");
    add(&engine, "d", ack_config(&hec, &new_channel(), 60, 10), 1);
    let batch = events("m", "c", 0..30);
    engine.dispatch(batch.clone()).await;
    engine.dispatcher.start().unwrap();
    assert!(
        engine.dispatcher.drain(WAIT).await,
        "queued {}",
        queued(&engine)
    );
    assert_eq!(as_set(&hec.indexed()), ids(&batch));
    assert_eq!(hec.accepted().len(), 30, "nothing resent");
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// An undecodable record inside an accepted request's span waits for that request's ack
/// with it. When the ack times out and the lease is sent again, the record must not be
/// dead-lettered a second time; once the indexer acks, its dead-letter marker goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_inside_a_resent_request_is_written_once() {
    let engine = Engine::new();
    let hec = HecAckReceiver::start(TOKEN, AckMode::Never).await;
    add(&engine, "d", ack_config(&hec, &new_channel(), 2, 20), 1);
    let batch = events("m", "c", 0..10);
    let mut records: Vec<Vec<u8>> = batch.iter().map(ScanEvent::to_queue_bytes).collect();
    records.insert(5, b"not a queued scan event".to_vec());
    let records: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    engine
        .store()
        .open_queue(&raxe_engine::queue_names::destination("d"))
        .unwrap()
        .append(&records)
        .unwrap();
    engine.dispatcher.start().unwrap();

    // Sent, not acked within 2 s, sent again.
    assert!(hec.wait_for(20, WAIT).await);
    hec.set_mode(AckMode::After(Duration::ZERO));
    assert!(engine.dispatcher.drain(WAIT).await);
    assert_eq!(as_set(&hec.indexed()), ids(&batch));
    assert_eq!(
        engine.dispatcher.stats().destinations[0].dead_letters.len,
        1,
        "dead-lettered once"
    );
    // The markers go right after the ack that emptied the queue (and let `drain` return).
    let deadline = std::time::Instant::now() + WAIT;
    let mut markers = engine.sled.marker_keys(b"dl/").unwrap();
    while !markers.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        markers = engine.sled.marker_keys(b"dl/").unwrap();
    }
    assert!(markers.is_empty(), "markers left: {markers:?}");
    engine.dispatcher.shutdown(Duration::from_secs(5)).await;
}
