//! Engine throughput: `SiemDispatcher::dispatch_batch` → durable sled queues → workers →
//! Splunk HEC adapter → a counting HEC receiver on 127.0.0.1 (in this process).
//!
//! `cargo run --release -p raxe-benches --bin engine_bench [-- EVENTS]` (default 200000).
//! Prints events/s and MB/s end to end for 1, 10 and 100 destinations, CPU-seconds per
//! million events (this process: engine and receiver together), peak RSS, and the RSS held
//! while 1,000,000 events sit queued behind a disabled destination; then the rate to one
//! Splunk destination with indexer acks (`useACK`, Splunk's default 10 s ack interval, a
//! receiver that indexes at once), where the ack polls, not the engine, set the pace.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raxe_adapters::config::SiemConfig;
use raxe_adapters::event::ScanEvent;
use raxe_engine::{AuditLog, CustomerKey, DestinationOptions, SiemDispatcher};
use raxe_storage::{QueueStore, SledStore};
use raxe_tests::hec::HecReceiver;
use raxe_tests::hec_ack::{AckMode, HecAckReceiver};

const DISPATCH_BATCH: usize = 1_000;

fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("engine_bench: {events} events, ~{} bytes each, batch_size 100, dispatch batches of {DISPATCH_BATCH}", sample(0, "m", "c").to_queue_bytes().len());
    // Memory first, in a fresh process: allocator high-water marks from the throughput runs
    // would hide what a queue of a million events costs.
    runtime.block_on(queued_memory(1_000_000));
    println!(
        "{:>13} {:>12} {:>9} {:>14} {:>12}",
        "destinations", "events/s", "MB/s", "CPU-s/M events", "peak RSS MiB"
    );
    for destinations in [1, 10, 100] {
        runtime.block_on(end_to_end(events, destinations));
    }
    runtime.block_on(with_indexer_acks(events.min(50_000), Duration::ZERO, 64));
    // A real indexer takes seconds: then the window (--ack-max-pending) sets the pace.
    for window in [64, 512] {
        runtime.block_on(with_indexer_acks(
            events.min(200_000),
            Duration::from_secs(2),
            window,
        ));
    }
    runtime.block_on(pending_acks_memory(20));
}

/// RSS held while `destinations` destinations with indexer acks each have a full tracker
/// (64 requests of 100 events whose ids never turn true).
async fn pending_acks_memory(destinations: usize) {
    let (_dir, dispatcher) = fresh_dispatcher();
    let receiver = HecAckReceiver::start("bench", AckMode::Never).await;
    let per_destination = 64 * 100;
    for d in 0..destinations {
        let config = indexer_ack_config(&receiver.url());
        let adapter = raxe_adapters::create_siem_adapter(config).expect("adapter");
        dispatcher
            .register_destination(
                &format!("a{d}"),
                adapter.into(),
                Some(CustomerKey::new("m", format!("c{d}"))),
                DestinationOptions::default(),
            )
            .expect("register");
    }
    let total = destinations * per_destination;
    let batch: Vec<ScanEvent> = (0..total)
        .map(|n| sample(n, "m", &format!("c{}", n % destinations)))
        .collect();
    dispatcher.dispatch_batch(&batch).expect("dispatch");
    drop(batch);
    let before = rss_mib();
    dispatcher.start().expect("start");
    let full = receiver.wait_for(total, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "{destinations} destinations with indexer acks, 64 requests of 100 events waiting for acks each: RSS {:.1} MiB (before sending {before:.1}){}",
        rss_mib(),
        if full { "" } else { " (not all sent)" }
    );
    dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// An empty, not yet started dispatcher over a sled store in a temporary directory (kept alive by
/// the first value).
fn fresh_dispatcher() -> (tempfile::TempDir, Arc<SiemDispatcher>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn QueueStore> = Arc::new(SledStore::open(dir.path()).expect("store"));
    let dispatcher =
        Arc::new(SiemDispatcher::new(store, Arc::new(AuditLog::in_memory())).expect("dispatcher"));
    (dir, dispatcher)
}

/// Splunk HEC at `url` with indexer acks on (default ack interval and timeout).
fn indexer_ack_config(url: &str) -> SiemConfig {
    let mut config = SiemConfig::splunk(url, "bench").expect("config");
    if let raxe_adapters::config::SiemOptions::Splunk(o) = &mut config.extra {
        o.ack = true;
        o.channel = Some(raxe_adapters::splunk::ack::new_channel());
    }
    config.flush_interval_seconds = 1;
    config
}

/// Events/s to one destination with indexer acks while its ack tracker is full (workers
/// wait for room): until all but the last `window` requests' events are indexed. The rest
/// wait for the interval's poll, which is latency, not rate.
async fn with_indexer_acks(events: usize, indexing: Duration, window: usize) {
    let (_dir, dispatcher) = fresh_dispatcher();
    let receiver = HecAckReceiver::start("bench", AckMode::After(indexing)).await;
    let mut config = indexer_ack_config(&receiver.url());
    if let raxe_adapters::config::SiemOptions::Splunk(o) = &mut config.extra {
        o.ack_max_pending = window;
    }
    let interval = match &config.extra {
        raxe_adapters::config::SiemOptions::Splunk(o) => o.ack_interval_seconds,
        _ => unreachable!("a Splunk config"),
    };
    let adapter = raxe_adapters::create_siem_adapter(config).expect("adapter");
    dispatcher
        .register_destination("acked", adapter.into(), None, DestinationOptions::default())
        .expect("register");
    let batch: Vec<ScanEvent> = (0..events).map(|n| sample(n, "m", "c")).collect();
    dispatcher.dispatch_batch(&batch).expect("dispatch");
    dispatcher.start().expect("start");
    let started = Instant::now();
    let busy = events.saturating_sub(window * 100);
    let deadline = started + Duration::from_secs(600);
    while receiver.indexed().len() < busy && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let indexed = receiver.indexed().len();
    if indexed < busy {
        println!("indexer acks: only {indexed} of {busy} events indexed in {elapsed:.0} s");
    } else {
        println!(
            "indexer acks (ack interval {interval} s, indexed after {:.1} s, {window} requests may wait): {busy} of {events} events indexed at {:.0} events/s, {} polls",
            indexing.as_secs_f64(),
            busy as f64 / elapsed,
            receiver.polls()
        );
    }
    dispatcher.shutdown(Duration::from_secs(5)).await;
}

async fn end_to_end(events: usize, destinations: usize) {
    let (_dir, dispatcher) = fresh_dispatcher();
    let receiver = HecReceiver::start_counting("bench").await;
    for d in 0..destinations {
        let mut config = SiemConfig::splunk(&receiver.url(), "bench").expect("config");
        config.flush_interval_seconds = 1;
        let adapter = raxe_adapters::create_siem_adapter(config).expect("adapter");
        dispatcher
            .register_destination(
                &format!("d{d}"),
                adapter.into(),
                Some(CustomerKey::new("m", format!("c{d}"))),
                DestinationOptions::default(),
            )
            .expect("register");
    }
    dispatcher.start().expect("start");
    let cpu0 = raxe_benches::process_cpu_seconds();
    let started = Instant::now();
    let producer = dispatcher.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        let mut bytes = 0usize;
        let mut batch = Vec::with_capacity(DISPATCH_BATCH);
        for n in 0..events {
            let event = sample(n, "m", &format!("c{}", n % destinations));
            bytes += event.to_queue_bytes().len();
            batch.push(event);
            if batch.len() == DISPATCH_BATCH {
                producer.dispatch_batch(&batch).expect("dispatch");
                batch.clear();
            }
        }
        if !batch.is_empty() {
            producer.dispatch_batch(&batch).expect("dispatch");
        }
        bytes
    })
    .await
    .expect("producer");
    let delivered = receiver.wait_for(events, Duration::from_secs(600)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = raxe_benches::process_cpu_seconds() - cpu0;
    assert!(
        delivered,
        "only {} of {events} delivered",
        receiver.accepted_count()
    );
    println!(
        "{:>13} {:>12.0} {:>9.1} {:>14.2} {:>12.1}",
        destinations,
        events as f64 / elapsed,
        bytes as f64 / elapsed / 1e6,
        cpu / events as f64 * 1e6,
        peak_rss_mib()
    );
    dispatcher.shutdown(Duration::from_secs(5)).await;
}

/// RSS with `events` queued on disk behind a disabled destination.
async fn queued_memory(events: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn QueueStore> = Arc::new(SledStore::open(dir.path()).expect("store"));
    let dispatcher = Arc::new(
        SiemDispatcher::new(store.clone(), Arc::new(AuditLog::in_memory())).expect("dispatcher"),
    );
    let mut config =
        SiemConfig::splunk("http://127.0.0.1:9/services/collector/event", "t").expect("config");
    config.enabled = false;
    let adapter = raxe_adapters::create_siem_adapter(config).expect("adapter");
    dispatcher
        .register_destination("held", adapter.into(), None, DestinationOptions::default())
        .expect("register");
    let rss_before = rss_mib();
    let producer = dispatcher.clone();
    let (dispatch_secs, wall) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut in_dispatch = Duration::ZERO;
        let mut batch = Vec::with_capacity(DISPATCH_BATCH);
        for n in 0..events {
            batch.push(sample(n, "m", "c"));
            if batch.len() == DISPATCH_BATCH {
                let t = Instant::now();
                producer.dispatch_batch(&batch).expect("dispatch");
                in_dispatch += t.elapsed();
                batch.clear();
            }
        }
        (in_dispatch.as_secs_f64(), started.elapsed().as_secs_f64())
    })
    .await
    .expect("producer");
    println!(
        "queued {events} events behind a disabled destination in {wall:.1} s; dispatch_batch alone {:.0} events/s (durable); RSS {:.1} MiB (before {:.1}); disk {:.1} MiB",
        events as f64 / dispatch_secs,
        rss_mib(),
        rss_before,
        store.disk_bytes().unwrap_or(0) as f64 / (1 << 20) as f64
    );
}

/// A realistic event; built from a parsed template so generating it costs little next to
/// what is measured (parsing is `encode_bench`'s business).
fn sample(n: usize, mssp: &str, customer: &str) -> ScanEvent {
    thread_local! {
        static TEMPLATE: ScanEvent = ScanEvent::parse_line(
            br#"{"event_id":"evt-0","timestamp":"2026-01-30T10:30:00.123Z","event_type":"scan","threat_detected":true,"severity":"critical","rule_ids":["pi-001","pi-003"],"families":["PI"],"prompt_hash":"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","prompt_length":412,"detection_count":2,"scan_duration_ms":4.5,"customer_id":"c","mssp_id":"m","agent_id":"agent_prod_001","installation_id":"inst_abc123"}"#,
            1,
        )
        .expect("template event");
    }
    TEMPLATE.with(|template| {
        let mut event = template.clone();
        event.event_id = format!("evt-{n:010}");
        event.timestamp_ms += n as i64;
        event.prompt_length = Some(100 + (n % 900) as u64);
        event.customer_id = customer.to_string();
        event.mssp_id = Some(mssp.to_string());
        event
    })
}

fn status_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:") / 1024.0
}

fn rss_mib() -> f64 {
    status_kib("VmRSS:") / 1024.0
}
